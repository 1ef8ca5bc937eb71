//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can go wrong in gpuimg. Messages name the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The device could not be created on the chosen adapter.
    #[error("could not open GPU device on {adapter}: {reason}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// Why.
        reason: String,
    },
    /// wgpu reported a validation error while running an op.
    #[error("GPU validation error in {op}: {message}")]
    GpuValidation {
        /// The op that was running.
        op: String,
        /// What went wrong, as reported.
        message: String,
    },
    /// The GPU ran out of memory while running an op.
    #[error("GPU out of memory in {op}: {message}")]
    GpuOutOfMemory {
        /// The op that was running.
        op: String,
        /// What went wrong, as reported.
        message: String,
    },
    /// Any other GPU failure (device lost, mapping failure, internal error).
    #[error("GPU failure in {op}: {message}")]
    Gpu {
        /// The op that was running.
        op: String,
        /// What went wrong, as reported.
        message: String,
    },
    /// Arguments of an op do not fit together (shapes, lengths, ranges).
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The op (kernel, model object or pipeline) that refused.
        op: &'static str,
        /// What does not fit, naming the value.
        message: String,
    },
    /// A request is larger than the device (or a decoder limit) allows.
    #[error("{what} needs {needed} bytes but the limit is {limit} bytes")]
    TooLarge {
        /// What was asked for.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// An image could not be read.
    #[error("{}: {reason}", path.display())]
    ImageRead {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An image could not be written.
    #[error("{}: {reason}", path.display())]
    ImageWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A weights file could not be read or does not fit the model.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An unknown name was given where one of a fixed list is expected.
    #[error("unknown {what} '{value}' (valid: {valid})")]
    UnknownValue {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        value: String,
        /// The names accepted.
        valid: String,
    },
    /// Plain I/O failure with the path it concerns. (The OS error is part of
    /// the message, not a `source`: printing the chain would repeat it.)
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// An output exists and was not to be replaced (`--overwrite` not given);
    /// decided when the file is put in place, so concurrent runs never both write.
    #[error("{}: exists, skipped (--overwrite replaces it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The run was stopped by a signal (SIGINT/SIGTERM) before this job ran.
    #[error("interrupted")]
    Interrupted,
}

/// Shorthand for results in gpuimg.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument { op, message: message.into() }
    }
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io { path: path.into(), error }
    }
}
