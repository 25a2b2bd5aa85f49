//! Which part of each epoch one process of a data-parallel run loads: PyTorch's
//! `DistributedSampler` rules as plain index arithmetic.
//!
//! Every rank computes the same full plan; [`Shard::select_padded`] pads it by repeating entries
//! from its start to a multiple of `world` and takes every `world`-th entry from `rank` on
//! (`DistributedSampler(drop_last=False)`: `(indices * k)[:total_size][rank:total_size:world]`),
//! so all ranks get the same number of entries. [`Shard::select`] takes the same stride without
//! padding, for validation, where every item must be counted exactly once.

use crate::{Error, Result};

/// One rank's place in a data-parallel run: rank `rank` of `world` processes.
///
/// Always valid (`rank < world`, `world >= 1`): build it with [`Shard::new`] or
/// [`Shard::whole`]. The default is [`Shard::whole`], which loads everything, as a
/// single-process run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    rank: usize,
    world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self::whole()
    }
}

impl Shard {
    /// Rank `rank` of `world` processes (torchrun's `RANK` and `WORLD_SIZE`).
    ///
    /// Errors: [`Error::Config`] when `world` is 0 or `rank >= world`.
    pub fn new(rank: usize, world: usize) -> Result<Self> {
        if world == 0 {
            return Err(Error::Config(
                "shard world is 0, expected at least 1 process (torchrun's WORLD_SIZE)".to_owned(),
            ));
        }
        if rank >= world {
            return Err(Error::Config(format!(
                "shard rank is {rank} with world {world}, expected a rank in 0..{world} \
                 (torchrun's RANK is below WORLD_SIZE)"
            )));
        }
        Ok(Self { rank, world })
    }

    /// Rank 0 of 1: the whole data set, the loader's behaviour without sharding.
    pub const fn whole() -> Self {
        Self { rank: 0, world: 1 }
    }

    /// This process's rank, in `0..world`.
    pub const fn rank(self) -> usize {
        self.rank
    }

    /// The number of processes, at least 1.
    pub const fn world(self) -> usize {
        self.world
    }

    /// Whether this is [`Shard::whole`] (one process).
    pub const fn is_whole(self) -> bool {
        self.world == 1
    }

    /// Entries each rank gets from a padded plan of `n` entries: `ceil(n / world)`
    /// (`DistributedSampler.num_samples` with `drop_last=False`).
    pub const fn padded_len(self, n: usize) -> usize {
        n.div_ceil(self.world)
    }

    /// This rank's part of `all`, padded like `DistributedSampler(drop_last=False)`: `all` is
    /// extended to `ceil(n / world) * world` entries by repeating it from its start (as many
    /// times as needed when `n < world`), then entries `rank, rank + world, ...` are taken.
    /// Every rank gets [`padded_len`](Self::padded_len) entries; an empty `all` gives none.
    pub fn select_padded<T: Clone>(self, all: &[T]) -> Vec<T> {
        if all.is_empty() {
            return Vec::new();
        }
        // Entry `j` of the padded list is `all[j % n]`, so the padding never has to be built.
        (0..self.padded_len(all.len()))
            .map(|k| all[(self.rank + k * self.world) % all.len()].clone())
            .collect()
    }

    /// This rank's part of `all` without padding: entries `rank, rank + world, ...`. The parts
    /// of all ranks are disjoint and together hold every entry once; their lengths differ by at
    /// most one.
    pub fn select<T: Clone>(self, all: &[T]) -> Vec<T> {
        all.iter()
            .skip(self.rank)
            .step_by(self.world)
            .cloned()
            .collect()
    }
}
