#!/usr/bin/env bash
# Session 12 call 1 (H100): the E8P LUT GeMV (quip4 batch 1) against the mma kernel (the previous auto plan), then its
# correctness on every E8P config at batch 1 and the sanitizers on the E8P configs.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1
for i in 1 2; do
  $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/lut-$i.log 2>&1
  $B/vqllm bench gemv --preset quip4 --level auto --kernel mma --m 1 --shape $S > $D/mma-$i.log 2>&1
done
$B/vqllm bench gemv --preset quip4 --level auto --warps 16 --m 1 --shape $S > $D/lut-w16.log 2>&1
grep -hE "FP16|quip4" $D/lut-1.log | head -4
for f in $D/lut-*.log $D/mma-*.log; do echo "$f $(grep -E '^ *quip4|quip4 ' $f | awk '{print $4, $7}' | tr '\n' ' ')"; done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-m1 env VQLLM_TEST_CONFIGS="e8p" VQLLM_TEST_BATCHES=1 timeout 300 $T --ignored --nocapture every_config
run memcheck env VQLLM_TEST_CONFIGS="e8p" timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="e8p" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every-m1.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
grep -E "LUT" $D/every-m1.log | head -20
cd $OUT && tar czf a.tgz a && rm -rf a
