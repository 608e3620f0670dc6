/*
 * test_compile.c — the compiler and the store: selection rules, budgets, the
 * scorers on the real model, content addressing, ingest of files, folders and
 * archives, and refusal of artifacts made by another model.
 */
#include "test_util.h"

#include <malloc.h>
#include <math.h>
#include <sys/stat.h>

#include "common/buffer.h"
#include "common/timer.h"
#include "compiler/compile.h"
#include "compiler/ingest.h"
#include "compiler/segment.h"
#include "compiler/select.h"
#include "format/artifact.h"
#include "format/doc_record.h"
#include "format/store.h"
#include "model/identity.h"
#include "model/model.h"
#include "model/synth_model.h"
#include "model/utf8.h"

static kvz_model *model;
static kvz_backend *cpu_backend; /* selection without a model */

static int setup(void **state)
{
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    CHECK_OK(kvz_model_load(&model, test_model_path(), &cfg));
    kvz_backend_config bc = {.device = KVZ_DEVICE_CPU, .n_threads = 1};
    CHECK_OK(kvz_backend_create(&cpu_backend, &bc));
    return 0;
}

static int teardown(void **state)
{
    kvz_model_free(model);
    kvz_backend_destroy(cpu_backend);
    return 0;
}

/* A real document of ~250 tokens: the start of the GPL excerpt. */
static char *sample_text(size_t *len)
{
    char *text;
    size_t size;
    CHECK_OK(kvz_read_file("tests/data/gpl3_excerpt.txt", &text, &size));
    *len = size < 1100 ? size : 1100;
    text[*len] = '\0';
    return text;
}

static const char *fresh_store(const char *name)
{
    const char *dir = test_tmp_path(name);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

/* ---- selection, no model ---------------------------------------------------- */

static void test_pyramid_budgets(void **state)
{
    int32_t b[30];
    CHECK_OK(kvz_layer_budgets(KVZ_SHAPE_PYRAMID, 300.0, 30, 1000, 20.0f, 0.2f, b));
    long sum = 0;
    for (int l = 0; l < 30; l++) {
        sum += b[l];
        if (l)
            assert_true(b[l] <= b[l - 1]); /* decreasing with depth */
    }
    assert_int_equal(sum, 300 * 30);        /* same total */
    assert_int_equal(b[29], 15);            /* top = avg / beta */
    assert_int_equal(b[0], 585);            /* bottom = 2 avg - top */
    CHECK_OK(kvz_layer_budgets(KVZ_SHAPE_DECAY, 100.0, 30, 1000, 20.0f, 0.2f, b));
    sum = 0;
    for (int l = 0; l < 30; l++)
        sum += b[l], assert_true(l == 0 || b[l] <= b[l - 1]);
    assert_true(labs(sum - 3000) <= 1);
    assert_true(fabs((double)b[29] / b[0] - 0.2) < 0.02);
    /* a bottom layer cannot keep more than the document */
    CHECK_OK(kvz_layer_budgets(KVZ_SHAPE_PYRAMID, 80.0, 4, 100, 20.0f, 0.2f, b));
    assert_int_equal(b[0], 100);
    assert_int_equal(b[0] + b[1] + b[2] + b[3], 320);
}

static void test_budgets_never_zero(void **state)
{
    const int32_t L = 4, H = 3, n = 500;
    float *scores = malloc(sizeof(float) * L * H * n);
    for (int i = 0; i < L * H * n; i++)
        scores[i] = test_frand();
    for (int i = 0; i < n; i++)
        scores[(1 * H + 2) * n + i] = -10.0f; /* one head that scores worst everywhere */
    const kvz_method methods[] = {KVZ_METHOD_KVZIP, KVZ_METHOD_SNAPKV, KVZ_METHOD_RECENT,
                                  KVZ_METHOD_RANDOM, KVZ_METHOD_KNORM, KVZ_METHOD_CHUNKKV};
    for (size_t mi = 0; mi < sizeof methods / sizeof methods[0]; mi++) {
        kvz_select_opts o = {.method = methods[mi], .ratio = 0.001f, .beta = 20, .decay = 0.2f, .reuse = 1,
                             .sinks = 4, .seed = 3, .chunk = methods[mi] == KVZ_METHOD_CHUNKKV ? 10 : 0};
        kvz_selection s;
        CHECK_OK(kvz_select(&o, cpu_backend, scores, NULL, L, H, n, &s));
        for (int i = 0; i < L * H; i++)
            if (s.offset[i + 1] - s.offset[i] < 1)
                fail_msg("%s left head %d empty", kvz_method_name(methods[mi]), i);
        kvz_selection_free(&s);
    }
    /* the global threshold gives heads different lengths; pair-uniform does not */
    kvz_select_opts pair = {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_PAIR, .ratio = 0.2f};
    kvz_selection s;
    CHECK_OK(kvz_select(&pair, cpu_backend, scores, NULL, L, H, n, &s));
    /* the worst head got nothing under the threshold: it keeps its best pair, one over the budget */
    assert_int_equal(kvz_selection_total(&s), (uint64_t)lround(0.2 * L * H * n) + 1);
    assert_true(s.offset[(1 * H + 2) + 1] - s.offset[1 * H + 2] == 1);
    kvz_selection_free(&s);
    pair.level = KVZ_LEVEL_PAIR_UNIFORM;
    CHECK_OK(kvz_select(&pair, cpu_backend, scores, NULL, L, H, n, &s));
    for (int i = 0; i < L * H; i++)
        assert_int_equal(s.offset[i + 1] - s.offset[i], 100);
    kvz_selection_free(&s);
    free(scores);
}

/* recent is StreamingLLM: the first `sinks` positions of every head and the
 * newest for the rest of its budget; a budget under the sinks keeps the first */
static void test_recent_sinks(void **state)
{
    const int32_t L = 2, H = 2, n = 100;
    const struct {
        uint32_t sinks, budget;
        uint32_t first, last; /* kept: [0, first) and [last, n) */
    } cases[] = {{4, 10, 4, 94}, {0, 10, 0, 90}, {4, 3, 3, 100}, {20, 30, 20, 90}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kvz_select_opts o = {.method = KVZ_METHOD_RECENT, .budget = cases[c].budget, .sinks = cases[c].sinks};
        kvz_selection s;
        CHECK_OK(kvz_select(&o, cpu_backend, NULL, NULL, L, H, n, &s));
        for (int i = 0; i < L * H; i++) {
            const uint32_t *pos = s.pos + s.offset[i];
            uint32_t count = s.offset[i + 1] - s.offset[i], k = 0;
            assert_int_equal(count, cases[c].budget);
            for (uint32_t t = 0; t < cases[c].first; t++)
                assert_int_equal(pos[k++], t);
            for (uint32_t t = cases[c].last; t < (uint32_t)n; t++)
                assert_int_equal(pos[k++], t);
        }
        kvz_selection_free(&s);
    }
}

/* every method, level and shape is found again by its name */
static void test_selection_names(void **state)
{
    for (int m = 0; m < KVZ_METHOD_COUNT; m++)
        assert_int_equal(kvz_method_from_name(kvz_method_name((kvz_method)m)), m);
    for (int l = 0; l <= KVZ_LEVEL_HEAD; l++)
        assert_int_equal(kvz_level_from_name(kvz_level_name((kvz_level)l)), l);
    for (int sh = 0; sh <= KVZ_SHAPE_DECAY; sh++)
        assert_int_equal(kvz_shape_from_name(kvz_shape_name((kvz_budget_shape)sh)), sh);
    assert_int_equal(kvz_method_from_name("streamingllm"), -1);
}

static void test_chunk_selection(void **state)
{
    const int32_t L = 6, H = 3, n = 237;
    float *scores = malloc(sizeof(float) * L * H * n);
    for (int i = 0; i < L * H * n; i++)
        scores[i] = test_frand();
    kvz_select_opts o = {.method = KVZ_METHOD_CHUNKKV, .ratio = 0.3f, .chunk = 10, .reuse = 2, .window = 16};
    kvz_selection s;
    CHECK_OK(kvz_select(&o, cpu_backend, scores, NULL, L, H, n, &s));
    for (int l = 0; l < L; l++) {
        const uint32_t *p0 = s.pos + s.offset[l * H];
        uint32_t n0 = s.offset[l * H + 1] - s.offset[l * H];
        for (int h = 1; h < H; h++) { /* the same chunks in every head of a layer */
            assert_int_equal(s.offset[l * H + h + 1] - s.offset[l * H + h], n0);
            assert_memory_equal(s.pos + s.offset[l * H + h], p0, n0 * 4);
        }
        if (l % 2 == 1) { /* reused from the layer below */
            assert_int_equal(s.offset[(l - 1) * H + 1] - s.offset[(l - 1) * H], n0);
            assert_memory_equal(s.pos + s.offset[(l - 1) * H], p0, n0 * 4);
        }
        /* whole chunks: a kept position's chunk is kept entirely */
        uint8_t kept[237] = {0};
        for (uint32_t i = 0; i < n0; i++)
            kept[p0[i]] = 1;
        for (int t = 0; t < n; t++)
            assert_int_equal(kept[t], kept[t - t % 10]);
        for (int t = n - 16; t < n; t++)
            assert_true(kept[t]); /* the window */
    }
    kvz_selection_free(&s);
    free(scores);
}

/* ---- selection against a sort-based reference -------------------------------- */

static const float *ref_scores;

/* Higher score first, then lower index. */
static int ref_order(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = ref_scores[i], y = ref_scores[j];
    return x > y ? -1 : x < y ? 1 : (i > j) - (i < j);
}

/* mask[first + i] = 1 for the k best of scores[first .. first + count), by sorting. */
static void ref_top_k(const float *scores, size_t first, size_t count, size_t k, uint8_t *mask)
{
    uint32_t *idx = malloc((count ? count : 1) * sizeof *idx);
    for (size_t i = 0; i < count; i++)
        idx[i] = (uint32_t)(first + i);
    ref_scores = scores;
    qsort(idx, count, sizeof *idx, ref_order);
    for (size_t i = 0; i < k && i < count; i++)
        mask[idx[i]] = 1;
    free(idx);
}

/* DESIGN §4's rules written out directly, one case at a time. */
static void ref_select(const kvz_select_opts *o, const float *scores, const float *head_scores, int32_t L,
                       int32_t H, int32_t n, kvz_selection *out)
{
    size_t heads = (size_t)L * H, total = heads * n;
    uint8_t *mask = calloc(total, 1);
    int32_t budgets[64];
    double avg = o->budget ? o->budget : o->ratio * n;
    CHECK_OK(kvz_layer_budgets(o->shape, avg, L, n, o->beta, o->decay, budgets));
    int windowed = o->method == KVZ_METHOD_SNAPKV || o->method == KVZ_METHOD_CHUNKKV;
    if (o->level == KVZ_LEVEL_HEAD) {
        uint8_t kept[256] = {0};
        ref_top_k(head_scores, 0, heads, (size_t)lround(avg / n * heads), kept);
        for (size_t i = 0; i < heads; i++)
            memset(mask + i * n, kept[i], n);
    } else if (o->chunk) {
        int32_t c = (int32_t)o->chunk, n_chunks = (n + c - 1) / c;
        float *sums = malloc(n_chunks * sizeof *sums);
        uint8_t *chosen = malloc(n_chunks);
        for (int32_t l = 0; l < L; l++) {
            if (l % o->reuse == 0) {
                int32_t win = windowed ? (o->window < (uint32_t)budgets[l] ? (int32_t)o->window : budgets[l]) : 0;
                memset(chosen, 0, n_chunks);
                for (int32_t k = 0; k < n_chunks; k++) {
                    sums[k] = 0; /* exact: the test's scores are multiples of 1/64 */
                    for (int32_t h = 0; h < H; h++)
                        for (int32_t t = k * c; t < n && t < (k + 1) * c; t++)
                            sums[k] += scores[((size_t)l * H + h) * n + t];
                }
                int32_t first_window_chunk = win ? (n - win) / c : n_chunks, want = (budgets[l] - win) / c;
                ref_top_k(sums, 0, first_window_chunk, want || win ? want : 1, chosen);
                for (int32_t k = first_window_chunk; k < n_chunks; k++)
                    chosen[k] = 1;
            }
            for (int32_t h = 0; h < H; h++)
                for (int32_t t = 0; t < n; t++)
                    mask[((size_t)l * H + h) * n + t] = chosen[t / c];
        }
        free(sums), free(chosen);
    } else if (o->level == KVZ_LEVEL_PAIR && !windowed) {
        if (o->shape == KVZ_SHAPE_UNIFORM)
            ref_top_k(scores, 0, total, (size_t)lround(avg * heads), mask);
        else
            for (int32_t l = 0; l < L; l++)
                ref_top_k(scores, (size_t)l * H * n, (size_t)H * n, (size_t)budgets[l] * H, mask);
    } else {
        for (size_t i = 0; i < heads; i++) {
            int32_t b = budgets[i / H], win = windowed ? ((int32_t)o->window < b ? (int32_t)o->window : b) : 0;
            ref_top_k(scores, i * n, n - win, b - win, mask);
            memset(mask + i * n + n - win, 1, win);
        }
    }
    out->n_layers = L, out->n_heads = H, out->n_tokens = n;
    out->offset = malloc((heads + 1) * sizeof *out->offset);
    out->pos = malloc(total * sizeof *out->pos);
    uint32_t at = 0;
    for (size_t i = 0; i < heads; i++) {
        out->offset[i] = at;
        uint32_t first = at, best = 0;
        for (int32_t t = 0; t < n; t++) {
            if (mask[i * n + t])
                out->pos[at++] = (uint32_t)t;
            if (scores[i * n + t] > scores[i * n + best])
                best = (uint32_t)t;
        }
        if (at == first) /* never empty */
            out->pos[at++] = best;
    }
    out->offset[heads] = at;
    free(mask);
}

/* kvz_select on the CPU backend keeps what the reference keeps in every case,
 * on scores full of ties (multiples of 1/64). */
static void test_select_against_reference(void **state)
{
    const int32_t L = 7, H = 3, n = 301;
    float *scores = malloc(sizeof(float) * L * H * n), head_scores[7 * 3];
    for (int i = 0; i < L * H * n; i++)
        scores[i] = floorf(test_frand() * 24) / 64;
    for (int i = 0; i < L * H; i++)
        head_scores[i] = floorf(test_frand() * 8) / 64;
    for (size_t ci = 0; ci < TEST_SELECT_N_CASES; ci++) {
        kvz_selection want, got;
        ref_select(&TEST_SELECT_CASES[ci], scores, head_scores, L, H, n, &want);
        CHECK_OK(kvz_select(&TEST_SELECT_CASES[ci], cpu_backend, scores, head_scores, L, H, n, &got));
        test_select_assert_equal(&want, &got, ci);
        kvz_selection_free(&want), kvz_selection_free(&got);
    }
    free(scores);
}

/* ---- compiling with the real model --------------------------------------------- */

static int count_entries(kvz_store *st, kvz_store_db db)
{
    kvz_store_txn *t;
    size_t n = 0;
    CHECK_OK(kvz_store_read_begin(st, &t));
    CHECK_OK(kvz_store_count(t, db, &n));
    kvz_store_read_end(t);
    return (int)n;
}

/* The artifact of `name` (first config, first segment), opened over a copy. */
static uint8_t *load_artifact(kvz_store *st, const char *name, kvz_artifact *a)
{
    kvz_store_txn *t;
    const void *val;
    size_t len;
    CHECK_OK(kvz_store_read_begin(st, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &val, &len));
    kvz_doc_record rec;
    CHECK_OK(kvz_doc_record_decode(val, len, &rec));
    CHECK_OK(kvz_store_get(t, KVZ_DB_ARTIFACTS, rec.entries[0].artifact_ids[0], 16, &val, &len));
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    CHECK_OK(kvz_artifact_open(a, copy, len));
    CHECK_OK(kvz_artifact_verify(a));
    return copy;
}

typedef struct progress_seen {
    int64_t values[64];
    int n;
} progress_seen;

static void record_progress(void *ctx, int64_t tokens, int64_t total, int64_t stored)
{
    progress_seen *p = ctx;
    if (p->n < 64)
        p->values[p->n++] = tokens;
}

/* The heap in use at each progress call of a compile (glibc's count; none
 * under ASan, whose allocator it does not see). */
typedef struct heap_seen {
    size_t first, last;
    int n;
    int64_t total, stored; /* as the last call said them */
} heap_seen;

static void record_heap(void *ctx, int64_t tokens, int64_t total, int64_t stored)
{
    heap_seen *h = ctx;
    h->total = total;
    h->stored = stored;
    struct mallinfo2 m = mallinfo2();
    h->last = m.uordblks + m.hblkhd;
    if (h->n++ == 0)
        h->first = h->last;
}

/* A fresh store `name` and a compiler into it whose segments are 120 tokens
 * at most (full, 16 bits: ~20 KB a token, so that the artifacts outweigh the
 * heap's noise), and 4,000 bytes of text to compile in ~10 segments. */
typedef struct long_document {
    kvz_store *st;
    kvz_compiler *c;
    char *text;
    size_t len;
} long_document;

static void long_document_open(long_document *d, const char *name)
{
    CHECK_OK(kvz_store_open(&d->st, fresh_store(name), KVZ_STORE_CREATE));
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_FULL;
    o.bits = 16;
    o.reserve = 0;
    CHECK_OK(kvz_compiler_new(&d->c, model, d->st, &o));
    o.reserve = kvz_compiler_segment_limit(d->c) - 120;
    kvz_compiler_free(d->c);
    CHECK_OK(kvz_compiler_new(&d->c, model, d->st, &o));
    CHECK_OK(kvz_read_file("tests/data/gpl3_excerpt.txt", &d->text, &d->len));
    d->len = d->len < 4000 ? d->len : 4000;
}

static void long_document_close(long_document *d)
{
    kvz_artifact a;
    free(load_artifact(d->st, "long.txt", &a)); /* the record names it, stored and sound */
    kvz_compiler_free(d->c);
    kvz_store_close(d->st);
    free(d->text);
}

/* The record of a document and its segments from `from` on removed. */
typedef struct drop_segments {
    uint8_t (*ids)[16];
    uint32_t from, n;
} drop_segments;

static int drop_later_segments(kvz_store_txn *t, void *ctx)
{
    drop_segments *d = ctx;
    for (uint32_t i = d->from; i < d->n; i++)
        KVZ_TRY(kvz_store_del(t, KVZ_DB_ARTIFACTS, d->ids[i], 16));
    return kvz_store_del(t, KVZ_DB_DOCS, "long.txt", 8);
}

/* A long document's segments go into the store as each is done, and their
 * bytes are let go then: they were held until the document's record, all of
 * them (a 16 MB book at 4 bits: 542 segments of 12 MB, 6.5 GB). */
static void test_long_document_memory(void **state)
{
    long_document d;
    long_document_open(&d, "long-memory");
    uint8_t hash[16] = {7, 7, 7};
    kvz_doc_result r;
    heap_seen heap = {0};
    CHECK_OK(kvz_compile_document(d.c, "long.txt", d.text, d.len, hash, &r, record_heap, &heap));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    assert_true(r.segments >= 6);
    /* from the first segment to the last: before, the bytes of all but the
     * last (17.3 MB of 18.8, 10 segments); now about nothing (36 KB) */
    size_t grown = heap.last > heap.first ? heap.last - heap.first : 0;
    assert_true(grown < r.bytes / 4);
    assert_int_equal(heap.total, r.tokens);
    assert_int_equal(heap.stored, 0);
    /* an interrupted run's store: the first half of the segments, no record;
     * run again, the progress counts them stored (its ETA leaves them out) */
    kvz_store_txn *t;
    const void *val;
    size_t len;
    CHECK_OK(kvz_store_read_begin(d.st, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_DOCS, "long.txt", 8, &val, &len));
    kvz_doc_record rec;
    CHECK_OK(kvz_doc_record_decode(val, len, &rec));
    kvz_store_read_end(t);
    drop_segments drop = {rec.entries[0].artifact_ids, rec.entries[0].n_segments / 2, rec.entries[0].n_segments};
    CHECK_OK(kvz_store_write(d.st, drop_later_segments, &drop));
    kvz_doc_record_free(&rec);
    int64_t total = r.tokens;
    heap = (heap_seen){0};
    CHECK_OK(kvz_compile_document(d.c, "long.txt", d.text, d.len, hash, &r, record_heap, &heap));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    assert_int_equal(r.shared_segments, r.segments / 2);
    assert_int_equal(heap.n, r.segments - r.segments / 2);
    assert_int_equal(heap.total, total);
    assert_true(heap.stored > 0 && heap.stored < total / 2 + 120);
    long_document_close(&d);
}

/* Every stored artifact replaced by bytes that are none, from the progress
 * of the sixth segment: another writer's, while the document is compiled. */
typedef struct replacer {
    kvz_store *st;
    int calls;
    uint8_t keys[64][16];
    size_t n;
} replacer;

static int collect_key(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    replacer *p = ctx;
    if (key_len == 16 && p->n < 64)
        memcpy(p->keys[p->n++], key, 16);
    return KVZ_OK;
}

static int replace_all(kvz_store_txn *t, void *ctx)
{
    replacer *p = ctx;
    p->n = 0;
    KVZ_TRY(kvz_store_scan(t, KVZ_DB_ARTIFACTS, collect_key, p));
    for (size_t i = 0; i < p->n; i++)
        KVZ_TRY(kvz_store_put(t, KVZ_DB_ARTIFACTS, p->keys[i], 16, "not an artifact", 15));
    return KVZ_OK;
}

static void replace_on_sixth(void *ctx, int64_t tokens, int64_t total, int64_t stored)
{
    replacer *p = ctx;
    if (++p->calls == 6)
        CHECK_OK(kvz_store_write(p->st, replace_all, p));
}

/* A segment stored as it was done (its bytes let go) that another writer
 * replaced by another cut fails the document, said; the next run computes
 * it again and puts it with the record. */
static void test_long_document_replaced_meanwhile(void **state)
{
    long_document d;
    long_document_open(&d, "long-replaced");
    uint8_t hash[16] = {8, 8, 8};
    kvz_doc_result r;
    replacer rep = {.st = d.st};
    assert_int_not_equal(kvz_compile_document(d.c, "long.txt", d.text, d.len, hash, &r, replace_on_sixth, &rep),
                         KVZ_OK);
    assert_true(rep.n >= 5);
    assert_non_null(strstr(kvz_last_error(), "segment 1 was replaced by another cut"));
    CHECK_OK(kvz_compile_document(d.c, "long.txt", d.text, d.len, hash, &r, NULL, NULL));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    long_document_close(&d); /* its first segment put again */
}

static void test_kvzip_compile_and_recompile(void **state)
{
    const char *dir = fresh_store("kvzip");
    kvz_store *st;
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_CREATE));
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.kvzip_chunk = 128; /* several scoring passes with quoted overlaps on a short text */
    kvz_compiler *c;
    CHECK_OK(kvz_compiler_new(&c, model, st, &o));
    size_t len;
    char *text = sample_text(&len);
    uint8_t hash[16] = {1, 2, 3};
    kvz_doc_result r;
    progress_seen seen = {0};
    CHECK_OK(kvz_compile_document(c, "gpl.txt", text, len, hash, &r, record_progress, &seen));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    assert_int_equal(r.segments, 1);
    /* progress in tokens weighted by work: never back, the whole document at
     * the end, and the prefill less than half of it (the scoring passes,
     * after the segment and longer than their chunk, cost more) */
    assert_true(seen.n >= 3 && seen.n < 64);
    for (int i = 1; i < seen.n; i++)
        assert_true(seen.values[i] >= seen.values[i - 1]);
    assert_int_equal(seen.values[seen.n - 1], r.tokens);
    assert_true(seen.values[0] > 0 && seen.values[0] < r.tokens / 2);
    double kept = (double)r.kept_pairs / (double)r.total_pairs;
    print_message("kvzip: %d tokens, kept %.3f, %llu bytes\n", r.tokens, kept, (unsigned long long)r.bytes);
    assert_true(fabs(kept - 0.3) < 0.01);
    kvz_artifact a;
    uint8_t *bytes = load_artifact(st, "gpl.txt", &a);
    assert_string_equal(a.manifest.method, "kvzip");
    assert_int_equal(a.manifest.n_tokens, (uint32_t)r.tokens);
    assert_true(a.manifest.prefix_tokens > 10);
    kvz_model_identity id;
    kvz_model_identity_of(model, &id);
    CHECK_OK(kvz_artifact_check_model(&a, NULL, &id));
    for (uint16_t l = 0; l < 30; l++)
        for (uint16_t h = 0; h < 3; h++) {
            uint32_t n;
            CHECK_OK(kvz_artifact_kept(&a, l, h, &n));
            assert_true(n >= 1);
        }
    free(bytes);
    /* the shared prefix is stored once, every position kept, f16 */
    assert_int_equal(count_entries(st, KVZ_DB_META), 2); /* version + prefix */

    /* the same document again: nothing new is written */
    int artifacts = count_entries(st, KVZ_DB_ARTIFACTS);
    CHECK_OK(kvz_compile_document(c, "gpl.txt", text, len, hash, &r, NULL, NULL));
    assert_int_equal(r.status, KVZ_DOC_UNCHANGED);
    /* the same content under another name reuses the artifact */
    CHECK_OK(kvz_compile_document(c, "copy-of-gpl.txt", text, len, hash, &r, NULL, NULL));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    assert_int_equal(count_entries(st, KVZ_DB_ARTIFACTS), artifacts);
    assert_int_equal(count_entries(st, KVZ_DB_DOCS), 2);
    kvz_compiler_free(c);

    /* another model is refused by name */
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("tiny", &spec));
    const char *tiny_path = test_tmp_path("tiny-id.gguf");
    CHECK_OK(kvz_synth_model_write(tiny_path, &spec));
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    kvz_model *tiny;
    CHECK_OK(kvz_model_load(&tiny, tiny_path, &cfg));
    kvz_model_identity other;
    kvz_model_identity_of(tiny, &other);
    bytes = load_artifact(st, "gpl.txt", &a);
    assert_int_equal(kvz_artifact_check_model(&a, NULL, &other), KVZ_ERR_MODEL_MISMATCH);
    assert_non_null(strstr(kvz_last_error(), "Smollm2"));
    assert_non_null(strstr(kvz_last_error(), "synthetic"));
    free(bytes);
    kvz_model_free(tiny);
    unlink(tiny_path);
    free(text);
    kvz_store_close(st);
}

static void assert_same_identity(const kvz_model_identity *a, const kvz_model_identity *b)
{
    assert_string_equal(a->arch, b->arch);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->vocab, b->vocab);
    assert_int_equal(a->rope_dim, b->rope_dim);
    assert_int_equal(a->rope_mode, b->rope_mode);
    assert_memory_equal(&a->rope_base, &b->rope_base, sizeof a->rope_base);
    assert_int_equal(a->tokenizer_hash, b->tokenizer_hash);
    assert_int_equal(a->weights_hash, b->weights_hash);
    assert_int_equal(a->fingerprint, b->fingerprint);
    assert_memory_equal(a, b, sizeof *a); /* nothing else either, padding included */
}

/* The same file refused by a load and by kvz_model_identity_read: the same
 * status and message. */
static void assert_refused_alike(const char *path, int rc)
{
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    kvz_model *m = NULL;
    assert_int_equal(kvz_model_load(&m, path, &cfg), rc);
    assert_null(m);
    char said[512];
    snprintf(said, sizeof said, "%s", kvz_last_error());
    assert_non_null(strstr(said, path));
    kvz_model_identity id;
    memset(&id, 0xa5, sizeof id);
    assert_int_equal(kvz_model_identity_read(path, &id), rc);
    assert_string_equal(kvz_last_error(), said);
    assert_int_equal(id.fingerprint, 0); /* nothing half-filled is left to be used */
}

/* kvz_model_identity_read (the file alone, no weights loaded) gives a full
 * load's identity, field by field: the default model, and synthetic ones of
 * each kind kvz_model_identity_of reads differently (qwen2 with tied
 * embeddings, llama with RoPE frequency factors). A file a load refuses it
 * refuses the same. */
static void test_identity_without_weights(void **state)
{
    kvz_model_identity loaded, read;
    kvz_model_identity_of(model, &loaded);
    CHECK_OK(kvz_model_identity_read(test_model_path(), &read));
    assert_same_identity(&read, &loaded);
    kvz_model *bare;
    CHECK_OK(kvz_model_open(&bare, test_model_path()));
    assert_null(bare->backend);
    assert_null(bare->layers);
    assert_memory_equal(&bare->hp, &model->hp, sizeof bare->hp);
    kvz_model_free(bare);

    const char *path = test_tmp_path("identity-synth.gguf");
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    for (int c = 0; c < 3; c++) {
        kvz_synth_spec spec;
        CHECK_OK(kvz_synth_preset("tiny", &spec));
        spec.seed = 7 + (uint64_t)c;
        if (c == 1)
            spec.qwen2 = 1, spec.tied = 1;
        if (c == 2)
            spec.rope_freqs_ctx = 64;
        CHECK_OK(kvz_synth_model_write(path, &spec));
        kvz_model *m;
        CHECK_OK(kvz_model_load(&m, path, &cfg));
        kvz_model_identity_of(m, &loaded);
        kvz_model_free(m);
        CHECK_OK(kvz_model_identity_read(path, &read));
        assert_same_identity(&read, &loaded);
        assert_true(read.fingerprint != 0 && read.weights_hash != 0 && read.tokenizer_hash != 0);
        assert_string_equal(read.arch, c == 1 ? "qwen2" : "llama");
    }

    /* refused alike: cut short, not GGUF, missing, a tensor of the wrong shape */
    char *bytes;
    size_t size;
    CHECK_OK(kvz_read_file(test_model_path(), &bytes, &size));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size / 2, f), size / 2);
    fclose(f);
    free(bytes);
    assert_refused_alike(path, KVZ_ERR_FORMAT);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("not a model\n", f);
    fclose(f);
    assert_refused_alike(path, KVZ_ERR_FORMAT);
    unlink(path);
    assert_refused_alike(path, KVZ_ERR_NOT_FOUND);
    /* a sound header whose feed_forward_length (a u32 after its key) the
     * tensors do not have: refused by the tensor checks, not the header's */
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("tiny", &spec));
    CHECK_OK(kvz_synth_model_write(path, &spec));
    CHECK_OK(kvz_read_file(path, &bytes, &size));
    static const char key[] = "llama.feed_forward_length";
    uint8_t *at = memmem(bytes, size, key, sizeof key - 1);
    assert_non_null(at);
    at += sizeof key - 1;
    uint32_t type, ff;
    memcpy(&type, at, 4);
    memcpy(&ff, at + 4, 4);
    assert_int_equal(type, 4); /* u32 */
    assert_int_equal(ff, (uint32_t)spec.ff_dim);
    ff *= 2;
    memcpy(at + 4, &ff, 4);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    fclose(f);
    free(bytes);
    assert_refused_alike(path, KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "ffn_gate.weight' has shape"));
    unlink(path);
}

/* Every method compiles, keeps about its ratio and leaves no head empty. */
static void test_every_method(void **state)
{
    const char *dir = fresh_store("methods");
    kvz_store *st;
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_CREATE));
    size_t len;
    char *text = sample_text(&len);
    struct {
        kvz_method method;
        kvz_level level;
        kvz_budget_shape shape;
        uint32_t chunk, bits;
        const char *question;
    } cases[] = {
        {KVZ_METHOD_KVZIP, KVZ_LEVEL_PAIR_UNIFORM, KVZ_SHAPE_UNIFORM, 0, 8, NULL},
        {KVZ_METHOD_KVZIP, KVZ_LEVEL_PAIR, KVZ_SHAPE_PYRAMID, 0, 4, NULL},
        {KVZ_METHOD_KVZIP, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 10, 2, NULL},
        {KVZ_METHOD_KVZIP, KVZ_LEVEL_HEAD, KVZ_SHAPE_UNIFORM, 0, 4, NULL},
        {KVZ_METHOD_CHUNKKV, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 10, 4, NULL},
        {KVZ_METHOD_SNAPKV, KVZ_LEVEL_PAIR, KVZ_SHAPE_DECAY, 0, 4, NULL},
        {KVZ_METHOD_SNAPKV, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 0, 4, "What does the license protect?"},
        {KVZ_METHOD_KNORM, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 0, 4, NULL},
        {KVZ_METHOD_RECENT, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 0, 4, NULL},
        {KVZ_METHOD_RANDOM, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 0, 4, NULL},
        {KVZ_METHOD_FULL, KVZ_LEVEL_PAIR, KVZ_SHAPE_UNIFORM, 0, 16, NULL},
    };
    uint8_t hash[16] = {9};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvz_compile_opts o;
        kvz_compile_opts_default(&o);
        o.sel.method = cases[i].method;
        o.sel.level = cases[i].level;
        o.sel.shape = cases[i].shape;
        o.sel.chunk = cases[i].chunk;
        o.bits = cases[i].bits;
        o.question = cases[i].question;
        kvz_compiler *c;
        CHECK_OK(kvz_compiler_new(&c, model, st, &o));
        char name[32];
        snprintf(name, sizeof name, "case-%zu", i);
        hash[1] = (uint8_t)i;
        kvz_doc_result r;
        CHECK_OK(kvz_compile_document(c, name, text, len, hash, &r, NULL, NULL));
        double kept = (double)r.kept_pairs / (double)r.total_pairs;
        char summary[128];
        kvz_compile_summary(&o, summary, sizeof summary);
        print_message("%-40s kept %.3f, %6llu bytes (%.1f B/token)\n", summary, kept,
                      (unsigned long long)r.bytes, (double)r.bytes / r.tokens);
        if (cases[i].method == KVZ_METHOD_FULL)
            assert_true(kept == 1.0);
        else
            assert_true(fabs(kept - 0.3) < 0.05);
        kvz_artifact a;
        uint8_t *bytes = load_artifact(st, name, &a);
        assert_int_equal(a.manifest.bits, cases[i].bits);
        free(bytes);
        kvz_compiler_free(c);
    }
    free(text);
    kvz_store_close(st);
}

/* kvz_still_current_fn: a source whose content hash begins with 99 has changed since. */
static int source_unchanged_unless_99(void *ctx, const char *name, const uint8_t hash[16])
{
    (void)ctx, (void)name;
    return hash[0] != 99;
}

/* A store that starts with a map far too small grows it and loses nothing;
 * a document whose source changed while it was compiled is not written. */
static void test_map_growth(void **state)
{
    const char *dir = fresh_store("small-map");
    kvz_store *st;
    CHECK_OK(kvz_store_open_sized(&st, dir, KVZ_STORE_CREATE, 64 << 10));
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_RECENT; /* no scoring: the store is under test */
    o.bits = 16;
    kvz_compiler *c;
    CHECK_OK(kvz_compiler_new(&c, model, st, &o));
    size_t len;
    char *text = sample_text(&len);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "doc-%d", i);
        uint8_t hash[16] = {(uint8_t)(40 + i)};
        kvz_doc_result r;
        CHECK_OK(kvz_compile_document(c, name, text, len, hash, &r, NULL, NULL));
        assert_true(r.bytes > 100000); /* each artifact alone is larger than the first map */
    }
    assert_int_equal(count_entries(st, KVZ_DB_DOCS), 4);
    /* a source that changed while it was compiled: computed, nothing written */
    int artifacts = count_entries(st, KVZ_DB_ARTIFACTS);
    kvz_compiler_check_current(c, source_unchanged_unless_99, NULL);
    uint8_t changed[16] = {99};
    kvz_doc_result r;
    CHECK_OK(kvz_compile_document(c, "doc-changed", text, len, changed, &r, NULL, NULL));
    assert_int_equal(r.status, KVZ_DOC_STALE);
    assert_int_equal(count_entries(st, KVZ_DB_DOCS), 4);
    assert_int_equal(count_entries(st, KVZ_DB_ARTIFACTS), artifacts);
    uint8_t same[16] = {98};
    CHECK_OK(kvz_compile_document(c, "doc-same", text, len, same, &r, NULL, NULL));
    assert_int_equal(r.status, KVZ_DOC_COMPILED);
    assert_int_equal(count_entries(st, KVZ_DB_DOCS), 5);
    kvz_compiler_free(c);
    kvz_store_close(st);
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_READONLY));
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "doc-%d", i);
        kvz_artifact a;
        free(load_artifact(st, name, &a));
    }
    kvz_store_close(st);
    free(text);
}

/* Long documents are split at paragraph boundaries into segments that fit. */
static void test_segments(void **state)
{
    char *text;
    size_t len;
    CHECK_OK(kvz_read_file("tests/data/python_datamodel.txt", &text, &len));
    kvz_segments segs;
    CHECK_OK(kvz_segment_text(model->tokenizer, text, len, 300, &segs));
    assert_true(segs.len >= 4);
    size_t covered = 0;
    for (size_t i = 0; i < segs.len; i++) {
        assert_true(segs.items[i].tokens.len <= 300 && segs.items[i].tokens.len > 0);
        assert_int_equal(segs.items[i].start, covered); /* contiguous, in order */
        covered += segs.items[i].len;
        if (i + 1 < segs.len) /* cut after a blank line or at a line end */
            assert_true(text[segs.items[i].start + segs.items[i].len - 1] == '\n');
    }
    assert_int_equal(covered, len);
    /* the same text with classic Mac line ends (lone CRs) is cut at them too
     * (it was cut by tokens, mid-sentence) */
    for (size_t i = 0; i < len; i++)
        text[i] = text[i] == '\n' ? '\r' : text[i];
    kvz_segments cr;
    CHECK_OK(kvz_segment_text(model->tokenizer, text, len, 300, &cr));
    assert_true(cr.len >= 4);
    for (size_t i = 0; i + 1 < cr.len; i++)
        assert_true(text[cr.items[i].start + cr.items[i].len - 1] == '\r');
    kvz_segments_free(&cr);
    kvz_segments_free(&segs);
    free(text);
    /* many short paragraphs: each blank line is one token counted alone and two
     * before the next word, so the sum of the pieces' counts falls short of a
     * segment's by about a token per paragraph (once 30 past a 300 limit) */
    static const char *const words[] = {"river", "stone", "lantern", "harbour", "meadow", "bakery"};
    kvz_buffer many = {0};
    for (int i = 0; i < 430; i++) {
        char line[96];
        int n = snprintf(line, sizeof line, "Line %d: the %s near the %s was quiet.\n\n", i, words[i % 6],
                         words[(i * 7 + 3) % 6]);
        kvz_buffer_append(&many, line, (size_t)n);
    }
    for (int32_t limit = 40; limit <= 1000; limit += 320) {
        CHECK_OK(kvz_segment_text(model->tokenizer, (const char *)many.data, many.len, limit, &segs));
        covered = 0;
        for (size_t i = 0; i < segs.len; i++) {
            assert_true(segs.items[i].tokens.len <= (size_t)limit && segs.items[i].tokens.len > 0);
            assert_int_equal(segs.items[i].start, covered);
            covered += segs.items[i].len;
        }
        assert_int_equal(covered, many.len);
        kvz_segments_free(&segs);
    }
    kvz_buffer_free(&many);
    /* a line over the limit, cut by tokens, then a tail the tokenizer drops whole
     * (a control byte): no segment of no tokens (compile would fail on it) */
    kvz_buffer tail = {0};
    for (int i = 0; i < 40; i++)
        kvz_buffer_append(&tail, "river stone ", 12);
    kvz_buffer_append(&tail, "\n\x04", 2);
    CHECK_OK(kvz_segment_text(model->tokenizer, (const char *)tail.data, tail.len, 16, &segs));
    assert_true(segs.len >= 5);
    for (size_t i = 0; i < segs.len; i++)
        assert_true(segs.items[i].tokens.len <= 16 && segs.items[i].tokens.len > 0);
    kvz_segments_free(&segs);
    kvz_buffer_free(&tail);
}

/* A paragraph of many lines over the limit (a log without blank lines: one
 * paragraph of the whole file) is cut at its lines with work linear in its
 * length: its rest was tokenized again at every line, quadratic (a 64 KB log
 * was 1.4 s and 40 MB tokenized, a 1 MB one minutes, a 16 MB one a day). Cut
 * as before: the rest of the paragraph is one piece once it fits. */
static void test_segments_long_paragraph_linear(void **state)
{
    kvz_buffer log = {0};
    for (int i = 0; log.len < 64 * 1024; i++) {
        char line[128];
        int n = snprintf(line, sizeof line, "2026-12-08T00:%02d:%02d INFO worker-%d request id=%d took %dms\n",
                         i / 60 % 60, i % 60, i % 64, i * 7919 % 1000003, i * 31 % 5000);
        kvz_buffer_append(&log, line, (size_t)n);
    }
    kvz_buffer_append(&log, "\nThe end, in a short paragraph of its own.\n", 43);
    for (int32_t limit = 300; limit <= 6000; limit *= 20) {
        kvz_segments segs;
        CHECK_OK(kvz_segment_text(model->tokenizer, (const char *)log.data, log.len, limit, &segs));
        assert_true(segs.tokenized <= 6 * log.len); /* the text, its lines, its segments, given back: ~4.5x */
        size_t covered = 0, tokens = 0;
        for (size_t i = 0; i < segs.len; i++) {
            assert_true(segs.items[i].tokens.len <= (size_t)limit && segs.items[i].tokens.len > 0);
            assert_int_equal(segs.items[i].start, covered);
            covered += segs.items[i].len;
            tokens += segs.items[i].tokens.len;
            if (i + 1 < segs.len)
                assert_true(log.data[covered - 1] == '\n');
        }
        assert_int_equal(covered, log.len);
        /* full but for a line or two (~30 tokens each), and the paragraph's
         * tail, which goes whole into the next segment */
        assert_true(segs.len <= tokens / ((size_t)limit - 128) + 2);
        kvz_segments_free(&segs);
    }
    kvz_buffer_free(&log);
}

/* The text of tokens[0..n), NUL-terminated (free it). */
static char *tokens_text(const kvz_tokens *toks)
{
    char *out;
    size_t len;
    CHECK_OK(kvz_detokenize(model->tokenizer, toks->ids, toks->len, 0, &out, &len));
    return out;
}

/* One line over the limit (a paragraph of CJK, Thai, combining marks or emoji
 * with no line end) is cut between characters, never inside one nor before a
 * mark joining the one before (byte-level tokens hold parts of characters:
 * cut at a token count, a segment ended in half a character and the next began
 * with the rest); English is cut after a sentence near the limit. */
static void test_segments_cut_between_characters(void **state)
{
    static const char *const units[] = {
        "\xe8\x80\x81\xe4\xba\xba\xe6\xaf\x8f\xe5\xa4\xa9\xe5\x8e\xbb\xe6\xb2\xb3\xe8\xbe\xb9"
        "\xe9\x92\x93\xe9\xb1\xbc\xe3\x80\x82",            /* 老人每天去河边钓鱼。 */
        "\xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1\xe0\xb8\xaa\xe0\xb8\x94\xe0\xb8\xb5",         /* สวัสดี */
        "e\xcc\x81" "a\xcc\xa3\xcc\x87" "o\xcc\xb6",                    /* é ạ̇ o̶, decomposed */
        "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xf0\x9f\x91\x8d"
        "\xf0\x9f\x8f\xbd",                                        /* a ZWJ family, a thumb with its tone */
        "The river was quiet at dawn. ",
        "\xd9\x83\xd9\x8e\xd8\xaa\xd9\x8e\xd8\xa8\xd9\x8e \xd8\xb9\xd9\x90\xd9\x84\xd9\x92\xd9\x85 ", /* Arabic, harakat */
        "\xe0\xa6\x95\xe0\xa6\xbf\xe0\xa6\xa4\xe0\xa6\xbe\xe0\xa6\xac ",                 /* Bengali, vowel signs */
        "\xf0\x9f\x87\xab\xf0\x9f\x87\xb7\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5",                 /* two flags */
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        kvz_buffer line = {0};
        while (line.len < 3000)
            kvz_buffer_append(&line, units[u], strlen(units[u]));
        kvz_segments segs;
        /* 45: no multiple of a unit's tokens (two flags are 12), so cuts fall inside units */
        CHECK_OK(kvz_segment_text(model->tokenizer, (const char *)line.data, line.len, 45, &segs));
        assert_true(segs.len >= 4);
        kvz_buffer joined = {0};
        for (size_t i = 0; i < segs.len; i++) {
            assert_true(segs.items[i].tokens.len <= 45 && segs.items[i].tokens.len > 0);
            char *text = tokens_text(&segs.items[i].tokens);
            size_t n = strlen(text);
            assert_int_equal(kvz_utf8_valid_length((const uint8_t *)text, n), n);
            const unsigned char *b = (const unsigned char *)text;
            /* not a combining mark (U+0300..U+036F: CC 80..CD AF), a Thai vowel (E0 B8 B1, E0 B8 B4..),
             * a skin tone (F0 9F 8F BB..BF) nor a joiner (E2 80 8D) */
            assert_false(b[0] == 0xCC || (b[0] == 0xCD && b[1] <= 0xAF));
            assert_false(b[0] == 0xE0 && b[1] == 0xB8 && (b[2] == 0xB1 || (b[2] >= 0xB4 && b[2] <= 0xBA)));
            assert_false(memcmp(b, "\xf0\x9f\x8f", 3) == 0 && b[3] >= 0xBB);
            assert_false(memcmp(b, "\xe2\x80\x8d", 3) == 0);
            assert_false(n >= 3 && memcmp(text + n - 3, "\xe2\x80\x8d", 3) == 0); /* nor ends after a joiner */
            assert_false(b[0] == 0xD9 && b[1] >= 0x8B && b[1] <= 0x9F); /* U+064B..U+065F */
            assert_false(b[0] == 0xE0 && ((b[1] == 0xA6 && b[2] >= 0xBE) || (b[1] == 0xA7 && b[2] <= 0x8D)));
            if (u == 7) { /* a whole number of flags: an even count of regional indicators */
                size_t indicators = 0;
                for (size_t j = 0; j + 3 < n; j++)
                    indicators += memcmp(text + j, "\xf0\x9f\x87", 3) == 0;
                assert_int_equal(indicators % 2, 0);
            }
            if (u == 4 && i + 1 < segs.len) /* after a sentence */
                assert_true(n >= 1 && text[n - 1] == '.'); /* the space opens the next word's token */
            kvz_buffer_append(&joined, text, n);
            free(text);
        }
        assert_int_equal(joined.len, line.len); /* nothing lost, nothing doubled */
        assert_memory_equal(joined.data, line.data, line.len);
        kvz_buffer_free(&joined);
        kvz_buffer_free(&line);
        kvz_segments_free(&segs);
    }
}

/* ---- ingest ------------------------------------------------------------------ */

static void write_text(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A question of whitespace only (Unicode's too, as a template trims it) is empty. */
static void test_empty_question(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_SNAPKV;
    static const char *const empty[] = {" \t\r\n", "\xe3\x80\x80\xc2\xa0\v", "\xe2\x80\xa8\x1f"};
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++) {
        o.question = empty[i];
        assert_int_equal(kvz_compile_opts_check(&o), KVZ_ERR_ARG);
        assert_non_null(strstr(kvz_last_error(), "--question is empty"));
    }
    o.question = "\xe2\x80\x8b"; /* U+200B is no space */
    CHECK_OK(kvz_compile_opts_check(&o));
}

/* 2,000 asks whether `archive` still holds a member it never had (each one's
 * stat calls included); *listed: the time of the first ask, which lists it. */
static double ask_gone_members(const char *archive, double *listed)
{
    kvz_archive_cache cache = {0};
    char name[600];
    double t0 = kvz_now_seconds();
    snprintf(name, sizeof name, "%s:docs/m00000.txt", archive);
    assert_false(kvz_ingest_source_gone(&cache, name, strlen(name))); /* lists the archive */
    *listed = kvz_now_seconds() - t0;
    t0 = kvz_now_seconds();
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "%s:docs/gone%05d.txt", archive, i);
        if (!kvz_ingest_source_gone(&cache, name, strlen(name)))
            fail_msg("'%s' is not gone", name);
    }
    double asked = kvz_now_seconds() - t0;
    kvz_archive_cache_free(&cache);
    return asked;
}

/* compile --prune asks, for each stored document of an archive that the run did
 * not list, whether the archive still holds it: the members listed once are
 * looked up sorted, not scanned per ask (a nightly archive of 100,000 members
 * whose names all changed: 2.7 ms a document, 4.5 minutes in the store's write
 * lock). The same 2,000 asks of a 50,000-member archive and of a 1-member one
 * cost about the same (their stat calls); scanned, the large one's took 100
 * times more. Like against like: a slow stat slows both. */
static void test_source_gone_of_a_large_archive(void **state)
{
    const char *dir = fresh_store("large-archive");
    char cmd[1024], large[600], small[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && python3 -c 'import io, sys, tarfile\n"
             "for path, n in ((sys.argv[1], 50000), (sys.argv[2], 1)):\n"
             "    with tarfile.open(path, \"w\") as t:\n"
             "        for i in range(n):\n"
             "            m = tarfile.TarInfo(\"docs/m%%05d.txt\" %% i); m.size = 2\n"
             "            t.addfile(m, io.BytesIO(b\"x\\n\"))' '%s/big.tar' '%s/one.tar'", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(large, sizeof large, "%s/big.tar", dir);
    snprintf(small, sizeof small, "%s/one.tar", dir);
    double listed_large, listed_small;
    double asked_small = ask_gone_members(small, &listed_small);
    double asked_large = ask_gone_members(large, &listed_large);
    print_message("2000 gone asked in %.3f s of 1 member, %.3f s of 50000 (listed in %.3f s)\n", asked_small,
                  asked_large, listed_large);
    assert_true(asked_large < 3 * asked_small + 0.05);
}

/* Members of `tar -C dir .` are named without its "./" (as a zip's are, and
 * as query --doc is given them); the store being written is not walked into. */
static void test_ingest_names(void **state)
{
    const char *dir = fresh_store("corpus-names");
    char path[512], cmd[1024], name[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/in/store' && echo 'A harbour.' > '%s/in/h.md' && "
             "echo 'x' > '%s/in/store/data.mdb' && tar -czf '%s/dot.tar.gz' -C '%s/in' ./h.md",
             dir, dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/dot.tar.gz", dir);
    const char *archive[1] = {path};
    kvz_source_list list;
    CHECK_OK(kvz_ingest_list(archive, 1, NULL, &list));
    assert_int_equal(list.len, 1);
    snprintf(name, sizeof name, "%s:h.md", path);
    assert_string_equal(list.items[0].name, name);
    kvz_doc_reader *r;
    kvz_document d;
    CHECK_OK(kvz_doc_reader_new(&r, &list, NULL));
    CHECK_OK(kvz_doc_reader_read(r, 0, &d));
    assert_string_equal(d.text, "A harbour.\n");
    kvz_document_free(&d);
    kvz_doc_reader_free(r);
    kvz_source_list_free(&list);
    kvz_archive_cache cache = {0};
    assert_false(kvz_ingest_source_gone(&cache, name, strlen(name)));
    snprintf(name, sizeof name, "%s:./h.md", path); /* a name of before: its member is gone */
    assert_true(kvz_ingest_source_gone(&cache, name, strlen(name)));
    kvz_archive_cache_free(&cache);
    kvz_ingest_opts dot_glob = {.include = (const char *[]){"./h*"}, .n_include = 1};
    CHECK_OK(kvz_ingest_list(archive, 1, &dot_glob, &list)); /* a glob's "./" as the members' */
    assert_int_equal(list.len, 1);
    kvz_source_list_free(&list);
    /* "./h.md" and "h.md" in one archive: one document, the later */
    snprintf(cmd, sizeof cmd, "cd '%s/in' && tar -cf '%s/both.tar' ./h.md h.md", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/both.tar", dir);
    CHECK_OK(kvz_ingest_list(archive, 1, NULL, &list));
    assert_int_equal(list.len, 1);
    kvz_source_list_free(&list);

    /* In one tar: g.md edited and appended again (`tar -r`), a hard link to it (a
     * second hard link is how tar stores a file's other names), a symbolic link
     * and a FIFO. The hard link is a document with g.md's content, g.md is its
     * later copy (what tar -x leaves), the others are listed unread (reported
     * skipped: they vanished before, and --prune took the link's name for gone). */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/links' && cd '%s/links' && echo 'First.' > g.md && "
             "ln -f g.md same.md && ln -sf g.md soft.md && rm -f pipe && mkfifo pipe && "
             "tar -cf ../links.tar g.md same.md soft.md pipe && echo 'Second, edited.' > g.md && "
             "tar -rf ../links.tar g.md", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/links.tar", dir);
    CHECK_OK(kvz_ingest_list(archive, 1, NULL, &list));
    assert_int_equal(list.len, 4);
    const char *expect[4][2] = {{"same.md", "First.\n"}, {"soft.md", NULL}, {"pipe", NULL},
                                {"g.md", "Second, edited.\n"}};
    CHECK_OK(kvz_doc_reader_new(&r, &list, NULL));
    for (size_t i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s:%s", path, expect[i][0]);
        assert_string_equal(list.items[i].name, name);
        int rc = kvz_doc_reader_read(r, i, &d);
        if (expect[i][1]) {
            CHECK_OK(rc);
            assert_string_equal(d.text, expect[i][1]);
            kvz_document_free(&d);
        } else {
            assert_int_equal(rc, KVZ_ERR_FORMAT);
            assert_non_null(strstr(kvz_last_error(), i == 1 ? "symbolic link" : "not a regular file"));
        }
    }
    kvz_doc_reader_free(r);
    kvz_source_list_free(&list);
    snprintf(name, sizeof name, "%s:soft.md", path);
    kvz_archive_cache links = {0};
    assert_false(kvz_ingest_source_gone(&links, name, strlen(name)));
    kvz_archive_cache_free(&links);

    /* text with "ustar" where a tar's signature sits is text ("mustard" at byte 257) */
    char text[400];
    memset(text, 'a', sizeof text);
    memcpy(text + 256, "mustard", 7);
    snprintf(path, sizeof path, "%s/recipe.txt", dir);
    write_text(path, text, sizeof text);
    const char *recipe[1] = {path};
    CHECK_OK(kvz_ingest_list(recipe, 1, NULL, &list));
    CHECK_OK(kvz_doc_reader_new(&r, &list, NULL));
    CHECK_OK(kvz_doc_reader_read(r, 0, &d));
    kvz_document_free(&d);
    kvz_doc_reader_free(r);
    kvz_source_list_free(&list);

    /* a document's shard, pinned: machines running different kvz builds agree only while it stays */
    assert_int_equal(kvz_shard_of("docs/a.md", 9, 16), 4);
    assert_int_equal(kvz_shard_of("corpus/report.txt", 17, 7), 4);

    snprintf(path, sizeof path, "%s/in", dir);
    const char *folder[1] = {path};
    char store[600];
    snprintf(store, sizeof store, "%s/in/store", dir);
    kvz_ingest_opts around = {.skip_folder = store};
    CHECK_OK(kvz_ingest_list(folder, 1, NULL, &list));
    assert_int_equal(list.len, 2); /* h.md, store/data.mdb */
    kvz_source_list_free(&list);
    CHECK_OK(kvz_ingest_list(folder, 1, &around, &list));
    assert_int_equal(list.len, 1);
    assert_non_null(strstr(list.items[0].name, "h.md"));
    kvz_source_list_free(&list);
}

static void test_ingest(void **state)
{
    const char *dir = fresh_store("corpus");
    char path[512], cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/sub/deeper' '%s/void'", dir, dir); /* void: an empty folder lists nothing */
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/b.md", dir);
    write_text(path, "\xef\xbb\xbfSecond\r\ndocument\r\n", 21);
    snprintf(path, sizeof path, "%s/a.txt", dir);
    write_text(path, "First document.", 15);
    snprintf(path, sizeof path, "%s/sub/deeper/c.txt", dir);
    write_text(path, "Deep document.", 14);
    snprintf(path, sizeof path, "%s/sub/empty.txt", dir);
    write_text(path, "  \n\t\n", 5);
    snprintf(path, sizeof path, "%s/sub/binary.bin", dir);
    write_text(path, "ab\0cd", 5);
    snprintf(path, sizeof path, "%s/sub/latin1.txt", dir);
    write_text(path, "caf\xe9", 4);
    snprintf(cmd, sizeof cmd, "cd '%s' && tar -czf sub/pack.tar.gz a.txt b.md 2>/dev/null", dir);
    assert_int_equal(system(cmd), 0);

    const char *paths[1] = {dir};
    kvz_source_list list;
    CHECK_OK(kvz_ingest_list(paths, 1, NULL, &list));
    /* name order, folders recursively, archive members as ARCHIVE:MEMBER */
    const char *expect[] = {"a.txt", "b.md", "sub/binary.bin", "sub/deeper/c.txt", "sub/empty.txt",
                            "sub/latin1.txt", "sub/pack.tar.gz:a.txt", "sub/pack.tar.gz:b.md"};
    assert_int_equal(list.len, 8);
    for (size_t i = 0; i < list.len; i++)
        if (!strstr(list.items[i].name, expect[i]))
            fail_msg("entry %zu is '%s', expected ...%s", i, list.items[i].name, expect[i]);
    kvz_doc_reader *r;
    CHECK_OK(kvz_doc_reader_new(&r, &list, NULL));
    const char *reasons[8] = {NULL, NULL, "NUL", NULL, "empty", "byte 3 (line 1) is 0xe9", NULL, NULL};
    uint8_t hash_b[16];
    for (size_t i = 0; i < list.len; i++) {
        kvz_document d;
        int rc = kvz_doc_reader_read(r, i, &d);
        if (reasons[i]) {
            assert_int_equal(rc, KVZ_ERR_FORMAT);
            assert_non_null(strstr(kvz_last_error(), reasons[i]));
            continue;
        }
        CHECK_OK(rc);
        if (i == 1) {
            assert_string_equal(d.text, "Second\ndocument\n"); /* BOM and CR LF normalised */
            memcpy(hash_b, d.hash, 16);
        }
        if (i == 7) /* the same text inside the archive: the same identity */
            assert_memory_equal(d.hash, hash_b, 16);
        kvz_document_free(&d);
    }
    kvz_doc_reader_free(r);
    kvz_source_list_free(&list);
    /* the bad byte is named where it is in the file: CR LFs and a BOM before it
     * (normalised away) do not move it, as they did */
    char crlf[] = "\xef\xbb\xbf" "one\r\ntwo\r\n\x96";
    size_t crlf_len = sizeof crlf - 1;
    assert_int_equal(kvz_text_normalise(crlf, &crlf_len), KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "byte 13 (line 3) is 0x96"));
    assert_non_null(strstr(kvz_last_error(), "iconv -f WINDOWS-1252 -t UTF-8"));

    kvz_ingest_opts only = {.include = (const char *[]){"*.txt"}, .n_include = 1,
                            .exclude = (const char *[]){"deeper/*"}, .n_exclude = 1};
    CHECK_OK(kvz_ingest_list(paths, 1, &only, &list));
    for (size_t i = 0; i < list.len; i++) {
        const char *n = list.items[i].name;
        assert_true(strcmp(n + strlen(n) - 4, ".txt") == 0);
        assert_null(strstr(n, "deeper"));
        /* what the listing names, would_list names (compile --prune's scope) */
        assert_true(kvz_ingest_would_list(paths, 1, &only, n, strlen(n)));
    }
    kvz_source_list_free(&list);
    char name[600];
    static const struct {
        const char *tail;
        int with_globs, without; /* would_list with `only`, and without globs */
    } scope[] = {
        {"/gone.txt", 1, 1},          {"/sub/gone.md", 0, 1},           {"/sub/deeper/gone.txt", 0, 1},
        {"/sub/pack.tar.gz:x.txt", 1, 1}, {"/sub/pack.tar.gz:x.md", 0, 1}, /* members as the globs select them */
        {"/sub/old.zip:y.txt", 1, 1}, {"2/a.txt", 0, 0} /* a sibling folder sharing the prefix */,
        {"/", 0, 0},                  {"", 1, 1} /* the path itself: once a file */,
    };
    for (size_t i = 0; i < sizeof scope / sizeof *scope; i++) {
        snprintf(name, sizeof name, "%s%s", dir, scope[i].tail);
        if (kvz_ingest_would_list(paths, 1, &only, name, strlen(name)) != scope[i].with_globs ||
            kvz_ingest_would_list(paths, 1, NULL, name, strlen(name)) != scope[i].without)
            fail_msg("would_list of '%s' is not %d with the globs, %d without", name, scope[i].with_globs,
                     scope[i].without);
    }
    snprintf(name, sizeof name, "%s/a.txt", dir);
    assert_false(kvz_ingest_would_list(paths, 1, NULL, name, strlen(name) + 1)); /* a NUL in the name */
    const char *file[1] = {name}, *archive[1] = {path}, *stdin_path[1] = {"-"};
    assert_true(kvz_ingest_would_list(file, 1, &only, name, strlen(name))); /* a file named: itself */
    assert_false(kvz_ingest_would_list(file, 1, NULL, "a.txt", 5));
    snprintf(path, sizeof path, "%s/sub/pack.tar.gz", dir);
    snprintf(name, sizeof name, "%s:gone.txt", path);
    assert_true(kvz_ingest_would_list(archive, 1, NULL, name, strlen(name)));
    snprintf(name, sizeof name, "%s/sub/pack.tar.gzip:gone.txt", dir);
    assert_false(kvz_ingest_would_list(archive, 1, NULL, name, strlen(name)));
    assert_true(kvz_ingest_would_list(stdin_path, 1, NULL, "stdin", 5));
    assert_false(kvz_ingest_would_list(stdin_path, 1, NULL, "-", 1));

    /* gone from the disk: the file, or the archive, or the member in it */
    kvz_archive_cache cache = {0};
    static const struct {
        const char *tail;
        int gone;
    } disk[] = {
        {"/a.txt", 0},      {"/gone.txt", 1}, {"/a.txt/x", 1}, {"/sub/pack.tar.gz:a.txt", 0},
        {"/sub/pack.tar.gz:gone.txt", 1}, {"/sub/pack.tar.gz:b.md", 0}, {"/sub/gone.tar:a.txt", 1},
        {"/sub/binary.bin:x", 1}, {"/sub", 1}, /* a folder has the name now: the file is gone */
        {"/sublink", 0},                     /* a link that names a folder: kept */
        {"/sub/folder.tar:a.txt", 1},        /* an archive that is a folder now */
    };
    snprintf(cmd, sizeof cmd, "ln -s sub '%s/sublink' && mkdir '%s/sub/folder.tar'", dir, dir);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < sizeof disk / sizeof *disk; i++) {
        snprintf(name, sizeof name, "%s%s", dir, disk[i].tail);
        if (kvz_ingest_source_gone(&cache, name, strlen(name)) != disk[i].gone)
            fail_msg("source_gone of '%s' is not %d", name, disk[i].gone);
    }
    /* "stdin" (a document read from standard input) beside a folder so named: kept */
    char here[512];
    assert_non_null(getcwd(here, sizeof here));
    snprintf(name, sizeof name, "%s/sub/stdin", dir);
    assert_int_equal(mkdir(name, 0755), 0);
    snprintf(name, sizeof name, "%s/sub/other", dir);
    assert_int_equal(mkdir(name, 0755), 0);
    snprintf(name, sizeof name, "%s/sub", dir);
    assert_int_equal(chdir(name), 0);
    int stdin_gone = kvz_ingest_source_gone(&cache, "stdin", 5);
    int other_gone = kvz_ingest_source_gone(&cache, "other", 5);
    assert_int_equal(chdir(here), 0);
    assert_false(stdin_gone);
    assert_true(other_gone); /* any other name: the folder is not the file it was */
    snprintf(name, sizeof name, "%s/sub/latin1.tar", dir); /* not an archive, though named one */
    write_text(name, "not a tar", 9);
    snprintf(name, sizeof name, "%s/sub/latin1.tar:x", dir);
    assert_false(kvz_ingest_source_gone(&cache, name, strlen(name))); /* cannot be told: not gone */
    assert_false(kvz_ingest_source_gone(&cache, "x\0y", 3));
    /* behind a link that names nothing now (an unmounted share): not gone */
    static const char *const behind[] = {"/dangling", "/dangling/o.txt", "/dangling/deep/o.txt",
                                         "/sub/dangling.tar:m.txt"};
    snprintf(cmd, sizeof cmd, "ln -s /nonexistent/share '%s/dangling' && ln -s /nonexistent/x.tar '%s/sub/dangling.tar'",
             dir, dir);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < sizeof behind / sizeof *behind; i++) {
        snprintf(name, sizeof name, "%s%s", dir, behind[i]);
        if (kvz_ingest_source_gone(&cache, name, strlen(name)))
            fail_msg("'%s' is behind a broken link, not gone", name);
    }
    kvz_archive_cache_free(&cache);
    const char *missing[1] = {"/nonexistent/corpus"};
    assert_int_equal(kvz_ingest_list(missing, 1, NULL, &list), KVZ_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pyramid_budgets),
        cmocka_unit_test(test_budgets_never_zero),
        cmocka_unit_test(test_recent_sinks),
        cmocka_unit_test(test_selection_names),
        cmocka_unit_test(test_chunk_selection),
        cmocka_unit_test(test_select_against_reference),
        cmocka_unit_test(test_long_document_memory),
        cmocka_unit_test(test_long_document_replaced_meanwhile),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_segments_long_paragraph_linear),
        cmocka_unit_test(test_segments_cut_between_characters),
        cmocka_unit_test(test_ingest),
        cmocka_unit_test(test_ingest_names),
        cmocka_unit_test(test_source_gone_of_a_large_archive),
        cmocka_unit_test(test_empty_question),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_kvzip_compile_and_recompile),
        cmocka_unit_test(test_identity_without_weights),
        cmocka_unit_test(test_every_method),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, setup, teardown);
}
