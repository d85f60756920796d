#!/usr/bin/env bash
# Session 18 call b (H100): gptvq2 batch 16 at 8 warps (new auto) vs head; an experiment with __launch_bounds__(256, 3)
# (VQLLM_EXP_MMA_MINB, not committed) and the splits that fill 3 blocks per SM; ncu of gptvq2 batch 1 small layer.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/b; mkdir -p $D
S=4096x11008,8192x22016
sw() { local bin=$1 name=$2; shift 2; $B/$bin bench gemv --preset gptvq2 --level auto --m 16 "$@" > $D/$name.log 2>&1; }
for i in 1 2; do
  sw vqllm-head head-$i --shape $S
  sw vqllm new-$i --shape $S
done
for s in 6 8 11 16; do VQLLM_EXP_MMA_MINB=3 sw vqllm mb3-small-s$s --shape 4096x11008 --split $s; done
for s in 8 16; do sw vqllm mb2-small-s$s --shape 4096x11008 --split $s; done
for s in 3 4 6; do VQLLM_EXP_MMA_MINB=3 sw vqllm mb3-large-s$s --shape 8192x22016 --split $s; done
$B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape $S > $D/m1.log 2>&1
for f in $D/*.log; do echo "== $(basename $f .log)"; grep -E "^(gptvq2|fp16)|error|Error" $f | awk '{printf "  %s %s %s %s | ", $1, $2, $4, $6} END {print ""}'; done
NCU=/usr/local/cuda/bin/ncu
$NCU -k regex:vq_ -s 4 -c 2 --section SpeedOfLight --section LaunchStats --section Occupancy --metrics gpu__time_duration.sum,dram__bytes_read.sum,smsp__inst_executed.sum $B/vqllm bench gemv --preset gptvq2 --level auto --m 1 --shape 4096x11008 --repeats 1 --calls 2 > $D/ncu-g1-small.txt 2>&1
VQLLM_EXP_MMA_MINB=3 $NCU -k regex:vq_mma -s 2 -c 1 --section SpeedOfLight --section Occupancy --section SchedulerStats --metrics gpu__time_duration.sum,smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum $B/vqllm bench gemv --preset gptvq2 --level auto --m 16 --shape 4096x11008 --split 8 --repeats 1 --calls 1 > $D/ncu-g16-mb3.txt 2>&1
grep -E "vq_|Duration|Registers|Theoretical Occ|Achieved Occ|Issued|Throughput|Grid Size|Block Size" $D/ncu-*.txt
cd $OUT && tar czf b.tgz b
