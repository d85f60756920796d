#!/usr/bin/env bash
# Session 15 call 5 (H100): the RELOAD kernel (r1) at batch 16: warps x row blocks a warp x split, large layer (and the
# small one for the default), 2 rounds of the default against the head.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/e; mkdir -p $D
START=$(date +%s)
b() { # name binary preset shape m args...
  local n=$1 v=$2 p=$3 s=$4 m=$5; shift 5
  [ $(( $(date +%s) - START )) -gt 420 ] && { echo "$n skipped (time)" >> $D/sum.txt; return; }
  timeout 60 $B/vqllm$v bench gemv --preset $p --level auto --m $m --shape $s "$@" > $D/$n.log 2>&1
  echo "$n $(grep -E "^$p " $D/$n.log | awk '{print $4, $5, $8}' | tr '\n' ' ') fp16 $(grep -o 'FP16 cuBLAS [0-9.]* us' $D/$n.log | head -1) $(grep -E '^ *(split|mma tile) ' $D/$n.log | head -0)" >> $D/sum.txt
}
$B/vqllm-r1 bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1
L=8192x22016
for i in 1 2; do b head-$i -head quip4 4096x11008,$L 16; b r1-$i -r1 quip4 4096x11008,$L 16; done
for s in 2 4 6; do b s$s -r1 quip4 $L 16 --split $s; done
b w8x2 -r1 quip4 $L 16 --warps 8 --rows-per-warp 2
b w8x4 -r1 quip4 $L 16 --warps 8 --rows-per-warp 4
b w4x8 -r1 quip4 $L 16 --warps 4 --rows-per-warp 8
b w4x2 -r1 quip4 $L 16 --warps 4 --rows-per-warp 2
b w2x4 -r1 quip4 $L 16 --warps 2 --rows-per-warp 4
b w2x8 -r1 quip4 $L 16 --warps 2 --rows-per-warp 8
b w4x4-xh -r1 quip4 $L 16 --x-hoist true
echo "timing took $(( $(date +%s) - START )) s" >> $D/sum.txt
cat $D/sum.txt
for f in $D/w*.log $D/s*.log; do echo "$f: $(grep -E 'grid|mma tile' $f | head -2 | tr -s ' ' | tr '\n' ' ')"; done | cut -c1-200
cd $OUT && tar czf e.tgz e && rm -rf e
