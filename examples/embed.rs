//! An application that owns its wgpu device hands it to gpuimg and runs a
//! gpuimg kernel inside its own command encoder and submission, between its
//! own commands, on its own buffers. Exits non-zero if the result is wrong.
//!
//! cargo run --example embed

use gpuimg::kernels::{Conv2d, ZeroDceEnhance};
use gpuimg::wgpu::{self, util::DeviceExt};
use gpuimg::{Gpu, GpuTensor, Shape, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --- The application's own setup: instance, adapter, device. ---
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).or_else(|_| {
            // No hardware adapter: take a software one (CI runs on lavapipe).
            pollster::block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    force_fallback_adapter: true,
                    ..Default::default()
                }),
            )
        })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("application device: {}", adapter.get_info().name);

    // --- The application's own data: a dark 3-channel image and 3 curve maps. ---
    let shape = Shape::new(1, 3, 48, 64);
    let image: Vec<f32> = (0..shape.len()).map(|i| 0.05 + 0.2 * ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let upload = |label: &str, data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage,
        })
    };
    let img_buf = upload("app.image", &image);
    let maps_buf = upload("app.maps", &vec![0.0; shape.len()]);
    let out_buf = upload("app.out", &vec![0.0; shape.len()]);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app.readback"),
        size: shape.bytes(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    // --- Hand the device to gpuimg. ---
    let gpu = Gpu::from_existing(device.clone(), queue.clone());
    // A pointwise conv whose weights make the curve maps r = -0.25 for every channel
    // (zero weights, bias -0.25): the maps come from a gpuimg conv on the GPU.
    let conv = Conv2d::pointwise(3, 3);
    let weights = gpu.constant("app.conv.w", &vec![0.0; conv.weight_len()]);
    let bias = gpu.constant("app.conv.b", &[-0.25, -0.25, -0.25]);
    let curve = ZeroDceEnhance { iterations: 8, per_iteration: false, colour: 3 };

    let x = GpuTensor { buffer: img_buf, shape };
    let maps = GpuTensor { buffer: maps_buf, shape };
    let y = GpuTensor { buffer: out_buf, shape };

    // --- One encoder, one submission: the app's copy follows gpuimg's passes. ---
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("app.frame") });
    conv.encode(&gpu, &mut encoder, &x, &weights, &bias, &maps)?;
    curve.encode(&gpu, &mut encoder, &x, &maps, &y)?;
    encoder.copy_buffer_to_buffer(&y.buffer, 0, &readback, 0, shape.bytes());
    queue.submit([encoder.finish()]);

    let (tx, rx) = std::sync::mpsc::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r).unwrap());
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..)?);
    readback.unmap();

    // --- Check against gpuimg's CPU path. ---
    let x_host = Tensor::from_vec(shape, image)?;
    let r_host = Tensor::from_vec(shape, vec![-0.25; shape.len()])?;
    let want = curve.cpu(&x_host, &r_host)?;
    let worst = got.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let mean_in = x_host.data.iter().sum::<f32>() / shape.len() as f32;
    let mean_out = got.iter().sum::<f32>() / shape.len() as f32;
    println!("mean brightness {mean_in:.3} -> {mean_out:.3}; max |gpu - cpu| = {worst:.2e}");
    if worst > 1e-5 || mean_out <= mean_in {
        return Err(format!("embedded run gave a wrong result (max diff {worst})").into());
    }
    println!("ok: gpuimg ran inside the application's own submission");
    Ok(())
}
