//! `vqllm bench attention`: VQ decode attention at every level against our FP16 flash-decoding kernel, caches rotated
//! past 4x L2, plus the cost of appending one token's K and V (kv_quantize).

use anyhow::{Context, Result};
use half::f16;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashMap;

use vqllm_codegen::attention::{AttentionPlan, CodeLayout};
use vqllm_codegen::{CodegenError, Level};
use vqllm_cuda::bench::{
    copies_for, random_device_f16, time_calls, time_interleaved, BenchOptions,
};
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
    /// With --interleave: the FP16 kernel's time in the repeats alternating with this level's.
    fp16_paired_us: Option<f64>,
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

/// Dense fp16 K and V caches for the FP16 baseline, enough copies to rotate past 4x L2.
struct Fp16Cache {
    k: Vec<vqllm_cuda::CudaSlice<f16>>,
    v: Vec<vqllm_cuda::CudaSlice<f16>>,
    lens: vqllm_cuda::CudaSlice<i32>,
    /// Bytes one call must move: K and V, q and out.
    bytes: usize,
}

impl Fp16Cache {
    fn new(
        gpu: &vqllm_cuda::Gpu,
        b: usize,
        t: usize,
        hkv: usize,
        d: usize,
        hq: usize,
    ) -> Result<Fp16Cache> {
        let kv_elems = b * hkv * t * d;
        let copies = copies_for(gpu, 2 * 2 * kv_elems);
        let k = (0..copies)
            .map(|i| random_device_f16(gpu, kv_elems, 20 + i as u64))
            .collect::<Result<_, _>>()?;
        let v = (0..copies)
            .map(|i| random_device_f16(gpu, kv_elems, 40 + i as u64))
            .collect::<Result<_, _>>()?;
        Ok(Fp16Cache {
            k,
            v,
            lens: gpu.htod(&vec![t as i32; b])?,
            bytes: 2 * 2 * kv_elems + 2 * 2 * b * hq * d,
        })
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
        graph: a.graph,
    };
    let levels = super::bench::parse_levels(&a.level, &Level::LADDER)?;
    let presets: Vec<String> = if a.preset == "all" {
        vec!["cq2".into(), "cq4".into()]
    } else {
        vqllm_vq::split_config_list(&a.preset)
    };
    let q = random_device_f16(&gpu, b * hq * d, 3)?;
    let mut out = gpu.alloc_zeros::<f16>(b * hq * d)?;
    let lens: Vec<usize> = vec![t; b];
    let mut rows = Vec::new();
    let mut fp16_us = None;
    // FP16 flash decoding on the same shape, K/V rotated past L2 (timed once, or paired with every level).
    let fp16 = Fp16Cache::new(&gpu, b, t, hkv, d, hq)?;
    let mut out16 = gpu.alloc_zeros::<f16>(b * hq * d)?;
    // Every plan of this shape carries the same FP16 launch parameters: take the first preset's auto plan.
    let first: VqConfig = presets[0]
        .parse()
        .with_context(|| format!("bad preset `{}`", presets[0]))?;
    let mut att16 = VqAttention::new(
        &gpu,
        &cache,
        AttentionPlan::new(&first, b, t, hq, hkv, d, Level::Auto, &spec)?,
    )?;
    for p in &presets {
        let config: VqConfig = p.parse().with_context(|| format!("bad preset `{p}`"))?;
        let kcb = random_codebooks(config, hkv, d, 1);
        let vcb = random_codebooks(config, hkv, d, 2);
        let groups = d / config.v;
        let code_bytes = 2 * b * hkv * t * groups;
        let copies = copies_for(&gpu, code_bytes);
        // The same random codes in each layout a level asks for (built on first use).
        let mut caches: HashMap<CodeLayout, Vec<KvCacheGpu>> = HashMap::new();
        let make_caches = |layout: CodeLayout| -> Result<Vec<KvCacheGpu>> {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            (0..copies)
                .map(|_| {
                    let mut kv = KvCacheGpu::new(&gpu, &kcb, &vcb, b, t, layout)?;
                    let mut codes = || -> Vec<u8> {
                        (0..b * hkv * t * groups)
                            .map(|_| rng.random_range(0..config.entries()) as u8)
                            .collect()
                    };
                    let (kc, vc) = (codes(), codes());
                    kv.upload(&gpu, &kc, &vc, &lens)?;
                    Ok(kv)
                })
                .collect()
        };
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
            if let std::collections::hash_map::Entry::Vacant(slot) = caches.entry(plan.code_layout)
            {
                slot.insert(make_caches(plan.code_layout)?);
            }
            let caches = &caches[&plan.code_layout];
            let mut att = VqAttention::new(&gpu, &cache, plan)?;
            let mut fp16_call = |i: usize| {
                att16.forward_fp16(
                    &gpu,
                    &fp16.k[i % fp16.k.len()],
                    &fp16.v[i % fp16.v.len()],
                    &fp16.lens,
                    t,
                    &q,
                    &mut out16,
                )
            };
            if fp16_us.is_none() {
                let tf = time_calls(&gpu, &opts, &mut fp16_call)?;
                println!(
                    "{:<6} {:>10.2} {:>9.0} {:>8.2}   (our FP16 flash-decoding kernel)",
                    "fp16",
                    tf.median_us,
                    fp16.bytes as f64 / (tf.median_us * 1e-6) / 1e9,
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
                    gbps: fp16.bytes as f64 / (tf.median_us * 1e-6) / 1e9,
                    speedup_vs_fp16: 1.0,
                    fp16_paired_us: None,
                    append_us: None,
                });
            }
            let vq_call = |i: usize| att.forward(&gpu, &caches[i % copies], &q, &mut out);
            let (tm, paired) = if a.interleave {
                let (tf, tm) = time_interleaved(&gpu, &opts, fp16_call, vq_call)?;
                (tm, Some(tf.median_us))
            } else {
                (time_calls(&gpu, &opts, vq_call)?, None)
            };
            let f = paired.or(fp16_us).unwrap_or(f64::NAN);
            let gbps = bytes as f64 / (tm.median_us * 1e-6) / 1e9;
            let shown = if level == Level::Auto {
                format!("*{}", att.plan.level)
            } else {
                level.to_string()
            };
            let note = paired.map_or(String::new(), |p| format!("   (paired FP16 {p:.2} us)"));
            println!(
                "{shown:<6} {:>10.2} {:>9.0} {:>8.2}{note}",
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
                fp16_paired_us: paired,
                append_us: None,
            });
        }
        // kv_quantize: one new token's K and V for every head of one sequence (batch 1).
        let plan1 = AttentionPlan::new(&config, 1, 2048, hq, hkv, d, Level::Auto, &spec)?;
        let att1 = VqAttention::new(&gpu, &cache, plan1)?;
        let mut kv1 = KvCacheGpu::new(&gpu, &kcb, &vcb, 1, 2048, att1.plan.code_layout)?;
        let kr = random_device_f16(&gpu, hkv * d, 5)?;
        let vr = random_device_f16(&gpu, hkv * d, 6)?;
        let small = BenchOptions {
            warmup: 10,
            calls: 20,
            repeats: 9,
            // Appends advance the cache's lengths, which the host tracks per call: a graph's replays would append
            // again without the host knowing, so they are always timed by their own launches.
            graph: false,
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
            fp16_paired_us: None,
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
