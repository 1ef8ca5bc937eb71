//! TinyCompress (seed 003): a tiny learned image codec. One encoding block
//! (5,427 parameters) divides the pixel count by 4; one decoding block
//! (1,071 parameters) multiplies it back. -4, -16 and -64 chain one, two or
//! three of each. Layer shapes are SCIENCE.md's table:
//!
//! ```text
//! encode block: conv 9x9 3->15, PReLU, conv 1x1 15->3, PReLU, pixel unshuffle 2 (3 -> 12),
//!               conv 3x3 12->15, PReLU, conv 1x1 15->3, PReLU
//! decode block: conv 3x3 3->12, PReLU, pixel shuffle 2 (12 -> 3), conv 5x5 3->9, PReLU,
//!               conv 1x1 9->3, sigmoid
//! ```

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::{Activation, ActivationKind, Conv2d, PixelShuffle, PixelUnshuffle, Prelu};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// One layer of a TinyCompress network.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution with its weights and bias.
    Conv { conv: Conv2d, w: Vec<f32>, b: Vec<f32> },
    /// PReLU with one slope per channel.
    Prelu(Vec<f32>),
    /// Pixel unshuffle by 2.
    Unshuffle,
    /// Pixel shuffle by 2.
    Shuffle,
    /// Sigmoid.
    Sigmoid,
}

/// A chain of layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    /// The layers in order.
    pub layers: Vec<Layer>,
}

fn conv(cin: usize, cout: usize, k: usize) -> Layer {
    let c = Conv2d::new(cin, cout, k);
    Layer::Conv { conv: c, w: vec![0.0; c.weight_len()], b: vec![0.0; cout] }
}

/// The layers of one encoding block.
pub fn encode_block() -> Vec<Layer> {
    vec![
        conv(3, 15, 9),
        Layer::Prelu(vec![0.25; 15]),
        conv(15, 3, 1),
        Layer::Prelu(vec![0.25; 3]),
        Layer::Unshuffle,
        conv(12, 15, 3),
        Layer::Prelu(vec![0.25; 15]),
        conv(15, 3, 1),
        Layer::Prelu(vec![0.25; 3]),
    ]
}

/// The layers of one decoding block.
pub fn decode_block() -> Vec<Layer> {
    vec![
        conv(3, 12, 3),
        Layer::Prelu(vec![0.25; 12]),
        Layer::Shuffle,
        conv(3, 9, 5),
        Layer::Prelu(vec![0.25; 9]),
        conv(9, 3, 1),
        Layer::Sigmoid,
    ]
}

impl Net {
    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Conv { w, b, .. } => w.len() + b.len(),
                Layer::Prelu(a) => a.len(),
                _ => 0,
            })
            .sum()
    }

    /// All parameters in one vector (conv weights, biases, slopes in layer order).
    pub fn flatten(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.param_count());
        for l in &self.layers {
            match l {
                Layer::Conv { w, b, .. } => {
                    v.extend_from_slice(w);
                    v.extend_from_slice(b);
                }
                Layer::Prelu(a) => v.extend_from_slice(a),
                _ => {}
            }
        }
        v
    }

    /// Sets all parameters from [`Net::flatten`]'s layout.
    pub fn unflatten(&mut self, v: &[f32]) {
        let mut i = 0;
        let mut take = |dst: &mut Vec<f32>| {
            let n = dst.len();
            dst.copy_from_slice(&v[i..i + n]);
            i += n;
        };
        for l in &mut self.layers {
            match l {
                Layer::Conv { w, b, .. } => {
                    take(w);
                    take(b);
                }
                Layer::Prelu(a) => take(a),
                _ => {}
            }
        }
    }

    /// Forward on the CPU; with `keep`, the input of every layer is kept (for backward).
    pub fn forward(&self, x: &Tensor, keep: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        let mut cur = x.clone();
        let mut kept = keep;
        for l in &self.layers {
            if let Some(k) = kept.as_deref_mut() {
                k.push(cur.clone());
            }
            cur = match l {
                Layer::Conv { conv, w, b } => conv.cpu(&cur, w, b)?,
                Layer::Prelu(a) => Prelu.cpu(&cur, a)?,
                Layer::Unshuffle => PixelUnshuffle { r: 2 }.cpu(&cur)?,
                Layer::Shuffle => PixelShuffle { r: 2 }.cpu(&cur)?,
                Layer::Sigmoid => Activation(ActivationKind::Sigmoid).cpu(&cur),
            };
        }
        Ok(cur)
    }

    /// Gradients of all parameters ([`Net::flatten`] layout) and of the
    /// input, from the kept layer inputs, the output and its gradient.
    pub fn backward(&self, inputs: &[Tensor], out: &Tensor, dy: &Tensor, need_dx: bool) -> (Vec<f32>, Option<Tensor>) {
        use crate::train::grad::{conv2d_backward, pixel_shuffle_backward, prelu_backward};
        let mut grads: Vec<Vec<f32>> = vec![Vec::new(); self.layers.len()];
        let mut d = dy.clone();
        let mut next_out = out.clone();
        for (i, l) in self.layers.iter().enumerate().rev() {
            let x = &inputs[i];
            let first = i == 0;
            match l {
                Layer::Conv { conv, w, .. } => {
                    let (dx, dw, db) = conv2d_backward(conv, x, w, &d, !first || need_dx);
                    let mut g = dw;
                    g.extend(db);
                    grads[i] = g;
                    match dx {
                        Some(dx) => d = dx,
                        None => break,
                    }
                }
                Layer::Prelu(a) => {
                    let (dx, da) = prelu_backward(x, a, &d);
                    grads[i] = da;
                    d = dx;
                }
                Layer::Unshuffle => d = PixelShuffle { r: 2 }.cpu(&d).expect("unshuffled shape"),
                Layer::Shuffle => d = pixel_shuffle_backward(2, &d),
                Layer::Sigmoid => {
                    d.data.iter_mut().zip(&next_out.data).for_each(|(g, s)| *g *= s * (1.0 - s));
                }
            }
            next_out = x.clone();
        }
        (grads.concat(), need_dx.then_some(d))
    }

    /// Records the forward pass on the GPU from `x` into a new pooled
    /// tensor; intermediates are pushed onto `scratch`. `up` holds the
    /// uploaded parameters of [`Net::upload`].
    pub fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        up: &[(wgpu::Buffer, wgpu::Buffer)],
        x: &GpuTensor,
        scratch: &mut Vec<GpuTensor>,
    ) -> Result<GpuTensor> {
        let mut cur = x.clone();
        for (l, (wb, bb)) in self.layers.iter().zip(up) {
            let out_shape = match l {
                Layer::Conv { conv, w, b } => conv.check(cur.shape, w.len(), b.len())?,
                Layer::Unshuffle => PixelUnshuffle { r: 2 }.out_shape(cur.shape)?,
                Layer::Shuffle => PixelShuffle { r: 2 }.out_shape(cur.shape)?,
                _ => cur.shape,
            };
            let y = gpu.alloc(out_shape)?;
            match l {
                Layer::Conv { conv, .. } => conv.encode(gpu, enc, &cur, wb, bb, &y)?,
                Layer::Prelu(_) => Prelu.encode(gpu, enc, &cur, wb, &y)?,
                Layer::Unshuffle => PixelUnshuffle { r: 2 }.encode(gpu, enc, &cur, &y)?,
                Layer::Shuffle => PixelShuffle { r: 2 }.encode(gpu, enc, &cur, &y)?,
                Layer::Sigmoid => Activation(ActivationKind::Sigmoid).encode(gpu, enc, &cur, &y)?,
            }
            scratch.push(y.clone());
            cur = y;
        }
        Ok(cur)
    }

    /// The parameters on the GPU, one (weights, bias) pair per layer
    /// (slopes in the first; dummies for parameterless layers).
    pub fn upload(&self, gpu: &Gpu) -> Vec<(wgpu::Buffer, wgpu::Buffer)> {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Conv { w, b, .. } => (gpu.constant("tinycompress.w", w), gpu.constant("tinycompress.b", b)),
                Layer::Prelu(a) => (gpu.constant("tinycompress.a", a), gpu.constant("tinycompress.none", &[])),
                _ => (gpu.constant("tinycompress.none", &[]), gpu.constant("tinycompress.none", &[])),
            })
            .collect()
    }
}

/// A TinyCompress codec: `blocks` encoding and decoding blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyCompress {
    /// The encoder (latents: 3 channels at 1/2^blocks of each side).
    pub enc: Net,
    /// The decoder.
    pub dec: Net,
    /// Blocks (1, 2 or 3).
    pub blocks: usize,
}

impl TinyCompress {
    /// An untrained codec of rate 4, 16 or 64 (zero weights: call [`TinyCompress::init`]).
    pub fn new(rate: usize) -> Result<Self> {
        let blocks = match rate {
            4 => 1,
            16 => 2,
            64 => 3,
            _ => return Err(Error::invalid("tinycompress", format!("rate {rate} (valid: 4, 16, 64)"))),
        };
        Ok(TinyCompress {
            enc: Net { layers: (0..blocks).flat_map(|_| encode_block()).collect() },
            dec: Net { layers: (0..blocks).flat_map(|_| decode_block()).collect() },
            blocks,
        })
    }

    /// The rate: pixels per latent value (per channel).
    pub fn rate(&self) -> usize {
        4usize.pow(self.blocks as u32)
    }

    /// Side factor: 2^blocks.
    pub fn factor(&self) -> usize {
        1 << self.blocks
    }

    /// He-style random initialisation from a seeded generator.
    pub fn init(&mut self, rng: &mut impl FnMut() -> f32) {
        for net in [&mut self.enc, &mut self.dec] {
            for l in &mut net.layers {
                if let Layer::Conv { conv, w, .. } = l {
                    let fan_in = (conv.cin / conv.groups * conv.k * conv.k) as f32;
                    let s = (6.0 / fan_in).sqrt() * 0.8;
                    w.iter_mut().for_each(|v| *v = (rng() * 2.0 - 1.0) * s);
                }
            }
        }
    }

    /// A start that already works as a codec: random weights (as [`init`])
    /// with a path through each block set up as 2x2 averaging (encoder) and
    /// nearest upsampling into a sigmoid around its linear range (decoder),
    /// so training refines a working codec instead of discovering one.
    ///
    /// [`init`]: TinyCompress::init
    pub fn init_structured(&mut self, rng: &mut impl FnMut() -> f32) {
        self.init(&mut || rng() * 0.1 + 0.45);
        let centre = |conv: &Conv2d, o: usize, i: usize| {
            let k = conv.k;
            ((o * (conv.cin / conv.groups) + i) * k + k / 2) * k + k / 2
        };
        for chunk in self.enc.layers.chunks_mut(9) {
            // conv 9x9 3->15 (copy), conv 1x1 15->3 (pick), unshuffle, conv 3x3 12->15 (average 2x2), conv 1x1 15->3 (pick).
            if let [Layer::Conv { conv: c1, w: w1, .. }, _, Layer::Conv { conv: c2, w: w2, .. }, _, _, Layer::Conv { conv: c3, w: w3, .. }, _, Layer::Conv { conv: c4, w: w4, .. }, _] =
                chunk
            {
                for c in 0..3 {
                    let i = centre(c1, c, c);
                    w1[i] = 1.0;
                    let i = centre(c2, c, c);
                    w2[i] = 1.0;
                    for s in 0..4 {
                        let i = centre(c3, c, c * 4 + s);
                        w3[i] = 0.25;
                    }
                    let i = centre(c4, c, c);
                    w4[i] = 1.0;
                }
            }
        }
        for chunk in self.dec.layers.chunks_mut(7) {
            // conv 3x3 3->12 (replicate to the 4 sub-pixels), shuffle, conv 5x5 3->9 (copy), conv 1x1 9->3, sigmoid.
            if let [Layer::Conv { conv: c1, w: w1, .. }, _, _, Layer::Conv { conv: c2, w: w2, .. }, _, Layer::Conv { conv: c3, w: w3, b: b3 }, _] =
                chunk
            {
                for (c, bias) in b3.iter_mut().enumerate() {
                    for s in 0..4 {
                        let i = centre(c1, c * 4 + s, c);
                        w1[i] = 1.0;
                    }
                    let i = centre(c2, c, c);
                    w2[i] = 1.0;
                    // sigmoid(4 (x - 0.5)) ~ x on the middle of [0, 1].
                    let i = centre(c3, c, c);
                    w3[i] = 4.0;
                    *bias = -2.0;
                }
            }
        }
    }

    /// Weights as safetensors: `enc.{i}.weight|bias|slope`, `dec.{i}...`, and `rate` in the metadata.
    pub fn to_weights(&self) -> Weights {
        let mut wts = Weights::default();
        for (name, net) in [("enc", &self.enc), ("dec", &self.dec)] {
            for (i, l) in net.layers.iter().enumerate() {
                match l {
                    Layer::Conv { conv, w, b } => {
                        wts.insert(
                            &format!("{name}.{i}.weight"),
                            &[conv.cout, conv.cin / conv.groups, conv.k, conv.k],
                            w.clone(),
                        );
                        wts.insert(&format!("{name}.{i}.bias"), &[conv.cout], b.clone());
                    }
                    Layer::Prelu(a) => wts.insert(&format!("{name}.{i}.slope"), &[a.len()], a.clone()),
                    _ => {}
                }
            }
        }
        wts.metadata.insert("rate".into(), self.rate().to_string());
        wts
    }

    /// Loads weights written by [`TinyCompress::to_weights`]; the rate comes
    /// from the metadata or from which tensors exist.
    pub fn from_weights(wts: &Weights) -> Result<Self> {
        let blocks = (0..3).take_while(|k| wts.tensors.contains_key(&format!("enc.{}.weight", 9 * k))).count();
        if blocks == 0 {
            return Err(Error::invalid("tinycompress", "no TinyCompress tensors (enc.0.weight, ...)"));
        }
        let rate = 4usize.pow(blocks as u32);
        let mut m = TinyCompress::new(rate)?;
        for (name, net) in [("enc", &mut m.enc), ("dec", &mut m.dec)] {
            for (i, l) in net.layers.iter_mut().enumerate() {
                match l {
                    Layer::Conv { conv, w, b } => {
                        w.copy_from_slice(wts.get(
                            &format!("{name}.{i}.weight"),
                            &[conv.cout, conv.cin / conv.groups, conv.k, conv.k],
                        )?);
                        b.copy_from_slice(wts.get(&format!("{name}.{i}.bias"), &[conv.cout])?);
                    }
                    Layer::Prelu(a) => {
                        let n = a.len();
                        a.copy_from_slice(wts.get(&format!("{name}.{i}.slope"), &[n])?)
                    }
                    _ => {}
                }
            }
        }
        Ok(m)
    }
}
