//! E8P lattice codebook: table construction, packed form, decoding and nearest-point encoding.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use vqllm_vq::e8p::{abs_grid, decode_e8p, encode_e8p, grid_packed_abs};

/// Doubled coordinates (odd integers) of the `|x|` of every `x ∈ D̂8` with `‖x‖² ≤ 10`, by brute force over
/// all 8^8 candidate vectors, sorted lexicographically.
fn enumerate_d8_hat_abs() -> Vec<[i32; 8]> {
    let vals = [-7, -5, -3, -1, 1, 3, 5, 7];
    let mut set = BTreeSet::new();
    for idx in 0..(1u32 << 24) {
        let x: [i32; 8] = std::array::from_fn(|i| vals[((idx >> (3 * i)) & 7) as usize]);
        let sum: i32 = x.iter().sum(); // doubled sum; the real sum is even iff this is a multiple of 4
        let norm4: i32 = x.iter().map(|v| v * v).sum();
        if sum.rem_euclid(4) == 0 && norm4 <= 40 {
            set.insert(x.map(i32::abs));
        }
    }
    set.into_iter().collect()
}

#[test]
fn abs_table_matches_independent_enumeration() {
    let grid = abs_grid();
    let enumerated = enumerate_d8_hat_abs();
    assert_eq!(enumerated.len(), 227);
    for (a, row) in enumerated.iter().enumerate() {
        let want = row.map(|d| d as f32 / 2.0);
        assert_eq!(grid[a], want, "row {a}");
    }
    let mut by_norm = std::collections::BTreeMap::new();
    for row in grid.iter() {
        assert!(
            row.iter().all(|v| v > &0.0 && (v * 2.0) % 2.0 == 1.0),
            "{row:?}"
        );
        let n2: f32 = row.iter().map(|v| v * v).sum();
        *by_norm.entry(n2 as u32).or_insert(0) += 1;
    }
    let want: std::collections::BTreeMap<u32, i32> =
        [(2, 1), (4, 8), (6, 28), (8, 64), (10, 126), (12, 29)].into();
    assert_eq!(by_norm, want);
    for row in &grid[227..] {
        assert_eq!(row.iter().filter(|v| **v == 1.5).count(), 5);
    }
}

#[test]
fn packed_table_matches_published_hash() {
    let packed = grid_packed_abs();
    assert_eq!(&packed[..3], &[0x9999_9999, 0x5999_9999, 0xd999_9999]);
    let mut h = Sha256::new();
    for w in packed.iter() {
        h.update(w.to_le_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "efc2c03c60acd955dc812ff2bade9ec6cc31259807e48473506161f3a9a230ce"
    );
    for w in packed.iter() {
        for j in 0..8 {
            assert_eq!((w >> (4 * j)) & 1, 1, "nibbles are odd");
        }
    }
}

#[test]
fn decode_test_vectors() {
    assert_eq!(decode_e8p(0x0000), [0.75; 8]);
    assert_eq!(decode_e8p(0x0001), [0.25; 8]);
    assert_eq!(
        decode_e8p(0x0002),
        [-0.75, 0.25, -0.75, 0.25, 0.25, 0.25, 0.25, 0.25]
    );
    assert_eq!(
        decode_e8p(0xffff),
        [-1.25, -1.25, -0.25, -0.25, -1.25, -1.25, -1.25, 0.75]
    );
}

fn all_points() -> Vec<[f32; 8]> {
    (0..=u16::MAX).map(decode_e8p).collect()
}

#[test]
fn decoded_points_are_distinct_shifted_d8_hat_points_with_table_abs() {
    let grid = abs_grid();
    let mut seen = HashSet::new();
    for code in 0..=u16::MAX {
        let x = decode_e8p(code);
        assert!(
            seen.insert(x.map(f32::to_bits)),
            "duplicate point for {code:#06x}"
        );
        let parity = (code & 0xff).count_ones() & 1;
        let shift = if parity == 0 { 0.25 } else { -0.25 };
        let y = x.map(|v| v - shift);
        let doubled = y.map(|v| (v * 2.0) as i32);
        assert!(
            doubled
                .iter()
                .zip(&y)
                .all(|(d, v)| *d as f32 == v * 2.0 && d % 2 != 0),
            "{y:?}"
        );
        assert_eq!(
            doubled.iter().sum::<i32>().rem_euclid(4),
            0,
            "sum must be even: {y:?}"
        );
        assert_eq!(
            y.map(f32::abs),
            grid[(code >> 8) as usize],
            "code {code:#06x}"
        );
    }
}

#[test]
fn encode_inverts_decode() {
    for code in 0..=u16::MAX {
        assert_eq!(encode_e8p(&decode_e8p(code)), code);
    }
}

fn dist2(a: &[f32; 8], b: &[f32; 8]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn encode_matches_brute_force_up_to_ties() {
    let points = all_points();
    let mut rng = ChaCha8Rng::seed_from_u64(0xe8);
    let mut exact = 0;
    let trials = 1500;
    for t in 0..trials {
        let x: [f32; 8] = match t % 3 {
            // Gaussian-ish at the scale the quantizer uses.
            0 => {
                std::array::from_fn(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>())
            }
            // Wide range, including points far outside the codebook.
            1 => std::array::from_fn(|_| rng.random_range(-5.0f32..5.0)),
            // Near a lattice point: the hard cases for the parity fix-up.
            _ => {
                let p = points[rng.random_range(0..points.len())];
                std::array::from_fn(|i| p[i] + rng.random_range(-0.3f32..0.3))
            }
        };
        let (best, best_d) = points
            .iter()
            .enumerate()
            .map(|(c, p)| (c, dist2(&x, p)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let got = encode_e8p(&x);
        let got_d = dist2(&x, &points[got as usize]);
        assert!(
            got_d <= best_d + 1e-4 * (1.0 + best_d),
            "x={x:?}: got {got:#06x} d={got_d}, best {best:#06x} d={best_d}"
        );
        if got as usize == best {
            exact += 1;
        }
    }
    assert!(
        exact >= trials * 99 / 100,
        "only {exact}/{trials} identical codes"
    );
}
