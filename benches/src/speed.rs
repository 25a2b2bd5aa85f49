//! The speed steps (mix_core, mix_data, train_step): each criterion bench paired with its peer
//! script, the figures they share, the issues' speed targets judged on them, and the step's
//! section of the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::criterion;
use crate::peers::{PeerFormat, PeerSpec};
use crate::report::{self, format_measure, machine_lines, Machine, Table};
use crate::runner::{self, BenchEnv, Mode};

/// A criterion bench target of the mix-benches package.
pub struct BenchSpec {
    /// Its name in benches/benches and its step's name.
    pub name: &'static str,
    /// The heading of its section in the report.
    pub title: &'static str,
    /// Cargo features it needs (train_step needs `tch`, i.e. libtorch).
    pub features: &'static [&'static str],
}

/// A bench and the peer run right after it.
pub type Pair = (BenchSpec, PeerSpec);

/// Each bench with its peer, run in this order, each peer right after its bench so that both see
/// the same machine load.
pub const PAIRS: &[Pair] = &[
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
pub const CORPUS_PER_BREED: usize = 8;

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
    pub fn per_item_s(&self) -> f64 {
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
    pub fn owned(&self) -> String {
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
    pub fn get(&self, key: Key) -> Option<Measure> {
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

/// Runs one bench and its peer (each peer right after its bench, so that both see the same machine
/// load) and reads the bench's criterion output.
pub fn run_step(
    env: &BenchEnv<'_>,
    python: &Path,
    (bench, peer): &Pair,
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
    runner::run_bench(env, bench, &criterion_home, &mut results);
    results
        .stages
        .push((format!("bench {}", bench.name), t.elapsed().as_secs_f64()));
    let t = Instant::now();
    runner::run_peer(env, python, peer, peer_out, &mut results);
    results
        .stages
        .push((format!("peer {}", peer.stem), t.elapsed().as_secs_f64()));
    match criterion::read_criterion(&criterion_home) {
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
pub fn target_step(target: &Target) -> Option<&'static str> {
    match target.quantity {
        Quantity::Ratio { a, .. } => step_of(a),
        Quantity::Overhead { with, .. } => step_of(with),
    }
}

/// Prints a step's targets to stderr so that a terminal run shows the outcome without opening the
/// file.
pub fn print_summary(step: &str, results: &Results) {
    for target in TARGETS.iter().filter(|t| target_step(t) == Some(step)) {
        let verdict = judge(target, results);
        eprintln!(
            "{:<8} {}",
            verdict_word(&verdict),
            format_args!("{}: {}", target.claim, measured_text(target, &verdict))
        );
    }
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

pub fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Met(_) => "met",
        Verdict::NotMet(_) => "NOT met",
        Verdict::Missing(_) => "missing",
    }
}

pub fn show(value: f64, how: Show) -> String {
    match how {
        Show::Times => format!("{value:.2}x"),
        Show::Percent => format!("{:+.1}%", value * 100.0),
    }
}

pub fn measured_text(target: &Target, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Met(v) | Verdict::NotMet(v) => show(*v, target.show),
        Verdict::Missing(keys) => format!("missing ({})", keys.join(", ")),
    }
}

/// How a quantity is computed, naming its figures as the report's last table does.
pub fn formula(q: &Quantity) -> String {
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

/// A speed step's section of the report: machine, targets, side by side, every measurement,
/// problems.
pub fn render_section(
    machine: &Machine,
    mode: Mode,
    invocation: &str,
    (bench, peer): &Pair,
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
    let mut targets = Table::new(&["Target", "Measured", "Verdict", "Quantity"]);
    for target in TARGETS.iter().filter(|t| target_step(t) == Some(step)) {
        let verdict = judge(target, results);
        targets.push([
            target.claim.to_string(),
            measured_text(target, &verdict),
            verdict_word(&verdict).to_string(),
            formula(&target.quantity),
        ]);
    }
    let _ = write!(w, "{}", targets.render());

    let _ = writeln!(w, "\n### Side by side\n");
    let mut side = Table::new(&[
        "Work",
        "Ours",
        "Median (ours)",
        "Peer",
        "Median (peer)",
        "Peer / ours",
    ]);
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
        side.push([
            row.what.to_string(),
            format!("`{}`", row.ours.owned()),
            cell(ours),
            peer_name(row.peer, results),
            cell(peer),
            ratio,
        ]);
    }
    let _ = write!(w, "{}", side.render());

    let _ = writeln!(w, "\n### Every measurement\n");
    let mut every = Table::new(&["Figure", "Median"]);
    if results.measures.is_empty() {
        every.push(["(none)", "missing"]);
    }
    for (key, m) in &results.measures {
        let label = results
            .labels
            .get(key)
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        every.push([format!("`{key}`{label}"), format_measure(m)]);
    }
    let _ = write!(w, "{}", every.render());

    let _ = writeln!(w);
    report::problems(w, &results.problems, "None: the bench and its peer ran.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::parse_versions;

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
}
