//! Resizing packed images (bilinear) on either backend, in strips where an
//! image is larger than one binding, recorded or streamed.

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, ResizeBilinear, UnpackPixels};
use crate::stream::StreamOp;
use crate::tensor::Samples;

use super::*;

/// Resizes an image bilinearly (every channel, alpha included), keeping its
/// bit depth and channel layout.
///
/// ```
/// use gpuimg::{image_io::Image, kernels::ResizeBilinear, ops::resize_image, Backend, Samples};
/// let img = Image::new(64, 48, 1, Samples::U16((0..64 * 48).map(|i| (i * 21) as u16).collect()))?;
/// let half = resize_image(&Backend::Cpu, &img, &ResizeBilinear::to_size(24, 32, false))?;
/// assert_eq!((half.width, half.height, half.channels, half.samples.bits()), (32, 24, 1, 16));
/// if let Some(gpu) = gpuimg::gpu::doctest_gpu() {
///     let on_gpu = resize_image(&Backend::Gpu(gpu), &img, &ResizeBilinear::to_size(24, 32, false))?;
///     assert_eq!((on_gpu.width, on_gpu.height), (32, 24));
/// }
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub fn resize_image(backend: &Backend, img: &Image, resize: &ResizeBilinear) -> Result<Image> {
    let inl = img.layout();
    let outl = resize_layout(inl, resize)?;
    let samples = match backend {
        Backend::Cpu => resize_packed_cpu(img, resize, outl)?,
        Backend::Gpu(gpu) => return resize_gpu(gpu, img, resize),
    };
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// The CPU path of [`resize_image`]: unpack, resize and pack fused per output
/// row, reading only the two input rows that row's taps touch. The arithmetic
/// is that of `UnpackPixels::cpu` (`sample / max`), `ResizeBilinear::cpu`
/// (`ly0 * (lx0 a + lx1 b) + ly1 * (lx0 c + lx1 d)`) and `PackPixels::cpu`
/// (`quantise`), in the same order, so the bytes are the same
/// ([`resize_packed_reference`] is that three-step path, kept for the test)
/// without the two full f32 copies of the image.
pub fn resize_packed_cpu(img: &Image, resize: &ResizeBilinear, outl: PixelLayout) -> Result<Samples> {
    let inl = img.layout();
    let (ay, ax) = resize.axes(inl.shape())?;
    let align = resize.align_corners;
    let cols: Vec<(usize, usize, f32, f32)> = (0..ax.output).map(|j| ax.tap(j, align)).collect();
    let maxv = inl.max_value();
    Ok(match &img.samples {
        Samples::U8(s) => {
            let lut: Vec<f32> = (0..256u32).map(|v| v as f32 / maxv).collect();
            Samples::U8(fused_rows(s, inl, outl, &ay, &cols, align, |v: u8| lut[v as usize], |q| q as u8, (0, 0)))
        }
        Samples::U16(s) => {
            Samples::U16(fused_rows(s, inl, outl, &ay, &cols, align, |v: u16| v as f32 / maxv, |q| q as u16, (0, 0)))
        }
    })
}

/// Output rows `out` of the resize of an image of layout `full`, from
/// `band`, which holds its rows `first..` (at least those the rows' taps
/// read: [`ResizeBilinear::strip_input_rows`]): those rows of
/// [`resize_packed_cpu`]'s output, the same bytes.
pub fn resize_rows_cpu(
    band: &Image,
    full: PixelLayout,
    resize: &ResizeBilinear,
    first: usize,
    out: std::ops::Range<usize>,
) -> Result<Image> {
    let inl = band.layout();
    let (ay, ax) = resize.axes(full.shape())?;
    let (need0, need1) = resize.strip_input_rows(full.shape(), out.start, out.end)?;
    if need0 < first || need1 >= first + inl.height {
        return Err(crate::Error::invalid("resize", format!("band rows {first}.. lack input rows {need0}..={need1}")));
    }
    let align = resize.align_corners;
    let cols: Vec<(usize, usize, f32, f32)> = (0..ax.output).map(|j| ax.tap(j, align)).collect();
    let outl = PixelLayout { height: out.len(), width: ax.output, ..inl };
    let maxv = inl.max_value();
    let at = (first, out.start);
    let samples = match &band.samples {
        Samples::U8(s) => {
            let lut: Vec<f32> = (0..256u32).map(|v| v as f32 / maxv).collect();
            Samples::U8(fused_rows(s, inl, outl, &ay, &cols, align, |v: u8| lut[v as usize], |q| q as u8, at))
        }
        Samples::U16(s) => {
            Samples::U16(fused_rows(s, inl, outl, &ay, &cols, align, |v: u16| v as f32 / maxv, |q| q as u16, at))
        }
    };
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// The unfused CPU path (unpack to f32 planes, resize, pack): the reference
/// [`resize_packed_cpu`] is tested against.
pub fn resize_packed_reference(img: &Image, resize: &ResizeBilinear, outl: PixelLayout) -> Result<Samples> {
    let x = UnpackPixels(img.layout()).cpu(&img.samples)?;
    let y = resize.cpu(&x)?;
    PackPixels(outl).cpu(&y)
}

#[allow(clippy::too_many_arguments)]
fn fused_rows<T: Copy + Send + Sync + Default>(
    src: &[T],
    inl: PixelLayout,
    outl: PixelLayout,
    ay: &crate::kernels::resize_bilinear::Axis,
    cols: &[(usize, usize, f32, f32)],
    align: bool,
    value: impl Fn(T) -> f32 + Sync,
    sample: impl Fn(u32) -> T + Sync,
    (in_first, out_first): (usize, usize),
) -> Vec<T> {
    use rayon::prelude::*;
    let c = inl.channels;
    let irow = inl.width * c;
    let orow = outl.width * c;
    let maxv = outl.max_value();
    let mut out = vec![T::default(); outl.samples()];
    if orow == 0 {
        return out;
    }
    // One output row from input rows r0 and r1 (row taps ly0, ly1), for C
    // channels known at compile time (the channel loop unrolls), compiled
    // for AVX2 too (the same operations: the same bytes).
    #[inline(always)]
    fn row<T: Copy, const C: usize>(
        dst: &mut [T],
        (r0, r1, ly0, ly1): (&[T], &[T], f32, f32),
        cols: &[(usize, usize, f32, f32)],
        maxv: f32,
        value: &impl Fn(T) -> f32,
        sample: &impl Fn(u32) -> T,
    ) {
        for (px, &(x0, x1, lx0, lx1)) in dst.chunks_exact_mut(C).zip(cols) {
            let (a, b) = (&r0[x0 * C..x0 * C + C], &r0[x1 * C..x1 * C + C]);
            let (e, f) = (&r1[x0 * C..x0 * C + C], &r1[x1 * C..x1 * C + C]);
            for ch in 0..C {
                let top = lx0 * value(a[ch]) + lx1 * value(b[ch]);
                let bot = lx0 * value(e[ch]) + lx1 * value(f[ch]);
                px[ch] = sample(crate::kernels::pack_pixels::quantise(ly0 * top + ly1 * bot, maxv));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2<T: Copy, const C: usize>(
        dst: &mut [T],
        taps: (&[T], &[T], f32, f32),
        cols: &[(usize, usize, f32, f32)],
        maxv: f32,
        value: &impl Fn(T) -> f32,
        sample: &impl Fn(u32) -> T,
    ) {
        let mut done = 0;
        if std::mem::size_of::<T>() == 1 && maxv == 255.0 && (C == 3 || C == 4) {
            // SAFETY: T is u8 (one byte, `Samples::U8`), so the slices
            // reinterpret as bytes; `value` there is v / 255 and `sample`
            // the byte, which `row_u8_lanes` computes with the same steps.
            let (r0, r1, ly0, ly1) = taps;
            let bytes = |r: &[T]| unsafe { std::slice::from_raw_parts(r.as_ptr() as *const u8, r.len()) };
            let d = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len()) };
            done = row_u8_lanes::<C>(d, (bytes(r0), bytes(r1), ly0, ly1), cols);
        }
        row::<T, C>(&mut dst[done * C..], taps, &cols[done..], maxv, value, sample)
    }
    /// [`row`] on 8-bit samples of 3 or 4 channels, two pixels to an AVX
    /// register (a pixel's channels in four lanes): the taps loaded, widened
    /// and divided by 255 (the unpacking's float), the same multiplies and
    /// adds in the same order, quantised as `quantise` does and packed.
    /// Returns how many output pixels it wrote (a prefix: it stops where a
    /// tap would load past the row's end, and `row` finishes the rest).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_u8_lanes<const C: usize>(
        dst: &mut [u8],
        (r0, r1, ly0, ly1): (&[u8], &[u8], f32, f32),
        cols: &[(usize, usize, f32, f32)],
    ) -> usize {
        use std::arch::x86_64::*;
        let len = r0.len().min(r1.len());
        let m = _mm256_set1_ps(255.0);
        let (ly0, ly1) = (_mm256_set1_ps(ly0), _mm256_set1_ps(ly1));
        // Output byte k of two 3-channel pixels: lane k / 3 * 4 + k % 3.
        let pick: [i8; 16] = std::array::from_fn(|k| if k < 6 { (k / 3 * 4 + k % 3) as i8 } else { -128 });
        // SAFETY: sixteen bytes.
        let pick = unsafe { _mm_loadu_si128(pick.as_ptr() as *const __m128i) };
        // SAFETY (loads): the loop checks that four bytes from every tap's
        // offset are inside both rows.
        let load = |r: &[u8], a: usize, b: usize| unsafe {
            let va = _mm_cvtsi32_si128((r.as_ptr().add(a) as *const i32).read_unaligned());
            let vb = _mm_cvtsi32_si128((r.as_ptr().add(b) as *const i32).read_unaligned());
            _mm256_div_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi32(va, vb))), m)
        };
        let mut o = 0;
        while o + 2 <= cols.len() {
            let ((a0, a1, p0, p1), (b0, b1, q0, q1)) = (cols[o], cols[o + 1]);
            if a0.max(a1).max(b0).max(b1) * C + 4 > len {
                break;
            }
            let lx0 = _mm256_set_m128(_mm_set1_ps(q0), _mm_set1_ps(p0));
            let lx1 = _mm256_set_m128(_mm_set1_ps(q1), _mm_set1_ps(p1));
            let top = _mm256_add_ps(
                _mm256_mul_ps(lx0, load(r0, a0 * C, b0 * C)),
                _mm256_mul_ps(lx1, load(r0, a1 * C, b1 * C)),
            );
            let bot = _mm256_add_ps(
                _mm256_mul_ps(lx0, load(r1, a0 * C, b0 * C)),
                _mm256_mul_ps(lx1, load(r1, a1 * C, b1 * C)),
            );
            let v = _mm256_add_ps(_mm256_mul_ps(ly0, top), _mm256_mul_ps(ly1, bot));
            let b8 = crate::kernels::pack_pixels::rgb8::quantise8(v);
            let at = o * C;
            let mut t = [0u8; 16];
            if C == 4 {
                // SAFETY: sixteen bytes.
                unsafe { _mm_storeu_si128(t.as_mut_ptr() as *mut __m128i, b8) };
                dst[at..at + 8].copy_from_slice(&t[..8]);
            } else {
                // SAFETY: sixteen bytes.
                unsafe { _mm_storeu_si128(t.as_mut_ptr() as *mut __m128i, _mm_shuffle_epi8(b8, pick)) };
                dst[at..at + 6].copy_from_slice(&t[..6]);
            }
            o += 2;
        }
        o
    }
    fn row_any<T: Copy, const C: usize>(
        avx2: bool,
        dst: &mut [T],
        taps: (&[T], &[T], f32, f32),
        cols: &[(usize, usize, f32, f32)],
        maxv: f32,
        value: &impl Fn(T) -> f32,
        sample: &impl Fn(u32) -> T,
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { row_avx2::<T, C>(dst, taps, cols, maxv, value, sample) };
        }
        let _ = avx2;
        row::<T, C>(dst, taps, cols, maxv, value, sample)
    }
    let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
    let rows = crate::kernels::rows_per_task(orow);
    out.par_chunks_mut(orow).with_min_len(rows).enumerate().for_each(|(r, dst)| {
        // Images back to back (n > 1): each has its own rows.
        let (img, i) = (r / outl.height, r % outl.height + out_first);
        let (y0, y1, ly0, ly1) = ay.tap(i, align);
        let (y0, y1) = (y0 - in_first, y1 - in_first);
        let base = img * inl.height * irow;
        let r0 = &src[base + y0 * irow..base + (y0 + 1) * irow];
        let r1 = &src[base + y1 * irow..base + (y1 + 1) * irow];
        let taps = (r0, r1, ly0, ly1);
        match c {
            1 => row_any::<T, 1>(avx2, dst, taps, cols, maxv, &value, &sample),
            2 => row_any::<T, 2>(avx2, dst, taps, cols, maxv, &value, &sample),
            3 => row_any::<T, 3>(avx2, dst, taps, cols, maxv, &value, &sample),
            _ => row_any::<T, 4>(avx2, dst, taps, cols, maxv, &value, &sample),
        }
    });
    out
}

/// [`resize_image`] on the GPU: in one submission, or in strips of rows
/// when the image or the result is larger than one tensor may be.
pub fn resize_gpu(gpu: &Gpu, img: &Image, resize: &ResizeBilinear) -> Result<Image> {
    resize_gpu_capped(gpu, img, resize, gpu.tensor_cap())
}

/// [`resize_gpu`] with tensors of at most `cap` bytes: larger images run in
/// strips of output rows, each with the input rows its taps read, and the
/// result equals the unsplit resize (tests force strips with a small cap).
pub fn resize_gpu_capped(gpu: &Gpu, img: &Image, resize: &ResizeBilinear, cap: usize) -> Result<Image> {
    let (inl, outl) = (img.layout(), resize_layout(img.layout(), resize)?);
    if inl.shape().bytes() > cap as u64 || outl.shape().bytes() > cap as u64 {
        return resize_gpu_strips(gpu, img, resize, cap);
    }
    let src = gpu.upload_bytes(&img.samples.le_bytes())?;
    let r = run_recorded(gpu, "gpuimg.resize_image", outl.bytes(), |enc| record_resize(gpu, enc, resize, inl, &src));
    gpu.recycle_buffer(src);
    Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &r?, outl.samples()),
    )
}

pub(super) fn resize_gpu_strips(gpu: &Gpu, img: &Image, resize: &ResizeBilinear, cap: usize) -> Result<Image> {
    let outh = resize_layout(img.layout(), resize)?.height;
    resize_rows_gpu(gpu, img, img.layout(), resize, 0, 0..outh, cap)
}

/// Output rows `out` of the resize of an image of layout `full` on the GPU,
/// from `band`, which holds its rows `first..` (as [`resize_rows_cpu`]), in
/// strips whose tensors take at most `cap` bytes.
pub fn resize_rows_gpu(
    gpu: &Gpu,
    band: &Image,
    full: PixelLayout,
    resize: &ResizeBilinear,
    first: usize,
    out_rows: std::ops::Range<usize>,
    cap: usize,
) -> Result<Image> {
    let inl = band.layout();
    let outl = PixelLayout { height: out_rows.len(), ..resize_layout(full, resize)? };
    let fs = full.shape();
    let packed = band.samples.le_bytes();
    let sample_bytes = inl.bits as usize / 8;
    let (in_row, out_row) = (inl.width * inl.channels * sample_bytes, outl.width * outl.channels * sample_bytes);
    // f32 bytes per row of the unpacked input and output tensors.
    let (in_f32, out_f32) = (inl.width * inl.channels * 4, outl.width * outl.channels * 4);
    if in_f32 * 2 > cap || out_f32 > cap {
        return Err(crate::Error::TooLarge {
            what: "one row of the resize".into(),
            needed: (in_f32 * 2) as u64,
            limit: cap as u64,
        });
    }
    let mut out = crate::fsutil::try_vec("the resized image", outl.height * out_row, 0u8)?;
    let mut a = out_rows.start;
    while a < out_rows.end {
        // As many output rows as fit, fewer while their input rows do not.
        let mut rows = (cap / out_f32).clamp(1, out_rows.end - a);
        let (f, last) = loop {
            let (f, l) = resize.strip_input_rows(fs, a, a + rows)?;
            if (l - f + 1) * in_f32 <= cap || rows == 1 {
                break (f, l);
            }
            rows = rows.div_ceil(2);
        };
        if f < first || last >= first + inl.height {
            return Err(crate::Error::invalid("resize", format!("band rows {first}.. lack input rows {f}..={last}")));
        }
        let b = a + rows;
        let sin = PixelLayout { height: last - f + 1, ..inl };
        let sout = PixelLayout { height: rows, ..outl };
        let r = pixel_chain(
            gpu,
            "gpuimg.resize_strip",
            sin,
            &packed[(f - first) * in_row..(last + 1 - first) * in_row],
            sout,
            |enc, x, y| resize.encode_strip(gpu, enc, fs, x, y, f, a),
        )?;
        let o = a - out_rows.start;
        out[o * out_row..(o + rows) * out_row].copy_from_slice(&r[..rows * out_row]);
        a = b;
    }
    Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &out, outl.samples()),
    )
}

/// The layout a resize makes of `inl`.
pub fn resize_layout(inl: PixelLayout, resize: &ResizeBilinear) -> Result<PixelLayout> {
    let out_shape = resize.out_shape(inl.shape())?;
    Ok(PixelLayout { height: out_shape.h, width: out_shape.w, ..inl })
}

/// Records [`resize_image`] for packed samples of layout `inl` in `src`.
pub fn record_resize(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    resize: &ResizeBilinear,
    inl: PixelLayout,
    src: &wgpu::Buffer,
) -> Result<Recorded> {
    let outl = resize_layout(inl, resize)?;
    record_pixel_chain(gpu, enc, inl, src, outl, |enc, x, y| resize.encode(gpu, enc, x, y))
}

/// [`resize_image`] as a streamed op.
///
/// ```
/// use gpuimg::kernels::resize_bilinear::{ResizeBilinear, ResizeTarget};
/// use gpuimg::{ops::ResizeOp, stream, Backend};
/// let jobs = stream::doctest_jobs("resize_op", "png")?; // two PNGs and a broken file
/// let op = ResizeOp(ResizeBilinear { target: ResizeTarget::Size { h: 8, w: 10 }, align_corners: false });
/// let report = stream::run_batch(&Backend::Cpu, &op, &jobs, &stream::StreamConfig::new(), &stream::Silent);
/// assert_eq!((report.images, report.failed), (2, 1));
/// let out = gpuimg::image_io::load(&jobs[1].output)?;
/// assert_eq!((out.width, out.height), (10, 8));
/// # Ok::<(), gpuimg::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResizeOp(pub ResizeBilinear);

/// Peak memory of resizing an image of layout `inl` to `outl` on the CPU
/// path, in bytes: the input as f32 planes, the output as f32 planes, the
/// packed output and its encoded copy.
pub fn resize_peak_bytes(inl: PixelLayout, outl: PixelLayout) -> u64 {
    let b = outl.bits as u64 / 8;
    inl.samples() as u64 * 4 + outl.samples() as u64 * (4 + 2 * b)
}

/// [`ResizeOp`] in bands: each band of output rows from the input rows its
/// taps read (the bands' output is the whole resize's, the same bytes on
/// the CPU path).
struct ResizeBands<'a> {
    resize: &'a ResizeBilinear,
    full: PixelLayout,
    out: (usize, usize),
    rows: usize,
}

impl crate::stream::Banded for ResizeBands<'_> {
    fn halo(&self) -> usize {
        1
    }
    fn scale(&self) -> usize {
        1
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn out_size(&self, _width: usize, _height: usize) -> (usize, usize) {
        self.out
    }
    fn input_rows(&self, out: std::ops::Range<usize>, height: usize) -> std::ops::Range<usize> {
        match self.resize.strip_input_rows(self.full.shape(), out.start, out.end) {
            Ok((a, b)) => a..(b + 1).min(height),
            Err(_) => 0..height,
        }
    }
    fn run(
        &self,
        _job: usize,
        backend: &Backend,
        band: &Image,
        first: usize,
        out: std::ops::Range<usize>,
    ) -> Result<(Image, usize)> {
        let full = PixelLayout { channels: band.channels, bits: band.samples.bits(), ..self.full };
        let y = match backend {
            Backend::Cpu => resize_rows_cpu(band, full, self.resize, first, out.clone())?,
            Backend::Gpu(gpu) => resize_rows_gpu(gpu, band, full, self.resize, first, out.clone(), gpu.tensor_cap())?,
        };
        Ok((y, out.start))
    }
}

impl StreamOp for ResizeOp {
    /// Bands of output rows, each from the input rows under it.
    fn bands(&self, width: u32, height: u32) -> Option<Box<dyn crate::stream::Banded + '_>> {
        let full = PixelLayout { n: 1, height: height as usize, width: width as usize, channels: 4, bits: 8 };
        let out = resize_layout(full, &self.0).ok()?;
        // Input rows per band: what keeps a band's input and output (as
        // 16-bit RGBA at most) within the band budget.
        let per_row = (width as u64 + out.width as u64 * out.height as u64 / height.max(1) as u64) * 8;
        let rows = crate::stream::rows_for(per_row, 1);
        Some(Box::new(ResizeBands { resize: &self.0, full, out: (out.width, out.height), rows }))
    }
    fn check(&self, img: &Image) -> Result<()> {
        let outl = resize_layout(img.layout(), &self.0)?;
        crate::image_io::DecodeLimits::default().check_output(
            "the resized image",
            outl.width as u64,
            outl.height as u64,
        )?;
        crate::fsutil::check_memory(
            &format!("resizing to {}x{}", outl.width, outl.height),
            resize_peak_bytes(img.layout(), outl),
        )
    }
    fn cpu(&self, _job: usize, img: &Image) -> Result<Image> {
        resize_image(&Backend::Cpu, img, &self.0)
    }
    fn gpu(&self, _job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        resize_gpu(gpu, img, &self.0)
    }
    fn groups(&self) -> bool {
        true
    }
    fn record_group(
        &self,
        _jobs: &[usize],
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        imgs: &[&Image],
        src: &wgpu::Buffer,
    ) -> Result<Option<Recorded>> {
        // One unpack, one resize and one pack over an (N, C, H, W) batch.
        let l = PixelLayout { n: imgs.len(), ..imgs[0].layout() };
        let outl = resize_layout(l, &self.0)?;
        if l.shape().bytes().max(outl.shape().bytes()) > gpu.tensor_cap() as u64 {
            // Alone, the blocking path runs it in strips; a group is recorded image by image.
            return Ok(None);
        }
        Ok(Some(record_resize(gpu, enc, &self.0, l, src)?))
    }
}
