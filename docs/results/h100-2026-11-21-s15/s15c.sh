#!/usr/bin/env bash
# Session 15 call 3 (H100): quip4 at batch 16, head against RELOAD (r1: each row block's next-tile codes loaded into
# its own registers after its last slot), r2 (r1 + pair 0 in place on base 512, unshifted sign masks; ptxas picks 96
# registers) and r2b (r2 with __launch_bounds__(128, 4): ~121 registers), 2 alternating rounds; r2 at splits for 5
# blocks an SM; aqlm-1x16 at batch 16 (row blocks outer: RELOAD); then every_config at batch 16 and the sanitizers.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
START=$(date +%s)
b() { # name binary preset shape m args...
  local n=$1 v=$2 p=$3 s=$4 m=$5; shift 5
  [ $(( $(date +%s) - START )) -gt 330 ] && { echo "$n skipped (time)" >> $D/sum.txt; return; }
  timeout 60 $B/vqllm$v bench gemv --preset $p --level auto --m $m --shape $s "$@" > $D/$n.log 2>&1
  echo "$n $(grep -E "^$p " $D/$n.log | awk '{print $4, $5, $8}' | tr '\n' ' ') fp16 $(grep -o 'FP16 cuBLAS [0-9.]* us' $D/$n.log | head -1)" >> $D/sum.txt
}
for v in -head -r1 -r2 -r2b; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for v in -head -r1 -r2 -r2b; do
  b q16$v-$i $v quip4 4096x11008,8192x22016 16
done; done
b q16-r2-s4-large -r2 quip4 8192x22016 16 --split 4
b q16-r2-s7-small -r2 quip4 4096x11008 16 --split 7
b q16-r2-s8-small -r2 quip4 4096x11008 16 --split 8
for v in -head -r1; do b a16$v $v aqlm-1x16 4096x11008,8192x22016 16; done
echo "timing took $(( $(date +%s) - START )) s" >> $D/sum.txt
cat $D/sum.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_BATCHES=16 timeout 240 $T --ignored --nocapture every_config
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-1x16" timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm-1x16" timeout 240 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
grep -E "quip4|e8p" $D/every.log | awk '{print $NF}' | sort -g | tail -3
cd $OUT && tar czf c.tgz c && rm -rf c
