//! Decode attention over a VQ-compressed KV cache (and the FP16 flash-decoding baseline) on the GPU.
//!
//! Layouts (see `kernels/attention_vq.cuh`): codes `[batch, kv_heads, cap, head_dim/v]` u8 (each row's bytes in the
//! cache's [`CodeLayout`], `kernels/kv_layout.cuh`), codebooks
//! `[kv_heads, head_dim/v, 2^b, v]` fp16, q / out `[batch, q_heads, head_dim]` fp16, lens `[batch]` i32,
//! FP16 K / V `[batch, kv_heads, cap, head_dim]`.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, LaunchConfig, PushKernelArg};
use half::f16;
use vqllm_codegen::attention::{
    instantiate_attention, scale_log2, values_tile, AttentionPlan, AttnDataflow, CodeLayout, Launch,
};
use vqllm_vq::KvCodebooks;

use crate::cache::ModuleCache;
use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::ops::linear::{function_with_smem, load_source};

fn cfg(l: &Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: (l.block, 1, 1),
        shared_mem_bytes: l.smem_bytes,
    }
}

/// `[kv_heads, groups, entries, v]` -> `[kv_heads, entries, groups, v]`.
fn entry_major(cb: &KvCodebooks) -> Vec<f32> {
    let (g_n, e_n, v) = (cb.groups(), cb.config.entries(), cb.config.v);
    let mut out = vec![0f32; cb.codebooks.len()];
    for (h, head) in cb.codebooks.chunks_exact(g_n * e_n * v).enumerate() {
        for (g, group) in head.chunks_exact(e_n * v).enumerate() {
            for (e, entry) in group.chunks_exact(v).enumerate() {
                let at = ((h * e_n + e) * g_n + g) * v;
                out[at..at + v].copy_from_slice(entry);
            }
        }
    }
    out
}

/// One layer's VQ KV cache on the GPU.
pub struct KvCacheGpu {
    pub batch: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub cap: usize,
    /// Byte order of a token's codes (the plan that reads the cache must use the same).
    pub layout: CodeLayout,
    pub k_codes: CudaSlice<u8>,
    pub v_codes: CudaSlice<u8>,
    pub k_cb: CudaSlice<f16>,
    pub v_cb: CudaSlice<f16>,
    /// The same codebooks entry-major, `[kv_heads, 2^b, head_dim/v, v]`, for the LUT level's table build (a warp
    /// reads consecutive groups of one entry: one contiguous run instead of one cache line per lane).
    pub k_cb_entry_major: CudaSlice<f16>,
    pub v_cb_entry_major: CudaSlice<f16>,
    pub lens: CudaSlice<i32>,
    /// The other half of the lengths ping-pong: `kv_quantize` writes the advanced lengths here.
    lens_next: CudaSlice<i32>,
    lens_host: Vec<usize>,
}

impl KvCacheGpu {
    /// An empty cache of `cap` tokens per sequence with the given K and V codebooks, its codes in `layout` (take
    /// the plan's [`AttentionPlan::code_layout`]).
    pub fn new(
        gpu: &Gpu,
        k_cb: &KvCodebooks,
        v_cb: &KvCodebooks,
        batch: usize,
        cap: usize,
        layout: CodeLayout,
    ) -> Result<Self> {
        let bad = |m: String| Err(CudaError::InvalidArgument(m));
        if k_cb.kv_heads != v_cb.kv_heads
            || k_cb.head_dim != v_cb.head_dim
            || k_cb.config != v_cb.config
        {
            return bad("K and V codebooks disagree on heads, head_dim or config".into());
        }
        let c = &k_cb.config;
        if !c.is_kv() || c.r != 1 || c.b > 8 || !k_cb.head_dim.is_multiple_of(c.v) {
            return bad(format!("{c} with head_dim {} is not a supported KV cache config (v | head_dim, b <= 8, r = 1)", k_cb.head_dim));
        }
        let n_cb = k_cb.kv_heads * k_cb.groups() * c.entries() * c.v;
        if k_cb.codebooks.len() != n_cb || v_cb.codebooks.len() != n_cb {
            return bad(format!("codebooks must hold {n_cb} values"));
        }
        if batch == 0 || cap == 0 || !cap.is_multiple_of(2) {
            return bad(format!(
                "batch {batch} and capacity {cap} must be positive, capacity even"
            ));
        }
        let n_codes = batch * k_cb.kv_heads * cap * k_cb.groups();
        let up = |values: &[f32]| {
            gpu.htod(&values.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>())
        };
        Ok(KvCacheGpu {
            batch,
            kv_heads: k_cb.kv_heads,
            head_dim: k_cb.head_dim,
            cap,
            layout,
            k_codes: gpu.alloc_zeros(n_codes)?,
            v_codes: gpu.alloc_zeros(n_codes)?,
            k_cb: up(&k_cb.codebooks)?,
            v_cb: up(&v_cb.codebooks)?,
            k_cb_entry_major: up(&entry_major(k_cb))?,
            v_cb_entry_major: up(&entry_major(v_cb))?,
            lens: gpu.alloc_zeros(batch)?,
            lens_next: gpu.alloc_zeros(batch)?,
            lens_host: vec![0; batch],
        })
    }

    /// Tokens currently held per sequence.
    pub fn lens(&self) -> &[usize] {
        &self.lens_host
    }

    /// Channel groups per token (`head_dim / v`).
    pub fn groups(&self) -> usize {
        self.k_codes.len() / (self.batch * self.kv_heads * self.cap)
    }

    /// The K and V codes (`[batch, kv_heads, cap, groups]`, group order, whatever the cache's layout).
    pub fn download_codes(&self, gpu: &Gpu) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut k = gpu.dtoh(&self.k_codes)?;
        let mut v = gpu.dtoh(&self.v_codes)?;
        for c in [&mut k, &mut v] {
            self.layout.permute(c, self.cap, self.groups(), false);
        }
        Ok((k, v))
    }

    /// Replaces the cache contents with host codes (`[batch, kv_heads, cap, groups]`, group order) and lengths.
    pub fn upload(
        &mut self,
        gpu: &Gpu,
        k_codes: &[u8],
        v_codes: &[u8],
        lens: &[usize],
    ) -> Result<()> {
        if k_codes.len() != self.k_codes.len()
            || v_codes.len() != self.v_codes.len()
            || lens.len() != self.batch
        {
            return Err(CudaError::InvalidArgument(
                "code or length arrays do not match the cache shape".into(),
            ));
        }
        if let Some(l) = lens.iter().find(|&&l| l > self.cap) {
            return Err(CudaError::InvalidArgument(format!(
                "length {l} exceeds the capacity {}",
                self.cap
            )));
        }
        let groups = self.groups();
        for (host, dev) in [(k_codes, &mut self.k_codes), (v_codes, &mut self.v_codes)] {
            if self.layout == CodeLayout::Logical {
                gpu.htod_into(host, dev)?;
            } else {
                let mut c = host.to_vec();
                self.layout.permute(&mut c, self.cap, groups, true);
                gpu.htod_into(&c, dev)?;
            }
        }
        self.set_lens(gpu, lens)
    }

    fn set_lens(&mut self, gpu: &Gpu, lens: &[usize]) -> Result<()> {
        let l: Vec<i32> = lens.iter().map(|&x| x as i32).collect();
        gpu.htod_into(&l, &mut self.lens)?;
        self.lens_host = lens.to_vec();
        Ok(())
    }
}

/// Compiled kernels and workspaces for one attention plan.
pub struct VqAttention {
    pub plan: AttentionPlan,
    _module: Arc<CudaModule>,
    quantize: CudaFunction,
    attention: CudaFunction,
    values: Option<CudaFunction>,
    combine: CudaFunction,
    fp16: CudaFunction,
    ws_o: CudaSlice<f32>,
    ws_ml: CudaSlice<f32>,
    ws_sc: CudaSlice<f32>,
    f16_ws_o: CudaSlice<f32>,
    f16_ws_ml: CudaSlice<f32>,
}

impl VqAttention {
    pub fn new(gpu: &Gpu, cache: &ModuleCache, plan: AttentionPlan) -> Result<Self> {
        let src = instantiate_attention(&plan);
        let (_, module) = load_source(gpu, cache, &src.attention, &src.source)?;
        let max_smem = gpu.spec().smem_per_block_optin;
        let quantize = function_with_smem(&module, &src.quantize, max_smem)?;
        let attention = function_with_smem(&module, &src.attention, max_smem)?;
        let values = match &src.values {
            Some(n) => Some(function_with_smem(&module, n, max_smem)?),
            None => None,
        };
        let combine = module.load_function(&src.combine)?;
        let fp16 = function_with_smem(&module, &src.fp16, max_smem)?;
        let w = &plan.workspace;
        Ok(VqAttention {
            ws_o: gpu.alloc_zeros(w.partial_o.max(1))?,
            ws_ml: gpu.alloc_zeros(w.partial_ml.max(1))?,
            ws_sc: gpu.alloc_zeros(w.scores.max(1))?,
            f16_ws_o: gpu.alloc_zeros(w.fp16_partial_o.max(1))?,
            f16_ws_ml: gpu.alloc_zeros(w.fp16_partial_ml.max(1))?,
            plan,
            _module: module,
            quantize,
            attention,
            values,
            combine,
            fp16,
        })
    }

    fn check_cache(&self, kv: &KvCacheGpu) -> Result<()> {
        let p = &self.plan;
        if kv.batch != p.batch || kv.kv_heads != p.kv_heads || kv.head_dim != p.head_dim {
            return Err(CudaError::InvalidArgument(format!(
                "cache is batch {} x {} KV heads x {} dims, the plan is for {} x {} x {}",
                kv.batch, kv.kv_heads, kv.head_dim, p.batch, p.kv_heads, p.head_dim
            )));
        }
        if kv.layout != p.code_layout {
            return Err(CudaError::InvalidArgument(format!(
                "cache codes are in the {:?} layout, the plan ({} level) reads {:?}",
                kv.layout, p.level, p.code_layout
            )));
        }
        Ok(())
    }

    /// Encodes `t_new` new K and V rows per sequence (`[batch, t_new, kv_heads, head_dim]` fp16) into the cache by
    /// nearest centroid and advances the lengths. Fails, writing nothing, when a sequence would exceed the capacity.
    pub fn append(
        &self,
        gpu: &Gpu,
        kv: &mut KvCacheGpu,
        k_rows: &CudaSlice<f16>,
        v_rows: &CudaSlice<f16>,
        t_new: usize,
    ) -> Result<()> {
        self.check_cache(kv)?;
        let need = kv.batch * t_new * kv.kv_heads * kv.head_dim;
        if k_rows.len() < need || v_rows.len() < need {
            return Err(CudaError::InvalidArgument(format!(
                "K/V rows need {need} values"
            )));
        }
        if let Some((b, l)) = kv
            .lens_host
            .iter()
            .enumerate()
            .find(|(_, &l)| l + t_new > kv.cap)
        {
            return Err(CudaError::InvalidArgument(format!(
                "sequence {b} holds {l} tokens: appending {t_new} exceeds the capacity {}",
                kv.cap
            )));
        }
        if t_new == 0 {
            return Ok(());
        }
        let (launch, tpb) = self.plan.quantize_launch(t_new, gpu.spec());
        let (batch, t, h, cap, tpb) = (
            kv.batch as i32,
            t_new as i32,
            kv.kv_heads as i32,
            kv.cap as i32,
            tpb as i32,
        );
        let mut b = gpu.stream().launch_builder(&self.quantize);
        b.arg(k_rows)
            .arg(v_rows)
            .arg(&kv.k_cb)
            .arg(&kv.v_cb)
            .arg(&mut kv.k_codes)
            .arg(&mut kv.v_codes)
            .arg(&kv.lens)
            .arg(&mut kv.lens_next)
            .arg(&batch)
            .arg(&t)
            .arg(&h)
            .arg(&cap)
            .arg(&tpb);
        unsafe { b.launch(cfg(&launch)) }?;
        // The kernel wrote lens + t_new into lens_next: swap instead of copying from the host.
        std::mem::swap(&mut kv.lens, &mut kv.lens_next);
        for l in kv.lens_host.iter_mut() {
            *l += t_new;
        }
        Ok(())
    }

    /// `out = softmax(q·Kᵀ / sqrt(d)) · V` over each sequence's cached tokens (one query token per sequence).
    pub fn forward(
        &mut self,
        gpu: &Gpu,
        kv: &KvCacheGpu,
        q: &CudaSlice<f16>,
        out: &mut CudaSlice<f16>,
    ) -> Result<()> {
        self.check_cache(kv)?;
        let p = &self.plan;
        let n = p.batch * p.q_heads * p.head_dim;
        if q.len() < n || out.len() < n {
            return Err(CudaError::InvalidArgument(format!(
                "q and out need {n} values"
            )));
        }
        let max_len = kv.lens_host.iter().copied().max().unwrap_or(0);
        if max_len > p.seq {
            return Err(CudaError::InvalidArgument(format!(
                "a sequence holds {max_len} tokens; the plan is for at most {}",
                p.seq
            )));
        }
        let split = p.split_for(max_len);
        let (qh, kh, cap, chunk) = (
            p.q_heads as i32,
            p.kv_heads as i32,
            kv.cap as i32,
            split.chunk as i32,
        );
        let sl2 = scale_log2(p.head_dim);
        let stream = gpu.stream();
        match p.dataflow {
            AttnDataflow::TokenSplit => {
                let (k_cb, v_cb) = if p.lut {
                    (&kv.k_cb_entry_major, &kv.v_cb_entry_major)
                } else {
                    (&kv.k_cb, &kv.v_cb)
                };
                let mut b = stream.launch_builder(&self.attention);
                b.arg(q)
                    .arg(&kv.k_codes)
                    .arg(&kv.v_codes)
                    .arg(k_cb)
                    .arg(v_cb)
                    .arg(&kv.lens)
                    .arg(&mut *out)
                    .arg(&mut self.ws_o)
                    .arg(&mut self.ws_ml)
                    .arg(&qh)
                    .arg(&kh)
                    .arg(&cap)
                    .arg(&chunk)
                    .arg(&sl2);
                unsafe { b.launch(cfg(&split.launch)) }?;
                if split.splits > 1 {
                    self.combine_into(gpu, split.splits, out, false)?;
                }
            }
            AttnDataflow::GroupSplit => {
                let stride = p.workspace.ws_stride as i32;
                let mut b = stream.launch_builder(&self.attention);
                b.arg(q)
                    .arg(&kv.k_codes)
                    .arg(&kv.k_cb)
                    .arg(&kv.lens)
                    .arg(&mut self.ws_sc)
                    .arg(&qh)
                    .arg(&kh)
                    .arg(&cap)
                    .arg(&chunk)
                    .arg(&stride)
                    .arg(&sl2);
                unsafe { b.launch(cfg(&split.launch)) }?;
                let values = self.values.as_ref().ok_or_else(|| {
                    CudaError::InvalidArgument("group split without a values kernel".into())
                })?;
                let launch = p.values_launch.ok_or_else(|| {
                    CudaError::InvalidArgument("group split without a values launch".into())
                })?;
                let tile = values_tile() as i32;
                let mut b = stream.launch_builder(values);
                b.arg(&kv.v_codes)
                    .arg(&kv.v_cb)
                    .arg(&kv.lens)
                    .arg(&self.ws_sc)
                    .arg(&mut *out)
                    .arg(&qh)
                    .arg(&kh)
                    .arg(&cap)
                    .arg(&tile)
                    .arg(&stride);
                unsafe { b.launch(cfg(&launch)) }?;
            }
        }
        Ok(())
    }

    fn combine_into(
        &mut self,
        gpu: &Gpu,
        splits: u32,
        out: &mut CudaSlice<f16>,
        fp16: bool,
    ) -> Result<()> {
        let p = &self.plan;
        let (s, qh, d) = (splits as i32, p.q_heads as i32, p.head_dim as i32);
        let launch = LaunchConfig {
            grid_dim: (p.q_heads as u32, p.batch as u32, 1),
            block_dim: (p.head_dim as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let (o, ml) = if fp16 {
            (&self.f16_ws_o, &self.f16_ws_ml)
        } else {
            (&self.ws_o, &self.ws_ml)
        };
        let mut b = gpu.stream().launch_builder(&self.combine);
        b.arg(o).arg(ml).arg(&mut *out).arg(&s).arg(&qh).arg(&d);
        unsafe { b.launch(launch) }?;
        Ok(())
    }

    /// The FP16 flash-decoding baseline on fp16 K / V `[batch, kv_heads, cap, head_dim]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_fp16(
        &mut self,
        gpu: &Gpu,
        k: &CudaSlice<f16>,
        v: &CudaSlice<f16>,
        lens: &CudaSlice<i32>,
        cap: usize,
        q: &CudaSlice<f16>,
        out: &mut CudaSlice<f16>,
    ) -> Result<()> {
        let p = &self.plan;
        let need = p.batch * p.kv_heads * cap * p.head_dim;
        if k.len() < need || v.len() < need || lens.len() < p.batch {
            return Err(CudaError::InvalidArgument(format!(
                "fp16 K/V need {need} values and {} lengths",
                p.batch
            )));
        }
        let split = p.fp16.split;
        let (qh, kh, c, chunk) = (
            p.q_heads as i32,
            p.kv_heads as i32,
            cap as i32,
            split.chunk as i32,
        );
        let sl2 = scale_log2(p.head_dim);
        let mut b = gpu.stream().launch_builder(&self.fp16);
        b.arg(q)
            .arg(k)
            .arg(v)
            .arg(lens)
            .arg(&mut *out)
            .arg(&mut self.f16_ws_o)
            .arg(&mut self.f16_ws_ml)
            .arg(&qh)
            .arg(&kh)
            .arg(&c)
            .arg(&chunk)
            .arg(&sl2);
        unsafe { b.launch(cfg(&split.launch)) }?;
        if split.splits > 1 {
            self.combine_into(gpu, split.splits, out, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::entry_major;
    use vqllm_vq::{KvCodebooks, VqConfig};

    #[test]
    fn entry_major_transposes_groups_and_entries() {
        let config: VqConfig = "cq2".parse().unwrap();
        let (heads, head_dim) = (3usize, 64usize);
        let (g_n, e_n, v) = (head_dim / config.v, config.entries(), config.v);
        let n = heads * g_n * e_n * v;
        // Distinct values (a hash of the index) so that any misplaced element shows.
        let codebooks: Vec<f32> = (0..n)
            .map(|i| ((i * 2_654_435_761) % 1_000_003) as f32)
            .collect();
        let cb = KvCodebooks {
            config,
            kv_heads: heads,
            head_dim,
            codebooks,
        };
        let em = entry_major(&cb);
        assert_eq!(em.len(), n);
        for h in 0..heads {
            for g in 0..g_n {
                for e in 0..e_n {
                    for i in 0..v {
                        let src = ((h * g_n + g) * e_n + e) * v + i;
                        let dst = ((h * e_n + e) * g_n + g) * v + i;
                        assert_eq!(em[dst], cb.codebooks[src], "h {h} g {g} e {e} i {i}");
                    }
                }
            }
        }
    }
}
