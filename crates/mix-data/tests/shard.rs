//! Data-parallel sharding: `Shard`'s index rules against a transcription of PyTorch's
//! `DistributedSampler`, and sharded loaders end to end (step counts, batch unions, validation,
//! bad images).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use common::*;
use mix_data::{
    load_item, Batch, BatchIter, CropPos, DataLoader, Error, LoaderConfig, LoaderKind, Shard,
};
use ndarray::s;
use proptest::prelude::*;

/// PyTorch's `DistributedSampler.__iter__` with `drop_last=False`, written as it reads:
/// `indices += indices[:padding_size]` (or the list repeated when the padding is longer), then
/// `indices[rank:total_size:num_replicas]`.
fn torch_distributed_sampler(indices: &[usize], rank: usize, world: usize) -> Vec<usize> {
    let n = indices.len();
    let num_samples = n.div_ceil(world);
    let total_size = num_samples * world;
    let mut padded = indices.to_vec();
    let padding_size = total_size - n;
    if padding_size <= n {
        padded.extend_from_slice(&indices[..padding_size]);
    } else {
        let repeated: Vec<usize> = indices
            .iter()
            .copied()
            .cycle()
            .take(n * padding_size.div_ceil(n.max(1)))
            .collect();
        padded.extend_from_slice(&repeated[..padding_size]);
    }
    assert_eq!(padded.len(), total_size);
    padded
        .into_iter()
        .skip(rank)
        .step_by(world)
        .take(num_samples)
        .collect()
}

/// Counts of each value: a multiset.
fn multiset(values: impl IntoIterator<Item = usize>) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

fn shards(world: usize) -> Vec<Shard> {
    (0..world).map(|r| Shard::new(r, world).unwrap()).collect()
}

#[test]
fn shard_refuses_a_rank_outside_the_world() {
    let msg = |r: mix_data::Result<Shard>| match r {
        Err(Error::Config(m)) => m,
        other => panic!("expected Error::Config, found {other:?}"),
    };
    let m = msg(Shard::new(0, 0));
    assert!(m.contains("world is 0"), "{m}");
    let m = msg(Shard::new(2, 2));
    assert!(m.contains("rank is 2") && m.contains("0..2"), "{m}");
    assert!(Shard::new(5, 3).is_err());
    let s = Shard::new(1, 3).unwrap();
    assert_eq!((s.rank(), s.world(), s.is_whole()), (1, 3, false));
    assert_eq!(Shard::whole(), Shard::new(0, 1).unwrap());
    assert_eq!(Shard::default(), Shard::whole());
    assert_eq!(LoaderConfig::default().shard, Shard::whole());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Padded shards: PyTorch's numbers, equal lengths, every item present, padding only repeats
    /// the start, disjoint when `world` divides `n`.
    #[test]
    fn padded_shards_follow_distributed_sampler((n, world, _bs) in shard_case(), seed in any::<u64>()) {
        // A plan that is not the identity, so positions and values differ.
        let all: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize % 13) % 1000 + 1000 * i).collect();
        let parts: Vec<Vec<usize>> = shards(world).iter().map(|s| s.select_padded(&all)).collect();
        let per_rank = n.div_ceil(world);
        for (rank, part) in parts.iter().enumerate() {
            prop_assert_eq!(part, &torch_distributed_sampler(&all, rank, world));
            prop_assert_eq!(part.len(), per_rank);
            prop_assert_eq!(Shard::new(rank, world).unwrap().padded_len(n), per_rank);
        }
        // The union is the plan plus its first `total - n` entries (cyclically): at most
        // `world - 1` extra entries, every item at least once.
        let total = per_rank * world;
        prop_assert!(total - n < world);
        let want = multiset(all.iter().copied().chain(all.iter().copied().cycle().take(total - n)));
        prop_assert_eq!(multiset(parts.iter().flatten().copied()), want);
        if n % world == 0 {
            prop_assert_eq!(multiset(parts.iter().flatten().copied()), multiset(all.iter().copied()));
        }
        // One rank: the plan itself.
        prop_assert_eq!(Shard::whole().select_padded(&all), all);
    }

    /// Batch `k` of all ranks together is the padded plan's entries `[k*W*b, (k+1)*W*b)`.
    #[test]
    fn batch_k_of_all_ranks_is_a_window_of_the_padded_plan((n, world, bs) in shard_case()) {
        let all: Vec<usize> = (0..n).rev().collect();
        let parts: Vec<Vec<usize>> = shards(world).iter().map(|s| s.select_padded(&all)).collect();
        let padded: Vec<usize> = all.iter().copied().cycle().take(n.div_ceil(world) * world).collect();
        let steps = n.div_ceil(world) / bs;
        for k in 0..steps {
            let union = multiset(parts.iter().flat_map(|p| p[k * bs..(k + 1) * bs].iter().copied()));
            let window = multiset(padded[k * world * bs..(k + 1) * world * bs].iter().copied());
            prop_assert_eq!(union, window, "batch {}", k);
        }
    }

    /// Unpadded shards: disjoint, together exactly the plan, lengths within one of each other.
    #[test]
    fn unpadded_shards_partition_the_plan((n, world, _bs) in shard_case()) {
        let all: Vec<usize> = (0..n).map(|i| i * 3 + 1).collect();
        let parts: Vec<Vec<usize>> = shards(world).iter().map(|s| s.select(&all)).collect();
        let mut union: Vec<usize> = parts.iter().flatten().copied().collect();
        union.sort_unstable();
        prop_assert_eq!(&union, &all);
        for (rank, part) in parts.iter().enumerate() {
            let want: Vec<usize> = all.iter().copied().skip(rank).step_by(world).collect();
            prop_assert_eq!(part, &want);
            prop_assert!(part.len() == n / world || part.len() == n / world + 1);
        }
    }
}

// ---- loaders end to end ----

const CLASSES: [&str; 4] = ["Bengal", "Persian", "beagle", "pug"];

/// `n` distinct small images; each item's label is its own index, so labels name the items.
fn items(n: usize) -> (tempfile::TempDir, Vec<PathBuf>, Vec<usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = write_pets_like(tmp.path(), &CLASSES, n.div_ceil(CLASSES.len()), 40, 28);
    files.truncate(n);
    let labels = (0..n).collect();
    (tmp, files, labels)
}

fn cfg(bs: usize, shard: Shard) -> LoaderConfig {
    LoaderConfig {
        batch_size: bs,
        item_size: 12,
        threads: 1,
        seed: 11,
        shard,
        ..LoaderConfig::default()
    }
}

fn loader(files: &[PathBuf], labels: &[usize], kind: LoaderKind, c: &LoaderConfig) -> DataLoader {
    DataLoader::new(files.to_vec(), labels.to_vec(), kind, c).unwrap()
}

fn collect(it: BatchIter) -> Vec<Batch> {
    it.map(|b| b.unwrap()).collect()
}

/// The batches `entries` make in order, decoded one item at a time.
fn oracle(dl: &DataLoader, entries: &[(usize, CropPos)], keep_partial: bool) -> Vec<Batch> {
    let s = dl.item_size();
    let mut out = Vec::new();
    for chunk in entries.chunks(dl.batch_size()) {
        if chunk.len() < dl.batch_size() && !keep_partial {
            break;
        }
        let mut images = ndarray::Array4::zeros((chunk.len(), 3, s, s));
        for (k, &(i, pos)) in chunk.iter().enumerate() {
            images
                .slice_mut(s![k, .., .., ..])
                .assign(&load_item(&dl.items()[i], s, pos).unwrap());
        }
        let labels = chunk.iter().map(|&(i, _)| dl.labels()[i]).collect();
        out.push(Batch { images, labels });
    }
    out
}

/// The items of a batch as (label, pixels) pairs, sorted: a multiset of items.
fn item_set<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> Vec<(usize, Vec<u8>)> {
    let mut v: Vec<(usize, Vec<u8>)> = batches
        .into_iter()
        .flat_map(|b| {
            b.labels.iter().enumerate().map(|(k, &l)| {
                (
                    l,
                    b.images.slice(s![k, .., .., ..]).iter().copied().collect(),
                )
            })
        })
        .collect();
    v.sort();
    v
}

#[test]
fn one_rank_is_todays_loader() {
    let (_tmp, files, labels) = items(11);
    for kind in [LoaderKind::Train, LoaderKind::Valid] {
        let plain = loader(&files, &labels, kind, &cfg(3, Shard::default()));
        let one = loader(&files, &labels, kind, &cfg(3, Shard::new(0, 1).unwrap()));
        assert_eq!(one.shard_plan(4), plain.plan(4));
        assert_eq!(one.num_batches(), plain.num_batches());
        let b = collect(one.epoch(4));
        assert_eq!(b, collect(plain.epoch(4)));
        assert_eq!(b, oracle(&plain, &plain.plan(4), kind == LoaderKind::Valid));
    }
}

#[test]
fn training_shards_have_equal_step_counts_and_decode_their_padded_part() {
    for n in [1, 2, 3, 5, 8, 13] {
        let (_tmp, files, labels) = items(n);
        for world in 1..=4 {
            for bs in [1, 2, 3] {
                let case = format!("n {n} world {world} bs {bs}");
                let loaders: Vec<DataLoader> = shards(world)
                    .into_iter()
                    .map(|sh| loader(&files, &labels, LoaderKind::Train, &cfg(bs, sh)))
                    .collect();
                let plan = loaders[0].plan(2);
                let steps = n.div_ceil(world) / bs;
                let mut per_rank = Vec::new();
                for dl in &loaders {
                    // The full plan does not depend on the rank; the shard is its padded part.
                    assert_eq!(dl.plan(2), plan, "{case}");
                    assert_eq!(dl.shard_plan(2), dl.shard().select_padded(&plan), "{case}");
                    assert_eq!(dl.num_batches(), steps, "{case}");
                    let b = collect(dl.epoch(2));
                    assert_eq!(b.len(), steps, "{case}");
                    assert_eq!(b, oracle(dl, &dl.shard_plan(2), false), "{case}");
                    per_rank.push(b);
                }
                // Batch k of all ranks = entries [k*W*b, (k+1)*W*b) of the padded plan.
                let padded: Vec<(usize, CropPos)> = plan
                    .iter()
                    .copied()
                    .cycle()
                    .take(n.div_ceil(world) * world)
                    .collect();
                for k in 0..steps {
                    let union = item_set(per_rank.iter().map(|b| &b[k]));
                    let window = &padded[k * world * bs..(k + 1) * world * bs];
                    assert_eq!(
                        union,
                        item_set(&oracle(&loaders[0], window, true)),
                        "{case} batch {k}"
                    );
                }
                // When world divides n: the same items as one rank with batch size W*b.
                if n % world == 0 {
                    let big = loader(
                        &files,
                        &labels,
                        LoaderKind::Train,
                        &cfg(world * bs, Shard::whole()),
                    );
                    let big_batches = collect(big.epoch(2));
                    assert_eq!(big_batches.len(), steps, "{case}");
                    for (k, want) in big_batches.iter().enumerate() {
                        let union = item_set(per_rank.iter().map(|b| &b[k]));
                        assert_eq!(union, item_set([want]), "{case} batch {k}");
                    }
                }
            }
        }
    }
}

#[test]
fn sharded_training_epochs_are_reproducible_and_change_with_the_epoch() {
    let (_tmp, files, labels) = items(12);
    let c = cfg(2, Shard::new(1, 3).unwrap());
    let a = loader(&files, &labels, LoaderKind::Train, &c);
    let b = loader(&files, &labels, LoaderKind::Train, &c);
    assert_eq!(a.shard_plan(0), b.shard_plan(0));
    assert_ne!(a.shard_plan(0), a.shard_plan(1));
    let e0 = collect(a.epoch(0));
    assert_eq!(e0, collect(b.epoch(0)));
    assert_ne!(e0, collect(a.epoch(1)));
    // Another rank of the same epoch gets other items (12 divides by 3: disjoint).
    let other = loader(
        &files,
        &labels,
        LoaderKind::Train,
        &cfg(2, Shard::new(0, 3).unwrap()),
    );
    let mine: Vec<usize> = a.shard_plan(0).iter().map(|p| p.0).collect();
    assert!(other.shard_plan(0).iter().all(|p| !mine.contains(&p.0)));
}

#[test]
fn validation_shards_are_disjoint_unpadded_and_keep_the_last_partial_batch() {
    for n in [0, 1, 3, 5, 9] {
        let (_tmp, files, labels) = items(n);
        for world in 1..=4 {
            let bs = 2;
            let case = format!("n {n} world {world}");
            let mut seen = Vec::new();
            for sh in shards(world) {
                let dl = loader(&files, &labels, LoaderKind::Valid, &cfg(bs, sh));
                let part = dl.shard_plan(0);
                assert_eq!(part, sh.select(&dl.plan(0)), "{case}");
                assert!(part.iter().all(|p| p.1 == CropPos::CENTER));
                let b = collect(dl.epoch(0));
                assert_eq!(dl.num_batches(), part.len().div_ceil(bs), "{case}");
                assert_eq!(b.len(), dl.num_batches(), "{case}");
                assert_eq!(b, oracle(&dl, &part, true), "{case}");
                seen.extend(b.iter().flat_map(|b| b.labels.clone()));
            }
            seen.sort_unstable();
            assert_eq!(
                seen,
                (0..n).collect::<Vec<_>>(),
                "{case}: every item exactly once"
            );
        }
    }
}

#[test]
fn a_bad_image_keeps_sharded_step_counts_equal() {
    let (tmp, mut files, labels) = items(12);
    // Two items become unreadable: a text file and a truncated JPEG.
    fs::write(&files[3], "<html>not found</html>").unwrap();
    let cut = tmp.path().join("cut_1.jpg");
    let jpeg = jpeg_bytes(&pattern_rgb(40, 28));
    fs::write(&cut, &jpeg[..jpeg.len() / 3]).unwrap();
    files[8] = cut;
    let bad = [3, 8];
    let world = 3;
    for bs in [1, 2, 4] {
        let steps = 12usize.div_ceil(world) / bs;
        for sh in shards(world) {
            let case = format!("bs {bs} rank {}", sh.rank());
            let c = cfg(bs, sh);
            let dl = loader(&files, &labels, LoaderKind::Train, &c);
            assert_eq!(dl.num_batches(), steps, "{case}");
            for epoch in 0..3 {
                let b = collect(dl.epoch(epoch));
                assert_eq!(b.len(), steps, "{case} epoch {epoch}");
                assert!(b.iter().all(|b| b.len() == bs), "{case}");
                // The shard's good items in order, then again from its start.
                let good: Vec<(usize, CropPos)> = dl
                    .shard_plan(epoch)
                    .into_iter()
                    .filter(|p| !bad.contains(&p.0))
                    .collect();
                let want: Vec<(usize, CropPos)> =
                    good.iter().copied().cycle().take(steps * bs).collect();
                assert_eq!(b, oracle(&dl, &want, false), "{case} epoch {epoch}");
                assert_eq!(dl.num_batches(), steps, "{case}: the count never changes");
            }
            // Known-bad or found now: the same batches.
            let fresh = loader(&files, &labels, LoaderKind::Train, &c);
            assert_eq!(collect(fresh.epoch(2)), collect(dl.epoch(2)), "{case}");
        }
    }
}

#[test]
fn a_shard_of_only_bad_images_ends_the_epoch_with_an_error() {
    let (_tmp, files, labels) = items(4);
    // World 4, one item per rank: make rank 2's item bad by finding which one it gets.
    let c = cfg(1, Shard::new(2, 4).unwrap());
    let probe = loader(&files, &labels, LoaderKind::Train, &c);
    let victim = probe.shard_plan(0)[0].0;
    fs::write(&files[victim], "not an image").unwrap();
    let dl = loader(&files, &labels, LoaderKind::Train, &c);
    let results: Vec<_> = dl.epoch(0).collect();
    assert_eq!(results.len(), 1);
    let err = results[0].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoGoodItems {
                rank: 2,
                world: 4,
                items: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("shard rank 2 of world 4"), "{err}");
    // The other ranks are unaffected.
    let ok = loader(
        &files,
        &labels,
        LoaderKind::Train,
        &cfg(1, Shard::new(1, 4).unwrap()),
    );
    assert_eq!(collect(ok.epoch(0)).len(), 1);
}
