//! Weight quantizer tests against a naive decoder written here (independent of reference.rs).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::quantize::{quantize_weight, QuantizeOptions};
use vqllm_vq::residual::{residual_kmeans, ResidualOptions};
use vqllm_vq::{QuantizedWeight, VqConfig, VqError};

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Naive decode: tile set from the tile geometry, entries summed per stage, times the row scale.
fn naive_decode(q: &QuantizedWeight, tile: Option<(usize, usize)>) -> Vec<f32> {
    let c = &q.config;
    let (v, r, e) = (c.v, c.r, 1usize << c.b);
    let groups = q.cols / v;
    let mut out = vec![0.0f32; q.rows * q.cols];
    for n in 0..q.rows {
        for k in 0..groups {
            let set = match tile {
                Some((tr, tc)) => (n / tr) * q.cols.div_ceil(tc) + (k * v) / tc,
                None => 0,
            };
            for j in 0..v {
                let mut acc = 0.0f32;
                for s in 0..r {
                    let code = q.codes[(n * groups + k) * r + s] as usize;
                    acc += q.stage_scales[s] * q.codebooks[((set * r + s) * e + code) * v + j];
                }
                let scale = q.scales.as_ref().map_or(1.0, |s| s[n]);
                out[n * q.cols + k * v + j] = scale * acc;
            }
        }
    }
    out
}

fn sq_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

fn rel_err(w: &[f32], d: &[f32]) -> f64 {
    (sq_err(w, d) / w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>()).sqrt()
}

fn is_f16(x: f32) -> bool {
    half::f16::from_f32(x).to_f32() == x
}

#[test]
fn tensor_scope_error_falls_with_residual_stages() {
    let (rows, cols) = (64, 128);
    let w = gaussian(rows * cols, 1);
    let opts = QuantizeOptions::default();
    let mut last = f64::INFINITY;
    for r in 1..=3 {
        let cfg: VqConfig = format!("vq<4,6,{r}>").parse().unwrap();
        let q = quantize_weight(&w, rows, cols, &cfg, &opts).unwrap();
        q.validate().unwrap();
        assert!(q.codebooks.iter().all(|&x| is_f16(x)));
        let e = rel_err(&w, &naive_decode(&q, None));
        assert!(e < last, "r={r}: {e} !< {last}");
        last = e;
    }
    assert!(last < 0.35, "3-stage relative error {last}");
}

#[test]
fn beam_search_is_not_worse_than_greedy() {
    let (rows, cols) = (48, 64);
    let w = gaussian(rows * cols, 2);
    let cfg: VqConfig = "vq<8,6,2>".parse().unwrap();
    let greedy = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    let beam = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions { beam_width: 4, ..Default::default() }).unwrap();
    let (g, b) = (sq_err(&w, &naive_decode(&greedy, None)), sq_err(&w, &naive_decode(&beam, None)));
    assert!(b < g, "beam {b} vs greedy {g}");
}

#[test]
fn tile_scope_uses_the_right_codebook_per_tile() {
    // Ragged: rows 40 = 16 + 16 + 8, cols 72 = 32 + 32 + 8; each tile has its own offset, so decoding
    // with another tile's codebook would be far off.
    let (rows, cols, tr, tc) = (40, 72, 16, 32);
    let cfg: VqConfig = format!("vq<4,4,1>:tile={tr}x{tc}").parse().unwrap();
    let noise = gaussian(rows * cols, 3);
    let ntc = cols.div_ceil(tc);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let (n, c) = (i / cols, i % cols);
            let set = (n / tr) * ntc + c / tc;
            10.0 * set as f32 + 0.1 * noise[i]
        })
        .collect();
    let opts = QuantizeOptions { seed: 5, ..Default::default() };
    let q = quantize_weight(&w, rows, cols, &cfg, &opts).unwrap();
    assert_eq!(q.codebook_sets(), 9);
    assert_eq!(q.codebooks.len(), 9 * 16 * 4);
    let d = naive_decode(&q, Some((tr, tc)));
    let max_abs = w.iter().zip(&d).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_abs < 1.0, "max error {max_abs}");
    // Each set's codebook equals residual k-means run directly on that tile with the tile's seed.
    for set in 0..9 {
        let (ti, tj) = (set / ntc, set % ntc);
        let (r0, r1, c0, c1) = (ti * tr, ((ti + 1) * tr).min(rows), tj * tc, ((tj + 1) * tc).min(cols));
        let data: Vec<f32> = (r0..r1).flat_map(|n| w[n * cols + c0..n * cols + c1].to_vec()).collect();
        let ro = ResidualOptions {
            k: 16,
            stages: 1,
            iters: opts.kmeans_iters,
            seed: vqllm_vq::kmeans::mix_seed(opts.seed, set as u64),
            max_samples: Some(opts.max_train_vectors.max(32)),
            beam_width: 0,
            refine_passes: 0,
            fp16: true,
            progress: false,
        };
        let rc = residual_kmeans(&data, 4, None, None, &ro).unwrap();
        assert_eq!(&q.codebooks[set * 64..(set + 1) * 64], &rc.codebooks[..], "set {set}");
    }
}

#[test]
fn per_channel_scales_are_least_squares_and_fp16() {
    let (rows, cols) = (32, 64);
    let base = gaussian(rows * cols, 4);
    // Row magnitudes span 1e-3 .. 1e2.
    let w: Vec<f32> = base.iter().enumerate().map(|(i, &x)| x * 10f32.powi((i / cols) as i32 % 6 - 3)).collect();
    let cfg: VqConfig = "vq<8,8,2>:scale".parse().unwrap();
    let q = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    let scales = q.scales.clone().unwrap();
    assert!(scales.iter().all(|&s| is_f16(s) && s > 0.0));
    let d = naive_decode(&q, None);
    for n in 0..rows {
        let row = &w[n * cols..(n + 1) * cols];
        let e = rel_err(row, &d[n * cols..(n + 1) * cols]);
        assert!(e < 0.5, "row {n}: relative error {e}");
        // The scale minimises the row error: nudging it either way is worse.
        let unscaled: Vec<f32> = d[n * cols..(n + 1) * cols].iter().map(|&x| x / scales[n]).collect();
        let err_at = |s: f32| sq_err(row, &unscaled.iter().map(|&x| x * s).collect::<Vec<_>>());
        let e0 = err_at(scales[n]);
        assert!(e0 <= err_at(scales[n] * 1.01) && e0 <= err_at(scales[n] * 0.99), "row {n}");
    }
}

#[test]
fn column_importance_lowers_weighted_error() {
    let (rows, cols) = (64, 64);
    let w = gaussian(rows * cols, 6);
    let imp: Vec<f32> = (0..cols).map(|c| if c % 8 < 2 { 100.0 } else { 0.1 }).collect();
    let cfg: VqConfig = "vq<8,4,1>".parse().unwrap();
    let plain = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    let weighted =
        quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions { column_importance: Some(imp.clone()), ..Default::default() })
            .unwrap();
    let werr = |q: &QuantizedWeight| -> f64 {
        let d = naive_decode(q, None);
        (0..rows * cols).map(|i| imp[i % cols] as f64 * ((w[i] - d[i]) as f64).powi(2)).sum()
    };
    assert!(werr(&weighted) < 0.7 * werr(&plain), "{} vs {}", werr(&weighted), werr(&plain));
}

#[test]
fn deterministic_for_a_seed() {
    let (rows, cols) = (32, 64);
    let w = gaussian(rows * cols, 7);
    let cfg = VqConfig::preset("aqlm-2x8").unwrap();
    let a = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    let b = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    assert_eq!(a, b);
    let c = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions { seed: 9, ..Default::default() }).unwrap();
    assert_ne!(a.codebooks, c.codebooks);
}

#[test]
fn more_entries_than_vectors() {
    // aqlm-1x16 on a tiny tensor: 16 vectors, 65536 entries; every vector is reproduced (to fp16).
    let (rows, cols) = (4, 32);
    let w = gaussian(rows * cols, 8);
    let cfg = VqConfig::preset("aqlm-1x16").unwrap();
    let q = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
    assert!(rel_err(&w, &naive_decode(&q, None)) < 2e-3);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let cfg: VqConfig = "vq<4,4,1>".parse().unwrap();
    let o = QuantizeOptions::default();
    let mut w = gaussian(8 * 16, 9);
    assert!(matches!(quantize_weight(&w, 8, 16, &cfg, &o), Ok(_)));
    assert!(matches!(quantize_weight(&w[..96], 8, 12, &VqConfig::preset("aqlm3").unwrap(), &o), Err(VqError::Shape(_))));
    assert!(matches!(quantize_weight(&w, 8, 15, &cfg, &o), Err(VqError::Shape(_))));
    assert!(matches!(quantize_weight(&w, 0, 16, &cfg, &o), Err(VqError::Shape(_))));
    assert!(matches!(quantize_weight(&w, 8, 16, &VqConfig::preset("cq2").unwrap(), &o), Err(VqError::InvalidConfig(_))));
    assert!(matches!(quantize_weight(&w, 8, 16, &VqConfig::preset("quip4").unwrap(), &o), Err(VqError::InvalidConfig(_))));
    let bad_imp = QuantizeOptions { column_importance: Some(vec![1.0; 3]), ..Default::default() };
    assert!(matches!(quantize_weight(&w, 8, 16, &cfg, &bad_imp), Err(VqError::Shape(_))));
    w[17] = f32::NAN;
    assert!(matches!(quantize_weight(&w, 8, 16, &cfg, &o), Err(VqError::NonFinite { index: 17, .. })));
    w[17] = 1e30;
    assert!(quantize_weight(&w, 8, 16, &cfg, &o).is_err(), "fp16 overflow must be an error");
}

/// Timing of one SmolLM2-135M MLP tensor (`cargo test --release -p vqllm-vq --test quant_weight -- --ignored --nocapture`).
#[test]
#[ignore]
fn time_smollm_mlp_tensor() {
    let (rows, cols) = (1536, 576);
    let w: Vec<f32> = gaussian(rows * cols, 10).iter().map(|x| x * 0.02).collect();
    for preset in ["aqlm3", "aqlm-2x8", "gptvq2", "aqlm-1x16"] {
        let cfg = VqConfig::preset(preset).unwrap();
        let t = std::time::Instant::now();
        let q = quantize_weight(&w, rows, cols, &cfg, &QuantizeOptions::default()).unwrap();
        let tile = if preset == "gptvq2" { Some((256, 256)) } else { None };
        let e = rel_err(&w, &naive_decode(&q, tile));
        println!("{preset}: {rows}x{cols} in {:.2?}, relative error {e:.4}", t.elapsed());
    }
}
