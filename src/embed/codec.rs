//! [`Codec`]: TinyCompress between a host's textures (or buffers) and `.tcz`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::{check_texture, storage_buffer, TexRows, Texels};
use crate::codec::{self, container, entropy, Tcz};
use crate::error::{Error, Result};
use crate::gpu::{DispatchCache, Gpu, Mapping};
use crate::kernels::texel_rows::TexelMode;
use crate::kernels::tinycompress_quant::TinyCompressQuant;
use crate::kernels::TexelRows;
use crate::models::tinycompress::TinyCompress;

/// What a [`Codec`] is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// Width of the images.
    pub width: u32,
    /// Height of the images.
    pub height: u32,
    /// Format of the textures, or of the texels in buffers (one of
    /// [`super::TEXTURE_FORMATS`]).
    pub format: wgpu::TextureFormat,
    /// Bit planes kept of each latent value when encoding, 1 to 8 (as
    /// `gpuimg compress --bitplanes`; decoding takes the file's).
    pub bitplanes: u32,
}

impl CodecOptions {
    /// Options for `width` x `height` images of `format`, all 8 bit planes kept.
    pub fn new(width: u32, height: u32, format: wgpu::TextureFormat) -> CodecOptions {
        CodecOptions { width, height, format, bitplanes: 8 }
    }
}

/// Whether an encode is recorded and whether a read of it is under way.
#[derive(Debug, Default)]
struct ReadState {
    recorded: bool,
    reading: bool,
}

/// The TinyCompress codec on a host's textures or buffers, recorded into
/// the host's encoder: [`Codec::encode`] records the analysis transform
/// and the quantisation of a texture (the codes land in a readback buffer
/// the codec owns), [`Codec::read_encoded_async`] (or the blocking
/// [`Codec::read_encoded`]) maps them once the host has submitted and
/// arithmetic-codes them on the CPU into a [`Tcz`]; [`Codec::decode`]
/// entropy-decodes a `.tcz` on the CPU and records the upload of its codes
/// and the synthesis transform into a texture. The files are the ones
/// `gpuimg compress` writes and `gpuimg decompress` reads.
///
/// The codec is RGB: alpha is not read on the way in and is written
/// opaque on the way out. Textures go in and come out as their stored
/// bytes (an sRGB texture's encoded values, as a PNG holds them); BGRA is
/// swizzled, `Rgba16Float` is clamped to [0, 1] and encoded from 16-bit
/// samples, and decoded to 16-bit samples. Every buffer is made in
/// [`Codec::new`]; per call, `decode` makes one staging buffer for the
/// codes and one bind group for the first block (whose parameters carry
/// the file's ranges). The whole image is one binding, like
/// [`super::Enhancer`]'s.
///
/// ```
/// use gpuimg::embed::{Codec, CodecOptions};
/// use gpuimg::{models::tinycompress::TinyCompress, wgpu};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let Some(gpu) = gpuimg::gpu::doctest_gpu() else { return Ok(()) };
/// # let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
/// # let texture = |w: u32, h: u32| device.create_texture(&wgpu::TextureDescriptor {
/// #     label: None, size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
/// #     mip_level_count: 1, sample_count: 1, dimension: wgpu::TextureDimension::D2,
/// #     format: wgpu::TextureFormat::Rgba8Unorm,
/// #     usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST, view_formats: &[] });
/// # let (frame, back) = (texture(96, 64), texture(96, 64));
/// // `gpu` wraps the host's device; `frame` and `back` are its 96x64 Rgba8Unorm textures.
/// let codec = Codec::new(gpu.clone(), &TinyCompress::bundled(4)?, CodecOptions::new(96, 64, frame.format()))?;
/// let mut encoder = device.create_command_encoder(&Default::default());
/// codec.encode(&mut encoder, &frame)?;
/// queue.submit([encoder.finish()]);
/// let tcz = codec.read_encoded()?; // maps the codes (waiting on the device) and codes them
/// let file: Vec<u8> = tcz.to_bytes(); // what `gpuimg compress` would write
///
/// let mut encoder = device.create_command_encoder(&Default::default());
/// codec.decode(&mut encoder, &tcz, &back)?;
/// queue.submit([encoder.finish()]);
/// # assert!(file.len() < 96 * 64 * 3);
/// # device.poll(wgpu::PollType::wait_indefinitely())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Codec {
    gpu: Arc<Gpu>,
    model: TinyCompress,
    opts: CodecOptions,
    texels: Texels,
    /// Latent size (lw, lh).
    latent: (usize, usize),
    enc_weights: Vec<wgpu::Buffer>,
    dec_weights: Vec<wgpu::Buffer>,
    /// Texture rows as copied (256-byte rows) and tightly packed, both ways.
    in_padded: wgpu::Buffer,
    in_tight: wgpu::Buffer,
    out_padded: wgpu::Buffer,
    /// The blocks' outputs, in the order they are recorded: encoder blocks
    /// then the codes; decoder blocks, the last being the tight texels.
    enc_bufs: Vec<wgpu::Buffer>,
    dec_bufs: Vec<wgpu::Buffer>,
    /// The codes (ranges first) as mapped for reading, and their bytes.
    readback: wgpu::Buffer,
    code_bytes: u64,
    /// The decoder's input codes (planar u8, padded to a word).
    codes_in: wgpu::Buffer,
    state: Mutex<ReadState>,
    cache: Arc<DispatchCache>,
}

/// New buffers for the blocks, each also kept in `made` (in the order asked).
fn making<'a>(
    gpu: &'a Gpu,
    made: &'a mut Vec<wgpu::Buffer>,
) -> impl FnMut(&'static str, u64) -> Result<wgpu::Buffer> + 'a {
    move |label, bytes| {
        let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let b = storage_buffer(gpu, label, bytes, usage)?;
        made.push(b.clone());
        Ok(b)
    }
}

/// A buffer list handed out in order (the codec's own, made in `new`).
fn replay<'a>(bufs: &'a [wgpu::Buffer]) -> impl FnMut(&'static str, u64) -> Result<wgpu::Buffer> + 'a {
    let mut next = bufs.iter();
    move |label, bytes| match next.next() {
        Some(b) if b.size() >= bytes => Ok(b.clone()),
        _ => Err(Error::invalid("Codec", format!("{label}: no buffer of {bytes} bytes made for it"))),
    }
}

impl Codec {
    /// Builds the codec: checks the options against the device, compiles
    /// the pipelines, uploads both transforms' weights and allocates every
    /// buffer either direction uses.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a format outside
    /// [`super::TEXTURE_FORMATS`], an empty size, one over the `.tcz`
    /// limit of 32768 a side, or bit planes outside 1-8;
    /// [`Error::TooLarge`] when a buffer exceeds the device's limits.
    pub fn new(gpu: Arc<Gpu>, model: &TinyCompress, opts: CodecOptions) -> Result<Codec> {
        let bad = |why: String| Err(Error::invalid("Codec", why));
        // The transforms mix the channels: BGRA is swizzled to RGBA and back.
        let texels = Texels::of("Codec", opts.format, true)?;
        if opts.width == 0 || opts.height == 0 || opts.width > container::MAX_SIDE || opts.height > container::MAX_SIDE
        {
            return bad(format!("size {}x{}: 1 to {} a side", opts.width, opts.height, container::MAX_SIDE));
        }
        if !(1..=8).contains(&opts.bitplanes) {
            return bad(format!("{} bit planes (valid: 1-8)", opts.bitplanes));
        }
        let (w, h) = (opts.width as usize, opts.height as usize);
        let (pw, ph) = codec::padded_size(w, h, model);
        let latent = (pw / model.factor(), ph / model.factor());
        let pad = texels.padded_row(opts.width) as u64;
        let tight = (w * h) as u64 * texels.bytes as u64;
        let in_padded = storage_buffer(&gpu, "gpuimg.codec.in_padded", pad * h as u64, wgpu::BufferUsages::COPY_DST)?;
        let in_tight = storage_buffer(&gpu, "gpuimg.codec.in_tight", tight, wgpu::BufferUsages::empty())?;
        let out_padded = storage_buffer(&gpu, "gpuimg.codec.out_padded", pad * h as u64, wgpu::BufferUsages::COPY_SRC)?;
        let codes_in = storage_buffer(
            &gpu,
            "gpuimg.codec.codes_in",
            (3 * latent.0 * latent.1).next_multiple_of(4) as u64,
            wgpu::BufferUsages::COPY_DST,
        )?;
        let code_bytes = TinyCompressQuant { plane: latent.0 * latent.1, bitplanes: opts.bitplanes }.out_len() as u64;
        let readback = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpuimg.codec.readback"),
            size: code_bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        model.prepare(&gpu);
        gpu.prepare(&[&crate::kernels::texel_rows::DESC]);
        let enc_weights = codec::upload_blocks(&gpu, &model.enc, crate::kernels::tinycompress_enc::FLAT_LEN);
        let dec_weights = codec::upload_blocks(&gpu, &model.dec, crate::kernels::tinycompress_dec::FLAT_LEN);
        let mut c = Codec {
            gpu,
            model: model.clone(),
            opts,
            texels,
            latent,
            enc_weights,
            dec_weights,
            in_padded,
            in_tight,
            out_padded,
            enc_bufs: Vec::new(),
            dec_bufs: Vec::new(),
            readback,
            code_bytes,
            codes_in,
            state: Mutex::default(),
            cache: Arc::default(),
        };
        // Both directions recorded once into encoders that are dropped:
        // the blocks' buffers are made here (in the order the frames will
        // ask for them) and every bind group is cached.
        let gpu = c.gpu.clone();
        let (mut enc_made, mut dec_made) = (Vec::new(), Vec::new());
        let mut warm = gpu.device().create_command_encoder(&Default::default());
        let (t, all) = (c.texels, TexRows::all(opts.width, opts.height));
        c.cache.active(|| -> Result<()> {
            t.read_rows(&gpu, &mut warm, None, all, &c.in_padded, &c.in_tight)?;
            c.record_encode(&mut warm, &c.in_tight, &mut making(&gpu, &mut enc_made))?;
            let q = ([(0.0, 1.0); 3], opts.bitplanes);
            let out = c.record_decode(&mut warm, q, &mut making(&gpu, &mut dec_made))?;
            t.write_rows(&gpu, &mut warm, &out, &c.out_padded, None, all)
        })?;
        (c.enc_bufs, c.dec_bufs) = (enc_made, dec_made);
        Ok(c)
    }

    /// The options it was built for.
    pub fn options(&self) -> CodecOptions {
        self.opts
    }

    /// Records the encoding of `src` (the size and format it was built for,
    /// `COPY_SRC` usage; mip 0, layer 0) in `encoder`: the codes land in the
    /// codec's readback buffer, for [`Codec::read_encoded_async`] or
    /// [`Codec::read_encoded`] once the caller has submitted. Nothing is
    /// submitted. A later `encode` records over the same buffer: read each
    /// one before submitting the next.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the texture when its size, format,
    /// dimension, sample count or usage does not fit, or while a read of
    /// the previous encode is under way; nothing is recorded then.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Texture) -> Result<()> {
        let (w, h, format) = (self.opts.width, self.opts.height, self.opts.format);
        check_texture("Codec", "source", src, w, h, format, wgpu::TextureUsages::COPY_SRC)?;
        self.begin_encode()?;
        self.cache.active(|| {
            let all = TexRows::all(w, h);
            self.texels.read_rows(&self.gpu, encoder, Some(src), all, &self.in_padded, &self.in_tight)?;
            self.record_encode(encoder, &self.in_tight, &mut replay(&self.enc_bufs))
        })
    }

    /// [`Codec::encode`] from a buffer of the image's texels tightly packed
    /// (width x height texels of the format, rows without padding; `STORAGE`
    /// usage), such as a compute pass of the host's writes.
    ///
    /// # Errors
    /// As [`Codec::encode`], for a buffer smaller than the texels or without
    /// `STORAGE` usage.
    pub fn encode_buffer(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer) -> Result<()> {
        self.check_buffer("source", src)?;
        self.begin_encode()?;
        self.cache.active(|| {
            self.tight(self.texels.read).encode(&self.gpu, encoder, src, &self.in_tight)?;
            self.record_encode(encoder, &self.in_tight, &mut replay(&self.enc_bufs))
        })
    }

    /// Reads the codes of the last submitted [`Codec::encode`] without
    /// blocking: maps the readback buffer and returns a future of the
    /// `.tcz`, which completes once the device has been polled after the
    /// work ran (the host's `device.poll`, or [`Gpu::poll`]); the
    /// arithmetic coding runs on the CPU as the future completes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when nothing was encoded or a read is
    /// already under way; the future returns [`Error::Gpu`] when the
    /// mapping fails (a lost device, or the encoder never submitted and
    /// dropped).
    pub fn read_encoded_async(&self) -> Result<EncodedRead<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.recorded {
            return Err(Error::invalid("Codec", "nothing encoded yet: record encode and submit it first"));
        }
        if s.reading {
            return Err(Error::invalid("Codec", "a read of the encoded codes is already under way"));
        }
        s.reading = true;
        let mapping = Mapping::read(&self.readback, self.readback.size());
        Ok(EncodedRead { codec: self, mapping, done: false })
    }

    /// [`Codec::read_encoded_async`], waiting: polls the device until the
    /// mapping completes (which on a shared device also waits for the
    /// host's work submitted before).
    ///
    /// # Errors
    /// As [`Codec::read_encoded_async`], and [`Error::Gpu`] when the wait fails.
    pub fn read_encoded(&self) -> Result<Tcz> {
        let read = self.read_encoded_async()?;
        self.gpu
            .device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu { op: "gpuimg.codec.read".into(), message: e.to_string() })?;
        pollster::block_on(read)
    }

    /// Records the decoding of `t` into `dst` (the size and format the codec
    /// was built for, `COPY_DST`; mip 0, layer 0) in `encoder`, alpha opaque:
    /// the payload is arithmetic-decoded here on the CPU, and the codes go
    /// up through a staging buffer copied inside `encoder` (so several
    /// decodes recorded into one encoder each see their own). Nothing is
    /// submitted.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what does not fit: the texture, or
    /// the file's size, rate or codec id (other weights); a corrupt payload's
    /// error; nothing is recorded then.
    pub fn decode(&self, encoder: &mut wgpu::CommandEncoder, t: &Tcz, dst: &wgpu::Texture) -> Result<()> {
        let (w, h, format) = (self.opts.width, self.opts.height, self.opts.format);
        check_texture("Codec", "destination", dst, w, h, format, wgpu::TextureUsages::COPY_DST)?;
        let q = self.decoded_codes(encoder, t)?;
        self.cache.active(|| {
            let out = self.record_decode(encoder, q, &mut replay(&self.dec_bufs))?;
            self.texels.write_rows(&self.gpu, encoder, &out, &self.out_padded, Some(dst), TexRows::all(w, h))
        })
    }

    /// [`Codec::decode`] into a buffer of tightly packed texels of the
    /// format (width x height, rows without padding; `STORAGE` usage).
    ///
    /// # Errors
    /// As [`Codec::decode`], for a buffer smaller than the texels or
    /// without `STORAGE` usage.
    pub fn decode_buffer(&self, encoder: &mut wgpu::CommandEncoder, t: &Tcz, dst: &wgpu::Buffer) -> Result<()> {
        self.check_buffer("destination", dst)?;
        let q = self.decoded_codes(encoder, t)?;
        self.cache.active(|| {
            let out = self.record_decode(encoder, q, &mut replay(&self.dec_bufs))?;
            self.tight(self.texels.write).encode(&self.gpu, encoder, &out, dst)
        })
    }

    /// `texel_rows` converting the image's tight texels with `mode`
    /// (between the host's buffer and the codec's own).
    fn tight(&self, mode: TexelMode) -> TexelRows {
        let ww = self.opts.width as usize * self.texels.words();
        self.texels.rows(self.opts.width, self.opts.height, ww, ww, 0, mode)
    }

    /// An error naming `what` unless `b` holds the image's tight texels and
    /// can be bound as storage.
    fn check_buffer(&self, what: &str, b: &wgpu::Buffer) -> Result<()> {
        let need = self.opts.width as u64 * self.opts.height as u64 * self.texels.bytes as u64;
        if b.size() < need {
            return Err(Error::invalid(
                "Codec",
                format!("the {what} buffer is {} bytes, the image's texels {need}", b.size()),
            ));
        }
        if !b.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(
                "Codec",
                format!("the {what} buffer lacks STORAGE usage (it has {:?})", b.usage()),
            ));
        }
        Ok(())
    }

    /// Refuses an encode while the readback buffer is being read; marks one recorded.
    fn begin_encode(&self) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.reading {
            return Err(Error::invalid(
                "Codec",
                "encode while the previous codes are being read: await the read first",
            ));
        }
        s.recorded = true;
        Ok(())
    }

    /// Records the encoder blocks and the quantisation on the tight texels
    /// in `src`, then the codes' copy into the readback buffer.
    fn record_encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        alloc: codec::Alloc<'_>,
    ) -> Result<()> {
        let l = self.texels.layout(self.opts.width as usize, self.opts.height as usize);
        let (codes, bytes, _, _) = codec::encode_blocks(
            &self.gpu,
            encoder,
            &self.model,
            &self.enc_weights,
            l,
            self.opts.bitplanes,
            src,
            alloc,
        )?;
        encoder.copy_buffer_to_buffer(&codes, 0, &self.readback, 0, bytes.next_multiple_of(4));
        Ok(())
    }

    /// Records the decoder blocks from `codes_in` (the codes of `q`, ranges
    /// and bit planes); returns the buffer of the image's tight texels.
    fn record_decode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: ([(f32, f32); 3], u32),
        alloc: codec::Alloc<'_>,
    ) -> Result<wgpu::Buffer> {
        let (w, h) = (self.opts.width as usize, self.opts.height as usize);
        let image = (w, h, Some(self.texels.bits));
        let (out, _) = codec::decode_blocks(
            &self.gpu,
            encoder,
            &self.model,
            &self.dec_weights,
            q,
            self.latent,
            image,
            &self.codes_in,
            alloc,
        )?;
        Ok(out)
    }

    /// Checks `t` against the codec, decodes its payload and records the
    /// codes' upload into `codes_in`; returns the ranges and bit planes.
    fn decoded_codes(&self, encoder: &mut wgpu::CommandEncoder, t: &Tcz) -> Result<([(f32, f32); 3], u32)> {
        if (t.width, t.height) != (self.opts.width, self.opts.height) {
            return Err(Error::invalid(
                "Codec",
                format!(
                    "the file is {}x{}, the codec built for {}x{}",
                    t.width, t.height, self.opts.width, self.opts.height
                ),
            ));
        }
        if t.rate as usize != self.model.rate() || t.codec != self.model.id() {
            return Err(Error::invalid(
                "Codec",
                format!(
                    "the file was encoded by TinyCompress-{} weights {:08x}, these are TinyCompress-{} {:08x}",
                    t.rate,
                    t.codec,
                    self.model.rate(),
                    self.model.id()
                ),
            ));
        }
        let (lw, lh) = t.latent_size();
        if (lw, lh) != self.latent {
            return Err(Error::invalid(
                "Codec",
                format!("the file's latents are {lw}x{lh}, expected {:?}", self.latent),
            ));
        }
        let mut codes = entropy::decode_payload(t.version, &t.payload, 3, lw, lh, t.bitplanes as u32)?;
        codes.resize(codes.len().next_multiple_of(4), 0);
        use wgpu::util::DeviceExt;
        let staging = self.gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gpuimg.codec.codes_up"),
            contents: &codes,
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        encoder.copy_buffer_to_buffer(&staging, 0, &self.codes_in, 0, codes.len() as u64);
        self.gpu.note_upload(codes.len() as u64);
        Ok((t.ranges, t.bitplanes as u32))
    }
}

/// The codes of a [`Codec::encode`] on their way back
/// ([`Codec::read_encoded_async`]): resolves to the `.tcz`.
#[must_use = "a read does nothing unless awaited (and the device polled)"]
pub struct EncodedRead<'a> {
    codec: &'a Codec,
    mapping: Mapping,
    done: bool,
}

impl Future for EncodedRead<'_> {
    type Output = Result<Tcz>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Tcz>> {
        let this = self.get_mut();
        let Poll::Ready(mapped) = Pin::new(&mut this.mapping).poll(cx) else {
            return Poll::Pending;
        };
        let c = this.codec;
        let err = |m: String| Error::Gpu { op: "gpuimg.codec.read".into(), message: m };
        let bytes = mapped.map_err(|e| err(e.to_string())).and_then(|()| {
            let view = c.readback.get_mapped_range(..c.readback.size()).map_err(|e| err(e.to_string()))?;
            Ok(view[..c.code_bytes as usize].to_vec())
        });
        this.finish();
        let bytes = bytes?;
        c.gpu.note_readback(c.code_bytes);
        let (codes, ranges) = codec::split_codes(&bytes)?;
        let o = c.opts;
        Poll::Ready(Ok(codec::coded(
            (c.model.rate(), c.model.id()),
            o.bitplanes,
            (o.width, o.height),
            &ranges,
            &codes,
            c.latent,
        )))
    }
}

impl EncodedRead<'_> {
    /// Unmaps the readback buffer (cancelling a mapping still pending) and
    /// lets the codec encode again.
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.codec.readback.unmap();
            self.codec.state.lock().unwrap_or_else(|e| e.into_inner()).reading = false;
        }
    }
}

impl Drop for EncodedRead<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
