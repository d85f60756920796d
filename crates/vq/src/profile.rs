//! Offline phase of the codebook cache (paper section IV, Table V): count how often each codebook entry is
//! used, reorder entries by descending frequency and rewrite the codes, so that entries `[0, n)` of every
//! codebook are its `n` hottest and a kernel can keep them in registers / shared memory with a plain index
//! comparison. Reordering never changes the dequantized values.

use crate::config::CodebookKind;
use crate::error::{Result, VqError};
use crate::kv::KvCodebooks;
use crate::weight::QuantizedWeight;
use std::fmt;

/// Entry-use counts of a family of equally sized codebooks, `counts[codebook * entries + e]`.
///
/// For a weight, codebook `set * r + stage`; for a KV cache, codebook `head * groups + group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodebookProfile {
    pub codebooks: usize,
    pub entries: usize,
    pub counts: Vec<u64>,
}

impl CodebookProfile {
    /// Counts of one codebook.
    pub fn counts_of(&self, codebook: usize) -> &[u64] {
        &self.counts[codebook * self.entries..(codebook + 1) * self.entries]
    }

    /// Total number of lookups.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Per codebook, the permutation `new index -> old index` that sorts entries by descending count
    /// (stable: equal counts keep index order).
    pub fn permutations(&self) -> Vec<Vec<u32>> {
        (0..self.codebooks)
            .map(|c| frequency_order(self.counts_of(c)))
            .collect()
    }

    /// Fraction of all lookups served by the `n` hottest entries of each codebook (what a cache of the
    /// first `n` entries catches after reordering).
    pub fn coverage(&self, n: usize) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let hit: u64 = (0..self.codebooks)
            .map(|c| {
                let mut v = self.counts_of(c).to_vec();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v.iter().take(n).sum::<u64>()
            })
            .sum();
        hit as f64 / total as f64
    }

    /// Summary: used entries, entries above mean + 3 sigma and their share, coverage at powers of 4.
    pub fn report(&self) -> FrequencyReport {
        let total = self.total();
        let mut used = 0usize;
        let mut hot = 0usize;
        let mut hot_hits = 0u64;
        for c in 0..self.codebooks {
            let counts = self.counts_of(c);
            used += counts.iter().filter(|&&x| x > 0).count();
            let n = counts.len() as f64;
            let mean = counts.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = counts
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let threshold = mean + 3.0 * var.sqrt();
            for &x in counts {
                if x as f64 > threshold {
                    hot += 1;
                    hot_hits += x;
                }
            }
        }
        let mut coverage = Vec::new();
        let mut n = 1;
        while n < self.entries {
            coverage.push((n, self.coverage(n)));
            n *= 4;
        }
        FrequencyReport {
            codebooks: self.codebooks,
            entries: self.entries,
            accesses: total,
            used_entries: used,
            hot_entries: hot,
            hot_share: if total > 0 {
                hot_hits as f64 / total as f64
            } else {
                0.0
            },
            coverage,
        }
    }
}

/// Summary of a [`CodebookProfile`] (printed by `vqllm info` / `plan`).
#[derive(Clone, Debug, PartialEq)]
pub struct FrequencyReport {
    pub codebooks: usize,
    pub entries: usize,
    pub accesses: u64,
    /// Entries used at least once, over all codebooks.
    pub used_entries: usize,
    /// Entries whose count exceeds their codebook's mean + 3 sigma, over all codebooks.
    pub hot_entries: usize,
    /// Share of all lookups that hit those hot entries.
    pub hot_share: f64,
    /// `(n, coverage(n))` for n = 1, 4, 16, ... below the codebook size.
    pub coverage: Vec<(usize, f64)>,
}

impl fmt::Display for FrequencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = (self.codebooks * self.entries).max(1) as f64;
        writeln!(
            f,
            "{} codebook(s) x {} entries, {} lookups, {} entries used ({:.1}%)",
            self.codebooks,
            self.entries,
            self.accesses,
            self.used_entries,
            100.0 * self.used_entries as f64 / all
        )?;
        writeln!(
            f,
            "hot entries (> mean + 3 sigma): {} ({:.2}% of entries) serve {:.1}% of lookups",
            self.hot_entries,
            100.0 * self.hot_entries as f64 / all,
            100.0 * self.hot_share
        )?;
        write!(f, "coverage of the n hottest entries per codebook:")?;
        for (n, c) in &self.coverage {
            write!(f, " top-{n} {:.1}%", 100.0 * c)?;
        }
        Ok(())
    }
}

/// Indices sorted by descending count; equal counts keep index order.
pub fn frequency_order(counts: &[u64]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..counts.len() as u32).collect();
    idx.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]));
    idx
}

/// Checks that every permutation is a bijection of `0..entries`, and returns their inverses.
fn inverses(perms: &[Vec<u32>], codebooks: usize, entries: usize) -> Result<Vec<Vec<u16>>> {
    if perms.len() != codebooks {
        return Err(VqError::Shape(format!(
            "{} permutations for {codebooks} codebooks",
            perms.len()
        )));
    }
    perms
        .iter()
        .enumerate()
        .map(|(c, p)| {
            let bad = || {
                VqError::InvalidConfig(format!(
                    "permutation {c} is not a permutation of 0..{entries}"
                ))
            };
            if p.len() != entries {
                return Err(bad());
            }
            let mut inv = vec![u16::MAX; entries];
            let mut seen = vec![false; entries];
            for (new, &old) in p.iter().enumerate() {
                let old = old as usize;
                if old >= entries || seen[old] {
                    return Err(bad());
                }
                seen[old] = true;
                inv[old] = new as u16;
            }
            Ok(inv)
        })
        .collect()
}

fn check_learned(q: &QuantizedWeight) -> Result<()> {
    if q.config.codebook == CodebookKind::E8p {
        return Err(VqError::InvalidConfig(format!(
            "{}: E8P codes index a fixed lattice, there is no stored codebook to profile or reorder",
            q.config
        )));
    }
    q.validate()
}

/// Entry-use counts of a learned-codebook weight, codebook `set * r + stage`.
pub fn profile_weight(q: &QuantizedWeight) -> Result<CodebookProfile> {
    check_learned(q)?;
    let c = &q.config;
    let (r, v, e) = (c.r, c.v, c.entries());
    let mut counts = vec![0u64; q.codebook_sets() * r * e];
    let groups = q.groups();
    for n in 0..q.rows {
        for k in 0..groups {
            let set = c.codebook_set_of(q.cols, n, k * v);
            for s in 0..r {
                counts[(set * r + s) * e + q.code(n, k, s) as usize] += 1;
            }
        }
    }
    Ok(CodebookProfile {
        codebooks: q.codebook_sets() * r,
        entries: e,
        counts,
    })
}

/// Reorders the entries of every codebook of `q` (`perms[set * r + stage][new] = old`) and rewrites the
/// codes; the dequantized weight is unchanged bit for bit.
pub fn permute_weight(q: &mut QuantizedWeight, perms: &[Vec<u32>]) -> Result<()> {
    check_learned(q)?;
    let c = q.config;
    let (r, v, e) = (c.r, c.v, c.entries());
    let inv = inverses(perms, q.codebook_sets() * r, e)?;
    let old = q.codebooks.clone();
    for (cb, p) in perms.iter().enumerate() {
        for (new, &o) in p.iter().enumerate() {
            let dst = (cb * e + new) * v;
            let src = (cb * e + o as usize) * v;
            q.codebooks[dst..dst + v].copy_from_slice(&old[src..src + v]);
        }
    }
    let groups = q.groups();
    for n in 0..q.rows {
        for k in 0..groups {
            let set = c.codebook_set_of(q.cols, n, k * v);
            for s in 0..r {
                let i = (n * groups + k) * r + s;
                q.codes[i] = inv[set * r + s][q.codes[i] as usize];
            }
        }
    }
    Ok(())
}

/// Profiles `q`, reorders every codebook by descending use and returns the profile of the reordered
/// weight (each codebook's counts are then non-increasing).
pub fn reorder_weight_by_frequency(q: &mut QuantizedWeight) -> Result<CodebookProfile> {
    let before = profile_weight(q)?;
    permute_weight(q, &before.permutations())?;
    profile_weight(q)
}

fn check_kv(cb: &KvCodebooks, codes: &[u16], tokens: usize) -> Result<()> {
    let want_cb = cb.kv_heads * cb.groups() * cb.config.entries() * cb.config.v;
    if cb.config.v == 0 || !cb.head_dim.is_multiple_of(cb.config.v) || cb.codebooks.len() != want_cb
    {
        return Err(VqError::Shape(format!(
            "KV codebooks have {} values, expected {want_cb}",
            cb.codebooks.len()
        )));
    }
    let want = tokens * cb.kv_heads * cb.groups();
    if codes.len() != want {
        return Err(VqError::Shape(format!(
            "{} KV codes, expected {want} ([tokens, kv_heads, groups])",
            codes.len()
        )));
    }
    cb.check_code_range("KV", codes)
}

/// Entry-use counts of KV codes `[tokens, kv_heads, head_dim / v]`, codebook `head * groups + group`.
pub fn profile_kv(cb: &KvCodebooks, codes: &[u16], tokens: usize) -> Result<CodebookProfile> {
    check_kv(cb, codes, tokens)?;
    let per_token = cb.kv_heads * cb.groups();
    let e = cb.config.entries();
    let mut counts = vec![0u64; per_token * e];
    for (i, &c) in codes.iter().enumerate() {
        counts[(i % per_token) * e + c as usize] += 1;
    }
    Ok(CodebookProfile {
        codebooks: per_token,
        entries: e,
        counts,
    })
}

/// Reorders KV codebooks (`perms[head * groups + group][new] = old`) and rewrites `codes` to match.
pub fn permute_kv(
    cb: &mut KvCodebooks,
    codes: &mut [u16],
    tokens: usize,
    perms: &[Vec<u32>],
) -> Result<()> {
    check_kv(cb, codes, tokens)?;
    let per_token = cb.kv_heads * cb.groups();
    let (e, v) = (cb.config.entries(), cb.config.v);
    let inv = inverses(perms, per_token, e)?;
    let old = cb.codebooks.clone();
    for (c, p) in perms.iter().enumerate() {
        for (new, &o) in p.iter().enumerate() {
            let dst = (c * e + new) * v;
            let src = (c * e + o as usize) * v;
            cb.codebooks[dst..dst + v].copy_from_slice(&old[src..src + v]);
        }
    }
    for (i, code) in codes.iter_mut().enumerate() {
        *code = inv[i % per_token][*code as usize];
    }
    Ok(())
}

/// Profiles KV codes, reorders the codebooks by descending use, rewrites the codes and returns the
/// profile after reordering.
pub fn reorder_kv_by_frequency(
    cb: &mut KvCodebooks,
    codes: &mut [u16],
    tokens: usize,
) -> Result<CodebookProfile> {
    let before = profile_kv(cb, codes, tokens)?;
    permute_kv(cb, codes, tokens, &before.permutations())?;
    profile_kv(cb, codes, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_order_is_stable_descending() {
        assert_eq!(frequency_order(&[3, 5, 3, 0, 5]), vec![1, 4, 0, 2, 3]);
    }

    #[test]
    fn coverage_and_report() {
        // One codebook of 16 entries: entry 0 used 100 times, the others once.
        let mut counts = vec![1u64; 16];
        counts[0] = 100;
        let p = CodebookProfile {
            codebooks: 1,
            entries: 16,
            counts,
        };
        assert_eq!(p.total(), 115);
        assert!((p.coverage(1) - 100.0 / 115.0).abs() < 1e-12);
        assert!((p.coverage(16) - 1.0).abs() < 1e-12);
        let r = p.report();
        assert_eq!((r.hot_entries, r.used_entries), (1, 16));
        assert!((r.hot_share - 100.0 / 115.0).abs() < 1e-12);
        assert_eq!(
            r.coverage.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![1, 4]
        );
        let text = r.to_string();
        assert!(
            text.contains("hot entries") && text.contains("top-1 87.0%"),
            "{text}"
        );
    }

    #[test]
    fn bad_permutations_are_errors() {
        assert!(inverses(&[vec![0, 0]], 1, 2).is_err());
        assert!(inverses(&[vec![0, 2]], 1, 2).is_err());
        assert!(inverses(&[vec![1, 0]], 2, 2).is_err());
        assert_eq!(inverses(&[vec![1, 0]], 1, 2).unwrap(), vec![vec![1, 0]]);
    }
}
