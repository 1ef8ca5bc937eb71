//! Planning a batch's files before any work starts: inputs expanded from
//! folders, each input's output names, and the checks that keep data safe.
//! Every output is refused when it would overwrite an input, when two inputs
//! would write one name (naming both), or when its extension does not match
//! what the command writes; the extra files a run writes (`--report`,
//! `--save-params`) go through the same checks. Outputs that exist are
//! skipped unless `--overwrite` (and, since another process may write one
//! meanwhile, decided again when each file is placed: see
//! [`crate::fsutil::write_atomic_with`]).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::stream::Job;

/// Expands directories into the files `keep` accepts (sorted, not recursive).
pub fn expand(inputs: &[PathBuf], keep: fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && keep(f))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// True when `-o` names a folder: it exists as one, or is written with a
/// trailing separator (`-o newdir/`).
pub fn names_dir(o: &Path) -> bool {
    o.is_dir() || o.as_os_str().to_string_lossy().ends_with(['/', std::path::MAIN_SEPARATOR])
}

/// A path made absolute and free of `.`/`..` (lexically; an existing parent
/// is resolved through the file system, so links and spellings agree).
pub fn normalized(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    if let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) {
        if let Ok(c) = parent.canonicalize() {
            return c.join(name);
        }
    }
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// What a command writes for each input.
#[derive(Debug, Clone)]
pub enum Naming {
    /// `<stem>_<suffix>.<input ext>`: an image of the input's format.
    Suffix(String),
    /// `<stem>.<ext>`, and `-o FILE` must have this extension.
    Ext(&'static str),
    /// `<stem>.png` from a `.tcz`: `-o FILE` must be an image extension.
    Image,
}

/// The files of a batch, checked.
#[derive(Debug, Default)]
pub struct Planned {
    /// Inputs after expanding folders.
    pub inputs: Vec<PathBuf>,
    /// Each input's outputs (one each, or several for augment's samples).
    pub outputs: Vec<Vec<PathBuf>>,
    /// The folder outputs go into when there is one (created before the run).
    pub dir: Option<PathBuf>,
    /// True when the run has several outputs or a folder input (a summary is printed).
    pub many: bool,
}

impl Planned {
    /// Keeps shard `k` of `n` (0-based): inputs `k`, `k + n`, `k + 2n`, ...
    /// of the planned list (each folder's files sorted), with their outputs,
    /// so `n` processes given the same arguments and `k = 0..n` split the
    /// inputs between them without overlap or gaps.
    pub fn shard(self, k: usize, n: usize) -> Planned {
        let keep = |i: &usize| i % n.max(1) == k;
        let inputs = self.inputs.into_iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, p)| p).collect();
        let outputs = self.outputs.into_iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, o)| o).collect();
        Planned { inputs, outputs, ..self }
    }

    /// Plans one output per input: `-o` as a file for a single input, `-o`
    /// as a folder, or beside the input.
    pub fn new(inputs_arg: &[PathBuf], inputs: Vec<PathBuf>, output: Option<&Path>, naming: &Naming) -> Result<Self> {
        let many = inputs.len() > 1 || inputs_arg.iter().any(|p| p.is_dir());
        let dir = output.filter(|o| many || names_dir(o)).map(Path::to_path_buf);
        if let (Some(o), None) = (output, &dir) {
            check_extension(o, naming)?;
        }
        let outputs = inputs
            .iter()
            .map(|i| {
                let stem = i.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let name = match naming {
                    Naming::Suffix(s) => {
                        format!("{stem}_{s}.{}", i.extension().and_then(|e| e.to_str()).unwrap_or("png"))
                    }
                    Naming::Ext(e) => format!("{stem}.{e}"),
                    Naming::Image => format!("{stem}.png"),
                };
                vec![match (&dir, output) {
                    (Some(d), _) => d.join(name),
                    (None, Some(o)) => o.to_path_buf(),
                    (None, None) => i.with_file_name(name),
                }]
            })
            .collect();
        Ok(Planned { inputs, outputs, dir, many })
    }

    /// Checks the plan as a whole and splits it into jobs and outputs that
    /// exist (skipped unless `overwrite`). Refused with an error: an output
    /// that is an input, two inputs writing one name, and an output that is
    /// one of `extra` (the run's other files, such as `--report`).
    pub fn jobs(
        &self,
        inputs_arg: &[PathBuf],
        extra: &[(&str, &Path)],
        overwrite: bool,
    ) -> Result<(Vec<Job>, Vec<PathBuf>)> {
        let inputs: Vec<PathBuf> = inputs_arg.iter().chain(&self.inputs).map(|p| normalized(p)).collect();
        // The extra files by normalized path (each normalized once).
        let mut extra_names: HashMap<PathBuf, (&str, &Path)> = HashMap::new();
        for &(what, p) in extra {
            let n = normalized(p);
            if inputs.contains(&n) {
                return Err(Error::invalid("output", format!("{what} {}: would overwrite an input", p.display())));
            }
            if let Some((_, other)) = extra_names.insert(n, (what, p)) {
                return Err(Error::invalid(
                    "output",
                    format!("{what} {}: the same file as {}", p.display(), other.display()),
                ));
            }
        }
        let mut owner: HashMap<PathBuf, &Path> = HashMap::new();
        let (mut jobs, mut skipped) = (Vec::new(), Vec::new());
        for (input, outs) in self.inputs.iter().zip(&self.outputs) {
            for out in outs {
                let n = normalized(out);
                if inputs.contains(&n) {
                    return Err(Error::invalid(
                        "output",
                        format!("{}: output of {} would overwrite an input", out.display(), input.display()),
                    ));
                }
                if let Some((what, _)) = extra_names.get(&n) {
                    return Err(Error::invalid(
                        "output",
                        format!("{}: output of {} is also the {what} file", out.display(), input.display()),
                    ));
                }
                if let Some(first) = owner.insert(n, input) {
                    return Err(Error::invalid(
                        "output",
                        if first == input.as_path() {
                            format!("{} is given twice (both would write {})", input.display(), out.display())
                        } else {
                            format!(
                                "{} and {} would both be written to {}: rename one or run them into different folders",
                                first.display(),
                                input.display(),
                                out.display()
                            )
                        },
                    ));
                }
                if out.symlink_metadata().is_ok() && !overwrite {
                    skipped.push(out.clone());
                } else {
                    jobs.push(Job { input: input.clone(), output: out.clone() });
                }
            }
        }
        for (what, p) in extra {
            if p.symlink_metadata().is_ok() && !overwrite {
                return Err(Error::invalid(
                    "output",
                    format!("{what} {}: exists (--overwrite replaces it)", p.display()),
                ));
            }
        }
        Ok((jobs, skipped))
    }
}

/// Refuses `-o FILE` whose extension is not what the command writes.
pub fn check_extension(o: &Path, naming: &Naming) -> Result<()> {
    let ext = o.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match naming {
        Naming::Ext(want) if ext != *want => Err(Error::invalid(
            "output",
            format!("-o {}: this command writes .{want} files (give a .{want} name or a folder)", o.display()),
        )),
        Naming::Suffix(_) | Naming::Image => crate::image_io::format_of(o).map(|_| ()).map_err(|_| {
            Error::invalid(
                "output",
                format!(
                    "-o {}: not an image name (give .{} or a folder: an existing one, or end it with /)",
                    o.display(),
                    crate::image_io::EXTENSIONS.join(", .")
                ),
            )
        }),
        _ => Ok(()),
    }
}

/// Refuses a file the run writes besides its outputs (`--report`,
/// `--json`, a trained model) when it is one of `inputs` or exists without
/// `overwrite`.
pub fn check_extra(what: &str, p: &Path, inputs: &[PathBuf], overwrite: bool) -> Result<()> {
    let n = normalized(p);
    if inputs.iter().any(|i| normalized(i) == n) {
        return Err(Error::invalid("output", format!("{what} {}: would overwrite an input", p.display())));
    }
    if p.is_dir() {
        return Err(Error::invalid("output", format!("{what} {}: is a folder; give a file name", p.display())));
    }
    if p.symlink_metadata().is_ok() && !overwrite {
        return Err(Error::invalid("output", format!("{what} {}: exists (--overwrite replaces it)", p.display())));
    }
    Ok(())
}
