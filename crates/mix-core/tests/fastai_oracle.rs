//! Oracle tests: our formulas against numbers produced by fastai's own code (fixed lambda, perm and
//! box centre), from tests/fixtures/make_fastai_fixtures.py.

use mix_core::cutmix::{paste, rand_bbox, BBox};
use mix_core::loss::mixed_cross_entropy;
use mix_core::mixup::blend;
use mix_core::{CutMixParams, ImageSize, MixParams, MixUpParams};
use ndarray::{Array2, Array4, ArrayD};
use serde_json::Value;

const TOL: f32 = 1e-6;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {path}: {e}; regenerate it with tests/fixtures/make_fastai_fixtures.py")
    });
    let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
    doc["cases"].as_array().expect("fixture has cases").clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|n| n.as_f64().expect("number") as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array of integers")
        .iter()
        .map(|n| n.as_u64().expect("integer") as usize)
        .collect()
}

fn shape4(case: &Value) -> (usize, usize, usize, usize) {
    let s = ints(&case["shape"]);
    (s[0], s[1], s[2], s[3])
}

fn images(case: &Value, key: &str) -> Array4<f32> {
    Array4::from_shape_vec(shape4(case), floats(&case[key])).expect("image data matches shape")
}

fn rows(case: &Value, key: &str) -> Array2<f32> {
    let n = shape4(case).0;
    let v = floats(&case[key]);
    Array2::from_shape_vec((n, v.len() / n), v).expect("rows match batch")
}

fn assert_close<'a>(what: &str, got: impl IntoIterator<Item = &'a f32>, want: &[f32]) {
    let got: Vec<f32> = got.into_iter().copied().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOL, "{what}[{i}]: got {g}, fastai {w}");
    }
}

#[test]
fn mixup_matches_fastai() {
    let cases = fixture("fastai_mixup.json");
    assert!(!cases.is_empty());
    for (k, case) in cases.iter().enumerate() {
        let x = images(case, "x");
        let perm = ints(&case["perm"]);
        let lam = floats(&case["lam"]);
        // fastai folds each draw: lam = max(lam, 1 - lam).
        let drawn = floats(&case["lam_drawn"]);
        let folded: Vec<f32> = drawn.iter().map(|&l| l.max(1.0 - l)).collect();
        assert_close(&format!("case {k} lam"), &folded, &lam);

        let out = floats(&case["out"]);
        assert_close(
            &format!("case {k} blend"),
            &blend(x.view().into_dyn(), &lam, &perm).unwrap(),
            &out,
        );
        let params: MixParams = MixUpParams {
            lam: lam.clone(),
            perm: perm.clone(),
        }
        .into();
        assert_close(
            &format!("case {k} apply"),
            &params.apply(x.view()).unwrap(),
            &out,
        );

        let onehot = rows(case, "onehot");
        let mixed = params.mix_targets(onehot.view()).unwrap();
        assert_close(
            &format!("case {k} targets"),
            &mixed,
            &floats(&case["onehot_mixed"]),
        );

        let logits = rows(case, "logits");
        let labels = ints(&case["labels"]);
        let loss = mixed_cross_entropy(logits.view(), &labels, &perm, &lam).unwrap();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - want).abs() <= TOL,
            "case {k} loss: got {loss}, fastai {want}"
        );
    }
}

#[test]
fn cutmix_matches_fastai() {
    let cases = fixture("fastai_cutmix.json");
    assert!(!cases.is_empty());
    for (k, case) in cases.iter().enumerate() {
        let x = images(case, "x");
        let (_, _, h, w) = x.dim();
        let size = ImageSize::new(h, w);
        let perm = ints(&case["perm"]);
        let drawn = case["lam_drawn"].as_f64().unwrap() as f32;
        let cx = case["cx"].as_u64().unwrap() as usize;
        let cy = case["cy"].as_u64().unwrap() as usize;
        let b = ints(&case["bbox"]);
        let want_box = BBox {
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
        };
        let bbox = rand_bbox(size, drawn, cx, cy).unwrap();
        assert_eq!(bbox, want_box, "case {k} box");
        let lam = bbox.lam(size).unwrap();
        let want_lam = case["lam"].as_f64().unwrap() as f32;
        assert!(
            (lam - want_lam).abs() <= TOL,
            "case {k} lam: got {lam}, fastai {want_lam}"
        );

        // The paste is a pure copy: exact.
        let out = ArrayD::from_shape_vec(x.shape(), floats(&case["out"])).unwrap();
        assert_eq!(
            paste(x.view(), &perm, bbox).unwrap().into_dyn(),
            out,
            "case {k} paste"
        );
        let params: MixParams = CutMixParams {
            lam,
            perm: perm.clone(),
            bbox,
            cx,
            cy,
        }
        .into();
        assert_eq!(
            params.apply(x.view()).unwrap().into_dyn(),
            out,
            "case {k} apply"
        );

        let onehot = rows(case, "onehot");
        let mixed = params.mix_targets(onehot.view()).unwrap();
        assert_close(
            &format!("case {k} targets"),
            &mixed,
            &floats(&case["onehot_mixed"]),
        );

        let logits = rows(case, "logits");
        let labels = ints(&case["labels"]);
        let loss = params.mixed_cross_entropy(logits.view(), &labels).unwrap();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - want).abs() <= TOL,
            "case {k} loss: got {loss}, fastai {want}"
        );
    }
}
