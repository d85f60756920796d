//! End-to-end tests of `vqllm quantize` and `vqllm info` on small synthetic safetensors models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use vqllm_vq::{metrics, reference, QuantizedModel, VqConfig};

const HIDDEN: usize = 128;
const KV: usize = 64;
const FFN: usize = 192;
const VOCAB: usize = 40;
const LAYERS: usize = 2;

/// A tensor of the synthetic model: name, shape, values.
type Tensor = (String, Vec<usize>, Vec<f32>);

/// Standard normal values (Box-Muller), deterministic for `seed`.
fn gaussian(n: usize, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f32 = rng.random_range(1e-7..1.0);
            let v: f32 = rng.random_range(0.0..1.0);
            scale * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

/// A Llama-style model with HF names: embeddings, norms and the seven projections per layer.
/// `down_in` overrides the input width of layer 1's down projection (to make a shape VQ cannot divide).
fn model_tensors(seed: u64, down_in: usize) -> Vec<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t: Vec<Tensor> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, rng: &mut ChaCha8Rng| {
        let n = shape.iter().product();
        let values = if shape.len() == 1 {
            (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
        } else {
            gaussian(n, 0.02, rng)
        };
        t.push((name, shape, values));
    };
    push(
        "model.embed_tokens.weight".into(),
        vec![VOCAB, HIDDEN],
        &mut rng,
    );
    for l in 0..LAYERS {
        let din = if l == 1 { down_in } else { FFN };
        for (name, shape) in [
            ("input_layernorm", vec![HIDDEN]),
            ("self_attn.q_proj", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj", vec![KV, HIDDEN]),
            ("self_attn.v_proj", vec![KV, HIDDEN]),
            ("self_attn.o_proj", vec![HIDDEN, HIDDEN]),
            ("post_attention_layernorm", vec![HIDDEN]),
            ("mlp.gate_proj", vec![FFN, HIDDEN]),
            ("mlp.up_proj", vec![FFN, HIDDEN]),
            ("mlp.down_proj", vec![HIDDEN, din]),
        ] {
            push(format!("model.layers.{l}.{name}.weight"), shape, &mut rng);
        }
    }
    push("model.norm.weight".into(), vec![HIDDEN], &mut rng);
    t
}

/// Writes `tensors` as an f32 safetensors file (plus a matching `config.json` beside it).
fn write_model(dir: &Path, file: &str, tensors: &[Tensor]) -> PathBuf {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let path = dir.join(file);
    safetensors::serialize_to_file(views, None, &path).expect("write safetensors");
    let config = format!(
        r#"{{"model_type":"llama","hidden_size":{HIDDEN},"num_hidden_layers":{LAYERS},
            "num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":{FFN},
            "vocab_size":{VOCAB},"tie_word_embeddings":true}}"#
    );
    std::fs::write(dir.join("config.json"), config).expect("write config");
    path
}

/// A temporary directory holding a synthetic model (`model_tensors(seed, down_in)`) as `model.safetensors`.
struct Fixture {
    dir: tempfile::TempDir,
    tensors: Vec<Tensor>,
    input: PathBuf,
}

fn fixture(seed: u64, down_in: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tensors = model_tensors(seed, down_in);
    let input = write_model(dir.path(), "model.safetensors", &tensors);
    Fixture {
        dir,
        tensors,
        input,
    }
}

fn vqllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vqllm"))
        .args(args)
        .output()
        .expect("run vqllm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
fn ok(args: &[&str]) -> String {
    let out = vqllm(args);
    assert!(
        out.status.success(),
        "vqllm {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts a clean failure (non-zero exit, `error:` message containing `needle`, no panic); returns stderr.
fn fails(args: &[&str], needle: &str) -> String {
    let out = vqllm(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "vqllm {args:?} should fail");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "vqllm {args:?} panicked: {err}");
    assert!(err.contains("error:"), "{err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "vqllm {args:?}: expected `{needle}` in:\n{err}"
    );
    err
}

/// Relative MSE and SNR printed for `name` in the method column `col` of the per-tensor table.
fn reported(stdout: &str, name: &str, col: usize) -> (f64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no report line for {name} in\n{stdout}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[2 + 2 * col].parse().expect("rel mse"),
        f[3 + 2 * col].parse().expect("snr"),
    )
}

fn linear_names(tensors: &[Tensor]) -> Vec<&str> {
    tensors
        .iter()
        .filter(|(n, s, _)| s.len() == 2 && n.contains("_proj"))
        .map(|(n, _, _)| n.as_str())
        .collect()
}

#[test]
fn quantize_writes_a_complete_model_matching_its_report() {
    let Fixture {
        dir,
        tensors,
        input,
    } = fixture(1, FFN);
    let out = dir.path().join("m.vqst");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let stdout = ok(&[
        "quantize", "--input", i, "--preset", "aqlm-2x8", "--output", o, "--report", "--iters",
        "4", "--seed", "5",
    ]);
    assert!(stdout.contains("int4-g128"), "{stdout}");

    let m = QuantizedModel::load(&out).unwrap();
    let source: HashMap<&str, &Tensor> = tensors.iter().map(|t| (t.0.as_str(), t)).collect();
    let linear = linear_names(&tensors);
    assert_eq!(m.tensors.len(), linear.len());
    assert_eq!(m.tensors.len(), 7 * LAYERS);
    assert_eq!(m.dense.len(), tensors.len() - linear.len());
    let preset = VqConfig::preset("aqlm-2x8").unwrap();
    for (name, q) in &m.tensors {
        assert_eq!(q.config, preset, "{name}");
        let (_, shape, w) = source[name.as_str()];
        assert_eq!([q.rows, q.cols], [shape[0], shape[1]], "{name}");
        let deq = reference::dequantize(q).unwrap();
        let rel = metrics::relative_mse(w, &deq).unwrap();
        // 2 bits/element on Gaussian data: well below the variance, well above zero.
        assert!(rel > 1e-3 && rel < 0.3, "{name}: relative MSE {rel}");
        // The report printed the same error (3 significant digits).
        let (printed, snr) = reported(&stdout, name, 0);
        assert!(
            (printed - rel).abs() <= 1e-3 * rel,
            "{name}: {printed} vs {rel}"
        );
        assert!((snr + 10.0 * rel.log10()).abs() < 0.01, "{name}: {snr}");
        // INT4 column: its error is what INT4 g128 (ragged tail for 192 columns) gives.
        let (int4, _) = reported(&stdout, name, 1);
        assert!(
            int4 > 0.0 && int4 < rel,
            "{name}: int4 {int4} vs 2-bit VQ {rel}"
        );
    }
    for (name, shape, values) in &m.dense {
        let (_, s, w) = source[name.as_str()];
        assert_eq!(shape, s);
        for (a, b) in w.iter().zip(values) {
            // fp16 rounding: half an ulp relative, or half the subnormal step near zero.
            assert!(
                (a - b).abs() <= 1e-3 * a.abs() + 3e-8,
                "{name}: {a} vs {b} (fp16)"
            );
        }
    }
    assert_eq!(m.info["preset"], "aqlm-2x8");
    assert_eq!(m.info["seed"], 5);
    assert_eq!(m.info["source_format"], "safetensors");
    assert_eq!(m.info["complete"], true);
    assert_eq!(m.info["model_config"]["hidden_size"], HIDDEN);
    assert!(m.info["timings"]["quantize_s"].as_f64().is_some());

    // `info` on the quantized model: one line per tensor with its config and ~2 bits/element.
    let info = ok(&["info", o]);
    assert!(info.contains("preset:        aqlm-2x8"), "{info}");
    for name in &linear {
        let line = info
            .lines()
            .find(|l| l.split_whitespace().next() == Some(*name))
            .unwrap_or_else(|| panic!("{name} missing from\n{info}"));
        assert!(line.contains(&preset.to_string()), "{line}");
        let f: Vec<&str> = line.split_whitespace().collect();
        let (bits, bytes): (f64, usize) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        // int8 codes [rows, cols/8, 2], fp16 codebooks [2, 256, 1, 8], fp16 scales [rows], f32 stage scales [2].
        let (rows, cols) = (source[*name].1[0], source[*name].1[1]);
        let want = rows * cols / 8 * 2 + 2 * 256 * 8 * 2 + rows * 2 + 8;
        assert_eq!(bytes, want, "{line}");
        assert!(
            (bits - want as f64 * 8.0 / (rows * cols) as f64).abs() < 1e-3,
            "{line}"
        );
    }
    assert!(info.contains("dense tensors: 6 (F16 x6"), "{info}");
}

#[test]
fn quip4_is_close_and_seeded_runs_are_identical() {
    let Fixture {
        dir,
        tensors,
        input,
    } = fixture(2, FFN);
    let i = input.to_str().unwrap();
    let mut models = Vec::new();
    for (file, seed) in [("a.vqst", "7"), ("b.vqst", "7"), ("c.vqst", "8")] {
        let out = dir.path().join(file);
        ok(&[
            "quantize",
            "-i",
            i,
            "-p",
            "quip4",
            "-o",
            out.to_str().unwrap(),
            "--seed",
            seed,
        ]);
        models.push(QuantizedModel::load(&out).unwrap());
    }
    assert_eq!(models[0].tensors, models[1].tensors);
    assert_ne!(models[0].tensors, models[2].tensors);
    let source: HashMap<&str, &Tensor> = tensors.iter().map(|t| (t.0.as_str(), t)).collect();
    for (name, q) in &models[0].tensors {
        assert!(q.rht.is_some(), "{name}");
        let rel =
            metrics::relative_mse(&source[name.as_str()].2, &reference::dequantize(q).unwrap())
                .unwrap();
        assert!(rel < 0.02, "{name}: quip4 relative MSE {rel}");
    }
}

#[test]
fn several_presets_side_by_side() {
    let Fixture { dir, input, .. } = fixture(3, FFN);
    let i = input.to_str().unwrap();
    let name = "model.layers.0.mlp.down_proj.weight";
    let stdout = ok(&[
        "quantize",
        "-i",
        i,
        "-p",
        "quip4,aqlm-2x8,gptvq2",
        "--tensor",
        name,
        "--report",
        "--iters",
        "3",
    ]);
    let (quip, _) = reported(&stdout, name, 0);
    let (aqlm, _) = reported(&stdout, name, 1);
    let (gptvq, _) = reported(&stdout, name, 2);
    // 4 bits beat 2 bits.
    assert!(quip < aqlm && quip < gptvq, "{stdout}");
    for m in ["quip4", "aqlm-2x8", "gptvq2", "int4-g128"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(m)),
            "{m} missing from summary:\n{stdout}"
        );
    }
    // The summary prints nominal + overhead bits; quip4 stores a bit more than 4.
    let quip_line = stdout.lines().find(|l| l.starts_with("quip4 ")).unwrap();
    let bits: f64 = quip_line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(bits > 4.0 && bits < 4.5, "{quip_line}");

    let out = dir.path().join("x.vqst");
    fails(
        &[
            "quantize",
            "-i",
            i,
            "-p",
            "quip4,aqlm-2x8",
            "-o",
            out.to_str().unwrap(),
        ],
        "single preset",
    );
    assert!(!out.exists());
}

#[test]
fn undivisible_shapes_are_skipped_in_whole_model_mode_and_errors_with_tensor() {
    // 36 input columns: divisible by v=4 (gptvq2) but not by v=8 (aqlm-2x8).
    let Fixture { dir, input, .. } = fixture(4, 36);
    let i = input.to_str().unwrap();
    let bad = "model.layers.1.mlp.down_proj.weight";
    let out = dir.path().join("m.vqst");
    let run = vqllm(&[
        "quantize",
        "-i",
        i,
        "-p",
        "aqlm-2x8",
        "-o",
        out.to_str().unwrap(),
        "--iters",
        "2",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let err = text(&run.stderr);
    assert!(
        err.contains("warning:") && err.contains(bad) && err.contains("not divisible"),
        "{err}"
    );
    let m = QuantizedModel::load(&out).unwrap();
    assert_eq!(m.tensors.len(), 7 * LAYERS - 1);
    assert!(m.tensor(bad).is_none());
    let (shape, _) = m.dense_tensor(bad).expect("skipped weight kept dense");
    assert_eq!(shape, [HIDDEN, 36]);
    assert_eq!(m.info["skipped"][0]["name"], bad);

    fails(
        &[
            "quantize", "-i", i, "-p", "aqlm-2x8", "--tensor", bad, "--report",
        ],
        "not divisible",
    );
    // gptvq2 (v=4) divides it.
    ok(&[
        "quantize", "-i", i, "-p", "gptvq2", "--tensor", bad, "--report", "--iters", "2",
    ]);
}

#[test]
fn info_on_a_safetensors_model() {
    let Fixture {
        dir: _dir,
        tensors,
        input,
    } = fixture(5, FFN);
    let info = ok(&["info", input.to_str().unwrap(), "--tensors"]);
    assert!(info.contains("architecture:  llama"), "{info}");
    assert!(
        info.contains(&format!("hidden {HIDDEN}, layers {LAYERS}")),
        "{info}"
    );
    assert!(
        info.contains(&format!("tensors:       {} (", tensors.len())),
        "{info}"
    );
    assert!(info.contains("linear:        14 weights"), "{info}");
    assert!(info.contains("F32 x"), "{info}");
    assert!(info.contains("model.layers.1.mlp.up_proj.weight"), "{info}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let Fixture { dir, input, .. } = fixture(6, FFN);
    let i = input.to_str().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let m = missing.to_str().unwrap();

    fails(
        &["quantize", "-i", m, "-p", "aqlm3", "--report"],
        "nope.safetensors",
    );
    fails(&["info", m], "no such file");
    fails(
        &["quantize", "-i", i, "-p", "aqlm9", "--report"],
        "unknown preset",
    );
    fails(&["quantize", "-i", i, "-p", "cq4", "--report"], "KV-cache");
    fails(&["quantize", "-i", i, "-p", "aqlm3"], "nothing to do");
    fails(
        &[
            "quantize",
            "-i",
            i,
            "-p",
            "aqlm3",
            "--tensor",
            "model.layers.0.q_proj",
            "--report",
        ],
        "not found",
    );
    fails(
        &[
            "quantize",
            "-i",
            i,
            "-p",
            "aqlm3",
            "--tensor",
            "model.norm.weight",
            "--report",
        ],
        "2-D",
    );
    fails(
        &["quantize", "-i", i, "-p", "aqlm-2x8", "-o", i],
        "overwrite the input",
    );

    // A truncated model file.
    let bytes = std::fs::read(&input).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let c = cut.to_str().unwrap();
    fails(
        &["quantize", "-i", c, "-p", "aqlm-2x8", "--report"],
        "cut.safetensors",
    );
    fails(&["info", c], "cut.safetensors");

    // Garbage.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"definitely not a model file").unwrap();
    fails(&["info", junk.to_str().unwrap()], "junk.bin");

    // A truncated .vqst file.
    let out = dir.path().join("q.vqst");
    let name = "model.layers.0.self_attn.k_proj.weight";
    ok(&[
        "quantize",
        "-i",
        i,
        "-p",
        "quip4",
        "--tensor",
        name,
        "-o",
        out.to_str().unwrap(),
    ]);
    let q = std::fs::read(&out).unwrap();
    let qcut = dir.path().join("cut.vqst");
    std::fs::write(&qcut, &q[..q.len() - 100]).unwrap();
    fails(&["info", qcut.to_str().unwrap()], "cut.vqst");

    // Non-finite weights.
    let mut nan = model_tensors(6, FFN);
    let idx = nan.iter().position(|t| t.0 == name).unwrap();
    nan[idx].2[3 * HIDDEN + 5] = f32::NAN;
    let sub = dir.path().join("nan");
    std::fs::create_dir(&sub).unwrap();
    let nan_path = write_model(&sub, "model.safetensors", &nan);
    let err = fails(
        &[
            "quantize",
            "-i",
            nan_path.to_str().unwrap(),
            "-p",
            "quip4",
            "--report",
        ],
        "non-finite",
    );
    assert!(
        err.contains(name) && err.contains("row 3, column 5"),
        "{err}"
    );
}

#[test]
fn codebooks_larger_than_the_tensor_reproduce_it() {
    // k_proj [64, 128] has 1024 vectors of 8: fewer than aqlm3's 4096 entries, so the codebook can hold
    // every vector and the error is only fp16 rounding; the codebook overhead dominates the bits.
    let Fixture { dir, input, .. } = fixture(7, FFN);
    let name = "model.layers.0.self_attn.k_proj.weight";
    let out = dir.path().join("k.vqst");
    let stdout = ok(&[
        "quantize",
        "-i",
        input.to_str().unwrap(),
        "-p",
        "aqlm3",
        "--tensor",
        name,
        "--iters",
        "2",
        "--report",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (rel, _) = reported(&stdout, name, 0);
    assert!(rel < 1e-4, "{stdout}");
    let m = QuantizedModel::load(&out).unwrap();
    assert_eq!(m.tensors.len(), 1);
    assert!(m.dense.is_empty());
    assert_eq!(m.info["complete"], false);
    assert_eq!(m.info["tensor"], name);
    let line = stdout.lines().find(|l| l.starts_with("aqlm3 ")).unwrap();
    let bits: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    // 2·4096·8 fp16 entries over 64·128 weights: 128 bits of codebook per weight, 3 for the codes, plus
    // 64 fp16 scales and 2 f32 stage scales.
    let want = 3.0 + 2.0 * 4096.0 * 8.0 * 16.0 / 8192.0 + 64.0 * 16.0 / 8192.0 + 64.0 / 8192.0;
    assert!((bits - want).abs() < 1e-3, "{line}");
}

#[test]
fn plan_attention_overrides_and_rejections() {
    let base = [
        "plan",
        "--op",
        "attention",
        "--preset",
        "cq2",
        "--batch",
        "16",
        "--seq",
        "4096",
    ];
    let auto = ok(&base);
    assert!(auto.contains("level            LUT"), "{auto}");
    assert!(auto.contains("1 x 4096 tokens"), "{auto}");
    let mut args = base.to_vec();
    args.extend(["--token-splits", "3", "--l2-prefetch", "true"]);
    let over = ok(&args);
    assert!(
        over.contains("3 x 1408 tokens") && over.contains("override (--token-splits)"),
        "{over}"
    );
    assert!(over.contains("override (--l2-prefetch)"), "{over}");
    let mut o3 = base.to_vec();
    o3.extend(["--level", "o3", "--token-splits", "2"]);
    fails(&o3, "token-split levels");
}

#[test]
fn codegen_emits_attention_kernels() {
    let run = |cmd: &str| ok(&cmd.split_whitespace().collect::<Vec<_>>());
    let src = run("codegen --op attention --preset cq4 --level lut --batch 1 --seq 1024 --emit");
    assert!(
        src.contains("extern \"C\" __global__") && src.contains("vqa_attn_"),
        "no attention entry point"
    );
    assert!(
        src.contains("PREFETCH = true"),
        "small caches get the L2 prefetch"
    );
    assert!(!src.contains("#include \""), "templates must be inlined");
    let summary = run("codegen --op attention --preset cq2 --level o3");
    assert!(
        summary.contains("vqa_scores_") && summary.contains("vqa_values_"),
        "{summary}"
    );
    fails(
        &["codegen", "--op", "attention", "--preset", "aqlm-2x8"],
        "kv",
    );
}
