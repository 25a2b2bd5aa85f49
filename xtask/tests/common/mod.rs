//! Running the xtask binary as a user does, in a sandbox with its own cache (mix-test-support), and
//! reading what `preview` prints.

// Each test binary uses a different part of this module, re-exports included.
#![allow(dead_code, unused_imports)]

use std::ops::Deref;

pub use mix_test_support::http::{closed_port as dead_port, FileServer};
pub use mix_test_support::{sample_images, Run, SAMPLE_CLASSES};

/// A sandbox whose binary is xtask.
pub struct Sandbox(mix_test_support::Sandbox);

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox(mix_test_support::Sandbox::new(env!("CARGO_BIN_EXE_xtask")))
    }

    /// Runs xtask with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(), args)
    }
}

impl Deref for Sandbox {
    type Target = mix_test_support::Sandbox;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A `.tgz` holding `top/<name>` for each `(name, bytes)`.
pub fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    use mix_test_support::archive::{file, tgz};
    let items: Vec<_> = files
        .iter()
        .map(|(name, bytes)| file(&format!("top/{name}"), bytes))
        .collect();
    tgz(&items)
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
