//! CPU reference ops with f32 accumulation: dequantization and GeMM/GeMV on [`QuantizedWeight`]s.
//!
//! Every GPU kernel is checked against these. Conventions:
//! - `x` is `[m, cols]` row-major (`m` tokens), weights are `[rows, cols]` (`[out, in]`), `y = x · Wᵀ` is
//!   `[m, rows]`.
//! - The *rotated* weight is what the codes decode to: `W'[n, k·v..k·v+v] = scale[n] · Σ_i stage_scales[i] ·
//!   entry_i`. With a Hadamard transform the *effective* weight acting on raw activations is
//!   `W_eff = W' · H · diag(signs)`, and `x · W_effᵀ = rht_forward(x) · W'ᵀ`: the GPU transforms the
//!   activations, then multiplies by `W'`.
//! - Dot products accumulate in f32 in input-column order.

use crate::config::CodebookKind;
use crate::e8p::decode_e8p;
use crate::error::{Result, VqError};
use crate::hadamard::{rht_forward, rht_inverse};
use crate::weight::QuantizedWeight;
use rayon::prelude::*;

/// Writes row `n` of the rotated weight `W'` (no Hadamard) into `out` (`cols` values).
///
/// `q` must be valid ([`QuantizedWeight::validate`]); the public functions below check that first.
fn decode_row_rotated(q: &QuantizedWeight, n: usize, out: &mut [f32]) {
    let c = &q.config;
    let v = c.v;
    let scale = q.scales.as_ref().map_or(1.0, |s| s[n]);
    for (k, dst) in out.chunks_exact_mut(v).enumerate() {
        dst.iter_mut().for_each(|d| *d = 0.0);
        let set = c.codebook_set_of(q.cols, n, k * v);
        for stage in 0..c.r {
            let code = q.code(n, k, stage);
            let ss = q.stage_scales[stage];
            match c.codebook {
                CodebookKind::Learned => {
                    let off = q.entry_offset(set, stage, code as usize);
                    for (d, e) in dst.iter_mut().zip(&q.codebooks[off..off + v]) {
                        *d += ss * e;
                    }
                }
                CodebookKind::E8p => {
                    for (d, e) in dst.iter_mut().zip(decode_e8p(code)) {
                        *d += ss * e;
                    }
                }
            }
        }
        dst.iter_mut().for_each(|d| *d *= scale);
    }
}

/// The rotated weight `W'` (`[rows, cols]`): what the GPU kernel multiplies after the activation transform.
/// Equal to [`dequantize`] when there is no Hadamard transform.
pub fn dequantize_rotated(q: &QuantizedWeight) -> Result<Vec<f32>> {
    q.validate()?;
    let mut w = vec![0.0f32; q.rows * q.cols];
    w.par_chunks_mut(q.cols)
        .enumerate()
        .for_each(|(n, row)| decode_row_rotated(q, n, row));
    Ok(w)
}

/// The effective weight `W_eff` (`[rows, cols]`) with `y = W_eff · x` on raw activations:
/// `W' · H · diag(signs)` when a Hadamard transform is present, else `W'`.
pub fn dequantize(q: &QuantizedWeight) -> Result<Vec<f32>> {
    let mut w = dequantize_rotated(q)?;
    if let Some(rht) = &q.rht {
        rht_inverse(&mut w, rht)?;
    }
    Ok(w)
}

/// Checks that `x` is `[m, cols]` with `m ≥ 1`.
fn check_activations(x: &[f32], m: usize, cols: usize) -> Result<()> {
    if m == 0 {
        return Err(VqError::Shape(
            "GeMM needs at least one activation row (m = 0)".into(),
        ));
    }
    if x.len() != m * cols {
        return Err(VqError::Shape(format!(
            "activations have {} values, expected [{m}, {cols}]",
            x.len()
        )));
    }
    Ok(())
}

/// Transposes a `[rows, m]` buffer into `[m, rows]`.
fn transpose(yt: &[f32], rows: usize, m: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * rows];
    for (n, col) in yt.chunks_exact(m).enumerate() {
        for (t, v) in col.iter().enumerate() {
            y[t * rows + n] = *v;
        }
    }
    y
}

/// `y[m, rows] = x[m, cols] · W_effᵀ`: applies the Hadamard transform to `x` when present, then multiplies by
/// the rotated weight, decoding one weight row at a time (no full dequantized copy).
pub fn gemm(x: &[f32], m: usize, q: &QuantizedWeight) -> Result<Vec<f32>> {
    q.validate()?;
    check_activations(x, m, q.cols)?;
    let mut xr = x.to_vec();
    if let Some(rht) = &q.rht {
        rht_forward(&mut xr, rht)?;
    }
    let mut yt = vec![0.0f32; q.rows * m];
    yt.par_chunks_mut(m).enumerate().for_each_init(
        || vec![0.0f32; q.cols],
        |row, (n, out)| {
            decode_row_rotated(q, n, row);
            for (t, o) in out.iter_mut().enumerate() {
                *o = dot(&xr[t * q.cols..(t + 1) * q.cols], row);
            }
        },
    );
    Ok(transpose(&yt, q.rows, m))
}

/// `y[rows] = W_eff · x` for one activation vector (`gemm` with `m = 1`).
pub fn gemv(x: &[f32], q: &QuantizedWeight) -> Result<Vec<f32>> {
    gemm(x, 1, q)
}

/// Dense `y[m, rows] = x[m, cols] · wᵀ` for `w` `[rows, cols]`, f32 accumulation (the FP16-baseline reference).
pub fn dense_gemm(x: &[f32], m: usize, w: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    if rows == 0 || cols == 0 {
        return Err(VqError::Shape(format!("empty weight [{rows}, {cols}]")));
    }
    if w.len() != rows * cols {
        return Err(VqError::Shape(format!(
            "weight has {} values, expected [{rows}, {cols}]",
            w.len()
        )));
    }
    check_activations(x, m, cols)?;
    let mut yt = vec![0.0f32; rows * m];
    yt.par_chunks_mut(m)
        .zip(w.par_chunks(cols))
        .for_each(|(out, row)| {
            for (t, o) in out.iter_mut().enumerate() {
                *o = dot(&x[t * cols..(t + 1) * cols], row);
            }
        });
    Ok(transpose(&yt, rows, m))
}

/// Sequential f32 dot product.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0f32, |acc, (x, y)| acc + x * y)
}
