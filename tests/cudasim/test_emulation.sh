#!/bin/sh
# The emulation's own checks, shown working (tests/cudasim/emulation_cases.cu,
# KVZ_SIM_CASES=build-sim/tests/cudasim/emulation_cases): stream work waits
# until the host waits for its stream, so a result read too early is stale,
# pinned memory is read when a copy runs and pageable memory at the call, an
# event wait runs its stream up to the event, another stream that does not
# wait sees the old value, a call that waits for the device runs every stream;
# KVZ_CUDASIM_DEFER=0 runs work at once; a shuffle from a lane that has left
# the kernel or is outside the mask stops the run with a message, as does a
# kernel's shared-memory limit set to a new value, and a block larger than
# its kernel's __launch_bounds__; fresh device and pinned memory read as NaN
# (INT_MAX as an int), as garbage a sum cannot hide; the profile
# counts launches by kernel, copies and the host's waits. These are
# what the emulated CUDA tests rely on to fail when kvz's host code or kernels
# do such a thing.
. tests/cli_lib.sh
CASES=${KVZ_SIM_CASES:-build-sim/tests/cudasim/emulation_cases}
export KVZ_CUDASIM_DEFER=1 # the default, whatever the caller set

expect() { # expect CASE TEXT...: the case prints exactly these lines and succeeds
    _case=$1
    shift
    _want=$(printf '%s\n' "$@")
    _got=$("$CASES" "$_case" 2>&1)
    _st=$?
    if [ $_st -eq 0 ] && [ "$_got" = "$_want" ]; then
        ok "$_case: $(echo "$_got" | paste -sd ';' -)"
    else
        fail "$_case: exit $_st, printed: $_got (expected: $_want)"
    fi
}

stops() { # stops CASE MESSAGE: the case ends abnormally, with MESSAGE in what it printed
    _got=$({ "$CASES" "$1"; } 2>&1) # the braces also take in the shell's own "Aborted"
    _st=$?
    if [ $_st -ne 0 ] && echo "$_got" | grep -F cudasim: | grep -qF "$2"; then
        ok "$1 stops the run: $(echo "$_got" | grep -F cudasim:)"
    else
        fail "$1: exit $_st, printed: $_got (expected the run to stop with: $2)"
    fi
}

expect read-before-wait "before waiting: -1" "after waiting: 7"
expect pinned-source "pinned source: the device got 2"
expect pageable-source "pageable source: the device got 1"
expect event-wait "after the event: 1" "after the stream: 2"
expect other-stream "unsynchronised, the other stream read 0"
expect device-wait "after cudaFree: 9"
KVZ_CUDASIM_DEFER=0 expect read-before-wait "before waiting: 7" "after waiting: 7"
expect shuffle "warp sum: 496"
stops shuffle-left-lane "shuffles from thread 5, which has left the kernel"
stops shuffle-mask "a lane calls a shuffle whose mask leaves it out"
expect smem-limit "limit set"
stops smem-limit-lowered "limit set to 50000 bytes after 60000"
expect launch-bounds "launched 64 threads"
stops launch-bounds-over "a block of 128 threads launches a kernel whose __launch_bounds__ is 64 threads"
expect fresh-memory "fresh device memory + 1: nan, as an int: 2147483647" "fresh pinned memory + 1: nan"

# the profile (KVZ_CUDASIM_PROFILE) counts what the case asked of the GPU
KVZ_CUDASIM_PROFILE="$TMP/profile" "$CASES" pageable-source >/dev/null 2>&1
want="1 16 alloc cudaMalloc
1 4 copy to device from pageable
1 4 copy to pageable host
1 0 wait (implicit) copy to pageable host
1 0 wait (implicit) cudaFree
1 0 wait cudaStreamSynchronize"
if [ "$(cat "$TMP/profile" 2>/dev/null)" = "$want" ]; then
    ok "profile of pageable-source: $(paste -sd ';' "$TMP/profile")"
else
    fail "profile of pageable-source: $(cat "$TMP/profile" 2>/dev/null) (expected: $want)"
fi
KVZ_CUDASIM_PROFILE="$TMP/profile" "$CASES" read-before-wait >/dev/null 2>&1
if grep -qx "1 0 launch set_value" "$TMP/profile" && grep -qx "1 4 copy to pinned host" "$TMP/profile" &&
    ! grep -q pageable "$TMP/profile"; then
    ok "profile of read-before-wait: the kernel by name, the copy to pinned memory"
else
    fail "profile of read-before-wait: $(cat "$TMP/profile" 2>/dev/null)"
fi
finish "emulation"
