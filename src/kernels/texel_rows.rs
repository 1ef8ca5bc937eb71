//! Rows of 32-bit texels copied between row strides, red and blue optionally
//! swapped: how the model objects of [`crate::embed`] move pixels between a
//! texture copy's buffer (rows padded to 256 bytes, BGRA or RGBA) and the
//! tightly packed RGBA the kernels read and write.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{check_buffer, linear_groups, Gpu};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::Samples;

/// Params uniform of `shaders/texel_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct TexelParams {
    pub width: u32,
    pub rows: u32,
    pub src_stride: u32,
    pub dst_stride: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub swap_rb: u32,
    pub _pad: u32,
}

/// Descriptor of the `texel_rows` kernel.
pub static DESC: KernelDesc = kernel_desc!("texel_rows", TexelParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

/// The op: `rows` rows of `width` texels from `src_offset` (in texels) with
/// `src_stride` texels per row to `dst_offset` with `dst_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TexelRows {
    /// Texels per row copied.
    pub width: usize,
    /// Rows copied.
    pub rows: usize,
    /// Texels from one source row to the next (at least `width`).
    pub src_stride: usize,
    /// Texels from one destination row to the next (at least `width`).
    pub dst_stride: usize,
    /// First source texel.
    pub src_offset: usize,
    /// First destination texel.
    pub dst_offset: usize,
    /// Exchange bytes 0 and 2 of every texel (BGRA <-> RGBA).
    pub swap_rb: bool,
}

impl TexelRows {
    /// Texels the source must hold.
    pub fn src_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            self.src_offset + (self.rows - 1) * self.src_stride + self.width
        }
    }

    /// Texels the destination must hold.
    pub fn dst_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            self.dst_offset + (self.rows - 1) * self.dst_stride + self.width
        }
    }

    fn check(&self) -> Result<()> {
        if self.src_stride < self.width || self.dst_stride < self.width {
            return Err(Error::invalid("texel_rows", format!("a stride is below the width in {self:?}")));
        }
        if self.src_len().max(self.dst_len()) > u32::MAX as usize || self.width * self.rows > u32::MAX as usize {
            return Err(Error::invalid("texel_rows", format!("{self:?} is too large for one dispatch")));
        }
        Ok(())
    }

    /// CPU twin on texels as u32 words (little-endian: byte 0 is red in RGBA):
    /// `dst` with the rows written.
    pub fn cpu(&self, src: &[u32], dst: &mut [u32]) -> Result<()> {
        self.check()?;
        if src.len() < self.src_len() || dst.len() < self.dst_len() {
            return Err(Error::invalid(
                "texel_rows",
                format!(
                    "{} source and {} destination texels, {self:?} needs {} and {}",
                    src.len(),
                    dst.len(),
                    self.src_len(),
                    self.dst_len()
                ),
            ));
        }
        for y in 0..self.rows {
            let s = &src[self.src_offset + y * self.src_stride..][..self.width];
            let d = &mut dst[self.dst_offset + y * self.dst_stride..][..self.width];
            if self.swap_rb {
                d.iter_mut()
                    .zip(s)
                    .for_each(|(d, &t)| *d = (t & 0xff00_ff00) | ((t & 0xff) << 16) | ((t >> 16) & 0xff));
            } else {
                d.copy_from_slice(s);
            }
        }
        Ok(())
    }

    /// Records the copy from `src` to `dst` (words).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        check_buffer(DESC.name, "source", src, self.src_len() as u64 * 4)?;
        check_buffer(DESC.name, "destination", dst, self.dst_len() as u64 * 4)?;
        let p = TexelParams {
            width: self.width as u32,
            rows: self.rows as u32,
            src_stride: self.src_stride as u32,
            dst_stride: self.dst_stride as u32,
            src_offset: self.src_offset as u32,
            dst_offset: self.dst_offset as u32,
            swap_rb: self.swap_rb as u32,
            _pad: 0,
        };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, dst], linear_groups(self.width * self.rows, 256))
    }
}

fn words(s: &Samples) -> Vec<u32> {
    bytemuck::pod_collect_to_vec::<u8, u32>(&s.le_bytes())
}

impl Kernel for TexelRows {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    /// Input: the source texels as packed 8-bit samples (4 per texel);
    /// output: `dst_len()` texels, zero where no row was written.
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 1)?;
        self.check()?;
        let s = inputs[0].packed(DESC.name, 0)?;
        if s.bits() != 8 || s.len() < self.src_len() * 4 {
            return Err(Error::invalid(
                DESC.name,
                format!("{} samples of {} bits: needs {} bytes", s.len(), s.bits(), self.src_len() * 4),
            ));
        }
        Ok(Output::Packed { bits: 8, len: self.dst_len() * 4 })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let Output::Packed { len, .. } = Kernel::output(self, inputs)? else { unreachable!("packed") };
        let mut dst = vec![0u32; len / 4];
        TexelRows::cpu(self, &words(inputs[0].packed(DESC.name, 0)?), &mut dst)?;
        Ok(Data::Packed(Samples::U8(bytemuck::cast_slice(&dst).to_vec())))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 1)?;
        crate::gpu::clear_buffer(DESC.name, encoder, out.buffer(), 0, None)?;
        TexelRows::encode(self, gpu, encoder, inputs[0].buffer(), out.buffer())
    }
}

/// The registry line of `texel_rows`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn texels(rng: &mut SplitMix, n: usize) -> Data {
    Data::Packed(rng.samples(PixelLayout { n: 1, height: 1, width: n.max(1), channels: 4, bits: 8 }))
}

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    // Padded rows to tight ones and back (a texture copy's 256-byte rows),
    // with and without the swap, and a window of rows at an offset.
    let padded = w.next_multiple_of(64);
    for swap_rb in [false, true] {
        let unpad =
            TexelRows { width: w, rows: h, src_stride: padded, dst_stride: w, src_offset: 0, dst_offset: 0, swap_rb };
        let x = texels(rng, unpad.src_len());
        cases.push(Case::new(format!("unpad {w}x{h} swap {swap_rb}"), unpad, vec![x], Tolerance::EXACT));
        let rows = h.div_ceil(2);
        let window = TexelRows {
            width: w,
            rows,
            src_stride: w,
            dst_stride: padded,
            src_offset: (h - rows) * w,
            dst_offset: 0,
            swap_rb,
        };
        let x = texels(rng, window.src_len());
        cases.push(Case::new(format!("window {w}x{rows} swap {swap_rb}"), window, vec![x], Tolerance::EXACT));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let op = TexelRows {
        width: w,
        rows: h,
        src_stride: w.next_multiple_of(64),
        dst_stride: w,
        src_offset: 0,
        dst_offset: 0,
        swap_rb: true,
    };
    let x = bench_rng().samples(PixelLayout { n: 1, height: 1, width: op.src_len(), channels: 4, bits: 8 });
    Ok(Case::new("unpad + swap", op, vec![Data::Packed(x)], Tolerance::EXACT))
}
