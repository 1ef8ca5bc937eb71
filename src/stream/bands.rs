//! One large image through an op band by band: decoded, processed and
//! encoded a band of rows at a time, so memory stays bounded whatever the
//! image's size.
//!
//! ```text
//! RowReader ──> window of rows ──> prepare, op on band + halo, finish ──> crop ──(queue of 1)──> writer thread
//! (PNG row by row,  [a - halo, b + halo)                                      core rows          PNG/TIFF encoder,
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
use crate::rows::{self, RowReader};
use crate::tensor::Samples;
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
    /// The op on `band` (prepared input rows `first..first + band.height`,
    /// halo included): the output of all those rows, `scale` times the size.
    fn run(&self, job: usize, backend: &Backend, band: &Image, first: usize) -> Result<Image>;
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
    fn run(&self, job: usize, backend: &Backend, band: &Image, _first: usize) -> Result<Image> {
        match backend {
            Backend::Cpu => self.op.cpu(job, band),
            Backend::Gpu(gpu) => self.op.gpu(job, gpu, band),
        }
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

/// The output bytes from which jobs run in bands by default: 256 MiB (an
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
    let format = image_io::format_of(output).ok()?;
    let (w, h) = rows::dimensions(input).ok()?;
    let b = op.bands(w, h)?;
    let s = b.scale() as u64;
    let out_bytes = (w as u64 * s).saturating_mul(h as u64 * s).saturating_mul(3);
    if out_bytes < cfg.band_bytes {
        return None;
    }
    if !rows::streams(format) {
        shared.observer.notice(
            input,
            &format!(
                "{:?} output is encoded whole (only PNG and TIFF are written in bands): the {}x{} output is held in memory",
                format,
                w as u64 * s,
                h as u64 * s
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
    let s = b.scale();
    let (ow, oh) = (w * s, h * s);
    limits.check_output("the output", ow as u64, oh as u64)?;
    let on_pool = |f: &mut (dyn FnMut() -> Result<()> + Send)| match (backend, pool) {
        (Backend::Cpu, Some(p)) => p.install(f),
        _ => f(),
    };
    if b.looks() {
        let (rows, halo) = (band_rows(&*b), b.look_halo());
        each_band(&mut src, rows, halo, shared, &mut |first, band, core| {
            let p = op.prepare(band)?;
            on_pool(&mut || b.look(backend, &p, first, core.clone()))
        })?;
        on_pool(&mut || b.looked(backend))?;
        src.rewind()?;
    }
    let meta = src.meta.clone();
    let (tx, rx) = mpsc::sync_channel::<Image>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let Ok(first) = rx.recv() else { return Ok(()) };
            crate::fsutil::write_atomic_stream(output, replace, |f| {
                let t = Instant::now();
                // The time spent waiting for bands is not encoding.
                let waited = std::cell::Cell::new(std::time::Duration::ZERO);
                let bands = std::iter::from_fn(|| {
                    let t0 = Instant::now();
                    let got = rx.recv().ok();
                    waited.set(waited.get() + t0.elapsed());
                    got
                });
                let r = rows::write_rows(f, format, (ow as u32, oh as u32), &meta, first, bands);
                shared.encode_ns.fetch_add(nanos(t.elapsed().saturating_sub(waited.get())), Ordering::Relaxed);
                r
            })
            .map_err(|e| match e {
                Error::Exists { .. } => e,
                e => Error::ImageWrite { path: output.to_path_buf(), reason: e.to_string() },
            })
        });
        let (rows, halo) = (band_rows(&*b), b.halo());
        let (mut checked, mut writer_gone) = (false, false);
        let produced = each_band(&mut src, rows, halo, shared, &mut |first, band, core| {
            let p = op.prepare(band)?;
            if !checked {
                op.check(&p)?;
                checked = true;
            }
            let mut out = None;
            on_pool(&mut || {
                out = Some(b.run(job, backend, &p, first)?);
                Ok(())
            })?;
            let out = op.finish(channels, &p, out.expect("set by run"))?;
            if out.width as usize != w * s || out.height as usize != p.height as usize * s {
                return Err(Error::invalid(
                    "bands",
                    format!("the op gave {}x{} for a {w}x{} band at scale {s}", out.width, out.height, p.height),
                ));
            }
            let core = Tile { x: 0, y: (core.start - first) * s, w: w * s, h: core.len() * s };
            if tx.send(crate::tiling::crop(&out, core)?).is_err() {
                // The writer stopped: its error is the one returned.
                writer_gone = true;
                return Err(Error::invalid("bands", "the writer stopped"));
            }
            Ok(())
        });
        drop(tx);
        let written = writer.join().unwrap_or_else(|_| Err(Error::invalid("bands", "the writer thread panicked")));
        // The producer's error first (the writer's is then only that the
        // bands stopped), unless the producer stopped for the writer.
        if writer_gone {
            written.and(produced)
        } else {
            produced.and(written)
        }
    })
}

/// Calls `f(first, band, core)` for each band of `rows` input rows of the
/// reader's image, top to bottom: `band` holds rows `first..`, the core
/// rows grown by `halo` on each side (clipped to the image). Rows are read
/// once and kept only while a band needs them.
fn each_band(
    src: &mut RowReader,
    rows: usize,
    halo: usize,
    shared: &Shared<'_>,
    f: &mut dyn FnMut(usize, Image, Range<usize>) -> Result<()>,
) -> Result<()> {
    let (w, h, c, n) = (src.width, src.height as usize, src.channels, src.row_len());
    let mut win = src.empty();
    let (mut lo0, mut hi0) = (0, 0);
    let mut a = 0;
    while a < h {
        let b = (a + rows.max(1)).min(h);
        let (lo, hi) = (a.saturating_sub(halo), (b + halo).min(h));
        let drop = (lo - lo0) * n;
        match &mut win {
            Samples::U8(v) => drop_front(v, drop),
            Samples::U16(v) => drop_front(v, drop),
        }
        let t = Instant::now();
        src.read(hi - hi0, &mut win)?;
        shared.decode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
        (lo0, hi0) = (lo, hi);
        f(lo, Image::new(w, (hi - lo) as u32, c, win.clone())?, a..b)?;
        a = b;
    }
    Ok(())
}

fn drop_front<T>(v: &mut Vec<T>, n: usize) {
    v.drain(..n.min(v.len()));
}
