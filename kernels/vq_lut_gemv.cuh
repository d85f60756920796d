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
// Per-tile codebooks (GPTVQ): the block's rows lie inside one codebook row band and every k tile inside one codebook
// column span (the planner checks both), so the block restages the 2^B-entry codebook set of each k tile and the
// table is still shared by all its rows.
//
// Extra Cfg members: WARPS, ROWS_PER_WARP (row blocks per warp), SPLIT. Requires L == 1, M == 1, E8P == false.
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
    static_assert(Cfg::L == 1 && Cfg::M == 1 && !Cfg::E8P, "LUT GeMV preconditions");
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, VPC = Cfg::VPC;
    constexpr int TG = 4 * VPC;  // groups (vectors) per tile
    constexpr int ENTRIES = 1 << B;
    constexpr int RB = R * B;
    constexpr int RPW = Cfg::ROWS_PER_WARP;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* table = reinterpret_cast<float*>(smem_raw);                      // [R][ENTRIES][TG]
    __half* cbs = reinterpret_cast<__half*>(table + R * ENTRIES * TG);       // [R][ENTRIES][V]
    __half* xs = cbs + R * ENTRIES * V;                                      // [tiles_per_split * TG * V]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int tile0 = blockIdx.y * tiles_per_split;
    const int tile1 = min(kb, tile0 + tiles_per_split);
    const int first_rb = (blockIdx.x * Cfg::WARPS + warp) * RPW;
    constexpr int HALF = RPW / 2;  // row blocks whose codes are in flight while the other half is processed

    // Codebooks (tensor scope) and every activation of this split, once.
    if constexpr (Cfg::TILE_ROWS == 0)
        for (int i = threadIdx.x; i < R * ENTRIES * V; i += blockDim.x) cbs[i] = codebooks[i];
    const int xcols = tiles_per_split * TG * V;
    for (int i = threadIdx.x; i < xcols; i += blockDim.x) {
        const int c = tile0 * TG * V + i;
        xs[i] = c < cols ? x[c] : __float2half(0.f);
    }

    float acc[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) acc[i] = 0.f;

    for (int tile = tile0; tile < tile1; ++tile) {
        // 1. Codes of the first half of this warp's row blocks: in flight during the table build.
        uint32_t chunk[RPW][4];
#pragma unroll
        for (int d = 0; d < HALF; ++d) {
            const int rb = first_rb + d;
            if (rb * 8 < rows) vq_load_chunk<1>(codes, (size_t)rb * kb + tile, lane, chunk[d]);
        }
        if constexpr (Cfg::TILE_ROWS > 0) {
            __syncthreads();  // previous table (and codebook) consumed
            const int set = vq_set_of<Cfg>(min(blockIdx.x * Cfg::WARPS * RPW * 8, rows - 1), tile * TG * V, cols);
            const __half* src = codebooks + (size_t)set * R * ENTRIES * V;
            for (int i = threadIdx.x; i < R * ENTRIES * V; i += blockDim.x) cbs[i] = src[i];
        }
        __syncthreads();  // previous table consumed; codebook and activations staged
        // 2. Table build. Thread -> fixed group grp (its activation vector stays in registers) and entries
        //    se = tid / TG, tid / TG + stride, ...: a warp shares se (broadcast codebook reads) and writes
        //    consecutive groups (conflict-free stores).
        {
            const int grp = threadIdx.x % TG;
            float xv[V];
            const __half2* xp = reinterpret_cast<const __half2*>(xs + (tile - tile0) * TG * V + grp * V);
#pragma unroll
            for (int k = 0; k < V / 2; ++k) {
                const float2 f = __half22float2(xp[k]);
                xv[2 * k] = f.x;
                xv[2 * k + 1] = f.y;
            }
            const int stride = blockDim.x / TG;
            for (int se = threadIdx.x / TG; se < R * ENTRIES; se += stride) {
                const __half2* cv = reinterpret_cast<const __half2*>(cbs + se * V);
                float dot = 0.f;
#pragma unroll
                for (int k = 0; k < V / 2; ++k) {
                    const float2 b = __half22float2(cv[k]);
                    dot = fmaf(xv[2 * k], b.x, dot);
                    dot = fmaf(xv[2 * k + 1], b.y, dot);
                }
                table[se * TG + grp] = dot;
            }
        }
        __syncthreads();
        // 3. Second half in flight while the first is looked up.
#pragma unroll
        for (int d = HALF; d < RPW; ++d) {
            const int rb = first_rb + d;
            if (rb * 8 < rows) vq_load_chunk<1>(codes, (size_t)rb * kb + tile, lane, chunk[d]);
        }
#pragma unroll  // fully: acc[] and chunk[] must be indexed by constants to stay in registers
        for (int d = 0; d < RPW; ++d) {
            const int rb = first_rb + d;
            if (rb * 8 >= rows) continue;
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
            acc[d] += a;
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
