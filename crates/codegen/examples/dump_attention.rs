//! Writes the generated attention translation unit of every KV config x head_dim x shape x level to a folder,
//! for offline compile checks (`python3 nvrtc_check.py FILE sm_90`), and prints each plan's key numbers.
use vqllm_codegen::attention::{instantiate_attention, AttentionPlan};
use vqllm_codegen::{GpuSpec, Level};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/vqattn".into());
    let verbose = std::env::args().any(|a| a == "-v");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {dir}: {e}");
        std::process::exit(1);
    }
    let Some(gpu) = GpuSpec::for_arch("sm_90") else {
        eprintln!("no built-in sm_90 spec");
        std::process::exit(1);
    };
    let configs = ["cq2", "cq4", "vq<8,8,1>:kv", "vq<4,6,1>:kv", "vq<2,4,1>:kv"];
    // (batch, seq, q_heads, kv_heads)
    let shapes = [
        (16usize, 4096usize, 32usize, 32usize),
        (1, 4096, 32, 32),
        (4, 2048, 32, 8),
    ];
    for name in configs {
        let c: vqllm_vq::VqConfig = match name.parse() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: {e}");
                continue;
            }
        };
        for hd in [64usize, 128] {
            for (b, t, qh, kh) in shapes {
                for level in Level::LADDER {
                    match AttentionPlan::new(&c, b, t, qh, kh, hd, level, &gpu) {
                        Ok(p) => {
                            let ks = instantiate_attention(&p);
                            let tag = name.replace(['<', '>', ','], "_").replace(':', "-");
                            let f = format!("{dir}/{tag}-hd{hd}-b{b}-t{t}-q{qh}k{kh}-{level}.cu");
                            if let Err(e) = std::fs::write(&f, &ks.source) {
                                eprintln!("{f}: {e}");
                                continue;
                            }
                            println!(
                                "{f} qpb={} slices={} splits={}x{} n_shared={} n_reg={} minb={} smem={} grid={:?}",
                                p.qpb,
                                p.group_slices,
                                p.split.splits,
                                p.split.chunk,
                                p.n_shared,
                                p.n_reg,
                                p.min_blocks,
                                p.split.launch.smem_bytes,
                                p.split.launch.grid
                            );
                            if verbose {
                                println!("{p}");
                            }
                        }
                        Err(e) => println!("{name} hd={hd} b={b} t={t} {level}: {e}"),
                    }
                }
            }
        }
    }
}
