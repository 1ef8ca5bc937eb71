//! `gpuimg augment` as a streamed op: draws per input and sample, decode
//! cache, normalised `.npy` outputs.

use crate::error::{Error, Result};

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::UnpackPixels;
use crate::ops::Recorded;
use crate::stream::StreamOp;
use crate::tensor::Tensor;

use super::*;

/// An image as f32 NCHW (1, C, H, W) normalised with `(v / max - mean) / std`
/// on R, G, B (alpha as v / max): what torchvision's ToTensor + Normalize give.
pub fn normalized_tensor(img: &Image, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let mut t = UnpackPixels(img.layout()).cpu(&img.samples)?;
    let plane = t.shape.h * t.shape.w;
    for c in 0..t.shape.c.min(3) {
        for v in &mut t.data[c * plane..(c + 1) * plane] {
            *v = (*v - mean[c]) / std[c];
        }
    }
    Ok(t)
}

/// Writes a tensor as a NumPy `.npy` file (little-endian f32, C order), atomically.
pub fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    write_npy_with(t, path, true)
}

/// [`write_npy`]; an existing file only when `replace`.
pub fn write_npy_with(t: &Tensor, path: &Path, replace: bool) -> Result<()> {
    let s = t.shape;
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}", s.n, s.c, s.h, s.w);
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + t.data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(bytemuck::cast_slice(&t.data));
    crate::fsutil::write_atomic_with(path, &bytes, replace)
}

/// `gpuimg augment` as a streamed op. Each job is one sample: by default job
/// `j` is sample number `j`; [`AugmentOp::set_jobs`] maps jobs to sample
/// numbers (and to replayed chains). Values are drawn from (seed, sample).
///
/// ```
/// use gpuimg::augment::{AugmentOp, Spec};
/// use gpuimg::{stream, Backend};
/// let jobs = stream::doctest_jobs("augment_op", "png")?; // two PNGs and a broken file
/// let spec: Spec = "hflip:p=0.5;rotate:deg=10;center-crop:w=8,h=6".parse()?;
/// let op = AugmentOp::new(spec, 7)?;
/// let report = stream::run_batch(&Backend::Cpu, &op, &jobs, &stream::StreamConfig::new(), &stream::Silent);
/// assert_eq!((report.images, report.failed), (2, 1));
/// assert_eq!(gpuimg::image_io::load(&jobs[0].output)?.width, 8);
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub struct AugmentOp {
    spec: Spec,
    norm: Option<([f32; 3], [f32; 3])>,
    seed: u64,
    fused: bool,
    jobs: Mutex<Jobs>,
    decoded: Mutex<std::collections::VecDeque<(std::path::PathBuf, DecodeCell)>>,
}

/// One input's decode, shared by the jobs (samples) that read it.
type DecodeCell = Arc<std::sync::OnceLock<std::result::Result<(Image, crate::image_io::Meta), String>>>;

/// Inputs whose decodes are kept for their other samples.
pub(super) const DECODE_CACHE: usize = 8;

#[derive(Default)]
pub(super) struct Jobs {
    samples: Option<Vec<u64>>,
    replay: Option<Vec<Option<Drawn>>>,
    drawn: Vec<Option<Drawn>>,
}

impl AugmentOp {
    /// The op for a spec and seed.
    pub fn new(spec: Spec, seed: u64) -> Result<Self> {
        let norm = normalization(&spec)?;
        Ok(AugmentOp {
            spec: without_normalize(&spec),
            norm,
            seed,
            fused: true,
            jobs: Mutex::new(Jobs::default()),
            decoded: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Runs every op as its own pass (the reference) instead of the fused plan.
    pub fn op_by_op(mut self) -> Self {
        self.fused = false;
        self
    }

    /// Job `j` is sample `samples[j]`; with `replay`, it runs `replay[j]`
    /// instead of drawing (an error for a job whose entry is `None`).
    pub fn set_jobs(&self, samples: Vec<u64>, replay: Option<Vec<Option<Drawn>>>) {
        let mut j = self.jobs.lock().expect("jobs poisoned");
        j.drawn = vec![None; samples.len()];
        j.samples = Some(samples);
        j.replay = replay;
    }

    /// The chain each job ran (None: not run, or failed before drawing).
    pub fn drawn(&self) -> Vec<Option<Drawn>> {
        self.jobs.lock().expect("jobs poisoned").drawn.clone()
    }

    pub(super) fn plan(&self, job: usize, img: &Image) -> Result<Plan> {
        let (w, h) = (img.width as usize, img.height as usize);
        let (sample, replay) = {
            let j = self.jobs.lock().expect("jobs poisoned");
            let sample = j.samples.as_ref().and_then(|s| s.get(job).copied()).unwrap_or(job as u64);
            (sample, j.replay.as_ref().map(|r| r.get(job).cloned().flatten()))
        };
        let d = match replay {
            Some(Some(d)) => without_normalize(&d),
            Some(None) => return Err(Error::invalid("augment", "no saved parameters for this image and sample")),
            None => self.spec.draw(self.seed, sample, w, h)?,
        };
        let plan = if self.fused { Plan::fused(&d, w, h)? } else { Plan::op_by_op(&d, w, h)? };
        crate::stream::set_job(&mut self.jobs.lock().expect("jobs poisoned").drawn, job, Some(d));
        Ok(plan)
    }
}

impl StreamOp for AugmentOp {
    /// Decodes each input once for all its samples (jobs of one input are
    /// consecutive; the last few decodes are kept, so memory stays bounded).
    fn load(&self, _job: usize, path: &Path) -> Result<(Image, crate::image_io::Meta)> {
        let cell = {
            let mut d = self.decoded.lock().expect("decode cache poisoned");
            match d.iter().find(|(p, _)| p == path) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = DecodeCell::default();
                    d.push_back((path.to_path_buf(), c.clone()));
                    if d.len() > DECODE_CACHE {
                        d.pop_front();
                    }
                    c
                }
            }
        };
        let limits = crate::image_io::DecodeLimits::default();
        match cell.get_or_init(|| crate::image_io::load_full(path, limits).map_err(|e| e.to_string())) {
            Ok(img) => Ok(img.clone()),
            Err(m) => Err(Error::invalid("augment", m.clone())),
        }
    }
    fn prepare(&self, img: Image) -> Result<Image> {
        if img.channels <= 2 {
            crate::ops::grey_to_rgb(&img)
        } else {
            Ok(img)
        }
    }
    fn cpu(&self, job: usize, img: &Image) -> Result<Image> {
        self.plan(job, img)?.run_image(&Backend::Cpu, img)
    }
    fn gpu(&self, job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        // Only reached if `record` declined, which it does not.
        self.plan(job, img)?.run_image_gpu(gpu, img)
    }
    fn record(
        &self,
        job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<Recorded>> {
        Ok(Some(self.plan(job, img)?.record_packed(gpu, enc, img.layout(), src)?))
    }
    fn save(&self, _job: usize, out: &Image, meta: &crate::image_io::Meta, path: &Path, replace: bool) -> Result<()> {
        match self.norm {
            Some((mean, std)) => write_npy_with(&normalized_tensor(out, mean, std)?, path, replace),
            None => crate::image_io::save_with(out, path, meta, replace),
        }
    }
}
