//! `vqllm plan`: shows what the heuristics choose for a kernel, and why.

use anyhow::{Context, Result};
use clap::Args;
use vqllm_codegen::attention::CodeLayout;
use vqllm_codegen::{GpuSpec, KernelKind, Level, Op, Overrides, Plan};
use vqllm_vq::VqConfig;

/// Arguments shared by every command that plans a weight kernel.
#[derive(Args, Clone, Debug)]
pub struct KernelArgs {
    /// Preset name (quip4, aqlm3, gptvq2, aqlm-2x8, aqlm-1x16) or `vq<v,b,r>[:tile=RxC][:scale]`.
    #[arg(long, default_value = "aqlm-2x8")]
    pub preset: String,
    /// gemv, gemm or attention (decode attention over a VQ KV cache: presets cq2, cq4, vq<v,b,1>:kv).
    #[arg(long, default_value = "gemv")]
    pub op: String,
    /// Batch rows of the activations.
    #[arg(long, default_value_t = 1)]
    pub m: usize,
    /// Input features (reduction size).
    #[arg(long, default_value_t = 4096)]
    pub k: usize,
    /// Output features.
    #[arg(long, default_value_t = 4096)]
    pub n: usize,
    /// gc, sc, o1, o2, o3, o4, lut or auto.
    #[arg(long, default_value = "auto")]
    pub level: String,
    /// GPU to plan for when no device is used: sm_80, sm_86, sm_89, sm_90.
    #[arg(long, default_value = "sm_90")]
    pub arch: String,
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Planner overrides of the weight kernels, shared by `plan`, `codegen` and `bench`.
#[derive(Args, Clone, Debug, Default)]
pub struct OverrideArgs {
    /// Override: entries in the register tier.
    #[arg(long)]
    pub n_reg: Option<u32>,
    /// Override: entries in the shared-memory tier.
    #[arg(long)]
    pub n_shared: Option<u32>,
    /// Override: reduction-axis split.
    #[arg(long)]
    pub split: Option<u32>,
    /// Override: warps per block.
    #[arg(long)]
    pub warps: Option<u32>,
    /// Override (LUT and replica GeMV: 8-row blocks per warp, per chunk / code piece; mma: WN; sorted GeMV: 16-byte
    /// loads per lane in flight): 1, 2, 4 or 8.
    #[arg(long)]
    pub rows_per_warp: Option<u32>,
    /// Override: kernel (dequant, lut, lut-large, replica, mma, e8p-lut).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Override (mma kernel): copies of each staged 16-byte codebook entry (1, 2, 4, 8); for per-tile codebooks
    /// staged per k tile at batch <= 16, 64 / v (128-byte rows), or 1 to read them through L1.
    #[arg(long)]
    pub cb_copies: Option<u32>,
    /// Override (mma kernel): load activation fragments once per vector slot for all row blocks (true / false).
    #[arg(long)]
    pub x_hoist: Option<bool>,
    /// Override (LUT-large kernel, sm_90+): stage the code chunks with TMA copies (true) or per-lane loads (false).
    #[arg(long)]
    pub tma: Option<bool>,
    /// Override (mma kernel, batch <= 16): load the next k tile's codes and activations during this tile's compute.
    #[arg(long)]
    pub pipe: Option<bool>,
    /// Override (LUT GeMV): chunks of codes in flight per warp, 2 to 8.
    #[arg(long)]
    pub in_flight: Option<u32>,
    /// Override (E8P LUT GeMV): groups of each unit decoded by bit operations instead of read from the tables.
    #[arg(long)]
    pub decode_groups: Option<u32>,
}

impl OverrideArgs {
    pub fn to_overrides(&self) -> Result<Overrides> {
        let kernel = match self.kernel.as_deref() {
            None => None,
            Some("dequant") => Some(KernelKind::Dequant),
            Some("lut") => Some(KernelKind::Lut),
            Some("lut-large") | Some("lut_large") => Some(KernelKind::LutLarge),
            Some("replica") => Some(KernelKind::Replica),
            Some("mma") => Some(KernelKind::Mma),
            Some("e8p-lut") | Some("e8p_lut") => Some(KernelKind::E8pLut),
            Some(k) => {
                anyhow::bail!(
                    "unknown --kernel `{k}` (dequant, lut, lut-large, replica, mma, e8p-lut)"
                )
            }
        };
        Ok(Overrides {
            n_reg: self.n_reg,
            n_shared: self.n_shared,
            split: self.split,
            warps: self.warps,
            rows_per_warp: self.rows_per_warp,
            kernel,
            cb_copies: self.cb_copies,
            x_hoist: self.x_hoist,
            code_tma: self.tma,
            pipe: self.pipe,
            in_flight: self.in_flight,
            decode_groups: self.decode_groups,
            base_registers: None,
        })
    }
}

impl KernelArgs {
    pub fn config(&self) -> Result<VqConfig> {
        self.preset
            .parse::<VqConfig>()
            .with_context(|| format!("bad --preset `{}`", self.preset))
    }

    pub fn op(&self) -> Result<Op> {
        match self.op.as_str() {
            "gemv" => Ok(Op::Gemv),
            "gemm" => Ok(Op::Gemm),
            o => anyhow::bail!("unknown --op `{o}` (gemv, gemm, attention)"),
        }
    }

    pub fn overrides(&self) -> Result<Overrides> {
        self.overrides.to_overrides()
    }

    pub fn gpu(&self) -> Result<GpuSpec> {
        GpuSpec::for_arch(&self.arch).with_context(|| {
            format!(
                "unknown --arch `{}` (sm_80, sm_86, sm_89, sm_90)",
                self.arch
            )
        })
    }

    pub fn plan(&self, gpu: &GpuSpec) -> Result<Plan> {
        let level = Level::parse(&self.level)?;
        Ok(Plan::new(
            &self.config()?,
            self.op()?,
            self.m,
            self.k,
            self.n,
            level,
            gpu,
            &self.overrides()?,
        )?)
    }
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub attention: AttentionShape,
}

/// The decode-attention shape (`--op attention` / `bench attention`; presets cq2, cq4, vq<v,b,1>:kv).
#[derive(Args, Clone, Debug)]
pub struct AttentionShape {
    /// Attention: sequences.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Attention: tokens per sequence (the longest).
    #[arg(long, default_value_t = 4096)]
    pub seq: usize,
    /// Attention: query heads.
    #[arg(long, default_value_t = 32)]
    pub heads: usize,
    /// Attention: KV heads (GQA when fewer than --heads).
    #[arg(long, default_value_t = 32)]
    pub kv_heads: usize,
    /// Attention: head dimension (64 or 128).
    #[arg(long, default_value_t = 128)]
    pub head_dim: usize,
    /// Attention: override the token split (blocks per sequence and q-head group) of the token-split levels.
    #[arg(long)]
    pub token_splits: Option<u32>,
    /// Attention: override the LUT level's L2 prefetch (true / false).
    #[arg(long)]
    pub l2_prefetch: Option<bool>,
    /// Attention: override the byte order of the codes in the cache (logical, lut-rotated); the LUT level reads
    /// either, the other levels only logical.
    #[arg(long, value_parser = ["logical", "lut-rotated"])]
    pub code_layout: Option<String>,
}

impl AttentionShape {
    /// The attention plan for this shape, with the `--token-splits`, `--l2-prefetch` and `--code-layout` overrides.
    pub fn plan(
        &self,
        config: &VqConfig,
        level: Level,
        gpu: &GpuSpec,
    ) -> std::result::Result<vqllm_codegen::attention::AttentionPlan, vqllm_codegen::CodegenError>
    {
        let plan = vqllm_codegen::attention::AttentionPlan::new(
            config,
            self.batch,
            self.seq,
            self.heads,
            self.kv_heads,
            self.head_dim,
            level,
            gpu,
        )?;
        let mut plan = match self.token_splits {
            Some(s) => plan.with_token_splits(s, gpu)?,
            None => plan,
        };
        if let Some(on) = self.l2_prefetch {
            plan = plan.with_prefetch(on);
        }
        if let Some(layout) = &self.code_layout {
            plan = plan.with_code_layout(match layout.as_str() {
                "lut-rotated" => CodeLayout::LutRotated,
                _ => CodeLayout::Logical,
            })?;
        }
        Ok(plan)
    }
}

pub fn run(a: PlanArgs) -> Result<()> {
    let gpu = a.kernel.gpu()?;
    if a.kernel.op == "attention" {
        let level = Level::parse(&a.kernel.level)?;
        let plan = a.attention.plan(&a.kernel.config()?, level, &gpu)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            println!("device: {} ({})", gpu.name, gpu.arch());
            println!("{plan}");
        }
        return Ok(());
    }
    let plan = a.kernel.plan(&gpu)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        println!("device: {} ({})", gpu.name, gpu.arch());
        println!("{plan}");
    }
    Ok(())
}
