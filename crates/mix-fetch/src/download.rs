//! Resumable HTTP download of one file (an archive or model weights): stream to `<name>.part`,
//! retry transient failures with a `Range` request, verify size and checksum, then rename into
//! place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::thread;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use crate::config::FetchConfig;
use crate::error::{io_err, Error, Result};
use crate::source::{Checksum, RemoteArchive};
use crate::verify::{self, Mismatch};

/// What a download is for; it decides which errors say what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A dataset archive for [`crate::untar_data`]: [`Error::Unreachable`], [`Error::HttpStatus`].
    Archive,
    /// A single file for [`crate::fetch_file`]: [`Error::FileUnreachable`],
    /// [`Error::FileHttpStatus`].
    File,
}

/// One download: where from, where to, and what the result must match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job<'a> {
    /// The http(s) URL.
    pub url: &'a str,
    /// The final path; the bytes go to its [`part_path`] until verified.
    pub dest: &'a Path,
    /// The exact size in bytes, when known.
    pub size: Option<u64>,
    /// The expected checksum, when known.
    pub checksum: Option<&'a Checksum>,
    /// Which errors to report.
    pub kind: Kind,
}

impl<'a> Job<'a> {
    /// The download of a dataset archive to `dest`.
    pub(crate) fn archive(remote: &'a RemoteArchive, dest: &'a Path) -> Job<'a> {
        Job {
            url: &remote.url,
            dest,
            size: remote.size,
            checksum: remote.checksum.as_ref(),
            kind: Kind::Archive,
        }
    }

    fn unreachable(&self, attempts: u32, reason: String) -> Error {
        let (url, path) = (self.url.to_string(), self.dest.to_path_buf());
        match self.kind {
            Kind::Archive => Error::Unreachable {
                url,
                archive: path,
                attempts,
                reason,
            },
            Kind::File => Error::FileUnreachable {
                url,
                path,
                attempts,
                reason,
                checked: matches!(self.checksum, Some(Checksum::Sha256(_))),
            },
        }
    }

    fn http_status(&self, status: u16) -> Error {
        let (url, path) = (self.url.to_string(), self.dest.to_path_buf());
        match self.kind {
            Kind::Archive => Error::HttpStatus {
                url,
                status,
                archive: path,
            },
            Kind::File => Error::FileHttpStatus { url, status, path },
        }
    }

    fn mismatch(&self, m: Mismatch) -> Error {
        Error::Mismatch {
            path: self.dest.to_path_buf(),
            url: self.url.to_string(),
            what: m.what,
            expected: m.expected,
            found: m.found,
        }
    }
}

/// The partial-download file for `dest`: `dest` with `.part` appended, in the same folder so that
/// the final rename is atomic.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `job.url` to `job.dest`, resuming from an existing `.part` file.
///
/// On success `job.dest` holds the complete, verified file. A file that fails verification is
/// removed ([`Error::Mismatch`]); a download that keeps failing ends with [`Error::Unreachable`]
/// (or [`Error::FileUnreachable`]) and keeps its `.part` file for the next run to resume.
pub(crate) fn download(job: &Job<'_>, cfg: &FetchConfig) -> Result<()> {
    let part = part_path(job.dest);
    let client = client(job, cfg)?;
    let progress = progress_bar(cfg, job);
    let mut attempts = 0u32;
    let mut failures = 0u32;
    let mut longest = file_len(&part);
    loop {
        attempts += 1;
        match attempt(&client, job, &part, &progress) {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => {
                progress.abandon();
                return Err(e);
            }
            Err(Failure::Transient(reason)) => {
                // Only attempts that end without adding to the file count towards giving up; a
                // flaky but working connection may take as many attempts as it needs.
                let len = file_len(&part);
                if len > longest {
                    longest = len;
                    failures = 0;
                }
                failures += 1;
                if failures >= cfg.retries.max_attempts.max(1) {
                    progress.abandon();
                    return Err(job.unreachable(attempts, reason));
                }
                thread::sleep(cfg.retries.backoff(failures));
            }
        }
    }
    progress.finish_and_clear();
    if let Some(m) = verify::check(&part, job.size, job.checksum)? {
        fs::remove_file(&part).map_err(io_err("remove", &part))?;
        return Err(job.mismatch(m));
    }
    fs::rename(&part, job.dest).map_err(io_err(format!("rename {} to", part.display()), job.dest))
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt: connection refused or lost, timeout, 5xx.
    Transient(String),
    /// Retrying will not help.
    Fatal(Error),
}

fn client(job: &Job<'_>, cfg: &FetchConfig) -> Result<Client> {
    let mut builder = Client::builder()
        .user_agent(concat!("mix-fetch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(cfg.timeouts.connect)
        // In reqwest's blocking client this bounds the wait for the headers and for each body read,
        // not the whole transfer: exactly a stall timeout.
        .timeout(cfg.timeouts.read);
    if is_loopback(job.url) {
        // A proxy from the environment must never see requests meant for this machine (tests, local
        // mirrors).
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| {
        job.unreachable(
            0,
            format!("could not set up the http client: {}", chain(&e)),
        )
    })
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn progress_bar(cfg: &FetchConfig, job: &Job<'_>) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(job.size, ProgressDrawTarget::stderr());
    set_style(&bar, job.size.is_some());
    bar.set_prefix(
        job.dest
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    );
    bar
}

/// A bar with a total and time left when the length is known, a spinner otherwise.
fn set_style(bar: &ProgressBar, length_known: bool) {
    let template = if length_known {
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{prefix} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

fn file_len(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}

/// One request: resume from the `.part` file if it has bytes, stream the body into it.
fn attempt(
    client: &Client,
    job: &Job<'_>,
    part: &Path,
    progress: &ProgressBar,
) -> std::result::Result<(), Failure> {
    let fatal_io = |action: &str| {
        let action = action.to_string();
        move |e: io::Error| Failure::Fatal(io_err(action, part)(e))
    };
    let mut have = file_len(part);
    if let Some(size) = job.size {
        if have == size {
            // Complete from an earlier run that stopped before the rename; the caller verifies it.
            return Ok(());
        }
        if have > size {
            File::create(part).map_err(fatal_io("truncate"))?;
            have = 0;
        }
    }
    let mut request = client.get(job.url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().map_err(|e| classify(e, job))?;
    let status = response.status();
    let (mut file, start) = match status {
        StatusCode::PARTIAL_CONTENT => match content_range(&response) {
            Some((start, _)) if start == have => (
                OpenOptions::new()
                    .append(true)
                    .open(part)
                    .map_err(fatal_io("open"))?,
                have,
            ),
            other => {
                File::create(part).map_err(fatal_io("truncate"))?;
                let at = other.map_or("an unreadable offset".to_string(), |(s, _)| {
                    format!("byte {s}")
                });
                return Err(Failure::Transient(format!(
                    "asked to resume at byte {have}, the server resumed at {at}"
                )));
            }
        },
        // A server that ignores `Range` answers 200 with the whole file: start again from byte 0.
        StatusCode::OK => (File::create(part).map_err(fatal_io("create"))?, 0),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            if content_range(&response).and_then(|(_, total)| total) == Some(have) {
                return Ok(());
            }
            File::create(part).map_err(fatal_io("truncate"))?;
            return Err(Failure::Transient(format!(
                "the server could not resume at byte {have} (416)"
            )));
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(Failure::Transient(format!("the server answered {s}")));
        }
        s => return Err(Failure::Fatal(job.http_status(s.as_u16()))),
    };
    let body_len = response.content_length();
    if let Some(len) = body_len {
        if progress.length().is_none() {
            set_style(progress, true);
        }
        progress.set_length(start + len);
    }
    progress.set_position(start);
    let received = stream(&mut response, &mut file, start, job, part, progress)?;
    if let Some(len) = body_len {
        if received < len {
            return Err(Failure::Transient(format!(
                "the connection closed after {received} of {len} bytes"
            )));
        }
    }
    file.sync_all().map_err(fatal_io("flush"))?;
    Ok(())
}

/// Copies the body into `file`, returning how many bytes were received.
fn stream(
    response: &mut Response,
    file: &mut File,
    start: u64,
    job: &Job<'_>,
    part: &Path,
    progress: &ProgressBar,
) -> std::result::Result<u64, Failure> {
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // What arrived is kept; the next attempt asks for the rest.
                let _ = file.flush();
                return Err(Failure::Transient(format!(
                    "the connection failed after {} bytes: {}",
                    start + received,
                    chain(&e)
                )));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Failure::Fatal(io_err("write", part)(e)))?;
        received += n as u64;
        progress.inc(n as u64);
        if let Some(size) = job.size {
            if start + received > size {
                // Larger than the file we expect: stop now rather than download the rest.
                let _ = fs::remove_file(part);
                return Err(Failure::Fatal(job.mismatch(Mismatch {
                    what: "size",
                    expected: format!("{size} bytes"),
                    found: format!("more than {size} bytes"),
                })));
            }
        }
    }
}

/// `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) as `(START, TOTAL)`; `START` is
/// `u64::MAX` for the `*` form.
fn content_range(response: &Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = if range.trim() == "*" {
        u64::MAX
    } else {
        range.split_once('-')?.0.trim().parse().ok()?
    };
    Some((start, total))
}

fn classify(e: reqwest::Error, job: &Job<'_>) -> Failure {
    if e.is_builder() {
        return Failure::Fatal(Error::BadUrl {
            url: job.url.to_string(),
            reason: chain(&e),
        });
    }
    if e.is_redirect() {
        return Failure::Fatal(job.unreachable(1, chain(&e)));
    }
    Failure::Transient(chain(&e))
}

/// An error and its sources on one line: reqwest's own message alone rarely says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
