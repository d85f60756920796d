#!/usr/bin/env bash
# Session 14 review (H100): the review tree (vq_decode_vec for learned codebooks only, the dequant kernel calling vq_decode_e8p_vec;
# SASS unchanged): quip4 at batch 1-16 against the head f253c7e (2 alternating rounds), the linear tests
# other than every_config, every_config for the E8P configs, and the sanitizers on them.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for m in 16 8 2 1; do for v in -head -prereview ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m $m --shape $S > $D/m$m$v-$i.log 2>&1
done; done; done
for m in 16 8 2 1; do for v in -head -prereview ""; do for i in 1 2; do echo "m=$m$v-$i $(grep -E '^quip4 ' $D/m$m$v-$i.log | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done; done; done
grep -h "FP16" $D/m16-1.log $D/m1-1.log
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-2x8,gptvq2" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
cd $OUT && tar czf review.tgz review && rm -rf review
