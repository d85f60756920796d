//! Offline packing of a [`QuantizedWeight`] into the kernels' tile layout (see `docs/kernel-layout.md`).

use half::f16;
use rayon::prelude::*;
use vqllm_vq::{CodebookKind, QuantizedWeight, VqConfig};

use crate::plan::{KernelKind, Plan};

/// Geometry of the tile layout for one VQ configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    /// Bits per vector, `r·b`.
    pub rb: u32,
    /// 16-byte words per lane chunk.
    pub l: u32,
    /// Vectors per lane chunk.
    pub vpc: u32,
}

impl TileGeometry {
    pub fn of(c: &VqConfig) -> Self {
        let rb = c.r as u32 * c.b;
        let l = (1..=64u32).find(|l| (128 * l) % rb == 0).unwrap_or(rb);
        TileGeometry {
            rb,
            l,
            vpc: 128 * l / rb,
        }
    }

    /// Vectors per tile along the reduction axis, `4·VPC`.
    pub fn tile_vectors(&self) -> usize {
        4 * self.vpc as usize
    }

    /// u32 words per tile (32 lanes × L × 4).
    pub fn tile_words(&self) -> usize {
        32 * self.l as usize * 4
    }
}

/// A weight packed for the GPU.
#[derive(Clone, Debug)]
pub struct PackedWeight {
    pub rows: usize,
    pub cols: usize,
    pub rows_padded: usize,
    /// Vector blocks (tiles) per row.
    pub kb: usize,
    pub geometry: TileGeometry,
    /// Codes, little-endian u32 words: in the tile layout, or in the layout of the plan's kernel
    /// ([`pack_for_plan`]).
    pub codes: Vec<u32>,
    /// The kernel's `aux` words where its code layout has them (the sorted GeMV's tile starts and rows); else empty.
    pub aux: Vec<u32>,
    /// fp16 codebooks `[sets, r, 2^b, v]` (empty for E8P).
    pub codebooks: Vec<f16>,
    /// fp16 per-row scales, or all ones.
    pub scales: Vec<f16>,
    /// fp32 stage multipliers.
    pub stage_scales: Vec<f32>,
}

impl PackedWeight {
    /// Bytes the kernel must read for the weight (codes + codebooks + scales), excluding padding.
    pub fn weight_bytes(&self, c: &VqConfig) -> usize {
        let code_bits = self.rows * (self.cols / c.v) * self.geometry.rb as usize;
        code_bits.div_ceil(8)
            + self.codebooks.len() * 2
            + if c.per_channel_scale {
                self.rows * 2
            } else {
                0
            }
    }
}

/// Packs `q` into the tile layout.
pub fn pack_weight(q: &QuantizedWeight) -> PackedWeight {
    let mut packed = pack_tables(q);
    packed.codes = tile_codes(q, &packed);
    packed
}

/// Packs `q` the way `plan`'s kernel reads it: in frequency order when the plan's codebook cache holds the hottest
/// entries, with the codes in the tile layout, the LUT-large GeMV's lane layout ([`lane_stage_codes`], without TMA),
/// the sorted GeMV's chunk tiles (`crate::sorted`, with their `aux` words), the E8P LUT GeMV's units
/// (`crate::e8p_lut`) or, for E8P on the tensor-core kernel, the tile layout with the sign bits spread
/// (`crate::e8p_mma`).
pub fn pack_for_plan(q: &QuantizedWeight, plan: &Plan) -> crate::Result<PackedWeight> {
    // The codebook cache's shared/register tiers hold entries [0, n): put the hottest entries there.
    let ordered;
    let q = if plan.frequency_ordered {
        let mut copy = q.clone();
        vqllm_vq::profile::reorder_weight_by_frequency(&mut copy)?;
        ordered = copy;
        &ordered
    } else {
        q
    };
    Ok(match plan.kernel {
        KernelKind::Sorted => {
            let sorted = crate::sorted::pack_sorted(q)?;
            let mut packed = pack_tables(q);
            (packed.codes, packed.aux) = (sorted.words, sorted.aux);
            packed
        }
        KernelKind::E8pLut => {
            let mut packed = pack_tables(q);
            packed.codes =
                crate::e8p_lut::pack_codes(q, plan.geometry.2 as usize, plan.e8p_decode as usize);
            packed
        }
        KernelKind::LutLarge if !plan.code_tma => {
            let mut packed = pack_tables(q);
            packed.codes = lane_stage_codes(q, &packed);
            packed
        }
        KernelKind::Mma if q.config.codebook == CodebookKind::E8p => {
            let mut packed = pack_weight(q);
            crate::e8p_mma::spread_signs(&mut packed.codes);
            packed
        }
        _ => pack_weight(q),
    })
}

/// `q`'s codebooks, scales, stage multipliers and tile geometry, without its codes (`codes` is empty): for kernels
/// that read the codes in another layout ([`pack_for_plan`]).
pub fn pack_tables(q: &QuantizedWeight) -> PackedWeight {
    let c = &q.config;
    let geo = TileGeometry::of(c);
    let kb = q.groups().div_ceil(geo.tile_vectors());
    let rows_padded = q.rows.div_ceil(8) * 8;
    // Learned codebooks carry their stage multipliers (the kernels read learned entries as they are; only the E8P
    // decode applies `stage_scales`): codebooks are `[sets, r, 2^b, v]`, so stage i is every r-th block of 2^b·v.
    let stage_len = c.entries() * c.v;
    let codebooks = match c.codebook {
        CodebookKind::Learned => q
            .codebooks
            .iter()
            .enumerate()
            .map(|(i, &x)| f16::from_f32(x * q.stage_scales[(i / stage_len) % c.r]))
            .collect(),
        CodebookKind::E8p => Vec::new(),
    };
    let stage_scales = match c.codebook {
        CodebookKind::Learned => vec![1.0; c.r],
        CodebookKind::E8p => q.stage_scales.clone(),
    };
    let scales = match &q.scales {
        Some(s) => s.iter().map(|&x| f16::from_f32(x)).collect(),
        None => vec![f16::ONE; q.rows],
    };
    PackedWeight {
        rows: q.rows,
        cols: q.cols,
        rows_padded,
        kb,
        geometry: geo,
        codes: Vec::new(),
        aux: Vec::new(),
        codebooks,
        scales,
        stage_scales,
    }
}

/// The codes interleaved into the tile layout of `p` (docs/kernel-layout.md), little-endian u32 words.
fn tile_codes(q: &QuantizedWeight, p: &PackedWeight) -> Vec<u32> {
    let c = &q.config;
    let (geo, kb, nb) = (p.geometry, p.kb, p.rows_padded / 8);
    let groups = q.groups();
    let tv = geo.tile_vectors();
    let mut codes = vec![0u32; nb * kb * geo.tile_words()];
    let lane_words = geo.l as usize * 4;
    for n in 0..q.rows {
        let (tile_row, g) = (n / 8, n % 8);
        for k in 0..groups {
            let (tile_k, kin) = (k / tv, k % tv);
            let (t, j) = (kin % 4, kin / 4);
            let lane = 4 * g + t;
            let base = ((tile_row * kb + tile_k) * 32 + lane) * lane_words;
            for s in 0..c.r {
                let bit = j * geo.rb as usize + s * c.b as usize;
                put_bits(
                    &mut codes[base..base + lane_words],
                    bit,
                    c.b,
                    q.code(n, k, s) as u32,
                );
            }
        }
    }
    codes
}

/// Words per row and stage in the [`lane_stage_codes`] layout: the VPC codes of one lane column, `b` bits each.
pub fn lane_stage_words(c: &VqConfig) -> usize {
    (TileGeometry::of(c).vpc as usize * c.b as usize).div_ceil(32)
}

/// The codes re-packed for the lookup-table GeMV for large codebooks (`kernels/vq_lut_large.cuh`), where every lane
/// takes one row of a unit (k tile T, lane column t, stage s). Units come in the kernel's order, `(T·4 + t)·r + s`;
/// within a unit, rows come in groups of 32. A row's part is the stage-s codes of its VPC vectors
/// `T·4·VPC + t + 4j`, `b` bits each in W = [`lane_stage_words`] words, in the order the row's lane walks them:
/// the code of step i (bits `i·b`) is vector `j = (i + 2c) mod VPC`, with `c = lane mod VPC/2` the lane's class,
/// which spreads the classes' table reads over disjoint banks. The words are stored word-major across the 32 rows,
/// so lane = row and each of a warp's W loads is one coalesced 128-byte line. A unit reads only its own stage's
/// bits. In the tile layout, by contrast, a lane's 16-byte loads touched 32 lines per instruction and carried every
/// stage. Layout: `[unit][row group][word][lane]`.
pub fn lane_stage_codes(q: &QuantizedWeight, p: &PackedWeight) -> Vec<u32> {
    let c = &q.config;
    let (vpc, b, r) = (p.geometry.vpc as usize, c.b, c.r);
    let groups = q.groups();
    lane_layout(
        p.kb * 4 * r,
        q.rows,
        lane_stage_words(c),
        vpc,
        |unit, n, j, step, put| {
            let (s, t, tile) = (unit % r, (unit / r) % 4, unit / (4 * r));
            let g = tile * 4 * vpc + t + 4 * j;
            if g < groups {
                put(step * b as usize, b, q.code(n, g, s) as u64);
            }
        },
    )
}

/// The lane layout of the batch-1 kernels that take one weight row per lane (`kernels/vq_lut_large.cuh`,
/// `kernels/vq_e8p_lut.cuh`): `units` units of `w` words per row, stored `[unit][32-row group][word][lane]` with lane
/// = row mod 32. A lane of class `c = lane mod vpc/2` walks the unit's `vpc` columns from column 2c on, so its step i
/// is column `(i + 2c) mod vpc` (the classes then read disjoint banks of the kernel's table).
/// `fill(unit, row, column, step, put)` stores that column's codes with `put(bit, nbits, value)`, `bit` counted in the
/// row's words (a value may straddle two). Rows past the last one and whatever `fill` leaves out are zero.
pub(crate) fn lane_layout(
    units: usize,
    rows: usize,
    w: usize,
    vpc: usize,
    fill: impl Fn(usize, usize, usize, usize, &mut dyn FnMut(usize, u32, u64)) + Sync,
) -> Vec<u32> {
    let row_groups = rows.div_ceil(32);
    let mut out = vec![0u32; units * row_groups * 32 * w];
    out.par_chunks_mut(row_groups * 32 * w)
        .enumerate()
        .for_each(|(unit, dst)| {
            for n in 0..rows {
                let at = (n / 32) * 32 * w + n % 32;
                let class = (n % 32) % (vpc / 2).max(1);
                for step in 0..vpc {
                    let column = (step + 2 * class) % vpc;
                    fill(unit, n, column, step, &mut |bit, nbits, value| {
                        let (wi, sh) = (bit / 32, bit % 32);
                        dst[at + 32 * wi] |= (value << sh) as u32;
                        if sh + nbits as usize > 32 {
                            dst[at + 32 * (wi + 1)] |= (value >> (32 - sh)) as u32;
                        }
                    });
                }
            }
        });
    out
}

fn put_bits(words: &mut [u32], bit: usize, nbits: u32, value: u32) {
    for i in 0..nbits as usize {
        if (value >> i) & 1 == 1 {
            let p = bit + i;
            words[p / 32] |= 1 << (p % 32);
        }
    }
}

/// Reads back code `(n, k, stage)` from a packed weight (used by tests and debugging).
pub fn unpack_code(p: &PackedWeight, c: &VqConfig, n: usize, k: usize, stage: usize) -> u16 {
    let tv = p.geometry.tile_vectors();
    let (tile_k, kin) = (k / tv, k % tv);
    let (t, j) = (kin % 4, kin / 4);
    let lane = 4 * (n % 8) + t;
    let lane_words = p.geometry.l as usize * 4;
    let base = (((n / 8) * p.kb + tile_k) * 32 + lane) * lane_words;
    let bit = j * p.geometry.rb as usize + stage * c.b as usize;
    let mut v = 0u32;
    for i in 0..c.b as usize {
        let q = bit + i;
        v |= ((p.codes[base + q / 32] >> (q % 32)) & 1) << i;
    }
    v as u16
}

/// Block size of the activation Hadamard transform for `cols` inputs: the largest power of two dividing `cols`,
/// at most 4096 (one thread block transforms one block in shared memory).
pub fn hadamard_block(cols: usize) -> usize {
    let pow2 = 1usize << cols.trailing_zeros().min(12);
    pow2.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Level, Op, Overrides};
    use rand::{Rng, SeedableRng};
    use vqllm_vq::Scope;

    fn random_weight(config: VqConfig, rows: usize, cols: usize, seed: u64) -> QuantizedWeight {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let groups = cols / config.v;
        let sets = config.num_codebook_sets(rows, cols);
        let n_cb = if config.codebook == CodebookKind::Learned {
            sets * config.r * config.entries() * config.v
        } else {
            0
        };
        QuantizedWeight {
            config,
            rows,
            cols,
            codes: (0..rows * groups * config.r)
                .map(|_| rng.random_range(0..config.entries()) as u16)
                .collect(),
            codebooks: (0..n_cb).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            stage_scales: vec![1.0; config.r],
            scales: config
                .per_channel_scale
                .then(|| (0..rows).map(|_| rng.random_range(0.5f32..2.0)).collect()),
            rht: None,
        }
    }

    #[test]
    fn geometry_of_presets() {
        let g = |p: &str| TileGeometry::of(&VqConfig::preset(p).unwrap());
        assert_eq!(
            g("aqlm-2x8"),
            TileGeometry {
                rb: 16,
                l: 1,
                vpc: 8
            }
        );
        assert_eq!(
            g("aqlm3"),
            TileGeometry {
                rb: 24,
                l: 3,
                vpc: 16
            }
        );
        assert_eq!(
            g("gptvq2"),
            TileGeometry {
                rb: 8,
                l: 1,
                vpc: 16
            }
        );
        assert_eq!(
            g("quip4"),
            TileGeometry {
                rb: 32,
                l: 1,
                vpc: 4
            }
        );
        assert_eq!(TileGeometry::of(&VqConfig::new(4, 7, 1).unwrap()).vpc, 128);
    }

    #[test]
    fn lane_stage_codes_hold_every_code_where_the_lut_large_kernel_reads_it() {
        // aqlm3 (codes across word boundaries), 4 stages of 12 bits, 4 stages of 8 bits; rows and columns that are
        // not multiples of 32 rows or a k tile.
        for (config, rows, cols) in [
            (VqConfig::preset("aqlm3").unwrap(), 45, 8 * 80),
            (VqConfig::new(4, 12, 4).unwrap(), 33, 4 * 70),
            (VqConfig::new(4, 8, 4).unwrap(), 70, 4 * 21),
        ] {
            let q = random_weight(config, rows, cols, 11);
            let p = pack_tables(&q);
            let codes = lane_stage_codes(&q, &p);
            let (vpc, b, w) = (
                p.geometry.vpc as usize,
                config.b as usize,
                lane_stage_words(&config),
            );
            let row_groups = rows.div_ceil(32);
            assert_eq!(codes.len(), p.kb * 4 * config.r * row_groups * 32 * w);
            for unit in 0..p.kb * 4 * config.r {
                let (s, t, tile) = (
                    unit % config.r,
                    (unit / config.r) % 4,
                    unit / (4 * config.r),
                );
                for n in 0..row_groups * 32 {
                    // The kernel's read: lane n % 32 of group n / 32, words i = 0..W.
                    let word = |i: usize| {
                        codes[((unit * row_groups + n / 32) * w + i) * 32 + n % 32] as u64
                    };
                    for i in 0..vpc {
                        let bit = i * b;
                        let pair = word(bit / 32)
                            | if bit / 32 + 1 < w {
                                word(bit / 32 + 1) << 32
                            } else {
                                0
                            };
                        let code = (pair >> (bit % 32)) as u32 & ((1 << b) - 1);
                        // Step i of lane n % 32 is vector (i + 2 (lane mod VPC/2)) mod VPC.
                        let j = (i + 2 * ((n % 32) % (vpc / 2).max(1))) % vpc;
                        let g = tile * 4 * vpc + t + 4 * j;
                        let want = if n < rows && g < q.groups() {
                            q.code(n, g, s) as u32
                        } else {
                            0
                        };
                        assert_eq!(code, want, "{config} unit {unit} row {n} step {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn pack_for_plan_picks_the_kernels_layout() {
        let plan = |preset: &str, rows: usize, cols: usize, level: Level, ov: &Overrides| {
            Plan::new(
                &preset.parse().unwrap(),
                Op::Gemv,
                1,
                cols,
                rows,
                level,
                &crate::GpuSpec::for_arch("sm_90").unwrap(),
                ov,
            )
            .unwrap()
        };
        let none = Overrides::default();
        // The tile layout (LUT GeMV), the lane layout (LUT-large), the tile layout again with TMA.
        let q = random_weight(VqConfig::preset("aqlm-2x8").unwrap(), 40, 8 * 64, 3);
        let p = pack_for_plan(&q, &plan("aqlm-2x8", 40, 8 * 64, Level::Lut, &none)).unwrap();
        assert_eq!((p.codes, p.aux.len()), (pack_weight(&q).codes, 0));
        let q = random_weight(VqConfig::preset("aqlm3").unwrap(), 40, 8 * 64, 3);
        let p = pack_for_plan(&q, &plan("aqlm3", 40, 8 * 64, Level::Lut, &none)).unwrap();
        assert_eq!(p.codes, lane_stage_codes(&q, &pack_tables(&q)));
        let tma = Overrides {
            code_tma: Some(true),
            ..Overrides::default()
        };
        let p = pack_for_plan(&q, &plan("aqlm3", 40, 8 * 64, Level::Lut, &tma)).unwrap();
        assert_eq!(p.codes, pack_weight(&q).codes);
        // The sorted GeMV's words and tiles.
        let q = random_weight(VqConfig::preset("aqlm-1x16").unwrap(), 40, 8 * 64, 3);
        let p = pack_for_plan(&q, &plan("aqlm-1x16", 40, 8 * 64, Level::Sorted, &none)).unwrap();
        let s = crate::sorted::pack_sorted(&q).unwrap();
        assert_eq!((p.codes, p.aux), (s.words, s.aux));
        // E8P at batch 16 (tensor cores): the tile layout with the signs spread; the CUDA-core GeMV keeps the tile layout.
        let q = random_weight(VqConfig::preset("quip4").unwrap(), 40, 8 * 64, 3);
        let mma = Plan::new(
            &"quip4".parse().unwrap(),
            Op::Gemv,
            16,
            8 * 64,
            40,
            Level::Auto,
            &crate::GpuSpec::for_arch("sm_90").unwrap(),
            &none,
        )
        .unwrap();
        assert_eq!(mma.kernel, KernelKind::Mma);
        let mut want = pack_weight(&q).codes;
        crate::e8p_mma::spread_signs(&mut want);
        assert_eq!(pack_for_plan(&q, &mma).unwrap().codes, want);
        let p = pack_for_plan(&q, &plan("quip4", 40, 8 * 64, Level::Gc, &none)).unwrap();
        assert_eq!(p.codes, pack_weight(&q).codes);
    }

    #[test]
    fn pack_round_trips_every_code() {
        let mut configs: Vec<VqConfig> = ["aqlm-2x8", "aqlm3", "gptvq2", "aqlm-1x16"]
            .iter()
            .map(|p| VqConfig::preset(p).unwrap())
            .collect();
        configs.push(VqConfig::new(2, 5, 3).unwrap());
        configs.push(VqConfig {
            scope: Scope::Tile { rows: 16, cols: 64 },
            ..VqConfig::new(16, 11, 4).unwrap()
        });
        for (i, c) in configs.into_iter().enumerate() {
            let (rows, cols) = (37, c.v * 70);
            let q = random_weight(c, rows, cols, i as u64);
            let p = pack_weight(&q);
            assert_eq!(p.rows_padded, 40);
            for n in 0..rows {
                for k in 0..cols / c.v {
                    for s in 0..c.r {
                        assert_eq!(
                            unpack_code(&p, &c, n, k, s),
                            q.code(n, k, s),
                            "{c} n={n} k={k} s={s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn learned_stage_scales_are_folded_into_the_codebooks() {
        // The GPU kernels read learned entries as they are, so a weight whose stages carry multipliers must reach
        // them pre-scaled (and with unit stage scales, so nothing applies them twice).
        let c = VqConfig::preset("aqlm3").unwrap();
        let mut q = random_weight(c, 16, c.v * 64, 9);
        q.stage_scales = vec![0.5, -2.0];
        let p = pack_weight(&q);
        assert_eq!(p.stage_scales, vec![1.0, 1.0]);
        let stage = c.entries() * c.v;
        for (i, (&packed, &orig)) in p.codebooks.iter().zip(&q.codebooks).enumerate() {
            let want = f16::from_f32(orig * q.stage_scales[i / stage]);
            assert_eq!(packed, want, "entry value {i}");
        }
        // E8P keeps its stage scales for the decode.
        let e = VqConfig::preset("quip4").unwrap();
        let mut qe = random_weight(e, 8, 256, 3);
        qe.stage_scales = vec![1.0, 0.25];
        assert_eq!(pack_weight(&qe).stage_scales, vec![1.0, 0.25]);
    }
}
