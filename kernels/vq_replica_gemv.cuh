// vq_replica_gemv.cuh — batch-1 GeMV that reads codebook entries from replicated copies in shared memory.
//
// Why: with per-tile codebooks (GPTVQ: a 256-entry set per 256 x 256 tile) the LUT GeMV's table cannot be shared
// beyond one codebook row band, so building it (2^B entries x TG groups x V FMAs) costs as much as the lookups it
// replaces. Here each vector reads its V-wide entry and does V/2 HFMA2, and nothing is built but a copy of the set.
//
// Bank conflicts: a warp's random V-wide loads are served in wavefronts of 128 / (2V) lanes. Each entry is stored
// COPIES = 128 / (2V) times, [stage][entry][copy][V], so one entry fills one 128-byte row of the 32 banks and copy c
// always sits in the same banks whatever the entry; lane l reads copy l % COPIES, so the lanes of one wavefront hit
// distinct banks for any codes: 2V / 4 wavefronts per warp load, the minimum for its bytes. (For one stage of 8-bit
// codes the rows are 256 bytes apart, so that one PRMT forms a lookup's address: ReplicaGeo::PRMT_ROWS; their two
// 128-byte halves hold two sets, see below.)
//
// Lane mapping and row reduction are the LUT GeMV's (vq_row_block_store; four row blocks at once in
// vq_row_blocks4_store where a warp holds four per piece): lane (g, t) takes row g of a row block and
// the vectors t + 4j of the k tile, whose activations it keeps in registers (V/2 half2 per vector). Products and the
// per-chunk sums run in half2 (two chains, <= VPC·R·V/4 products per half); the chunk's sum goes to fp32 before the
// shuffles and atomics.
//
// Work: units of BAND_RB row blocks (a codebook row band for per-tile codebooks, else one piece) of one k tile, k
// tile major, cut into gridDim.x equal ranges. A block loads its activations once per k tile it touches and streams
// the row blocks in pieces of PIECE_RB (ROWS_PER_WARP per warp), and the next band's codebook set is loaded into
// registers during the piece before it, so staging waits on nothing. Codes:
// - 256-byte rows (PRMT_ROWS): each lane loads its row blocks' code words into registers, the next piece's word of a
//   row block as soon as this piece's is used, and the set copies alternate between the rows' two halves, so a new
//   set is stored while other warps still read the last one: one barrier a piece (perf-notes v0.28).
// - Otherwise a piece's codes are copied into one of two shared buffers with cp.async (no registers held while in
//   flight; the next piece's copies run during this piece's lookups), two barriers a piece.
//
// Extra Cfg members: WARPS, ROWS_PER_WARP, SPLIT. Requires L == 1, M == 1, E8P == false, V in {2, 4, 8}, and for per-tile codebooks
// TILE_ROWS a multiple of 8·PIECE_RB and TILE_COLS of the k tile (crates/codegen/src/plan.rs `replica_ok`).
#pragma once
#include "vq_lut_gemv.cuh"

template <class Cfg>
struct ReplicaGeo {
    static constexpr int ENTRY_BYTES = 2 * Cfg::V;
    static constexpr int COPIES = 128 / ENTRY_BYTES;  // lanes per shared-memory wavefront of one entry load
    static constexpr int ENTRIES = 1 << Cfg::B;
    static constexpr int SET_ENTRIES = Cfg::R * ENTRIES;
    // One stage of 8-bit codes (gptvq2): each entry's copies start a 256-byte row, so one PRMT of the code word and
    // a lane offset word gives the address of the lane's copy (code·256 + copy offset), and the rows' two 128-byte
    // halves hold two sets (double buffering; the codes stay in registers). Otherwise 128-byte rows (more stages would
    // double a set that fills half the shared memory already), the code buffers after them (plan.rs `replica_smem`).
    static constexpr bool PRMT_ROWS = Cfg::B == 8 && Cfg::R == 1;
    static constexpr int ROW_BYTES = PRMT_ROWS ? 256 : 128;
    static constexpr int SET_BYTES = SET_ENTRIES * ROW_BYTES;
    // Code buffers (not PRMT_ROWS): two pieces of PIECE_RB row blocks (512 bytes each), after the rows.
    static constexpr int PIECE_RB = Cfg::ROWS_PER_WARP * Cfg::WARPS;
    static constexpr int PIECE_BYTES = PIECE_RB * 512;
    static constexpr int BAND_RB = Cfg::TILE_ROWS > 0 ? Cfg::TILE_ROWS / 8 : PIECE_RB;
    static_assert(BAND_RB % PIECE_RB == 0, "a piece lies inside one codebook row band");
    static constexpr int THREADS = Cfg::WARPS * 32;
    static constexpr int CB_PER_THREAD = (SET_ENTRIES + THREADS - 1) / THREADS;  // entries a thread stages
};

// A thread's share of one codebook set ([R][2^B][V] fp16 in global memory), as 16-byte words of 16 / (2V) copies.
template <class Cfg>
struct ReplicaSetRegs {
    uint4 v[ReplicaGeo<Cfg>::CB_PER_THREAD];

    __device__ __forceinline__ void load(const __half* __restrict__ cb_src) {
        using G = ReplicaGeo<Cfg>;
#pragma unroll
        for (int i = 0; i < G::CB_PER_THREAD; ++i) {
            const int se = threadIdx.x + i * G::THREADS;
            if (G::SET_ENTRIES % G::THREADS != 0 && se >= G::SET_ENTRIES) break;
            Entry<Cfg::V> e;
            vq_load_entry_global<Cfg::V>(cb_src + se * Cfg::V, e);
            v[i] = vq_entry_word<Cfg::V>(reinterpret_cast<const uint32_t*>(e.h));
        }
    }

    // Writes each entry as its 128-byte row of copies (vq_store_copy_row).
    __device__ __forceinline__ void store(uint4* dst) const {
        using G = ReplicaGeo<Cfg>;
#pragma unroll
        for (int i = 0; i < G::CB_PER_THREAD; ++i) {
            const int se = threadIdx.x + i * G::THREADS;
            if (G::SET_ENTRIES % G::THREADS != 0 && se >= G::SET_ENTRIES) break;
            vq_store_copy_row(dst + se * (G::ROW_BYTES / 16), v[i], threadIdx.x);
        }
    }
};

// The activations of lane column t's vectors t + 4j of k tile `tile` (zero past `cols`, where the codes are padding).
template <class Cfg>
__device__ __forceinline__ void vq_replica_load_x(const __half* __restrict__ x, int cols, int tile, int t,
                                                  Entry<Cfg::V> (&xv)[Cfg::VPC]) {
    constexpr int V = Cfg::V, VPC = Cfg::VPC;
    const int col0 = tile * 4 * VPC * V;
    const bool whole = col0 + 4 * VPC * V <= cols;  // block-uniform: only the last k tile needs the checks
#pragma unroll
    for (int j = 0; j < VPC; ++j) {
        const int col = col0 + (t + 4 * j) * V;
        if (whole || col < cols) {
            vq_load_entry_global<V>(x + col, xv[j]);
        } else {
#pragma unroll
            for (int i = 0; i < V / 2; ++i) xv[j].h[i] = __float2half2_rn(0.f);
        }
    }
}

// vq_row_block_store for four row blocks rb0 + i·step at once (a transpose-reduce): 3 shuffles and one 32-lane
// store instead of 8 shuffles and 4 stores of 8 lanes. sums[i] is lane (g, t)'s partial sum of row g of row block i;
// afterwards lane (g, t) holds row g of row block t, summed over the four lane columns.
template <class Cfg>
__device__ __forceinline__ void vq_row_blocks4_store(const float (&sums)[4], int rb0, int step, int rb_hi,
                                                     const __half* __restrict__ scales, __half* __restrict__ y,
                                                     float* __restrict__ ws, int rows) {
    const int lane = threadIdx.x % 32, t = lane % 4;
    const bool odd = t & 1, high = t & 2;
    // Lanes t and t ^ 1 keep row blocks t & 1 and 2 + (t & 1) and hand each other the other two.
    const float r0 = __shfl_xor_sync(VQ_FULL_MASK, odd ? sums[0] : sums[1], 1);
    const float r1 = __shfl_xor_sync(VQ_FULL_MASK, odd ? sums[2] : sums[3], 1);
    const float b0 = (odd ? sums[1] : sums[0]) + r0;  // row block t & 1
    const float b1 = (odd ? sums[3] : sums[2]) + r1;  // row block 2 + (t & 1)
    // Lanes t and t ^ 2 keep row block t.
    const float r2 = __shfl_xor_sync(VQ_FULL_MASK, high ? b0 : b1, 2);
    const float a = (high ? b1 : b0) + r2;
    const int rb = rb0 + t * step, row = rb * 8 + lane / 4;
    if (rb < rb_hi && row < rows) vq_row_store<Cfg>(a, row, scales, y, ws);
}

// One k tile, row blocks [rb_lo, rb_hi) (rb_lo at a band start), in pieces of PIECE_RB row blocks. `staged` is the
// codebook set now in shared memory (-1: none), `half` the byte offset (0 or 128) of the row halves that hold it
// (PRMT_ROWS). With code buffers, every piece ends with a barrier, so the buffers and the copies are free when the
// next piece (or range) starts; with two set halves, the barrier before a piece's lookups frees the other half.
template <class Cfg>
__device__ __forceinline__ void vq_replica_range(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                 const __half* __restrict__ scales, const __half* __restrict__ x,
                                                 __half* __restrict__ y, float* __restrict__ ws, int rows, int cols,
                                                 int kb, int tile, int rb_lo, int rb_hi, int& staged, uint32_t& half) {
    using G = ReplicaGeo<Cfg>;
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, VPC = Cfg::VPC;
    constexpr int RB = R * B, P = G::PIECE_RB;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t smem_s = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const int pieces = (rb_hi - rb_lo + P - 1) / P;
    const int col0 = tile * 4 * VPC * V;
    // Codebook set of the range's first band; each band further down is one row of sets further (per-tile
    // codebooks: sets are row-band major), and a band is BAND_RB / P pieces.
    const int set0 = vq_set_of<Cfg>(min(rb_lo * 8, rows - 1), col0, cols);
    const int sets_per_band = Cfg::TILE_ROWS > 0 ? (cols + Cfg::TILE_COLS - 1) / max(Cfg::TILE_COLS, 1) : 0;
    auto set_of_piece = [&](int p) { return set0 + (p / (G::BAND_RB / P)) * sets_per_band; };

    // Codes of piece p into buffer p % 2, one commit group per piece: this thread copies word `lane` of row blocks
    // rb_lo + p·P + warp + i·WARPS. The source pointer advances by one piece per call (pieces are issued in order).
    const size_t rb_stride = (size_t)kb * 32;  // uint4 words between consecutive row blocks of one k tile
    const uint4* src_next = codes + ((size_t)(rb_lo + warp) * kb + tile) * 32 + lane;
    int rb_next = rb_lo + warp;  // this thread's first row block of the next piece to issue
    constexpr int NRB = P / Cfg::WARPS;  // row blocks of this warp in a piece: warp + i·WARPS
    auto advance = [&] {  // to the next piece to issue
        src_next += P * rb_stride;
        rb_next += P;
    };
    auto issue = [&](int p) {
        const uint32_t dst = (p & 1) * G::PIECE_BYTES + 16u * threadIdx.x;
#pragma unroll
        for (int i = 0; i < NRB; ++i) {
            if (rb_next + i * Cfg::WARPS < rb_hi)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_s + G::SET_BYTES + dst + i * G::THREADS * 16),
                             "l"(src_next + i * Cfg::WARPS * rb_stride));
        }
        asm volatile("cp.async.commit_group;");
        advance();
    };
    // PRMT_ROWS: the code word of row block i of the piece in registers, loaded by load_word(i) (the next piece's
    // once this piece's has been used: src_next then points at the next piece).
    uint32_t held[G::PRMT_ROWS ? NRB : 1][4];
    auto load_word = [&](int i) {
        if (rb_next + i * Cfg::WARPS < rb_hi) {
            const uint4 v = __ldcs(src_next + i * Cfg::WARPS * rb_stride);
            held[i][0] = v.x, held[i][1] = v.y, held[i][2] = v.z, held[i][3] = v.w;
        }
    };
    if constexpr (G::PRMT_ROWS) {
#pragma unroll
        for (int i = 0; i < NRB; ++i) load_word(i);
        advance();
    } else {
        issue(0);
    }

    Entry<V> xv[VPC];
    vq_replica_load_x<Cfg>(x, cols, tile, lane % 4, xv);
    ReplicaSetRegs<Cfg> next;  // the set of the piece about to start, when it must be staged
    int pending = set_of_piece(0);
    if (pending != staged) next.load(codebooks + (size_t)pending * G::SET_ENTRIES * V);

    // Byte offset of this lane's copy in an entry's row; entry e of stage s is ROW_BYTES·(s·2^B + e) further. With
    // 256-byte rows it is byte 0 of `copy_word` (bytes 1-3 zero), and the code byte becomes byte 1 by one PRMT.
    const uint32_t copy_lane = (lane % G::COPIES) * G::ENTRY_BYTES;
    const unsigned char* copy_base = smem_raw + copy_lane;
    uint32_t copy_word = copy_lane + half;  // PRMT_ROWS: + the half that holds the staged set
    // Entries loaded ahead per batch of vectors (<= 8 registers): a batch's loads are in flight together.
    constexpr int BATCH = (16 / (R * V)) < 1 ? 1 : (16 / (R * V)) > VPC ? VPC : 16 / (R * V);
    static_assert(VPC % BATCH == 0, "whole batches");
    auto dot = [&](const uint32_t (&w)[4]) -> float {
        __half2 acc[2] = {__float2half2_rn(0.f), __float2half2_rn(0.f)};  // even / odd steps: two dependency chains
#pragma unroll
        for (int j0 = 0; j0 < VPC; j0 += BATCH) {
            Entry<V> e[BATCH][R];
#pragma unroll
            for (int jj = 0; jj < BATCH; ++jj)
#pragma unroll
                for (int s = 0; s < R; ++s) {
                    constexpr int ROW = G::ROW_BYTES;
                    const int bit = (j0 + jj) * RB + s * B;
                    // ptxas folds the stage offset into the LDS immediate.
                    if constexpr (G::PRMT_ROWS) {
                        const uint32_t off = __byte_perm(w[bit / 32], copy_word, 0x7604u | (((bit % 32) / 8) << 4));
                        vq_load_entry_shared_at<V>(smem_s + off + s * G::ENTRIES * ROW, e[jj][s]);
                    } else {
                        const uint32_t idx = vq_code_at<B>(w, bit);
                        vq_load_entry_shared<V>(reinterpret_cast<const __half*>(copy_base + idx * ROW + s * G::ENTRIES * ROW),
                                                e[jj][s]);
                    }
                }
#pragma unroll
            for (int jj = 0; jj < BATCH; ++jj)
#pragma unroll
                for (int s = 0; s < R; ++s)
#pragma unroll
                    for (int i = 0; i < V / 2; ++i)
                        acc[(j0 + jj) % 2] = __hfma2(xv[j0 + jj].h[i], e[jj][s].h[i], acc[(j0 + jj) % 2]);
        }
        return (__low2float(acc[0]) + __high2float(acc[0])) + (__low2float(acc[1]) + __high2float(acc[1]));
    };

    for (int p = 0; p < pieces; ++p) {
        if (pending != staged) {  // block-uniform; the copies are free (see below)
            if constexpr (G::PRMT_ROWS) {  // the other half: last read before the previous piece's barrier
                half ^= 128u;
                copy_word = copy_lane + half;
            }
            next.store(reinterpret_cast<uint4*>(smem_raw + (G::PRMT_ROWS ? half : 0u)));
            staged = pending;
        }
        if constexpr (!G::PRMT_ROWS) {
            if (p + 1 < pieces) {
                issue(p + 1);
                asm volatile("cp.async.wait_group 1;" ::: "memory");
            } else {
                asm volatile("cp.async.wait_group 0;" ::: "memory");
            }
        }
        __syncthreads();  // piece p's codes (code buffers) and the staged copies visible to every warp
        if (p + 1 < pieces) {
            pending = set_of_piece(p + 1);
            if (pending != staged) next.load(codebooks + (size_t)pending * G::SET_ENTRIES * V);  // in flight meanwhile
        }
        const uint32_t src = (p & 1) * G::PIECE_BYTES;
        // Four row blocks reduced together, for one stage (more stages hold more entry registers: the four sums
        // made vq<4,8,4> spill).
        constexpr bool REDUCE4 = NRB == 4 && R == 1;
        float sums[NRB];
#pragma unroll
        for (int i = 0; i < NRB; ++i) {
            const int rbl = warp + i * Cfg::WARPS, rb = rb_lo + p * P + rbl;
            sums[i] = 0.f;
            if (rb >= rb_hi) continue;  // warp-uniform; so is the next piece's row block i
            if constexpr (G::PRMT_ROWS) {
                sums[i] = dot(held[i]);
                if (p + 1 < pieces) load_word(i);
            } else {
                uint32_t w[4];
                asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];"
                             : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                             : "r"(smem_s + G::SET_BYTES + src + 16u * (rbl * 32 + lane)));
                sums[i] = dot(w);
            }
            if constexpr (!REDUCE4) vq_row_block_store<Cfg>(sums[i], rb, scales, y, ws, rows);
        }
        if constexpr (REDUCE4) vq_row_blocks4_store<Cfg>(sums, rb_lo + p * P + warp, Cfg::WARPS, rb_hi, scales, y, ws, rows);
        // Code buffers: buffer p % 2 and the copies are free after this barrier. Two set halves: the barrier at the
        // next piece's start frees the half this piece read, so none is needed here.
        if constexpr (G::PRMT_ROWS) advance();
        else __syncthreads();
    }
}

template <class Cfg>
__device__ __forceinline__ void vq_replica_gemv_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                     const __half* __restrict__ scales, const __half* __restrict__ x,
                                                     __half* __restrict__ y, float* __restrict__ ws, int rows, int cols,
                                                     int kb) {
    static_assert(Cfg::L == 1 && Cfg::M == 1 && !Cfg::E8P, "replica GeMV preconditions");
    static_assert(Cfg::V == 2 || Cfg::V == 4 || Cfg::V == 8, "entries of 4, 8 or 16 bytes");
    using G = ReplicaGeo<Cfg>;
    const int row_blocks = (rows + 7) / 8;
    int staged = -1;
    uint32_t half = 128;  // PRMT_ROWS: the first set goes to the lower halves
    vq_for_block_range(kb, (row_blocks + G::BAND_RB - 1) / G::BAND_RB, [&](int tile, int b_lo, int b_hi) {
        vq_replica_range<Cfg>(codes, codebooks, scales, x, y, ws, rows, cols, kb, tile, b_lo * G::BAND_RB,
                              min(row_blocks, b_hi * G::BAND_RB), staged, half);
    });
}
