//! `cargo xtask gpu-pack`: builds here everything a GPU machine without Rust needs for the CUDA
//! checks (the libtorch test binaries, mix-train, the ceiling example and mix-bench, stripped and
//! packed) and writes the one script that runs them there; `mix-bench corpus` makes the epoch's
//! corpus on that machine.
//!
//! The pack is `.carry/gpu/`: `bin.tar.xz` (the binaries; stripped debug binaries share most of
//! their code, so one solid archive is a tenth of their size) and `run.sh`, which unpacks them,
//! runs every test binary and the CUDA epoch, and writes what it saw under `$OUT`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use epoch_recipe::{self as epoch, Recipe, CORPUS_SEED};

// The bench's epoch recipe, shared with mix-bench (`#[path]`, from xtask/src/), so that
// the arguments of mix-train, the peer and the ceiling example are written in one place.
#[allow(dead_code)]
#[path = "../../benches/src/epoch/recipe.rs"]
mod epoch_recipe;
use crate::libtorch;
use crate::process::{self, cargo};

/// The pack's folder, from the workspace root (ignored by git as `/.carry/`).
pub const PACK_DIR: &str = ".carry/gpu";
/// The archive of the binaries in the pack.
const ARCHIVE: &str = "bin.tar.xz";
/// The script in the pack.
const SCRIPT: &str = "run.sh";
/// The pack size to aim for, and the size refused: the device tool carries 64 MiB in all.
const WANT_BYTES: u64 = 55 << 20;
const MAX_BYTES: u64 = 60 << 20;
/// Seconds one test binary may run.
const TEST_TIMEOUT_S: u64 = 300;
/// The device tool stops a command after 600 s; the script stops starting work before that.
const BUDGET_S: u64 = 540;
/// Of which the test binaries may take this much, so that the epoch always gets its turn.
const TEST_BUDGET_S: u64 = 270;
/// Runs of mix-train and of the ceiling example, alternating, as the bench's full mode does.
const EPOCH_RUNS: usize = 3;

/// What `gpu-pack --help` says.
pub const ABOUT: &str = "Build the libtorch test binaries, mix-train, the epoch_ceiling example and \
mix-bench, strip them and pack them with a script into .carry/gpu/, so that a GPU machine with python3 \
and torch 2.11.0 but no Rust runs the CUDA checks with `bash .carry/gpu/run.sh`.";

/// One compiled target cargo reported, with an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The package's name (`mix-tch`).
    pub krate: String,
    /// The target's name (`throughput`, `mix_tch` for the library's unit tests).
    pub target: String,
    /// The target's kinds (`test`, `lib`, `bin`, `example`).
    pub kinds: Vec<String>,
    /// Built with the test harness.
    pub test: bool,
    /// The package's folder.
    pub crate_dir: PathBuf,
    /// The executable cargo made.
    pub executable: PathBuf,
}

impl Artifact {
    /// The binary's name in the pack: `<crate>-<target>` for a test binary.
    pub fn pack_name(&self) -> String {
        format!("{}-{}", self.krate, self.target)
    }
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    package_id: Option<String>,
    manifest_path: Option<PathBuf>,
    target: Option<MessageTarget>,
    profile: Option<MessageProfile>,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct MessageTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct MessageProfile {
    test: bool,
}

/// The package name in a cargo package id: `path+file:///x/mix-tch#0.1.0` (the folder's name),
/// `path+file:///x/a#mix-tch@0.1.0`, or the old `mix-tch 0.1.0 (path+file:///x)`.
fn package_name(id: &str) -> Option<String> {
    if !id.contains("://") || id.contains(' ') {
        return id.split_whitespace().next().map(str::to_string);
    }
    let (url, fragment) = id.split_once('#')?;
    match fragment.split_once('@') {
        Some((name, _)) => Some(name.to_string()),
        None => url.rsplit('/').next().map(str::to_string),
    }
}

/// The artifacts with an executable in cargo's `--message-format=json` output, in order.
pub fn artifacts(json: &str) -> Result<Vec<Artifact>> {
    let mut found = Vec::new();
    for line in json.lines().filter(|l| l.trim_start().starts_with('{')) {
        let msg: Message = serde_json::from_str(line)
            .with_context(|| format!("expected one cargo JSON message per line, found `{line}`"))?;
        if msg.reason != "compiler-artifact" {
            continue;
        }
        let (Some(id), Some(manifest), Some(target), Some(profile), Some(exe)) = (
            msg.package_id,
            msg.manifest_path,
            msg.target,
            msg.profile,
            msg.executable,
        ) else {
            continue;
        };
        let krate = package_name(&id)
            .with_context(|| format!("expected a package name in the package id `{id}`"))?;
        let crate_dir = manifest
            .parent()
            .with_context(|| format!("{} has no folder", manifest.display()))?
            .to_path_buf();
        found.push(Artifact {
            krate,
            target: target.name,
            kinds: target.kind,
            test: profile.test,
            crate_dir,
            executable: exe,
        });
    }
    Ok(found)
}

/// The test executables among `artifacts`, each once.
pub fn test_binaries(artifacts: &[Artifact]) -> Vec<Artifact> {
    let mut seen = BTreeMap::new();
    for a in artifacts.iter().filter(|a| a.test) {
        seen.entry(a.pack_name()).or_insert_with(|| a.clone());
    }
    seen.into_values().collect()
}

/// Runs `cmd` with `--message-format=json`, its progress on our stderr, and returns its artifacts.
fn build_json(cmd: &mut Command) -> Result<Vec<Artifact>> {
    cmd.arg("--message-format=json").stderr(Stdio::inherit());
    eprintln!("$ {}", process::display(cmd));
    artifacts(&process::output(cmd)?)
}

/// The one artifact of `kind` named `name`.
fn one(found: &[Artifact], kind: &str, name: &str) -> Result<PathBuf> {
    found
        .iter()
        .find(|a| !a.test && a.target == name && a.kinds.iter().any(|k| k == kind))
        .map(|a| a.executable.clone())
        .with_context(|| format!("expected cargo to report the {kind} `{name}`, found none"))
}

/// What the script needs to know about the build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Test binaries: name in the pack and crate folder relative to the workspace root.
    pub tests: Vec<(String, String)>,
    /// The workspace root the binaries were built in: `env!` paths in the tests point into it.
    pub build_root: String,
    /// Where the tests' `CARGO_BIN_EXE_mix-train` points, relative to the workspace root.
    pub mix_train_rel: Option<String>,
    /// The CUDA epoch's recipe.
    pub recipe: &'static Recipe,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Command-line words as shell text; the placeholder paths become the script's variables.
fn words(args: &[OsString], vars: &[(&Path, &str)]) -> String {
    args.iter()
        .map(|a| {
            vars.iter()
                .find(|(p, _)| p.as_os_str() == a.as_os_str())
                .map(|(_, var)| format!("\"{var}\""))
                .unwrap_or_else(|| shell_quote(&a.to_string_lossy()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of run.sh.
pub fn script(plan: &Plan) -> String {
    let images = Path::new("@CORPUS@");
    let out = Path::new("@RUN_OUT@");
    let vars = [(images, "$CORPUS"), (out, "$WORK/ours-$i")];
    let ours = words(&plan.recipe.ours_args(images, out), &vars);
    let peer = words(&plan.recipe.peer_args(images), &vars);
    let ceiling = words(&plan.recipe.ceiling_args(images), &vars);
    let mut tests = String::new();
    for (name, dir) in &plan.tests {
        let _ = writeln!(tests, "run_test {} {}", shell_quote(name), shell_quote(dir));
    }
    let bin_exe = match &plan.mix_train_rel {
        Some(rel) => format!(
            "# The mix-train tests run the binary at the path cargo gave them (CARGO_BIN_EXE_mix-train).\n\
             if [ ! -e {rel} ]; then mkdir -p \"$(dirname {rel})\" && cp \"$BIN/mix-train\" {rel}; fi\n",
            rel = shell_quote(rel)
        ),
        None => String::new(),
    };
    let mut text = String::from(SCRIPT_HEAD);
    let _ = write!(
        text,
        "BUILD_ROOT={build_root}\nPER_BREED=${{GPU_PACK_PER_BREED:-{per_breed}}}\n\
         SEED={seed}\nRUNS={runs}\nTEST_TIMEOUT={test_timeout}\n\
         BUDGET=${{GPU_PACK_BUDGET_S:-{budget}}}\nTEST_BUDGET=${{GPU_PACK_TEST_BUDGET_S:-{test_budget}}}\n",
        build_root = shell_quote(&plan.build_root),
        per_breed = plan.recipe.per_breed,
        seed = CORPUS_SEED,
        runs = EPOCH_RUNS,
        test_timeout = TEST_TIMEOUT_S,
        budget = BUDGET_S,
        test_budget = TEST_BUDGET_S,
    );
    text.push_str(SCRIPT_SETUP);
    text.push_str(&bin_exe);
    text.push_str(
        "\nif [[ \" $STEPS \" == *\" tests \"* ]]; then\n\
         note \"== tests (each: timeout $TEST_TIMEOUT s, --test-threads 1, cwd its crate folder)\"\n\
         TEST_END=$((SECONDS + TEST_BUDGET))\n",
    );
    text.push_str(&tests);
    text.push_str("else\n  note \"tests: NOT RUN (GPU_PACK_STEPS=$STEPS)\"\nfi\n");
    let _ = write!(
        text,
        "\nif [[ \" $STEPS \" == *\" epoch \"* ]]; then\n\
         note \"== CUDA epoch: corpus of $PER_BREED per breed, $RUNS runs of mix-train and of the ceiling\"\n\
         epoch_step\n\
         else\n  note \"epoch: NOT RUN (GPU_PACK_STEPS=$STEPS)\"\nfi\n",
    );
    // The epoch step is a function so that `return` can end it early when the corpus is missing.
    let epoch_fn = SCRIPT_EPOCH
        .replace("@OURS_ARGS@", &ours)
        .replace("@CEILING_ARGS@", &ceiling)
        .replace("@PEER_ARGS@", &peer)
        .replace("@TIMINGS@", epoch::TIMINGS_FILE)
        .replace("@PEER@", epoch::PEER);
    text = text.replacen("# @EPOCH_FN@\n", &epoch_fn, 1);
    text.push_str(SCRIPT_TAIL);
    text
}

const SCRIPT_HEAD: &str = r#"#!/usr/bin/env bash
# Generated by `cargo xtask gpu-pack` (xtask/src/gpu.rs): regenerate it there, do not edit it.
# Runs the CUDA checks on a GPU machine with python3 + torch 2.11.0 and no Rust, from the repository
# root: `bash .carry/gpu/run.sh`. Results go to $OUT (./gpu-out when unset): summary.txt, the test
# logs, each mix-train run's timings, the ceiling's JSON lines.
# Overrides: GPU_PACK_STEPS ("tests epoch"), GPU_PACK_TESTS (a regex of test binaries to run),
# GPU_PACK_PER_BREED (corpus size), GPU_PACK_BUDGET_S, GPU_PACK_TEST_BUDGET_S, GPU_PACK_PYTHON (python3).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
PACK=.carry/gpu
OUT=${OUT:-$ROOT/gpu-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
WORK=${GPU_PACK_WORK:-$ROOT/target/gpu-run}
STEPS=${GPU_PACK_STEPS:-tests epoch}
FILTER=${GPU_PACK_TESTS:-}
PY=${GPU_PACK_PYTHON:-python3}
"#;

const SCRIPT_SETUP: &str = r#"
mkdir -p "$OUT/tests" "$WORK" || exit 2
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
FAILED=0
note() { echo "$*" | tee -a "$SUMMARY"; }
# Seconds a command may take: its cap, or what is left of $1's end, whichever is less.
allow() { local left=$(( $1 - SECONDS )); if [ "$left" -lt "$2" ]; then echo "$left"; else echo "$2"; fi; }
# Keeps a log's head and tail when it is long, so that $OUT stays small.
trim() {
  if [ "$(stat -c %s "$1")" -gt 400000 ]; then
    { head -c 100000 "$1"; printf '\n[... cut by run.sh ...]\n'; tail -c 200000 "$1"; } > "$1.cut" && mv "$1.cut" "$1"
  fi
}
END=$((SECONDS + BUDGET))

note "gpu-pack run.sh in $ROOT, results in $OUT, $(date -u +%FT%TZ)"
note "== machine"
if command -v nvidia-smi > /dev/null; then nvidia-smi -L 2>&1 | tee -a "$SUMMARY"; else note "nvidia-smi: not found"; fi

PY_PATH=$(command -v "$PY") || PY_PATH=
TORCH_LIB=
if [ -n "$PY_PATH" ]; then
  TORCH_LIB=$("$PY_PATH" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2> /dev/null) || TORCH_LIB=
fi
if [ -z "$TORCH_LIB" ]; then
  note "FAIL: $PY cannot import torch: the binaries need libtorch 2.11.0 from a python with torch==2.11.0 (set GPU_PACK_PYTHON)"
  FAILED=1
else
  export LIBTORCH=${TORCH_LIB%/lib}
  export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  "$PY_PATH" -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count())' 2>&1 | tee -a "$SUMMARY"
fi
# The oracle tests start this python; without torchvision or fastai they fail, and say so.
export MIX_TORCH_PYTHON=${PY_PATH:-$PY}

# Unpacked outside the pack, so that the pack stays small enough to carry again.
BIN=$WORK/bin
rm -rf "$BIN"
if command -v xz > /dev/null; then
  tar -xJf "$PACK/bin.tar.xz" -C "$WORK"
else
  "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACK/bin.tar.xz" "$WORK"
fi || { note "FAIL: cannot unpack $PACK/bin.tar.xz"; exit 2; }
note "unpacked $(ls "$BIN" | wc -l) binaries into $BIN"

# The tests read fixtures through paths fixed when they were built (env!("CARGO_MANIFEST_DIR")
# under $BUILD_ROOT); where that folder does not exist, it is made a link to this copy.
if [ "$ROOT" != "$BUILD_ROOT" ] && [ ! -e "$BUILD_ROOT" ]; then
  if mkdir -p "$(dirname "$BUILD_ROOT")" 2> /dev/null && ln -s "$ROOT" "$BUILD_ROOT" 2> /dev/null; then
    note "linked the build's root $BUILD_ROOT to $ROOT"
  else
    note "WARNING: cannot link $BUILD_ROOT to $ROOT: tests that read files through build-time paths will fail"
  fi
elif [ "$ROOT" != "$BUILD_ROOT" ]; then
  note "WARNING: $BUILD_ROOT exists and is not this copy: build-time paths in the tests point there"
fi

# One test binary: pass, fail or timeout, with its counts and failed tests, into the summary.
run_test() {
  local name=$1 dir=$2
  if [ -n "$FILTER" ] && ! [[ $name =~ $FILTER ]]; then
    note "$(printf '%-36s NOT RUN (not matched by GPU_PACK_TESTS=%s)' "$name" "$FILTER")"
    return
  fi
  local t
  t=$(allow "$TEST_END" "$TEST_TIMEOUT")
  if [ "$t" -lt 10 ]; then
    note "$(printf '%-36s NOT RUN (the tests'"'"' %s s budget is spent; raise GPU_PACK_TEST_BUDGET_S)' "$name" "$TEST_BUDGET")"
    FAILED=1
    return
  fi
  local log=$OUT/tests/$name.log start=$SECONDS rc
  (cd "$dir" && CARGO_MANIFEST_DIR=$ROOT/$dir timeout -k 10 "$t" "$BIN/$name" --test-threads 1) > "$log" 2>&1
  rc=$?
  trim "$log"
  local verdict counts failed
  if [ "$rc" -eq 0 ]; then verdict=PASS
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="TIMEOUT(${t}s)"; FAILED=1
  else verdict="FAIL(rc=$rc)"; FAILED=1
  fi
  counts=$(grep -h '^test result:' "$log" | tail -1 | sed 's/^test result: //')
  note "$(printf '%-36s %-13s %4ss  %s' "$name" "$verdict" $((SECONDS - start)) "$counts")"
  failed=$(grep -E '^test .+ \.\.\. FAILED$' "$log" | sed -E 's/^test (.+) \.\.\. FAILED$/\1/' | head -20 | tr '\n' ' ')
  [ -n "$failed" ] && note "    failed: $failed"
  return 0
}

# @EPOCH_FN@
"#;

const SCRIPT_EPOCH: &str = r#"epoch_step() {
  local i t rc corpus_log=$OUT/corpus.log
  t=$(allow "$END" 240)
  CORPUS=$(timeout -k 10 "$t" "$BIN/mix-bench" corpus "$WORK/data" --per-breed "$PER_BREED" --seed "$SEED" 2> "$corpus_log" | tail -1)
  trim "$corpus_log"
  if [ -z "$CORPUS" ] || [ ! -d "$CORPUS" ]; then
    note "FAIL: no corpus (see corpus.log): the epoch runs were not started"
    FAILED=1
    return
  fi
  note "corpus: $CORPUS ($(ls "$CORPUS" | wc -l) images)"
  : > "$OUT/ceiling.jsonl"
  for i in $(seq 0 $((RUNS - 1))); do
    t=$(allow "$END" 150)
    if [ "$t" -lt 20 ]; then note "mix-train run $i: NOT RUN (the $BUDGET s budget is spent)"; FAILED=1; continue; fi
    rm -rf "$WORK/ours-$i"
    timeout -k 10 "$t" "$BIN/mix-train" @OURS_ARGS@ > "$OUT/mix-train-$i.log" 2>&1
    rc=$?
    trim "$OUT/mix-train-$i.log"
    local timings
    timings=$(find "$WORK/ours-$i" -name @TIMINGS@ 2> /dev/null | head -1)
    if [ "$rc" -eq 0 ] && [ -n "$timings" ]; then
      cp "$timings" "$OUT/ours-$i-@TIMINGS@"
      note "mix-train run $i: PASS, $OUT/ours-$i-@TIMINGS@"
    else
      note "mix-train run $i: FAIL (rc=$rc; see mix-train-$i.log)"; FAILED=1
    fi
    t=$(allow "$END" 120)
    if [ "$t" -lt 20 ]; then note "ceiling run $i: NOT RUN (the $BUDGET s budget is spent)"; FAILED=1; continue; fi
    OMP_WAIT_POLICY=PASSIVE timeout -k 10 "$t" "$BIN/epoch_ceiling" @CEILING_ARGS@ > "$OUT/ceiling-$i.log" 2>&1
    rc=$?
    trim "$OUT/ceiling-$i.log"
    if [ "$rc" -eq 0 ] && grep '^{' "$OUT/ceiling-$i.log" | tail -1 >> "$OUT/ceiling.jsonl"; then
      note "ceiling run $i: PASS, $(grep '^{' "$OUT/ceiling-$i.log" | tail -1)"
    else
      note "ceiling run $i: FAIL (rc=$rc; see ceiling-$i.log)"; FAILED=1
    fi
  done
  if [ -n "$PY_PATH" ] && "$PY_PATH" -c 'import fastai' 2> /dev/null; then
    i=0
    t=$(allow "$END" 200)
    if [ "$t" -lt 30 ]; then note "peer @PEER@: NOT RUN (the $BUDGET s budget is spent)"; return; fi
    timeout -k 10 "$t" "$PY_PATH" benches/peers/@PEER@.py @PEER_ARGS@ > "$OUT/@PEER@-0.json" 2> "$OUT/@PEER@-0.log"
    rc=$?
    trim "$OUT/@PEER@-0.log"
    if [ "$rc" -eq 0 ]; then note "peer @PEER@: PASS, $(grep '^{' "$OUT/@PEER@-0.json" | tail -1)"
    else note "peer @PEER@: FAIL (rc=$rc; see @PEER@-0.log)"; FAILED=1
    fi
  else
    note "fastai not installed on the device: peer not run"
  fi
}
"#;

const SCRIPT_TAIL: &str = r#"
note "== done in ${SECONDS}s: $([ "$FAILED" -eq 0 ] && echo 'everything passed' || echo 'something failed or did not run (see above)')"
exit "$FAILED"
"#;

/// Runs `cargo xtask gpu-pack`.
pub fn gpu_pack() -> Result<()> {
    let root = crate::project_root();
    let torch = libtorch::setup()?;
    let built = build_json(cargo(Some(&torch)).args([
        "test",
        "-p",
        "mix-tch",
        "-p",
        "mix-train",
        "-p",
        "mix-dist",
        "--no-run",
    ]))?;
    let tests = test_binaries(&built);
    if tests.is_empty() {
        bail!("expected cargo to report the test binaries of mix-tch, mix-train and mix-dist, found none");
    }
    let mix_train = one(
        &build_json(cargo(Some(&torch)).args(["build", "-p", "mix-train", "--bin", "mix-train"]))?,
        "bin",
        "mix-train",
    )?;
    let ceiling = one(
        &build_json(cargo(Some(&torch)).args([
            "build",
            "-p",
            "mix-tch",
            "--example",
            "epoch_ceiling",
        ]))?,
        "example",
        "epoch_ceiling",
    )?;
    // The mix-train tests run the binary of their own build (CARGO_BIN_EXE_mix-train).
    let tests_mix_train = one(&built, "bin", "mix-train").unwrap_or_else(|_| mix_train.clone());
    // The corpus of the epoch step is made on the device by mix-bench, the bench's own binary.
    let mix_bench = one(
        &build_json(cargo(None).args(["build", "-p", "mix-benches", "--bin", "mix-bench"]))?,
        "bin",
        "mix-bench",
    )?;

    let pack = root.join(PACK_DIR);
    let tmp = root.join(format!("{PACK_DIR}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let mut raw = 0u64;
    let mut copy = |from: &Path, name: &str| -> Result<()> {
        let to = bin.join(name);
        process::run(Command::new("strip").arg("-o").arg(&to).arg(from))
            .context("`strip` failed: install binutils (Debian: apt-get install binutils)")?;
        raw += std::fs::metadata(&to)?.len();
        Ok(())
    };
    for t in &tests {
        copy(&t.executable, &t.pack_name())?;
    }
    copy(&mix_train, "mix-train")?;
    copy(&ceiling, "epoch_ceiling")?;
    copy(&mix_bench, "mix-bench")?;

    // One solid archive with a dictionary larger than a binary, so that the code they share is
    // stored once; single-threaded so as not to take every core of a shared machine.
    process::run(
        Command::new("tar")
            .arg("-cf")
            .arg(tmp.join("bin.tar"))
            .arg("-C")
            .arg(&tmp)
            .arg("bin"),
    )?;
    process::run(
        Command::new("xz")
            .args(["-9", "-T1", "-f"])
            .arg(tmp.join("bin.tar")),
    )
    .context("`xz` failed: install xz-utils (Debian: apt-get install xz-utils)")?;
    std::fs::remove_dir_all(&bin).with_context(|| format!("cannot remove {}", bin.display()))?;

    let rel = |p: &Path| -> Result<String> {
        Ok(p.strip_prefix(&root)
            .with_context(|| {
                format!(
                    "expected {} inside the workspace {}",
                    p.display(),
                    root.display()
                )
            })?
            .to_string_lossy()
            .into_owned())
    };
    let mut names = Vec::new();
    for t in &tests {
        names.push((t.pack_name(), rel(&t.crate_dir)?));
    }
    // Links first: they say at once whether the binaries see CUDA.
    names.sort_by_key(|(name, _)| (!name.ends_with("-link"), name.clone()));
    let plan = Plan {
        tests: names,
        build_root: root.to_string_lossy().into_owned(),
        mix_train_rel: rel(&tests_mix_train).ok(),
        recipe: &epoch::CUDA,
    };
    let script_path = tmp.join(SCRIPT);
    std::fs::write(&script_path, script(&plan))
        .with_context(|| format!("cannot write {}", script_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))?;
    }

    let size = folder_bytes(&tmp)?;
    if size > MAX_BYTES {
        bail!(
            "the GPU pack in {} is {:.1} MiB, over the {} MiB limit (the device tool carries 64 MiB \
             in all): leave fewer binaries in it or build them smaller",
            tmp.display(),
            mib(size),
            MAX_BYTES >> 20
        );
    }
    if pack.exists() {
        std::fs::remove_dir_all(&pack)
            .with_context(|| format!("cannot remove {}", pack.display()))?;
    }
    std::fs::rename(&tmp, &pack)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), pack.display()))?;

    println!(
        "GPU pack: {} ({:.1} MiB; {} binaries, {:.1} MiB stripped, in {ARCHIVE}; {SCRIPT})",
        pack.display(),
        mib(size),
        plan.tests.len() + 3,
        mib(raw)
    );
    if size > WANT_BYTES {
        println!(
            "warning: over the {} MiB aimed for; the device tool carries 64 MiB in all",
            WANT_BYTES >> 20
        );
    }
    println!("test binaries: {}", {
        let n: Vec<&str> = plan.tests.iter().map(|(n, _)| n.as_str()).collect();
        n.join(" ")
    });
    println!(
        "\non a GPU machine, from the repository root (no Rust needed; python3 with torch 2.11.0):\n  \
         run(command=\"bash {PACK_DIR}/{SCRIPT}\", carry=[\"{PACK_DIR}\"], timeout_s=600)\n\
         results come back under $OUT (./gpu-out without it): summary.txt (pass/fail per test \
         binary, the epoch runs), tests/<binary>.log, ours-<i>-{}, ceiling.jsonl, the logs.\n\
         the script stops starting work after {BUDGET_S} s (tests get {TEST_BUDGET_S} s); \
         GPU_PACK_STEPS=tests or =epoch runs one part, GPU_PACK_TESTS=REGEX some binaries.",
        epoch::TIMINGS_FILE
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Bytes of the files under `dir`.
fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/mix-tch#0.1.0","manifest_path":"/w/crates/mix-tch/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"mix_tch","src_path":"/w/crates/mix-tch/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"2","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/w/target/debug/deps/libmix_tch-1.rlib"],"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/mix-tch#0.1.0","manifest_path":"/w/crates/mix-tch/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"throughput","src_path":"/w/crates/mix-tch/tests/throughput.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"2","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/throughput-2"],"executable":"/w/target/debug/deps/throughput-2","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/mix-train#0.1.0","manifest_path":"/w/crates/mix-train/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"mix-train","src_path":"/w/crates/mix-train/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/w/target/debug/mix-train"],"executable":"/w/target/debug/mix-train","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/mix-train#0.1.0","manifest_path":"/w/crates/mix-train/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"mix-train","src_path":"/w/crates/mix-train/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/mix_train-3"],"executable":"/w/target/debug/deps/mix_train-3","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/mix-train#0.1.0","manifest_path":"/w/crates/mix-train/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"link","src_path":"/w/crates/mix-train/tests/link.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/link-4"],"executable":"/w/target/debug/deps/link-4","fresh":true}
{"reason":"build-finished","success":true}
"#;

    #[test]
    fn package_ids_of_every_cargo_format_name_the_package() {
        let name = |id| package_name(id).unwrap();
        assert_eq!(name("path+file:///w/crates/mix-tch#0.1.0"), "mix-tch");
        assert_eq!(
            name("path+file:///w/crates/tch-glue#mix-tch@0.1.0"),
            "mix-tch"
        );
        assert_eq!(
            name("registry+https://github.com/rust-lang/crates.io-index#serde@1.0.1"),
            "serde"
        );
        assert_eq!(
            name("mix-tch 0.1.0 (path+file:///w/crates/mix-tch)"),
            "mix-tch"
        );
    }

    #[test]
    fn test_executables_are_found_with_their_crate_target_and_folder() {
        let found = artifacts(JSON).unwrap();
        // The library has no executable; the bin is built twice, once as unit tests.
        assert_eq!(found.len(), 4);
        let tests = test_binaries(&found);
        let names: Vec<String> = tests.iter().map(Artifact::pack_name).collect();
        assert_eq!(
            names,
            [
                "mix-tch-throughput",
                "mix-train-link",
                "mix-train-mix-train"
            ]
        );
        assert_eq!(tests[0].crate_dir, Path::new("/w/crates/mix-tch"));
        assert_eq!(
            tests[0].executable,
            Path::new("/w/target/debug/deps/throughput-2")
        );
        assert_eq!(
            one(&found, "bin", "mix-train").unwrap(),
            Path::new("/w/target/debug/mix-train")
        );
        let err = one(&found, "example", "epoch_ceiling").unwrap_err();
        assert!(err.to_string().contains("epoch_ceiling"), "{err}");
        let err = artifacts("{\"reason\": 3}\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("one cargo JSON message"),
            "{err:#}"
        );
    }

    #[test]
    fn the_script_names_every_binary_and_passes_the_cuda_recipe() {
        let plan = Plan {
            tests: vec![
                ("mix-tch-link".into(), "crates/mix-tch".into()),
                ("mix-train-train".into(), "crates/mix-train".into()),
            ],
            build_root: "/w".into(),
            mix_train_rel: Some("target/debug/mix-train".into()),
            recipe: &epoch::CUDA,
        };
        let text = script(&plan);
        assert!(text.starts_with("#!/usr/bin/env bash\n"), "{text}");
        assert!(text.contains("\nset -u\n"));
        assert!(
            text.contains("run_test mix-tch-link crates/mix-tch\n"),
            "{text}"
        );
        assert!(text.contains("run_test mix-train-train crates/mix-train\n"));
        assert!(text.contains("--test-threads 1"));
        assert!(text.contains("\"$BIN/epoch_ceiling\" --images \"$CORPUS\" --item 256 --size 224 --bs 64 --alpha 1 --device cuda "));
        // mix-train's arguments are the bench's, word for word, with the script's paths.
        let ours = words(
            &epoch::CUDA.ours_args(Path::new("C"), Path::new("O")),
            &[
                (Path::new("C"), "$CORPUS"),
                (Path::new("O"), "$WORK/ours-$i"),
            ],
        );
        assert_eq!(
            ours,
            "--dataset \"$CORPUS\" --epochs 1 --bs 64 --resize 256 --size 224 --lr 1e-3 --mix mixup \
             --alpha 1 --pretrained none --seed 0 --device cuda --out \"$WORK/ours-$i\""
        );
        assert!(
            text.contains(&format!("\"$BIN/mix-train\" {ours} >")),
            "{text}"
        );
        assert!(text.contains("benches/peers/fastai_epoch.py --images \"$CORPUS\" --item 256 --size 224 --bs 64 --alpha 1 --seed 0 --device cuda >"));
        assert!(text.contains("PER_BREED=${GPU_PACK_PER_BREED:-200}"));
        assert!(text.contains("BUILD_ROOT=/w\n"));
        assert!(text.contains("fastai not installed on the device: peer not run"));
        assert!(text.contains("cp \"$BIN/mix-train\" target/debug/mix-train"));
        for placeholder in [
            "@OURS_ARGS@",
            "@CEILING_ARGS@",
            "@PEER_ARGS@",
            "@EPOCH_FN@",
            "@TIMINGS@",
            "@PEER@",
        ] {
            assert!(
                !text.contains(placeholder),
                "{placeholder} left in the script"
            );
        }
        // Every command has a time limit.
        for line in text
            .lines()
            .filter(|l| l.contains("\"$BIN/") && !l.contains("cp "))
        {
            assert!(line.contains("timeout -k 10"), "no timeout: {line}");
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_they_need_it() {
        assert_eq!(shell_quote("crates/mix-tch"), "crates/mix-tch");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
