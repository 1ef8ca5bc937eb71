//! TinyPSSR: super-resolution in 1,356 parameters per x2 stage
//! (../shared/SCIENCE.md). One x2 stage:
//!
//! | layer | shape | params |
//! | --- | --- | --- |
//! | conv1 5x5, 1 -> 16, same | 16x1x5x5 + 16 | 416 |
//! | prelu1 | 16 | 16 |
//! | conv2 1x1, 16 -> 4 | 4x16 + 4 | 68 |
//! | prelu2 | 4 | 4 |
//! | conv3 5x5, 4 -> 8, same | 8x4x5x5 + 8 | 808 |
//! | prelu3 | 8 | 8 |
//! | conv4 1x1, 8 -> 4 | 4x8 + 4 | 36 |
//! | pixel shuffle r = 2 | | 0 |
//!
//! TinyPSSR-4 is two x2 stages chained (2,712 parameters; the paper's x4
//! model has 2,716 and no published layer table, and two stages is the
//! simplest design consistent with that count). Colour images run R, G and B
//! as a batch of three single-channel images.
//!
//! Tensor names: `stages.{i}.conv{1..4}.{weight,bias}` (OIHW) and
//! `stages.{i}.prelu{1..3}.weight`.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::tinypssr_fused::stage_cpu;
use crate::kernels::{Conv2d, PixelShuffle, Prelu};
use crate::tensor::{Shape, Tensor};
use crate::weights::Weights;

/// The four convolutions of one x2 stage.
pub const CONVS: [Conv2d; 4] = [
    Conv2d { cin: 1, cout: 16, k: 5, groups: 1 },
    Conv2d { cin: 16, cout: 4, k: 1, groups: 1 },
    Conv2d { cin: 4, cout: 8, k: 5, groups: 1 },
    Conv2d { cin: 8, cout: 4, k: 1, groups: 1 },
];

/// Receptive-field radius of one stage in its input pixels (two 5x5 convs).
pub const HALO: usize = 4;

/// Weights of one x2 stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// (weight OIHW, bias) of conv1..conv4.
    pub conv: [(Vec<f32>, Vec<f32>); 4],
    /// PReLU slopes after conv1..conv3.
    pub prelu: [Vec<f32>; 3],
}

impl Stage {
    /// The weights in the fused kernel's flat order: conv1 w, b, prelu1,
    /// conv2 w, b, prelu2, conv3 w, b, prelu3, conv4 w, b.
    pub fn flat(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(crate::kernels::tinypssr_fused::FLAT_LEN);
        for l in 0..4 {
            v.extend_from_slice(&self.conv[l].0);
            v.extend_from_slice(&self.conv[l].1);
            if l < 3 {
                v.extend_from_slice(&self.prelu[l]);
            }
        }
        debug_assert_eq!(v.len(), crate::kernels::tinypssr_fused::FLAT_LEN);
        v
    }

    /// Parameters of one stage (1,356).
    pub fn parameter_count(&self) -> usize {
        self.conv.iter().map(|(w, b)| w.len() + b.len()).sum::<usize>() + self.prelu.iter().map(Vec::len).sum::<usize>()
    }

    /// A stage with PyTorch's default initialisation (uniform +-1/sqrt(fan_in),
    /// PReLU 0.25), from a seeded generator: the start of training.
    pub fn init(rng: &mut impl FnMut() -> f32) -> Stage {
        let conv = CONVS.map(|c| {
            let bound = 1.0 / ((c.cin / c.groups * c.k * c.k) as f32).sqrt();
            let w = (0..c.weight_len()).map(|_| (2.0 * rng() - 1.0) * bound).collect();
            let b = (0..c.cout).map(|_| (2.0 * rng() - 1.0) * bound).collect();
            (w, b)
        });
        let prelu = [vec![0.25; 16], vec![0.25; 4], vec![0.25; 8]];
        Stage { conv, prelu }
    }
}

impl Stage {
    /// A stage that starts as MATLAB bicubic x2 upsampling: a carrier channel
    /// passes the input through conv1 (centre tap), conv2 and the PReLUs (slope 1),
    /// conv3 applies the four bicubic phase filters (Keys, a = -0.5) that the
    /// pixel shuffle interleaves, and conv4 passes them on. The other channels
    /// start random (PyTorch's default) and feed the output through small
    /// weights, so training learns what to add to bicubic. This is only the
    /// starting point of training: every weight is trained.
    pub fn init_bicubic(rng: &mut impl FnMut() -> f32) -> Stage {
        let mut s = Stage::init(rng);
        // Even output rows/columns sample the input at -0.25, odd ones at +0.25:
        // taps at offsets -2..1 and -1..2 of the 5-tap window.
        let even = [-0.0234375, 0.2265625, 0.8671875, -0.0703125, 0.0];
        let odd = [0.0, -0.0703125, 0.8671875, 0.2265625, -0.0234375];
        // conv1: channel 0 is the identity.
        s.conv[0].0[..25].fill(0.0);
        s.conv[0].0[12] = 1.0;
        s.conv[0].1[0] = 0.0;
        s.prelu[0][0] = 1.0;
        // conv2: output 0 = input channel 0.
        s.conv[1].0[..16].fill(0.0);
        s.conv[1].0[0] = 1.0;
        s.conv[1].1[0] = 0.0;
        s.prelu[1][0] = 1.0;
        // conv3: outputs 0..4 are the phase filters of input channel 0 (others 0).
        for (o, (py, px)) in [(&even, &even), (&even, &odd), (&odd, &even), (&odd, &odd)].into_iter().enumerate() {
            let w = &mut s.conv[2].0[o * 100..(o + 1) * 100];
            w.fill(0.0);
            for u in 0..5 {
                for v in 0..5 {
                    w[u * 5 + v] = py[u] * px[v];
                }
            }
            s.conv[2].1[o] = 0.0;
            s.prelu[2][o] = 1.0;
        }
        // conv4: identity from channels 0..4, small weights from the free channels 4..8.
        for o in 0..4 {
            for c in 0..8 {
                let w = &mut s.conv[3].0[o * 8 + c];
                *w = if c == o {
                    1.0
                } else if c < 4 {
                    0.0
                } else {
                    *w * 0.05
                };
            }
            s.conv[3].1[o] = 0.0;
        }
        s
    }
}

/// A TinyPSSR model: one stage for x2, two for x4.
///
/// ```
/// use gpuimg::{models::TinyPssr, Shape, Tensor};
/// let x4 = TinyPssr::bundled(4)?; // the shipped weights
/// assert_eq!((x4.scale(), x4.stages.len()), (4, 2));
/// // One-channel f32 planes in and out; colour channels go as a batch of
/// // three (images: `gpuimg::ops::super_resolve`).
/// let y = x4.forward_cpu(&Tensor::from_vec(Shape::new(3, 1, 9, 7), vec![0.5; 3 * 9 * 7])?)?;
/// assert_eq!(y.shape, Shape::new(3, 1, 36, 28));
/// assert!(y.data.iter().all(|v| v.is_finite()));
/// # Ok::<(), gpuimg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TinyPssr {
    /// The x2 stages, applied in order.
    pub stages: Vec<Stage>,
}

/// Scales gpuimg has models for.
pub const SCALES: [usize; 2] = [2, 4];

impl TinyPssr {
    /// Builds the GPU pipelines this model's paths record (the fused
    /// stages, pixel packing, and the planar layers), so the first frame
    /// does not compile them ([`Gpu::prepare`]). Returns how many it built.
    pub fn prepare(&self, gpu: &Gpu) -> usize {
        use crate::kernels as k;
        gpu.prepare(&[
            &k::tinypssr_fused::DESC,
            &k::tinypssr_x4_fused::DESC,
            &k::alpha_upscale::DESC,
            &k::unpack_pixels::DESC,
            &k::pack_pixels::DESC,
            &k::conv2d::DESC,
            &k::prelu::DESC,
            &k::pixel_shuffle::DESC,
        ])
    }

    /// Upscale factor: 2 per stage.
    pub fn scale(&self) -> usize {
        1 << self.stages.len()
    }

    /// Receptive-field radius in input pixels: [`HALO`] for the first
    /// stage, and each later stage's halo (in its own, larger pixels)
    /// divided by the scale before it, rounded up (x2: 4, x4: 6). Tiles
    /// with this halo give the untiled output (`gpuimg::tiling`).
    pub fn receptive_radius(&self) -> usize {
        (0..self.stages.len()).map(|k| HALO.div_ceil(1 << k)).sum()
    }

    /// Number of stages for a scale, or an error listing the supported ones.
    pub fn stages_for(scale: usize) -> Result<usize> {
        match scale {
            2 => Ok(1),
            4 => Ok(2),
            _ => Err(Error::UnknownValue { what: "scale", value: scale.to_string(), valid: "2, 4".into() }),
        }
    }

    /// Total parameters.
    pub fn parameter_count(&self) -> usize {
        self.stages.iter().map(Stage::parameter_count).sum()
    }

    /// Reads the model from named tensors; the number of stages comes from
    /// the names. A missing or misshapen tensor is an error naming it.
    pub fn from_weights(w: &Weights) -> Result<TinyPssr> {
        let n = (0..8).take_while(|i| w.tensors.contains_key(&format!("stages.{i}.conv1.weight"))).count();
        if n == 0 {
            return Err(Error::invalid(
                "tinypssr",
                "no tensor 'stages.0.conv1.weight': not TinyPSSR weights".to_string(),
            ));
        }
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let conv = CONVS
                .iter()
                .enumerate()
                .map(|(l, c)| {
                    let wn = format!("stages.{i}.conv{}.weight", l + 1);
                    let bn = format!("stages.{i}.conv{}.bias", l + 1);
                    let wt = w.get(&wn, &[c.cout, c.cin / c.groups, c.k, c.k])?.to_vec();
                    let b = w.get(&bn, &[c.cout])?.to_vec();
                    Ok((wt, b))
                })
                .collect::<Result<Vec<_>>>()?;
            let prelu = [16usize, 4, 8]
                .iter()
                .enumerate()
                .map(|(l, &c)| Ok(w.get(&format!("stages.{i}.prelu{}.weight", l + 1), &[c])?.to_vec()))
                .collect::<Result<Vec<_>>>()?;
            let conv: [(Vec<f32>, Vec<f32>); 4] = conv.try_into().expect("four convs");
            let prelu: [Vec<f32>; 3] = prelu.try_into().expect("three prelus");
            stages.push(Stage { conv, prelu });
        }
        let model = TinyPssr { stages };
        Self::stages_for(model.scale())?;
        Ok(model)
    }

    /// The model as named tensors, with metadata `model` and `scale`.
    pub fn to_weights(&self) -> Weights {
        let mut w = Weights::default();
        for (i, s) in self.stages.iter().enumerate() {
            for (l, (c, (wt, b))) in CONVS.iter().zip(&s.conv).enumerate() {
                w.insert(
                    &format!("stages.{i}.conv{}.weight", l + 1),
                    &[c.cout, c.cin / c.groups, c.k, c.k],
                    wt.clone(),
                );
                w.insert(&format!("stages.{i}.conv{}.bias", l + 1), &[c.cout], b.clone());
            }
            for (l, a) in s.prelu.iter().enumerate() {
                w.insert(&format!("stages.{i}.prelu{}.weight", l + 1), &[a.len()], a.clone());
            }
        }
        w.metadata.insert("model".into(), "tinypssr".into());
        w.metadata.insert("scale".into(), self.scale().to_string());
        w
    }

    /// The fast CPU forward pass, (N, 1, H, W) to (N, 1, H*s, W*s): each x2
    /// stage is the `tinypssr_fused` kernel's CPU twin
    /// ([`crate::kernels::tinypssr_fused::stage_cpu`]).
    pub fn forward_fast(&self, x: &Tensor) -> Result<Tensor> {
        let mut cur = stage_cpu(&self.stages[0].flat(), x)?;
        for s in &self.stages[1..] {
            cur = stage_cpu(&s.flat(), &cur)?;
        }
        Ok(cur)
    }

    /// Layer-by-layer forward pass on the CPU: `x` is (N, 1, H, W), the result
    /// (N, 1, H*s, W*s). The reference the fused paths are tested against.
    pub fn forward_cpu(&self, x: &Tensor) -> Result<Tensor> {
        let mut cur = x.clone();
        for s in &self.stages {
            for (l, conv) in CONVS.iter().enumerate() {
                cur = conv.cpu(&cur, &s.conv[l].0, &s.conv[l].1)?;
                if l < 3 {
                    cur = Prelu.cpu(&cur, &s.prelu[l])?;
                }
            }
            cur = PixelShuffle { r: 2 }.cpu(&cur)?;
        }
        Ok(cur)
    }

    /// Uploads the weights once for GPU runs.
    pub fn upload(&self, gpu: &Gpu) -> GpuTinyPssr {
        let stages = self
            .stages
            .iter()
            .map(|s| GpuStage {
                conv: std::array::from_fn(|l| {
                    (gpu.constant("gpuimg.tinypssr.w", &s.conv[l].0), gpu.constant("gpuimg.tinypssr.b", &s.conv[l].1))
                }),
                prelu: std::array::from_fn(|l| gpu.constant("gpuimg.tinypssr.a", &s.prelu[l])),
            })
            .collect();
        GpuTinyPssr { stages }
    }
}

/// One stage's weights on the GPU.
#[derive(Debug)]
pub struct GpuStage {
    conv: [(wgpu::Buffer, wgpu::Buffer); 4],
    prelu: [wgpu::Buffer; 3],
}

/// TinyPSSR weights resident on a GPU.
#[derive(Debug)]
pub struct GpuTinyPssr {
    stages: Vec<GpuStage>,
}

impl GpuTinyPssr {
    /// Output shape for an input shape (N, 1, H, W).
    pub fn out_shape(&self, s: Shape) -> Shape {
        let f = 1 << self.stages.len();
        Shape::new(s.n, 1, s.h * f, s.w * f)
    }

    /// Records the layer-by-layer network into `encoder`: `x` (N, 1, H, W) to
    /// `y` (N, 1, H*s, W*s). Intermediates come from the pool and are pushed
    /// onto `scratch`; hand them back with [`Gpu::recycle`] once the encoder
    /// has been submitted (not before: a later upload could overwrite them).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        scratch: &mut Vec<GpuTensor>,
    ) -> Result<()> {
        if x.shape.c != 1 || y.shape != self.out_shape(x.shape) {
            return Err(Error::invalid("tinypssr", format!("input {} / output {} do not fit", x.shape, y.shape)));
        }
        let temps = scratch;
        let mut cur = x.clone();
        {
            for (si, s) in self.stages.iter().enumerate() {
                for (l, conv) in CONVS.iter().enumerate() {
                    let shape = Shape::new(cur.shape.n, conv.cout, cur.shape.h, cur.shape.w);
                    let t = gpu.alloc(shape)?;
                    conv.encode(gpu, encoder, &cur, &s.conv[l].0, &s.conv[l].1, &t)?;
                    temps.push(t.clone());
                    cur = t;
                    if l < 3 {
                        let t = gpu.alloc(shape)?;
                        Prelu.encode(gpu, encoder, &cur, &s.prelu[l], &t)?;
                        temps.push(t.clone());
                        cur = t;
                    }
                }
                let shape = Shape::new(cur.shape.n, 1, cur.shape.h * 2, cur.shape.w * 2);
                let t = if si + 1 == self.stages.len() { y.clone() } else { gpu.alloc(shape)? };
                PixelShuffle { r: 2 }.encode(gpu, encoder, &cur, &t)?;
                if si + 1 != self.stages.len() {
                    temps.push(t.clone());
                }
                cur = t;
            }
        }
        Ok(())
    }
}

/// The shipped weights, trained by `gpuimg train sr` (recipe in assets/README.md).
static BUNDLED_X2: &[u8] = include_bytes!("../../assets/tinypssr_x2.safetensors");
static BUNDLED_X4: &[u8] = include_bytes!("../../assets/tinypssr_x4.safetensors");

impl TinyPssr {
    /// The weights shipped in `assets/` for a scale.
    pub fn bundled(scale: usize) -> Result<TinyPssr> {
        let (bytes, name) = match Self::stages_for(scale)? {
            1 => (BUNDLED_X2, "assets/tinypssr_x2.safetensors"),
            _ => (BUNDLED_X4, "assets/tinypssr_x4.safetensors"),
        };
        Self::from_weights(&Weights::from_bytes(bytes, std::path::Path::new(name))?)
    }
}
