//! `vqllm info`: describes a model file. For GGUF / safetensors checkpoints: format, architecture and
//! hyper-parameters, tensor count by dtype, and the linear weights VQ quantizes. For `.vqst` files: the
//! stored information, and per quantized tensor its config, shape, stored bytes and bits per element.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use vqllm_model::{ModelWeights, WeightFormat, WeightSource};
use vqllm_vq::format::{FILE_EXTENSION, METADATA_KEY};
use vqllm_vq::QuantizedModel;

/// Arguments of `vqllm info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A `.gguf`, `.safetensors` (or index `.json` / directory) or `.vqst` file.
    pub file: PathBuf,
    /// Also list every tensor (name, shape, dtype).
    #[arg(long)]
    pub tensors: bool,
}

/// Suffixes of the file tensors that make up one quantized weight (see `docs/FORMAT.md`).
const QUANTIZED_PARTS: [&str; 6] = [
    "codes",
    "codes_packed",
    "codebooks",
    "scales",
    "rht_signs",
    "stage_scales",
];

/// Largest safetensors header read when sniffing a file (the format itself caps it at 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// The parsed JSON header of a safetensors file, or `None` when `path` does not look like one.
fn safetensors_header(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut f = std::fs::File::open(path).ok()?;
    let file_len = f.metadata().ok()?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n == 0 || n > MAX_HEADER || n > file_len.saturating_sub(8) {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(n).ok()?];
    f.read_exact(&mut buf).ok()?;
    match serde_json::from_slice(&buf).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// True when the file is (or claims to be) a vqllm quantized model.
fn is_vqst(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == FILE_EXTENSION) {
        return true;
    }
    safetensors_header(path).is_some_and(|h| {
        h.get("__metadata__")
            .and_then(|m| m.get(METADATA_KEY))
            .is_some()
    })
}

/// Runs `vqllm info`.
pub fn run(args: InfoArgs) -> Result<()> {
    let path = &args.file;
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.is_file() && is_vqst(path) {
        info_vqst(path, args.tensors)
    } else {
        info_model(path, args.tensors)
    }
}

fn info_model(path: &Path, list: bool) -> Result<()> {
    let model = ModelWeights::open(path).with_context(|| {
        format!(
            "{} is not a readable GGUF, safetensors or .vqst model",
            path.display()
        )
    })?;
    println!("file:          {}", path.display());
    match &model {
        ModelWeights::Gguf(g) => println!(
            "format:        GGUF v{} ({} metadata keys)",
            g.version(),
            g.metadata().len()
        ),
        ModelWeights::Safetensors(s) => println!(
            "format:        safetensors ({} shard(s) in {})",
            s.shard_paths().len(),
            s.dir().display()
        ),
    }
    match model.config() {
        Ok(c) => {
            println!("architecture:  {}", c.architecture);
            println!(
                "config:        hidden {}, layers {}, heads {} (kv {}), head_dim {}, intermediate {}, vocab {}",
                c.hidden_size,
                c.num_layers,
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                c.intermediate_size,
                c.vocab_size
            );
            println!(
                "               context {}, rope_theta {}, rms_norm_eps {:e}, tied embeddings: {}",
                c.max_position_embeddings, c.rope_theta, c.rms_norm_eps, c.tie_word_embeddings
            );
        }
        Err(e) => println!("config:        unavailable ({e})"),
    }
    let descs = model.tensor_descs();
    let mut by_dtype: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for d in &descs {
        let e = by_dtype.entry(d.dtype.to_string()).or_default();
        e.0 += 1;
        e.1 += d.shape.iter().map(|&x| x as u64).product::<u64>();
    }
    let total: u64 = by_dtype.values().map(|v| v.1).sum();
    println!(
        "tensors:       {} ({} parameters): {}",
        descs.len(),
        total,
        by_dtype
            .iter()
            .map(|(k, (n, _))| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let linear = model.linear_weights();
    let params: u64 = linear
        .iter()
        .map(|l| (l.out_features * l.in_features) as u64)
        .sum();
    println!(
        "linear:        {} weights, {} parameters ({:.1}% of the model)",
        linear.len(),
        params,
        100.0 * params as f64 / total.max(1) as f64
    );
    let mut kinds: BTreeMap<_, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for l in &linear {
        let e = kinds.entry(l.kind).or_default();
        e.0 += 1;
        *e.1.entry(format!(
            "[{}, {}] {}",
            l.out_features, l.in_features, l.dtype
        ))
        .or_default() += 1;
    }
    for (kind, (n, shapes)) in &kinds {
        let shapes: Vec<String> = shapes
            .iter()
            .map(|(s, c)| {
                if *c == *n {
                    s.clone()
                } else {
                    format!("{s} x{c}")
                }
            })
            .collect();
        println!(
            "  {:<5} {:<4} {}",
            kind.to_string(),
            format!("x{n}"),
            shapes.join(", ")
        );
    }
    if let Some(example) = linear.first() {
        let naming = match model.format() {
            WeightFormat::Gguf => "GGUF",
            WeightFormat::Safetensors => "Hugging Face",
        };
        println!("  ({naming} names, e.g. `{}`)", example.name);
    }
    if list {
        println!();
        for d in &descs {
            println!(
                "{:<48} {:<16} {}",
                d.name,
                format!("{:?}", d.shape),
                d.dtype
            );
        }
    }
    Ok(())
}

fn info_vqst(path: &Path, list: bool) -> Result<()> {
    let model = QuantizedModel::load(path)
        .with_context(|| format!("cannot read quantized model {}", path.display()))?;
    // Exact on-disk sizes from the header's data offsets.
    let sizes: HashMap<String, (String, u64)> = safetensors_header(path)
        .map(|h| {
            h.into_iter()
                .filter(|(k, _)| k != "__metadata__")
                .filter_map(|(k, v)| {
                    let o = v.get("data_offsets")?.as_array()?;
                    let (a, b) = (o.first()?.as_u64()?, o.get(1)?.as_u64()?);
                    let dtype = v.get("dtype")?.as_str()?.to_string();
                    Some((k, (dtype, b.saturating_sub(a))))
                })
                .collect()
        })
        .unwrap_or_default();
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("file:          {}", path.display());
    println!(
        "format:        vqllm .vqst, {:.2} MiB",
        file_len as f64 / (1024.0 * 1024.0)
    );
    let info = &model.info;
    for key in [
        "source",
        "preset",
        "config",
        "seed",
        "kmeans_iters",
        "beam_width",
    ] {
        if let Some(v) = info.get(key).filter(|v| !v.is_null()) {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            println!("{:<14} {text}", format!("{key}:"));
        }
    }
    if let Some(arch) = info.get("architecture").and_then(|v| v.as_str()) {
        println!("architecture:  {arch}");
    }
    if let Some(t) = info.get("timings") {
        let get = |k: &str| t.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "timings:       quantize {:.1} s, read {:.1} s",
            get("quantize_s"),
            get("read_s")
        );
    }
    if let Some(s) = info.get("skipped").and_then(|v| v.as_array()) {
        if !s.is_empty() {
            println!("skipped:       {} tensor(s) kept dense", s.len());
        }
    }

    // The file tensors of quantized weight NAME are NAME.{codes, codes_packed, codebooks, ...}.
    let part_bytes = |name: &str| -> u64 {
        QUANTIZED_PARTS
            .iter()
            .filter_map(|p| sizes.get(&format!("{name}.{p}")))
            .map(|(_, b)| *b)
            .sum()
    };
    let name_w = model
        .tensors
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let (mut q_bytes, mut q_elems) = (0u64, 0u64);
    println!();
    println!(
        "quantized tensors: {}{}",
        model.tensors.len(),
        if model.tensors.is_empty() { "" } else { ":" }
    );
    if !model.tensors.is_empty() {
        println!(
            "  {:<name_w$}  {:<28} {:>12} {:>10} {:>12}",
            "name", "config", "shape", "bits/elem", "bytes"
        );
    }
    for (name, w) in &model.tensors {
        let bytes = part_bytes(name);
        let elems = (w.rows * w.cols) as u64;
        q_bytes += bytes;
        q_elems += elems;
        println!(
            "  {:<name_w$}  {:<28} {:>12} {:>10.3} {:>12}",
            name,
            w.config.to_string(),
            format!("{}x{}", w.rows, w.cols),
            bytes as f64 * 8.0 / elems as f64,
            bytes
        );
    }
    if q_elems > 0 {
        println!(
            "  total: {} parameters in {} bytes, {:.3} bits/elem",
            q_elems,
            q_bytes,
            q_bytes as f64 * 8.0 / q_elems as f64
        );
    }
    let mut by_dtype: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (name, _, _) in &model.dense {
        let (dtype, bytes) = sizes.get(name).cloned().unwrap_or_default();
        let e = by_dtype.entry(dtype).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let dtypes: Vec<String> = by_dtype
        .iter()
        .map(|(d, (n, b))| format!("{d} x{n}, {b} bytes"))
        .collect();
    if dtypes.is_empty() {
        println!("dense tensors: 0");
    } else {
        println!(
            "dense tensors: {} ({})",
            model.dense.len(),
            dtypes.join("; ")
        );
    }
    if list {
        for (name, shape, _) in &model.dense {
            let dtype = sizes.get(name).map_or("?", |s| s.0.as_str());
            println!("  {name:<48} {:<16} {dtype}", format!("{shape:?}"));
        }
    }
    Ok(())
}
