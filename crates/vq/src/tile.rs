//! Codebook sets per region of a weight: one set for the whole tensor (AQLM) or one per
//! `tile_rows x tile_cols` tile (GPTVQ, `Scope::Tile`), ragged edge tiles included.
//!
//! Each region's vectors (`v` consecutive input columns of one row) get their own residual codebooks. With
//! per-input-column importance (the diagonal of `XᵀX` from calibration activations, GPTVQ's Hessian
//! weighting) the error of coordinate `j` of a vector is weighted by the importance of its column.

use crate::config::{Scope, VqConfig};
use crate::error::{Result, VqError};
use crate::kmeans::mix_seed;
use crate::residual::{residual_kmeans, ResidualOptions};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// A rectangle of the weight covered by one codebook set; rows `row0..row1`, columns `col0..col1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Codebook set index, as [`VqConfig::codebook_set_of`] numbers it.
    pub set: usize,
    pub row0: usize,
    pub row1: usize,
    pub col0: usize,
    pub col1: usize,
}

/// The regions of a `[rows, cols]` weight for `config`, in codebook-set order (one for `Scope::Tensor`).
pub fn tile_grid(config: &VqConfig, rows: usize, cols: usize) -> Vec<Tile> {
    match config.scope {
        Scope::Tile { rows: tr, cols: tc } => {
            let tcols = cols.div_ceil(tc);
            (0..rows.div_ceil(tr) * tcols)
                .map(|set| {
                    let (ti, tj) = (set / tcols, set % tcols);
                    Tile {
                        set,
                        row0: ti * tr,
                        row1: ((ti + 1) * tr).min(rows),
                        col0: tj * tc,
                        col1: ((tj + 1) * tc).min(cols),
                    }
                })
                .collect()
        }
        _ => vec![Tile { set: 0, row0: 0, row1: rows, col0: 0, col1: cols }],
    }
}

/// Learns one residual codebook set per region of `w` (`[rows, cols]`, already normalised if scaled) and
/// encodes every vector. Returns `(codebooks [sets, r, 2^b, v], codes [rows, cols / v, r])`.
///
/// `column_weights` (`cols` values, non-negative) weight each input column's squared error. `base` gives
/// the k-means settings; `k` and `stages` are taken from `config`, and region `set` uses seed
/// `mix_seed(base.seed, set)`.
pub fn learn_region_codebooks(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &VqConfig,
    column_weights: Option<&[f32]>,
    base: &ResidualOptions,
) -> Result<(Vec<f32>, Vec<u16>)> {
    config.check_weight_shape(rows, cols)?;
    if w.len() != rows * cols {
        return Err(VqError::Shape(format!("weight has {} values, expected {rows} x {cols}", w.len())));
    }
    if let Some(cw) = column_weights {
        if cw.len() != cols {
            return Err(VqError::Shape(format!("{} column weights for {cols} columns", cw.len())));
        }
    }
    let v = config.v;
    let (r, k) = (config.r, config.entries());
    let groups = cols / v;
    let tiles = tile_grid(config, rows, cols);
    let bar = (base.progress && tiles.len() > 1).then(|| {
        let pb = ProgressBar::new(tiles.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("tiles [{bar:30}] {pos}/{len} {elapsed}") {
            pb.set_style(style);
        }
        pb
    });
    let inner_progress = base.progress && tiles.len() == 1;
    let results: Vec<Result<(Vec<f32>, Vec<u16>)>> = tiles
        .par_iter()
        .map(|t| {
            let (g0, g1) = (t.col0 / v, t.col1 / v);
            let mut data = Vec::with_capacity((t.row1 - t.row0) * (t.col1 - t.col0));
            for row in t.row0..t.row1 {
                data.extend_from_slice(&w[row * cols + t.col0..row * cols + t.col1]);
            }
            let coord: Option<Vec<f32>> = column_weights.map(|cw| {
                let slice = &cw[t.col0..t.col1];
                (t.row0..t.row1).flat_map(|_| slice.iter().copied()).collect()
            });
            debug_assert_eq!(data.len(), (t.row1 - t.row0) * (g1 - g0) * v);
            let opts = ResidualOptions {
                k,
                stages: r,
                seed: mix_seed(base.seed, t.set as u64),
                progress: inner_progress,
                ..base.clone()
            };
            let rc = residual_kmeans(&data, v, None, coord.as_deref(), &opts)?;
            if let Some(pb) = &bar {
                pb.inc(1);
            }
            Ok((rc.codebooks, rc.codes))
        })
        .collect();
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let mut codebooks = Vec::with_capacity(tiles.len() * r * k * v);
    let mut codes = vec![0u16; rows * groups * r];
    for (t, res) in tiles.iter().zip(results) {
        let (cb, tc) = res?;
        codebooks.extend_from_slice(&cb);
        let (g0, g1) = (t.col0 / v, t.col1 / v);
        let tg = g1 - g0;
        for (ri, row) in (t.row0..t.row1).enumerate() {
            let dst = (row * groups + g0) * r;
            codes[dst..dst + tg * r].copy_from_slice(&tc[ri * tg * r..(ri + 1) * tg * r]);
        }
    }
    Ok((codebooks, codes))
}
