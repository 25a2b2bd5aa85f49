//! fastai's Adam step and the loss scaler, against the formulas computed independently in f64.

mod common;

use common::test_device;
use mix_tch::model::ParamKind;
use mix_tch::tch::{Kind, Tensor};
use mix_tch::{Adam, AdamConfig, LossScaler, VisionModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn param(values: &[f32]) -> Tensor {
    Tensor::from_slice(values)
        .to_device(test_device())
        .set_requires_grad(true)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(mix_tch::tch::Device::Cpu)).unwrap()
}

/// Sets each parameter's gradient to `g` through backward of `sum(p * g)`.
fn set_grads(params: &[&Tensor], grads: &[Vec<f32>]) {
    let mut loss = Tensor::zeros([], (Kind::Float, test_device()));
    for (p, g) in params.iter().zip(grads) {
        loss += (*p * Tensor::from_slice(g).to_device(test_device())).sum(Kind::Float);
    }
    loss.backward();
}

#[test]
fn adam_step_matches_fastais_formulas() {
    let p_decay = param(&[0.5, -1.0, 2.0]);
    let p_norm = param(&[1.0, 0.25]);
    let mut opt = Adam::from_params(
        vec![
            ("w".into(), p_decay.shallow_clone(), true),
            ("bn".into(), p_norm.shallow_clone(), false),
        ],
        AdamConfig::default(),
    );
    opt.wd = 0.01;
    // fastai's state, computed by hand in f64.
    let mut want: Vec<Vec<f64>> = vec![vec![0.5, -1.0, 2.0], vec![1.0, 0.25]];
    let mut avg = [vec![0.0; 3], vec![0.0; 2]];
    let mut sqr = [vec![0.0; 3], vec![0.0; 2]];
    let steps = [
        (1e-2, 0.95, vec![vec![0.3f32, -0.2, 1.5], vec![-0.7, 0.1]]),
        (3e-2, 0.9, vec![vec![-0.1f32, 0.4, 0.0], vec![0.2, -0.3]]),
        (2e-2, 0.85, vec![vec![0.6f32, 0.6, -2.0], vec![0.05, 0.9]]),
    ];
    for (t, (lr, mom, grads)) in steps.iter().enumerate() {
        let (lr, mom) = (*lr, *mom);
        set_grads(&[&p_decay, &p_norm], grads);
        opt.set_lr(lr);
        opt.mom = mom;
        opt.step().unwrap();
        opt.zero_grad();
        let step = (t + 1) as i32;
        for (i, g) in grads.iter().enumerate() {
            for (j, &gj) in g.iter().enumerate() {
                let gj = gj as f64;
                if i == 0 {
                    want[i][j] *= 1.0 - lr * 0.01;
                }
                avg[i][j] = mom * avg[i][j] + (1.0 - mom) * gj;
                sqr[i][j] = 0.99 * sqr[i][j] + 0.01 * gj * gj;
                let debias1 = (1.0 - mom) * (1.0 - mom.powi(step)) / (1.0 - mom);
                let debias2 = 0.01 * (1.0 - 0.99f64.powi(step)) / 0.01;
                want[i][j] -= lr / debias1 * avg[i][j] / ((sqr[i][j] / debias2).sqrt() + 1e-5);
            }
        }
        for (i, p) in [&p_decay, &p_norm].iter().enumerate() {
            for (got, w) in values(p).iter().zip(&want[i]) {
                assert!(
                    (got - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "step {step}, param {i}: {got} vs {w}"
                );
            }
        }
    }
}

#[test]
fn parameters_without_gradient_are_left_alone() {
    let trained = param(&[1.0, 2.0]);
    let frozen = param(&[3.0]);
    let _ = frozen.set_requires_grad(false);
    let mut opt = Adam::from_params(
        vec![
            ("a".into(), trained.shallow_clone(), true),
            ("b".into(), frozen.shallow_clone(), true),
        ],
        AdamConfig::default(),
    );
    set_grads(&[&trained], &[vec![1.0, 1.0]]);
    opt.set_lr(0.1);
    opt.step().unwrap();
    assert_eq!(values(&frozen), vec![3.0]);
    assert!(values(&trained)[0] < 1.0);
    let (state, steps) = opt.state();
    assert_eq!(steps, HashMap::from([("a".to_owned(), 1)]));
    assert_eq!(state.len(), 2);
}

#[test]
fn weight_decay_skips_batchnorm_parameters() {
    let model = VisionModel::new(3, test_device(), &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let before: Vec<Vec<f64>> = model
        .params()
        .iter()
        .map(|p| values(&p.tensor.flatten(0, -1).narrow(0, 0, 2)))
        .collect();
    // Zero gradients: the Adam update is 0, so only the decoupled decay moves a parameter.
    let loss = model
        .params()
        .iter()
        .map(|p| (&p.tensor * 0.0).sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, test_device())), |a, b| {
            a + b
        });
    loss.backward();
    let mut opt = Adam::new(&model, AdamConfig::default());
    opt.set_lr(1.0);
    opt.wd = 0.1;
    opt.step().unwrap();
    for (p, b) in model.params().iter().zip(&before) {
        let after = values(&p.tensor.flatten(0, -1).narrow(0, 0, 2));
        let factor = if p.kind == ParamKind::Norm { 1.0 } else { 0.9 };
        for (a, b) in after.iter().zip(b) {
            assert!(
                (a - b * factor).abs() <= 1e-6 * b.abs().max(1e-3),
                "{}: {a} vs {b} x {factor}",
                p.name
            );
        }
    }
}

#[test]
fn state_round_trip_continues_identically() {
    let make = || param(&[0.1, 0.2, 0.3]);
    let (p1, p2) = (make(), make());
    let mut a = Adam::from_params(
        vec![("p".into(), p1.shallow_clone(), true)],
        AdamConfig::default(),
    );
    let mut b = Adam::from_params(
        vec![("p".into(), p2.shallow_clone(), true)],
        AdamConfig::default(),
    );
    for opt_p in [(&mut a, &p1), (&mut b, &p2)] {
        set_grads(&[opt_p.1], &[vec![0.5, -0.5, 0.25]]);
        opt_p.0.step().unwrap();
        opt_p.0.zero_grad();
    }
    let (tensors, steps) = a.state();
    let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    let p3 = Tensor::from_slice(&values(&p1).iter().map(|&v| v as f32).collect::<Vec<_>>())
        .to_device(test_device())
        .set_requires_grad(true);
    let mut c = Adam::from_params(
        vec![("p".into(), p3.shallow_clone(), true)],
        AdamConfig::default(),
    );
    c.load_state(&tensors, &steps).unwrap();
    for opt_p in [(&mut b, &p2), (&mut c, &p3)] {
        set_grads(&[opt_p.1], &[vec![-0.1, 0.3, 0.7]]);
        opt_p.0.step().unwrap();
    }
    assert_eq!(values(&p2), values(&p3));
}

#[test]
fn loss_scaler_unscales_skips_and_grows() {
    let mut s = LossScaler {
        growth_interval: 2,
        ..LossScaler::default()
    };
    let g = Tensor::from_slice(&[65536.0f32, -131072.0]).to_device(test_device());
    assert!(s.unscale_and_check(&[g.shallow_clone()]).unwrap());
    assert_eq!(values(&g), vec![1.0, -2.0]);
    let bad = Tensor::from_slice(&[1.0f32, f32::INFINITY]).to_device(test_device());
    assert!(!s.unscale_and_check(&[g.shallow_clone(), bad]).unwrap());
    assert_eq!((s.scale, s.skipped, s.good_steps), (32768.0, 1, 0));
    let nan = Tensor::from_slice(&[f32::NAN]).to_device(test_device());
    assert!(!s.unscale_and_check(&[nan]).unwrap());
    assert_eq!((s.scale, s.skipped), (16384.0, 2));
    for _ in 0..2 {
        assert!(s
            .unscale_and_check(&[Tensor::ones([2], (Kind::Float, test_device()))])
            .unwrap());
    }
    assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    let loss = Tensor::from_slice(&[0.5f32]).to_device(test_device());
    assert_eq!(values(&s.scale_loss(&loss)), vec![16384.0]);
}
