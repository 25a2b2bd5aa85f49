//! Where datasets and files are cached and how patiently they are downloaded.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::extract::ExtractLimits;

/// The environment variable that overrides the cache folder (it then holds `archive/`, `data/` and
/// `models/`).
pub const CACHE_ENV: &str = "MIX_DATA_HOME";

/// fastai's own environment variable for its home folder (default `~/.fastai`).
pub const FASTAI_HOME_ENV: &str = "FASTAI_HOME";

/// The default [`FetchConfig::speed_limit`]: 1 KiB/s, far below any working connection, so that
/// only a server that has all but stopped is given up on.
const DEFAULT_SPEED_LIMIT: u64 = 1024;

/// The default [`FetchConfig::speed_time`]: a minute, long enough to ride out a busy moment.
const DEFAULT_SPEED_TIME: Duration = Duration::from_secs(60);

/// The default [`FetchConfig::deadline_base`]: ten minutes for connecting, retrying and backing
/// off.
const DEFAULT_DEADLINE_BASE: Duration = Duration::from_secs(600);

/// The default [`FetchConfig::deadline_rate`]: 16 KiB/s, which gives Oxford-IIIT Pet (811 MB) about
/// 14 hours: a deadline that only a hopeless transfer reaches.
const DEFAULT_DEADLINE_RATE: u64 = 16 * 1024;

/// Network timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect: Duration,
    /// Longest wait for the response headers, and for each further piece of the body: a stalled
    /// server is given up on after this long, however large the file. A server that trickles
    /// bytes is caught by [`FetchConfig::speed_limit`] instead.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(30),
        }
    }
}

/// How often and how patiently a failing download is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    /// Attempts in a row that may fail without adding a byte to the file before we give up (at
    /// least 1). An attempt that brings the file past its previous length starts the count again.
    pub max_attempts: u32,
    /// The pause after the first failure; it doubles after each further failure.
    pub first_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl Retries {
    /// The pause after `failures` failed attempts in a row (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Everything [`crate::untar_data`] and [`crate::fetch_file`] need to know besides what to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchConfig {
    /// The cache folder: archives go to `archive/`, extracted datasets to `data/`, single files
    /// ([`crate::fetch_file`]) to `models/`.
    pub cache_dir: PathBuf,
    /// fastai's home folder (`~/.fastai`); a dataset already extracted under its `data/`, or an
    /// archive already downloaded to its `archive/`, is used from there. `None` looks nowhere else.
    pub fastai_dir: Option<PathBuf>,
    /// Draw a progress bar (bytes, rate, time left) on stderr while downloading.
    pub progress: bool,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// Retry policy for transient failures.
    pub retries: Retries,
    /// The lowest average rate, in bytes per second over [`FetchConfig::speed_time`], that an
    /// attempt may keep up (curl's `--speed-limit`): a slower attempt is abandoned and retried,
    /// keeping its `.part` file. This catches a server that trickles bytes just often enough to
    /// beat the stall timeout. 0 turns the check off.
    pub speed_limit: u64,
    /// The window the rate of [`FetchConfig::speed_limit`] is averaged over (curl's
    /// `--speed-time`). Zero turns the check off.
    pub speed_time: Duration,
    /// The fixed part of a download's deadline: all attempts of one download together must end
    /// within `deadline_base` plus the bytes still missing divided by
    /// [`FetchConfig::deadline_rate`]. A download past its deadline is given up on at once; its
    /// `.part` file is kept for the next run to resume.
    pub deadline_base: Duration,
    /// The rate, in bytes per second, the deadline allows for each missing byte; 0 turns the
    /// deadline off. The deadline only applies once the file's size is known (from the caller or
    /// the server).
    pub deadline_rate: u64,
    /// How far an archive may expand when extracted (total bytes, ratio, entries).
    pub extract: ExtractLimits,
}

impl FetchConfig {
    /// A configuration caching under `cache_dir`, looking at no fastai folder, with no progress bar
    /// and default timeouts, retries, speed limit and deadline: a starting point for tests and
    /// tools, to adjust with struct update syntax.
    pub fn in_dir(cache_dir: impl Into<PathBuf>) -> FetchConfig {
        FetchConfig {
            cache_dir: cache_dir.into(),
            fastai_dir: None,
            progress: false,
            timeouts: Timeouts::default(),
            retries: Retries::default(),
            speed_limit: DEFAULT_SPEED_LIMIT,
            speed_time: DEFAULT_SPEED_TIME,
            deadline_base: DEFAULT_DEADLINE_BASE,
            deadline_rate: DEFAULT_DEADLINE_RATE,
            extract: ExtractLimits::default(),
        }
    }

    /// The configuration for normal use: cache in `$MIX_DATA_HOME` or else the user cache folder
    /// plus `mix` (`~/.cache/mix` on Linux); reuse fastai's downloads from `$FASTAI_HOME` or else
    /// `~/.fastai`; draw a progress bar.
    pub fn from_env() -> Result<FetchConfig> {
        let cache_dir = match std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => dirs::cache_dir().ok_or(Error::NoCacheDir)?.join("mix"),
        };
        let fastai_dir = match std::env::var_os(FASTAI_HOME_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => dirs::home_dir().map(|home| home.join(".fastai")),
        };
        Ok(FetchConfig {
            fastai_dir,
            progress: true,
            ..FetchConfig::in_dir(cache_dir)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retries {
            max_attempts: 9,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let got: Vec<u128> = (1..=5).map(|n| r.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(r.backoff(u32::MAX), Duration::from_millis(500));
    }
}
