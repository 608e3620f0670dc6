#!/bin/bash
# A nightly sharded compile as a Slurm job array: N tasks, each compiling the
# documents of its shard into a store of its own, then one dependent job that
# merges the shards and packs a bundle for the serving machines.
#
#   sbatch --array=0-15 examples/cluster/slurm_compile.sh /shared/corpus /shared/kvz
#   sbatch --dependency=afterok:<array job id> --export=ALL,KVZ_STEP=merge \
#          examples/cluster/slurm_compile.sh /shared/corpus /shared/kvz
#
# Every task sees the same corpus and the same model; a document's shard is
# its content hash modulo N, so the tasks agree without talking to each other.
# A task that fails or is preempted can simply run again: what its store
# already holds is skipped, and a killed compile leaves a valid store.
#SBATCH --job-name=kvz-compile
#SBATCH --cpus-per-task=16
#SBATCH --mem=16G
#SBATCH --time=08:00:00
#SBATCH --output=kvz-%A_%a.log
set -euo pipefail

CORPUS=${1:?corpus folder or archive}
OUT=${2:?output folder on a shared filesystem}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
# shellcheck disable=SC2086 # word splitting of the flags is meant
COMPILE_ARGS=${KVZ_COMPILE_ARGS:---method kvzip --ratio 0.3 --bits 4}
N=${SLURM_ARRAY_TASK_COUNT:-16}

if [ "${KVZ_STEP:-compile}" = merge ]; then
    kvz merge "$OUT"/shards/* --into "$OUT/merged"
    kvz verify --store "$OUT/merged"
    kvz pack --store "$OUT/merged" --all -o "$OUT/corpus.tar.zst"
    exit 0
fi

I=${SLURM_ARRAY_TASK_ID:?run as an array job (sbatch --array=0-N-1)}
# Each shard writes to local disk, then moves the finished store into place:
# LMDB wants a local filesystem for the writer's lock.
LOCAL=${TMPDIR:-/tmp}/kvz-shard-$I
mkdir -p "$OUT/shards" "$OUT/logs"
kvz compile "$CORPUS" --store "$LOCAL" --model "$MODEL" $COMPILE_ARGS \
    --threads "${SLURM_CPUS_PER_TASK:-2}" --shard "$I/$N" --json >"$OUT/logs/shard-$I.jsonl"
kvz verify --store "$LOCAL"
rm -rf "$OUT/shards/.$I.tmp"
cp -r "$LOCAL" "$OUT/shards/.$I.tmp" && rm -rf "$OUT/shards/$I" && mv "$OUT/shards/.$I.tmp" "$OUT/shards/$I"
