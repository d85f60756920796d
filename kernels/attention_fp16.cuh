// attention_fp16.cuh — FP16 decode attention (flash-decoding), our own baseline, and the split-token combine
// kernel that the VQ attention kernels share.
//
// Layouts (row-major):
//   q      [batch, q_heads, D] fp16          one query token per sequence
//   k, v   [batch, kv_heads, cap, D] fp16     the cache; sequence b uses positions [0, lens[b])
//   lens   [batch] int32                      (values above `cap` are clamped to `cap`)
//   out    [batch, q_heads, D] fp16
//   ws_o   [batch, q_heads, splits, D] f32    per split: sum_t p_t · v_t, with p_t = 2^(s_t − m)
//   ws_ml  [batch, q_heads, splits, 2] f32    per split: (m, l) — max score (log2 domain) and sum of p_t
// GQA: q head hq reads kv head hq / (q_heads / kv_heads). Scores are s_t = scale_log2 · <q, k_t> with
// scale_log2 = log2(e) / sqrt(D), so exp2 replaces exp; softmax and accumulation are fp32.
//
// Work split: block (blockIdx.x = group of QPB q heads of one kv head, blockIdx.y = sequence, blockIdx.z = token
// chunk [z·chunk, (z+1)·chunk)). The QPB q heads share every K/V load (GQA). Two passes over the chunk:
//   1. K: LPT = D/8 lanes per token, each lane one 16-byte load (8 channels); UNROLL loads in flight per lane;
//      dot products reduced over the LPT lanes with shuffles; scores kept in shared memory.
//   2. softmax of the chunk (block max, exp2, block sum) in place;
//   3. V: the same lane mapping; each lane accumulates p_t · v_t for its 8 channels in registers; a final
//      reduction over the lanes of a warp holding the same channels, then over warps through shared memory.
// gridDim.z == 1: the block writes the normalised output directly; otherwise (m, l, o) partials for
// `attn_combine_body`.
//
// Extra Cfg members (struct with static constexpr int): D, QPB, WARPS, UNROLL.
#pragma once
#include <cuda_fp16.h>

#ifndef VQA_FULL_MASK
#define VQA_FULL_MASK 0xffffffffu
#endif
#ifndef VQA_NEG_INF
#define VQA_NEG_INF (-__int_as_float(0x7f800000))
#endif

// 16-byte streaming load through the read-only path without allocating in L1 (every byte is used once).
__device__ __forceinline__ uint4 attn_ld_stream(const void* p) {
    uint4 u;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
                 : "l"(p));
    return u;
}

__device__ __forceinline__ float attn_warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(VQA_FULL_MASK, x, o));
    return x;
}

__device__ __forceinline__ float attn_warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(VQA_FULL_MASK, x, o);
    return x;
}

// Block-wide max and sum of NV values per thread (NV compile-time); `red` holds 32·NV floats. All threads get
// the result. Ends with a barrier, so `red` may be reused right after.
template <int NV, bool IS_MAX>
__device__ __forceinline__ void attn_block_reduce(float (&x)[NV], float* red) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
#pragma unroll
    for (int i = 0; i < NV; ++i) x[i] = IS_MAX ? attn_warp_max(x[i]) : attn_warp_sum(x[i]);
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < NV; ++i) red[i * 32 + warp] = x[i];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < NV; ++i) {
        float y = lane < nw ? red[i * 32 + lane] : (IS_MAX ? VQA_NEG_INF : 0.f);
        x[i] = IS_MAX ? attn_warp_max(y) : attn_warp_sum(y);
    }
    __syncthreads();
}

// Softmax of one chunk in place: sc[r][0, n) holds scores (log2 domain) on entry and p = 2^(s − m_r) on exit;
// returns m_r and l_r = sum p in m[], l[] (every thread). `red` holds 32·QPB floats.
template <int QPB>
__device__ __forceinline__ void attn_chunk_softmax(float* sc, int stride, int n, float (&mx)[QPB], float (&l)[QPB], float* red) {
    attn_block_reduce<QPB, true>(mx, red);
#pragma unroll
    for (int r = 0; r < QPB; ++r) l[r] = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
#pragma unroll
        for (int r = 0; r < QPB; ++r) {
            const float p = exp2f(sc[r * stride + i] - mx[r]);
            sc[r * stride + i] = p;
            l[r] += p;
        }
    }
    attn_block_reduce<QPB, false>(l, red);
}

// Writes the block's result for q head `hq`, channel d: o is the unnormalised accumulator sum_t p_t v_t.
__device__ __forceinline__ void attn_write_result(__half* __restrict__ out, float* __restrict__ ws_o, float* __restrict__ ws_ml,
                                                  int b, int hq, int q_heads, int D, int d, float o, float m, float l) {
    const int splits = gridDim.z, z = blockIdx.z;
    const size_t bh = (size_t)b * q_heads + hq;
    if (splits == 1) {
        out[bh * D + d] = __float2half(l > 0.f ? o / l : 0.f);
    } else {
        ws_o[(bh * splits + z) * D + d] = o;
        if (d == 0) {
            ws_ml[(bh * splits + z) * 2 + 0] = m;
            ws_ml[(bh * splits + z) * 2 + 1] = l;
        }
    }
}

// Writes the block's result for its QPB q heads [hq0, hq0 + QPB): channel d of head r is scale[r] times the sum of the
// NP partial accumulators parts[(p · QPB + r) · D + d] (one per warp, or per codebook part for the LUT level).
template <int QPB, int NP>
__device__ __forceinline__ void attn_write_block(const float* parts, const float (&scale)[QPB], const float (&mx)[QPB],
                                                 const float (&l)[QPB], __half* __restrict__ out, float* __restrict__ ws_o,
                                                 float* __restrict__ ws_ml, int b, int hq0, int q_heads, int D) {
    for (int i = threadIdx.x; i < QPB * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        float o = 0.f;
#pragma unroll
        for (int p = 0; p < NP; ++p) o += parts[(p * QPB + r) * D + d];
        // Row r's values without dynamic register indexing.
        float sr = scale[0], mr = mx[0], lr = l[0];
#pragma unroll
        for (int rr = 1; rr < QPB; ++rr)
            if (rr == r) {
                sr = scale[rr];
                mr = mx[rr];
                lr = l[rr];
            }
        attn_write_result(out, ws_o, ws_ml, b, hq0 + r, q_heads, D, d, o * sr, mr, lr);
    }
}

// What a flash-decoding block covers: sequence b = blockIdx.y, q heads [hq0, hq0 + qpb) sharing KV head h, and
// tokens [t0, t1) of token chunk `split` (n = t1 - t0, 0 for chunks past the sequence's length).
struct AttnBlock {
    int b, hq0, h, len, t0, t1, n;
};

__device__ __forceinline__ AttnBlock attn_block(const int* __restrict__ lens, int cap, int q_heads, int kv_heads, int qpb,
                                                int chunk, int split) {
    AttnBlock r;
    r.b = blockIdx.y;
    r.hq0 = blockIdx.x * qpb;
    r.h = r.hq0 / (q_heads / kv_heads);
    r.len = min(lens[r.b], cap);
    r.t0 = split * chunk;
    r.t1 = min(r.len, r.t0 + chunk);
    r.n = max(0, r.t1 - r.t0);
    return r;
}

template <class Cfg>
__device__ __forceinline__ void attn_fp16_body(const __half* __restrict__ q, const __half* __restrict__ k,
                                               const __half* __restrict__ v, const int* __restrict__ lens,
                                               __half* __restrict__ out, float* __restrict__ ws_o, float* __restrict__ ws_ml,
                                               int q_heads, int kv_heads, int cap, int chunk, float scale_log2) {
    constexpr int D = Cfg::D, QPB = Cfg::QPB, U = Cfg::UNROLL, NW = Cfg::WARPS;
    constexpr int LPT = D / 8;      // lanes per token (16-byte slices)
    constexpr int TPW = 32 / LPT;   // tokens per warp step
    static_assert(D % 64 == 0 && D <= 256 && 32 % LPT == 0, "head_dim 64, 128 or 256");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* red = reinterpret_cast<float*>(smem_raw);        // [32 * QPB] block reductions
    float* accs = red + 32 * QPB;                            // [NW][QPB][D] cross-warp V reduction
    float* sc = accs + NW * QPB * D;                         // [QPB][chunk] scores, then probabilities

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int sub = lane % LPT, slot = lane / LPT;
    const auto [b, hq0, h, len, t0, t1, n] = attn_block(lens, cap, q_heads, kv_heads, QPB, chunk, blockIdx.z);

    // This lane's 8 query channels of each q head, pre-scaled into the log2 domain.
    float qf[QPB][8];
#pragma unroll
    for (int r = 0; r < QPB; ++r) {
        const uint4 u = *reinterpret_cast<const uint4*>(q + ((size_t)b * q_heads + hq0 + r) * D + sub * 8);
        const __half2* hp = reinterpret_cast<const __half2*>(&u);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(hp[i]);
            qf[r][2 * i] = f.x * scale_log2;
            qf[r][2 * i + 1] = f.y * scale_log2;
        }
    }
    const size_t head_base = ((size_t)b * kv_heads + h) * cap * D;
    const __half* kb = k + head_base + sub * 8;
    const __half* vb = v + head_base + sub * 8;

    // Pass 1: scores.
    float mx[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) mx[r] = VQA_NEG_INF;
    for (int tb = t0 + warp * TPW * U; tb < t1; tb += NW * TPW * U) {
        uint4 raw[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * TPW + slot;
            raw[u] = t < t1 ? attn_ld_stream(kb + (size_t)t * D) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * TPW + slot;
            const __half2* hp = reinterpret_cast<const __half2*>(&raw[u]);
            float s[QPB];
#pragma unroll
            for (int r = 0; r < QPB; ++r) s[r] = 0.f;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float2 f = __half22float2(hp[i]);
#pragma unroll
                for (int r = 0; r < QPB; ++r) s[r] = fmaf(qf[r][2 * i + 1], f.y, fmaf(qf[r][2 * i], f.x, s[r]));
            }
#pragma unroll
            for (int r = 0; r < QPB; ++r) {
#pragma unroll
                for (int o = LPT / 2; o > 0; o >>= 1) s[r] += __shfl_xor_sync(VQA_FULL_MASK, s[r], o);
            }
            if (sub == 0 && t < t1) {
#pragma unroll
                for (int r = 0; r < QPB; ++r) {
                    sc[r * chunk + (t - t0)] = s[r];
                    mx[r] = fmaxf(mx[r], s[r]);
                }
            }
        }
    }
    __syncthreads();
    float l[QPB];
    attn_chunk_softmax<QPB>(sc, chunk, n, mx, l, red);

    // Pass 3: V.
    float acc[QPB][8];
#pragma unroll
    for (int r = 0; r < QPB; ++r)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][i] = 0.f;
    for (int tb = t0 + warp * TPW * U; tb < t1; tb += NW * TPW * U) {
        uint4 raw[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * TPW + slot;
            raw[u] = t < t1 ? attn_ld_stream(vb + (size_t)t * D) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * TPW + slot;
            if (t < t1) {
                const __half2* hp = reinterpret_cast<const __half2*>(&raw[u]);
#pragma unroll
                for (int r = 0; r < QPB; ++r) {
                    const float p = sc[r * chunk + (t - t0)];
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const float2 f = __half22float2(hp[i]);
                        acc[r][2 * i] = fmaf(p, f.x, acc[r][2 * i]);
                        acc[r][2 * i + 1] = fmaf(p, f.y, acc[r][2 * i + 1]);
                    }
                }
            }
        }
    }
    // Lanes with the same `sub` hold the same channels: reduce over the token slots of the warp.
#pragma unroll
    for (int r = 0; r < QPB; ++r)
#pragma unroll
        for (int i = 0; i < 8; ++i) {
#pragma unroll
            for (int o = LPT; o < 32; o <<= 1) acc[r][i] += __shfl_xor_sync(VQA_FULL_MASK, acc[r][i], o);
        }
    if (slot == 0) {
#pragma unroll
        for (int r = 0; r < QPB; ++r)
#pragma unroll
            for (int i = 0; i < 8; ++i) accs[(warp * QPB + r) * D + sub * 8 + i] = acc[r][i];
    }
    __syncthreads();
    float one[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) one[r] = 1.f;
    attn_write_block<QPB, NW>(accs, one, mx, l, out, ws_o, ws_ml, b, hq0, q_heads, D);
}

// Merges the split partials of one (sequence, q head): out = sum_z 2^(m_z − M) o_z / sum_z 2^(m_z − M) l_z.
// Grid (q_heads, batch), block D threads. Empty splits carry m = −inf, l = 0; an empty sequence gives zeros.
__device__ __forceinline__ void attn_combine_body(const float* __restrict__ ws_o, const float* __restrict__ ws_ml,
                                                  __half* __restrict__ out, int splits, int q_heads, int D) {
    // Every warp reads the splits' (m, l) pairs 32 at a time, one per lane, so the loads are in flight together
    // (a per-thread loop over the splits is a chain of dependent L2 round trips: ~4 us at 16 splits). The block
    // is D threads (a multiple of 32); all lanes take part in the shuffles.
    const int hq = blockIdx.x, b = blockIdx.y, d = threadIdx.x, lane = threadIdx.x % 32;
    const size_t bh = (size_t)b * q_heads + hq;
    const float* ml = ws_ml + bh * splits * 2;
    float M = VQA_NEG_INF;
    for (int z = lane; z < splits; z += 32) M = fmaxf(M, ml[2 * z]);
    M = attn_warp_max(M);
    float o = 0.f, l = 0.f;
    if (M != VQA_NEG_INF) {
        for (int z0 = 0; z0 < splits; z0 += 32) {
            const int z = z0 + lane;
            float w = 0.f;
            if (z < splits) {
                const float m = ml[2 * z];
                w = m == VQA_NEG_INF ? 0.f : exp2f(m - M);
                l = fmaf(w, ml[2 * z + 1], l);
            }
            const int nz = min(32, splits - z0);
            const float* po = ws_o + (bh * splits + z0) * D + d;
#pragma unroll 8
            for (int k = 0; k < nz; ++k) o = fmaf(__shfl_sync(VQA_FULL_MASK, w, k), d < D ? po[(size_t)k * D] : 0.f, o);
        }
        l = attn_warp_sum(l);
    }
    if (d < D) out[bh * D + d] = __float2half(l > 0.f ? o / l : 0.f);
}
