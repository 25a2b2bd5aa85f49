//! A small command-line parser for `--name value` options: enough for xtask, with clear errors.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// One option a task accepts: its name (without `--`), whether it takes a value, and its help.
pub struct Opt {
    pub name: &'static str,
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// Parsed options: `--flag` maps to an empty string, `--name value` and `--name=value` to `value`.
#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<String, String>,
    positionals: Vec<String>,
}

impl Parsed {
    /// The arguments that are not options, in order (only where the task takes them).
    pub fn positionals(&self) -> &[String] {
        &self.positionals
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The value of `--name` parsed as `T`, or `default`, with an error naming the option.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| anyhow::anyhow!("--{name}: cannot read `{raw}`: {e}")),
        }
    }
}

/// Help text for a task: its one-line description, its options and what else it takes.
fn help_with(task: &str, about: &str, opts: &[Opt], positional: Option<&str>) -> String {
    let tail = positional.map(|p| format!(" {p}")).unwrap_or_default();
    let mut text = format!("usage: cargo xtask {task} [options]{tail}\n\n{about}\n\noptions:\n");
    for opt in opts {
        let left = match opt.value {
            Some(v) => format!("--{} {v}", opt.name),
            None => format!("--{}", opt.name),
        };
        text.push_str(&format!("  {left:<28} {}\n", opt.help));
    }
    text.push_str(&format!("  {:<28} {}\n", "--help", "print this help"));
    text
}

/// Parses `args` against `opts`. `Ok(None)` means `--help` was asked for and has been printed.
pub fn parse(task: &str, about: &str, opts: &[Opt], args: &[String]) -> Result<Option<Parsed>> {
    parse_inner(task, about, opts, None, args)
}

/// [`parse`] for a task that also takes arguments that are not options (`positional` names them in
/// the help, e.g. `IMAGE...`); they are kept in order in [`Parsed::positionals`].
pub fn parse_with_positionals(
    task: &str,
    about: &str,
    opts: &[Opt],
    positional: &str,
    args: &[String],
) -> Result<Option<Parsed>> {
    parse_inner(task, about, opts, Some(positional), args)
}

fn parse_inner(
    task: &str,
    about: &str,
    opts: &[Opt],
    positional: Option<&str>,
    args: &[String],
) -> Result<Option<Parsed>> {
    let help = |_: &str, about: &str, opts: &[Opt]| help_with(task, about, opts, positional);
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-h" || arg == "--help" {
            print!("{}", help(task, about, opts));
            return Ok(None);
        }
        let Some(body) = arg.strip_prefix("--") else {
            if positional.is_some() {
                parsed.positionals.push(arg.clone());
                i += 1;
                continue;
            }
            bail!(
                "unexpected argument `{arg}` (options start with `--`)\n\n{}",
                help(task, about, opts)
            );
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(opt) = opts.iter().find(|o| o.name == name) else {
            bail!("unknown option `--{name}`\n\n{}", help(task, about, opts));
        };
        let value = match (opt.value, inline) {
            (None, None) => String::new(),
            (None, Some(_)) => bail!("--{name} takes no value"),
            (Some(_), Some(v)) => v,
            (Some(meta), None) => {
                i += 1;
                match args.get(i) {
                    Some(v) => v.clone(),
                    None => bail!("--{name} needs a value ({meta})"),
                }
            }
        };
        parsed.values.insert(name.to_string(), value);
        i += 1;
    }
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt {
            name: "alpha",
            value: Some("A"),
            help: "alpha",
        },
        Opt {
            name: "quick",
            value: None,
            help: "quick",
        },
    ];

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_both_value_forms_and_flags() {
        let p = parse("t", "", OPTS, &strings(&["--alpha", "0.4", "--quick"]))
            .unwrap()
            .unwrap();
        assert_eq!(p.get("alpha"), Some("0.4"));
        assert!(p.flag("quick"));
        let p = parse("t", "", OPTS, &strings(&["--alpha=2"]))
            .unwrap()
            .unwrap();
        assert_eq!(p.parse_or("alpha", 0.0f32).unwrap(), 2.0);
        assert!(!p.flag("quick"));
    }

    #[test]
    fn refuses_unknown_options_and_missing_values() {
        let err = parse("t", "", OPTS, &strings(&["--alhpa", "1"])).unwrap_err();
        assert!(
            err.to_string().contains("unknown option `--alhpa`"),
            "{err}"
        );
        let err = parse("t", "", OPTS, &strings(&["--alpha"])).unwrap_err();
        assert!(err.to_string().contains("needs a value"), "{err}");
        let err = parse("t", "", OPTS, &strings(&["stray"])).unwrap_err();
        assert!(err.to_string().contains("unexpected argument"), "{err}");
        let p = parse("t", "", OPTS, &strings(&["--alpha", "x"]))
            .unwrap()
            .unwrap();
        assert!(p.parse_or("alpha", 0.0f32).is_err());
    }
}
