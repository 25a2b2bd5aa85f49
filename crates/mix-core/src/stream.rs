//! One random stream per purpose: the seeded generators of a run, derived from the run's seed.
//!
//! A seeded run draws its split, its initial weights, each epoch's shuffle and crops, and each
//! epoch's augmentation, mixes and dropout masks. If two of those shared a generator, a change in
//! how many numbers one consumer takes would move every number the other sees, and two consumers
//! started at the same place would see the same numbers. [`stream_rng`] gives each
//! `(seed, purpose, index)` a ChaCha8 stream of its own:
//!
//! - the 32-byte ChaCha key comes from `(seed, purpose)`: SplitMix64 (Steele, Lea and Flood, 2014)
//!   started at `seed` gives key word 0; the purpose's [`Purpose::id`] is then XORed into its state
//!   and it gives key words 1 to 3 (little-endian). Word 0 determines `seed` and, given `seed`,
//!   word 1 determines the purpose, so different `(seed, purpose)` pairs always get different keys;
//! - the `index` (an epoch number, or 0 for one-off draws) is the ChaCha stream (`set_stream`), so
//!   the epochs of one purpose are disjoint streams under one key.
//!
//! The ids and the derivation are part of what a seed means: changing either changes every seeded
//! run, so they are fixed here and checked by tests.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is for. Each consumer of a run's seed takes its numbers from its own
/// purpose, so none of them shares a random word with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// The train/valid split of the items (mix-data's `DataLoaders`), index 0.
    Split,
    /// The model's initial weights (mix-tch's `Learner::new`), index 0.
    InitWeights,
    /// A training `DataLoader`'s shuffle and crop fractions of epoch `index` (mix-data).
    LoaderEpoch,
    /// The learner's augmentation, mix params and dropout masks of epoch `index` (mix-tch).
    LearnerEpoch,
    /// An in-memory batch source's shuffle of epoch `index` (mix-tch's `InMemory`).
    InMemoryEpoch,
}

impl Purpose {
    /// Every purpose, in id order.
    pub const ALL: [Purpose; 5] = [
        Purpose::Split,
        Purpose::InitWeights,
        Purpose::LoaderEpoch,
        Purpose::LearnerEpoch,
        Purpose::InMemoryEpoch,
    ];

    /// The fixed number that enters the key derivation. Stable: changing it changes what every
    /// seed means for this purpose.
    pub const fn id(self) -> u64 {
        match self {
            Purpose::Split => 1,
            Purpose::InitWeights => 2,
            Purpose::LoaderEpoch => 3,
            Purpose::LearnerEpoch => 4,
            Purpose::InMemoryEpoch => 5,
        }
    }
}

/// The ChaCha8 generator for `purpose` and `index` (an epoch, or 0) under `seed`; see the module
/// documentation for the derivation. The same arguments always give the same numbers, on every
/// platform.
///
/// ```
/// use mix_core::rand::RngCore;
/// use mix_core::stream::{stream_rng, Purpose};
///
/// let mut shuffle = stream_rng(7, Purpose::LoaderEpoch, 3);
/// let mut augment = stream_rng(7, Purpose::LearnerEpoch, 3);
/// assert_ne!(shuffle.next_u64(), augment.next_u64());
/// assert_eq!(
///     stream_rng(7, Purpose::LoaderEpoch, 3).next_u64(),
///     stream_rng(7, Purpose::LoaderEpoch, 3).next_u64()
/// );
/// ```
pub fn stream_rng(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(stream_key(seed, purpose));
    rng.set_stream(index);
    rng
}

/// The 32-byte ChaCha key of `(seed, purpose)`.
pub fn stream_key(seed: u64, purpose: Purpose) -> [u8; 32] {
    let mut state = seed;
    let mut key = [0u8; 32];
    for (i, word) in key.chunks_exact_mut(8).enumerate() {
        if i == 1 {
            state ^= purpose.id();
        }
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    key
}

/// One SplitMix64 step: advance the state by the golden gamma and return its finalised value.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
