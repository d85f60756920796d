#!/usr/bin/env bash
# Session 12 call 6 (H100): the E8P LUT GeMV's 4- and 2-group units (planned for sm_80 / sm_89 shared memory), and
# the E8P configs at batch 1 again with memcheck / racecheck on the final kernel.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/f; mkdir -p $D; T=$B/test-gpu_linear-bin
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run units timeout 200 $T --ignored --nocapture e8p_lut_smaller_units
run units-memcheck timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture e8p_lut_smaller_units
run units-racecheck timeout 300 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture e8p_lut_smaller_units
run every env VQLLM_TEST_CONFIGS="e8p" VQLLM_TEST_BATCHES=1 timeout 200 $T --ignored --nocapture every_config
wait
cat $D/rc.txt
for f in $D/*.log; do echo "== $f"; grep -hE "^ok  |panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -12; done
cd $OUT && tar czf f.tgz f && rm -rf f
