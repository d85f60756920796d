#!/usr/bin/env bash
# Session 15 call 11 (H200): the final tree (d2429a1) against cac4bcb (-s15a), quip4 at batch 16 and 1 (2 alternating rounds), and
# every_config for the E8P configs at batch 16.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/h200b; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -s15a; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for v in -s15a ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1-$i.log 2>&1; done
for f in $D/m1*.log; do echo "$(basename $f) $(grep -E '^quip4 ' $f | awk "{print \$4, \$5, \$8}" | tr '\n' ' ') $(grep -o 'FP16 cuBLAS [0-9.]* us' $f | tr '\n' ' ')"; done | tee $D/quip4-ab.txt
env VQLLM_TEST_CONFIGS="quip4,e8p" VQLLM_TEST_BATCHES=16 timeout 200 $T --ignored --nocapture every_config > $D/every.log 2>&1; echo "every rc=$?"
grep -hE "panicked|cases ran|test result" $D/every.log | head -4
cd $OUT && tar czf h200b.tgz h200b && rm -rf h200b
