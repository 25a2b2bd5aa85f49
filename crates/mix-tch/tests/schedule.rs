//! fit_one_cycle's schedule against fastai's formulas.

mod common;

use mix_tch::schedule::sched_cos;
use mix_tch::tch::Tensor;
use mix_tch::OneCycle;

fn fastai_values(pct: f64, start: f64, middle: f64, end: f64, n: usize) -> Vec<(f64, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sched.safetensors");
    let args: Vec<String> = [pct, start, middle, end]
        .iter()
        .map(|v| format!("{v:e}"))
        .chain([n.to_string()])
        .collect();
    let mut os: Vec<&std::ffi::OsStr> = vec![out.as_os_str()];
    os.extend(args.iter().map(|a| std::ffi::OsStr::new(a.as_str())));
    common::run_python("fastai_sched.py", &os);
    let t: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect();
    let pos = Vec::<f64>::try_from(&t["pos"]).unwrap();
    let val = Vec::<f64>::try_from(&t["value"]).unwrap();
    pos.into_iter().zip(val).collect()
}

#[test]
fn one_cycle_lr_and_mom_match_fastai_combined_cos() {
    let s = OneCycle::default();
    let lr = s.lr_sched();
    let mom = s.mom_sched();
    for (sched, name) in [(lr, "lr"), (mom, "mom")] {
        for (pos, want) in fastai_values(sched.pct, sched.start, sched.middle, sched.end, 200) {
            let got = sched.at(pos);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{name} at {pos}: {got} vs fastai {want}"
            );
        }
    }
}

#[test]
fn one_cycle_defaults_are_fastais() {
    let s = OneCycle::default();
    assert_eq!(
        (s.lr_max, s.div, s.div_final, s.pct_start, s.moms, s.wd),
        (1e-3, 25.0, 1e5, 0.25, (0.95, 0.85, 0.95), 0.01)
    );
    let total = 400;
    let (lr0, mom0) = s.at_step(0, total);
    assert_eq!((lr0, mom0), (1e-3 / 25.0, 0.95));
    let (lr_peak, mom_low) = s.at_step(100, total);
    assert!((lr_peak - 1e-3).abs() < 1e-15 && (mom_low - 0.85).abs() < 1e-15);
    let (lr_end, mom_end) = (s.lr_sched().at(1.0), s.mom_sched().at(1.0));
    assert!((lr_end / 1e-8 - 1.0).abs() < 1e-9 && (mom_end - 0.95).abs() < 1e-15);
    // Half way through each piece the cosine is at the midpoint.
    let mid1 = s.lr_sched().at(0.125);
    assert!((mid1 - (4e-5 + 1e-3) / 2.0).abs() < 1e-15);
    let mid2 = s.mom_sched().at(0.625);
    assert!((mid2 - 0.9).abs() < 1e-12);
    // Warm-up rises, annealing falls, momentum mirrors it.
    let lrs: Vec<f64> = (0..total).map(|i| s.at_step(i, total).0).collect();
    assert!(lrs[..=100].windows(2).all(|w| w[1] > w[0]));
    assert!(lrs[100..].windows(2).all(|w| w[1] < w[0]));
    let moms: Vec<f64> = (0..total).map(|i| s.at_step(i, total).1).collect();
    assert!(moms[..=100].windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn sched_cos_endpoints() {
    assert_eq!(sched_cos(2.0, 5.0, 0.0), 2.0);
    assert!((sched_cos(2.0, 5.0, 1.0) - 5.0).abs() < 1e-15);
    assert!((sched_cos(2.0, 5.0, 0.5) - 3.5).abs() < 1e-15);
}

#[test]
fn invalid_schedules_are_rejected() {
    for bad in [
        OneCycle {
            pct_start: 1.0,
            ..OneCycle::default()
        },
        OneCycle {
            lr_max: 0.0,
            ..OneCycle::default()
        },
        OneCycle {
            moms: (0.95, 1.2, 0.95),
            ..OneCycle::default()
        },
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("expected a one-cycle schedule"), "{err}");
    }
}
