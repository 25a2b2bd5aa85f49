//! criterion's output files: every `new/benchmark.json` + `new/estimates.json` pair of a run,
//! read into serde structs, as the median and the element throughput of each benchmark.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::speed::Measure;

/// Reads every `new/benchmark.json` + `new/estimates.json` pair under criterion's output folder:
/// criterion's full id to the median (criterion stores nanoseconds) and the element throughput.
pub fn read_criterion(dir: &Path) -> Result<BTreeMap<String, Measure>> {
    let mut found = BTreeMap::new();
    if !dir.exists() {
        return Ok(found);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot list {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let bench = path.join("benchmark.json");
                let estimates = path.join("estimates.json");
                if bench.exists() && estimates.exists() {
                    let read = |p: &Path| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("cannot read {}", p.display()))
                    };
                    let (id, items) = parse_benchmark_json(&read(&bench)?)
                        .with_context(|| bench.display().to_string())?;
                    let median_ns = parse_estimates_median(&read(&estimates)?)
                        .with_context(|| estimates.display().to_string())?;
                    found.insert(
                        id,
                        Measure {
                            median_s: median_ns * 1e-9,
                            items,
                        },
                    );
                }
            } else {
                stack.push(path);
            }
        }
    }
    Ok(found)
}

/// criterion's `benchmark.json`, the fields read.
#[derive(Debug, Deserialize)]
struct Benchmark {
    full_id: String,
    #[serde(default)]
    throughput: Option<Throughput>,
}

/// criterion's throughput of a benchmark (`{"Elements": n}` or `{"Bytes": n}`, ...); only elements
/// count images.
#[derive(Debug, Deserialize)]
struct Throughput {
    #[serde(rename = "Elements")]
    elements: Option<u64>,
}

/// criterion's `estimates.json`, the field read.
#[derive(Debug, Deserialize)]
struct Estimates {
    median: Estimate,
}

/// One of criterion's estimates.
#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// criterion's `benchmark.json`: the full id and, for `Throughput::Elements(n)`, `n`.
pub fn parse_benchmark_json(text: &str) -> Result<(String, Option<u64>)> {
    let bench: Benchmark =
        serde_json::from_str(text).context("expected JSON with a string `full_id`")?;
    let items = bench.throughput.and_then(|t| t.elements);
    Ok((bench.full_id, items))
}

/// criterion's `estimates.json`: the median's point estimate, in nanoseconds.
pub fn parse_estimates_median(text: &str) -> Result<f64> {
    let estimates: Estimates = serde_json::from_str(text)
        .context("expected JSON with `median.point_estimate` as a number")?;
    let ns = estimates.median.point_estimate;
    if !(ns.is_finite() && ns > 0.0) {
        bail!("expected a positive median, found {ns}");
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimates(median_ns: f64) -> String {
        let est = |v: f64| {
            format!(
                r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}},"point_estimate":{v},"standard_error":1.5}}"#,
                v * 0.9,
                v * 1.1
            )
        };
        format!(
            r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":null,"std_dev":{}}}"#,
            est(median_ns * 1.2),
            est(median_ns),
            est(3.0),
            est(4.0)
        )
    }

    fn benchmark(group: &str, function: &str, value: Option<&str>, throughput: &str) -> String {
        let full = match value {
            Some(v) => format!("{group}/{function}/{v}"),
            None => format!("{group}/{function}"),
        };
        let value = value.map_or("null".to_string(), |v| format!("\"{v}\""));
        format!(
            r#"{{"group_id":"{group}","function_id":"{function}","value_str":{value},"throughput":{throughput},"full_id":"{full}","directory_name":"{full}","title":"{full}"}}"#
        )
    }

    fn put(dir: &Path, rel: &str, bench: &str, est: &str) {
        let d = dir.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("benchmark.json"), bench).unwrap();
        std::fs::write(d.join("estimates.json"), est).unwrap();
    }

    #[test]
    fn criterion_medians_are_read_from_new_folders_only_and_converted_to_seconds() {
        let dir = tempfile::tempdir().unwrap();
        put(
            dir.path(),
            "mix_core/copy/64x3x224x224/new",
            &benchmark("mix_core", "copy", Some("64x3x224x224"), "null"),
            &estimates(3_300_000.0),
        );
        // A previous run's figures (criterion's base/) must not be taken for this run's.
        put(
            dir.path(),
            "mix_core/copy/64x3x224x224/base",
            &benchmark("mix_core", "old", Some("64x3x224x224"), "null"),
            &estimates(1.0),
        );
        put(
            dir.path(),
            "mix_data/decode/new",
            &benchmark("mix_data", "decode", None, r#"{"Elements":32}"#),
            &estimates(64_000_000.0),
        );
        let found = read_criterion(dir.path()).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        let copy = found["mix_core/copy/64x3x224x224"];
        assert!((copy.median_s - 3.3e-3).abs() < 1e-12, "{copy:?}");
        assert_eq!(copy.items, None);
        let decode = found["mix_data/decode"];
        assert_eq!(decode.items, Some(32));
        assert!((decode.per_item_s() - 2e-3).abs() < 1e-12);
        assert!(read_criterion(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_criterion_files_are_refused_with_what_was_expected() {
        let err = parse_estimates_median(r#"{"mean":{"point_estimate":1.0}}"#).unwrap_err();
        assert!(err.to_string().contains("median.point_estimate"), "{err}");
        let err = parse_estimates_median(&estimates(-5.0)).unwrap_err();
        assert!(err.to_string().contains("positive median"), "{err}");
        let err = parse_benchmark_json(r#"{"group_id":"g"}"#).unwrap_err();
        assert!(err.to_string().contains("full_id"), "{err}");
        let (id, items) =
            parse_benchmark_json(&benchmark("g", "f", None, r#"{"Bytes":9}"#)).unwrap();
        assert_eq!((id.as_str(), items), ("g/f", None));
    }
}
