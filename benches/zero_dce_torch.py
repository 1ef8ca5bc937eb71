#!/usr/bin/env python3
"""Cross-check: gpuimg's Zero-DCE / Zero-DCE++ output against the same network
written in PyTorch with the reference's resampling calls
(F.interpolate(scale_factor=1/s, mode='bilinear') down, nn.UpsamplingBilinear2d
(scale_factor=s) up, x + r (x^2 - x) eight times).

Our own code (architecture from ../shared/SCIENCE.md), not the reference's.
Needs torch; images are BMP (gpuimg writes them) so no image library is needed.

    python3 benches/zero_dce_torch.py WEIGHTS.safetensors S IN.bmp GPUIMG_OUT.bmp [MORE_OUT.bmp ...]

Prints the largest difference, in 8-bit levels, between PyTorch (float32 and
float64) and each gpuimg output.
"""
import json
import struct
import sys

import torch
import torch.nn.functional as F


def read_bmp(path):
    b = open(path, "rb").read()
    off = struct.unpack("<I", b[10:14])[0]
    w, h = struct.unpack("<ii", b[18:26])
    ch = struct.unpack("<H", b[28:30])[0] // 8
    row = (w * ch + 3) // 4 * 4
    rows = [b[off + r * row : off + r * row + w * ch] for r in range(abs(h))]
    if h > 0:
        rows = rows[::-1]
    t = torch.frombuffer(bytearray(b"".join(rows)), dtype=torch.uint8).view(abs(h), w, ch)
    return t[..., [2, 1, 0]]  # BGR -> RGB (alpha dropped)


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(raw[8 + n + a : 8 + n + e]), dtype=torch.float32).view(info["shape"])
    return out


def enhance(w, x, s):
    plus = "e_conv1.depth_conv.weight" in w

    def layer(i, t):
        p = f"e_conv{i}"
        if plus:
            t = F.conv2d(t, w[p + ".depth_conv.weight"], w[p + ".depth_conv.bias"], padding=1, groups=t.shape[1])
            return F.conv2d(t, w[p + ".point_conv.weight"], w[p + ".point_conv.bias"])
        return F.conv2d(t, w[p + ".weight"], w[p + ".bias"], padding=1)

    xd = x if s == 1 else F.interpolate(x, scale_factor=1 / s, mode="bilinear")
    x1 = F.relu(layer(1, xd))
    x2 = F.relu(layer(2, x1))
    x3 = F.relu(layer(3, x2))
    x4 = F.relu(layer(4, x3))
    x5 = F.relu(layer(5, torch.cat([x3, x4], 1)))
    x6 = F.relu(layer(6, torch.cat([x2, x5], 1)))
    r = torch.tanh(layer(7, torch.cat([x1, x6], 1)))
    if s != 1:
        r = torch.nn.UpsamplingBilinear2d(scale_factor=s)(r)
    maps = torch.split(r, 3, dim=1) if r.shape[1] == 24 else [r] * 8
    for m in maps:
        x = x + m * (x * x - x)
    return x


def main():
    weights, s, src, outs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    x = read_bmp(src).permute(2, 0, 1)[None].float() / 255.0
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for dtype in (torch.float32, torch.float64):
        w = {k: v.to(dev, dtype) for k, v in read_safetensors(weights).items()}
        with torch.no_grad():
            y = enhance(w, x.to(dev, dtype), s)
        ref = (y.clamp(0, 1) * 255).round()[0].permute(1, 2, 0).double().cpu()
        for o in outs:
            d = (read_bmp(o).double() - ref).abs()
            print(f"{weights} s={s} torch {dtype} on {dev} vs {o}: max {d.max().item():.0f} levels, "
                  f"{(d > 0).double().mean().item() * 100:.3f}% of samples differ")


if __name__ == "__main__":
    main()
