//! Benchmark method of DESIGN.md section 7: weights rotated past 4x the L2 cache, CUDA events around many launches,
//! warm-up first, median of repeats, fresh random (never zero) inputs, and the bytes that must move.
//!
//! A repeat's calls are either launched one by one between the two events, or (with [`BenchOptions::graph`])
//! captured into a CUDA graph first, whose one launch is then timed. The second is how a decode loop on CUDA graphs
//! runs, and it measures the GPU alone: with launches, a call whose kernels take less time than the host needs to
//! queue them (a few microseconds for two `cuLaunchKernelEx`) is timed at the host's pace.

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
    /// Capture each repeat's calls into a CUDA graph and time one launch of it (after an untimed one), instead of
    /// timing the calls' own launches.
    pub graph: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 20,
            calls: 50,
            repeats: 15,
            graph: false,
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
    let mut r = Repeats::new(gpu)?;
    let mut i = 0usize;
    for _ in 0..opts.warmup {
        call(i)?;
        i += 1;
    }
    gpu.synchronize()?;
    let mut per_call = Vec::with_capacity(opts.repeats);
    for _ in 0..opts.repeats {
        per_call.push(r.repeat(gpu, opts, &mut i, &mut call)?);
    }
    Ok(Timing::of(per_call))
}

/// Times two variants in alternating repeats (a's calls, then b's, in every repeat), so that slow drifts of the
/// device over a run (clocks, temperature, memory refresh) affect both alike. Returns (a, b).
pub fn time_interleaved(
    gpu: &Gpu,
    opts: &BenchOptions,
    mut a: impl FnMut(usize) -> Result<()>,
    mut b: impl FnMut(usize) -> Result<()>,
) -> Result<(Timing, Timing)> {
    let mut r = Repeats::new(gpu)?;
    let (mut ia, mut ib) = (0usize, 0usize);
    for _ in 0..opts.warmup {
        a(ia)?;
        b(ib)?;
        ia += 1;
        ib += 1;
    }
    gpu.synchronize()?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..opts.repeats {
        ta.push(r.repeat(gpu, opts, &mut ia, &mut a)?);
        tb.push(r.repeat(gpu, opts, &mut ib, &mut b)?);
    }
    Ok((Timing::of(ta), Timing::of(tb)))
}

/// A pair of events timing one repeat of `calls` launches.
struct Repeats {
    start: cudarc::driver::CudaEvent,
    stop: cudarc::driver::CudaEvent,
}

impl Repeats {
    fn new(gpu: &Gpu) -> Result<Repeats> {
        let ctx = gpu.context();
        Ok(Repeats {
            start: ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?,
            stop: ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?,
        })
    }

    /// Microseconds per call of `opts.calls` consecutive calls, counting `i` on.
    fn repeat(
        &mut self,
        gpu: &Gpu,
        opts: &BenchOptions,
        i: &mut usize,
        call: &mut impl FnMut(usize) -> Result<()>,
    ) -> Result<f64> {
        let mut queue = || -> Result<()> {
            for _ in 0..opts.calls {
                call(*i)?;
                *i += 1;
            }
            Ok(())
        };
        let stream = gpu.stream();
        if opts.graph {
            let graph = gpu.capture_graph(queue)?;
            graph.upload()?;
            graph.launch()?;
            self.start.record(stream)?;
            graph.launch()?;
        } else {
            self.start.record(stream)?;
            queue()?;
        }
        self.stop.record(stream)?;
        self.stop.synchronize()?;
        Ok(self.start.elapsed_ms(&self.stop)? as f64 * 1e3 / opts.calls as f64)
    }
}

impl Timing {
    fn of(mut per_call: Vec<f64>) -> Timing {
        per_call.sort_by(|a, b| a.total_cmp(b));
        Timing {
            median_us: per_call[per_call.len() / 2],
            min_us: per_call[0],
            max_us: per_call[per_call.len() - 1],
        }
    }
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
            graph: false,
        },
        |_| {
            gpu.stream().memcpy_dtod(&src, &mut dst)?;
            Ok(())
        },
    )?;
    Ok((2 * n * 2) as f64 / (t.median_us * 1e-6))
}
