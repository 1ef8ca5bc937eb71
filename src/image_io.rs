//! Image files in and out: PNG, JPEG, WebP, BMP, TIFF; grey, grey+alpha, RGB,
//! RGBA; 8 or 16 bits kept as they came. Decoding is bounded by limits checked
//! before any large allocation; writing is atomic (temporary file, then rename).

use std::path::Path;

use image::{DynamicImage, ImageFormat};

use crate::error::{Error, Result};
use crate::tensor::Samples;

pub use crate::pixel::Image;

/// Limits applied before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted pixel count.
    pub max_pixels: u64,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// 32768 pixels per side and 256 Mi pixels (16k x 16k covers every
    /// camera), or what `GPUIMG_MAX_SIDE` and `GPUIMG_MAX_PIXELS` say (a
    /// count, with a K/M/G suffix in powers of 1024; values that do not
    /// parse are ignored); the decoder may allocate 8 bytes per pixel
    /// (16-bit RGBA), at least 2 GiB. Inputs within the limits are still
    /// held to the memory budget before they are decoded, so a raised
    /// limit does not let a small file that declares a huge image (a
    /// decompression bomb) allocate more than the machine has.
    fn default() -> Self {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| crate::fsutil::parse_bytes(&v));
        let max_side = var("GPUIMG_MAX_SIDE").map_or(32768, |v| v.clamp(1, u32::MAX as u64) as u32);
        let max_pixels = var("GPUIMG_MAX_PIXELS").unwrap_or(256 << 20);
        DecodeLimits { max_side, max_pixels, max_alloc: max_pixels.saturating_mul(8).max(2 << 30) }
    }
}

impl DecodeLimits {
    /// Refuses an input that declares `w` x `h` pixels in its header: empty,
    /// or beyond the limits (checked before anything is allocated). The
    /// reason, for the caller to name the file with.
    pub fn check_input(&self, w: u32, h: u32) -> std::result::Result<(), String> {
        if w == 0 || h == 0 {
            return Err(format!("empty image ({w}x{h})"));
        }
        if w > self.max_side || h > self.max_side || w as u64 * h as u64 > self.max_pixels {
            return Err(format!(
                "declares {w}x{h} pixels, over the limit of {} per side and {} pixels",
                self.max_side, self.max_pixels
            ));
        }
        Ok(())
    }

    /// Refuses an output of `w` x `h` pixels beyond the limits inputs are
    /// held to (gpuimg could not read it back, and neither could most tools).
    pub fn check_output(&self, what: &str, w: u64, h: u64) -> Result<()> {
        if w == 0 || h == 0 || w > self.max_side as u64 || h > self.max_side as u64 || w * h > self.max_pixels {
            return Err(Error::invalid(
                "output",
                format!(
                    "{what} would be {w}x{h} pixels, over the limit of {} per side and {} pixels",
                    self.max_side, self.max_pixels
                ),
            ));
        }
        Ok(())
    }
}

/// File extensions gpuimg reads and writes.
pub const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

/// True when the path has an extension gpuimg reads.
pub fn is_image_path(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads an image with the default limits.
pub fn load(path: &Path) -> Result<Image> {
    load_with_limits(path, DecodeLimits::default())
}

/// Reads an image; a file that declares dimensions beyond `limits` is refused
/// before the pixel buffer is allocated.
pub fn load_with_limits(path: &Path, limits: DecodeLimits) -> Result<Image> {
    load_full(path, limits).map(|(img, _)| img)
}

/// What an image file carries besides its pixels that outputs keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The embedded ICC colour profile, written to outputs that can hold one
    /// (PNG, JPEG, WebP, TIFF).
    pub icc: Option<Vec<u8>>,
}

/// Where a JPEG's entropy-coded data ends: `Some(true)` when an end-of-image
/// marker follows the first scan, `Some(false)` when the file stops before
/// it (truncated), `None` when the marker structure is not one this walk
/// understands (the decoder then decides).
pub fn jpeg_complete(b: &[u8]) -> Option<bool> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return None;
    }
    let mut i = 2;
    loop {
        if i + 2 > b.len() {
            return Some(false);
        }
        if b[i] != 0xFF {
            return None;
        }
        let m = b[i + 1];
        match m {
            0xFF => i += 1,
            0xDA => break,
            0xD9 => return Some(true),
            0x01 | 0xD0..=0xD8 => i += 2,
            _ => {
                if i + 4 > b.len() {
                    return Some(false);
                }
                i += 2 + u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            }
        }
    }
    // Inside entropy-coded data 0xFF is always followed by 0x00 or a restart
    // marker, so FF D9 here is the end of the image.
    Some(b[i..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// Reads an image and its [`Meta`], with the EXIF orientation applied (the
/// pixels come out as every viewer shows them). Refused: dimensions beyond
/// `limits` (before the pixel buffer is allocated), truncated files
/// (JPEGs without their end marker included).
pub fn load_full(path: &Path, limits: DecodeLimits) -> Result<(Image, Meta)> {
    let err = |reason: String| Error::ImageRead { path: path.to_path_buf(), reason };
    let reader = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    match reader.format() {
        None => Err(err("not a recognised image format (PNG, JPEG, WebP, BMP, TIFF)".into())),
        Some(f) if built(f).is_err() => Err(err(built(f).unwrap_err())),
        Some(ImageFormat::Jpeg) => {
            let len = std::fs::metadata(path).map_err(|e| err(e.to_string()))?.len();
            if len > limits.max_alloc {
                return Err(err(format!("a {len}-byte JPEG is over the {}-byte limit", limits.max_alloc)));
            }
            // Read whole for the end-marker check, then decoded from memory.
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            decode_bytes(&bytes, &path.to_string_lossy(), limits)
        }
        Some(_) => decode_reader(reader, limits).map_err(err),
    }
}

/// [`load_full`] on bytes in memory (`name` is used in messages): what a
/// host application with its own I/O, and the decoder fuzz target, call.
pub fn decode_bytes(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<(Image, Meta)> {
    let err = |reason: String| Error::ImageRead { path: name.into(), reason };
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| err(e.to_string()))?;
    match reader.format() {
        None => Err(err("not a recognised image format (PNG, JPEG, WebP, BMP, TIFF)".into())),
        Some(f) if built(f).is_err() => Err(err(built(f).unwrap_err())),
        Some(ImageFormat::Jpeg) if jpeg_complete(bytes) == Some(false) => {
            Err(err("truncated JPEG (the file ends before the image data does)".into()))
        }
        Some(_) => decode_reader(reader, limits).map_err(err),
    }
}

/// Whether this build reads and writes `f`: JPEG, WebP and BMP are the
/// `jpeg`, `webp` and `bmp` features (on with `cli`); PNG and TIFF are
/// always built.
pub fn built(f: ImageFormat) -> std::result::Result<(), String> {
    let (name, feature, on) = match f {
        ImageFormat::Jpeg => ("JPEG", "jpeg", cfg!(feature = "jpeg")),
        ImageFormat::WebP => ("WebP", "webp", cfg!(feature = "webp")),
        ImageFormat::Bmp => ("BMP", "bmp", cfg!(feature = "bmp")),
        _ => return Ok(()),
    };
    if on {
        Ok(())
    } else {
        Err(format!("{name} is not built into this gpuimg (cargo feature `{feature}`)"))
    }
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    mut reader: image::ImageReader<R>,
    limits: DecodeLimits,
) -> std::result::Result<(Image, Meta), String> {
    use image::ImageDecoder;
    // The header first, with no limits, so the refusal below names the size;
    // then the limits, which the decoder enforces on its own allocations.
    reader.no_limits();
    let mut dec = reader.into_decoder().map_err(|e| format!("cannot read header: {e}"))?;
    let (w, h) = dec.dimensions();
    limits.check_input(w, h)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    dec.set_limits(l).map_err(|e| e.to_string())?;
    if dec.total_bytes() > limits.max_alloc {
        return Err(format!("needs {} bytes decoded, over the {}-byte limit", dec.total_bytes(), limits.max_alloc));
    }
    crate::fsutil::check_memory(&format!("decoding {w}x{h}"), dec.total_bytes()).map_err(|e| e.to_string())?;
    // A broken profile or orientation tag is not worth refusing the pixels for.
    let icc = dec.icc_profile().ok().flatten().filter(|p| !p.is_empty());
    let orientation = dec.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    let img = from_dynamic(img).map_err(|e| e.to_string())?;
    Ok((img, Meta { icc }))
}

/// Converts a decoded `image` crate image, keeping 16 bits where it has them.
pub fn from_dynamic(img: DynamicImage) -> Result<Image> {
    let (w, h) = (img.width(), img.height());
    let (c, s) = match img {
        DynamicImage::ImageLuma8(b) => (1, Samples::U8(b.into_raw())),
        DynamicImage::ImageLumaA8(b) => (2, Samples::U8(b.into_raw())),
        DynamicImage::ImageRgb8(b) => (3, Samples::U8(b.into_raw())),
        DynamicImage::ImageRgba8(b) => (4, Samples::U8(b.into_raw())),
        DynamicImage::ImageLuma16(b) => (1, Samples::U16(b.into_raw())),
        DynamicImage::ImageLumaA16(b) => (2, Samples::U16(b.into_raw())),
        DynamicImage::ImageRgb16(b) => (3, Samples::U16(b.into_raw())),
        DynamicImage::ImageRgba16(b) => (4, Samples::U16(b.into_raw())),
        other if other.color().has_alpha() => (4, Samples::U16(other.into_rgba16().into_raw())),
        other => (3, Samples::U16(other.into_rgb16().into_raw())),
    };
    Image::new(w, h, c, s)
}

/// Converts to an `image` crate image.
pub fn to_dynamic(img: &Image) -> Result<DynamicImage> {
    let (w, h) = (img.width, img.height);
    let bad = || Error::invalid("image", format!("{w}x{h} does not match the sample count"));
    Ok(match (&img.samples, img.channels) {
        (Samples::U8(v), 1) => DynamicImage::ImageLuma8(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?),
        (Samples::U8(v), 2) => {
            DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?)
        }
        (Samples::U8(v), 3) => DynamicImage::ImageRgb8(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?),
        (Samples::U8(v), 4) => DynamicImage::ImageRgba8(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?),
        (Samples::U16(v), 1) => {
            DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?)
        }
        (Samples::U16(v), 2) => {
            DynamicImage::ImageLumaA16(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?)
        }
        (Samples::U16(v), 3) => {
            DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?)
        }
        (Samples::U16(v), 4) => {
            DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w, h, v.clone()).ok_or_else(bad)?)
        }
        _ => return Err(bad()),
    })
}

/// The output format a path's extension asks for.
pub fn format_of(path: &Path) -> Result<ImageFormat> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => Ok(ImageFormat::Png),
        "jpg" | "jpeg" => Ok(ImageFormat::Jpeg),
        "webp" => Ok(ImageFormat::WebP),
        "bmp" => Ok(ImageFormat::Bmp),
        "tif" | "tiff" => Ok(ImageFormat::Tiff),
        _ => Err(Error::UnknownValue { what: "output extension", value: ext, valid: EXTENSIONS.join(", ") }),
    }
}

/// Encodes for a format, converting what the format cannot hold: JPEG, WebP
/// and BMP are 8-bit, and JPEG has no alpha (dropped).
pub fn encode(img: &Image, format: ImageFormat) -> Result<Vec<u8>> {
    encode_with(img, format, &Meta::default())
}

/// [`encode`] with the input's [`Meta`]: the ICC profile goes into formats
/// that hold one (PNG, JPEG, WebP, TIFF; BMP has none).
pub fn encode_with(img: &Image, format: ImageFormat, meta: &Meta) -> Result<Vec<u8>> {
    built(format).map_err(|m| Error::invalid("image encoder", m))?;
    let mut out = Vec::new();
    let enc_err = |e: image::ImageError| Error::invalid("image encoder", e.to_string());
    // The image's own samples where the format holds them as they are (no
    // copy); otherwise a converted `image` crate buffer. Either way the
    // encoder gets what `DynamicImage::write_with_encoder` would pass it.
    let converted;
    let (bytes, colour): (&[u8], image::ExtendedColorType) = match as_encoded(img, format)? {
        Some(b) => b,
        None => {
            converted = convert_for(img, format)?;
            if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Tiff) {
                converted.write_to(&mut std::io::Cursor::new(&mut out), format).map_err(enc_err)?;
                return Ok(out);
            }
            (converted.as_bytes(), converted.color().into())
        }
    };
    macro_rules! write {
        ($enc:expr) => {{
            let mut enc = $enc;
            if let Some(p) = meta.icc.clone() {
                // An encoder that cannot take this profile still writes the pixels.
                let _ = image::ImageEncoder::set_icc_profile(&mut enc, p);
            }
            image::ImageEncoder::write_image(enc, bytes, img.width, img.height, colour).map_err(enc_err)?;
        }};
    }
    match format {
        #[cfg(feature = "jpeg")]
        ImageFormat::Jpeg => write!(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)),
        ImageFormat::Png => write!(image::codecs::png::PngEncoder::new(&mut out)),
        #[cfg(feature = "webp")]
        ImageFormat::WebP => write!(image::codecs::webp::WebPEncoder::new_lossless(&mut out)),
        ImageFormat::Tiff => write!(image::codecs::tiff::TiffEncoder::new(std::io::Cursor::new(&mut out))),
        f => return Err(Error::invalid("image encoder", format!("no encoder for {f:?}"))),
    }
    Ok(out)
}

/// The image in an `image` crate buffer converted to what `format` holds:
/// JPEG, WebP and BMP are 8-bit, JPEG has no alpha, WebP and BMP no grey+alpha.
fn convert_for(img: &Image, format: ImageFormat) -> Result<DynamicImage> {
    let mut d = to_dynamic(img)?;
    let eight_bit_only = matches!(format, ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Bmp);
    if eight_bit_only && img.samples.bits() == 16 {
        d = match img.channels {
            1 => DynamicImage::ImageLuma8(d.into_luma8()),
            2 => DynamicImage::ImageLumaA8(d.into_luma_alpha8()),
            3 => DynamicImage::ImageRgb8(d.into_rgb8()),
            _ => DynamicImage::ImageRgba8(d.into_rgba8()),
        };
    }
    if format == ImageFormat::Jpeg && d.color().has_alpha() {
        d = if img.channels == 2 {
            DynamicImage::ImageLuma8(d.into_luma8())
        } else {
            DynamicImage::ImageRgb8(d.into_rgb8())
        };
    }
    if matches!(format, ImageFormat::WebP | ImageFormat::Bmp) && img.channels == 2 {
        d = DynamicImage::ImageRgba8(d.into_rgba8());
    }
    Ok(d)
}

/// The image's samples as the encoder takes them (native-endian bytes, as
/// the image crate's own buffers hand them over) and their colour type,
/// where `format` holds the image without a conversion; `None` otherwise
/// (and for BMP, which goes through the image crate's `write_to`).
fn as_encoded(img: &Image, format: ImageFormat) -> Result<Option<(&[u8], image::ExtendedColorType)>> {
    use image::ExtendedColorType as C;
    let (c, bits) = (img.channels, img.samples.bits());
    let converts = match format {
        ImageFormat::Png | ImageFormat::Tiff => false,
        ImageFormat::Jpeg => bits == 16 || c == 2 || c == 4,
        ImageFormat::WebP => bits == 16 || c == 2,
        _ => true,
    };
    if converts {
        return Ok(None);
    }
    if img.samples.len() != img.width as usize * img.height as usize * c {
        let (w, h) = (img.width, img.height);
        return Err(Error::invalid("image", format!("{w}x{h} does not match the sample count")));
    }
    let colour = match (bits, c) {
        (8, 1) => C::L8,
        (8, 2) => C::La8,
        (8, 3) => C::Rgb8,
        (8, 4) => C::Rgba8,
        (16, 1) => C::L16,
        (16, 2) => C::La16,
        (16, 3) => C::Rgb16,
        (16, 4) => C::Rgba16,
        _ => return Ok(None),
    };
    let bytes: &[u8] = match &img.samples {
        Samples::U8(v) => v,
        Samples::U16(v) => bytemuck::cast_slice(v),
    };
    Ok(Some((bytes, colour)))
}

/// Writes an image atomically in the format its extension names.
pub fn save(img: &Image, path: &Path) -> Result<()> {
    save_with(img, path, &Meta::default(), true)
}

/// [`save`] with the input's [`Meta`]; with `replace` false an existing
/// file is left alone ([`Error::Exists`]), decided when the file is placed.
pub fn save_with(img: &Image, path: &Path, meta: &Meta, replace: bool) -> Result<()> {
    let format = format_of(path)?;
    let bytes = encode_with(img, format, meta)
        .map_err(|e| Error::ImageWrite { path: path.to_path_buf(), reason: e.to_string() })?;
    crate::fsutil::write_atomic_with(path, &bytes, replace)
}

pub use crate::fsutil::write_atomic;

/// True when two paths name the same existing file (or the same path).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_left_out_of_the_build_are_named_with_their_feature() {
        // A tiny image through every format: built ones round-trip, the
        // others (a build without `jpeg`, `webp` or `bmp`) refuse by name.
        let img = Image::new(3, 2, 3, Samples::U8((0..18).map(|i| i * 13).collect())).unwrap();
        for (f, feature, on) in [
            (ImageFormat::Jpeg, "jpeg", cfg!(feature = "jpeg")),
            (ImageFormat::WebP, "webp", cfg!(feature = "webp")),
            (ImageFormat::Bmp, "bmp", cfg!(feature = "bmp")),
            (ImageFormat::Png, "", true),
            (ImageFormat::Tiff, "", true),
        ] {
            match encode(&img, f) {
                Ok(bytes) => {
                    assert!(on, "{f:?} encoded without its feature");
                    let (back, _) = decode_bytes(&bytes, "t", DecodeLimits::default()).unwrap();
                    assert_eq!((back.width, back.height), (3, 2), "{f:?}");
                }
                Err(e) => {
                    assert!(!on, "{f:?}: {e}");
                    assert!(e.to_string().contains(&format!("feature `{feature}`")), "{e}");
                }
            }
        }
    }
}
