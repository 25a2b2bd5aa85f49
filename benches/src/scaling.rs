//! The `scaling` step of `cargo xtask bench`: data-parallel mix-train on the CPU, 2 processes x 1
//! thread (`--nproc 2`, Gloo) against 1 process x 2 threads, with the epoch step's CPU recipe, corpus
//! and global batch, alternating; the report's images/s of both and the scaling efficiency.
//!
//! Figures come from rank 0's `timings.json` ([`epoch::parse_timings`]), whose image counts are rank
//! 0's own: every rank trains the same number of batches of its `--bs`, so the job trained `world`
//! times rank 0's `train_items` ([`Run::train_images`]). Validation is split over the ranks without
//! padding, so the job's validation images are those the single process counts
//! ([`Outcome::valid_images`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::epoch::{self, median_by, Recipe, Timings, FULL_RUNS, TIMINGS_FILE};
use crate::report::{self, machine_lines, Machine, Table};
use crate::runner::{self, Mode};

/// The step's name in `--only` and in the report's markers.
pub const STEP: &str = "scaling";

/// The pytorch/gloo commit whose headers mix-dist's shim compiles against (2025-12-01), for when
/// [`GLOO_README`] does not name one.
pub const GLOO_COMMIT: &str = "3135b0b41b67dde590eef0938a0bf3d6238df5f7";
/// Where mix-dist's vendored Gloo headers say which commit they are, from the workspace root.
pub const GLOO_README: &str = "crates/mix-dist/third_party/gloo/README.md";

/// How the two cores are used: processes, and torch threads in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Processes: `--nproc` (1 runs without it).
    pub procs: usize,
    /// Torch threads per process: `OMP_NUM_THREADS`.
    pub threads: usize,
}

/// One process with 2 threads: the baseline.
pub const ONE_BY_TWO: Config = Config {
    procs: 1,
    threads: 2,
};
/// Two single-threaded processes, data-parallel.
pub const TWO_BY_ONE: Config = Config {
    procs: 2,
    threads: 1,
};
/// Both configurations, in run order.
pub const CONFIGS: [Config; 2] = [ONE_BY_TWO, TWO_BY_ONE];

impl Config {
    /// `2 processes x 1 thread`.
    pub fn name(self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let procs = if self.procs == 1 {
            "process"
        } else {
            "processes"
        };
        format!(
            "{} {procs} x {} thread{}",
            self.procs,
            self.threads,
            plural(self.threads)
        )
    }

    /// Each rank's `--bs`, so that the global batch is the recipe's.
    pub fn per_rank_bs(self, recipe: &Recipe) -> Result<usize> {
        if self.procs == 0 || recipe.bs % self.procs != 0 {
            bail!(
                "expected a global batch that {} processes can share equally, found {}",
                self.procs,
                recipe.bs
            );
        }
        Ok(recipe.bs / self.procs)
    }

    /// mix-train's arguments: the recipe's, with the per-rank batch and `--nproc` when several.
    pub fn args(self, recipe: &Recipe, corpus: &Path, out: &Path) -> Result<Vec<OsString>> {
        let per_rank = Recipe {
            bs: self.per_rank_bs(recipe)?,
            ..*recipe
        };
        let mut args = per_rank.ours_args(corpus, out);
        if self.procs > 1 {
            args.push("--nproc".into());
            args.push(self.procs.to_string().into());
        }
        Ok(args)
    }

    /// The environment that sets the threads of each process. Set even for several processes,
    /// where mix-train's launcher would choose 1 itself, so that a value in the caller's environment
    /// cannot change the measurement.
    pub fn env(self) -> (&'static str, String) {
        ("OMP_NUM_THREADS", self.threads.to_string())
    }
}

/// One run of a configuration: rank 0's last epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The configuration it ran.
    pub config: Config,
    /// Rank 0's `timings.json` (the single process's, for one process).
    pub rank0: Timings,
}

impl Run {
    /// Images the whole job trained on: every rank trains as many as rank 0.
    pub fn train_images(&self) -> u64 {
        self.rank0.figures.train_items * self.config.procs as u64
    }

    /// Training images/s of the whole job.
    pub fn train_ips(&self) -> f64 {
        self.train_images() as f64 / self.rank0.figures.train_s
    }

    /// Images/s of the whole epoch, given the job's validation images.
    pub fn epoch_ips(&self, valid_images: u64) -> f64 {
        (self.train_images() + valid_images) as f64 / self.rank0.figures.epoch_s
    }
}

/// Where the Gloo commit of the report comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gloo {
    /// The 40-hex commit.
    pub commit: String,
    /// Whether [`GLOO_README`] named it (else it is [`GLOO_COMMIT`]).
    pub from_readme: bool,
}

/// The first 40-hex word of a text (the commit a vendoring README names).
pub fn parse_commit(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 40)
        .map(str::to_lowercase)
}

/// The Gloo commit, read from [`GLOO_README`] under `root` when it names one.
pub fn gloo(root: &Path) -> Gloo {
    match std::fs::read_to_string(root.join(GLOO_README))
        .ok()
        .and_then(|t| parse_commit(&t))
    {
        Some(commit) => Gloo {
            commit,
            from_readme: true,
        },
        None => Gloo {
            commit: GLOO_COMMIT.to_string(),
            from_readme: false,
        },
    }
}

/// Everything the step produced.
#[derive(Debug)]
pub struct Outcome {
    /// The recipe both configurations ran (the epoch step's CPU recipe).
    pub recipe: &'static Recipe,
    /// The corpus's images folder, from the workspace root, when it was made.
    pub corpus: Option<PathBuf>,
    /// Every run, in run order.
    pub runs: Vec<Run>,
    /// What failed or is missing.
    pub problems: Vec<String>,
    /// Wall seconds of making the corpus and building mix-train.
    pub prepare_s: f64,
    /// Wall seconds of each configuration's runs together, in [`CONFIGS`] order.
    pub runs_s: [f64; 2],
    /// The Gloo commit.
    pub gloo: Gloo,
}

impl Outcome {
    fn runs_of(&self, config: Config) -> Vec<&Run> {
        self.runs.iter().filter(|r| r.config == config).collect()
    }

    /// A configuration's reported run: the one with the median training loop.
    pub fn median(&self, config: Config) -> Option<&Run> {
        median_by(&self.runs_of(config), |r| r.rank0.figures.train_s).copied()
    }

    /// The job's validation images: what a single process validated (the whole split); the ranks
    /// each count only their part.
    pub fn valid_images(&self) -> Option<u64> {
        self.runs
            .iter()
            .find(|r| r.config.procs == 1)
            .map(|r| r.rank0.figures.valid_items)
    }

    /// Training images/s of 2 x 1 over those of 1 x 2 (1.0: as fast).
    pub fn efficiency(&self) -> Option<f64> {
        let (a, b) = (self.median(ONE_BY_TWO)?, self.median(TWO_BY_ONE)?);
        Some(b.train_ips() / a.train_ips())
    }

    /// Whole-epoch images/s of 2 x 1 over those of 1 x 2.
    pub fn epoch_efficiency(&self) -> Option<f64> {
        let valid = self.valid_images()?;
        let (a, b) = (self.median(ONE_BY_TWO)?, self.median(TWO_BY_ONE)?);
        Some(b.epoch_ips(valid) / a.epoch_ips(valid))
    }
}

/// Where the runs do not count the same job: both configurations must train as many images, and a
/// rank 0 of `world` must validate its part of the single process's split (`ceil(valid / world)`).
pub fn count_problems(runs: &[Run]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(first) = runs.first() else {
        return problems;
    };
    let valid = runs
        .iter()
        .find(|r| r.config.procs == 1)
        .map(|r| r.rank0.figures.valid_items);
    for r in runs {
        if r.train_images() != first.train_images() {
            problems.push(format!(
                "expected every run to train {} images in the epoch, found {} for {}",
                first.train_images(),
                r.train_images(),
                r.config.name()
            ));
        }
        if let Some(valid) = valid {
            let part = valid.div_ceil(r.config.procs as u64);
            if r.rank0.figures.valid_items != part {
                problems.push(format!(
                    "expected rank 0 of {} to validate {part} of the {valid} validation images, \
                     found {}",
                    r.config.name(),
                    r.rank0.figures.valid_items
                ));
            }
        }
    }
    problems
}

/// Makes the corpus, builds mix-train, then runs the two configurations alternately ([`FULL_RUNS`]
/// times each in full mode, once in quick mode), so that both see the same machine load.
pub fn run(root: &Path, target: &Path, data: &Path, mode: Mode) -> Outcome {
    let recipe = &epoch::CPU;
    let mut outcome = Outcome {
        recipe,
        corpus: None,
        runs: Vec::new(),
        problems: Vec::new(),
        prepare_s: 0.0,
        runs_s: [0.0; 2],
        gloo: gloo(root),
    };
    let t = Instant::now();
    let (dir, corpus) = match epoch::step_folder_and_corpus(root, data, STEP, recipe) {
        Ok(made) => made,
        Err(problem) => {
            outcome.problems.push(problem);
            return outcome;
        }
    };
    outcome.corpus = Some(corpus.strip_prefix(root).unwrap_or(&corpus).to_path_buf());
    let binary = runner::build_mix_train(target, &dir);
    outcome.prepare_s = t.elapsed().as_secs_f64();
    let binary = match binary {
        Ok(b) => b,
        Err(e) => {
            outcome
                .problems
                .push(format!("building mix-train failed: {e:#}"));
            return outcome;
        }
    };
    let repeats = match mode {
        Mode::Quick => 1,
        Mode::Full => FULL_RUNS,
    };
    for i in 0..repeats {
        for (c, config) in CONFIGS.iter().enumerate() {
            let out = dir.join(format!("{}x{}-{i}", config.procs, config.threads));
            let t = Instant::now();
            match run_one(root, &binary, recipe, *config, &corpus, &out) {
                Ok(rank0) => outcome.runs.push(Run {
                    config: *config,
                    rank0,
                }),
                Err(e) => outcome
                    .problems
                    .push(format!("mix-train {} run {i} failed: {e:#}", config.name())),
            }
            outcome.runs_s[c] += t.elapsed().as_secs_f64();
        }
    }
    outcome.problems.extend(count_problems(&outcome.runs));
    outcome
}

fn run_one(
    root: &Path,
    binary: &Path,
    recipe: &Recipe,
    config: Config,
    corpus: &Path,
    out: &Path,
) -> Result<Timings> {
    let args = config.args(recipe, corpus, out)?;
    let (key, value) = config.env();
    let run = runner::run_mix_train(root, binary, &args, &[(key, value.as_str())], out)?;
    let path = run.join(TIMINGS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: expected rank 0 of mix-train to write its per-epoch timings there",
            path.display()
        )
    })?;
    epoch::parse_timings(&text).with_context(|| path.display().to_string())
}

/// A configuration's command line, with the corpus and run folder as words.
fn command_text(recipe: &Recipe, config: Config) -> String {
    let (key, value) = config.env();
    let args = config
        .args(recipe, Path::new("CORPUS"), Path::new("DIR"))
        .map(|args| {
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| format!("(no command: {e})"));
    format!("{key}={value} mix-train {args}")
}

fn ratio(v: Option<f64>) -> String {
    v.map_or("missing".to_string(), |v| format!("{v:.2}"))
}

/// The columns [`run_cells`] fills, after a table's own first columns.
const RUN_COLUMNS: [&str; 6] = [
    "Training images/s",
    "Whole-epoch images/s",
    "Training loop, s",
    "Whole epoch, s",
    "Training images (job)",
    "Validation images (rank 0)",
];

/// A run's figures as table cells (all "missing" without a run), given the job's validation images.
fn run_cells(run: Option<&Run>, valid: Option<u64>) -> Vec<String> {
    let Some(run) = run else {
        return vec!["missing".to_string(); 6];
    };
    let f = &run.rank0.figures;
    vec![
        format!("{:.1}", run.train_ips()),
        valid.map_or("missing".to_string(), |v| {
            format!("{:.1}", run.epoch_ips(v))
        }),
        format!("{:.2}", f.train_s),
        format!("{:.2}", f.epoch_s),
        run.train_images().to_string(),
        f.valid_items.to_string(),
    ]
}

/// The step's section of docs/performance.md.
pub fn render(outcome: &Outcome, machine: &Machine, invocation: &str, mode: Mode) -> String {
    let r = outcome.recipe;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "## scaling: data-parallel mix-train on the CPU, 2 processes x 1 thread against 1 process x 2 \
         threads\n"
    );
    let _ = writeln!(
        w,
        "Written by `{invocation}` on {} (UTC); reproduce this section alone with `{} --only \
         {STEP}`.\n",
        machine.date,
        mode.command()
    );
    let _ = write!(w, "{}", machine_lines(machine));
    let torch = match machine.versions.get("torch") {
        Some(Some(v)) => v.as_str(),
        _ => "missing",
    };
    let gloo_source = if outcome.gloo.from_readme {
        format!("as `{GLOO_README}` names it")
    } else {
        format!("pytorch/gloo of 2025-12-01; `{GLOO_README}` names no commit")
    };
    let _ = writeln!(
        w,
        "- Engine: libtorch's c10d with the Gloo backend, from torch {torch} (the wheel whose \
         libtorch mix-train links, and whose `libtorch_cpu` holds Gloo); mix-dist's shim is \
         compiled against the Gloo headers of commit `{}` ({gloo_source})",
        outcome.gloo.commit
    );
    let _ = writeln!(
        w,
        "- Wall time: {:.0} s (corpus and building mix-train {:.0} s, {} runs {:.0} s, {} runs {:.0} \
         s, each from process start to exit)",
        outcome.prepare_s + outcome.runs_s.iter().sum::<f64>(),
        outcome.prepare_s,
        CONFIGS[0].name(),
        outcome.runs_s[0],
        CONFIGS[1].name(),
        outcome.runs_s[1],
    );
    let _ = writeln!(
        w,
        "- Mode: {}\n",
        match mode {
            Mode::Quick => "quick (one run per configuration)".to_string(),
            Mode::Full => format!(
                "full ({FULL_RUNS} runs per configuration, alternating; the run with the median \
                 training loop is shown)"
            ),
        }
    );
    let corpus = outcome
        .corpus
        .as_ref()
        .map_or("missing".into(), |c| c.display().to_string());
    let _ = writeln!(
        w,
        "Both configurations train the epoch step's CPU recipe (ResNet18 from scratch, one epoch, \
         {} images of the pets-like corpus, valid_pct 0.2) with the same global batch of {}, so \
         they take the same optimizer steps: `{}` and `{}` (two ranks of {} images, gradients \
         all-reduced by DDP over Gloo). `OMP_NUM_THREADS` sets torch's threads; mix-data's decoding \
         pool has one thread per core in the single process and the cores split between the ranks \
         (here one each) in the two; it waits most of the epoch. The \
         figures are rank 0's `{TIMINGS_FILE}`, whose image counts are rank 0's own: the job \
         trained {} times its training images, and validated the split the single process counts \
         (the ranks share it). Corpus folder of this run: `{corpus}`.\n",
        epoch::images(r),
        r.bs,
        command_text(r, ONE_BY_TWO),
        command_text(r, TWO_BY_ONE),
        TWO_BY_ONE.per_rank_bs(r).unwrap_or(0),
        TWO_BY_ONE.procs,
    );

    let _ = writeln!(w, "### Scaling efficiency\n");
    let mut eff = Table::new(&["Figure", "Measured", "Quantity"]);
    eff.push([
        "scaling efficiency, training epoch".to_string(),
        ratio(outcome.efficiency()),
        format!(
            "training images/s of {} / of {} (1.00: two single-threaded processes as fast as one \
             process with 2 threads)",
            TWO_BY_ONE.name(),
            ONE_BY_TWO.name()
        ),
    ]);
    eff.push([
        "scaling efficiency, whole epoch".to_string(),
        ratio(outcome.epoch_efficiency()),
        format!(
            "whole-epoch images/s of {} / of {}",
            TWO_BY_ONE.name(),
            ONE_BY_TWO.name()
        ),
    ]);
    let _ = writeln!(w, "{}", eff.render());

    let _ = writeln!(w, "### Side by side\n");
    let valid = outcome.valid_images();
    let mut side = Table::new(&[&["Configuration"][..], &RUN_COLUMNS].concat());
    for config in CONFIGS {
        side.push(std::iter::once(config.name()).chain(run_cells(outcome.median(config), valid)));
    }
    let _ = write!(w, "{}", side.render());

    if mode == Mode::Full {
        let _ = writeln!(w, "\n### Every run\n");
        let mut runs = Table::new(&[&["Configuration", "Run"][..], &RUN_COLUMNS].concat());
        for config in CONFIGS {
            for (i, run) in outcome.runs_of(config).into_iter().enumerate() {
                runs.push(
                    [config.name(), i.to_string()]
                        .into_iter()
                        .chain(run_cells(Some(run), valid)),
                );
            }
        }
        let _ = write!(w, "{}", runs.render());
    }

    let _ = writeln!(w, "\n### Several GPUs\n");
    let _ = writeln!(
        w,
        "Not measured: no machine with more than one GPU has been available. On one with N GPUs, \
         images/s per GPU against one GPU is the training images/s of `cargo xtask train --nproc N \
         --device cuda ...` (one rank per GPU, NCCL; `--bs` per rank) divided by N, over that of \
         the same command with `--nproc 1`; this step does not run it."
    );
    let _ = writeln!(w);
    report::problems(
        w,
        &outcome.problems,
        "None: every run of both configurations finished.",
    );
    s
}

/// Prints both configurations' images/s and the efficiency to stderr.
pub fn print_summary(outcome: &Outcome) {
    let valid = outcome.valid_images();
    for config in CONFIGS {
        let text = outcome.median(config).map_or("missing".to_string(), |r| {
            format!(
                "training {:.1} images/s, whole epoch {}",
                r.train_ips(),
                valid.map_or("missing".to_string(), |v| format!(
                    "{:.1} images/s",
                    r.epoch_ips(v)
                ))
            )
        });
        eprintln!("scaling   {}: {text}", config.name());
    }
    eprintln!(
        "scaling   efficiency (2 x 1 / 1 x 2): training {}, whole epoch {}",
        ratio(outcome.efficiency()),
        ratio(outcome.epoch_efficiency())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rank 0's timings: `train` training and `valid` validation images, in `train_s` and
    /// `epoch_s` seconds.
    fn timings(train: u64, valid: u64, train_s: f64, epoch_s: f64) -> Timings {
        epoch::parse_timings(&format!(
            r#"[{{"epoch":0,"device":"cpu","train_items":{train},"valid_items":{valid},
                "train_s":{train_s},"valid_s":1.0,"epoch_s":{epoch_s},"data_wait_s":0.1,
                "h2d_s":0.0,"augment_s":0.3,"mixing_s":0.1,"forward_backward_s":1.0,
                "optimizer_s":0.1,"logging_s":0.0,"end_epoch_s":0.2}}]"#
        ))
        .unwrap()
    }

    fn run(config: Config, train: u64, valid: u64, train_s: f64, epoch_s: f64) -> Run {
        Run {
            config,
            rank0: timings(train, valid, train_s, epoch_s),
        }
    }

    fn machine() -> Machine {
        let mut versions = std::collections::BTreeMap::new();
        versions.insert("torch".to_string(), Some("2.11.0+cu130".to_string()));
        Machine {
            cpu: "Test CPU".to_string(),
            cores: 2,
            load: Some(0.5),
            date: "2026-12-03".to_string(),
            versions,
            ..Machine::default()
        }
    }

    /// 1 x 2 trains 256 images in 8 s (32/s) and validates 74; each rank of 2 x 1 trains 128 in
    /// 10 s (25.6/s for the job) and validates 37.
    fn outcome() -> Outcome {
        Outcome {
            recipe: &epoch::CPU,
            corpus: Some(PathBuf::from("target/bench-data/pets-like-n10-s0/images")),
            runs: vec![
                run(ONE_BY_TWO, 256, 74, 8.0, 10.0),
                run(TWO_BY_ONE, 128, 37, 10.0, 11.0),
            ],
            problems: Vec::new(),
            prepare_s: 2.0,
            runs_s: [12.0, 14.0],
            gloo: Gloo {
                commit: GLOO_COMMIT.to_string(),
                from_readme: false,
            },
        }
    }

    #[test]
    fn the_configurations_share_the_global_batch_and_set_their_threads() {
        assert_eq!(ONE_BY_TWO.name(), "1 process x 2 threads");
        assert_eq!(TWO_BY_ONE.name(), "2 processes x 1 thread");
        assert_eq!(command_text(&epoch::CPU, ONE_BY_TWO), format!(
            "OMP_NUM_THREADS=2 mix-train --dataset CORPUS --epochs 1 --bs 64 --resize 144 --size 128 \
             --lr 1e-3 --mix mixup --alpha 1 --pretrained none --seed 0 --device cpu --out DIR"
        ));
        assert_eq!(
            command_text(&epoch::CPU, TWO_BY_ONE),
            "OMP_NUM_THREADS=1 mix-train --dataset CORPUS --epochs 1 --bs 32 --resize 144 --size 128 \
             --lr 1e-3 --mix mixup --alpha 1 --pretrained none --seed 0 --device cpu --out DIR \
             --nproc 2"
        );
        let odd = Recipe {
            bs: 63,
            ..epoch::CPU
        };
        let err = TWO_BY_ONE.per_rank_bs(&odd).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a global batch that 2 processes can share equally, found 63"
        );
        assert!(
            command_text(&odd, TWO_BY_ONE).starts_with("OMP_NUM_THREADS=1 mix-train (no command")
        );
    }

    #[test]
    fn the_job_counts_every_rank_and_the_efficiency_divides_the_medians() {
        let o = outcome();
        let (a, b) = (o.median(ONE_BY_TWO).unwrap(), o.median(TWO_BY_ONE).unwrap());
        assert_eq!((a.train_images(), b.train_images()), (256, 256));
        assert!((a.train_ips() - 32.0).abs() < 1e-12);
        assert!((b.train_ips() - 25.6).abs() < 1e-12);
        assert_eq!(o.valid_images(), Some(74));
        // (256 + 74) / 10 s and / 11 s.
        assert!((a.epoch_ips(74) - 33.0).abs() < 1e-12);
        assert!((b.epoch_ips(74) - 30.0).abs() < 1e-12);
        assert!((o.efficiency().unwrap() - 0.8).abs() < 1e-12);
        assert!((o.epoch_efficiency().unwrap() - 30.0 / 33.0).abs() < 1e-12);
        // The median training loop of three runs is reported.
        let mut three = outcome();
        three.runs.push(run(TWO_BY_ONE, 128, 37, 16.0, 17.0));
        three.runs.push(run(TWO_BY_ONE, 128, 37, 8.0, 9.0));
        assert_eq!(
            three.median(TWO_BY_ONE).unwrap().rank0.figures.train_s,
            10.0
        );
        // Without the single process there is no job validation count, nor an efficiency.
        let mut alone = outcome();
        alone.runs.remove(0);
        assert_eq!((alone.valid_images(), alone.efficiency()), (None, None));
        assert_eq!(alone.epoch_efficiency(), None);
    }

    #[test]
    fn runs_that_count_a_different_job_are_problems() {
        assert!(count_problems(&outcome().runs).is_empty());
        assert!(count_problems(&[]).is_empty());
        let mut runs = outcome().runs;
        runs[1] = run(TWO_BY_ONE, 96, 36, 10.0, 11.0);
        let problems = count_problems(&runs);
        assert_eq!(
            problems,
            vec![
                "expected every run to train 256 images in the epoch, found 192 for 2 processes x \
                 1 thread"
                    .to_string(),
                "expected rank 0 of 2 processes x 1 thread to validate 37 of the 74 validation \
                 images, found 36"
                    .to_string(),
            ]
        );
        // An odd split gives rank 0 the larger part.
        let runs = [
            run(ONE_BY_TWO, 256, 75, 8.0, 10.0),
            run(TWO_BY_ONE, 128, 38, 10.0, 11.0),
        ];
        assert!(count_problems(&runs).is_empty());
    }

    #[test]
    fn the_gloo_commit_is_the_readmes_when_it_names_one() {
        let text = format!(
            "Vendored from pytorch/gloo at commit {} (2025-12-01).\n",
            GLOO_COMMIT.to_uppercase()
        );
        assert_eq!(parse_commit(&text).as_deref(), Some(GLOO_COMMIT));
        assert_eq!(parse_commit("headers only, see deadbeef"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            gloo(dir.path()),
            Gloo {
                commit: GLOO_COMMIT.to_string(),
                from_readme: false
            }
        );
        let readme = dir.path().join(GLOO_README);
        std::fs::create_dir_all(readme.parent().unwrap()).unwrap();
        let other = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(&readme, format!("commit {other}\n")).unwrap();
        assert_eq!(
            gloo(dir.path()),
            Gloo {
                commit: other.to_string(),
                from_readme: true
            }
        );
    }

    #[test]
    fn the_section_has_both_configurations_the_efficiency_and_the_engine() {
        let text = render(
            &outcome(),
            &machine(),
            "cargo xtask bench --quick --only scaling",
            Mode::Quick,
        );
        assert!(text.starts_with("## scaling: "), "{text}");
        assert!(text.contains(
            "Written by `cargo xtask bench --quick --only scaling` on 2026-12-03 (UTC); reproduce \
             this section alone with `cargo xtask bench --quick --only scaling`."
        ));
        assert!(text.contains("Test CPU, 2 logical cores"), "{text}");
        assert!(
            text.contains(&format!(
                "from torch 2.11.0+cu130 (the wheel whose libtorch mix-train links, and whose \
                 `libtorch_cpu` holds Gloo); mix-dist's shim is compiled against the Gloo headers \
                 of commit `{GLOO_COMMIT}` (pytorch/gloo of 2025-12-01; `{GLOO_README}` names no \
                 commit)"
            )),
            "{text}"
        );
        assert!(text.contains("- Wall time: 28 s (corpus and building mix-train 2 s, 1 process x 2 threads runs 12 s, 2 processes x 1 thread runs 14 s"), "{text}");
        assert!(
            text.contains("| scaling efficiency, training epoch | 0.80 | training images/s of 2 processes x 1 thread / of 1 process x 2 threads"),
            "{text}"
        );
        assert!(
            text.contains("| scaling efficiency, whole epoch | 0.91 |"),
            "{text}"
        );
        assert!(
            text.contains("| 1 process x 2 threads | 32.0 | 33.0 | 8.00 | 10.00 | 256 | 74 |"),
            "{text}"
        );
        assert!(
            text.contains("| 2 processes x 1 thread | 25.6 | 30.0 | 10.00 | 11.00 | 256 | 37 |"),
            "{text}"
        );
        assert!(
            text.contains("370 images of the pets-like corpus"),
            "{text}"
        );
        assert!(
            text.contains("--out DIR --nproc 2` (two ranks of 32 images"),
            "{text}"
        );
        assert!(
            text.contains("`cargo xtask train --nproc N --device cuda ...`"),
            "{text}"
        );
        assert!(!text.contains("### Every run"), "{text}");
        assert!(text.contains("None: every run of both configurations finished."));
    }

    #[test]
    fn a_full_run_lists_every_run_and_a_missing_configuration_says_so() {
        let mut o = outcome();
        o.runs.push(run(ONE_BY_TWO, 256, 74, 16.0, 20.0));
        let text = render(&o, &machine(), "cargo xtask bench", Mode::Full);
        assert!(
            text.contains("| 1 process x 2 threads | 1 | 16.0 | 16.5 | 16.00 | 20.00 | 256 | 74 |"),
            "{text}"
        );
        assert!(
            text.contains("| 2 processes x 1 thread | 0 | 25.6 | 30.0 |"),
            "{text}"
        );
        o.runs.retain(|r| r.config == ONE_BY_TWO);
        o.problems
            .push("mix-train 2 processes x 1 thread run 0 failed: exit 1".to_string());
        let text = render(&o, &machine(), "cargo xtask bench", Mode::Quick);
        assert!(
            text.contains("| 2 processes x 1 thread | missing | missing | missing |"),
            "{text}"
        );
        assert!(
            text.contains("| scaling efficiency, training epoch | missing |"),
            "{text}"
        );
        assert!(
            text.contains("- mix-train 2 processes x 1 thread run 0 failed: exit 1"),
            "{text}"
        );
    }
}
