#!/usr/bin/env bash
# Installs the Python peers of the peer harness (benches/peers/peers.py) into
# target/peersvenv: ONNX Runtime (TinyPSSR and Zero-DCE++ graphs built from
# our weights), OpenCV (resize) and albumentations (the seed-004 chain).
# Bench-only; nothing of gpuimg needs them. About 200 MB of wheels.
# Usage: benches/peers/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/peersvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  onnxruntime==1.23.2 onnx==1.19.1 numpy==2.2.6 pillow==11.3.0 \
  opencv-python-headless==4.12.0.88 albumentations==2.0.8
"$venv/bin/python" -c 'import onnxruntime, cv2, albumentations; print("peers:", "onnxruntime", onnxruntime.__version__, "opencv", cv2.__version__, "albumentations", albumentations.__version__)'
