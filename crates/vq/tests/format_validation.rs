//! `.vqst` layout (names, dtypes, shapes, metadata) and the typed errors of save and load.

mod format_support;

use format_support::{learned, random_model, random_weight, rng};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use std::collections::HashMap;
use vqllm_vq::pack::{pack_codes, to_f16_bytes};
use vqllm_vq::{
    CodeStorage, DenseDtype, QuantizedModel, QuantizedWeight, SaveOptions, VqConfig, VqError,
};

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// Re-serializes `bytes` after `edit` changes its tensors and its `vqllm` metadata JSON.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Tensors, &mut Value)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut json: Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["vqllm"]).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut json);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
        .collect();
    let metadata = HashMap::from([("vqllm".to_string(), json.to_string())]);
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn tensor<'a>(t: &'a mut Tensors, name: &str) -> &'a mut (String, Dtype, Vec<usize>, Vec<u8>) {
    t.iter_mut()
        .find(|x| x.0 == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn format_error(bytes: &[u8], needle: &str) {
    match QuantizedModel::from_bytes(bytes) {
        Err(VqError::Format(m)) => assert!(
            m.contains(needle),
            "error `{m}` does not mention `{needle}`"
        ),
        other => panic!("expected a Format error mentioning `{needle}`, got {other:?}"),
    }
}

fn single(w: QuantizedWeight) -> QuantizedModel {
    QuantizedModel {
        tensors: vec![("w".into(), w)],
        dense: vec![],
        info: Value::Null,
    }
}

#[test]
fn storage_rule_names_dtypes_and_shapes() {
    let model = random_model(10);
    let cases = [
        (CodeStorage::Auto, "auto"),
        (CodeStorage::Aqlm, "aqlm"),
        (CodeStorage::Packed, "packed"),
    ];
    for (storage, label) in cases {
        let bytes = model
            .to_bytes(&SaveOptions {
                codes: storage,
                dense: DenseDtype::F32,
            })
            .unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut n_tensors = model.dense.len();
        for (name, w) in &model.tensors {
            let c = &w.config;
            let aqlm = match storage {
                CodeStorage::Auto => c.b == 8 || c.b == 16,
                CodeStorage::Aqlm => true,
                CodeStorage::Packed => false,
            };
            if aqlm {
                let t = st.tensor(&format!("{name}.codes")).unwrap();
                assert_eq!(
                    t.dtype(),
                    if c.b <= 8 { Dtype::I8 } else { Dtype::I16 },
                    "{label} {name}"
                );
                assert_eq!(t.shape(), &[w.rows, w.groups(), c.r]);
                assert!(st.tensor(&format!("{name}.codes_packed")).is_err());
                // AQLM signed values: entry index = stored value mod 2^b.
                let stored: Vec<i64> = if c.b <= 8 {
                    t.data().iter().map(|&x| i64::from(x as i8)).collect()
                } else {
                    t.data()
                        .chunks(2)
                        .map(|p| i64::from(i16::from_le_bytes([p[0], p[1]])))
                        .collect()
                };
                for (s, &code) in stored.iter().zip(&w.codes) {
                    assert_eq!(s.rem_euclid(1 << c.b), i64::from(code));
                    assert!(*s < 1 << (c.b - 1) && *s >= -(1 << (c.b - 1)));
                }
            } else {
                let t = st.tensor(&format!("{name}.codes_packed")).unwrap();
                let per_row = w.groups() * c.r;
                let row_bytes = (per_row * c.b as usize).div_ceil(8);
                assert_eq!(
                    (t.dtype(), t.shape()),
                    (Dtype::U8, &[w.rows, row_bytes][..]),
                    "{label} {name}"
                );
                for (row, bytes) in w.codes.chunks(per_row).zip(t.data().chunks(row_bytes)) {
                    assert_eq!(bytes, pack_codes(row, c.b).unwrap().as_slice());
                }
                assert!(st.tensor(&format!("{name}.codes")).is_err());
            }
            n_tensors += 2;
            match st.tensor(&format!("{name}.codebooks")) {
                Ok(t) => {
                    assert_eq!(t.dtype(), Dtype::F16);
                    assert_eq!(t.shape(), &[w.codebook_sets() * c.r, c.entries(), 1, c.v]);
                    assert_eq!(t.data(), to_f16_bytes(&w.codebooks).as_slice());
                    n_tensors += 1;
                }
                Err(_) => assert!(w.codebooks.is_empty(), "{name}"),
            }
            if let Some(s) = &w.scales {
                let t = st.tensor(&format!("{name}.scales")).unwrap();
                assert_eq!((t.dtype(), t.shape()), (Dtype::F16, &[w.rows, 1, 1, 1][..]));
                assert_eq!(t.data(), to_f16_bytes(s).as_slice());
                n_tensors += 1;
            }
            if let Some(h) = &w.rht {
                let t = st.tensor(&format!("{name}.rht_signs")).unwrap();
                assert_eq!((t.dtype(), t.shape()), (Dtype::F16, &[w.cols][..]));
                assert_eq!(t.data(), to_f16_bytes(&h.signs).as_slice());
                n_tensors += 1;
            }
            let t = st.tensor(&format!("{name}.stage_scales")).unwrap();
            assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &[c.r][..]));
        }
        for (name, shape, _) in &model.dense {
            let t = st.tensor(name).unwrap();
            assert_eq!((t.dtype(), t.shape()), (Dtype::F32, shape.as_slice()));
        }
        assert_eq!(st.len(), n_tensors, "{label}: unexpected extra tensors");
    }
}

#[test]
fn metadata_json_describes_every_tensor() {
    let model = random_model(11);
    let bytes = model.to_bytes(&SaveOptions::default()).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let json: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["vqllm"]).unwrap();
    assert_eq!(json["format"], "vqllm-vqst");
    assert_eq!(json["version"], 1);
    assert_eq!(json["info"], model.info);
    let entries = json["tensors"].as_array().unwrap();
    assert_eq!(entries.len(), model.tensors.len());
    for (e, (name, w)) in entries.iter().zip(&model.tensors) {
        assert_eq!(e["name"], name.as_str());
        assert_eq!(
            serde_json::from_value::<VqConfig>(e["config"].clone()).unwrap(),
            w.config
        );
        assert_eq!(
            (e["rows"].as_u64(), e["cols"].as_u64()),
            (Some(w.rows as u64), Some(w.cols as u64))
        );
        assert_eq!(
            e["rht_block"].as_u64(),
            w.rht.as_ref().map(|h| h.block as u64)
        );
        let want = if w.config.b == 8 || w.config.b == 16 {
            "aqlm"
        } else {
            "packed"
        };
        assert_eq!(e["code_storage"], want);
    }
    assert_eq!(json["dense"][1]["shape"], serde_json::json!([3, 4]));
    assert_eq!(json["dense"][1]["dtype"], "F32");
}

#[test]
fn f16_storage_rounds_and_dense_f16_round_trips() {
    let mut r = rng(12);
    let mut w = random_weight(&mut r, VqConfig::preset("aqlm-2x8").unwrap(), 4, 16, 0);
    w.scales = Some(vec![0.1, 0.2, 0.3, 1.0 / 3.0]);
    let mut model = single(w);
    model.dense.push(("norm".into(), vec![2], vec![0.1, 2.0]));
    let opts = SaveOptions {
        codes: CodeStorage::Auto,
        dense: DenseDtype::F16,
    };
    let back = QuantizedModel::from_bytes(&model.to_bytes(&opts).unwrap()).unwrap();
    let scales = back.tensors[0].1.scales.as_ref().unwrap();
    for (a, b) in scales
        .iter()
        .zip(model.tensors[0].1.scales.as_ref().unwrap())
    {
        assert!((a - b).abs() <= b.abs() / 1024.0 && a != b, "{a} vs {b}");
    }
    assert_eq!(
        back.dense_tensor("norm").unwrap().1,
        &[half::f16::from_f32(0.1).to_f32(), 2.0]
    );
    assert!(back.tensor("w").is_some() && back.tensor("nope").is_none());
}

#[test]
fn save_rejects_bad_models() {
    let mut r = rng(13);
    let good = random_weight(&mut r, learned(4, 4, 1), 2, 8, 0);
    let opts = SaveOptions::default();

    let mut bad = good.clone();
    bad.codes.pop();
    assert!(single(bad).to_bytes(&opts).is_err());

    let mut bad = good.clone();
    bad.codebooks[3] = 1e6;
    assert!(
        matches!(single(bad).to_bytes(&opts), Err(VqError::Shape(m)) if m.contains("overflows fp16"))
    );

    let mut dup = single(good.clone());
    dup.tensors.push(("w".into(), good.clone()));
    assert!(matches!(dup.to_bytes(&opts), Err(VqError::Format(m)) if m.contains("used twice")));

    let mut collide = single(good.clone());
    collide
        .dense
        .push(("w.codes_packed".into(), vec![1], vec![0.0]));
    assert!(collide.to_bytes(&opts).is_err());

    let mut shape = single(good.clone());
    shape.dense.push(("d".into(), vec![2, 3], vec![0.0; 5]));
    assert!(matches!(shape.to_bytes(&opts), Err(VqError::Shape(_))));

    let mut nan = single(good.clone());
    nan.dense.push(("d".into(), vec![1], vec![f32::NAN]));
    assert!(matches!(
        nan.to_bytes(&opts),
        Err(VqError::NonFinite { .. })
    ));

    let mut empty = single(good);
    empty.tensors[0].0 = String::new();
    assert!(empty.to_bytes(&opts).is_err());
}

#[test]
fn load_rejects_metadata_mismatches() {
    let mut r = rng(14);
    let mut c = VqConfig::preset("aqlm3").unwrap();
    c.hadamard = true;
    let model = single(random_weight(&mut r, c, 3, 16, 8));
    let bytes = model.to_bytes(&SaveOptions::default()).unwrap();
    assert_eq!(QuantizedModel::from_bytes(&bytes).unwrap(), model);

    format_error(
        &rewrite(&bytes, |_, j| j["version"] = 2.into()),
        "version 2",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["format"] = "other".into()),
        "format `other`",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["rows"] = 4.into()),
        "shape",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["cols"] = 24.into()),
        "shape",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["config"]["v"] = 3.into()),
        "vector size",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["config"]["b"] = 13.into()),
        "shape",
    );
    // b = 11 packs 2 x 2 codes into the same 6 bytes per row; the top padding bits give it away.
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["config"]["b"] = 11.into()),
        "padding bits",
    );
    format_error(
        &rewrite(&bytes, |_, j| {
            j["tensors"][0]["code_storage"] = "aqlm".into()
        }),
        "missing tensor `w.codes`",
    );
    format_error(
        &rewrite(&bytes, |_, j| {
            j["tensors"][0]["code_storage"] = "auto".into()
        }),
        "code_storage",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["rht_block"] = Value::Null),
        "rht_block",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["rht_block"] = 6.into()),
        "Hadamard block",
    );
    format_error(
        &rewrite(&bytes, |_, j| {
            j["tensors"][0]["config"]["per_channel_scale"] = false.into()
        }),
        "w.scales",
    );
    format_error(
        &rewrite(&bytes, |_, j| j["tensors"][0]["extra"] = 1.into()),
        "unknown field",
    );
    format_error(
        &rewrite(&bytes, |_, j| {
            j["dense"] = serde_json::json!([{"name": "x", "shape": [1], "dtype": "F32"}])
        }),
        "missing tensor `x`",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            t.push(("x".into(), Dtype::F32, vec![1], vec![0; 4]))
        }),
        "not described",
    );
    format_error(
        &rewrite(&bytes, |t, _| t.retain(|x| x.0 != "w.stage_scales")),
        "missing tensor `w.stage_scales`",
    );
    format_error(
        &rewrite(&bytes, |t, _| tensor(t, "w.stage_scales").1 = Dtype::I32),
        "dtype I32",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.codebooks").2 = vec![2, 4096, 8, 1]
        }),
        "shape",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.codebooks").3[2..4].copy_from_slice(&[0x00, 0x7E])
        }),
        "non-finite",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.scales").3[0..2].copy_from_slice(&[0x00, 0x7C])
        }),
        "non-finite",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.rht_signs").3[0..2].copy_from_slice(&[0x00, 0xFC])
        }),
        "non-finite",
    );

    // No vqllm metadata at all: a plain safetensors file.
    let plain = safetensors::serialize(
        [(
            "a",
            TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
        )],
        None,
    )
    .unwrap();
    format_error(&plain, "no `vqllm` metadata");
}

#[test]
fn load_rejects_bad_codes() {
    let mut r = rng(15);
    // 12-bit AQLM int16 codes: stored values must be in [-2048, 2048).
    let model = single(random_weight(&mut r, learned(8, 12, 2), 2, 16, 0));
    let opts = SaveOptions {
        codes: CodeStorage::Aqlm,
        dense: DenseDtype::F32,
    };
    let bytes = model.to_bytes(&opts).unwrap();
    assert_eq!(QuantizedModel::from_bytes(&bytes).unwrap(), model);
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.codes").3[0..2].copy_from_slice(&3000i16.to_le_bytes())
        }),
        "outside the 12-bit",
    );
    format_error(
        &rewrite(&bytes, |t, _| {
            tensor(t, "w.codes").3[2..4].copy_from_slice(&(-2049i16).to_le_bytes())
        }),
        "outside",
    );

    // 4-bit AQLM int8 codes: [-8, 8).
    let model = single(random_weight(&mut r, learned(2, 4, 1), 2, 4, 0));
    let bytes = model.to_bytes(&opts).unwrap();
    assert_eq!(QuantizedModel::from_bytes(&bytes).unwrap(), model);
    format_error(
        &rewrite(&bytes, |t, _| tensor(t, "w.codes").3[1] = 8),
        "outside the 4-bit",
    );

    // Packed 3-bit codes, 2 rows of 3 codes = 9 bits -> 2 bytes per row with 7 padding bits that must be 0.
    let model = single(random_weight(&mut r, learned(2, 3, 1), 2, 6, 0));
    let bytes = model.to_bytes(&SaveOptions::default()).unwrap();
    assert_eq!(QuantizedModel::from_bytes(&bytes).unwrap(), model);
    format_error(
        &rewrite(&bytes, |t, _| tensor(t, "w.codes_packed").3[1] |= 0x80),
        "padding bits",
    );
    format_error(
        &rewrite(&bytes, |t, _| tensor(t, "w.codes_packed").3[3] |= 0x02),
        "padding bits",
    );
    let flipped = rewrite(&bytes, |t, _| tensor(t, "w.codes_packed").3[0] ^= 0x07);
    let back = QuantizedModel::from_bytes(&flipped).unwrap();
    assert_eq!(back.tensors[0].1.codes[0], model.tensors[0].1.codes[0] ^ 7);
}

#[test]
fn large_layer_round_trips_through_a_file() {
    let mut r = rng(16);
    let model = single(random_weight(
        &mut r,
        VqConfig::preset("aqlm3").unwrap(),
        256,
        512,
        0,
    ));
    let path = format_support::temp_path("validation-large");
    model.save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    // 12-bit packed codes: 256 rows * 64 groups * 2 stages * 1.5 bytes, plus 2 * 4096 * 8 fp16 entries.
    assert!(
        size > 256 * 64 * 2 * 3 / 2 + 2 * 4096 * 8 * 2
            && size < 256 * 64 * 2 * 2 + 2 * 4096 * 8 * 2 + 4096
    );
    assert_eq!(QuantizedModel::load(&path).unwrap(), model);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn save_errors_leave_no_file() {
    let mut r = rng(17);
    let mut model = single(random_weight(&mut r, learned(4, 4, 1), 2, 8, 0));
    let missing_dir = std::env::temp_dir()
        .join("vqllm-no-such-dir")
        .join("m.vqst");
    assert!(matches!(model.save(&missing_dir), Err(VqError::Io(_))));
    let path = format_support::temp_path("validation-failed-save");
    model.tensors[0].1.codes[0] = 16;
    assert!(model.save(&path).is_err());
    assert!(!path.exists());
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    assert!(!std::path::Path::new(&tmp).exists());
}
