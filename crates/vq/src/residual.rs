//! Residual (additive) vector quantization: greedy residual k-means plus optional code refinement.
//!
//! A vector is approximated by `Σ_s codebook_s[code_s]` over `stages` codebooks of `k` entries. Greedy
//! fitting trains stage `s` by k-means on the residual left by stages `< s`. Refinement (AQLM style) then
//! never increases the weighted error:
//! - beam search: per vector keep the `beam_width` best partial code tuples stage by stage, and take the
//!   final best tuple only when it beats the current codes;
//! - coordinate descent: re-choose one stage's code given the others (exact nearest of the target);
//! - codebook refit: each stage's entries become the weighted mean of their targets, accepted only if the
//!   total error does not grow (after fp16 rounding when enabled).

use crate::error::{check_finite, Result, VqError};
use crate::kmeans::{
    kmeans_impl, mix_seed, round_to_f16, update_centroids, weighted_sq_dist, CentroidIndex,
    CoordWeights, KMeansOptions,
};
use rayon::prelude::*;

/// Maximum residual stages (as in [`crate::VqConfig`]).
pub const MAX_STAGES: usize = 4;

/// Vectors per parallel work item.
const CHUNK: usize = 256;

/// Options of [`residual_kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualOptions {
    /// Entries per codebook (at most 65536, codes are u16).
    pub k: usize,
    /// Residual stages, 1..=4.
    pub stages: usize,
    /// Lloyd iterations per stage.
    pub iters: usize,
    pub seed: u64,
    /// Train each stage on at most this many vectors (all vectors are encoded).
    pub max_samples: Option<usize>,
    /// Beam width of the code search after greedy fitting (0 = no beam search).
    pub beam_width: usize,
    /// Passes of (codebook refit, coordinate descent) after greedy fitting / beam search.
    pub refine_passes: usize,
    /// Round codebook entries to fp16 (as kernels store them) before encoding.
    pub fp16: bool,
    pub progress: bool,
}

impl Default for ResidualOptions {
    fn default() -> Self {
        Self {
            k: 256,
            stages: 2,
            iters: 10,
            seed: 0,
            max_samples: None,
            beam_width: 0,
            refine_passes: 0,
            fp16: true,
            progress: false,
        }
    }
}

/// Codebooks and codes of a residual quantization of `n` vectors of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualCodes {
    pub dim: usize,
    pub k: usize,
    pub stages: usize,
    /// `[stages, k, dim]`.
    pub codebooks: Vec<f32>,
    /// `[n, stages]`.
    pub codes: Vec<u16>,
}

impl ResidualCodes {
    /// Number of encoded vectors.
    pub fn len(&self) -> usize {
        self.codes.len() / self.stages
    }

    /// True when no vector is encoded.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Entry `e` of stage `s`.
    pub fn entry(&self, s: usize, e: usize) -> &[f32] {
        let o = (s * self.k + e) * self.dim;
        &self.codebooks[o..o + self.dim]
    }

    /// Writes the reconstruction of vector `i` into `out` (sum over stages, in stage order).
    pub fn decode_into(&self, i: usize, out: &mut [f32]) {
        decode_codes(
            &self.codebooks,
            self.k,
            self.dim,
            &self.codes[i * self.stages..(i + 1) * self.stages],
            out,
        );
    }

    /// All reconstructions, `[n, dim]`.
    pub fn decode(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len() * self.dim];
        out.par_chunks_mut(self.dim)
            .enumerate()
            .for_each(|(i, o)| self.decode_into(i, o));
        out
    }

    /// Total weighted squared error `Σ_i p_i Σ_j w_ij (x_ij - x̂_ij)²` (deterministic summation order).
    pub fn error(
        &self,
        data: &[f32],
        point_weights: Option<&[f32]>,
        coord_weights: Option<&[f32]>,
    ) -> Result<f64> {
        let n = self.len();
        if data.len() != n * self.dim {
            return Err(VqError::Shape(format!(
                "{} data values for {n} vectors of {}",
                data.len(),
                self.dim
            )));
        }
        let cw = CoordWeights::parse(coord_weights, n, self.dim)?;
        Ok(total_error(self, data, point_weights, cw))
    }
}

fn decode_codes(codebooks: &[f32], k: usize, dim: usize, codes: &[u16], out: &mut [f32]) {
    out.fill(0.0);
    for (s, &c) in codes.iter().enumerate() {
        let o = (s * k + c as usize) * dim;
        for (y, &e) in out.iter_mut().zip(&codebooks[o..o + dim]) {
            *y += e;
        }
    }
}

fn total_error(rc: &ResidualCodes, data: &[f32], pw: Option<&[f32]>, cw: CoordWeights<'_>) -> f64 {
    let dim = rc.dim;
    let parts: Vec<f64> = data
        .par_chunks(CHUNK * dim)
        .enumerate()
        .map(|(ci, xs)| {
            let mut y = vec![0.0f32; dim];
            let mut s = 0.0f64;
            for (p, x) in xs.chunks_exact(dim).enumerate() {
                let i = ci * CHUNK + p;
                rc.decode_into(i, &mut y);
                let e = weighted_sq_dist(x, &y, cw.of(i, dim)) as f64;
                s += pw.map_or(1.0, |w| w[i] as f64) * e;
            }
            s
        })
        .collect();
    parts.iter().sum()
}

/// Greedy residual k-means of `data` (`[n, dim]`), then optional refinement (see module docs).
///
/// `point_weights` (`n`) and `coord_weights` (`dim` or `n * dim`) weight the error as in
/// [`crate::kmeans::kmeans`]. Stage `s` uses seed `mix_seed(seed, s)`.
pub fn residual_kmeans(
    data: &[f32],
    dim: usize,
    point_weights: Option<&[f32]>,
    coord_weights: Option<&[f32]>,
    opts: &ResidualOptions,
) -> Result<ResidualCodes> {
    if !(1..=MAX_STAGES).contains(&opts.stages) {
        return Err(VqError::InvalidConfig(format!(
            "residual stages {} must be in 1..={MAX_STAGES}",
            opts.stages
        )));
    }
    if opts.k == 0 || opts.k > 1 << 16 {
        return Err(VqError::InvalidConfig(format!(
            "codebook size {} must be in 1..=65536",
            opts.k
        )));
    }
    if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
        return Err(VqError::Shape(format!(
            "{} values do not split into vectors of {dim}",
            data.len()
        )));
    }
    check_finite("residual k-means data", data)?;
    let n = data.len() / dim;
    let mut residual = data.to_vec();
    let mut codebooks = Vec::with_capacity(opts.stages * opts.k * dim);
    let mut codes = vec![0u16; n * opts.stages];
    for s in 0..opts.stages {
        let km_opts = KMeansOptions {
            k: opts.k,
            iters: opts.iters,
            seed: mix_seed(opts.seed, s as u64),
            max_samples: opts.max_samples,
            progress: opts.progress,
        };
        let km = kmeans_impl(
            &residual,
            dim,
            point_weights,
            coord_weights,
            &km_opts,
            opts.fp16,
        )?;
        for (i, &a) in km.assignments.iter().enumerate() {
            codes[i * opts.stages + s] = a as u16;
        }
        let cb = km.centroids;
        residual
            .par_chunks_mut(dim)
            .zip(km.assignments.par_iter())
            .for_each(|(r, &a)| {
                for (x, &c) in r
                    .iter_mut()
                    .zip(&cb[a as usize * dim..(a as usize + 1) * dim])
                {
                    *x -= c;
                }
            });
        codebooks.extend_from_slice(&cb);
    }
    let mut rc = ResidualCodes {
        dim,
        k: opts.k,
        stages: opts.stages,
        codebooks,
        codes,
    };
    if opts.beam_width > 0 || opts.refine_passes > 0 {
        refine(
            &mut rc,
            data,
            point_weights,
            coord_weights,
            opts.beam_width,
            opts.refine_passes,
            opts.fp16,
        )?;
    }
    Ok(rc)
}

/// Refines codes (and codebooks) of `rc` for `data`; never increases the weighted error.
///
/// Runs a beam search over code tuples when `beam_width > 0`, then `passes` rounds of codebook refit
/// (rounded to fp16 when `fp16`) followed by one coordinate-descent pass over the stages.
pub fn refine(
    rc: &mut ResidualCodes,
    data: &[f32],
    point_weights: Option<&[f32]>,
    coord_weights: Option<&[f32]>,
    beam_width: usize,
    passes: usize,
    fp16: bool,
) -> Result<()> {
    let n = rc.len();
    let dim = rc.dim;
    if data.len() != n * dim {
        return Err(VqError::Shape(format!(
            "{} data values for {n} vectors of {dim}",
            data.len()
        )));
    }
    if let Some(p) = point_weights {
        if p.len() != n {
            return Err(VqError::Shape(format!(
                "{} point weights for {n} vectors",
                p.len()
            )));
        }
    }
    let cw = CoordWeights::parse(coord_weights, n, dim)?;
    if beam_width > 0 {
        beam_pass(rc, data, cw, beam_width);
    }
    for _ in 0..passes {
        refit_codebooks(rc, data, point_weights, cw, fp16);
        coordinate_descent_pass(rc, data, cw);
    }
    Ok(())
}

fn stage_indexes(rc: &ResidualCodes, cw: CoordWeights<'_>) -> Vec<CentroidIndex> {
    (0..rc.stages)
        .map(|s| {
            CentroidIndex::new(
                &rc.codebooks[s * rc.k * rc.dim..(s + 1) * rc.k * rc.dim],
                rc.dim,
                cw,
            )
        })
        .collect()
}

/// Length of a search query: per-point coordinate weights travel with the point (`2 * dim` values).
fn query_dim(cw: CoordWeights<'_>, dim: usize) -> usize {
    if matches!(cw, CoordWeights::PerPoint(_)) {
        2 * dim
    } else {
        dim
    }
}

/// Re-chooses each stage's code given the other stages; a code changes only if the error strictly drops.
fn coordinate_descent_pass(rc: &mut ResidualCodes, data: &[f32], cw: CoordWeights<'_>) {
    let (dim, r, k) = (rc.dim, rc.stages, rc.k);
    let indexes = stage_indexes(rc, cw);
    let qdim = query_dim(cw, dim);
    let cbs = &rc.codebooks;
    rc.codes
        .par_chunks_mut(CHUNK * r)
        .enumerate()
        .for_each(|(ci, codes)| {
            let mut t = vec![0.0f32; dim];
            let mut q = vec![0.0f32; qdim];
            let mut res = [(0u32, 0.0f32)];
            for (p, code) in codes.chunks_exact_mut(r).enumerate() {
                let i = ci * CHUNK + p;
                let x = &data[i * dim..(i + 1) * dim];
                let w = cw.of(i, dim);
                for s in 0..r {
                    // Target of stage s: x minus every other stage.
                    t.copy_from_slice(x);
                    for (u, &c) in code.iter().enumerate() {
                        if u != s {
                            let o = (u * k + c as usize) * dim;
                            for (tv, &e) in t.iter_mut().zip(&cbs[o..o + dim]) {
                                *tv -= e;
                            }
                        }
                    }
                    indexes[s].query(&t, w, &mut q);
                    indexes[s].argmin_many(&q, &mut res);
                    let cand = res[0].0 as usize;
                    let cur = code[s] as usize;
                    if cand != cur {
                        let entry = |e: usize| &cbs[(s * k + e) * dim..(s * k + e + 1) * dim];
                        if weighted_sq_dist(&t, entry(cand), w)
                            < weighted_sq_dist(&t, entry(cur), w)
                        {
                            code[s] = cand as u16;
                        }
                    }
                }
            }
        });
}

/// Beam search over code tuples; replaces a vector's codes only when the beam's best is strictly better.
fn beam_pass(rc: &mut ResidualCodes, data: &[f32], cw: CoordWeights<'_>, beam: usize) {
    let (dim, r, k) = (rc.dim, rc.stages, rc.k);
    let indexes = stage_indexes(rc, cw);
    let qdim = query_dim(cw, dim);
    let cbs = &rc.codebooks;
    rc.codes
        .par_chunks_mut(CHUNK * r)
        .enumerate()
        .for_each(|(ci, codes)| {
            let mut q = vec![0.0f32; qdim];
            let mut scores = vec![0.0f32; k];
            let mut t = vec![0.0f32; dim];
            let mut y = vec![0.0f32; dim];
            for (p, code) in codes.chunks_exact_mut(r).enumerate() {
                let i = ci * CHUNK + p;
                let x = &data[i * dim..(i + 1) * dim];
                let w = cw.of(i, dim);
                // Each candidate: (approximate error, codes so far, partial reconstruction).
                let mut cands: Vec<(f32, [u16; MAX_STAGES], Vec<f32>)> =
                    vec![(0.0, [0; MAX_STAGES], vec![0.0; dim])];
                for (s, index) in indexes.iter().enumerate() {
                    let mut next: Vec<(f32, usize, u16)> = Vec::with_capacity(beam + 1);
                    for (ci2, cand) in cands.iter().enumerate() {
                        for j in 0..dim {
                            t[j] = x[j] - cand.2[j];
                        }
                        // ‖t‖²_w + score = ‖t - entry‖²_w.
                        let tn: f32 = match w {
                            None => t.iter().map(|v| v * v).sum(),
                            Some(w) => t.iter().zip(w).map(|(v, ww)| ww * v * v).sum(),
                        };
                        index.query(&t, w, &mut q);
                        index.scores(&q, &mut scores);
                        for (e, &sc) in scores.iter().enumerate() {
                            let err = tn + sc;
                            if next.len() < beam || err < next[next.len() - 1].0 {
                                let pos = next.partition_point(|c| c.0 <= err);
                                next.insert(pos, (err, ci2, e as u16));
                                next.truncate(beam);
                            }
                        }
                    }
                    cands = next
                        .iter()
                        .map(|&(err, from, e)| {
                            let mut codes = cands[from].1;
                            codes[s] = e;
                            let mut partial = cands[from].2.clone();
                            let o = (s * k + e as usize) * dim;
                            for (pv, &ev) in partial.iter_mut().zip(&cbs[o..o + dim]) {
                                *pv += ev;
                            }
                            (err, codes, partial)
                        })
                        .collect();
                }
                // Exact comparison against the current codes.
                decode_codes(cbs, k, dim, code, &mut y);
                let mut best_err = weighted_sq_dist(x, &y, w);
                for cand in &cands {
                    decode_codes(cbs, k, dim, &cand.1[..r], &mut y);
                    let e = weighted_sq_dist(x, &y, w);
                    if e < best_err {
                        best_err = e;
                        code.copy_from_slice(&cand.1[..r]);
                    }
                }
            }
        });
}

/// Refits each stage's codebook to its targets (weighted means); keeps a refit only if the total error
/// does not grow.
fn refit_codebooks(
    rc: &mut ResidualCodes,
    data: &[f32],
    pw: Option<&[f32]>,
    cw: CoordWeights<'_>,
    fp16: bool,
) {
    let (dim, r, k) = (rc.dim, rc.stages, rc.k);
    let n = rc.len();
    let mut err = total_error(rc, data, pw, cw);
    for s in 0..r {
        let mut targets = data.to_vec();
        let mut assign = vec![0u32; n];
        for i in 0..n {
            let code = &rc.codes[i * r..(i + 1) * r];
            assign[i] = code[s] as u32;
            for (u, &c) in code.iter().enumerate() {
                if u != s {
                    let o = (u * k + c as usize) * dim;
                    for (tv, &e) in targets[i * dim..(i + 1) * dim]
                        .iter_mut()
                        .zip(&rc.codebooks[o..o + dim])
                    {
                        *tv -= e;
                    }
                }
            }
        }
        let range = s * k * dim..(s + 1) * k * dim;
        let old = rc.codebooks[range.clone()].to_vec();
        let mut cb = old.clone();
        update_centroids(&targets, dim, pw, cw, &assign, &mut cb);
        if fp16 {
            round_to_f16(&mut cb);
        }
        rc.codebooks[range.clone()].copy_from_slice(&cb);
        let new_err = total_error(rc, data, pw, cw);
        if new_err <= err && cb.iter().all(|v| v.is_finite()) {
            err = new_err;
        } else {
            rc.codebooks[range].copy_from_slice(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect()
    }

    fn naive_error(rc: &ResidualCodes, data: &[f32]) -> f64 {
        let mut e = 0.0;
        for (i, x) in data.chunks_exact(rc.dim).enumerate() {
            for (j, &xj) in x.iter().enumerate() {
                let mut y = 0.0f32;
                for s in 0..rc.stages {
                    y += rc.entry(s, rc.codes[i * rc.stages + s] as usize)[j];
                }
                e += ((xj - y) as f64).powi(2);
            }
        }
        e
    }

    #[test]
    fn error_decreases_with_stages() {
        let data = random_data(2000, 4, 1);
        let mut last = f64::INFINITY;
        for r in 1..=3 {
            let rc = residual_kmeans(
                &data,
                4,
                None,
                None,
                &ResidualOptions {
                    k: 16,
                    stages: r,
                    ..Default::default()
                },
            )
            .unwrap();
            let e = naive_error(&rc, &data);
            assert!((e - rc.error(&data, None, None).unwrap()).abs() < 1e-6 * e.max(1.0));
            assert!(e < last, "r={r}: {e} !< {last}");
            last = e;
        }
    }

    #[test]
    fn beam_and_refinement_never_worse_than_greedy() {
        for (seed, dim, k, r) in [(2u64, 4usize, 16usize, 2usize), (3, 8, 32, 3), (4, 2, 8, 4)] {
            let data = random_data(1500, dim, seed);
            let base = ResidualOptions {
                k,
                stages: r,
                seed,
                ..Default::default()
            };
            let greedy = residual_kmeans(&data, dim, None, None, &base).unwrap();
            let g = naive_error(&greedy, &data);
            let beam = residual_kmeans(
                &data,
                dim,
                None,
                None,
                &ResidualOptions {
                    beam_width: 4,
                    ..base.clone()
                },
            )
            .unwrap();
            let b = naive_error(&beam, &data);
            assert!(b <= g, "beam {b} > greedy {g}");
            assert_eq!(
                beam.codebooks, greedy.codebooks,
                "beam alone keeps codebooks"
            );
            let full = residual_kmeans(
                &data,
                dim,
                None,
                None,
                &ResidualOptions {
                    beam_width: 4,
                    refine_passes: 2,
                    ..base.clone()
                },
            )
            .unwrap();
            let f = naive_error(&full, &data);
            assert!(f <= b, "refined {f} > beam {b}");
            // On random data refinement finds something.
            assert!(f < g, "refinement did not improve: {f} vs {g}");
        }
    }

    #[test]
    fn weighted_refinement_never_worse() {
        let dim = 4;
        let data = random_data(1000, dim, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let cw: Vec<f32> = (0..1000 * dim).map(|_| rng.random::<f32>()).collect();
        let pw: Vec<f32> = (0..1000).map(|_| rng.random::<f32>()).collect();
        let base = ResidualOptions {
            k: 8,
            stages: 2,
            ..Default::default()
        };
        let g = residual_kmeans(&data, dim, Some(&pw), Some(&cw), &base).unwrap();
        let mut r = g.clone();
        refine(&mut r, &data, Some(&pw), Some(&cw), 3, 2, true).unwrap();
        let eg = g.error(&data, Some(&pw), Some(&cw)).unwrap();
        let er = r.error(&data, Some(&pw), Some(&cw)).unwrap();
        assert!(er <= eg, "{er} > {eg}");
    }

    #[test]
    fn deterministic_fp16_codebooks() {
        let data = random_data(800, 8, 7);
        let o = ResidualOptions {
            k: 32,
            stages: 2,
            beam_width: 2,
            refine_passes: 1,
            ..Default::default()
        };
        let a = residual_kmeans(&data, 8, None, None, &o).unwrap();
        let b = residual_kmeans(&data, 8, None, None, &o).unwrap();
        assert_eq!(a, b);
        assert!(a
            .codebooks
            .iter()
            .all(|&v| half::f16::from_f32(v).to_f32() == v));
        let c = residual_kmeans(&data, 8, None, None, &ResidualOptions { seed: 1, ..o }).unwrap();
        assert_ne!(a.codebooks, c.codebooks);
    }

    #[test]
    fn bad_options_are_errors() {
        let d = random_data(10, 4, 1);
        assert!(residual_kmeans(
            &d,
            4,
            None,
            None,
            &ResidualOptions {
                stages: 5,
                ..Default::default()
            }
        )
        .is_err());
        assert!(residual_kmeans(
            &d,
            4,
            None,
            None,
            &ResidualOptions {
                k: 70000,
                ..Default::default()
            }
        )
        .is_err());
        assert!(residual_kmeans(&d, 3, None, None, &ResidualOptions::default()).is_err());
    }
}
