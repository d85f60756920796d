#!/usr/bin/env bash
# Session 12 call 2 (H100): the Hadamard kernel without divisions at up to 1024 threads (new) against call 1's binary
# (vqllm-a); quip4 without its Hadamard (the same E8P codes) for the transform's share; E8P correctness at every batch
# (the r = 1 decode fix) and the sanitizers on the E8P configs.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D; T=$B/test-gpu_linear-bin
S=4096x11008,8192x22016
for v in "" -a; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for v in "" -a; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/lut$v-$i.log 2>&1
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; done
$B/vqllm bench gemv --preset "vq<8,16,2>:e8p:scale" --level auto --m 1 --shape $S > $D/norht.log 2>&1
$B/vqllm bench gemv --preset quip4 --level auto --warps 16 --m 1 --shape $S > $D/lut-w16.log 2>&1
$B/vqllm bench gemv --preset quip4 --level auto --warps 8 --m 1 --shape $S > $D/lut-w8.log 2>&1
for f in $D/*.log; do echo "$f $(grep -E 'E8pLut|Mma' $f | awk '{print $4, $5}' | tr '\n' ' ')"; done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -6; done
cd $OUT && tar czf b.tgz b && rm -rf b
