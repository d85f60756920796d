//! GGUF parsing on synthetic files: metadata of every type, shapes, alignment, config, errors.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::blocks::{assert_close, random_blocks, SUPPORTED};
use super::gguf_writer::{llama_kvs, GgufWriter};
use crate::error::ModelError;
use crate::ggml_type::GgmlType;
use crate::gguf::GgufFile;
use crate::gguf_meta::{MetaType, MetaValue};
use crate::source::{LinearKind, TensorDtype, WeightSource};
use crate::ModelConfig;

fn parse(bytes: Vec<u8>) -> crate::Result<GgufFile> {
    GgufFile::from_source(Box::new(bytes), "synthetic")
}

fn all_meta_values() -> Vec<(&'static str, MetaValue)> {
    use MetaValue::*;
    vec![
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.f32", F32(1.5)),
        ("t.bool", Bool(true)),
        ("t.str", String("héllo".into())),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f64", F64(-2.25)),
        (
            "t.arr_i32",
            Array(MetaType::I32, vec![I32(1), I32(-2), I32(3)]),
        ),
        (
            "t.arr_str",
            Array(
                MetaType::String,
                vec![String("a".into()), String("".into())],
            ),
        ),
        ("t.arr_empty", Array(MetaType::F32, vec![])),
        (
            "t.arr_nested",
            Array(
                MetaType::Array,
                vec![
                    Array(MetaType::U8, vec![U8(1), U8(2)]),
                    Array(MetaType::U8, vec![]),
                ],
            ),
        ),
    ]
}

#[test]
fn metadata_of_every_type_roundtrips_in_v2_and_v3() {
    for version in [2, 3] {
        let mut w = GgufWriter::new();
        w.version = version;
        for (k, v) in all_meta_values() {
            w = w.kv(k, v);
        }
        let f = parse(w.to_bytes()).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.metadata().len(), all_meta_values().len());
        for (k, v) in all_meta_values() {
            assert_eq!(f.get(k), Some(&v), "{k}");
        }
        assert_eq!(f.get("t.u64").unwrap().as_u64(), Some(u64::MAX));
        assert_eq!(f.get("t.i8").unwrap().as_u64(), None);
        assert_eq!(f.get("t.i8").unwrap().as_f64(), Some(-100.0));
        assert!(f.tensors().is_empty());
    }
}

/// A synthetic file holding one tensor of every supported type (3 rows of 2 blocks), and the
/// expected f32 values.
type Expected = Vec<(String, Vec<f64>, GgmlType)>;

fn every_type_file(alignment: Option<u32>) -> (Vec<u8>, Expected) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut w = GgufWriter::new();
    w.alignment = alignment;
    let mut expected = Vec::new();
    for ty in SUPPORTED {
        let (bytes, want) = random_blocks(ty, 6, &mut rng);
        let name = format!("t.{ty}");
        let ne0 = 2 * ty.block_elems() as u64;
        w = w.tensor(&name, &[ne0, 3], ty.id(), bytes);
        expected.push((name, want, ty));
    }
    (w.to_bytes(), expected)
}

#[test]
fn tensors_of_every_supported_type_read_back() {
    for alignment in [None, Some(64), Some(1)] {
        let (bytes, expected) = every_type_file(alignment);
        let f = parse(bytes).unwrap();
        assert_eq!(f.alignment(), alignment.map_or(32, |a| a as u64));
        assert_eq!(f.data_offset() % f.alignment(), 0);
        for (name, want, ty) in &expected {
            let info = f.tensor(name).unwrap();
            assert_eq!(info.ggml_type, Some(*ty));
            assert_eq!(info.shape(), vec![3, 2 * ty.block_elems()]);
            assert_eq!(info.ne, vec![2 * ty.block_elems() as u64, 3]);
            assert_eq!(info.offset % f.alignment(), 0);
            let got = f.read_f32(name).unwrap();
            assert_close(name, &got, want, ty.block_elems());
            assert_eq!(
                f.read_raw(name).unwrap().len() as u64,
                info.n_bytes.unwrap()
            );
        }
        assert!(matches!(
            f.read_f32("nope"),
            Err(ModelError::UnknownTensor { .. })
        ));
    }
}

/// A tiny llama model: 2 layers, hidden 64, 4 heads, 2 kv heads, ff 96, vocab 32, all Q8_0 / F32.
pub fn tiny_llama(with_output: bool) -> Vec<u8> {
    let (hidden, ff, kv) = (64u64, 96u64, 32u64);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut q8 = |rows: u64, cols: u64| {
        random_blocks(GgmlType::Q8_0, (rows * cols / 32) as usize, &mut rng).0
    };
    let mut w = llama_kvs(GgufWriter::new(), hidden as u32, 2, 4, 2, ff as u32, 32);
    w = w.tensor(
        "token_embd.weight",
        &[hidden, 32],
        GgmlType::Q8_0.id(),
        q8(32, hidden),
    );
    for l in 0..2 {
        let t = |s: &str| format!("blk.{l}.{s}.weight");
        w = w
            .tensor(
                &t("attn_norm"),
                &[hidden],
                0,
                vec![0u8; hidden as usize * 4],
            )
            .tensor(&t("attn_q"), &[hidden, hidden], 8, q8(hidden, hidden))
            .tensor(&t("attn_k"), &[hidden, kv], 8, q8(kv, hidden))
            .tensor(&t("attn_v"), &[hidden, kv], 8, q8(kv, hidden))
            .tensor(&t("attn_output"), &[hidden, hidden], 8, q8(hidden, hidden))
            .tensor(&t("ffn_norm"), &[hidden], 0, vec![0u8; hidden as usize * 4])
            .tensor(&t("ffn_gate"), &[hidden, ff], 8, q8(ff, hidden))
            .tensor(&t("ffn_up"), &[hidden, ff], 8, q8(ff, hidden))
            .tensor(&t("ffn_down"), &[ff, hidden], 8, q8(hidden, ff));
    }
    w = w.tensor(
        "output_norm.weight",
        &[hidden],
        0,
        vec![0u8; hidden as usize * 4],
    );
    if with_output {
        w = w.tensor("output.weight", &[hidden, 32], 8, q8(32, hidden));
    }
    w.to_bytes()
}

#[test]
fn config_and_linear_weights_of_a_tiny_llama() {
    let f = parse(tiny_llama(false)).unwrap();
    let c = WeightSource::config(&f).unwrap();
    let want = ModelConfig {
        architecture: "llama".into(),
        hidden_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        intermediate_size: 96,
        vocab_size: 32,
        max_position_embeddings: 256,
        rope_theta: 500000.0,
        rope_dim: 16,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    };
    assert_eq!(c, want);
    assert!(
        !parse(tiny_llama(true))
            .unwrap()
            .config()
            .unwrap()
            .tie_word_embeddings
    );

    let lw = f.linear_weights();
    assert_eq!(lw.len(), 14);
    let shapes: Vec<_> = lw[..7]
        .iter()
        .map(|w| (w.kind, w.out_features, w.in_features))
        .collect();
    use LinearKind::*;
    assert_eq!(
        shapes,
        vec![
            (Q, 64, 64),
            (K, 32, 64),
            (V, 32, 64),
            (O, 64, 64),
            (Gate, 96, 64),
            (Up, 96, 64),
            (Down, 64, 96)
        ]
    );
    assert!(lw
        .iter()
        .all(|w| w.dtype == TensorDtype::Ggml(GgmlType::Q8_0)));
    assert_eq!(
        (lw[7].layer, lw[7].name.as_str()),
        (1, "blk.1.attn_q.weight")
    );
    // Reading through the trait gives out*in values.
    assert_eq!(f.read_f32(&lw[6].name).unwrap().len(), 64 * 96);
}

#[test]
fn missing_config_keys_are_named() {
    let w = GgufWriter::new().kv("general.architecture", MetaValue::String("llama".into()));
    let e = ModelConfig::from_gguf(&parse(w.to_bytes()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("llama.embedding_length"), "{e}");
    let e = ModelConfig::from_gguf(&parse(GgufWriter::new().to_bytes()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("general.architecture"), "{e}");
    let w = llama_kvs(GgufWriter::new(), 64, 2, 4, 2, 96, 32)
        .kv("llama.rope.dimension_count", MetaValue::String("x".into()));
    let e = ModelConfig::from_gguf(&parse(w.to_bytes()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("rope.dimension_count"), "{e}");
}

/// Header of a file with the given version, counts, then `rest`.
fn raw_header(version: u32, n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

fn tensor_info_bytes(name: &str, ne: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut b = Vec::new();
    super::gguf_writer::write_str(&mut b, name);
    b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&type_id.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b
}

#[test]
fn header_errors_are_typed() {
    let err = |b: Vec<u8>| parse(b).unwrap_err();
    assert!(matches!(err(b"GGU".to_vec()), ModelError::Truncated { .. }));
    assert!(
        matches!(err(b"GGML\x03\0\0\0".to_vec()), ModelError::BadMagic { found } if &found == b"GGML")
    );
    for v in [0u32, 1, 4, 0x0300_0000] {
        match err(raw_header(v, 0, 0, &[])) {
            ModelError::BadVersion { version, hint } => {
                assert_eq!(version, v);
                assert_eq!(hint.contains("big-endian"), v == 0x0300_0000);
            }
            other => panic!("{other}"),
        }
    }
    // Absurd counts fail before any allocation.
    assert!(matches!(
        err(raw_header(3, 0, u64::MAX, &[])),
        ModelError::Truncated { .. }
    ));
    assert!(matches!(
        err(raw_header(3, u64::MAX / 2, 0, &[0; 64])),
        ModelError::Truncated { .. }
    ));
    // A key claiming a huge length.
    let mut kv = u64::MAX.to_le_bytes().to_vec();
    kv.extend_from_slice(&[0; 16]);
    assert!(matches!(
        err(raw_header(3, 0, 1, &kv)),
        ModelError::Truncated { .. }
    ));
    // An array claiming more elements than bytes left.
    let mut kv = Vec::new();
    super::gguf_writer::write_str(&mut kv, "a");
    kv.extend_from_slice(&9u32.to_le_bytes());
    kv.extend_from_slice(&(MetaType::U32 as u32).to_le_bytes());
    kv.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        err(raw_header(3, 0, 1, &kv)),
        ModelError::Truncated { .. }
    ));
    // Unknown value type.
    let mut kv = Vec::new();
    super::gguf_writer::write_str(&mut kv, "a");
    kv.extend_from_slice(&13u32.to_le_bytes());
    kv.extend_from_slice(&[0; 8]);
    assert!(
        matches!(err(raw_header(3, 0, 1, &kv)), ModelError::BadMetadata { key, .. } if key == "a")
    );
    // Bool that is not 0/1.
    let mut kv = Vec::new();
    super::gguf_writer::write_str(&mut kv, "b");
    kv.extend_from_slice(&7u32.to_le_bytes());
    kv.extend_from_slice(&[2; 8]);
    assert!(matches!(
        err(raw_header(3, 0, 1, &kv)),
        ModelError::BadMetadata { .. }
    ));
    // Arrays nested too deep.
    let mut kv = Vec::new();
    super::gguf_writer::write_str(&mut kv, "deep");
    kv.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10 {
        kv.extend_from_slice(&9u32.to_le_bytes());
        kv.extend_from_slice(&1u64.to_le_bytes());
    }
    kv.extend_from_slice(&[0; 64]);
    assert!(matches!(
        err(raw_header(3, 0, 1, &kv)),
        ModelError::BadMetadata { .. }
    ));
    // Duplicate keys, bad alignment.
    let dup = GgufWriter::new()
        .kv("k", MetaValue::U8(1))
        .kv("k", MetaValue::U8(2));
    assert!(
        matches!(err(dup.to_bytes()), ModelError::BadMetadata { reason, .. } if reason.contains("duplicate"))
    );
    let mut bad_align = GgufWriter::new();
    bad_align.alignment = Some(48);
    assert!(
        matches!(err(bad_align.to_bytes()), ModelError::BadMetadata { key, .. } if key == "general.alignment")
    );
}

#[test]
fn tensor_info_errors_are_typed() {
    let one = |name: &str, ne: &[u64], ty: u32, off: u64| {
        let mut b = raw_header(3, 1, 0, &tensor_info_bytes(name, ne, ty, off));
        b.resize(b.len().div_ceil(32) * 32 + 4096, 0);
        parse(b)
    };
    assert!(one("ok", &[32, 4], 0, 0).is_ok());
    assert!(matches!(
        one("t", &[u64::MAX / 2, 4], 0, 0),
        Err(ModelError::ShapeOverflow { .. })
    ));
    assert!(matches!(
        one("t", &[1 << 62, 1], 0, 0),
        Err(ModelError::ShapeOverflow { .. })
    ));
    assert!(matches!(
        one("t", &[1, 1, 1, 1, 1], 0, 0),
        Err(ModelError::BadShape { .. })
    ));
    assert!(matches!(
        one("t", &[], 0, 0),
        Err(ModelError::BadShape { .. })
    ));
    let e = one("t", &[48, 2], GgmlType::Q4_1.id(), 0).unwrap_err();
    assert!(
        matches!(&e, ModelError::BadShape { reason, .. } if reason.contains("block")),
        "{e}"
    );
    assert!(matches!(
        one("t", &[32], 0, 4),
        Err(ModelError::Format { .. })
    ));
    match one("big", &[32, 64], 0, 0) {
        Err(ModelError::TensorOutOfBounds { name, .. }) => assert_eq!(name, "big"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        one("t", &[32], 0, u64::MAX - 31),
        Err(ModelError::TensorOutOfBounds { .. })
    ));
    // Unknown and unsupported types open (they can be listed) but cannot be read as f32.
    let f = one("u", &[32], 99, 0).unwrap();
    assert_eq!(f.tensor("u").unwrap().type_name(), "unknown ggml type 99");
    assert!(
        matches!(f.read_f32("u"), Err(ModelError::UnsupportedDtype { dtype, .. }) if dtype.contains("99"))
    );
    assert!(matches!(
        f.read_raw("u"),
        Err(ModelError::UnsupportedDtype { .. })
    ));
    let f = one("iq", &[256], GgmlType::IQ2_XXS.id(), 0).unwrap();
    assert!(
        matches!(f.read_f32("iq"), Err(ModelError::UnsupportedDtype { dtype, .. }) if dtype == "IQ2_XXS")
    );
    assert_eq!(f.read_raw("iq").unwrap().len(), 66);
    // Duplicate tensor names.
    let w = GgufWriter::new()
        .tensor("x", &[1], 0, vec![0; 4])
        .tensor("x", &[1], 0, vec![0; 4]);
    assert!(
        matches!(parse(w.to_bytes()), Err(ModelError::Format { reason, .. }) if reason.contains("duplicate"))
    );
}
