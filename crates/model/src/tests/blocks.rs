//! Test-side block packers: build ggml blocks from chosen integer quants and scales, following the
//! packing of ggml's `quantize_row_*_ref`, and compute the expected values straight from the
//! per-element formulas (in f64). Checking the crate's dequantizers against these tests the
//! unpacking independently of how the crate implements it.

use half::{bf16, f16};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ggml_type::GgmlType;

/// A random f16 scale in roughly [lo, hi), returned as (bits, exact value).
fn rand_half(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> (u16, f64) {
    let h = f16::from_f32(rng.random_range(lo..hi));
    (h.to_bits(), h.to_f32() as f64)
}

/// Packs 8 six-bit (scale, min) pairs the way `quantize_row_q4_K_ref` does.
fn pack_scales_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (sc[j], m[j]);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    s
}

/// One random block of `ty` and its expected dequantized values.
pub fn random_block(ty: GgmlType, rng: &mut ChaCha8Rng) -> (Vec<u8>, Vec<f64>) {
    use GgmlType::*;
    let mut b = Vec::new();
    let mut y = Vec::new();
    match ty {
        F32 => {
            let v: f32 = rng.random_range(-4.0..4.0);
            b.extend_from_slice(&v.to_le_bytes());
            y.push(v as f64);
        }
        F16 => {
            let h = f16::from_f32(rng.random_range(-4.0..4.0));
            b.extend_from_slice(&h.to_bits().to_le_bytes());
            y.push(h.to_f32() as f64);
        }
        BF16 => {
            let h = bf16::from_f32(rng.random_range(-4.0..4.0));
            b.extend_from_slice(&h.to_bits().to_le_bytes());
            y.push(h.to_f32() as f64);
        }
        F64 => {
            let v: f64 = rng.random_range(-4.0..4.0);
            b.extend_from_slice(&v.to_le_bytes());
            y.push(v as f32 as f64);
        }
        Q4_0 | Q4_1 => {
            let (dbits, d) = rand_half(rng, -0.1, 0.1);
            let (mbits, m) = rand_half(rng, -1.0, 1.0);
            let q: Vec<u8> = (0..32).map(|_| rng.random_range(0..16u8)).collect();
            b.extend_from_slice(&dbits.to_le_bytes());
            if ty == Q4_1 {
                b.extend_from_slice(&mbits.to_le_bytes());
            }
            b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
            for &qi in &q {
                y.push(if ty == Q4_0 {
                    (qi as f64 - 8.0) * d
                } else {
                    qi as f64 * d + m
                });
            }
        }
        Q5_0 | Q5_1 => {
            let (dbits, d) = rand_half(rng, -0.1, 0.1);
            let (mbits, m) = rand_half(rng, -1.0, 1.0);
            let q: Vec<u8> = (0..32).map(|_| rng.random_range(0..32u8)).collect();
            let mut qh = 0u32;
            for j in 0..16 {
                qh |= (((q[j] & 0x10) >> 4) as u32) << j;
                qh |= (((q[j + 16] & 0x10) >> 4) as u32) << (j + 16);
            }
            b.extend_from_slice(&dbits.to_le_bytes());
            if ty == Q5_1 {
                b.extend_from_slice(&mbits.to_le_bytes());
            }
            b.extend_from_slice(&qh.to_le_bytes());
            b.extend((0..16).map(|j| (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4)));
            for &qi in &q {
                y.push(if ty == Q5_0 {
                    (qi as f64 - 16.0) * d
                } else {
                    qi as f64 * d + m
                });
            }
        }
        Q8_0 | Q8_1 => {
            let (dbits, d) = rand_half(rng, -0.1, 0.1);
            let q: Vec<i8> = (0..32).map(|_| rng.random::<i8>()).collect();
            b.extend_from_slice(&dbits.to_le_bytes());
            if ty == Q8_1 {
                let s = f16::from_f32(q.iter().map(|&x| x as f32).sum::<f32>() * d as f32);
                b.extend_from_slice(&s.to_bits().to_le_bytes());
            }
            b.extend(q.iter().map(|&x| x as u8));
            y.extend(q.iter().map(|&x| x as f64 * d));
        }
        Q8_K => {
            let d: f32 = rng.random_range(-0.1..0.1);
            let q: Vec<i8> = (0..256).map(|_| rng.random::<i8>()).collect();
            b.extend_from_slice(&d.to_le_bytes());
            b.extend(q.iter().map(|&x| x as u8));
            for chunk in q.chunks(16) {
                let s: i16 = chunk.iter().map(|&x| x as i16).sum();
                b.extend_from_slice(&s.to_le_bytes());
            }
            y.extend(q.iter().map(|&x| x as f64 * d as f64));
        }
        Q4_K | Q5_K => {
            let (dbits, d) = rand_half(rng, 0.0, 0.01);
            let (mbits, dmin) = rand_half(rng, 0.0, 0.01);
            let mut sc = [0u8; 8];
            let mut mn = [0u8; 8];
            for j in 0..8 {
                sc[j] = rng.random_range(0..64u8);
                mn[j] = rng.random_range(0..64u8);
            }
            let levels = if ty == Q4_K { 16u8 } else { 32u8 };
            let l: Vec<u8> = (0..256).map(|_| rng.random_range(0..levels)).collect();
            b.extend_from_slice(&dbits.to_le_bytes());
            b.extend_from_slice(&mbits.to_le_bytes());
            b.extend_from_slice(&pack_scales_k4(&sc, &mn));
            let mut qh = [0u8; 32];
            let mut ql = [0u8; 128];
            let (mut m1, mut m2) = (1u8, 2u8);
            for (chunk, n) in (0..256).step_by(64).enumerate() {
                for j in 0..32 {
                    let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                    if l1 > 15 {
                        l1 -= 16;
                        qh[j] |= m1;
                    }
                    if l2 > 15 {
                        l2 -= 16;
                        qh[j] |= m2;
                    }
                    ql[32 * chunk + j] = l1 | (l2 << 4);
                }
                m1 <<= 2;
                m2 <<= 2;
            }
            if ty == Q5_K {
                b.extend_from_slice(&qh);
            }
            b.extend_from_slice(&ql);
            for (i, &li) in l.iter().enumerate() {
                y.push(d * sc[i / 32] as f64 * li as f64 - dmin * mn[i / 32] as f64);
            }
        }
        Q6_K => {
            let (dbits, d) = rand_half(rng, -0.01, 0.01);
            let scales: Vec<i8> = (0..16).map(|_| rng.random::<i8>()).collect();
            let l: Vec<u8> = (0..256).map(|_| rng.random_range(0..64u8)).collect();
            let mut ql = [0u8; 128];
            let mut qh = [0u8; 64];
            for (half, j) in (0..256).step_by(128).enumerate() {
                for i in 0..32 {
                    let q = |k: usize| l[j + i + 32 * k];
                    ql[64 * half + i] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
                    ql[64 * half + i + 32] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
                    qh[32 * half + i] =
                        (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
                }
            }
            b.extend_from_slice(&ql);
            b.extend_from_slice(&qh);
            b.extend(scales.iter().map(|&s| s as u8));
            b.extend_from_slice(&dbits.to_le_bytes());
            for (i, &li) in l.iter().enumerate() {
                y.push(d * scales[i / 16] as f64 * (li as f64 - 32.0));
            }
        }
        other => panic!("no test packer for {other}"),
    }
    assert_eq!(b.len(), ty.block_bytes(), "{ty} block size");
    assert_eq!(y.len(), ty.block_elems(), "{ty} block elems");
    (b, y)
}

/// `n_blocks` random blocks of `ty`, concatenated.
pub fn random_blocks(ty: GgmlType, n_blocks: usize, rng: &mut ChaCha8Rng) -> (Vec<u8>, Vec<f64>) {
    let mut bytes = Vec::new();
    let mut vals = Vec::new();
    for _ in 0..n_blocks {
        let (b, y) = random_block(ty, rng);
        bytes.extend(b);
        vals.extend(y);
    }
    (bytes, vals)
}

/// Asserts `got` matches `want` to f32 rounding: within 1e-6 of the largest magnitude in the
/// same block of `block` elements (a wrongly unpacked quant is off by a whole quant step, orders
/// of magnitude more).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], block: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (bi, (g, w)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
        let scale = w.iter().fold(0f64, |a, &x| a.max(x.abs()));
        let tol = 1e-6 * scale + 1e-12;
        for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
            let at = bi * block + i;
            assert!(
                (g as f64 - w).abs() <= tol,
                "{what}[{at}]: got {g}, want {w}"
            );
        }
    }
}

/// The types with a dequantizer (and a test packer).
pub const SUPPORTED: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F64,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];
