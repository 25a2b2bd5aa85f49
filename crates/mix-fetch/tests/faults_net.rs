//! Hostile servers and faults on the network side of mix-fetch, each against a loopback server
//! started by the test: trickles, deadlines, files that change between attempts, lying
//! `Content-Length`s, 416s, redirect loops and odd schemes, a reset at 99%, and a process killed
//! while another waits for its lock.

mod common;
#[path = "common/net.rs"]
mod net;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use mix_fetch::{
    dataset_paths, fetch_file, file_path, untar_data, Checksum, Error, FetchConfig, RemoteArchive,
    RemoteFile, Retries, Source, Timeouts,
};
use net::*;

/// A file at `url` with an optional SHA-256 and size.
fn remote(url: String, sha256: Option<&[u8]>, size: Option<usize>) -> RemoteFile {
    RemoteFile {
        size: size.map(|s| s as u64),
        ..RemoteFile::from_url(&url, sha256.map(sha256_hex).as_deref()).unwrap()
    }
}

/// The `.part` file of `remote` and the record beside it.
fn part_and_meta(remote: &RemoteFile, cfg: &FetchConfig) -> (PathBuf, PathBuf) {
    let dest = file_path(remote, cfg);
    let part = dest.with_file_name(format!("{}.part", remote.file_name));
    let meta = dest.with_file_name(format!("{}.part.meta", remote.file_name));
    (part, meta)
}

/// The number right after `before` in `text`.
fn number_after(text: &str, before: &str) -> f64 {
    let rest = &text[text
        .find(before)
        .unwrap_or_else(|| panic!("{before:?} in {text}"))
        + before.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {before:?} in {text}"))
}

#[test]
fn a_trickling_server_is_given_up_on_by_the_speed_limit_and_trickles_do_not_reset_retries() {
    // One byte every 250 ms: each read returns long before the 2 s stall timeout, so only the
    // speed limit (100 bytes/s averaged over 0.5 s) can end it. Unlimited, this body takes 10 s.
    let body = noise(40, 7);
    let served = body.clone();
    let server = Server::start(move |_, req| paced(req, &served, 1, Duration::from_millis(250)));
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        speed_limit: 100,
        speed_time: Duration::from_millis(500),
        ..test_config(cache.path())
    };
    let file = remote(server.url("/slow.bin"), Some(&body), None);
    let started = Instant::now();
    let err = fetch_file(&file, &cfg).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, Error::FileUnreachable { attempts: 3, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(number_after(&msg, "averaged ") < 100.0, "{msg}");
    assert!(msg.contains("minimum of 100 bytes/s over 0.5 s"), "{msg}");
    assert!(msg.contains("FetchConfig::speed_limit"), "{msg}");
    assert!(msg.contains("FetchConfig::speed_time"), "{msg}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Every attempt brought a byte or two; they were kept and resumed, yet the attempts still
    // counted towards giving up.
    let (part, meta) = part_and_meta(&file, &cfg);
    let kept = fs::read(&part).unwrap();
    assert!(
        !kept.is_empty() && kept.len() < body.len(),
        "{}",
        kept.len()
    );
    assert_eq!(kept, body[..kept.len()]);
    assert!(meta.is_file());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs[2].header("range").is_some(),
        "the last attempt resumed"
    );
}

#[test]
fn a_download_past_its_deadline_stops_at_once_keeps_its_part_and_a_rerun_resumes() {
    // 5 KB/s passes the speed limit (1000 bytes/s), but the deadline of 0.1 s plus 8000 bytes at
    // 20 KB/s (0.5 s in all) passes long before the 1.6 s the body takes.
    let body = noise(8000, 8);
    let served = body.clone();
    let server = Server::start(move |_, req| paced(req, &served, 500, Duration::from_millis(100)));
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        speed_limit: 1000,
        speed_time: Duration::from_millis(500),
        deadline_base: Duration::from_millis(100),
        deadline_rate: 20_000,
        ..test_config(cache.path())
    };
    let file = remote(server.url("/w.bin"), Some(&body), Some(body.len()));
    let started = Instant::now();
    let err = fetch_file(&file, &cfg).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, Error::FileUnreachable { attempts: 1, .. }),
        "no retry after the deadline: {err}"
    );
    let msg = err.to_string();
    for part in [
        "deadline of 0.5 s",
        "0.1 s plus 8000 missing bytes at 20000 bytes/s",
        "FetchConfig::deadline_base",
        "FetchConfig::deadline_rate",
        "resume",
    ] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let (part, meta) = part_and_meta(&file, &cfg);
    let kept = fs::read(&part).unwrap();
    assert!(
        !kept.is_empty() && kept.len() < body.len(),
        "{}",
        kept.len()
    );
    assert_eq!(kept, body[..kept.len()]);
    assert!(meta.is_file());

    // The next run, with the deadline off, asks for the rest only.
    let patient = FetchConfig {
        deadline_rate: 0,
        ..cfg.clone()
    };
    let path = fetch_file(&file, &patient).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={}-", kept.len()).as_str())
    );
    assert_eq!(
        names(&cache.path().join("models")),
        [file.file_name.clone(), format!("{}.lock", file.file_name)]
    );
}

/// How the server treats a resume after the file changed.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// It honours `If-Range` (ETag), answering 200 with the new file.
    IfRangeEtag,
    /// It honours `If-Range` (Last-Modified date), answering 200 with the new file.
    IfRangeDate,
    /// It ignores `If-Range` and sends the rest of the new file with the new ETag.
    BlindRangeEtag,
    /// It ignores `If-Range` and sends the rest of the new file with the new date.
    BlindRangeDate,
    /// It sends no validators and ignores `If-Range`; the new file has another length.
    NoValidatorsNewLength,
}

#[test]
fn a_file_that_changes_after_a_dropped_connection_is_never_spliced() {
    let v1 = noise(50_000, 1);
    let cut = 20_000;
    for change in [
        Change::IfRangeEtag,
        Change::IfRangeDate,
        Change::BlindRangeEtag,
        Change::BlindRangeDate,
        Change::NoValidatorsNewLength,
    ] {
        let v2 = match change {
            Change::NoValidatorsNewLength => noise(60_000, 2),
            _ => noise(50_000, 2),
        };
        let (a, b) = (v1.clone(), v2.clone());
        let server = Server::start(move |i, req| {
            let (etag, date) = match change {
                Change::IfRangeEtag | Change::BlindRangeEtag => (Some(["\"v1\"", "\"v2\""]), None),
                Change::IfRangeDate | Change::BlindRangeDate => (
                    None,
                    Some([
                        "Mon, 01 Jun 2026 10:00:00 GMT",
                        "Tue, 02 Jun 2026 10:00:00 GMT",
                    ]),
                ),
                Change::NoValidatorsNewLength => (None, None),
            };
            let honours = matches!(change, Change::IfRangeEtag | Change::IfRangeDate);
            let n = usize::from(i > 0);
            let version = Version {
                body: if i == 0 { &a } else { &b },
                etag: etag.map(|e| e[n]),
                last_modified: date.map(|d| d[n]),
            };
            let reply = versioned(req, &version, honours);
            if i == 0 {
                reply.cut(cut)
            } else {
                reply
            }
        });
        let cache = tempfile::tempdir().unwrap();
        let cfg = test_config(cache.path());
        let file = remote(server.url("/m.bin"), None, None);
        let path = fetch_file(&file, &cfg).unwrap_or_else(|e| panic!("{change:?}: {e}"));
        let got = fs::read(&path).unwrap();
        let mut spliced = v1[..cut].to_vec();
        spliced.extend_from_slice(&v2[cut..]);
        assert!(got != spliced, "{change:?}: spliced");
        assert!(got == v2, "{change:?}: the new file");
        let reqs = server.requests();
        assert_eq!(
            reqs[1].header("range"),
            Some(format!("bytes={cut}-").as_str()),
            "{change:?}"
        );
        let expected_if_range = match change {
            Change::IfRangeEtag | Change::BlindRangeEtag => Some("\"v1\""),
            Change::IfRangeDate | Change::BlindRangeDate => Some("Mon, 01 Jun 2026 10:00:00 GMT"),
            Change::NoValidatorsNewLength => None,
        };
        assert_eq!(reqs[1].header("if-range"), expected_if_range, "{change:?}");
        if matches!(change, Change::IfRangeEtag | Change::IfRangeDate) {
            assert_eq!(reqs.len(), 2, "{change:?}: the 200 restarted from byte 0");
        } else {
            // The 206 of another file was refused; the next attempt started from byte 0.
            assert_eq!(reqs.len(), 3, "{change:?}");
            assert_eq!(reqs[2].header("range"), None, "{change:?}");
        }
        assert_eq!(
            names(&cache.path().join("models")).len(),
            2,
            "{change:?}: only the file and its lock are left"
        );
    }
}

#[test]
fn a_changed_file_with_the_old_checksum_fails_clearly_and_keeps_nothing() {
    let v1 = noise(30_000, 3);
    let v2 = noise(30_000, 4);
    let (a, b) = (v1.clone(), v2.clone());
    let server = Server::start(move |i, req| {
        let version = Version {
            body: if i == 0 { &a } else { &b },
            etag: Some(if i == 0 { "\"v1\"" } else { "\"v2\"" }),
            last_modified: None,
        };
        let reply = versioned(req, &version, true);
        if i == 0 {
            reply.cut(10_000)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let file = remote(server.url("/m.bin"), Some(&v1), None);
    let err = fetch_file(&file, &cfg).unwrap_err();
    match &err {
        Error::Mismatch {
            what,
            expected,
            found,
            ..
        } => {
            assert_eq!(*what, "sha256");
            assert_eq!(expected, &sha256_hex(&v1));
            assert_eq!(found, &sha256_hex(&v2), "the whole new file, not a splice");
        }
        other => panic!("expected Mismatch, got {other}"),
    }
    assert_eq!(
        names(&cache.path().join("models")),
        [format!("{}.lock", file.file_name)]
    );
}

#[test]
fn a_416_completes_a_whole_part_file_and_restarts_a_wrong_one() {
    let body = noise(12_000, 5);
    let etag = "\"e1\"";

    // A `.part` file that is whole (a run killed before the rename) and its record: the server
    // says nothing is left to send, and the file is used without downloading it again.
    let served = body.clone();
    let server = Server::start(move |_, req| {
        let version = Version {
            body: &served,
            etag: Some(etag),
            last_modified: None,
        };
        versioned(req, &version, true)
    });
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let file = remote(server.url("/w.bin"), Some(&body), None);
    let (part, meta) = part_and_meta(&file, &cfg);
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, &body).unwrap();
    let record = format!(
        r#"{{"url":"{}","etag":"\"e1\"","last_modified":null,"length":{}}}"#,
        file.url,
        body.len()
    );
    fs::write(&meta, record).unwrap();
    let path = fetch_file(&file, &cfg).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={}-", body.len()).as_str())
    );
    assert_eq!(reqs[0].header("if-range"), Some(etag));
    assert!(!meta.exists() && !part.exists());

    // A `.part` file the server cannot resume (it says the file has another length): it is
    // emptied and the next attempt starts from byte 0.
    let served = body.clone();
    let server = Server::start(move |i, req| {
        if i == 0 {
            not_satisfiable(served.len())
        } else {
            Reply::file(req, &served, true)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let file = remote(server.url("/w.bin"), Some(&body), None);
    let (part, _) = part_and_meta(&file, &cfg);
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, noise(5000, 99)).unwrap();
    let path = fetch_file(&file, &cfg).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), Some("bytes=5000-"));
    assert_eq!(reqs[1].header("range"), None);
}

#[test]
fn an_overstated_content_length_is_accepted_when_the_callers_size_or_checksum_match() {
    // Every answer declares 100 bytes more than it sends, then closes the connection.
    let body = noise(20_000, 6);
    let served = body.clone();
    let server =
        Server::start(move |_, _| raw(200, &[], served.len() + 100, &served, 8192, Duration::ZERO));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());

    // Known size (and checksum), or a checksum alone: one request, the file is accepted.
    let by_size = remote(server.url("/a.bin"), Some(&body), Some(body.len()));
    let by_checksum = remote(server.url("/b.bin"), Some(&body), None);
    for (i, file) in [by_size, by_checksum].iter().enumerate() {
        let path = fetch_file(file, &cfg).unwrap();
        assert_eq!(fs::read(&path).unwrap(), body);
        assert_eq!(server.count(), i + 1, "no retry");
    }

    // Nothing to check against: the short body is not taken for the whole file.
    let unchecked = remote(server.url("/c.bin"), None, None);
    let err = fetch_file(&unchecked, &cfg).unwrap_err();
    assert!(matches!(err, Error::FileUnreachable { .. }), "{err}");
    assert!(!file_path(&unchecked, &cfg).exists());
    let reqs = server.requests();
    assert!(reqs.len() >= 4, "{}", reqs.len());
    assert_eq!(
        reqs[3].header("range"),
        Some(format!("bytes={}-", body.len()).as_str()),
        "the retry resumed"
    );
}

#[test]
fn a_content_length_shorter_than_the_body_is_never_written_past() {
    // Every answer declares 100 bytes fewer than it sends.
    let body = noise(20_000, 9);
    let declared = body.len() - 100;
    let served = body.clone();
    let server =
        Server::start(move |_, _| raw(200, &[], served.len() - 100, &served, 8192, Duration::ZERO));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());

    // Nothing known: the declared length is the file.
    let unchecked = remote(server.url("/a.bin"), None, None);
    let path = fetch_file(&unchecked, &cfg).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body[..declared]);

    // A checksum: the short file fails it and is not kept.
    let checked = remote(server.url("/b.bin"), Some(&body), None);
    let err = fetch_file(&checked, &cfg).unwrap_err();
    assert!(
        matches!(err, Error::Mismatch { what: "sha256", .. }),
        "{err}"
    );
    assert!(!file_path(&checked, &cfg).exists());

    // A size: each attempt ends short; the error says where and why, the part never grows past
    // what was declared.
    let sized = remote(server.url("/c.bin"), Some(&body), Some(body.len()));
    let err = fetch_file(&sized, &cfg).unwrap_err();
    assert!(
        matches!(err, Error::FileUnreachable { attempts: 3, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "the server ended the body at byte {declared} (its content-length was {declared}), expected {} bytes",
            body.len()
        )),
        "{msg}"
    );
    let (part, _) = part_and_meta(&sized, &cfg);
    assert_eq!(fs::read(&part).unwrap(), body[..declared]);
}

#[test]
fn redirect_loops_other_schemes_and_long_chains_are_one_clear_error() {
    let base_url = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let base = base_url.clone();
    let body = noise(3000, 10);
    let served = body.clone();
    let srv = Server::start(move |_, req| {
        let url = |p: &str| format!("{}{p}", base.get().unwrap());
        match req.path.as_str() {
            "/self.bin" => redirect_to(&url("/self.bin")),
            "/loop.tgz" => redirect_to(&url("/loop.tgz")),
            "/a/loop.bin" => redirect_to(&url("/b/loop.bin")),
            "/b/loop.bin" => redirect_to(&url("/a/loop.bin")),
            "/file.bin" => redirect_to("file:///etc/passwd"),
            "/ftp.bin" => redirect_to("ftp://127.0.0.1/x.bin"),
            p if p.starts_with("/chain/") => {
                let n: usize = p["/chain/".len()..]
                    .trim_end_matches(".bin")
                    .parse()
                    .unwrap();
                redirect_to(&url(&format!("/chain/{}.bin", n + 1)))
            }
            p if p.starts_with("/short/") => {
                let n: usize = p["/short/".len()..]
                    .trim_end_matches(".bin")
                    .parse()
                    .unwrap();
                if n < 3 {
                    redirect_to(&url(&format!("/short/{}.bin", n + 1)))
                } else {
                    Reply::file(req, &served, true)
                }
            }
            _ => Reply::status(404),
        }
    });
    base_url.set(srv.url("")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let cases = [
        ("/self.bin", "redirect loop", 1),
        ("/a/loop.bin", "redirect loop", 2),
        (
            "/file.bin",
            "file:///etc/passwd, expected an http or https url",
            1,
        ),
        (
            "/ftp.bin",
            "ftp://127.0.0.1/x.bin, expected an http or https url",
            1,
        ),
        ("/chain/0.bin", "more than 10 redirects", 11),
    ];
    let mut seen = 0;
    for (path, says, requests) in cases {
        let started = Instant::now();
        let url = srv.url(path);
        let err = fetch_file(&remote(url.clone(), None, None), &cfg).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: no hang"
        );
        assert!(
            matches!(err, Error::FileUnreachable { attempts: 1, .. }),
            "{path}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(says) && msg.contains(&url), "{path}: {msg}");
        seen += requests;
        assert_eq!(srv.count(), seen, "{path}: not retried");
    }
    // Through untar_data too.
    let err = untar_data(&Source::Url(srv.url("/loop.tgz")), &cfg).unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { attempts: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("redirect loop"), "{err}");
    // A short chain is followed.
    let path = fetch_file(&remote(srv.url("/short/0.bin"), None, None), &cfg).unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
}

#[test]
fn a_reset_at_99_percent_is_resumed_with_if_range_and_completes() {
    let (archive, files) = pets_like();
    let cut = archive.len() * 99 / 100;
    let served = archive.clone();
    let server = Server::start(move |i, req| {
        let version = Version {
            body: &served,
            etag: Some("\"pets\""),
            last_modified: None,
        };
        let reply = versioned(req, &version, true);
        if i == 0 {
            reply.cut(cut)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let source = Source::Checked(RemoteArchive {
        url: server.url("/pets.tgz"),
        size: Some(archive.len() as u64),
        checksum: Some(Checksum::Sha256(sha256_hex(&archive))),
    });
    let cfg = test_config(cache.path());
    let paths = dataset_paths(&source, &cfg).unwrap();
    let root = untar_data(&source, &cfg).unwrap();
    assert_tree(&root, &files);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(reqs[1].header("if-range"), Some("\"pets\""));
    assert_eq!(fs::read(&paths.archive).unwrap(), archive);
    assert_eq!(
        names(&cache.path().join("archive")),
        [base_name(&paths.archive), lock_name(&paths.archive)],
        "no .part or .part.meta is left"
    );
}

// -------------------------------------------------------------------------------------------------
// Processes

/// Set in a child process: the URL of the archive to fetch; the child then runs [`child_main`]
/// instead of the test.
const CHILD_URL: &str = "MIX_FETCH_FAULTS_CHILD_URL";
const CHILD_CACHE: &str = "MIX_FETCH_FAULTS_CHILD_CACHE";
const CHILD_SHA256: &str = "MIX_FETCH_FAULTS_CHILD_SHA256";
const CHILD_SIZE: &str = "MIX_FETCH_FAULTS_CHILD_SIZE";

/// In a child process started by [`spawn_child`], fetches the archive it names and exits: 0 and
/// `ok <path>` on stdout on success, 1 and the error on stderr otherwise.
fn child_main() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let source = Source::Checked(RemoteArchive {
        url,
        size: Some(var(CHILD_SIZE).parse().unwrap()),
        checksum: Some(Checksum::Sha256(var(CHILD_SHA256))),
    });
    // With `progress` the library says on stderr when it waits for another process's lock.
    let cfg = FetchConfig {
        progress: true,
        ..test_config(Path::new(&var(CHILD_CACHE)))
    };
    match untar_data(&source, &cfg) {
        Ok(path) => {
            println!("ok {}", path.display());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("child failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs this test binary again as a child that fetches `archive` from `url` into `cache`: only
/// the test `test` runs, and [`child_main`] turns it into the child.
fn spawn_child(test: &str, url: &str, cache: &Path, archive: &[u8], stderr: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, url)
        .env(CHILD_CACHE, cache)
        .env(CHILD_SHA256, sha256_hex(archive))
        .env(CHILD_SIZE, archive.len().to_string())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits up to `limit` for `child` to exit; kills it and fails when it does not.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 10 ms for up to `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A server whose first answer trickles the archive (8 KiB every 100 ms, a few seconds in all),
/// so that the first process is still downloading when it is killed; later answers are quick.
fn pets_server(archive: &[u8]) -> Server {
    let served = archive.to_vec();
    Server::start(move |i, req| {
        let version = Version {
            body: &served,
            etag: Some("\"pets\""),
            last_modified: None,
        };
        let reply = versioned(req, &version, true);
        if i == 0 {
            reply.slow(Duration::from_millis(100))
        } else {
            reply
        }
    })
}

#[test]
fn a_process_killed_mid_download_leaves_no_stale_lock_and_the_waiting_one_resumes() {
    child_main();
    const TEST: &str =
        "a_process_killed_mid_download_leaves_no_stale_lock_and_the_waiting_one_resumes";
    let (archive, files) = pets_like();
    let server = pets_server(&archive);
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/pets.tgz");
    let paths = dataset_paths(&Source::Url(url.clone()), &test_config(cache.path())).unwrap();
    let part = part_of(&paths.archive);

    let mut first = spawn_child(TEST, &url, cache.path(), &archive, Stdio::null());
    wait_until(Duration::from_secs(3), "the first process writes", || {
        part.metadata().map(|m| m.len() > 0).unwrap_or(false)
    });
    let mut second = spawn_child(TEST, &url, cache.path(), &archive, Stdio::piped());
    let (tx, rx) = mpsc::channel();
    let stderr = second.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    loop {
        let left = Duration::from_secs(3).saturating_sub(started.elapsed());
        let line = rx
            .recv_timeout(left)
            .expect("the second process says it waits for the lock");
        if line.contains("waiting for another process") {
            break;
        }
    }
    // SIGKILL: no destructor, no unlock, the `.part` file is left as it was.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(part.exists());

    let status = wait_bounded(&mut second, Duration::from_secs(5), "the waiting process");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status}: {rest:?}");
    let root = paths.data;
    assert_tree(&root, &files);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let resumed_at = reqs[1]
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the survivor resumed");
    assert!(resumed_at > 0 && resumed_at < archive.len());
    assert_eq!(reqs[1].header("if-range"), Some("\"pets\""));

    // A rerun finds the dataset and asks nobody; the lock file left behind blocks no one.
    let again = untar_data(
        &Source::Url(url),
        &FetchConfig {
            retries: Retries {
                max_attempts: 1,
                ..test_config(cache.path()).retries
            },
            ..test_config(cache.path())
        },
    )
    .unwrap();
    assert_eq!(again, root);
    assert_eq!(server.count(), 2);
    assert_eq!(
        names(&cache.path().join("archive")),
        [base_name(&paths.archive), lock_name(&paths.archive)]
    );
}

#[test]
fn a_process_killed_alone_mid_download_is_resumed_by_the_rerun() {
    child_main();
    const TEST: &str = "a_process_killed_alone_mid_download_is_resumed_by_the_rerun";
    let (archive, files) = pets_like();
    let server = pets_server(&archive);
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/pets.tgz");
    let paths = dataset_paths(&Source::Url(url.clone()), &test_config(cache.path())).unwrap();
    let part = part_of(&paths.archive);

    let mut only = spawn_child(TEST, &url, cache.path(), &archive, Stdio::null());
    wait_until(Duration::from_secs(3), "the process writes", || {
        part.metadata().map(|m| m.len() > 0).unwrap_or(false)
    });
    only.kill().unwrap();
    only.wait().unwrap();
    let kept = fs::metadata(&part).unwrap().len();

    // The rerun in this process takes the lock the dead one held, and resumes its `.part` file.
    let source = Source::Checked(RemoteArchive {
        url,
        size: Some(archive.len() as u64),
        checksum: Some(Checksum::Sha256(sha256_hex(&archive))),
    });
    let cfg = FetchConfig {
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
        },
        ..test_config(cache.path())
    };
    let started = Instant::now();
    let root = untar_data(&source, &cfg).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(root, paths.data);
    assert_tree(&root, &files);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let resumed_at: u64 = reqs[1]
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("the rerun resumed");
    assert!(resumed_at >= kept && resumed_at < archive.len() as u64);
    assert_eq!(reqs[1].header("if-range"), Some("\"pets\""));
}
