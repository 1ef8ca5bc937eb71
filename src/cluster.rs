//! One command over several processes: seed 002's master and workers on MPI.
//!
//! `mpirun -np N gpuimg <command> ...` starts N copies of the same command.
//! Each plans the same batch (the inputs, each folder's files sorted, and
//! their outputs); then rank 0 is the master: it hands out the jobs one at
//! a time to whichever worker asks (dynamic load balancing: a worker on a
//! faster GPU, or with smaller files, simply asks more often), collects
//! every job's outcome, and prints and writes the one summary and report.
//! Ranks 1..N are the workers; each runs its jobs through the same batch
//! engine a single process uses, on its own adapter (picked by its local
//! rank, [`Launch::local_rank`]) or its CPU.
//!
//! The message layer (the `mpi` cargo feature, over Open MPI or MPICH) is
//! [`Cluster`]; what travels is a job's index one way and its [`Outcome`]
//! the other, so a rank never sends pixels for a file batch: inputs and
//! outputs are on a file system every rank sees.
//!
//! A build without the feature still recognises an MPI launch
//! ([`Launch::from_env`]) and refuses it, rather than letting N processes
//! each run the whole batch over the same outputs.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where this process stands in a job an MPI launcher started, read from
/// the launcher's environment (no MPI call needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank in the job.
    pub rank: usize,
    /// Processes in the job.
    pub size: usize,
    /// This process's rank among those on its node, where the launcher says.
    pub local_rank: Option<usize>,
}

impl Launch {
    /// The launch this process is part of, if an MPI launcher started it:
    /// Open MPI's `OMPI_COMM_WORLD_*`, or MPICH/Intel MPI's `PMI_RANK` and
    /// `PMI_SIZE` (with `MPI_LOCALRANKID`).
    pub fn from_env() -> Option<Launch> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Launch> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
        for (rank, size, local) in [
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
        ] {
            if let (Some(r), Some(s)) = (num(rank), num(size)) {
                if s > 0 && r < s {
                    return Some(Launch { rank: r, size: s, local_rank: num(local) });
                }
            }
        }
        None
    }

    /// The local rank of this process when it is one of several in an MPI
    /// job (used to spread ranks over a node's GPUs).
    pub fn local_rank_in_job() -> Option<usize> {
        Self::from_env().filter(|l| l.size > 1).map(|l| l.local_rank.unwrap_or(l.rank))
    }
}

/// Refuses to run as one of several ranks in a build without MPI: each rank
/// would run the whole batch and write the same outputs.
pub fn refuse_without_mpi() -> Result<()> {
    match Launch::from_env() {
        Some(l) if l.size > 1 && !cfg!(feature = "mpi") => Err(Error::invalid(
            "mpirun",
            format!(
                "started as rank {} of {} by an MPI launcher, but this gpuimg was built without the `mpi` feature \
             (cargo build --release --features mpi); run one process, or split the inputs with --shard K/N",
                l.rank, l.size
            ),
        )),
        _ => Ok(()),
    }
}

/// What became of one job on a worker: what the master needs for the
/// summary and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The job's index in the batch every rank planned.
    pub job: usize,
    /// Images written.
    pub images: usize,
    /// Outputs left alone because they existed when the worker came to write.
    pub skipped: usize,
    /// Why the job failed (one line per failure; the input is the job's).
    pub failures: Vec<String>,
    /// GPU busy seconds from timestamp queries, where the worker has them.
    pub gpu_busy_s: Option<f64>,
    /// The worker was stopped (SIGINT/SIGTERM) before it ran the job.
    pub interrupted: bool,
    /// Where the job ran: the worker's adapter name or `cpu`.
    pub adapter: String,
}

impl Outcome {
    /// The outcome as bytes: fixed-width little-endian numbers (the
    /// failures' count among them), then length-prefixed UTF-8 strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&(self.job as u64).to_le_bytes());
        b.extend_from_slice(&(self.images as u64).to_le_bytes());
        b.extend_from_slice(&(self.skipped as u64).to_le_bytes());
        b.push(u8::from(self.interrupted) | (u8::from(self.gpu_busy_s.is_some()) << 1));
        b.extend_from_slice(&self.gpu_busy_s.unwrap_or(0.0).to_le_bytes());
        b.extend_from_slice(&(self.failures.len() as u32).to_le_bytes());
        let mut text = |s: &str| {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        text(&self.adapter);
        for f in &self.failures {
            text(f);
        }
        b
    }

    /// Reads [`Outcome::encode`]'s bytes; anything else is an error naming
    /// what is wrong, never a panic.
    pub fn decode(b: &[u8]) -> Result<Outcome> {
        let bad = |why: &str| Error::invalid("cluster message", why.to_string());
        let mut rest = b;
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut u64_at = || -> Result<u64> { Ok(u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"))) };
        let (job, images, skipped) = (u64_at()?, u64_at()?, u64_at()?);
        let flags = take(1)?[0];
        if flags > 3 {
            return Err(bad("unknown flags"));
        }
        let busy = f64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        // The adapter's name, then `count` failures: each a u32 length and its bytes.
        let mut text = || -> Result<String> {
            let n = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            Ok(std::str::from_utf8(take(n)?).map_err(|_| bad("a string is not UTF-8"))?.to_string())
        };
        let adapter = text()?;
        let failures = (0..count).map(|_| text()).collect::<Result<Vec<String>>>()?;
        if !rest.is_empty() {
            return Err(bad("bytes after the last string"));
        }
        let usize_of = |v: u64| usize::try_from(v).map_err(|_| bad("count too large"));
        Ok(Outcome {
            job: usize_of(job)?,
            images: usize_of(images)?,
            skipped: usize_of(skipped)?,
            failures,
            gpu_busy_s: (flags & 2 != 0).then_some(busy),
            interrupted: flags & 1 != 0,
            adapter,
        })
    }
}

/// The master's view of a finished batch.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every job's outcome, in the order they came back.
    pub outcomes: Vec<Outcome>,
    /// Jobs never handed out because the run was stopped.
    pub not_run: usize,
    /// Workers that took part.
    pub workers: usize,
    /// Jobs each worker ran, by rank (index 0, the master, runs none).
    pub per_rank: Vec<usize>,
}

impl Collected {
    /// The failed inputs and why, in job order, each input once (as the
    /// single-process engine reports them: an input with several outputs,
    /// augment's samples, fails once).
    pub fn failures(&self, input_of: impl Fn(usize) -> PathBuf) -> Vec<(PathBuf, String)> {
        let mut v: Vec<(usize, PathBuf, String)> = self
            .outcomes
            .iter()
            .flat_map(|o| o.failures.iter().map(move |f| (o.job, f.clone())))
            .map(|(j, f)| (j, input_of(j), f))
            .collect();
        v.sort_by_key(|(j, _, _)| *j);
        let mut seen = std::collections::HashSet::new();
        v.into_iter().filter(|(_, p, _)| seen.insert(p.clone())).map(|(_, p, f)| (p, f)).collect()
    }
}

#[cfg(feature = "mpi")]
pub use with_mpi::Cluster;

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::sync::atomic::{AtomicBool, Ordering};

    use mpi::collective::SystemOperation;
    use mpi::point_to_point::{Destination, Source};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::CommunicatorCollectives;

    use super::{Collected, Launch, Outcome};
    use crate::{Error, Result};

    /// Worker to master: ready for a job, with the outcome of the last one
    /// (empty the first time).
    const READY: i32 = 1;
    /// Master to worker: run the job whose index follows.
    const JOB: i32 = 2;
    /// Master to worker: no more jobs.
    const STOP: i32 = 3;

    /// MPI, started for a job of more than one rank; finalised when dropped.
    pub struct Cluster {
        _universe: mpi::environment::Universe,
        world: SimpleCommunicator,
    }

    impl std::fmt::Debug for Cluster {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Cluster(rank {} of {})", self.rank(), self.size())
        }
    }

    impl Cluster {
        /// Starts MPI when an MPI launcher started this process as one of
        /// several ranks; `None` for a plain (or one-rank) run, which then
        /// never touches MPI.
        pub fn start() -> Result<Option<Cluster>> {
            if Launch::from_env().is_none_or(|l| l.size < 2) {
                return Ok(None);
            }
            // Engine and rayon threads never call MPI; only the main one does.
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| Error::invalid("mpirun", "MPI was already initialised"))?;
            let world = universe.world();
            Ok(Some(Cluster { _universe: universe, world }))
        }

        /// This process's rank (0 is the master).
        pub fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        /// Ranks in the job.
        pub fn size(&self) -> usize {
            self.world.size() as usize
        }

        /// Whether every rank passed `ok`, and whether every rank passed the
        /// same `count`: the same answers on every rank. A barrier too: no
        /// rank goes on before all have planned, so no worker writes an
        /// output while another rank is still checking which exist.
        pub fn agree(&self, ok: bool, count: u64) -> (bool, bool) {
            let mine = [u64::from(ok), count, u64::MAX - count];
            let mut min = [0u64; 3];
            self.world.all_reduce_into(&mine[..], &mut min[..], SystemOperation::min());
            // The minimum of MAX - count is MAX - (the largest count).
            (min[0] == 1, min[1] == u64::MAX - min[2])
        }

        /// Rank 0: hands out jobs `0..jobs` one at a time to whichever
        /// worker asks, until all are done or `cancel` is set, and returns
        /// every outcome. `progress` sees each as it comes back.
        pub fn master(
            &self,
            jobs: usize,
            cancel: &AtomicBool,
            mut progress: impl FnMut(&Outcome),
        ) -> Result<Collected> {
            let workers = self.size() - 1;
            let mut c = Collected { workers, per_rank: vec![0; self.size()], ..Collected::default() };
            let (mut next, mut active) = (0usize, workers);
            while active > 0 {
                let (msg, status) = self.world.any_process().receive_vec_with_tag::<u8>(READY);
                let from = status.source_rank();
                if !msg.is_empty() {
                    let o = Outcome::decode(&msg)?;
                    if o.job >= jobs {
                        return Err(Error::invalid("mpirun", format!("rank {from} reported job {} of {jobs}", o.job)));
                    }
                    progress(&o);
                    c.outcomes.push(o);
                }
                let to = self.world.process_at_rank(from);
                if next < jobs && !cancel.load(Ordering::SeqCst) {
                    to.send_with_tag(&(next as u64), JOB);
                    c.per_rank[from as usize] += 1;
                    next += 1;
                } else {
                    to.send_with_tag(&0u64, STOP);
                    active -= 1;
                }
            }
            c.not_run = jobs - next;
            Ok(c)
        }

        /// Ranks 1..: asks the master for jobs and runs each with `run`
        /// until the master says there are no more.
        pub fn worker(&self, mut run: impl FnMut(usize) -> Outcome) {
            let master = self.world.process_at_rank(0);
            let mut last = Vec::new();
            loop {
                master.send_with_tag(&last[..], READY);
                let (job, status) = master.receive::<u64>();
                if status.tag() != JOB {
                    return;
                }
                last = run(job as usize).encode();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_from_open_mpi_and_pmi_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        const OMPI: [(&str, &str); 3] =
            [("OMPI_COMM_WORLD_RANK", "2"), ("OMPI_COMM_WORLD_SIZE", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")];
        assert_eq!(Launch::from_vars(vars(&OMPI)), Some(Launch { rank: 2, size: 3, local_rank: Some(1) }));
        const PMI: [(&str, &str); 2] = [("PMI_RANK", "0"), ("PMI_SIZE", "4")];
        assert_eq!(Launch::from_vars(vars(&PMI)), Some(Launch { rank: 0, size: 4, local_rank: None }));
        assert_eq!(Launch::from_vars(vars(&[])), None);
        // A rank outside the size, or garbage, is not a launch.
        assert_eq!(Launch::from_vars(vars(&[("PMI_RANK", "4"), ("PMI_SIZE", "4")])), None);
        assert_eq!(Launch::from_vars(vars(&[("PMI_RANK", "x"), ("PMI_SIZE", "4")])), None);
    }

    #[test]
    fn outcomes_round_trip_and_bad_bytes_are_errors() {
        let o = Outcome {
            job: 7,
            images: 1,
            skipped: 0,
            failures: vec!["bad.png: not a PNG".into(), "ünïcode".into()],
            gpu_busy_s: Some(0.25),
            interrupted: false,
            adapter: "NVIDIA H200".into(),
        };
        let b = o.encode();
        assert_eq!(Outcome::decode(&b).unwrap(), o);
        let plain = Outcome { failures: vec![], gpu_busy_s: None, interrupted: true, adapter: "cpu".into(), ..o };
        assert_eq!(Outcome::decode(&plain.encode()).unwrap(), plain);
        // Every truncation is refused, never a panic.
        for n in 0..b.len() {
            assert!(Outcome::decode(&b[..n]).is_err(), "truncated to {n} bytes");
        }
        let mut flags = b.clone();
        flags[24] = 9;
        assert!(Outcome::decode(&flags).is_err());
        let mut huge = b.clone();
        huge[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Outcome::decode(&huge).is_err());
    }

    #[test]
    fn failures_come_back_in_job_order_with_their_inputs() {
        let o = |job, f: &[&str]| Outcome {
            job,
            images: 0,
            skipped: 0,
            failures: f.iter().map(|s| s.to_string()).collect(),
            gpu_busy_s: None,
            interrupted: false,
            adapter: "cpu".into(),
        };
        let c = Collected {
            outcomes: vec![o(5, &["e5"]), o(1, &[]), o(2, &["e2"]), o(6, &["e6"]), o(3, &["e3"])],
            ..Default::default()
        };
        // Jobs 2 and 3 are two outputs of one input: it failed once.
        let input_of = |j: usize| PathBuf::from(format!("in{}.png", if j == 3 { 2 } else { j }));
        let f = c.failures(input_of);
        assert_eq!(
            f,
            vec![
                (PathBuf::from("in2.png"), "e2".into()),
                (PathBuf::from("in5.png"), "e5".into()),
                (PathBuf::from("in6.png"), "e6".into())
            ]
        );
    }
}
