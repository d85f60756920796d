#!/usr/bin/env bash
# Session 15 review check (H100): the final tree (661d593) against the session's head (27f6d54) and the pre-review
# binary (d2429a1): quip4 at batch 16 and 1, 3 alternating rounds; every preset at auto at batch 16 (final and head);
# then every_config at batch 16 and 20, the other linear tests (back-to-back calls), memcheck and racecheck on the
# sanitizer subset of the E8P configs and aqlm-2x8.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head -prereview; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in -head -prereview ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/q16$v-$i.log 2>&1
done; $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/q1-$i.log 2>&1; done
for v in -head ""; do $B/vqllm$v bench gemv --preset all --level auto --m 16 --shape $S > $D/all16$v.log 2>&1; done
for f in $D/q*.log $D/all*.log; do echo "$(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)" $f | awk '{print "  ", $1, $4, $5, $8}'; grep -o 'FP16 cuBLAS [0-9.]* us' $f | tr '\n' ' '; echo; done > $D/sum.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_BATCHES=16,20 timeout 300 $T --ignored --nocapture every_config
run rest timeout 300 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-2x8" timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-2x8" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
cat $D/sum.txt
cd $OUT && tar czf review.tgz review && rm -rf review
