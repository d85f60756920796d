#!/usr/bin/env bash
# Session 16 call b (H100): bench timing of a CUDA graph's replay (--graph) against the calls' own launches, every
# preset at auto at batch 1 and 16; --pdl off vs chain under --graph; the small 2-bit layer 4096x1376.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm-g bench gemv --preset quip4 --level auto --m 16 --shape 64x256 --graph > $D/smoke.log 2>&1; echo "smoke rc=$?" >> $D/smoke.log
for m in 1 16; do
  $B/vqllm-g bench gemv --preset all --level auto --m $m --shape $S --graph > $D/all$m-graph.log 2>&1
  $B/vqllm-g bench gemv --preset all --level auto --m $m --shape $S > $D/all$m-launch.log 2>&1
done
for p in off chain; do
  $B/vqllm-g bench gemv --preset aqlm-2x8,gptvq2,quip4 --level auto --m 1 --shape 4096x1376,$S --graph --pdl $p > $D/pdl-$p-graph.log 2>&1
done
$B/vqllm-g bench gemm --preset aqlm-2x8 --level auto --shape 4096x11008 --graph > $D/gemm-graph.log 2>&1
for f in $D/*.log; do echo "== $(basename $f)"; grep -vE "^\s*$" $f | grep -v "^preset" | tail -16; done
cd $OUT && tar czf b.tgz b
