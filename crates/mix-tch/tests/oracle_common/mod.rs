//! Helpers of the fastai oracle tests: committed fixtures, and running a fastai script at test time.
#![allow(dead_code)]

use mix_tch::tch::{Device, Kind, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A committed fixture of tests/fixtures, parsed.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {path}: {e}; regenerate it with tests/fixtures/make_fastai_fixtures.py")
    });
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A JSON array of numbers.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of numbers, found {v}"))
        .iter()
        .map(|n| n.as_f64().expect("number"))
        .collect()
}

/// A JSON array of non-negative integers.
pub fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of integers, found {v}"))
        .iter()
        .map(|n| n.as_i64().expect("integer"))
        .collect()
}

/// The Python with torch 2.11.0, torchvision 0.26.0 and fastai 2.8.12 (see mix-test-support).
pub fn fastai_python() -> PathBuf {
    mix_test_support::fastai_python(
        "torch 2.11.0, torchvision 0.26.0, fastai 2.8.12 and safetensors",
    )
}

/// Runs `tests/python/<script>` with that Python and `args` on the CPU, panicking with its output on
/// failure (a missing fastai is reported with how to install it).
pub fn run_fastai(script: &str, args: &[&OsStr]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let python = fastai_python();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(args)
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .expect("starting the torch Python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'fastai'"),
        "fastai is missing from {}: run `{} -m pip install fastai==2.8.12`",
        python.display(),
        python.display()
    );
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
}

/// A safetensors file as a map.
pub fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

/// Largest absolute difference between two tensors (moved to the CPU as f64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}
