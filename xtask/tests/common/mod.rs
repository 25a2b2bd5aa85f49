//! Running the xtask binary as a user does, in a sandbox with its own cache, and a one-file
//! loopback HTTP server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The classes of the bundled sample dataset.
pub const SAMPLE_CLASSES: [&str; 6] = ["astronaut", "cat", "coffee", "galaxy", "retina", "rocket"];

/// The bundled sample images.
pub fn sample_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/images")
}

/// A temporary folder with a private data cache and no fastai cache.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What one run of xtask did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `xtask` in the sandbox folder, with the sandbox's cache, one download attempt and no proxy.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.current_dir(self.path())
            .env("MIX_DATA_HOME", self.cache())
            .env("FASTAI_HOME", self.path().join("no-fastai"))
            .env("MIX_FETCH_ATTEMPTS", "1");
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            cmd.env_remove(var).env_remove(var.to_lowercase());
        }
        cmd
    }

    pub fn run_with(&self, mut cmd: Command, args: &[&str]) -> Run {
        let out = cmd.args(args).output().expect("xtask starts");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(), args)
    }
}

impl Run {
    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.ok,
            "xtask failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn assert_fails_with(&self, needle: &str) -> &Run {
        assert!(
            !self.ok,
            "xtask should have failed\nstdout:\n{}",
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "expected `{needle}` in the error output, found:\n{}",
            self.stderr
        );
        self
    }
}

/// A port on 127.0.0.1 that nobody listens on (bound, noted, freed).
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `body` with status 200 to every GET on 127.0.0.1 until the test ends; counts requests.
pub struct FileServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
}

impl FileServer {
    pub fn start(body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // The request line and headers, up to the blank line.
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        FileServer { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// A `.tgz` holding `top/<name>` for each `(name, bytes)`.
pub fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("top/{name}"), *bytes)
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The nine captions `preview` prints, as `(own, own %, partner, partner %)`.
pub fn captions(stdout: &str) -> Vec<(String, u32, String, u32)> {
    stdout
        .lines()
        .filter_map(|l| l.trim().split_once(": ").map(|(_, c)| c.to_string()))
        .filter(|c| c.contains("% / "))
        .map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            assert_eq!(words.len(), 5, "caption `{c}`");
            let pct = |w: &str| w.trim_end_matches('%').parse::<u32>().unwrap();
            (
                words[0].to_string(),
                pct(words[1]),
                words[3].to_string(),
                pct(words[4]),
            )
        })
        .collect()
}
