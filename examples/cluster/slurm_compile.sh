#!/bin/bash
# A nightly sharded compile as a Slurm job array: N tasks, each compiling the
# documents of its shard into a store of its own, then one dependent job that
# merges the shards and packs a bundle for the serving machines.
#
#   sbatch --array=0-15 examples/cluster/slurm_compile.sh /shared/corpus /shared/kvz
#   sbatch --dependency=afterok:<array job id> --export=ALL,KVZ_STEP=merge,KVZ_SHARDS=16 \
#          examples/cluster/slurm_compile.sh /shared/corpus /shared/kvz
#
# Every task sees the same corpus (by the same path) and the same model; a
# document's shard is a hash of its name modulo N, so the tasks agree without
# talking to each other, and a document stays in one shard's store night after
# night. Each task starts from its shard's store of the last night: only new
# and changed documents are compiled, --prune drops deleted ones, the merge
# prunes them from $OUT/merged, and the serving machines drop them with
# `kvz unpack corpus.tar.zst --store DIR --prune`. A task that fails or is
# preempted can simply run again (from that store again; a killed compile
# leaves a valid store).
#SBATCH --job-name=kvz-compile
#SBATCH --cpus-per-task=16
#SBATCH --mem=16G
#SBATCH --time=08:00:00
#SBATCH --output=kvz-%A_%a.log
set -euo pipefail

CORPUS=${1:?corpus folder or archive}
OUT=${2:?output folder on a shared filesystem}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
COMPILE_ARGS=${KVZ_COMPILE_ARGS:---method kvzip --ratio 0.3 --bits 4}
N=${KVZ_SHARDS:-${SLURM_ARRAY_TASK_COUNT:-16}}

if [ "${KVZ_STEP:-compile}" = merge ]; then
    # shards 0..N-1 only (a store left by a run with more shards is not merged)
    SHARDS=()
    for ((i = 0; i < N; i++)); do SHARDS+=("$OUT/shards/$i"); done
    kvz merge "${SHARDS[@]}" --into "$OUT/merged" --prune
    kvz verify --store "$OUT/merged"
    kvz pack --store "$OUT/merged" --all -o "$OUT/corpus.tar.zst"
    exit 0
fi

I=${SLURM_ARRAY_TASK_ID:?run as an array job (sbatch --array=0-N-1)}
S=$OUT/shards
# Each shard writes to local disk, then moves the finished store into place:
# LMDB wants a local filesystem for the writer's lock.
LOCAL=${TMPDIR:-/tmp}/kvz-shard-$I
mkdir -p "$S" "$OUT/logs"
# A task killed while it published (below) left its shard's newest whole
# store as .$I.new (swapped in now), or the last one as .$I.old where $I is
# missing (taken back); .$I.copy is never whole.
if [ -d "$S/.$I.new" ]; then
    if [ -d "$S/$I" ]; then rm -rf "$S/.$I.old" && mv -T "$S/$I" "$S/.$I.old"; fi
    mv -T "$S/.$I.new" "$S/$I"
elif [ ! -d "$S/$I" ] && [ -d "$S/.$I.old" ]; then
    mv -T "$S/.$I.old" "$S/$I"
fi
rm -rf "$S/.$I.copy" "$S/.$I.old" "$LOCAL"
if [ -d "$S/$I" ]; then cp -r "$S/$I" "$LOCAL"; fi
# shellcheck disable=SC2086 # word splitting of the flags is meant
kvz compile "$CORPUS" --store "$LOCAL" --model "$MODEL" $COMPILE_ARGS \
    --threads "${SLURM_CPUS_PER_TASK:-2}" --shard "$I/$N" --prune --json >"$OUT/logs/shard-$I.jsonl"
kvz verify --store "$LOCAL"
# Publish: copy beside the last store and sync it (a power cut must not leave
# a store cut short), name it .$I.new once whole, then swap by renames: at
# every moment a whole store is $I, .$I.new or .$I.old.
cp -r "$LOCAL" "$S/.$I.copy"
sync "$S/.$I.copy"/*.mdb "$S/.$I.copy"
mv -T "$S/.$I.copy" "$S/.$I.new"
if [ -d "$S/$I" ]; then mv -T "$S/$I" "$S/.$I.old"; fi
mv -T "$S/.$I.new" "$S/$I"
sync "$S"
rm -rf "$S/.$I.old" "$LOCAL"
