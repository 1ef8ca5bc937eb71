//! Images read and written a band of rows at a time, so that an image far
//! larger than memory can go through an op that works on bands
//! ([`crate::stream::Banded`]).
//!
//! - [`RowReader`]: a non-interlaced PNG is decoded row by row (the `png`
//!   crate's reader with the transformations `image` uses, so the rows are
//!   the samples [`crate::image_io::load_full`] gives), a stripped TIFF
//!   strip by strip (the `tiff` crate, which `image` decodes it with); any
//!   other input (JPEG, WebP, BMP, tiled or planar TIFF, interlaced PNG,
//!   PNG with EXIF) is decoded whole by the caller's loader and handed out
//!   in bands from memory.
//! - [`write_rows`]: PNG (the `png` crate's stream writer, with the settings
//!   `image`'s encoder uses) and TIFF (strips, as `image`'s encoder lays
//!   them out; BigTIFF beyond 4 GB) are encoded as the bands come, into a
//!   file the caller places atomically (`fsutil::write_atomic_stream`).
//!   JPEG, WebP and BMP cannot be written this way ([`streams`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use image::ImageFormat;

use crate::error::{Error, Result};
use crate::image_io::{DecodeLimits, Image, Meta};
use crate::tensor::Samples;

/// The largest TIFF strip read row by row (larger ones, a strip of the
/// whole image say, are decoded whole): 64 MiB.
pub const MAX_STRIP_BYTES: usize = 64 << 20;

/// True when `format` can be written band by band ([`write_rows`]).
pub fn streams(format: ImageFormat) -> bool {
    matches!(format, ImageFormat::Png | ImageFormat::Tiff)
}

/// The size an image file declares, read from its header only (as stored:
/// before any EXIF orientation).
pub fn dimensions(path: &Path) -> Result<(u32, u32)> {
    let err = |reason: String| Error::ImageRead { path: path.to_path_buf(), reason };
    image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .into_dimensions()
        .map_err(|e| err(e.to_string()))
}

type PngReader = png::Reader<BufReader<File>>;
type TiffReader = tiff::decoder::Decoder<BufReader<File>>;

/// A stripped TIFF read strip by strip: the decoder, the next strip, and
/// the rows of the last strip read not yet handed out.
struct TiffStrips {
    dec: Box<TiffReader>,
    next: u32,
    rows: Samples,
}

enum Source {
    /// Rows decoded as they are asked for.
    Png(Box<PngReader>),
    /// Strips decoded as their rows are asked for.
    Tiff(TiffStrips),
    /// A whole decoded image and the next row to hand out.
    Whole(Image, usize),
}

/// An image read from the top, any number of rows at a time.
pub struct RowReader {
    source: Source,
    path: PathBuf,
    limits: DecodeLimits,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels of the decoded samples (1 to 4).
    pub channels: usize,
    /// Bits per sample (8 or 16).
    pub bits: u32,
    /// What outputs keep of the file (its ICC profile).
    pub meta: Meta,
}

impl RowReader {
    /// Opens `path`: a PNG that can be read row by row is, within `limits`
    /// (its size is checked from the header, and the decoder's buffers are
    /// bounded); anything else is decoded whole by `load` (which applies
    /// its own limits and memory check).
    pub fn open(path: &Path, limits: DecodeLimits, load: impl FnOnce() -> Result<(Image, Meta)>) -> Result<RowReader> {
        if let Some(r) = Self::open_png(path, limits)? {
            return Ok(r);
        }
        if let Some(r) = Self::open_tiff(path, limits)? {
            return Ok(r);
        }
        let (img, meta) = load()?;
        Ok(RowReader {
            width: img.width,
            height: img.height,
            channels: img.channels,
            bits: img.samples.bits(),
            source: Source::Whole(img, 0),
            path: path.to_path_buf(),
            limits,
            meta,
        })
    }

    /// The row-by-row PNG reader, or None when `path` is not a PNG this
    /// reader takes (another format, interlaced, EXIF, a depth other than
    /// 8 or 16 after expansion).
    fn open_png(path: &Path, limits: DecodeLimits) -> Result<Option<RowReader>> {
        let err = |reason: String| Error::ImageRead { path: path.to_path_buf(), reason };
        let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
        let mut sig = [0u8; 8];
        let is_png = std::io::Read::read_exact(&mut file, &mut sig).is_ok() && sig == *b"\x89PNG\r\n\x1a\n";
        if !is_png {
            return Ok(None);
        }
        std::io::Seek::rewind(&mut file).map_err(|e| err(e.to_string()))?;
        let bytes = usize::try_from(limits.max_alloc).unwrap_or(usize::MAX);
        let mut dec = png::Decoder::new_with_limits(BufReader::new(file), png::Limits { bytes });
        let info = dec.read_header_info().map_err(|e| err(format!("cannot read header: {e}")))?;
        let (w, h, interlaced) = (info.width, info.height, info.interlaced);
        limits.check_input(w, h).map_err(err)?;
        if interlaced {
            return Ok(None);
        }
        // What `image`'s PNG decoder asks for: palettes and depths below 8
        // expanded, transparency chunks to alpha, 16 bits kept.
        dec.set_transformations(png::Transformations::EXPAND);
        let reader = dec.read_info().map_err(|e| err(e.to_string()))?;
        if reader.info().exif_metadata.is_some() {
            // An orientation to apply: the whole-image decoder does it.
            return Ok(None);
        }
        let (colour, depth) = reader.output_color_type();
        let channels = colour.samples();
        let bits = match depth {
            png::BitDepth::Eight => 8,
            png::BitDepth::Sixteen => 16,
            _ => return Ok(None),
        };
        if !(1..=4).contains(&channels) {
            return Ok(None);
        }
        let icc = reader.info().icc_profile.as_ref().map(|p| p.to_vec()).filter(|p| !p.is_empty());
        Ok(Some(RowReader {
            source: Source::Png(Box::new(reader)),
            path: path.to_path_buf(),
            limits,
            width: w,
            height: h,
            channels,
            bits,
            meta: Meta { icc },
        }))
    }

    /// The strip-by-strip TIFF reader, or None when `path` is not a TIFF
    /// this reader takes: only what `image`'s TIFF decoder hands over as it
    /// is (grey, grey+alpha, RGB or RGBA of 8 or 16 unsigned bits, samples
    /// interleaved, in strips of at most [`MAX_STRIP_BYTES`], no
    /// orientation to apply), so the rows are the samples
    /// [`crate::image_io::load_full`] gives. Tiled, planar, CMYK, YCbCr,
    /// palette, float and rotated TIFFs are decoded whole.
    fn open_tiff(path: &Path, limits: DecodeLimits) -> Result<Option<RowReader>> {
        use tiff::decoder::{ChunkType, Decoder};
        use tiff::tags::Tag;
        use tiff::ColorType;
        let err = |reason: String| Error::ImageRead { path: path.to_path_buf(), reason };
        let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
        let mut sig = [0u8; 4];
        let is_tiff = std::io::Read::read_exact(&mut file, &mut sig).is_ok()
            && matches!(&sig, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
        if !is_tiff {
            return Ok(None);
        }
        std::io::Seek::rewind(&mut file).map_err(|e| err(e.to_string()))?;
        // Anything this reader does not take goes to the whole-image
        // decoder, which reports what is wrong with the file.
        let Ok(dec) = Decoder::new(BufReader::new(file)) else { return Ok(None) };
        let mut tl = tiff::decoder::Limits::default();
        tl.decoding_buffer_size = MAX_STRIP_BYTES;
        let mut dec = dec.with_limits(tl);
        let Ok((w, h)) = dec.dimensions() else { return Ok(None) };
        limits.check_input(w, h).map_err(err)?;
        let (channels, bits) = match dec.colortype() {
            Ok(ColorType::Gray(b)) => (1, b),
            Ok(ColorType::GrayA(b)) => (2, b),
            Ok(ColorType::RGB(b)) => (3, b),
            Ok(ColorType::RGBA(b)) => (4, b),
            _ => return Ok(None),
        };
        let unsigned = matches!(dec.find_tag_unsigned_vec::<u16>(Tag::SampleFormat), Ok(None))
            || matches!(dec.find_tag_unsigned_vec::<u16>(Tag::SampleFormat), Ok(Some(v)) if v.iter().all(|&f| f == 1));
        let chunky = matches!(dec.find_tag_unsigned::<u16>(Tag::PlanarConfiguration), Ok(None | Some(1)));
        let upright = matches!(dec.find_tag_unsigned::<u16>(Tag::Orientation), Ok(None | Some(1)));
        let strips = dec.get_chunk_type() == ChunkType::Strip;
        if !(bits == 8 || bits == 16) || !unsigned || !chunky || !upright || !strips {
            return Ok(None);
        }
        let rows_per_strip = dec.chunk_dimensions().1.max(1) as u64;
        if rows_per_strip * w as u64 * channels as u64 * (bits as u64 / 8) > MAX_STRIP_BYTES as u64 {
            return Ok(None);
        }
        let icc = dec.get_tag_u8_vec(Tag::IccProfile).ok().filter(|p| !p.is_empty());
        let rows = if bits == 16 { Samples::U16(Vec::new()) } else { Samples::U8(Vec::new()) };
        Ok(Some(RowReader {
            source: Source::Tiff(TiffStrips { dec: Box::new(dec), next: 0, rows }),
            path: path.to_path_buf(),
            limits,
            width: w,
            height: h,
            channels,
            bits: bits as u32,
            meta: Meta { icc },
        }))
    }

    /// True when rows are decoded as they are read (a PNG row by row, a
    /// TIFF strip by strip); false when the image was decoded whole.
    pub fn by_rows(&self) -> bool {
        !matches!(self.source, Source::Whole(..))
    }

    /// Samples per row.
    pub fn row_len(&self) -> usize {
        self.width as usize * self.channels
    }

    /// Appends the next `rows` rows to `out` (of the reader's depth);
    /// refuses to read past the last row, and fails on a truncated or
    /// corrupt file.
    pub fn read(&mut self, rows: usize, out: &mut Samples) -> Result<()> {
        let n = self.row_len();
        let path = self.path.clone();
        let err = |reason: String| Error::ImageRead { path: path.clone(), reason };
        match &mut self.source {
            Source::Whole(img, next) => {
                if *next + rows > img.height as usize {
                    return Err(err("read past the last row".into()));
                }
                let range = *next * n..(*next + rows) * n;
                match (&img.samples, out) {
                    (Samples::U8(s), Samples::U8(o)) => o.extend_from_slice(&s[range]),
                    (Samples::U16(s), Samples::U16(o)) => o.extend_from_slice(&s[range]),
                    _ => return Err(err("row buffer of another depth".into())),
                }
                *next += rows;
            }
            Source::Tiff(t) => {
                let mut want = rows * n;
                while want > 0 {
                    if t.rows.is_empty() {
                        let strip = t.dec.read_chunk(t.next).map_err(|e| err(e.to_string()))?;
                        t.next += 1;
                        t.rows = match strip {
                            tiff::decoder::DecodingResult::U8(v) => Samples::U8(v),
                            tiff::decoder::DecodingResult::U16(v) => Samples::U16(v),
                            _ => return Err(err("a strip of another depth".into())),
                        };
                        if t.rows.is_empty() || t.rows.len() % n != 0 {
                            return Err(err("a strip of an unexpected length".into()));
                        }
                    }
                    let take = want.min(t.rows.len());
                    match (&mut t.rows, &mut *out) {
                        (Samples::U8(s), Samples::U8(o)) => o.extend(s.drain(..take)),
                        (Samples::U16(s), Samples::U16(o)) => o.extend(s.drain(..take)),
                        _ => return Err(err("row buffer of another depth".into())),
                    }
                    want -= take;
                }
            }
            Source::Png(r) => {
                for _ in 0..rows {
                    let row = r.next_row().map_err(|e| err(e.to_string()))?;
                    let row = row.ok_or_else(|| err("the image data ends before the last row".into()))?;
                    let data = row.data();
                    match &mut *out {
                        Samples::U8(o) if data.len() == n => o.extend_from_slice(data),
                        // PNG samples are big-endian.
                        Samples::U16(o) if data.len() == 2 * n => {
                            o.extend(data.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])))
                        }
                        _ => return Err(err("a row of an unexpected length".into())),
                    }
                }
            }
        }
        Ok(())
    }

    /// An empty sample buffer of the reader's depth.
    pub fn empty(&self) -> Samples {
        if self.bits == 16 {
            Samples::U16(Vec::new())
        } else {
            Samples::U8(Vec::new())
        }
    }

    /// Back to the first row (a second pass): a PNG is opened again.
    pub fn rewind(&mut self) -> Result<()> {
        match &mut self.source {
            Source::Whole(_, next) => *next = 0,
            Source::Tiff(_) => {
                let again = Self::open_tiff(&self.path, self.limits)?
                    .ok_or_else(|| Error::ImageRead { path: self.path.clone(), reason: "changed while read".into() })?;
                self.source = again.source;
            }
            Source::Png(_) => {
                let again = Self::open_png(&self.path, self.limits)?
                    .ok_or_else(|| Error::ImageRead { path: self.path.clone(), reason: "changed while read".into() })?;
                self.source = again.source;
            }
        }
        Ok(())
    }
}

/// Writes a `width` x `height` image into `f` as `format` (PNG or TIFF)
/// from its bands of full rows, top to bottom: `first`, then `rest`. The
/// bands fix the channels and depth; `meta`'s ICC profile goes in. Fails
/// when the bands do not add up to the image (a producer that stopped).
pub fn write_rows(
    f: &mut BufWriter<File>,
    format: ImageFormat,
    (width, height): (u32, u32),
    meta: &Meta,
    first: Image,
    rest: impl Iterator<Item = Image>,
) -> Result<()> {
    let (c, bits) = (first.channels, first.samples.bits());
    let bands = std::iter::once(first).chain(rest);
    let row = width as usize * c;
    let total = row * height as usize;
    let enc = |e: &dyn std::fmt::Display| Error::invalid("image encoder", e.to_string());
    let check = |img: &Image, done: usize| -> Result<()> {
        if img.width != width || img.channels != c || img.samples.bits() != bits || done + img.samples.len() > total {
            return Err(enc(&format!(
                "a {}x{}x{} band does not continue a {width}x{height}x{c} image",
                img.width, img.height, img.channels
            )));
        }
        Ok(())
    };
    let mut done = 0;
    match format {
        ImageFormat::Png => {
            let colour = match c {
                1 => png::ColorType::Grayscale,
                2 => png::ColorType::GrayscaleAlpha,
                3 => png::ColorType::Rgb,
                _ => png::ColorType::Rgba,
            };
            let mut info = png::Info::with_size(width, height);
            info.icc_profile = meta.icc.as_deref().map(std::borrow::Cow::Borrowed);
            let mut e = png::Encoder::with_info(&mut *f, info).map_err(|e| enc(&e))?;
            e.set_color(colour);
            e.set_depth(if bits == 16 { png::BitDepth::Sixteen } else { png::BitDepth::Eight });
            // What `image`'s PngEncoder uses by default (CompressionType::Fast:
            // fdeflate, about 15x faster than zlib level 6 on photos).
            e.set_compression(png::Compression::Fast);
            e.set_filter(png::Filter::Adaptive);
            let mut w = e.write_header().map_err(|e| enc(&e))?;
            {
                let mut s = w.stream_writer().map_err(|e| enc(&e))?;
                let mut be = Vec::new();
                for b in bands {
                    check(&b, done)?;
                    done += b.samples.len();
                    match &b.samples {
                        Samples::U8(v) => s.write_all(v),
                        Samples::U16(v) => {
                            be.clear();
                            be.extend(v.iter().flat_map(|x| x.to_be_bytes()));
                            s.write_all(&be)
                        }
                    }
                    .map_err(|e| enc(&e))?;
                }
                if done != total {
                    return Err(enc(&format!("{} of {total} samples were written", done)));
                }
                s.finish().map_err(|e| enc(&e))?;
            }
            w.finish().map_err(|e| enc(&e))?;
        }
        ImageFormat::Tiff => {
            use tiff::encoder::colortype as ct;
            let big = (total as u64) * (bits as u64 / 8) > (3u64 << 30);
            let icc = meta.icc.as_deref();
            let (d, dims) = (&mut bands.into_iter(), (width, height));
            fn u8s(s: &Samples) -> Option<&[u8]> {
                match s {
                    Samples::U8(v) => Some(v),
                    _ => None,
                }
            }
            fn u16s(s: &Samples) -> Option<&[u16]> {
                match s {
                    Samples::U16(v) => Some(v),
                    _ => None,
                }
            }
            match (c, bits) {
                (1, 8) => tiff_rows::<ct::Gray8, _>(f, dims, icc, big, d, u8s),
                (3, 8) => tiff_rows::<ct::RGB8, _>(f, dims, icc, big, d, u8s),
                (4, 8) => tiff_rows::<ct::RGBA8, _>(f, dims, icc, big, d, u8s),
                (1, 16) => tiff_rows::<ct::Gray16, _>(f, dims, icc, big, d, u16s),
                (3, 16) => tiff_rows::<ct::RGB16, _>(f, dims, icc, big, d, u16s),
                (4, 16) => tiff_rows::<ct::RGBA16, _>(f, dims, icc, big, d, u16s),
                _ => Err(enc(&format!("TIFF output of {c} channels at {bits} bits is not supported"))),
            }?;
        }
        other => return Err(enc(&format!("{other:?} cannot be written in bands"))),
    }
    Ok(())
}

/// The TIFF half of [`write_rows`] for one colour type: rows gathered into
/// the strips the encoder lays out (about 1 MB each), uncompressed as
/// `image`'s TIFF encoder writes them.
fn tiff_rows<C, I>(
    f: &mut BufWriter<File>,
    (width, height): (u32, u32),
    icc: Option<&[u8]>,
    big: bool,
    bands: &mut I,
    samples: fn(&Samples) -> Option<&[C::Inner]>,
) -> Result<()>
where
    C: tiff::encoder::colortype::ColorType,
    C::Inner: Copy,
    [C::Inner]: tiff::encoder::TiffValue,
    I: Iterator<Item = Image>,
{
    let enc = |e: &dyn std::fmt::Display| Error::invalid("image encoder", e.to_string());
    let mut pending: Vec<C::Inner> = Vec::new();
    macro_rules! run {
        ($encoder:expr) => {{
            let mut t = $encoder.map_err(|e| enc(&e))?;
            let mut img = t.new_image::<C>(width, height).map_err(|e| enc(&e))?;
            if let Some(p) = icc {
                img.encoder().write_tag(tiff::tags::Tag::IccProfile, p).map_err(|e| enc(&e))?;
            }
            let mut more = true;
            loop {
                let want = img.next_strip_sample_count() as usize;
                if want == 0 {
                    break;
                }
                while pending.len() < want && more {
                    match bands.next() {
                        Some(b) => {
                            if b.width != width {
                                return Err(enc(&"a band of another width"));
                            }
                            pending
                                .extend_from_slice(samples(&b.samples).ok_or_else(|| enc(&"a band of another depth"))?)
                        }
                        None => more = false,
                    }
                }
                if pending.len() < want {
                    return Err(enc(&"the bands end before the image does"));
                }
                img.write_strip(&pending[..want]).map_err(|e| enc(&e))?;
                pending.drain(..want);
            }
            if !pending.is_empty() || bands.next().is_some() {
                return Err(enc(&"more rows than the image has"));
            }
            img.finish().map_err(|e| enc(&e))?;
        }};
    }
    if big {
        run!(tiff::encoder::TiffEncoder::new_big(&mut *f))
    } else {
        run!(tiff::encoder::TiffEncoder::new(&mut *f))
    }
    Ok(())
}

/// The input rows the current band needs, read once each from the top of a
/// [`RowReader`] and kept only while a band needs them.
pub struct Window {
    samples: Samples,
    /// The first row held.
    pub lo: usize,
    /// One past the last row held.
    pub hi: usize,
}

impl Window {
    /// An empty window on `src`'s first row.
    pub fn new(src: &RowReader) -> Window {
        Window { samples: src.empty(), lo: 0, hi: 0 }
    }

    /// Input rows `rows` as an image: the rows above dropped, the new ones
    /// read. Bands move down the image: neither end may move up.
    pub fn take(&mut self, src: &mut RowReader, rows: std::ops::Range<usize>) -> Result<Image> {
        let (h, n) = (src.height as usize, src.row_len());
        if rows.start < self.lo || rows.end < self.hi || rows.end > h || rows.is_empty() {
            return Err(Error::invalid("bands", format!("input rows {rows:?} after {}..{}", self.lo, self.hi)));
        }
        let gone = (rows.start.min(self.hi) - self.lo) * n;
        match &mut self.samples {
            Samples::U8(v) => drop_front(v, gone),
            Samples::U16(v) => drop_front(v, gone),
        }
        if rows.start > self.hi {
            // Rows no band needs (an op that skips input rows): read past them.
            let mut skip = src.empty();
            src.read(rows.start - self.hi, &mut skip)?;
        }
        let from = rows.start.max(self.hi);
        src.read(rows.end - from, &mut self.samples)?;
        (self.lo, self.hi) = (rows.start, rows.end);
        Image::new(src.width, rows.len() as u32, src.channels, self.samples.clone())
    }
}

fn drop_front<T>(v: &mut Vec<T>, n: usize) {
    v.drain(..n.min(v.len()));
}

/// Writes a `width` x `height` image to `output` as `format` (PNG or TIFF,
/// [`streams`]) from the bands `produce` hands to its sink, top to bottom:
/// encoded on a thread of its own while `produce` makes the next band (one
/// band queued), into a temporary file placed atomically (an existing file
/// only when `replace`; [`Error::Exists`] otherwise). Returns the time spent
/// encoding (not waiting for bands). The producer's error is the one
/// returned, unless it stopped because the writer failed; a producer that
/// stops short leaves no file.
pub fn write_banded(
    output: &Path,
    replace: bool,
    format: ImageFormat,
    size: (u32, u32),
    meta: &Meta,
    produce: impl FnOnce(&mut dyn FnMut(Image) -> Result<()>) -> Result<()>,
) -> Result<std::time::Duration> {
    use std::time::{Duration, Instant};
    let (tx, rx) = std::sync::mpsc::sync_channel::<Image>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<Duration> {
            let Ok(first) = rx.recv() else { return Ok(Duration::ZERO) };
            let mut encoding = Duration::ZERO;
            crate::fsutil::write_atomic_stream(output, replace, |f| {
                let t = Instant::now();
                let waited = std::cell::Cell::new(Duration::ZERO);
                let bands = std::iter::from_fn(|| {
                    let t0 = Instant::now();
                    let got = rx.recv().ok();
                    waited.set(waited.get() + t0.elapsed());
                    got
                });
                let r = write_rows(f, format, size, meta, first, bands);
                encoding = t.elapsed().saturating_sub(waited.get());
                r
            })
            .map_err(|e| match e {
                Error::Exists { .. } => e,
                e => Error::ImageWrite { path: output.to_path_buf(), reason: e.to_string() },
            })?;
            Ok(encoding)
        });
        let mut writer_gone = false;
        let produced = produce(&mut |band: Image| {
            if tx.send(band).is_err() {
                // The writer stopped: its error is the one returned.
                writer_gone = true;
                return Err(Error::invalid("bands", "the writer stopped"));
            }
            Ok(())
        });
        drop(tx);
        let written = writer.join().unwrap_or_else(|_| Err(Error::invalid("bands", "the writer thread panicked")));
        if writer_gone {
            written.and_then(|d| produced.map(|_| d))
        } else {
            produced.and(written)
        }
    })
}
