//! One large image through an op band by band: decoded, processed and
//! encoded a band of rows at a time, so memory stays bounded whatever the
//! image's size.
//!
//! ```text
//! RowReader ──> window of rows ──> prepare, op on band + halo, finish ──> crop ──(queue of 1)──> writer thread
//! (PNG, TIFF by rows, [a - halo, b + halo)                                     core rows          PNG/TIFF encoder,
//!  else decoded whole)                                                                         temp file, rename
//! ```
//!
//! A job goes this way when the op can ([`StreamOp::bands`]), its output is
//! at least [`StreamConfig::band_bytes`], and the output format can be
//! written in bands (PNG, TIFF). The output equals the whole-image run's:
//! each band carries the op's receptive halo, and its core rows are what
//! the whole image gives there (bit for bit on the CPU path).

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::rows::{self, RowReader, Window};
use crate::tiling::Tile;

/// An op run on horizontal bands of an image ([`StreamOp::bands`]).
pub trait Banded: Send + Sync {
    /// Input rows above and below a band that its output rows depend on.
    fn halo(&self) -> usize;
    /// Output pixels per input pixel along each axis.
    fn scale(&self) -> usize;
    /// Input rows per band (without the halo).
    fn rows(&self) -> usize;
    /// True when the op needs a first pass over the whole input
    /// ([`Banded::look`], then [`Banded::looked`]) before any band runs.
    fn looks(&self) -> bool {
        false
    }
    /// The halo of the first pass's bands.
    fn look_halo(&self) -> usize {
        self.halo()
    }
    /// The first pass: `band` (prepared) holds input rows `first..`, of
    /// which it is the only band to own `core`.
    fn look(&mut self, backend: &Backend, band: &Image, first: usize, core: Range<usize>) -> Result<()> {
        let _ = (backend, band, first, core);
        Ok(())
    }
    /// After the first pass, before the bands run.
    fn looked(&mut self, backend: &Backend) -> Result<()> {
        let _ = backend;
        Ok(())
    }
    /// Checks, before the first band runs, that this band's work (the first
    /// band, prepared) is within the limits and the memory budget. The
    /// default checks nothing; [`Local`] runs the op's own `check` on it.
    fn check(&self, band: &Image) -> Result<()> {
        let _ = band;
        Ok(())
    }
    /// The output's size for a `width` x `height` input: `scale` times it
    /// unless the op says otherwise.
    fn out_size(&self, width: usize, height: usize) -> (usize, usize) {
        (width * self.scale(), height * self.scale())
    }
    /// The input rows that output rows `out` depend on, in an image
    /// `height` rows tall: those under them grown by the halo, unless the
    /// op says otherwise (it must grow with `out`, band after band).
    fn input_rows(&self, out: Range<usize>, height: usize) -> Range<usize> {
        let s = self.scale().max(1);
        (out.start / s).saturating_sub(self.halo())..(out.end.div_ceil(s) + self.halo()).min(height)
    }
    /// The op on `band` (prepared input rows `first..first + band.height`,
    /// [`Banded::input_rows`] of `out`): at least output rows `out`, and
    /// the output row its first row is. [`Local`] gives the output of the
    /// whole band (`scale` times its size, from `first * scale`).
    fn run(
        &self,
        job: usize,
        backend: &Backend,
        band: &Image,
        first: usize,
        out: Range<usize>,
    ) -> Result<(Image, usize)>;
}

/// The [`Banded`] form of an op whose output rows depend only on input
/// rows within `halo`, and which treats a band like a whole image (its
/// zero padding at a band's cut edges falls in the halo): each band runs
/// through the op's own `cpu` or `gpu`.
pub struct Local<'a> {
    /// The op.
    pub op: &'a dyn StreamOp,
    /// Its receptive radius in input rows.
    pub halo: usize,
    /// Its scale.
    pub scale: usize,
    /// Input rows per band.
    pub rows: usize,
}

impl Banded for Local<'_> {
    fn halo(&self) -> usize {
        self.halo
    }
    fn scale(&self) -> usize {
        self.scale
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn check(&self, band: &Image) -> Result<()> {
        self.op.check(band)
    }
    fn run(
        &self,
        job: usize,
        backend: &Backend,
        band: &Image,
        first: usize,
        _out: Range<usize>,
    ) -> Result<(Image, usize)> {
        let y = match backend {
            Backend::Cpu => self.op.cpu(job, band),
            Backend::Gpu(gpu) => self.op.gpu(job, gpu, band),
        }?;
        Ok((y, first * self.scale))
    }
}

/// Input rows per band for an op that needs `bytes_per_row` bytes of
/// working memory per input row: what fits [`BAND_WORK`], at least 32
/// (and at least eight times the halo, so the halo costs at most a quarter).
pub fn rows_for(bytes_per_row: u64, halo: usize) -> usize {
    ((BAND_WORK / bytes_per_row.max(1)) as usize).max(32).max(8 * halo)
}

/// The working memory one band is given: 256 MiB.
pub const BAND_WORK: u64 = 256 << 20;

/// The input or output bytes from which jobs run in bands by default: 256 MiB (an
/// 8-bit RGB output of about 9500 x 9500), or `GPUIMG_BAND_BYTES` (bytes,
/// with a K/M/G suffix).
pub fn default_band_bytes() -> u64 {
    std::env::var("GPUIMG_BAND_BYTES").ok().and_then(|v| crate::fsutil::parse_bytes(&v)).unwrap_or(256 << 20)
}

/// Runs job `job` in bands when it should: `None` when it goes the
/// whole-image way (the op does not band, the output is small, or its
/// format cannot be written in bands; the observer hears of the last).
pub(super) fn try_run(
    op: &dyn StreamOp,
    job: usize,
    cfg: &StreamConfig,
    backend: &Backend,
    pool: Option<&rayon::ThreadPool>,
    shared: &Shared<'_>,
) -> Option<Result<()>> {
    let Job { input, output } = &shared.jobs[job];
    let file = FileJob {
        job,
        input,
        output,
        backend,
        band_bytes: cfg.band_bytes,
        band_rows: cfg.band_rows,
        replace: cfg.overwrite,
        observer: shared.observer,
    };
    let t = Instant::now();
    let own = match (backend, pool) {
        (Backend::Cpu, Some(p)) => p.install(|| op.run_file(&file)),
        _ => op.run_file(&file),
    };
    if own.is_some() {
        shared.own_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
        return own;
    }
    let format = image_io::format_of(output).ok()?;
    let (w, h) = rows::dimensions(input).ok()?;
    let b = op.bands(w, h)?;
    let (ow, oh) = b.out_size(w as usize, h as usize);
    // The larger of input and output: a downscale of a huge image bands too.
    let bytes = (ow as u64 * oh as u64).max(w as u64 * h as u64).saturating_mul(3);
    if bytes < cfg.band_bytes {
        return None;
    }
    if !rows::streams(format) {
        shared.observer.notice(
            input,
            &format!(
                "{format:?} output is encoded whole (only PNG and TIFF are written in bands): the {ow}x{oh} output is held in memory"
            ),
        );
        return None;
    }
    drop(b);
    Some(run(op, job, (input, output), format, cfg, backend, pool, shared))
}

#[allow(clippy::too_many_arguments)]
fn run(
    op: &dyn StreamOp,
    job: usize,
    (input, output): (&Path, &Path),
    format: image::ImageFormat,
    cfg: &StreamConfig,
    backend: &Backend,
    pool: Option<&rayon::ThreadPool>,
    shared: &Shared<'_>,
) -> Result<()> {
    let replace = cfg.overwrite;
    let band_rows = |b: &dyn Banded| if cfg.band_rows > 0 { cfg.band_rows } else { b.rows() };
    let t = Instant::now();
    let limits = image_io::DecodeLimits::default();
    let mut src = RowReader::open(input, limits, || op.load(job, input))?;
    shared.decode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
    let (w, h, channels) = (src.width as usize, src.height as usize, src.channels);
    let mut b = op
        .bands(src.width, src.height)
        .ok_or_else(|| Error::invalid("bands", format!("the op does not run a {w}x{h} image in bands")))?;
    let (ow, oh) = b.out_size(w, h);
    limits.check_output("the output", ow as u64, oh as u64)?;
    let on_pool = |f: &mut (dyn FnMut() -> Result<()> + Send)| match (backend, pool) {
        (Backend::Cpu, Some(p)) => p.install(f),
        _ => f(),
    };
    if b.looks() {
        let (rows, halo) = (band_rows(&*b), b.look_halo());
        let mut win = Window::new(&src);
        let mut a = 0;
        while a < h {
            let core = a..(a + rows.max(1)).min(h);
            let band = take(&mut win, &mut src, core.start.saturating_sub(halo)..(core.end + halo).min(h), shared)?;
            let p = op.prepare(band)?;
            on_pool(&mut || b.look(backend, &p, win.lo, core.clone()))?;
            a = core.end;
        }
        on_pool(&mut || b.looked(backend))?;
        src.rewind()?;
    }
    let meta = src.meta.clone();
    // Output rows per band: the input rows' share of the output.
    let orows = ((band_rows(&*b) as u128 * oh as u128 / h.max(1) as u128) as usize).max(1);
    let mut checked = false;
    let mut win = Window::new(&src);
    let encoding = rows::write_banded(output, replace, format, (ow as u32, oh as u32), &meta, |sink| {
        let mut oa = 0;
        while oa < oh {
            let out_rows = oa..(oa + orows).min(oh);
            let band = take(&mut win, &mut src, b.input_rows(out_rows.clone(), h), shared)?;
            let first = win.lo;
            let p = op.prepare(band)?;
            if !checked {
                b.check(&p)?;
                checked = true;
            }
            let mut got = None;
            on_pool(&mut || {
                got = Some(b.run(job, backend, &p, first, out_rows.clone())?);
                Ok(())
            })?;
            let (y, y0) = got.expect("set by run");
            let y = op.finish(channels, &p, y)?;
            if y.width as usize != ow || y0 > out_rows.start || y0 + (y.height as usize) < out_rows.end {
                return Err(Error::invalid(
                    "bands",
                    format!(
                        "the op gave {}x{} from row {y0} for output rows {out_rows:?} of a {ow}x{oh} image",
                        y.width, y.height
                    ),
                ));
            }
            let core = Tile { x: 0, y: out_rows.start - y0, w: ow, h: out_rows.len() };
            sink(crate::tiling::crop(&y, core)?)?;
            oa = out_rows.end;
        }
        Ok(())
    })?;
    shared.encode_ns.fetch_add(nanos(encoding), Ordering::Relaxed);
    Ok(())
}

/// [`Window::take`], its time counted as decoding.
fn take(win: &mut Window, src: &mut RowReader, rows: Range<usize>, shared: &Shared<'_>) -> Result<Image> {
    let t = Instant::now();
    let r = win.take(src, rows);
    shared.decode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
    r
}
