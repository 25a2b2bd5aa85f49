//! `mix-bench` (run by `cargo xtask bench` and `cargo xtask corpus`): runs our criterion benches
//! and the peer scripts step by step and writes the side-by-side figures, with the issues' speed
//! targets judged, to docs/performance.md.
//!
//! The steps, in order: the speed steps ([`speed`]: each criterion bench with its peer script), the
//! `epoch` step ([`epoch`]: one whole training epoch of mix-train against fastai's), the `scaling`
//! step ([`scaling`]: that epoch data-parallel, 2 processes x 1 thread against 1 x 2) and the
//! `accuracy` step ([`accuracy`]: mix-train and fastai's own `vision_learner` side by side). The
//! speed steps read a pets-like corpus made from the repository's sample photos ([`corpus`]).
//! Children run through [`runner`]; peers and their python through [`peers`]; criterion's files are
//! read by [`criterion`]; every table is a [`report::Table`].
//!
//! The document has one section per step between markers ([`doc`]): a run of every step rewrites it
//! whole, `--only STEP` rewrites that step's section alone. Every figure of a section comes from the
//! run that wrote it: criterion writes into a folder emptied before each bench, and each peer script
//! writes a fresh JSON file. A bench or peer that is absent or fails leaves its figures marked
//! "missing"; nothing is carried over from older runs of the same step.

mod accuracy;
mod corpus;
mod criterion;
mod doc;
mod epoch;
mod peers;
mod report;
mod runner;
mod scaling;
mod speed;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::epoch::Device;
use crate::report::Machine;
use crate::runner::Mode;
use crate::speed::PAIRS;

const ABOUT: &str = "\
Run the criterion benches (benches/benches) and the peer scripts (benches/peers) side by side,
then write docs/performance.md: machine, versions, every median, ours / peer ratios and the
speed targets. The epoch step times one whole training epoch of mix-train against fastai's
fit_one_cycle on a pets-like corpus made from the sample photos (on the CPU by default; --device
cuda takes the full Pets size). The scaling step times that CPU epoch as 2 processes x 1 thread
(mix-train --nproc 2, Gloo) against 1 process x 2 threads, same global batch. The accuracy step trains mix-train and fastai's vision_learner on
the sample images (3 epochs, seeds 0, 1, 2, in both modes; a few minutes). The steps, in order:
mix_core, mix_data, train_step, epoch, scaling, accuracy. --only STEP runs one and rewrites only its section
of the report. --quick finishes the speed steps within about 5 minutes on 2 cores once the benches
are built.";

/// The step that trains mix-train and fastai side by side ([`accuracy`]).
pub const ACCURACY: &str = "accuracy";

/// `mix-bench [--quick] [--only STEP] [--device DEVICE] [--out FILE]`, or `mix-bench corpus OUT`.
// The option help is lower-case, as the other `cargo xtask` tasks write theirs.
#[derive(Debug, Parser)]
#[command(name = "mix-bench", version, about = ABOUT, args_conflicts_with_subcommands = true)]
struct Cli {
    /// short warm-up and measurement times (seconds per figure, not minutes).
    #[arg(long)]
    quick: bool,
    /// run one step (mix_core, mix_data, train_step, epoch, scaling or accuracy) and rewrite its
    /// section.
    #[arg(long, value_name = "STEP", value_parser = parse_only)]
    only: Option<&'static str>,
    /// the epoch step's device: cpu (default; 37 x 10 images, Resize 144, size 128) or cuda (the full
    /// Pets size: 37 x 200 images, Resize 256, size 224).
    #[arg(long, value_name = "DEVICE", value_parser = Device::parse)]
    device: Option<Device>,
    /// where to write the report (default docs/performance.md).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Task>,
}

/// The tasks besides the bench itself.
#[derive(Debug, Subcommand)]
enum Task {
    /// Make the bench's pets-like corpus under OUT (once; cached) from data/sample/images and print
    /// its images folder. The GPU pack's script runs it on the device.
    Corpus(corpus::CorpusArgs),
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Task::Corpus(args)) => corpus::task(&args),
        None => bench(&cli),
    };
    if let Err(err) = outcome {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Every step's name, in run and document order: the criterion benches with their peers, the whole
/// epoch, its data-parallel scaling, then the accuracy comparison.
pub fn step_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = PAIRS.iter().map(|(bench, _)| bench.name).collect();
    names.push(epoch::STEP);
    names.push(scaling::STEP);
    names.push(ACCURACY);
    names
}

/// Reads `--only`: one of [`step_names`], or an error listing them (clap names the option).
fn parse_only(value: &str) -> std::result::Result<&'static str, String> {
    let names = step_names();
    match names.iter().find(|n| **n == value) {
        Some(name) => Ok(name),
        None => Err(format!(
            "unknown step; expected one of {}",
            names.join(", ")
        )),
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
fn bench(cli: &Cli) -> Result<()> {
    let mode = if cli.quick { Mode::Quick } else { Mode::Full };
    let only = cli.only;
    let device = cli.device.unwrap_or(Device::Cpu);
    let root = runner::project_root();
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| root.join("docs").join("performance.md"));
    let existing = match only {
        // Check now that the report can take the section, not after minutes of measuring.
        Some(step) => {
            let text = report::read(&out)?;
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
    if device != Device::Cpu && !selected.contains(&epoch::STEP) {
        bail!(
            "--device {}: only the epoch step takes a device, and --only {} leaves it out; pass \
             --only epoch or drop --device",
            device.name(),
            selected.join(",")
        );
    }

    let python = runner::torch_python()?;
    let versions = peers::python_versions(&python)?;
    let target = runner::target_dir(&root);
    let data = target.join("bench-data");
    let machine = Machine::detect(&root, &versions);
    let mut invocation = invocation(mode, only);
    if device != Device::Cpu {
        invocation.push_str(&format!(" --device {}", device.name()));
    }

    let mut sections: Vec<(&'static str, String)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let pairs: Vec<&speed::Pair> = PAIRS
        .iter()
        .filter(|(bench, _)| selected.contains(&bench.name))
        .collect();
    if !pairs.is_empty() {
        let corpus = corpus::ensure(
            &data,
            &root.join(accuracy::IMAGES),
            speed::CORPUS_PER_BREED,
            epoch::CORPUS_SEED,
        )?;
        let peer_out = data.join("peers");
        std::fs::create_dir_all(&peer_out)
            .with_context(|| format!("cannot create {}", peer_out.display()))?;
        let env = runner::BenchEnv {
            root: &root,
            mode,
            corpus: &corpus,
            features: runner::bench_features(&root),
        };
        let names: Vec<&str> = pairs.iter().map(|(bench, _)| bench.name).collect();
        runner::prebuild(&env, &names);
        for pair in pairs {
            let mut step_machine = machine.clone();
            step_machine.load = runner::load_average();
            let started = Instant::now();
            let results = speed::run_step(&env, &python, pair, &data, &peer_out);
            step_machine.wall_s = Some(started.elapsed().as_secs_f64());
            speed::print_summary(pair.0.name, &results);
            problems.extend(results.problems.iter().cloned());
            sections.push((
                pair.0.name,
                speed::render_section(&step_machine, mode, &invocation, pair, &results),
            ));
        }
    }
    if selected.contains(&epoch::STEP) {
        let mut step_machine = machine.clone();
        step_machine.load = runner::load_average();
        let recipe = epoch::Recipe::for_device(device);
        let outcome = epoch::run(&root, &target, &python, &data, recipe, mode);
        epoch::print_summary(&outcome);
        problems.extend(outcome.problems.iter().cloned());
        sections.push((
            epoch::STEP,
            epoch::render(&outcome, &step_machine, &invocation, mode),
        ));
    }
    if selected.contains(&scaling::STEP) {
        let mut step_machine = machine.clone();
        step_machine.load = runner::load_average();
        let outcome = scaling::run(&root, &target, &data, mode);
        scaling::print_summary(&outcome);
        problems.extend(outcome.problems.iter().cloned());
        sections.push((
            scaling::STEP,
            scaling::render(&outcome, &step_machine, &invocation, mode),
        ));
    }
    if selected.contains(&ACCURACY) {
        let mut step_machine = machine.clone();
        step_machine.load = runner::load_average();
        let outcome = accuracy::run(&root, &target, &python, &data.join(ACCURACY));
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
    mix_io::write_atomic(&out, text.as_bytes())?;
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

/// [`doc::splice`] with this bench's steps and its rule for reports without markers.
fn splice_report(existing: &str, step: &str, section: &str) -> Result<String> {
    let steps: Vec<(&str, &str)> = PAIRS
        .iter()
        .map(|(bench, _)| (bench.name, bench.title))
        .collect();
    let legacy = doc::Legacy {
        steps: &steps,
        attribute: &speed::legacy_step,
    };
    doc::splice(existing, step, section, &step_names(), &legacy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speed::legacy_step;

    #[test]
    fn only_takes_a_step_name_and_refuses_others_with_the_list() {
        assert_eq!(
            step_names(),
            vec![
                "mix_core",
                "mix_data",
                "train_step",
                "epoch",
                "scaling",
                "accuracy"
            ]
        );
        assert_eq!(parse_only("accuracy").unwrap(), ACCURACY);
        assert_eq!(parse_only("train_step").unwrap(), "train_step");
        let err = parse_only("mix_ops").unwrap_err();
        assert_eq!(
            err,
            "unknown step; expected one of mix_core, mix_data, train_step, epoch, scaling, accuracy"
        );
        // clap puts the option and the value in front of it.
        let err = Cli::try_parse_from(["mix-bench", "--only", "mix_ops"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid value 'mix_ops' for '--only <STEP>': unknown step"),
            "{err}"
        );
        let cli = Cli::try_parse_from(["mix-bench", "--quick", "--only", "epoch"]).unwrap();
        assert!(cli.quick && cli.only == Some("epoch") && cli.command.is_none());
        assert_eq!(parse_only("scaling").unwrap(), scaling::STEP);
    }

    #[test]
    fn corpus_is_a_subcommand_with_the_cuda_epoch_size_and_the_bench_seed_by_default() {
        let cli = Cli::try_parse_from(["mix-bench", "corpus", "out"]).unwrap();
        let Some(Task::Corpus(args)) = cli.command else {
            panic!("expected the corpus task, found {:?}", cli.command);
        };
        assert_eq!(args.out, PathBuf::from("out"));
        assert_eq!(
            (args.per_breed, args.seed),
            (epoch::CUDA.per_breed, epoch::CORPUS_SEED)
        );
        let cli = Cli::try_parse_from([
            "mix-bench",
            "corpus",
            "o",
            "--per-breed",
            "3",
            "--seed",
            "7",
        ])
        .unwrap();
        let Some(Task::Corpus(args)) = cli.command else {
            panic!("expected the corpus task, found {:?}", cli.command);
        };
        assert_eq!((args.per_breed, args.seed), (3, 7));
        // The bench's options belong to the bench, not to the corpus task.
        assert!(Cli::try_parse_from(["mix-bench", "--quick", "corpus", "o"]).is_err());
        let err = Cli::try_parse_from(["mix-bench", "--device", "gpu"]).unwrap_err();
        assert!(err.to_string().contains("expected cpu or cuda"), "{err}");
        <Cli as clap::CommandFactory>::command().debug_assert();
        assert_eq!(
            invocation(Mode::Quick, Some("accuracy")),
            "cargo xtask bench --quick --only accuracy"
        );
        assert_eq!(invocation(Mode::Full, None), "cargo xtask bench");
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
        // The old layout had no epoch or scaling figures, so it gets no section for them.
        let absent = [epoch::STEP, scaling::STEP];
        for step in absent {
            assert!(!text.contains(&doc::start_marker(step)), "{text}");
        }
        let order: Vec<usize> = step_names()
            .iter()
            .filter(|s| !absent.contains(s))
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
}
