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
//!
//! [`Net::forward`] is the CPU path (and the training forward pass); on the
//! GPU each block is one dispatch of the fused `tinycompress_enc` /
//! `tinycompress_dec` kernel (`codec::record_encode` / `record_decode`).

use crate::error::{Error, Result};
use crate::kernels::{Activation, ActivationKind, Conv2d, PixelShuffle, PixelUnshuffle, Prelu};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// One layer of a TinyCompress network.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution with its weights and bias.
    Conv {
        /// The convolution's shape.
        conv: Conv2d,
        /// Weights (OIHW).
        w: Vec<f32>,
        /// Bias, one per output channel.
        b: Vec<f32>,
    },
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
                // Nothing keeps the pre-activation tensor: in place.
                Layer::Prelu(a) if kept.is_none() => {
                    Prelu.cpu_in_place(&mut cur, a)?;
                    cur
                }
                Layer::Prelu(a) => Prelu.cpu(&cur, a)?,
                Layer::Unshuffle => PixelUnshuffle { r: 2 }.cpu(&cur)?,
                Layer::Shuffle => PixelShuffle { r: 2 }.cpu(&cur)?,
                Layer::Sigmoid => Activation(ActivationKind::Sigmoid).cpu(&cur),
            };
        }
        Ok(cur)
    }
}

/// The shipped weights.
static BUNDLED_4: &[u8] = include_bytes!("../../assets/tinycompress_4.safetensors");
static BUNDLED_16: &[u8] = include_bytes!("../../assets/tinycompress_16.safetensors");
static BUNDLED_64: &[u8] = include_bytes!("../../assets/tinycompress_64.safetensors");

/// A TinyCompress codec: `blocks` encoding and decoding blocks.
///
/// ```
/// use gpuimg::models::tinycompress::TinyCompress;
/// let codec = TinyCompress::bundled(16)?; // -16: two blocks
/// assert_eq!(codec.rate(), 16);
/// // Images: `gpuimg::codec::compress` and `decompress`.
/// # Ok::<(), gpuimg::Error>(())
/// ```
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

    /// Builds the GPU pipelines the codec records (the fused encoding and
    /// decoding blocks, the quantisation), so the first frame does not
    /// compile them ([`crate::gpu::Gpu::prepare`]). Returns how many it built.
    pub fn prepare(&self, gpu: &crate::gpu::Gpu) -> usize {
        use crate::kernels as k;
        gpu.prepare(&[&k::tinycompress_enc::DESC, &k::tinycompress_dec::DESC, &k::tinycompress_quant::DESC])
    }

    /// The rate: pixels per latent value (per channel).
    pub fn rate(&self) -> usize {
        4usize.pow(self.blocks as u32)
    }

    /// The codec id stored in `.tcz` files: CRC-32 of all parameters
    /// (encoder then decoder, [`Net::flatten`] order, f32 little-endian).
    pub fn id(&self) -> u32 {
        let bytes: Vec<u8> =
            self.enc.flatten().iter().chain(&self.dec.flatten()).flat_map(|v| v.to_le_bytes()).collect();
        crate::fsutil::crc32(&bytes)
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

    /// A start that already works as a codec, so training refines one
    /// instead of discovering one. Each encoding block starts as an
    /// antialiased 2x downscale (the bicubic kernel, a = -0.5, stretched to
    /// the 2x footprint: 8 taps in the 9x9 convolution, then the unshuffle's
    /// first phase picked); each decoding block as a 3-tap cubic polyphase
    /// upscale (the 3x3 convolution's 4 output phases) followed by a
    /// per-channel piecewise-linear approximation of the logit (a linear
    /// unit and two ReLU hinges at 0.16 and 0.84 in the 5x5 / 1x1 pair), so
    /// that the final sigmoid returns the value: within 1% RMS on [0, 1]
    /// (fitted by grid search; the naive sigmoid(4 (x - 0.5)) is 5% off,
    /// which alone caps the PSNR at 25.6 dB). The other channels get small
    /// random weights from `rng` (uniform on [0, 1)) to break symmetry.
    pub fn init_linear(&mut self, rng: &mut impl FnMut() -> f32) {
        // Small random everything (1/50 of `init`'s scale).
        self.init(&mut || 0.5 + (rng() - 0.5) / 50.0);
        for net in [&mut self.enc, &mut self.dec] {
            for l in &mut net.layers {
                if let Layer::Conv { b, .. } = l {
                    b.iter_mut().for_each(|v| *v = 0.0);
                }
            }
        }
        let cubic = |t: f32| crate::resample::cubic(t as f64) as f32;
        let normalised = |v: Vec<f32>| {
            let s: f32 = v.iter().sum();
            v.into_iter().map(|x| x / s).collect::<Vec<f32>>()
        };
        // Downscale taps at offsets -4..=4 around the phase-0 pixel; the
        // low-res sample's centre is half a pixel right of it.
        let down = normalised((-4..=4).map(|d| cubic((d as f32 - 0.5) / 2.0)).collect());
        // Upscale taps at low-res offsets -1..=1 for output phase 0 (a
        // quarter low-res pixel left of the centre) and phase 1 (mirrored).
        let up0 = normalised((-1..=1).map(|d| cubic(d as f32 + 0.25)).collect());
        let up = [up0.clone(), up0.iter().rev().copied().collect::<Vec<f32>>()];
        let at = |conv: &Conv2d, o: usize, i: usize, dy: usize, dx: usize| {
            ((o * (conv.cin / conv.groups) + i) * conv.k + dy) * conv.k + dx
        };
        let centre = |conv: &Conv2d, o: usize, i: usize| at(conv, o, i, conv.k / 2, conv.k / 2);
        // The structured channels: outputs 0..3 of each convolution but the
        // decoder's first two (12 = 4 phases x 3 and 9 = 3 units x 3: all).
        // Their random weights go, or they would mix colours.
        let clear = |conv: &Conv2d, w: &mut [f32], outs: usize| {
            w[..outs * conv.cin / conv.groups * conv.k * conv.k].iter_mut().for_each(|v| *v = 0.0)
        };
        for net in [&mut self.enc, &mut self.dec] {
            for l in &mut net.layers {
                if let Layer::Conv { conv, w, .. } = l {
                    let outs = if conv.cout == 12 || conv.cout == 9 { conv.cout } else { 3 };
                    clear(conv, w, outs);
                }
            }
        }
        for chunk in self.enc.layers.chunks_mut(9) {
            if let [Layer::Conv { conv: c1, w: w1, .. }, Layer::Prelu(a1), Layer::Conv { conv: c2, w: w2, .. }, Layer::Prelu(a2), _, Layer::Conv { conv: c3, w: w3, .. }, Layer::Prelu(a3), Layer::Conv { conv: c4, w: w4, .. }, Layer::Prelu(a4)] =
                chunk
            {
                for c in 0..3 {
                    for (dy, wy) in down.iter().enumerate() {
                        for (dx, wx) in down.iter().enumerate() {
                            w1[at(c1, c, c, dy, dx)] = wy * wx;
                        }
                    }
                    w2[centre(c2, c, c)] = 1.0;
                    w3[centre(c3, c, c * 4)] = 1.0;
                    w4[centre(c4, c, c)] = 1.0;
                    a1[c] = 1.0;
                    a3[c] = 1.0;
                }
                a2.iter_mut().chain(a4.iter_mut()).for_each(|a| *a = 1.0);
            }
        }
        const SLOPE: f32 = 4.4;
        const HINGE: f32 = 0.16;
        const HINGE_SLOPE: f32 = 9.5;
        for chunk in self.dec.layers.chunks_mut(7) {
            if let [Layer::Conv { conv: c1, w: w1, .. }, Layer::Prelu(a1), _, Layer::Conv { conv: c2, w: w2, b: b2 }, Layer::Prelu(a2), Layer::Conv { conv: c3, w: w3, b: b3 }, _] =
                chunk
            {
                a1.iter_mut().for_each(|a| *a = 1.0);
                for c in 0..3 {
                    for u in 0..2 {
                        for v in 0..2 {
                            for (dy, wy) in up[u].iter().enumerate() {
                                for (dx, wx) in up[v].iter().enumerate() {
                                    w1[at(c1, c * 4 + u * 2 + v, c, dy, dx)] = wy * wx;
                                }
                            }
                        }
                    }
                    // Hidden units: x - 1/2 (linear), relu(HINGE - x), relu(x - (1 - HINGE)).
                    w2[centre(c2, 3 * c, c)] = 1.0;
                    b2[3 * c] = -0.5;
                    a2[3 * c] = 1.0;
                    w2[centre(c2, 3 * c + 1, c)] = -1.0;
                    b2[3 * c + 1] = HINGE;
                    a2[3 * c + 1] = 0.0;
                    w2[centre(c2, 3 * c + 2, c)] = 1.0;
                    b2[3 * c + 2] = HINGE - 1.0;
                    a2[3 * c + 2] = 0.0;
                    w3[centre(c3, c, 3 * c)] = SLOPE;
                    w3[centre(c3, c, 3 * c + 1)] = -HINGE_SLOPE;
                    w3[centre(c3, c, 3 * c + 2)] = HINGE_SLOPE;
                    b3[c] = 0.0;
                }
            }
        }
    }

    /// A codec of `blocks` blocks made by repeating this one's blocks (the
    /// last encoding block and the first decoding block) until there are
    /// enough: a trained -4 codec is a good start for -16 and -64.
    pub fn deepened(&self, rate: usize) -> Result<Self> {
        let mut m = TinyCompress::new(rate)?;
        if m.blocks < self.blocks {
            return Err(Error::invalid("tinycompress", format!("cannot make rate {rate} from rate {}", self.rate())));
        }
        let extra = m.blocks - self.blocks;
        let enc_last = &self.enc.layers[9 * (self.blocks - 1)..];
        let dec_first = &self.dec.layers[..7];
        m.enc.layers = self.enc.layers.iter().chain((0..extra).flat_map(|_| enc_last.iter())).cloned().collect();
        m.dec.layers = (0..extra).flat_map(|_| dec_first.iter()).chain(self.dec.layers.iter()).cloned().collect();
        Ok(m)
    }

    /// The weights shipped in `assets/` for a rate (4, 16 or 64), trained
    /// by `gpuimg train codec` (recipe in assets/README.md).
    pub fn bundled(rate: usize) -> Result<Self> {
        let (bytes, name) = match rate {
            4 => (BUNDLED_4, "assets/tinycompress_4.safetensors"),
            16 => (BUNDLED_16, "assets/tinycompress_16.safetensors"),
            64 => (BUNDLED_64, "assets/tinycompress_64.safetensors"),
            _ => return Err(Error::invalid("tinycompress", format!("rate {rate} (valid: 4, 16, 64)"))),
        };
        Self::from_weights(&Weights::from_bytes(bytes, std::path::Path::new(name))?)
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
