#!/bin/sh
# A store of many small documents: compile time per document as the store grows,
# then each store command's time and peak memory at that size.
#   sh bench/scale.sh            # N=2000 documents, --method recent (prefill only)
#   N=200 METHOD=kvzip sh bench/scale.sh
# Needs build/kvz and the model (make; scripts/setup.sh); writes under $OUT
# (default bench/out/scale). Results: bench/RESULTS.md ("A store of 2,000 documents").
set -eu
KVZ=${KVZ:-build/kvz}
N=${N:-2000}
METHOD=${METHOD:-recent}
OUT=${OUT:-bench/out/scale}
THREADS=${THREADS:-1}
rm -rf "$OUT" && mkdir -p "$OUT"
python3 bench/scale_corpus.py "$OUT/corpus" "$N"
S=$OUT/store
T() { # NAME COMMAND...: wall seconds and peak RSS into $OUT/times
    name=$1; shift
    /usr/bin/time -f "$name: %e s, %M KB peak, exit %x" -a -o "$OUT/times" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || true
}
T compile "$KVZ" compile "$OUT/corpus" --store "$S" --method "$METHOD" --threads "$THREADS" --no-progress
tail -n 1 "$OUT/compile.err"
T compile_unchanged "$KVZ" compile "$OUT/corpus" --store "$S" --method "$METHOD" --threads "$THREADS"
T ls "$KVZ" ls --store "$S"
T stats "$KVZ" stats --store "$S"
T verify "$KVZ" verify --store "$S"
T gc "$KVZ" gc --store "$S"
DOC=$(sed -n 2p "$OUT/ls.out" | cut -d' ' -f1)
T rm_one "$KVZ" rm --store "$S" "$DOC"
T pack "$KVZ" pack --store "$S" --all -o "$OUT/all.tar.zst"
T unpack "$KVZ" unpack "$OUT/all.tar.zst" --store "$OUT/unpacked"
T query "$KVZ" query --store "$S" --doc "$(sed -n 3p "$OUT/ls.out" | cut -d' ' -f1)" --threads "$THREADS" \
    --max-tokens 16 "What is the title?"
cat "$OUT/times"
