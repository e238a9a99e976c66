# Sourced by scripts/demo and scripts/test: checks the tools bullpen needs and
# installs what can be installed without root (the wasm32-wasip2 target).

die() {
    echo "error: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. $2"
}

# Installs Debian packages ($2...) when this shell may (root, apt-get),
# refreshing the package lists once if the first try fails; otherwise dies
# with $1 and the command to run.
apt_install() {
    local why=$1
    shift
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "$why (Debian: apt-get install $*)"
    fi
    echo "installing $* (apt-get install $*)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 && return
    echo "apt-get install $* failed: refreshing the package lists (apt-get update) and trying again" >&2
    apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 ||
        die "apt-get install $* failed"
}

ensure_rust() {
    need cargo "Install Rust stable: https://rustup.rs (then open a new shell)."
    need cc "bullpen's allocator (mimalloc) is C: install a C compiler (Debian: apt-get install build-essential)."
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
    local examples=(echo json-transform flaky validate rate-limited delayed custom-backoff misbehave render webhook fan-out)
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

# Installs BullMQ's own Node and Python clients, the peers of the interop
# tests, and exports BULLPEN_INTEROP_PYTHON (the venv's interpreter).
ensure_interop_peers() {
    need node "The interop tests run BullMQ's Node client: install Node.js 20 (Debian: apt-get install nodejs npm)."
    need npm "The interop tests run BullMQ's Node client: install npm (Debian: apt-get install npm)."
    need python3 "The interop tests run BullMQ's Python client: install python3 with venv (Debian: apt-get install python3 python3-venv)."
    # `npm install` with the lock file present installs the locked versions;
    # npm 11's `npm ci` rejects this lock over msgpackr-extract's optional
    # per-platform binaries, which `install` resolves from the same lock.
    for dir in tests/interop/node bench/node tests/deploy; do
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2) ||
            die "npm install in $dir failed"
    done
    local cache="${BULLPEN_CACHE:-$HOME/.cache/bullpen}"
    local venv="$cache/interop-venv"
    local stamp="$venv/requirements.sha256"
    local want
    want=$(sha256sum tests/interop/python/requirements.txt | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        rm -rf "$venv"
        mkdir -p "$cache"
        python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/python/requirements.txt >&2 ||
            die "pip install of tests/interop/python/requirements.txt failed"
        echo "$want" >"$stamp"
    fi
    export BULLPEN_INTEROP_PYTHON="$venv/bin/python"
}

# Finds Prometheus's promtool, which checks bullpen's /metrics text, and
# exports BULLPEN_PROMTOOL. Without one on PATH, takes it out of Debian's
# `prometheus` package into a cache (downloaded, not installed: no server
# is set up or started).
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        BULLPEN_PROMTOOL=$(command -v promtool)
    else
        local cache="${BULLPEN_CACHE:-$HOME/.cache/bullpen}/prometheus"
        BULLPEN_PROMTOOL="$cache/usr/bin/promtool"
        if [ ! -x "$BULLPEN_PROMTOOL" ]; then
            need apt-get "The metrics tests run promtool: install Prometheus (it comes with promtool)."
            local download
            download=$(mktemp -d)
            (cd "$download" && apt-get download prometheus >&2 2>/dev/null) ||
                die "apt-get download prometheus failed: install Prometheus's promtool (Debian: apt-get install prometheus)"
            mkdir -p "$cache"
            dpkg-deb -x "$download"/prometheus_*.deb "$cache" ||
                die "cannot unpack $download/prometheus_*.deb"
            rm -rf "$download"
        fi
    fi
    export BULLPEN_PROMTOOL
}

# Adds what a fully static build needs: Rust's x86_64-unknown-linux-musl
# target and musl's C compiler wrapper (bullpen's allocator and ring are C),
# from Debian's musl-tools when this shell may install packages.
ensure_musl() {
    if [ ! -d "$(rustc --print target-libdir --target x86_64-unknown-linux-musl 2>/dev/null)" ]; then
        command -v rustup >/dev/null 2>&1 ||
            die "the x86_64-unknown-linux-musl Rust target is missing and rustup is not available to add it"
        echo "installing the x86_64-unknown-linux-musl target (rustup target add x86_64-unknown-linux-musl)" >&2
        rustup target add x86_64-unknown-linux-musl >&2 || die "rustup could not add x86_64-unknown-linux-musl"
    fi
    command -v musl-gcc >/dev/null 2>&1 ||
        apt_install "musl-gcc is not installed: a static build compiles C with it" musl-tools
}

# Finds buildah (builds the OCI image), podman and runc (run it in the
# image's test), installing Debian's packages when this shell may.
ensure_containers() {
    local missing=()
    for tool in buildah podman runc; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} = 0 ] ||
        apt_install "${missing[*]} not installed: the image is built with buildah and tested with podman and runc" "${missing[@]}"
}

# Prints the path of the binary $1 of crate $2 at version $3, built once
# from crates.io into ~/.cache/bullpen/$1; dies with $4 when it cannot be.
cargo_tool() {
    local root="${BULLPEN_CACHE:-$HOME/.cache/bullpen}/$1"
    if [ ! -x "$root/bin/$1" ]; then
        echo "installing $1 $3 into $root (cargo install $2), once" >&2
        cargo install --quiet --locked "$2@$3" --root "$root" >&2 ||
            die "cargo install $2 failed: $4"
    fi
    echo "$root/bin/$1"
}

# Finds what the registry tests push to and push with: Debian's
# docker-registry (the CNCF Distribution registry) and the Bytecode
# Alliance's `wkg`.
ensure_oci_tools() {
    command -v docker-registry >/dev/null 2>&1 ||
        apt_install "docker-registry is not installed: the registry tests pull components from one" docker-registry
    BULLPEN_WKG=$(cargo_tool wkg wkg 0.16.1 "the registry tests push components with it") || exit 1
    export BULLPEN_WKG
}

# Finds what the signature tests sign with: OpenSSH's ssh-keygen and
# wasmsign2 (from wasmsign2-cli).
ensure_signing_tools() {
    command -v ssh-keygen >/dev/null 2>&1 ||
        apt_install "ssh-keygen is not installed: the signature tests make their keys with it" openssh-client
    BULLPEN_WASMSIGN2=$(cargo_tool wasmsign2 wasmsign2-cli 0.2.8 "the signature tests sign modules with it") || exit 1
    export BULLPEN_WASMSIGN2
}
