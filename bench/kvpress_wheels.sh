#!/bin/sh
# Fetch, where PyPI is reachable, the wheels `bench/gpu.sh session` installs on
# the GPU machine, which reaches no network. Its image already holds torch,
# transformers 5.17, tokenizers, accelerate, peft, pandas, numpy, requests and
# huggingface_hub; these are what kvpress 0.5.5 imports beyond them. kvpress
# declares transformers < 5.3, but its KVzipPress runs on 5.17 (checked on the
# CPU: bench/kvpress_compare.py --shape tiny --device cpu keeps 0.300 of the
# pairs), so transformers is not carried. They land in .device/wheels
# (git-ignored, about 1 MB).
set -eu
cd "$(dirname "$0")/.."
DEST=${KVZ_WHEELS:-.device/wheels}
rm -rf "$DEST"
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    -d "$DEST" kvpress==0.5.5 cachetools==5.5.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fire==0.7.1 \
    termcolor==3.3.0
ls -la "$DEST"
