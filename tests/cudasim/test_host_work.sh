#!/bin/sh
# What a decoded token asks of the host, counted by the CUDA emulation
# (KVZ_BIN=build-sim/kvz; bench/gpu_host_work.sh on a one-layer model): one
# wait for the device and two copies (the step's token, position and row
# counts up, the sampled token back). A wait is the costliest of the host's
# requests on a GPU (the device idles until the host has queued more), so a
# change that adds one to every token fails here rather than going unseen
# until a GPU run.
. tests/cli_lib.sh

LAYERS=1 KVZ_BIN="$KVZ" sh bench/gpu_host_work.sh >"$TMP/table" 2>"$TMP/err" || {
    fail "bench/gpu_host_work.sh: $(tail -n 1 "$TMP/err")"
    finish "host work"
}
per_token() { # per_token GROUP: the per-token column of "GROUP, all"
    awk -v g="$1, all" 'index($0, g) == 1 { print $NF }' "$TMP/table"
}
check() { # check GROUP MOST
    n=$(per_token "$1")
    if [ -n "$n" ] && awk -v n="$n" -v most="$2" 'BEGIN { exit !(n <= most) }'; then
        ok "$1 per decoded token: $n (at most $2)"
    else
        fail "$1 per decoded token: '$n', more than $2"
        sed 's/^/     | /' "$TMP/table"
    fi
}
check waits 1
check copies 2
finish "host work"
