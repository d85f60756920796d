//! Decode-attention references: one query token per sequence, grouped-query attention, fp32 softmax.
//!
//! Shapes (row-major): `q` `[b, hq, d]`; dense `k`, `v` `[b, hkv, cap, d]`; VQ codes `[b, hkv, cap, d / v]`
//! (see [`crate::kv`] for the codebook layout); output `[b, hq, d]`. Batch size `b = lens.len()`; sequence `i`
//! attends to its first `lens[i]` cache slots. Query head `h` reads KV head `h / (hq / hkv)`. Scores are
//! `q·k / sqrt(d)`; the softmax subtracts the maximum. A sequence of length 0 yields a zero output row (the
//! convention the GPU kernels follow for empty batch slots).

use crate::error::{Result, VqError};
use crate::kv::KvCodebooks;
use rayon::prelude::*;

/// Dimensions shared by both references.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    cap: usize,
}

impl Dims {
    /// The dims of a batch of `lens.len()` sequences, checked against the query and the lengths.
    fn checked(
        q: &[f32],
        lens: &[usize],
        hq: usize,
        hkv: usize,
        d: usize,
        cap: usize,
    ) -> Result<Dims> {
        let dims = Dims {
            b: lens.len(),
            hq,
            hkv,
            d,
            cap,
        };
        dims.check(q, lens)?;
        Ok(dims)
    }

    fn check(&self, q: &[f32], lens: &[usize]) -> Result<()> {
        let Dims { b, hq, hkv, d, cap } = *self;
        if hq == 0 || hkv == 0 || d == 0 || cap == 0 {
            return Err(VqError::Shape(format!(
                "attention dims must be positive: hq={hq} hkv={hkv} d={d} cap={cap}"
            )));
        }
        if hq % hkv != 0 {
            return Err(VqError::Shape(format!(
                "query heads {hq} are not a multiple of KV heads {hkv}"
            )));
        }
        if let Some(i) = lens.iter().position(|&l| l > cap) {
            return Err(VqError::Shape(format!(
                "sequence {i} has length {} > cache capacity {cap}",
                lens[i]
            )));
        }
        if q.len() != b * hq * d {
            return Err(VqError::Shape(format!(
                "query has {} values, expected [{b}, {hq}, {d}]",
                q.len()
            )));
        }
        Ok(())
    }

    /// Index of the first cache slot of (sequence, KV head) in units of slots.
    fn kv_base(&self, seq: usize, kv_head: usize) -> usize {
        (seq * self.hkv + kv_head) * self.cap
    }
}

/// Runs `head` for every (sequence, query head) in parallel; `head(seq, h, kv_head, len, out)` fills `out` (`d`); empty sequences are skipped.
fn per_head<F>(dims: Dims, lens: &[usize], head: F) -> Vec<f32>
where
    F: Fn(usize, usize, usize, usize, &mut [f32]) + Sync,
{
    let group = dims.hq / dims.hkv;
    let mut out = vec![0.0f32; dims.b * dims.hq * dims.d];
    out.par_chunks_mut(dims.d).enumerate().for_each(|(i, o)| {
        let (seq, h) = (i / dims.hq, i % dims.hq);
        if lens[seq] > 0 {
            head(seq, h, h / group, lens[seq], o);
        }
    });
    out
}

/// In-place softmax of `scores` (fp32, max subtracted).
fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

/// Dense decode attention on fp32 K/V caches; returns `[b, hq, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode_dense(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[usize],
    hq: usize,
    hkv: usize,
    d: usize,
    cap: usize,
) -> Result<Vec<f32>> {
    let dims = Dims::checked(q, lens, hq, hkv, d, cap)?;
    let kv_len = dims.b * hkv * cap * d;
    if k.len() != kv_len || v.len() != kv_len {
        return Err(VqError::Shape(format!(
            "K/V caches have {}/{} values, expected [{}, {hkv}, {cap}, {d}]",
            k.len(),
            v.len(),
            dims.b
        )));
    }
    let scale = 1.0 / (d as f32).sqrt();
    Ok(per_head(dims, lens, |seq, h, kvh, len, out| {
        let qh = &q[(seq * hq + h) * d..][..d];
        let base = dims.kv_base(seq, kvh);
        let mut p: Vec<f32> = (0..len)
            .map(|t| {
                let kt = &k[(base + t) * d..][..d];
                qh.iter().zip(kt).fold(0.0f32, |a, (x, y)| a + x * y) * scale
            })
            .collect();
        softmax(&mut p);
        for (t, w) in p.iter().enumerate() {
            let vt = &v[(base + t) * d..][..d];
            out.iter_mut().zip(vt).for_each(|(o, x)| *o += w * x);
        }
    }))
}

/// Checks one cache's codebooks and codes against the attention shape; returns the vector size `v`.
fn check_vq_cache(
    what: &str,
    cb: &KvCodebooks,
    codes: &[u16],
    b: usize,
    cap: usize,
) -> Result<usize> {
    let c = &cb.config;
    c.validate()?;
    if !c.is_kv() || c.r != 1 {
        return Err(VqError::InvalidConfig(format!(
            "{what} codebooks need a KV config with r = 1, got {c}"
        )));
    }
    if cb.head_dim == 0 || !cb.head_dim.is_multiple_of(c.v) {
        return Err(VqError::Shape(format!(
            "{what}: head_dim {} is not a multiple of v = {}",
            cb.head_dim, c.v
        )));
    }
    let want_cb = cb.kv_heads * cb.groups() * c.entries() * c.v;
    if cb.codebooks.len() != want_cb {
        return Err(VqError::Format(format!(
            "{what} codebooks have {} values, expected {want_cb}",
            cb.codebooks.len()
        )));
    }
    crate::error::check_finite(what, &cb.codebooks)?;
    let want_codes = b * cb.kv_heads * cap * cb.groups();
    if codes.len() != want_codes {
        return Err(VqError::Shape(format!(
            "{what} codes have {} values, expected [{b}, {}, {cap}, {}]",
            codes.len(),
            cb.kv_heads,
            cb.groups()
        )));
    }
    cb.check_code_range(what, codes)?;
    Ok(c.v)
}

/// Decode attention on VQ-compressed K/V caches (codes `[b, hkv, cap, d / v]`), decoding entries on the fly.
///
/// `hkv` and `d` come from the codebooks; K and V may use different vector sizes. Every code is checked,
/// including those in unused slots past `lens`, so a corrupt cache is reported rather than ignored.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode_vq(
    q: &[f32],
    k_codes: &[u16],
    v_codes: &[u16],
    k_cb: &KvCodebooks,
    v_cb: &KvCodebooks,
    lens: &[usize],
    hq: usize,
    cap: usize,
) -> Result<Vec<f32>> {
    if k_cb.kv_heads != v_cb.kv_heads || k_cb.head_dim != v_cb.head_dim {
        return Err(VqError::Shape(format!(
            "K codebooks are for {} heads x {} channels, V codebooks for {} x {}",
            k_cb.kv_heads, k_cb.head_dim, v_cb.kv_heads, v_cb.head_dim
        )));
    }
    let (hkv, d) = (k_cb.kv_heads, k_cb.head_dim);
    let dims = Dims::checked(q, lens, hq, hkv, d, cap)?;
    let kv = check_vq_cache("K", k_cb, k_codes, dims.b, cap)?;
    let vv = check_vq_cache("V", v_cb, v_codes, dims.b, cap)?;
    let (kg, vg) = (d / kv, d / vv);
    let scale = 1.0 / (d as f32).sqrt();
    Ok(per_head(dims, lens, |seq, h, kvh, len, out| {
        let qh = &q[(seq * hq + h) * d..][..d];
        let base = dims.kv_base(seq, kvh);
        let mut p: Vec<f32> = (0..len)
            .map(|t| {
                let codes = &k_codes[(base + t) * kg..][..kg];
                let mut acc = 0.0f32;
                for (g, &code) in codes.iter().enumerate() {
                    let e = &k_cb.codebooks[k_cb.entry_offset(kvh, g, code as usize)..][..kv];
                    acc = qh[g * kv..][..kv]
                        .iter()
                        .zip(e)
                        .fold(acc, |a, (x, y)| a + x * y);
                }
                acc * scale
            })
            .collect();
        softmax(&mut p);
        for (t, w) in p.iter().enumerate() {
            let codes = &v_codes[(base + t) * vg..][..vg];
            for (g, &code) in codes.iter().enumerate() {
                let e = &v_cb.codebooks[v_cb.entry_offset(kvh, g, code as usize)..][..vv];
                out[g * vv..][..vv]
                    .iter_mut()
                    .zip(e)
                    .for_each(|(o, x)| *o += w * x);
            }
        }
    }))
}
