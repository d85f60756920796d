#!/usr/bin/env bash
# Session 18 call e (H100): the final tree (gptvq2's batch-16 blocks at 8 warps; the mma kernel's split-K epilogue in
# 8-byte reductions). The whole GPU suite, memcheck + racecheck on the sanitizer subset (mma configs included); the
# session head (58591b1) and the final binary alternating at batch 16 (2 rounds) and batch 1 (1 round), graph timing,
# and gptvq2 at --warps 4 on the final binary.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/e; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for i in 1 2; do
  $B/vqllm-head bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-head-$i.log 2>&1
  $B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/m16-final-$i.json > $D/m16-final-$i.log 2>&1
done
$B/vqllm-head bench gemv --preset all --level auto --m 1 --shape $S > $D/m1-head.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --json $D/m1-final.json > $D/m1-final.log 2>&1
$B/vqllm bench gemv --preset gptvq2 --level auto --m 16 --shape $S --warps 4 > $D/m16-final-g2-w4.log 2>&1
$B/vqllm-head bench gemv --preset all --level auto --m 16 --shape $S --graph > $D/m16-graph-head.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --graph > $D/m16-graph-final.log 2>&1
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-1 env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8,e8p" timeout 450 $T --ignored --nocapture every_config
run every-2 env VQLLM_TEST_CONFIGS="aqlm3,aqlm-1x16" timeout 450 $T --ignored --nocapture every_config
run every-3 env VQLLM_TEST_CONFIGS="vq<4,6,3>,vq<16,8,1>,vq<2,8,2>,vq<8,10,1>,vq<4,8,1>:tile=64,vq<2,8,1>:tile,vq<8,8,1>:tile,vq<4,12,4>,vq<4,8,4>,vq<8,13,1>" timeout 450 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
run gpu timeout 300 $B/test-gpu-bin --include-ignored
run attn timeout 400 $B/test-gpu_attention-bin --include-ignored
wait
SAN="gptvq2,quip4,aqlm-2x8,aqlm3,tile,vq<2,8,2>,vq<8,8,2>"
run memcheck env VQLLM_TEST_CONFIGS="$SAN" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="$SAN" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt | tr '\n' ' '; echo
for f in $D/every-*.log $D/rest.log $D/gpu.log $D/attn.log $D/memcheck.log $D/racecheck.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -5; done
for f in $D/m1-*.log $D/m16-*.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)|FP16" $f | awk '{printf "  %s %s %s %s | ", $1, $2, $4, $6} END {print ""}'; done
cd $OUT && tar czf e.tgz e
