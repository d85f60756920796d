//! The codebook-sorted GeMV (`kernels/vq_sorted_gemv.cuh`): batch 1 with one codebook too large for shared memory
//! (aqlm-1x16: 65536 entries of 16 bytes, 1 MiB).
//!
//! Every other kernel reads such a codebook at random through L1/L2, one 32-byte sector per 16-byte entry. This one
//! takes the paper's codebook-centric dataflow to its end: the codebook is cut into chunks of 2^13 entries (128 KiB)
//! and each block holds one chunk in shared memory, with the activations, for its whole life. Offline, the weight is
//! re-packed so that a block reads only the codes of its chunk: for each (chunk, row), the list of that row's vectors
//! whose code falls in the chunk, each as one 32-bit word `code mod 2^13 | group << 13` (`group` = the vector's
//! position along the row).
//!
//! Lane = row: the lists of 32 rows form a tile, one word per lane and step, so a lane sums its row in a register and
//! a warp needs no reduction (`SortedWeight` has the layout). The kernel adds each block's partial row sums into the
//! fp32 workspace; the finalize kernel scales and converts.
//!
//! The words cost 32 bits per vector instead of the code's 16, but every lookup is a shared-memory load, and shared
//! memory is what bounds the kernel (two 16-byte loads per word). The words of each step are ordered so that each
//! phase of 8 lanes (one wavefront of a 16-byte warp load) reads 8 different entry slots mod 8 and 8 different
//! activation slots mod 8 where the lists allow: a small search per step, then a local search that spreads the
//! conflicts the lists' tails leave (0.2-0.4 extra wavefronts per phase on random codes, 3 in group order).

use rayon::prelude::*;
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
    // The groups and the 8 zero activations of the padding words.
    if (k / config.v) as u64 + 8 > 1u64 << (32 - CHUNK_BITS) {
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

/// Shared memory per block: the chunk's entries, the activations and 8 zero activations for the padding words.
pub fn smem_bytes(config: &VqConfig, k: usize) -> u32 {
    (1u32 << CHUNK_BITS) * (config.v as u32 * 2) + (k as u32 + 8 * config.v as u32) * 2
}

/// Blocks per chunk (grid y): one block per SM in all. Each block, and each of its warps, takes an even share of its
/// chunk's words.
pub fn row_parts(config: &VqConfig, sms: u32) -> u32 {
    (sms / chunks(config)).max(1)
}

/// Quads (4 words per lane, one 16-byte load) a lane keeps in flight (`ROWS_PER_WARP` in the kernel's config): with 32
/// warps per SM, 2 quads are 32 KiB in flight per SM, about twice what the DRAM latency needs at full bandwidth.
pub const QUADS_IN_FLIGHT: u32 = 2;

/// Rows per tile: one per lane.
const TILE_ROWS: usize = 32;
/// Lanes of one shared-memory phase of a 16-byte warp load.
const PHASE: usize = 8;

/// A weight re-packed for the sorted GeMV.
///
/// Per chunk, the rows are sorted by the length of their list in that chunk (longest first) and cut into tiles of
/// 32, so that a tile's rows have about as many words; a tile is as many quads as its longest list needs. Quad `q`
/// (global over all chunks) is `words[128 q .. 128 (q + 1)]`: lane `l` reads `words[128 q + 4 l .. 128 q + 4 l + 4]`,
/// its row's next four words. Shorter lists are filled with padding words whose group is one of 8 zero
/// activations after the real ones (`groups .. groups + 8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedWeight {
    /// The quads, chunk by chunk, tile by tile: `code mod 2^CHUNK_BITS | group << CHUNK_BITS`.
    pub words: Vec<u32>,
    /// The kernel's `aux` argument: the first quad of every tile, `chunks x (tiles + 1)` (the last one of a chunk is
    /// its end), then the rows of every tile, `chunks x tiles x 32` (`u32::MAX`: no row).
    pub aux: Vec<u32>,
    /// Tiles per chunk: `ceil(rows / 32)`.
    pub tiles: usize,
    /// Codebook chunks.
    pub chunks: usize,
}

impl SortedWeight {
    /// Quads `[start, end)` of tile `t` of chunk `c`.
    pub fn tile_quads(&self, c: usize, t: usize) -> (usize, usize) {
        let i = c * (self.tiles + 1) + t;
        (self.aux[i] as usize, self.aux[i + 1] as usize)
    }

    /// The row of lane `lane` in tile `t` of chunk `c`, if any.
    pub fn tile_row(&self, c: usize, t: usize, lane: usize) -> Option<usize> {
        let r = self.aux[self.chunks * (self.tiles + 1) + (c * self.tiles + t) * TILE_ROWS + lane];
        (r != u32::MAX).then_some(r as usize)
    }

    /// The word of lane `lane` at step `s` (counted from the tile's first quad `q`).
    pub fn word(&self, q: usize, s: usize, lane: usize) -> u32 {
        self.words[128 * (q + s / 4) + 4 * lane + s % 4]
    }
}

/// Re-packs `q`'s codes for the sorted GeMV. Errors when the config is not one it runs, or the words would not fit
/// 32-bit offsets.
pub fn pack_sorted(q: &QuantizedWeight) -> crate::Result<SortedWeight> {
    let c = &q.config;
    if let Some(why) = unsupported_reason(c, 1, q.cols) {
        return Err(crate::CodegenError::Unsupported(format!(
            "sorted GeMV for {c}: {why}"
        )));
    }
    let groups = q.groups();
    let nchunks = chunks(c) as usize;
    let mask = (1u32 << CHUNK_BITS) - 1;
    // List (c, r) is list c·rows + r, chunk-major. A counting sort: list lengths give the starts, then each row's
    // words go to their lists in group order.
    let list_of = |r: usize, g: usize| (q.code(r, g, 0) as usize >> CHUNK_BITS) * q.rows + r;
    let mut starts = vec![0usize; nchunks * q.rows + 1];
    for r in 0..q.rows {
        for g in 0..groups {
            starts[list_of(r, g) + 1] += 1;
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut lists = vec![0u32; q.rows * groups];
    let mut next = starts.clone();
    for r in 0..q.rows {
        for g in 0..groups {
            let li = list_of(r, g);
            lists[next[li]] = q.code(r, g, 0) as u32 & mask | (g as u32) << CHUNK_BITS;
            next[li] += 1;
        }
    }
    let list = |ch: usize, r: usize| &lists[starts[ch * q.rows + r]..starts[ch * q.rows + r + 1]];

    // Per chunk, the rows by descending list length, cut into tiles; a tile is as many quads as its longest list
    // needs.
    let tiles = q.rows.div_ceil(TILE_ROWS);
    let mut tile_rows = vec![u32::MAX; nchunks * tiles * TILE_ROWS];
    let mut tile_quads = Vec::with_capacity(nchunks * tiles);
    for ch in 0..nchunks {
        let mut order: Vec<usize> = (0..q.rows).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(list(ch, r).len()));
        for (t, tile) in order.chunks(TILE_ROWS).enumerate() {
            for (i, &r) in tile.iter().enumerate() {
                tile_rows[(ch * tiles + t) * TILE_ROWS + i] = r as u32;
            }
            tile_quads.push(list(ch, tile[0]).len().div_ceil(4));
        }
    }
    let quads: usize = tile_quads.iter().sum();
    if quads as u64 * 128 > u32::MAX as u64 {
        return Err(crate::CodegenError::Unsupported(format!(
            "sorted GeMV: {} x {groups} vectors need more than 2^32 words",
            q.rows
        )));
    }
    // The tiles are ordered independently, in parallel.
    let mut words = vec![0u32; 128 * quads];
    let mut slices = Vec::with_capacity(tile_quads.len());
    let mut rest = words.as_mut_slice();
    for &tq in &tile_quads {
        let (tile, after) = rest.split_at_mut(128 * tq);
        slices.push(tile);
        rest = after;
    }
    slices.into_par_iter().enumerate().for_each(|(i, out)| {
        let rows = &tile_rows[i * TILE_ROWS..(i + 1) * TILE_ROWS];
        let ch = i / tiles;
        order_tile(out, rows, |r| list(ch, r), groups as u32, i as u64);
    });
    // The kernel's aux: per chunk, the tiles' first quads and the chunk's end; then the tiles' rows.
    let mut aux = Vec::with_capacity(nchunks * (tiles + 1) + tile_rows.len());
    let mut at = 0u32;
    for ch in 0..nchunks {
        for &tq in &tile_quads[ch * tiles..(ch + 1) * tiles] {
            aux.push(at);
            at += tq as u32;
        }
        aux.push(at);
    }
    aux.extend_from_slice(&tile_rows);
    Ok(SortedWeight {
        words,
        aux,
        tiles,
        chunks: nchunks,
    })
}

/// Writes one tile's quads into `out`: each phase of 8 lanes is ordered on its own (`order_step`, then `polish`);
/// lanes without a row (the last tile) read padding. `seed` makes the local search reproducible.
fn order_tile<'a>(
    out: &mut [u32],
    rows: &[u32],
    list: impl Fn(usize) -> &'a [u32],
    groups: u32,
    seed: u64,
) {
    let steps = out.len() / 32;
    let mut pools: [CellPool; PHASE] = std::array::from_fn(|_| CellPool::default());
    let mut grid: Vec<[u32; PHASE]> = Vec::with_capacity(steps);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    for ph in 0..TILE_ROWS / PHASE {
        for (i, pool) in pools.iter_mut().enumerate() {
            let r = rows[ph * PHASE + i];
            pool.fill(if r == u32::MAX { &[] } else { list(r as usize) });
        }
        grid.clear();
        grid.extend((0..steps).map(|_| order_step(&mut pools, groups)));
        polish(&mut grid, groups, &mut rng);
        for (s, step) in grid.iter().enumerate() {
            for (i, &w) in step.iter().enumerate() {
                out[128 * (s / 4) + 4 * (ph * PHASE + i) + s % 4] = w;
            }
        }
    }
}

/// The words of one step of one phase: lane `i` takes its word from `pools[i]`, or a padding word once its row's
/// list is used up. A conflict-free assignment (8 distinct entry slots and 8 distinct activation slots) when a short
/// search finds one, the greedy choice lane by lane otherwise.
fn order_step(pools: &mut [CellPool], groups: u32) -> [u32; PHASE] {
    let real = (0..PHASE)
        .filter(|&i| pools[i].filled != 0)
        .fold(0u8, |m, i| m | 1 << i);
    let mut cells = [64usize; PHASE];
    let mut budget = SEARCH_NODES;
    let (mut used_e, mut used_x) = (0u32, 0u32);
    let found = conflict_free(pools, real, 0, 0, &mut cells, &mut budget);
    let mut out = [0u32; PHASE];
    if found {
        for i in (0..PHASE).filter(|&i| real >> i & 1 != 0) {
            out[i] = pools[i].take_cell(cells[i]);
            used_e |= 1 << (cells[i] / 8);
            used_x |= 1 << (cells[i] % 8);
        }
    }
    for (i, (pool, w)) in pools.iter_mut().zip(out.iter_mut()).enumerate() {
        if found && real >> i & 1 != 0 {
            continue;
        }
        *w = pool
            .take(used_e, used_x)
            .unwrap_or_else(|| padding_word(used_e, used_x, groups));
        used_e |= 1 << (*w & 7);
        used_x |= 1 << ((*w >> CHUNK_BITS) & 7);
    }
    out
}

/// Swap attempts per step in `polish`.
const POLISH_TRIES_PER_STEP: usize = 24;

/// Local search over one phase's steps (`grid[step][lane]`), after `order_step` has filled them: the search leaves the
/// conflicts at the tail, where the lists run out of choices. Swapping two words of one lane between a conflicting
/// step and another step, when that does not add conflicts, spreads them out until most vanish. Padding words
/// (groups `groups..groups + 8`) take free slots at the end.
fn polish(grid: &mut [[u32; PHASE]], groups: u32, rng: &mut u64) {
    let steps = grid.len();
    let pad = |w: u32| w >> CHUNK_BITS >= groups;
    let e_of = |w: u32| (w & 7) as usize;
    let x_of = |w: u32| ((w >> CHUNK_BITS) & 7) as usize;
    // Per step, the real words on each entry slot and activation slot.
    let mut ce = vec![[0u8; 8]; steps];
    let mut cx = vec![[0u8; 8]; steps];
    for (s, step) in grid.iter().enumerate() {
        for &w in step.iter().filter(|&&w| !pad(w)) {
            ce[s][e_of(w)] += 1;
            cx[s][x_of(w)] += 1;
        }
    }
    let extra = |c: &[u8; 8]| c.iter().max().unwrap().saturating_sub(1) as u32;
    let cost = |ce: &[[u8; 8]], cx: &[[u8; 8]], s: usize| extra(&ce[s]) + extra(&cx[s]);
    let mut conflicted: Vec<usize> = (0..steps).filter(|&s| cost(&ce, &cx, s) > 0).collect();
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let move_word = |ce: &mut [[u8; 8]], cx: &mut [[u8; 8]], w: u32, from: usize, to: usize| {
        if !pad(w) {
            ce[from][e_of(w)] -= 1;
            cx[from][x_of(w)] -= 1;
            ce[to][e_of(w)] += 1;
            cx[to][x_of(w)] += 1;
        }
    };
    for _ in 0..POLISH_TRIES_PER_STEP * steps {
        if conflicted.is_empty() {
            break;
        }
        let r = next();
        let k = (r % conflicted.len() as u64) as usize;
        let s1 = conflicted[k];
        if cost(&ce, &cx, s1) == 0 {
            conflicted.swap_remove(k);
            continue;
        }
        let lane = ((r >> 32) % PHASE as u64) as usize;
        let s2 = ((r >> 40) % steps as u64) as usize;
        let (w1, w2) = (grid[s1][lane], grid[s2][lane]);
        if s2 == s1 || pad(w1) || (ce[s1][e_of(w1)] < 2 && cx[s1][x_of(w1)] < 2) {
            continue;
        }
        let before = cost(&ce, &cx, s1) + cost(&ce, &cx, s2);
        move_word(&mut ce, &mut cx, w1, s1, s2);
        move_word(&mut ce, &mut cx, w2, s2, s1);
        let after2 = cost(&ce, &cx, s2);
        if cost(&ce, &cx, s1) + after2 <= before {
            grid[s1][lane] = w2;
            grid[s2][lane] = w1;
            if after2 > 0 {
                conflicted.push(s2);
            }
        } else {
            move_word(&mut ce, &mut cx, w1, s2, s1);
            move_word(&mut ce, &mut cx, w2, s1, s2);
        }
    }
    // Padding on free slots.
    for step in grid.iter_mut() {
        let (mut used_e, mut used_x) = (0u32, 0u32);
        for &w in step.iter().filter(|&&w| !pad(w)) {
            used_e |= 1 << e_of(w);
            used_x |= 1 << x_of(w);
        }
        for w in step.iter_mut().filter(|w| pad(**w)) {
            *w = padding_word(used_e, used_x, groups);
            used_e |= 1 << e_of(*w);
            used_x |= 1 << x_of(*w);
        }
    }
}

/// A padding word on the lowest entry slot and zero-activation slot (groups `groups..groups + 8`) not in `used_e` /
/// `used_x`; a phase step always has one of each free for each lane left without a word.
fn padding_word(used_e: u32, used_x: u32, groups: u32) -> u32 {
    let e = (!used_e).trailing_zeros() & 7;
    let xslot = (!used_x).trailing_zeros() & 7;
    e | (groups + (xslot + 8 - groups % 8) % 8) << CHUNK_BITS
}

/// Search nodes per step before `order_step` settles for the greedy choice (the search almost always succeeds in a
/// few dozen while the lists are long).
const SEARCH_NODES: u32 = 256;

/// Cells (bit e·8 + x) whose entry slot is not in `used_e`, and cells whose activation slot is not in `used_x`.
fn free_slot_cells(used_e: u32, used_x: u32) -> (u64, u64) {
    let free_e = (0..8)
        .filter(|e| used_e >> e & 1 == 0)
        .fold(0u64, |m, e| m | 0xff << (8 * e));
    (free_e, (!used_x as u64 & 0xff) * 0x0101_0101_0101_0101)
}

/// Depth-first search for one cell per lane of `lanes` (a bit mask), all with distinct entry and activation slots and
/// none in `used_e` / `used_x`: the lane with the fewest choices first, its cells by the words left on their slots.
fn conflict_free(
    pools: &[CellPool],
    lanes: u8,
    used_e: u32,
    used_x: u32,
    cells: &mut [usize; PHASE],
    budget: &mut u32,
) -> bool {
    if lanes == 0 {
        return true;
    }
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let (free_e, free_x) = free_slot_cells(used_e, used_x);
    let free = free_e & free_x;
    let (mut lane, mut fewest) = (PHASE, u32::MAX);
    for i in (0..PHASE).filter(|&i| lanes >> i & 1 != 0) {
        let n = (pools[i].filled & free).count_ones();
        if n == 0 {
            return false;
        }
        if n < fewest {
            (lane, fewest) = (i, n);
        }
    }
    let pool = &pools[lane];
    let mut options = [(0usize, 0usize); 64];
    let mut n = 0;
    let mut bits = pool.filled & free;
    while bits != 0 {
        let c = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        options[n] = (pool.left_e[c / 8] + pool.left_x[c % 8], c);
        n += 1;
    }
    options[..n].sort_unstable_by(|a, b| b.cmp(a));
    for &(_, c) in &options[..n] {
        cells[lane] = c;
        if conflict_free(
            pools,
            lanes & !(1 << lane),
            used_e | 1 << (c / 8),
            used_x | 1 << (c % 8),
            cells,
            budget,
        ) {
            return true;
        }
    }
    false
}

/// One row's list grouped by (entry slot, activation slot) cell, the 8 x 8 pairs of `word mod 8` and `group mod 8`,
/// for the greedy bank-conflict-free ordering.
struct CellPool {
    /// The words, grouped by cell; a cell's words are taken from the back of its range.
    by_cell: Vec<u32>,
    end: [usize; 64],
    count: [usize; 64],
    /// Bit e·8 + x: cell (e, x) has words left.
    filled: u64,
    left_e: [usize; 8],
    left_x: [usize; 8],
}

impl Default for CellPool {
    fn default() -> Self {
        Self {
            by_cell: Vec::new(),
            end: [0; 64],
            count: [0; 64],
            filled: 0,
            left_e: [0; 8],
            left_x: [0; 8],
        }
    }
}

fn cell_of(w: u32) -> usize {
    (w & 7) as usize * 8 + ((w >> CHUNK_BITS) & 7) as usize
}

impl CellPool {
    fn fill(&mut self, list: &[u32]) {
        self.count = [0; 64];
        self.left_e = [0; 8];
        self.left_x = [0; 8];
        for &w in list {
            let c = cell_of(w);
            self.count[c] += 1;
            self.left_e[c / 8] += 1;
            self.left_x[c % 8] += 1;
        }
        let mut at = 0;
        for c in 0..64 {
            at += self.count[c];
            self.end[c] = at;
        }
        let mut next = self.end;
        self.by_cell.clear();
        self.by_cell.resize(list.len(), 0);
        for &w in list.iter().rev() {
            let c = cell_of(w);
            next[c] -= 1;
            self.by_cell[next[c]] = w;
        }
        self.filled = (0..64)
            .filter(|&c| self.count[c] > 0)
            .fold(0, |m, c| m | 1 << c);
    }

    /// Takes the word for a lane whose phase already uses entry slots `used_e` and activation slots `used_x` (bit
    /// masks): a cell whose two slots are free, else one, else none; then the most words left on its slots (so that
    /// no slot runs out early and leaves conflicts for the tail); the last such cell on ties. `None` when empty.
    fn take(&mut self, used_e: u32, used_x: u32) -> Option<u32> {
        if self.filled == 0 {
            return None;
        }
        let (free_e, free_x) = free_slot_cells(used_e, used_x);
        let free = |c: usize| (free_e >> c & 1) + (free_x >> c & 1);
        let candidates = match self.filled & free_e & free_x {
            0 => self.filled,
            both => both,
        };
        let (mut cell, mut best) = (64, (0, 0));
        let mut bits = candidates;
        while bits != 0 {
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let score = (free(c), self.left_e[c / 8] + self.left_x[c % 8]);
            if cell == 64 || score >= best {
                (cell, best) = (c, score);
            }
        }
        Some(self.take_cell(cell))
    }

    /// Takes a word of `cell` (which has words left).
    fn take_cell(&mut self, cell: usize) -> u32 {
        self.end[cell] -= 1;
        let w = self.by_cell[self.end[cell]];
        self.count[cell] -= 1;
        if self.count[cell] == 0 {
            self.filled &= !(1 << cell);
        }
        self.left_e[cell / 8] -= 1;
        self.left_x[cell % 8] -= 1;
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vqllm_vq::synthetic::random_weight;

    /// Every (chunk, tile, lane, step) word of `s`, with its row (`None`: a lane without a row).
    fn each_word(s: &SortedWeight, mut f: impl FnMut(usize, usize, Option<usize>, usize, u32)) {
        for ch in 0..s.chunks {
            for t in 0..s.tiles {
                let (a, b) = s.tile_quads(ch, t);
                for lane in 0..TILE_ROWS {
                    let row = s.tile_row(ch, t, lane);
                    for st in 0..4 * (b - a) {
                        f(ch, t, row, st, s.word(a, st, lane));
                    }
                }
            }
        }
    }

    #[test]
    fn every_vector_appears_once_in_its_chunk_and_row_and_the_rest_is_padding() {
        let c: VqConfig = "aqlm-1x16".parse().unwrap();
        // 37 rows: a second, partial tile.
        let q = random_weight(&c, 37, 8 * 300, 5).unwrap();
        let s = pack_sorted(&q).unwrap();
        let n = chunks(&c) as usize;
        assert_eq!(s.tiles, 2);
        assert_eq!(s.aux.len(), n * 3 + n * 2 * 32);
        let groups = q.groups();
        let mut seen = vec![false; q.rows * groups];
        let mut rows_seen = vec![0usize; q.rows];
        each_word(&s, |ch, _, row, st, w| {
            let g = (w >> CHUNK_BITS) as usize;
            match row {
                Some(r) if g < groups => {
                    if st == 0 {
                        rows_seen[r] += 1;
                    }
                    let code = (ch as u32) << CHUNK_BITS | (w & ((1 << CHUNK_BITS) - 1));
                    assert_eq!(code, q.code(r, g, 0) as u32, "row {r} group {g}");
                    assert!(!std::mem::replace(&mut seen[r * groups + g], true));
                }
                _ => assert!((groups..groups + 8).contains(&g), "padding group {g}"),
            }
        });
        assert!(seen.iter().all(|&v| v));
        // Tiles are contiguous, chunk after chunk, and every row has one lane per chunk.
        for ch in 0..n {
            assert_eq!(s.tile_quads(ch, 0).1, s.tile_quads(ch, 1).0);
            if ch + 1 < n {
                assert_eq!(s.tile_quads(ch, 1).1, s.tile_quads(ch + 1, 0).0);
            }
            let mut rows: Vec<usize> = (0..2)
                .flat_map(|t| (0..32).map(move |l| (t, l)))
                .filter_map(|(t, l)| s.tile_row(ch, t, l))
                .collect();
            rows.sort();
            assert_eq!(rows, (0..q.rows).collect::<Vec<_>>());
        }
        assert_eq!(s.words.len(), 128 * s.tile_quads(n - 1, 1).1);
    }

    /// Extra shared-memory wavefronts per phase of 8 lanes and step, entry and activation loads together
    /// (0 = conflict-free).
    fn extra_wavefronts(s: &SortedWeight) -> f64 {
        let (mut phases, mut extra) = (0usize, 0usize);
        for ch in 0..s.chunks {
            for t in 0..s.tiles {
                let (a, b) = s.tile_quads(ch, t);
                for st in 0..4 * (b - a) {
                    for ph in 0..TILE_ROWS / PHASE {
                        for key in [|w: u32| w & 7, |w: u32| (w >> CHUNK_BITS) & 7] {
                            let mut count = [0usize; 8];
                            for lane in ph * PHASE..(ph + 1) * PHASE {
                                count[key(s.word(a, st, lane)) as usize] += 1;
                            }
                            extra += count.iter().max().unwrap() - 1;
                        }
                        phases += 1;
                    }
                }
            }
        }
        extra as f64 / phases as f64
    }

    #[test]
    fn ordering_removes_most_bank_conflicts() {
        let c: VqConfig = "aqlm-1x16".parse().unwrap();
        let q = random_weight(&c, 64, 8 * 1024, 9).unwrap();
        let ordered = pack_sorted(&q).unwrap();
        // The same words with each lane's row in group order (padding last).
        let mut natural = ordered.clone();
        for ch in 0..natural.chunks {
            for t in 0..natural.tiles {
                let (a, b) = natural.tile_quads(ch, t);
                for lane in 0..TILE_ROWS {
                    let mut lane_words: Vec<u32> = (0..4 * (b - a))
                        .map(|st| natural.word(a, st, lane))
                        .collect();
                    lane_words.sort_by_key(|&x| x >> CHUNK_BITS);
                    for (st, w) in lane_words.into_iter().enumerate() {
                        natural.words[128 * (a + st / 4) + 4 * lane + st % 4] = w;
                    }
                }
            }
        }
        let (o, g) = (extra_wavefronts(&ordered), extra_wavefronts(&natural));
        // Group order is about as bad as random (~3 extra wavefronts per phase); the search and polish leave ~0.2
        // (lane-by-lane greedy: ~0.75).
        assert!(g > 2.0 && o < 0.3, "ordered {o:.3}, group order {g:.3}");
    }

    #[test]
    fn tiles_of_similar_rows_need_little_padding() {
        let c: VqConfig = "aqlm-1x16".parse().unwrap();
        let q = random_weight(&c, 512, 8 * 1024, 3).unwrap();
        let s = pack_sorted(&q).unwrap();
        let vectors = q.rows * q.groups();
        // Rows sorted by list length: padding is the rounding to quads plus the spread inside a tile.
        assert!(
            s.words.len() < vectors * 108 / 100,
            "{} words for {vectors} vectors",
            s.words.len()
        );
    }

    #[test]
    fn rejects_what_it_does_not_run() {
        let small: VqConfig = "aqlm-2x8".parse().unwrap();
        assert!(unsupported_reason(&small, 1, 4096).is_some());
        let big: VqConfig = "aqlm-1x16".parse().unwrap();
        assert!(unsupported_reason(&big, 1, 4096).is_none());
        assert!(unsupported_reason(&big, 2, 4096).is_some());
        assert!(unsupported_reason(&big, 1, 8 << 19).is_some());
        let q = random_weight(&small, 8, 64, 1).unwrap();
        assert!(pack_sorted(&q).is_err());
    }
}
