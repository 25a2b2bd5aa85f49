//! The peer scripts of benches/peers: how each is called, what it prints (read into serde
//! structs, then into one [`PeerOutput`]), and the python environment they run in with its versions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::runner::{self, last_json_line};
use crate::speed::Measure;

/// The torch release of libtorch (tch 0.24.0 needs it; xtask's libtorch module installs it).
pub const TORCH_VERSION: &str = "2.11.0";

/// How a peer script is called and what it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFormat {
    /// Called with `--json FILE` (and `--quick`); writes `{"results": [...]}`, see [`parse_peer`].
    Results,
    /// Prints one JSON object of images/s per variant on stdout, see [`parse_images_per_s`].
    ImagesPerSecond,
}

/// A peer script in benches/peers.
pub struct PeerSpec {
    pub stem: &'static str,
    pub format: PeerFormat,
    /// Extra arguments in quick and in full mode.
    pub quick_args: &'static [&'static str],
    pub full_args: &'static [&'static str],
}

const VERSIONS_PY: &str = r#"
import json, platform, sys
out = {"python": platform.python_version()}
for mod, name in [("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
                  ("PIL", "Pillow"), ("fastai", "fastai")]:
    try:
        out[name] = __import__(mod).__version__
    except Exception:
        out[name] = None
print(json.dumps(out))
"#;

/// The fastai release the peers are written against (the accuracy step trains with it).
const FASTAI_VERSION: &str = "2.8.12";

/// Package versions of the peer environment; installs numpy and Pillow (and fastai where it
/// installs) when they are absent, never changing torch.
pub fn python_versions(python: &Path) -> Result<BTreeMap<String, Option<String>>> {
    let read = || -> Result<BTreeMap<String, Option<String>>> {
        let text = runner::output(Command::new(python).args(["-c", VERSIONS_PY]))?;
        parse_versions(&text)
    };
    let mut versions = read()?;
    let has = |v: &BTreeMap<String, Option<String>>, k: &str| v.get(k).is_some_and(Option::is_some);
    // Naming torch and torchvision with their pins in the same pip command keeps pip from
    // replacing them while it resolves the new packages' requirements.
    let pins = [
        format!("torch=={}", TORCH_VERSION),
        "torchvision==0.26.0".to_string(),
    ];
    if !has(&versions, "numpy") || !has(&versions, "Pillow") {
        let mut pip = pip_install(python);
        pip.args(["numpy", "pillow"]).args(&pins);
        runner::run(&mut pip).context(
            "the peer benchmarks need numpy and Pillow in the libtorch venv and pip could not install them",
        )?;
        versions = read()?;
    }
    if !has(&versions, "fastai") {
        eprintln!(
            "fastai is not importable: trying to install it (torch stays at {})",
            TORCH_VERSION
        );
        let mut pip = pip_install(python);
        pip.arg(format!("fastai=={FASTAI_VERSION}")).args(&pins);
        if runner::run(&mut pip).is_err() {
            let mut pip = pip_install(python);
            pip.args(["--no-deps", &format!("fastai=={FASTAI_VERSION}")]);
            let _ = runner::run(&mut pip);
        }
        versions = read()?;
        if !has(&versions, "fastai") {
            eprintln!(
                "fastai could not be installed or imported: the mix_core fastai figures come from \
                 fastai's code copied verbatim into the peer script, and are labelled so; the \
                 accuracy step cannot run its fastai side"
            );
        }
    }
    let torch = versions.get("torch").cloned().flatten().unwrap_or_default();
    if !torch.starts_with(TORCH_VERSION) {
        bail!(
            "the peer environment {} has torch `{torch}`, expected {}: reinstall with `pip install \
             torch=={}` there (tch 0.24 needs that libtorch)",
            python.display(),
            TORCH_VERSION,
            TORCH_VERSION
        );
    }
    for needed in ["numpy", "Pillow"] {
        if !has(&versions, needed) {
            bail!(
                "{needed} is not importable by {} after installing it: run `{} -m pip install numpy pillow`",
                python.display(),
                python.display()
            );
        }
    }
    Ok(versions)
}

fn pip_install(python: &Path) -> Command {
    let mut pip = Command::new(python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--retries",
        "1",
        "--timeout",
        "30",
    ]);
    pip
}

/// Reads the JSON object printed by [`VERSIONS_PY`]: package name to version, `null` when absent.
pub fn parse_versions(text: &str) -> Result<BTreeMap<String, Option<String>>> {
    serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "expected a JSON object of versions, found `{}`",
            text.trim()
        )
    })
}

/// What one peer script reported.
#[derive(Debug, Default, PartialEq)]
pub struct PeerOutput {
    /// Figure name to measure.
    pub measures: BTreeMap<String, Measure>,
    /// Figure name to the label the peer gives it.
    pub labels: BTreeMap<String, String>,
}

/// What a [`PeerFormat::Results`] peer writes.
#[derive(Debug, Deserialize)]
struct ResultsFile {
    results: Vec<ResultEntry>,
}

/// One figure of a [`ResultsFile`].
#[derive(Debug, Deserialize)]
struct ResultEntry {
    name: String,
    median_s: f64,
    #[serde(default)]
    items: Option<u64>,
    #[serde(default)]
    label: Option<String>,
}

/// Reads a peer's JSON: `{"results": [{"name", "median_s", "items"?, "label"?}, ...]}`.
pub fn parse_peer(text: &str) -> Result<PeerOutput> {
    let file: ResultsFile = serde_json::from_str(text).context(
        "expected an object with a `results` array of {\"name\": string, \"median_s\": number, \
         \"items\"?: integer, \"label\"?: string}",
    )?;
    let mut out = PeerOutput::default();
    for entry in file.results {
        let (name, median_s) = (entry.name, entry.median_s);
        if !(median_s.is_finite() && median_s > 0.0) {
            bail!("expected result `{name}` to have a positive `median_s`, found {median_s}");
        }
        let measure = Measure {
            median_s,
            items: entry.items,
        };
        if let Some(label) = entry.label {
            out.labels.insert(name.clone(), label);
        }
        out.measures.insert(name, measure);
    }
    Ok(out)
}

/// What a [`PeerFormat::ImagesPerSecond`] peer prints: the batch, images/s per variant and facts
/// for the label.
#[derive(Debug, Deserialize)]
struct ImagesPerSecond {
    batch: u64,
    plain: Option<f64>,
    mixup: Option<f64>,
    cutmix: Option<f64>,
    torch: Option<serde_json::Value>,
    device: Option<serde_json::Value>,
    size: Option<serde_json::Value>,
    threads: Option<serde_json::Value>,
}

/// Reads a train-step peer's stdout: a JSON object (the last line that starts with `{`) with
/// `batch` and images/s per variant (`plain`, `mixup`, `cutmix`); each becomes the mean time of a
/// step of `batch` images, labelled with the peer's torch, device, batch, size and threads.
pub fn parse_images_per_s(stdout: &str) -> Result<PeerOutput> {
    let line = last_json_line(stdout)?;
    let rates: ImagesPerSecond = serde_json::from_str(line).with_context(|| {
        format!("expected a JSON object with an integer `batch`, found `{line}`")
    })?;
    let batch = rates.batch;
    if batch == 0 {
        bail!("expected a positive integer `batch`, found `{line}`");
    }
    let text = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or("?".to_string(), |v| v.to_string().replace('"', ""))
    };
    let label = format!(
        "PyTorch eager {}, {}, batch {batch}, {} px, {} threads, mean of the timed steps",
        text(&rates.torch),
        text(&rates.device),
        text(&rates.size),
        text(&rates.threads)
    );
    let mut out = PeerOutput::default();
    for (variant, ips) in [
        ("plain", rates.plain),
        ("mixup", rates.mixup),
        ("cutmix", rates.cutmix),
    ] {
        let Some(ips) = ips else {
            continue;
        };
        if !(ips.is_finite() && ips > 0.0) {
            bail!("expected positive images/s for `{variant}`, found {ips}");
        }
        out.measures.insert(
            variant.to_string(),
            Measure {
                median_s: batch as f64 / ips,
                items: Some(batch),
            },
        );
        out.labels.insert(variant.to_string(), label.clone());
    }
    if out.measures.is_empty() {
        bail!("expected images/s for at least one of plain, mixup, cutmix, found `{line}`");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_json_is_read_with_items_and_labels() {
        let text = r#"{"results": [
            {"name": "fastai_mixup", "median_s": 0.045, "label": "fastai 2.8.12 MixUp (torch CPU)"},
            {"name": "pil", "median_s": 0.5, "items": 100}
        ], "extra": 1}"#;
        let out = parse_peer(text).unwrap();
        assert_eq!(out.measures.len(), 2);
        assert_eq!(out.measures["pil"].items, Some(100));
        assert!((out.measures["pil"].per_item_s() - 0.005).abs() < 1e-15);
        assert_eq!(
            out.labels["fastai_mixup"],
            "fastai 2.8.12 MixUp (torch CPU)"
        );
        assert!(!out.labels.contains_key("pil"));
    }

    #[test]
    fn bad_peer_json_is_refused_with_what_was_expected() {
        // The context says what was expected; serde's message under it, what was found.
        let err = format!("{:#}", parse_peer("[]").unwrap_err());
        assert!(err.contains("`results` array"), "{err}");
        let err = format!(
            "{:#}",
            parse_peer(r#"{"results":[{"median_s":1.0}]}"#).unwrap_err()
        );
        assert!(err.contains("missing field `name`"), "{err}");
        let err = format!(
            "{:#}",
            parse_peer(r#"{"results":[{"name":"a","median_s":"fast"}]}"#).unwrap_err()
        );
        assert!(
            err.contains("\"median_s\": number") && err.contains("invalid type: string \"fast\""),
            "{err}"
        );
        let err = parse_peer(r#"{"results":[{"name":"a","median_s":0}]}"#).unwrap_err();
        assert!(err.to_string().contains("positive `median_s`"), "{err}");
    }

    #[test]
    fn train_step_peer_images_per_second_become_step_times() {
        let stdout = "loading\n{\"device\": \"cpu\", \"batch\": 32, \"size\": 64, \"threads\": 2, \"torch\": \"2.11.0+cu130\", \"plain\": 64.0, \"mixup\": 62.5, \"cutmix\": 80.0}\n";
        let out = parse_images_per_s(stdout).unwrap();
        assert_eq!(out.measures.len(), 3);
        let plain = out.measures["plain"];
        assert_eq!(plain.items, Some(32));
        assert!((plain.median_s - 0.5).abs() < 1e-12, "{plain:?}");
        assert!((out.measures["mixup"].median_s - 0.512).abs() < 1e-12);
        assert_eq!(
            out.labels["cutmix"],
            "PyTorch eager 2.11.0+cu130, cpu, batch 32, 64 px, 2 threads, mean of the timed steps"
        );
        let err = parse_images_per_s("no json").unwrap_err();
        assert!(err.to_string().contains("JSON object line"), "{err}");
        let err = parse_images_per_s(r#"{"batch": 0, "plain": 1.0}"#).unwrap_err();
        assert!(
            err.to_string().contains("positive integer `batch`"),
            "{err}"
        );
        let err = parse_images_per_s(r#"{"batch": 8}"#).unwrap_err();
        assert!(err.to_string().contains("at least one of plain"), "{err}");
        let err = parse_images_per_s(r#"{"batch": 8, "plain": -1}"#).unwrap_err();
        assert!(err.to_string().contains("positive images/s"), "{err}");
    }
}
