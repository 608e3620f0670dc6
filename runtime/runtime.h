/*
 * runtime.h — precompiled documents in, answers out (DESIGN §8).
 *
 * Loading reads each artifact straight from LMDB's map inside one read
 * transaction (no copy of the artifact), checks its checksums and that it was
 * compiled by the loaded model with the same shared prefix, decodes and
 * dequantizes every (layer, head), applies RoPE at the target positions and
 * fills a context whose heads have their own lengths. Several documents
 * compose into one context: the prefix once, then each document (every
 * segment of it, or the run of them asked for) at the positions following
 * the previous one.
 *
 * Asking evaluates the question after the loaded documents, generates the
 * answer, then drops the question's KV so the next question sees only the
 * documents again.
 */
#ifndef KVZ_RUNTIME_RUNTIME_H
#define KVZ_RUNTIME_RUNTIME_H

#include "kvz.h"
#include "format/doc_record.h"
#include "format/store.h"
#include "model/generate.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_loaded kvz_loaded;

typedef struct kvz_load_opts {
    int32_t reserve;  /* tokens left for question + answer (default 512) */
    kvz_config_pick config; /* which compiled form of each document (format/doc_record.h;
                               {0}: the most recent one made by this model) */
    size_t staging;   /* the most stored bytes handed to the backend at once (default
                         64 MiB): a larger layer goes in groups of heads, a single
                         head larger than this alone. On the GPU two such buffers
                         are pinned, so this bounds the pinned memory a load takes */
    kvz_backend *backend; /* NULL: the model's; or one forked from it (kernels/backend.h)
                             that the load and its questions run on, so that loads
                             of one model work on several threads at once; it must
                             outlive the loaded */
} kvz_load_opts;

typedef struct kvz_load_stats {
    double seconds;          /* the whole load */
    double decode_seconds;   /* checksums, zstd, dequantization, RoPE */
    uint64_t artifact_bytes; /* read from the store */
    uint64_t rows;           /* key/value rows loaded (all layers and heads) */
    uint64_t staged_peak;    /* the most stored bytes handed to the backend at once */
    int32_t documents, segments;
    int32_t prefix_tokens;
    int32_t original_tokens; /* the documents' uncompressed length */
    int segmented;           /* more than one segment of a document was loaded */
} kvz_load_stats;

/* Load documents (store names) for `m` from `store`. Errors: KVZ_ERR_NOT_FOUND
 * (no such document, or no compiled form for this model), KVZ_ERR_MODEL_MISMATCH
 * (compiled by another model: both are named), KVZ_ERR_FORMAT (a corrupt
 * artifact or record), KVZ_ERR_RANGE (the documents and the reserve exceed the
 * model's context). */
int kvz_load(kvz_model *m, kvz_store *store, const char *const *names, size_t n_names,
             const kvz_load_opts *opts, kvz_loaded **out, kvz_load_stats *stats);

/* Each of `names` as a whole document, to load with kvz_load_parts; free()
 * it. NULL when out of memory (the error is set). */
kvz_doc_part *kvz_whole_documents(const char *const *names, size_t n_names);

/* kvz_load for runs of documents' segments (kvz.h's kvz_doc_part); a run a
 * document does not have is KVZ_ERR_NOT_FOUND, a negative one KVZ_ERR_ARG. */
int kvz_load_parts(kvz_model *m, kvz_store *store, const kvz_doc_part *parts, size_t n_parts,
                   const kvz_load_opts *opts, kvz_loaded **out, kvz_load_stats *stats);
void kvz_loaded_free(kvz_loaded *l);

/* Answer `question`; the answer's tokens are appended to `answer`. */
int kvz_loaded_ask(kvz_loaded *l, const char *question, const kvz_generate_opts *opts,
                   kvz_tokens *answer, kvz_generate_stats *stats);

/* Next-token logits while teacher-forcing an answer, for fidelity
 * measurements: row i (0 <= i < n) is the distribution of answer token i
 * given the question and answer[0..i). `logits` holds n x vocab floats;
 * `answer` may be NULL when n == 1. The question's KV is dropped afterwards. */
int kvz_loaded_teacher_force(kvz_loaded *l, const char *question, const int32_t *answer, int32_t n,
                             float *logits);

/* Logits of the first answer token (teacher-forcing nothing). */
int kvz_loaded_first_logits(kvz_loaded *l, const char *question, float *logits);

kvz_context *kvz_loaded_context(kvz_loaded *l);

/* The record of document `name` (free with kvz_doc_record_free). Errors:
 * KVZ_ERR_NOT_FOUND (said: no such document), KVZ_ERR_FORMAT. */
int kvz_document_record(kvz_store_txn *t, const char *name, kvz_doc_record *rec);

/* The tokens of a stored document (all its segments in order, or with
 * `segment` >= 0 that one alone) from the compiled form `config` would load
 * (as kvz_load_opts's). A segment it does not have: KVZ_ERR_NOT_FOUND. */
int kvz_document_tokens(kvz_model *m, kvz_store *store, const char *name, const kvz_config_pick *config,
                        int32_t segment,
                        kvz_tokens *out);

/* The tokens of each segment of that compiled form: *count of them in
 * *tokens (malloc'd). */
int kvz_document_segments(kvz_model *m, kvz_store *store, const char *name, const kvz_config_pick *config,
                          int32_t **tokens, size_t *count);

/* *found = whether a `docs` record has a compiled form made by the model
 * `fingerprint`. KVZ_ERR_FORMAT for a record that does not decode (its model
 * cannot be told, so it is not taken as another's). */
int kvz_doc_record_has_model(const void *record, size_t size, uint64_t fingerprint, int *found);

/* How many closed sessions' backends an engine keeps warm (api.c; for tests). */
struct kvz_engine;
size_t kvz_engine_idle_backends(struct kvz_engine *e);

/* The engine's model's device_note ("" or why --device auto runs on the CPU). */
const char *kvz_engine_device_note(struct kvz_engine *e);

/* How many bytes of `text` the engine's model has no token for (its reading
 * leaves them out, as compile leaves them out of a document), and the first
 * of them (*first, where *count > 0): for the CLI to say so. */
int kvz_engine_untokenized(struct kvz_engine *e, const char *text, size_t *count, uint8_t *first);

/* kvz_engine_open with the CPU weights kept as `weights` (a kvz_weight_policy;
 * kvz_engine_open: KVZ_WEIGHTS_AUTO), for the CLI: kvz_engine_options cannot
 * grow within the 0.x ABI. */
struct kvz_engine_options;
int kvz_engine_open_weights(struct kvz_engine **out, const char *store_dir, const char *model_path,
                            const struct kvz_engine_options *opts, int weights);

#endif
