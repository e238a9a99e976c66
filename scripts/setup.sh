# Sourced by scripts/demo and scripts/test: checks the tools bullpen needs and
# installs what can be installed without root (the wasm32-wasip2 target).

die() {
    echo "error: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. $2"
}

ensure_rust() {
    need cargo "Install Rust stable: https://rustup.rs (then open a new shell)."
    if ! rustc --print target-libdir --target wasm32-wasip2 >/dev/null 2>&1 ||
        [ ! -d "$(rustc --print target-libdir --target wasm32-wasip2 2>/dev/null)" ]; then
        if command -v rustup >/dev/null 2>&1; then
            echo "installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
            rustup target add wasm32-wasip2 >&2 || die "rustup could not add wasm32-wasip2"
        else
            die "the wasm32-wasip2 Rust target is missing and rustup is not available to add it: install it with your Rust distribution"
        fi
    fi
}

# Builds every example guest for wasm32-wasip2 and copies them, named after
# their crates (echo.wasm, json-transform.wasm, ...), into $1.
build_examples() {
    local out=$1
    local examples=(echo json-transform flaky validate rate-limited delayed custom-backoff misbehave)
    local args=()
    for e in "${examples[@]}"; do args+=(-p "$e"); done
    cargo build --quiet --profile guest --target wasm32-wasip2 "${args[@]}"
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    mkdir -p "$out"
    for e in "${examples[@]}"; do
        cp "$target_dir/wasm32-wasip2/guest/${e//-/_}.wasm" "$out/$e.wasm"
    done
}
