//! CPU reference dequantization and GeMM against naive loops on random, directly built QuantizedWeights.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::e8p::decode_e8p;
use vqllm_vq::reference::{dense_gemm, dequantize, dequantize_rotated, gemm, gemv};
use vqllm_vq::{CodebookKind, QuantizedWeight, Rht, Scope, VqConfig, VqError};

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A random weight for `config`; scales / Hadamard signs are filled when the config asks for them.
fn random_weight(
    config: VqConfig,
    rows: usize,
    cols: usize,
    block: usize,
    seed: u64,
) -> QuantizedWeight {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sets = config.num_codebook_sets(rows, cols);
    let n_codes = rows * cols / config.v * config.r;
    let codes = (0..n_codes)
        .map(|_| rng.random_range(0..config.entries()) as u16)
        .collect();
    let codebooks = match config.codebook {
        CodebookKind::Learned => randn(&mut rng, sets * config.r * config.entries() * config.v),
        CodebookKind::E8p => Vec::new(),
    };
    let stage_scales = (0..config.r)
        .map(|i| 1.0 / (1.0 + i as f32 * 2.5))
        .collect();
    let scales = config
        .per_channel_scale
        .then(|| (0..rows).map(|_| rng.random_range(0.1f32..2.0)).collect());
    let rht = config.hadamard.then(|| Rht {
        block,
        signs: (0..cols)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect(),
    });
    let q = QuantizedWeight {
        config,
        rows,
        cols,
        codes,
        codebooks,
        stage_scales,
        scales,
        rht,
    };
    q.validate().expect("test weight is valid");
    q
}

/// Naive effective weight: decode with explicit index arithmetic, then multiply by a dense block-diagonal
/// Hadamard matrix and the signs.
fn naive_effective(q: &QuantizedWeight) -> Vec<f32> {
    let c = q.config;
    let (rows, cols, v, r) = (q.rows, q.cols, c.v, c.r);
    let mut wr = vec![0.0f32; rows * cols];
    for n in 0..rows {
        for col in 0..cols {
            let k = col / v;
            let set = match c.scope {
                Scope::Tile { rows: tr, cols: tc } => (n / tr) * cols.div_ceil(tc) + col / tc,
                _ => 0,
            };
            let mut acc = 0.0;
            for i in 0..r {
                let code = q.codes[(n * (cols / v) + k) * r + i] as usize;
                let e = match c.codebook {
                    CodebookKind::Learned => {
                        q.codebooks[((set * r + i) * c.entries() + code) * v + col % v]
                    }
                    CodebookKind::E8p => decode_e8p(code as u16)[col % 8],
                };
                acc += q.stage_scales[i] * e;
            }
            wr[n * cols + col] = acc * q.scales.as_ref().map_or(1.0, |s| s[n]);
        }
    }
    let Some(rht) = &q.rht else { return wr };
    let b = rht.block;
    let h = |i: usize, j: usize| {
        if i / b != j / b {
            0.0
        } else if ((i % b) & (j % b)).count_ones().is_multiple_of(2) {
            1.0 / (b as f32).sqrt()
        } else {
            -1.0 / (b as f32).sqrt()
        }
    };
    let mut w = vec![0.0f32; rows * cols];
    for n in 0..rows {
        for j in 0..cols {
            let s: f32 = (0..cols).map(|i| wr[n * cols + i] * h(i, j)).sum();
            w[n * cols + j] = s * rht.signs[j];
        }
    }
    w
}

fn naive_gemm(x: &[f32], m: usize, w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * rows];
    for t in 0..m {
        for n in 0..rows {
            let mut acc = 0.0f64;
            for k in 0..cols {
                acc += x[t * cols + k] as f64 * w[n * cols + k] as f64;
            }
            y[t * rows + n] = acc as f32;
        }
    }
    y
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn configs() -> Vec<(&'static str, VqConfig, usize, usize, usize)> {
    let p = |s: &str| s.parse::<VqConfig>().unwrap();
    vec![
        ("pq v4 b8", p("vq<4,8,1>"), 24, 64, 1),
        ("rvq v8 b6 r2 scale", p("vq<8,6,2>:scale"), 17, 48, 1),
        ("ragged tiles", p("vq<4,5,1>:tile=8x24"), 19, 56, 1),
        ("tiles r3 scale", p("vq<2,4,3>:tile=16x16:scale"), 32, 32, 1),
        ("learned + rht", p("vq<8,7,1>:scale:rht"), 9, 96, 32),
        (
            "quip4 random codes",
            VqConfig::preset("quip4").unwrap(),
            16,
            128,
            64,
        ),
        ("e8p r1 no rht", p("vq<8,16,1>:e8p:scale"), 5, 40, 1),
        ("aqlm3", VqConfig::preset("aqlm3").unwrap(), 8, 64, 1),
    ]
}

#[test]
fn dequantize_matches_naive_decode() {
    for (i, (name, cfg, rows, cols, block)) in configs().into_iter().enumerate() {
        let q = random_weight(cfg, rows, cols, block, 100 + i as u64);
        let want = naive_effective(&q);
        assert_close(&dequantize(&q).unwrap(), &want, 1e-4, name);
        if q.rht.is_none() {
            assert_eq!(
                dequantize_rotated(&q).unwrap(),
                dequantize(&q).unwrap(),
                "{name}"
            );
        } else {
            let rot = dequantize_rotated(&q).unwrap();
            let stripped = QuantizedWeight {
                rht: None,
                config: VqConfig {
                    hadamard: false,
                    ..q.config
                },
                ..q.clone()
            };
            assert_close(&rot, &naive_effective(&stripped), 1e-5, name);
        }
    }
}

#[test]
fn gemm_matches_naive_triple_loop() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (i, (name, cfg, rows, cols, block)) in configs().into_iter().enumerate() {
        let q = random_weight(cfg, rows, cols, block, 200 + i as u64);
        let w = naive_effective(&q);
        for m in [1, 3, 17] {
            let x = randn(&mut rng, m * cols);
            let want = naive_gemm(&x, m, &w, rows, cols);
            assert_close(
                &gemm(&x, m, &q).unwrap(),
                &want,
                1e-3,
                &format!("{name} m={m}"),
            );
            assert_close(
                &dense_gemm(&x, m, &w, rows, cols).unwrap(),
                &want,
                1e-4,
                &format!("dense {name} m={m}"),
            );
            if m == 1 {
                assert_eq!(gemv(&x, &q).unwrap(), gemm(&x, 1, &q).unwrap());
            }
        }
    }
}

#[test]
fn shape_and_format_errors_are_typed() {
    let cfg: VqConfig = "vq<4,8,1>".parse().unwrap();
    let q = random_weight(cfg, 4, 16, 1, 1);
    assert!(matches!(gemm(&[0.0; 15], 1, &q), Err(VqError::Shape(_))));
    assert!(matches!(gemm(&[], 0, &q), Err(VqError::Shape(_))));
    assert!(matches!(
        dense_gemm(&[0.0; 16], 1, &[0.0; 60], 4, 16),
        Err(VqError::Shape(_))
    ));
    assert!(matches!(
        dense_gemm(&[0.0; 32], 1, &[0.0; 64], 4, 16),
        Err(VqError::Shape(_))
    ));

    let mut bad = q.clone();
    bad.codes.pop();
    assert!(matches!(dequantize(&bad), Err(VqError::Format(_))));
    let mut bad = random_weight("vq<4,5,1>".parse().unwrap(), 4, 16, 1, 2);
    bad.codes[3] = 32;
    assert!(matches!(gemm(&[0.0; 16], 1, &bad), Err(VqError::Format(_))));
    let mut bad = random_weight("vq<8,6,1>:scale:rht".parse().unwrap(), 4, 32, 16, 3);
    bad.rht.as_mut().unwrap().block = 12;
    assert!(dequantize(&bad).is_err());
    let mut bad = q;
    bad.codebooks[0] = f32::NAN;
    assert!(matches!(dequantize(&bad), Err(VqError::NonFinite { .. })));
}
