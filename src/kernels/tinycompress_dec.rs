//! One TinyCompress decoding block in one dispatch (see
//! `shaders/tinycompress_dec.wgsl`), to f32 planes or, for the codec's last
//! block, straight to the cropped 8-bit RGB image; and its CPU twin.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, constants, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, Activation, ActivationKind, Conv2d, KernelDesc, PackPixels, PixelShuffle, Prelu};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Samples, Shape, Tensor};

/// Params uniform of `shaders/tinycompress_dec.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct DecParams {
    pub w: u32,
    pub h: u32,
    pub out_mode: u32,
    pub margin: u32,
    pub img_w: u32,
    pub img_h: u32,
    pub _pad: [u32; 2],
}

/// Descriptor of the `tinycompress_dec` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinycompress_dec", DecParams, [Read, Read, ReadWrite], [64, 1, 1]);

/// Weights of one block in `models::tinycompress::Net::flatten`'s order.
pub const FLAT_LEN: usize = 1071;

/// What the block writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecOutput {
    /// f32 planes (1, 3, 2h, 2w).
    Planes,
    /// The `width` x `height` image starting `margin` pixels in, as packed
    /// 8-bit RGB (the codec's crop and quantisation).
    Image {
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
        /// Pixels cropped before the image on each axis.
        margin: usize,
    },
}

/// One decoding block on latents of `w` x `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyCompressDec {
    /// Input width.
    pub w: usize,
    /// Input height.
    pub h: usize,
    /// What it writes.
    pub output: DecOutput,
}

/// The block's layers on the CPU: `x` (1, 3, h, w) to (1, 3, 2h, 2w),
/// weights in `Net::flatten`'s order (the model's layer path).
pub fn dec_block_cpu(flat: &[f32], x: &Tensor) -> Result<Tensor> {
    if flat.len() != FLAT_LEN {
        return Err(Error::invalid("tinycompress_dec", format!("{} weights, expected {FLAT_LEN}", flat.len())));
    }
    let mut take = super::contract::flat_cursor(flat);
    let c1 = Conv2d::new(3, 12, 3);
    let mut e = c1.cpu(x, take(c1.weight_len()), take(12))?;
    Prelu.cpu_in_place(&mut e, take(12))?;
    let s = PixelShuffle { r: 2 }.cpu(&e)?;
    let c2 = Conv2d::new(3, 9, 5);
    let mut f = c2.cpu(&s, take(c2.weight_len()), take(9))?;
    Prelu.cpu_in_place(&mut f, take(9))?;
    let c3 = Conv2d::new(9, 3, 1);
    let y = c3.cpu(&f, take(c3.weight_len()), take(3))?;
    Ok(Activation(ActivationKind::Sigmoid).cpu(&y))
}

impl TinyCompressDec {
    fn check(&self) -> Result<()> {
        if self.w == 0 || self.h == 0 {
            return Err(Error::invalid("tinycompress_dec", "empty input"));
        }
        if let DecOutput::Image { width, height, margin } = self.output {
            if width == 0 || height == 0 || width + margin > 2 * self.w || height + margin > 2 * self.h {
                return Err(Error::invalid("tinycompress_dec", format!("{self:?}: the image does not fit")));
            }
        }
        Ok(())
    }

    /// What the block writes.
    pub fn out(&self) -> Output {
        match self.output {
            DecOutput::Planes => Output::Planes(Shape::new(1, 3, 2 * self.h, 2 * self.w)),
            DecOutput::Image { width, height, .. } => Output::Packed { bits: 8, len: width * height * 3 },
        }
    }

    /// Records the block from the planes in `src` to `dst` (cleared here first in image mode).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        if dst.size() < self.out().bytes() || weights.size() < (FLAT_LEN * 4) as u64 {
            return Err(Error::invalid("tinycompress_dec", "output or weight buffer too small"));
        }
        let mut p = DecParams { w: self.w as u32, h: self.h as u32, out_mode: 1, ..Zeroable::zeroed() };
        if let DecOutput::Image { width, height, margin } = self.output {
            (p.out_mode, p.margin, p.img_w, p.img_h) = (0, margin as u32, width as u32, height as u32);
            encoder.clear_buffer(dst, 0, None);
        }
        let groups = [self.w.div_ceil(8) as u32, self.h.div_ceil(8) as u32, 1];
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, weights, dst], groups)
    }

    /// The CPU twin: [`dec_block_cpu`], then in image mode the crop and
    /// 8-bit quantisation.
    pub fn cpu(&self, flat: &[f32], x: &Tensor) -> Result<Data> {
        self.check()?;
        if x.shape != Shape::new(1, 3, self.h, self.w) {
            return Err(Error::invalid(
                "tinycompress_dec",
                format!("input {}, expected 1x3x{}x{}", x.shape, self.h, self.w),
            ));
        }
        let y = dec_block_cpu(flat, x)?;
        match self.output {
            DecOutput::Planes => Ok(Data::Planes(y)),
            DecOutput::Image { width, height, margin } => {
                let pw = y.shape.w;
                let mut data = Vec::with_capacity(3 * width * height);
                for c in 0..3 {
                    let plane = y.plane(0, c);
                    for r in margin..margin + height {
                        data.extend_from_slice(&plane[r * pw + margin..r * pw + margin + width]);
                    }
                }
                let l = PixelLayout { n: 1, height, width, channels: 3, bits: 8 };
                let s: Samples = PackPixels(l).cpu(&Tensor::from_vec(l.shape(), data)?)?;
                Ok(Data::Packed(s))
            }
        }
    }
}

impl Kernel for TinyCompressDec {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        self.check()?;
        Ok(self.out())
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        TinyCompressDec::cpu(self, &inputs[1].planes(DESC.name, 1)?.data, inputs[0].planes(DESC.name, 0)?)
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        TinyCompressDec::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), out.buffer())
    }
}

/// The registry line of `tinycompress_dec`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let (lw, lh) = (w.div_ceil(2), h.div_ceil(2));
    let mut cases = Vec::new();
    let op = TinyCompressDec { w: lw, h: lh, output: DecOutput::Planes };
    let x = rng.planes(Shape::new(1, 3, lh, lw), -1.0, 2.0);
    let tol = Tolerance { abs: 1e-5, rel: 1e-4 };
    cases.push(Case::new(format!("planes {lw}x{lh}"), op, vec![x, rng.constants(FLAT_LEN, -0.3, 0.3)], tol));
    // The codec's last block: crop a margin of 2 (where it fits), 8-bit RGB.
    let margin = if 2 * lw >= w + 2 && 2 * lh >= h + 2 { 2 } else { 0 };
    let (iw, ih) = (2 * lw - margin, 2 * lh - margin);
    let op = TinyCompressDec { w: lw, h: lh, output: DecOutput::Image { width: iw, height: ih, margin } };
    let x = rng.planes(Shape::new(1, 3, lh, lw), -1.0, 2.0);
    let what = format!("image {iw}x{ih} margin {margin}");
    cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.3, 0.3)], Tolerance { abs: 1.0, rel: 0.0 }));
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    let (lw, lh) = ((w + 4).div_ceil(2), (h + 4).div_ceil(2));
    let op = TinyCompressDec { w: lw, h: lh, output: DecOutput::Image { width: w, height: h, margin: 2 } };
    let x = rng.planes(Shape::new(1, 3, lh, lw), 0.0, 1.0);
    let weights = constants(rng.values(FLAT_LEN, -0.3, 0.3));
    Ok(Case::new("decoding block to 8-bit RGB", op, vec![x, weights], Tolerance { abs: 1.0, rel: 0.0 }))
}
