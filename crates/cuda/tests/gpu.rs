//! Tests that need a CUDA GPU (run with `cargo test -p vqllm-cuda -- --ignored`), plus one
//! that checks the no-GPU path is a typed error.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqllm_cuda::{
    median, reference_xwt, CompileOptions, CudaError, CudaSlice, GemmShape, Gpu, GpuSpec,
    LaunchDims, ModuleCache,
};

const AXPY: &str = r#"
#include <cuda_fp16.h>
extern "C" __global__ void axpy_f16(const __half* __restrict__ x, const __half* __restrict__ y,
                                    __half* __restrict__ out, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2half(a * __half2float(x[i]) + __half2float(y[i]));
}

// Reverses each block's chunk through dynamic shared memory (tests > 48 KiB opt-in).
extern "C" __global__ void reverse_chunks(const float* __restrict__ in, float* __restrict__ out,
                                          int chunk) {
    extern __shared__ float buf[];
    const float* src = in + (size_t)blockIdx.x * chunk;
    for (int i = threadIdx.x; i < chunk; i += blockDim.x) buf[i] = src[i];
    __syncthreads();
    float* dst = out + (size_t)blockIdx.x * chunk;
    for (int i = threadIdx.x; i < chunk; i += blockDim.x) dst[i] = buf[chunk - 1 - i];
}
"#;

fn gpu() -> Gpu {
    Gpu::new(0).unwrap_or_else(|e| panic!("needs a CUDA GPU: {e}"))
}

fn load(gpu: &Gpu) -> vqllm_cuda::Module {
    let cache = ModuleCache::memory_only();
    let compiled = cache
        .compile("gpu_tests", AXPY, &CompileOptions::new(gpu.arch()))
        .unwrap_or_else(|e| panic!("{e}"));
    gpu.load_module(&compiled).unwrap()
}

/// out = a·x + y over n elements with `axpy_f16`, 256 threads per block.
fn axpy(
    gpu: &Gpu,
    kernel: &vqllm_cuda::Kernel,
    x: &CudaSlice<f16>,
    y: &CudaSlice<f16>,
    out: &mut CudaSlice<f16>,
    a: f32,
    n: usize,
) -> vqllm_cuda::Result<()> {
    let n_i = n as i32;
    unsafe {
        gpu.launch(kernel)
            .arg(x)
            .arg(y)
            .arg(out)
            .arg(&a)
            .arg(&n_i)
            .launch(LaunchDims::linear(n.div_ceil(256) as u32, 256))
    }
}

fn random_f16(rng: &mut ChaCha8Rng, n: usize) -> Vec<f16> {
    (0..n)
        .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

#[test]
fn bad_ordinal_is_a_typed_error_with_or_without_gpu() {
    match Gpu::new(9_999) {
        Ok(_) => panic!("ordinal 9999 cannot exist"),
        Err(e) => assert!(
            matches!(e, CudaError::NoDevice(_) | CudaError::DriverUnavailable(_)),
            "{e:?}"
        ),
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn device_spec_is_sane() {
    let gpu = gpu();
    let s = gpu.spec();
    eprintln!(
        "{s:#?}, reserved smem/block {}",
        gpu.reserved_smem_per_block()
    );
    assert!(!s.name.is_empty());
    assert!(s.cc_major >= 7, "{s:?}");
    assert!(s.sm_count > 0);
    assert!(s.smem_per_block_optin > 48 * 1024 && s.smem_per_block_optin <= s.smem_per_sm);
    assert!(s.regs_per_block > 0 && s.regs_per_block <= s.regs_per_sm);
    assert!(s.max_threads_per_sm >= 1024 && s.max_blocks_per_sm >= 16);
    assert!(s.l2_bytes >= 1 << 20);
    assert!(s.mem_bytes >= 1 << 30);
    let (free, total) = gpu.mem_info().unwrap();
    assert!(free <= total && total as u64 == s.mem_bytes);
    // Per-SM limits match the built-in table where the arch is known.
    if let Some(t) = GpuSpec::for_arch(&gpu.arch()) {
        assert_eq!(s.smem_per_sm, t.smem_per_sm);
        assert_eq!(s.smem_per_block_optin, t.smem_per_block_optin);
        assert_eq!(s.regs_per_sm, t.regs_per_sm);
        assert_eq!(s.max_threads_per_sm, t.max_threads_per_sm);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn fp16_axpy_matches_cpu_and_attributes_match_ptxas() {
    let gpu = gpu();
    let cache = ModuleCache::memory_only();
    let compiled = cache
        .compile("gpu_tests", AXPY, &CompileOptions::new(gpu.arch()))
        .unwrap();
    let module = gpu.load_module(&compiled).unwrap();
    let kernel = module.kernel("axpy_f16").unwrap();
    let attrs = kernel.attributes();
    // NVRTC 13.0 returns an empty log even with --ptxas-options=-v; newer ones carry the report. When present
    // it must agree with the driver.
    if let Some(ptxas) = compiled.kernel("axpy_f16") {
        assert_eq!(attrs.num_regs, ptxas.registers);
        assert_eq!(attrs.static_smem, ptxas.static_smem);
    } else {
        println!("note: NVRTC log has no ptxas report: {:?}", compiled.log);
    }
    assert_eq!(attrs.local_bytes, 0);
    assert!(attrs.max_threads_per_block >= 256);

    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for n in [1usize, 255, 256, 100_003] {
        let x = random_f16(&mut rng, n);
        let y = random_f16(&mut rng, n);
        let a = rng.random_range(-2.0f32..2.0);
        let dx = gpu.htod(&x).unwrap();
        let dy = gpu.htod(&y).unwrap();
        let mut out = gpu.alloc_zeros::<f16>(n).unwrap();
        gpu.fill_bytes(&mut out, 0xFF).unwrap(); // NaN poison
        axpy(&gpu, &kernel, &dx, &dy, &mut out, a, n).unwrap();
        let got = gpu.dtoh(&out).unwrap();
        for i in 0..n {
            let want = a * x[i].to_f32() + y[i].to_f32();
            let g = got[i].to_f32();
            assert!(
                (g - want).abs() <= 2e-3 + 1e-3 * want.abs(),
                "n={n} i={i}: got {g}, want {want}"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn dynamic_smem_above_48k_is_opted_in_and_limits_are_checked() {
    let gpu = gpu();
    let module = load(&gpu);
    let kernel = module.kernel("reverse_chunks").unwrap();
    let chunk = 20_000usize; // 80 000 bytes of shared memory
    let blocks = 7usize;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let input: Vec<f32> = (0..chunk * blocks).map(|_| rng.random()).collect();
    let din = gpu.htod(&input).unwrap();
    let mut dout = gpu.alloc_zeros::<f32>(input.len()).unwrap();
    let chunk_i = chunk as i32;
    let smem = (chunk * 4) as u32;
    let launch = |dout: &mut _, dims: LaunchDims| unsafe {
        gpu.launch(&kernel)
            .arg(&din)
            .arg(dout)
            .arg(&chunk_i)
            .launch(dims)
    };
    launch(
        &mut dout,
        LaunchDims::linear(blocks as u32, 256).with_smem(smem),
    )
    .unwrap();
    assert!(kernel.max_dynamic_smem() >= smem);
    let out = gpu.dtoh(&dout).unwrap();
    for b in 0..blocks {
        for i in 0..chunk {
            assert_eq!(out[b * chunk + i], input[b * chunk + chunk - 1 - i]);
        }
    }
    // More than the device allows is an error before launch, not a fault; so is a block larger than the kernel
    // allows, and an empty grid.
    let too_much = gpu.spec().smem_per_block_optin + 1;
    for dims in [
        LaunchDims::linear(1, 256).with_smem(too_much),
        LaunchDims::linear(1, 2048),
        LaunchDims::linear(0, 256),
    ] {
        let r = launch(&mut dout, dims);
        assert!(matches!(r, Err(CudaError::InvalidArgument(_))), "{r:?}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn occupancy_drops_with_shared_memory() {
    let gpu = gpu();
    let module = load(&gpu);
    let kernel = module.kernel("reverse_chunks").unwrap();
    kernel
        .set_max_dynamic_smem(&gpu, gpu.spec().smem_per_block_optin)
        .unwrap();
    let none = kernel.max_active_blocks_per_sm(128, 0).unwrap();
    let big = kernel
        .max_active_blocks_per_sm(128, gpu.spec().smem_per_sm / 2)
        .unwrap();
    assert!(none >= 2, "{none}");
    assert_eq!(
        big, 1,
        "half the SM's shared memory per block leaves room for one block"
    );
    let avail = kernel.available_dynamic_smem(2, 128).unwrap();
    assert!(avail > 0 && avail <= gpu.spec().smem_per_sm / 2, "{avail}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn missing_kernel_name_is_invalid_argument() {
    let gpu = gpu();
    let module = load(&gpu);
    assert!(matches!(
        module.kernel("no_such_kernel"),
        Err(CudaError::InvalidArgument(_))
    ));
    assert!(matches!(
        gpu.load_cubin(b"// not a cubin"),
        Err(CudaError::InvalidArgument(_))
    ));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cublas_hgemm_matches_cpu_reference() {
    let gpu = gpu();
    let blas = gpu.blas().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (m, n, k) in [
        (1, 4096, 4096),
        (1, 37, 129),
        (7, 300, 256),
        (64, 512, 1024),
    ] {
        let shape = GemmShape { m, n, k };
        let x = random_f16(&mut rng, m * k);
        let w = random_f16(&mut rng, n * k);
        let dx = gpu.htod(&x).unwrap();
        let dw = gpu.htod(&w).unwrap();
        let mut dy = gpu.alloc_zeros::<f16>(m * n).unwrap();
        gpu.fill_bytes(&mut dy, 0xFF).unwrap();
        blas.hgemm_xwt(shape, &dx, &dw, &mut dy).unwrap();
        let got = gpu.dtoh(&dy).unwrap();
        let want = reference_xwt(shape, &x, &w).unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        for (g, r) in got.iter().zip(&want) {
            let g = g.to_f32() as f64;
            assert!(g.is_finite(), "{shape:?}: non-finite output");
            num += (g - *r as f64).powi(2);
            den += (*r as f64).powi(2);
        }
        let rel = (num / den).sqrt();
        assert!(rel < 1e-2, "{shape:?}: relative error {rel}");
    }
    // Too-small buffers are rejected before cuBLAS sees them.
    let dx = gpu.alloc_zeros::<f16>(10).unwrap();
    let dw = gpu.alloc_zeros::<f16>(10).unwrap();
    let mut dy = gpu.alloc_zeros::<f16>(10).unwrap();
    let r = blas.hgemm_xwt(GemmShape { m: 4, n: 4, k: 4 }, &dx, &dw, &mut dy);
    assert!(matches!(r, Err(CudaError::InvalidArgument(_))));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn event_timing_is_positive_and_scales() {
    let gpu = gpu();
    let module = load(&gpu);
    let kernel = module.kernel("axpy_f16").unwrap();
    let n = 1 << 24;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let dx = gpu.htod(&random_f16(&mut rng, n)).unwrap();
    let dy = gpu.htod(&random_f16(&mut rng, n)).unwrap();
    let mut out = gpu.alloc_zeros::<f16>(n).unwrap();
    let mut run = || axpy(&gpu, &kernel, &dx, &dy, &mut out, 1.5, n);
    run().unwrap();
    let single = gpu.time_ms(5, &mut run).unwrap();
    assert_eq!(single.len(), 5);
    assert!(single.iter().all(|&t| t > 0.0 && t < 1_000.0), "{single:?}");
    let batched = gpu.time_ms_batched(5, 10, &mut run).unwrap();
    assert!(batched.iter().all(|&t| t > 0.0), "{batched:?}");
    // 96 MiB moved per call: per-call time is in the same range either way.
    let (s, b) = (median(&single).unwrap(), median(&batched).unwrap());
    assert!(
        b < s * 3.0 && s < b * 3.0,
        "single {s} ms vs batched {b} ms"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn absurd_allocation_is_out_of_memory() {
    let gpu = gpu();
    let r = gpu.alloc_zeros::<u8>(1usize << 50);
    match r {
        Err(CudaError::OutOfMemory { requested }) => assert_eq!(requested, 1u64 << 50),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let r = gpu.alloc_zeros::<f32>(usize::MAX / 2);
    assert!(matches!(r, Err(CudaError::OutOfMemory { .. })), "{r:?}");
    // The device still works afterwards.
    let v = gpu.htod(&[1u32, 2, 3]).unwrap();
    assert_eq!(gpu.dtoh(&v).unwrap(), vec![1, 2, 3]);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn buffers_roundtrip_every_element_type() {
    let gpu = gpu();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let f: Vec<f32> = (0..1000).map(|_| rng.random()).collect();
    assert_eq!(gpu.dtoh(&gpu.htod(&f).unwrap()).unwrap(), f);
    let h = random_f16(&mut rng, 1000);
    assert_eq!(gpu.dtoh(&gpu.htod(&h).unwrap()).unwrap(), h);
    let b: Vec<u8> = (0..1000).map(|_| rng.random()).collect();
    assert_eq!(gpu.dtoh(&gpu.htod(&b).unwrap()).unwrap(), b);
    let s: Vec<u16> = (0..1000).map(|_| rng.random()).collect();
    assert_eq!(gpu.dtoh(&gpu.htod(&s).unwrap()).unwrap(), s);
    let u: Vec<u32> = (0..1000).map(|_| rng.random()).collect();
    assert_eq!(gpu.dtoh(&gpu.htod(&u).unwrap()).unwrap(), u);
    let i: Vec<i32> = (0..1000).map(|_| rng.random()).collect();
    let mut di = gpu.alloc_zeros::<i32>(1200).unwrap();
    gpu.htod_into(&i, &mut di).unwrap();
    let back = gpu.dtoh(&di).unwrap();
    assert_eq!(&back[..1000], &i[..]);
    assert!(back[1000..].iter().all(|&v| v == 0));
    assert!(matches!(
        gpu.htod_into(&vec![0i32; 1201], &mut di),
        Err(CudaError::InvalidArgument(_))
    ));
    let empty: Vec<f32> = Vec::new();
    assert!(gpu.dtoh(&gpu.htod(&empty).unwrap()).unwrap().is_empty());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn read_floor_reads_every_word_once() {
    use vqllm_cuda::ops::read_floor::ReadFloor;
    let gpu = gpu();
    let cache = ModuleCache::memory_only();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    // Sizes below one word, below one block, past one wave of the grid, and a layer's worth.
    for bytes in [
        1,
        16,
        17,
        4097,
        rng.random_range(100_000..2_000_000),
        11_272_192,
    ] {
        let mut probe = ReadFloor::new(&gpu, &cache, bytes, 2).unwrap();
        assert_eq!(probe.bytes(), bytes.div_ceil(16) * 16);
        let want: Vec<u32> = (0..2).map(|c| probe.host_xor(&gpu, c).unwrap()).collect();
        assert_ne!(want[0], want[1], "{bytes} bytes: the copies should differ");
        // Back to back without a sync (programmatic launches on sm_90+), then each copy alone.
        probe.run(&gpu, 0).unwrap();
        probe.run(&gpu, 1).unwrap();
        assert_eq!(
            probe.last_xor(&gpu).unwrap(),
            want[1],
            "{bytes} bytes, copy 1"
        );
        probe.run(&gpu, 2).unwrap();
        assert_eq!(
            probe.last_xor(&gpu).unwrap(),
            want[0],
            "{bytes} bytes, copy 0"
        );
    }
    assert!(matches!(
        ReadFloor::new(&gpu, &cache, 0, 1),
        Err(CudaError::InvalidArgument(_))
    ));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn graph_capture_replays_the_work_and_ends_on_error() {
    let gpu = gpu();
    // SAFETY: every buffer of this test is used on this Gpu's stream only.
    unsafe { gpu.disable_event_tracking() };
    let module = load(&gpu);
    let kernel = module.kernel("axpy_f16").unwrap();
    let n = 100_003;
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (hx, hy) = (random_f16(&mut rng, n), random_f16(&mut rng, n));
    let (dx, dy) = (gpu.htod(&hx).unwrap(), gpu.htod(&hy).unwrap());
    let mut out = gpu.htod(&vec![f16::from_bits(0x7e00); n]).unwrap();
    let graph = gpu
        .capture_graph(|| {
            axpy(&gpu, &kernel, &dx, &dy, &mut out, 2.0, n)?;
            axpy(&gpu, &kernel, &dx, &dy, &mut out, -0.5, n)
        })
        .unwrap();
    gpu.synchronize().unwrap();
    // Captured, not run: the output is still poisoned.
    assert!(gpu.dtoh(&out).unwrap().iter().all(|v| v.is_nan()));
    graph.launch().unwrap();
    gpu.synchronize().unwrap();
    let got = gpu.dtoh(&out).unwrap();
    for i in 0..n {
        let want = -0.5 * hx[i].to_f32() + hy[i].to_f32();
        assert!(
            (got[i].to_f32() - want).abs() <= 2e-3 * (1.0 + want.abs()),
            "element {i}"
        );
    }
    // A failing queue is returned as its own error, and the stream is not left capturing.
    match gpu.capture_graph(|| Err(CudaError::InvalidArgument("stop".into()))) {
        Err(CudaError::InvalidArgument(_)) => {}
        Err(e) => panic!("expected the queue's own error, got {e}"),
        Ok(_) => panic!("a failing queue was captured"),
    }
    let v = gpu.htod(&[4u32, 5]).unwrap();
    assert_eq!(gpu.dtoh(&v).unwrap(), vec![4, 5]);
}
