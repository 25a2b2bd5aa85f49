//! Test helpers: a loopback HTTP server, archive builders that can write unsafe entries, a
//! ResNet18-shaped safetensors file, directory snapshots, and proptest strategies.
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use mix_fetch::{FetchConfig, Retries, Timeouts};
use proptest::prelude::*;
use tar::{EntryType, Header};

// -------------------------------------------------------------------------------------------------
// Archives

/// One entry of a test archive. Names and link targets are written into the header byte for byte,
/// so unsafe names (`../x`, `/x`) reach the extractor unchanged.
#[derive(Clone, Debug)]
pub enum Item {
    /// A regular file.
    File(String, Vec<u8>),
    /// A directory.
    Dir(String),
    /// A symlink and its target.
    Symlink(String, String),
    /// A hard link and the earlier entry it links to.
    HardLink(String, String),
    /// Any other entry type, with no data.
    Other(String, EntryType),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::File(n, _)
            | Item::Dir(n)
            | Item::Symlink(n, _)
            | Item::HardLink(n, _)
            | Item::Other(n, _) => n,
        }
    }
}

pub fn file(name: &str, data: &[u8]) -> Item {
    Item::File(name.into(), data.to_vec())
}

pub fn dir(name: &str) -> Item {
    Item::Dir(name.into())
}

pub fn symlink(name: &str, target: &str) -> Item {
    Item::Symlink(name.into(), target.into())
}

pub fn hardlink(name: &str, target: &str) -> Item {
    Item::HardLink(name.into(), target.into())
}

/// A raw GNU header with `name` copied verbatim (at most 100 bytes).
fn raw_header(name: &str, kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    let bytes = name.as_bytes();
    assert!(bytes.len() <= 100, "test names must fit the header: {name}");
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h
}

/// A tar stream of `items` (uncompressed).
pub fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::File(name, data) => {
                let mut h = raw_header(name, EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
            Item::Dir(name) => {
                let mut h = raw_header(name, EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Item::Symlink(name, target) | Item::HardLink(name, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut h = raw_header(name, kind, 0, 0o777);
                h.set_link_name_literal(target.as_bytes()).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Item::Other(name, kind) => {
                let mut h = raw_header(name, *kind, 0, 0o644);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A gzip-compressed tar of `items`.
pub fn tgz(items: &[Item]) -> Vec<u8> {
    gzip(&tar_bytes(items))
}

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

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
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

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Answer with `status`, `Content-Length: body.len()` and the body; with `cut_after`, send only
    /// that many body bytes and close (a dropped connection); `pause` is slept between 8 KiB
    /// chunks.
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        cut_after: Option<usize>,
        /// After sending `cut_after` bytes, hold the connection open without sending (a stalled
        /// server) instead of closing it.
        stall_after_cut: bool,
        pause: Duration,
    },
    /// Read the request and never answer, holding the connection until the server stops.
    Stall,
    /// Write each piece exactly as given (status line, headers and body are the caller's, so the
    /// headers may lie), sleeping its pause after it, then close; the writing stops when the
    /// client goes away or the server stops.
    Raw(Vec<(Vec<u8>, Duration)>),
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Send {
            status,
            headers: vec![],
            body: b"nothing here".to_vec(),
            cut_after: None,
            stall_after_cut: false,
            pause: Duration::ZERO,
        }
    }

    /// The whole file (200), or from the requested offset (206) when `honor_range` and the request
    /// has `Range: bytes=N-`.
    pub fn file(req: &Request, body: &[u8], honor_range: bool) -> Reply {
        let start = req
            .header("range")
            .filter(|_| honor_range)
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match start {
            Some(s) if s < body.len() => Reply::Send {
                status: 206,
                headers: vec![(
                    "Content-Range".into(),
                    format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
                )],
                body: body[s..].to_vec(),
                cut_after: None,
                stall_after_cut: false,
                pause: Duration::ZERO,
            },
            _ => Reply::Send {
                status: 200,
                headers: vec![],
                body: body.to_vec(),
                cut_after: None,
                stall_after_cut: false,
                pause: Duration::ZERO,
            },
        }
    }

    pub fn cut(mut self, after: usize) -> Reply {
        if let Reply::Send { cut_after, .. } = &mut self {
            *cut_after = Some(after);
        }
        self
    }

    pub fn stall_at(mut self, after: usize) -> Reply {
        if let Reply::Send {
            cut_after,
            stall_after_cut,
            ..
        } = &mut self
        {
            *cut_after = Some(after);
            *stall_after_cut = true;
        }
        self
    }

    pub fn slow(mut self, per_chunk: Duration) -> Reply {
        if let Reply::Send { pause, .. } = &mut self {
            *pause = per_chunk;
        }
        self
    }
}

type Handler = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that answers each request with `handler(index, request)` and
/// records the requests. It stops (and ends every connection) when dropped.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    pub fn start(handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (requests, stop, workers) = (requests.clone(), stop.clone(), workers.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, handler) =
                        (requests.clone(), stop.clone(), handler.clone());
                    let worker = thread::spawn(move || serve(stream, &requests, &stop, &*handler));
                    workers.lock().unwrap().push(worker);
                }
            })
        };
        Server {
            addr,
            requests,
            stop,
            accept: Some(accept),
            workers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for w in self.workers.lock().unwrap().drain(..) {
            let _ = w.join();
        }
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>, stop: &AtomicBool, handler: &Handler) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // the wake-up connection, or a client that went away
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Request { path, headers };
    let index = {
        let mut r = requests.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let hold = || {
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    };
    let mut out = stream;
    match handler(index, &req) {
        Reply::Stall => hold(),
        Reply::Raw(pieces) => {
            for (bytes, pause) in pieces {
                if stop.load(Ordering::SeqCst) || out.write_all(&bytes).is_err() {
                    return;
                }
                let _ = out.flush();
                thread::sleep(pause);
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
        Reply::Send {
            status,
            headers,
            body,
            cut_after,
            stall_after_cut,
            pause,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let end = cut_after.unwrap_or(body.len()).min(body.len());
            for chunk in body[..end].chunks(8192) {
                if stop.load(Ordering::SeqCst) || out.write_all(chunk).is_err() {
                    return;
                }
                let _ = out.flush();
                thread::sleep(pause);
            }
            if cut_after.is_some() && stall_after_cut {
                hold();
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A URL on a loopback port where nothing listens (connection refused).
pub fn closed_port_url(path: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}{path}")
}

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
