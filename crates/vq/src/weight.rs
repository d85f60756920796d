//! The in-memory form of a VQ-quantized weight matrix, shared by quantizers, packing, files and ops.

use crate::config::{CodebookKind, VqConfig};
use crate::error::{Result, VqError};
use serde::{Deserialize, Serialize};

/// Randomized Hadamard incoherence applied on the input side of a weight (QuIP#-style, one-sided).
///
/// The stored codes approximate `W' = W · diag(signs) · Hᵀ`, where `H = I ⊗ H_block / sqrt(block)` is a
/// block-diagonal Sylvester Walsh-Hadamard matrix, so that `W · x = W' · (H · (signs ⊙ x))`: at run time the
/// activations get a sign flip and a fast Walsh-Hadamard transform over blocks of `block` elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rht {
    /// Block size of the Walsh-Hadamard transform: a power of two that divides `cols`.
    pub block: usize,
    /// Random ±1 per input column.
    pub signs: Vec<f32>,
}

/// A VQ-quantized `[rows, cols]` (`[out, in]`) weight.
///
/// Decoding: `W[n, k*v .. k*v+v] = scale[n] · Σ_i stage_scales[i] · entry_i(codes[n, k, i])`, where
/// `entry_i` is row `codes[..]` of residual codebook `i` of the codebook set that covers `(n, k*v)` for
/// learned codebooks, or the E8P lattice point of the 16-bit code for [`CodebookKind::E8p`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedWeight {
    pub config: VqConfig,
    /// Output channels (`out`).
    pub rows: usize,
    /// Input channels (`in`), a multiple of `config.v`.
    pub cols: usize,
    /// Codes, `[rows, cols / v, r]` row-major; each `< 2^b`.
    pub codes: Vec<u16>,
    /// Learned codebooks, `[sets, r, 2^b, v]` row-major (values are fp16-representable); empty for E8P.
    pub codebooks: Vec<f32>,
    /// Multiplier of each residual stage (`r` values): 1.0 for learned codebooks; E8P uses `[1, 1/3.45]`.
    pub stage_scales: Vec<f32>,
    /// Per-output-channel scale, `[rows]`, when `config.per_channel_scale`.
    pub scales: Option<Vec<f32>>,
    /// Input-side Hadamard incoherence, when `config.hadamard`.
    pub rht: Option<Rht>,
}

impl QuantizedWeight {
    /// Number of vectors per row, `cols / v`.
    pub fn groups(&self) -> usize {
        self.cols / self.config.v
    }

    /// Number of codebook sets (1 unless tile-scoped).
    pub fn codebook_sets(&self) -> usize {
        self.config.num_codebook_sets(self.rows, self.cols)
    }

    /// Code of residual `stage` for row `n` and vector `k`.
    pub fn code(&self, n: usize, k: usize, stage: usize) -> u16 {
        self.codes[(n * self.groups() + k) * self.config.r + stage]
    }

    /// Offset of entry `e` of residual `stage` of codebook set `set` in [`Self::codebooks`].
    pub fn entry_offset(&self, set: usize, stage: usize, e: usize) -> usize {
        let c = &self.config;
        ((set * c.r + stage) * c.entries() + e) * c.v
    }

    /// Checks every array against the config and shape; used after loading a file.
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        c.validate()?;
        c.check_weight_shape(self.rows, self.cols)?;
        let bad = |what: &str, got: usize, want: usize| {
            Err(VqError::Format(format!(
                "{what} has {got} values, expected {want} for {c} [{}, {}]",
                self.rows, self.cols
            )))
        };
        let n_codes = self.rows * self.groups() * c.r;
        if self.codes.len() != n_codes {
            return bad("codes", self.codes.len(), n_codes);
        }
        if let Some(pos) = self.codes.iter().position(|&x| (x as usize) >= c.entries()) {
            return Err(VqError::Format(format!(
                "code {} at {pos} exceeds 2^{}",
                self.codes[pos], c.b
            )));
        }
        let n_cb = match c.codebook {
            CodebookKind::Learned => self.codebook_sets() * c.r * c.entries() * c.v,
            CodebookKind::E8p => 0,
        };
        if self.codebooks.len() != n_cb {
            return bad("codebooks", self.codebooks.len(), n_cb);
        }
        if self.stage_scales.len() != c.r {
            return bad("stage_scales", self.stage_scales.len(), c.r);
        }
        match (&self.scales, c.per_channel_scale) {
            (Some(s), true) if s.len() != self.rows => return bad("scales", s.len(), self.rows),
            (None, true) => return Err(VqError::Format(format!("{c} needs per-channel scales"))),
            (Some(_), false) => {
                return Err(VqError::Format(format!("{c} has no per-channel scales")))
            }
            _ => {}
        }
        match (&self.rht, c.hadamard) {
            (Some(h), true)
                if (h.signs.len() != self.cols
                    || !h.block.is_power_of_two()
                    || !self.cols.is_multiple_of(h.block)) =>
            {
                return Err(VqError::Format(format!(
                    "Hadamard block {} / {} signs do not fit {} columns",
                    h.block,
                    h.signs.len(),
                    self.cols
                )));
            }
            (None, true) => return Err(VqError::Format(format!("{c} needs Hadamard signs"))),
            (Some(_), false) => {
                return Err(VqError::Format(format!("{c} has no Hadamard transform")))
            }
            _ => {}
        }
        crate::error::check_finite("codebooks", &self.codebooks)?;
        crate::error::check_finite("stage_scales", &self.stage_scales)?;
        if let Some(s) = &self.scales {
            crate::error::check_finite("scales", s)?;
        }
        Ok(())
    }
}
