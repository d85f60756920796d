//! VQ configurations `VQ<v, b, r>` with a codebook scope, the presets of DESIGN.md section 2, and parsing.

use crate::error::{Result, VqError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which part of a tensor shares one codebook set (the codebook *switch axes*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One codebook set for the whole weight tensor (AQLM, QuIP#).
    Tensor,
    /// One codebook set per `rows x cols` tile of a `[out, in]` weight (GPTVQ); switch axes M and N.
    Tile { rows: usize, cols: usize },
    /// KV cache: one codebook per (layer, KV head, group of `v` channels) (CQ); switch axes H and C.
    KvChannelGroup,
}

/// Where codebook entries come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodebookKind {
    /// Entries learned by k-means / residual k-means and stored as fp16.
    Learned,
    /// QuIP#'s E8P lattice: 16-bit codes decoded by bit operations from a 256-entry abs table.
    /// Requires `v = 8`, `b = 16`.
    E8p,
}

/// A vector-quantization configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VqConfig {
    /// Elements per vector (2, 4, 8 or 16). Weight vectors run along the input (reduction) axis.
    pub v: usize,
    /// Index bits per code: each codebook has `2^b` entries (1..=16).
    pub b: u32,
    /// Residual codebooks whose entries are summed (1..=4).
    pub r: usize,
    /// Codebook scope.
    pub scope: Scope,
    /// Learned entries or the E8P lattice.
    pub codebook: CodebookKind,
    /// One fp16 scale per output channel (AQLM `scales[out]`, QuIP# `SV`).
    pub per_channel_scale: bool,
    /// Randomized Hadamard incoherence on the weight (QuIP#): activations get a transform at run time.
    pub hadamard: bool,
}

/// Names of every preset, in the order of DESIGN.md section 2.
pub const PRESET_NAMES: &[&str] = &[
    "quip4",
    "aqlm3",
    "gptvq2",
    "cq4",
    "cq2",
    "aqlm-2x8",
    "aqlm-1x16",
];

/// The presets that quantize weights (the others are KV-cache presets).
pub const WEIGHT_PRESETS: &[&str] = &["quip4", "aqlm3", "gptvq2", "aqlm-2x8", "aqlm-1x16"];

impl VqConfig {
    /// A learned, tensor-scoped configuration without scales; validated.
    pub fn new(v: usize, b: u32, r: usize) -> Result<Self> {
        let c = Self {
            v,
            b,
            r,
            scope: Scope::Tensor,
            codebook: CodebookKind::Learned,
            per_channel_scale: false,
            hadamard: false,
        };
        c.validate()?;
        Ok(c)
    }

    /// Looks up a preset by name (see [`PRESET_NAMES`]).
    pub fn preset(name: &str) -> Result<Self> {
        let learned = |v, b, r, scope, scale| Self {
            v,
            b,
            r,
            scope,
            codebook: CodebookKind::Learned,
            per_channel_scale: scale,
            hadamard: false,
        };
        let c = match name.to_ascii_lowercase().as_str() {
            "quip4" => Self {
                v: 8,
                b: 16,
                r: 2,
                scope: Scope::Tensor,
                codebook: CodebookKind::E8p,
                per_channel_scale: true,
                hadamard: true,
            },
            "aqlm3" => learned(8, 12, 2, Scope::Tensor, true),
            "gptvq2" => learned(
                4,
                8,
                1,
                Scope::Tile {
                    rows: 256,
                    cols: 256,
                },
                false,
            ),
            "cq4" => learned(2, 8, 1, Scope::KvChannelGroup, false),
            "cq2" => learned(4, 8, 1, Scope::KvChannelGroup, false),
            "aqlm-2x8" | "aqlm2x8" => learned(8, 8, 2, Scope::Tensor, true),
            "aqlm-1x16" | "aqlm1x16" => learned(8, 16, 1, Scope::Tensor, true),
            _ => {
                return Err(VqError::UnknownPreset {
                    name: name.to_string(),
                    known: PRESET_NAMES.join(", "),
                })
            }
        };
        Ok(c)
    }

    /// Checks the ranges of DESIGN.md section 2 and the constraints of the codebook kind.
    pub fn validate(&self) -> Result<()> {
        if ![2, 4, 8, 16].contains(&self.v) {
            return Err(VqError::InvalidConfig(format!(
                "vector size v={} must be one of 2, 4, 8, 16",
                self.v
            )));
        }
        if !(1..=16).contains(&self.b) {
            return Err(VqError::InvalidConfig(format!(
                "index bits b={} must be in 1..=16",
                self.b
            )));
        }
        if !(1..=4).contains(&self.r) {
            return Err(VqError::InvalidConfig(format!(
                "residual count r={} must be in 1..=4",
                self.r
            )));
        }
        if let Scope::Tile { rows, cols } = self.scope {
            if rows == 0 || cols == 0 || cols % self.v != 0 {
                return Err(VqError::InvalidConfig(format!(
                    "tile {rows}x{cols} must be non-empty with columns divisible by v={}",
                    self.v
                )));
            }
        }
        if self.codebook == CodebookKind::E8p && (self.v != 8 || self.b != 16) {
            return Err(VqError::InvalidConfig(
                "the E8P lattice codebook needs v=8 and b=16".into(),
            ));
        }
        if self.scope == Scope::KvChannelGroup
            && (self.hadamard || self.codebook != CodebookKind::Learned)
        {
            return Err(VqError::InvalidConfig(
                "KV-cache configs use learned codebooks without Hadamard".into(),
            ));
        }
        Ok(())
    }

    /// Entries per codebook, `2^b`.
    pub fn entries(&self) -> usize {
        1usize << self.b
    }

    /// Bits per weight element, `b * r / v` (codebooks and scales not counted).
    pub fn bits_per_element(&self) -> f64 {
        (self.b as f64) * (self.r as f64) / (self.v as f64)
    }

    /// True for KV-cache configurations.
    pub fn is_kv(&self) -> bool {
        self.scope == Scope::KvChannelGroup
    }

    /// Checks that a `[rows, cols]` weight (`[out, in]`) fits this config: `cols % v == 0`, and for tile
    /// scopes the tile must divide... the shape: ragged edge tiles are allowed, they get their own codebook.
    pub fn check_weight_shape(&self, rows: usize, cols: usize) -> Result<()> {
        if self.is_kv() {
            return Err(VqError::InvalidConfig(
                "a KV-cache config cannot quantize a weight matrix".into(),
            ));
        }
        if rows == 0 || cols == 0 {
            return Err(VqError::Shape(format!("empty weight [{rows}, {cols}]")));
        }
        if !cols.is_multiple_of(self.v) {
            return Err(VqError::Shape(format!(
                "input dimension {cols} is not divisible by the vector size v={}",
                self.v
            )));
        }
        Ok(())
    }

    /// Number of codebook sets for a `[rows, cols]` weight (1 unless tiled).
    pub fn num_codebook_sets(&self, rows: usize, cols: usize) -> usize {
        match self.scope {
            Scope::Tile { rows: tr, cols: tc } => rows.div_ceil(tr) * cols.div_ceil(tc),
            _ => 1,
        }
    }

    /// Index of the codebook set used by weight row `row` and input column `col`.
    pub fn codebook_set_of(&self, cols: usize, row: usize, col: usize) -> usize {
        match self.scope {
            Scope::Tile { rows: tr, cols: tc } => (row / tr) * cols.div_ceil(tc) + col / tc,
            _ => 0,
        }
    }
}

impl fmt::Display for VqConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vq<{},{},{}>", self.v, self.b, self.r)?;
        match self.scope {
            Scope::Tensor => {}
            Scope::Tile { rows, cols } => write!(f, ":tile={rows}x{cols}")?,
            Scope::KvChannelGroup => write!(f, ":kv")?,
        }
        if self.codebook == CodebookKind::E8p {
            write!(f, ":e8p")?;
        }
        if self.per_channel_scale {
            write!(f, ":scale")?;
        }
        if self.hadamard {
            write!(f, ":rht")?;
        }
        Ok(())
    }
}

/// The entries of a comma-separated list of presets or config strings (CLI preset lists, test filters): split at
/// commas, except a comma followed by a digit, which belongs to a config string (`vq<8,13,1>,aqlm3` is two entries,
/// and so is the partial `vq<2,vq<16`). Entries are trimmed; empty ones are dropped.
pub fn split_config_list(list: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let chars: Vec<char> = list.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        if ch == ',' && !chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
            parts.push(String::new());
        } else {
            parts.last_mut().unwrap().push(ch);
        }
    }
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

impl FromStr for VqConfig {
    type Err = VqError;

    /// Parses a preset name or `vq<v,b,r>` followed by optional `:tile=RxC`, `:kv`, `:e8p`, `:scale`, `:rht`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if !s.to_ascii_lowercase().starts_with("vq<") {
            return Self::preset(s);
        }
        let bad = |why: &str| VqError::InvalidConfig(format!("cannot parse `{s}`: {why}"));
        let close = s.find('>').ok_or_else(|| bad("missing `>`"))?;
        let nums: Vec<&str> = s[3..close].split(',').map(str::trim).collect();
        if nums.len() != 3 {
            return Err(bad("expected three numbers, as in vq<8,12,2>"));
        }
        let v: usize = nums[0].parse().map_err(|_| bad("v is not a number"))?;
        let b: u32 = nums[1].parse().map_err(|_| bad("b is not a number"))?;
        let r: usize = nums[2].parse().map_err(|_| bad("r is not a number"))?;
        let mut c = Self {
            v,
            b,
            r,
            scope: Scope::Tensor,
            codebook: CodebookKind::Learned,
            per_channel_scale: false,
            hadamard: false,
        };
        for opt in s[close + 1..].split(':').filter(|o| !o.is_empty()) {
            match opt {
                "kv" => c.scope = Scope::KvChannelGroup,
                "e8p" => c.codebook = CodebookKind::E8p,
                "scale" => c.per_channel_scale = true,
                "rht" => c.hadamard = true,
                t if t.starts_with("tile=") => {
                    let (r, cc) = t[5..]
                        .split_once('x')
                        .ok_or_else(|| bad("tile must be RxC"))?;
                    c.scope = Scope::Tile {
                        rows: r.parse().map_err(|_| bad("tile rows"))?,
                        cols: cc.parse().map_err(|_| bad("tile cols"))?,
                    };
                }
                other => return Err(bad(&format!("unknown option `{other}`"))),
            }
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_keep_config_strings_whole() {
        assert_eq!(
            split_config_list("vq<8,13,1>,aqlm3"),
            ["vq<8,13,1>", "aqlm3"]
        );
        assert_eq!(split_config_list("vq<8,13"), ["vq<8,13"]);
        assert_eq!(
            split_config_list("aqlm-2x8, vq<2,vq<16,"),
            ["aqlm-2x8", "vq<2", "vq<16"]
        );
        assert_eq!(split_config_list("gptvq2,vq<2"), ["gptvq2", "vq<2"]);
        assert!(split_config_list(" , ").is_empty());
        assert_eq!(
            split_config_list("quip4, vq<8,16,2>:e8p:scale,aqlm3"),
            ["quip4", "vq<8,16,2>:e8p:scale", "aqlm3"]
        );
        assert_eq!(split_config_list("gptvq2"), ["gptvq2"]);
    }

    #[test]
    fn presets_are_valid_and_have_expected_bits() {
        let bits = [4.0, 3.0, 2.0, 4.0, 2.0, 2.0, 2.0];
        for (name, want) in PRESET_NAMES.iter().zip(bits) {
            let c = VqConfig::preset(name).unwrap();
            c.validate().unwrap();
            assert_eq!(c.bits_per_element(), want, "{name}");
        }
    }

    #[test]
    fn display_parse_round_trip() {
        for name in PRESET_NAMES {
            let c = VqConfig::preset(name).unwrap();
            let back: VqConfig = c.to_string().parse().unwrap();
            assert_eq!(c, back, "{name}");
        }
        let c: VqConfig = "vq<8,12,2>".parse().unwrap();
        assert_eq!((c.v, c.b, c.r), (8, 12, 2));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        for s in [
            "vq<3,8,1>",
            "vq<8,0,1>",
            "vq<8,17,1>",
            "vq<8,8,5>",
            "vq<8,8>",
            "vq<a,8,1>",
            "vq<8,8,1:x",
            "nope",
        ] {
            assert!(s.parse::<VqConfig>().is_err(), "{s}");
        }
        assert!(matches!(
            VqConfig::preset("zzz"),
            Err(VqError::UnknownPreset { .. })
        ));
        assert!(VqConfig::preset("aqlm3")
            .unwrap()
            .check_weight_shape(16, 12)
            .is_err());
    }

    #[test]
    fn tile_codebook_sets() {
        let c = VqConfig::preset("gptvq2").unwrap();
        assert_eq!(c.num_codebook_sets(300, 512), 4);
        assert_eq!(c.codebook_set_of(512, 299, 300), 3);
    }
}
