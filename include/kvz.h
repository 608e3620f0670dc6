/*
 * kvz.h — the public contract of libkvz.
 *
 * Conventions (kept by every public function):
 *   - functions return an int status: KVZ_OK (0) on success, a negative
 *     kvz_status on failure; results come back through out-parameters;
 *   - after a failure, kvz_last_error() returns a message for this thread that
 *     names what was wrong (file, tensor, offset...); kvz_strerror() gives the
 *     generic text of a code;
 *   - handles are opaque and come in open/close (or new/free) pairs.
 *
 * The status enum is append-only: new codes are added at the end, existing
 * values never change.
 */
#ifndef KVZ_H
#define KVZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbols of libkvz.so: only what this header declares is exported. */
#if defined(__GNUC__)
#define KVZ_API __attribute__((visibility("default")))
#else
#define KVZ_API
#endif

#define KVZ_VERSION_MAJOR 0
#define KVZ_VERSION_MINOR 3
#define KVZ_VERSION_PATCH 16
#define KVZ_VERSION_STRING "0.3.16"

typedef enum kvz_status {
    KVZ_OK = 0,
    KVZ_ERR_ARG = -1,            /* invalid argument from the caller */
    KVZ_ERR_NOMEM = -2,          /* an allocation failed */
    KVZ_ERR_IO = -3,             /* open/read/write/mmap failed */
    KVZ_ERR_FORMAT = -4,         /* input is malformed, truncated or corrupt */
    KVZ_ERR_UNSUPPORTED = -5,    /* well-formed but not supported (type, arch, version) */
    KVZ_ERR_MODEL_MISMATCH = -6, /* data made for another model */
    KVZ_ERR_NOT_FOUND = -7,      /* a named file, key, tensor or document is absent */
    KVZ_ERR_BACKEND = -8,        /* the compute device failed */
    KVZ_ERR_RANGE = -9,          /* a size or position beyond a limit (context full) */
    KVZ_ERR_INTERNAL = -10      /* a broken invariant: a bug in kvz */
} kvz_status;

/* Generic text for a status code; never NULL. */
KVZ_API const char *kvz_strerror(int status);

/* The detailed message of the most recent failure on this thread ("" if
 * none). A call that succeeds leaves it as it was: read it only after a
 * call returned an error. */
KVZ_API const char *kvz_last_error(void);

/* "0.3.16": the library actually loaded (may differ from KVZ_VERSION_STRING). */
KVZ_API const char *kvz_version(void);

/* Free memory kvz returned to the caller (answers, texts). NULL is fine. */
KVZ_API void kvz_free(void *p);

/* ------------------------------------------------------------------------
 * Engine: a model and a store, opened together.
 *
 * Typical use (a RAG pipeline):
 *
 *     kvz_engine *e;  kvz_session *s;  char *answer;
 *     kvz_engine_open(&e, "corpus.store", "model.gguf", NULL);
 *     const char *docs[] = {"handbook.md"};
 *     kvz_session_open(&s, e, docs, 1, NULL);
 *     kvz_session_ask(s, "Who signs expense reports?", NULL, &answer, NULL);
 *     ... kvz_free(answer); more questions ...
 *     kvz_session_close(s);  kvz_engine_close(e);
 *
 * Threads: an engine may be shared by threads that each use their own
 * sessions; a session is used by one thread at a time. Sessions share the
 * engine's model (its weights, loaded once) but each computes on its own
 * (scratch memory, and on the GPU its own stream), so sessions on different
 * threads load and answer at the same time, each with up to `threads` host
 * threads: with many at once on the CPU, give the engine fewer threads. The
 * engine keeps the working memory of closed sessions for the next ones (up
 * to idle_sessions of them) until it is closed. A session asked again while
 * it answers (from its stream callback, or from another thread) refuses with
 * KVZ_ERR_ARG. Closing it while it answers (from its stream callback, or
 * another thread, with a stream callback or without) stops the answer at its
 * next token (reported as KVZ_STOP_CALLBACK); the ask returns what it has and
 * then frees the session, which must not be used again. A close from another
 * thread that comes before the ask has begun frees the session at once, as
 * any close: the application orders the two. Closing the
 * engine while sessions are open is allowed: they keep working, and the
 * engine is freed when the last of them closes. A close frees its handle:
 * closing it again, or using it after, is undefined (as with free).
 *
 * Engines on one store in one process share its LMDB environment, so that
 * opening a new engine before closing the old one (a reload) is safe: LMDB's
 * locks on lock.mdb belong to the process, and a second environment's close
 * would drop the first one's. When a compile elsewhere grows the store past
 * the map this process has of it, the next read remaps it once the reads open
 * on other threads (a load, a listing) end: such a call waits for them (up to
 * a minute) rather than failing. An engine opened on a store whose first
 * compile has committed nothing yet sees that compile's documents once it
 * has. An engine keeps the store it opened: one replaced under it (moved
 * over, removed and made again) is seen by the engines opened after. An
 * engine also reads its model's file, mapped, for as long as it is open
 * (its vocabulary and some of its weights): replace a model in service by
 * moving a new file over it (mv, rename), never by writing over it (cp onto
 * it, truncating it), which ends the process with SIGBUS at its next
 * question; the same holds for a store's data.mdb.
 *
 * The process: on the CPU, kvz computes with OpenMP threads and OpenBLAS,
 * which it sets to one thread of its own (openblas_set_num_threads(1), for
 * the whole process: a host program that calls the same OpenBLAS gets that
 * too). The engine keeps the model's weights on the CPU as f32 (4 bytes a
 * weight, made at open: the fastest) where that takes at most a third of the
 * memory (the physical memory, or this process's cgroup memory limit where
 * lower: a container's) and 16 GiB, else the file's own blocks, decoded as
 * they are used. Where memory cannot be had, kvz's own allocations fail with
 * KVZ_ERR_NOMEM, but these two libraries may not: under an address-space
 * limit (RLIMIT_AS, `ulimit -v`) OpenBLAS 0.3.21 retries a failed buffer for
 * ever and libgomp ends the process when it cannot start a thread. Do not
 * run a service under RLIMIT_AS; give it the memory its engine and sessions
 * need and bound it from outside (a cgroup's memory.max ends the process
 * instead, which a supervisor sees and restarts).
 *
 * fork: an engine, and its sessions, belong to the process that opened it;
 * in a child of fork the calls that read its store or compute return
 * KVZ_ERR_ARG saying so, and closing them does nothing (the parent's locks
 * and descriptors stay the parent's). Open an engine in the child, after
 * fork. Where the parent ran
 * kvz with more than one thread, the child's engines run one (libgomp's
 * threads do not survive fork, and a region of several waits for them).
 *
 * A store damaged on disk: every key and value LMDB hands back is checked
 * against the file, and artifacts against their checksums (KVZ_ERR_FORMAT,
 * naming what is damaged). LMDB trusts its own pages, though, and some damage
 * makes it fault inside itself (SIGSEGV or SIGBUS), which a library cannot
 * turn into an error; the kvz CLI reports it as a damaged store (exit 4). Run
 * `kvz verify --store DIR` on a store you did not write (from a bundle, a
 * copy) before a long-running process serves from it.
 *
 * GPU memory: where the device has memory pools, kvz allocates from the
 * device's default pool (stream-ordered) and raises its release threshold
 * from 0 (unless the application set one), so what a closed session freed is
 * kept for the next instead of going back to the driver at each
 * synchronisation; an allocation that fails trims the pool and tries again.
 * KVZ_CUDA_MEMORY_POOLS=0 in the environment uses cudaMalloc instead.
 *
 * Which GPU: the first the process sees (device 0; CUDA_VISIBLE_DEVICES
 * chooses it), of compute capability 8.0 or later (A100, H100, RTX 30xx and
 * newer: the oldest code the build holds); on an older one KVZ_RUN_ON_AUTO
 * runs on the CPU and KVZ_RUN_ON_CUDA fails with KVZ_ERR_BACKEND. So does a
 * GPU that cannot start (exclusive mode taken) or hold the model's weights:
 * KVZ_RUN_ON_AUTO then opens the engine on the CPU (the CLI says so), while
 * KVZ_RUN_ON_CUDA fails (KVZ_ERR_BACKEND or KVZ_ERR_NOMEM). A call that
 * works on the GPU makes device 0 the calling thread's current device (an
 * application that uses another GPU on that thread sets its own again after).
 * ------------------------------------------------------------------------ */
typedef struct kvz_engine kvz_engine;
typedef struct kvz_session kvz_session;

typedef enum kvz_device_choice {
    KVZ_RUN_ON_CPU = 0,
    KVZ_RUN_ON_CUDA = 1,
    KVZ_RUN_ON_AUTO = 2 /* cuda when built in and a GPU it runs on is present, else cpu */
} kvz_device_choice;

#define KVZ_MAX_THREADS 1024

typedef struct kvz_engine_options {
    int device;  /* a kvz_device_choice (default KVZ_RUN_ON_AUTO) */
    int threads; /* host threads (0: $OMP_NUM_THREADS, else every CPU this process may use; at most KVZ_MAX_THREADS) */
    /* Closed sessions' working memory kept for the next sessions to open
     * (scratch and load staging; on the GPU also a stream and a cuBLAS
     * handle, and the staging is pinned): at most this many, the rest is freed
     * at close. 0: 4; -1: none (each session starts cold). */
    int idle_sessions;
} kvz_engine_options;

/* Open the store at `store_dir` (read-only: compiles may run beside it) and
 * load the GGUF model at `model_path` (NULL: the KVZ_MODEL environment
 * variable; there is no other default). `opts` NULL: defaults. Errors:
 * KVZ_ERR_IO / KVZ_ERR_NOT_FOUND (no such store or model), KVZ_ERR_ARG
 * (model_path NULL and KVZ_MODEL unset), KVZ_ERR_FORMAT, KVZ_ERR_UNSUPPORTED (the model, or
 * KVZ_RUN_ON_CUDA in a library built without CUDA), KVZ_ERR_BACKEND (no usable
 * GPU for KVZ_RUN_ON_CUDA: none, or one older than compute capability 8.0). */
KVZ_API int kvz_engine_open(kvz_engine **out, const char *store_dir, const char *model_path,
                            const kvz_engine_options *opts);
KVZ_API void kvz_engine_close(kvz_engine *e);

/* The store's documents (sorted by name) that have a compiled form for this
 * engine's model: `*names` is an array of `*count` strings (none: a list
 * holding only its NULL end); free the whole list with one kvz_free(*names).
 * Errors: KVZ_ERR_FORMAT (a document's record does not decode, the document
 * named: damaged, or written by a newer kvz; the message says which),
 * KVZ_ERR_IO, KVZ_ERR_NOMEM. */
KVZ_API int kvz_engine_documents(kvz_engine *e, char ***names, size_t *count);

/* The text of a compiled document, rebuilt from the tokens its artifacts keep
 * (the normalised text: no byte-order mark, LF line ends). Free with kvz_free.
 * Errors: KVZ_ERR_NOT_FOUND (no such document), KVZ_ERR_MODEL_MISMATCH (the
 * document is compiled for other models only), KVZ_ERR_FORMAT (a damaged
 * artifact, the document named). */
KVZ_API int kvz_engine_document_text(kvz_engine *e, const char *name, char **text, size_t *len);

/* One compiled form of a document: the store keeps a form per compile
 * configuration (method, ratio, bits, ... and model). `number` is this store's
 * (the order the forms arrived: another store may number the same forms
 * otherwise, and this one renumbers them when a form leaves, by gc
 * --older-configs or a recompile of changed content, which replaces every
 * form); `id` is the configuration's, the same in every store and time. */
typedef struct kvz_config_info {
    int32_t number;             /* counted from 1: the `config` of the calls below */
    int32_t this_model;         /* 1: compiled by the engine's model (only those load) */
    uint64_t id;                /* kvz_session_options.config_id; `kvz ls` shows its first 8 hex digits */
    uint64_t model_fingerprint;
    uint64_t created;           /* seconds since 1970 */
    uint64_t stored_bytes;      /* all its segments' artifacts */
    int32_t tokens, segments;   /* the whole document's tokens; its segments */
    char summary[128];          /* "kvzip pair ratio 0.30, 4-bit" */
} kvz_config_info;

/* The compiled forms of a document, in `number` order: `*count` of them in
 * `*configs` (free with kvz_free; on an error NULL and 0). Errors:
 * KVZ_ERR_NOT_FOUND (no such document). */
KVZ_API int kvz_engine_document_configs(kvz_engine *e, const char *name, kvz_config_info **configs,
                                        size_t *count);

/* A compiled document's segments in the form that `config` (numbered as by
 * `kvz ls`) or `config_id` (kvz_config_info.id) names, as kvz_session_options
 * does (both 0: the newest made by this engine's model; both given:
 * KVZ_ERR_ARG): `*count` of them, (*tokens)[i] the number of tokens of
 * segment i (the positions it takes in a context). Free *tokens with kvz_free
 * (on an error it is NULL and *count 0). Errors: KVZ_ERR_NOT_FOUND,
 * KVZ_ERR_MODEL_MISMATCH, KVZ_ERR_ARG, KVZ_ERR_FORMAT (a damaged record or
 * artifact, named). */
KVZ_API int kvz_engine_document_segments(kvz_engine *e, const char *name, int32_t config, uint64_t config_id,
                                         int32_t **tokens, size_t *count);

/* The text of one segment (counted from 0) of the compiled form `config` or
 * `config_id` names (as kvz_engine_document_segments; both 0: the newest made
 * by this engine's model, the one kvz_session_open loads by default), as
 * kvz_engine_document_text gives a whole document's: for retrieval over the
 * runs of long documents. Forms compiled with different segment lengths cut
 * the text in different places. Errors: as kvz_engine_document_text's, and
 * KVZ_ERR_NOT_FOUND for a configuration or segment the document does not have. */
KVZ_API int kvz_engine_segment_text(kvz_engine *e, const char *name, int32_t config, uint64_t config_id,
                                    int32_t segment, char **text, size_t *len);

/* ------------------------------------------------------------------------
 * Session: documents loaded from the store (never prefilled again), then
 * question after question; each question sees only the documents.
 * ------------------------------------------------------------------------ */
typedef struct kvz_session_options {
    int32_t reserve; /* context tokens for question + answer (0: 512) */
    int32_t config;  /* compiled form to load, numbered as by `kvz ls` (0: the newest
                        made by the engine's model) */
    uint64_t config_id; /* or the form of this configuration (kvz_config_info.id: the
                           same in every store, where numbers follow arrival); 0: none.
                           Not with `config` (KVZ_ERR_ARG) */
} kvz_session_options;

typedef struct kvz_load_info {
    double load_ms;          /* the whole load */
    uint64_t artifact_bytes; /* read from the store */
    int32_t documents, segments;
    int32_t document_tokens; /* the original length of what was loaded (the prefix not counted) */
    uint64_t kept_pairs;     /* key/value rows loaded over all layers and heads */
} kvz_load_info;

/* Compose the named documents into one context, in the order given. Errors:
 * KVZ_ERR_ARG (no names: count 0), KVZ_ERR_NOT_FOUND, KVZ_ERR_MODEL_MISMATCH
 * (compiled by another model; both are named), KVZ_ERR_FORMAT (a corrupt
 * artifact), KVZ_ERR_RANGE (too long for the model's context with the
 * reserve: a document compiled in segments can be loaded a run of them at a
 * time, with kvz_session_open_parts). */
KVZ_API int kvz_session_open(kvz_session **out, kvz_engine *e, const char *const *names, size_t count,
                             const kvz_session_options *opts);

/* A document longer than a segment (the model's context less the shared
 * prefix and the compile's reserve, or its KVzip scoring pass when larger) is
 * compiled in segments, and all of them together may not fit one
 * context: load a run of them. `segments` 0: from first_segment to the last. */
typedef struct kvz_doc_part {
    const char *name;
    int32_t first_segment; /* counted from 0 */
    int32_t segments;
} kvz_doc_part;

/* kvz_session_open for parts of documents, composed in the order given.
 * Errors as kvz_session_open's, KVZ_ERR_NOT_FOUND for segments a document
 * does not have, KVZ_ERR_ARG for a negative first_segment or segments. */
KVZ_API int kvz_session_open_parts(kvz_session **out, kvz_engine *e, const kvz_doc_part *parts, size_t count,
                                   const kvz_session_options *opts);

KVZ_API void kvz_session_close(kvz_session *s);
KVZ_API int kvz_session_load_info(const kvz_session *s, kvz_load_info *info);

/* Called with each piece of the answer as it is generated (UTF-8 bytes, not
 * NUL-terminated; a character may span two calls). Return non-zero to stop.
 * It runs on the asking thread, between two steps of the answer. */
typedef int (*kvz_stream_fn)(void *user, const char *piece, size_t len);

typedef struct kvz_ask_options {
    int32_t max_tokens;  /* answer limit (0: 256) */
    float temperature;   /* 0: greedy */
    float top_p;         /* with temperature > 0 (0: 0.95) */
    uint64_t seed;       /* same seed, same answer (0 is a seed as any; kvz query's default is 1) */
    kvz_stream_fn stream; /* optional */
    void *stream_user;
} kvz_ask_options;

typedef struct kvz_ask_info {
    int32_t question_tokens, answer_tokens;
    double first_token_ms; /* the question's prefill: time to the first token */
    double decode_tokens_per_s; /* after the first token; 0 for an answer of one token */
    int ended_turn;        /* stopped on end of turn (not on the limit or the callback) */
    int32_t stopped_by;    /* why the answer ended: a kvz_stop (in what was padding: same size) */
} kvz_ask_info;

typedef enum kvz_stop {
    KVZ_STOP_END_OF_TURN = 1, /* the model ended its turn */
    KVZ_STOP_MAX_TOKENS = 2,  /* max_tokens reached */
    KVZ_STOP_CALLBACK = 3,    /* the stream callback returned non-zero, or the session was closed */
    KVZ_STOP_RESERVE = 4      /* the context reserved for question and answer is full */
} kvz_stop;

/* Answer `question` about the loaded documents. `*answer` (NUL-terminated,
 * free with kvz_free) may be NULL when only streaming is wanted; `info` may
 * be NULL; on an error *answer is NULL and *info zeroed. Errors:
 * KVZ_ERR_RANGE (the question does not fit the reserve), KVZ_ERR_ARG (an
 * empty or blank question, one that is not UTF-8, options out of range, or
 * the session answering already). A blank question is one of whitespace
 * only, Unicode's (U+3000, U+00A0) included. The answer is the bytes of the
 * tokens generated: one stopped by max_tokens may end in the first bytes of a
 * character (`kvz query` and the Python binding leave those out). Bytes of
 * the question the model's vocabulary has no token for are left out of what
 * the model reads, as compile leaves them out of a document (SmolLM2: the
 * controls 0x04 0x06 0x13 0x14 0x16 0x1D and the lead bytes 0xF1 0xF2). */
KVZ_API int kvz_session_ask(kvz_session *s, const char *question, const kvz_ask_options *opts,
                            char **answer, kvz_ask_info *info);

#ifdef __cplusplus
}
#endif
#endif /* KVZ_H */
