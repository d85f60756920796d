#!/usr/bin/env bash
# Session 16 call a (H100): (1) the cost of quip4's activation transform: quip4 against the same E8P config without
# the transform (vq<8,16,2>:e8p:scale, same kernels otherwise) at batch 1 and 16; (2) FP16 cuBLAS on layers of the
# bytes of a 2-bit / 4-bit small layer (4096x1376 = 11.3 MB, 4096x2752 = 22.5 MB) as a streaming floor proxy;
# (3) every preset at auto, batch 1, as this session's baseline.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/a; mkdir -p $D
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset quip4 --level auto --m 16 --shape 64x256 > /dev/null 2>&1
for i in 1 2; do for m in 1 16; do
  $B/vqllm bench gemv --preset "quip4,vq<8,16,2>:e8p:scale" --level auto --m $m --shape $S > $D/rht-m$m-$i.log 2>&1
done; done
$B/vqllm bench gemv --preset aqlm-2x8 --level auto --m 1 --shape 4096x1376,4096x2752,4096x4096,4096x11008 > $D/floor.log 2>&1
$B/vqllm bench gemv --preset all --level auto --m 1 --shape $S > $D/all1.log 2>&1
for f in $D/*.log; do echo "== $(basename $f)"; grep -vE "^\s*$" $f | tail -14; done
cd $OUT && tar czf a.tgz a
