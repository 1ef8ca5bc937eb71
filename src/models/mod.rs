//! Models built from the kernels: weights plus a sequence of ops.

pub mod tinycompress;
pub mod tinypssr;
pub mod zero_dce;

pub use tinypssr::TinyPssr;
pub use zero_dce::ZeroDce;
