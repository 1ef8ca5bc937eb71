//! The library face: an `Augmenter` that draws and runs a chain on images in memory.

use crate::error::{Error, Result};
use crate::kernels::augment::OutMode;

use std::sync::Arc;

use crate::gpu::{DispatchCache, Gpu, GpuTensor};
use crate::image_io::Image;
use crate::kernels::augment::RECORD_LEN;
use crate::kernels::UnpackPixels;
use crate::tensor::Shape;
use wgpu::util::DeviceExt;

use super::*;

/// How an augmenter made from a host's textures records a texture into one
/// of its images (implemented by the embedding layer, which knows texture
/// formats; declared here so that `augment` does not depend on `embed`).
pub(crate) trait TextureRefresh: Send + Sync {
    /// Records `texture`'s conversion into image `i`'s planar f32 tensor `y`.
    fn record(&self, enc: &mut wgpu::CommandEncoder, i: usize, texture: &wgpu::Texture, y: &GpuTensor) -> Result<()>;
}

/// Batches of augmented samples for a training loop, made on the GPU the
/// caller owns: `next_batch()` records and submits the following batch into the
/// other of two buffers and returns the batch made on the previous call, so
/// the GPU fills one buffer while the caller's work reads the other.
///
/// Every sample is one of `images` (chosen by the seeded generator), put
/// through the spec with values drawn from (seed, sample number). The chain
/// must end at a fixed size (a crop, resize or random-resized-crop) and may
/// end with `normalize`; the batch is f32 NCHW (batch, C, H, W).
///
/// ```
/// use gpuimg::augment::{Augmenter, Spec};
/// use gpuimg::{image_io::Image, Samples};
/// # let Some(gpu) = gpuimg::gpu::doctest_gpu() else { return Ok(()) };
/// let photo = Image::new(96, 64, 3, Samples::U8((0..96 * 64 * 3).map(|i| (i % 251) as u8).collect()))?;
/// let spec: Spec = "hflip:p=0.5;rotate:deg=10;random-resized-crop:size=32;normalize".parse()?;
/// let mut aug = Augmenter::new(gpu.clone(), &spec, &[photo], 4, 1)?;
/// let batch = aug.next_batch()?; // resident on the GPU: (4, 3, 32, 32)
/// assert_eq!((batch.shape.n, batch.shape.c, batch.shape.h, batch.shape.w), (4, 3, 32, 32));
/// let host = gpu.download(batch)?;
/// assert!(host.data.iter().all(|v| v.is_finite()));
/// # Ok::<(), gpuimg::Error>(())
/// ```
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
    /// Passes laid out per batch item, the buffer of the batch's records
    /// (made on the first batch, grown when a plan has more passes), and
    /// the bind groups of its dispatches.
    passes: usize,
    progs: Option<wgpu::Buffer>,
    inter: Vec<Option<wgpu::Buffer>>,
    cache: Arc<DispatchCache>,
    last_drawn: Vec<Drawn>,
    current: Vec<Drawn>,
    /// Made by [`Augmenter::from_textures`]: how images are refreshed from textures.
    textures: Option<Box<dyn TextureRefresh>>,
}

impl Augmenter {
    /// Uploads `images` (as planar f32) and checks the output size.
    pub fn new(gpu: Arc<Gpu>, spec: &Spec, images: &[Image], batch: usize, seed: u64) -> Result<Self> {
        if images.is_empty() || batch == 0 {
            return Err(Error::invalid("augmenter", "give at least one image and a batch of at least 1"));
        }
        let mut up = Vec::new();
        for img in images {
            let img = if img.channels <= 2 { crate::ops::grey_to_rgb(img)? } else { img.clone() };
            up.push(gpu.upload(&UnpackPixels(img.layout()).cpu(&img.samples)?)?);
        }
        Self::from_tensors(gpu, spec, up, batch, seed)
    }

    /// An augmenter over images already on the GPU: planar f32 (1, C, H, W)
    /// tensors with 3 or 4 channels (RGB, RGBA), values in 0..1, as
    /// [`UnpackPixels`] makes them (an application's own frames, say).
    /// Checks their shapes and the output size like [`Augmenter::new`].
    pub fn from_tensors(gpu: Arc<Gpu>, spec: &Spec, images: Vec<GpuTensor>, batch: usize, seed: u64) -> Result<Self> {
        if images.is_empty() || batch == 0 {
            return Err(Error::invalid("augmenter", "give at least one image and a batch of at least 1"));
        }
        let norm = normalization(spec)?;
        let spec = without_normalize(spec);
        let channels = images[0].shape.c;
        let mut size = None;
        for (i, x) in images.iter().enumerate() {
            let s = x.shape;
            if s.n != 1 || !(3..=4).contains(&s.c) || s.c != channels {
                return Err(Error::invalid(
                    "augmenter",
                    format!(
                        "image {i} is {s}: one RGB or RGBA image per tensor, all with image 0's {channels} channels"
                    ),
                ));
            }
            x.buf("augmenter")?;
            // The output size must not depend on the image or the draw.
            for k in 0..4 {
                let d = spec.draw(seed ^ 0xA5A5, k, s.w, s.h)?;
                let got = Plan::fused(&d, s.w, s.h)?.out_size();
                if *size.get_or_insert(got) != got {
                    return Err(Error::invalid(
                        "augmenter",
                        "the chain's output size varies: end it with a crop, resize or random-resized-crop",
                    ));
                }
            }
        }
        let (w, h) = size.expect("one image at least");
        let shape = Shape::new(batch, channels, h, w);
        let out = [gpu.alloc(shape)?, gpu.alloc(shape)?];
        Ok(Augmenter {
            gpu,
            spec,
            norm,
            images,
            batch,
            seed,
            next_sample: 0,
            out,
            turn: 0,
            primed: false,
            passes: 1,
            progs: None,
            inter: Vec::new(),
            cache: Arc::default(),
            last_drawn: Vec::new(),
            current: Vec::new(),
            textures: None,
        })
    }

    /// Keeps how the images are refreshed from textures.
    pub(crate) fn set_texture_source(&mut self, src: Box<dyn TextureRefresh>) {
        self.textures = Some(src);
    }

    /// The texture source (if any) and the images.
    pub(crate) fn texture_parts(&self) -> (Option<&dyn TextureRefresh>, &[GpuTensor]) {
        (self.textures.as_deref(), &self.images)
    }

    /// The shape of a batch (batch, C, H, W).
    pub fn batch_shape(&self) -> Shape {
        self.out[0].shape
    }

    /// Records one batch into `self.out[slot]` and submits it (no wait).
    pub(super) fn fill(&mut self, slot: usize) -> Result<Vec<Drawn>> {
        let mut enc = self
            .gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.augmenter") });
        let drawn = self.record(slot, &mut enc)?;
        self.gpu.queue().submit([enc.finish()]);
        Ok(drawn)
    }

    /// Records one batch into `self.out[slot]` in `enc`: the samples are
    /// drawn and planned, their records go up in one staging buffer copied
    /// into the program buffer inside `enc` (so batches recorded into one
    /// encoder, or submitted late, each run their own), then each pass is
    /// dispatched at its record's fixed offset, with its intermediates (in
    /// plans of more than one pass) in buffers of its own. The dispatches
    /// of a batch are then the same buffers and uniforms as an earlier
    /// batch's that drew the same images, and the dispatch cache serves
    /// their bind groups (no uniform buffer or bind group made per batch
    /// once every image has been drawn at each batch position and the
    /// intermediates have grown to the largest draw).
    fn record(&mut self, slot: usize, enc: &mut wgpu::CommandEncoder) -> Result<Vec<Drawn>> {
        let gpu = self.gpu.clone();
        let mut drawn = Vec::with_capacity(self.batch);
        let mut planned = Vec::with_capacity(self.batch);
        let mut words: Vec<u32> = Vec::new();
        for b in 0..self.batch {
            let sample = self.next_sample;
            self.next_sample += 1;
            let mut rng = Rng::for_sample(self.seed ^ 0x1D_C0DE, sample);
            let i = (rng.next() % self.images.len() as u64) as usize;
            let (w, h) = (self.images[i].shape.w, self.images[i].shape.h);
            let d = self.spec.draw(self.seed, sample, w, h)?;
            let mut plan = Plan::fused(&d, w, h)?;
            if let (Some((mean, std)), Some(last)) = (self.norm, plan.passes.last_mut()) {
                last.out_mode = OutMode::Normalize { mean, std };
            }
            // Item b's records start at a fixed place: b times the most
            // passes a plan has had (the buffer grows when one has more).
            let at = b * self.passes * RECORD_LEN;
            if plan.passes.len() > self.passes {
                // Laid out again from the batch's first sample.
                self.passes = plan.passes.len();
                self.next_sample = sample - b as u64;
                return self.record(slot, enc);
            }
            let r = plan.records(self.images[i].shape, b);
            words.resize(at, 0);
            words.extend(r);
            planned.push((i, plan));
            drawn.push(d);
        }
        let bytes = (self.batch * self.passes * RECORD_LEN * 4) as u64;
        if self.progs.as_ref().is_none_or(|p| p.size() < bytes) {
            gpu.check_size("augmenter programs", bytes)?;
            self.progs = Some(gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuimg.augmenter.programs"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let progs = self.progs.as_ref().expect("made above");
        let staging = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gpuimg.augmenter.records"),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        gpu.note_upload(staging.size());
        enc.copy_buffer_to_buffer(&staging, 0, progs, 0, staging.size());
        let (passes, inters) = (self.passes, &mut self.inter);
        inters.resize_with(self.batch * passes, || None);
        self.cache.active(|| -> Result<()> {
            for (b, (i, plan)) in planned.iter().enumerate() {
                let at = (progs, b * passes * RECORD_LEN);
                // Pass k's output for item b: its own buffer, grown when a
                // draw needs more.
                let mut inter = |k: usize, shape: Shape| -> Result<GpuTensor> {
                    let slot = &mut inters[b * passes + k];
                    if slot.as_ref().is_none_or(|t: &wgpu::Buffer| t.size() < shape.bytes()) {
                        let t = gpu.alloc(shape)?;
                        *slot = Some(t.buffer);
                    }
                    Ok(GpuTensor { buffer: slot.clone().expect("made above"), shape })
                };
                plan.encode_at(&gpu, enc, &self.images[*i], at, (&self.out[slot], b), &mut inter)?;
            }
            Ok(())
        })?;
        Ok(drawn)
    }

    /// Records the next batch into the caller's encoder (nothing submitted,
    /// nothing waited on) and returns the tensor it will hold once the
    /// caller submits: f32 NCHW, valid until the call after next (two
    /// output tensors take turns). [`Augmenter::drawn`] then describes it.
    /// Not to be mixed with [`Augmenter::next_batch`], which keeps one batch
    /// ahead on its own submissions.
    pub fn encode_next(&mut self, enc: &mut wgpu::CommandEncoder) -> Result<&GpuTensor> {
        if self.primed {
            return Err(Error::invalid("augmenter", "encode_next after next_batch: use one or the other"));
        }
        let slot = self.turn;
        self.current = self.record(slot, enc)?;
        self.turn ^= 1;
        Ok(&self.out[slot])
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
