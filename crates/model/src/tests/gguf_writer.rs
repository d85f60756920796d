//! A tiny GGUF writer for tests: produces files with known contents for every supported type.

use crate::gguf_meta::{MetaType, MetaValue};

/// One tensor to write: name, `ne` (innermost first), ggml type id and raw bytes.
pub struct TensorSpec {
    pub name: String,
    pub ne: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// Builds a GGUF image in memory.
pub struct GgufWriter {
    pub version: u32,
    /// Written as `general.alignment` (u32) when set; the default 32 applies otherwise.
    pub alignment: Option<u32>,
    pub kvs: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorSpec>,
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(mut self, key: &str, v: MetaValue) -> Self {
        self.kvs.push((key.to_string(), v));
        self
    }

    pub fn tensor(mut self, name: &str, ne: &[u64], type_id: u32, data: Vec<u8>) -> Self {
        self.tensors.push(TensorSpec {
            name: name.to_string(),
            ne: ne.to_vec(),
            type_id,
            data,
        });
        self
    }

    fn align(&self) -> u64 {
        self.alignment.map_or(32, |a| a as u64)
    }

    /// Offsets (relative to the data section) the tensors get: each aligned.
    pub fn offsets(&self) -> Vec<u64> {
        let a = self.align();
        let mut off = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let here = off;
                off = (off + t.data.len() as u64).div_ceil(a) * a;
                here
            })
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let n_kv = self.kvs.len() + self.alignment.is_some() as usize;
        b.extend_from_slice(&(n_kv as u64).to_le_bytes());
        if let Some(a) = self.alignment {
            write_kv(&mut b, "general.alignment", &MetaValue::U32(a));
        }
        for (k, v) in &self.kvs {
            write_kv(&mut b, k, v);
        }
        let offsets = self.offsets();
        for (t, off) in self.tensors.iter().zip(&offsets) {
            write_str(&mut b, &t.name);
            b.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.type_id.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        let a = self.align() as usize;
        b.resize(b.len().div_ceil(a) * a, 0);
        let data_start = b.len();
        for (t, off) in self.tensors.iter().zip(&offsets) {
            b.resize(data_start + *off as usize, 0);
            b.extend_from_slice(&t.data);
        }
        b
    }
}

pub fn write_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn write_kv(b: &mut Vec<u8>, k: &str, v: &MetaValue) {
    write_str(b, k);
    b.extend_from_slice(&(v.meta_type() as u32).to_le_bytes());
    write_value(b, v);
}

pub fn write_value(b: &mut Vec<u8>, v: &MetaValue) {
    use MetaValue::*;
    match v {
        U8(x) => b.push(*x),
        I8(x) => b.push(*x as u8),
        U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Bool(x) => b.push(*x as u8),
        String(s) => write_str(b, s),
        U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Array(t, vals) => {
            b.extend_from_slice(&(*t as u32).to_le_bytes());
            b.extend_from_slice(&(vals.len() as u64).to_le_bytes());
            for x in vals {
                write_value(b, x);
            }
        }
    }
}

/// A small llama-style config as GGUF metadata.
pub fn llama_kvs(
    w: GgufWriter,
    hidden: u32,
    layers: u32,
    heads: u32,
    kv_heads: u32,
    ff: u32,
    vocab: u32,
) -> GgufWriter {
    w.kv("general.architecture", MetaValue::String("llama".into()))
        .kv("llama.embedding_length", MetaValue::U32(hidden))
        .kv("llama.block_count", MetaValue::U32(layers))
        .kv("llama.attention.head_count", MetaValue::U32(heads))
        .kv("llama.attention.head_count_kv", MetaValue::U32(kv_heads))
        .kv("llama.feed_forward_length", MetaValue::U32(ff))
        .kv("llama.context_length", MetaValue::U32(256))
        .kv("llama.rope.freq_base", MetaValue::F32(500000.0))
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-6),
        )
        .kv("llama.vocab_size", MetaValue::U32(vocab))
        .kv(
            "tokenizer.ggml.tokens",
            MetaValue::Array(
                MetaType::String,
                (0..vocab)
                    .map(|i| MetaValue::String(format!("t{i}")))
                    .collect(),
            ),
        )
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2))
}
