//! One GPU: a cudarc context, one stream, the device limits as a [`GpuSpec`], and typed buffers.
//!
//! Everything the crate queues goes to the one stream of a [`Gpu`] (kernels, copies, cuBLAS),
//! so work is ordered without extra synchronisation. The stream is a real (non-default) stream
//! so it can be captured into a CUDA graph later.

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute_enum as Attr;
use cudarc::driver::{
    CudaContext, CudaGraph, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
    ValidAsZeroBits,
};
use half::f16;
use vqllm_codegen::gpu_spec::GpuSpec;

use crate::error::{alloc_error, CudaError, Result};
use crate::libs::{self, CudaLib};

/// Element types that can live in device buffers through this crate.
pub trait DeviceElem:
    DeviceRepr
    + ValidAsZeroBits
    + Copy
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
    + sealed::Sealed
{
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! device_elem {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl DeviceElem for $t {}
    )*};
}
device_elem!(f32, f16, u8, u16, u32, i32);

/// A CUDA device with its own context and stream.
#[derive(Debug)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    spec: GpuSpec,
    reserved_smem_per_block: u32,
}

/// Runs the driver initialisation with library discovery and panic guarding.
fn driver_init() -> Result<()> {
    libs::ensure(CudaLib::Driver)?;
    libs::guard(CudaLib::Driver, || {
        cudarc::driver::result::init()?;
        Ok(())
    })
}

impl Gpu {
    /// Number of CUDA devices visible to this process. Errors when there is no driver; returns
    /// `Err(NoDevice)` when the driver reports none.
    pub fn device_count() -> Result<usize> {
        driver_init()?;
        libs::guard(CudaLib::Driver, || {
            let n = CudaContext::device_count()?;
            Ok(n.max(0) as usize)
        })
    }

    /// Opens device `ordinal` (0-based): retains its primary context, creates a stream, and
    /// reads the device limits. Without a driver or device this is a typed error, never a panic.
    pub fn new(ordinal: usize) -> Result<Gpu> {
        let count = Self::device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice(format!(
                "device ordinal {ordinal} requested, but {count} device(s) are visible \
                 (check CUDA_VISIBLE_DEVICES)"
            )));
        }
        libs::guard(CudaLib::Driver, || {
            let ctx = CudaContext::new(ordinal)?;
            let stream = ctx.new_stream()?;
            let spec = read_spec(&ctx)?;
            let reserved = attr(
                &ctx,
                Attr::CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK,
            )? as u32;
            Ok(Gpu {
                ctx,
                stream,
                spec,
                reserved_smem_per_block: reserved,
            })
        })
    }

    /// The device limits that plans and heuristics use.
    pub fn spec(&self) -> &GpuSpec {
        &self.spec
    }

    /// The NVRTC architecture of this device, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        self.spec.arch()
    }

    /// Shared memory the driver reserves per block (1 KiB on sm_80+); the per-SM budget a block
    /// consumes is its static + dynamic shared memory plus this.
    pub fn reserved_smem_per_block(&self) -> u32 {
        self.reserved_smem_per_block
    }

    /// Any device attribute, for what [`GpuSpec`] does not hold.
    pub fn attribute(&self, attribute: Attr) -> Result<i32> {
        attr(&self.ctx, attribute)
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// The underlying cudarc context (for APIs this crate does not wrap).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream all work of this `Gpu` goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits until all queued work has finished; surfaces asynchronous kernel faults.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize()?;
        Ok(())
    }

    /// Stops cudarc from recording read/write events on buffers created afterwards. Those events
    /// order work across streams; with one stream they only cost time (several microseconds per
    /// launch at batch 1) and they are illegal inside CUDA-graph capture.
    ///
    /// # Safety
    /// Buffers created while tracking is off must only be used on this `Gpu`'s stream (or the
    /// caller synchronises other streams by hand), and must not be freed while work that uses
    /// them may still be running on another stream.
    pub unsafe fn disable_event_tracking(&self) {
        self.ctx.disable_event_tracking();
    }

    /// Turns event tracking back on for buffers created afterwards.
    ///
    /// # Safety
    /// See cudarc's `CudaContext::enable_event_tracking`: buffers created while tracking was off
    /// stay untracked.
    pub unsafe fn enable_event_tracking(&self) {
        self.ctx.enable_event_tracking();
    }

    /// The work `queue` puts on this `Gpu`'s stream, captured into an instantiated CUDA graph instead of run; replay
    /// it with `launch()`. The capture is ended even when `queue` fails, so the stream stays usable. Buffers the work
    /// uses must have been created with event tracking off ([`Gpu::disable_event_tracking`]): their events cannot be
    /// captured. Programmatic launches become programmatic edges of the graph.
    pub fn capture_graph(&self, queue: impl FnOnce() -> Result<()>) -> Result<CudaGraph> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let queued = queue();
        let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
        queued?;
        graph?.ok_or_else(|| {
            CudaError::Launch("the captured CUDA graph is empty (no work was queued)".into())
        })
    }

    /// Whether buffers created now get read/write events.
    pub fn is_event_tracking(&self) -> bool {
        self.ctx.is_event_tracking()
    }

    fn bytes_of<T>(len: usize) -> Result<u64> {
        len.checked_mul(std::mem::size_of::<T>())
            .map(|b| b as u64)
            .ok_or(CudaError::OutOfMemory {
                requested: u64::MAX,
            })
    }

    /// A zero-filled device buffer of `len` elements. Lack of memory is
    /// [`CudaError::OutOfMemory`] with the requested byte count.
    pub fn alloc_zeros<T: DeviceElem>(&self, len: usize) -> Result<CudaSlice<T>> {
        let bytes = Self::bytes_of::<T>(len)?;
        if len == 0 {
            return self.stream.null().map_err(CudaError::from);
        }
        self.stream
            .alloc_zeros::<T>(len)
            .map_err(|e| alloc_error(e, bytes))
    }

    /// Copies `host` into a new device buffer.
    pub fn htod<T: DeviceElem>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        let bytes = Self::bytes_of::<T>(host.len())?;
        if host.is_empty() {
            return self.stream.null().map_err(CudaError::from);
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| alloc_error(e, bytes))
    }

    /// Copies `host` into the front of an existing buffer (`dst.len() >= host.len()`).
    pub fn htod_into<T: DeviceElem, D: DevicePtrMut<T>>(
        &self,
        host: &[T],
        dst: &mut D,
    ) -> Result<()> {
        if dst.len() < host.len() {
            return Err(CudaError::InvalidArgument(format!(
                "host-to-device copy of {} elements into a buffer of {}",
                host.len(),
                dst.len()
            )));
        }
        if host.is_empty() {
            return Ok(());
        }
        self.stream.memcpy_htod(host, dst)?;
        Ok(())
    }

    /// Copies a device buffer (or view) to a new host vector; waits for the copy.
    pub fn dtoh<T: DeviceElem, S: DevicePtr<T>>(&self, src: &S) -> Result<Vec<T>> {
        if src.len() == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![T::default(); src.len()];
        self.stream.memcpy_dtoh(src, &mut out)?;
        self.stream.synchronize()?;
        Ok(out)
    }

    /// Sets every byte of `dst` to `byte`. `0xFF` makes f16/f32 NaN: poison outputs before a
    /// kernel runs so that elements it forgets to write show up in the comparison.
    pub fn fill_bytes<T: DeviceElem, D: DevicePtrMut<T>>(
        &self,
        dst: &mut D,
        byte: u8,
    ) -> Result<()> {
        let n = dst.num_bytes();
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread()?;
        let (ptr, _record) = dst.device_ptr_mut(&self.stream);
        // SAFETY: `ptr` addresses exactly `n` bytes owned by `dst`, on this stream.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, byte, n, self.stream.cu_stream()) }?;
        Ok(())
    }
}

fn attr(ctx: &Arc<CudaContext>, a: Attr) -> Result<i32> {
    ctx.attribute(a).map_err(CudaError::from)
}

/// Reads the [`GpuSpec`] fields from the device.
fn read_spec(ctx: &Arc<CudaContext>) -> Result<GpuSpec> {
    let get = |a: Attr| -> Result<u32> { Ok(attr(ctx, a)?.max(0) as u32) };
    let (major, minor) = ctx.compute_capability()?;
    Ok(GpuSpec {
        name: ctx.name()?,
        cc_major: major.max(0) as u32,
        cc_minor: minor.max(0) as u32,
        sm_count: get(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        smem_per_sm: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)?,
        smem_per_block_optin: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
        regs_per_sm: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR)?,
        regs_per_block: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK)?,
        max_threads_per_sm: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?,
        max_blocks_per_sm: get(Attr::CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR)?,
        l2_bytes: get(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u64,
        mem_bytes: ctx.total_mem()? as u64,
    })
}
