/* api.c — the public C API of include/kvz.h over the runtime. */
#include "kvz.h"

#include "common/buffer.h"
#include "common/error.h"
#include "model/identity.h"
#include "model/utf8.h"
#include "runtime/runtime.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kvz_engine {
    kvz_model *model;
    kvz_store *store;
    uint64_t fingerprint;
    /* Backends forked from the model's that no session holds: a session
     * computes on one of its own (scratch, staging, and on the GPU a stream
     * and cuBLAS handle), and hands it back on closing so that the next one
     * finds it warm; at most idle_max of them (kvz_engine_options). */
    pthread_mutex_t pool_lock;
    kvz_backend **idle;
    size_t n_idle, idle_cap, idle_max;
    /* The caller's handle and each open session (all under pool_lock): a
     * session maps the store and computes with the model, so the engine is
     * freed when the last of them lets go, whichever order they close in. */
    size_t holders;
    pid_t opener; /* for messages: a child of fork may not use it (used_in_fork_child) */
};

struct kvz_session {
    kvz_engine *engine;
    kvz_backend *backend; /* from the engine's pool */
    kvz_loaded *loaded;
    kvz_load_info info;
    /* ANSWER_IDLE, ANSWERING (a second ask, nested or another thread's, is
     * refused) or CLOSE_WHEN_ANSWERED (closed meanwhile: the ask frees it) */
    atomic_int answering;
};

/* An engine its parent opened, used in a child of fork: the store's LMDB
 * environment does not cross fork, the pool's lock may be held by a thread
 * the child lacks, and OpenMP's threads did not come along. */
static int used_in_fork_child(const kvz_engine *e, const char *call)
{
    if (kvz_store_opened_here(e->store))
        return KVZ_OK;
    return kvz_errorf(KVZ_ERR_ARG, "%s: the engine was opened by process %ld and this is a child of fork (%ld): "
                      "open an engine in the child, after fork (its sessions too)", call, (long)e->opener,
                      (long)getpid());
}

/* A forked backend for a new session: an idle one, or a new fork. */
static int take_backend(kvz_engine *e, kvz_backend **out)
{
    *out = NULL;
    pthread_mutex_lock(&e->pool_lock);
    if (e->n_idle > 0)
        *out = e->idle[--e->n_idle];
    pthread_mutex_unlock(&e->pool_lock);
    if (*out)
        return KVZ_OK;
    kvz_backend *b = e->model->backend;
    return b->ops->fork(b, out);
}

/* A closed session's backend back to the pool (destroyed when the pool is full or cannot grow). */
static void give_back_backend(kvz_engine *e, kvz_backend *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&e->pool_lock);
    kvz_backend **grown =
        e->n_idle < e->idle_max ? kvz_grow(e->idle, &e->idle_cap, e->n_idle, sizeof *grown) : NULL;
    if (grown) {
        e->idle = grown;
        e->idle[e->n_idle++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&e->pool_lock);
    if (b)
        b->ops->destroy(b);
}

size_t kvz_engine_idle_backends(kvz_engine *e)
{
    pthread_mutex_lock(&e->pool_lock);
    size_t n = e->n_idle;
    pthread_mutex_unlock(&e->pool_lock);
    return n;
}

const char *kvz_engine_device_note(kvz_engine *e)
{
    return e->model->device_note;
}

int kvz_engine_untokenized(kvz_engine *e, const char *text, size_t *count, uint8_t *first)
{
    return kvz_tokenizer_untokenized(e->model->tokenizer, text, strlen(text), count, first);
}

/* The public device choice is passed straight to the backend. */
_Static_assert(KVZ_RUN_ON_CPU == (int)KVZ_DEVICE_CPU && KVZ_RUN_ON_CUDA == (int)KVZ_DEVICE_CUDA &&
                   KVZ_RUN_ON_AUTO == (int)KVZ_DEVICE_AUTO,
               "kvz_device_choice must match kvz_device");

/* The answer's stop reason is passed straight through too. */
_Static_assert(KVZ_STOP_END_OF_TURN == (int)KVZ_GENERATE_END_OF_TURN && KVZ_STOP_MAX_TOKENS == (int)KVZ_GENERATE_MAX_TOKENS &&
                   KVZ_STOP_CALLBACK == (int)KVZ_GENERATE_CALLBACK && KVZ_STOP_RESERVE == (int)KVZ_GENERATE_CONTEXT_FULL,
               "kvz_stop must match kvz_generate_stop");
/* stopped_by took ended_turn's tail padding: callers built before it allocate the same size */
_Static_assert(sizeof(kvz_ask_info) == 32, "kvz_ask_info grew: its size is part of the ABI");

const char *kvz_version(void) { return KVZ_VERSION_STRING; }

void kvz_free(void *p) { free(p); }

int kvz_engine_open(kvz_engine **out, const char *store_dir, const char *model_path,
                    const kvz_engine_options *opts)
{
    return kvz_engine_open_weights(out, store_dir, model_path, opts, KVZ_WEIGHTS_AUTO);
}

static void release_engine(kvz_engine *e);

int kvz_engine_open_weights(kvz_engine **out, const char *store_dir, const char *model_path,
                            const kvz_engine_options *opts, int weights)
{
    if (out)
        *out = NULL;
    if (!out || !store_dir)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_open: out and store_dir are required");
    if (!model_path || !model_path[0])
        model_path = getenv("KVZ_MODEL");
    if (!model_path || !model_path[0])
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_open: no model path given and KVZ_MODEL is not set");
    kvz_engine_options o = opts ? *opts : (kvz_engine_options){.device = KVZ_RUN_ON_AUTO};
    if (o.device < KVZ_RUN_ON_CPU || o.device > KVZ_RUN_ON_AUTO || o.threads < 0 || o.threads > KVZ_MAX_THREADS ||
        o.idle_sessions < -1)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_open: device %d, threads %d (0..%d) or idle_sessions %d out "
                          "of range", o.device, o.threads, KVZ_MAX_THREADS, o.idle_sessions);
    kvz_engine *e = calloc(1, sizeof *e);
    if (!e)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&e->pool_lock, NULL) != 0) {
        free(e);
        return kvz_errorf(KVZ_ERR_NOMEM, "kvz_engine_open: cannot create the engine's lock");
    }
    e->holders = 1;
    e->opener = getpid();
    e->idle_max = o.idle_sessions == 0 ? 4 : o.idle_sessions < 0 ? 0 : (size_t)o.idle_sessions;
    kvz_model_config mc = {.backend = {.device = (kvz_device)o.device, .n_threads = o.threads,
                                       .weights = (kvz_weight_policy)weights}};
    int rc = kvz_store_open(&e->store, store_dir, KVZ_STORE_READONLY);
    if (rc == KVZ_OK)
        rc = kvz_model_load(&e->model, model_path, &mc);
    if (rc != KVZ_OK) {
        release_engine(e); /* made here, its store perhaps not opened (NULL) */
        return rc;
    }
    kvz_model_identity id;
    kvz_model_identity_of(e->model, &id);
    e->fingerprint = id.fingerprint;
    *out = e;
    return KVZ_OK;
}

/* One holder lets go; the last frees the engine. */
static void release_engine(kvz_engine *e)
{
    pthread_mutex_lock(&e->pool_lock);
    size_t left = --e->holders;
    pthread_mutex_unlock(&e->pool_lock);
    if (left > 0)
        return;
    for (size_t i = 0; i < e->n_idle; i++) /* before the model: they use its device */
        e->idle[i]->ops->destroy(e->idle[i]);
    free(e->idle);
    kvz_model_free(e->model);
    kvz_store_close(e->store);
    pthread_mutex_destroy(&e->pool_lock);
    free(e);
}

/* In a child of fork, closing its parent's engine or session does nothing:
 * its locks may be held by threads the child lacks, its store's descriptors
 * are the parent's (kvz_store_close), its GPU state is not the child's; the
 * child's copy of the memory goes when it ends. */
void kvz_engine_close(kvz_engine *e)
{
    if (e && kvz_store_opened_here(e->store))
        release_engine(e);
}

/* ---- listing ------------------------------------------------------------------ */

typedef struct name_list {
    uint64_t fingerprint;
    char **names;
    size_t n, cap, bytes;
} name_list;

static int list_visit(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    name_list *l = ctx;
    int found;
    int rc = kvz_doc_record_has_model(val, val_len, l->fingerprint, &found);
    if (rc)
        return kvz_error_context(rc, "document '%.*s'", (int)key_len, (const char *)key);
    if (!found)
        return KVZ_OK;
    char **grown = kvz_grow(l->names, &l->cap, l->n, sizeof *grown);
    char *name = malloc(key_len + 1);
    if (!grown || !name) {
        free(name);
        if (grown)
            l->names = grown;
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    l->names = grown;
    memcpy(name, key, key_len);
    name[key_len] = '\0';
    l->names[l->n++] = name;
    l->bytes += key_len + 1;
    return KVZ_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int kvz_engine_documents(kvz_engine *e, char ***names, size_t *count)
{
    if (names)
        *names = NULL;
    if (count)
        *count = 0;
    if (!e || !names || !count)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_documents: engine, names and count are required");
    kvz_store_txn *t;
    KVZ_TRY(kvz_store_read_begin(e->store, &t));
    name_list l = {.fingerprint = e->fingerprint};
    int rc = kvz_store_scan(t, KVZ_DB_DOCS, list_visit, &l);
    kvz_store_read_end(t);
    /* one block: the pointer array, then the strings, so one kvz_free frees all */
    char **block = NULL;
    if (rc == KVZ_OK) {
        if (l.n) /* qsort wants an array even for none */
            qsort(l.names, l.n, sizeof *l.names, by_name);
        block = malloc((l.n + 1) * sizeof *block + l.bytes);
        if (!block)
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    if (rc == KVZ_OK) {
        char *text = (char *)(block + l.n + 1);
        for (size_t i = 0; i < l.n; i++) {
            size_t len = strlen(l.names[i]) + 1;
            memcpy(text, l.names[i], len);
            block[i] = text;
            text += len;
        }
        block[l.n] = NULL;
        *names = block;
        *count = l.n;
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    return rc;
}

/* The compiled form a call names: by number or by id, not both. */
static int form_of(const char *call, int32_t config, uint64_t config_id, kvz_config_pick *pick)
{
    if (config < 0)
        return kvz_errorf(KVZ_ERR_ARG, "%s: config %d is negative", call, config);
    if (config && config_id)
        return kvz_errorf(KVZ_ERR_ARG, "%s: give config or config_id, not both", call);
    *pick = (kvz_config_pick){.number = (uint32_t)config, .id = config_id, .id_digits = config_id ? 16 : 0};
    return KVZ_OK;
}

static int text_of(kvz_engine *e, const char *name, const kvz_config_pick *pick, int32_t segment, char **text,
                   size_t *len)
{
    *text = NULL;
    kvz_tokens tokens = {0};
    size_t n = 0;
    int rc = kvz_document_tokens(e->model, e->store, name, pick, segment, &tokens);
    if (rc == KVZ_ERR_FORMAT) /* a damaged artifact: whose */
        rc = kvz_error_context(rc, "document '%s'", name);
    if (rc == KVZ_OK)
        rc = kvz_detokenize(e->model->tokenizer, tokens.ids, tokens.len, 0, text, &n);
    kvz_tokens_free(&tokens);
    if (len)
        *len = n;
    return rc;
}

int kvz_engine_document_text(kvz_engine *e, const char *name, char **text, size_t *len)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!e || !name || !text)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_document_text: engine, name and text are required");
    kvz_config_pick newest = {0};
    return text_of(e, name, &newest, -1, text, len);
}

int kvz_engine_segment_text(kvz_engine *e, const char *name, int32_t config, uint64_t config_id, int32_t segment,
                            char **text, size_t *len)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!e || !name || !text)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_segment_text: engine, name and text are required");
    if (segment < 0)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_segment_text: segment %d is negative", segment);
    kvz_config_pick pick;
    KVZ_TRY(form_of("kvz_engine_segment_text", config, config_id, &pick));
    return text_of(e, name, &pick, segment, text, len);
}

int kvz_engine_document_segments(kvz_engine *e, const char *name, int32_t config, uint64_t config_id,
                                 int32_t **tokens, size_t *count)
{
    if (tokens)
        *tokens = NULL;
    if (count)
        *count = 0;
    if (!e || !name || !tokens || !count)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_document_segments: engine, name, tokens and count are required");
    kvz_config_pick pick;
    KVZ_TRY(form_of("kvz_engine_document_segments", config, config_id, &pick));
    int rc = kvz_document_segments(e->model, e->store, name, &pick, tokens, count);
    return rc == KVZ_ERR_FORMAT ? kvz_error_context(rc, "document '%s'", name) : rc; /* a damaged artifact: whose */
}

int kvz_engine_document_configs(kvz_engine *e, const char *name, kvz_config_info **configs, size_t *count)
{
    if (configs)
        *configs = NULL;
    if (count)
        *count = 0;
    if (!e || !name || !configs || !count)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_engine_document_configs: engine, name, configs and count are required");
    kvz_store_txn *t;
    KVZ_TRY(kvz_store_read_begin(e->store, &t));
    kvz_doc_record rec = {0};
    int rc = kvz_document_record(t, name, &rec);
    kvz_config_info *list = NULL;
    if (rc == KVZ_OK && !(list = calloc(rec.n_entries, sizeof *list)))
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; rc == KVZ_OK && i < rec.n_entries; i++) {
        const kvz_doc_entry *d = &rec.entries[i];
        list[i] = (kvz_config_info){.number = (int32_t)i + 1, .this_model = d->model_fingerprint == e->fingerprint,
                                    .id = d->config_id, .model_fingerprint = d->model_fingerprint,
                                    .created = d->created, .stored_bytes = d->stored_bytes,
                                    .tokens = (int32_t)d->n_tokens, .segments = (int32_t)d->n_segments};
        snprintf(list[i].summary, sizeof list[i].summary, "%s", d->summary);
    }
    if (rc == KVZ_OK) {
        *configs = list;
        *count = rec.n_entries;
    } else {
        free(list);
    }
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    return rc;
}

/* ---- sessions ----------------------------------------------------------------- */

int kvz_session_open_parts(kvz_session **out, kvz_engine *e, const kvz_doc_part *parts, size_t count,
                           const kvz_session_options *opts)
{
    if (out)
        *out = NULL;
    if (!out || !e || !parts)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open_parts: out, engine and the parts are required");
    KVZ_TRY(used_in_fork_child(e, "kvz_session_open"));
    for (size_t i = 0; i < count; i++) {
        if (!parts[i].name)
            return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open_parts: part %zu's document name is NULL", i);
        if (parts[i].first_segment < 0 || parts[i].segments < 0)
            return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open_parts: part %zu: first_segment %d and segments %d "
                              "cannot be negative", i, parts[i].first_segment, parts[i].segments);
    }
    kvz_session_options o = opts ? *opts : (kvz_session_options){0};
    if (o.reserve < 0)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open: reserve %d is negative", o.reserve);
    kvz_config_pick pick;
    KVZ_TRY(form_of("kvz_session_open", o.config, o.config_id, &pick));
    kvz_session *s = calloc(1, sizeof *s);
    if (!s)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&e->pool_lock); /* held from here: the engine stays while this opens */
    e->holders++;
    pthread_mutex_unlock(&e->pool_lock);
    /* a backend of the session's own: sessions of one engine work at once on as many threads */
    int rc = take_backend(e, &s->backend);
    kvz_load_opts lo = {.reserve = o.reserve, .config = pick, .backend = s->backend};
    kvz_load_stats st;
    if (rc == KVZ_OK)
        rc = kvz_load_parts(e->model, e->store, parts, count, &lo, &s->loaded, &st);
    if (rc != KVZ_OK) {
        if (s->backend) /* not pooled: a failed load may leave it in any state */
            s->backend->ops->destroy(s->backend);
        free(s);
        release_engine(e);
        return rc;
    }
    s->engine = e;
    s->info = (kvz_load_info){.load_ms = st.seconds * 1e3, .artifact_bytes = st.artifact_bytes,
                              .documents = st.documents, .segments = st.segments,
                              .document_tokens = st.original_tokens, .kept_pairs = st.rows};
    *out = s;
    return KVZ_OK;
}

int kvz_session_open(kvz_session **out, kvz_engine *e, const char *const *names, size_t count,
                     const kvz_session_options *opts)
{
    if (out)
        *out = NULL;
    if (!out || !e || !names)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open: out, engine and names are required");
    for (size_t i = 0; i < count; i++)
        if (!names[i])
            return kvz_errorf(KVZ_ERR_ARG, "kvz_session_open: document name %zu is NULL", i);
    kvz_doc_part *parts = kvz_whole_documents(names, count);
    if (!parts)
        return KVZ_ERR_NOMEM;
    int rc = kvz_session_open_parts(out, e, parts, count, opts);
    free(parts);
    return rc;
}

enum { ANSWER_IDLE, ANSWERING, CLOSE_WHEN_ANSWERED };

static void free_session(kvz_session *s)
{
    kvz_loaded_free(s->loaded);
    give_back_backend(s->engine, s->backend);
    release_engine(s->engine);
    free(s);
}

void kvz_session_close(kvz_session *s)
{
    if (!s || !kvz_store_opened_here(s->engine->store))
        return;
    int answering = ANSWERING; /* closed from its stream callback or another thread: the ask ends it */
    if (!atomic_compare_exchange_strong(&s->answering, &answering, CLOSE_WHEN_ANSWERED))
        free_session(s);
}

int kvz_session_load_info(const kvz_session *s, kvz_load_info *info)
{
    if (info)
        *info = (kvz_load_info){0};
    if (!s || !info)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_load_info: session and info are required");
    *info = s->info;
    return KVZ_OK;
}

typedef struct stream_ctx {
    kvz_stream_fn fn;
    void *user;
    kvz_session *session;
} stream_ctx;

static int forward_piece(void *ctx, int32_t token, const char *bytes, size_t len)
{
    stream_ctx *sc = ctx;
    int stop = len && sc->fn ? sc->fn(sc->user, bytes, len) : 0;
    return stop || atomic_load(&sc->session->answering) == CLOSE_WHEN_ANSWERED; /* closed: no more tokens */
}

int kvz_session_ask(kvz_session *s, const char *question, const kvz_ask_options *opts, char **answer,
                    kvz_ask_info *info)
{
    if (answer)
        *answer = NULL;
    if (info)
        *info = (kvz_ask_info){0};
    if (!s || !question)
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_ask: session and question are required");
    KVZ_TRY(used_in_fork_child(s->engine, "kvz_session_ask"));
    if (kvz_utf8_is_blank(question)) /* as kvz query: a slip, not a question */
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_ask: the question is empty");
    kvz_ask_options o = opts ? *opts : (kvz_ask_options){0};
    if (o.max_tokens < 0 || !(o.temperature >= 0 && isfinite(o.temperature)) || !(o.top_p >= 0 && o.top_p <= 1))
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_ask: max_tokens %d, temperature %g or top_p %g out of range",
                          o.max_tokens, o.temperature, o.top_p);
    kvz_sampler sampler;
    kvz_sampler_init(&sampler, o.temperature, o.top_p > 0 ? o.top_p : 0.95f, o.seed);
    stream_ctx sc = {o.stream, o.stream_user, s};
    kvz_generate_opts go = {.max_tokens = o.max_tokens > 0 ? o.max_tokens : 256,
                            .sampler = o.temperature > 0 ? &sampler : NULL,
                            .on_token = forward_piece, /* also without a stream: a close stops the answer */
                            .on_token_ctx = &sc};
    int idle = ANSWER_IDLE;
    if (!atomic_compare_exchange_strong(&s->answering, &idle, ANSWERING))
        return kvz_errorf(KVZ_ERR_ARG, "kvz_session_ask: the session is answering already (an ask from its "
                          "stream callback, or from a second thread: a session serves one at a time)");
    kvz_tokens out = {0};
    kvz_generate_stats st;
    int rc = kvz_loaded_ask(s->loaded, question, &go, &out, &st);
    if (rc == KVZ_OK && answer) {
        size_t len;
        rc = kvz_detokenize(s->engine->model->tokenizer, out.ids, out.len, 0, answer, &len);
    }
    if (rc == KVZ_OK && info)
        *info = (kvz_ask_info){.question_tokens = st.prompt_tokens, .answer_tokens = st.generated_tokens,
                               .first_token_ms = st.prefill_seconds * 1e3,
                               .decode_tokens_per_s = kvz_generate_decode_rate(&st),
                               .ended_turn = st.stopped_by == KVZ_GENERATE_END_OF_TURN,
                               .stopped_by = (int32_t)st.stopped_by};
    kvz_tokens_free(&out);
    int answering = ANSWERING;
    if (!atomic_compare_exchange_strong(&s->answering, &answering, ANSWER_IDLE))
        free_session(s); /* closed while it answered */
    return rc;
}
