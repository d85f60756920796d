//! Decode attention references: dense against a naive f64 implementation, VQ against dense on the decoded cache.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::attention::{attention_decode_dense, attention_decode_vq};
use vqllm_vq::{KvCodebooks, VqConfig, VqError};

fn random(rng: &mut ChaCha8Rng, n: usize, amp: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-amp..amp)).collect()
}

/// Naive GQA decode attention in f64.
#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[usize],
    hq: usize,
    hkv: usize,
    d: usize,
    cap: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; lens.len() * hq * d];
    for (b, &len) in lens.iter().enumerate() {
        for h in 0..hq {
            let kh = h / (hq / hkv);
            let at = |t: usize, c: usize| ((b * hkv + kh) * cap + t) * d + c;
            let scores: Vec<f64> = (0..len)
                .map(|t| {
                    (0..d)
                        .map(|c| q[(b * hq + h) * d + c] as f64 * k[at(t, c)] as f64)
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..d {
                let o: f64 = (0..len).map(|t| e[t] / z * v[at(t, c)] as f64).sum();
                out[(b * hq + h) * d + c] = o as f32;
            }
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "[{i}] {g} vs {w}");
    }
}

#[test]
fn dense_matches_naive_with_gqa_and_ragged_lengths() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (hq, hkv, d, cap, lens) in [
        (8, 2, 16, 40, vec![1, 40, 17, 0]),
        (4, 4, 8, 9, vec![9]),
        (6, 1, 32, 33, vec![5, 33]),
    ] {
        let b = lens.len();
        let q = random(&mut rng, b * hq * d, 1.0);
        let k = random(&mut rng, b * hkv * cap * d, 2.0);
        let v = random(&mut rng, b * hkv * cap * d, 1.0);
        let got = attention_decode_dense(&q, &k, &v, &lens, hq, hkv, d, cap).unwrap();
        assert_close(&got, &naive(&q, &k, &v, &lens, hq, hkv, d, cap), 1e-5);
        for (i, &len) in lens.iter().enumerate() {
            if len == 0 {
                assert!(got[i * hq * d..(i + 1) * hq * d].iter().all(|x| *x == 0.0));
            }
        }
    }
}

fn random_codebooks(
    rng: &mut ChaCha8Rng,
    preset: &str,
    kv_heads: usize,
    head_dim: usize,
) -> KvCodebooks {
    let config = VqConfig::preset(preset).unwrap();
    let n = kv_heads * head_dim / config.v * config.entries() * config.v;
    KvCodebooks {
        config,
        kv_heads,
        head_dim,
        codebooks: random(rng, n, 1.5),
    }
}

/// Decodes a code cache with explicit index arithmetic.
fn decode_cache(codes: &[u16], cb: &KvCodebooks, b: usize, cap: usize) -> Vec<f32> {
    let (v, d, e) = (cb.config.v, cb.head_dim, cb.config.entries());
    let mut out = vec![0.0f32; b * cb.kv_heads * cap * d];
    for s in 0..b {
        for h in 0..cb.kv_heads {
            for t in 0..cap {
                for c in 0..d {
                    let slot = (s * cb.kv_heads + h) * cap + t;
                    let g = c / v;
                    let code = codes[slot * (d / v) + g] as usize;
                    out[slot * d + c] = cb.codebooks[((h * (d / v) + g) * e + code) * v + c % v];
                }
            }
        }
    }
    out
}

#[test]
fn vq_equals_dense_on_decoded_cache() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let (hq, hkv, d, cap) = (8, 2, 16, 24);
    let lens = vec![24, 3, 0, 11];
    let b = lens.len();
    let k_cb = random_codebooks(&mut rng, "cq4", hkv, d);
    let v_cb = random_codebooks(&mut rng, "cq2", hkv, d);
    let k_codes: Vec<u16> = (0..b * hkv * cap * d / 2)
        .map(|_| rng.random_range(0..256))
        .collect();
    let v_codes: Vec<u16> = (0..b * hkv * cap * d / 4)
        .map(|_| rng.random_range(0..256))
        .collect();
    let q = random(&mut rng, b * hq * d, 1.0);
    let got = attention_decode_vq(&q, &k_codes, &v_codes, &k_cb, &v_cb, &lens, hq, cap).unwrap();
    let k = decode_cache(&k_codes, &k_cb, b, cap);
    let v = decode_cache(&v_codes, &v_cb, b, cap);
    assert_close(
        &got,
        &attention_decode_dense(&q, &k, &v, &lens, hq, hkv, d, cap).unwrap(),
        1e-5,
    );
    assert_close(&got, &naive(&q, &k, &v, &lens, hq, hkv, d, cap), 1e-5);
}

#[test]
fn bad_shapes_are_typed_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (hq, hkv, d, cap) = (4, 2, 8, 4);
    let q = vec![0.1f32; hq * d];
    let kv = vec![0.1f32; hkv * cap * d];
    let dense = |lens: &[usize], hq: usize, hkv: usize, kv: &[f32]| {
        attention_decode_dense(&q, kv, kv, lens, hq, hkv, d, cap)
    };
    assert!(dense(&[4], hq, hkv, &kv).is_ok());
    assert!(matches!(dense(&[4], hq, 3, &kv), Err(VqError::Shape(_))));
    assert!(matches!(dense(&[5], hq, hkv, &kv), Err(VqError::Shape(_))));
    assert!(matches!(dense(&[4], 2, hkv, &kv), Err(VqError::Shape(_))));
    assert!(matches!(
        dense(&[4], hq, hkv, &kv[1..]),
        Err(VqError::Shape(_))
    ));

    let k_cb = random_codebooks(&mut rng, "cq2", hkv, d);
    let v_cb = random_codebooks(&mut rng, "cq2", hkv, d);
    let codes = vec![1u16; hkv * cap * d / 4];
    let vq =
        |k_cb: &KvCodebooks, v_cb: &KvCodebooks, k_codes: &[u16], lens: &[usize], hq: usize| {
            attention_decode_vq(&q, k_codes, &codes, k_cb, v_cb, lens, hq, cap)
        };
    assert!(vq(&k_cb, &v_cb, &codes, &[4], hq).is_ok());
    assert!(matches!(
        vq(&k_cb, &v_cb, &codes, &[5], hq),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        vq(&k_cb, &v_cb, &codes, &[4], 3),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        vq(&k_cb, &v_cb, &codes[1..], &[4], hq),
        Err(VqError::Shape(_))
    ));
    let mut big = codes.clone();
    big[2] = 256;
    assert!(matches!(
        vq(&k_cb, &v_cb, &big, &[4], hq),
        Err(VqError::Format(_))
    ));
    let other_heads = random_codebooks(&mut rng, "cq2", 1, d);
    assert!(matches!(
        vq(&other_heads, &v_cb, &codes, &[4], hq),
        Err(VqError::Shape(_))
    ));
    let ragged = KvCodebooks {
        head_dim: 6,
        ..k_cb.clone()
    };
    let ragged_v = KvCodebooks {
        head_dim: 6,
        ..v_cb.clone()
    };
    assert!(matches!(
        vq(&ragged, &ragged_v, &codes, &[4], hq),
        Err(VqError::Shape(_))
    ));
    let mut short = k_cb.clone();
    short.codebooks.pop();
    assert!(matches!(
        vq(&short, &v_cb, &codes, &[4], hq),
        Err(VqError::Format(_))
    ));
    let weight_cfg = KvCodebooks {
        config: VqConfig::preset("gptvq2").unwrap(),
        ..k_cb.clone()
    };
    assert!(matches!(
        vq(&weight_cfg, &v_cb, &codes, &[4], hq),
        Err(VqError::InvalidConfig(_))
    ));
}
