//! Benchmark method of DESIGN.md section 7: weights rotated past 4x the L2 cache, CUDA events around many launches,
//! warm-up first, median of repeats, fresh random (never zero) inputs, and the bytes that must move.

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaSlice;
use half::f16;
use rand::{Rng, SeedableRng};

use crate::device::Gpu;
use crate::error::Result;

/// Timing of one variant.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Timing {
    /// Median time of one call in microseconds.
    pub median_us: f64,
    /// Fastest repeat, microseconds per call.
    pub min_us: f64,
    /// Slowest repeat, microseconds per call.
    pub max_us: f64,
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Untimed calls first.
    pub warmup: usize,
    /// Calls per timed repeat (between two events).
    pub calls: usize,
    /// Timed repeats; the median is reported.
    pub repeats: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 20,
            calls: 50,
            repeats: 15,
        }
    }
}

/// Number of weight copies so that cycling through them touches at least 4x the L2 cache.
pub fn copies_for(gpu: &Gpu, bytes_per_copy: usize) -> usize {
    let l2 = gpu.spec().l2_bytes as usize;
    (4 * l2).div_ceil(bytes_per_copy.max(1)).clamp(1, 64)
}

/// Times `call(i)` (the i-th call should use weight copy `i % copies`) with events: returns per-call times.
pub fn time_calls(
    gpu: &Gpu,
    opts: &BenchOptions,
    mut call: impl FnMut(usize) -> Result<()>,
) -> Result<Timing> {
    let ctx = gpu.context();
    let start = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let stop = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let mut i = 0usize;
    for _ in 0..opts.warmup {
        call(i)?;
        i += 1;
    }
    gpu.synchronize()?;
    let mut per_call = Vec::with_capacity(opts.repeats);
    for _ in 0..opts.repeats {
        start.record(gpu.stream())?;
        for _ in 0..opts.calls {
            call(i)?;
            i += 1;
        }
        stop.record(gpu.stream())?;
        stop.synchronize()?;
        per_call.push(start.elapsed_ms(&stop)? as f64 * 1e3 / opts.calls as f64);
    }
    per_call.sort_by(|a, b| a.total_cmp(b));
    Ok(Timing {
        median_us: per_call[per_call.len() / 2],
        min_us: per_call[0],
        max_us: per_call[per_call.len() - 1],
    })
}

/// Random fp16 values in [-1, 1) (never all zero), deterministic for a seed.
pub fn random_f16(n: usize, seed: u64) -> Vec<f16> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// Uploads random fp16 data.
pub fn random_device_f16(gpu: &Gpu, n: usize, seed: u64) -> Result<CudaSlice<f16>> {
    gpu.htod(&random_f16(n, seed))
}

/// Measures device-to-device copy bandwidth (bytes read + written per second) on a buffer far larger than L2.
pub fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let n = (gpu.spec().l2_bytes as usize * 8).max(256 << 20) / 2;
    let src = gpu.alloc_zeros::<f16>(n)?;
    let mut dst = gpu.alloc_zeros::<f16>(n)?;
    let t = time_calls(
        gpu,
        &BenchOptions {
            warmup: 3,
            calls: 5,
            repeats: 7,
        },
        |_| {
            gpu.stream().memcpy_dtod(&src, &mut dst)?;
            Ok(())
        },
    )?;
    Ok((2 * n * 2) as f64 / (t.median_us * 1e-6))
}
