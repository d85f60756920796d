//! Dequantization of ggml block formats to f32, bit-exact to ggml's `dequantize_row_*` reference.
//!
//! Block layouts (little-endian, `f16` = IEEE half):
//! - `Q4_0`  (32 elems, 18 B): `f16 d; u8 qs[16]`; low nibble of `qs[j]` is element `j`, high nibble
//!   element `j+16`; `x = (q - 8) * d`.
//! - `Q4_1`  (32 elems, 20 B): `f16 d; f16 m; u8 qs[16]`; same nibble order; `x = q * d + m`.
//! - `Q5_0`  (32 elems, 22 B): `f16 d; u8 qh[4]; u8 qs[16]`; bit `j` of the u32 `qh` is the 5th bit of
//!   element `j`, bit `j+16` that of element `j+16`; `x = (q - 16) * d`.
//! - `Q5_1`  (32 elems, 24 B): `f16 d; f16 m; u8 qh[4]; u8 qs[16]`; `x = q * d + m`.
//! - `Q8_0`  (32 elems, 34 B): `f16 d; i8 qs[32]`; `x = q * d`.
//! - `Q8_1`  (32 elems, 36 B): `f16 d; f16 s; i8 qs[32]`; `x = q * d` (`s` is a cached sum).
//! - `Q4_K`  (256 elems, 144 B): `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`: 8 sub-blocks of 32
//!   with 6-bit scale/min pairs; `x = d*sc*q - dmin*m`.
//! - `Q5_K`  (256 elems, 176 B): `f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]`.
//! - `Q6_K`  (256 elems, 210 B): `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`; `x = d*sc*(q - 32)`.
//! - `Q8_K`  (256 elems, 292 B): `f32 d; i8 qs[256]; i16 bsums[16]`; `x = q * d`.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::ggml_type::{GgmlType, QK_K};

/// Converts `n_elems` elements of type `ty` stored in `bytes` to f32.
///
/// `bytes` must hold exactly the bytes of `n_elems` elements; `tensor` names the tensor in errors.
/// Large inputs are converted in parallel (rayon).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elems: usize, tensor: &str) -> Result<Vec<f32>> {
    let block_fn = block_fn(ty).ok_or_else(|| ModelError::UnsupportedDtype {
        name: tensor.to_string(),
        dtype: ty.name().to_string(),
    })?;
    let expected = ty.bytes_for(n_elems as u64);
    if expected != Some(bytes.len() as u64) {
        return Err(ModelError::BadShape {
            name: tensor.to_string(),
            dims: vec![n_elems as u64],
            reason: format!(
                "{} elements of {ty} need {:?} bytes, got {}",
                n_elems,
                expected,
                bytes.len()
            ),
        });
    }
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    let mut out = vec![0f32; n_elems];
    // About 64 KiB of output per task: enough work to amortise scheduling.
    let blocks_per_task = (16384 / be).max(1);
    if n_elems <= 16384 {
        for (o, b) in out.chunks_exact_mut(be).zip(bytes.chunks_exact(bb)) {
            block_fn(b, o);
        }
    } else {
        out.par_chunks_mut(be * blocks_per_task)
            .zip(bytes.par_chunks(bb * blocks_per_task))
            .for_each(|(o, b)| {
                for (o, b) in o.chunks_exact_mut(be).zip(b.chunks_exact(bb)) {
                    block_fn(b, o);
                }
            });
    }
    Ok(out)
}

/// Dequantizes one block: `(block bytes, block output)`.
type BlockFn = fn(&[u8], &mut [f32]);

/// The per-block dequantizer of `ty`: `(block bytes, block output)`.
fn block_fn(ty: GgmlType) -> Option<BlockFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => |b, o| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        F16 => |b, o| o[0] = half_at(b, 0),
        BF16 => |b, o| o[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        F64 => |b, o| o[0] = f64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])) as f32,
        Q4_0 => block_q4_0,
        Q4_1 => block_q4_1,
        Q5_0 => block_q5_0,
        Q5_1 => block_q5_1,
        Q8_0 => |b, o| block_q8(half_at(b, 0), &b[2..34], o),
        Q8_1 => |b, o| block_q8(half_at(b, 0), &b[4..36], o),
        Q4_K => block_q4_k,
        Q5_K => block_q5_k,
        Q6_K => block_q6_k,
        Q8_K => |b, o| {
            block_q8(
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                &b[4..4 + QK_K],
                o,
            )
        },
        _ => return None,
    })
}

/// The f16 stored little-endian at `b[at..at+2]`, as f32.
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

fn block_q4_0(b: &[u8], o: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        o[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
        o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        o[j] = (q & 0x0f) as f32 * d + m;
        o[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The 5-bit quants of a Q5_0 / Q5_1 block from its `qh` (4 bytes) and `qs` (16 bytes).
fn q5_quants(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for (j, &x) in qs.iter().enumerate() {
        q[j] = (x & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (x >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

fn block_q5_0(b: &[u8], o: &mut [f32]) {
    let d = half_at(b, 0);
    for (o, q) in o.iter_mut().zip(q5_quants(&b[2..6], &b[6..22])) {
        *o = (q as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (o, q) in o.iter_mut().zip(q5_quants(&b[4..8], &b[8..24])) {
        *o = q as f32 * d + m;
    }
}

fn block_q8(d: f32, qs: &[u8], o: &mut [f32]) {
    for (o, &q) in o.iter_mut().zip(qs) {
        *o = (q as i8) as f32 * d;
    }
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K / Q5_K block
/// (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn block_q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut o[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn block_q5_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut o[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q[l] & 0x0f) + h1) as f32 - m1;
            y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q6_k(b: &[u8], o: &mut [f32]) {
    let d = half_at(b, 208);
    for half_block in 0..2 {
        let ql = &b[64 * half_block..64 * half_block + 64];
        let qh = &b[128 + 32 * half_block..128 + 32 * half_block + 32];
        let sc = &b[192 + 8 * half_block..192 + 8 * half_block + 8];
        let y = &mut o[128 * half_block..128 * half_block + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
