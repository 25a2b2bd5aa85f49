//! The `accuracy` step of `cargo xtask bench`: our mix-train and fastai's own `vision_learner`
//! (benches/peers/fastai_train.py) train the same recipe on the same image folder for the same
//! seeds, and the report puts their per-epoch tables and final figures side by side.
//!
//! Both sides end up as [`Run`]s: ours from each run folder's `metrics.csv` (and `config.json` for
//! the split sizes), fastai's from the peer's JSON.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::report::{self, machine_lines, Machine, Table};
use crate::runner;

/// The recipe both sides train: the sample run of the README, every setting explicit so that
/// neither side's defaults matter.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// Epochs of `fit_one_cycle`.
    pub epochs: usize,
    /// Batch size.
    pub bs: usize,
    /// `Resize(resize, method='crop')`.
    pub resize: usize,
    /// `aug_transforms(size=size)`.
    pub size: usize,
    /// `lr_max`, as both command lines take it.
    pub lr: &'static str,
    /// `mixup`, `cutmix` or `none`.
    pub mix: &'static str,
    /// Beta(alpha, alpha), as both command lines take it.
    pub alpha: &'static str,
    /// One run per seed on each side.
    pub seeds: &'static [u64],
}

/// The sample recipe: 3 epochs and 3 seeds in quick and in full mode alike (a few minutes).
pub const RECIPE: Recipe = Recipe {
    epochs: 3,
    bs: 16,
    resize: 128,
    size: 112,
    lr: "1e-3",
    mix: "mixup",
    alpha: "1",
    seeds: &[0, 1, 2],
};

/// The folder both sides read, relative to the workspace root (mix-train's `--dataset sample`).
pub const IMAGES: &str = "data/sample/images";
/// The peer script's stem in benches/peers.
pub const PEER: &str = "fastai_train";

impl Recipe {
    /// mix-train's arguments for one seed, writing its run folder under `out`.
    pub fn ours_args(&self, seed: u64, out: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "--dataset".to_string(),
            "sample".to_string(),
            "--epochs".to_string(),
            self.epochs.to_string(),
            "--bs".to_string(),
            self.bs.to_string(),
            "--resize".to_string(),
            self.resize.to_string(),
            "--size".to_string(),
            self.size.to_string(),
            "--lr".to_string(),
            self.lr.to_string(),
            "--mix".to_string(),
            self.mix.to_string(),
            "--alpha".to_string(),
            self.alpha.to_string(),
            "--pretrained".to_string(),
            "none".to_string(),
            "--seed".to_string(),
            seed.to_string(),
            "--device".to_string(),
            "cpu".to_string(),
            "--out".to_string(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(out.as_os_str().to_owned());
        args
    }

    /// The peer script's arguments (after the script), for every seed at once.
    pub fn peer_args(&self, images: &Path, json: &Path) -> Vec<OsString> {
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let mut args: Vec<OsString> = vec!["--images".into(), images.as_os_str().to_owned()];
        for (k, v) in [
            ("--seeds", seeds.join(",")),
            ("--epochs", self.epochs.to_string()),
            ("--bs", self.bs.to_string()),
            ("--resize", self.resize.to_string()),
            ("--size", self.size.to_string()),
            ("--lr", self.lr.to_string()),
            ("--mix", self.mix.to_string()),
            ("--alpha", self.alpha.to_string()),
        ] {
            args.push(k.into());
            args.push(v.into());
        }
        args.push("--json".into());
        args.push(json.as_os_str().to_owned());
        args
    }

    /// The fastai calls the recipe stands for.
    fn fastai_calls(&self) -> String {
        let cbs = match self.mix {
            "mixup" => format!(", cbs=MixUp({})", self.alpha),
            "cutmix" => format!(", cbs=CutMix({})", self.alpha),
            _ => String::new(),
        };
        format!(
            "`Resize({}, method='crop')`, `aug_transforms(size={})`, ImageNet `Normalize`, batch {}, \
             `vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)`, \
             `fit_one_cycle({}, {}{cbs})`, CPU",
            self.resize, self.size, self.bs, self.epochs, self.lr
        )
    }
}

/// One epoch's row, as fastai's table shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// 0-based.
    pub epoch: usize,
    /// Smoothed training loss at the end of the epoch.
    pub train_loss: f64,
    /// Mean validation loss.
    pub valid_loss: f64,
    /// Fraction of validation images misclassified.
    pub error_rate: f64,
    /// Wall seconds of the epoch (ours: whole seconds, as metrics.csv stores `mm:ss`).
    pub seconds: f64,
}

/// How one run split the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Training images.
    pub train: u64,
    /// Validation images.
    pub valid: u64,
    /// Classes.
    pub classes: u64,
}

/// One seed's training run on one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The seed.
    pub seed: u64,
    /// Every epoch, in order.
    pub epochs: Vec<Epoch>,
    /// The split, when the side reported it.
    pub split: Option<Split>,
}

impl Run {
    fn last(&self) -> Option<&Epoch> {
        self.epochs.last()
    }
}

/// Checks that the rows are epochs 0, 1, ... with finite, non-negative figures.
fn check_epochs(epochs: &[Epoch]) -> Result<()> {
    if epochs.is_empty() {
        bail!("expected at least one epoch, found none");
    }
    for (i, e) in epochs.iter().enumerate() {
        if e.epoch != i {
            bail!(
                "expected epoch {i} in row {}, found epoch {}",
                i + 1,
                e.epoch
            );
        }
        for (name, v) in [
            ("train_loss", e.train_loss),
            ("valid_loss", e.valid_loss),
            ("error_rate", e.error_rate),
            ("seconds", e.seconds),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("expected a finite, non-negative {name} in epoch {i}, found {v}");
            }
        }
        if e.error_rate > 1.0 {
            bail!(
                "expected an error_rate between 0 and 1 in epoch {i}, found {}",
                e.error_rate
            );
        }
    }
    Ok(())
}

/// fastai's `format_time` read back: `mm:ss` or `h:mm:ss`; a plain number is taken as seconds.
pub fn parse_time(text: &str) -> Result<f64> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let number = |p: &str| -> Result<f64> {
        p.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .with_context(|| {
                format!("expected a time as mm:ss, h:mm:ss or seconds, found `{text}`")
            })
    };
    Ok(match parts.as_slice() {
        [s] => number(s)?,
        [m, s] => number(m)? * 60.0 + number(s)?,
        [h, m, s] => number(h)? * 3600.0 + number(m)? * 60.0 + number(s)?,
        _ => bail!("expected a time as mm:ss, h:mm:ss or seconds, found `{text}`"),
    })
}

/// mix-train's `metrics.csv` (`epoch,train_loss,valid_loss,error_rate,time`) as seed `seed`'s run.
pub fn parse_metrics_csv(seed: u64, text: &str) -> Result<Run> {
    const HEADER: &str = "epoch,train_loss,valid_loss,error_rate,time";
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(h) if h.trim() == HEADER => {}
        other => bail!(
            "expected the header `{HEADER}`, found `{}`",
            other.unwrap_or("")
        ),
    }
    let mut epochs = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let [epoch, train, valid, error, time] = cells.as_slice() else {
            bail!("expected 5 comma-separated cells, found `{line}`");
        };
        let num = |name: &str, v: &str| -> Result<f64> {
            v.parse::<f64>()
                .with_context(|| format!("expected a number as {name}, found `{v}` in `{line}`"))
        };
        epochs.push(Epoch {
            epoch: epoch.parse().with_context(|| {
                format!("expected an epoch number, found `{epoch}` in `{line}`")
            })?,
            train_loss: num("train_loss", train)?,
            valid_loss: num("valid_loss", valid)?,
            error_rate: num("error_rate", error)?,
            seconds: parse_time(time)?,
        });
    }
    check_epochs(&epochs)?;
    Ok(Run {
        seed,
        epochs,
        split: None,
    })
}

/// The split sizes of mix-train's `config.json` (`n_train`, `n_valid`, `classes`).
pub fn parse_config_split(text: &str) -> Result<Split> {
    let value: Value = serde_json::from_str(text).context("expected JSON")?;
    let count = |k: &str| value.get(k).and_then(Value::as_u64);
    let classes = value.get("classes").and_then(Value::as_array).map(Vec::len);
    match (count("n_train"), count("n_valid"), classes) {
        (Some(train), Some(valid), Some(classes)) => Ok(Split {
            train,
            valid,
            classes: classes as u64,
        }),
        _ => bail!("expected numbers `n_train`, `n_valid` and an array `classes`"),
    }
}

/// What the fastai peer reported.
#[derive(Debug, Clone, PartialEq)]
pub struct FastaiOutput {
    /// fastai's version.
    pub fastai: String,
    /// torch's version in the peer's python.
    pub torch: String,
    /// torch threads.
    pub threads: Option<u64>,
    /// DataLoader worker processes.
    pub workers: Option<u64>,
    /// One run per seed.
    pub runs: Vec<Run>,
}

/// Reads the peer's JSON: `{"fastai", "torch", "threads"?, "workers"?, "runs": [{"seed",
/// "n_train"?, "n_valid"?, "classes"?, "epochs": [{"epoch", "train_loss", "valid_loss",
/// "error_rate", "seconds"}]}]}`.
pub fn parse_fastai_json(text: &str) -> Result<FastaiOutput> {
    let value: Value = serde_json::from_str(text.trim()).context("expected JSON")?;
    let string = |k: &str| -> Result<String> {
        value
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("expected a string `{k}`"))
    };
    let (fastai, torch) = (string("fastai")?, string("torch")?);
    let Some(list) = value.get("runs").and_then(Value::as_array) else {
        bail!("expected an object with a `runs` array");
    };
    let mut runs = Vec::new();
    for run in list {
        let Some(seed) = run.get("seed").and_then(Value::as_u64) else {
            bail!("expected every run to have an integer `seed`, found {run}");
        };
        let Some(rows) = run.get("epochs").and_then(Value::as_array) else {
            bail!("expected run {seed} to have an `epochs` array");
        };
        let mut epochs = Vec::new();
        for row in rows {
            let num = |k: &str| -> Result<f64> {
                row.get(k).and_then(Value::as_f64).with_context(|| {
                    format!("expected a number `{k}` in every epoch of seed {seed}, found {row}")
                })
            };
            let Some(epoch) = row.get("epoch").and_then(Value::as_u64) else {
                bail!("expected an integer `epoch` in every epoch of seed {seed}, found {row}");
            };
            epochs.push(Epoch {
                epoch: epoch as usize,
                train_loss: num("train_loss")?,
                valid_loss: num("valid_loss")?,
                error_rate: num("error_rate")?,
                seconds: num("seconds")?,
            });
        }
        check_epochs(&epochs).with_context(|| format!("seed {seed}"))?;
        let count = |k: &str| run.get(k).and_then(Value::as_u64);
        let classes = run.get("classes").and_then(Value::as_array).map(Vec::len);
        let split = match (count("n_train"), count("n_valid"), classes) {
            (Some(train), Some(valid), Some(classes)) => Some(Split {
                train,
                valid,
                classes: classes as u64,
            }),
            _ => None,
        };
        runs.push(Run {
            seed,
            epochs,
            split,
        });
    }
    if runs.is_empty() {
        bail!("expected at least one run, found none");
    }
    Ok(FastaiOutput {
        fastai,
        torch,
        threads: value.get("threads").and_then(Value::as_u64),
        workers: value.get("workers").and_then(Value::as_u64),
        runs,
    })
}

/// Mean, range and sample standard deviation of a few values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sample standard deviation (n - 1 in the denominator); `None` for one value.
    pub std: Option<f64>,
}

/// [`Stats`] of `values`, `None` when there are none.
pub fn stats(values: &[f64]) -> Option<Stats> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let std = (n > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    Some(Stats {
        n,
        mean,
        min,
        max,
        std,
    })
}

/// Whether ours is within the seed-to-seed noise of fastai on one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compare {
    /// Mean of ours minus mean of fastai.
    pub diff: f64,
    /// The larger of the two sample standard deviations.
    pub noise: f64,
    /// `|diff| <= noise`.
    pub within: bool,
}

/// The rule of the verdict: the difference of the means against the larger of the two sides'
/// sample standard deviations across seeds. `None` when a side has fewer than two runs.
pub fn compare(ours: &Stats, fastai: &Stats) -> Option<Compare> {
    let noise = ours.std?.max(fastai.std?);
    let diff = ours.mean - fastai.mean;
    Some(Compare {
        diff,
        noise,
        within: diff.abs() <= noise,
    })
}

/// Everything the step produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Our runs, by seed order.
    pub ours: Vec<Run>,
    /// fastai's peer output, when it ran.
    pub fastai: Option<FastaiOutput>,
    /// What failed or is missing.
    pub problems: Vec<String>,
    /// Wall seconds: building mix-train, our runs, the peer.
    pub build_s: f64,
    /// Wall seconds of our runs together.
    pub ours_s: f64,
    /// Wall seconds of the peer.
    pub fastai_s: f64,
}

impl Outcome {
    fn fastai_runs(&self) -> &[Run] {
        self.fastai.as_ref().map_or(&[], |f| f.runs.as_slice())
    }
}

/// Builds mix-train once, copies the binary (so that a build running meanwhile cannot swap it),
/// runs it for each seed, then runs the fastai peer for all seeds.
pub fn run(root: &Path, target: &Path, python: &Path, dir: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(e) = runner::empty_dir(dir) {
        outcome
            .problems
            .push(format!("cannot empty {}: {e}", dir.display()));
        return outcome;
    }
    let t = Instant::now();
    let binary = runner::build_mix_train(target, dir);
    outcome.build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    match binary {
        Ok(binary) => {
            for &seed in RECIPE.seeds {
                match run_ours(root, &binary, seed, dir) {
                    Ok(run) => outcome.ours.push(run),
                    Err(e) => outcome
                        .problems
                        .push(format!("mix-train seed {seed} failed: {e:#}")),
                }
            }
        }
        Err(e) => outcome
            .problems
            .push(format!("building mix-train failed: {e:#}")),
    }
    outcome.ours_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    match run_peer(root, python, dir) {
        Ok(out) => outcome.fastai = Some(out),
        Err(e) => outcome
            .problems
            .push(format!("peer `{PEER}` failed: {e:#}")),
    }
    outcome.fastai_s = t.elapsed().as_secs_f64();
    outcome
}

fn run_ours(root: &Path, binary: &Path, seed: u64, dir: &Path) -> Result<Run> {
    let out = dir.join(format!("ours-seed-{seed}"));
    let run = runner::run_mix_train(root, binary, &RECIPE.ours_args(seed, &out), &[], &out)?;
    let read = |name: &str| {
        let path = run.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let metrics = run.join("metrics.csv");
    let mut parsed = parse_metrics_csv(seed, &read("metrics.csv")?)
        .with_context(|| metrics.display().to_string())?;
    parsed.split = read("config.json")
        .and_then(|t| parse_config_split(&t))
        .ok();
    Ok(parsed)
}

fn run_peer(root: &Path, python: &Path, dir: &Path) -> Result<FastaiOutput> {
    let script = root
        .join("benches")
        .join("peers")
        .join(format!("{PEER}.py"));
    if !script.exists() {
        bail!("missing: no benches/peers/{PEER}.py");
    }
    let json = dir.join(format!("{PEER}.json"));
    let _ = std::fs::remove_file(&json);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Command::new(python);
    cmd.current_dir(root)
        .arg(&script)
        .args(RECIPE.peer_args(&root.join(IMAGES), &json));
    runner::run(&mut cmd)?;
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("the peer wrote no {}", json.display()))?;
    let out = parse_fastai_json(&text).with_context(|| json.display().to_string())?;
    let _ = mix_io::write_atomic(&dir.join(format!("{PEER}.last.json")), text.as_bytes());
    Ok(out)
}

fn fmt6(v: f64) -> String {
    format!("{v:.6}")
}

fn finals(runs: &[Run], pick: fn(&Epoch) -> f64) -> Vec<f64> {
    runs.iter().filter_map(|r| r.last().map(pick)).collect()
}

fn stats_cells(s: Option<Stats>) -> [String; 3] {
    match s {
        None => ["missing".into(), "missing".into(), "missing".into()],
        Some(s) => [
            fmt6(s.mean),
            format!("{}–{}", fmt6(s.min), fmt6(s.max)),
            s.std.map_or("n/a (one run)".to_string(), fmt6),
        ],
    }
}

fn split_text(runs: &[Run]) -> String {
    let mut splits: Vec<Split> = runs.iter().filter_map(|r| r.split).collect();
    splits.dedup();
    match splits.as_slice() {
        [] => "not reported".to_string(),
        [s] => format!(
            "{} train / {} valid images, {} classes",
            s.train, s.valid, s.classes
        ),
        _ => "differs between seeds".to_string(),
    }
}

/// The verdict sentence on the final error rate and the final validation loss.
pub fn verdict(outcome: &Outcome) -> String {
    let figure = |pick: fn(&Epoch) -> f64| {
        let o = stats(&finals(&outcome.ours, pick))?;
        let f = stats(&finals(outcome.fastai_runs(), pick))?;
        compare(&o, &f)
    };
    let (Some(err), Some(loss)) = (figure(|e| e.error_rate), figure(|e| e.valid_loss)) else {
        return "No verdict: a side has fewer than two finished runs (see Problems).".to_string();
    };
    let word = |c: &Compare| if c.within { "within" } else { "outside" };
    format!(
        "Verdict: ours is {} the seed-to-seed noise of fastai on the final error rate (difference of \
         the means {:+.6}, larger sample std {:.6}) and {} it on the final validation loss \
         (difference {:+.6}, larger sample std {:.6}).",
        word(&err),
        err.diff,
        err.noise,
        word(&loss),
        loss.diff,
        loss.noise
    )
}

/// The step's section of docs/performance.md.
pub fn render(outcome: &Outcome, machine: &Machine, invocation: &str, quick: bool) -> String {
    let mut s = String::new();
    let w = &mut s;
    let seeds: Vec<String> = RECIPE.seeds.iter().map(u64::to_string).collect();
    let fastai_version = outcome
        .fastai
        .as_ref()
        .map_or("fastai (missing)".to_string(), |f| {
            format!("fastai {}", f.fastai)
        });
    let _ = writeln!(
        w,
        "## accuracy: mix-train against fastai's own vision_learner\n"
    );
    let alone = if quick {
        "cargo xtask bench --quick --only accuracy"
    } else {
        "cargo xtask bench --only accuracy"
    };
    let _ = writeln!(
        w,
        "Written by `{invocation}` on {} (UTC); reproduce this section alone with `{alone}` (the \
         same 3 epochs and seeds with or without `--quick`).\n",
        machine.date
    );
    let _ = write!(w, "{}", machine_lines(machine));
    let peer_threads = outcome.fastai.as_ref().map_or(String::new(), |f| {
        format!(
            " (the peer: torch {}, {} threads, {} DataLoader workers)",
            f.torch,
            f.threads.map_or("?".to_string(), |t| t.to_string()),
            f.workers.map_or("?".to_string(), |t| t.to_string())
        )
    });
    let _ = writeln!(
        w,
        "- Wall time: {:.0} s (building mix-train {:.0} s, our {} runs {:.0} s, {fastai_version} {} \
         runs {:.0} s){peer_threads}\n",
        outcome.build_s + outcome.ours_s + outcome.fastai_s,
        outcome.build_s,
        RECIPE.seeds.len(),
        outcome.ours_s,
        RECIPE.seeds.len(),
        outcome.fastai_s,
    );
    let _ = writeln!(
        w,
        "Both sides train ResNet18 from scratch on `{IMAGES}`, seeds {}: {}. Ours: `cargo run \
         --package mix-train -- {}`; fastai: `python benches/peers/{PEER}.py {}`. Split: ours {}; \
         fastai {}.\n",
        seeds.join(", "),
        RECIPE.fastai_calls(),
        args_text(&RECIPE.ours_args(0, Path::new("DIR"))).replace("--seed 0", "--seed S"),
        args_text(&RECIPE.peer_args(Path::new(IMAGES), Path::new("FILE"))),
        split_text(&outcome.ours),
        split_text(outcome.fastai_runs()),
    );
    let _ = writeln!(
        w,
        "The sample is tiny (24 validation images: one image is 0.041667 of error rate), so this is a \
         smoke-level quality check, not an accuracy measurement. The same seed does not give the \
         same split or draws on both sides (ours shuffles with ChaCha8, fastai with torch's \
         generator), so seeds are not paired. Our `time` is whole seconds (metrics.csv stores \
         `mm:ss`); fastai's is timed unrounded by the peer. Epoch times follow the machine's load \
         during the step and are no speed comparison (the train_step section is one).\n"
    );

    let _ = writeln!(w, "### Final epoch, per seed\n");
    let mut finals_table = Table::new(&[
        "",
        "ours error_rate",
        "fastai error_rate",
        "ours valid_loss",
        "fastai valid_loss",
    ]);
    let final_of = |runs: &[Run], seed: u64, pick: fn(&Epoch) -> f64| {
        runs.iter()
            .find(|r| r.seed == seed)
            .and_then(Run::last)
            .map_or("missing".to_string(), |e| fmt6(pick(e)))
    };
    let fastai = outcome.fastai_runs();
    for &seed in RECIPE.seeds {
        finals_table.push([
            format!("seed {seed}"),
            final_of(&outcome.ours, seed, |e| e.error_rate),
            final_of(fastai, seed, |e| e.error_rate),
            final_of(&outcome.ours, seed, |e| e.valid_loss),
            final_of(fastai, seed, |e| e.valid_loss),
        ]);
    }
    let columns = [
        stats_cells(stats(&finals(&outcome.ours, |e| e.error_rate))),
        stats_cells(stats(&finals(fastai, |e| e.error_rate))),
        stats_cells(stats(&finals(&outcome.ours, |e| e.valid_loss))),
        stats_cells(stats(&finals(fastai, |e| e.valid_loss))),
    ];
    for (i, name) in ["mean", "min–max", "sample std"].iter().enumerate() {
        finals_table.push([
            name.to_string(),
            columns[0][i].clone(),
            columns[1][i].clone(),
            columns[2][i].clone(),
            columns[3][i].clone(),
        ]);
    }
    let _ = write!(w, "{}", finals_table.render());
    let _ = writeln!(w, "\n{}\n", verdict(outcome));
    let _ = writeln!(
        w,
        "(The rule: within the noise when the difference of the means is at most the larger of the \
         two sample standard deviations across seeds.)\n"
    );

    let _ = writeln!(w, "### Per epoch\n");
    for &seed in RECIPE.seeds {
        let _ = writeln!(w, "Seed {seed}:\n");
        let mut epochs = Table::new(&[
            "side",
            "epoch",
            "train_loss",
            "valid_loss",
            "error_rate",
            "time (s)",
        ]);
        for (side, runs, secs) in [
            ("ours", &outcome.ours[..], 0usize),
            ("fastai", fastai, 1usize),
        ] {
            match runs.iter().find(|r| r.seed == seed) {
                None => {
                    epochs.push([side, "missing", "", "", "", ""]);
                }
                Some(run) => {
                    for e in &run.epochs {
                        epochs.push([
                            side.to_string(),
                            e.epoch.to_string(),
                            fmt6(e.train_loss),
                            fmt6(e.valid_loss),
                            fmt6(e.error_rate),
                            format!("{:.prec$}", e.seconds, prec = secs),
                        ]);
                    }
                }
            }
        }
        let _ = writeln!(w, "{}", epochs.render());
    }

    report::problems(
        w,
        &outcome.problems,
        "None: every run of both sides finished.",
    );
    s
}

fn args_text(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the final figures and the verdict to stderr.
pub fn print_summary(outcome: &Outcome) {
    let show = |runs: &[Run]| -> String {
        runs.iter()
            .filter_map(|r| {
                r.last()
                    .map(|e| format!("seed {} {:.4}", r.seed, e.error_rate))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("accuracy  final error rate, ours: {}", show(&outcome.ours));
    eprintln!(
        "accuracy  final error rate, fastai: {}",
        show(outcome.fastai_runs())
    );
    eprintln!("accuracy  {}", verdict(outcome));
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "epoch,train_loss,valid_loss,error_rate,time
0,1.922870,1.146416,0.208333,00:12
1,1.681938,4.208157,0.666667,00:11
2,1.663920,0.742237,0.25,01:02
";

    fn peer_json() -> String {
        let epochs = |e: [f64; 3]| {
            format!(
                r#"[{{"epoch":0,"train_loss":2.0,"valid_loss":1.8,"error_rate":0.5,"seconds":14.26}},
                {{"epoch":1,"train_loss":1.9,"valid_loss":{},"error_rate":0.4,"seconds":13.5}},
                {{"epoch":2,"train_loss":1.7,"valid_loss":{},"error_rate":{},"seconds":13.0}}]"#,
                e[0], e[1], e[2]
            )
        };
        format!(
            r#"{{"fastai":"2.8.12","torch":"2.11.0+cu130","threads":2,"workers":0,
            "settings":{{"epochs":3}},
            "runs":[{{"seed":0,"n_train":96,"n_valid":24,"classes":["a","b","c","d","e","f"],"epochs":{}}},
                    {{"seed":1,"epochs":{}}},
                    {{"seed":2,"n_train":96,"n_valid":24,"classes":["a","b","c","d","e","f"],"epochs":{}}}]}}"#,
            epochs([1.5, 1.0, 0.25]),
            epochs([1.5, 1.2, 0.375]),
            epochs([1.5, 0.8, 0.125])
        )
    }

    #[test]
    fn metrics_csv_becomes_a_run_with_seconds() {
        let run = parse_metrics_csv(4, METRICS).unwrap();
        assert_eq!(run.seed, 4);
        assert_eq!(run.epochs.len(), 3);
        assert_eq!(
            run.epochs[0],
            Epoch {
                epoch: 0,
                train_loss: 1.92287,
                valid_loss: 1.146416,
                error_rate: 0.208333,
                seconds: 12.0
            }
        );
        assert_eq!(run.epochs[2].seconds, 62.0);
        assert_eq!(parse_time("1:02:03").unwrap(), 3723.0);
        assert_eq!(parse_time("12.5").unwrap(), 12.5);
        assert!(parse_time("1:2:3:4").is_err() && parse_time("ab:01").is_err());
    }

    #[test]
    fn bad_metrics_csv_is_refused_with_what_was_expected() {
        let err = parse_metrics_csv(0, "epoch,loss\n0,1\n").unwrap_err();
        assert!(err.to_string().contains("expected the header"), "{err}");
        let err =
            parse_metrics_csv(0, "epoch,train_loss,valid_loss,error_rate,time\n").unwrap_err();
        assert!(err.to_string().contains("at least one epoch"), "{err}");
        let text = METRICS.replace("0,1.922870", "1,1.922870");
        let err = parse_metrics_csv(0, &text).unwrap_err();
        assert!(err.to_string().contains("expected epoch 0"), "{err}");
        let text = METRICS.replace("4.208157", "NaN");
        let err = parse_metrics_csv(0, &text).unwrap_err();
        assert!(
            err.to_string().contains("finite, non-negative valid_loss"),
            "{err}"
        );
        let text = METRICS.replace(",00:11", "");
        let err = parse_metrics_csv(0, &text).unwrap_err();
        assert!(err.to_string().contains("5 comma-separated cells"), "{err}");
    }

    #[test]
    fn config_json_gives_the_split() {
        let split =
            parse_config_split(r#"{"n_train":96,"n_valid":24,"classes":["a","b"],"seed":0}"#)
                .unwrap();
        assert_eq!(
            split,
            Split {
                train: 96,
                valid: 24,
                classes: 2
            }
        );
        assert!(parse_config_split(r#"{"n_train":96}"#).is_err());
    }

    #[test]
    fn peer_json_becomes_the_same_runs() {
        let out = parse_fastai_json(&peer_json()).unwrap();
        assert_eq!(out.fastai, "2.8.12");
        assert_eq!((out.threads, out.workers), (Some(2), Some(0)));
        assert_eq!(out.runs.len(), 3);
        let run = &out.runs[0];
        assert_eq!(run.seed, 0);
        assert_eq!(
            run.split,
            Some(Split {
                train: 96,
                valid: 24,
                classes: 6
            })
        );
        assert_eq!(out.runs[1].split, None);
        assert_eq!(
            run.epochs[2],
            Epoch {
                epoch: 2,
                train_loss: 1.7,
                valid_loss: 1.0,
                error_rate: 0.25,
                seconds: 13.0
            }
        );
    }

    #[test]
    fn bad_peer_json_is_refused_with_what_was_expected() {
        let err = parse_fastai_json(r#"{"torch":"2.11.0","runs":[]}"#).unwrap_err();
        assert!(err.to_string().contains("string `fastai`"), "{err}");
        let err = parse_fastai_json(r#"{"fastai":"2","torch":"2"}"#).unwrap_err();
        assert!(err.to_string().contains("`runs` array"), "{err}");
        let err = parse_fastai_json(r#"{"fastai":"2","torch":"2","runs":[]}"#).unwrap_err();
        assert!(err.to_string().contains("at least one run"), "{err}");
        let text = peer_json().replace(r#""error_rate":0.5"#, r#""error_rate":"low""#);
        let err = parse_fastai_json(&text).unwrap_err();
        assert!(err.to_string().contains("number `error_rate`"), "{err}");
        let text = peer_json().replace(r#""error_rate":0.4"#, r#""error_rate":1.5"#);
        let err = format!("{:#}", parse_fastai_json(&text).unwrap_err());
        assert!(
            err.contains("seed 0") && err.contains("between 0 and 1"),
            "{err}"
        );
    }

    #[test]
    fn stats_use_the_sample_standard_deviation() {
        let s = stats(&[0.25, 0.375, 0.125]).unwrap();
        assert_eq!((s.n, s.min, s.max), (3, 0.125, 0.375));
        assert!((s.mean - 0.25).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.125).abs() < 1e-12, "{s:?}");
        assert_eq!(stats(&[0.5]).unwrap().std, None);
        assert_eq!(stats(&[]), None);
        let o = stats(&[0.2, 0.3, 0.4]).unwrap();
        let f = stats(&[0.25, 0.375, 0.125]).unwrap();
        let c = compare(&o, &f).unwrap();
        assert!((c.diff - 0.05).abs() < 1e-12 && (c.noise - 0.125).abs() < 1e-12);
        assert!(c.within);
        let far = stats(&[0.9, 0.95, 1.0]).unwrap();
        assert!(!compare(&far, &f).unwrap().within);
        assert_eq!(compare(&stats(&[0.5]).unwrap(), &f), None);
    }

    fn machine() -> Machine {
        Machine {
            cpu: "Test CPU".to_string(),
            cores: 2,
            memory: None,
            rustc: "rustc 1.95.0".to_string(),
            versions: [
                ("python", "3.11.7"),
                ("torch", "2.11.0+cu130"),
                ("fastai", "2.8.12"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect(),
            commit: Some("abc123".to_string()),
            load: Some(0.25),
            wall_s: None,
            date: "2026-05-13".to_string(),
        }
    }

    fn outcome() -> Outcome {
        let ours = [0.208333, 0.25, 0.291667]
            .iter()
            .enumerate()
            .map(|(seed, err)| {
                let mut run = parse_metrics_csv(
                    seed as u64,
                    &METRICS.replace("0.25,01:02", &format!("{err},01:02")),
                )
                .unwrap();
                run.split = Some(Split {
                    train: 96,
                    valid: 24,
                    classes: 6,
                });
                run
            })
            .collect();
        Outcome {
            ours,
            fastai: Some(parse_fastai_json(&peer_json()).unwrap()),
            problems: Vec::new(),
            build_s: 20.0,
            ours_s: 100.0,
            fastai_s: 130.4,
        }
    }

    #[test]
    fn the_section_has_both_tables_the_summary_and_a_verdict() {
        let text = render(
            &outcome(),
            &machine(),
            "cargo xtask bench --only accuracy",
            false,
        );
        assert!(text.starts_with("## accuracy: "), "{text}");
        assert!(text.contains("Written by `cargo xtask bench --only accuracy` on 2026-05-13 (UTC)"));
        assert!(text.contains("Test CPU, 2 logical cores"), "{text}");
        assert!(
            text.contains("- Wall time: 250 s (building mix-train 20 s, our 3 runs 100 s, fastai 2.8.12 3 runs 130 s) (the peer: torch 2.11.0+cu130, 2 threads, 0 DataLoader workers)"),
            "{text}"
        );
        assert!(
            text.contains("--pretrained none --seed S --device cpu --out DIR`"),
            "{text}"
        );
        // fastai's seed 1 reported no split: the others agree, so the split is stated once.
        assert!(
            text.contains("Split: ours 96 train / 24 valid images, 6 classes; fastai 96 train / 24 valid images, 6 classes."),
            "{text}"
        );
        assert!(
            text.contains("| seed 1 | 0.250000 | 0.375000 | 0.742237 | 1.200000 |"),
            "{text}"
        );
        // ours 0.208333, 0.25, 0.291667: mean 0.25, std 0.041667; fastai 0.25, 0.375, 0.125.
        assert!(
            text.contains("| mean | 0.250000 | 0.250000 | 0.742237 | 1.000000 |"),
            "{text}"
        );
        assert!(
            text.contains("| min–max | 0.208333–0.291667 | 0.125000–0.375000 | 0.742237–0.742237 | 0.800000–1.200000 |"),
            "{text}"
        );
        assert!(
            text.contains("| sample std | 0.041667 | 0.125000 | 0.000000 | 0.200000 |"),
            "{text}"
        );
        assert!(
            text.contains("Verdict: ours is within the seed-to-seed noise of fastai on the final error rate (difference of the means +0.000000, larger sample std 0.125000) and outside it on the final validation loss (difference -0.257763, larger sample std 0.200000)."),
            "{text}"
        );
        assert!(text.contains("Seed 2:\n\n| side | epoch |"), "{text}");
        assert!(
            text.contains("| ours | 2 | 1.663920 | 0.742237 | 0.291667 | 62 |"),
            "{text}"
        );
        assert!(
            text.contains("| fastai | 0 | 2.000000 | 1.800000 | 0.500000 | 14.3 |"),
            "{text}"
        );
        assert!(
            text.contains("None: every run of both sides finished."),
            "{text}"
        );
    }

    #[test]
    fn splits_that_differ_between_seeds_are_said_to() {
        let mut o = outcome();
        o.ours[1].split = Some(Split {
            train: 95,
            valid: 25,
            classes: 6,
        });
        assert_eq!(split_text(&o.ours), "differs between seeds");
        assert_eq!(split_text(&[]), "not reported");
    }

    #[test]
    fn a_missing_side_is_marked_missing_and_gets_no_verdict() {
        let mut o = outcome();
        o.fastai = None;
        o.ours.truncate(2);
        o.problems
            .push("peer `fastai_train` failed: no fastai".to_string());
        let text = render(&o, &machine(), "cargo xtask bench", true);
        assert!(text.contains("--quick --only accuracy`"), "{text}");
        assert!(
            text.contains("| seed 2 | missing | missing | missing | missing |"),
            "{text}"
        );
        // (0.208333 + 0.25) / 2 = 0.2291665, printed with six decimals.
        assert!(text.contains("| mean | 0.229166 | missing |"), "{text}");
        assert!(
            text.contains("No verdict: a side has fewer than two finished runs"),
            "{text}"
        );
        assert!(text.contains("| fastai | missing | | | | |"), "{text}");
        assert!(
            text.contains("- peer `fastai_train` failed: no fastai"),
            "{text}"
        );
    }

    #[test]
    fn both_command_lines_name_every_setting() {
        let ours = args_text(&RECIPE.ours_args(2, Path::new("/tmp/o")));
        assert_eq!(
            ours,
            "--dataset sample --epochs 3 --bs 16 --resize 128 --size 112 --lr 1e-3 --mix mixup \
             --alpha 1 --pretrained none --seed 2 --device cpu --out /tmp/o"
        );
        let peer = args_text(&RECIPE.peer_args(Path::new("img"), Path::new("o.json")));
        assert_eq!(
            peer,
            "--images img --seeds 0,1,2 --epochs 3 --bs 16 --resize 128 --size 112 --lr 1e-3 \
             --mix mixup --alpha 1 --json o.json"
        );
    }
}
