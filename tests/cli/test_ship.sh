#!/bin/sh
# Moving compiled documents around: pack -> unpack on another store (same
# artifacts, same answers, idempotent), hostile bundles refused with nothing
# written, another model's bundle, sharded compile + merge equal to a single
# compile, export/import, gc, rm, compile --prune and stats, kill -9 during unpack.
# Needs KVZ_BIN and KVZ_MODEL.
. tests/cli_lib.sh
export KVZ_MODEL="$MODEL"

# six short real documents
mkdir -p "$TMP/corpus"
python3 - "$TMP/corpus" <<'PY'
import sys
src = open("tests/data/gpl3_excerpt.txt", encoding="utf-8").read().split("\n\n")
paras = [p for p in src if len(p) > 300][:6]
for i, p in enumerate(paras):
    open(f"{sys.argv[1]}/doc{i}.txt", "w").write(p + "\n")
PY
DOC="$TMP/corpus/doc0.txt"
Q="What does this text say?"
S="$TMP/s"
"$KVZ" compile "$TMP/corpus" --store "$S" --method recent --quiet 2>"$TMP/e" || { fail "compile"; cat "$TMP/e"; }
"$KVZ" compile "$DOC" --store "$S" --method kvzip --ratio 0.3 --quiet 2>/dev/null || fail "compile kvzip"

# ---- pack / unpack -------------------------------------------------------------
"$KVZ" pack --store "$S" --all -o "$TMP/b.tar.zst" >"$TMP/o" 2>&1 && grep -q "packed 6 document(s), 7 form(s)" "$TMP/o" \
    && ok "pack --all" || { fail "pack"; cat "$TMP/o"; }
tar --zstd -tf "$TMP/b.tar.zst" >"$TMP/names" 2>"$TMP/e" && head -1 "$TMP/names" | grep -qx "kvz-bundle.json" \
    && [ "$(grep -c '^artifacts/.*\.kvz$' "$TMP/names")" -eq 7 ] && ok "tar -tf lists the bundle: manifest first, 7 artifacts" \
    || { fail "tar listing"; cat "$TMP/names" "$TMP/e"; }
# a bundle named for another compressor is zstd all the same: said (tar -xzf said "not in gzip format")
"$KVZ" pack --store "$S" --all -o "$TMP/b.tar.gz" >"$TMP/o" 2>&1 && tar --zstd -tf "$TMP/b.tar.gz" >/dev/null &&
    grep -q "^kvz pack: note: .*b.tar.gz is a tar archive compressed with zstd whatever its name says" "$TMP/o" &&
    ok "pack -o x.tar.gz: written as zstd, said so" || { fail "pack -o x.tar.gz"; cat "$TMP/o"; }
# -o through a pipe (written directly, the report on stderr, not in the data) and
# through a link (the file it names is replaced; the link stays)
"$KVZ" pack --store "$S" --all -o /dev/stdout 2>"$TMP/e" | cat >"$TMP/piped.tar.zst"
tar --zstd -tf "$TMP/piped.tar.zst" >"$TMP/names2" 2>/dev/null && cmp -s "$TMP/names" "$TMP/names2" &&
    grep -q "packed 6 document(s), 7 form(s) into /dev/stdout ([1-9][0-9.]* KB)" "$TMP/e" &&
    ok "pack -o /dev/stdout into a pipe: the same bundle, the report on stderr" || { fail "pack into a pipe"; cat "$TMP/e"; }
case $KVZ in /*) kvz_abs=$KVZ ;; *) kvz_abs=$PWD/$KVZ ;; esac
(cd "$TMP" && "$kvz_abs" pack --store "$S" --all -o - 2>"$TMP/e" | cat >"$TMP/dash.tar.zst")
tar --zstd -tf "$TMP/dash.tar.zst" >"$TMP/names3" 2>/dev/null && cmp -s "$TMP/names" "$TMP/names3" && [ ! -e "$TMP/-" ] &&
    grep -q "into - (" "$TMP/e" &&
    ok "pack -o - writes to stdout (no file named -)" || { fail "pack -o -"; cat "$TMP/e"; }
# -o /dev/stdout appended to a file: the file keeps what it held, the bundle follows it
echo "a line before" >"$TMP/appended"
"$KVZ" pack --store "$S" --all -o /dev/stdout >>"$TMP/appended" 2>/dev/null
head -n 1 "$TMP/appended" | grep -qx "a line before" && tail -c +15 "$TMP/appended" >"$TMP/tail.tar.zst" &&
    tar --zstd -tf "$TMP/tail.tar.zst" 2>/dev/null | cmp -s - "$TMP/names" &&
    ok "pack -o /dev/stdout >> FILE: the file keeps its line, the bundle is appended" || fail "pack -o /dev/stdout >> FILE"
ln -s target.tar.zst "$TMP/link.tar.zst"
"$KVZ" pack --store "$S" --all -o "$TMP/link.tar.zst" >/dev/null 2>&1 &&
    "$KVZ" pack --store "$S" --all -o "$TMP/link.tar.zst" >/dev/null 2>&1 && [ -L "$TMP/link.tar.zst" ] &&
    tar --zstd -tf "$TMP/target.tar.zst" 2>/dev/null | cmp -s - "$TMP/names" &&
    ok "pack -o a link, twice: the link stays and names the bundle" || fail "pack through a link"
"$KVZ" pack --store "$S" --doc "$DOC" -o "$TMP/one.tar.zst" >/dev/null 2>&1 && ok "pack --doc" || fail "pack --doc"
"$KVZ" pack --store "$S" --doc missing.txt -o "$TMP/x.tar.zst" 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && [ ! -e "$TMP/x.tar.zst" ] && ok "pack of a missing document: exit 7, no file" || fail "pack missing: exit $rc"

# $SOURCE_DATE_EPOCH stamps `created`: two compiles and packs a second apart write the same bytes
for r in 1 2; do
    SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$TMP/corpus/doc1.txt" --store "$TMP/rep$r" --method snapkv --quiet &&
        "$KVZ" export --store "$TMP/rep$r" "$TMP/corpus/doc1.txt" -o "$TMP/rep$r.kvz" --quiet &&
        SOURCE_DATE_EPOCH=1700000000 "$KVZ" pack --store "$TMP/rep$r" --all -o "$TMP/rep$r.tar.zst" --quiet ||
        fail "compile and pack with SOURCE_DATE_EPOCH"
    [ $r -eq 1 ] && sleep 1
done
SOURCE_DATE_EPOCH=17e8 "$KVZ" pack --store "$TMP/rep1" --all -o "$TMP/rep3.tar.zst" 2>"$TMP/e"; rc=$?
SOURCE_DATE_EPOCH=17e8 "$KVZ" ls --store "$TMP/rep1" >/dev/null 2>>"$TMP/e" || rc=99 # stamps nothing: runs
cmp -s "$TMP/rep1.kvz" "$TMP/rep2.kvz" && cmp -s "$TMP/rep1.tar.zst" "$TMP/rep2.tar.zst" &&
    TZ=UTC "$KVZ" ls --store "$TMP/rep1" | grep -q "2023-11-14 22:13" && [ $rc -eq 2 ] && grep -q "SOURCE_DATE_EPOCH='17e8'" "$TMP/e" &&
    [ ! -e "$TMP/rep3.tar.zst" ] &&
    ok "SOURCE_DATE_EPOCH: the same artifact and bundle bytes a second apart; a malformed one refused by pack (exit 2)" ||
    { fail "SOURCE_DATE_EPOCH: rc $rc"; cat "$TMP/e"; }
SOURCE_DATE_EPOCH=253402300800 "$KVZ" compile "$TMP/corpus/doc1.txt" --store "$TMP/rep4" --quiet 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "year 9999" "$TMP/e" && [ ! -e "$TMP/rep4/data.mdb" ] &&
    ok "SOURCE_DATE_EPOCH past the year 9999 (no date to show, past JSON's exact integers): refused, exit 2" ||
    { fail "SOURCE_DATE_EPOCH past 9999: rc $rc"; cat "$TMP/e"; }

U="$TMP/u"
"$KVZ" unpack "$TMP/b.tar.zst" --store "$U" >"$TMP/o" 2>&1 && grep -q "7 form(s) added" "$TMP/o" \
    && ok "unpack" || { fail "unpack"; cat "$TMP/o"; }
"$KVZ" verify --store "$U" >/dev/null 2>&1 && ok "unpacked store verifies" || fail "verify unpacked"
for db in artifacts docs; do
    mdb_dump -s $db "$S" >"$TMP/d1"; mdb_dump -s $db "$U" >"$TMP/d2"
    cmp -s "$TMP/d1" "$TMP/d2" && ok "unpacked $db identical to the source's" || fail "$db differ after unpack"
done
"$KVZ" query --store "$S" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a1" 2>/dev/null
"$KVZ" query --store "$U" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a2" 2>/dev/null
[ -s "$TMP/a1" ] && cmp -s "$TMP/a1" "$TMP/a2" && ok "same answer from the unpacked store" || fail "answers differ"
mdb_dump -a "$U" >"$TMP/before"
"$KVZ" unpack "$TMP/b.tar.zst" --store "$U" >"$TMP/o" 2>&1 && grep -q "0 form(s) added, 7 already there" "$TMP/o" \
    && grep -q "0 artifact(s) written" "$TMP/o" && ok "unpack again: nothing new" || { fail "unpack twice"; cat "$TMP/o"; }
mdb_dump -a "$U" >"$TMP/after"
cmp -s "$TMP/before" "$TMP/after" && ok "unpack again: store contents unchanged" || fail "second unpack changed the store"
# past ulimit -f, and when interrupted: pack says so or dies, and leaves no temporary file
mkdir -p "$TMP/lim"
(ulimit -f 100; "$KVZ" pack --store "$S" --all -o "$TMP/lim/b.tar.zst" >/dev/null 2>"$TMP/e"); rc=$?
[ $rc -eq 3 ] && grep -q "File too large" "$TMP/e" && [ -z "$(ls -A "$TMP/lim")" ] &&
    ok "pack past ulimit -f: exit 3, the reason, no temporary left" || { fail "pack past ulimit -f: exit $rc"; cat "$TMP/e"; ls "$TMP/lim"; }
# killed once its temporary file exists (a pipe into -o's stdin holds it there: --all reads none, so
# a stopped process is used instead: SIGSTOP once the file is open, then SIGTERM, and SIGKILL).
# Where the file system makes unnamed files (O_TMPFILE) the temporary has no name until the
# bundle is whole: it is seen among the process's descriptors, under the folder's name
temporary_open() { # PID: a descriptor of it names a file of $TMP/lim (a named temporary or an unnamed one)
    ls -l "/proc/$1/fd" 2>/dev/null | grep -qF " -> $TMP/lim/"
}
for sig in TERM KILL; do
    seen=0
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        rm -f "$TMP/lim/b.tar.zst"
        "$KVZ" pack --store "$S" --all -o "$TMP/lim/b.tar.zst" >/dev/null 2>&1 & p=$!
        while kill -0 $p 2>/dev/null && ! temporary_open $p; do :; done
        kill -STOP $p 2>/dev/null && temporary_open $p && seen=1
        kill -$sig $p 2>/dev/null; kill -CONT $p 2>/dev/null; wait $p 2>/dev/null
        [ $seen -eq 1 ] && break
    done
    [ $seen -eq 1 ] && [ -z "$(ls -A "$TMP/lim")" ] && ok "pack killed (SIG$sig) while its temporary file existed: none left" ||
        { fail "pack killed (SIG$sig, temporary seen: $seen): left $(ls -A "$TMP/lim")"; }
done
# from a pipe (read twice: copied to $TMPDIR first, nothing left there)
mkdir -p "$TMP/spool"
cat "$TMP/b.tar.zst" | TMPDIR="$TMP/spool" "$KVZ" unpack - --store "$TMP/piped" >"$TMP/o" 2>&1 &&
    grep -q "7 form(s) added" "$TMP/o" && [ -z "$(ls -A "$TMP/spool")" ] &&
    "$KVZ" verify --store "$TMP/piped" >/dev/null 2>&1 && ok "unpack - from a pipe" || { fail "unpack from a pipe"; cat "$TMP/o"; }
head -c 1000 "$TMP/b.tar.zst" | "$KVZ" unpack - --store "$TMP/piped-cut" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 4 ] && grep -q "bundle '-'" "$TMP/o" && [ ! -e "$TMP/piped-cut" ] && ok "a cut bundle from a pipe: exit 4, named '-', no store" ||
    { fail "cut bundle from a pipe: exit $rc"; cat "$TMP/o"; }

# ---- hostile and damaged bundles: refused, nothing written -------------------------
python3 - "$TMP" "$TMP/b.tar.zst" <<'PY'
import io, json, os, sys, tarfile
tmp, good = sys.argv[1], sys.argv[2]
manifest = {"format": "kvz-bundle", "version": 1, "compiler": "test", "created": 0,
            "prefixes": [], "artifacts": [], "documents": []}
def bundle(name, entries, first=None):
    with tarfile.open(os.path.join(tmp, name), "w", format=tarfile.PAX_FORMAT) as t:
        m = json.dumps(first if first is not None else manifest).encode()
        info = tarfile.TarInfo("kvz-bundle.json"); info.size = len(m)
        t.addfile(info, io.BytesIO(m))
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
def reg(path, data=b"x"):
    i = tarfile.TarInfo(path); i.size = len(data); return (i, data)
def special(path, kind, link=""):
    i = tarfile.TarInfo(path); i.type = kind; i.linkname = link; return (i, None)
bundle("traversal.tar", [reg("../../evil.kvz")])
bundle("absolute.tar", [reg("/tmp/evil.kvz")])
bundle("symlink.tar", [special("artifacts/00000000000000000000000000000000.kvz", tarfile.SYMTYPE, "/etc/passwd")])
bundle("hardlink.tar", [special("artifacts/00000000000000000000000000000000.kvz", tarfile.LNKTYPE, "kvz-bundle.json")])
bundle("device.tar", [special("artifacts/00000000000000000000000000000000.kvz", tarfile.CHRTYPE)])
bundle("unlisted.tar", [reg("artifacts/00000000000000000000000000000000.kvz")])
art = {"path": "artifacts/00000000000000000000000000000000.kvz", "id": "0" * 32, "model": "0" * 16,
       "bytes": 1 << 40, "xxh3": "0" * 16}
bundle("missing.tar", [], dict(manifest, artifacts=[art]))
# a header declaring 1 TiB, then a little data: refused by its declared size
with open(os.path.join(tmp, "huge.tar"), "wb") as f:
    m = json.dumps(dict(manifest, artifacts=[art])).encode()
    info = tarfile.TarInfo("kvz-bundle.json"); info.size = len(m)
    f.write(info.tobuf(tarfile.PAX_FORMAT) + m + b"\0" * (-len(m) % 512))
    big = tarfile.TarInfo(art["path"]); big.size = 1 << 40
    f.write(big.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096)
# a header declaring 2 GiB where the manifest says 1000 bytes: refused before any is read
with open(os.path.join(tmp, "bigger.tar"), "wb") as f:
    m = json.dumps(dict(manifest, artifacts=[dict(art, bytes=1000)])).encode()
    info = tarfile.TarInfo("kvz-bundle.json"); info.size = len(m)
    f.write(info.tobuf(tarfile.PAX_FORMAT) + m + b"\0" * (-len(m) % 512))
    big = tarfile.TarInfo(art["path"]); big.size = 2 << 30
    f.write(big.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096)
with tarfile.open(os.path.join(tmp, "notbundle.tar"), "w") as t:
    i = tarfile.TarInfo("readme.txt"); i.size = 2; t.addfile(i, io.BytesIO(b"hi"))
data = open(good, "rb").read()
open(os.path.join(tmp, "truncated.tar.zst"), "wb").write(data[: len(data) // 2])
open(os.path.join(tmp, "cut_early.tar.zst"), "wb").write(data[:100])  # refused at open, by libarchive
for k, at in enumerate([len(data) // 7, len(data) // 3, len(data) // 2, 2 * len(data) // 3, len(data) - 40]):
    flipped = bytearray(data); flipped[at] ^= 0x10
    open(os.path.join(tmp, f"flipped{k}.tar.zst"), "wb").write(flipped)
PY
# An edited manifest sealed again with its checksum (BUNDLE.md §2), for the checks
# behind it: the digits read as '0's, xxh3-64 of the bytes
reseal() {
    python3 - "$1" <<'PY'
import sys, xxhash
p = sys.argv[1]
raw = open(p, "rb").read()
key = b'"manifest_xxh3": "'
at = raw.index(key) + len(key)
raw = raw[:at] + b"0" * 16 + raw[at + 16:]
open(p, "wb").write(raw[:at] + b"%016x" % xxhash.xxh3_64_intdigest(raw) + raw[at + 16:])
PY
}
# a manifest naming one document twice (its second would be written over the first)
mkdir -p "$TMP/twice" && tar --zstd -xf "$TMP/b.tar.zst" -C "$TMP/twice" &&
    python3 -c "import json,sys; p=sys.argv[1]; m=json.load(open(p)); m['documents'].append(dict(m['documents'][0])); json.dump(m, open(p,'w'))" "$TMP/twice/kvz-bundle.json" &&
    reseal "$TMP/twice/kvz-bundle.json" &&
    (cd "$TMP/twice" && tar --zstd -cf "$TMP/twice.tar.zst" kvz-bundle.json prefixes artifacts) || fail "making twice.tar.zst"
# A name in the manifest changed in transit (doc0 -> dob0, one bit), or its version (1 -> 3):
# refused as damaged (exit 4, not 5 for a newer format), nothing written; as are a manifest
# with its checksum named twice and one of kvz 0.2.2 without it. A manifest without it (written before 0.2.2) is read, and said unchecked.
for edit in renamed twice_sum unsealed dropped version; do
    rm -rf "$TMP/ed" && mkdir -p "$TMP/ed" && tar --zstd -xf "$TMP/b.tar.zst" -C "$TMP/ed" &&
        python3 - "$TMP/ed/kvz-bundle.json" $edit <<'PY' &&
import json, sys
path, edit = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
if edit == "renamed":
    raw = raw.replace(b"/doc0.txt", b"/dob0.txt", 1)
elif edit == "version":  # '1' -> '3', one bit: damage, not a newer format
    raw = raw.replace(b'"version": 1,', b'"version": 3,', 1)
elif edit == "twice_sum":
    raw = raw.replace(b'\n "manifest_xxh3"', b'\n "x": {"manifest_xxh3": "0000000000000000"},\n "manifest_xxh3"', 1)
else:  # unsealed: as 0.2.1 wrote it; dropped: the member lost, the writer a kvz that writes it
    m = json.loads(raw)
    del m["manifest_xxh3"]
    if edit == "unsealed":
        m["compiler"] = "kvz 0.2.1"
    raw = json.dumps(m, indent=1).encode()
open(path, "wb").write(raw)
PY
        (cd "$TMP/ed" && tar --zstd -cf "$TMP/manifest_$edit.tar.zst" kvz-bundle.json prefixes/* artifacts/*) ||
        fail "making manifest_$edit.tar.zst"
done
# manifests whose document configurations say other than their artifacts: more tokens,
# fewer bytes, another content's hash, another configuration
for lie in tokens bytes hash config; do
    rm -rf "$TMP/lie" && mkdir -p "$TMP/lie" && tar --zstd -xf "$TMP/b.tar.zst" -C "$TMP/lie" &&
        python3 - "$TMP/lie/kvz-bundle.json" $lie <<'PY' &&
import json, sys
path, lie = sys.argv[1], sys.argv[2]
m = json.load(open(path))
c = m["documents"][0]["configs"][0]
if lie == "tokens": c["tokens"] += 1
if lie == "bytes": c["bytes"] -= 1
if lie == "hash": m["documents"][0]["hash"] = "0" * 32
if lie == "config": c["config"] = "%016x" % (int(c["config"], 16) ^ 1)
json.dump(m, open(path, "w"))
PY
        reseal "$TMP/lie/kvz-bundle.json" &&
        (cd "$TMP/lie" && tar --zstd -cf "$TMP/lie_$lie.tar.zst" kvz-bundle.json prefixes/* artifacts/*) || fail "making lie_$lie.tar.zst"
done
# a bundle without the shared prefix its artifacts are answered after (sealed again): a
# receiver that lacks it could not answer
rm -rf "$TMP/np" && mkdir -p "$TMP/np" && tar --zstd -xf "$TMP/b.tar.zst" -C "$TMP/np" &&
    python3 -c "import json,sys; p=sys.argv[1]; m=json.load(open(p)); m['prefixes']=[]; json.dump(m, open(p,'w'))" "$TMP/np/kvz-bundle.json" &&
    reseal "$TMP/np/kvz-bundle.json" &&
    (cd "$TMP/np" && tar --zstd -cf "$TMP/noprefix.tar.zst" kvz-bundle.json artifacts/*) || fail "making noprefix.tar.zst"
refused() { # bundle, expected exit code, message pattern
    rm -rf "$TMP/h"
    "$KVZ" unpack "$TMP/$1" --store "$TMP/h" >/dev/null 2>"$TMP/e"; rc=$?
    if [ $rc -eq "$2" ] && grep -qi "$3" "$TMP/e" && [ ! -e "$TMP/h" ]; then
        ok "refused $1 (exit $rc): $(head -c 150 "$TMP/e")"
    else
        fail "$1: exit $rc, store written: $([ -e "$TMP/h" ] && echo yes || echo no): $(cat "$TMP/e")"
    fi
}
refused traversal.tar 4 "climbs out"
refused absolute.tar 4 "absolute path"
refused symlink.tar 4 "symbolic link"
refused hardlink.tar 4 "hard link"
refused device.tar 4 "character device"
refused unlisted.tar 4 "does not list"
refused missing.tar 4 "lacks"
refused huge.tar 10 "over the limit"
refused bigger.tar 4 "declares 2147483648 bytes, the manifest says 1000"
refused notbundle.tar 4 "not a kvz bundle"
refused twice.tar.zst 4 "a document is listed twice"
refused manifest_renamed.tar.zst 4 "manifest: damaged (changed since kvz pack wrote it)"
refused manifest_twice_sum.tar.zst 4 "manifest_xxh3. member is malformed or repeated"
refused manifest_version.tar.zst 4 "manifest: damaged (changed since kvz pack wrote it)"
refused manifest_dropped.tar.zst 4 "manifest: damaged: written by kvz [0-9.]*, which writes manifest_xxh3, and it has none"
python3 tests/format/spec_reader.py --bundle "$TMP/manifest_renamed.tar.zst" >"$TMP/o" 2>&1
[ $? -eq 1 ] && grep -q "REFUSED: the manifest does not match its manifest_xxh3" "$TMP/o" &&
    ok "the format's reader refuses the renamed manifest too" || { fail "spec_reader on a renamed manifest"; cat "$TMP/o"; }
rm -rf "$TMP/h"
"$KVZ" unpack "$TMP/manifest_unsealed.tar.zst" --store "$TMP/h" >"$TMP/o" 2>"$TMP/e" &&
    grep -q "carries no checksum of its own" "$TMP/e" && grep -q "7 form(s) added" "$TMP/o" &&
    ok "a bundle without the manifest's checksum (before 0.2.2) is read, and said unchecked" ||
    { fail "unsealed manifest"; cat "$TMP/o" "$TMP/e"; }
refused lie_tokens.tar.zst 4 "the manifest says [0-9]* tokens, its artifacts hold"
# a configuration's bytes are the artifacts' sizes, whatever the manifest says (a store's
# figure can be stale legitimately: two names sharing an artifact)
rm -rf "$TMP/h"
"$KVZ" unpack "$TMP/lie_bytes.tar.zst" --store "$TMP/h" >/dev/null 2>"$TMP/e" && "$KVZ" ls --store "$TMP/h" --json >"$TMP/l_lie" &&
    "$KVZ" ls --store "$S" --json >"$TMP/l_true" && cmp -s "$TMP/l_lie" "$TMP/l_true" &&
    ok "a manifest's bytes are taken from the artifacts" || { fail "lie_bytes"; cat "$TMP/e"; diff "$TMP/l_lie" "$TMP/l_true"; }
refused lie_hash.tar.zst 4 "holds another document's content than the manifest lists"
refused lie_config.tar.zst 4 "holds another configuration than the manifest lists"
refused noprefix.tar.zst 4 "needs the shared prefix [0-9a-f]* of model [0-9a-f]*, which the bundle does not hold"
refused truncated.tar.zst 4 "truncated"
refused cut_early.tar.zst 4 "truncated"
for k in 0 1 2 3 4; do refused flipped$k.tar.zst 4 "."; done
rm -rf "$TMP/h"
"$KVZ" unpack "$TMP/b.tar.zst" --store "$TMP/h" --max-entry-bytes 1000 >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 10 ] && [ ! -e "$TMP/h" ] && ok "--max-entry-bytes refuses large entries (exit 10)" || fail "--max-entry-bytes: exit $rc"
"$KVZ" unpack "$TMP/nonexistent.tar.zst" --store "$TMP/h" 2>/dev/null; rc=$?
[ $rc -eq 7 ] && ok "unpack of a missing file: exit 7" || fail "unpack missing file: exit $rc"

# ---- another model's bundle ---------------------------------------------------------
"$KVZ" synth-model --shape tiny -o "$TMP/tiny.gguf" >/dev/null 2>&1
"$KVZ" compile "$DOC" --store "$TMP/tiny_store" --model "$TMP/tiny.gguf" --method recent --reserve 64 --quiet 2>/dev/null
"$KVZ" pack --store "$TMP/tiny_store" --all -o "$TMP/tiny.tar.zst" >/dev/null 2>&1
cp -r "$U" "$TMP/u2"; mdb_dump -a "$TMP/u2" >"$TMP/before"
"$KVZ" unpack "$TMP/tiny.tar.zst" --store "$TMP/u2" >/dev/null 2>"$TMP/e"; rc=$?
mdb_dump -a "$TMP/u2" >"$TMP/after"
[ $rc -eq 6 ] && grep -q "allow-model-mismatch" "$TMP/e" && cmp -s "$TMP/before" "$TMP/after" \
    && ok "another model's bundle refused (exit 6), store unchanged" || { fail "model mismatch: exit $rc"; cat "$TMP/e"; }
"$KVZ" unpack "$TMP/tiny.tar.zst" --store "$TMP/u2" --allow-model-mismatch >"$TMP/o" 2>&1 && grep -q "stored aside" "$TMP/o" \
    && [ "$("$KVZ" ls --store "$TMP/u2" | grep -c "doc0.txt")" -eq 3 ] && ok "--allow-model-mismatch stores it aside" \
    || { fail "allow-model-mismatch"; cat "$TMP/o"; }
# stats names each row's model (JSON), and in the table where two models' rows read alike
cp -r "$TMP/u2" "$TMP/u3"
"$KVZ" compile "$DOC" --store "$TMP/u3" --model "$MODEL" --method recent --reserve 64 --quiet 2>/dev/null
tiny_fp=$("$KVZ" inspect --store "$TMP/tiny_store" "$DOC" --json | sed -n 's/.*"model_fingerprint":"\([0-9a-f]*\)".*/\1/p' | head -1)
"$KVZ" stats --store "$TMP/u3" --json >"$TMP/st.json" && "$KVZ" stats --store "$TMP/u3" >"$TMP/st.txt" &&
    python3 -c "import json,sys; rows=json.load(open(sys.argv[1]))['by_config']; \
fps=[r['model_fingerprint'] for r in rows]; assert sys.argv[2] in fps and len(set(fps))==2, fps" "$TMP/st.json" "$tiny_fp" &&
    [ "$(grep -c "recent ratio 0.30, 4-bit, reserve 64 \[model [0-9a-f]\{16\}\]" "$TMP/st.txt")" -eq 2 ] &&
    grep -q "\[model $tiny_fp\]" "$TMP/st.txt" && ok "stats names the model of each row, in the table where rows read alike" ||
    { fail "stats rows' models"; cat "$TMP/st.json" "$TMP/st.txt"; }
rm -rf "$TMP/u3"
# pack selects forms: -m MODEL (not those stored aside), --config ID (one compression, the
# same id in every document); --doc of a document without one, or a form's number: refused
tiny_id=$("$KVZ" ls --store "$TMP/tiny_store" --json | sed -n 's/.*"config_id":"\([0-9a-f]*\)".*/\1/p' | head -1)
"$KVZ" ls --store "$TMP/u2" --json >"$TMP/u2.json"
"$KVZ" pack --store "$TMP/u2" --all -m "$MODEL" -o "$TMP/own.tar.zst" >"$TMP/o" 2>&1 &&
    "$KVZ" pack --store "$TMP/u2" --all -m "$TMP/tiny.gguf" -o "$TMP/aside.tar.zst" >>"$TMP/o" 2>&1 &&
    "$KVZ" pack --store "$TMP/u2" --all --config "$(echo "$tiny_id" | cut -c1-8)" -o "$TMP/byid.tar.zst" >>"$TMP/o" 2>&1 &&
    "$KVZ" unpack "$TMP/own.tar.zst" --check --json >"$TMP/own.json" && "$KVZ" unpack "$TMP/aside.tar.zst" --check --json >"$TMP/aside.json" &&
    "$KVZ" unpack "$TMP/byid.tar.zst" --check --json >"$TMP/byid.json" || fail "pack with -m or --config"
"$KVZ" pack --store "$TMP/u2" --doc "$TMP/corpus/doc1.txt" --config "$tiny_id" -o "$TMP/none.tar.zst" 2>"$TMP/e1"; rc1=$?
"$KVZ" pack --store "$TMP/u2" --all --config 2 -o "$TMP/none.tar.zst" 2>"$TMP/e2"; rc2=$?
"$KVZ" pack --store "$TMP/u2" --all --config 2x -o "$TMP/none.tar.zst" 2>>"$TMP/e2" && rc2=0
python3 - "$TMP/u2.json" "$TMP/own.json" "$TMP/aside.json" "$TMP/byid.json" "$tiny_id" <<'PY' && [ $rc1 -eq 7 ] && [ $rc2 -eq 2 ] &&
import json, sys
rows = lambda p: sorted((r["document"], r["config_id"], r["model_fingerprint"])
                        for r in map(json.loads, open(p)) if "document" in r)
store, own, aside, byid = (rows(p) for p in sys.argv[1:5])
tiny = sys.argv[5]
assert len(aside) == 1 and aside[0][1] == tiny, aside
assert byid == aside, byid
assert own == [r for r in store if r[2] != aside[0][2]] and len(own) == len(store) - 1, own
PY
    [ ! -e "$TMP/none.tar.zst" ] && grep -q "has no configuration $tiny_id" "$TMP/e1" && grep -q "number differs" "$TMP/e2" &&
    grep -q "invalid --config '2x': give 8 to 16 hex digits of a form's id, as \`kvz ls\` shows it$" "$TMP/e2" &&
    grep -q "document(s) without a form that --config selects left out" "$TMP/o" &&
    ok "pack -m and --config select forms; --doc without one (exit 7) and a number (exit 2) refused" ||
    { fail "pack's selection: exit $rc1 $rc2"; cat "$TMP/o" "$TMP/e1" "$TMP/e2"; }
# ls of a store holding two models' forms ends each row with its model (one model: no column)
tiny_fp=$(sed -n 's/.*"model_fingerprint":"\([0-9a-f]\{8\}\).*/\1/p' "$TMP/aside.json")
"$KVZ" ls --store "$TMP/u2" >"$TMP/o" && "$KVZ" ls --store "$TMP/tiny_store" >"$TMP/o1" &&
    [ "$(grep -c "  model [0-9a-f]\{8\}$" "$TMP/o")" -eq "$(grep -c '"document"' "$TMP/u2.json")" ] &&
    [ "$(grep -c "  model $tiny_fp$" "$TMP/o")" -eq 1 ] && ! grep -q "  model " "$TMP/o1" &&
    ok "ls names each form's model where the store holds two models' forms" ||
    { fail "ls with two models"; cat "$TMP/o" "$TMP/o1"; }
# import into a store that lacks the artifact's prefix computes it, with only what the prefix
# needs (a model of a 512-token context has no room for compile's default KVzip pass)
"$KVZ" export --store "$TMP/tiny_store" "$DOC" --segment 1 -o "$TMP/tiny1.kvz" --quiet 2>"$TMP/e" &&
    "$KVZ" import "$TMP/tiny1.kvz" --store "$TMP/tiny_import" --model "$TMP/tiny.gguf" >/dev/null 2>>"$TMP/e" &&
    "$KVZ" verify --store "$TMP/tiny_import" >/dev/null 2>&1 &&
    ok "import computes the prefix of a small-context model's artifact" || { fail "import of a tiny model's artifact"; cat "$TMP/e"; }
"$KVZ" query --store "$TMP/u2" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a3" 2>/dev/null
cmp -s "$TMP/a1" "$TMP/a3" && ok "queries still use this model's configuration" || fail "query after mismatch unpack"

# ---- unpack --check: a bundle looked at with no store -------------------------------------
# dates no calendar holds (a manifest is sealed by anyone: its dates are untrusted input)
rm -rf "$TMP/dates" && mkdir -p "$TMP/dates" && tar --zstd -xf "$TMP/b.tar.zst" -C "$TMP/dates" &&
    python3 -c "import json,sys; p=sys.argv[1]; m=json.load(open(p)); m['created']=-10**18; m['documents'][0]['configs'][0]['created']=2**62; json.dump(m, open(p,'w'))" "$TMP/dates/kvz-bundle.json" &&
    reseal "$TMP/dates/kvz-bundle.json" &&
    (cd "$TMP/dates" && tar --zstd -cf "$TMP/dates.tar.zst" kvz-bundle.json prefixes/* artifacts/*) || fail "making dates.tar.zst"
"$KVZ" unpack "$TMP/dates.tar.zst" --check >"$TMP/o" 2>&1; rc=$?
"$KVZ" unpack "$TMP/dates.tar.zst" --store "$TMP/dated" --quiet 2>>"$TMP/o" && "$KVZ" ls --store "$TMP/dated" >>"$TMP/o" 2>&1; rc2=$?
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && head -1 "$TMP/o" | grep -q "(packed ? by kvz " && [ "$(grep -c " B/tok  ?$" "$TMP/o")" -eq 2 ] &&
    grep -q "^kvz unpack: note: 1 form(s) of .*dates.tar.zst are dated after this machine's clock (the latest ?)" "$TMP/o" &&
    ok "dates no calendar holds: unpack --check and ls show '?', and a date past the clock is said" || { fail "untrusted dates: exit $rc $rc2"; cat "$TMP/o"; }
mkdir -p "$TMP/checked-here"
(cd "$TMP/checked-here" && "$kvz_abs" unpack ../b.tar.zst --check >"$TMP/c1" 2>&1); rc=$?
"$KVZ" unpack "$TMP/b.tar.zst" --check --json >"$TMP/c1.json" 2>"$TMP/e"; rc2=$?
"$KVZ" ls --store "$S" --json >"$TMP/ls.json"
python3 - "$TMP/c1.json" "$TMP/ls.json" <<'PY'; rc3=$?
import json, sys
forms = lambda path: sorted((o["document"], o["config_id"], o["summary"], tuple(o["artifacts"]))
                            for o in map(json.loads, open(path)))
sys.exit(0 if forms(sys.argv[1]) == forms(sys.argv[2]) and len(forms(sys.argv[1])) == 7 else 1)
PY
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ $rc3 -eq 0 ] && head -1 "$TMP/c1" | grep -q "^../b.tar.zst: 6 document(s), 7 artifact(s), 1 prefix(es) checked: sound (packed .* by kvz " &&
    [ "$(grep -c " tok " "$TMP/c1")" -eq 7 ] && grep -q "^6 document(s) of [0-9]* tokens in 7 form(s)" "$TMP/c1" &&
    [ -z "$(ls -A "$TMP/checked-here")" ] &&
    ok "unpack --check: the bundle checked and listed as ls lists the store it came from (the same ids), no store" ||
    { fail "unpack --check: exit $rc $rc2 $rc3"; cat "$TMP/c1" "$TMP/e"; }
"$KVZ" unpack "$TMP/tiny.tar.zst" --check >/dev/null 2>&1; rc=$?
"$KVZ" unpack "$TMP/tiny.tar.zst" --check -m "$MODEL" >/dev/null 2>"$TMP/e"; rc2=$?
cat "$TMP/b.tar.zst" | "$KVZ" unpack - --check -m "$MODEL" --quiet >"$TMP/o" 2>&1; rc3=$?
head -c 1000 "$TMP/b.tar.zst" | "$KVZ" unpack - --check >"$TMP/o4" 2>&1; rc4=$?
[ $rc -eq 0 ] && [ $rc2 -eq 6 ] && grep -q "compiled by model" "$TMP/e" && [ $rc3 -eq 0 ] && [ ! -s "$TMP/o" ] &&
    [ $rc4 -eq 4 ] && grep -q "bundle '-'" "$TMP/o4" &&
    ok "unpack --check: another model's bundle passes without -m, exit 6 with it; from a pipe; a cut one exit 4" ||
    { fail "unpack --check of other bundles: exit $rc $rc2 $rc3 $rc4"; cat "$TMP/e" "$TMP/o" "$TMP/o4"; }
for bad in "--store $TMP/cs" "--prune" "--allow-model-mismatch" "--json --store $TMP/cs"; do
    "$KVZ" unpack "$TMP/b.tar.zst" --check $bad >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ] && [ ! -e "$TMP/cs" ] || fail "unpack --check $bad: exit $rc, expected 2 and no store"
done
"$KVZ" unpack "$TMP/b.tar.zst" --json --store "$TMP/cs" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && [ ! -e "$TMP/cs" ] && ok "unpack: --check with a store option, or --json without --check: exit 2" ||
    fail "unpack --json without --check: exit $rc"

# ---- sharded compile + merge == one compile --------------------------------------------
for i in 0 1 2; do
    "$KVZ" compile "$TMP/corpus" --store "$TMP/shard$i" --method recent --shard $i/3 --json 2>/dev/null >"$TMP/sh$i"
done
total=0
for i in 0 1 2; do total=$((total + $(grep -c '"status":"compiled"' "$TMP/sh$i"))); done
[ $total -eq 6 ] && ok "3 shards compiled 6 documents once in all" || fail "shards compiled $total documents"
"$KVZ" compile "$TMP/corpus" --store "$TMP/shard0b" --method recent --shard 0/3 --quiet 2>/dev/null # overlaps shard 0
"$KVZ" compile "$TMP/corpus" --store "$TMP/single" --method recent --quiet 2>/dev/null
"$KVZ" merge "$TMP/shard0" "$TMP/shard1" "$TMP/shard0b" "$TMP/shard2" --into "$TMP/merged" >/dev/null 2>&1 \
    && ok "merge" || fail "merge"
# bytes may differ by a few: each artifact records when it was compiled, and zstd packs that differently
strip() { "$KVZ" ls --store "$1" --json | sed 's/"bytes":.*"created":[0-9]*,//'; }
strip "$TMP/single" >"$TMP/l1"; strip "$TMP/merged" >"$TMP/l2"
[ -s "$TMP/l1" ] && cmp -s "$TMP/l1" "$TMP/l2" && ok "merged shards list as a single compile (names, configurations, tokens, ids)" \
    || { fail "merge differs"; diff "$TMP/l1" "$TMP/l2" | head; }
"$KVZ" verify --store "$TMP/merged" >/dev/null 2>&1 && ok "merged store verifies" || fail "verify merged"
"$KVZ" query --store "$TMP/single" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a6" 2>/dev/null
"$KVZ" query --store "$TMP/merged" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a7" 2>/dev/null
[ -s "$TMP/a6" ] && cmp -s "$TMP/a6" "$TMP/a7" && ok "merged store answers as the single compile" || fail "merged answers differ"
mdb_dump -a "$TMP/merged" >"$TMP/before"
"$KVZ" merge "$TMP/shard0" "$TMP/shard1" "$TMP/shard2" --into "$TMP/merged" >/dev/null 2>&1
mdb_dump -a "$TMP/merged" >"$TMP/after"
cmp -s "$TMP/before" "$TMP/after" && ok "merge again: unchanged" || fail "second merge changed the store"
"$KVZ" merge "$TMP/merged" --into "$TMP/merged" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "merge into itself refused" || fail "merge into itself: exit $rc"
"$KVZ" compile "$TMP/corpus" --store "$TMP/x" --shard 3/3 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "--shard 3/3 refused" || fail "--shard 3/3: exit $rc"

# the Slurm example, run here as a 2-task array and the merge step
mkdir -p "$TMP/bin" "$TMP/slurm"; ln -sf "$(cd "$(dirname "$KVZ")" && pwd)/$(basename "$KVZ")" "$TMP/bin/kvz"
for i in 0 1; do
    PATH="$TMP/bin:$PATH" TMPDIR="$TMP" SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=2 KVZ_COMPILE_ARGS="--method recent --quiet" \
        bash examples/cluster/slurm_compile.sh "$TMP/corpus" "$TMP/slurm" >/dev/null 2>"$TMP/e" || { fail "slurm task $i"; cat "$TMP/e"; }
done
PATH="$TMP/bin:$PATH" KVZ_STEP=merge SLURM_ARRAY_TASK_COUNT=2 bash examples/cluster/slurm_compile.sh "$TMP/corpus" "$TMP/slurm" \
    >/dev/null 2>"$TMP/e" || { fail "slurm merge step"; cat "$TMP/e"; }
strip "$TMP/slurm/merged" >"$TMP/l3"
cmp -s "$TMP/l1" "$TMP/l3" && [ -s "$TMP/slurm/corpus.tar.zst" ] && ok "the Slurm example: 2 shards, merge, pack" || fail "slurm example"
# a task killed while publishing, after its last store was renamed away: the newest whole
# store is .0.new, a copy was under way; the next run takes .0.new up and leaves nothing else
"$KVZ" ls --store "$TMP/slurm/shards/0" >"$TMP/shard0.before" 2>&1
mv "$TMP/slurm/shards/0" "$TMP/slurm/shards/.0.new" && mkdir "$TMP/slurm/shards/.0.copy"
PATH="$TMP/bin:$PATH" TMPDIR="$TMP" SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=2 KVZ_COMPILE_ARGS="--method recent --quiet" \
    bash examples/cluster/slurm_compile.sh "$TMP/corpus" "$TMP/slurm" >/dev/null 2>"$TMP/e" || { fail "slurm task 0 again"; cat "$TMP/e"; }
"$KVZ" ls --store "$TMP/slurm/shards/0" >"$TMP/shard0.after" 2>&1
[ "$(ls -A "$TMP/slurm/shards" | tr '\n' ' ')" = "0 1 " ] && [ -s "$TMP/shard0.before" ] &&
    cmp -s "$TMP/shard0.before" "$TMP/shard0.after" && grep -q '"status":"unchanged"' "$TMP/slurm/logs/shard-0.jsonl" &&
    ! grep -q '"status":"compiled"' "$TMP/slurm/logs/shard-0.jsonl" &&
    ok "the Slurm example after a task killed while publishing: its store taken up, nothing recompiled, nothing left" ||
    { fail "slurm publish recovery"; ls -A "$TMP/slurm/shards"; diff "$TMP/shard0.before" "$TMP/shard0.after" | head; }
# killed after the new store was whole (.0.new) but before the swap: the last one (played by
# the store less a document) is still 0; the next run swaps the newer one in, recompiling nothing
cp -r "$TMP/slurm/shards/0" "$TMP/slurm/shards/.0.new"
gone=$("$KVZ" ls --store "$TMP/slurm/shards/0" --json | sed -n 's/^{"document":"\([^"]*\)".*/\1/p' | head -1)
"$KVZ" rm --store "$TMP/slurm/shards/0" "$gone" >/dev/null 2>&1
PATH="$TMP/bin:$PATH" TMPDIR="$TMP" SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=2 KVZ_COMPILE_ARGS="--method recent --quiet" \
    bash examples/cluster/slurm_compile.sh "$TMP/corpus" "$TMP/slurm" >/dev/null 2>"$TMP/e" || { fail "slurm task 0 again"; cat "$TMP/e"; }
"$KVZ" ls --store "$TMP/slurm/shards/0" >"$TMP/shard0.after" 2>&1
[ -n "$gone" ] && [ "$(ls -A "$TMP/slurm/shards" | tr '\n' ' ')" = "0 1 " ] &&
    cmp -s "$TMP/shard0.before" "$TMP/shard0.after" && ! grep -q '"status":"compiled"' "$TMP/slurm/logs/shard-0.jsonl" &&
    ok "the Slurm example killed before its swap: the whole new store swapped in, nothing recompiled, nothing left" ||
    { fail "slurm swap recovery ('$gone')"; ls -A "$TMP/slurm/shards"; diff "$TMP/shard0.before" "$TMP/shard0.after" | head; }
# the next nights: a document changed, one deleted, then the first changed back (its shard
# follows its name, so its shard's store holds its newest content; merge --prune drops the deleted)
nightly() {
    for i in 0 1; do
        PATH="$TMP/bin:$PATH" TMPDIR="$TMP" SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=2 \
            KVZ_COMPILE_ARGS="--method recent --quiet" bash examples/cluster/slurm_compile.sh "$TMP/corpus2" "$TMP/slurm2" \
            >/dev/null 2>"$TMP/e" || { fail "slurm task $i"; cat "$TMP/e"; }
    done
    PATH="$TMP/bin:$PATH" KVZ_STEP=merge KVZ_SHARDS=2 bash examples/cluster/slurm_compile.sh "$TMP/corpus2" "$TMP/slurm2" \
        >/dev/null 2>"$TMP/e" || { fail "slurm merge step"; cat "$TMP/e"; }
    rm -rf "$TMP/single2"
    "$KVZ" compile "$TMP/corpus2" --store "$TMP/single2" --method recent --quiet 2>/dev/null
    strip "$TMP/single2" >"$TMP/l4"; strip "$TMP/slurm2/merged" >"$TMP/l5"
    [ -s "$TMP/l4" ] && cmp -s "$TMP/l4" "$TMP/l5" && ok "the Slurm example, $1: the merged store is the corpus now" ||
        { fail "slurm example, $1"; diff "$TMP/l4" "$TMP/l5" | head; }
}
cp -r "$TMP/corpus" "$TMP/corpus2"
first=$(cd "$TMP/corpus2" && ls | head -1); second=$(cd "$TMP/corpus2" && ls | sed -n 2p)
cp "$TMP/corpus2/$first" "$TMP/first.orig"
nightly "first night"
printf 'Another text altogether, about harbours.\n' >"$TMP/corpus2/$first"
rm "$TMP/corpus2/$second"
nightly "a document changed, one deleted"
cp "$TMP/first.orig" "$TMP/corpus2/$first"
nightly "the document changed back"
! "$KVZ" ls --store "$TMP/slurm2/merged" --json | grep -q "$second" && ok "merge --prune: the deleted document left" ||
    fail "the deleted document is still served"
# merge --prune and unpack --prune: the target ends holding what the sources hold (a store
# of all six documents, then the sources' two)
"$KVZ" compile "$TMP/corpus/doc0.txt" "$TMP/corpus/doc1.txt" --store "$TMP/two" --method recent --quiet 2>/dev/null
names() { "$KVZ" ls --store "$1" --json | sed 's/.*"document":"\([^"]*\)".*/\1/' | sort -u; }
names "$TMP/two" >"$TMP/n2"
"$KVZ" merge "$TMP/single" --into "$TMP/m1" >/dev/null 2>&1
"$KVZ" merge "$TMP/two" --into "$TMP/m1" --prune >"$TMP/o" 2>"$TMP/e"; rc=$?
names "$TMP/m1" >"$TMP/n1"
[ $rc -eq 0 ] && [ "$(wc -l <"$TMP/n2")" -eq 2 ] && cmp -s "$TMP/n1" "$TMP/n2" && [ "$(grep -c "^pruned" "$TMP/e")" -eq 4 ] &&
    grep -q "4 document(s) pruned" "$TMP/o" && "$KVZ" verify --store "$TMP/m1" >/dev/null 2>&1 &&
    ok "merge --prune keeps only what the sources hold" || { fail "merge --prune: exit $rc"; cat "$TMP/o" "$TMP/e"; }
mkdir -p "$TMP/nothing"
"$KVZ" compile "$DOC" --store "$TMP/empty" --method recent --quiet 2>/dev/null && # an empty store
    "$KVZ" rm --store "$TMP/empty" "$DOC" >/dev/null 2>&1 || fail "making an empty store"
"$KVZ" merge "$TMP/empty" --into "$TMP/m1" --prune >/dev/null 2>"$TMP/e"; rc=$?
names "$TMP/m1" >"$TMP/n1"
[ $rc -eq 7 ] && grep -q "nothing pruned: the sources hold no documents" "$TMP/e" && cmp -s "$TMP/n1" "$TMP/n2" &&
    ok "merge --prune of sources with no documents: exit 7, nothing pruned" || { fail "merge --prune of nothing: exit $rc"; cat "$TMP/e"; }
"$KVZ" pack --store "$TMP/two" --all -o "$TMP/two.tar.zst" --quiet
"$KVZ" merge "$TMP/single" --into "$TMP/m3" >/dev/null 2>&1
"$KVZ" unpack "$TMP/two.tar.zst" --store "$TMP/m3" --prune >"$TMP/o" 2>"$TMP/e"; rc=$?
names "$TMP/m3" >"$TMP/n1"
[ $rc -eq 0 ] && cmp -s "$TMP/n1" "$TMP/n2" && grep -q "4 document(s) pruned" "$TMP/o" &&
    "$KVZ" verify --store "$TMP/m3" >/dev/null 2>&1 && ok "unpack --prune: the store holds what the bundle holds" ||
    { fail "unpack --prune: exit $rc"; cat "$TMP/o" "$TMP/e"; diff "$TMP/n1" "$TMP/n2"; }
# compile --prune that finds no documents (an unmounted corpus) prunes nothing
"$KVZ" merge "$TMP/single" --into "$TMP/m2" >/dev/null 2>&1
"$KVZ" compile "$TMP/nothing" --store "$TMP/m2" --method recent --prune 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "no documents were found under the PATHs given: nothing compiled, nothing pruned" "$TMP/e" &&
    [ "$(names "$TMP/m2" | wc -l)" -eq 6 ] &&
    ok "compile --prune of an empty folder: exit 7, nothing pruned" || { fail "prune of nothing: exit $rc"; cat "$TMP/e"; }
# --shard reads stdin to its end in the shard that does not take it (its writer is not cut
# off: 256 KB, past a pipe's buffer); "piped.txt" is shard 1 of 2 (xxh3-64 of the name)
{ python3 -c "import sys; sys.stdout.write('A line of a long piped document.\\n' * 8000)"; echo $? >"$TMP/prc"; } |
    "$KVZ" compile - --stdin-name piped.txt --store "$TMP/pipe0" --method recent --shard 0/2 --quiet 2>/dev/null
printf 'A short piped document.\n' |
    "$KVZ" compile - --stdin-name piped.txt --store "$TMP/pipe1" --method recent --shard 1/2 --quiet 2>/dev/null
[ "$(cat "$TMP/prc")" = 0 ] && ! "$KVZ" ls --store "$TMP/pipe0" --json | grep -q piped.txt &&
    "$KVZ" ls --store "$TMP/pipe1" --json | grep -q piped.txt &&
    ok "--shard with stdin: the other shard reads it to its end, its own compiles it" ||
    fail "--shard with stdin: the producer exits $(cat "$TMP/prc")"
if python3 -c "import yaml" 2>/dev/null; then
    python3 -c "import yaml,sys; [d['spec'] for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]" \
        examples/cluster/k8s_compile.yaml examples/cluster/k8s_merge.yaml && ok "the Kubernetes manifests parse" || fail "k8s yaml"
fi

# ---- export / import -------------------------------------------------------------------
"$KVZ" export --store "$S" "$DOC" --config 2 -o "$TMP/doc0.kvz" >/dev/null 2>&1 && ok "export" || fail "export"
# without --config: the newest form (the one query loads), here the last of the document's
n_forms=$("$KVZ" ls --store "$S" --json | grep -c "\"document\":\"$DOC\"")
"$KVZ" export --store "$S" "$DOC" --config "$n_forms" -o "$TMP/last.kvz" >/dev/null 2>&1 &&
    "$KVZ" export --store "$S" "$DOC" -o "$TMP/default.kvz" >/dev/null 2>&1 && [ "$n_forms" -ge 2 ] &&
    cmp -s "$TMP/last.kvz" "$TMP/default.kvz" && ok "export without --config: the newest of $n_forms forms" ||
    fail "export's default form ($n_forms forms)"
"$KVZ" import "$TMP/doc0.kvz" --store "$TMP/imp" >"$TMP/o" 2>&1 && "$KVZ" verify --store "$TMP/imp" >/dev/null 2>&1 \
    && ok "import into a fresh store (prefix computed)" || { fail "import"; cat "$TMP/o"; }
"$KVZ" query --store "$TMP/imp" --doc "$DOC" --max-tokens 12 "$Q" >"$TMP/a5" 2>/dev/null
[ -s "$TMP/a5" ] && ok "the imported document answers" || fail "query after import"
"$KVZ" ls --store "$TMP/imp" --json | sed 's/"config":[0-9]*,//; s/"created":[0-9]*,//' >"$TMP/l1"
"$KVZ" ls --store "$S" --json | grep kvzip | grep "doc0.txt" | sed 's/"config":[0-9]*,//; s/"created":[0-9]*,//' >"$TMP/l2"
cmp -s "$TMP/l1" "$TMP/l2" && ok "imported under the compile's own ids" || { fail "import ids"; cat "$TMP/l1" "$TMP/l2"; }
"$KVZ" import "$TMP/doc0.kvz" --store "$TMP/imp" >"$TMP/o" 2>&1 && grep -q "already in the store" "$TMP/o" \
    && ok "import again: nothing new" || fail "import twice"
"$KVZ" import "$TMP/corpus/doc1.txt" --store "$TMP/imp" 2>/dev/null; rc=$?
[ $rc -eq 4 ] && ok "import of a non-artifact: exit 4" || fail "import non-artifact: exit $rc"
# another model's artifact is set aside only where that model's shared prefix is (a bundle brought it)
"$KVZ" export --store "$TMP/tiny_store" "$DOC" --segment 1 -o "$TMP/tiny.kvz" >/dev/null 2>"$TMP/e"
mdb_dump -a "$TMP/imp" >"$TMP/before"
# with this model's own artifact first: that one is not written either (all are checked first)
"$KVZ" export --store "$S" "$DOC" --config 1 -o "$TMP/own.kvz" >/dev/null 2>>"$TMP/e"
"$KVZ" import "$TMP/own.kvz" "$TMP/tiny.kvz" --store "$TMP/imp" --allow-model-mismatch >/dev/null 2>>"$TMP/e"; rc=$?
mdb_dump -a "$TMP/imp" >"$TMP/after"
"$KVZ" import "$TMP/tiny.kvz" --store "$TMP/imp_new" --allow-model-mismatch >/dev/null 2>>"$TMP/e"; rc3=$?
"$KVZ" import "$TMP/tiny.kvz" --store "$TMP/u2" --allow-model-mismatch >/dev/null 2>>"$TMP/e"; rc2=$?
[ $rc -eq 6 ] && [ $rc3 -eq 6 ] && [ "$(grep -c "shared prompt prefix the store lacks" "$TMP/e")" -eq 2 ] &&
    cmp -s "$TMP/before" "$TMP/after" && [ ! -e "$TMP/imp_new" ] && [ $rc2 -eq 0 ] &&
    "$KVZ" verify --store "$TMP/u2" >/dev/null 2>&1 &&
    ok "import --allow-model-mismatch: exit 6, nothing written and no store made without that model's prefix; stored with it" ||
    { fail "import of another model's artifact: exit $rc $rc3 $rc2"; cat "$TMP/e"; ls "$TMP/imp_new" 2>&1; }
# an artifact through a pipe (read once, kept for the second pass)
cat "$TMP/doc0.kvz" | "$KVZ" import /dev/stdin --store "$TMP/imp_pipe" >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && "$KVZ" ls --store "$TMP/imp_pipe" | grep -q "doc0.txt" && ok "import /dev/stdin from a pipe" ||
    { fail "import from a pipe: exit $rc"; cat "$TMP/e"; }
# an artifact followed by more bytes, and an endless stream after one, are refused once the size its
# header states is read (the stream: it was read into memory without end before)
cat "$TMP/doc0.kvz" "$TMP/doc0.kvz" >"$TMP/twice.kvz"
"$KVZ" import "$TMP/twice.kvz" --store "$TMP/imp_twice" >/dev/null 2>"$TMP/e"; rc=$?
(cat "$TMP/doc0.kvz"; cat /dev/zero) | timeout 60 "$KVZ" import /dev/stdin --store "$TMP/imp_endless" >/dev/null 2>>"$TMP/e"; rc2=$?
[ $rc -eq 4 ] && [ $rc2 -eq 4 ] && grep -q "twice.kvz: artifact is [0-9]* bytes but its header says" "$TMP/e" &&
    grep -q "stdin: artifact goes on past the [0-9]* bytes its header states" "$TMP/e" &&
    [ ! -e "$TMP/imp_twice" ] && [ ! -e "$TMP/imp_endless" ] &&
    ok "import of an artifact with bytes after it, and of an endless stream: exit 4, no store" ||
    { fail "import past the stated size: exit $rc, $rc2"; cat "$TMP/e"; }
# a bad input makes no store: a missing file (exit 7), a truncated artifact (exit 4), a missing merge source (7)
"$KVZ" import "$TMP/nothing.kvz" --store "$TMP/imp_none" 2>/dev/null; rc=$?
head -c 300 "$TMP/doc0.kvz" >"$TMP/cut.kvz"
"$KVZ" import "$TMP/cut.kvz" --store "$TMP/imp_cut" 2>/dev/null; rc2=$?
"$KVZ" merge "$TMP/no_store" --into "$TMP/merge_none" 2>/dev/null; rc3=$?
[ $rc -eq 7 ] && [ $rc2 -eq 4 ] && [ $rc3 -eq 7 ] && [ ! -e "$TMP/imp_none" ] && [ ! -e "$TMP/imp_cut" ] &&
    [ ! -e "$TMP/merge_none" ] && ok "import of a missing or cut file, merge of a missing store: exit 7, 4, 7, no store made" ||
    fail "bad import/merge input: exit $rc, $rc2, $rc3; $(ls -d "$TMP"/imp_none "$TMP"/imp_cut "$TMP"/merge_none 2>/dev/null)"
"$KVZ" export --store "$S" missing.txt -o "$TMP/m.kvz" 2>/dev/null; rc=$?
[ $rc -eq 7 ] && ok "export of a missing document: exit 7" || fail "export missing: exit $rc"
# an output named as the store's own data.mdb or lock.mdb is refused (export replaced the store's data)
"$KVZ" export --store "$S" "$DOC" -o "$S/data.mdb" 2>"$TMP/e"; rc=$?
"$KVZ" pack --store "$S" --all -o "$S/lock.mdb" 2>>"$TMP/e"; rc2=$?
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && [ "$(grep -c "is a file of an LMDB store" "$TMP/e")" -eq 2 ] &&
    "$KVZ" verify --store "$S" >/dev/null 2>&1 && ok "export and pack -o STORE/data.mdb or lock.mdb: exit 2, the store intact" ||
    { fail "an output over the store's files: exit $rc, $rc2"; cat "$TMP/e"; }

# a store without its shared prefix (copied by LMDB's own tools, the prefix's key left out): verify says so
mkdir -p "$TMP/noprefix"
for db in artifacts docs meta; do # mdb_dump's hex lines: a key, then its value; 7072656669782f is "prefix/"
    mdb_dump -s $db "$S" | awk 'skip == 1 { skip = 0; next } /^ 7072656669782f/ { skip = 1; next } { print }' |
        mdb_load -s $db "$TMP/noprefix" 2>/dev/null
done
"$KVZ" verify --store "$TMP/noprefix" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 4 ] && grep -q "0 shared prefix(es)" "$TMP/o" && grep -q "its shared prefix .* is missing" "$TMP/o" &&
    ok "verify: a document's missing shared prefix is a problem (exit 4)" || { fail "verify without the prefix: exit $rc"; cat "$TMP/o"; }

# ---- gc and stats --------------------------------------------------------------------------
G="$TMP/g"
cp -r "$S" "$G"
echo "A new sentence changes the content." >>"$TMP/corpus/doc1.txt"
"$KVZ" compile "$TMP/corpus/doc1.txt" --store "$G" --method recent --quiet 2>/dev/null # old content's artifact orphaned
"$KVZ" stats --store "$G" >"$TMP/o" 2>&1 && grep -q "kvz gc drops the rest" "$TMP/o" && ok "stats shows unreferenced bytes" \
    || { fail "stats"; cat "$TMP/o"; }
"$KVZ" gc --store "$G" --dry-run >"$TMP/o" 2>&1 && grep -q "would drop 1 artifact" "$TMP/o" && ok "gc --dry-run" || { fail "gc dry run"; cat "$TMP/o"; }
"$KVZ" gc --store "$G" --dry-run --json >"$TMP/o" &&
    python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read()); assert d=={'dry_run':True,'older_forms_dropped':0,'artifacts_dropped':1,'prefixes_dropped':0,'bytes_dropped':d['bytes_dropped']} and d['bytes_dropped']>1000, d" "$TMP/o" &&
    ok "gc --dry-run --json: one object" || { fail "gc --dry-run --json"; cat "$TMP/o"; }
# while a writer holds the store (its lock file shared, as compile, unpack, import and merge do) gc refuses
flock -s -o "$G/lock.mdb" sleep 20 >/dev/null 2>&1 & held=$! # -o: only flock holds it
until ! flock -n -x "$G/lock.mdb" true; do sleep 0.05; done # held
"$KVZ" gc --store "$G" >"$TMP/o" 2>&1; rc=$?
kill $held 2>/dev/null; wait $held 2>/dev/null
[ $rc -eq 3 ] && grep -q "has another kvz process writing to it" "$TMP/o" && ok "gc refuses while a writer is at work: exit 3" ||
    { fail "gc beside a writer: exit $rc"; cat "$TMP/o"; }
"$KVZ" gc --store "$G" >"$TMP/o" 2>&1 && grep -q "dropped 1 artifact(s) and 0 prefix" "$TMP/o" && ok "gc drops the orphan" \
    || { fail "gc"; cat "$TMP/o"; }
# while gc holds the store (its lock file exclusive), a writer waits, says so, then does its work
cp -r "$G" "$TMP/gw"
flock -x -o "$TMP/gw/lock.mdb" sleep 4 >/dev/null 2>&1 & held=$! # long enough for a loaded machine to start unpack
until ! flock -n -s "$TMP/gw/lock.mdb" true; do sleep 0.05; done # held
"$KVZ" unpack "$TMP/b.tar.zst" --store "$TMP/gw" >"$TMP/o" 2>&1; rc=$?
wait $held 2>/dev/null
[ $rc -eq 0 ] && grep -q "is being garbage-collected (kvz gc, rm or compile --prune); waiting" "$TMP/o" && ok "a writer waits for a running gc, and says so" ||
    { fail "writer beside gc: exit $rc"; cat "$TMP/o"; }
"$KVZ" gc --store "$G" --older-configs >"$TMP/o" 2>&1 && grep -q "1 older form(s)" "$TMP/o" \
    && [ "$("$KVZ" ls --store "$G" | grep -c "doc0.txt")" -eq 1 ] && ok "gc --older-configs keeps the newest" \
    || { fail "gc --older-configs"; cat "$TMP/o"; }
"$KVZ" verify --store "$G" >/dev/null 2>&1 && "$KVZ" query --store "$G" --doc "$DOC" --max-tokens 4 "$Q" >/dev/null 2>&1 \
    && ok "after gc: verifies and answers" || fail "after gc"
"$KVZ" stats --store "$G" --json >"$TMP/o" && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['documents']==6 and d['configurations']==6 and d['artifact_bytes']==d['referenced_bytes']" "$TMP/o" \
    && ok "stats --json after gc" || { fail "stats --json"; cat "$TMP/o"; }

# ---- rm: documents out of the store, and what only they used ------------------------------
D1="$TMP/corpus/doc1.txt"
"$KVZ" rm --store "$G" "$D1" --dry-run >"$TMP/o" 2>&1 && grep -q "^would remove 1 document(s); would drop 1 artifact" "$TMP/o" &&
    "$KVZ" ls --store "$G" | grep -q "doc1.txt" && ok "rm --dry-run: says what would go, keeps it" || { fail "rm --dry-run"; cat "$TMP/o"; }
"$KVZ" rm --store "$G" "$D1" --dry-run --json >"$TMP/o" &&
    python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read()); assert d['dry_run'] is True and d['documents_removed']==1 and d['artifacts_dropped']==1 and 'older_forms_dropped' not in d, d" "$TMP/o" &&
    ok "rm --dry-run --json: one object" || { fail "rm --dry-run --json"; cat "$TMP/o"; }
"$KVZ" rm --store "$G" "$D1" "$TMP/corpus/nope.txt" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 7 ] && grep -q "no document '.*nope.txt' in the store (see kvz ls); nothing was removed" "$TMP/o" &&
    "$KVZ" ls --store "$G" | grep -q "doc1.txt" && ok "rm of a name the store lacks: exit 7, nothing removed" ||
    { fail "rm with a missing name: exit $rc"; cat "$TMP/o"; }
# a name spelt otherwise than compile was given it: the error names the stored one
"$KVZ" query --store "$G" --doc doc1.txt --max-tokens 2 "$Q" >/dev/null 2>"$TMP/o"; rc=$?
[ $rc -eq 7 ] && grep -q "no document 'doc1.txt' in the store; it has '$D1' (a document's name is the path compile was given)" "$TMP/o" &&
    "$KVZ" rm --store "$G" "$TMP/corpus/./doc1.txt" >"$TMP/o2" 2>&1; rc2=$?
[ $rc -eq 7 ] && [ $rc2 -eq 7 ] && grep -q "it has '$D1' (a document's name is the path compile was given); nothing was removed" "$TMP/o2" &&
    "$KVZ" ls --store "$G" | grep -q "doc1.txt" && ok "a name spelt otherwise: the error names the stored one" ||
    { fail "a name spelt otherwise: exit $rc, $rc2"; cat "$TMP/o" "$TMP/o2"; }
# a folder given for a document: the error names documents in it (it said only "see kvz ls")
"$KVZ" query --store "$G" --doc "$TMP/corpus/" --max-tokens 2 "$Q" >/dev/null 2>"$TMP/o"; rc=$?
[ $rc -eq 7 ] && grep -q "no document '$TMP/corpus/' in the store; it has '$TMP/corpus/doc[0-9].txt', .* more (a doc" "$TMP/o" &&
    ok "a folder given for a document: the error names documents in it" || { fail "a folder as --doc: exit $rc"; cat "$TMP/o"; }
# names from ls --names through a pipe (lines, or NUL-terminated), none: nothing removed, no gc
[ "$("$KVZ" ls --store "$G" --names | wc -l)" -eq 6 ] &&
    "$KVZ" ls --store "$G" --names | grep 'doc[12]\.txt$' | "$KVZ" rm --store "$G" --from - --dry-run >"$TMP/o" 2>&1 &&
    grep -q "^would remove 2 document(s)" "$TMP/o" &&
    "$KVZ" ls --store "$G" --names --null | "$KVZ" rm --store "$G" --from - --null --dry-run >"$TMP/o" 2>&1 &&
    grep -q "^would remove 6 document(s)" "$TMP/o" &&
    txn=$(mdb_stat -e "$G" | grep "Last transaction ID") &&
    printf '' | "$KVZ" rm --store "$G" --from - --json >"$TMP/o" 2>&1 &&
    grep -q '"documents_removed":0,"artifacts_dropped":0' "$TMP/o" && [ "$("$KVZ" ls --store "$G" --names | wc -l)" -eq 6 ] &&
    [ "$(mdb_stat -e "$G" | grep "Last transaction ID")" = "$txn" ] &&
    ok "ls --names | rm --from - (and --null; no names: nothing removed)" || { fail "ls --names | rm --from"; cat "$TMP/o"; }
"$KVZ" ls --store "$G" --names --null | "$KVZ" rm --store "$G" --from - --dry-run >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 4 ] && grep -q "need --null" "$TMP/o" && ok "rm --from of NUL-ended names without --null: exit 4" ||
    { fail "rm --from NUL names without --null: exit $rc"; cat "$TMP/o"; }
printf '%s\n%s\n' "$D1" "$TMP/corpus/nope.txt" >"$TMP/names"
"$KVZ" rm --store "$G" --from "$TMP/names" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 7 ] && grep -q "no document '.*nope.txt' in the store" "$TMP/o" && "$KVZ" ls --store "$G" --names | grep -qx "$D1" &&
    ok "rm --from a file naming one the store lacks: exit 7, nothing removed" || { fail "rm --from with a missing name: exit $rc"; cat "$TMP/o"; }
"$KVZ" rm --store "$G" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "name the documents" "$TMP/o" && ok "rm without a name: exit 2" || { fail "rm without a name: exit $rc"; cat "$TMP/o"; }
"$KVZ" rm --store "$G" "$D1" >"$TMP/o" 2>&1 && grep -q "^removed 1 document(s); dropped 1 artifact(s) and 0 prefix" "$TMP/o" &&
    ! "$KVZ" ls --store "$G" | grep -q "doc1.txt" && "$KVZ" verify --store "$G" >/dev/null 2>&1 &&
    "$KVZ" stats --store "$G" --json >"$TMP/o2" &&
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['documents']==5 and d['artifact_bytes']==d['referenced_bytes'] and 0 < d['free_bytes'] < d['file_bytes'], d" "$TMP/o2" &&
    ok "rm: the document and its artifact gone, the rest verifies" || { fail "rm"; cat "$TMP/o" "$TMP/o2"; }
"$KVZ" query --store "$G" --doc "$D1" --max-tokens 2 "$Q" >/dev/null 2>"$TMP/o"; rc=$?
[ $rc -eq 7 ] && "$KVZ" query --store "$G" --doc "$DOC" --max-tokens 2 "$Q" >/dev/null 2>&1 &&
    ok "after rm: the document is not found (exit 7), another answers" || { fail "query after rm: exit $rc"; cat "$TMP/o"; }
# a damaged record stops ls, gc and an rm of another document; rm of it mends the store
printf 'broken.txt\nxyz\n' | mdb_load -T -s docs "$G"
"$KVZ" rm --store "$G" "$DOC" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 4 ] && grep -q "rm changed nothing: document 'broken.txt'" "$TMP/o" && "$KVZ" ls --store "$G" | grep -q doc0.txt &&
    "$KVZ" rm --store "$G" broken.txt >"$TMP/o" 2>&1 && grep -q "^removed 1 document(s); dropped 0 artifact" "$TMP/o" &&
    "$KVZ" verify --store "$G" >/dev/null 2>&1 && ok "a damaged record: rm of another refused (exit 4), rm of it mends the store" ||
    { fail "rm beside a damaged record: exit $rc"; cat "$TMP/o"; }

# ---- compile --prune: documents gone from the corpus leave the store -----------------------
P="$TMP/p"; PC="$TMP/pc"
mkdir -p "$PC/sub" "$TMP/px"
for f in a.txt b.md sub/c.txt; do echo "The note $f says the meeting moved to Thursday at noon." >"$PC/$f"; done
echo "A member of an archive: the boat sails at dawn." >"$TMP/px/m.txt"
tar -cf "$PC/x.tar" -C "$TMP/px" m.txt
echo "A file of another path: keep it." >"$TMP/other.txt"
"$KVZ" compile "$PC" "$TMP/other.txt" --store "$P" --method recent --quiet 2>"$TMP/e" && [ "$("$KVZ" ls --store "$P" | grep -c " recent ")" -eq 5 ] ||
    { fail "compile for prune"; cat "$TMP/e"; }
rm "$PC/b.md" "$PC/x.tar"
# b.md is outside this run's selection (--include): it stays; the archive's member (*.txt) goes
"$KVZ" compile "$PC" --store "$P" --method recent --include '*.txt' --prune --json >"$TMP/o" 2>"$TMP/e" &&
    grep -q "^pruned 1 document(s) the corpus no longer has; dropped 1 artifact(s)" "$TMP/e" &&
    python3 -c "import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]; d=L[-1]['summary']; assert d['pruned']['documents']==1 and d['unchanged']==2, d; p=[l['document'] for l in L if l.get('status')=='pruned']; assert len(p)==1 and p[0].endswith('/pc/x.tar:m.txt'), p" "$TMP/o" &&
    grep -q "^pruned .*/pc/x.tar:m.txt$" "$TMP/e" &&
    "$KVZ" ls --store "$P" >"$TMP/l" && ! grep -q "x.tar:m.txt" "$TMP/l" && grep -q "b.md" "$TMP/l" && grep -q "other.txt" "$TMP/l" &&
    ok "compile --prune --include: the archive's gone member pruned; a name the globs leave out and another path's kept" ||
    { fail "compile --prune --include"; cat "$TMP/e" "$TMP/o" "$TMP/l"; }
"$KVZ" compile "$PC" --store "$P" --method recent --prune --quiet 2>"$TMP/e" && "$KVZ" ls --store "$P" >"$TMP/l" &&
    ! grep -q "b.md" "$TMP/l" && [ "$(grep -c " recent " "$TMP/l")" -eq 3 ] && "$KVZ" verify --store "$P" >/dev/null 2>&1 &&
    "$KVZ" stats --store "$P" --json >"$TMP/o" &&
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['documents']==3 and d['artifact_bytes']==d['referenced_bytes'], d" "$TMP/o" &&
    ok "compile --prune: the gone file pruned, nothing unreferenced left, the store verifies" ||
    { fail "compile --prune"; cat "$TMP/e" "$TMP/l" "$TMP/o"; }
# another writer at work (its lock shared): compiled, nothing pruned, exit 3; again later: pruned
rm "$PC/sub/c.txt"
flock -s -o "$P/lock.mdb" sleep 20 >/dev/null 2>&1 & held=$!
until ! flock -n -x "$P/lock.mdb" true; do sleep 0.05; done # held
"$KVZ" compile "$PC" --store "$P" --method recent --prune --quiet 2>"$TMP/e"; rc=$?
kill $held 2>/dev/null; wait $held 2>/dev/null
[ $rc -eq 3 ] && grep -q "nothing pruned: store .* has another kvz process writing to it" "$TMP/e" &&
    "$KVZ" ls --store "$P" | grep -q "sub/c.txt" && "$KVZ" compile "$PC" --store "$P" --method recent --prune 2>"$TMP/e" &&
    grep -q "^pruned 1 document(s)" "$TMP/e" && ! "$KVZ" ls --store "$P" | grep -q "sub/c.txt" &&
    ok "compile --prune beside another writer: exit 3, nothing pruned; run again: pruned" ||
    { fail "compile --prune beside a writer: exit $rc"; cat "$TMP/e"; }
# a run that stops (--strict at an empty file) prunes nothing
rm "$PC/a.txt"; : >"$PC/empty.txt"
"$KVZ" compile "$PC" "$TMP/other.txt" --store "$P" --method recent --prune --strict --quiet 2>"$TMP/e"; rc=$?
[ $rc -eq 4 ] && grep -q "nothing pruned: the run stopped before its end" "$TMP/e" && "$KVZ" ls --store "$P" | grep -q "pc/a.txt" &&
    ok "a stopped run prunes nothing (exit 4)" || { fail "stopped run with --prune: exit $rc"; cat "$TMP/e"; }
# names the listing of PC lacks but the disk has (through a link, a doubled slash, an archive's
# remaining member) stay; a member gone from an archive that stays goes, as does a.txt (gone above)
mkdir -p "$TMP/pext"; echo "Reached through a link only: the bridge opens in May." >"$TMP/pext/n.txt"
ln -s "$TMP/pext" "$PC/link"
echo "The first member says the train leaves at six." >"$TMP/px/m1.txt"
echo "The second member says the train arrives at nine." >"$TMP/px/m2.txt"
tar -cf "$PC/y.tar" -C "$TMP/px" m1.txt m2.txt
echo "A document named twice over." >"$PC/d.txt"
"$KVZ" compile "$PC/link" "$PC" "$PC//d.txt" --store "$P" --method recent --quiet 2>/dev/null
tar -cf "$PC/y.tar" -C "$TMP/px" m1.txt
"$KVZ" compile "$PC" --store "$P" --method recent --prune 2>"$TMP/e" && grep -q "^pruned 2 document(s)" "$TMP/e" &&
    "$KVZ" ls --store "$P" >"$TMP/l" && grep -q "pc/link/n.txt" "$TMP/l" && grep -q "pc//d.txt" "$TMP/l" &&
    grep -q "y.tar:m1.txt" "$TMP/l" && ! grep -q "y.tar:m2.txt" "$TMP/l" && ! grep -q "pc/a.txt" "$TMP/l" &&
    ok "compile --prune keeps what the disk still has (a link's file, a doubled slash, an archive's member)" ||
    { fail "compile --prune beside names on disk"; cat "$TMP/e" "$TMP/l"; }
# a file that became a folder (of the same name) is gone: its document goes, the folder's file comes
echo "A file for now: the market closes at five." >"$PC/f.txt"
"$KVZ" compile "$PC" --store "$P" --method recent --quiet 2>/dev/null
rm "$PC/f.txt"; mkdir "$PC/f.txt"; echo "Inside the folder now: the market opens at eight." >"$PC/f.txt/g.txt"
"$KVZ" compile "$PC" --store "$P" --method recent --prune 2>"$TMP/e" && grep -q "^pruned 1 document(s)" "$TMP/e" &&
    grep -q "^pruned .*/pc/f.txt$" "$TMP/e" && "$KVZ" ls --store "$P" >"$TMP/l" && grep -q "pc/f.txt/g.txt" "$TMP/l" &&
    ! grep -q "pc/f.txt " "$TMP/l" && grep -q "pc//d.txt" "$TMP/l" &&
    ok "compile --prune: a file that is a folder now is pruned, the folder's file compiled" ||
    { fail "compile --prune, a file become a folder"; cat "$TMP/e" "$TMP/l"; }

# ---- a reader answers throughout an unpack that grows the store's map ----------------------
R="$TMP/r"
KVZ_STORE_MAP_BYTES=64K "$KVZ" unpack "$TMP/one.tar.zst" --store "$R" --quiet >/dev/null 2>&1 || fail "unpack one document"
map0=$(mdb_stat -e "$R" | sed -n 's/^ *Map size: *//p')
rm -f "$TMP/writer.done" "$TMP/reads"
(
    while [ ! -e "$TMP/writer.done" ]; do
        if "$KVZ" query --store "$R" --doc "$DOC" --max-tokens 2 "$Q" >/dev/null 2>"$TMP/reader.err"; then
            echo ok >>"$TMP/reads"
        else
            echo "failed: $(cat "$TMP/reader.err")" >>"$TMP/reads"
        fi
    done
) &
reader=$!
while [ ! -s "$TMP/reads" ]; do sleep 0.1; done # the reader is running
for i in 1 2 3; do
    "$KVZ" unpack "$TMP/b.tar.zst" --store "$R" --quiet >/dev/null 2>&1 || fail "unpack $i under a reader"
    "$KVZ" gc --store "$R" >/dev/null 2>&1 || fail "gc $i under a reader"
done
touch "$TMP/writer.done"; wait $reader
map1=$(mdb_stat -e "$R" | sed -n 's/^ *Map size: *//p')
reads=$(wc -l <"$TMP/reads"); bad=$(grep -c failed "$TMP/reads")
[ "$bad" -eq 0 ] && [ "$reads" -ge 2 ] && [ "$map1" -gt "$map0" ] \
    && ok "a reader answered $reads times while unpack wrote and the map grew $map0 -> $map1 bytes" \
    || { fail "reader during unpack: $reads runs, $bad failed, map $map0 -> $map1"; grep failed "$TMP/reads" | head -3; }

# ---- one name, two contents in two stores: the document goes whole -------------------------
# X compiled at t0 and t2 (two configurations), other content Y under the name at t1 between
# them: X wins with both configurations whatever the order of merge or unpack (one
# configuration at a time, X's older one was dropped against Y, or added by a second unpack)
mkdir -p "$TMP/clash/x" "$TMP/clash/y"
case $MODEL in /*) model_abs=$MODEL ;; *) model_abs=$PWD/$MODEL ;; esac
head -c 600 "$TMP/corpus/doc1.txt" >"$TMP/clash/x/h.txt"; head -c 600 "$TMP/corpus/doc2.txt" >"$TMP/clash/y/h.txt"
(cd "$TMP/clash/x" && "$kvz_abs" compile h.txt --store ../A -m "$model_abs" --method recent --ratio 0.5 --quiet) &&
    sleep 1.1 && (cd "$TMP/clash/y" && "$kvz_abs" compile h.txt --store ../B -m "$model_abs" --method recent --quiet) &&
    sleep 1.1 && (cd "$TMP/clash/x" && "$kvz_abs" compile h.txt --store ../A -m "$model_abs" --method recent --ratio 0.3 --quiet) ||
    fail "compiling one name in two stores"
"$KVZ" merge "$TMP/clash/A" "$TMP/clash/B" --into "$TMP/clash/AB" --quiet && "$KVZ" merge "$TMP/clash/B" "$TMP/clash/A" --into "$TMP/clash/BA" --quiet &&
    "$KVZ" pack --store "$TMP/clash/A" --all -o "$TMP/clash/A.tar.zst" >/dev/null && "$KVZ" pack --store "$TMP/clash/B" --all -o "$TMP/clash/B.tar.zst" >/dev/null &&
    "$KVZ" unpack "$TMP/clash/B.tar.zst" --store "$TMP/clash/UBA" --quiet && "$KVZ" unpack "$TMP/clash/A.tar.zst" --store "$TMP/clash/UBA" >"$TMP/o" 2>&1 ||
    fail "merges and unpacks of one name"
for st in AB BA UBA; do "$KVZ" ls --store "$TMP/clash/$st" --json | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/$st.ls"; done
"$KVZ" ls --store "$TMP/clash/A" --json | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/A.ls"
cmp -s "$TMP/clash/A.ls" "$TMP/clash/AB.ls" && cmp -s "$TMP/clash/A.ls" "$TMP/clash/BA.ls" && cmp -s "$TMP/clash/A.ls" "$TMP/clash/UBA.ls" &&
    [ "$(wc -l <"$TMP/clash/A.ls")" -eq 2 ] && grep -q "2 replaced older content" "$TMP/o" &&
    grep -q "^kvz unpack: h.txt: the content under the name replaced by .*A.tar.zst's$" "$TMP/o" &&
    ok "one name, newer content in one store: merged either way and unpacked, it comes whole (2 configurations)" ||
    { fail "one name in two stores"; cat "$TMP/o"; head "$TMP/clash/"*.ls; }
# the content that loses writes nothing: no artifact is left for gc (merge A then B, unpack and
# import of B's older content into a store holding A's)
"$KVZ" export --store "$TMP/clash/B" h.txt -o "$TMP/clash/B.kvz" --quiet &&
    "$KVZ" unpack "$TMP/clash/B.tar.zst" --store "$TMP/clash/AB" >"$TMP/o" 2>&1 &&
    "$KVZ" import "$TMP/clash/B.kvz" --store "$TMP/clash/AB" >>"$TMP/o" 2>&1 &&
    "$KVZ" merge "$TMP/clash/B" --into "$TMP/clash/AB" >>"$TMP/o" 2>&1 &&
    "$KVZ" gc --store "$TMP/clash/AB" --dry-run >>"$TMP/o" 2>&1 || fail "older content into a newer store"
"$KVZ" ls --store "$TMP/clash/AB" --json | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/AB2.ls"
grep -q "0 form(s) added, 0 already there, 0 replaced older content, 1 left alone .*; 0 artifact(s) written, 0 already there, 1 not written (only documents left alone use them)$" "$TMP/o" &&
    grep -q "B.kvz: h.txt segment 1 of 1 (.*): left alone, the store holds other content under the name, compiled later$" "$TMP/o" &&
    grep -q "^would drop 0 artifact(s) and 0 prefix(es), 0.0 KB" "$TMP/o" && cmp -s "$TMP/clash/A.ls" "$TMP/clash/AB2.ls" &&
    ok "older content unpacked, imported or merged into a store holding newer content writes no artifact" ||
    { fail "older content left artifacts behind"; cat "$TMP/o"; }
# several sources holding one name: the content another source's takes the name from is never
# written (it was copied first, then replaced, left for gc), in merge and in import: the content
# that wins goes first
"$KVZ" merge "$TMP/clash/B" "$TMP/clash/A" --into "$TMP/clash/BA2" >"$TMP/o" 2>&1 &&
    "$KVZ" gc --store "$TMP/clash/BA2" --dry-run >>"$TMP/o" 2>&1 &&
    "$KVZ" export --store "$TMP/clash/A" h.txt -o "$TMP/clash/A.kvz" --quiet &&
    "$KVZ" import "$TMP/clash/B.kvz" "$TMP/clash/A.kvz" --store "$TMP/clash/IBA" >>"$TMP/o" 2>&1 &&
    "$KVZ" gc --store "$TMP/clash/IBA" --dry-run >>"$TMP/o" 2>&1 || fail "merge and import of sources holding one name"
"$KVZ" ls --store "$TMP/clash/BA2" --json | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/BA2.ls"
[ "$(grep -c "^would drop 0 artifact(s) and 0 prefix(es)" "$TMP/o")" -eq 2 ] && cmp -s "$TMP/clash/A.ls" "$TMP/clash/BA2.ls" &&
    grep -q "^kvz merge: h.txt: .*clash/B's content under the name left alone: the store's was compiled later$" "$TMP/o" &&
    grep -q "B.kvz: h.txt segment 1 of 1 (.*): left alone, the store holds other content under the name, compiled later$" "$TMP/o" &&
    ok "merge and import of several sources holding one name write nothing of the content that loses" ||
    { fail "a losing source's content written"; cat "$TMP/o"; }
# flip a byte inside the artifact FILE (as kvz export wrote it) where a store's data.mdb holds it
damage_in_store() { # data.mdb FILE
    python3 - "$1" "$2" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
head = open(sys.argv[2], "rb").read()[:64] # the header: its checksums make it the artifact's own
at = data.find(head)
assert at > 0 and data.find(head, at + 1) < 0, "the artifact is not in data.mdb once"
data[at + 2000] ^= 0x40
open(sys.argv[1], "wb").write(data)
PY
}
# a merge whose every source document is damaged makes no store (exit 4), also when the
# damage is past the document's first segment (its segments are all checked before a write)
(cd "$TMP/clash/x" && "$kvz_abs" compile h.txt --store ../M3 -m "$model_abs" --method recent --reserve 8086 --quiet) &&
    "$KVZ" export --store "$TMP/clash/M3" h.txt --segment 2 -o "$TMP/clash/seg2.kvz" --quiet &&
    damage_in_store "$TMP/clash/M3/data.mdb" "$TMP/clash/seg2.kvz" || fail "making a damaged segment 2"
"$KVZ" merge "$TMP/clash/M3" --into "$TMP/clash/none" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 4 ] && [ ! -e "$TMP/clash/none" ] && grep -q "skipped: 'h.txt': " "$TMP/o" &&
    grep -q "; no store made at .*none: nothing sound to write$" "$TMP/o" &&
    ok "merge of nothing but a document damaged in its segment 2: exit 4, no store made" ||
    { fail "merge of a damaged store: exit $rc"; cat "$TMP/o"; ls "$TMP/clash"; }
# one content's configurations in two sources, other content between them in DIR (A1: X's
# first form, B: Y, later; A2: X's second form, later still): X comes whole in either order of
# the sources, merged or imported (before, the first source's older form lost to DIR's Y and
# the second replaced Y with its form alone); and a source whose winning content is damaged
# leaves the name to the content it beat (before: to none)
n=0 # A's forms in the order they came: A1 the older, A2 the newer (Y's time between them)
for id in $("$KVZ" ls --store "$TMP/clash/A" --json | sed -n 's/.*"config_id":"\([0-9a-f]*\)".*/\1/p'); do
    n=$((n + 1))
    "$KVZ" pack --store "$TMP/clash/A" --all --config "$id" -o "$TMP/clash/A$n.tar.zst" >/dev/null &&
        "$KVZ" unpack "$TMP/clash/A$n.tar.zst" --store "$TMP/clash/A$n" --quiet &&
        "$KVZ" export --store "$TMP/clash/A$n" h.txt -o "$TMP/clash/a$n.kvz" --quiet || fail "splitting A's forms"
done
forms_of() { # STORE: its forms, without the numbers and times a store gives them (import files a
    # form at its artifacts' time, a record may say the second after)
    "$KVZ" ls --store "$1" --json | sed 's/"config":[0-9]*,//; s/"created":[0-9]*,//' | sort
}
for order in 12 21; do
    f=${order%?} l=${order#?}
    cp -r "$TMP/clash/B" "$TMP/clash/M$order" && cp -r "$TMP/clash/B" "$TMP/clash/I$order" &&
        "$KVZ" merge "$TMP/clash/A$f" "$TMP/clash/A$l" --into "$TMP/clash/M$order" --quiet &&
        "$KVZ" import "$TMP/clash/a$f.kvz" "$TMP/clash/a$l.kvz" --store "$TMP/clash/I$order" --quiet ||
        fail "merge/import in the order $order"
    for st in M$order I$order; do forms_of "$TMP/clash/$st" >"$TMP/clash/$st.ls"; done
done
forms_of "$TMP/clash/A" >"$TMP/clash/Af.ls"
cmp -s "$TMP/clash/Af.ls" "$TMP/clash/M12.ls" && cmp -s "$TMP/clash/Af.ls" "$TMP/clash/M21.ls" &&
    cmp -s "$TMP/clash/Af.ls" "$TMP/clash/I12.ls" && cmp -s "$TMP/clash/Af.ls" "$TMP/clash/I21.ls" &&
    ok "one content's forms in two sources, other content between them in DIR: whole in either order (merge, import)" ||
    { fail "forms lost to the order of the sources"; head "$TMP/clash/"[MI]12.ls "$TMP/clash/"[MI]21.ls; }
cp -r "$TMP/clash/A2" "$TMP/clash/A2bad" && damage_in_store "$TMP/clash/A2bad/data.mdb" "$TMP/clash/a2.kvz" ||
    fail "damaging A2's artifact"
"$KVZ" merge "$TMP/clash/A2bad" "$TMP/clash/B" --into "$TMP/clash/E" >"$TMP/o" 2>&1; rc=$?
"$KVZ" ls --store "$TMP/clash/E" --json 2>/dev/null | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/E.ls"
"$KVZ" ls --store "$TMP/clash/B" --json | sed 's/"config":[0-9]*,//' | sort >"$TMP/clash/B.ls"
[ $rc -eq 4 ] && grep -q "A2bad: skipped: " "$TMP/o" && cmp -s "$TMP/clash/B.ls" "$TMP/clash/E.ls" &&
    ok "the winning source's content damaged: the content it beat is merged (exit 4)" ||
    { fail "a damaged winner took the name: exit $rc"; cat "$TMP/o" "$TMP/clash/E.ls"; }
# a document that loses still mends: its artifact is also another document's of the store,
# damaged there (x.txt holds A's h.txt content; the store's h.txt is newer than A's)
mkdir -p "$TMP/clash/m" && cp "$TMP/clash/x/h.txt" "$TMP/clash/m/x.txt" && cp "$TMP/clash/y/h.txt" "$TMP/clash/m/h.txt" &&
    (cd "$TMP/clash/m" && "$kvz_abs" compile x.txt h.txt --store ../Bm -m "$model_abs" --method recent --ratio 0.5 --quiet) &&
    "$KVZ" export --store "$TMP/clash/Bm" x.txt -o "$TMP/clash/x.kvz" --quiet &&
    damage_in_store "$TMP/clash/Bm/data.mdb" "$TMP/clash/x.kvz" && cp -r "$TMP/clash/Bm" "$TMP/clash/Bm2" &&
    ! "$KVZ" verify --store "$TMP/clash/Bm" >/dev/null 2>&1 || fail "making a store with a damaged shared artifact"
"$KVZ" unpack "$TMP/clash/A.tar.zst" --store "$TMP/clash/Bm" >"$TMP/o" 2>&1 &&
    "$KVZ" merge "$TMP/clash/A" --into "$TMP/clash/Bm2" >>"$TMP/o" 2>&1 &&
    "$KVZ" verify --store "$TMP/clash/Bm" >/dev/null 2>&1 && "$KVZ" verify --store "$TMP/clash/Bm2" >/dev/null 2>&1 &&
    [ "$(grep -c " left alone (" "$TMP/o")" -eq 2 ] && grep -q "^1 damaged artifact(s) replaced by the bundle's good copy$" "$TMP/o" &&
    grep -q "; 1 damaged artifact(s) replaced by a good copy$" "$TMP/o" &&
    ok "unpack and merge of content that loses mend the store's damaged copy of an artifact another document uses" ||
    { fail "mending through a losing document"; cat "$TMP/o"; }

# each name left alone is said; another model's bundle whose document loses writes no
# prefix and stores nothing aside
grep -q "^kvz unpack: h.txt: .*A.tar.zst's content under the name left alone: the store's was compiled later$" "$TMP/o" &&
    grep -q "^kvz merge: h.txt: .*clash/A's content under the name left alone: the store's was compiled later$" "$TMP/o" &&
    ok "unpack and merge name each document left alone" || { fail "left alone, unnamed"; cat "$TMP/o"; }
(cd "$TMP/clash/x" && "$kvz_abs" compile h.txt --store ../T -m "$TMP/tiny.gguf" --method recent --reserve 64 --quiet) &&
    sleep 1.1 && (cd "$TMP/clash/y" && "$kvz_abs" compile h.txt --store ../Ynew -m "$model_abs" --method recent --quiet) &&
    "$KVZ" pack --store "$TMP/clash/T" --all -o "$TMP/clash/T.tar.zst" >/dev/null &&
    "$KVZ" unpack "$TMP/clash/T.tar.zst" --store "$TMP/clash/Ynew" --allow-model-mismatch >"$TMP/o" 2>&1 &&
    "$KVZ" gc --store "$TMP/clash/Ynew" --dry-run >>"$TMP/o" 2>&1 && grep -q "1 left alone" "$TMP/o" &&
    ! grep -q "stored aside" "$TMP/o" && grep -q "^would drop 0 artifact(s) and 0 prefix(es)" "$TMP/o" &&
    ok "another model's bundle whose document loses: nothing written, not even its prefix" ||
    { fail "another model's losing bundle"; cat "$TMP/o"; }
# a source's damaged prefix is its damage in either order of the sources (each source's copy
# is checked): exit 4 both ways
cp -r "$TMP/clash/B" "$TMP/clash/Dp" && mdb_dump -s meta "$TMP/clash/Dp" >"$TMP/clash/meta.dump" &&
    python3 - "$TMP/clash/Dp/data.mdb" "$TMP/clash/meta.dump" <<'PY' || fail "damaging a prefix"
import sys
lines = open(sys.argv[2]).read().split("\n")
key = [i for i, l in enumerate(lines) if l.startswith(" 7072656669782f")][0] # "prefix/"
head = bytes.fromhex(lines[key + 1].strip())[:64]
data = bytearray(open(sys.argv[1], "rb").read())
at = data.find(head)
assert at > 0 and data.find(head, at + 1) < 0
data[at + 2000] ^= 0x40
open(sys.argv[1], "wb").write(data)
PY
"$KVZ" merge "$TMP/clash/Dp" "$TMP/clash/B" --into "$TMP/clash/DB" >"$TMP/o" 2>&1; rc1=$?
"$KVZ" merge "$TMP/clash/B" "$TMP/clash/Dp" --into "$TMP/clash/BD" --prune >>"$TMP/o" 2>&1; rc2=$?
[ $rc1 -eq 4 ] && [ $rc2 -eq 4 ] && [ "$(grep -c "skipped: .*shared prefix" "$TMP/o")" -eq 2 ] &&
    grep -q "nothing pruned: a source had damaged documents" "$TMP/o" &&
    ok "a source's damaged prefix: exit 4 whichever source comes first" || { fail "damaged prefix by order: $rc1 $rc2"; cat "$TMP/o"; }
# a name that is not UTF-8 (a file's name may be any bytes): shown as \xNN; pack --all leaves
# it out, says so and exits 5, the bundle written with the rest
mkdir -p "$TMP/clash/raw" && cp "$TMP/clash/x/h.txt" "$TMP/clash/raw/ok.txt" &&
    cp "$TMP/clash/y/h.txt" "$(printf "$TMP/clash/raw/bad\377.txt")" &&
    (cd "$TMP/clash/raw" && "$kvz_abs" compile . --store ../R -m "$model_abs" --method recent --quiet) &&
    "$KVZ" ls --store "$TMP/clash/R" >"$TMP/o" 2>&1 || fail "compiling a name that is not UTF-8"
"$KVZ" pack --store "$TMP/clash/R" --all -o "$TMP/clash/R.tar.zst" >>"$TMP/o" 2>&1; rc=$?
grep -qF './bad\xff.txt ' "$TMP/o" && [ $rc -eq 5 ] && grep -qF "kvz pack: left out: './bad\\xff.txt': its name is not UTF-8" "$TMP/o" &&
    "$KVZ" unpack "$TMP/clash/R.tar.zst" --check --json | grep -c '"document"' | grep -qx 1 &&
    ok "a name that is not UTF-8: ls shows \\xff, pack --all leaves it out (exit 5) and packs the rest" ||
    { fail "a name that is not UTF-8: pack exit $rc"; cat "$TMP/o"; }
# asked for by name: refused (exit 5), the name escaped once as ls shows it (it was escaped twice)
"$KVZ" pack --store "$TMP/clash/R" --doc "$(printf './bad\377.txt')" -o "$TMP/clash/one.tar.zst" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 5 ] && grep -qF "kvz pack: './bad\\xff.txt': its name is not UTF-8" "$TMP/o" &&
    ok "pack --doc of a name that is not UTF-8: exit 5, shown as ls shows it" ||
    { fail "pack --doc of a name that is not UTF-8: exit $rc"; cat "$TMP/o"; }

# ---- the same compile elsewhere, one clock: other bytes said, the default form agreed, ------
# ---- dates ahead of the clock said by every transfer, ties said as ties ----------------------
# (a compile's time is in its artifact's bytes, not in its id: two times give the same ids with
# other bytes, as another CPU or thread count does with its roundings)
mkdir -p "$TMP/elsewhere"
E="$TMP/elsewhere"
SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$DOC" --store "$E/one" --method recent --quiet &&
    SOURCE_DATE_EPOCH=1700000100 "$KVZ" compile "$DOC" --store "$E/two" --method recent --quiet &&
    SOURCE_DATE_EPOCH=1700000100 "$KVZ" pack --store "$E/two" --all -o "$E/two.tar.zst" --quiet &&
    "$KVZ" export --store "$E/two" "$DOC" -o "$E/two.kvz" --quiet && cp -r "$E/one" "$E/one-m" &&
    cp -r "$E/one" "$E/one-u" && cp -r "$E/one" "$E/one-i" &&
    "$KVZ" merge "$E/two" --into "$E/one-m" >"$TMP/o" 2>&1 && "$KVZ" unpack "$E/two.tar.zst" --store "$E/one-u" >>"$TMP/o" 2>&1 &&
    "$KVZ" import "$E/two.kvz" --store "$E/one-i" >>"$TMP/o" 2>&1 || { fail "the same compile at two times"; cat "$TMP/o"; }
grep -q "^1 artifact(s) already there had other bytes than the sources' (the same compile run twice: its time is in" "$TMP/o" &&
    grep -q "^1 artifact(s) already there had other bytes than the bundle's (" "$TMP/o" &&
    grep -q "two.kvz: .* already in the store with other bytes (the same compile run twice: at another time" "$TMP/o" &&
    "$KVZ" verify --store "$E/one-m" >/dev/null 2>&1 && "$KVZ" verify --store "$E/one-u" >/dev/null 2>&1 &&
    ok "merge, unpack and import say an artifact the store had with other bytes (kept)" ||
    { fail "other bytes under one id, unsaid"; cat "$TMP/o"; }
# two forms of one time, arriving in either order: the same one is the default (the larger config id)
SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$DOC" --store "$E/fx" --method recent --quiet &&
    SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$DOC" --store "$E/fx" --method recent --bits 8 --quiet &&
    SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$DOC" --store "$E/fy" --method recent --bits 8 --quiet &&
    SOURCE_DATE_EPOCH=1700000000 "$KVZ" compile "$DOC" --store "$E/fy" --method recent --quiet &&
    "$KVZ" merge "$E/fx" "$E/fy" --into "$E/fxy" --quiet && "$KVZ" merge "$E/fy" "$E/fx" --into "$E/fyx" --quiet ||
    fail "two forms of one time"
for st in fx fy fxy fyx; do "$KVZ" inspect --store "$E/$st" "$DOC" | head -1; done >"$TMP/o" 2>&1
[ "$(grep -o ", id [0-9a-f]*" "$TMP/o" | sort -u | wc -l)" -eq 1 ] && [ "$(grep -c ", id " "$TMP/o")" -eq 4 ] &&
    ok "two forms compiled at one time: the same default whatever order they were compiled or merged in" ||
    { fail "the default form hangs on the order"; cat "$TMP/o"; }
# gc --older-configs keeps that default (it kept the later arrival)
cp -r "$E/fx" "$E/fx-gc" && cp -r "$E/fy" "$E/fy-gc" &&
    "$KVZ" gc --store "$E/fx-gc" --older-configs >/dev/null && "$KVZ" gc --store "$E/fy-gc" --older-configs >/dev/null ||
    fail "gc --older-configs of two forms of one time"
for st in fx fx-gc fy-gc; do "$KVZ" inspect --store "$E/$st" "$DOC" | head -1; done >"$TMP/o" 2>&1
[ "$(grep -o ", id [0-9a-f]*" "$TMP/o" | sort -u | wc -l)" -eq 1 ] && [ "$(grep -c ", id " "$TMP/o")" -eq 3 ] &&
    [ "$("$KVZ" ls --store "$E/fx-gc" | grep -c "doc0.txt")" -eq 1 ] &&
    ok "gc --older-configs of two forms of one time keeps the one query loads" ||
    { fail "gc --older-configs dropped the default form"; cat "$TMP/o"; }
# a form dated ahead of this machine's clock, merged or imported: said as unpack says it
SOURCE_DATE_EPOCH=2000000000 "$KVZ" compile "$DOC" --store "$E/ahead" --method recent --ratio 0.4 --quiet &&
    "$KVZ" export --store "$E/ahead" "$DOC" -o "$E/ahead.kvz" --quiet &&
    "$KVZ" merge "$E/ahead" --into "$E/ahead-m" >"$TMP/o" 2>&1 && "$KVZ" import "$E/ahead.kvz" --store "$E/ahead-i" >>"$TMP/o" 2>&1 &&
    grep -q "^kvz merge: note: 1 form(s) of the sources are dated after this machine's clock (the latest 2033-" "$TMP/o" &&
    grep -q "^kvz import: note: 1 form(s) of the files are dated after this machine's clock (the latest 2033-" "$TMP/o" &&
    ok "merge and import say forms dated after this machine's clock" || { fail "future dates unsaid"; cat "$TMP/o"; }
# two contents under one name at one time: the hash decides, and the message says so
mkdir -p "$E/p" "$E/q" && head -c 500 "$TMP/corpus/doc1.txt" >"$E/p/t.txt" && head -c 500 "$TMP/corpus/doc2.txt" >"$E/q/t.txt" &&
    (cd "$E/p" && SOURCE_DATE_EPOCH=1700000000 "$kvz_abs" compile t.txt --store ../P -m "$model_abs" --method recent --quiet) &&
    (cd "$E/q" && SOURCE_DATE_EPOCH=1700000000 "$kvz_abs" compile t.txt --store ../Q -m "$model_abs" --method recent --quiet) &&
    "$KVZ" merge "$E/P" --into "$E/PQ" --quiet && "$KVZ" merge "$E/Q" --into "$E/PQ" >"$TMP/o" 2>&1 &&
    "$KVZ" merge "$E/Q" --into "$E/QP" --quiet && "$KVZ" merge "$E/P" --into "$E/QP" >>"$TMP/o" 2>&1 ||
    { fail "one name at one time"; cat "$TMP/o"; }
grep -q "content under the name left alone: the store's was compiled at the same time, and the content hashes decide" "$TMP/o" &&
    ! grep -q "compiled later" "$TMP/o" &&
    [ "$("$KVZ" ls --store "$E/PQ" --json | grep -o '"artifacts":.*')" = \
        "$("$KVZ" ls --store "$E/QP" --json | grep -o '"artifacts":.*')" ] &&
    ok "one name, two contents of one time: the same winner either way, said as a tie" ||
    { fail "a tie said as an age"; cat "$TMP/o"; }

# pack writes an artifact that documents of one content share (its manifest names the first
# compiled, here one removed) naming the first document of the bundle that uses it: the bundle
# carried the removed name to the other machine. Unpacked where the store has the artifact
# under the first name, the store's bytes stay; a store holding both names packs them as stored
N="$TMP/two-names"
mkdir -p "$N/notes" "$N/archive" && cp "$TMP/corpus/doc3.txt" "$N/notes/secret-draft.txt" &&
    cp "$TMP/corpus/doc3.txt" "$N/archive/public.txt" &&
    "$KVZ" compile "$N/notes" --store "$N/RS" --method recent --quiet &&
    "$KVZ" compile "$N/archive" --store "$N/RS" --method recent --quiet && cp -r "$N/RS" "$N/both" &&
    "$KVZ" rm --store "$N/RS" "$N/notes/secret-draft.txt" >/dev/null &&
    "$KVZ" pack --store "$N/RS" --doc "$N/archive/public.txt" -o "$N/pub.tar.zst" --quiet &&
    mkdir "$N/x" && tar --zstd -xf "$N/pub.tar.zst" -C "$N/x" &&
    "$KVZ" import "$N"/x/artifacts/*.kvz --store "$N/imported" >"$TMP/o" 2>&1 &&
    "$KVZ" unpack "$N/pub.tar.zst" --store "$N/U" >"$TMP/o2" 2>&1 &&
    "$KVZ" unpack "$N/pub.tar.zst" --store "$N/both" >>"$TMP/o2" 2>&1 ||
    { fail "two names of one content: compile, pack, unpack"; cat "$TMP/o" "$TMP/o2"; }
printf '%s\n' "$N/archive/public.txt" >"$TMP/want1"
printf '%s\n' "$N/archive/public.txt" "$N/notes/secret-draft.txt" >"$TMP/want2"
"$KVZ" ls --store "$N/imported" --names 2>&1 | cmp -s - "$TMP/want1" && ! grep -q secret-draft "$TMP/o" &&
    "$KVZ" ls --store "$N/U" --names 2>&1 | cmp -s - "$TMP/want1" &&
    "$KVZ" ls --store "$N/both" --names 2>&1 | cmp -s - "$TMP/want2" &&
    grep -q "^1 artifact(s) already there had other bytes than the bundle's (" "$TMP/o2" &&
    "$KVZ" verify --store "$N/U" >/dev/null 2>&1 && "$KVZ" verify --store "$N/both" >/dev/null 2>&1 &&
    ok "pack of a name sharing a removed one's artifact: the bundle's artifact names it (unpacked, the store's kept)" ||
    { fail "pack carried a removed document's name"; cat "$TMP/o" "$TMP/o2"; }
for r in 1 2; do
    SOURCE_DATE_EPOCH=1700000000 "$KVZ" pack --store "$N/both" --all -o "$N/all$r.tar.zst" --quiet || fail "pack --all of two names"
done
"$KVZ" export --store "$N/both" "$N/notes/secret-draft.txt" -o "$N/first.kvz" --quiet &&
    mkdir "$N/y" && tar --zstd -xf "$N/all1.tar.zst" -C "$N/y" && cmp -s "$N/all1.tar.zst" "$N/all2.tar.zst" &&
    cmp -s "$N"/y/artifacts/*.kvz "$N/first.kvz" &&
    ok "pack --all of both names: the artifact as stored, the bundle the same bytes twice" ||
    fail "pack --all of two names of one content"

# ---- unpack of many documents: a run of them to a transaction ------------------------------
# A commit syncs the disk twice; a document to a transaction made a bundle of 10,000 small
# documents take 58 s to unpack, nearly all of it waiting on syncs (3.8 s now). 300 documents
# of one content: their records in two transactions, not 300 (LMDB's transaction ids count them).
W="$TMP/many"
mkdir -p "$W/docs"
python3 -c 'import sys
for i in range(300): open("%s/d%03d.txt" % (sys.argv[1], i), "w").write("One line of a many-times copied note.\n")' "$W/docs"
"$KVZ" compile "$W/docs" --store "$W/s" --model "$MODEL" --method recent --quiet &&
    "$KVZ" pack --store "$W/s" --all -o "$W/b.tar.zst" --quiet &&
    "$KVZ" unpack "$W/b.tar.zst" --store "$W/u" >"$TMP/o" 2>&1 &&
    grep -q "300 form(s) added" "$TMP/o" && "$KVZ" verify --store "$W/u" >/dev/null &&
    txns=$(mdb_stat -e "$W/u" | sed -n 's/.*Last transaction ID: *//p') && [ "$txns" -lt 20 ] &&
    ok "unpack of 300 documents: $txns transactions, the store verified" ||
    { fail "unpack of 300 documents: ${txns:-?} transactions"; cat "$TMP/o"; }

# ---- kill -9 during unpack, again and again: the store stays valid -----------------------
K="$TMP/k"
kills=${KVZ_KILLS:-20}
i=0
while [ $i -lt "$kills" ]; do
    "$KVZ" unpack "$TMP/b.tar.zst" --store "$K" --quiet >/dev/null 2>&1 &
    pid=$!
    sleep "$(python3 -c "print(0.05 + (($i * 7919) % 23) * 0.03)")"
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    if [ -e "$K/data.mdb" ] && ! "$KVZ" verify --store "$K" >"$TMP/o" 2>&1; then
        fail "verify after kill $i"; cat "$TMP/o"; break
    fi
    i=$((i + 1))
done
[ $i -eq "$kills" ] && ok "$kills kill -9 during unpack: the store verified after each"
"$KVZ" unpack "$TMP/b.tar.zst" --store "$K" --quiet >/dev/null 2>&1 && "$KVZ" verify --store "$K" >/dev/null 2>&1 \
    && [ "$("$KVZ" ls --store "$K" | grep -c " seg ")" -eq 7 ] && ok "unpack after the kills completes the store" \
    || fail "unpack after kills"

finish ship
