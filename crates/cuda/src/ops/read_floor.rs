//! The streaming floor of a weight layer (`kernels/read_floor.cuh`): one launch that reads a layer's bytes once and
//! does nothing else. Its time is the least a GeMV of one launch could take to move as many bytes on this device, so
//! `vqllm bench gemv --floor` prints it beside the GeMV.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, LaunchConfig};
use half::f16;
use vqllm_codegen::instantiate::{read_floor_unit, READ_FLOOR_THREADS};

use crate::cache::ModuleCache;
use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::pdl::RawArgs;

/// Copies of a buffer of 16-byte words and the compiled reader.
pub struct ReadFloor {
    func: CudaFunction,
    _module: Arc<CudaModule>,
    copies: Vec<CudaSlice<f16>>,
    sink: CudaSlice<u32>,
    words: usize,
    grid: u32,
    programmatic: bool,
}

impl ReadFloor {
    /// `copies` buffers of `bytes` (rounded up to 16) random bytes each, and the reader compiled for the device. The
    /// grid fills every SM with as many blocks as fit. Launches are programmatic where the device has them (sm_90+).
    pub fn new(gpu: &Gpu, cache: &ModuleCache, bytes: usize, copies: usize) -> Result<ReadFloor> {
        let words = bytes.div_ceil(16);
        if words == 0 || words > i32::MAX as usize || copies == 0 {
            return Err(CudaError::InvalidArgument(format!(
                "read floor of {bytes} bytes in {copies} copies: need 1 to {} 16-byte words and at least one copy",
                i32::MAX
            )));
        }
        let (source, entry) = read_floor_unit();
        let (_, module) = super::linear::load_source(gpu, cache, entry, &source)?;
        let func = module.load_function(entry)?;
        let per_sm =
            func.occupancy_max_active_blocks_per_multiprocessor(READ_FLOOR_THREADS, 0, None)?;
        let grid = (gpu.spec().sm_count * per_sm.max(1))
            .min(words.div_ceil(READ_FLOOR_THREADS as usize) as u32);
        let copies = (0..copies)
            .map(|i| crate::bench::random_device_f16(gpu, words * 8, 500 + i as u64))
            .collect::<Result<Vec<_>>>()?;
        Ok(ReadFloor {
            func,
            _module: module,
            copies,
            sink: gpu.alloc_zeros::<u32>(grid as usize)?,
            words,
            grid,
            programmatic: crate::pdl::supported(gpu.spec().cc_major),
        })
    }

    /// Queues one read of copy `copy % copies` on the GPU's stream.
    pub fn run(&mut self, gpu: &Gpu, copy: usize) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (self.grid, 1, 1),
            block_dim: (READ_FLOOR_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let src = &self.copies[copy % self.copies.len()];
        let mut a = RawArgs::new(gpu.stream());
        a.buf(src).i32(self.words as i32).buf_mut(&mut self.sink);
        // SAFETY: `src` holds `words` 16-byte words, `sink` one word per block of the grid.
        unsafe { a.launch(&self.func, cfg, self.programmatic) }
    }

    /// Bytes read by one call.
    pub fn bytes(&self) -> usize {
        self.words * 16
    }

    /// The xor of every 32-bit word the last call read, from the blocks' partial results (for tests).
    pub fn last_xor(&self, gpu: &Gpu) -> Result<u32> {
        Ok(gpu.dtoh(&self.sink)?.into_iter().fold(0, |a, w| a ^ w))
    }

    /// The xor of every 32-bit word of copy `copy`, computed on the host (for tests).
    pub fn host_xor(&self, gpu: &Gpu, copy: usize) -> Result<u32> {
        let data = gpu.dtoh(&self.copies[copy % self.copies.len()])?;
        Ok(data.chunks_exact(2).fold(0, |a, h| {
            a ^ (h[0].to_bits() as u32 | (h[1].to_bits() as u32) << 16)
        }))
    }
}
