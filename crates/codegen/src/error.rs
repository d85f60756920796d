//! Errors of planning and code generation.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodegenError {
    /// A bad argument (unknown level, zero batch, ...).
    #[error("invalid plan request: {0}")]
    Invalid(String),
    /// The configuration or shape is rejected by the VQ layer.
    #[error(transparent)]
    Vq(#[from] vqllm_vq::VqError),
    /// The combination is not implemented by any kernel.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The plan does not fit the device's resources.
    #[error("does not fit the device: {0}")]
    DoesNotFit(String),
}

pub type Result<T> = std::result::Result<T, CodegenError>;
