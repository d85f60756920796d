#!/usr/bin/env bash
# Session 16 call c (H100): the new tests (read floor, graph capture of plain kernels and of VqLinear calls), then the
# streaming floor (--floor) beside every preset at batch 1, with the calls' launches and with --graph.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
$B/test-gpu-bin --ignored --nocapture --test-threads=1 > $D/test-gpu.log 2>&1; echo "test-gpu rc=$?" >> $D/rc.txt
$B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph back_to_back > $D/test-graph.log 2>&1; echo "test-graph rc=$?" >> $D/rc.txt
compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu-bin --ignored --nocapture read_floor > $D/memcheck-floor.log 2>&1; echo "memcheck rc=$?" >> $D/rc.txt
S=4096x1376,4096x11008,8192x22016
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor > $D/floor-launch.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor --graph > $D/floor-graph.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape 4096x11008,8192x22016 --floor --graph > $D/floor16-graph.log 2>&1
cat $D/rc.txt
for f in $D/test-*.log $D/memcheck*.log; do echo "== $f"; grep -hE "panicked|^ok|test result|ERROR SUMMARY|^test " $f | head -30; done
for f in $D/floor*.log; do echo "== $(basename $f)"; grep -vE "^\s*$" $f | grep -v "^preset" ; done
cd $OUT && tar czf c.tgz c
