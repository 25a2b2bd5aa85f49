//! Every consumer of a run's seed draws from its own stream (`mix_core::stream`): the split, the initial
//! weights, each epoch's loader shuffle and crops, the in-memory shuffle, and each epoch's augmentation,
//! mixes and dropout masks. These tests tie each consumer to its purpose, and check that a seeded run still
//! reproduces itself bit for bit.

mod common;

use common::{small_config, small_data};
use mix_core::rand::seq::SliceRandom;
use mix_core::rand::RngCore;
use mix_core::stream::{stream_rng, Purpose};
use mix_core::MixUp;
use mix_data::{random_split, CropPos, DataLoaders, LoaderConfig};
use mix_tch::tch::Device;
use mix_tch::{BatchSource, DeviceChoice, InMemory, Learner, LearnerConfig, MixCallback, OneCycle};
use ndarray::Array4;
use std::path::PathBuf;

/// File names only: splitting and planning never open the files.
fn fake_files(n: usize) -> (Vec<PathBuf>, Vec<String>) {
    let files = (0..n)
        .map(|i| PathBuf::from(format!("img_{i:03}.jpg")))
        .collect();
    let labels = (0..n).map(|i| format!("class{}", i % 3)).collect();
    (files, labels)
}

#[test]
fn the_split_comes_from_the_split_stream() {
    let (files, labels) = fake_files(50);
    for seed in [0, 5, 1234] {
        let cfg = LoaderConfig {
            seed,
            batch_size: 4,
            ..LoaderConfig::default()
        };
        let dls = DataLoaders::from_labels(&files, &labels, &cfg).unwrap();
        let split =
            random_split(50, cfg.valid_pct, &mut stream_rng(seed, Purpose::Split, 0)).unwrap();
        let pick = |idx: &[usize]| idx.iter().map(|&i| files[i].clone()).collect::<Vec<_>>();
        assert_eq!(dls.train.items(), pick(&split.train), "seed {seed}");
        assert_eq!(dls.valid.items(), pick(&split.valid), "seed {seed}");
    }
}

#[test]
fn loader_epochs_come_from_the_loader_stream() {
    // mix-data's loader draws each epoch's plan from mix-core's loader stream.
    let (files, labels) = fake_files(40);
    let cfg = LoaderConfig {
        seed: 11,
        batch_size: 4,
        ..LoaderConfig::default()
    };
    let dls = DataLoaders::from_labels(&files, &labels, &cfg).unwrap();
    let n = dls.train.len_items();
    for epoch in 0..4 {
        let mut rng = stream_rng(11, Purpose::LoaderEpoch, epoch);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let expected: Vec<(usize, CropPos)> = order
            .into_iter()
            .map(|i| (i, CropPos::random(&mut rng)))
            .collect();
        assert_eq!(dls.train.plan(epoch), expected, "epoch {epoch}");
    }
}

#[test]
fn in_memory_shuffles_come_from_their_own_stream() {
    let n = 24;
    let source = InMemory::new(
        Array4::zeros((n, 3, 1, 1)),
        (0..n).collect(),
        n,
        Some(9),
        false,
    )
    .unwrap();
    for epoch in 0..3 {
        let batch = source.batches(epoch).next().unwrap().unwrap();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut stream_rng(9, Purpose::InMemoryEpoch, epoch));
        assert_eq!(batch.labels, order, "epoch {epoch}");
    }
}

fn cpu_config(seed: u64) -> LearnerConfig {
    // Bit-for-bit comparisons need a deterministic backend: libtorch's CPU kernels are, cuDNN's are not
    // (see `a_resumed_run_matches_the_uninterrupted_one` in tests/learner.rs). The random draws themselves
    // are made on the CPU whatever the device.
    let mut cfg = small_config(2, 32);
    cfg.device = DeviceChoice::Cpu;
    cfg.seed = seed;
    cfg
}

#[test]
fn the_learner_draws_weights_and_epochs_from_their_own_streams() {
    let (train, valid) = small_data(8, 4, 2, 4);
    let learn = Learner::new(Box::new(train), Box::new(valid), cpu_config(21)).unwrap();
    // Before the first epoch the rng is epoch 0's.
    let mut rng = learn.learn().rng.clone();
    let mut expected = stream_rng(21, Purpose::LearnerEpoch, 0);
    assert_eq!(
        (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>(),
        (0..8).map(|_| expected.next_u64()).collect::<Vec<_>>()
    );
    let model =
        mix_tch::VisionModel::new(2, Device::Cpu, &mut stream_rng(21, Purpose::InitWeights, 0))
            .unwrap();
    let (got, want) = (learn.learn().model.variables(), model.variables());
    assert_eq!(got.len(), want.len());
    for (name, t) in &want {
        assert_eq!(common::max_abs_diff(t, &got[name]), 0.0, "{name}");
    }
}

fn seeded_run(seed: u64) -> Learner {
    let (train, valid) = small_data(8, 4, 2, 4);
    let mut learn = Learner::new(Box::new(train), Box::new(valid), cpu_config(seed)).unwrap();
    let mixup = Box::new(MixCallback::new(Box::new(MixUp::new(0.4).unwrap())));
    learn
        .fit_one_cycle(2, OneCycle::default(), vec![mixup])
        .unwrap();
    learn
}

#[test]
fn a_seeded_run_reproduces_itself_bit_for_bit() {
    let (a, b, c) = (seeded_run(5), seeded_run(5), seeded_run(6));
    assert_eq!(a.steps().len(), 4);
    let losses = |l: &Learner| {
        l.steps()
            .iter()
            .map(|s| s.loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_ne!(
        losses(&a),
        losses(&c),
        "another seed should give other losses"
    );
    for (s, t) in a.steps().iter().zip(b.steps()) {
        assert_eq!(
            (s.step, s.epoch, s.lr, s.mom),
            (t.step, t.epoch, t.lr, t.mom)
        );
        assert_eq!(s.smooth_loss.to_bits(), t.smooth_loss.to_bits());
    }
    let (va, vb) = (a.learn().model.variables(), b.learn().model.variables());
    for (name, t) in &va {
        assert_eq!(common::max_abs_diff(t, &vb[name]), 0.0, "{name}");
    }
}

/// A rank of a pretend job: the draws depend on the rank only (no collective is issued before a fit).
#[derive(Debug)]
struct Rank(usize);

impl mix_tch::Collective for Rank {
    fn rank(&self) -> usize {
        self.0
    }

    fn world(&self) -> usize {
        4
    }

    fn sum(&self, _tensors: &[&mix_tch::tch::Tensor]) -> mix_tch::Result<()> {
        Ok(())
    }

    fn all_gather(&self, tensor: &mix_tch::tch::Tensor) -> mix_tch::Result<mix_tch::tch::Tensor> {
        Ok(tensor.repeat([4]))
    }
}

#[test]
fn each_rank_of_a_job_draws_its_epochs_from_its_own_stream() {
    let draws = |rank: Option<usize>| {
        let (train, valid) = small_data(8, 4, 2, 4);
        let mut cfg = cpu_config(21);
        cfg.collective =
            rank.map(|r| std::sync::Arc::new(Rank(r)) as std::sync::Arc<dyn mix_tch::Collective>);
        let learn = Learner::new(Box::new(train), Box::new(valid), cfg).unwrap();
        let mut rng = learn.learn().rng.clone();
        (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
    };
    let stream = |index: u64| {
        let mut rng = stream_rng(21, Purpose::LearnerEpoch, index);
        (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
    };
    // Rank 0 draws what a single process draws; rank r draws stream `epoch + r * 2^40`.
    assert_eq!(draws(None), stream(0));
    assert_eq!(draws(Some(0)), stream(0));
    assert_eq!(draws(Some(3)), stream(3 << 40));
    assert_ne!(draws(Some(1)), draws(Some(2)));
}
