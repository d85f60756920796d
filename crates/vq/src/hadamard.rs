//! Fast Walsh-Hadamard transform (FWHT) and the randomized Hadamard transform (RHT) of [`Rht`].
//!
//! Conventions (the GPU kernels follow the same ones):
//! - Sylvester (natural) order: `H_n[i][j] = (-1)^popcount(i & j)`, scaled by `1/sqrt(n)` so that `H` is
//!   orthonormal and symmetric (`H = Hᵀ = H⁻¹`).
//! - The transform of an [`Rht`] is block-diagonal: a vector of `cols` elements is split into `cols / block`
//!   consecutive blocks and each block is transformed on its own.
//! - `rht_forward(x) = H · (signs ⊙ x)` is what the activations get at run time; `rht_inverse(y) = signs ⊙ (H · y)`
//!   is its transpose (and its inverse for ±1 signs).

use crate::error::{Result, VqError};
use crate::weight::Rht;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Largest Walsh-Hadamard block chosen by [`default_rht_block`]: 4096 f32 values (16 KiB) still fit one
/// thread block's shared memory on the GPU, and every Llama hidden size up to 4096 gets a full-width block.
pub const MAX_RHT_BLOCK: usize = 4096;

/// Rows per rayon task when a batch of vectors is transformed.
const ROWS_PER_TASK: usize = 16;

/// In-place orthonormal Walsh-Hadamard transform of one vector whose length is a power of two.
pub fn fwht_inplace(x: &mut [f32]) -> Result<()> {
    let n = x.len();
    if n == 0 || !n.is_power_of_two() {
        return Err(VqError::Shape(format!(
            "Walsh-Hadamard length {n} is not a power of two"
        )));
    }
    fwht_unchecked(x);
    Ok(())
}

/// Butterfly passes plus the `1/sqrt(n)` scaling; `x.len()` must be a power of two.
fn fwht_unchecked(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        for chunk in x.chunks_exact_mut(2 * h) {
            let (lo, hi) = chunk.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                let (u, v) = (*a, *b);
                *a = u + v;
                *b = u - v;
            }
        }
        h *= 2;
    }
    let scale = 1.0 / (n as f32).sqrt();
    x.iter_mut().for_each(|v| *v *= scale);
}

/// In-place orthonormal Walsh-Hadamard transform of every consecutive `block`-element block of `x`.
pub fn fwht_blocks(x: &mut [f32], block: usize) -> Result<()> {
    if block == 0 || !block.is_power_of_two() {
        return Err(VqError::Shape(format!(
            "Walsh-Hadamard block {block} is not a power of two"
        )));
    }
    if !x.len().is_multiple_of(block) {
        return Err(VqError::Shape(format!(
            "length {} is not a multiple of the Hadamard block {block}",
            x.len()
        )));
    }
    x.chunks_exact_mut(block).for_each(fwht_unchecked);
    Ok(())
}

/// The default Walsh-Hadamard block for `cols` input columns: the largest power of two dividing `cols`,
/// capped at [`MAX_RHT_BLOCK`]. (For Llama-2-7B: 4096 → 4096, 11008 = 43·256 → 256.)
pub fn default_rht_block(cols: usize) -> usize {
    if cols == 0 {
        return 1;
    }
    (1usize << cols.trailing_zeros()).min(MAX_RHT_BLOCK)
}

impl Rht {
    /// Random ±1 signs for `cols` columns from `seed` (ChaCha8), with the [`default_rht_block`].
    pub fn from_seed(cols: usize, seed: u64) -> Result<Self> {
        Self::with_block(cols, default_rht_block(cols), seed)
    }

    /// Random ±1 signs for `cols` columns from `seed` (ChaCha8) with an explicit block size.
    pub fn with_block(cols: usize, block: usize, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let signs = (0..cols)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let rht = Self { block, signs };
        rht.check()?;
        Ok(rht)
    }

    /// Number of columns (length of one transformed vector).
    pub fn cols(&self) -> usize {
        self.signs.len()
    }

    /// Checks that the block is a power of two dividing the column count and that the signs are finite.
    pub fn check(&self) -> Result<()> {
        let cols = self.signs.len();
        if cols == 0
            || self.block == 0
            || !self.block.is_power_of_two()
            || !cols.is_multiple_of(self.block)
        {
            return Err(VqError::Shape(format!(
                "Hadamard block {} must be a power of two dividing the {cols} columns",
                self.block
            )));
        }
        crate::error::check_finite("Hadamard signs", &self.signs)
    }
}

/// Checks `rht` and that `x` holds whole rows of `rht.cols()` elements; returns the row count.
fn check_rows(x: &[f32], rht: &Rht) -> Result<usize> {
    rht.check()?;
    let cols = rht.cols();
    if !x.len().is_multiple_of(cols) {
        return Err(VqError::Shape(format!(
            "{} values are not whole rows of {cols} columns",
            x.len()
        )));
    }
    Ok(x.len() / cols)
}

/// `x ← H · (signs ⊙ x)` for every row of `x` (`[m, cols]` row-major, `m ≥ 1`): the run-time activation transform.
///
/// A weight row transformed the same way gives the rotated weight `W' = W · diag(signs) · Hᵀ` that QuIP#-style
/// quantizers encode, because `W · x = W' · rht_forward(x)`.
pub fn rht_forward(x: &mut [f32], rht: &Rht) -> Result<()> {
    check_rows(x, rht)?;
    let cols = rht.cols();
    x.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_exact_mut(cols) {
            row.iter_mut().zip(&rht.signs).for_each(|(v, s)| *v *= s);
            row.chunks_exact_mut(rht.block).for_each(fwht_unchecked);
        }
    });
    Ok(())
}

/// `y ← signs ⊙ (H · y)` for every row of `y`: the transpose of [`rht_forward`], its inverse for ±1 signs.
///
/// Applied to the rows of a rotated weight `W'` it gives the effective weight `W' · H · diag(signs)` that acts on
/// raw activations.
pub fn rht_inverse(y: &mut [f32], rht: &Rht) -> Result<()> {
    check_rows(y, rht)?;
    let cols = rht.cols();
    y.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_exact_mut(cols) {
            row.chunks_exact_mut(rht.block).for_each(fwht_unchecked);
            row.iter_mut().zip(&rht.signs).for_each(|(v, s)| *v *= s);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense Sylvester Hadamard matrix entry, orthonormal scaling.
    fn h_entry(n: usize, i: usize, j: usize) -> f32 {
        let sign = if (i & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        sign / (n as f32).sqrt()
    }

    fn random_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    #[test]
    fn fwht_matches_dense_matrix() {
        for (n, seed) in [(1usize, 1u64), (2, 2), (8, 3), (64, 4), (1024, 5)] {
            let x = random_vec(n, seed);
            let mut fast = x.clone();
            fwht_inplace(&mut fast).unwrap();
            for (i, got) in fast.iter().enumerate() {
                let want: f32 = (0..n).map(|j| h_entry(n, i, j) * x[j]).sum();
                assert!((got - want).abs() < 1e-4, "n={n} i={i}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn rht_forward_matches_dense_block_diagonal_product() {
        let (cols, block, m) = (96, 32, 3);
        let rht = Rht::with_block(cols, block, 9).unwrap();
        let x = random_vec(m * cols, 10);
        let mut fast = x.clone();
        rht_forward(&mut fast, &rht).unwrap();
        for r in 0..m {
            for i in 0..cols {
                let b0 = i / block * block;
                let want: f32 = (b0..b0 + block)
                    .map(|j| h_entry(block, i - b0, j - b0) * rht.signs[j] * x[r * cols + j])
                    .sum();
                assert!((fast[r * cols + i] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn inverse_round_trip_and_norm_preserved() {
        let rht = Rht::from_seed(768, 11).unwrap();
        assert_eq!(rht.block, 256);
        let x = random_vec(5 * 768, 12);
        let mut y = x.clone();
        rht_forward(&mut y, &rht).unwrap();
        let norm = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        assert!((norm(&x) - norm(&y)).abs() < 1e-3 * norm(&x));
        assert!(
            x.iter().zip(&y).any(|(a, b)| (a - b).abs() > 1e-3),
            "transform did nothing"
        );
        rht_inverse(&mut y, &rht).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn hadamard_columns_are_orthonormal() {
        let n = 64;
        let cols: Vec<Vec<f32>> = (0..n)
            .map(|j| {
                let mut e = vec![0.0; n];
                e[j] = 1.0;
                fwht_inplace(&mut e).unwrap();
                e
            })
            .collect();
        for a in 0..n {
            for b in 0..n {
                let dot: f32 = cols[a].iter().zip(&cols[b]).map(|(x, y)| x * y).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "({a},{b}) = {dot}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(fwht_inplace(&mut [0.0; 6]).is_err());
        assert!(fwht_inplace(&mut []).is_err());
        assert!(fwht_blocks(&mut [0.0; 12], 8).is_err());
        assert!(Rht::with_block(96, 64, 0).is_err());
        let rht = Rht::with_block(16, 8, 0).unwrap();
        assert!(rht_forward(&mut [0.0; 24], &rht).is_err());
        let bad = Rht {
            block: 8,
            signs: vec![f32::NAN; 16],
        };
        assert!(rht_inverse(&mut [0.0; 16], &bad).is_err());
    }

    #[test]
    fn default_block_choice() {
        assert_eq!(default_rht_block(4096), 4096);
        assert_eq!(default_rht_block(8192), 4096);
        assert_eq!(default_rht_block(11008), 256);
        assert_eq!(default_rht_block(14336), 2048);
        assert_eq!(default_rht_block(24), 8);
    }
}
