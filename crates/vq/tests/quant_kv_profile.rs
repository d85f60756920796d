//! CQ KV codebooks and codebook-frequency profiling, checked against naive code written here.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::cq::{decode_kv, encode_kv, learn_kv_codebooks};
use vqllm_vq::profile::{
    profile_kv, profile_weight, reorder_kv_by_frequency, reorder_weight_by_frequency,
};
use vqllm_vq::quantize::{quantize_weight, QuantizeOptions};
use vqllm_vq::{KvCodebooks, QuantizedWeight, VqConfig, VqError};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

fn naive_encode(cb: &KvCodebooks, x: &[f32], tokens: usize) -> Vec<u16> {
    let (h, d, v, e) = (cb.kv_heads, cb.head_dim, cb.config.v, cb.config.entries());
    let groups = d / v;
    let mut out = Vec::new();
    for t in 0..tokens {
        for head in 0..h {
            for g in 0..groups {
                let xs = &x[(t * h + head) * d + g * v..(t * h + head) * d + (g + 1) * v];
                let mut best = (f32::INFINITY, 0u16);
                for ent in 0..e {
                    let c = &cb.codebooks[((head * groups + g) * e + ent) * v..][..v];
                    let dist: f32 = xs.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                    if dist < best.0 {
                        best = (dist, ent as u16);
                    }
                }
                out.push(best.1);
            }
        }
    }
    out
}

fn naive_decode_kv(cb: &KvCodebooks, codes: &[u16]) -> Vec<f32> {
    let (v, e, groups) = (cb.config.v, cb.config.entries(), cb.groups());
    let per_token = cb.kv_heads * groups;
    codes
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| cb.codebooks[((i % per_token) * e + c as usize) * v..][..v].to_vec())
        .collect()
}

#[test]
fn kv_codebooks_encode_decode_match_naive() {
    let (tokens, heads, hd) = (600, 2, 16);
    let cfg = VqConfig::preset("cq2").unwrap();
    let calib = random(tokens * heads * hd, 1);
    let learn = |seed: u64| {
        let opts = QuantizeOptions {
            seed,
            ..Default::default()
        };
        learn_kv_codebooks(&calib, tokens, heads, hd, &cfg, None, &opts).unwrap()
    };
    let cb = learn(QuantizeOptions::default().seed);
    assert_eq!(cb.codebooks.len(), heads * (hd / 4) * 256 * 4);
    assert!(cb
        .codebooks
        .iter()
        .all(|&x| half::f16::from_f32(x).to_f32() == x));
    let x = random(100 * heads * hd, 2);
    let codes = encode_kv(&cb, &x, 100).unwrap();
    assert_eq!(codes, naive_encode(&cb, &x, 100));
    let dec = decode_kv(&cb, &codes, 100).unwrap();
    assert_eq!(dec, naive_decode_kv(&cb, &codes));
    // Calibration data is well represented (256 entries for 600 4-d points of one group).
    let cc = encode_kv(&cb, &calib, tokens).unwrap();
    let d = decode_kv(&cb, &cc, tokens).unwrap();
    let rel = (calib
        .iter()
        .zip(&d)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        / calib.iter().map(|a| a * a).sum::<f32>())
    .sqrt();
    assert!(rel < 0.2, "calibration relative error {rel}");
    // Deterministic; another seed differs.
    let again = learn(QuantizeOptions::default().seed);
    assert_eq!(cb, again);
    let other = learn(3);
    assert_ne!(cb.codebooks, other.codebooks);
}

#[test]
fn kv_ties_go_to_the_lowest_index() {
    let cfg: VqConfig = "vq<2,2,1>:kv".parse().unwrap();
    // Entries 1 and 3 are equal, entry 2 is equidistant from x = (0, 0) as entry 1.
    let cb = KvCodebooks {
        config: cfg,
        kv_heads: 1,
        head_dim: 2,
        codebooks: vec![5.0, 5.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
    };
    assert_eq!(encode_kv(&cb, &[0.0, 0.0], 1).unwrap(), vec![1]);
    assert_eq!(encode_kv(&cb, &[1.0, 0.0], 1).unwrap(), vec![1]);
}

#[test]
fn token_weights_pull_codebooks() {
    let (tokens, hd) = (200, 2);
    let cfg: VqConfig = "vq<2,2,1>:kv".parse().unwrap();
    let calib = random(tokens * hd, 4);
    let mut tw = vec![1.0f32; tokens];
    tw[7] = 1e6;
    let cb = learn_kv_codebooks(
        &calib,
        tokens,
        1,
        hd,
        &cfg,
        Some(&tw),
        &QuantizeOptions::default(),
    )
    .unwrap();
    let codes = encode_kv(&cb, &calib, tokens).unwrap();
    let d = decode_kv(&cb, &codes, tokens).unwrap();
    let err =
        |t: usize| (calib[2 * t] - d[2 * t]).powi(2) + (calib[2 * t + 1] - d[2 * t + 1]).powi(2);
    let mean: f32 = (0..tokens).map(err).sum::<f32>() / tokens as f32;
    assert!(
        err(7) < 1e-3 * mean,
        "heavy token error {} vs mean {mean}",
        err(7)
    );
}

#[test]
fn kv_bad_inputs_are_typed_errors() {
    let o = QuantizeOptions::default();
    let cq = VqConfig::preset("cq4").unwrap();
    let calib = random(10 * 8, 5);
    assert!(matches!(
        learn_kv_codebooks(
            &calib,
            10,
            1,
            8,
            &VqConfig::preset("aqlm3").unwrap(),
            None,
            &o
        ),
        Err(VqError::InvalidConfig(_))
    ));
    let r2: VqConfig = "vq<2,8,2>:kv".parse().unwrap();
    assert!(matches!(
        learn_kv_codebooks(&calib, 10, 1, 8, &r2, None, &o),
        Err(VqError::InvalidConfig(_))
    ));
    let v4: VqConfig = "vq<4,8,1>:kv".parse().unwrap();
    assert!(matches!(
        learn_kv_codebooks(&calib[..60], 10, 1, 6, &v4, None, &o),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        learn_kv_codebooks(&calib, 9, 1, 8, &cq, None, &o),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        learn_kv_codebooks(&calib, 10, 1, 8, &cq, Some(&[1.0; 3]), &o),
        Err(VqError::Shape(_))
    ));
    let mut bad = calib.clone();
    bad[3] = f32::INFINITY;
    assert!(matches!(
        learn_kv_codebooks(&bad, 10, 1, 8, &cq, None, &o),
        Err(VqError::NonFinite { index: 3, .. })
    ));
    let cb = learn_kv_codebooks(&calib, 10, 1, 8, &cq, None, &o).unwrap();
    assert!(matches!(
        encode_kv(&cb, &calib[..70], 10),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        encode_kv(&cb, &bad, 10),
        Err(VqError::NonFinite { .. })
    ));
    assert!(decode_kv(&cb, &[0u16; 3], 1).is_err());
}

/// Naive dequantization (tile geometry recomputed here).
fn dequant(q: &QuantizedWeight) -> Vec<f32> {
    let c = &q.config;
    let (v, r, e) = (c.v, c.r, c.entries());
    let groups = q.cols / v;
    let mut out = vec![0.0f32; q.rows * q.cols];
    for n in 0..q.rows {
        for k in 0..groups {
            let set = c.codebook_set_of(q.cols, n, k * v);
            for j in 0..v {
                let mut acc = 0.0f32;
                for s in 0..r {
                    let code = q.codes[(n * groups + k) * r + s] as usize;
                    acc += q.stage_scales[s] * q.codebooks[((set * r + s) * e + code) * v + j];
                }
                out[n * q.cols + k * v + j] = q.scales.as_ref().map_or(1.0, |s| s[n]) * acc;
            }
        }
    }
    out
}

#[test]
fn weight_reordering_preserves_dequantized_values_exactly() {
    for (cfg, rows, cols) in [
        ("vq<4,6,2>:tile=24x32:scale", 50, 80),
        ("aqlm-2x8", 40, 64),
        ("vq<2,5,3>", 30, 20),
    ] {
        let cfg: VqConfig = cfg.parse().unwrap();
        let w = random(rows * cols, 6);
        let mut q = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
        let before = dequant(&q);
        let prof0 = profile_weight(&q).unwrap();
        let prof = reorder_weight_by_frequency(&mut q).unwrap();
        q.validate().unwrap();
        assert_eq!(dequant(&q), before, "{cfg}");
        assert_eq!(prof.total(), (rows * (cols / cfg.v) * cfg.r) as u64);
        assert_eq!(prof.codebooks, q.codebook_sets() * cfg.r);
        for c in 0..prof.codebooks {
            let counts = prof.counts_of(c);
            assert!(
                counts.windows(2).all(|p| p[0] >= p[1]),
                "{cfg} codebook {c} not sorted"
            );
            // Same multiset of counts as before.
            let mut a = prof0.counts_of(c).to_vec();
            a.sort_unstable_by(|x, y| y.cmp(x));
            assert_eq!(a, counts);
        }
        assert!((prof.coverage(cfg.entries()) - 1.0).abs() < 1e-12);
        assert!((prof.coverage(1) - prof0.coverage(1)).abs() < 1e-12);
        // Reordering twice is the identity on the codes.
        let snapshot = q.clone();
        reorder_weight_by_frequency(&mut q).unwrap();
        assert_eq!(q, snapshot);
    }
}

#[test]
fn kv_reordering_preserves_decoded_values() {
    let (tokens, heads, hd) = (300, 2, 8);
    let cfg = VqConfig::preset("cq4").unwrap();
    let calib = random(tokens * heads * hd, 7);
    let mut cb = learn_kv_codebooks(
        &calib,
        tokens,
        heads,
        hd,
        &cfg,
        None,
        &QuantizeOptions::default(),
    )
    .unwrap();
    let mut codes = encode_kv(&cb, &calib, tokens).unwrap();
    let before = decode_kv(&cb, &codes, tokens).unwrap();
    let prof = reorder_kv_by_frequency(&mut cb, &mut codes, tokens).unwrap();
    assert_eq!(decode_kv(&cb, &codes, tokens).unwrap(), before);
    assert_eq!(prof, profile_kv(&cb, &codes, tokens).unwrap());
    assert_eq!(prof.codebooks, heads * hd / 2);
    for c in 0..prof.codebooks {
        assert!(prof.counts_of(c).windows(2).all(|p| p[0] >= p[1]));
    }
    let report = prof.report();
    assert_eq!(report.accesses, (tokens * heads * hd / 2) as u64);
    assert!(report.to_string().contains("lookups"));
}
