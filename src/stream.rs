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
use crate::kernels::unpack_pixels::PixelLayout;
use crate::tensor::Samples;

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
    /// samples are in `src`. Returns the recording and the output layout, or
    /// `None` when the image must take the blocking path (too large for one
    /// pass; the default, for ops that have no recorded form).
    fn record(
        &self,
        job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        let _ = (job, gpu, enc, img, src);
        Ok(None)
    }
    /// Records the op for several images of one layout at once: `src` holds
    /// their packed samples back to back, and the result is their outputs
    /// back to back, with one dispatch per kernel for the whole group (the
    /// returned layout has `n` = the number of images). `None` (the default):
    /// not supported, each image is recorded alone.
    fn record_group(
        &self,
        jobs: &[usize],
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        imgs: &[&Image],
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        let _ = (jobs, gpu, enc, imgs, src);
        Ok(None)
    }
    /// True when [`StreamOp::record_group`] records groups: the engine then
    /// uploads runs of small images of one layout as one buffer (and only then).
    fn groups(&self) -> bool {
        false
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

/// Wall time spent in each stage, summed over the threads doing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stages {
    /// Reading and decoding files (load threads).
    pub decode_s: f64,
    /// Writing input bytes into upload buffers (submit thread).
    pub upload_s: f64,
    /// Recording commands (submit thread).
    pub record_s: f64,
    /// Submitting recorded commands (submit thread; some drivers do work here).
    pub submit_s: f64,
    /// Waiting for the GPU (submit thread), the blocking path included.
    pub gpu_s: f64,
    /// The op on the CPU path (proc pool).
    pub cpu_s: f64,
    /// Copying mapped readbacks out (submit thread).
    pub readback_s: f64,
    /// Finishing, encoding and writing outputs (save threads).
    pub encode_s: f64,
    /// The submit thread (or CPU op) waiting for decoded inputs: the GPU
    /// side was starved for this long.
    pub input_wait_s: f64,
}

/// What a run did and how long it took.
#[derive(Debug, Clone)]
pub struct Report {
    /// Images written.
    pub images: usize,
    /// Inputs that failed (each also in `failures`).
    pub failed: usize,
    /// The failed inputs and why.
    pub failures: Vec<(PathBuf, String)>,
    /// Wall time of the whole run.
    pub wall_s: f64,
    /// Per-stage wall times.
    pub stages: Stages,
    /// GPU busy time from timestamp queries (`None` without them or on the CPU).
    pub gpu_busy_s: Option<f64>,
    /// Where the run went: the adapter's name or `cpu`.
    pub adapter: String,
    /// Ring depth.
    pub slots: usize,
    /// Load, proc and save threads.
    pub threads: [usize; 3],
    /// Submissions made (fewer than images when small ones were batched).
    pub submissions: usize,
    /// Images that shared their dispatches with others of the same layout.
    pub grouped: usize,
    /// Images over the GPU's limits that the op could not split, run on the
    /// CPU path instead.
    pub cpu_fallbacks: usize,
    /// Outputs left alone because they existed (found before the run by the
    /// caller, or at the moment of writing by the engine).
    pub skipped: usize,
    /// The run was stopped (SIGINT/SIGTERM) before every job ran.
    pub interrupted: bool,
    /// Jobs that never started because the run was stopped.
    pub not_run: usize,
    /// Most decoded images held at once.
    pub peak_in_memory: usize,
}

impl Report {
    /// GPU busy time over wall time.
    pub fn gpu_utilization(&self) -> Option<f64> {
        self.gpu_busy_s.map(|b| if self.wall_s > 0.0 { b / self.wall_s } else { 0.0 })
    }

    /// Images per second.
    pub fn throughput(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.images as f64 / self.wall_s
        } else {
            0.0
        }
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        let s = &self.stages;
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_else(|| "null".into());
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(p, m)| format!("{{\"input\": {}, \"error\": {}}}", json_str(&p.display().to_string()), json_str(m)))
            .collect();
        format!(
            "{{\n  \"images\": {},\n  \"failed\": {},\n  \"skipped\": {},\n  \"wall_s\": {:.6},\n  \"images_per_s\": {:.3},\n  \"stages\": {{\"decode_s\": {:.6}, \"upload_s\": {:.6}, \"record_s\": {:.6}, \"submit_s\": {:.6}, \"gpu_s\": {:.6}, \"cpu_s\": {:.6}, \"readback_s\": {:.6}, \"encode_s\": {:.6}, \"input_wait_s\": {:.6}}},\n  \"gpu_busy_s\": {},\n  \"gpu_utilization\": {},\n  \"adapter\": {},\n  \"slots\": {},\n  \"threads\": {{\"load\": {}, \"proc\": {}, \"save\": {}}},\n  \"submissions\": {},\n  \"grouped\": {},\n  \"cpu_fallbacks\": {},\n  \"peak_in_memory\": {},\n  \"interrupted\": {},\n  \"not_run\": {},\n  \"failures\": [{}]\n}}\n",
            self.images,
            self.failed,
            self.skipped,
            self.wall_s,
            self.throughput(),
            s.decode_s,
            s.upload_s,
            s.record_s,
            s.submit_s,
            s.gpu_s,
            s.cpu_s,
            s.readback_s,
            s.encode_s,
            s.input_wait_s,
            opt(self.gpu_busy_s),
            opt(self.gpu_utilization()),
            json_str(&self.adapter),
            self.slots,
            self.threads[0],
            self.threads[1],
            self.threads[2],
            self.submissions,
            self.grouped,
            self.cpu_fallbacks,
            self.peak_in_memory,
            self.interrupted,
            self.not_run,
            failures.join(", ")
        )
    }
}

/// Stores `value` as job `job`'s entry of a per-job table, growing it.
pub(crate) fn set_job<T: Clone + Default>(table: &mut Vec<T>, job: usize, value: T) {
    if table.len() <= job {
        table.resize(job + 1, T::default());
    }
    table[job] = value;
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    in_memory: AtomicUsize,
    peak: AtomicUsize,
    decode_ns: AtomicU64,
    encode_ns: AtomicU64,
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

/// Runs `op` over `jobs` on `backend`. Never stops at a bad input: each
/// failure goes to the observer and into the report.
pub fn run(backend: &Backend, op: &dyn StreamOp, jobs: &[Job], cfg: &StreamConfig, observer: &dyn Observer) -> Report {
    let cfg = StreamConfig {
        load_threads: cfg.load_threads.max(1),
        proc_threads: cfg.proc_threads.max(1),
        save_threads: cfg.save_threads.max(1),
        slots: cfg.slots.max(1),
        batch_pixels: cfg.batch_pixels,
        max_batch: cfg.max_batch.max(1),
        overwrite: cfg.overwrite,
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
        in_memory: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        decode_ns: AtomicU64::new(0),
        encode_ns: AtomicU64::new(0),
        started: Instant::now(),
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
            let (shared, next, cancelled, started_jobs) = (&shared, &next, &cancelled, &started_jobs);
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
                match r {
                    Ok(()) => {
                        shared.written.fetch_add(1, Ordering::SeqCst);
                        shared.finish_one();
                    }
                    Err(e @ Error::Exists { .. }) => {
                        // Another process wrote this output after the run was planned.
                        shared.skipped.fetch_add(1, Ordering::SeqCst);
                        shared.observer.skipped(&jobs[item.job].output, &e.to_string());
                        shared.finish_one();
                    }
                    Err(e) => shared.fail(item.job, &e),
                }
            });
        }
        match backend {
            Backend::Cpu => {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.proc_threads).build();
                let (mut cpu_ns, mut input_ns) = (0u64, 0u64);
                loop {
                    let t = Instant::now();
                    let Ok(item) = dec_rx.recv() else { break };
                    input_ns += nanos(t.elapsed());
                    let t = Instant::now();
                    let r = match &pool {
                        Ok(p) => p.install(|| op.cpu(item.job, &item.img)),
                        Err(_) => op.cpu(item.job, &item.img),
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
    }
}

/// One image of a slot's submission. Images recorded as a group share one
/// recording, held by the group's first entry.
struct Entry {
    item: Item,
    rec: Option<Recorded>,
    layout: PixelLayout,
    offset: u64,
}

/// A slot's work in flight.
struct Flight {
    entries: Vec<Entry>,
    index: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    len: u64,
    timestamps: Option<u64>,
}

/// A ring slot: persistent upload buffers, a readback buffer, a query set.
#[derive(Default)]
struct Slot {
    uploads: Vec<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    flight: Option<Flight>,
}

const READBACK: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

struct Ring<'g> {
    gpu: &'g Gpu,
    slots: Vec<Slot>,
    cfg: StreamConfig,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    period_ns: f64,
    intervals: Vec<(u64, u64)>,
    upload_ns: u64,
    record_ns: u64,
    submit_ns: u64,
    input_ns: u64,
    grouped: usize,
    cpu_fallbacks: usize,
    wait_ns: u64,
    readback_ns: u64,
    submissions: usize,
}

impl<'g> Ring<'g> {
    fn new(gpu: &'g Gpu, cfg: &StreamConfig) -> Self {
        let queries = gpu.has_timestamps().then(|| {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpuimg.stream.timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuimg.stream.resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        Ring {
            gpu,
            slots: (0..cfg.slots).map(|_| Slot::default()).collect(),
            cfg: cfg.clone(),
            queries,
            period_ns: gpu.queue().get_timestamp_period() as f64,
            intervals: Vec::new(),
            upload_ns: 0,
            record_ns: 0,
            submit_ns: 0,
            input_ns: 0,
            grouped: 0,
            cpu_fallbacks: 0,
            wait_ns: 0,
            readback_ns: 0,
            submissions: 0,
        }
    }

    fn small(&self, img: &Image) -> bool {
        img.width as usize * img.height as usize <= self.cfg.batch_pixels
    }

    fn run(
        &mut self,
        op: &dyn StreamOp,
        rx: &mpsc::Receiver<Item>,
        save: &mpsc::SyncSender<(Item, Image)>,
        shared: &Shared<'_>,
    ) {
        let mut turn = 0;
        let mut pending: Option<Item> = None;
        loop {
            let first = match pending.take() {
                Some(i) => i,
                None => {
                    let t = Instant::now();
                    let r = rx.recv();
                    self.input_ns += nanos(t.elapsed());
                    match r {
                        Ok(i) => i,
                        Err(_) => break,
                    }
                }
            };
            // Gather small images that are ready now into one submission.
            let mut batch = vec![first];
            if self.small(&batch[0].img) {
                let mut pixels = 0usize;
                while batch.len() < self.cfg.max_batch {
                    pixels += batch.last().map(|i| i.img.width as usize * i.img.height as usize).unwrap_or(0);
                    match rx.try_recv() {
                        Ok(i) if self.small(&i.img) && pixels < self.cfg.batch_pixels * self.cfg.max_batch => {
                            batch.push(i)
                        }
                        Ok(i) => {
                            pending = Some(i);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let slot = turn % self.slots.len();
            turn += 1;
            self.complete(slot, save, shared);
            self.submit(slot, batch, op, save, shared);
            // Let finished maps call back without blocking.
            let _ = self.gpu.device().poll(wgpu::PollType::Poll);
        }
        for k in 0..self.slots.len() {
            self.complete((turn + k) % self.slots.len(), save, shared);
        }
    }

    /// Records and submits one batch into `slot` (whose last flight is complete).
    fn submit(
        &mut self,
        slot: usize,
        batch: Vec<Item>,
        op: &dyn StreamOp,
        save: &mpsc::SyncSender<(Item, Image)>,
        shared: &Shared<'_>,
    ) {
        let gpu = self.gpu;
        let device = gpu.device();
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.stream") });
        if let Some((set, _)) = &self.queries {
            stamp(&mut enc, set, 0);
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut offset = 0u64;
        let mut blocking = Vec::new();
        let mut uploads = 0usize;
        // Runs of images with one layout go up as one buffer and, where the op
        // can, through one dispatch per kernel.
        let mut rest = batch.into_iter().peekable();
        while let Some(first) = rest.next() {
            let key = first.img.layout();
            let mut group = vec![first];
            while rest.peek().is_some_and(|i| i.img.layout() == key) {
                group.push(rest.next().expect("peeked"));
            }
            // Only ops that can record groups get them uploaded as one buffer
            // (the others would upload each image twice).
            if group.len() > 1 && op.groups() {
                let t = Instant::now();
                let mut bytes = Vec::with_capacity(group.iter().map(|i| i.img.layout().bytes() as usize).sum());
                for i in &group {
                    bytes.extend_from_slice(&i.img.samples.le_bytes());
                }
                let src = self.upload_buffer(slot, uploads, bytes.len() as u64);
                uploads += 1;
                write_padded(gpu, &src, &bytes);
                let t1 = Instant::now();
                self.upload_ns += nanos(t1 - t);
                let jobs: Vec<usize> = group.iter().map(|i| i.job).collect();
                let imgs: Vec<&Image> = group.iter().map(|i| &i.img).collect();
                let r = op.record_group(&jobs, gpu, &mut enc, &imgs, &src);
                self.record_ns += nanos(t1.elapsed());
                match r {
                    Ok(Some((rec, l))) => {
                        let one = PixelLayout { n: 1, ..l };
                        let len = rec.out_bytes.max(4).next_multiple_of(4);
                        let mut rec = Some(rec);
                        for (i, item) in group.into_iter().enumerate() {
                            entries.push(Entry {
                                item,
                                rec: rec.take(),
                                layout: one,
                                offset: offset + i as u64 * one.bytes(),
                            });
                        }
                        self.grouped += l.n;
                        offset += len.next_multiple_of(8);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        for item in group {
                            shared.release();
                            shared.fail(item.job, &e);
                        }
                        continue;
                    }
                }
            }
            for item in group {
                let t = Instant::now();
                let bytes = item.img.samples.le_bytes();
                let src = self.upload_buffer(slot, uploads, bytes.len() as u64);
                uploads += 1;
                write_padded(gpu, &src, &bytes);
                drop(bytes);
                let t1 = Instant::now();
                self.upload_ns += nanos(t1 - t);
                let r = op.record(item.job, gpu, &mut enc, &item.img, &src);
                self.record_ns += nanos(t1.elapsed());
                match r {
                    Ok(Some((rec, layout))) => {
                        let len = rec.out_bytes.max(4).next_multiple_of(4);
                        entries.push(Entry { item, rec: Some(rec), layout, offset });
                        offset += len.next_multiple_of(8);
                    }
                    // Too large for one pass: the blocking path splits it (or falls back).
                    Ok(None) | Err(Error::TooLarge { .. }) => blocking.push(item),
                    Err(e) => {
                        shared.release();
                        shared.fail(item.job, &e);
                    }
                }
            }
        }
        let ts_offset = self.queries.as_ref().map(|_| offset);
        let len = offset + if ts_offset.is_some() { 16 } else { 0 };
        if !entries.is_empty() {
            let rb = &mut self.slots[slot].readback;
            if rb.as_ref().is_none_or(|b| b.size() < len) {
                *rb = Some(device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpuimg.stream.readback"),
                    size: len.next_power_of_two(),
                    usage: READBACK,
                    mapped_at_creation: false,
                }));
            }
            let rb = rb.as_ref().expect("readback buffer").clone();
            for e in &entries {
                if let Some(rec) = &e.rec {
                    enc.copy_buffer_to_buffer(&rec.out, 0, &rb, e.offset, rec.out_bytes.max(4).next_multiple_of(4));
                }
            }
            if let (Some((set, resolve)), Some(off)) = (&self.queries, ts_offset) {
                stamp(&mut enc, set, 1);
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, &rb, off, 16);
            }
            let t = Instant::now();
            let index = gpu.queue().submit([enc.finish()]);
            self.submit_ns += nanos(t.elapsed());
            self.submissions += 1;
            let t = Instant::now();
            let oom_err = pollster::block_on(oom.pop());
            let val_err = pollster::block_on(validation.pop());
            self.record_ns += nanos(t.elapsed());
            if let Some(e) = oom_err.or(val_err) {
                for en in entries {
                    shared.release();
                    shared.fail(en.item.job, &Error::Gpu { op: "stream".into(), message: e.to_string() });
                }
            } else {
                let (tx, mapped) = mpsc::channel();
                rb.map_async(wgpu::MapMode::Read, ..len, move |r| {
                    let _ = tx.send(r);
                });
                self.slots[slot].flight = Some(Flight { entries, index, mapped, len, timestamps: ts_offset });
            }
        } else {
            drop(enc);
            let _ = pollster::block_on(oom.pop());
            let _ = pollster::block_on(validation.pop());
        }
        // Images too large for one pass take the blocking (strip) path.
        for item in blocking {
            let t = Instant::now();
            let mut r = op.gpu(item.job, gpu, &item.img);
            if let Err(Error::TooLarge { .. }) = r {
                // An op with no split form for an image over the device's
                // limits: the CPU path gives the same result (within the
                // parity tolerance) instead of a failure.
                self.cpu_fallbacks += 1;
                r = op.cpu(item.job, &item.img);
            }
            self.wait_ns += nanos(t.elapsed());
            self.submissions += 1;
            shared.deliver(item, r, save);
        }
    }

    /// Waits for `slot`'s flight, if any, and hands its images to the savers.
    fn complete(&mut self, slot: usize, save: &mpsc::SyncSender<(Item, Image)>, shared: &Shared<'_>) {
        let Some(f) = self.slots[slot].flight.take() else { return };
        let t = Instant::now();
        let polled = self
            .gpu
            .device()
            .poll(wgpu::PollType::Wait { submission_index: Some(f.index.clone()), timeout: None })
            .map_err(|e| e.to_string());
        let mapped = polled.and_then(|_| match f.mapped.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        });
        let t1 = Instant::now();
        self.wait_ns += nanos(t1 - t);
        let rb = self.slots[slot].readback.clone().expect("a flight has a readback buffer");
        let view = mapped.and_then(|_| rb.get_mapped_range(..f.len).map_err(|e| e.to_string()));
        match view {
            Ok(view) => {
                if let Some(off) = f.timestamps {
                    let ts: [u64; 2] = bytemuck::pod_read_unaligned(&view[off as usize..off as usize + 16]);
                    if ts[1] > ts[0] {
                        self.intervals.push((ts[0], ts[1]));
                    }
                }
                let mut outs = Vec::with_capacity(f.entries.len());
                for e in &f.entries {
                    let l = e.layout;
                    let bytes = &view[e.offset as usize..(e.offset + l.bytes()) as usize];
                    outs.push(Image::new(
                        l.width as u32,
                        l.height as u32,
                        l.channels,
                        Samples::from_le_bytes(l.bits, bytes, l.samples()),
                    ));
                }
                drop(view);
                rb.unmap();
                self.readback_ns += nanos(t1.elapsed());
                for (e, out) in f.entries.into_iter().zip(outs) {
                    if let Some(rec) = e.rec {
                        rec.recycle(self.gpu);
                    }
                    shared.deliver(e.item, out, save);
                }
            }
            Err(msg) => {
                for e in f.entries {
                    shared.release();
                    shared.fail(e.item.job, &Error::Gpu { op: "stream readback".into(), message: msg.clone() });
                }
            }
        }
    }

    /// The slot's `k`-th persistent upload buffer, grown to at least `bytes`.
    fn upload_buffer(&mut self, slot: usize, k: usize, bytes: u64) -> wgpu::Buffer {
        let padded = bytes.max(4).next_multiple_of(4);
        let up = &mut self.slots[slot].uploads;
        if up.len() <= k || up[k].size() < padded {
            let b = self.gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuimg.stream.upload"),
                size: padded.next_power_of_two(),
                usage: Gpu::TENSOR_USAGE,
                mapped_at_creation: false,
            });
            if up.len() <= k {
                up.push(b);
            } else {
                up[k] = b;
            }
        }
        up[k].clone()
    }

    /// GPU busy time: the union of the submissions' timestamp intervals.
    fn busy_s(&self) -> Option<f64> {
        if self.queries.is_none() || self.submissions == 0 {
            return None;
        }
        let mut iv = self.intervals.clone();
        iv.sort_unstable();
        let mut total = 0u64;
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in iv {
            cur = match cur {
                Some((s, e)) if a <= e => Some((s, e.max(b))),
                Some((s, e)) => {
                    total += e - s;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((s, e)) = cur {
            total += e - s;
        }
        Some(total as f64 * self.period_ns * 1e-9)
    }
}

/// Writes a timestamp with an empty compute pass (needs only TIMESTAMP_QUERY).
fn stamp(enc: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet, index: u32) {
    let _ = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("gpuimg.stream.timestamp"),
        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: None,
        }),
    });
}

/// Writes `bytes` at the start of `buf`, the last partial word zero-padded.
fn write_padded(gpu: &Gpu, buf: &wgpu::Buffer, bytes: &[u8]) {
    let whole = bytes.len() / 4 * 4;
    if whole > 0 {
        gpu.queue().write_buffer(buf, 0, &bytes[..whole]);
    }
    if whole < bytes.len() {
        let mut tail = [0u8; 4];
        tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        gpu.queue().write_buffer(buf, whole as u64, &tail);
    }
}

/// A terminal progress bar on stderr: done/total, images/s and ETA, redrawn
/// at most every 100 ms; failures are printed above it.
pub struct ProgressBar {
    enabled: bool,
    last: Mutex<Option<Instant>>,
    label: String,
}

impl ProgressBar {
    /// A bar that draws only when `enabled` (a terminal, not `--quiet`).
    pub fn new(label: &str, enabled: bool) -> Self {
        ProgressBar { enabled, last: Mutex::new(None), label: label.to_string() }
    }

    /// The bar's text for `done` of `total` after `elapsed`.
    pub fn line(&self, done: usize, total: usize, elapsed: Duration) -> String {
        let width = 30;
        let filled = (done.min(total) * width).checked_div(total).unwrap_or(width);
        let rate = if elapsed.as_secs_f64() > 0.0 { done as f64 / elapsed.as_secs_f64() } else { 0.0 };
        let eta = if rate > 0.0 { (total - done.min(total)) as f64 / rate } else { 0.0 };
        format!(
            "{} [{}{}] {done}/{total} {rate:.1} img/s ETA {}:{:02}",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            (eta as u64) / 60,
            (eta as u64) % 60
        )
    }

    /// Clears the bar's line (before other output, and at the end).
    pub fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Observer for ProgressBar {
    fn failed(&self, input: &Path, message: &str) {
        self.clear();
        let name = input.display().to_string();
        if message.contains(&name) {
            eprintln!("gpuimg: error: {message}");
        } else {
            eprintln!("gpuimg: error: {name}: {message}");
        }
    }
    fn skipped(&self, _output: &Path, message: &str) {
        self.clear();
        eprintln!("gpuimg: {message}");
    }
    fn progress(&self, done: usize, total: usize, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().expect("progress poisoned");
        let now = Instant::now();
        if done < total && last.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        *last = Some(now);
        eprint!("\r\x1b[2K{}", self.line(done, total, elapsed));
    }
}
