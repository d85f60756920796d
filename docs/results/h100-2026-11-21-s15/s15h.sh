#!/usr/bin/env bash
# Session 15 call 8 (H100): durations of the kernels of one quip4 batch-16 call (transform, mma, finalize) and of the
# gptvq2 batch-1 call, under ncu; and the batch-16 call with programmatic launches off.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/h; mkdir -p $D
NCU=$(ls /usr/local/cuda/bin/ncu 2>/dev/null || which ncu)
$NCU -k regex:vq_ -s 9 -c 9 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,launch__grid_size,launch__block_size \
  $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 8192x22016 --repeats 1 --calls 4 > $D/ncu-quip4-m16.txt 2>&1
grep -E "vq_|duration|grid_size|block_size|per_second" $D/ncu-quip4-m16.txt | head -60
$NCU -k regex:vq_ -s 6 -c 6 --metrics gpu__time_duration.sum,launch__grid_size \
  $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape 8192x22016 --repeats 1 --calls 4 > $D/ncu-gptvq2-m1.txt 2>&1
grep -E "vq_|duration|grid_size" $D/ncu-gptvq2-m1.txt | head -30
for p in off finalize chain; do $B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 4096x11008,8192x22016 --pdl $p 2>&1 | grep -E "^quip4 " | awk -v p=$p '{print p, $4, $5}'; done
cd $OUT && tar czf h.tgz h && rm -rf h
