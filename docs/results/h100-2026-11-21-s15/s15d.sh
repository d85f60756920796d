#!/usr/bin/env bash
# Session 15 call 4 (H100): quip4 batch 16, head against RELOAD (--mma-async false, the r1 kernel) and RELOAD with the
# activation tiles by cp.async (--mma-async true), 3 alternating rounds; then every_config at batch 16 (async variants
# among them), and memcheck / racecheck on the sanitizer subset of the E8P configs and aqlm-1x16.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/d; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
START=$(date +%s)
b() { # name binary preset shape m args...
  local n=$1 v=$2 p=$3 s=$4 m=$5; shift 5
  [ $(( $(date +%s) - START )) -gt 300 ] && { echo "$n skipped (time)" >> $D/sum.txt; return; }
  timeout 60 $B/vqllm$v bench gemv --preset $p --level auto --m $m --shape $s "$@" > $D/$n.log 2>&1
  echo "$n $(grep -E "^$p " $D/$n.log | awk '{print $4, $5, $8}' | tr '\n' ' ') fp16 $(grep -o 'FP16 cuBLAS [0-9.]* us' $D/$n.log | head -1)" >> $D/sum.txt
}
for a in false true; do $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 64x256 --mma-async $a > /dev/null 2>&1; done
for i in 1 2 3; do
  b q16-head-$i -head quip4 4096x11008,8192x22016 16
  b q16-reload-$i "" quip4 4096x11008,8192x22016 16 --mma-async false
  b q16-async-$i "" quip4 4096x11008,8192x22016 16 --mma-async true
done
b q1-$i "" quip4 4096x11008,8192x22016 1
echo "timing took $(( $(date +%s) - START )) s" >> $D/sum.txt
cat $D/sum.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_BATCHES=16 timeout 240 $T --ignored --nocapture every_config
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-1x16" timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-1x16" timeout 240 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
echo "async cases: $(grep -c 'async=Some(true)' $D/every.log)"
grep -E "quip4|e8p" $D/every.log | awk '{print $NF}' | sort -g | tail -2
cd $OUT && tar czf d.tgz d && rm -rf d
