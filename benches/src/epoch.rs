//! The `epoch` step of `cargo xtask bench`: one whole training epoch of mix-train against one of
//! fastai's own `fit_one_cycle` (benches/peers/fastai_epoch.py), same recipe, same images, same
//! device, and the report's images/s of both, the breakdown of ours and the speed target.
//!
//! Ours comes from the `timings.json` mix-train writes in its run folder ([`parse_timings`]),
//! fastai's from the JSON line its peer prints ([`parse_peer`]); both carry the same figures.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::report::{self, machine_lines, Machine, Table};
use crate::runner::{self, empty_dir, last_json_line, Mode};
use crate::speed::{
    formula, judge, measured_text, verdict_word, Bound, Key, Measure, Quantity, Results, Show,
    Target,
};
use crate::{accuracy, corpus};

mod recipe;

pub use recipe::{Device, Recipe, CORPUS_SEED, CPU, CUDA, PEER, STEP, TIMINGS_FILE};

/// Runs per side in full mode, alternating sides; quick mode runs each side once.
pub const FULL_RUNS: usize = 3;

/// Images in a recipe's corpus.
pub fn images(recipe: &Recipe) -> usize {
    corpus::BREEDS.len() * recipe.per_breed
}

/// The figures both sides report for one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Figures {
    /// Images the training loop trained on.
    pub train_items: u64,
    /// Images the validation loop saw.
    pub valid_items: u64,
    /// Wall seconds of the training loop.
    pub train_s: f64,
    /// Wall seconds of the validation loop.
    pub valid_s: f64,
    /// Wall seconds of the whole epoch, end-of-epoch work included.
    pub epoch_s: f64,
}

impl Figures {
    /// Images per second of the training loop.
    pub fn train_ips(&self) -> f64 {
        self.train_items as f64 / self.train_s
    }

    /// Images per second of the whole epoch (training and validation images).
    pub fn epoch_ips(&self) -> f64 {
        (self.train_items + self.valid_items) as f64 / self.epoch_s
    }

    fn check(&self) -> Result<()> {
        for (name, v) in [
            ("train_s", self.train_s),
            ("valid_s", self.valid_s),
            ("epoch_s", self.epoch_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("expected a positive, finite `{name}`, found {v}");
            }
        }
        if self.train_items == 0 {
            bail!("expected a positive `train_items`, found 0");
        }
        Ok(())
    }
}

/// One epoch of mix-train's `timings.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Timings {
    /// 0-based epoch.
    pub epoch: usize,
    /// The device mix-train trained on.
    pub device: String,
    /// The figures both sides report.
    #[serde(flatten)]
    pub figures: Figures,
    /// Seconds the training loop waited for the next batch.
    pub data_wait_s: f64,
    /// Seconds of host-to-device copies.
    pub h2d_s: f64,
    /// Seconds of batch augmentation, normalisation and target encoding (mix-train reports it besides
    /// the figures above; absent in files without it).
    #[serde(default)]
    pub augment_s: Option<f64>,
    /// Seconds of MixUp / CutMix.
    pub mixing_s: f64,
    /// Seconds of forward and backward passes.
    pub forward_backward_s: f64,
    /// Seconds of optimizer steps.
    pub optimizer_s: f64,
    /// Seconds of per-step logging (older mix-train builds also counted the end-of-epoch files here).
    pub logging_s: f64,
    /// Seconds of the end-of-epoch files and checkpoint, after validation (absent in older files).
    #[serde(default)]
    pub end_epoch_s: Option<f64>,
}

impl Timings {
    /// The parts of the training loop as `(name, seconds)` (augmentation only when reported), then
    /// what no part accounts for, last.
    pub fn breakdown(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("waiting for data", self.data_wait_s),
            ("host to device copies", self.h2d_s),
        ];
        if let Some(augment) = self.augment_s {
            out.push(("augmentation and normalisation", augment));
        }
        out.extend([
            ("mixing (MixUp)", self.mixing_s),
            ("forward and backward", self.forward_backward_s),
            ("optimizer step", self.optimizer_s),
            ("reading losses back and logging", self.logging_s),
        ]);
        let rest = self.figures.train_s - out.iter().map(|(_, s)| s).sum::<f64>();
        out.push(("other (in no part above)", rest));
        out
    }
}

/// Reads mix-train's `timings.json` (a JSON array, one object per epoch) and returns its last
/// epoch, checked.
pub fn parse_timings(text: &str) -> Result<Timings> {
    let epochs: Vec<Timings> =
        serde_json::from_str(text).context("expected a JSON array of per-epoch timings")?;
    let Some(last) = epochs.last() else {
        bail!("expected at least one epoch of timings, found none");
    };
    last.figures
        .check()
        .with_context(|| format!("epoch {}", last.epoch))?;
    let parts = last.breakdown();
    for (name, v) in &parts[..parts.len() - 1] {
        if !(v.is_finite() && *v >= 0.0) {
            bail!(
                "expected finite, non-negative seconds of {name} in epoch {}, found {v}",
                last.epoch
            );
        }
    }
    Ok(last.clone())
}

/// What the fastai peer printed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerEpoch {
    /// fastai's version.
    pub fastai: String,
    /// torch's version.
    pub torch: String,
    /// The device it trained on.
    pub device: String,
    /// The GPU's name on CUDA.
    #[serde(default)]
    pub gpu: Option<String>,
    /// torch threads.
    pub threads: u64,
    /// DataLoader worker processes.
    pub workers: u64,
    /// The figures both sides report.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Reads the peer's stdout: the last line that starts with `{`, as a [`PeerEpoch`].
pub fn parse_peer(stdout: &str) -> Result<PeerEpoch> {
    let line = last_json_line(stdout)?;
    let peer: PeerEpoch = serde_json::from_str(line)
        .with_context(|| format!("expected the epoch figures as JSON, found `{line}`"))?;
    peer.figures.check()?;
    Ok(peer)
}

/// Everything the step produced.
#[derive(Debug)]
pub struct Outcome {
    /// The recipe both sides ran.
    pub recipe: &'static Recipe,
    /// The corpus's images folder, when it was made.
    pub corpus: Option<PathBuf>,
    /// Our runs, in run order.
    pub ours: Vec<Timings>,
    /// fastai's runs, in run order.
    pub fastai: Vec<PeerEpoch>,
    /// What failed or is missing.
    pub problems: Vec<String>,
    /// Wall seconds: making the corpus and building mix-train, our runs, the peer's runs.
    pub prepare_s: f64,
    /// Wall seconds of our runs together (process start to exit).
    pub ours_s: f64,
    /// The device-only ceiling's runs (mix-tch's `epoch_ceiling` example), in run order.
    pub ceiling: Vec<Ceiling>,
    /// Wall seconds of the peer's runs together (process start to exit).
    pub fastai_s: f64,
}

/// The run whose whole epoch took the median time (the lower one of an even count).
pub fn median_by<T>(runs: &[T], key: impl Fn(&T) -> f64) -> Option<&T> {
    let mut sorted: Vec<&T> = runs.iter().collect();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

impl Outcome {
    /// Our reported run.
    pub fn ours(&self) -> Option<&Timings> {
        median_by(&self.ours, |t| t.figures.epoch_s)
    }

    /// fastai's reported run.
    pub fn fastai(&self) -> Option<&PeerEpoch> {
        median_by(&self.fastai, |p| p.figures.epoch_s)
    }

    /// The reported runs as the bench's [`Results`], for [`TARGET`].
    fn results(&self) -> Results {
        let mut results = Results::default();
        let mut put = |key: Key, f: &Figures| {
            results.measures.insert(
                key.owned(),
                Measure {
                    median_s: f.epoch_s,
                    items: Some(f.train_items + f.valid_items),
                },
            );
        };
        if let Some(t) = self.ours() {
            put(OURS_EPOCH, &t.figures);
        }
        if let Some(p) = self.fastai() {
            put(FASTAI_EPOCH, &p.figures);
        }
        results
    }
}

/// Our whole epoch: seconds and images (training and validation).
const OURS_EPOCH: Key = Key::Ours("epoch/whole_epoch");
/// fastai's whole epoch.
const FASTAI_EPOCH: Key = Key::Peer(PEER, "whole_epoch");

/// The speed target of the epoch issue, judged on the CPU run.
pub const TARGET: Target = Target {
    claim: "CPU whole epoch >= 1.3x fastai's images/s",
    quantity: Quantity::Ratio {
        a: FASTAI_EPOCH,
        b: OURS_EPOCH,
        per_item: true,
    },
    bound: Bound::AtLeast(1.3),
    show: Show::Times,
};

/// Makes the corpus, builds mix-train, then runs ours and the peer alternately (once each in quick
/// mode), so that both sides see the same machine load.
/// What the steps that train mix-train on the corpus prepare alike: `<data>/<step>` emptied, and the
/// recipe's corpus made (once; later steps find it). The error is the report's problem line.
pub fn step_folder_and_corpus(
    root: &Path,
    data: &Path,
    step: &str,
    recipe: &Recipe,
) -> std::result::Result<(PathBuf, PathBuf), String> {
    let dir = data.join(step);
    empty_dir(&dir).map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
    let corpus = corpus::ensure(
        data,
        &root.join(accuracy::IMAGES),
        recipe.per_breed,
        CORPUS_SEED,
    )
    .map_err(|e| format!("cannot make the corpus: {e:#}"))?;
    Ok((dir, corpus))
}

pub fn run(
    root: &Path,
    target: &Path,
    python: &Path,
    data: &Path,
    recipe: &'static Recipe,
    mode: Mode,
) -> Outcome {
    let mut outcome = Outcome {
        recipe,
        corpus: None,
        ours: Vec::new(),
        fastai: Vec::new(),
        problems: Vec::new(),
        prepare_s: 0.0,
        ours_s: 0.0,
        ceiling: Vec::new(),
        fastai_s: 0.0,
    };
    let t = Instant::now();
    let (dir, corpus) = match step_folder_and_corpus(root, data, STEP, recipe) {
        Ok(made) => made,
        Err(problem) => {
            outcome.problems.push(problem);
            return outcome;
        }
    };
    // Named from the workspace root in the report, which is the same on every clone.
    outcome.corpus = Some(corpus.strip_prefix(root).unwrap_or(&corpus).to_path_buf());
    let binary = runner::build_mix_train(target, &dir);
    let ceiling_binary = build_ceiling(target, &dir);
    outcome.prepare_s = t.elapsed().as_secs_f64();
    let ceiling_binary = match ceiling_binary {
        Ok(b) => Some(b),
        Err(e) => {
            outcome
                .problems
                .push(format!("building the ceiling example failed: {e:#}"));
            None
        }
    };
    let binary = match binary {
        Ok(b) => Some(b),
        Err(e) => {
            outcome
                .problems
                .push(format!("building mix-train failed: {e:#}"));
            None
        }
    };
    let runs = match mode {
        Mode::Quick => 1,
        Mode::Full => FULL_RUNS,
    };
    for i in 0..runs {
        if let Some(binary) = &binary {
            let t = Instant::now();
            match run_ours(
                root,
                binary,
                recipe,
                &corpus,
                &dir.join(format!("ours-{i}")),
            ) {
                Ok(timings) => outcome.ours.push(timings),
                Err(e) => outcome
                    .problems
                    .push(format!("mix-train run {i} failed: {e:#}")),
            }
            outcome.ours_s += t.elapsed().as_secs_f64();
        }
        if let Some(binary) = &ceiling_binary {
            match run_ceiling(root, binary, recipe, &corpus) {
                Ok(c) => outcome.ceiling.push(c),
                Err(e) => outcome
                    .problems
                    .push(format!("ceiling run {i} failed: {e:#}")),
            }
        }
        let t = Instant::now();
        match run_peer(root, python, recipe, &corpus, &dir, i) {
            Ok(peer) => outcome.fastai.push(peer),
            Err(e) => outcome
                .problems
                .push(format!("peer `{PEER}` run {i} failed: {e:#}")),
        }
        outcome.fastai_s += t.elapsed().as_secs_f64();
    }
    outcome
}

fn run_ours(
    root: &Path,
    binary: &Path,
    recipe: &Recipe,
    corpus: &Path,
    out: &Path,
) -> Result<Timings> {
    let run = runner::run_mix_train(root, binary, &recipe.ours_args(corpus, out), &[], out)?;
    let path = run.join(TIMINGS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: expected mix-train to write its per-epoch timings there",
            path.display()
        )
    })?;
    parse_timings(&text).with_context(|| path.display().to_string())
}

fn run_peer(
    root: &Path,
    python: &Path,
    recipe: &Recipe,
    corpus: &Path,
    dir: &Path,
    i: usize,
) -> Result<PeerEpoch> {
    let script = root
        .join("benches")
        .join("peers")
        .join(format!("{PEER}.py"));
    if !script.exists() {
        bail!("missing: no benches/peers/{PEER}.py");
    }
    let mut cmd = Command::new(python);
    cmd.current_dir(root)
        .arg(&script)
        .args(recipe.peer_args(corpus))
        // fastai's progress goes to the terminal; only the JSON line is read.
        .stderr(Stdio::inherit());
    eprintln!("$ {}", runner::display(&cmd));
    let stdout = runner::output(&mut cmd)?;
    eprint!("{stdout}");
    let _ = mix_io::write_atomic(&dir.join(format!("{PEER}-{i}.json")), stdout.as_bytes());
    parse_peer(&stdout)
}

/// `part / whole` as a percentage.
fn percent(part: f64, whole: f64) -> String {
    format!("{:.1}%", 100.0 * part / whole)
}

fn ratio(ours: f64, fastai: f64) -> String {
    format!("{:.2}x", ours / fastai)
}

fn args_text(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the `epoch_ceiling` example prints: the training loop on one batch kept on the device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ceiling {
    /// Images the steps trained on.
    pub train_items: u64,
    /// Wall seconds of the training loop.
    pub train_s: f64,
    /// The device (`cpu`, `cuda:0`).
    pub device: String,
    /// The precision the passes ran in.
    pub precision: String,
    /// Whether they ran channels-last (mix-train's default layout where its check agrees).
    #[serde(default)]
    pub channels_last: bool,
}

impl Ceiling {
    /// The arithmetic and layout, for the report: `fp32, channels-last`.
    pub fn compute(&self) -> String {
        let layout = if self.channels_last {
            "channels-last"
        } else {
            "contiguous"
        };
        format!("{}, {layout}", self.precision)
    }

    /// Images per second.
    pub fn ips(&self) -> f64 {
        self.train_items as f64 / self.train_s
    }
}

/// Reads the ceiling example's JSON line (the last line of stdout that starts with `{`).
pub fn parse_ceiling(stdout: &str) -> Result<Ceiling> {
    let line = last_json_line(stdout)?;
    let c: Ceiling = serde_json::from_str(line)
        .with_context(|| format!("expected the ceiling figures as JSON, found `{line}`"))?;
    if !(c.train_s.is_finite() && c.train_s > 0.0 && c.train_items > 0) {
        bail!("expected positive seconds and images from the ceiling example, found `{line}`");
    }
    Ok(c)
}

fn build_ceiling(target: &Path, dir: &Path) -> Result<PathBuf> {
    let mut cmd = runner::cargo();
    cmd.args([
        "build",
        "--package",
        "mix-tch",
        "--example",
        "epoch_ceiling",
    ]);
    runner::run(&mut cmd)?;
    let name = format!("epoch_ceiling{}", std::env::consts::EXE_SUFFIX);
    let built = target.join("debug").join("examples").join(&name);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = dir.join(&name);
    std::fs::copy(&built, &copy)
        .with_context(|| format!("cannot copy {} to {}", built.display(), copy.display()))?;
    Ok(copy)
}

fn run_ceiling(root: &Path, binary: &Path, recipe: &Recipe, corpus: &Path) -> Result<Ceiling> {
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .args(recipe.ceiling_args(corpus))
        // As mix-train runs itself: OpenMP threads sleep while they wait.
        .env("OMP_WAIT_POLICY", "PASSIVE");
    eprintln!("$ {}", runner::display(&cmd));
    let stdout = runner::output(&mut cmd)?;
    eprint!("{stdout}");
    parse_ceiling(&stdout)
}

/// The CUDA targets (training epoch >= 2x fastai's, >= 80% of the device-only ceiling), judged on a
/// CUDA run only, as table rows.
fn cuda_target_rows(outcome: &Outcome) -> Vec<Vec<String>> {
    let cuda = outcome.recipe.device == Device::Cuda;
    let ours = outcome.ours().map(|t| t.figures.train_ips());
    let fastai = outcome.fastai().map(|p| p.figures.train_ips());
    let ceiling = median_by(&outcome.ceiling, |c| c.train_s).map(Ceiling::ips);
    let row = |claim: &str,
               measured: Option<f64>,
               bound: f64,
               show: &dyn Fn(f64) -> String,
               how: &str| {
        let (measured, word) = match measured {
            None => ("missing".to_string(), "missing".to_string()),
            Some(m) if !cuda => (
                show(m),
                format!("not judged ({} run)", outcome.recipe.device.name()),
            ),
            Some(m) => (
                show(m),
                if m >= bound {
                    "met".into()
                } else {
                    "not met".into()
                },
            ),
        };
        vec![claim.to_string(), measured, word, how.to_string()]
    };
    vec![
        row(
            "CUDA training epoch >= 2x fastai's images/s",
            ours.zip(fastai).map(|(o, f)| o / f),
            2.0,
            &|m| format!("{m:.2}x"),
            "training images/s of ours / of fastai",
        ),
        row(
            "CUDA training epoch >= 80% of the device-only ceiling",
            ours.zip(ceiling).map(|(o, c)| o / c),
            0.8,
            &|m| format!("{:.0}%", 100.0 * m),
            "training images/s of ours / of `epoch_ceiling` (the same steps on one batch kept on the device)",
        ),
    ]
}

/// The target's row (its cells), or why it is not judged.
fn target_row(outcome: &Outcome) -> Vec<String> {
    let verdict = judge(&TARGET, &outcome.results());
    let (word, measured) = if outcome.recipe.device == Device::Cpu {
        (
            verdict_word(&verdict).to_string(),
            measured_text(&TARGET, &verdict),
        )
    } else {
        (
            format!("not judged ({} run)", outcome.recipe.device.name()),
            measured_text(&TARGET, &verdict),
        )
    };
    vec![
        TARGET.claim.to_string(),
        measured,
        word,
        formula(&TARGET.quantity),
    ]
}

/// The step's section of docs/performance.md.
pub fn render(outcome: &Outcome, machine: &Machine, invocation: &str, mode: Mode) -> String {
    let r = outcome.recipe;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "## epoch: one whole training epoch of mix-train against fastai's fit_one_cycle\n"
    );
    let device_flag = match r.device {
        Device::Cpu => String::new(),
        d => format!(" --device {}", d.name()),
    };
    let _ = writeln!(
        w,
        "Written by `{invocation}` on {} (UTC); reproduce this section alone with `{} --only \
         {STEP}{device_flag}`.\n",
        machine.date,
        mode.command()
    );
    let _ = write!(w, "{}", machine_lines(machine));
    let peer = outcome.fastai();
    if let Some(gpu) = peer.and_then(|p| p.gpu.as_ref()) {
        let _ = writeln!(w, "- GPU: {gpu}");
    }
    let peer_setup = peer.map_or(String::new(), |p| {
        format!(
            " (the peer: fastai {}, torch {}, {} threads, {} DataLoader workers)",
            p.fastai, p.torch, p.threads, p.workers
        )
    });
    let _ = writeln!(
        w,
        "- Wall time: {:.0} s (corpus and building mix-train {:.0} s, our runs {:.0} s, fastai's runs \
         {:.0} s, each from process start to exit){peer_setup}",
        outcome.prepare_s + outcome.ours_s + outcome.fastai_s,
        outcome.prepare_s,
        outcome.ours_s,
        outcome.fastai_s,
    );
    let _ = writeln!(
        w,
        "- Mode: {}\n",
        match mode {
            Mode::Quick => "quick (one run per side)".to_string(),
            Mode::Full => format!(
                "full ({FULL_RUNS} runs per side, alternating; the run with the median whole-epoch \
                 time is shown)"
            ),
        }
    );
    let corpus = outcome
        .corpus
        .as_ref()
        .map_or("DIR".into(), |c| c.display().to_string());
    let _ = writeln!(
        w,
        "Both sides train ResNet18 from scratch for one epoch on the pets-like corpus ({} images: 37 \
         breeds x {}, made by `cargo xtask bench` from data/sample/images, seed {CORPUS_SEED}), \
         valid_pct 0.2: {}. Ours: `mix-train {}` (its speed defaults: `--precision auto \
         --memory-format auto --cache-images auto`, so fp32 on the CPU, channels-last where its check \
         agrees); fastai: `python benches/peers/{PEER}.py {}` (fp32, NCHW). Our \
         figures are mix-train's `{TIMINGS_FILE}`, fastai's come from a callback around its \
         training and validation loops. A whole epoch counts training and validation images over \
         the epoch's seconds, end-of-epoch writing included.\n",
        images(r),
        r.per_breed,
        r.fastai_calls(),
        args_text(&r.ours_args(Path::new("CORPUS"), Path::new("DIR"))),
        args_text(&r.peer_args(Path::new("CORPUS"))),
    );
    let _ = writeln!(w, "Corpus folder of this run: `{corpus}`.\n");

    let _ = writeln!(w, "### Target\n");
    let mut targets = Table::new(&["Target", "Measured", "Verdict", "Quantity"]);
    targets.push(target_row(outcome));
    for row in cuda_target_rows(outcome) {
        targets.push(row);
    }
    let _ = writeln!(w, "{}", targets.render());

    let _ = writeln!(w, "### Side by side\n");
    let _ = writeln!(
        w,
        "A ratio above 1 on an images/s row, or below 1 on a seconds row, means ours is faster.\n"
    );
    let mut side = Table::new(&["Figure", "Ours", "fastai", "Ours / fastai"]);
    let ours = outcome.ours().map(|t| t.figures);
    let fastai = peer.map(|p| p.figures);
    // Each row: its name, the figure and the decimals it is shown with.
    type Pick = fn(&Figures) -> f64;
    let rows: [(&str, Pick, usize); 7] = [
        ("training epoch, images/s", Figures::train_ips, 1),
        ("whole epoch, images/s", Figures::epoch_ips, 1),
        ("training loop, s", |f| f.train_s, 2),
        ("validation loop, s", |f| f.valid_s, 2),
        ("whole epoch, s", |f| f.epoch_s, 2),
        ("training images", |f| f.train_items as f64, 0),
        ("validation images", |f| f.valid_items as f64, 0),
    ];
    for (name, pick, prec) in rows {
        let cell = |f: Option<Figures>| {
            f.map_or("missing".to_string(), |f| format!("{:.prec$}", pick(&f)))
        };
        let both = match (ours, fastai) {
            (Some(o), Some(f)) => ratio(pick(&o), pick(&f)),
            _ => "missing".to_string(),
        };
        side.push([name.to_string(), cell(ours), cell(fastai), both]);
    }
    let _ = write!(w, "{}", side.render());

    match (median_by(&outcome.ceiling, |c| c.train_s), outcome.ours()) {
        (Some(c), Some(t)) => {
            let _ = writeln!(
                w,
                "\nDevice-only ceiling (mix-tch's `epoch_ceiling` example: the same {} training steps, \
                 augmentation and MixUp included, on one batch kept on the {} in {}): {:.1} images/s; \
                 our training loop reaches {:.0}% of it.",
                t.figures.train_items / outcome.recipe.bs as u64,
                c.device,
                c.compute(),
                c.ips(),
                100.0 * t.figures.train_ips() / c.ips()
            );
        }
        _ => {
            let _ = writeln!(w, "\nDevice-only ceiling: missing (see Problems).");
        }
    }
    let _ = writeln!(w, "\n### Where our training loop goes\n");
    match outcome.ours() {
        None => {
            let _ = writeln!(w, "Missing: mix-train reported no timings (see Problems).");
        }
        Some(t) => {
            let mut parts = Table::new(&["Part", "Seconds", "Share of the training loop"]);
            for (name, secs) in t.breakdown() {
                parts.push([
                    name.to_string(),
                    format!("{secs:.3}"),
                    percent(secs, t.figures.train_s),
                ]);
            }
            parts.push([
                "training loop (`train_s`)".to_string(),
                format!("{:.3}", t.figures.train_s),
                "100.0%".to_string(),
            ]);
            let _ = write!(w, "{}", parts.render());
            let end = t
                .end_epoch_s
                .map_or("missing".to_string(), |e| format!("{e:.3} s"));
            let _ = writeln!(
                w,
                "\nThe parts are mix-train's own (`{TIMINGS_FILE}`). After validation, the epoch's \
                 files and checkpoint took {end}."
            );
        }
    }

    if mode == Mode::Full {
        let _ = writeln!(w, "\n### Every run\n");
        let mut runs = Table::new(&[
            "Side",
            "Run",
            "Training images/s",
            "Whole-epoch images/s",
            "Whole epoch, s",
        ]);
        let list = outcome
            .ours
            .iter()
            .map(|t| ("ours", t.figures))
            .enumerate()
            .chain(
                outcome
                    .fastai
                    .iter()
                    .map(|p| ("fastai", p.figures))
                    .enumerate(),
            );
        for (i, (side, f)) in list {
            runs.push([
                side.to_string(),
                i.to_string(),
                format!("{:.1}", f.train_ips()),
                format!("{:.1}", f.epoch_ips()),
                format!("{:.2}", f.epoch_s),
            ]);
        }
        let _ = write!(w, "{}", runs.render());
    }

    let _ = writeln!(w);
    report::problems(
        w,
        &outcome.problems,
        "None: every run of both sides finished.",
    );
    s
}

/// Prints both sides' images/s and the target to stderr.
pub fn print_summary(outcome: &Outcome) {
    let show = |f: Option<Figures>| {
        f.map_or("missing".to_string(), |f| {
            format!(
                "training {:.1} images/s, whole epoch {:.1} images/s",
                f.train_ips(),
                f.epoch_ips()
            )
        })
    };
    eprintln!(
        "epoch     ours: {}",
        show(outcome.ours().map(|t| t.figures))
    );
    eprintln!(
        "epoch     fastai: {}",
        show(outcome.fastai().map(|p| p.figures))
    );
    eprintln!("epoch     {}", Table::line(&target_row(outcome)));
    for row in cuda_target_rows(outcome).iter().map(|r| Table::line(r)) {
        eprintln!("epoch     {row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMINGS: &str = r#"[
        {"epoch":0,"device":"cpu","train_items":256,"valid_items":74,"train_s":20.0,"valid_s":2.5,
         "epoch_s":23.0,"data_wait_s":1.0,"h2d_s":0.0,"mixing_s":0.2,"forward_backward_s":16.0,
         "optimizer_s":2.0,"logging_s":0.3}
    ]"#;

    const PEER_LINE: &str = r#"{"fastai": "2.8.12", "torch": "2.11.0+cu130", "device": "cpu", "gpu": null, "threads": 2, "workers": 2, "train_items": 256, "valid_items": 74, "train_s": 32.0, "valid_s": 3.0, "epoch_s": 33.0, "train_loss": 4.1, "valid_loss": 3.9, "error_rate": 0.97}"#;

    fn machine() -> Machine {
        Machine {
            cpu: "Test CPU".to_string(),
            cores: 2,
            load: Some(0.5),
            date: "2026-12-02".to_string(),
            ..Machine::default()
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            recipe: &CPU,
            corpus: Some(PathBuf::from("/d/pets-like-n10-s0/oxford-iiit-pet/images")),
            ours: vec![parse_timings(TIMINGS).unwrap()],
            fastai: vec![parse_peer(PEER_LINE).unwrap()],
            problems: Vec::new(),
            prepare_s: 5.0,
            ours_s: 30.0,
            ceiling: vec![parse_ceiling(CEILING_LINE).unwrap()],
            fastai_s: 40.0,
        }
    }

    const CEILING_LINE: &str =
        r#"{"device":"cpu","precision":"fp32","steps":4,"train_items":256,"train_s":16.0}"#;

    #[test]
    fn the_ceiling_line_is_read_and_the_cuda_targets_judged_only_on_cuda() {
        let c = parse_ceiling(&format!("noise\n{CEILING_LINE}\n")).unwrap();
        assert_eq!((c.train_items, c.device.as_str()), (256, "cpu"));
        assert_eq!(c.compute(), "fp32, contiguous");
        let cl = parse_ceiling(&CEILING_LINE.replace('}', r#","channels_last":true}"#)).unwrap();
        assert_eq!(cl.compute(), "fp32, channels-last");
        assert!((c.ips() - 16.0).abs() < 1e-12);
        assert!(parse_ceiling(
            r#"{"device":"cpu","precision":"fp32","train_items":0,"train_s":1.0}"#
        )
        .is_err());
        assert!(parse_ceiling("no json").is_err());
        let lines = |o: &Outcome| -> Vec<String> {
            cuda_target_rows(o).iter().map(|r| Table::line(r)).collect()
        };
        let rows = lines(&outcome());
        // Ours trains 12.8 images/s: 80% of the 16 images/s ceiling, 1.6x fastai's 8.
        assert!(
            rows[0].contains("| 1.60x | not judged (cpu run) |"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("| 80% | not judged (cpu run) |"),
            "{}",
            rows[1]
        );
        let mut cuda = outcome();
        cuda.recipe = &CUDA;
        let rows = lines(&cuda);
        assert!(rows[0].contains("| 1.60x | not met |"), "{}", rows[0]);
        assert!(rows[1].contains("| 80% | met |"), "{}", rows[1]);
    }

    #[test]
    fn timings_json_gives_the_last_epoch_with_its_breakdown() {
        let t = parse_timings(TIMINGS).unwrap();
        assert_eq!((t.epoch, t.device.as_str()), (0, "cpu"));
        assert_eq!((t.figures.train_items, t.figures.valid_items), (256, 74));
        assert!((t.figures.train_ips() - 12.8).abs() < 1e-12);
        // (256 + 74) / 23 s.
        assert!((t.figures.epoch_ips() - 330.0 / 23.0).abs() < 1e-12);
        let parts = t.breakdown();
        assert_eq!(parts.len(), 7);
        assert_eq!(parts[3], ("forward and backward", 16.0));
        assert_eq!(t.augment_s, None);
        // 20 - (1 + 0 + 0.2 + 16 + 2 + 0.3) = 0.5 s in no part.
        let (name, rest) = parts[6];
        assert!(
            name.starts_with("other") && (rest - 0.5).abs() < 1e-9,
            "{rest}"
        );
        let two = format!(
            "[{}, {}]",
            &TIMINGS.trim()[1..TIMINGS.trim().len() - 1],
            TIMINGS.trim()[1..TIMINGS.trim().len() - 1].replace(r#""epoch":0"#, r#""epoch":1"#)
        );
        assert_eq!(parse_timings(&two).unwrap().epoch, 1);
        // mix-train's file also reports augmentation: its own row, and less time in no part.
        let t = parse_timings(&TIMINGS.replace(r#""mixing_s""#, r#""augment_s":0.4,"mixing_s""#))
            .unwrap();
        let parts = t.breakdown();
        assert_eq!(parts.len(), 8);
        assert_eq!(parts[2], ("augmentation and normalisation", 0.4));
        assert!((parts[7].1 - 0.1).abs() < 1e-9, "{parts:?}");
    }

    #[test]
    fn bad_timings_are_refused_with_what_was_expected() {
        let err = format!("{:#}", parse_timings("{}").unwrap_err());
        assert!(err.contains("JSON array of per-epoch timings"), "{err}");
        let err = format!("{:#}", parse_timings("[]").unwrap_err());
        assert!(err.contains("at least one epoch"), "{err}");
        let err = format!(
            "{:#}",
            parse_timings(&TIMINGS.replace(r#""train_s":20.0"#, r#""train_s":0"#)).unwrap_err()
        );
        assert!(err.contains("positive, finite `train_s`"), "{err}");
        let err = format!(
            "{:#}",
            parse_timings(&TIMINGS.replace(r#""h2d_s":0.0"#, r#""h2d_s":-1"#)).unwrap_err()
        );
        assert!(err.contains("host to device copies"), "{err}");
        let err = format!(
            "{:#}",
            parse_timings(&TIMINGS.replace(r#""mixing_s":0.2,"#, "")).unwrap_err()
        );
        assert!(err.contains("mixing_s"), "{err}");
    }

    #[test]
    fn the_peer_line_is_read_from_the_end_of_stdout() {
        let p = parse_peer(&format!("loading\n{PEER_LINE}\n")).unwrap();
        assert_eq!((p.fastai.as_str(), p.threads, p.workers), ("2.8.12", 2, 2));
        assert_eq!(p.gpu, None);
        assert!((p.figures.train_ips() - 8.0).abs() < 1e-12);
        assert!((p.figures.epoch_ips() - 10.0).abs() < 1e-12);
        let err = parse_peer("no json").unwrap_err();
        assert!(err.to_string().contains("JSON object line"), "{err}");
        let err = parse_peer(&PEER_LINE.replace(r#""train_items": 256"#, r#""train_items": 0"#))
            .unwrap_err();
        assert!(err.to_string().contains("positive `train_items`"), "{err}");
        let err = parse_peer(r#"{"fastai": "2.8.12"}"#).unwrap_err();
        assert!(
            err.to_string().contains("expected the epoch figures"),
            "{err}"
        );
    }

    #[test]
    fn the_median_run_is_reported() {
        assert_eq!(median_by(&[3.0, 1.0, 2.0], |v| *v), Some(&2.0));
        assert_eq!(median_by(&[3.0, 1.0], |v| *v), Some(&1.0));
        assert_eq!(median_by(&[] as &[f64], |v| *v), None);
    }

    #[test]
    fn both_command_lines_name_every_setting() {
        let ours = args_text(&CPU.ours_args(Path::new("/c"), Path::new("/o")));
        assert_eq!(
            ours,
            "--dataset /c --epochs 1 --bs 64 --resize 144 --size 128 --lr 1e-3 --mix mixup \
             --alpha 1 --pretrained none --seed 0 --device cpu --out /o"
        );
        let peer = args_text(&CUDA.peer_args(Path::new("/c")));
        assert_eq!(
            peer,
            "--images /c --item 256 --size 224 --bs 64 --alpha 1 --seed 0 --device cuda"
        );
        assert_eq!((images(&CPU), images(&CUDA)), (370, 7400));
        assert_eq!(Recipe::for_device(Device::Cuda), &CUDA);
        assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda);
        let err = Device::parse("gpu").unwrap_err();
        assert_eq!(err.to_string(), "expected cpu or cuda, found `gpu`");
    }

    #[test]
    fn the_section_has_both_sides_the_breakdown_and_the_judged_target() {
        let text = render(
            &outcome(),
            &machine(),
            "cargo xtask bench --quick --only epoch",
            Mode::Quick,
        );
        assert!(text.starts_with("## epoch: "), "{text}");
        assert!(text.contains(
            "Written by `cargo xtask bench --quick --only epoch` on 2026-12-02 (UTC); reproduce \
             this section alone with `cargo xtask bench --quick --only epoch`."
        ));
        assert!(text.contains("Test CPU, 2 logical cores"), "{text}");
        assert!(
            text.contains("Load average (1 min) before the step: 0.50"),
            "{text}"
        );
        assert!(text.contains("2 threads, 2 DataLoader workers"), "{text}");
        assert!(text.contains("370 images: 37 breeds x 10"), "{text}");
        // Ours 12.8 training images/s against 8.0; whole epoch 330 / 23 = 14.35 against 10.0.
        assert!(
            text.contains("| training epoch, images/s | 12.8 | 8.0 | 1.60x |"),
            "{text}"
        );
        assert!(
            text.contains("| whole epoch, images/s | 14.3 | 10.0 | 1.43x |"),
            "{text}"
        );
        assert!(
            text.contains("| training images | 256 | 256 | 1.00x |"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "| CPU whole epoch >= 1.3x fastai's images/s | 1.43x | met | time per image of \
                 `{}` / time per image of `{}` |",
                FASTAI_EPOCH.owned(),
                OURS_EPOCH.owned()
            )),
            "{text}"
        );
        assert!(
            text.contains("| forward and backward | 16.000 | 80.0% |"),
            "{text}"
        );
        assert!(
            text.contains("| other (in no part above) | 0.500 | 2.5% |"),
            "{text}"
        );
        assert!(!text.contains("### Every run"), "{text}");
        assert!(text.contains("None: every run of both sides finished."));
    }

    #[test]
    fn a_slow_epoch_misses_the_target_and_a_missing_side_says_so() {
        let mut o = outcome();
        o.fastai = vec![
            parse_peer(&PEER_LINE.replace(r#""epoch_s": 33.0"#, r#""epoch_s": 25.0"#)).unwrap(),
        ];
        let text = render(&o, &machine(), "cargo xtask bench", Mode::Full);
        // fastai 330 / 25 = 13.2 images/s, ours 14.35: 1.09x.
        assert!(text.contains("| 1.09x | NOT met |"), "{text}");
        assert!(
            text.contains("| ours | 0 | 12.8 | 14.3 | 23.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| fastai | 0 | 8.0 | 13.2 | 25.00 |"),
            "{text}"
        );
        o.ours.clear();
        o.problems
            .push("mix-train run 0 failed: no timings.json".to_string());
        let text = render(&o, &machine(), "cargo xtask bench", Mode::Full);
        assert!(
            text.contains("| training epoch, images/s | missing | 8.0 | missing |"),
            "{text}"
        );
        assert!(
            text.contains("missing (ours:epoch/whole_epoch) | missing |"),
            "{text}"
        );
        assert!(
            text.contains("Missing: mix-train reported no timings"),
            "{text}"
        );
        assert!(
            text.contains("- mix-train run 0 failed: no timings.json"),
            "{text}"
        );
    }

    #[test]
    fn a_gpu_run_names_its_device_and_leaves_the_cpu_target_unjudged() {
        let mut o = outcome();
        o.recipe = &CUDA;
        o.fastai[0].gpu = Some("NVIDIA H200".to_string());
        let text = render(
            &o,
            &machine(),
            "cargo xtask bench --device cuda",
            Mode::Quick,
        );
        assert!(text.contains("- GPU: NVIDIA H200"), "{text}");
        assert!(text.contains("--only epoch --device cuda`"), "{text}");
        assert!(text.contains("| 1.43x | not judged (cuda run) |"), "{text}");
        assert!(text.contains("7400 images: 37 breeds x 200"), "{text}");
    }
}
