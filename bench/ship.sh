#!/bin/sh
# Moving compiled documents: pack, unpack (check + write), merge of shards,
# verify and gc, on a store of real documents compiled with the default
# configuration (KVzip, ratio 0.3, 4 bits). Prints a markdown table.
#
#   DOCS=40 sh bench/ship.sh
set -eu
cd "$(dirname "$0")/.."
KVZ=${KVZ_BIN:-build/kvz}
export KVZ_MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DOCS=${DOCS:-40}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

mkdir -p "$TMP/corpus"
python3 - "$TMP/corpus" "$DOCS" <<'PY'
import sys, glob
paras = []
for f in sorted(glob.glob("tests/data/*.txt")) + sorted(glob.glob("examples/corpus/*")):
    paras += [p for p in open(f, encoding="utf-8").read().split("\n\n") if len(p) > 400]
for i in range(int(sys.argv[2])):
    open(f"{sys.argv[1]}/doc{i:03d}.txt", "w").write(paras[i % len(paras)] + f"\n\n(copy {i})\n")
PY
secs() { python3 -c "import sys,time; t=time.time(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f'{time.time()-t:.2f}')" "$@"; }
mb() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1])/1048576:.1f}')" "$1"; }

echo "machine: $(sh bench/machine.sh); $DOCS documents, kvzip ratio 0.3, 4 bits"
for i in 0 1; do
    "$KVZ" compile "$TMP/corpus" --store "$TMP/shard$i" --shard $i/2 --quiet 2>/dev/null
done
t_merge=$(secs "$KVZ" merge "$TMP/shard0" "$TMP/shard1" --into "$TMP/s")
t_merge2=$(secs "$KVZ" merge "$TMP/shard0" "$TMP/shard1" --into "$TMP/s")
t_pack=$(secs "$KVZ" pack --store "$TMP/s" --all -o "$TMP/b.tar.zst")
t_unpack=$(secs "$KVZ" unpack "$TMP/b.tar.zst" --store "$TMP/u")
t_unpack2=$(secs "$KVZ" unpack "$TMP/b.tar.zst" --store "$TMP/u")
t_verify=$(secs "$KVZ" verify --store "$TMP/u")
t_gc=$(secs "$KVZ" gc --store "$TMP/u")
bundle=$(mb "$TMP/b.tar.zst")
stored=$("$KVZ" stats --store "$TMP/u" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{(d['artifact_bytes'])/1048576:.1f}\")")
echo
echo "| step | seconds | note |"
echo "|---|---:|---|"
echo "| merge 2 shards into a new store | $t_merge | |"
echo "| merge again (nothing new) | $t_merge2 | |"
echo "| pack --all | $t_pack | bundle $bundle MB for $stored MB of artifacts |"
echo "| unpack into a new store | $t_unpack | model fingerprint, check pass, write pass |"
echo "| unpack again (nothing new) | $t_unpack2 | |"
echo "| verify the unpacked store | $t_verify | every section decoded |"
echo "| gc (nothing to drop) | $t_gc | |"
