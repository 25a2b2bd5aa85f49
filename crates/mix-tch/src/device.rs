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

/// Prepares libtorch for training on `device`: cudnn benchmark mode on CUDA (input sizes are fixed).
pub fn prepare(device: Device) {
    if device.is_cuda() {
        Cuda::cudnn_set_benchmark(true);
    }
}
