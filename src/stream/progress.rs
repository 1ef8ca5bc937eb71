//! The terminal progress bar of a batch.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

/// A terminal progress bar on stderr: done/total, images/s and ETA, redrawn
/// at most every 100 ms; failures are printed above it.
pub struct ProgressBar {
    enabled: bool,
    notes: bool,
    last: Mutex<Option<Instant>>,
    label: String,
}

impl ProgressBar {
    /// A bar that draws only when `enabled` (a terminal, not `--quiet`).
    pub fn new(label: &str, enabled: bool) -> Self {
        ProgressBar { enabled, notes: true, last: Mutex::new(None), label: label.to_string() }
    }

    /// The same bar, printing notices ([`Observer::notice`]) only when
    /// `notes` (not under `--quiet`).
    pub fn with_notes(mut self, notes: bool) -> Self {
        self.notes = notes;
        self
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
    fn notice(&self, input: &Path, message: &str) {
        if self.notes {
            self.clear();
            eprintln!("gpuimg: note: {}: {message}", input.display());
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
