// vq_mma.cuh — VQ GeMM / batch-16 GeMV on tensor cores: mma.sync.m16n8k16 (f16 inputs, f32 accumulators).
//
// Register-level fusion (O4) without shuffles. mma's B fragment gives lane (g, t) the reduction slots
// {2t, 2t+1, 2t+8, 2t+9} of weight row g. The reduction order inside a k16 step is free as long as A (the
// activations) and B (the weights) agree, so slots are mapped to physical columns such that lane t's four slots
// are four *consecutive* columns of the vector it decoded itself (block j of 4·V columns, vector t):
//     step σ of block j (σ < V/4):  slots (2t,2t+1) -> cols j·4V + V·t + 4σ + {0,1}
//                                    slots (2t+8,2t+9) -> cols j·4V + V·t + 4σ + {2,3}
// For V = 2 a k16 step spans two blocks: slots (2t,2t+1) -> block 2σ', (2t+8,2t+9) -> block 2σ'+1.
// The tile layout (docs/kernel-layout.md) already hands lane (g, t) exactly those vectors, so each lane
// decodes its vectors once into registers and feeds them to every m16 slice of the block's activations.
// Every level of this kernel uses this fusion (the layout makes it free), so O4 equals O3 here; the paper's
// shared-memory exchange path is not implemented.
//
// Block: WARPS warps; warp w owns WN row blocks (8 weight rows each); all warps share BM activation rows
// (BM = 16·MT) staged per k tile in shared memory in fragment order (vq_mma_xcol: one LDS.128 per A fragment).
// Loop order (XHOIST): vector slot j outer and row blocks inner loads a slot's activation fragments once for the WN
// row blocks; row blocks outer keeps a row block's VPC codebook lookups in flight together (global-tier codebooks).
// CB_COPIES: each staged 16-byte codebook entry is stored CB_COPIES times and lane l reads copy l % CB_COPIES
// (vq_lookup), so random entries no longer collide on shared-memory banks.
// Extra Cfg members: MT, WN, WARPS, SPLIT, XHOIST, PIPE, CB_COPIES.
#pragma once
#include "vq_common.cuh"

__device__ __forceinline__ void vq_mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <class Cfg>
struct MmaShape {
    static constexpr int TV = 4 * Cfg::VPC;
    static constexpr int TK = TV * Cfg::V;          // input columns per k tile
    static constexpr int BM = 16 * Cfg::MT;
    static constexpr int STEPS = TK / 16;           // k16 steps per k tile
};

// The staged activation tile is kept in fragment order: for k16 step st and m16 slice mt, lane l's four A registers
// are the 16 bytes at uint4 index (st·MT + mt)·32 + l, so one conflict-free LDS.128 loads a whole A fragment, already
// in the register order mma wants, and the staging writes whole fragments (conflict-free STS.128).
// Tile column of the pair (a0, a1) (p = 0) or (a2, a3) (p = 1) of lane column t in step st (see the mapping above).
template <class Cfg>
__device__ __forceinline__ int vq_mma_xcol(int st, int t, int p) {
    constexpr int V = Cfg::V;
    if constexpr (V >= 4) return (st / (V / 4)) * 4 * V + V * t + 4 * (st % (V / 4)) + 2 * p;
    else return (2 * st + p) * 8 + 2 * t;
}

// Decodes vector j of a lane's chunk into V/2 half2: the sum of its residual stages' codebook entries (learned
// codebooks; E8P codes decode by vq_decode_e8p_vec, or vq_mma_e8p_slot on the tensor-core path).
template <class Cfg>
__device__ __forceinline__ void vq_decode_vec(const uint32_t (&chunk)[4 * Cfg::L], int j, const RegTier<Cfg>& reg, const __half* cb_set,
                                              const __half* sm_set, __half2* out) {
    static_assert(!Cfg::E8P, "learned codebooks");
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, RB = R * B;
#pragma unroll
    for (int s = 0; s < R; ++s) {
        const uint32_t idx = vq_code_at<B>(chunk, j * RB + s * B);
        Entry<V> e;
        vq_lookup<Cfg>(reg, s, idx, cb_set, sm_set, e);
#pragma unroll
        for (int i = 0; i < V / 2; ++i) out[i] = (s == 0) ? e.h[i] : __hadd2(out[i], e.h[i]);
    }
}

// mma steps per vector slot and slots per step: V >= 4 feeds V / 4 k16 steps from one vector; V == 2 pairs slots
// j and j + 1 (block j gives slots 2t, 2t+1, block j + 1 slots 2t+8, 2t+9) into one k16 step, taken on even j.
template <class Cfg>
struct MmaSlots {
    static constexpr int NSG = Cfg::V >= 4 ? Cfg::V / 4 : 1;
    static constexpr int STEP = Cfg::V >= 4 ? 1 : 2;
};

// A fragment of k16 step sg of vector slot j (V == 2: slots j and j + 1), m16 slice mt: one 16-byte load.
template <class Cfg>
__device__ __forceinline__ void vq_mma_afrag(const __half* xs, int j, int sg, int mt, int lane, uint32_t (&a)[4]) {
    constexpr int st_of_slot = Cfg::V >= 4 ? Cfg::V / 4 : 1;  // V == 2: slot j (even) is step j / 2
    const int st = Cfg::V >= 4 ? j * st_of_slot + sg : j / 2;
    const uint4 f = reinterpret_cast<const uint4*>(xs)[(st * Cfg::MT + mt) * 32 + lane];
    a[0] = f.x; a[1] = f.y; a[2] = f.z; a[3] = f.w;
}

// Decodes row block w's vector(s) of slot j (weight row `row`) and feeds them with the A fragments to the mma steps.
template <class Cfg>
__device__ __forceinline__ void vq_mma_slot(float (&acc)[Cfg::MT][Cfg::WN][4], int w, const uint32_t (&chunk)[4 * Cfg::L], int j, int row,
                                            int col0, int cols, int t, const RegTier<Cfg>& reg, const __half* __restrict__ codebooks,
                                            const __half* cbs, const uint32_t (&a)[MmaSlots<Cfg>::NSG][Cfg::MT][4]) {
    constexpr int V = Cfg::V, MT = Cfg::MT, ENTRIES = 1 << Cfg::B;
    // Per-tile codebooks can change inside a k tile (codebook tiles narrower than 4·VPC·V columns).
    auto cb_of = [&](int jj) {
        const __half* cb = codebooks;
        if constexpr (Cfg::TILE_ROWS > 0) cb += (size_t)vq_set_of<Cfg>(row, col0 + (4 * jj + t) * V, cols) * Cfg::R * ENTRIES * V;
        return cb;
    };
    __half2 wv[V >= 4 ? V / 2 : 2];
    vq_decode_vec<Cfg>(chunk, j, reg, cb_of(j), cbs, wv);
    if constexpr (V == 2) vq_decode_vec<Cfg>(chunk, j + 1, reg, cb_of(j + 1), cbs, wv + 1);
#pragma unroll
    for (int sg = 0; sg < MmaSlots<Cfg>::NSG; ++sg) {
        const uint32_t b0 = *reinterpret_cast<uint32_t*>(&wv[2 * sg]);
        const uint32_t b1 = *reinterpret_cast<uint32_t*>(&wv[2 * sg + 1]);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) vq_mma_16816(acc[mt][w], a[sg][mt][0], a[sg][mt][1], a[sg][mt][2], a[sg][mt][3], b0, b1);
    }
}

// Adds a C fragment (c0,c1 at act row m, weight rows n, n+1; c2,c3 at act row m+8) to the split-K workspace ws
// (m_total x rows floats), n even. The blocks of a one-wave grid all reach this together, so their L2 atomic
// operations queue up. A warp's scalar atomics here touch 8 sectors with 4 floats each; a pair per lane (8-byte
// reductions, vq_red_add2, where rows is even) fills the sectors and halves the requests. H100, batch 16,
// 4096x11008 / 8192x22016: gptvq2 at 4 warps 15.5 / 39.6 -> 14.3 / 38.8 us, aqlm-2x8 21.0 / 48.0 -> 19.2 / 46.8.
// 16-byte reductions after a swap between lanes t and t^1 measured the same as pairs (perf-notes v0.29).
__device__ __forceinline__ void vq_mma_reduce_fragment(float* __restrict__ ws, const float (&c)[4], int m, int n,
                                                       int m_total, int rows) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int mm = m + 8 * h;
        if (mm >= m_total) continue;
        float* at = ws + (size_t)mm * rows + n;
        if (n + 1 < rows && (rows & 1) == 0) {
            vq_red_add2(at, c[2 * h], c[2 * h + 1]);
        } else {
            if (n < rows) atomicAdd(at, c[2 * h]);
            if (n + 1 < rows) atomicAdd(at + 1, c[2 * h + 1]);
        }
    }
}

// E8P on tensor cores. The decode stops before its bias step (vq_e8p_biased_pairs: pair i comes out as value + c_i,
// exact in fp16), which saves 4 HADD2 a code, and the stages are not summed in half2 (4 HFMA2 a vector): stage s feeds
// its own mma steps into its own accumulators, scaled by ss_s in fp32 at the end. The offsets are taken off once per
// output: sum_k x_k·(q_k - c_k) = sum x·q + sum x·(-c), and the second sum is the same for every weight row and stage,
// so one mma per step with the constant fragment of -c_i (vq_mma_e8p_bias) accumulates it for the whole warp. The
// products x·q are ~35x larger than x·(q - c) (c up to 131.75 against |values| <= 3.75): in fp32 accumulators that
// costs ~5 of 24 bits. The codes come in the layout of crates/codegen/src/e8p_mma.rs: abs bytes in words 0-1 of each
// 16-byte group, the sign bits spread in words 2-3, so the decode spends a mask and a multiply on the signs
// (vq_decode_e8p_spread) instead of spreading them.
template <class Cfg>
struct E8pAcc {
    static constexpr int STAGE1 = Cfg::E8P && Cfg::R == 2;  // second stage's accumulators (none otherwise)
    float stage1[STAGE1 ? Cfg::MT : 1][STAGE1 ? Cfg::WN : 1][4];
    float bias[Cfg::MT][4];  // sum x·(-c) (every weight column of the fragment gets the same value)
};

// Accumulates sum x·(-c) of one slot's activation fragments.
template <class Cfg>
__device__ __forceinline__ void vq_mma_e8p_bias(float (&bias)[Cfg::MT][4], const uint32_t (&a)[MmaSlots<Cfg>::NSG][Cfg::MT][4]) {
#pragma unroll
    for (int sg = 0; sg < MmaSlots<Cfg>::NSG; ++sg)
#pragma unroll
        for (int mt = 0; mt < Cfg::MT; ++mt)
            vq_mma_16816(bias[mt], a[sg][mt][0], a[sg][mt][1], a[sg][mt][2], a[sg][mt][3], vq_e8p_pair_bias(2 * sg),
                         vq_e8p_pair_bias(2 * sg + 1));
}

// Decodes row block w's vector j (biased, every stage) and feeds each stage to its mma steps.
template <class Cfg>
__device__ __forceinline__ void vq_mma_e8p_slot(float (&acc)[Cfg::MT][Cfg::WN][4], E8pAcc<Cfg>& e, int w,
                                                const uint32_t (&chunk)[4 * Cfg::L], int j, const uint32_t* abs_s,
                                                const uint32_t (&a)[MmaSlots<Cfg>::NSG][Cfg::MT][4]) {
    static_assert(Cfg::V == 8 && (Cfg::R == 1 || Cfg::R == 2), "E8P: 8-dim vectors, one or two stages");
#pragma unroll
    for (int s = 0; s < Cfg::R; ++s) {
        // Code c of the chunk (c = 2j + s with two stages, j with one): group c / 8, abs byte c % 4 of its word
        // (c % 8) / 4, sign bits at bit c % 4 of each nibble of its word 2 + (c % 8) / 4.
        const int c = Cfg::R == 2 ? 2 * j + s : j, grp = 4 * (c / 8), half = (c % 8) / 4, sh = c % 4;
        const uint32_t row = (chunk[grp + half] >> (8 * sh)) & 0xffu;
        uint32_t q[4];
        vq_decode_e8p_spread(chunk[grp + 2 + half], sh, abs_s[row], q);
        auto feed = [&](float (&out)[Cfg::MT][Cfg::WN][4]) {
#pragma unroll
            for (int sg = 0; sg < MmaSlots<Cfg>::NSG; ++sg)
#pragma unroll
                for (int mt = 0; mt < Cfg::MT; ++mt)
                    vq_mma_16816(out[mt][w], a[sg][mt][0], a[sg][mt][1], a[sg][mt][2], a[sg][mt][3], q[2 * sg], q[2 * sg + 1]);
        };
        if (s == 0) {
            feed(acc);
        } else if constexpr (E8pAcc<Cfg>::STAGE1) {
            feed(e.stage1);
        }
    }
}

template <class Cfg>
__device__ __forceinline__ void vq_mma_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                            const __half* __restrict__ scales, const uint32_t* __restrict__ e8p_abs,
                                            const __half* __restrict__ x, __half* __restrict__ y, float* __restrict__ ws,
                                            int m_total, int rows, int cols, int kb, int tiles_per_split, float ss0, float ss1) {
    using S = MmaShape<Cfg>;
    constexpr int V = Cfg::V, MT = Cfg::MT, WN = Cfg::WN, VPC = Cfg::VPC, TK = S::TK, BM = S::BM;
    constexpr int ENTRIES = 1 << Cfg::B;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* xs = reinterpret_cast<__half*>(smem_raw);                       // [STEPS][MT][32 lanes][8] (fragment order)
    __half* cbs = xs + BM * TK;                                                // [R][N_SHARED][CB_COPIES][V] (tensor scope)
    uint32_t* abs_s = reinterpret_cast<uint32_t*>(cbs + (Cfg::N_SHARED > 0 ? Cfg::R * Cfg::N_SHARED * Cfg::CB_COPIES * V : 0));

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int m0 = blockIdx.z * BM;
    const int rb0 = (blockIdx.x * Cfg::WARPS + warp) * WN;
    const int tile0 = blockIdx.y * tiles_per_split;
    const int tile1 = min(kb, tile0 + tiles_per_split);

    // TILE_STAGE: per-tile codebooks (gptvq2) with N_SHARED = all entries: each k tile's set is staged below, in the
    // k loop, CB_COPIES times (one 128-byte row per entry); the tensor-scope staging here is skipped.
    constexpr bool TILE_STAGE = Cfg::TILE_ROWS > 0 && Cfg::N_SHARED >= ENTRIES && !Cfg::E8P;
    static_assert(!TILE_STAGE || Cfg::CB_COPIES * 2 * V == 128, "tile stage: one 128-byte row of copies per entry");
    if constexpr (Cfg::TILE_ROWS == 0 && Cfg::N_SHARED > 0 && !Cfg::E8P && Cfg::CB_COPIES == 1) {
        for (int i = threadIdx.x; i < Cfg::R * Cfg::N_SHARED * V; i += blockDim.x) {
            const int s = i / (Cfg::N_SHARED * V), ev = i % (Cfg::N_SHARED * V);
            cbs[i] = codebooks[(size_t)s * ENTRIES * V + ev];
        }
    } else if constexpr (Cfg::TILE_ROWS == 0 && Cfg::N_SHARED > 0 && !Cfg::E8P) {
        // [R][N_SHARED][CB_COPIES][V]: every 16-byte entry CB_COPIES times (see vq_lookup).
        static_assert(V == 8 && Cfg::N_SHARED >= ENTRIES, "codebook copies: 16-byte entries, whole codebook");
        constexpr int C = Cfg::CB_COPIES;
        for (int i = threadIdx.x; i < Cfg::R * Cfg::N_SHARED * C; i += blockDim.x) {
            const int es = i / C, s = es / Cfg::N_SHARED, e = es % Cfg::N_SHARED;
            reinterpret_cast<uint4*>(cbs)[i] = *reinterpret_cast<const uint4*>(codebooks + ((size_t)s * ENTRIES + e) * V);
        }
    }
    if constexpr (Cfg::E8P) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) abs_s[i] = e8p_abs[i];
    }
    RegTier<Cfg> reg;
    if constexpr (Cfg::N_REG > 0) reg.load(codebooks, lane);
    // This lane's copy of the staged codebook entries (vq_lookup).
    const __half* cb_lane = cbs + (Cfg::CB_COPIES > 1 ? (lane % Cfg::CB_COPIES) * V : 0);

    float acc[MT][WN][4];
#pragma unroll
    for (int a = 0; a < MT; ++a)
#pragma unroll
        for (int b = 0; b < WN; ++b)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;
    E8pAcc<Cfg> e8p{};  // E8P: the second stage's sums and the bias sum, zeroed (combined with acc at the end)

    // One tile ahead (PIPE, batch <= 16): the next tile's codes and activations are loaded into registers before
    // this tile's lookups and mma steps, so their L2/DRAM latency overlaps the compute instead of stalling every tile
    // at its barrier. Larger activation tiles (MT > 1) keep their registers for the accumulators and stage in place.
    // The planner sets PIPE (plan.mma_pipe) for one m16 slice of at most 4 pieces per thread.
    constexpr int XR = (BM * (TK / 8) + Cfg::WARPS * 32 - 1) / (Cfg::WARPS * 32);
    constexpr bool PIPE = Cfg::PIPE;
    static_assert(!PIPE || (MT == 1 && XR <= 4), "pipelined mma: one m16 slice, <= 4 activation pieces per thread");
    // Chunk of row block w at k tile `tile`: uint4 offset w·row_stride + tile·32·L from this lane's tile-0 chunk.
    const uint4* lane_codes = codes + (size_t)rb0 * kb * 32 * Cfg::L + lane * Cfg::L;
    const size_t row_stride = (size_t)kb * 32 * Cfg::L;
    auto load_block = [&](int tile, int w, uint32_t (&c)[4 * Cfg::L]) {
        if ((rb0 + w) * 8 < rows) {
            vq_load_chunk<Cfg::L>(lane_codes + w * row_stride, (size_t)tile, 0, c);
        } else {
            // Row blocks past the matrix decode code 0 (no branch around the mma steps); the store skips them.
#pragma unroll
            for (int q = 0; q < 4 * Cfg::L; ++q) c[q] = 0u;
        }
    };
    auto load_codes = [&](int tile, uint32_t (&c)[WN][4 * Cfg::L]) {
#pragma unroll
        for (int w = 0; w < WN; ++w) load_block(tile, w, c[w]);
    };
    // Fragment slot f = (st·MT + mt)·32 + l of a tile: A registers {a0, a1, a2, a3} = rows (g, g+8) x column pairs
    // (p = 0, 1) of lane (g, t) = (l / 4, l % 4), zero outside the matrix. Pairs are loaded as 32-bit words (two pairs
    // as one 64-bit word when V >= 4, where they are adjacent) if the row length keeps them aligned.
    const bool cols_even = cols % 2 == 0, cols_quad = cols % 4 == 0;
    auto x_pair = [&](int m, int c) -> uint32_t {
        if (m >= m_total || c >= cols) return 0u;
        const __half* p = x + (size_t)m * cols + c;
        if (cols_even) return *reinterpret_cast<const uint32_t*>(p);
        __half2 h = __halves2half2(p[0], c + 1 < cols ? p[1] : __float2half(0.f));
        return *reinterpret_cast<uint32_t*>(&h);
    };
    // Thread item i stages fragment slot x_slot(i): lane bits (t, g % 2, SL steps) vary fastest, so a warp's 64-bit
    // loads cover two rows of 128 contiguous bytes each (not 8 rows of 32 bytes) and each 8-lane phase of its
    // 16-byte stores hits 8 different bank groups (slot mod 8 = 4·(g % 2) + t).
    constexpr int SL = S::STEPS % 4 == 0 ? 4 : S::STEPS % 2 == 0 ? 2 : 1;
    auto x_slot = [&](int i) {
        const int t = i & 3, gp = (i >> 2) & 1, stl = (i >> 3) % SL, rest = (i >> 3) / SL;
        const int gh = rest & 3, mt = (rest >> 2) % MT, st = (rest >> 2) / MT * SL + stl;
        return (st * MT + mt) * 32 + 4 * (2 * gh + gp) + t;
    };
    auto x_frag = [&](int tile, int i) {
        uint4 v = make_uint4(0, 0, 0, 0);
        if (i >= BM * (TK / 8)) return v;
        const int f = x_slot(i);
        const int l = f % 32, st = f / 32 / MT, mt = f / 32 % MT;
        const int m = m0 + mt * 16 + l / 4;
        const int c0 = tile * TK + vq_mma_xcol<Cfg>(st, l % 4, 0), c1 = tile * TK + vq_mma_xcol<Cfg>(st, l % 4, 1);
        if (V >= 4 && cols_quad) {
            if (m < m_total && c0 < cols) {
                const uint2 u = *reinterpret_cast<const uint2*>(x + (size_t)m * cols + c0);
                v.x = u.x; v.z = u.y;
            }
            if (m + 8 < m_total && c0 < cols) {
                const uint2 u = *reinterpret_cast<const uint2*>(x + (size_t)(m + 8) * cols + c0);
                v.y = u.x; v.w = u.y;
            }
        } else {
            v.x = x_pair(m, c0); v.y = x_pair(m + 8, c0); v.z = x_pair(m, c1); v.w = x_pair(m + 8, c1);
        }
        return v;
    };
    auto x_store = [&](int i, uint4 v) {
        if (i < BM * (TK / 8)) reinterpret_cast<uint4*>(xs)[x_slot(i)] = v;
    };
    // TILE_STAGE: the k tile's codebook set ([R][ENTRIES][V] halves, SP 16-byte pieces per thread) is loaded with the
    // codes (a tile ahead under PIPE) and each entry written as its 128-byte row of copies (vq_store_copy_row).
    // The block's rows lie in one codebook row band and its k tiles in whole codebook tiles (the planner checks both).
    constexpr int SET_PIECES = TILE_STAGE ? Cfg::R * ENTRIES * V / 8 : 1;
    constexpr int SP = (SET_PIECES + Cfg::WARPS * 32 - 1) / (Cfg::WARPS * 32);
    auto load_set = [&](int tile, uint4 (&p)[SP]) {
        if constexpr (TILE_STAGE) {
            const int block_row0 = blockIdx.x * Cfg::WARPS * WN * 8;
            const uint4* set = reinterpret_cast<const uint4*>(codebooks) +
                               (size_t)vq_set_of<Cfg>(min(block_row0, rows - 1), tile * TK, cols) * SET_PIECES;
#pragma unroll
            for (int q = 0; q < SP; ++q) {
                const int i = threadIdx.x + q * Cfg::WARPS * 32;
                if (i < SET_PIECES) p[q] = __ldg(set + i);
            }
        }
    };
    auto store_set = [&](const uint4 (&p)[SP]) {
        if constexpr (TILE_STAGE) {
            constexpr int PER_PIECE = 8 / V;  // entries per 16-byte piece
#pragma unroll
            for (int q = 0; q < SP; ++q) {
                const int i = threadIdx.x + q * Cfg::WARPS * 32;
                if (i >= SET_PIECES) continue;
                const uint32_t w[4] = {p[q].x, p[q].y, p[q].z, p[q].w};
#pragma unroll
                for (int e = 0; e < PER_PIECE; ++e)
                    vq_store_copy_row(reinterpret_cast<uint4*>(cbs) + (size_t)(i * PER_PIECE + e) * 8,
                                      vq_entry_word<V>(w + e * V / 2), lane);
            }
        }
    };
    uint4 set_regs[SP];
    // Pipelined with row blocks outer (RELOAD): each row block's codes of the next tile are loaded into its own chunk
    // registers as soon as its last slot has read them, so they are in flight during the other row blocks' slots (at
    // least WN - 1 of WN row blocks' work) and need neither a second set of registers nor a copy per tile. Slots
    // outer read every row block's chunk until the tile's last slot: those load the next tile into next_chunk.
    constexpr bool RELOAD = PIPE && !Cfg::XHOIST;
    uint32_t chunk[WN][4 * Cfg::L], next_chunk[PIPE && !RELOAD ? WN : 1][4 * Cfg::L];
    uint4 xr[PIPE ? XR : 1];
    if constexpr (RELOAD) {
        if (tile0 < tile1) load_codes(tile0, chunk);
    } else if constexpr (PIPE) {
        if (tile0 < tile1) load_codes(tile0, next_chunk);
    }
    if (PIPE && tile0 < tile1) load_set(tile0, set_regs);
    // Everything above reads the weights only (codes, codebooks, the E8P table), so under a programmatic launch it
    // overlaps the kernel before this one (quip4's activation transform, the previous call's finalize). The
    // activations that kernel writes, and the outputs and workspace, are touched only below.
    vq_pdl_wait();
    if (PIPE && tile0 < tile1) {
#pragma unroll
        for (int q = 0; q < XR; ++q) xr[q] = x_frag(tile0, threadIdx.x + q * Cfg::WARPS * 32);
    }

    for (int tile = tile0; tile < tile1; ++tile) {
        if constexpr (PIPE && !RELOAD) {
#pragma unroll
            for (int w = 0; w < WN; ++w)
#pragma unroll
                for (int q = 0; q < 4 * Cfg::L; ++q) chunk[w][q] = next_chunk[w][q];
        } else if constexpr (!PIPE) {
            load_codes(tile, chunk);  // codes first: their latency overlaps the staging
            load_set(tile, set_regs);
        }
        __syncthreads();
        store_set(set_regs);
        if constexpr (PIPE) {
#pragma unroll
            for (int q = 0; q < XR; ++q) x_store(threadIdx.x + q * Cfg::WARPS * 32, xr[q]);
        } else {
            for (int i = threadIdx.x; i < BM * (TK / 8); i += blockDim.x) x_store(i, x_frag(tile, i));
        }
        __syncthreads();
        if (PIPE && tile + 1 < tile1) {
            if constexpr (PIPE && !RELOAD) load_codes(tile + 1, next_chunk);
            load_set(tile + 1, set_regs);
#pragma unroll
            for (int q = 0; q < XR; ++q) xr[q] = x_frag(tile + 1, threadIdx.x + q * Cfg::WARPS * 32);
        }
        const int col0 = tile * TK;
        using Sl = MmaSlots<Cfg>;
        auto afrags = [&](int j, uint32_t (&a)[Sl::NSG][MT][4]) {
#pragma unroll
            for (int sg = 0; sg < Sl::NSG; ++sg)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) vq_mma_afrag<Cfg>(xs, j, sg, mt, lane, a[sg][mt]);
        };
        // One row block's vector slot j; E8P: `first` (once per slot and warp) also accumulates the slot's bias sum.
        auto slot = [&](int w, int j, const uint32_t (&a)[Sl::NSG][MT][4], bool first) {
            if constexpr (Cfg::E8P) {
                if (first) vq_mma_e8p_bias<Cfg>(e8p.bias, a);
                vq_mma_e8p_slot<Cfg>(acc, e8p, w, chunk[w], j, abs_s, a);
            } else {
                const int row = min((rb0 + w) * 8 + g, rows - 1);  // codebook set of rows past the matrix: any valid one
                vq_mma_slot<Cfg>(acc, w, chunk[w], j, row, col0, cols, t, reg, codebooks, cb_lane, a);
            }
        };
        if constexpr (Cfg::XHOIST) {
            // Slots outer, row blocks inner: a slot's activation fragments are loaded from shared memory once and feed
            // the WN row blocks (row blocks outer reloaded them WN times: a third of the shared-memory wavefronts).
#pragma unroll
            for (int j = 0; j < VPC; j += Sl::STEP) {
                uint32_t a[Sl::NSG][MT][4];
                afrags(j, a);
#pragma unroll
                for (int w = 0; w < WN; ++w)
                    if (PIPE || (rb0 + w) * 8 < rows) slot(w, j, a, w == 0);  // the branch keeps MT > 1 tiles from spilling
            }
        } else {
            // Row blocks outer: each row block's VPC lookups are independent and in flight together, which hides the
            // latency of codebooks read from global memory (large codebooks in a partial shared tier).
#pragma unroll
            for (int w = 0; w < WN; ++w) {
                // Row blocks past the matrix are skipped here: without the branch ptxas hoists the lookups of all WN
                // row blocks of the large (MT = 8) GeMM tiles together and spills kilobytes.
                if ((rb0 + w) * 8 >= rows) continue;
#pragma unroll
                for (int j = 0; j < VPC; j += Sl::STEP) {
                    uint32_t a[Sl::NSG][MT][4];
                    afrags(j, a);
                    slot(w, j, a, w == 0);  // row block 0 is past the matrix only where all are
                }
                if (RELOAD && tile + 1 < tile1) load_block(tile + 1, w, chunk[w]);
            }
        }
    }
    // C fragment: c0,c1 -> (act row g, weight rows 2t, 2t+1); c2,c3 -> (act row g+8, same weight rows).
#pragma unroll
    for (int w = 0; w < WN; ++w) {
        const int n = (rb0 + w) * 8 + 2 * t;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float (&out)[4] = acc[mt][w];
            if constexpr (Cfg::E8P) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const float b = e8p.bias[mt][c];
                    out[c] = ss0 * (out[c] + b);
                    if constexpr (E8pAcc<Cfg>::STAGE1) out[c] += ss1 * (e8p.stage1[mt][w][c] + b);
                }
            }
            const int m = m0 + mt * 16 + g;
            if constexpr (Cfg::SPLIT == 1) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int mm = m + (c >= 2 ? 8 : 0), nn = n + (c & 1);
                    if (mm >= m_total || nn >= rows) continue;
                    const float sc = Cfg::SCALE ? __half2float(scales[nn]) : 1.f;
                    y[(size_t)mm * rows + nn] = __float2half(out[c] * sc);
                }
            } else {
                vq_mma_reduce_fragment(ws, out, m, n, m_total, rows);
            }
        }
    }
}
