#!/bin/sh
# The store under faults: kill -9 at pseudo-random moments of a compile, readers
# answering while a writer compiles and grows the map, a store started with a
# tiny map (KVZ_STORE_MAP_BYTES), a full disk (a file size limit), a map that
# cannot grow (mmap refused), the leftovers of killed readers and writers, and
# a tampered store (planted links, a damaged meta page, a swapped artifact).
# Needs KVZ_BIN and KVZ_MODEL; lmdb-utils (mdb_stat, mdb_dump, mdb_load).
# KVZ_SANITIZE=1 (ASan) runs fewer kills; KVZ_FAULT_SEED changes the kill
# moments, KVZ_FAULT_KILLS their number.
. tests/cli_lib.sh
BG="" # background processes of this script not yet waited for, killed on exit
bg_add() { BG="$BG $1"; }
bg_wait() { # wait for $1 and forget it (a reaped pid may be reused)
    wait "$1" 2>/dev/null # (no "Killed" from the shell)
    _st=$?
    BG=$(for _p in $BG; do [ "$_p" = "$1" ] || printf '%s ' "$_p"; done)
    return $_st
}
cleanup() {
    for p in $BG; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
show() { sed 's/^/     | /' "$@" | head -20; }

if [ "${KVZ_SANITIZE:-}" = 1 ]; then KILLS=${KVZ_FAULT_KILLS:-20}; else KILLS=${KVZ_FAULT_KILLS:-24}; fi
SEED=${KVZ_FAULT_SEED:-20251123}
Q="What is this text about?"

now_ms() { date +%s%3N; }
sleep_ms() { sleep "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"; }
# R: the next number of a fixed pseudo-random sequence (an LCG; KVZ_FAULT_SEED)
rand() {
    SEED=$(((SEED * 1103515245 + 12345) % 2147483648))
    R=$((SEED / 65536))
}
stamp() { stat -c '%s %.9Y' "$1" 2>/dev/null; }
T_START=$(now_ms) SEC_T0=$(now_ms) SEC=""
section() { # name the next group of checks; say how long the previous one took
    [ -n "$SEC" ] && echo "     ($SEC: $((($(now_ms) - SEC_T0) / 1000)) s)"
    SEC=$1 SEC_T0=$(now_ms)
    [ -n "$SEC" ] && echo "# $SEC"
}

# kill_loop N CMD...
#   Runs CMD in the background again and again until it has been killed with
#   SIGKILL N times (3N runs at most). Run k is killed at a moment drawn from the
#   k-th of N equal slices of [KILL_MIN_MS, KILL_MAX_MS) (so the kills spread over
#   the whole run) by the fixed sequence above, so a failure reproduces. With
#   KILL_WATCH set to a file, every third run then also waits for that file to
#   change (a commit being written) and is killed right then. After every run the
#   shell command in KILL_CHECK is evaluated; a non-zero status is a failure
#   naming the run and the moment. A run that ends by itself must exit 0.
#   Sets KILLED, KILL_RUNS and KILL_WATCHED (kills right after a write was seen);
#   returns non-zero when fewer than N kills happened or any check failed.
#   CMD's output goes to $TMP/kill.out and $TMP/kill.err.
KILL_MIN_MS=0 KILL_MAX_MS=1000 KILL_CHECK=: KILL_WATCH=""
kill_loop() {
    _n=$1
    shift
    KILLED=0 KILL_RUNS=0 KILL_WATCHED=0
    _bad=0
    while [ $KILLED -lt "$_n" ] && [ $KILL_RUNS -lt $((3 * _n)) ]; do
        _slice=$(((KILL_MAX_MS - KILL_MIN_MS) / _n))
        [ $_slice -gt 0 ] || _slice=1
        rand
        _ms=$((KILL_MIN_MS + (KILL_RUNS % _n) * _slice + R % _slice))
        KILL_RUNS=$((KILL_RUNS + 1))
        _watch=""
        [ -n "$KILL_WATCH" ] && [ $((KILL_RUNS % 3)) -eq 0 ] && _watch=$KILL_WATCH
        "$@" >"$TMP/kill.out" 2>"$TMP/kill.err" &
        _pid=$!
        bg_add $_pid
        sleep_ms $_ms
        _how="at $_ms ms"
        if [ -n "$_watch" ]; then # then wait for the next write to the file (10 s at most)
            _was=$(stamp "$_watch")
            _until=$(($(now_ms) + 10000))
            while kill -0 $_pid 2>/dev/null && [ "$(stamp "$_watch")" = "$_was" ] && [ "$(now_ms)" -lt $_until ]; do :; done
            _how="at $_ms ms + the next write"
        fi
        kill -9 $_pid 2>/dev/null
        bg_wait $_pid
        _rc=$?
        if [ $_rc -eq 137 ]; then
            KILLED=$((KILLED + 1))
            [ -n "$_watch" ] && KILL_WATCHED=$((KILL_WATCHED + 1))
        elif [ $_rc -ne 0 ]; then
            fail "kill_loop run $KILL_RUNS ($_how): exited $_rc by itself"
            show "$TMP/kill.err"
            _bad=$((_bad + 1))
        fi
        if ! eval "$KILL_CHECK"; then
            fail "kill_loop run $KILL_RUNS (kill -9 $_how, seed ${KVZ_FAULT_SEED:-20251123}): $KILL_CHECK"
            _bad=$((_bad + 1))
        fi
    done
    [ $KILLED -ge "$_n" ] && [ $_bad -eq 0 ]
}

verify_ok() {
    "$KVZ" verify --store "$1" >"$TMP/verify.out" 2>&1 && return 0
    show "$TMP/verify.out"
    return 1
}
n_docs() { "$KVZ" ls --store "$1" 2>/dev/null | sed -n 's/^\([0-9]*\) document(s).*/\1/p'; }
map_size() { mdb_stat -e "$1" | sed -n 's/^ *Map size: *//p'; }
pages_used() { mdb_stat -e "$1" | sed -n 's/^ *Number of pages used: *//p'; }
# bytes of the first mapping of a store's data.mdb in process $1, from /proc
mapped_bytes() {
    _r=$(sed -n '/\/data\.mdb$/{s/ .*//;p;q;}' "/proc/$1/maps" 2>/dev/null)
    [ -n "$_r" ] && echo $((0x${_r#*-} - 0x${_r%-*}))
}
compile() { "$KVZ" compile "$@" --model "$MODEL" --method recent --quiet; }
query() { "$KVZ" query --store "$1" --model "$MODEL" --doc "$2" --max-tokens 4 "$Q"; }

for tool in mdb_stat mdb_dump mdb_load; do
    command -v $tool >/dev/null || { echo "FAIL $tool is missing (apt-get install lmdb-utils)"; exit 1; }
done

# ten short real documents
A="$TMP/a"
mkdir -p "$A" "$TMP/blank"
python3 - "$A" <<'PY'
import sys
docs = []
for f in ("tests/data/python_datamodel.txt", "tests/data/gpl3_excerpt.txt"):
    paras = open(f, encoding="utf-8").read().split("\n\n")
    docs += [p for p in paras if len(p) > 200][:5]
assert len(docs) == 10, len(docs)
for i, p in enumerate(docs):
    open(f"{sys.argv[1]}/doc{i}.txt", "w").write(p + "\n")
PY
printf '   \n' >"$TMP/blank/blank.txt"
DOC0="$A/doc0.txt"

# ---------------------------------------------------------------------------
# a. kill -9 at pseudo-random moments of compiles into one store
section "kill -9 during compiles"
SA="$TMP/sa"
t0=$(now_ms)
compile "$A" --store "$SA" 2>"$TMP/e"
rc=$?
T=$(($(now_ms) - t0))
[ $rc -eq 0 ] && [ "$(n_docs "$SA")" = 10 ] && ok "compile 10 documents ($T ms)" || { fail "compile exit $rc"; show "$TMP/e"; }
# --force: every run writes every document again, so every kill can land in a
# model load, a prefill or a commit; the slices span the first half of a run
# (the model load and four or five documents: the rest is more of the same).
KILL_MIN_MS=0 KILL_MAX_MS=$((T / 2)) KILL_WATCH="$SA/data.mdb" KILL_CHECK='verify_ok "$SA"'
t0=$(now_ms)
if kill_loop $KILLS "$KVZ" compile "$A" --store "$SA" --model "$MODEL" --method recent --force --quiet; then
    ok "kill -9 $KILLED times in $KILL_RUNS compiles ($KILL_WATCHED right after a write was seen): verify passed every time ($(($(now_ms) - t0)) ms)"
else
    fail "kill loop: $KILLED kills in $KILL_RUNS runs (wanted $KILLS, every verify passing)"
fi
compile "$A" --store "$SA" 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && verify_ok "$SA" && [ "$(n_docs "$SA")" = 10 ] && ok "after the kills: a full compile, verify, ls lists 10" \
    || { fail "after the kills: exit $rc, $(n_docs "$SA") documents"; show "$TMP/e"; }

# a store whose creation was killed: before the first pages (an empty data.mdb)
# or before the first commit (an LMDB environment without databases)
mkdir -p "$TMP/sc0" "$TMP/sc1"
: >"$TMP/sc0/data.mdb"
mdb_load -f /dev/null "$TMP/sc1" 2>/dev/null
for sc in "$TMP/sc0" "$TMP/sc1"; do
    before=$(stat -c %s "$sc/data.mdb")
    verify_ok "$sc" && [ "$(n_docs "$sc")" = 0 ] && compile "$DOC0" --store "$sc" 2>"$TMP/e" && verify_ok "$sc" &&
        [ "$(n_docs "$sc")" = 1 ] && ok "interrupted creation (data.mdb of $before bytes): reads as empty, compiling completes it" \
        || { fail "interrupted creation: $sc"; show "$TMP/e"; }
done

# an existing environment missing kvz's databases (what damaged pages of the
# main database look like): every writer refuses it, as readers do, and adds
# nothing (writing into damaged pages made LMDB assert or crash)
mkdir -p "$TMP/nodbs"
printf 'VERSION=3\nformat=print\ntype=btree\nHEADER=END\n store_version\n 1\nDATA=END\n' | mdb_load -s meta "$TMP/nodbs"
mdb_dump -a "$TMP/nodbs" | grep -v "^maxreaders=" >"$TMP/nodbs.before" # (as the lock file says)
for w in "compile $DOC0 --model $MODEL --quiet" "gc" "rm $DOC0"; do
    # shellcheck disable=SC2086
    "$KVZ" $w --store "$TMP/nodbs" >/dev/null 2>"$TMP/e"
    rc=$?
    mdb_dump -a "$TMP/nodbs" | grep -v "^maxreaders=" >"$TMP/nodbs.after"
    [ $rc -eq 4 ] && grep -q "not a kvz store (no 'artifacts' database)" "$TMP/e" && cmp -s "$TMP/nodbs.before" "$TMP/nodbs.after" \
        && ok "a store without its databases: ${w%% *} exit 4, unchanged" || { fail "a store without its databases: $w exit $rc"; show "$TMP/e"; }
done

# ---------------------------------------------------------------------------
# c. a tiny initial map (KVZ_STORE_MAP_BYTES) that grows
section "a tiny map that grows, readers during writes"
KVZ_STORE_MAP_BYTES=lots compile "$TMP/blank" --store "$TMP/sbad" 2>"$TMP/e"
rc=$?
[ $rc -eq 2 ] && grep -q "KVZ_STORE_MAP_BYTES='lots'" "$TMP/e" && [ ! -e "$TMP/sbad" ] \
    && ok "KVZ_STORE_MAP_BYTES=lots: exit 2, named, no store made" || { fail "KVZ_STORE_MAP_BYTES=lots: exit $rc"; show "$TMP/e"; }
KVZ_STORE_MAP_BYTES=1000 compile "$TMP/blank" --store "$TMP/sbad" 2>"$TMP/e"
rc=$?
[ $rc -eq 2 ] && ok "KVZ_STORE_MAP_BYTES=1000 (below 64K): exit 2" || { fail "KVZ_STORE_MAP_BYTES=1000: exit $rc"; show "$TMP/e"; }
SB="$TMP/sb"
KVZ_STORE_MAP_BYTES=64K compile "$TMP/blank" --store "$SB" 2>/dev/null
m0=$(map_size "$SB")
[ "$m0" = 65536 ] && ok "a new store with KVZ_STORE_MAP_BYTES=64K has a 65536-byte map" || fail "initial map: '$m0'"
m1=0
compile "$DOC0" --store "$SB" 2>"$TMP/e" && m1=$(map_size "$SB") && [ "$m1" -gt 65536 ] && verify_ok "$SB" \
    && ok "compile into it: the map grew to $m1 bytes, verify passes" || { fail "compile into a 64K map"; show "$TMP/e"; }
KVZ_STORE_MAP_BYTES=64K compile "$A/doc1.txt" --store "$SB" 2>/dev/null
[ "$(map_size "$SB")" -ge "$m1" ] && ok "KVZ_STORE_MAP_BYTES leaves an existing store's map alone" || fail "existing map shrank"

# b + c. a reader frozen between opening the store and reading it (its map is
# the old, small one), the store grown meanwhile: it must remap (MDB_MAP_RESIZED).
# kvz query opens the store first, then loads the model (most of its time),
# then reads: frozen as soon as data.mdb shows in its maps, having used less
# CPU than half a whole query, it has not read yet.
t0=$(now_ms)
query "$SB" "$DOC0" >"$TMP/q0" 2>"$TMP/e" && [ -s "$TMP/q0" ] && ok "query answers ($(($(now_ms) - t0)) ms)" \
    || { fail "query"; show "$TMP/e"; }
QT=$(($(now_ms) - t0))
frozen="" mapped=0
for attempt in 1 2 3; do
    "$KVZ" query --store "$SB" --model "$MODEL" --doc "$DOC0" --max-tokens 4 "$Q" >"$TMP/p.out" 2>"$TMP/p.err" &
    rp=$!
    bg_add $rp
    until=$(($(now_ms) + 20000))
    while ! grep -q '/data\.mdb$' "/proc/$rp/maps" 2>/dev/null && kill -0 $rp 2>/dev/null && [ "$(now_ms)" -lt $until ]; do :; done
    kill -STOP $rp 2>/dev/null
    mapped=$(mapped_bytes $rp)
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$rp/stat" 2>/dev/null)
    if [ -n "$mapped" ] && [ -n "$cpu_ms" ] && [ "$cpu_ms" -lt $((QT / 2)) ]; then
        frozen=$rp
        break
    fi
    mapped=0
    kill -CONT $rp 2>/dev/null
    bg_wait $rp
done
if [ -n "$frozen" ]; then
    compile "$A/doc2.txt" "$A/doc3.txt" "$A/doc4.txt" --store "$SB" 2>"$TMP/e"
    used=$(($(pages_used "$SB") * 4096))
    kill -CONT $frozen
    bg_wait $frozen
    rc=$?
    if [ "$used" -gt "$mapped" ] && [ $rc -eq 0 ] && [ -s "$TMP/p.out" ]; then
        ok "a reader frozen after ${cpu_ms} ms of CPU with a $mapped-byte map answers after the store grew to $(map_size "$SB") ($used in use)"
    else
        fail "frozen reader: exit $rc, mapped $mapped, in use $used"
        show "$TMP/p.err" "$TMP/e"
    fi
else
    fail "could not freeze a reader between opening the store and reading it (CPU ${cpu_ms:-?} ms, query $QT ms)"
fi

# b. readers in a loop while a writer compiles the rest, and every document again
# at a higher ratio: twice the data, so the map grows again under the readers
echo 0 >"$TMP/nreads"
(
    wrc=0 rounds=0
    while [ $wrc -eq 0 ] && [ $rounds -lt 6 ]; do
        [ $rounds -gt 1 ] && [ "$(cat "$TMP/nreads")" -ge 3 ] && break
        case $rounds in
        0) compile "$A" --store "$SB" 2>>"$TMP/w.err" || wrc=$? ;;
        1) compile "$A" --store "$SB" --ratio 0.6 2>>"$TMP/w.err" || wrc=$? ;;
        *) compile "$A" --store "$SB" --ratio 0.6 --force 2>>"$TMP/w.err" || wrc=$? ;; # until 3 reads overlapped
        esac
        rounds=$((rounds + 1))
    done
    echo "$wrc $rounds" >"$TMP/wdone.tmp" && mv "$TMP/wdone.tmp" "$TMP/wdone"
) &
wp=$!
bg_add $wp
reads=0 rfails=0 m_before=$(map_size "$SB")
while [ ! -f "$TMP/wdone" ]; do
    if query "$SB" "$DOC0" >"$TMP/r.out" 2>"$TMP/r.err" && [ -s "$TMP/r.out" ]; then :; else
        rfails=$((rfails + 1))
        cp "$TMP/r.err" "$TMP/r.failed"
    fi
    reads=$((reads + 1))
    echo $reads >"$TMP/nreads.tmp" && mv "$TMP/nreads.tmp" "$TMP/nreads"
done
bg_wait $wp
read -r wrc rounds <"$TMP/wdone"
m2=$(map_size "$SB")
if [ "$wrc" -eq 0 ] && [ $reads -ge 3 ] && [ $rfails -eq 0 ] && [ "$m2" -gt "$m_before" ]; then
    ok "$reads reader runs during $rounds writer run(s), none failed; map $m_before -> $m2"
else
    fail "concurrent readers: writer exit $wrc, $reads reads, $rfails failed"
    [ -f "$TMP/r.failed" ] && show "$TMP/r.failed"
    show "$TMP/w.err"
fi
verify_ok "$SB" && [ "$(n_docs "$SB")" = 10 ] && [ "$m2" -gt 65536 ] && ok "after the growth: verify passes, ls lists 10" \
    || fail "after the growth: $(n_docs "$SB") documents"

# ---------------------------------------------------------------------------
# d. a full disk, simulated by a file size limit (no root needed)
section "a full disk, a map that cannot grow"
SD="$TMP/sd"
compile "$DOC0" "$A/doc1.txt" --store "$SD" 2>"$TMP/e" || { fail "compile 2"; show "$TMP/e"; }
unit=$( (ulimit -f 4 && python3 -c 'import resource; print(resource.getrlimit(resource.RLIMIT_FSIZE)[0] // 4)'))
size=$(stat -c %s "$SD/data.mdb")
blocks=$(((size + 65536) / unit)) # 64 KiB more than now: less than one document
(
    trap '' XFSZ
    ulimit -f $blocks && exec "$KVZ" compile "$A" --store "$SD" --model "$MODEL" --method recent --quiet
) >"$TMP/d.out" 2>"$TMP/d.err"
rc=$?
if [ $rc -eq 3 ] && [ "$(wc -l <"$TMP/d.err")" -eq 1 ] && grep -q "^FAIL .*doc2.txt: store '.*': a file size limit was reached" "$TMP/d.err" &&
    grep -q "nothing of this write was stored .* run the same command again" "$TMP/d.err"; then
    ok "file size limit $((blocks * unit)) bytes: exit 3, one line: $(cut -c1-60 "$TMP/d.err")..."
else
    fail "file size limit: exit $rc (want 3 and one clear line)"
    show "$TMP/d.err"
fi
verify_ok "$SD" && [ "$(n_docs "$SD")" = 2 ] && ok "after the full disk: verify passes, the 2 documents from before are there" \
    || fail "after the full disk: $(n_docs "$SD") documents"
compile "$A" --store "$SD" 2>"$TMP/e" && verify_ok "$SD" && [ "$(n_docs "$SD")" = 10 ] \
    && ok "the same command without the limit finishes the rest" || { fail "rerun after the full disk"; show "$TMP/e"; }

# a map that cannot grow: mmap of data.mdb refused above 256 KiB by a preloaded shim
if command -v cc >/dev/null; then
    cat >"$TMP/failmap.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* mmap of a file named data.mdb fails with ENOMEM above FAULT_MAP_MAX bytes */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *(*real)(void *, size_t, int, int, int, off_t);
    *(void **)&real = dlsym(RTLD_NEXT, "mmap");
    const char *max = getenv("FAULT_MAP_MAX");
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = fd >= 0 && max ? readlink(link, target, sizeof target) : -1;
    if (n > 9 && memcmp(target + n - 9, "/data.mdb", 9) == 0 && len > strtoull(max, NULL, 10)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return real(addr, len, prot, flags, fd, off);
}
EOF
    if cc -shared -fPIC -o "$TMP/failmap.so" "$TMP/failmap.c" -ldl 2>"$TMP/e"; then
        SG="$TMP/sg"
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" KVZ_STORE_MAP_BYTES=64K \
            FAULT_MAP_MAX=262144 LD_PRELOAD="$TMP/failmap.so" "$KVZ" compile "$A" --store "$SG" --model "$MODEL" \
            --method recent --quiet >/dev/null 2>"$TMP/g.err"
        rc=$?
        if [ $rc -eq 8 ] && [ "$(wc -l <"$TMP/g.err")" -eq 1 ] &&
            grep -q "cannot map the store while growing its map to 524288 bytes (Cannot allocate memory).*run the same command again" "$TMP/g.err"; then
            ok "a map that cannot grow: exit 8, one line: $(cut -c1-60 "$TMP/g.err")..."
        else
            fail "a map that cannot grow: exit $rc (want 8 and one clear line)"
            show "$TMP/g.err"
        fi
        verify_ok "$SG" && compile "$DOC0" --store "$SG" 2>"$TMP/e" && [ "$(n_docs "$SG")" = 1 ] \
            && ok "after the failed growth: verify passes, a rerun compiles" || { fail "after the failed growth"; show "$TMP/e"; }
    else
        fail "cannot build the mmap shim"
        show "$TMP/e"
    fi
else
    ok "no cc: the failed-growth check is skipped"
fi

# ---------------------------------------------------------------------------
# e. leftovers of killed writers and readers, while another process keeps the
# store open (without one, the next opener resets LMDB's lock file anyway)
section "killed writers and readers"
mkfifo "$TMP/hold" "$TMP/load" "$TMP/dump"
"$KVZ" query --store "$SA" --model "$MODEL" --doc "$DOC0" --max-tokens 4 <"$TMP/hold" >"$TMP/h.out" 2>"$TMP/h.err" &
hp=$!
bg_add $hp
exec 3>"$TMP/hold" # the holder waits for its question on stdin: the store stays open
until=$(($(now_ms) + 20000))
while ! grep -q '/data\.mdb$' "/proc/$hp/maps" 2>/dev/null && [ "$(now_ms)" -lt $until ]; do sleep 0.05; done

# a writer killed while it holds the write lock (mdb_load inside its write
# transaction, blocked reading its input), then a new writer must get the lock
mdb_load -s meta -f "$TMP/load" "$SA" 2>/dev/null &
lp=$!
bg_add $lp
exec 4>"$TMP/load"
printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n' >&4
until=$(($(now_ms) + 20000))
# mdb_load reads the header, opens the store, begins its write transaction and
# reads the first record: the store mapped and the process asleep in a pipe
# read means it holds the write lock
while ! { grep -q '/data\.mdb$' "/proc/$lp/maps" && grep -q pipe "/proc/$lp/wchan"; } 2>/dev/null &&
    [ "$(now_ms)" -lt $until ]; do sleep 0.02; done
grep -q pipe "/proc/$lp/wchan" 2>/dev/null || fail "mdb_load did not reach its write transaction"
kill -9 $lp
bg_wait $lp 2>/dev/null
exec 4>&-
timeout 300 "$KVZ" compile "$A/doc0.txt" --store "$SA" --model "$MODEL" --method recent --ratio 0.5 --quiet 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && ok "a writer killed inside its write transaction: the next writer gets the lock" \
    || { fail "writer after a killed writer: exit $rc (124: hung on the lock)"; show "$TMP/e"; }

# readers killed inside a read transaction: mdb_dump blocked writing to a pipe
# nobody reads, and kvz query killed at pseudo-random moments
mdb_dump -s artifacts "$SA" >"$TMP/dump" 2>/dev/null &
dp=$!
bg_add $dp
exec 5<"$TMP/dump"
until=$(($(now_ms) + 20000))
while ! mdb_stat -r "$SA" | grep -q "^ *$dp " && [ "$(now_ms)" -lt $until ]; do sleep 0.05; done
kill -9 $dp
bg_wait $dp 2>/dev/null
exec 5<&-
# the reader table: "pid thread txnid" rows; a row whose process is gone is stale
stale() {
    mdb_stat -r "$1" | awk '$1 ~ /^[0-9]+$/ { print $1 }' | while read -r p; do
        kill -0 "$p" 2>/dev/null || echo "$p"
    done
}
s1=$(stale "$SA")
[ "$s1" = "$dp" ] && ok "a killed reader left its reader slot: $s1" || fail "stale reader slots after killing mdb_dump $dp: '$s1'"
t0=$(now_ms) # timed again here: the machine's load may have changed since QT
query "$SA" "$DOC0" >/dev/null 2>&1
QT=$(($(now_ms) - t0))
s1=$(stale "$SA")
[ -z "$s1" ] && ok "a reader's open frees the slots of killed readers" || fail "after a reader's open, stale readers: $s1"
KILL_MIN_MS=$((QT / 4)) KILL_MAX_MS=$QT KILL_WATCH="" KILL_CHECK=:
kill_loop 6 "$KVZ" query --store "$SA" --model "$MODEL" --doc "$DOC0" --max-tokens 4 "$Q" ||
    fail "query kill loop: $KILLED kills in $KILL_RUNS runs"
compile "$A/doc5.txt" --store "$SA" --ratio 0.5 2>"$TMP/e"
rc=$?
s2=$(stale "$SA")
[ $rc -eq 0 ] && [ -z "$s2" ] && ok "a writer clears them (mdb_stat -r shows no dead reader)" \
    || { fail "after a writer: exit $rc, stale readers: $s2"; mdb_stat -r "$SA" | show; }
query "$SA" "$DOC0" >"$TMP/q" 2>"$TMP/e" && [ -s "$TMP/q" ] && verify_ok "$SA" && ok "then a query answers and verify passes" \
    || { fail "query after the killed readers"; show "$TMP/e"; }
echo "$Q" >&3
exec 3>&-
bg_wait $hp
rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/h.out" ] && ok "the process that held the store open all along answers too" \
    || { fail "holder: exit $rc"; show "$TMP/h.err"; }

# ---------------------------------------------------------------------------
# g. a tampered store: links planted under its files' names, a damaged meta
#    page, an artifact swapped for another; refused, nothing written
section "a tampered store"
ST="$TMP/st"
compile "$DOC0" "$A/doc1.txt" --store "$ST" 2>"$TMP/e" || { fail "compile for the tampering"; show "$TMP/e"; }
for name in lock.mdb data.mdb; do
    rm -rf "$TMP/sl"; cp -r "$ST" "$TMP/sl"; printf 'keep me\n' >"$TMP/victim"
    rm "$TMP/sl/$name"; ln -s ../victim "$TMP/sl/$name"
    "$KVZ" ls --store "$TMP/sl" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 4 ] && [ "$(cat "$TMP/victim")" = "keep me" ] && grep -q "its $name is a symbolic link" "$TMP/e" &&
        ok "$name a link to another file: ls refused (exit 4), the file it names untouched" ||
        { fail "$name a link: exit $rc, the file: $(head -c 40 "$TMP/victim" | od -c | head -1)"; show "$TMP/e"; }
done
rm -rf "$TMP/sm"; cp -r "$ST" "$TMP/sm"
python3 - "$TMP/sm/data.mdb" <<'PY' # the page size in the meta page LMDB reads (the higher transaction id)
import struct, sys
f = open(sys.argv[1], "r+b")
txnid = []
for page in (0, 4096):
    f.seek(page + 144)
    txnid.append(struct.unpack("<Q", f.read(8))[0])
f.seek((0, 4096)[txnid[1] > txnid[0]] + 40)
f.write(struct.pack("<I", 0xCE1000))
PY
"$KVZ" ls --store "$TMP/sm" >/dev/null 2>"$TMP/e"; rc=$?
"$KVZ" verify --store "$TMP/sm" >/dev/null 2>>"$TMP/e"; rv=$?
[ $rc -eq 4 ] && [ $rv -eq 4 ] && grep -q "meta page [01] of its data.mdb is not LMDB's" "$TMP/e" &&
    ok "a meta page's page size changed: ls and verify exit 4 (a SIGBUS before)" ||
    { fail "a damaged meta page: ls $rc, verify $rv"; show "$TMP/e"; }
rm -rf "$TMP/sw"; cp -r "$ST" "$TMP/sw"
mdb_dump -s artifacts "$ST" >"$TMP/artifacts.dump"
python3 - "$TMP/artifacts.dump" <<'PY' # the first artifact's key, the second's bytes
import sys
lines = open(sys.argv[1]).read().split("\n")
h, e = lines.index("HEADER=END") + 1, lines.index("DATA=END")
open(sys.argv[1], "w").write("\n".join(lines[:h] + [lines[h], lines[h + 3], "DATA=END", ""]))
PY
mdb_load -s artifacts "$TMP/sw" <"$TMP/artifacts.dump" 2>/dev/null
"$KVZ" verify --store "$TMP/sw" >/dev/null 2>"$TMP/e"; rv=$?
"$KVZ" pack --store "$TMP/sw" --all -o "$TMP/sw.tar.zst" >/dev/null 2>>"$TMP/e"; rp=$?
"$KVZ" query --store "$TMP/sw" --model "$MODEL" --doc "$DOC0" --doc "$A/doc1.txt" --max-tokens 4 "$Q" >/dev/null 2>>"$TMP/e"; rq=$?
[ $rv -eq 4 ] && [ $rp -eq 4 ] && [ $rq -eq 4 ] && [ ! -e "$TMP/sw.tar.zst" ] &&
    [ "$(grep -c "holds another artifact than its id names" "$TMP/e")" -ge 3 ] &&
    ok "an artifact swapped for another: verify, pack and query refuse (exit 4; verify said all good, query answered from it)" ||
    { fail "a swapped artifact: verify $rv, pack $rp, query $rq"; show "$TMP/e"; }

section ""
echo "     (all: $((($(now_ms) - T_START) / 1000)) s)"
finish fault
