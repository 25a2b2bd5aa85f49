//! Faults from outside: mix-train killed with SIGKILL at points spread over a short run leaves a run
//! folder whose every file is whole, and `--resume` finishes the run from the last complete checkpoint;
//! a damaged checkpoint is refused (the only one) or skipped (for an intact older one); hostile
//! `--dataset`, `--resume` and `--out` paths fail naming the option, non-zero, with no run folder.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// Epochs of the run the kills are spread over.
const EPOCHS: usize = 3;

fn spawn(sb: &Sandbox, args: &[String]) -> Child {
    sb.command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mix-train starts")
}

/// Whether `name` is one of the temporary files or folders written before a rename; a kill may leave
/// them behind, and nothing ever reads them.
fn temporary(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp")
}

/// Checkpoint folders (`epoch-NNNN`) that are complete.
fn checkpoints(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("epoch-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether a checkpoint is being written: a temporary folder exists in `checkpoints/`.
fn writing_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
    })
}

/// Whether a file of the run folder itself is being written (a temporary file next to it).
fn writing_a_file(run: &Path) -> bool {
    std::fs::read_dir(run).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| temporary(&e.file_name().to_string_lossy()))
    })
}

/// Polls every millisecond until `ready` holds or `child` exits; panics after 60 s.
fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends SIGKILL and reaps the process.
fn kill(mut child: Child) {
    // Child::kill sends SIGKILL on Unix; a process that already exited is fine too.
    let _ = child.kill();
    child.wait().unwrap();
}

/// Checks that every file of `run` parses completely, and returns the epochs of its newest complete
/// checkpoint.
fn check_whole(run: &Path) -> usize {
    for entry in std::fs::read_dir(run).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if temporary(&name) || path.is_dir() {
            continue;
        }
        check_file(&path);
    }
    let mut done = 0;
    for name in checkpoints(run) {
        let dir = run.join("checkpoints").join(&name);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap())
                .unwrap_or_else(|e| panic!("{}: manifest.json: {e}", dir.display()));
        for file in [
            "model.safetensors",
            "optimizer.safetensors",
            "progress.json",
        ] {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            let want = manifest["files"][file]["sha256"].as_str().unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), want, "{name}/{file}");
            check_file(&dir.join(file));
        }
        let progress: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("progress.json")).unwrap()).unwrap();
        done = progress["epochs_done"].as_u64().unwrap() as usize
            + progress["epoch_offset"].as_u64().unwrap() as usize;
        assert_eq!(name, format!("epoch-{done:04}"));
    }
    done
}

/// Parses one file of a run folder by its kind, panicking on a partial one.
fn check_file(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let what = path.display();
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => {
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.ends_with('\n'),
                "{what}: the last line is cut: {text:?}"
            );
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            assert!(
                header.len() >= 5 && header[0] == "epoch" || header[0] == "step",
                "{what}"
            );
            for line in lines {
                let cells: Vec<&str> = line.split(',').collect();
                assert_eq!(cells.len(), header.len(), "{what}: {line:?}");
                assert!(cells[0].parse::<usize>().is_ok(), "{what}: {line:?}");
            }
        }
        Some("json") => {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        Some("jsonl") => {
            // The event log is appended and flushed, not replaced: a kill may cut its last line only.
            let text = String::from_utf8(bytes).unwrap();
            for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{what}: {e}: {line:?}"));
            }
        }
        Some("png") => {
            image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        Some("safetensors") => {
            safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        _ => panic!("{what}: a file of a kind the run folder does not hold"),
    }
}

#[test]
fn killed_runs_leave_whole_files_and_resume_to_the_last_epoch() {
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    let mut args = run_args(&images, EPOCHS);
    args.extend(["--out".to_string(), sb.runs().to_str().unwrap().to_string()]);

    // Kill 1: while the second epoch's checkpoint is being written (or, if that is missed, as soon as
    // it exists).
    let mut child = spawn(&sb, &args);
    assert!(
        wait_for(&mut child, "the run folder", || sb.run_dirs().len() == 1),
        "the run ended before making its folder"
    );
    let run = sb.run_dirs().pop().unwrap();
    let run_arg = run.to_str().unwrap().to_string();
    wait_for(&mut child, "the first checkpoint", || {
        checkpoints(&run).contains(&"epoch-0001".to_string())
    });
    wait_for(&mut child, "the second checkpoint", || {
        writing_checkpoint(&run) || checkpoints(&run).contains(&"epoch-0002".to_string())
    });
    let during = writing_checkpoint(&run);
    kill(child);
    println!("kill 1: while a checkpoint was being written: {during}");
    let mut done = check_whole(&run);
    assert!((1..=2).contains(&done), "{done}");

    // Kill 2: while metrics.csv, steps.csv, curves.png or timings.json is being written (or, if that
    // is missed, when the next checkpoint exists).
    let resume = vec!["--resume".to_string(), run_arg.clone()];
    if done < EPOCHS {
        let mut child = spawn(&sb, &resume);
        let next = format!("epoch-{:04}", done + 1);
        wait_for(&mut child, "a file write", || {
            writing_a_file(&run) || checkpoints(&run).contains(&next)
        });
        let during = writing_a_file(&run);
        kill(child);
        println!("kill 2: while a file of the run folder was being written: {during}");
        let now = check_whole(&run);
        assert!(now >= done, "a kill lost a checkpoint: {done} -> {now}");
        done = now;
    }

    // Kill 3: during a training step, half way through the training part of an epoch (timed from
    // the previous epoch's timings.json) after a resume has written its first checkpoint.
    if done < EPOCHS {
        let mut child = spawn(&sb, &resume);
        if done + 1 < EPOCHS {
            let next = format!("epoch-{:04}", done + 1);
            assert!(
                wait_for(&mut child, "the next checkpoint", || checkpoints(&run)
                    .contains(&next)),
                "the resume ended early"
            );
            let timings: serde_json::Value =
                serde_json::from_slice(&std::fs::read(run.join("timings.json")).unwrap()).unwrap();
            let train_s = timings.as_array().unwrap().last().unwrap()["train_s"]
                .as_f64()
                .unwrap();
            std::thread::sleep(Duration::from_secs_f64(train_s / 2.0));
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the resume ended early"
        );
        kill(child);
        let now = check_whole(&run);
        assert!(now >= done, "a kill lost a checkpoint: {done} -> {now}");
        println!("kill 3: during a step, with {now} epochs checkpointed");
        done = now;
    }

    // Finally the run is resumed to its end.
    if done < EPOCHS {
        sb.run(&["--resume", &run_arg]).assert_ok();
    }
    assert_eq!(check_whole(&run), EPOCHS);
    let (_, rows) = csv(&run.join("metrics.csv"));
    let epochs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(epochs, ["0", "1", "2"]);
    let (_, steps) = csv(&run.join("steps.csv"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    // Batches of 4, the last partial one dropped.
    let per_epoch = config["n_train"].as_u64().unwrap() as usize / 4;
    assert!(per_epoch >= 4, "{config}");
    assert_eq!(steps.len(), per_epoch * EPOCHS);
    for (i, row) in steps.iter().enumerate() {
        assert_eq!(row[0], i.to_string(), "steps are numbered on without a gap");
    }
    assert!(run.join("model.safetensors").is_file());
    assert_eq!(checkpoints(&run), ["epoch-0003"]);
    sb.run(&["--resume", &run_arg])
        .assert_fails_with("all 3 epochs are done already");
}

/// Copies the files of checkpoint folder `from` into a new folder `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Flips one bit in the middle of `path`, keeping its length.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_refused_or_skipped_for_an_intact_older_one() {
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    let mut args = run_args(&images, EPOCHS);
    args.extend(["--stop-after".to_string(), "1".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.run(&refs).assert_ok();
    let run = sb.run_dirs().pop().unwrap();
    let run_arg = run.to_str().unwrap();
    let first = run.join("checkpoints/epoch-0001");
    let backup = sb.path().join("backup-epoch-0001");
    copy_folder(&first, &backup);

    // The only checkpoint, damaged: refused, naming the file, and never to be deleted.
    let model = first.join("model.safetensors");
    flip_a_bit(&model);
    let out = sb.run(&["--resume", run_arg]);
    out.assert_fails_with(&format!("{}", model.display()));
    out.assert_fails_with("only checkpoint, so keep it");
    assert!(!out.stderr.contains("delete"), "{}", out.stderr);

    // Restored from the backup as the message advises, it resumes; the next checkpoint replaces it.
    std::fs::remove_dir_all(&first).unwrap();
    copy_folder(&backup, &first);
    sb.run(&["--resume", run_arg, "--stop-after", "2"])
        .assert_ok();
    assert_eq!(checkpoints(&run), ["epoch-0002"]);

    // A damaged newest checkpoint with an intact older one (as a kill between the rename and the
    // removal of the older one leaves): the resume says so and continues from the older one.
    copy_folder(&backup, &first);
    flip_a_bit(&run.join("checkpoints/epoch-0002/optimizer.safetensors"));
    let out = sb.run(&["--resume", run_arg]);
    out.assert_ok();
    assert!(
        out.stderr
            .contains("warning: skipping a damaged checkpoint")
            && out.stderr.contains("optimizer.safetensors")
            && out
                .stderr
                .contains(&format!("resuming from {}", first.display())),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("after epoch 1 of 3"), "{}", out.stdout);
    let (_, rows) = csv(&run.join("metrics.csv"));
    let epochs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(epochs, ["0", "1", "2"]);
    assert_eq!(check_whole(&run), EPOCHS);
    assert_eq!(checkpoints(&run), ["epoch-0003"]);
}

/// Runs mix-train with `args` and checks that it fails naming `option`, with `needle`, without
/// leaving a run folder.
fn refused(sb: &Sandbox, args: &[&str], option: &str, needle: &str) -> String {
    let out = sb.run_with(sb.command(), args);
    out.assert_fails_with(needle);
    let err = out.stderr.trim();
    assert!(
        err.starts_with(&format!("error: {option}")),
        "{args:?}: {err}"
    );
    err.to_string()
}

#[test]
fn missing_and_unwritable_paths_fail_naming_the_option() {
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    let images = images.to_str().unwrap();
    let runs = sb.runs();
    let tiny = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--device",
            "cpu",
            "--bs",
            "4",
            "--resize",
            "20",
            "--size",
            "16",
            "--pretrained",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let missing = sb.path().join("no-such-folder");
    let missing = missing.to_str().unwrap();
    let a = tiny(&["--dataset", missing, "--out", runs.to_str().unwrap()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = sb.run_with(sb.command(), &a);
    out.assert_fails_with(missing);
    assert!(out.stderr.contains("--dataset"), "{}", out.stderr);

    let err = refused(&sb, &["--resume", missing], "--resume", "config.json");
    assert!(err.contains("expected a run folder"), "{err}");

    // --out below a file, --out that is a file: the path is named once.
    let file = sb.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for (out_dir, needle) in [
        (file.join("runs"), "is a file, not a folder"),
        (file.clone(), "it is a file, not a folder"),
    ] {
        let out_arg = out_dir.to_str().unwrap();
        let a = tiny(&["--dataset", images, "--out", out_arg]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let err = refused(&sb, &a, "--out", needle);
        assert_eq!(err.matches(out_arg).count(), 1, "{err}");
    }
    // Folders no one can create anything in, root included: /proc refuses new entries.
    for (out_arg, needle) in [
        ("/proc", "cannot create a folder in it"),
        (
            "/proc/mix-runs/a",
            "cannot create a folder in /proc, its nearest existing folder",
        ),
    ] {
        let a = tiny(&["--dataset", images, "--out", out_arg]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let err = refused(&sb, &a, "--out", needle);
        assert_eq!(err.matches(out_arg).count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(
        sb.run_dirs().is_empty(),
        "no run folder: {:?}",
        sb.run_dirs()
    );
}
