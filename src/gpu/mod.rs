//! The GPU side: adapter choice, device context, pipeline cache, buffer pool,
//! dispatch, and the upload/readback helpers every op uses.
//!
//! The host application owns the device: [`Gpu::new`] opens one for the CLI,
//! [`Gpu::from_existing`] wraps a device an embedding application already has.

mod download;
mod kernel;
mod record;

pub use download::Download;
pub(crate) use download::Mapping;
pub use kernel::{BindingKind, KernelDesc};
pub use record::{run_recorded, Recorded};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// A tensor living in a GPU storage buffer (f32, NCHW, contiguous).
///
/// The buffer may be larger than `shape` needs (pooled buffers are rounded up).
#[derive(Debug, Clone)]
pub struct GpuTensor {
    /// The storage buffer holding the values.
    pub buffer: wgpu::Buffer,
    /// The logical shape.
    pub shape: Shape,
}

impl GpuTensor {
    /// The buffer, once checked to hold the tensor's shape: an error naming
    /// `kernel` when it is smaller (a shader would read or write past the
    /// data it was given: a wrong result, not an error, on most drivers).
    pub fn buf(&self, kernel: &'static str) -> Result<&wgpu::Buffer> {
        check_buffer(kernel, "tensor", &self.buffer, self.shape.bytes())?;
        Ok(&self.buffer)
    }

    /// An error naming `op` unless this tensor has shape `want`.
    pub fn expect_shape(&self, op: &'static str, want: Shape) -> Result<()> {
        if self.shape != want {
            return Err(Error::invalid(op, format!("output is {}, expected {want}", self.shape)));
        }
        Ok(())
    }
}

/// An error naming `kernel` and `what` unless `buffer` holds at least `need` bytes.
pub fn check_buffer(kernel: &'static str, what: &str, buffer: &wgpu::Buffer, need: u64) -> Result<()> {
    if buffer.size() < need {
        return Err(Error::invalid(
            kernel,
            format!("the {what} buffer holds {} bytes, the shape needs {need}", buffer.size()),
        ));
    }
    Ok(())
}

/// Records a clear of `buffer` (from `offset`, `size` bytes or to the end)
/// once checked: COPY_DST usage, a range inside the buffer and aligned to
/// 4 bytes; an error naming `kernel` otherwise (wgpu would raise it as an
/// uncaptured error, which panics a host with the default handler).
pub fn clear_buffer(
    kernel: &'static str,
    encoder: &mut wgpu::CommandEncoder,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
) -> Result<()> {
    let end = size.map_or(buffer.size(), |s| offset.saturating_add(s));
    if !buffer.usage().contains(wgpu::BufferUsages::COPY_DST) {
        return Err(Error::invalid(kernel, "the output buffer lacks COPY_DST usage (it is cleared first)"));
    }
    if !offset.is_multiple_of(4) || !end.is_multiple_of(4) || end > buffer.size() || offset > end {
        return Err(Error::invalid(
            kernel,
            format!(
                "cannot clear bytes {offset}..{end} of a {}-byte buffer (4-byte aligned, inside it)",
                buffer.size()
            ),
        ));
    }
    encoder.clear_buffer(buffer, offset, size);
    Ok(())
}

/// A compiled kernel: its pipeline and the bind-group layout made from its descriptor.
#[derive(Debug)]
pub struct Pipeline {
    /// The compute pipeline (entry point `main`).
    pub pipeline: wgpu::ComputePipeline,
    /// The explicit bind-group layout (group 0).
    pub layout: wgpu::BindGroupLayout,
}

/// What `gpuimg info` reports about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterReport {
    /// Adapter name as the driver gives it.
    pub name: String,
    /// Backend (Vulkan, Metal, DX12).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// True for software rasterisers such as Mesa's llvmpipe (lavapipe).
    pub software: bool,
    /// Largest buffer the adapter allows.
    pub max_buffer_size: u64,
    /// Largest storage-buffer binding.
    pub max_storage_buffer_binding_size: u64,
    /// Workgroup (shared) memory per workgroup.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Whether timestamp queries are supported (GPU busy-time measurement).
    pub timestamp_query: bool,
}

impl AdapterReport {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            software: info.device_type == wgpu::DeviceType::Cpu,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            timestamp_query: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND and friends are honoured.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// For the doc examples: a context on the adapter there is, or `None` with
/// a note on stderr when none opens, unless `GPUIMG_REQUIRE_GPU` is set (as
/// in CI), where no adapter is a panic: the examples really run there.
#[doc(hidden)]
pub fn doctest_gpu() -> Option<Arc<Gpu>> {
    match Gpu::new() {
        Ok(g) => Some(Arc::new(g)),
        Err(e) if std::env::var_os("GPUIMG_REQUIRE_GPU").is_none() => {
            eprintln!("no GPU adapter, the example's GPU part not run: {e}");
            None
        }
        Err(e) => panic!("GPUIMG_REQUIRE_GPU is set and no GPU adapter opens: {e}"),
    }
}

/// All adapters wgpu can see, best first (discrete, integrated, virtual, other, software).
pub fn adapters() -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    all.sort_by_key(|a| rank(a.get_info().device_type));
    all
}

/// Reports on every adapter, best first.
pub fn adapter_reports() -> Vec<AdapterReport> {
    adapters().iter().map(AdapterReport::of).collect()
}

/// How to choose an adapter.
#[derive(Debug, Clone, Default)]
pub struct AdapterRequest {
    /// Accept software adapters (llvmpipe/lavapipe). The CLI's `auto` does not:
    /// the rayon CPU path is faster than a software rasteriser.
    pub allow_software: bool,
    /// Only adapters whose name contains this (case-insensitive). Defaults to
    /// the `GPUIMG_ADAPTER` environment variable. Without either, a process
    /// that is one of several MPI ranks takes the best kind's adapter at its
    /// local rank (modulo their number), so the ranks on a node share its GPUs.
    pub name: Option<String>,
}

/// Picks the best adapter for a request, or says why there is none.
pub fn pick_adapter(req: &AdapterRequest) -> Result<wgpu::Adapter> {
    let name = req.name.clone().or_else(|| std::env::var("GPUIMG_ADAPTER").ok().filter(|s| !s.is_empty()));
    let all = adapters();
    if all.is_empty() {
        return Err(Error::NoAdapter(
            "wgpu found no Vulkan/Metal/DX12 adapter (on Linux without a GPU driver, install mesa-vulkan-drivers)"
                .into(),
        ));
    }
    let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
    let mut eligible: Vec<wgpu::Adapter> = all
        .into_iter()
        .filter(|a| {
            let info = a.get_info();
            let soft_ok = req.allow_software || info.device_type != wgpu::DeviceType::Cpu;
            let name_ok = name.as_ref().is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()));
            soft_ok && name_ok
        })
        .collect();
    // One of several MPI ranks on a node, with no adapter named: spread the
    // ranks over the node's adapters of the best kind, by local rank.
    if let (None, Some(local), Some(first)) = (&name, crate::launch::Launch::local_rank_in_job(), eligible.first()) {
        let best = rank(first.get_info().device_type);
        eligible.retain(|a| rank(a.get_info().device_type) == best);
        let n = eligible.len();
        eligible.rotate_left(local % n);
    }
    let chosen = eligible.into_iter().next();
    chosen.ok_or_else(|| {
        let why = match &name {
            Some(n) => format!("none matches '{n}'"),
            None => "only software adapters".to_string(),
        };
        Error::NoAdapter(format!("{why} (found: {})", names.join(", ")))
    })
}

/// Buffers kept for reuse, keyed by (size, usage).
#[derive(Debug, Default)]
struct BufferPool {
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
}

/// How many idle buffers of one (size, usage) the pool keeps.
const POOL_DEPTH: usize = 8;

/// What a context has recorded and moved across the bus: the engine's own
/// counters, read with [`Gpu::traffic`] (`gpuimg bench --json` reports them
/// per image). Every dispatch goes through [`Gpu::dispatch`], every upload
/// through [`Gpu::write_bytes`] (weights included), every readback through
/// [`Gpu::map_read`] or the stream ring's mapping; the params uniforms
/// (16-64 bytes per dispatch) are not counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bytes written from the host into GPU buffers.
    pub bytes_up: u64,
    /// Bytes mapped back to the host.
    pub bytes_down: u64,
    /// Bind groups made (each with its params uniform): one per dispatch,
    /// except dispatches replayed from a [`DispatchCache`].
    pub bind_groups: u64,
}

impl Traffic {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: Traffic) -> Traffic {
        Traffic {
            dispatches: self.dispatches - earlier.dispatches,
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
            bind_groups: self.bind_groups - earlier.bind_groups,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    dispatches: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    bind_groups: AtomicU64,
}

/// What a cached dispatch is keyed on: the kernel, its params bytes and its buffers.
type DispatchKey = (&'static str, Vec<u8>, Vec<wgpu::Buffer>);

/// A cached dispatch: its key and its bind group.
type Cached = (DispatchKey, Arc<wgpu::BindGroup>);

/// A dispatch's key hashed without building it (no allocation on a hit).
fn dispatch_hash(name: &str, params: &[u8], buffers: &[&wgpu::Buffer]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    params.hash(&mut h);
    for b in buffers {
        b.hash(&mut h);
    }
    h.finish()
}

/// Whether the stored `key` is this dispatch's.
fn same_dispatch(key: &DispatchKey, name: &str, params: &[u8], buffers: &[&wgpu::Buffer]) -> bool {
    key.0 == name && key.1 == params && key.2.len() == buffers.len() && key.2.iter().zip(buffers).all(|(a, b)| a == *b)
}

/// Bind groups (each with its params uniform) kept for dispatches that
/// repeat exactly: the same kernel, params and buffers, frame after frame.
/// A model object ([`crate::embed`]) owns one and records inside
/// [`DispatchCache::active`], so its second frame makes no bind group and
/// no uniform buffer. It holds at most [`DispatchCache::CAPACITY`] entries
/// (then starts over), and keeps the buffers it has seen alive.
#[derive(Debug, Default)]
pub struct DispatchCache {
    /// By [`dispatch_hash`]; the keys tell colliding dispatches apart.
    map: Mutex<HashMap<u64, Vec<Cached>>>,
}

thread_local! {
    static ACTIVE_CACHE: std::cell::RefCell<Option<Arc<DispatchCache>>> = const { std::cell::RefCell::new(None) };
}

impl DispatchCache {
    /// Most bind groups kept.
    pub const CAPACITY: usize = 1024;

    /// Runs `record` with this cache serving the [`Gpu::dispatch`]es it
    /// makes on this thread (nested calls: the innermost cache serves).
    pub fn active<T>(self: &Arc<Self>, record: impl FnOnce() -> T) -> T {
        struct Restore(Option<Arc<DispatchCache>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                ACTIVE_CACHE.with(|c| *c.borrow_mut() = prev);
            }
        }
        let _restore = Restore(ACTIVE_CACHE.with(|c| c.borrow_mut().replace(self.clone())));
        record()
    }

    /// Bind groups held.
    pub fn len(&self) -> usize {
        self.map.lock().expect("dispatch cache poisoned").values().map(Vec::len).sum()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The device context: device, queue, pipeline cache and buffer pool.
#[derive(Debug)]
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pipelines: Mutex<HashMap<&'static str, Arc<Pipeline>>>,
    pool: Mutex<BufferPool>,
    counters: Counters,
}

impl Gpu {
    /// Opens the best adapter, software ones included (for tests and `--device gpu`).
    pub fn new() -> Result<Self> {
        Self::with_request(&AdapterRequest { allow_software: true, name: None })
    }

    /// Opens the adapter a request picks, with all of its limits and, where
    /// available, timestamp queries.
    pub fn with_request(req: &AdapterRequest) -> Result<Self> {
        let adapter = pick_adapter(req)?;
        let info = adapter.get_info();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpuimg"),
            required_features: adapter.features() & wanted,
            // Image tensors are large: take every limit the adapter offers.
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::Device { adapter: info.name.clone(), reason: e.to_string() })?;
        Ok(Self::assemble(device, queue, info))
    }

    /// Wraps a device and queue the host application created. gpuimg then
    /// records into that device's command encoders and shares its memory.
    pub fn from_existing(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::assemble(device, queue, info)
    }

    fn assemble(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        Gpu {
            device,
            queue,
            info,
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(BufferPool::default()),
            counters: Counters::default(),
        }
    }

    /// Dispatches recorded and bytes moved since the context opened.
    pub fn traffic(&self) -> Traffic {
        let c = &self.counters;
        Traffic {
            dispatches: c.dispatches.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            bind_groups: c.bind_groups.load(Ordering::Relaxed),
        }
    }

    /// Counts `bytes` mapped back to the host (for readbacks outside [`Gpu::map_read`]).
    pub fn note_readback(&self, bytes: u64) {
        self.counters.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` sent to the device (for uploads outside [`Gpu::upload`] and [`Gpu::write_bytes`]).
    pub fn note_upload(&self, bytes: u64) {
        self.counters.bytes_up.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Writes `bytes` at the start of `buf` through the queue, the last
    /// partial word zero-padded, and counts them.
    pub fn write_bytes(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        let whole = bytes.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(buf, 0, &bytes[..whole]);
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.queue.write_buffer(buf, whole as u64, &tail);
        }
        self.counters.bytes_up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// The adapter this context runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    /// Whether the device was opened with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Builds the pipelines of `descs` now, those not built yet (a warm-up:
    /// otherwise each is compiled the first time a kernel is recorded, tens
    /// of milliseconds in a host's first frame). Returns how many it built.
    pub fn prepare(&self, descs: &[&'static KernelDesc]) -> usize {
        let mut built = 0;
        for d in descs {
            if !self.has_pipeline(d) {
                self.pipeline(d);
                built += 1;
            }
        }
        built
    }

    /// How many pipelines this context has built.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().expect("pipeline cache poisoned").len()
    }

    fn has_pipeline(&self, desc: &KernelDesc) -> bool {
        self.pipelines.lock().expect("pipeline cache poisoned").contains_key(desc.name)
    }

    /// The cached pipeline of a kernel, built on first use from its descriptor.
    pub fn pipeline(&self, desc: &'static KernelDesc) -> Arc<Pipeline> {
        let mut cache = self.pipelines.lock().expect("pipeline cache poisoned");
        if let Some(p) = cache.get(desc.name) {
            return p.clone();
        }
        let label = desc.label();
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(desc.source.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = desc
            .bindings
            .iter()
            .enumerate()
            .map(|(i, kind)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        BindingKind::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, layout });
        cache.insert(desc.name, p.clone());
        p
    }

    /// A buffer of at least `size` bytes from the pool, or a new one.
    /// Return it with [`Gpu::recycle_buffer`] once the work using it is submitted.
    pub fn take_buffer(&self, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(256);
        let key = (size, usage.bits());
        if let Some(b) = self.pool.lock().expect("pool poisoned").free.get_mut(&key).and_then(Vec::pop) {
            return b;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpuimg.pool"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Hands a buffer back to the pool. Safe once every command using it has
    /// been submitted: later uploads are ordered after that submission.
    pub fn recycle_buffer(&self, buffer: wgpu::Buffer) {
        let key = (buffer.size(), buffer.usage().bits());
        let mut pool = self.pool.lock().expect("pool poisoned");
        let v = pool.free.entry(key).or_default();
        if v.len() < POOL_DEPTH {
            v.push(buffer);
        }
    }

    /// Number of idle buffers in the pool (for tests and diagnostics).
    pub fn pooled_buffers(&self) -> usize {
        self.pool.lock().expect("pool poisoned").free.values().map(Vec::len).sum()
    }

    /// Usage of tensor buffers: storage, and copies both ways.
    pub const TENSOR_USAGE: wgpu::BufferUsages =
        wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

    /// Checks a buffer size against the device limits.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        let l = self.device.limits();
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        if bytes > limit {
            return Err(Error::TooLarge { what: what.to_string(), needed: bytes, limit });
        }
        Ok(())
    }

    /// The largest single intermediate the image ops plan for: half the
    /// storage-binding limit, at most 256 MiB (larger images run in strips).
    pub fn tensor_cap(&self) -> usize {
        let l = self.device.limits();
        (l.max_storage_buffer_binding_size.min(l.max_buffer_size) / 2).min(256 << 20) as usize
    }

    /// A pooled tensor buffer for `shape` (contents undefined).
    pub fn alloc(&self, shape: Shape) -> Result<GpuTensor> {
        self.check_size(&format!("tensor {shape}"), shape.bytes())?;
        Ok(GpuTensor { buffer: self.take_buffer(shape.bytes(), Self::TENSOR_USAGE), shape })
    }

    /// Returns a tensor's buffer to the pool.
    pub fn recycle(&self, t: GpuTensor) {
        self.recycle_buffer(t.buffer)
    }

    /// Uploads a host tensor into a pooled buffer.
    pub fn upload(&self, t: &Tensor) -> Result<GpuTensor> {
        let g = self.alloc(t.shape)?;
        self.write_bytes(&g.buffer, bytemuck::cast_slice(&t.data));
        Ok(g)
    }

    /// Uploads bytes into a pooled storage buffer (padded to 4 bytes).
    pub fn upload_bytes(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let padded = (bytes.len() as u64).next_multiple_of(4);
        self.check_size("input bytes", padded)?;
        let b = self.take_buffer(padded, Self::TENSOR_USAGE);
        self.write_bytes(&b, bytes);
        Ok(b)
    }

    /// A storage buffer initialised with f32 values (weights, slopes); not pooled.
    pub fn constant(&self, label: &str, values: &[f32]) -> wgpu::Buffer {
        // An empty binding is invalid: give zero-length data one dummy value.
        let data: &[f32] = if values.is_empty() { &[0.0] } else { values };
        self.counters.bytes_up.fetch_add(std::mem::size_of_val(data) as u64, Ordering::Relaxed);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Records one dispatch of a kernel into `encoder`: binding 0 gets `params`
    /// (a fresh small uniform buffer), bindings 1.. get `buffers` in order.
    pub fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        desc: &'static KernelDesc,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        if buffers.len() + 1 != desc.bindings.len() {
            return Err(Error::invalid(
                "dispatch",
                format!("{} takes {} buffers, got {}", desc.name, desc.bindings.len() - 1, buffers.len()),
            ));
        }
        if params.len() as u64 != desc.params_size {
            return Err(Error::invalid(
                "dispatch",
                format!("{} params are {} bytes, got {}", desc.name, desc.params_size, params.len()),
            ));
        }
        let max = self.device.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::invalid(
                "dispatch",
                format!("{}: {groups:?} workgroups exceed the device limit of {max} per dimension", desc.name),
            ));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        self.check_bindings(desc, buffers)?;
        let p = self.pipeline(desc);
        let label = desc.label();
        let make = || {
            let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(&label),
                contents: params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            entries.extend(
                buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
            );
            self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
            Arc::new(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&label),
                layout: &p.layout,
                entries: &entries,
            }))
        };
        let bind = match ACTIVE_CACHE.with(|c| c.borrow().clone()) {
            None => make(),
            Some(cache) => {
                let hash = dispatch_hash(desc.name, params, buffers);
                let mut map = cache.map.lock().expect("dispatch cache poisoned");
                let hit = map
                    .get(&hash)
                    .and_then(|v| v.iter().find(|(k, _)| same_dispatch(k, desc.name, params, buffers)))
                    .map(|(_, b)| b.clone());
                match hit {
                    Some(b) => b,
                    None => {
                        if map.values().map(Vec::len).sum::<usize>() >= DispatchCache::CAPACITY {
                            map.clear();
                        }
                        let key: DispatchKey =
                            (desc.name, params.to_vec(), buffers.iter().map(|&b| b.clone()).collect());
                        let b = make();
                        map.entry(hash).or_default().push((key, b.clone()));
                        b
                    }
                }
            }
        };
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&label), timestamp_writes: None });
        pass.set_pipeline(&p.pipeline);
        pass.set_bind_group(0, bind.as_ref(), &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What wgpu would otherwise raise as an uncaptured error when the bind
    /// group is made or the pass recorded (which, in a host application
    /// with wgpu's default handler, panics): a buffer without `STORAGE`
    /// usage, an empty one, one larger than the device's largest storage
    /// binding (work that size must be split in strips), a size that is not
    /// a multiple of 4, and an output buffer bound twice.
    fn check_bindings(&self, desc: &KernelDesc, buffers: &[&wgpu::Buffer]) -> Result<()> {
        let max = self.device.limits().max_storage_buffer_binding_size;
        for (i, (b, kind)) in buffers.iter().zip(&desc.bindings[1..]).enumerate() {
            let slot = i + 1;
            let bad = |why: String| Err(Error::invalid(desc.name, format!("binding {slot}: {why}")));
            if !b.usage().contains(wgpu::BufferUsages::STORAGE) {
                return bad(format!("the buffer lacks STORAGE usage (it has {:?})", b.usage()));
            }
            if b.size() == 0 || !b.size().is_multiple_of(4) {
                return bad(format!("{} bytes: a storage binding must be a non-zero multiple of 4", b.size()));
            }
            if b.size() > max {
                return bad(format!(
                    "{} bytes, over this device's largest storage binding ({max} bytes): run the work in strips",
                    b.size()
                ));
            }
            if *kind == BindingKind::ReadWrite && buffers.iter().enumerate().any(|(j, o)| j != i && *o == *b) {
                return bad("the output buffer is also bound as another binding".into());
            }
        }
        Ok(())
    }

    /// Records work with `record`, submits it, waits for it, and turns any wgpu
    /// validation or out-of-memory error raised meanwhile into an `Err`.
    pub fn execute<T>(&self, op: &str, record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<T>) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
        let recorded = record(&mut encoder);
        let submitted = recorded.inspect(|_v| {
            self.queue.submit([encoder.finish()]);
        });
        let oom_err = pollster::block_on(oom.pop());
        let val_err = pollster::block_on(validation.pop());
        if let Some(e) = oom_err {
            return Err(Error::GpuOutOfMemory { op: op.to_string(), message: e.to_string() });
        }
        if let Some(e) = val_err {
            return Err(Error::GpuValidation { op: op.to_string(), message: e.to_string() });
        }
        let value = submitted?;
        self.wait(op)?;
        Ok(value)
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self, op: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu { op: op.to_string(), message: e.to_string() })
    }

    /// Copies `len` bytes of `buffer` back to the host (one submission, waits).
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        let padded = len.max(4).next_multiple_of(4);
        let staging = self.take_buffer(padded, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        self.execute("gpuimg.readback", |enc| {
            enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded);
            Ok(())
        })?;
        let out = self.map_read(&staging, len);
        self.recycle_buffer(staging);
        out
    }

    /// Maps a MAP_READ buffer whose copy has been submitted, and copies out `len` bytes.
    pub fn map_read(&self, staging: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        let padded = len.max(4).next_multiple_of(4);
        let (tx, rx) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..padded, move |r| {
            let _ = tx.send(r);
        });
        self.wait("gpuimg.map")?;
        let map_err = |m: String| Error::Gpu { op: "gpuimg.map".into(), message: m };
        rx.recv().map_err(|e| map_err(e.to_string()))?.map_err(|e| map_err(e.to_string()))?;
        let bytes = {
            let view = staging.get_mapped_range(..padded).map_err(|e| map_err(e.to_string()))?;
            view[..len as usize].to_vec()
        };
        staging.unmap();
        self.note_readback(len);
        Ok(bytes)
    }

    /// Reads a GPU tensor back into a host tensor.
    pub fn download(&self, t: &GpuTensor) -> Result<Tensor> {
        let bytes = self.read_bytes(&t.buffer, t.shape.bytes())?;
        Tensor::from_vec(t.shape, bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Runs recorded work and reads `out` back in the same submission.
    pub fn run_and_read(
        &self,
        op: &str,
        out_bytes: u64,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<wgpu::Buffer>,
    ) -> Result<Vec<u8>> {
        let padded = out_bytes.max(4).next_multiple_of(4);
        let staging = self.take_buffer(padded, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let res = self.execute(op, |enc| {
            let src = record(enc)?;
            enc.copy_buffer_to_buffer(&src, 0, &staging, 0, padded);
            Ok(src)
        });
        let out = res.and_then(|_| self.map_read(&staging, out_bytes));
        self.recycle_buffer(staging);
        out
    }
}

impl Gpu {
    /// Runs an op end to end on host tensors: uploads `inputs` to pooled
    /// buffers, allocates the output, records with `record`, reads the output
    /// back in the same submission and recycles every buffer.
    pub fn run_tensors(
        &self,
        op: &str,
        inputs: &[&Tensor],
        out: Shape,
        record: impl FnOnce(&mut wgpu::CommandEncoder, &[GpuTensor], &GpuTensor) -> Result<()>,
    ) -> Result<Tensor> {
        let mut ins = Vec::with_capacity(inputs.len());
        for t in inputs {
            ins.push(self.upload(t)?);
        }
        let y = self.alloc(out)?;
        let r = self.run_and_read(op, out.bytes(), |enc| {
            record(enc, &ins, &y)?;
            Ok(y.buffer.clone())
        });
        for t in ins {
            self.recycle(t);
        }
        self.recycle(y);
        Tensor::from_vec(out, bytemuck::pod_collect_to_vec(&r?))
    }
}

/// Workgroup counts for a 1-D kernel over `len` items with `wg` invocations per
/// group, folded into two dimensions so large tensors stay under the
/// 65,535-groups-per-dimension limit. Shaders rebuild the index as
/// `gid.x + gid.y * num_workgroups.x * wg`.
pub fn linear_groups(len: usize, wg: u32) -> [u32; 3] {
    let groups = (len as u64).div_ceil(wg as u64);
    const MAX: u64 = 32768;
    if groups <= MAX {
        [groups as u32, 1, 1]
    } else {
        [MAX as u32, groups.div_ceil(MAX) as u32, 1]
    }
}

/// Workgroup counts for a kernel over a w x h grid of `planes` planes, with an
/// 8 x 8 workgroup.
pub fn grid_groups(w: usize, h: usize, planes: usize) -> [u32; 3] {
    [w.div_ceil(8) as u32, h.div_ceil(8) as u32, planes as u32]
}
