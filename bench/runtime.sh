#!/bin/sh
# Time to first token: answering from the store (load + question) against
# prefilling the same document and question; decode speed with the compressed
# and the full cache. KVzip, ratio 0.3, 4 bits.
#
#   DEVICE=cpu sh bench/runtime.sh        (KVZ_BIN=build-cuda/kvz DEVICE=cuda on a GPU)
#
# Load GB/s counts the decoded cache written (kept pairs x key and value rows
# x HEAD_DIM f32; 64 for SmolLM2) per second of the whole load. On the GPU the
# host link's own copy bandwidth is printed first (bench/link_bandwidth.py):
# what crosses it is the stored form, a fraction of the decoded bytes.
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DEVICE=${DEVICE:-cpu}
SIZES=${SIZES:-1000 4000 8000}
HEAD_DIM=${HEAD_DIM:-64}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
Q="Who may copy and distribute this license document?"

python3 - "$TMP" "$MODEL" "$KVZ" $SIZES <<'PY'
import subprocess, sys
tmp, model, kvz, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4:]]
text = "".join(open(p, encoding="utf-8").read() + "\n\n" for p in
               ["tests/data/gpl3_excerpt.txt", "tests/data/python_datamodel.txt", "tests/data/zpipe.c"])
ids = subprocess.run([kvz, "tokenize", "--model", model], input=(text * 4).encode(), capture_output=True).stdout.split()
for n in sizes:
    doc = subprocess.run([kvz, "detokenize", "--model", model], input=b" ".join(ids[:n]), capture_output=True).stdout
    open(f"{tmp}/doc{n}.txt", "wb").write(doc)
PY

gpu=""
[ "$DEVICE" = cuda ] && gpu=", $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
echo "machine: $(sh bench/machine.sh)$gpu, device $DEVICE"
[ "$DEVICE" = cuda ] && { python3 bench/link_bandwidth.py || echo "host link: not measured"; }
echo "| tokens | compile s | load ms | load GB/s | question ms | TTFT from store ms | TTFT by prefill ms | speedup | decode tok/s compressed | decode tok/s full |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
    d="$TMP/doc$n.txt"
    s="$TMP/store$n"
    t0=$(date +%s.%N)
    "$KVZ" compile "$d" --store "$s" --model "$MODEL" --device "$DEVICE" --quiet
    t1=$(date +%s.%N)
    "$KVZ" compile "$d" --store "$s" --model "$MODEL" --device "$DEVICE" --quiet --method full --bits 16
    "$KVZ" query --store "$s" --doc "$d" --model "$MODEL" --device "$DEVICE" --config 1 --json --max-tokens 64 --reserve 128 "$Q" >"$TMP/c.json"
    "$KVZ" query --store "$s" --doc "$d" --model "$MODEL" --device "$DEVICE" --config 2 --json --max-tokens 64 --reserve 128 "$Q" >"$TMP/f.json"
    ntok=$("$KVZ" tokenize --model "$MODEL" <"$d" | wc -w)
    "$KVZ" bench --model "$MODEL" --device "$DEVICE" --prefill $((ntok + 60)) --decode 0 --text "$d" --json >"$TMP/p.json"
    python3 - "$TMP" "$ntok" "$t0" "$t1" "$HEAD_DIM" <<'PY'
import json, sys
tmp, ntok, t0, t1, hd = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
c = json.loads(open(f"{tmp}/c.json").readline()); f = json.loads(open(f"{tmp}/f.json").readline())
p = json.loads(open(f"{tmp}/p.json").readline())
rate = lambda r: "-" if r["decode_tok_s"] is None else f"{r['decode_tok_s']:.1f}"  # null: a one-token answer
store = c["load_ms"] + c["ttft_ms"]; prefill = p["prefill_s"] * 1000
gbs = c["kept_pairs"] * 2 * hd * 4 / (c["load_ms"] / 1000) / 1e9
print(f"| {ntok} | {t1 - t0:.1f} | {c['load_ms']:.1f} | {gbs:.2f} | {c['ttft_ms']:.1f} | {store:.1f} | {prefill:.1f} | "
      f"{prefill / store:.1f}x | {rate(c)} | {rate(f)} |")
PY
done
