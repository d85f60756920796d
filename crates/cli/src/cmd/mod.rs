//! One module per subcommand.

pub mod codegen;
pub mod info;
pub mod plan;
pub mod quantize;
pub mod report;
