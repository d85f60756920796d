//! Writes the generated translation unit of every preset x op x level to a folder (for offline compile checks).
use vqllm_codegen::*;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/vqgen".into());
    std::fs::create_dir_all(&dir).unwrap();
    let gpu = GpuSpec::for_arch("sm_90").unwrap();
    for preset in vqllm_vq::WEIGHT_PRESETS {
        let c = vqllm_vq::VqConfig::preset(preset).unwrap();
        for (op, m) in [(Op::Gemv, 1usize), (Op::Gemv, 16), (Op::Gemm, 256)] {
            for level in Level::WEIGHT_LEVELS {
                match Plan::new(&c, op, m, 4096, 4096, level, &gpu, &Overrides::default()) {
                    Ok(p) => {
                        let ks = instantiate(&p, c.hadamard.then_some(4096));
                        let f = format!("{dir}/{preset}-{op:?}-m{m}-{level}.cu");
                        std::fs::write(&f, ks.source).unwrap();
                        println!(
                            "{f} {:?} split={} n_reg={} n_shared={} smem={}",
                            p.kernel, p.split, p.n_reg, p.n_shared, p.smem_bytes
                        );
                    }
                    Err(e) => println!("{preset} {op:?} m={m} {level}: {e}"),
                }
            }
        }
    }
}
