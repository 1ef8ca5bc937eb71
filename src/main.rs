//! The `gpuimg` command-line tool: parse, pick a backend, call the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use gpuimg::kernels::resize_bilinear::{ResizeBilinear, ResizeTarget};
use gpuimg::{image_io, ops, Backend, DeviceChoice};

#[derive(Parser)]
#[command(
    name = "gpuimg",
    version,
    about = "Tiny neural image models and image preprocessing on any GPU, with a fast CPU fallback"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Where to run: a hardware GPU if present (auto), any GPU adapter including software ones (gpu), or the CPU path (cpu). Default: $GPUIMG_DEVICE or auto.
    #[arg(long, global = true, value_enum)]
    device: Option<DeviceArg>,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail (adapter, timings).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Gpu,
    Cpu,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, the one gpuimg would choose, its limits and timestamp support.
    Info,
    /// Resize images bilinearly (PyTorch semantics) on the GPU or CPU.
    Resize(ResizeArgs),
    /// Super-resolution with TinyPSSR (x2, x4).
    Sr(Planned),
    /// Low-light enhancement with Zero-DCE / Zero-DCE++.
    Enhance(Planned),
    /// Compress images with TinyCompress into .tcz files.
    Compress(Planned),
    /// Decompress .tcz files.
    Decompress(Planned),
    /// Augment images for training (flip, rotate, jitter, crop, resize, ...).
    Augment(Planned),
    /// Benchmark kernels and models, GPU against CPU.
    Bench(Planned),
    /// Evaluate a model on a data set (PSNR, SSIM).
    Eval(Planned),
    /// Train a model's weights.
    Train(Planned),
}

/// Arguments of commands not built yet: accepted so the error names the command, not a parse failure.
#[derive(Args)]
struct Planned {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[derive(Args)]
struct ResizeArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>_resized.<ext> beside the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Scale factor on both axes (output = floor(side * scale)).
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["width", "height"])]
    scale: Option<f64>,
    /// Output width (with --height).
    #[arg(long, requires = "height")]
    width: Option<usize>,
    /// Output height (with --width).
    #[arg(long, requires = "width")]
    height: Option<usize>,
    /// PyTorch's align_corners = True convention.
    #[arg(long)]
    align_corners: bool,
    /// Replace outputs that already exist.
    #[arg(long)]
    overwrite: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpuimg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Info => info(&g),
        Command::Resize(a) => resize(&g, a),
        Command::Sr(_) => planned("sr", 3),
        Command::Enhance(_) => planned("enhance", 4),
        Command::Compress(_) => planned("compress", 5),
        Command::Decompress(_) => planned("decompress", 5),
        Command::Augment(_) => planned("augment", 7),
        Command::Bench(_) => planned("bench", 6),
        Command::Eval(_) => planned("eval", 3),
        Command::Train(_) => planned("train", 3),
    }
}

fn planned(cmd: &str, issue: u32) -> Result<ExitCode> {
    bail!("'gpuimg {cmd}' is not implemented in this version yet (tracked in issue #{issue})")
}

fn device_choice(g: &Global) -> Result<DeviceChoice> {
    Ok(match g.device {
        Some(DeviceArg::Auto) => DeviceChoice::Auto,
        Some(DeviceArg::Gpu) => DeviceChoice::Gpu,
        Some(DeviceArg::Cpu) => DeviceChoice::Cpu,
        None => DeviceChoice::from_env().context("GPUIMG_DEVICE")?,
    })
}

fn open_backend(g: &Global) -> Result<Backend> {
    let quiet = g.quiet;
    let b = Backend::open(device_choice(g)?, |msg| {
        if !quiet {
            eprintln!("gpuimg: {msg}");
        }
    })?;
    if g.verbose > 0 {
        eprintln!("gpuimg: running on {}", b.name());
    }
    Ok(b)
}

fn info(g: &Global) -> Result<ExitCode> {
    let reports = gpuimg::gpu::adapter_reports();
    println!("gpuimg {}", env!("CARGO_PKG_VERSION"));
    println!("cpu path: {} rayon threads", rayon::current_num_threads());
    if reports.is_empty() {
        println!("adapters: none (install a Vulkan driver; mesa-vulkan-drivers gives the software adapter lavapipe)");
    }
    for (i, r) in reports.iter().enumerate() {
        println!(
            "adapter {i}: {} [{} {}{}] driver: {}",
            r.name,
            r.backend,
            r.device_type,
            if r.software { ", software" } else { "" },
            if r.driver.is_empty() { "?" } else { &r.driver }
        );
        println!(
            "  max buffer {} MiB, max storage binding {} MiB, workgroup storage {} KiB, {} invocations/workgroup, timestamp queries: {}",
            r.max_buffer_size >> 20,
            r.max_storage_buffer_binding_size >> 20,
            r.max_compute_workgroup_storage_size >> 10,
            r.max_compute_invocations_per_workgroup,
            if r.timestamp_query { "yes" } else { "no" }
        );
    }
    let choice = device_choice(g)?;
    let chosen = Backend::open(choice, |msg| println!("note: {msg}"))?;
    println!("chosen (--device {}): {}", DeviceChoice::NAMES[choice as usize], chosen.name());
    Ok(ExitCode::SUCCESS)
}

/// Expands directories into the image files they hold (sorted, not recursive).
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && image_io::is_image_path(f))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Where one input's output goes: `-o` as a file for a single input, `-o` as a
/// directory, or `<stem>_<suffix>.<ext>` beside the input.
fn output_path(input: &Path, output: Option<&Path>, many: bool, suffix: &str) -> PathBuf {
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("png");
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = format!("{stem}_{suffix}.{ext}");
    match output {
        Some(o) if many || o.is_dir() => o.join(name),
        Some(o) => o.to_path_buf(),
        None => input.with_file_name(name),
    }
}

fn resize(g: &Global, a: ResizeArgs) -> Result<ExitCode> {
    let target = match (a.scale, a.width, a.height) {
        (Some(s), _, _) => {
            if !(s > 0.0 && s.is_finite()) {
                bail!("--scale {s}: must be a positive number");
            }
            ResizeTarget::Factor { h: s, w: s }
        }
        (None, Some(w), Some(h)) => {
            if w == 0 || h == 0 {
                bail!("--width {w} --height {h}: sides must be positive");
            }
            ResizeTarget::Size { h, w }
        }
        _ => bail!("give --scale F or --width W --height H"),
    };
    let op = ResizeBilinear { target, align_corners: a.align_corners };
    let inputs = expand_inputs(&a.inputs)?;
    if inputs.is_empty() {
        bail!("no images found in {}", a.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let many = inputs.len() > 1 || a.inputs.iter().any(|p| p.is_dir());
    if let Some(o) = &a.output {
        if many {
            std::fs::create_dir_all(o).with_context(|| format!("{}: cannot create output directory", o.display()))?;
        }
    }
    let backend = open_backend(g)?;
    let suffix = match target {
        ResizeTarget::Factor { h, .. } => format!("x{h}"),
        ResizeTarget::Size { h, w } => format!("{w}x{h}"),
    };
    let mut failed = Vec::new();
    let mut done = 0usize;
    for input in &inputs {
        let out = output_path(input, a.output.as_deref(), many, &suffix);
        let result = (|| -> Result<bool> {
            if a.inputs.iter().chain(inputs.iter()).any(|i| image_io::same_file(i, &out)) {
                bail!("{}: output would overwrite an input", out.display());
            }
            if out.exists() && !a.overwrite {
                if !g.quiet {
                    eprintln!("gpuimg: {}: exists, skipped (--overwrite replaces it)", out.display());
                }
                return Ok(false);
            }
            let img = image_io::load(input)?;
            let y = ops::resize_image(&backend, &img, &op).with_context(|| format!("{}", input.display()))?;
            image_io::save(&y, &out)?;
            if g.verbose > 0 {
                eprintln!("gpuimg: {} -> {} ({}x{})", input.display(), out.display(), y.width, y.height);
            }
            Ok(true)
        })();
        match result {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(e) => {
                eprintln!("gpuimg: error: {e:#}");
                failed.push(input.clone());
            }
        }
    }
    if !g.quiet && many {
        eprintln!("gpuimg: {done} written, {} failed, {} inputs", failed.len(), inputs.len());
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if many {
            for f in &failed {
                eprintln!("gpuimg: failed: {}", f.display());
            }
        }
        Ok(ExitCode::FAILURE)
    }
}
