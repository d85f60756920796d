//! GPU timing with CUDA events on the [`Gpu`]'s stream.
//!
//! Events must be created with `CU_EVENT_DEFAULT`: cudarc's `new_event(None)` makes events with
//! timing disabled, and `elapsed` on those fails.

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;

use crate::device::Gpu;
use crate::error::{CudaError, Result};

/// A start/stop pair of timing events.
#[derive(Debug)]
pub struct EventTimer {
    start: CudaEvent,
    stop: CudaEvent,
}

impl EventTimer {
    /// Two timing-enabled events on `gpu`'s context.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let ctx = gpu.context();
        Ok(EventTimer {
            start: ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?,
            stop: ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?,
        })
    }

    /// Records the start event on the stream.
    pub fn start(&self, gpu: &Gpu) -> Result<()> {
        self.start.record(gpu.stream())?;
        Ok(())
    }

    /// Records the stop event on the stream.
    pub fn stop(&self, gpu: &Gpu) -> Result<()> {
        self.stop.record(gpu.stream())?;
        Ok(())
    }

    /// Milliseconds between start and stop; waits for the stop event.
    pub fn elapsed_ms(&self) -> Result<f32> {
        Ok(self.start.elapsed_ms(&self.stop)?)
    }
}

impl Gpu {
    /// Times `iters` calls of `f` one by one (one start/stop pair around each call) and
    /// returns the milliseconds of each. Warm up before; for kernels of a few microseconds
    /// prefer [`Gpu::time_ms_batched`], which amortises the event overhead.
    pub fn time_ms(&self, iters: usize, f: impl FnMut() -> Result<()>) -> Result<Vec<f32>> {
        self.time_ms_batched(iters, 1, f)
    }

    /// `reps` measurements, each timing `calls_per_rep` back-to-back calls of `f` and dividing
    /// by `calls_per_rep`: per-call milliseconds, one value per repetition. Take the median.
    pub fn time_ms_batched(
        &self,
        reps: usize,
        calls_per_rep: usize,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<Vec<f32>> {
        if calls_per_rep == 0 {
            return Err(CudaError::InvalidArgument(
                "calls_per_rep must be at least 1".into(),
            ));
        }
        let timers = (0..reps)
            .map(|_| EventTimer::new(self))
            .collect::<Result<Vec<_>>>()?;
        for t in &timers {
            t.start(self)?;
            for _ in 0..calls_per_rep {
                f()?;
            }
            t.stop(self)?;
        }
        self.synchronize()?;
        timers
            .iter()
            .map(|t| Ok(t.elapsed_ms()? / calls_per_rep as f32))
            .collect()
    }
}

/// The median of `xs` (mean of the middle two for even lengths); `None` when empty or any NaN.
pub fn median(xs: &[f32]) -> Option<f32> {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_odd_even_empty_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f32::NAN]), None);
    }
}
