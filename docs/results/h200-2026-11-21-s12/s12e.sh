#!/usr/bin/env bash
# Session 12 call 5 (H200): the final tree, E8P correctness at batch 1, then every preset at auto, batch 1 and 16.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/h200; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
VQLLM_TEST_CONFIGS="e8p" VQLLM_TEST_BATCHES=1 timeout 200 $T --ignored --nocapture every_config > $D/every-e8p-m1.log 2>&1
grep -hE "panicked|cases ran|test result" $D/every-e8p-m1.log
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --json $D/m1.json > $D/m1.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/m16.json > $D/m16.log 2>&1
grep -hE "FP16|^(gptvq2|aqlm|quip)" $D/m1.log $D/m16.log
cd $OUT && tar czf h200.tgz h200 && rm -rf h200
