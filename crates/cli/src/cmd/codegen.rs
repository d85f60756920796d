//! `vqllm codegen`: print the generated source of one kernel.

use super::plan::KernelArgs;
use anyhow::Result;
use clap::Args;
use vqllm_codegen::instantiate;

#[derive(Args, Debug)]
pub struct CodegenArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print the generated CUDA translation unit.
    #[arg(long)]
    pub emit: bool,
}

pub fn run(a: CodegenArgs) -> Result<()> {
    let gpu = a.kernel.gpu()?;
    let plan = a.kernel.plan(&gpu)?;
    let c = plan.config;
    let ks = instantiate(
        &plan,
        c.hadamard
            .then(|| vqllm_codegen::layout::hadamard_block(plan.k)),
    );
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
