//! The one error type of dcvsm and the exit code each failure ends the process with.
//!
//! The codes are the original CLI's ("Return codes" in its guide): 0 success, 1 the configuration file is
//! missing or unreadable, 2 the command line could not be parsed (clap's own code), 252 an option value is
//! invalid, 253 the configuration is incomplete (no broker URL, no credentials, an unusable CA bundle), 254
//! the broker answered with an error, 255 anything else (the broker unreachable, a file not writable).

use std::path::PathBuf;

/// What went wrong, grouped by the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--conf` names a missing file, or a configuration file cannot be read or parsed.
    #[error("configuration file {}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// An option value the command cannot use (a bad number, an unreadable permissions file).
    #[error("{0}")]
    InvalidArgument(String),
    /// A required setting is missing or unusable.
    #[error("{0}")]
    Configuration(String),
    /// The broker or the authorization server answered with an error status.
    #[error("the {what} answered {status}: {message}")]
    Service {
        /// "broker" or "authorization server".
        what: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The error text of the answer.
        message: String,
    },
    /// Anything else: transport failures, local I/O.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ConfigFile { .. } => 1,
            Error::InvalidArgument(_) => 252,
            Error::Configuration(_) => 253,
            Error::Service { .. } => 254,
            Error::Other(_) => 255,
        }
    }
}

/// Results of dcvsm.
pub type Result<T> = std::result::Result<T, Error>;
