//! The command line: every subcommand's arguments as clap parses them.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use gpuimg::{outputs, DeviceChoice};

#[derive(Parser)]
#[command(
    name = "gpuimg",
    version,
    about = "Tiny neural image models and image preprocessing on any GPU, with a fast CPU fallback"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Where to run: a hardware GPU if present (auto), any GPU adapter including software ones (gpu), or the CPU path (cpu). Default: $GPUIMG_DEVICE or auto.
    #[arg(long, global = true, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail (adapter, timings).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Process only shard K of N (K from 0 to N-1): inputs K, K+N, K+2N, ... of the list (each folder's files sorted), for job arrays (Slurm's $SLURM_ARRAY_TASK_ID, Kubernetes' $JOB_COMPLETION_INDEX). Every shard given the same arguments: together they cover every input once.
    #[arg(long, global = true, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

/// `K/N` with N >= 1 and K < N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s.split_once('/').ok_or_else(|| format!("{s}: expected K/N, e.g. 0/4"))?;
    let num =
        |v: &str, what: &str| v.trim().parse::<usize>().map_err(|_| format!("{s}: {what} '{v}' is not a whole number"));
    let (k, n) = (num(k, "K")?, num(n, "N")?);
    if n == 0 || k >= n {
        return Err(format!("{s}: K must be from 0 to N-1 and N at least 1"));
    }
    Ok((k, n))
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum EvalWhat {
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
    /// Low-light enhancement: mean level, clipped pixels and colour-cast shift of the output
    /// (and with --synthetic, Y PSNR/SSIM against the photo the dark input was made from).
    Enhance {
        /// Directory of low-light photos (or, with --synthetic, of normal photos).
        dir: PathBuf,
        /// Network: zero-dce++ or zero-dce (default: zero-dce++, or what --weights holds).
        #[arg(long)]
        model: Option<String>,
        /// Weights (safetensors with the reference's tensor names) instead of the bundled ones.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Run the network on the image downscaled by N (default: as `gpuimg enhance`).
        #[arg(long)]
        scale_factor: Option<usize>,
        /// Curve iterations, 1 to 16.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=16))]
        iterations: u64,
        /// Darken each photo as the training inputs are (seeded) and score the output against it.
        #[arg(long)]
        synthetic: bool,
        /// Seed of the synthetic darkening.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
pub enum TrainWhat {
    /// Train TinyPSSR on a directory of photos (scripts/get-data.sh installs them).
    /// Defaults: 16000 steps of 32 patches for x2, 6000 of 16 for x4, lr 3e-3.
    Sr {
        /// Upscale factor (2 or 4).
        #[arg(long, default_value_t = 2)]
        scale: usize,
        #[command(flatten)]
        common: TrainCommon,
        /// Start from these weights (for x4: the trained x2 model, used for both stages).
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// Zero-DCE / Zero-DCE++ with the zero-reference losses, on dark versions of normal photos.
    /// Defaults: 1000 steps (zero-dce++) or 800 (zero-dce) of 8 images, lr 2e-3.
    Enhance {
        /// Which network.
        #[arg(long, default_value = "zero-dce++")]
        model: String,
        #[command(flatten)]
        common: TrainCommon,
        /// Patch side in pixels (default 96 for zero-dce++, 64 for zero-dce).
        #[arg(long)]
        patch: Option<usize>,
        /// Where the exposure loss pulls each 16x16 region: `fixed` (0.6, the reference's)
        /// or `source` (the region's level in the photo the dark input was made from).
        #[arg(long, default_value = "fixed")]
        exposure: String,
        /// The exposure loss's weight with --exposure source (fixed keeps the reference's 10).
        #[arg(long, default_value_t = 10.0)]
        exposure_weight: f64,
    },
    /// TinyCompress: the autoencoder with MSE on patches of the training photos.
    /// Defaults: 2000 steps of 8 patches, lr 5e-4.
    Codec {
        /// 4, 16 or 64.
        #[arg(long, default_value_t = 4)]
        rate: usize,
        #[command(flatten)]
        common: TrainCommon,
        /// Patch side, a multiple of 8 (default 64 for -4, 96 for -16 and -64).
        #[arg(long)]
        patch: Option<usize>,
        /// Start from these weights; weights of a lower rate are repeated into more blocks (a trained -4 starts -16 and -64).
        #[arg(long)]
        init: Option<PathBuf>,
    },
}

/// What every training command takes: data, output, and the optimiser's
/// schedule (each defaulting to the model's recipe).
#[derive(Args)]
pub struct TrainCommon {
    /// Directory of training photos (searched recursively; every 5th is held out for validation).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the weights (safetensors).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output file if it exists (otherwise refused before training starts).
    #[arg(long)]
    pub overwrite: bool,
    /// Optimiser steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Samples (patches or images) per step.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Initial learning rate (cosine decay to 1% of it).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl TrainCommon {
    /// A training run's `-o`: never the data or the starting weights, and an
    /// existing file only with `--overwrite` (checked before training starts).
    pub fn check_output(&self, init: Option<&PathBuf>) -> Result<()> {
        let inputs: Vec<PathBuf> = std::iter::once(self.data.clone()).chain(init.cloned()).collect();
        Ok(outputs::check_extra("-o", &self.output, &inputs, self.overwrite)?)
    }

    /// Overrides a config's schedule with what was given.
    pub fn apply(&self, steps: &mut usize, batch: &mut usize, lr: &mut f32, seed: &mut u64) {
        *steps = self.steps.unwrap_or(*steps);
        *batch = self.batch.unwrap_or(*batch);
        *lr = self.lr.unwrap_or(*lr);
        *seed = self.seed;
    }
}

#[derive(Args)]
pub struct SrArgs {
    /// Input images or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Upscale factor.
    #[arg(long, default_value_t = 4)]
    pub scale: usize,
    /// Output file (one input) or directory. Default: <stem>_x<scale>.<ext> beside the input.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// TinyPSSR weights (safetensors) instead of the bundled ones.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Split each image into tiles (with a halo of the model's receptive
    /// radius, so the output is the same): auto (whole images while they fit
    /// the memory budget, else the fewest seed-001 tiles that do), off, or
    /// WxH (tiles of at most W x H input pixels). Images with outputs of
    /// 256 MiB or more (PNG/TIFF out) also run in bands unless off.
    #[arg(long, default_value = "auto")]
    pub tile: String,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct EnhanceArgs {
    /// Input images or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>_enhanced.<ext> beside the input.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Network: zero-dce++ or zero-dce (default: zero-dce++, or what --weights holds).
    #[arg(long)]
    pub model: Option<String>,
    /// Run the network on the image downscaled by N (default: min(12, shorter side / 64), at least 1).
    #[arg(long)]
    pub scale_factor: Option<usize>,
    /// Curve iterations, 1 to 16 (zero-dce needs 8: one map set each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub iterations: u64,
    /// Weights (safetensors with the reference's tensor names) instead of the bundled ones.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct ResizeArgs {
    /// Input images or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input) or directory (an existing one, or a name ending in /). Default: <stem>_x<F>.<ext> (--scale) or <stem>_<W>x<H>.<ext> beside the input.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Scale factor on both axes (output = floor(side * scale)).
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["width", "height"])]
    pub scale: Option<f64>,
    /// Output width (with --height).
    #[arg(long, requires = "height")]
    pub width: Option<usize>,
    /// Output height (with --width).
    #[arg(long, requires = "width")]
    pub height: Option<usize>,
    /// PyTorch's align_corners = True convention.
    #[arg(long)]
    pub align_corners: bool,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct CompressArgs {
    /// Input images or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>.tcz beside the input.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Pixels per latent value: 4 (about 4 bpp), 16 (about 1.2 bpp) or 64 (about 0.3 bpp).
    #[arg(long, default_value_t = 4)]
    pub rate: usize,
    /// Bit planes of each latent value kept (1-8).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub bitplanes: u32,
    /// TinyCompress weights (safetensors from `gpuimg train codec`) instead of the bundled ones for --rate.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct DecompressArgs {
    /// Input .tcz files or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input) or directory. Default: <stem>.png beside the input.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// TinyCompress weights used instead of the bundled ones of their rate (repeat the option for several rates). Files must be decoded with the weights they were encoded with.
    #[arg(long)]
    pub weights: Vec<PathBuf>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct AugmentArgs {
    /// Input images or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory: <stem>_<k>.<ext> for sample k of each input (.npy when the chain ends with normalize).
    #[arg(short, long, required = true)]
    pub output: PathBuf,
    /// The chain: ops separated by ';', each `name` or `name:key=value,key=value` (see the README for ops and keys).
    #[arg(long, required = true)]
    pub ops: String,
    /// Samples per input.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub count: u64,
    /// Seed of every random choice: the same seed gives the same outputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the drawn values of every sample (one line each: file, sample, chain).
    #[arg(long, value_name = "FILE")]
    pub save_params: Option<PathBuf>,
    /// Replay values saved with --save-params (matched by file name and sample) instead of drawing.
    #[arg(long, value_name = "FILE", conflicts_with = "save_params")]
    pub params: Option<PathBuf>,
    /// Run each op as its own pass (the reference) instead of the fused plan.
    #[arg(long)]
    pub op_by_op: bool,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct BenchArgs {
    /// A short sweep: two small sizes, 1 and all threads, two runs each after a warm-up (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Only these cases, comma-separated (default: every kernel and model).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Image sizes WxH, comma-separated (default: 320x240,640x480,1280x720,1920x1080; --quick: 64x48,128x96).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// CPU thread counts, comma-separated (default: 1, 2, 4, ... and all cores; --quick: 1 and all).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Write the measurements as JSON: {adapter, cpu_threads, rows: [{name, backend, mode, width, height, threads, median_ms}]}; GPU rows add dispatches, bytes_up and bytes_down per image (the engine's counters).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Write a chart (SVG) of time against size and against threads.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Replace --json / --chart files that exist (otherwise refused before the run).
    #[arg(long)]
    pub overwrite: bool,
}

/// How a batch of files streams through an op (every image command).
#[derive(Args)]
pub struct StreamArgs {
    /// Replace outputs that already exist (otherwise they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Thread counts LOAD:PROC:SAVE: decoding, the CPU path's op, encoding and writing. Default: half the cores, all of them, half of them.
    #[arg(short = 'j', long = "jobs", value_name = "LOAD:PROC:SAVE")]
    pub jobs: Option<String>,
    /// GPU submissions in flight (ring depth); 1 turns the overlap of transfers and compute off.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub slots: u64,
    /// Write a JSON report of the run: counts, per-stage times, GPU busy time and utilisation.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}
