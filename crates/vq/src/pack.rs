//! Bit packing of VQ codes, fp16/f32 byte conversion, and AQLM's signed code storage.
//!
//! * [`pack_codes`] / [`unpack_codes`]: a little-endian, LSB-first bitstream of `b`-bit codes (1 ≤ b ≤ 16).
//!   Code `i` occupies stream bits `[i·b, i·b + b)`, bit `j` of the stream is bit `j % 8` of byte `j / 8`.
//!   The last byte's unused high bits are zero. For b = 12 this is "two codes in three bytes":
//!   `c0 | c1 << 12` as a 24-bit little-endian integer. b = 8 and b = 16 are plain `u8` / little-endian `u16`.
//! * [`to_f16_bytes`] / [`from_f16_bytes`], [`to_f32_bytes`] / [`from_f32_bytes`]: little-endian tensor bytes
//!   as safetensors stores them.
//! * [`to_aqlm_signed`] / [`from_aqlm_signed`]: AQLM stores a `b`-bit code as int8 (b ≤ 8) or int16 (b ≤ 16),
//!   with values `≥ 2^(b-1)` stored as `value − 2^b`; the entry index is the stored value mod `2^b`.

use crate::error::{Result, VqError};
use half::f16;

/// Number of bytes a bitstream of `count` codes of `bits` bits occupies, `ceil(count · bits / 8)`.
pub fn packed_len(count: usize, bits: u32) -> Result<usize> {
    check_bits(bits)?;
    count
        .checked_mul(bits as usize)
        .map(|n| n.div_ceil(8))
        .ok_or_else(|| {
            VqError::Shape(format!(
                "{count} codes of {bits} bits overflow the address space"
            ))
        })
}

fn check_bits(bits: u32) -> Result<()> {
    if (1..=16).contains(&bits) {
        Ok(())
    } else {
        Err(VqError::InvalidConfig(format!(
            "code width {bits} bits must be in 1..=16"
        )))
    }
}

/// Packs `codes` (each `< 2^bits`) into an LSB-first bitstream of `ceil(len · bits / 8)` bytes.
///
/// Errors: `bits` outside 1..=16, or a code that does not fit in `bits` bits.
pub fn pack_codes(codes: &[u16], bits: u32) -> Result<Vec<u8>> {
    let len = packed_len(codes.len(), bits)?;
    let limit = 1u32 << bits;
    if let Some(pos) = codes.iter().position(|&c| u32::from(c) >= limit) {
        return Err(VqError::Shape(format!(
            "code {} at index {pos} does not fit in {bits} bits",
            codes[pos]
        )));
    }
    let mut out = Vec::with_capacity(len);
    match bits {
        8 => out.extend(codes.iter().map(|&c| c as u8)),
        16 => out.extend(codes.iter().flat_map(|c| c.to_le_bytes())),
        _ => {
            let mut acc: u64 = 0;
            let mut filled = 0u32;
            for &c in codes {
                acc |= u64::from(c) << filled;
                filled += bits;
                while filled >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    filled -= 8;
                }
            }
            if filled > 0 {
                out.push(acc as u8);
            }
        }
    }
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

/// Unpacks `count` codes of `bits` bits from an LSB-first bitstream written by [`pack_codes`].
///
/// `bytes` must hold at least `ceil(count · bits / 8)` bytes; any further bytes are ignored.
/// Errors: `bits` outside 1..=16, or input too short.
pub fn unpack_codes(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u16>> {
    let need = packed_len(count, bits)?;
    if bytes.len() < need {
        return Err(VqError::Format(format!(
            "packed codes too short: {} bytes for {count} codes of {bits} bits (need {need})",
            bytes.len()
        )));
    }
    let bytes = &bytes[..need];
    let out = match bits {
        8 => bytes.iter().map(|&b| u16::from(b)).collect(),
        16 => bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect(),
        _ => {
            let mask = (1u64 << bits) - 1;
            let mut out = Vec::with_capacity(count);
            let mut acc: u64 = 0;
            let mut filled = 0u32;
            let mut next = bytes.iter();
            for _ in 0..count {
                while filled < bits {
                    // `need` bytes cover every code, so the iterator cannot run dry here.
                    let byte = next.next().copied().unwrap_or(0);
                    acc |= u64::from(byte) << filled;
                    filled += 8;
                }
                out.push((acc & mask) as u16);
                acc >>= bits;
                filled -= bits;
            }
            out
        }
    };
    Ok(out)
}

/// Little-endian fp16 bytes of `values` (each rounded to the nearest fp16; out-of-range values become ±inf).
pub fn to_f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect()
}

/// Values of little-endian fp16 bytes. Errors on an odd byte count.
pub fn from_f16_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(2) {
        return Err(VqError::Format(format!(
            "{} bytes is not a whole number of fp16 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|p| f16::from_le_bytes([p[0], p[1]]).to_f32())
        .collect())
}

/// Values of little-endian bf16 bytes. Errors on an odd byte count.
pub fn from_bf16_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(2) {
        return Err(VqError::Format(format!(
            "{} bytes is not a whole number of bf16 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|p| half::bf16::from_le_bytes([p[0], p[1]]).to_f32())
        .collect())
}

/// Little-endian f32 bytes of `values`.
pub fn to_f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Values of little-endian f32 bytes. Errors when the byte count is not a multiple of 4.
pub fn from_f32_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(VqError::Format(format!(
            "{} bytes is not a whole number of f32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|p| f32::from_le_bytes([p[0], p[1], p[2], p[3]]))
        .collect())
}

/// True when `x` survives a round trip through fp16 unchanged (so storing it as fp16 is lossless).
pub fn is_f16_exact(x: f32) -> bool {
    let back = f16::from_f32(x).to_f32();
    back == x || (x.is_nan() && back.is_nan())
}

/// The AQLM storage value of a `bits`-bit `code`: `code` if `code < 2^(bits-1)`, else `code − 2^bits`.
///
/// The result fits int8 for bits ≤ 8 and int16 for bits ≤ 16. Errors: bad `bits` or `code ≥ 2^bits`.
pub fn to_aqlm_signed(code: u16, bits: u32) -> Result<i16> {
    check_bits(bits)?;
    let c = i32::from(code);
    let size = 1i32 << bits;
    if c >= size {
        return Err(VqError::Shape(format!(
            "code {code} does not fit in {bits} bits"
        )));
    }
    let v = if c >= size / 2 { c - size } else { c };
    Ok(v as i16)
}

/// The code stored as AQLM value `value`: `value mod 2^bits`.
///
/// Strict: `value` must lie in `[−2^(bits-1), 2^(bits-1))`, the range [`to_aqlm_signed`] produces, so a
/// corrupt value is an error rather than silently wrapped.
pub fn from_aqlm_signed(value: i16, bits: u32) -> Result<u16> {
    check_bits(bits)?;
    let half = 1i32 << (bits - 1);
    let v = i32::from(value);
    if v < -half || v >= half {
        return Err(VqError::Format(format!(
            "stored code {value} is outside the {bits}-bit AQLM range [{}, {})",
            -half, half
        )));
    }
    Ok(v.rem_euclid(1 << bits) as u16)
}

/// AQLM int8 bytes of codes with `bits ≤ 8`.
pub fn codes_to_aqlm_i8_bytes(codes: &[u16], bits: u32) -> Result<Vec<u8>> {
    if bits > 8 {
        return Err(VqError::InvalidConfig(format!(
            "int8 AQLM codes need b ≤ 8, got {bits}"
        )));
    }
    codes
        .iter()
        .map(|&c| to_aqlm_signed(c, bits).map(|v| (v as i8) as u8))
        .collect()
}

/// AQLM int16 (little-endian) bytes of codes with `bits ≤ 16`.
pub fn codes_to_aqlm_i16_bytes(codes: &[u16], bits: u32) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(codes.len() * 2);
    for &c in codes {
        out.extend_from_slice(&to_aqlm_signed(c, bits)?.to_le_bytes());
    }
    Ok(out)
}

/// Codes from AQLM int8 bytes (`bits ≤ 8`); each stored value must be in the signed `bits`-bit range.
pub fn codes_from_aqlm_i8_bytes(bytes: &[u8], bits: u32) -> Result<Vec<u16>> {
    if bits > 8 {
        return Err(VqError::InvalidConfig(format!(
            "int8 AQLM codes need b ≤ 8, got {bits}"
        )));
    }
    bytes
        .iter()
        .map(|&b| from_aqlm_signed(i16::from(b as i8), bits))
        .collect()
}

/// Codes from AQLM little-endian int16 bytes; each stored value must be in the signed `bits`-bit range.
pub fn codes_from_aqlm_i16_bytes(bytes: &[u8], bits: u32) -> Result<Vec<u16>> {
    if !bytes.len().is_multiple_of(2) {
        return Err(VqError::Format(format!(
            "{} bytes is not a whole number of int16 codes",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(2)
        .map(|p| from_aqlm_signed(i16::from_le_bytes([p[0], p[1]]), bits))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Naive reference: one bit at a time.
    fn pack_naive(codes: &[u16], bits: u32) -> Vec<u8> {
        let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
        for (i, &c) in codes.iter().enumerate() {
            for j in 0..bits as usize {
                if (c >> j) & 1 == 1 {
                    let pos = i * bits as usize + j;
                    out[pos / 8] |= 1 << (pos % 8);
                }
            }
        }
        out
    }

    proptest! {
        /// Every width b in 1..=16 on the same random raw data (masked to b bits) and random length.
        #[test]
        fn round_trip_matches_naive(raw in proptest::collection::vec(any::<u16>(), 0..300)) {
            for bits in 1..=16u32 {
                let codes: Vec<u16> = raw.iter().map(|&c| (u32::from(c) & ((1 << bits) - 1)) as u16).collect();
                let packed = pack_codes(&codes, bits).unwrap();
                prop_assert_eq!(&packed, &pack_naive(&codes, bits), "bits={}", bits);
                prop_assert_eq!(packed.len(), packed_len(codes.len(), bits).unwrap());
                prop_assert_eq!(unpack_codes(&packed, bits, codes.len()).unwrap(), codes.clone());
                if !packed.is_empty() {
                    prop_assert!(unpack_codes(&packed[..packed.len() - 1], bits, codes.len()).is_err());
                }
                if bits < 16 && !codes.is_empty() {
                    let mut bad = codes.clone();
                    bad[raw.len() / 2] = 1 << bits;
                    prop_assert!(pack_codes(&bad, bits).is_err());
                }
            }
        }

        #[test]
        fn aqlm_signed_round_trip(bits in 1u32..=16, raw in any::<u16>()) {
            let code = raw & (((1u32 << bits) - 1) as u16);
            let v = to_aqlm_signed(code, bits).unwrap();
            prop_assert!(i32::from(v) >= -(1 << (bits - 1)) && i32::from(v) < (1 << (bits - 1)));
            prop_assert_eq!(i32::from(v).rem_euclid(1 << bits) as u16, code);
            prop_assert_eq!(from_aqlm_signed(v, bits).unwrap(), code);
        }
    }

    #[test]
    fn every_width_round_trips_for_every_length_mod_8() {
        for bits in 1..=16u32 {
            for len in 0..=17usize {
                let codes: Vec<u16> = (0..len)
                    .map(|i| ((i as u32 * 40503 + 7) % (1 << bits)) as u16)
                    .collect();
                let packed = pack_codes(&codes, bits).unwrap();
                assert_eq!(packed, pack_naive(&codes, bits), "bits={bits} len={len}");
                assert_eq!(
                    unpack_codes(&packed, bits, len).unwrap(),
                    codes,
                    "bits={bits} len={len}"
                );
            }
        }
    }

    #[test]
    fn twelve_bit_is_two_codes_in_three_bytes() {
        let packed = pack_codes(&[0xABC, 0x123], 12).unwrap();
        assert_eq!(packed, vec![0xBC, 0x3A, 0x12]);
        let packed = pack_codes(&[0xABC, 0x123, 0xFFF], 12).unwrap();
        assert_eq!(packed, vec![0xBC, 0x3A, 0x12, 0xFF, 0x0F]);
        assert_eq!(
            unpack_codes(&packed, 12, 3).unwrap(),
            vec![0xABC, 0x123, 0xFFF]
        );
    }

    #[test]
    fn fast_paths_are_plain_bytes() {
        assert_eq!(pack_codes(&[1, 255], 8).unwrap(), vec![1, 255]);
        assert_eq!(
            pack_codes(&[0x1234, 0xFFFF], 16).unwrap(),
            vec![0x34, 0x12, 0xFF, 0xFF]
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(pack_codes(&[4], 2).is_err());
        assert!(pack_codes(&[256], 8).is_err());
        assert!(pack_codes(&[1], 0).is_err());
        assert!(pack_codes(&[1], 17).is_err());
        assert!(unpack_codes(&[0; 2], 12, 2).is_err());
        assert!(unpack_codes(&[0; 3], 12, 2).is_ok());
        assert!(unpack_codes(&[0], 16, 1).is_err());
        assert!(from_f16_bytes(&[0; 3]).is_err());
        assert!(from_f32_bytes(&[0; 6]).is_err());
        assert!(to_aqlm_signed(16, 4).is_err());
        assert!(from_aqlm_signed(8, 4).is_err());
        assert!(from_aqlm_signed(-9, 4).is_err());
        assert!(codes_to_aqlm_i8_bytes(&[1], 9).is_err());
        assert!(codes_from_aqlm_i16_bytes(&[0; 3], 12).is_err());
    }

    #[test]
    fn aqlm_examples() {
        // AQLM pack_int_data: 200 with b=8 is stored as int8 -56; 40000 with b=16 as int16 -25536.
        assert_eq!(to_aqlm_signed(200, 8).unwrap(), -56);
        assert_eq!(to_aqlm_signed(127, 8).unwrap(), 127);
        assert_eq!(to_aqlm_signed(40000, 16).unwrap(), -25536);
        assert_eq!(to_aqlm_signed(3000, 12).unwrap(), 3000 - 4096);
        assert_eq!(
            codes_to_aqlm_i8_bytes(&[200, 5], 8).unwrap(),
            vec![200u8, 5]
        );
        assert_eq!(
            codes_from_aqlm_i8_bytes(&[200u8, 5], 8).unwrap(),
            vec![200, 5]
        );
        let bytes = codes_to_aqlm_i16_bytes(&[40000, 3], 16).unwrap();
        assert_eq!(
            bytes,
            [(-25536i16).to_le_bytes(), 3i16.to_le_bytes()].concat()
        );
        assert_eq!(
            codes_from_aqlm_i16_bytes(&bytes, 16).unwrap(),
            vec![40000, 3]
        );
    }

    #[test]
    fn f16_and_f32_bytes_round_trip() {
        let v = [0.0f32, -1.5, 65504.0, 1e-3, 3.0];
        let back = from_f16_bytes(&to_f16_bytes(&v)).unwrap();
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 1e-3, "{a} {b}");
        }
        assert_eq!(&back[..3], &v[..3]);
        assert_eq!(from_f16_bytes(&[0x00, 0x3C]).unwrap(), vec![1.0]);
        assert_eq!(from_bf16_bytes(&[0x80, 0x3F]).unwrap(), vec![1.0]);
        assert_eq!(
            from_f32_bytes(&to_f32_bytes(&[1.25, -7e30])).unwrap(),
            vec![1.25, -7e30]
        );
        assert!(is_f16_exact(0.5) && !is_f16_exact(0.1));
        assert!(to_f16_bytes(&[1e6]).ends_with(&[0x00, 0x7C]));
    }
}
