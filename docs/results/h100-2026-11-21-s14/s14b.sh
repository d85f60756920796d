#!/usr/bin/env bash
# Session 14 call 2 (H100): the E8P abs table in 16 copies in the tensor-core kernel (vqllm) against the spread-sign
# binary without copies (-spread) and the head (3 alternating rounds, quip4 at batch 16), ncu of both new kernels,
# then the E8P GPU tests and the sanitizers on the copies binary.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
for v in "" -head -spread; do $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1; done
for i in 1 2 3; do for v in -head -spread ""; do
  $B/vqllm$v bench gemv --preset quip4 --level auto --m 16 --shape $S > $D/m16$v-$i.log 2>&1
done; done
for f in $D/m16*.log; do echo "$f $(grep -E '^quip4 ' $f | awk '{print $4, $5, $8}' | tr '\n' ' ')"; done
grep -h "FP16" $D/m16-1.log
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every env VQLLM_TEST_CONFIGS="e8p" timeout 400 $T --ignored --nocapture every_config
run memcheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck env VQLLM_TEST_CONFIGS="quip4,e8p" timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -6; done
OUT=$D bash .gpu/prof.sh q16 vq_mma --preset quip4 --level auto --m 16 --shape 8192x22016 > $D/prof-q16.txt 2>&1
for f in $D/prof-*.txt; do echo "== $f"; grep -E "ratio|inst_executed|Issued Warp|Compute \(SM\)|L1/TEX Cache|Duration|DRAM Throughput|wavefronts|Registers|conflicts|pipe_tensor" $f | awk '{print $1, $NF}' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | awk '$2!="0" && $2!="0.00"' | tr '\n' ';'; echo; done
cd $OUT && tar czf b.tgz b && rm -rf b
