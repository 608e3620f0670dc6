#!/bin/sh
# The eval table of bench/RESULTS.md: every default method at ratios 0.1-1 at
# 4 bits on the project's tasks (2 documents per task, ~300 words each), with
# the plot in bench/eval.svg. About 20 minutes on 2 CPU cores.
#   sh bench/eval.sh            (DEVICE=cuda on a GPU machine; EXTRA= for more flags)
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
echo "machine: $(sh bench/machine.sh), device ${DEVICE:-cpu}"
# shellcheck disable=SC2086
"$KVZ" eval --model "$MODEL" --device "${DEVICE:-cpu}" --docs 2 --words 300 --svg bench/eval.svg ${EXTRA:-}
