#!/bin/sh
# Compile speed per method (prefill / scoring / write) and artifact size per
# method x ratio x bits, on one real document, CPU. Prints markdown tables.
# Speeds are medians of REPEAT runs (default 3): single runs on a shared
# 2-core machine vary by 20%.
#
#   DOC=tests/data/gpl3_excerpt.txt sh bench/compile.sh
#   SIZES=0 DOC=long.txt sh bench/compile.sh     the speed table alone
#   METHODS="kvzip snapkv" ...                    the speed table's methods
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DOC=${DOC:-tests/data/gpl3_excerpt.txt}
SIZES=${SIZES:-1}
REPEAT=${REPEAT:-3}
METHODS=${METHODS:-kvzip chunkkv snapkv knorm recent random full}
[ "$REPEAT" -ge 1 ] 2>/dev/null || { echo "compile.sh: REPEAT must be a count of 1 or more" >&2; exit 2; }
STORE=$(mktemp -d)
OUTF=$(mktemp)
trap 'rm -rf "$STORE" "$OUTF"' EXIT

run() { # label args...
    label=$1; shift
    printf '%s ' "$label" >>"$OUTF"
    "$KVZ" compile "$DOC" --store "$STORE" --model "$MODEL" --force --quiet --json "$@" | head -1 >>"$OUTF"
}

echo "machine: $(sh bench/machine.sh); document $DOC"
# prefill alone, for the ratio the target is stated against
tokens=$("$KVZ" tokenize --model "$MODEL" <"$DOC" | wc -w)
for i in $(seq "$REPEAT"); do
    "$KVZ" bench --model "$MODEL" --device cpu --prefill "$tokens" --decode 0 --text "$DOC" --json | head -1 \
        >>"$STORE/prefill.json"
done

for i in $(seq "$REPEAT"); do # rounds, so that a slow spell of the machine hits every method alike
    for m in $METHODS; do
        if [ "$m" = full ]; then
            run "speed full" --method full --bits 4 # keeps every pair: no ratio
        else
            run "speed $m" --method "$m" --ratio 0.3 --bits 4
        fi
    done
done
[ "$SIZES" = 0 ] || for r in 0.1 0.2 0.3 0.5 1.0; do
    for b in 16 8 4 2; do
        run "size kvzip $r $b" --method kvzip --ratio $r --bits $b
    done
done
[ "$SIZES" = 0 ] || for m in chunkkv snapkv recent; do
    for b in 16 4; do
        run "size $m 0.3 $b" --method $m --ratio 0.3 --bits $b
    done
done

python3 - "$OUTF" "$STORE/prefill.json" <<'PY'
import json, statistics, sys
rows = [l.split(" {", 1) for l in open(sys.argv[1])]
pre = statistics.median(json.loads(l)["prefill_tok_s"] for l in open(sys.argv[2]))
full_f16 = 30 * 3 * 64 * 2 * 2  # bytes per token of the f16 full cache (SmolLM2)
print(f"\nengine prefill alone: {pre} tok/s (median)\n")
print("| method (ratio 0.3, 4-bit) | tokens | prefill s | scoring s | write s | compile tok/s | vs prefill |")
print("|---|---|---|---|---|---|---|")
speed = {}
for label, js in rows:
    if label.startswith("speed"):
        speed.setdefault(label.split()[1], []).append(json.loads("{" + js))
for m, runs in speed.items(): # the run of median total time, its parts as they were
    runs.sort(key=lambda r: r["prefill_s"] + r["score_s"] + r["write_s"])
    r = runs[len(runs) // 2]
    total = r["prefill_s"] + r["score_s"] + r["write_s"]
    rate = r["tokens"] / total
    print(f"| {m} | {r['tokens']} | {r['prefill_s']:.2f} | {r['score_s']:.2f} | {r['write_s']:.2f} "
          f"| {rate:.1f} | {rate / pre:.2f}x |")
if any(label.startswith("size") for label, _ in rows):
    print("\n| method | ratio | bits | bytes/token | vs f16 full cache |")
    print("|---|---|---|---|---|")
for label, js in rows:
    if not label.startswith("size"):
        continue
    _, m, ratio, bits = label.split()
    r = json.loads("{" + js)
    bpt = r["bytes"] / r["tokens"]
    print(f"| {m} | {ratio} | {bits} | {bpt:.0f} | {full_f16 / bpt:.1f}x |")
PY
