//! Hostile inputs and faults: files whose headers declare huge images, huge sparse files, empty,
//! truncated and unusual files, non-UTF-8 names, symlink loops, files deleted after listing, and
//! out-of-range settings. Each must be an error naming the file or setting (reported under the
//! Skip/Error policy by the loader), never a panic, an abort or a huge allocation.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use image::{ImageBuffer, ImageFormat, Rgb, RgbImage};
use mix_data::{
    decode_rgb, decode_rgb_bytes_with, decode_rgb_with, load_item, resize_crop, resize_short_side,
    BadImagePolicy, CropPos, DataLoader, DataLoaders, DecodeLimits, Error, LoaderConfig,
    LoaderKind, RegexLabeller, DEFAULT_MAX_FILE_BYTES, MAX_BATCH_BYTES, MAX_BATCH_SIZE,
    MAX_ITEM_SIDE, MAX_PREFETCH, MAX_THREADS,
};

/// Set in a child process of this test binary: the file the child decodes before reporting its
/// peak memory.
const CHILD_ENV: &str = "MIX_DATA_HOSTILE_CHILD_DECODE";

/// Peak resident memory a refused file may cost the child process, which is a whole test
/// binary: far below any decoded hostile image (gigabytes), far above the binary itself.
const MAX_CHILD_PEAK_BYTES: u64 = 200 << 20;

// ---------------------------------------------------------------- crafted files

/// CRC-32 (ISO-HDLC, the PNG and zlib one), bit by bit: only a few short chunks use it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A well-formed PNG (valid CRCs) whose header declares `w x h` 8-bit RGB pixels, followed by a
/// few bytes of image data: small on disk, gigabytes once decoded.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter or interlace.
    png_chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream header and the start of a stored block: the beginning of real image data.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x00, 0x00, 0x80, 0xFF, 0x7F, 0, 0, 0],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A baseline JPEG of `w x h` with `components` 1x1-sampled components (4 means CMYK, marked so
/// with an Adobe APP14 segment) whose blocks are all flat mid-grey (every coefficient 0), or,
/// when `scan` is given, with that scan data instead. Two tiny Huffman tables: code `0` is
/// category 0 (DC) and end-of-block (AC), so each block is the two bits `00`.
fn jpeg_of(w: u16, h: u16, components: u8, scan: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    let mut segment = |marker: u8, data: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&u16::try_from(data.len() + 2).unwrap().to_be_bytes());
        out.extend_from_slice(data);
    };
    if components == 4 {
        // "Adobe", version 100, flags 0, 0, transform 0 (CMYK, not YCCK).
        segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    }
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.push(components);
    for c in 1..=components {
        sof.extend_from_slice(&[c, 0x11, 0]);
    }
    segment(0xC0, &sof);
    // Table class/id, then the number of codes of each length 1..=16, then the symbols.
    for (class, symbols) in [(0x00u8, [0u8, 1]), (0x10, [0x00, 0x01])] {
        let mut dht = vec![class, 1, 1];
        dht.extend_from_slice(&[0u8; 14]);
        dht.extend_from_slice(&symbols);
        segment(0xC4, &dht);
    }
    let mut sos = vec![components];
    for c in 1..=components {
        sos.extend_from_slice(&[c, 0x00]);
    }
    sos.extend_from_slice(&[0, 63, 0]);
    segment(0xDA, &sos);
    let blocks = usize::from(w.div_ceil(8)) * usize::from(h.div_ceil(8)) * usize::from(components);
    match scan {
        Some(s) => out.extend_from_slice(s),
        None => out.extend(vec![0u8; (blocks * 2).div_ceil(8)]),
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

fn encoded(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

#[cfg(unix)]
fn non_utf8(dir: &Path, bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(bytes))
}

// ---------------------------------------------------------------- helpers

/// The decode error for `path`, checked to be one of ours and to name the file.
fn refusal(path: &Path) -> String {
    match decode_rgb(path) {
        Err(e @ (Error::Decode { .. } | Error::Io { .. })) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "the error names the file: {msg}"
            );
            msg
        }
        other => panic!("expected {} to be refused, got {other:?}", path.display()),
    }
}

/// Peak resident memory of this process so far, from /proc/self/status.
#[cfg(target_os = "linux")]
fn peak_rss_bytes() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// In the child: decodes the file named by [`CHILD_ENV`] and prints the outcome and the peak
/// memory for the parent to read. Returns whether this process is the child.
#[cfg(target_os = "linux")]
fn run_as_child() -> bool {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return false;
    };
    let outcome = match decode_rgb(Path::new(&path)) {
        Ok(img) => format!("decoded {}x{}", img.width(), img.height()),
        Err(e) => format!("refused: {e}"),
    };
    println!("child-outcome: {outcome}");
    println!("child-peak-bytes: {}", peak_rss_bytes());
    true
}

/// Runs this test binary again as a child, only test `test`, decoding `path`; returns the
/// child's outcome line and its peak resident memory.
#[cfg(target_os = "linux")]
fn decode_in_child(test: &str, path: &Path) -> (String, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> String {
        stdout
            .lines()
            // The harness prints the test's name on the same line, before the child's output.
            .find_map(|l| l.find(name).map(|i| &l[i + name.len()..]))
            .unwrap_or_else(|| panic!("no `{name}` in the child's output: {stdout}"))
            .trim()
            .to_owned()
    };
    let peak = field("child-peak-bytes:").parse().unwrap();
    (field("child-outcome:"), peak)
}

fn cfg(policy: BadImagePolicy) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        item_size: 16,
        threads: 2,
        prefetch: 1,
        bad_image: policy,
        ..LoaderConfig::default()
    }
}

// ---------------------------------------------------------------- huge headers and files

#[test]
#[cfg(target_os = "linux")]
fn png_header_declaring_100000_squared_pixels_is_refused_without_allocating() {
    if run_as_child() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge_1.png");
    fs::write(&path, png_declaring(100_000, 100_000)).unwrap();
    let msg = refusal(&path);
    assert!(
        msg.contains("100000x100000") && msg.contains("max_pixels"),
        "{msg}"
    );
    let (outcome, peak) = decode_in_child(
        "png_header_declaring_100000_squared_pixels_is_refused_without_allocating",
        &path,
    );
    assert!(outcome.starts_with("refused:"), "{outcome}");
    assert!(peak < MAX_CHILD_PEAK_BYTES, "peak RSS {peak} bytes");
}

#[test]
#[cfg(target_os = "linux")]
fn jpeg_header_declaring_65535_squared_pixels_is_refused_without_allocating() {
    // 65535 is the largest side a JPEG header can declare (100000 does not fit in its u16).
    if run_as_child() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge_2.jpg");
    fs::write(&path, jpeg_of(65535, 65535, 3, Some(&[0u8; 64]))).unwrap();
    let msg = refusal(&path);
    assert!(
        msg.contains("65535x65535") && msg.contains("max_pixels"),
        "{msg}"
    );
    let (outcome, peak) = decode_in_child(
        "jpeg_header_declaring_65535_squared_pixels_is_refused_without_allocating",
        &path,
    );
    assert!(outcome.starts_with("refused:"), "{outcome}");
    assert!(peak < MAX_CHILD_PEAK_BYTES, "peak RSS {peak} bytes");
}

#[test]
#[cfg(target_os = "linux")]
fn sparse_3_gb_jpeg_is_refused_by_size_before_reading() {
    if run_as_child() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sparse_3.jpg");
    let f = fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &f, &jpeg_bytes(&pattern_rgb(8, 8))).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);
    let start = Instant::now();
    let msg = refusal(&path);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        msg.contains("3221225472 bytes") && msg.contains("max_file_bytes"),
        "{msg}"
    );
    let (outcome, peak) =
        decode_in_child("sparse_3_gb_jpeg_is_refused_by_size_before_reading", &path);
    assert!(outcome.starts_with("refused:"), "{outcome}");
    assert!(peak < MAX_CHILD_PEAK_BYTES, "peak RSS {peak} bytes");
}

#[test]
fn decode_limits_are_configurable_and_apply_to_bytes_too() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("small_1.png");
    let img = pattern_rgb(20, 10);
    img.save_with_format(&path, ImageFormat::Png).unwrap();
    assert_eq!(decode_rgb(&path).unwrap(), img);
    let few_pixels = DecodeLimits {
        max_pixels: 199,
        ..DecodeLimits::default()
    };
    let msg = decode_rgb_with(&path, &few_pixels).unwrap_err().to_string();
    assert!(
        msg.contains("20x10 = 200 pixels") && msg.contains("199"),
        "{msg}"
    );
    let exact = DecodeLimits {
        max_pixels: 200,
        ..DecodeLimits::default()
    };
    assert_eq!(decode_rgb_with(&path, &exact).unwrap(), img);

    let len = fs::metadata(&path).unwrap().len();
    let few_bytes = DecodeLimits {
        max_file_bytes: len - 1,
        ..DecodeLimits::default()
    };
    let msg = decode_rgb_with(&path, &few_bytes).unwrap_err().to_string();
    assert!(msg.contains(&format!("{len} bytes")), "{msg}");
    let bytes = fs::read(&path).unwrap();
    assert!(matches!(
        decode_rgb_bytes_with(&bytes, &path, &few_bytes),
        Err(Error::Decode { .. })
    ));
    assert_eq!(
        DecodeLimits::default().max_file_bytes,
        DEFAULT_MAX_FILE_BYTES
    );

    for bad in [
        DecodeLimits {
            max_pixels: 0,
            ..DecodeLimits::default()
        },
        DecodeLimits {
            max_file_bytes: u64::MAX,
            ..DecodeLimits::default()
        },
    ] {
        let err = decode_rgb_with(&path, &bad).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}

// ---------------------------------------------------------------- odd but real files

#[test]
fn empty_and_truncated_files_are_refused_with_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for name in ["empty_1.jpg", "empty_2.png", "empty_3.gif"] {
        fs::write(d.join(name), b"").unwrap();
        assert!(refusal(&d.join(name)).contains("empty"));
    }
    let png = encoded(&pattern_rgb(64, 48), ImageFormat::Png);
    for (k, cut) in [8, 20, 40, png.len() / 2, png.len() - 13]
        .into_iter()
        .enumerate()
    {
        let p = d.join(format!("trunc_png_{k}.png"));
        fs::write(&p, &png[..cut]).unwrap();
        refusal(&p);
    }
    let gif = encoded(&pattern_rgb(64, 48), ImageFormat::Gif);
    for (k, cut) in [6, 13, 30, gif.len() / 2, gif.len() - 5]
        .into_iter()
        .enumerate()
    {
        let p = d.join(format!("trunc_gif_{k}.gif"));
        fs::write(&p, &gif[..cut]).unwrap();
        refusal(&p);
    }
    // Without only its trailer byte every pixel is there: it decodes exactly like the whole file.
    let p = d.join("no_trailer_1.gif");
    fs::write(&p, &gif[..gif.len() - 1]).unwrap();
    let whole = d.join("whole_1.gif");
    fs::write(&whole, &gif).unwrap();
    assert_eq!(decode_rgb(&p).unwrap(), decode_rgb(&whole).unwrap());
}

#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cmyk_1.jpg");
    fs::write(&path, jpeg_of(16, 8, 4, None)).unwrap();
    // The decoder converts CMYK to RGB; flat input gives a flat image.
    let img = decode_rgb(&path).unwrap();
    assert_eq!(img.dimensions(), (16, 8));
    let first = *img.get_pixel(0, 0);
    assert!(img.pixels().all(|p| *p == first), "{img:?}");
    // Its three-component twin decodes to the mid-grey every coefficient 0 means.
    let gray_path = tmp.path().join("ycc_1.jpg");
    fs::write(&gray_path, jpeg_of(16, 8, 3, None)).unwrap();
    let ycc = decode_rgb(&gray_path).unwrap();
    assert!(ycc.pixels().all(|p| p.0 == [128, 128, 128]), "{ycc:?}");
}

#[test]
fn sixteen_bit_png_rounds_to_eight_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("deep_1.png");
    let img: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(64, 4, |x, y| {
        let v = (x * 1031 + y * 16411) as u16;
        Rgb([v, 65535 - v, v / 2])
    });
    img.save_with_format(&path, ImageFormat::Png).unwrap();
    let got = decode_rgb(&path).unwrap();
    assert_eq!(got.dimensions(), (64, 4));
    for (a, b) in img.pixels().zip(got.pixels()) {
        let want = a.0.map(|v| (f64::from(v) / 257.0).round() as u8);
        assert_eq!(b.0, want, "{:?}", a.0);
    }
}

// ---------------------------------------------------------------- names and file system faults

#[test]
#[cfg(unix)]
fn non_utf8_names_are_refused_by_the_labeller_not_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = non_utf8(tmp.path(), b"caf\xff_1.png");
    let b = non_utf8(tmp.path(), b"caf\xfe_1.png");
    for p in [&a, &b] {
        pattern_rgb(4, 4)
            .save_with_format(p, ImageFormat::Png)
            .unwrap();
        // Decoding does not care about the name.
        assert_eq!(decode_rgb(p).unwrap().dimensions(), (4, 4));
    }
    let labeller = RegexLabeller::new(PETS_PATTERN).unwrap();
    for p in [&a, &b] {
        match labeller.label(p) {
            Err(Error::NonUtf8Name { path }) => assert_eq!(&path, p),
            other => panic!("expected NonUtf8Name, got {other:?}"),
        }
    }
    // A UTF-8 name in a non-UTF-8 folder labels as usual: only the file name is labelled.
    let dir = non_utf8(tmp.path(), b"dir\xff");
    fs::create_dir(&dir).unwrap();
    assert_eq!(labeller.label(&dir.join("pug_3.png")).unwrap(), "pug");

    let mut files = write_pets_like(tmp.path(), &["Bengal", "pug"], 3, 8, 8);
    files.push(b.clone());
    let err =
        DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(BadImagePolicy::Skip)).unwrap_err();
    assert!(matches!(err, Error::NonUtf8Name { .. }), "{err}");
    assert!(err.to_string().contains(&b.display().to_string()), "{err}");
}

#[test]
#[cfg(unix)]
fn symlink_loops_folders_and_deleted_files_are_io_errors_with_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::os::unix::fs::symlink(d.join("loop_b_1.jpg"), d.join("loop_a_1.jpg")).unwrap();
    std::os::unix::fs::symlink(d.join("loop_a_1.jpg"), d.join("loop_b_1.jpg")).unwrap();
    let msg = refusal(&d.join("loop_a_1.jpg"));
    assert!(msg.contains("cannot read"), "{msg}");

    let deleted = d.join("gone_1.jpg");
    write_jpeg(&deleted, &pattern_rgb(8, 8));
    fs::remove_file(&deleted).unwrap();
    assert!(matches!(decode_rgb(&deleted), Err(Error::Io { .. })));

    let folder = d.join("folder_1.jpg");
    fs::create_dir(&folder).unwrap();
    assert!(refusal(&folder).contains("regular file"));
}

// ---------------------------------------------------------------- the loader's policies

/// Good files of two classes plus one of every hostile kind, each named so the pattern labels
/// it; returns the folder, every file with its class, and the hostile ones.
fn hostile_dataset() -> (tempfile::TempDir, Vec<PathBuf>, Vec<usize>, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good = write_pets_like(d, &["Bengal", "pug"], 5, 24, 16);
    let mut bad = Vec::new();
    let mut add = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        fs::write(&p, bytes).unwrap();
        bad.push(p);
    };
    add("Bengal_90.png", &png_declaring(100_000, 100_000));
    add("Bengal_91.jpg", &jpeg_of(65535, 65535, 3, Some(&[0u8; 64])));
    add("Bengal_92.jpg", b"");
    let png = encoded(&pattern_rgb(40, 30), ImageFormat::Png);
    add("pug_90.png", &png[..png.len() / 2]);
    let gif = encoded(&pattern_rgb(40, 30), ImageFormat::Gif);
    add("pug_91.gif", &gif[..gif.len() / 2]);
    let sparse = d.join("pug_92.jpg");
    let f = fs::File::create(&sparse).unwrap();
    std::io::Write::write_all(&mut &f, &jpeg_bytes(&pattern_rgb(8, 8))).unwrap();
    f.set_len(3 << 30).unwrap();
    bad.push(sparse);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.join("pug_94.jpg"), d.join("pug_93.jpg")).unwrap();
        std::os::unix::fs::symlink(d.join("pug_93.jpg"), d.join("pug_94.jpg")).unwrap();
        bad.push(d.join("pug_93.jpg"));
        let odd = non_utf8(d, b"pug_\xff95.png");
        fs::write(&odd, &png[..png.len() / 3]).unwrap();
        bad.push(odd);
    }
    // Deleted after it was listed.
    let gone = d.join("pug_96.jpg");
    write_jpeg(&gone, &pattern_rgb(24, 16));
    bad.push(gone.clone());
    // Unusual but valid: decoded, not skipped.
    let cmyk = d.join("Bengal_93.jpg");
    fs::write(&cmyk, jpeg_of(24, 16, 4, None)).unwrap();
    let deep = d.join("pug_97.png");
    ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(24, 16, |x, y| {
        Rgb([x as u16 * 999, y as u16 * 3000, 7])
    })
    .save_with_format(&deep, ImageFormat::Png)
    .unwrap();

    let mut files: Vec<PathBuf> = good.into_iter().chain([cmyk, deep]).collect();
    files.extend(bad.iter().cloned());
    let labels = files
        .iter()
        .map(|f| {
            usize::from(
                f.file_name()
                    .unwrap()
                    .as_encoded_bytes()
                    .starts_with(b"pug"),
            )
        })
        .collect();
    fs::remove_file(&gone).unwrap();
    (tmp, files, labels, bad)
}

#[test]
fn every_hostile_file_is_skipped_and_reported_with_its_path() {
    let (_tmp, files, labels, bad) = hostile_dataset();
    let n_good = files.len() - bad.len();
    let dl = DataLoader::new(files, labels, LoaderKind::Valid, &cfg(BadImagePolicy::Skip)).unwrap();
    let start = Instant::now();
    let batches: Vec<_> = dl.epoch(0).map(Result::unwrap).collect();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), n_good);
    let skipped = dl.skipped();
    let got: BTreeSet<&PathBuf> = skipped.iter().map(|s| &s.path).collect();
    let want: BTreeSet<&PathBuf> = bad.iter().collect();
    assert_eq!(got, want);
    for s in &skipped {
        assert!(
            s.reason.contains(&s.path.display().to_string()),
            "{}: {}",
            s.path.display(),
            s.reason
        );
    }
    assert_eq!(dl.len_items(), n_good);
    // The next epoch leaves them out before decoding and gives the same batches.
    let again: Vec<_> = dl.epoch(0).map(Result::unwrap).collect();
    assert_eq!(again, batches);
}

#[test]
fn every_hostile_file_ends_the_epoch_with_its_path_under_error() {
    let (_tmp, files, labels, bad) = hostile_dataset();
    for b in &bad {
        let k = files.iter().position(|f| f == b).unwrap();
        // One good item first, then the bad one.
        let items = vec![files[0].clone(), b.clone()];
        let dl = DataLoader::new(
            items,
            vec![labels[0], labels[k]],
            LoaderKind::Valid,
            &LoaderConfig {
                batch_size: 1,
                ..cfg(BadImagePolicy::Error)
            },
        )
        .unwrap();
        let results: Vec<_> = dl.epoch(0).collect();
        assert_eq!(results.len(), 2, "{}", b.display());
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err();
        assert!(
            matches!(err, Error::Decode { .. } | Error::Io { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&b.display().to_string()), "{err}");
    }
}

#[test]
fn a_tiny_in_flight_budget_gives_the_same_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_pets_like(tmp.path(), &["Bengal", "pug"], 6, 40, 24);
    let labels: Vec<usize> = (0..files.len()).map(|i| i / 6).collect();
    let base = LoaderConfig {
        threads: 1,
        ..cfg(BadImagePolicy::Error)
    };
    let want: Vec<_> = DataLoader::new(files.clone(), labels.clone(), LoaderKind::Train, &base)
        .unwrap()
        .epoch(3)
        .map(Result::unwrap)
        .collect();
    for cache_decoded in [false, true] {
        // One byte: every image is larger than the budget, so the threads decode one at a time.
        let tight = LoaderConfig {
            threads: 4,
            max_in_flight_bytes: 1,
            cache_decoded,
            ..base.clone()
        };
        let dl = DataLoader::new(files.clone(), labels.clone(), LoaderKind::Train, &tight).unwrap();
        let got: Vec<_> = dl.epoch(3).map(Result::unwrap).collect();
        if cache_decoded {
            // The training cache crops from a resized copy: same shapes and labels.
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.labels, w.labels);
                assert_eq!(g.images.shape(), w.images.shape());
            }
        } else {
            assert_eq!(got, want);
        }
    }
}

// ---------------------------------------------------------------- settings out of range

/// The config error of `cfg`, checked to name `needles` (the setting, its value, the limit).
fn config_error(cfg: &LoaderConfig, needles: &[&str]) {
    let items = vec![PathBuf::from("a_1.jpg")];
    for err in [
        DataLoader::new(items.clone(), vec![0], LoaderKind::Train, cfg).unwrap_err(),
        DataLoaders::from_name_re(&items, PETS_PATTERN, cfg).unwrap_err(),
        cfg.validate().unwrap_err(),
    ] {
        assert!(matches!(err, Error::Config(_)), "{err}");
        let msg = err.to_string();
        for n in needles {
            assert!(msg.contains(n), "`{n}` in {msg}");
        }
    }
}

#[test]
fn huge_sizes_are_config_errors_not_panics() {
    let max_side = MAX_ITEM_SIDE.to_string();
    for size in [MAX_ITEM_SIDE + 1, 100_000, 4_294_967_295, usize::MAX] {
        let c = LoaderConfig {
            item_size: size,
            ..LoaderConfig::default()
        };
        config_error(&c, &["item_size", &size.to_string(), &max_side]);
    }
    let ok = LoaderConfig {
        item_size: MAX_ITEM_SIDE,
        batch_size: 1,
        ..LoaderConfig::default()
    };
    ok.validate().unwrap();
    let c = LoaderConfig {
        batch_size: usize::MAX,
        ..LoaderConfig::default()
    };
    config_error(
        &c,
        &[
            "batch_size",
            &usize::MAX.to_string(),
            &MAX_BATCH_SIZE.to_string(),
        ],
    );
    let c = LoaderConfig {
        batch_size: 1000,
        item_size: MAX_ITEM_SIDE,
        ..LoaderConfig::default()
    };
    config_error(&c, &["batch_size 1000", &MAX_BATCH_BYTES.to_string()]);
    let c = LoaderConfig {
        threads: usize::MAX,
        ..LoaderConfig::default()
    };
    config_error(&c, &["threads", &MAX_THREADS.to_string()]);
    let c = LoaderConfig {
        prefetch: usize::MAX,
        ..LoaderConfig::default()
    };
    config_error(&c, &["prefetch", &MAX_PREFETCH.to_string()]);
    let c = LoaderConfig {
        max_in_flight_bytes: 0,
        ..LoaderConfig::default()
    };
    config_error(&c, &["max_in_flight_bytes"]);
    let c = LoaderConfig {
        decode: DecodeLimits {
            max_pixels: u64::MAX,
            ..DecodeLimits::default()
        },
        ..LoaderConfig::default()
    };
    config_error(&c, &["max_pixels", &u64::MAX.to_string()]);

    // The single-item functions check the size before allocating or decoding.
    let img = pattern_rgb(8, 8);
    for size in [0, MAX_ITEM_SIDE + 1, 4_294_967_295, usize::MAX] {
        assert!(matches!(
            resize_crop(&img, size, CropPos::CENTER),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            resize_short_side(&img, size),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            load_item(Path::new("missing_1.jpg"), size, CropPos::CENTER),
            Err(Error::Config(_))
        ));
    }
    // A thin strip whose short-side resize would be gigantic is refused, not allocated.
    let strip = RgbImage::new(4000, 1);
    let err = resize_short_side(&strip, MAX_ITEM_SIDE).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}
