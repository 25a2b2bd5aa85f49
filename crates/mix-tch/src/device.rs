//! Which device a run uses: CUDA when present, unless told otherwise.

use crate::{Error, Result};
use tch::{Cuda, Device};

/// The device a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// The CPU, even when CUDA is present.
    Cpu,
    /// This CUDA device; an error when it is absent.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolves the choice to a tch device, failing when CUDA is asked for but absent.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                let count = Cuda::device_count();
                if !Cuda::is_available() {
                    Err(Error::CudaUnavailable { what: "device" })
                } else if i as i64 >= count {
                    Err(Error::Invalid(format!(
                        "CUDA device {i} asked for but libtorch sees {count} device(s): pick an index below {count}"
                    )))
                } else {
                    Ok(Device::Cuda(i))
                }
            }
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "expected a device `auto`, `cpu`, `cuda` or `cuda:N`, found `{s}`"
                    ))
                }),
        }
    }
}

/// The arithmetic of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout, as fastai trains by default.
    #[default]
    Fp32,
    /// bfloat16 autocast (CUDA): float32's range, so no loss scaling.
    Bf16,
    /// float16 autocast with dynamic loss scaling (CUDA), fastai's `to_fp16()`.
    Fp16,
    /// bf16 on a CUDA device that supports it, fp16 on one that does not, fp32 on the CPU.
    Auto,
}

impl Precision {
    /// What runs on `device`: never `Auto`; an error when mixed precision is asked for without CUDA.
    pub fn resolve(self, device: Device) -> Result<Precision> {
        match (self, device.is_cuda()) {
            (Precision::Fp32, _) | (Precision::Auto, false) => Ok(Precision::Fp32),
            (Precision::Bf16 | Precision::Fp16, false) => Err(Error::CudaUnavailable {
                what: "mixed precision",
            }),
            (Precision::Auto, true) => Ok(if crate::ffi::cuda_supports_bf16()? {
                Precision::Bf16
            } else {
                Precision::Fp16
            }),
            (p, true) => Ok(p),
        }
    }

    /// The autocast dtype, `None` for float32.
    pub fn autocast_kind(self) -> Option<tch::Kind> {
        match self {
            Precision::Bf16 => Some(tch::Kind::BFloat16),
            Precision::Fp16 => Some(tch::Kind::Half),
            Precision::Fp32 | Precision::Auto => None,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// Parses `fp32`, `bf16`, `fp16` or `auto`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            "auto" => Ok(Precision::Auto),
            _ => Err(Error::Invalid(format!(
                "expected a precision `fp32`, `bf16`, `fp16` or `auto`, found `{s}`"
            ))),
        }
    }
}

/// Prepares libtorch for training on `device`: cudnn benchmark mode on CUDA (input sizes are fixed).
pub fn prepare(device: Device) {
    if device.is_cuda() {
        Cuda::cudnn_set_benchmark(true);
    }
}
