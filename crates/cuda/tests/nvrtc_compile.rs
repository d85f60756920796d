//! NVRTC compiles to CUBIN without a GPU. Needs libnvrtc and the CUDA headers (see the crate
//! docs: e.g. `VQLLM_CUDA_LIB_DIR=<wheels>/nvidia/cu13/lib`). If NVRTC cannot be loaded these
//! tests fail with the reason, unless `VQLLM_SKIP_NVRTC=1` is set.

use vqllm_cuda::{
    compile_cubin, nvrtc_version, supported_archs, CompileOptions, CudaError, ModuleCache,
};

const FP16_SOURCE: &str = r#"
#include <cuda_fp16.h>

// y[i] = a * x[i] + y[i] in half precision with a float scale; uses a shared staging tile so
// ptxas reports static shared memory.
extern "C" __global__ void axpy_f16(const __half* __restrict__ x, __half* __restrict__ y,
                                    float a, int n) {
    __shared__ __half tile[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : __float2half(0.0f);
    __syncthreads();
    if (i < n) {
        y[i] = __float2half(a * __half2float(tile[threadIdx.x]) + __half2float(y[i]));
    }
}
"#;

/// Returns false (skip) when NVRTC is unavailable and skipping was asked for; panics with the
/// loader's explanation otherwise.
fn nvrtc_or_skip() -> bool {
    match nvrtc_version() {
        Ok(_) => true,
        Err(e) if std::env::var("VQLLM_SKIP_NVRTC").as_deref() == Ok("1") => {
            eprintln!("skipping NVRTC test (VQLLM_SKIP_NVRTC=1): {e}");
            false
        }
        Err(e) => panic!(
            "NVRTC could not be loaded: {e}\n\
             Set VQLLM_CUDA_LIB_DIR (or LD_LIBRARY_PATH) to the directory with libnvrtc.so.13, \
             e.g. the pip wheel's site-packages/nvidia/cu13/lib, or set VQLLM_SKIP_NVRTC=1."
        ),
    }
}

/// `e_machine` of an ELF64 file (190 = EM_CUDA).
fn elf_machine(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[test]
fn version_and_arch_list() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = nvrtc_version().unwrap();
    assert!(major >= 12, "NVRTC {major}.{minor} is too old");
    let archs = supported_archs().unwrap();
    for want in [80, 89, 90] {
        assert!(archs.contains(&want), "sm_{want} missing from {archs:?}");
    }
}

#[test]
fn compiles_fp16_kernel_to_cubin_for_each_arch() {
    if !nvrtc_or_skip() {
        return;
    }
    let mut cubins = Vec::new();
    for arch in ["sm_80", "sm_89", "sm_90", "sm_90a"] {
        let m = compile_cubin("axpy", FP16_SOURCE, &CompileOptions::new(arch))
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert!(m.cubin.starts_with(b"\x7fELF"), "{arch}: not an ELF image");
        assert_eq!(elf_machine(&m.cubin), 190, "{arch}: not EM_CUDA");
        assert!(
            m.log.contains(&format!("for '{arch}'")),
            "{arch}: ptxas report missing:\n{}",
            m.log
        );
        let k = m
            .kernel("axpy_f16")
            .unwrap_or_else(|| panic!("{arch}: no resources parsed from:\n{}", m.log));
        assert!(k.registers > 0 && k.registers <= 255, "{arch}: {k:?}");
        assert_eq!(
            k.static_smem, 512,
            "{arch}: 256 halves of static smem, got {k:?}"
        );
        assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{arch}: {k:?}");
        cubins.push(m.cubin);
    }
    // Different architectures give different machine code.
    for i in 0..cubins.len() {
        for j in i + 1..cubins.len() {
            assert_ne!(cubins[i], cubins[j], "cubin {i} == cubin {j}");
        }
    }
}

#[test]
fn fast_math_and_extra_defines_are_applied() {
    if !nvrtc_or_skip() {
        return;
    }
    let src = r#"
        #ifndef WIDTH
        #error WIDTH must be defined
        #endif
        extern "C" __global__ void k(float* p) { __shared__ float s[WIDTH]; s[threadIdx.x] = p[0];
            __syncthreads(); p[threadIdx.x] = __expf(s[(threadIdx.x + 1) % WIDTH]); }"#;
    let opts = CompileOptions::new("sm_80")
        .fast_math(true)
        .option("-DWIDTH=64");
    let args = opts.to_nvrtc_args().unwrap();
    assert!(args.contains(&"--use_fast_math".to_string()), "{args:?}");
    let m = compile_cubin("defines", src, &opts).unwrap();
    assert_eq!(m.kernel("k").unwrap().static_smem, 256);

    let missing = compile_cubin("defines", src, &CompileOptions::new("sm_80"));
    match missing {
        Err(CudaError::Compile { name, log }) => {
            assert_eq!(name, "defines");
            assert!(log.contains("WIDTH must be defined"), "{log}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn syntax_error_is_a_compile_error_with_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let err = compile_cubin(
        "broken",
        "extern \"C\" __global__ void k(float* p) { p[0] = undefined_symbol; }",
        &CompileOptions::new("sm_89"),
    )
    .unwrap_err();
    match err {
        CudaError::Compile { name, log } => {
            assert_eq!(name, "broken");
            assert!(log.contains("undefined_symbol"), "{log}");
        }
        other => panic!("expected Compile, got {other:?}"),
    }
}

#[test]
fn unsupported_or_malformed_arch_is_invalid_argument() {
    if !nvrtc_or_skip() {
        return;
    }
    for arch in ["sm_20", "compute_80", "sm80"] {
        let r = compile_cubin(
            "k",
            "extern \"C\" __global__ void k() {}",
            &CompileOptions::new(arch),
        );
        assert!(
            matches!(r, Err(CudaError::InvalidArgument(_))),
            "{arch}: {r:?}"
        );
    }
}

#[test]
fn module_cache_uses_memory_then_disk() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = CompileOptions::new("sm_90");
    let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
    let a = cache.compile("axpy", FP16_SOURCE, &opts).unwrap();
    let b = cache.compile("axpy", FP16_SOURCE, &opts).unwrap();
    assert_eq!(a.cubin, b.cubin);
    let s = cache.stats();
    assert_eq!((s.compiles, s.memory_hits), (1, 1));

    let fresh = ModuleCache::new(Some(dir.path().to_path_buf()));
    let c = fresh.compile("axpy", FP16_SOURCE, &opts).unwrap();
    assert_eq!(c.cubin, a.cubin);
    assert_eq!(c.resources, a.resources);
    assert_eq!((fresh.stats().disk_hits, fresh.stats().compiles), (1, 0));

    // Another arch is another key.
    let d = fresh
        .compile("axpy", FP16_SOURCE, &CompileOptions::new("sm_80"))
        .unwrap();
    assert_ne!(d.cubin, a.cubin);
    assert_eq!(fresh.stats().compiles, 1);
}

#[test]
fn read_floor_kernel_compiles_without_local_memory() {
    if !nvrtc_or_skip() {
        return;
    }
    let (source, entry) = vqllm_codegen::instantiate::read_floor_unit();
    for arch in ["sm_80", "sm_90"] {
        let m = compile_cubin(entry, &source, &CompileOptions::new(arch))
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let k = m
            .kernel(entry)
            .unwrap_or_else(|| panic!("{arch}: no resources parsed from:\n{}", m.log));
        // 512 threads a block need at most 128 registers; one word per warp of shared memory.
        assert!(k.registers <= 128, "{arch}: {k:?}");
        assert_eq!(k.static_smem, 128, "{arch}: {k:?}");
        assert_eq!(
            (k.spill_stores, k.spill_loads, k.stack_frame),
            (0, 0, 0),
            "{arch}: {k:?}"
        );
    }
}
