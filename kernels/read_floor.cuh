// read_floor.cuh — the streaming floor of a weight kernel: one launch that reads a buffer of 16-byte words once, as a
// GeMV reads its codes, and does nothing else. `vqllm bench gemv --floor` times it on as many bytes as a VQ layer must
// move, so a GeMV's time can be set against the least time one kernel needs to read that much on the device.
#pragma once
#include "vq_common.cuh"

// Grid-stride over `words` with UNROLL 16-byte loads in flight a thread (ld.global.nc). Each block stores the xor of
// everything its threads read into sink[blockIdx.x] (a few KiB of writes): the loads cannot be dropped, and a test
// checks that every word was read once (the xor of the sink is the xor of the buffer). Launched programmatically it
// lets the next launch be scheduled at once, and waits for the kernel before it first thing, like the weight kernels.
template <int UNROLL>
__device__ __forceinline__ void vq_read_floor_body(const uint4* __restrict__ src, int words, unsigned* __restrict__ sink) {
    vq_pdl_trigger();
    vq_pdl_wait();
    const int stride = gridDim.x * blockDim.x;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + (UNROLL - 1) * stride < words; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = __ldg(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < words; i += stride) {
        const uint4 v = __ldg(src + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    __shared__ unsigned warp_acc[32];
    if ((threadIdx.x & 31) == 0) warp_acc[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned a = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) a ^= warp_acc[w];
        sink[blockIdx.x] = a;
    }
}
