//! GGUF metadata values (the typed key/value section of the header).

use std::fmt;

use crate::byte_source::Cursor;
use crate::error::{ModelError, Result};

/// Type ids of GGUF metadata values, as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl MetaType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<MetaType> {
        use MetaType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type takes in the file (used to cap array counts).
    fn min_bytes(self) -> u64 {
        use MetaType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// One GGUF metadata value.
///
/// Strings are decoded as UTF-8 with invalid sequences replaced (GGUF requires UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: element type and values (all of that type).
    Array(MetaType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        use MetaValue::*;
        match *self {
            U8(v) => Some(v as u64),
            U16(v) => Some(v as u64),
            U32(v) => Some(v as u64),
            U64(v) => Some(v),
            I8(v) => u64::try_from(v).ok(),
            I16(v) => u64::try_from(v).ok(),
            I32(v) => u64::try_from(v).ok(),
            I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64).or(match *self {
                MetaValue::I8(v) => Some(v as f64),
                MetaValue::I16(v) => Some(v as f64),
                MetaValue::I32(v) => Some(v as f64),
                MetaValue::I64(v) => Some(v as f64),
                _ => None,
            }),
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// The GGUF type of this value.
    pub fn meta_type(&self) -> MetaType {
        use MetaValue::*;
        match self {
            U8(_) => MetaType::U8,
            I8(_) => MetaType::I8,
            U16(_) => MetaType::U16,
            I16(_) => MetaType::I16,
            U32(_) => MetaType::U32,
            I32(_) => MetaType::I32,
            F32(_) => MetaType::F32,
            Bool(_) => MetaType::Bool,
            String(_) => MetaType::String,
            Array(..) => MetaType::Array,
            U64(_) => MetaType::U64,
            I64(_) => MetaType::I64,
            F64(_) => MetaType::F64,
        }
    }
}

impl fmt::Display for MetaValue {
    /// Short human-readable form; long arrays and strings are abbreviated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MetaValue::*;
        match self {
            U8(v) => write!(f, "{v}"),
            I8(v) => write!(f, "{v}"),
            U16(v) => write!(f, "{v}"),
            I16(v) => write!(f, "{v}"),
            U32(v) => write!(f, "{v}"),
            I32(v) => write!(f, "{v}"),
            U64(v) => write!(f, "{v}"),
            I64(v) => write!(f, "{v}"),
            F32(v) => write!(f, "{v}"),
            F64(v) => write!(f, "{v}"),
            Bool(v) => write!(f, "{v}"),
            String(s) if s.chars().count() > 60 => {
                write!(
                    f,
                    "{:?}... ({} chars)",
                    s.chars().take(60).collect::<std::string::String>(),
                    s.chars().count()
                )
            }
            String(s) => write!(f, "{s:?}"),
            Array(t, v) => {
                write!(f, "[{t:?}; {}]", v.len())?;
                if !v.is_empty() {
                    write!(f, " [")?;
                    for (i, x) in v.iter().take(4).enumerate() {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        write!(f, "{x}")?;
                    }
                    write!(f, "{}]", if v.len() > 4 { ", ..." } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

/// Nested arrays deeper than this are rejected (guards the recursion against crafted files).
const MAX_ARRAY_DEPTH: usize = 4;

/// Reads a GGUF string (u64 length + bytes), decoding invalid UTF-8 lossily.
pub(crate) fn read_string(c: &mut Cursor<'_>, what: &str) -> Result<String> {
    let n = c.u64(what)?;
    let bytes = c.take(n, what)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Reads one value of type `ty`.
pub(crate) fn read_value(
    c: &mut Cursor<'_>,
    ty: MetaType,
    key: &str,
    depth: usize,
) -> Result<MetaValue> {
    use MetaValue as V;
    let what = format!("metadata value `{key}`");
    Ok(match ty {
        MetaType::U8 => V::U8(c.array::<1>(&what)?[0]),
        MetaType::I8 => V::I8(c.array::<1>(&what)?[0] as i8),
        MetaType::U16 => V::U16(u16::from_le_bytes(c.array(&what)?)),
        MetaType::I16 => V::I16(i16::from_le_bytes(c.array(&what)?)),
        MetaType::U32 => V::U32(u32::from_le_bytes(c.array(&what)?)),
        MetaType::I32 => V::I32(i32::from_le_bytes(c.array(&what)?)),
        MetaType::F32 => V::F32(f32::from_le_bytes(c.array(&what)?)),
        MetaType::Bool => match c.array::<1>(&what)?[0] {
            0 => V::Bool(false),
            1 => V::Bool(true),
            b => {
                return Err(ModelError::BadMetadata {
                    key: key.to_string(),
                    reason: format!("bool byte {b} is neither 0 nor 1"),
                })
            }
        },
        MetaType::String => V::String(read_string(c, &what)?),
        MetaType::U64 => V::U64(u64::from_le_bytes(c.array(&what)?)),
        MetaType::I64 => V::I64(i64::from_le_bytes(c.array(&what)?)),
        MetaType::F64 => V::F64(f64::from_le_bytes(c.array(&what)?)),
        MetaType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(ModelError::BadMetadata {
                    key: key.to_string(),
                    reason: format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                });
            }
            let elem_id = c.u32(&what)?;
            let elem = MetaType::from_id(elem_id).ok_or_else(|| ModelError::BadMetadata {
                key: key.to_string(),
                reason: format!("unknown array element type {elem_id}"),
            })?;
            let count = c.u64(&what)?;
            let needed = count.saturating_mul(elem.min_bytes());
            if needed > c.remaining() {
                return Err(ModelError::Truncated {
                    what: format!("array `{key}` of {count} {elem:?} values"),
                    offset: c.pos(),
                    needed,
                    file_len: c.len(),
                });
            }
            // Capacity grows with parsed elements, so a lying count cannot reserve memory up front.
            let mut values = Vec::with_capacity(count.min(1 << 16) as usize);
            for _ in 0..count {
                values.push(read_value(c, elem, key, depth + 1)?);
            }
            V::Array(elem, values)
        }
    })
}
