//! `vqllm bench attention`: VQ decode attention at every level against our FP16 flash-decoding kernel, caches rotated
//! past 4x L2, plus the cost of appending one token's K and V (kv_quantize).

use anyhow::{Context, Result};
use half::f16;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use vqllm_codegen::attention::AttentionPlan;
use vqllm_codegen::{CodegenError, Level};
use vqllm_cuda::bench::{copies_for, random_device_f16, time_calls, BenchOptions};
use vqllm_cuda::ops::attention::{KvCacheGpu, VqAttention};
use vqllm_vq::{KvCodebooks, VqConfig};

use super::bench::BenchArgs;

#[derive(Serialize)]
struct Row {
    preset: String,
    level: String,
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    median_us: f64,
    gbps: f64,
    speedup_vs_fp16: f64,
    append_us: Option<f64>,
}

fn random_codebooks(config: VqConfig, kv_heads: usize, head_dim: usize, seed: u64) -> KvCodebooks {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = kv_heads * (head_dim / config.v) * config.entries() * config.v;
    KvCodebooks {
        config,
        kv_heads,
        head_dim,
        codebooks: (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    }
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let s = &a.attention;
    let (b, t, hq, hkv, d) = (s.batch, s.seq, s.heads, s.kv_heads, s.head_dim);
    let (gpu, cache, _) = super::bench::open_device()?;
    let spec = gpu.spec().clone();
    println!("attention decode: batch {b}, {t} tokens, {hq} q heads, {hkv} KV heads, head dim {d}");
    let opts = BenchOptions {
        warmup: 10,
        calls: a.calls,
        repeats: a.repeats,
    };
    let levels = super::bench::parse_levels(&a.level)?;
    let presets: Vec<String> = if a.preset == "all" {
        vec!["cq2".into(), "cq4".into()]
    } else {
        a.preset.split(',').map(|s| s.trim().to_string()).collect()
    };
    let q = random_device_f16(&gpu, b * hq * d, 3)?;
    let mut out = gpu.alloc_zeros::<f16>(b * hq * d)?;
    let lens: Vec<usize> = vec![t; b];
    let mut rows = Vec::new();
    let mut fp16_us = None;
    for p in &presets {
        let config: VqConfig = p.parse().with_context(|| format!("bad preset `{p}`"))?;
        let kcb = random_codebooks(config, hkv, d, 1);
        let vcb = random_codebooks(config, hkv, d, 2);
        let groups = d / config.v;
        let code_bytes = 2 * b * hkv * t * groups;
        let copies = copies_for(&gpu, code_bytes);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut caches = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut kv = KvCacheGpu::new(&gpu, &kcb, &vcb, b, t)?;
            let kc: Vec<u8> = (0..b * hkv * t * groups)
                .map(|_| rng.random_range(0..config.entries()) as u8)
                .collect();
            let vc: Vec<u8> = (0..b * hkv * t * groups)
                .map(|_| rng.random_range(0..config.entries()) as u8)
                .collect();
            kv.upload(&gpu, &kc, &vc, &lens)?;
            caches.push(kv);
        }
        println!(
            "\n{p} ({config}): {copies} cache copies of {:.1} MB",
            code_bytes as f64 / 1e6
        );
        println!("{:<6} {:>10} {:>9} {:>8}", "level", "us", "GB/s", "xFP16");
        for &level in &levels {
            let plan = match s.plan(&config, level, &spec) {
                Ok(p) => p,
                Err(e @ (CodegenError::Unsupported(_) | CodegenError::DoesNotFit(_))) => {
                    println!("{level:<6} skipped: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let bytes = plan.min_bytes(t);
            let mut att = VqAttention::new(&gpu, &cache, plan)?;
            if fp16_us.is_none() {
                // FP16 flash decoding on the same shape, K/V rotated past L2.
                let kv_elems = b * hkv * t * d;
                let f_copies = copies_for(&gpu, 2 * 2 * kv_elems);
                let ks: Vec<_> = (0..f_copies)
                    .map(|i| random_device_f16(&gpu, kv_elems, 20 + i as u64))
                    .collect::<Result<_, _>>()?;
                let vs: Vec<_> = (0..f_copies)
                    .map(|i| random_device_f16(&gpu, kv_elems, 40 + i as u64))
                    .collect::<Result<_, _>>()?;
                let lens_dev = gpu.htod(&vec![t as i32; b])?;
                let tf = time_calls(&gpu, &opts, |i| {
                    att.forward_fp16(
                        &gpu,
                        &ks[i % f_copies],
                        &vs[i % f_copies],
                        &lens_dev,
                        t,
                        &q,
                        &mut out,
                    )
                })?;
                let f_bytes = 2 * 2 * kv_elems + 2 * 2 * b * hq * d;
                println!(
                    "{:<6} {:>10.2} {:>9.0} {:>8.2}   (our FP16 flash-decoding kernel)",
                    "fp16",
                    tf.median_us,
                    f_bytes as f64 / (tf.median_us * 1e-6) / 1e9,
                    1.0
                );
                fp16_us = Some(tf.median_us);
                rows.push(Row {
                    preset: "fp16".into(),
                    level: "-".into(),
                    batch: b,
                    seq: t,
                    heads: hq,
                    kv_heads: hkv,
                    head_dim: d,
                    median_us: tf.median_us,
                    gbps: f_bytes as f64 / (tf.median_us * 1e-6) / 1e9,
                    speedup_vs_fp16: 1.0,
                    append_us: None,
                });
            }
            let tm = time_calls(&gpu, &opts, |i| {
                att.forward(&gpu, &caches[i % copies], &q, &mut out)
            })?;
            let f = fp16_us.unwrap_or(f64::NAN);
            let gbps = bytes as f64 / (tm.median_us * 1e-6) / 1e9;
            let shown = if level == Level::Auto {
                format!("*{}", att.plan.level)
            } else {
                level.to_string()
            };
            println!(
                "{shown:<6} {:>10.2} {:>9.0} {:>8.2}",
                tm.median_us,
                gbps,
                f / tm.median_us
            );
            rows.push(Row {
                preset: p.clone(),
                level: att.plan.level.to_string(),
                batch: b,
                seq: t,
                heads: hq,
                kv_heads: hkv,
                head_dim: d,
                median_us: tm.median_us,
                gbps,
                speedup_vs_fp16: f / tm.median_us,
                append_us: None,
            });
        }
        // kv_quantize: one new token's K and V for every head of one sequence (batch 1).
        let plan1 = AttentionPlan::new(&config, 1, 2048, hq, hkv, d, Level::Auto, &spec)?;
        let att1 = VqAttention::new(&gpu, &cache, plan1)?;
        let mut kv1 = KvCacheGpu::new(&gpu, &kcb, &vcb, 1, 2048)?;
        let kr = random_device_f16(&gpu, hkv * d, 5)?;
        let vr = random_device_f16(&gpu, hkv * d, 6)?;
        let small = BenchOptions {
            warmup: 10,
            calls: 20,
            repeats: 9,
        };
        let ta = time_calls(&gpu, &small, |_| att1.append(&gpu, &mut kv1, &kr, &vr, 1))?;
        println!(
            "append one token (K and V, {hkv} KV heads x {d}): {:.2} us",
            ta.median_us
        );
        rows.push(Row {
            preset: p.clone(),
            level: "append".into(),
            batch: 1,
            seq: 1,
            heads: hq,
            kv_heads: hkv,
            head_dim: d,
            median_us: ta.median_us,
            gbps: 0.0,
            speedup_vs_fp16: 0.0,
            append_us: Some(ta.median_us),
        });
    }
    println!("\n* = the level the heuristics pick (auto). GB/s counts K and V codes + codebooks + q + out.");
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
