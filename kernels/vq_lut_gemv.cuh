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
// Extra Cfg members: WARPS, ROWS_PER_WARP (row blocks per warp), SPLIT, IN_FLIGHT (chunks of codes in flight per
// warp). Requires L == 1, M == 1, E8P == false.
#pragma once
#include "vq_common.cuh"

// Table row (floats) of the LUT GeMV: TG groups, padded to 64 for 8-bit codes with TG = 32 outside per-tile
// codebooks (256-byte rows make the one-PRMT address possible; crates/codegen/src/plan.rs `lut_row_floats`).
template <class Cfg>
__host__ __device__ constexpr int vq_lut_row() {
    constexpr int TG = 4 * Cfg::VPC;
    return (Cfg::B == 8 && (TG == 64 || (TG == 32 && Cfg::TILE_ROWS == 0))) ? 64 : TG;
}

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

// Row `row`'s finished sum: y (SPLIT == 1, scaled) or added into the fp32 workspace.
template <class Cfg>
__device__ __forceinline__ void vq_row_store(float a, int row, const __half* __restrict__ scales, __half* __restrict__ y,
                                             float* __restrict__ ws) {
    if constexpr (Cfg::SPLIT == 1) {
        const float sc = Cfg::SCALE ? __half2float(scales[row]) : 1.f;
        y[row] = __float2half(a * sc);
    } else {
        atomicAdd(ws + row, a);
    }
}

// Sums the partial dot products of row block `rb`'s lanes (g, t) over the four lane columns t and hands row g's
// result to lane t = 0, which stores it (vq_row_store). Whole warp. Shared with the replica GeMV
// (vq_replica_gemv.cuh), which uses the same lane mapping.
template <class Cfg>
__device__ __forceinline__ void vq_row_block_store(float a, int rb, const __half* __restrict__ scales,
                                                   __half* __restrict__ y, float* __restrict__ ws, int rows) {
    const int lane = threadIdx.x % 32;
    a += __shfl_xor_sync(VQ_FULL_MASK, a, 1);
    a += __shfl_xor_sync(VQ_FULL_MASK, a, 2);
    const int row = rb * 8 + lane / 4;
    // Columns past `cols` carry code 0 and x = 0, so they add nothing.
    if (lane % 4 == 0 && row < rows) vq_row_store<Cfg>(a, row, scales, y, ws);
}

// One k tile, row blocks [rb_lo, rb_hi): stage the codebook set and the activation slice, build the table, then
// stream the codes of the row blocks (CHUNK_ROWS / 8 per step, IN_FLIGHT steps of codes in flight per warp).
template <class Cfg>
__device__ __forceinline__ void vq_lut_tile_range(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                  const __half* __restrict__ scales, const __half* __restrict__ x,
                                                  __half* __restrict__ y, float* __restrict__ ws, int rows, int cols, int kb,
                                                  int tile, int rb_lo, int rb_hi) {
    constexpr int V = Cfg::V, R = Cfg::R, B = Cfg::B, VPC = Cfg::VPC;
    constexpr int TG = 4 * VPC;  // groups (vectors) per k tile
    constexpr int ROWP = vq_lut_row<Cfg>();  // floats per table row (>= TG)
    constexpr bool FAST = ROWP == 64 && B == 8;
    constexpr int ENTRIES = 1 << B;
    constexpr int RB = R * B;
    constexpr int RPW = Cfg::ROWS_PER_WARP;
    constexpr int CHUNK_ROWS = Cfg::WARPS * RPW * 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* table = reinterpret_cast<float*>(smem_raw);                      // [R][ENTRIES][ROWP], TG used
    __half* cbs = reinterpret_cast<__half*>(table + R * ENTRIES * ROWP);     // [R][ENTRIES][V]
    __half* xs = cbs + R * ENTRIES * V;                                      // [TG * V]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int col0 = tile * TG * V;
    const int chunks = (rb_hi - rb_lo + CHUNK_ROWS / 8 - 1) / (CHUNK_ROWS / 8);

    // Row blocks this warp owns in chunk c: rb_lo + c * CHUNK_ROWS/8 + warp * RPW + d.
    auto rb_of = [&](int c, int d) { return rb_lo + c * (CHUNK_ROWS / 8) + warp * RPW + d; };
    // A ring of IN_FLIGHT chunk buffers: the first IN_FLIGHT - 1 chunks are in flight during staging and the table
    // build (a warp's whole share on small layers), then one new chunk is loaded per chunk looked up.
    constexpr int DEPTH = Cfg::IN_FLIGHT;
    static_assert(DEPTH >= 2, "at least one chunk in flight while another is looked up");
    uint32_t buf[DEPTH][RPW][4];
    auto load = [&](int c, uint32_t (&dst)[RPW][4]) {
#pragma unroll
        for (int d = 0; d < RPW; ++d) {
            const int rb = rb_of(c, d);
            if (c < chunks && rb < rb_hi) vq_load_chunk<1>(codes, (size_t)rb * kb + tile, lane, dst[d]);
        }
    };
    const __half* cb_src = codebooks;
    if constexpr (Cfg::TILE_ROWS > 0) cb_src += (size_t)vq_set_of<Cfg>(min(rb_lo * 8, rows - 1), col0, cols) * R * ENTRIES * V;
    // The staging loads go out before the code prefetch, so that they do not queue behind it: the table build, on
    // every block's critical path, waits for them. The codebook set by cp.async (cbs is only read by the table
    // build, which every thread of a previous range has left), the activation slice into registers.
    constexpr bool CB_ASYNC = (R * ENTRIES * V) % 8 == 0;
    if constexpr (CB_ASYNC) {
        const uint32_t dst = (uint32_t)__cvta_generic_to_shared(cbs);
        for (int i = threadIdx.x; i < R * ENTRIES * V / 8; i += blockDim.x)
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst + 16u * i),
                         "l"(reinterpret_cast<const uint4*>(cb_src) + i));
        asm volatile("cp.async.commit_group;");
    }
    constexpr int X_PER_THREAD = (TG * V + 32 * Cfg::WARPS - 1) / (32 * Cfg::WARPS);
    __half xr[X_PER_THREAD];
#pragma unroll
    for (int j = 0; j < X_PER_THREAD; ++j) {
        const int i = threadIdx.x + j * 32 * Cfg::WARPS;
        xr[j] = i < TG * V && col0 + i < cols ? x[col0 + i] : __float2half(0.f);
    }
#pragma unroll
    for (int i = 0; i < DEPTH - 1; ++i) load(i, buf[i]);

    __syncthreads();  // the previous range's lookups are done with the table
    if constexpr (!CB_ASYNC) {
        for (int i = threadIdx.x; i < R * ENTRIES * V; i += blockDim.x) cbs[i] = cb_src[i];
    }
#pragma unroll
    for (int j = 0; j < X_PER_THREAD; ++j) {
        const int i = threadIdx.x + j * 32 * Cfg::WARPS;
        if (i < TG * V) xs[i] = xr[j];
    }
    if constexpr (CB_ASYNC) asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
    // Table build. Thread -> fixed group grp (its activation vector stays in registers) and entries
    // se = tid / TG, + stride, ...: a warp shares se (broadcast codebook reads) and writes consecutive groups
    // (conflict-free stores). Products in half2 (4 HFMA2 per entry), the two lanes summed in fp32.
    {
        const int grp = threadIdx.x % TG;
        __half2 xv[V / 2];
#pragma unroll
        for (int k = 0; k < V / 2; ++k) xv[k] = reinterpret_cast<const __half2*>(xs + grp * V)[k];
        const int stride = blockDim.x / TG;
#pragma unroll 4
        for (int se = threadIdx.x / TG; se < R * ENTRIES; se += stride) {
            const __half2* cv = reinterpret_cast<const __half2*>(cbs + se * V);
            __half2 p = __hmul2(xv[0], cv[0]);
#pragma unroll
            for (int k = 1; k < V / 2; ++k) p = __hfma2(xv[k], cv[k], p);
            table[se * ROWP + grp] = __low2float(p) + __high2float(p);
        }
    }
    __syncthreads();

    // Lane (g, t) reads group t + 4·((j + g) mod VPC) at step j: one base address per step, computed once.
    // 32-bit shared-window byte addresses of this lane's column of the table at each step: a lookup is then
    // PRMT (byte codes) + LEA + LDS [addr + stage offset as an immediate] + FADD.
    const uint32_t table_s = (uint32_t)__cvta_generic_to_shared(table);
    uint32_t toff[FAST ? 1 : VPC];
    // FAST (256-byte rows, 8-bit codes): the column offsets of steps 2i and 2i+1 in bytes 0 and 2 of offq[i] (bytes 1
    // and 3 zero), so one PRMT of (code word, offset word) gives code·256 + column, and the table base is folded
    // into the LDS as a uniform register: PRMT + LDS + FADD per lookup.
    uint32_t offq[FAST ? VPC / 2 : 1];
    if constexpr (FAST) {
        static_assert(VPC % 2 == 0, "pairs of steps");
#pragma unroll
        for (int i = 0; i < VPC / 2; ++i)
            offq[i] = vq_lut_offset_pair(4u * (t + 4 * ((2 * i + g) % VPC)), 4u * (t + 4 * ((2 * i + 1 + g) % VPC)));
        toff[0] = 0u;
    } else {
#pragma unroll
        for (int j = 0; j < VPC; ++j) toff[j] = table_s + 4u * (t + 4 * ((j + g) % VPC));
        offq[0] = 0u;
    }
    const unsigned char* tbl_bytes = reinterpret_cast<const unsigned char*>(table);

    auto process = [&](int c, uint32_t (&cur)[RPW][4]) {
#pragma unroll
        for (int d = 0; d < RPW; ++d) {
            const int rb = rb_of(c, d);
            if (rb >= rb_hi) continue;  // (not break: keeps the loop unrolled, cur[] in registers)
            vq_rotate_chunk<Cfg>(cur[d], (g % VPC) * RB);
            float acc[2] = {0.f, 0.f};  // two chains of adds (even / odd steps): half the dependent-add latency
#pragma unroll
            for (int j = 0; j < VPC; ++j) {
#pragma unroll
                for (int s = 0; s < R; ++s) {
                    const int bit = j * RB + s * B;
                    if constexpr (FAST) {
                        const uint32_t k = (uint32_t)((bit % 32) / 8);
                        const uint32_t addr = vq_lut_addr_pair(cur[d][bit / 32], offq[j / 2], k, j % 2);
                        acc[j % 2] += *reinterpret_cast<const float*>(tbl_bytes + addr + s * ENTRIES * ROWP * 4);
                        continue;
                    }
                    const uint32_t idx = vq_code_at<B>(cur[d], bit);
                    float e;
                    // ptxas folds the stage offset into the LDS immediate.
                    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(e) : "r"(toff[j] + idx * (ROWP * 4) + s * ENTRIES * ROWP * 4));
                    acc[j % 2] += e;
                }
            }
            vq_row_block_store<Cfg>(acc[0] + acc[1], rb, scales, y, ws, rows);
        }
    };
    // Chunk c + DEPTH - 1 goes into the buffer chunk c - 1 left, then chunk c is looked up.
    for (int c = 0; c < chunks; c += DEPTH) {
#pragma unroll
        for (int i = 0; i < DEPTH; ++i) {
            if (c + i >= chunks) break;
            load(c + i + DEPTH - 1, buf[(i + DEPTH - 1) % DEPTH]);
            process(c + i, buf[i]);
        }
    }
}

// Work split. chunks > 0: block (x, y) takes k tile y and `chunks` chunks of rows from x · chunks · CHUNK_ROWS (per-tile
// codebooks need a block's rows inside one codebook row band). chunks == 0 (stream mode, vq_for_block_range): the
// (k tile, row block) pairs are cut into gridDim.x equal ranges; a range that crosses a k tile rebuilds the table once.
template <class Cfg>
__device__ __forceinline__ void vq_lut_gemv_body(const uint4* __restrict__ codes, const __half* __restrict__ codebooks,
                                                 const __half* __restrict__ scales, const __half* __restrict__ x,
                                                 __half* __restrict__ y, float* __restrict__ ws, int rows, int cols, int kb,
                                                 int chunks) {
    static_assert(Cfg::L == 1 && Cfg::M == 1 && !Cfg::E8P, "LUT GeMV preconditions");
    constexpr int CHUNK_ROWS = Cfg::WARPS * Cfg::ROWS_PER_WARP * 8;
    const int row_blocks = (rows + 7) / 8;
    if (chunks > 0) {
        const int rb0 = blockIdx.x * chunks * (CHUNK_ROWS / 8);
        vq_lut_tile_range<Cfg>(codes, codebooks, scales, x, y, ws, rows, cols, kb, blockIdx.y, rb0,
                               min(row_blocks, rb0 + chunks * (CHUNK_ROWS / 8)));
        return;
    }
    vq_for_block_range(kb, row_blocks, [&](int tile, int rb_lo, int rb_hi) {
        vq_lut_tile_range<Cfg>(codes, codebooks, scales, x, y, ws, rows, cols, kb, tile, rb_lo, rb_hi);
    });
}
