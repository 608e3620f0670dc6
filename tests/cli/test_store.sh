#!/bin/sh
# kvz compile / ls / inspect / verify against a real store on disk: content
# addressing, kill -9 and resume, corruption found by verify, mdb_stat, and
# the exit codes of bad input. Needs KVZ_BIN and KVZ_MODEL.
. tests/cli_lib.sh

# a corpus of eight short real documents, one binary file, one empty file, one
# of control bytes the tokenizer drops (no token)
mkdir -p "$TMP/corpus/notes"
python3 - "$TMP/corpus" <<'PY'
import sys
src = open("tests/data/python_datamodel.txt", encoding="utf-8").read().split("\n\n")
paras = [p for p in src if len(p) > 200][:8]
for i, p in enumerate(paras):
    folder = "notes/" if i % 2 else ""
    open(f"{sys.argv[1]}/{folder}doc{i}.txt", "w").write(p + "\n")
open(f"{sys.argv[1]}/image.bin", "wb").write(b"\x89PNG\x00\x00\x01\x02")
open(f"{sys.argv[1]}/blank.txt", "w").write("   \n")
open(f"{sys.argv[1]}/controls.txt", "wb").write(b"\x04\x06\x13")
PY

S="$TMP/store"
"$KVZ" compile "$TMP/corpus" --store "$S" --model "$MODEL" --method recent --json >"$TMP/out1" 2>"$TMP/err1"
rc=$?
[ $rc -eq 0 ] && ok "compile exit 0" || { fail "compile exit $rc"; cat "$TMP/err1"; }
n=$(grep -c '"status":"compiled"' "$TMP/out1")
[ "$n" -eq 8 ] && ok "8 documents compiled" || fail "$n documents compiled, expected 8"
grep -q "skip .*image.bin: contains NUL" "$TMP/err1" && ok "binary skipped with a reason" || fail "no skip warning for image.bin"
grep -q "skip .*blank.txt: empty" "$TMP/err1" && ok "empty skipped with a reason" || fail "no skip warning for blank.txt"
grep -q "skip .*controls.txt: empty (the model's tokenizer keeps none" "$TMP/err1" &&
    ok "no token: skipped as empty" || fail "no skip warning for controls.txt"

# a document reached twice (named, and in its folder) is compiled once
"$KVZ" compile "$TMP/corpus/doc0.txt" "$TMP/corpus" "$TMP/corpus/doc0.txt" --store "$TMP/twice" --model "$MODEL" \
    --method recent --json >"$TMP/o2" 2>/dev/null; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c "corpus/doc0.txt\"" "$TMP/o2")" -eq 1 ] && grep -q '"summary":{"compiled":8,' "$TMP/o2" &&
    ok "a document named twice and in its folder: compiled once" || { fail "repeated inputs: exit $rc"; cat "$TMP/o2"; }
mdb_stat -a "$S" >"$TMP/stat" && grep -q "Status of artifacts" "$TMP/stat" && ok "mdb_stat reads the store" || fail "mdb_stat"
"$KVZ" ls --store "$S" >"$TMP/ls1" && [ "$(grep -c 'recent' "$TMP/ls1")" -eq 8 ] && ok "ls lists 8" || fail "ls"
# an option of another store command is refused, not ignored
for bad in "rm --svg x.svg x" "gc --config 1" "ls --svg x.svg" "stats --dry-run" "ls --older-configs"; do
    "$KVZ" $bad --store "$S" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && grep -q "does not apply here" "$TMP/e" && ok "$bad: exit 2" || { fail "$bad: exit $rc"; cat "$TMP/e"; }
done
# output that cannot be written (a full disk) fails the run: exit 3 and the reason, not 0
if [ -w /dev/full ]; then
    "$KVZ" ls --store "$S" >/dev/full 2>"$TMP/e"; rc=$?
    [ $rc -eq 3 ] && grep -q "kvz ls: cannot write the output: No space left on device" "$TMP/e" &&
        ok "ls into a full disk: exit 3, the reason" || { fail "ls >/dev/full: exit $rc"; cat "$TMP/e"; }
    "$KVZ" query --store "$S" --model "$MODEL" --doc "$(sed -n 2p "$TMP/ls1" | cut -d' ' -f1)" --max-tokens 4 \
        "First?" "Second?" >/dev/full 2>"$TMP/e"; rc=$?
    [ $rc -eq 3 ] && [ "$(grep -c "cannot write the output" "$TMP/e")" -eq 1 ] &&
        ok "query into a full disk: exit 3, said once" || { fail "query >/dev/full: exit $rc"; cat "$TMP/e"; }
fi

# compiling again writes nothing
cp "$S/data.mdb" "$TMP/before.mdb"
"$KVZ" compile "$TMP/corpus" --store "$S" --model "$MODEL" --method recent --json >"$TMP/out2" 2>/dev/null
[ "$(grep -c '"status":"unchanged"' "$TMP/out2")" -eq 8 ] && ok "recompile: all unchanged" || fail "recompile was not a no-op"
cmp -s "$S/data.mdb" "$TMP/before.mdb" && ok "recompile: store bytes identical" || fail "recompile changed the store"

"$KVZ" inspect --store "$S" "$TMP/corpus/doc0.txt" --svg "$TMP/no/such/h.svg" >"$TMP/insp2" 2>"$TMP/e"; rc=$?
[ $rc -eq 3 ] && grep -q "cannot create '.*no/such/h.svg': No such file or directory" "$TMP/e" && ! grep -q "kept" "$TMP/insp2" &&
    ok "inspect --svg into a missing folder: exit 3, the reason, no report" || { fail "inspect svg: exit $rc"; cat "$TMP/e"; }
"$KVZ" inspect --store "$S" "$TMP/corpus/doc0.txt" --svg - >"$TMP/insp2" 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "names stdout" "$TMP/e" && [ ! -e ./- ] && ok "inspect --svg -: exit 2 (the report is on stdout)" ||
    { fail "inspect --svg -: exit $rc"; cat "$TMP/e"; }
# the heatmap's title is the name asked for (an artifact shared by two names holds the first),
# escaped as XML: a name is any bytes, and a bundle's names are another's
SX="$TMP/store-svg"
"$KVZ" compile "$TMP/corpus/doc0.txt" --store "$SX" --model "$MODEL" --method recent --quiet &&
    "$KVZ" compile - --stdin-name 'R&D <script>x</script>.txt' --store "$SX" --model "$MODEL" --method recent \
        --quiet <"$TMP/corpus/doc0.txt" &&
    "$KVZ" inspect --store "$SX" 'R&D <script>x</script>.txt' --svg "$TMP/named.svg" >/dev/null &&
    python3 -c 'import sys, xml.dom.minidom as m; t = m.parse(sys.argv[1]).getElementsByTagName("text")[0].firstChild.data; sys.exit(not t.startswith("R&D <script>x</script>.txt: kept positions"))' "$TMP/named.svg" &&
    ! grep -q "<script" "$TMP/named.svg" &&
    ok "inspect --svg: the name asked for, escaped as XML" || { fail "inspect --svg of an odd name"; head -c 600 "$TMP/named.svg"; }
# export writes the artifact under the document exported, not the name the shared artifact
# holds (the first compiled): import filed it under that other name, here one removed, and may
# replace older content under it. A store holding the first name's bytes keeps them and files
# the record under the name imported
N="$TMP/names"
mkdir -p "$N/notes" "$N/archive" && cp "$TMP/corpus/doc0.txt" "$N/notes/secret-draft.txt" &&
    cp "$TMP/corpus/doc0.txt" "$N/archive/public.txt" &&
    "$KVZ" compile "$N/notes" --store "$N/RS" --model "$MODEL" --method recent --quiet &&
    "$KVZ" compile "$N/archive" --store "$N/RS" --model "$MODEL" --method recent --quiet &&
    "$KVZ" compile "$N/notes" --store "$N/first" --model "$MODEL" --method recent --quiet &&
    "$KVZ" rm --store "$N/RS" "$N/notes/secret-draft.txt" >/dev/null &&
    "$KVZ" export --store "$N/RS" "$N/archive/public.txt" -o "$N/pub.kvz" --quiet &&
    "$KVZ" import "$N/pub.kvz" --store "$N/RAG" --model "$MODEL" >"$TMP/o" 2>&1 &&
    "$KVZ" import "$N/pub.kvz" --store "$N/first" --model "$MODEL" >>"$TMP/o" 2>&1 ||
    { fail "two names of one content: compile, export, import"; cat "$TMP/o"; }
"$KVZ" ls --store "$N/RAG" --names >"$TMP/names1" 2>&1
"$KVZ" ls --store "$N/first" --names >"$TMP/names2" 2>&1
printf '%s\n' "$N/archive/public.txt" >"$TMP/want1"
printf '%s\n' "$N/archive/public.txt" "$N/notes/secret-draft.txt" >"$TMP/want2"
cmp -s "$TMP/names1" "$TMP/want1" && cmp -s "$TMP/names2" "$TMP/want2" &&
    grep -q "pub.kvz: $N/archive/public.txt segment 1 of 1 (.*), already in the store with other bytes (.*another document name in the manifest): the store's kept$" "$TMP/o" &&
    "$KVZ" verify --store "$N/RAG" >/dev/null 2>&1 && "$KVZ" verify --store "$N/first" >/dev/null 2>&1 &&
    ok "export of a name sharing another's artifact: imported under the name exported (the store's bytes kept)" ||
    { fail "export of a shared artifact imported under another name"; cat "$TMP/o" "$TMP/names1" "$TMP/names2"; }
# an answer cut by --max-tokens inside a character (a CJK character is two tokens here) prints
# its whole characters, as --json does: it printed the character's first bytes
SZ="$TMP/store-zh"
printf '\350\200\201\344\272\272\346\257\217\345\244\251\345\216\273\346\262\263\350\276\271\351\222\223\351\261\274\343\200\202\n' >"$TMP/zh.txt"
"$KVZ" compile "$TMP/zh.txt" --store "$SZ" --model "$MODEL" --method recent --quiet &&
    for n in 1 2 3; do
        "$KVZ" query --store "$SZ" --model "$MODEL" --doc "$TMP/zh.txt" --max-tokens $n \
            "$(printf '\350\200\201\344\272\272\345\201\232\344\273\200\344\271\210\357\274\237')" 2>/dev/null
    done >"$TMP/zh.out" &&
    python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$TMP/zh.out" &&
    [ "$(wc -l <"$TMP/zh.out")" -eq 3 ] &&
    ok "answers cut inside a character: whole characters printed" || { fail "answer cut inside a character"; od -c "$TMP/zh.out" | head; }
# eval finds an --svg it cannot write before its work, not after it
"$KVZ" eval --model "$MODEL" --svg "$TMP/no/such/e.svg" --quiet >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 3 ] && grep -q "no/such/e.svg" "$TMP/e" && ok "eval --svg into a missing folder: exit 3 before any work" ||
    { fail "eval --svg missing folder: exit $rc"; cat "$TMP/e"; }

# a value group past the head size (64) is the whole head: the configuration of 64, found unchanged
"$KVZ" compile "$TMP/corpus/doc0.txt" --store "$S" --model "$MODEL" --method recent --value-group 65 --json \
    >"$TMP/o7" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q '"status":"unchanged"' "$TMP/o7" && ok "--value-group 65 on 64-channel heads: as 64, unchanged" ||
    { fail "--value-group 65: exit $rc"; cat "$TMP/o7" "$TMP/e"; }
# the same content under a second name shares the first one's artifacts and says so
mkdir -p "$TMP/twins"
cp "$TMP/corpus/doc0.txt" "$TMP/twins/a.txt"
cp "$TMP/corpus/doc0.txt" "$TMP/twins/b.txt"
"$KVZ" compile "$TMP/twins" --store "$TMP/s6" --model "$MODEL" --method recent --json >"$TMP/o6" 2>"$TMP/e6"
grep 'twins/b.txt' "$TMP/o6" | grep -q '"status":"compiled","tokens":[0-9]*,"segments":1,"shared_segments":1,.*"kept_fraction":null' &&
    grep -q "b.txt: .*content compiled before: its .* KB of artifacts were already in the store" "$TMP/e6" &&
    ok "a second copy shares the first one's artifacts, reported so" || { fail "copy under another name"; cat "$TMP/o6" "$TMP/e6"; }
# bytes the vocabulary has no token for (SmolLM2: 0x04, 0xf1) are left out of the artifacts: said
mkdir -p "$TMP/untok"
printf 'A control \004 byte and a plane-4 letter \361\200\200\200 here.\n' >"$TMP/untok/a.txt"
"$KVZ" compile "$TMP/untok" --store "$TMP/untok_s" --model "$MODEL" --method recent --json >"$TMP/untok.o" 2>"$TMP/untok.e"
rc=$?
[ $rc -eq 0 ] && grep -q '"untokenized_bytes":2,' "$TMP/untok.o" && grep -q '"untokenized_bytes":0,' "$TMP/o6" &&
    grep -q "^note .*a.txt: 2 byte(s) left out of its artifacts: the model's vocabulary has no token for them (the first 0x04)" \
        "$TMP/untok.e" &&
    ok "bytes without a token: counted and said" || { fail "bytes without a token: exit $rc"; cat "$TMP/untok.o" "$TMP/untok.e"; }
# said under --quiet too; not known of a document found unchanged (not tokenized again)
rm "$TMP/untok_s"/*.mdb
"$KVZ" compile "$TMP/untok" --store "$TMP/untok_s" --model "$MODEL" --method recent --quiet 2>"$TMP/untok.e"; rc=$?
"$KVZ" compile "$TMP/untok" --store "$TMP/untok_s" --model "$MODEL" --method recent --json >"$TMP/untok.o" 2>/dev/null
[ $rc -eq 0 ] && [ "$(grep -c . "$TMP/untok.e")" -eq 1 ] && grep -q "^note .*a.txt: 2 byte(s) left out" "$TMP/untok.e" &&
    grep -q '"status":"unchanged",.*"untokenized_bytes":null,' "$TMP/untok.o" &&
    ok "bytes without a token: a note under --quiet, null when unchanged" ||
    { fail "bytes without a token under --quiet / unchanged: exit $rc"; cat "$TMP/untok.e" "$TMP/untok.o"; }
# and of a question or a prompt: query (its JSON too) and generate say so; a question without any: nothing
"$KVZ" query --store "$TMP/untok_s" --model "$MODEL" --doc "$TMP/untok/a.txt" --max-tokens 1 \
    "$(printf 'What \004 is \361\200\200\200 here?')" >/dev/null 2>"$TMP/untok.e"; rc=$?
"$KVZ" query --store "$TMP/untok_s" --model "$MODEL" --doc "$TMP/untok/a.txt" --max-tokens 1 --json \
    "$(printf 'What \004 is here?')" "What is here?" >"$TMP/untok.o" 2>/dev/null || rc=$?
"$KVZ" generate --model "$MODEL" --max-tokens 1 --prompt "$(printf 'Say \004')" >/dev/null 2>"$TMP/untok.g" || rc=$?
[ $rc -eq 0 ] && grep -q "^kvz query: note: 2 byte(s) of the question left out: the model's vocabulary has no token for them (the first 0x04)" \
        "$TMP/untok.e" && [ "$(grep -c '"untokenized_bytes":1,' "$TMP/untok.o")" -eq 1 ] &&
    [ "$(grep -c '"untokenized_bytes":0,' "$TMP/untok.o")" -eq 1 ] &&
    grep -q "^kvz generate: note: 1 byte(s) of the prompt left out" "$TMP/untok.g" &&
    ok "bytes without a token in a question or a prompt: said" ||
    { fail "bytes without a token in a question: exit $rc"; cat "$TMP/untok.e" "$TMP/untok.o" "$TMP/untok.g"; }
# a question that is not UTF-8 is refused, not noted as bytes left out
"$KVZ" generate --store "$TMP/untok_s" --doc "$TMP/untok/a.txt" --model "$MODEL" --max-tokens 1 \
    --prompt "$(printf 'When \377 lit?')" >/dev/null 2>"$TMP/untok.g"; rc=$?
[ $rc -eq 2 ] && grep -q "the question is not UTF-8" "$TMP/untok.g" && ! grep -q "left out" "$TMP/untok.g" &&
    ok "generate --doc: a question not UTF-8 refused, no note" || { fail "generate non-UTF-8 question: exit $rc"; cat "$TMP/untok.g"; }
"$KVZ" stats --store "$TMP/s6" --json >"$TMP/st6" && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
assert d['documents']==2 and d['artifacts']==1 and d['referenced_bytes']==d['artifact_bytes'], d; \
assert d['configurations_not_broken_out']==0 and len(d['by_config'])==1, d" "$TMP/st6" &&
    ok "stats: an artifact two documents share is referenced once" || { fail "stats of shared artifacts"; cat "$TMP/st6"; }

# inspect and its heatmap
"$KVZ" inspect --store "$S" "$TMP/corpus/doc0.txt" --svg "$TMP/h.svg" >"$TMP/insp" 2>&1 &&
    grep -q "kept 30" "$TMP/insp" && head -c 4 "$TMP/h.svg" | grep -q "<svg" && ok "inspect + svg" || { fail "inspect"; cat "$TMP/insp"; }

# answering from the store
DOC0="$TMP/corpus/doc0.txt"
"$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --max-tokens 12 "What is this text about?" >"$TMP/q1" 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/q1" ] && ok "query answers" || { fail "query exit $rc"; cat "$TMP/e"; }
# a first prompt of 8 tokens or fewer takes the decode product on the session's
# own backend before any longer one has sized its scratch (it crashed so)
"$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --max-tokens 4 "Hi" >"$TMP/q0" 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/q0" ] && ok "query with a two-letter question answers" || { fail "query 'Hi': exit $rc"; cat "$TMP/e"; }
# an answer cut by the reserve, not by its end or --max-tokens, says so
"$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --reserve 32 --max-tokens 100 "Describe this text in detail." \
    >"$TMP/q0" 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/q0" ] && grep -q "the answer stopped after [0-9]* tokens: .* is full (--reserve 32)" "$TMP/e" &&
    ok "an answer cut at the reserve is reported" || { fail "query --reserve 32: exit $rc"; cat "$TMP/e"; }
"$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --reserve 32 --max-tokens 100 --json "Describe this text in detail." \
    2>/dev/null | grep -q '"stopped_by":"reserve"' && "$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --max-tokens 2 \
    --json "Describe this text in detail." 2>/dev/null | grep -q '"stopped_by":"max_tokens"' &&
    ok "query --json says why each answer stopped" || fail "query --json stopped_by"
"$KVZ" generate --model "$MODEL" --prompt "Once upon a time" --ctx 12 --max-tokens 50 >/dev/null 2>"$TMP/e" &&
    grep -q "stopped after [0-9]* tokens: the context is full (--ctx)" "$TMP/e" &&
    ok "generate says when the context is full" || { fail "generate --ctx 12"; cat "$TMP/e"; }
# a NUL byte in text input is refused (exit 4), never a question or prompt cut short there
printf 'Who is it\0about?\n' | "$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" >/dev/null 2>"$TMP/e"; rc=$?
printf 'Once\0upon' >"$TMP/nul.txt"
"$KVZ" generate --model "$MODEL" --prompt-file "$TMP/nul.txt" >/dev/null 2>>"$TMP/e"; rc2=$?
printf '25276\0 190' | "$KVZ" detokenize --model "$MODEL" >/dev/null 2>>"$TMP/e"; rc3=$?
[ $rc -eq 4 ] && [ $rc2 -eq 4 ] && [ $rc3 -eq 4 ] && [ "$(grep -c "NUL byte" "$TMP/e")" -eq 3 ] &&
    ok "a NUL in a question, a prompt file or ids: exit 4, said" || { fail "NUL input: exits $rc $rc2 $rc3"; cat "$TMP/e"; }
"$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --doc "$TMP/corpus/notes/doc1.txt" --json --max-tokens 8 \
    "First question?" "Second question?" >"$TMP/q2" 2>/dev/null
[ "$(grep -c '"load_ms"' "$TMP/q2")" -eq 2 ] && grep -q '"ttft_ms"' "$TMP/q2" && ok "query --json, two documents, two answers" || fail "query --json"
grep -q '"artifact_bytes":[1-9][0-9]*,"kept_pairs":[1-9]' "$TMP/q2" && ok "query --json: bytes read and pairs loaded" \
    || fail "query --json: artifact_bytes, kept_pairs"
printf 'One?\n\nTwo?\n' | "$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --json --max-tokens 4 >"$TMP/q3" 2>/dev/null
[ "$(grep -c '"answer"' "$TMP/q3")" -eq 2 ] && ok "query reads questions from stdin" || fail "query from stdin"
printf '\357\273\277One?\n\nTwo?\n' | "$KVZ" query --store "$S" --model "$MODEL" --doc "$DOC0" --max-tokens 4 >"$TMP/q4" 2>/dev/null
[ "$(grep -c '^Q: ' "$TMP/q4")" -eq 2 ] && [ "$(grep -c '^A: ' "$TMP/q4")" -eq 2 ] && head -1 "$TMP/q4" | grep -qx 'Q: One?' &&
    ok "questions piped on stdin: Q:/A: pairs (answers told apart; a BOM dropped)" || { fail "piped questions' answers"; cat "$TMP/q4"; }
# a store that cannot be opened: said, with its exit code (0.3.9's query crashed, closing an engine of no store)
"$KVZ" query --store "$TMP/no/such/store" --model "$MODEL" --doc x "Who?" >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "kvz query: no store at" "$TMP/e" && ok "query of no store: exit 7, said" ||
    { fail "query of no store: exit $rc"; cat "$TMP/e"; }
# generate --doc: the same load path as query
"$KVZ" generate --store "$S" --model "$MODEL" --doc "$DOC0" --max-tokens 12 --prompt "What is this text about?" \
    >"$TMP/g1" 2>"$TMP/e"
rc=$?
[ $rc -eq 0 ] && cmp -s "$TMP/g1" "$TMP/q1" && ok "generate --doc answers as query does" \
    || { fail "generate --doc exit $rc"; cat "$TMP/g1" "$TMP/q1" "$TMP/e"; }
"$KVZ" generate --doc "$DOC0" --model "$MODEL" --prompt "x" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "generate --doc without --store: exit 2" || fail "generate --doc without --store: exit $rc"
"$KVZ" generate --store "$S" --doc missing.txt --model "$MODEL" --prompt "x" 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "missing.txt" "$TMP/e" && ok "generate --doc missing: exit 7" || fail "generate --doc missing: exit $rc"

"$KVZ" query --store "$S" --model "$MODEL" --doc missing.txt "Why?" 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "missing.txt" "$TMP/e" && ok "query of a missing document: exit 7" || fail "query missing: exit $rc"
"$KVZ" query --store "$S" --model "$MODEL" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "query without --doc: exit 2" || fail "query without --doc: exit $rc"

# a document compiled in segments (a large compile reserve makes them short): all of
# them do not fit a context with a large query reserve, a run of them does
SG="$TMP/segments"
"$KVZ" compile tests/data/gpl3_excerpt.txt --store "$SG" --model "$MODEL" --reserve 7700 --quiet 2>"$TMP/e" ||
    { fail "segmented compile"; cat "$TMP/e"; }
GD=tests/data/gpl3_excerpt.txt
NSEG=$("$KVZ" ls --store "$SG" --json | grep -o '"segments":[0-9]*' | head -1 | cut -d: -f2)
[ "${NSEG:-0}" -ge 3 ] && ok "a long document under a large reserve: $NSEG segments" || fail "segments: '$NSEG'"
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --reserve 7500 "What?" >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 10 ] && grep -q "segments" "$TMP/e" && ok "segments that do not fit together: exit 10, --segments named" ||
    { fail "segmented query: exit $rc"; cat "$TMP/e"; }
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 2 --reserve 7500 --max-tokens 6 --json "What?" \
    >"$TMP/q4" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q '"segments":1,' "$TMP/q4" && ok "--segments 2 loads that segment and answers" ||
    { fail "--segments 2: exit $rc"; cat "$TMP/e"; }
# segments of two cuts under the same ids (a kvz before 0.3.3 cut some documents otherwise):
# played by a record that counts 7 tokens more than its segments hold (STORE.md §2: the
# first entry's n_tokens at byte 56); verify and query say so, compile --force mends it
cp -r "$SG" "$TMP/cuts"
mdb_dump -s docs "$TMP/cuts" | python3 -c '
import sys
lines = [l for l in sys.stdin.read().split("\n") if not l.startswith("db_pagesize=")] # (mdb_load knows it not)
at = lines.index("HEADER=END") + 2 # the first value line, after its key line
v = bytearray.fromhex(lines[at].strip())
v[56:60] = (int.from_bytes(v[56:60], "little") + 7).to_bytes(4, "little")
lines[at] = " " + v.hex()
print("\n".join(lines), end="")' | mdb_load -s docs "$TMP/cuts"
"$KVZ" verify --store "$TMP/cuts" >/dev/null 2>"$TMP/e"; rc=$?
"$KVZ" query --store "$TMP/cuts" --model "$MODEL" --doc $GD --max-tokens 2 "What?" >/dev/null 2>>"$TMP/e"; rc2=$?
"$KVZ" compile $GD --store "$TMP/cuts" --model "$MODEL" --reserve 7700 --force --quiet 2>>"$TMP/e"
"$KVZ" verify --store "$TMP/cuts" >/dev/null 2>>"$TMP/e"; rc3=$?
[ $rc -eq 4 ] && [ $rc2 -eq 4 ] && [ $rc3 -eq 0 ] && [ "$(grep -c "segments of two different cuts" "$TMP/e")" -eq 2 ] &&
    ok "segments of two cuts under one record: verify and query say so (exit 4), compile --force mends them" ||
    { fail "two cuts: exit $rc $rc2 $rc3"; cat "$TMP/e"; }
# a stored artifact of other tokens under a segment's id (played by segment 3's bytes
# under segment 2's id, which verify's id check flags too; another cut's segment 2
# needs a kvz before 0.3.3): the same content compiled under another name compiles
# that segment again and writes it over, rather than taking it for its own
cp -r "$SG" "$TMP/cuts2"
mdb_dump -s docs "$TMP/cuts2" >"$TMP/docs.dump"
mdb_dump -s artifacts "$TMP/cuts2" | python3 -c '
import sys
docs = open(sys.argv[1]).read().split("\n")
rec = bytes.fromhex(docs[docs.index("HEADER=END") + 2].strip())
n_seg, summary = int.from_bytes(rec[60:64], "little"), int.from_bytes(rec[64:66], "little")
ids = [rec[66 + summary + 16 * i:82 + summary + 16 * i].hex() for i in range(n_seg)]
lines = [l for l in sys.stdin.read().split("\n") if not l.startswith("db_pagesize=")]
value = {lines[i].strip(): i + 1 for i in range(lines.index("HEADER=END") + 1, len(lines) - 1, 2)}
lines[value[ids[1]]] = lines[value[ids[2]]]
print("\n".join(lines), end="")' "$TMP/docs.dump" | mdb_load -s artifacts "$TMP/cuts2"
"$KVZ" verify --store "$TMP/cuts2" >/dev/null 2>&1; rc=$?
cp $GD "$TMP/same_text.txt"
"$KVZ" compile "$TMP/same_text.txt" --store "$TMP/cuts2" --model "$MODEL" --reserve 7700 --json --quiet >"$TMP/o" 2>"$TMP/e"
"$KVZ" verify --store "$TMP/cuts2" >/dev/null 2>>"$TMP/e"; rc2=$?
[ $rc -eq 4 ] && [ $rc2 -eq 0 ] && grep -q "\"shared_segments\":$((NSEG - 1))," "$TMP/o" &&
    ok "a stored segment of other tokens under its id: compiled again and written over, not shared" ||
    { fail "other tokens under a segment's id: verify $rc then $rc2"; cat "$TMP/o" "$TMP/e"; }
for run in "2-$NSEG" "2-"; do
    "$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments "$run" --max-tokens 2 --json "What?" \
        >"$TMP/q4" 2>"$TMP/e"; rc=$?
    [ $rc -eq 0 ] && grep -q "\"segments\":$((NSEG - 1))," "$TMP/q4" && ok "--segments $run loads the rest" ||
        { fail "--segments $run: exit $rc"; cat "$TMP/e" "$TMP/q4"; }
done
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments "$NSEG-$((NSEG + 1))" "What?" 2>"$TMP/e"; rc=$?
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments "$((NSEG + 1))" "What?" 2>>"$TMP/e"; rc2=$?
"$KVZ" generate --store "$SG" --model "$MODEL" --doc $GD --segments "$((NSEG + 1))-" --prompt "What?" 2>>"$TMP/e"; rc3=$?
[ $rc -eq 7 ] && [ $rc2 -eq 7 ] && [ $rc3 -eq 7 ] &&
    [ "$(grep -c "but its newest compiled form for this model (configuration 1) has $NSEG: 1 to $NSEG" "$TMP/e")" -eq 3 ] &&
    grep -q -- "^kvz query: segment $((NSEG + 1)) of '.*' asked for, .*first_segment $NSEG counts from 0" "$TMP/e" &&
    grep -q -- "segments $NSEG-$((NSEG + 1)) of" "$TMP/e" && grep -q -- "segments $((NSEG + 1))- of" "$TMP/e" && ok "--segments past the last: exit 7, the count said" ||
    { fail "--segments past the last: exit $rc $rc2 $rc3"; cat "$TMP/e"; }
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 2 --reserve 7500 --max-tokens 6 "What?" >"$TMP/q7" \
    2>/dev/null
"$KVZ" generate --store "$SG" --model "$MODEL" --doc $GD --segments 2 --reserve 7500 --max-tokens 6 --prompt "What?" \
    >"$TMP/g7" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/g7" ] && [ "$(cat "$TMP/g7")" = "$(cat "$TMP/q7")" ] &&
    ok "generate --segments 2 answers as query --segments 2" || { fail "generate --segments: exit $rc"; cat "$TMP/e"; }
for bad in "0" "3-2" "x" "-2" "+1" " 1" "1 " "1-+2" "1--2" ""; do
    "$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments "$bad" "What?" 2>/dev/null; rc=$?
    [ $rc -eq 2 ] || fail "--segments '$bad': exit $rc, expected 2"
done
"$KVZ" query --store "$SG" --model "$MODEL" --segments 1 --doc $GD "What?" 2>/dev/null; rc=$?
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1- --segments 2 "What?" 2>/dev/null; rc2=$?
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && ok "--segments before any --doc, twice, or not a run: exit 2" ||
    fail "--segments before --doc or twice: exit $rc $rc2"
# a second compiled form, in one segment: inspect says which form it lists, --segments
# counts the form loaded (the newest, or --config)
"$KVZ" compile $GD --store "$SG" --model "$MODEL" --ratio 0.5 --quiet 2>/dev/null
"$KVZ" inspect --store "$SG" $GD >"$TMP/i1" 2>&1
"$KVZ" inspect --store "$SG" $GD --config 1 >>"$TMP/i1" 2>&1
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 2 "What?" >/dev/null 2>"$TMP/e"; rc=$?
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --config 1 --segments 2 --max-tokens 2 "What?" >/dev/null \
    2>>"$TMP/e"; rc2=$?
# inspect lists the newest by default, as query loads it
grep -q "configuration 2 of 2" "$TMP/i1" && grep -q "configuration 1 of 2" "$TMP/i1" &&
    grep -A1 "configuration 2 of 2" "$TMP/i1" | grep -q "ratio 0.50" && [ $rc -eq 7 ] && grep -q "but its newest compiled form for this model (configuration 2) has 1: " "$TMP/e" &&
    [ $rc2 -eq 0 ] && ok "two compiled forms: inspect names the one it lists, --segments counts the one loaded" ||
    { fail "segments of two forms: exit $rc $rc2"; cat "$TMP/i1" "$TMP/e"; }
# a store that got the two forms in the other order numbers them otherwise; a form's id
# (kvz ls shows its first 8 digits) names the same form in both
SG2="$TMP/segments-other-order"
"$KVZ" compile $GD --store "$SG2" --model "$MODEL" --ratio 0.5 --quiet 2>/dev/null
"$KVZ" merge --into "$SG2" "$SG" --quiet 2>"$TMP/e" || { fail "merge of the forms"; cat "$TMP/e"; }
ID1=$("$KVZ" ls --store "$SG" --json | head -1 | sed -n 's/.*"config_id":"\([0-9a-f]*\)".*/\1/p')
SHORT=$(printf %s "$ID1" | cut -c1-8)
"$KVZ" ls --store "$SG" >"$TMP/ls1" 2>&1
"$KVZ" inspect --store "$SG" $GD --config "$SHORT" >"$TMP/i2" 2>&1; rc=$?
"$KVZ" inspect --store "$SG2" $GD --config "$ID1" >>"$TMP/i2" 2>&1; rc2=$?
"$KVZ" query --store "$SG2" --model "$MODEL" --doc $GD --config "$SHORT" --segments 2 --max-tokens 2 "What?" \
    >"$TMP/q8" 2>"$TMP/e"; rc3=$?
"$KVZ" generate --store "$SG2" --model "$MODEL" --doc $GD --config "$SHORT" --segments 2 --max-tokens 2 \
    --prompt "What?" >/dev/null 2>>"$TMP/e"; rc4=$?
"$KVZ" export --store "$SG" $GD --config 1 --segment 2 -o "$TMP/x1.kvz" --quiet 2>>"$TMP/e"
"$KVZ" export --store "$SG2" $GD --config "$SHORT" --segment 2 -o "$TMP/x2.kvz" --quiet 2>>"$TMP/e"
[ ${#ID1} -eq 16 ] && grep -q "^$GD  *1 $SHORT  " "$TMP/ls1" && [ $rc -eq 0 ] && [ $rc2 -eq 0 ] &&
    grep -q "configuration 1 of 2, id $SHORT" "$TMP/i2" && grep -q "configuration 2 of 2, id $SHORT" "$TMP/i2" &&
    [ "$(grep -c "reserve 7700" "$TMP/i2")" -eq 2 ] && [ $rc3 -eq 0 ] && [ $rc4 -eq 0 ] && cmp -s "$TMP/x1.kvz" "$TMP/x2.kvz" &&
    ok "--config ID: the same form in two stores that number it 1 and 2 (inspect, query, generate, export)" ||
    { fail "--config ID: '$ID1' exit $rc $rc2 $rc3 $rc4"; cat "$TMP/ls1" "$TMP/i2" "$TMP/e"; }
"$KVZ" inspect --store "$SG" $GD --config 00000000 >/dev/null 2>"$TMP/e"; rc=$?
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --config 00000000 "What?" >/dev/null 2>>"$TMP/e"; rc2=$?
[ $rc -eq 7 ] && [ $rc2 -eq 7 ] && [ "$(grep -c "has no configuration 00000000 (see kvz ls)" "$TMP/e")" -eq 2 ] &&
    ok "--config of an id the document lacks: exit 7, said" || { fail "--config 00000000: exit $rc $rc2"; cat "$TMP/e"; }
# a document whose content changed is one content again: its forms of other configurations
# go with the earlier content, and compile says so (a --config ID pinned to one of them is gone)
mkdir -p "$TMP/changing"
sed -n 1,12p tests/data/gpl3_excerpt.txt >"$TMP/changing/d.txt"
"$KVZ" compile "$TMP/changing/d.txt" --store "$TMP/sc" --model "$MODEL" --method recent --quiet 2>/dev/null
"$KVZ" compile "$TMP/changing/d.txt" --store "$TMP/sc" --model "$MODEL" --method recent --ratio 0.5 --quiet 2>/dev/null
echo "A sentence added." >>"$TMP/changing/d.txt"
"$KVZ" compile "$TMP/changing/d.txt" --store "$TMP/sc" --model "$MODEL" --method recent --json >"$TMP/o" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q '"dropped_forms":1,' "$TMP/o" &&
    grep -q "changed: its 1 compiled form(s) of other configurations went with the earlier content" "$TMP/e" &&
    [ "$("$KVZ" ls --store "$TMP/sc" | grep -c " recent ")" -eq 1 ] &&
    ok "changed content: its other forms dropped, and said (text and --json)" ||
    { fail "changed content: exit $rc"; cat "$TMP/o" "$TMP/e"; }
for bad in 0 01 +1 " 1" abcdef1 1234567g 0123456789abcdef0 -1 "" 1x; do
    "$KVZ" inspect --store "$SG" $GD --config "$bad" >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ] || fail "--config '$bad': exit $rc, expected 2"
done
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD "What?" " " >"$TMP/o" 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "question 2 is empty" "$TMP/e" && [ ! -s "$TMP/o" ] && ok "an empty question: exit 2 before any answer" ||
    { fail "empty question: exit $rc"; cat "$TMP/o" "$TMP/e"; }
# ls and stats count the document's tokens once, not once per compiled form
"$KVZ" ls --store "$SG" >"$TMP/ls2" 2>&1
"$KVZ" stats --store "$SG" >>"$TMP/ls2" 2>&1
GT=$(grep -o '[0-9]* tok ' "$TMP/ls2" | tail -1 | cut -d' ' -f1) # the newest form's count (a segmented one counts a few more)
grep -q "^1 document(s) of $GT tokens in 2 form(s)" "$TMP/ls2" && grep -q "1 document(s) of $GT tokens, 2 form(s)" "$TMP/ls2" &&
    ok "ls and stats: one document of $GT tokens in two forms" || { fail "ls/stats totals"; cat "$TMP/ls2"; }
# more threads than CPUs: a warning once the command line parsed, none before a usage error
MORE=$(($(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) + 1)) # the CPUs this process may use
"$KVZ" query --store "$SG" --model "$MODEL" --threads $MORE --bogus "Hi" >/dev/null 2>"$TMP/e"; rc=$?
"$KVZ" query --store "$SG" --model "$MODEL" --threads $MORE --doc $GD --segments 1 --max-tokens 1 "Hi" >/dev/null \
    2>"$TMP/e2"; rc2=$?
[ $rc -eq 2 ] && ! grep -q "warning: --threads" "$TMP/e" && [ $rc2 -eq 0 ] &&
    grep -q "warning: --threads $MORE is more than" "$TMP/e2" && ok "--threads above the CPUs: warned after parsing" ||
    { fail "--threads warning: exit $rc $rc2"; cat "$TMP/e" "$TMP/e2"; }
# a one-token answer has no decode rate (null), a longer one has (any positive
# rate: a loaded machine decodes under 1 token/s)
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --max-tokens 1 --json "Hi" "Hi there" >"$TMP/q6" 2>&1
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --max-tokens 3 --json "Hi" >>"$TMP/q6" 2>&1
[ "$(grep -c '"decode_tok_s":null' "$TMP/q6")" -eq 2 ] && tail -1 "$TMP/q6" | grep -Eq '"decode_tok_s":([1-9]|0\.[0-9]*[1-9])' &&
    ok "decode_tok_s: null for one token, a rate for three" || { fail "decode_tok_s"; cat "$TMP/q6"; }
# one question too long for the reserve is reported; the others are answered (exit 10)
printf 'Who?\n%s\nWhat license?\n' "$(printf 'word %.0s' $(seq 40))" |
    "$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --reserve 40 --max-tokens 3 --json \
    >"$TMP/q5" 2>"$TMP/e"; rc=$?
[ $rc -eq 10 ] && [ "$(grep -c '"answer"' "$TMP/q5")" -eq 2 ] && [ "$(grep -c '"error"' "$TMP/q5")" -eq 1 ] &&
    grep -q "reserved" "$TMP/e" && ok "a question too long for the reserve: said, the next answered, exit 10" ||
    { fail "too-long question in a batch: exit $rc"; cat "$TMP/q5" "$TMP/e"; }
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --reserve 40 --max-tokens 3 "Who?" \
    "$(printf 'word %.0s' $(seq 40))" >"$TMP/q5" 2>/dev/null; rc=$?
[ $rc -eq 10 ] && [ "$(grep -c '^A: ' "$TMP/q5")" -eq 2 ] && grep -q '^A: (not answered)$' "$TMP/q5" &&
    ok "the transcript says which question was not answered" || { fail "too-long question, text: exit $rc"; cat "$TMP/q5"; }
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --reserve 40 --json "$(printf 'word %.0s' $(seq 40))" \
    >/dev/full 2>"$TMP/e"; rc=$?
[ $rc -eq 3 ] && grep -q "cannot write the output" "$TMP/e" && ok "its error record unwritable: exit 3, said" ||
    { fail "too-long question into /dev/full: exit $rc"; cat "$TMP/e"; }
# a question on stdin that is not UTF-8 is reported like one too long, and a line of spaces skipped;
# on the command line, either is refused before the first answer
printf 'Who?\nBa\377d?\n   \nWhat license?\n' |
    "$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --max-tokens 2 --json >"$TMP/q5" 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && [ "$(grep -c '"answer"' "$TMP/q5")" -eq 2 ] && [ "$(grep -c '"error":"the question is not UTF-8' "$TMP/q5")" -eq 1 ] &&
    python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$TMP/q5" &&
    ok "stdin: a question not UTF-8 reported as an object, a blank line skipped, the rest answered, exit 2" ||
    { fail "stdin question not UTF-8: exit $rc"; cat "$TMP/q5" "$TMP/e"; }
"$KVZ" query --store "$SG" --model "$MODEL" --doc $GD --segments 1 --max-tokens 2 --json "Who?" "$(printf 'Ba\377d?')" \
    >"$TMP/q5" 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && [ ! -s "$TMP/q5" ] && grep -q "question 2 is not UTF-8" "$TMP/e" &&
    ok "argv: a question not UTF-8 refused before any answer (exit 2)" || { fail "argv question not UTF-8: exit $rc"; cat "$TMP/q5" "$TMP/e"; }

# kill -9 in the middle of a compile, then resume: verify passes, only the rest is compiled
S2="$TMP/store2"
"$KVZ" compile "$TMP/corpus" --store "$S2" --model "$MODEL" --method kvzip --quiet 2>/dev/null &
pid=$!
i=0
while [ $i -lt 600 ]; do # wait until at least one document is in, then kill
    if [ -f "$S2/data.mdb" ] && "$KVZ" ls --store "$S2" 2>/dev/null | grep -q "^1 document\|^[2-7] document"; then break; fi
    sleep 0.1; i=$((i + 1))
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
"$KVZ" verify --store "$S2" >"$TMP/v1" 2>&1 && ok "verify after kill -9" || { fail "verify after kill -9"; cat "$TMP/v1"; }
done_before=$("$KVZ" ls --store "$S2" | grep -c kvzip)
"$KVZ" compile "$TMP/corpus" --store "$S2" --model "$MODEL" --method kvzip --json >"$TMP/out3" 2>/dev/null
unchanged=$(grep -c '"status":"unchanged"' "$TMP/out3"); compiled=$(grep -c '"status":"compiled"' "$TMP/out3")
if [ "$done_before" -ge 1 ] && [ "$unchanged" -eq "$done_before" ] && [ $((unchanged + compiled)) -eq 8 ]; then
    ok "resume: $unchanged kept from before the kill, $compiled compiled"
else
    fail "resume: $done_before done before the kill, then $unchanged unchanged and $compiled compiled"
fi
"$KVZ" verify --store "$S2" >/dev/null 2>&1 && ok "verify after resume" || fail "verify after resume"

# SIGTERM (or SIGINT, or SIGHUP) in the middle of a compile: it says where it stopped and
# what the store keeps (a nightly job's log), and ends by the signal
S3="$TMP/store3"
"$KVZ" compile "$TMP/corpus" --store "$S3" --model "$MODEL" --method kvzip --json >"$TMP/term.out" 2>"$TMP/term.err" &
pid=$!
i=0
while [ $i -lt 600 ]; do
    if [ -f "$S3/data.mdb" ] && "$KVZ" ls --store "$S3" 2>/dev/null | grep -q "^1 document\|^[2-7] document"; then break; fi
    sleep 0.1; i=$((i + 1))
done
kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
in_store=$("$KVZ" ls --store "$S3" | grep -c kvzip)
said=$(sed -n 's/^kvz compile: interrupted at .* (document [0-9]* of 11); before it \([0-9]*\) compiled and 0 unchanged, which the store keeps, .*: the same command goes on from that document (a long one at its first segment not stored)$/\1/p' "$TMP/term.err")
# --json: every line whole, the last one the summary of an interrupted run (the same count)
json_ok=$(python3 - "$TMP/term.out" "$said" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
s = lines[-1].get("summary", {})
docs = [l for l in lines[:-1] if l.get("status") == "compiled"]
print(int(s.get("interrupted") is True and "interrupted_at" in s and str(s["compiled"]) == sys.argv[2]
          # the summary counts a document stored whose line a signal cut off
          and len(docs) in (s["compiled"], s["compiled"] - 1)
          and sum(s[k] for k in ("compiled", "unchanged", "skipped", "failed", "not_attempted")) == 11
          and all("summary" not in l for l in lines[:-1])))
PY
)
[ $rc -eq 143 ] && [ -n "$said" ] && [ "$said" -ge 1 ] && [ "$said" -le "$in_store" ] && [ "$json_ok" = 1 ] &&
    "$KVZ" verify --store "$S3" >/dev/null 2>&1 &&
    ok "SIGTERM mid-compile: '$said compiled before it' said (and in --json's summary), $in_store in the store, exit by the signal" ||
    { fail "SIGTERM mid-compile: exit $rc, said '$said', $in_store in the store, json $json_ok"; cat "$TMP/term.err" "$TMP/term.out"; }

# SIGPIPE while a stored document's line is written (`| head -1`): the note counts it
mkdir -p "$TMP/pipe_docs" && for n in 1 2 3; do printf 'Note %s: the ferry leaves at %s.\n' $n $n >"$TMP/pipe_docs/n$n.txt"; done
"$KVZ" compile "$TMP/pipe_docs" --store "$TMP/pipe_store" --model "$MODEL" --threads 1 --json 2>"$TMP/pipe.err" | head -1 >/dev/null
in_store=$("$KVZ" ls --store "$TMP/pipe_store" --names | wc -l)
grep -q "interrupted at .*n3.txt (document 3 of 3); before it 2 compiled" "$TMP/pipe.err" && [ "$in_store" -eq 2 ] &&
    ok "SIGPIPE as the second document's line is written: '2 compiled' said, 2 in the store" ||
    { fail "SIGPIPE mid-compile: $in_store in the store"; cat "$TMP/pipe.err"; }

# --config N numbers each document's forms in its own order: documents loaded in other
# configurations are said (stderr), and --json names each one's form
PS="$TMP/pipe_store"
"$KVZ" compile "$TMP/pipe_docs/n1.txt" --store "$PS" --model "$MODEL" --threads 1 --method snapkv --ratio 0.5 --quiet &&
    "$KVZ" compile "$TMP/pipe_docs/n3.txt" --store "$PS" --model "$MODEL" --threads 1 --method snapkv --ratio 0.5 --quiet &&
    "$KVZ" compile "$TMP/pipe_docs/n3.txt" --store "$PS" --model "$MODEL" --threads 1 --quiet || fail "the forms' store"
"$KVZ" query --store "$PS" --model "$MODEL" --doc "$TMP/pipe_docs/n1.txt" --doc "$TMP/pipe_docs/n3.txt" --config 1 \
    --json --max-tokens 1 "When?" >"$TMP/o" 2>"$TMP/e"; rc=$?
forms=$(python3 -c 'import json, sys; print(";".join("%d %s" % (f["config"], f["summary"]) for f in json.loads(open(sys.argv[1]).read())["forms"]))' "$TMP/o" 2>&1)
[ $rc -eq 0 ] && [ "$forms" = "1 kvzip pair ratio 0.30, 4-bit;1 snapkv ratio 0.50, 4-bit" ] &&
    grep -q "^kvz query: the documents were loaded in other configurations: .*n1.txt as kvzip pair ratio 0.30, 4-bit (form 1, [0-9a-f]\{16\}); .*n3.txt as snapkv ratio 0.50, 4-bit (form 1, " "$TMP/e" &&
    "$KVZ" query --store "$PS" --model "$MODEL" --doc "$TMP/pipe_docs/n1.txt" --doc "$TMP/pipe_docs/n2.txt" \
        --config 1 --max-tokens 1 "When?" >/dev/null 2>"$TMP/e2" && ! grep -q "other configurations" "$TMP/e2" &&
    ok "query --config 1 over documents of other configurations: said, each form in --json; one configuration: nothing said" ||
    { fail "mixed forms: exit $rc, forms '$forms'"; cat "$TMP/e" "$TMP/e2"; }

# a long document's segments are stored as they are done: one interrupted after its first
# segment goes on from the next (a book is minutes a segment), and it is listed only when whole
S4="$TMP/store4"
python3 -c 'import random; random.seed(7); w="the river stone light of house blue walk under over slowly".split(); print(" ".join(random.choice(w) for _ in range(2600)))' >"$TMP/book.txt"
"$KVZ" compile "$TMP/book.txt" --store "$S4" --model "$MODEL" --method snapkv --reserve 7000 >/dev/null 2>"$TMP/book.err" &
pid=$!
i=0
while [ $i -lt 1200 ]; do
    "$KVZ" stats --store "$S4" --json 2>/dev/null | grep -q '"documents":0,.*"artifacts":[1-9]' && break
    sleep 0.1; i=$((i + 1))
done
kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
"$KVZ" ls --store "$S4" >"$TMP/book.ls" 2>&1
"$KVZ" compile "$TMP/book.txt" --store "$S4" --model "$MODEL" --method snapkv --reserve 7000 --json \
    >"$TMP/book.json" 2>"$TMP/book.err2"
[ $rc -eq 143 ] && grep -q "^0 document" "$TMP/book.ls" &&
    grep -q '"status":"compiled","tokens":[0-9]*,"segments":[3-9],"shared_segments":[1-9]' "$TMP/book.json" &&
    { grep -q "of its segments were in the store already (an interrupted run's" "$TMP/book.err2" ||
        grep -q "content compiled before: its .* KB of artifacts were already in the store" "$TMP/book.err2"; } &&
    "$KVZ" verify --store "$S4" >/dev/null 2>&1 &&
    ok "a long document interrupted after a segment: not listed, then goes on from the next segment" ||
    { fail "long document resumed by the segment: exit $rc"; cat "$TMP/book.err" "$TMP/book.ls" "$TMP/book.json" "$TMP/book.err2"; }

# a flipped byte inside an artifact is found
cp -r "$S" "$TMP/broken"
python3 - "$TMP/broken/data.mdb" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
at = data.find(b"KVZART\r\n", 200000)
data[at + 5000] ^= 0x40
open(sys.argv[1], "wb").write(data)
PY
"$KVZ" verify --store "$TMP/broken" >/dev/null 2>"$TMP/v2"
rc=$?
[ $rc -eq 4 ] && grep -q "checksum" "$TMP/v2" && ok "verify finds a flipped byte (exit 4)" || { fail "verify exit $rc"; cat "$TMP/v2"; }
# --json: the same problems as objects on stdout, the hint apart, a summary line last
"$KVZ" verify --store "$TMP/broken" --json >"$TMP/vj" 2>"$TMP/vje"; rc=$?
[ $rc -eq 4 ] && python3 - "$TMP/vj" <<'PY' && ok "verify --json: the damaged artifact, its document's hint, the summary" ||
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
problems, last = lines[:-1], lines[-1]
art = [p for p in problems if "artifact" in p]
hint = [p for p in problems if "document" in p and "hint" in p]
assert len(art) == 1 and "checksum" in art[0]["problem"] and len(art[0]["artifact"]) == 32, problems
assert len(hint) == 1 and art[0]["artifact"] in hint[0]["hint"] and "compile --force" in hint[0]["hint"], problems
assert last == {"artifacts": last["artifacts"], "shared_prefixes": 1, "documents": 8, "problems": 1}, last
PY
    { fail "verify --json: exit $rc"; cat "$TMP/vj" "$TMP/vje"; }
# stats does not count the damaged artifact as 0 bytes of f16 cache: it says so, exit 4
"$KVZ" stats --store "$TMP/broken" --json >"$TMP/o7" 2>"$TMP/e"; rc=$?
[ $rc -eq 4 ] && grep -q "cannot be read" "$TMP/e" &&
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); g=d['by_config'][0]; assert d['unreadable']==1 and g['unreadable']==1 and g['vs_f16_full']>3 and g['documents']==d['documents']==8" "$TMP/o7" &&
    ok "stats over a damaged artifact: counted unreadable, left out of vs_f16_full, exit 4" || { fail "stats of a damaged store: exit $rc"; cat "$TMP/o7" "$TMP/e"; }
# verify names the document whose artifact is damaged; compile --force of it rebuilds it
bad_doc=$(sed -n "s/^document '\(.*\)': its artifact [0-9a-f]* is damaged (kvz compile --force .*/\1/p" "$TMP/v2")
"$KVZ" compile "$bad_doc" --force --store "$TMP/broken" --model "$MODEL" --method recent --json >"$TMP/o7" 2>/dev/null
rc=$?
[ -n "$bad_doc" ] && [ $rc -eq 0 ] && grep -q '"status":"compiled"' "$TMP/o7" &&
    "$KVZ" verify --store "$TMP/broken" >/dev/null 2>&1 && ok "verify names the damaged document; compile --force rebuilds it" ||
    { fail "rebuilding a damaged artifact ('$bad_doc'): exit $rc"; cat "$TMP/v2" "$TMP/o7"; }
# one flipped bit in the structure of data.mdb's first pages (page headers, the first node),
# and in the sizes of a leaf page's first node (its key's, its value's): LMDB trusts its pages
# and faulted on some (a segfault of ls and verify), and handed back keys and values that lay
# past the end of the file (a fault in kvz reading them); kvz says the store is damaged
# (exit 4), or reads what it can (exit 0), never a crash or a hang
python3 - "$S/data.mdb" "$KVZ" "$TMP/flip" <<'PY' >"$TMP/flips" 2>&1
import collections, os, subprocess, sys
src, kvz, work = sys.argv[1:]
data = open(src, "rb").read()
os.makedirs(work, exist_ok=True)
seen, bad = collections.Counter(), []
def flip(at, bit, commands):
    d = bytearray(data); d[at] ^= bit
    open(os.path.join(work, "data.mdb"), "wb").write(d)
    for command in commands:
        r = subprocess.run(["timeout", "20", kvz, command, "--store", work], capture_output=True)
        seen[r.returncode] += 1
        if r.returncode not in (0, 4) or (r.returncode == 4 and not r.stderr):
            bad.append("%s: byte %d ^%#x: exit %d %s" % (command, at, bit, r.returncode, r.stderr[-160:]))
leaves = 0
for page in range(2, min(len(data) // 4096, 40)):
    for at, bit in ((12, 0x10), (12, 0x80), (20, 0x10), (20, 0x80)):
        flip(page * 4096 + at, bit, ["ls"])
for page in range(2, len(data) // 4096):
    base = page * 4096
    flags, lower = int.from_bytes(data[base + 10:base + 12], "little"), int.from_bytes(data[base + 12:base + 14], "little")
    if flags != 0x02 or lower <= 16 or leaves >= 60: # a leaf page (LMDB's P_LEAF) with a node
        continue
    leaves += 1
    node = base + int.from_bytes(data[base + 16:base + 18], "little") # its first node: sizes, flags, key size
    for at in (node + 3, node + 7): # the value's size, the key's: their high bits
        flip(at, 0x80, ["ls", "verify"])
print("exits:", dict(seen))
print("\n".join(bad[:5]))
if not seen[4]:
    print("no flip reached a damaged-store path: the check tests nothing")
sys.exit(1 if bad or not seen[4] else 0)
PY
[ $? -eq 0 ] && ok "one-bit flips in data.mdb's first pages: $(head -1 "$TMP/flips"), no crash" ||
    { fail "flips in data.mdb"; cat "$TMP/flips"; }
# a receiver without the sources mends it from a good copy: unpack of a bundle that
# holds it, or merge of a store that does (a second unpack alone changed nothing)
"$KVZ" pack --store "$S" --all -o "$TMP/good.tar.zst" >/dev/null 2>&1
cp -r "$S" "$TMP/broken1"; cp -r "$S" "$TMP/broken2"
python3 - "$TMP/broken1/data.mdb" "$TMP/broken2/data.mdb" <<'PY'
import sys
for p in sys.argv[1:]: # the flip above
    data = bytearray(open(p, "rb").read())
    at = data.find(b"KVZART\r\n", 200000)
    assert at > 0, "no artifact past 200000 bytes"
    data[at + 5000] ^= 0x40
    open(p, "wb").write(data)
PY
for how in unpack merge; do
    [ $how = unpack ] && dst="$TMP/broken1" || dst="$TMP/broken2"
    "$KVZ" verify --store "$dst" >/dev/null 2>&1; rc=$?
    if [ $how = unpack ]; then
        "$KVZ" unpack "$TMP/good.tar.zst" --store "$dst" >"$TMP/o9" 2>&1
    else
        "$KVZ" merge "$S" --into "$dst" >"$TMP/o9" 2>&1
    fi
    [ $rc -eq 4 ] && grep -q "damaged artifact(s) replaced by" "$TMP/o9" && "$KVZ" verify --store "$dst" >/dev/null 2>&1 &&
        ok "$how of a good copy mends a damaged artifact" || { fail "$how over a damaged artifact (verify before: $rc)"; cat "$TMP/o9"; }
done
# a damaged size in the node of a stored artifact (16 MiB more than the file holds): LMDB
# hands it on as it is, and reading that much would run past the file's end (a fault);
# kvz compares it with the artifact's header before reading on. verify names the
# document, ls reads the rest, stats counts it unreadable (exit 4), export refuses it
# (exit 4), and unpack of a good copy mends it
cp -r "$S" "$TMP/broken3"
"$KVZ" ls --store "$S" --json | head -1 >"$TMP/first.json"
python3 - "$TMP/broken3/data.mdb" "$TMP/first.json" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
key = bytes.fromhex(json.load(open(sys.argv[2]))["artifacts"][0])
at, nodes = data.find(key), 0
while at >= 0:  # a leaf node: u16 size low, u16 size high, u16 flags (1: on overflow pages), u16 key size, key;
    lo, hi, flags, ksize = struct.unpack_from("<HHHH", data, at - 8)  # every copy (freed pages keep old ones)
    if ksize == 16 and flags in (0, 1):
        struct.pack_into("<H", data, at - 6, hi ^ 0x100)
        nodes += 1
    at = data.find(key, at + 1)
assert nodes, "no leaf node of the artifact"
open(sys.argv[1], "wb").write(data)
PY
[ $? -eq 0 ] || fail "no leaf node of an artifact found in data.mdb"
D3=$(sed -n 's/^{"document":"\([^"]*\)".*/\1/p' "$TMP/first.json")
"$KVZ" verify --store "$TMP/broken3" >/dev/null 2>"$TMP/v3"; rc=$?
"$KVZ" ls --store "$TMP/broken3" >/dev/null 2>>"$TMP/v3"; rc2=$?
"$KVZ" stats --store "$TMP/broken3" >/dev/null 2>>"$TMP/v3"; [ $? -eq 4 ] && [ $rc2 -eq 0 ] || rc2="$rc2/stats"
"$KVZ" export --store "$TMP/broken3" "$D3" -o "$TMP/x3.kvz" 2>>"$TMP/v3"; rc3=$?
"$KVZ" unpack "$TMP/good.tar.zst" --store "$TMP/broken3" >"$TMP/o10" 2>&1; rc4=$?
[ $rc -eq 4 ] && grep -q "document '$D3': its artifact [0-9a-f]* is damaged" "$TMP/v3" && [ "$rc2" = 0 ] &&
    grep -q "^kvz stats: 1 document(s) whose artifact cannot be read" "$TMP/v3" &&
    [ $rc3 -eq 4 ] && grep -q "^kvz export: '$D3': artifact is [0-9]* bytes but its header says" "$TMP/v3" &&
    [ ! -e "$TMP/x3.kvz" ] && [ $rc4 -eq 0 ] && grep -q "1 damaged artifact(s) replaced" "$TMP/o10" &&
    "$KVZ" verify --store "$TMP/broken3" >/dev/null 2>&1 &&
    ok "an artifact's stored size past data.mdb's end: said damaged (verify, stats, export), mended by unpack" ||
    { fail "a stored size past the file: exit $rc $rc2 $rc3 $rc4"; cat "$TMP/v3" "$TMP/o10"; }
# a flipped byte in the shared prefix (kept in the meta table) is named as such
cp -r "$S" "$TMP/broken_prefix"
mdb_dump -s meta "$TMP/broken_prefix" | python3 -c '
import sys
lines = sys.stdin.read().split("\n")
i = next(i for i, l in enumerate(lines) if l.strip().startswith(b"prefix/".hex()))
v = lines[i + 1]
lines[i + 1] = v[:len(v) // 2] + ("1" if v[len(v) // 2] == "0" else "0") + v[len(v) // 2 + 1:]
print("\n".join(lines), end="")' >"$TMP/meta.dump"
mdb_load -s meta -f "$TMP/meta.dump" "$TMP/broken_prefix" 2>/dev/null
"$KVZ" verify --store "$TMP/broken_prefix" >"$TMP/v3" 2>&1; rc=$?
[ $rc -eq 4 ] && grep -q "^shared prefix [0-9a-f]*/[0-9a-f]*: .*checksum" "$TMP/v3" && grep -q "1 shared prefix(es)" "$TMP/v3" &&
    grep -q "^shared prefix [0-9a-f]*/[0-9a-f]*: compiling any document of its model again .* writes it again" "$TMP/v3" &&
    ok "verify names a damaged shared prefix (exit 4) and what mends it" || { fail "verify of a damaged prefix: exit $rc"; cat "$TMP/v3"; }
# compiling again writes the prefix anew (with one document; the rest stay unchanged)
"$KVZ" compile "$TMP/corpus" --store "$TMP/broken_prefix" --model "$MODEL" --method recent --json >"$TMP/o8" 2>/dev/null; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '"status":"compiled"' "$TMP/o8")" -eq 1 ] && [ "$(grep -c '"status":"unchanged"' "$TMP/o8")" -eq 7 ] &&
    "$KVZ" verify --store "$TMP/broken_prefix" >/dev/null 2>&1 && ok "compiling again rewrites a damaged shared prefix" ||
    { fail "compile over a damaged prefix: exit $rc"; cat "$TMP/o8"; }

# bad input: clear messages, distinct exit codes
"$KVZ" compile /nonexistent --store "$TMP/s3" --model "$MODEL" 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q nonexistent "$TMP/e" && ok "missing input: exit 7" || fail "missing input: exit $rc"
"$KVZ" compile "$TMP/corpus" --model "$MODEL" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "no --store: exit 2" || fail "no --store: exit $rc"
case $KVZ in /*) kvz_abs=$KVZ ;; *) kvz_abs=$PWD/$KVZ ;; esac
case $MODEL in /*) model_abs=$MODEL ;; *) model_abs=$PWD/$MODEL ;; esac
(cd "$TMP" && "$kvz_abs" compile corpus --store --quiet --model "$model_abs" 2>"$TMP/e"); rc=$?
[ $rc -eq 2 ] && [ ! -e "$TMP/--quiet" ] && grep -q "store needs a value, not the option '--quiet'" "$TMP/e" &&
    ok "--store --quiet: exit 2, no folder named --quiet" || { fail "--store --quiet: exit $rc"; cat "$TMP/e"; }
"$KVZ" compile "$TMP/corpus" --store "$TMP/s3" --model "$MODEL" --ratio 1.5 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "bad ratio: exit 2" || fail "bad ratio: exit $rc"
"$KVZ" compile "$TMP/corpus" --store "$TMP/s4" --model "$MODEL" --method recent --strict --json >"$TMP/o4" 2>"$TMP/e"; rc=$?
[ $rc -eq 4 ] && grep -q "stopped at .*blank.txt: .* not attempted" "$TMP/e" && grep -q " 0 skipped, 1 failed" "$TMP/e" &&
    grep 'blank.txt' "$TMP/o4" | grep -q '"status":"failed","error":' && grep -q '"skipped":0,"failed":1' "$TMP/o4" &&
    ok "strict stops at the first unusable file (blank.txt): exit 4, counted failed, named" || { fail "strict: exit $rc"; cat "$TMP/e"; }
# a pipe that never ends is read up to --max-bytes, not whole: skipped as too large
timeout 120 sh -c "yes | '$KVZ' compile - --store '$TMP/s5' --model '$MODEL' --max-bytes 100000 --strict" \
    >/dev/null 2>"$TMP/e"; rc=$?
[ $rc -eq 4 ] && grep -q "stdin: larger than --max-bytes (100000 bytes)" "$TMP/e" && ok "an endless stdin: larger than --max-bytes, exit 4" ||
    { fail "endless stdin: exit $rc"; cat "$TMP/e"; }
# a document piped in is named by --stdin-name: the same text again is found unchanged under it
printf 'The harbour light was first lit in 1871.\n' >"$TMP/piped.txt"
"$KVZ" compile - --stdin-name feeds/light.txt --store "$TMP/s6" --model "$MODEL" --method recent --quiet <"$TMP/piped.txt" 2>"$TMP/e" &&
"$KVZ" compile - --stdin-name feeds/light.txt --store "$TMP/s6" --model "$MODEL" --method recent --json <"$TMP/piped.txt" >"$TMP/o6" 2>>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && "$KVZ" ls --store "$TMP/s6" | grep -q "^feeds/light.txt " && ! "$KVZ" ls --store "$TMP/s6" | grep -q "^stdin " &&
    grep -q '"document":"feeds/light.txt","status":"unchanged"' "$TMP/o6" &&
    ok "compile - --stdin-name: the piped document under its name, unchanged the second time" ||
    { fail "stdin-name: exit $rc"; cat "$TMP/e" "$TMP/o6"; }
# an archive piped in is named as one (it was 'binary?'); a glob that selects nothing is warned of
tar -czf "$TMP/piped.tar.gz" -C "$TMP" piped.txt
"$KVZ" compile - --store "$TMP/s6" --model "$MODEL" --method recent <"$TMP/piped.tar.gz" 2>"$TMP/e"
grep -q "skip stdin: compressed or an archive.*give its path" "$TMP/e" && ok "an archive on stdin: told to give its path" ||
    { fail "archive on stdin"; cat "$TMP/e"; }
"$KVZ" compile "$TMP/corpus" --include '*.pdf' --store "$TMP/s7" --model "$MODEL" --method recent --quiet 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "no documents were found.*--include.*nothing compiled" "$TMP/e" && [ ! -e "$TMP/s7" ] &&
    ok "an --include that selects nothing: exit 7, no store made" || { fail "empty selection: exit $rc"; cat "$TMP/e"; }
# an archive's symbolic link and FIFO: said skipped, even with --strict (source tarballs hold links);
# its hard link is compiled with its target's content
mkdir -p "$TMP/tarlinks/d" && cp "$TMP/corpus/doc0.txt" "$TMP/tarlinks/d/a.txt" && ln -f "$TMP/tarlinks/d/a.txt" "$TMP/tarlinks/d/b.txt" &&
    ln -sf a.txt "$TMP/tarlinks/d/c.txt" && mkfifo "$TMP/tarlinks/d/f" && tar -C "$TMP/tarlinks" -cf "$TMP/tarlinks.tar" d
"$KVZ" compile "$TMP/tarlinks.tar" --store "$TMP/s_tarlinks" --model "$MODEL" --method recent --strict >"$TMP/o" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q "skip .*tarlinks.tar:d/c.txt: a symbolic link inside an archive" "$TMP/e" &&
    grep -q "skip .*tarlinks.tar:d/f: not a regular file" "$TMP/e" && grep -q "2 compiled, 0 unchanged, 2 skipped" "$TMP/e" &&
    ok "an archive's links and FIFO under --strict: the hard link compiled, the others said skipped, exit 0" ||
    { fail "archive links under --strict: exit $rc"; cat "$TMP/e"; }
# what Windows, macOS and Python write: UTF-8 member names (a flagged zip, a PAX tar) were refused
# as a damaged archive; in a folder, an archive that cannot be listed fails alone (it stopped the
# run, --exclude could not pass over it); a second source of one name fails instead of replacing
mkdir -p "$TMP/mixed"
python3 - "$TMP/mixed" "$TMP/corpus/doc0.txt" <<'PY'
import io, sys, tarfile, zipfile
d, text = sys.argv[1], open(sys.argv[2], 'rb').read()
with zipfile.ZipFile(d + '/photos.zip', 'w') as z:
    z.writestr('caf\u00e9.txt', text)
with tarfile.open(d + '/mac.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo('na\u00efve.txt'); ti.size = len(text); t.addfile(ti, io.BytesIO(text))
with zipfile.ZipFile(d + '/x.zip', 'w') as z:
    z.writestr('b.txt', text)
open(d + '/x.zip:b.txt', 'wb').write(text + b'Another line.\n')
open(d + '/lies.zip', 'w').write('plain text named as a zip\n')
PY
"$KVZ" compile "$TMP/mixed" --store "$TMP/s_mixed" --model "$MODEL" --method recent --json >"$TMP/o" 2>"$TMP/e"; rc=$?
names=$("$KVZ" ls --store "$TMP/s_mixed" --names)
[ $rc -eq 1 ] && printf '%s\n' "$names" | grep -qx "$TMP/mixed/photos.zip:café.txt" &&
    printf '%s\n' "$names" | grep -qx "$TMP/mixed/mac.tar:naïve.txt" &&
    grep -q "FAIL .*/mixed/lies.zip: cannot read archive .*Unrecognized archive format" "$TMP/e" &&
    grep -q "FAIL .*/mixed/x.zip:b.txt: another document of this run has this name (a member of the archive" "$TMP/e" &&
    grep -q "3 compiled, 0 unchanged, 0 skipped, 2 failed" "$TMP/e" && grep -q '"compiled":3,' "$TMP/o" &&
    [ "$("$KVZ" inspect --store "$TMP/s_mixed" "$TMP/mixed/x.zip:b.txt" --json | grep -o '"tokens":[0-9]*' | head -n1)" = \
      "$("$KVZ" inspect --store "$TMP/s_mixed" "$TMP/mixed/photos.zip:café.txt" --json | grep -o '"tokens":[0-9]*' | head -n1)" ] &&
    ok "a folder of archives from elsewhere: UTF-8 member names compiled, a bad archive and a second source of one name fail alone (exit 1)" ||
    { fail "archives from elsewhere: exit $rc"; cat "$TMP/e"; printf '%s\n' "$names"; }
# a member whose name no locale converts (a zip flagged UTF-8 holding a byte that is not): its archive
# fails, saying so (the member was passed over in silence, and --prune then took it for gone)
mkdir -p "$TMP/mixed2" && cp "$TMP/corpus/doc0.txt" "$TMP/mixed2/a.txt" &&
python3 - "$TMP/mixed2/bad.zip" <<'PY'
import io, sys, zipfile
b = io.BytesIO()
with zipfile.ZipFile(b, 'w') as z:
    z.writestr('caf\u00e9X.txt', 'flagged UTF-8 by its name\n')
open(sys.argv[1], 'wb').write(b.getvalue().replace(b'X.txt', b'\xff.txt'))
PY
"$KVZ" compile "$TMP/mixed2" --store "$TMP/s_mixed2" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 1 ] && grep -q "FAIL .*bad.zip: archive .*: the name of its entry 1 cannot be read" "$TMP/e" &&
    grep -q "1 compiled, 0 unchanged, 0 skipped, 1 failed" "$TMP/e" &&
    ok "a member name that cannot be read: its archive fails, said (exit 1)" || { fail "an unreadable member name: exit $rc"; cat "$TMP/e"; }
"$KVZ" compile "$TMP/mixed" --store "$TMP/s_mixed" --model "$MODEL" --method recent --exclude 'lies.zip' --exclude 'x.zip' >"$TMP/o" 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && ! grep -q "lies.zip\|x.zip:b.txt: unchanged" "$TMP/e" && grep -q "x.zip:b.txt: " "$TMP/e" &&
    ok "--exclude passes over an archive by its own name" || { fail "--exclude of an archive: exit $rc"; cat "$TMP/e"; }
# a UTF-16 file (PowerShell's Out-File) is said to be one, with the way to convert it (it was "binary?")
printf '\377\376h\000i\000\n\000' >"$TMP/utf16.txt"
printf '\377\376\000\000h\000\000\000\n\000\000\000' >"$TMP/utf32.txt" # UTF-32LE opens as UTF-16LE does
"$KVZ" compile "$TMP/utf16.txt" "$TMP/utf32.txt" --store "$TMP/s_utf16" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q "skip .*utf16.txt: UTF-16 text .*iconv -f UTF-16 -t UTF-8" "$TMP/e" &&
    grep -q "skip .*utf32.txt: UTF-32 text .*iconv -f UTF-32 -t UTF-8" "$TMP/e" &&
    ok "a UTF-16 file and a UTF-32 one: skipped, said which" || { fail "UTF-16/32 file: exit $rc"; cat "$TMP/e"; }
# a PDF among the notes: said to be one, and what converts it (it was "contains NUL bytes (binary?)")
printf '%%PDF-1.4\n%%\342\343\317\323\n1 0 obj\n\000stream\n' >"$TMP/report.pdf"
"$KVZ" compile "$TMP/report.pdf" --store "$TMP/s_pdf" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q "skip .*report.pdf: a PDF; documents are text (UTF-8): pdftotext" "$TMP/e" &&
    ok "a PDF: skipped, said what converts it" || { fail "PDF: exit $rc"; cat "$TMP/e"; }
# a store kept inside the folder it compiles is not read as documents (its data.mdb was 'binary',
# and a failure under --strict)
mkdir -p "$TMP/inner"
cp "$TMP/piped.txt" "$TMP/inner/light.txt"
"$KVZ" compile "$TMP/inner" --store "$TMP/inner/store" --model "$MODEL" --method recent --strict --quiet 2>"$TMP/e" &&
"$KVZ" compile "$TMP/inner" --store "$TMP/inner/store" --model "$MODEL" --method recent --strict --json >"$TMP/o7" 2>>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && ! grep -q "mdb" "$TMP/e" "$TMP/o7" && grep -q '"status":"unchanged"' "$TMP/o7" &&
    grep -q "the store .*/inner/store, inside a folder compiled, is not read as documents" "$TMP/e" &&
    ok "compile of a folder holding its store: the store is walked around" || { fail "store inside: exit $rc"; cat "$TMP/e" "$TMP/o7"; }
# a notes folder that is a git repository: .git and other hidden names are passed over, counted
# (.git's config and hook samples were compiled as documents); one named as a PATH is compiled
mkdir -p "$TMP/hid/.git/hooks"
cp "$TMP/piped.txt" "$TMP/hid/light.txt"
cp "$TMP/piped.txt" "$TMP/hid/.git/hooks/commit-msg.sample"
printf 'A hidden note.\n' >"$TMP/hid/.note.txt"
"$KVZ" compile "$TMP/hid" "$TMP/hid/.note.txt" --store "$TMP/s_hid" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && [ "$("$KVZ" ls --store "$TMP/s_hid" --names | sed 's|.*/hid/||' | tr '\n' ' ')" = ".note.txt light.txt " ] &&
    grep -q "^kvz compile: 2 hidden file(s) and folder(s) of the folders walked passed over" "$TMP/e" &&
    ok "hidden names in a folder: passed over, counted; one named: compiled" || { fail "hidden names: exit $rc"; cat "$TMP/e"; }
# so are an archive's hidden members and a zip's __MACOSX/ resource forks (they were compiled,
# or skipped one by one as binary); a name with ".." inside a part is no hidden name
mkdir -p "$TMP/arc/.git" "$TMP/arc/__MACOSX" "$TMP/arc/sub"
cp "$TMP/piped.txt" "$TMP/arc/light.txt"
cp "$TMP/piped.txt" "$TMP/arc/sub/a..b.txt"
cp "$TMP/piped.txt" "$TMP/arc/.git/config"
cp "$TMP/piped.txt" "$TMP/arc/sub/.note.txt"
printf 'Mac\0OS X resource fork\n' >"$TMP/arc/__MACOSX/._light.txt"
tar -cf "$TMP/arc.tar" -C "$TMP/arc" .
"$KVZ" compile "$TMP/arc.tar" --store "$TMP/s_arc" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && [ "$("$KVZ" ls --store "$TMP/s_arc" --names | sed 's|.*/arc.tar:||' | tr '\n' ' ')" = "light.txt sub/a..b.txt " ] &&
    grep -q "^kvz compile: 3 hidden member(s) of archives passed over" "$TMP/e" && ! grep -q "^skip" "$TMP/e" &&
    ok "hidden members of an archive and __MACOSX/: passed over, counted" || { fail "hidden members: exit $rc"; cat "$TMP/e"; }
# a document of that name compiled before (as 0.3.15 compiled hidden members) stays: --prune
# keeps what the archive still holds (it was pruned as gone)
cp "$TMP/piped.txt" "$TMP/arc.tar:.git/config" 2>/dev/null || { mkdir -p "$TMP/arc.tar:.git" && cp "$TMP/piped.txt" "$TMP/arc.tar:.git/config"; }
"$KVZ" compile "$TMP/arc.tar:.git/config" --store "$TMP/s_arc" --model "$MODEL" --method recent --quiet 2>"$TMP/e" &&
    rm -r "$TMP/arc.tar:.git" &&
    "$KVZ" compile "$TMP/arc.tar" --prune --store "$TMP/s_arc" --model "$MODEL" --method recent 2>>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && [ "$("$KVZ" ls --store "$TMP/s_arc" --names | sed 's|.*/arc.tar:||' | tr '\n' ' ')" = ".git/config light.txt sub/a..b.txt " ] &&
    grep -q "^pruned 0 document(s)" "$TMP/e" &&
    ok "compile --prune keeps a document of a hidden member the archive holds" || { fail "prune of a hidden member: exit $rc"; cat "$TMP/e"; }
# a hidden store inside the folder (notes/.kvz) is said as the store, not counted as hidden
"$KVZ" compile "$TMP/hid" --store "$TMP/hid/.kvz" --model "$MODEL" --method recent 2>/dev/null &&
    "$KVZ" compile "$TMP/hid" --store "$TMP/hid/.kvz" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q "the store .*/hid/.kvz, inside a folder compiled, is not read as documents" "$TMP/e" &&
    grep -q "^kvz compile: 2 hidden file(s) and folder(s) of the folders walked passed over" "$TMP/e" &&
    ok "a hidden store inside the folder: said as the store, not as hidden" || { fail "hidden store: exit $rc"; cat "$TMP/e"; }
# the store's folder given as the folder to compile: said so (it was "no documents were found")
"$KVZ" compile "$TMP/inner/store" --store "$TMP/inner/store" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "^kvz compile: '.*/inner/store' is the store's own folder (--store): give the store a" "$TMP/e" &&
    ok "compile of the store's own folder: refused, said why" || { fail "store as PATH: exit $rc"; cat "$TMP/e"; }
# snapkv's window: 16 by default under 1K tokens, a window given is used as given
"$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w1" --model "$MODEL" --method snapkv --quiet 2>/dev/null
"$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w2" --model "$MODEL" --method snapkv --window 64 --quiet 2>/dev/null
w1=$("$KVZ" inspect --store "$TMP/w1" "$TMP/corpus/doc0.txt" 2>&1 | grep -o "window=[0-9]*")
w2=$("$KVZ" inspect --store "$TMP/w2" "$TMP/corpus/doc0.txt" 2>&1 | grep -o "window=[0-9]*")
[ "$w1" = "window=16" ] && [ "$w2" = "window=64" ] && ok "snapkv under 1K tokens: window 16 by default, 64 when given" ||
    fail "snapkv windows: '$w1' by default, '$w2' with --window 64"
"$KVZ" ls --store "$TMP/w2" | grep -q "snapkv window 64 ratio" && ok "ls names a given window" ||
    fail "ls of a --window 64 store: $("$KVZ" ls --store "$TMP/w2")"
# options of another method are refused, not silently folded into a new configuration
# (also at their default values: given, they say the caller expects them to act)
for bad in "--window 64" "--pool 5" "--reuse 2" "--beta 10" "--decay 0.5" "--pool 7" "--beta 20" "--decay 0.2"; do
    "$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w3" --model "$MODEL" $bad 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && grep -q -- "${bad%% *} applies to" "$TMP/e" && [ ! -e "$TMP/w3" ] && ok "kvzip $bad: exit 2, no store" ||
        fail "kvzip $bad: exit $rc, $(cat "$TMP/e")"
done
for bad in "--kvzip-chunk 512:snapkv" "--seed 7:recent" "--ratio 0.5:full" "--budget 3:full" \
    "--budget-shape decay:full" "--kvzip-chunk 2048:snapkv" "--seed 1:recent" "--level pair:recent" \
    "--level pair-uniform:snapkv" "--budget-shape uniform:full" "--level head --budget-shape uniform:kvzip" \
    "--sinks 4:kvzip" "--sinks 0:random"; do
    "$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w3" --model "$MODEL" --method ${bad#*:} ${bad%:*} 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && grep -q "applies to\|not apply" "$TMP/e" && [ ! -e "$TMP/w3" ] && ok "${bad#*:} ${bad%:*}: exit 2, no store" ||
        fail "${bad#*:} ${bad%:*}: exit $rc, $(cat "$TMP/e")"
done
# recent's attention sinks (StreamingLLM) are an option of its own: another configuration
"$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w4" --model "$MODEL" --method recent --sinks 0 --quiet 2>"$TMP/e" &&
    "$KVZ" compile "$TMP/corpus/doc0.txt" --store "$TMP/w4" --model "$MODEL" --method recent --sinks 4 --quiet 2>>"$TMP/e" &&
    "$KVZ" ls --store "$TMP/w4" >"$TMP/o" && grep -q "recent ratio 0.30, 4-bit, sinks 0" "$TMP/o" && [ "$(grep -c "recent" "$TMP/o")" = 2 ] &&
    "$KVZ" inspect --store "$TMP/w4" "$TMP/corpus/doc0.txt" --config 1 --json >>"$TMP/o" &&
    "$KVZ" inspect --store "$TMP/w4" "$TMP/corpus/doc0.txt" --config 2 --json >>"$TMP/o" &&
    grep -q '"options": *"[^"]* sinks=0"' "$TMP/o" && grep -q '"options": *"[^"]* sinks=4"' "$TMP/o" &&
    ok "recent --sinks 0 and the default 4: two configurations, ls names the one not the default, the manifests' options say each" ||
    fail "recent --sinks: $(cat "$TMP/e" "$TMP/o")"
# a dangling link in a folder fails alone: the rest compiles, exit 1
mkdir -p "$TMP/linked"
cp "$TMP/corpus/doc0.txt" "$TMP/linked/"
ln -s "$TMP/nowhere.txt" "$TMP/linked/broken.txt"
"$KVZ" compile "$TMP/linked" --store "$TMP/s5" --model "$MODEL" --method recent --json >"$TMP/o5" 2>"$TMP/e"; rc=$?
[ $rc -eq 1 ] && grep -q '"status":"compiled"' "$TMP/o5" && grep -q "FAIL .*broken.txt: cannot open" "$TMP/e" &&
    ok "a dangling link fails alone, the folder's other document compiles: exit 1" ||
    { fail "dangling link: exit $rc"; cat "$TMP/e"; }
# links in a folder: one to a file inside it is compiled, one to a file outside it is skipped
# (said; it was compiled, and pack would have shipped it); named itself, that file compiles
mkdir -p "$TMP/linkwalk/sub" "$TMP/elsewhere"
cp "$TMP/corpus/doc0.txt" "$TMP/linkwalk/sub/in.txt" && cp "$TMP/corpus/doc2.txt" "$TMP/elsewhere/secret.txt"
ln -s sub/in.txt "$TMP/linkwalk/inlink.txt" && ln -s "$TMP/elsewhere/secret.txt" "$TMP/linkwalk/out.txt"
"$KVZ" compile "$TMP/linkwalk" --store "$TMP/s9" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
"$KVZ" compile "$TMP/linkwalk/out.txt" --store "$TMP/s9b" --model "$MODEL" --method recent --quiet 2>>"$TMP/e"; rc2=$?
[ $rc -eq 0 ] && grep -q "skip .*out.txt: a link to a file outside the folder walked" "$TMP/e" &&
    [ "$("$KVZ" ls --store "$TMP/s9" --json | grep -c '"document"')" -eq 2 ] && ! "$KVZ" ls --store "$TMP/s9" | grep -q out.txt &&
    [ $rc2 -eq 0 ] && ok "a folder's link to a file outside it is skipped (said), one inside compiled; named, it compiles" ||
    { fail "links in a walk: exit $rc, $rc2"; cat "$TMP/e"; }
# a name with a newline and an escape: one line in ls (below its header), control bytes shown as \xNN; --json keeps them exact
mkdir -p "$TMP/odd" && cp "$TMP/corpus/doc0.txt" "$TMP/odd/$(printf 'two\nlines\033[31m.txt')"
"$KVZ" compile "$TMP/odd" --store "$TMP/s8" --model "$MODEL" --method recent >/dev/null 2>"$TMP/e" &&
    "$KVZ" ls --store "$TMP/s8" >"$TMP/o" && [ "$(grep -c . "$TMP/o")" -eq 3 ] && grep -q 'two\\x0alines\\x1b\[31m.txt ' "$TMP/o" &&
    grep -q 'two\\x0alines' "$TMP/e" && [ -z "$(tr -d '\n' <"$TMP/o" | tr -d '[:print:]')" ] &&
    "$KVZ" ls --store "$TMP/s8" --json | grep -q 'two\\u000alines\\u001b' &&
    ok "control bytes in a name: shown as \\xNN by compile and ls, exact in --json" ||
    { fail "control bytes in a name"; cat -v "$TMP/o" "$TMP/e"; }
# its twin spelt with a backslash shows otherwise (both showed 'two\x0alines'), and rm takes the name ls shows through $'...'
cp "$TMP/corpus/doc2.txt" "$TMP/odd/two\\x0alines.txt"
"$KVZ" compile "$TMP/odd" --store "$TMP/s8" --model "$MODEL" --method recent >/dev/null 2>"$TMP/e" &&
    "$KVZ" ls --store "$TMP/s8" >"$TMP/o" && grep -qF 'two\\x0alines.txt ' "$TMP/o" && grep -qF 'two\x0alines\x1b[31m.txt ' "$TMP/o" &&
    bash -c "\"\$1\" rm --store \"\$2\" \"\$3\"\$'/two\\\\x0alines.txt'" sh "$KVZ" "$TMP/s8" "$TMP/odd" >/dev/null 2>&1 &&
    [ "$("$KVZ" ls --store "$TMP/s8" --names --null | tr '\0' '\n' | grep -c 'lines')" -eq 1 ] &&
    "$KVZ" ls --store "$TMP/s8" | grep -qF 'two\x0alines\x1b[31m.txt ' &&
    { "$KVZ" ls --store "$TMP/s8" --names >"$TMP/o2" 2>"$TMP/e2"; [ $? -eq 1 ]; } && grep -q "holds a newline: left out (--null" "$TMP/e2" &&
    ok "a backslash in a name shows doubled: the newline's twin apart, rm \$'...' of what ls shows removes that one" ||
    { fail "a backslash in a name"; cat -v "$TMP/o" "$TMP/e"; }
# a bidi override in a name is shown as its bytes \xe2\x80\xae: 'report<U+202E>txt.exe' read as 'reportexe.txt'
# (as a zero-width space is: 'zero<U+200B>width.txt' read as 'zerowidth.txt')
mkdir -p "$TMP/bidi" && cp "$TMP/corpus/doc0.txt" "$TMP/bidi/$(printf 'report\342\200\256txt.exe')" &&
    cp "$TMP/corpus/doc2.txt" "$TMP/bidi/$(printf 'zero\342\200\213width.txt')"
"$KVZ" compile "$TMP/bidi" --store "$TMP/s_bidi" --model "$MODEL" --method recent >/dev/null 2>"$TMP/e" &&
    "$KVZ" ls --store "$TMP/s_bidi" >"$TMP/o" && grep -qF 'report\xe2\x80\xaetxt.exe ' "$TMP/o" && grep -qF 'report\xe2\x80\xaetxt.exe: ' "$TMP/e" &&
    grep -qF 'zero\xe2\x80\x8bwidth.txt ' "$TMP/o" &&
    ok "a bidi override and a zero-width space in a name: shown as their bytes by compile and ls" || { fail "a bidi override in a name"; cat -v "$TMP/o" "$TMP/e"; }
# a name longer than the store's keys (511 bytes) fails alone, before any work
long=$(printf '%0200d' 0)
mkdir -p "$TMP/long/$long/$long" && cp "$TMP/corpus/doc0.txt" "$TMP/long/$long/$long/$long.txt" && cp "$TMP/corpus/doc0.txt" "$TMP/long/short.txt"
"$KVZ" compile "$TMP/long" --store "$TMP/s7" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 1 ] && grep -q "FAIL .*: a document name of [0-9]* bytes: the store takes names of 1 to 511 bytes" "$TMP/e" &&
    grep -q "1 compiled, 0 unchanged, 0 skipped, 1 failed" "$TMP/e" && ok "a name over 511 bytes fails alone: exit 1" ||
    { fail "long name: exit $rc"; cat "$TMP/e"; }
# a store cut short (an interrupted copy) is refused at open, not a SIGBUS
cp -r "$TMP/s7" "$TMP/cut"
truncate -s $(( $(stat -c %s "$TMP/cut/data.mdb") / 2 / 4096 * 4096 )) "$TMP/cut/data.mdb"
for cmd in verify stats ls; do
    "$KVZ" $cmd --store "$TMP/cut" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 4 ] && grep -q "is cut short: data.mdb had" "$TMP/e" && ok "$cmd of a cut store: exit 4" ||
        { fail "$cmd of a cut store: exit $rc"; cat "$TMP/e"; }
done
# a FIFO in a folder is reported skipped (never opened: that would wait for a writer)
mkdir -p "$TMP/fifo" && cp "$TMP/corpus/doc0.txt" "$TMP/fifo/" && mkfifo "$TMP/fifo/pipe.txt"
timeout 300 "$KVZ" compile "$TMP/fifo" --store "$TMP/s6" --model "$MODEL" --method recent 2>"$TMP/e"; rc=$?
[ $rc -eq 0 ] && grep -q "skip .*pipe.txt: not a regular file" "$TMP/e" && grep -q "1 compiled, 0 unchanged, 1 skipped" "$TMP/e" &&
    ok "a FIFO in a folder is skipped with its reason" || { fail "FIFO in a folder: exit $rc"; cat "$TMP/e"; }
# a file name that is not UTF-8 still gives valid JSON (U+FFFD for its bytes)
cp "$TMP/corpus/doc0.txt" "$TMP/linked/$(printf 'name\377.txt')"
rm "$TMP/linked/broken.txt"
"$KVZ" compile "$TMP/linked" --store "$TMP/s5" --model "$MODEL" --method recent --json 2>/dev/null >"$TMP/o5"
"$KVZ" ls --store "$TMP/s5" --json >>"$TMP/o5"
python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]' "$TMP/o5" &&
    grep -q 'name\\ufffd.txt' "$TMP/o5" && ok "a non-UTF-8 file name: compile --json and ls --json stay valid JSON" ||
    { fail "non-UTF-8 name in JSON"; cat "$TMP/o5"; }
"$KVZ" inspect --store "$S" nothing-here.txt 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && grep -q "no document" "$TMP/e" && ok "inspect unknown doc: exit 7" || fail "inspect unknown: exit $rc"
"$KVZ" ls --store "$TMP/corpus" 2>"$TMP/e"; rc=$?
[ $rc -eq 7 ] && ok "ls on a folder that is no store: exit 7" || fail "ls non-store: exit $rc"

# eval: a small run of the multi-query protocol, every output form
"$KVZ" eval --model "$MODEL" --tasks passkey,facts --docs 1 --words 60 --methods kvzip,random --ratios 0.5 \
    --max-tokens 16 --threads 1 --device cpu --store "$TMP/evrun" --json --svg "$TMP/eval.svg" --quiet >"$TMP/eval.json" 2>"$TMP/e"
rc=$?
"$KVZ" inspect --store "$TMP/evrun" "passkey-0 full r1.00 b16" >"$TMP/evi" 2>&1
python3 - "$TMP/eval.json" "$("$KVZ" --version | head -1)" "$TMP/evi" <<'PY' && [ $rc -eq 0 ] \
    && head -c 4 "$TMP/eval.svg" | grep -q "<svg" && ok "eval: full reference, two methods, fidelity, plot, run recorded" \
    || { fail "eval exit $rc"; cat "$TMP/eval.json" "$TMP/e"; }
import json, re, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
# every row says what made it (the numbers depend on each: --threads rounds sums otherwise)
fingerprint = re.search(r"fingerprint ([0-9a-f]{16})", open(sys.argv[3]).read()).group(1)
for r in rows:
    run = {k: r.get(k) for k in ("kvz", "model", "seed", "docs", "words", "max_tokens", "threads", "device")}
    assert run == {"kvz": sys.argv[2].split()[1], "model": fingerprint, "seed": 1, "docs": 1, "words": 60,
                   "max_tokens": 16, "threads": 1, "device": "cpu"}, run
assert [(r["method"], r["ratio"], r["bits"]) for r in rows] == [("full", 1, 16), ("kvzip", 0.5, 4), ("random", 0.5, 4)], rows
full = rows[0]
assert full["top1"] == 1 and full["kl"] == 0 and full["relative_accuracy"] == 1, full
assert full["tasks"]["passkey"]["accuracy"] == 1, full  # the full cache finds the pass key
for r in rows:
    assert set(r["tasks"]) == {"passkey", "facts"} and r["tasks"]["facts"]["questions"] == 4, r
    assert 0 <= r["accuracy"] <= 1 and 0 <= r["top1"] <= 1 and r["kl"] >= 0 and r["positions"] > 0, r
    assert r["bytes_per_token"] > 0, r
# a compressed cache costs something, and fewer bytes
assert rows[1]["kl"] > 0 and rows[1]["bytes_per_token"] < full["bytes_per_token"], rows
PY
"$KVZ" eval --model "$MODEL" --methods kvzip,bogus 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "bogus" "$TMP/e" && ok "eval with an unknown method: exit 2" || fail "eval bogus method: exit $rc"
for lst in "--ratios 0.5,,1" "--ratios 0.5,0.5" "--bits 4,4" "--tasks passkey,"; do
    # shellcheck disable=SC2086
    "$KVZ" eval --model "$MODEL" $lst 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && grep -q "invalid value" "$TMP/e" && ok "eval $lst: exit 2" || fail "eval $lst: exit $rc"
done

# ratios alike to two decimals are two configurations, named and shown apart, also when a
# --store is reused (before, both were "r0.10" and the rerun scored one form twice)
for run in 1 2; do
    "$KVZ" eval --model "$MODEL" --tasks passkey --docs 1 --words 40 --methods recent --ratios 0.101,0.104 --bits 16 \
        --max-tokens 4 --store "$TMP/evs" --json --quiet >"$TMP/ev$run.json" 2>"$TMP/e" || { fail "eval run $run"; cat "$TMP/e"; }
done
"$KVZ" ls --store "$TMP/evs" >"$TMP/evls"
cmp -s "$TMP/ev1.json" "$TMP/ev2.json" && grep -q '"ratio":0.101,' "$TMP/ev1.json" && grep -q "recent r0.104 b16" "$TMP/evls" &&
    grep -q "recent r0.101 b16" "$TMP/evls" && ok "eval: ratios 0.101 and 0.104 named apart, a rerun on the store agrees" ||
    { fail "eval ratio names"; cat "$TMP/ev1.json" "$TMP/ev2.json" "$TMP/evls"; }
# the temporary store of an eval stopped by a signal is removed, as at the end
mkdir -p "$TMP/evtmp"
TMPDIR="$TMP/evtmp" "$KVZ" eval --model "$MODEL" --tasks passkey --docs 4 --words 200 --methods kvzip --ratios 0.3 \
    --quiet >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -e "$TMP"/evtmp/kvz-eval-*/data.mdb ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 143 ] && [ -z "$(ls -A "$TMP/evtmp")" ] && ok "eval stopped by SIGTERM: its temporary store removed" ||
    { fail "eval SIGTERM: exit $rc"; ls -laR "$TMP/evtmp"; }

# ---- stores and outputs shared between users (root here, as in CI; `nobody` the other) -----
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
    echo "skip the users' checks: they need root and setpriv"
else
    U="$TMP/users"
    mkdir -p "$U" && chmod 755 "$TMP" "$U"
    cp -r "$TMP/s7" "$U/store" && rm -f "$U/store/lock.mdb" && chown -R nobody:nogroup "$U/store" &&
        chmod 664 "$U/store/data.mdb" || fail "a store of nobody's"
    # root's read-only command makes the missing lock.mdb nobody's, writable where data.mdb is readable
    "$KVZ" ls --store "$U/store" >/dev/null 2>"$TMP/e" &&
        [ "$(stat -c '%U %a' "$U/store/lock.mdb")" = "nobody 666" ] &&
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$KVZ" ls --store "$U/store" >/dev/null 2>>"$TMP/e" &&
        ok "root's ls makes lock.mdb nobody's, as data.mdb: nobody still reads" ||
        { fail "lock.mdb made by root: $(stat -c '%U %a' "$U/store/lock.mdb")"; cat "$TMP/e"; }
    # a data.mdb this user may not read is named as such (it said lock.mdb)
    chmod 600 "$U/store/data.mdb" && chown root "$U/store/data.mdb"
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$KVZ" ls --store "$U/store" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 3 ] && grep -q "this user may not read its data.mdb" "$TMP/e" &&
        ok "a data.mdb nobody may read: exit 3, named" || { fail "unreadable data.mdb: exit $rc"; cat "$TMP/e"; }
    chown nobody "$U/store/data.mdb" && chmod 664 "$U/store/data.mdb"
    # a store on a read-only bind mount (a container's :ro volume), lock.mdb not the reader's to write
    mkdir -p "$U/ro" && chown root "$U/store/lock.mdb" && chmod 644 "$U/store/lock.mdb"
    if mount --bind "$U/store" "$U/ro" 2>/dev/null && mount -o remount,bind,ro "$U/ro" 2>/dev/null; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$KVZ" ls --store "$U/ro" >"$TMP/o" 2>"$TMP/e"; rc=$?
        [ $rc -eq 0 ] && grep -q "long.txt\|short.txt" "$TMP/o" && ok "a read-only bind mount: read without lock.mdb" ||
            { fail "read-only bind mount: exit $rc"; cat "$TMP/e"; }
        # ... but not while another process has the store open (LMDB's lock on lock.mdb held)
        python3 -c "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0); print('held', flush=True); time.sleep(30)" \
            "$U/store/lock.mdb" >"$TMP/held" &
        holder=$!
        n=0
        until grep -q held "$TMP/held" 2>/dev/null || [ $n -ge 400 ]; do sleep 0.05; n=$((n + 1)); done
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$KVZ" ls --store "$U/ro" >/dev/null 2>"$TMP/e"; rc=$?
        # root too: its open of lock.mdb there fails with EROFS, where LMDB reads without the lock by itself
        "$KVZ" ls --store "$U/ro" >/dev/null 2>"$TMP/e_root"; rc_root=$?
        # ... but a writable lock.mdb bound over the read-only folder keeps the lock: read with it
        rc_rwlock=0
        if mount --bind "$U/store/lock.mdb" "$U/ro/lock.mdb" 2>/dev/null; then
            "$KVZ" ls --store "$U/ro" >/dev/null 2>>"$TMP/e_root"; rc_rwlock=$?
            umount "$U/ro/lock.mdb"
        fi
        kill $holder; wait $holder 2>/dev/null
        "$KVZ" ls --store "$U/ro" >"$TMP/o" 2>>"$TMP/e_root"; rc_free=$?
        umount "$U/ro"
        [ $rc -eq 3 ] && grep -q "another process has it open" "$TMP/e" &&
            ok "a read-only bind mount of a store open elsewhere: exit 3, not read without the lock" ||
            { fail "read-only bind mount, store in use: exit $rc"; cat "$TMP/e"; }
        [ $rc_root -eq 3 ] && grep -q "another process has it open" "$TMP/e_root" && [ $rc_free -eq 0 ] &&
            [ $rc_rwlock -eq 0 ] && grep -q "long.txt\|short.txt" "$TMP/o" &&
            ok "... root's read too (exit 3), not with a writable lock.mdb bound over it, and once no one has it open" ||
            { fail "read-only bind mount, root: exit $rc_root, $rc_rwlock, then $rc_free"; cat "$TMP/e_root"; }
    else
        umount "$U/ro" 2>/dev/null
        echo "skip the read-only bind mount: mount is not permitted here"
    fi
    # an output through another user's link in a sticky folder anyone may write to: refused
    mkdir -p "$U/sticky" && chmod 1777 "$U/sticky" && printf 'keep me\n' >"$U/victim" && chmod 600 "$U/victim"
    ln -s "$U/victim" "$U/sticky/out.kvzb" && chown -h nobody "$U/sticky/out.kvzb"
    "$KVZ" pack --store "$TMP/s7" --all -o "$U/sticky/out.kvzb" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && grep -q "is another user's, in a folder anyone may write to" "$TMP/e" &&
        [ "$(cat "$U/victim")" = "keep me" ] && [ "$(stat -c %a "$U/victim")" = 600 ] &&
        ok "pack -o through another user's link in a sticky folder: exit 2, the file it names kept" ||
        { fail "planted link: exit $rc"; cat "$TMP/e"; }
    ln -s /dev/null "$U/sticky/dev.kvzb" && chown -h nobody "$U/sticky/dev.kvzb"
    "$KVZ" pack --store "$TMP/s7" --all -o "$U/sticky/dev.kvzb" >/dev/null 2>"$TMP/e"; rc=$?
    [ $rc -eq 2 ] && ok "... and one naming a device: exit 2" || { fail "planted link to a device: exit $rc"; cat "$TMP/e"; }
    # an output written over keeps its mode and, written by root, its owner
    printf 'old\n' >"$U/mine.kvzb" && chmod 640 "$U/mine.kvzb" && chown nobody "$U/mine.kvzb"
    "$KVZ" pack --store "$TMP/s7" --all -o "$U/mine.kvzb" >/dev/null 2>"$TMP/e" &&
        [ "$(stat -c '%U %a' "$U/mine.kvzb")" = "nobody 640" ] && "$KVZ" unpack --check "$U/mine.kvzb" >/dev/null 2>&1 &&
        ok "pack -o over a file: its mode and owner kept" ||
        { fail "pack over a file: $(stat -c '%U %a' "$U/mine.kvzb")"; cat "$TMP/e"; }
fi

finish store
