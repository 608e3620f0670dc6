#!/bin/sh
# Running out of GPU memory, with CUDA emulated (KVZ_BIN=build-sim/kvz): the
# emulation's device holds KVZ_CUDASIM_DEVICE_BYTES, and KVZ_CUDASIM_PEAK_FILE
# receives the most a run had in use (tests/cudasim/cudasim.h). A model that
# does not fit, a document that does not fit after one that did, and a query
# that does not fit each end with exit 8 and one line naming the device memory,
# leave a store that verifies, and a rerun with room finishes the work; so
# does a query that runs out of pinned host memory (KVZ_CUDASIM_PINNED_BYTES);
# so does an answer without the 4 pinned bytes of its sampled token, while a
# compile without pinned memory goes on in plain memory.
# A random-weight two-layer SmolLM2-shape model (one token per byte) keeps it fast.
. tests/cli_lib.sh
NOMEM=8

"$KVZ" synth-model --shape smollm2-135m --layers 2 -o "$TMP/model.gguf" >/dev/null || {
    fail "synth-model"
    finish "device memory"
}
words="harbor light keeper stone tide ledger salt ship north coast map river bridge lamp oil"
text() { # text N: about N bytes of the words above, the same every run
    awk -v n="$1" -v w="$words" 'BEGIN { k = split(w, a, " "); s = "";
        for (i = 0; length(s) < n; i++) s = s a[(i * 7) % k + 1] " "; print s }'
}
mkdir -p "$TMP/docs"
text 90 >"$TMP/docs/a_short.txt"
text 400 >"$TMP/docs/b_long.txt"
text 60 >"$TMP/docs/c_last.txt"
compile() { # compile STORE DOC...: the compile command of every run here
    _store=$1
    shift
    "$KVZ" compile "$@" --store "$_store" --model "$TMP/model.gguf" --device cuda >"$TMP/out" 2>"$TMP/err"
}
out_of_memory() { # out_of_memory LABEL PATTERN: the last run (exit in $st) ended with exit 8 and
    # PATTERN in its errors, and printed nothing
    if [ $st -eq $NOMEM ] && grep -q "$2" "$TMP/err" && [ ! -s "$TMP/out" ]; then
        ok "$1: exit 8, $(tail -n 1 "$TMP/err")"
    else
        fail "$1: exit $st: $(tail -n 1 "$TMP/err")"
    fi
}

# 1. the model's weights do not fit: nothing made
KVZ_CUDASIM_DEVICE_BYTES=16M compile "$TMP/s1" "$TMP/docs/a_short.txt"
st=$?
last=$(tail -n 1 "$TMP/err")
if [ $st -eq $NOMEM ] && echo "$last" | grep -q "cannot allocate .* MiB of device memory: out of memory (.* MiB free of 16.0 MiB)" &&
    [ ! -e "$TMP/s1" ]; then
    ok "model larger than the device: exit 8, no store made: $last"
else
    fail "model larger than the device: exit $st, store $(ls -d "$TMP/s1" 2>/dev/null || echo absent): $last"
fi
#    the default device (auto) leaves such a GPU for the CPU, says so, and makes the
#    CPU's artifact; so does a query
KVZ_CUDASIM_DEVICE_BYTES=16M KVZ_CUDASIM_PROFILE="$TMP/s1a.profile" SOURCE_DATE_EPOCH=1 "$KVZ" compile \
    "$TMP/docs/a_short.txt" --store "$TMP/s1a" --model "$TMP/model.gguf" >"$TMP/out" 2>"$TMP/err"
st=$?
# the weights placed before the failure go back to the device, not to CUDA's pool (which keeps what
# is freed): one trim at the failed allocation's retry, one as the GPU's backend is destroyed
# (without memory pools, KVZ_CUDA_MEMORY_POOLS=0, cudaFree gives it back: nothing is trimmed)
trims=$(awk '$3 == "trim" { print $1 }' "$TMP/s1a.profile" 2>/dev/null)
if [ "${KVZ_CUDA_MEMORY_POOLS:-1}" = 0 ]; then
    ok "the GPU left for the CPU, no memory pools: nothing to trim"
elif [ "${trims:-0}" -ge 2 ]; then
    ok "the GPU left for the CPU: its pool trimmed ($trims trims)"
else
    fail "the GPU left for the CPU: its pool trimmed ${trims:-0} time(s)"
fi
SOURCE_DATE_EPOCH=1 "$KVZ" compile "$TMP/docs/a_short.txt" --store "$TMP/s1c" --model "$TMP/model.gguf" \
    --device cpu >/dev/null 2>&1
note="kvz compile: note: the GPU could not be used (.*cuda: cannot allocate .* of device memory.*out of memory.*): running on the CPU (--device cuda makes this an error)"
if [ $st -eq 0 ] && grep -q "$note" "$TMP/err" &&
    "$KVZ" export --store "$TMP/s1a" "$TMP/docs/a_short.txt" -o "$TMP/s1a.kvz" --quiet 2>/dev/null &&
    "$KVZ" export --store "$TMP/s1c" "$TMP/docs/a_short.txt" -o "$TMP/s1c.kvz" --quiet 2>/dev/null &&
    cmp -s "$TMP/s1a.kvz" "$TMP/s1c.kvz"; then
    ok "model larger than the device, default device: compiled on the CPU, noted"
else
    fail "model larger than the device, default device: exit $st"
    sed 's/^/     | /' "$TMP/err"
fi
KVZ_CUDASIM_DEVICE_BYTES=16M "$KVZ" query --store "$TMP/s1a" --model "$TMP/model.gguf" \
    --doc "$TMP/docs/a_short.txt" --max-tokens 4 "Which lamp?" >"$TMP/out" 2>"$TMP/err"
st=$?
if [ $st -eq 0 ] && [ -s "$TMP/out" ] && grep -q "kvz query: note: the GPU could not be used" "$TMP/err"; then
    ok "query on a device too small, default device: answered on the CPU, noted"
else
    fail "query on a device too small, default device: exit $st"
    sed 's/^/     | /' "$TMP/err"
fi

# 2. the peak of compiling the short document alone, then that much memory for
#    all three: the short one is kept, the long one needs more and stops the run
KVZ_CUDASIM_PEAK_FILE="$TMP/peak" compile "$TMP/probe" "$TMP/docs/a_short.txt"
st=$?
peak=$(cat "$TMP/peak" 2>/dev/null)
if [ $st -eq 0 ] && [ -n "$peak" ]; then
    ok "the short document alone: $peak bytes of device memory at most"
else
    fail "the short document alone: exit $st, peak '$peak'"
    finish "device memory"
fi
KVZ_CUDASIM_DEVICE_BYTES=$peak compile "$TMP/s2" "$TMP/docs"
st=$?
if [ $st -eq $NOMEM ] && grep -q "^FAIL .*b_long.txt: cuda: cannot allocate .* [KM]iB of device memory for .*: out of memory" "$TMP/err" &&
    grep -q "^stopped at .*b_long.txt: 1 document(s) after it not attempted" "$TMP/err" &&
    grep -q "^1 compiled, 0 unchanged, 0 skipped, 1 failed" "$TMP/err"; then
    ok "a document larger than the room left: exit 8, $(grep '^FAIL' "$TMP/err")"
else
    fail "a document larger than the room left: exit $st"
    sed 's/^/     | /' "$TMP/err"
fi
"$KVZ" verify --store "$TMP/s2" >"$TMP/verify" 2>&1
st=$?
"$KVZ" ls --store "$TMP/s2" >"$TMP/ls" 2>&1
if [ $st -eq 0 ] && [ "$(grep -c '\.txt' "$TMP/ls")" = 1 ] && grep -q a_short.txt "$TMP/ls"; then
    ok "the store verifies and holds the short document"
else
    fail "the store after the failure: $(cat "$TMP/verify")"
fi
compile "$TMP/s2" "$TMP/docs"
st=$?
if [ $st -eq 0 ] && grep -q "^2 compiled, 1 unchanged, 0 skipped, 0 failed" "$TMP/err" &&
    "$KVZ" verify --store "$TMP/s2" >/dev/null 2>&1; then
    ok "the rerun with room compiles the other two: $(tail -n 1 "$TMP/err")"
else
    fail "the rerun with room: exit $st: $(tail -n 1 "$TMP/err")"
fi

# 3. a query whose model does not fit; then one that does
KVZ_CUDASIM_DEVICE_BYTES=16M "$KVZ" query --store "$TMP/s2" --model "$TMP/model.gguf" --device cuda \
    --doc "$TMP/docs/a_short.txt" --max-tokens 4 "Which lamp?" >"$TMP/out" 2>"$TMP/err"
st=$?
out_of_memory "query on a device too small" "cannot allocate .* MiB of device memory: out of memory"
# 4. the pinned host memory that stages a stored head on its way to the device
#    runs out (a head of these documents needs a few KiB)
KVZ_CUDASIM_PINNED_BYTES=1K "$KVZ" query --store "$TMP/s2" --model "$TMP/model.gguf" --device cuda \
    --doc "$TMP/docs/b_long.txt" --max-tokens 4 "Which lamp?" >"$TMP/out" 2>"$TMP/err"
st=$?
out_of_memory "query without pinned memory for loading" \
    "cannot allocate .* KiB of pinned host memory for the KV load staging buffer: out of memory"
#    and the 4 pinned bytes that bring the sampled token back (no store: nothing staged)
KVZ_CUDASIM_PINNED_BYTES=1 "$KVZ" generate --model "$TMP/model.gguf" --device cuda --max-tokens 2 \
    --prompt "Which lamp?" >"$TMP/out" 2>"$TMP/err"
st=$?
out_of_memory "generate without pinned memory for the sampled token" \
    "cannot allocate 4 bytes of pinned host memory for the sampled token: out of memory"
"$KVZ" query --store "$TMP/s2" --model "$TMP/model.gguf" --device cuda --doc "$TMP/docs/b_long.txt" \
    --max-tokens 4 "Which lamp?" >"$TMP/out" 2>"$TMP/err"
st=$?
if [ $st -eq 0 ] && [ -s "$TMP/out" ]; then
    ok "query with room answers"
else
    fail "query with room: exit $st: $(tail -n 1 "$TMP/err")"
fi
# 5. a compile without pinned memory for the quantized heads' way back to the host
#    (host_alloc) takes plain memory and makes the same artifact, only slower: the
#    same kept pairs and section sizes (the manifest, which holds the time of the
#    compile and is compressed, may differ by a byte)
KVZ_CUDASIM_PINNED_BYTES=1K compile "$TMP/s3" "$TMP/docs/b_long.txt"
st=$?
sections() { # sections STORE: kvz inspect of b_long.txt without what the manifest's size changes
    "$KVZ" inspect --store "$1" "$TMP/docs/b_long.txt" 2>&1 |
        sed -E '/^  size /d; s/[0-9]+ in all/N in all/; s/manifest [0-9]+/manifest N/; s/^([^ ].*), [0-9.]+ KB$/\1/'
}
sections "$TMP/s2" >"$TMP/with_pinned"
sections "$TMP/s3" >"$TMP/without_pinned"
if [ $st -eq 0 ] && cmp -s "$TMP/with_pinned" "$TMP/without_pinned" && grep -q "keys [0-9]*, values" "$TMP/with_pinned" &&
    "$KVZ" verify --store "$TMP/s3" >/dev/null 2>&1; then
    ok "compile without pinned memory: the same artifact ($(grep -o 'keys [0-9]*, values [0-9]*, scales [0-9]*' "$TMP/with_pinned"))"
else
    fail "compile without pinned memory: exit $st: $(tail -n 1 "$TMP/err")"
    diff "$TMP/with_pinned" "$TMP/without_pinned" | sed 's/^/     | /'
fi

# a GPU older than the build's code (compute capability 7.5): --device cuda is refused with
# exit 9 and the reason; auto (the default) runs on the CPU and makes the same artifact
KVZ_CUDASIM_CC=7.5 compile "$TMP/s7" "$TMP/docs/a_short.txt"
st=$?
if [ $st -eq 9 ] && grep -q "compute capability 7.5" "$TMP/err" && [ ! -e "$TMP/s7/data.mdb" ]; then
    ok "a GPU of compute capability 7.5 and --device cuda: exit 9, $(tail -n 1 "$TMP/err")"
else
    fail "a GPU of compute capability 7.5 and --device cuda: exit $st: $(tail -n 1 "$TMP/err")"
fi
KVZ_CUDASIM_CC=7.5 SOURCE_DATE_EPOCH=1 "$KVZ" compile "$TMP/docs/a_short.txt" --store "$TMP/s8" --model "$TMP/model.gguf" >"$TMP/out" 2>"$TMP/err"
st=$?
SOURCE_DATE_EPOCH=1 "$KVZ" compile "$TMP/docs/a_short.txt" --store "$TMP/s9" --model "$TMP/model.gguf" --device cpu >/dev/null 2>&1
if [ $st -eq 0 ] && "$KVZ" export --store "$TMP/s8" "$TMP/docs/a_short.txt" -o "$TMP/auto.kvz" --quiet 2>/dev/null &&
    "$KVZ" export --store "$TMP/s9" "$TMP/docs/a_short.txt" -o "$TMP/cpu.kvz" --quiet 2>/dev/null &&
    cmp -s "$TMP/auto.kvz" "$TMP/cpu.kvz"; then
    ok "the same GPU and the default device: compiled on the CPU (the CPU's artifact)"
else
    fail "the same GPU and the default device: exit $st: $(tail -n 1 "$TMP/err")"
fi
finish "device memory"
