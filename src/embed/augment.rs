//! An [`Augmenter`] whose images are a host's textures.

use std::sync::Arc;

use super::{check_texture, storage_buffer, TexRows, Texels};
use crate::augment::{Augmenter, Spec, TextureRefresh};
use crate::error::{Error, Result};
use crate::gpu::{DispatchCache, Gpu, GpuTensor};
use crate::kernels::UnpackPixels;

/// How an augmenter's images are refreshed from textures: each image's
/// size and format, and the buffers one conversion passes through (shared:
/// conversions recorded into one encoder run one after another).
#[derive(Debug)]
struct TextureSource {
    gpu: Arc<Gpu>,
    /// (width, height, format, texel handling) of each image.
    images: Vec<(u32, u32, wgpu::TextureFormat, Texels)>,
    padded: wgpu::Buffer,
    tight: wgpu::Buffer,
    cache: Arc<DispatchCache>,
}

impl TextureRefresh for TextureSource {
    fn record(&self, enc: &mut wgpu::CommandEncoder, i: usize, texture: &wgpu::Texture, y: &GpuTensor) -> Result<()> {
        let Some(&(w, h, format, t)) = self.images.get(i) else {
            return Err(Error::invalid("Augmenter", format!("no image {i} (it has {})", self.images.len())));
        };
        check_texture("Augmenter", &format!("image {i}'s"), texture, w, h, format, wgpu::TextureUsages::COPY_SRC)?;
        self.cache.active(|| {
            t.read_rows(&self.gpu, enc, Some(texture), TexRows::all(w, h), &self.padded, &self.tight)?;
            UnpackPixels(t.layout(w as usize, h as usize)).encode(&self.gpu, enc, &self.tight, y)
        })
    }
}

impl Augmenter {
    /// An augmenter over a host's textures (formats of
    /// [`super::TEXTURE_FORMATS`], `COPY_SRC` usage; mip 0, layer 0): each
    /// becomes an RGBA image, converted on the GPU by work recorded into
    /// `encoder` (BGRA swizzled, half floats clamped to [0, 1]; nothing
    /// submitted), so record [`Augmenter::encode_next`] after it or submit
    /// it before [`Augmenter::next_batch`]. The textures are read then, not
    /// kept: [`Augmenter::set_texture`] records a new frame into an image.
    ///
    /// ```
    /// use gpuimg::augment::{Augmenter, Spec};
    /// use gpuimg::wgpu;
    /// # let Some(gpu) = gpuimg::gpu::doctest_gpu() else { return Ok(()) };
    /// # let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
    /// # let texture = |w: u32, h: u32| device.create_texture(&wgpu::TextureDescriptor {
    /// #     label: None, size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
    /// #     mip_level_count: 1, sample_count: 1, dimension: wgpu::TextureDimension::D2,
    /// #     format: wgpu::TextureFormat::Bgra8Unorm,
    /// #     usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST, view_formats: &[] });
    /// # let (frame, other) = (texture(64, 48), texture(64, 48));
    /// // `frame` and `other`: the host's 64x48 Bgra8Unorm textures.
    /// let spec: Spec = "hflip:p=0.5;random-resized-crop:size=32;normalize".parse()?;
    /// let mut encoder = device.create_command_encoder(&Default::default());
    /// let mut aug = Augmenter::from_textures(gpu.clone(), &spec, &mut encoder, &[&frame], 8, 1)?;
    /// let batch = aug.encode_next(&mut encoder)?; // (8, 4, 32, 32) once submitted
    /// assert_eq!((batch.shape.n, batch.shape.c), (8, 4));
    /// // A later frame into image 0, then the next batch, in one encoder.
    /// aug.set_texture(&mut encoder, 0, &other)?;
    /// aug.encode_next(&mut encoder)?;
    /// queue.submit([encoder.finish()]);
    /// # Ok::<(), gpuimg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no textures, textures of other
    /// formats, usage or dimension, or of formats that differ in how many
    /// channels they give; what [`Augmenter::from_tensors`] refuses;
    /// [`Error::TooLarge`] when a texture's pixels exceed the device's limits.
    pub fn from_textures(
        gpu: Arc<Gpu>,
        spec: &Spec,
        encoder: &mut wgpu::CommandEncoder,
        textures: &[&wgpu::Texture],
        batch: usize,
        seed: u64,
    ) -> Result<Augmenter> {
        if textures.is_empty() {
            return Err(Error::invalid("Augmenter", "give at least one texture"));
        }
        let mut images = Vec::with_capacity(textures.len());
        let (mut padded, mut tight) = (0u64, 0u64);
        for t in textures {
            // The chain mixes channels (hue, saturation): BGRA is swizzled to RGBA.
            let texels = Texels::of("Augmenter", t.format(), true)?;
            padded = padded.max(texels.padded_row(t.width()) as u64 * t.height() as u64);
            tight = tight.max(t.width() as u64 * t.height() as u64 * texels.bytes as u64);
            images.push((t.width(), t.height(), t.format(), texels));
        }
        let src = TextureSource {
            padded: storage_buffer(&gpu, "gpuimg.augment.padded", padded, wgpu::BufferUsages::COPY_DST)?,
            tight: storage_buffer(&gpu, "gpuimg.augment.tight", tight, wgpu::BufferUsages::empty())?,
            gpu: gpu.clone(),
            images,
            cache: Arc::default(),
        };
        let mut tensors = Vec::with_capacity(textures.len());
        for (i, t) in textures.iter().enumerate() {
            let y = gpu.alloc(crate::tensor::Shape::new(1, 4, t.height() as usize, t.width() as usize))?;
            src.record(encoder, i, t, &y)?;
            tensors.push(y);
        }
        let mut aug = Augmenter::from_tensors(gpu, spec, tensors, batch, seed)?;
        aug.set_texture_source(Box::new(src));
        Ok(aug)
    }

    /// Records the conversion of `texture` (the size and format of the
    /// texture image `i` came from) into image `i`, inside `encoder`: the
    /// batches recorded after it draw from the new frame. Nothing submitted.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an augmenter not made by
    /// [`Augmenter::from_textures`], no image `i`, or a texture that does
    /// not fit; nothing is recorded then.
    pub fn set_texture(&mut self, encoder: &mut wgpu::CommandEncoder, i: usize, texture: &wgpu::Texture) -> Result<()> {
        let (src, images) = self.texture_parts();
        let Some(src) = src else {
            return Err(Error::invalid("Augmenter", "set_texture on an augmenter not made from textures"));
        };
        let Some(y) = images.get(i) else {
            return Err(Error::invalid("Augmenter", format!("no image {i} (it has {})", images.len())));
        };
        src.record(encoder, i, texture, y)
    }
}
