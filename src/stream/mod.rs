//! The streaming batch engine: many image files through one op with the
//! GPU kept busy.
//!
//! ```text
//! load threads ──(bounded queue)──> submit thread ──(bounded queue)──> save threads
//!  decode, prepare       ring of `slots`: upload, record, submit,        finish, encode,
//!                        map the readback without blocking               atomic write
//! ```
//!
//! Each slot owns persistent upload buffers, a readback buffer and a
//! timestamp query set. The submit thread fills the next slot (one command
//! encoder for one image, or for several small ones), submits without waiting
//! and moves on; it waits only when it comes back round to a slot whose work
//! is still in flight. With `slots = 1` every image waits for the previous
//! one: no overlap, the baseline. Memory is bounded: at most
//! [`StreamConfig::max_in_memory`] decoded images exist at once, whatever the
//! number of files.
//!
//! On the CPU backend the same pipeline runs with the op on a rayon pool of
//! `proc_threads` between the load and save threads.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorded};
use crate::image_io::{self, Image, Meta};

mod bands;
mod progress;
mod report;
mod ring;

pub use bands::{default_band_bytes, rows_for, Banded, Local, BAND_WORK};

pub use progress::ProgressBar;
#[cfg(feature = "bench")]
pub(crate) use report::json_str;
pub(crate) use report::set_job;
pub use report::{Report, Stages};
use ring::Ring;

/// An image op the engine can stream.
///
/// The engine calls `load` and `prepare` on a load thread, then `cpu`, or
/// `record` (or `gpu` where `record` declines), then `finish` and `save` on
/// a save thread.
pub trait StreamOp: Send + Sync {
    /// Reads an input file (`job`: the job's index in the run), with what
    /// outputs keep of it (the ICC profile).
    fn load(&self, job: usize, path: &Path) -> Result<(Image, Meta)> {
        let _ = job;
        image_io::load_full(path, image_io::DecodeLimits::default())
    }
    /// Checks, before any work, that the op's output for this (prepared)
    /// image is within the size limits and its peak memory within the
    /// budget; refuses it with the numbers otherwise.
    fn check(&self, img: &Image) -> Result<()> {
        let _ = img;
        Ok(())
    }
    /// Turns a decoded image into what the op takes (e.g. grey to RGB).
    fn prepare(&self, img: Image) -> Result<Image> {
        Ok(img)
    }
    /// The op on the CPU path. `job` is the index of the job in the run
    /// (ops that draw random values per job use it as the sample number).
    fn cpu(&self, job: usize, img: &Image) -> Result<Image>;
    /// The op on the GPU, blocking: for images `record` declines.
    fn gpu(&self, job: usize, gpu: &Gpu, img: &Image) -> Result<Image>;
    /// Records the op into `enc` for `img`, whose packed little-endian
    /// samples are in `src`. Returns the recording (with its output layout),
    /// or `None` when the image must take the blocking path (too large for
    /// one pass, or no recorded form). The default is
    /// [`StreamOp::record_group`] of one image.
    fn record(
        &self,
        job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<Recorded>> {
        self.record_group(&[job], gpu, enc, &[img], src)
    }
    /// Records the op for several images of one layout at once: `src` holds
    /// their packed samples back to back, and the result is their outputs
    /// back to back, with one dispatch per kernel for the whole group (the
    /// recording's layout has `n` = the number of images). `None` (the
    /// default): not supported, or this group is too large for one pass.
    fn record_group(
        &self,
        jobs: &[usize],
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        imgs: &[&Image],
        src: &wgpu::Buffer,
    ) -> Result<Option<Recorded>> {
        let _ = (jobs, gpu, enc, imgs, src);
        Ok(None)
    }
    /// True when [`StreamOp::record_group`] records groups: the engine then
    /// uploads runs of small images of one layout as one buffer (and only then).
    fn groups(&self) -> bool {
        false
    }
    /// For an op whose output can be made tile by tile, equal to the whole
    /// (sr): the tiles of (prepared) `img` for `parts` ranks, with the halo
    /// and scale to run and merge them ([`crate::tiling::Merge`]; `finish`
    /// then runs on the merged image). `None`, the default: the op does not
    /// tile, and an image runs whole on one rank.
    fn split(&self, img: &Image, parts: usize) -> Result<Option<crate::tiling::Split>> {
        let _ = (img, parts);
        Ok(None)
    }
    /// For an op that can run on horizontal bands of a `width` x `height`
    /// image (its output rows depend only on nearby input rows, or on a
    /// first pass over all of them): how ([`Banded`]). The engine then runs
    /// an image whose input or output is at least [`StreamConfig::band_bytes`] band
    /// by band, decoding (PNG) and encoding (PNG, TIFF) as it goes, in
    /// bounded memory. `None`, the default: whole images only.
    fn bands(&self, width: u32, height: u32) -> Option<Box<dyn Banded + '_>> {
        let _ = (width, height);
        None
    }
    /// For an op whose input or output is not an image (compress,
    /// decompress): runs a large job file to file in bounded memory, its
    /// own way, or `None` (the default) for the usual way. Called on a
    /// load thread (inside the CPU path's pool) before the job is loaded.
    fn run_file(&self, file: &FileJob<'_>) -> Option<Result<()>> {
        let _ = file;
        None
    }
    /// Turns the op's output back into what is saved. `channels` is the
    /// decoded image's channel count (before `prepare`).
    fn finish(&self, channels: usize, input: &Image, out: Image) -> Result<Image> {
        let _ = (channels, input);
        Ok(out)
    }
    /// Writes the result atomically, with the input's `meta` where the
    /// format holds it; an existing file only when `replace`
    /// ([`Error::Exists`] otherwise, decided when the file is placed).
    fn save(&self, job: usize, out: &Image, meta: &Meta, path: &Path, replace: bool) -> Result<()> {
        let _ = job;
        image_io::save_with(out, path, meta, replace)
    }
}

/// One input file and where its result goes.
#[derive(Debug, Clone)]
pub struct Job {
    /// The input file.
    pub input: PathBuf,
    /// The output file.
    pub output: PathBuf,
}

/// One job as [`StreamOp::run_file`] sees it.
pub struct FileJob<'a> {
    /// The job's index in the run.
    pub job: usize,
    /// The input file.
    pub input: &'a Path,
    /// The output file.
    pub output: &'a Path,
    /// Where the op runs.
    pub backend: &'a Backend,
    /// [`StreamConfig::band_bytes`].
    pub band_bytes: u64,
    /// [`StreamConfig::band_rows`].
    pub band_rows: usize,
    /// Replace the output when it exists ([`StreamConfig::overwrite`]).
    pub replace: bool,
    /// The run's observer (for [`Observer::notice`]).
    pub observer: &'a dyn Observer,
}

/// Threads, ring depth and batching of a run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Decoding threads.
    pub load_threads: usize,
    /// Threads of the CPU path's op (the GPU path records on one thread).
    pub proc_threads: usize,
    /// Encoding and writing threads.
    pub save_threads: usize,
    /// Submissions in flight at once (1: no overlap).
    pub slots: usize,
    /// Images whose pixel count is at most this share one submission...
    pub batch_pixels: usize,
    /// ... up to this many images per submission.
    pub max_batch: usize,
    /// Replace outputs that exist (otherwise they are skipped, decided when
    /// each file is placed).
    pub overwrite: bool,
    /// Images whose input or output is at least this many bytes (counted as 8-bit RGB) run in
    /// bands where the op and the output format allow ([`StreamOp::bands`]);
    /// [`default_band_bytes`] unless set.
    pub band_bytes: u64,
    /// Input rows per band; 0 (the default): the op's choice, from its
    /// working memory ([`Banded::rows`]).
    pub band_rows: usize,
    /// Set (by a signal handler, say) to stop the run: no new job starts,
    /// jobs in flight finish, and the report says it was interrupted.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The most threads of each kind `-j` accepts.
pub const MAX_THREADS: usize = 256;

impl StreamConfig {
    /// Defaults for this machine: half the cores (at least 1) loading, as
    /// many saving, every core for the CPU op, two slots, small images (up to
    /// 256 x 256) eight to a submission.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        StreamConfig {
            load_threads: (cores / 2).max(1),
            proc_threads: cores,
            save_threads: (cores / 2).max(1),
            slots: 2,
            batch_pixels: 256 * 256,
            max_batch: 8,
            overwrite: false,
            band_bytes: default_band_bytes(),
            band_rows: 0,
            cancel: None,
        }
    }

    /// Parses `-j LOAD:PROC:SAVE` (each a count from 1 to [`MAX_THREADS`]) into this config.
    pub fn set_threads(&mut self, spec: &str) -> Result<()> {
        let parts: Vec<&str> = spec.split(':').collect();
        let n: Vec<usize> =
            parts.iter().filter_map(|p| p.trim().parse().ok()).filter(|&n| (1..=MAX_THREADS).contains(&n)).collect();
        if parts.len() != 3 || n.len() != 3 {
            return Err(Error::invalid(
                "-j",
                format!("'{spec}': give three thread counts from 1 to {MAX_THREADS}, LOAD:PROC:SAVE"),
            ));
        }
        (self.load_threads, self.proc_threads, self.save_threads) = (n[0], n[1], n[2]);
        Ok(())
    }

    /// Capacity of the queue from the loaders to the submit thread.
    fn decode_queue(&self) -> usize {
        self.load_threads.max(self.max_batch.max(1))
    }

    /// Capacity of the queue from the submit thread to the savers.
    fn save_queue(&self) -> usize {
        2 * self.save_threads
    }

    /// The most decoded images that can exist at once: being decoded,
    /// queued, in the ring's slots (plus the batch being gathered), queued
    /// for saving, being saved.
    pub fn max_in_memory(&self) -> usize {
        self.load_threads
            + self.decode_queue()
            + (self.slots + 1) * self.max_batch.max(1)
            + self.save_queue()
            + self.save_threads
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Events a run reports as they happen.
pub trait Observer: Sync {
    /// An input failed (the run goes on).
    fn failed(&self, input: &Path, message: &str) {
        let _ = (input, message);
    }
    /// An output was found to exist when it was to be written, and left alone.
    fn skipped(&self, output: &Path, message: &str) {
        let _ = (output, message);
    }
    /// Something worth knowing about an input that is not a failure (its
    /// output could not be written in bands, say).
    fn notice(&self, input: &Path, message: &str) {
        let _ = (input, message);
    }
    /// `done` of `total` inputs are finished (written or failed).
    fn progress(&self, done: usize, total: usize, elapsed: Duration) {
        let _ = (done, total, elapsed);
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// A decoded input travelling through the pipeline.
struct Item {
    job: usize,
    channels: usize,
    img: Image,
    meta: Meta,
}

/// Shared counters of a run.
struct Shared<'a> {
    jobs: &'a [Job],
    observer: &'a dyn Observer,
    failures: Mutex<Vec<(usize, String)>>,
    /// Inputs that failed already: later jobs of the same input (augment's
    /// samples) fail with them without another decode or another message.
    failed_inputs: Mutex<HashSet<PathBuf>>,
    done: AtomicUsize,
    written: AtomicUsize,
    skipped: AtomicUsize,
    banded: AtomicUsize,
    in_memory: AtomicUsize,
    peak: AtomicUsize,
    decode_ns: AtomicU64,
    encode_ns: AtomicU64,
    /// Jobs run end to end by the op itself ([`StreamOp::run_file`]).
    own_ns: AtomicU64,
    started: Instant,
}

impl Shared<'_> {
    fn fail(&self, job: usize, e: &dyn std::fmt::Display) {
        let input = &self.jobs[job].input;
        let first = self.failed_inputs.lock().expect("failed inputs poisoned").insert(input.clone());
        if first {
            let msg = e.to_string();
            self.observer.failed(input, &msg);
            self.failures.lock().expect("failures poisoned").push((job, msg));
        }
        self.finish_one();
    }
    /// True when the input of `job` failed already (its other jobs fail silently).
    fn input_failed(&self, job: usize) -> bool {
        self.failed_inputs.lock().expect("failed inputs poisoned").contains(&self.jobs[job].input)
    }
    fn finish_one(&self) {
        let d = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        self.observer.progress(d, self.jobs.len(), self.started.elapsed());
    }
    /// Hands an op's result to the savers, or records its failure.
    fn deliver(&self, item: Item, r: Result<Image>, save: &mpsc::SyncSender<(Item, Image)>) {
        match r {
            Ok(out) => {
                let _ = save.send((item, out));
            }
            Err(e) => {
                self.release();
                self.fail(item.job, &e);
            }
        }
    }
    /// Counts a job's written output, or its output found to exist, or its failure.
    fn settle(&self, job: usize, r: Result<()>) {
        match r {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::SeqCst);
                self.finish_one();
            }
            Err(e @ Error::Exists { .. }) => {
                // Another process wrote this output after the run was planned.
                self.skipped.fetch_add(1, Ordering::SeqCst);
                self.observer.skipped(&self.jobs[job].output, &e.to_string());
                self.finish_one();
            }
            Err(e) => self.fail(job, &e),
        }
    }
    fn hold(&self) {
        let n = self.in_memory.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }
    fn release(&self) {
        self.in_memory.fetch_sub(1, Ordering::SeqCst);
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Jobs for the doc examples: in a fresh folder under the temporary
/// directory, two small RGB PNGs (24x16 and 17x9) and a file that is not an
/// image, each with an output of `ext` beside it. Not API.
#[doc(hidden)]
pub fn doctest_jobs(name: &str, ext: &str) -> Result<Vec<Job>> {
    // One folder per example, emptied each time: reruns leave nothing more behind.
    let dir = std::env::temp_dir().join(format!("gpuimg-doctest-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::invalid("doctest", e.to_string()))?;
    let mut jobs = Vec::new();
    for (i, (w, h)) in [(24u32, 16u32), (17, 9)].into_iter().enumerate() {
        let px = (0..w * h * 3).map(|k| ((k * 37 + i as u32 * 11) % 256) as u8).collect();
        let input = dir.join(format!("in{i}.png"));
        image_io::save(&Image::new(w, h, 3, crate::tensor::Samples::U8(px))?, &input)?;
        jobs.push(Job { input, output: dir.join(format!("out{i}.{ext}")) });
    }
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"not an image").map_err(|e| Error::invalid("doctest", e.to_string()))?;
    jobs.push(Job { input: broken, output: dir.join(format!("broken.{ext}")) });
    Ok(jobs)
}

/// Runs `op` over `jobs` on `backend`. Never stops at a bad input: each
/// failure goes to the observer and into the report.
///
/// ```
/// use gpuimg::models::TinyPssr;
/// use gpuimg::ops::SuperResolveOp;
/// use gpuimg::stream::{run_batch, Silent, StreamConfig};
/// use gpuimg::Backend;
/// // Two small PNGs and a file that is not an image, each with its output path.
/// let jobs = gpuimg::stream::doctest_jobs("run_batch", "png")?;
/// let op = SuperResolveOp::new(TinyPssr::bundled(2)?);
/// let report = run_batch(&Backend::Cpu, &op, &jobs, &StreamConfig::new(), &Silent);
/// // The bad file is reported, the others written.
/// assert_eq!((report.images, report.failed), (2, 1));
/// assert!(report.failures[0].0.ends_with("broken.png"));
/// assert_eq!(gpuimg::image_io::load(&jobs[0].output)?.width, 48);
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub fn run_batch(
    backend: &Backend,
    op: &dyn StreamOp,
    jobs: &[Job],
    cfg: &StreamConfig,
    observer: &dyn Observer,
) -> Report {
    let cfg = StreamConfig {
        load_threads: cfg.load_threads.max(1),
        proc_threads: cfg.proc_threads.max(1),
        save_threads: cfg.save_threads.max(1),
        slots: cfg.slots.max(1),
        batch_pixels: cfg.batch_pixels,
        max_batch: cfg.max_batch.max(1),
        overwrite: cfg.overwrite,
        band_bytes: cfg.band_bytes,
        band_rows: cfg.band_rows,
        cancel: cfg.cancel.clone(),
    };
    let cancelled = || cfg.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
    let overwrite = cfg.overwrite;
    let started_jobs = AtomicUsize::new(0);
    let shared = Shared {
        jobs,
        observer,
        failures: Mutex::new(Vec::new()),
        failed_inputs: Mutex::new(HashSet::new()),
        done: AtomicUsize::new(0),
        written: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        banded: AtomicUsize::new(0),
        in_memory: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        decode_ns: AtomicU64::new(0),
        encode_ns: AtomicU64::new(0),
        own_ns: AtomicU64::new(0),
        started: Instant::now(),
    };
    let pool = match backend {
        Backend::Cpu => rayon::ThreadPoolBuilder::new().num_threads(cfg.proc_threads).build().ok(),
        Backend::Gpu(_) => None,
    };
    let next = AtomicUsize::new(0);
    let (dec_tx, dec_rx) = mpsc::sync_channel::<Item>(cfg.decode_queue());
    let (save_tx, save_rx) = mpsc::sync_channel::<(Item, Image)>(cfg.save_queue());
    let save_rx = Mutex::new(save_rx);
    let mut stages = Stages::default();
    let mut gpu_busy = None;
    let mut submissions = 0;
    let mut grouped = 0;
    let mut cpu_fallbacks = 0;
    std::thread::scope(|scope| {
        for _ in 0..cfg.load_threads {
            let tx = dec_tx.clone();
            let (shared, next, cancelled, started_jobs, cfg, pool) =
                (&shared, &next, &cancelled, &started_jobs, &cfg, pool.as_ref());
            scope.spawn(move || loop {
                if cancelled() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= jobs.len() {
                    break;
                }
                started_jobs.fetch_add(1, Ordering::SeqCst);
                if shared.input_failed(i) {
                    shared.fail(i, &"failed");
                    continue;
                }
                if let Some(r) = bands::try_run(op, i, cfg, backend, pool, shared) {
                    shared.banded.fetch_add(1, Ordering::SeqCst);
                    shared.settle(i, r);
                    continue;
                }
                let t = Instant::now();
                let r = op.load(i, &jobs[i].input).and_then(|(img, meta)| {
                    let c = img.channels;
                    let p = op.prepare(img)?;
                    op.check(&p)?;
                    Ok((c, p, meta))
                });
                shared.decode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
                match r {
                    Ok((channels, img, meta)) => {
                        shared.hold();
                        if tx.send(Item { job: i, channels, img, meta }).is_err() {
                            break;
                        }
                    }
                    Err(e) => shared.fail(i, &e),
                }
            });
        }
        drop(dec_tx);
        for _ in 0..cfg.save_threads {
            let (shared, rx) = (&shared, &save_rx);
            scope.spawn(move || loop {
                let got = rx.lock().expect("save queue poisoned").recv();
                let Ok((item, out)) = got else { break };
                let t = Instant::now();
                let r = op
                    .finish(item.channels, &item.img, out)
                    .and_then(|y| op.save(item.job, &y, &item.meta, &jobs[item.job].output, overwrite));
                shared.encode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
                drop(item.img);
                shared.release();
                shared.settle(item.job, r);
            });
        }
        match backend {
            Backend::Cpu => {
                let (mut cpu_ns, mut input_ns) = (0u64, 0u64);
                loop {
                    let t = Instant::now();
                    let Ok(item) = dec_rx.recv() else { break };
                    input_ns += nanos(t.elapsed());
                    let t = Instant::now();
                    let r = match &pool {
                        Some(p) => p.install(|| op.cpu(item.job, &item.img)),
                        None => op.cpu(item.job, &item.img),
                    };
                    cpu_ns += nanos(t.elapsed());
                    shared.deliver(item, r, &save_tx);
                }
                stages.cpu_s = cpu_ns as f64 * 1e-9;
                stages.input_wait_s = input_ns as f64 * 1e-9;
            }
            Backend::Gpu(gpu) => {
                let mut ring = Ring::new(gpu, &cfg);
                ring.run(op, &dec_rx, &save_tx, &shared);
                stages.upload_s = ring.upload_ns as f64 * 1e-9;
                stages.record_s = ring.record_ns as f64 * 1e-9;
                stages.submit_s = ring.submit_ns as f64 * 1e-9;
                stages.input_wait_s = ring.input_ns as f64 * 1e-9;
                stages.gpu_s = ring.wait_ns as f64 * 1e-9;
                stages.readback_s = ring.readback_ns as f64 * 1e-9;
                gpu_busy = ring.busy_s();
                submissions = ring.submissions;
                grouped = ring.grouped;
                cpu_fallbacks = ring.cpu_fallbacks;
            }
        }
        drop(save_tx);
    });
    stages.decode_s = shared.decode_ns.load(Ordering::SeqCst) as f64 * 1e-9;
    stages.encode_s = shared.encode_ns.load(Ordering::SeqCst) as f64 * 1e-9;
    stages.own_s = shared.own_ns.load(Ordering::SeqCst) as f64 * 1e-9;
    let mut failures = shared.failures.into_inner().expect("failures poisoned");
    failures.sort_by_key(|f| f.0);
    Report {
        images: shared.written.load(Ordering::SeqCst),
        failed: failures.len(),
        failures: failures.into_iter().map(|(i, m)| (jobs[i].input.clone(), m)).collect(),
        interrupted: started_jobs.load(Ordering::SeqCst) < jobs.len(),
        not_run: jobs.len() - started_jobs.load(Ordering::SeqCst).min(jobs.len()),
        wall_s: shared.started.elapsed().as_secs_f64(),
        stages,
        gpu_busy_s: gpu_busy,
        adapter: match backend {
            Backend::Cpu => "cpu".into(),
            Backend::Gpu(g) => g.adapter_info().name.clone(),
        },
        slots: cfg.slots,
        threads: [cfg.load_threads, cfg.proc_threads, cfg.save_threads],
        submissions,
        grouped,
        cpu_fallbacks,
        skipped: shared.skipped.load(Ordering::SeqCst),
        peak_in_memory: shared.peak.load(Ordering::SeqCst),
        tasks_per_rank: Vec::new(),
        tiles: 0,
        banded: shared.banded.load(Ordering::SeqCst),
    }
}
