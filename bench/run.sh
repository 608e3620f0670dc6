#!/bin/sh
# make bench: kvz beside llama.cpp on the same GGUF, text, sizes and threads.
# Each (engine, size) runs in its own process so peak RSS is per run.
# llama.cpp comes from llama-cpp-python in a bench-only venv (bench/.venv,
# built on first use: a few minutes), or from $KVZ_BENCH_PYTHON.
#
#   SIZES="512 2048 8064" DECODE=64 REPEAT=2 THREADS=2 sh bench/run.sh
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SIZES=${SIZES:-512 2048 8064}
DECODE=${DECODE:-64}
REPEAT=${REPEAT:-2}
THREADS=${THREADS:-$(nproc)}
PY=${KVZ_BENCH_PYTHON:-bench/.venv/bin/python}
mkdir -p bench/out
OUTFILE=bench/out/cpu-$(date +%Y%m%d-%H%M%S).jsonl

if [ ! -x "$PY" ]; then
    echo "bench: creating bench/.venv with llama-cpp-python (builds llama.cpp; a few minutes)"
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet llama-cpp-python==0.3.36 numpy
    PY=bench/.venv/bin/python
fi

echo "machine: $(sh bench/machine.sh); threads $THREADS" | tee "$OUTFILE.txt"
for n in $SIZES; do
    "$KVZ" bench --model "$MODEL" --device cpu --threads "$THREADS" --prefill "$n" \
        --decode "$DECODE" --repeat "$REPEAT" --json | paste -sd' ' | sed 's/} {"kind":"memory","engine":"kvz",/,/' >>"$OUTFILE"
    "$PY" bench/llamacpp_bench.py --model "$MODEL" --prefill "$n" --decode "$DECODE" \
        --threads "$THREADS" --repeat "$REPEAT" >>"$OUTFILE"
done
python3 - "$OUTFILE" <<'PY' | tee -a "$OUTFILE.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| engine | prefill tokens | prefill tok/s | decode tok/s (at that context) | peak RSS MB |")
print("|---|---|---|---|---|")
for r in rows:
    rate = "-" if r["decode_tok_s"] is None else "%.2f" % r["decode_tok_s"]  # null: DECODE=0
    print("| %s | %d | %.1f | %s | %.0f |" % (r["engine"], r["prefill_tokens"], r["prefill_tok_s"],
                                            rate, r["peak_rss_mb"]))
PY
echo "raw results: $OUTFILE"
