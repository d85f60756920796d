#!/usr/bin/env bash
# Session 15 call 10 (H100): the finalize triggering right after its wait, and the replica GeMV's weight-only prologue
# before its wait, on top of the mma kernel's (call 9), against cac4bcb ("-s15a"): every preset at batch 1 and 16,
# 2 alternating rounds; then the GPU suite: every_config in three parts, the other linear tests (back-to-back calls in
# each launch mode), memcheck and racecheck on the sanitizer subset.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/j; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -s15a; do $B/vqllm$v bench gemv --preset all --level auto --m 1 --shape 64x256 > /dev/null 2>&1; $B/vqllm$v bench gemv --preset all --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2; do for m in 1 16; do for v in -s15a ""; do
  $B/vqllm$v bench gemv --preset all --level auto --m $m --shape $S --json $D/m$m$v-$i.json > $D/m$m$v-$i.log 2>&1
done; done; done
for f in $D/m*.log; do echo "$(basename $f) $(grep -E '^(quip4|aqlm|gptvq2)' $f | awk '{printf "%s %s | ", $1, $4}') $(grep -o 'FP16 cuBLAS [0-9.]* us' $f | tr '\n' ' ')"; done | tee $D/sum.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-1 env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8,e8p" timeout 330 $T --ignored --nocapture every_config
run every-2 env VQLLM_TEST_CONFIGS="aqlm3,aqlm-1x16" timeout 330 $T --ignored --nocapture every_config
run every-3 env VQLLM_TEST_CONFIGS="vq<4,6,3>,vq<16,8,1>,vq<2,8,2>,vq<8,10,1>,vq<4,8,1>:tile=64,vq<2,8,1>:tile,vq<8,8,1>:tile,vq<4,12,4>,vq<4,8,4>,vq<8,13,1>" timeout 330 $T --ignored --nocapture every_config
run rest timeout 330 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="gptvq2,aqlm-2x8,quip4,vq<8,8,2>" timeout 330 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="gptvq2,aqlm-2x8,quip4,vq<8,8,2>" timeout 330 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every-*.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
cd $OUT && tar czf j.tgz j && rm -rf j
