//! The one error type of mix-dist.

/// Everything that can go wrong while joining or running a data-parallel job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// c10d (the store, Gloo, NCCL or the reducer) reported an error.
    #[error("c10d: {0}")]
    Torch(String),
    /// A setting does not fit (a rank outside the world, a NUL byte in an address).
    #[error("{0}")]
    Invalid(String),
    /// The ranks did not all meet: one never joined, one joined twice, or they disagree on the world size.
    #[error("{0}")]
    Rendezvous(String),
    /// A collective failed while the job ran; the message names the rank that stopped when it is known.
    #[error("{0}")]
    Collective(String),
}

/// A `Result` with mix-dist's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for mix_tch::Error {
    fn from(e: Error) -> Self {
        mix_tch::Error::Collective(e.to_string())
    }
}
