//! Finding the CUDA shared libraries at run time.
//!
//! cudarc (feature `dynamic-loading`) opens `libnvrtc`, `libcuda` and `libcublas` by bare file
//! name (`libnvrtc.so`, `libnvrtc.so.13`, ...) through `dlopen`, so only the dynamic loader's
//! search path counts (`LD_LIBRARY_PATH` as it was at process start, `ld.so.cache`, `/usr/lib`),
//! and a miss is a panic inside cudarc. This module runs first: it checks whether the library
//! can be opened by name and, if not, opens it by full path from the usual install places. Once
//! a library with the soname `libnvrtc.so.13` is loaded, the later `dlopen("libnvrtc.so.13")`
//! of cudarc finds that same object, so no environment variable is needed for those places.
//!
//! Searched directories, in order (first hit wins):
//! 1. `$VQLLM_CUDA_LIB_DIR` (one directory, or several separated by `:`)
//! 2. `$CUDA_HOME/lib64`, `$CUDA_HOME/lib`, `$CUDA_PATH/lib64`, `$CUDA_PATH/lib`
//! 3. `/usr/local/cuda/lib64`, `/usr/local/cuda/targets/x86_64-linux/lib`
//! 4. the pip wheels under python3's site-packages: `nvidia/cu13/lib` (CUDA 13 wheels
//!    `nvidia-cuda-nvrtc`, `nvidia-cublas`), `nvidia/cuda_nvrtc/lib`, `nvidia/cublas/lib`
//!    (CUDA 12 layout)
//!
//! A full file path may also be given in `$VQLLM_NVRTC_LIB` / `$VQLLM_CUBLAS_LIB`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{CudaError, Result};
use crate::headers::python_site_packages;

/// Libraries opened by full path; kept loaded for the life of the process.
static PINNED: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());

/// One CUDA library that this crate may need to locate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaLib {
    /// `libnvrtc` (run-time compiler).
    Nvrtc,
    /// `libcuda` (driver API; comes with the NVIDIA driver).
    Driver,
    /// `libcublas` (and its dependency `libcublasLt`).
    Cublas,
}

impl CudaLib {
    fn stem(self) -> &'static str {
        match self {
            CudaLib::Nvrtc => "nvrtc",
            CudaLib::Driver => "cuda",
            CudaLib::Cublas => "cublas",
        }
    }

    fn path_env(self) -> Option<&'static str> {
        match self {
            CudaLib::Nvrtc => Some("VQLLM_NVRTC_LIB"),
            CudaLib::Cublas => Some("VQLLM_CUBLAS_LIB"),
            CudaLib::Driver => None,
        }
    }

    /// Whether cudarc's own by-name lookup succeeds now.
    fn present_by_name(self) -> bool {
        // SAFETY: these only try `dlopen` with a list of names and close the handle again.
        unsafe {
            match self {
                CudaLib::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                CudaLib::Driver => cudarc::driver::sys::is_culib_present(),
                CudaLib::Cublas => cudarc::cublas::sys::is_culib_present(),
            }
        }
    }

    fn hint(self) -> &'static str {
        match self {
            CudaLib::Driver => {
                "libcuda.so.1 comes with the NVIDIA driver: is there a GPU and a driver on this \
                 machine (nvidia-smi)?"
            }
            CudaLib::Nvrtc => {
                "Set LD_LIBRARY_PATH or VQLLM_CUDA_LIB_DIR to the directory holding \
                 libnvrtc.so.13 (pip wheel nvidia-cuda-nvrtc: site-packages/nvidia/cu13/lib)"
            }
            CudaLib::Cublas => {
                "Set LD_LIBRARY_PATH or VQLLM_CUDA_LIB_DIR to the directory holding \
                 libcublas.so.13 (CUDA toolkit lib64, or pip wheel nvidia-cublas: \
                 site-packages/nvidia/cu13/lib)"
            }
        }
    }

    fn unavailable(self, msg: String) -> CudaError {
        match self {
            CudaLib::Nvrtc => CudaError::NvrtcUnavailable(msg),
            CudaLib::Driver => CudaError::DriverUnavailable(msg),
            CudaLib::Cublas => CudaError::CublasUnavailable(msg),
        }
    }
}

/// The file names cudarc tries for a library (e.g. `libnvrtc.so`, `libnvrtc.so.13`, ...).
pub fn candidate_names(lib: CudaLib) -> Vec<String> {
    let mut names = Vec::new();
    for n in cudarc::get_lib_name_candidates(lib.stem()) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The directories searched for CUDA libraries when the loader's path does not have them.
pub fn library_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os("VQLLM_CUDA_LIB_DIR") {
        dirs.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let root = PathBuf::from(root);
            dirs.push(root.join("lib64"));
            dirs.push(root.join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.push(PathBuf::from("/usr/local/cuda/targets/x86_64-linux/lib"));
    for site in python_site_packages() {
        for sub in [
            "nvidia/cu13/lib",
            "nvidia/cuda_nvrtc/lib",
            "nvidia/cublas/lib",
        ] {
            dirs.push(site.join(sub));
        }
    }
    dirs.retain(|d| d.is_dir());
    let mut unique = Vec::new();
    for d in dirs {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

fn pin(path: &Path) -> std::result::Result<(), String> {
    // SAFETY: loading a CUDA library runs its initialisers, which is what cudarc would do too.
    match unsafe { libloading::Library::new(path.as_os_str()) } {
        Ok(lib) => {
            if let Ok(mut pinned) = PINNED.lock() {
                pinned.push(lib);
            }
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn find_in_dirs(lib: CudaLib, dirs: &[PathBuf]) -> Option<PathBuf> {
    let names = candidate_names(lib);
    for dir in dirs {
        for name in &names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn locate(lib: CudaLib) -> std::result::Result<(), String> {
    let mut tried = Vec::new();
    if let Some(var) = lib.path_env() {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(p);
            pin(&p).map_err(|e| format!("${var} is set but could not be loaded: {e}"))?;
            if lib.present_by_name() {
                return Ok(());
            }
            return Err(format!(
                "${var}={} loaded, but its soname is not one of {:?}",
                p.display(),
                candidate_names(lib)
            ));
        }
    }
    if lib.present_by_name() {
        return Ok(());
    }
    let dirs = library_search_dirs();
    if let Some(path) = find_in_dirs(lib, &dirs) {
        if lib == CudaLib::Cublas {
            // libcublas needs libcublasLt from the same directory; pre-load it by path too.
            if let Some(dir) = path.parent() {
                if let Some(lt) = lt_in(dir) {
                    let _ = pin(&lt);
                }
            }
        }
        match pin(&path) {
            Ok(()) if lib.present_by_name() => return Ok(()),
            Ok(()) => tried.push(format!("{} (loaded, but soname differs)", path.display())),
            Err(e) => tried.push(e),
        }
    }
    Err(format!(
        "tried the loader path (LD_LIBRARY_PATH, ld.so.cache) for {:?} and the directories [{}]{}. \
         {}",
        candidate_names(lib),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if tried.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", tried.join("; "))
        },
        lib.hint()
    ))
}

fn lt_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("libcublasLt.so"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Makes sure `lib` can be used by cudarc, loading it by full path if needed. The outcome is
/// computed once per process; later calls return the same answer.
pub fn ensure(lib: CudaLib) -> Result<()> {
    static NVRTC: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    static DRIVER: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    static CUBLAS: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let cell = match lib {
        CudaLib::Nvrtc => &NVRTC,
        CudaLib::Driver => &DRIVER,
        CudaLib::Cublas => &CUBLAS,
    };
    cell.get_or_init(|| locate(lib))
        .clone()
        .map_err(|msg| lib.unavailable(msg))
}

/// Runs `f`, turning a panic inside cudarc (e.g. a symbol missing from an old library) into
/// `on_panic`'s error instead of unwinding into the caller.
pub(crate) fn guard<T>(what: CudaLib, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(what.unavailable(format!("cudarc panicked: {msg}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names_cover_cuda13_sonames_without_duplicates() {
        let names = candidate_names(CudaLib::Nvrtc);
        assert!(names.contains(&"libnvrtc.so.13".to_string()), "{names:?}");
        assert!(names.contains(&"libnvrtc.so".to_string()), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(candidate_names(CudaLib::Driver).contains(&"libcuda.so.1".to_string()));
        assert!(candidate_names(CudaLib::Cublas).contains(&"libcublas.so.13".to_string()));
    }

    #[test]
    fn finds_library_file_in_given_dirs_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        assert_eq!(find_in_dirs(CudaLib::Nvrtc, &[a.clone(), b.clone()]), None);
        std::fs::write(b.join("libnvrtc.so.13"), b"").unwrap();
        assert_eq!(
            find_in_dirs(CudaLib::Nvrtc, &[a.clone(), b.clone()]),
            Some(b.join("libnvrtc.so.13"))
        );
        std::fs::write(a.join("libnvrtc.so"), b"").unwrap();
        assert_eq!(
            find_in_dirs(CudaLib::Nvrtc, &[a.clone(), b]),
            Some(a.join("libnvrtc.so"))
        );
        std::fs::write(a.join("libcublasLt.so.13"), b"").unwrap();
        assert_eq!(lt_in(&a), Some(a.join("libcublasLt.so.13")));
    }

    #[test]
    fn guard_turns_panics_into_errors() {
        let r: Result<()> = guard(CudaLib::Cublas, || panic!("Missing symbol cublasFoo"));
        match r {
            Err(CudaError::CublasUnavailable(msg)) => assert!(msg.contains("cublasFoo"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(guard(CudaLib::Nvrtc, || Ok(5)).unwrap(), 5);
    }
}
