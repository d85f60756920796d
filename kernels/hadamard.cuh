// hadamard.cuh — randomized Hadamard transform of the activations for QuIP#-style (quip4) weights:
//     x'[m, blk] = H_BLOCK · (signs[blk] ⊙ x[m, blk]) / sqrt(BLOCK)    for every block of BLOCK columns,
// with H the Sylvester (natural order) Walsh-Hadamard matrix. One thread block per (row, column block); the
// butterflies run in fp32 in shared memory. BLOCK is a compile-time power of two (<= 8192).
#pragma once
#include <cuda_fp16.h>

template <int BLOCK>
__device__ __forceinline__ void vq_hadamard_body(const __half* __restrict__ x, const __half* __restrict__ signs,
                                                 __half* __restrict__ out, int cols) {
    __shared__ float buf[BLOCK];
    const int m = blockIdx.y;
    const size_t base = (size_t)m * cols + (size_t)blockIdx.x * BLOCK;
    const int sbase = blockIdx.x * BLOCK;
    for (int i = threadIdx.x; i < BLOCK; i += blockDim.x) buf[i] = __half2float(x[base + i]) * __half2float(signs[sbase + i]);
    __syncthreads();
#pragma unroll 1
    for (int h = 1; h < BLOCK; h <<= 1) {
        for (int i = threadIdx.x; i < BLOCK / 2; i += blockDim.x) {
            const int lo = (i / h) * 2 * h + (i % h), hi = lo + h;
            const float a = buf[lo], b = buf[hi];
            buf[lo] = a + b;
            buf[hi] = a - b;
        }
        __syncthreads();
    }
    const float scale = rsqrtf((float)BLOCK);
    for (int i = threadIdx.x; i < BLOCK; i += blockDim.x) out[base + i] = __float2half(buf[i] * scale);
}
