#!/usr/bin/env bash
# Session 16 review-of-the-change call (H100), tree a854353: the graph and back-to-back tests, memcheck and racecheck
# on the read-floor kernel, memcheck on the graph test; every preset at auto at batch 1 and 16, the session head
# (fc35c16) and the final binary alternating (2 rounds at batch 1), the final one with --floor and --json.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/final; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) ; }
run linear $B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph back_to_back
run memcheck-floor compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu-bin --ignored --nocapture read_floor
run racecheck-floor compute-sanitizer --tool racecheck --print-limit 5 $B/test-gpu-bin --ignored --nocapture read_floor
run memcheck-graph compute-sanitizer --tool memcheck --print-limit 5 $B/test-gpu_linear-bin --ignored --nocapture calls_captured_in_a_cuda_graph
S=4096x11008,8192x22016
for i in 1 2; do
  run m1-head-$i $B/vqllm-head bench gemv --preset all --level auto --m 1 --shape $S
  run m1-final-$i $B/vqllm bench gemv --preset all --level auto --m 1 --shape $S --floor --json $D/m1-final-$i.json
done
run m16-head $B/vqllm-head bench gemv --preset all --level auto --m 16 --shape $S
run m16-final $B/vqllm bench gemv --preset all --level auto --m 16 --shape $S
cat $D/rc.txt
for f in $D/linear.log $D/memcheck*.log $D/racecheck*.log; do echo "== $(basename $f)"; grep -hE "panicked|test result|ERROR SUMMARY|RACECHECK SUMMARY" $f | head -4; done
for f in $D/m*.log; do echo "== $(basename $f)"; grep -E "^(quip4|aqlm|gptvq2)|FP16" $f | awk '{print "  ", $1, $2, $4, $5, $6}'; done
python3 -c "import json;r=json.load(open('$D/m1-final-1.json'));print(len(r),'json rows;',[(x['preset'],x['level'],round(x['share_of_fp16_gbps'],3)) for x in r if x['preset']=='fp16-cublas'])"
cd $OUT && tar czf final.tgz final
