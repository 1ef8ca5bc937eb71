//! File and memory helpers every command relies on: atomic writes that never
//! replace a file unless asked (decided when the file is put in place), a
//! registry of in-flight temporary files so a signal handler can remove them,
//! removal of stale temporaries a killed run left behind, fallible
//! allocation, and the memory budget work is checked against before it starts.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

static TEMPS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn register(p: &Path) {
    let mut t = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    t.get_or_insert_with(HashSet::new).insert(p.to_path_buf());
}

fn unregister(p: &Path) {
    let mut t = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = t.as_mut() {
        s.remove(p);
    }
}

/// Removes every temporary file a write in progress has open (called on
/// SIGINT/SIGTERM, after which the process exits). Returns how many it removed.
pub fn remove_temps() -> usize {
    let t = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    t.as_ref().map(|s| s.iter().filter(|p| std::fs::remove_file(p).is_ok()).count()).unwrap_or(0)
}

/// A fresh temporary name for `path`: `.NAME.PID-N.tmp` beside it (N
/// counts this process's writes, so two writers never share one).
pub fn temp_path(path: &Path) -> Option<PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name()?;
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(dir.join(format!(".{}.{}-{n}.tmp", name.to_string_lossy(), std::process::id())))
}

/// A temporary file beside `path` for data too large to keep in memory
/// (`.NAME.PID-N.tmp`, [`temp_path`]): removed when dropped, and by the
/// signal handler ([`remove_temps`]) or the next run's sweep if the process
/// dies first.
pub struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    /// Creates the file (read and write) beside `path`.
    pub fn beside(path: &Path) -> Result<Scratch> {
        let tmp = temp_path(path).ok_or_else(|| Error::io(path, std::io::Error::other("no file name")))?;
        register(&tmp);
        match File::options().read(true).write(true).create_new(true).open(&tmp) {
            Ok(file) => Ok(Scratch { path: tmp, file }),
            Err(e) => {
                unregister(&tmp);
                Err(Error::io(&tmp, e))
            }
        }
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Its name.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        unregister(&self.path);
    }
}

/// Writes bytes to `path` through a temporary file in the same directory, so
/// a reader never sees a half-written file and a failure leaves none. With
/// `replace` false an existing `path` is left alone and [`Error::Exists`]
/// returned; the check is the placing itself (a hard link, which fails if the
/// name exists), so two runs writing one name never both succeed.
pub fn write_atomic_with(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    write_atomic_stream(path, replace, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// [`write_atomic_with`] for content written piece by piece (an image
/// encoded band by band): `write` fills the temporary file (buffered; it
/// may seek, as a TIFF encoder does), which is placed as `path` only when
/// `write` returns Ok. An error from `write` is returned as it is, and
/// the temporary file removed.
pub fn write_atomic_stream(
    path: &Path,
    replace: bool,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let tmp = temp_path(path).ok_or_else(|| io(std::io::Error::other("no file name")))?;
    register(&tmp);
    let result = (|| {
        let mut f = BufWriter::new(File::create(&tmp).map_err(io)?);
        write(&mut f)?;
        f.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        let placed = if replace {
            std::fs::rename(&tmp, path).map(|_| true)
        } else {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                // A file system without hard links: check, then rename (a small window remains).
                Err(_) if path.symlink_metadata().is_ok() => Ok(false),
                Err(_) => std::fs::rename(&tmp, path).map(|_| true),
            }
        };
        placed.map_err(io)
    })();
    let _ = std::fs::remove_file(&tmp);
    unregister(&tmp);
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Exists { path: path.to_path_buf() }),
        Err(e) => Err(e),
    }
}

/// [`write_atomic_with`], replacing an existing file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, true)
}

/// The process id in a name of gpuimg's temporary pattern `.NAME.PID-N.tmp`
/// (or `.NAME.PID.tmp`, what earlier versions wrote).
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (stem, tail) = rest.rsplit_once('.')?;
    let pid = match tail.split_once('-') {
        Some((pid, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => pid,
        Some(_) => return None,
        None => tail,
    };
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is running (unknown: assumed running).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return proc.join(pid.to_string()).exists();
    }
    true
}

/// Removes temporaries of gpuimg's pattern (`.NAME.PID-N.tmp`) in `dir` whose
/// process is gone: what a run killed with SIGKILL (or a power cut) leaves.
/// Returns the names removed.
pub fn clean_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else { continue };
        if !alive(pid) && e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and PNG).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

/// [`crc32`] over data that comes in pieces (a file written as it is made).
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Crc32(!0)
    }

    /// Takes in the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
        let t = TABLE.get_or_init(|| {
            let mut t = [0u32; 256];
            for (i, e) in t.iter_mut().enumerate() {
                let mut c = i as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
                *e = c;
            }
            t
        });
        self.0 = data.iter().fold(self.0, |c, &b| t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8));
    }

    /// The CRC of everything taken in.
    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// A vector of `n` copies of `v`, or an error naming `what` when the memory
/// cannot be had (instead of an abort).
pub fn try_vec<T: Clone>(what: &str, n: usize, v: T) -> Result<Vec<T>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::TooLarge {
        what: what.to_string(),
        needed: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        limit: memory_budget(),
    })?;
    out.resize(n, v);
    Ok(out)
}

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| (v * mul as f64).min(u64::MAX as f64) as u64)
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The memory this machine can give a run, in bytes: `GPUIMG_MEMORY_LIMIT`
/// if set (bytes, or with a K/M/G suffix), else the available memory
/// (MemAvailable, capped by a cgroup limit), else 8 GiB where neither can be read.
pub fn memory_budget() -> u64 {
    if let Some(v) = std::env::var("GPUIMG_MEMORY_LIMIT").ok().and_then(|s| parse_bytes(&s)) {
        return v;
    }
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
            .map(|k| k * 1024)
    });
    let cgroup = read_u64("/sys/fs/cgroup/memory.max").map(|max| {
        let used = read_u64("/sys/fs/cgroup/memory.current").unwrap_or(0);
        max.saturating_sub(used)
    });
    match (avail, cgroup) {
        (Some(a), Some(c)) => a.min(c),
        (Some(a), None) => a,
        (None, Some(c)) => c,
        (None, None) => 8 << 30,
    }
}

/// Human-readable bytes (MiB below 1 GiB, else GiB).
pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", (b as f64 / (1u64 << 20) as f64).max(1.0))
    }
}

/// Refuses work whose peak memory `needed` is over the budget, with both numbers.
pub fn check_memory(what: &str, needed: u64) -> Result<()> {
    let budget = memory_budget();
    if needed > budget {
        return Err(Error::invalid(
            "memory",
            format!(
                "{what} needs about {} but {} is available (GPUIMG_MEMORY_LIMIT sets the budget)",
                human_bytes(needed),
                human_bytes(budget)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_pattern() {
        assert_eq!(temp_pid(".a.png.123.tmp"), Some(123));
        assert_eq!(temp_pid(".a.png.123-7.tmp"), Some(123));
        assert_eq!(temp_pid(".a.png.123-.tmp"), None);
        let t = temp_path(Path::new("d/a.png")).unwrap();
        assert_eq!(temp_pid(&t.file_name().unwrap().to_string_lossy()), Some(std::process::id()));
        assert_eq!(temp_pid(".a.png.tmp"), None);
        assert_eq!(temp_pid("a.png.123.tmp"), None);
        assert_eq!(temp_pid("..123.tmp"), None);
        assert_eq!(temp_pid(".x.12a.tmp"), None);
    }

    #[test]
    fn no_replace_is_decided_when_the_file_is_placed() {
        let d = std::env::temp_dir().join(format!("gpuimg-fsutil-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("x.bin");
        std::fs::write(&p, b"old").unwrap();
        assert!(matches!(write_atomic_with(&p, b"new", false), Err(Error::Exists { .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        write_atomic_with(&p, b"new", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        // Eight writers race for one new name: exactly one wins, whole.
        let q = d.join("race.bin");
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8u8)
                .map(|i| {
                    let q = q.clone();
                    s.spawn(move || write_atomic_with(&q, &[i; 4096], false).is_ok() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        let got = std::fs::read(&q).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "no temporaries left: {left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("nan"), None);
    }
}
