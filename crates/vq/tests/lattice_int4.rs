//! INT4 group-wise baseline against an independent naive AWQ-style quantizer.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::int4::{int4_gemm, Int4Weight, INT4_GROUP};
use vqllm_vq::VqError;

/// Naive single-threaded AWQ `pseudo_quantize_tensor` with fp16 scales and the range widened to include 0
/// (GPTQ): returns (q, scales, zeros).
fn naive_awq(w: &[f32], rows: usize, cols: usize, group: usize) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let (mut q, mut scales, mut zeros) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..rows {
        for g in 0..cols / group {
            let vals = &w[n * cols + g * group..n * cols + (g + 1) * group];
            let mut lo = 0.0f32;
            let mut hi = 0.0f32;
            for &v in vals {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            let s = f16::from_f32(((hi - lo).max(1e-5)) / 15.0).to_f32();
            let z = (-lo / s).round().clamp(0.0, 15.0);
            for &v in vals {
                q.push(((v / s).round() + z).clamp(0.0, 15.0) as u8);
            }
            scales.push(s);
            zeros.push(z);
        }
    }
    (q, scales, zeros)
}

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * rng.random_range(0.01f32..0.2))
        .collect()
}

#[test]
fn quantize_matches_naive_and_error_is_bounded() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (rows, cols, group) in [(8, 256, INT4_GROUP), (5, 96, 32), (3, 64, 64)] {
        let mut w = random(&mut rng, rows * cols);
        // One group of all-positive values, where the zero point clamps at 0.
        w[..group].iter_mut().for_each(|v| *v = v.abs() + 0.5);
        let q = Int4Weight::quantize(&w, rows, cols, group).unwrap();
        let (nq, ns, nz) = naive_awq(&w, rows, cols, group);
        assert_eq!(q.q, nq);
        assert_eq!(q.scales, ns);
        assert_eq!(q.zeros, nz);
        let d = q.dequantize().unwrap();
        for n in 0..rows {
            for c in 0..cols {
                let gi = n * (cols / group) + c / group;
                let (s, z) = (ns[gi], nz[gi]);
                let i = n * cols + c;
                assert_eq!(d[i], (nq[i] as f32 - z) * s);
                // Inside the representable range, rounding error is at most half a step.
                let lo = -z * s;
                let hi = (15.0 - z) * s;
                if w[i] >= lo && w[i] <= hi {
                    assert!((d[i] - w[i]).abs() <= 0.5 * s * 1.001 + 1e-7, "({n},{c})");
                }
            }
        }
        let rel: f32 = w.iter().zip(&d).map(|(a, b)| (a - b).powi(2)).sum::<f32>()
            / w.iter().map(|a| a * a).sum::<f32>();
        assert!(rel < 0.02, "relative error {rel}");
    }
}

#[test]
fn gemm_matches_naive() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (rows, cols, m) = (7, 256, 3);
    let w = random(&mut rng, rows * cols);
    let q = Int4Weight::quantize(&w, rows, cols, 128).unwrap();
    let x = random(&mut rng, m * cols);
    let y = int4_gemm(&x, m, &q).unwrap();
    for t in 0..m {
        for n in 0..rows {
            let mut acc = 0.0f64;
            for k in 0..cols {
                let gi = n * 2 + k / 128;
                acc += x[t * cols + k] as f64
                    * ((q.q[n * cols + k] as f32 - q.zeros[gi]) * q.scales[gi]) as f64;
            }
            assert!((y[t * rows + n] as f64 - acc).abs() < 1e-5, "({t},{n})");
        }
    }
}

#[test]
fn nibble_packing_round_trips_with_documented_layout() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let w = random(&mut rng, 4 * 64);
    let q = Int4Weight::quantize(&w, 4, 64, 32).unwrap();
    let packed = q.pack_nibbles().unwrap();
    assert_eq!(packed.len(), 4 * 64 / 8);
    for (i, &v) in q.q.iter().enumerate() {
        assert_eq!((packed[i / 8] >> (4 * (i % 8))) & 15, v as u32);
    }
    assert_eq!(Int4Weight::unpack_nibbles(&packed, 4, 64).unwrap(), q.q);
    assert!(Int4Weight::unpack_nibbles(&packed, 4, 60).is_err());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let w = vec![0.1f32; 2 * 256];
    assert!(matches!(
        Int4Weight::quantize(&w, 2, 256, 96),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        Int4Weight::quantize(&w, 2, 256, 0),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        Int4Weight::quantize(&w, 3, 256, 128),
        Err(VqError::Shape(_))
    ));
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        Int4Weight::quantize(&nan, 2, 256, 128),
        Err(VqError::NonFinite { index: 5, .. })
    ));
    let mut q = Int4Weight::quantize(&w, 2, 256, 128).unwrap();
    assert!(matches!(
        int4_gemm(&[0.0; 255], 1, &q),
        Err(VqError::Shape(_))
    ));
    q.q[0] = 16;
    assert!(matches!(q.dequantize(), Err(VqError::Format(_))));
    q.q[0] = 1;
    q.scales.pop();
    assert!(matches!(q.pack_nibbles(), Err(VqError::Format(_))));
}
