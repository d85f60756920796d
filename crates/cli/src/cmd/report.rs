//! Error reports of `vqllm quantize --report`: per tensor, the relative MSE and SNR of each VQ method and of
//! the element-wise INT4-RTN g128 baseline against the original weight, with the bits per element each
//! method really stores, and a summary table over the whole model.

use std::fmt::Write as _;

use vqllm_vq::config::CodebookKind;
use vqllm_vq::format::CodeStorage;
use vqllm_vq::int4::{Int4Weight, INT4_GROUP};
use vqllm_vq::metrics::ErrorStats;
use vqllm_vq::{QuantizedWeight, VqConfig};

/// Bits per element of INT4-RTN with groups of `group` columns: 4-bit values plus an fp16 scale and an
/// fp16 zero point per group (`4 + 32 / group`, 4.25 for group 128).
pub fn int4_bits_per_element(group: usize) -> f64 {
    4.0 + 32.0 / group as f64
}

/// The INT4-RTN baseline with groups of `group` columns, dequantized, and its bits per element.
///
/// `vqllm_vq::int4` needs `group | cols`; real models often break that for group 128 (SmolLM2's hidden size
/// is 576 = 4·128 + 64). Then the first `group · ⌊cols / group⌋` columns use `group` and the remaining
/// columns form one short last group per row (as GPTQ / AWQ do with a ragged tail), which costs a little
/// more than `4 + 32 / group` bits per element; the returned bits count that exactly.
pub fn int4_baseline(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
) -> vqllm_vq::Result<(Vec<f32>, f64)> {
    let full = cols / group * group;
    let tail = cols - full;
    if tail == 0 || full == 0 {
        let g = if full == 0 { cols } else { group };
        let q = Int4Weight::quantize(w, rows, cols, g)?;
        return Ok((q.dequantize()?, int4_bits_per_element(g)));
    }
    let split = |lo: usize, hi: usize| -> Vec<f32> {
        w.chunks_exact(cols)
            .flat_map(|row| row[lo..hi].iter().copied())
            .collect()
    };
    let head = Int4Weight::quantize(&split(0, full), rows, full, group)?.dequantize()?;
    let tail_q = Int4Weight::quantize(&split(full, cols), rows, tail, tail)?.dequantize()?;
    let mut out = Vec::with_capacity(rows * cols);
    for (h, t) in head.chunks_exact(full).zip(tail_q.chunks_exact(tail)) {
        out.extend_from_slice(h);
        out.extend_from_slice(t);
    }
    let bits = (full as f64 * int4_bits_per_element(group)
        + tail as f64 * int4_bits_per_element(tail))
        / cols as f64;
    Ok((out, bits))
}

/// Bytes a quantized weight takes in a `.vqst` file written with [`CodeStorage::Auto`]: codes (AQLM
/// int8/int16 for b ∈ {8, 16}, else a `b`-bit stream padded to whole bytes per row), fp16 codebooks, fp16
/// per-channel scales, fp16 Hadamard signs and f32 stage scales. Mirrors `vqllm_vq::format`.
pub fn stored_bytes(q: &QuantizedWeight) -> usize {
    let c = &q.config;
    let groups = q.groups();
    let codes = match CodeStorage::Auto.resolve(c.b) {
        CodeStorage::Packed => q.rows * (groups * c.r * c.b as usize).div_ceil(8),
        _ => q.rows * groups * c.r * if c.b <= 8 { 1 } else { 2 },
    };
    let codebooks = match c.codebook {
        CodebookKind::Learned => q.codebook_sets() * c.r * c.entries() * c.v * 2,
        CodebookKind::E8p => 0,
    };
    let scales = q.scales.as_ref().map_or(0, |s| s.len() * 2);
    let signs = q.rht.as_ref().map_or(0, |h| h.signs.len() * 2);
    codes + codebooks + scales + signs + c.r * 4
}

/// Stored bits per weight element: [`stored_bytes`] amortised over `rows · cols` (codebook, scale and sign
/// overhead included), as opposed to the nominal `b · r / v` of [`VqConfig::bits_per_element`].
pub fn stored_bits_per_element(q: &QuantizedWeight) -> f64 {
    stored_bytes(q) as f64 * 8.0 / (q.rows * q.cols) as f64
}

/// The error of one method on one tensor.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// `‖W − Ŵ‖² / ‖W‖²`.
    pub relative_mse: f64,
    /// `10 · log10(1 / relative_mse)`.
    pub snr_db: f64,
    /// Stored bits per element.
    pub bits: f64,
}

impl Cell {
    /// A cell from comparison statistics and stored bits per element.
    pub fn new(stats: &ErrorStats, bits: f64) -> Self {
        Self {
            relative_mse: stats.relative_mse,
            snr_db: stats.snr_db,
            bits,
        }
    }
}

/// One reported tensor: its shape and, per method, its error (`None` when the method skipped it).
#[derive(Clone, Debug)]
pub struct TensorRow {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// One entry per VQ method, in the order of [`Report::methods`].
    pub vq: Vec<Option<Cell>>,
    /// INT4-RTN g128 (with a short last group when 128 does not divide `cols`; see [`int4_baseline`]).
    pub int4: Option<Cell>,
}

/// A VQ method (a preset or an explicit config) of the report.
#[derive(Clone, Debug)]
pub struct Method {
    /// Preset name or config string as given on the command line.
    pub label: String,
    pub config: VqConfig,
    /// Seconds spent quantizing (summed over tensors).
    pub seconds: f64,
}

/// Everything `--report` prints.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub methods: Vec<Method>,
    pub rows: Vec<TensorRow>,
    /// Seconds spent on the INT4 baseline.
    pub int4_seconds: f64,
    /// Wall time of the whole command so far.
    pub total_seconds: f64,
}

/// Mean relative MSE, mean SNR, element-weighted bits per element and tensor count over the present cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub mean_relative_mse: f64,
    pub mean_snr_db: f64,
    pub bits_per_element: f64,
    pub tensors: usize,
}

/// Summarises `(cell, elements)` pairs; `None` when there are none.
pub fn summarize<'a>(cells: impl Iterator<Item = (&'a Cell, usize)>) -> Option<Summary> {
    let (mut n, mut mse, mut snr, mut bits, mut elems) = (0usize, 0.0, 0.0, 0.0, 0usize);
    for (c, e) in cells {
        n += 1;
        mse += c.relative_mse;
        snr += c.snr_db;
        bits += c.bits * e as f64;
        elems += e;
    }
    (n > 0).then(|| Summary {
        mean_relative_mse: mse / n as f64,
        mean_snr_db: snr / n as f64,
        bits_per_element: bits / elems.max(1) as f64,
        tensors: n,
    })
}

impl Report {
    /// Summary of VQ method `i`.
    pub fn method_summary(&self, i: usize) -> Option<Summary> {
        summarize(
            self.rows
                .iter()
                .filter_map(|r| r.vq.get(i)?.as_ref().map(|c| (c, r.rows * r.cols))),
        )
    }

    /// Summary of the INT4 baseline.
    pub fn int4_summary(&self) -> Option<Summary> {
        summarize(
            self.rows
                .iter()
                .filter_map(|r| r.int4.as_ref().map(|c| (c, r.rows * r.cols))),
        )
    }

    /// The per-tensor table: name, shape, then relative MSE and SNR of every method and of INT4.
    pub fn tensor_table(&self) -> String {
        let name_w = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut labels: Vec<&str> = self.methods.iter().map(|m| m.label.as_str()).collect();
        labels.push("int4-g128");
        let col_w = labels.iter().map(|l| l.len()).max().unwrap_or(0).max(17);
        let mut s = String::new();
        let _ = write!(s, "{:<name_w$}  {:>11}", "tensor", "shape");
        for l in &labels {
            let _ = write!(s, "  {l:>col_w$}");
        }
        s.push('\n');
        let _ = write!(s, "{:<name_w$}  {:>11}", "", "");
        for _ in &labels {
            let _ = write!(s, "  {:>col_w$}", "rel.MSE  SNR(dB)");
        }
        s.push('\n');
        for r in &self.rows {
            let _ = write!(
                s,
                "{:<name_w$}  {:>11}",
                r.name,
                format!("{}x{}", r.rows, r.cols)
            );
            for c in r.vq.iter().chain(std::iter::once(&r.int4)) {
                let cell = match c {
                    Some(c) => format!("{:.3e} {:>7.2}", c.relative_mse, c.snr_db),
                    None => "skipped".to_string(),
                };
                let _ = write!(s, "  {cell:>col_w$}");
            }
            s.push('\n');
        }
        s
    }

    /// The summary table: per method (and INT4-RTN g128), bits/element, mean relative MSE, mean SNR, time.
    pub fn summary_table(&self) -> String {
        let mut lines: Vec<[String; 7]> = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            lines.push(summary_line(
                &m.label,
                &m.config.to_string(),
                self.method_summary(i),
                m.seconds,
            ));
        }
        lines.push(summary_line(
            "int4-g128",
            &format!("asym RTN, group {INT4_GROUP} (+ragged tail)"),
            self.int4_summary(),
            self.int4_seconds,
        ));
        let header = [
            "method",
            "config",
            "bits/elem",
            "mean rel.MSE",
            "mean SNR(dB)",
            "time(s)",
            "tensors",
        ]
        .map(String::from);
        let all: Vec<&[String; 7]> = std::iter::once(&header).chain(&lines).collect();
        let widths: Vec<usize> = (0..7)
            .map(|j| all.iter().map(|l| l[j].len()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for l in all {
            for (j, cell) in l.iter().enumerate() {
                if j > 0 {
                    s.push_str("  ");
                }
                if j < 2 {
                    let _ = write!(s, "{cell:<w$}", w = widths[j]);
                } else {
                    let _ = write!(s, "{cell:>w$}", w = widths[j]);
                }
            }
            s.push('\n');
        }
        let _ = writeln!(s, "total time: {:.1} s", self.total_seconds);
        s
    }
}

fn summary_line(label: &str, config: &str, sum: Option<Summary>, seconds: f64) -> [String; 7] {
    match sum {
        Some(x) => [
            label.to_string(),
            config.to_string(),
            format!("{:.3}", x.bits_per_element),
            format!("{:.4e}", x.mean_relative_mse),
            format!("{:.2}", x.mean_snr_db),
            format!("{seconds:.1}"),
            x.tensors.to_string(),
        ],
        None => [
            label.to_string(),
            config.to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("{seconds:.1}"),
            "0".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vqllm_vq::Rht;

    fn weight(config: &str, rows: usize, cols: usize) -> QuantizedWeight {
        let config: VqConfig = config.parse().unwrap();
        let sets = config.num_codebook_sets(rows, cols);
        QuantizedWeight {
            config,
            rows,
            cols,
            codes: vec![0; rows * cols / config.v * config.r],
            codebooks: match config.codebook {
                CodebookKind::Learned => vec![0.0; sets * config.r * config.entries() * config.v],
                CodebookKind::E8p => Vec::new(),
            },
            stage_scales: vec![1.0; config.r],
            scales: config.per_channel_scale.then(|| vec![1.0; rows]),
            rht: config.hadamard.then(|| Rht {
                block: cols,
                signs: vec![1.0; cols],
            }),
        }
    }

    /// The computed sizes equal the bytes `QuantizedModel::to_bytes` really writes for each tensor.
    #[test]
    fn stored_bytes_match_the_file() {
        for (cfg, rows, cols) in [
            ("aqlm3", 64, 128),
            ("aqlm-2x8", 48, 64),
            ("gptvq2", 300, 260),
            ("quip4", 32, 64),
            ("vq<4,5,3>", 7, 12),
        ] {
            let w = weight(cfg, rows, cols);
            let mut m = vqllm_vq::QuantizedModel::new(serde_json::Value::Null);
            m.tensors.push(("t".into(), w.clone()));
            let bytes = m.to_bytes(&Default::default()).unwrap();
            let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let data_len = bytes.len() - 8 - header_len;
            assert_eq!(stored_bytes(&w), data_len, "{cfg}");
        }
    }

    /// The ragged baseline equals group-128 INT4 on the head columns and a one-group INT4 on the tail.
    #[test]
    fn int4_baseline_handles_a_ragged_tail() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (rows, cols) = (5, 192);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (deq, bits) = int4_baseline(&w, rows, cols, 128).unwrap();
        assert!((bits - (128.0 * 4.25 + 64.0 * 4.5) / 192.0).abs() < 1e-12);
        for (r, row) in w.chunks_exact(cols).enumerate() {
            let head = Int4Weight::quantize(&row[..128], 1, 128, 128)
                .unwrap()
                .dequantize()
                .unwrap();
            let tail = Int4Weight::quantize(&row[128..], 1, 64, 64)
                .unwrap()
                .dequantize()
                .unwrap();
            assert_eq!(&deq[r * cols..r * cols + 128], &head[..]);
            assert_eq!(&deq[r * cols + 128..(r + 1) * cols], &tail[..]);
        }
        let rel = vqllm_vq::metrics::relative_mse(&w, &deq).unwrap();
        assert!(rel > 0.0 && rel < 0.01, "{rel}");
        // Divisible shapes take the plain path.
        let (d2, b2) = int4_baseline(&w[..rows * 128], rows, 128, 128).unwrap();
        assert_eq!(b2, 4.25);
        assert_eq!(
            d2,
            Int4Weight::quantize(&w[..rows * 128], rows, 128, 128)
                .unwrap()
                .dequantize()
                .unwrap()
        );
    }

    #[test]
    fn bits_per_element() {
        assert_eq!(int4_bits_per_element(128), 4.25);
        let w = weight("aqlm-2x8", 1024, 1024);
        let want = 2.0 + (2.0 * 256.0 * 8.0 * 16.0 + 1024.0 * 16.0 + 64.0) / (1024.0 * 1024.0);
        assert!((stored_bits_per_element(&w) - want).abs() < 1e-12);
    }

    #[test]
    fn summaries_average_over_present_cells() {
        let c = |m: f64, b: f64| {
            Some(Cell {
                relative_mse: m,
                snr_db: -10.0 * m.log10(),
                bits: b,
            })
        };
        let report = Report {
            methods: vec![Method {
                label: "aqlm3".into(),
                config: VqConfig::preset("aqlm3").unwrap(),
                seconds: 1.0,
            }],
            rows: vec![
                TensorRow {
                    name: "a".into(),
                    rows: 1,
                    cols: 100,
                    vq: vec![c(0.01, 3.0)],
                    int4: c(0.1, 4.25),
                },
                TensorRow {
                    name: "b".into(),
                    rows: 3,
                    cols: 100,
                    vq: vec![c(0.001, 4.0)],
                    int4: None,
                },
            ],
            int4_seconds: 0.5,
            total_seconds: 2.0,
        };
        let s = report.method_summary(0).unwrap();
        assert!((s.mean_relative_mse - 0.0055).abs() < 1e-12);
        assert!((s.mean_snr_db - 25.0).abs() < 1e-9);
        assert!((s.bits_per_element - 3.75).abs() < 1e-12);
        assert_eq!(s.tensors, 2);
        assert_eq!(report.int4_summary().unwrap().tensors, 1);
        let table = report.summary_table();
        assert!(table.contains("aqlm3") && table.contains("int4-g128") && table.contains("3.750"));
        assert!(report.tensor_table().contains("skipped"));
    }
}
