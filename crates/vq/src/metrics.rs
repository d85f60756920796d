//! Reconstruction and kernel-accuracy metrics, accumulated in f64.
//!
//! Every function takes the **reference first** and the approximation second (`reference`, `approx`):
//! the reference is the original weight or the CPU result, the approximation the dequantized weight or
//! the GPU output. Length mismatches are [`VqError::Shape`], NaN/inf inputs [`VqError::NonFinite`].
//!
//! Edge case: with an all-zero reference the relative metrics are 0 when the approximation is also zero
//! and +inf otherwise (SNR: +inf and −inf).

use crate::error::{check_finite, Result, VqError};

/// All metrics of one comparison; see [`compare`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorStats {
    /// `‖ref − approx‖² / ‖ref‖²`.
    pub relative_mse: f64,
    /// `10 · log10(1 / relative_mse)` in dB.
    pub snr_db: f64,
    /// `‖approx − ref‖ / ‖ref‖`, the GPU test metric (pass: < 1e-2 for fp16 paths).
    pub relative_l2: f64,
    /// `max |ref − approx|`.
    pub max_abs: f64,
}

/// Squared error sum and reference energy, after length and finiteness checks.
fn sums(reference: &[f32], approx: &[f32]) -> Result<(f64, f64, f64)> {
    if reference.len() != approx.len() {
        return Err(VqError::Shape(format!(
            "cannot compare {} reference values with {} approximated values",
            reference.len(),
            approx.len()
        )));
    }
    check_finite("reference", reference)?;
    check_finite("approximation", approx)?;
    let (mut err, mut energy, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (&r, &a) in reference.iter().zip(approx) {
        let d = f64::from(r) - f64::from(a);
        err += d * d;
        energy += f64::from(r) * f64::from(r);
        max_abs = max_abs.max(d.abs());
    }
    Ok((err, energy, max_abs))
}

fn ratio(num: f64, den: f64) -> f64 {
    if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

/// Relative mean squared error `‖ref − approx‖² / ‖ref‖²`.
pub fn relative_mse(reference: &[f32], approx: &[f32]) -> Result<f64> {
    let (err, energy, _) = sums(reference, approx)?;
    Ok(ratio(err, energy))
}

/// Signal-to-noise ratio in dB, `10 · log10(‖ref‖² / ‖ref − approx‖²)` (+inf for an exact match).
pub fn snr_db(reference: &[f32], approx: &[f32]) -> Result<f64> {
    Ok(-10.0 * relative_mse(reference, approx)?.log10())
}

/// Relative L2 error `‖approx − ref‖ / ‖ref‖`: the GPU-vs-CPU test metric of DESIGN.md section 7.
pub fn relative_l2_error(reference: &[f32], approx: &[f32]) -> Result<f64> {
    Ok(relative_mse(reference, approx)?.sqrt())
}

/// Largest absolute element-wise difference (0 for empty inputs).
pub fn max_abs_error(reference: &[f32], approx: &[f32]) -> Result<f64> {
    Ok(sums(reference, approx)?.2)
}

/// All metrics in one pass.
pub fn compare(reference: &[f32], approx: &[f32]) -> Result<ErrorStats> {
    let (err, energy, max_abs) = sums(reference, approx)?;
    let relative_mse = ratio(err, energy);
    Ok(ErrorStats {
        relative_mse,
        snr_db: -10.0 * relative_mse.log10(),
        relative_l2: relative_mse.sqrt(),
        max_abs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn known_values() {
        let r = [3.0f32, 4.0];
        let a = [3.0f32, 3.0];
        assert_eq!(relative_mse(&r, &a).unwrap(), 1.0 / 25.0);
        assert!((snr_db(&r, &a).unwrap() - 10.0 * 25f64.log10()).abs() < 1e-12);
        assert!((relative_l2_error(&r, &a).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(max_abs_error(&r, &a).unwrap(), 1.0);
        assert_eq!(snr_db(&r, &r).unwrap(), f64::INFINITY);
        assert_eq!(relative_mse(&[0.0], &[0.0]).unwrap(), 0.0);
        assert_eq!(relative_mse(&[0.0], &[1.0]).unwrap(), f64::INFINITY);
        assert_eq!(relative_mse(&[], &[]).unwrap(), 0.0);
    }

    #[test]
    fn random_data_matches_naive_formulas() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let r: Vec<f32> = (0..1000).map(|_| rng.random_range(-2.0..2.0)).collect();
        let a: Vec<f32> = r.iter().map(|x| x + rng.random_range(-0.1..0.1)).collect();
        let num: f64 = r
            .iter()
            .zip(&a)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let den: f64 = r.iter().map(|x| (*x as f64).powi(2)).sum();
        let max = r
            .iter()
            .zip(&a)
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max);
        let s = compare(&r, &a).unwrap();
        assert!((s.relative_mse - num / den).abs() < 1e-12);
        assert!((s.relative_l2 - (num / den).sqrt()).abs() < 1e-12);
        assert!((s.snr_db - 10.0 * (den / num).log10()).abs() < 1e-9);
        assert!((s.max_abs - max).abs() < 1e-7);
        assert_eq!(s.relative_mse, relative_mse(&r, &a).unwrap());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(
            relative_mse(&[1.0], &[1.0, 2.0]),
            Err(VqError::Shape(_))
        ));
        assert!(matches!(
            compare(&[1.0, 2.0], &[1.0]),
            Err(VqError::Shape(_))
        ));
        assert!(matches!(
            relative_l2_error(&[1.0, f32::NAN], &[1.0, 1.0]),
            Err(VqError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            max_abs_error(&[1.0], &[f32::INFINITY]),
            Err(VqError::NonFinite { .. })
        ));
    }
}
