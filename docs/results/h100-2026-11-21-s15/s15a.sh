#!/usr/bin/env bash
# Session 15 call 1 (H100): the mma kernel's cp.async k loop (--mma-async) at batch 16 against the register-pipelined
# one (and the head binary), split sweep per shape.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
START=$(date +%s)
b() { # name preset shape args...
  local n=$1 p=$2 s=$3; shift 3
  [ $(( $(date +%s) - START )) -gt 540 ] && { echo "$n skipped (time)" >> $D/sum.txt; return; }
  timeout 60 $B/vqllm bench gemv --preset $p --level auto --m 16 --shape $s "$@" > $D/$n.log 2>&1
  echo "$n $(grep -E "^$p " $D/$n.log | awk '{print $4, $5}' | tr '\n' ' ') fp16 $(grep -o 'FP16 cuBLAS [0-9.]* us' $D/$n.log | head -1)" >> $D/sum.txt
}
$B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1
for i in 1 2; do
  for s in 4096x11008 8192x22016; do
    [ $i = 1 ] && b quip4-$s-head-$i quip4 $s
    b quip4-$s-base-$i quip4 $s --mma-async false
    b quip4-$s-async-$i quip4 $s --mma-async true
  done
done
for sp in 5 6 7 8; do b quip4-4096x11008-async-s$sp quip4 4096x11008 --mma-async true --split $sp; done
for sp in 3 4 5; do b quip4-8192x22016-async-s$sp quip4 8192x22016 --mma-async true --split $sp; done
for p in aqlm3 aqlm-2x8 aqlm-1x16; do for s in 4096x11008 8192x22016; do
  b $p-$s-base $p $s --mma-async false
  b $p-$s-async $p $s --mma-async true
done; done
echo "timing took $(( $(date +%s) - START )) s" >> $D/sum.txt
cat $D/sum.txt
cd $OUT && tar czf a.tgz a && rm -rf a
