#!/usr/bin/env bash
# Session 16 review call (H100), the final tree: every GPU test except every_config (unchanged kernels; the
# runtime, linear, attention suites, the new graph and floor tests), memcheck on the graph test, the attention and
# GeMM benchmarks under --graph / --floor (smoke), and every preset at batch 1 and 16 with --floor.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/review; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) ; }
run gpu timeout 300 $B/test-gpu-bin --ignored --nocapture --test-threads=1
run linear timeout 400 $B/test-gpu_linear-bin --ignored --nocapture --skip every_config
run attention timeout 300 $B/test-gpu_attention-bin --ignored --nocapture
run memcheck-graph timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph
run bench-attn-graph $B/vqllm bench attention --preset cq2,cq4 --level auto --batch 1 --seq 1024 --heads 32 --kv-heads 32 --head-dim 128 --graph
run bench-gemm $B/vqllm bench gemm --preset aqlm-2x8,gptvq2 --level auto --shape 4096x11008 --floor --graph
S=4096x11008,8192x22016
run m1 $B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor
run m16 $B/vqllm bench gemv --preset all --level auto --m 16 --shape $S --floor
cat $D/rc.txt
for f in $D/gpu.log $D/linear.log $D/attention.log $D/memcheck-graph.log; do echo "== $(basename $f)"; grep -hE "panicked|cases ran|sanitizer subset|test result|ERROR SUMMARY" $f | head -8; done
for f in $D/bench-*.log $D/m1.log $D/m16.log; do echo "== $(basename $f)"; grep -vE "^\s*$" $f | grep -v "^preset"; done
cd $OUT && tar czf review.tgz review
