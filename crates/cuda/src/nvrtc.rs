//! Run-time compilation of CUDA C++ to CUBIN with NVRTC.
//!
//! CUBIN, not PTX: PTX from an NVRTC newer than the installed driver fails to load
//! (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`), while a CUBIN for the exact `sm_XX` loads on any
//! driver that knows the GPU. cudarc's safe NVRTC API only returns PTX, so this module uses
//! `cudarc::nvrtc::sys` directly. ptxas runs with `-v`, and its report (registers, shared
//! memory, spills per kernel) is parsed into [`KernelResources`]: the heuristics use it to
//! compute register and shared-memory slack without a GPU.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;

use cudarc::nvrtc::sys;

use crate::error::{CudaError, Result};
use crate::headers;
use crate::libs::{self, CudaLib};

/// How to compile one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Target architecture: `sm_80`, `sm_86`, `sm_89`, `sm_90`, `sm_90a`, ...
    pub arch: String,
    /// Pass `--use_fast_math` (approximate division/sqrt/exp, flush denormals, fmad).
    pub use_fast_math: bool,
    /// Ask ptxas for its resource report (`--ptxas-options=-v`); on by default because the
    /// heuristics read it.
    pub ptxas_verbose: bool,
    /// Extra include directories, searched before the CUDA headers.
    pub include_dirs: Vec<PathBuf>,
    /// Find CUDA's own headers ([`headers::find_cuda_include`]) and add them to the include path.
    /// Turn off only for sources that include nothing.
    pub cuda_headers: bool,
    /// Any further NVRTC options, passed verbatim (e.g. `-DTILE=64`, `-lineinfo`).
    pub extra: Vec<String>,
}

impl CompileOptions {
    /// Defaults for `arch`: C++17, ptxas report on, CUDA headers found automatically.
    pub fn new(arch: impl Into<String>) -> Self {
        CompileOptions {
            arch: arch.into(),
            use_fast_math: false,
            ptxas_verbose: true,
            include_dirs: Vec::new(),
            cuda_headers: true,
            extra: Vec::new(),
        }
    }

    /// Builder: toggle `--use_fast_math`.
    pub fn fast_math(mut self, on: bool) -> Self {
        self.use_fast_math = on;
        self
    }

    /// Builder: append a verbatim NVRTC option.
    pub fn option(mut self, opt: impl Into<String>) -> Self {
        self.extra.push(opt.into());
        self
    }

    /// The full NVRTC option list (header discovery included), as passed to the compiler and
    /// hashed into the cache key.
    pub fn to_nvrtc_args(&self) -> Result<Vec<String>> {
        validate_arch(&self.arch)?;
        let mut args = vec![
            format!("--gpu-architecture={}", self.arch),
            "-std=c++17".to_string(),
            "-default-device".to_string(),
        ];
        if self.use_fast_math {
            args.push("--use_fast_math".to_string());
        }
        if self.ptxas_verbose {
            args.push("--ptxas-options=-v".to_string());
        }
        for dir in &self.include_dirs {
            args.push(format!("--include-path={}", dir.display()));
        }
        if self.cuda_headers {
            let dir = headers::find_cuda_include()?;
            args.push(format!("--include-path={}", dir.display()));
        }
        args.extend(self.extra.iter().cloned());
        Ok(args)
    }
}

/// Checks that `arch` looks like `sm_<digits>` with an optional `a`/`f` suffix.
pub fn validate_arch(arch: &str) -> Result<()> {
    let ok = arch.strip_prefix("sm_").is_some_and(|rest| {
        let digits = rest.trim_end_matches(['a', 'f']);
        digits.len() >= 2
            && digits.len() <= 3
            && digits.bytes().all(|b| b.is_ascii_digit())
            && rest.len() - digits.len() <= 1
    });
    if ok {
        Ok(())
    } else {
        Err(CudaError::InvalidArgument(format!(
            "architecture `{arch}` is not of the form sm_XX (e.g. sm_80, sm_89, sm_90, sm_90a)"
        )))
    }
}

/// Per-kernel resource usage as reported by ptxas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// The kernel's (mangled, or `extern "C"`) name.
    pub name: String,
    /// 32-bit registers per thread.
    pub registers: u32,
    /// Static shared memory in bytes (`__shared__` arrays; dynamic shared memory is extra).
    pub static_smem: u32,
    /// Bytes of spill stores to local memory.
    pub spill_stores: u32,
    /// Bytes of spill loads from local memory.
    pub spill_loads: u32,
    /// Per-thread stack frame in bytes (local arrays, spills).
    pub stack_frame: u32,
    /// Constant bank 0 bytes (kernel parameters and such).
    pub cmem: u32,
}

/// The result of one compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledModule {
    /// The CUBIN (an ELF image) for the requested architecture.
    pub cubin: Vec<u8>,
    /// NVRTC's log including ptxas' report; empty when there was nothing to say.
    pub log: String,
    /// One entry per kernel found in the ptxas report.
    pub resources: Vec<KernelResources>,
}

impl CompiledModule {
    /// Builds a module from a CUBIN and its log, parsing the resources from the log.
    pub fn new(cubin: Vec<u8>, log: String) -> Self {
        let resources = parse_ptxas_log(&log);
        CompiledModule {
            cubin,
            log,
            resources,
        }
    }

    /// The resources of kernel `name`, if ptxas reported it.
    pub fn kernel(&self, name: &str) -> Option<&KernelResources> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// The NVRTC version as (major, minor), e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    libs::ensure(CudaLib::Nvrtc)?;
    libs::guard(CudaLib::Nvrtc, || {
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: plain out-parameters.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result()?;
        Ok((major, minor))
    })
}

/// The `sm_XX` numbers this NVRTC can target (e.g. 75, 80, ..., 120).
pub fn supported_archs() -> Result<Vec<i32>> {
    libs::ensure(CudaLib::Nvrtc)?;
    libs::guard(CudaLib::Nvrtc, || {
        let mut n: c_int = 0;
        // SAFETY: out-parameter, then a buffer of exactly `n` ints.
        unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) }.result()?;
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        if n > 0 {
            unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }.result()?;
        }
        Ok(archs)
    })
}

fn arch_number(arch: &str) -> Option<i32> {
    arch.strip_prefix("sm_")?
        .trim_end_matches(['a', 'f'])
        .parse()
        .ok()
}

/// Destroys the NVRTC program when dropped, on every path out of [`compile_cubin`].
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the handle came from nvrtcCreateProgram and is destroyed exactly once.
        unsafe {
            let _ = sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

fn nvrtc_error_string(code: sys::nvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static C string.
    unsafe {
        let p = sys::nvrtcGetErrorString(code);
        if p.is_null() {
            format!("{code:?}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

fn program_log(prog: &Program) -> String {
    let mut size = 0usize;
    // SAFETY: the size query fills `size`; the buffer then has exactly that many bytes.
    unsafe {
        if sys::nvrtcGetProgramLogSize(prog.0, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS
            || size == 0
        {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if sys::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr() as *mut c_char)
            != sys::nvrtcResult::NVRTC_SUCCESS
        {
            return String::new();
        }
        while buf.last() == Some(&0) {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).trim_end().to_string()
    }
}

/// Compiles `source` (a complete CUDA C++ translation unit) to CUBIN. `name` labels the
/// program in the log and in errors.
pub fn compile_cubin(name: &str, source: &str, opts: &CompileOptions) -> Result<CompiledModule> {
    let args = opts.to_nvrtc_args()?;
    compile_cubin_with_args(name, source, &opts.arch, &args)
}

/// Like [`compile_cubin`], with an option list already built by
/// [`CompileOptions::to_nvrtc_args`] (the cache uses this so the hashed options are the ones
/// compiled with).
pub fn compile_cubin_with_args(
    name: &str,
    source: &str,
    arch: &str,
    args: &[String],
) -> Result<CompiledModule> {
    libs::ensure(CudaLib::Nvrtc)?;
    if let (Some(want), Ok(archs)) = (arch_number(arch), supported_archs()) {
        if !archs.is_empty() && !archs.contains(&want) {
            return Err(CudaError::InvalidArgument(format!(
                "this NVRTC cannot target {arch}; it supports sm_{:?}",
                archs
            )));
        }
    }
    let c_src = CString::new(source)
        .map_err(|_| CudaError::InvalidArgument("kernel source contains a NUL byte".into()))?;
    let c_name = CString::new(format!("{name}.cu"))
        .map_err(|_| CudaError::InvalidArgument("program name contains a NUL byte".into()))?;
    let c_args = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| CudaError::InvalidArgument("an NVRTC option contains a NUL byte".into()))?;
    let arg_ptrs: Vec<*const c_char> = c_args.iter().map(|a| a.as_ptr()).collect();

    libs::guard(CudaLib::Nvrtc, || {
        let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the calls; no extra headers.
        let rc = unsafe {
            sys::nvrtcCreateProgram(
                &mut raw,
                c_src.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(CudaError::Compile {
                name: name.to_string(),
                log: format!("nvrtcCreateProgram: {}", nvrtc_error_string(rc)),
            });
        }
        let prog = Program(raw);
        let rc =
            unsafe { sys::nvrtcCompileProgram(prog.0, arg_ptrs.len() as c_int, arg_ptrs.as_ptr()) };
        let log = program_log(&prog);
        if rc != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(CudaError::Compile {
                name: name.to_string(),
                log: format!(
                    "{}\n(options: {})\n{log}",
                    nvrtc_error_string(rc),
                    args.join(" ")
                ),
            });
        }
        let mut size = 0usize;
        let rc = unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) };
        if rc != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return Err(CudaError::Compile {
                name: name.to_string(),
                log: format!(
                    "nvrtcGetCUBINSize: {} (was a virtual compute_XX arch requested?)\n{log}",
                    nvrtc_error_string(rc)
                ),
            });
        }
        let mut cubin = vec![0u8; size];
        let rc = unsafe { sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char) };
        if rc != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(CudaError::Compile {
                name: name.to_string(),
                log: format!("nvrtcGetCUBIN: {}\n{log}", nvrtc_error_string(rc)),
            });
        }
        Ok(CompiledModule::new(cubin, log))
    })
}

/// Parses ptxas' `-v` report into one [`KernelResources`] per entry function (kernel), in the
/// order ptxas reports them. Lines that are not part of the report are ignored, so the whole
/// NVRTC log can be passed. The format (NVRTC 13.5, sm_89):
///
/// ```text
/// ptxas info    : Compiling entry function 'spiller' for 'sm_89'
/// ptxas info    : Function properties for spiller
/// ptxas         .     400 bytes stack frame, 744 bytes spill stores, 748 bytes spill loads
/// ptxas info    : Used 64 registers, used 0 barriers, 400 bytes cumulative stack size, 364 bytes cmem[0]
/// ```
///
/// `Function properties` blocks of non-inlined device functions (no `Compiling entry function`
/// line) are not kernels and are skipped.
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    // Index into `kernels` of the entry whose "Function properties" block is being read.
    let mut props_target: Option<usize> = None;
    // Index of the entry the next "Used N registers" line belongs to.
    let mut current: Option<usize> = None;
    for line in log.lines() {
        let Some(body) = line.trim_start().strip_prefix("ptxas") else {
            continue;
        };
        let body = body.trim_start();
        let body = body
            .strip_prefix("info")
            .map(|b| b.trim_start().trim_start_matches(':').trim())
            .unwrap_or(body);
        if let Some(rest) = body.strip_prefix("Compiling entry function") {
            let name = quoted(rest).unwrap_or_default();
            kernels.push(KernelResources {
                name,
                ..KernelResources::default()
            });
            current = Some(kernels.len() - 1);
            props_target = None;
        } else if let Some(rest) = body.strip_prefix("Function properties for") {
            let name = rest.trim();
            props_target = kernels.iter().rposition(|k| k.name == name);
        } else if let Some(rest) = body.strip_prefix('.') {
            if let Some(k) = props_target.and_then(|i| kernels.get_mut(i)) {
                for item in rest.split(',') {
                    let (value, what) = leading_number(item);
                    match what {
                        w if w.starts_with("bytes stack frame") => k.stack_frame = value,
                        w if w.starts_with("bytes spill stores") => k.spill_stores = value,
                        w if w.starts_with("bytes spill loads") => k.spill_loads = value,
                        _ => {}
                    }
                }
            }
            props_target = None;
        } else if let Some(rest) = body.strip_prefix("Used") {
            if let Some(k) = current.and_then(|i| kernels.get_mut(i)) {
                for item in rest.split(',') {
                    let item = item.trim().trim_start_matches("used").trim();
                    let (value, what) = leading_number(item);
                    match what {
                        w if w.starts_with("registers") => k.registers = value,
                        w if w.starts_with("bytes smem") => k.static_smem = value,
                        w if w.starts_with("bytes cmem[0]") => k.cmem = value,
                        _ => {}
                    }
                }
            }
            current = None;
        }
    }
    kernels
}

/// The text between the first pair of single quotes.
fn quoted(s: &str) -> Option<String> {
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(s[start..start + len].to_string())
}

/// Splits `"  744 bytes spill stores"` into `(744, "bytes spill stores")`; 0 when no number.
fn leading_number(item: &str) -> (u32, &str) {
    let item = item.trim();
    let end = item
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(item.len());
    let value = item[..end].parse().unwrap_or(0);
    (value, item[end..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real log: NVRTC 13.5, `--ptxas-options=-v`, sm_89, one spilling kernel, one template
    /// kernel with static shared memory calling a `__noinline__` device function.
    const REAL_LOG: &str = include_str!("../tests/data/ptxas_sm89.log");

    #[test]
    fn parses_real_ptxas_log() {
        let ks = parse_ptxas_log(REAL_LOG);
        assert_eq!(ks.len(), 2, "{ks:?}");
        assert_eq!(
            ks[0],
            KernelResources {
                name: "spiller".into(),
                registers: 64,
                static_smem: 0,
                spill_stores: 744,
                spill_loads: 748,
                stack_frame: 400,
                cmem: 364,
            }
        );
        assert_eq!(
            ks[1],
            KernelResources {
                name: "_Z4tmplILi128EEvPfi".into(),
                registers: 42,
                static_smem: 256,
                spill_stores: 0,
                spill_loads: 0,
                stack_frame: 128,
                cmem: 364,
            }
        );
    }

    #[test]
    fn parses_sm90_format_without_cmem_and_ignores_noise() {
        let log = "prog.cu(3): warning #177-D: variable \"x\" was declared but never referenced\n\
ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'axpy_h' for 'sm_90a'\n\
ptxas info    : Function properties for axpy_h\n\
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem\n\
ptxas info    : Compile time = 5.868 ms\n";
        let ks = parse_ptxas_log(log);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].name, "axpy_h");
        assert_eq!(ks[0].registers, 10);
        assert_eq!(ks[0].static_smem, 1024);
        assert_eq!(ks[0].cmem, 0);
    }

    #[test]
    fn empty_and_garbage_logs_give_no_kernels() {
        assert!(parse_ptxas_log("").is_empty());
        assert!(parse_ptxas_log("ptxas info : Used lots of registers\nrandom").is_empty());
        // A truncated entry keeps its name with zero counts rather than failing.
        let ks = parse_ptxas_log("ptxas info    : Compiling entry function 'k' for 'sm_80'");
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].registers, 0);
    }

    #[test]
    fn arch_validation() {
        for ok in ["sm_80", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120f"] {
            assert!(validate_arch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "sm80",
            "sm_",
            "sm_8",
            "compute_80",
            "sm_90ab",
            "sm_9x",
            "sm_1000",
        ] {
            assert!(
                matches!(validate_arch(bad), Err(CudaError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
