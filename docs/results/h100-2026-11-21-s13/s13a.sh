#!/usr/bin/env bash
# Session 13 call 1 (H100): E8P LUT GeMV with decoded groups. Sweep --decode-groups at batch 1 (quip4), the head
# binary alongside, then ncu of two settings, then the E8P GPU tests and sanitizers.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for d in 0 3; do $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape 64x256 --decode-groups $d > /dev/null 2>&1; done
for i in 1 2; do
  $B/vqllm-head bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/head-$i.log 2>&1
  for d in 0 1 2 3 4 5 6 8; do
    $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S --decode-groups $d > $D/d$d-$i.log 2>&1
  done
done
for f in $D/head-*.log $D/d*.log; do echo "$f $(grep -E '^quip4 ' $f | awk '{print $4, $5}' | tr '\n' ' ')"; done
grep -h "FP16" $D/head-1.log
OUT=$D bash .gpu/prof.sh d0 vq_e8p_lut --preset quip4 --level auto --m 1 --shape 8192x22016 --decode-groups 0 > $D/prof-d0.txt 2>&1
OUT=$D bash .gpu/prof.sh d3 vq_e8p_lut --preset quip4 --level auto --m 1 --shape 8192x22016 --decode-groups 3 > $D/prof-d3.txt 2>&1
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" VQLLM_TEST_BATCHES=1 timeout 400 $T --ignored --nocapture every_config
run units timeout 300 $T --ignored --nocapture e8p_lut_smaller_units
run memcheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/units.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error|FAIL" $f | head -8; done
grep -h "^ok" $D/units.log
cd $OUT && tar czf a.tgz a && rm -rf a
