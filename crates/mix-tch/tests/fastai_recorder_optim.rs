//! The recorder's numbers and Adam under fit_one_cycle against fastai's own classes (`AvgSmoothLoss`,
//! `AvgLoss`, `error_rate`, `fastai.optimizer.Adam`, `combined_cos`, `Optimizer.set_hyper`), from
//! tests/fixtures/make_fastai_fixtures.py.

mod oracle_common;

use mix_tch::recorder::SmoothLoss;
use mix_tch::tch::{Device, Kind, Reduction, Tensor};
use mix_tch::{Adam, AdamConfig, FineTune, LrSpread, OneCycle};
use oracle_common::{fixture, floats, ints};
use serde_json::Value;

/// Relative tolerance on the smoothed loss: fastai's float32 arithmetic against our f64.
const SMOOTH_TOL: f64 = 1e-5;

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-12)
}

#[test]
fn smooth_loss_and_train_loss_match_fastai() {
    let doc = fixture("fastai_recorder.json");
    let want_batches = floats(&doc["smooth_after_batch"]);
    let want_epochs = floats(&doc["train_loss"]);
    let mut smooth = SmoothLoss::default();
    let mut k = 0;
    let mut worst = 0.0f64;
    for (e, losses) in doc["train_losses"].as_array().unwrap().iter().enumerate() {
        for loss in floats(losses) {
            smooth.accumulate(loss);
            // fastai keeps the average in a float32 tensor and divides by the float32 debias term
            // (0.0776 after 4 batches), which magnifies its rounding; ours is f64.
            worst = worst.max((smooth.value() - want_batches[k]).abs() / want_batches[k].abs());
            assert!(
                close(smooth.value(), want_batches[k], SMOOTH_TOL),
                "batch {k}: smoothed loss {} vs fastai {}",
                smooth.value(),
                want_batches[k]
            );
            k += 1;
        }
        assert!(
            close(smooth.value(), want_epochs[e], SMOOTH_TOL),
            "epoch {e}: train_loss {} vs fastai {}",
            smooth.value(),
            want_epochs[e]
        );
    }
    assert_eq!(k, want_batches.len());
    eprintln!("largest relative difference from fastai's AvgSmoothLoss: {worst:e}");
}

#[test]
fn valid_loss_and_error_rate_match_fastai() {
    // The learner's accounting (`Learner::record_batch` and `valid_metrics`): the batch's mean loss times
    // its size, argmax errors, both divided by the number of samples at the end of validation.
    let doc = fixture("fastai_recorder.json");
    let (mut loss_sum, mut errors, mut n) = (0.0f64, 0.0f64, 0usize);
    for b in doc["valid_batches"].as_array().unwrap() {
        let labels = Tensor::from_slice(&ints(&b["labels"]));
        let bs = labels.size()[0];
        let logits = Tensor::from_slice(
            &floats(&b["logits"])
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>(),
        )
        .view([bs, -1]);
        let loss = logits
            .cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0)
            .double_value(&[]);
        let want = b["loss"].as_f64().unwrap();
        assert!(
            close(loss, want, 1e-6),
            "batch loss {loss} vs fastai {want}"
        );
        let wrong = logits
            .argmax(-1, false)
            .ne_tensor(&labels)
            .sum(Kind::Float)
            .double_value(&[]);
        loss_sum += loss * bs as f64;
        errors += wrong;
        n += bs as usize;
    }
    let (valid_loss, error_rate) = (loss_sum / n as f64, errors / n as f64);
    let want_loss = doc["valid_loss"].as_f64().unwrap();
    let want_err = doc["error_rate"].as_f64().unwrap();
    assert!(
        close(valid_loss, want_loss, 1e-6),
        "valid_loss {valid_loss} vs fastai {want_loss}"
    );
    assert!(
        (error_rate - want_err).abs() <= 1e-6,
        "error_rate {error_rate} vs fastai {want_err}"
    );
}

fn tensor(values: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(&values.iter().map(|&v| v as f32).collect::<Vec<_>>()).view(shape)
}

fn shape(v: &Value) -> Vec<i64> {
    ints(v)
}

#[test]
fn adam_under_fit_one_cycle_matches_fastai() {
    let doc = fixture("fastai_adam.json");
    let shapes: Vec<Vec<Vec<i64>>> = doc["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_array().unwrap().iter().map(shape).collect())
        .collect();
    // Group g holds a decayed weight and a BatchNorm parameter (no weight decay), as in the fixture.
    let mut params = Vec::new();
    let mut tuples = Vec::new();
    for (g, group) in shapes.iter().enumerate() {
        for (j, s) in group.iter().enumerate() {
            let p = tensor(&floats(&doc["init"][g][j]), s).set_requires_grad(true);
            tuples.push((format!("g{g}.p{j}"), p.shallow_clone(), j == 0, g));
            params.push(p);
        }
    }
    let mut opt = Adam::from_groups(tuples, 3, AdamConfig::default());
    let sched = OneCycle {
        lr_max: 1e-3,
        spread: LrSpread::From(1e-5),
        ..OneCycle::default()
    };
    opt.wd = doc["wd"].as_f64().unwrap();
    assert_eq!(opt.wd, sched.wd);
    let total = doc["total"].as_u64().unwrap() as usize;
    let lr_scheds = sched.lr_scheds(3);
    let mut worst = 0.0f64;
    for (i, step) in doc["steps"].as_array().unwrap().iter().enumerate() {
        let pos = i as f64 / total as f64;
        assert_eq!(pos, step["pos"].as_f64().unwrap());
        let lrs: Vec<f64> = lr_scheds.iter().map(|s| s.at(pos)).collect();
        for (got, want) in lrs.iter().zip(floats(&step["lrs"])) {
            assert!(
                close(*got, want, 1e-12),
                "step {i}: lr {got} vs fastai {want}"
            );
        }
        let (_, mom) = sched.at_step(i, total);
        let want_mom = step["mom"].as_f64().unwrap();
        assert!(
            close(mom, want_mom, 1e-12),
            "step {i}: mom {mom} vs fastai {want_mom}"
        );
        opt.set_lrs(&lrs).unwrap();
        opt.mom = mom;
        // Gradients through backward of sum(p * g).
        let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let mut k = 0;
        for (g, group) in shapes.iter().enumerate() {
            for (j, s) in group.iter().enumerate() {
                let grad = tensor(&floats(&step["grads"][g][j]), s);
                loss += (&params[k] * grad).sum(Kind::Float);
                k += 1;
            }
        }
        loss.backward();
        opt.step().unwrap();
        opt.zero_grad();
        let mut k = 0;
        for (g, group) in shapes.iter().enumerate() {
            for j in 0..group.len() {
                let got =
                    Vec::<f64>::try_from(params[k].to_kind(Kind::Double).flatten(0, -1)).unwrap();
                for (a, b) in got.iter().zip(floats(&step["params"][g][j])) {
                    let rel = (a - b).abs() / b.abs().max(1e-3);
                    worst = worst.max(rel);
                    assert!(
                        rel <= 1e-6,
                        "step {i}, group {g}, param {j}: {a} vs fastai {b}"
                    );
                }
                k += 1;
            }
        }
    }
    eprintln!("largest relative difference from fastai's Adam: {worst:e}");
}

#[test]
fn fine_tune_group_rates_match_fastai_set_hyper() {
    let doc = fixture("fastai_adam.json");
    let ft_doc = &doc["fine_tune"];
    let ft = FineTune {
        base_lr: ft_doc["base_lr"].as_f64().unwrap(),
        lr_mult: ft_doc["lr_mult"].as_f64().unwrap(),
        ..FineTune::default()
    };
    assert_eq!(ft, FineTune::default());
    let phases = [
        (ft.frozen_phase(), "frozen_lrs", "frozen_sched"),
        (ft.unfrozen_phase(), "unfrozen_lrs", "unfrozen_sched"),
    ];
    let positions = floats(&ft_doc["positions"]);
    for (phase, lrs_key, sched_key) in phases {
        let got = phase.group_lr_max(3);
        let want = floats(&ft_doc[lrs_key]);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                close(*g, *w, 1e-15),
                "{lrs_key}: {got:?} vs fastai {want:?}"
            );
        }
        let scheds = phase.lr_scheds(3);
        for (k, &pos) in positions.iter().enumerate() {
            let want = floats(&ft_doc[sched_key][k]);
            for (s, w) in scheds.iter().zip(&want) {
                let g = s.at(pos);
                assert!(
                    close(g, *w, 1e-12),
                    "{sched_key} at {pos}: {g} vs fastai {w}"
                );
            }
        }
    }
}
