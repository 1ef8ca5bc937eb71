# Sourced by the checks for other targets (wasm-check.sh, arm-check.sh):
# `have_target NAME TARGET` returns 0 when the rustup target is installed or
# could be added, else prints "NAME: NOT RUN: why" and returns 1.
have_target() {
    local name=$1 target=$2
    if ! command -v rustup >/dev/null 2>&1; then
        echo "$name: NOT RUN: no rustup to install the $target target"
        return 1
    fi
    if ! rustup target list --installed | grep -qx "$target"; then
        if ! timeout 300 rustup target add "$target" >/dev/null 2>&1; then
            echo "$name: NOT RUN: the $target target is not installed and rustup could not add it (offline?)"
            return 1
        fi
    fi
}
