#!/usr/bin/env bash
# Session 18 call c (H100): gptvq2 at 8 warps + the mma epilogue's paired reductions (red.global.add.v2.f32) against
# the head, every preset at batch 16; every_config at batch 16 and 20; split variants of gptvq2's small layer.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D; T=$B/test-gpu_linear-bin
S=4096x11008,8192x22016
for i in 1 2; do
  $B/vqllm-head bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-head-$i.log 2>&1
  $B/vqllm bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-new-$i.log 2>&1
done
for s in 4 8; do $B/vqllm bench gemv --preset gptvq2 --level auto --m 16 --shape 4096x11008 --split $s > $D/g16-small-s$s.log 2>&1; done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-16 env VQLLM_TEST_BATCHES=16 timeout 400 $T --ignored --nocapture every_config
run every-20 env VQLLM_TEST_BATCHES=20 timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
wait
cat $D/rc.txt | tr '\n' ' '; echo
for f in $D/every-*.log $D/rest.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|test result" $f | head -5; done
for f in $D/m16-*.log $D/g16-*.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)|fp16" $f | awk '{printf "  %s %s %s %s | ", $1, $2, $4, $6} END {print ""}'; done
cd $OUT && tar czf c.tgz c
