#!/usr/bin/env bash
# Session 17, call b (H100): the E8P LUT GeMV's Kronecker-split Hadamard transform, its loads before the code prefetch,
# the build's abs words from the shared copies. Correctness (the E8P tests,
# every_config for the E8P configs at batch 1, memcheck/racecheck on the E8P subset), then quip4 head (56820e6) vs new,
# alternating, at batch 1 (launches and graph) and 16, and a decode-groups / warps sweep of the new kernel.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) ; }
run e8p-units $B/test-gpu_linear-bin --ignored --nocapture e8p_lut_smaller_units
VQLLM_TEST_CONFIGS='e8p' VQLLM_TEST_BATCHES=1 run every-e8p $B/test-gpu_linear-bin --ignored --nocapture every_config
run large $B/test-gpu_linear-bin --ignored --nocapture large_layer calls_captured_in_a_cuda_graph back_to_back
VQLLM_TEST_CONFIGS='e8p' run memcheck compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture sanitizer_subset
VQLLM_TEST_CONFIGS='e8p' run racecheck compute-sanitizer --tool racecheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture sanitizer_subset
S=4096x1376,4096x11008,8192x22016
for i in 1 2 3; do
  run m1-head-$i $B/vqllm-head bench gemv --preset quip4 --level auto --m 1 --shape $S
  run m1-new-$i $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S
done
run g1-head $B/vqllm-head bench gemv --preset quip4 --level auto --m 1 --shape $S --graph
run g1-new $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S --graph
run m16-head $B/vqllm-head bench gemv --preset quip4 --level auto --m 16 --shape $S
run m16-new $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S
run nor $B/vqllm bench gemv --preset 'quip4,vq<8,16,2>:e8p:scale' --level auto --m 1 --shape $S
run dec2 $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S --decode-groups 2
cat $D/rc.txt
for f in $D/e8p-units.log $D/every-e8p.log $D/large.log $D/memcheck.log $D/racecheck.log; do echo "== $(basename $f)"; grep -hE "panicked|test result|ERROR SUMMARY|RACECHECK SUMMARY|cases ran" $f | head -4; done
for f in $D/m*.log $D/g*.log $D/dec*.log $D/nor.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)|FP16" $f | awk '{print "  ", $1, $2, $4, $5, $6, $7}'; done
cd $OUT && tar czf b.tgz b
