#!/usr/bin/env bash
# Session 18 call g (H100): quip4 batch 16 with the E8P decode's left shift of step 3 as a funnel-shift rotate (SHF) instead of IMAD.SHL
# (VQ_E8P_SHL_ALU, vqllm-exp) against the committed tree (vqllm), 3 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/g; mkdir -p $D
S=4096x11008,8192x22016
for i in 1 2 3; do
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/base-$i.log 2>&1
  $B/vqllm-exp bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/exp-$i.log 2>&1
done
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1.log 2>&1
for f in $D/*.log; do echo "== $(basename $f)"; grep -E "^quip4" $f | awk '{printf "  %s %s %s | ", $1, $4, $6} END {print ""}'; done
cd $OUT && tar czf g.tgz g
