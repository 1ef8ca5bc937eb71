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

/// What a binding slot holds. Slot 0 is always the params uniform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// `var<uniform>`: the params struct.
    Uniform,
    /// `var<storage, read>`: an input.
    Read,
    /// `var<storage, read_write>`: an output.
    ReadWrite,
}

/// Static description of a kernel; `tests/shaders.rs` checks it against the
/// shader as naga reflects it.
#[derive(Debug)]
pub struct KernelDesc {
    /// Kernel name: the shader's file stem.
    pub name: &'static str,
    /// WGSL source (entry point `main`, group 0).
    pub source: &'static str,
    /// Bindings 0.. in order.
    pub bindings: &'static [BindingKind],
    /// Workgroup size declared by the shader.
    pub workgroup_size: [u32; 3],
    /// Size of the params uniform in bytes.
    pub params_size: u64,
}

impl KernelDesc {
    /// Debug label: `gpuimg.<name>`.
    pub fn label(&self) -> String {
        format!("gpuimg.{}", self.name)
    }
}

/// Builds a [`KernelDesc`] whose source is `shaders/<name>.wgsl`.
macro_rules! kernel_desc {
    ($name:literal, $params:ty, [$($b:ident),*], $wg:expr) => {
        $crate::kernels::KernelDesc {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            bindings: &[$crate::kernels::BindingKind::Uniform, $($crate::kernels::BindingKind::$b),*],
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
