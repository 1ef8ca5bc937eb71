//! A headless "application" with its own wgpu device renders a frame of its
//! own with a render pipeline, then, in the same command encoder and the
//! same submission, upscales it x2 with gpuimg's `SuperResolver` (texture in,
//! texture out, alpha kept) and enhances the upscaled frame with gpuimg's
//! `Enhancer` (Zero-DCE++), and writes the frames as PNG. It checks the
//! upscaled frame against what `gpuimg --device cpu sr` computes for the
//! rendered frame, and the enhanced one against `gpuimg --device cpu enhance`
//! of the upscaled frame; it exits non-zero if either is more than one level
//! off. It also compresses the upscaled frame with gpuimg's `Codec`
//! (TinyCompress, recorded into the same encoder), writes the `.tcz`, decodes
//! it into another texture, and checks that against `gpuimg --device cpu
//! decompress` of the same file.
//!
//! cargo run --example host_app [-- OUT_DIR]

use std::sync::Arc;

use gpuimg::embed::{Codec, CodecOptions, EnhanceOptions, Enhancer, SrOptions, SuperResolver};
use gpuimg::models::{zero_dce::Arch, TinyPssr, ZeroDce};
use gpuimg::wgpu;
use gpuimg::{Backend, Gpu, Samples};

const W: u32 = 96;
const H: u32 = 64;
const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;

/// The application's own shader: a dim scene (rings over a gradient, a
/// translucent left edge), drawn by one full-screen triangle.
const SCENE: &str = r#"
@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let xy = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u)) * 2.0 - 1.0;
    return vec4<f32>(xy, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) p: vec4<f32>) -> @location(0) vec4<f32> {
    let uv = p.xy / vec2<f32>(96.0, 64.0);
    let d = distance(uv, vec2<f32>(0.55, 0.5));
    let ring = 0.5 + 0.5 * sin(d * 24.0);
    // Linear values: the sRGB target encodes them on write.
    let c = vec3<f32>(0.03 + 0.05 * ring, 0.02 + 0.03 * uv.y, 0.04 * uv.x);
    return vec4<f32>(c, clamp(uv.x * 3.0, 0.2, 1.0));
}
"#;

fn texture(device: &wgpu::Device, label: &str, w: u32, h: u32, usage: wgpu::TextureUsages) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: FORMAT,
        usage,
        view_formats: &[],
    })
}

/// A readback buffer for `t` and the copy into it, recorded into `enc`.
fn copy_out(device: &wgpu::Device, enc: &mut wgpu::CommandEncoder, t: &wgpu::Texture) -> (wgpu::Buffer, u32) {
    let row = (t.width() * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app.readback"),
        size: (row * t.height()) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    enc.copy_texture_to_buffer(
        t.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buf,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: None },
        },
        t.size(),
    );
    (buf, row)
}

/// The mapped readback as an RGBA image (rows unpadded).
fn read(
    device: &wgpu::Device,
    (buf, row): &(wgpu::Buffer, u32),
    w: u32,
    h: u32,
) -> Result<gpuimg::image_io::Image, Box<dyn std::error::Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buf.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r).unwrap());
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let px: Vec<u8> =
        buf.get_mapped_range(..)?.chunks(*row as usize).flat_map(|r| r[..w as usize * 4].to_vec()).collect();
    buf.unmap();
    Ok(gpuimg::image_io::Image::new(w, h, 4, Samples::U8(px))?)
}

fn worst(a: &gpuimg::image_io::Image, b: &gpuimg::image_io::Image) -> i32 {
    match (&a.samples, &b.samples) {
        (Samples::U8(x), Samples::U8(y)) if x.len() == y.len() => {
            x.iter().zip(y).map(|(&p, &q)| (p as i32 - q as i32).abs()).max().unwrap_or(0)
        }
        _ => i32::MAX,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/host_app".into()));
    std::fs::create_dir_all(&out_dir)?;

    // --- The application's device (a software adapter where there is no GPU). ---
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).or_else(|_| {
            pollster::block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    force_fallback_adapter: true,
                    ..Default::default()
                }),
            )
        })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("application device: {}", adapter.get_info().name);

    // --- The application's render pipeline and its textures. ---
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app.scene"),
        source: wgpu::ShaderSource::Wgsl(SCENE.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("app.scene"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(FORMAT.into())],
        }),
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        multiview_mask: None,
        cache: None,
    });
    let copy = wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST;
    let frame = texture(&device, "app.frame", W, H, wgpu::TextureUsages::RENDER_ATTACHMENT | copy);
    let big = texture(&device, "app.big", 2 * W, 2 * H, copy);
    let bright = texture(&device, "app.bright", 2 * W, 2 * H, copy);
    let restored = texture(&device, "app.restored", 2 * W, 2 * H, copy);

    // --- gpuimg's model objects, built once on the application's device. ---
    let gpu = Arc::new(Gpu::from_existing(device.clone(), queue.clone()));
    let tinypssr = TinyPssr::bundled(2)?;
    let zero_dce = ZeroDce::bundled(Arch::ZeroDcePlus)?;
    let sr = SuperResolver::new(gpu.clone(), &tinypssr, SrOptions::new(W, H, FORMAT))?;
    let enhance_opts = EnhanceOptions::new(2 * W, 2 * H, FORMAT);
    let enhancer = Enhancer::new(gpu.clone(), &zero_dce, enhance_opts)?;
    let tinycompress = gpuimg::models::tinycompress::TinyCompress::bundled(4)?;
    let codec = Codec::new(gpu.clone(), &tinycompress, CodecOptions::new(2 * W, 2 * H, FORMAT))?;

    // --- One frame: the app's pass, gpuimg's upscale and enhancement, the app's copies. ---
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("app.frame") });
    {
        let view = frame.create_view(&Default::default());
        let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("app.scene"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&pipeline);
        pass.draw(0..3, 0..1);
    }
    sr.encode(&mut enc, &frame, &big)?;
    enhancer.encode(&mut enc, &big, &bright)?;
    codec.encode(&mut enc, &big)?;
    let reads =
        [copy_out(&device, &mut enc, &frame), copy_out(&device, &mut enc, &big), copy_out(&device, &mut enc, &bright)];
    queue.submit([enc.finish()]);

    let rendered = read(&device, &reads[0], W, H)?;
    let upscaled = read(&device, &reads[1], 2 * W, 2 * H)?;
    let enhanced = read(&device, &reads[2], 2 * W, 2 * H)?;

    // --- The upscaled frame's .tcz, and its decode in a second submission. ---
    let tcz = codec.read_encoded()?;
    std::fs::write(out_dir.join("frame_sr.tcz"), tcz.to_bytes())?;
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("app.decode") });
    codec.decode(&mut enc, &tcz, &restored)?;
    let read_restored = copy_out(&device, &mut enc, &restored);
    queue.submit([enc.finish()]);
    let decoded = read(&device, &read_restored, 2 * W, 2 * H)?;
    for (name, img) in [
        ("frame.png", &rendered),
        ("frame_sr.png", &upscaled),
        ("frame_sr_enhanced.png", &enhanced),
        ("frame_sr_tcz.png", &decoded),
    ] {
        gpuimg::image_io::save(img, &out_dir.join(name))?;
    }

    // --- The CLI's CPU path on the same pixels. ---
    let want_sr = gpuimg::ops::super_resolve(&Backend::Cpu, &tinypssr, &rendered)?;
    let want_enh = gpuimg::ops::enhance(
        &Backend::Cpu,
        &zero_dce,
        &upscaled,
        enhance_opts.scale_factor(),
        enhance_opts.iterations,
    )?;
    let (d_sr, d_enh) = (worst(&upscaled, &want_sr), worst(&enhanced, &want_enh));
    let file = gpuimg::codec::Tcz::parse(&std::fs::read(out_dir.join("frame_sr.tcz"))?)?;
    let want_dec = gpuimg::codec::decompress(&Backend::Cpu, &tinycompress, &file)?;
    // The decoded texture is RGBA with alpha opaque; the CLI's decode RGB.
    let d_dec = match (&decoded.samples, &want_dec.samples) {
        (Samples::U8(x), Samples::U8(y)) if x.len() / 4 == y.len() / 3 => {
            x.chunks(4)
                .zip(y.chunks(3))
                .map(|(p, q)| {
                    if p[3] != 255 {
                        i32::MAX
                    } else {
                        (0..3).map(|c| (p[c] as i32 - q[c] as i32).abs()).max().unwrap()
                    }
                })
                .max()
                .unwrap_or(0)
        }
        _ => i32::MAX,
    };
    let mean = |img: &gpuimg::image_io::Image| match &img.samples {
        Samples::U8(s) => {
            s.chunks(4).map(|p| p[0] as f64 + p[1] as f64 + p[2] as f64).sum::<f64>() / (3 * s.len() / 4) as f64
        }
        Samples::U16(_) => 0.0,
    };
    println!(
        "frame {W}x{H} -> {}x{}: max |app - CLI| {d_sr} level(s) after sr, {d_enh} after enhance, {d_dec} after a .tcz round trip ({} bytes); mean level {:.1} -> {:.1}; PNGs in {}",
        2 * W,
        2 * H,
        file.to_bytes().len(),
        mean(&upscaled),
        mean(&enhanced),
        out_dir.display()
    );
    if d_sr > 1 || d_enh > 1 || d_dec > 1 || mean(&enhanced) <= mean(&upscaled) {
        return Err("the frame differs from the CLI's output on the same image".into());
    }
    println!("ok: gpuimg upscaled, enhanced and compressed the application's frame inside its own encoder");
    Ok(())
}
