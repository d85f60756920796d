//! The one error type of the runtime. Every failure of the driver, NVRTC or cuBLAS becomes a
//! [`CudaError`] with a message that says what to do, so callers (CLI, benchmarks, tests) can
//! tell "no GPU here" apart from a real bug without matching on raw CUDA codes.

use std::path::PathBuf;

use cudarc::cublas::result::CublasError;
use cudarc::driver::sys::cudaError_enum as CuResult;
use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;

/// Errors of the CUDA runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The driver loaded but reports no usable device (or the ordinal is out of range).
    #[error("no CUDA device: {0}")]
    NoDevice(String),

    /// `libcuda` (the driver library, installed with the NVIDIA kernel driver) could not be
    /// loaded, or the driver is too old for this build.
    #[error("CUDA driver unavailable: {0}")]
    DriverUnavailable(String),

    /// `libnvrtc` could not be loaded (see the crate docs for where it is searched).
    #[error("NVRTC unavailable: {0}")]
    NvrtcUnavailable(String),

    /// `libcublas` could not be loaded.
    #[error("cuBLAS unavailable: {0}")]
    CublasUnavailable(String),

    /// No directory containing `cuda_fp16.h` was found.
    #[error(
        "CUDA headers not found (cuda_fp16.h). Set VQLLM_CUDA_INCLUDE or CUDA_HOME, or `pip install \
         nvidia-cuda-runtime`. Searched: {}",
        display_paths(searched)
    )]
    HeadersNotFound {
        /// Every directory that was checked, in order.
        searched: Vec<PathBuf>,
    },

    /// NVRTC rejected the source; `log` is the full compiler log.
    #[error("NVRTC failed to compile `{name}`:\n{log}")]
    Compile { name: String, log: String },

    /// A kernel launch (or the work it queued) failed.
    #[error("kernel launch failed: {0}")]
    Launch(String),

    /// A device allocation of `requested` bytes failed for lack of memory.
    #[error("out of GPU memory: could not allocate {requested} bytes")]
    OutOfMemory { requested: u64 },

    /// Any other driver error, with the driver's own name and description.
    #[error("CUDA driver error: {0}")]
    Driver(String),

    /// cuBLAS returned an error status.
    #[error("cuBLAS error: {0}")]
    Cublas(String),

    /// A caller passed something that cannot work (bad arch name, shape mismatch, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading or writing the on-disk module cache failed (never fatal for compilation itself).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CUDA_ERROR_X: description` for a driver error, without ever failing.
pub(crate) fn describe_driver(err: &DriverError) -> String {
    let name = err
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", err.0));
    let text = err
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if text.is_empty() {
        name
    } else {
        format!("{name}: {text}")
    }
}

impl From<DriverError> for CudaError {
    fn from(err: DriverError) -> Self {
        let msg = describe_driver(&err);
        match err.0 {
            CuResult::CUDA_ERROR_OUT_OF_MEMORY => CudaError::OutOfMemory { requested: 0 },
            CuResult::CUDA_ERROR_NO_DEVICE | CuResult::CUDA_ERROR_INVALID_DEVICE => {
                CudaError::NoDevice(msg)
            }
            CuResult::CUDA_ERROR_NOT_INITIALIZED
            | CuResult::CUDA_ERROR_DEINITIALIZED
            | CuResult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
            | CuResult::CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE => {
                CudaError::DriverUnavailable(msg)
            }
            CuResult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => CudaError::Driver(format!(
                "{msg} (the PTX came from an NVRTC newer than the driver: load CUBIN instead)"
            )),
            CuResult::CUDA_ERROR_NO_BINARY_FOR_GPU => CudaError::Driver(format!(
                "{msg} (the CUBIN was compiled for a different sm_XX than this GPU)"
            )),
            CuResult::CUDA_ERROR_LAUNCH_FAILED
            | CuResult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
            | CuResult::CUDA_ERROR_LAUNCH_TIMEOUT
            | CuResult::CUDA_ERROR_ILLEGAL_ADDRESS
            | CuResult::CUDA_ERROR_MISALIGNED_ADDRESS
            | CuResult::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CuResult::CUDA_ERROR_INVALID_PC
            | CuResult::CUDA_ERROR_HARDWARE_STACK_ERROR
            | CuResult::CUDA_ERROR_ASSERT => CudaError::Launch(msg),
            _ => CudaError::Driver(msg),
        }
    }
}

impl CudaError {
    /// A driver error returned by a kernel launch: as [`From<DriverError>`], with the generic driver errors (an
    /// invalid argument, a launch configuration the kernel cannot run) reported as [`CudaError::Launch`].
    pub fn from_launch(err: DriverError) -> Self {
        match CudaError::from(err) {
            CudaError::Driver(msg) => CudaError::Launch(msg),
            other => other,
        }
    }
}

impl From<NvrtcError> for CudaError {
    fn from(err: NvrtcError) -> Self {
        CudaError::NvrtcUnavailable(format!("NVRTC call failed: {err}"))
    }
}

impl From<CublasError> for CudaError {
    fn from(err: CublasError) -> Self {
        CudaError::Cublas(format!("{err}"))
    }
}

impl CudaError {
    /// True when the error means "this machine cannot run CUDA at all" (no driver, no device),
    /// as opposed to a failure of a particular call. Tests and the CLI use it to skip cleanly.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CudaError::NoDevice(_)
                | CudaError::DriverUnavailable(_)
                | CudaError::NvrtcUnavailable(_)
                | CudaError::CublasUnavailable(_)
        )
    }
}

/// Maps a driver error of an allocation of `bytes` bytes, keeping the requested size.
pub(crate) fn alloc_error(err: DriverError, bytes: u64) -> CudaError {
    match CudaError::from(err) {
        CudaError::OutOfMemory { .. } => CudaError::OutOfMemory { requested: bytes },
        other => other,
    }
}
