// vq_lut_large.cuh — lookup-table GeMV for batch 1 with codebooks too large for vq_lut_gemv.cuh (aqlm3: two
// stages of 4096 entries, 24-bit vectors, 48-byte lane chunks).
//
// vq_lut_gemv.cuh keeps one fp32 table for every group of a k tile and every stage: for aqlm3 that is
// 64 groups x 2 x 4096 entries x 4 B = 2 MiB, far past shared memory. Here a block builds the table of one *unit*:
//     unit (tile T, lane column t, stage s)  ->  Tab[e][j] = < x[group T·4·VPC + t + 4j], codebook[s][e] >  (fp16)
// for the VPC groups j that lane column t owns in every row block (docs/kernel-layout.md), 2^B x VPC x 2 bytes
// (aqlm3: 4096 x 16 x 2 = 128 KiB, one block of 32 warps per SM). Every lane then takes one weight row: it loads
// its row's VPC stage-s codes and adds their table entries, one 2-byte shared read each, where the dequantizing GeMV
// reads a 16-byte entry and does V multiply-adds. The codes are re-packed for this at upload (the lane layout,
// crates/codegen/src/layout.rs `lane_stage_codes`): per unit and 32-row group, word-major across the lanes, so a
// warp's loads are whole 128-byte lines and a unit reads only its own stage's bits. (The tile layout, kept for the
// TMA path, puts a warp's 32 rows 4·L words apart: 32 lines per 16-byte load instruction, every stage's bits.)
//
// Costs and why they are acceptable:
//   - a unit's table (2^B·VPC entries x V/2 HFMA2) is built once per block range: the planner only picks this
//     kernel when the rows sharing a table outnumber its entries enough to amortise it;
//   - partial sums, one per (unit, row), reach the fp32 workspace with coalesced atomics (32 lanes = 32 rows).
//
// Bank conflicts: a row of the table is WORDS = VPC/2 words, so the bank of (e, j) is (e·WORDS + j/2) mod 32: its
// high bits come from e (random), its low log2(WORDS) bits from j.
//   - Lane layout (the default): lanes fall in WORDS classes (lane mod WORDS), and class c walks its row's VPC codes
//     from column 2c on (j = (i + 2c) mod VPC at step i; the codes are stored in that order at upload, so the bit
//     offsets stay compile-time). At a step the classes read disjoint bank sets, and only the 32 / WORDS lanes of
//     a class can collide: aqlm3 (WORDS = 8), 4 lanes over 4 banks, ~3 wavefronts per warp read.
//   - TMA path (tile layout, natural order): all lanes read the same column j at a step, which would put 32 lanes
//     on 32·2/VPC banks; the word is therefore swizzled, j/2 ^ sw(e) with sw(e) the bits of e above those that
//     already select the bank, so the bank is uniform in e (~3.5 wavefronts per warp read).
//
// Work split (stream mode, as in vq_lut_gemv.cuh): the (unit, 32-row group) pairs, unit major, are cut into
// gridDim.x equal ranges; a range that crosses into the next unit rebuilds the table.
//
// Extra Cfg members: WARPS. Requires M == 1, learned codebooks for the tensor, VPC a power of two >= 2.
#pragma once
#include "vq_common.cuh"

template <class Cfg>
struct LutLarge {
    static constexpr int V = Cfg::V, B = Cfg::B, R = Cfg::R, L = Cfg::L, VPC = Cfg::VPC;
    static constexpr int ENTRIES = 1 << B;
    static constexpr int WORDS = VPC / 2;  // 32-bit words (fp16 pairs) per table row
    static constexpr int ROW_SHIFT = vq_log2(2 * VPC);  // log2 of the row's bytes
    // sw(e) = (e >> SW_SHIFT) & SW_MASK: rows of WORDS words put 32 / WORDS consecutive entries on distinct banks,
    // the next bits of e pick the word rotation.
    static constexpr int SW_MASK = (WORDS < 32 ? WORDS : 32) - 1;
    static constexpr int SW_SHIFT = WORDS >= 32 ? 0 : 5 - vq_log2(WORDS);
    static constexpr int THREADS = 32 * Cfg::WARPS;
    static_assert(VPC >= 2 && (VPC & (VPC - 1)) == 0, "VPC must be a power of two");
    static_assert(THREADS % WORDS == 0, "threads per table row");
    static_assert(Cfg::M == 1 && !Cfg::E8P && Cfg::TILE_ROWS == 0, "LUT-large preconditions");

    __device__ static uint32_t swizzle(uint32_t e) { return Cfg::CODE_TMA ? (e >> SW_SHIFT) & SW_MASK : 0u; }

    // Byte offset of (e, j) in the table.
    __device__ static uint32_t offset(uint32_t e, int j) {
        return (e << ROW_SHIFT) + ((2u * j) ^ (swizzle(e) << 2));
    }
};

// Table of unit (tile, t, s) from the stage's codebook `cb` (staged in shared memory, or global). Thread -> word jp (groups 2jp, 2jp+1; their activations stay in registers) and
// entries e = tid / WORDS + i·(THREADS / WORDS): a warp reads 32 / WORDS codebook entries (broadcast within the
// entry) and stores whole table rows, a conflict-free 128-byte line per warp.
template <class Cfg>
__device__ __forceinline__ void vq_lutl_build(const __half* cb, const __half* __restrict__ x, unsigned char* table, int cols,
                                              int tile, int t) {
    using G = LutLarge<Cfg>;
    constexpr int V = G::V;
    const int jp = threadIdx.x % G::WORDS;
    __half2 xv[2][V / 2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int col = (tile * 4 * G::VPC + t + 4 * (2 * jp + h)) * V;
#pragma unroll
        for (int k = 0; k < V / 2; ++k)
            xv[h][k] = col < cols ? reinterpret_cast<const __half2*>(x + col)[k] : __float2half2_rn(0.f);
    }
#pragma unroll(Cfg::CB_STAGE ? 4 : 2)  // 4 measured (staged); 2 keeps the L1 variant (sm_80) from spilling
    for (int e = threadIdx.x / G::WORDS; e < G::ENTRIES; e += G::THREADS / G::WORDS) {
        __half2 c[V / 2];
        if constexpr (V == 8 || V == 16) {
#pragma unroll
            for (int q = 0; q < V / 8; ++q) {
                const uint4 u = reinterpret_cast<const uint4*>(cb + (size_t)e * V)[q];
                c[4 * q + 0] = *reinterpret_cast<const __half2*>(&u.x);
                c[4 * q + 1] = *reinterpret_cast<const __half2*>(&u.y);
                c[4 * q + 2] = *reinterpret_cast<const __half2*>(&u.z);
                c[4 * q + 3] = *reinterpret_cast<const __half2*>(&u.w);
            }
        } else {
#pragma unroll
            for (int k = 0; k < V / 2; ++k) c[k] = reinterpret_cast<const __half2*>(cb + (size_t)e * V)[k];
        }
        float d[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            __half2 p = __hmul2(xv[h][0], c[0]);
#pragma unroll
            for (int k = 1; k < V / 2; ++k) p = __hfma2(xv[h][k], c[k], p);
            d[h] = __low2float(p) + __high2float(p);
        }
        const __half2 pair = __floats2half2_rn(d[0], d[1]);
        *reinterpret_cast<__half2*>(table + ((uint32_t)e << G::ROW_SHIFT) + 4u * (jp ^ G::swizzle(e))) = pair;
    }
}

// Lookups of one row against the table: the code of step i at bit i·STRIDE + OFFSET of w (compile-time after
// unrolling). In the tile layout (TMA path) w is the row's whole lane chunk, STRIDE = R·B and OFFSET = S·B, and step
// i is column i; in the lane layout it is the row's stage-s words, STRIDE = B and OFFSET = 0, and step i is column
// (i + rot / 2) mod VPC (rot = 4 x the lane's class, 0 for the TMA path).
template <class Cfg, int STRIDE, int OFFSET, int N>
__device__ __forceinline__ float vq_lutl_row_sum(const uint32_t (&w)[N], uint32_t smem_s, uint32_t rot) {
    using G = LutLarge<Cfg>;
    constexpr int VPC = G::VPC;
    float acc[2] = {0.f, 0.f};  // two chains of adds: half the dependent-add latency
#pragma unroll
    for (int j = 0; j < VPC; ++j) {
        const uint32_t c = vq_code_at<G::B, N>(w, j * STRIDE + OFFSET);
        const uint32_t off = Cfg::CODE_TMA ? G::offset(c, j) : (c << G::ROW_SHIFT) + ((2u * j + rot) & (2u * VPC - 1));
        unsigned short hbits;
        asm volatile("ld.shared.b16 %0, [%1];" : "=h"(hbits) : "r"(smem_s + off));
        acc[j % 2] += __half2float(__ushort_as_half(hbits));
    }
    return acc[0] + acc[1];
}

// ---- Tensor-memory-accelerator (TMA) staging of the code chunks ------------------------------------------------
// A warp's 32 rows have their lane-column-t chunks at a 4·L-word stride inside each row block (and row blocks kb
// tiles apart): 16-byte per-lane loads would touch 32 cache lines per instruction, and on the H200 those loads took
// ~60% of the L1 pipe (ncu: L1/TEX 92% busy, 16 of 32 bytes per sector used). One TMA copy per warp step instead
// moves the 32 chunks into a dense [row][4·L words] buffer (a 5-d box of the code tensor
// [rb][tile][g][t][word], see crates/cuda/src/tma.rs), and each lane reads its chunk back with L conflict-free
// 16-byte shared loads.
__device__ __forceinline__ void vq_mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void vq_mbar_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void vq_mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n .reg .pred p;\n VQ_WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra VQ_WAIT_%=;\n}"
        ::"r"(bar), "r"(parity) : "memory");
}
// Box (4·L words, t, 8 rows g, tile, 4 row blocks) of the code tensor map into dst, completing on bar.
__device__ __forceinline__ void vq_tma_codes(uint32_t dst, const void* tmap, int t, int tile, int rb0, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, %6}], [%7];"
        ::"r"(dst), "l"(tmap), "r"(0), "r"(t), "r"(0), "r"(tile), "r"(rb0), "r"(bar) : "memory");
}

// Shared memory of the kernel (plan.rs mirrors it): [table][region][2·WARPS + 1 mbarriers]. The region holds the
// WARPS x 2 TMA code buffers (CODE_TMA) and, during a table build, the stage's codebook (CB_STAGE), which the
// planner only sets when it fits there.
template <class Cfg>
struct LutLargeSmem {
    using G = LutLarge<Cfg>;
    static constexpr int TABLE = (G::ENTRIES * G::VPC * 2 + 127) / 128 * 128;
    static constexpr int BUF = 32 * 16 * Cfg::L;  // one warp step: 32 rows x L x 16 B
    static constexpr int CB_BYTES = G::ENTRIES * G::V * 2;
    static constexpr int REGION = Cfg::CODE_TMA ? 2 * Cfg::WARPS * BUF : (Cfg::CB_STAGE ? CB_BYTES : 0);
    static constexpr int BARS = TABLE + REGION;  // the region starts at byte TABLE
    static_assert(!Cfg::CB_STAGE || CB_BYTES <= REGION, "the staged codebook must fit in the region");
};

// Lookups of stage S for the 32-row groups [rw_lo, rw_hi) of unit (tile, t): warp w takes groups rw_lo + w,
// + WARPS, ...; lane = row within the group. Two TMA copies in flight per warp. Bit b of `parity` is the parity of
// buffer b's next wait (kept across units; a register, where an indexed array would live in local memory).
template <class Cfg, int S>
__device__ __forceinline__ void vq_lutl_rows(const void* tmap, float* __restrict__ ws, uint32_t smem_s, uint32_t& parity,
                                             int rows, int tile, int t, int rw_lo, int rw_hi) {
    using G = LutLarge<Cfg>;
    using M = LutLargeSmem<Cfg>;
    constexpr int L = Cfg::L;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t buf0 = smem_s + M::TABLE + 2 * warp * M::BUF;
    const uint32_t bar0 = smem_s + M::BARS + 16 * warp;
    auto issue = [&](int rw, int b) {
        if (lane == 0 && rw < rw_hi) {
            // The lanes' generic reads of this buffer (ordered by __syncwarp / __syncthreads) come before the
            // async-proxy write.
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            vq_mbar_expect(bar0 + 8 * b, M::BUF);
            vq_tma_codes(buf0 + b * M::BUF, tmap, t, tile, 4 * rw, bar0 + 8 * b);
        }
    };
    issue(rw_lo + warp, 0);
    issue(rw_lo + warp + Cfg::WARPS, 1);
    int b = 0;
    for (int rw = rw_lo + warp; rw < rw_hi; rw += Cfg::WARPS, b ^= 1) {
        vq_mbar_wait(bar0 + 8 * b, (parity >> b) & 1u);
        parity ^= 1u << b;
        uint32_t w[4 * L];
#pragma unroll
        for (int i = 0; i < L; ++i)
            asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(w[4 * i]), "=r"(w[4 * i + 1]), "=r"(w[4 * i + 2]), "=r"(w[4 * i + 3])
                         : "r"(buf0 + b * M::BUF + (lane * L + i) * 16));
        __syncwarp();  // every lane has its chunk: the buffer takes the step after next
        issue(rw + 2 * Cfg::WARPS, b);
        const int row = rw * 32 + lane;
        const float a = vq_lutl_row_sum<Cfg, G::R * G::B, S * G::B>(w, smem_s, 0u);
        if (row < rows) atomicAdd(ws + row, a);
    }
}

// Without TMA (the default; sm_80 has none): the codes are in the lane layout (crates/codegen/src/layout.rs
// `lane_stage_codes`, read by vq_load_lane_words), W words per row and unit; two row groups in flight per warp.
template <class Cfg>
struct LutlLane {
    static constexpr int W = (LutLarge<Cfg>::VPC * LutLarge<Cfg>::B + 31) / 32;  // words per row and unit
};

// `first` holds the warp's first row group (rw_lo + warp), loaded before the table build.
template <class Cfg>
__device__ __forceinline__ void vq_lutl_rows_lane(const uint32_t* __restrict__ codes, float* __restrict__ ws, uint32_t smem_s,
                                                  int rows, int unit, int rw_lo, int rw_hi,
                                                  const uint32_t (&first)[LutlLane<Cfg>::W]) {
    using G = LutLarge<Cfg>;
    constexpr int W = LutlLane<Cfg>::W;
    const int lane = threadIdx.x % 32;
    const uint32_t rot = 4u * (lane % G::WORDS);  // the lane's class, as a byte offset into a table row
    vq_lane_row_groups<W, Cfg::WARPS>(
        rw_lo, rw_hi, first,
        [&](int rw, uint32_t (&w)[W]) { vq_load_lane_words<W>(codes, (rows + 31) / 32, unit, rw, rw_hi, w); },
        [&](int rw, const uint32_t (&w)[W]) {
            const int row = rw * 32 + lane;
            const float a = vq_lutl_row_sum<Cfg, G::B, 0>(w, smem_s, rot);
            if (row < rows) atomicAdd(ws + row, a);
        });
}

// TMA path, stage dispatch: the bit offsets of the lookups are compile-time constants per stage.
template <class Cfg, int S = 0>
__device__ __forceinline__ void vq_lutl_rows_stage(int s, const void* tmap, float* __restrict__ ws, uint32_t smem_s,
                                                   uint32_t& parity, int rows, int tile, int t, int rw_lo, int rw_hi) {
    if (s == S) {
        vq_lutl_rows<Cfg, S>(tmap, ws, smem_s, parity, rows, tile, t, rw_lo, rw_hi);
        return;
    }
    if constexpr (S + 1 < Cfg::R) vq_lutl_rows_stage<Cfg, S + 1>(s, tmap, ws, smem_s, parity, rows, tile, t, rw_lo, rw_hi);
}

// Partial sums go to the fp32 workspace `ws` (zeroed by the previous call's finalize); the finalize kernel applies
// the per-row scales and writes y. `codes` is the code tensor's TMA descriptor (global memory, 64-byte aligned) with
// CODE_TMA, else the codes in the lane layout.
template <class Cfg>
__device__ __forceinline__ void vq_lut_large_body(const void* codes, const __half* __restrict__ codebooks,
                                                  const __half* __restrict__ x, float* __restrict__ ws, int rows, int cols,
                                                  int kb) {
    using G = LutLarge<Cfg>;
    using M = LutLargeSmem<Cfg>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const uint32_t smem_s = (uint32_t)__cvta_generic_to_shared(smem_raw);
    if (Cfg::CODE_TMA && threadIdx.x % 32 == 0) {
        vq_mbar_init(smem_s + M::BARS + 16 * (threadIdx.x / 32), 1);
        vq_mbar_init(smem_s + M::BARS + 16 * (threadIdx.x / 32) + 8, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    uint32_t parity = 0u;  // TMA buffers' wait parities
    vq_for_block_range((long long)kb * 4 * G::R, (rows + 31) / 32, [&](int unit, int rw_lo, int rw_hi) {
        // unit = (tile·4 + t)·R + s: a (tile, t)'s stages are adjacent, so their blocks share the chunks in L2.
        const int s = unit % G::R, t = (unit / G::R) % 4, tile = unit / (4 * G::R);
        const __half* cb = codebooks + (size_t)s * G::ENTRIES * G::V;
        // Loads first, all in flight together: the staged codebook (every thread's share at once, one L2 round trip
        // instead of the build's dependent rounds), then, in the lane layout, the warp's first row group, which stays
        // in flight during the build.
        constexpr int N = M::CB_BYTES / 16, PER = Cfg::CB_STAGE ? (N + G::THREADS - 1) / G::THREADS : 0;
        uint4 v[PER > 0 ? PER : 1];
#pragma unroll
        for (int i = 0; i < PER; ++i)
            if (threadIdx.x + i * G::THREADS < N) v[i] = __ldg(reinterpret_cast<const uint4*>(cb) + threadIdx.x + i * G::THREADS);
        uint32_t first[LutlLane<Cfg>::W];
        if constexpr (!Cfg::CODE_TMA)
            vq_load_lane_words<LutlLane<Cfg>::W>(static_cast<const uint32_t*>(codes), (rows + 31) / 32, unit,
                                                  rw_lo + threadIdx.x / 32, rw_hi, first);
        __syncthreads();  // the previous unit's lookups are done with the table and the code buffers
        if constexpr (Cfg::CB_STAGE) {
            uint4* dst = reinterpret_cast<uint4*>(smem_raw + M::TABLE);
#pragma unroll
            for (int i = 0; i < PER; ++i)
                if (threadIdx.x + i * G::THREADS < N) dst[threadIdx.x + i * G::THREADS] = v[i];
            __syncthreads();
            cb = reinterpret_cast<const __half*>(smem_raw + M::TABLE);
        }
        vq_lutl_build<Cfg>(cb, x, smem_raw, cols, tile, t);
        __syncthreads();
        if constexpr (Cfg::CODE_TMA) vq_lutl_rows_stage<Cfg>(s, codes, ws, smem_s, parity, rows, tile, t, rw_lo, rw_hi);
        else vq_lutl_rows_lane<Cfg>(static_cast<const uint32_t*>(codes), ws, smem_s, rows, unit, rw_lo, rw_hi, first);
    });
}
