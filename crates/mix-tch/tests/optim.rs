//! fastai's Adam step and the loss scaler, against the formulas computed independently in f64; the fused
//! step against the reference loop; the C++ shim's errors and autocast settings.

mod common;

use common::test_device;
use mix_tch::model::ParamKind;
use mix_tch::tch::{Kind, Tensor};
use mix_tch::{ffi, Adam, AdamConfig, LossScaler, VisionModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn param(values: &[f32]) -> Tensor {
    Tensor::from_slice(values)
        .to_device(test_device())
        .set_requires_grad(true)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.flatten(0, -1)
            .to_kind(Kind::Double)
            .to_device(mix_tch::tch::Device::Cpu),
    )
    .unwrap()
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

/// One parameter of the fused-versus-reference runs: shape, group, decayed, and the first step with a
/// gradient (`None`: frozen, never one).
const LAYOUT: [(&[i64], usize, bool, Option<usize>); 7] = [
    (&[4, 3, 3, 3], 0, true, Some(0)),
    (&[4], 0, false, Some(0)),
    (&[6, 4], 1, true, Some(0)),
    (&[6], 1, false, Some(3)),
    (&[5, 6], 2, true, Some(7)),
    (&[5], 2, false, Some(0)),
    (&[3, 3], 2, true, None),
];

fn random_values(n: usize, rng: &mut impl rand::Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().product::<i64>() as usize
}

/// A fresh copy of `values` as a leaf parameter.
fn leaf(values: &[f32], shape: &[i64], trainable: bool) -> Tensor {
    Tensor::from_slice(values)
        .reshape(shape)
        .to_device(test_device())
        .set_requires_grad(trainable)
}

fn optimizer(params: &[Tensor]) -> Adam {
    let tuples = params
        .iter()
        .zip(LAYOUT)
        .enumerate()
        .map(|(i, (p, (_, group, decayed, _)))| {
            (format!("p{i}"), p.shallow_clone(), decayed, group)
        })
        .collect();
    let mut opt = Adam::from_groups(tuples, 3, AdamConfig::default());
    opt.wd = 0.1;
    opt
}

/// Step `t`'s hyper-parameters: learning rates per group and momentum, all changing every step.
fn hypers(t: usize) -> ([f64; 3], f64) {
    let x = t as f64;
    (
        [1e-3 * (1.0 + x), 5e-3 + 1e-4 * x, 2e-2 - 5e-4 * x],
        0.95 - 0.005 * x,
    )
}

/// Gradients for step `t`, generated once and given to every run; `None` where the parameter has none yet.
fn step_grads(steps: usize, rng: &mut impl rand::Rng) -> Vec<Vec<Option<Vec<f32>>>> {
    (0..steps)
        .map(|t| {
            LAYOUT
                .iter()
                .map(|(shape, _, _, first)| match first {
                    Some(first) if t >= *first => Some(random_values(numel(shape), rng)),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// Runs steps `from..to` on `opt` over `params`, fused or by the reference loop.
fn run(
    opt: &mut Adam,
    params: &[Tensor],
    grads: &[Vec<Option<Vec<f32>>>],
    steps: std::ops::Range<usize>,
    fused: bool,
) {
    for t in steps {
        let with_grad: Vec<(&Tensor, Vec<f32>)> = params
            .iter()
            .zip(&grads[t])
            .filter_map(|(p, g)| g.clone().map(|g| (p, g)))
            .collect();
        let (ps, gs): (Vec<&Tensor>, Vec<Vec<f32>>) = with_grad.into_iter().unzip();
        opt.zero_grad();
        let mut loss = Tensor::zeros([], (Kind::Float, test_device()));
        for (p, g) in ps.iter().zip(&gs) {
            let g = Tensor::from_slice(g)
                .reshape(p.size())
                .to_device(test_device());
            loss += (*p * g).sum(Kind::Float);
        }
        loss.backward();
        let (lrs, mom) = hypers(t);
        opt.set_lrs(&lrs).unwrap();
        opt.mom = mom;
        if fused {
            opt.step().unwrap();
        } else {
            opt.step_reference().unwrap();
        }
    }
}

/// Asserts that two runs agree within 1e-6 relative (values below 1e-2 compared against 1e-2).
fn assert_close(what: &str, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{what}: tensor counts");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.size(), w.size(), "{what} {i}: shapes");
        for (a, b) in values(g).iter().zip(values(w)) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-2),
                "{what} {i}: {a} vs {b}"
            );
        }
    }
}

fn assert_same(what: &str, got: &[Tensor], want: &[Tensor]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(values(g), values(w), "{what} {i}");
    }
}

/// The optimizer state as tensors sorted by name, and the step counts.
fn sorted_state(opt: &Adam) -> (Vec<Tensor>, HashMap<String, u64>) {
    let (mut tensors, steps) = opt.state();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors.into_iter().map(|(_, t)| t).collect(), steps)
}

fn copies(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(|p| p.detach().copy()).collect()
}

#[test]
fn fused_step_matches_the_reference_loop_and_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let init: Vec<Vec<f32>> = LAYOUT
        .iter()
        .map(|(shape, ..)| random_values(numel(shape), &mut rng))
        .collect();
    let make = || -> Vec<Tensor> {
        init.iter()
            .zip(LAYOUT)
            .map(|(v, (shape, _, _, first))| leaf(v, shape, first.is_some()))
            .collect()
    };
    let grads = step_grads(20, &mut rng);
    let (fused_params, reference_params) = (make(), make());
    let mut fused = optimizer(&fused_params);
    let mut reference = optimizer(&reference_params);
    for t in 0..10 {
        run(&mut fused, &fused_params, &grads, t..t + 1, true);
        run(&mut reference, &reference_params, &grads, t..t + 1, false);
        assert_close(
            &format!("step {t}, param"),
            &fused_params,
            &reference_params,
        );
    }
    let (fused_state, fused_steps) = sorted_state(&fused);
    let (reference_state, reference_steps) = sorted_state(&reference);
    assert_close("moment", &fused_state, &reference_state);
    assert_eq!(fused_steps, reference_steps);
    // Parameters 3 and 4 started late and the frozen one never moved.
    assert_eq!(
        (fused_steps["p0"], fused_steps["p3"], fused_steps["p4"]),
        (10, 7, 3)
    );
    assert!(!fused_steps.contains_key("p6"));
    assert_eq!(
        values(&fused_params[6]),
        values(&leaf(&init[6], &[3, 3], false))
    );

    // Snapshot, run five steps, restore, run them again: the same numbers, still the reference's.
    let snap = fused.snapshot();
    let saved = copies(&fused_params);
    run(&mut fused, &fused_params, &grads, 10..15, true);
    let first_pass = copies(&fused_params);
    fused.restore(snap);
    for (p, s) in fused_params.iter().zip(&saved) {
        p.detach().copy_(s);
    }
    run(&mut fused, &fused_params, &grads, 10..15, true);
    assert_same("after restore, param", &fused_params, &first_pass);
    run(&mut reference, &reference_params, &grads, 10..15, false);
    assert_close("step 15, param", &fused_params, &reference_params);

    // state/load_state into a fresh optimizer over copies of the parameters, then five more steps.
    let (tensors, steps) = fused.state();
    let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    let loaded_params: Vec<Tensor> = fused_params
        .iter()
        .zip(LAYOUT)
        .map(|(p, (.., first))| p.detach().copy().set_requires_grad(first.is_some()))
        .collect();
    let mut loaded = optimizer(&loaded_params);
    loaded.load_state(&tensors, &steps).unwrap();
    run(&mut fused, &fused_params, &grads, 15..20, true);
    run(&mut loaded, &loaded_params, &grads, 15..20, true);
    run(&mut reference, &reference_params, &grads, 15..20, false);
    assert_same("after load_state, param", &loaded_params, &fused_params);
    assert_close("step 20, param", &fused_params, &reference_params);
    assert_close(
        "step 20, moment",
        &sorted_state(&fused).0,
        &sorted_state(&reference).0,
    );
}

/// The tensors of one direct shim call over one parameter.
struct ShimCase {
    param: Tensor,
    grad: Tensor,
    avg: Tensor,
    sqr: Tensor,
    step: Tensor,
}

impl ShimCase {
    fn new(param: Tensor, grad: Tensor) -> Self {
        let zeros = || Tensor::zeros([2, 3], (Kind::Float, test_device()));
        ShimCase {
            param,
            grad,
            avg: zeros(),
            sqr: zeros(),
            step: Tensor::zeros([], (Kind::Float, test_device())),
        }
    }

    fn step(&self, grads: &[&Tensor]) -> mix_tch::Result<ffi::AdamPath> {
        ffi::adam_step(
            &ffi::AdamBucket {
                params: &[&self.param],
                grads,
                exp_avgs: &[&self.avg],
                exp_avg_sqs: &[&self.sqr],
                state_steps: &[&self.step],
                step_counts: &[values(&self.step)[0] as i64 + 1],
            },
            ffi::AdamHypers {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: 0.1,
                eps: 1e-5,
            },
        )
    }
}

#[test]
fn fused_and_multi_tensor_paths_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let start = random_values(6, &mut rng);
    let dense = ShimCase::new(
        leaf(&start, &[2, 3], false),
        Tensor::zeros([2, 3], (Kind::Float, test_device())),
    );
    // The same values stored transposed: the layouts differ, so the fused kernel cannot walk them together.
    let strided_param = leaf(&start, &[2, 3], false)
        .transpose(0, 1)
        .contiguous()
        .transpose(0, 1);
    let strided = ShimCase::new(strided_param, dense.grad.shallow_clone());
    for _ in 0..3 {
        let g = leaf(&random_values(6, &mut rng), &[2, 3], false);
        dense.grad.detach().copy_(&g);
        assert_eq!(dense.step(&[&dense.grad]).unwrap(), ffi::AdamPath::Fused);
        assert_eq!(
            strided.step(&[&strided.grad]).unwrap(),
            ffi::AdamPath::Foreach
        );
    }
    assert_eq!(values(&dense.step), vec![3.0]);
    assert_eq!(values(&strided.step), vec![3.0]);
    assert_close(
        "param",
        &[strided.param.shallow_clone()],
        &[dense.param.shallow_clone()],
    );
    assert_close(
        "moment",
        &[strided.sqr.shallow_clone()],
        &[dense.sqr.shallow_clone()],
    );
}

#[test]
fn shim_reports_libtorch_errors_as_results() {
    let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, test_device()));
    let case = ShimCase::new(zeros(&[2, 3]), zeros(&[2, 3]));
    let extra = zeros(&[2, 3]);
    let too_many = case.step(&[&case.grad, &extra]).unwrap_err().to_string();
    assert!(
        too_many.contains("expected one gradient") && too_many.contains("found 2 gradients"),
        "{too_many}"
    );
    let wrong_shape = zeros(&[3, 2]);
    let shape = case.step(&[&wrong_shape]).unwrap_err().to_string();
    assert!(shape.contains("to have its shape"), "{shape}");
    // The process carries on and the same tensors still step.
    assert_eq!(case.step(&[&case.grad]).unwrap(), ffi::AdamPath::Fused);
    assert!(ffi::set_cuda_autocast_dtype(Kind::Float).is_err());
}

#[test]
fn cuda_autocast_dtype_round_trips() {
    let before = ffi::cuda_autocast_dtype().unwrap();
    for kind in [Kind::BFloat16, Kind::Half] {
        ffi::set_cuda_autocast_dtype(kind).unwrap();
        assert_eq!(ffi::cuda_autocast_dtype().unwrap(), Some(kind));
    }
    ffi::set_cuda_autocast_dtype(before.unwrap_or(Kind::Half)).unwrap();
    // bf16 support needs a CUDA device; without one the answer is false rather than an error.
    assert!(!ffi::cuda_supports_bf16().unwrap() || mix_tch::tch::Cuda::is_available());
}
