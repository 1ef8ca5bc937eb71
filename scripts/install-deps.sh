#!/usr/bin/env bash
# Installs what gpuimg needs beyond the Rust toolchain on Debian/Ubuntu: the Vulkan
# loader, and Mesa's software Vulkan driver (lavapipe) when no Vulkan driver is present.
# With --mpi, also what the `mpi` cargo feature builds and runs with: Open MPI
# (mpirun and its headers) and libclang (for the bindings' generator).
# Idempotent; does nothing when everything is already there.
set -euo pipefail

have_loader() { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; }
have_icd() {
  local d
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    ls "$d"/*.json >/dev/null 2>&1 && return 0
  done
  [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]
}

pkgs=()
if [ "${1:-}" = "--mpi" ]; then
  command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 || pkgs+=(openmpi-bin libopenmpi-dev)
  ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || pkgs+=(libclang-dev)
fi
have_loader || pkgs+=(libvulkan1)
have_icd || pkgs+=(mesa-vulkan-drivers)
if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${pkgs[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
