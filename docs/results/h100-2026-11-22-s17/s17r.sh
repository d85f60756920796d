#!/usr/bin/env bash
# Session 17 review call (H100): the replica GeMV's two piece loops merged into one (SASS byte-identical locally) and
# gpu_linear's output checks in one helper. Replica configs at batch 1 (every_config), the graph / back-to-back tests,
# the E8P tests, memcheck + racecheck on the changed kernels; 315f7c6 vs the review tree, 2 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review; mkdir -p $D; T=$B/test-gpu_linear-bin
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) ; }
VQLLM_TEST_CONFIGS='gptvq2,aqlm-2x8,tile,vq<2,8,2>,vq<4,8,4>,vq<8,8,2>,e8p' VQLLM_TEST_BATCHES=1 run every $T --ignored --nocapture every_config
run linear $T --ignored --nocapture calls_captured_in_a_cuda_graph back_to_back e8p_lut_smaller large_layer
SAN="gptvq2,quip4,aqlm-2x8,e8p,tile,vq<2,8,2>,vq<4,8,4>,vq<8,8,2>"
VQLLM_TEST_CONFIGS="$SAN" run memcheck compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture sanitizer_subset
VQLLM_TEST_CONFIGS="$SAN" run racecheck compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture sanitizer_subset
S=4096x11008,8192x22016
for i in 1 2; do
  $B/vqllm-head bench gemv --preset gptvq2,quip4 --level auto --m 1 --shape $S > $D/head-$i.log 2>&1
  $B/vqllm bench gemv --preset gptvq2,quip4 --level auto --m 1 --shape $S --json $D/review-$i.json > $D/review-$i.log 2>&1
done
cat $D/rc.txt | tr '\n' ' '; echo
for f in every linear memcheck racecheck; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $D/$f.log | head -4; done
for f in $D/head-*.log $D/review-*.log; do printf "%-10s" $(basename $f .log); grep -oE "N=[0-9]+: FP16 cuBLAS [0-9.]+ us, [0-9]+ GB/s" $f | tr '\n' ' '; grep -E "^(gptvq2|quip4)" $f | awk '{printf " | %s %s us %s GB/s %s", $1, $4, $5, $6}'; echo; done
cd $OUT && tar czf review.tgz review
