#!/usr/bin/env bash
# Session 13 call 6 (H100): an L2 prefetch of each block's first codes at kernel start (E8P LUT: quip4, LUT-large:
# aqlm3), --code-prefetch 0 / 32 / 64 / 128 / 256 KiB, 2 alternating rounds; then the two kernels' tests.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/f; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset quip4,aqlm3 --level auto --m 1 --shape 64x256 > /dev/null 2>&1
for i in 1 2; do for pf in 0 32 64 128 256; do
  $B/vqllm bench gemv --preset quip4,aqlm3 --level auto --m 1 --shape $S --code-prefetch $pf > $D/pf$pf-$i.log 2>&1
done; done
for f in $D/pf*.log; do echo "$f $(grep -E '^(quip4|aqlm3) ' $f | awk '{print $1, $4, $5}' | tr '\n' ' ')"; done
grep -h "FP16" $D/pf0-1.log
cd $OUT && tar czf f.tgz f && rm -rf f
