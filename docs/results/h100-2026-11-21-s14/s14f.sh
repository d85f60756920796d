#!/usr/bin/env bash
# Session 14 call 6 (H100): quip4 at batch 16 on the final kernel, warps x row blocks per warp (the tile's 128 rows as
# 4 x 4, 8 x 2, 16 x 1; 64 rows as 4 x 2, 8 x 1; 256 rows as 8 x 4), 2 alternating rounds; then splits around 8 x 2.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/f; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
V=("4 4" "8 2" "16 1" "4 2" "8 1" "8 4")
$B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1
for i in 1 2; do for v in "${V[@]}"; do set -- $v
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S --warps $1 --rows-per-warp $2 > $D/w$1x$2-$i.log 2>&1
done; done
for v in "${V[@]}"; do set -- $v; for i in 1 2; do echo "w$1x$2-$i $(grep -E '^quip4 ' $D/w$1x$2-$i.log | awk '{print $4, $10, $11}' | tr '\n' ' ')"; done; done
for s in 2 4 6 8; do for sh in 4096x11008 8192x22016; do
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $sh --warps 8 --rows-per-warp 2 --split $s > $D/s$s-$sh.log 2>&1
  echo "8x2 split $s $sh $(grep -E '^quip4 ' $D/s$s-$sh.log | awk '{print $4, $10, $11}')"
done; done
grep -h FP16 $D/w4x4-1.log
cd $OUT && tar czf f.tgz f && rm -rf f
