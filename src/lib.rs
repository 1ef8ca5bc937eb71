//! gpuimg: tiny neural image models and image preprocessing on any GPU
//! (wgpu + WGSL compute shaders), with a fast rayon CPU path for every kernel.
//!
//! # Embedding
//!
//! The host application owns the device. Build gpuimg's model objects on it
//! once, then record them per frame from your texture to your texture in
//! your own command encoder ([`embed`]: formats, strips, errors):
//!
//! ```no_run
//! use std::sync::Arc;
//! use gpuimg::embed::{EnhanceOptions, Enhancer, SrOptions, SuperResolver};
//! use gpuimg::models::{zero_dce::Arch, TinyPssr, ZeroDce};
//! use gpuimg::{wgpu, Gpu};
//! # fn demo(device: wgpu::Device, queue: wgpu::Queue, frame: wgpu::Texture, big: wgpu::Texture, bright: wgpu::Texture) -> gpuimg::Result<()> {
//! let gpu = Arc::new(Gpu::from_existing(device.clone(), queue.clone()));
//! let (w, h, format) = (frame.width(), frame.height(), frame.format());
//! let sr = SuperResolver::new(gpu.clone(), &TinyPssr::bundled(2)?, SrOptions::new(w, h, format))?;
//! let enhancer = Enhancer::new(gpu, &ZeroDce::bundled(Arch::ZeroDcePlus)?, EnhanceOptions::new(2 * w, 2 * h, format))?;
//! let mut encoder = device.create_command_encoder(&Default::default());
//! // ... your passes render into `frame` ...
//! sr.encode(&mut encoder, &frame, &big)?;
//! enhancer.encode(&mut encoder, &big, &bright)?;
//! queue.submit([encoder.finish()]);
//! # Ok(()) }
//! ```
//!
//! [`embed::Codec`] does the same for TinyCompress: `encode` records a
//! texture's analysis into your encoder, `read_encoded` maps the codes and
//! writes the `.tcz`, `decode` records a `.tcz` back into a texture.
//! `examples/host_app.rs` is a complete application doing all three. Below the
//! model objects, every kernel records into your encoder on your own buffers:
//!
//! ```no_run
//! use gpuimg::{wgpu, Gpu, GpuTensor, Shape, kernels::Prelu};
//! # fn demo(device: wgpu::Device, queue: wgpu::Queue, x: wgpu::Buffer, slopes: wgpu::Buffer, y: wgpu::Buffer) -> gpuimg::Result<()> {
//! let gpu = Gpu::from_existing(device.clone(), queue.clone());
//! let shape = Shape::new(1, 3, 480, 640);
//! let x = GpuTensor { buffer: x, shape };
//! let y = GpuTensor { buffer: y, shape };
//! let mut encoder = device.create_command_encoder(&Default::default());
//! // ... your own passes ...
//! Prelu.encode(&gpu, &mut encoder, &x, &slopes, &y)?;
//! // ... more of your passes ...
//! queue.submit([encoder.finish()]);
//! # Ok(()) }
//! ```
//!
//! Every op also runs end to end on host tensors (`Conv2d::gpu`, `Conv2d::cpu`),
//! with wgpu validation and out-of-memory errors returned as [`Error`] values.
//! `examples/embed.rs` is a complete program at the kernel level.
//!
//! # When gpuimg submits, polls or waits
//!
//! - The `encode` functions (model objects in [`embed`], kernels, `record_*`
//!   in [`ops`]) only record
//!   into the encoder you pass: no submission, no poll, no wait. They check
//!   their buffers first (usage, sizes against shapes, the device's largest
//!   storage binding, an output bound twice) and return
//!   [`Error::InvalidArgument`] instead of letting wgpu raise an uncaptured
//!   error, which its default handler turns into a panic.
//! - [`Gpu::download_async`] submits one copy of its own and returns a
//!   future that resolves when the device is polled (by you, or
//!   [`Gpu::poll`]); it never waits. [`embed::Codec::read_encoded_async`]
//!   submits nothing (its copy was recorded by `encode`) and likewise
//!   resolves when the device is polled; [`embed::Codec::read_encoded`]
//!   waits. [`embed::Codec::decode`] entropy-decodes on the CPU and makes a
//!   staging buffer of the codes, copied inside your encoder.
//! - Everything that takes or returns host data ([`Gpu::execute`],
//!   [`Gpu::download`], `Kernel::gpu`, the image ops such as
//!   [`ops::super_resolve`] with a GPU backend) submits its own command
//!   buffer and waits with `device.poll(wait)`, which on a device you share
//!   also waits for the work you queued before.
//! - [`Gpu::upload`] and friends write through `queue.write_buffer`, which
//!   wgpu stages until the next submission.

#![warn(missing_docs)]

// `fsutil`, `launch` and `outputs` are the command-line tool's plumbing
// (atomic writes and temporary files, the MPI launcher's environment, a
// batch's output names): public for the binary, hidden from the docs and
// not part of the API.

pub use wgpu;

pub mod augment;
pub mod backend;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cluster;
pub mod codec;
pub mod cpu;
pub mod data;
pub mod embed;
pub mod error;
#[cfg(feature = "eval")]
pub mod eval;
#[doc(hidden)]
pub mod fsutil;
pub mod gpu;
pub mod image_io;
pub mod kernels;
#[doc(hidden)]
pub mod launch;
pub mod metrics;
pub mod models;
pub mod ops;
#[doc(hidden)]
pub mod outputs;
pub mod pixel;
pub mod resample;
pub mod rng;
pub mod rows;
pub mod stream;
pub mod tensor;
pub mod tiling;
#[cfg(feature = "train")]
pub mod train;
pub mod weights;

pub use backend::{Backend, DeviceChoice};
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuTensor};
pub use tensor::{Samples, Shape, Tensor};
