//! Safe wrappers over mix-tch's C++ shim (`csrc/shim.cpp`): the libtorch calls tch 0.24 does not expose.
//!
//! The shim catches every C++ exception and hands back its message, which becomes
//! [`Error::Torch`] here, so a libtorch error never unwinds into Rust.

// The workspace denies unsafe code; this module is the one place that calls the shim, and every unsafe
// block in it says why it is sound.
#![allow(unsafe_code)]

use crate::{Error, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::{Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn mix_shim_free_error(message: *mut c_char);
    #[allow(clippy::too_many_arguments)]
    fn mix_shim_adam_step(
        params: *const *mut C_tensor,
        n_params: usize,
        grads: *const *mut C_tensor,
        n_grads: usize,
        exp_avgs: *const *mut C_tensor,
        n_exp_avgs: usize,
        exp_avg_sqs: *const *mut C_tensor,
        n_exp_avg_sqs: usize,
        state_steps: *const *mut C_tensor,
        n_state_steps: usize,
        step_counts: *const i64,
        n_step_counts: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        fused: *mut c_int,
    ) -> *mut c_char;
    fn mix_shim_set_autocast_dtype_cuda(dtype: c_int) -> *mut c_char;
    fn mix_shim_autocast_dtype_cuda(dtype: *mut c_int) -> *mut c_char;
    fn mix_shim_cuda_supports_bf16(supported: *mut c_int) -> *mut c_char;
}

/// Turns the shim's answer (null, or an owned error message) into a result.
fn check(message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null answer is a NUL-terminated string the shim allocated with strdup; it stays valid
    // until the one call to mix_shim_free_error below, after which it is never read again.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the pointer came from the shim, which allocated it with malloc, and is freed exactly once.
    unsafe { mix_shim_free_error(message) };
    Err(Error::Torch(tch::TchError::Torch(text)))
}

/// The tensors of one Adam step over parameters sharing a learning rate and a weight decay, index by
/// index: the parameter, its gradient, its two moments, its step tensor (a float32 scalar on the
/// parameter's device, incremented by the step) and its step count after this step (on the host).
#[derive(Debug, Clone, Copy)]
pub struct AdamBucket<'a> {
    /// The parameters, updated in place.
    pub params: &'a [&'a Tensor],
    /// Their gradients.
    pub grads: &'a [&'a Tensor],
    /// First moments (fastai's `grad_avg`), updated in place.
    pub exp_avgs: &'a [&'a Tensor],
    /// Second moments (fastai's `sqr_avg`), updated in place.
    pub exp_avg_sqs: &'a [&'a Tensor],
    /// Step tensors, incremented in place.
    pub state_steps: &'a [&'a Tensor],
    /// Step counts after this step (one more than before), for the multi-tensor path.
    pub step_counts: &'a [i64],
}

/// The hyper-parameters of one Adam step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHypers {
    /// Learning rate.
    pub lr: f64,
    /// Beta1 (fastai's `mom`).
    pub beta1: f64,
    /// Beta2 (fastai's `sqr_mom`).
    pub beta2: f64,
    /// Decoupled weight decay: every parameter is first multiplied by `1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// Added to the root of the debiased second moment.
    pub eps: f64,
}

/// Which libtorch kernels ran an Adam step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdamPath {
    /// libtorch's fused AdamW kernel (`_fused_adamw_`, CPU and CUDA, dense tensors of one layout).
    Fused,
    /// libtorch's multi-tensor `_foreach_` ops (other devices, or tensors of different layouts).
    Foreach,
}

/// One Adam step, fastai's formula, over every tensor of `bucket` in a handful of kernel launches:
/// `p *= 1 - lr*wd`; `m = lerp(m, g, 1-beta1)`; `v = lerp(v, g², 1-beta2)`;
/// `p -= lr/(1-beta1^t) * m / (sqrt(v/(1-beta2^t)) + eps)`. The shim checks that the lists have one
/// length and that shapes, dtypes and devices agree, and reports a mismatch as an error.
pub fn adam_step(bucket: &AdamBucket<'_>, hypers: AdamHypers) -> Result<AdamPath> {
    let ptrs = |ts: &[&Tensor]| -> Vec<*mut C_tensor> {
        ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
    };
    let (params, grads) = (ptrs(bucket.params), ptrs(bucket.grads));
    let (exp_avgs, exp_avg_sqs) = (ptrs(bucket.exp_avgs), ptrs(bucket.exp_avg_sqs));
    let state_steps = ptrs(bucket.state_steps);
    let mut fused: c_int = 0;
    // SAFETY: every array pointer comes with its own length and lives until the call returns; each element
    // points to the heap `at::Tensor` owned by a `Tensor` that `bucket` borrows for the whole call. The shim
    // only changes the tensors' data in place (never the `at::Tensor` handles tch owns), catches every C++
    // exception, and writes `fused` only.
    let message = unsafe {
        mix_shim_adam_step(
            params.as_ptr(),
            params.len(),
            grads.as_ptr(),
            grads.len(),
            exp_avgs.as_ptr(),
            exp_avgs.len(),
            exp_avg_sqs.as_ptr(),
            exp_avg_sqs.len(),
            state_steps.as_ptr(),
            state_steps.len(),
            bucket.step_counts.as_ptr(),
            bucket.step_counts.len(),
            hypers.lr,
            hypers.beta1,
            hypers.beta2,
            hypers.weight_decay,
            hypers.eps,
            &mut fused,
        )
    };
    check(message)?;
    Ok(if fused != 0 {
        AdamPath::Fused
    } else {
        AdamPath::Foreach
    })
}

/// Sets the dtype CUDA autocast computes in: [`Kind::BFloat16`] or [`Kind::Half`] (libtorch's default).
/// The setting is per thread, like libtorch's.
pub fn set_cuda_autocast_dtype(kind: Kind) -> Result<()> {
    let code = match kind {
        Kind::BFloat16 => 0,
        Kind::Half => 1,
        other => {
            return Err(Error::Invalid(format!(
                "CUDA autocast dtype: expected BFloat16 or Half, found {other:?}"
            )))
        }
    };
    // SAFETY: the shim takes a plain integer and catches every C++ exception.
    check(unsafe { mix_shim_set_autocast_dtype_cuda(code) })
}

/// The dtype CUDA autocast computes in on this thread: `Some(BFloat16)` or `Some(Half)`, `None` for any
/// other dtype.
pub fn cuda_autocast_dtype() -> Result<Option<Kind>> {
    let mut code: c_int = -1;
    // SAFETY: the shim writes one integer through the pointer, which is valid for the call, and catches
    // every C++ exception.
    check(unsafe { mix_shim_autocast_dtype_cuda(&mut code) })?;
    Ok(match code {
        0 => Some(Kind::BFloat16),
        1 => Some(Kind::Half),
        _ => None,
    })
}

/// Whether the current CUDA device computes in bfloat16 (compute capability 8.0 or newer with cuDNN 8);
/// false when libtorch has no CUDA or sees no CUDA device.
pub fn cuda_supports_bf16() -> Result<bool> {
    let mut supported: c_int = 0;
    // SAFETY: the shim writes one integer through the pointer, which is valid for the call, and catches
    // every C++ exception.
    check(unsafe { mix_shim_cuda_supports_bf16(&mut supported) })?;
    Ok(supported != 0)
}
