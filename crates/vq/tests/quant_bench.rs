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
