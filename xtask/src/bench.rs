//! `cargo xtask bench`: runs our criterion benches and the peer scripts step by step and writes the
//! side-by-side figures, with the issues' speed targets judged, to docs/performance.md; the
//! `epoch` step times one whole training epoch of mix-train against fastai's ([`epoch`]); the
//! `accuracy` step trains mix-train and fastai's own `vision_learner` side by side ([`accuracy`]).
//! The speed steps read a pets-like corpus made from the repository's sample photos ([`corpus`]).
//!
//! The document has one section per step between markers ([`doc`]): a run of every step rewrites it
//! whole, `--only STEP` rewrites that step's section alone. Every figure of a section comes from the
//! run that wrote it: criterion writes into a folder emptied before each bench, and each peer script
//! writes a fresh JSON file. A bench or peer that is absent or fails leaves its figures marked
//! "missing"; nothing is carried over from older runs of the same step.

mod accuracy;
pub(crate) mod corpus;
mod doc;
pub(crate) mod epoch;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::args::{self, Opt};
use crate::libtorch::{self, Libtorch};
use crate::process::{self, cargo};

const ABOUT: &str = "\
Run the criterion benches (benches/benches) and the peer scripts (benches/peers) side by side,
then write docs/performance.md: machine, versions, every median, ours / peer ratios and the
speed targets. The epoch step times one whole training epoch of mix-train against fastai's
fit_one_cycle on a pets-like corpus made from the sample photos (on the CPU by default; --device
cuda takes the full Pets size). The accuracy step trains mix-train and fastai's vision_learner on
the sample images (3 epochs, seeds 0, 1, 2, in both modes; a few minutes). The steps, in order:
mix_core, mix_data, train_step, epoch, accuracy. --only STEP runs one and rewrites only its section
of the report. --quick finishes the speed steps within about 5 minutes on 2 cores once the benches
are built.";

const OPTS: &[Opt] = &[
    Opt {
        name: "quick",
        value: None,
        help: "short warm-up and measurement times (seconds per figure, not minutes)",
    },
    Opt {
        name: "only",
        value: Some("STEP"),
        help: "run one step (mix_core, mix_data, train_step, epoch or accuracy) and rewrite its \
               section",
    },
    Opt {
        name: "device",
        value: Some("DEVICE"),
        help:
            "the epoch step's device: cpu (default; 37 x 10 images, Resize 144, size 128) or cuda \
               (the full Pets size: 37 x 200 images, Resize 256, size 224)",
    },
    Opt {
        name: "out",
        value: Some("FILE"),
        help: "where to write the report (default docs/performance.md)",
    },
];

/// The step that trains mix-train and fastai side by side ([`accuracy`]).
pub const ACCURACY: &str = "accuracy";

/// A criterion bench target of the mix-benches package.
struct BenchSpec {
    name: &'static str,
    /// The heading of its section in the report.
    title: &'static str,
    /// Cargo features it needs (train_step needs `tch`, i.e. libtorch).
    features: &'static [&'static str],
}

/// How a peer script is called and what it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFormat {
    /// Called with `--json FILE` (and `--quick`); writes `{"results": [...]}`, see [`parse_peer`].
    Results,
    /// Prints one JSON object of images/s per variant on stdout, see [`parse_images_per_s`].
    ImagesPerSecond,
}

/// A peer script in benches/peers.
struct PeerSpec {
    stem: &'static str,
    format: PeerFormat,
    /// Extra arguments in quick and in full mode.
    quick_args: &'static [&'static str],
    full_args: &'static [&'static str],
}

/// Each bench with its peer, run in this order, each peer right after its bench so that both see
/// the same machine load.
const PAIRS: &[(BenchSpec, PeerSpec)] = &[
    (
        BenchSpec {
            name: "mix_core",
            title: "mix_core: MixUp and CutMix kernels against torch, numpy and fastai",
            features: &[],
        },
        PeerSpec {
            stem: "mix_ops",
            format: PeerFormat::Results,
            quick_args: &[],
            full_args: &[],
        },
    ),
    (
        BenchSpec {
            name: "mix_data",
            title: "mix_data: decode, Resize(256, crop) and loading against Pillow",
            features: &[],
        },
        PeerSpec {
            stem: "pil_resize",
            format: PeerFormat::Results,
            quick_args: &[],
            full_args: &[],
        },
    ),
    (
        BenchSpec {
            name: "train_step",
            title: "train_step: the ResNet18 CPU training step against PyTorch eager",
            features: &["tch"],
        },
        PeerSpec {
            stem: "torch_train_step",
            format: PeerFormat::ImagesPerSecond,
            quick_args: &["--steps", "10"],
            full_args: &["--steps", "50"],
        },
    ),
];

/// Images per breed in the mix_data step's pets-like corpus (37 breeds): enough for several loader
/// batches.
const CORPUS_PER_BREED: usize = 8;
/// Seed of the corpus generator, so that every run times the same files (the epoch step's too).
pub(crate) const CORPUS_SEED: u64 = 0;

/// How long each side measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Short warm-up and measurement: a smoke-sized but real measurement.
    Quick,
    /// criterion's defaults and the peers' full repeat counts.
    Full,
}

impl Mode {
    /// Arguments after `--` for a criterion bench binary.
    fn criterion_args(self) -> Vec<&'static str> {
        let mut args = vec!["--noplot"];
        if self == Mode::Quick {
            args.extend([
                "--warm-up-time",
                "0.5",
                "--measurement-time",
                "2",
                "--sample-size",
                "10",
            ]);
        }
        args
    }

    /// The command that reproduces the report.
    fn command(self) -> &'static str {
        match self {
            Mode::Quick => "cargo xtask bench --quick",
            Mode::Full => "cargo xtask bench",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Quick => {
                "quick (criterion: --warm-up-time 0.5 --measurement-time 2 --sample-size 10, \
                 except where a bench group sets its own, which criterion lets win; peers: \
                 --quick, the train step --steps 10)"
            }
            Mode::Full => {
                "full (criterion's default times; peers' full repeat counts, the train step \
                 --steps 50)"
            }
        }
    }
}

/// One timing: the median time of one iteration and, when known, how many items one iteration
/// handles (images for decode and loader figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Images per iteration, when the figure is a throughput.
    pub items: Option<u64>,
}

impl Measure {
    /// Median seconds per item (per iteration when no item count is known).
    fn per_item_s(&self) -> f64 {
        self.median_s / self.items.unwrap_or(1).max(1) as f64
    }
}

/// Where a figure comes from: our criterion bench (by criterion's full id) or a peer script (by
/// script stem and the name it reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `criterion` full id, e.g. `mixup/blend_into/64x3x224x224`.
    Ours(&'static str),
    /// `(script stem, figure name)`, e.g. `("mix_ops", "fastai_mixup")`.
    Peer(&'static str, &'static str),
}

impl Key {
    fn owned(&self) -> String {
        match self {
            Key::Ours(id) => format!("ours:{id}"),
            Key::Peer(script, name) => format!("{script}:{name}"),
        }
    }
}

/// Every measurement of one invocation, keyed like [`Key::owned`], plus why some are absent.
#[derive(Debug, Default)]
pub struct Results {
    /// `ours:<criterion id>` or `<peer script>:<name>` to its measure.
    pub measures: BTreeMap<String, Measure>,
    /// Free-text labels a peer attaches to its figures (e.g. whether fastai was imported).
    pub labels: BTreeMap<String, String>,
    /// Benches or peers that did not run or failed, with the reason.
    pub problems: Vec<String>,
    /// Wall seconds of each bench and peer run, in run order.
    pub stages: Vec<(String, f64)>,
}

impl Results {
    fn get(&self, key: Key) -> Option<Measure> {
        self.measures.get(&key.owned()).copied()
    }
}

/// One row of the side-by-side table: our figure against a peer's doing the same work.
pub struct Row {
    /// What is measured.
    pub what: &'static str,
    /// Our figure.
    pub ours: Key,
    /// The peer's figure.
    pub peer: Key,
    /// Compare per item (images) rather than per iteration.
    pub per_item: bool,
}

/// What a target bounds.
#[derive(Debug, Clone, Copy)]
pub enum Quantity {
    /// `time(a) / time(b)`, per item when `per_item`.
    Ratio {
        /// Numerator.
        a: Key,
        /// Denominator.
        b: Key,
        /// Compare per item.
        per_item: bool,
    },
    /// `(time(with) - time(without)) / time(without)`: what `with` adds, as a fraction.
    Overhead {
        /// The slower variant.
        with: Key,
        /// The baseline.
        without: Key,
    },
}

/// A bound on a [`Quantity`].
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Met when the quantity is <= the value.
    AtMost(f64),
    /// Met when the quantity is >= the value.
    AtLeast(f64),
    /// Met when the quantity is < the value.
    Below(f64),
    /// Met when the quantity is > the value.
    Above(f64),
}

/// A speed claim from the issues, judged on this run's figures.
pub struct Target {
    /// The claim in words.
    pub claim: &'static str,
    /// What is computed.
    pub quantity: Quantity,
    /// What it must satisfy.
    pub bound: Bound,
    /// How to show the quantity.
    pub show: Show,
}

/// How a target's quantity is printed.
#[derive(Debug, Clone, Copy)]
pub enum Show {
    /// `1.62x`.
    Times,
    /// `+1.3%`.
    Percent,
}

/// A target's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Measured and satisfied, with the measured quantity.
    Met(f64),
    /// Measured and not satisfied, with the measured quantity.
    NotMet(f64),
    /// A figure it needs is missing (the keys, as in the document).
    Missing(Vec<String>),
}

// The figure ids below are the contract with the benches and the peer scripts: criterion full ids
// (group/function[/parameter]) and the peers' JSON names.
const COPY: Key = Key::Ours("mix_core_64x3x224x224/copy_f32_into_preallocated");
const PARALLEL_COPY: Key = Key::Ours("mix_core_64x3x224x224/identity_params_f32");
const MIXUP: Key = Key::Ours("mix_core_64x3x224x224/blend_into");
const CUTMIX: Key = Key::Ours("mix_core_64x3x224x224/cutmix_paste_into_lam_0.5");
const COLLATE_U8: Key = Key::Ours("mix_core_64x3x224x224/u8_collate_blend");
const PEER_COPY: Key = Key::Peer("mix_ops", "torch_copy");
const PEER_NUMPY_COPY: Key = Key::Peer("mix_ops", "numpy_copy");
const FASTAI_MIXUP: Key = Key::Peer("mix_ops", "fastai_mixup");
const FASTAI_CUTMIX: Key = Key::Peer("mix_ops", "fastai_cutmix");
const NUMPY_MIXUP: Key = Key::Peer("mix_ops", "numpy_mixup");
const NUMPY_CUTMIX: Key = Key::Peer("mix_ops", "numpy_cutmix");
const NUMPY_U8: Key = Key::Peer("mix_ops", "numpy_mixup_u8");
const DECODE: Key = Key::Ours("mix_data/decode_resize_crop_256");
const PIL_DECODE: Key = Key::Peer("pil_resize", "pil_decode_resize_crop_256");
const LOADER_1: Key = Key::Ours("mix_data/loader_epoch/1");
const LOADER_2: Key = Key::Ours("mix_data/loader_epoch/2");
const STEP: Key = Key::Ours("train_step_cpu_resnet18_bs32_64px/plain");
const STEP_MIXUP: Key = Key::Ours("train_step_cpu_resnet18_bs32_64px/mixup");
const STEP_CUTMIX: Key = Key::Ours("train_step_cpu_resnet18_bs32_64px/cutmix");
const TORCH_STEP: Key = Key::Peer("torch_train_step", "plain");
const TORCH_STEP_MIXUP: Key = Key::Peer("torch_train_step", "mixup");
const TORCH_STEP_CUTMIX: Key = Key::Peer("torch_train_step", "cutmix");

/// The side-by-side rows of the report.
pub const ROWS: &[Row] = &[
    Row {
        what: "batch copy 64x3x224x224 f32 (yardstick)",
        ours: COPY,
        peer: PEER_COPY,
        per_item: false,
    },
    Row {
        what: "batch copy 64x3x224x224 f32 (yardstick)",
        ours: COPY,
        peer: PEER_NUMPY_COPY,
        per_item: false,
    },
    Row {
        what: "MixUp 64x3x224x224 f32",
        ours: MIXUP,
        peer: FASTAI_MIXUP,
        per_item: false,
    },
    Row {
        what: "MixUp 64x3x224x224 f32",
        ours: MIXUP,
        peer: NUMPY_MIXUP,
        per_item: false,
    },
    Row {
        what: "CutMix lambda = 0.5 box, 64x3x224x224 f32",
        ours: CUTMIX,
        peer: FASTAI_CUTMIX,
        per_item: false,
    },
    Row {
        what: "CutMix lambda = 0.5 box, 64x3x224x224 f32",
        ours: CUTMIX,
        peer: NUMPY_CUTMIX,
        per_item: false,
    },
    Row {
        what: "MixUp at collate time, 64x3x224x224 u8",
        ours: COLLATE_U8,
        peer: NUMPY_U8,
        per_item: false,
    },
    Row {
        what: "decode + Resize(256, crop), per image, 1 core",
        ours: DECODE,
        peer: PIL_DECODE,
        per_item: true,
    },
    Row {
        what: "ResNet18 CPU train step, batch 32, 64 px",
        ours: STEP,
        peer: TORCH_STEP,
        per_item: true,
    },
    Row {
        what: "ResNet18 CPU train step, batch 32, 64 px, with MixUp",
        ours: STEP_MIXUP,
        peer: TORCH_STEP_MIXUP,
        per_item: true,
    },
    Row {
        what: "ResNet18 CPU train step, batch 32, 64 px, with CutMix",
        ours: STEP_CUTMIX,
        peer: TORCH_STEP_CUTMIX,
        per_item: true,
    },
];

/// The speed targets of issues 3, 4, 5 and 7.
pub const TARGETS: &[Target] = &[
    Target {
        claim: "MixUp `blend_into` at most 2x a batch copy (one-thread `assign`)",
        quantity: Quantity::Ratio {
            a: MIXUP,
            b: COPY,
            per_item: false,
        },
        bound: Bound::AtMost(2.0),
        show: Show::Times,
    },
    Target {
        claim: "MixUp at least 5x faster than fastai's torch CPU MixUp",
        quantity: Quantity::Ratio {
            a: FASTAI_MIXUP,
            b: MIXUP,
            per_item: false,
        },
        bound: Bound::AtLeast(5.0),
        show: Show::Times,
    },
    Target {
        claim: "CutMix (lambda = 0.5 box) at most 1x a batch copy (one-thread `assign`)",
        quantity: Quantity::Ratio {
            a: CUTMIX,
            b: COPY,
            per_item: false,
        },
        bound: Bound::AtMost(1.0),
        show: Show::Times,
    },
    // The same two claims against the copy done by mix-core's own batch-parallel kernel (identity
    // params): the stricter yardstick, since `blend_into` and `paste_into` use every core too.
    Target {
        claim: "MixUp `blend_into` at most 2x a batch copy (parallel, mix-core's kernel)",
        quantity: Quantity::Ratio {
            a: MIXUP,
            b: PARALLEL_COPY,
            per_item: false,
        },
        bound: Bound::AtMost(2.0),
        show: Show::Times,
    },
    Target {
        claim: "CutMix (lambda = 0.5 box) at most 1x a batch copy (parallel, mix-core's kernel)",
        quantity: Quantity::Ratio {
            a: CUTMIX,
            b: PARALLEL_COPY,
            per_item: false,
        },
        bound: Bound::AtMost(1.0),
        show: Show::Times,
    },
    Target {
        claim: "decode + Resize(256, crop) at least 2x Pillow per core",
        quantity: Quantity::Ratio {
            a: PIL_DECODE,
            b: DECODE,
            per_item: true,
        },
        bound: Bound::AtLeast(2.0),
        show: Show::Times,
    },
    Target {
        claim: "loader throughput grows from 1 to 2 threads",
        quantity: Quantity::Ratio {
            a: LOADER_1,
            b: LOADER_2,
            per_item: true,
        },
        bound: Bound::Above(1.0),
        show: Show::Times,
    },
    Target {
        claim: "CPU train step within 5% of PyTorch eager",
        quantity: Quantity::Ratio {
            a: STEP,
            b: TORCH_STEP,
            per_item: true,
        },
        bound: Bound::AtMost(1.05),
        show: Show::Times,
    },
    Target {
        claim: "MixUp adds under 2% to a train step",
        quantity: Quantity::Overhead {
            with: STEP_MIXUP,
            without: STEP,
        },
        bound: Bound::Below(0.02),
        show: Show::Percent,
    },
    Target {
        claim: "CutMix adds under 2% to a train step",
        quantity: Quantity::Overhead {
            with: STEP_CUTMIX,
            without: STEP,
        },
        bound: Bound::Below(0.02),
        show: Show::Percent,
    },
];

/// Every step's name, in run and document order: the criterion benches with their peers, the whole
/// epoch, then the accuracy comparison.
pub fn step_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = PAIRS.iter().map(|(bench, _)| bench.name).collect();
    names.push(epoch::STEP);
    names.push(ACCURACY);
    names
}

/// Reads `--only`: one of [`step_names`], or an error listing them.
pub fn parse_only(value: &str) -> Result<&'static str> {
    let names = step_names();
    match names.iter().find(|n| **n == value) {
        Some(name) => Ok(name),
        None => bail!(
            "--only {value}: unknown step; expected one of {}",
            names.join(", ")
        ),
    }
}

/// The command line that wrote a section.
fn invocation(mode: Mode, only: Option<&str>) -> String {
    match only {
        Some(step) => format!("{} --only {step}", mode.command()),
        None => mode.command().to_string(),
    }
}

/// `cargo xtask bench [--quick] [--only STEP] [--out FILE]`.
pub fn bench(argv: &[String]) -> Result<()> {
    let Some(opts) = args::parse("bench", ABOUT, OPTS, argv)? else {
        return Ok(());
    };
    let mode = if opts.flag("quick") {
        Mode::Quick
    } else {
        Mode::Full
    };
    let only = opts.get("only").map(parse_only).transpose()?;
    let device = epoch::Device::parse(opts.get("device").unwrap_or("cpu"))?;
    let root = crate::project_root();
    let out = opts
        .get("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("docs").join("performance.md"));
    let existing = match only {
        // Check now that the report can take the section, not after minutes of measuring.
        Some(step) => {
            let text = read_report(&out)?;
            splice_report(&text, step, "")
                .with_context(|| format!("{} cannot take a new `{step}` section", out.display()))?;
            Some(text)
        }
        None => None,
    };
    let selected: Vec<&'static str> = match only {
        Some(step) => vec![step],
        None => step_names(),
    };
    if device != epoch::Device::Cpu && !selected.contains(&epoch::STEP) {
        bail!(
            "--device {}: only the epoch step takes a device, and --only {} leaves it out; pass \
             --only epoch or drop --device",
            device.name(),
            selected.join(",")
        );
    }

    let torch = libtorch::setup()?;
    let python = torch.python.clone().context(
        "the peer benchmarks need the python that holds libtorch's torch: unset LIBTORCH and run \
         `cargo xtask setup`, or export MIX_TORCH_PYTHON=/path/to/python with torch 2.11.0",
    )?;
    let versions = python_versions(&python)?;
    let target = target_dir(&root);
    let data = target.join("bench-data");
    let machine = Machine::detect(&root, &versions);
    let mut invocation = invocation(mode, only);
    if device != epoch::Device::Cpu {
        invocation.push_str(&format!(" --device {}", device.name()));
    }

    let mut sections: Vec<(&'static str, String)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let pairs: Vec<&(BenchSpec, PeerSpec)> = PAIRS
        .iter()
        .filter(|(bench, _)| selected.contains(&bench.name))
        .collect();
    if !pairs.is_empty() {
        let corpus = corpus::ensure(
            &data,
            &root.join(accuracy::IMAGES),
            CORPUS_PER_BREED,
            CORPUS_SEED,
        )?;
        let peer_out = data.join("peers");
        std::fs::create_dir_all(&peer_out)
            .with_context(|| format!("cannot create {}", peer_out.display()))?;
        let env = BenchEnv {
            root: &root,
            mode,
            corpus: &corpus,
            features: bench_features(&root),
        };
        let names: Vec<&str> = pairs.iter().map(|(bench, _)| bench.name).collect();
        prebuild(&env, &torch, &names);
        for pair in pairs {
            let mut step_machine = machine.clone();
            step_machine.load = load_average();
            let started = Instant::now();
            let results = run_step(&env, &torch, &python, pair, &data, &peer_out);
            step_machine.wall_s = Some(started.elapsed().as_secs_f64());
            print_summary(pair.0.name, &results);
            problems.extend(results.problems.iter().cloned());
            sections.push((
                pair.0.name,
                render_section(&step_machine, mode, &invocation, pair, &results),
            ));
        }
    }
    if selected.contains(&epoch::STEP) {
        let mut step_machine = machine.clone();
        step_machine.load = load_average();
        let recipe = epoch::Recipe::for_device(device);
        let outcome = epoch::run(&root, &target, &torch, &python, &data, recipe, mode);
        epoch::print_summary(&outcome);
        problems.extend(outcome.problems.iter().cloned());
        sections.push((
            epoch::STEP,
            epoch::render(&outcome, &step_machine, &invocation, mode),
        ));
    }
    if selected.contains(&ACCURACY) {
        let mut step_machine = machine.clone();
        step_machine.load = load_average();
        let outcome = accuracy::run(&root, &target, &torch, &python, &data.join(ACCURACY));
        accuracy::print_summary(&outcome);
        problems.extend(outcome.problems.iter().cloned());
        sections.push((
            ACCURACY,
            accuracy::render(&outcome, &step_machine, &invocation, mode == Mode::Quick),
        ));
    }

    let text = match (only, existing) {
        (Some(step), Some(existing)) => {
            let section = sections
                .iter()
                .find(|(name, _)| *name == step)
                .map(|(_, text)| text.as_str())
                .context("the step wrote no section")?;
            splice_report(&existing, step, section)?
        }
        _ => doc::document(&sections),
    };
    write_atomic(&out, &text)?;
    eprintln!("wrote {}", out.display());
    if !problems.is_empty() {
        bail!(
            "{} run(s) missing or failed (their figures are marked missing in {}):\n  {}",
            problems.len(),
            out.display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// The report as it is, or an empty text when it does not exist yet.
fn read_report(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Which speed step a line of a report written before per-step sections belongs to: a table row
/// or list item naming one of its figures (`ours:<bench>...`, `<peer>:...`) or its runs.
pub fn legacy_step(line: &str) -> Option<&'static str> {
    if !(line.starts_with('|') || line.starts_with("- ")) {
        return None;
    }
    PAIRS.iter().find_map(|(bench, peer)| {
        let names = [
            format!("ours:{}", bench.name),
            format!("`{}:", peer.stem),
            format!("bench `{}`", bench.name),
            format!("peer `{}`", peer.stem),
        ];
        names
            .iter()
            .any(|n| line.contains(n.as_str()))
            .then_some(bench.name)
    })
}

/// [`doc::splice`] with this bench's steps and its rule for reports without markers.
fn splice_report(existing: &str, step: &str, section: &str) -> Result<String> {
    let steps: Vec<(&str, &str)> = PAIRS
        .iter()
        .map(|(bench, _)| (bench.name, bench.title))
        .collect();
    let legacy = doc::Legacy {
        steps: &steps,
        attribute: &legacy_step,
    };
    doc::splice(existing, step, section, &step_names(), &legacy)
}

/// Runs one bench and its peer (each peer right after its bench, so that both see the same machine
/// load) and reads the bench's criterion output.
fn run_step(
    env: &BenchEnv<'_>,
    torch: &Libtorch,
    python: &Path,
    (bench, peer): &(BenchSpec, PeerSpec),
    data: &Path,
    peer_out: &Path,
) -> Results {
    let mut results = Results::default();
    let criterion_home = data.join("criterion").join(bench.name);
    if criterion_home.exists() {
        if let Err(e) = std::fs::remove_dir_all(&criterion_home) {
            results.problems.push(format!(
                "bench `{}`: cannot empty {}: {e}",
                bench.name,
                criterion_home.display()
            ));
            return results;
        }
    }
    let t = Instant::now();
    run_bench(env, torch, bench, &criterion_home, &mut results);
    results
        .stages
        .push((format!("bench {}", bench.name), t.elapsed().as_secs_f64()));
    let t = Instant::now();
    run_peer(env, python, peer, peer_out, &mut results);
    results
        .stages
        .push((format!("peer {}", peer.stem), t.elapsed().as_secs_f64()));
    match read_criterion(&criterion_home) {
        Ok(found) => {
            for (id, measure) in found {
                results.measures.insert(format!("ours:{id}"), measure);
            }
        }
        Err(e) => results
            .problems
            .push(format!("criterion results unreadable: {e:#}")),
    }
    results
}

/// `CARGO_TARGET_DIR` when set (relative to the workspace root), else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The speed step a figure belongs to: the bench that measures it, or the bench its peer is
/// paired with.
pub fn step_of(key: Key) -> Option<&'static str> {
    PAIRS.iter().find_map(|(bench, peer)| {
        let mine = match key {
            Key::Ours(id) => id.starts_with(bench.name),
            Key::Peer(stem, _) => stem == peer.stem,
        };
        mine.then_some(bench.name)
    })
}

/// The step a target belongs to (its first figure's; a test checks that both figures agree).
fn target_step(target: &Target) -> Option<&'static str> {
    match target.quantity {
        Quantity::Ratio { a, .. } => step_of(a),
        Quantity::Overhead { with, .. } => step_of(with),
    }
}

/// Prints a step's targets to stderr so that a terminal run shows the outcome without opening the
/// file.
fn print_summary(step: &str, results: &Results) {
    for target in TARGETS.iter().filter(|t| target_step(t) == Some(step)) {
        let verdict = judge(target, results);
        eprintln!(
            "{:<8} {}",
            verdict_word(&verdict),
            format_args!("{}: {}", target.claim, measured_text(target, &verdict))
        );
    }
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
fn python_versions(python: &Path) -> Result<BTreeMap<String, Option<String>>> {
    let read = || -> Result<BTreeMap<String, Option<String>>> {
        let text = process::output(Command::new(python).args(["-c", VERSIONS_PY]))?;
        parse_versions(&text)
    };
    let mut versions = read()?;
    let has = |v: &BTreeMap<String, Option<String>>, k: &str| v.get(k).is_some_and(Option::is_some);
    // Naming torch and torchvision with their pins in the same pip command keeps pip from
    // replacing them while it resolves the new packages' requirements.
    let pins = [
        format!("torch=={}", libtorch::TORCH_VERSION),
        "torchvision==0.26.0".to_string(),
    ];
    if !has(&versions, "numpy") || !has(&versions, "Pillow") {
        let mut pip = pip_install(python);
        pip.args(["numpy", "pillow"]).args(&pins);
        process::run(&mut pip).context(
            "the peer benchmarks need numpy and Pillow in the libtorch venv and pip could not install them",
        )?;
        versions = read()?;
    }
    if !has(&versions, "fastai") {
        eprintln!(
            "fastai is not importable: trying to install it (torch stays at {})",
            libtorch::TORCH_VERSION
        );
        let mut pip = pip_install(python);
        pip.arg(format!("fastai=={FASTAI_VERSION}")).args(&pins);
        if process::run(&mut pip).is_err() {
            let mut pip = pip_install(python);
            pip.args(["--no-deps", &format!("fastai=={FASTAI_VERSION}")]);
            let _ = process::run(&mut pip);
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
    if !torch.starts_with(libtorch::TORCH_VERSION) {
        bail!(
            "the peer environment {} has torch `{torch}`, expected {}: reinstall with `pip install \
             torch=={}` there (tch 0.24 needs that libtorch)",
            python.display(),
            libtorch::TORCH_VERSION,
            libtorch::TORCH_VERSION
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

/// Reads the JSON object printed by [`VERSIONS_PY`].
pub fn parse_versions(text: &str) -> Result<BTreeMap<String, Option<String>>> {
    let value: Value = serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "expected a JSON object of versions, found `{}`",
            text.trim()
        )
    })?;
    let Value::Object(map) = value else {
        bail!(
            "expected a JSON object of versions, found `{}`",
            text.trim()
        );
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map(str::to_string)))
        .collect())
}

/// What every bench and peer run is given.
struct BenchEnv<'a> {
    root: &'a Path,
    mode: Mode,
    /// The corpus's images folder, passed as `MIX_BENCH_CORPUS`.
    corpus: &'a Path,
    /// Cargo features of every bench build, see [`bench_features`].
    features: Vec<&'static str>,
}

/// The features every bench run is built with: the union of those the present benches need, so
/// that one build serves them all (a different feature set per run would rebuild each time).
fn bench_features(root: &Path) -> Vec<&'static str> {
    let mut features: Vec<&'static str> = PAIRS
        .iter()
        .filter(|(bench, _)| bench_file(root, bench.name).exists())
        .flat_map(|(bench, _)| bench.features.iter().copied())
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

fn bench_file(root: &Path, name: &str) -> PathBuf {
    root.join("benches")
        .join("benches")
        .join(format!("{name}.rs"))
}

/// Builds every named bench that exists in one cargo call, so that compiling happens before the first
/// measurement and never between a bench and its peer. A failure is only reported here: each
/// bench's own run then records what failed.
fn prebuild(env: &BenchEnv<'_>, torch: &Libtorch, names: &[&str]) {
    let present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| bench_file(env.root, name).exists())
        .collect();
    if present.is_empty() {
        return;
    }
    let mut cmd = cargo(Some(torch));
    cmd.args(["bench", "-p", "mix-benches", "--no-run"]);
    for name in present {
        cmd.args(["--bench", name]);
    }
    if !env.features.is_empty() {
        cmd.args(["--features", &env.features.join(",")]);
    }
    if let Err(e) = process::run(&mut cmd) {
        eprintln!("warning: building the benches failed ({e:#}); each bench is tried on its own");
    }
}

/// Runs one criterion bench as a child cargo process; a missing file or a failure is recorded.
fn run_bench(
    env: &BenchEnv<'_>,
    torch: &Libtorch,
    spec: &BenchSpec,
    criterion_home: &Path,
    results: &mut Results,
) {
    let name = spec.name;
    if !bench_file(env.root, name).exists() {
        results.problems.push(format!(
            "bench `{name}` missing: no benches/benches/{name}.rs"
        ));
        return;
    }
    let mut cmd = cargo(Some(torch));
    cmd.args(["bench", "-p", "mix-benches", "--bench", name]);
    if !env.features.is_empty() {
        cmd.args(["--features", &env.features.join(",")]);
    }
    cmd.arg("--")
        .args(env.mode.criterion_args())
        .env("CRITERION_HOME", criterion_home)
        .env("MIX_BENCH_CORPUS", env.corpus)
        // criterion lets a group's own times win over the command line, so a bench that sets them
        // can read this to shorten them in quick mode.
        .env(
            "MIX_BENCH_QUICK",
            if env.mode == Mode::Quick { "1" } else { "0" },
        );
    if let Err(e) = process::run(&mut cmd) {
        results
            .problems
            .push(format!("bench `{name}` failed: {e:#}"));
    }
}

/// Runs one peer script with the venv python and records its figures under `<stem>:<name>`.
fn run_peer(
    env: &BenchEnv<'_>,
    python: &Path,
    spec: &PeerSpec,
    out_dir: &Path,
    results: &mut Results,
) {
    let stem = spec.stem;
    let script = env
        .root
        .join("benches")
        .join("peers")
        .join(format!("{stem}.py"));
    if !script.exists() {
        results
            .problems
            .push(format!("peer `{stem}` missing: no benches/peers/{stem}.py"));
        return;
    }
    let json = out_dir.join(format!("{stem}.json"));
    let _ = std::fs::remove_file(&json);
    let mut cmd = Command::new(python);
    cmd.arg(&script).env("MIX_BENCH_CORPUS", env.corpus);
    cmd.args(match env.mode {
        Mode::Quick => spec.quick_args,
        Mode::Full => spec.full_args,
    });
    let outcome = match spec.format {
        PeerFormat::Results => {
            cmd.arg("--json").arg(&json);
            if env.mode == Mode::Quick {
                cmd.arg("--quick");
            }
            process::run(&mut cmd).and_then(|()| {
                let text = std::fs::read_to_string(&json)
                    .with_context(|| format!("peer `{stem}` wrote no {}", json.display()))?;
                parse_peer(&text)
                    .with_context(|| format!("peer `{stem}` output {}", json.display()))
            })
        }
        PeerFormat::ImagesPerSecond => {
            eprintln!("$ {}", process::display(&cmd));
            process::output(&mut cmd).and_then(|stdout| {
                eprint!("{stdout}");
                write_atomic(&json, &stdout)?;
                parse_images_per_s(&stdout).with_context(|| format!("peer `{stem}` output"))
            })
        }
    };
    match outcome {
        Ok(peer) => {
            for (name, measure) in peer.measures {
                results.measures.insert(format!("{stem}:{name}"), measure);
            }
            for (name, label) in peer.labels {
                results.labels.insert(format!("{stem}:{name}"), label);
            }
        }
        Err(e) => results
            .problems
            .push(format!("peer `{stem}` failed: {e:#}")),
    }
}

/// The 1-minute load average from /proc/loadavg, when readable: a busy machine makes every
/// figure slower, so the report says how busy it was.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// What one peer script reported.
#[derive(Debug, Default, PartialEq)]
pub struct PeerOutput {
    /// Figure name to measure.
    pub measures: BTreeMap<String, Measure>,
    /// Figure name to the label the peer gives it.
    pub labels: BTreeMap<String, String>,
}

/// Reads a peer's JSON: `{"results": [{"name", "median_s", "items"?, "label"?}, ...]}`.
pub fn parse_peer(text: &str) -> Result<PeerOutput> {
    let value: Value = serde_json::from_str(text).context("expected JSON")?;
    let Some(list) = value.get("results").and_then(Value::as_array) else {
        bail!("expected an object with a `results` array");
    };
    let mut out = PeerOutput::default();
    for entry in list {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            bail!("expected every result to have a string `name`, found {entry}");
        };
        let Some(median_s) = entry.get("median_s").and_then(Value::as_f64) else {
            bail!("expected result `{name}` to have a number `median_s`, found {entry}");
        };
        if !(median_s.is_finite() && median_s > 0.0) {
            bail!("expected result `{name}` to have a positive `median_s`, found {median_s}");
        }
        let items = entry.get("items").and_then(Value::as_u64);
        out.measures
            .insert(name.to_string(), Measure { median_s, items });
        if let Some(label) = entry.get("label").and_then(Value::as_str) {
            out.labels.insert(name.to_string(), label.to_string());
        }
    }
    Ok(out)
}

/// The last line of a child's stdout that starts with `{`: where peers and examples print their
/// JSON figures after any other output.
pub fn last_json_line(stdout: &str) -> Result<&str> {
    stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "expected a JSON object line on stdout, found `{}`",
                stdout.trim()
            )
        })
}

/// Removes `dir` and everything in it; a folder that is not there is already empty.
pub fn empty_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The variants of a train-step peer's images/s object.
const STEP_VARIANTS: &[&str] = &["plain", "mixup", "cutmix"];

/// Reads a train-step peer's stdout: a JSON object (the last line that starts with `{`) with
/// `batch` and images/s per variant (`plain`, `mixup`, `cutmix`); each becomes the mean time of a
/// step of `batch` images, labelled with the peer's torch, device, batch, size and threads.
pub fn parse_images_per_s(stdout: &str) -> Result<PeerOutput> {
    let line = last_json_line(stdout)?;
    let value: Value = serde_json::from_str(line).context("expected a JSON object")?;
    let Some(batch) = value
        .get("batch")
        .and_then(Value::as_u64)
        .filter(|b| *b > 0)
    else {
        bail!("expected a positive integer `batch`, found `{line}`");
    };
    let text = |k: &str| {
        value
            .get(k)
            .map_or("?".to_string(), |v| v.to_string().replace('"', ""))
    };
    let label = format!(
        "PyTorch eager {}, {}, batch {batch}, {} px, {} threads, mean of the timed steps",
        text("torch"),
        text("device"),
        text("size"),
        text("threads")
    );
    let mut out = PeerOutput::default();
    for variant in STEP_VARIANTS {
        let Some(ips) = value.get(*variant).and_then(Value::as_f64) else {
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
        bail!(
            "expected images/s for at least one of {}, found `{line}`",
            STEP_VARIANTS.join(", ")
        );
    }
    Ok(out)
}

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

/// criterion's `benchmark.json`: the full id and, for `Throughput::Elements(n)`, `n`.
pub fn parse_benchmark_json(text: &str) -> Result<(String, Option<u64>)> {
    let value: Value = serde_json::from_str(text).context("expected JSON")?;
    let Some(id) = value.get("full_id").and_then(Value::as_str) else {
        bail!("expected a string `full_id`");
    };
    let items = value
        .get("throughput")
        .and_then(|t| t.get("Elements"))
        .and_then(Value::as_u64);
    Ok((id.to_string(), items))
}

/// criterion's `estimates.json`: the median's point estimate, in nanoseconds.
pub fn parse_estimates_median(text: &str) -> Result<f64> {
    let value: Value = serde_json::from_str(text).context("expected JSON")?;
    let Some(ns) = value
        .get("median")
        .and_then(|m| m.get("point_estimate"))
        .and_then(Value::as_f64)
    else {
        bail!("expected `median.point_estimate` as a number");
    };
    if !(ns.is_finite() && ns > 0.0) {
        bail!("expected a positive median, found {ns}");
    }
    Ok(ns)
}

/// The quantity a target bounds, or the keys it misses.
fn quantity(q: &Quantity, results: &Results) -> std::result::Result<f64, Vec<String>> {
    let fetch = |keys: &[Key]| -> std::result::Result<Vec<Measure>, Vec<String>> {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| results.get(**k).is_none())
            .map(Key::owned)
            .collect();
        if missing.is_empty() {
            Ok(keys.iter().filter_map(|k| results.get(*k)).collect())
        } else {
            Err(missing)
        }
    };
    match *q {
        Quantity::Ratio { a, b, per_item } => {
            let m = fetch(&[a, b])?;
            Ok(if per_item {
                m[0].per_item_s() / m[1].per_item_s()
            } else {
                m[0].median_s / m[1].median_s
            })
        }
        Quantity::Overhead { with, without } => {
            let m = fetch(&[with, without])?;
            Ok((m[0].median_s - m[1].median_s) / m[1].median_s)
        }
    }
}

/// Judges one target on this run's figures.
pub fn judge(target: &Target, results: &Results) -> Verdict {
    match quantity(&target.quantity, results) {
        Err(missing) => Verdict::Missing(missing),
        Ok(v) => {
            let met = match target.bound {
                Bound::AtMost(b) => v <= b,
                Bound::AtLeast(b) => v >= b,
                Bound::Below(b) => v < b,
                Bound::Above(b) => v > b,
            };
            if met {
                Verdict::Met(v)
            } else {
                Verdict::NotMet(v)
            }
        }
    }
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Met(_) => "met",
        Verdict::NotMet(_) => "NOT met",
        Verdict::Missing(_) => "missing",
    }
}

fn show(value: f64, how: Show) -> String {
    match how {
        Show::Times => format!("{value:.2}x"),
        Show::Percent => format!("{:+.1}%", value * 100.0),
    }
}

fn measured_text(target: &Target, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Met(v) | Verdict::NotMet(v) => show(*v, target.show),
        Verdict::Missing(keys) => format!("missing ({})", keys.join(", ")),
    }
}

/// How a quantity is computed, naming its figures as the report's last table does.
fn formula(q: &Quantity) -> String {
    match q {
        Quantity::Ratio { a, b, per_item } => {
            let per = if *per_item { " per image" } else { "" };
            format!(
                "time{per} of `{}` / time{per} of `{}`",
                a.owned(),
                b.owned()
            )
        }
        Quantity::Overhead { with, without } => format!(
            "time of `{}` / time of `{}` - 1",
            with.owned(),
            without.owned()
        ),
    }
}

/// A duration in the unit that keeps three significant digits readable.
pub fn format_duration(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.3} µs", s * 1e6)
    } else {
        format!("{:.1} ns", s * 1e9)
    }
}

fn format_measure(m: &Measure) -> String {
    match m.items {
        Some(n) if n > 0 => format!(
            "{} ({:.0} images/s)",
            format_duration(m.median_s),
            n as f64 / m.median_s
        ),
        _ => format_duration(m.median_s),
    }
}

/// What the report says about the machine and the software.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory from /proc/meminfo, when readable.
    pub memory: Option<String>,
    /// `rustc -V`.
    pub rustc: String,
    /// Python package versions (`None`: not importable).
    pub versions: BTreeMap<String, Option<String>>,
    /// The commit measured (`git describe`-like), when git answers.
    pub commit: Option<String>,
    /// 1-minute load average just before the first bench (afterwards it counts our own threads).
    pub load: Option<f64>,
    /// Seconds from the step's bench start to its peer's end (the benches built before).
    pub wall_s: Option<f64>,
    /// The UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
}

impl Machine {
    fn detect(root: &Path, versions: &BTreeMap<String, Option<String>>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = process::output(Command::new(rustc).arg("-V"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let commit = process::output(
            Command::new("git")
                .current_dir(root)
                .args(["describe", "--always", "--dirty"]),
        )
        .ok()
        .map(|s| s.trim().to_string());
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_string()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory: mem_total(&meminfo),
            rustc,
            versions: versions.clone(),
            commit,
            load: None,
            wall_s: None,
            date: utc_date(SystemTime::now()),
        }
    }
}

/// The UTC calendar date of `t` as `YYYY-MM-DD` (days to civil date, after Howard Hinnant's
/// `civil_from_days`), so that xtask needs no date crate.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The first `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// `MemTotal` of /proc/meminfo in GiB.
pub fn mem_total(meminfo: &str) -> Option<String> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
}

fn version_of(machine: &Machine, name: &str) -> String {
    match machine.versions.get(name) {
        Some(Some(v)) => v.clone(),
        _ => "not installed".to_string(),
    }
}

/// The peer's label for a figure, or its key.
fn peer_name(key: Key, results: &Results) -> String {
    let owned = key.owned();
    match results.labels.get(&owned) {
        Some(label) => format!("{label} (`{owned}`)"),
        None => format!("`{owned}`"),
    }
}

fn cell(m: Option<Measure>) -> String {
    m.as_ref()
        .map_or_else(|| "missing".to_string(), format_measure)
}

/// The facts of the machine and the software as a Markdown list (one line each, ending with a
/// newline), shared by every section.
pub fn machine_lines(machine: &Machine) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "- CPU: {}, {} logical cores", machine.cpu, machine.cores);
    if let Some(mem) = &machine.memory {
        let _ = writeln!(w, "- Memory: {mem}");
    }
    let _ = writeln!(w, "- {}", machine.rustc);
    let _ = writeln!(
        w,
        "- Python {}: torch {}, torchvision {}, numpy {}, Pillow {}, fastai {}",
        version_of(machine, "python"),
        version_of(machine, "torch"),
        version_of(machine, "torchvision"),
        version_of(machine, "numpy"),
        version_of(machine, "Pillow"),
        version_of(machine, "fastai"),
    );
    if let Some(commit) = &machine.commit {
        let _ = writeln!(w, "- Commit: `{commit}`");
    }
    if let Some(load) = machine.load {
        let _ = writeln!(
            w,
            "- Load average (1 min) before the step: {load:.2} (other work on the machine slows \
             every figure; the step then loads the cores itself)"
        );
    }
    s
}

/// A speed step's section of the report: machine, targets, side by side, every measurement,
/// problems.
fn render_section(
    machine: &Machine,
    mode: Mode,
    invocation: &str,
    (bench, peer): &(BenchSpec, PeerSpec),
    results: &Results,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let step = bench.name;
    let _ = writeln!(w, "## {}\n", bench.title);
    let _ = writeln!(
        w,
        "Written by `{invocation}` on {} (UTC): benches/benches/{step}.rs, then \
         benches/peers/{}.py. Reproduce this section alone with `{} --only {step}`.\n",
        machine.date,
        peer.stem,
        mode.command()
    );
    let _ = write!(w, "{}", machine_lines(machine));
    if let Some(wall) = machine.wall_s {
        let stages: Vec<String> = results
            .stages
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.0} s"))
            .collect();
        let _ = writeln!(
            w,
            "- Wall time of the bench and its peer: {wall:.0} s after building the benches ({})",
            stages.join(", ")
        );
    }
    let _ = writeln!(w, "- Mode: {}\n", mode.describe());

    let _ = writeln!(w, "### Targets\n");
    let _ = writeln!(w, "| Target | Measured | Verdict | Quantity |");
    let _ = writeln!(w, "|---|---|---|---|");
    for target in TARGETS.iter().filter(|t| target_step(t) == Some(step)) {
        let verdict = judge(target, results);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            target.claim,
            measured_text(target, &verdict),
            verdict_word(&verdict),
            formula(&target.quantity)
        );
    }

    let _ = writeln!(w, "\n### Side by side\n");
    let _ = writeln!(
        w,
        "| Work | Ours | Median (ours) | Peer | Median (peer) | Peer / ours |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for row in ROWS.iter().filter(|r| step_of(r.ours) == Some(step)) {
        let ours = results.get(row.ours);
        let peer = results.get(row.peer);
        let ratio = match (ours, peer) {
            (Some(o), Some(p)) if row.per_item => {
                show(p.per_item_s() / o.per_item_s(), Show::Times)
            }
            (Some(o), Some(p)) => show(p.median_s / o.median_s, Show::Times),
            _ => "missing".to_string(),
        };
        let _ = writeln!(
            w,
            "| {} | `{}` | {} | {} | {} | {} |",
            row.what,
            row.ours.owned(),
            cell(ours),
            peer_name(row.peer, results),
            cell(peer),
            ratio
        );
    }

    let _ = writeln!(w, "\n### Every measurement\n");
    let _ = writeln!(w, "| Figure | Median |");
    let _ = writeln!(w, "|---|---|");
    if results.measures.is_empty() {
        let _ = writeln!(w, "| (none) | missing |");
    }
    for (key, m) in &results.measures {
        let label = results
            .labels
            .get(key)
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        let _ = writeln!(w, "| `{key}`{label} | {} |", format_measure(m));
    }

    let _ = writeln!(w, "\n### Problems\n");
    if results.problems.is_empty() {
        let _ = writeln!(w, "None: the bench and its peer ran.");
    } else {
        for p in &results.problems {
            let _ = writeln!(w, "- {}", p.replace('\n', " "));
        }
    }
    s
}

/// Writes `text` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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

    fn with(measures: &[(Key, f64, Option<u64>)]) -> Results {
        let mut r = Results::default();
        for (k, s, items) in measures {
            r.measures.insert(
                k.owned(),
                Measure {
                    median_s: *s,
                    items: *items,
                },
            );
        }
        r
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
        let err = parse_peer("[]").unwrap_err();
        assert!(err.to_string().contains("`results` array"), "{err}");
        let err = parse_peer(r#"{"results":[{"median_s":1.0}]}"#).unwrap_err();
        assert!(err.to_string().contains("string `name`"), "{err}");
        let err = parse_peer(r#"{"results":[{"name":"a","median_s":"fast"}]}"#).unwrap_err();
        assert!(err.to_string().contains("number `median_s`"), "{err}");
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

    #[test]
    fn targets_are_judged_at_their_bounds_and_missing_figures_named() {
        let target = |bound| Target {
            claim: "c",
            quantity: Quantity::Ratio {
                a: MIXUP,
                b: COPY,
                per_item: false,
            },
            bound,
            show: Show::Times,
        };
        let r = with(&[(MIXUP, 6.0, None), (COPY, 3.0, None)]);
        assert_eq!(judge(&target(Bound::AtMost(2.0)), &r), Verdict::Met(2.0));
        assert_eq!(judge(&target(Bound::Below(2.0)), &r), Verdict::NotMet(2.0));
        assert_eq!(judge(&target(Bound::AtLeast(2.0)), &r), Verdict::Met(2.0));
        assert_eq!(judge(&target(Bound::Above(2.0)), &r), Verdict::NotMet(2.0));
        assert_eq!(judge(&target(Bound::AtMost(1.9)), &r), Verdict::NotMet(2.0));
        let r = with(&[(COPY, 3.0, None)]);
        assert_eq!(
            judge(&target(Bound::AtMost(2.0)), &r),
            Verdict::Missing(vec![MIXUP.owned()])
        );
        let overhead = Target {
            claim: "o",
            quantity: Quantity::Overhead {
                with: STEP_MIXUP,
                without: STEP,
            },
            bound: Bound::Below(0.02),
            show: Show::Percent,
        };
        let r = with(&[(STEP_MIXUP, 1.01, None), (STEP, 1.0, None)]);
        let Verdict::Met(v) = judge(&overhead, &r) else {
            panic!("1% overhead must meet a 2% bound");
        };
        assert!((v - 0.01).abs() < 1e-12);
        assert_eq!(show(v, Show::Percent), "+1.0%");
        let r = with(&[(STEP_MIXUP, 1.03, None), (STEP, 1.0, None)]);
        assert!(matches!(judge(&overhead, &r), Verdict::NotMet(_)));
    }

    #[test]
    fn per_item_targets_compare_time_per_image() {
        // Pillow: 100 images in 0.5 s (5 ms each); ours: 32 images in 64 ms (2 ms each): 2.5x.
        let decode = TARGETS.iter().find(|t| t.claim.contains("Pillow")).unwrap();
        let r = with(&[(PIL_DECODE, 0.5, Some(100)), (DECODE, 0.064, Some(32))]);
        let Verdict::Met(v) = judge(decode, &r) else {
            panic!("2.5x must meet a 2x bound");
        };
        assert!((v - 2.5).abs() < 1e-12, "{v}");
    }

    #[test]
    fn the_report_shows_ratios_and_marks_missing_figures_as_missing() {
        let mut r = with(&[
            (COPY, 3.3e-3, None),
            (MIXUP, 5.0e-3, None),
            (FASTAI_MIXUP, 45e-3, None),
        ]);
        r.labels
            .insert(FASTAI_MIXUP.owned(), "fastai 2.8.12 MixUp".to_string());
        r.problems
            .push("peer `pil_resize` missing: no benches/peers/pil_resize.py".to_string());
        r.stages = vec![
            ("bench mix_core".to_string(), 150.2),
            ("peer mix_ops".to_string(), 49.9),
        ];
        r.measures.insert(
            DECODE.owned(),
            Measure {
                median_s: 1.0,
                items: None,
            },
        );
        let machine = Machine {
            cpu: "Test CPU".to_string(),
            cores: 2,
            memory: Some("24.0 GiB".to_string()),
            rustc: "rustc 1.95.0".to_string(),
            versions: parse_versions(r#"{"python":"3.11.2","torch":"2.11.0","numpy":"2.4.6","Pillow":"13.0.0","fastai":null}"#).unwrap(),
            commit: Some("abc123".to_string()),
            load: Some(0.5),
            wall_s: Some(200.0),
            date: "2026-05-13".to_string(),
        };
        let text = render_section(
            &machine,
            Mode::Quick,
            "cargo xtask bench --quick",
            &PAIRS[0],
            &r,
        );
        assert!(text.starts_with("## mix_core: "), "{text}");
        assert!(text.contains("Test CPU, 2 logical cores"), "{text}");
        assert!(
            text.contains("- Wall time of the bench and its peer: 200 s after building the benches (bench mix_core 150 s, peer mix_ops 50 s)"),
            "{text}"
        );
        assert!(
            text.contains("- Load average (1 min) before the step: 0.50 (other work"),
            "{text}"
        );
        assert!(text.contains("fastai not installed"), "{text}");
        assert!(
            text.contains("Written by `cargo xtask bench --quick` on 2026-05-13 (UTC)")
                && text.contains("alone with `cargo xtask bench --quick --only mix_core`"),
            "{text}"
        );
        // Only this step's targets and rows; its own measures, whatever they are.
        assert!(
            !text.contains("Pillow per core") && !text.contains("ResNet18"),
            "{text}"
        );
        assert!(
            text.contains(&format!("| `{}` | 1.000 s |", DECODE.owned())),
            "{text}"
        );
        // 45 ms / 5 ms: ours is 9x faster than fastai's MixUp, and 5 / 3.3 = 1.52x a copy.
        let row = text
            .lines()
            .find(|l| l.starts_with("| MixUp 64x3x224x224 f32 |") && l.contains("fastai"))
            .unwrap();
        assert!(row.contains("| 9.00x |"), "{row}");
        assert!(
            row.contains("5.000 ms") && row.contains("45.000 ms"),
            "{row}"
        );
        assert!(
            row.contains("fastai 2.8.12 MixUp (`mix_ops:fastai_mixup`)"),
            "{row}"
        );
        let target = text
            .lines()
            .find(|l| l.starts_with("| MixUp `blend_into` at most 2x a batch copy (one-thread"))
            .unwrap();
        assert_eq!(
            target,
            format!(
                "| MixUp `blend_into` at most 2x a batch copy (one-thread `assign`) | 1.52x | met | time of `{}` / time of `{}` |",
                MIXUP.owned(),
                COPY.owned()
            )
        );
        let target = text
            .lines()
            .find(|l| l.starts_with("| MixUp at least 5x faster"))
            .unwrap();
        assert!(target.contains("| 9.00x | met |"), "{target}");
        // No CutMix figure was produced: its row and target say missing, with the key.
        let row = text
            .lines()
            .find(|l| l.starts_with("| CutMix lambda = 0.5 box") && l.contains("fastai_cutmix"))
            .unwrap();
        assert_eq!(row.matches("missing").count(), 3, "{row}");
        let target = text
            .lines()
            .find(|l| {
                l.starts_with("| CutMix (lambda = 0.5 box) at most 1x a batch copy (one-thread")
            })
            .unwrap();
        assert!(
            target.contains(&format!("missing ({})", CUTMIX.owned()))
                && target.contains("| missing |"),
            "{target}"
        );
        assert!(text.contains("- peer `pil_resize` missing"), "{text}");
        assert!(
            text.contains(&format!("| `{}` | 3.300 ms |", COPY.owned())),
            "{text}"
        );
    }

    #[test]
    fn throughput_figures_show_items_per_second() {
        let m = Measure {
            median_s: 0.25,
            items: Some(100),
        };
        assert_eq!(format_measure(&m), "250.000 ms (400 images/s)");
        assert_eq!(format_duration(1.5), "1.500 s");
        assert_eq!(format_duration(2.5e-6), "2.500 µs");
        assert_eq!(format_duration(7e-9), "7.0 ns");
    }

    #[test]
    fn machine_facts_are_read_from_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:       25165824 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo).as_deref(), Some("24.0 GiB"));
        assert_eq!(mem_total(""), None);
    }

    #[test]
    fn the_report_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs").join("performance.md");
        write_atomic(&path, "old").unwrap();
        write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("performance.md")]);
    }

    #[test]
    fn only_takes_a_step_name_and_refuses_others_with_the_list() {
        assert_eq!(
            step_names(),
            vec!["mix_core", "mix_data", "train_step", "epoch", "accuracy"]
        );
        assert_eq!(parse_only("accuracy").unwrap(), ACCURACY);
        assert_eq!(parse_only("train_step").unwrap(), "train_step");
        let err = parse_only("mix_ops").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--only mix_ops: unknown step; expected one of mix_core, mix_data, train_step, epoch, \
             accuracy"
        );
        assert_eq!(
            invocation(Mode::Quick, Some("accuracy")),
            "cargo xtask bench --quick --only accuracy"
        );
        assert_eq!(invocation(Mode::Full, None), "cargo xtask bench");
    }

    #[test]
    fn every_target_and_row_belongs_to_one_step() {
        for target in TARGETS {
            let (a, b) = match target.quantity {
                Quantity::Ratio { a, b, .. } => (a, b),
                Quantity::Overhead { with, without } => (with, without),
            };
            assert!(step_of(a).is_some(), "{}", target.claim);
            assert_eq!(step_of(a), step_of(b), "{}", target.claim);
        }
        for row in ROWS {
            assert!(step_of(row.ours).is_some(), "{}", row.what);
            assert_eq!(step_of(row.ours), step_of(row.peer), "{}", row.what);
        }
        assert_eq!(step_of(TORCH_STEP), Some("train_step"));
        assert_eq!(step_of(PIL_DECODE), Some("mix_data"));
        assert_eq!(step_of(Key::Peer("nobody", "x")), None);
    }

    /// The single-invocation layout docs/performance.md had before it had per-step sections.
    const LEGACY: &str = "# Performance

Written by `cargo xtask bench --quick`; do not edit by hand, rerun the command.

Reproduce: `cargo xtask bench --quick`

## Machine

- CPU: Intel(R) Xeon(R) Processor, 2 logical cores
- Wall time of the benches and peers: 179 s after building the benches (bench mix_core 21 s, peer mix_ops 7 s, bench mix_data 15 s, peer pil_resize 3 s, bench train_step 114 s, peer torch_train_step 18 s)

## Targets

| Target | Measured | Verdict | Quantity |
|---|---|---|---|
| MixUp at least 5x faster than fastai's torch CPU MixUp | 13.05x | met | time of `mix_ops:fastai_mixup` / time of `ours:mix_core_64x3x224x224/blend_into` |
| decode + Resize(256, crop) at least 2x Pillow per core | 2.62x | met | time per image of `pil_resize:pil_decode_resize_crop_256` / time per image of `ours:mix_data/decode_resize_crop_256` |
| CPU train step within 5% of PyTorch eager | 0.89x | met | time per image of `ours:train_step_cpu_resnet18_bs32_64px/plain` / time per image of `torch_train_step:plain` |

## Every measurement

| Figure | Median |
|---|---|
| `mix_ops:torch_copy` (torch 2.11.0+cu130 CPU, 2 threads) | 3.099 ms (20653 images/s) |
| `ours:mix_data/loader_epoch/2` | 277.666 ms (1066 images/s) |
| `torch_train_step:plain` (PyTorch eager 2.11.0+cu130) | 353.318 ms (91 images/s) |

## Problems

None: every bench and peer ran.
";

    #[test]
    fn lines_of_the_old_layout_are_given_to_their_steps() {
        let steps: Vec<Option<&str>> = LEGACY.lines().map(legacy_step).collect();
        let of = |needle: &str| {
            let i = LEGACY.lines().position(|l| l.contains(needle)).unwrap();
            steps[i]
        };
        assert_eq!(of("13.05x"), Some("mix_core"));
        assert_eq!(of("`mix_ops:torch_copy`"), Some("mix_core"));
        assert_eq!(of("2.62x"), Some("mix_data"));
        assert_eq!(of("loader_epoch/2"), Some("mix_data"));
        assert_eq!(of("0.89x"), Some("train_step"));
        assert_eq!(of("`torch_train_step:plain`"), Some("train_step"));
        // Shared: headings, table headers, the machine list, the problems line.
        assert_eq!(of("| Target | Measured"), None);
        assert_eq!(of("- Wall time"), None);
        assert_eq!(of("None: every bench"), None);
        assert_eq!(
            legacy_step("- bench `mix_data` failed: exit 1"),
            Some("mix_data")
        );
        assert_eq!(
            legacy_step("- peer `torch_train_step` missing"),
            Some("train_step")
        );
    }

    #[test]
    fn an_accuracy_run_keeps_the_old_figures_in_marked_step_sections() {
        let text = splice_report(LEGACY, ACCURACY, "## accuracy: new\n\nfigures\n").unwrap();
        assert!(text.starts_with(doc::INTRO), "{text}");
        // The old layout had no epoch figures, so it gets no epoch section.
        assert!(!text.contains(&doc::start_marker(epoch::STEP)), "{text}");
        let order: Vec<usize> = step_names()
            .iter()
            .filter(|s| **s != epoch::STEP)
            .map(|s| text.find(&doc::start_marker(s)).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        let section = |step: &str| {
            let a = text.find(&doc::start_marker(step)).unwrap();
            let b = text.find(&doc::end_marker(step)).unwrap();
            &text[a..b]
        };
        let core = section("mix_core");
        assert!(core.contains(&format!("## {}", PAIRS[0].0.title)), "{core}");
        assert!(
            core.contains("| MixUp at least 5x faster than fastai's torch CPU MixUp | 13.05x |")
        );
        assert!(core.contains("`mix_ops:torch_copy`") && !core.contains("`pil_resize:"));
        assert!(
            core.contains("- Wall time of the benches and peers: 179 s"),
            "{core}"
        );
        assert!(
            core.contains("`cargo xtask bench --only mix_core` replaces it"),
            "{core}"
        );
        let step = section("train_step");
        assert!(step.contains("| CPU train step within 5% of PyTorch eager | 0.89x |"));
        assert!(
            !step.contains("13.05x") && !step.contains("2.62x"),
            "{step}"
        );
        assert!(section(ACCURACY).contains("## accuracy: new\n\nfigures"));
        // Every old figure line survives in exactly one section.
        for line in LEGACY.lines().filter(|l| legacy_step(l).is_some()) {
            assert_eq!(text.matches(line).count(), 1, "{line}");
        }
        // A later step run replaces its own section only.
        let again = splice_report(&text, "mix_data", "## mix_data: fresh\n").unwrap();
        assert!(again.contains(section("mix_core")) && again.contains(section(ACCURACY)));
        assert!(again.contains("## mix_data: fresh") && !again.contains("2.62x"));
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        use std::time::Duration;
        let at = |secs: u64| utc_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_778_630_399), "2026-05-12");
        assert_eq!(at(1_778_630_400), "2026-05-13");
    }

    #[test]
    fn quick_mode_shortens_criterion_and_full_mode_keeps_its_defaults() {
        let quick = Mode::Quick.criterion_args();
        assert!(quick.windows(2).any(|w| w == ["--measurement-time", "2"]));
        assert!(quick.windows(2).any(|w| w == ["--sample-size", "10"]));
        assert_eq!(Mode::Full.criterion_args(), vec!["--noplot"]);
    }
}
