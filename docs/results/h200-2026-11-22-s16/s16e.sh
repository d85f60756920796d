#!/usr/bin/env bash
# Session 16 call e (H200): the streaming floor (--floor) beside every preset at batch 1 and 16, with the calls'
# launches and with --graph; the read-floor and graph tests.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/h200; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
$B/test-gpu-bin --ignored --nocapture read_floor graph_capture > $D/test-gpu.log 2>&1; echo "test-gpu rc=$?" >> $D/rc.txt
$B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph > $D/test-graph.log 2>&1; echo "test-graph rc=$?" >> $D/rc.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor > $D/floor-launch.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor --graph > $D/floor-graph.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --graph > $D/m16-graph.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 16 --shape $S > $D/m16-launch.log 2>&1
cat $D/rc.txt
for f in $D/test-*.log; do echo "== $f"; grep -hE "panicked|test result" $f | head; done
for f in $D/floor*.log $D/m16*.log; do echo "== $(basename $f)"; grep -vE "^\s*$" $f | grep -v "^preset" ; done
cd $OUT && tar czf h200.tgz h200
