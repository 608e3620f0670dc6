/* runtime.c — loading artifacts into a context and answering questions. */
#include "runtime/runtime.h"
#include "common/error.h"
#include "common/timer.h"
#include "format/artifact.h"
#include "format/doc_record.h"
#include "format/transfer.h"
#include "model/identity.h"
#include "model/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvz_loaded {
    kvz_model *model;
    kvz_context *ctx;
};

kvz_context *kvz_loaded_context(kvz_loaded *l) { return l->ctx; }

void kvz_loaded_free(kvz_loaded *l)
{
    if (!l)
        return;
    kvz_context_free(l->ctx);
    free(l);
}

/* One artifact placed in the composition: its view and where it starts. */
typedef struct placed {
    kvz_artifact art;
    int32_t position; /* of its document index 0 */
} placed;

typedef struct plan {
    placed *items; /* [0] is the shared prefix */
    size_t n, cap;
} plan;

/* The artifact stored under `key` (a shared prefix with is_prefix), to be
 * placed at `position`: refused unless it is the one its key names. */
static int plan_add(plan *p, const void *bytes, size_t size, int32_t position, const char *what, int is_prefix,
                    const void *key, size_t key_len)
{
    placed *grown = kvz_grow(p->items, &p->cap, p->n, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    p->items = grown;
    placed *it = &p->items[p->n];
    int rc = kvz_artifact_open(&it->art, bytes, size);
    if (rc == KVZ_OK)
        rc = kvz_transfer_check_key(&it->art, is_prefix, key, key_len);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "%s", what);
    it->position = position;
    p->n++;
    return KVZ_OK;
}

/* A compiled form `e` of document `name` not made by this model (`what`
 * names it): say whose it is. */
static int other_model(kvz_store_txn *t, const char *name, const kvz_doc_entry *e, const char *what,
                       const kvz_model_identity *id)
{
    const void *val;
    size_t len;
    kvz_artifact a;
    if (kvz_store_get(t, KVZ_DB_ARTIFACTS, e->artifact_ids[0], 16, &val, &len) == KVZ_OK &&
        kvz_artifact_open(&a, val, len) == KVZ_OK && kvz_artifact_check_model(&a, name, id) != KVZ_OK)
        return kvz_error_context(KVZ_ERR_MODEL_MISMATCH, "%s cannot be loaded", what);
    return kvz_errorf(KVZ_ERR_MODEL_MISMATCH, "%s was not compiled by the loaded model (fingerprint %016llx)",
                      what, (unsigned long long)id->fingerprint);
}

int kvz_document_record(kvz_store_txn *t, const char *name, kvz_doc_record *rec)
{
    const void *val;
    size_t len;
    int rc = kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &val, &len);
    if (rc == KVZ_ERR_NOT_FOUND)
        return kvz_document_missing(t, name, NULL, "");
    KVZ_TRY(rc);
    return kvz_doc_record_decode(val, len, rec);
}

/* The record of document `name` and the entry `config` selects
 * (kvz_doc_record_pick), made by this model; *rec is freed by the caller on success. */
static int find_entry(kvz_store_txn *t, const char *name, const kvz_config_pick *config,
                      const kvz_model_identity *id, kvz_doc_record *rec, const kvz_doc_entry **entry)
{
    KVZ_TRY(kvz_document_record(t, name, rec));
    const kvz_doc_entry *e;
    int rc = kvz_doc_record_pick(rec, config, &id->fingerprint, name, &e);
    *entry = rc == KVZ_OK && e && e->model_fingerprint == id->fingerprint ? e : NULL;
    if (*entry)
        return KVZ_OK;
    if (rc == KVZ_OK) {
        char what[1200], pick[40];
        if (e)
            snprintf(what, sizeof what, "'%s' %s", name, kvz_config_pick_name(config, pick));
        else
            snprintf(what, sizeof what, "'%s'", name);
        if (!e) /* no form of this model: name the newest's */
            e = kvz_doc_record_newest(rec, NULL);
        rc = other_model(t, name, e, what, id); /* a record holds an entry or more (kvz_doc_record_decode) */
    }
    kvz_doc_record_free(rec);
    return rc;
}

/* The artifact of segment `s` of an entry of document `name`. */
static int get_segment(kvz_store_txn *t, const kvz_doc_entry *e, uint32_t s, const char *name, const void **val,
                       size_t *len)
{
    int rc = kvz_store_get(t, KVZ_DB_ARTIFACTS, e->artifact_ids[s], 16, val, len);
    if (rc == KVZ_ERR_NOT_FOUND)
        return kvz_errorf(KVZ_ERR_FORMAT, "segment %u (counted from 1) of '%s' is missing from the store (kvz verify)",
                          s + 1, name);
    return rc;
}

/* A run of segments past the document's last: said in both countings (the
 * CLI's --segments and kvz inspect count from 1, kvz_doc_part from 0), with
 * the compiled form whose segments were counted. */
static int run_past_last(const char *name, const kvz_doc_record *rec, const kvz_doc_entry *e,
                         const kvz_config_pick *config, const kvz_doc_part *part)
{
    char run[48], form[96];
    long long from = (long long)part->first_segment + 1;
    if (part->segments == 1)
        snprintf(run, sizeof run, "%lld", from);
    else if (part->segments)
        snprintf(run, sizeof run, "%lld-%lld", from, from + part->segments - 1);
    else
        snprintf(run, sizeof run, "%lld-", from);
    unsigned number = (unsigned)(e - rec->entries) + 1;
    if (config->number || config->id_digits)
        snprintf(form, sizeof form, "its compiled form %u", number);
    else
        snprintf(form, sizeof form, "its newest compiled form for this model (configuration %u)", number);
    return kvz_errorf(KVZ_ERR_NOT_FOUND, "segment%s %s of '%s' asked for, but %s has %u: 1 to %u, as kvz inspect "
                      "--config %u lists them (counted from 1; the C API's first_segment %d counts from 0)",
                      part->segments == 1 ? "" : "s", run, name, form, e->n_segments, e->n_segments, number,
                      part->first_segment);
}

/* Find every artifact to load and check they belong together: the shared
 * prefix first, then each document's segments in order. */
static int make_plan(kvz_model *m, kvz_store_txn *t, const kvz_model_identity *id,
                     const kvz_doc_part *parts, size_t n_parts, const kvz_load_opts *o, plan *p,
                     kvz_load_stats *st)
{
    kvz_tokens prefix = {0};
    uint64_t prefix_hash;
    KVZ_TRY(kvz_prompt_prefix(m, &prefix, &prefix_hash));
    int32_t P = (int32_t)prefix.len;
    kvz_tokens_free(&prefix);
    st->prefix_tokens = P;
    const void *val;
    size_t len;
    int rc = KVZ_OK;
    int32_t position = P;
    for (size_t d = 0; d < n_parts; d++) {
        const char *name = parts[d].name;
        kvz_doc_record rec;
        const kvz_doc_entry *e;
        KVZ_TRY(find_entry(t, name, &o->config, id, &rec, &e));
        int64_t first = parts[d].first_segment, n = parts[d].segments ? parts[d].segments : e->n_segments - first;
        if (first >= e->n_segments || first + n > e->n_segments)
            rc = run_past_last(name, &rec, e, &o->config, &parts[d]);
        uint64_t held_tokens = 0;
        for (uint32_t s = (uint32_t)first; rc == KVZ_OK && s < first + n; s++) {
            rc = get_segment(t, e, s, name, &val, &len);
            char what[1200];
            snprintf(what, sizeof what, "'%s' segment %u of %u", name, s + 1, e->n_segments);
            if (rc == KVZ_OK)
                rc = plan_add(p, val, len, position, what, 0, e->artifact_ids[s], 16);
            if (rc == KVZ_OK && (rc = kvz_artifact_check_model(&p->items[p->n - 1].art, name, id)) != KVZ_OK)
                rc = kvz_error_context(rc, "%s", what);
            if (rc != KVZ_OK)
                break;
            const kvz_manifest *man = &p->items[p->n - 1].art.manifest;
            if (man->prefix_hash != prefix_hash || (int32_t)man->prefix_tokens != P) {
                rc = kvz_errorf(KVZ_ERR_MODEL_MISMATCH, "%s was compiled after another prompt prefix "
                                "(another template or kvz version): recompile it", what);
                break;
            }
            position += (int32_t)man->n_tokens;
            held_tokens += man->n_tokens;
            st->original_tokens += (int32_t)man->n_tokens;
            st->artifact_bytes += len;
            st->segments++;
        }
        /* segments of two cuts under the same ids (a kvz before 0.3.3, or before
         * 0.3.11, cut some documents otherwise): text missing or repeated, each
         * artifact sound */
        if (rc == KVZ_OK && first == 0 && n == e->n_segments)
            rc = kvz_transfer_check_cut(name, e, held_tokens);
        if (n > 1) /* fewer of them might fit */
            st->segmented = 1;
        kvz_doc_record_free(&rec);
        KVZ_TRY(rc);
        st->documents++;
    }
    char key[64];
    kvz_prefix_key(id->fingerprint, prefix_hash, key);
    rc = kvz_store_get(t, KVZ_DB_META, key, strlen(key), &val, &len);
    if (rc == KVZ_ERR_NOT_FOUND)
        return kvz_errorf(KVZ_ERR_FORMAT, "the store lacks the shared prefix of these documents (kvz verify)");
    KVZ_TRY(rc);
    KVZ_TRY(plan_add(p, val, len, 0, "the shared prefix", 1, key, strlen(key)));
    KVZ_TRY(kvz_artifact_check_model(&p->items[p->n - 1].art, NULL, id)); /* "(prefix)" */
    if ((int32_t)p->items[p->n - 1].art.manifest.n_tokens != P)
        return kvz_errorf(KVZ_ERR_FORMAT, "the stored prefix has %u tokens, the model's has %d",
                          p->items[p->n - 1].art.manifest.n_tokens, P);
    placed prefix_item = p->items[p->n - 1]; /* rows are filled prefix first */
    memmove(p->items + 1, p->items, (p->n - 1) * sizeof *p->items);
    p->items[0] = prefix_item;
    return KVZ_OK;
}

/* One layer of every planned artifact as stored (decompressed, not
 * dequantized), in the backend's staging buffer, ready for its kv_load. Part
 * k = h·n + i is head h of planned artifact i. Parts go to the backend in
 * groups of consecutive parts, each group within the staging limit (a part
 * larger than it alone), so the staging memory stays bounded for any document
 * length. */
typedef struct layer_rows {
    kvz_head_codes *codes; /* per part */
    size_t *at;            /* per part: offset of its positions in its group's staging; payloads and scales follow */
    kvz_kv_load_job *jobs; /* per part: keys, then values */
    size_t *group_first;   /* per group: its first part; one more entry, the number of parts */
    size_t *group_bytes;   /* per group: staged */
    size_t n_groups;
} layer_rows;

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

/* The staging buffer holds, per part: positions (int32, made absolute), key
 * payload, key scales, value payload, value scales, each 8-byte aligned. */
static void part_offsets(const kvz_head_codes *hc, size_t at, size_t off[6])
{
    off[0] = at;
    off[1] = off[0] + align8((size_t)hc->n * 4);
    off[2] = off[1] + align8(hc->key_bytes);
    off[3] = off[2] + align8(hc->key_pairs * 4);
    off[4] = off[3] + align8(hc->value_bytes);
    off[5] = off[4] + align8(hc->value_pairs * 4); /* the end */
}

/* Where each part of layer l goes in the cache, which group it is staged
 * with (no group over `limit` bytes unless it is one part) and where in that
 * group's staging buffer. */
static int plan_layer(kvz_loaded *L, const plan *p, int32_t l, int32_t H, size_t limit, layer_rows *r)
{
    size_t need = 0, off[6];
    r->n_groups = 0;
    for (int32_t h = 0; h < H; h++) {
        int32_t row = 0;
        for (size_t i = 0; i < p->n; i++) {
            const size_t k = (size_t)h * p->n + i;
            kvz_head_codes *hc = &r->codes[k];
            KVZ_TRY(kvz_artifact_head_codes(&p->items[i].art, (uint16_t)l, (uint16_t)h, hc));
            part_offsets(hc, 0, off);
            if (r->n_groups == 0 || (need > 0 && need + off[5] > limit)) {
                if (r->n_groups > 0)
                    r->group_bytes[r->n_groups - 1] = need;
                r->group_first[r->n_groups++] = k;
                need = 0;
            }
            r->at[k] = need;
            part_offsets(hc, need, off);
            need = off[5];
            float *keys = NULL, *values = NULL;
            KVZ_TRY(kvz_context_ragged_rows(L->ctx, l, h, row, (int32_t)hc->n, &keys, &values));
            r->jobs[2 * k] = (kvz_kv_load_job){.dst = keys, .shape = hc->keys, .is_keys = 1, .payload = off[1],
                                               .scales = off[2], .positions = off[0]};
            r->jobs[2 * k + 1] = (kvz_kv_load_job){.dst = values, .shape = hc->values, .payload = off[3],
                                                   .scales = off[4]};
            row += (int32_t)hc->n;
        }
    }
    r->group_bytes[r->n_groups - 1] = need;
    r->group_first[r->n_groups] = (size_t)H * p->n;
    return KVZ_OK;
}

/* Decompress part k of a planned layer into the staging buffer (host work,
 * run for all parts of a layer at once). */
static int read_part(const plan *p, int32_t l, const layer_rows *r, size_t k, uint8_t *staging)
{
    const size_t i = k % p->n;
    const uint16_t h = (uint16_t)(k / p->n);
    size_t off[6];
    part_offsets(&r->codes[k], r->at[k], off);
    KVZ_TRY(kvz_artifact_read_codes(&p->items[i].art, (uint16_t)l, h, (uint32_t *)(staging + off[0]),
                                    staging + off[1], (uint16_t *)(staging + off[2]), staging + off[3],
                                    (uint16_t *)(staging + off[4])));
    /* positions in the artifact count from its document's start */
    int32_t *pos = (int32_t *)(staging + off[0]);
    for (uint32_t j = 0; j < r->codes[k].n; j++)
        pos[j] += p->items[i].position;
    return KVZ_OK;
}

/* Layer l into the cache, a group of parts at a time: decompressed on the
 * host threads straight into the backend's staging buffer, then handed to the
 * backend, which dequantizes and rotates the keys to where they sit now (they
 * are stored before RoPE) — on the GPU while the host goes on to the next
 * group. */
static int load_layer(kvz_loaded *L, const plan *p, int32_t l, int32_t H, size_t limit, layer_rows *r,
                      kvz_load_stats *st)
{
    kvz_backend *b = kvz_context_backend(L->ctx);
    KVZ_TRY(plan_layer(L, p, l, H, limit, r));
    for (size_t g = 0; g < r->n_groups; g++) {
        const size_t first = r->group_first[g], end = r->group_first[g + 1], bytes = r->group_bytes[g];
        if (bytes == 0)
            continue;
        if (bytes > st->staged_peak)
            st->staged_peak = bytes;
        uint8_t *staging;
        KVZ_TRY(b->ops->kv_staging(b, bytes, (void **)&staging));
        int rc = KVZ_OK;
        char failure[512] = ""; /* error messages are per thread: carry a worker's out */
#pragma omp parallel for schedule(dynamic, 1) num_threads(b->n_threads)
        for (int64_t k = (int64_t)first; k < (int64_t)end; k++) {
            int pr = read_part(p, l, r, (size_t)k, staging);
            if (pr != KVZ_OK) {
#pragma omp critical
                if (rc == KVZ_OK) {
                    rc = pr;
                    snprintf(failure, sizeof failure, "head %d: %s", (int)(k / (int64_t)p->n), kvz_last_error());
                }
            }
        }
        if (rc != KVZ_OK)
            return kvz_errorf(rc, "%s", failure);
        KVZ_TRY(b->ops->kv_load(b, staging, bytes, r->jobs + 2 * first, (int32_t)(2 * (end - first)),
                                &L->model->hp.rope));
    }
    return KVZ_OK;
}

kvz_doc_part *kvz_whole_documents(const char *const *names, size_t n_names)
{
    kvz_doc_part *parts = calloc(n_names ? n_names : 1, sizeof *parts);
    if (!parts) {
        kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n_names; i++)
        parts[i].name = names[i];
    return parts;
}

int kvz_load(kvz_model *m, kvz_store *store, const char *const *names, size_t n_names,
             const kvz_load_opts *opts, kvz_loaded **out, kvz_load_stats *st)
{
    *out = NULL;
    kvz_doc_part *parts = kvz_whole_documents(names, n_names);
    if (!parts)
        return KVZ_ERR_NOMEM;
    int rc = kvz_load_parts(m, store, parts, n_names, opts, out, st);
    free(parts);
    return rc;
}

int kvz_load_parts(kvz_model *m, kvz_store *store, const kvz_doc_part *docs, size_t n_docs,
                   const kvz_load_opts *opts, kvz_loaded **out, kvz_load_stats *st)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    kvz_load_opts o = opts ? *opts : (kvz_load_opts){0};
    if (o.reserve <= 0)
        o.reserve = 512;
    if (o.staging == 0)
        o.staging = (size_t)64 << 20;
    if (n_docs == 0)
        return kvz_errorf(KVZ_ERR_ARG, "a session needs at least one document (count was 0)");
    for (size_t i = 0; i < n_docs; i++)
        if (docs[i].first_segment < 0 || docs[i].segments < 0)
            return kvz_errorf(KVZ_ERR_ARG, "part %zu of the load: first segment %d and segments %d cannot be "
                              "negative", i, docs[i].first_segment, docs[i].segments);
    double t0 = kvz_now_seconds();
    kvz_model_identity id;
    kvz_model_identity_of(m, &id);
    const kvz_hparams *hp = &m->hp;
    const int32_t L = hp->n_layers, H = hp->n_kv_heads;
    kvz_store_txn *t;
    KVZ_TRY(kvz_store_read_begin(store, &t));
    plan p = {0};
    int32_t *loaded = calloc((size_t)L * H, sizeof *loaded);
    kvz_loaded *res = calloc(1, sizeof *res);
    int rc = loaded && res ? make_plan(m, t, &id, docs, n_docs, &o, &p, st)
                           : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int32_t first_position = st->prefix_tokens + st->original_tokens;
    for (size_t i = 0; i < p.n && rc == KVZ_OK; i++)
        for (int32_t l = 0; l < L && rc == KVZ_OK; l++)
            for (int32_t h = 0; h < H && rc == KVZ_OK; h++) {
                uint32_t n = 0;
                rc = kvz_artifact_kept(&p.items[i].art, (uint16_t)l, (uint16_t)h, &n);
                loaded[(size_t)l * H + h] += (int32_t)n;
            }
    for (size_t i = 0; i < (size_t)L * H && rc == KVZ_OK; i++)
        st->rows += (uint64_t)loaded[i];
    if (rc == KVZ_OK && (int64_t)first_position + o.reserve > hp->ctx_train) {
        /* compression keeps positions: a segment spans its original tokens */
        char fewer[200] = "";
        int32_t per_segment = st->segments ? st->original_tokens / (int32_t)st->segments : 0;
        int64_t room = (int64_t)hp->ctx_train - o.reserve - st->prefix_tokens;
        if (st->segmented && per_segment > 0 && room >= per_segment)
            snprintf(fewer, sizeof fewer, "; fewer of a document's segments can be loaded at once (query and generate "
                     "--segments A-B, kvz_session_open_parts): they span %d positions each on average, %lld fit",
                     per_segment, (long long)(room / per_segment));
        rc = kvz_errorf(KVZ_ERR_RANGE, "the documents take %d positions (prefix included); with %d for the "
                        "question and answer that exceeds the model's context of %d%s", first_position, o.reserve,
                        hp->ctx_train, fewer);
    }
    if (rc == KVZ_OK) {
        res->model = m;
        rc = kvz_context_new_ragged(&res->ctx, m, o.backend, loaded, o.reserve, 512, first_position);
    }
    double t1 = kvz_now_seconds();
    const size_t parts = (size_t)H * (p.n ? p.n : 1);
    layer_rows rows = {calloc(parts, sizeof *rows.codes), calloc(parts, sizeof *rows.at),
                       calloc(2 * parts, sizeof *rows.jobs), calloc(parts + 1, sizeof *rows.group_first),
                       calloc(parts, sizeof *rows.group_bytes), 0};
    if (rc == KVZ_OK && (!rows.codes || !rows.at || !rows.jobs || !rows.group_first || !rows.group_bytes))
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++)
        if ((rc = load_layer(res, &p, l, H, o.staging, &rows, st)) != KVZ_OK)
            kvz_error_context(rc, "loading layer %d", l);
    free(rows.codes), free(rows.at), free(rows.jobs), free(rows.group_first), free(rows.group_bytes);
    if (rc == KVZ_OK)
        rc = kvz_context_backend(res->ctx)->ops->synchronize(kvz_context_backend(res->ctx));
    double t2 = kvz_now_seconds();
    kvz_store_read_end(t); /* every view is consumed: the context owns its copy */
    free(p.items);
    free(loaded);
    st->decode_seconds = t2 - t1;
    st->seconds = t2 - t0;
    if (rc != KVZ_OK) {
        kvz_loaded_free(res);
        return rc;
    }
    *out = res;
    return KVZ_OK;
}

int kvz_loaded_ask(kvz_loaded *l, const char *question, const kvz_generate_opts *opts,
                   kvz_tokens *answer, kvz_generate_stats *stats)
{
    kvz_tokens q = {0};
    int rc = kvz_prompt_question(l->model, question, &q);
    /* a question that fills the reserve still gets one answer token: its
     * logits are the question's last row's, and it needs no row of its own */
    if (rc == KVZ_OK && (int64_t)q.len > kvz_context_capacity(l->ctx))
        rc = kvz_errorf(KVZ_ERR_RANGE, "the question takes %zu tokens; %d are reserved for question and answer",
                        q.len, kvz_context_capacity(l->ctx));
    if (rc == KVZ_OK)
        rc = kvz_generate(l->ctx, q.ids, (int32_t)q.len, opts, answer, stats);
    kvz_context_truncate(l->ctx, 0); /* the next question sees only the documents */
    kvz_tokens_free(&q);
    return rc;
}

int kvz_loaded_teacher_force(kvz_loaded *l, const char *question, const int32_t *answer, int32_t n,
                             float *logits)
{
    if (n < 1 || (n > 1 && !answer))
        return kvz_errorf(KVZ_ERR_ARG, "teacher forcing needs at least one row and the answer's tokens");
    kvz_tokens q = {0};
    int rc = kvz_prompt_question(l->model, question, &q);
    if (rc == KVZ_OK && (int64_t)q.len + n > kvz_context_capacity(l->ctx))
        rc = kvz_errorf(KVZ_ERR_RANGE, "question (%zu tokens) and answer (%d) exceed the %d reserved", q.len, n,
                        kvz_context_capacity(l->ctx));
    kvz_eval_opts last = {.logits = KVZ_LOGITS_LAST}, all = {.logits = KVZ_LOGITS_ALL};
    if (rc == KVZ_OK)
        rc = kvz_context_eval(l->ctx, q.ids, (int32_t)q.len, &last, logits);
    if (rc == KVZ_OK && n > 1)
        rc = kvz_context_eval(l->ctx, answer, n - 1, &all, logits + l->model->hp.vocab);
    kvz_context_truncate(l->ctx, 0);
    kvz_tokens_free(&q);
    return rc;
}

int kvz_loaded_first_logits(kvz_loaded *l, const char *question, float *logits)
{
    return kvz_loaded_teacher_force(l, question, NULL, 1, logits);
}

int kvz_doc_record_has_model(const void *record, size_t size, uint64_t fingerprint, int *found)
{
    *found = 0;
    kvz_doc_record rec;
    KVZ_TRY(kvz_doc_record_decode(record, size, &rec));
    *found = kvz_doc_record_newest(&rec, &fingerprint) != NULL;
    kvz_doc_record_free(&rec);
    return KVZ_OK;
}

/* Call visit(ctx, s, n_segments, artifact) for each segment s of the
 * compiled form `config` of `name`, in order, within one read transaction. */
static int visit_segments(kvz_model *m, kvz_store *store, const char *name, const kvz_config_pick *config,
                          int (*visit)(void *ctx, uint32_t s, uint32_t n_segments, const kvz_artifact *a), void *ctx)
{
    kvz_model_identity id;
    kvz_model_identity_of(m, &id);
    kvz_store_txn *t;
    KVZ_TRY(kvz_store_read_begin(store, &t));
    kvz_doc_record rec = {0};
    const kvz_doc_entry *e = NULL;
    int rc = find_entry(t, name, config, &id, &rec, &e);
    for (uint32_t s = 0; rc == KVZ_OK && s < e->n_segments; s++) {
        const void *val;
        size_t len;
        kvz_artifact a;
        rc = get_segment(t, e, s, name, &val, &len);
        if (rc == KVZ_OK)
            rc = kvz_artifact_open(&a, val, len);
        if (rc == KVZ_OK)
            rc = visit(ctx, s, e->n_segments, &a);
    }
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    return rc;
}

typedef struct tokens_of {
    int32_t segment; /* -1: every one */
    uint32_t n_segments;
    kvz_tokens *out;
} tokens_of;

static int append_tokens(void *ctx, uint32_t s, uint32_t n_segments, const kvz_artifact *a)
{
    tokens_of *t = ctx;
    t->n_segments = n_segments;
    if (t->segment >= 0 && (uint32_t)t->segment != s)
        return KVZ_OK;
    size_t at = t->out->len;
    for (uint32_t i = 0; i < a->manifest.n_tokens; i++)
        KVZ_TRY(kvz_tokens_push(t->out, 0));
    return kvz_artifact_read_tokens(a, t->out->ids + at);
}

int kvz_document_tokens(kvz_model *m, kvz_store *store, const char *name, const kvz_config_pick *config,
                        int32_t segment, kvz_tokens *out)
{
    tokens_of t = {segment, 0, out};
    KVZ_TRY(visit_segments(m, store, name, config, append_tokens, &t));
    if (segment >= 0 && (uint32_t)segment >= t.n_segments)
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has %u segment(s), counted from 0: it has no segment %d", name,
                          t.n_segments, segment);
    return KVZ_OK;
}

typedef struct segment_lengths {
    int32_t *tokens;
    size_t count;
} segment_lengths;

static int note_length(void *ctx, uint32_t s, uint32_t n_segments, const kvz_artifact *a)
{
    segment_lengths *sl = ctx;
    if (!sl->tokens && !(sl->tokens = malloc(n_segments * sizeof *sl->tokens)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    sl->tokens[s] = (int32_t)a->manifest.n_tokens;
    sl->count = s + 1;
    return KVZ_OK;
}

int kvz_document_segments(kvz_model *m, kvz_store *store, const char *name, const kvz_config_pick *config,
                          int32_t **tokens, size_t *count)
{
    segment_lengths sl = {0};
    int rc = visit_segments(m, store, name, config, note_length, &sl);
    if (rc != KVZ_OK) {
        free(sl.tokens);
        sl = (segment_lengths){0};
    }
    *tokens = sl.tokens;
    *count = sl.count;
    return rc;
}
