#!/bin/sh
# The kvz command line end to end: outputs, exit codes and messages.
# Needs KVZ_BIN (the binary) and KVZ_MODEL (the default model).
. tests/cli_lib.sh

check() { # check NAME EXPECTED_EXIT COMMAND...
    name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$name: exit $got, expected $want"; sed 's/^/  stderr: /' "$TMP/err"
    else
        ok "$name"
    fi
}

expect_in() { # expect_in NAME FILE TEXT
    if ! grep -q -- "$3" "$2"; then
        fail "$1: '$3' not in $2:"; sed 's/^/  /' "$2"
    fi
}

check help 0 "$KVZ" --help
expect_in help "$TMP/out" "exit codes"
check no-command 2 "$KVZ"
expect_in no-command "$TMP/err" "^kvz: no command given$"
[ "$(tail -n 1 "$TMP/err")" = "kvz: no command given" ] && ok "no command: said last" || fail "no command: not said last"
check unknown-command 2 "$KVZ" frobnicate
expect_in unknown-command "$TMP/err" "^kvz: unknown command 'frobnicate'; the commands are:$"
expect_in unknown-command "$TMP/err" " synth-model"
[ "$(wc -l <"$TMP/err")" -le 5 ] && ok "unknown command: a few lines, not the whole usage" ||
    fail "unknown command: $(wc -l <"$TMP/err") lines"
# an option where the command goes (before it, or a typo of --version) is said to be one
check option-as-command 2 "$KVZ" --store x ls
expect_in option-as-command "$TMP/err" "^kvz: '--store' is not a command (options go after the command: kvz COMMAND"
# every help fits 80 columns (a narrow terminal, a braille line) and is ASCII under any locale
for c in "" compile query ls inspect verify stats gc rm pack unpack merge export import eval generate tokenize \
    detokenize synth-model bench; do
    "$KVZ" $c --help >"$TMP/h" 2>&1 || fail "kvz $c --help: exit $?"
    LC_ALL=C awk -v c="$c" 'length > 80 || /[^ -~]/ { print "kvz " c " --help, line " NR ": " $0; bad = 1 }
        END { exit bad }' "$TMP/h" >>"$TMP/help-wide" || true
done
[ ! -s "$TMP/help-wide" ] && ok "every --help: lines of 80 columns at most, ASCII" || { fail "--help lines"; cat "$TMP/help-wide"; }
# a value out of range says the range; a name says where the values are listed
check bad-ratio 2 "$KVZ" compile x --store "$TMP/none" --ratio 2
expect_in bad-ratio "$TMP/err" "^kvz compile: invalid value '2' for --ratio: give a number from 1e-06 to 1$"
check bad-max-tokens 2 "$KVZ" query --store "$TMP/none" --doc x --max-tokens -1 q
expect_in bad-max-tokens "$TMP/err" "^kvz query: invalid value '-1' for --max-tokens: give a whole number from 1 to "
check bad-method 2 "$KVZ" compile x --store "$TMP/none" --method foo
expect_in bad-method "$TMP/err" "^kvz compile: invalid value 'foo' for --method (\`kvz compile --help\` lists the values it takes)$"
# --device and --weights are listed by generate's help, which query, compile and eval refer to
check bad-device 2 "$KVZ" query --store "$TMP/none" --doc x --device gpu q
expect_in bad-device "$TMP/err" "^kvz query: invalid value 'gpu' for --device (\`kvz generate --help\` lists"
check bad-weights 2 "$KVZ" query --store "$TMP/none" --doc x --weights f16 q
expect_in bad-weights "$TMP/err" "(\`kvz generate --help\` lists the values it takes)$"
# a prompt or a file where an option is wanted says which
check generate-positional 2 "$KVZ" generate "What is a KV cache?"
expect_in generate-positional "$TMP/err" "^kvz generate: unexpected argument 'What is a KV cache?' (give the prompt with --prompt TEXT)$"
check tokenize-file 2 "$KVZ" tokenize notes.md
expect_in tokenize-file "$TMP/err" "^kvz tokenize: unexpected argument 'notes.md' (it reads stdin: kvz tokenize < FILE)$"
check generate-help 0 "$KVZ" generate --help
expect_in generate-help "$TMP/out" "--max-tokens"
check help-generate 0 "$KVZ" help generate
expect_in help-generate "$TMP/out" "--max-tokens"
check help-version 0 "$KVZ" help --version
expect_in help-version "$TMP/out" "kvz --version"
check version 0 "$KVZ" --version
expect_in version "$TMP/out" "CPU instructions beyond the baseline: "
# on a CPU without what the build may use (MARCH: the build machine's, by default), a word and
# exit 5, not a SIGILL: an emulated Nehalem (SSE4.2, no AVX). qemu-user: scripts/setup.sh.
# (Not under ASan: its shadow memory does not fit qemu's.)
if [ "$(uname -m)" = x86_64 ] && [ "${KVZ_SANITIZE:-0}" != 1 ]; then
    if ! command -v qemu-x86_64 >/dev/null; then
        fail "qemu-x86_64 is missing (scripts/setup.sh installs qemu-user)"
    elif grep -q "baseline: .*avx" "$TMP/out"; then
        check older-cpu 5 qemu-x86_64 -cpu Nehalem "$KVZ" --version
        expect_in older-cpu "$TMP/err" "kvz: this kvz was built for another CPU (MARCH.*this one lacks avx"
    else
        check older-cpu 0 qemu-x86_64 -cpu Nehalem "$KVZ" --version
    fi
fi
# an unknown option: getopt's line, the usage line and where the rest is, not the whole help
check unknown-option 2 "$KVZ" compile --bogus
expect_in unknown-option "$TMP/err" "(kvz compile --help describes every option)"
expect_in unknown-option "$TMP/err" "kvz compile: unrecognized option '--bogus'"
check missing-argument 2 "$KVZ" query --max-tokens
expect_in missing-argument "$TMP/err" "kvz query: option '--max-tokens' requires an argument"
[ "$(wc -l <"$TMP/err")" -eq 3 ] && ok "unknown option: three lines" || fail "unknown option: $(wc -l <"$TMP/err") lines"

# tokenize -> detokenize gives back every byte of real files
for f in tests/data/gpl3_excerpt.txt tests/data/zpipe.c tests/data/python_datamodel.txt; do
    "$KVZ" tokenize --model "$MODEL" <"$f" >"$TMP/ids" 2>"$TMP/err" || fail "tokenize $f"
    "$KVZ" detokenize --model "$MODEL" <"$TMP/ids" >"$TMP/back" || fail "detokenize $f"
    if cmp -s "$f" "$TMP/back" && [ ! -s "$TMP/err" ]; then ok "round-trip $f"; else fail "round-trip $f"; fi
done
# a byte without a token (0xff is never in UTF-8, SmolLM2 has none) is dropped, not silently
printf 'a\377b' | "$KVZ" tokenize --model "$MODEL" >"$TMP/ids" 2>"$TMP/err"
st=$?
if [ $st -eq 0 ] && [ "$(cat "$TMP/ids")" = "81 82" ] && grep -q "give back 2 of the input's 3 bytes" "$TMP/err"; then
    ok "tokenize of a byte without a token: dropped with a warning"
else
    fail "tokenize of 0xff: exit $st, ids $(cat "$TMP/ids"), $(cat "$TMP/err")"
fi
printf '<|im_start|>user\nhi<|im_end|>' | "$KVZ" tokenize --model "$MODEL" >"$TMP/ids"
expect_in tokenize-special "$TMP/ids" "^1 "
printf '<|im_start|>' | "$KVZ" tokenize --model "$MODEL" --no-special >"$TMP/ids"
if grep -q '^1$' "$TMP/ids"; then fail "tokenize --no-special"; fi
echo "5 99999999" >"$TMP/bad_ids"
check detokenize-bad-id 4 sh -c "\"$KVZ\" detokenize --model \"$MODEL\" <\"$TMP/bad_ids\""
expect_in detokenize-bad-id "$TMP/err" "99999999"

# a real answer from the real model
check generate-chat 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 24 --prompt "What is the capital of France?"
expect_in generate-chat "$TMP/out" "Paris"
check generate-sampled 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 8 --temperature 0.8 --seed 7 --prompt "Say hello."
cp "$TMP/out" "$TMP/first"
check generate-sampled-again 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 8 --temperature 0.8 --seed 7 --prompt "Say hello."
if cmp -s "$TMP/out" "$TMP/first"; then ok "same seed, same text"; else fail "same seed gave different text"; fi

# bad input: clear message, distinct exit code, no crash
check missing-model 7 "$KVZ" generate --model /nonexistent.gguf --prompt hi
expect_in missing-model "$TMP/err" "/nonexistent.gguf"
head -c 1000000 "$MODEL" >"$TMP/cut.gguf"
check truncated-model 4 "$KVZ" generate --model "$TMP/cut.gguf" --prompt hi
expect_in truncated-model "$TMP/err" "truncated"
head -c 4096 /dev/urandom >"$TMP/noise.gguf"
check not-gguf 4 "$KVZ" tokenize --model "$TMP/noise.gguf"
expect_in not-gguf "$TMP/err" "not a GGUF file"
check bad-flag 2 "$KVZ" generate --model "$MODEL" --max-tokens lots --prompt hi
check no-prompt 2 "$KVZ" generate --model "$MODEL"
# text that is not UTF-8 is refused (llama.cpp reads a bad byte as U+FFFD, kvz's tokenizer byte by byte)
check prompt-not-utf8 2 "$KVZ" generate --model "$MODEL" --max-tokens 2 --prompt "$(printf 'Caf\351?')"
expect_in prompt-not-utf8 "$TMP/err" "the prompt is not UTF-8 (byte 3 is 0xe9)"
# the pre-split's whitespace and letters are llama.cpp's, not the system PCRE2's: U+180E and a
# Unicode 15 letter (tests/golden/tokenizer.golden holds more)
printf '  \341\240\216 \360\221\275\227'"'"'s' >"$TMP/u15"
check tokenize-unicode 0 sh -c "\"\$0\" tokenize --model \"\$1\" <\"\$2\"" "$KVZ" "$MODEL" "$TMP/u15"
expect_in tokenize-unicode "$TMP/out" "^216 15822 250 232 216 187 235 138 241 506$"
# an option of the other mode is refused even at its default value
check reserve-without-doc 2 "$KVZ" generate --model "$MODEL" --reserve 512 --prompt hi
expect_in reserve-without-doc "$TMP/err" "apply with --doc"
check chunk-with-doc 2 "$KVZ" generate --model "$MODEL" --store "$TMP" --doc x --chunk 512 --prompt hi
expect_in chunk-with-doc "$TMP/err" "do not apply with --doc"
check context-too-small 10 "$KVZ" generate --model "$MODEL" --ctx 4 --prompt "this prompt is longer than four tokens"
expect_in context-too-small "$TMP/err" "context"
check empty-prompt 2 "$KVZ" generate --model "$MODEL" --prompt ""

# bench over loaded caches: KVzip-like uneven heads keep 0.3 of 3 x 256 rows
check bench-ratio 0 "$KVZ" bench --model "$MODEL" --ratio 0.3 --cache-only --prefill 256 --decode 2 --json
expect_in bench-ratio "$TMP/out" '"rows_full":768,"rows_kept":230,'
expect_in bench-ratio "$TMP/out" '"decode_kept_tok_s":'
expect_in bench-ratio "$TMP/out" '{"kind":"cache","engine":"kvz",'
expect_in bench-ratio "$TMP/out" '{"kind":"memory","engine":"kvz","peak_rss_bytes":'
# --decode 0 measures no decode: null, not a rate of 0
check bench-no-decode 0 "$KVZ" bench --model "$MODEL" --prefill 32 --decode 0 --json
expect_in bench-no-decode "$TMP/out" '"decode_tokens":0,"decode_tok_s":null}'
check bench-ratio-range 2 "$KVZ" bench --model "$MODEL" --ratio 1 --cache-only
check bench-cache-only-alone 2 "$KVZ" bench --model "$MODEL" --cache-only
expect_in bench-cache-only-alone "$TMP/err" "needs --ratio"
check bench-extra-argument 2 "$KVZ" bench --model "$MODEL" extra
expect_in bench-extra-argument "$TMP/err" "unexpected argument 'extra'"
check bench-empty-size 2 "$KVZ" bench --model "$MODEL" --prefill 64,
expect_in bench-empty-size "$TMP/err" "invalid --prefill list"
check prompt-file-folder 3 "$KVZ" generate --model "$MODEL" --prompt-file "$TMP"
expect_in prompt-file-folder "$TMP/err" "Is a directory"
# options the model cannot hold are refused before a store is made
printf 'A short document.\n' >"$TMP/short.txt"
check compile-reserve-too-large 10 "$KVZ" compile "$TMP/short.txt" --store "$TMP/never-made" --model "$MODEL" --reserve 8190
expect_in compile-reserve-too-large "$TMP/err" "for --reserve"
check compile-value-group-odd 2 "$KVZ" compile "$TMP/short.txt" --store "$TMP/never-made" --model "$MODEL" --value-group 48
[ ! -e "$TMP/never-made" ] && ok "no store made by a refused compile" || fail "a refused compile left $TMP/never-made"

# a qwen2 model (random weights) compiles and answers; the default model refuses its artifacts
check synth-qwen2 0 "$KVZ" synth-model --shape qwen2-0.5b --layers 2 --vocab 1024 -o "$TMP/qwen2.gguf"
printf 'The harbour light was first lit in 1871.\n\nIt flashes twice every fifteen seconds.\n' >"$TMP/light.txt"
check compile-qwen2 0 "$KVZ" compile "$TMP/light.txt" --store "$TMP/qwen2-store" --model "$TMP/qwen2.gguf" --quiet
check query-qwen2 0 "$KVZ" query --store "$TMP/qwen2-store" --model "$TMP/qwen2.gguf" --doc "$TMP/light.txt" \
    --max-tokens 4 --json "When?"
expect_in query-qwen2 "$TMP/out" '"answer_tokens":'
check query-qwen2-other-model 6 "$KVZ" query --store "$TMP/qwen2-store" --model "$MODEL" --doc "$TMP/light.txt" "When?"
expect_in query-qwen2-other-model "$TMP/err" "compiled for qwen2"
# a document sharing another's artifact (one content): the error names the one asked for, not
# the first compiled, which the artifact's manifest names
cp "$TMP/light.txt" "$TMP/light-copy.txt"
check compile-qwen2-shared 0 "$KVZ" compile "$TMP/light.txt" "$TMP/light-copy.txt" --store "$TMP/qwen2-shared" \
    --model "$TMP/qwen2.gguf" --quiet
check query-qwen2-shared-other-model 6 "$KVZ" query --store "$TMP/qwen2-shared" --model "$MODEL" \
    --doc "$TMP/light-copy.txt" "When?"
expect_in query-qwen2-shared-other-model "$TMP/err" "artifact '$TMP/light-copy.txt' was compiled for qwen2"
# the same shape with other weights (another quantization): said so, and what to do
check synth-qwen2-q4 0 "$KVZ" synth-model --shape qwen2-0.5b --layers 2 --vocab 1024 --type Q4_0 -o "$TMP/qwen2-q4.gguf"
check query-qwen2-other-weights 6 "$KVZ" query --store "$TMP/qwen2-store" --model "$TMP/qwen2-q4.gguf" \
    --doc "$TMP/light.txt" "When?"
expect_in query-qwen2-other-weights "$TMP/err" "its weights differ (another quantization or conversion of the model?); compile the document again with this model"
# ls keeps its columns after a name of wide (CJK) and accented characters
# (names relative to $TMP: a long $TMPDIR would overflow the 40 columns)
mkdir "$TMP/wide" && printf 'A lighthouse log.\n' >"$TMP/wide/灯台の記録.txt" && printf 'Coffee.\n' >"$TMP/wide/café.txt" &&
    printf 'Tea.\n' >"$TMP/wide/plain.txt"
case "$KVZ" in /*) KVZ_ABS=$KVZ ;; *) KVZ_ABS=$PWD/$KVZ ;; esac
(cd "$TMP/wide" && "$KVZ_ABS" compile 灯台の記録.txt café.txt plain.txt --store ../qwen2-store --model ../qwen2.gguf --quiet) &&
    ok "compile wide names" || fail "compile wide names"
check ls-wide-names 0 "$KVZ" ls --store "$TMP/qwen2-store"
python3 - "$TMP/out" <<'PY' && ok "ls: the columns line up after wide names" || fail "ls columns after wide names"
import sys, unicodedata
lines = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8") if " tok " in l and not l.startswith("/")]
def column_of_tok(line):  # the terminal column where " tok " starts
    cut = line.index(" tok ")
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line[:cut])
cols = {column_of_tok(l) for l in lines}
# the header names the columns: "tokens" ends where the rows' "tok" does
header = [l for l in open(sys.argv[1], encoding="utf-8") if l.startswith("document ")]
tok_ends = {c + len(" tok") for c in cols}
header_ok = len(header) == 1 and {header[0].index("tokens") + len("tokens")} == tok_ends
sys.exit(0 if len(lines) == 3 and len(cols) == 1 and header_ok else 1)
PY
# the progress line on a terminal: never wider than it (a wrapped line leaves its rows
# behind on every redraw); none where TERM is "dumb"; --no-progress keeps the lines
printf 'A third document for the progress line.\n' >"$TMP/wide/third.txt"
progress_of() { # TERM COLUMNS: the compile's terminal output, in $TMP/tty
    TERM=$1 script -qec "stty cols $2; '$KVZ_ABS' compile '$TMP/wide/third.txt' --store '$TMP/qwen2-store' \
        --model '$TMP/qwen2.gguf' --force $3" /dev/null >"$TMP/tty" 2>&1 </dev/null
}
cat >"$TMP/redraws.py" <<'PY'
import sys
columns = int(sys.argv[2])
out = open(sys.argv[1], encoding="utf-8", errors="replace", newline="").read()
redraws = [r.split("\n")[0].rstrip("\r") for r in out.split("\r\x1b[K")[1:]]
drawn = [r for r in redraws if r.startswith("[")]
named = columns < 60 or any(r.endswith("third.txt") for r in drawn)  # the name where it has room
sys.exit(0 if drawn and all(len(r) < columns for r in drawn) and "[1/1 docs]" in out and named else 1)
PY
if ! command -v script >/dev/null; then
    fail "script (util-linux, Debian's bsdutils) is missing: the progress line is not tested"
else
    for width in 40 80; do
        progress_of xterm $width "" && python3 "$TMP/redraws.py" "$TMP/tty" $width &&
            ok "progress: within the terminal's $width columns" ||
            { fail "progress at $width columns"; cat -A "$TMP/tty" | head -5; }
    done
    progress_of dumb 80 "" && ! grep -q "$(printf '\033')" "$TMP/tty" && ! grep -q "$(printf '\r')\[" "$TMP/tty" &&
        grep -q "third.txt" "$TMP/tty" && ok "progress: none where TERM is dumb, the document's line stays" ||
        { fail "progress with TERM=dumb"; cat -A "$TMP/tty" | head -5; }
    progress_of xterm 80 --no-progress && ! grep -q "docs\]" "$TMP/tty" && grep -q "third.txt" "$TMP/tty" &&
        ok "progress: --no-progress" || { fail "--no-progress"; cat -A "$TMP/tty" | head -5; }
    # a file edited while it is compiled (once the progress line names it: read) is not
    # written: a compile that read it later stores the new content, or the next run does
    cp tests/data/gpl3_excerpt.txt "$TMP/edited.txt"
    TERM=xterm script -qec "stty cols 100; '$KVZ_ABS' compile '$TMP/edited.txt' --store '$TMP/edit-store' \
        --model '$MODEL' --threads 1" /dev/null >"$TMP/etty" 2>&1 </dev/null &
    compiling=$!
    n=0
    until grep -q "edited.txt" "$TMP/etty" 2>/dev/null || [ $n -ge 1200 ]; do sleep 0.1; n=$((n + 1)); done
    echo "A sentence added while the file was being compiled." >>"$TMP/edited.txt"
    wait $compiling
    grep -q "skip .*edited.txt: the file changed while it was compiled: nothing written" "$TMP/etty" &&
        "$KVZ" ls --store "$TMP/edit-store" >"$TMP/o" && ! grep -q "edited.txt" "$TMP/o" &&
        "$KVZ" compile "$TMP/edited.txt" --store "$TMP/edit-store" --method recent --quiet 2>/dev/null &&
        "$KVZ" ls --store "$TMP/edit-store" | grep -q "edited.txt" &&
        ok "a file edited while compiled: not written, the next compile stores it" ||
        { fail "a file edited while compiled"; tr '\r' '\n' <"$TMP/etty" | tail -5; cat "$TMP/o"; }
fi
check synth-bad-vocab 2 "$KVZ" synth-model --shape qwen2-0.5b --vocab 10 -o "$TMP/x.gguf"

# a model with Llama 3.1's RoPE frequency factors compiles and answers; qwen2 has no such factors
# OMP_NUM_THREADS bounds the threads where --threads is not given, as for any OpenMP program
check synth-tiny 0 "$KVZ" synth-model --shape tiny -o "$TMP/tiny.gguf"
OMP_NUM_THREADS=1 "$KVZ" bench --model "$TMP/tiny.gguf" --prefill 16 --decode 1 >"$TMP/b1" 2>&1 &&
    OMP_NUM_THREADS=1 "$KVZ" bench --model "$TMP/tiny.gguf" --prefill 16 --decode 1 --threads 2 >"$TMP/b2" 2>&1 &&
    grep -q "on cpu (1 threads)" "$TMP/b1" && grep -q "on cpu (2 threads)" "$TMP/b2" &&
    ok "OMP_NUM_THREADS=1: one thread; --threads 2 over it: two" || { fail "OMP_NUM_THREADS"; cat "$TMP/b1" "$TMP/b2"; }
OMP_NUM_THREADS=2000 "$KVZ" bench --model "$TMP/tiny.gguf" --prefill 16 --decode 1 >"$TMP/b3" 2>&1 &&
    grep -q "on cpu (1024 threads)" "$TMP/b3" && grep -q "warning: OMP_NUM_THREADS=2000 gives 1024 threads" "$TMP/b3" &&
    ok "OMP_NUM_THREADS over 1024: 1024 threads, warned of" || { fail "OMP_NUM_THREADS=2000"; cat "$TMP/b3"; }
# in a log (stderr no terminal), the counts and the ETA after a document every --progress-every
# seconds (0: after each but the last, whose totals follow); none with --no-progress
for n in 1 2 3; do printf 'Document %s of three.\n' $n >"$TMP/log$n.txt"; done
"$KVZ" compile "$TMP/log1.txt" "$TMP/log2.txt" "$TMP/log3.txt" --store "$TMP/log-store" --model "$TMP/tiny.gguf" \
    --method recent --reserve 16 --progress-every 0 2>"$TMP/log" &&
    "$KVZ" compile "$TMP/log1.txt" "$TMP/log2.txt" "$TMP/log3.txt" --store "$TMP/log-store" --model "$TMP/tiny.gguf" \
        --method recent --reserve 16 --progress-every 0 --no-progress 2>"$TMP/log-none" &&
    [ "$(grep -c '^kvz compile: \[[0-9]/3 docs\] [0-9]* tok  [0-9]* tok/s  ETA ' "$TMP/log")" -eq 2 ] &&
    grep -q '^kvz compile: \[2/3 docs\]' "$TMP/log" && ! grep -q 'docs\]' "$TMP/log-none" &&
    "$KVZ" compile "$TMP/log1.txt" "$TMP/log2.txt" "$TMP/log3.txt" --store "$TMP/log-store" --model "$TMP/tiny.gguf" \
        --method recent --reserve 16 2>"$TMP/log-default" && ! grep -q 'docs\]' "$TMP/log-default" &&
    "$KVZ" compile "$TMP/log1.txt" "$TMP/log2.txt" "$TMP/log3.txt" --store "$TMP/log-store" --model "$TMP/tiny.gguf" \
        --method recent --reserve 16 --progress-every 0 --quiet 2>"$TMP/log-quiet" && [ ! -s "$TMP/log-quiet" ] &&
    ok "a log's progress lines: after documents 1 and 2 of 3; none with --no-progress, --quiet or a short run" ||
    { fail "a log's progress lines"; cat "$TMP/log" "$TMP/log-none" "$TMP/log-default" "$TMP/log-quiet"; }
# within a long document too (a book is minutes), naming it: not with 0 (a line per document)
"$KVZ" compile "$TMP/log1.txt" --store "$TMP/log-store2" --model "$TMP/tiny.gguf" --method recent --reserve 16 \
    --progress-every 0.000001 2>"$TMP/log-within" &&
    grep -q '^kvz compile: \[0/1 docs\] [0-9]* tok  [0-9]* tok/s  ETA .*  ([0-9]* tok into .*log1\.txt)$' \
        "$TMP/log-within" &&
    ok "a log's progress lines within a document, with its name" ||
    { fail "progress within a document"; cat "$TMP/log-within"; }
# --max-bytes takes K, M, G, T (1024s); another suffix is refused, saying which it takes
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13; do cat "$TMP/light.txt"; done >"$TMP/over-1k.txt"
check max-bytes-k 0 "$KVZ" compile "$TMP/log1.txt" "$TMP/over-1k.txt" --store "$TMP/max-bytes-store" \
    --model "$TMP/tiny.gguf" --method recent --reserve 16 --max-bytes 1K
expect_in max-bytes-k "$TMP/err" "^skip .*over-1k\.txt: larger than --max-bytes (1024 bytes)$"
check max-bytes-bad 2 "$KVZ" compile "$TMP/log1.txt" --store "$TMP/max-bytes-store" --max-bytes 1x
expect_in max-bytes-bad "$TMP/err" "may end in K, M, G or T"
# a model that asks for a BOS (tokenizer.ggml.add_bos_token, a Llama 3 base model) gets one
# before a raw prompt, as llama.cpp gives it; a chat template writes its own
check synth-add-bos 0 "$KVZ" synth-model --shape tiny --add-bos -o "$TMP/add-bos.gguf"
bos_tokens() { "$KVZ" generate --model "$1" --prompt Hello --max-tokens 1 --stats ${2:-} 2>&1 >/dev/null |
    sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p'; }
[ "$(bos_tokens "$TMP/add-bos.gguf")" = $(($(bos_tokens "$TMP/tiny.gguf") + 1)) ] &&
    [ "$(bos_tokens "$TMP/add-bos.gguf" --chat)" = "$(bos_tokens "$TMP/tiny.gguf" --chat)" ] &&
    ok "add_bos_token: a BOS before a raw prompt, none added to a chat" ||
    fail "add_bos_token: raw $(bos_tokens "$TMP/add-bos.gguf") vs $(bos_tokens "$TMP/tiny.gguf")"
# heads of 96 channels: the default value group is 48 (64 does not divide them), and a group
# given that does not divide them is refused with one that does
check synth-heads-96 0 "$KVZ" synth-model --shape smollm2-135m --layers 1 --heads 6 --vocab 300 -o "$TMP/hd96.gguf"
check compile-hd96 0 "$KVZ" compile "$TMP/light.txt" --store "$TMP/hd96-store" --model "$TMP/hd96.gguf" --quiet
check ls-hd96 0 "$KVZ" ls --store "$TMP/hd96-store"
expect_in ls-hd96 "$TMP/out" "value-group 48 "
check query-hd96 0 "$KVZ" query --store "$TMP/hd96-store" --model "$TMP/hd96.gguf" --doc "$TMP/light.txt" \
    --max-tokens 2 "When?"
check compile-hd96-group 2 "$KVZ" compile "$TMP/light.txt" --store "$TMP/hd96-store" --model "$TMP/hd96.gguf" \
    --value-group 36
expect_in compile-hd96-group "$TMP/err" "^kvz compile: --value-group 36 does not divide the head size 96 (32 does; 96 or more is one group per head)$"
check compile-hd96-group-64 2 "$KVZ" compile "$TMP/light.txt" --store "$TMP/hd96-store" --model "$TMP/hd96.gguf" \
    --value-group 64 # given: refused, not changed
expect_in compile-hd96-group-64 "$TMP/err" "^kvz compile: --value-group 64 does not divide the head size 96 (48 does"
check synth-rope-freqs 0 "$KVZ" synth-model --shape tiny --ctx 8192 --rope-freqs 64 -o "$TMP/rope-freqs.gguf"
check compile-rope-freqs 0 "$KVZ" compile "$TMP/light.txt" --store "$TMP/rope-freqs-store" \
    --model "$TMP/rope-freqs.gguf" --quiet
check query-rope-freqs 0 "$KVZ" query --store "$TMP/rope-freqs-store" --model "$TMP/rope-freqs.gguf" \
    --doc "$TMP/light.txt" --max-tokens 4 --json "When?"
expect_in query-rope-freqs "$TMP/out" '"answer_tokens":'
# an answer cut by --max-tokens says so on stderr (--json says it in "stopped_by")
check query-cut 0 "$KVZ" query --store "$TMP/rope-freqs-store" --model "$TMP/rope-freqs.gguf" \
    --doc "$TMP/light.txt" --max-tokens 2 "When?"
expect_in query-cut "$TMP/err" "^kvz query: the answer was cut at --max-tokens 2, before the model ended it$"
# query keeps the weights as the file has them by default (questions given on the command
# line); --weights chooses, and a bad value is refused
check query-weights-f32 0 "$KVZ" query --store "$TMP/rope-freqs-store" --model "$TMP/rope-freqs.gguf" \
    --doc "$TMP/light.txt" --max-tokens 4 --weights f32 "When?"
check query-weights-bad 2 "$KVZ" query --store "$TMP/rope-freqs-store" --model "$TMP/rope-freqs.gguf" \
    --doc "$TMP/light.txt" --weights fp8 "When?"
expect_in query-weights-bad "$TMP/err" "invalid value 'fp8' for --weights"
check synth-rope-freqs-qwen2 2 "$KVZ" synth-model --shape qwen2-0.5b --rope-freqs 64 -o "$TMP/x.gguf"
expect_in synth-rope-freqs-qwen2 "$TMP/err" "need a llama model"
check synth-rope-factor-alone 2 "$KVZ" synth-model --shape tiny --rope-factor 32 -o "$TMP/x.gguf"
expect_in synth-rope-factor-alone "$TMP/err" "needs --rope-freqs"
check synth-rope-factor-32 0 "$KVZ" synth-model --shape tiny --rope-freqs 64 --rope-factor 32 -o "$TMP/x.gguf"

# compile's cache is sized by the documents, not by the context a model states: a short
# document on a model of 16M tokens of context compiles in 2 GB of address space (it
# asked for 2 GiB of keys at once). Not under ASan, whose shadow memory needs more.
if [ "${KVZ_SANITIZE:-0}" != 1 ]; then
    check synth-16m-context 0 "$KVZ" synth-model --shape tiny --ctx 16777216 -o "$TMP/ctx16m.gguf"
    (ulimit -v 2000000 && "$KVZ" compile "$TMP/light.txt" --store "$TMP/ctx16m-store" --model "$TMP/ctx16m.gguf" \
        --quiet && "$KVZ" query --store "$TMP/ctx16m-store" --model "$TMP/ctx16m.gguf" --doc "$TMP/light.txt" \
        --max-tokens 4 "When?" >/dev/null) 2>"$TMP/err" && ok "a model stating 16M tokens of context: compile and query in 2 GB" ||
        fail "a model stating 16M tokens of context: $(cat "$TMP/err")"
fi

finish CLI
