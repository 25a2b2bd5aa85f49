//! The learner around a caller's model, and the callbacks it registers: a tiny non-ResNet model trains
//! through the same loop; the best model follows the monitored metric; the event log has a line per step
//! and epoch and is appended on resume; timm's soft targets and `mixup_off_epoch` in the mix callback.

mod common;

use common::{small_config, small_data, test_device};
use mix_core::{MixConfig, MixMode, Mixer};
use mix_tch::checkpoint::{BestInfo, BEST_DIR, BEST_FILE};
use mix_tch::tch::Tensor;
use mix_tch::{
    Callback, Cancel, Event, Learn, Learner, LearnerConfig, LossFunc, MixCallback, Model, Monitor,
    OneCycle, Result, SoftTargetCrossEntropy, TinyNet,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn tiny_learner(cfg: LearnerConfig, n_train: usize, n_valid: usize, bs: usize) -> Learner {
    let (train, valid) = small_data(n_train, n_valid, cfg.n_classes, bs);
    let model = TinyNet::new(
        cfg.n_classes,
        test_device(),
        &mut ChaCha8Rng::seed_from_u64(1),
    );
    Learner::with_model(Box::new(train), Box::new(valid), Box::new(model), cfg).unwrap()
}

const SCHED: OneCycle = OneCycle {
    lr_max: 3e-2,
    spread: mix_tch::LrSpread::Same,
    div: 25.0,
    div_final: 1e5,
    pct_start: 0.25,
    moms: (0.95, 0.85, 0.95),
    wd: 0.01,
};

#[test]
fn a_tiny_conv_net_trains_through_the_same_learner() {
    let mut cfg = small_config(2, 32);
    cfg.aug = None;
    let mut learn = tiny_learner(cfg, 16, 8, 4);
    let before = learn.learn().model.variables()["conv.weight"].copy();
    learn.fit_one_cycle(8, SCHED, vec![]).unwrap();
    let losses: Vec<f64> = learn.steps().iter().map(|s| s.loss).collect();
    assert_eq!(losses.len(), 32);
    let first = losses[..4].iter().sum::<f64>() / 4.0;
    let last = losses[losses.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(
        last < 0.8 * first,
        "loss did not fall: first steps {first:.4}, last steps {last:.4} ({losses:?})"
    );
    let after = &learn.learn().model.variables()["conv.weight"];
    assert!(
        common::max_abs_diff(&before, after) > 0.0,
        "the body did not train"
    );
    // Two parameter groups, as the model says: the schedule sets a rate for each.
    assert_eq!(learn.learn().opt.n_groups(), 2);
}

#[test]
fn a_model_for_another_device_or_class_count_is_refused() {
    let cfg = small_config(3, 32);
    let (train, valid) = small_data(8, 4, 3, 4);
    let model = TinyNet::new(2, test_device(), &mut ChaCha8Rng::seed_from_u64(1));
    let err = Learner::with_model(Box::new(train), Box::new(valid), Box::new(model), cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 classes, found 2"), "{err}");
}

#[test]
fn the_default_callbacks_follow_the_config() {
    let mut cfg = small_config(2, 32);
    assert!(tiny_learner(cfg.clone(), 8, 4, 4)
        .callback_names()
        .is_empty());
    let dir = tempfile::tempdir().unwrap();
    cfg.run_dir = Some(dir.path().to_path_buf());
    cfg.progress = true;
    cfg.save_best = Some(Monitor::ErrorRate);
    let mut learn = tiny_learner(cfg, 8, 4, 4);
    assert_eq!(
        learn.callback_names(),
        [
            "ProgressTable",
            "CSVLogger",
            "Checkpointer",
            "SaveModelCallback",
            "EventLog",
            "TimingsFile"
        ]
    );
    assert_eq!(learn.remove_callback("EventLog"), 1);
    learn.fit_one_cycle(1, SCHED, vec![]).unwrap();
    assert!(!dir.path().join("events.jsonl").exists());
    assert!(dir.path().join("metrics.csv").exists());
}

fn read_best(run: &Path) -> BestInfo {
    let bytes = std::fs::read(run.join(BEST_DIR).join(BEST_FILE)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The index of the first best value, as a strict "improves" keeps it.
fn first_best(values: &[f64], lower_is_better: bool) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if (lower_is_better && v < values[best]) || (!lower_is_better && v > values[best]) {
            best = i;
        }
    }
    best
}

#[test]
fn the_best_model_follows_the_monitored_metric() {
    for (monitor, lower) in [
        (Monitor::ValidLoss, true),
        (Monitor::ErrorRate, true),
        (Monitor::Accuracy, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small_config(2, 32);
        cfg.aug = None;
        cfg.run_dir = Some(dir.path().to_path_buf());
        cfg.save_best = Some(monitor);
        let mut learn = tiny_learner(cfg, 16, 8, 4);
        learn.fit_one_cycle(5, SCHED, vec![]).unwrap();
        let values: Vec<f64> = learn.epochs().iter().map(|r| monitor.value(r)).collect();
        let want = first_best(&values, lower);
        let best = read_best(dir.path());
        assert_eq!(best.metric, monitor.name());
        assert_eq!(best.metric.parse::<Monitor>().unwrap(), monitor);
        assert_eq!((best.epoch, best.value), (want, values[want]), "{values:?}");
        let model = dir.path().join(BEST_DIR).join("model.safetensors");
        assert_eq!(mix_tch::checkpoint::file_sum(&model).unwrap(), best.model);
        let names: Vec<String> = Tensor::read_safetensors(&model)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        // The last checkpoint is kept beside it.
        assert!(dir.path().join("checkpoints/epoch-0005").exists());
    }
}

/// The best model written in the epoch of a checkpoint is that checkpoint's model file under a second
/// name, so it survives the checkpoint's removal; without a checkpoint it is written on its own.
#[test]
fn the_best_model_shares_the_checkpoints_file_and_is_written_alone_without_one() {
    let best_and_checkpoint = |remove_checkpointer: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small_config(2, 32);
        cfg.aug = None;
        cfg.run_dir = Some(dir.path().to_path_buf());
        cfg.save_best = Some(Monitor::ValidLoss);
        let mut learn = tiny_learner(cfg, 16, 8, 4);
        if remove_checkpointer {
            assert_eq!(learn.remove_callback("Checkpointer"), 1);
        }
        learn.fit_one_cycle(1, SCHED, vec![]).unwrap();
        let mut weights: Vec<(String, Tensor)> =
            learn.learn().model.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        (dir, weights)
    };

    let (dir, weights) = best_and_checkpoint(false);
    let best = dir.path().join(BEST_DIR).join("model.safetensors");
    let checkpoint = dir.path().join("checkpoints/epoch-0001/model.safetensors");
    assert_eq!(
        std::fs::read(&best).unwrap(),
        std::fs::read(&checkpoint).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(inode(&best), inode(&checkpoint), "one file, two names");
    }
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let info = read_best(dir.path());
    assert_eq!(mix_tch::checkpoint::file_sum(&best).unwrap(), info.model);
    assert_same_weights(&best, &weights);

    let (alone, alone_weights) = best_and_checkpoint(true);
    assert!(!alone.path().join("checkpoints").exists());
    let best = alone.path().join(BEST_DIR).join("model.safetensors");
    assert_eq!(
        mix_tch::checkpoint::file_sum(&best).unwrap(),
        read_best(alone.path()).model
    );
    assert_same_weights(&best, &alone_weights);
}

/// The tensors of safetensors file `path` are `weights`, by name and value.
fn assert_same_weights(path: &Path, weights: &[(String, Tensor)]) {
    let mut read: Vec<(String, Tensor)> = Tensor::read_safetensors(path).unwrap();
    read.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(read.len(), weights.len());
    for ((n, t), (m, u)) in read.iter().zip(weights) {
        assert_eq!(n, m);
        assert!(t.equal(&u.to_device(mix_tch::tch::Device::Cpu)), "{n}");
    }
}

/// Cancels the fit at the first `after_epoch`, as a kill after the first checkpoint would.
struct StopAfterFirstEpoch;

impl Callback for StopAfterFirstEpoch {
    fn name(&self) -> &str {
        "StopAfterFirstEpoch"
    }

    fn on(&mut self, event: Event, _learn: &mut Learn) -> Result<()> {
        match event {
            Event::AfterEpoch => Cancel::Fit.err(),
            _ => Ok(()),
        }
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_event_log_has_a_line_per_step_and_epoch_and_is_appended_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(2, 32);
    cfg.run_dir = Some(dir.path().to_path_buf());
    cfg.save_best = Some(Monitor::ValidLoss);
    // Fewer steps per epoch than sync_every: the losses are read back only at the end of each pass.
    cfg.sync_every = 16;
    let mut first = tiny_learner(cfg.clone(), 12, 4, 4);
    first
        .fit_one_cycle(3, SCHED, vec![Box::new(StopAfterFirstEpoch)])
        .unwrap();
    let mut second = tiny_learner(cfg, 12, 4, 4);
    second.resume(vec![]).unwrap();

    let log = lines(&dir.path().join("events.jsonl"));
    let kinds: Vec<&str> = log.iter().map(|l| l["event"].as_str().unwrap()).collect();
    let want = [
        "fit_start",
        "step",
        "step",
        "step",
        "epoch",
        "fit_end",
        "fit_start",
        "resume",
        "step",
        "step",
        "step",
        "epoch",
        "step",
        "step",
        "step",
        "epoch",
        "fit_end",
    ];
    assert_eq!(kinds, want);
    assert_eq!(log[5]["cancelled"], true);
    assert_eq!(log[16]["cancelled"], false);
    assert_eq!(log[7]["epochs_done"], 1);
    // Every step of the run, in order, with the values of steps.csv's rows.
    let steps: Vec<&serde_json::Value> = log.iter().filter(|l| l["event"] == "step").collect();
    for (line, row) in steps.iter().zip(second.steps()) {
        assert_eq!(line["iter"], row.step);
        assert_eq!(line["epoch"], row.epoch);
        assert_eq!(line["loss"].as_f64().unwrap(), row.loss);
        assert_eq!(line["lr"].as_f64().unwrap(), row.lr);
        assert_eq!(line["mom"].as_f64().unwrap(), row.mom);
        assert_eq!(line["lrs"].as_array().unwrap().len(), 2);
        assert!(line["elapsed_s"].as_f64().unwrap() >= 0.0);
    }
    let epochs: Vec<&serde_json::Value> = log.iter().filter(|l| l["event"] == "epoch").collect();
    let values: Vec<f64> = second.epochs().iter().map(|r| r.valid_loss).collect();
    for (i, (line, row)) in epochs.iter().zip(second.epochs()).enumerate() {
        assert_eq!(line["epoch"], row.epoch);
        assert_eq!(line["valid_loss"].as_f64().unwrap(), row.valid_loss);
        assert_eq!(line["error_rate"].as_f64().unwrap(), row.error_rate);
        let best_so_far = first_best(&values[..=i], true) == i;
        assert_eq!(line["best"], best_so_far, "epoch {i}: {values:?}");
    }
}

/// timm's `SoftTargetCrossEntropy` on `mixup_target`: `mean_i sum_c -t[i, c] log_softmax(pred)[i, c]`
/// with `t = lam * smooth(y) + (1 - lam) * smooth(y[flip])`, computed here from mix-core's `targets`
/// (timm's `mixup_target`) and a log-softmax in plain Rust.
#[test]
fn timm_soft_targets_give_soft_target_cross_entropy() {
    let (n, k, smoothing) = (6usize, 4usize, 0.1f32);
    let mixer = Mixer::new(MixConfig {
        mixup_alpha: Some(1.0),
        cutmix_alpha: Some(1.0),
        mode: MixMode::Elem,
        label_smoothing: smoothing,
        ..MixConfig::default()
    })
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let labels = [0usize, 3, 1, 1, 2, 0];
    let pred: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
    for _ in 0..4 {
        let params = mixer
            .draw(
                mix_core::BatchShape::new(n, 3, mix_core::ImageSize::new(8, 8)),
                &mut rng,
            )
            .unwrap();
        // What the callback does: the soft-target loss encodes, the mix lerps the targets.
        let loss = SoftTargetCrossEntropy {
            smoothing: f64::from(smoothing),
        };
        let idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let y = loss
            .encode_targets(&Tensor::from_slice(&idx), k as i64)
            .unwrap();
        let y = mix_tch::mix::lerp_targets(&params, &y).unwrap();
        let logits = Tensor::from_slice(&pred).view([n as i64, k as i64]);
        let got = loss.loss(&logits, &y).unwrap().double_value(&[]);

        let t = mixer.targets(&params, &labels, k).unwrap();
        let mut want = 0.0f64;
        for i in 0..n {
            let row = &pred[i * k..(i + 1) * k];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            for c in 0..k {
                want -= f64::from(t[(i, c)]) * (row[c] as f64 - lse);
            }
        }
        want /= n as f64;
        assert!((got - want).abs() < 1e-5, "got {got}, want {want}");
    }
}

type Seen = Arc<Mutex<Vec<(bool, usize, String, f64)>>>;

/// Records, per batch after the mix: training or not, the run's epoch, the loss's name, and the smallest
/// row maximum of the targets (soft targets only).
struct Probe(Seen);

impl Callback for Probe {
    fn name(&self) -> &str {
        "Probe"
    }

    fn order(&self) -> i32 {
        1
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event == Event::AfterPred {
            let min_max = if learn.yb.dim() == 2 {
                learn.yb.max_dim(1, false).0.min().double_value(&[])
            } else {
                f64::NAN
            };
            self.0.lock().unwrap().push((
                learn.training,
                learn.epoch_offset + learn.epoch,
                learn.loss_func.name(),
                min_max,
            ));
        }
        Ok(())
    }
}

#[test]
fn a_timm_mixer_mixes_soft_targets_until_its_off_epoch() {
    let smoothing = 0.1f32;
    let mixer = Mixer::new(MixConfig {
        label_smoothing: smoothing,
        mode: MixMode::Elem,
        ..MixConfig::default()
    })
    .unwrap();
    let mut learn = tiny_learner(small_config(3, 32), 12, 6, 6);
    let seen = Seen::default();
    learn
        .fit_one_cycle(
            3,
            SCHED,
            vec![
                Box::new(MixCallback::timm(mixer, Some(2))),
                Box::new(Probe(seen.clone())),
            ],
        )
        .unwrap();
    let on = 1.0 - f64::from(smoothing) + f64::from(smoothing) / 3.0;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3 * (2 + 1));
    for (training, epoch, loss, min_max) in seen.iter() {
        if !training {
            // timm validates with plain cross entropy on class indices.
            assert_eq!(loss, "cross_entropy");
            continue;
        }
        assert_eq!(loss, "soft_target_cross_entropy");
        if *epoch < 2 {
            assert!(*min_max < on - 1e-3, "epoch {epoch} not mixed: {min_max}");
        } else {
            assert!(
                (*min_max - on).abs() < 1e-6,
                "epoch {epoch} mixed: {min_max}"
            );
        }
    }
    // After the fit the learner's own loss is back.
    assert_eq!(learn.learn().loss_func.name(), "cross_entropy");
}
