//! The ResNet18 learner against fastai's own `create_vision_model(resnet18, n, pretrained=False)` with our
//! weights copied in (logits in eval mode), and our head init against fastai's `create_head` +
//! `apply_init(head, nn.init.kaiming_normal_)` (tests/python/fastai_model.py).

mod oracle_common;

use mix_tch::tch::{self, Device, Kind, Tensor};
use mix_tch::VisionModel;
use oracle_common::{max_abs_diff, read, run_fastai};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const N_CLASSES: usize = 7;

/// Our model with its BatchNorm parameters and running statistics moved away from their init, so that the
/// comparison sees whether every one of them lands in the right place.
fn model() -> VisionModel {
    let m = VisionModel::new(N_CLASSES, Device::Cpu, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    tch::manual_seed(9);
    tch::no_grad(|| {
        for (name, t) in m.variables() {
            let (lo, hi) = if name.ends_with("running_var")
                || (name.ends_with(".weight") && is_norm(&m, &name))
            {
                (0.5, 1.5)
            } else if name.ends_with("running_mean") || name.ends_with(".bias") {
                (-0.2, 0.2)
            } else {
                continue;
            };
            let mut t = t;
            let _ = t.uniform_(lo, hi);
        }
    });
    m
}

fn is_norm(m: &VisionModel, name: &str) -> bool {
    m.params()
        .iter()
        .any(|p| p.name == name && p.kind == mix_tch::model::ParamKind::Norm)
}

fn oracle(m: &VisionModel, x: &Tensor) -> HashMap<String, Tensor> {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    let mut named: Vec<(String, Tensor)> = m
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().contiguous()))
        .collect();
    named.push(("input.x".into(), x.shallow_clone()));
    named.push(("input.n".into(), Tensor::from_slice(&[N_CLASSES as i64])));
    Tensor::write_safetensors(&named, &inp).unwrap();
    run_fastai("fastai_model.py", &[inp.as_os_str(), out.as_os_str()]);
    read(&out)
}

#[test]
fn model_and_head_init_match_fastai() {
    let m = model();
    tch::manual_seed(3);
    let x = Tensor::randn([3, 3, 96, 96], (Kind::Float, Device::Cpu));
    let want = oracle(&m, &x);

    // A forward pass of the whole model in eval mode, on fastai's module tree with our weights.
    let got = tch::no_grad(|| m.forward(&x, None).unwrap());
    assert_eq!(got.size(), vec![3, N_CLASSES as i64]);
    let d = max_abs_diff(&got, &want["logits"]);
    assert!(d <= 1e-4, "logits differ from fastai's model by {d}");
    eprintln!("largest logit difference from fastai's model: {d:e}");

    // The head's layer order is what our `head.<i>` names assume.
    let layers = Vec::<i64>::try_from(&want["layers"]).unwrap();
    assert_eq!(layers, vec![0, 1, 2, 3, 4, 5, 2, 3, 4]);
    assert_eq!(
        Vec::<f64>::try_from(&want["dropout"]).unwrap(),
        vec![0.25, 0.5]
    );

    // Init: shapes, constant BatchNorm init, and the spread of the kaiming-normal linear weights.
    let fresh =
        VisionModel::new(N_CLASSES, Device::Cpu, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    let ours = fresh.variables();
    let init: Vec<(&str, &Tensor)> = want
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("init.").map(|k| (k, v)))
        .collect();
    assert_eq!(
        init.len(),
        6,
        "fastai's head has 2 BatchNorms and 2 Linears"
    );
    let mut names: Vec<String> = ours
        .keys()
        .filter(|k| k.starts_with("head.") && !k.contains("running_"))
        .cloned()
        .collect();
    names.sort();
    let mut fastai_names: Vec<String> = init.iter().map(|(k, _)| format!("head.{k}")).collect();
    fastai_names.sort();
    assert_eq!(
        names, fastai_names,
        "head parameters (fastai's Linears have no bias)"
    );
    for (k, theirs) in init {
        let mine = &ours[&format!("head.{k}")];
        assert_eq!(mine.size(), theirs.size(), "head.{k} shape");
        let size = theirs.size();
        if size.len() == 2 {
            // kaiming_normal_ (fan_in, gain sqrt 2): std sqrt(2 / fan_in). Both draws are random; with
            // 524288 and 3584 values the sample std is within 3% of that at far beyond 5 sigma.
            let expect = (2.0 / size[1] as f64).sqrt();
            for (who, t) in [("ours", mine), ("fastai", theirs)] {
                let std = t.to_kind(Kind::Double).std(true).double_value(&[]);
                let mean = t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                assert!(
                    (std / expect - 1.0).abs() < 0.03 && mean.abs() < 0.1 * expect,
                    "head.{k} ({who}): std {std}, mean {mean}, expected std {expect}"
                );
            }
        } else {
            // BatchNorm1d as fastai's `BatchNorm`: weight 1, bias 1e-3, exactly.
            let d = max_abs_diff(mine, theirs);
            assert!(d == 0.0, "head.{k} differs from fastai's init by {d}");
            let want_value = if k.ends_with("weight") { 1.0 } else { 1e-3 };
            let v = theirs.to_kind(Kind::Double);
            assert!((v - want_value).abs().max().double_value(&[]) < 1e-9);
        }
    }
}
