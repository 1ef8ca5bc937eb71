//! Readback without blocking: [`Gpu::download_async`] submits a copy and
//! returns a future that resolves when the device is polled, by the host
//! application's own loop (`device.poll`) or [`Gpu::poll`]. gpuimg itself
//! neither waits nor polls here, so a host that shares its device never has
//! its own work waited on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What the mapping callback hands the future.
#[derive(Default)]
struct Slot {
    done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// A tensor on its way back to the host ([`Gpu::download_async`]).
#[must_use = "a download does nothing unless awaited (and the device polled)"]
pub struct Download<'a> {
    staging: wgpu::Buffer,
    len: u64,
    padded: u64,
    shape: crate::tensor::Shape,
    mapping: Mapping,
    gpu: &'a Gpu,
}

impl Future for Download<'_> {
    type Output = Result<Tensor>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Tensor>> {
        let this = self.get_mut();
        let Poll::Ready(done) = Pin::new(&mut this.mapping).poll(cx) else {
            return Poll::Pending;
        };
        let err = |m: String| Error::Gpu { op: "gpuimg.download_async".into(), message: m };
        Poll::Ready((|| {
            done.map_err(|e| err(e.to_string()))?;
            let bytes = {
                let view = this.staging.get_mapped_range(..this.padded).map_err(|e| err(e.to_string()))?;
                view[..this.len as usize].to_vec()
            };
            this.staging.unmap();
            this.gpu.note_readback(this.len);
            Tensor::from_vec(this.shape, bytemuck::pod_collect_to_vec(&bytes))
        })())
    }
}

/// A buffer's `map_async` as a future: ready, with the mapping's result,
/// once the device has been polled after the mapping completed.
#[must_use = "a mapping does nothing unless awaited (and the device polled)"]
pub(crate) struct Mapping {
    slot: Arc<Mutex<Slot>>,
}

impl Mapping {
    /// Starts mapping `..len` of `buffer` for reading.
    pub(crate) fn read(buffer: &wgpu::Buffer, len: u64) -> Mapping {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let s = slot.clone();
        buffer.map_async(wgpu::MapMode::Read, ..len, move |r| {
            let mut slot = s.lock().unwrap_or_else(|e| e.into_inner());
            slot.done = Some(r);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        });
        Mapping { slot }
    }
}

impl Future for Mapping {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.done.take() {
            Some(done) => Poll::Ready(done),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Gpu {
    /// Reads `t` back without blocking: records a copy into a staging
    /// buffer, submits it (one submission of gpuimg's own, after whatever
    /// the host submitted before) and returns a future of the host tensor.
    /// The future completes once the device has been polled after the copy
    /// ran: by the application's event loop (`device.poll(PollType::Poll)`
    /// each frame), or [`Gpu::poll`]. Nothing here waits; the blocking
    /// [`Gpu::download`] is the same read with a wait.
    ///
    /// # Errors
    /// The future returns [`Error::Gpu`] when the mapping fails (a lost
    /// device); the call itself fails like [`GpuTensor::buf`] for a
    /// tensor whose buffer is smaller than its shape, or lacks `COPY_SRC`.
    pub fn download_async(&self, t: &GpuTensor) -> Result<Download<'_>> {
        let len = t.shape.bytes();
        check_copy_src(&t.buffer)?;
        t.buf("download_async")?;
        let padded = len.max(4).next_multiple_of(4);
        // Not from the pool: the future owns it until it resolves.
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpuimg.download_async"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.download_async") });
        enc.copy_buffer_to_buffer(&t.buffer, 0, &staging, 0, padded.min(t.buffer.size()));
        self.queue().submit([enc.finish()]);
        let mapping = Mapping::read(&staging, padded);
        Ok(Download { staging, len, padded, shape: t.shape, mapping, gpu: self })
    }

    /// Polls the device once without waiting: what makes
    /// [`Gpu::download_async`]'s futures progress when the application
    /// does not poll the device itself.
    pub fn poll(&self) -> Result<()> {
        self.device()
            .poll(wgpu::PollType::Poll)
            .map(|_| ())
            .map_err(|e| Error::Gpu { op: "gpuimg.poll".into(), message: e.to_string() })
    }
}

fn check_copy_src(b: &wgpu::Buffer) -> Result<()> {
    if !b.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Err(Error::invalid("download_async", "the tensor's buffer lacks COPY_SRC usage"));
    }
    Ok(())
}
