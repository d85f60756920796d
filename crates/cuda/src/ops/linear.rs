//! A VQ linear layer on the GPU: packs a [`QuantizedWeight`] into the tile layout, compiles the planned kernel and
//! runs `y[m, n] = x[m, k] · Wᵀ` (Hadamard transform of the activations first for quip4-style weights).

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum as FuncAttr;
use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, LaunchConfig};
use cudarc::nvrtc::Ptx;
use half::f16;
use vqllm_codegen::{instantiate, layout::hadamard_block, pack_for_plan, KernelKind, Plan};
use vqllm_vq::{CodebookKind, QuantizedWeight};

use crate::cache::ModuleCache;
use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::nvrtc::{CompileOptions, CompiledModule};
use crate::pdl::{Programmatic, RawArgs};

/// Compiles `source` for the GPU (through the cache) and loads it.
pub fn load_source(
    gpu: &Gpu,
    cache: &ModuleCache,
    name: &str,
    source: &str,
) -> Result<(Arc<CompiledModule>, Arc<CudaModule>)> {
    let opts = CompileOptions::new(gpu.arch());
    let compiled = cache.compile(name, source, &opts)?;
    let module = gpu
        .context()
        .load_module(Ptx::from_binary(compiled.cubin.clone()))?;
    Ok((compiled, module))
}

/// Looks up `name` in `module` and allows it `smem` bytes of dynamic shared memory.
pub fn function_with_smem(module: &Arc<CudaModule>, name: &str, smem: u32) -> Result<CudaFunction> {
    let f = module.load_function(name)?;
    if smem > 48 * 1024 {
        f.set_attribute(
            FuncAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )?;
    }
    Ok(f)
}

/// A VQ weight resident on the GPU with its compiled kernel.
pub struct VqLinear {
    pub plan: Plan,
    /// Registers per thread and local memory (stack + spills) per thread of the main kernel, from the driver.
    pub registers: u32,
    pub local_bytes: u32,
    /// Weight copies (codes only) for benchmarks that rotate past the L2 cache.
    codes: Vec<CudaSlice<u32>>,
    /// LUT-large GeMV: one TMA descriptor of the codes per copy (`crate::tma`).
    code_maps: Vec<CudaSlice<u32>>,
    /// The kernel's `aux` words where its code layout has them (the sorted GeMV's tiles, `PackedWeight::aux`).
    aux_words: Option<CudaSlice<u32>>,
    codebooks: CudaSlice<f16>,
    scales: CudaSlice<f16>,
    e8p_abs: CudaSlice<u32>,
    signs: Option<CudaSlice<f16>>,
    x_rot: Option<CudaSlice<f16>>,
    ws: CudaSlice<f32>,
    main: CudaFunction,
    finalize: CudaFunction,
    hadamard: Option<(CudaFunction, usize)>,
    /// The main kernel applies the Hadamard transform itself, reading the signs from its `aux` argument.
    fused_hadamard: bool,
    stage_scales: [f32; 4],
    kb: i32,
    /// Which of the main and finalize launches are programmatic dependent launches (`crate::pdl`).
    programmatic: Programmatic,
    /// Large-batch GeMM: the dense fp16 weight the dequantize kernel writes, and cuBLAS.
    dense: Option<(CudaSlice<f16>, crate::cublas::Blas)>,
}

impl VqLinear {
    /// Uploads `q`, packed for the plan's kernel (`vqllm_codegen::pack_for_plan`), with `copies` copies of its codes,
    /// and compiles the plan's kernel.
    pub fn new(
        gpu: &Gpu,
        cache: &ModuleCache,
        q: &QuantizedWeight,
        plan: Plan,
        copies: usize,
    ) -> Result<Self> {
        if plan.n != q.rows || plan.k != q.cols || plan.config != q.config {
            return Err(CudaError::InvalidArgument(format!(
                "plan is for {} [{}, {}] but the weight is {} [{}, {}]",
                plan.config, plan.n, plan.k, q.config, q.rows, q.cols
            )));
        }
        if q.config.hadamard != q.rht.is_some() {
            return Err(CudaError::InvalidArgument(format!(
                "{} {} Hadamard signs",
                q.config,
                if q.config.hadamard {
                    "needs"
                } else {
                    "has no Hadamard transform but carries"
                }
            )));
        }
        let packed =
            pack_for_plan(q, &plan).map_err(|e| CudaError::InvalidArgument(e.to_string()))?;
        let hblock = q
            .rht
            .as_ref()
            .map(|r| r.block)
            .or_else(|| q.config.hadamard.then(|| hadamard_block(q.cols)));
        let ks = instantiate(&plan, hblock);
        let (compiled, module) = load_source(gpu, cache, &ks.entry, &ks.source)?;
        let _ = compiled;
        let main = function_with_smem(&module, &ks.entry, plan.smem_bytes)?;
        // The driver's view (the NVRTC log may not carry a ptxas report, e.g. NVRTC 13.0 leaves it empty).
        let registers = main.get_attribute(FuncAttr::CU_FUNC_ATTRIBUTE_NUM_REGS)? as u32;
        let local_bytes = main.get_attribute(FuncAttr::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)? as u32;
        let finalize = module.load_function(&ks.finalize)?;
        let hadamard = match (&ks.hadamard, hblock) {
            (Some(name), Some(b)) => Some((module.load_function(name)?, b)),
            _ => None,
        };
        let mut codes = Vec::with_capacity(copies.max(1));
        for _ in 0..copies.max(1) {
            codes.push(gpu.htod(&packed.codes)?);
        }
        let aux_words = if packed.aux.is_empty() {
            None
        } else {
            Some(gpu.htod(&packed.aux)?)
        };
        let code_maps = if plan.code_tma {
            codes
                .iter()
                .map(|c| {
                    crate::tma::code_tensor_map(
                        gpu,
                        c,
                        packed.geometry.l as usize,
                        packed.kb,
                        packed.rows_padded / 8,
                    )
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let codebooks = if packed.codebooks.is_empty() {
            gpu.alloc_zeros::<f16>(8)?
        } else {
            gpu.htod(&packed.codebooks)?
        };
        let scales = gpu.htod(&packed.scales)?;
        let abs: Vec<u32> = if q.config.codebook == CodebookKind::E8p {
            vqllm_vq::e8p::grid_packed_abs().to_vec()
        } else {
            vec![0; 256]
        };
        let e8p_abs = gpu.htod(&abs)?;
        let signs = match &q.rht {
            Some(r) => Some(
                gpu.htod(
                    &r.signs
                        .iter()
                        .map(|&s| f16::from_f32(s))
                        .collect::<Vec<_>>(),
                )?,
            ),
            None => None,
        };
        // The E8P LUT GeMV transforms the activations itself: the signs go in its `aux` argument.
        let fused_hadamard = ks.hadamard_in_main;
        let x_rot = if signs.is_some() && !fused_hadamard {
            Some(gpu.alloc_zeros::<f16>(plan.m * plan.k)?)
        } else {
            None
        };
        let ws = gpu.alloc_zeros::<f32>(plan.m * plan.n)?;
        let dense = if plan.kernel == KernelKind::DequantGemm {
            Some((gpu.alloc_zeros::<f16>(plan.n * plan.k)?, gpu.blas()?))
        } else {
            None
        };
        let mut stage_scales = [1.0f32; 4];
        for (d, s) in stage_scales.iter_mut().zip(&packed.stage_scales) {
            *d = *s;
        }
        Ok(VqLinear {
            registers,
            local_bytes,
            kb: packed.kb as i32,
            programmatic: Programmatic::default().on_device(gpu.spec().cc_major),
            plan,
            codes,
            code_maps,
            aux_words,
            codebooks,
            scales,
            e8p_abs,
            signs,
            x_rot,
            ws,
            main,
            finalize,
            hadamard,
            fused_hadamard,
            stage_scales,
            dense,
        })
    }

    /// Chooses which launches are programmatic dependent launches (default [`Programmatic::Chain`] where the
    /// device supports them, sm_90+; always off before). Returns the mode in effect.
    pub fn set_programmatic_launch(&mut self, gpu: &Gpu, mode: Programmatic) -> Programmatic {
        self.programmatic = mode.on_device(gpu.spec().cc_major);
        self.programmatic
    }

    /// Number of code copies (for L2 rotation).
    pub fn copies(&self) -> usize {
        self.codes.len()
    }

    /// Queues `y = x · Wᵀ` on the GPU's stream using code copy `copy`. `x` is `[m, k]` fp16, `y` `[m, n]` fp16.
    pub fn forward(
        &mut self,
        gpu: &Gpu,
        x: &CudaSlice<f16>,
        y: &mut CudaSlice<f16>,
        copy: usize,
    ) -> Result<()> {
        let p = &self.plan;
        if x.len() < p.m * p.k || y.len() < p.m * p.n {
            return Err(CudaError::InvalidArgument(format!(
                "buffers too small for m={} k={} n={}: x has {}, y has {}",
                p.m,
                p.k,
                p.n,
                x.len(),
                y.len()
            )));
        }
        let stream = gpu.stream();
        let (m, rows, cols) = (p.m as i32, p.n as i32, p.k as i32);
        // The LUT kernel takes its rows-per-block chunk count in this slot (0: stream mode, equal unit ranges).
        let tps = if p.kernel == KernelKind::Lut {
            p.lut_chunks
        } else {
            p.tiles_per_split
        } as i32;
        let xin: &CudaSlice<f16> = if let (Some((had, block)), Some(signs), Some(xr)) =
            (&self.hadamard, &self.signs, &mut self.x_rot)
        {
            // One thread per 16 values (the radix-16 passes of kernels/hadamard.cuh), 32 to 1024.
            let threads = (*block as u32 / 16).clamp(32, 1024);
            let cfg = LaunchConfig {
                grid_dim: ((p.k / block) as u32, p.m as u32, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut a = RawArgs::new(stream);
            a.buf(x).buf(signs).buf_mut(&mut *xr).i32(cols);
            unsafe { a.launch(had, cfg, self.programmatic == Programmatic::Chain) }?;
            xr
        } else {
            x
        };
        let codes = &self.codes[copy % self.codes.len()];
        // The main kernel writes y, or for the large-batch path the dense fp16 weight (scales applied) that
        // cuBLAS then multiplies.
        let (target, smem): (&mut CudaSlice<f16>, u32) = match &mut self.dense {
            Some((w, _)) => (w, 0),
            None => (&mut *y, p.smem_bytes),
        };
        let cfg = LaunchConfig {
            grid_dim: p.grid,
            block_dim: (p.block, 1, 1),
            shared_mem_bytes: smem,
        };
        let [ss0, ss1, ss2, ss3] = self.stage_scales;
        // The kernels' last argument: the LUT-large GeMV's code tensor map, the sorted GeMV's tiles, the E8P LUT
        // GeMV's Hadamard signs, unused by the others.
        let aux = if let Some(words) = &self.aux_words {
            words
        } else if self.code_maps.is_empty() {
            &self.e8p_abs
        } else {
            &self.code_maps[copy % self.code_maps.len()]
        };
        let signs = self.signs.as_ref().filter(|_| self.fused_hadamard);
        let mut a = RawArgs::new(stream);
        a.buf(codes)
            .buf(&self.codebooks)
            .buf(&self.scales)
            .buf(&self.e8p_abs)
            .buf(xin)
            .buf_mut(target)
            .buf_mut(&mut self.ws)
            .i32(m)
            .i32(rows)
            .i32(cols)
            .i32(self.kb)
            .i32(tps)
            .f32(ss0)
            .f32(ss1)
            .f32(ss2)
            .f32(ss3);
        match signs {
            Some(s) => a.buf(s),
            None => a.buf(aux),
        };
        unsafe { a.launch(&self.main, cfg, self.programmatic == Programmatic::Chain) }?;
        if let Some((w, blas)) = &self.dense {
            return blas.hgemm_xwt(
                crate::cublas::GemmShape {
                    m: p.m,
                    n: p.n,
                    k: p.k,
                },
                xin,
                w,
                y,
            );
        }
        if p.uses_workspace() {
            let total = (p.m * p.n) as i32;
            let has_scale = p.config.per_channel_scale as i32;
            let cfg = LaunchConfig {
                grid_dim: ((total as u32).div_ceil(4 * 256), 1, 1), // 4 elements per thread
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut a = RawArgs::new(stream);
            a.buf_mut(&mut self.ws)
                .buf(&self.scales)
                .i32(has_scale)
                .buf_mut(&mut *y)
                .i32(rows)
                .i32(total);
            unsafe { a.launch(&self.finalize, cfg, self.programmatic != Programmatic::Off) }?;
        }
        Ok(())
    }
}
