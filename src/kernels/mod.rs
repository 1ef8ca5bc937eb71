//! The kernel registry. One WGSL file per kernel in `shaders/`; per kernel a
//! module here with its params struct, its descriptor, its CPU twin, its GPU
//! recording (`encode` into a caller's encoder), its [`Kernel`] impl and its
//! registry line ([`Entry`]: parity cases and a bench case).
//!
//! A kernel called `conv2d` is `shaders/conv2d.wgsl`, `src/kernels/conv2d.rs`,
//! the label `gpuimg.conv2d`, the registry line `conv2d::ENTRY` (its parity
//! cases run by `tests/parity.rs`, its bench case by `gpuimg bench` and the
//! criterion benches under the name `conv2d`) and `Conv2d` in Rust.

pub mod activation;
pub mod alpha_upscale;
pub mod augment;
pub mod contract;
pub mod conv2d;
pub mod pack_pixels;
pub mod pixel_shuffle;
pub mod pixel_unshuffle;
pub mod prelu;
pub mod resize_bilinear;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;
pub mod texel_rows;
pub mod tinycompress_dec;
pub mod tinycompress_enc;
pub mod tinycompress_quant;
pub mod tinypssr_fused;
pub mod tinypssr_x4_fused;
pub mod unpack_pixels;
pub mod zero_dce_enhance;
pub mod zero_dce_net;

pub use activation::{Activation, ActivationKind};
pub use alpha_upscale::AlphaUpscale;
pub use augment::AugmentPass;
pub use contract::{Case, Data, Entry, GpuData, Kernel, Output, Tolerance};
pub use conv2d::Conv2d;
pub use pack_pixels::PackPixels;
pub use pixel_shuffle::PixelShuffle;
pub use pixel_unshuffle::PixelUnshuffle;
pub use prelu::Prelu;
pub use resize_bilinear::ResizeBilinear;
pub use texel_rows::TexelRows;
pub use tinycompress_dec::TinyCompressDec;
pub use tinycompress_enc::TinyCompressEnc;
pub use tinycompress_quant::TinyCompressQuant;
pub use tinypssr_fused::TinyPssrFused;
pub use tinypssr_x4_fused::TinyPssrX4;
pub use unpack_pixels::UnpackPixels;
pub use zero_dce_enhance::ZeroDceEnhance;
pub use zero_dce_net::ZeroDceNet;

pub use crate::gpu::{BindingKind, KernelDesc};

/// Builds a [`KernelDesc`] whose source is `shaders/<name>.wgsl`, after the
/// shared snippets it names (`shaders/lib/<snippet>.wgsl`, in order).
macro_rules! kernel_desc {
    ($name:literal, $params:ty, [$($b:ident),*], $wg:expr) => {
        $crate::kernels::kernel_desc!($name, $params, [$($b),*], $wg, [])
    };
    ($name:literal, $params:ty, [$($b:ident),*], $wg:expr, [$($lib:literal),*]) => {
        $crate::gpu::KernelDesc {
            name: $name,
            source: concat!($(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/lib/", $lib, ".wgsl")),)* include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name, ".wgsl"))),
            snippets: &[$($lib),*],
            bindings: &[$crate::gpu::BindingKind::Uniform, $($crate::gpu::BindingKind::$b),*],
            workgroup_size: $wg,
            params_size: std::mem::size_of::<$params>() as u64,
        }
    };
}
pub(crate) use kernel_desc;

/// Every kernel's registry line, in name order.
pub static ALL: &[&Entry] = &[
    &activation::ENTRY,
    &alpha_upscale::ENTRY,
    &augment::ENTRY,
    &conv2d::ENTRY,
    &pack_pixels::ENTRY,
    &pixel_shuffle::ENTRY,
    &pixel_unshuffle::ENTRY,
    &prelu::ENTRY,
    &resize_bilinear::ENTRY,
    &texel_rows::ENTRY,
    &tinycompress_dec::ENTRY,
    &tinycompress_enc::ENTRY,
    &tinycompress_quant::ENTRY,
    &tinypssr_fused::ENTRY,
    &tinypssr_x4_fused::ENTRY,
    &unpack_pixels::ENTRY,
    &zero_dce_enhance::ENTRY,
    &zero_dce_net::ENTRY,
];

/// Looks a kernel up by name.
pub fn find(name: &str) -> Option<&'static Entry> {
    ALL.iter().copied().find(|e| e.desc.name == name)
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub fn rows_per_task(width: usize) -> usize {
    (16384 / width.max(1)).max(1)
}
