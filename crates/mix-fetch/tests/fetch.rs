//! untar_data against a loopback server started by each test: download, resume, retry, timeouts,
//! checks, caching, locking and the offline message.

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use mix_fetch::{
    dataset_paths, untar_data, Checksum, Dataset, Error, FetchConfig, RemoteArchive, Retries,
    Source, Timeouts,
};

fn checked(url: String, body: &[u8], checksum: Checksum) -> Source {
    Source::Checked(RemoteArchive {
        url,
        size: Some(body.len() as u64),
        checksum: Some(checksum),
    })
}

#[test]
fn happy_path_extracts_the_single_top_folder_and_second_call_needs_no_server() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let source = checked(
        server.url("/x/oxford-iiit-pet.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );

    let paths = dataset_paths(&source, &cfg).unwrap();
    let root = untar_data(&source, &cfg).unwrap();
    assert_eq!(root, paths.data);
    assert_tree(&root, &files);
    assert!(root.join("images").is_dir());
    assert_eq!(fs::read(&paths.archive).unwrap(), archive);
    assert_eq!(
        names(&cache.path().join("archive")),
        [base_name(&paths.archive), lock_name(&paths.archive)]
    );
    assert_eq!(names(&cache.path().join("data")), [base_name(&paths.data)]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/x/oxford-iiit-pet.tgz");
    assert_eq!(reqs[0].header("range"), None);

    // The second call finds the extracted folder and asks nobody.
    drop(server);
    assert_eq!(untar_data(&source, &cfg).unwrap(), root);
    assert_tree(&root, &files);
}

#[test]
fn two_urls_ending_in_the_same_file_name_are_cached_apart() {
    let a_files = [("a.txt".to_string(), b"from a".to_vec())];
    let b_files = [("b.txt".to_string(), b"from b, longer".to_vec())];
    let a_archive = tgz(&[file("data/a.txt", &a_files[0].1)]);
    let b_archive = tgz(&[file("data/b.txt", &b_files[0].1)]);
    let (a_body, b_body) = (a_archive.clone(), b_archive.clone());
    let server = Server::start(move |_, req| match req.path.as_str() {
        "/a/data.tgz" => Reply::file(req, &a_body, true),
        "/b/data.tgz" => Reply::file(req, &b_body, true),
        _ => Reply::status(404),
    });
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let (a_url, b_url) = (server.url("/a/data.tgz"), server.url("/b/data.tgz"));
    let (a, b) = (Source::Url(a_url.clone()), Source::Url(b_url.clone()));
    let (a_paths, b_paths) = (
        dataset_paths(&a, &cfg).unwrap(),
        dataset_paths(&b, &cfg).unwrap(),
    );
    // Keyed by the URL, as single files are: `<stem>-<key>` and `<key>-<file>`.
    for (url, paths) in [(&a_url, &a_paths), (&b_url, &b_paths)] {
        let key = &sha256_hex(url.as_bytes())[..12];
        assert_eq!(base_name(&paths.data), format!("data-{key}"));
        assert_eq!(base_name(&paths.archive), format!("{key}-data.tgz"));
        assert_eq!(
            base_name(&paths.provenance),
            format!("data-{key}.source.json")
        );
    }
    assert_ne!(a_paths.data, b_paths.data);

    let a_root = untar_data(&a, &cfg).unwrap();
    let b_root = untar_data(&b, &cfg).unwrap();
    assert_eq!((&a_root, &b_root), (&a_paths.data, &b_paths.data));
    assert_tree(&a_root, &a_files);
    assert_tree(&b_root, &b_files);
    assert_eq!(fs::read(&a_paths.archive).unwrap(), a_archive);
    assert_eq!(fs::read(&b_paths.archive).unwrap(), b_archive);
    let paths: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a/data.tgz", "/b/data.tgz"]);

    // Each second call is served from its own folder without a request.
    assert_eq!(untar_data(&a, &cfg).unwrap(), a_root);
    assert_eq!(untar_data(&b, &cfg).unwrap(), b_root);
    assert_tree(&a_root, &a_files);
    assert_tree(&b_root, &b_files);
    assert_eq!(server.count(), 2);
}

#[test]
fn fastai_prefix_checksum_covers_the_first_mib_only() {
    // An archive larger than 1 MiB: fastai's check hashes only its first 2**20 bytes.
    let big: Vec<u8> = noise(1_500_000, 3);
    let archive = tgz(&[file("only/big.bin", &big)]);
    assert!(archive.len() > (1 << 20));
    let prefix = md5_hex(&archive[..1 << 20]);
    assert_ne!(prefix, md5_hex(&archive));
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let cache = tempfile::tempdir().unwrap();
    let source = checked(
        server.url("/big.tgz"),
        &archive,
        Checksum::Md5Prefix(prefix),
    );
    let root = untar_data(&source, &test_config(cache.path())).unwrap();
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), big);
}

#[test]
fn checksum_mismatch_is_an_error_and_leaves_nothing() {
    let (archive, _) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let cache = tempfile::tempdir().unwrap();
    let wrong = md5_hex(b"something else");
    let url = server.url("/pets.tgz");
    let cfg = test_config(cache.path());
    let lock = lock_name(
        &dataset_paths(&Source::Url(url.clone()), &cfg)
            .unwrap()
            .archive,
    );
    for checksum in [
        Checksum::Md5(wrong.clone()),
        Checksum::Md5Prefix(wrong.clone()),
    ] {
        let source = checked(url.clone(), &archive, checksum);
        let err = untar_data(&source, &test_config(cache.path())).unwrap_err();
        match &err {
            Error::Mismatch {
                expected, found, ..
            } => {
                assert_eq!(expected, &wrong);
                assert_eq!(
                    found,
                    &md5_hex(&archive),
                    "the whole file is shorter than 1 MiB"
                );
            }
            other => panic!("expected Mismatch, got {other}"),
        }
        assert!(err.to_string().contains(&url), "{err}");
        assert!(names(&cache.path().join("data")).is_empty());
        assert_eq!(
            names(&cache.path().join("archive")),
            std::slice::from_ref(&lock)
        );
    }
    // A wrong size is caught as soon as the body grows past it.
    let source = Source::Checked(RemoteArchive {
        url,
        size: Some(1000),
        checksum: None,
    });
    let err = untar_data(&source, &test_config(cache.path())).unwrap_err();
    assert!(matches!(err, Error::Mismatch { what: "size", .. }), "{err}");
    assert_eq!(names(&cache.path().join("archive")), [lock]);
}

#[test]
fn a_dropped_connection_is_resumed_with_range() {
    let (archive, files) = pets_like();
    let half = archive.len() / 2;
    let body = archive.clone();
    let server = Server::start(move |i, req| {
        let reply = Reply::file(req, &body, true);
        if i == 0 {
            reply.cut(half)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let source = checked(
        server.url("/pets.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );
    let cfg = test_config(cache.path());
    let root = untar_data(&source, &cfg).unwrap();
    assert_tree(&root, &files);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(
        fs::read(dataset_paths(&source, &cfg).unwrap().archive).unwrap(),
        archive
    );
}

#[test]
fn a_server_that_ignores_range_restarts_cleanly() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |i, req| {
        let reply = Reply::file(req, &body, false);
        if i == 0 {
            reply.cut(body.len() / 3)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let source = checked(
        server.url("/pets.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );
    let cfg = test_config(cache.path());
    let root = untar_data(&source, &cfg).unwrap();
    assert_tree(&root, &files);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].header("range").is_some(), "a resume was asked for");
    assert_eq!(
        fs::read(dataset_paths(&source, &cfg).unwrap().archive).unwrap(),
        archive
    );
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let source = checked(
        server.url("/pets.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );
    let paths = dataset_paths(&source, &cfg).unwrap();
    fs::create_dir_all(cache.path().join("archive")).unwrap();
    let third = archive.len() / 3;
    fs::write(part_of(&paths.archive), &archive[..third]).unwrap();
    assert_tree(&untar_data(&source, &cfg).unwrap(), &files);
    assert_eq!(
        server.requests()[0].header("range"),
        Some(format!("bytes={third}-").as_str())
    );
}

#[test]
fn server_errors_are_retried() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |i, req| {
        if i < 2 {
            Reply::status(503)
        } else {
            Reply::file(req, &body, true)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let root = untar_data(
        &Source::Url(server.url("/pets.tgz")),
        &test_config(cache.path()),
    )
    .unwrap();
    assert_tree(&root, &files);
    assert_eq!(server.count(), 3);
}

#[test]
fn not_found_is_a_clear_error_without_retries() {
    let server = Server::start(|_, _| Reply::status(404));
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/missing.tgz");
    let err = untar_data(&Source::Url(url.clone()), &test_config(cache.path())).unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 404, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains(&url), "{msg}");
    assert_eq!(server.count(), 1);
    assert!(names(&cache.path().join("data")).is_empty());
}

fn stall_config(cache: &Path) -> FetchConfig {
    FetchConfig {
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_millis(300),
        },
        retries: Retries {
            max_attempts: 2,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        },
        ..FetchConfig::in_dir(cache)
    }
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start(|_, _| Reply::Stall);
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/slow.tgz");
    let started = Instant::now();
    let err = untar_data(&Source::Url(url.clone()), &stall_config(cache.path())).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, Error::Unreachable { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    // Two attempts of 300 ms each plus a pause: far below this bound unless the timeout does not
    // work.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(server.count(), 2);
}

#[test]
fn a_stall_in_the_middle_of_the_body_times_out_and_resumes() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let cut = archive.len() / 4;
    let server = Server::start(move |i, req| {
        let reply = Reply::file(req, &body, true);
        if i == 0 {
            reply.stall_at(cut)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let source = checked(
        server.url("/pets.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );
    let root = untar_data(&source, &stall_config(cache.path())).unwrap();
    assert_tree(&root, &files);
    assert_eq!(
        server.requests()[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
}

#[test]
fn offline_error_names_url_archive_path_and_dataset_option_and_a_hand_placed_archive_works() {
    let (archive, files) = pets_like();
    let cache = tempfile::tempdir().unwrap();
    let url = closed_port_url("/oxford-iiit-pet.tgz");
    let source = checked(
        url.clone(),
        &archive,
        Checksum::Md5Prefix(md5_hex(&archive)),
    );
    let cfg = test_config(cache.path());
    let err = untar_data(&source, &cfg).unwrap_err();
    let msg = err.to_string();
    let paths = dataset_paths(&source, &cfg).unwrap();
    assert!(
        matches!(err, Error::Unreachable { attempts: 3, .. }),
        "{msg}"
    );
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains(paths.archive.to_str().unwrap()), "{msg}");
    assert!(msg.contains("--dataset <DIR>"), "{msg}");

    // Doing what the message says: put the archive there by hand.
    fs::write(&paths.archive, &archive).unwrap();
    let root = untar_data(&source, &cfg).unwrap();
    assert_eq!(root, paths.data);
    assert_tree(&root, &files);
}

#[test]
fn a_corrupt_cached_archive_is_removed_and_fetched_again() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let url = server.url("/pets.tgz");
    // Unchecked URL: only decompression can tell. Checked URL: the size tells first.
    let cases: Vec<(Source, Vec<u8>)> = vec![
        (
            Source::Url(url.clone()),
            archive[..archive.len() / 2].to_vec(),
        ),
        (Source::Url(url.clone()), b"garbage".to_vec()),
        (
            checked(url.clone(), &archive, Checksum::Md5(md5_hex(&archive))),
            archive[..100].to_vec(),
        ),
    ];
    let mut expected_requests = 0;
    for (source, bad) in cases {
        let cache = tempfile::tempdir().unwrap();
        let cfg = test_config(cache.path());
        let cached = dataset_paths(&source, &cfg).unwrap().archive;
        fs::create_dir_all(cache.path().join("archive")).unwrap();
        fs::write(&cached, &bad).unwrap();
        let root = untar_data(&source, &cfg).unwrap();
        assert_tree(&root, &files);
        assert_eq!(fs::read(&cached).unwrap(), archive);
        expected_requests += 1;
        assert_eq!(server.count(), expected_requests);
    }
}

#[test]
fn a_corrupt_download_is_an_error_and_is_removed() {
    let server = Server::start(|_, req| Reply::file(req, b"this is not gzip at all", true));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let source = Source::Url(server.url("/bad.tgz"));
    let err = untar_data(&source, &cfg).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(
        server.count(),
        1,
        "a fresh download that is corrupt is not fetched again in a loop"
    );
    assert_eq!(
        names(&cache.path().join("archive")),
        [lock_name(&dataset_paths(&source, &cfg).unwrap().archive)]
    );
    assert!(names(&cache.path().join("data")).is_empty());
}

#[test]
fn unsafe_archives_are_refused_through_untar_data() {
    let evil = tgz(&[
        file("data/ok.txt", b"fine"),
        file("../evil.txt", b"x"),
        symlink("data/l", "/etc"),
    ]);
    let body = evil.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let top = tempfile::tempdir().unwrap();
    let cache = top.path().join("cache");
    let err = untar_data(&Source::Url(server.url("/evil.tgz")), &test_config(&cache)).unwrap_err();
    assert!(
        matches!(&err, Error::UnsafeEntry { entry, .. } if entry == "../evil.txt"),
        "{err}"
    );
    assert_eq!(names(top.path()), ["cache"]);
    assert!(
        names(&cache.join("data")).is_empty(),
        "{:?}",
        names(&cache.join("data"))
    );
}

#[test]
fn several_top_level_entries_stay_together_under_the_stem() {
    let archive = tgz(&[file("a.txt", b"a"), dir("b/"), file("b/c.txt", b"c")]);
    let body = archive.clone();
    let server = Server::start(move |_, req| Reply::file(req, &body, true));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let source = Source::Url(server.url("/two.tar.gz"));
    let root = untar_data(&source, &cfg).unwrap();
    assert_eq!(root, dataset_paths(&source, &cfg).unwrap().data);
    assert_tree(
        &root,
        &[
            ("a.txt".into(), b"a".to_vec()),
            ("b/c.txt".into(), b"c".to_vec()),
        ],
    );
}

#[test]
fn two_threads_at_once_download_once() {
    let (archive, files) = pets_like();
    let body = archive.clone();
    // Slow enough that the second thread arrives while the first is still downloading.
    let server = Arc::new(Server::start(move |_, req| {
        Reply::file(req, &body, true).slow(Duration::from_millis(15))
    }));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let source = checked(
        server.url("/pets.tgz"),
        &archive,
        Checksum::Md5(md5_hex(&archive)),
    );
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (cfg, source, barrier) = (cfg.clone(), source.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                untar_data(&source, &cfg)
            })
        })
        .collect();
    let roots: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(roots[0], roots[1]);
    assert_tree(&roots[0], &files);
    assert_eq!(server.count(), 1, "the dataset was downloaded once");
    assert_eq!(
        names(&cache.path().join("data")),
        [base_name(&dataset_paths(&source, &cfg).unwrap().data)]
    );
}

#[test]
fn an_extracted_fastai_dataset_is_reused_without_network() {
    let fastai = tempfile::tempdir().unwrap();
    let theirs = fastai.path().join("data/oxford-iiit-pet");
    fs::create_dir_all(theirs.join("images")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        fastai_dir: Some(fastai.path().to_path_buf()),
        ..test_config(cache.path())
    };
    assert_eq!(
        untar_data(&Source::Known(Dataset::Pets), &cfg).unwrap(),
        theirs
    );
    assert!(
        !cache.path().join("archive").exists(),
        "nothing was written to our cache"
    );
    // fastai's cache is keyed by file name alone: another URL ending in the same name is not
    // given fastai's folder, so it goes to the network (closed here).
    let other = Source::Url(closed_port_url("/oxford-iiit-pet.tgz"));
    let err = untar_data(&other, &cfg).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[test]
fn a_downloaded_fastai_archive_is_extracted_without_network_and_left_alone() {
    let (archive, files) = pets_like();
    let fastai = tempfile::tempdir().unwrap();
    fs::create_dir_all(fastai.path().join("archive")).unwrap();
    let theirs = fastai.path().join("archive/oxford-iiit-pet.tgz");
    fs::write(&theirs, &archive).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        fastai_dir: Some(fastai.path().to_path_buf()),
        ..test_config(cache.path())
    };
    // The known Pets URL (so fastai's cache is consulted) with checks this small archive passes;
    // the URL is never fetched.
    let source = checked(
        Dataset::Pets.remote().url,
        &archive,
        Checksum::Md5Prefix(md5_hex(&archive)),
    );
    let known = dataset_paths(&Source::Known(Dataset::Pets), &cfg).unwrap();
    let root = untar_data(&source, &cfg).unwrap();
    assert_eq!(root, known.data);
    assert_eq!(root, cache.path().join("data/oxford-iiit-pet"));
    assert_tree(&root, &files);
    assert_eq!(fs::read(&theirs).unwrap(), archive);
    assert!(!known.archive.exists());

    // Another URL with the same file name and checks does not take fastai's archive.
    let other = checked(
        closed_port_url("/oxford-iiit-pet.tgz"),
        &archive,
        Checksum::Md5Prefix(md5_hex(&archive)),
    );
    let err = untar_data(&other, &cfg).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert_eq!(fs::read(&theirs).unwrap(), archive);
}

#[test]
fn the_pets_url_gets_the_pets_checks() {
    let pets = Dataset::Pets.remote();
    assert_eq!(
        pets.url,
        "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    );
    assert_eq!(pets.size, Some(811_706_944));
    assert_eq!(
        pets.checksum,
        Some(Checksum::Md5Prefix(
            "e4db5c768afd933bb91f5f594d7417a4".into()
        ))
    );
    assert_eq!(Source::Url(pets.url.clone()).remote(), pets);
    let cfg = FetchConfig::in_dir("/cache");
    let paths = dataset_paths(&Source::Known(Dataset::Pets), &cfg).unwrap();
    assert_eq!(
        paths.archive,
        Path::new("/cache/archive/oxford-iiit-pet.tgz")
    );
    assert_eq!(paths.data, Path::new("/cache/data/oxford-iiit-pet"));
    assert_eq!(
        paths.provenance,
        Path::new("/cache/provenance/oxford-iiit-pet.source.json")
    );
    // The known URL given as a plain URL keeps fastai's layout too.
    assert_eq!(dataset_paths(&Source::Url(pets.url), &cfg).unwrap(), paths);
}

#[test]
fn a_cached_pets_archive_of_the_wrong_size_is_fetched_again_from_the_table_url() {
    // The real URL cannot be reached from a test, so the refetch ends in the offline error; what
    // matters is that the bad file was judged by the table's size and removed first.
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        retries: Retries {
            max_attempts: 1,
            ..Retries::default()
        },
        timeouts: Timeouts {
            connect: Duration::from_millis(1),
            read: Duration::from_millis(1),
        },
        ..FetchConfig::in_dir(cache.path())
    };
    // Point the "known" URL at nothing: a Checked source with the table's checks and a dead URL.
    let dead = Source::Checked(RemoteArchive {
        url: closed_port_url("/oxford-iiit-pet.tgz"),
        ..Dataset::Pets.remote()
    });
    let paths = dataset_paths(&dead, &cfg).unwrap();
    fs::create_dir_all(paths.archive.parent().unwrap()).unwrap();
    fs::write(&paths.archive, b"too short").unwrap();
    let err = untar_data(&dead, &cfg).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(
        !paths.archive.exists(),
        "the wrong-size archive was removed"
    );
}
