//! `vqllm codegen`: print the generated source of one kernel, or compile every preset x op x level with NVRTC
//! (no GPU needed) and report registers, shared memory and spills.

use super::plan::{AttentionShape, KernelArgs};
use anyhow::{bail, Result};
use clap::Args;
use vqllm_codegen::attention::{instantiate_attention, AttentionPlan};
use vqllm_codegen::{
    instantiate, layout::hadamard_block, CodegenError, GpuSpec, Level, Op, Overrides, Plan,
};
use vqllm_cuda::{compile_cubin, CompileOptions};
use vqllm_vq::VqConfig;

#[derive(Args, Debug)]
pub struct CodegenArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print the generated CUDA translation unit.
    #[arg(long)]
    pub emit: bool,
    /// Compile every weight preset x op x level with NVRTC for the `--arch` list and print the resource report.
    #[arg(long)]
    pub check_all: bool,
    #[command(flatten)]
    pub attention: AttentionShape,
}

pub fn run(a: CodegenArgs) -> Result<()> {
    if a.check_all {
        return check_all(&a.kernel.arch);
    }
    let gpu = a.kernel.gpu()?;
    if a.kernel.op == "attention" {
        let level = Level::parse(&a.kernel.level)?;
        let plan = a.attention.plan(&a.kernel.config()?, level, &gpu)?;
        let src = instantiate_attention(&plan);
        let entries = format!(
            "{} {} {}{} (FP16 baseline: {})",
            src.quantize,
            src.attention,
            src.combine,
            src.values
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            src.fp16
        );
        report(a.emit, &src.source, &plan, &entries);
        return Ok(());
    }
    let plan = a.kernel.plan(&gpu)?;
    let c = plan.config;
    let ks = instantiate(&plan, c.hadamard.then(|| hadamard_block(plan.k)));
    let entries = format!(
        "{} {}{}",
        ks.entry,
        ks.finalize,
        ks.hadamard
            .as_ref()
            .map(|h| format!(" {h}"))
            .unwrap_or_default()
    );
    report(a.emit, &ks.source, &plan, &entries);
    Ok(())
}

/// `--emit`: the translation unit; otherwise the plan and the kernels' entry points.
fn report(emit: bool, source: &str, plan: &dyn std::fmt::Display, entries: &str) {
    if emit {
        println!("{source}");
    } else {
        println!("{plan}");
        println!("entry points: {entries}");
    }
}

fn check_all(archs: &str) -> Result<()> {
    let (mut ok, mut failed, mut skipped) = (0, 0, 0);
    println!(
        "{:<8} {:<10} {:<7} {:<5} {:<9} {:>5} {:>7} {:>6} {:>6}",
        "arch", "preset", "op", "level", "kernel", "regs", "smem", "stack", "spill"
    );
    for arch in archs.split(',').map(str::trim) {
        let Some(gpu) = GpuSpec::for_arch(arch) else {
            bail!("unknown arch `{arch}` (sm_80, sm_86, sm_89, sm_90)")
        };
        for preset in vqllm_vq::WEIGHT_PRESETS {
            let c = VqConfig::preset(preset)?;
            for (op, m) in [
                (Op::Gemv, 1usize),
                (Op::Gemv, 4),
                (Op::Gemv, 16),
                (Op::Gemm, 2048),
            ] {
                // Auto too: some plans exist only there (the 8-warp batch-16 mma kernel, L1 codebook tiers).
                for level in Level::WEIGHT_LEVELS.into_iter().chain([Level::Auto]) {
                    let plan =
                        match Plan::new(&c, op, m, 4096, 11008, level, &gpu, &Overrides::default())
                        {
                            Ok(p) => p,
                            Err(CodegenError::Unsupported(_) | CodegenError::DoesNotFit(_)) => {
                                skipped += 1;
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        };
                    let ks = instantiate(&plan, c.hadamard.then(|| hadamard_block(plan.k)));
                    let kind = format!("{:?}", plan.kernel).to_lowercase();
                    let op = format!("{op:?}").to_lowercase();
                    let row = Row {
                        arch,
                        preset,
                        op: &op,
                        level,
                        kernel: &kind,
                        smem: plan.smem_bytes,
                    };
                    compile_and_report(&row, &ks.entry, &ks.source, &mut ok, &mut failed);
                }
            }
        }
    }
    // KV-cache attention: every level for cq2 / cq4 at head dims 64 and 128 (GQA 32:8), all its kernels in one unit.
    for arch in archs.split(',').map(str::trim) {
        let Some(gpu) = GpuSpec::for_arch(arch) else {
            bail!("unknown arch `{arch}`")
        };
        for preset in ["cq2", "cq4"] {
            let c = VqConfig::preset(preset)?;
            for head_dim in [64, 128] {
                for level in Level::LADDER {
                    let plan = match AttentionPlan::new(&c, 16, 4096, 32, 8, head_dim, level, &gpu)
                    {
                        Ok(p) => p,
                        Err(CodegenError::Unsupported(_) | CodegenError::DoesNotFit(_)) => {
                            skipped += 1;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let src = instantiate_attention(&plan);
                    let op = format!("attn{head_dim}");
                    let row = Row {
                        arch,
                        preset,
                        op: &op,
                        level,
                        kernel: "attention",
                        smem: plan.split.launch.smem_bytes,
                    };
                    compile_and_report(&row, &src.attention, &src.source, &mut ok, &mut failed);
                }
            }
        }
    }
    println!("codegen check: {ok} compiled, {failed} failed, {skipped} combinations rejected by the planner");
    if failed > 0 {
        bail!("{failed} kernels failed to compile");
    }
    Ok(())
}

/// One line of the `--check-all` table.
struct Row<'a> {
    arch: &'a str,
    preset: &'a str,
    op: &'a str,
    level: Level,
    kernel: &'a str,
    smem: u32,
}

/// Compiles one translation unit with NVRTC and prints the resources of its entry point `entry`.
fn compile_and_report(
    row: &Row<'_>,
    entry: &str,
    source: &str,
    ok: &mut usize,
    failed: &mut usize,
) {
    let Row {
        arch,
        preset,
        op,
        level,
        kernel,
        smem,
    } = row;
    match compile_cubin(entry, source, &CompileOptions::new(*arch)) {
        Ok(m) => {
            let r = m.kernel(entry).cloned().unwrap_or_default();
            let spill = r.spill_stores + r.spill_loads;
            println!(
                "{arch:<8} {preset:<10} {op:<7} {:<5} {kernel:<9} {:>5} {smem:>7} {:>6} {spill:>6}",
                level.to_string(),
                r.registers,
                r.stack_frame
            );
            if r.stack_frame > 0 || spill > 0 {
                println!("  warning: {entry} uses local memory");
            }
            *ok += 1;
        }
        Err(e) => {
            println!("{arch:<8} {preset:<10} {op} {level}: COMPILE ERROR\n{e}");
            *failed += 1;
        }
    }
}
