//! Typed errors for reading model files.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while reading GGUF / safetensors files and model configs.
///
/// Readers never panic on bad input: every malformed byte ends up here with enough context
/// (file, offset, tensor or key name) to tell the user what is wrong.
#[derive(Debug, Error)]
pub enum ModelError {
    /// An I/O error, with what we were doing when it happened.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being read or opened.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file ends before a structure it declares.
    #[error("truncated file: {what} needs {needed} bytes at offset {offset}, but the file has {file_len} bytes")]
    Truncated {
        /// Which structure was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file length.
        file_len: u64,
    },
    /// The file does not start with the GGUF magic.
    #[error("bad magic {found:02x?}: not a GGUF file (expected \"GGUF\")")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A GGUF version this reader does not handle.
    #[error("unsupported GGUF version {version} (supported: 2, 3){hint}")]
    BadVersion {
        /// The version read from the file.
        version: u32,
        /// Extra explanation (e.g. big-endian file).
        hint: String,
    },
    /// A tensor's data range lies (partly) outside the file.
    #[error("tensor `{name}` data [{start}, {end}) is out of bounds (file has {file_len} bytes)")]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// First byte (absolute file offset).
        start: u64,
        /// One past the last byte (absolute file offset; saturated on overflow).
        end: u64,
        /// The file length.
        file_len: u64,
    },
    /// Element or byte counts of a shape overflow 64-bit arithmetic.
    #[error("tensor `{name}` shape {dims:?} overflows")]
    ShapeOverflow {
        /// Tensor name.
        name: String,
        /// The dims as stored in the file.
        dims: Vec<u64>,
    },
    /// A shape that is not overflowing but still invalid (too many dims, not a whole number of blocks, ...).
    #[error("tensor `{name}` has an invalid shape {dims:?}: {reason}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// The dims as stored in the file.
        dims: Vec<u64>,
        /// Why it is invalid.
        reason: String,
    },
    /// A data type this crate cannot convert to f32 (or does not know at all).
    #[error("tensor `{name}` has unsupported data type {dtype}")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// Data type name (e.g. `IQ2_XXS` or `unknown ggml type 99`).
        dtype: String,
    },
    /// A tensor name that is not in the file.
    #[error("unknown tensor `{name}`")]
    UnknownTensor {
        /// The requested name.
        name: String,
    },
    /// A metadata entry that is missing, duplicated or of the wrong type.
    #[error("bad metadata `{key}`: {reason}")]
    BadMetadata {
        /// Metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other structural problem in a model file.
    #[error("malformed {file}: {reason}")]
    Format {
        /// Which file (or file kind).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The model's hyper-parameters are missing or inconsistent.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// A JSON file (config.json, safetensors index) could not be parsed.
    #[error("cannot parse JSON {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ModelError::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`ModelError::Format`] for `file`.
    pub fn format(file: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::Format {
            file: file.into(),
            reason: reason.into(),
        }
    }
}
