//! The little test harness of mix-dist's multi-process tests (harness = false): each test binary is
//! both the parent, which runs the tests and prints libtest's lines, and the ranks it starts again.

use std::time::Instant;

/// One test: its name, and its body (`None`: reported as ignored, with the reason).
pub struct Case {
    pub name: &'static str,
    pub body: fn(),
    pub ignored: Option<&'static str>,
}

/// The names given on the command line, leaving out libtest's options and their values (gpu-pack's
/// run.sh passes `--test-threads 1`).
fn filters() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if matches!(
            a.as_str(),
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile"
        ) {
            args.next();
        } else if !a.starts_with('-') {
            out.push(a);
        }
    }
    out
}

/// Runs the cases that match the command line's names (all without names), prints one libtest line
/// each and libtest's summary line (which `cargo xtask test` counts), and exits 1 when one failed.
pub fn run(cases: &[Case]) {
    let filters = filters();
    let all = Instant::now();
    let (mut passed, mut failed, mut ignored, mut filtered) = (0, 0, 0, 0);
    for case in cases {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        if let Some(why) = case.ignored {
            println!("test {} ... ignored, {why}", case.name);
            ignored += 1;
            continue;
        }
        let started = Instant::now();
        let ok = std::panic::catch_unwind(case.body).is_ok();
        println!(
            "test {} ... {} ({:.1} s)",
            case.name,
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        passed += usize::from(ok);
        failed += usize::from(!ok);
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; \
         {filtered} filtered out; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        all.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
