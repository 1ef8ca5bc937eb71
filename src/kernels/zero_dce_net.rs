//! DCE-Net (Zero-DCE and Zero-DCE++) from packed pixels to curve maps in
//! one dispatch (small networks) or one per layer (see
//! `shaders/zero_dce_net.wgsl`), and its CPU twin [`net_cpu`], which
//! `models::zero_dce::ZeroDce::maps_cpu` runs too.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::resize_bilinear::ResizeBilinear;
use super::{kernel_desc, ActivationKind, Conv2d, KernelDesc, UnpackPixels};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/zero_dce_net.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct NetParams {
    pub h: u32,
    pub w: u32,
    pub plus: u32,
    pub maps: u32,
    pub in_mode: u32,
    pub img_h: u32,
    pub img_w: u32,
    pub channels: u32,
    pub bits: u32,
    pub scale_h: f32,
    pub scale_w: f32,
    pub fused: u32,
    pub layer: u32,
    pub tile: u32,
    pub _pad: [u32; 2],
}

/// Descriptor of the `zero_dce_net` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("zero_dce_net", NetParams, [Read, Read, ReadWrite, ReadWrite], [64, 1, 1], ["bilinear"]);

/// Feature channels of DCE-Net.
pub const WIDTH: usize = 32;
/// Convolution layers.
pub const LAYERS: usize = 7;
/// Map tile side of the fused mode (each workgroup recomputes a halo of 6).
pub const FUSED_TILE: usize = 16;
/// Tile side of the layered mode.
pub const LAYER_TILE: usize = 8;
/// The fused mode's halo: layers before the last that each grow the field by one.
const HALO: usize = 6;
/// The most scratch the fused mode may take (it holds every workgroup's
/// region); larger networks run layer by layer.
pub const FUSED_MAX_BYTES: u64 = 64 << 20;

/// Which network: Zero-DCE++ (depthwise 3x3 then pointwise 1x1, 3 maps) or
/// Zero-DCE (dense 3x3, 24 maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSpec {
    /// Depthwise-separable layers (Zero-DCE++).
    pub plus: bool,
    /// Output channels of the last layer.
    pub maps: usize,
}

impl NetSpec {
    /// Input and output channels of layer `i`.
    pub fn layer_io(&self, i: usize) -> (usize, usize) {
        match i {
            0 => (3, WIDTH),
            1..=3 => (WIDTH, WIDTH),
            4 | 5 => (2 * WIDTH, WIDTH),
            _ => (2 * WIDTH, self.maps),
        }
    }

    /// Layer `i`'s convolutions: (depthwise, main).
    pub fn convs(&self, i: usize) -> (Option<Conv2d>, Conv2d) {
        let (cin, cout) = self.layer_io(i);
        if self.plus {
            (Some(Conv2d::depthwise(cin, 3)), Conv2d::pointwise(cin, cout))
        } else {
            (None, Conv2d::new(cin, cout, 3))
        }
    }

    /// Values of layer `i` in the flat weights.
    fn layer_len(&self, i: usize) -> usize {
        let (d, m) = self.convs(i);
        d.map_or(0, |c| c.weight_len() + c.cout) + m.weight_len() + m.cout
    }

    /// Length of the flat weights: per layer `[depthwise w, b,] main w, b`.
    pub fn flat_len(&self) -> usize {
        (0..LAYERS).map(|i| self.layer_len(i)).sum()
    }
}

/// One convolution's (weight, bias).
pub type ConvRef<'a> = (&'a [f32], &'a [f32]);
/// One layer's weights: (depthwise, for Zero-DCE++; main).
pub type LayerRef<'a> = (Option<ConvRef<'a>>, ConvRef<'a>);

/// The layers of `flat` weights in [`NetSpec::flat_len`]'s order.
pub fn split_flat(spec: NetSpec, flat: &[f32]) -> Result<Vec<LayerRef<'_>>> {
    if flat.len() != spec.flat_len() {
        return Err(Error::invalid("zero_dce", format!("{} weights, expected {}", flat.len(), spec.flat_len())));
    }
    let mut take = super::contract::flat_cursor(flat);
    let mut conv = |c: Conv2d| (take(c.weight_len()), take(c.cout));
    Ok((0..LAYERS)
        .map(|i| {
            let (dc, mc) = spec.convs(i);
            (dc.map(&mut conv), conv(mc))
        })
        .collect())
}

/// The network on the CPU: `x` (N, 3, h, w) in [0, 1] to the maps (N,
/// maps, h, w), with each layer's weights in `layers` (the shapes of
/// [`NetSpec::convs`], checked by the convolutions). Each layer's
/// activation is applied as its outputs are stored and the skip
/// connections are read in place (no concatenation copies).
pub fn net_cpu(spec: NetSpec, layers: &[LayerRef<'_>], x: &Tensor) -> Result<Tensor> {
    if x.shape.c != 3 {
        return Err(Error::invalid("zero_dce", format!("input {} must have 3 channels", x.shape)));
    }
    if layers.len() != LAYERS {
        return Err(Error::invalid("zero_dce", format!("{} layers of weights, expected {LAYERS}", layers.len())));
    }
    let mut outs: Vec<Tensor> = Vec::with_capacity(LAYERS);
    for (i, &(depth, (mw, mb))) in layers.iter().enumerate() {
        let inputs: Vec<&Tensor> = match i {
            0 => vec![x],
            1..=3 => vec![&outs[i - 1]],
            4 => vec![&outs[2], &outs[3]],
            5 => vec![&outs[1], &outs[4]],
            _ => vec![&outs[0], &outs[5]],
        };
        let act = if i + 1 == LAYERS { ActivationKind::Tanh } else { ActivationKind::Relu };
        let (dc, mc) = spec.convs(i);
        let y = match (dc, depth) {
            (Some(c), Some((w, b))) => {
                let mid = c.cpu_cat(&inputs, w, b, None)?;
                mc.cpu_cat(&[&mid], mw, mb, Some(act))?
            }
            (None, None) => mc.cpu_cat(&inputs, mw, mb, Some(act))?,
            _ => {
                return Err(Error::invalid(
                    "zero_dce",
                    format!("layer {}: depthwise weights do not fit {spec:?}", i + 1),
                ))
            }
        };
        outs.push(y);
    }
    Ok(outs.pop().expect("seven layers"))
}

/// What the network reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NetInput {
    /// Packed samples of an RGB(A) image of this layout (the first three
    /// channels), downscaled on the fly by `down` (`None`: at full size).
    Packed {
        /// The image's layout.
        layout: PixelLayout,
        /// The downscale feeding the network (`align_corners = false`).
        down: Option<ResizeBilinear>,
    },
    /// f32 planes (1, 3, h, w) already at the network's size.
    Planes {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

/// The network op: which network, what it reads, and how it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroDceNet {
    /// The network.
    pub spec: NetSpec,
    /// Its input.
    pub input: NetInput,
    /// One dispatch with halos recomputed (`true`) or one per layer.
    pub fused: bool,
}

impl ZeroDceNet {
    /// The op, fused for Zero-DCE++ when its scratch stays under
    /// [`FUSED_MAX_BYTES`]. Zero-DCE runs layer by layer: its dense layers
    /// cost 20x the separable ones per pixel, so recomputing the halos
    /// (about twice the work at 16x16 tiles) costs more than the six
    /// dispatches it would save.
    pub fn new(spec: NetSpec, input: NetInput) -> Result<Self> {
        let mut op = ZeroDceNet { spec, input, fused: spec.plus };
        op.fused = op.fused && op.feat_bytes()? <= FUSED_MAX_BYTES;
        Ok(op)
    }

    /// The network's size (height, width): the maps'.
    pub fn size(&self) -> Result<(usize, usize)> {
        match self.input {
            NetInput::Planes { h, w } => Ok((h, w)),
            NetInput::Packed { layout, down: None } => Ok((layout.height, layout.width)),
            NetInput::Packed { layout, down: Some(r) } => {
                let s = r.out_shape(Shape::new(1, 3, layout.height, layout.width))?;
                Ok((s.h, s.w))
            }
        }
    }

    /// Shape of the maps.
    pub fn maps_shape(&self) -> Result<Shape> {
        let (h, w) = self.size()?;
        Ok(Shape::new(1, self.spec.maps, h, w))
    }

    fn tile(&self) -> usize {
        if self.fused {
            FUSED_TILE
        } else {
            LAYER_TILE
        }
    }

    fn groups(&self) -> Result<[u32; 3]> {
        let (h, w) = self.size()?;
        let t = self.tile();
        Ok([w.div_ceil(t) as u32, h.div_ceil(t) as u32, 1])
    }

    /// Bytes of the feature scratch: every workgroup's region (fused) or
    /// x_1..x_6 as full planes (layered).
    pub fn feat_bytes(&self) -> Result<u64> {
        let (h, w) = self.size()?;
        let sets = ((LAYERS - 1) * WIDTH) as u64;
        Ok(if self.fused {
            let side = (FUSED_TILE + 2 * HALO) as u64;
            let [gx, gy, _] = self.groups()?;
            gx as u64 * gy as u64 * sets * side * side * 4
        } else {
            sets * (h * w) as u64 * 4
        })
    }

    /// Dispatches the op records: 1 fused, 7 layered.
    pub fn dispatches(&self) -> usize {
        if self.fused {
            1
        } else {
            LAYERS
        }
    }

    fn params(&self) -> Result<NetParams> {
        let (h, w) = self.size()?;
        let mut p = NetParams {
            h: h as u32,
            w: w as u32,
            plus: self.spec.plus as u32,
            maps: self.spec.maps as u32,
            in_mode: 1,
            fused: self.fused as u32,
            tile: self.tile() as u32,
            ..Zeroable::zeroed()
        };
        if let NetInput::Packed { layout, down } = self.input {
            if layout.channels < 3 {
                return Err(Error::invalid(
                    "zero_dce_net",
                    format!("{} channels: the network reads RGB", layout.channels),
                ));
            }
            p.in_mode = 0;
            p.img_h = layout.height as u32;
            p.img_w = layout.width as u32;
            p.channels = layout.channels as u32;
            p.bits = layout.bits;
            if let Some(r) = down {
                let (ay, ax) = r.axes(Shape::new(1, 3, layout.height, layout.width))?;
                p.scale_h = ay.scale;
                p.scale_w = ax.scale;
            }
        }
        Ok(p)
    }

    /// Checks the buffers against what the op reads and writes.
    fn check_buffers(&self, weights: &wgpu::Buffer, feat: &wgpu::Buffer, maps: &wgpu::Buffer) -> Result<()> {
        let need = [
            ("weights", weights.size(), (self.spec.flat_len() * 4) as u64),
            ("feature scratch", feat.size(), self.feat_bytes()?),
            ("maps", maps.size(), self.maps_shape()?.bytes()),
        ];
        match need.iter().find(|(_, have, want)| have < want) {
            Some((what, have, want)) => {
                Err(Error::invalid("zero_dce_net", format!("{what} buffer holds {have} bytes, needs {want}")))
            }
            None => Ok(()),
        }
    }

    /// Records the network: `src` (packed words or planes) to `maps`, with
    /// `weights` in [`NetSpec::flat_len`]'s order and `feat` at least
    /// [`ZeroDceNet::feat_bytes`] (contents undefined).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        feat: &wgpu::Buffer,
        maps: &wgpu::Buffer,
    ) -> Result<()> {
        self.check_buffers(weights, feat, maps)?;
        let mut p = self.params()?;
        let groups = self.groups()?;
        for layer in 0..self.dispatches() {
            p.layer = layer as u32;
            gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, weights, feat, maps], groups)?;
        }
        Ok(())
    }

    /// The CPU twin: unpack, downscale, [`net_cpu`].
    pub fn cpu(&self, input: &Data, flat: &[f32]) -> Result<Tensor> {
        let x = match (self.input, input) {
            (NetInput::Planes { h, w }, Data::Planes(t)) => {
                if t.shape != Shape::new(1, 3, h, w) {
                    return Err(Error::invalid("zero_dce_net", format!("input {}, expected 1x3x{h}x{w}", t.shape)));
                }
                t.clone()
            }
            (NetInput::Packed { layout, down }, Data::Packed(s)) => {
                let all = UnpackPixels(layout).cpu(s)?;
                let rgb = all.first_channels(3);
                match down {
                    Some(r) => r.cpu(&rgb)?,
                    None => rgb,
                }
            }
            _ => return Err(Error::invalid("zero_dce_net", "input kind does not match the op's")),
        };
        net_cpu(self.spec, &split_flat(self.spec, flat)?, &x)
    }
}

impl Kernel for ZeroDceNet {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        Ok(Output::Planes(self.maps_shape()?))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        Ok(Data::Planes(ZeroDceNet::cpu(self, inputs[0], &inputs[1].planes(DESC.name, 1)?.data)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        let feat = gpu.take_buffer(self.feat_bytes()?, Gpu::TENSOR_USAGE);
        let r = ZeroDceNet::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), &feat, out.buffer());
        // Recycled at once: the pool hands it out again only after this submission.
        gpu.recycle_buffer(feat);
        r
    }
}

/// The registry line of `zero_dce_net`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

/// Weights drawn like PyTorch's default initialisation (uniform
/// +-1/sqrt(fan_in)), so activations stay of order one through the layers.
fn weights(rng: &mut SplitMix, spec: NetSpec) -> Vec<f32> {
    let mut v = Vec::with_capacity(spec.flat_len());
    for i in 0..LAYERS {
        let (d, m) = spec.convs(i);
        for c in d.into_iter().chain([m]) {
            let bound = 1.0 / ((c.cin / c.groups * c.k * c.k) as f32).sqrt();
            v.extend(rng.values(c.weight_len() + c.cout, -bound, bound));
        }
    }
    v
}

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let plus = NetSpec { plus: true, maps: 3 };
    let dense = NetSpec { plus: false, maps: 24 };
    // The software adapter CI runs on takes seconds per megapixel-layer:
    // networks of at most about 40x40 (several fused tiles, odd sizes).
    let s = (w.min(h) / 20).max(1);
    let down = |s: usize| (s > 1).then(|| ResizeBilinear::by_factor(1.0 / s as f64, false));
    let mut cases = Vec::new();
    let configs = [(plus, s, 8, 3, true), (plus, s, 16, 4, false), (dense, s, 8, 4, true), (dense, s, 16, 3, false)];
    for (spec, s, bits, channels, fused) in configs {
        let layout = PixelLayout { n: 1, width: w, height: h, channels, bits };
        let op = ZeroDceNet { spec, input: NetInput::Packed { layout, down: down(s) }, fused };
        let what = format!("{op:?} {w}x{h}");
        let inputs = vec![Data::Packed(rng.samples(layout)), super::contract::constants(weights(rng, spec))];
        cases.push(Case::new(what, op, inputs, Tolerance { abs: 2e-5, rel: 1e-4 }));
    }
    // f32 planes in (the strip path's maps), both modes.
    let (ph, pw) = (h.min(40), w.min(40));
    for fused in [true, false] {
        let op = ZeroDceNet { spec: plus, input: NetInput::Planes { h: ph, w: pw }, fused };
        let x = rng.planes(Shape::new(1, 3, ph, pw), 0.0, 1.0);
        let what = format!("{op:?}");
        cases.push(Case::new(
            what,
            op,
            vec![x, super::contract::constants(weights(rng, plus))],
            Tolerance { abs: 2e-5, rel: 1e-4 },
        ));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    let spec = NetSpec { plus: true, maps: 3 };
    let layout = PixelLayout { n: 1, width: w, height: h, channels: 3, bits: 8 };
    let s = (h.min(w) / 64).clamp(1, 12);
    let down = (s > 1).then(|| ResizeBilinear::by_factor(1.0 / s as f64, false));
    let op = ZeroDceNet::new(spec, NetInput::Packed { layout, down })?;
    let inputs = vec![Data::Packed(rng.samples(layout)), super::contract::constants(weights(&mut rng, spec))];
    Ok(Case::new(
        "Zero-DCE++ network from 8-bit RGB, default scale factor",
        op,
        inputs,
        Tolerance { abs: 2e-5, rel: 1e-4 },
    ))
}
