//! The E8P code layout of the tensor-core kernel (`kernels/vq_mma.cuh`, `vq_mma_e8p_slot`).
//!
//! The tile layout gives each lane 16-byte groups of eight 16-bit codes `(a << 8) | s` (abs row `a`, sign byte `s`),
//! code `c` in half-word `c` of the group (`c = 2j + stage` with two stages, `j` with one). Here each group is
//! rewritten so that the decode needs no work to spread the sign bits over the nibbles of the abs word:
//!
//! | words | content |
//! |-------|---------|
//! | 0, 1  | the abs rows: byte `c mod 4` of word `c / 4` is `a` of code `c` |
//! | 2, 3  | the sign bytes, spread: bit `4i + c mod 4` of word `2 + c / 4` is bit `i` of `s` of code `c` |
//!
//! so that `word & (0x11111111 << c mod 4)` is the code's sign mask, bit `i` in the nibble of coordinate slot `i`
//! (`vq_decode_e8p_spread` in kernels/e8p_fast.cuh). The bytes are the same; only their order changes, so the
//! weight's size does not.

use rayon::prelude::*;

/// Rewrites `codes` (tile layout, 16-bit E8P codes, a multiple of 4 words) into the tensor-core kernel's layout.
pub fn spread_signs(codes: &mut [u32]) {
    debug_assert!(codes.len().is_multiple_of(4), "whole 16-byte groups");
    codes.par_chunks_exact_mut(4).for_each(|group| {
        let mut out = [0u32; 4];
        for c in 0..8 {
            let code = (group[c / 2] >> (16 * (c % 2))) & 0xffff;
            let (abs, signs) = (code >> 8, code & 0xff);
            out[c / 4] |= abs << (8 * (c % 4));
            for i in 0..8 {
                out[2 + c / 4] |= ((signs >> i) & 1) << (4 * i + c % 4);
            }
        }
        group.copy_from_slice(&out);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Code `c` (0..8) of a group in [`spread_signs`]' layout, as the 16-bit tile-layout code (the kernel's reading,
    /// `vq_mma_e8p_slot`).
    fn code_of_group(group: &[u32], c: usize) -> u32 {
        let abs = (group[c / 4] >> (8 * (c % 4))) & 0xff;
        let spread = (group[2 + c / 4] >> (c % 4)) & 0x1111_1111;
        let signs = (0..8).fold(0u32, |s, i| s | (((spread >> (4 * i)) & 1) << i));
        (abs << 8) | signs
    }

    #[test]
    fn every_code_reads_back_from_its_group() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let tile: Vec<u32> = (0..4 * 64).map(|_| rng.random::<u32>()).collect();
        let mut spread = tile.clone();
        spread_signs(&mut spread);
        assert_ne!(spread, tile);
        for (g, (orig, new)) in tile.chunks(4).zip(spread.chunks(4)).enumerate() {
            for c in 0..8 {
                let want = (orig[c / 2] >> (16 * (c % 2))) & 0xffff;
                assert_eq!(code_of_group(new, c), want, "group {g}, code {c}");
            }
        }
    }

    #[test]
    fn zero_padding_stays_zero_and_signs_land_on_nibble_bits() {
        let mut z = vec![0u32; 8];
        spread_signs(&mut z);
        assert_eq!(z, vec![0; 8]);
        // Code 5 (word 2, high half) with abs 0xab and signs 0b1000_0001: abs in byte 1 of word 1, signs at bits
        // 4·0 + 1 and 4·7 + 1 of word 3.
        let mut g = [0u32, 0, 0xab81 << 16, 0];
        spread_signs(&mut g);
        assert_eq!(g, [0, 0xab << 8, 0, (1 << 1) | (1 << 29)]);
    }
}
