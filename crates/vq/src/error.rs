//! Typed errors for everything in this crate.

use thiserror::Error;

/// Errors raised by configuration parsing, quantization, packing, file I/O and reference ops.
#[derive(Debug, Error)]
pub enum VqError {
    /// A VQ configuration is out of range or cannot be parsed.
    #[error("invalid VQ config: {0}")]
    InvalidConfig(String),
    /// An unknown preset name.
    #[error("unknown preset `{name}` (known presets: {known})")]
    UnknownPreset { name: String, known: String },
    /// A tensor shape the configuration (or op) cannot handle.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Input data contains NaN or infinity.
    #[error("non-finite value in {what} at index {index}")]
    NonFinite { what: String, index: usize },
    /// A quantized-model file is malformed.
    #[error("bad quantized-model file: {0}")]
    Format(String),
    /// Underlying I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, VqError>;

/// Returns an error naming the first non-finite value in `data`.
pub fn check_finite(what: &str, data: &[f32]) -> Result<()> {
    match data.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(VqError::NonFinite {
            what: what.to_string(),
            index,
        }),
        None => Ok(()),
    }
}
