// vq_e8p_lut.cuh — lookup-table GeMV for E8P lattice codes (QuIP#) at batch 1.
//
// Why: the E8P decode costs ~23 bit operations per 16-bit code (e8p_fast.cuh), so the dequantizing GeMVs are bound
// by the CUDA cores, not by memory (quip4 on 8192x22016: 88 us on an H100 with the multiply-adds on the tensor
// cores). Here a vector's dot product with the activations is read from tables instead: 2 table reads per code.
//
// Split of a code into two table indices. Decoded, coordinate P[j] of code (a, s) is
//     sgn_j · m_j(a) + shift,  P = [0,2,4,6,1,3,5,7], m_j(a) = (nibble j of abs word a − 8) / 2,
// with p = parity(s), s' = s ^ p (bit 0), sgn_j = (−1)^(s'_j), shift = p ? −1/4 : +1/4 (e8p_fast.cuh). s' always
// has even parity, so with q = s'_4 ^ s'_5 ^ s'_6 ^ s'_7 (the odd coordinates' sign parity) the dot product is
//     T1[q, a, s'_1, s'_2, s'_3, p] + T2[q, a, s'_4, s'_5, s'_6]
//     T1 = sum_{j<4} sgn_j m_j x_P[j] + shift · sum(x),  s'_0 = q ^ s'_1 ^ s'_2 ^ s'_3   (8192 entries)
//     T2 = sum_{j>=4} sgn_j m_j x_P[j],                  s'_7 = q ^ s'_4 ^ s'_5 ^ s'_6   (4096 entries)
// The codes are re-coded at upload (crates/codegen/src/e8p_lut.rs `lut_code`, a bijection of 16-bit codes) so that
// both indices are bit fields: bits 0-8 (q, a), 9-11 (s'_4..6), 12-14 (s'_1..3), 15 p. T2's index is bits 0-11 and
// T1's is bits 0-8 and 12-15: two shifts and three LOP3 form both byte offsets.
//
// Units: U consecutive 8-wide groups of the input (U = VPC, 8 where 192 KiB of tables fit). A block builds the unit's
// fp16 tables, [T1 rows][U] then [T2 rows][U] (row = 2U bytes), and every lane then takes one weight row: it loads the
// row's U code words (all R stages) and adds 2·R table reads per vector. Both stages read the same tables (the
// stages differ only by their scales ss0..ss3, applied once per row). Codes are stored per (unit, 32-row group),
// word-major across the lanes (coalesced 128-byte loads), and in the order the lane walks them: lane class
// c = lane mod U/2 starts at column 2c, so at a step the classes read disjoint bank sets (as in vq_lut_large.cuh).
//
// Work split (stream mode): the (unit, 32-row group) pairs, unit major, are cut into gridDim.x equal ranges; a range
// that crosses into the next unit rebuilds the tables. Partial sums go to the fp32 workspace with one atomic per
// (unit, row); the finalize kernel applies the row scales.
//
// Randomized Hadamard transform (quip4): with Cfg::HADAMARD = block size > 0, x is the raw activation and each block
// computes the transformed activations of its unit's 8U columns itself (sign flip and fp32 sums in shared memory after
// the tables, rounded to fp16 as kernels/hadamard.cuh does), instead of a separate launch before this one: 1.0 / 1.4 us
// a call faster on an H100 (quip4, 4096x11008 / 8192x22016; perf-notes v0.23). A unit needs only its own columns of
// the transform, so when the Hadamard block is wider than the unit, the block's transform is split by the Kronecker
// form of the Sylvester matrix (vq_e8pl_hadamard_kron): one signed sum over the block's slices and an 8U-point
// transform, instead of the whole block's butterflies (0.3-0.4 us a call faster on an H100; perf-notes v0.28).
//
// Decoded columns (Cfg::DECODE = D > 0): the table reads are bound by shared-memory bank conflicts (random rows, ~3.3
// wavefronts a warp-wide read) while the integer pipes idle, so a row's first D steps decode their codes by bit
// operations instead (e8p_fast.cuh, codes stored in the original E8P format there) and multiply them with the lane's
// activations of those columns, held in registers. The decode reads the abs table from 16 copies in shared memory
// (lane l reads copy l mod 16: two lanes at most share a bank), which the tables' bank sets never see.
//
// Extra Cfg members: WARPS, HADAMARD, DECODE. Requires M == 1, E8P (V == 8, B == 16), R <= 4, VPC in {2, 4, 8}.
#pragma once
#include "vq_common.cuh"
#include "hadamard.cuh"

template <class Cfg>
struct E8pLut {
    static constexpr int U = Cfg::VPC, R = Cfg::R;
    static constexpr int ROW_SHIFT = vq_log2(2 * U);  // log2 of a table row's bytes
    static constexpr int T1_ROWS = 8192, T2_ROWS = 4096;
    static constexpr uint32_t T2_BASE = T1_ROWS << ROW_SHIFT;
    static constexpr int TABLE_BYTES = (T1_ROWS + T2_ROWS) << ROW_SHIFT;
    static constexpr int WORDS = U * R / 2;  // code words per row and unit (two 16-bit codes a word)
    static constexpr int PAIRS = U / 2;      // 32-bit table words per row (two groups each)
    static constexpr int THREADS = 32 * Cfg::WARPS;
    static constexpr int D = Cfg::DECODE;    // decoded steps per row and unit
    static constexpr int ABS_COPIES = 16;
    // Hadamard span: the unit's columns, whose transformed activations the fp32 buffer holds. KRON: the Hadamard block
    // is wider than the unit (vq_e8pl_hadamard_kron), and a [WARPS][SPAN] fp32 buffer of per-warp sums sits before it
    // (room for 32 warps: crates/codegen/src/e8p_lut.rs `smem_bytes`).
    static constexpr int SPAN = 8 * U;
    static constexpr bool KRON = Cfg::HADAMARD > SPAN;
    static constexpr int PART_BYTES = KRON ? 4 * 32 * SPAN : 0;
    static constexpr int HBUF_BYTES = Cfg::HADAMARD > 0 ? PART_BYTES + 4 * vq_hpad_len(SPAN) : 0;
    static_assert(Cfg::M == 1 && Cfg::E8P && Cfg::V == 8 && Cfg::B == 16, "E8P LUT preconditions");
    static_assert(U == 2 || U == 4 || U == 8, "2, 4 or 8 groups per unit");
    static_assert(R >= 1 && R <= 4, "1 to 4 stages");
    static_assert(THREADS % PAIRS == 0, "whole table rows per pass of the build");
    static_assert(D >= 0 && D <= U, "at most a unit's groups decoded");
    static_assert(Cfg::WARPS <= 32, "per-warp Hadamard sums for at most 32 warps");
};

// x << n for n >= 0, x >> -n otherwise (n a compile-time constant).
template <int N>
__device__ __forceinline__ uint32_t vq_shift(uint32_t x) {
    if constexpr (N >= 0) return x << N;
    else return x >> -N;
}

// The column of a unit that step i of a row reads, for a lane of class c = lane mod U/2: (i + 2c) mod U (the packer's
// order, crates/codegen/src/e8p_lut.rs `pack_codes`).
template <class Cfg>
__device__ __forceinline__ int vq_e8pl_step_col(int i, int lane) {
    using G = E8pLut<Cfg>;
    return (i + 2 * (lane % G::PAIRS)) % G::U;
}

// The 8 activations of the group starting at column col0 as the tables see them: the transformed ones from the
// span's buffer (HADAMARD > 0, zero past `cols`: the buffer was loaded with zeros there), else x, zero past `cols`.
template <class Cfg>
__device__ __forceinline__ void vq_e8pl_group_x(const __half* __restrict__ x, const float* hbuf, int span0, int cols, int col0,
                                                __half (&xg)[8]) {
    if constexpr (Cfg::HADAMARD > 0) {
        const float scale = rsqrtf((float)Cfg::HADAMARD);
#pragma unroll
        for (int i = 0; i < 8; ++i) xg[i] = __float2half(hbuf[vq_hpad(col0 - span0 + i)] * scale);
    } else if (col0 + 8 <= cols) {
        *reinterpret_cast<uint4*>(xg) = *reinterpret_cast<const uint4*>(x + col0);
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) xg[i] = col0 + i < cols ? x[col0 + i] : __float2half(0.f);
    }
}

// Tables of unit `unit`. Thread -> column pair jp (groups 2jp, 2jp + 1 of the unit, their activations in registers
// as half2 (group 2jp, group 2jp + 1)) and rows qa = (q, a) = tid / PAIRS + i·(THREADS / PAIRS): a warp writes
// 32 / PAIRS consecutive rows of every (signs, p) at once, whole 128-byte lines.
template <class Cfg>
__device__ __forceinline__ void vq_e8pl_build(const __half* __restrict__ x, const float* hbuf, int span0,
                                              const uint32_t* __restrict__ abs_table, unsigned char* table, int cols,
                                              int unit) {
    using G = E8pLut<Cfg>;
    const int jp = threadIdx.x % G::PAIRS;
    const int col0 = (unit * G::U + 2 * jp) * 8;  // group 2jp's first column; group 2jp + 1 follows
    __align__(16) __half xa[8], xb[8];
    vq_e8pl_group_x<Cfg>(x, hbuf, span0, cols, col0, xa);
    vq_e8pl_group_x<Cfg>(x, hbuf, span0, cols, col0 + 8, xb);
    __half2 xv[8];
    float sa = 0.f, sb = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        xv[i] = __halves2half2(xa[i], xb[i]);
        sa += __half2float(xa[i]);
        sb += __half2float(xb[i]);
    }
    const __half2 shift = __floats2half2_rn(0.25f * sa, 0.25f * sb);  // + shift·sum(x) for p = 0, − for p = 1
    constexpr int COORD[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const uint32_t col_bytes = 4u * jp;
    for (int qa = threadIdx.x / G::PAIRS; qa < 512; qa += G::THREADS / G::PAIRS) {
        const uint32_t w = __ldg(abs_table + (qa >> 1));
        const bool q = qa & 1;
        __half2 prod[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float m = 0.5f * (float)(int)((w >> (4 * j)) & 15u) - 4.f;
            prod[j] = __hmul2(__float2half2_rn(m), xv[COORD[j]]);
        }
        // sgn_0 = (−1)^q · sgn_1 sgn_2 sgn_3 and sgn_7 = (−1)^q · sgn_4 sgn_5 sgn_6: fold (−1)^q into products 0 and 7.
        if (q) {
            prod[0] = __hneg2(prod[0]);
            prod[7] = __hneg2(prod[7]);
        }
        auto signed_add = [](__half2 acc, __half2 v, bool neg) { return neg ? __hsub2(acc, v) : __hadd2(acc, v); };
        // T2 rows qa + 512·s, s = (s'_4, s'_5, s'_6).
#pragma unroll
        for (int s = 0; s < 8; ++s) {
            const bool n4 = s & 1, n5 = s & 2, n6 = s & 4;
            __half2 v = n4 ? __hneg2(prod[4]) : prod[4];
            v = signed_add(v, prod[5], n5);
            v = signed_add(v, prod[6], n6);
            v = signed_add(v, prod[7], n4 ^ n5 ^ n6);
            *reinterpret_cast<__half2*>(table + G::T2_BASE + ((uint32_t)(qa + 512 * s) << G::ROW_SHIFT) + col_bytes) = v;
        }
        // T1 rows qa + 512·s + 4096·p, s = (s'_1, s'_2, s'_3).
#pragma unroll
        for (int s = 0; s < 8; ++s) {
            const bool n1 = s & 1, n2 = s & 2, n3 = s & 4;
            __half2 v = (n1 ^ n2 ^ n3) ? __hneg2(prod[0]) : prod[0];
            v = signed_add(v, prod[1], n1);
            v = signed_add(v, prod[2], n2);
            v = signed_add(v, prod[3], n3);
#pragma unroll
            for (int p = 0; p < 2; ++p)
                *reinterpret_cast<__half2*>(table + ((uint32_t)(qa + 512 * s + 4096 * p) << G::ROW_SHIFT) + col_bytes) =
                    p ? __hsub2(v, shift) : __hadd2(v, shift);
        }
    }
}

// The Hadamard blocks of span [span0, span0 + SPAN) into hbuf (padded fp32, unscaled): signs, then the butterflies of
// each Hadamard block of the span (kernels/hadamard.cuh). Ends with a barrier. For Hadamard blocks no wider than a unit.
template <class Cfg>
__device__ __forceinline__ void vq_e8pl_hadamard(const __half* __restrict__ x, const __half* __restrict__ signs, float* hbuf,
                                                 int span0, int cols) {
    using G = E8pLut<Cfg>;
    vq_fwht<vq_log2(Cfg::HADAMARD), G::SPAN>(
        hbuf, [&](int i0, auto& v) { vq_signed_load(x, signs, span0 + i0, cols, v); },
        [&](int i, float v) { hbuf[vq_hpad(i)] = v; });
}

// The span's SPAN = S columns of the transform of the Hadamard block that holds them, into hbuf (padded fp32, unscaled),
// for a block wider than the span (KRON). With H[o, i] = (-1)^popc(o & i) (Sylvester order), NB = HADAMARD / S,
// o = j·S + r and i = i1·S + r', H_HADAMARD = H_NB ⊗ H_S, so the span's outputs (slice j of the block) are
//     out[r] = sum_r' H_S[r, r'] · w[r'],    w[r'] = sum_i1 (-1)^popc(j & i1) · z[i1·S + r'],    z = signs ⊙ x:
// every input is read and added once (one 16-byte load of x and of the signs per 8 columns), then an S-point transform,
// instead of the whole block's log2(HADAMARD) butterfly stages. Thread t sums octet o = t mod S/8 of the slices
// i1 ≡ t / (S/8) (mod THREADS / (S/8)); the lanes of a warp that share o add theirs with shuffles, the warps through
// `part`; warp 0 adds the warps' sums and runs the S-point transform with shuffles. No barrier at the end: the caller's
// barrier orders hbuf before its readers.
template <class Cfg>
__device__ __forceinline__ void vq_e8pl_hadamard_kron(const __half* __restrict__ x, const __half* __restrict__ signs, float* part,
                                                      float* hbuf, int span0, int cols) {
    using G = E8pLut<Cfg>;
    constexpr int S = G::SPAN, OCT = S / 8, NB = Cfg::HADAMARD / S, PER = S > 32 ? S / 32 : 1;
    static_assert(G::KRON && G::THREADS % OCT == 0 && 32 % OCT == 0 && PER <= 2, "Kronecker transform shape");
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int blk0 = span0 / Cfg::HADAMARD * Cfg::HADAMARD, j = (span0 - blk0) / S, o = threadIdx.x % OCT;
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] = 0.f;
    for (int i1 = threadIdx.x / OCT; i1 < NB; i1 += G::THREADS / OCT) {
        float v[8];
        vq_signed_load<8>(x, signs, blk0 + i1 * S + 8 * o, cols, v);
        const float sgn = (__popc(j & i1) & 1) ? -1.f : 1.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] = fmaf(sgn, v[k], acc[k]);
    }
#pragma unroll
    for (int d = OCT; d < 32; d *= 2) {
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], d);
    }
    if (lane < OCT) {
        float4* dst = reinterpret_cast<float4*>(part + warp * S + 8 * lane);
        dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    }
    __syncthreads();
    if (warp != 0) return;
    // Lane l holds w[l + 32p]; lanes past S (S = 16) compute values nobody stores.
    float w[PER];
#pragma unroll
    for (int p = 0; p < PER; ++p) {
        const int r = (lane + 32 * p) % S;
        float sum = 0.f;
        for (int wp = 0; wp < Cfg::WARPS; ++wp) sum += part[wp * S + r];
        w[p] = sum;
    }
    // Butterflies of index bits 0-4 across the lanes (those below S), then bit 5 (S = 64) in registers.
#pragma unroll
    for (int d = 1; d < (S < 32 ? S : 32); d *= 2) {
#pragma unroll
        for (int p = 0; p < PER; ++p) {
            const float other = __shfl_xor_sync(0xffffffffu, w[p], d);
            w[p] = (lane & d) ? other - w[p] : w[p] + other;
        }
    }
    if constexpr (PER == 2) {
        const float a = w[0], b = w[1];
        w[0] = a + b;
        w[1] = a - b;
    }
#pragma unroll
    for (int p = 0; p < PER; ++p) {
        if (lane + 32 * p < S) hbuf[vq_hpad(lane + 32 * p)] = w[p];
    }
}

// The lane's activations of the columns its first D steps decode, as the tables see them (vq_e8pl_group_x), in
// pairs (x[2j], x[2j + 1]).
template <class Cfg>
__device__ __forceinline__ void vq_e8pl_decoded_x(const __half* __restrict__ x, const float* hbuf, int span0, int cols, int unit,
                                                  int lane, __half2 (&xd)[E8pLut<Cfg>::D > 0 ? E8pLut<Cfg>::D : 1][4]) {
    using G = E8pLut<Cfg>;
#pragma unroll
    for (int i = 0; i < G::D; ++i) {
        __align__(16) __half xg[8];
        vq_e8pl_group_x<Cfg>(x, hbuf, span0, cols, (unit * G::U + vq_e8pl_step_col<Cfg>(i, lane)) * 8, xg);
#pragma unroll
        for (int j = 0; j < 4; ++j) xd[i][j] = __halves2half2(xg[2 * j], xg[2 * j + 1]);
    }
}

// One row's partial sum over the unit: step i reads code word(s) of column (i + 2c) mod U (the packer's order), at
// the byte offsets `cols[i]` of that column in a table row; steps i < D decode their codes instead (`abs_s`: the
// lane's abs-table copy, `xd`: the activations of those columns).
template <class Cfg>
__device__ __forceinline__ float vq_e8pl_row_sum(const uint32_t (&w)[E8pLut<Cfg>::WORDS], uint32_t smem_s,
                                                 const uint32_t (&cols)[E8pLut<Cfg>::U], const float (&ss)[4], uint32_t abs_s,
                                                 const __half2 (&xd)[E8pLut<Cfg>::D > 0 ? E8pLut<Cfg>::D : 1][4]) {
    using G = E8pLut<Cfg>;
    constexpr int RS = G::ROW_SHIFT;
    __half2 acc[G::R];
#pragma unroll
    for (int s = 0; s < G::R; ++s) acc[s] = __float2half2_rn(0.f);
#pragma unroll
    for (int i = 0; i < G::U; ++i) {
#pragma unroll
        for (int s = 0; s < G::R; ++s) {
            const int bit = (i * G::R + s) * 16;
            const uint32_t word = w[bit / 32];
            const int h = bit % 32;
            if (i < G::D) {
                // An E8P code in its original format: abs row bits 8-15, at byte offset row·64 in the copies.
                const uint32_t code = h == 0 ? word : word >> 16;
                uint32_t a;
                asm volatile("ld.shared.b32 %0, [%1];" : "=r"(a) : "r"(abs_s + ((h == 0 ? word >> 2 : word >> 18) & 0x3fc0u)));
                __half2 d[4];
                vq_decode_e8p_h2_abs(code, a, d);
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[s] = __hfma2(d[j], xd[i < G::D ? i : 0][j], acc[s]);
                continue;
            }
            // Code c' = bits [h, h + 16) of the word: T2 index c' & 0xfff, T1 index (c' & 0x1ff) | (c' >> 3 & 0x1e00).
            const uint32_t lo = (h == 0 ? vq_shift<RS>(word) : vq_shift<RS - 16>(word));
            const uint32_t hi = (h == 0 ? vq_shift<RS - 3>(word) : vq_shift<RS - 19>(word));
            const uint32_t off2 = (lo & (0xfffu << RS)) | cols[i];
            const uint32_t off1 = (lo & (0x1ffu << RS)) | (hi & (0xfu << (9 + RS))) | cols[i];
            unsigned short t1, t2;
            asm volatile("ld.shared.b16 %0, [%1];" : "=h"(t1) : "r"(smem_s + off1));
            asm volatile("ld.shared.b16 %0, [%1];" : "=h"(t2) : "r"(smem_s + G::T2_BASE + off2));
            acc[s] = __hadd2(acc[s], __halves2half2(__ushort_as_half(t1), __ushort_as_half(t2)));
        }
    }
    float sum = 0.f;
#pragma unroll
    for (int s = 0; s < G::R; ++s) sum += ss[s] * (__low2float(acc[s]) + __high2float(acc[s]));
    return sum;
}

// `signs`: the Hadamard signs (HADAMARD > 0), else unused. Shared memory: the tables, then (HADAMARD > 0) the span's
// fp32 buffer (crates/codegen/src/e8p_lut.rs `smem_bytes`).
template <class Cfg>
__device__ __forceinline__ void vq_e8p_lut_body(const uint32_t* __restrict__ codes, const uint32_t* __restrict__ abs_table,
                                                const __half* __restrict__ x, const __half* __restrict__ signs,
                                                float* __restrict__ ws, int rows, int cols, float ss0, float ss1, float ss2,
                                                float ss3) {
    using G = E8pLut<Cfg>;
    constexpr int W = G::WORDS;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const uint32_t smem_s = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int units = (cols / 8 + G::U - 1) / G::U, row_groups = (rows + 31) / 32;
    const float ss[4] = {ss0, ss1, ss2, ss3};
    // Byte offset of column (i + 2c) mod U in a table row, c = the lane's class. Pinned: ptxas would otherwise
    // recompute them in the row loop.
    uint32_t col_off[G::U];
#pragma unroll
    for (int i = 0; i < G::U; ++i) {
        col_off[i] = 2u * vq_e8pl_step_col<Cfg>(i, lane);
        vq_pin(col_off[i]);
    }
    float* part = reinterpret_cast<float*>(smem_raw + G::TABLE_BYTES);  // KRON: the per-warp sums
    float* hbuf = reinterpret_cast<float*>(smem_raw + G::TABLE_BYTES + G::PART_BYTES);
    // The abs-table copies (D > 0), after the tables and the transform buffer, by cp.async: their round trip overlaps
    // the first unit's transform and build, whose last barrier orders them (the wait before it).
    const uint32_t abs_base = smem_s + G::TABLE_BYTES + G::HBUF_BYTES;
    if constexpr (G::D > 0) {
        for (int i = threadIdx.x; i < 256 * G::ABS_COPIES; i += G::THREADS)
            asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(abs_base + 4u * i), "l"(abs_table + i / G::ABS_COPIES)
                         : "memory");
        asm volatile("cp.async.commit_group;");
    }
    const uint32_t abs_s = abs_base + 4u * (lane % G::ABS_COPIES);
    __half2 xd[G::D > 0 ? G::D : 1][4];
    vq_for_block_range(units, row_groups, [&](int unit, int rw_lo, int rw_hi) {
        auto load = [&](int rw, uint32_t (&w)[W]) { vq_load_lane_words<W>(codes, row_groups, unit, rw, rw_hi, w); };
        // The warp's first row group is in flight during the transform and the table build.
        uint32_t first[W];
        load(rw_lo + warp, first);
        const int span0 = unit * G::SPAN;
        // The unit's own columns of the transform (a block meets each unit once): the previous unit's build is done
        // with hbuf and part (the barrier after it).
        if constexpr (G::KRON) vq_e8pl_hadamard_kron<Cfg>(x, signs, part, hbuf, span0, cols);
        else if constexpr (Cfg::HADAMARD > 0) vq_e8pl_hadamard<Cfg>(x, signs, hbuf, span0, cols);
        __syncthreads();  // the previous unit's lookups are done with the tables
        vq_e8pl_build<Cfg>(x, hbuf, span0, abs_table, smem_raw, cols, unit);
        // Before the barrier: the next unit's transform may overwrite hbuf once every thread has passed it.
        if constexpr (G::D > 0) {
            vq_e8pl_decoded_x<Cfg>(x, hbuf, span0, cols, unit, lane, xd);
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        vq_lane_row_groups<W, Cfg::WARPS>(rw_lo, rw_hi, first, load, [&](int rw, const uint32_t (&w)[W]) {
            const int row = rw * 32 + lane;
            const float a = vq_e8pl_row_sum<Cfg>(w, smem_s, col_off, ss, abs_s, xd);
            if (row < rows) atomicAdd(ws + row, a);
        });
    });
}
