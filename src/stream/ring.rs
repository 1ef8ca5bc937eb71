//! The GPU slot ring of the stream engine: persistent upload and readback
//! buffers per slot, grouped recording, submission without waiting, and
//! timestamp queries for GPU utilisation.

use std::sync::mpsc;
use std::time::Instant;

use crate::error::Error;
use crate::gpu::{Gpu, Recorded};
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::tensor::Samples;

use super::*;

/// One image of a slot's submission. Images recorded as a group share one
/// recording, held by the group's first entry.
struct Entry {
    item: Item,
    rec: Option<Recorded>,
    layout: PixelLayout,
    offset: u64,
}

/// A slot's work in flight.
struct Flight {
    entries: Vec<Entry>,
    index: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    len: u64,
    timestamps: Option<u64>,
}

/// A ring slot: persistent upload buffers, a readback buffer, a query set.
#[derive(Default)]
struct Slot {
    uploads: Vec<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    flight: Option<Flight>,
}

const READBACK: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

pub(super) struct Ring<'g> {
    gpu: &'g Gpu,
    slots: Vec<Slot>,
    cfg: StreamConfig,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    period_ns: f64,
    intervals: Vec<(u64, u64)>,
    pub(super) upload_ns: u64,
    pub(super) record_ns: u64,
    pub(super) submit_ns: u64,
    pub(super) input_ns: u64,
    pub(super) grouped: usize,
    pub(super) cpu_fallbacks: usize,
    pub(super) wait_ns: u64,
    pub(super) readback_ns: u64,
    pub(super) submissions: usize,
}

impl<'g> Ring<'g> {
    pub(super) fn new(gpu: &'g Gpu, cfg: &StreamConfig) -> Self {
        let queries = gpu.has_timestamps().then(|| {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpuimg.stream.timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuimg.stream.resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        Ring {
            gpu,
            slots: (0..cfg.slots).map(|_| Slot::default()).collect(),
            cfg: cfg.clone(),
            queries,
            period_ns: gpu.queue().get_timestamp_period() as f64,
            intervals: Vec::new(),
            upload_ns: 0,
            record_ns: 0,
            submit_ns: 0,
            input_ns: 0,
            grouped: 0,
            cpu_fallbacks: 0,
            wait_ns: 0,
            readback_ns: 0,
            submissions: 0,
        }
    }

    fn small(&self, img: &Image) -> bool {
        img.width as usize * img.height as usize <= self.cfg.batch_pixels
    }

    pub(super) fn run(
        &mut self,
        op: &dyn StreamOp,
        rx: &mpsc::Receiver<Item>,
        save: &mpsc::SyncSender<(Item, Image)>,
        shared: &Shared<'_>,
    ) {
        let mut turn = 0;
        let mut pending: Option<Item> = None;
        loop {
            let first = match pending.take() {
                Some(i) => i,
                None => {
                    let t = Instant::now();
                    let r = rx.recv();
                    self.input_ns += nanos(t.elapsed());
                    match r {
                        Ok(i) => i,
                        Err(_) => break,
                    }
                }
            };
            // Gather small images that are ready now into one submission.
            let mut batch = vec![first];
            if self.small(&batch[0].img) {
                let mut pixels = 0usize;
                while batch.len() < self.cfg.max_batch {
                    pixels += batch.last().map(|i| i.img.width as usize * i.img.height as usize).unwrap_or(0);
                    match rx.try_recv() {
                        Ok(i) if self.small(&i.img) && pixels < self.cfg.batch_pixels * self.cfg.max_batch => {
                            batch.push(i)
                        }
                        Ok(i) => {
                            pending = Some(i);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let slot = turn % self.slots.len();
            turn += 1;
            self.complete(slot, save, shared);
            self.submit(slot, batch, op, save, shared);
            // Let finished maps call back without blocking.
            let _ = self.gpu.device().poll(wgpu::PollType::Poll);
        }
        for k in 0..self.slots.len() {
            self.complete((turn + k) % self.slots.len(), save, shared);
        }
    }

    /// Records and submits one batch into `slot` (whose last flight is complete).
    fn submit(
        &mut self,
        slot: usize,
        batch: Vec<Item>,
        op: &dyn StreamOp,
        save: &mpsc::SyncSender<(Item, Image)>,
        shared: &Shared<'_>,
    ) {
        let gpu = self.gpu;
        let device = gpu.device();
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.stream") });
        if let Some((set, _)) = &self.queries {
            stamp(&mut enc, set, 0);
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut offset = 0u64;
        let mut blocking = Vec::new();
        let mut uploads = 0usize;
        // Runs of images with one layout go up as one buffer and, where the op
        // can, through one dispatch per kernel.
        let mut rest = batch.into_iter().peekable();
        while let Some(first) = rest.next() {
            let key = first.img.layout();
            let mut group = vec![first];
            while rest.peek().is_some_and(|i| i.img.layout() == key) {
                group.push(rest.next().expect("peeked"));
            }
            // Only ops that can record groups get them uploaded as one buffer
            // (the others would upload each image twice).
            if group.len() > 1 && op.groups() {
                let t = Instant::now();
                let mut bytes = Vec::with_capacity(group.iter().map(|i| i.img.layout().bytes() as usize).sum());
                for i in &group {
                    bytes.extend_from_slice(&i.img.samples.le_bytes());
                }
                let src = self.upload_buffer(slot, uploads, bytes.len() as u64);
                uploads += 1;
                gpu.write_bytes(&src, &bytes);
                let t1 = Instant::now();
                self.upload_ns += nanos(t1 - t);
                let jobs: Vec<usize> = group.iter().map(|i| i.job).collect();
                let imgs: Vec<&Image> = group.iter().map(|i| &i.img).collect();
                let r = op.record_group(&jobs, gpu, &mut enc, &imgs, &src);
                self.record_ns += nanos(t1.elapsed());
                match r {
                    Ok(Some(rec)) => {
                        let l = rec.layout;
                        let one = PixelLayout { n: 1, ..l };
                        let len = rec.out_bytes.max(4).next_multiple_of(4);
                        let mut rec = Some(rec);
                        for (i, item) in group.into_iter().enumerate() {
                            entries.push(Entry {
                                item,
                                rec: rec.take(),
                                layout: one,
                                offset: offset + i as u64 * one.bytes(),
                            });
                        }
                        self.grouped += l.n;
                        offset += len.next_multiple_of(8);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        for item in group {
                            shared.release();
                            shared.fail(item.job, &e);
                        }
                        continue;
                    }
                }
            }
            for item in group {
                let t = Instant::now();
                let bytes = item.img.samples.le_bytes();
                let src = self.upload_buffer(slot, uploads, bytes.len() as u64);
                uploads += 1;
                gpu.write_bytes(&src, &bytes);
                drop(bytes);
                let t1 = Instant::now();
                self.upload_ns += nanos(t1 - t);
                let r = op.record(item.job, gpu, &mut enc, &item.img, &src);
                self.record_ns += nanos(t1.elapsed());
                match r {
                    Ok(Some(rec)) => {
                        let len = rec.out_bytes.max(4).next_multiple_of(4);
                        entries.push(Entry { item, layout: rec.layout, rec: Some(rec), offset });
                        offset += len.next_multiple_of(8);
                    }
                    // Too large for one pass: the blocking path splits it (or falls back).
                    Ok(None) | Err(Error::TooLarge { .. }) => blocking.push(item),
                    Err(e) => {
                        shared.release();
                        shared.fail(item.job, &e);
                    }
                }
            }
        }
        let ts_offset = self.queries.as_ref().map(|_| offset);
        let len = offset + if ts_offset.is_some() { 16 } else { 0 };
        if !entries.is_empty() {
            let rb = &mut self.slots[slot].readback;
            if rb.as_ref().is_none_or(|b| b.size() < len) {
                *rb = Some(device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpuimg.stream.readback"),
                    size: len.next_power_of_two(),
                    usage: READBACK,
                    mapped_at_creation: false,
                }));
            }
            let rb = rb.as_ref().expect("readback buffer").clone();
            for e in &entries {
                if let Some(rec) = &e.rec {
                    enc.copy_buffer_to_buffer(&rec.out, 0, &rb, e.offset, rec.out_bytes.max(4).next_multiple_of(4));
                }
            }
            if let (Some((set, resolve)), Some(off)) = (&self.queries, ts_offset) {
                stamp(&mut enc, set, 1);
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, &rb, off, 16);
            }
            let t = Instant::now();
            let index = gpu.queue().submit([enc.finish()]);
            self.submit_ns += nanos(t.elapsed());
            self.submissions += 1;
            let t = Instant::now();
            let oom_err = pollster::block_on(oom.pop());
            let val_err = pollster::block_on(validation.pop());
            self.record_ns += nanos(t.elapsed());
            if let Some(e) = oom_err.or(val_err) {
                for en in entries {
                    shared.release();
                    shared.fail(en.item.job, &Error::Gpu { op: "stream".into(), message: e.to_string() });
                }
            } else {
                let (tx, mapped) = mpsc::channel();
                rb.map_async(wgpu::MapMode::Read, ..len, move |r| {
                    let _ = tx.send(r);
                });
                self.slots[slot].flight = Some(Flight { entries, index, mapped, len, timestamps: ts_offset });
            }
        } else {
            drop(enc);
            let _ = pollster::block_on(oom.pop());
            let _ = pollster::block_on(validation.pop());
        }
        // Images too large for one pass take the blocking (strip) path.
        for item in blocking {
            let t = Instant::now();
            let mut r = op.gpu(item.job, gpu, &item.img);
            if let Err(Error::TooLarge { .. }) = r {
                // An op with no split form for an image over the device's
                // limits: the CPU path gives the same result (within the
                // parity tolerance) instead of a failure.
                self.cpu_fallbacks += 1;
                r = op.cpu(item.job, &item.img);
            }
            self.wait_ns += nanos(t.elapsed());
            self.submissions += 1;
            shared.deliver(item, r, save);
        }
    }

    /// Waits for `slot`'s flight, if any, and hands its images to the savers.
    fn complete(&mut self, slot: usize, save: &mpsc::SyncSender<(Item, Image)>, shared: &Shared<'_>) {
        let Some(f) = self.slots[slot].flight.take() else { return };
        let t = Instant::now();
        let polled = self
            .gpu
            .device()
            .poll(wgpu::PollType::Wait { submission_index: Some(f.index.clone()), timeout: None })
            .map_err(|e| e.to_string());
        let mapped = polled.and_then(|_| match f.mapped.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        });
        let t1 = Instant::now();
        self.wait_ns += nanos(t1 - t);
        let rb = self.slots[slot].readback.clone().expect("a flight has a readback buffer");
        let view = mapped.and_then(|_| rb.get_mapped_range(..f.len).map_err(|e| e.to_string()));
        match view {
            Ok(view) => {
                self.gpu.note_readback(f.len);
                if let Some(off) = f.timestamps {
                    let ts: [u64; 2] = bytemuck::pod_read_unaligned(&view[off as usize..off as usize + 16]);
                    if ts[1] > ts[0] {
                        self.intervals.push((ts[0], ts[1]));
                    }
                }
                let mut outs = Vec::with_capacity(f.entries.len());
                for e in &f.entries {
                    let l = e.layout;
                    let bytes = &view[e.offset as usize..(e.offset + l.bytes()) as usize];
                    outs.push(Image::new(
                        l.width as u32,
                        l.height as u32,
                        l.channels,
                        Samples::from_le_bytes(l.bits, bytes, l.samples()),
                    ));
                }
                drop(view);
                rb.unmap();
                self.readback_ns += nanos(t1.elapsed());
                for (e, out) in f.entries.into_iter().zip(outs) {
                    if let Some(rec) = e.rec {
                        rec.recycle(self.gpu);
                    }
                    shared.deliver(e.item, out, save);
                }
            }
            Err(msg) => {
                for e in f.entries {
                    shared.release();
                    shared.fail(e.item.job, &Error::Gpu { op: "stream readback".into(), message: msg.clone() });
                }
            }
        }
    }

    /// The slot's `k`-th persistent upload buffer, grown to at least `bytes`.
    fn upload_buffer(&mut self, slot: usize, k: usize, bytes: u64) -> wgpu::Buffer {
        let padded = bytes.max(4).next_multiple_of(4);
        let up = &mut self.slots[slot].uploads;
        if up.len() <= k || up[k].size() < padded {
            let b = self.gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuimg.stream.upload"),
                size: padded.next_power_of_two(),
                usage: Gpu::TENSOR_USAGE,
                mapped_at_creation: false,
            });
            if up.len() <= k {
                up.push(b);
            } else {
                up[k] = b;
            }
        }
        up[k].clone()
    }

    /// GPU busy time: the union of the submissions' timestamp intervals.
    pub(super) fn busy_s(&self) -> Option<f64> {
        if self.queries.is_none() || self.submissions == 0 {
            return None;
        }
        let mut iv = self.intervals.clone();
        iv.sort_unstable();
        let mut total = 0u64;
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in iv {
            cur = match cur {
                Some((s, e)) if a <= e => Some((s, e.max(b))),
                Some((s, e)) => {
                    total += e - s;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((s, e)) = cur {
            total += e - s;
        }
        Some(total as f64 * self.period_ns * 1e-9)
    }
}

/// Writes a timestamp with an empty compute pass (needs only TIMESTAMP_QUERY).
fn stamp(enc: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet, index: u32) {
    let _ = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("gpuimg.stream.timestamp"),
        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: None,
        }),
    });
}
