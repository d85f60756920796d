#!/usr/bin/env bash
# Session 18 call f (H100): quip4 batch 16 with the E8P decode's right shifts as high multiplies on the FMA pipe
# (VQ_E8P_SHR_FMA, vqllm-exp) against the committed tree (vqllm), 3 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/f; mkdir -p $D
S=4096x11008,8192x22016
for i in 1 2 3; do
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/base-$i.log 2>&1
  $B/vqllm-exp bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/exp-$i.log 2>&1
done
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1.log 2>&1
for f in $D/*.log; do echo "== $(basename $f)"; grep -E "^quip4" $f | awk '{printf "  %s %s %s | ", $1, $4, $6} END {print ""}'; done
cd $OUT && tar czf f.tgz f
