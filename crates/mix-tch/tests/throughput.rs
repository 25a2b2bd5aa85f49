//! The learner's fast paths keep its numbers: losses read back every N steps, validation sums kept on the
//! device, a batch kept on the device; `timings.json` accounts for the epoch; NaN inputs stop a run
//! (channels_last is tests/layout.rs).

mod common;

use common::{small_config, small_data};
use mix_core::MixUp;
use mix_tch::learner::TIMINGS_FILE;
use mix_tch::recorder::EpochTiming;
use mix_tch::{
    BatchSource, Callback, Error, Event, InMemory, Learn, Learner, LearnerConfig, MixCallback,
    OneCycle, Resident, Result,
};

fn learner(cfg: LearnerConfig) -> Learner {
    let (train, valid) = small_data(24, 10, cfg.n_classes, 4);
    Learner::new(Box::new(train), Box::new(valid), cfg).unwrap()
}

fn mixup() -> Box<dyn Callback> {
    Box::new(MixCallback::new(Box::new(MixUp::new(0.4).unwrap())))
}

fn fit(cfg: LearnerConfig) -> Learner {
    let mut learn = learner(cfg);
    learn
        .fit_one_cycle(2, OneCycle::default(), vec![mixup()])
        .unwrap();
    learn
}

#[test]
fn reading_losses_every_n_steps_changes_no_number() {
    // 6 training steps per epoch: 4 leaves a partial group at the end of each pass, 1 reads every step.
    let runs: Vec<Learner> = [1, 4, 100]
        .into_iter()
        .map(|n| {
            let mut cfg = small_config(3, 32);
            cfg.sync_every = n;
            fit(cfg)
        })
        .collect();
    assert_eq!(runs[0].steps().len(), 12);
    for other in &runs[1..] {
        assert_eq!(runs[0].steps(), other.steps(), "step history");
        assert_eq!(
            runs[0]
                .epochs()
                .iter()
                .map(|e| (e.train_loss, e.valid_loss, e.error_rate))
                .collect::<Vec<_>>(),
            other
                .epochs()
                .iter()
                .map(|e| (e.train_loss, e.valid_loss, e.error_rate))
                .collect::<Vec<_>>(),
            "epoch rows"
        );
    }
    // The step numbers count the run's steps in order.
    let numbers: Vec<usize> = runs[1].steps().iter().map(|s| s.step).collect();
    assert_eq!(numbers, (0..12).collect::<Vec<_>>());
}

/// Recounts the validation loss and errors on the host, batch by batch.
struct HostRecount(std::sync::Arc<std::sync::Mutex<(f64, f64, usize)>>);

impl Callback for HostRecount {
    fn name(&self) -> &str {
        "host-recount"
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event == Event::AfterLoss && !learn.training {
            let n = learn.labels.size()[0] as usize;
            let loss = learn.loss_grad.double_value(&[]);
            let pred: Vec<i64> = Vec::try_from(learn.pred.argmax(-1, false)).unwrap();
            let labels: Vec<i64> = Vec::try_from(&learn.labels).unwrap();
            let wrong = pred.iter().zip(&labels).filter(|(p, l)| p != l).count();
            let mut sums = self.0.lock().unwrap();
            sums.0 += loss * n as f64;
            sums.1 += wrong as f64;
            sums.2 += n;
        }
        Ok(())
    }
}

#[test]
fn validation_sums_on_the_device_match_a_host_recount() {
    let mut learn = fit(small_config(3, 32));
    let sums = std::sync::Arc::new(std::sync::Mutex::new((0.0, 0.0, 0)));
    learn.add_callback(Box::new(HostRecount(sums.clone())));
    let (loss, error_rate) = learn.validate().unwrap();
    let (host_loss, host_wrong, n) = *sums.lock().unwrap();
    assert_eq!(n, 10);
    assert_eq!(loss, host_loss / n as f64);
    assert_eq!(error_rate, host_wrong / n as f64);
}

#[test]
fn timings_account_for_the_epoch_and_are_written_beside_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(3, 32);
    cfg.run_dir = Some(dir.path().to_path_buf());
    cfg.progress = false;
    let learn = fit(cfg);
    let written: Vec<EpochTiming> =
        serde_json::from_slice(&std::fs::read(dir.path().join(TIMINGS_FILE)).unwrap()).unwrap();
    assert_eq!(written, learn.timings());
    assert_eq!(written.len(), 2);
    for (i, t) in written.iter().enumerate() {
        assert_eq!((t.epoch, t.device.as_str()), (i, "cpu"));
        // 24 training images in batches of 4 (drop_last), 10 validation images.
        assert_eq!((t.train_items, t.valid_items), (24, 10));
        let phases = t.data_wait_s
            + t.h2d_s
            + t.augment_s
            + t.mixing_s
            + t.forward_backward_s
            + t.optimizer_s
            + t.logging_s;
        assert!(
            t.forward_backward_s > 0.0 && t.optimizer_s > 0.0 && t.mixing_s > 0.0,
            "{t:?}"
        );
        assert!(phases <= t.train_s * 1.001, "{t:?}");
        assert!(
            t.train_s + t.valid_s + t.end_epoch_s <= t.epoch_s * 1.001
                && t.logging_s > 0.0
                && t.end_epoch_s > 0.0,
            "{t:?}"
        );
    }
}

/// Replaces the first training batch's inputs by NaN.
struct NanInputs;

impl Callback for NanInputs {
    fn name(&self) -> &str {
        "nan-inputs"
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event == Event::BeforeBatch && learn.training && learn.train_iter == 0 {
            learn.xb = learn.xb.full_like(f64::NAN);
        }
        Ok(())
    }
}

#[test]
fn nan_inputs_stop_the_run_like_a_nan_loss() {
    let mut learn = learner(small_config(3, 32));
    let err = learn
        .fit_one_cycle(2, OneCycle::default(), vec![Box::new(NanInputs)])
        .unwrap_err();
    match err {
        Error::NonFiniteLoss {
            value, epoch, step, ..
        } => {
            assert!(value.is_nan());
            assert_eq!((epoch, step), (0, 0));
        }
        other => panic!("expected a non-finite loss error, found {other}"),
    }
    // Nothing of the NaN step reached the history.
    assert!(learn.steps().is_empty());
}

#[test]
fn a_resident_batch_trains_like_the_same_batch_from_the_host() {
    let (images, labels) = common::striped_images(4, 3, 32, 1);
    let batch = mix_data::Batch {
        images: images.clone(),
        labels: labels.clone(),
    };
    let tiled = ndarray::concatenate(
        ndarray::Axis(0),
        &[images.view(), images.view(), images.view()],
    )
    .unwrap();
    let tiled_labels: Vec<usize> = labels.iter().cycle().take(12).copied().collect();
    let host = InMemory::new(tiled, tiled_labels, 4, None, true).unwrap();
    let host_valid = InMemory::new(images, labels, 4, None, false).unwrap();
    let device = mix_tch::tch::Device::Cpu;
    let resident = Resident::new(&batch, device, 3).unwrap();
    let resident_valid = Resident::new(&batch, device, 1).unwrap();
    let fit = |train: Box<dyn BatchSource>, valid: Box<dyn BatchSource>| {
        let mut cfg = small_config(3, 32);
        cfg.device = mix_tch::DeviceChoice::Cpu;
        let mut learn = Learner::new(train, valid, cfg).unwrap();
        learn
            .fit_one_cycle(2, OneCycle::default(), vec![mixup()])
            .unwrap();
        learn
    };
    let a = fit(Box::new(host), Box::new(host_valid));
    let b = fit(Box::new(resident), Box::new(resident_valid));
    assert_eq!(a.steps().len(), 6);
    assert_eq!(a.steps(), b.steps());
    assert_eq!(a.epochs()[1].valid_loss, b.epochs()[1].valid_loss);
    // No host batch, no copy: the resident run's data phases are (nearly) empty.
    assert_eq!(b.timings()[0].h2d_s, 0.0);
}

#[test]
fn resident_labels_outside_the_head_are_reported() {
    let (images, _) = common::striped_images(4, 3, 32, 1);
    let batch = mix_data::Batch {
        images,
        labels: vec![0, 1, 2, 9],
    };
    let device = mix_tch::tch::Device::Cpu;
    let mut cfg = small_config(3, 32);
    cfg.device = mix_tch::DeviceChoice::Cpu;
    let mut learn = Learner::new(
        Box::new(Resident::new(&batch, device, 2).unwrap()),
        Box::new(Resident::new(&batch, device, 1).unwrap()),
        cfg,
    )
    .unwrap();
    let err = learn
        .fit_one_cycle(1, OneCycle::default(), vec![])
        .unwrap_err();
    assert!(err.to_string().contains("found 9"), "{err}");
}
