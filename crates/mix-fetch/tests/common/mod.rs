//! Test helpers: the loopback HTTP server and archive builders (from mix-test-support), a
//! ResNet18-shaped safetensors file, directory snapshots, and proptest strategies.
// Each test binary uses a different part of this module, re-exports included.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use mix_fetch::{FetchConfig, Retries, Timeouts};
use proptest::prelude::*;

// -------------------------------------------------------------------------------------------------
// Archives

pub use mix_test_support::archive::{dir, file, gzip, hardlink, symlink, tar_bytes, tgz, Item};

/// Deterministic incompressible bytes (xorshift64*), so that archives have the size of their
/// contents.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// An archive shaped like Oxford-IIIT Pet: one top folder holding `images/` and `annotations/`. The
/// file contents are noise: mix-fetch never looks inside files.
pub fn pets_like() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut files = Vec::new();
    for (i, name) in [
        "Abyssinian_1.jpg",
        "great_pyrenees_173.jpg",
        "yorkshire_terrier_9.jpg",
    ]
    .iter()
    .enumerate()
    {
        files.push((
            format!("images/{name}"),
            noise(60_000 + 1000 * i, i as u64 + 1),
        ));
    }
    files.push((
        "annotations/list.txt".to_string(),
        b"Abyssinian_1 1 1 1\n".to_vec(),
    ));
    let mut items = vec![
        dir("oxford-iiit-pet/"),
        dir("oxford-iiit-pet/images/"),
        dir("oxford-iiit-pet/annotations/"),
    ];
    items.extend(
        files
            .iter()
            .map(|(n, d)| file(&format!("oxford-iiit-pet/{n}"), d)),
    );
    (tgz(&items), files)
}

/// Asserts that `root` holds exactly `files` (relative path, contents) and nothing else but
/// folders.
pub fn assert_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    let snap = snapshot(root);
    let found: BTreeMap<String, Vec<u8>> = snap
        .iter()
        .filter_map(|(p, n)| match n {
            Node::File(d) => Some((p.clone(), d.clone())),
            _ => None,
        })
        .collect();
    let expected: BTreeMap<String, Vec<u8>> = files.iter().cloned().collect();
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        found == expected,
        "file contents differ under {}",
        root.display()
    );
}

// -------------------------------------------------------------------------------------------------
// Model weights

/// The parameter and buffer names of torchvision's ResNet18 state dict with their shapes, in
/// torchvision's order (without the `num_batches_tracked` counters, which timm's
/// `resnet18.tv_in1k` does not carry).
pub fn resnet18_tensors() -> Vec<(String, Vec<usize>)> {
    fn bn(out: &mut Vec<(String, Vec<usize>)>, prefix: &str, c: usize) {
        for field in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{prefix}.{field}"), vec![c]));
        }
    }
    let mut out = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    bn(&mut out, "bn1", 64);
    let mut inplanes = 64;
    for (layer, planes) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
        for block in 0..2 {
            let p = format!("layer{layer}.{block}");
            let in_c = if block == 0 { inplanes } else { planes };
            out.push((format!("{p}.conv1.weight"), vec![planes, in_c, 3, 3]));
            bn(&mut out, &format!("{p}.bn1"), planes);
            out.push((format!("{p}.conv2.weight"), vec![planes, planes, 3, 3]));
            bn(&mut out, &format!("{p}.bn2"), planes);
            if block == 0 && inplanes != planes {
                out.push((
                    format!("{p}.downsample.0.weight"),
                    vec![planes, inplanes, 1, 1],
                ));
                bn(&mut out, &format!("{p}.downsample.1"), planes);
            }
        }
        inplanes = planes;
    }
    out.push(("fc.weight".to_string(), vec![1000, 512]));
    out.push(("fc.bias".to_string(), vec![1000]));
    out
}

/// A `.safetensors` file with [`resnet18_tensors`]' names and shapes, all f32 (about 47 MB), with
/// small deterministic values (running variances positive). Built once per test binary.
pub fn resnet18_safetensors() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let tensors = resnet18_tensors();
        let data: Vec<Vec<u8>> = tensors
            .iter()
            .enumerate()
            .map(|(t, (name, shape))| {
                let n: usize = shape.iter().product();
                let positive = name.ends_with("running_var");
                (0..n)
                    .flat_map(|i| {
                        let v = ((i * 7 + t) % 251) as f32 * 1e-3;
                        let v = if positive { 1.0 + v } else { v - 0.125 };
                        v.to_le_bytes()
                    })
                    .collect()
            })
            .collect();
        let views = tensors.iter().zip(&data).map(|((name, shape), bytes)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                shape.clone(),
                bytes,
            )
            .unwrap();
            (name.clone(), view)
        });
        safetensors::tensor::serialize(views, &None).unwrap()
    })
}

pub use mix_test_support::sha256_hex;

/// Names directly inside `dir`, sorted (none when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// Lower-case hex MD-5 of `bytes` (fastai's checksums).
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// The last component of `path`: the name a cache path from `dataset_paths` has in its folder.
pub fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `.part` file a download to `archive` writes before it is renamed into place.
pub fn part_of(archive: &Path) -> PathBuf {
    archive.with_file_name(format!("{}.part", base_name(archive)))
}

/// The name of the lock file beside the cached archive `archive`.
pub fn lock_name(archive: &Path) -> String {
    format!("{}.lock", base_name(archive))
}

// -------------------------------------------------------------------------------------------------
// Snapshots

/// What a path is, without following symlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// Every path below `root` (relative, `/`-separated) and what it is; symlinks are recorded, not
/// followed.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(rel, Node::Symlink(fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            out.insert(rel, Node::Dir);
            walk(root, &path, out);
        } else {
            out.insert(rel, Node::File(fs::read(&path).unwrap()));
        }
    }
}

/// A sandbox for extraction tests: `outside/` holds a sentinel file that must never change, `box/`
/// is where the destination goes, the archive sits next to them.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret"), b"keep me").unwrap();
        fs::create_dir(tmp.path().join("box")).unwrap();
        Sandbox { tmp }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn dest(&self) -> PathBuf {
        self.root().join("box/dest")
    }

    pub fn write_archive(&self, bytes: &[u8]) -> PathBuf {
        let p = self.root().join("archive.tgz");
        fs::write(&p, bytes).unwrap();
        p
    }

    /// Everything outside `box/`.
    pub fn outside_box(&self) -> BTreeMap<String, Node> {
        snapshot(self.root())
            .into_iter()
            .filter(|(k, _)| !k.starts_with("box"))
            .collect()
    }

    /// The names directly inside `box/`.
    pub fn box_names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root().join("box"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

// -------------------------------------------------------------------------------------------------
// Loopback HTTP server

pub use mix_test_support::http::{closed_port_url, Reply, Request, Server};

/// A configuration for tests: short timeouts, quick retries, no progress bar, no fastai folder.
pub fn test_config(cache: &Path) -> FetchConfig {
    FetchConfig {
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
        },
        retries: Retries {
            max_attempts: 3,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        ..FetchConfig::in_dir(cache)
    }
}

// -------------------------------------------------------------------------------------------------
// Strategies

/// One path component, biased towards the dangerous ones.
pub fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("a".to_string()),
        4 => Just("b".to_string()),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just("outside".to_string()),
        1 => Just("x y".to_string()),
    ]
}

/// An entry name or link target: 1 to 4 components, sometimes absolute, sometimes with a trailing
/// slash.
pub fn entry_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(component(), 1..5),
        any::<bool>(),
        prop::bool::weighted(0.08),
    )
        .prop_map(|(parts, trailing, absolute)| {
            let mut s = parts.join("/");
            if trailing {
                s.push('/');
            }
            if absolute {
                s.insert(0, '/');
            }
            s
        })
}

/// A link target: short dangerous targets often, random paths otherwise.
pub fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("..".to_string()),
        1 => Just("../..".to_string()),
        1 => Just("../a".to_string()),
        1 => Just("../outside/secret".to_string()),
        1 => Just("a/..".to_string()),
        1 => Just(".".to_string()),
        4 => entry_path(),
    ]
}

/// Where a symlink at `rel` points, resolved by names only (`..` pops a name); `None` when it
/// climbs above the root. Valid as an oracle for links that are not reached through other links,
/// which the extractor guarantees for everything it writes.
pub fn lexical_link_target(rel: &str, target: &str) -> Option<Vec<String>> {
    if target.starts_with('/') {
        return None;
    }
    let mut stack: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    stack.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            name => stack.push(name.to_string()),
        }
    }
    Some(stack)
}

/// One archive entry of any kind with random names.
pub fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (entry_path(), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(n, d)| Item::File(n, d)),
        entry_path().prop_map(Item::Dir),
        (entry_path(), link_target()).prop_map(|(n, t)| Item::Symlink(n, t)),
        (entry_path(), link_target()).prop_map(|(n, t)| Item::HardLink(n, t)),
    ]
}

/// A whole archive's entries.
pub fn items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(item(), 1..7)
}

/// Whether a name is one the extractor must refuse: absolute, or containing a `..` component.
pub fn name_is_unsafe(name: &str) -> bool {
    name.starts_with('/') || name.split('/').any(|c| c == "..")
}
