#!/usr/bin/env python3
"""Peer harness (issue #15): gpuimg's CPU path against what users would pick
instead, in one run on one machine, reported as gpuimg/peer time ratios
(below 1: gpuimg is faster).

  case            gpuimg (`gpuimg --device cpu bench`)   peer
  tinypssr_x2     tinypssr_x2 1920x1080 (8-bit in/out)   ONNX Runtime, the same graph from our weights (network only)
  tinypssr_x4     tinypssr_x4 1920x1080                  ONNX Runtime, likewise
  zero_dce_pp     zero_dce_pp 1200x900 (s = 12)          ONNX Runtime: downscale, network, upsample, curve, 8-bit in/out
  resize_quarter  resize_quarter 3000x5000               OpenCV cv2.resize INTER_LINEAR (same op: no antialiasing)
  augment_chain   augment_chain 3000x2000 (seed 004)     albumentations, its best order (colour jitter after the resize)
  augment_colour  augment_colour 3000x2000               OpenCV cv2.LUT of the three ops composed
  augment_jitter  augment_jitter 3000x2000               OpenCV cv2.transform with the jitter's 3x4 colour matrix
  resize (fir)    criterion `resize_peers/gpuimg_cpu`     fast_image_resize (`resize_peers/fast_image_resize`),
                                                         read from target/criterion if
                                                         `cargo bench --bench augment -- resize_peers` has run

Every peer runs with the same thread count as gpuimg (ORT intra-op threads,
cv2.setNumThreads). Times are medians of --repeat runs after one warm-up.
A peer whose module is missing is reported as not run, with the reason.

Usage (benches/peers/run.sh wraps it):
  target/peersvenv/bin/python benches/peers/peers.py --gpuimg target/release/gpuimg [--threads 2]
      [--repeat 5] [--json OUT.json] [--only CASE,...] [--smoke]
--smoke: tiny sizes and one repeat, for CI: checks the harness end to end
with whichever peers are installed (none on a fresh CI machine).
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def have(*mods):
    """None if every module imports, else the reason one does not."""
    for m in mods:
        try:
            importlib.import_module(m)
        except Exception as e:  # ImportError, or a broken wheel
            return f"{m} not importable ({type(e).__name__}); run benches/peers/setup.sh and use target/peersvenv/bin/python"
    return None


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(fn, repeat):
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return median(runs) * 1e3


def test_image(w, h):
    """gpuimg::bench::image(w, h): the same 8-bit RGB pattern gpuimg times."""
    import numpy as np

    i = np.arange(w * h * 3, dtype=np.int64)
    v = ((i * 7 % 251) + (i // (3 * w))) % 256
    return v.astype(np.uint8).reshape(h, w, 3)


def read_safetensors(path):
    """Our weights as numpy arrays (onnx_tinypssr.py's reader)."""
    sys.path.insert(0, os.path.join(ROOT, "benches"))
    from onnx_tinypssr import read_safetensors as read

    return read(path)


def ort_session(model_bytes, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def zero_dce_pp_graph(w, width, height, s, iterations=8):
    """Zero-DCE++ as gpuimg runs it: bilinear downscale by s (half-pixel),
    seven depthwise-separable layers (ReLU; skip concatenations; tanh), maps
    upsampled bilinearly with aligned corners, then `iterations` curve steps
    x <- x + r (x^2 - x). Input and output float (1, 3, H, W) in [0, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(arr, name))
        return name

    import numpy as np

    small = const("small_size", np.array([1, 3, height // s, width // s], dtype=np.int64))
    full = const("full_size", np.array([1, 3, height, width], dtype=np.int64))
    nodes.append(
        helper.make_node("Resize", ["x", "", "", small], ["xs"], mode="linear", coordinate_transformation_mode="half_pixel")
    )
    outs = []
    for i in range(7):
        if i == 0:
            ins = ["xs"]
        elif i in (4, 5, 6):
            a, b = {4: (2, 3), 5: (1, 4), 6: (0, 5)}[i]
            ins = [outs[a], outs[b]]
        else:
            ins = [outs[-1]]
        cur = ins[0]
        if len(ins) == 2:
            cur = f"cat{i}"
            nodes.append(helper.make_node("Concat", ins, [cur], axis=1))
        p = f"e_conv{i + 1}"
        dw, db = w[p + ".depth_conv.weight"], w[p + ".depth_conv.bias"]
        pw, pb = w[p + ".point_conv.weight"], w[p + ".point_conv.bias"]
        nodes.append(
            helper.make_node(
                "Conv", [cur, const(p + ".dw", dw), const(p + ".db", db)], [f"d{i}"], group=dw.shape[0], pads=[1, 1, 1, 1], kernel_shape=[3, 3]
            )
        )
        nodes.append(helper.make_node("Conv", [f"d{i}", const(p + ".pw", pw), const(p + ".pb", pb)], [f"c{i}"], kernel_shape=[1, 1]))
        nodes.append(helper.make_node("Tanh" if i == 6 else "Relu", [f"c{i}"], [f"o{i}"]))
        outs.append(f"o{i}")
    nodes.append(
        helper.make_node("Resize", [outs[-1], "", "", full], ["r"], mode="linear", coordinate_transformation_mode="align_corners")
    )
    cur = "x"
    for t in range(iterations):
        nodes += [
            helper.make_node("Mul", [cur, cur], [f"sq{t}"]),
            helper.make_node("Sub", [f"sq{t}", cur], [f"df{t}"]),
            helper.make_node("Mul", ["r", f"df{t}"], [f"st{t}"]),
            helper.make_node("Add", [cur, f"st{t}"], ["y" if t == iterations - 1 else f"x{t}"]),
        ]
        cur = f"x{t}"
    g = helper.make_graph(
        nodes,
        "zero_dce_pp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, height, width])],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def peer_tinypssr(scale, width, height, threads, repeat):
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "benches"))
    from onnx_tinypssr import build_graph

    sess = ort_session(build_graph(read_safetensors(os.path.join(ROOT, f"assets/tinypssr_x{scale}.safetensors"))), threads)
    img = test_image(width, height)
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[:, None, :, :], dtype=np.float32) / 255.0
    return timed(lambda: sess.run(None, {"x": x}), repeat), "onnxruntime, network only (R, G, B as a batch of 3)"


def peer_zero_dce_pp(width, height, threads, repeat):
    import numpy as np

    s = max(1, min(12, min(width, height) // 64))
    sess = ort_session(zero_dce_pp_graph(read_safetensors(os.path.join(ROOT, "assets/zero_dce_pp.safetensors")), width, height, s), threads)
    img = test_image(width, height)

    def run():
        x = img.transpose(2, 0, 1)[None].astype(np.float32) * (1.0 / 255.0)
        (y,) = sess.run(None, {"x": x})
        return (np.clip(y[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)

    return timed(run, repeat), f"onnxruntime, whole model s={s}, 8-bit in and out"


def peer_resize(width, height, threads, repeat):
    import cv2

    cv2.setNumThreads(threads)
    img = test_image(width, height)
    size = (width // 4, height // 4)
    return timed(lambda: cv2.resize(img, size, interpolation=cv2.INTER_LINEAR), repeat), f"opencv {cv2.__version__} INTER_LINEAR"


def peer_chain(width, height, threads, repeat):
    import albumentations as A
    import cv2

    cv2.setNumThreads(threads)
    img = test_image(width, height)
    x0, y0, cw, ch = width // 10, height // 10, max(1, width * 4 // 5), max(1, height * 4 // 5)
    rw, rh = max(1, width * 2 // 5), max(1, height * 2 // 5)
    # Geometric ops first, colour jitter on the smallest image: the order
    # that costs albumentations least (the per-pixel colour ops on 4% of the
    # pixels), the same ops and parameters as gpuimg::bench::seed004_chain.
    chain = A.Compose(
        [
            A.HorizontalFlip(p=1.0),
            A.Rotate(limit=(10, 10), p=1.0, border_mode=cv2.BORDER_CONSTANT),
            A.Crop(x_min=x0, y_min=y0, x_max=x0 + cw, y_max=y0 + ch),
            A.Resize(height=rh, width=rw, interpolation=cv2.INTER_LINEAR),
            A.ColorJitter(brightness=(1.1, 1.1), contrast=(0.9, 0.9), saturation=(1.2, 1.2), hue=(0.03, 0.03), p=1.0),
        ]
    )
    return timed(lambda: chain(image=img)["image"], repeat), f"albumentations {A.__version__} (opencv {cv2.__version__}), best order"


def peer_colour(width, height, threads, repeat):
    import cv2
    import numpy as np

    cv2.setNumThreads(threads)
    img = test_image(width, height)

    # gpuimg::bench::COLOUR_OPS (brightness 1.2, contrast 0.8 around 0.5,
    # gamma 0.7) composed into one 256-entry table and applied with cv2.LUT:
    # OpenCV's fastest idiom for per-channel ops (the table is rebuilt every
    # run, as a per-image random jitter would need).
    def run():
        v = np.arange(256, dtype=np.float32) / 255.0
        v = 0.8 * (1.2 * v) + 0.5 * (1.0 - 0.8)
        v = np.maximum(v, 0.0) ** 0.7
        lut = (np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return cv2.LUT(img, lut)

    return timed(run, repeat), f"opencv {cv2.__version__} LUT (the three ops composed)"


def jitter_matrix():
    """gpuimg::bench::JITTER_OPS (brightness 1.1, contrast 0.9, saturation
    1.2, hue 0.03) composed as gpuimg's planner builds them (augment/plan.rs:
    identity_plus, the YIQ hue rotation), as a 3x4 matrix on 0-255 values."""
    import numpy as np

    luma = np.array([0.299, 0.587, 0.114])

    def ident_plus(f, blend):
        return f * np.eye(3) + (1.0 - f) * np.tile(blend, (3, 1))

    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
    a = 2 * np.pi * 0.03
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    # (matrix, offset in 0..1 units), applied in order.
    stages = [
        (ident_plus(1.1, np.zeros(3)), np.zeros(3)),
        (ident_plus(0.9, np.zeros(3)), np.full(3, 0.5 * (1 - 0.9))),
        (ident_plus(1.2, luma), np.zeros(3)),
        (from_yiq @ rot @ to_yiq, np.zeros(3)),
    ]
    m, t = np.eye(3), np.zeros(3)
    for sm, st in stages:
        m, t = sm @ m, sm @ t + st
    return np.hstack([m, 255.0 * t[:, None]]).astype(np.float32)


def peer_jitter(width, height, threads, repeat):
    import cv2

    cv2.setNumThreads(threads)
    img = test_image(width, height)
    m = jitter_matrix()
    # cv2.transform: per pixel, the 3x4 matrix on (r, g, b, 1), saturated to
    # 8 bits: OpenCV's one call for a colour matrix.
    return timed(lambda: cv2.transform(img, m), repeat), f"opencv {cv2.__version__} transform (3x4 colour matrix)"


def criterion_median_ms(group, fn_id, param):
    """Median (ms) from criterion's saved estimates, or None."""
    p = os.path.join(ROOT, "target", "criterion", group, fn_id, param, "new", "estimates.json")
    try:
        with open(p) as f:
            return json.load(f)["median"]["point_estimate"] / 1e6
    except (OSError, KeyError, ValueError):
        return None


def gpuimg_bench(gpuimg, cases, size, threads):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [gpuimg, "--device", "cpu", "bench", "--only", ",".join(cases), "--sizes", size, "--threads", str(threads), "--json", out, "-q"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            rows = json.load(f)["rows"]
    return {r["name"]: r["median_ms"] for r in rows if r["backend"] == "cpu" and r["threads"] == threads}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpuimg", default=os.path.join(ROOT, "target", "release", "gpuimg"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", help="comma-separated case names (default: every case)")
    a = ap.parse_args()
    repeat = 1 if a.smoke else a.repeat
    big = (lambda w, h: (64, 48)) if a.smoke else (lambda w, h: (w, h))
    cases = [
        ("tinypssr_x2", big(1920, 1080), ("onnxruntime", "onnx", "numpy"), lambda w, h: peer_tinypssr(2, w, h, a.threads, repeat)),
        ("tinypssr_x4", big(1920, 1080), ("onnxruntime", "onnx", "numpy"), lambda w, h: peer_tinypssr(4, w, h, a.threads, repeat)),
        ("zero_dce_pp", big(1200, 900), ("onnxruntime", "onnx", "numpy"), lambda w, h: peer_zero_dce_pp(w, h, a.threads, repeat)),
        ("resize_quarter", big(3000, 5000), ("cv2", "numpy"), lambda w, h: peer_resize(w, h, a.threads, repeat)),
        ("augment_chain", big(3000, 2000), ("albumentations", "cv2", "numpy"), lambda w, h: peer_chain(w, h, a.threads, repeat)),
        ("augment_colour", big(3000, 2000), ("cv2", "numpy"), lambda w, h: peer_colour(w, h, a.threads, repeat)),
        ("augment_jitter", big(3000, 2000), ("cv2", "numpy"), lambda w, h: peer_jitter(w, h, a.threads, repeat)),
    ]
    rows = []
    print(f"peer harness: {a.threads} threads, median of {repeat}; gpuimg {a.gpuimg}")
    print("| case | size | gpuimg ms | peer | peer ms | gpuimg/peer |")
    print("| --- | --- | ---: | --- | ---: | ---: |")
    only = set(a.only.split(",")) if a.only else None
    for name, (w, h), mods, peer in cases:
        if only is not None and name not in only:
            continue
        ours = gpuimg_bench(a.gpuimg, [name], f"{w}x{h}", a.threads).get(name)
        if ours is None:
            sys.exit(f"peers: gpuimg bench gave no CPU row for {name}")
        why = have(*mods)
        if why:
            ms, label = None, f"not run: {why}"
        else:
            ms, label = peer(w, h)
        ratio = f"{ours / ms:.2f}" if ms else "-"
        print(f"| {name} | {w}x{h} | {ours:.2f} | {label} | {f'{ms:.2f}' if ms else '-'} | {ratio} |", flush=True)
        rows.append({"case": name, "width": w, "height": h, "gpuimg_ms": ours, "peer": label, "peer_ms": ms})
    # fast_image_resize: criterion's own run (benches/augment.rs), if saved.
    for size in ["3000x5000", "2000x1500"]:
        fir = criterion_median_ms("resize_peers", "fast_image_resize", size)
        ours = criterion_median_ms("resize_peers", "gpuimg_cpu", size)
        if fir and ours:
            label = "fast_image_resize (criterion resize_peers, its last saved run; both on rayon's default threads)"
            print(f"| resize antialiased to 1/4 | {size} | {ours:.2f} | {label} | {fir:.2f} | {ours / fir:.2f} |")
            rows.append({"case": "resize_antialiased", "size": size, "gpuimg_ms": ours, "peer": "fast_image_resize", "peer_ms": fir})
    if not any(r.get("case") == "resize_antialiased" for r in rows):
        print("| resize antialiased | - | - | fast_image_resize: no saved criterion run (cargo bench --bench augment -- resize_peers, then rerun) | - | - |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "repeat": repeat, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
