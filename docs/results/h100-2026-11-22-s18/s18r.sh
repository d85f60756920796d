#!/usr/bin/env bash
# Session 18 review check (H100): the review tree (86a82ad). every_config at batch 16 for the mma presets, the other
# linear tests, memcheck + racecheck on the batch-16 sanitizer cases of gptvq2 / quip4 / aqlm-2x8, and an A/B at
# batch 16 against call f's baseline binary (0ebda66's kernels), 2 alternating rounds.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review; mkdir -p $D; T=$B/test-gpu_linear-bin
S=4096x11008,8192x22016
for i in 1 2; do
  $B/vqllm-head bench gemv --preset gptvq2,quip4,aqlm-2x8 --level auto --m 16 --shape $S > $D/m16-head-$i.log 2>&1
  $B/vqllm bench gemv --preset gptvq2,quip4,aqlm-2x8 --level auto --m 16 --shape $S > $D/m16-review-$i.log 2>&1
done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-16 env VQLLM_TEST_BATCHES=16 VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8,tile" timeout 300 $T --ignored --nocapture every_config
run rest timeout 300 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
wait
run memcheck env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8" timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt | tr '\n' ' '; echo
for f in $D/every-*.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -5; done
for f in $D/m16-*.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)|FP16" $f | awk '{printf "  %s %s %s %s | ", $1, $2, $4, $6} END {print ""}'; done
cd $OUT && tar czf review.tgz review
