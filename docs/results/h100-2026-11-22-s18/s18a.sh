#!/usr/bin/env bash
# Session 18 call a (H100): batch-16 overrides around the auto plan for gptvq2 and quip4, and ncu of their mma kernels.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
sw() { local p=$1 name=$2; shift 2; $B/vqllm bench gemv --preset $p --level auto --m 16 --shape $S "$@" > $D/$p-$name.log 2>&1; }
sw gptvq2 auto
sw gptvq2 w8 --warps 8
sw gptvq2 w8s6 --warps 8 --split 6
sw gptvq2 w8s2 --warps 8 --split 2
sw gptvq2 w8r2 --warps 8 --rows-per-warp 2
sw gptvq2 r8 --rows-per-warp 8
sw gptvq2 w16r2 --warps 16 --rows-per-warp 2
sw gptvq2 s4 --split 4
sw gptvq2 s9 --split 9
sw gptvq2 xh0 --x-hoist false
sw quip4 auto
sw quip4 w8 --warps 8
sw quip4 r2 --rows-per-warp 2
sw quip4 r8 --rows-per-warp 8
sw quip4 s4 --split 4
sw quip4 s9 --split 9
sw quip4 xh1 --x-hoist true
sw quip4 w8r2 --warps 8 --rows-per-warp 2
sw gptvq2 auto2
sw quip4 auto2
for f in $D/*.log; do echo "== $(basename $f .log)"; grep -E "^(quip4|gptvq2)|error|Error" $f | awk '{printf "  %s %s %s %s | ", $1, $2, $4, $6} END {print ""}'; done
OUT=$D bash .gpu/prof.sh g2-auto vq_mma --preset gptvq2 --level auto --m 16 --shape 8192x22016 > $D/prof-g2-auto.txt 2>&1
OUT=$D bash .gpu/prof.sh g2-w8 vq_mma --preset gptvq2 --level auto --m 16 --shape 8192x22016 --warps 8 > $D/prof-g2-w8.txt 2>&1
OUT=$D bash .gpu/prof.sh q4-auto vq_mma --preset quip4 --level auto --m 16 --shape 8192x22016 > $D/prof-q4-auto.txt 2>&1
cat $D/prof-*.txt
cd $OUT && tar czf a.tgz a
