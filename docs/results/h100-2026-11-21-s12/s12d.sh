#!/usr/bin/env bash
# Session 12 call 4 (H100): the E8P LUT GeMV with the Hadamard transform inside the kernel (new, 16 warps) against call
# 2's binary (separate transform kernel) at 16 warps, 3 alternating rounds; E8P correctness and sanitizers; then every
# preset at the auto level, batch 1 and 16.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/d; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -b; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do
  $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/fused-$i.log 2>&1
  $B/vqllm-b bench gemv --preset quip4 --level auto --warps 16 --m 1 --shape $S > $D/sep-$i.log 2>&1
done
for f in $D/fused-*.log $D/sep-*.log; do echo "$f $(grep -E 'E8pLut' $f | awk '{print $4, $5}' | tr '\n' ' ')"; done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -6; done
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --json $D/m1.json > $D/m1.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/m16.json > $D/m16.log 2>&1
grep -hE "FP16|^(gptvq2|aqlm|quip)" $D/m1.log $D/m16.log
cd $OUT && tar czf d.tgz d && rm -rf d
