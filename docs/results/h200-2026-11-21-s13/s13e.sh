#!/usr/bin/env bash
# Session 13 call 5 (H200): every preset at auto, batch 1 and 16, on the final tree; quip4's E8P tests at batch 1.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/e; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --json $D/m1.json > $D/m1.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/m16.json > $D/m16.log 2>&1
cat $D/m1.log $D/m16.log | grep -vE "^\s*$"
VQLLM_TEST_CONFIGS="e8p" VQLLM_TEST_BATCHES=1,16 timeout 300 $T --ignored --nocapture every_config > $D/every.log 2>&1
grep -hE "panicked|cases ran|test result" $D/every.log
cd $OUT && tar czf e.tgz e && rm -rf e
