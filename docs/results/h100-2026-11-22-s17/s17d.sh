#!/usr/bin/env bash
# Session 17, call d (H100): the replica GeMV (gptvq2) with codes in registers and two set halves in the 256-byte
# rows (one barrier a piece). VQLLM_EXP_REP3=1: launch bound of 3 blocks (80 registers) instead of 4 (64, spills).
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/d; mkdir -p $D
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) ; }
export VQLLM_EXP_REP3=1
VQLLM_TEST_CONFIGS='tile' VQLLM_TEST_BATCHES=1 run every-tile $B/test-gpu_linear-bin --ignored --nocapture every_config
run b2b $B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph back_to_back
VQLLM_TEST_CONFIGS='tile' run memcheck compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture sanitizer_subset
VQLLM_TEST_CONFIGS='tile' run racecheck compute-sanitizer --tool racecheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture sanitizer_subset
S=4096x1376,4096x11008,8192x22016
for i in 1 2 3; do
  run head-$i $B/vqllm-head bench gemv --preset gptvq2 --level auto --m 1 --shape $S
  VQLLM_EXP_REP3=1 run new80-$i $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape $S
done
env -u VQLLM_EXP_REP3 VQLLM_CACHE_DIR=/tmp/vqc64 $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape $S > $D/new64.log 2>&1
for r in 2 1; do VQLLM_EXP_REP3=1 run rpw$r $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape $S --rows-per-warp $r; done
run g-head $B/vqllm-head bench gemv --preset gptvq2 --level auto --m 1 --shape $S --graph
run g-new80 $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape $S --graph
cat $D/rc.txt | tr '\n' ' '; echo
for f in every-tile b2b memcheck racecheck; do echo "== $f"; grep -hE "panicked|test result|ERROR SUMMARY|RACECHECK SUMMARY|cases ran" $D/$f.log | head -4; done
for f in $D/head-* $D/new80-* $D/new64.log $D/rpw* $D/g-*; do printf "%-12s" $(basename $f .log); grep -E "^(gptvq2)|FP16" $f | grep -E "^gptvq2" | awk '{printf " %s %s", $2, $4}'; grep -oE "FP16 cuBLAS [0-9.]+" $f | awk '{printf " | %s", $3}'; echo; done
cd $OUT && tar czf d.tgz d
