//! The kernel registry. One WGSL file per kernel in `shaders/`; per kernel a
//! module here with its params struct, its descriptor, its CPU implementation
//! and its GPU op (`encode` into a caller's encoder, `run` end to end).
//!
//! A kernel called `conv2d` is `shaders/conv2d.wgsl`, `src/kernels/conv2d.rs`,
//! the label `gpuimg.conv2d`, the test `conv2d_matches_cpu`, the bench group
//! `conv2d` and `Conv2d` in Rust.

pub mod activation;
pub mod augment;
pub mod conv2d;
pub mod pack_pixels;
pub mod pixel_shuffle;
pub mod pixel_unshuffle;
pub mod prelu;
pub mod resize_bilinear;
pub mod tinypssr_fused;
pub mod unpack_pixels;
pub mod zero_dce_curve;
pub mod zero_dce_enhance;

pub use activation::{Activation, ActivationKind};
pub use augment::AugmentPass;
pub use conv2d::Conv2d;
pub use pack_pixels::PackPixels;
pub use pixel_shuffle::PixelShuffle;
pub use pixel_unshuffle::PixelUnshuffle;
pub use prelu::Prelu;
pub use resize_bilinear::ResizeBilinear;
pub use tinypssr_fused::TinyPssrFused;
pub use unpack_pixels::UnpackPixels;
pub use zero_dce_curve::ZeroDceCurve;
pub use zero_dce_enhance::ZeroDceEnhance;

pub use crate::gpu::{BindingKind, KernelDesc};

/// Builds a [`KernelDesc`] whose source is `shaders/<name>.wgsl`.
macro_rules! kernel_desc {
    ($name:literal, $params:ty, [$($b:ident),*], $wg:expr) => {
        $crate::gpu::KernelDesc {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            bindings: &[$crate::gpu::BindingKind::Uniform, $($crate::gpu::BindingKind::$b),*],
            workgroup_size: $wg,
            params_size: std::mem::size_of::<$params>() as u64,
        }
    };
}
pub(crate) use kernel_desc;

/// Every kernel, in no particular order.
pub static ALL: &[&KernelDesc] = &[
    &activation::DESC,
    &augment::DESC,
    &conv2d::DESC,
    &pack_pixels::DESC,
    &pixel_shuffle::DESC,
    &pixel_unshuffle::DESC,
    &prelu::DESC,
    &resize_bilinear::DESC,
    &tinypssr_fused::DESC,
    &unpack_pixels::DESC,
    &zero_dce_curve::DESC,
    &zero_dce_enhance::DESC,
];

/// Looks a kernel up by name.
pub fn find(name: &str) -> Option<&'static KernelDesc> {
    ALL.iter().copied().find(|d| d.name == name)
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub fn rows_per_task(width: usize) -> usize {
    (16384 / width.max(1)).max(1)
}
