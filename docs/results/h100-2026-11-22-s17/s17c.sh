#!/usr/bin/env bash
# Session 17, call c (H100): where quip4's batch-1 prologue time goes. The E8P LUT GeMV built with experiment
# switches (timing only, wrong results): E8PL_SKIP_T (no transform), E8PL_SKIP_W0 (no warp-0 tail), E8PL_NO_BAR (no
# barrier inside the transform), E8PL_SKIP_BUILD (no table build); and the same E8P config without the transform.
export CUDA_HOME=/usr/local/cuda PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D
S=4096x11008,8192x22016
for i in 1 2; do
  for v in none E8PL_SKIP_T E8PL_SKIP_W0 E8PL_NO_BAR E8PL_SKIP_BUILD; do
    defs=""; [ $v != none ] && defs="-D$v"
    VQLLM_CACHE_DIR=/tmp/vqc-$v VQLLM_EXP_DEFINES="$defs" $B/vqllm-exp bench gemv --preset 'quip4,vq<8,16,2>:e8p:scale' --level auto --m 1 --shape $S > $D/$v-$i.log 2>&1
  done
done
for f in $D/*.log; do printf "%-24s" $(basename $f .log); grep -E "^(quip4|vq<)" $f | awk '{printf " %s", $4}'; echo; done
cd $OUT && tar czf c.tgz c
