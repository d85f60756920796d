#!/usr/bin/env bash
# Session 12 call 3 (H100): E8P LUT GeMV at 16 vs 32 warps (3 alternating rounds), ncu of both on the large layer,
# then the whole GPU suite (every_config in three parts, the other tests, sanitizers), then every preset at auto.
export CUDA_HOME=/usr/local/cuda VQLLM_CACHE_DIR=/tmp/vqc PATH=/usr/local/cuda/bin:$PATH
B=.gpu/bin; D=$OUT/c; mkdir -p $D; T=$B/test-gpu_linear-bin
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > $D/device.txt
S=4096x11008,8192x22016
$B/vqllm bench gemv --preset quip4 --level auto --m 1 --shape 64x256 > /dev/null 2>&1
for i in 1 2 3; do for w in 32 16; do
  $B/vqllm bench gemv --preset quip4 --level auto --warps $w --m 1 --shape $S > $D/w$w-$i.log 2>&1
done; done
$B/vqllm bench gemv --preset "vq<8,16,2>:e8p:scale" --level auto --m 1 --shape $S > $D/norht.log 2>&1
for f in $D/w*.log $D/norht.log; do echo "$f $(grep -E 'E8pLut' $f | awk '{print $4, $5}' | tr '\n' ' ')"; done
for w in 16; do OUT=$D bash .gpu/prof.sh e8p-w$w vq_e8p_lut --preset quip4 --level auto --warps $w --m 1 --shape 8192x22016 > $D/prof-w$w.txt 2>&1; done
OUT=$D bash .gpu/prof.sh had vq_hadamard --preset quip4 --level auto --m 1 --shape 8192x22016 > $D/prof-had.txt 2>&1
head -40 $D/prof-w16.txt; grep -E "Duration" $D/prof-had.txt | head -2
run() { local name=$1; shift; ( "$@" > $D/$name.log 2>&1; echo "$name rc=$?" >> $D/rc.txt ) & }
run every-1 env VQLLM_TEST_CONFIGS="gptvq2,quip4,aqlm-2x8,e8p" timeout 400 $T --ignored --nocapture every_config
run every-2 env VQLLM_TEST_CONFIGS="aqlm3,aqlm-1x16" timeout 400 $T --ignored --nocapture every_config
run every-3 env VQLLM_TEST_CONFIGS="vq<4,6,3>,vq<16,8,1>,vq<2,8,2>,vq<8,10,1>,vq<4,8,1>:tile=64,vq<2,8,1>:tile,vq<8,8,1>:tile,vq<4,12,4>,vq<4,8,4>,vq<8,13,1>" timeout 400 $T --ignored --nocapture every_config
run rest timeout 400 $T --ignored --skip every_config --skip sanitizer_subset
run gpu timeout 300 $B/test-gpu-bin --include-ignored
run attn timeout 400 $B/test-gpu_attention-bin --include-ignored
run memcheck timeout 400 compute-sanitizer --tool memcheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
run racecheck timeout 400 compute-sanitizer --tool racecheck --print-limit 5 $T --ignored --nocapture --test-threads=1 sanitizer_subset
wait
cat $D/rc.txt
for f in $D/every-*.log $D/rest.log $D/gpu.log $D/attn.log $D/memcheck.log $D/racecheck.log; do echo "== $f"; grep -hE "panicked|cases ran|test result|ERROR SUMMARY|RACECHECK SUMMARY|relative error" $f | head -6; done
cd $OUT && tar czf c.tgz c && rm -rf c
