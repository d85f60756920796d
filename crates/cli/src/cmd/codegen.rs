//! `vqllm codegen`: print the generated source of one kernel, or compile every preset x op x level with NVRTC
//! (no GPU needed) and report registers, shared memory and spills.

use super::plan::KernelArgs;
use anyhow::{bail, Result};
use clap::Args;
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
}

pub fn run(a: CodegenArgs) -> Result<()> {
    if a.check_all {
        return check_all(&a.kernel.arch);
    }
    let gpu = a.kernel.gpu()?;
    let plan = a.kernel.plan(&gpu)?;
    let c = plan.config;
    let ks = instantiate(&plan, c.hadamard.then(|| hadamard_block(plan.k)));
    if a.emit {
        println!("{}", ks.source);
    } else {
        println!("{plan}");
        println!(
            "entry points: {} {}{}",
            ks.entry,
            ks.finalize,
            ks.hadamard.map(|h| format!(" {h}")).unwrap_or_default()
        );
    }
    Ok(())
}

fn check_all(archs: &str) -> Result<()> {
    let (mut ok, mut failed, mut skipped) = (0, 0, 0);
    println!(
        "{:<8} {:<10} {:<5} {:<5} {:<8} {:>5} {:>7} {:>6} {:>6}",
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
                for level in Level::LADDER {
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
                    match compile_cubin(&ks.entry, &ks.source, &CompileOptions::new(arch)) {
                        Ok(m) => {
                            let r = m.kernel(&ks.entry).cloned().unwrap_or_default();
                            let spill = r.spill_stores + r.spill_loads;
                            println!(
                                "{arch:<8} {preset:<10} {:<5} {:<5} {:<8} {:>5} {:>7} {:>6} {:>6}",
                                format!("{op:?}").to_lowercase(),
                                level.to_string(),
                                format!("{:?}", plan.kernel).to_lowercase(),
                                r.registers,
                                plan.smem_bytes,
                                r.stack_frame,
                                spill
                            );
                            if r.stack_frame > 0 || spill > 0 {
                                println!("  warning: {} uses local memory", ks.entry);
                            }
                            ok += 1;
                        }
                        Err(e) => {
                            println!("{arch:<8} {preset:<10} {op:?} {level}: COMPILE ERROR\n{e}");
                            failed += 1;
                        }
                    }
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
