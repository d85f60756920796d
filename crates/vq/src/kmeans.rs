//! Weighted k-means (k-means++ seeding, Lloyd iterations) and a fast exact nearest-centroid search.
//!
//! Used by every learned quantizer: residual k-means (AQLM), per-tile codebooks (GPTVQ) and KV codebooks
//! (CQ). The distance is `Σ_j w_j (x_j - c_j)²`, where the coordinate weights `w` are either absent (plain
//! squared error), the same for every point (`dim` values) or given per point (`n * dim` values, e.g. the
//! Hessian diagonal of the input columns a weight vector spans). Point weights (e.g. Fisher information)
//! scale each point's contribution to the objective.
//!
//! Search uses `score(c) = ‖c‖²_w - 2 x·(w ⊙ c)` with precomputed norms over centroids stored in blocks
//! of [`LANES`] (transposed), so the inner loop is a plain multiply-add over lanes that the compiler
//! vectorises. Scores are summed in a fixed order and compared with a strict `<`, so ties go to the lowest
//! index and [`nearest`] and [`assign_all`] agree exactly with each other on every machine.

use crate::error::{check_finite, Result, VqError};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Centroids per block of the transposed search layout (one AVX2 register of f32).
pub const LANES: usize = 8;

/// Queries per parallel work item in batched searches.
const CHUNK: usize = 64;

/// Options of [`kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansOptions {
    /// Number of centroids (at least 1). May exceed the number of (distinct) points: the spare centroids
    /// repeat existing ones and are never the nearest (ties go to the lowest index).
    pub k: usize,
    /// Maximum Lloyd iterations (0 = k-means++ seeding only). Stops early once assignments are stable.
    pub iters: usize,
    /// Seed of the ChaCha8 generator used for subsampling and seeding.
    pub seed: u64,
    /// Train on a uniform random subsample of at most this many points, then assign all points.
    pub max_samples: Option<usize>,
    /// Show an indicatif progress bar over the iterations.
    pub progress: bool,
}

impl Default for KMeansOptions {
    fn default() -> Self {
        Self { k: 256, iters: 10, seed: 0, max_samples: None, progress: false }
    }
}

/// Result of [`kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    /// `[k, dim]` row-major.
    pub centroids: Vec<f32>,
    /// Nearest centroid of every input point (all points, not only the training subsample).
    pub assignments: Vec<u32>,
}

/// How coordinates are weighted in the distance.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CoordWeights<'a> {
    /// Plain squared Euclidean distance.
    None,
    /// One weight per coordinate, shared by all points (`dim` values).
    Shared(&'a [f32]),
    /// One weight per point and coordinate (`n * dim` values).
    PerPoint(&'a [f32]),
}

impl<'a> CoordWeights<'a> {
    /// Interprets an optional user slice for `n` points of `dim` coordinates.
    pub(crate) fn parse(w: Option<&'a [f32]>, n: usize, dim: usize) -> Result<Self> {
        let Some(w) = w else { return Ok(Self::None) };
        check_finite("coordinate weights", w)?;
        if let Some(i) = w.iter().position(|&x| x < 0.0) {
            return Err(VqError::InvalidConfig(format!("coordinate weight {} at {i} is negative", w[i])));
        }
        if w.len() == dim {
            Ok(Self::Shared(w))
        } else if w.len() == n * dim {
            Ok(Self::PerPoint(w))
        } else {
            Err(VqError::Shape(format!(
                "coordinate weights have {} values, expected {dim} (shared) or {} (per point)",
                w.len(),
                n * dim
            )))
        }
    }

    /// Weights of point `i` (None for unweighted).
    #[inline]
    pub(crate) fn of(&self, i: usize, dim: usize) -> Option<&'a [f32]> {
        match *self {
            Self::None => None,
            Self::Shared(w) => Some(w),
            Self::PerPoint(w) => Some(&w[i * dim..(i + 1) * dim]),
        }
    }

    /// The same weighting restricted to points `idx` (gathers per-point weights).
    fn gather(&self, idx: &[usize], dim: usize) -> OwnedCoordWeights {
        match *self {
            Self::None => OwnedCoordWeights::None,
            Self::Shared(w) => OwnedCoordWeights::Shared(w.to_vec()),
            Self::PerPoint(w) => OwnedCoordWeights::PerPoint(
                idx.iter().flat_map(|&i| w[i * dim..(i + 1) * dim].iter().copied()).collect(),
            ),
        }
    }
}

enum OwnedCoordWeights {
    None,
    Shared(Vec<f32>),
    PerPoint(Vec<f32>),
}

impl OwnedCoordWeights {
    fn view(&self) -> CoordWeights<'_> {
        match self {
            Self::None => CoordWeights::None,
            Self::Shared(w) => CoordWeights::Shared(w),
            Self::PerPoint(w) => CoordWeights::PerPoint(w),
        }
    }
}

/// Weighted squared distance `Σ_j w_j (x_j - c_j)²`, summed in coordinate order.
#[inline]
pub(crate) fn weighted_sq_dist(x: &[f32], c: &[f32], w: Option<&[f32]>) -> f32 {
    let mut s = 0.0f32;
    match w {
        None => {
            for (a, b) in x.iter().zip(c) {
                let d = a - b;
                s += d * d;
            }
        }
        Some(w) => {
            for ((a, b), ww) in x.iter().zip(c).zip(w) {
                let d = a - b;
                s += ww * d * d;
            }
        }
    }
    s
}

/// Squared norm of every centroid, `[k]`, as used by [`nearest`].
pub fn centroid_norms(centroids: &[f32], dim: usize) -> Vec<f32> {
    centroids.chunks_exact(dim.max(1)).map(|c| c.iter().map(|x| x * x).sum()).collect()
}

/// Index of the centroid nearest to `x` (squared Euclidean), ties to the lowest index.
///
/// `norms` must come from [`centroid_norms`]. The score `norms[c] + Σ_j (-2 x_j) c_j` is evaluated in
/// the same order as [`assign_all`], so both give identical answers.
pub fn nearest(centroids: &[f32], norms: &[f32], dim: usize, x: &[f32]) -> u32 {
    let mut best = f32::INFINITY;
    let mut best_i = 0u32;
    for (i, (c, &n)) in centroids.chunks_exact(dim).zip(norms).enumerate() {
        let mut s = n;
        for (a, b) in x.iter().zip(c) {
            s += (-2.0 * a) * b;
        }
        if s < best {
            best = s;
            best_i = i as u32;
        }
    }
    best_i
}

/// Nearest centroid of every point of `data` (`[n, dim]`), in parallel; `coord_weights` as in [`kmeans`].
pub fn assign_all(centroids: &[f32], dim: usize, data: &[f32], coord_weights: Option<&[f32]>) -> Result<Vec<u32>> {
    if dim == 0 || data.len() % dim != 0 || centroids.len() % dim != 0 || centroids.is_empty() {
        return Err(VqError::Shape(format!(
            "assign_all: {} data values and {} centroid values do not split into vectors of {dim}",
            data.len(),
            centroids.len()
        )));
    }
    let n = data.len() / dim;
    let w = CoordWeights::parse(coord_weights, n, dim)?;
    let index = CentroidIndex::new(centroids, dim, w);
    let mut out = vec![0u32; n];
    index.assign(data, w, &mut out, None);
    Ok(out)
}

/// Centroids in a transposed, lane-blocked layout for fast exact nearest-centroid search.
///
/// For a point `x` with coordinate weights `w` the search minimises `norm[c] + q(x)·key[c]`, which equals
/// `Σ w (x - c)² - Σ w x²`:
/// - shared/no weights: `key = w ⊙ c`, `norm = Σ w c²`, `q = -2x` (query dimension `dim`);
/// - per-point weights: `key = [c², c]`, `norm = 0`, `q = [w, -2 w ⊙ x]` (query dimension `2 dim`).
pub(crate) struct CentroidIndex {
    dim: usize,
    qdim: usize,
    k: usize,
    per_point: bool,
    /// `[blocks, qdim, LANES]`.
    keys: Vec<f32>,
    /// `[blocks * LANES]`, padding lanes are +inf.
    norms: Vec<f32>,
}

impl CentroidIndex {
    pub(crate) fn new(centroids: &[f32], dim: usize, weights: CoordWeights<'_>) -> Self {
        let k = centroids.len() / dim;
        let per_point = matches!(weights, CoordWeights::PerPoint(_));
        let qdim = if per_point { 2 * dim } else { dim };
        let blocks = k.div_ceil(LANES);
        let mut keys = vec![0.0f32; blocks * qdim * LANES];
        let mut norms = vec![f32::INFINITY; blocks * LANES];
        for (i, c) in centroids.chunks_exact(dim).enumerate() {
            let (b, l) = (i / LANES, i % LANES);
            let base = b * qdim * LANES + l;
            match weights {
                CoordWeights::PerPoint(_) => {
                    for j in 0..dim {
                        keys[base + j * LANES] = c[j] * c[j];
                        keys[base + (dim + j) * LANES] = c[j];
                    }
                    norms[i] = 0.0;
                }
                CoordWeights::Shared(w) => {
                    let mut n = 0.0f32;
                    for j in 0..dim {
                        keys[base + j * LANES] = w[j] * c[j];
                        n += w[j] * c[j] * c[j];
                    }
                    norms[i] = n;
                }
                CoordWeights::None => {
                    let mut n = 0.0f32;
                    for j in 0..dim {
                        keys[base + j * LANES] = c[j];
                        n += c[j] * c[j];
                    }
                    norms[i] = n;
                }
            }
        }
        Self { dim, qdim, k, per_point, keys, norms }
    }

    /// Writes the query of point `x` (with its weights) into `q` (`qdim` values).
    #[inline]
    pub(crate) fn query(&self, x: &[f32], w: Option<&[f32]>, q: &mut [f32]) {
        if self.per_point {
            let w = w.expect("per-point index needs weights");
            for j in 0..self.dim {
                q[j] = w[j];
                q[self.dim + j] = -2.0 * w[j] * x[j];
            }
        } else {
            for j in 0..self.dim {
                q[j] = -2.0 * x[j];
            }
        }
    }

    /// Scores of all centroids for query `q` into `out` (`k` values); `out[c] + Σ w x²` is the distance.
    pub(crate) fn scores(&self, q: &[f32], out: &mut [f32]) {
        let qd = self.qdim;
        for (b, (kb, nb)) in self.keys.chunks_exact(qd * LANES).zip(self.norms.chunks_exact(LANES)).enumerate() {
            let mut acc = [0.0f32; LANES];
            acc.copy_from_slice(nb);
            for j in 0..qd {
                let qj = q[j];
                for l in 0..LANES {
                    acc[l] += qj * kb[j * LANES + l];
                }
            }
            let start = b * LANES;
            let end = (start + LANES).min(self.k);
            out[start..end].copy_from_slice(&acc[..end - start]);
        }
    }

    /// Nearest centroid (and its score) for each query of `queries` (`[m, qdim]`).
    pub(crate) fn argmin_many(&self, queries: &[f32], out: &mut [(u32, f32)]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { argmin_many_avx2(self, queries, out) };
                return;
            }
        }
        argmin_many_impl(self, queries, out);
    }

    /// Nearest centroid of every point of `data`, in parallel. When `scores_out` is given it receives the
    /// best score of each point.
    pub(crate) fn assign(&self, data: &[f32], w: CoordWeights<'_>, out: &mut [u32], scores_out: Option<&mut [f32]>) {
        let dim = self.dim;
        let qdim = self.qdim;
        let work = |(ci, (xs, outs)): (usize, (&[f32], &mut [u32])), sc: Option<&mut [f32]>| {
            let m = outs.len();
            let mut q = vec![0.0f32; m * qdim];
            for p in 0..m {
                let i = ci * CHUNK + p;
                self.query(&xs[p * dim..(p + 1) * dim], w.of(i, dim), &mut q[p * qdim..(p + 1) * qdim]);
            }
            let mut res = vec![(0u32, 0.0f32); m];
            self.argmin_many(&q, &mut res);
            for (o, r) in outs.iter_mut().zip(&res) {
                *o = r.0;
            }
            if let Some(sc) = sc {
                for (s, r) in sc.iter_mut().zip(&res) {
                    *s = r.1;
                }
            }
        };
        match scores_out {
            Some(sc) => data
                .par_chunks(CHUNK * dim)
                .zip(out.par_chunks_mut(CHUNK))
                .zip(sc.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(ci, ((xs, outs), s))| work((ci, (xs, outs)), Some(s))),
            None => data
                .par_chunks(CHUNK * dim)
                .zip(out.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(ci, (xs, outs))| work((ci, (xs, outs)), None)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn argmin_many_avx2(index: &CentroidIndex, queries: &[f32], out: &mut [(u32, f32)]) {
    argmin_many_impl(index, queries, out)
}

#[inline(always)]
fn argmin_many_impl(index: &CentroidIndex, queries: &[f32], out: &mut [(u32, f32)]) {
    match index.qdim {
        1 => argmin_const::<1>(index, queries, out),
        2 => argmin_const::<2>(index, queries, out),
        4 => argmin_const::<4>(index, queries, out),
        8 => argmin_const::<8>(index, queries, out),
        16 => argmin_const::<16>(index, queries, out),
        32 => argmin_const::<32>(index, queries, out),
        _ => argmin_dyn(index, queries, out),
    }
}

/// Queries handled together against each centroid block (register blocking).
const QB: usize = 4;

#[inline(always)]
fn argmin_const<const D: usize>(index: &CentroidIndex, queries: &[f32], out: &mut [(u32, f32)]) {
    let mut qi = 0;
    let m = out.len();
    while qi < m {
        let nq = (m - qi).min(QB);
        let mut qs = [[0.0f32; D]; QB];
        for (t, qrow) in qs.iter_mut().enumerate().take(nq) {
            qrow.copy_from_slice(&queries[(qi + t) * D..(qi + t + 1) * D]);
        }
        let mut bestv = [[f32::INFINITY; LANES]; QB];
        let mut besti = [[0u32; LANES]; QB];
        for (b, (kb, nb)) in index.keys.chunks_exact(D * LANES).zip(index.norms.chunks_exact(LANES)).enumerate() {
            let kb = &kb[..D * LANES];
            for t in 0..QB {
                let mut acc = [0.0f32; LANES];
                acc.copy_from_slice(nb);
                for j in 0..D {
                    let qj = qs[t][j];
                    for l in 0..LANES {
                        acc[l] += qj * kb[j * LANES + l];
                    }
                }
                let base = (b * LANES) as u32;
                for l in 0..LANES {
                    let better = acc[l] < bestv[t][l];
                    bestv[t][l] = if better { acc[l] } else { bestv[t][l] };
                    besti[t][l] = if better { base + l as u32 } else { besti[t][l] };
                }
            }
        }
        for t in 0..nq {
            out[qi + t] = reduce_lanes(&bestv[t], &besti[t]);
        }
        qi += nq;
    }
}

fn argmin_dyn(index: &CentroidIndex, queries: &[f32], out: &mut [(u32, f32)]) {
    let qd = index.qdim;
    for (q, o) in queries.chunks_exact(qd).zip(out.iter_mut()) {
        let mut bestv = [f32::INFINITY; LANES];
        let mut besti = [0u32; LANES];
        for (b, (kb, nb)) in index.keys.chunks_exact(qd * LANES).zip(index.norms.chunks_exact(LANES)).enumerate() {
            let mut acc = [0.0f32; LANES];
            acc.copy_from_slice(nb);
            for (j, &qj) in q.iter().enumerate() {
                for l in 0..LANES {
                    acc[l] += qj * kb[j * LANES + l];
                }
            }
            for l in 0..LANES {
                if acc[l] < bestv[l] {
                    bestv[l] = acc[l];
                    besti[l] = (b * LANES + l) as u32;
                }
            }
        }
        *o = reduce_lanes(&bestv, &besti);
    }
}

/// Minimum over lanes, ties to the lowest centroid index.
#[inline(always)]
fn reduce_lanes(v: &[f32; LANES], i: &[u32; LANES]) -> (u32, f32) {
    let mut bv = v[0];
    let mut bi = i[0];
    for l in 1..LANES {
        if v[l] < bv || (v[l] == bv && i[l] < bi) {
            bv = v[l];
            bi = i[l];
        }
    }
    (bi, bv)
}

/// Mixes a seed with a stream id (splitmix64), so sub-problems get independent, reproducible seeds.
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Weighted k-means of `data` (`[n, dim]` row-major).
///
/// - `point_weights`: `n` non-negative values (uniform when `None` or when they are all zero).
/// - `coord_weights`: `dim` values (shared) or `n * dim` values (per point), non-negative.
///
/// k-means++ seeding (D² sampling, drawn in geometrically growing batches so large `k` stays fast), then
/// Lloyd iterations on a random subsample of at most `max_samples` points; empty clusters are re-seeded with
/// the points that currently cost the most. Finally every point is assigned. Deterministic for a seed.
pub fn kmeans(
    data: &[f32],
    dim: usize,
    point_weights: Option<&[f32]>,
    coord_weights: Option<&[f32]>,
    opts: &KMeansOptions,
) -> Result<KMeans> {
    kmeans_impl(data, dim, point_weights, coord_weights, opts, false)
}

/// Rounds every value to the nearest fp16 (what kernels store); values beyond fp16 range become infinite.
pub fn round_to_f16(values: &mut [f32]) {
    for x in values {
        *x = half::f16::from_f32(*x).to_f32();
    }
}

/// [`kmeans`], optionally rounding the final centroids to fp16 before the final assignment, so that the
/// assignments are exact for the stored codebook.
pub(crate) fn kmeans_impl(
    data: &[f32],
    dim: usize,
    point_weights: Option<&[f32]>,
    coord_weights: Option<&[f32]>,
    opts: &KMeansOptions,
    fp16: bool,
) -> Result<KMeans> {
    if dim == 0 || data.is_empty() || data.len() % dim != 0 {
        return Err(VqError::Shape(format!("k-means: {} values do not split into vectors of {dim}", data.len())));
    }
    if opts.k == 0 {
        return Err(VqError::InvalidConfig("k-means needs k >= 1".into()));
    }
    check_finite("k-means data", data)?;
    let n = data.len() / dim;
    let cw = CoordWeights::parse(coord_weights, n, dim)?;
    if let Some(p) = point_weights {
        if p.len() != n {
            return Err(VqError::Shape(format!("{} point weights for {n} points", p.len())));
        }
        check_finite("point weights", p)?;
        if let Some(i) = p.iter().position(|&x| x < 0.0) {
            return Err(VqError::InvalidConfig(format!("point weight {} at {i} is negative", p[i])));
        }
    }
    let point_weights = point_weights.filter(|p| p.iter().any(|&x| x > 0.0));

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Training subsample.
    let train_idx: Option<Vec<usize>> = match opts.max_samples {
        Some(m) if m < n => {
            let mut idx = rand::seq::index::sample(&mut rng, n, m.max(1)).into_vec();
            idx.sort_unstable();
            Some(idx)
        }
        _ => None,
    };
    let (train, tw, tcw_owned);
    match &train_idx {
        Some(idx) => {
            train = idx.iter().flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied()).collect::<Vec<_>>();
            tw = point_weights.map(|p| idx.iter().map(|&i| p[i]).collect::<Vec<_>>());
            tcw_owned = cw.gather(idx, dim);
        }
        None => {
            train = data.to_vec();
            tw = point_weights.map(|p| p.to_vec());
            tcw_owned = match cw {
                CoordWeights::None => OwnedCoordWeights::None,
                CoordWeights::Shared(w) => OwnedCoordWeights::Shared(w.to_vec()),
                // Avoid copying per-point weights: handled through `cw` below.
                CoordWeights::PerPoint(_) => OwnedCoordWeights::None,
            };
        }
    }
    let tcw = match (&train_idx, cw) {
        (None, CoordWeights::PerPoint(w)) => CoordWeights::PerPoint(w),
        _ => tcw_owned.view(),
    };
    let tw = tw.as_deref();
    let nt = train.len() / dim;

    let bar = if opts.progress {
        let pb = ProgressBar::new(opts.iters as u64 + 1);
        if let Ok(style) = ProgressStyle::with_template("k-means k={msg} [{bar:30}] {pos}/{len} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(opts.k.to_string());
        Some(pb)
    } else {
        None
    };

    let mut centroids = kmeans_pp(&train, dim, tw, tcw, opts.k, &mut rng);
    if let Some(pb) = &bar {
        pb.inc(1);
    }
    let mut assign = vec![u32::MAX; nt];
    let mut scores = vec![0.0f32; nt];
    let mut next = vec![0u32; nt];
    for _ in 0..opts.iters {
        let index = CentroidIndex::new(&centroids, dim, tcw);
        index.assign(&train, tcw, &mut next, Some(&mut scores));
        let changed = next != assign;
        std::mem::swap(&mut assign, &mut next);
        if let Some(pb) = &bar {
            pb.inc(1);
        }
        if !changed {
            break;
        }
        update_centroids(&train, dim, tw, tcw, &assign, &mut centroids);
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if fp16 {
        round_to_f16(&mut centroids);
    }
    // Centroids moved after the last assignment (and the subsample left points out): assign everything.
    let index = CentroidIndex::new(&centroids, dim, cw);
    let mut assignments = vec![0u32; n];
    index.assign(data, cw, &mut assignments, None);
    Ok(KMeans { centroids, assignments })
}

/// k-means++ seeding with D² sampling. Centers are drawn in batches of about 1/8 of those chosen so far
/// (at least one), with the distances refreshed after each batch; when every point already coincides with
/// a center, the remaining centers repeat the chosen ones.
fn kmeans_pp(
    data: &[f32],
    dim: usize,
    pw: Option<&[f32]>,
    cw: CoordWeights<'_>,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let n = data.len() / dim;
    let weight = |i: usize| pw.map_or(1.0f64, |p| p[i] as f64);
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut taken = vec![false; n];
    // First center: drawn by point weight.
    let first = sample_cumulative(&(0..n).map(weight).collect::<Vec<_>>(), rng).unwrap_or(0);
    chosen.push(first);
    taken[first] = true;
    let x0 = &data[first * dim..(first + 1) * dim];
    let mut dist: Vec<f32> = data
        .par_chunks(dim)
        .enumerate()
        .map(|(i, x)| weighted_sq_dist(x, x0, cw.of(i, dim)))
        .collect();
    let mut mass = vec![0.0f64; n];
    while chosen.len() < k {
        for (i, m) in mass.iter_mut().enumerate() {
            *m = weight(i) * dist[i] as f64;
        }
        let batch = (chosen.len() / 8).clamp(1, k - chosen.len());
        let cum = cumulative(&mass);
        let total = *cum.last().unwrap_or(&0.0);
        if total <= 0.0 {
            break;
        }
        let mut new = Vec::with_capacity(batch);
        if total.is_finite() {
            for _ in 0..batch {
                let u = rng.random::<f64>() * total;
                let i = cum.partition_point(|&c| c <= u).min(n - 1);
                if !taken[i] && mass[i] > 0.0 {
                    taken[i] = true;
                    new.push(i);
                }
            }
        }
        if new.is_empty() {
            // Overflowed distances (or an unlucky batch): take the costliest untaken point instead, so
            // the seeding always makes progress.
            let far = (0..n).filter(|&i| !taken[i] && mass[i] > 0.0).max_by(|&a, &b| mass[a].total_cmp(&mass[b]).then(b.cmp(&a)));
            match far {
                Some(i) => {
                    taken[i] = true;
                    new.push(i);
                }
                None => break,
            }
        }
        let centers: Vec<f32> = new.iter().flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied()).collect();
        let index = CentroidIndex::new(&centers, dim, cw);
        let mut near = vec![0u32; n];
        index.assign(data, cw, &mut near, None);
        dist.par_iter_mut().enumerate().for_each(|(i, d)| {
            let c = near[i] as usize;
            let nd = weighted_sq_dist(&data[i * dim..(i + 1) * dim], &centers[c * dim..(c + 1) * dim], cw.of(i, dim));
            if nd < *d {
                *d = nd;
            }
        });
        chosen.extend(new);
    }
    let mut centroids = Vec::with_capacity(k * dim);
    for &i in &chosen {
        centroids.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    let have = chosen.len();
    for t in have..k {
        let src = (t % have) * dim;
        centroids.extend_from_within(src..src + dim);
    }
    centroids
}

fn cumulative(mass: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    mass.iter()
        .map(|&m| {
            acc += m;
            acc
        })
        .collect()
}

/// Draws an index with probability proportional to `mass`; None when all mass is zero.
fn sample_cumulative(mass: &[f64], rng: &mut ChaCha8Rng) -> Option<usize> {
    let cum = cumulative(mass);
    let total = *cum.last()?;
    if total <= 0.0 {
        return None;
    }
    let u = rng.random::<f64>() * total;
    Some(cum.partition_point(|&c| c <= u).min(mass.len() - 1))
}

/// Lloyd update: (weighted) mean of each cluster; clusters with no weight are re-seeded with the points of
/// largest weighted cost (one point each), or keep their centroid when every point costs nothing.
pub(crate) fn update_centroids(
    data: &[f32],
    dim: usize,
    pw: Option<&[f32]>,
    cw: CoordWeights<'_>,
    assign: &[u32],
    centroids: &mut [f32],
) {
    let k = centroids.len() / dim;
    let mut num = vec![0.0f64; k * dim];
    let mut den = vec![0.0f64; k * dim];
    let mut mass = vec![0.0f64; k];
    for (i, (x, &a)) in data.chunks_exact(dim).zip(assign).enumerate() {
        let p = pw.map_or(1.0, |p| p[i] as f64);
        if p == 0.0 {
            continue;
        }
        let a = a as usize;
        mass[a] += p;
        let w = cw.of(i, dim);
        for j in 0..dim {
            let wj = match (cw, w) {
                (CoordWeights::PerPoint(_), Some(w)) => p * w[j] as f64,
                _ => p,
            };
            num[a * dim + j] += wj * x[j] as f64;
            den[a * dim + j] += wj;
        }
    }
    let mut empty = Vec::new();
    for c in 0..k {
        if mass[c] == 0.0 {
            empty.push(c);
            continue;
        }
        for j in 0..dim {
            if den[c * dim + j] > 0.0 {
                centroids[c * dim + j] = (num[c * dim + j] / den[c * dim + j]) as f32;
            }
        }
    }
    if empty.is_empty() {
        return;
    }
    // Cost of each point against its (updated) centroid.
    let mut cost: Vec<(f64, usize)> = data
        .par_chunks(dim)
        .enumerate()
        .map(|(i, x)| {
            let a = assign[i] as usize;
            let p = pw.map_or(1.0, |p| p[i] as f64);
            (p * weighted_sq_dist(x, &centroids[a * dim..(a + 1) * dim], cw.of(i, dim)) as f64, i)
        })
        .collect();
    cost.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (c, &(v, i)) in empty.iter().zip(&cost) {
        if v <= 0.0 {
            break;
        }
        centroids[c * dim..(c + 1) * dim].copy_from_slice(&data[i * dim..(i + 1) * dim]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn random_data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    fn naive_nearest(c: &[f32], dim: usize, x: &[f32], w: Option<&[f32]>) -> u32 {
        let mut best = f32::INFINITY;
        let mut bi = 0;
        for (i, cc) in c.chunks_exact(dim).enumerate() {
            let d = weighted_sq_dist(x, cc, w);
            if d < best {
                best = d;
                bi = i as u32;
            }
        }
        bi
    }

    #[test]
    fn assign_all_matches_naive_and_nearest() {
        for dim in [2, 3, 4, 8, 16] {
            let data = random_data(700, dim, 1);
            let cents = random_data(37, dim, 2);
            let a = assign_all(&cents, dim, &data, None).unwrap();
            let norms = centroid_norms(&cents, dim);
            for (i, x) in data.chunks_exact(dim).enumerate() {
                assert_eq!(a[i], naive_nearest(&cents, dim, x, None), "dim {dim} point {i}");
                assert_eq!(a[i], nearest(&cents, &norms, dim, x));
            }
        }
    }

    #[test]
    fn weighted_assignment_matches_naive() {
        let dim = 4;
        let data = random_data(500, dim, 3);
        let cents = random_data(20, dim, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let shared: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() * 3.0).collect();
        let per: Vec<f32> = (0..500 * dim).map(|_| rng.random::<f32>() * 3.0).collect();
        let a = assign_all(&cents, dim, &data, Some(&shared)).unwrap();
        let b = assign_all(&cents, dim, &data, Some(&per)).unwrap();
        for (i, x) in data.chunks_exact(dim).enumerate() {
            assert_eq!(a[i], naive_nearest(&cents, dim, x, Some(&shared)));
            assert_eq!(b[i], naive_nearest(&cents, dim, x, Some(&per[i * dim..(i + 1) * dim])));
        }
    }

    /// Naive Lloyd from a given init: assign by direct distance, then mean.
    fn naive_lloyd(data: &[f32], dim: usize, init: &[f32], iters: usize) -> (Vec<f32>, Vec<u32>) {
        let mut c = init.to_vec();
        let k = c.len() / dim;
        let mut a = vec![0u32; data.len() / dim];
        for _ in 0..iters {
            for (i, x) in data.chunks_exact(dim).enumerate() {
                a[i] = naive_nearest(&c, dim, x, None);
            }
            let mut sum = vec![0.0f64; k * dim];
            let mut cnt = vec![0usize; k];
            for (i, x) in data.chunks_exact(dim).enumerate() {
                cnt[a[i] as usize] += 1;
                for j in 0..dim {
                    sum[a[i] as usize * dim + j] += x[j] as f64;
                }
            }
            for cc in 0..k {
                if cnt[cc] > 0 {
                    for j in 0..dim {
                        c[cc * dim + j] = (sum[cc * dim + j] / cnt[cc] as f64) as f32;
                    }
                }
            }
        }
        for (i, x) in data.chunks_exact(dim).enumerate() {
            a[i] = naive_nearest(&c, dim, x, None);
        }
        (c, a)
    }

    #[test]
    fn lloyd_matches_naive_from_same_init() {
        let dim = 4;
        let data = random_data(400, dim, 7);
        let k = 9;
        let opts = KMeansOptions { k, iters: 0, seed: 11, max_samples: None, progress: false };
        let init = kmeans(&data, dim, None, None, &opts).unwrap().centroids;
        // Replaying the update with our implementation from the same init must give the naive result.
        let (nc, na) = naive_lloyd(&data, dim, &init, 6);
        let mut c = init.clone();
        let mut a = vec![0u32; 400];
        for _ in 0..6 {
            a = assign_all(&c, dim, &data, None).unwrap();
            update_centroids(&data, dim, None, CoordWeights::None, &a, &mut c);
        }
        a = assign_all(&c, dim, &data, None).unwrap();
        assert_eq!(a, na);
        for (x, y) in c.iter().zip(&nc) {
            assert!((x - y).abs() < 1e-5);
        }
        // And the full k-means run with the same seed is at least as good as the seeding alone.
        let full = kmeans(&data, dim, None, None, &KMeansOptions { iters: 20, ..opts }).unwrap();
        let err = |c: &[f32], a: &[u32]| -> f64 {
            data.chunks_exact(dim)
                .zip(a)
                .map(|(x, &ai)| weighted_sq_dist(x, &c[ai as usize * dim..(ai as usize + 1) * dim], None) as f64)
                .sum()
        };
        let init_a = assign_all(&init, dim, &data, None).unwrap();
        assert!(err(&full.centroids, &full.assignments) < err(&init, &init_a));
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let data = random_data(3000, 8, 9);
        let opts = KMeansOptions { k: 64, iters: 5, seed: 3, max_samples: Some(1000), progress: false };
        let a = kmeans(&data, 8, None, None, &opts).unwrap();
        let b = kmeans(&data, 8, None, None, &opts).unwrap();
        assert_eq!(a, b);
        let c = kmeans(&data, 8, None, None, &KMeansOptions { seed: 4, ..opts }).unwrap();
        assert_ne!(a.centroids, c.centroids);
    }

    #[test]
    fn more_centroids_than_distinct_points() {
        // 5 distinct points repeated: k=16 must not panic, and every point is reconstructed exactly.
        let base = random_data(5, 4, 10);
        let data: Vec<f32> = (0..40).flat_map(|i| base[(i % 5) * 4..(i % 5) * 4 + 4].to_vec()).collect();
        let km = kmeans(&data, 4, None, None, &KMeansOptions { k: 16, iters: 5, ..Default::default() }).unwrap();
        assert_eq!(km.centroids.len(), 64);
        for (i, x) in data.chunks_exact(4).enumerate() {
            let a = km.assignments[i] as usize;
            assert_eq!(&km.centroids[a * 4..a * 4 + 4], x);
        }
        // Fewer points than centroids.
        let few = random_data(3, 2, 12);
        let km = kmeans(&few, 2, None, None, &KMeansOptions { k: 8, iters: 3, ..Default::default() }).unwrap();
        for (i, x) in few.chunks_exact(2).enumerate() {
            let a = km.assignments[i] as usize;
            assert_eq!(&km.centroids[a * 2..a * 2 + 2], x);
        }
    }

    #[test]
    fn point_weights_pull_centroids() {
        // One cluster, two points: the centroid is the weighted mean.
        let data = vec![0.0f32, 0.0, 4.0, 0.0];
        let km = kmeans(&data, 2, Some(&[3.0, 1.0]), None, &KMeansOptions { k: 1, iters: 3, ..Default::default() })
            .unwrap();
        assert!((km.centroids[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn overflowing_distances_terminate() {
        let data = vec![1e30f32, 0.0, -1e30, 0.0, 3e30, 1.0, 0.0, 0.0];
        let km = kmeans(&data, 2, None, None, &KMeansOptions { k: 3, iters: 3, ..Default::default() }).unwrap();
        assert_eq!(km.assignments.len(), 4);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let o = KMeansOptions::default();
        assert!(kmeans(&[1.0, f32::NAN], 2, None, None, &o).is_err());
        assert!(kmeans(&[1.0, 2.0, 3.0], 2, None, None, &o).is_err());
        assert!(kmeans(&[1.0, 2.0], 2, Some(&[1.0, 1.0]), None, &o).is_err());
        assert!(kmeans(&[1.0, 2.0], 2, None, Some(&[1.0]), &o).is_err());
        assert!(kmeans(&[1.0, 2.0], 2, None, None, &KMeansOptions { k: 0, ..o }).is_err());
    }
}
