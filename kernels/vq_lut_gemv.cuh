// vq_lut_gemv.cuh — lookup-table GeMV for batch 1 (DESIGN.md section 8, "Psumbook"/LUT-GEMM idea).
//
// For one tile of the reduction axis (TG = 4·VPC input vectors) the block first builds a table
//     T[s][e][grp] = < x[grp·V .. grp·V+V), codebook[s][e] >          (fp32, shared memory)
// and then every weight vector costs one 4-byte table read per residual stage instead of a V-wide codebook read
// and V multiply-adds. The table is reused by every row of the block (ROWS_PER_WARP · WARPS · 8 rows), which is
// what makes it pay; the heuristics only pick this kernel for one codebook set per tensor and many rows.
//
// Bank conflicts: the table is laid out [s][e][grp], so the bank of an access is grp mod 32 whatever the entry.
// Lane (g, t) walks its VPC vectors in the order j' = (j + g) mod VPC, so at every step the 32 lanes touch 32
// different groups t + 4j' — conflict-free for VPC >= 8. The rotation is applied once per chunk with two
// selects and a funnel shift, so the per-step bit offsets stay compile-time constants.
//
// Extra Cfg members: WARPS, ROWS_PER_WARP (row blocks per warp), SPLIT. Requires L == 1, M == 1, E8P == false,
// TILE_ROWS == 0.
#pragma once
#include "vq_common.cuh"

template <class Cfg>
__device__ __forceinline__ void vq_rotate_chunk(uint32_t (&w)[4], int bits) {
    const int q = bits >> 5, r = bits & 31;
    uint32_t a0 = w[0], a1 = w[1], a2 = w[2], a3 = w[3];
    if (q & 1) { const uint32_t t0 = a0; a0 = a1; a1 = a2; a2 = a3; a3 = t0; }
    if (q & 2) { uint32_t t0 = a0; a0 = a2; a2 = t0; t0 = a1; a1 = a3; a3 = t0; }
    w[0] = __funnelshift_r(a0, a1, r);
    w[1] = __funnelshift_r(a1, a2, r);
    w[2] = __funnelshift_r(a2, a3, r);
    w[3] = __funnelshift_r(a3, a0, r);
}

template <class Cfg>
__device__ __forceinline__ void vq_lut_gemv_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                 const __half* __restrict__ scales, const __half* __restrict__ x,
                                                 __half* __restrict__ y, float* __restrict__ ws, int rows, int cols, int kb,
                                                 int tiles_per_split) {
    static_assert(Cfg::L == 1 && Cfg::M == 1 && !Cfg::E8P && Cfg::TILE_ROWS == 0, "LUT GeMV preconditions");
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, VPC = Cfg::VPC;
    constexpr int TG = 4 * VPC;  // groups (vectors) per tile
    constexpr int ENTRIES = 1 << B;
    constexpr int RB = R * B;
    constexpr int RPW = Cfg::ROWS_PER_WARP;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* table = reinterpret_cast<float*>(smem_raw);                      // [R][ENTRIES][TG]
    __half* cbs = reinterpret_cast<__half*>(table + R * ENTRIES * TG);       // [R][ENTRIES][V]
    __half* xs = cbs + R * ENTRIES * V;                                      // [TG * V]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int tile0 = blockIdx.y * tiles_per_split;
    const int tile1 = min(kb, tile0 + tiles_per_split);
    const int first_rb = (blockIdx.x * Cfg::WARPS + warp) * RPW;

    for (int i = threadIdx.x; i < R * ENTRIES * V; i += blockDim.x) cbs[i] = codebooks[i];

    float acc[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) acc[i] = 0.f;

    for (int tile = tile0; tile < tile1; ++tile) {
        __syncthreads();  // previous table fully consumed (and codebook staged on the first pass)
        const int col0 = tile * TG * V;
        for (int i = threadIdx.x; i < TG * V; i += blockDim.x) {
            const int c = col0 + i;
            xs[i] = c < cols ? x[c] : __float2half(0.f);
        }
        __syncthreads();
        // Build: thread -> (group grp = i % TG, entries e ≡ i / TG mod stride). Lanes of a warp share e (broadcast
        // codebook reads) and write consecutive groups (conflict-free stores).
        for (int i = threadIdx.x; i < R * ENTRIES * TG; i += blockDim.x) {
            const int grp = i % TG, se = i / TG;  // se = s * ENTRIES + e
            const __half2* xv = reinterpret_cast<const __half2*>(xs + grp * V);
            const __half2* cv = reinterpret_cast<const __half2*>(cbs + se * V);
            float dot = 0.f;
#pragma unroll
            for (int k = 0; k < V / 2; ++k) {
                const float2 a = __half22float2(xv[k]);
                const float2 b = __half22float2(cv[k]);
                dot = fmaf(a.x, b.x, dot);
                dot = fmaf(a.y, b.y, dot);
            }
            table[i] = dot;
        }
        __syncthreads();
#pragma unroll  // fully: acc[] must be indexed by constants to stay in registers
        for (int rr = 0; rr < RPW; rr += 4) {
            uint32_t chunk[4][4];
#pragma unroll
            for (int d = 0; d < 4; ++d) {
                const int rb = first_rb + rr + d;
                if (rr + d < RPW && rb * 8 < rows) vq_load_chunk<1>(codes, (size_t)rb * kb + tile, lane, chunk[d]);
            }
#pragma unroll
            for (int d = 0; d < 4; ++d) {
                const int rb = first_rb + rr + d;
                if (rr + d >= RPW || rb * 8 >= rows) continue;  // (not break: keeps the loop unrolled, chunk in registers)
                vq_rotate_chunk<Cfg>(chunk[d], (g % VPC) * RB);
                float a = 0.f;
#pragma unroll
                for (int j = 0; j < VPC; ++j) {
                    const int grp = t + 4 * ((j + g) % VPC);
#pragma unroll
                    for (int s = 0; s < R; ++s) {
                        constexpr int MASK = ENTRIES - 1;
                        const int bit = j * RB + s * B;
                        uint32_t idx;
                        if ((bit % 32) + B <= 32) idx = (chunk[d][bit / 32] >> (bit % 32)) & MASK;
                        else idx = __funnelshift_r(chunk[d][bit / 32], chunk[d][(bit / 32 + 1) & 3], bit % 32) & MASK;
                        a += table[(s * ENTRIES + idx) * TG + grp];
                    }
                }
                // Rows past the end are never written, so the columns past `cols` (code 0, x = 0) add nothing.
                acc[rr + d] += a;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
        float a = acc[i];
        a += __shfl_xor_sync(VQ_FULL_MASK, a, 1);
        a += __shfl_xor_sync(VQ_FULL_MASK, a, 2);
        const int row = (first_rb + i) * 8 + g;
        if (t == 0 && row < rows) {
            if constexpr (Cfg::SPLIT == 1) {
                const float sc = Cfg::SCALE ? __half2float(scales[row]) : 1.f;
                y[row] = __float2half(a * sc);
            } else {
                atomicAdd(ws + row, a);
            }
        }
    }
}
