//! Checks on the real SmolLM2-135M-Instruct Q4_1 GGUF (skipped with a note when absent).

use std::collections::BTreeMap;

use half::f16;

use crate::gguf::GgufFile;
use crate::source::{LinearKind, TensorDtype, WeightSource};
use crate::GgmlType;

fn open_real() -> Option<GgufFile> {
    match crate::find_smollm2_gguf() {
        Some(p) => Some(GgufFile::open(&p).expect("real GGUF opens")),
        None => {
            eprintln!(
                "note: SmolLM2 GGUF not found (set VQLLM_SMOLLM_GGUF); real-file test skipped"
            );
            None
        }
    }
}

#[test]
fn real_smollm2_config_tensors_and_linear_weights() {
    let Some(f) = open_real() else { return };
    eprintln!("{f:?}");
    for (k, v) in f.metadata() {
        eprintln!("  {k} = {v}");
    }
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for t in f.tensors() {
        *by_type.entry(t.type_name()).or_default() += 1;
        if !t.name.starts_with("blk.") || t.name.starts_with("blk.0.") {
            eprintln!(
                "  {:<28} {:>14} {}",
                t.name,
                format!("{:?}", t.shape()),
                t.type_name()
            );
        }
    }
    eprintln!("  tensor types: {by_type:?}");

    let c = f.config().unwrap();
    eprintln!("{c:?}");
    assert_eq!(c.architecture, "llama");
    assert_eq!(
        (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads),
        (576, 30, 9, 3)
    );
    assert_eq!(
        (c.head_dim, c.intermediate_size, c.vocab_size),
        (64, 1536, 49152)
    );
    assert_eq!((c.max_position_embeddings, c.rope_dim), (8192, 64));
    assert_eq!(c.rope_theta, 100000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert!(c.tie_word_embeddings);
    assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));

    let lw = f.linear_weights();
    assert_eq!(lw.len(), 30 * 7);
    for w in &lw {
        let (o, i) = match w.kind {
            LinearKind::Q | LinearKind::O => (576, 576),
            LinearKind::K | LinearKind::V => (192, 576),
            LinearKind::Gate | LinearKind::Up => (1536, 576),
            LinearKind::Down => (576, 1536),
        };
        assert_eq!((w.out_features, w.in_features), (o, i), "{}", w.name);
        assert_eq!(w.dtype, TensorDtype::Ggml(GgmlType::Q4_1), "{}", w.name);
    }
    assert_eq!(
        f.tensor("token_embd.weight").unwrap().ggml_type,
        Some(GgmlType::Q8_0)
    );
}

#[test]
fn real_smollm2_tensors_decode_consistently() {
    let Some(f) = open_real() else { return };
    // Q4_1 weight: the first block decoded by hand from the raw bytes must match read_f32.
    let name = "blk.0.attn_q.weight";
    let raw = f.read_raw(name).unwrap();
    let w = f.read_f32(name).unwrap();
    assert_eq!(w.len(), 576 * 576);
    let d = f16::from_bits(u16::from_le_bytes([raw[0], raw[1]])).to_f32();
    let m = f16::from_bits(u16::from_le_bytes([raw[2], raw[3]])).to_f32();
    for j in 0..16 {
        assert_eq!(w[j], (raw[4 + j] & 15) as f32 * d + m);
        assert_eq!(w[j + 16], (raw[4 + j] >> 4) as f32 * d + m);
    }
    let stats = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    };
    assert!(w.iter().all(|x| x.is_finite()));
    let (mean, std) = stats(&w);
    eprintln!("{name}: mean {mean:.4e} std {std:.4e}");
    assert!(mean.abs() < 0.05 && std > 1e-3 && std < 1.0);

    // F32 norm weights: identical to the raw little-endian floats; the final norm's scales sit
    // around 1.8 in this model (layer 0's attention norm is small and signed, ~1e-3 mean).
    let norm = f.read_f32("blk.0.attn_norm.weight").unwrap();
    let raw = f.read_raw("blk.0.attn_norm.weight").unwrap();
    assert_eq!(norm.len(), 576);
    for (x, b) in norm.iter().zip(raw.chunks_exact(4)) {
        assert_eq!(x.to_bits(), u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
    let (mean, _) = stats(&f.read_f32("output_norm.weight").unwrap());
    eprintln!("output_norm.weight: mean {mean:.4}");
    assert!(mean > 0.5 && mean < 5.0);

    // Q8_0 embedding: check the first block against a hand decode of the raw bytes.
    let info = f.tensor("token_embd.weight").unwrap();
    assert_eq!(info.shape(), vec![49152, 576]);
    let emb = f.read_f32("token_embd.weight").unwrap();
    let raw = f.read_raw("token_embd.weight").unwrap();
    let d = f16::from_bits(u16::from_le_bytes([raw[0], raw[1]])).to_f32();
    for j in 0..32 {
        assert_eq!(emb[j], (raw[2 + j] as i8) as f32 * d);
    }
    let (mean, std) = stats(&emb);
    eprintln!("token_embd.weight: mean {mean:.4e} std {std:.4e}");
    assert!(emb.iter().all(|x| x.is_finite()) && std > 1e-3 && std < 1.0);
}
