//! Checkpoints under faults: damaged files are refused with the file named, older checkpoints without
//! checksums still load, resuming falls back past a damaged checkpoint, and a disk that fills during a
//! save leaves the previous checkpoint intact.

use mix_tch::checkpoint::{self, Progress, MANIFEST_FILE, MODEL_FILE, OPTIMIZER_FILE};
use mix_tch::optim::AdamConfig;
use mix_tch::recorder::SmoothLoss;
use mix_tch::tch::{Kind, Tensor};
use mix_tch::OneCycle;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Set in the child process of the disk-full test: the checkpoint root it saves into.
const CHILD_ENV: &str = "MIX_TCH_CHECKPOINT_FAULTS_CHILD";
/// The child prints the save's error after this marker.
const MARKER: &str = "save failed: ";

fn progress(epochs_done: usize) -> Progress {
    Progress {
        format: checkpoint::FORMAT,
        epochs_done,
        n_epoch: 3,
        epoch_offset: 0,
        train_iter: epochs_done * 4,
        sched: OneCycle::default(),
        adam: AdamConfig::default(),
        opt_steps: HashMap::from([("w".to_owned(), epochs_done as u64 * 4)]),
        seed: 7,
        n_classes: 2,
        frozen: false,
        smooth: SmoothLoss::default(),
        scaler: None,
        steps: Vec::new(),
        epochs: Vec::new(),
    }
}

/// Named tensors, as a model's variables or an optimizer's state.
type Named = Vec<(String, Tensor)>;

/// A model of `n` floats, all equal to `value`, and its optimizer state.
fn tensors(n: i64, value: f64) -> (Named, Named) {
    let w = Tensor::full([n], value, (Kind::Float, mix_tch::tch::Device::Cpu));
    (
        vec![("w".to_owned(), w.shallow_clone())],
        vec![
            ("w.grad_avg".to_owned(), w.zeros_like()),
            ("w.sqr_avg".to_owned(), w.ones_like()),
        ],
    )
}

fn save(root: &Path, epochs_done: usize, n: i64) -> PathBuf {
    let (model, opt) = tensors(n, epochs_done as f64);
    checkpoint::save(root, &model, &opt, &progress(epochs_done)).unwrap()
}

/// Flips one byte in the middle of `path`, keeping its length.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn every_file_is_listed_with_its_checksum_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let ckpt = save(&root, 1, 16);
    let manifest: checkpoint::Manifest =
        serde_json::from_slice(&std::fs::read(ckpt.join(MANIFEST_FILE)).unwrap()).unwrap();
    let names: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "model.safetensors",
            "optimizer.safetensors",
            "progress.json"
        ]
    );
    for (name, sum) in &manifest.files {
        assert_eq!(checkpoint::file_sum(&ckpt.join(name)).unwrap(), *sum);
    }
    assert!(checkpoint::verify(&ckpt).unwrap());
    let loaded = checkpoint::load(&ckpt).unwrap();
    assert_eq!(loaded.progress, progress(1));
    assert_eq!(loaded.model["w"].double_value(&[3]), 1.0);
    // Nothing but the checkpoint folder is left in the root.
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["epoch-0001"]);
}

#[test]
fn a_damaged_only_checkpoint_is_refused_naming_the_file_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let ckpt = save(&root, 1, 64);
    flip_a_byte(&ckpt.join(MODEL_FILE));
    let err = checkpoint::load(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains(&ckpt.join(MODEL_FILE).display().to_string()),
        "{err}"
    );
    assert!(err.contains("SHA-256"), "{err}");
    assert!(err.contains("only checkpoint, so keep it"), "{err}");
    assert!(!err.contains("delete") && !err.contains("remove"), "{err}");
    let err = checkpoint::latest(&root).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn resuming_falls_back_to_the_newest_intact_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let first = save(&root, 1, 32);
    let kept = dir.path().join("kept");
    std::fs::rename(&first, &kept).unwrap();
    let second = save(&root, 2, 32);
    // Put the first one back, as a save killed before it removed the older checkpoint leaves it.
    std::fs::rename(&kept, &first).unwrap();
    assert_eq!(checkpoint::latest(&root).unwrap(), Some(second.clone()));
    flip_a_byte(&second.join(OPTIMIZER_FILE));
    let choice = checkpoint::newest_valid(&root).unwrap().unwrap();
    assert_eq!(choice.dir, first);
    assert_eq!(choice.skipped.len(), 1);
    let why = choice.skipped[0].to_string();
    assert!(why.contains("optimizer.safetensors"), "{why}");
    assert!(
        why.contains(&format!("remove the folder {}", second.display())),
        "{why}"
    );
    assert_eq!(checkpoint::latest(&root).unwrap(), Some(first.clone()));
    assert_eq!(checkpoint::load(&first).unwrap().progress.epochs_done, 1);
    // A damaged manifest is refused too, and with every checkpoint damaged nothing is chosen.
    std::fs::write(first.join(MANIFEST_FILE), b"{\"format\": 1, \"fil").unwrap();
    let err = checkpoint::latest(&root).unwrap_err().to_string();
    assert!(err.contains("2 damaged ones"), "{err}");
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn checkpoints_written_before_checksums_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let ckpt = save(&root, 2, 8);
    // The earlier layout: the same three files and no manifest.
    std::fs::remove_file(ckpt.join(MANIFEST_FILE)).unwrap();
    assert!(!checkpoint::verify(&ckpt).unwrap());
    assert_eq!(checkpoint::latest(&root).unwrap(), Some(ckpt.clone()));
    let loaded = checkpoint::load(&ckpt).unwrap();
    assert_eq!(loaded.progress, progress(2));
    assert_eq!(loaded.optimizer.len(), 2);
    // Unreadable safetensors in such a checkpoint are still named, without advice to delete it.
    std::fs::write(ckpt.join(MODEL_FILE), b"not safetensors").unwrap();
    let err = checkpoint::load(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("keep it"),
        "{err}"
    );
    // A later save replaces it and removes nothing else.
    let next = save(&root, 3, 8);
    assert_eq!(checkpoint::list(&root).unwrap(), vec![next.clone()]);
    assert!(checkpoint::verify(&next).unwrap());
}

#[test]
fn a_save_killed_half_way_leaves_nothing_that_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let ckpt = save(&root, 1, 8);
    // What a SIGKILL during a save leaves: a temporary folder with part of a file.
    let tmp = root.join(".tmp-killed");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join(MODEL_FILE), b"{\"w\":").unwrap();
    assert_eq!(checkpoint::list(&root).unwrap(), vec![ckpt.clone()]);
    assert_eq!(checkpoint::latest(&root).unwrap(), Some(ckpt));
    // The next save clears it.
    let next = save(&root, 2, 8);
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![next]);
}

/// The child's half of [`a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint`]: with files
/// limited to 64 KiB, saving a 1 MiB model must fail.
// Lowering a resource limit has no safe wrapper in the workspace's dependencies; the two calls below are
// the only unsafe code of this test.
#[allow(unsafe_code)]
fn fill_the_disk(root: &Path) {
    // SAFETY: setrlimit and signal are called with valid arguments before any other thread of this
    // test touches files; ignoring SIGXFSZ makes an oversized write return EFBIG instead of killing us.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        let limit = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: 64 * 1024,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let (model, opt) = tensors(256 * 1024, 2.0);
    let err = checkpoint::save(root, &model, &opt, &progress(2)).unwrap_err();
    println!("\n{MARKER}{err}");
}

#[test]
fn a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint() {
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        fill_the_disk(Path::new(&root));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let first = save(&root, 1, 16);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .unwrap_or_else(|| panic!("the save did not fail: {stdout}"));
    assert!(err.contains("epoch-0002"), "{err}");
    assert!(
        err.contains(&format!(
            "the previous checkpoint {} is intact",
            first.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("File too large") || err.contains("too large"),
        "{err}"
    );
    // The previous checkpoint is whole and still the newest; no partial folder is left.
    assert_eq!(checkpoint::list(&root).unwrap(), vec![first.clone()]);
    assert!(checkpoint::verify(&first).unwrap());
    assert_eq!(checkpoint::load(&first).unwrap().progress, progress(1));
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![first]);
}
