//! `vqllm quantize`: quantizes the linear weights of a GGUF or Hugging Face safetensors model with one or
//! more VQ presets, optionally reports the error against the original weights (and against INT4-RTN g128),
//! and writes a complete `.vqst` model (quantized linears + dense fp16 norms and embeddings).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use vqllm_model::{ModelWeights, WeightFormat, WeightSource};
use vqllm_vq::config::CodebookKind;
use vqllm_vq::format::{DenseDtype, SaveOptions};
use vqllm_vq::int4::INT4_GROUP;
use vqllm_vq::quantize::{quantize_weight, QuantizeOptions};
use vqllm_vq::{metrics, reference, QuantizedModel, QuantizedWeight, VqConfig, WEIGHT_PRESETS};

use super::report::{self, Cell, Method, Report, TensorRow};

/// Arguments of `vqllm quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model to quantize: a `.gguf` file, a `.safetensors` file, a `model.safetensors.index.json`, or a
    /// directory holding either.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Preset (quip4, aqlm3, gptvq2, aqlm-2x8, aqlm-1x16) or `vq<v,b,r>[:tile=RxC][:scale]`; with --report
    /// also a comma list or `all-weights`, which compares several methods side by side.
    #[arg(long, short)]
    pub preset: String,
    /// Write the quantized model here (a `.vqst` file). Not allowed with several presets.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Quantize only this tensor (any 2-D tensor of the model) instead of every linear weight.
    #[arg(long)]
    pub tensor: Option<String>,
    /// Print, per tensor, the relative MSE and SNR of VQ and of INT4-RTN g128 against the original weight.
    #[arg(long)]
    pub report: bool,
    /// Seed of every random choice (k-means sampling and seeding, Hadamard signs).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lloyd iterations per k-means.
    #[arg(long)]
    pub iters: Option<usize>,
    /// Beam width of the code refinement after residual k-means (0 = off).
    #[arg(long)]
    pub beam: Option<usize>,
    /// Train each k-means on at most this many vectors (every vector is still encoded).
    #[arg(long)]
    pub max_train_vectors: Option<usize>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Expands `--preset`: `all-weights` (every weight preset) or a comma list of presets / configs. Commas
/// inside `vq<...>` belong to the config. KV-cache presets are rejected.
pub fn parse_methods(spec: &str) -> Result<Vec<(String, VqConfig)>> {
    let mut items: Vec<String> = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for ch in spec.chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth <= 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    items.push(cur);
    let mut out: Vec<(String, VqConfig)> = Vec::new();
    for item in items.iter().map(|s| s.trim()) {
        if item.is_empty() {
            bail!("empty entry in --preset `{spec}`");
        }
        let names: Vec<&str> = match item.to_ascii_lowercase().as_str() {
            "all-weights" | "all" => WEIGHT_PRESETS.to_vec(),
            _ => vec![item],
        };
        for name in names {
            let config: VqConfig = name
                .parse()
                .with_context(|| format!("bad --preset entry `{name}`"))?;
            if config.is_kv() {
                bail!(
                    "`{name}` is a KV-cache preset; weight presets are: {}",
                    WEIGHT_PRESETS.join(", ")
                );
            }
            if !out.iter().any(|(_, c)| *c == config) {
                out.push((name.to_string(), config));
            }
        }
    }
    Ok(out)
}

/// Quantizes one weight: E8P lattice configs go to the lattice quantizer, learned ones to k-means.
pub fn quantize_one(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &VqConfig,
    opts: &QuantizeOptions,
) -> vqllm_vq::Result<QuantizedWeight> {
    match config.codebook {
        CodebookKind::E8p => vqllm_vq::e8p::quantize_e8p(w, rows, cols, config, opts.seed),
        CodebookKind::Learned => quantize_weight(w, rows, cols, config, opts),
    }
}

/// A tensor to quantize.
struct Target {
    name: String,
    rows: usize,
    cols: usize,
}

/// The tensors to quantize: the one named by `--tensor`, or every linear weight.
fn select_targets(src: &dyn WeightSource, tensor: Option<&str>) -> Result<Vec<Target>> {
    if let Some(name) = tensor {
        let Some(desc) = src.tensor_desc(name) else {
            let linear: Vec<String> = src.linear_weights().into_iter().map(|l| l.name).collect();
            let similar: Vec<&String> = linear
                .iter()
                .filter(|n| n.contains(name) || name.contains(n.as_str()))
                .take(5)
                .collect();
            let hint = if !similar.is_empty() {
                format!("; similar: {}", join(similar))
            } else if !linear.is_empty() {
                format!("; linear weights include {}", join(linear.iter().take(3)))
            } else {
                String::new()
            };
            bail!("tensor `{name}` not found in the model{hint}");
        };
        let [rows, cols] = desc.shape[..] else {
            bail!(
                "tensor `{name}` has shape {:?}; only 2-D [out, in] weights can be quantized",
                desc.shape
            );
        };
        return Ok(vec![Target {
            name: desc.name,
            rows,
            cols,
        }]);
    }
    let linear = src.linear_weights();
    if linear.is_empty() {
        bail!(
            "no linear weights found (expected names like `blk.0.attn_q.weight` or \
             `model.layers.0.self_attn.q_proj.weight`); use --tensor NAME to pick one"
        );
    }
    Ok(linear
        .into_iter()
        .map(|l| Target {
            name: l.name,
            rows: l.out_features,
            cols: l.in_features,
        })
        .collect())
}

fn join<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors with the tensor name, row and column of the first NaN / infinity.
fn check_finite(name: &str, w: &[f32], cols: usize) -> Result<()> {
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        bail!(
            "tensor `{name}` has a non-finite value {} at row {}, column {}",
            w[i],
            i / cols,
            i % cols
        );
    }
    Ok(())
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} eta {eta} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Prints a warning without tearing the progress bar.
fn warn(bar: &ProgressBar, msg: &str) {
    bar.suspend(|| eprintln!("warning: {msg}"));
}

/// Runs `vqllm quantize`.
pub fn run(args: QuantizeArgs) -> Result<()> {
    let start = Instant::now();
    let methods = parse_methods(&args.preset)?;
    if args.output.is_none() && !args.report {
        bail!("nothing to do: pass --output FILE to write a model and/or --report to print errors");
    }
    if methods.len() > 1 && args.output.is_some() {
        bail!(
            "--output takes a single preset, got {} ({}); compare several with --report only",
            methods.len(),
            methods
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(out) = &args.output {
        if same_file(out, &args.input) {
            bail!("--output {} would overwrite the input", out.display());
        }
    }
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot set up the thread pool")?;
    }
    let defaults = QuantizeOptions::default();
    let opts = QuantizeOptions {
        seed: args.seed,
        kmeans_iters: args.iters.unwrap_or(defaults.kmeans_iters),
        beam_width: args.beam.unwrap_or(defaults.beam_width),
        max_train_vectors: args.max_train_vectors.unwrap_or(defaults.max_train_vectors),
        ..defaults
    };
    if opts.max_train_vectors == 0 {
        bail!("--max-train-vectors must be at least 1");
    }

    let model = ModelWeights::open(&args.input)
        .with_context(|| format!("cannot open model {}", args.input.display()))?;
    let src: &dyn WeightSource = &model;
    let targets = select_targets(src, args.tensor.as_deref())?;
    let single = args.tensor.is_some();
    if single {
        let t = &targets[0];
        for (label, c) in &methods {
            c.check_weight_shape(t.rows, t.cols).with_context(|| {
                format!(
                    "{label} cannot quantize `{}` [{}, {}]",
                    t.name, t.rows, t.cols
                )
            })?;
        }
    }

    let bar = progress_bar(targets.len() * methods.len());
    // Without a terminal the bar is hidden: log one line per tensor instead, for long runs.
    let interactive = std::io::stderr().is_terminal();
    let mut rep = Report {
        methods: methods
            .iter()
            .map(|(label, config)| Method {
                label: label.clone(),
                config: *config,
                seconds: 0.0,
            })
            .collect(),
        ..Report::default()
    };
    let mut out_model = QuantizedModel::new(serde_json::Value::Null);
    let mut skipped: Vec<serde_json::Value> = Vec::new();
    let mut skipped_dense: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut per_tensor_s = serde_json::Map::new();
    let mut read_s = 0.0;

    for t in &targets {
        let t0 = Instant::now();
        let w = src
            .read_f32(&t.name)
            .with_context(|| format!("cannot read tensor `{}`", t.name))?;
        read_s += t0.elapsed().as_secs_f64();
        check_finite(&t.name, &w, t.cols)?;
        let mut row = TensorRow {
            name: t.name.clone(),
            rows: t.rows,
            cols: t.cols,
            vq: Vec::with_capacity(methods.len()),
            int4: None,
        };
        if args.report {
            let t0 = Instant::now();
            let (deq, bits) = report::int4_baseline(&w, t.rows, t.cols, INT4_GROUP)
                .with_context(|| format!("INT4 baseline on `{}`", t.name))?;
            let stats = metrics::compare(&w, &deq)?;
            row.int4 = Some(Cell::new(&stats, bits));
            rep.int4_seconds += t0.elapsed().as_secs_f64();
        }
        for (i, (label, config)) in methods.iter().enumerate() {
            bar.set_message(format!("{} [{label}]", t.name));
            if let Err(e) = config.check_weight_shape(t.rows, t.cols) {
                warn(
                    &bar,
                    &format!(
                        "{label}: skipping `{}` [{}, {}]: {e}",
                        t.name, t.rows, t.cols
                    ),
                );
                skipped.push(json!({"name": t.name, "preset": label, "reason": e.to_string()}));
                row.vq.push(None);
                if args.output.is_some() {
                    skipped_dense.push((t.name.clone(), vec![t.rows, t.cols], w.clone()));
                }
                bar.inc(1);
                continue;
            }
            let t0 = Instant::now();
            let q = quantize_one(&w, t.rows, t.cols, config, &opts).with_context(|| {
                format!("{label}: quantizing `{}` [{}, {}]", t.name, t.rows, t.cols)
            })?;
            let secs = t0.elapsed().as_secs_f64();
            rep.methods[i].seconds += secs;
            if args.report {
                let deq = reference::dequantize(&q)
                    .with_context(|| format!("{label}: dequantizing `{}`", t.name))?;
                let stats = metrics::compare(&w, &deq)?;
                row.vq
                    .push(Some(Cell::new(&stats, report::stored_bits_per_element(&q))));
            }
            if args.output.is_some() {
                per_tensor_s.insert(t.name.clone(), json!(round3(secs)));
                out_model.tensors.push((t.name.clone(), q));
            }
            bar.inc(1);
            if !interactive {
                eprintln!(
                    "[{}/{}] {} [{label}] {secs:.2} s",
                    bar.position(),
                    bar.length().unwrap_or(0),
                    t.name
                );
            }
        }
        rep.rows.push(row);
    }
    bar.finish_and_clear();
    let quantize_s = start.elapsed().as_secs_f64();

    if args.report {
        rep.total_seconds = quantize_s;
        println!(
            "{} ({}), {} tensor(s), seed {}, k-means iters {}, beam {}, max train vectors {}",
            args.input.display(),
            format_name(src.format()),
            targets.len(),
            opts.seed,
            opts.kmeans_iters,
            opts.beam_width,
            opts.max_train_vectors
        );
        println!();
        print!("{}", rep.tensor_table());
        println!();
        print!("{}", rep.summary_table());
    }

    if let Some(out) = &args.output {
        let (label, config) = &methods[0];
        let quantized: HashSet<&str> = out_model.tensors.iter().map(|(n, _)| n.as_str()).collect();
        let mut dense = skipped_dense;
        if !single {
            let t0 = Instant::now();
            for d in src.tensor_descs() {
                if quantized.contains(d.name.as_str()) || dense.iter().any(|(n, _, _)| *n == d.name)
                {
                    continue;
                }
                let values = src
                    .read_f32(&d.name)
                    .with_context(|| format!("cannot read tensor `{}`", d.name))?;
                dense.push((d.name, d.shape, values));
            }
            read_s += t0.elapsed().as_secs_f64();
        }
        out_model.dense = dense;
        let model_config = src.config().ok();
        out_model.info = json!({
            "tool": "vqllm",
            "version": env!("CARGO_PKG_VERSION"),
            "source": args.input.display().to_string(),
            "source_format": format_name(src.format()),
            "architecture": model_config.as_ref().map(|c| c.architecture.clone()),
            "model_config": model_config,
            "preset": label,
            "config": config.to_string(),
            "seed": opts.seed,
            "kmeans_iters": opts.kmeans_iters,
            "beam_width": opts.beam_width,
            "max_train_vectors": opts.max_train_vectors,
            "tensor": args.tensor,
            "complete": !single,
            "skipped": skipped,
            "timings": {
                "quantize_s": round3(rep.methods[0].seconds),
                "read_s": round3(read_s),
                "total_before_save_s": round3(start.elapsed().as_secs_f64()),
                "per_tensor_s": per_tensor_s,
            },
        });
        let t0 = Instant::now();
        let options = SaveOptions {
            dense: DenseDtype::F16,
            ..SaveOptions::default()
        };
        out_model
            .save_with(out, &options)
            .with_context(|| format!("cannot write {}", out.display()))?;
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "wrote {} ({} quantized, {} dense tensors, {:.1} MiB) in {:.1} s (save {:.1} s)",
            out.display(),
            out_model.tensors.len(),
            out_model.dense.len(),
            bytes as f64 / (1024.0 * 1024.0),
            start.elapsed().as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn format_name(f: WeightFormat) -> &'static str {
    match f {
        WeightFormat::Gguf => "gguf",
        WeightFormat::Safetensors => "safetensors",
    }
}

/// True when both paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_lists() {
        let m = parse_methods("quip4, aqlm3,gptvq2,aqlm-2x8").unwrap();
        let labels: Vec<&str> = m.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["quip4", "aqlm3", "gptvq2", "aqlm-2x8"]);
        assert_eq!(
            parse_methods("all-weights").unwrap().len(),
            WEIGHT_PRESETS.len()
        );
        let m = parse_methods("vq<8,12,2>:scale,aqlm-2x8").unwrap();
        assert_eq!((m[0].1.v, m[0].1.b, m[0].1.r), (8, 12, 2));
        assert_eq!(m.len(), 2);
        // Duplicates collapse; aqlm2x8 is an alias of aqlm-2x8.
        assert_eq!(parse_methods("aqlm-2x8,aqlm2x8").unwrap().len(), 1);
        for bad in ["nope", "cq4", "aqlm3,", "", "vq<8,12>"] {
            assert!(parse_methods(bad).is_err(), "{bad}");
        }
    }
}
