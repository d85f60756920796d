//! Bit-exact CPU emulation of `vq_decode_e8p_h2` (kernels/e8p_fast.cuh), checked against
//! `vqllm_vq::e8p::decode_e8p` for all 65,536 codes.
//!
//! Every step below mirrors one line of the CUDA function (the CUDA line is quoted in the comment), with
//! u32 integer ops and fp16 lanes from the `half` crate; HADD2 is emulated per lane as the exact sum
//! (f64 holds any sum of two fp16 values exactly) rounded to nearest-even fp16.

use half::f16;
use vqllm_vq::e8p::{decode_e8p, grid_packed_abs};

// Constants of kernels/e8p_fast.cuh (vq_e8p_fast_detail).
const K_BIAS32: u32 = 0xd078_d078;
const K_BIAS128: u32 = 0xd81e_d81e;
const K_BIAS8: u32 = 0xc9e0_c9e0;
const K_BASE32: u32 = 0x5000_5000;
const K_BASE128: u32 = 0x5800_5800;
const K_BASE8: u32 = 0x4800_4800;
const K_SIGN_TABLE: u32 = 0xeee0_0e00;
// lop3 truth tables of the header (kOrAnd, kAndOr, kXor3).
const K_OR_AND: u32 = 0xa8;
const K_AND_OR: u32 = 0xea;
const K_XOR3: u32 = 0x96;

/// PTX `lop3.b32 d, a, b, c, lut`: bit i of d is bit `(a_i << 2 | b_i << 1 | c_i)` of `lut`.
fn lop3(a: u32, b: u32, c: u32, lut: u32) -> u32 {
    (0..32).fold(0u32, |d, i| {
        let sel = (((a >> i) & 1) << 2) | (((b >> i) & 1) << 1) | ((c >> i) & 1);
        d | (((lut >> sel) & 1) << i)
    })
}

/// PTX `prmt.b32 d, x, y, s` (default mode): result byte n is byte `s[4n+2:4n]` of
/// `{y, x}`, replaced by the replicated sign bit of that byte when `s[4n+3]` is set.
fn byte_perm(x: u32, y: u32, s: u32) -> u32 {
    let src = ((y as u64) << 32) | x as u64;
    (0..4).fold(0u32, |acc, n| {
        let sel = (s >> (4 * n)) & 0xf;
        let byte = ((src >> (8 * (sel & 7))) & 0xff) as u32;
        let byte = if sel & 8 != 0 {
            if byte & 0x80 != 0 {
                0xff
            } else {
                0
            }
        } else {
            byte
        };
        acc | (byte << (8 * n))
    })
}

/// PTX `add.rn.f16x2`: lane-wise fp16 add, round to nearest even.
fn hadd2(a: u32, b: u32) -> u32 {
    let lane = |x: u32, y: u32| {
        let sum = f16::from_bits(x as u16).to_f64() + f16::from_bits(y as u16).to_f64();
        f16::from_f64(sum).to_bits() as u32
    };
    lane(a & 0xffff, b & 0xffff) | (lane(a >> 16, b >> 16) << 16)
}

/// Line-by-line mirror of `vq_e8p_biased_pairs`: the four biased half2 words of a signed nibble word.
fn biased_pairs(v: u32) -> [u32; 4] {
    // const uint32_t hi = v >> 6;
    let hi = v >> 6;
    [
        // q[0] = lop3<kAndOr>(v << 4, 0x00f000f0u, kBase32);  // (a & b) | c
        lop3(v << 4, 0x00f0_00f0, K_BASE32, K_AND_OR),
        // q[1] = lop3<kAndOr>(v, 0x00f000f0u, kBase32);
        lop3(v, 0x00f0_00f0, K_BASE32, K_AND_OR),
        // q[2] = lop3<kAndOr>(hi, 0x003c003cu, kBase128);
        lop3(hi, 0x003c_003c, K_BASE128, K_AND_OR),
        // q[3] = lop3<kAndOr>(hi, 0x03c003c0u, kBase8);
        lop3(hi, 0x03c0_03c0, K_BASE8, K_AND_OR),
    ]
}

/// Line-by-line mirror of `vq_decode_e8p_biased` (abs word looked up as `vq_decode_e8p_h2` does).
fn decode_e8p_biased(code: u32, abs_table: &[u32; 256]) -> [u32; 4] {
    // const uint32_t w = abs_table[(code >> 8) & 0xffu];
    let w = abs_table[((code >> 8) & 0xff) as usize];
    // const uint32_t s = code & 0xffu;
    let s = code & 0xff;
    // const uint32_t fix = (__popc(s) & 1u) * 0x1111111fu;
    let fix = (s.count_ones() & 1).wrapping_mul(0x1111_111f);
    // const uint32_t g = lop3<kOrAnd>(s, code << 4, 0x0f0fu);       // (a | b) & c
    let g = lop3(s, code << 4, 0x0f0f, K_OR_AND);
    // const uint32_t idx = lop3<kOrAnd>(g, g << 2, 0x3333u);
    let idx = lop3(g, g << 2, 0x3333, K_OR_AND);
    // const uint32_t neg = prmt(kSignTable, 0u, idx);
    let neg = byte_perm(K_SIGN_TABLE, 0, idx);
    // vq_e8p_biased_pairs(lop3<kXor3>(w, neg, fix), q);               // a ^ b ^ c
    biased_pairs(lop3(w, neg, fix, K_XOR3))
}

/// Line-by-line mirror of `vq_decode_e8p_spread`: `signs` holds sign bit i of the code at bit 4i + sh (and other
/// codes' bits elsewhere).
fn decode_e8p_spread(signs: u32, sh: u32, w: u32) -> [u32; 4] {
    // const uint32_t t = signs & (0x11111111u << sh);
    let t = signs & (0x1111_1111 << sh);
    // const uint32_t fix = (__popc(t) & 1u) * 0x1111111fu;
    let fix = (t.count_ones() & 1).wrapping_mul(0x1111_111f);
    // const uint32_t neg = sh == 0 ? t * 0xeu : sh == 1 ? t * 7u : (t >> (sh - 1)) * 7u;
    let neg = match sh {
        0 => t.wrapping_mul(0xe),
        1 => t.wrapping_mul(7),
        _ => (t >> (sh - 1)).wrapping_mul(7),
    };
    // vq_e8p_biased_pairs(lop3<kXor3>(w, neg, fix), q);
    biased_pairs(lop3(w, neg, fix, K_XOR3))
}

/// Mirror of `vq_decode_e8p_h2`: the biased pairs plus `vq_e8p_pair_bias(i)` by one HADD2 each.
fn decode_e8p_h2(code: u32, abs_table: &[u32; 256]) -> [u32; 4] {
    let q = decode_e8p_biased(code, abs_table);
    // out[i] = hadd2_bits(q[i], vq_e8p_pair_bias(i));   // kBias32, kBias32, kBias128, kBias8
    [
        hadd2(q[0], K_BIAS32),
        hadd2(q[1], K_BIAS32),
        hadd2(q[2], K_BIAS128),
        hadd2(q[3], K_BIAS8),
    ]
}

fn both_lanes(x: f32) -> u32 {
    let h = f16::from_f32(x).to_bits() as u32;
    h | (h << 16)
}

#[test]
fn constants_are_the_documented_fp16_values() {
    assert_eq!(K_BIAS32, both_lanes(-35.75));
    assert_eq!(K_BIAS128, both_lanes(-131.75));
    assert_eq!(K_BIAS8, both_lanes(-11.75));
    assert_eq!(K_BASE32, both_lanes(32.0));
    assert_eq!(K_BASE128, both_lanes(128.0));
    assert_eq!(K_BASE8, both_lanes(8.0));
    // Nibble at bit k of the base's mantissa weighs 1/2 per unit: ulp(B) * 2^k = 1/2.
    for (base, k) in [(32.0f32, 4), (128.0, 2), (8.0, 6)] {
        let ulp = base / 1024.0;
        assert_eq!(ulp * (1u32 << k) as f32, 0.5);
    }
    let table: Vec<u32> = (0..4).map(|i| (K_SIGN_TABLE >> (8 * i)) & 0xff).collect();
    assert_eq!(table, vec![0x00, 0x0e, 0xe0, 0xee]);
}

#[test]
fn lop3_tables_compute_the_named_functions() {
    let (a, b, c) = (0xf0f0_f0f0u32, 0xcccc_ccccu32, 0xaaaa_aaaau32);
    assert_eq!(lop3(a, b, c, K_OR_AND), (a | b) & c);
    assert_eq!(lop3(a, b, c, K_AND_OR), (a & b) | c);
    assert_eq!(lop3(a, b, c, K_XOR3), a ^ b ^ c);
    for (x, y, z) in [
        (0x1234_5678u32, 0x9abc_def0u32, 0x0f0f_3333u32),
        (u32::MAX, 0, 0x00f0_00f0),
    ] {
        assert_eq!(lop3(x, y, z, K_OR_AND), (x | y) & z);
        assert_eq!(lop3(x, y, z, K_AND_OR), (x & y) | z);
        assert_eq!(lop3(x, y, z, K_XOR3), x ^ y ^ z);
    }
}

#[test]
fn byte_perm_emulation_matches_ptx_examples() {
    // Identity, byte reversal, selection from the second operand and sign replication.
    assert_eq!(byte_perm(0x4433_2211, 0x8877_6655, 0x3210), 0x4433_2211);
    assert_eq!(byte_perm(0x4433_2211, 0x8877_6655, 0x0123), 0x1122_3344);
    assert_eq!(byte_perm(0x4433_2211, 0x8877_6655, 0x7654), 0x8877_6655);
    assert_eq!(byte_perm(0x0080_7f00, 0, 0x9a98), 0x00ff_0000);
}

#[test]
fn hadd2_emulation_rounds_to_nearest_even() {
    // 2048 + 1 is a tie in fp16 (ulp 2 at 2048): rounds to the even 2048; 2048 + 3 rounds up to 2052.
    let a = both_lanes(2048.0);
    let one = f16::from_f32(1.0).to_bits() as u32;
    let three = f16::from_f32(3.0).to_bits() as u32;
    let r = hadd2(a, one | (three << 16));
    assert_eq!(f16::from_bits(r as u16).to_f32(), 2048.0);
    assert_eq!(f16::from_bits((r >> 16) as u16).to_f32(), 2052.0);
}

#[test]
fn fast_decode_equals_reference_for_all_codes() {
    let table = grid_packed_abs();
    let mut mismatches = Vec::new();
    for code in 0..=u16::MAX {
        let want = decode_e8p(code);
        let got = decode_e8p_h2(code as u32, table);
        for (i, &x) in want.iter().enumerate() {
            // Reference values are exact in fp16.
            let h = f16::from_f32(x);
            assert_eq!(h.to_f32(), x, "code {code:#06x}: {x} is not exact in fp16");
            let lane = (got[i / 2] >> (16 * (i % 2))) & 0xffff;
            if lane as u16 != h.to_bits() {
                mismatches.push((code, i, x, f16::from_bits(lane as u16).to_f32()));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(8)]
    );
}

#[test]
fn fast_decode_uses_the_code_bits_it_should() {
    // Upper 16 bits of `code` are ignored; the documented test vectors decode as in notes §1.2.
    let table = grid_packed_abs();
    let lanes = |words: [u32; 4]| -> Vec<f32> {
        words
            .iter()
            .flat_map(|w| [*w & 0xffff, *w >> 16])
            .map(|h| f16::from_bits(h as u16).to_f32())
            .collect()
    };
    assert_eq!(lanes(decode_e8p_h2(0x0000, table)), vec![0.75; 8]);
    assert_eq!(lanes(decode_e8p_h2(0x0001, table)), vec![0.25; 8]);
    assert_eq!(
        lanes(decode_e8p_h2(0x0002, table)),
        vec![-0.75, 0.25, -0.75, 0.25, 0.25, 0.25, 0.25, 0.25]
    );
    assert_eq!(
        lanes(decode_e8p_h2(0xffff, table)),
        vec![-1.25, -1.25, -0.25, -0.25, -1.25, -1.25, -1.25, 0.75]
    );
    for code in [0x0000u32, 0x1234, 0xabcd, 0xffff] {
        assert_eq!(
            decode_e8p_h2(code | 0xdead_0000, table),
            decode_e8p_h2(code, table)
        );
    }
}

#[test]
fn biased_and_spread_decodes_are_the_value_plus_the_pair_constant() {
    // The tensor-core kernel feeds the biased pairs to the mma and subtracts c_i = -vq_e8p_pair_bias(i) once per
    // output, so each lane must be exactly value + c_i, and the spread-sign decode must give the same words.
    let table = grid_packed_abs();
    let c = [35.75f64, 35.75, 131.75, 11.75];
    for (i, bias) in [K_BIAS32, K_BIAS32, K_BIAS128, K_BIAS8]
        .into_iter()
        .enumerate()
    {
        assert_eq!(-f16::from_bits(bias as u16).to_f64(), c[i]);
    }
    for code in 0..=u16::MAX as u32 {
        let q = decode_e8p_biased(code, table);
        // The code's signs at each of the four positions of the word, the other three codes' bits set from a
        // pattern that changes with the code (the decode must ignore them).
        let spread = (0..8).fold(0u32, |t, i| t | (((code >> i) & 1) << (4 * i)));
        let others = code.wrapping_mul(0x9e37_79b9).rotate_left(code % 32);
        for sh in 0..4 {
            let signs = (others & !(0x1111_1111 << sh)) | (spread << sh);
            assert_eq!(
                decode_e8p_spread(signs, sh, table[(code >> 8) as usize]),
                q,
                "code {code:#06x}, sign bits at 4i + {sh}"
            );
        }
        let want = decode_e8p(code as u16);
        for (k, &x) in want.iter().enumerate() {
            let lane = f16::from_bits(((q[k / 2] >> (16 * (k % 2))) & 0xffff) as u16).to_f64();
            assert_eq!(
                lane - c[k / 2],
                x as f64,
                "code {code:#06x}, coordinate {k}"
            );
        }
    }
}
