//! The codebook-sorted GeMV (`kernels/vq_sorted_gemv.cuh`): batch 1 with one codebook too large for shared memory
//! (aqlm-1x16: 65536 entries of 16 bytes, 1 MiB).
//!
//! Every other kernel reads such a codebook at random through L1/L2, one 32-byte sector per 16-byte entry. This one
//! takes the paper's codebook-centric dataflow to its end: the codebook is cut into chunks of 2^13 entries (128 KiB)
//! and each block holds one chunk in shared memory, with the activations, for its whole life. Offline, the weight is
//! re-packed so that a block reads only the codes of its chunk: for each (chunk, row), the list of that row's vectors
//! whose code falls in the chunk, each as one 32-bit word `code mod 2^13 | group << 13` (`group` = the vector's
//! position along the row). Lists are stored chunk-major, then row by row, with a prefix array of their starts.
//! The kernel adds each block's partial row sums into the fp32 workspace; the finalize kernel scales and converts.
//!
//! The words cost 32 bits per vector instead of the code's 16, but every lookup is a shared-memory load. Within a
//! list the words are ordered so that each aligned group of 8 (one shared-memory phase of a 16-byte warp load) has 8
//! different entry slots mod 8 and 8 different activation slots mod 8 where the list allows, which removes most bank
//! conflicts (0.9 extra wavefronts per phase against 3.0 in group order; ncu still counts 37% of wavefronts as
//! conflicts on the GPU, perf-notes v0.19).

use vqllm_vq::{CodebookKind, QuantizedWeight, Scope, VqConfig};

/// Entries per chunk: 2^13 x 16 bytes = 128 KiB of shared memory.
pub const CHUNK_BITS: u32 = 13;
/// Warps per block (one block per SM: the chunk takes most of its shared memory).
pub const WARPS: u32 = 32;

/// Why `config` at batch `m` cannot use the sorted GeMV, or `None` when it can (shared memory checked separately).
pub fn unsupported_reason(config: &VqConfig, m: usize, k: usize) -> Option<String> {
    if m != 1 {
        return Some(format!("batch {m} (the sorted GeMV is for batch 1)"));
    }
    if config.codebook != CodebookKind::Learned || config.scope != Scope::Tensor {
        return Some("it needs one learned codebook for the tensor".into());
    }
    if config.r != 1 || config.v != 8 {
        return Some(format!(
            "it needs one stage of 8-wide vectors (16-byte entries), not r={} v={}",
            config.r, config.v
        ));
    }
    if config.b < CHUNK_BITS {
        return Some(format!(
            "{}-entry codebooks fit in shared memory whole (other kernels stage them)",
            config.entries()
        ));
    }
    // All-ones is the kernel's "no word" marker.
    if (k / config.v) as u64 >= (1u64 << (32 - CHUNK_BITS)) - 1 {
        return Some(format!(
            "k = {k}: a vector's group must fit in {} bits",
            32 - CHUNK_BITS
        ));
    }
    None
}

/// Chunks of the codebook (grid x).
pub fn chunks(config: &VqConfig) -> u32 {
    1 << (config.b - CHUNK_BITS)
}

/// Shared memory per block: the chunk's entries and the activations.
pub fn smem_bytes(config: &VqConfig, k: usize) -> u32 {
    (1u32 << CHUNK_BITS) * (config.v as u32 * 2) + (k as u32) * 2
}

/// Row parts per chunk (grid y): one block per SM in all.
pub fn row_parts(config: &VqConfig, n: usize, sms: u32) -> u32 {
    (sms / chunks(config)).clamp(1, n.div_ceil(WARPS as usize) as u32)
}

/// Code words per lane a warp loads for one row at once (`ROWS_PER_WARP` in the kernel's config): enough for a row's
/// list (k / v / chunks words on average) plus four standard deviations and the 31 words of alignment slack, so
/// that a longer list, read word by word, stays rare.
pub fn unroll(config: &VqConfig, k: usize) -> u32 {
    let mean = (k / config.v) as f64 / chunks(config) as f64;
    let p = 1.0 / chunks(config) as f64;
    let sd = (mean * (1.0 - p)).sqrt();
    (((mean + 4.0 * sd + 31.0) / 32.0).ceil() as u32).clamp(1, 12)
}

/// A weight re-packed for the sorted GeMV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedWeight {
    /// Per (chunk, row) list, chunk-major then row by row: `code mod 2^CHUNK_BITS | group << CHUNK_BITS`.
    pub words: Vec<u32>,
    /// `chunks * rows + 1` offsets into `words`: list (c, r) is `words[starts[c·rows + r] .. starts[c·rows + r + 1]]`.
    pub starts: Vec<u32>,
}

/// Re-packs `q`'s codes for the sorted GeMV. Errors when the config is not one it runs, or the weight has more than
/// 2^32 vectors.
pub fn pack_sorted(q: &QuantizedWeight) -> crate::Result<SortedWeight> {
    let c = &q.config;
    if let Some(why) = unsupported_reason(c, 1, q.cols) {
        return Err(crate::CodegenError::Unsupported(format!(
            "sorted GeMV for {c}: {why}"
        )));
    }
    let groups = q.groups();
    if q.rows * groups >= u32::MAX as usize {
        return Err(crate::CodegenError::Unsupported(format!(
            "sorted GeMV: {} x {groups} vectors exceed 32-bit offsets",
            q.rows
        )));
    }
    let nchunks = chunks(c) as usize;
    let mask = (1u32 << CHUNK_BITS) - 1;
    // List (c, r) is list c·rows + r, so the lists come out chunk-major. A counting sort: list lengths give the
    // starts, then each row's words go to their lists in group order.
    let list_of = |r: usize, g: usize| (q.code(r, g, 0) as usize >> CHUNK_BITS) * q.rows + r;
    let mut starts = vec![0u32; nchunks * q.rows + 1];
    for r in 0..q.rows {
        for g in 0..groups {
            starts[list_of(r, g) + 1] += 1;
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut bucketed = vec![0u32; q.rows * groups];
    let mut next = starts.clone();
    for r in 0..q.rows {
        for g in 0..groups {
            let li = list_of(r, g);
            bucketed[next[li] as usize] = q.code(r, g, 0) as u32 & mask | (g as u32) << CHUNK_BITS;
            next[li] += 1;
        }
    }
    let mut words = Vec::with_capacity(bucketed.len());
    let mut scratch = Vec::new();
    for w in starts.windows(2) {
        order_conflict_free(
            &bucketed[w[0] as usize..w[1] as usize],
            &mut words,
            &mut scratch,
        );
    }
    Ok(SortedWeight { words, starts })
}

/// Appends `list`'s words to `out` so that each aligned group of 8 positions of `out` gets distinct entry slots
/// (`word mod 8`) and distinct activation slots (`group mod 8`) where the list allows. Greedy over the 8 x 8 (entry
/// slot, activation slot) cells: each position takes a cell whose two slots are still free in its group, the one
/// whose slots have the most words left, so that no slot runs out early and leaves conflicts for the tail.
fn order_conflict_free(list: &[u32], out: &mut Vec<u32>, by_cell: &mut Vec<u32>) {
    let x_slot = |w: u32| ((w >> CHUNK_BITS) & 7) as usize;
    let cell_of = |w: u32| (w & 7) as usize * 8 + x_slot(w);
    // The words grouped by cell, in list order within a cell (a counting sort into `by_cell`); a cell's words are
    // taken from the back of its range.
    let mut count = [0usize; 64];
    let (mut left_e, mut left_x) = ([0usize; 8], [0usize; 8]);
    for &w in list {
        count[cell_of(w)] += 1;
        left_e[(w & 7) as usize] += 1;
        left_x[x_slot(w)] += 1;
    }
    let mut end = [0usize; 64];
    let mut at = 0;
    for c in 0..64 {
        at += count[c];
        end[c] = at;
    }
    let mut next = end;
    by_cell.clear();
    by_cell.resize(list.len(), 0);
    for &w in list.iter().rev() {
        let c = cell_of(w);
        next[c] -= 1;
        by_cell[next[c]] = w;
    }
    // Bit e·8 + x: cell (e, x) has words left.
    let mut filled: u64 = (0..64).filter(|&c| count[c] > 0).fold(0, |m, c| m | 1 << c);
    let mut left = list.len();
    while left > 0 {
        let (mut used_e, mut used_x) = (0u32, 0u32);
        for _ in 0..(8 - out.len() % 8).min(left) {
            // The cell whose two slots are free, else one, else none; then the most words left on its slots; the
            // last such cell on ties.
            let free_e = (0..8)
                .filter(|e| used_e >> e & 1 == 0)
                .fold(0u64, |m, e| m | 0xff << (8 * e));
            let free_x = (!used_x as u64 & 0xff) * 0x0101_0101_0101_0101;
            let free = |c: usize| (free_e >> c & 1) + (free_x >> c & 1);
            let candidates = match filled & free_e & free_x {
                0 => filled,
                both => both,
            };
            let (mut cell, mut best) = (64, (0, 0));
            let mut bits = candidates;
            while bits != 0 {
                let c = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let score = (free(c), left_e[c / 8] + left_x[c % 8]);
                if cell == 64 || score >= best {
                    (cell, best) = (c, score);
                }
            }
            end[cell] -= 1;
            let w = by_cell[end[cell]];
            count[cell] -= 1;
            if count[cell] == 0 {
                filled &= !(1 << cell);
            }
            let (e, x) = (cell / 8, cell % 8);
            used_e |= 1 << e;
            used_x |= 1 << x;
            left_e[e] -= 1;
            left_x[x] -= 1;
            out.push(w);
            left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vqllm_vq::synthetic::random_weight;

    #[test]
    fn every_vector_appears_once_in_its_chunk_and_row() {
        let c: VqConfig = "aqlm-1x16".parse().unwrap();
        let q = random_weight(&c, 37, 8 * 300, 5).unwrap();
        let s = pack_sorted(&q).unwrap();
        let n = chunks(&c) as usize;
        assert_eq!(s.starts.len(), n * q.rows + 1);
        assert_eq!(s.words.len(), q.rows * q.groups());
        let mut seen = vec![false; q.rows * q.groups()];
        for ch in 0..n {
            for r in 0..q.rows {
                let (a, b) = (
                    s.starts[ch * q.rows + r] as usize,
                    s.starts[ch * q.rows + r + 1] as usize,
                );
                for &w in &s.words[a..b] {
                    let g = (w >> CHUNK_BITS) as usize;
                    let code = (ch as u32) << CHUNK_BITS | (w & ((1 << CHUNK_BITS) - 1));
                    assert_eq!(code, q.code(r, g, 0) as u32, "row {r} group {g}");
                    assert!(!std::mem::replace(&mut seen[r * q.groups() + g], true));
                }
            }
        }
        assert!(seen.iter().all(|&v| v));
    }

    /// Extra shared-memory wavefronts per aligned phase of 8 words inside one list, entry and activation loads
    /// together (0 = conflict-free).
    fn extra_wavefronts(s: &SortedWeight) -> f64 {
        let (mut phases, mut extra) = (0usize, 0usize);
        for w in s.starts.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            let mut p = a;
            while p < b {
                let end = ((p / 8 + 1) * 8).min(b);
                for key in [|w: u32| w & 7, |w: u32| (w >> CHUNK_BITS) & 7] {
                    let mut count = [0usize; 8];
                    for &w in &s.words[p..end] {
                        count[key(w) as usize] += 1;
                    }
                    extra += count.iter().max().unwrap() - 1;
                }
                phases += 1;
                p = end;
            }
        }
        extra as f64 / phases as f64
    }

    #[test]
    fn ordering_removes_most_bank_conflicts() {
        let c: VqConfig = "aqlm-1x16".parse().unwrap();
        let q = random_weight(&c, 64, 8 * 1024, 9).unwrap();
        let ordered = pack_sorted(&q).unwrap();
        // The same lists in group order.
        let mut natural = ordered.clone();
        for w in natural.starts.windows(2) {
            natural.words[w[0] as usize..w[1] as usize].sort_by_key(|&x| x >> CHUNK_BITS);
        }
        let (o, n) = (extra_wavefronts(&ordered), extra_wavefronts(&natural));
        // Group order is about as bad as random (~3 extra wavefronts per phase); the greedy ordering ~0.9.
        assert!(n > 2.0 && o < n / 2.5, "ordered {o:.3}, group order {n:.3}");
    }

    #[test]
    fn rejects_what_it_does_not_run() {
        let small: VqConfig = "aqlm-2x8".parse().unwrap();
        assert!(unsupported_reason(&small, 1, 4096).is_some());
        let big: VqConfig = "aqlm-1x16".parse().unwrap();
        assert!(unsupported_reason(&big, 1, 4096).is_none());
        assert!(unsupported_reason(&big, 2, 4096).is_some());
        let q = random_weight(&small, 8, 64, 1).unwrap();
        assert!(pack_sorted(&q).is_err());
    }
}
