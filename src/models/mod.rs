//! Models built from the kernels: weights plus a sequence of ops.

pub mod tinypssr;

pub use tinypssr::TinyPssr;
