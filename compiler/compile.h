/*
 * compile.h — the batch compiler: a document in, verified artifacts in the
 * store out (DESIGN §3-§7).
 *
 * Per document: segment it to fit the model's context; for each segment
 * prefill [prefix | segment] once, score the pairs, select, quantize and
 * encode an artifact; then write every new artifact and the document record
 * in one store transaction. Artifacts are content-addressed by (model, compile
 * parameters, document content, segment), so compiling the same thing twice
 * writes nothing and a killed run resumes where it stopped.
 *
 * Memory: the model, one KV cache of the model's context (f32, on the
 * backend), activations for one prefill chunk, scores of one segment
 * (layers x KV heads x tokens f32) and the artifact being written.
 */
#ifndef KVZ_COMPILER_COMPILE_H
#define KVZ_COMPILER_COMPILE_H

#include "compiler/select.h"
#include "format/store.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_compile_opts {
    kvz_select_opts sel;    /* sel.window 0: SnapKV's default, 32 or 16 under 1K tokens */
    uint32_t bits;          /* 16, 8, 4, 2 */
    uint32_t key_group;     /* tokens per key quantization group */
    uint32_t value_group;   /* channels per value quantization group */
    uint32_t fp16_tokens;   /* document tokens below this index stay f16 */
    int zstd_level;
    int32_t kvzip_chunk;    /* document tokens per KVzip scoring pass (2048) */
    int32_t pool;           /* SnapKV max-pool kernel (7) */
    int32_t reserve;        /* context tokens left free after a segment */
    const char *question;   /* window methods: score with this question (query-aware) */
    int force;              /* recompile even when the store has it */
    uint32_t given;         /* KVZ_GIVEN_*: options the caller set, refused where they do not
                             * apply even at their default value (else only when changed) */
} kvz_compile_opts;

enum {
    KVZ_GIVEN_WINDOW = 1u << 0,
    KVZ_GIVEN_POOL = 1u << 1,
    KVZ_GIVEN_REUSE = 1u << 2,
    KVZ_GIVEN_BETA = 1u << 3,
    KVZ_GIVEN_DECAY = 1u << 4,
    KVZ_GIVEN_KVZIP_CHUNK = 1u << 5,
    KVZ_GIVEN_SEED = 1u << 6,
    KVZ_GIVEN_LEVEL = 1u << 7,
    KVZ_GIVEN_SHAPE = 1u << 8,
    KVZ_GIVEN_SINKS = 1u << 9,
    KVZ_GIVEN_VALUE_GROUP = 1u << 10, /* else the default 64 becomes a divisor of a head size it does not divide */
};

/* The defaults every flag of `kvz compile` starts from. */
void kvz_compile_opts_default(kvz_compile_opts *o);

/* Check the options against each other; KVZ_ERR_ARG naming the conflict. */
int kvz_compile_opts_check(const kvz_compile_opts *o);

/* The same, and whether they fit the model (its context after the prompt, the
 * question and --reserve; the value group against its heads): what
 * kvz_compiler_new would refuse, known before a store is opened. */
int kvz_compile_opts_fit(kvz_model *m, const kvz_compile_opts *o);

typedef struct kvz_compiler kvz_compiler;

int kvz_compiler_new(kvz_compiler **out, kvz_model *m, kvz_store *s, const kvz_compile_opts *o);
void kvz_compiler_free(kvz_compiler *c);

/* Write the model's shared prompt prefix into the store unless it is there
 * (compile does this with its first document; import needs it alone).
 * *prefix_hash: the hash that names it. */
int kvz_compiler_store_prefix(kvz_compiler *c, uint64_t *prefix_hash);

/* The most document tokens one segment may hold. */
int32_t kvz_compiler_segment_limit(const kvz_compiler *c);

typedef enum kvz_doc_status {
    KVZ_DOC_COMPILED = 0,
    KVZ_DOC_UNCHANGED = 1, /* already in the store with these parameters */
    KVZ_DOC_EMPTY = 2,     /* no token (the tokenizer keeps none of its bytes): KVZ_ERR_FORMAT */
    KVZ_DOC_STALE = 3,     /* compiled, but its source changed since it was read (the check of
                            * kvz_compiler_check_current): nothing written, KVZ_OK */
} kvz_doc_status;

typedef struct kvz_doc_result {
    kvz_doc_status status;
    int32_t tokens;          /* document tokens (all segments) */
    int32_t segments;
    uint64_t kept_pairs;     /* over all segments, layers and heads */
    uint64_t total_pairs;
    uint64_t bytes;          /* artifact bytes */
    int32_t shared_segments; /* segments whose artifact the store had (the same content under
                              * another name): nothing computed, not in kept/total_pairs */
    uint32_t dropped_forms;  /* the name held other content: its compiled forms in other
                              * configurations, gone with it (a document is one content) */
    uint64_t untokenized;    /* bytes the model's vocabulary has no token for: left out */
    uint8_t first_untokenized; /* the first of them */
    double prefill_s, score_s, write_s;
} kvz_doc_result;

/* Tokens processed, for progress within long documents: done of the
 * document's total (known once it is segmented), of which `stored` were of
 * segments found in the store (an interrupted run's: not computed again). */
typedef void (*kvz_compile_progress_fn)(void *ctx, int64_t tokens_in_document, int64_t total, int64_t stored);

/* Whether the source of document `name` still holds the content `hash` (1) or
 * has changed since it was read (0). */
typedef int (*kvz_still_current_fn)(void *ctx, const char *name, const uint8_t hash[16]);

/* Ask fn (NULL: never) inside each document's write transaction, before
 * anything is written: a document whose source changed while it was compiled
 * is not written (KVZ_DOC_STALE). Two compiles of one name into one store
 * then leave the content read last, whichever finishes first: a later reader
 * of the source writes after this transaction or has written before it. */
void kvz_compiler_check_current(kvz_compiler *c, kvz_still_current_fn fn, void *ctx);

/* Compile one document (normalised text, its xxh3-128 hash) into the store. */
int kvz_compile_document(kvz_compiler *c, const char *name, const char *text, size_t len,
                         const uint8_t hash[16], kvz_doc_result *r, kvz_compile_progress_fn progress,
                         void *progress_ctx);

/* A one-line description of the parameters ("kvzip pair ratio 0.30, 4-bit"). */
void kvz_compile_summary(const kvz_compile_opts *o, char *out, size_t size);

#endif
