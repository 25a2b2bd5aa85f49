//! fetch_file against a loopback server started by each test: a ResNet18-shaped `.safetensors`
//! file is downloaded, checked against its SHA-256, resumed, cached, locked, and put in place by
//! hand when offline.

mod common;

use std::fs;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use mix_fetch::{fetch_file, file_path, Error, FetchConfig, RemoteFile, Retries};
use safetensors::SafeTensors;

/// A server that answers every request with the weights file, honouring `Range`.
fn weights_server() -> Server {
    let body = resnet18_safetensors();
    Server::start(move |_, req| Reply::file(req, body, true))
}

/// The weights at `url`, checked against their real SHA-256.
fn weights_at(url: &str) -> RemoteFile {
    RemoteFile::from_url(url, Some(&sha256_hex(resnet18_safetensors()))).unwrap()
}

#[test]
fn the_test_file_has_resnet18_names_and_shapes() {
    let st = SafeTensors::deserialize(resnet18_safetensors()).unwrap();
    let expected = resnet18_tensors();
    assert_eq!(st.len(), expected.len());
    assert_eq!(expected.len(), 102);
    for (name, shape) in &expected {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    }
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    assert_eq!(shape("conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape("layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape("layer4.1.conv2.weight"), [512, 512, 3, 3]);
    assert_eq!(shape("fc.weight"), [1000, 512]);
    // torchvision's resnet18 has 11,689,512 learnable parameters.
    let learnable: usize = expected
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(learnable, 11_689_512);
}

#[test]
fn happy_path_downloads_verifies_and_renames_into_place() {
    let server = weights_server();
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let url = server.url("/timm/resnet18.tv_in1k/resolve/abc/model.safetensors");
    let remote = weights_at(&url);

    let path = fetch_file(&remote, &cfg).unwrap();
    assert_eq!(path, file_path(&remote, &cfg));
    assert_eq!(path, cache.path().join("models").join(&remote.file_name));
    assert!(remote.file_name.ends_with("-model.safetensors"));
    assert_eq!(fs::read(&path).unwrap(), resnet18_safetensors());
    assert_eq!(
        names(&cache.path().join("models")),
        [
            remote.file_name.clone(),
            format!("{}.lock", remote.file_name)
        ],
        "no .part file is left"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path,
        "/timm/resnet18.tv_in1k/resolve/abc/model.safetensors"
    );
    assert_eq!(reqs[0].header("range"), None);
}

#[test]
fn a_checksum_mismatch_names_both_digests_and_caches_nothing() {
    let server = weights_server();
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let url = server.url("/model.safetensors");
    let wrong = sha256_hex(b"some other weights");
    let remote = RemoteFile::from_url(&url, Some(&wrong)).unwrap();

    let err = fetch_file(&remote, &cfg).unwrap_err();
    let found = sha256_hex(resnet18_safetensors());
    match &err {
        Error::Mismatch {
            what,
            expected,
            found: f,
            ..
        } => {
            assert_eq!(*what, "sha256");
            assert_eq!(expected, &wrong);
            assert_eq!(f, &found);
        }
        other => panic!("expected Mismatch, got {other}"),
    }
    let msg = err.to_string();
    for part in [&wrong, &found, &url] {
        assert!(msg.contains(part.as_str()), "{msg}");
    }
    assert!(!file_path(&remote, &cfg).exists());
    assert_eq!(
        names(&cache.path().join("models")),
        [format!("{}.lock", remote.file_name)],
        "neither the file nor a .part is kept"
    );
}

#[test]
fn a_dropped_connection_is_resumed_with_range() {
    let body = resnet18_safetensors();
    let half = body.len() / 2;
    let server = Server::start(move |i, req| {
        let reply = Reply::file(req, body, true);
        if i == 0 {
            reply.cut(half)
        } else {
            reply
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let remote = weights_at(&server.url("/model.safetensors"));
    let path = fetch_file(&remote, &test_config(cache.path())).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(fs::read(&path).unwrap(), body);
    SafeTensors::deserialize(&fs::read(&path).unwrap()).unwrap();
}

#[test]
fn offline_error_names_url_and_path_and_a_hand_placed_file_is_used() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = FetchConfig {
        retries: Retries {
            max_attempts: 2,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        },
        ..test_config(cache.path())
    };
    let url = closed_port_url("/timm/resnet18.tv_in1k/resolve/abc/model.safetensors");
    let remote = weights_at(&url);
    let path = file_path(&remote, &cfg);

    let err = fetch_file(&remote, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::FileUnreachable { attempts: 2, path: p, checked: true, .. } if *p == path),
        "{msg}"
    );
    assert!(msg.contains(&url), "{msg}");
    assert!(
        msg.contains(&format!("put the file by hand at {}", path.display())),
        "{msg}"
    );
    assert!(msg.contains("SHA-256 is checked"), "{msg}");
    assert!(!path.exists());

    // Doing what the message says. Nothing listens at the URL, so success means no request.
    fs::write(&path, resnet18_safetensors()).unwrap();
    assert_eq!(fetch_file(&remote, &cfg).unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), resnet18_safetensors());
}

#[test]
fn a_wrong_hand_placed_file_is_removed_and_fetched_again() {
    // Offline: the wrong file is removed, and the error says why it is gone.
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let remote = weights_at(&closed_port_url("/model.safetensors"));
    let path = file_path(&remote, &cfg);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"not the weights").unwrap();
    let err = fetch_file(&remote, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::FileUnreachable { .. }), "{msg}");
    assert!(
        msg.contains("had the wrong sha256") && msg.contains(&sha256_hex(b"not the weights")),
        "{msg}"
    );
    assert!(!path.exists());

    // Online: the wrong file is replaced by a download.
    let server = weights_server();
    let remote = weights_at(&server.url("/model.safetensors"));
    let path = file_path(&remote, &cfg);
    fs::write(&path, b"not the weights either").unwrap();
    assert_eq!(fetch_file(&remote, &cfg).unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), resnet18_safetensors());
    assert_eq!(server.count(), 1);
}

#[test]
fn a_second_fetch_downloads_nothing() {
    let server = weights_server();
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let remote = weights_at(&server.url("/model.safetensors"));
    let first = fetch_file(&remote, &cfg).unwrap();
    assert_eq!(server.count(), 1);
    let second = fetch_file(&remote, &cfg).unwrap();
    assert_eq!(first, second);
    assert_eq!(server.count(), 1, "the cached file was checked and used");
    // Nor does it need the server at all.
    drop(server);
    assert_eq!(fetch_file(&remote, &cfg).unwrap(), first);
}

#[test]
fn without_a_sha256_a_cached_file_is_used_as_it_is() {
    let server = weights_server();
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let remote = RemoteFile::from_url(&server.url("/model.safetensors"), None).unwrap();
    let path = fetch_file(&remote, &cfg).unwrap();
    assert_eq!(fs::read(&path).unwrap(), resnet18_safetensors());
    assert_eq!(fetch_file(&remote, &cfg).unwrap(), path);
    assert_eq!(server.count(), 1);
}

#[test]
fn two_threads_at_once_download_once() {
    let body = resnet18_safetensors();
    // Slow enough that the second thread arrives while the first is still downloading.
    let server = Arc::new(Server::start(move |_, req| {
        Reply::file(req, body, true).slow(Duration::from_micros(200))
    }));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let remote = weights_at(&server.url("/model.safetensors"));
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (cfg, remote, barrier) = (cfg.clone(), remote.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                fetch_file(&remote, &cfg)
            })
        })
        .collect();
    let paths: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(paths[0], paths[1]);
    assert_eq!(paths[0], file_path(&remote, &cfg));
    assert_eq!(fs::read(&paths[0]).unwrap(), body);
    assert_eq!(server.count(), 1, "the file was downloaded once");
}

#[test]
fn not_found_is_a_file_error_naming_url_and_path_without_retries() {
    let server = Server::start(|_, _| Reply::status(404));
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    let url = server.url("/missing/model.safetensors");
    let remote = weights_at(&url);
    let err = fetch_file(&remote, &cfg).unwrap_err();
    assert!(
        matches!(err, Error::FileHttpStatus { status: 404, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains(&url), "{msg}");
    assert!(
        msg.contains(&file_path(&remote, &cfg).display().to_string()),
        "{msg}"
    );
    assert!(!msg.contains("--dataset"), "{msg}");
    assert_eq!(server.count(), 1);
}

#[test]
fn a_file_name_that_is_not_one_plain_component_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = test_config(cache.path());
    for name in ["../escape.safetensors", "a/b.safetensors", ""] {
        let remote = RemoteFile {
            file_name: name.to_string(),
            ..weights_at(&closed_port_url("/model.safetensors"))
        };
        let err = fetch_file(&remote, &cfg).unwrap_err();
        assert!(matches!(err, Error::BadUrl { .. }), "{name}: {err}");
    }
    let remote = RemoteFile {
        sha256: Some("abc".to_string()),
        ..weights_at(&closed_port_url("/model.safetensors"))
    };
    let err = fetch_file(&remote, &cfg).unwrap_err();
    assert!(matches!(err, Error::BadChecksum { .. }), "{err}");
    assert!(!cache.path().join("models").exists(), "nothing was written");
}
