//! Finding CUDA's C++ headers (`cuda_fp16.h` and friends) for NVRTC.
//!
//! NVRTC compiles in memory and does not know where CUDA is installed; kernels that include
//! `cuda_fp16.h` need its directory passed as `--include-path`. Order searched:
//! 1. `$VQLLM_CUDA_INCLUDE` (may hold several directories separated by `:`)
//! 2. `$CUDA_HOME/include`, `$CUDA_PATH/include`, then `<dir>/../include` for each directory in
//!    `$VQLLM_CUDA_LIB_DIR`
//! 3. `/usr/local/cuda/include`, `/usr/local/cuda/targets/x86_64-linux/include`, `/opt/cuda/include`
//! 4. the pip wheel `nvidia-cuda-runtime`: `nvidia/cu13/include` (CUDA 13) or
//!    `nvidia/cuda_runtime/include` (CUDA 12) under each python3 site-packages directory
//!    (asked from `python3` itself, plus `$VIRTUAL_ENV`, `$CONDA_PREFIX`, `~/.local` and the
//!    system `dist-packages`).
//!
//! The first directory that contains `cuda_fp16.h` wins.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{CudaError, Result};

/// The header whose presence marks a usable include directory.
pub const MARKER_HEADER: &str = "cuda_fp16.h";

/// Sub-directories of a site-packages directory where pip wheels put CUDA headers.
const WHEEL_INCLUDE_DIRS: [&str; 2] = ["nvidia/cu13/include", "nvidia/cuda_runtime/include"];

/// Candidate include directories, in search order, for the given environment lookup and
/// site-packages directories. Pure, so tests can drive it without touching the process env.
pub fn include_candidates_with(
    env: impl Fn(&str) -> Option<OsString>,
    site_packages: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(v) = env("VQLLM_CUDA_INCLUDE").filter(|v| !v.is_empty()) {
        out.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env(var).filter(|v| !v.is_empty()) {
            out.push(PathBuf::from(root).join("include"));
        }
    }
    // A library directory given for libnvrtc (e.g. a pip wheel's `nvidia/cu13/lib`) usually
    // has the headers beside it in `../include`.
    if let Some(v) = env("VQLLM_CUDA_LIB_DIR").filter(|v| !v.is_empty()) {
        for dir in std::env::split_paths(&v) {
            if let Some(parent) = dir.parent() {
                out.push(parent.join("include"));
            }
        }
    }
    for fixed in [
        "/usr/local/cuda/include",
        "/usr/local/cuda/targets/x86_64-linux/include",
        "/opt/cuda/include",
    ] {
        out.push(PathBuf::from(fixed));
    }
    for site in site_packages {
        for sub in WHEEL_INCLUDE_DIRS {
            out.push(site.join(sub));
        }
    }
    let mut unique = Vec::with_capacity(out.len());
    for p in out {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    unique
}

/// The first directory in `candidates` that holds [`MARKER_HEADER`], or
/// [`CudaError::HeadersNotFound`] listing all of them.
pub fn find_include_in(candidates: &[PathBuf]) -> Result<PathBuf> {
    candidates
        .iter()
        .find(|dir| dir.join(MARKER_HEADER).is_file())
        .cloned()
        .ok_or_else(|| CudaError::HeadersNotFound {
            searched: candidates.to_vec(),
        })
}

/// Candidate include directories for this process (environment + python3 site-packages).
pub fn include_candidates() -> Vec<PathBuf> {
    include_candidates_with(|k| std::env::var_os(k), &python_site_packages())
}

/// The CUDA include directory NVRTC should use on this machine.
pub fn find_cuda_include() -> Result<PathBuf> {
    find_include_in(&include_candidates())
}

/// Python site-packages directories that may hold NVIDIA pip wheels: the ones `python3` reports
/// (sysconfig purelib/platlib, `site.getsitepackages()`, the user site) plus common locations.
/// Computed once per process; missing `python3` simply yields fewer entries.
pub fn python_site_packages() -> Vec<PathBuf> {
    static SITES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    SITES.get_or_init(compute_site_packages).clone()
}

fn compute_site_packages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.extend(glob_python_dirs(
                &PathBuf::from(prefix).join("lib"),
                "site-packages",
            ));
        }
    }
    out.extend(ask_python());
    if let Some(home) = std::env::var_os("HOME") {
        out.extend(glob_python_dirs(
            &PathBuf::from(home).join(".local/lib"),
            "site-packages",
        ));
    }
    for base in ["/usr/local/lib", "/usr/lib"] {
        out.extend(glob_python_dirs(Path::new(base), "dist-packages"));
        out.extend(glob_python_dirs(Path::new(base), "site-packages"));
    }
    out.push(PathBuf::from("/usr/lib/python3/dist-packages"));
    out.retain(|p| p.is_dir());
    let mut unique = Vec::new();
    for p in out {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    unique
}

/// `<base>/python3*/<leaf>` directories.
fn glob_python_dirs(base: &Path, leaf: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join(leaf))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn ask_python() -> Vec<PathBuf> {
    const SCRIPT: &str = "import site, sysconfig\n\
        p = sysconfig.get_paths()\n\
        print(p.get('purelib', ''))\n\
        print(p.get('platlib', ''))\n\
        try:\n    [print(s) for s in site.getsitepackages()]\nexcept Exception:\n    pass\n\
        try:\n    print(site.getusersitepackages())\nexcept Exception:\n    pass\n";
    let output = Command::new("python3").arg("-c").arg(SCRIPT).output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn make_include(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MARKER_HEADER), "// fp16\n").unwrap();
    }

    #[test]
    fn explicit_variable_wins_over_cuda_home_and_wheels() {
        let tmp = tempfile::tempdir().unwrap();
        let explicit = tmp.path().join("explicit");
        let home = tmp.path().join("cuda");
        let site = tmp.path().join("site");
        make_include(&explicit);
        make_include(&home.join("include"));
        make_include(&site.join("nvidia/cu13/include"));
        let env = env_of(&[("VQLLM_CUDA_INCLUDE", &explicit), ("CUDA_HOME", &home)]);
        let cands = include_candidates_with(&env, std::slice::from_ref(&site));
        assert_eq!(cands[0], explicit);
        assert_eq!(find_include_in(&cands).unwrap(), explicit);

        // Without the explicit variable CUDA_HOME is next.
        let env = env_of(&[("CUDA_HOME", &home)]);
        let cands = include_candidates_with(&env, std::slice::from_ref(&site));
        assert_eq!(find_include_in(&cands).unwrap(), home.join("include"));
    }

    #[test]
    fn wheel_layout_and_lib_dir_sibling_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let site = tmp.path().join("site-packages");
        make_include(&site.join("nvidia/cu13/include"));
        let none = env_of(&[]);
        let cands = include_candidates_with(&none, std::slice::from_ref(&site));
        // /usr/local/cuda may exist on a developer machine; only assert when it does not.
        if !Path::new("/usr/local/cuda/include/cuda_fp16.h").exists()
            && !Path::new("/opt/cuda/include/cuda_fp16.h").exists()
        {
            assert_eq!(
                find_include_in(&cands).unwrap(),
                site.join("nvidia/cu13/include")
            );
        }
        assert!(cands.contains(&site.join("nvidia/cuda_runtime/include")));

        let unpacked = tmp.path().join("nv/nvidia/cu13");
        make_include(&unpacked.join("include"));
        let lib = unpacked.join("lib");
        let env = env_of(&[("VQLLM_CUDA_LIB_DIR", &lib)]);
        let cands = include_candidates_with(&env, &[]);
        assert!(cands.contains(&unpacked.join("include")));
    }

    #[test]
    fn directory_without_marker_is_skipped_and_error_lists_all() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let missing = tmp.path().join("missing");
        let err = find_include_in(&[empty.clone(), missing.clone()]).unwrap_err();
        match &err {
            CudaError::HeadersNotFound { searched } => {
                assert_eq!(searched, &vec![empty.clone(), missing.clone()])
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&empty.display().to_string()), "{msg}");
        assert!(msg.contains("VQLLM_CUDA_INCLUDE"), "{msg}");

        let good = tmp.path().join("good");
        make_include(&good);
        assert_eq!(
            find_include_in(&[empty, missing, good.clone()]).unwrap(),
            good
        );
    }

    #[test]
    fn empty_variables_are_ignored_and_duplicates_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = PathBuf::new();
        let env = env_of(&[("VQLLM_CUDA_INCLUDE", &empty), ("CUDA_HOME", &empty)]);
        let site = tmp.path().to_path_buf();
        let cands = include_candidates_with(&env, &[site.clone(), site.clone()]);
        assert!(!cands.iter().any(|p| p == Path::new("include")));
        let n = cands.len();
        let mut dedup = cands.clone();
        dedup.dedup();
        assert_eq!(n, dedup.len());
        assert_eq!(
            cands
                .iter()
                .filter(|p| **p == site.join("nvidia/cu13/include"))
                .count(),
            1
        );
    }
}
