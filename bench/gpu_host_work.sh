#!/bin/sh
# What the host asks of the GPU, counted exactly in the CUDA emulation
# (KVZ_CUDASIM_PROFILE, tests/cudasim/cudasim.h): kernel launches, copies by
# direction, and the host's waits for the device, for one compile and per
# compiled document and per decoded token. These are the GPU's fixed costs
# (microseconds each on any GPU), which the emulation can count where there is
# no GPU to time them on.
#
#   make cudasim && sh bench/gpu_host_work.sh       (a few minutes)
#
# The model is a random-weight SmolLM2-shape model of LAYERS layers (default
# 4; one token per byte), the documents 400-byte pieces of
# tests/data/gpl3_excerpt.txt, compiled with KVzip at ratio 0.3 and 4 bits. A
# document's share is the difference between compiling two and compiling one
# (what a compile does once, loading the model and the shared prefix, drops
# out); a token's, between answers of 9 tokens and of 1, over 8.
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build-sim/kvz}
LAYERS=${LAYERS:-4}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ -x "$KVZ" ] || { echo "gpu_host_work: $KVZ is not built (make cudasim)" >&2; exit 1; }
"$KVZ" synth-model --shape smollm2-135m --layers "$LAYERS" -o "$TMP/model.gguf" >/dev/null
head -c 400 tests/data/gpl3_excerpt.txt >"$TMP/doc.txt"
head -c 800 tests/data/gpl3_excerpt.txt | tail -c 400 >"$TMP/doc2.txt"
for d in 1 2; do
    [ $d = 1 ] && docs="$TMP/doc.txt" || docs="$TMP/doc.txt $TMP/doc2.txt"
    # shellcheck disable=SC2086 # two paths
    KVZ_CUDASIM_PROFILE="$TMP/compile$d" "$KVZ" compile $docs --store "$TMP/store$d" --model "$TMP/model.gguf" \
        --device cuda >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
done
for t in 1 9; do
    KVZ_CUDASIM_PROFILE="$TMP/query$t" "$KVZ" query --store "$TMP/store1" --doc "$TMP/doc.txt" \
        --model "$TMP/model.gguf" --device cuda --max-tokens $t --reserve 64 "What is it?" >/dev/null 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; exit 1; }
done
python3 - "$TMP" "$LAYERS" <<'PY'
import sys
tmp, layers = sys.argv[1], sys.argv[2]
def load(name):
    out = {}
    for line in open(f"{tmp}/{name}"):
        count, nbytes, what = line.rstrip("\n").split(" ", 2)
        out[what] = (int(count), int(nbytes))
    return out
c1, c2, q1, q9 = load("compile1"), load("compile2"), load("query1"), load("query9")
def per_doc(k):
    return c2.get(k, (0, 0))[0] - c1.get(k, (0, 0))[0]
def group(what):
    return ("launches" if what.startswith("launch ") else
            "waits" if what.startswith("wait") else
            "copies" if what.startswith("copy") else "other")
print(f"SmolLM2 shape, {layers} layers, 400-token documents (KVzip 0.3, 4-bit); "
      "compile: one document, from start to end")
print(f"{'':44} {'compile':>9} {'per doc':>9} {'per token':>10}")
for g in ("launches", "waits", "copies"):
    keys = sorted(k for k in set(c2) | set(q9) if group(k) == g)
    total_c = sum(c1.get(k, (0, 0))[0] for k in keys)
    total_d = sum(per_doc(k) for k in keys)
    total_t = sum(q9.get(k, (0, 0))[0] - q1.get(k, (0, 0))[0] for k in keys) / 8
    print(f"{g + ', all':44} {total_c:9d} {total_d:9d} {total_t:10.2f}")
    if g != "launches":
        for k in keys:
            t = (q9.get(k, (0, 0))[0] - q1.get(k, (0, 0))[0]) / 8
            print(f"  {k:42} {c1.get(k, (0, 0))[0]:9d} {per_doc(k):9d} {t:10.2f}")
PY
