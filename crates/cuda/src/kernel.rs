//! Loaded modules, kernels, their attributes and occupancy, and launching them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use cudarc::driver::sys::{CUfunction_attribute_enum as FnAttr, CUresult};
use cudarc::driver::{CudaFunction, CudaModule, LaunchArgs, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::nvrtc::CompiledModule;

/// Dynamic shared memory a kernel may use without opting in.
pub const DEFAULT_DYNAMIC_SMEM_LIMIT: u32 = 48 * 1024;

/// A CUBIN loaded into a [`Gpu`]'s context.
#[derive(Debug, Clone)]
pub struct Module {
    inner: Arc<CudaModule>,
}

/// A kernel (`extern "C" __global__` function) of a loaded module.
#[derive(Debug)]
pub struct Kernel {
    name: String,
    func: CudaFunction,
    /// The MAX_DYNAMIC_SHARED_SIZE_BYTES currently set on the function.
    dynamic_smem_limit: AtomicU32,
    attrs: KernelAttributes,
}

/// What the driver reports about a loaded kernel (`cuFuncGetAttribute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAttributes {
    /// Registers per thread.
    pub num_regs: u32,
    /// Local memory per thread in bytes (stack frame, spills); > 0 often means a slow kernel.
    pub local_bytes: u32,
    /// Static shared memory in bytes.
    pub static_smem: u32,
    /// Constant memory in bytes.
    pub const_bytes: u32,
    /// The largest block this kernel can be launched with (registers permitting).
    pub max_threads_per_block: u32,
    /// The SASS version it was compiled for, e.g. 90 for sm_90.
    pub binary_version: u32,
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory per block in bytes.
    pub dynamic_smem: u32,
}

impl LaunchDims {
    /// A 1-D launch of `grid` blocks of `block` threads without dynamic shared memory.
    pub fn linear(grid: u32, block: u32) -> Self {
        LaunchDims {
            grid: (grid, 1, 1),
            block: (block, 1, 1),
            dynamic_smem: 0,
        }
    }

    /// Builder: set the dynamic shared memory per block.
    pub fn with_smem(mut self, bytes: u32) -> Self {
        self.dynamic_smem = bytes;
        self
    }

    /// Threads per block.
    pub fn threads_per_block(&self) -> u64 {
        self.block.0 as u64 * self.block.1 as u64 * self.block.2 as u64
    }
}

fn not_found_to_invalid(name: &str, e: cudarc::driver::DriverError) -> CudaError {
    if e.0 == CUresult::CUDA_ERROR_NOT_FOUND {
        CudaError::InvalidArgument(format!(
            "no kernel named `{name}` in the module (is it `extern \"C\"`?)"
        ))
    } else {
        CudaError::from(e)
    }
}

impl Gpu {
    /// Loads a CUBIN (as produced by [`crate::nvrtc::compile_cubin`]) into this device.
    pub fn load_cubin(&self, cubin: &[u8]) -> Result<Module> {
        if !cubin.starts_with(b"\x7fELF") {
            return Err(CudaError::InvalidArgument(
                "not a CUBIN (missing ELF header); PTX is not accepted here".into(),
            ));
        }
        let inner = self
            .context()
            .load_module(Ptx::from_binary(cubin.to_vec()))?;
        Ok(Module { inner })
    }

    /// Loads a compiled module.
    pub fn load_module(&self, module: &CompiledModule) -> Result<Module> {
        self.load_cubin(&module.cubin)
    }

    /// Starts a launch of `kernel` on this device's stream; push arguments with
    /// [`Launch::arg`] in the kernel's parameter order, then call [`Launch::launch`].
    pub fn launch<'a>(&'a self, kernel: &'a Kernel) -> Launch<'a> {
        Launch {
            gpu: self,
            kernel,
            args: self.stream().launch_builder(&kernel.func),
        }
    }
}

impl Module {
    /// The kernel called `name` (its `extern "C"` name, or the mangled name).
    pub fn kernel(&self, name: &str) -> Result<Kernel> {
        if name.contains('\0') {
            return Err(CudaError::InvalidArgument(
                "kernel name contains NUL".into(),
            ));
        }
        let func = self
            .inner
            .load_function(name)
            .map_err(|e| not_found_to_invalid(name, e))?;
        let get = |a: FnAttr| -> Result<u32> { Ok(func.get_attribute(a)?.max(0) as u32) };
        let attrs = KernelAttributes {
            num_regs: get(FnAttr::CU_FUNC_ATTRIBUTE_NUM_REGS)?,
            local_bytes: get(FnAttr::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)?,
            static_smem: get(FnAttr::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?,
            const_bytes: get(FnAttr::CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES)?,
            max_threads_per_block: get(FnAttr::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            binary_version: get(FnAttr::CU_FUNC_ATTRIBUTE_BINARY_VERSION)?,
        };
        let limit = get(FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)?;
        Ok(Kernel {
            name: name.to_string(),
            func,
            dynamic_smem_limit: AtomicU32::new(limit),
            attrs,
        })
    }
}

impl Kernel {
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers, local/shared/constant memory and the block-size limit, read at load time.
    pub fn attributes(&self) -> KernelAttributes {
        self.attrs
    }

    /// The underlying cudarc function.
    pub fn function(&self) -> &CudaFunction {
        &self.func
    }

    /// The dynamic shared memory currently allowed per block.
    pub fn max_dynamic_smem(&self) -> u32 {
        self.dynamic_smem_limit.load(Ordering::Relaxed)
    }

    /// Allows up to `bytes` of dynamic shared memory per block
    /// (`CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`); needed above 48 KiB.
    pub fn set_max_dynamic_smem(&self, gpu: &Gpu, bytes: u32) -> Result<()> {
        let total = bytes as u64 + self.attrs.static_smem as u64;
        let optin = gpu.spec().smem_per_block_optin as u64;
        if total > optin {
            return Err(CudaError::InvalidArgument(format!(
                "kernel `{}`: {bytes} B dynamic + {} B static shared memory exceeds the \
                 device's {optin} B per block",
                self.name, self.attrs.static_smem
            )));
        }
        gpu.context().bind_to_thread()?;
        self.func.set_attribute(
            FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )?;
        self.dynamic_smem_limit.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// How many blocks of `block_threads` threads with `dynamic_smem` bytes of dynamic shared
    /// memory fit on one SM at once (`cuOccupancyMaxActiveBlocksPerMultiprocessor`). The
    /// heuristics compare this before and after adding codebook registers / shared memory to
    /// find the slack that costs no resident block.
    pub fn max_active_blocks_per_sm(&self, block_threads: u32, dynamic_smem: u32) -> Result<u32> {
        if block_threads == 0 {
            return Err(CudaError::InvalidArgument("block of 0 threads".into()));
        }
        Ok(self.func.occupancy_max_active_blocks_per_multiprocessor(
            block_threads,
            dynamic_smem as usize,
            None,
        )?)
    }

    /// Dynamic shared memory still available per block when `blocks_per_sm` blocks of
    /// `block_threads` threads must stay resident (`cuOccupancyAvailableDynamicSMemPerBlock`).
    pub fn available_dynamic_smem(&self, blocks_per_sm: u32, block_threads: u32) -> Result<u32> {
        Ok(self
            .func
            .occupancy_available_dynamic_smem_per_block(blocks_per_sm, block_threads)?
            as u32)
    }

    fn check(&self, gpu: &Gpu, dims: &LaunchDims) -> Result<()> {
        let bad = |msg: String| {
            Err(CudaError::InvalidArgument(format!(
                "kernel `{}`: {msg}",
                self.name
            )))
        };
        let (gx, gy, gz) = dims.grid;
        if gx == 0 || gy == 0 || gz == 0 {
            return bad(format!("empty grid {:?}", dims.grid));
        }
        if gy > 65_535 || gz > 65_535 || gx > i32::MAX as u32 {
            return bad(format!(
                "grid {:?} exceeds (2^31-1, 65535, 65535)",
                dims.grid
            ));
        }
        let threads = dims.threads_per_block();
        if threads == 0 || threads > self.attrs.max_threads_per_block as u64 {
            return bad(format!(
                "block {:?} = {threads} threads, this kernel allows 1..={}",
                dims.block, self.attrs.max_threads_per_block
            ));
        }
        if dims.block.2 > 64 {
            return bad(format!("block z {} exceeds 64", dims.block.2));
        }
        if dims.dynamic_smem > self.max_dynamic_smem() {
            // Above the current limit (48 KiB by default): opt in, which checks the device limit.
            self.set_max_dynamic_smem(gpu, dims.dynamic_smem)?;
        }
        Ok(())
    }
}

/// One kernel launch being assembled; see [`Gpu::launch`].
#[derive(Debug)]
pub struct Launch<'a> {
    gpu: &'a Gpu,
    kernel: &'a Kernel,
    args: LaunchArgs<'a>,
}

impl<'a> Launch<'a> {
    /// Appends one kernel argument: `&CudaSlice<T>` / `&mut CudaSlice<T>` / views for pointers,
    /// `&T` for scalars (`&n` for `int n`). Arguments must match the kernel's parameters in
    /// order, count and type; nothing can check that.
    pub fn arg<T>(&mut self, value: T) -> &mut Self
    where
        LaunchArgs<'a>: PushKernelArg<T>,
    {
        self.args.arg(value);
        self
    }

    /// Queues the kernel on the stream. Grid, block and shared memory are validated against
    /// the kernel and device first (an error, not a fault); more than 48 KiB of dynamic shared
    /// memory is opted into automatically. Faults inside the kernel surface at the next
    /// synchronisation as [`CudaError::Launch`].
    ///
    /// # Safety
    /// The pushed arguments must match the kernel's signature, and the kernel must stay inside
    /// the buffers it is given.
    pub unsafe fn launch(&mut self, dims: LaunchDims) -> Result<()> {
        self.kernel.check(self.gpu, &dims)?;
        let cfg = LaunchConfig {
            grid_dim: dims.grid,
            block_dim: dims.block,
            shared_mem_bytes: dims.dynamic_smem,
        };
        self.args.launch(cfg).map_err(CudaError::from_launch)?;
        Ok(())
    }
}
