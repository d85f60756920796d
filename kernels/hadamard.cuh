// hadamard.cuh — randomized Hadamard transform of the activations for QuIP#-style (quip4) weights:
//     x'[m, blk] = H_BLOCK · (signs[blk] ⊙ x[m, blk]) / sqrt(BLOCK)    for every block of BLOCK columns,
// with H the Sylvester (natural order) Walsh-Hadamard matrix. One thread block per (row, column block); the
// butterflies run in fp32 in shared memory, one thread per butterfly of a stage up to 1024 (the launch in
// crates/cuda/src/ops/linear.rs). BLOCK is a compile-time power of two (<= 8192).
#pragma once
#include "vq_common.cuh"

// Stages 0 .. LOG-1 of the in-place fp32 Walsh-Hadamard butterflies over buf[0, LEN) (LEN a multiple of 2^LOG: each
// aligned 2^LOG block is transformed independently), by the block's threads. Stage l pairs (lo, lo + 2^l), lo = i
// with a zero inserted at bit l: shifts and masks, no division. Each stage ends with a barrier.
template <int LOG, int LEN>
__device__ __forceinline__ void vq_fwht_stages(float* buf) {
#pragma unroll 1
    for (int l = 0; l < LOG; ++l) {
        for (int i = threadIdx.x; i < LEN / 2; i += blockDim.x) {
            const int lo = ((i >> l) << (l + 1)) | (i & ((1 << l) - 1)), hi = lo + (1 << l);
            const float a = buf[lo], b = buf[hi];
            buf[lo] = a + b;
            buf[hi] = a - b;
        }
        __syncthreads();
    }
}

template <int BLOCK>
__device__ __forceinline__ void vq_hadamard_body(const __half* __restrict__ x, const __half* __restrict__ signs,
                                                 __half* __restrict__ out, int cols) {
    __shared__ float buf[BLOCK];
    const int m = blockIdx.y;
    const size_t base = (size_t)m * cols + (size_t)blockIdx.x * BLOCK;
    const int sbase = blockIdx.x * BLOCK;
    for (int i = threadIdx.x; i < BLOCK; i += blockDim.x) buf[i] = __half2float(x[base + i]) * __half2float(signs[sbase + i]);
    __syncthreads();
    // The launch gives min(1024, BLOCK / 2) threads: every thread takes BLOCK / 2 / blockDim.x butterflies a stage.
    vq_fwht_stages<vq_log2(BLOCK), BLOCK>(buf);
    const float scale = rsqrtf((float)BLOCK);
    for (int i = threadIdx.x; i < BLOCK; i += blockDim.x) out[base + i] = __float2half(buf[i] * scale);
}
