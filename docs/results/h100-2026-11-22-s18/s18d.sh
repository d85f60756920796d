#!/usr/bin/env bash
# Session 18 call d (H100): the mma epilogue's 16-byte reductions (lanes t, t^1 swap halves; red.global.add.v4.f32)
# against the v2 build and the head at batch 16; split sweeps with cheaper reductions; every_config at 16 and 20;
# memcheck + racecheck on the mma configs (sanitizer_subset now has a 96-row batch-16 case).
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/d; mkdir -p $D; T=$B/test-gpu_linear-bin
S=4096x11008,8192x22016
for i in 1 2; do
  $B/vqllm-head bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-head-$i.log 2>&1
  $B/vqllm-v2 bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-v2-$i.log 2>&1
  $B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --json $D/m16-v4-$i.json > $D/m16-v4-$i.log 2>&1
done
for s in 3 4 8; do $B/vqllm bench gemv --preset gptvq2 --level auto --m 16 --shape $S --split $s > $D/sw-g2-s$s.log 2>&1; done
for s in 4 6 11; do $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape $S --split $s > $D/sw-q4-s$s.log 2>&1; done
for s in 2 4 6; do $B/vqllm bench gemv --preset aqlm-2x8 --level auto --m 16 --shape $S --split $s > $D/sw-a28-s$s.log 2>&1; done
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-16 env VQLLM_TEST_BATCHES=16 timeout 400 $T --ignored --nocapture every_config
run every-20 env VQLLM_TEST_BATCHES=20 timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --nocapture --skip every_config --skip sanitizer_subset
wait
SAN="gptvq2,quip4,aqlm-2x8,aqlm3,tile,vq<2,8,2>"
run memcheck env VQLLM_TEST_CONFIGS="$SAN" timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="$SAN" timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt | tr '\n' ' '; echo
for f in $D/every-*.log $D/rest.log $D/memcheck.log $D/racecheck.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -5; done
for f in $D/m16-*.log $D/sw-*.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)" $f | awk '{printf "  %s %s %s | ", $1, $4, $6} END {print ""}'; done
cd $OUT && tar czf d.tgz d
