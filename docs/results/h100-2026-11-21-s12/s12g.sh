#!/usr/bin/env bash
# Session 12 call 7 (H100), review of the session's change: shared lane-layout loads and row-group loop (LUT-large,
# E8P LUT), shared Walsh-Hadamard stages (hadamard kernel, E8P LUT). The review binary against the pre-review one
# (vqllm-head) in alternating rounds, then the GPU tests and sanitizers of every touched kernel.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/g; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head; do $B/vqllm$v bench gemv --preset quip4,aqlm3 --level auto --m 1 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in "" -head; do
  $B/vqllm$v bench gemv --preset quip4,aqlm3 --level auto --m 1 --shape $S > $D/m1$v-$i.log 2>&1
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; done
for f in $D/m1*.log $D/m16*.log; do echo "$f $(grep -E '^(quip4|aqlm3) ' $f | awk '{print $1, $4, $5}' | tr '\n' ' ')"; done
grep -h "FP16" $D/m1-1.log
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p,aqlm3,vq<4,12,4>,vq<4,8,4>" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --skip every_config --skip sanitizer_subset
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm3,vq<4,12,4>,vq<4,8,4>" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p,aqlm3,vq<4,12,4>,vq<4,8,4>" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run units-memcheck timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture e8p_lut_smaller_units
wait
cat $D/rc.txt
for f in $D/every.log $D/rest.log $D/memcheck.log $D/racecheck.log $D/units-memcheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -6; done
cd $OUT && tar czf g.tgz g && rm -rf g
