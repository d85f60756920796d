//! The weight quantizer: dispatches a [`VqConfig`] to the right method and builds a [`QuantizedWeight`].
//!
//! Learned codebooks: optional per-output-channel scale (each row divided by its RMS before k-means, then
//! its scale refit by least squares against the decoded row), residual k-means per codebook region
//! ([`crate::tile`]), optional beam-search refinement; codebooks and scales are rounded to fp16 because the
//! kernels store fp16. E8P configs go to the lattice quantizer.

use crate::config::{CodebookKind, VqConfig};
use crate::error::{check_finite, Result, VqError};
use crate::residual::ResidualOptions;
use crate::tile::learn_region_codebooks;
use crate::weight::QuantizedWeight;
use rayon::prelude::*;

/// Largest finite fp16 value.
const F16_MAX: f32 = 65504.0;

/// Settings of [`quantize_weight`] (and of [`crate::cq::learn_kv_codebooks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeOptions {
    /// Seed of every random choice (subsampling, k-means++ seeding).
    pub seed: u64,
    /// Lloyd iterations per k-means.
    pub kmeans_iters: usize,
    /// Beam width of the code refinement after greedy residual k-means (0 = off). When on, two passes of
    /// codebook refit + coordinate descent follow the beam search.
    pub beam_width: usize,
    /// Train each k-means on at most this many vectors (all vectors are encoded). At least `2 * 2^b`
    /// vectors are used whenever the tensor has them, so that no entry is starved.
    pub max_train_vectors: usize,
    /// Importance of each input column (`cols` values, e.g. the diagonal of `XᵀX` over calibration
    /// activations): weights the squared error of that column (GPTVQ's Hessian weighting). A damping of
    /// 1% of the mean is added so unimportant columns still count a little.
    pub column_importance: Option<Vec<f32>>,
    /// Show progress bars for long work.
    pub progress: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            kmeans_iters: 10,
            beam_width: 0,
            max_train_vectors: 32768,
            column_importance: None,
            progress: false,
        }
    }
}

impl QuantizeOptions {
    /// The residual k-means settings for codebooks of `entries` entries and `stages` stages.
    pub(crate) fn residual_options(&self, entries: usize, stages: usize) -> ResidualOptions {
        ResidualOptions {
            k: entries,
            stages,
            iters: self.kmeans_iters,
            seed: self.seed,
            max_samples: Some(self.max_train_vectors.max(2 * entries)),
            beam_width: self.beam_width,
            refine_passes: if self.beam_width > 0 { 2 } else { 0 },
            fp16: true,
            progress: self.progress,
        }
    }
}

/// Damped column weights from importance values (`None` when absent or all zero).
fn column_weights(importance: Option<&[f32]>, cols: usize) -> Result<Option<Vec<f32>>> {
    let Some(imp) = importance else { return Ok(None) };
    if imp.len() != cols {
        return Err(VqError::Shape(format!("{} column importance values for {cols} input columns", imp.len())));
    }
    check_finite("column importance", imp)?;
    if let Some(i) = imp.iter().position(|&x| x < 0.0) {
        return Err(VqError::InvalidConfig(format!("column importance {} at {i} is negative", imp[i])));
    }
    let mean = imp.iter().map(|&x| x as f64).sum::<f64>() / cols as f64;
    if mean <= 0.0 {
        return Ok(None);
    }
    let damp = (0.01 * mean) as f32;
    Ok(Some(imp.iter().map(|&x| x + damp).collect()))
}

/// Quantizes a row-major `[rows, cols]` (`[out, in]`) weight with `config`; vectors run along `cols`.
///
/// Errors: invalid config, KV configs, `cols % v != 0`, wrong length, non-finite weights or importance,
/// values that overflow fp16 after quantization. E8P configs are handled by the lattice quantizer.
pub fn quantize_weight(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &VqConfig,
    opts: &QuantizeOptions,
) -> Result<QuantizedWeight> {
    config.validate()?;
    config.check_weight_shape(rows, cols)?;
    if w.len() != rows * cols {
        return Err(VqError::Shape(format!("weight has {} values, expected {rows} x {cols}", w.len())));
    }
    check_finite("weight", w)?;
    if config.codebook == CodebookKind::E8p {
        // lead wires e8p: `return crate::e8p::quantize_e8p(w, rows, cols, config, opts);`
        return Err(VqError::InvalidConfig(format!("{config}: the E8P quantizer is not wired into this build")));
    }
    if config.hadamard {
        // lead wires hadamard: apply the RHT to the rows before learning codebooks.
        return Err(VqError::InvalidConfig(format!(
            "{config}: Hadamard incoherence with learned codebooks is not supported by this quantizer"
        )));
    }
    let col_w = column_weights(opts.column_importance.as_deref(), cols)?;

    // Per-channel normalisation.
    let rms: Option<Vec<f32>> = config.per_channel_scale.then(|| {
        w.par_chunks(cols)
            .map(|row| {
                let ms = row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / cols as f64;
                let s = ms.sqrt() as f32;
                if s > 0.0 && s.is_finite() {
                    s
                } else {
                    1.0
                }
            })
            .collect()
    });
    let normalized: Vec<f32>;
    let target: &[f32] = match &rms {
        Some(s) => {
            normalized = w.par_chunks(cols).zip(s.par_iter()).flat_map_iter(|(row, &s)| row.iter().map(move |&x| x / s)).collect();
            &normalized
        }
        None => w,
    };

    // Codebooks hold fp16: values beyond its range cannot be represented (and would overflow distances).
    if let Some(index) = target.iter().position(|x| x.abs() > F16_MAX) {
        return Err(VqError::NonFinite { what: format!("weight (beyond the fp16 range ±{F16_MAX})"), index });
    }
    let ropts = opts.residual_options(config.entries(), config.r);
    let (codebooks, codes) = learn_region_codebooks(target, rows, cols, config, col_w.as_deref(), &ropts)?;

    let mut q = QuantizedWeight {
        config: *config,
        rows,
        cols,
        codes,
        codebooks,
        stage_scales: vec![1.0; config.r],
        scales: None,
        rht: None,
    };
    if let Some(rms) = rms {
        q.scales = Some(refit_scales(&q, w, &rms, col_w.as_deref()));
    }
    q.validate().map_err(|e| match e {
        VqError::NonFinite { what, index } => {
            VqError::NonFinite { what: format!("{what} (fp16 overflow: weights too large)"), index }
        }
        other => other,
    })?;
    Ok(q)
}

/// Decodes row `n` of `q` without its scale into `out` (`cols` values).
fn decode_row_unscaled(q: &QuantizedWeight, n: usize, out: &mut [f32]) {
    let c = &q.config;
    let (v, r) = (c.v, c.r);
    for k in 0..q.groups() {
        let set = c.codebook_set_of(q.cols, n, k * v);
        let dst = &mut out[k * v..(k + 1) * v];
        dst.fill(0.0);
        for s in 0..r {
            let o = q.entry_offset(set, s, q.code(n, k, s) as usize);
            for (y, &e) in dst.iter_mut().zip(&q.codebooks[o..o + v]) {
                *y += q.stage_scales[s] * e;
            }
        }
    }
}

/// Least-squares scale of each row against its decoded (unscaled) row, column-weighted, rounded to fp16.
/// Falls back to the RMS when the decoded row is zero.
fn refit_scales(q: &QuantizedWeight, w: &[f32], rms: &[f32], col_w: Option<&[f32]>) -> Vec<f32> {
    let cols = q.cols;
    (0..q.rows)
        .into_par_iter()
        .map(|n| {
            let mut d = vec![0.0f32; cols];
            decode_row_unscaled(q, n, &mut d);
            let row = &w[n * cols..(n + 1) * cols];
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for j in 0..cols {
                let h = col_w.map_or(1.0, |c| c[j] as f64);
                num += h * row[j] as f64 * d[j] as f64;
                den += h * d[j] as f64 * d[j] as f64;
            }
            let s = if den > 0.0 { (num / den) as f32 } else { rms[n] };
            half::f16::from_f32(s).to_f32()
        })
        .collect()
}
