//! Compiled-module cache, in memory and on disk.
//!
//! NVRTC takes tens to hundreds of milliseconds per kernel, and a model run or a benchmark sweep
//! compiles the same specialisations again and again. Modules are keyed by
//! `sha256(source, arch, NVRTC version, options)`: a change of any of them is a new key, so
//! stale entries are never used. On disk each entry is one file `<key>.cubin` in the cache
//! directory (`$VQLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/vqllm`, else `~/.cache/vqllm`), written
//! to a temporary file and renamed into place, so readers never see half a file. A file that
//! fails its checksum or format check is ignored and recompiled (and overwritten).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{CudaError, Result};
use crate::nvrtc::{self, CompileOptions, CompiledModule};

/// File magic of a cache entry.
const MAGIC: &[u8; 8] = b"VQLLMCB\x01";
/// ELF magic that every CUBIN starts with.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The identity of one compiled module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Hashes everything that determines the CUBIN. Each field is length-prefixed so that no
    /// two different inputs hash the same bytes.
    pub fn new(source: &str, arch: &str, nvrtc_version: (i32, i32), options: &[String]) -> Self {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"vqllm-cubin-v1");
        field(source.as_bytes());
        field(arch.as_bytes());
        field(&nvrtc_version.0.to_le_bytes());
        field(&nvrtc_version.1.to_le_bytes());
        field(&(options.len() as u64).to_le_bytes());
        for opt in options {
            field(opt.as_bytes());
        }
        CacheKey(h.finalize().into())
    }

    /// Lower-case hex, 64 characters; also the file stem on disk.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Counters, for tests and `--verbose` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from the in-memory map.
    pub memory_hits: u64,
    /// Served from a valid file on disk.
    pub disk_hits: u64,
    /// Compiled (no valid entry anywhere).
    pub compiles: u64,
    /// Disk entries that existed but were unreadable or corrupt.
    pub corrupt_files: u64,
    /// Disk writes that failed (the module is still returned and kept in memory).
    pub write_errors: u64,
}

/// The default on-disk cache directory: `$VQLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/vqllm`, else
/// `$HOME/.cache/vqllm`; `None` when none of them is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("VQLLM_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("vqllm")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("vqllm")))
}

/// Memory + disk cache of compiled modules. Cheap to share behind an `Arc`; all methods take
/// `&self`.
#[derive(Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<CacheKey, Arc<CompiledModule>>>,
    stats: Mutex<CacheStats>,
}

impl ModuleCache {
    /// A cache that stores files in `dir` (created on first write), or memory only for `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ModuleCache {
            dir,
            memory: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    /// A cache in [`default_cache_dir`].
    pub fn with_default_dir() -> Self {
        Self::new(default_cache_dir())
    }

    /// A cache without a disk tier.
    pub fn memory_only() -> Self {
        Self::new(None)
    }

    /// The disk directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn bump(&self, f: impl FnOnce(&mut CacheStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// The path of `key`'s file on disk.
    pub fn file_for(&self, key: &CacheKey) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cubin", key.hex())))
    }

    /// Compiles `source` with NVRTC for `opts.arch`, or returns the cached module.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        opts: &CompileOptions,
    ) -> Result<Arc<CompiledModule>> {
        let args = opts.to_nvrtc_args()?;
        let version = nvrtc::nvrtc_version()?;
        let key = CacheKey::new(source, &opts.arch, version, &args);
        self.get_or_insert_with(&key, || {
            nvrtc::compile_cubin_with_args(name, source, &opts.arch, &args)
        })
    }

    /// Returns the module for `key` from memory, else from disk, else from `compile` (which is
    /// then stored in both tiers). Errors of `compile` are returned and nothing is stored.
    pub fn get_or_insert_with(
        &self,
        key: &CacheKey,
        compile: impl FnOnce() -> Result<CompiledModule>,
    ) -> Result<Arc<CompiledModule>> {
        if let Some(m) = self.memory.lock().ok().and_then(|m| m.get(key).cloned()) {
            self.bump(|s| s.memory_hits += 1);
            return Ok(m);
        }
        if let Some(path) = self.file_for(key) {
            if path.exists() {
                match read_entry(&path) {
                    Some(module) => {
                        self.bump(|s| s.disk_hits += 1);
                        return Ok(self.remember(key, module));
                    }
                    None => self.bump(|s| s.corrupt_files += 1),
                }
            }
        }
        let module = compile()?;
        self.bump(|s| s.compiles += 1);
        if let Some(path) = self.file_for(key) {
            if write_entry(&path, &module).is_err() {
                self.bump(|s| s.write_errors += 1);
            }
        }
        Ok(self.remember(key, module))
    }

    fn remember(&self, key: &CacheKey, module: CompiledModule) -> Arc<CompiledModule> {
        let module = Arc::new(module);
        if let Ok(mut m) = self.memory.lock() {
            m.insert(*key, module.clone());
        }
        module
    }

    /// Drops the in-memory tier (the disk tier stays).
    pub fn clear_memory(&self) {
        if let Ok(mut m) = self.memory.lock() {
            m.clear();
        }
    }
}

/// Serialises a module: magic, log, cubin, then sha256 of all preceding bytes.
fn encode(module: &CompiledModule) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + module.log.len() + module.cubin.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(module.log.len() as u64).to_le_bytes());
    out.extend_from_slice(module.log.as_bytes());
    out.extend_from_slice(&(module.cubin.len() as u64).to_le_bytes());
    out.extend_from_slice(&module.cubin);
    let digest: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&digest);
    out
}

/// Parses [`encode`]'s output; `None` for anything malformed.
fn decode(bytes: &[u8]) -> Option<CompiledModule> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    let expected: [u8; 32] = Sha256::digest(body).into();
    if digest != expected {
        return None;
    }
    let rest = body.strip_prefix(MAGIC.as_slice())?;
    let (log, rest) = take_sized(rest)?;
    let (cubin, rest) = take_sized(rest)?;
    if !rest.is_empty() || !cubin.starts_with(ELF_MAGIC) {
        return None;
    }
    let log = String::from_utf8(log.to_vec()).ok()?;
    Some(CompiledModule::new(cubin.to_vec(), log))
}

fn take_sized(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).ok()?;
    let end = 8usize.checked_add(len)?;
    Some((bytes.get(8..end)?, bytes.get(end..)?))
}

fn read_entry(path: &Path) -> Option<CompiledModule> {
    decode(&std::fs::read(path).ok()?)
}

fn write_entry(path: &Path, module: &CompiledModule) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CudaError::Io { path, source }
    };
    let dir = path
        .parent()
        .ok_or_else(|| CudaError::InvalidArgument("cache file has no directory".into()))?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&encode(module)).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn fake_module(seed: u64) -> CompiledModule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut cubin = ELF_MAGIC.to_vec();
        cubin.extend((0..rng.random_range(10..500)).map(|_| rng.random::<u8>()));
        let log = "ptxas info    : Compiling entry function 'k' for 'sm_80'\n\
                   ptxas info    : Used 12 registers, used 0 barriers, 64 bytes smem"
            .to_string();
        CompiledModule::new(cubin, log)
    }

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn key_is_stable_and_sensitive_to_every_field() {
        let base = CacheKey::new("src", "sm_80", (13, 0), &opts(&["-a", "-b"]));
        assert_eq!(
            base,
            CacheKey::new("src", "sm_80", (13, 0), &opts(&["-a", "-b"]))
        );
        // Pinned value (computed independently with Python's hashlib over the same
        // length-prefixed fields): a change of the scheme must be deliberate, it orphans files.
        assert_eq!(
            base.hex(),
            "f5f2efea4524fb46c6dfc654ce445e59a99baa7ff2ee1fcaae0023783a41aa4c"
        );
        let variants = [
            CacheKey::new("src ", "sm_80", (13, 0), &opts(&["-a", "-b"])),
            CacheKey::new("src", "sm_90", (13, 0), &opts(&["-a", "-b"])),
            CacheKey::new("src", "sm_80", (13, 1), &opts(&["-a", "-b"])),
            CacheKey::new("src", "sm_80", (12, 0), &opts(&["-a", "-b"])),
            CacheKey::new("src", "sm_80", (13, 0), &opts(&["-b", "-a"])),
            CacheKey::new("src", "sm_80", (13, 0), &opts(&["-a-b"])),
            CacheKey::new("src", "sm_80", (13, 0), &opts(&["-a", "-b", ""])),
            // Field boundaries matter: moving text between source and arch is a new key.
            CacheKey::new("srcs", "m_80", (13, 0), &opts(&["-a", "-b"])),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
    }

    #[test]
    fn encode_decode_roundtrip_and_rejects_any_flipped_byte() {
        let m = fake_module(1);
        let bytes = encode(&m);
        assert_eq!(decode(&bytes), Some(m.clone()));
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let mut bad = bytes.clone();
            let i = rng.random_range(0..bad.len());
            bad[i] ^= 1 << rng.random_range(0..8);
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        for cut in [0, 1, 8, 20, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "truncated to {cut}");
        }
    }

    #[test]
    fn memory_then_disk_then_compile() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("k", "sm_80", (13, 0), &[]);
        let m = fake_module(2);

        let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
        let got = cache.get_or_insert_with(&key, || Ok(m.clone())).unwrap();
        assert_eq!(*got, m);
        assert_eq!(got.resources[0].registers, 12);
        let again = cache
            .get_or_insert_with(&key, || panic!("must come from memory"))
            .unwrap();
        assert_eq!(*again, m);
        assert_eq!(
            cache.stats(),
            CacheStats {
                memory_hits: 1,
                compiles: 1,
                ..Default::default()
            }
        );
        assert!(cache.file_for(&key).unwrap().is_file());

        // A fresh process (new cache object) reads the file instead of compiling.
        let cache2 = ModuleCache::new(Some(dir.path().to_path_buf()));
        let from_disk = cache2
            .get_or_insert_with(&key, || panic!("must come from disk"))
            .unwrap();
        assert_eq!(*from_disk, m);
        assert_eq!(cache2.stats().disk_hits, 1);
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_file_is_ignored_recompiled_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("k2", "sm_89", (13, 5), &opts(&["-x"]));
        let good = fake_module(3);
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
        let path = cache.file_for(&key).unwrap();
        std::fs::write(&path, b"VQLLMCB\x01 garbage that is not a module").unwrap();

        let got = cache.get_or_insert_with(&key, || Ok(good.clone())).unwrap();
        assert_eq!(*got, good);
        let s = cache.stats();
        assert_eq!((s.corrupt_files, s.compiles, s.disk_hits), (1, 1, 0));
        // The file was rewritten and is now valid for a new reader.
        assert_eq!(read_entry(&path), Some(good.clone()));

        // Truncated file (e.g. a crash with a non-atomic writer) is also recovered.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let cache3 = ModuleCache::new(Some(dir.path().to_path_buf()));
        let got = cache3
            .get_or_insert_with(&key, || Ok(good.clone()))
            .unwrap();
        assert_eq!(*got, good);
        assert_eq!(cache3.stats().corrupt_files, 1);
    }

    #[test]
    fn compile_errors_are_not_cached() {
        let cache = ModuleCache::memory_only();
        let key = CacheKey::new("bad", "sm_80", (13, 0), &[]);
        let err = cache.get_or_insert_with(&key, || {
            Err(CudaError::Compile {
                name: "bad".into(),
                log: "error".into(),
            })
        });
        assert!(matches!(err, Err(CudaError::Compile { .. })));
        let ok = cache
            .get_or_insert_with(&key, || Ok(fake_module(4)))
            .unwrap();
        assert_eq!(*ok, fake_module(4));
        assert_eq!(cache.stats().compiles, 1);
    }

    #[test]
    fn unwritable_dir_still_returns_module() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file-not-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let cache = ModuleCache::new(Some(blocker.join("sub")));
        let key = CacheKey::new("k", "sm_80", (13, 0), &[]);
        let got = cache
            .get_or_insert_with(&key, || Ok(fake_module(5)))
            .unwrap();
        assert_eq!(*got, fake_module(5));
        assert_eq!(cache.stats().write_errors, 1);
    }
}
