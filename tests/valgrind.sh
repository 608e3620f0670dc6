#!/bin/sh
# kvz under valgrind (memcheck) on the plain build: any memcheck error or
# definite leak fails (valgrind exits 99).
#   make valgrind          or          KVZ_BIN=build/kvz sh tests/valgrind.sh
# Memcheck runs the real model at about 7 s per token here, so the whole path
# runs on a tiny synthetic model (kvz synth-model: 2 layers, byte vocabulary):
# synth-model, compile (two short documents, --method recent, then kvzip at a
# small size), ls, inspect, verify, query. The real model then covers what is
# cheap: ls, inspect and verify of a store compiled outside valgrind, its BPE
# tokenizer, and a two-token generate.
# Suppressions (tests/valgrind.supp) cover only the OpenMP / OpenBLAS thread
# pools. OpenBLAS picks its kernels by CPUID; valgrind runs the ones it picks
# here (AVX2). Where it does not (an unhandled instruction), set
# OPENBLAS_CORETYPE=Haswell (or Nehalem without AVX2); on an AVX-512 machine
# also build with MARCH=x86-64-v3, since valgrind 3.19 has no AVX-512.
set -u
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SUPP=${KVZ_VALGRIND_SUPP:-tests/valgrind.supp}
command -v valgrind >/dev/null || { echo "FAIL valgrind is not installed (apt-get install valgrind)"; exit 1; }
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # threads sleep instead of spinning (valgrind runs one at a time)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
T0=$(date +%s)

# two short real documents (about 40 and 60 tokens)
mkdir -p "$TMP/docs"
python3 - "$TMP/docs" <<'PY'
import sys
paras = [p for p in open("tests/data/gpl3_excerpt.txt", encoding="utf-8").read().split("\n\n") if 150 < len(p) < 400]
for i, p in enumerate(paras[:2]):
    open(f"{sys.argv[1]}/doc{i}.txt", "w").write(p + "\n")
PY
S="$TMP/store"
D0="$TMP/docs/doc0.txt"

# vg NAME KVZ-ARGS...: one kvz command under memcheck; its log is shown on failure
vg() {
    name=$1
    shift
    t=$(date +%s)
    valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        --suppressions="$SUPP" --num-callers=30 --log-file="$TMP/vg.$name.log" "$KVZ" "$@" >"$TMP/out.$name" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "ok   $name ($(($(date +%s) - t)) s)"
    else
        echo "FAIL $name: exit $rc"
        sed 's/^/     | /' "$TMP/out.$name" | tail -5
        grep -v '^==[0-9]*== *$' "$TMP/vg.$name.log" | sed 's/^/     | /' | head -80
        fails=$((fails + 1))
    fi
}

TINY="$TMP/tiny.gguf"
vg synth-model synth-model --shape tiny --ctx 4096 -o "$TINY"
vg compile-recent compile "$TMP/docs" --store "$S" --model "$TINY" --method recent --ratio 0.3 --reserve 64 --threads 2 --quiet
vg compile-kvzip compile "$TMP/docs" --store "$S" --model "$TINY" --method kvzip --ratio 0.3 --bits 2 --reserve 64 --threads 2 --quiet
vg ls ls --store "$S"
vg inspect inspect --store "$S" "$D0" --svg "$TMP/h.svg"
vg verify verify --store "$S"
vg query query --store "$S" --model "$TINY" --doc "$D0" --max-tokens 4 --reserve 64 --threads 2 "Who is it for?"

# the real model: a store compiled outside valgrind, its tokenizer, two tokens
R="$TMP/real"
"$KVZ" compile "$TMP/docs" --store "$R" --model "$MODEL" --method recent --quiet 2>"$TMP/e" ||
    { echo "FAIL compile with the real model"; cat "$TMP/e"; fails=$((fails + 1)); }
vg real-ls ls --store "$R"
vg real-inspect inspect --store "$R" "$D0"
vg real-verify verify --store "$R"
printf 'Hello, world: caf\303\251 123 -- tokens!' >"$TMP/text"
vg real-tokenize tokenize --model "$MODEL" <"$TMP/text"
vg real-generate generate --model "$MODEL" --prompt "Hi" --max-tokens 2 --threads 2

echo "     (valgrind: $(($(date +%s) - T0)) s)"
[ "$fails" -eq 0 ] && echo "all valgrind checks passed" || {
    echo "$fails valgrind check(s) failed"
    exit 1
}
