//! Block dequantizers against hand-computed blocks and test-side packers.

use half::f16;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::blocks::{assert_close, random_blocks, SUPPORTED};
use crate::dequant::dequantize;
use crate::error::ModelError;
use crate::ggml_type::GgmlType;

fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_bits().to_le_bytes()
}

#[test]
fn q4_1_hand_block() {
    // d = 0.5, m = -1; qs[j] = j | (15 - j) << 4  =>  y[j] = 0.5 j - 1, y[j+16] = 0.5 (15 - j) - 1.
    let mut b = Vec::new();
    b.extend_from_slice(&h(0.5));
    b.extend_from_slice(&h(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_1, &b, 32, "t").unwrap();
    assert_eq!(y[0], -1.0);
    assert_eq!(y[1], -0.5);
    assert_eq!(y[15], 6.5);
    assert_eq!(y[16], 6.5);
    assert_eq!(y[31], -1.0);
}

#[test]
fn q4_0_and_q8_0_hand_blocks() {
    let mut b = Vec::new();
    b.extend_from_slice(&h(2.0));
    b.extend((0..16u8).map(|j| j | (j << 4)));
    let y = dequantize(GgmlType::Q4_0, &b, 32, "t").unwrap();
    assert_eq!(
        (y[0], y[8], y[15], y[16], y[31]),
        (-16.0, 0.0, 14.0, -16.0, 14.0)
    );

    let mut b = Vec::new();
    b.extend_from_slice(&h(0.25));
    b.extend((0..32i8).map(|j| (j - 16) as u8));
    let y = dequantize(GgmlType::Q8_0, &b, 32, "t").unwrap();
    assert_eq!((y[0], y[16], y[31]), (-4.0, 0.0, 3.75));
}

#[test]
fn q5_0_hand_block() {
    // All low nibbles 0xF; qh has only bit 0 (element 0) and bit 16 (element 16) set.
    let mut b = Vec::new();
    b.extend_from_slice(&h(1.0));
    b.extend_from_slice(&(1u32 | (1 << 16)).to_le_bytes());
    b.extend([0xffu8; 16]);
    let y = dequantize(GgmlType::Q5_0, &b, 32, "t").unwrap();
    assert_eq!((y[0], y[1], y[16], y[17]), (15.0, -1.0, 15.0, -1.0));
}

#[test]
fn every_supported_type_matches_the_packer_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for ty in SUPPORTED {
        // Enough blocks to take the parallel path too.
        for n_blocks in [1usize, 3, 20000 / ty.block_elems() + 5] {
            let (bytes, want) = random_blocks(ty, n_blocks, &mut rng);
            let got = dequantize(ty, &bytes, want.len(), "t").unwrap();
            assert_close(&format!("{ty} x{n_blocks}"), &got, &want, ty.block_elems());
        }
    }
}

#[test]
fn size_mismatch_and_unsupported_types_are_errors() {
    let e = dequantize(GgmlType::Q4_1, &[0u8; 19], 32, "w").unwrap_err();
    assert!(matches!(e, ModelError::BadShape { .. }), "{e}");
    let e = dequantize(GgmlType::Q4_1, &[0u8; 20], 31, "w").unwrap_err();
    assert!(matches!(e, ModelError::BadShape { .. }), "{e}");
    let e = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256, "w").unwrap_err();
    match e {
        ModelError::UnsupportedDtype { name, dtype } => {
            assert_eq!((name.as_str(), dtype.as_str()), ("w", "IQ2_XXS"))
        }
        other => panic!("{other}"),
    }
    for ty in GgmlType::all() {
        assert_eq!(ty.can_dequantize(), SUPPORTED.contains(&ty), "{ty}");
    }
}
