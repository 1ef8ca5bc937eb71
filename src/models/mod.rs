//! Models built from the kernels: weights plus a sequence of ops.

pub mod tinypssr;
pub mod tinypssr_cpu;

pub use tinypssr::TinyPssr;
