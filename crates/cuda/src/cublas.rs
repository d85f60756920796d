//! FP16 GEMM through cuBLAS: the baseline every VQ kernel is compared against.
//!
//! `y[m, n] = x[m, k] · W[n, k]ᵀ`, all row-major, f16 in and out, f32 accumulation
//! (`cublasGemmEx` with `CUBLAS_COMPUTE_32F`). This is the shape of a linear layer with weights
//! stored `[out, in]` as in PyTorch and AQLM; m = 1 is the decode GeMV case.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{DevicePtr, DevicePtrMut};
use half::f16;

use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::libs::{self, CudaLib};

/// A cuBLAS handle bound to a [`Gpu`]'s stream.
#[derive(Debug)]
pub struct Blas {
    inner: CudaBlas,
}

/// The shape of `y[m, n] = x[m, k] · W[n, k]ᵀ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    /// Rows of x and y (tokens / batch).
    pub m: usize,
    /// Rows of W, columns of y (output features).
    pub n: usize,
    /// Columns of x and W (input features, the reduction).
    pub k: usize,
}

impl GemmShape {
    /// Checks that the dimensions are positive, fit cuBLAS' `int`, and that the buffers are
    /// large enough.
    pub fn validate(&self, x_len: usize, w_len: usize, y_len: usize) -> Result<()> {
        let GemmShape { m, n, k } = *self;
        if m == 0 || n == 0 || k == 0 {
            return Err(CudaError::InvalidArgument(format!(
                "GEMM with an empty dimension: {self:?}"
            )));
        }
        if [m, n, k].iter().any(|&d| d > i32::MAX as usize) {
            return Err(CudaError::InvalidArgument(format!(
                "GEMM dimension exceeds i32: {self:?}"
            )));
        }
        let need = |what: &str, rows: usize, cols: usize, have: usize| match rows.checked_mul(cols)
        {
            Some(n) if n <= have => Ok(()),
            _ => Err(CudaError::InvalidArgument(format!(
                "{what} needs {rows}x{cols} elements, buffer has {have}"
            ))),
        };
        need("x", m, k, x_len)?;
        need("W", n, k, w_len)?;
        need("y", m, n, y_len)
    }
}

impl Gpu {
    /// A cuBLAS handle on this device's stream. Fails with
    /// [`CudaError::CublasUnavailable`] when `libcublas` cannot be found.
    pub fn blas(&self) -> Result<Blas> {
        libs::ensure(CudaLib::Cublas)?;
        libs::guard(CudaLib::Cublas, || {
            let inner = CudaBlas::new(self.stream().clone())?;
            Ok(Blas { inner })
        })
    }
}

impl Blas {
    /// `y = x · Wᵀ` in f16 with f32 accumulation; see the module docs for the layout.
    pub fn hgemm_xwt<X, W, Y>(&self, shape: GemmShape, x: &X, w: &W, y: &mut Y) -> Result<()>
    where
        X: DevicePtr<f16>,
        W: DevicePtr<f16>,
        Y: DevicePtrMut<f16>,
    {
        shape.validate(x.len(), w.len(), y.len())?;
        let GemmShape { m, n, k } = shape;
        // Column-major view: yᵀ[n, m] = W[n, k] · xᵀ[k, m]. Row-major W is column-major Wᵀ
        // (k x n, ld k), so A = W with op T; row-major x is column-major xᵀ (k x m, ld k).
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: f16::ONE,
            lda: k as i32,
            ldb: k as i32,
            beta: f16::ZERO,
            ldc: n as i32,
        };
        libs::guard(CudaLib::Cublas, || {
            // SAFETY: shapes and buffer lengths were validated above; all buffers live on the
            // handle's stream.
            unsafe { self.inner.gemm(cfg, w, x, y) }?;
            Ok(())
        })
    }

    /// The cudarc handle, for other cuBLAS calls.
    pub fn inner(&self) -> &CudaBlas {
        &self.inner
    }
}

/// CPU reference of [`Blas::hgemm_xwt`] in f32 (inputs as f16 values), for tests.
pub fn reference_xwt(shape: GemmShape, x: &[f16], w: &[f16]) -> Result<Vec<f32>> {
    shape.validate(x.len(), w.len(), shape.m.saturating_mul(shape.n))?;
    let GemmShape { m, n, k } = shape;
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            y[i * n + j] = xr
                .iter()
                .zip(wr)
                .map(|(a, b)| a.to_f32() * b.to_f32())
                .sum();
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_validation() {
        let s = GemmShape { m: 2, n: 3, k: 4 };
        assert!(s.validate(8, 12, 6).is_ok());
        assert!(s.validate(7, 12, 6).is_err());
        assert!(s.validate(8, 11, 6).is_err());
        assert!(s.validate(8, 12, 5).is_err());
        assert!(GemmShape { m: 0, n: 3, k: 4 }.validate(0, 12, 0).is_err());
        let huge = GemmShape {
            m: usize::MAX / 2,
            n: 4,
            k: 4,
        };
        assert!(huge.validate(usize::MAX, 16, usize::MAX).is_err());
    }

    #[test]
    fn reference_matches_hand_computation() {
        let f = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        // x = [[1,2],[3,4]], W = [[1,0],[0,1],[1,1]] -> y = [[1,2,3],[3,4,7]]
        let y = reference_xwt(
            GemmShape { m: 2, n: 3, k: 2 },
            &f(&[1., 2., 3., 4.]),
            &f(&[1., 0., 0., 1., 1., 1.]),
        )
        .unwrap();
        assert_eq!(y, vec![1., 2., 3., 3., 4., 7.]);
    }
}
