//! One module per subcommand.

pub mod bench;
pub mod bench_attention;
pub mod codegen;
pub mod info;
pub mod plan;
pub mod quantize;
pub mod report;
