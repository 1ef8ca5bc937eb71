//! One TinyCompress encoding block in one dispatch (see
//! `shaders/tinycompress_enc.wgsl`), from packed pixels (the codec's edge
//! padding done as it reads them) or f32 planes, and its CPU twin.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, constants, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, Conv2d, KernelDesc, PixelUnshuffle, Prelu, UnpackPixels};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/tinycompress_enc.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct EncParams {
    pub w: u32,
    pub h: u32,
    pub in_mode: u32,
    pub bits: u32,
    pub channels: u32,
    pub img_w: u32,
    pub img_h: u32,
    pub margin: u32,
    pub ranges: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `tinycompress_enc` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinycompress_enc", EncParams, [Read, Read, ReadWrite], [64, 1, 1]);

/// Weights of one block in `models::tinycompress::Net::flatten`'s order.
pub const FLAT_LEN: usize = 5427;

/// What the block reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncInput {
    /// Packed RGB (or RGBA, alpha unread) samples of an image of this layout, extended by `margin`
    /// edge-replicated pixels before it and after it up to the block's
    /// input size (the codec's padding).
    Packed {
        /// The image.
        layout: PixelLayout,
        /// Pixels of edge replication before the image on each axis.
        margin: usize,
    },
    /// f32 planes (1, 3, h, w).
    Planes,
}

/// One encoding block on an input of `w` x `h` (both even) pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyCompressEnc {
    /// Input width.
    pub w: usize,
    /// Input height.
    pub h: usize,
    /// What it reads.
    pub input: EncInput,
    /// Whether it also gathers the channel-range keys the codec's
    /// quantisation needs (`tinycompress_quant`), after the latents.
    pub ranges: bool,
}

/// The block's layers on the CPU: `x` (1, 3, h, w) to the latents (1, 3,
/// h/2, w/2), weights in `Net::flatten`'s order (the model's layer path).
pub fn enc_block_cpu(flat: &[f32], x: &Tensor) -> Result<Tensor> {
    if flat.len() != FLAT_LEN {
        return Err(Error::invalid("tinycompress_enc", format!("{} weights, expected {FLAT_LEN}", flat.len())));
    }
    let mut take = super::contract::flat_cursor(flat);
    let mut conv = |x: &Tensor, c: Conv2d| -> Result<Tensor> {
        let (w, b) = (take(c.weight_len()), take(c.cout));
        let mut y = c.cpu(x, w, b)?;
        Prelu.cpu_in_place(&mut y, take(c.cout))?;
        Ok(y)
    };
    let a = conv(x, Conv2d::new(3, 15, 9))?;
    let b = conv(&a, Conv2d::new(15, 3, 1))?;
    let u = PixelUnshuffle { r: 2 }.cpu(&b)?;
    let d = conv(&u, Conv2d::new(12, 15, 3))?;
    conv(&d, Conv2d::new(15, 3, 1))
}

/// Planes (1, 3, ih, iw) extended to `w` x `h` by edge replication:
/// `margin` pixels before them on each axis, the rest after (the codec's
/// padding, which the kernel's packed mode applies as it loads).
pub fn edge_padded(x: &Tensor, margin: usize, w: usize, h: usize) -> Result<Tensor> {
    let ih = x.shape.h;
    if ih + margin > h {
        return Err(Error::invalid(
            "tinycompress_enc",
            format!("cannot pad {} to {w}x{h} with margin {margin}", x.shape),
        ));
    }
    edge_padded_rows(x, (0, ih), margin, w, 0..h)
}

/// Rows `rows` of [`edge_padded`]'s planes for an image `height` rows tall
/// of which `x` holds rows `first..first + x.shape.h`: padded row `r` is
/// image row `r - margin` clamped to the image, which `x` must hold (a band
/// of the padded image, from a band of the image).
pub fn edge_padded_rows(
    x: &Tensor,
    (first, height): (usize, usize),
    margin: usize,
    w: usize,
    rows: std::ops::Range<usize>,
) -> Result<Tensor> {
    let (ih, iw) = (x.shape.h, x.shape.w);
    let src = |r: usize| r.saturating_sub(margin).min(height.saturating_sub(1));
    let holds = |r: usize| (first..first + ih).contains(&src(r));
    if x.shape.n != 1
        || x.shape.c != 3
        || ih == 0
        || iw == 0
        || iw + margin > w
        || rows.is_empty()
        || !holds(rows.start)
        || !holds(rows.end - 1)
    {
        return Err(Error::invalid(
            "tinycompress_enc",
            format!(
                "cannot pad {} (rows {first}.. of {height}) to rows {rows:?} of width {w} with margin {margin}",
                x.shape
            ),
        ));
    }
    let mut data = crate::fsutil::try_vec("the padded planes", 3 * w * rows.len(), 0f32)?;
    data.clear();
    for c in 0..3 {
        let plane = x.plane(0, c);
        for y in rows.clone() {
            let sy = src(y) - first;
            let row = &plane[sy * iw..sy * iw + iw];
            data.extend(std::iter::repeat_n(row[0], margin));
            data.extend_from_slice(row);
            data.extend(std::iter::repeat_n(row[iw - 1], w - iw - margin));
        }
    }
    Tensor::from_vec(Shape::new(1, 3, rows.len(), w), data)
}

impl TinyCompressEnc {
    fn check(&self) -> Result<()> {
        if self.w == 0 || self.h == 0 || self.w % 2 == 1 || self.h % 2 == 1 {
            return Err(Error::invalid("tinycompress_enc", format!("input {}x{}: sides must be even", self.w, self.h)));
        }
        if let EncInput::Packed { layout, margin } = self.input {
            if !(3..=4).contains(&layout.channels) || layout.width + margin > self.w || layout.height + margin > self.h
            {
                return Err(Error::invalid(
                    "tinycompress_enc",
                    format!("{layout:?} with margin {margin} does not fit"),
                ));
            }
        }
        Ok(())
    }

    /// Shape of the latents.
    pub fn out_shape(&self) -> Shape {
        Shape::new(1, 3, self.h / 2, self.w / 2)
    }

    /// What it writes: the latents, or with ranges the latents and the six
    /// keys as one row of f32 (the keys' bit patterns in the buffer; as
    /// [`Kernel::cpu`] and [`Kernel::gpu`] give it, the six range values the
    /// keys stand for, lo0, hi0, lo1, hi1, lo2, hi2, which compare as
    /// floats where the bit patterns would not).
    pub fn out(&self) -> Output {
        let s = self.out_shape();
        if self.ranges {
            Output::Planes(Shape::new(1, 1, 1, s.len() + 6))
        } else {
            Output::Planes(s)
        }
    }

    fn params(&self) -> EncParams {
        let mut p = EncParams {
            w: self.w as u32,
            h: self.h as u32,
            in_mode: 1,
            ranges: self.ranges as u32,
            ..Zeroable::zeroed()
        };
        if let EncInput::Packed { layout, margin } = self.input {
            p.in_mode = 0;
            p.bits = layout.bits;
            p.channels = layout.channels as u32;
            p.img_w = layout.width as u32;
            p.img_h = layout.height as u32;
            p.margin = margin as u32;
        }
        p
    }

    /// Records the block: `src` (packed words or planes) to the latents in
    /// `dst`, with `weights` ([`FLAT_LEN`] values); with ranges, the keys'
    /// words after the latents are cleared first.
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
            return Err(Error::invalid("tinycompress_enc", "output or weight buffer too small"));
        }
        if self.ranges {
            crate::gpu::clear_buffer(DESC.name, encoder, dst, self.out_shape().bytes(), Some(24))?;
        }
        let groups = [self.w.div_ceil(16) as u32, self.h.div_ceil(16) as u32, 1];
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&self.params()), &[src, weights, dst], groups)
    }

    /// The input as planes: unpacked and edge-padded (packed), or as given.
    pub fn input_planes(&self, input: &Data) -> Result<Tensor> {
        self.check()?;
        match (self.input, input) {
            (EncInput::Planes, Data::Planes(t)) if t.shape == Shape::new(1, 3, self.h, self.w) => Ok(t.clone()),
            (EncInput::Packed { layout, margin }, Data::Packed(s)) => {
                let mut x = UnpackPixels(layout).cpu(s)?;
                if x.shape.c == 4 {
                    // RGBA: the colour planes only (the shader reads channels 0-2).
                    x = Tensor::from_vec(
                        Shape::new(1, 3, x.shape.h, x.shape.w),
                        x.data[..3 * x.shape.h * x.shape.w].to_vec(),
                    )?;
                }
                edge_padded(&x, margin, self.w, self.h)
            }
            _ => Err(Error::invalid("tinycompress_enc", format!("input {:?} does not fit {self:?}", input.output()))),
        }
    }
}

impl Kernel for TinyCompressEnc {
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
        let x = self.input_planes(inputs[0])?;
        let y = enc_block_cpu(&inputs[1].planes(DESC.name, 1)?.data, &x)?;
        if !self.ranges {
            return Ok(Data::Planes(y));
        }
        let mut t = super::tinycompress_quant::with_keys(&y.data);
        keys_to_ranges(&mut t.data);
        Ok(Data::Planes(t))
    }
    fn gpu(&self, gpu: &Gpu, inputs: &[&Data]) -> Result<Data> {
        let mut out = super::contract::run_gpu(self, gpu, inputs)?;
        if let (true, Data::Planes(t)) = (self.ranges, &mut out) {
            keys_to_ranges(&mut t.data);
        }
        Ok(out)
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        TinyCompressEnc::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), out.buffer())
    }
}

/// The six keys at the end of `v` (as f32 bit patterns) replaced by the
/// ranges they stand for: lo0, hi0, lo1, hi1, lo2, hi2.
fn keys_to_ranges(v: &mut [f32]) {
    let at = v.len() - 6;
    let keys: [u32; 6] = std::array::from_fn(|i| v[at + i].to_bits());
    for c in 0..3 {
        let (lo, hi) = super::tinycompress_quant::range_of(&keys, c);
        (v[at + 2 * c], v[at + 2 * c + 1]) = (lo, hi);
    }
}

/// The registry line of `tinycompress_enc`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    // Sums of 243 products in another order, through two PReLU stages each.
    let tol = Tolerance { abs: 1e-4, rel: 1e-4 };
    let (pw, ph) = (w.div_ceil(2) * 2, h.div_ceil(2) * 2);
    for ranges in [false, true] {
        let op = TinyCompressEnc { w: pw, h: ph, input: EncInput::Planes, ranges };
        let x = rng.planes(Shape::new(1, 3, ph, pw), 0.0, 1.0);
        // With ranges, the channels' extremes gathered by atomics compare as values.
        let what = format!("planes {pw}x{ph}{}", if ranges { " with range keys" } else { "" });
        cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.2, 0.2)], tol));
    }
    // Packed 8- and 16-bit RGB with the codec's margin of 2 and padding to even sides.
    for bits in [8, 16] {
        let layout = PixelLayout { n: 1, height: h, width: w, channels: 3, bits };
        let (ew, eh) = ((w + 4).div_ceil(2) * 2, (h + 4).div_ceil(2) * 2);
        let op = TinyCompressEnc { w: ew, h: eh, input: EncInput::Packed { layout, margin: 2 }, ranges: bits == 8 };
        let x = Data::Packed(rng.samples(layout));
        let what = format!("packed {bits}-bit {w}x{h} margin 2{}", if bits == 8 { " with range keys" } else { "" });
        cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.2, 0.2)], tol));
    }
    // Packed RGBA (a texture's texels, as embed::Codec hands them): alpha skipped.
    for bits in [8, 16] {
        let layout = PixelLayout { n: 1, height: h, width: w, channels: 4, bits };
        let (ew, eh) = ((w + 4).div_ceil(2) * 2, (h + 4).div_ceil(2) * 2);
        let op = TinyCompressEnc { w: ew, h: eh, input: EncInput::Packed { layout, margin: 2 }, ranges: bits == 16 };
        let x = Data::Packed(rng.samples(layout));
        let what = format!("packed {bits}-bit RGBA {w}x{h} margin 2");
        cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.2, 0.2)], tol));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    let layout = PixelLayout { n: 1, height: h, width: w, channels: 3, bits: 8 };
    let op = TinyCompressEnc {
        w: (w + 4).div_ceil(2) * 2,
        h: (h + 4).div_ceil(2) * 2,
        input: EncInput::Packed { layout, margin: 2 },
        ranges: false,
    };
    let x = Data::Packed(rng.samples(layout));
    let weights = constants(rng.values(FLAT_LEN, -0.2, 0.2));
    Ok(Case::new("encoding block from 8-bit RGB", op, vec![x, weights], Tolerance { abs: 1e-4, rel: 1e-4 }))
}
