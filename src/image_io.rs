//! Image files in and out: PNG, JPEG, WebP, BMP, TIFF; grey, grey+alpha, RGB,
//! RGBA; 8 or 16 bits kept as they came. Decoding is bounded by limits checked
//! before any large allocation; writing is atomic (temporary file, then rename).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat};

use crate::error::{Error, Result};
use crate::kernels::unpack_pixels::PixelLayout;
use crate::tensor::Samples;

/// A decoded image: interleaved samples, 1-4 channels of 8 or 16 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    pub channels: usize,
    /// The samples, row-major, interleaved.
    pub samples: Samples,
}

impl Image {
    /// Checks that the sample count fits the size and channel count.
    pub fn new(width: u32, height: u32, channels: usize, samples: Samples) -> Result<Image> {
        let want = width as usize * height as usize * channels;
        if !(1..=4).contains(&channels) || samples.len() != want {
            return Err(Error::invalid(
                "image",
                format!("{} samples for {width}x{height} with {channels} channels", samples.len()),
            ));
        }
        Ok(Image { width, height, channels, samples })
    }
    /// The pixel layout of this image (one image).
    pub fn layout(&self) -> PixelLayout {
        PixelLayout {
            n: 1,
            height: self.height as usize,
            width: self.width as usize,
            channels: self.channels,
            bits: self.samples.bits(),
        }
    }
    /// True when the last channel is alpha (grey+alpha or RGBA).
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }
}

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
    fn default() -> Self {
        // 16k x 16k covers every camera; 2 GiB covers a 16-bit RGBA image of that size... almost.
        DecodeLimits { max_side: 32768, max_pixels: 256 << 20, max_alloc: 2 << 30 }
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
    let err = |reason: String| Error::ImageRead { path: path.to_path_buf(), reason };
    let open = || {
        image::ImageReader::open(path)
            .map_err(|e| err(e.to_string()))?
            .with_guessed_format()
            .map_err(|e| err(e.to_string()))
    };
    let reader = open()?;
    if reader.format().is_none() {
        return Err(err("not a recognised image format (PNG, JPEG, WebP, BMP, TIFF)".into()));
    }
    let (w, h) = reader.into_dimensions().map_err(|e| err(format!("cannot read header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(err(format!("empty image ({w}x{h})")));
    }
    if w > limits.max_side || h > limits.max_side || w as u64 * h as u64 > limits.max_pixels {
        return Err(err(format!(
            "declares {w}x{h} pixels, over the limit of {} per side and {} pixels",
            limits.max_side, limits.max_pixels
        )));
    }
    let mut reader = open()?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let img = reader.decode().map_err(|e| err(e.to_string()))?;
    from_dynamic(img).map_err(|e| err(e.to_string()))
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
    let mut out = Vec::new();
    if format == ImageFormat::Jpeg {
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        d.write_with_encoder(enc).map_err(|e| Error::invalid("jpeg encoder", e.to_string()))?;
    } else {
        d.write_to(&mut std::io::Cursor::new(&mut out), format)
            .map_err(|e| Error::invalid("image encoder", e.to_string()))?;
    }
    Ok(out)
}

/// Writes an image atomically in the format its extension names.
pub fn save(img: &Image, path: &Path) -> Result<()> {
    let format = format_of(path)?;
    let bytes =
        encode(img, format).map_err(|e| Error::ImageWrite { path: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Writes bytes to `path` through a temporary file in the same directory and a
/// rename, so a reader never sees a half-written file and a failure leaves none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.to_path_buf(), source: e };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io(std::io::Error::other("no file name")))?;
    let tmp: PathBuf = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = BufWriter::new(File::create(&tmp)?);
        f.write_all(bytes)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// True when two paths name the same existing file (or the same path).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
