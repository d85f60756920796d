// attention_vq.cuh — decode attention straight on a VQ-compressed KV cache (CQ style), with the optimisation
// ladder of DESIGN.md section 4 selectable at compile time.
//
// Layouts (see also kv_quantize.cuh):
//   q                 [batch, q_heads, D] fp16
//   k_codes, v_codes  [batch, kv_heads, cap, G] u8       G = D / V channel groups, one code per group and token
//   k_cb, v_cb        [kv_heads, G, E, V] fp16            E = 2^BITS entries per (kv head, group) codebook
//                     LUT level: entry-major [kv_heads, E, G, V] instead (KvCacheGpu holds both): the table build
//                     maps lanes to consecutive groups, so one warp load is one contiguous run of G·V halves
//                     (group-major, every lane hit a different cache line: 32 L1 wavefronts per load).
//   lens [batch] int32, out [batch, q_heads, D] fp16, scale_log2 = log2(e)/sqrt(D)
// Codes are masked to BITS bits before any lookup, so stale cache bytes can never index outside a codebook.
//
// Dataflows
//   Token split (GC, SC, O1, O2, LUT): `vqa_fused_body`, block = (QPB q heads of one kv head, sequence, token
//     chunk), like flash-decoding: K pass -> scores of the chunk in shared memory -> chunk softmax -> V pass ->
//     (m, l, o) partials, merged by `attn_combine_body` (attention_fp16.cuh); with one chunk the block writes the
//     output directly. Every block needs its head's whole K and V codebooks (the duplicated traffic of the paper's
//     Fig. 5).
//   Codebook-centric group split (O3, O4; paper Fig. 11): the G groups of a head are split into S slices of GS
//     groups. `vqa_scores_body` (block = q heads, sequence, slice x token range) computes partial scores over its
//     slice's channels and writes them to ws_sc[S][batch][q_heads][ws_stride]; `vqa_values_body` (block = q heads,
//     sequence, slice) sums the S partials (the global reduction before the softmax), does the softmax over the
//     whole sequence and accumulates V for its own slice's channels only, so it writes its slice of the output
//     directly. Each block loads only its slice's codebooks.
//
// Codebook access (dequantizing levels; entries are frequency-ordered offline for O1+):
//   GC: global memory (__ldg); SC: every entry of the block's codebooks in shared memory; O1: entries
//   [0, N_SHARED) in shared memory, the rest from global; O2: plus entries [0, N_REG) of every group held in
//   registers spread over the lanes (VqaCodebook), fetched with a shuffle — lanes process the same group at the
//   same time, so the register set is uniform.
// V fusion:
//   VFUSION 0 (shared memory, the paper's baseline, Fig. 6): each lane dequantizes its token's row into a
//     per-warp tile, then lanes read it column-wise (lane = channel) and accumulate p_t · v.
//   VFUSION 1 (register level, O4): mini-warps of V lanes (V tokens); after dequantizing group j each lane holds V
//     channel values p_t · c; a reduce-scatter with V−1 shuffles leaves lane k of the mini-warp with channel
//     j·V + k summed over the V tokens, accumulated in a register indexed by the compile-time j.
//   VFUSION 2 (LUT): see below.
// LUT level (DESIGN.md section 8):
//   K: table[r][e][col(g)] = scale_log2 · <q_r[g·V .. g·V+V), CK[g][e]> built once per block (fp32, shared);
//      a token's score is sum_g table[code_g][col(g)]: one 4-byte shared read and an add per group.
//   V: the probability p_t of each token is added (fixed point, u32 shared atomics, native ATOMS.ADD) into a
//      histogram hist[r][e][col(g)] for each of its codes; at the end out[g·V + i] = sum_e hist[e][g] · CV[g][e][i].
//   Fixed point: P_t = round(p_t · 2^31 / l) with l = sum_t p_t of the chunk, so a group's counts sum to at most
//   2^31 + T/2 < 2^32 (no overflow) at a resolution of 2^-31 · l.
//   Lane mapping: each lane loads one 16-byte chunk of codes (16 groups of one token, or 2 tokens of 8 groups);
//   the table rows are ROW = max(G, 32) floats (64 for 8-bit codes and G = 32, see VqaDims), G < 32 keeps
//   REP = 32/G replicas side by side, and every lane walks its 16 codes in a rotated order so that at each step the
//   32 lanes hit 32 different banks. Cfg::PREROT: the cache stores every chunk in that order already (kv_layout.cuh,
//   written by kv_quantize); otherwise the chunk is rotated in registers with funnel shifts (vqa_rotate). Either
//   way the byte offsets stay compile-time constants.
//
// Cfg members: V, BITS, D, QPB (q heads per block, divides q_heads/kv_heads), WARPS, UNROLL (code loads in flight
// per lane), N_SHARED, N_REG, S (group slices; 1 = token split), VFUSION (0, 1, 2), LUT, PREFETCH, PREROT (bools).
#pragma once
#include "vq_common.cuh"
#include "attention_fp16.cuh"
#include "kv_layout.cuh"

template <class Cfg>
struct VqaDims {
    static constexpr int V = Cfg::V, D = Cfg::D, G = D / V, E = 1 << Cfg::BITS, S = Cfg::S, GS = G / S, CS = D / S;
    static constexpr int QPB = Cfg::QPB, NW = Cfg::WARPS, NT = 32 * NW;
    static constexpr uint32_t MASK = (uint32_t)E - 1u;
    // LUT geometry.
    // Table row stride (floats) per entry. 8-bit codes with G = 32 and one q head per block pad the row to 64 floats
    // (the upper half unused):
    // with 256-byte rows one PRMT forms the lookup address code·256 + column (vqa_lut_addr), a third fewer
    // instructions per K lookup and V histogram add; the table grows from 32 to 64 KiB per q head.
    static constexpr int ROW = (G == 32 && Cfg::BITS == 8 && QPB == 1) ? 64 : (G >= 32 ? G : 32);
    // Lane mapping (kv_layout.cuh): replicas of the G columns in a row, codes of one token in a 16-byte chunk, chunks
    // (lanes) per token, tokens per chunk, tokens per warp step (512 bytes of codes).
    using Lg = KvLutGeometry<G>;
    static constexpr int REP = Lg::REP, SEG = Lg::SEG, CPL = Lg::CPL, TPC = Lg::TPC, TPW_LUT = Lg::TPW;
    // Codebook build / finalize mapping: thread -> (group g = tid % G, part = tid / G) over EPP entries.
    static constexpr int NPART = NT / G;
    static constexpr int EPP = (E + NPART - 1) / NPART;
    static constexpr bool EXACT = NPART * EPP == E;       // every (part, k) names a valid entry: no bound checks
    // Dequantizing levels: channels per lane in the column phase of the shared-memory fusion.
    static constexpr int CH = (CS + 31) / 32;
    static constexpr int TILE_STRIDE = CS + V;            // halves per row of the per-warp V tile (padded)
    static_assert(D % V == 0 && G >= 8 && G <= 64, "head_dim / v must be 8, 16, 32 or 64");
    static_assert(G % S == 0 && GS >= 4 && GS % 4 == 0, "slices of at least 4 groups");
    static_assert(NT % G == 0, "threads per block must be a multiple of the group count");
};

// Byte offsets of the shared-memory regions (the host computes the same numbers: crates/codegen/src/attention.rs).
template <class Cfg>
struct VqaSmem {
    using Dm = VqaDims<Cfg>;
    static constexpr int al(int x) { return (x + 15) / 16 * 16; }
    static constexpr int RED = 0;
    static constexpr int QS = RED + al(32 * Dm::QPB * 4);
    static constexpr int TBL = QS + al(Dm::QPB * Dm::D * 4);
    static constexpr int TBL_BYTES = Cfg::LUT ? Dm::QPB * Dm::E * Dm::ROW * 4 : 0;
    static constexpr int FIN = TBL + al(TBL_BYTES);
    static constexpr int FIN_BYTES = Cfg::LUT ? Dm::NPART * Dm::QPB * Dm::D * 4 : 0;
    static constexpr int CBS = FIN + al(FIN_BYTES);
    static constexpr int CBS_BYTES = Cfg::LUT ? 0 : Dm::GS * Cfg::N_SHARED * Dm::V * 2;
    static constexpr int VT = CBS + al(CBS_BYTES);
    static constexpr int VT_BYTES = (!Cfg::LUT && Cfg::VFUSION == 0) ? Dm::NW * 32 * Dm::TILE_STRIDE * 2 : 0;
    static constexpr int VRED = VT + al(VT_BYTES);
    static constexpr int VRED_BYTES = Cfg::LUT ? 0 : Dm::NW * Dm::QPB * Dm::CS * 4;
    static constexpr int SC = VRED + al(VRED_BYTES);  // then QPB * chunk floats (run-time size)
};

// ---------------------------------------------------------------------------------------------------------------
// Small helpers.

// Loads NB bytes (4, 8, 16, 32 or 64) of codes at p (NB-aligned) into words.
template <int NB>
__device__ __forceinline__ void vqa_load_codes(const unsigned char* p, uint32_t (&w)[NB / 4]) {
    if constexpr (NB % 16 == 0) {
#pragma unroll
        for (int i = 0; i < NB / 16; ++i) {
            const uint4 u = __ldg(reinterpret_cast<const uint4*>(p) + i);
            w[4 * i] = u.x;
            w[4 * i + 1] = u.y;
            w[4 * i + 2] = u.z;
            w[4 * i + 3] = u.w;
        }
    } else if constexpr (NB == 8) {
        const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        w[0] = u.x;
        w[1] = u.y;
    } else {
        static_assert(NB == 4, "4, 8 or a multiple of 16 bytes");
        w[0] = __ldg(reinterpret_cast<const unsigned int*>(p));
    }
}

// Codes of tokens t, t + 32, ..., t + 32·(U-1) (one lane's tokens of a warp step; row stride G bytes), all loads in
// flight before use; tokens at or past t1 read as code 0 (never used: their probabilities / scores are masked).
template <int GS, int U>
__device__ __forceinline__ void vqa_load_token_codes(const unsigned char* __restrict__ codes, int G, int t, int t1,
                                                     uint32_t (&w)[U][GS / 4]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        if (t + 32 * u < t1) {
            vqa_load_codes<GS>(codes + (size_t)(t + 32 * u) * G, w[u]);
        } else {
#pragma unroll
            for (int i = 0; i < GS / 4; ++i) w[u][i] = 0u;
        }
    }
}

// Code j (compile-time after unrolling) of a row of words.
template <int N>
__device__ __forceinline__ uint32_t vqa_byte(const uint32_t (&w)[N], int j) {
    return (w[j / 4] >> (8 * (j % 4))) & 0xffu;
}

template <int V>
__device__ __forceinline__ float2 vqa_entry_f2(const Entry<V>& e, int i) {
    return __half22float2(e.h[i]);
}

// Copies entries [0, N_SHARED) of GS consecutive codebooks ([GS][E][V] in global) to shared ([GS][N_SHARED][V]).
template <class Cfg>
__device__ __forceinline__ void vqa_stage_codebooks(const __half* __restrict__ gl, __half* sm) {
    using Dm = VqaDims<Cfg>;
    constexpr int NS = Cfg::N_SHARED;
    if constexpr (NS > 0) {
        constexpr int PER = NS * Dm::V;  // halves per group
        if constexpr (PER % 8 == 0 && (Dm::E * Dm::V) % 8 == 0) {
            for (int i = threadIdx.x; i < Dm::GS * PER / 8; i += blockDim.x) {
                const int j = i / (PER / 8), rem = i % (PER / 8);
                reinterpret_cast<uint4*>(sm)[i] = __ldg(reinterpret_cast<const uint4*>(gl + (size_t)j * Dm::E * Dm::V) + rem);
            }
        } else {
            for (int i = threadIdx.x; i < Dm::GS * PER / 2; i += blockDim.x) {
                const int j = i / (PER / 2), rem = i % (PER / 2);
                reinterpret_cast<unsigned int*>(sm)[i] =
                    __ldg(reinterpret_cast<const unsigned int*>(gl + (size_t)j * Dm::E * Dm::V) + rem);
            }
        }
    }
}

// The codebook cache of the dequantizing levels for GS groups of one head.
// Register tier: N_REG (a power of two <= 32) hottest entries of every group, spread over lanes: lane l of
// register set k holds entry l % N_REG of group k·GPS + l / N_REG (GPS = 32 / N_REG groups per set), so the tier
// costs ceil(GS / GPS) · V/2 registers per lane; an entry is fetched with V/2 shuffles from a compile-time set.
template <class Cfg>
struct VqaCodebook {
    using Dm = VqaDims<Cfg>;
    static constexpr int V = Dm::V, E = Dm::E, W = V / 2;
    static constexpr int NR = Cfg::N_REG;
    static_assert(NR == 0 || (NR <= 32 && (NR & (NR - 1)) == 0), "N_REG must be a power of two <= 32");
    static constexpr int GPS = NR > 0 ? 32 / NR : 1;
    static constexpr int NSETS = NR > 0 ? (Dm::GS + GPS - 1) / GPS : 1;
    __half2 held[NSETS][W];
    const __half* gl;  // [GS][E][V] in global memory
    const __half* sm;  // [GS][N_SHARED][V] in shared memory

    __device__ __forceinline__ void load_registers(int lane) {
        if constexpr (NR > 0) {
            const int e = lane % NR;
#pragma unroll
            for (int k = 0; k < NSETS; ++k) {
                const int j = min(k * GPS + lane / NR, Dm::GS - 1);
                const __half2* p = reinterpret_cast<const __half2*>(gl + ((size_t)j * E + e) * V);
#pragma unroll
                for (int i = 0; i < W; ++i) held[k][i] = __ldg(p + i);
            }
        }
    }

    // Entry idx of group j. j must be a compile-time constant after unrolling; all lanes call together.
    __device__ __forceinline__ void get(int j, uint32_t idx, Entry<V>& e) const {
        if constexpr (NR > 0) {
            Entry<V> r;
            const int src = (j % GPS) * NR + (int)(idx & (uint32_t)(NR - 1));
#pragma unroll
            for (int i = 0; i < W; ++i) {
                const uint32_t u = __shfl_sync(VQA_FULL_MASK, *reinterpret_cast<const uint32_t*>(&held[j / GPS][i]), src);
                r.h[i] = *reinterpret_cast<const __half2*>(&u);
            }
            if (idx < (uint32_t)NR) {
                e = r;
                return;
            }
        }
        if constexpr (Cfg::N_SHARED >= E) {
            vq_load_entry_shared<V>(sm + ((size_t)j * Cfg::N_SHARED + idx) * V, e);
        } else if constexpr (Cfg::N_SHARED > 0) {
            if (idx < (uint32_t)Cfg::N_SHARED)
                vq_load_entry_shared<V>(sm + ((size_t)j * Cfg::N_SHARED + idx) * V, e);
            else
                vq_load_entry_global<V>(gl + ((size_t)j * E + idx) * V, e);
        } else {
            vq_load_entry_global<V>(gl + ((size_t)j * E + idx) * V, e);
        }
    }
};

// q rows of the block's QPB heads, channels [c0, c0 + n), scaled into the log2 domain, into qs[QPB][n].
__device__ __forceinline__ void vqa_stage_q(const __half* __restrict__ q, float* qs, int qpb, int b, int hq0, int q_heads, int D,
                                            int c0, int n, float scale_log2) {
    for (int i = threadIdx.x; i < qpb * n; i += blockDim.x) {
        const int r = i / n, c = i % n;
        qs[i] = __half2float(q[((size_t)b * q_heads + hq0 + r) * D + c0 + c]) * scale_log2;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dequantizing K pass (GC .. O4): lane = token, a lane reads its token's GS codes (GS bytes) and accumulates
// <q, entry> per group. Scores go to sc[r * stride + t - off]; the running max to mx (valid lanes only).
template <class Cfg>
__device__ __forceinline__ void vqa_k_dequant(const unsigned char* __restrict__ codes, const VqaCodebook<Cfg>& cb,
                                              const float* qs, float* sc, int stride, int off, int t0, int t1,
                                              float (&mx)[Cfg::QPB]) {
    using Dm = VqaDims<Cfg>;
    constexpr int GS = Dm::GS, V = Dm::V, QPB = Dm::QPB, U = Cfg::UNROLL, NW = Dm::NW, G = Dm::G;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int tb = t0 + warp * 32 * U; tb < t1; tb += NW * 32 * U) {
        uint32_t w[U][GS / 4];
        vqa_load_token_codes<GS, U>(codes, G, tb + lane, t1, w);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * 32 + lane;
            float s[QPB];
#pragma unroll
            for (int r = 0; r < QPB; ++r) s[r] = 0.f;
#pragma unroll
            for (int j = 0; j < GS; ++j) {
                const uint32_t idx = vqa_byte(w[u], j) & Dm::MASK;
                Entry<V> e;
                cb.get(j, idx, e);
#pragma unroll
                for (int i = 0; i < V / 2; ++i) {
                    const float2 f = vqa_entry_f2<V>(e, i);
#pragma unroll
                    for (int r = 0; r < QPB; ++r) {
                        const float2 qq = *reinterpret_cast<const float2*>(qs + r * Dm::CS + j * V + 2 * i);
                        s[r] = fmaf(qq.y, f.y, fmaf(qq.x, f.x, s[r]));
                    }
                }
            }
            if (t < t1) {
#pragma unroll
                for (int r = 0; r < QPB; ++r) {
                    sc[r * stride + t - off] = s[r];
                    mx[r] = fmaxf(mx[r], s[r]);
                }
            }
        }
    }
}

// Dequantizing V pass, shared-memory fusion (VFUSION 0). p[r * pstride + t - poff] are the probabilities;
// acc[r][k] accumulates channel lane + 32k of the slice over this warp's tokens.
template <class Cfg>
__device__ __forceinline__ void vqa_v_smem(const unsigned char* __restrict__ codes, const VqaCodebook<Cfg>& cb, const float* p,
                                           int pstride, int poff, int t0, int t1, __half* tile,
                                           float (&acc)[Cfg::QPB][VqaDims<Cfg>::CH]) {
    using Dm = VqaDims<Cfg>;
    constexpr int GS = Dm::GS, V = Dm::V, QPB = Dm::QPB, NW = Dm::NW, G = Dm::G, TS = Dm::TILE_STRIDE, CS = Dm::CS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __half* my = tile + (size_t)warp * 32 * TS;
    for (int tb = t0 + warp * 32; tb < t1; tb += NW * 32) {
        const int t = tb + lane;
        uint32_t w[GS / 4];
        if (t < t1) {
            vqa_load_codes<GS>(codes + (size_t)t * G, w);
        } else {
#pragma unroll
            for (int i = 0; i < GS / 4; ++i) w[i] = 0u;
        }
#pragma unroll
        for (int j = 0; j < GS; ++j) {
            Entry<V> e;
            cb.get(j, vqa_byte(w, j) & Dm::MASK, e);
            __half* dst = my + lane * TS + j * V;
            if constexpr (V == 2) {
                *reinterpret_cast<__half2*>(dst) = e.h[0];
            } else if constexpr (V == 4) {
                uint2 u;
                u.x = *reinterpret_cast<const uint32_t*>(&e.h[0]);
                u.y = *reinterpret_cast<const uint32_t*>(&e.h[1]);
                *reinterpret_cast<uint2*>(dst) = u;
            } else {
#pragma unroll
                for (int i = 0; i < V / 8; ++i) {
                    uint4 u;
                    u.x = *reinterpret_cast<const uint32_t*>(&e.h[4 * i + 0]);
                    u.y = *reinterpret_cast<const uint32_t*>(&e.h[4 * i + 1]);
                    u.z = *reinterpret_cast<const uint32_t*>(&e.h[4 * i + 2]);
                    u.w = *reinterpret_cast<const uint32_t*>(&e.h[4 * i + 3]);
                    reinterpret_cast<uint4*>(dst)[i] = u;
                }
            }
        }
        __syncwarp();
        const int nt = min(32, t1 - tb);
        for (int tt = 0; tt < nt; ++tt) {
            float pr[QPB];
#pragma unroll
            for (int r = 0; r < QPB; ++r) pr[r] = p[r * pstride + tb + tt - poff];
#pragma unroll
            for (int k = 0; k < Dm::CH; ++k) {
                const int c = lane + 32 * k;
                if (c < CS) {
                    const float x = __half2float(my[tt * TS + c]);
#pragma unroll
                    for (int r = 0; r < QPB; ++r) acc[r][k] = fmaf(pr[r], x, acc[r][k]);
                }
            }
        }
        __syncwarp();
    }
}

// Writes the shared-memory-fusion accumulators of this warp to vred[warp][r][c] (slice channels).
template <class Cfg>
__device__ __forceinline__ void vqa_v_smem_store(const float (&acc)[Cfg::QPB][VqaDims<Cfg>::CH], float* vred) {
    using Dm = VqaDims<Cfg>;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int r = 0; r < Dm::QPB; ++r)
#pragma unroll
        for (int k = 0; k < Dm::CH; ++k) {
            const int c = lane + 32 * k;
            if (c < Dm::CS) vred[(warp * Dm::QPB + r) * Dm::CS + c] = acc[r][k];
        }
}

// Reduce-scatter of V values over a mini-warp of V lanes: on return x[0] of lane l holds channel (l % V) summed
// over the V lanes of its mini-warp. V − 1 shuffles.
template <int V>
__device__ __forceinline__ float vqa_minwarp_reduce_scatter(float (&x)[V], int lane) {
#pragma unroll
    for (int m = V / 2; m >= 1; m /= 2) {
        const bool upper = (lane & m) != 0;
#pragma unroll
        for (int k = 0; k < m; ++k) {
            const float send = upper ? x[k] : x[m + k];
            const float keep = upper ? x[m + k] : x[k];
            x[k] = keep + __shfl_xor_sync(VQA_FULL_MASK, send, m);
        }
    }
    return x[0];
}

// Dequantizing V pass, register-level fusion (VFUSION 1, O4). acc[r][j] of lane l accumulates channel
// j·V + (l % V) of the slice over the tokens of its mini-warp.
template <class Cfg>
__device__ __forceinline__ void vqa_v_reg(const unsigned char* __restrict__ codes, const VqaCodebook<Cfg>& cb, const float* p,
                                          int pstride, int poff, int t0, int t1, float (&acc)[Cfg::QPB][VqaDims<Cfg>::GS]) {
    using Dm = VqaDims<Cfg>;
    constexpr int GS = Dm::GS, V = Dm::V, QPB = Dm::QPB, NW = Dm::NW, G = Dm::G, U = Cfg::UNROLL;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int tb = t0 + warp * 32 * U; tb < t1; tb += NW * 32 * U) {
        uint32_t w[U][GS / 4];
        vqa_load_token_codes<GS, U>(codes, G, tb + lane, t1, w);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = tb + u * 32 + lane;
            float pr[QPB];
#pragma unroll
            for (int r = 0; r < QPB; ++r) pr[r] = t < t1 ? p[r * pstride + t - poff] : 0.f;
#pragma unroll
            for (int j = 0; j < GS; ++j) {
                Entry<V> e;
                cb.get(j, vqa_byte(w[u], j) & Dm::MASK, e);
#pragma unroll
                for (int r = 0; r < QPB; ++r) {
                    float x[V];
#pragma unroll
                    for (int i = 0; i < V / 2; ++i) {
                        const float2 f = vqa_entry_f2<V>(e, i);
                        x[2 * i] = pr[r] * f.x;
                        x[2 * i + 1] = pr[r] * f.y;
                    }
                    acc[r][j] += vqa_minwarp_reduce_scatter<V>(x, lane);
                }
            }
        }
    }
}

// Finishes the register-fusion accumulators: reduce over the mini-warps of the warp, lanes < V write
// vred[warp][r][j·V + lane].
template <class Cfg>
__device__ __forceinline__ void vqa_v_reg_store(float (&acc)[Cfg::QPB][VqaDims<Cfg>::GS], float* vred) {
    using Dm = VqaDims<Cfg>;
    constexpr int V = Dm::V;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int r = 0; r < Dm::QPB; ++r)
#pragma unroll
        for (int j = 0; j < Dm::GS; ++j) {
            float a = acc[r][j];
#pragma unroll
            for (int o = V; o < 32; o <<= 1) a += __shfl_xor_sync(VQA_FULL_MASK, a, o);
            if (lane < V) vred[(warp * Dm::QPB + r) * Dm::CS + j * V + lane] = a;
        }
}

// ---------------------------------------------------------------------------------------------------------------
// LUT level.

// Asks L2 for [p, p + bytes) (p 16-byte aligned; the size is rounded down to 16). sm_90: one bulk prefetch issued
// by the calling thread; older GPUs: the block's threads prefetch one 128-byte line each (call from every thread).
__device__ __forceinline__ void vqa_prefetch_l2(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0 && bytes >= 16)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes & ~15u) : "memory");
#else
    for (uint32_t off = threadIdx.x * 128u; off < bytes; off += blockDim.x * 128u)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(static_cast<const char*>(p) + off));
#endif
}

// Rotates a 16-byte chunk so that byte j becomes original byte (j + rot) mod SEG within each SEG-byte segment.
template <int SEG>
__device__ __forceinline__ void vqa_rotate(uint32_t (&w)[4], int rot) {
    const int s = (rot & 3) * 8;
    if constexpr (SEG == 16) {
        uint32_t a0 = w[0], a1 = w[1], a2 = w[2], a3 = w[3];
        if (rot & 4) { const uint32_t t0 = a0; a0 = a1; a1 = a2; a2 = a3; a3 = t0; }
        if (rot & 8) { uint32_t t0 = a0; a0 = a2; a2 = t0; t0 = a1; a1 = a3; a3 = t0; }
        w[0] = __funnelshift_r(a0, a1, s);
        w[1] = __funnelshift_r(a1, a2, s);
        w[2] = __funnelshift_r(a2, a3, s);
        w[3] = __funnelshift_r(a3, a0, s);
    } else {
        static_assert(SEG == 8, "segments of 8 or 16 codes");
        uint32_t a0 = w[0], a1 = w[1], a2 = w[2], a3 = w[3];
        if (rot & 4) { uint32_t t0 = a0; a0 = a1; a1 = t0; t0 = a2; a2 = a3; a3 = t0; }
        w[0] = __funnelshift_r(a0, a1, s);
        w[1] = __funnelshift_r(a1, a0, s);
        w[2] = __funnelshift_r(a2, a3, s);
        w[3] = __funnelshift_r(a3, a2, s);
    }
}

// Per-lane constants of the LUT mapping: byte offsets (within a table row) of the column for rotated code j, kept in
// `off` in one of three packings:
//   PACKED (256-byte rows, every offset < 128, i.e. G = 32 padded): the 16 offsets are the bytes of 4 registers,
//     rotated like the codes, so that one PRMT builds the address from the code word and the offset word (the zero
//     upper bytes come from sign-replicating an offset byte, whose top bit is clear);
//   PAIRED (256-byte rows, offsets up to 252): two offsets per register (bytes 0 and 2, bytes 1 and 3 zero), half
//     the registers of one per offset, still one PRMT per lookup;
//   otherwise one register per offset.
// The registers are pinned (vq_pin): under a tight register cap ptxas rematerialised them every step (~50-100
// instructions per warp step).
template <class Cfg>
struct VqaLutLane {
    using Dm = VqaDims<Cfg>;
    static constexpr bool PACKED = Dm::ROW == 64 && Dm::G == 32 && Cfg::BITS == 8;
    static constexpr bool PAIRED = !PACKED && Dm::ROW == 64 && Cfg::BITS == 8 && Dm::SEG == 16;
    static constexpr int NOFF = PACKED ? 4 : PAIRED ? 8 : Dm::SEG;
    int rot, slot, c;
    uint32_t off[NOFF];
    __device__ __forceinline__ VqaLutLane(int lane) {
        int colbase;
        if constexpr (Dm::G >= 32) {
            c = lane % Dm::CPL;
            slot = lane / Dm::CPL;
            colbase = 16 * c;
        } else {
            c = 0;
            slot = lane;
            colbase = (lane % Dm::REP) * Dm::G;
        }
        rot = kv_lut_rot<Dm::G>(slot, c);
        if constexpr (PACKED) {
            static_assert(Dm::SEG == 16, "packed offsets rotate 16-byte chunks");
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const uint32_t b0 = 4u * (uint32_t)(colbase + 4 * i);  // <= 4 · (16 + 12) = 112: top bit clear
                off[i] = b0 | (b0 + 4u) << 8 | (b0 + 8u) << 16 | (b0 + 12u) << 24;
            }
            vqa_rotate<16>(off, rot);
#pragma unroll
            for (int i = 0; i < 4; ++i) vq_pin(off[i]);
        } else if constexpr (PAIRED) {
#pragma unroll
            for (int i = 0; i < 8; ++i)
                off[i] = vq_lut_offset_pair(4u * (uint32_t)(colbase + ((2 * i + rot) % 16)),
                                            4u * (uint32_t)(colbase + ((2 * i + 1 + rot) % 16)));
        } else {
#pragma unroll
            for (int j = 0; j < Dm::SEG; ++j) off[j] = 4u * (uint32_t)(colbase + ((j + rot) % Dm::SEG));
        }
    }

    // Byte offset of code j (compile-time) of the rotated chunk inside a [E][ROW] float table: code·ROW·4 + column.
    __device__ __forceinline__ uint32_t addr(const uint32_t (&w)[4], int j) const {
        constexpr uint32_t RB = Dm::ROW * 4;  // 128 or 256: a power of two above every column offset
        const uint32_t k = (uint32_t)(j % 4);
        if constexpr (PACKED) {
            // byte 0 = offset byte k, byte 1 = code byte k, bytes 2-3 = sign of the offset byte (0).
            // (PTX prmt, not __byte_perm: the intrinsic keeps only 3 bits of each selector nibble, dropping the
            // sign-replicate bit.)
            uint32_t a;
            asm("prmt.b32 %0, %1, %2, %3;" : "=r"(a) : "r"(w[j / 4]), "r"(off[j / 4]), "r"((0xCu + k) << 12 | (0xCu + k) << 8 | k << 4 | (4u + k)));
            return a;
        } else if constexpr (PAIRED) {
            return vq_lut_addr_pair(w[j / 4], off[j / 2], k, j % 2);
        } else if constexpr (RB == 256 && Cfg::BITS == 8) {
            // byte 0 = the column offset (< 256), byte 1 = code j, bytes 2-3 = 0 (upper bytes of the offset).
            return __byte_perm(w[j / 4], off[j % Dm::SEG], 0x7604u | k << 4);
        } else {
            const uint32_t code = (w[j / 4] >> (8 * k)) & Dm::MASK;
            return (code * RB) | off[j % Dm::SEG];
        }
    }
};

// Loads the chunk of codes of warp step `tb` for this lane (zeros past t1; never reads past token t1 − 1).
// FULL: the caller knows that the whole warp step lies before t1 (no checks, no zero fill).
template <class Cfg, bool FULL>
__device__ __forceinline__ void vqa_lut_load(const unsigned char* __restrict__ codes, int tb, int slot, int t1, uint32_t (&w)[4]) {
    using Dm = VqaDims<Cfg>;
    const int lane = threadIdx.x % 32;
    const int tl = tb + slot * Dm::TPC;  // first token of the chunk
    const unsigned char* p = codes + (size_t)tb * Dm::G + lane * 16;
    if constexpr (FULL) {
        const uint4 u = attn_ld_stream(p);
        w[0] = u.x; w[1] = u.y; w[2] = u.z; w[3] = u.w;
        return;
    }
    w[0] = w[1] = w[2] = w[3] = 0u;
    if constexpr (Dm::TPC == 1) {
        if (tl < t1) {
            const uint4 u = attn_ld_stream(p);
            w[0] = u.x; w[1] = u.y; w[2] = u.z; w[3] = u.w;
        }
    } else {
        if (tl + 1 < t1) {
            const uint4 u = attn_ld_stream(p);
            w[0] = u.x; w[1] = u.y; w[2] = u.z; w[3] = u.w;
        } else if (tl < t1) {
            const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
            w[0] = u.x; w[1] = u.y;
        }
    }
}

// Builds table[r][e][col] = <qs_r[g·V ..), CB[g][e]> (qs already scaled) for every (g, e) and replica column, or
// (FINAL) multiplies the histogram by the codebook: fin[part][r][g·V + i] = sum_{e in part} hist[r][e][g] · CB[g][e][i].
// Thread mapping: g = tid % G, part = tid / G owns entries [part·EPP, part·EPP + EPP): the EPP entries of one
// group are contiguous (one burst of loads per thread, all in flight), and the lanes of a warp touch different
// groups, i.e. different banks of a table row.
template <class Cfg, bool FINAL>
__device__ __forceinline__ void vqa_lut_codebook_pass(const __half* __restrict__ cb, const float* qs, float* tbl, float* fin) {
    using Dm = VqaDims<Cfg>;
    constexpr int V = Dm::V, E = Dm::E, G = Dm::G, EPP = Dm::EPP, QPB = Dm::QPB, ROW = Dm::ROW;
    const int g = threadIdx.x % G, part = threadIdx.x / G;
    const int e0 = part * EPP;
    Entry<V> ent[EPP];
#pragma unroll
    for (int k = 0; k < EPP; ++k) {
        const int e = Dm::EXACT ? e0 + k : min(e0 + k, E - 1);
        vq_load_entry_global<V>(cb + ((size_t)e * G + g) * V, ent[k]);  // entry-major: a warp reads one run
    }
    if constexpr (!FINAL) {
#pragma unroll
        for (int r = 0; r < QPB; ++r) {
            float qv[V];
#pragma unroll
            for (int i = 0; i < V; ++i) qv[i] = qs[r * Dm::D + g * V + i];
#pragma unroll
            for (int k = 0; k < EPP; ++k) {
                const int e = e0 + k;
                if (Dm::EXACT || e < E) {
                    float dot = 0.f;
#pragma unroll
                    for (int i = 0; i < V / 2; ++i) {
                        const float2 f = vqa_entry_f2<V>(ent[k], i);
                        dot = fmaf(qv[2 * i + 1], f.y, fmaf(qv[2 * i], f.x, dot));
                    }
#pragma unroll
                    for (int c = 0; c < Dm::REP; ++c) {
                        const int copy = (c + part) % Dm::REP;
                        tbl[((size_t)r * E + e) * ROW + copy * G + g] = dot;
                    }
                }
            }
        }
    } else {
        const uint32_t* hist = reinterpret_cast<const uint32_t*>(tbl);
#pragma unroll
        for (int r = 0; r < QPB; ++r) {
            float a[V];
#pragma unroll
            for (int i = 0; i < V; ++i) a[i] = 0.f;
#pragma unroll
            for (int k = 0; k < EPP; ++k) {
                const int e = e0 + k;
                if (Dm::EXACT || e < E) {
                    uint32_t h = 0;
#pragma unroll
                    for (int c = 0; c < Dm::REP; ++c) h += hist[((size_t)r * E + e) * ROW + c * G + g];
                    const float hf = (float)h;
#pragma unroll
                    for (int i = 0; i < V / 2; ++i) {
                        const float2 f = vqa_entry_f2<V>(ent[k], i);
                        a[2 * i] = fmaf(hf, f.x, a[2 * i]);
                        a[2 * i + 1] = fmaf(hf, f.y, a[2 * i + 1]);
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < V; ++i) fin[(part * QPB + r) * Dm::D + g * V + i] = a[i];
        }
    }
}

// One warp iteration of the LUT K pass: U steps of TPW tokens from tb. FULL: every token of the iteration is before
// t1, so loads, stores and the running max go unchecked (all but the last iteration of a chunk: ~10% fewer
// instructions per iteration in the SASS).
template <class Cfg, bool FULL>
__device__ __forceinline__ void vqa_lut_k_iter(const unsigned char* __restrict__ codes, const unsigned char* tb_bytes,
                                               const VqaLutLane<Cfg>& L, float* sc, int stride, int t0, int t1, int tb,
                                               float (&mx)[Cfg::QPB]) {
    using Dm = VqaDims<Cfg>;
    constexpr int QPB = Dm::QPB, U = Cfg::UNROLL, TPW = Dm::TPW_LUT, SEG = Dm::SEG, TPC = Dm::TPC;
    constexpr int TBL_R = Dm::E * Dm::ROW * 4;  // bytes per q head's table
    uint32_t w[U][4];
#pragma unroll
    for (int u = 0; u < U; ++u) vqa_lut_load<Cfg, FULL>(codes, tb + u * TPW, L.slot, t1, w[u]);
#pragma unroll
    for (int u = 0; u < U; ++u) {
        if constexpr (!Cfg::PREROT) vqa_rotate<SEG>(w[u], L.rot);  // else stored rotated (kv_layout.cuh)
        // Two chains of adds per score (even / odd codes): half the dependent-add latency per step.
        float s2[2][TPC][QPB], s[TPC][QPB];
#pragma unroll
        for (int k = 0; k < TPC; ++k)
#pragma unroll
            for (int r = 0; r < QPB; ++r) s2[0][k][r] = s2[1][k][r] = 0.f;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const uint32_t a = L.addr(w[u], j);
#pragma unroll
            for (int r = 0; r < QPB; ++r) s2[j % 2][j / SEG][r] += *reinterpret_cast<const float*>(tb_bytes + r * TBL_R + a);
        }
#pragma unroll
        for (int k = 0; k < TPC; ++k)
#pragma unroll
            for (int r = 0; r < QPB; ++r) s[k][r] = s2[0][k][r] + s2[1][k][r];
        if constexpr (Dm::CPL > 1) {
#pragma unroll
            for (int r = 0; r < QPB; ++r)
#pragma unroll
                for (int o = 1; o < Dm::CPL; o <<= 1) s[0][r] += __shfl_xor_sync(VQA_FULL_MASK, s[0][r], o);
        }
        if (L.c == 0) {
#pragma unroll
            for (int k = 0; k < TPC; ++k) {
                const int t = tb + u * TPW + L.slot * TPC + k;
                if (FULL || t < t1) {
#pragma unroll
                    for (int r = 0; r < QPB; ++r) {
                        sc[r * stride + t - t0] = s[k][r];
                        mx[r] = fmaxf(mx[r], s[k][r]);
                    }
                }
            }
        }
    }
}

// LUT K pass over tokens [t0, t1): scores to sc[r * stride + t - t0], running max to mx.
template <class Cfg>
__device__ __forceinline__ void vqa_lut_k(const unsigned char* __restrict__ codes, const float* tbl, float* sc, int stride, int t0,
                                          int t1, float (&mx)[Cfg::QPB]) {
    using Dm = VqaDims<Cfg>;
    constexpr int STEP = Dm::TPW_LUT * Cfg::UNROLL;  // tokens of one warp iteration
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const VqaLutLane<Cfg> L(lane);
    const unsigned char* tb_bytes = reinterpret_cast<const unsigned char*>(tbl);
    int tb = t0 + warp * STEP;
    for (; tb + STEP <= t1; tb += Dm::NW * STEP) vqa_lut_k_iter<Cfg, true>(codes, tb_bytes, L, sc, stride, t0, t1, tb, mx);
    if (tb < t1) vqa_lut_k_iter<Cfg, false>(codes, tb_bytes, L, sc, stride, t0, t1, tb, mx);
}

// One warp iteration of the LUT V pass (FULL as in vqa_lut_k_iter).
template <class Cfg, bool FULL>
__device__ __forceinline__ void vqa_lut_v_iter(const unsigned char* __restrict__ codes, unsigned char* hb, const VqaLutLane<Cfg>& L,
                                               const float* p, int stride, int t0, int t1, int tb, const float (&fs)[Cfg::QPB]) {
    using Dm = VqaDims<Cfg>;
    constexpr int QPB = Dm::QPB, U = Cfg::UNROLL, TPW = Dm::TPW_LUT, SEG = Dm::SEG, TPC = Dm::TPC;
    constexpr int TBL_R = Dm::E * Dm::ROW * 4;
    uint32_t w[U][4];
#pragma unroll
    for (int u = 0; u < U; ++u) vqa_lut_load<Cfg, FULL>(codes, tb + u * TPW, L.slot, t1, w[u]);
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int tl = tb + u * TPW + L.slot * TPC;
        if (!FULL && tl >= t1) continue;
        if constexpr (!Cfg::PREROT) vqa_rotate<SEG>(w[u], L.rot);  // else stored rotated (kv_layout.cuh)
        uint32_t P[TPC][QPB];
#pragma unroll
        for (int k = 0; k < TPC; ++k)
#pragma unroll
            for (int r = 0; r < QPB; ++r)
                P[k][r] = (FULL || tl + k < t1) ? __float2uint_rn(p[r * stride + tl + k - t0] * fs[r]) : 0u;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const uint32_t a = L.addr(w[u], j);
#pragma unroll
            for (int r = 0; r < QPB; ++r) atomicAdd(reinterpret_cast<uint32_t*>(hb + r * TBL_R + a), P[j / SEG][r]);
        }
    }
}

// LUT V pass: adds each token's fixed-point probability into the histogram (u32, aliased on the table).
template <class Cfg>
__device__ __forceinline__ void vqa_lut_v(const unsigned char* __restrict__ codes, uint32_t* hist, const float* p, int stride, int t0,
                                          int t1, const float (&fs)[Cfg::QPB]) {
    using Dm = VqaDims<Cfg>;
    constexpr int STEP = Dm::TPW_LUT * Cfg::UNROLL;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const VqaLutLane<Cfg> L(lane);
    unsigned char* hb = reinterpret_cast<unsigned char*>(hist);
    int tb = t0 + warp * STEP;
    for (; tb + STEP <= t1; tb += Dm::NW * STEP) vqa_lut_v_iter<Cfg, true>(codes, hb, L, p, stride, t0, t1, tb, fs);
    if (tb < t1) vqa_lut_v_iter<Cfg, false>(codes, hb, L, p, stride, t0, t1, tb, fs);
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels.

// Token-split kernel (GC, SC, O1, O2, LUT). Grid (q_heads / QPB, batch, splits); dynamic shared memory
// VqaSmem<Cfg>::SC + 4 · QPB · chunk bytes.
template <class Cfg>
__device__ __forceinline__ void vqa_fused_body(const __half* __restrict__ q, const unsigned char* __restrict__ k_codes,
                                               const unsigned char* __restrict__ v_codes, const __half* __restrict__ k_cb,
                                               const __half* __restrict__ v_cb, const int* __restrict__ lens, __half* __restrict__ out,
                                               float* __restrict__ ws_o, float* __restrict__ ws_ml, int q_heads, int kv_heads,
                                               int cap, int chunk, float scale_log2) {
    using Dm = VqaDims<Cfg>;
    using Sm = VqaSmem<Cfg>;
    static_assert(Cfg::S == 1, "the token-split kernel covers all groups");
    constexpr int QPB = Dm::QPB, D = Dm::D, G = Dm::G, E = Dm::E, V = Dm::V;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* red = reinterpret_cast<float*>(smem_raw + Sm::RED);
    float* qs = reinterpret_cast<float*>(smem_raw + Sm::QS);
    float* sc = reinterpret_cast<float*>(smem_raw + Sm::SC);

    const auto [b, hq0, h, len, t0, t1, n] = attn_block(lens, cap, q_heads, kv_heads, QPB, chunk, blockIdx.z);
    const size_t head = (size_t)b * kv_heads + h;
    const unsigned char* kc = k_codes + head * cap * G;
    const unsigned char* vc = v_codes + head * cap * G;
    const __half* kcb = k_cb + (size_t)h * G * E * V;
    const __half* vcb = v_cb + (size_t)h * G * E * V;

    vqa_stage_q(q, qs, QPB, b, hq0, q_heads, D, 0, D, scale_log2);
    float mx[QPB], l[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) mx[r] = VQA_NEG_INF;

    if constexpr (Cfg::LUT) {
        if constexpr (Cfg::PREFETCH) {
            const uint32_t nb = (uint32_t)n * G;  // n = 0 for chunks past the length
            vqa_prefetch_l2(kc + (size_t)t0 * G, nb);
            vqa_prefetch_l2(vc + (size_t)t0 * G, nb);
            vqa_prefetch_l2(vcb, (uint32_t)(G * E * V * 2));
        }
        float* tbl = reinterpret_cast<float*>(smem_raw + Sm::TBL);
        float* fin = reinterpret_cast<float*>(smem_raw + Sm::FIN);
        __syncthreads();
        vqa_lut_codebook_pass<Cfg, false>(kcb, qs, tbl, fin);
        __syncthreads();
        vqa_lut_k<Cfg>(kc, tbl, sc, chunk, t0, t1, mx);
        __syncthreads();
        attn_chunk_softmax<QPB>(sc, chunk, n, mx, l, red);  // ends with a barrier: the table is free
        uint32_t* hist = reinterpret_cast<uint32_t*>(tbl);
        for (int i = threadIdx.x; i < QPB * E * Dm::ROW / 4; i += blockDim.x) reinterpret_cast<uint4*>(hist)[i] = make_uint4(0u, 0u, 0u, 0u);
        float fs[QPB];
#pragma unroll
        for (int r = 0; r < QPB; ++r) fs[r] = l[r] > 0.f ? 2147483648.f / l[r] : 0.f;
        __syncthreads();
        vqa_lut_v<Cfg>(vc, hist, sc, chunk, t0, t1, fs);
        __syncthreads();
        vqa_lut_codebook_pass<Cfg, true>(vcb, qs, tbl, fin);
        __syncthreads();
        // The histogram counted probabilities in units of l · 2^-31.
        float unit[QPB];
#pragma unroll
        for (int r = 0; r < QPB; ++r) unit[r] = l[r] * 4.656612873077393e-10f;
        attn_write_block<QPB, Dm::NPART>(fin, unit, mx, l, out, ws_o, ws_ml, b, hq0, q_heads, D);
    } else {
        __half* cbs = reinterpret_cast<__half*>(smem_raw + Sm::CBS);
        float* vred = reinterpret_cast<float*>(smem_raw + Sm::VRED);
        const int lane = threadIdx.x % 32;
        VqaCodebook<Cfg> cb;
        cb.gl = kcb;
        cb.sm = cbs;
        vqa_stage_codebooks<Cfg>(kcb, cbs);
        cb.load_registers(lane);
        __syncthreads();
        vqa_k_dequant<Cfg>(kc, cb, qs, sc, chunk, t0, t0, t1, mx);
        __syncthreads();
        attn_chunk_softmax<QPB>(sc, chunk, n, mx, l, red);  // ends with a barrier: the staged K codebooks are free
        cb.gl = vcb;
        vqa_stage_codebooks<Cfg>(vcb, cbs);
        cb.load_registers(lane);
        __syncthreads();
        constexpr int NACC = Cfg::VFUSION == 1 ? Dm::GS : Dm::CH;
        float acc[QPB][NACC];
#pragma unroll
        for (int r = 0; r < QPB; ++r)
#pragma unroll
            for (int k = 0; k < NACC; ++k) acc[r][k] = 0.f;
        if constexpr (Cfg::VFUSION == 1) {
            vqa_v_reg<Cfg>(vc, cb, sc, chunk, t0, t0, t1, acc);
            vqa_v_reg_store<Cfg>(acc, vred);
        } else {
            vqa_v_smem<Cfg>(vc, cb, sc, chunk, t0, t0, t1, reinterpret_cast<__half*>(smem_raw + Sm::VT), acc);
            vqa_v_smem_store<Cfg>(acc, vred);
        }
        __syncthreads();
        float one[QPB];
#pragma unroll
        for (int r = 0; r < QPB; ++r) one[r] = 1.f;
        attn_write_block<QPB, Dm::NW>(vred, one, mx, l, out, ws_o, ws_ml, b, hq0, q_heads, D);
    }
}

// Codebook-centric phase 1 (O3, O4): partial scores of slice s over tokens [ts·chunk, ts·chunk + chunk) into
// ws_sc[s][b][hq][t] (t < len only; nothing else is written). Grid (q_heads / QPB, batch, S · token_splits),
// blockIdx.z = ts · S + s. Dynamic shared memory VqaSmem<Cfg>::SC bytes (no score buffer).
template <class Cfg>
__device__ __forceinline__ void vqa_scores_body(const __half* __restrict__ q, const unsigned char* __restrict__ k_codes,
                                                const __half* __restrict__ k_cb, const int* __restrict__ lens,
                                                float* __restrict__ ws_sc, int q_heads, int kv_heads, int cap, int chunk,
                                                int ws_stride, float scale_log2) {
    using Dm = VqaDims<Cfg>;
    using Sm = VqaSmem<Cfg>;
    static_assert(!Cfg::LUT, "the group-split kernels dequantize");
    constexpr int QPB = Dm::QPB, D = Dm::D, G = Dm::G, E = Dm::E, V = Dm::V, S = Dm::S, GS = Dm::GS, CS = Dm::CS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* qs = reinterpret_cast<float*>(smem_raw + Sm::QS);
    __half* cbs = reinterpret_cast<__half*>(smem_raw + Sm::CBS);
    const int s = blockIdx.z % S;
    const auto [b, hq0, h, len, t0, t1, n] = attn_block(lens, cap, q_heads, kv_heads, QPB, chunk, blockIdx.z / S);
    const size_t head = (size_t)b * kv_heads + h;
    const unsigned char* kc = k_codes + head * cap * G + s * GS;
    const __half* kcb = k_cb + ((size_t)h * G + s * GS) * E * V;

    vqa_stage_q(q, qs, QPB, b, hq0, q_heads, D, s * CS, CS, scale_log2);
    VqaCodebook<Cfg> cb;
    cb.gl = kcb;
    cb.sm = cbs;
    vqa_stage_codebooks<Cfg>(kcb, cbs);
    cb.load_registers(threadIdx.x % 32);
    __syncthreads();
    float mx[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) mx[r] = VQA_NEG_INF;
    float* dst = ws_sc + (((size_t)s * gridDim.y + b) * q_heads + hq0) * ws_stride;
    vqa_k_dequant<Cfg>(kc, cb, qs, dst, ws_stride, 0, t0, t1, mx);
}

// Codebook-centric phase 2 (O3, O4): sums the S partial scores of (b, hq), softmax over the whole sequence, then
// V for slice s only; writes out[b][hq][s·CS .. s·CS + CS). Grid (q_heads / QPB, batch, S); tokens are handled
// in tiles of `tile` probabilities. Dynamic shared memory VqaSmem<Cfg>::SC + 4 · QPB · tile bytes.
template <class Cfg>
__device__ __forceinline__ void vqa_values_body(const unsigned char* __restrict__ v_codes, const __half* __restrict__ v_cb,
                                                const int* __restrict__ lens, const float* __restrict__ ws_sc,
                                                __half* __restrict__ out, int q_heads, int kv_heads, int cap, int tile,
                                                int ws_stride) {
    using Dm = VqaDims<Cfg>;
    using Sm = VqaSmem<Cfg>;
    static_assert(!Cfg::LUT, "the group-split kernels dequantize");
    constexpr int QPB = Dm::QPB, D = Dm::D, G = Dm::G, E = Dm::E, V = Dm::V, S = Dm::S, GS = Dm::GS, CS = Dm::CS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* red = reinterpret_cast<float*>(smem_raw + Sm::RED);
    __half* cbs = reinterpret_cast<__half*>(smem_raw + Sm::CBS);
    float* vred = reinterpret_cast<float*>(smem_raw + Sm::VRED);
    float* pt = reinterpret_cast<float*>(smem_raw + Sm::SC);
    const int b = blockIdx.y, s = blockIdx.z;
    const int n_rep = q_heads / kv_heads;
    const int hq0 = blockIdx.x * QPB;
    const int h = hq0 / n_rep;
    const int len = min(lens[b], cap);
    const size_t head = (size_t)b * kv_heads + h;
    const unsigned char* vc = v_codes + head * cap * G + s * GS;
    const __half* vcb = v_cb + ((size_t)h * G + s * GS) * E * V;
    const size_t slice_stride = (size_t)gridDim.y * q_heads * ws_stride;
    const float* base = ws_sc + ((size_t)b * q_heads + hq0) * ws_stride;

    // Stage this slice's V codebooks while the statistics are computed.
    VqaCodebook<Cfg> cb;
    cb.gl = vcb;
    cb.sm = cbs;
    vqa_stage_codebooks<Cfg>(vcb, cbs);
    cb.load_registers(threadIdx.x % 32);

    // Global reduction of the partial scores and softmax statistics over the whole sequence.
    float mx[QPB], l[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) {
        mx[r] = VQA_NEG_INF;
        l[r] = 0.f;
    }
    for (int t = threadIdx.x; t < len; t += blockDim.x) {
#pragma unroll
        for (int r = 0; r < QPB; ++r) {
            float x = 0.f;
#pragma unroll
            for (int z = 0; z < S; ++z) x += base[z * slice_stride + (size_t)r * ws_stride + t];
            const float m2 = fmaxf(mx[r], x);
            l[r] = l[r] * exp2f(mx[r] - m2) + exp2f(x - m2);
            mx[r] = m2;
        }
    }
    float mloc[QPB];
#pragma unroll
    for (int r = 0; r < QPB; ++r) mloc[r] = mx[r];
    attn_block_reduce<QPB, true>(mx, red);
#pragma unroll
    for (int r = 0; r < QPB; ++r) l[r] = mloc[r] == VQA_NEG_INF ? 0.f : l[r] * exp2f(mloc[r] - mx[r]);
    attn_block_reduce<QPB, false>(l, red);

    constexpr int NACC = Cfg::VFUSION == 1 ? GS : Dm::CH;
    float accv[QPB][NACC];
#pragma unroll
    for (int r = 0; r < QPB; ++r)
#pragma unroll
        for (int k = 0; k < NACC; ++k) accv[r][k] = 0.f;
    for (int tt0 = 0; tt0 < len; tt0 += tile) {
        const int tt1 = min(len, tt0 + tile);
        for (int t = tt0 + threadIdx.x; t < tt1; t += blockDim.x) {
#pragma unroll
            for (int r = 0; r < QPB; ++r) {
                float x = 0.f;
#pragma unroll
                for (int z = 0; z < S; ++z) x += base[z * slice_stride + (size_t)r * ws_stride + t];
                pt[r * tile + t - tt0] = exp2f(x - mx[r]);
            }
        }
        __syncthreads();
        if constexpr (Cfg::VFUSION == 1) {
            vqa_v_reg<Cfg>(vc, cb, pt, tile, tt0, tt0, tt1, accv);
        } else {
            __half* vt = reinterpret_cast<__half*>(smem_raw + Sm::VT);
            vqa_v_smem<Cfg>(vc, cb, pt, tile, tt0, tt0, tt1, vt, accv);
        }
        __syncthreads();
    }
    if constexpr (Cfg::VFUSION == 1) vqa_v_reg_store<Cfg>(accv, vred);
    else vqa_v_smem_store<Cfg>(accv, vred);
    __syncthreads();
    for (int i = threadIdx.x; i < QPB * CS; i += blockDim.x) {
        const int r = i / CS, c = i % CS;
        float o = 0.f;
#pragma unroll
        for (int w = 0; w < Dm::NW; ++w) o += vred[(w * QPB + r) * CS + c];
        float lr = l[0];
#pragma unroll
        for (int rr = 1; rr < QPB; ++rr)
            if (rr == r) lr = l[rr];
        out[((size_t)b * q_heads + hq0 + r) * D + s * CS + c] = __float2half(lr > 0.f ? o / lr : 0.f);
    }
}
