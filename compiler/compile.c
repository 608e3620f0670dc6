/* compile.c — documents to artifacts in the store. */
#include "compiler/compile.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/timer.h"
#include "compiler/score.h"
#include "compiler/segment.h"
#include "format/artifact.h"
#include "format/transfer.h"
#include "format/doc_record.h"
#include "model/context.h"
#include "model/identity.h"
#include "model/prompt.h"
#include "model/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* A generic passage for the context-independent (head-level) KVzip scores. */
static const char HEAD_SAMPLE[] =
    "The museum opened in 1897 in a former grain exchange near the river. Its first curator, "
    "Helena Varga, catalogued 4,312 objects in the founding year, among them a bronze astrolabe, "
    "eleven maps of the northern coast and the ledger of a shipping company that traded salt and "
    "timber. In 1921 a fire destroyed the east wing; the astrolabe survived because it had been "
    "lent to a university in Leiden. The collection moved twice, in 1934 and in 1968, before the "
    "present building, designed by the architect Tomas Brandt, was finished in 1972.\n\n"
    "def moving_average(values, window):\n    total = sum(values[:window])\n    out = [total / window]\n"
    "    for i in range(window, len(values)):\n        total += values[i] - values[i - window]\n"
    "        out.append(total / window)\n    return out\n\n"
    "Visitors who want to see the maps must book a slot at least two days ahead; the reading room "
    "admits six people at a time and photography without flash is allowed. The museum's library "
    "holds 27,000 volumes, of which 900 were printed before 1800. Guided tours start at 10:30 and "
    "14:00 on weekdays, and the ticket office closes an hour before the building does.\n";

void kvz_compile_opts_default(kvz_compile_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sel.method = KVZ_METHOD_KVZIP;
    o->sel.level = KVZ_LEVEL_PAIR;
    o->sel.shape = KVZ_SHAPE_UNIFORM;
    o->sel.ratio = 0.3f;
    o->sel.beta = 20.0f;
    o->sel.decay = 0.2f;
    o->sel.reuse = 1;
    o->sel.window = 0; /* the default window: see prefill_window */
    o->sel.sinks = 4;
    o->sel.seed = 1;
    o->bits = 4;
    o->key_group = 128;
    o->value_group = 64;
    o->fp16_tokens = 4;
    o->zstd_level = 9;
    o->kvzip_chunk = 2048;
    o->pool = 7;
    o->reserve = 512;
}

int kvz_compile_opts_check(const kvz_compile_opts *o)
{
    if (o->bits != 16 && o->bits != 8 && o->bits != 4 && o->bits != 2)
        return kvz_errorf(KVZ_ERR_ARG, "--bits must be 16, 8, 4 or 2 (got %u)", o->bits);
    if (o->sel.method != KVZ_METHOD_FULL && !o->sel.budget && !(o->sel.ratio > 0 && o->sel.ratio <= 1))
        return kvz_errorf(KVZ_ERR_ARG, "--ratio must be in (0, 1] (got %g)", o->sel.ratio);
    if (o->sel.chunk && o->sel.method != KVZ_METHOD_KVZIP && o->sel.method != KVZ_METHOD_CHUNKKV)
        return kvz_errorf(KVZ_ERR_ARG, "--chunk applies to kvzip and chunkkv");
    if (o->question && kvz_utf8_is_blank(o->question))
        return kvz_errorf(KVZ_ERR_ARG, "--question is empty: give the question the documents are compiled for");
    int window_method = o->sel.method == KVZ_METHOD_SNAPKV || o->sel.method == KVZ_METHOD_CHUNKKV;
    if (o->question && !window_method)
        return kvz_errorf(KVZ_ERR_ARG, "--question applies to the window methods (snapkv, chunkkv)");
    /* an option another method ignores would change the configuration's id and nothing else,
     * and one given at its default value would say the caller expects it to act */
    kvz_compile_opts d;
    kvz_compile_opts_default(&d);
#define SET(flag, field) ((o->given & (flag)) || o->field != d.field)
    if (SET(KVZ_GIVEN_LEVEL, sel.level) && o->sel.method != KVZ_METHOD_KVZIP)
        return kvz_errorf(KVZ_ERR_ARG, "--level applies to --method kvzip only");
    if (o->sel.level == KVZ_LEVEL_HEAD && (o->sel.chunk || SET(KVZ_GIVEN_SHAPE, sel.shape)))
        return kvz_errorf(KVZ_ERR_ARG, "--level head keeps whole heads: --chunk and --budget-shape do not apply");
    if (SET(KVZ_GIVEN_SHAPE, sel.shape) && o->sel.method == KVZ_METHOD_FULL)
        return kvz_errorf(KVZ_ERR_ARG, "--method full keeps every pair: --budget-shape does not apply");
    if (SET(KVZ_GIVEN_WINDOW, sel.window) && !window_method)
        return kvz_errorf(KVZ_ERR_ARG, "--window applies to the window methods (snapkv, chunkkv)");
    if (SET(KVZ_GIVEN_POOL, pool) && o->sel.method != KVZ_METHOD_SNAPKV)
        return kvz_errorf(KVZ_ERR_ARG, "--pool applies to snapkv");
    if (SET(KVZ_GIVEN_REUSE, sel.reuse) && !o->sel.chunk)
        return kvz_errorf(KVZ_ERR_ARG, "--reuse applies to chunks (chunkkv, or kvzip with --chunk)");
    if (SET(KVZ_GIVEN_BETA, sel.beta) && o->sel.shape != KVZ_SHAPE_PYRAMID)
        return kvz_errorf(KVZ_ERR_ARG, "--beta applies to --budget-shape pyramid");
    if (SET(KVZ_GIVEN_DECAY, sel.decay) && o->sel.shape != KVZ_SHAPE_DECAY)
        return kvz_errorf(KVZ_ERR_ARG, "--decay applies to --budget-shape decay");
    if (SET(KVZ_GIVEN_KVZIP_CHUNK, kvzip_chunk) && o->sel.method != KVZ_METHOD_KVZIP)
        return kvz_errorf(KVZ_ERR_ARG, "--kvzip-chunk applies to --method kvzip");
    if (SET(KVZ_GIVEN_SEED, sel.seed) && o->sel.method != KVZ_METHOD_RANDOM)
        return kvz_errorf(KVZ_ERR_ARG, "--seed applies to --method random");
    if (SET(KVZ_GIVEN_SINKS, sel.sinks) && o->sel.method != KVZ_METHOD_RECENT)
        return kvz_errorf(KVZ_ERR_ARG, "--sinks applies to --method recent");
#undef SET
    if (o->key_group == 0 || o->value_group == 0 || o->kvzip_chunk < 16 || o->reserve < 0)
        return kvz_errorf(KVZ_ERR_ARG, "group sizes, the KVzip chunk and the reserve must be positive");
    if (o->zstd_level < 1 || o->zstd_level > 19)
        return kvz_errorf(KVZ_ERR_ARG, "--zstd-level must be 1..19 (got %d)", o->zstd_level);
    return KVZ_OK;
}

void kvz_compile_summary(const kvz_compile_opts *o, char *out, size_t size)
{
    char budget[32];
    if (o->sel.method == KVZ_METHOD_FULL)
        snprintf(budget, sizeof budget, "all");
    else if (o->sel.budget)
        snprintf(budget, sizeof budget, "%u tokens", o->sel.budget);
    else
        snprintf(budget, sizeof budget, o->sel.ratio >= 0.01f ? "ratio %.2f" : "ratio %.2g", o->sel.ratio);
    char variant[64] = "";
    if (o->sel.method == KVZ_METHOD_KVZIP)
        snprintf(variant, sizeof variant, " %s", kvz_level_name(o->sel.level));
    if (o->sel.chunk)
        snprintf(variant + strlen(variant), sizeof variant - strlen(variant), " chunk %u", o->sel.chunk);
    if (o->sel.shape != KVZ_SHAPE_UNIFORM)
        snprintf(variant + strlen(variant), sizeof variant - strlen(variant), " %s",
                 kvz_shape_name(o->sel.shape));
    if (o->sel.window) /* a given one; the default (32, 16 under 1K tokens) is not named */
        snprintf(variant + strlen(variant), sizeof variant - strlen(variant), " window %u", o->sel.window);
    /* every other option that makes another configuration, where not its
     * default: two configurations never read alike (ls, stats). An item that
     * does not fit is left out whole, and ", ..." says so. */
    kvz_compile_opts d;
    kvz_compile_opts_default(&d);
    char items[16][40]; /* more than the ITEMs below; ITEM stops at the last */
    int n = 0;
#define ITEM(cond, fmt, value)                                                                    \
    if ((cond) && n < (int)(sizeof items / sizeof items[0]))                                      \
        snprintf(items[n++], sizeof items[0], fmt, value)
    ITEM(o->sel.reuse != d.sel.reuse, "reuse %u", o->sel.reuse);
    ITEM(o->sel.beta != d.sel.beta, "beta %g", o->sel.beta);
    ITEM(o->sel.decay != d.sel.decay, "decay %g", o->sel.decay);
    ITEM(o->sel.sinks != d.sel.sinks, "sinks %u", o->sel.sinks);
    ITEM(o->sel.seed != d.sel.seed, "seed %llu", (unsigned long long)o->sel.seed);
    ITEM(o->pool != d.pool, "pool %d", o->pool);
    ITEM(o->kvzip_chunk != d.kvzip_chunk, "kvzip-chunk %d", o->kvzip_chunk);
    ITEM(o->key_group != d.key_group, "key-group %u", o->key_group);
    ITEM(o->value_group != d.value_group, "value-group %u", o->value_group);
    ITEM(o->fp16_tokens != d.fp16_tokens, "fp16-tokens %u", o->fp16_tokens);
    ITEM(o->reserve != d.reserve, "reserve %d", o->reserve);
#undef ITEM
    snprintf(out, size, "%s%s %s, %u-bit%s", kvz_method_name(o->sel.method), variant, budget, o->bits,
             o->question ? ", query-aware" : "");
    for (int k = 0; k < n; k++) {
        size_t used = strlen(out), need = strlen(items[k]) + 2, more = k + 1 < n ? 5 : 0; /* ", ..." */
        if (used + need + more >= size) {
            if (used + 5 < size)
                strcat(out, ", ...");
            break;
        }
        strcat(out, ", ");
        strcat(out, items[k]);
    }
}

/* Host memory the device writes a batch's stored bytes into as the compiler
 * encodes (encode_artifact): the backend's host_alloc, kept between documents
 * because on a GPU getting it is slow; plain memory where that runs out,
 * with which the device's copies wait for the host: slower, the same bytes. */
typedef struct readback {
    uint8_t *host;
    size_t bytes;
    int plain; /* malloc'ed, not host_alloc'ed */
} readback;

static void readback_free(kvz_backend *b, readback *rb)
{
    if (rb->plain)
        free(rb->host);
    else if (rb->host)
        b->ops->host_free(b, rb->host);
    memset(rb, 0, sizeof *rb);
}

/* rb holds at least `bytes`; what it held is lost (the caller has coded it). */
static int readback_reserve(kvz_backend *b, readback *rb, size_t bytes)
{
    if (bytes <= rb->bytes)
        return KVZ_OK;
    readback_free(b, rb);
    bytes = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB: fewer regrowths */
    if (b->ops->host_alloc(b, bytes, (void **)&rb->host) != KVZ_OK) {
        kvz_error_clear();
        rb->plain = 1;
        if (!(rb->host = malloc(bytes)))
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory for %zu bytes of quantized KV heads", bytes);
    }
    rb->bytes = bytes;
    return KVZ_OK;
}

struct kvz_compiler {
    kvz_model *model;
    kvz_store *store;
    kvz_compile_opts opts;
    kvz_model_identity id;
    kvz_tokens prefix;
    uint64_t prefix_hash;
    kvz_context *ctx;       /* holds the prefix between documents (ensure_context) */
    int32_t segment_limit;
    int32_t pass_tokens;    /* what a scoring pass appends after a segment: KVzip's repeat or the question */
    uint32_t value_group;   /* channels per value group, clamped to the head size */
    uint64_t config_id;
    char config[512];       /* the canonical parameter string hashed into ids */
    kvz_tokens question;    /* window question suffix, when given */
    float *head_scores;     /* level head: (n_layers, n_kv_heads) */
    uint8_t *prefix_artifact;
    size_t prefix_artifact_size;
    char prefix_key[64];
    int prefix_sound; /* the stored prefix was seen whole (stored_prefix_sound) */
    readback readback[2];   /* used in turn by consecutive batches */
    kvz_still_current_fn still_current; /* asked under the write lock (kvz_compiler_check_current) */
    void *still_current_ctx;
};

void kvz_compiler_check_current(kvz_compiler *c, kvz_still_current_fn fn, void *ctx)
{
    c->still_current = fn;
    c->still_current_ctx = ctx;
}

int32_t kvz_compiler_segment_limit(const kvz_compiler *c) { return c->segment_limit; }

int kvz_compiler_store_prefix(kvz_compiler *c, uint64_t *prefix_hash)
{
    kvz_artifact a;
    *prefix_hash = c->prefix_hash;
    KVZ_TRY(kvz_artifact_open(&a, c->prefix_artifact, c->prefix_artifact_size));
    return kvz_transfer_prefix(c->store, &a, 0, NULL);
}

/* The configuration's window, as text: the default as "32" and a given one
 * of 16 or less as itself, the texts they had before a given window was kept
 * as given (they behave as before, their ids stay); a given one over 16,
 * which under 1K tokens is no longer cut to 16, marked. */
static void window_text(uint32_t window, char *text, size_t size)
{
    if (window == 0)
        snprintf(text, size, "32");
    else
        snprintf(text, size, window > 16 ? "%u,given" : "%u", window);
}

static void describe_config(kvz_compiler *c)
{
    const kvz_compile_opts *o = &c->opts;
    /* the question as the scores saw it: its prompt's tokens (so a change in
     * how the prompt is built makes another configuration, not the same id
     * for other artifacts) */
    uint64_t question_hash = o->question ? XXH3_64bits(c->question.ids, c->question.len * sizeof *c->question.ids) : 0;
    char window[32];
    window_text(o->sel.window, window, sizeof window);
    snprintf(c->config, sizeof c->config,
             "kvz-config 1 model=%016llx prefix=%016llx method=%s level=%s shape=%s ratio=%.6g "
             "budget=%u beta=%.6g decay=%.6g chunk=%u reuse=%u window=%s pool=%d sinks=%u seed=%llu "
             "bits=%u kgroup=%u vgroup=%u fp16=%u kvzip_chunk=%d limit=%d question=%016llx",
             (unsigned long long)c->id.fingerprint, (unsigned long long)c->prefix_hash,
             kvz_method_name(o->sel.method), kvz_level_name(o->sel.level), kvz_shape_name(o->sel.shape),
             o->sel.ratio, o->sel.budget, o->sel.beta, o->sel.decay, o->sel.chunk, o->sel.reuse,
             window, o->pool, o->sel.sinks, (unsigned long long)o->sel.seed, o->bits,
             o->key_group, o->value_group, o->fp16_tokens, o->kvzip_chunk, c->segment_limit,
             (unsigned long long)question_hash);
    c->config_id = kvz_config_id(c->config);
}

/* SnapKV smooths its window scores; ChunkKV sums them over chunks instead. */
static int32_t window_pool(const kvz_compiler *c)
{
    return c->opts.sel.method == KVZ_METHOD_SNAPKV ? c->opts.pool : 0;
}

/* printf to `text` at `used` (its length so far); the new length, at most size - 1 */
__attribute__((format(printf, 4, 5))) static size_t append_option(char *text, size_t size, size_t used,
                                                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + used, size - used, fmt, ap);
    va_end(ap);
    size_t grown = used + (n < 0 ? 0 : (size_t)n);
    return grown < size ? grown : size - 1;
}

/* window: what the segment's window methods used (the options' text) */
static void fill_manifest(const kvz_compiler *c, kvz_manifest *m, int32_t window)
{
    const kvz_compile_opts *o = &c->opts;
    memset(m, 0, sizeof *m);
    m->model = c->id;
    snprintf(m->template_name, sizeof m->template_name, "%s", kvz_chat_kind_name(c->model->chat.kind));
    m->prefix_hash = c->prefix_hash;
    m->prefix_tokens = (uint32_t)c->prefix.len;
    snprintf(m->method, sizeof m->method, "%s", kvz_method_name(o->sel.method));
    snprintf(m->level, sizeof m->level, "%s",
             o->sel.method == KVZ_METHOD_KVZIP ? kvz_level_name(o->sel.level) : "");
    snprintf(m->budget_shape, sizeof m->budget_shape, "%s", kvz_shape_name(o->sel.shape));
    m->ratio = o->sel.method == KVZ_METHOD_FULL ? 1.0f : o->sel.budget ? 0.0f : o->sel.ratio;
    m->budget = o->sel.budget;
    m->bits = o->bits;
    m->key_group = o->key_group;
    m->value_group = c->value_group;
    m->fp16_tokens = o->fp16_tokens;
    char *opt = m->options;
    size_t size = sizeof m->options;
    size_t used = append_option(opt, size, 0, "chunk=%u window=%d pool=%d", o->sel.chunk, window, window_pool(c));
    /* the options with no "none" value only where they acted */
    if (o->sel.chunk)
        used = append_option(opt, size, used, " reuse=%u", o->sel.reuse);
    if (o->sel.shape == KVZ_SHAPE_PYRAMID)
        used = append_option(opt, size, used, " beta=%g", (double)o->sel.beta);
    if (o->sel.shape == KVZ_SHAPE_DECAY)
        used = append_option(opt, size, used, " decay=%g", (double)o->sel.decay);
    if (o->question)
        used = append_option(opt, size, used, " query-aware");
    /* the method's own parameter, for a reader that does not parse `config` */
    if (o->sel.method == KVZ_METHOD_KVZIP)
        append_option(opt, size, used, " kvzip_chunk=%d", o->kvzip_chunk);
    else if (o->sel.method == KVZ_METHOD_RECENT)
        append_option(opt, size, used, " sinks=%u", o->sel.sinks);
    else if (o->sel.method == KVZ_METHOD_RANDOM)
        append_option(opt, size, used, " seed=%llu", (unsigned long long)o->sel.seed);
    snprintf(m->compiler, sizeof m->compiler, "kvz %s", KVZ_VERSION_STRING);
    m->created = kvz_created_time();
    snprintf(m->config, sizeof m->config, "%s", c->config);
    kvz_compile_summary(o, m->summary, sizeof m->summary);
}

/* Backend memory the device path gathers one head's kept rows into (and
 * their positions), before they are quantized there. */
typedef struct gather_stage {
    float *k, *v;
    int32_t *positions;
} gather_stage;

static void gather_stage_free(kvz_backend *b, gather_stage *st)
{
    void *bufs[3] = {st->k, st->v, st->positions};
    for (int i = 0; i < 3; i++)
        if (bufs[i])
            b->ops->free(b, bufs[i]);
    memset(st, 0, sizeof *st);
}

static int gather_stage_init(kvz_backend *b, int32_t n, int32_t hd, gather_stage *st)
{
    memset(st, 0, sizeof *st);
    size_t rows = (size_t)n * hd * sizeof(float);
    int rc = b->ops->alloc(b, rows, (void **)&st->k);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, rows, (void **)&st->v);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, (size_t)n * sizeof *st->positions, (void **)&st->positions);
    if (rc != KVZ_OK)
        gather_stage_free(b, st);
    return rc;
}

/* Keys (pre-RoPE) and values of the cache rows `rows` (backend memory: a
 * token's cache row is its position) of one (layer, head), into k and v
 * (count rows each, backend memory). */
static int gather_head(const kvz_compiler *c, int32_t layer, int32_t head, const int32_t *rows, uint32_t count,
                       float *k, float *v)
{
    kvz_backend *b = c->model->backend;
    const kvz_hparams *hp = &c->model->hp;
    int32_t hd = hp->head_dim, cap = kvz_context_capacity(c->ctx);
    float *kc, *vc;
    kvz_context_layer_cache(c->ctx, layer, &kc, &vc);
    size_t block = (size_t)head * cap * hd;
    KVZ_TRY(b->ops->gather_rows(b, k, kc + block, rows, (int32_t)count, hd));
    KVZ_TRY(b->ops->gather_rows(b, v, vc + block, rows, (int32_t)count, hd));
    /* the cache holds keys after RoPE; artifacts store them before */
    return b->ops->rope(b, k, rows, (int32_t)count, 1, &hp->rope, 1);
}

/* Layers encoded together: enough heads to keep every thread busy (two per
 * thread), within 1 GiB of gathered rows. */
static int32_t encode_batch_layers(const kvz_hparams *hp, int32_t n, int n_threads)
{
    const size_t head_bytes = (size_t)n * hp->head_dim * 2 * sizeof(float);
    int32_t layers = (2 * n_threads + hp->n_kv_heads - 1) / hp->n_kv_heads;
    while (layers > 1 && (size_t)layers * hp->n_kv_heads * head_bytes > ((size_t)1 << 30))
        layers--;
    return layers < 1 ? 1 : layers > hp->n_layers ? hp->n_layers : layers;
}

/* The heads of the batch of `batch` layers from layer l0. */
static int32_t batch_heads(const kvz_hparams *hp, int32_t batch, int32_t l0)
{
    return (hp->n_layers - l0 < batch ? hp->n_layers - l0 : batch) * hp->n_kv_heads;
}

/* What an artifact keeps of (layer, head) index i: positions pos[0 .. count)
 * of the document, the first n16 of them kept f16. */
typedef struct kept_head {
    const uint32_t *pos;
    uint32_t count, n16;
} kept_head;

static void kept_of(const kvz_manifest *m, const kvz_selection *sel, const uint32_t *all, int32_t n, size_t i,
                    kept_head *h)
{
    h->pos = sel ? sel->pos + sel->offset[i] : all;
    h->count = sel ? sel->offset[i + 1] - sel->offset[i] : (uint32_t)n;
    h->n16 = 0;
    while (h->n16 < h->count && h->pos[h->n16] < m->fp16_tokens)
        h->n16++;
}

/* The cache rows of what h keeps (a token's cache row is its position: P + pos). */
static void kept_rows(const kept_head *h, int32_t P, int32_t *rows)
{
    for (uint32_t i = 0; i < h->count; i++)
        rows[i] = P + (int32_t)h->pos[i];
}

/* One (layer, head) quantized on the device: its shapes and stored bytes
 * (in a readback buffer), waiting to be coded. */
typedef struct head_codes_buf {
    kvz_head_codes hc;
    uint8_t *key_payload, *value_payload;
    uint16_t *key_scales, *value_scales;
} head_codes_buf;

static size_t align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* The device side of a batch of heads (layers l0 ..): each head's kept rows
 * gathered, rotated back and quantized on the backend, and its stored bytes
 * copied into rb, whose part for a head starts with the kept positions the
 * device reads. Nothing waits: the bytes are there after the next
 * synchronize, while the host codes the batch before. */
static int quantize_batch(kvz_compiler *c, const kvz_manifest *m, const gather_stage *st, const kept_head *kept,
                          int32_t P, int32_t l0, int32_t heads, readback *rb, head_codes_buf *codes)
{
    kvz_backend *b = c->model->backend;
    const int32_t H = c->model->hp.n_kv_heads;
    size_t total = 0;
    for (int32_t j = 0; j < heads; j++) {
        head_codes_buf *q = &codes[j];
        KVZ_TRY(kvz_artifact_head_shape(m, kept[j].count, kept[j].n16, &q->hc));
        total += align64(kept[j].count * sizeof(int32_t)) + align64(q->hc.key_bytes) + align64(q->hc.value_bytes) +
                 align64(q->hc.key_pairs * 4) + align64(q->hc.value_pairs * 4);
    }
    KVZ_TRY(readback_reserve(b, rb, total)); /* what it held was coded, after a wait for it */
    uint8_t *at = rb->host;
    for (int32_t j = 0; j < heads; j++) {
        head_codes_buf *q = &codes[j];
        const uint32_t count = kept[j].count;
        int32_t *positions = (int32_t *)at;
        at += align64(count * sizeof(int32_t));
        q->key_payload = at, at += align64(q->hc.key_bytes);
        q->value_payload = at, at += align64(q->hc.value_bytes);
        q->key_scales = (uint16_t *)at, at += align64(q->hc.key_pairs * 4);
        q->value_scales = (uint16_t *)at, at += align64(q->hc.value_pairs * 4);
        kept_rows(&kept[j], P, positions);
        KVZ_TRY(b->ops->upload(b, st->positions, positions, count * sizeof *positions));
        KVZ_TRY(gather_head(c, l0 + j / H, j % H, st->positions, count, st->k, st->v));
        KVZ_TRY(b->ops->kv_quantize(b, st->k, &q->hc.keys, 1, q->key_payload, q->key_scales));
        KVZ_TRY(b->ops->kv_quantize(b, st->v, &q->hc.values, 0, q->value_payload, q->value_scales));
    }
    return KVZ_OK;
}

/* The host side of a batch on a host-memory backend: each head's kept rows,
 * f32, into k and v (rows floats per head), for kvz_artifact_encode_head. */
static int gather_batch_to_host(const kvz_compiler *c, const kept_head *kept, int32_t P, int32_t l0,
                                int32_t heads, size_t rows, float *k, float *v, int32_t *positions)
{
    const int32_t H = c->model->hp.n_kv_heads;
    for (int32_t j = 0; j < heads; j++) {
        kept_rows(&kept[j], P, positions);
        KVZ_TRY(gather_head(c, l0 + j / H, j % H, positions, kept[j].count, k + (size_t)j * rows,
                            v + (size_t)j * rows));
    }
    return KVZ_OK;
}

/* Encode the kept pairs of the context's document rows into an artifact, a
 * few layers at a time, their heads encoded in parallel (quantization and
 * zstd dominate) and added in (layer, head) order. On a host-memory backend
 * a batch's rows are gathered to the host and encoded there. A backend with
 * its own memory (the GPU) quantizes the heads too, so only the stored bytes
 * come to the host: it works on the next batch while the host codes this
 * one, in two readback buffers used in turn, and the host waits for it once
 * a batch. sel NULL keeps every row. */
static int encode_artifact(kvz_compiler *c, const kvz_manifest *m, const int32_t *tokens, int32_t P, int32_t n,
                           const kvz_selection *sel, uint8_t **out, size_t *size)
{
    kvz_backend *b = c->model->backend;
    const kvz_hparams *hp = &c->model->hp;
    const int on_backend = !b->ops->host_memory;
    const int32_t H = hp->n_kv_heads, L = hp->n_layers, batch = encode_batch_layers(hp, n, b->n_threads);
    const size_t rows = (size_t)n * hp->head_dim, slots = (size_t)batch * H, host_rows = on_backend ? 0 : rows;
    float *k = malloc(host_rows * slots * 4 + 4), *v = malloc(host_rows * slots * 4 + 4);
    int32_t *positions = malloc((size_t)n * sizeof *positions);
    uint32_t *all = malloc((size_t)n * sizeof *all);
    kept_head *kept = calloc(2 * slots, sizeof *kept);
    kvz_head_sections *hs = calloc(slots, sizeof *hs);
    head_codes_buf *codes = calloc(2 * slots, sizeof *codes);
    int *head_rc = calloc(slots, sizeof *head_rc);
    kvz_artifact_writer *w = kvz_artifact_writer_new(c->opts.zstd_level);
    gather_stage st = {0};
    int rc = k && v && positions && all && kept && hs && codes && head_rc && w
                 ? KVZ_OK
                 : kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding");
    if (rc == KVZ_OK && on_backend)
        rc = gather_stage_init(b, n, hp->head_dim, &st);
    if (rc == KVZ_OK)
        rc = kvz_artifact_add_tokens(w, tokens, (uint32_t)n);
    for (int32_t t = 0; all && t < n; t++)
        all[t] = (uint32_t)t;
    /* Batch q (layers q·batch ..) uses half q % 2 of kept and codes, and readback q % 2. */
    for (int32_t j = 0; rc == KVZ_OK && j < batch_heads(hp, batch, 0); j++)
        kept_of(m, sel, all, n, (size_t)j, &kept[j]);
    if (rc == KVZ_OK && on_backend)
        rc = quantize_batch(c, m, &st, kept, P, 0, batch_heads(hp, batch, 0), &c->readback[0], codes);
    for (int32_t l0 = 0, q = 0; l0 < L && rc == KVZ_OK; l0 += batch, q++) {
        const int32_t heads = batch_heads(hp, batch, l0), next = l0 + batch, half = q % 2, other = 1 - half;
        const kept_head *kq = kept + (size_t)half * slots;
        const head_codes_buf *cq = codes + (size_t)half * slots;
        for (int32_t j = 0; next < L && j < batch_heads(hp, batch, next); j++)
            kept_of(m, sel, all, n, (size_t)next * H + j, &kept[(size_t)other * slots + j]);
        if (on_backend) {
            rc = b->ops->synchronize(b); /* this batch's bytes have landed */
            if (rc == KVZ_OK && next < L)
                rc = quantize_batch(c, m, &st, kept + (size_t)other * slots, P, next, batch_heads(hp, batch, next),
                                    &c->readback[other], codes + (size_t)other * slots);
        } else {
            rc = gather_batch_to_host(c, kq, P, l0, heads, rows, k, v, positions);
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(b->n_threads)
        for (int32_t j = 0; j < heads; j++) {
            if (rc != KVZ_OK)
                continue;
            const head_codes_buf *cj = &cq[j];
            head_rc[j] = on_backend ? kvz_artifact_encode_codes(m, c->opts.zstd_level, kq[j].pos, &cj->hc,
                                                                cj->key_payload, cj->key_scales, cj->value_payload,
                                                                cj->value_scales, &hs[j])
                                    : kvz_artifact_encode_head(m, c->opts.zstd_level, kq[j].pos, kq[j].count,
                                                               kq[j].n16, k + (size_t)j * rows, v + (size_t)j * rows,
                                                               &hs[j]);
        }
        for (int32_t j = 0; j < heads; j++) {
            if (rc == KVZ_OK && head_rc[j] != KVZ_OK)
                rc = kvz_errorf(head_rc[j], "layer %d head %d could not be encoded", l0 + j / H, j % H);
            if (rc == KVZ_OK)
                rc = kvz_artifact_add_encoded(w, (uint16_t)(l0 + j / H), (uint16_t)(j % H), &hs[j]);
            else
                kvz_head_sections_free(&hs[j]);
        }
    }
    if (rc != KVZ_OK && on_backend)
        b->ops->synchronize(b); /* nothing still queued writes into the readback buffers */
    if (rc == KVZ_OK)
        rc = kvz_artifact_writer_finish(w, m, out, size);
    kvz_artifact_writer_free(w);
    if (on_backend)
        gather_stage_free(b, &st);
    free(k), free(v), free(positions), free(all), free(kept), free(hs), free(codes), free(head_rc);
    return rc;
}

/* The shared prefix as an artifact (every position, f16). */
static int build_prefix_artifact(kvz_compiler *c)
{
    kvz_manifest m;
    fill_manifest(c, &m, 0);
    snprintf(m.doc_name, sizeof m.doc_name, "(prefix)");
    m.config[0] = m.summary[0] = '\0'; /* shared by every configuration */
    memcpy(m.doc_hash, &c->prefix_hash, 8);
    m.prefix_tokens = 0;
    m.n_tokens = (uint32_t)c->prefix.len;
    m.segment = 0, m.n_segments = 1;
    snprintf(m.method, sizeof m.method, "prefix");
    m.level[0] = '\0';
    m.ratio = 1.0f, m.budget = 0, m.bits = 16, m.fp16_tokens = 0;
    m.options[0] = '\0';
    kvz_prefix_key(c->id.fingerprint, c->prefix_hash, c->prefix_key);
    return encode_artifact(c, &m, c->prefix.ids, 0, (int32_t)c->prefix.len, NULL, &c->prefix_artifact,
                           &c->prefix_artifact_size);
}

/* ---- the context ------------------------------------------------------------ */

/* The context holds the prefix and room after it for `tokens` of a segment and
 * a scoring pass. It is sized by what the documents need, in steps of
 * CONTEXT_STEP tokens, not by the model's whole context (Llama 3.1's 131072
 * tokens are 32 GiB of f32 keys and values on an 8B model, on the GPU too), and made
 * anew, larger, when a segment needs more: the prefix is prefilled again (a
 * few dozen tokens), the same values as before. */
enum { CONTEXT_STEP = 4096 };

static int ensure_context(kvz_compiler *c, int32_t tokens)
{
    kvz_model *m = c->model;
    int64_t need = (int64_t)c->prefix.len + tokens + c->pass_tokens;
    if (c->ctx && need <= kvz_context_capacity(c->ctx))
        return KVZ_OK;
    int64_t cap = (need + CONTEXT_STEP - 1) / CONTEXT_STEP * CONTEXT_STEP;
    if (cap > m->hp.ctx_train)
        cap = m->hp.ctx_train;
    kvz_context_free(c->ctx);
    c->ctx = NULL;
    int rc = kvz_context_new(&c->ctx, m, (int32_t)cap, 512);
    if (rc == KVZ_OK)
        rc = kvz_context_eval(c->ctx, c->prefix.ids, (int32_t)c->prefix.len, NULL, NULL);
    if (rc != KVZ_OK) { /* no context is left half made: the next document tries again */
        kvz_context_free(c->ctx);
        c->ctx = NULL;
    }
    return rc;
}

/* ---- head scores (level head) ------------------------------------------------ */

typedef struct meta_put {
    const char *key;
    const void *val;
    size_t len;
} meta_put;

static int put_meta(kvz_store_txn *t, void *ctx)
{
    const meta_put *p = ctx;
    return kvz_store_put(t, KVZ_DB_META, p->key, strlen(p->key), p->val, p->len);
}

static int load_head_scores(kvz_compiler *c)
{
    const kvz_hparams *hp = &c->model->hp;
    size_t heads = (size_t)hp->n_layers * hp->n_kv_heads;
    char key[96];
    snprintf(key, sizeof key, "head_scores/%016llx/%016llx", (unsigned long long)c->id.fingerprint,
             (unsigned long long)c->prefix_hash);
    c->head_scores = malloc(heads * sizeof(float));
    if (!c->head_scores)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    kvz_store_txn *t;
    KVZ_TRY(kvz_store_read_begin(c->store, &t));
    const void *val;
    size_t len;
    int rc = kvz_store_get(t, KVZ_DB_META, key, strlen(key), &val, &len);
    if (rc == KVZ_OK && len == heads * sizeof(float))
        memcpy(c->head_scores, val, len);
    kvz_store_read_end(t);
    if (rc == KVZ_OK && len == heads * sizeof(float))
        return KVZ_OK;
    /* not stored yet: KVzip pair scores of the sample; a head's score is its best pair */
    kvz_tokens sample = {0};
    rc = kvz_tokenize(c->model->tokenizer, HEAD_SAMPLE, strlen(HEAD_SAMPLE), 0, &sample);
    int32_t P = (int32_t)c->prefix.len, n = (int32_t)sample.len;
    float *scores = malloc((size_t)heads * n * sizeof(float));
    if (rc == KVZ_OK && !scores)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (rc == KVZ_OK)
        rc = ensure_context(c, n);
    if (rc == KVZ_OK)
        rc = kvz_prefill_document(c->ctx, sample.ids, n, 0, 0, NULL, NULL, NULL);
    if (rc == KVZ_OK)
        rc = kvz_score_kvzip(c->ctx, P, sample.ids, n, c->opts.kvzip_chunk, scores, NULL, NULL);
    if (c->ctx)
        kvz_context_truncate(c->ctx, P);
    for (size_t i = 0; i < heads && rc == KVZ_OK; i++) {
        float best = 0;
        for (int32_t t2 = 0; t2 < n; t2++)
            best = scores[i * n + t2] > best ? scores[i * n + t2] : best;
        c->head_scores[i] = best;
    }
    free(scores);
    kvz_tokens_free(&sample);
    if (rc == KVZ_OK) {
        meta_put p = {key, c->head_scores, heads * sizeof(float)};
        rc = kvz_store_write(c->store, put_meta, &p);
    }
    return rc;
}

/* ---- compiler lifecycle ---------------------------------------------------------- */

/* What the options come to on this model: the prompt's prefix and question tokens,
 * the segment limit and the value group; an error when they do not fit it. */
static int fit_to_model(kvz_compiler *c, kvz_model *m, const kvz_compile_opts *o)
{
    c->model = m;
    c->opts = *o;
    int rc = kvz_prompt_prefix(m, &c->prefix, &c->prefix_hash);
    int32_t pass = o->sel.method == KVZ_METHOD_KVZIP ? kvz_kvzip_pass_tokens(m, o->kvzip_chunk) : 0;
    if (rc == KVZ_OK && o->question) {
        rc = kvz_prompt_question(m, o->question, &c->question);
        if ((int32_t)c->question.len > pass)
            pass = (int32_t)c->question.len;
    }
    c->pass_tokens = pass;
    /* a segment leaves room for questions and for the scoring passes */
    int32_t reserve = o->reserve > pass ? o->reserve : pass;
    c->segment_limit = m->hp.ctx_train - (int32_t)c->prefix.len - reserve;
    c->value_group = o->value_group < (uint32_t)m->hp.head_dim ? o->value_group : (uint32_t)m->hp.head_dim;
    /* every group at or above the head size is the whole head, and one configuration: recorded as
     * the default (64) when that is whole heads too, so that stores made before keep their ids,
     * else as the head size (--value-group 65 and 64 on 64-channel heads are one artifact) */
    kvz_compile_opts d;
    kvz_compile_opts_default(&d);
    if (o->value_group >= (uint32_t)m->hp.head_dim)
        c->opts.value_group = d.value_group >= (uint32_t)m->hp.head_dim ? d.value_group : (uint32_t)m->hp.head_dim;
    /* heads of 80 or 96 channels: the default group becomes the largest under
     * it that divides them (40, 48), which is recorded as such */
    uint32_t fits = c->value_group; /* the largest group up to it that divides the head */
    while (m->hp.head_dim % fits != 0)
        fits--;
    if (!(o->given & KVZ_GIVEN_VALUE_GROUP) && c->value_group == d.value_group)
        c->value_group = c->opts.value_group = fits;
    if (rc == KVZ_OK && fits != c->value_group)
        rc = kvz_errorf(KVZ_ERR_ARG, "--value-group %u does not divide the head size %d (%u does; %d or more is "
                        "one group per head)", c->value_group, m->hp.head_dim, fits, m->hp.head_dim);
    if (rc == KVZ_OK && c->segment_limit < 64) {
        const char *what = reserve == o->reserve ? "--reserve"
                           : o->sel.method == KVZ_METHOD_KVZIP && pass > (int32_t)c->question.len
                               ? "KVzip's scoring pass (a smaller --kvzip-chunk shortens it)"
                               : "the --question";
        if (c->segment_limit > 0)
            rc = kvz_errorf(KVZ_ERR_RANGE, "the model's context (%d tokens) leaves %d per segment (64 at least) "
                            "after the prefix (%zu) and %d for %s", m->hp.ctx_train, c->segment_limit, c->prefix.len,
                            reserve, what);
        else
            rc = kvz_errorf(KVZ_ERR_RANGE, "the model's context (%d tokens) has no room for a segment (64 tokens "
                            "at least) after the prefix (%zu) and %d for %s", m->hp.ctx_train, c->prefix.len,
                            reserve, what);
    }
    return rc;
}

int kvz_compile_opts_fit(kvz_model *m, const kvz_compile_opts *o)
{
    KVZ_TRY(kvz_compile_opts_check(o));
    kvz_compiler c = {0};
    int rc = fit_to_model(&c, m, o);
    kvz_tokens_free(&c.prefix);
    kvz_tokens_free(&c.question);
    return rc;
}

int kvz_compiler_new(kvz_compiler **out, kvz_model *m, kvz_store *s, const kvz_compile_opts *o)
{
    *out = NULL;
    KVZ_TRY(kvz_compile_opts_check(o));
    kvz_compiler *c = calloc(1, sizeof *c);
    if (!c)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->store = s;
    kvz_model_identity_of(m, &c->id);
    int rc = fit_to_model(c, m, o);
    if (rc == KVZ_OK)
        rc = ensure_context(c, 0);
    if (rc == KVZ_OK) {
        describe_config(c);
        rc = build_prefix_artifact(c);
    }
    if (rc == KVZ_OK && o->sel.method == KVZ_METHOD_KVZIP && o->sel.level == KVZ_LEVEL_HEAD)
        rc = load_head_scores(c);
    if (rc != KVZ_OK) {
        kvz_compiler_free(c);
        return rc;
    }
    *out = c;
    return KVZ_OK;
}

void kvz_compiler_free(kvz_compiler *c)
{
    if (!c)
        return;
    kvz_context_free(c->ctx);
    for (int i = 0; i < 2; i++)
        readback_free(c->model->backend, &c->readback[i]);
    kvz_tokens_free(&c->prefix);
    kvz_tokens_free(&c->question);
    free(c->head_scores);
    free(c->prefix_artifact);
    free(c);
}

/* ---- one document ------------------------------------------------------------------ */

/* A segment's progress is told in tokens, each phase's share of them its
 * share of the work: a token at context position p costs about
 * 1 + per_position * p (its weight products, then attention over p keys), so
 * a prefill's last tokens cost several times its first and a KVzip pass,
 * which works after the whole segment, more than its prefill (counted
 * evenly, the ETA in a long document came out about half the time left). */
typedef struct progress_relay {
    kvz_compile_progress_fn fn;
    void *ctx;
    int64_t base;        /* tokens of earlier segments */
    int64_t total;       /* of the document */
    int64_t stored;      /* of earlier segments found stored, not computed */
    int passes;          /* scoring passes over the segment after its prefill */
    int pass;
    int32_t n;           /* the segment's tokens */
    int32_t prefix;      /* context positions before the segment */
    double per_position; /* a token's attention cost per key, in its weight products' */
    int32_t chunk;       /* a KVzip pass quotes this many of the segment's tokens */
    int32_t pass_extra;  /* and adds this many of its own (the question around them) */
} progress_relay;

/* Attention's products run at about this fraction of the weight products'
 * speed (softmax between them, shorter rows): measured on SmolLM2, 2 cores. */
#define ATTENTION_SLOWDOWN 1.75

static void relay_init(progress_relay *r, const kvz_compiler *c, kvz_compile_progress_fn fn, void *ctx)
{
    const kvz_hparams *hp = &c->model->hp;
    double q = (double)hp->n_heads * hp->head_dim, kv = (double)hp->n_kv_heads * hp->head_dim;
    double weights = 2.0 * hp->dim * (q + kv) + 3.0 * hp->dim * hp->ff_dim; /* q, o; k, v; the MLP */
    *r = (progress_relay){.fn = fn, .ctx = ctx, .prefix = (int32_t)c->prefix.len};
    r->passes = c->opts.sel.method == KVZ_METHOD_KVZIP && c->opts.sel.level != KVZ_LEVEL_HEAD ? 1 : 0;
    r->per_position = weights > 0 ? ATTENTION_SLOWDOWN * 2.0 * q / weights : 0; /* q.k and the sum of v */
    r->chunk = c->opts.kvzip_chunk;
    r->pass_extra = r->passes ? kvz_kvzip_pass_tokens(c->model, r->chunk) - r->chunk : 0;
}

/* Work of the segment's first t tokens of prefill, or of a pass over them. */
static double prefill_work(const progress_relay *r, double t)
{
    return t + r->per_position * ((double)r->prefix * t + t * t / 2);
}

static double pass_work(const progress_relay *r, double t)
{
    double quoted = r->chunk < r->n ? r->chunk : r->n, evaluated = quoted + r->pass_extra;
    double at = (double)r->prefix + r->n + evaluated / 2; /* a pass sits after the segment */
    return t * evaluated / quoted * (1 + r->per_position * at);
}

static void relay(void *ctx, int64_t tokens)
{
    progress_relay *r = ctx;
    if (!r->fn || r->n <= 0)
        return;
    double total = prefill_work(r, r->n) + r->passes * pass_work(r, r->n);
    double done = r->pass == 0 ? prefill_work(r, (double)tokens)
                               : prefill_work(r, r->n) + (r->pass - 1) * pass_work(r, r->n) +
                                     pass_work(r, (double)tokens);
    r->fn(r->ctx, r->base + (int64_t)((double)r->n * (done < total ? done / total : 1.0)), r->total, r->stored);
}

/* Scores of the segment in the context (prefilled). */
static int score_segment(kvz_compiler *c, const int32_t *tokens, int32_t n, float *scores,
                         progress_relay *pr)
{
    const kvz_compile_opts *o = &c->opts;
    int32_t P = (int32_t)c->prefix.len;
    switch (o->sel.method) {
    case KVZ_METHOD_KVZIP:
        if (o->sel.level == KVZ_LEVEL_HEAD)
            return KVZ_OK;
        return kvz_score_kvzip(c->ctx, P, tokens, n, o->kvzip_chunk, scores, relay, pr);
    case KVZ_METHOD_SNAPKV:
    case KVZ_METHOD_CHUNKKV:
        if (o->question) /* else the prefill scored its window */
            return kvz_score_question(c->ctx, P, n, c->question.ids, (int32_t)c->question.len,
                                      window_pool(c), scores);
        return KVZ_OK;
    case KVZ_METHOD_KNORM:
        return kvz_score_knorm(c->ctx, P, n, scores);
    default:
        return KVZ_OK;
    }
}

/* The window the prefill scores (window methods without a question): the
 * one given, else SnapKV's 32, or 16 for a segment under 1K tokens. */
static int32_t prefill_window(const kvz_compiler *c, int32_t n)
{
    const kvz_compile_opts *o = &c->opts;
    if ((o->sel.method != KVZ_METHOD_SNAPKV && o->sel.method != KVZ_METHOD_CHUNKKV) || o->question)
        return 0;
    if (o->sel.window)
        return (int32_t)o->sel.window;
    return n < 1024 ? 16 : 32;
}

static int compile_segment(kvz_compiler *c, const char *name, const uint8_t hash[16], uint32_t seg,
                           uint32_t n_seg, const kvz_tokens *tokens, uint8_t **bytes, size_t *size,
                           kvz_doc_result *r, progress_relay *pr)
{
    const kvz_hparams *hp = &c->model->hp;
    int32_t P = (int32_t)c->prefix.len, n = (int32_t)tokens->len;
    size_t pairs = (size_t)hp->n_layers * hp->n_kv_heads * n;
    float *scores = calloc(pairs, sizeof(float));
    if (!scores)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory for %zu scores", pairs);
    kvz_select_opts sel = c->opts.sel;
    sel.window = (uint32_t)prefill_window(c, n);
    sel.seed ^= (uint64_t)hash[0] | (uint64_t)hash[1] << 8 | (uint64_t)seg << 16;
    double t0 = kvz_now_seconds();
    int rc = ensure_context(c, n);
    if (rc == KVZ_OK)
        kvz_context_truncate(c->ctx, P);
    if (rc == KVZ_OK)
        rc = kvz_prefill_document(c->ctx, tokens->ids, n, (int32_t)sel.window, window_pool(c), scores, relay, pr);
    double t1 = kvz_now_seconds();
    pr->pass = 1;
    if (rc == KVZ_OK)
        rc = score_segment(c, tokens->ids, n, scores, pr);
    kvz_selection s = {0};
    if (rc == KVZ_OK)
        rc = kvz_select(&sel, c->model->backend, scores, c->head_scores, hp->n_layers, hp->n_kv_heads, n, &s);
    double t2 = kvz_now_seconds();
    kvz_manifest m;
    fill_manifest(c, &m, (int32_t)sel.window);
    snprintf(m.doc_name, sizeof m.doc_name, "%s", name);
    memcpy(m.doc_hash, hash, 16);
    m.n_tokens = (uint32_t)n, m.segment = seg, m.n_segments = n_seg;
    if (rc == KVZ_OK)
        rc = encode_artifact(c, &m, tokens->ids, P, n, &s, bytes, size);
    r->prefill_s += t1 - t0;
    r->score_s += t2 - t1;
    r->write_s += kvz_now_seconds() - t2;
    if (rc == KVZ_OK) {
        r->kept_pairs += kvz_selection_total(&s);
        r->total_pairs += pairs;
    }
    kvz_selection_free(&s);
    free(scores);
    if (c->ctx)
        kvz_context_truncate(c->ctx, P);
    return rc;
}

/* What one document's write transaction puts. */
typedef struct doc_write {
    kvz_compiler *c;
    const char *name;
    const uint8_t *hash;
    uint32_t n_seg;
    uint8_t (*ids)[16];
    uint8_t **bytes; /* NULL where the store already had the artifact, or where kept */
    size_t *sizes;
    const uint8_t *kept; /* 1 where the artifact went into the store as it was done (a long document) */
    const XXH128_hash_t *digests; /* of each kept artifact's bytes, freed once stored */
    const kvz_segments *segs;
    const kvz_doc_entry *entry;
    uint32_t *dropped_forms; /* out: the earlier content's other configurations */
    int *stale;              /* out: the source changed since it was read: nothing written */
} doc_write;

/* A stored shared prefix that fails its checks (KVZ_ERR_FORMAT: damaged) is
 * written again with the next document; one of a newer format is left as it is. */
static int prefix_damaged(const void *val, size_t len)
{
    kvz_artifact a;
    int rc = kvz_artifact_open(&a, val, len);
    kvz_error_clear();
    return rc == KVZ_ERR_FORMAT;
}

static int write_document(kvz_store_txn *t, void *ctx)
{
    const doc_write *d = ctx;
    *d->dropped_forms = 0; /* of this attempt (a write retried after the map grew) */
    /* under the write lock: a compile that read the source later than this one
     * has committed, or commits after this transaction (and wins) */
    *d->stale = d->c->still_current && !d->c->still_current(d->c->still_current_ctx, d->name, d->hash);
    if (*d->stale)
        return KVZ_OK;
    const void *val;
    size_t len;
    int rc = kvz_store_get(t, KVZ_DB_META, d->c->prefix_key, strlen(d->c->prefix_key), &val, &len);
    if (rc == KVZ_OK && !d->c->prefix_sound && prefix_damaged(val, len))
        rc = KVZ_ERR_NOT_FOUND; /* written again (once seen sound this run, not read again) */
    if (rc == KVZ_ERR_NOT_FOUND)
        rc = kvz_store_put(t, KVZ_DB_META, d->c->prefix_key, strlen(d->c->prefix_key),
                           d->c->prefix_artifact, d->c->prefix_artifact_size);
    for (uint32_t i = 0; i < d->n_seg && rc == KVZ_OK; i++) {
        if (d->bytes[i] && !d->kept[i]) {
            rc = kvz_store_put(t, KVZ_DB_ARTIFACTS, d->ids[i], 16, d->bytes[i], d->sizes[i]);
            continue;
        }
        /* stored earlier, by this compile or before it: looked at again, as a
         * record never names what is not there; one of this compile's that
         * another writer replaced meanwhile (an older kvz's cut, a bundle's)
         * is put again, so that the record reads this compile's cut whole.
         * One this compile put as it went was let go (its digest kept): one
         * replaced by another of the same tokens stays, one of another cut
         * fails the document, and the next run computes it again (the
         * artifact there is not of its tokens) and puts it with the record */
        rc = kvz_store_get(t, KVZ_DB_ARTIFACTS, d->ids[i], 16, &val, &len);
        kvz_artifact a;
        if (rc == KVZ_OK && d->kept[i] &&
            (len != d->sizes[i] || !XXH128_isEqual(XXH3_128bits(val, len), d->digests[i])) &&
            (kvz_artifact_open(&a, val, len) != KVZ_OK ||
             !kvz_artifact_holds_tokens(&a, d->segs->items[i].tokens.ids, (uint32_t)d->segs->items[i].tokens.len))) {
            kvz_error_clear();
            rc = kvz_errorf(KVZ_ERR_NOT_FOUND, "the stored artifact of its segment %u was replaced by another cut "
                            "while it was compiled (another writer meanwhile): compile it again", i + 1);
        } else if (rc == KVZ_OK && d->bytes[i] && (len != d->sizes[i] || memcmp(val, d->bytes[i], len) != 0)) {
            rc = kvz_store_put(t, KVZ_DB_ARTIFACTS, d->ids[i], 16, d->bytes[i], d->sizes[i]);
        } else if (rc == KVZ_ERR_NOT_FOUND && d->bytes[i]) {
            kvz_error_clear();
            rc = kvz_store_put(t, KVZ_DB_ARTIFACTS, d->ids[i], 16, d->bytes[i], d->sizes[i]);
        } else if (rc == KVZ_ERR_NOT_FOUND) {
            kvz_error_clear();
            rc = kvz_errorf(KVZ_ERR_NOT_FOUND, "the stored artifact of its segment %u left the store while it was "
                            "compiled (a gc or rm meanwhile): compile it again", i + 1);
        }
    }
    if (rc != KVZ_OK)
        return rc;
    kvz_entry_outcome outcome;
    return kvz_doc_record_put_entry(t, d->name, d->hash, d->entry, 1, &outcome, d->dropped_forms);
}

/* A segment's artifact, put where its id is not in the store yet: one there
 * (another name's, or a cut made by an older kvz) is replaced only in the
 * transaction of the record, with the others of its document, so that no
 * record reads segments of two cuts. */
typedef struct early_put {
    const uint8_t *id;
    const uint8_t *bytes;
    size_t size;
    int put; /* out */
} early_put;

static int put_if_absent(kvz_store_txn *t, void *ctx)
{
    early_put *e = ctx;
    const void *val;
    size_t len;
    e->put = 0;
    int rc = kvz_store_get(t, KVZ_DB_ARTIFACTS, e->id, 16, &val, &len);
    if (rc != KVZ_ERR_NOT_FOUND)
        return rc;
    kvz_error_clear();
    rc = kvz_store_put(t, KVZ_DB_ARTIFACTS, e->id, 16, e->bytes, e->size);
    e->put = rc == KVZ_OK;
    return rc;
}

/* The stored shared prefix is there and not damaged: looked at once per
 * compiler (it is ~1 MB; documents are many), and known again after a write. */
static int stored_prefix_sound(kvz_compiler *c, kvz_store_txn *t)
{
    const void *val;
    size_t len;
    if (!c->prefix_sound && kvz_store_get(t, KVZ_DB_META, c->prefix_key, strlen(c->prefix_key), &val, &len) == KVZ_OK)
        c->prefix_sound = !prefix_damaged(val, len);
    kvz_error_clear();
    return c->prefix_sound;
}

/* Already compiled: the record names this content and config, every artifact
 * is in the store, and the shared prefix is there, not damaged (else it is
 * written again with the document). The artifacts are not checked through:
 * that would read the whole store on every run (kvz verify does; compile
 * --force rebuilds what it finds). */
static int already_compiled(kvz_compiler *c, const char *name, const uint8_t hash[16], kvz_doc_result *r)
{
    kvz_store_txn *t;
    if (kvz_store_read_begin(c->store, &t) != KVZ_OK)
        return 0;
    const void *val;
    size_t len;
    int found = 0;
    kvz_doc_record rec;
    if (kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &val, &len) == KVZ_OK &&
        kvz_doc_record_decode(val, len, &rec) == KVZ_OK) {
        const kvz_doc_entry *e = kvz_doc_record_find(&rec, c->config_id);
        found = e && memcmp(rec.doc_hash, hash, 16) == 0;
        found = found && stored_prefix_sound(c, t);
        for (uint32_t i = 0; found && i < e->n_segments; i++)
            found = kvz_store_get(t, KVZ_DB_ARTIFACTS, e->artifact_ids[i], 16, &val, &len) == KVZ_OK;
        if (found) {
            r->tokens = (int32_t)e->n_tokens;
            r->segments = (int32_t)e->n_segments;
            r->bytes = e->stored_bytes;
        }
        kvz_doc_record_free(&rec);
    }
    kvz_store_read_end(t);
    return found;
}

/* Bytes of the stored artifact `id` when it holds exactly this segment's
 * tokens, else 0: absent, damaged, or cut otherwise (a kvz before 0.3.3, or
 * before 0.3.11, cut some documents into other segments under the same ids), to be compiled and
 * written over; every record of this content then reads this cut whole. */
static size_t stored_artifact_size(kvz_compiler *c, const uint8_t id[16], const kvz_tokens *toks)
{
    kvz_store_txn *t;
    if (kvz_store_read_begin(c->store, &t) != KVZ_OK)
        return 0;
    const void *val;
    size_t len = 0;
    kvz_artifact a;
    if (kvz_store_get(t, KVZ_DB_ARTIFACTS, id, 16, &val, &len) != KVZ_OK || kvz_artifact_open(&a, val, len) != KVZ_OK ||
        !kvz_artifact_holds_tokens(&a, toks->ids, (uint32_t)toks->len))
        len = 0;
    kvz_store_read_end(t);
    kvz_error_clear();
    return len;
}

int kvz_compile_document(kvz_compiler *c, const char *name, const char *text, size_t len,
                         const uint8_t hash[16], kvz_doc_result *r, kvz_compile_progress_fn progress,
                         void *progress_ctx)
{
    memset(r, 0, sizeof *r);
    if (!name[0] || strlen(name) > KVZ_STORE_KEY_MAX) /* before any work: the store could not name it */
        return kvz_errorf(KVZ_ERR_ARG, "a document name of %zu bytes: the store takes names of 1 to %d bytes",
                          strlen(name), KVZ_STORE_KEY_MAX);
    if (!c->opts.force && already_compiled(c, name, hash, r)) {
        r->status = KVZ_DOC_UNCHANGED;
        return KVZ_OK;
    }
    kvz_segments segs;
    KVZ_TRY(kvz_segment_text(c->model->tokenizer, text, len, c->segment_limit, &segs));
    r->untokenized = segs.dropped;
    r->first_untokenized = segs.first_dropped;
    uint32_t n_seg = (uint32_t)segs.len;
    uint8_t (*ids)[16] = calloc(n_seg ? n_seg : 1, 16);
    uint8_t **bytes = calloc(n_seg ? n_seg : 1, sizeof *bytes);
    size_t *sizes = calloc(n_seg ? n_seg : 1, sizeof *sizes);
    uint8_t *kept = calloc(n_seg ? n_seg : 1, 1);
    XXH128_hash_t *digests = calloc(n_seg ? n_seg : 1, sizeof *digests);
    int rc = ids && bytes && sizes && kept && digests ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (rc == KVZ_OK && (n_seg == 0 || (n_seg == 1 && segs.items[0].tokens.len == 0))) {
        r->status = KVZ_DOC_EMPTY;
        rc = kvz_errorf(KVZ_ERR_FORMAT, "empty (the model's tokenizer keeps none of its bytes)");
    }
    progress_relay pr;
    relay_init(&pr, c, progress, progress_ctx);
    for (uint32_t i = 0; i < n_seg; i++)
        pr.total += (int64_t)segs.items[i].tokens.len;
    for (uint32_t i = 0; i < n_seg && rc == KVZ_OK; i++) {
        const kvz_tokens *toks = &segs.items[i].tokens;
        kvz_artifact_id(c->config, hash, i, n_seg, ids[i]);
        r->tokens += (int32_t)toks->len;
        pr.pass = 0;
        pr.n = (int32_t)toks->len;
        size_t have = c->opts.force ? 0 : stored_artifact_size(c, ids[i], toks);
        if (have) { /* the same content under another name: nothing to compute */
            r->bytes += have;
            r->shared_segments++;
            pr.base += (int64_t)toks->len;
            pr.stored += (int64_t)toks->len;
            continue;
        }
        rc = compile_segment(c, name, hash, i, n_seg, toks, &bytes[i], &sizes[i], r, &pr);
        /* a long document's segments go into the store as they are done (no
         * record names them yet: a reader does not see the document), so that
         * a run interrupted within it goes on from its next segment; one put
         * there is let go, its digest kept (held to the record, a book's
         * artifacts took gigabytes: 12 MB a segment of SmolLM2 at 4 bits) */
        if (rc == KVZ_OK && n_seg > 1) {
            double t0 = kvz_now_seconds();
            early_put w = {ids[i], bytes[i], sizes[i], 0};
            rc = kvz_store_write(c->store, put_if_absent, &w);
            kept[i] = rc == KVZ_OK && w.put;
            if (kept[i]) {
                digests[i] = XXH3_128bits(bytes[i], sizes[i]);
                free(bytes[i]);
                bytes[i] = NULL;
            }
            r->write_s += kvz_now_seconds() - t0;
        }
        r->bytes += sizes[i];
        pr.base += (int64_t)toks->len;
    }
    if (rc == KVZ_OK) {
        double t0 = kvz_now_seconds();
        kvz_doc_entry e = {.config_id = c->config_id, .model_fingerprint = c->id.fingerprint,
                           .created = kvz_created_time(), .stored_bytes = r->bytes,
                           .n_tokens = (uint32_t)r->tokens, .n_segments = n_seg, .artifact_ids = ids};
        kvz_compile_summary(&c->opts, e.summary, sizeof e.summary);
        int stale = 0;
        doc_write d = {c, name, hash, n_seg, ids, bytes, sizes, kept, digests, &segs, &e, &r->dropped_forms, &stale};
        rc = kvz_store_write(c->store, write_document, &d);
        c->prefix_sound |= rc == KVZ_OK && !stale; /* written with it, if it was missing or damaged */
        r->write_s += kvz_now_seconds() - t0;
        r->segments = (int32_t)n_seg;
        r->status = stale ? KVZ_DOC_STALE : KVZ_DOC_COMPILED;
    }
    for (uint32_t i = 0; bytes && i < n_seg; i++)
        free(bytes[i]);
    free(ids), free(bytes), free(sizes), free(kept), free(digests);
    kvz_segments_free(&segs);
    return rc;
}
