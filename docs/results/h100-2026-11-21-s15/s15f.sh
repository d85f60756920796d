#!/usr/bin/env bash
# Session 15 call 6 (H100): the final tree (RELOAD + sign masks in place, "d1") against r1 (RELOAD only) and the head,
# quip4 at batch 16 and 1, 3 alternating rounds; every preset at auto (batch 1 and 16); then the whole GPU suite.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/f; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -r1 -head; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in -head -r1 ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; $B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape $S > $D/m1-$i.log 2>&1; done
for f in $D/m1*.log; do echo "$f $(grep -E '^quip4 ' $f | awk "{print \$4, \$5, \$8}" | tr '\n' ' ') $(grep -o 'FP16 cuBLAS [0-9.]* us' $f | tr '\n' ' ')"; done
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --json $D/all-m1.json > $D/all-m1.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/all-m16.json > $D/all-m16.log 2>&1
cat $D/all-m1.log $D/all-m16.log | grep -E "^(quip4|aqlm|gptvq2) |FP16"
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-1 env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8,e8p" timeout 380 $T --ignored --nocapture every_config
run every-2 env VQLLM_TEST_CONFIGS="aqlm3,aqlm-1x16" timeout 380 $T --ignored --nocapture every_config
run every-3 env VQLLM_TEST_CONFIGS="vq<4,6,3>,vq<16,8,1>,vq<2,8,2>,vq<8,10,1>,vq<4,8,1>:tile=64,vq<2,8,1>:tile,vq<8,8,1>:tile,vq<4,12,4>,vq<4,8,4>,vq<8,13,1>" timeout 380 $T --ignored --nocapture every_config
run rest timeout 380 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run gpu timeout 300 $B/test-gpu-bin --include-ignored
run attn timeout 380 $B/test-gpu_attention-bin --include-ignored
run memcheck timeout 380 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck timeout 380 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every-*.log $D/rest.log $D/gpu.log $D/attn.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -6; done
cd $OUT && tar czf f.tgz f && rm -rf f
