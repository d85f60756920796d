//! Micro-benchmarks of the quantizer building blocks (run with `--release -- --ignored --nocapture`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::kmeans::assign_all;

#[test]
#[ignore]
fn bench_assign() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (n, k, d) in [
        (32768usize, 4096usize, 8usize),
        (32768, 256, 4),
        (32768, 256, 8),
    ] {
        let data: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>()).collect();
        let cents: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>()).collect();
        let t = std::time::Instant::now();
        let a = assign_all(&cents, d, &data, None).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!(
            "assign n={n} k={k} d={d}: {:.3}s, {:.1} G mul-add/s ({})",
            s,
            (n * k * d) as f64 / s / 1e9,
            a[0]
        );
    }
}

/// Whole SmolLM2-135M shapes (30 layers x 7 linear weights) with one preset; set VQ_PRESET (default aqlm3).
#[test]
#[ignore]
fn bench_smollm2_135m_model() {
    use vqllm_vq::quantize::{quantize_weight, QuantizeOptions};
    let preset = std::env::var("VQ_PRESET").unwrap_or_else(|_| "aqlm3".into());
    let layers: usize = std::env::var("VQ_LAYERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let cfg = vqllm_vq::VqConfig::preset(&preset).unwrap();
    let (h, i, kv) = (576usize, 1536usize, 192usize);
    let shapes = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t = std::time::Instant::now();
    for l in 0..layers {
        for (j, &(rows, cols)) in shapes.iter().enumerate() {
            let w: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.random::<f32>() - 0.5) * 0.05)
                .collect();
            let opts = QuantizeOptions {
                seed: (l * 7 + j) as u64,
                ..Default::default()
            };
            quantize_weight(&w, rows, cols, &cfg, &opts).unwrap();
        }
    }
    println!(
        "{preset}: {layers} layers of SmolLM2-135M in {:.1?}",
        t.elapsed()
    );
}
