//! One command over several processes: seed 002's master and workers, and
//! seed 001's tiles of one image, on MPI.
//!
//! `mpirun -np N gpuimg <command> ...` starts N copies of the same command.
//! Each plans the same batch (the inputs, each folder's files sorted, and
//! their outputs) and the ranks agree on it (`Cluster::agree`) before any
//! of them writes. Then rank 0 is the master and ranks 1..N the workers,
//! each of which runs what it is handed on its own adapter (picked by its
//! local rank, [`Launch::local_rank`]) or its CPU:
//! - a batch of files: the master hands out job indices one at a time to
//!   whichever worker asks (dynamic load balancing: a worker on a faster
//!   GPU, or with smaller files, asks more often); a worker runs the job
//!   through the batch engine (inputs and outputs are on a file system
//!   every rank sees) and sends back its [`Outcome`];
//! - one image of an op that tiles (`sr`; `enhance` at s = 1): the master
//!   decodes it, splits it into seed-001 tiles
//!   ([`crate::stream::StreamOp::split`]), sends each tile's pixels with
//!   its halo ([`encode_image`]) to whichever worker asks, pastes the
//!   results as they come back ([`crate::tiling::Merge`]) and writes the
//!   output: the single process's bytes on the CPU path.
//!
//! The master collects every outcome and prints and writes the one summary
//! and report. The message layer is `Cluster` (the `mpi` cargo feature,
//! over Open MPI or MPICH); [`Master`] is the master's side of a run.
//!
//! A build without the feature still recognises an MPI launch
//! ([`Launch::from_env`]) and refuses it, rather than letting N processes
//! each run the whole batch over the same outputs.

use std::path::PathBuf;

use crate::image_io::Image;
pub use crate::launch::Launch;
use crate::tensor::Samples;
use crate::{Error, Result};

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

/// One tile's pixels as bytes: its index, width, height, channels and bits
/// per sample, then the samples (little-endian).
pub fn encode_image(index: usize, img: &Image) -> Vec<u8> {
    let samples = img.samples.le_bytes();
    let mut b = Vec::with_capacity(14 + samples.len());
    b.extend_from_slice(&(index as u32).to_le_bytes());
    b.extend_from_slice(&img.width.to_le_bytes());
    b.extend_from_slice(&img.height.to_le_bytes());
    b.push(img.channels as u8);
    b.push(img.samples.bits() as u8);
    b.extend_from_slice(&samples);
    b
}

/// Reads [`encode_image`]'s bytes: the sizes must account for every byte
/// (so nothing is allocated from a size that the bytes do not back).
pub fn decode_image(b: &[u8]) -> Result<(usize, Image)> {
    let bad = |why: String| Error::invalid("cluster message", why);
    if b.len() < 14 {
        return Err(bad(format!("a tile of {} bytes", b.len())));
    }
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let (index, w, h, c, bits) = (u32_at(0) as usize, u32_at(4), u32_at(8), b[12] as usize, b[13] as u32);
    let bytes = (w as u64) * (h as u64) * (c as u64) * (bits as u64 / 8);
    if !(bits == 8 || bits == 16) || !(1..=4).contains(&c) || bytes != (b.len() - 14) as u64 {
        return Err(bad(format!("a {w}x{h} tile of {c} channels at {bits} bits in {} bytes", b.len())));
    }
    let n = (w as usize) * (h as usize) * c;
    Ok((index, Image::new(w, h, c, Samples::from_le_bytes(bits, &b[14..], n))?))
}

/// A worker's result for one tile: [`encode_image`] of the result, or the
/// tile's index and the error.
pub fn encode_tile_result(index: usize, r: &Result<Image>) -> Vec<u8> {
    match r {
        Ok(img) => {
            let mut b = vec![0];
            b.extend_from_slice(&encode_image(index, img));
            b
        }
        Err(e) => {
            let mut b = vec![1];
            b.extend_from_slice(&(index as u32).to_le_bytes());
            b.extend_from_slice(e.to_string().as_bytes());
            b
        }
    }
}

/// Reads [`encode_tile_result`]'s bytes: the tile's index and its result
/// (or the worker's error message).
pub fn decode_tile_result(b: &[u8]) -> Result<(usize, std::result::Result<Image, String>)> {
    match b.split_first() {
        Some((0, rest)) => decode_image(rest).map(|(i, img)| (i, Ok(img))),
        Some((1, rest)) if rest.len() >= 4 => {
            let index = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            Ok((index, Err(String::from_utf8_lossy(&rest[4..]).into_owned())))
        }
        _ => Err(Error::invalid("cluster message", "a tile result that is neither an image nor an error")),
    }
}

/// The outcomes of a batch's jobs as they come back to the master.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every job's outcome, in the order they came back.
    pub outcomes: Vec<Outcome>,
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
    use mpi::collective::SystemOperation;
    use mpi::point_to_point::{Destination, Source};
    use mpi::request::{Request, StaticScope};
    use mpi::topology::{Communicator, Process, SimpleCommunicator};
    use mpi::traits::CommunicatorCollectives;

    use super::{Done, Launch, Master, Outcome, Task};
    use crate::{Error, Result};

    /// Worker to master: ready for a job, with the outcome of the last one
    /// (empty the first time).
    const READY: i32 = 1;
    /// Master to worker: run the job whose index (u64, little-endian) follows.
    const JOB: i32 = 2;
    /// Master to worker: no more tasks.
    const STOP: i32 = 3;
    /// Master to worker: run the op on the tile that follows.
    const TILE: i32 = 4;
    /// Worker to master: a tile's result; ready for another task.
    const TILE_DONE: i32 = 5;

    /// Waits until `ready`, napping 0.2 ms between looks (nothing next to a
    /// task's time): MPI's blocking receive spins a core while it waits, a
    /// core a worker on the same node could use.
    fn nap_until(mut ready: impl FnMut() -> bool) {
        while !ready() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Non-blocking sends in flight. Each message's buffer is handed to
    /// its request for the 'static scope (MPI reads it until the send
    /// completes) and freed once the request says it has; every request is
    /// waited for before this is dropped.
    #[derive(Default)]
    struct InFlight(Vec<(SendReq, *mut [u8])>);

    /// A non-blocking send of a buffer [`InFlight`] owns.
    type SendReq = Request<'static, [u8], StaticScope>;

    impl InFlight {
        /// Starts sending `bytes` to `to` with `tag`.
        fn send(&mut self, to: &Process<'_>, bytes: Vec<u8>, tag: i32) {
            let ptr = Box::into_raw(bytes.into_boxed_slice());
            // SAFETY: `ptr` is a live allocation that nothing else uses; it
            // is freed only after the request that reads it has completed.
            let buf: &'static [u8] = unsafe { &*ptr };
            self.0.push((to.immediate_send_with_tag(StaticScope, buf, tag), ptr));
        }

        /// Frees the buffers of the sends that have completed.
        fn reap(&mut self) {
            let mut pending = Vec::with_capacity(self.0.len());
            for (req, ptr) in self.0.drain(..) {
                match req.test() {
                    // SAFETY: the send completed: MPI no longer reads the buffer.
                    Ok(_) => drop(unsafe { Box::from_raw(ptr) }),
                    Err(req) => pending.push((req, ptr)),
                }
            }
            self.0 = pending;
        }

        /// Waits for every send, then frees its buffer.
        fn finish(&mut self) {
            for (req, ptr) in self.0.drain(..) {
                req.wait();
                // SAFETY: as in `reap`.
                drop(unsafe { Box::from_raw(ptr) });
            }
        }
    }

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.finish();
        }
    }

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

        /// Rank 0: hands `master`'s tasks out to whichever worker asks,
        /// up to [`Master::ahead`] at a time once no other worker waits for
        /// its first (the next one travels while the worker runs the last),
        /// with non-blocking sends, so the
        /// master goes on receiving and merging while a tile is on its way;
        /// passes each result back to it, and stops each worker once there
        /// are no tasks left and it holds none; returns the tasks each rank
        /// ran (rank 0: none). An error from `master.done` (a message that
        /// does not decode) ends the run after the workers are stopped.
        pub fn master(&self, master: &mut dyn Master) -> Result<Vec<usize>> {
            let mut per_rank = vec![0; self.size()];
            // Tasks each worker was sent and has not answered yet.
            let mut held = vec![0usize; self.size()];
            let mut stopped = vec![false; self.size()];
            let ahead = master.ahead().max(1);
            let mut sends = InFlight::default();
            let (mut active, mut failed) = (self.size() - 1, None);
            while active > 0 {
                // The master waits most of the time; sends finish meanwhile.
                nap_until(|| {
                    sends.reap();
                    self.world.any_process().immediate_probe().is_some()
                });
                let (msg, status) = self.world.any_process().receive_vec::<u8>();
                let from = status.source_rank();
                let done = match status.tag() {
                    READY if msg.is_empty() => None,
                    READY => Some(Outcome::decode(&msg).map(Done::Job)),
                    TILE_DONE => Some(Ok(Done::Tile(msg))),
                    t => Some(Err(Error::invalid("mpirun", format!("rank {from} sent a message of tag {t}")))),
                };
                let slot = from as usize;
                if let Some(d) = done {
                    held[slot] = held[slot].saturating_sub(1);
                    if let Err(e) = d.and_then(|d| master.done(slot, d)) {
                        failed.get_or_insert(e);
                    }
                }
                let to = self.world.process_at_rank(from);
                while held[slot] < ahead {
                    // A task ahead only while no other worker waits for one
                    // (one that has not asked yet, say): the first tasks go
                    // one to each.
                    let waiting = |w: usize| w != slot && !stopped[w] && held[w] == 0;
                    if held[slot] >= 1 && (1..self.size()).any(waiting) {
                        break;
                    }
                    let (bytes, tag) = match if failed.is_none() { master.next() } else { None } {
                        Some(Task::Job(j)) => ((j as u64).to_le_bytes().to_vec(), JOB),
                        Some(Task::Tile(bytes)) => (bytes, TILE),
                        None => break,
                    };
                    sends.send(&to, bytes, tag);
                    held[slot] += 1;
                    per_rank[slot] += 1;
                }
                if held[slot] == 0 {
                    // Nothing left for it, and it holds nothing: it stops.
                    to.send_with_tag(&[0u8][..], STOP);
                    stopped[slot] = true;
                    active -= 1;
                }
            }
            sends.finish();
            match failed {
                Some(e) => Err(e),
                None => Ok(per_rank),
            }
        }

        /// Ranks 1..: asks the master for tasks and runs each with `run`
        /// until the master says there are no more.
        pub fn worker(&self, mut run: impl FnMut(Task) -> Done) {
            let master = self.world.process_at_rank(0);
            let mut last = None;
            loop {
                match last.take() {
                    None => master.send_with_tag(&[0u8; 0][..], READY),
                    Some(Done::Job(o)) => master.send_with_tag(&o.encode()[..], READY),
                    Some(Done::Tile(b)) => master.send_with_tag(&b[..], TILE_DONE),
                }
                // The master may be busy (decoding, merging) before it answers.
                nap_until(|| master.immediate_probe().is_some());
                let (msg, status) = master.receive_vec::<u8>();
                let task = match status.tag() {
                    JOB if msg.len() == 8 => {
                        Task::Job(u64::from_le_bytes(msg[..8].try_into().expect("8 bytes")) as usize)
                    }
                    TILE => Task::Tile(msg),
                    _ => return,
                };
                last = Some(run(task));
            }
        }
    }
}

/// A task the master hands a worker.
#[derive(Debug)]
pub enum Task {
    /// Run job `i` of the batch every rank planned (inputs and outputs on a
    /// file system every rank sees).
    Job(usize),
    /// Run the op on this tile ([`encode_image`]) and send back the result.
    Tile(Vec<u8>),
}

/// What a worker sends back for a task.
#[derive(Debug)]
pub enum Done {
    /// The job's outcome.
    Job(Outcome),
    /// The tile's result ([`encode_tile_result`]).
    Tile(Vec<u8>),
}

/// The master's side of a run: where tasks come from and results go.
pub trait Master {
    /// The next task for a worker; `None` once there are none (or the run
    /// was stopped).
    fn next(&mut self) -> Option<Task>;
    /// A worker's result for a task it was handed.
    fn done(&mut self, rank: usize, done: Done) -> Result<()>;
    /// How many tasks a worker may hold at once: 1 (the default) hands a
    /// task only to a worker that asks, for the best balance at the end of
    /// a batch; 2 sends the next while it runs the last, so a large task's
    /// transfer overlaps the work (one image's tiles).
    fn ahead(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tiles_round_trip_and_bad_bytes_are_errors() {
        let px: Vec<u16> = (0..5 * 3 * 4).map(|i| (i * 997 % 65536) as u16).collect();
        let img = Image::new(5, 3, 4, Samples::U16(px)).unwrap();
        let b = encode_image(9, &img);
        assert_eq!(decode_image(&b).unwrap(), (9, img.clone()));
        let grey = Image::new(3, 2, 1, Samples::U8(vec![1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(decode_image(&encode_image(0, &grey)).unwrap(), (0, grey.clone()));
        for n in 0..b.len() {
            assert!(decode_image(&b[..n]).is_err(), "truncated to {n} bytes");
        }
        // Sizes the bytes do not back are refused before any allocation.
        let mut big = b.clone();
        big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_image(&big).is_err());
        let mut bits = b.clone();
        bits[13] = 12;
        assert!(decode_image(&bits).is_err());
        // A worker's result: the image, or its error with the tile's index.
        let ok = encode_tile_result(3, &Ok(grey.clone()));
        assert_eq!(decode_tile_result(&ok).unwrap(), (3, Ok(grey)));
        let err = encode_tile_result(4, &Err(Error::invalid("sr", "too large")));
        assert_eq!(decode_tile_result(&err).unwrap(), (4, Err("sr: too large".to_string())));
        assert!(decode_tile_result(&[]).is_err());
        assert!(decode_tile_result(&[1, 0]).is_err());
        assert!(decode_tile_result(&[2, 0, 0, 0, 0]).is_err());
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
        let c = Collected { outcomes: vec![o(5, &["e5"]), o(1, &[]), o(2, &["e2"]), o(6, &["e6"]), o(3, &["e3"])] };
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
