//! # vqllm-cuda: the CUDA runtime of vqllm
//!
//! Compiles generated CUDA C++ to CUBIN with NVRTC (cached in memory and on disk), loads it on
//! a GPU, launches and times kernels, moves buffers, and runs the cuBLAS FP16 baseline. Built
//! on [`cudarc`] 0.19 with dynamic loading: nothing CUDA is needed to *build*, and each
//! library is looked up only when first used, so a machine without a GPU can still compile
//! kernels (NVRTC alone) and a machine without NVRTC can still plan.
//!
//! ## What is needed at run time
//!
//! | use | library | found via |
//! |-----|---------|-----------|
//! | compile kernels ([`nvrtc`], [`cache`]) | `libnvrtc.so.13` (+ `libnvrtc-builtins.so.13.x` beside it) | loader path, then [`libs::library_search_dirs`] |
//! | kernels that include `cuda_fp16.h` | CUDA headers | [`headers::find_cuda_include`] |
//! | run on a GPU ([`Gpu`]) | `libcuda.so.1` (installed with the NVIDIA driver) | loader path |
//! | cuBLAS baseline ([`Blas`]) | `libcublas.so.13`, `libcublasLt.so.13` | loader path, then the search dirs |
//!
//! cudarc itself only tries `dlopen` by file name (so `LD_LIBRARY_PATH`, `ld.so.cache`,
//! `/usr/lib`); [`libs`] adds a search of `$VQLLM_CUDA_LIB_DIR`, `$CUDA_HOME/lib64`,
//! `$CUDA_PATH/lib64`, `/usr/local/cuda/lib64` and the pip wheels' `nvidia/cu13/lib` under
//! python3's site-packages, and loads the library by full path. A missing library is a typed
//! error ([`CudaError::NvrtcUnavailable`], [`CudaError::DriverUnavailable`], ...), never a panic.
//!
//! On a machine without CUDA, with the pip wheels `nvidia-cuda-nvrtc` and
//! `nvidia-cuda-runtime` (CUDA 13) installed into python3's site-packages, nothing needs to be
//! set. With the wheels unpacked somewhere else (`<dir>/nvidia/cu13/{lib,include}`):
//!
//! ```text
//! export VQLLM_CUDA_LIB_DIR=<dir>/nvidia/cu13/lib      # libnvrtc.so.13; ../include is searched too
//! export VQLLM_CUDA_INCLUDE=<dir>/nvidia/cu13/include  # optional when the line above is set
//! ```
//!
//! (`LD_LIBRARY_PATH=<dir>/nvidia/cu13/lib` works as well.) Compiled modules are cached in
//! `$VQLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/vqllm`, else `~/.cache/vqllm`.
//!
//! Modules are compiled to CUBIN for the exact `sm_XX`, never PTX: PTX from an NVRTC newer
//! than the driver (e.g. NVRTC 13.5 with a 13.0 driver) does not load.
//!
//! ## Typical use
//!
//! ```no_run
//! use vqllm_cuda::{CompileOptions, Gpu, LaunchDims, ModuleCache};
//! # fn main() -> vqllm_cuda::Result<()> {
//! let gpu = Gpu::new(0)?;
//! let cache = ModuleCache::with_default_dir();
//! let src = r#"extern "C" __global__ void scale(float* x, float a, int n) {
//!     int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] *= a; }"#;
//! let compiled = cache.compile("scale", src, &CompileOptions::new(gpu.arch()))?;
//! let kernel = gpu.load_module(&compiled)?.kernel("scale")?;
//! let mut x = gpu.htod(&[1.0f32, 2.0, 3.0])?;
//! let (a, n) = (2.0f32, 3i32);
//! unsafe { gpu.launch(&kernel).arg(&mut x).arg(&a).arg(&n).launch(LaunchDims::linear(1, 32))? };
//! assert_eq!(gpu.dtoh(&x)?, vec![2.0, 4.0, 6.0]);
//! # Ok(()) }
//! ```

pub mod cache;
pub mod cublas;
pub mod device;
pub mod error;
pub mod headers;
pub mod kernel;
pub mod libs;
pub mod nvrtc;
pub mod timing;
pub mod tma;

pub use cache::{default_cache_dir, CacheKey, CacheStats, ModuleCache};
pub use cublas::{reference_xwt, Blas, GemmShape};
pub use device::{DeviceElem, Gpu};
pub use error::{CudaError, Result};
pub use headers::find_cuda_include;
pub use kernel::{Kernel, KernelAttributes, Launch, LaunchDims, Module};
pub use nvrtc::{
    compile_cubin, nvrtc_version, parse_ptxas_log, supported_archs, CompileOptions, CompiledModule,
    KernelResources,
};
pub use timing::{median, EventTimer};
pub use vqllm_codegen::gpu_spec::GpuSpec;

/// cudarc's buffer type, returned by [`Gpu::alloc_zeros`] / [`Gpu::htod`].
pub use cudarc::driver::{CudaGraph, CudaSlice, CudaView, CudaViewMut};
/// Re-exported so callers can name `half::f16` buffers without a direct dependency.
pub use half::f16;

pub mod bench;
pub mod ops;
pub mod pdl;
