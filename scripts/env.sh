# Sourced by the other scripts: settings that make the software Vulkan driver quiet and stable.
# Mesa's WSI complains on every start when XDG_RUNTIME_DIR is unset; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/gpuimg-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
# llvmpipe/lavapipe threads: a fixed count keeps timings and scheduling stable on small CI machines.
export LP_NUM_THREADS="${LP_NUM_THREADS:-2}"
