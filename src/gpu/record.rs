//! GPU work recorded into an encoder for one image, and its blocking form.

use crate::pixel::PixelLayout;

use crate::error::Result;

/// GPU work recorded into an encoder for one image: the buffer its packed
/// output ends in, that output's length, and the pooled buffers to hand back
/// once the submission is done.
#[derive(Debug)]
pub struct Recorded {
    /// Packed output samples (little-endian, padded to 4 bytes).
    pub out: wgpu::Buffer,
    /// Bytes of output.
    pub out_bytes: u64,
    /// The output's layout (`n` images back to back for a group).
    pub layout: PixelLayout,
    /// Intermediates to recycle after the submission.
    pub scratch: Vec<wgpu::Buffer>,
}

impl Recorded {
    /// `self` when `recording` (the work recorded into it) succeeded;
    /// otherwise its buffers go back to the pool and the error comes back.
    pub fn or_recycle(self, gpu: &super::Gpu, recording: Result<()>) -> Result<Recorded> {
        match recording {
            Ok(()) => Ok(self),
            Err(e) => {
                self.recycle(gpu);
                Err(e)
            }
        }
    }

    /// Returns every buffer to the pool (after the submission).
    pub fn recycle(self, gpu: &super::Gpu) {
        gpu.recycle_buffer(self.out);
        for b in self.scratch {
            gpu.recycle_buffer(b);
        }
    }
}

/// Records with `record`, submits, waits, reads `out_bytes` of the output
/// back and recycles the recorded buffers: the blocking form of every
/// streamed op.
pub fn run_recorded(
    gpu: &super::Gpu,
    op: &str,
    out_bytes: u64,
    record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<Recorded>,
) -> Result<Vec<u8>> {
    let mut kept = None;
    let r = gpu.run_and_read(op, out_bytes, |enc| {
        let rec = record(enc)?;
        let out = rec.out.clone();
        kept = Some(rec);
        Ok(out)
    });
    if let Some(rec) = kept {
        rec.recycle(gpu);
    }
    r
}
