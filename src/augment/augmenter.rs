//! The library face: an `Augmenter` that draws and runs a chain on images in memory.

use crate::error::{Error, Result};
use crate::kernels::augment::OutMode;

use std::sync::Arc;

use crate::gpu::{Gpu, GpuTensor};
use crate::image_io::Image;
use crate::kernels::UnpackPixels;
use crate::tensor::Shape;

use super::*;

/// Batches of augmented samples for a training loop, made on the GPU the
/// caller owns: `next_batch()` records and submits the following batch into the
/// other of two buffers and returns the batch made on the previous call, so
/// the GPU fills one buffer while the caller's work reads the other.
///
/// Every sample is one of `images` (chosen by the seeded generator), put
/// through the spec with values drawn from (seed, sample number). The chain
/// must end at a fixed size (a crop, resize or random-resized-crop) and may
/// end with `normalize`; the batch is f32 NCHW (batch, C, H, W).
pub struct Augmenter {
    gpu: Arc<Gpu>,
    spec: Spec,
    norm: Option<([f32; 3], [f32; 3])>,
    images: Vec<GpuTensor>,
    batch: usize,
    seed: u64,
    next_sample: u64,
    out: [GpuTensor; 2],
    turn: usize,
    primed: bool,
    scratch: Vec<GpuTensor>,
    last_drawn: Vec<Drawn>,
    current: Vec<Drawn>,
}

impl Augmenter {
    /// Uploads `images` (as planar f32) and checks the output size.
    pub fn new(gpu: Arc<Gpu>, spec: &Spec, images: &[Image], batch: usize, seed: u64) -> Result<Self> {
        if images.is_empty() || batch == 0 {
            return Err(Error::invalid("augmenter", "give at least one image and a batch of at least 1"));
        }
        let norm = normalization(spec)?;
        let spec = without_normalize(spec);
        let channels = images[0].channels;
        let mut size = None;
        let mut up = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let img = if img.channels <= 2 { crate::ops::grey_to_rgb(img)? } else { img.clone() };
            if img.channels != channels.max(3) {
                return Err(Error::invalid(
                    "augmenter",
                    format!("image {i} has {} channels, image 0 {channels}", img.channels),
                ));
            }
            // The output size must not depend on the image or the draw.
            for s in 0..4 {
                let d = spec.draw(seed ^ 0xA5A5, s, img.width as usize, img.height as usize)?;
                let got = Plan::fused(&d, img.width as usize, img.height as usize)?.out_size();
                if *size.get_or_insert(got) != got {
                    return Err(Error::invalid(
                        "augmenter",
                        "the chain's output size varies: end it with a crop, resize or random-resized-crop",
                    ));
                }
            }
            up.push(gpu.upload(&UnpackPixels(img.layout()).cpu(&img.samples)?)?);
        }
        let (w, h) = size.expect("one image at least");
        let c = channels.max(3);
        let shape = Shape::new(batch, c, h, w);
        let out = [gpu.alloc(shape)?, gpu.alloc(shape)?];
        Ok(Augmenter {
            gpu,
            spec,
            norm,
            images: up,
            batch,
            seed,
            next_sample: 0,
            out,
            turn: 0,
            primed: false,
            scratch: Vec::new(),
            last_drawn: Vec::new(),
            current: Vec::new(),
        })
    }

    /// The shape of a batch (batch, C, H, W).
    pub fn batch_shape(&self) -> Shape {
        self.out[0].shape
    }

    /// Records one batch into `self.out[slot]` and submits it (no wait).
    pub(super) fn fill(&mut self, slot: usize) -> Result<Vec<Drawn>> {
        let gpu = self.gpu.clone();
        let mut enc =
            gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.augmenter") });
        for t in self.scratch.drain(..) {
            gpu.recycle(t);
        }
        let mut drawn = Vec::with_capacity(self.batch);
        for b in 0..self.batch {
            let sample = self.next_sample;
            self.next_sample += 1;
            let mut rng = Rng::for_sample(self.seed ^ 0x1D_C0DE, sample);
            let x = &self.images[(rng.next() % self.images.len() as u64) as usize];
            let (w, h) = (x.shape.w, x.shape.h);
            let d = self.spec.draw(self.seed, sample, w, h)?;
            let mut plan = Plan::fused(&d, w, h)?;
            if let (Some((mean, std)), Some(last)) = (self.norm, plan.passes.last_mut()) {
                last.out_mode = OutMode::Normalize { mean, std };
            }
            plan.encode(&gpu, &mut enc, x, &self.out[slot], b, &mut self.scratch)?;
            drawn.push(d);
        }
        gpu.queue().submit([enc.finish()]);
        Ok(drawn)
    }

    /// The next batch, f32 NCHW on the GPU. Its contents stay valid until the
    /// call after next; work the caller submits after this call sees them.
    pub fn next_batch(&mut self) -> Result<&GpuTensor> {
        if !self.primed {
            self.last_drawn = self.fill(self.turn)?;
            self.primed = true;
        }
        let ready = self.turn;
        let ready_drawn = std::mem::take(&mut self.last_drawn);
        self.turn ^= 1;
        self.last_drawn = self.fill(self.turn)?;
        self.current = ready_drawn;
        Ok(&self.out[ready])
    }

    /// The drawn chains of the batch `next_batch` returned last, in batch order.
    pub fn drawn(&self) -> &[Drawn] {
        &self.current
    }
}
