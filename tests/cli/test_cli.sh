#!/bin/sh
# The kvz command line end to end: outputs, exit codes and messages.
# Needs KVZ_BIN (the binary) and KVZ_MODEL (the default model).
set -u
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

check() { # check NAME EXPECTED_EXIT COMMAND...
    name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL $name: exit $got, expected $want"; sed 's/^/  stderr: /' "$TMP/err"
        fails=$((fails + 1))
    else
        echo "ok   $name"
    fi
}

expect_in() { # expect_in NAME FILE TEXT
    if ! grep -q -- "$3" "$2"; then
        echo "FAIL $1: '$3' not in $2:"; sed 's/^/  /' "$2"
        fails=$((fails + 1))
    fi
}

check help 0 "$KVZ" --help
expect_in help "$TMP/out" "exit codes"
check no-command 2 "$KVZ"
check unknown-command 2 "$KVZ" frobnicate
check generate-help 0 "$KVZ" generate --help
expect_in generate-help "$TMP/out" "--max-tokens"

# tokenize -> detokenize gives back every byte of real files
for f in tests/data/gpl3_excerpt.txt tests/data/zpipe.c tests/data/python_datamodel.txt; do
    "$KVZ" tokenize --model "$MODEL" <"$f" >"$TMP/ids" || { echo "FAIL tokenize $f"; fails=$((fails + 1)); }
    "$KVZ" detokenize --model "$MODEL" <"$TMP/ids" >"$TMP/back" || { echo "FAIL detokenize $f"; fails=$((fails + 1)); }
    if cmp -s "$f" "$TMP/back"; then echo "ok   round-trip $f"; else echo "FAIL round-trip $f"; fails=$((fails + 1)); fi
done
printf '<|im_start|>user\nhi<|im_end|>' | "$KVZ" tokenize --model "$MODEL" >"$TMP/ids"
expect_in tokenize-special "$TMP/ids" "^1 "
printf '<|im_start|>' | "$KVZ" tokenize --model "$MODEL" --no-special >"$TMP/ids"
if grep -q '^1$' "$TMP/ids"; then echo "FAIL tokenize --no-special"; fails=$((fails + 1)); fi
echo "5 99999999" >"$TMP/bad_ids"
check detokenize-bad-id 2 sh -c "\"$KVZ\" detokenize --model \"$MODEL\" <\"$TMP/bad_ids\""
expect_in detokenize-bad-id "$TMP/err" "99999999"

# a real answer from the real model
check generate-chat 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 24 --prompt "What is the capital of France?"
expect_in generate-chat "$TMP/out" "Paris"
check generate-sampled 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 8 --temperature 0.8 --seed 7 --prompt "Say hello."
cp "$TMP/out" "$TMP/first"
check generate-sampled-again 0 "$KVZ" generate --model "$MODEL" --chat --max-tokens 8 --temperature 0.8 --seed 7 --prompt "Say hello."
if cmp -s "$TMP/out" "$TMP/first"; then echo "ok   same seed, same text"; else echo "FAIL same seed gave different text"; fails=$((fails + 1)); fi

# bad input: clear message, distinct exit code, no crash
check missing-model 3 "$KVZ" generate --model /nonexistent.gguf --prompt hi
expect_in missing-model "$TMP/err" "/nonexistent.gguf"
head -c 1000000 "$MODEL" >"$TMP/cut.gguf"
check truncated-model 4 "$KVZ" generate --model "$TMP/cut.gguf" --prompt hi
expect_in truncated-model "$TMP/err" "truncated"
head -c 4096 /dev/urandom >"$TMP/noise.gguf"
check not-gguf 4 "$KVZ" tokenize --model "$TMP/noise.gguf"
expect_in not-gguf "$TMP/err" "not a GGUF file"
check bad-flag 2 "$KVZ" generate --model "$MODEL" --max-tokens lots --prompt hi
check no-prompt 2 "$KVZ" generate --model "$MODEL"
check context-too-small 10 "$KVZ" generate --model "$MODEL" --ctx 4 --prompt "this prompt is longer than four tokens"
expect_in context-too-small "$TMP/err" "context"
check empty-prompt 2 "$KVZ" generate --model "$MODEL" --prompt ""

if [ "$fails" -ne 0 ]; then
    echo "$fails CLI check(s) failed"
    exit 1
fi
echo "all CLI checks passed"
