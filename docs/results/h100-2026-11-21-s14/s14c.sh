#!/usr/bin/env bash
# Session 14 call 3 (H100): quip4 at batch 16, the tensor-core kernel variants: head, spread signs + biased decode
# (-spread), + 16 abs-table copies staged by 16-byte stores (-copies2), + __launch_bounds__(128, 5) (-copies2-lb5).
# 3 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
V="-head -spread -copies2 -copies2-lb5"
for v in $V; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in $V; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; done
for v in $V; do for i in 1 2 3; do echo "$v-$i $(grep -E '^quip4 ' $D/m16$v-$i.log | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done; done
grep -h "FP16" $D/m16-head-1.log
cd $OUT && tar czf c.tgz c && rm -rf c
