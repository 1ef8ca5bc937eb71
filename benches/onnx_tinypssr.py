#!/usr/bin/env python3
"""Peer benchmark: the same TinyPSSR graph in ONNX Runtime, PNG in to PNG out.

Builds the ONNX graph from gpuimg's safetensors weights (Conv, PRelu, and
DepthToSpace in CRD mode, which is PyTorch's PixelShuffle), runs R, G and B as a
batch of three single-channel images like gpuimg does, and prints the time of
each stage. With --compare it also reports how far its output is from gpuimg's.

Bench helper only (not a runtime dependency). Set up once:
    python3 -m venv target/ortvenv
    target/ortvenv/bin/pip install onnxruntime==1.23.2 onnx numpy pillow
Usage:
    target/ortvenv/bin/python benches/onnx_tinypssr.py WEIGHTS IN.png OUT.png \
        [--threads N] [--repeat K] [--compare GPUIMG_OUT.png]
"""
import argparse
import json
import struct
import time

t_start = time.perf_counter()
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

t_imported = time.perf_counter()


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).copy()
    return out


def build_graph(w):
    stages = 0
    while f"stages.{stages}.conv1.weight" in w:
        stages += 1
    nodes, inits = [], []
    cur = "x"
    for s in range(stages):
        for layer in range(1, 5):
            p = f"stages.{s}.conv{layer}"
            k = w[p + ".weight"].shape[-1]
            inits += [numpy_helper.from_array(w[p + ".weight"], p + ".w"), numpy_helper.from_array(w[p + ".bias"], p + ".b")]
            out = f"s{s}c{layer}"
            nodes.append(helper.make_node("Conv", [cur, p + ".w", p + ".b"], [out], pads=[k // 2] * 4, kernel_shape=[k, k]))
            cur = out
            if layer < 4:
                a = f"stages.{s}.prelu{layer}.weight"
                inits.append(numpy_helper.from_array(w[a].reshape(-1, 1, 1), a))
                out = f"s{s}p{layer}"
                nodes.append(helper.make_node("PRelu", [cur, a], [out]))
                cur = out
        out = "y" if s == stages - 1 else f"s{s}up"
        nodes.append(helper.make_node("DepthToSpace", [cur], [out], blocksize=2, mode="CRD"))
        cur = out
    g = helper.make_graph(
        nodes,
        "tinypssr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, "H", "W"])],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--compare")
    a = ap.parse_args()

    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(build_graph(read_safetensors(a.weights)), so, providers=["CPUExecutionProvider"])
    t1 = time.perf_counter()
    img = np.asarray(Image.open(a.input).convert("RGB"))
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[:, None, :, :], dtype=np.float32) / 255.0
    t2 = time.perf_counter()
    runs = []
    for _ in range(a.repeat):
        r0 = time.perf_counter()
        (y,) = sess.run(None, {"x": x})
        runs.append(time.perf_counter() - r0)
    t3 = time.perf_counter()
    out = np.clip(np.floor(y[:, 0] * 255.0 + 0.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(out).save(a.output)
    t4 = time.perf_counter()
    print(
        f"onnxruntime {ort.__version__}: import {t_imported - t_start:.3f} s, session {t1 - t0:.3f} s, "
        f"decode {t2 - t1:.3f} s, network median {sorted(runs)[len(runs) // 2]:.3f} s (min {min(runs):.3f}), "
        f"encode {t4 - t3:.3f} s, whole process {t4 - t_start:.3f} s"
    )
    if a.compare:
        ref = np.asarray(Image.open(a.compare).convert("RGB")).astype(int)
        print(f"max |onnxruntime - gpuimg| = {np.abs(ref - out.astype(int)).max()} levels")


if __name__ == "__main__":
    main()
