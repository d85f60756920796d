#!/usr/bin/env bash
# Session 13 call 2 (H100): radix-16 Walsh-Hadamard passes (fused in the E8P LUT GeMV and the separate kernel) and
# decoded groups by default (3 of 8). The head binary against the new one (default, decode 0, decode 2) in alternating
# rounds at batch 1 and 16; ncu of the new kernel; the E8P GPU tests and sanitizers.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do
  $B/vqllm-head bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1-head-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1-new-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S --decode-groups 0 > $D/m1-d0-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S --decode-groups 2 > $D/m1-d2-$i.log 2>&1
  $B/vqllm-head bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16-head-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16-new-$i.log 2>&1
done
for f in $D/m1-*.log $D/m16-*.log; do echo "$f $(grep -E '^quip4 ' $f | awk '{print $4, $5}' | tr '\n' ' ')"; done
grep -h "FP16" $D/m1-head-1.log
OUT=$D bash .gpu/prof.sh new vq_e8p_lut --preset quip4 --level auto --m 1 --shape 8192x22016 > $D/prof-new.txt 2>&1
OUT=$D bash .gpu/prof.sh had vq_hadamard --preset quip4 --level auto --m 16 --shape 8192x22016 > $D/prof-had.txt 2>&1
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" timeout 400 $T --ignored --nocapture every_config
run units timeout 300 $T --ignored --nocapture e8p_lut_smaller_units
run rest timeout 400 $T --ignored --skip every_config --skip sanitizer_subset --skip e8p_lut_smaller_units
run memcheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/units.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY|FAIL" $f | head -8; done
grep -h "^ok" $D/units.log
cd $OUT && tar czf b.tgz b && rm -rf b
