#!/bin/bash
# The GPU runs recorded in bench/RESULTS.md, as one script.
#
#   bench/gpu.sh build          build the CUDA variant (build-cuda/)
#   bench/gpu.sh test           CUDA kernels and forward pass against the CPU path
#   bench/gpu.sh bench          speed: SmolLM2 (real) and Llama-3-8B shape (synthetic)
#   bench/gpu.sh compile        kvz compile speed on the GPU, both shapes
#   bench/gpu.sh runtime        time to first token from the store (bench/runtime.sh)
#   bench/gpu.sh cache          decode attention and tok/s, full vs ratio-0.3 loaded cache
#   bench/gpu.sh kvpress        kvpress's KVzipPress (HF transformers + PyTorch) on the
#                               shapes and lengths of `compile`, from wheels carried in
#                               .device/wheels (bench/kvpress_wheels.sh fetches them)
#
# On a machine without the Debian -dev packages, put their .deb files in
# $KVZ_DEBS (default .device/debs): they are unpacked into .deps/ and used from
# there (headers, pkg-config, libraries).
#
# On the device tool's machine (each call carries at most 64 MiB; ignored files
# written there stay while it is warm; no network), one session runs:
#   here:    bench/gpu.sh split-model && bench/kvpress_wheels.sh   (and .deb files in .device/debs)
#   call 1:  carry .device/debs .device/model.part00    bench/gpu.sh model && bench/gpu.sh build
#   call 2:  carry .device/model.part01 .device/wheels  bench/gpu.sh model && bench/gpu.sh test
#   then one call each (10 minutes at most): bench, compile, cache, kvpress, runtime
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=${KVZ_DEBS:-.device/debs}
if ! pkg-config --exists openblas libpcre2-8 libxxhash cmocka 2>/dev/null && [ -d "$DEBS" ]; then
    if [ ! -d .deps ]; then
        for f in "$DEBS"/*.deb; do dpkg -x "$f" .deps; done
    fi
    D=$PWD/.deps/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_LIBDIR=$D/pkgconfig:$D/openblas-pthread/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$PWD/.deps
    export LD_LIBRARY_PATH=$D:$D/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export EXTRA_LDFLAGS="-Wl,-rpath-link,$D -Wl,-rpath-link,$D/openblas-pthread"
fi
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUTDIR=${OUT:-bench/out}
mkdir -p "$OUTDIR"

case "${1:-all}" in
split-model)
    # the 98 MB model in two parts the device tool can carry, one per call
    mkdir -p .device
    rm -f .device/model.part*
    split -n 2 -d "$MODEL" .device/model.part
    ls -la .device/model.part*
    ;;
model)
    # gather the parts carried so far; join them once both have arrived
    mkdir -p models/.parts
    for p in .device/model.part*; do [ -f "$p" ] && cp "$p" models/.parts/; done
    if [ -f models/.parts/model.part00 ] && [ -f models/.parts/model.part01 ] && [ ! -f "$MODEL" ]; then
        cat models/.parts/model.part00 models/.parts/model.part01 >"$MODEL.tmp"
        want=$(sed -n 's/^MODEL_SHA256="\(.*\)"$/\1/p' scripts/setup.sh)
        if echo "$want  $MODEL.tmp" | sha256sum -c --status; then
            mv "$MODEL.tmp" "$MODEL"
        else
            rm -f "$MODEL.tmp"
            echo "the joined model does not match scripts/setup.sh's sha256" >&2
            exit 1
        fi
    fi
    ls -la models/.parts "$MODEL" 2>/dev/null || true
    ;;
build)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    make cuda -j"$(nproc)" EXTRA_LDFLAGS="${EXTRA_LDFLAGS:-}" >"$OUTDIR/build.log" 2>&1 || { tail -40 "$OUTDIR/build.log"; exit 1; }
    echo "built build-cuda/"
    ;;
test)
    status=0
    KVZ_MODEL=$MODEL ./build-cuda/tests/cuda/test_cuda_kernels || status=1
    KVZ_MODEL=$MODEL ./build-cuda/tests/cuda/test_cuda_forward || status=1
    KVZ_MODEL=$MODEL ./build-cuda/tests/cuda/test_cuda_compile || status=1
    exit $status
    ;;
bench)
    K=./build-cuda/kvz
    echo "== SmolLM2-135M-Instruct Q4_1 (real), cuda"
    $K bench --model "$MODEL" --device cuda --prefill 512,2048,8064 --decode 128 --repeat 3
    echo "== SmolLM2-135M shape, synthetic Q8_0, 32K context, cuda"
    $K synth-model --shape smollm2-135m --ctx 32896 -o /tmp/kvz-smol-32k.gguf
    $K bench --model /tmp/kvz-smol-32k.gguf --device cuda --prefill 8192,32768 --decode 128 --repeat 2
    echo "== Llama-3-8B shape, synthetic Q4_K, cuda"
    $K synth-model --shape llama3-8b --ctx 32896 -o /tmp/kvz-l3-8b.gguf
    $K bench --model /tmp/kvz-l3-8b.gguf --device cuda --prefill 512,8192,32768 --decode 64 --repeat 1
    ;;
compile)
    K=./build-cuda/kvz
    python3 - <<'PY'
text = "".join(open(p, encoding="utf-8").read() + "\n\n" for p in
               ["tests/data/gpl3_excerpt.txt", "tests/data/python_datamodel.txt", "tests/data/zpipe.c"])
open("/tmp/kvz-6k.txt", "w").write((text * 3)[:23000])           # ~6K SmolLM2 tokens (one segment)
open("/tmp/kvz-8k.txt", "w").write((text * 3)[:8000])            # 8K byte tokens
open("/tmp/kvz-30k.txt", "w").write((text * 9)[:30000])          # 30K byte tokens
PY
    for method in kvzip snapkv chunkkv knorm full; do
        echo "== compile, SmolLM2-135M (real), $method, cuda"
        rm -rf /tmp/kvz-gpu-store
        $K compile /tmp/kvz-6k.txt --store /tmp/kvz-gpu-store --model "$MODEL" --device cuda --method $method --json --quiet
    done
    [ -f /tmp/kvz-l3-8b.gguf ] || $K synth-model --shape llama3-8b --ctx 32896 -o /tmp/kvz-l3-8b.gguf
    for f in /tmp/kvz-8k.txt /tmp/kvz-30k.txt; do
        echo "== compile, Llama-3-8B shape (synthetic Q4_K), kvzip, cuda, $f"
        rm -rf /tmp/kvz-gpu-store
        $K compile $f --store /tmp/kvz-gpu-store --model /tmp/kvz-l3-8b.gguf --device cuda --json --quiet
    done
    echo "== compile, Llama-3-8B shape (synthetic Q4_K), snapkv, cuda, /tmp/kvz-30k.txt"
    rm -rf /tmp/kvz-gpu-store
    $K compile /tmp/kvz-30k.txt --store /tmp/kvz-gpu-store --model /tmp/kvz-l3-8b.gguf --device cuda --method snapkv \
        --json --quiet
    ;;
runtime)
    KVZ_BIN=./build-cuda/kvz DEVICE=cuda sh bench/runtime.sh
    ;;
cache)
    K=./build-cuda/kvz
    [ -f /tmp/kvz-smol-32k.gguf ] || $K synth-model --shape smollm2-135m --ctx 32896 -o /tmp/kvz-smol-32k.gguf
    [ -f /tmp/kvz-l3-8b.gguf ] || $K synth-model --shape llama3-8b --ctx 32896 -o /tmp/kvz-l3-8b.gguf
    for m in /tmp/kvz-smol-32k.gguf /tmp/kvz-l3-8b.gguf; do
        echo "== $m, cuda, ratio 0.3"
        $K bench --model $m --device cuda --ratio 0.3 --cache-only --prefill 8192,32768 --decode 64 --repeat 3
    done
    ;;
kvpress)
    WHEELS=${KVZ_WHEELS:-.device/wheels}
    [ -d "$WHEELS" ] || { echo "no wheels in $WHEELS: run bench/kvpress_wheels.sh where PyPI is reachable" >&2; exit 1; }
    [ -d .device/pylib ] || python3 -m pip install -q --no-deps --target .device/pylib "$WHEELS"/*.whl
    export PYTHONPATH=$PWD/.device/pylib${PYTHONPATH:+:$PYTHONPATH}
    python3 bench/kvpress_compare.py --shape smollm2-135m --tokens 5695 --device cuda
    python3 bench/kvpress_compare.py --shape llama3-8b --tokens 8010,30044 --device cuda
    ;;
*)
    echo "usage: bench/gpu.sh split-model|model|build|test|bench|compile|runtime|cache|kvpress" >&2
    exit 2
    ;;
esac
