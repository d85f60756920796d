//! One module per subcommand.

pub mod codegen;
pub mod plan;
