//! QuIP#'s E8P lattice codebook (codebook version 1) and the `quip4` quantizer.
//!
//! Format (see `notes/vq-formats.md` §1.1–1.2, `quip-sharp:lib/codebook/latticee8_padded12.py@79b752f`):
//! - The *abs table* has 256 rows of 8 positive half-odd values: the 227 distinct `|x|` of
//!   `x ∈ D̂8 = D8 + 1/2` with `‖x‖² ≤ 10` in ascending lexicographic order, then 29 fixed rows of norm² 12.
//! - A 16-bit code holds the abs index `a` in bits 15..8 and a sign byte `s` in bits 7..0. With
//!   `p = parity(s)` and `s' = s ^ p`, nibble `j` of the packed row gives coordinate `P[j]`
//!   (`P = [0,2,4,6,1,3,5,7]`), negated when bit `j` of `s'` is set; then `+1/4` is added to every
//!   coordinate when `p = 0` and `−1/4` when `p = 1`. The 65 536 points are distinct.
//! - [`grid_packed_abs`] is the table the GPU kernels read: one u32 per row, nibble `j` = `2·v + 8` of
//!   coordinate `P[j]`, with coordinate 7 pre-negated when the row's coordinate sum is odd (so that an even
//!   number of sign flips always lands in `D̂8`).

use crate::config::CodebookKind;
use crate::config::VqConfig;
use crate::error::{check_finite, Result, VqError};
use crate::hadamard::rht_forward;
use crate::weight::{QuantizedWeight, Rht};
use half::f16;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Codebook version implemented here (QuIP# commit `79b752f`); files with another version must be rejected.
pub const E8P_CODEBOOK_VERSION: u32 = 1;

/// Residual scale of QuIP#'s 4-bit `E8P12RVQ4B`: stage 2 encodes `3.45 · (x − q1)`.
pub const E8P_RESID_SCALE: f32 = 3.45;

/// QuIP#'s `opt_scale` for E8P: the quantizer sees `w / (rms(w) / 1.03)`.
pub const E8P_OPT_SCALE: f32 = 1.03;

/// Nibble `j` of a packed abs row holds coordinate `E8P_NIBBLE_COORD[j]`.
pub const E8P_NIBBLE_COORD: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Number of rows in the abs table.
pub const E8P_ABS_ROWS: usize = 256;

/// The 29 norm²-12 rows of `get_norm12` (version 1), in doubled units (3 ↔ 3/2, 1 ↔ 1/2), file order.
const NORM12_DOUBLED: [[u8; 8]; 29] = [
    [3, 1, 1, 1, 3, 3, 3, 3],
    [1, 3, 1, 1, 3, 3, 3, 3],
    [1, 1, 3, 1, 3, 3, 3, 3],
    [1, 1, 1, 3, 3, 3, 3, 3],
    [3, 3, 3, 1, 3, 3, 1, 1],
    [3, 3, 3, 1, 3, 1, 3, 1],
    [3, 3, 3, 1, 1, 3, 3, 1],
    [3, 3, 3, 1, 3, 1, 1, 3],
    [3, 3, 3, 1, 1, 3, 1, 3],
    [3, 3, 3, 1, 1, 1, 3, 3],
    [3, 3, 1, 3, 3, 3, 1, 1],
    [3, 3, 1, 3, 3, 1, 3, 1],
    [3, 3, 1, 3, 1, 3, 3, 1],
    [3, 3, 1, 3, 3, 1, 1, 3],
    [3, 3, 1, 3, 1, 3, 1, 3],
    [3, 3, 1, 3, 1, 1, 3, 3],
    [3, 1, 3, 3, 3, 3, 1, 1],
    [3, 1, 3, 3, 3, 1, 3, 1],
    [3, 1, 3, 3, 1, 3, 3, 1],
    [3, 1, 3, 3, 3, 1, 1, 3],
    [3, 1, 3, 3, 1, 3, 1, 3],
    [1, 3, 3, 3, 1, 1, 3, 3],
    [1, 3, 3, 3, 3, 3, 1, 1],
    [1, 3, 3, 3, 3, 1, 3, 1],
    [1, 3, 3, 3, 1, 3, 3, 1],
    [1, 3, 3, 3, 3, 1, 1, 3],
    [1, 3, 3, 3, 1, 3, 1, 3],
    [1, 1, 3, 3, 1, 3, 3, 3],
    [3, 3, 1, 1, 3, 3, 3, 1],
];

/// Everything derived from the abs table, built once.
struct Tables {
    /// Abs rows in natural coordinate order.
    abs: [[f32; 8]; E8P_ABS_ROWS],
    /// The packed kernel table.
    packed: [u32; E8P_ABS_ROWS],
    /// Abs rows transposed (`[coordinate][row]`), for a vectorizable encoder.
    abs_t: [[f32; E8P_ABS_ROWS]; 8],
    /// `‖row‖²`.
    norm2: [f32; E8P_ABS_ROWS],
    /// 1.0 where the row's coordinate sum is odd, else 0.0.
    odd: [f32; E8P_ABS_ROWS],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(build_tables)
}

/// The abs rows in doubled units: the enumeration of §1.1 step 1, then the norm-12 rows.
///
/// Every `|x|` with half-odd entries and `‖x‖² ≤ 10` is the abs of some `x ∈ D̂8` (flipping one sign changes
/// the sum by an odd integer), so enumerating `{1,3,5,7}^8` in lexicographic order yields the distinct,
/// sorted abs rows directly.
fn abs_rows_doubled() -> Vec<[u8; 8]> {
    let mut rows = Vec::with_capacity(E8P_ABS_ROWS);
    for idx in 0..(1u32 << 16) {
        // Two bits per coordinate, coordinate 0 most significant: lexicographic order.
        let row: [u8; 8] = std::array::from_fn(|i| 2 * ((idx >> (14 - 2 * i)) & 3) as u8 + 1);
        let norm4: u32 = row.iter().map(|&d| (d as u32) * (d as u32)).sum();
        if norm4 <= 40 {
            rows.push(row);
        }
    }
    rows.extend_from_slice(&NORM12_DOUBLED);
    rows
}

fn build_tables() -> Tables {
    let rows = abs_rows_doubled();
    debug_assert_eq!(rows.len(), E8P_ABS_ROWS);
    let mut t = Tables {
        abs: [[0.0; 8]; E8P_ABS_ROWS],
        packed: [0; E8P_ABS_ROWS],
        abs_t: [[0.0; E8P_ABS_ROWS]; 8],
        norm2: [0.0; E8P_ABS_ROWS],
        odd: [0.0; E8P_ABS_ROWS],
    };
    for (a, row) in rows.iter().enumerate().take(E8P_ABS_ROWS) {
        let sum_doubled: u32 = row.iter().map(|&d| d as u32).sum();
        let odd = (sum_doubled / 2) % 2 == 1;
        let mut word = 0u32;
        for (j, &c) in E8P_NIBBLE_COORD.iter().enumerate() {
            let d = row[c] as i32;
            let signed = if j == 7 && odd { -d } else { d };
            word |= ((signed + 8) as u32) << (4 * j);
        }
        t.packed[a] = word;
        for (i, &d) in row.iter().enumerate() {
            let v = d as f32 / 2.0;
            t.abs[a][i] = v;
            t.abs_t[i][a] = v;
            t.norm2[a] += v * v;
        }
        t.odd[a] = if odd { 1.0 } else { 0.0 };
    }
    t
}

/// The 256 abs rows (positive half-odd coordinates in natural order).
pub fn abs_grid() -> &'static [[f32; 8]; E8P_ABS_ROWS] {
    &tables().abs
}

/// The packed abs table (`grid_packed_abs` of QuIP#) that GPU kernels decode from; see the module docs.
pub fn grid_packed_abs() -> &'static [u32; E8P_ABS_ROWS] {
    &tables().packed
}

/// Decodes a 16-bit E8P code into its lattice point, from the packed table exactly as the kernels do.
pub fn decode_e8p(code: u16) -> [f32; 8] {
    let word = grid_packed_abs()[(code >> 8) as usize];
    let mut s = (code & 0xff) as u32;
    let p = s.count_ones() & 1;
    s ^= p;
    let shift = if p == 0 { 0.25 } else { -0.25 };
    let mut out = [0.0f32; 8];
    for (j, &c) in E8P_NIBBLE_COORD.iter().enumerate() {
        let v = (((word >> (4 * j)) & 15) as f32 - 8.0) / 2.0;
        out[c] = if (s >> j) & 1 == 1 { -v } else { v } + shift;
    }
    out
}

/// Nearest E8P point to `x` (squared Euclidean distance); ties go to the first minimum found.
///
/// Sign symmetry: on the coset with shift `t = ±1/4`, let `z = x − t`. For abs row `A` the best signed point
/// is `sign(z) ⊙ A` if that has an even coordinate sum, else the same with the sign of the coordinate of
/// least `A_i·|z_i|` flipped. So each coset costs one pass over the 256 rows instead of 32 768 points.
/// Non-finite inputs give an unspecified (but valid) code; callers check finiteness first.
pub fn encode_e8p(x: &[f32; 8]) -> u16 {
    let t = tables();
    let mut best = (f32::INFINITY, 0usize, 0u32);
    for p in 0..2u32 {
        let shift = if p == 0 { 0.25 } else { -0.25 };
        let z: [f32; 8] = std::array::from_fn(|i| x[i] - shift);
        let neg_par = (z.iter().filter(|v| **v < 0.0).count() & 1) as f32;
        let zz: f32 = z.iter().map(|v| v * v).sum();
        let mut dot = [0.0f32; E8P_ABS_ROWS];
        let mut least = [f32::INFINITY; E8P_ABS_ROWS];
        for (col, zi) in t.abs_t.iter().zip(&z) {
            let az = zi.abs();
            for a in 0..E8P_ABS_ROWS {
                let prod = col[a] * az;
                dot[a] += prod;
                // A plain compare-select (no NaN handling) vectorizes to a packed min.
                least[a] = if prod < least[a] { prod } else { least[a] };
            }
        }
        // Squared distance to the best signed point of each row (the constant ‖z‖² included, since the
        // two cosets are compared). A flip is needed when the parity of negative signs differs from the
        // row's sum parity; it costs 2·(2·A_i·|z_i|) for the weakest coordinate.
        let mut dist = [0.0f32; E8P_ABS_ROWS];
        for a in 0..E8P_ABS_ROWS {
            let flip = (neg_par - t.odd[a]).abs();
            dist[a] = zz + t.norm2[a] - 2.0 * dot[a] + 4.0 * flip * least[a];
        }
        for (a, &d) in dist.iter().enumerate() {
            if d < best.0 {
                best = (d, a, p);
            }
        }
    }
    let (_, a, p) = best;
    code_for(x, a, p)
}

/// Builds the code of the best signed version of abs row `a` on coset `p` for input `x`.
fn code_for(x: &[f32; 8], a: usize, p: u32) -> u16 {
    let t = tables();
    let shift = if p == 0 { 0.25 } else { -0.25 };
    let z: [f32; 8] = std::array::from_fn(|i| x[i] - shift);
    let mut neg: u32 = (0..8).filter(|&i| z[i] < 0.0).fold(0, |m, i| m | (1 << i));
    if (neg.count_ones() & 1) as f32 != t.odd[a] {
        let weakest = (0..8)
            .min_by(|&i, &j| (t.abs[a][i] * z[i].abs()).total_cmp(&(t.abs[a][j] * z[j].abs())))
            .unwrap_or(0);
        neg ^= 1 << weakest;
    }
    let odd = t.odd[a] == 1.0;
    let mut s_prime = 0u32;
    for (j, &c) in E8P_NIBBLE_COORD.iter().enumerate() {
        let pre_negated = c == 7 && odd;
        if ((neg >> c) & 1 == 1) != pre_negated {
            s_prime |= 1 << j;
        }
    }
    ((a as u16) << 8) | (s_prime ^ p) as u16
}

/// Rounds a positive scale to the nearest fp16 value that is positive and finite.
fn fp16_scale(s: f32) -> f32 {
    let h = f16::from_f32(s).to_f32();
    if h == 0.0 {
        f16::MIN_POSITIVE_SUBNORMAL.to_f32()
    } else if !h.is_finite() {
        f16::MAX.to_f32()
    } else {
        h
    }
}

/// Quantizes a `[rows, cols]` weight with E8P residual stages (`quip4`: v=8, b=16, r=2, scales, Hadamard).
///
/// Steps, per output row (rows run in parallel):
/// 1. If `config.hadamard`: rotate the row, `w' = H · (signs ⊙ w)`, i.e. `W' = W · diag(signs) · Hᵀ`, with
///    signs from `seed` and the block of [`crate::hadamard::default_rht_block`] (largest power of two dividing
///    `cols`, at most 4096). Otherwise `w' = w`.
/// 2. Scale: `scale = rms(w') / 1.03` (QuIP#'s `opt_scale`, applied per row rather than per tensor), rounded to
///    fp16 so the GPU reads the same value; a zero row gets scale 0 and decodes to exactly zero.
/// 3. Stages: `x = w' / scale`; stage `i` encodes `3.45^i · (x − Σ_{j<i} q_j / 3.45^j)` with the nearest E8P
///    point, and `stage_scales[i] = 1 / 3.45^i` (`[1, 1/3.45]` for r=2, QuIP#'s RVQ4B; r=1 is plain E8P,
///    r=3,4 continue the geometric scaling).
///
/// Rounding is plain nearest per vector: no LDLQ / Hessian feedback (QuIP# uses LDLQ with calibration data).
/// The result decodes with [`crate::reference::dequantize`] to an approximation of `w`.
pub fn quantize_e8p(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &VqConfig,
    seed: u64,
) -> Result<QuantizedWeight> {
    config.validate()?;
    if config.codebook != CodebookKind::E8p {
        return Err(VqError::InvalidConfig(format!(
            "{config} is not an E8P lattice config"
        )));
    }
    if !config.per_channel_scale {
        return Err(VqError::InvalidConfig(format!(
            "{config}: E8P quantization needs per-channel scales (the lattice has no stored values to scale)"
        )));
    }
    config.check_weight_shape(rows, cols)?;
    if w.len() != rows * cols {
        return Err(VqError::Shape(format!(
            "weight has {} values, expected [{rows}, {cols}]",
            w.len()
        )));
    }
    check_finite("weight", w)?;
    let rht = if config.hadamard {
        Some(Rht::from_seed(cols, seed)?)
    } else {
        None
    };
    let r = config.r;
    let groups = cols / 8;
    let stage_scales: Vec<f32> = (0..r).map(|i| E8P_RESID_SCALE.powi(-(i as i32))).collect();
    let mut codes = vec![0u16; rows * groups * r];
    let mut scales = vec![0.0f32; rows];
    let mut rotated = w.to_vec();
    if let Some(h) = &rht {
        rht_forward(&mut rotated, h)?;
    }
    codes
        .par_chunks_mut(groups * r)
        .zip(scales.par_iter_mut())
        .zip(rotated.par_chunks(cols))
        .for_each(|((row_codes, scale), row)| {
            *scale = quantize_row(row, &stage_scales, row_codes);
        });
    Ok(QuantizedWeight {
        config: *config,
        rows,
        cols,
        codes,
        codebooks: Vec::new(),
        stage_scales,
        scales: Some(scales),
        rht,
    })
}

/// Encodes one rotated row into `codes` (`[cols/8, r]`) and returns its scale.
fn quantize_row(row: &[f32], stage_scales: &[f32], codes: &mut [u16]) -> f32 {
    let r = stage_scales.len();
    let mean_sq = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / row.len() as f64;
    if mean_sq == 0.0 {
        let zero = encode_e8p(&[0.0; 8]);
        codes.iter_mut().for_each(|c| *c = zero);
        return 0.0;
    }
    let scale = fp16_scale((mean_sq.sqrt() as f32) / E8P_OPT_SCALE);
    for (chunk, vec_codes) in row.chunks_exact(8).zip(codes.chunks_exact_mut(r)) {
        let mut resid: [f32; 8] = std::array::from_fn(|i| chunk[i] / scale);
        for (stage, code) in vec_codes.iter_mut().enumerate() {
            let gain = 1.0 / stage_scales[stage];
            let target: [f32; 8] = std::array::from_fn(|i| resid[i] * gain);
            *code = encode_e8p(&target);
            let q = decode_e8p(*code);
            for i in 0..8 {
                resid[i] -= stage_scales[stage] * q[i];
            }
        }
    }
    scale
}
