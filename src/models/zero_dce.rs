//! Zero-DCE and Zero-DCE++: zero-reference low-light enhancement
//! (../shared/SCIENCE.md).
//!
//! DCE-Net: seven 3x3 convolutions of 32 channels with ReLU and symmetric
//! concatenations (conv5 takes cat(x3, x4), conv6 cat(x2, x5), conv7
//! cat(x1, x6)); conv7 ends in tanh and gives the curve maps.
//!
//! | model | convolutions | maps | parameters |
//! | --- | --- | --- | --- |
//! | Zero-DCE | dense 3x3 | 24 (one RGB set per iteration) | 79,416 |
//! | Zero-DCE++ | depthwise 3x3 + pointwise 1x1 | 3 (shared by the 8 iterations) | 10,561 |
//!
//! Zero-DCE++ runs the network on the image downscaled by the scale factor s
//! (bilinear, `align_corners = false`, PyTorch's `F.interpolate` with
//! `scale_factor = 1/s`) and samples the maps back at full size (bilinear,
//! `align_corners = true`) while it applies the curve
//! ([`crate::kernels::ZeroDceEnhance`]). Any image size works: the maps are
//! resampled to the image's own size, which for sides that are multiples of
//! s is exactly the reference's `UpsamplingBilinear2d(scale_factor=s)`.
//!
//! Tensor names are the reference implementation's `state_dict` (OIHW):
//! Zero-DCE `e_conv{1..7}.{weight,bias}`, Zero-DCE++
//! `e_conv{1..7}.depth_conv.{weight,bias}` and `e_conv{1..7}.point_conv.{weight,bias}`,
//! so converted weights load as they are and the architecture is recognised
//! from the names.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::zero_dce_net::{net_cpu, LayerRef, NetInput, NetSpec, ZeroDceNet};
use crate::kernels::{ActivationKind, Conv2d, ResizeBilinear, ZeroDceEnhance};
use crate::tensor::{Shape, Tensor};
use crate::weights::Weights;

/// Feature channels of DCE-Net, and its number of convolution layers.
pub use crate::kernels::zero_dce_net::{LAYERS, WIDTH};
/// Curve iterations both papers use.
pub const ITERATIONS: usize = 8;
/// The scale factor the Zero-DCE++ reference uses at test time.
pub const MAX_SCALE_FACTOR: usize = 12;
/// Shorter side, in pixels, that [`default_scale_factor`] keeps for the network's input.
pub const MIN_NETWORK_SIDE: usize = 64;

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Zero-DCE++: depthwise-separable convolutions, 3 shared maps.
    ZeroDcePlus,
    /// Zero-DCE: dense convolutions, 24 maps (8 iterations x RGB).
    ZeroDce,
}

impl Arch {
    /// CLI names, in the order of [`Arch::ALL`].
    pub const NAMES: [&'static str; 2] = ["zero-dce++", "zero-dce"];
    /// Both architectures.
    pub const ALL: [Arch; 2] = [Arch::ZeroDcePlus, Arch::ZeroDce];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Result<Arch> {
        Self::ALL.into_iter().find(|a| a.name() == s.to_ascii_lowercase()).ok_or_else(|| Error::UnknownValue {
            what: "model",
            value: s.to_string(),
            valid: Self::NAMES.join(", "),
        })
    }

    /// Curve maps conv7 produces.
    pub fn maps(self) -> usize {
        match self {
            Arch::ZeroDcePlus => 3,
            Arch::ZeroDce => 3 * ITERATIONS,
        }
    }

    /// One map set per iteration (Zero-DCE) or one shared set.
    pub fn per_iteration(self) -> bool {
        self == Arch::ZeroDce
    }

    /// Input and output channels of layer `i` (0-based).
    pub fn layer_io(self, i: usize) -> (usize, usize) {
        self.spec().layer_io(i)
    }

    /// The convolutions of layer `i`: (depthwise, main). The main one is a
    /// dense 3x3 (Zero-DCE) or the pointwise 1x1 after the depthwise 3x3.
    pub fn convs(self, i: usize) -> (Option<Conv2d>, Conv2d) {
        self.spec().convs(i)
    }

    /// The network as the `zero_dce_net` kernel takes it.
    pub fn spec(self) -> NetSpec {
        NetSpec { plus: self == Arch::ZeroDcePlus, maps: self.maps() }
    }

    /// Tensor-name prefixes of layer `i`: (depthwise, main).
    fn names(self, i: usize) -> (Option<String>, String) {
        let l = format!("e_conv{}", i + 1);
        match self {
            Arch::ZeroDce => (None, l),
            Arch::ZeroDcePlus => (Some(format!("{l}.depth_conv")), format!("{l}.point_conv")),
        }
    }
}

/// The scale factor used when none is given: the largest s up to 12 that
/// leaves the network at least 64 pixels on the shorter side (s = 12 for
/// 1200x900, 4 for 451x300, 1 below 128 pixels).
pub fn default_scale_factor(h: usize, w: usize) -> usize {
    (h.min(w) / MIN_NETWORK_SIDE).clamp(1, MAX_SCALE_FACTOR)
}

/// (weight OIHW, bias) of one convolution.
pub type ConvWeights = (Vec<f32>, Vec<f32>);

/// One layer's weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The depthwise 3x3 (Zero-DCE++ only).
    pub depth: Option<ConvWeights>,
    /// The dense 3x3 (Zero-DCE) or pointwise 1x1 (Zero-DCE++).
    pub main: ConvWeights,
}

/// What the CPU forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Input of each layer (the concatenations for layers 5..7).
    pub ins: Vec<Tensor>,
    /// Output of each layer's depthwise convolution (Zero-DCE++).
    pub mids: Vec<Option<Tensor>>,
    /// Output of each layer after its activation (ReLU; tanh for the maps).
    pub outs: Vec<Tensor>,
}

impl Trace {
    /// The curve maps (the last layer's output).
    pub fn maps(&self) -> &Tensor {
        &self.outs[LAYERS - 1]
    }
}

/// A Zero-DCE or Zero-DCE++ model.
///
/// ```
/// use gpuimg::models::{zero_dce::Arch, ZeroDce};
/// use gpuimg::{Shape, Tensor};
/// let model = ZeroDce::bundled(Arch::ZeroDcePlus)?; // the shipped weights
/// // f32 planes in [0, 1]: the curve maps, then the enhanced planes
/// // (images: `gpuimg::ops::enhance`).
/// let dark = Tensor::from_vec(Shape::new(1, 3, 16, 24), vec![0.1; 3 * 16 * 24])?;
/// let maps = model.maps_cpu(&dark)?;
/// assert_eq!(maps.shape.c, 3);
/// let bright = model.enhance_cpu(&dark, 1, 8)?;
/// assert!(bright.data.iter().all(|&v| v > 0.1 && v <= 1.0));
/// # Ok::<(), gpuimg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroDce {
    /// The architecture.
    pub arch: Arch,
    /// Layers 1..7.
    pub layers: Vec<Layer>,
}

static BUNDLED_PLUS: &[u8] = include_bytes!("../../assets/zero_dce_pp.safetensors");
static BUNDLED_DCE: &[u8] = include_bytes!("../../assets/zero_dce.safetensors");

/// Channel concatenation of two NCHW tensors of the same batch and size.
pub fn cat(a: &Tensor, b: &Tensor) -> Tensor {
    let (sa, sb) = (a.shape, b.shape);
    debug_assert!(sa.n == sb.n && sa.h == sb.h && sa.w == sb.w);
    let (pa, pb) = (sa.c * sa.plane(), sb.c * sb.plane());
    let mut data = Vec::with_capacity(a.data.len() + b.data.len());
    for n in 0..sa.n {
        data.extend_from_slice(&a.data[n * pa..(n + 1) * pa]);
        data.extend_from_slice(&b.data[n * pb..(n + 1) * pb]);
    }
    Tensor { shape: Shape::new(sa.n, sa.c + sb.c, sa.h, sa.w), data }
}

impl ZeroDce {
    /// Builds the GPU pipelines enhancement records (the fused network,
    /// the curve, resizing, pixel packing, and the per-layer path), so the
    /// first frame does not compile them ([`Gpu::prepare`]). Returns how
    /// many it built.
    pub fn prepare(&self, gpu: &Gpu) -> usize {
        use crate::kernels as k;
        gpu.prepare(&[
            &k::zero_dce_net::DESC,
            &k::zero_dce_enhance::DESC,
            &k::resize_bilinear::DESC,
            &k::unpack_pixels::DESC,
            &k::pack_pixels::DESC,
            &k::conv2d::DESC,
            &k::activation::DESC,
        ])
    }

    /// A model with small random weights (uniform, standard deviation 0.02,
    /// as the reference's `weights_init`; biases uniform +-1/sqrt(fan_in) as
    /// PyTorch's default): the start of training, maps close to 0.
    pub fn init(arch: Arch, rng: &mut impl FnMut() -> f32) -> ZeroDce {
        let mut conv = |c: Conv2d| {
            let a = 0.02 * 3f32.sqrt();
            let w = (0..c.weight_len()).map(|_| (2.0 * rng() - 1.0) * a).collect();
            let bound = 1.0 / ((c.cin / c.groups * c.k * c.k) as f32).sqrt();
            let b = (0..c.cout).map(|_| (2.0 * rng() - 1.0) * bound).collect();
            (w, b)
        };
        let layers = (0..LAYERS)
            .map(|i| {
                let (d, m) = arch.convs(i);
                Layer { depth: d.map(&mut conv), main: conv(m) }
            })
            .collect();
        ZeroDce { arch, layers }
    }

    /// Number of parameters (79,416 for Zero-DCE, 10,561 for Zero-DCE++).
    pub fn parameter_count(&self) -> usize {
        self.flat().len()
    }

    /// Every parameter in one vector: per layer depthwise weight and bias, then
    /// main weight and bias. The order of [`ZeroDce::set_flat`] and of gradients.
    pub fn flat(&self) -> Vec<f32> {
        let mut v = Vec::new();
        for l in &self.layers {
            for (w, b) in l.depth.iter().chain([&l.main]) {
                v.extend_from_slice(w);
                v.extend_from_slice(b);
            }
        }
        v
    }

    /// Sets every parameter from a vector in [`ZeroDce::flat`]'s order.
    pub fn set_flat(&mut self, v: &[f32]) {
        let mut k = 0;
        for l in &mut self.layers {
            for (w, b) in l.depth.iter_mut().chain([&mut l.main]) {
                for t in [w, b] {
                    let n = t.len();
                    t.copy_from_slice(&v[k..k + n]);
                    k += n;
                }
            }
        }
    }

    /// The model in `w`, its architecture recognised from the tensor names.
    /// A missing or misshapen tensor is an error naming it.
    pub fn from_weights(w: &Weights) -> Result<ZeroDce> {
        let arch = if w.tensors.contains_key("e_conv1.depth_conv.weight") {
            Arch::ZeroDcePlus
        } else if w.tensors.contains_key("e_conv1.weight") {
            Arch::ZeroDce
        } else {
            return Err(Error::invalid(
                "weights",
                "not Zero-DCE weights: expected 'e_conv1.weight' (Zero-DCE) or 'e_conv1.depth_conv.weight' (Zero-DCE++)",
            ));
        };
        let get = |name: &str, c: Conv2d| -> Result<ConvWeights> {
            let ws = [c.cout, c.cin / c.groups, c.k, c.k];
            Ok((w.get(&format!("{name}.weight"), &ws)?.to_vec(), w.get(&format!("{name}.bias"), &[c.cout])?.to_vec()))
        };
        let layers = (0..LAYERS)
            .map(|i| {
                let (dc, mc) = arch.convs(i);
                let (dn, mn) = arch.names(i);
                let depth = match (dc, dn) {
                    (Some(c), Some(n)) => Some(get(&n, c)?),
                    _ => None,
                };
                Ok(Layer { depth, main: get(&mn, mc)? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ZeroDce { arch, layers })
    }

    /// The weights under the reference's tensor names.
    pub fn to_weights(&self) -> Weights {
        let mut out = Weights::default();
        for (i, l) in self.layers.iter().enumerate() {
            let (dc, mc) = self.arch.convs(i);
            let (dn, mn) = self.arch.names(i);
            let mut put = |name: &str, c: Conv2d, (w, b): &ConvWeights| {
                out.insert(&format!("{name}.weight"), &[c.cout, c.cin / c.groups, c.k, c.k], w.clone());
                out.insert(&format!("{name}.bias"), &[c.cout], b.clone());
            };
            if let (Some(c), Some(n), Some(wb)) = (dc, dn, &l.depth) {
                put(&n, c, wb);
            }
            put(&mn, mc, &l.main);
        }
        out.metadata.insert("architecture".into(), self.arch.name().into());
        out
    }

    /// The weights bundled with gpuimg (trained by `gpuimg train enhance`).
    pub fn bundled(arch: Arch) -> Result<ZeroDce> {
        let (bytes, name) = match arch {
            Arch::ZeroDcePlus => (BUNDLED_PLUS, "assets/zero_dce_pp.safetensors"),
            Arch::ZeroDce => (BUNDLED_DCE, "assets/zero_dce.safetensors"),
        };
        Self::from_weights(&Weights::from_bytes(bytes, std::path::Path::new(name))?)
    }

    /// The fused upsample-and-curve op for these maps.
    pub fn curve(&self, iterations: usize) -> Result<ZeroDceEnhance> {
        if iterations == 0 {
            return Err(Error::invalid("enhance", "--iterations must be at least 1"));
        }
        if self.arch.per_iteration() && iterations != ITERATIONS {
            return Err(Error::invalid(
                "enhance",
                format!("zero-dce predicts one map set for each of {ITERATIONS} iterations; --iterations {iterations} needs zero-dce++"),
            ));
        }
        Ok(ZeroDceEnhance { iterations, per_iteration: self.arch.per_iteration(), colour: 3 })
    }

    /// The downscale that feeds the network (`None` for s = 1), checked
    /// against the image size.
    pub fn downscale(h: usize, w: usize, s: usize) -> Result<Option<ResizeBilinear>> {
        if s == 0 {
            return Err(Error::invalid("enhance", "scale factor must be at least 1"));
        }
        if s > h.min(w) {
            return Err(Error::invalid(
                "enhance",
                format!("scale factor {s} is larger than the image's shorter side ({})", h.min(w)),
            ));
        }
        Ok((s > 1).then(|| ResizeBilinear::by_factor(1.0 / s as f64, false)))
    }

    /// Layer `i` on the CPU: (depthwise output, main output before activation).
    fn layer_cpu(&self, i: usize, x: &Tensor) -> Result<(Option<Tensor>, Tensor)> {
        let (dc, mc) = self.arch.convs(i);
        let l = &self.layers[i];
        let mid = match (dc, &l.depth) {
            (Some(c), Some((w, b))) => Some(c.cpu(x, w, b)?),
            _ => None,
        };
        let y = mc.cpu(mid.as_ref().unwrap_or(x), &l.main.0, &l.main.1)?;
        Ok((mid, y))
    }

    /// The network on the CPU with everything the backward pass needs:
    /// `x` is (N, 3, h, w) in [0, 1], the maps (N, maps, h, w).
    pub fn forward_trace(&self, x: &Tensor) -> Result<Trace> {
        if x.shape.c != 3 {
            return Err(Error::invalid("zero_dce", format!("input {} must have 3 channels", x.shape)));
        }
        let mut t = Trace { ins: Vec::with_capacity(LAYERS), mids: Vec::new(), outs: Vec::new() };
        for i in 0..LAYERS {
            let input = match i {
                0 => x.clone(),
                1..=3 => t.outs[i - 1].clone(),
                4 => cat(&t.outs[2], &t.outs[3]),
                5 => cat(&t.outs[1], &t.outs[4]),
                _ => cat(&t.outs[0], &t.outs[5]),
            };
            let (mid, mut y) = self.layer_cpu(i, &input)?;
            let f = if i + 1 == LAYERS { ActivationKind::Tanh } else { ActivationKind::Relu };
            f.apply_all(&mut y.data);
            t.ins.push(input);
            t.mids.push(mid);
            t.outs.push(y);
        }
        Ok(t)
    }

    /// The curve maps of `x` (N, 3, h, w) on the CPU: the forward pass
    /// without a trace ([`net_cpu`], the `zero_dce_net` kernel's CPU twin);
    /// the same values as [`ZeroDce::forward_trace`]'s last output.
    pub fn maps_cpu(&self, x: &Tensor) -> Result<Tensor> {
        let layers: Vec<LayerRef<'_>> = self
            .layers
            .iter()
            .map(|l| (l.depth.as_ref().map(|(w, b)| (&w[..], &b[..])), (&l.main.0[..], &l.main.1[..])))
            .collect();
        net_cpu(self.arch.spec(), &layers, x)
    }

    /// Enhances planar RGB `x` (N, C >= 3, H, W; channels past 3 pass through)
    /// on the CPU: downscale by `s`, network, fused upsample and curve.
    pub fn enhance_cpu(&self, x: &Tensor, s: usize, iterations: usize) -> Result<Tensor> {
        let curve = self.curve(iterations)?;
        let rgb = x.first_channels(3);
        let small = match Self::downscale(x.shape.h, x.shape.w, s)? {
            Some(r) => r.cpu(&rgb)?,
            None => rgb,
        };
        curve.cpu(x, &self.maps_cpu(&small)?)
    }

    /// Uploads the weights (one flat buffer, [`ZeroDce::flat`]'s order).
    pub fn upload(&self, gpu: &Gpu) -> GpuZeroDce {
        GpuZeroDce { spec: self.arch.spec(), weights: gpu.constant("gpuimg.zero_dce_net.weights", &self.flat()) }
    }
}

/// Zero-DCE weights resident on a GPU.
#[derive(Debug)]
pub struct GpuZeroDce {
    spec: NetSpec,
    weights: wgpu::Buffer,
}

impl GpuZeroDce {
    /// Records the network ([`ZeroDceNet`]: one dispatch for a small
    /// network, one per layer for a large one) reading `input` from `src`
    /// (packed pixels, downscaled on the fly, or f32 planes at the network's
    /// size) into `maps` (1, maps, h, w). The feature scratch comes from the
    /// pool and is pushed onto `scratch`; recycle it after the submission.
    pub fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        input: NetInput,
        src: &wgpu::Buffer,
        maps: &GpuTensor,
        scratch: &mut Vec<wgpu::Buffer>,
    ) -> Result<()> {
        let op = ZeroDceNet::new(self.spec, input)?;
        maps.expect_shape("zero_dce", op.maps_shape()?)?;
        let bytes = op.feat_bytes()?;
        gpu.check_size("zero_dce features", bytes)?;
        scratch.push(gpu.take_buffer(bytes, Gpu::TENSOR_USAGE));
        op.encode(gpu, enc, src, &self.weights, scratch.last().expect("just pushed"), &maps.buffer)
    }
}
