//! Programmatic dependent launch (PDL, sm_90+) for chains of small kernels.
//!
//! A split-K GeMV is two launches per call: the main kernel and the finalize kernel that scales and converts its
//! fp32 partial sums. Launched plainly, the finalize's blocks are only scheduled once the main kernel has drained,
//! and the next call's main kernel only once the finalize has; each edge costs launch latency in the microseconds.
//! Launched with `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`, a kernel may be scheduled before the kernel
//! ahead of it has finished: as soon as every block of that kernel has executed `griddepcontrol.launch_dependents`
//! (`vq_pdl_trigger` in `kernels/vq_common.cuh`), or once they have all exited if they do not. It must then execute
//! `griddepcontrol.wait` (`vq_pdl_wait`) before touching memory the earlier kernel writes: that waits for the earlier
//! grid to finish and its writes to be visible. Most weight kernels and the finalize wait first thing, so what
//! overlaps is the launch and block scheduling; the mma kernel first loads what depends on the weights only (codes,
//! codebooks), so that work overlaps too. Only a weight kernel followed by the finalize triggers early (see
//! `vqllm_codegen::instantiate`).
//!
//! cudarc's launch builder takes no launch attributes, so [`RawArgs`] collects the arguments itself and launches
//! through `cuLaunchKernelEx`.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::sys;
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, SyncOnDrop,
};

use crate::error::{CudaError, Result};

/// Whether a device of compute capability `cc_major` runs programmatic dependent launches (Hopper and later).
pub fn supported(cc_major: u32) -> bool {
    cc_major >= 9
}

/// Which launches of a weight layer's call are programmatic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Programmatic {
    /// Plain launches: each waits for the kernel before it to drain.
    Off,
    /// The split-K finalize only: it is scheduled while its weight kernel runs.
    Finalize,
    /// Also the weight kernel: scheduled as the kernel before it (the previous call's finalize) exits, before its
    /// writes are flushed.
    #[default]
    Chain,
}

impl Programmatic {
    /// This mode on a device of compute capability `cc_major`: itself where [`supported`], else `Off`.
    pub fn on_device(self, cc_major: u32) -> Programmatic {
        if supported(cc_major) {
            self
        } else {
            Programmatic::Off
        }
    }
}

impl std::str::FromStr for Programmatic {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(Programmatic::Off),
            "finalize" => Ok(Programmatic::Finalize),
            "chain" => Ok(Programmatic::Chain),
            _ => Err(format!("`{s}`: expected off, finalize or chain")),
        }
    }
}

impl std::fmt::Display for Programmatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Programmatic::Off => "off",
            Programmatic::Finalize => "finalize",
            Programmatic::Chain => "chain",
        })
    }
}

/// The arguments of one raw launch, in the kernel's parameter order: each in a 64-bit slot (device pointers, or a
/// 32-bit scalar in the low bytes, which is where a little-endian device reads it).
pub struct RawArgs<'a> {
    stream: &'a Arc<CudaStream>,
    slots: Vec<u64>,
    /// cudarc's stream-ordering records for the buffers (no-ops with event tracking off); dropped after the launch.
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> RawArgs<'a> {
    /// No arguments yet, for a launch on `stream`.
    pub fn new(stream: &'a Arc<CudaStream>) -> Self {
        RawArgs {
            stream,
            slots: Vec::with_capacity(20),
            guards: Vec::with_capacity(12),
        }
    }

    /// A buffer the kernel reads.
    pub fn buf<T>(&mut self, s: &'a CudaSlice<T>) -> &mut Self {
        let (ptr, guard) = s.device_ptr(self.stream);
        self.slots.push(ptr);
        self.guards.push(guard);
        self
    }

    /// A buffer the kernel writes.
    pub fn buf_mut<T>(&mut self, s: &'a mut CudaSlice<T>) -> &mut Self {
        let (ptr, guard) = s.device_ptr_mut(self.stream);
        self.slots.push(ptr);
        self.guards.push(guard);
        self
    }

    /// An `int` parameter.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.slots.push(v as u32 as u64);
        self
    }

    /// A `float` parameter.
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.slots.push(v.to_bits() as u64);
        self
    }

    /// Queues `f` with these arguments; with `programmatic`, as a programmatic dependent launch of the kernel
    /// queued before it (only where [`supported`]; `f` must then wait with `griddepcontrol.wait` before it reads
    /// or writes anything an earlier kernel touches).
    ///
    /// # Safety
    /// The arguments must match `f`'s parameters in order, count and type, and the kernel must stay inside the
    /// buffers it is given.
    pub unsafe fn launch(
        mut self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        programmatic: bool,
    ) -> Result<()> {
        self.stream.context().bind_to_thread()?;
        let mut params: Vec<*mut c_void> = self
            .slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        // SAFETY: the attribute value is a plain C union; all-zero is a valid value of every member.
        let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: programmatic as u32,
        };
        let r = sys::cuLaunchKernelEx(
            &config,
            f.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        );
        drop(params);
        drop(self.guards);
        r.result().map_err(CudaError::from_launch)
    }
}

#[cfg(test)]
mod tests {
    use super::{supported, Programmatic};

    #[test]
    fn hopper_and_later_only() {
        assert!(!supported(8));
        assert!(supported(9));
        assert!(supported(10));
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [
            Programmatic::Off,
            Programmatic::Finalize,
            Programmatic::Chain,
        ] {
            assert_eq!(m.to_string().parse::<Programmatic>(), Ok(m));
        }
        assert!("on"
            .parse::<Programmatic>()
            .unwrap_err()
            .contains("off, finalize or chain"));
    }
}
