//! The data-parallel launcher and torchrun's variables: real child processes (`/bin/sh` scripts
//! that need no libtorch) for `launch`, a map of variables for `DistEnv::from_vars`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use mix_cli::launch::{launch_with_log, DEFAULT_DIST_TIMEOUT, DEFAULT_GRACE};
use mix_cli::{DistEnv, LaunchOptions, LaunchOutcome};

/// Runs `script` under `/bin/sh -c` as `nproc` ranks; the script's `$1` is `dir`. Returns the
/// outcome and the launcher's lines.
fn run_sh(script: &str, dir: &Path, nproc: usize, opts: &LaunchOptions) -> (LaunchOutcome, String) {
    let args: Vec<OsString> = vec![
        "-c".into(),
        script.into(),
        "sh".into(),
        dir.as_os_str().to_owned(),
    ];
    let mut log = Vec::new();
    let outcome = launch_with_log(Path::new("/bin/sh"), &args, nproc, opts, &mut log).unwrap();
    (outcome, String::from_utf8(log).unwrap())
}

fn short_grace() -> LaunchOptions {
    LaunchOptions {
        grace: Duration::from_secs(1),
        timeout: None,
    }
}

#[test]
fn every_rank_gets_its_own_variables_and_the_same_rendezvous() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"env | grep -E '^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|MIX_DIST_TIMEOUT|OMP_NUM_THREADS)=' > "$1/rank$RANK.tmp" && mv "$1/rank$RANK.tmp" "$1/rank$RANK""#;
    let opts = LaunchOptions {
        timeout: Some(Duration::from_secs(7)),
        ..short_grace()
    };
    let (outcome, log) = run_sh(script, dir.path(), 3, &opts);
    assert_eq!(
        outcome,
        LaunchOutcome {
            code: 0,
            first_failure: None
        }
    );
    assert!(outcome.success());
    assert_eq!(log, "");
    let mut ports = Vec::new();
    for rank in 0..3 {
        let text = std::fs::read_to_string(dir.path().join(format!("rank{rank}"))).unwrap();
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        // Each child reads back the place launch gave it.
        let env = DistEnv::from_vars(|name| vars.get(name).map(OsString::from))
            .unwrap()
            .unwrap();
        assert_eq!(
            (env.rank, env.world, env.local_rank, env.local_world),
            (rank, 3, rank, 3)
        );
        assert_eq!(env.master_addr, "127.0.0.1");
        assert_eq!(env.timeout, Duration::from_secs(7));
        // torchrun's default against oversubscription, unless the caller chose a thread count.
        let omp = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "1".into());
        assert_eq!(vars.get("OMP_NUM_THREADS"), Some(&omp.as_str()), "{text}");
        ports.push(env.master_port);
    }
    assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
}

#[test]
fn one_process_is_a_world_of_one_through_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo "$RANK/$WORLD_SIZE/${OMP_NUM_THREADS-unset}" > "$1/out""#;
    let (outcome, _) = run_sh(script, dir.path(), 1, &short_grace());
    assert_eq!(outcome.code, 0);
    let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
    let omp = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    assert_eq!(out.trim(), format!("0/1/{omp}"));
}

#[test]
fn a_failed_ranks_code_is_passed_on_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, log) = run_sh(
        r#"if [ "$RANK" = 1 ]; then exit 3; fi"#,
        dir.path(),
        3,
        &short_grace(),
    );
    assert_eq!(outcome.code, 3);
    let failure = outcome.first_failure.unwrap();
    assert_eq!((failure.rank, failure.status.code()), (1, Some(3)));
    assert_eq!(log, "launch: rank 1 exited with status exit status: 3\n");
}

#[test]
fn the_first_failure_decides_the_code() {
    let dir = tempfile::tempdir().unwrap();
    // Rank 2 fails at once; rank 0 fails after it with another code.
    let script = r#"case "$RANK" in 2) exit 5;; 0) sleep 0.3; exit 4;; esac"#;
    let (outcome, log) = run_sh(script, dir.path(), 3, &short_grace());
    assert_eq!(
        (outcome.code, outcome.first_failure.map(|f| f.rank)),
        (5, Some(2))
    );
    assert_eq!(
        log,
        "launch: rank 2 exited with status exit status: 5\n\
         launch: rank 0 exited with status exit status: 4\n"
    );
}

#[cfg(unix)]
#[test]
fn a_signal_death_is_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, log) = run_sh(
        r#"if [ "$RANK" = 0 ]; then kill -9 $$; fi"#,
        dir.path(),
        2,
        &short_grace(),
    );
    assert_eq!(outcome.code, 128 + 9);
    assert!(
        log.starts_with("launch: rank 0 exited with status signal: 9"),
        "{log}"
    );
}

#[test]
fn ranks_still_running_after_the_grace_period_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    // `exec` so that the kill reaches sleep itself and leaves nothing behind.
    let (outcome, log) = run_sh(
        r#"if [ "$RANK" = 0 ]; then exit 1; fi; exec sleep 60"#,
        dir.path(),
        2,
        &short_grace(),
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        (outcome.code, outcome.first_failure.map(|f| f.rank)),
        (1, Some(0))
    );
    assert_eq!(
        log,
        "launch: rank 0 exited with status exit status: 1\n\
         launch: rank 1 still running 1s after rank 0 failed; killing it\n"
    );
}

#[test]
fn ranks_that_end_within_the_grace_period_are_not_killed() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let script = r#"if [ "$RANK" = 0 ]; then exit 2; fi; sleep 0.3; echo done > "$1/rank$RANK""#;
    let opts = LaunchOptions {
        grace: Duration::from_secs(30),
        timeout: None,
    };
    let (outcome, log) = run_sh(script, dir.path(), 2, &opts);
    // Returned when rank 1 ended, not at the end of the grace period.
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.code, 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("rank1")).unwrap(),
        "done\n"
    );
    assert_eq!(log, "launch: rank 0 exited with status exit status: 2\n");
}

#[test]
fn a_program_that_cannot_start_is_named() {
    let err = launch_with_log(
        Path::new("/no/such/mix-train"),
        &[],
        2,
        &LaunchOptions::default(),
        &mut Vec::new(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cannot start rank 0 of 2: /no/such/mix-train"),
        "{message}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn zero_processes_and_bad_timeouts_are_refused() {
    let sh = Path::new("/bin/sh");
    let err = launch_with_log(sh, &[], 0, &LaunchOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("--nproc 0: expected at least 1"),
        "{err}"
    );
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(86_401),
    ] {
        let opts = LaunchOptions {
            timeout: Some(timeout),
            ..LaunchOptions::default()
        };
        let err = launch_with_log(sh, &[], 1, &opts, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected whole seconds from 1 to 86400"),
            "{timeout:?}: {err}"
        );
    }
}

#[test]
fn the_defaults_are_torchruns_and_ours() {
    assert_eq!(LaunchOptions::default().grace, DEFAULT_GRACE);
    assert_eq!(DEFAULT_GRACE, Duration::from_secs(30));
    assert_eq!(DEFAULT_DIST_TIMEOUT, Duration::from_secs(300));
}

/// `DistEnv::from_vars` over `pairs`.
fn read(pairs: &[(&str, &str)]) -> mix_cli::Result<Option<DistEnv>> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    DistEnv::from_vars(|name| map.get(name).cloned())
}

const FULL: &[(&str, &str)] = &[
    ("RANK", "2"),
    ("WORLD_SIZE", "4"),
    ("LOCAL_RANK", "0"),
    ("LOCAL_WORLD_SIZE", "2"),
    ("MASTER_ADDR", "10.0.0.1"),
    ("MASTER_PORT", "29500"),
    ("MIX_DIST_TIMEOUT", "60"),
];

/// `FULL` with `name` set to `value` (`None`: removed).
fn with(name: &'static str, value: Option<&str>) -> Vec<(&'static str, String)> {
    FULL.iter()
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| (*k, v.to_string()))
        .chain(value.map(|v| (name, v.to_string())))
        .collect()
}

fn refusal(pairs: &[(&'static str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match read(&pairs) {
        Ok(env) => panic!("{pairs:?} was accepted: {env:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn no_rank_and_no_world_size_is_a_single_process() {
    assert_eq!(read(&[]).unwrap(), None);
    assert_eq!(
        read(&[("MASTER_ADDR", "x"), ("LOCAL_RANK", "junk")]).unwrap(),
        None
    );
}

#[test]
fn torchruns_variables_are_read() {
    let env = read(FULL).unwrap().unwrap();
    assert_eq!(
        env,
        DistEnv {
            rank: 2,
            world: 4,
            local_rank: 0,
            local_world: 2,
            master_addr: "10.0.0.1".into(),
            master_port: 29500,
            timeout: Duration::from_secs(60),
        }
    );
    assert!(!env.is_main());
    // What vars() writes reads back the same.
    let vars = env.vars();
    let round = DistEnv::from_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| OsString::from(v))
    })
    .unwrap();
    assert_eq!(round, Some(env));
}

#[test]
fn local_ranks_and_the_timeout_have_defaults() {
    let env = read(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "1234"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!((env.local_rank, env.local_world), (1, 2));
    assert_eq!(env.timeout, DEFAULT_DIST_TIMEOUT);
}

#[test]
fn bad_variables_are_refused_by_name_value_and_expectation() {
    for (name, value, want) in [
        (
            "WORLD_SIZE",
            None,
            "environment variable WORLD_SIZE: not set, but RANK is",
        ),
        (
            "WORLD_SIZE",
            Some("0"),
            "WORLD_SIZE=0: expected the number of processes, at least 1",
        ),
        (
            "WORLD_SIZE",
            Some("four"),
            "WORLD_SIZE=\"four\": expected the number of processes",
        ),
        (
            "RANK",
            Some("4"),
            "RANK=4 with WORLD_SIZE=4: expected this process's rank, 0 to 3",
        ),
        (
            "RANK",
            Some("-1"),
            "RANK=\"-1\": expected this process's rank, 0 to 3",
        ),
        ("RANK", Some(""), "RANK=\"\": expected"),
        (
            "LOCAL_WORLD_SIZE",
            Some("5"),
            "LOCAL_WORLD_SIZE=5: expected the processes on this machine, 1 to WORLD_SIZE=4",
        ),
        (
            "LOCAL_RANK",
            Some("2"),
            "LOCAL_RANK=2: expected this process's rank on this machine, 0 to 1",
        ),
        (
            "MASTER_ADDR",
            None,
            "environment variable MASTER_ADDR: not set: expected the host of rank 0",
        ),
        ("MASTER_ADDR", Some(" "), "MASTER_ADDR is empty"),
        (
            "MASTER_PORT",
            None,
            "environment variable MASTER_PORT: not set",
        ),
        (
            "MASTER_PORT",
            Some("65536"),
            "MASTER_PORT=\"65536\": expected a port number from 1 to 65535",
        ),
        (
            "MASTER_PORT",
            Some("0"),
            "MASTER_PORT=\"0\": expected a port number",
        ),
        (
            "MIX_DIST_TIMEOUT",
            Some("0"),
            "MIX_DIST_TIMEOUT=\"0\": expected whole seconds from 1 to 86400",
        ),
        (
            "MIX_DIST_TIMEOUT",
            Some("1.5"),
            "MIX_DIST_TIMEOUT=\"1.5\": expected whole seconds",
        ),
    ] {
        let err = refusal(&with(name, value));
        assert!(err.contains(want), "{name}={value:?}: {err}");
    }
    let err = refusal(&[("WORLD_SIZE", "2".into())]);
    assert!(
        err.contains("environment variable RANK: not set, but WORLD_SIZE is"),
        "{err}"
    );
    // LOCAL_WORLD_SIZE given, LOCAL_RANK left to its default RANK, which does not fit.
    let err = refusal(&with("LOCAL_RANK", None));
    assert!(err.contains("environment variable LOCAL_RANK: not set, and its default RANK=2 is not below LOCAL_WORLD_SIZE=2"), "{err}");
}

#[cfg(unix)]
#[test]
fn non_utf8_values_are_refused() {
    use std::os::unix::ffi::OsStringExt;
    let err = DistEnv::from_vars(|name| match name {
        "RANK" => Some(OsString::from_vec(b"\xff".to_vec())),
        _ => Some("1".into()),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("environment variable RANK: expected UTF-8 text"),
        "{err}"
    );
}
