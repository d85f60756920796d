// vq_gemv.cuh — fused dequantize-and-multiply GeMV for small batches: y[m, n] = scale[n] · Σ_k x[m, k] · Ŵ[n, k].
//
// Work split: one warp per row block (8 weight rows), lane l = 4g + t owns row g of the block and, in every tile,
// the vectors t, t+4, ..., t+4(VPC-1) (docs/kernel-layout.md). Each lane decodes its vectors straight from the
// codebook cache into registers and multiplies them with the activations staged in shared memory, so there is no
// layout exchange at all (fusion level O4 is implicit for GeMV). Lanes 4g..4g+3 reduce with two shuffles.
// gridDim.y = SPLIT splits the reduction axis (codebook-centric dataflow O3): each split writes fp32 partial sums
// with atomics into a workspace that `vq_gemv_finalize` scales, converts and clears.
//
// Extra Cfg members used here: M (batch rows, compile time), WARPS (per block), SPLIT.
#pragma once
#include "vq_common.cuh"

// Shared-memory plan shared with the host (vqllm-codegen computes the same numbers).
template <class Cfg>
struct GemvSmem {
    static constexpr int TV = 4 * Cfg::VPC;        // vectors per tile
    static constexpr int TILE_COLS_K = TV * Cfg::V;  // input columns per tile
    // tiles_per_split is a run-time value; sizes are computed from it.
    __device__ static size_t x_halves(int tiles_per_split) { return (size_t)Cfg::M * tiles_per_split * TILE_COLS_K; }
    __device__ static int max_sets(int tiles_per_split) {
        if constexpr (Cfg::TILE_ROWS > 0) return (tiles_per_split * TILE_COLS_K + Cfg::TILE_COLS - 1) / Cfg::TILE_COLS + 1;
        else return 1;
    }
    __device__ static size_t cb_halves(int tiles_per_split) {
        return Cfg::N_SHARED > 0 ? (size_t)max_sets(tiles_per_split) * Cfg::R * Cfg::N_SHARED * Cfg::V : 0;
    }
};

template <class Cfg>
__device__ __forceinline__ void vq_gemv_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                             const __half* __restrict__ scales, const uint32_t* __restrict__ e8p_abs,
                                             const __half* __restrict__ x, __half* __restrict__ y,
                                             float* __restrict__ ws, int rows, int cols, int kb, int tiles_per_split,
                                             float ss0, float ss1, float ss2, float ss3) {
    using S = GemvSmem<Cfg>;
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, M = Cfg::M, TV = S::TV;
    constexpr int RB = R * B;
    constexpr int ENTRIES = 1 << B;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* xs = reinterpret_cast<__half*>(smem_raw);
    const int range_cols = tiles_per_split * S::TILE_COLS_K;
    __half* cbs = xs + S::x_halves(tiles_per_split);
    uint32_t* abs_s = reinterpret_cast<uint32_t*>(cbs + S::cb_halves(tiles_per_split));

    const int tile0 = blockIdx.y * tiles_per_split;
    const int tile1 = min(kb, tile0 + tiles_per_split);
    const int col0 = tile0 * S::TILE_COLS_K;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int row_block = blockIdx.x * Cfg::WARPS + warp;
    const int row = row_block * 8 + g;
    const int block_row0 = blockIdx.x * Cfg::WARPS * 8;

    // Stage the activations of this split (zero beyond `cols`).
    for (int i = threadIdx.x; i < M * range_cols; i += blockDim.x) {
        const int m = i / range_cols, c = col0 + i % range_cols;
        xs[i] = c < cols ? x[(size_t)m * cols + c] : __float2half(0.f);
    }
    // Stage the shared tier of the codebook cache: the first N_SHARED entries of each stage of every set touched.
    int first_set_col = 0;
    static_assert(Cfg::CB_COPIES == 1, "the dequantizing GeMV stages one copy of each codebook entry");
    if constexpr (Cfg::N_SHARED > 0 && !Cfg::E8P) {
        int set_base = 0, nsets = 1;
        if constexpr (Cfg::TILE_ROWS > 0) {
            const int tiles_per_row = (cols + Cfg::TILE_COLS - 1) / Cfg::TILE_COLS;
            first_set_col = col0 / Cfg::TILE_COLS;
            const int last = min(tiles_per_row - 1, (min(cols, col0 + range_cols) - 1) / Cfg::TILE_COLS);
            set_base = (min(block_row0, rows - 1) / Cfg::TILE_ROWS) * tiles_per_row + first_set_col;
            nsets = last - first_set_col + 1;
        }
        const int per_set = R * Cfg::N_SHARED * V;
        for (int i = threadIdx.x; i < nsets * per_set; i += blockDim.x) {
            const int ls = i / per_set, rem = i % per_set;
            const int s = rem / (Cfg::N_SHARED * V), ev = rem % (Cfg::N_SHARED * V);
            cbs[i] = codebooks[((size_t)(set_base + ls) * R + s) * ENTRIES * V + ev];
        }
    }
    if constexpr (Cfg::E8P) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) abs_s[i] = e8p_abs[i];
    }
    RegTier<Cfg> reg;
    if constexpr (Cfg::N_REG > 0) reg.load(codebooks, lane);
    __syncthreads();
    if (row_block * 8 >= rows) return;

    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;

    constexpr int DEPTH = (Cfg::L == 1) ? 4 : 2;  // tiles whose codes are in flight at once
    for (int tile = tile0; tile < tile1; tile += DEPTH) {
        uint32_t chunk[DEPTH][4 * Cfg::L];
#pragma unroll
        for (int d = 0; d < DEPTH; ++d)
            if (tile + d < tile1) vq_load_chunk<Cfg::L>(codes, (size_t)row_block * kb + tile + d, lane, chunk[d]);
#pragma unroll
        for (int d = 0; d < DEPTH; ++d) {
            if (tile + d >= tile1) continue;
            const int vbase = (tile + d) * TV;
#pragma unroll
            for (int j = 0; j < Cfg::VPC; ++j) {
                const int vec = vbase + t + 4 * j;
                const int col = vec * V;
                float w[V];
                if constexpr (Cfg::E8P) {
                    __half2 h[4];
                    vq_decode_e8p_vec<R>(chunk[d], j, abs_s, ss0, ss1, h);
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const float2 f = __half22float2(h[i]);
                        w[2 * i] = f.x;
                        w[2 * i + 1] = f.y;
                    }
                } else {
                    const __half* cb_set = codebooks;
                    const __half* sm_set = cbs;
                    if constexpr (Cfg::TILE_ROWS > 0) {
                        const int set = vq_set_of<Cfg>(row, col, cols);
                        cb_set = codebooks + (size_t)set * R * ENTRIES * V;
                        sm_set = cbs + (size_t)(col / Cfg::TILE_COLS - first_set_col) * R * Cfg::N_SHARED * V;
                    }
#pragma unroll
                    for (int i = 0; i < V; ++i) w[i] = 0.f;
#pragma unroll
                    for (int s = 0; s < R; ++s) {
                        // Bit offset of stage s of vector j: compile-time after unrolling.
                        const int bit = j * RB + s * B;
                        const int wd = bit / 32, sh = bit % 32;
                        uint32_t idx;
                        if (sh + B <= 32) idx = (chunk[d][wd] >> sh) & ((1u << B) - 1u);
                        else idx = __funnelshift_r(chunk[d][wd], chunk[d][wd + 1], sh) & ((1u << B) - 1u);
                        Entry<V> e;
                        vq_lookup<Cfg>(reg, s, idx, cb_set, sm_set, e);
#pragma unroll
                        for (int i = 0; i < V / 2; ++i) {
                            const float2 f = __half22float2(e.h[i]);
                            w[2 * i] += f.x;
                            w[2 * i + 1] += f.y;
                        }
                    }
                }
                if (col < cols) {
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        const __half2* xv = reinterpret_cast<const __half2*>(xs + (size_t)m * range_cols + (col - col0));
#pragma unroll
                        for (int i = 0; i < V / 2; ++i) {
                            const float2 f = __half22float2(xv[i]);
                            acc[m] = fmaf(w[2 * i], f.x, acc[m]);
                            acc[m] = fmaf(w[2 * i + 1], f.y, acc[m]);
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        acc[m] += __shfl_xor_sync(VQ_FULL_MASK, acc[m], 1);
        acc[m] += __shfl_xor_sync(VQ_FULL_MASK, acc[m], 2);
    }
    if (t == 0 && row < rows) {
        if constexpr (Cfg::SPLIT == 1) {
            const float sc = Cfg::SCALE ? __half2float(scales[row]) : 1.f;
#pragma unroll
            for (int m = 0; m < M; ++m) y[(size_t)m * rows + row] = __float2half(acc[m] * sc);
        } else {
#pragma unroll
            for (int m = 0; m < M; ++m) atomicAdd(ws + (size_t)m * rows + row, acc[m]);
        }
    }
}

// Split-K epilogue: y = scale ⊙ ws (fp16), then clears ws for the next call. Four elements per thread (16-byte
// workspace loads and stores, 8-byte outputs): a quarter of the threads and memory instructions of one per element.
// Launch: ceil(total / 4) threads.
__device__ __forceinline__ void vq_gemv_finalize_body(float* __restrict__ ws, const __half* __restrict__ scales, bool has_scale,
                                                      __half* __restrict__ y, int rows, int total) {
    const int i = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (i + 3 < total && total % 4 == 0) {
        const float4 v = reinterpret_cast<const float4*>(ws)[i / 4];
        float sc[4] = {1.f, 1.f, 1.f, 1.f};
        if (has_scale) {
#pragma unroll
            for (int k = 0; k < 4; ++k) sc[k] = __half2float(scales[(i + k) % rows]);
        }
        __half2 o[2] = {__floats2half2_rn(v.x * sc[0], v.y * sc[1]), __floats2half2_rn(v.z * sc[2], v.w * sc[3])};
        *reinterpret_cast<uint2*>(y + i) = *reinterpret_cast<const uint2*>(o);
        reinterpret_cast<float4*>(ws)[i / 4] = make_float4(0.f, 0.f, 0.f, 0.f);
    } else {
        for (int k = i; k < min(i + 4, total); ++k) {
            const float sc = has_scale ? __half2float(scales[k % rows]) : 1.f;
            y[k] = __float2half(ws[k] * sc);
            ws[k] = 0.f;
        }
    }
}
