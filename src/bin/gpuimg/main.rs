//! The `gpuimg` command-line tool: parse, pick a backend, call the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;

use gpuimg::kernels::resize_bilinear::{ResizeBilinear, ResizeTarget};
use gpuimg::models::zero_dce::Arch;
use gpuimg::models::{TinyPssr, ZeroDce};
use gpuimg::stream::{self, Job, ProgressBar, StreamConfig, StreamOp};
use gpuimg::weights::Weights;
use gpuimg::{image_io, ops, outputs, Backend, DeviceChoice};

mod args;
mod cluster;

use args::*;

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
    let code = match cluster::start().and_then(|()| run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpuimg: error: {e:#}");
            ExitCode::FAILURE
        }
    };
    cluster::finish();
    code
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    // Only the batch commands run as several ranks.
    let single = match &cli.command {
        Command::Info => Some("info"),
        Command::Bench(_) => Some("bench"),
        Command::Eval { .. } => Some("eval"),
        Command::Train { .. } => Some("train"),
        _ => None,
    };
    if let Some(name) = single {
        cluster::refuse_for(name)?;
    }
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
        Command::Eval {
            what: EvalWhat::Enhance { dir, model, weights, scale_factor, iterations, synthetic, seed },
        } => {
            let opts = gpuimg::eval::EnhanceEval {
                scale_factor,
                iterations: iterations as usize,
                synthetic: synthetic.then_some(seed),
            };
            eval_enhance(&g, &dir, model.as_deref(), weights.as_deref(), opts)
        }
        Command::Train { what } => train(&g, what),
    }
}

/// `gpuimg train *`: the config from the model's defaults and the
/// arguments, then the library's `train_to_file` (weights and recipe).
fn train(g: &Global, what: TrainWhat) -> Result<ExitCode> {
    let quiet = g.quiet;
    let log = |what: String| {
        move |line: &str| {
            if !quiet {
                eprintln!("gpuimg: train {what}: {line}");
            }
        }
    };
    let summary = match what {
        TrainWhat::Sr { scale, common, init } => {
            common.check_output(init.as_ref())?;
            TinyPssr::stages_for(scale)?;
            let mut cfg = gpuimg::train::sr::SrTrainConfig::defaults(scale, common.data.clone());
            common.apply(&mut cfg.steps, &mut cfg.batch, &mut cfg.lr, &mut cfg.seed);
            gpuimg::train::sr::train_to_file(&cfg, init.as_deref(), &common.output, log(format!("sr x{scale}")))?
        }
        TrainWhat::Enhance { model, common, patch, exposure, exposure_weight } => {
            common.check_output(None)?;
            let arch = Arch::parse(&model)?;
            let mut cfg = gpuimg::train::enhance::EnhanceTrainConfig::defaults(arch, common.data.clone());
            common.apply(&mut cfg.steps, &mut cfg.batch, &mut cfg.lr, &mut cfg.seed);
            cfg.patch = patch.unwrap_or(cfg.patch);
            cfg.exposure = gpuimg::train::enhance::Exposure::parse(&exposure)?;
            if !(exposure_weight > 0.0 && exposure_weight.is_finite()) {
                bail!("--exposure-weight {exposure_weight}: must be a positive number");
            }
            cfg.exposure_weight = exposure_weight;
            gpuimg::train::enhance::train_to_file(&cfg, &common.output, log(format!("enhance {}", arch.name())))?
        }
        TrainWhat::Codec { rate, common, patch, init } => {
            common.check_output(init.as_ref())?;
            gpuimg::models::tinycompress::TinyCompress::new(rate)?;
            let mut cfg = gpuimg::train::codec::CodecTrainConfig::defaults(rate, common.data.clone());
            common.apply(&mut cfg.steps, &mut cfg.batch, &mut cfg.lr, &mut cfg.seed);
            cfg.batch = cfg.batch.max(1);
            cfg.patch = patch.unwrap_or(cfg.patch);
            gpuimg::train::codec::train_to_file(&cfg, init.as_deref(), &common.output, log(format!("codec -{rate}")))?
        }
    };
    if !quiet {
        eprintln!("gpuimg: {summary}");
    }
    Ok(ExitCode::SUCCESS)
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
    let cluster = cluster::current();
    let master = cluster.as_ref().is_none_or(|c| c.rank() == 0);
    // Every rank plans the same batch; under mpirun they agree on it before
    // any worker writes (so none sees another's output as existing).
    let planned = plan_batch(g, inputs_arg, plan, extra, sa, master);
    let planned = cluster::agree(cluster.as_deref(), planned, |(_, jobs, _)| jobs.len())?;
    let Some((plan, jobs, skipped)) = planned else { return Ok((ExitCode::SUCCESS, Vec::new())) };
    let many = plan.many;
    let bar = ProgressBar::new("gpuimg", !g.quiet && master && std::io::stderr().is_terminal()).with_notes(!g.quiet);
    if !g.quiet && master {
        for s in &skipped {
            eprintln!("gpuimg: {}: exists, skipped (--overwrite replaces it)", s.display());
        }
    }
    if cluster.is_none() {
        before(&jobs)?;
    }
    IN_BATCH.store(true, Ordering::SeqCst);
    let report = match cluster.as_deref() {
        None => Ok(Some(stream::run_batch(backend, op, &jobs, &cfg, &bar))),
        // Each worker calls `before` on each job it is handed.
        Some(c) => cluster::run(c, backend, op, &jobs, &cfg, &bar, before, &CANCEL),
    };
    IN_BATCH.store(false, Ordering::SeqCst);
    let report = report?;
    bar.clear();
    // A worker's jobs are in the master's summary and report.
    let Some(mut report) = report else { return Ok((ExitCode::SUCCESS, jobs)) };
    report.skipped += skipped.len();
    if g.verbose > 0 && cluster.is_none() {
        let s = &report.stages;
        eprintln!(
            "gpuimg: stages (s, summed over threads): decode {:.3}, waiting for input {:.3}, upload {:.3}, record {:.3}, submit {:.3}, gpu wait {:.3}, cpu {:.3}, readback {:.3}, encode {:.3}, whole jobs run by the op {:.3}; {} submissions, peak {} images in memory",
            s.decode_s, s.input_wait_s, s.upload_s, s.record_s, s.submit_s, s.gpu_s, s.cpu_s, s.readback_s, s.encode_s, s.own_s, report.submissions, report.peak_in_memory
        );
    }
    if !g.quiet && report.tasks_per_rank.iter().sum::<usize>() > 0 {
        let per: Vec<String> = report.tasks_per_rank.iter().skip(1).map(|n| n.to_string()).collect();
        let what = if report.tiles > 0 { format!("{} tiles of one image", report.tiles) } else { "files".into() };
        eprintln!("gpuimg: {} worker ranks, {what}, per rank: {} ({})", per.len(), per.join(", "), report.adapter);
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

/// The planning half of a batch: the shard, the jobs (outputs that exist
/// skipped unless --overwrite), the output folder, and (on the master only)
/// the temporaries an interrupted run left. `None`: an empty shard.
#[allow(clippy::type_complexity)]
fn plan_batch(
    g: &Global,
    inputs_arg: &[PathBuf],
    plan: outputs::Planned,
    extra: &[(&str, &Path)],
    sa: &StreamArgs,
    master: bool,
) -> Result<Option<(outputs::Planned, Vec<Job>, Vec<PathBuf>)>> {
    if plan.inputs.is_empty() {
        bail!(
            "no images found in {}",
            inputs_arg.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let plan = match g.shard {
        Some((k, n)) => {
            let total = plan.inputs.len();
            let plan = plan.shard(k, n);
            if !g.quiet && master {
                eprintln!("shard {k}/{n}: {} of {total} inputs", plan.inputs.len());
            }
            if plan.inputs.is_empty() {
                return Ok(None);
            }
            plan
        }
        None => plan,
    };
    let mut extra = extra.to_vec();
    if let Some(r) = &sa.report {
        extra.push(("--report", r.as_path()));
    }
    let (jobs, skipped) = plan.jobs(inputs_arg, &extra, sa.overwrite)?;
    if let Some(o) = &plan.dir {
        std::fs::create_dir_all(o).with_context(|| format!("{}: cannot create output directory", o.display()))?;
    }
    if master {
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
    }
    Ok(Some((plan, jobs, skipped)))
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
    let tile: gpuimg::tiling::TileMode = a.tile.parse()?;
    let backend = open_backend(g)?;
    let op = ops::SuperResolveOp::new(model).with_tiles(tile);
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

fn eval_enhance(
    g: &Global,
    dir: &Path,
    model: Option<&str>,
    weights: Option<&Path>,
    opts: gpuimg::eval::EnhanceEval,
) -> Result<ExitCode> {
    let model = load_enhance_model(model, weights)?;
    if opts.scale_factor == Some(0) {
        bail!("--scale-factor 0: must be at least 1");
    }
    let backend = open_backend(g)?;
    let (rows, skipped) =
        gpuimg::eval::eval_enhance(&model, &backend, dir, opts).with_context(|| format!("{}", dir.display()))?;
    report_skipped(&skipped);
    if rows.is_empty() {
        bail!("{}: no images that can be scored", dir.display());
    }
    let synthetic = opts.synthetic.is_some();
    let n = rows.len() as f64;
    let mean = |f: &dyn Fn(&gpuimg::eval::EnhanceRow) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let name =
        |r: &gpuimg::eval::EnhanceRow| r.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    println!(
        "{} ({}), {} iterations",
        model.arch.name(),
        if synthetic { "synthetic dark inputs" } else { "low-light photos" },
        opts.iterations
    );
    if synthetic {
        // Synthetic rows carry their original: (row, (levels, PSNR, SSIM)).
        let pairs: Vec<_> = rows.iter().filter_map(|r| r.original.map(|o| (r, o))).collect();
        type Pair<'a> = (&'a gpuimg::eval::EnhanceRow, (gpuimg::eval::Levels, f64, f64));
        let mean = |f: &dyn Fn(&Pair) -> f64| pairs.iter().map(f).sum::<f64>() / pairs.len() as f64;
        println!("| image | original mean | dark mean | output mean | clipped % (original / output) | cast vs original (points) | Y PSNR / SSIM vs original |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (r, (o, psnr, ssim)) in &pairs {
            println!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.2} / {:.2} | {:.2} | {psnr:.2} / {ssim:.4} |",
                name(r),
                o.mean,
                r.input.mean,
                r.output.mean,
                o.clipped,
                r.output.clipped,
                r.cast_shift
            );
        }
        println!(
            "| **mean** | {:.3} | {:.3} | {:.3} | {:.2} / {:.2} | {:.2} | {:.2} / {:.4} |",
            mean(&|(_, o)| o.0.mean),
            mean(&|(r, _)| r.input.mean),
            mean(&|(r, _)| r.output.mean),
            mean(&|(_, o)| o.0.clipped),
            mean(&|(r, _)| r.output.clipped),
            mean(&|(r, _)| r.cast_shift),
            mean(&|(_, o)| o.1),
            mean(&|(_, o)| o.2)
        );
    } else {
        println!("| image | input mean | output mean | clipped % (input / output) | cast vs input (points) |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {} | {:.3} | {:.3} | {:.2} / {:.2} | {:.2} |",
                name(r),
                r.input.mean,
                r.output.mean,
                r.input.clipped,
                r.output.clipped,
                r.cast_shift
            );
        }
        println!(
            "| **mean** | {:.3} | {:.3} | {:.2} / {:.2} | {:.2} |",
            mean(&|r| r.input.mean),
            mean(&|r| r.output.mean),
            mean(&|r| r.input.clipped),
            mean(&|r| r.output.clipped),
            mean(&|r| r.cast_shift)
        );
    }
    Ok(if skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
    use gpuimg::bench::{self, Sweep};
    let mut plan = if a.quick { Sweep::quick() } else { Sweep::full() };
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
    println!("| case | size | backend | mode | threads | median ms | Mpix/s | dispatches | MB up | MB down |");
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rows = bench::run_sweep(&plan, gpu.as_ref(), |r| {
        let traffic = match r.traffic {
            Some(t) => format!("{} | {:.3} | {:.3}", t.dispatches, t.bytes_up as f64 / 1e6, t.bytes_down as f64 / 1e6),
            None => "- | - | -".to_string(),
        };
        println!(
            "| {} | {}x{} | {} | {} | {} | {:.3} | {:.1} | {traffic} |",
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
    if a.save_params.is_some() && cluster::current().is_some() {
        bail!("--save-params is not supported under mpirun yet (each rank draws its own jobs' parameters); run one process or --shard K/N");
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

fn eval_codec(g: &Global, dir: &Path, weights: &[PathBuf], rates: &[usize], bitplanes: &[u32]) -> Result<ExitCode> {
    if let Some(p) = bitplanes.iter().find(|p| !(1..=8).contains(*p)) {
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
        gpuimg::eval::eval_codec(&models, bitplanes, &backend, dir).with_context(|| format!("{}", dir.display()))?;
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
            r.bitplanes,
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
    let mut keys: Vec<(usize, u32)> = rows.iter().map(|r| (r.rate, r.bitplanes)).collect();
    keys.sort();
    keys.dedup();
    for (rate, p) in keys {
        let sel: Vec<_> = rows.iter().filter(|r| r.rate == rate && r.bitplanes == p).collect();
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
