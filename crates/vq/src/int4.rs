//! Element-wise INT4 baseline (AWQ-like): asymmetric 4-bit round-to-nearest, one scale and zero point per group
//! of `group` consecutive input columns of one output row (group 128 by default).
//!
//! Per group (AWQ's `pseudo_quantize_tensor`, with GPTQ's widening of the range to include 0):
//! `lo = min(min(w), 0)`, `hi = max(max(w), 0)`, `scale = max(hi − lo, 1e-5) / 15` rounded to fp16,
//! `zero = clamp(round(−lo / scale), 0, 15)`, `q = clamp(round(w / scale) + zero, 0, 15)`, and the decoded
//! value is `(q − zero) · scale`. The zero point is an integer 0..=15 stored as f32. Including 0 in the range
//! changes nothing for groups that straddle zero (all real weight groups) and stops AWQ's clamped zero point
//! from clipping a one-signed group.
//!
//! Decision: `cols` must be a multiple of `group` (no short last group). AWQ and every Llama-family shape
//! satisfy this for group 128, and the GPU kernels then never need a ragged-group path. A different shape
//! is a typed [`VqError::Shape`] error; a smaller group (e.g. 64 or 32) can be chosen instead.

use crate::error::{check_finite, Result, VqError};
use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The default group size along the input dimension.
pub const INT4_GROUP: usize = 128;

/// An INT4-quantized `[rows, cols]` (`[out, in]`) weight, unpacked (one value per element).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int4Weight {
    pub rows: usize,
    pub cols: usize,
    /// Columns per group; divides `cols`.
    pub group: usize,
    /// `[rows, cols]` row-major, each value in `0..=15`.
    pub q: Vec<u8>,
    /// `[rows, cols / group]`, fp16-representable, positive.
    pub scales: Vec<f32>,
    /// `[rows, cols / group]`, integer zero points in `0..=15`.
    pub zeros: Vec<f32>,
}

fn check_shape(rows: usize, cols: usize, group: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(VqError::Shape(format!("empty weight [{rows}, {cols}]")));
    }
    if group == 0 || !cols.is_multiple_of(group) {
        return Err(VqError::Shape(format!(
            "INT4 group {group} must be positive and divide the {cols} input columns"
        )));
    }
    Ok(())
}

impl Int4Weight {
    /// Quantizes a finite `[rows, cols]` weight with groups of `group` input columns (rows run in parallel).
    pub fn quantize(w: &[f32], rows: usize, cols: usize, group: usize) -> Result<Self> {
        check_shape(rows, cols, group)?;
        if w.len() != rows * cols {
            return Err(VqError::Shape(format!(
                "weight has {} values, expected [{rows}, {cols}]",
                w.len()
            )));
        }
        check_finite("weight", w)?;
        let groups = cols / group;
        let mut q = vec![0u8; rows * cols];
        let mut scales = vec![0.0f32; rows * groups];
        let mut zeros = vec![0.0f32; rows * groups];
        q.par_chunks_mut(group)
            .zip(scales.par_iter_mut())
            .zip(zeros.par_iter_mut())
            .zip(w.par_chunks(group))
            .for_each(|(((qg, s), z), wg)| {
                let (lo, hi) = wg
                    .iter()
                    .fold((0.0f32, 0.0f32), |(a, b), &x| (a.min(x), b.max(x)));
                let scale = f16::from_f32((hi - lo).max(1e-5) / 15.0)
                    .to_f32()
                    .max(f16::MIN_POSITIVE_SUBNORMAL.to_f32());
                let zero = (-lo / scale).round().clamp(0.0, 15.0);
                for (d, &x) in qg.iter_mut().zip(wg) {
                    *d = ((x / scale).round() + zero).clamp(0.0, 15.0) as u8;
                }
                *s = scale;
                *z = zero;
            });
        Ok(Self {
            rows,
            cols,
            group,
            q,
            scales,
            zeros,
        })
    }

    /// Groups per row, `cols / group`.
    pub fn groups(&self) -> usize {
        self.cols / self.group
    }

    /// Checks array lengths and value ranges (fields are public, so a hand-built value may be inconsistent).
    pub fn validate(&self) -> Result<()> {
        check_shape(self.rows, self.cols, self.group)?;
        let n = self.rows * self.groups();
        if self.q.len() != self.rows * self.cols || self.scales.len() != n || self.zeros.len() != n
        {
            return Err(VqError::Format(format!(
                "INT4 [{}, {}] group {}: q/scales/zeros have {}/{}/{} values, expected {}/{n}/{n}",
                self.rows,
                self.cols,
                self.group,
                self.q.len(),
                self.scales.len(),
                self.zeros.len(),
                self.rows * self.cols
            )));
        }
        if let Some(pos) = self.q.iter().position(|&v| v > 15) {
            return Err(VqError::Format(format!(
                "INT4 value {} at {pos} exceeds 15",
                self.q[pos]
            )));
        }
        check_finite("INT4 scales", &self.scales)?;
        check_finite("INT4 zeros", &self.zeros)
    }

    /// The dequantized `[rows, cols]` weight, `(q − zero) · scale`.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        self.validate()?;
        let mut w = vec![0.0f32; self.rows * self.cols];
        w.par_chunks_mut(self.group)
            .zip(self.q.par_chunks(self.group))
            .zip(self.scales.par_iter().zip(self.zeros.par_iter()))
            .for_each(|((wg, qg), (s, z))| {
                for (d, &v) in wg.iter_mut().zip(qg) {
                    *d = (v as f32 - z) * s;
                }
            });
        Ok(w)
    }

    /// Packs the values 8 per u32 along each row, element `8i + j` in bits `4j..4j+4` (low nibble first).
    /// Needs `cols % 8 == 0`. QUICK-style interleaving is a separate, later step.
    pub fn pack_nibbles(&self) -> Result<Vec<u32>> {
        self.validate()?;
        if !self.cols.is_multiple_of(8) {
            return Err(VqError::Shape(format!(
                "nibble packing needs cols % 8 == 0, got {}",
                self.cols
            )));
        }
        Ok(self
            .q
            .chunks_exact(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u32, |acc, (j, &v)| acc | ((v as u32) << (4 * j)))
            })
            .collect())
    }

    /// Inverse of [`Self::pack_nibbles`]: one value per element from `rows * cols / 8` words.
    pub fn unpack_nibbles(words: &[u32], rows: usize, cols: usize) -> Result<Vec<u8>> {
        if !cols.is_multiple_of(8) || words.len() * 8 != rows * cols {
            return Err(VqError::Shape(format!(
                "{} packed words do not hold [{rows}, {cols}] nibbles",
                words.len()
            )));
        }
        Ok(words
            .iter()
            .flat_map(|&w| (0..8).map(move |j| ((w >> (4 * j)) & 15) as u8))
            .collect())
    }
}

/// `y[m, rows] = x[m, cols] · Wᵀ` with the INT4 weight dequantized on the fly, f32 accumulation.
pub fn int4_gemm(x: &[f32], m: usize, w: &Int4Weight) -> Result<Vec<f32>> {
    let dense = w.dequantize()?;
    crate::reference::dense_gemm(x, m, &dense, w.rows, w.cols)
}
