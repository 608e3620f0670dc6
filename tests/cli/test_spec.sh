#!/bin/sh
# format/SPEC.md and format/BUNDLE.md hold what kvz writes: artifacts of every
# kind of compile and a bundle, decoded by tests/format/spec_reader.py, a
# reader written from those documents alone, agree with `kvz inspect` and
# `kvz tokenize`, and a changed byte is refused. Needs KVZ_BIN, KVZ_MODEL and
# Python's numpy, zstandard and xxhash (scripts/setup.sh installs them).
. tests/cli_lib.sh
READER="python3 tests/format/spec_reader.py"
DOC=tests/data/gpl3_excerpt.txt

if ! python3 -c 'import numpy, zstandard, xxhash' 2>"$TMP/e"; then
    fail "the format reader needs Python's numpy, zstandard and xxhash (scripts/setup.sh): $(tail -1 "$TMP/e")"
    finish "format"
fi

# label, then compile options: segments (a large compile reserve), whole heads
# at 2 bits (heads left with f16 pairs only), SnapKV at 8 bits under the
# pyramid budget, ChunkKV at 16
set -- "seg:--reserve 7700" "head2:--level head --bits 2" \
    "snap8:--method snapkv --ratio 0.2 --bits 8 --budget-shape pyramid" \
    "chunk16:--method chunkkv --bits 16"
for variant in "$@"; do
    label=${variant%%:*}
    # shellcheck disable=SC2086 # the options
    if ! "$KVZ" compile $DOC --store "$TMP/$label" --model "$MODEL" ${variant#*:} --quiet 2>"$TMP/e"; then
        fail "compile $label"; cat "$TMP/e"; continue
    fi
    "$KVZ" inspect --store "$TMP/$label" $DOC --json >"$TMP/$label.inspect" 2>"$TMP/e" || { fail "inspect $label"; cat "$TMP/e"; }
    n=$(grep -c '"segment"' "$TMP/$label.inspect")
    k=1 files=""
    while [ "$k" -le "$n" ]; do
        "$KVZ" export --store "$TMP/$label" $DOC --segment $k -o "$TMP/$label.$k.kvz" --quiet 2>"$TMP/e" ||
            { fail "export $label segment $k"; cat "$TMP/e"; }
        files="$files $TMP/$label.$k.kvz"
        k=$((k + 1))
    done
    # shellcheck disable=SC2086 # the files, in segment order
    if $READER --json $files >"$TMP/$label.read" 2>"$TMP/e"; then
        ok "$label: $n artifact(s) decoded from the specification alone"
    else
        fail "$label: the reader refused"; cat "$TMP/$label.read" "$TMP/e"
    fi
done

# what the reader decoded is what kvz says it wrote
KVZ="$KVZ" python3 - "$TMP" "$DOC" "$@" <<'PY' >"$TMP/cmp" 2>&1
import json, os, subprocess, sys
tmp, doc, labels = sys.argv[1], sys.argv[2], [v.split(":")[0] for v in sys.argv[3:]]
text_hash = subprocess.run(["python3", "tests/format/spec_reader.py", "--doc-hash", doc], capture_output=True,
                           text=True, check=True).stdout.strip()
bad = 0
for label in labels:
    inspected = [json.loads(l) for l in open(f"{tmp}/{label}.inspect")]
    read = [json.loads(l) for l in open(f"{tmp}/{label}.read")]
    listed = [json.loads(l) for l in subprocess.run([os.environ["KVZ"], "ls", "--store", f"{tmp}/{label}", "--json"],
                                                    capture_output=True, text=True, check=True).stdout.splitlines()]
    if [l["config_id"] for l in listed] != [i["config_id"] for i in inspected[:1]]:
        print(f"{label}: inspect's config_id {inspected[0]['config_id']}, ls's {[l['config_id'] for l in listed]}"); bad += 1
    if len(inspected) != len(read):
        print(f"{label}: inspect lists {len(inspected)} segments, {len(read)} read"); bad += 1; continue
    for i, r in zip(inspected, read):
        m = r["manifest"]
        kept = [(l["kept"], l["min"], l["max"]) for l in r["layers"]]
        said = [(l["kept"], l["min"], l["max"]) for l in i["layers"]]
        for what, a, b in [("kept per layer", kept, said), ("bytes", r["bytes"], i["bytes"]),
                           ("n_tokens", m["n_tokens"], i["n_tokens"]), ("bits", m["bits"], i["bits"]),
                           ("segment", m["segment"], i["segment"]), ("doc_hash", m["doc_hash"], text_hash),
                           ("model_fingerprint", "%016x" % m["model_fingerprint"], i["model_fingerprint"]),
                           ("prefix_hash", "%016x" % m["prefix_hash"], i["prefix_hash"]),
                           ("mean per layer", [round(l["kept"] / m["n_kv_heads"], 1) for l in r["layers"]],
                            [l["mean"] for l in i["layers"]])] + \
                          [(k, m.get(k, 0), i[k]) for k in ("n_segments", "prefix_tokens", "budget", "key_group",
                                                            "value_group", "fp16_tokens", "n_layers", "n_heads",
                                                            "n_kv_heads", "head_dim")] + \
                          [(k, m.get(k, ""), i[k]) for k in ("model_arch", "template", "method", "level", "budget_shape",
                                                             "options", "compiler", "config", "summary")]:
            if a != b:
                print(f"{label} segment {i['segment']}: {what}: read {a}, kvz says {b}"); bad += 1
        # options as the segment used them: only SnapKV max-pools its window scores
        pool = "pool=7" if m["method"] == "snapkv" else "pool=0"
        if pool not in m["options"].split():
            print(f"{label} segment {i['segment']}: options '{m['options']}' lack {pool}"); bad += 1
        # and name reuse, beta and decay only where they acted
        names = {o.split("=")[0] for o in m["options"].split()}
        chunked = "chunk=0" not in m["options"].split()
        for name, acted in (("reuse", chunked), ("beta", m["budget_shape"] == "pyramid"),
                            ("decay", m["budget_shape"] == "decay")):
            if (name in names) != acted:
                print(f"{label} segment {i['segment']}: options '{m['options']}' and {name}"); bad += 1
        # the sections' bytes and the table (header, table, trailer) make up the whole file
        sb = i["section_bytes"]
        if sum(sb.values()) != i["bytes"] or sb["table"] != 64 + 48 * r["sections"] + 16:
            print(f"{label} segment {i['segment']}: section bytes {sb} of {i['bytes']}"); bad += 1
        for kind in ("keys", "values"):
            if r[kind]["nan"] or r[kind]["inf"] or r[kind]["absmax"] == 0:
                print(f"{label}: {kind} decode to {r[kind]}"); bad += 1
print("mismatches:", bad)
sys.exit(1 if bad else 0)
PY
[ $? -eq 0 ] && ok "kept pairs per layer, bytes, the manifest's fields and doc_hash agree with kvz inspect --json (its config_id with ls's)" ||
    { fail "the reader and kvz inspect disagree"; cat "$TMP/cmp"; }

# TOKENS of a one-segment artifact are the text's tokens
"$KVZ" tokenize --model "$MODEL" <$DOC >"$TMP/tokens" 2>"$TMP/e"
python3 - "$TMP/head2.1.kvz" "$TMP/tokens" <<'PY' && ok "TOKENS hold what kvz tokenize gives" || fail "TOKENS differ"
import sys
sys.path.insert(0, "tests/format")
import spec_reader
a = spec_reader.Artifact(open(sys.argv[1], "rb").read())
sys.exit(0 if [int(t) for t in a.tokens] == [int(t) for t in open(sys.argv[2]).read().split()] else 1)
PY

# a bundle: manifest, prefix and segments, ids and hashes as BUNDLE.md says
"$KVZ" pack --store "$TMP/seg" --all -o "$TMP/seg.tar.zst" --quiet 2>"$TMP/e" || { fail "pack"; cat "$TMP/e"; }
$READER --bundle "$TMP/seg.tar.zst" >"$TMP/bundle" 2>&1 && [ "$(grep -c ' OK$' "$TMP/bundle")" -ge 4 ] &&
    ok "the bundle read from BUNDLE.md alone: the prefix and $(grep -c '^artifacts/' "$TMP/bundle") segments" ||
    { fail "the reader refused the bundle"; cat "$TMP/bundle"; }

# a byte changed anywhere is refused (header, table, a payload, the trailer)
python3 - "$TMP/snap8.1.kvz" <<'PY' >"$TMP/flips" 2>&1 && ok "20 single-byte changes, each refused" ||
import sys
sys.path.insert(0, "tests/format")
import spec_reader
data = open(sys.argv[1], "rb").read()
accepted = 0
for k in range(20):
    at = [3, 20, 70, 200, len(data) - 3][k] if k < 5 else (k * 2654435761) % len(data)
    changed = bytearray(data)
    changed[at] ^= 0x5A
    try:
        spec_reader.Artifact(bytes(changed))
        print(f"byte {at} changed: accepted")
        accepted += 1
    except spec_reader.Refused:
        pass
sys.exit(1 if accepted else 0)
PY
    { fail "a changed byte was accepted"; cat "$TMP/flips"; }
# FILE is refused by the spec's reader (its message matching $2) and by `kvz import` (exit 4, its
# message matching $3), with no store made: ok "$4", else fail
both_refuse() {
    python3 - "$1" >"$TMP/reader" 2>&1 <<'PY'
import sys
sys.path.insert(0, "tests/format")
import spec_reader
try:
    spec_reader.Artifact(open(sys.argv[1], "rb").read())
    print("accepted")
    sys.exit(1)
except spec_reader.Refused as e:
    print("refused:", e)
PY
    rc=$?
    rm -rf "$TMP/refused_store"
    "$KVZ" import "$1" --store "$TMP/refused_store" >/dev/null 2>"$TMP/e"; krc=$?
    [ $rc -eq 0 ] && grep -q "$2" "$TMP/reader" && [ $krc -eq 4 ] && grep -q "$3" "$TMP/e" && [ ! -e "$TMP/refused_store" ] &&
        ok "$4: refused by the spec's reader and by kvz (exit 4)" ||
        { fail "$4: reader $rc, kvz import $krc"; cat "$TMP/reader" "$TMP/e"; }
}
# payloads are contiguous (SPEC section 2): an artifact with 8 bytes between its last payload and
# its trailer, its sizes and checksums made right, is refused by the spec's reader and by kvz
python3 - "$TMP/snap8.1.kvz" "$TMP/gap.kvz" <<'PY'
import sys
sys.path.insert(0, "tests/format")
import spec_reader
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(spec_reader.seal(data[:-16] + bytes(8)))
PY
both_refuse "$TMP/gap.kvz" "trailer starts" "trailer starts" "a gap before the trailer"
# SPEC section 9: a section of a kind a later minor adds is skipped (its checksum checked); in a
# 1.0 artifact the same section is damage. The artifact gets a kind-9 section at the table's end.
python3 - "$TMP/snap8.1.kvz" "$TMP/kind9" <<'PY' >"$TMP/kind9.out" 2>&1
import sys
sys.path.insert(0, "tests/format")
import spec_reader
data = open(sys.argv[1], "rb").read()
for minor in (0, 1):
    body = spec_reader.append_section(data, 9, 0xFFFF, 0xFFFF, b"a later minor's section", minor=minor)
    open("%s.1.%d.kvz" % (sys.argv[2], minor), "wb").write(body)
    try:
        a = spec_reader.Artifact(body)
        print("minor %d: read, %d section(s) skipped" % (minor, len(a.skipped)))
    except spec_reader.Refused as e:
        print("minor %d: refused: %s" % (minor, e))
PY
"$KVZ" import "$TMP/kind9.1.1.kvz" --store "$TMP/k9store" >/dev/null 2>"$TMP/e1"; k1=$?
"$KVZ" verify --store "$TMP/k9store" >/dev/null 2>>"$TMP/e1"; v1=$?
"$KVZ" import "$TMP/kind9.1.0.kvz" --store "$TMP/k9store0" >/dev/null 2>"$TMP/e0"; k0=$?
grep -q "minor 1: read, 1 section(s) skipped" "$TMP/kind9.out" && grep -q "minor 0: refused.*kind 9" "$TMP/kind9.out" &&
    [ $k1 -eq 0 ] && [ $v1 -eq 0 ] && [ $k0 -eq 4 ] && grep -q "version 1.0 artifact has no section kind 9" "$TMP/e0" &&
    ok "an unknown section kind: skipped in a 1.1 artifact, refused in a 1.0 one (spec's reader and kvz)" ||
    { fail "kind 9: kvz import 1.1 $k1, verify $v1, import 1.0 $k0"; cat "$TMP/kind9.out" "$TMP/e1" "$TMP/e0"; }
# SPEC section 3: a head whose pairs are all f16 has no scale section; an empty KEY_SCALES there
# (checksums made right) is refused (kvz accepted it before)
python3 - "$TMP/chunk16.1.kvz" "$TMP/strayscales.kvz" <<'PY'
import sys
sys.path.insert(0, "tests/format")
import spec_reader
open(sys.argv[2], "wb").write(spec_reader.append_section(open(sys.argv[1], "rb").read(), 6, 0, 0, b""))
PY
both_refuse "$TMP/strayscales.kvz" "scales present at 16 bits" "layer 0 head 0: key scales missing or misshapen" \
    "an empty KEY_SCALES on a head without quantized pairs"
# SPEC section 4.2: a zstd payload is one whole frame; an empty frame after it (its checksums
# made right) is refused by the spec's reader and by kvz (which decoded it before)
python3 - "$TMP/snap8.1.kvz" "$TMP/twoframes.kvz" <<'PY'
import struct, sys
sys.path.insert(0, "tests/format")
import spec_reader
data = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<I", data, 32)[0]
table = bytearray(data[64:64 + 48 * n])
extra = bytes.fromhex("28b52ffd2000010000")  # a zstd frame of no bytes
z = next(i for i in range(n) if table[i * 48 + 7] == 1)
off, stored = struct.unpack_from("<QQ", table, z * 48 + 8)
struct.pack_into("<Q", table, z * 48 + 16, stored + len(extra))
struct.pack_into("<Q", table, z * 48 + 40, spec_reader.xxh64(data[off:off + stored] + extra))
for i in range(z + 1, n):
    struct.pack_into("<Q", table, i * 48 + 8, struct.unpack_from("<Q", table, i * 48 + 8)[0] + len(extra))
open(sys.argv[2], "wb").write(spec_reader.seal(data[:64] + table + data[64 + 48 * n:off + stored] + extra +
                                                 data[off + stored:-16]))
PY
both_refuse "$TMP/twoframes.kvz" "not one whole zstd frame" "not one whole zstd frame" "a second zstd frame in a section"
finish "format"
