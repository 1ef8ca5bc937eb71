#!/usr/bin/env bash
# Installs the training photos ../shared/DATA.md allows and gathers them in data/train/
# (ignored by git): Debian's mate-backgrounds nature photos (GPL-2+) and the photos
# bundled in the scikit-image 0.26.0 wheel (public domain / CC0). Nothing else is fetched.
# Usage: scripts/get-data.sh [DEST]   (default data/train)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-data/train}"
mkdir -p "$dest"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ! -d /usr/share/backgrounds/mate/nature ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mate-backgrounds
fi
for f in /usr/share/backgrounds/mate/nature/*; do
  case "$f" in *.jpg|*.jpeg|*.png) cp -n "$f" "$dest/mate-$(basename "$f")";; esac
done

wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: scikit-image==0.26.0 -d "$wheel_dir"
# Photos only: the synthetic test patterns (chessboards, phantom, logo, horse silhouette) are left out.
python3 - "$wheel_dir" "$dest" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_image-*.whl"))[0]
skip = {"chessboard_GRAY.png", "chessboard_RGB.png", "phantom.png", "logo.png", "horse.png"}
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("skimage/data/") and base.endswith((".png", ".jpg")) and base not in skip:
            with open(os.path.join(sys.argv[2], "skimage-" + base), "wb") as out:
                out.write(z.read(n))
PY
echo "get-data: $(ls "$dest" | wc -l) images in $dest"
