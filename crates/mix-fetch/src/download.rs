//! Resumable HTTP download of one file (an archive or model weights): stream to `<name>.part`,
//! remember which file it holds in `<name>.part.meta`, retry transient failures with a `Range` and
//! `If-Range` request, give up on transfers that are too slow, verify size and checksum, then
//! rename into place.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE};
use reqwest::redirect::{Attempt, Policy};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

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

/// The record beside a `.part` file: `<part>.meta`.
fn meta_path(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_os_string();
    name.push(".meta");
    part.with_file_name(name)
}

/// The most redirects followed for one request (reqwest's default too).
const MAX_REDIRECTS: usize = 10;

/// Downloads `job.url` to `job.dest`, resuming from an existing `.part` file.
///
/// On success `job.dest` holds the complete, verified file. A file that fails verification is
/// removed ([`Error::Mismatch`]); a download that keeps failing, or passes its deadline, ends with
/// [`Error::Unreachable`] (or [`Error::FileUnreachable`]) and keeps its `.part` file (and the
/// `.part.meta` record saying which file it holds) for the next run to resume.
pub(crate) fn download(job: &Job<'_>, cfg: &FetchConfig) -> Result<()> {
    let part = part_path(job.dest);
    let client = client(job, cfg)?;
    let progress = progress_bar(cfg, job);
    let mut pace = Pace::new(cfg);
    if let Some(size) = job.size {
        pace.expect(size.saturating_sub(file_len(&part)));
    }
    let mut attempts = 0u32;
    let mut failures = 0u32;
    let mut longest = file_len(&part);
    let mut last_failure: Option<String> = None;
    loop {
        if let Some(mut reason) = pace.expired() {
            progress.abandon();
            if let Some(last) = last_failure {
                reason.push_str(&format!("; the last attempt ended with: {last}"));
            }
            return Err(job.unreachable(attempts, reason));
        }
        attempts += 1;
        let (reason, slow) = match attempt(&client, job, &part, &progress, &mut pace) {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => {
                progress.abandon();
                return Err(e);
            }
            Err(Failure::Deadline(reason)) => {
                progress.abandon();
                return Err(job.unreachable(attempts, reason));
            }
            Err(Failure::Transient(reason)) => (reason, false),
            Err(Failure::Slow(reason)) => (reason, true),
        };
        // Only attempts that end without adding to the file count towards giving up; a flaky but
        // working connection may take as many attempts as it needs. A too-slow attempt always
        // counts: a server trickling a few bytes per attempt would otherwise be retried forever.
        let len = file_len(&part);
        if len > longest {
            longest = len;
            if !slow {
                failures = 0;
            }
        }
        failures += 1;
        if failures >= cfg.retries.max_attempts.max(1) {
            progress.abandon();
            return Err(job.unreachable(attempts, reason));
        }
        thread::sleep(cfg.retries.backoff(failures));
        last_failure = Some(reason);
    }
    progress.finish_and_clear();
    let meta = meta_path(&part);
    if let Some(m) = verify::check(&part, job.size, job.checksum)? {
        fs::remove_file(&part).map_err(io_err("remove", &part))?;
        remove_if_present(&meta)?;
        return Err(job.mismatch(m));
    }
    fs::rename(&part, job.dest)
        .map_err(io_err(format!("rename {} to", part.display()), job.dest))?;
    // A record left behind by a crash here describes no `.part` file and is replaced by the next
    // download's first answer, so removing it last is safe.
    remove_if_present(&meta)
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt: connection refused or lost, timeout, 5xx, the file changed.
    Transient(String),
    /// The bytes came slower than [`FetchConfig::speed_limit`]: worth another attempt, but the
    /// few bytes it brought do not count as progress.
    Slow(String),
    /// The download passed its deadline: no further attempt.
    Deadline(String),
    /// Retrying will not help.
    Fatal(Error),
}

/// The speed limit of each attempt and the deadline of the whole download.
struct Pace {
    speed_limit: u64,
    speed_time: Duration,
    deadline_base: Duration,
    deadline_rate: u64,
    started: Instant,
    /// When the download must be over, and the missing bytes that deadline was computed for.
    deadline: Option<(Instant, u64)>,
    /// Bytes received by all attempts so far.
    received: u64,
    /// Samples of `(time, received)` in the current attempt, oldest first, reaching back at
    /// least `speed_time` once the attempt is that old.
    samples: VecDeque<(Instant, u64)>,
}

impl Pace {
    fn new(cfg: &FetchConfig) -> Pace {
        Pace {
            speed_limit: cfg.speed_limit,
            speed_time: cfg.speed_time,
            deadline_base: cfg.deadline_base,
            deadline_rate: cfg.deadline_rate,
            started: Instant::now(),
            deadline: None,
            received: 0,
            samples: VecDeque::new(),
        }
    }

    /// Sets the deadline from the bytes still missing, the first time they are known.
    fn expect(&mut self, missing: u64) {
        if self.deadline.is_some() || self.deadline_rate == 0 {
            return;
        }
        let allowance = self.deadline_base.saturating_add(Duration::from_secs_f64(
            missing as f64 / self.deadline_rate as f64,
        ));
        // A deadline too far away to represent is no deadline.
        self.deadline = self.started.checked_add(allowance).map(|at| (at, missing));
    }

    /// Starts the speed window of a new attempt.
    fn start_attempt(&mut self) {
        self.samples.clear();
        self.samples.push_back((Instant::now(), self.received));
    }

    /// Counts `n` more bytes; fails when the deadline has passed or the attempt is too slow.
    fn advance(&mut self, n: u64) -> std::result::Result<(), Failure> {
        self.received += n;
        if let Some(reason) = self.expired() {
            return Err(Failure::Deadline(reason));
        }
        match self.too_slow() {
            Some(reason) => Err(Failure::Slow(reason)),
            None => Ok(()),
        }
    }

    /// Why the download is over, when its deadline has passed.
    fn expired(&self) -> Option<String> {
        let (at, missing) = self.deadline?;
        let now = Instant::now();
        if now < at {
            return None;
        }
        let took = now.duration_since(self.started).as_secs_f64();
        Some(format!(
            "the download did not finish within its deadline of {:.1} s ({:.1} s plus {missing} \
             missing bytes at {} bytes/s); it averaged {:.0} bytes/s over {took:.1} s; run again \
             to resume from the partial file, which is kept, or allow more time with \
             FetchConfig::deadline_base and FetchConfig::deadline_rate (a rate of 0 turns the \
             deadline off)",
            at.duration_since(self.started).as_secs_f64(),
            self.deadline_base.as_secs_f64(),
            self.deadline_rate,
            self.received as f64 / took.max(1e-3),
        ))
    }

    /// Why the current attempt is too slow, when the average rate over the last `speed_time` is
    /// below `speed_limit`.
    fn too_slow(&mut self) -> Option<String> {
        if self.speed_limit == 0 || self.speed_time.is_zero() {
            return None;
        }
        let now = Instant::now();
        // A few samples per window are enough; one per read could be millions on a fast link.
        let due = self
            .samples
            .back()
            .map_or(true, |&(t, _)| now.duration_since(t) >= self.speed_time / 8);
        if due {
            self.samples.push_back((now, self.received));
        }
        let cutoff = now.checked_sub(self.speed_time)?;
        while self.samples.len() >= 2 && self.samples[1].0 <= cutoff {
            self.samples.pop_front();
        }
        let &(since, base) = self.samples.front()?;
        if since > cutoff {
            // The attempt is younger than one window.
            return None;
        }
        let secs = now.duration_since(since).as_secs_f64();
        let rate = (self.received - base) as f64 / secs;
        if rate >= self.speed_limit as f64 {
            return None;
        }
        Some(format!(
            "the transfer averaged {rate:.0} bytes/s over the last {secs:.1} s, below the minimum \
             of {} bytes/s over {:.1} s; the partial file is kept and resumed; for a slow link \
             lower FetchConfig::speed_limit or lengthen FetchConfig::speed_time (curl's \
             --speed-limit and --speed-time), or set speed_limit to 0 to turn the check off",
            self.speed_limit,
            self.speed_time.as_secs_f64(),
        ))
    }
}

fn client(job: &Job<'_>, cfg: &FetchConfig) -> Result<Client> {
    let mut builder = Client::builder()
        .user_agent(concat!("mix-fetch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(cfg.timeouts.connect)
        // In reqwest's blocking client this bounds the wait for the headers and for each body read,
        // not the whole transfer: exactly a stall timeout. A trickle is caught by `Pace`.
        .timeout(cfg.timeouts.read)
        .redirect(Policy::custom(redirect));
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

/// Follows at most [`MAX_REDIRECTS`] redirects, never to a URL seen before in the chain (a loop)
/// nor to anything but http(s), each refusal with its own message.
fn redirect(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    let next = attempt.url().clone();
    if !matches!(next.scheme(), "http" | "https") {
        return attempt.error(format!(
            "the server redirected to {next}, expected an http or https url"
        ));
    }
    if attempt.previous().contains(&next) {
        let chain: Vec<&str> = attempt.previous().iter().map(|u| u.as_str()).collect();
        let message = format!("redirect loop: {} leads back to {next}", chain.join(" -> "));
        return attempt.error(message);
    }
    // `previous` holds the first URL and every redirect target so far.
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!(
            "more than {MAX_REDIRECTS} redirects, the last to {next}"
        ));
    }
    attempt.follow()
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

/// Removes `path`; one that is already gone is fine.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// What the server said about the file a `.part` file holds, kept beside it (`<part>.meta`, JSON)
/// so that a resume, even in a later run, asks for the rest of the same file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartMeta {
    /// The URL the bytes came from.
    url: String,
    /// The `ETag` of the first answer.
    etag: Option<String>,
    /// The `Last-Modified` date of the first answer.
    last_modified: Option<String>,
    /// The whole file's length as the server announced it.
    length: Option<u64>,
}

impl PartMeta {
    fn new(url: &str, headers: &HeaderMap, length: Option<u64>) -> PartMeta {
        PartMeta {
            url: url.to_string(),
            etag: header(headers, ETAG),
            last_modified: header(headers, LAST_MODIFIED),
            length,
        }
    }

    /// The `If-Range` value: a strong `ETag` (a weak one may not be used there), else the
    /// `Last-Modified` date.
    fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// Why an answer to a resume (its headers, and the total length it announces) cannot be about
    /// the file we hold the start of, if it cannot. This catches servers that honour `Range` but
    /// ignore `If-Range`.
    fn changed(&self, headers: &HeaderMap, total: Option<u64>) -> Option<String> {
        let differ = |ours: &Option<String>, theirs: Option<String>| match (ours, theirs) {
            (Some(a), Some(b)) if *a != b => Some((a.clone(), b)),
            _ => None,
        };
        if let Some((a, b)) = differ(&self.etag, header(headers, ETAG)) {
            return Some(format!(
                "the file changed on the server (etag {a} when the download began, now {b})"
            ));
        }
        if let Some((a, b)) = differ(&self.last_modified, header(headers, LAST_MODIFIED)) {
            return Some(format!(
                "the file changed on the server (last modified {a} when the download began, now {b})"
            ));
        }
        match (self.length, total) {
            (Some(a), Some(b)) if a != b => Some(format!(
                "the file changed on the server ({a} bytes when the download began, now {b})"
            )),
            _ => None,
        }
    }
}

fn header(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// What is known about the bytes in a `.part` file.
enum Record {
    /// No `.meta` beside it (an earlier version, or a file put there by hand): it is resumed,
    /// and only the final size and checksum checks can tell a different file.
    Missing,
    /// A `.meta` that cannot be used (unreadable, or for another URL): the bytes are discarded.
    Unusable,
    /// The file the bytes belong to.
    Known(PartMeta),
}

fn read_meta(path: &Path, url: &str) -> Record {
    match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Record::Missing,
        Err(_) => Record::Unusable,
        Ok(bytes) => match serde_json::from_slice::<PartMeta>(&bytes) {
            Ok(meta) if meta.url == url => Record::Known(meta),
            _ => Record::Unusable,
        },
    }
}

/// Writes `meta` to `path` through a temporary file, so that a crash never leaves half a record.
fn write_meta(path: &Path, meta: &PartMeta) -> std::result::Result<(), Failure> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let bytes = serde_json::to_vec(meta).map_err(|e| {
        Failure::Fatal(io_err("encode the download record", path)(
            io::Error::other(e),
        ))
    })?;
    fs::write(&tmp, bytes).map_err(|e| Failure::Fatal(io_err("write", &tmp)(e)))?;
    fs::rename(&tmp, path)
        .map_err(|e| Failure::Fatal(io_err(format!("rename {} to", tmp.display()), path)(e)))
}

/// Empties the `.part` file and forgets which file it held, before anything new is written to it.
fn truncate(part: &Path) -> std::result::Result<File, Failure> {
    let file = File::create(part).map_err(|e| Failure::Fatal(io_err("truncate", part)(e)))?;
    remove_if_present(&meta_path(part)).map_err(Failure::Fatal)?;
    Ok(file)
}

/// Whether `len` bytes in the `.part` file are the whole file by what the caller knows: its size,
/// or else a checksum of the whole file (fastai's first-MiB md5 proves nothing about the end).
fn complete_by_caller(job: &Job<'_>, part: &Path, len: u64) -> std::result::Result<bool, Failure> {
    if let Some(size) = job.size {
        return Ok(len == size);
    }
    match job.checksum {
        Some(c @ (Checksum::Md5(_) | Checksum::Sha256(_))) if len > 0 => {
            let mismatch = verify::check(part, None, Some(c)).map_err(Failure::Fatal)?;
            Ok(mismatch.is_none())
        }
        _ => Ok(false),
    }
}

/// One request: resume from the `.part` file if it has bytes of the same file, stream the body
/// into it.
fn attempt(
    client: &Client,
    job: &Job<'_>,
    part: &Path,
    progress: &ProgressBar,
    pace: &mut Pace,
) -> std::result::Result<(), Failure> {
    let fatal_io = |action: &str| {
        let action = action.to_string();
        move |e: io::Error| Failure::Fatal(io_err(action, part)(e))
    };
    let meta_file = meta_path(part);
    let mut have = file_len(part);
    let mut meta = match read_meta(&meta_file, job.url) {
        Record::Missing => None,
        Record::Known(m) => Some(m),
        Record::Unusable if have > 0 => {
            truncate(part)?;
            have = 0;
            None
        }
        Record::Unusable => {
            remove_if_present(&meta_file).map_err(Failure::Fatal)?;
            None
        }
    };
    if job.size == Some(have) {
        // Complete from an earlier run that stopped before the rename; the caller verifies it.
        return Ok(());
    }
    if let Some(len) = job.size.or(meta.as_ref().and_then(|m| m.length)) {
        if have > len {
            truncate(part)?;
            have = 0;
            meta = None;
        }
    }
    let mut request = client.get(job.url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
        if let Some(validator) = meta.as_ref().and_then(PartMeta::if_range) {
            // The server sends the whole file (200) instead of the rest when the file changed.
            request = request.header(IF_RANGE, validator);
        }
    }
    let mut response = request.send().map_err(|e| classify(e, job))?;
    let status = response.status();
    let (mut file, start) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let range = content_range(&response);
            let total = range.and_then(|(_, total)| total);
            if let Some(why) = meta
                .as_ref()
                .and_then(|m| m.changed(response.headers(), total))
            {
                truncate(part)?;
                return Err(Failure::Transient(format!(
                    "{why}; starting again from byte 0"
                )));
            }
            match range {
                Some((start, _)) if start == have => {
                    if meta.is_none() {
                        write_meta(
                            &meta_file,
                            &PartMeta::new(job.url, response.headers(), total),
                        )?;
                    }
                    (
                        OpenOptions::new()
                            .append(true)
                            .open(part)
                            .map_err(fatal_io("open"))?,
                        have,
                    )
                }
                other => {
                    truncate(part)?;
                    let at = other.map_or("an unreadable offset".to_string(), |(s, _)| {
                        format!("byte {s}")
                    });
                    return Err(Failure::Transient(format!(
                        "asked to resume at byte {have}, the server resumed at {at}"
                    )));
                }
            }
        }
        // A server that ignores `Range`, or a file that changed since the `.part` file was
        // begun (`If-Range` failed): the answer is the whole file, so start again from byte 0
        // rather than splice two files.
        StatusCode::OK => {
            let file = truncate(part)?;
            write_meta(
                &meta_file,
                &PartMeta::new(job.url, response.headers(), response.content_length()),
            )?;
            (file, 0)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = content_range(&response).and_then(|(_, total)| total);
            let changed = meta
                .as_ref()
                .and_then(|m| m.changed(response.headers(), total));
            let known = total.or(meta.as_ref().and_then(|m| m.length));
            if changed.is_none() && known == Some(have) {
                // Nothing is left to send: the `.part` file is the whole file.
                return Ok(());
            }
            truncate(part)?;
            let why = changed
                .unwrap_or_else(|| format!("the server could not resume at byte {have} (416)"));
            return Err(Failure::Transient(format!(
                "{why}; starting again from byte 0"
            )));
        }
        // The redirects the client did not follow: reqwest hands back those whose target it
        // cannot request (file://, ftp://) without asking the redirect policy.
        s if s.is_redirection() => {
            let reason = match header(response.headers(), LOCATION) {
                Some(to) => {
                    format!("the server redirected to {to}, expected an http or https url ({s})")
                }
                None => format!("the server answered {s} without a location to go to"),
            };
            return Err(Failure::Fatal(job.unreachable(1, reason)));
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
        pace.expect(len);
    }
    progress.set_position(start);
    let received = match stream(&mut response, &mut file, start, job, part, progress, pace) {
        Ok(received) => received,
        Err(Failure::Fatal(e)) => return Err(Failure::Fatal(e)),
        Err(failure) => {
            // The body ended early: a dropped connection, a stall, a trickle, or a server that
            // announced more bytes than it has. What arrived may still be the whole file.
            if complete_by_caller(job, part, file_len(part))? {
                file.sync_all().map_err(fatal_io("flush"))?;
                return Ok(());
            }
            return Err(failure);
        }
    };
    let end = start + received;
    if let Some(len) = body_len {
        if received < len {
            if complete_by_caller(job, part, end)? {
                file.sync_all().map_err(fatal_io("flush"))?;
                return Ok(());
            }
            return Err(Failure::Transient(format!(
                "the connection closed after {received} of {len} bytes"
            )));
        }
    }
    if let Some(size) = job.size {
        if end < size {
            // The server said the body ends here (its `Content-Length` was short of the file):
            // keep what came, the next attempt asks for the rest.
            let declared = body_len.map_or(String::new(), |len| {
                format!(" (its content-length was {len})")
            });
            return Err(Failure::Transient(format!(
                "the server ended the body at byte {end}{declared}, expected {size} bytes"
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
    pace: &mut Pace,
) -> std::result::Result<u64, Failure> {
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    pace.start_attempt();
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
        if let Some(size) = job.size {
            if start + received + n as u64 > size {
                // Larger than the file we expect: stop now rather than download the rest.
                let _ = fs::remove_file(part);
                let _ = fs::remove_file(meta_path(part));
                return Err(Failure::Fatal(job.mismatch(Mismatch {
                    what: "size",
                    expected: format!("{size} bytes"),
                    found: format!("more than {size} bytes"),
                })));
            }
        }
        file.write_all(&buf[..n])
            .map_err(|e| Failure::Fatal(io_err("write", part)(e)))?;
        received += n as u64;
        progress.inc(n as u64);
        pace.advance(n as u64)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn cfg(speed_limit: u64, speed_time: Duration, deadline_rate: u64) -> FetchConfig {
        FetchConfig {
            speed_limit,
            speed_time,
            deadline_base: Duration::ZERO,
            deadline_rate,
            ..FetchConfig::in_dir("/cache")
        }
    }

    #[test]
    fn if_range_prefers_a_strong_etag_and_never_sends_a_weak_one() {
        let meta = |etag: Option<&str>, date: Option<&str>| PartMeta {
            url: "http://h/f".into(),
            etag: etag.map(String::from),
            last_modified: date.map(String::from),
            length: Some(3),
        };
        let date = "Mon, 01 Jun 2026 10:00:00 GMT";
        assert_eq!(meta(Some("\"a\""), Some(date)).if_range(), Some("\"a\""));
        assert_eq!(meta(Some("W/\"a\""), Some(date)).if_range(), Some(date));
        assert_eq!(meta(Some("W/\"a\""), None).if_range(), None);
        assert_eq!(meta(None, None).if_range(), None);
    }

    #[test]
    fn a_resume_answer_about_another_file_is_recognised() {
        let ours = PartMeta {
            url: "http://h/f".into(),
            etag: Some("\"a\"".into()),
            last_modified: None,
            length: Some(100),
        };
        let mut headers = HeaderMap::new();
        assert_eq!(ours.changed(&headers, Some(100)), None);
        assert_eq!(ours.changed(&headers, None), None);
        assert!(ours
            .changed(&headers, Some(99))
            .unwrap()
            .contains("100 bytes"));
        headers.insert(ETAG, HeaderValue::from_static("\"a\""));
        assert_eq!(ours.changed(&headers, Some(100)), None);
        headers.insert(ETAG, HeaderValue::from_static("\"b\""));
        let why = ours.changed(&headers, Some(100)).unwrap();
        assert!(why.contains("\"a\"") && why.contains("\"b\""), "{why}");
    }

    #[test]
    fn the_speed_limit_needs_a_whole_window_below_the_limit() {
        let mut pace = Pace::new(&cfg(1000, Duration::from_secs(1), 0));
        let now = Instant::now();
        // Younger than the window: never too slow, whatever the rate.
        pace.samples = VecDeque::from([(now - Duration::from_millis(500), 0)]);
        assert_eq!(pace.too_slow(), None);
        // A whole window at about 250 bytes/s.
        pace.samples = VecDeque::from([(now - Duration::from_secs(2), 0)]);
        pace.received = 500;
        let why = pace.too_slow().unwrap();
        assert!(why.contains("minimum of 1000 bytes/s over 1.0 s"), "{why}");
        // The same window at 2500 bytes/s.
        pace.samples = VecDeque::from([(now - Duration::from_secs(2), 0)]);
        pace.received = 5000;
        assert_eq!(pace.too_slow(), None);
        // A limit of 0 turns the check off.
        let mut off = Pace::new(&cfg(0, Duration::from_secs(1), 0));
        off.samples = VecDeque::from([(now - Duration::from_secs(2), 0)]);
        assert_eq!(off.too_slow(), None);
    }

    #[test]
    fn the_deadline_is_set_once_from_the_missing_bytes_and_can_be_turned_off() {
        let mut pace = Pace::new(&cfg(0, Duration::ZERO, 1000));
        pace.expect(0);
        let why = pace.expired().unwrap();
        assert!(why.contains("0 missing bytes at 1000 bytes/s"), "{why}");
        // The first known size wins.
        pace.expect(1 << 40);
        assert!(pace.expired().is_some());
        let mut later = Pace::new(&cfg(0, Duration::ZERO, 1000));
        later.expect(10_000_000);
        assert_eq!(later.expired(), None);
        let mut off = Pace::new(&cfg(0, Duration::ZERO, 0));
        off.expect(0);
        assert_eq!(off.expired(), None);
    }
}
