//! `vqllm bench gemv|gemm`: times generated VQ kernels against FP16 cuBLAS in the same run (DESIGN.md section 7).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use vqllm_codegen::{CodegenError, Level, Op, Plan};
use vqllm_cuda::bench::{copies_for, copy_bandwidth, random_device_f16, time_calls, BenchOptions};
use vqllm_cuda::cublas::GemmShape;
use vqllm_cuda::ops::linear::VqLinear;
use vqllm_cuda::ops::read_floor::ReadFloor;
use vqllm_cuda::{Gpu, ModuleCache};
use vqllm_vq::{synthetic::random_weight, VqConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchOp {
    Gemv,
    Gemm,
    /// Decode attention over a VQ KV cache (presets cq2, cq4, vq<v,b,1>:kv) against our FP16 flash-decoding kernel.
    Attention,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// gemv or gemm.
    #[arg(value_enum)]
    pub op: BenchOp,
    /// Presets to time (comma separated), or `all` for every weight preset.
    #[arg(long, default_value = "aqlm-2x8")]
    pub preset: String,
    /// A level (gc, sc, o1, o2, o3, o4, lut, auto) or `all` for the ablation ladder plus auto.
    #[arg(long, default_value = "all")]
    pub level: String,
    /// Batch rows (default 1 for gemv, 2048 for gemm).
    #[arg(long)]
    pub m: Option<usize>,
    /// `llama-7b`, `llama-65b`, `paper` (DESIGN.md's three layers) or comma-separated `KxN` (input x output).
    #[arg(long, default_value = "paper")]
    pub shape: String,
    /// Write every measurement as JSON.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Timed repeats (median reported).
    #[arg(long, default_value_t = 15, value_parser = at_least_one)]
    pub repeats: usize,
    /// Calls per timed repeat.
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
    pub calls: usize,
    /// Capture each repeat's calls (FP16 cuBLAS and ours alike) into a CUDA graph and time its replay: the GPU's
    /// time alone, as a decode loop on CUDA graphs sees it. Without it, each call's own launches are timed, and a
    /// call shorter than the host's launch cost (a few microseconds a kernel) is timed at the host's pace. Attention:
    /// the attention calls; the KV-cache append is always timed by its own launches.
    #[arg(long)]
    pub graph: bool,
    /// GeMV / GeMM: after each preset, time a kernel that only reads as many bytes as the preset's layer must move
    /// (one launch, every SM, 16-byte loads): the least time any one-launch kernel takes for them on this device,
    /// printed as the row `floor`.
    #[arg(long)]
    pub floor: bool,
    /// GeMV / GeMM: planner overrides, applied to every level.
    #[command(flatten)]
    pub overrides: super::plan::OverrideArgs,
    /// Attention: time our FP16 kernel in alternating repeats with each level and compare each level with that
    /// paired FP16 time, so that drifts of the device over the run (clocks, temperature) cancel.
    #[arg(long)]
    pub interleave: bool,
    /// GeMV / GeMM: programmatic dependent launches (sm_90+; ignored before). `chain`: the split-K finalize is
    /// scheduled while its weight kernel runs and the next weight kernel as the finalize exits; `finalize`: only
    /// the first; `off`: plain launches.
    #[arg(long, default_value = "chain")]
    pub pdl: vqllm_cuda::pdl::Programmatic,
    #[command(flatten)]
    pub attention: super::plan::AttentionShape,
}

/// Parses a count that must be at least 1 (a median of no repeats does not exist).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number >= 1")),
    }
}

#[derive(Debug, Serialize)]
struct Row {
    preset: String,
    config: String,
    level: String,
    kernel: String,
    m: usize,
    k: usize,
    n: usize,
    median_us: f64,
    gbps: f64,
    share_of_fp16_gbps: f64,
    speedup_vs_gc: Option<f64>,
    speedup_vs_fp16: f64,
    registers: u32,
    local_bytes: u32,
    split: u32,
    n_reg: u32,
    n_shared: u32,
    bytes: usize,
}

/// A shape and FP16 cuBLAS's time on it: what every row of that shape's table is compared with.
struct Baseline {
    m: usize,
    k: usize,
    n: usize,
    fp16_us: f64,
    fp16_gbps: f64,
}

impl Baseline {
    /// The row of a kernel labelled `[preset, config, level, kernel]` that moves `bytes` in `us` a call (`gc_us`: the
    /// GC level's time, where measured). Its resources start at none and split 1.
    fn row(&self, label: [String; 4], us: f64, bytes: usize, gc_us: Option<f64>) -> Row {
        let [preset, config, level, kernel] = label;
        let gbps = bytes as f64 / (us * 1e-6) / 1e9;
        Row {
            preset,
            config,
            level,
            kernel,
            m: self.m,
            k: self.k,
            n: self.n,
            median_us: us,
            gbps,
            share_of_fp16_gbps: gbps / self.fp16_gbps,
            speedup_vs_gc: gc_us.map(|g| g / us),
            speedup_vs_fp16: self.fp16_us / us,
            registers: 0,
            local_bytes: 0,
            split: 1,
            n_reg: 0,
            n_shared: 0,
            bytes,
        }
    }
}

/// The GPU, the kernel cache and the measured device copy bandwidth (bytes/s), with a line describing them.
pub(super) fn open_device() -> Result<(Gpu, ModuleCache, f64)> {
    let gpu = Gpu::new(0).context("vqllm bench needs a CUDA GPU (no device or driver found)")?;
    // SAFETY: every buffer the benches create is used on this Gpu's one stream (kernels, copies and cuBLAS), so
    // cudarc's per-buffer event tracking (host work on every launch, which shows at batch 1) is not needed.
    unsafe { gpu.disable_event_tracking() };
    let cache = ModuleCache::with_default_dir();
    let bw = copy_bandwidth(&gpu)?;
    let spec = gpu.spec();
    println!(
        "device: {} ({}), {} SMs, L2 {} MB, device copy bandwidth {:.2} TB/s",
        spec.name,
        spec.arch(),
        spec.sm_count,
        spec.l2_bytes >> 20,
        bw / 1e12
    );
    Ok((gpu, cache, bw))
}

/// Prints one row of the table; `auto` marks the level the heuristics picked with `*`.
fn print_row(row: &Row, auto: bool) {
    println!(
        "{:<10} {:<5} {:<8} {:>9.2} {:>8.0} {:>7.0}% {:>7} {:>7.2} {:>5} {:>5} {:>6} {:>5}",
        row.preset,
        if auto {
            format!("*{}", row.level)
        } else {
            row.level.clone()
        },
        row.kernel,
        row.median_us,
        row.gbps,
        100.0 * row.share_of_fp16_gbps,
        row.speedup_vs_gc
            .map(|s| format!("{s:.2}"))
            .unwrap_or_else(|| "-".into()),
        row.speedup_vs_fp16,
        row.registers,
        row.split,
        row.n_shared,
        row.n_reg
    );
}

/// `all` (the levels of `all_levels`, usually the ablation ladder, plus auto) or a comma-separated list of levels.
pub(super) fn parse_levels(spec: &str, all_levels: &[Level]) -> Result<Vec<Level>> {
    if spec == "all" {
        let mut l = all_levels.to_vec();
        l.push(Level::Auto);
        return Ok(l);
    }
    Ok(spec
        .split(',')
        .map(Level::parse)
        .collect::<Result<_, _>>()?)
}

fn shapes(spec: &str) -> Result<Vec<(usize, usize)>> {
    Ok(match spec {
        "paper" => vec![(4096, 4096), (4096, 11008), (8192, 22016)],
        "llama-7b" => vec![(4096, 4096), (4096, 11008), (11008, 4096)],
        "llama-65b" => vec![(8192, 8192), (8192, 22016), (22016, 8192)],
        s => s
            .split(',')
            .map(|kn| {
                let (k, n) = kn
                    .split_once(['x', 'X'])
                    .with_context(|| format!("shape `{kn}` is not KxN"))?;
                Ok((k.trim().parse()?, n.trim().parse()?))
            })
            .collect::<Result<Vec<_>>>()?,
    })
}

pub fn run(a: BenchArgs) -> Result<()> {
    let op = match a.op {
        BenchOp::Gemv => Op::Gemv,
        BenchOp::Gemm => Op::Gemm,
        BenchOp::Attention => return super::bench_attention::run(&a),
    };
    let m = a.m.unwrap_or(if op == Op::Gemv { 1 } else { 2048 });
    let presets: Vec<String> = if a.preset == "all" {
        vqllm_vq::WEIGHT_PRESETS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        vqllm_vq::split_config_list(&a.preset)
    };
    let levels = parse_levels(&a.level, &Level::WEIGHT_LEVELS)?;
    let ov = a.overrides.to_overrides()?;
    let (gpu, cache, bw) = open_device()?;
    let spec = gpu.spec().clone();
    let opts = BenchOptions {
        warmup: 10,
        calls: a.calls,
        repeats: a.repeats,
        graph: a.graph,
    };
    let blas = gpu.blas()?;
    let mut rows = Vec::new();
    for (k, n) in shapes(&a.shape)? {
        // FP16 cuBLAS on the same shape, weights rotated past L2.
        let w_bytes = n * k * 2;
        let copies = copies_for(&gpu, w_bytes);
        let ws: Vec<_> = (0..copies)
            .map(|i| random_device_f16(&gpu, n * k, 100 + i as u64))
            .collect::<Result<_, _>>()?;
        let x = random_device_f16(&gpu, m * k, 1)?;
        let mut y = gpu.alloc_zeros::<half::f16>(m * n)?;
        let shape = GemmShape { m, n, k };
        let fp16 = time_calls(&gpu, &opts, |i| {
            blas.hgemm_xwt(shape, &x, &ws[i % copies], &mut y)
        })?;
        drop(ws);
        let fp16_bytes = w_bytes + m * k * 2 + m * n * 2;
        let fp16_gbps = fp16_bytes as f64 / (fp16.median_us * 1e-6) / 1e9;
        let base = Baseline {
            m,
            k,
            n,
            fp16_us: fp16.median_us,
            fp16_gbps,
        };
        let fp16_tflops = 2.0 * (m * n * k) as f64 / (fp16.median_us * 1e-6) / 1e12;
        println!(
            "\n{op:?} m={m} K={k} N={n}: FP16 cuBLAS {:.1} us, {:.0} GB/s ({:.0}% of copy bandwidth), {:.1} TFLOP/s",
            fp16.median_us,
            fp16_gbps,
            100.0 * fp16_gbps * 1e9 / bw,
            fp16_tflops
        );
        println!(
            "{:<10} {:<5} {:<8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5} {:>6} {:>5}",
            "preset",
            "level",
            "kernel",
            "us",
            "GB/s",
            "%fp16BW",
            "xGC",
            "xFP16",
            "regs",
            "split",
            "n_sh",
            "n_reg"
        );
        for p in &presets {
            let c: VqConfig = p.parse().with_context(|| format!("bad preset `{p}`"))?;
            let q = random_weight(&c, n, k, 7)?;
            let mut gc_us = None;
            let mut layer_bytes = None;
            for &level in &levels {
                let plan = match Plan::new(&c, op, m, k, n, level, &spec, &ov) {
                    Ok(p) => p,
                    Err(e @ (CodegenError::Unsupported(_) | CodegenError::DoesNotFit(_))) => {
                        println!("{p:<10} {level:<5} skipped: {e}");
                        continue;
                    }
                    Err(e) => bail!(e),
                };
                let bytes = plan.min_bytes();
                layer_bytes = Some(bytes);
                let copies = copies_for(&gpu, bytes);
                let mut lin = VqLinear::new(&gpu, &cache, &q, plan.clone(), copies)?;
                lin.set_programmatic_launch(&gpu, a.pdl);
                let x = random_device_f16(&gpu, m * k, 2)?;
                let mut y = gpu.alloc_zeros::<half::f16>(m * n)?;
                let t = time_calls(&gpu, &opts, |i| lin.forward(&gpu, &x, &mut y, i))?;
                if level == Level::Gc {
                    gc_us = Some(t.median_us);
                }
                let label = [
                    p.clone(),
                    c.to_string(),
                    plan.level.to_string(),
                    format!("{:?}", plan.kernel),
                ];
                let row = Row {
                    registers: lin.registers,
                    local_bytes: lin.local_bytes,
                    split: plan.split,
                    n_reg: plan.n_reg,
                    n_shared: plan.n_shared,
                    ..base.row(label, t.median_us, bytes, gc_us)
                };
                print_row(&row, level == Level::Auto);
                rows.push(row);
            }
            if let (true, Some(bytes)) = (a.floor, layer_bytes) {
                let mut probe = ReadFloor::new(&gpu, &cache, bytes, copies_for(&gpu, bytes))?;
                let t = time_calls(&gpu, &opts, |i| probe.run(&gpu, i))?;
                let label = [p.clone(), c.to_string(), "floor".into(), "ReadOnly".into()];
                let row = base.row(label, t.median_us, probe.bytes(), gc_us);
                print_row(&row, false);
                rows.push(row);
            }
        }
        let label = ["fp16-cublas", "fp16", "-", "cublas"].map(String::from);
        rows.push(base.row(label, fp16.median_us, fp16_bytes, None));
    }
    println!("\n* = the level the heuristics pick (auto). GB/s counts codes + codebooks + scales + activations + outputs.");
    if a.floor {
        println!("floor = one launch that only reads the preset's bytes (--floor): the least time for them here.");
    }
    println!(
        "Timing: {}.",
        if a.graph {
            "each repeat's calls captured into a CUDA graph, its replay timed (--graph)"
        } else {
            "each call's own launches timed (--graph times a CUDA graph's replay instead)"
        }
    );
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
