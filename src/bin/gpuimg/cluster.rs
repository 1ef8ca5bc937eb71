//! The command line's side of `mpirun -np N gpuimg ...` (the library's
//! `cluster` module has the protocol): the MPI session for the process's
//! lifetime, the ranks' agreement on the planned batch, and the master's
//! summary built from its workers' outcomes.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};

use gpuimg::stream::{Job, ProgressBar, StreamConfig, StreamOp};
use gpuimg::Backend;

#[cfg(feature = "mpi")]
pub use gpuimg::cluster::Cluster;

/// Stands in for the MPI session in a build without the `mpi` feature:
/// it has no values, so every branch that holds one is unreachable.
#[cfg(not(feature = "mpi"))]
pub enum Cluster {}

#[cfg(not(feature = "mpi"))]
impl Cluster {
    pub fn rank(&self) -> usize {
        match *self {}
    }
}

thread_local! {
    /// The MPI session of this process (main thread only), when it is one
    /// of several ranks.
    static CURRENT: RefCell<Option<Rc<Cluster>>> = const { RefCell::new(None) };
}

/// Starts MPI when an MPI launcher started this process as one of several
/// ranks; in a build without the `mpi` feature such a launch is refused.
pub fn start() -> Result<()> {
    #[cfg(feature = "mpi")]
    if let Some(c) = Cluster::start()? {
        CURRENT.with(|x| *x.borrow_mut() = Some(Rc::new(c)));
    }
    #[cfg(not(feature = "mpi"))]
    gpuimg::cluster::refuse_without_mpi()?;
    Ok(())
}

/// Ends the MPI session (MPI_Finalize), if there is one.
pub fn finish() {
    CURRENT.with(|x| x.borrow_mut().take());
}

/// The MPI session, when this process is one of several ranks.
pub fn current() -> Option<Rc<Cluster>> {
    CURRENT.with(|x| x.borrow().clone())
}

/// The ranks' agreement on a planned batch: every rank planned without an
/// error and found the same number of jobs, or every rank stops (the one
/// that failed with its own error). Without a cluster, `planned` as it is.
pub fn agree<T>(
    cluster: Option<&Cluster>,
    planned: Result<Option<T>>,
    jobs: impl Fn(&T) -> usize,
) -> Result<Option<T>> {
    let Some(c) = cluster else { return planned };
    #[cfg(feature = "mpi")]
    {
        let n = match &planned {
            Ok(Some(t)) => jobs(t) as u64,
            _ => 0,
        };
        let (all_ok, same) = c.agree(planned.is_ok(), n);
        let planned = planned?;
        if !all_ok {
            bail!("rank {}: another rank could not plan the batch (its error is above)", c.rank());
        }
        if !same {
            bail!(
                "rank {}: the ranks planned different batches ({n} jobs here): do they see the same files?",
                c.rank()
            );
        }
        Ok(planned)
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (planned, jobs);
        match *c {}
    }
}

/// Runs a planned batch across the ranks: the master hands out the tasks
/// and returns the one report of the run; a worker runs what it is handed
/// and returns `None`. A batch of several files goes out file by file
/// (`before` sees each job as a batch of one on its worker); one image of
/// an op that tiles (sr) goes out as seed-001 tiles, one per worker (more
/// where the op's memory needs them), which the master merges and writes.
#[allow(clippy::too_many_arguments)]
pub fn run(
    c: &Cluster,
    backend: &Backend,
    op: &dyn StreamOp,
    jobs: &[Job],
    cfg: &StreamConfig,
    bar: &ProgressBar,
    before: &dyn Fn(&[Job]) -> Result<()>,
    cancel: &AtomicBool,
) -> Result<Option<gpuimg::stream::Report>> {
    #[cfg(feature = "mpi")]
    {
        if c.rank() == 0 {
            let started = std::time::Instant::now();
            let report = match jobs {
                [job] => with_mpi::tiles(c, op, job, cfg, bar, cancel)?,
                _ => None,
            };
            let mut report = match report {
                Some(r) => r,
                None => with_mpi::files(c, jobs, bar, cancel)?,
            };
            report.wall_s = started.elapsed().as_secs_f64();
            report.slots = cfg.slots;
            report.threads = [cfg.load_threads, cfg.proc_threads, cfg.save_threads];
            return Ok(Some(report));
        }
        with_mpi::worker(c, backend, op, jobs, cfg, before);
        Ok(None)
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (backend, op, jobs, cfg, bar, before, cancel);
        match *c {}
    }
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use anyhow::Result;
    use gpuimg::cluster::{self, Cluster, Collected, Done, Master, Outcome, Task};
    use gpuimg::stream::{Job, Observer, ProgressBar, Report, StreamConfig, StreamOp};

    use gpuimg::tiling::{Merge, Split};
    use gpuimg::{Backend, Error};

    /// The master of a batch of files: job `i` to whoever asks next.
    struct Files<'a> {
        jobs: &'a [Job],
        next: usize,
        cancel: &'a AtomicBool,
        collected: Collected,
        failed: HashSet<PathBuf>,
        bar: &'a ProgressBar,
        started: Instant,
    }

    impl<'a> Files<'a> {
        fn new(jobs: &'a [Job], bar: &'a ProgressBar, cancel: &'a AtomicBool) -> Self {
            let (collected, failed, started) = (Collected::default(), HashSet::new(), Instant::now());
            Files { jobs, next: 0, cancel, collected, failed, bar, started }
        }
    }

    impl Master for Files<'_> {
        fn next(&mut self) -> Option<Task> {
            if self.next >= self.jobs.len() || self.cancel.load(Ordering::SeqCst) {
                return None;
            }
            self.next += 1;
            Some(Task::Job(self.next - 1))
        }
        fn done(&mut self, rank: usize, done: Done) -> gpuimg::Result<()> {
            let Done::Job(o) = done else {
                return Err(Error::invalid("mpirun", format!("rank {rank} sent a tile for a batch of files")));
            };
            let input = self.jobs.get(o.job).map(|j| &j.input).ok_or_else(|| {
                Error::invalid("mpirun", format!("rank {rank} reported job {} of {}", o.job, self.jobs.len()))
            })?;
            // Each failed input once, as one process reports it.
            for f in &o.failures {
                if self.failed.insert(input.clone()) {
                    self.bar.failed(input, f);
                }
            }
            self.collected.outcomes.push(o);
            self.bar.progress(self.collected.outcomes.len(), self.jobs.len(), self.started.elapsed());
            Ok(())
        }
    }

    /// The master's side of a batch of files.
    pub fn files(c: &Cluster, jobs: &[Job], bar: &ProgressBar, cancel: &AtomicBool) -> Result<Report> {
        let mut m = Files::new(jobs, bar, cancel);
        let per_rank = c.master(&mut m)?;
        let o = &m.collected.outcomes;
        let mut adapters: Vec<&str> = o.iter().map(|o| o.adapter.as_str()).collect();
        adapters.sort();
        adapters.dedup();
        let failures = m.collected.failures(|j| jobs[j].input.clone());
        let not_run = jobs.len() - m.next + o.iter().filter(|o| o.interrupted).count();
        Ok(Report {
            images: o.iter().map(|o| o.images).sum(),
            failed: failures.len(),
            failures,
            // Busy time summed over several GPUs is no utilisation of one.
            gpu_busy_s: None,
            adapter: adapters.join(", "),
            skipped: o.iter().map(|o| o.skipped).sum(),
            interrupted: not_run > 0,
            not_run,
            tasks_per_rank: per_rank,
            ..Report::default()
        })
    }

    /// The master of one image in tiles: crops each tile with its halo when
    /// a worker asks, and pastes the results as they come back.
    struct Tiles<'a> {
        img: &'a gpuimg::image_io::Image,
        split: &'a Split,
        merge: Merge,
        next: usize,
        cancel: &'a AtomicBool,
        error: Option<String>,
    }

    impl Tiles<'_> {
        fn grown(&self, i: usize) -> gpuimg::tiling::Tile {
            self.split.tiles[i].with_halo(self.split.halo, self.img.width as usize, self.img.height as usize)
        }
    }

    impl Master for Tiles<'_> {
        fn next(&mut self) -> Option<Task> {
            if self.error.is_some() || self.next >= self.split.tiles.len() || self.cancel.load(Ordering::SeqCst) {
                return None;
            }
            let i = self.next;
            self.next += 1;
            match gpuimg::tiling::crop(self.img, self.grown(i)) {
                Ok(t) => Some(Task::Tile(cluster::encode_image(i, &t))),
                Err(e) => {
                    self.error = Some(e.to_string());
                    None
                }
            }
        }
        fn done(&mut self, rank: usize, done: Done) -> gpuimg::Result<()> {
            let Done::Tile(bytes) = done else {
                return Err(Error::invalid("mpirun", format!("rank {rank} sent a job's outcome for a tile")));
            };
            let (i, r) = cluster::decode_tile_result(&bytes)?;
            if i >= self.split.tiles.len() {
                return Err(Error::invalid(
                    "mpirun",
                    format!("rank {rank} sent tile {i} of {}", self.split.tiles.len()),
                ));
            }
            let r = r.map_err(|e| format!("tile {i} on rank {rank}: {e}"));
            let pasted = r.and_then(|y| {
                let (t, g) = (self.split.tiles[i], self.grown(i));
                self.merge.paste(t, g, &y).map_err(|e| format!("tile {i} from rank {rank}: {e}"))
            });
            if let Err(e) = pasted {
                self.error.get_or_insert(e);
            }
            Ok(())
        }
        fn ahead(&self) -> usize {
            // Each worker's next tile travels while it runs the last.
            2
        }
    }

    /// The master's side of one image split across the ranks: `None` when
    /// the op does not tile (the image then goes to one worker as a file).
    pub fn tiles(
        c: &Cluster,
        op: &dyn StreamOp,
        job: &Job,
        cfg: &StreamConfig,
        bar: &ProgressBar,
        cancel: &AtomicBool,
    ) -> Result<Option<Report>> {
        let mut report = Report { adapter: "tiles on the worker ranks".into(), ..Report::default() };
        let fail = |mut report: Report, e: String| {
            bar.failed(&job.input, &e);
            report.failed = 1;
            report.failures = vec![(job.input.clone(), e)];
            report
        };
        let loaded = op.load(0, &job.input).and_then(|(img, meta)| {
            let channels = img.channels;
            let img = op.prepare(img)?;
            op.check(&img)?;
            let split = op.split(&img, c.size() - 1)?;
            let merge = split.as_ref().map(|s| Merge::new(&img, s.scale)).transpose()?;
            Ok((img, meta, channels, split.zip(merge)))
        });
        let (img, meta, channels, (split, merge)) = match loaded {
            Ok((img, meta, channels, Some(sm))) => (img, meta, channels, sm),
            Ok((_, _, _, None)) => return Ok(None),
            Err(e) => {
                // Nothing to hand out: stop the workers, report the input.
                c.master(&mut Files::new(&[], bar, cancel))?;
                return Ok(Some(fail(report, e.to_string())));
            }
        };
        report.tiles = split.tiles.len();
        let mut m = Tiles { img: &img, split: &split, merge, next: 0, cancel, error: None };
        report.tasks_per_rank = c.master(&mut m)?;
        if let Some(e) = m.error {
            return Ok(Some(fail(report, e)));
        }
        if m.merge.pasted() < split.tiles.len() {
            report.interrupted = true;
            report.not_run = 1;
            return Ok(Some(report));
        }
        let saved = op
            .finish(channels, &img, m.merge.into_image())
            .and_then(|out| op.save(0, &out, &meta, &job.output, cfg.overwrite));
        match saved {
            Ok(()) => report.images = 1,
            Err(Error::Exists { path }) => {
                bar.skipped(&path, &Error::Exists { path: path.clone() }.to_string());
                report.skipped = 1;
            }
            Err(e) => report = fail(report, e.to_string()),
        }
        Ok(Some(report))
    }

    /// A worker rank: runs the jobs and tiles the master hands it.
    pub fn worker(
        c: &Cluster,
        backend: &Backend,
        op: &dyn StreamOp,
        jobs: &[Job],
        cfg: &StreamConfig,
        before: &dyn Fn(&[Job]) -> Result<()>,
    ) {
        let adapter = || match backend {
            Backend::Cpu => "cpu".to_string(),
            Backend::Gpu(g) => g.adapter_info().name.clone(),
        };
        c.worker(|task| match task {
            Task::Job(i) => {
                let Some(one) = jobs.get(i..i + 1) else {
                    let why = format!("job {i} of {} (the ranks planned different batches)", jobs.len());
                    return Done::Job(Outcome {
                        job: i,
                        images: 0,
                        skipped: 0,
                        failures: vec![why],
                        gpu_busy_s: None,
                        interrupted: false,
                        adapter: adapter(),
                    });
                };
                let r = match before(one) {
                    Ok(()) => gpuimg::stream::run_batch(backend, op, one, cfg, &gpuimg::stream::Silent),
                    Err(e) => Report { failures: vec![(one[0].input.clone(), format!("{e:#}"))], ..Report::default() },
                };
                Done::Job(Outcome {
                    job: i,
                    images: r.images,
                    skipped: r.skipped,
                    failures: r.failures.into_iter().map(|(_, m)| m).collect(),
                    gpu_busy_s: r.gpu_busy_s,
                    interrupted: r.interrupted,
                    adapter: adapter(),
                })
            }
            Task::Tile(bytes) => {
                let r = cluster::decode_image(&bytes).and_then(|(i, tile)| {
                    op.check(&tile)?;
                    let y = match backend {
                        Backend::Cpu => op.cpu(0, &tile),
                        Backend::Gpu(g) => op.gpu(0, g, &tile),
                    };
                    Ok((i, y))
                });
                Done::Tile(match r {
                    Ok((i, y)) => cluster::encode_tile_result(i, &y),
                    Err(e) => cluster::encode_tile_result(u32::MAX as usize, &Err(e)),
                })
            }
        });
    }
}

/// Refuses a command that does not run under `mpirun` (only the batch
/// image commands do).
pub fn refuse_for(command: &str) -> Result<()> {
    if current().is_some() {
        bail!(
            "gpuimg {command} runs as one process; under mpirun only resize, sr, enhance, compress, decompress and augment do"
        );
    }
    Ok(())
}
