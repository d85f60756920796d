// Fast QuIP# E8P (codebook version 1) decode straight to fp16 pairs.
//
// Same result as `decode_e8p` in crates/vq/src/e8p.rs (the CPU reference) rounded to
// fp16; every E8P coordinate is a multiple of 1/4 with |x| <= 3.75, so the fp16 values are exact.
// Needs <cuda_fp16.h> and uint32_t. The emulation test crates/vq/tests/e8p_bittrick.rs mirrors every line
// of `vq_decode_e8p_h2` and checks all 65,536 codes; keep the two in sync.
//
// Code (16 bits): abs index a = bits 15..8, sign byte s = bits 7..0. Packed abs word w = abs_table[a]:
// nibble j = 2|v|+8 (odd, 1..15) of coordinate P[j], P = [0,2,4,6,1,3,5,7] (nibble 7 pre-negated for
// odd-sum rows). With p = parity(s) and s' = s ^ p, coordinate P[j] = +-(n_j-8)/2 (negated when bit j of
// s' is set) + (p ? -1/4 : +1/4).
//
// Steps:
//  1. Sign mask. Negating an odd nibble is n ^ 0b1110 (= 16-n). Spread the 2-bit groups (s_2k, s_2k+1)
//     of s into the nibbles of an index word (two shift/LOP3 steps), then one PRMT looks the 4 bytes up in
//     the 4-entry byte table {0x00, 0x0e, 0xe0, 0xee}: byte k of the mask flips nibbles 2k and 2k+1.
//  2. Parity. s'_0 = s_0 ^ p flips nibble 0 once more (0x0e), and the +-1/4 shift is folded into the
//     nibble lsb: with lsb = 1-p the nibble n' = n_signed - p gives n'/2 - 3.75 = (n_signed-8)/2 +- 1/4
//     for both cosets. Both are one XOR with p * 0x1111111f.
//  3. fp16. Pair i = (x[2i], x[2i+1]) = nibbles (i, i+4), 16 bits apart. OR the nibble into the mantissa
//     of a constant B at bit k (weight 1/2 per unit: B = 32 for k=4, 128 for k=2, 8 for k=6), then one
//     HADD2 with -(B + 3.75) per pair (exact). Pair 1 sits at k=4 in place, pair 0 after << 4, pairs 2 and 3
//     at k=2 and k=6 after one >> 6.
//
// Cost, measured with nvdisasm on NVRTC (CUDA 13) sm_90 output: 23 SASS instructions per code in a
// straight-line kernel (2 address ops + LDS, LOP3 for s, POPC + LOP3 + IMAD parity, 2 shifts + 2 LOP3
// + PRMT mask, 1 LOP3 apply, 2 shifts + 4 LOP3 + 4 HADD2 pairs), plus register copies of 4 constants
// (sign table, three bases) that ptxas re-materializes inside loops; in a 4x-unrolled loop ~26 per code
// all included (was ~50 for the straightforward fp32 decode + conversions). The tensor-core kernel (vq_mma.cuh) uses
// two cheaper forms: the codes come with their sign bits pre-spread (bit 4j + q of a word for 4 codes, as QuIP#'s
// own kernel stores them; crates/codegen/src/e8p_mma.rs), so step 1 is a mask and a multiply (vq_decode_e8p_spread),
// and the 4 HADD2 of step 3 are left to the mma (vq_e8p_biased_pairs): quip4's batch-16 k loop went from ~1210 to
// ~855 SASS instructions a k tile (32 codes a lane; sm_90, with the loop's other changes in vq_mma.cuh).
#pragma once

namespace vq_e8p_fast_detail {

// Inline PTX keeps the intended instruction shape (ptxas otherwise re-associates the masks of step 1 into
// an extra LOP3, and __byte_perm adds a LOP3 that clears the selector msbs, which are zero here anyway).
template <int kLut>
__device__ __forceinline__ uint32_t lop3(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, %4;" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(kLut));
    return d;
}
// lop3 truth tables (a = 0xf0, b = 0xcc, c = 0xaa).
constexpr int kOrAnd = 0xa8;   // (a | b) & c
constexpr int kAndOr = 0xea;   // (a & b) | c
constexpr int kXor3 = 0x96;    // a ^ b ^ c

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

// One HADD2 on raw half2 bit patterns.
__device__ __forceinline__ __half2 hadd2_bits(uint32_t a, uint32_t b) {
    __half2 h;
    asm("add.rn.f16x2 %0, %1, %2;" : "=r"(*reinterpret_cast<uint32_t*>(&h)) : "r"(a), "r"(b));
    return h;
}

// fp16 constants of step 3 (both lanes): -(B + 3.75) for B = 32, 128, 8.
constexpr uint32_t kBias32 = 0xd078d078u;   // -35.75
constexpr uint32_t kBias128 = 0xd81ed81eu;  // -131.75
constexpr uint32_t kBias8 = 0xc9e0c9e0u;    // -11.75
// fp16 bases (both lanes): 32, 128, 8.
constexpr uint32_t kBase32 = 0x50005000u;
constexpr uint32_t kBase128 = 0x58005800u;
constexpr uint32_t kBase8 = 0x48004800u;
// Byte table for step 1: index (s_2k | s_2k+1 << 1) -> {0x00, 0x0e, 0xe0, 0xee}.
constexpr uint32_t kSignTable = 0xeee00e00u;

}  // namespace vq_e8p_fast_detail

// Step 3 without its HADD2: from the signed nibble word v, q[i] = pair i + c_i in fp16 bits (both lanes), c_i =
// B_i + 3.75 = 35.75, 35.75, 131.75, 11.75 (vq_e8p_pair_bias(i) = -c_i). Every q lane is exact in fp16 (B_i plus a
// multiple of 1/2 below 8). A caller that can subtract c_i later at no cost per code takes these words: the
// tensor-core kernel (vq_mma.cuh) feeds them to the mma and adds sum(x * -c) once per k step.
__device__ __forceinline__ void vq_e8p_biased_pairs(uint32_t v, uint32_t (&q)[4]) {
    using namespace vq_e8p_fast_detail;
    const uint32_t hi = v >> 6;                                   // pairs 2, 3 at k = 2, 6
    q[0] = lop3<kAndOr>(v << 4, 0x00f000f0u, kBase32);            // nibbles 0, 4 at k = 4
    q[1] = lop3<kAndOr>(v, 0x00f000f0u, kBase32);                 // nibbles 1, 5 at k = 4
    q[2] = lop3<kAndOr>(hi, 0x003c003cu, kBase128);               // nibbles 2, 6 at k = 2
    q[3] = lop3<kAndOr>(hi, 0x03c003c0u, kBase8);                 // nibbles 3, 7 at k = 6
}

// Steps 1-3 without the final HADD2 (vq_e8p_biased_pairs). `code`: low 16 bits, bits 16 and up are ignored; `w`: the
// code's packed abs word, looked up by the caller.
__device__ __forceinline__ void vq_decode_e8p_biased(uint32_t code, uint32_t w, uint32_t (&q)[4]) {
    using namespace vq_e8p_fast_detail;
    const uint32_t s = code & 0xffu;                              // sign byte
    const uint32_t fix = (__popc(s) & 1u) * 0x1111111fu;          // p: flip nibble 0, set lsb = 1-p
    const uint32_t g = lop3<kOrAnd>(s, code << 4, 0x0f0fu);       // s_0..3 -> bits 0..3, s_4..7 -> 8..11
    const uint32_t idx = lop3<kOrAnd>(g, g << 2, 0x3333u);        // (s_2k, s_2k+1) -> bits 4k, 4k+1
    const uint32_t neg = prmt(kSignTable, 0u, idx);               // byte k: 0x0e*s_2k | 0xe0*s_2k+1
    vq_e8p_biased_pairs(lop3<kXor3>(w, neg, fix), q);             // signed nibbles n' = n_signed - p
}

// vq_decode_e8p_biased for a code whose sign bits come spread (the tensor-core kernel's layout,
// crates/codegen/src/e8p_mma.rs): bit i of its sign byte at bit 4i + sh of `signs`, the word of four codes' signs (sh
// a constant after unrolling). Step 1's spreading is done at upload, so the signs cost a mask and a multiply: the bits
// are masked and counted in place, and shifted only as far as the multiply needs (0xe in the nibble of a bit at 4i is
// t * 0xe, of a bit at 4i + 1 is t * 7).
__device__ __forceinline__ void vq_decode_e8p_spread(uint32_t signs, int sh, uint32_t w, uint32_t (&q)[4]) {
    using namespace vq_e8p_fast_detail;
    const uint32_t t = signs & (0x11111111u << sh);                // this code's sign bits, at 4i + sh
    const uint32_t fix = (__popc(t) & 1u) * 0x1111111fu;          // p, as above
    const uint32_t neg = sh == 0 ? t * 0xeu : sh == 1 ? t * 7u : (t >> (sh - 1)) * 7u;
    vq_e8p_biased_pairs(lop3<kXor3>(w, neg, fix), q);
}

// -c_i of vq_decode_e8p_biased as fp16 bits in both lanes (i a compile-time constant after unrolling).
__device__ __forceinline__ uint32_t vq_e8p_pair_bias(int i) {
    using namespace vq_e8p_fast_detail;
    return i < 2 ? kBias32 : i == 2 ? kBias128 : kBias8;
}

// Decodes one 16-bit E8P code (low 16 bits of `code`; bits 16 and up are ignored) whose packed abs word `w` the
// caller has looked up, into out[i] = (x[2i], x[2i+1]), i = 0..3.
__device__ __forceinline__ void vq_decode_e8p_h2_abs(uint32_t code, uint32_t w, __half2 (&out)[4]) {
    using namespace vq_e8p_fast_detail;
    uint32_t q[4];
    vq_decode_e8p_biased(code, w, q);
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = hadd2_bits(q[i], vq_e8p_pair_bias(i));  // (x[2i], x[2i+1])
}

// Decodes one 16-bit E8P code (low 16 bits of `code`) into out[i] = (x[2i], x[2i+1]), i = 0..3.
// `abs_table` is the 256-word packed abs table (`grid_packed_abs`), normally in shared memory.
__device__ __forceinline__ void vq_decode_e8p_h2(uint32_t code, const uint32_t* abs_table, __half2 (&out)[4]) {
    vq_decode_e8p_h2_abs(code, abs_table[(code >> 8) & 0xffu], out);  // packed abs word (LDS)
}
