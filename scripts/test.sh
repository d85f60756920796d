#!/usr/bin/env bash
# The README's test command: every CPU test of the workspace, then an NVRTC compile of every generated kernel
# (preset x op x level for sm_80, sm_89, sm_90), which needs no GPU. GPU tests are `#[ignore]`d here; run them on
# a machine with a GPU with `cargo test --workspace --release -- --ignored` (or .gpu/run-tests.sh, see README).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$VQLLM_ROOT"
vqllm_setup_nvrtc
cargo test --workspace --release
cargo run --release -q -p vqllm-cli -- codegen --check-all --arch sm_80,sm_89,sm_90
