#!/usr/bin/env python3
"""Ranks benchmark (issue #18): `mpirun -np R gpuimg sr ...` for R = 1, 2, 3
on this machine, over a folder and over one large image; speed-up and
efficiency against one process, and a model of N nodes from the measured
costs (seed 001 reports its speed-up on 32 nodes).

Run by benches/mpi/run.sh (which builds the release binary with the `mpi`
feature). Standard library only. Prints a markdown table for BENCHMARKS.md.

Caveat printed with the table: here every rank shares the same 2 cores, so
more ranks cannot add compute; the figures show the protocol's overhead
(one rank is the master, which decodes, splits, merges and encodes), not a
cluster's speed-up. The model below is for that.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time


def run(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return wall, p.stderr


def near_square_overhead(w, h, n, halo):
    """Extra pixels of seed 001's near-square tiling with a halo (the same
    algorithm as gpuimg::tiling::tiles), relative to the image."""
    if w < h:
        w, h = h, w
    r = min(max(round(math.sqrt(n * h / w)), 1), n)
    area, y = 0, 0
    for i in range(r):
        ni = (i + 1) * n // r - i * n // r
        rh = h - y if i + 1 == r else h * ni // n
        x = 0
        for j in range(ni):
            tw = w - x if j + 1 == ni else w // ni
            gx0, gy0 = max(x - halo, 0), max(y - halo, 0)
            gx1, gy1 = min(x + tw + halo, w), min(y + rh + halo, h)
            area += (gx1 - gx0) * (gy1 - gy0)
            x += tw
        y += rh
    return area / (w * h) - 1


def stripes_overhead(w, h, n, halo):
    sw = w // n
    area = 0
    for i in range(n):
        x0, x1 = i * sw, (w if i + 1 == n else (i + 1) * sw)
        area += (min(x1 + halo, w) - max(x0 - halo, 0)) * h
    return area / (w * h) - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpuimg", default="target/release/gpuimg")
    ap.add_argument("--work", default="target/mpi-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--file-size", default="640x480")
    ap.add_argument("--big", default="3000x2000")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--ranks", default="1,2,3")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the measurements here")
    a = ap.parse_args()

    g = a.gpuimg
    work = a.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(f"{work}/in")
    fw, fh = map(int, a.file_size.split("x"))
    bw, bh = map(int, a.big.split("x"))
    run([g, "-q", "--device", "cpu", "resize", "--width", str(fw), "--height", str(fh), "assets/chelsea.png", "-o", f"{work}/one.png"])
    for i in range(a.files):
        shutil.copy(f"{work}/one.png", f"{work}/in/f{i:03}.png")
    run([g, "-q", "--device", "cpu", "resize", "--width", str(bw), "--height", str(bh), "assets/chelsea.png", "-o", f"{work}/big.png"])

    mpirun = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    ranks = [int(r) for r in a.ranks.split(",")]
    run([g, "-q", "--device", "cpu", "resize", "--width", "16", "--height", "16", "assets/chelsea.png", "-o", f"{work}/tiny.png"])
    cases = {
        "start-up": lambda o: ["sr", "--scale", str(a.scale), f"{work}/tiny.png", "-o", o],
        "folder": lambda o: ["sr", "--scale", str(a.scale), f"{work}/in", "-o", o],
        "one image": lambda o: ["sr", "--scale", str(a.scale), f"{work}/big.png", "-o", o],
    }
    results = []
    for name, args in cases.items():
        out = f"{work}/out-{name.replace(' ', '-')}" + ("" if name == "folder" else ".png")
        times = {r: [] for r in ranks}
        for _ in range(a.repeat):
            for r in ranks:  # alternated, so drift hits every rank count alike
                cmd = mpirun + ["-np", str(r), g, "-q", "--device", a.device] + args(out) + ["--overwrite"]
                wall, _ = run(cmd)
                times[r].append(wall)
        base = statistics.median(times[ranks[0]])
        for r in ranks:
            med = statistics.median(times[r])
            workers = max(r - 1, 1)
            results.append({
                "case": name, "ranks": r, "workers": workers, "wall_s": med, "runs": times[r],
                "speedup": base / med, "efficiency_per_worker": base / med / workers, "efficiency_per_rank": base / med / r,
            })

    # The one image's serial part on the master (decode, encode) from one
    # process's stage times; the rest is the network, which tiles divide.
    _, err = run([g, "-v", "--device", a.device, "sr", "--scale", str(a.scale), f"{work}/big.png", "-o", f"{work}/v.png", "--overwrite"])
    m = re.search(r"decode ([0-9.]+).*encode ([0-9.]+)", err)
    decode_s, encode_s = (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)
    whole = next(x["wall_s"] for x in results if x["case"] == "one image" and x["ranks"] == ranks[0])
    serial = decode_s + encode_s
    par = max(whole - serial, 0.0)
    halo = 4 if a.scale == 2 else 6
    in_bytes, out_bytes = bw * bh * 3, bw * bh * 3 * a.scale * a.scale

    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; gpuimg {g}; device {a.device}; "
          f"{a.repeat} runs per cell, median wall time of the whole mpirun")
    print()
    print("The start-up rows time one 16x16 image: what launching the ranks and MPI_Init cost (one process does not start MPI).")
    print()
    print("| case | ranks (workers) | wall | speed-up vs 1 process | efficiency per worker | per rank |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for x in results:
        size = {"folder": f"{a.files} x {a.file_size}", "one image": a.big, "start-up": "16x16"}[x["case"]]
        print(f"| sr x{a.scale}, {x['case']} ({size}) | {x['ranks']} ({x['workers'] if x['ranks'] > 1 else 'none: one process'}) "
              f"| {x['wall_s']:.2f} s | {x['speedup']:.2f} | {x['efficiency_per_worker']:.2f} | {x['efficiency_per_rank']:.2f} |")
    print()
    print(f"Tiling overhead of the one image ({a.big}, halo {halo}), extra pixels processed:")
    print()
    print("| tiles | near-square | stripes |")
    print("| ---: | ---: | ---: |")
    for n in [2, 4, 8, 16, 32]:
        print(f"| {n} | {near_square_overhead(bw, bh, n, halo) * 100:.2f}% | {stripes_overhead(bw, bh, n, halo) * 100:.2f}% |")
    print()
    print(f"Model of N nodes like this one for the one image: T(N) = serial + parallel x (1 + overhead(N)) / N + "
          f"bytes(N) / bandwidth, with serial (the master's decode + encode) = {serial:.2f} s and parallel = "
          f"{par:.2f} s measured here, bytes(N) = the tiles with their halos in ({in_bytes / 1e6:.0f} MB x (1 + overhead)) "
          f"and out ({out_bytes / 1e6:.0f} MB), all through the master's link:")
    print()
    print("| nodes | 10 Gb/s: time | speed-up | 100 Gb/s: time | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    model = []
    for n in [1, 2, 4, 8, 16, 32]:
        row = [n]
        for bw_bytes in [1.25e9, 12.5e9]:
            if n == 1:
                t = whole
            else:
                ov = near_square_overhead(bw, bh, n, halo)
                t = serial + par * (1 + ov) / n + (in_bytes * (1 + ov) + out_bytes) / bw_bytes
            row += [t, whole / t]
        model.append(row)
        print(f"| {n} | {row[1]:.2f} s | {row[2]:.1f} | {row[3]:.2f} s | {row[4]:.1f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "serial_s": serial, "parallel_s": par, "model": model}, f, indent=1)


if __name__ == "__main__":
    main()
