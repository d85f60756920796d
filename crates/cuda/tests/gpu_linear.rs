//! GPU correctness of every VQ weight kernel against the CPU reference: every preset (plus generic configs) x
//! level x kernel kind, on random shapes that are not multiples of the tiles, outputs poisoned before each run.
//! Run on a GPU with `cargo test -p vqllm-cuda --release --test gpu_linear -- --ignored`.
//! `every_config` can be narrowed for a quick check (same shapes and seeds as the full run):
//! `VQLLM_TEST_CONFIGS=gptvq2,vq<2` (configs whose preset name or config string contains one of the comma-separated
//! parts; a comma followed by a digit belongs to a config string, so `vq<8,13,1>` names one config) and
//! `VQLLM_TEST_BATCHES=16,20`.

use half::f16;
use rand::{Rng, SeedableRng};
use vqllm_codegen::{CodegenError, Level, Op, Overrides, Plan};
use vqllm_cuda::bench::random_f16;
use vqllm_cuda::ops::linear::VqLinear;
use vqllm_cuda::pdl::Programmatic;
use vqllm_cuda::{Gpu, ModuleCache};
use vqllm_vq::{synthetic::random_weight, VqConfig};

/// The CPU reference output `x · Wᵀ` of each fp16 input in `xs` (`m` rows each).
fn references(xs: &[Vec<f16>], m: usize, q: &vqllm_vq::QuantizedWeight) -> Vec<Vec<f32>> {
    xs.iter()
        .map(|xh| {
            let xf: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
            vqllm_vq::reference::gemm(&xf, m, q).unwrap()
        })
        .collect()
}

/// Asserts that every output `ys[i]` is finite and within 1e-2 relative error of `wants[i]`; `what(i, e)` describes a
/// failing call.
fn assert_calls_match<S: cudarc::driver::DevicePtr<f16>>(
    gpu: &Gpu,
    wants: &[Vec<f32>],
    ys: &[S],
    what: impl Fn(usize, f64) -> String,
) {
    for (i, (want, y)) in wants.iter().zip(ys).enumerate() {
        let got: Vec<f32> = gpu.dtoh(y).unwrap().iter().map(|v| v.to_f32()).collect();
        let e = rel_err(&got, want);
        assert!(
            got.iter().all(|v| v.is_finite()) && e < 1e-2,
            "{}",
            what(i, e)
        );
    }
}

/// A layer of preset `p` planned at `level` for batch `m` (rows x cols, random weight `weight_seed`) and loaded on the
/// GPU, with `calls` random inputs on the device (seeds from `x_seed` on), their CPU references, and the NaN poison
/// its outputs start from: the setup of the multi-call tests.
struct Calls {
    plan: Plan,
    lin: VqLinear,
    xd: Vec<vqllm_cuda::CudaSlice<f16>>,
    wants: Vec<Vec<f32>>,
    poison: Vec<f16>,
}

#[allow(clippy::too_many_arguments)]
fn calls(
    gpu: &Gpu,
    cache: &ModuleCache,
    p: &str,
    m: usize,
    (rows, cols): (usize, usize),
    level: Level,
    weight_seed: u64,
    (calls, x_seed): (usize, u64),
) -> Calls {
    let c = VqConfig::preset(p).unwrap();
    let plan = Plan::new(
        &c,
        Op::Gemv,
        m,
        cols,
        rows,
        level,
        gpu.spec(),
        &Overrides::default(),
    )
    .unwrap();
    let q = random_weight(&c, rows, cols, weight_seed).unwrap();
    let lin = VqLinear::new(gpu, cache, &q, plan.clone(), 1).unwrap();
    let xs: Vec<Vec<f16>> = (0..calls)
        .map(|i| random_f16(m * cols, x_seed + i as u64))
        .collect();
    Calls {
        plan,
        lin,
        xd: xs.iter().map(|x| gpu.htod(x).unwrap()).collect(),
        wants: references(&xs, m, &q),
        poison: vec![f16::from_bits(0x7e00); m * rows],
    }
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        num += ((g - w) as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// The planner overrides a (level, batch) case also runs with, beyond the default plan: at m = 16 the mma kernel's
/// variants the planner may not pick for a config (the other loop order, and 8 codebook copies); at the LUT level at
/// m = 1 the LUT-large GeMV's TMA code loads (sm_90+; per-lane loads are the default); at the replica level one row
/// block per warp per code piece.
fn variants(level: Level, m: usize) -> Vec<Overrides> {
    let mut v = vec![Overrides::default()];
    if m == 16 {
        v.push(Overrides {
            x_hoist: Some(false),
            ..Overrides::default()
        });
        v.push(Overrides {
            x_hoist: Some(true),
            cb_copies: Some(8),
            ..Overrides::default()
        });
        // Per-tile codebooks read through L1 instead of the staged set of the auto level.
        v.push(Overrides {
            cb_copies: Some(1),
            ..Overrides::default()
        });
    } else if m == 1 && level == Level::Lut {
        v.push(Overrides {
            code_tma: Some(true),
            ..Overrides::default()
        });
        // Two row blocks per warp (the auto plan takes one at 32 warps) with an odd ring of 3 chunks in flight, and
        // a deep ring of 6.
        v.push(Overrides {
            rows_per_warp: Some(2),
            in_flight: Some(3),
            ..Overrides::default()
        });
        v.push(Overrides {
            in_flight: Some(6),
            ..Overrides::default()
        });
        // 16 warps (the LUT-large and E8P LUT GeMVs: half the row groups in flight per block).
        v.push(Overrides {
            warps: Some(16),
            ..Overrides::default()
        });
        // E8P LUT GeMV: some or all of a unit's groups decoded instead of looked up (other kernels reject it).
        for g in [3, 8] {
            v.push(Overrides {
                decode_groups: Some(g),
                ..Overrides::default()
            });
        }
    } else if m == 1 && level == Level::Replica {
        // One row block per warp: several code pieces per codebook row band.
        v.push(Overrides {
            rows_per_warp: Some(1),
            ..Overrides::default()
        });
    }
    v
}

/// Runs one (config, level, m) case; returns None when the planner rejects the combination.
#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    cache: &ModuleCache,
    c: &VqConfig,
    level: Level,
    op: Op,
    m: usize,
    rows: usize,
    cols: usize,
    seed: u64,
    ov: &Overrides,
) -> Option<f64> {
    let plan = match Plan::new(c, op, m, cols, rows, level, gpu.spec(), ov) {
        Ok(p) => p,
        Err(CodegenError::Unsupported(_)) | Err(CodegenError::DoesNotFit(_)) => return None,
        Err(e) => panic!("plan {c} {level} m={m}: {e}"),
    };
    Some(check_plan(gpu, cache, plan, seed))
}

/// Runs `plan` on a random weight of its config and shape against the CPU reference; returns the relative error.
fn check_plan(gpu: &Gpu, cache: &ModuleCache, plan: Plan, seed: u64) -> f64 {
    let (c, level, m, rows, cols) = (&plan.config, plan.level, plan.m, plan.n, plan.k);
    let q = random_weight(c, rows, cols, seed).unwrap();
    let mut lin = VqLinear::new(gpu, cache, &q, plan.clone(), 1)
        .unwrap_or_else(|e| panic!("{c} {level}: {e}"));
    if lin.local_bytes > 0 {
        println!(
            "note: {c} {level} m={m} {:?}: {} B of local memory per thread",
            plan.kernel, lin.local_bytes
        );
    }
    let xh = random_f16(m * cols, seed ^ 0x5eed);
    let x = gpu.htod(&xh).unwrap();
    // Poison: fp16 NaN everywhere, so an unwritten output fails the finiteness check.
    let poison = vec![f16::from_bits(0x7e00); m * rows];
    let mut y = gpu.htod(&poison).unwrap();
    // Twice, the output re-poisoned in between: the second run checks that the first cleared the split-K workspace
    // and that it writes every output itself.
    for _ in 0..2 {
        gpu.htod_into(&poison, &mut y).unwrap();
        lin.forward(gpu, &x, &mut y, 0).unwrap();
    }
    let got: Vec<f32> = gpu.dtoh(&y).unwrap().iter().map(|v| v.to_f32()).collect();
    let xf: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
    let want = vqllm_vq::reference::gemm(&xf, m, &q).unwrap();
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{c} {level} m={m} {rows}x{cols}: unwritten or non-finite output ({:?})",
        plan.kernel
    );
    let e = rel_err(&got, &want);
    assert!(
        e < 1e-2,
        "{c} {level} m={m} {rows}x{cols} {:?}: relative error {e:.3e}\n{plan}",
        plan.kernel
    );
    e
}

/// The E8P LUT GeMV's smaller units (4 and 2 input groups), which the planner picks where a block has less shared
/// memory (sm_80, sm_86 / sm_89): planned for those limits, run on this GPU.
#[test]
#[ignore = "needs a CUDA GPU"]
fn e8p_lut_smaller_units_match_reference() {
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    let (mut ran, mut units) = (0, std::collections::BTreeSet::new());
    for optin in [163 * 1024, 99 * 1024] {
        let mut spec = gpu.spec().clone();
        spec.smem_per_block_optin = spec.smem_per_block_optin.min(optin);
        for (preset, rows, cols) in [
            ("quip4", 8 * 45 + 3, 4096),
            ("vq<8,16,1>:e8p", 8 * 30 + 5, 8 * 163),
        ] {
            let c: VqConfig = preset.parse().unwrap();
            for warps in [16, 32] {
                let ov = Overrides {
                    warps: Some(warps),
                    ..Overrides::default()
                };
                let mut plan =
                    Plan::new(&c, Op::Gemv, 1, cols, rows, Level::Lut, &spec, &ov).unwrap();
                let u = plan.geometry.2;
                let hadamard = c
                    .hadamard
                    .then(|| vqllm_codegen::layout::hadamard_block(cols));
                let want = vqllm_codegen::e8p_lut::unit_groups(spec.smem_per_block_optin, hadamard);
                // At 16 warps, one decoded group where the abs-table copies fit beside the tables.
                let fits = vqllm_codegen::e8p_lut::smem_bytes(u, hadamard, true)
                    <= spec.smem_per_block_optin;
                if warps == 16 && fits {
                    let ov = Overrides {
                        decode_groups: Some(1),
                        ..ov
                    };
                    plan = Plan::new(&c, Op::Gemv, 1, cols, rows, Level::Lut, &spec, &ov).unwrap();
                    assert_eq!(plan.e8p_decode, 1);
                }
                assert_eq!(
                    (plan.kernel, Some(u)),
                    (vqllm_codegen::KernelKind::E8pLut, want),
                    "{preset} {optin}"
                );
                units.insert(u);
                let plan_decode = plan.e8p_decode;
                let e = check_plan(&gpu, &cache, plan, 7 + ran);
                println!(
                    "ok  {preset} unit {u} warps {warps} decoded {} {rows}x{cols}  rel.err {e:.2e}",
                    plan_decode
                );
                ran += 1;
            }
        }
    }
    assert_eq!(ran, 8);
    assert!(units.contains(&2) && units.contains(&4), "{units:?}");
}

/// The comma-separated parts of an environment variable, if it is set and not empty.
fn env_list(name: &str) -> Option<Vec<String>> {
    let v = std::env::var(name).ok()?;
    let parts: Vec<String> = v
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then_some(parts)
}

/// The parts of `VQLLM_TEST_CONFIGS` (`vqllm_vq::split_config_list`), if it names any.
fn config_filters() -> Option<Vec<String>> {
    std::env::var("VQLLM_TEST_CONFIGS")
        .ok()
        .map(|v| vqllm_vq::split_config_list(&v))
        .filter(|p| !p.is_empty())
}

/// Whether `c` passes the filters: a part is a substring of the config string or of its preset name (`gptvq2`
/// matches vq<4,8,1>:tile=256x256).
fn config_selected(filters: &Option<Vec<String>>, c: &VqConfig) -> bool {
    let preset = vqllm_vq::WEIGHT_PRESETS
        .iter()
        .find(|p| VqConfig::preset(p).ok() == Some(*c));
    let name = format!("{c} {}", preset.copied().unwrap_or(""));
    filters
        .as_ref()
        .is_none_or(|parts| parts.iter().any(|p| name.contains(p.as_str())))
}

fn configs() -> Vec<VqConfig> {
    let mut v: Vec<VqConfig> = vqllm_vq::WEIGHT_PRESETS
        .iter()
        .map(|p| VqConfig::preset(p).unwrap())
        .collect();
    for s in [
        "vq<4,6,3>",
        "vq<16,8,1>:scale",
        "vq<2,8,2>",
        "vq<8,10,1>",
        "vq<4,8,1>:tile=64x128",
        // Per-tile codebooks staged per k tile at batch 16 (mma): 4-byte entries (pipelined), 16-byte entries with a
        // 512-column k tile (not pipelined).
        "vq<2,8,1>:tile=256x256",
        "vq<8,8,1>:tile=256x512",
        // LUT-large GeMV shapes beyond aqlm3: four stages, 8 and 4 vectors per chunk.
        "vq<4,12,4>:scale",
        "vq<4,8,4>",
        // Sorted GeMV: one codebook chunk (aqlm-1x16 has eight), no row scales.
        "vq<8,13,1>",
        // E8P LUT GeMV beyond quip4: one stage (two vectors' codes a word) with a partial last unit (no Hadamard, so
        // the columns need not fill one), and three stages with row scales.
        "vq<8,16,1>:e8p",
        "vq<8,16,3>:e8p:scale",
    ] {
        v.push(s.parse().unwrap());
    }
    v
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_config_level_and_kernel_matches_the_cpu_reference() {
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let (mut ran, mut skipped) = (0, 0);
    let only_configs = config_filters();
    let only_batches: Option<Vec<usize>> = env_list("VQLLM_TEST_BATCHES").map(|v| {
        v.iter()
            .map(|m| m.parse().expect("VQLLM_TEST_BATCHES: batch sizes"))
            .collect()
    });
    let filtered = only_configs.is_some() || only_batches.is_some();
    for c in configs() {
        let config_wanted = config_selected(&only_configs, &c);
        for level in Level::WEIGHT_LEVELS {
            // m = 20: two m16 slices, the second partly past the batch (zero rows).
            for (op, m) in [
                (Op::Gemv, 1),
                (Op::Gemv, 3),
                (Op::Gemv, 16),
                (Op::Gemv, 20),
                (Op::Gemm, 45),
            ] {
                let rows = 8 * rng.random_range(9..40) + rng.random_range(1..8);
                let cols = c.v * 8 * rng.random_range(20..90)
                    + if c.hadamard {
                        0
                    } else {
                        c.v * rng.random_range(1..8)
                    };
                let seed = rng.random();
                // Filters skip after drawing the shape, so a narrowed run sees the full run's shapes and seeds.
                if !config_wanted || only_batches.as_ref().is_some_and(|b| !b.contains(&m)) {
                    continue;
                }
                for ov in &variants(level, m) {
                    match check(&gpu, &cache, &c, level, op, m, rows, cols, seed, ov) {
                        Some(e) => {
                            ran += 1;
                            println!(
                                "ok  {c:<28} {level:<4} m={m:<3} {rows}x{cols} x_hoist={:?} copies={:?} tma={:?} rpw={:?}  rel.err {e:.2e}",
                                ov.x_hoist, ov.cb_copies, ov.code_tma, ov.rows_per_warp
                            );
                        }
                        None => skipped += 1,
                    }
                }
            }
        }
    }
    println!(
        "{ran} cases ran, {skipped} rejected by the planner{}",
        if filtered {
            " (filtered by VQLLM_TEST_CONFIGS / VQLLM_TEST_BATCHES)"
        } else {
            ""
        }
    );
    assert!(
        ran >= if filtered { 1 } else { 150 },
        "too few cases ran: {ran}"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn large_layer_matches_reference_sampled_rows() {
    // A full 4096 x 11008 layer at the auto level (LUT, LUT-large and dequantizing kernels) and the sorted GeMV,
    // checked on all rows.
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    for (p, level) in [
        ("aqlm-2x8", Level::Auto),
        ("quip4", Level::Auto),
        ("aqlm3", Level::Auto),
        ("aqlm-1x16", Level::Sorted),
    ] {
        let c = VqConfig::preset(p).unwrap();
        assert!(check(
            &gpu,
            &cache,
            &c,
            level,
            Op::Gemv,
            1,
            11008,
            4096,
            7,
            &Overrides::default()
        )
        .is_some());
    }
}

/// A small subset (every preset x kernel kind x a few levels) for compute-sanitizer memcheck / racecheck runs.
/// `VQLLM_TEST_CONFIGS` narrows it as it does `every_config`.
#[test]
#[ignore = "needs a CUDA GPU"]
fn sanitizer_subset() {
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    let mut ran = 0;
    let only_configs = config_filters();
    for c in configs() {
        if !config_selected(&only_configs, &c) {
            continue;
        }
        // Auto: the plans only it makes (the per-tile codebook set staged per k tile at batch 16).
        for level in [
            Level::Gc,
            Level::O2,
            Level::O4,
            Level::Lut,
            Level::Replica,
            Level::Sorted,
            Level::Auto,
        ] {
            // Batch 16: also 96 rows, where the mma kernel's split-K epilogue adds pairs of floats per reduction
            // (even rows; 91 takes its single-float path).
            for (op, m, rows) in [
                (Op::Gemv, 1, 91),
                (Op::Gemv, 2, 91),
                (Op::Gemv, 16, 91),
                (Op::Gemv, 16, 96),
                (Op::Gemm, 33, 91),
            ] {
                for ov in &variants(level, m) {
                    ran += check(
                        &gpu,
                        &cache,
                        &c,
                        level,
                        op,
                        m,
                        rows,
                        // With a Hadamard transform: 512-column blocks, wider than an E8P LUT unit (the Kronecker
                        // split of the fused transform, kernels/vq_e8p_lut.cuh).
                        c.v * 8 * if c.hadamard { 24 } else { 21 },
                        99,
                        ov,
                    )
                    .is_some() as usize;
                }
            }
        }
    }
    println!("sanitizer subset: {ran} cases ran");
    assert!(ran >= if only_configs.is_some() { 1 } else { 60 }, "{ran}");
}

/// Large batches at the auto level take the dequantize-then-cuBLAS path.
#[test]
#[ignore = "needs a CUDA GPU"]
fn large_batch_gemm_path_matches_reference() {
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    for (i, c) in configs().into_iter().enumerate() {
        let plan = Plan::new(
            &c,
            Op::Gemm,
            130,
            c.v * 8 * 40,
            203,
            Level::Auto,
            gpu.spec(),
            &Overrides::default(),
        );
        // E8P with more than two stages runs only on the batch-1 E8P LUT GeMV: a typed error here.
        if c.codebook == vqllm_vq::CodebookKind::E8p && c.r > 2 {
            assert!(matches!(plan, Err(CodegenError::Unsupported(_))), "{c}");
            continue;
        }
        let plan = plan.unwrap();
        assert_eq!(plan.kernel, vqllm_codegen::KernelKind::DequantGemm, "{c}");
        let e = check(
            &gpu,
            &cache,
            &c,
            Level::Auto,
            Op::Gemm,
            130,
            203,
            c.v * 8 * 40,
            1000 + i as u64,
            &Overrides::default(),
        )
        .unwrap();
        println!("ok  {c:<28} dequant+cuBLAS m=130  rel.err {e:.2e}");
    }
}

/// Back-to-back calls with no copy or sync between them, as a decode step issues them: with programmatic dependent
/// launch (the default on sm_90+) each main kernel may be scheduled while the previous call's finalize still clears
/// the split-K workspace, and each finalize while its main kernel still adds to it. Each call has its own input
/// and output; every output must match the reference, in each programmatic-launch mode.
#[test]
#[ignore = "needs a CUDA GPU"]
fn back_to_back_calls_match_reference() {
    let gpu = Gpu::new(0).expect("GPU");
    let cache = ModuleCache::memory_only();
    const CALLS: usize = 12;
    // Batch 1 (LUT, LUT-large, replica, E8P LUT and sorted GeMVs at the auto level) and 16 (mma), split-K at these shapes
    // (a weight kernel then the finalize); and one plan without split-K (the dequantizing GeMV at O4: weight kernel
    // after weight kernel).
    let split_k = (1024 + 8 * 7 + 5, 2048);
    for (p, m, (rows, cols), level, splits) in [
        ("aqlm-2x8", 1, split_k, Level::Auto, true),
        ("gptvq2", 1, split_k, Level::Auto, true),
        ("aqlm3", 1, split_k, Level::Auto, true),
        ("quip4", 1, split_k, Level::Auto, true),
        ("aqlm-1x16", 1, split_k, Level::Auto, true),
        ("gptvq2", 16, split_k, Level::Auto, true),
        ("aqlm-2x8", 16, split_k, Level::Auto, true),
        // The separate Hadamard transform before the weight kernel, both launched programmatically.
        ("quip4", 16, split_k, Level::Auto, true),
        ("quip4", 1, (17003, 512), Level::O4, false),
    ] {
        // The same inputs and references for every mode.
        let Calls {
            plan,
            mut lin,
            xd,
            wants,
            poison,
        } = calls(&gpu, &cache, p, m, (rows, cols), level, 31, (CALLS, 500));
        assert_eq!(
            plan.uses_workspace(),
            splits,
            "{p} m={m} {rows}x{cols}: {plan}"
        );
        for mode in [
            Programmatic::Chain,
            Programmatic::Finalize,
            Programmatic::Off,
        ] {
            let on = lin.set_programmatic_launch(&gpu, mode);
            let mut ys: Vec<_> = (0..CALLS).map(|_| gpu.htod(&poison).unwrap()).collect();
            gpu.synchronize().unwrap();
            for (x, y) in xd.iter().zip(ys.iter_mut()) {
                lin.forward(&gpu, x, y, 0).unwrap();
            }
            assert_calls_match(&gpu, &wants, &ys, |i, e| {
                format!(
                    "{p} m={m} call {i} programmatic launch {on} {:?} split {}: relative error {e:.3e}",
                    plan.kernel, plan.split
                )
            });
            println!(
                "ok  {p:<10} m={m:<2} {:?} split {} programmatic launch {on}: {CALLS} back-to-back calls",
                plan.kernel, plan.split
            );
        }
    }
}

/// Calls captured into a CUDA graph (`Gpu::capture_graph`, what `vqllm bench --graph` times) compute what the calls
/// do: every kernel of a call (Hadamard transform, weight kernel, split-K finalize) and the programmatic edges
/// between calls are in the graph, and a replay repeats them.
#[test]
#[ignore = "needs a CUDA GPU"]
fn calls_captured_in_a_cuda_graph_match_reference() {
    let gpu = Gpu::new(0).expect("GPU");
    // SAFETY: every buffer of this test is used on this Gpu's stream only.
    unsafe { gpu.disable_event_tracking() };
    let cache = ModuleCache::memory_only();
    const CALLS: usize = 5;
    let (rows, cols) = (1024 + 8 * 7 + 5, 2048);
    for (p, m) in [
        ("aqlm-2x8", 1),
        ("quip4", 1),
        ("aqlm-1x16", 1),
        ("quip4", 16),
        ("gptvq2", 16),
    ] {
        let Calls {
            plan,
            mut lin,
            xd,
            wants,
            poison,
        } = calls(
            &gpu,
            &cache,
            p,
            m,
            (rows, cols),
            Level::Auto,
            41,
            (CALLS, 900),
        );
        let on = lin.set_programmatic_launch(&gpu, Programmatic::Chain);
        let mut ys: Vec<_> = (0..CALLS).map(|_| gpu.htod(&poison).unwrap()).collect();
        let graph = gpu
            .capture_graph(|| {
                for (x, y) in xd.iter().zip(ys.iter_mut()) {
                    lin.forward(&gpu, x, y, 0)?;
                }
                Ok(())
            })
            .unwrap();
        for replay in 0..2 {
            for y in ys.iter_mut() {
                gpu.htod_into(&poison, y).unwrap();
            }
            graph.launch().unwrap();
            gpu.synchronize().unwrap();
            assert_calls_match(&gpu, &wants, &ys, |i, e| {
                format!(
                    "{p} m={m} replay {replay} call {i} {:?} split {} (programmatic {on}): relative error {e:.3e}",
                    plan.kernel, plan.split
                )
            });
        }
        println!(
            "ok  {p:<10} m={m:<2} {:?} split {} programmatic launch {on}: {CALLS} calls in a graph, 2 replays",
            plan.kernel, plan.split
        );
    }
}
