//! Safetensors reader: single file, sharded index, ModelWeights auto-detection, errors.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::error::ModelError;
use crate::safetensors::SafetensorsModel;
use crate::source::{LinearKind, ModelWeights, TensorDtype, WeightFormat, WeightSource};

/// A fresh, empty temporary directory unique to this test process and `name`.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vqllm-model-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tensor to write and the f32 values reading it must give.
struct Spec {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
    want: Vec<f32>,
}

fn spec(name: &str, dtype: Dtype, shape: &[usize], rng: &mut ChaCha8Rng) -> Spec {
    let n: usize = shape.iter().product();
    let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let (bytes, want): (Vec<u8>, Vec<f32>) = match dtype {
        Dtype::F32 => (
            vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            vals.clone(),
        ),
        Dtype::F16 => {
            let h: Vec<f16> = vals.iter().map(|&v| f16::from_f32(v)).collect();
            (
                h.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        Dtype::BF16 => {
            let h: Vec<bf16> = vals.iter().map(|&v| bf16::from_f32(v)).collect();
            (
                h.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        Dtype::I32 => (
            (0..n as i32).flat_map(|v| v.to_le_bytes()).collect(),
            vec![],
        ),
        other => panic!("no test data for {other:?}"),
    };
    Spec {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes,
        want,
    }
}

fn write_st(path: &Path, specs: &[&Spec]) {
    let views: Vec<(String, TensorView<'_>)> = specs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                TensorView::new(s.dtype, s.shape.clone(), &s.bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

const CONFIG: &str = r#"{"model_type":"llama","hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,
  "num_key_value_heads":2,"intermediate_size":48,"vocab_size":10,"rms_norm_eps":1e-6}"#;

/// A tiny HF llama: per layer q/k/v/o/gate/up/down + norms, embeddings, lm_head.
fn tiny_hf(rng: &mut ChaCha8Rng) -> Vec<Spec> {
    let mut out = vec![spec(
        "model.embed_tokens.weight",
        Dtype::BF16,
        &[10, 32],
        rng,
    )];
    for l in 0..2 {
        for (k, shape) in [
            (LinearKind::Q, [32, 32]),
            (LinearKind::K, [16, 32]),
            (LinearKind::V, [16, 32]),
            (LinearKind::O, [32, 32]),
            (LinearKind::Gate, [48, 32]),
            (LinearKind::Up, [48, 32]),
            (LinearKind::Down, [32, 48]),
        ] {
            let dtype = if l == 0 { Dtype::F16 } else { Dtype::BF16 };
            out.push(spec(&k.hf_name(l), dtype, &shape, rng));
        }
        out.push(spec(
            &format!("model.layers.{l}.input_layernorm.weight"),
            Dtype::F32,
            &[32],
            rng,
        ));
    }
    out.push(spec("model.norm.weight", Dtype::F32, &[32], rng));
    out.push(spec("lm_head.weight", Dtype::F16, &[10, 32], rng));
    out.push(spec("ids", Dtype::I32, &[4], rng));
    out
}

fn check_model(m: &dyn WeightSource, specs: &[Spec]) {
    assert_eq!(m.format(), WeightFormat::Safetensors);
    assert_eq!(m.tensor_descs().len(), specs.len());
    for s in specs {
        let d = m.tensor_desc(&s.name).unwrap();
        assert_eq!(
            (d.shape.clone(), d.dtype),
            (s.shape.clone(), TensorDtype::Safetensors(s.dtype))
        );
        if s.dtype == Dtype::I32 {
            assert!(
                matches!(m.read_f32(&s.name), Err(ModelError::UnsupportedDtype { dtype, .. }) if dtype == "I32")
            );
        } else {
            assert_eq!(m.read_f32(&s.name).unwrap(), s.want, "{}", s.name);
        }
    }
    let lw = m.linear_weights();
    assert_eq!(lw.len(), 14);
    assert_eq!(
        (lw[1].kind, lw[1].out_features, lw[1].in_features),
        (LinearKind::K, 16, 32)
    );
    assert_eq!(
        (
            lw[13].layer,
            lw[13].kind,
            lw[13].out_features,
            lw[13].in_features
        ),
        (1, LinearKind::Down, 32, 48)
    );
    let c = m.config().unwrap();
    assert_eq!(
        (
            c.hidden_size,
            c.num_layers,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim
        ),
        (32, 2, 4, 2, 8)
    );
    assert!(
        !c.tie_word_embeddings,
        "lm_head present and no tie key => untied"
    );
    assert!(matches!(
        m.read_f32("missing"),
        Err(ModelError::UnknownTensor { .. })
    ));
}

#[test]
fn single_file_and_directory() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let specs = tiny_hf(&mut rng);
    let dir = temp_dir("single");
    write_st(
        &dir.join("model.safetensors"),
        &specs.iter().collect::<Vec<_>>(),
    );
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    check_model(
        &SafetensorsModel::open(dir.join("model.safetensors")).unwrap(),
        &specs,
    );
    check_model(&SafetensorsModel::open(&dir).unwrap(), &specs);
    let auto = ModelWeights::open(&dir).unwrap();
    assert!(matches!(auto, ModelWeights::Safetensors(_)));
    check_model(&auto, &specs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sharded_with_index() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let specs = tiny_hf(&mut rng);
    let dir = temp_dir("sharded");
    let (a, b) = specs.split_at(7);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_st(&dir.join(names[0]), &a.iter().collect::<Vec<_>>());
    write_st(&dir.join(names[1]), &b.iter().collect::<Vec<_>>());
    let map: serde_json::Map<String, serde_json::Value> = a
        .iter()
        .map(|s| (s.name.clone(), names[0].into()))
        .chain(b.iter().map(|s| (s.name.clone(), names[1].into())))
        .collect();
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let m = SafetensorsModel::open(&dir).unwrap();
    assert_eq!(m.shard_paths().len(), 2);
    check_model(&m, &specs);
    check_model(
        &SafetensorsModel::open(dir.join("model.safetensors.index.json")).unwrap(),
        &specs,
    );

    // An index that puts a tensor in the wrong shard, or names a path outside the directory.
    let mut bad = map.clone();
    bad.insert(a[0].name.clone(), names[1].into());
    std::fs::write(
        dir.join("bad.json"),
        serde_json::json!({"weight_map": bad}).to_string(),
    )
    .unwrap();
    let e = SafetensorsModel::open(dir.join("bad.json")).unwrap_err();
    assert!(e.to_string().contains("does not contain"), "{e}");
    let mut escape = map.clone();
    escape.insert(a[0].name.clone(), "../x.safetensors".into());
    std::fs::write(
        dir.join("esc.json"),
        serde_json::json!({"weight_map": escape}).to_string(),
    )
    .unwrap();
    assert!(matches!(
        SafetensorsModel::open(dir.join("esc.json")),
        Err(ModelError::Format { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_files_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let specs = tiny_hf(&mut rng);
    let dir = temp_dir("corrupt");
    let good = dir.join("good.safetensors");
    write_st(&good, &specs.iter().collect::<Vec<_>>());
    let bytes = std::fs::read(&good).unwrap();
    let p = dir.join("x.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Every truncation point in the header, and a spread through the data.
    let cuts: Vec<usize> = (0..header_len + 9)
        .chain((header_len + 9..bytes.len()).step_by(97))
        .collect();
    for cut in cuts {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let r = std::panic::catch_unwind(|| SafetensorsModel::open(&p).map(|_| ()));
        assert!(
            matches!(r, Ok(Err(_))),
            "truncation at {cut} of {} not rejected",
            bytes.len()
        );
    }
    // Huge header length.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&p, &huge).unwrap();
    assert!(SafetensorsModel::open(&p).is_err());
    // Random byte mutations in the header never panic.
    for _ in 0..300 {
        let mut m = bytes.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..header_len + 8);
            m[at] = rng.random();
        }
        std::fs::write(&p, &m).unwrap();
        let r = std::panic::catch_unwind(|| {
            if let Ok(model) = SafetensorsModel::open(&p) {
                for d in model.tensor_descs() {
                    let _ = model.read_f32(&d.name);
                }
            }
        });
        assert!(r.is_ok(), "panic on mutated header");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_weights_detects_gguf_files_and_directories() {
    let dir = temp_dir("gguf");
    let path = dir.join("tiny.bin"); // detected by magic, not extension
    std::fs::write(&path, super::gguf_tests::tiny_llama(false)).unwrap();
    let m = ModelWeights::open(&path).unwrap();
    assert!(matches!(m, ModelWeights::Gguf(_)));
    assert_eq!(m.format(), WeightFormat::Gguf);
    assert_eq!(m.linear_weights().len(), 14);
    assert_eq!(m.config().unwrap().hidden_size, 64);
    std::fs::rename(&path, dir.join("tiny.gguf")).unwrap();
    assert!(matches!(
        ModelWeights::open(&dir).unwrap(),
        ModelWeights::Gguf(_)
    ));
    assert!(matches!(
        crate::GgufFile::open(dir.join("absent.gguf")),
        Err(ModelError::Io { .. })
    ));
    let empty = temp_dir("empty");
    assert!(matches!(
        ModelWeights::open(&empty),
        Err(ModelError::Format { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}
