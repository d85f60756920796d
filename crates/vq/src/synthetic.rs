//! Synthetic quantized weights with random codes and codebooks: for kernel tests and benchmarks at sizes where
//! running the quantizer would take too long (a 8192 x 22016 layer). The codes are uniform, so they show no
//! entry-frequency skew; real quantized weights do.

use crate::config::{CodebookKind, VqConfig};
use crate::error::Result;
use crate::weight::{QuantizedWeight, Rht};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random [`QuantizedWeight`] for `config` and shape `[rows, cols]`: uniform codes, codebook entries uniform in
/// ±0.5 rounded to fp16, scales in [0.5, 1.5), E8P stage scales `[1, 1/3.45]`, Hadamard signs ±1 with the largest
/// power-of-two block (at most 4096) dividing `cols`.
pub fn random_weight(
    config: &VqConfig,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<QuantizedWeight> {
    config.validate()?;
    config.check_weight_shape(rows, cols)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = cols / config.v;
    let entries = config.entries();
    let codes = (0..rows * groups * config.r)
        .map(|_| rng.random_range(0..entries) as u16)
        .collect();
    let (codebooks, stage_scales) = match config.codebook {
        CodebookKind::Learned => {
            let n = config.num_codebook_sets(rows, cols) * config.r * entries * config.v;
            let cb = (0..n)
                .map(|_| half::f16::from_f32(rng.random_range(-0.5f32..0.5)).to_f32())
                .collect();
            (cb, vec![1.0; config.r])
        }
        CodebookKind::E8p => {
            let mut s = vec![1.0f32; config.r];
            for (i, x) in s.iter_mut().enumerate().skip(1) {
                *x = 1.0 / 3.45f32.powi(i as i32);
            }
            (Vec::new(), s)
        }
    };
    let scales = config.per_channel_scale.then(|| {
        (0..rows)
            .map(|_| half::f16::from_f32(rng.random_range(0.5f32..1.5)).to_f32())
            .collect()
    });
    let rht = config.hadamard.then(|| Rht {
        block: 1usize << cols.trailing_zeros().min(12),
        signs: (0..cols)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect(),
    });
    let q = QuantizedWeight {
        config: *config,
        rows,
        cols,
        codes,
        codebooks,
        stage_scales,
        scales,
        rht,
    };
    q.validate()?;
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_validate_for_every_weight_preset() {
        for p in crate::WEIGHT_PRESETS {
            let c = VqConfig::preset(p).unwrap();
            let a = random_weight(&c, 24, 96, 7).unwrap();
            let b = random_weight(&c, 24, 96, 7).unwrap();
            assert_eq!(a, b, "{p}: deterministic");
            assert_ne!(
                a.codes,
                random_weight(&c, 24, 96, 8).unwrap().codes,
                "{p}: seed matters"
            );
        }
        assert!(random_weight(&VqConfig::preset("aqlm3").unwrap(), 4, 12, 0).is_err());
    }
}
