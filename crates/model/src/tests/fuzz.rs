//! Fuzz-style robustness: truncate a GGUF at many lengths and mutate header bytes; the reader must
//! return errors (never panic, never allocate beyond the file). Uses the real SmolLM2 GGUF when it
//! is available, and always a synthetic file.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gguf_tests::tiny_llama;
use crate::byte_source::{FileSource, ReadAt};
use crate::gguf::GgufFile;

/// The first `len` bytes of another source.
struct Truncated {
    inner: Arc<dyn ReadAt>,
    len: u64,
}

impl ReadAt for Truncated {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.inner.read_exact_at(offset, buf),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "past truncation",
            )),
        }
    }
}

/// Another source with some bytes replaced.
struct Patched {
    inner: Arc<dyn ReadAt>,
    patches: Vec<(u64, u8)>,
}

impl ReadAt for Patched {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)?;
        for &(at, byte) in &self.patches {
            if at >= offset && at < offset + buf.len() as u64 {
                buf[(at - offset) as usize] = byte;
            }
        }
        Ok(())
    }
}

/// Opens `src` and, if it parses, reads its small tensors; panics are caught and reported.
fn open_and_read_small(
    src: Box<dyn ReadAt>,
    max_tensor_bytes: u64,
) -> std::thread::Result<crate::Result<GgufFile>> {
    catch_unwind(AssertUnwindSafe(|| {
        let f = GgufFile::from_source(src, "fuzz")?;
        let small: Vec<String> = f
            .tensors()
            .iter()
            .filter(|t| t.n_bytes.is_some_and(|b| b <= max_tensor_bytes))
            .take(4)
            .map(|t| t.name.clone())
            .collect();
        for name in small {
            let _ = f.read_f32(&name);
        }
        let _ = crate::ModelConfig::from_gguf(&f);
        let _ = crate::source::WeightSource::linear_weights(&f);
        Ok(f)
    }))
}

/// Runs the truncation and mutation campaign on `base`.
fn fuzz_gguf(
    label: &str,
    base: Arc<dyn ReadAt>,
    seed: u64,
    n_truncations: usize,
    n_mutations: usize,
) {
    let full = GgufFile::from_source(Box::new(base.clone()), label).expect("base file parses");
    let len = base.len();
    let data_offset = full.data_offset();
    let last_end = full
        .tensors()
        .iter()
        .map(|t| data_offset + t.offset + t.n_bytes.unwrap_or(0))
        .max()
        .unwrap_or(data_offset);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Truncations: every short prefix, then random lengths in the header and in the data.
    let mut lengths: Vec<u64> = (0..64.min(len)).collect();
    lengths.extend([
        data_offset.saturating_sub(1),
        data_offset,
        data_offset + 1,
        last_end - 1,
        last_end,
    ]);
    for _ in 0..n_truncations {
        lengths.push(rng.random_range(0..data_offset));
        lengths.push(rng.random_range(data_offset..=last_end));
    }
    for cut in lengths {
        let src = Box::new(Truncated {
            inner: base.clone(),
            len: cut,
        });
        let res = open_and_read_small(src, 1 << 16)
            .unwrap_or_else(|_| panic!("{label}: panic at truncation {cut}"));
        if cut < last_end {
            assert!(res.is_err(), "{label}: truncation at {cut} of {len} parsed");
        } else {
            assert!(
                res.is_ok(),
                "{label}: truncation at {cut} (>= last tensor end {last_end}) failed"
            );
        }
    }

    // Mutations: a few bytes, biased toward the fixed header and the tensor-info region.
    let infos_start = data_offset.saturating_sub(64 * full.tensors().len() as u64);
    let mut n_err = 0;
    for i in 0..n_mutations {
        let n = rng.random_range(1..=4);
        let patches: Vec<(u64, u8)> = (0..n)
            .map(|_| {
                let at = match rng.random_range(0..4) {
                    0 => rng.random_range(0..64.min(data_offset)),
                    1 => rng.random_range(infos_start..data_offset),
                    _ => rng.random_range(0..data_offset),
                };
                let byte = match rng.random_range(0..3) {
                    0 => 0xff,
                    1 => 0,
                    _ => rng.random(),
                };
                (at, byte)
            })
            .collect();
        let src = Box::new(Patched {
            inner: base.clone(),
            patches: patches.clone(),
        });
        let res = open_and_read_small(src, 1 << 16)
            .unwrap_or_else(|_| panic!("{label}: panic at mutation #{i} {patches:?}"));
        n_err += res.is_err() as usize;
    }
    eprintln!("{label}: {n_mutations} mutations, {n_err} rejected, none panicked");
}

#[test]
fn fuzz_synthetic_gguf() {
    let bytes: Arc<dyn ReadAt> = Arc::new(tiny_llama(true));
    fuzz_gguf("synthetic", bytes, 1, 300, 2000);
}

#[test]
fn fuzz_real_gguf_if_present() {
    let Some(path) = crate::find_smollm2_gguf() else {
        eprintln!(
            "note: SmolLM2 GGUF not found (set VQLLM_SMOLLM_GGUF); real-file fuzzing skipped"
        );
        return;
    };
    let src: Arc<dyn ReadAt> = Arc::new(FileSource::open(&path).expect("open real GGUF"));
    fuzz_gguf(&path.display().to_string(), src, 2, 40, 150);
}
