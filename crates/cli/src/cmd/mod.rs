//! One module per subcommand.

pub mod bench;
pub mod codegen;
pub mod plan;
