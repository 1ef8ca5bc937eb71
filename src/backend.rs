//! Choosing between the GPU and the CPU path.

use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{AdapterRequest, Gpu};

/// What `--device` (or `GPUIMG_DEVICE`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    /// A hardware GPU if there is one, else the CPU path (with a notice).
    #[default]
    Auto,
    /// A GPU adapter, software ones (llvmpipe/lavapipe) included; an error if none.
    Gpu,
    /// The rayon CPU path.
    Cpu,
}

impl DeviceChoice {
    /// The valid spellings.
    pub const NAMES: [&'static str; 3] = ["auto", "gpu", "cpu"];

    /// `GPUIMG_DEVICE` if set, else `Auto`.
    pub fn from_env() -> Result<Self> {
        match std::env::var("GPUIMG_DEVICE") {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(DeviceChoice::Auto),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            _ => Err(Error::UnknownValue { what: "device", value: s.to_string(), valid: Self::NAMES.join(", ") }),
        }
    }
}

/// Where ops run.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The rayon CPU path.
    Cpu,
    /// A GPU context.
    Gpu(Arc<Gpu>),
}

impl Backend {
    /// Opens the backend a choice asks for. `notice` receives a one-line
    /// message when `Auto` falls back to the CPU.
    pub fn open(choice: DeviceChoice, notice: impl FnOnce(&str)) -> Result<Backend> {
        match choice {
            DeviceChoice::Cpu => Ok(Backend::Cpu),
            DeviceChoice::Gpu => Ok(Backend::Gpu(Arc::new(Gpu::new()?))),
            DeviceChoice::Auto => match Gpu::with_request(&AdapterRequest::default()) {
                Ok(g) => Ok(Backend::Gpu(Arc::new(g))),
                Err(e) => {
                    notice(&format!("{e}; using the CPU path (--device gpu takes a software adapter too)"));
                    Ok(Backend::Cpu)
                }
            },
        }
    }

    /// A short name for reports: `cpu` or the adapter's name.
    pub fn name(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Backend::Gpu(g) => format!("gpu ({})", g.adapter_info().name),
        }
    }
}
