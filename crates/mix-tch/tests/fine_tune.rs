//! fastai's training verbs beyond `fit_one_cycle`: learning rates per parameter group from a slice,
//! `fine_tune`'s two fits, `lr_find`, pretrained freezing against the loaded file, and `predict`.

mod common;

use common::{small_config, small_data};
use mix_tch::model::{param_group, N_GROUPS};
use mix_tch::schedule::{even_mults, sched_cos};
use mix_tch::tch::{Device, Tensor};
use mix_tch::{
    Callback, Event, FineTune, Learn, Learner, LearnerConfig, LrFind, LrSpread, OneCycle, Result,
    VisionModel,
};
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn learner(cfg: LearnerConfig, n_train: usize, n_valid: usize, bs: usize) -> Learner {
    let (train, valid) = small_data(n_train, n_valid, cfg.n_classes, bs);
    Learner::new(Box::new(train), Box::new(valid), cfg).unwrap()
}

/// What one training step ran with.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    fit: usize,
    epoch: usize,
    iter: usize,
    lrs: Vec<f64>,
    mom: f64,
}

/// Records every training batch's hyper-parameters and counts fits; keeps a copy of the named variables
/// at the start of each fit.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    at_fit_start: Arc<Mutex<Vec<HashMap<String, Tensor>>>>,
    fits: usize,
}

impl Callback for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn order(&self) -> i32 {
        100
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        match event {
            Event::BeforeFit => {
                self.fits += 1;
                self.at_fit_start.lock().unwrap().push(snapshot(learn));
            }
            Event::BeforeBatch if learn.training => {
                self.seen.lock().unwrap().push(Seen {
                    fit: self.fits,
                    epoch: learn.epoch_offset + learn.epoch,
                    iter: learn.iter,
                    lrs: learn.opt.lrs().to_vec(),
                    mom: learn.opt.mom,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// The recorder and what it fills: per-step hyper-parameters and the variables at each fit's start.
type Recording = (
    Box<dyn Callback>,
    Shared<Seen>,
    Shared<HashMap<String, Tensor>>,
);

fn recorder() -> Recording {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let starts = Arc::new(Mutex::new(Vec::new()));
    let cb = Recorder {
        seen: seen.clone(),
        at_fit_start: starts.clone(),
        fits: 0,
    };
    (Box::new(cb), seen, starts)
}

fn snapshot(learn: &Learn) -> HashMap<String, Tensor> {
    learn
        .model
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

/// fastai's `combined_cos(pct, lr/div, lr, lr/div_final)` at `pos`, transcribed independently of
/// mix-tch (float32 piece boundaries as `combine_scheds` keeps them).
fn fastai_lr(lr_max: f64, pct: f64, div: f64, div_final: f64, pos: f64) -> f64 {
    let (p, b1) = (pos as f32, pct as f32);
    if p < b1 {
        sched_cos(lr_max / div, lr_max, f64::from(p / b1))
    } else {
        let end = b1 + (1.0 - pct) as f32;
        sched_cos(lr_max, lr_max / div_final, f64::from((p - b1) / (end - b1)))
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-30)
}

/// Writes torchvision-named ResNet18 body weights (plus an `fc` layer, as torchvision saves it) drawn
/// from another seed, as a pretrained file.
fn pretrained_file(dir: &Path) -> std::path::PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let model = VisionModel::new(1000, Device::Cpu, &mut rng).unwrap();
    let mut named: Vec<(String, Tensor)> = model
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    named.push((
        "fc.weight".into(),
        Tensor::zeros([1000, 512], (mix_tch::tch::Kind::Float, Device::Cpu)),
    ));
    named.push((
        "fc.bias".into(),
        Tensor::zeros([1000], (mix_tch::tch::Kind::Float, Device::Cpu)),
    ));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join("resnet18.safetensors");
    Tensor::write_safetensors(&named, &path).unwrap();
    path
}

#[test]
fn parameter_groups_follow_fastais_resnet_split() {
    assert_eq!(N_GROUPS, 3);
    for (name, group) in [
        ("conv1.weight", 0),
        ("bn1.bias", 0),
        ("layer1.0.conv1.weight", 0),
        ("layer2.1.bn2.weight", 0),
        ("layer3.0.downsample.0.weight", 1),
        ("layer4.1.conv2.weight", 1),
        ("head.2.weight", 2),
        ("head.8.weight", 2),
    ] {
        assert_eq!(param_group(name), group, "{name}");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = VisionModel::new(3, Device::Cpu, &mut rng).unwrap();
    let counts = (0..3)
        .map(|g| model.params().iter().filter(|p| p.group == g).count())
        .collect::<Vec<_>>();
    // conv1+bn1 (3) + layer1 (2 blocks x 6) + layer2 (6 + 6 + downsample 3) = 30; layer3 and layer4 30;
    // the head: 2 BatchNorms (4) and 2 linear weights.
    assert_eq!(counts, [30, 30, 6]);
}

#[test]
fn even_mults_and_slices_spread_rates_like_fastai() {
    // fastai: even_mults(1e-5, 1e-3, 3) == [1e-5, 1e-4, 1e-3]; slice(1e-3) == [1e-4, 1e-4, 1e-3].
    let v = even_mults(1e-5, 1e-3, 3);
    assert!(
        close(v[0], 1e-5) && close(v[1], 1e-4) && close(v[2], 1e-3),
        "{v:?}"
    );
    assert_eq!(LrSpread::Tenth.per_group(1e-3, 3), vec![1e-4, 1e-4, 1e-3]);
    assert_eq!(LrSpread::Same.per_group(2e-3, 3), vec![2e-3; 3]);
    assert_eq!(LrSpread::From(1e-6).per_group(1e-2, 1), vec![1e-6]);
}

#[test]
fn a_sliced_lr_max_schedules_every_group_step_by_step() {
    let mut learn = learner(small_config(2, 32), 16, 8, 4);
    let sched = OneCycle {
        lr_max: 1e-3,
        spread: LrSpread::From(1e-5),
        ..OneCycle::default()
    };
    let (cb, seen, _) = recorder();
    learn.fit_one_cycle(2, sched, vec![cb]).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 8);
    let peaks = even_mults(1e-5, 1e-3, 3);
    for (i, s) in seen.iter().enumerate() {
        let pos = i as f64 / 8.0;
        for (g, &peak) in peaks.iter().enumerate() {
            let want = fastai_lr(peak, 0.25, 25.0, 1e5, pos);
            assert!(
                close(s.lrs[g], want),
                "step {i} group {g}: {} vs {want}",
                s.lrs[g]
            );
        }
        // The recorder logs the last group's rate, as fastai's `opt.hypers[-1]['lr']`.
        assert_eq!(learn.steps()[i].lr, s.lrs[2]);
    }
}

#[test]
fn fine_tune_runs_fastais_two_fits_and_unfreezes_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let file = pretrained_file(dir.path());
    let mut cfg = small_config(2, 32);
    cfg.pretrained = Some(file.clone());
    let mut learn = learner(cfg, 16, 8, 4);
    let loaded: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .collect();
    let (cb, seen, starts) = recorder();
    let ft = FineTune::default();
    learn.fine_tune(2, ft, vec![cb]).unwrap();
    let seen = seen.lock().unwrap().clone();
    // One frozen epoch of 4 steps, then 2 unfrozen epochs of 4.
    assert_eq!(seen.len(), 12);
    assert_eq!(
        seen.iter().map(|s| (s.fit, s.epoch)).collect::<Vec<_>>(),
        [vec![(1, 0); 4], vec![(2, 1); 4], vec![(2, 2); 4]].concat()
    );
    // Frozen fit: fit_one_cycle(1, slice(2e-3), pct_start=0.99): groups at [2e-4, 2e-4, 2e-3], div 25.
    for (i, s) in seen[..4].iter().enumerate() {
        let pos = i as f64 / 4.0;
        for (g, peak) in [2e-4, 2e-4, 2e-3].into_iter().enumerate() {
            let want = fastai_lr(peak, 0.99, 25.0, 1e5, pos);
            assert!(
                close(s.lrs[g], want),
                "frozen step {i} group {g}: {} vs {want}",
                s.lrs[g]
            );
        }
    }
    // Unfrozen fit: fit_one_cycle(2, slice(1e-3/100, 1e-3), pct_start=0.3, div=5).
    let peaks = even_mults(1e-5, 1e-3, 3);
    for (i, s) in seen[4..].iter().enumerate() {
        let pos = i as f64 / 8.0;
        for (g, &peak) in peaks.iter().enumerate() {
            let want = fastai_lr(peak, 0.3, 5.0, 1e5, pos);
            assert!(
                close(s.lrs[g], want),
                "unfrozen step {i} group {g}: {} vs {want}",
                s.lrs[g]
            );
        }
    }
    // The body's convolutions did not move in the frozen fit (still the file's, bit for bit) and did
    // in the unfrozen one; BatchNorm and the head trained in both.
    let starts = starts.lock().unwrap();
    let (start, second) = (&starts[0], &starts[1]);
    for conv in [
        "conv1.weight",
        "layer1.0.conv1.weight",
        "layer4.1.conv2.weight",
    ] {
        assert!(
            same(&start[conv], &loaded[conv]),
            "{conv} is the file's at the start"
        );
        assert!(
            same(&second[conv], &loaded[conv]),
            "{conv} unchanged after the frozen fit"
        );
    }
    assert!(!same(&second["bn1.weight"], &start["bn1.weight"]));
    assert!(!same(&second["head.8.weight"], &start["head.8.weight"]));
    let end = snapshot(learn.learn());
    for conv in [
        "conv1.weight",
        "layer1.0.conv1.weight",
        "layer4.1.conv2.weight",
    ] {
        assert!(
            !same(&end[conv], &loaded[conv]),
            "{conv} trained after unfreezing"
        );
    }
    assert!(!learn.learn().model.is_frozen());
    // One history: 12 steps numbered from 0, epochs 0..3.
    assert_eq!(
        learn.steps().iter().map(|s| s.step).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!(
        learn.epochs().iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn a_pretrained_fit_keeps_the_body_convolutions_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = pretrained_file(dir.path());
    let mut cfg = small_config(2, 32);
    cfg.pretrained = Some(file.clone());
    let mut learn = learner(cfg, 8, 4, 4);
    let before = snapshot(learn.learn());
    learn.fit_one_cycle(1, OneCycle::default(), vec![]).unwrap();
    let after = snapshot(learn.learn());
    let loaded: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .collect();
    for p in learn.learn().model.params() {
        if p.in_body && p.kind == mix_tch::model::ParamKind::Weight {
            assert!(
                same(&after[&p.name], &loaded[&p.name]),
                "{} changed",
                p.name
            );
        }
    }
    for moved in [
        "bn1.weight",
        "layer3.0.bn2.bias",
        "bn1.running_mean",
        "head.4.weight",
        "head.2.bias",
    ] {
        assert!(
            !same(&after[moved], &before[moved]),
            "{moved} did not train"
        );
    }
}

#[test]
fn lr_find_stops_on_divergence_and_restores_everything() {
    let cfg = small_config(2, 32);
    let mut probe = learner(cfg.clone(), 16, 8, 4);
    let before = snapshot(probe.learn());
    let found = probe
        .lr_find(LrFind {
            start_lr: 1e-4,
            end_lr: 1e4,
            num_it: 60,
            stop_div: true,
        })
        .unwrap();
    let n = found.lrs.len();
    assert!(
        n < 60,
        "a learning rate of 1e4 must diverge before 60 steps, ran {n}"
    );
    assert!(n >= 6, "ran only {n} steps");
    for (i, &lr) in found.lrs.iter().enumerate() {
        let want = 1e-4 * (1e4f64 / 1e-4).powf(i as f64 / 60.0);
        assert!(close(lr, want), "step {i}: lr {lr}, want {want}");
    }
    // Stopped because the smoothed loss passed 4x its minimum (or turned non-finite).
    let last = *found.losses.last().unwrap();
    let best = found.losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        !last.is_finite() || last > 4.0 * best || n < 60,
        "{:?}",
        found.losses
    );
    // Weights and BatchNorm buffers are back, bit for bit, and no history is left behind.
    let after = snapshot(probe.learn());
    for (name, t) in &before {
        assert!(same(t, &after[name]), "{name} was not restored");
    }
    assert!(probe.steps().is_empty() && probe.epochs().is_empty());
    // The optimizer too: a fit after lr_find is the same fit as without it.
    probe.fit_one_cycle(1, OneCycle::default(), vec![]).unwrap();
    let mut fresh = learner(cfg, 16, 8, 4);
    fresh.fit_one_cycle(1, OneCycle::default(), vec![]).unwrap();
    assert_eq!(probe.steps(), fresh.steps());
}

#[test]
fn valley_follows_fastais_rule() {
    use mix_tch::learner::{suggest_valley, valley_index};
    // Expected indices from fastai 2.8.12's `valley` run on the same lists (Python).
    let losses = [
        3.0, 3.1, 3.0, 2.9, 2.7, 2.5, 2.2, 1.9, 1.5, 1.2, 1.1, 1.0, 1.3, 2.0, 4.0,
    ];
    assert_eq!(valley_index(&losses), 4);
    // A valley from the very first point: fastai's max_start is -1 there.
    assert_eq!(valley_index(&[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]), 2);
    assert_eq!(valley_index(&[2.0, 1.0]), 1);
    assert_eq!(valley_index(&[2.0]), 0);
    // suggest_valley drops the first num_it/10 and last 5 points and stops at the first NaN.
    let lrs: Vec<f64> = (0..20).map(|i| 10f64.powi(i - 10)).collect();
    let mut l: Vec<f64> = (0..20).map(|i| 20.0 - i as f64).collect();
    l[12] = f64::NAN;
    let (lr, loss) = suggest_valley(&lrs, &l, 20).unwrap();
    // Kept: indices 2..12 (NaN at 12), strictly decreasing: fastai's valley picks the 4th of them.
    assert_eq!((lr, loss), (lrs[5], l[5]));
    assert_eq!(suggest_valley(&lrs[..6], &l[..6], 100), None);
}

#[test]
fn predict_gives_probabilities_and_the_ranked_classes() {
    let cfg = small_config(3, 32);
    let mut learn = learner(cfg, 12, 6, 4);
    learn.fit_one_cycle(1, OneCycle::default(), vec![]).unwrap();
    let (images, _) = common::striped_images(5, 3, 32, 4);
    let aug = mix_tch::aug_transforms(32);
    let probs = mix_tch::predict_probs(
        &learn.learn().model,
        images.view(),
        Some(&aug),
        Some((
            mix_tch::augment::IMAGENET_MEAN,
            mix_tch::augment::IMAGENET_STD,
        )),
    )
    .unwrap();
    assert_eq!(probs.dim(), (5, 3));
    for row in probs.outer_iter() {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{row:?}");
        let ranked = mix_tch::top_k(row.as_slice().unwrap(), 2);
        assert_eq!(ranked.len(), 2);
        assert!(ranked[0].1 >= ranked[1].1);
        let argmax = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(ranked[0].0, argmax);
    }
    // Evaluation mode: the same images give the same probabilities every time.
    let again = mix_tch::predict_probs(
        &learn.learn().model,
        images.view(),
        Some(&aug),
        Some((
            mix_tch::augment::IMAGENET_MEAN,
            mix_tch::augment::IMAGENET_STD,
        )),
    )
    .unwrap();
    assert_eq!(probs, again);
}
