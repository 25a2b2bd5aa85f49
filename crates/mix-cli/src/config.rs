//! `--config FILE`: settings from a TOML (or JSON) file, read as if they came first on the command
//! line, so that the command line wins and both go through the same checks.
//!
//! Keys are the long option names, `_` or `-` between words (`bs = 32`, `mixup_off_epoch = 5`),
//! the keys config.json uses for the same settings (`mix`, `alpha`, `epochs`, `bs`, `dataset`,
//! `pattern`, `device`, `seed`, `resize`, `size`). A flag is `true` or `false`; a pair such as
//! `cutmix_minmax` is an array of two numbers or the string `"LO,HI"`.

use std::ffi::OsString;
use std::path::Path;

use crate::{Error, Result};

/// Options a config file may not set: they name the file itself or what a resumed run keeps.
const NOT_IN_FILES: &[&str] = &["config", "resume", "help", "version"];

/// The arguments `path` stands for, checked against the long options of `cmd`.
pub fn file_args(path: &Path, cmd: &clap::Command) -> Result<Vec<OsString>> {
    let err = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let table: Vec<(String, toml::Value)> = if json {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(err("expected a JSON object of settings".into()));
        };
        map.into_iter()
            .map(|(k, v)| {
                let v = toml::Value::try_from(v)
                    .map_err(|e| err(format!("{k}: cannot be a setting ({e})")))?;
                Ok((k, v))
            })
            .collect::<Result<_>>()?
    } else {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| err(format!("not valid TOML: {}", e.message())))?;
        table.into_iter().collect()
    };
    let longs: Vec<&str> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_IN_FILES.contains(l))
        .collect();
    let mut args = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && longs.contains(&long.as_str()))
        else {
            let near = closest(&long, &longs)
                .map(|c| format!(" (did you mean `{}`?)", c.replace('-', "_")))
                .unwrap_or_default();
            return Err(err(format!(
                "unknown key `{key}`{near}; keys are the long options of the command"
            )));
        };
        let takes_value = arg.get_action().takes_values();
        match (value, takes_value) {
            (toml::Value::Boolean(on), false) => {
                if on {
                    args.push(OsString::from(format!("--{long}")));
                }
            }
            (_, false) => return Err(err(format!("{key}: expected true or false"))),
            (value, true) => {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| match v {
                            toml::Value::Integer(i) => Ok(i.to_string()),
                            toml::Value::Float(f) => Ok(f.to_string()),
                            toml::Value::String(s) => Ok(s.clone()),
                            _ => Err(err(format!("{key}: expected numbers in the array"))),
                        })
                        .collect::<Result<Vec<_>>>()?
                        .join(","),
                    other => {
                        return Err(err(format!(
                            "{key}: expected a string, a number or an array, found {}",
                            other.type_str()
                        )))
                    }
                };
                args.push(OsString::from(format!("--{long}={text}")));
            }
        }
    }
    Ok(args)
}

/// The candidate nearest to `word` by edit distance, when it is near enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_keys_are_suggested() {
        assert_eq!(closest("epoch", &["epochs", "bs"]), Some("epochs"));
        assert_eq!(closest("zzzzzz", &["epochs", "bs"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
