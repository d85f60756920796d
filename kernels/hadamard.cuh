// hadamard.cuh — randomized Hadamard transform of the activations for QuIP#-style (quip4) weights:
//     x'[m, blk] = H_BLOCK · (signs[blk] ⊙ x[m, blk]) / sqrt(BLOCK)    for every block of BLOCK columns,
// with H the Sylvester (natural order) Walsh-Hadamard matrix. One thread block per (row, column block); the
// butterflies run in fp32, in radix-16 passes with the values in registers (vq_fwht). BLOCK is a compile-time power
// of two (<= 8192).
#pragma once
#include "vq_common.cuh"

// Shared-memory buffers of the transform are padded with one float per 32 (vq_hpad), so that the radix passes' strided
// accesses fall on distinct banks: a thread's 16 consecutive values (first pass) start 16 floats + half a pad apart.
__device__ __forceinline__ int vq_hpad(int i) { return i + (i >> 5); }
constexpr int vq_hpad_len(int len) { return len + len / 32; }

// Butterflies of stages B0 .. B0+BITS-1 on a thread's 2^BITS values v[j] (index bit B0 + s of value j is bit s of j).
template <int BITS>
__device__ __forceinline__ void vq_fwht_regs(float (&v)[1 << BITS]) {
#pragma unroll
    for (int s = 0; s < BITS; ++s) {
#pragma unroll
        for (int j = 0; j < (1 << BITS); ++j) {
            if (j & (1 << s)) continue;
            const float a = v[j], b = v[j | (1 << s)];
            v[j] = a + b;
            v[j | (1 << s)] = a - b;
        }
    }
}

// Stages B0 .. LOG-1 of the Walsh-Hadamard butterflies in radix-16 passes, each ending with a barrier. A pass takes,
// per thread, the 2^BITS values whose index bits B0 .. B0+BITS-1 vary (the others fixed by the thread's group g),
// runs those stages in registers and writes them back to the padded buffer `buf`: ceil(LOG / 4) barriers instead of
// LOG. The first pass (B0 = 0) takes its values from load(i0, v) instead, the last hands each value to
// store(index, value). The stages run in the same order on the same values as one stage per barrier, so the result
// is the same to the bit.
template <int LOG, int LEN, int B0, class Load, class Store>
__device__ __forceinline__ void vq_fwht_passes(float* buf, Load& load, Store& store) {
    constexpr int BITS = LOG - B0 < 4 ? LOG - B0 : 4, E = 1 << BITS;
    constexpr bool LAST = B0 + BITS == LOG;
    for (int g = threadIdx.x; g < LEN / E; g += blockDim.x) {
        const int base = (g & ((1 << B0) - 1)) | ((g >> B0) << (B0 + BITS));
        float v[E];
        if constexpr (B0 == 0) {
            load(base, v);
        } else {
#pragma unroll
            for (int j = 0; j < E; ++j) v[j] = buf[vq_hpad(base + (j << B0))];
        }
        vq_fwht_regs<BITS>(v);
#pragma unroll
        for (int j = 0; j < E; ++j) {
            if constexpr (LAST) store(base + (j << B0), v[j]);
            else buf[vq_hpad(base + (j << B0))] = v[j];
        }
    }
    __syncthreads();
    if constexpr (!LAST) vq_fwht_passes<LOG, LEN, B0 + BITS>(buf, load, store);
}

// The Walsh-Hadamard transform of every aligned 2^LOG block of a LEN-value vector (LEN a multiple of 2^LOG), in fp32,
// by the block's threads; ends with a barrier. load(i0, v) fills v[0 .. E) with input values i0 .. i0 + E - 1
// (E = min(16, 2^LOG), i0 a multiple of E): the first pass runs on them in registers. store(i, value) receives every
// output value once. `buf` is the padded scratch buffer (vq_hpad_len(LEN) floats), unused when LOG <= 4.
template <int LOG, int LEN, class Load, class Store>
__device__ __forceinline__ void vq_fwht(float* buf, Load load, Store store) {
    vq_fwht_passes<LOG, LEN, 0>(buf, load, store);
}

// v[0 .. E) = signs ⊙ x at columns c0 .. c0 + E - 1 (c0 a multiple of E), zero at and past `cols`; 16-byte loads where
// the whole run is in range and E >= 8.
template <int E>
__device__ __forceinline__ void vq_signed_load(const __half* __restrict__ x, const __half* __restrict__ signs, int c0, int cols,
                                               float (&v)[E]) {
    if constexpr (E >= 8) {
        if (c0 + E <= cols) {
#pragma unroll
            for (int q = 0; q < E / 8; ++q) {
                const uint4 xv = *reinterpret_cast<const uint4*>(x + c0 + 8 * q);
                const uint4 sv = *reinterpret_cast<const uint4*>(signs + c0 + 8 * q);
                const __half* xh = reinterpret_cast<const __half*>(&xv);
                const __half* sh = reinterpret_cast<const __half*>(&sv);
#pragma unroll
                for (int j = 0; j < 8; ++j) v[8 * q + j] = __half2float(xh[j]) * __half2float(sh[j]);
            }
            return;
        }
    }
#pragma unroll
    for (int j = 0; j < E; ++j) v[j] = c0 + j < cols ? __half2float(x[c0 + j]) * __half2float(signs[c0 + j]) : 0.f;
}

// One thread block per (row, column block); launched with BLOCK / 16 threads (32 to 1024; crates/cuda/src/ops/linear.rs).
template <int BLOCK>
__device__ __forceinline__ void vq_hadamard_body(const __half* __restrict__ x, const __half* __restrict__ signs,
                                                 __half* __restrict__ out, int cols) {
    __shared__ float buf[vq_hpad_len(BLOCK)];
    const size_t row = (size_t)blockIdx.y * cols;
    const int c0 = blockIdx.x * BLOCK;
    const float scale = rsqrtf((float)BLOCK);
    vq_fwht<vq_log2(BLOCK), BLOCK>(
        buf, [&](int i0, auto& v) { vq_signed_load(x + row, signs, c0 + i0, cols, v); },
        [&](int i, float v) { out[row + c0 + i] = __float2half(v * scale); });
}
