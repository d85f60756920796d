#!/usr/bin/env bash
# Session 14 (H100): E8P on the tensor-core kernel with biased decode (no HADD2/HFMA2, bias sum by one mma a step),
# stage accumulators, and the spread-sign code layout. New binary against the head (3 alternating rounds, quip4 at
# batch 16; one round at 2, 4, 8 and 1), then the E8P GPU tests, the other linear tests and the sanitizers.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in -head ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; done
for m in 1 2 4 8; do for v in -head ""; do $B/vqllm$v bench gemv --preset quip4 --level auto --m $m --shape $S > $D/m$m$v.log 2>&1; done; done
for f in $D/m16*.log; do echo "$f $(grep -E '^quip4 ' $f | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done
for m in 1 2 4 8; do for v in -head ""; do echo "m=$m$v $(grep -E '^quip4 ' $D/m$m$v.log | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done; done
grep -h "FP16" $D/m16-1.log
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
grep -h "quip4.*m=16\|e8p.*m=16" $D/every.log | head -8
cd $OUT && tar czf a.tgz a && rm -rf a
