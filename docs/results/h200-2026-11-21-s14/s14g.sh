#!/usr/bin/env bash
# Session 14 call 7 (H200): quip4 at batch 1 and 16 with the final binary against the head (2 alternating rounds),
# and every_config for the E8P configs at batch 16 with the sanitizers' E8P subset under memcheck.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/h200; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for m in 16 1; do for v in -head ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m $m --shape $S > $D/m$m$v-$i.log 2>&1
done; done; done
for m in 16 1; do for v in -head ""; do for i in 1 2; do echo "m=$m$v-$i $(grep -E '^quip4 ' $D/m$m$v-$i.log | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done; done; done
grep -h "FP16" $D/m16-1.log $D/m1-1.log
VQLLM_TEST_CONFIGS="quip4,e8p" VQLLM_TEST_BATCHES=16 timeout 300 $T --ignored --nocapture every_config > $D/every.log 2>&1; echo "every rc=$?"
grep -hE "panicked|cases ran|test result" $D/every.log
cd $OUT && tar czf h200.tgz h200 && rm -rf h200
