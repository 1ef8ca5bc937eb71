//! Zero-DCE's map upsampling (bilinear, `align_corners = true`) and curve
//! iterations fused in one pass: the full-resolution maps are never stored.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{
    bench_rng, count, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance,
};
use super::resize_bilinear::{Axis, ResizeBilinear};
use super::{kernel_desc, KernelDesc};
use super::{PackPixels, UnpackPixels};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/zero_dce_enhance.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct EnhanceParams {
    pub n: u32,
    pub channels: u32,
    pub colour: u32,
    pub h: u32,
    pub w: u32,
    pub mh: u32,
    pub mw: u32,
    pub iterations: u32,
    pub per_iteration: u32,
    pub scale_h: f32,
    pub scale_w: f32,
    pub row0: u32,
    pub full_h: u32,
    /// 0 f32 planes, 1 packed samples in and out.
    pub packed: u32,
    /// Packed: 8 or 16.
    pub bits: u32,
    pub _pad: u32,
}

/// Descriptor of the `zero_dce_enhance` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("zero_dce_enhance", EnhanceParams, [Read, Read, ReadWrite], [8, 8, 1], ["bilinear"]);

/// Upsample low-resolution curve maps to the image and apply the curve.
///
/// `x` is (N, C, H, W); the maps are (N, colour * sets, h, w) with
/// `sets = iterations` (Zero-DCE) or 1 (Zero-DCE++). Channels `colour..C`
/// (alpha) pass through. With maps at the image's size (the full-resolution
/// Zero-DCE curve, as training runs it) the upsampling is the identity and
/// the CPU twin takes a direct path with the same result, bit for bit.
///
/// `per_iteration = true` (Zero-DCE): the maps have `colour * iterations`
/// channels and iteration `t` uses channels `t*colour..(t+1)*colour`.
/// `false` (Zero-DCE++): `colour` channels shared by every iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroDceEnhance {
    /// Curve iterations (8 in both papers).
    pub iterations: usize,
    /// One map set per iteration (Zero-DCE) or one shared set (Zero-DCE++).
    pub per_iteration: bool,
    /// Channels the maps cover (3: RGB).
    pub colour: usize,
}

impl ZeroDceEnhance {
    /// The RGB curve as Zero-DCE and Zero-DCE++ apply it (8 iterations).
    pub fn rgb(per_iteration: bool) -> Self {
        ZeroDceEnhance { iterations: 8, per_iteration, colour: 3 }
    }

    /// Map sets: `iterations` with one set per iteration, else 1.
    pub fn sets(&self) -> usize {
        if self.per_iteration {
            self.iterations
        } else {
            1
        }
    }

    /// Checks the shapes; returns the row and column axes of the upsampling.
    pub fn check(&self, x: Shape, maps: Shape) -> Result<(Axis, Axis)> {
        let e = |m: String| Err(Error::invalid("zero_dce_enhance", m));
        if self.colour == 0 || x.c < self.colour {
            return e(format!("image {x} has fewer than {} colour channels", self.colour));
        }
        if maps.n != x.n || maps.c != self.colour * self.sets() {
            return e(format!("maps are {maps}, expected {} channels for image {x}", self.colour * self.sets()));
        }
        if maps.h == 0 || maps.w == 0 || x.h == 0 || x.w == 0 {
            return e(format!("empty image {x} or maps {maps}"));
        }
        ResizeBilinear::to_size(x.h, x.w, true).axes(maps)
    }

    /// CPU implementation: rayon over bands of rows of every plane, the map
    /// rows each band reads interpolated along x once
    /// ([`ZeroDceEnhance::map_rows`]), then each row through
    /// [`ZeroDceEnhance::curve_row_from`].
    pub fn cpu(&self, x: &Tensor, maps: &Tensor) -> Result<Tensor> {
        const BAND: usize = 32;
        let taps = self.taps(x.shape, maps.shape)?;
        if taps.identity {
            return Ok(self.curve(x, maps));
        }
        let s = x.shape;
        let (h, w) = (s.h, s.w);
        let mut y = x.clone();
        if h * w == 0 {
            return Ok(y);
        }
        y.data.par_chunks_mut(h * w).enumerate().for_each(|(plane, yp)| {
            let (b, c) = (plane / s.c, plane % s.c);
            if c >= self.colour {
                return;
            }
            yp.par_chunks_mut(BAND * w).enumerate().for_each(|(k, band)| {
                let rows = k * BAND..(k * BAND + BAND).min(h);
                let mrows = self.map_rows_for(&taps, rows.clone());
                let hrows = self.map_rows(maps, &taps, (b, c), mrows.clone());
                let mut r = vec![0f32; w];
                for (i, v) in rows.zip(band.chunks_exact_mut(w)) {
                    self.curve_row_from(&taps, &hrows, mrows.clone(), i, v, &mut r);
                }
            });
        });
        Ok(y)
    }

    /// The map upsampling's taps for an image of shape `x` (checked with
    /// `maps`), for [`ZeroDceEnhance::map_rows`].
    pub fn taps(&self, x: Shape, maps: Shape) -> Result<CurveTaps> {
        let (ay, ax) = self.check(x, maps)?;
        let identity = (maps.h, maps.w) == (x.h, x.w);
        let cols = if identity { Vec::new() } else { (0..x.w).map(|j| ax.tap(j, true)).collect() };
        Ok(CurveTaps { ay, cols, identity })
    }

    /// The curve on row `i` of colour channel `c` of image `b` (`at` = (b,
    /// c, i)) when the maps are at the image's size (identity taps): the
    /// map rows read in place, each iteration over the whole row (the pixel
    /// loop innermost, so it vectorises; the same operations in the same
    /// order as one pixel at a time). Other taps go through
    /// [`ZeroDceEnhance::map_rows`] and [`ZeroDceEnhance::curve_row_from`].
    pub fn curve_row_identity(&self, maps: &Tensor, at: (usize, usize, usize), v: &mut [f32]) {
        let (b, c, i) = at;
        let mw = maps.shape.w;
        let (sets, steps) = self.schedule();
        for set in 0..sets {
            curve_steps(v, &maps.plane(b, set * self.colour + c)[i * mw..(i + 1) * mw], steps);
        }
    }

    /// Map sets read per pixel, and curve steps per set.
    fn schedule(&self) -> (usize, usize) {
        if self.per_iteration {
            (self.iterations, 1)
        } else {
            // One map set shared by every iteration: sampled once.
            (self.iterations.min(1), self.iterations)
        }
    }

    /// The map rows image rows `rows` (non-empty) read, for
    /// [`ZeroDceEnhance::map_rows`].
    pub fn map_rows_for(&self, taps: &CurveTaps, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        taps.ay.tap(rows.start, true).0..taps.ay.tap(rows.end - 1, true).1 + 1
    }

    /// Map rows `rows` of colour channel `c` of image `b` (`at` = (b, c)),
    /// every map set, interpolated along x to the image's width (the
    /// horizontal half of the bilinear sampling: `l0x * m[j0] + l1x * m[j1]`), laid out `[set][row][column]`. Image rows that
    /// share map rows (all of them, at scale factor 12, in runs of 12) then
    /// take only the vertical half, which vectorises:
    /// [`ZeroDceEnhance::curve_row_from`]. Not for identity taps.
    pub fn map_rows(
        &self,
        maps: &Tensor,
        taps: &CurveTaps,
        at: (usize, usize),
        rows: std::ops::Range<usize>,
    ) -> Vec<f32> {
        let (b, c) = at;
        let (w, mw, n) = (taps.cols.len(), maps.shape.w, rows.len());
        let (sets, _) = self.schedule();
        let mut out = vec![0f32; sets * n * w];
        for set in 0..sets {
            let m = maps.plane(b, set * self.colour + c);
            for (k, mr) in rows.clone().enumerate() {
                let src = &m[mr * mw..(mr + 1) * mw];
                let dst = &mut out[(set * n + k) * w..(set * n + k + 1) * w];
                for (d, &(j0, j1, l0x, l1x)) in dst.iter_mut().zip(&taps.cols) {
                    *d = l0x * src[j0] + l1x * src[j1];
                }
            }
        }
        out
    }

    /// The curve on image row `v` (row `i`) with the maps sampled from the
    /// map rows `rows` that [`ZeroDceEnhance::map_rows`] gave (`hrows`): the
    /// vertical half `l0y * t + l1y * u` into `r` (scratch of `v`'s length),
    /// then the iterations over the whole row.
    pub fn curve_row_from(
        &self,
        taps: &CurveTaps,
        hrows: &[f32],
        rows: std::ops::Range<usize>,
        i: usize,
        v: &mut [f32],
        r: &mut [f32],
    ) {
        let w = v.len();
        let n = rows.len();
        let (i0, i1, l0y, l1y) = taps.ay.tap(i, true);
        let (sets, steps) = self.schedule();
        for set in 0..sets {
            let at = |m: usize| (set * n + m - rows.start) * w;
            let (t, u) = (&hrows[at(i0)..at(i0) + w], &hrows[at(i1)..at(i1) + w]);
            for ((rv, &t), &u) in r.iter_mut().zip(t).zip(u) {
                *rv = l0y * t + l1y * u;
            }
            curve_steps(v, r, steps);
        }
    }

    /// Maps at the image's size: the curve alone, rayon over blocks of each
    /// plane, each iteration over the whole block (the same values as one
    /// pixel at a time; with an identity upsampling the general path's taps
    /// are 1 and 0, so the same values as that path too).
    fn curve(&self, x: &Tensor, maps: &Tensor) -> Tensor {
        const BLOCK: usize = 4096;
        let (c, plane) = (x.shape.c, x.shape.plane());
        let mut y = x.clone();
        if plane == 0 {
            return y;
        }
        y.data.par_chunks_mut(plane).enumerate().for_each(|(bc, yp)| {
            let (b, ch) = (bc / c, bc % c);
            if ch >= self.colour {
                return;
            }
            yp.par_chunks_mut(BLOCK).enumerate().for_each(|(k, block)| {
                let at = k * BLOCK;
                if self.per_iteration {
                    for t in 0..self.iterations {
                        let m = &maps.plane(b, t * self.colour + ch)[at..at + block.len()];
                        curve_steps(block, m, 1);
                    }
                } else {
                    let m = &maps.plane(b, ch)[at..at + block.len()];
                    curve_steps(block, m, self.iterations);
                }
            });
        });
        y
    }

    /// Records the fused pass into `encoder`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        maps: &GpuTensor,
        y: &GpuTensor,
    ) -> Result<()> {
        self.encode_rows(gpu, encoder, x, maps, y, 0, x.shape.h)
    }

    /// The params of a whole image of shape `x` (f32 planes), maps of
    /// shape `maps`, upsampling steps `scale` (rows, columns).
    fn params(&self, x: Shape, maps: Shape, scale: (f32, f32)) -> EnhanceParams {
        EnhanceParams {
            n: x.n as u32,
            channels: x.c as u32,
            colour: self.colour as u32,
            h: x.h as u32,
            w: x.w as u32,
            mh: maps.h as u32,
            mw: maps.w as u32,
            iterations: self.iterations as u32,
            per_iteration: self.per_iteration as u32,
            scale_h: scale.0,
            scale_w: scale.1,
            row0: 0,
            full_h: x.h as u32,
            packed: 0,
            bits: 0,
            _pad: 0,
        }
    }

    /// Records the pass for a strip: `x` and `y` hold rows `row0..row0 + x.h`
    /// of an image `full_h` rows high (the maps cover the whole image).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_rows(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        maps: &GpuTensor,
        y: &GpuTensor,
        row0: usize,
        full_h: usize,
    ) -> Result<()> {
        let s = x.shape;
        if row0 + s.h > full_h {
            return Err(Error::invalid("zero_dce_enhance", format!("rows {row0}..{} outside {full_h}", row0 + s.h)));
        }
        let (ay, ax) = self.check(Shape::new(s.n, s.c, full_h, s.w), maps.shape)?;
        y.expect_shape("zero_dce_enhance", s)?;
        let mut p = self.params(s, maps.shape, (ay.scale, ax.scale));
        (p.row0, p.full_h) = (row0 as u32, full_h as u32);
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, maps.buf(DESC.name)?, y.buf(DESC.name)?],
            grid_groups(s.w, s.h, s.n),
        )
    }

    /// Records the pass from packed samples of layout `l` (one image) in
    /// `src` to packed samples in `dst` (cleared here first): the whole
    /// full-resolution side of the enhancement in one dispatch.
    pub fn encode_packed(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        l: PixelLayout,
        src: &wgpu::Buffer,
        maps: &GpuTensor,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        if l.n != 1 {
            return Err(Error::invalid("zero_dce_enhance", format!("{} images: the packed pass takes one", l.n)));
        }
        let (ay, ax) = self.check(l.shape(), maps.shape)?;
        if src.size() < l.bytes().next_multiple_of(4) || dst.size() < l.bytes().next_multiple_of(4) {
            return Err(Error::invalid("zero_dce_enhance", "packed buffer smaller than the image"));
        }
        let mut p = self.params(l.shape(), maps.shape, (ay.scale, ax.scale));
        (p.packed, p.bits) = (1, l.bits);
        crate::gpu::clear_buffer(DESC.name, encoder, dst, 0, None)?;
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[src, maps.buf(DESC.name)?, dst],
            grid_groups(l.width, l.height, 1),
        )
    }
}

/// The map upsampling of a [`ZeroDceEnhance`] resolved for one image size.
#[derive(Debug, Clone)]
pub struct CurveTaps {
    /// Whether the maps are at the image's size (read in place, no taps).
    pub identity: bool,
    ay: Axis,
    cols: Vec<(usize, usize, f32, f32)>,
}

/// `iterations` curve steps `v <- v + r (v^2 - v)` on every value of `v`
/// with its own `r`: the iteration loop outside, the value loop inside, so
/// the value loop vectorises (AVX2 when the CPU level allows; no FMA
/// contraction either way, so the same bits at every level).
fn curve_steps(v: &mut [f32], r: &[f32], iterations: usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() == crate::cpu::Level::Avx2Fma {
        // SAFETY: the chosen level is never above what the CPU supports.
        return unsafe { curve_steps_avx2(v, r, iterations) };
    }
    curve_steps_body(v, r, iterations)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn curve_steps_avx2(v: &mut [f32], r: &[f32], iterations: usize) {
    curve_steps_body(v, r, iterations)
}

#[inline(always)]
fn curve_steps_body(v: &mut [f32], r: &[f32], iterations: usize) {
    for _ in 0..iterations {
        for (x, &r) in v.iter_mut().zip(r) {
            *x += r * (*x * *x - *x);
        }
    }
}

impl Kernel for ZeroDceEnhance {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x, maps] = planes(DESC.name, inputs)?;
        self.check(x.shape, maps.shape)?;
        Ok(Output::Planes(x.shape))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x, maps] = planes(DESC.name, inputs)?;
        Ok(Data::Planes(ZeroDceEnhance::cpu(self, x, maps)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x, maps] = gpu_planes(DESC.name, inputs)?;
        ZeroDceEnhance::encode(self, gpu, encoder, x, maps, out.planes(DESC.name, 0)?)
    }
}

/// [`ZeroDceEnhance`] on packed samples of one image: the kernel's packed
/// mode, its CPU twin unpack, [`ZeroDceEnhance::cpu`], pack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroDceEnhancePacked {
    /// The curve.
    pub op: ZeroDceEnhance,
    /// The image's layout.
    pub layout: PixelLayout,
}

impl Kernel for ZeroDceEnhancePacked {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        self.op.check(self.layout.shape(), inputs[1].planes(DESC.name, 1)?.shape)?;
        Ok(Output::Packed { bits: self.layout.bits, len: self.layout.samples() })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        let x = UnpackPixels(self.layout).cpu(inputs[0].packed(DESC.name, 0)?)?;
        let y = self.op.cpu(&x, inputs[1].planes(DESC.name, 1)?)?;
        Ok(Data::Packed(PackPixels(self.layout).cpu(&y)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        let maps = inputs[1].planes(DESC.name, 1)?;
        self.op.encode_packed(gpu, encoder, self.layout, inputs[0].buffer(), maps, out.buffer())
    }
}

/// The registry line of `zero_dce_enhance`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for (per_iteration, channels) in [(true, 3), (false, 4)] {
        let op = ZeroDceEnhance::rgb(per_iteration);
        let x = rng.planes(Shape::new(2, channels, h, w), 0.0, 1.0);
        // Low-resolution maps (about 1/12 of the image, at least 1x1), and
        // maps at full size (the curve alone, as Zero-DCE and training use it).
        for (mh, mw) in [(h.div_ceil(12), w.div_ceil(12)), (h, w)] {
            let maps = rng.planes(Shape::new(2, 3 * op.sets(), mh, mw), -1.0, 1.0);
            let what = format!("{op:?} {w}x{h}x{channels} maps {mw}x{mh}");
            cases.push(Case::new(what, op, vec![x.clone(), maps], Tolerance::FMA));
        }
    }
    // Packed samples in and out (8-bit RGB, 16-bit RGBA): one level after rounding.
    for (per_iteration, channels, bits) in [(true, 3, 8), (false, 4, 16)] {
        let op = ZeroDceEnhance::rgb(per_iteration);
        let layout = PixelLayout { n: 1, height: h, width: w, channels, bits };
        let x = Data::Packed(rng.samples(layout));
        let maps = rng.planes(Shape::new(1, 3 * op.sets(), h.div_ceil(12), w.div_ceil(12)), -1.0, 1.0);
        let what = format!("packed {op:?} {w}x{h}x{channels} {bits}-bit");
        cases.push(Case::new(
            what,
            ZeroDceEnhancePacked { op, layout },
            vec![x, maps],
            Tolerance { abs: 1.0, rel: 0.0 },
        ));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    let x = rng.planes(Shape::new(1, 3, h, w), 0.0, 1.0);
    let maps = rng.planes(Shape::new(1, 3, (h / 12).max(1), (w / 12).max(1)), -1.0, 1.0);
    Ok(Case::new("Zero-DCE++ maps at 1/12, RGB", ZeroDceEnhance::rgb(false), vec![x, maps], Tolerance::FMA))
}
