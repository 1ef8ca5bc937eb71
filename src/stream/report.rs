//! What a batch did: the per-image stage times, the totals, the JSON report.

use std::path::PathBuf;

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
    /// Jobs an op ran end to end on its own ([`crate::stream::StreamOp::run_file`]:
    /// `compress` and `decompress` in bands), decoding, transform and
    /// encoding together (load threads); not in the stages above.
    pub own_s: f64,
}

/// What a run did and how long it took.
#[derive(Debug, Clone, Default)]
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
    /// Under `mpirun`: the tasks (jobs, or the tiles of one image) each
    /// rank ran (rank 0, the master, none); empty for a single process.
    pub tasks_per_rank: Vec<usize>,
    /// Under `mpirun`, one image split across the ranks: its tiles (0 otherwise).
    pub tiles: usize,
    /// Jobs run in bands (decoded, processed and encoded a band of rows at
    /// a time: [`crate::stream::StreamOp::bands`]).
    pub banded: usize,
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
            "{{\n  \"images\": {},\n  \"failed\": {},\n  \"skipped\": {},\n  \"wall_s\": {:.6},\n  \"images_per_s\": {:.3},\n  \"stages\": {{\"decode_s\": {:.6}, \"upload_s\": {:.6}, \"record_s\": {:.6}, \"submit_s\": {:.6}, \"gpu_s\": {:.6}, \"cpu_s\": {:.6}, \"readback_s\": {:.6}, \"encode_s\": {:.6}, \"input_wait_s\": {:.6}, \"own_s\": {:.6}}},\n  \"gpu_busy_s\": {},\n  \"gpu_utilization\": {},\n  \"adapter\": {},\n  \"slots\": {},\n  \"threads\": {{\"load\": {}, \"proc\": {}, \"save\": {}}},\n  \"submissions\": {},\n  \"grouped\": {},\n  \"cpu_fallbacks\": {},\n  \"peak_in_memory\": {},\n  \"interrupted\": {},\n  \"not_run\": {},\n  \"tasks_per_rank\": [{}],\n  \"tiles\": {},\n  \"banded\": {},\n  \"failures\": [{}]\n}}\n",
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
            s.own_s,
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
            self.tasks_per_rank.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            self.tiles,
            self.banded,
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
pub(crate) fn json_str(s: &str) -> String {
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
