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

/// Runs a planned batch across the ranks: the master hands out the jobs and
/// returns the one report of the run; a worker runs what it is handed
/// (`before` sees each job as a batch of one first) and returns `None`.
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
        use gpuimg::cluster::Outcome;
        use gpuimg::stream::{Observer, Report};
        if c.rank() == 0 {
            let started = std::time::Instant::now();
            let mut done = 0;
            // Each failed input once, as one process reports it.
            let mut failed = std::collections::HashSet::new();
            let collected = c.master(jobs.len(), cancel, |o| {
                done += 1;
                for f in &o.failures {
                    if failed.insert(&jobs[o.job].input) {
                        bar.failed(&jobs[o.job].input, f);
                    }
                }
                bar.progress(done, jobs.len(), started.elapsed());
            })?;
            let o = &collected.outcomes;
            let mut adapters: Vec<&str> = o.iter().map(|o| o.adapter.as_str()).collect();
            adapters.sort();
            adapters.dedup();
            let failures = collected.failures(|j| jobs[j].input.clone());
            let stopped = o.iter().filter(|o| o.interrupted).count();
            return Ok(Some(Report {
                images: o.iter().map(|o| o.images).sum(),
                failed: failures.len(),
                failures,
                wall_s: started.elapsed().as_secs_f64(),
                // Busy time summed over several GPUs is no utilisation of one.
                gpu_busy_s: None,
                adapter: adapters.join(", "),
                slots: cfg.slots,
                threads: [cfg.load_threads, cfg.proc_threads, cfg.save_threads],
                skipped: o.iter().map(|o| o.skipped).sum(),
                interrupted: collected.not_run + stopped > 0,
                not_run: collected.not_run + stopped,
                jobs_per_rank: collected.per_rank,
                ..Report::default()
            }));
        }
        let quiet = gpuimg::stream::Silent;
        c.worker(|i| {
            let one = &jobs[i..i + 1];
            let outcome = |images, skipped, failures, interrupted, adapter| Outcome {
                job: i,
                images,
                skipped,
                failures,
                gpu_busy_s: None,
                interrupted,
                adapter,
            };
            let adapter = || match backend {
                Backend::Cpu => "cpu".to_string(),
                Backend::Gpu(g) => g.adapter_info().name.clone(),
            };
            if let Err(e) = before(one) {
                return outcome(0, 0, vec![format!("{e:#}")], false, adapter());
            }
            let r = gpuimg::stream::run_batch(backend, op, one, cfg, &quiet);
            let failures = r.failures.into_iter().map(|(_, m)| m).collect();
            Outcome { gpu_busy_s: r.gpu_busy_s, ..outcome(r.images, r.skipped, failures, r.interrupted, r.adapter) }
        });
        let _ = (bar as &dyn Observer, cancel);
        Ok(None)
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (backend, op, jobs, cfg, bar, before, cancel);
        match *c {}
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
