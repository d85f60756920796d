#!/usr/bin/env bash
# Session 13 call 7 (H100): ncu of the quip4 batch-16 mma kernel and of the gptvq2 batch-1 replica GeMV (8192x22016).
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/g; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
OUT=$D bash .gpu/prof.sh q16 vq_mma --preset quip4 --level auto --m 16 --shape 8192x22016 > $D/prof-q16.txt 2>&1
OUT=$D bash .gpu/prof.sh g1 vq_replica --preset gptvq2 --level auto --m 1 --shape 8192x22016 > $D/prof-g1.txt 2>&1
OUT=$D bash .gpu/prof.sh a16 vq_mma --preset aqlm-2x8 --level auto --m 16 --shape 8192x22016 > $D/prof-a16.txt 2>&1
for f in $D/prof-*.txt; do echo "== $f"; grep -E "ratio|inst_executed|Issued Warp|Compute \(SM\)|L1/TEX Cache|Duration|DRAM Throughput|wavefronts|Registers|conflicts|pipe_tensor" $f | awk '{print $1, $NF}' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | awk '$2!="0" && $2!="0.00"' | tr '\n' ';'; echo; done
cd $OUT && tar czf g.tgz g && rm -rf g
