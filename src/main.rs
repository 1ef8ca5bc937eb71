//! The `gpuimg` command-line tool: parse, pick a backend, call the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use gpuimg::kernels::resize_bilinear::{ResizeBilinear, ResizeTarget};
use gpuimg::models::zero_dce::Arch;
use gpuimg::models::{TinyPssr, ZeroDce};
use gpuimg::stream::{self, Job, ProgressBar, StreamConfig, StreamOp};
use gpuimg::weights::Weights;
use gpuimg::{image_io, ops, outputs, Backend, DeviceChoice};

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
    device: Option<DeviceChoice>,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail (adapter, timings).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, the one gpuimg would choose, its limits and timestamp support.
    Info,
    /// Resize images bilinearly (PyTorch semantics) on the GPU or CPU.
    Resize(ResizeArgs),
    /// Super-resolution with TinyPSSR (x2, x4).
    Sr(SrArgs),
    /// Low-light enhancement with Zero-DCE++ (default) or Zero-DCE.
    Enhance(EnhanceArgs),
    /// Compress RGB images with TinyCompress into .tcz files.
    Compress(CompressArgs),
    /// Decompress .tcz files into PNG images.
    Decompress(DecompressArgs),
    /// Augment images for training (flip, rotate, jitter, crop, resize, ...).
    Augment(AugmentArgs),
    /// Benchmark every kernel and model: GPU resident, GPU round trip, CPU at 1..N threads.
    Bench(BenchArgs),
    /// Evaluate a model on a data set (PSNR, SSIM).
    Eval {
        #[command(subcommand)]
        what: EvalWhat,
    },
    /// Train a model's weights.
    Train {
        #[command(subcommand)]
        what: TrainWhat,
    },
}

#[derive(Subcommand)]
enum EvalWhat {
    /// Super-resolution: Y PSNR/SSIM of TinyPSSR against bicubic (standard protocol).
    Sr {
        /// Directory of HR images (e.g. CSet5).
        dir: PathBuf,
        /// Upscale factor.
        #[arg(long, default_value_t = 2)]
        scale: usize,
        /// Weights to evaluate instead of the bundled ones.
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Learned compression: bpp, PSNR (RGB, Y) and MS-SSIM per rate and bit-plane setting, next to JPEG at the same bpp.
    Codec {
        /// Directory of RGB images.
        dir: PathBuf,
        /// TinyCompress weights to evaluate (repeat for several rates). Default: the bundled ones of every --rates.
        #[arg(long)]
        weights: Vec<PathBuf>,
        /// Rates whose bundled weights are evaluated when no --weights are given, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![4usize, 16, 64])]
        rates: Vec<usize>,
        /// Bit-plane settings, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![8u32])]
        bitplanes: Vec<u32>,
    },
}

#[derive(Subcommand)]
enum TrainWhat {
    /// Train TinyPSSR on a directory of photos (scripts/get-data.sh installs them).
    Sr {
        /// Upscale factor (2 or 4).
        #[arg(long, default_value_t = 2)]
        scale: usize,
        /// Directory of training photos (searched recursively; every 5th is held out for validation).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the weights (safetensors).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output file if it exists (otherwise refused before training starts).
        #[arg(long)]
        overwrite: bool,
        /// Optimiser steps (default: 12000 for x2, 6000 for x4).
        #[arg(long)]
        steps: Option<usize>,
        /// Patches per step.
        #[arg(long)]
        batch: Option<usize>,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Initial learning rate (cosine decay to 1% of it).
        #[arg(long)]
        lr: Option<f32>,
        /// Start from these weights (for x4: the trained x2 model, used for both stages).
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// Zero-DCE / Zero-DCE++ with the zero-reference losses, on dark versions of normal photos.
    Enhance {
        /// Which network.
        #[arg(long, default_value = "zero-dce++")]
        model: String,
        /// Directory of normal photos (searched recursively; every 5th is held out for validation).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the weights (safetensors, the reference's tensor names).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output file if it exists (otherwise refused before training starts).
        #[arg(long)]
        overwrite: bool,
        /// Optimiser steps (default: 1000 for zero-dce++, 800 for zero-dce).
        #[arg(long)]
        steps: Option<usize>,
        /// Images per step.
        #[arg(long)]
        batch: Option<usize>,
        /// Patch side in pixels.
        #[arg(long)]
        patch: Option<usize>,
        /// Initial learning rate (cosine decay to 1% of it).
        #[arg(long)]
        lr: Option<f32>,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// TinyCompress: the autoencoder with MSE on patches of the training photos.
    Codec {
        /// 4, 16 or 64.
        #[arg(long, default_value_t = 4)]
        rate: usize,
        /// Directory of photos (searched recursively; every 5th is held out for validation).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the weights (safetensors).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output file if it exists (otherwise refused before training starts).
        #[arg(long)]
        overwrite: bool,
        /// Optimiser steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Patches per step.
        #[arg(long)]
        batch: Option<usize>,
        /// Patch side (a multiple of 8).
        #[arg(long)]
        patch: Option<usize>,
        /// Initial learning rate (cosine decay to 1% of it).
        #[arg(long)]
        lr: Option<f32>,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start from these weights; weights of a lower rate are repeated into more blocks (a trained -4 starts -16 and -64).
        #[arg(long)]
        init: Option<PathBuf>,
    },
}

#[derive(Args)]
struct SrArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Upscale factor.
    #[arg(long, default_value_t = 4)]
    scale: usize,
    /// Output file (one input) or directory. Default: <stem>_x<scale>.<ext> beside the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// TinyPSSR weights (safetensors) instead of the bundled ones.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct EnhanceArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>_enhanced.<ext> beside the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Network: zero-dce++ or zero-dce (default: zero-dce++, or what --weights holds).
    #[arg(long)]
    model: Option<String>,
    /// Run the network on the image downscaled by N (default: min(12, shorter side / 64), at least 1).
    #[arg(long)]
    scale_factor: Option<usize>,
    /// Curve iterations, 1 to 16 (zero-dce needs 8: one map set each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=16))]
    iterations: u64,
    /// Weights (safetensors with the reference's tensor names) instead of the bundled ones.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct ResizeArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (one input) or directory (an existing one, or a name ending in /). Default: <stem>_x<F>.<ext> (--scale) or <stem>_<W>x<H>.<ext> beside the input.
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
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct CompressArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>.tcz beside the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Pixels per latent value: 4 (about 4 bpp), 16 (about 1.2 bpp) or 64 (about 0.3 bpp).
    #[arg(long, default_value_t = 4)]
    rate: usize,
    /// Bit planes of each latent value kept (1-8).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=8))]
    bitplanes: u32,
    /// TinyCompress weights (safetensors from `gpuimg train codec`) instead of the bundled ones for --rate.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct DecompressArgs {
    /// Input .tcz files or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>.png beside the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// TinyCompress weights used instead of the bundled ones of their rate (repeat the option for several rates). Files must be decoded with the weights they were encoded with.
    #[arg(long)]
    weights: Vec<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct AugmentArgs {
    /// Input images or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: <stem>_<k>.<ext> for sample k of each input (.npy when the chain ends with normalize).
    #[arg(short, long, required = true)]
    output: PathBuf,
    /// The chain: ops separated by ';', each `name` or `name:key=value,key=value` (see the README for ops and keys).
    #[arg(long, required = true)]
    ops: String,
    /// Samples per input.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100000))]
    count: u64,
    /// Seed of every random choice: the same seed gives the same outputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the drawn values of every sample (one line each: file, sample, chain).
    #[arg(long, value_name = "FILE")]
    save_params: Option<PathBuf>,
    /// Replay values saved with --save-params (matched by file name and sample) instead of drawing.
    #[arg(long, value_name = "FILE", conflicts_with = "save_params")]
    params: Option<PathBuf>,
    /// Run each op as its own pass (the reference) instead of the fused plan.
    #[arg(long)]
    op_by_op: bool,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Seconds, not minutes: two small sizes, 1 and all threads, two runs each after a warm-up (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Only these cases, comma-separated (default: every kernel and model).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Image sizes WxH, comma-separated (default: 320x240,640x480,1280x720,1920x1080; --quick: 64x48,128x96).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<String>,
    /// CPU thread counts, comma-separated (default: 1, 2, 4, ... and all cores; --quick: 1 and all).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Write the measurements as JSON: {adapter, cpu_threads, rows: [{name, backend, mode, width, height, threads, median_ms}]}.
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
    /// Write a chart (SVG) of time against size and against threads.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Replace --json / --chart files that exist (otherwise refused before the run).
    #[arg(long)]
    overwrite: bool,
}

/// How a batch of files streams through an op (every image command).
#[derive(Args)]
struct StreamArgs {
    /// Replace outputs that already exist (otherwise they are skipped).
    #[arg(long)]
    overwrite: bool,
    /// Thread counts LOAD:PROC:SAVE: decoding, the CPU path's op, encoding and writing. Default: half the cores, all of them, half of them.
    #[arg(short = 'j', long = "jobs", value_name = "LOAD:PROC:SAVE")]
    jobs: Option<String>,
    /// GPU submissions in flight (ring depth); 1 turns the overlap of transfers and compute off.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    slots: u64,
    /// Write a JSON report of the run: counts, per-stage times, GPU busy time and utilisation.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`gpuimg info | head -1`)
    // would panic; like other command-line tools, end quietly instead.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    install_signal_handler();
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
        Command::Sr(a) => sr(&g, a),
        Command::Enhance(a) => enhance(&g, a),
        Command::Compress(a) => compress(&g, a),
        Command::Decompress(a) => decompress(&g, a),
        Command::Augment(a) => augment(&g, a),
        Command::Bench(a) => bench(&g, a),
        Command::Eval { what: EvalWhat::Sr { dir, scale, weights } } => eval_sr(&g, &dir, scale, weights.as_deref()),
        Command::Eval { what: EvalWhat::Codec { dir, weights, rates, bitplanes } } => {
            eval_codec(&g, &dir, &weights, &rates, &bitplanes)
        }
        Command::Train { what: TrainWhat::Sr { scale, data, output, overwrite, steps, batch, seed, lr, init } } => {
            check_train_output(&output, &data, init.as_ref(), overwrite)?;
            train_sr(&g, scale, data, output, (steps, batch, lr), seed, init)
        }
        Command::Train {
            what: TrainWhat::Enhance { model, data, output, overwrite, steps, batch, patch, lr, seed },
        } => {
            check_train_output(&output, &data, None, overwrite)?;
            train_enhance(&g, &model, data, output, (steps, batch, patch, lr), seed)
        }
        Command::Train {
            what: TrainWhat::Codec { rate, data, output, overwrite, steps, batch, patch, lr, seed, init },
        } => {
            check_train_output(&output, &data, init.as_ref(), overwrite)?;
            train_codec(&g, rate, data, output, (steps, batch, patch, lr), seed, init)
        }
    }
}

/// A training run's `-o`: never the data or the starting weights, and an
/// existing file only with `--overwrite` (checked before training starts).
fn check_train_output(output: &Path, data: &Path, init: Option<&PathBuf>, overwrite: bool) -> Result<()> {
    let inputs: Vec<PathBuf> = std::iter::once(data.to_path_buf()).chain(init.cloned()).collect();
    Ok(outputs::check_extra("-o", output, &inputs, overwrite)?)
}

fn device_choice(g: &Global) -> Result<DeviceChoice> {
    match g.device {
        Some(d) => Ok(d),
        None => DeviceChoice::from_env().context("GPUIMG_DEVICE"),
    }
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
    let (level, best) = (gpuimg::cpu::level(), gpuimg::cpu::detected());
    println!(
        "cpu path: {} rayon threads, level {}{}",
        rayon::current_num_threads(),
        level.name(),
        if level < best { format!(" (GPUIMG_CPU; the machine has {})", best.name()) } else { String::new() }
    );
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
    Ok(outputs::expand(inputs, image_io::is_image_path)?)
}

/// Set by SIGINT/SIGTERM: batches stop taking new images.
static CANCEL: std::sync::LazyLock<Arc<AtomicBool>> = std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// True while a batch runs (a first signal then stops it gracefully).
static IN_BATCH: AtomicBool = AtomicBool::new(false);
/// The signal that stopped the run (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGINT and SIGTERM: during a batch the first one stops it after the
/// images in flight (their files are finished, the summary printed, exit
/// 130 / 143); outside a batch, or on a second signal, temporary files are
/// removed and the process exits at once with the same codes.
fn install_signal_handler() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
        std::thread::spawn(move || {
            for sig in signals.forever() {
                SIGNAL.store(sig, Ordering::SeqCst);
                if !IN_BATCH.load(Ordering::SeqCst) || CANCEL.swap(true, Ordering::SeqCst) {
                    gpuimg::fsutil::remove_temps();
                    eprintln!("gpuimg: interrupted");
                    std::process::exit(128 + sig);
                }
                eprintln!("gpuimg: stopping after the images in flight (again to stop at once)");
            }
        });
    }
}

/// Streams every input (files, or images in directories) through `op` with
/// the batch engine: outputs written atomically, never over an input,
/// existing ones skipped unless `--overwrite`; carries on past failures,
/// reports them at the end and exits non-zero if there were any.
#[allow(clippy::too_many_arguments)]
fn batch(
    g: &Global,
    inputs_arg: &[PathBuf],
    output: Option<&Path>,
    naming: outputs::Naming,
    sa: &StreamArgs,
    backend: &Backend,
    op: &dyn StreamOp,
) -> Result<ExitCode> {
    let inputs = expand_inputs(inputs_arg)?;
    let plan = outputs::Planned::new(inputs_arg, inputs, output, &naming)?;
    let (code, _) = batch_jobs(g, inputs_arg, plan, &[], sa, backend, op, &|_| Ok(()))?;
    Ok(code)
}

/// Runs a planned batch: input `i`'s outputs are jobs
/// `sum(outputs[..i].len())..`; `extra` are the other files the run writes
/// (checked with the outputs); returns the exit code and the jobs run.
#[allow(clippy::too_many_arguments)]
fn batch_jobs(
    g: &Global,
    inputs_arg: &[PathBuf],
    plan: outputs::Planned,
    extra: &[(&str, &Path)],
    sa: &StreamArgs,
    backend: &Backend,
    op: &dyn StreamOp,
    before: &dyn Fn(&[Job]) -> Result<()>,
) -> Result<(ExitCode, Vec<Job>)> {
    let mut cfg = StreamConfig::new();
    if let Some(j) = &sa.jobs {
        cfg.set_threads(j)?;
    }
    cfg.slots = sa.slots as usize;
    cfg.overwrite = sa.overwrite;
    cfg.cancel = Some(CANCEL.clone());
    if plan.inputs.is_empty() {
        bail!(
            "no images found in {}",
            inputs_arg.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut extra = extra.to_vec();
    if let Some(r) = &sa.report {
        extra.push(("--report", r.as_path()));
    }
    let (jobs, skipped) = plan.jobs(inputs_arg, &extra, sa.overwrite)?;
    if let Some(o) = &plan.dir {
        std::fs::create_dir_all(o).with_context(|| format!("{}: cannot create output directory", o.display()))?;
    }
    // Temporaries a killed earlier run left in the folders written to.
    let mut dirs: Vec<PathBuf> = jobs
        .iter()
        .map(|j| j.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf())
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        for f in gpuimg::fsutil::clean_stale_temps(&d) {
            if g.verbose > 0 {
                eprintln!("gpuimg: removed {}, left by an interrupted run", f.display());
            }
        }
    }
    let many = plan.many;
    let bar = ProgressBar::new("gpuimg", !g.quiet && std::io::stderr().is_terminal());
    if !g.quiet {
        for s in &skipped {
            eprintln!("gpuimg: {}: exists, skipped (--overwrite replaces it)", s.display());
        }
    }
    before(&jobs)?;
    IN_BATCH.store(true, Ordering::SeqCst);
    let mut report = stream::run(backend, op, &jobs, &cfg, &bar);
    IN_BATCH.store(false, Ordering::SeqCst);
    bar.clear();
    report.skipped += skipped.len();
    if g.verbose > 0 {
        let s = &report.stages;
        eprintln!(
            "gpuimg: stages (s, summed over threads): decode {:.3}, waiting for input {:.3}, upload {:.3}, record {:.3}, submit {:.3}, gpu wait {:.3}, cpu {:.3}, readback {:.3}, encode {:.3}; {} submissions, peak {} images in memory",
            s.decode_s, s.input_wait_s, s.upload_s, s.record_s, s.submit_s, s.gpu_s, s.cpu_s, s.readback_s, s.encode_s, report.submissions, report.peak_in_memory
        );
    }
    if !g.quiet && (many || report.interrupted) {
        let busy = report.gpu_utilization().map(|u| format!("; GPU busy {:.0}%", u * 100.0)).unwrap_or_default();
        let stopped =
            if report.interrupted { format!(", {} not run (interrupted)", report.not_run) } else { String::new() };
        eprintln!(
            "gpuimg: {} written, {} skipped, {} failed{stopped}, {} inputs in {:.2} s ({:.1} images/s{busy})",
            report.images,
            report.skipped,
            report.failed,
            plan.inputs.len(),
            report.wall_s,
            report.throughput()
        );
    }
    if let Some(p) = &sa.report {
        gpuimg::fsutil::write_atomic_with(p, report.to_json().as_bytes(), sa.overwrite)
            .with_context(|| format!("--report {}", p.display()))?;
    }
    if report.failed > 0 && many {
        for (f, _) in &report.failures {
            eprintln!("gpuimg: failed: {}", f.display());
        }
    }
    if report.interrupted {
        let sig = SIGNAL.load(Ordering::SeqCst);
        return Ok((ExitCode::from((128 + sig.clamp(1, 127)) as u8), jobs));
    }
    Ok((if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }, jobs))
}

fn load_sr_model(scale: usize, weights: Option<&Path>) -> Result<TinyPssr> {
    TinyPssr::stages_for(scale)?;
    let m = match weights {
        Some(p) => TinyPssr::from_weights(&Weights::load(p)?).with_context(|| format!("{}", p.display()))?,
        None => TinyPssr::bundled(scale)?,
    };
    if m.scale() != scale {
        bail!(
            "{}: these weights are for x{}, not x{scale}",
            weights.map(|p| p.display().to_string()).unwrap_or_default(),
            m.scale()
        );
    }
    Ok(m)
}

fn sr(g: &Global, a: SrArgs) -> Result<ExitCode> {
    let model = load_sr_model(a.scale, a.weights.as_deref())?;
    let backend = open_backend(g)?;
    let op = ops::SuperResolveOp::new(model);
    batch(g, &a.inputs, a.output.as_deref(), outputs::Naming::Suffix(format!("x{}", a.scale)), &a.stream, &backend, &op)
}

fn load_enhance_model(model: Option<&str>, weights: Option<&Path>) -> Result<ZeroDce> {
    let arch = model.map(Arch::parse).transpose()?;
    let m = match weights {
        Some(p) => ZeroDce::from_weights(&Weights::load(p)?).with_context(|| format!("{}", p.display()))?,
        None => ZeroDce::bundled(arch.unwrap_or(Arch::ZeroDcePlus))?,
    };
    if let Some(a) = arch.filter(|&a| a != m.arch) {
        bail!(
            "{}: these weights are {}, not {}",
            weights.map(|p| p.display().to_string()).unwrap_or_default(),
            m.arch.name(),
            a.name()
        );
    }
    Ok(m)
}

fn enhance(g: &Global, a: EnhanceArgs) -> Result<ExitCode> {
    let model = load_enhance_model(a.model.as_deref(), a.weights.as_deref())?;
    if a.scale_factor == Some(0) {
        bail!("--scale-factor 0: must be at least 1");
    }
    let op = ops::EnhanceOp::new(model, a.scale_factor, a.iterations as usize)?;
    let backend = open_backend(g)?;
    batch(g, &a.inputs, a.output.as_deref(), outputs::Naming::Suffix("enhanced".into()), &a.stream, &backend, &op)
}

fn train_enhance(
    g: &Global,
    model: &str,
    data: PathBuf,
    output: PathBuf,
    (steps, batch, patch, lr): (Option<usize>, Option<usize>, Option<usize>, Option<f32>),
    seed: u64,
) -> Result<ExitCode> {
    let arch = Arch::parse(model)?;
    let mut cfg = gpuimg::train::enhance::EnhanceTrainConfig::defaults(arch, data);
    cfg.steps = steps.unwrap_or(cfg.steps);
    cfg.batch = batch.unwrap_or(cfg.batch);
    cfg.patch = patch.unwrap_or(cfg.patch);
    cfg.lr = lr.unwrap_or(cfg.lr);
    cfg.seed = seed;
    let quiet = g.quiet;
    let started = std::time::Instant::now();
    let (m, v) = gpuimg::train::enhance::train(&cfg, |line| {
        if !quiet {
            eprintln!("gpuimg: train enhance {}: {line}", arch.name());
        }
    })?;
    let mut w = m.to_weights();
    w.metadata.insert(
        "recipe".into(),
        format!(
            "gpuimg train enhance --model {} --data {} --steps {} --batch {} --patch {} --lr {} --seed {seed}",
            arch.name(),
            cfg.data.display(),
            cfg.steps,
            cfg.batch,
            cfg.patch,
            cfg.lr
        ),
    );
    w.metadata.insert(
        "losses".into(),
        "spatial x1, exposure(0.6, 16x16) x10, colour x5, illumination TV x1600 (zero-dce++) / x200 (zero-dce)".into(),
    );
    w.metadata.insert(
        "optimiser".into(),
        format!("Adam(0.9, 0.999), lr {} cosine to 1%, weight decay 1e-4, grad-norm clip 0.1", cfg.lr),
    );
    w.metadata.insert("val_loss".into(), format!("{:.4}", v.losses.total()));
    w.metadata.insert("val_psnr_db".into(), format!("{:.2} (dark inputs {:.2})", v.psnr_enhanced, v.psnr_dark));
    w.metadata.insert("val_mean".into(), format!("{:.3} (dark inputs {:.3})", v.mean_enhanced, v.mean_dark));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.metadata.insert("threads".into(), rayon::current_num_threads().to_string());
    w.save(&output)?;
    if !quiet {
        eprintln!(
            "gpuimg: wrote {} ({:.0} s; validation loss {}, PSNR vs the clean photos {:.2} dB, dark inputs {:.2} dB)",
            output.display(),
            started.elapsed().as_secs_f64(),
            v.losses,
            v.psnr_enhanced,
            v.psnr_dark
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the images an evaluation left out (the means are over the others;
/// the exit code is then 1).
fn report_skipped(skipped: &[(PathBuf, String)]) {
    for (p, why) in skipped {
        eprintln!("gpuimg: skipped {}: {why}", p.display());
    }
}

fn eval_sr(g: &Global, dir: &Path, scale: usize, weights: Option<&Path>) -> Result<ExitCode> {
    let model = load_sr_model(scale, weights)?;
    let backend = open_backend(g)?;
    let (rows, skipped) = gpuimg::eval::eval_sr(&model, &backend, dir).with_context(|| format!("{}", dir.display()))?;
    report_skipped(&skipped);
    if rows.is_empty() {
        bail!("{}: no images that can be scored", dir.display());
    }
    println!("| image | bicubic PSNR / SSIM | TinyPSSR x{scale} PSNR / SSIM | gain |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        let name = r.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "| {name} | {:.2} / {:.4} | {:.2} / {:.4} | {:+.2} dB |",
            r.psnr_bicubic,
            r.ssim_bicubic,
            r.psnr,
            r.ssim,
            r.psnr - r.psnr_bicubic
        );
    }
    let n = rows.len() as f64;
    let mean = |f: &dyn Fn(&gpuimg::eval::SrRow) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let (pb, sb, ps, ss) = (mean(&|r| r.psnr_bicubic), mean(&|r| r.ssim_bicubic), mean(&|r| r.psnr), mean(&|r| r.ssim));
    println!("| **mean** | {pb:.2} / {sb:.4} | {ps:.2} / {ss:.4} | {:+.2} dB |", ps - pb);
    Ok(if skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn train_sr(
    g: &Global,
    scale: usize,
    data: PathBuf,
    output: PathBuf,
    (steps, batch, lr): (Option<usize>, Option<usize>, Option<f32>),
    seed: u64,
    init: Option<PathBuf>,
) -> Result<ExitCode> {
    TinyPssr::stages_for(scale)?;
    let mut cfg = gpuimg::train::sr::SrTrainConfig::defaults(scale, data);
    cfg.steps = steps.unwrap_or(cfg.steps);
    cfg.batch = batch.unwrap_or(cfg.batch);
    cfg.lr = lr.unwrap_or(cfg.lr);
    cfg.seed = seed;
    if let Some(p) = &init {
        cfg.init = Some(TinyPssr::from_weights(&Weights::load(p)?).with_context(|| format!("{}", p.display()))?);
    }
    let quiet = g.quiet;
    let started = std::time::Instant::now();
    let (model, gain) = gpuimg::train::sr::train(&cfg, |line| {
        if !quiet {
            eprintln!("gpuimg: train sr x{scale}: {line}");
        }
    })?;
    let mut w = model.to_weights();
    let recipe = format!(
        "gpuimg train sr --scale {scale} --data {} --steps {} --batch {} --lr {} --seed {seed}{}",
        cfg.data.display(),
        cfg.steps,
        cfg.batch,
        cfg.lr,
        init.as_ref().map(|p| format!(" --init {}", p.display())).unwrap_or_default()
    );
    w.metadata.insert("recipe".into(), recipe);
    w.metadata.insert("patch".into(), cfg.patch.to_string());
    w.metadata.insert("lr".into(), format!("{} cosine to 1%, Adam(0.9, 0.999), L1 loss", cfg.lr));
    w.metadata.insert("val_gain_db".into(), format!("{gain:.3}"));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.metadata.insert("threads".into(), rayon::current_num_threads().to_string());
    w.save(&output)?;
    if !quiet {
        eprintln!(
            "gpuimg: wrote {} ({:.0} s, validation gain over bicubic {gain:+.2} dB)",
            output.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn resize(g: &Global, a: ResizeArgs) -> Result<ExitCode> {
    let target = match (a.scale, a.width, a.height) {
        (Some(s), _, _) => {
            if !(s > 0.0 && s.is_finite()) {
                bail!("--scale {s}: must be a positive number");
            }
            let max = image_io::DecodeLimits::default().max_side;
            if s > max as f64 {
                bail!("--scale {s}: over {max}, the largest side of an output");
            }
            ResizeTarget::Factor { h: s, w: s }
        }
        (None, Some(w), Some(h)) => {
            if w == 0 || h == 0 {
                bail!("--width {w} --height {h}: sides must be positive");
            }
            image_io::DecodeLimits::default().check_output("--width/--height: the output", w as u64, h as u64)?;
            ResizeTarget::Size { h, w }
        }
        _ => bail!("give --scale F or --width W --height H"),
    };
    let op = ResizeBilinear { target, align_corners: a.align_corners };
    let backend = open_backend(g)?;
    let suffix = match target {
        ResizeTarget::Factor { h, .. } => format!("x{h}"),
        ResizeTarget::Size { h, w } => format!("{w}x{h}"),
    };
    batch(g, &a.inputs, a.output.as_deref(), outputs::Naming::Suffix(suffix), &a.stream, &backend, &ops::ResizeOp(op))
}

fn bench(g: &Global, a: BenchArgs) -> Result<ExitCode> {
    use gpuimg::bench::{self, Plan};
    let mut plan = if a.quick { Plan::quick() } else { Plan::full() };
    if !a.only.is_empty() {
        for n in &a.only {
            if !bench::names().contains(&n.as_str()) {
                bail!("--only {n}: no such case (valid: {})", bench::names().join(", "));
            }
        }
        plan.names = a.only.clone();
    }
    if !a.sizes.is_empty() {
        plan.sizes = a
            .sizes
            .iter()
            .map(|s| {
                let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("--sizes {s}: give WxH"))?;
                match (w.trim().parse::<usize>(), h.trim().parse::<usize>()) {
                    (Ok(w), Ok(h)) if (24..=16384).contains(&w) && (24..=16384).contains(&h) => Ok((w, h)),
                    _ => bail!("--sizes {s}: give WxH with sides from 24 to 16384"),
                }
            })
            .collect::<Result<_>>()?;
    }
    if !a.threads.is_empty() {
        if let Some(t) = a.threads.iter().find(|&&t| t == 0 || t > 1024) {
            bail!("--threads {t}: give counts from 1 to 1024");
        }
        plan.threads = a.threads.clone();
    }
    for (what, p) in [("--json", &a.json), ("--chart", &a.chart)] {
        if let Some(p) = p {
            outputs::check_extra(what, p, &[], a.overwrite)?;
        }
    }
    if let (Some(j), Some(c)) = (&a.json, &a.chart) {
        if outputs::normalized(j) == outputs::normalized(c) {
            bail!("--json and --chart name the same file {}", j.display());
        }
    }
    let backend = open_backend(g)?;
    let gpu = match &backend {
        Backend::Gpu(gpu) => Some(gpu.clone()),
        Backend::Cpu => None,
    };
    let adapter = gpu.as_ref().map(|g| g.adapter_info().name.clone()).unwrap_or_else(|| "none (CPU only)".into());
    println!("gpuimg bench: GPU {adapter}; CPU {} threads available", rayon::current_num_threads());
    println!("| case | size | backend | mode | threads | median ms | Mpix/s |");
    println!("| --- | --- | --- | --- | ---: | ---: | ---: |");
    let rows = bench::run(&plan, gpu.as_ref(), |r| {
        println!(
            "| {} | {}x{} | {} | {} | {} | {:.3} | {:.1} |",
            r.name,
            r.width,
            r.height,
            r.backend,
            r.mode,
            if r.threads == 0 { "-".to_string() } else { r.threads.to_string() },
            r.median_ms,
            r.mpix_s()
        );
    })?;
    if let Some(p) = &a.json {
        gpuimg::fsutil::write_atomic_with(p, bench::to_json(&rows, &adapter).as_bytes(), a.overwrite)
            .with_context(|| format!("--json {}", p.display()))?;
    }
    if let Some(p) = &a.chart {
        let title =
            format!("gpuimg bench: GPU {adapter}, CPU up to {} threads", plan.threads.iter().max().unwrap_or(&1));
        gpuimg::fsutil::write_atomic_with(p, bench::chart_svg(&rows, &title).as_bytes(), a.overwrite)
            .with_context(|| format!("--chart {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn augment(g: &Global, a: AugmentArgs) -> Result<ExitCode> {
    use gpuimg::augment::{normalization, AugmentOp, Spec};
    let spec: Spec = a.ops.parse()?;
    let npy = normalization(&spec)?.is_some();
    let inputs = expand_inputs(&a.inputs)?;
    if a.output.is_file() {
        bail!("-o {}: give a directory (augment writes several files)", a.output.display());
    }
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut outs = Vec::new();
    let mut sample_of = std::collections::HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = if npy {
            "npy".to_string()
        } else {
            input.extension().and_then(|e| e.to_str()).unwrap_or("png").to_string()
        };
        let mut v = Vec::new();
        for k in 0..a.count {
            let out = a.output.join(format!("{stem}_{k}.{ext}"));
            sample_of.insert(out.clone(), (i as u64 * a.count + k, name(input), k));
            v.push(out);
        }
        outs.push(v);
    }
    let saved = a.params.as_deref().map(gpuimg::augment::read_params).transpose()?;
    let op = AugmentOp::new(spec, a.seed)?;
    let op = if a.op_by_op { op.op_by_op() } else { op };
    let backend = open_backend(g)?;
    let before = |jobs: &[Job]| -> gpuimg::Result<()> {
        let info: Vec<&(u64, String, u64)> = jobs.iter().map(|j| &sample_of[&j.output]).collect();
        let replay = saved.as_ref().map(|m| info.iter().map(|(_, f, k)| m.get(&(f.clone(), *k)).cloned()).collect());
        op.set_jobs(info.iter().map(|(s, _, _)| *s).collect(), replay);
        Ok(())
    };
    // The --params file is an input too: nothing may be written over it.
    let inputs_arg: Vec<PathBuf> = a.inputs.iter().chain(a.params.iter()).cloned().collect();
    let plan = outputs::Planned { inputs, outputs: outs, dir: Some(a.output.clone()), many: true };
    let extra: Vec<(&str, &Path)> = a.save_params.iter().map(|p| ("--save-params", p.as_path())).collect();
    let (code, jobs) = batch_jobs(g, &inputs_arg, plan, &extra, &a.stream, &backend, &op, &|j| Ok(before(j)?))?;
    if let Some(p) = &a.save_params {
        let mut text = String::new();
        for (j, d) in jobs.iter().zip(op.drawn()) {
            if let Some(d) = d {
                let (_, f, k) = &sample_of[&j.output];
                text += &gpuimg::augment::params_line(f, *k, &d);
            }
        }
        gpuimg::fsutil::write_atomic_with(p, text.as_bytes(), a.stream.overwrite)
            .with_context(|| format!("--save-params {}", p.display()))?;
    }
    Ok(code)
}

fn train_codec(
    g: &Global,
    rate: usize,
    data: PathBuf,
    output: PathBuf,
    (steps, batch, patch, lr): (Option<usize>, Option<usize>, Option<usize>, Option<f32>),
    seed: u64,
    init: Option<PathBuf>,
) -> Result<ExitCode> {
    use gpuimg::models::tinycompress::TinyCompress;
    TinyCompress::new(rate)?;
    let mut cfg = gpuimg::train::codec::CodecTrainConfig::defaults(rate, data);
    cfg.steps = steps.unwrap_or(cfg.steps);
    cfg.batch = batch.unwrap_or(cfg.batch).max(1);
    cfg.patch = patch.unwrap_or(cfg.patch);
    cfg.lr = lr.unwrap_or(cfg.lr);
    cfg.seed = seed;
    if cfg.patch == 0 || !cfg.patch.is_multiple_of(8) {
        bail!("--patch {}: give a positive multiple of 8", cfg.patch);
    }
    if let Some(p) = &init {
        let m = TinyCompress::from_weights(&Weights::load(p)?).with_context(|| format!("{}", p.display()))?;
        if m.rate() > rate {
            bail!("--init {}: these weights are for rate {}, more than {rate}", p.display(), m.rate());
        }
        cfg.init = Some(m);
    }
    let quiet = g.quiet;
    let started = std::time::Instant::now();
    let (m, psnr) = gpuimg::train::codec::train(&cfg, |line| {
        if !quiet {
            eprintln!("gpuimg: train codec -{rate}: {line}");
        }
    })?;
    let mut w = m.to_weights();
    w.metadata.insert(
        "recipe".into(),
        format!(
            "gpuimg train codec --rate {rate} --data {} --steps {} --batch {} --patch {} --lr {} --seed {seed}{}",
            cfg.data.display(),
            cfg.steps,
            cfg.batch,
            cfg.patch,
            cfg.lr,
            init.as_ref().map(|p| format!(" --init {}", p.display())).unwrap_or_default()
        ),
    );
    w.metadata.insert(
        "loss".into(),
        format!(
            "MSE inside a {}-pixel patch margin; Adam(0.9, 0.999), cosine decay to 1%",
            gpuimg::train::codec::margin(rate)
        ),
    );
    w.metadata.insert("val_psnr_db".into(), format!("{psnr:.2} (unquantised latents, held-out patches)"));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.save(&output)?;
    if !quiet {
        eprintln!(
            "gpuimg: wrote {} ({:.0} s, held-out PSNR {psnr:.2} dB)",
            output.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_codec(p: &Path) -> Result<gpuimg::models::tinycompress::TinyCompress> {
    gpuimg::models::tinycompress::TinyCompress::from_weights(&Weights::load(p)?)
        .with_context(|| format!("{}", p.display()))
}

/// The bundled codecs of every rate, with those in `weights` in place of
/// the bundled ones of their rate.
fn codecs(weights: &[PathBuf]) -> Result<Vec<gpuimg::models::tinycompress::TinyCompress>> {
    let mut models = weights.iter().map(|p| load_codec(p)).collect::<Result<Vec<_>>>()?;
    for rate in [4, 16, 64] {
        if !models.iter().any(|m| m.rate() == rate) {
            models.push(gpuimg::models::tinycompress::TinyCompress::bundled(rate)?);
        }
    }
    Ok(models)
}

fn compress(g: &Global, a: CompressArgs) -> Result<ExitCode> {
    let m = match &a.weights {
        Some(p) => {
            let m = load_codec(p)?;
            if m.rate() != a.rate {
                bail!("--weights {}: these weights are for rate {}, not {}", p.display(), m.rate(), a.rate);
            }
            m
        }
        None => gpuimg::models::tinycompress::TinyCompress::bundled(a.rate)?,
    };
    if g.verbose > 0 {
        let from = a.weights.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "bundled".into());
        eprintln!("gpuimg: TinyCompress-{} weights: {from} (codec id {:08x})", m.rate(), m.id());
    }
    let op = gpuimg::codec::CompressOp::new(m, a.bitplanes)?;
    let backend = open_backend(g)?;
    batch(g, &a.inputs, a.output.as_deref(), outputs::Naming::Ext("tcz"), &a.stream, &backend, &op)
}

fn decompress(g: &Global, a: DecompressArgs) -> Result<ExitCode> {
    let models = codecs(&a.weights)?;
    let op = gpuimg::codec::DecompressOp::new(models);
    let backend = open_backend(g)?;
    let inputs = outputs::expand(&a.inputs, |p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("tcz")))?;
    let plan = outputs::Planned::new(&a.inputs, inputs, a.output.as_deref(), &outputs::Naming::Image)?;
    Ok(batch_jobs(g, &a.inputs, plan, &[], &a.stream, &backend, &op, &|_| Ok(()))?.0)
}

fn eval_codec(g: &Global, dir: &Path, weights: &[PathBuf], rates: &[usize], planes: &[u32]) -> Result<ExitCode> {
    if let Some(p) = planes.iter().find(|p| !(1..=8).contains(*p)) {
        bail!("--bitplanes {p}: give values from 1 to 8");
    }
    let models = if weights.is_empty() {
        rates
            .iter()
            .map(|&r| gpuimg::models::tinycompress::TinyCompress::bundled(r).with_context(|| format!("--rates {r}")))
            .collect::<Result<Vec<_>>>()?
    } else {
        weights.iter().map(|p| load_codec(p)).collect::<Result<Vec<_>>>()?
    };
    let backend = open_backend(g)?;
    let (rows, skipped) =
        gpuimg::eval::eval_codec(&models, planes, &backend, dir).with_context(|| format!("{}", dir.display()))?;
    report_skipped(&skipped);
    if rows.is_empty() {
        bail!("{}: no RGB images that can be scored", dir.display());
    }
    println!(
        "| image | codec | bpp | PSNR RGB | PSNR Y | MS-SSIM | JPEG q | JPEG bpp | JPEG PSNR RGB | JPEG MS-SSIM |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let name = r.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "| {name} | -{} / {} planes | {:.3} | {:.2} | {:.2} | {:.4} | {} | {:.3} | {:.2} | {:.4} |",
            r.rate,
            r.planes,
            r.bpp,
            r.psnr_rgb,
            r.psnr_y,
            r.ms_ssim,
            r.jpeg_quality,
            r.jpeg_bpp,
            r.jpeg_psnr_rgb,
            r.jpeg_ms_ssim
        );
    }
    let mut keys: Vec<(usize, u32)> = rows.iter().map(|r| (r.rate, r.planes)).collect();
    keys.sort();
    keys.dedup();
    for (rate, p) in keys {
        let sel: Vec<_> = rows.iter().filter(|r| r.rate == rate && r.planes == p).collect();
        let n = sel.len() as f64;
        let mean = |f: &dyn Fn(&gpuimg::eval::CodecRow) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / n;
        println!(
            "| **mean** | -{rate} / {p} planes | {:.3} | {:.2} | {:.2} | {:.4} | | {:.3} | {:.2} | {:.4} |",
            mean(&|r| r.bpp),
            mean(&|r| r.psnr_rgb),
            mean(&|r| r.psnr_y),
            mean(&|r| r.ms_ssim),
            mean(&|r| r.jpeg_bpp),
            mean(&|r| r.jpeg_psnr_rgb),
            mean(&|r| r.jpeg_ms_ssim)
        );
    }
    Ok(if skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
