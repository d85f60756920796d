//! The E8P lookup-table GeMV's code format and layout (`kernels/vq_e8p_lut.cuh`).
//!
//! An E8P code `(a, s)` (abs row `a`, sign byte `s`) has the dot product `T1[i1] + T2[i2]` with an activation group,
//! where both tables are built per group from the activations and the 256-row abs table. [`lut_code`] re-codes each
//! 16-bit code at upload so that both indices are bit fields of it (a bijection of `u16`):
//!
//! | bits  | field |
//! |-------|-------|
//! | 0     | `q` = parity of the odd coordinates' signs `s'_4..s'_7` |
//! | 1-8   | `a` |
//! | 9-11  | `s'_4, s'_5, s'_6` (T2's free signs; `s'_7` follows from `q`) |
//! | 12-14 | `s'_1, s'_2, s'_3` (T1's free signs; `s'_0` follows from `q`, since `s'` has even parity) |
//! | 15    | `p` = parity of `s` (the coset shift, +-1/4) |
//!
//! with `s' = s ^ p` (bit 0). T2's index is bits 0-11 (4096 rows) and T1's is bits 0-8 and 12-15 (8192 rows).

use vqllm_vq::e8p::{grid_packed_abs, E8P_NIBBLE_COORD};
use vqllm_vq::QuantizedWeight;

/// Rows of the two tables.
pub const T1_ROWS: usize = 8192;
pub const T2_ROWS: usize = 4096;

/// Shared memory of the kernel's tables for `u` groups per unit: 12288 rows of `u` fp16 entries.
pub fn table_bytes(u: u32) -> u32 {
    (T1_ROWS + T2_ROWS) as u32 * 2 * u
}

/// Copies of the 256-word abs table the decoded steps read (lane `l` reads copy `l mod 16`).
pub const ABS_COPIES: u32 = 16;

/// Shared memory of the kernel: the tables, then, for a fused Hadamard transform of `hadamard` columns a block, the
/// fp32 buffers of the transform (`E8pLut::HBUF_BYTES` in kernels/vq_e8p_lut.cuh), then, when some steps decode
/// (`decode`), the abs-table copies. The transform buffer holds the unit's `8·u` transformed columns, padded with one
/// float per 32 (`vq_hpad`); when the Hadamard block is wider than the unit, the kernel computes those columns by the
/// Kronecker split and first needs a buffer of per-warp sums (`8·u` floats for each of up to 32 warps).
pub fn smem_bytes(u: u32, hadamard: Option<usize>, decode: bool) -> u32 {
    let span = 8 * u;
    table_bytes(u)
        + hadamard.map_or(0, |h| {
            let part = if h as u32 > span { 4 * 32 * span } else { 0 };
            part + 4 * (span + span / 32)
        })
        + if decode { 256 * 4 * ABS_COPIES } else { 0 }
}

/// The largest unit (8, 4 or 2 groups) whose shared memory without decoded steps ([`smem_bytes`]) fits in `smem`
/// bytes.
pub fn unit_groups(smem: u32, hadamard: Option<usize>) -> Option<u32> {
    [8u32, 4, 2]
        .into_iter()
        .find(|&u| smem_bytes(u, hadamard, false) <= smem)
}

/// Re-codes a 16-bit E8P code (version 1: abs row in bits 8-15, sign byte in bits 0-7) into the kernel's format.
pub fn lut_code(code: u16) -> u16 {
    let a = code >> 8;
    let s = code & 0xff;
    let p = (s.count_ones() & 1) as u16;
    let sp = s ^ p; // s': even parity
    let bit = |j: u32| (sp >> j) & 1;
    let q = bit(4) ^ bit(5) ^ bit(6) ^ bit(7);
    q | a << 1
        | (bit(4) | bit(5) << 1 | bit(6) << 2) << 9
        | (bit(1) | bit(2) << 1 | bit(3) << 2) << 12
        | p << 15
}

/// Inverse of [`lut_code`].
pub fn e8p_code(lut: u16) -> u16 {
    let q = lut & 1;
    let a = (lut >> 1) & 0xff;
    let s456 = (lut >> 9) & 7;
    let s123 = (lut >> 12) & 7;
    let p = lut >> 15;
    let par3 = |v: u16| (v.count_ones() & 1) as u16;
    let s7 = q ^ par3(s456);
    let s0 = q ^ par3(s123);
    let sp = s0 | s123 << 1 | s456 << 4 | s7 << 7;
    a << 8 | (sp ^ p)
}

/// The two table indices of a re-coded code: (T1 row, T2 row).
pub fn table_rows(lut: u16) -> (usize, usize) {
    let l = lut as usize;
    ((l & 0x1ff) | ((l >> 3) & 0x1e00), l & 0xfff)
}

/// Both tables of one activation group `x` (8 values), in f32: the kernel's build, for tests.
pub fn tables(x: &[f32; 8]) -> (Vec<f32>, Vec<f32>) {
    let shift = 0.25 * x.iter().sum::<f32>();
    let (mut t1, mut t2) = (vec![0.0; T1_ROWS], vec![0.0; T2_ROWS]);
    for (a, &w) in grid_packed_abs().iter().enumerate() {
        let m = |j: usize| (((w >> (4 * j)) & 15) as f32 - 8.0) / 2.0;
        let term = |j: usize, neg: u32| {
            let v = m(j) * x[E8P_NIBBLE_COORD[j]];
            if neg == 1 {
                -v
            } else {
                v
            }
        };
        for q in 0..2u32 {
            let qa = q as usize | a << 1;
            for s in 0..8u32 {
                let (n1, n2, n3) = (s & 1, (s >> 1) & 1, (s >> 2) & 1);
                let even = term(0, q ^ n1 ^ n2 ^ n3) + term(1, n1) + term(2, n2) + term(3, n3);
                t1[qa + 512 * s as usize] = even + shift;
                t1[qa + 512 * s as usize + 4096] = even - shift;
                // Same bits as the odd half's free signs s'_4..6.
                let odd = term(4, n1) + term(5, n2) + term(6, n3) + term(7, q ^ n1 ^ n2 ^ n3);
                t2[qa + 512 * s as usize] = odd;
            }
        }
    }
    (t1, t2)
}

/// Words per row and unit: `u` vectors of `r` 16-bit codes, two codes a word.
pub fn words(u: usize, r: usize) -> usize {
    (u * r).div_ceil(2)
}

/// The codes of `q` (an E8P weight) laid out for the kernel with `u` groups per unit: `[unit][32-row group][word][lane]`,
/// lane = row mod 32. A row's words hold, at bit `(i·r + s)·16`, the stage-s code of the unit's group `(i + 2c) mod u`,
/// with `c = lane mod u/2` the lane's class (the order its lookups walk the table columns). Steps `i < decode` keep
/// the original E8P code (the kernel decodes them); the others are re-coded ([`lut_code`]) for the tables. Groups past
/// the input are zero codes (their activations are zero).
pub fn pack_codes(q: &QuantizedWeight, u: usize, decode: usize) -> Vec<u32> {
    let r = q.config.r;
    let groups = q.groups();
    crate::layout::lane_layout(
        groups.div_ceil(u),
        q.rows,
        words(u, r),
        u,
        |unit, n, j, step, put| {
            let g = unit * u + j;
            if g < groups {
                for s in 0..r {
                    let code = q.code(n, g, s);
                    let stored = if step < decode { code } else { lut_code(code) };
                    put((step * r + s) * 16, 16, stored as u64);
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use vqllm_vq::e8p::decode_e8p;

    #[test]
    fn lut_code_is_a_bijection_and_e8p_code_inverts_it() {
        let mut seen = vec![false; 1 << 16];
        for c in 0..=u16::MAX {
            let l = lut_code(c);
            assert!(!seen[l as usize], "two codes map to {l:#06x}");
            seen[l as usize] = true;
            assert_eq!(e8p_code(l), c, "code {c:#06x}");
        }
    }

    #[test]
    fn table_lookups_equal_the_decoded_dot_product_for_every_code() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..3 {
            let x: [f32; 8] = std::array::from_fn(|_| rng.random_range(-2.0f32..2.0));
            let (t1, t2) = tables(&x);
            for c in 0..=u16::MAX {
                let d = decode_e8p(c);
                let want: f32 = d.iter().zip(&x).map(|(a, b)| a * b).sum();
                let (r1, r2) = table_rows(lut_code(c));
                let got = t1[r1] + t2[r2];
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "code {c:#06x}: {got} vs {want}"
                );
            }
        }
    }

    /// Reads back the stage-s code of (row n, group g) from [`pack_codes`]'s layout, the way a lane walks it.
    #[allow(clippy::too_many_arguments)]
    fn unpack(
        words: &[u32],
        rows: usize,
        groups: usize,
        (r, u, decode): (usize, usize, usize),
        n: usize,
        g: usize,
        s: usize,
    ) -> u16 {
        let w = super::words(u, r);
        let (unit, col) = (g / u, g % u);
        let lane = n % 32;
        let i = (col + u - 2 * (lane % (u / 2)) % u) % u; // the step at which the lane reads column `col`
        let bit = (i * r + s) * 16;
        let base = (unit * rows.div_ceil(32) + n / 32) * 32 * w + lane;
        assert!(unit < groups.div_ceil(u));
        let stored = (words[base + 32 * (bit / 32)] >> (bit % 32)) as u16;
        if i < decode {
            stored
        } else {
            e8p_code(stored)
        }
    }

    #[test]
    fn packed_codes_read_back_in_the_lane_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (cfg, rows, cols) in [
            ("quip4", 77, 1024),
            ("vq<8,16,1>:e8p", 40, 8 * 21),
            ("vq<8,16,3>:e8p:scale", 33, 8 * 13),
        ] {
            let config: vqllm_vq::VqConfig = cfg.parse().unwrap();
            let groups = cols / 8;
            let q = QuantizedWeight {
                config,
                rows,
                cols,
                codes: (0..rows * groups * config.r)
                    .map(|_| rng.random())
                    .collect(),
                codebooks: Vec::new(),
                stage_scales: vec![1.0; config.r],
                scales: None,
                rht: None,
            };
            for (u, decode) in [(2usize, 0usize), (4, 1), (8, 0), (8, 3), (8, 8)] {
                let words = pack_codes(&q, u, decode);
                assert_eq!(
                    words.len(),
                    groups.div_ceil(u) * rows.div_ceil(32) * 32 * super::words(u, config.r)
                );
                for n in 0..rows {
                    for g in 0..groups {
                        for s in 0..config.r {
                            let got = unpack(&words, rows, groups, (config.r, u, decode), n, g, s);
                            assert_eq!(
                                got,
                                q.code(n, g, s),
                                "{cfg} u={u} decode={decode} row {n} group {g} stage {s}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unit_size_follows_shared_memory() {
        assert_eq!(table_bytes(8), 196_608);
        assert_eq!(unit_groups(227 * 1024, None), Some(8)); // sm_90
        assert_eq!(unit_groups(227 * 1024, Some(4096)), Some(8)); // + 8.3 KiB of Hadamard buffers
        assert_eq!(unit_groups(163 * 1024, Some(4096)), Some(4)); // sm_80
        assert_eq!(unit_groups(99 * 1024, None), Some(4)); // sm_86 / sm_89
        assert_eq!(unit_groups(99 * 1024, Some(4096)), Some(2));
        assert_eq!(unit_groups(32 * 1024, None), None);
        assert_eq!(smem_bytes(8, Some(16), false), 196_608 + 4 * 66);
        // A block wider than the unit: the per-warp sums of the Kronecker split, then the unit's 64 columns.
        assert_eq!(
            smem_bytes(8, Some(4096), false),
            196_608 + 4 * 32 * 64 + 4 * 66
        );
        // The abs-table copies of decoded steps fit next to the largest transform buffer on sm_90.
        assert!(smem_bytes(8, Some(4096), true) <= 227 * 1024);
    }
}
