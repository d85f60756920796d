//! The quip4 E8P quantizer: accuracy, nearest-point stages, RHT incoherence, determinism and errors.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::e8p::{decode_e8p, quantize_e8p};
use vqllm_vq::reference::{dequantize, gemm};
use vqllm_vq::{VqConfig, VqError};

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    // Irwin-Hall approximation of N(0, 1).
    (0..n)
        .map(|_| (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0)
        .collect()
}

fn rel_err(w: &[f32], wq: &[f32]) -> f64 {
    let num: f64 = w
        .iter()
        .zip(wq)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
    num / den
}

fn quip4() -> VqConfig {
    VqConfig::preset("quip4").unwrap()
}

#[test]
fn quip4_reconstructs_gaussian_weights() {
    let (rows, cols) = (48, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let w: Vec<f32> = gaussian(&mut rng, rows * cols)
        .iter()
        .map(|v| v * 0.02)
        .collect();
    let q = quantize_e8p(&w, rows, cols, &quip4(), 5).unwrap();
    q.validate().unwrap();
    assert_eq!(q.rht.as_ref().unwrap().block, 512);
    assert_eq!(q.stage_scales, vec![1.0, 1.0 / 3.45]);
    let e4 = rel_err(&w, &dequantize(&q).unwrap());
    let one: VqConfig = "vq<8,16,1>:e8p:scale:rht".parse().unwrap();
    let e2 = rel_err(
        &w,
        &dequantize(&quantize_e8p(&w, rows, cols, &one, 5).unwrap()).unwrap(),
    );
    // E8P at 2 bits gives ~0.09 relative MSE on Gaussians (QuIP# paper); the residual stage cuts it by ~10x.
    assert!(e2 < 0.12, "2-bit relative error {e2}");
    assert!(e4 < 0.015, "4-bit relative error {e4}");
    assert!(e4 < e2 / 5.0, "{e4} vs {e2}");

    // The GeMM on the quantized weight approximates the dense product.
    let x = gaussian(&mut rng, 2 * cols);
    let y = gemm(&x, 2, &q).unwrap();
    let mut y_dense = vec![0.0f32; 2 * rows];
    for t in 0..2 {
        for n in 0..rows {
            y_dense[t * rows + n] = (0..cols).map(|k| x[t * cols + k] * w[n * cols + k]).sum();
        }
    }
    assert!(rel_err(&y_dense, &y) < 0.03);
}

/// Dense rotation `W' = W · diag(signs) · Hᵀ` computed naively.
fn naive_rotate(w: &[f32], rows: usize, cols: usize, block: usize, signs: &[f32]) -> Vec<f32> {
    let h = |i: usize, j: usize| {
        if i / block != j / block {
            0.0
        } else if ((i % block) & (j % block)).count_ones().is_multiple_of(2) {
            1.0 / (block as f32).sqrt()
        } else {
            -1.0 / (block as f32).sqrt()
        }
    };
    let mut out = vec![0.0f32; rows * cols];
    for n in 0..rows {
        for i in 0..cols {
            out[n * cols + i] = (0..cols)
                .map(|j| h(i, j) * signs[j] * w[n * cols + j])
                .sum();
        }
    }
    out
}

fn dist2(a: &[f32; 8], b: &[f32; 8]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn scales_and_stages_follow_the_documented_recipe() {
    let (rows, cols) = (4, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w = gaussian(&mut rng, rows * cols);
    let q = quantize_e8p(&w, rows, cols, &quip4(), 3).unwrap();
    let rht = q.rht.as_ref().unwrap();
    let wr = naive_rotate(&w, rows, cols, rht.block, &rht.signs);
    let all: Vec<[f32; 8]> = (0..=u16::MAX).map(decode_e8p).collect();
    let scales = q.scales.as_ref().unwrap();
    for n in 0..rows {
        let row = &wr[n * cols..(n + 1) * cols];
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / cols as f32).sqrt();
        let want = f16::from_f32(rms / 1.03).to_f32();
        assert!(
            (scales[n] - want).abs() <= 1e-3 * want,
            "row {n}: scale {} vs {want}",
            scales[n]
        );
        for k in 0..cols / 8 {
            let x: [f32; 8] = std::array::from_fn(|i| row[k * 8 + i] / scales[n]);
            let c1 = q.codes[(n * cols / 8 + k) * 2];
            let c2 = q.codes[(n * cols / 8 + k) * 2 + 1];
            let best1 = all
                .iter()
                .map(|p| dist2(&x, p))
                .fold(f32::INFINITY, f32::min);
            assert!(
                dist2(&x, &all[c1 as usize]) <= best1 + 1e-4,
                "stage 1 not nearest"
            );
            let q1 = decode_e8p(c1);
            let r: [f32; 8] = std::array::from_fn(|i| 3.45 * (x[i] - q1[i]));
            let best2 = all
                .iter()
                .map(|p| dist2(&r, p))
                .fold(f32::INFINITY, f32::min);
            assert!(
                dist2(&r, &all[c2 as usize]) <= best2 + 1e-3,
                "stage 2 not nearest"
            );
        }
    }
}

#[test]
fn hadamard_helps_with_outlier_columns() {
    let (rows, cols) = (32, 256);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut w = gaussian(&mut rng, rows * cols);
    for n in 0..rows {
        for c in [3, 77, 150] {
            w[n * cols + c] *= 25.0;
        }
    }
    let plain: VqConfig = "vq<8,16,2>:e8p:scale".parse().unwrap();
    let q_plain = quantize_e8p(&w, rows, cols, &plain, 0).unwrap();
    assert!(q_plain.rht.is_none());
    let e_plain = rel_err(&w, &dequantize(&q_plain).unwrap());
    let e_rht = rel_err(
        &w,
        &dequantize(&quantize_e8p(&w, rows, cols, &quip4(), 0).unwrap()).unwrap(),
    );
    assert!(e_rht < e_plain * 0.7, "rht {e_rht} vs plain {e_plain}");
}

#[test]
fn zero_rows_decode_to_zero_and_seeds_are_deterministic() {
    let (rows, cols) = (3, 32);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut w = gaussian(&mut rng, rows * cols);
    w[cols..2 * cols].iter_mut().for_each(|v| *v = 0.0);
    let a = quantize_e8p(&w, rows, cols, &quip4(), 9).unwrap();
    let b = quantize_e8p(&w, rows, cols, &quip4(), 9).unwrap();
    let c = quantize_e8p(&w, rows, cols, &quip4(), 10).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.rht, c.rht);
    let d = dequantize(&a).unwrap();
    assert!(d[cols..2 * cols].iter().all(|v| *v == 0.0));
    assert!(d[..cols].iter().any(|v| *v != 0.0));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let w = vec![0.5f32; 4 * 32];
    let learned: VqConfig = "vq<8,8,1>:scale".parse().unwrap();
    assert!(matches!(
        quantize_e8p(&w, 4, 32, &learned, 0),
        Err(VqError::InvalidConfig(_))
    ));
    let no_scale: VqConfig = "vq<8,16,2>:e8p:rht".parse().unwrap();
    assert!(matches!(
        quantize_e8p(&w, 4, 32, &no_scale, 0),
        Err(VqError::InvalidConfig(_))
    ));
    assert!(matches!(
        quantize_e8p(&w, 4, 31, &quip4(), 0),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        quantize_e8p(&w, 5, 32, &quip4(), 0),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        quantize_e8p(&w[..0], 0, 32, &quip4(), 0),
        Err(VqError::Shape(_))
    ));
    let mut bad = w.clone();
    bad[17] = f32::INFINITY;
    assert!(matches!(
        quantize_e8p(&bad, 4, 32, &quip4(), 0),
        Err(VqError::NonFinite { index: 17, .. })
    ));
}
