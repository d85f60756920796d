#!/usr/bin/env bash
# Runs on the GPU machine over a bundle made by ../shared/tools/gpu-bundle .gpu: GPU tests, optional
# compute-sanitizer, then benchmarks. Writes logs to $OUT (or ./gpu-out). Usage: scripts/gpu-check.sh [tests|sanitize|bench|all]
set -uo pipefail
out=${OUT:-gpu-out}; mkdir -p "$out"
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} VQLLM_CACHE_DIR=/tmp/vqllm-cache
b=.gpu/bin
what=${1:-all}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$out/device.txt"
if [[ $what == tests || $what == all ]]; then
  for t in $b/test-*; do
    echo "== $(basename $t)"; timeout 300 "$t" --include-ignored --test-threads=1 >"$out/$(basename $t | cut -d- -f1-2).log" 2>&1; echo "rc=$?"
    grep -E "test result|FAILED|panicked" "$out/$(basename $t | cut -d- -f1-2).log" | head -5
  done
fi
if [[ $what == sanitize || $what == all ]]; then
  t=$(ls $b/test-gpu_linear-*)
  for tool in memcheck racecheck; do
    timeout 400 compute-sanitizer --tool $tool --print-limit 5 "$t" --ignored --test-threads=1 sanitizer_subset >"$out/sanitizer-$tool.log" 2>&1
    echo "sanitizer $tool rc=$?"; tail -3 "$out/sanitizer-$tool.log"
  done
fi
if [[ $what == bench || $what == all ]]; then
  $b/vqllm bench gemv --preset ${PRESETS:-aqlm-2x8,quip4,gptvq2,aqlm3,aqlm-1x16} --level ${LEVELS:-all} --shape ${SHAPES:-4096x11008,8192x22016} \
    --repeats 9 --calls 20 --json "$out/bench-gemv.json" 2>&1 | tee "$out/bench-gemv.log"
fi
