#!/bin/sh
# kvz's KVzip compile beside kvpress's KVzipPress (HF transformers + PyTorch)
# on this machine's CPU: the same model shape (SmolLM2-135M, random weights on
# both sides), the same document lengths in tokens, the same ratio (0.3 of the
# pairs kept), prefill and scoring timed apart. The GPU run of the same
# comparison is `bench/gpu.sh compile-smol` and `kvpress-smol`.
#
#   KVPRESS_PY=/path/to/venv/bin/python sh bench/kvpress_cpu.sh
#
# KVPRESS_PY: a Python with torch, transformers and kvpress 0.5.5 (`pip
# install kvpress==0.5.5` in a venv of its own: about 6 GB with PyPI's torch;
# never needed by the build or the tests). TOKENS: document lengths (default
# 1000 4000 8000); REPEAT: runs per engine and length, alternated so that a slow
# spell of the machine hits both (default 3; the medians of prefill and of
# scoring are printed, each taken apart). Every run is a process of its own on
# both sides (model loading is timed by neither). kvz runs in f32 on the CPU, so
# kvpress does too (DTYPE=float32). Prints one JSON line per run, then a
# markdown table; stops at the first run that fails.
set -eu
KVZ=${KVZ_BIN:-build/kvz}
case $KVZ in /*) ;; *) KVZ=$PWD/$KVZ ;; esac # as the caller named it, before the cd
cd "$(dirname "$0")/.."
PY=${KVPRESS_PY:-python3}
TOKENS=${TOKENS:-1000 4000 8000}
REPEAT=${REPEAT:-3}
DTYPE=${DTYPE:-float32}
[ "$REPEAT" -ge 1 ] 2>/dev/null || { echo "kvpress_cpu.sh: REPEAT must be a count of 1 or more" >&2; exit 2; }
for n in $TOKENS; do
    [ "$n" -ge 1 ] 2>/dev/null || { echo "kvpress_cpu.sh: TOKENS must be token counts of 1 or more: $n" >&2; exit 2; }
done
"$PY" -c 'import kvpress, torch, transformers' 2>/dev/null ||
    { echo "kvpress_cpu.sh: $PY cannot import kvpress, torch and transformers (set KVPRESS_PY)" >&2; exit 2; }
[ -x "$KVZ" ] || { echo "kvpress_cpu.sh: $KVZ is not built (make)" >&2; exit 2; }

max=0
for n in $TOKENS; do [ "$n" -gt "$max" ] && max=$n; done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
MODEL=$WORK/smollm2-shape.gguf
# room for the document and a KVzip pass (its chunk repeated after a prompt)
"$KVZ" synth-model --shape smollm2-135m --ctx $((max + 4096)) -o "$MODEL"
# the synthetic model's tokens are bytes: a document of n bytes is n tokens
cat tests/data/gpl3_excerpt.txt tests/data/python_datamodel.txt tests/data/zpipe.c >"$WORK/text"
while [ "$(wc -c <"$WORK/text")" -lt "$max" ]; do cat "$WORK/text" "$WORK/text" >"$WORK/t2" && mv "$WORK/t2" "$WORK/text"; done

echo "machine: $(sh bench/machine.sh)"
for i in $(seq "$REPEAT"); do
    for n in $TOKENS; do
        head -c "$n" "$WORK/text" >"$WORK/doc.txt"
        rm -rf "$WORK/store"
        "$KVZ" compile "$WORK/doc.txt" --store "$WORK/store" --model "$MODEL" --device cpu --method kvzip \
            --ratio 0.3 --bits 4 --json --quiet >"$WORK/run.json" ||
            { echo "kvpress_cpu.sh: kvz compile failed at $n tokens" >&2; exit 1; }
        grep -q '"status":"compiled"' "$WORK/run.json" ||
            { echo "kvpress_cpu.sh: kvz did not compile $n tokens:" >&2; cat "$WORK/run.json" >&2; exit 1; }
        head -1 "$WORK/run.json" | sed 's/^{/{"engine":"kvz",/' | tee -a "$WORK/runs.jsonl"
        "$PY" bench/kvpress_compare.py --shape smollm2-135m --tokens "$n" --device cpu --dtype "$DTYPE" \
            --repeat 1 >"$WORK/run.json" 2>"$WORK/kvpress.err" ||
            { echo "kvpress_cpu.sh: kvpress failed at $n tokens:" >&2; tail -20 "$WORK/kvpress.err" >&2; exit 1; }
        tee -a "$WORK/runs.jsonl" <"$WORK/run.json"
    done
done

"$PY" - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\n| tokens | engine | prefill s (median) | scoring s (median) | kept | compile tok/s (prefill + scoring) | kvz vs kvpress |")
print("|---|---|---|---|---|---|---|")
for n in sorted({r["tokens"] for r in runs}):
    med = {}
    for eng in ("kvz", "kvpress"):
        rs = [r for r in runs if r["engine"] == eng and r["tokens"] == n]
        pre = statistics.median(r["prefill_s"] for r in rs)
        sco = statistics.median(r.get("score_s", r.get("scoring_s")) for r in rs)
        kept = rs[0].get("kept_fraction", rs[0].get("kept"))
        med[eng] = pre + sco
        speedup = f"{med['kvpress'] / med['kvz']:.2f}x" if eng == "kvpress" else ""
        print(f"| {n:,} | {eng} | {pre:.2f} | {sco:.2f} | {kept:.3f} | {n / (pre + sco):.1f} | {speedup} |")
PY
