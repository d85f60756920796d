//! Channel-coupled KV-cache codebooks (CQ): one k-means codebook per (KV head, group of `v` channels),
//! learned on calibration keys or values, plus the CPU encoder and decoder of the cache codes.
//!
//! Encoding rule (the GPU `kv_quantize` kernel must match it bit for bit): for each (token, head, group),
//! the code is the entry `e` minimising `d(e) = Σ_{j=0}^{v-1} (x_j - c_{e,j})²`, evaluated in f32 as
//! `d = 0; for j in 0..v { t = x_j - c_{e,j}; d += t * t }` (no fused multiply-add), scanning `e` upward
//! and replacing the best only when `d < best` strictly, so ties go to the lowest index.

use crate::config::VqConfig;
use crate::error::{check_finite, Result, VqError};
use crate::kmeans::{kmeans_impl, mix_seed, KMeansOptions};
use crate::kv::KvCodebooks;
use crate::quantize::QuantizeOptions;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

fn check_kv_config(config: &VqConfig, head_dim: usize) -> Result<()> {
    config.validate()?;
    if !config.is_kv() {
        return Err(VqError::InvalidConfig(format!(
            "{config} is not a KV-cache config (scope must be kv)"
        )));
    }
    if config.r != 1 {
        return Err(VqError::InvalidConfig(format!(
            "{config}: KV codebooks have a single stage (r = 1)"
        )));
    }
    if head_dim == 0 || !head_dim.is_multiple_of(config.v) {
        return Err(VqError::Shape(format!(
            "head_dim {head_dim} is not a positive multiple of v={}",
            config.v
        )));
    }
    Ok(())
}

/// Learns KV codebooks from calibration K or V, `calib` = `[tokens, kv_heads, head_dim]`.
///
/// One k-means (k = 2^b, fp16 entries) per (head, channel group) on that group's `tokens` vectors, with
/// optional per-token weights (e.g. attention mass). The k-means of pair `p = head * groups + group` uses
/// seed `mix_seed(opts.seed, p)`; `opts.max_train_vectors` subsamples tokens.
pub fn learn_kv_codebooks(
    calib: &[f32],
    tokens: usize,
    kv_heads: usize,
    head_dim: usize,
    config: &VqConfig,
    token_weights: Option<&[f32]>,
    opts: &QuantizeOptions,
) -> Result<KvCodebooks> {
    check_kv_config(config, head_dim)?;
    if tokens == 0 || kv_heads == 0 {
        return Err(VqError::Shape(format!(
            "empty calibration: {tokens} tokens, {kv_heads} heads"
        )));
    }
    if calib.len() != tokens * kv_heads * head_dim {
        return Err(VqError::Shape(format!(
            "calibration has {} values, expected {tokens} x {kv_heads} x {head_dim}",
            calib.len()
        )));
    }
    check_finite("KV calibration", calib)?;
    if let Some(tw) = token_weights {
        if tw.len() != tokens {
            return Err(VqError::Shape(format!(
                "{} token weights for {tokens} tokens",
                tw.len()
            )));
        }
    }
    let v = config.v;
    let groups = head_dim / v;
    let k = config.entries();
    let pairs = kv_heads * groups;
    let bar = opts.progress.then(|| {
        let pb = ProgressBar::new(pairs as u64);
        if let Ok(style) =
            ProgressStyle::with_template("KV codebooks [{bar:30}] {pos}/{len} {elapsed}")
        {
            pb.set_style(style);
        }
        pb
    });
    let books: Vec<Result<Vec<f32>>> = (0..pairs)
        .into_par_iter()
        .map(|p| {
            let (h, g) = (p / groups, p % groups);
            let data: Vec<f32> = (0..tokens)
                .flat_map(|t| {
                    let o = (t * kv_heads + h) * head_dim + g * v;
                    calib[o..o + v].iter().copied()
                })
                .collect();
            let ko = KMeansOptions {
                k,
                iters: opts.kmeans_iters,
                seed: mix_seed(opts.seed, p as u64),
                max_samples: Some(opts.max_train_vectors.max(2 * k)),
                progress: false,
            };
            let km = kmeans_impl(&data, v, token_weights, None, &ko, true)?;
            if let Some(pb) = &bar {
                pb.inc(1);
            }
            Ok(km.centroids)
        })
        .collect();
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let mut codebooks = Vec::with_capacity(pairs * k * v);
    for b in books {
        codebooks.extend_from_slice(&b?);
    }
    check_finite("KV codebooks (fp16 overflow)", &codebooks)?;
    Ok(KvCodebooks {
        config: *config,
        kv_heads,
        head_dim,
        codebooks,
    })
}

fn check_codebooks(cb: &KvCodebooks) -> Result<()> {
    check_kv_config(&cb.config, cb.head_dim)?;
    let want = cb.kv_heads * cb.groups() * cb.config.entries() * cb.config.v;
    if cb.codebooks.len() != want {
        return Err(VqError::Shape(format!(
            "KV codebooks have {} values, expected {want}",
            cb.codebooks.len()
        )));
    }
    Ok(())
}

/// Nearest entry of one codebook (`[2^b, v]`) to `x`, by the rule in the module docs.
#[inline]
pub fn nearest_kv_entry(codebook: &[f32], v: usize, x: &[f32]) -> u16 {
    let mut best = f32::INFINITY;
    let mut best_e = 0u16;
    for (e, c) in codebook.chunks_exact(v).enumerate() {
        let mut d = 0.0f32;
        for j in 0..v {
            let t = x[j] - c[j];
            d += t * t;
        }
        if d < best {
            best = d;
            best_e = e as u16;
        }
    }
    best_e
}

/// Encodes `x` = `[tokens, kv_heads, head_dim]` into codes `[tokens, kv_heads, head_dim / v]`.
pub fn encode_kv(cb: &KvCodebooks, x: &[f32], tokens: usize) -> Result<Vec<u16>> {
    check_codebooks(cb)?;
    let (h, d) = (cb.kv_heads, cb.head_dim);
    if x.len() != tokens * h * d {
        return Err(VqError::Shape(format!(
            "KV input has {} values, expected {tokens} x {h} x {d}",
            x.len()
        )));
    }
    check_finite("KV input", x)?;
    let (v, groups, k) = (cb.config.v, cb.groups(), cb.config.entries());
    let mut codes = vec![0u16; tokens * h * groups];
    codes
        .par_chunks_mut(h * groups)
        .zip(x.par_chunks(h * d))
        .for_each(|(out, xt)| {
            for head in 0..h {
                for g in 0..groups {
                    let o = cb.entry_offset(head, g, 0);
                    let xs = &xt[head * d + g * v..head * d + (g + 1) * v];
                    out[head * groups + g] = nearest_kv_entry(&cb.codebooks[o..o + k * v], v, xs);
                }
            }
        });
    Ok(codes)
}

/// Decodes codes `[tokens, kv_heads, head_dim / v]` back to `[tokens, kv_heads, head_dim]`.
pub fn decode_kv(cb: &KvCodebooks, codes: &[u16], tokens: usize) -> Result<Vec<f32>> {
    check_codebooks(cb)?;
    let (h, d, v, groups) = (cb.kv_heads, cb.head_dim, cb.config.v, cb.groups());
    if codes.len() != tokens * h * groups {
        return Err(VqError::Shape(format!(
            "{} KV codes, expected {tokens} x {h} x {groups}",
            codes.len()
        )));
    }
    cb.check_code_range("KV", codes)?;
    let mut out = vec![0.0f32; tokens * h * d];
    out.par_chunks_mut(d)
        .zip(codes.par_chunks(groups))
        .enumerate()
        .for_each(|(th, (o, c))| {
            let head = th % h;
            for g in 0..groups {
                let off = cb.entry_offset(head, g, c[g] as usize);
                o[g * v..(g + 1) * v].copy_from_slice(&cb.codebooks[off..off + v]);
            }
        });
    Ok(out)
}
