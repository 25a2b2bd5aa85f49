//! The one error type of mix-cli: what a user typed, pointed at or set, and why it cannot be used.

use std::path::PathBuf;

/// Why a command line, a config file, a dataset or weights cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option's value or a combination of options is refused; the message names the option.
    #[error("{0}")]
    Usage(String),
    /// clap refused the command line (unknown option, unreadable number, ...), or `--help` or
    /// `--version` was asked for: [`clap::Error::exit`] prints it with the right exit status.
    #[error("{}", .0.render().to_string().trim_end())]
    Clap(#[from] clap::Error),
    /// A `--config` file cannot be read or holds something the command does not take.
    #[error("--config {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Downloading or extracting failed; `context` says what was being fetched.
    #[error("{context}")]
    Fetch {
        /// What was being fetched and what the user can do instead.
        context: String,
        /// mix-fetch's error, which names the URL and the path.
        #[source]
        source: Box<mix_fetch::Error>,
    },
    /// mix-fetch failed without more to add.
    #[error(transparent)]
    FetchPlain(Box<mix_fetch::Error>),
    /// Listing or labelling the images failed; `context` says which folder.
    #[error("{context}")]
    Data {
        /// What was being read.
        context: String,
        /// mix-data's error.
        #[source]
        source: Box<mix_data::Error>,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] mix_io::Error),
    /// A data-parallel variable (torchrun's `RANK`, `WORLD_SIZE`, ..., or `MIX_DIST_TIMEOUT`) is
    /// missing or cannot be read; the message gives its value and what was expected.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value and what was expected.
        message: String,
    },
    /// Starting or waiting for a launched rank's process failed; `context` says which.
    #[error("{context}")]
    Launch {
        /// What was being done, naming the program and the rank.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl From<mix_fetch::Error> for Error {
    fn from(e: mix_fetch::Error) -> Error {
        Error::FetchPlain(Box::new(e))
    }
}

impl Error {
    /// An [`Error::Usage`] from a message.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }
}

/// mix-cli's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `return Err(Error::Usage(format!(...)))`.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::Error::Usage(format!($($arg)*)))
    };
}
pub(crate) use usage;
