#!/usr/bin/env bash
# Session 18 second review check (H100): the E8P LUT GeMV without its dead span cache (each block meets a unit once),
# the planner's shared PRMT-rows predicate, and gpu_linear's multi-call tests on one setup helper. every_config at
# batch 1 for the E8P and per-tile configs, the other linear tests, memcheck + racecheck on the E8P configs, and an
# A/B at batch 1 against the review head's binary, 3 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review2; mkdir -p $D; T=$B/test-gpu_linear-bin
S=4096x11008,8192x22016
for i in 1 2 3; do
  $B/vqllm-head bench gemv --preset quip4,gptvq2 --level auto --m 1 --shape $S > $D/m1-head-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4,gptvq2 --level auto --m 1 --shape $S > $D/m1-review-$i.log 2>&1
done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-1 env VQLLM_TEST_BATCHES=1 VQLLM_TEST_CONFIGS="quip4,e8p,gptvq2,tile" timeout 300 $T --ignored --nocapture every_config
run rest timeout 300 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
wait
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt | tr '\n' ' '; echo
for f in $D/every-*.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -5; done
grep -h "^ok  " $D/rest.log | head -20
for f in $D/m1-*.log; do echo "== $(basename $f)"; grep -E "^(quip4|gptvq2)|FP16" $f | awk '{printf "  %s %s %s %s %s | ", $1, $4, $5, $6, $3} END {print ""}'; done
cd $OUT && tar czf review2.tgz review2
