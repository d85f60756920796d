//! Tensor-memory-accelerator (TMA) descriptors for the weight kernels (sm_90+).
//!
//! The LUT-large GeMV (`kernels/vq_lut_large.cuh`) copies, per warp step, the lane-column-`t` chunks of 32 weight
//! rows into shared memory with one `cp.async.bulk.tensor` instead of 32 scattered 16-byte loads per word. The
//! descriptor views the codes of the tile layout (docs/kernel-layout.md) as a 5-d tensor of u32, innermost first:
//!
//! | dim | extent     | stride (bytes)  | meaning                              |
//! |-----|------------|-----------------|--------------------------------------|
//! | 0   | 4·L        | 4               | words of one lane chunk              |
//! | 1   | 4          | 16·L            | lane column t                        |
//! | 2   | 8          | 64·L            | row g in the row block               |
//! | 3   | kb         | 512·L           | k tile                               |
//! | 4   | row blocks | 512·L·kb        | row block                            |
//!
//! and the box `[4·L, 1, 8, 1, 4]` at `(0, t, 0, tile, 4·rw)` is the 32 rows of warp step `rw`, landing in shared
//! memory as a dense `[row][4·L words]` array. Row blocks past the end are zero-filled.

use cudarc::driver::sys;
use cudarc::driver::{CudaSlice, DevicePtr};

use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::libs::{guard, CudaLib};

/// Bytes of a `CUtensorMap` (it must sit 64-byte aligned; device allocations are 256-byte aligned).
pub const TENSOR_MAP_BYTES: usize = 128;

/// Encodes the code tensor map of a packed weight whose codes are `codes` (tile layout with `l` 16-byte words per lane
/// chunk, `kb` k tiles per row and `row_blocks` blocks of 8 rows) and uploads it; the kernel takes its address.
pub fn code_tensor_map(
    gpu: &Gpu,
    codes: &CudaSlice<u32>,
    l: usize,
    kb: usize,
    row_blocks: usize,
) -> Result<CudaSlice<u32>> {
    if !(1..=4).contains(&l) || kb == 0 || row_blocks == 0 {
        return Err(CudaError::InvalidArgument(format!(
            "code tensor map: lane chunks of {l} words, {kb} k tiles, {row_blocks} row blocks"
        )));
    }
    let need = row_blocks * kb * 32 * 4 * l;
    if codes.len() < need {
        return Err(CudaError::InvalidArgument(format!(
            "code tensor map: {} code words, the layout needs {need}",
            codes.len()
        )));
    }
    let chunk = 16 * l as u64;
    let dims: [u64; 5] = [4 * l as u64, 4, 8, kb as u64, row_blocks as u64];
    let strides: [u64; 4] = [chunk, 4 * chunk, 32 * chunk, 32 * chunk * kb as u64];
    let boxes: [u32; 5] = [4 * l as u32, 1, 8, 1, 4];
    let elem_strides: [u32; 5] = [1; 5];
    let (ptr, _sync) = codes.device_ptr(gpu.stream());
    let mut map = sys::CUtensorMap { opaque: [0u64; 16] };
    guard(CudaLib::Driver, || {
        // SAFETY: the arrays have the rank's length, the pointer is a live device allocation of `need` words
        // (checked above), and `map` is a valid output location.
        let r = unsafe {
            sys::cuTensorMapEncodeTiled(
                &mut map,
                sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT32,
                5,
                ptr as *mut std::ffi::c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                elem_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        r.result().map_err(|e| {
            CudaError::Driver(format!(
                "cuTensorMapEncodeTiled for the weight codes: {e:?}"
            ))
        })
    })?;
    let words: Vec<u32> = map
        .opaque
        .iter()
        .flat_map(|w| [*w as u32, (*w >> 32) as u32])
        .collect();
    gpu.htod(&words)
}
