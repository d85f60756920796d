//! `vqllm`: quantize models with vector quantization, plan and generate fused VQ kernels, and benchmark them.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vqllm",
    version,
    about = "Fused vector-quantized LLM kernels: quantize, plan, generate, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the plan (every heuristic decision and its reason) for a VQ kernel.
    Plan(cmd::plan::PlanArgs),
    /// Print generated CUDA source, or compile every preset x op x level with NVRTC.
    Codegen(cmd::codegen::CodegenArgs),
    /// Time generated VQ kernels against FP16 cuBLAS on the GPU.
    Bench(cmd::bench::BenchArgs),
    /// Quantize a GGUF / safetensors model's linear weights with VQ; report errors vs INT4; write .vqst.
    Quantize(cmd::quantize::QuantizeArgs),
    /// Describe a GGUF, safetensors or .vqst model file.
    Info(cmd::info::InfoArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(a) => cmd::plan::run(a),
        Command::Codegen(a) => cmd::codegen::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Info(a) => cmd::info::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
