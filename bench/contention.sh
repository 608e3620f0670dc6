#!/bin/sh
# CPU threads beside other busy work: compile (prefill / scoring) and decode
# speed for each thread count x OpenMP wait policy, alone and beside BUSY
# processes that each keep one core busy. Prints a markdown table of medians.
#
#   REPS=3 BUSY=1 sh bench/contention.sh
#
# libgomp reads OMP_WAIT_POLICY when the program starts: unset, a thread that
# finishes its share of a parallel region spins a while before it sleeps.
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DOC=${DOC:-tests/data/gpl3_excerpt.txt}
REPS=${REPS:-3}
BUSY=${BUSY:-1}
THREADS=${THREADS:-$(nproc)}
QUESTION="What does the license allow you to do with the software?"
WORK=$(mktemp -d)
BUSY_PIDS=""
stop_busy() {
    for p in $BUSY_PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $BUSY_PIDS; do wait "$p" 2>/dev/null || true; done
    BUSY_PIDS=""
}
trap 'stop_busy; rm -rf "$WORK"' EXIT
# dash runs no EXIT trap when a signal kills it: exit instead, so the busy
# loops (which ignore ^C, being background jobs) stop with the script
trap 'exit 130' INT
trap 'exit 143' TERM HUP
"$KVZ" compile "$DOC" --store "$WORK/store" --model "$MODEL" --quiet --method kvzip --ratio 0.3 --bits 4 >/dev/null

json_field() { # name: the number after "name": on stdin
    sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}
median() { # numbers on stdin
    sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

echo "machine: $(sh bench/machine.sh); document $DOC; $REPS runs each, medians"
echo
echo "| threads | OMP_WAIT_POLICY | busy processes | prefill s | scoring s | decode tok/s |"
echo "|---|---|---|---|---|---|"
for busy in $(printf "0\n%s\n" "$BUSY" | sort -un); do
    for config in "$THREADS unset" "$THREADS passive" "$THREADS active" "1 unset"; do
        # shellcheck disable=SC2086 # two words: threads and policy
        set -- $config
        threads=$1 policy=$2
        : >"$WORK/runs"
        i=0
        while [ $i -lt "$REPS" ]; do
            b=0
            while [ $b -lt "$busy" ]; do
                sh -c 'while :; do :; done' &
                BUSY_PIDS="$BUSY_PIDS $!"
                b=$((b + 1))
            done
            if [ "$policy" = unset ]; then run="env -u OMP_WAIT_POLICY"; else run="env OMP_WAIT_POLICY=$policy"; fi
            c=$($run "$KVZ" compile "$DOC" --store "$WORK/store" --model "$MODEL" --force --quiet --json \
                --method kvzip --ratio 0.3 --bits 4 --threads "$threads" | head -1)
            q=$($run "$KVZ" query --store "$WORK/store" --doc "$DOC" --model "$MODEL" --max-tokens 64 \
                --threads "$threads" --json "$QUESTION" | tail -1)
            stop_busy
            run_line="$(echo "$c" | json_field prefill_s) $(echo "$c" | json_field score_s) $(echo "$q" | json_field decode_tok_s)"
            case "$run_line" in
            *[0-9]" "*[0-9]" "*[0-9]) echo "$run_line" >>"$WORK/runs" ;;
            *)
                echo "contention: a run failed (threads $threads, policy $policy, $busy busy): $c $q" >&2
                exit 1
                ;;
            esac
            i=$((i + 1))
        done
        echo "| $threads | $policy | $busy | $(cut -d' ' -f1 "$WORK/runs" | median) |" \
            "$(cut -d' ' -f2 "$WORK/runs" | median) | $(cut -d' ' -f3 "$WORK/runs" | median) |"
    done
done
