// kv_quantize.cuh — encodes new K and V rows into the VQ KV cache by nearest centroid (CQ style).
//
// Layouts:
//   k_rows, v_rows  [batch, t_new, kv_heads, D] fp16   the new tokens (row i of sequence b goes to position lens[b] + i)
//   k_cb, v_cb      [kv_heads, G, E, V] fp16           one codebook per (kv head, channel group); G = D / V, E = 2^BITS
//   k_codes, v_codes [batch, kv_heads, cap, G] u8      the cache (bytes of a row in the Cfg::PREROT layout, kv_layout.cuh)
//   lens            [batch] int32                      tokens already in the cache (read only)
//   lens_next       [batch] int32                      written lens[b] + t_new by block (0,0,0): the host swaps the two
//                                                      buffers, so the lengths advance without a host-to-device copy
// Positions at or beyond `cap` are skipped: nothing is ever written out of bounds (the host checks capacity).
//
// Distance, bit-exact with the CPU encoder: d(e) = sum_{i=0}^{V-1} (x_i − c_i)² evaluated in f32 as
// d = d + (x_i − c_i)^2 without FMA contraction, from d = 0 in order i = 0..V−1 (x and c are fp16 values widened to f32);
// the smallest d wins and ties go to the lowest entry index.
//
// Work split: block (blockIdx.x = kv head h and a run of GPB groups, blockIdx.y = a run of `tokens_per_block`
// consecutive new rows of the flattened [batch · t_new] list, blockIdx.z = 0 for K, 1 for V). The block stages
// the GPB codebooks (GPB · E · V halves) in shared memory once, then each warp takes (row, group) pairs: lane l
// scans entries l, l+32, ... (consecutive lanes read consecutive entries: conflict-free), and a 5-step shuffle
// argmin (distance, index) picks the winner. For one decode token of a 32-head, 128-dim layer (cq2) that is
// 32 · 4 · 2 = 256 blocks, one global round trip for the codebooks and one pass of 8 entries per lane.
//
// Extra Cfg members: V, BITS, D, GPB (groups per block, divides G), QWARPS (warps per block), PREROT (code layout).
#pragma once
#include <cuda_fp16.h>
#include "kv_layout.cuh"

template <class Cfg>
__device__ __forceinline__ void kv_quantize_body(const __half* __restrict__ k_rows, const __half* __restrict__ v_rows,
                                                 const __half* __restrict__ k_cb, const __half* __restrict__ v_cb,
                                                 unsigned char* __restrict__ k_codes, unsigned char* __restrict__ v_codes,
                                                 const int* __restrict__ lens, int* __restrict__ lens_next, int batch,
                                                 int t_new, int kv_heads, int cap, int tokens_per_block) {
    constexpr int V = Cfg::V, D = Cfg::D, G = D / V, E = 1 << Cfg::BITS, GPB = Cfg::GPB;
    constexpr int PER_LANE = (E + 31) / 32;
    static_assert(G % GPB == 0, "GPB must divide the number of groups");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* cbs = reinterpret_cast<__half*>(smem_raw);  // [GPB][E][V]

    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
        for (int b = threadIdx.x; b < batch; b += blockDim.x) lens_next[b] = min(lens[b] + t_new, cap);
    const bool is_v = blockIdx.z != 0;
    const __half* rows = is_v ? v_rows : k_rows;
    const __half* cb = is_v ? v_cb : k_cb;
    unsigned char* codes = is_v ? v_codes : k_codes;
    constexpr int BLOCKS_PER_HEAD = G / GPB;
    const int h = blockIdx.x / BLOCKS_PER_HEAD;
    const int g0 = (blockIdx.x % BLOCKS_PER_HEAD) * GPB;
    const int total = batch * t_new;
    const int row0 = blockIdx.y * tokens_per_block;
    const int row1 = min(total, row0 + tokens_per_block);

    // Stage the codebooks of groups [g0, g0 + GPB) of head h: GPB·E·V halves, contiguous in global memory.
    // Decode (a token or two per block: each warp encodes at most one group) reads each entry once, so there the
    // warps read the codebook straight from global memory (coalesced, L2-resident) and skip the staging and the
    // barrier; the condition is uniform across the block.
    const bool direct = (row1 - row0) * GPB <= (int)(blockDim.x / 32);
    const __half* cb_head = cb + ((size_t)h * G + g0) * E * V;
    if (!direct) {
        constexpr int HALVES = GPB * E * V;
        const __half* src = cb_head;
        if constexpr (HALVES % 8 == 0) {
            const uint4* s4 = reinterpret_cast<const uint4*>(src);
            uint4* d4 = reinterpret_cast<uint4*>(cbs);
            for (int i = threadIdx.x; i < HALVES / 8; i += blockDim.x) d4[i] = __ldg(s4 + i);
        } else {
            for (int i = threadIdx.x; i < HALVES; i += blockDim.x) cbs[i] = src[i];
        }
        __syncthreads();
    }
    const __half* cb_read = direct ? cb_head : cbs;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    const int pairs = (row1 - row0) * GPB;
    for (int p = warp; p < pairs; p += nw) {
        const int row = row0 + p / GPB, gl = p % GPB, g = g0 + gl;
        const int b = row / t_new, i = row % t_new;
        float x[V];
        const __half* xp = rows + (((size_t)b * t_new + i) * kv_heads + h) * D + g * V;
#pragma unroll
        for (int c = 0; c < V; ++c) x[c] = __half2float(xp[c]);
        float best = __int_as_float(0x7f800000);
        int best_e = 0x7fffffff;
#pragma unroll
        for (int k = 0; k < PER_LANE; ++k) {
            const int e = lane + 32 * k;
            if (e < E) {
                const __half* c = cb_read + ((size_t)gl * E + e) * V;
                float d = 0.f;
#pragma unroll
                for (int cc = 0; cc < V; ++cc) {
                    const float diff = __fsub_rn(x[cc], __half2float(c[cc]));
                    d = __fadd_rn(d, __fmul_rn(diff, diff));  // no FMA: bit-identical to the CPU encoder (vq::cq)
                }
                if (d < best) {  // entries rise with k: the first minimum is the lowest index
                    best = d;
                    best_e = e;
                }
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float od = __shfl_xor_sync(0xffffffffu, best, o);
            const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
            if (od < best || (od == best && oe < best_e)) {
                best = od;
                best_e = oe;
            }
        }
        const int pos = lens[b] + i;
        if (lane == 0 && pos >= 0 && pos < cap)
            codes[(((size_t)b * kv_heads + h) * cap + pos) * G + kv_code_byte<G, Cfg::PREROT>(pos, g)] =
                (unsigned char)(best_e == 0x7fffffff ? 0 : best_e);
    }
}
