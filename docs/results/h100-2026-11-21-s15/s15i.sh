#!/usr/bin/env bash
# Session 15 call 9 (H100): the mma kernel's weight-only prologue (first codes, staged tables) before griddepcontrol.wait
# ("pw") against cac4bcb ("-s15a"): quip4 at batch 16 (3 alternating rounds) and batch 1, the other presets at batch 16;
# then the linear tests other than every_config (back-to-back calls in each launch mode), every_config at batch 16
# and 20, and racecheck on the sanitizer subset of quip4 and aqlm-2x8.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/i; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -s15a; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in -s15a ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/q16$v-$i.log 2>&1
done; done
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/q1.log 2>&1
for v in -s15a ""; do $B/vqllm$v bench gemv --preset aqlm-2x8,gptvq2,aqlm3,aqlm-1x16 --level auto --m 16 --shape $S > $D/o16$v.log 2>&1; done
for f in $D/q*.log $D/o*.log; do echo "$(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)" $f | awk '{print "  ", $1, $4, $5}'; grep -o 'FP16 cuBLAS [0-9.]* us' $f | tr '\n' ' '; echo; done | tee $D/sum.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run rest timeout 300 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run every env VQLLM_TEST_BATCHES=16,20 timeout 300 $T --ignored --nocapture every_config
run racecheck env VQLLM_TEST_CONFIGS="quip4,aqlm-2x8" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/rest.log $D/every.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY|^test " $f | head -8; done
cd $OUT && tar czf i.tgz i && rm -rf i
