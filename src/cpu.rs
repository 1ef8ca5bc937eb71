//! The CPU feature level the CPU path runs at, chosen once: the best the
//! machine supports (AVX2+FMA on x86-64 where present, else the baseline),
//! or what `GPUIMG_CPU` (`baseline`, `avx2`, `auto`) or [`set_level`] asks
//! for, never above what the machine has. The kernels read it with
//! [`level`] (one atomic load) instead of detecting features per row, and
//! tests run them at every level the machine supports, so the baseline path
//! is tested on AVX2 machines too.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// A CPU feature level the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Portable code (SSE2 on x86-64, NEON as the compiler uses it on aarch64).
    Baseline = 1,
    /// x86-64 with AVX2 and FMA: the register-tiled loops compiled for them.
    Avx2Fma = 2,
}

impl Level {
    /// The name `GPUIMG_CPU` and `gpuimg info` use.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2Fma => "avx2",
        }
    }
    /// Parses `baseline` or `avx2`.
    pub fn parse(s: &str) -> Result<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "baseline" => Ok(Level::Baseline),
            "avx2" => Ok(Level::Avx2Fma),
            other => Err(Error::UnknownValue {
                what: "CPU level",
                value: other.into(),
                valid: "baseline, avx2, auto".into(),
            }),
        }
    }
}

/// The best level this machine supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return Level::Avx2Fma;
    }
    Level::Baseline
}

/// Every level this machine supports, lowest first.
pub fn supported() -> Vec<Level> {
    [Level::Baseline, Level::Avx2Fma].into_iter().filter(|&l| l <= detected()).collect()
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level the CPU path runs at: chosen on first use from `GPUIMG_CPU`
/// (an unknown or unsupported value falls back to the detected level).
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Baseline,
        2 => Level::Avx2Fma,
        _ => {
            let want = std::env::var("GPUIMG_CPU").ok().filter(|v| v != "auto").and_then(|v| Level::parse(&v).ok());
            let l = want.filter(|w| *w <= detected()).unwrap_or_else(detected);
            LEVEL.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

/// Sets the level for the whole process; an error if the machine lacks it.
pub fn set_level(l: Level) -> Result<()> {
    if l > detected() {
        return Err(Error::invalid("cpu", format!("this machine does not support {}", l.name())));
    }
    LEVEL.store(l as u8, Ordering::Relaxed);
    Ok(())
}
