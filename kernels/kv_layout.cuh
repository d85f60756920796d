// kv_layout.cuh — where the code of channel group g of token t sits inside the token's G-byte row of the VQ KV cache.
//
// The LUT attention kernels (attention_vq.cuh, VqaLutLane) give each lane one 16-byte chunk of codes per warp step:
// 16 groups of one token (G >= 16, CPL = G / 16 lanes per token) or SEG = 8 groups of each of two tokens (G = 8).
// The lane walks its codes in an order rotated by rot(slot, c), so that at every step the 32 lanes of a warp read 32
// different shared-memory banks of the lookup table (lanes with the same chunk index would otherwise read the same
// column of different rows). Two layouts:
//   logical (PREROT false): group g at byte g; the LUT kernels rotate each chunk in registers (about 12 SEL / SHF
//     instructions per chunk and pass, ~18% of the LUT loops);
//   LUT-rotated (PREROT true): kv_quantize stores every chunk already rotated, byte j of the chunk holding group
//     (j + rot) mod SEG of it, so the decode kernels use the bytes as loaded. The rotation of a token depends only
//     on its position modulo the tokens of a warp step (TPW) and on the chunk, never on the sequence, head or split.
// The host mirrors this in crates/codegen/src/attention.rs (CodeLayout::byte_of); the dequantizing levels read the
// logical layout.
#pragma once

template <int G>
struct KvLutGeometry {
    static constexpr int SEG = G >= 16 ? 16 : G;      // codes of one token in a 16-byte chunk
    static constexpr int CPL = G >= 16 ? G / 16 : 1;  // chunks (lanes) per token
    static constexpr int TPC = G >= 16 ? 1 : 16 / G;  // tokens per chunk
    static constexpr int TPW = 32 / CPL * TPC;        // tokens per warp step
    static constexpr int REP = G >= 32 ? 1 : 32 / G;  // replicas of the G table columns in a row
    static_assert(G == 8 || G == 16 || G == 32 || G == 64, "8, 16, 32 or 64 channel groups");
};

// Rotation of the chunk that lane `slot` (its token slot in the warp step) takes, chunk index c (0 .. CPL-1).
// G >= 32: lanes (slot, c) and (slot, c + 2) share the bank half of their columns, so the 16 pairs (slot, c / 2) get
// the 16 distinct rotations; G < 32: REP lanes in a row use different replicas of the columns and share a rotation.
template <int G>
__host__ __device__ constexpr int kv_lut_rot(int slot, int c) {
    using Lg = KvLutGeometry<G>;
    return G >= 32 ? (slot * (Lg::CPL / 2) + c / 2) & 15 : slot / Lg::REP;
}

// Byte of the code of group g within token t's row.
template <int G, bool PREROT>
__device__ __forceinline__ int kv_code_byte(int t, int g) {
    if constexpr (!PREROT) {
        return g;
    } else {
        using Lg = KvLutGeometry<G>;
        const int slot = (t % Lg::TPW) / Lg::TPC;
        const int c = g / Lg::SEG, i = g % Lg::SEG;
        const int rot = kv_lut_rot<G>(slot, c);
        return c * Lg::SEG + (i - rot + Lg::SEG) % Lg::SEG;
    }
}
