#!/bin/sh
# Fetch, where PyPI is reachable, the wheels `bench/gpu.sh kvpress` installs on
# the GPU machine (which reaches no network but has torch, numpy, pandas,
# pyarrow, huggingface_hub, accelerate and peft): kvpress, the transformers
# release below its bound (< 5.3) and what kvpress imports beyond that image.
# They land in .device/wheels (git-ignored; about 25 MB, one device call).
set -eu
cd "$(dirname "$0")/.."
DEST=${KVZ_WHEELS:-.device/wheels}
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    -d "$DEST" kvpress==0.5.5 transformers==5.2.0 tokenizers==0.22.2 typer-slim cachetools==5.5.2 \
    datasets dill multiprocess fire termcolor
ls -la "$DEST"
