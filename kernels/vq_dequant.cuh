// vq_dequant.cuh — dequantize a VQ weight into a dense fp16 matrix W[rows][cols] (scales applied), for large-batch
// GeMM through cuBLAS: at m >= 128 the product is compute-bound and one pass over the weight (n·k·2 bytes written)
// costs less than decoding inside a tensor-core kernel tile by tile (the path AQLM itself takes for large batches).
//
// Work split: one warp per (row block of 8 rows, k tile); lane (g, t) decodes its VPC vectors of row g from the tile
// layout (vq_decode_vec; E8P codes by vq_decode_e8p_vec, as the CUDA-core GeMV does), then writes V halves per
// vector. Codebooks are read through the L1 (GC tier). Grid: (ceil(row_blocks / WARPS), k tiles).
#pragma once
#include "vq_mma.cuh"

template <class Cfg>
__device__ __forceinline__ void vq_dequant_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                const __half* __restrict__ scales, const uint32_t* __restrict__ e8p_abs,
                                                __half* __restrict__ w_out, int rows, int cols, int kb, float ss0, float ss1) {
    constexpr int V = Cfg::V, VPC = Cfg::VPC, TV = 4 * VPC;
    constexpr int ENTRIES = 1 << Cfg::B;
    __shared__ uint32_t abs_s[256];
    if constexpr (Cfg::E8P) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) abs_s[i] = e8p_abs[i];
        __syncthreads();
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int rb = blockIdx.x * Cfg::WARPS + warp;
    const int tile = blockIdx.y;
    if (rb * 8 >= rows) return;
    const int row = rb * 8 + g;
    uint32_t chunk[4 * Cfg::L];
    vq_load_chunk<Cfg::L>(codes, (size_t)rb * kb + tile, lane, chunk);
    RegTier<Cfg> reg;  // N_REG == 0: unused
    const __half2 sc = __float2half2_rn(Cfg::SCALE && row < rows ? __half2float(scales[row]) : 1.f);
#pragma unroll
    for (int j = 0; j < VPC; ++j) {
        const int col = (tile * TV + t + 4 * j) * V;
        const __half* cb_set = codebooks;
        if constexpr (Cfg::TILE_ROWS > 0) cb_set += (size_t)vq_set_of<Cfg>(row, col, cols) * Cfg::R * ENTRIES * V;
        __half2 wv[V / 2];
        if constexpr (Cfg::E8P) {
            vq_decode_e8p_vec<Cfg::R>(chunk, j, abs_s, ss0, ss1, wv);
        } else {
            vq_decode_vec<Cfg>(chunk, j, reg, cb_set, nullptr, wv);
        }
        if (row < rows && col < cols) {
#pragma unroll
            for (int i = 0; i < V / 2; ++i) reinterpret_cast<__half2*>(w_out + (size_t)row * cols + col)[i] = __hmul2(wv[i], sc);
        }
    }
}
