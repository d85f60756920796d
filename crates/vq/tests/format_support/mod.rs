//! Shared builders for the `format_*` integration tests: random quantized weights with fp16-exact values.
#![allow(dead_code)]

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_vq::{CodebookKind, QuantizedModel, QuantizedWeight, Rht, Scope, VqConfig};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A random value that fp16 represents exactly.
pub fn f16_value(rng: &mut ChaCha8Rng, range: f32) -> f32 {
    f16::from_f32(rng.random_range(-range..range)).to_f32()
}

pub fn learned(v: usize, b: u32, r: usize) -> VqConfig {
    VqConfig::new(v, b, r).unwrap()
}

/// A random weight for `config` of shape `[rows, cols]`; `rht_block` is used when `config.hadamard`.
pub fn random_weight(
    rng: &mut ChaCha8Rng,
    config: VqConfig,
    rows: usize,
    cols: usize,
    rht_block: usize,
) -> QuantizedWeight {
    let groups = cols / config.v;
    let codes = (0..rows * groups * config.r)
        .map(|_| rng.random_range(0..config.entries()) as u16)
        .collect();
    let n_cb = match config.codebook {
        CodebookKind::Learned => {
            config.num_codebook_sets(rows, cols) * config.r * config.entries() * config.v
        }
        CodebookKind::E8p => 0,
    };
    let codebooks = (0..n_cb).map(|_| f16_value(rng, 2.0)).collect();
    let stage_scales = match config.codebook {
        CodebookKind::E8p => (0..config.r)
            .map(|i| if i == 0 { 1.0 } else { 1.0 / 3.45 })
            .collect(),
        CodebookKind::Learned => (0..config.r)
            .map(|_| rng.random_range(0.5f32..1.5))
            .collect(),
    };
    let scales = config
        .per_channel_scale
        .then(|| (0..rows).map(|_| f16_value(rng, 4.0)).collect());
    let rht = config.hadamard.then(|| Rht {
        block: rht_block,
        signs: (0..cols)
            .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
            .collect(),
    });
    let w = QuantizedWeight {
        config,
        rows,
        cols,
        codes,
        codebooks,
        stage_scales,
        scales,
        rht,
    };
    w.validate().unwrap();
    w
}

/// The model of the robustness tests: every code width family, scope, codebook kind and optional part.
pub fn random_model(seed: u64) -> QuantizedModel {
    let mut rng = rng(seed);
    let with_scale = |mut c: VqConfig| {
        c.per_channel_scale = true;
        c
    };
    let mut tile = learned(4, 8, 1);
    tile.scope = Scope::Tile { rows: 4, cols: 8 };
    let mut odd = learned(2, 3, 3);
    odd.hadamard = true;
    let specs: Vec<(&str, VqConfig, usize, usize, usize)> = vec![
        ("layers.0.q_proj", with_scale(learned(8, 8, 2)), 6, 32, 0),
        (
            "layers.0.k_proj",
            VqConfig::preset("aqlm3").unwrap(),
            5,
            24,
            0,
        ),
        ("layers.0.k_proj_noscale", learned(8, 12, 2), 3, 16, 0),
        ("layers.0.v_proj", learned(4, 16, 1), 3, 8, 0),
        ("layers.0.o_proj", tile, 10, 24, 0),
        (
            "layers.0.up_proj",
            VqConfig::preset("quip4").unwrap(),
            4,
            32,
            16,
        ),
        ("layers.0.down_proj", odd, 3, 6, 2),
        ("layers.1.gate_proj", learned(16, 1, 4), 2, 16, 0),
        ("layers.1.up_proj", with_scale(learned(2, 5, 1)), 7, 6, 0),
    ];
    let tensors = specs
        .into_iter()
        .map(|(name, c, rows, cols, block)| {
            (
                name.to_string(),
                random_weight(&mut rng, c, rows, cols, block),
            )
        })
        .collect();
    let dense = vec![
        (
            "model.norm.weight".to_string(),
            vec![8],
            (0..8).map(|_| f16_value(&mut rng, 1.0)).collect(),
        ),
        (
            "model.embed_tokens.weight".to_string(),
            vec![3, 4],
            (0..12).map(|_| f16_value(&mut rng, 1.0)).collect(),
        ),
        ("scalar".to_string(), vec![], vec![f16_value(&mut rng, 1.0)]),
    ];
    let info =
        serde_json::json!({ "source": "random.safetensors", "preset": "mixed", "seed": seed });
    QuantizedModel {
        tensors,
        dense,
        info,
    }
}

/// A fresh path in the temp directory.
pub fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vqllm-{tag}-{}.vqst", std::process::id()))
}
