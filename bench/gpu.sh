#!/bin/bash
# The GPU runs recorded in bench/RESULTS.md, as one script.
#
# A session lent the device tool's machine has about 15 minutes of it, start-up
# included, and each call carries at most 64 MiB. So the whole run is one
# resumable command, `session`, made for two calls:
#
#   here:    bench/gpu.sh pack       what the calls carry, in .device/ (git-ignored)
#   call 1:  carry .device/deps.tar.xz .device/wheels .device/model.part00
#            bench/gpu.sh session    (timeout_s 560; KVZ_SESSION_S=500 by default)
#   call 2:  carry .device/model.part01, at once while the machine is warm
#            KVZ_SESSION_S=<seconds left> bench/gpu.sh session
#
# `session` runs the steps below most important first, each time-boxed to the
# session's deadline, and never runs a step twice while the machine stays
# warm; steps that need the default model wait for the call that brings its
# second part. $OUT/summary.txt says what passed, failed, was cut or waits;
# $OUT/session.log holds every step's output, $OUT/build.log the build's.
#
# Steps (each also runs alone: bench/gpu.sh STEP):
#   build          build the CUDA variant (build-cuda/)
#   test-synthetic CUDA kernels, forward pass and whole compiles against the CPU path,
#                  on random-weight models (SmolLM2 and Llama-3-8B shapes)
#   test-real      the same on the default model (logits, greedy answer, compiles)
#   compile-8b     kvz compile, Llama-3-8B shape: KVzip at 8K and 30K tokens, SnapKV at 30K
#   kvpress-8b     kvpress's KVzipPress (HF transformers + PyTorch), same shape and lengths
#   cache          decode attention and tok/s, full vs ratio-0.3 loaded cache, both shapes;
#                  the 8B shape at 8K again with cuBLAS for a step's products
#   compile-smol   kvz compile, SmolLM2 shape (synthetic): KVzip at 8K and 30K tokens
#   kvpress-smol   kvpress, SmolLM2 shape, the lengths of compile-smol and compile-real
#   compile-real   kvz compile, the default model, ~6K tokens, every method
#   runtime        time to first token from the store, load GB/s (bench/runtime.sh)
#   sessions       answers/s of 2, 4 and 8 sessions of one engine at once vs one after
#                  another (build-cuda/bench/sessions, the default model); short
#                  sessions with and without stream-ordered device memory
#   bench          prefill and decode tok/s: the default model and both shapes
# (`compile` and `kvpress` run all of their parts.)
#
# Where the Debian -dev packages are missing (the GPU machine), .device/deps.tar.xz
# (made by `pack`) is unpacked into .deps/ and used from there.
#
# KVZ_GPU_REHEARSAL=1 runs the same steps here, without a GPU: CUDA emulated on
# the CPU (build-sim/, tests/cudasim/), toy sizes (models of one or two layers,
# documents of a few hundred tokens), its own model copy joined from the parts
# and its own output (bench/out/rehearsal/). Its figures mean nothing; it checks
# that every command of a session runs, before a GPU's few minutes are spent:
#   bench/gpu.sh pack && KVZ_GPU_REHEARSAL=1 KVZ_SESSION_S=3600 KVZ_STEP_S=300 bench/gpu.sh session
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=$PWD/bench/gpu.sh
STATE=.gpu-session # what a warm machine keeps between calls: step results, Python packages, the model's parts
REHEARSAL=${KVZ_GPU_REHEARSAL:-0}
[ "$REHEARSAL" != 1 ] || STATE=.gpu-rehearsal
if ! pkg-config --exists lmdb libzstd libarchive openblas libpcre2-8 libxxhash cmocka jansson 2>/dev/null &&
    [ -f .device/deps.tar.xz ]; then
    if [ ! -d .deps ]; then
        mkdir -p .deps.tmp && tar -C .deps.tmp -xJf .device/deps.tar.xz && mv .deps.tmp .deps
    fi
    D=$PWD/.deps/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_LIBDIR=$D/pkgconfig:$D/openblas-pthread/pkgconfig:$PWD/.deps/usr/share/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$PWD/.deps
    export LD_LIBRARY_PATH=$D:$D/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export EXTRA_LDFLAGS="-Wl,-rpath-link,$D -Wl,-rpath-link,$D/openblas-pthread"
fi
# kvpress's wheels, installed by `session`; each step runs as its own bench/gpu.sh and looks here
[ -d "$STATE/pylib" ] && export PYTHONPATH=$PWD/$STATE/pylib${PYTHONPATH:+:$PYTHONPATH}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUTDIR=${OUT:-bench/out}
B=build-cuda
SMOL=/tmp/kvz-smol-32k.gguf
L3=/tmp/kvz-l3-8b.gguf
SYNTH_SMOL="--ctx 32896" SYNTH_L3="--ctx 32896"
DOC_CHARS="23000 8000 30000" # the ~6K-token real document, the 8K and 30K byte-token ones
LONG=8192,32768 SHORT=8192 BENCH_REAL=512,2048,8064 BENCH_L3=512,8192,32768 DECODE=64 REPEAT=3
TOKENS_8B=8010,30044 TOKENS_SMOL=5695,8010,30044 RUNTIME_SIZES="1000 4000 8000" ANSWER_TOKENS=64
CORPUS=examples/corpus # the sessions' store: its harbor_lighthouse.md is asked about
SESSIONS="2 4 8" QUESTIONS=4 SHORT_SESSIONS=8
if [ "$REHEARSAL" = 1 ]; then
    B=build-sim OUTDIR=${OUT:-bench/out/rehearsal}
    MODEL=$STATE/model/$(basename "$MODEL") # joined from .device's parts, as on the GPU machine
    SMOL=/tmp/kvz-rehearsal-smol.gguf L3=/tmp/kvz-rehearsal-l3.gguf
    SYNTH_SMOL="--layers 2 --ctx 4096" SYNTH_L3="--layers 1 --vocab 1024 --ctx 4096"
    DOC_CHARS="400 300 600"
    LONG=256,512 SHORT=256 BENCH_REAL=64,256 BENCH_L3=64,256 DECODE=4 REPEAT=1
    TOKENS_8B=300,600 TOKENS_SMOL=300,600 RUNTIME_SIZES="64" ANSWER_TOKENS=4
    CORPUS=/tmp/kvz-rehearsal-corpus # the real model emulated: a document of a few sentences
    SESSIONS=2 QUESTIONS=1 SHORT_SESSIONS=2
    mkdir -p $CORPUS && head -c 300 examples/corpus/harbor_lighthouse.md >$CORPUS/harbor_lighthouse.md
fi
mkdir -p "$OUTDIR"
K=./$B/kvz

synth() { # shape path: the random-weight model, made once
    local extra=$SYNTH_SMOL
    [ "$1" = smollm2-135m ] || extra=$SYNTH_L3
    # shellcheck disable=SC2086 # the options are words
    [ -f "$2" ] || $K synth-model --shape "$1" $extra -o "$2"
}

documents() { # ~6K SmolLM2 tokens (one segment), 8K and 30K byte tokens (toy sizes in a rehearsal)
    # shellcheck disable=SC2086 # the lengths are words
    python3 - $DOC_CHARS <<'PY'
import sys
six, eight, thirty = (int(n) for n in sys.argv[1:])
text = "".join(open(p, encoding="utf-8").read() + "\n\n" for p in
               ["tests/data/gpl3_excerpt.txt", "tests/data/python_datamodel.txt", "tests/data/zpipe.c"])
open("/tmp/kvz-6k.txt", "w").write((text * 3)[:six])
open("/tmp/kvz-8k.txt", "w").write((text * 3)[:eight])
open("/tmp/kvz-30k.txt", "w").write((text * 9)[:thirty])
PY
}

compile_one() { # label model text method
    echo "== compile, $1, $4, cuda, $3"
    rm -rf /tmp/kvz-gpu-store
    $K compile "$3" --store /tmp/kvz-gpu-store --model "$2" --device cuda --method "$4" --json --quiet
}

kvpress() { # kvpress_compare.py arguments
    python3 -c 'import kvpress' 2>/dev/null || {
        if [ "$REHEARSAL" = 1 ]; then # torch is on the GPU machine's image, not here
            echo "kvpress (or torch) is not importable here: not rehearsed" >&2
            exit 3
        fi
        echo "kvpress is not importable: carry .device/wheels (bench/gpu.sh pack)" >&2
        return 1
    }
    local device=cuda
    [ "$REHEARSAL" != 1 ] || device=cpu # torch's own CUDA is not emulated
    PYTHONUNBUFFERED=1 python3 bench/kvpress_compare.py --device $device "$@"
}

case "${1:-}" in
pack)
    # Here, where Debian's and PyPI's registries are reachable: the Debian
    # packages the build needs, unpacked and pruned (no docs, no static
    # libraries); kvpress's wheels; the model in two parts, split so that both
    # calls carry about as much.
    mkdir -p .device
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -q liblmdb-dev liblmdb0 libzstd-dev libzstd1 libarchive-dev libarchive13 \
        libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5 libpcre2-dev \
        libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libxxhash-dev libxxhash0 libcmocka-dev \
        libcmocka0 libjansson-dev libjansson4 libb2-1 libnettle8 liblz4-1 libacl1 libxml2 libicu72 \
        >/dev/null 2>&1)
    mkdir "$tmp/root"
    for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/root"; done
    find "$tmp/root/usr/share" -mindepth 1 -maxdepth 1 ! -name pkgconfig -exec rm -rf {} +
    find "$tmp/root" -name '*.a' -delete
    tar -C "$tmp/root" -cJf .device/deps.tar.xz .
    sh bench/kvpress_wheels.sh >/dev/null
    limit=$((64 * 1024 * 1024 - 3 * 1000 * 1000)) # the call's limit, less a margin
    tree=$(git ls-files -z | xargs -0 cat | wc -c)
    rest=$(($(wc -c <.device/deps.tar.xz) + $(du -sb .device/wheels | cut -f1)))
    size=$(wc -c <"$MODEL")
    first=$(((size - rest) / 2)) # the two calls about equal
    [ "$first" -le $((limit - tree - rest)) ] || first=$((limit - tree - rest))
    [ $((size - first + tree)) -le "$limit" ] || { echo "pack: the model does not fit in two calls" >&2; exit 1; }
    rm -f .device/model.part*
    head -c "$first" "$MODEL" >.device/model.part00
    tail -c +$((first + 1)) "$MODEL" >.device/model.part01
    echo "call 1 carries $(((tree + rest + first) / 1000000)) MB: .device/deps.tar.xz .device/wheels .device/model.part00"
    echo "call 2 carries $(((tree + size - first) / 1000000)) MB: .device/model.part01"
    ;;
session)
    budget=${KVZ_SESSION_S:-500}
    end=$(($(date +%s) + budget))
    log=$OUTDIR/session.log
    summary=$OUTDIR/summary.txt
    mkdir -p "$STATE/done"
    {
        echo "===== session $(date -u +%FT%TZ), ${budget}s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
        echo "cpu: $(sh bench/machine.sh)"
        "$SELF" model || echo "the model's parts did not join: the steps that need it will wait"
        if [ -d .device/wheels ] && [ ! -d "$STATE/pylib" ]; then
            python3 -m pip install -q --no-index --no-deps --no-compile --target "$STATE/pylib" \
                .device/wheels/*.whl || { rm -rf "$STATE/pylib"; echo "kvpress's wheels did not install"; }
        fi
    } >>"$log" 2>&1
    step() { # name needs(model|-) seconds-it-needs-at-least
        local name=$1 needs=$2 least=$3 left rc=0 t0 result
        if [ -f "$STATE/done/$name" ]; then
            echo "$name: $(cat "$STATE/done/$name") (an earlier call)" >>"$summary"
            return 0
        fi
        if [ "$needs" = model ] && [ ! -f "$MODEL" ]; then
            echo "$name: waits for the default model (call 2 carries its second part)" >>"$summary"
            return 0
        fi
        left=$((end - $(date +%s)))
        if [ "$left" -lt "$least" ]; then
            echo "$name: not started, ${left}s left of the session (it needs ${least}s or more)" >>"$summary"
            return 0
        fi
        echo "===== $name, $(date -u +%T), ${left}s left" >>"$log"
        t0=$(date +%s)
        # KVZ_STEP_S: at most so long a step (a rehearsal's emulated runs are slow; 0: no cap)
        [ "${KVZ_STEP_S:-0}" -le 0 ] || [ "$left" -le "$KVZ_STEP_S" ] || left=$KVZ_STEP_S
        timeout -k 10 "$left" "$SELF" "$name" >>"$log" 2>&1 || rc=$?
        case $rc in
        0) result="passed" ;;
        124 | 137) result="cut at the session's deadline (or KVZ_STEP_S)" ;;
        3) [ "$REHEARSAL" = 1 ] && result="not rehearsed (what it needs is missing here)" || result="FAILED (exit 3)" ;;
        *) result="FAILED (exit $rc)" ;;
        esac
        result="$result in $(($(date +%s) - t0))s"
        echo "$name: $result" >>"$summary"
        echo "$result" >"$STATE/done/$name"
        [ "$name" != build ] || [ "$rc" = 0 ]
    }
    echo "== session $(date -u +%T), ${budget}s" >>"$summary"
    step build - 30 || { cat "$summary"; tail -30 "$OUTDIR/build.log"; rm -f "$STATE/done/build"; exit 1; }
    step test-synthetic - 60
    step test-real model 40
    step compile-8b - 60
    step kvpress-8b - 60
    step cache - 45
    step compile-smol - 30
    step kvpress-smol - 30
    step compile-real model 20
    step runtime model 30
    step sessions model 30
    step bench - 45
    cat "$summary"
    ! grep -q FAILED "$summary"
    ;;
model)
    # gather the parts carried so far; join them once both have arrived
    mkdir -p "$STATE/parts" "$(dirname "$MODEL")"
    for p in .device/model.part*; do [ -f "$p" ] && cp "$p" "$STATE/parts/"; done
    if [ -f "$STATE/parts/model.part00" ] && [ -f "$STATE/parts/model.part01" ] && [ ! -f "$MODEL" ]; then
        cat "$STATE/parts/model.part00" "$STATE/parts/model.part01" >"$MODEL.tmp"
        want=$(sed -n 's/^MODEL_SHA256="\(.*\)"$/\1/p' scripts/setup.sh)
        if echo "$want  $MODEL.tmp" | sha256sum -c --status; then
            mv "$MODEL.tmp" "$MODEL"
        else
            rm -f "$MODEL.tmp"
            echo "the joined model does not match scripts/setup.sh's sha256" >&2
            exit 1
        fi
    fi
    ls -la "$STATE/parts" "$MODEL" 2>/dev/null || true
    ;;
build)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    target=cuda
    [ "$REHEARSAL" != 1 ] || target=cudasim
    make $target -j"$(nproc)" EXTRA_LDFLAGS="${EXTRA_LDFLAGS:-}" >"$OUTDIR/build.log" 2>&1 || { tail -40 "$OUTDIR/build.log"; exit 1; }
    echo "built $B/"
    ;;
test-synthetic)
    status=0
    export KVZ_TEST_SKIP='*real*'
    ./$B/tests/cuda/test_cuda_kernels || status=1
    ./$B/tests/cuda/test_cuda_forward || status=1
    ./$B/tests/cuda/test_cuda_compile || status=1
    exit $status
    ;;
test-real)
    status=0
    export KVZ_MODEL=$MODEL KVZ_TEST_ONLY='*real*'
    ./$B/tests/cuda/test_cuda_forward || status=1
    ./$B/tests/cuda/test_cuda_compile || status=1
    exit $status
    ;;
test)
    "$SELF" test-synthetic && "$SELF" test-real
    ;;
compile-8b)
    documents
    synth llama3-8b $L3
    compile_one "Llama-3-8B shape (synthetic Q4_K)" $L3 /tmp/kvz-8k.txt kvzip
    compile_one "Llama-3-8B shape (synthetic Q4_K)" $L3 /tmp/kvz-30k.txt kvzip
    compile_one "Llama-3-8B shape (synthetic Q4_K)" $L3 /tmp/kvz-30k.txt snapkv
    ;;
compile-smol)
    documents
    synth smollm2-135m $SMOL
    compile_one "SmolLM2-135M shape (synthetic Q8_0)" $SMOL /tmp/kvz-8k.txt kvzip
    compile_one "SmolLM2-135M shape (synthetic Q8_0)" $SMOL /tmp/kvz-30k.txt kvzip
    ;;
compile-real)
    documents
    for method in kvzip snapkv chunkkv knorm full; do
        compile_one "SmolLM2-135M (real)" "$MODEL" /tmp/kvz-6k.txt $method
    done
    ;;
compile)
    "$SELF" compile-8b && "$SELF" compile-smol && "$SELF" compile-real
    ;;
kvpress-8b)
    kvpress --shape llama3-8b --tokens $TOKENS_8B
    ;;
kvpress-smol)
    kvpress --shape smollm2-135m --tokens $TOKENS_SMOL
    ;;
kvpress)
    "$SELF" kvpress-8b && "$SELF" kvpress-smol
    ;;
cache)
    synth smollm2-135m $SMOL
    synth llama3-8b $L3
    for m in $SMOL $L3; do
        echo "== $m, cuda, ratio 0.3"
        $K bench --model $m --device cuda --ratio 0.3 --cache-only --prefill $LONG --decode $DECODE --repeat $REPEAT
    done
    echo "== $L3, cuda, ratio 0.3, a step's products by cuBLAS (KVZ_CUDA_GEMV=0), for comparison"
    KVZ_CUDA_GEMV=0 $K bench --model $L3 --device cuda --ratio 0.3 --cache-only --prefill $SHORT --decode $DECODE \
        --repeat $REPEAT
    ;;
runtime)
    KVZ_BIN=$K KVZ_MODEL=$MODEL DEVICE=cuda SIZES=$RUNTIME_SIZES sh bench/runtime.sh
    ;;
sessions)
    rm -rf /tmp/kvz-sessions-store
    $K compile $CORPUS --store /tmp/kvz-sessions-store --model "$MODEL" --device cuda --quiet
    for n in $SESSIONS; do
        ./$B/bench/sessions /tmp/kvz-sessions-store "$MODEL" $CORPUS/harbor_lighthouse.md \
            --threads 2 --sessions $n --questions $QUESTIONS --tokens $ANSWER_TOKENS
    done
    # sessions opening and closing often: stream-ordered device memory, then cudaMalloc/cudaFree
    for pools in 1 0; do
        echo "== $SHORT_SESSIONS sessions x 1 question, KVZ_CUDA_MEMORY_POOLS=$pools"
        KVZ_CUDA_MEMORY_POOLS=$pools ./$B/bench/sessions /tmp/kvz-sessions-store "$MODEL" \
            $CORPUS/harbor_lighthouse.md --threads 2 --sessions $SHORT_SESSIONS --questions 1 --tokens $ANSWER_TOKENS
    done
    ;;
bench)
    if [ -f "$MODEL" ]; then
        echo "== SmolLM2-135M-Instruct Q4_1 (real), cuda"
        $K bench --model "$MODEL" --device cuda --prefill $BENCH_REAL --decode $((DECODE * 2)) --repeat $REPEAT
    fi
    synth smollm2-135m $SMOL
    echo "== SmolLM2-135M shape, synthetic Q8_0, 32K context, cuda"
    $K bench --model $SMOL --device cuda --prefill $LONG --decode $((DECODE * 2)) --repeat 2
    synth llama3-8b $L3
    echo "== Llama-3-8B shape, synthetic Q4_K, cuda"
    $K bench --model $L3 --device cuda --prefill $BENCH_L3 --decode $DECODE --repeat 1
    ;;
*)
    echo "usage: bench/gpu.sh pack|session|model|build|test|test-synthetic|test-real|compile|compile-8b|" \
        "compile-smol|compile-real|kvpress|kvpress-8b|kvpress-smol|cache|runtime|sessions|bench" >&2
    exit 2
    ;;
esac
