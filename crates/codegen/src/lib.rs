//! vqllm-codegen: GPU description, plans and adaptive heuristics, the kernels' code layout, and instantiation
//! of the CUDA templates in `kernels/`. No GPU needed.

pub mod attention;
pub mod e8p_lut;
pub mod e8p_mma;
pub mod error;
pub mod gpu_spec;
pub mod instantiate;
pub mod layout;
pub mod plan;
pub mod sorted;

pub use error::{CodegenError, Result};
pub use gpu_spec::GpuSpec;
pub use instantiate::{instantiate, KernelSource};
pub use layout::{
    lane_stage_codes, pack_for_plan, pack_tables, pack_weight, PackedWeight, TileGeometry,
};
pub use plan::{CompiledUsage, Decision, KernelKind, Level, Op, Overrides, Plan};
