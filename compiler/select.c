/* select.c — budgets, thresholds, chunks and the never-empty rule. */
#include "compiler/select.h"
#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const METHOD_NAMES[] = {"kvzip", "chunkkv", "snapkv", "full", "recent", "random", "knorm"};
static const char *const LEVEL_NAMES[] = {"pair", "pair-uniform", "head"};
static const char *const SHAPE_NAMES[] = {"uniform", "pyramid", "decay"};
/* a value added to an enum without its name would be a NULL met by strcmp */
_Static_assert(sizeof METHOD_NAMES / sizeof *METHOD_NAMES == KVZ_METHOD_COUNT, "a name for every kvz_method");
_Static_assert(sizeof LEVEL_NAMES / sizeof *LEVEL_NAMES == KVZ_LEVEL_HEAD + 1, "a name for every kvz_level");
_Static_assert(sizeof SHAPE_NAMES / sizeof *SHAPE_NAMES == KVZ_SHAPE_DECAY + 1, "a name for every shape");

static int index_of(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *kvz_method_name(kvz_method m) { return (unsigned)m < KVZ_METHOD_COUNT ? METHOD_NAMES[m] : "?"; }
int kvz_method_from_name(const char *name) { return index_of(METHOD_NAMES, KVZ_METHOD_COUNT, name); }
const char *kvz_level_name(kvz_level l) { return (unsigned)l <= KVZ_LEVEL_HEAD ? LEVEL_NAMES[l] : "?"; }
int kvz_level_from_name(const char *name) { return index_of(LEVEL_NAMES, KVZ_LEVEL_HEAD + 1, name); }
const char *kvz_shape_name(kvz_budget_shape s) { return (unsigned)s <= KVZ_SHAPE_DECAY ? SHAPE_NAMES[s] : "?"; }
int kvz_shape_from_name(const char *name) { return index_of(SHAPE_NAMES, KVZ_SHAPE_DECAY + 1, name); }

void kvz_selection_free(kvz_selection *s)
{
    free(s->offset);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

uint64_t kvz_selection_total(const kvz_selection *s)
{
    return s->offset[(size_t)s->n_layers * s->n_heads];
}

int kvz_layer_budgets(kvz_budget_shape shape, double avg, int32_t L, int32_t n, float beta,
                      float decay, int32_t *b)
{
    if (shape == KVZ_SHAPE_UNIFORM || L == 1) {
        for (int32_t l = 0; l < L; l++)
            b[l] = (int32_t)lround(avg);
        return KVZ_OK;
    }
    double w[4096];
    if (L > 4096)
        return kvz_errorf(KVZ_ERR_RANGE, "%d layers are more than budgets support", L);
    if (shape == KVZ_SHAPE_PYRAMID) {
        if (!(beta >= 1))
            return kvz_errorf(KVZ_ERR_ARG, "pyramid beta must be at least 1 (got %g)", beta);
        double top = avg / beta, bottom = 2 * avg - top;
        if (bottom > n) { /* a bottom layer cannot keep more than everything */
            bottom = n;
            top = 2 * avg - n;
        }
        for (int32_t l = 0; l < L; l++)
            w[l] = bottom + (top - bottom) * l / (L - 1);
    } else {
        if (!(decay > 0 && decay <= 1))
            return kvz_errorf(KVZ_ERR_ARG, "decay must be in (0, 1] (got %g)", decay);
        double rho = pow(decay, 1.0 / (L - 1)), sum = 0;
        for (int32_t l = 0; l < L; l++)
            sum += (w[l] = pow(rho, l));
        for (int32_t l = 0; l < L; l++)
            w[l] *= avg * L / sum;
        /* layers over n give their excess to the layers below the cap, top first */
        double excess = 0;
        for (int32_t l = 0; l < L; l++)
            if (w[l] > n) {
                excess += w[l] - n;
                w[l] = n;
            }
        for (int32_t l = L - 1; l >= 0 && excess > 0; l--) {
            double room = n - w[l], take = room < excess ? room : excess;
            w[l] += take;
            excess -= take;
        }
    }
    /* round while keeping the total: carry the fractions down the layers */
    double carry = 0;
    for (int32_t l = 0; l < L; l++) {
        double want = w[l] + carry;
        b[l] = (int32_t)lround(want);
        b[l] = b[l] < 0 ? 0 : (b[l] > n ? n : b[l]);
        carry = want - b[l];
    }
    return KVZ_OK;
}

/* ---- building the selection ------------------------------------------------ */

/* A kept mask (n_layers * n_heads * n bytes) becomes the position lists. */
static int from_mask(uint8_t *mask, const float *scores, int32_t L, int32_t H, int32_t n,
                     kvz_selection *out)
{
    size_t heads = (size_t)L * H;
    out->n_layers = L, out->n_heads = H, out->n_tokens = n;
    out->offset = malloc((heads + 1) * sizeof *out->offset);
    uint64_t total = 0;
    for (size_t i = 0; i < heads; i++) {
        uint8_t *m = mask + i * n;
        uint32_t c = 0;
        for (int32_t t = 0; t < n; t++)
            c += m[t];
        if (c == 0) { /* never empty: keep the best-scored position (or the first) */
            int32_t best = 0;
            for (int32_t t = 1; scores && t < n; t++)
                if (scores[i * n + t] > scores[i * n + best])
                    best = t;
            m[best] = 1;
        }
        for (int32_t t = 0; t < n; t++)
            total += m[t];
    }
    out->pos = malloc((total ? total : 1) * sizeof *out->pos);
    if (!out->offset || !out->pos) {
        kvz_selection_free(out);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting");
    }
    uint32_t at = 0;
    for (size_t i = 0; i < heads; i++) {
        out->offset[i] = at;
        for (int32_t t = 0; t < n; t++)
            if (mask[i * n + t])
                out->pos[at++] = (uint32_t)t;
    }
    out->offset[heads] = at;
    return KVZ_OK;
}

/* Average kept tokens per head. */
static double average_budget(const kvz_select_opts *o, int32_t n)
{
    double avg = o->budget ? (double)o->budget : (double)o->ratio * n;
    return avg > n ? n : (avg < 1 ? 1 : avg);
}

/* Window methods keep the last `window` tokens of a head outside its budget's
 * competition (up to the whole budget): how many of them a head keeps. */
static int32_t window_keep(const kvz_select_opts *o, int32_t n, int32_t budget)
{
    int32_t w = (int32_t)o->window < n ? (int32_t)o->window : n;
    return w < budget ? w : budget;
}

/* Scores and masks on the selecting backend. On a host-memory backend the
 * host arrays are used in place; elsewhere scores go up once and masks come
 * back once. */
typedef struct on_backend {
    kvz_backend *b;
    void *mine[4]; /* what this selection allocated there */
    int n_mine;
} on_backend;

static int backend_buffer(on_backend *ob, void *host, size_t bytes, int upload, void **dev)
{
    if (ob->b->ops->host_memory) {
        *dev = host;
        return KVZ_OK;
    }
    KVZ_ASSERT(ob->n_mine < 4);
    KVZ_TRY(ob->b->ops->alloc(ob->b, bytes, dev));
    ob->mine[ob->n_mine++] = *dev;
    return upload ? ob->b->ops->upload(ob->b, *dev, host, bytes) : KVZ_OK;
}

static int backend_fetch(on_backend *ob, void *host, const void *dev, size_t bytes)
{
    return host == dev ? KVZ_OK : ob->b->ops->download(ob->b, host, dev, bytes);
}

static void backend_release(on_backend *ob)
{
    for (int i = 0; i < ob->n_mine; i++)
        ob->b->ops->free(ob->b, ob->mine[i]);
    ob->n_mine = 0;
}

/* ChunkKV's choice: every `reuse` layers, the chunks of `chunk` tokens with
 * the largest summed scores over the layer's heads (window chunks kept
 * outside the budget); the layers between reuse that choice. */
static int select_chunks(const kvz_select_opts *o, on_backend *ob, const float *dev_scores, int32_t L,
                         int32_t H, int32_t n, const int32_t *budgets, uint8_t *mask)
{
    const int32_t c = (int32_t)o->chunk, n_chunks = (n + c - 1) / c;
    const int32_t reuse = o->reuse ? (int32_t)o->reuse : 1, groups = (L + reuse - 1) / reuse;
    size_t cells = (size_t)groups * n_chunks;
    float *sums = NULL;
    uint8_t *chosen = malloc(cells), *dev_chosen = NULL;
    int32_t *length = malloc((size_t)groups * sizeof *length), *keep = malloc((size_t)groups * sizeof *keep);
    int rc = chosen && length && keep ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting chunks");
    if (rc == KVZ_OK && ob->b->ops->host_memory && !(sums = malloc(cells * sizeof *sums)))
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting chunks");
    if (rc == KVZ_OK)
        rc = backend_buffer(ob, sums, cells * sizeof *sums, 0, (void **)&sums);
    if (rc == KVZ_OK)
        rc = backend_buffer(ob, chosen, cells, 0, (void **)&dev_chosen);
    for (int32_t g = 0; g < groups && rc == KVZ_OK; g++) {
        int32_t l = g * reuse, win = window_keep(o, n, budgets[l]);
        rc = ob->b->ops->chunk_sums(ob->b, sums + (size_t)g * n_chunks, dev_scores + (size_t)l * H * n, H, n, c);
        length[g] = win ? (n - win) / c : n_chunks; /* the chunks before the first window chunk compete */
        keep[g] = (budgets[l] - win) / c;
        if (keep[g] == 0 && win == 0)
            keep[g] = 1;
    }
    if (rc == KVZ_OK)
        rc = ob->b->ops->top_k_rows(ob->b, dev_chosen, sums, groups, n_chunks, length, keep);
    if (rc == KVZ_OK)
        rc = backend_fetch(ob, chosen, dev_chosen, cells);
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++) {
        int32_t g = l / reuse;
        uint8_t *row = chosen + (size_t)g * n_chunks, *layer_mask = mask + (size_t)l * H * n;
        for (int32_t t = n - window_keep(o, n, budgets[g * reuse]); t < n; t++)
            row[t / c] = 1; /* window chunks */
        for (int32_t h = 0; h < H; h++)
            for (int32_t t = 0; t < n; t++)
                layer_mask[(size_t)h * n + t] = row[t / c];
    }
    if (ob->b->ops->host_memory)
        free(sums);
    free(chosen), free(length), free(keep);
    return rc;
}

/* Keep whole heads, as many as the budget pays for, by their context-free scores. */
static int select_heads(on_backend *ob, const float *head_scores, size_t heads, int32_t n, double avg,
                        uint8_t *mask)
{
    if (!head_scores)
        return kvz_errorf(KVZ_ERR_ARG, "the head level needs head scores");
    int32_t count = (int32_t)heads, keep = (int32_t)lround(avg / n * (double)heads);
    uint8_t *kept = malloc(heads), *dev_kept;
    float *dev_scores;
    int rc = kept ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting heads");
    if (rc == KVZ_OK)
        rc = backend_buffer(ob, (void *)head_scores, heads * sizeof(float), 1, (void **)&dev_scores);
    if (rc == KVZ_OK)
        rc = backend_buffer(ob, kept, heads, 0, (void **)&dev_kept);
    if (rc == KVZ_OK)
        rc = ob->b->ops->top_k_rows(ob->b, dev_kept, dev_scores, 1, count, &count, &keep);
    if (rc == KVZ_OK)
        rc = backend_fetch(ob, kept, dev_kept, heads);
    for (size_t i = 0; i < heads && rc == KVZ_OK; i++)
        memset(mask + i * n, kept[i], (size_t)n);
    free(kept);
    return rc;
}

/* Top-k in every head (pair-uniform, snapkv, knorm): the layer's budget, the
 * window (window methods) kept first. */
static int select_per_head(const kvz_select_opts *o, on_backend *ob, const float *dev_scores, int32_t L,
                           int32_t H, int32_t n, const int32_t *budgets, int window_method, uint8_t *mask,
                           uint8_t *dev_mask)
{
    size_t heads = (size_t)L * H;
    int32_t *length = malloc(heads * sizeof *length), *keep = malloc(heads * sizeof *keep);
    int rc = length && keep ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting");
    for (size_t i = 0; i < heads && rc == KVZ_OK; i++) {
        int32_t budget = budgets[i / H], win = window_method ? window_keep(o, n, budget) : 0;
        length[i] = n - win; /* the window's tokens do not compete */
        keep[i] = budget - win;
    }
    if (rc == KVZ_OK)
        rc = ob->b->ops->top_k_rows(ob->b, dev_mask, dev_scores, (int32_t)heads, n, length, keep);
    if (rc == KVZ_OK)
        rc = backend_fetch(ob, mask, dev_mask, heads * (size_t)n);
    for (size_t i = 0; i < heads && rc == KVZ_OK; i++)
        memset(mask + i * n + length[i], 1, (size_t)(n - length[i]));
    free(length), free(keep);
    return rc;
}

/* Scoreless methods: everything, the most recent (after sinks), or a seeded
 * random draw per head. */
static int select_scoreless(const kvz_select_opts *o, int32_t L, int32_t H, int32_t n, const int32_t *budgets,
                            uint8_t *mask)
{
    size_t heads = (size_t)L * H;
    if (o->method == KVZ_METHOD_FULL) {
        memset(mask, 1, heads * (size_t)n);
        return KVZ_OK;
    }
    uint32_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting");
    uint64_t rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < heads; i++) {
        uint8_t *m = mask + i * n;
        int32_t k = budgets[i / H];
        if (o->method == KVZ_METHOD_RECENT) {
            int32_t sinks = (int32_t)o->sinks < k ? (int32_t)o->sinks : k;
            for (int32_t t = 0; t < sinks; t++)
                m[t] = 1;
            for (int32_t t = n - (k - sinks); t < n; t++)
                m[t] = 1;
        } else { /* a seeded partial Fisher-Yates shuffle */
            for (int32_t t = 0; t < n; t++)
                idx[t] = (uint32_t)t;
            for (int32_t t = 0; t < k; t++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                int32_t j = t + (int32_t)(rng % (uint64_t)(n - t));
                uint32_t tmp = idx[t];
                idx[t] = idx[j], idx[j] = tmp;
                m[idx[t]] = 1;
            }
        }
    }
    free(idx);
    return KVZ_OK;
}

int kvz_select(const kvz_select_opts *o, kvz_backend *b, const float *scores, const float *head_scores,
               int32_t L, int32_t H, int32_t n, kvz_selection *out)
{
    memset(out, 0, sizeof *out);
    if (L <= 0 || H <= 0 || n <= 0)
        return kvz_errorf(KVZ_ERR_ARG, "nothing to select from");
    if (o->method != KVZ_METHOD_FULL && !o->budget && !(o->ratio > 0 && o->ratio <= 1))
        return kvz_errorf(KVZ_ERR_ARG, "ratio must be in (0, 1] (got %g)", o->ratio);
    size_t heads = (size_t)L * H, total = heads * (size_t)n;
    uint8_t *mask = calloc(total, 1);
    int32_t *budgets = malloc((size_t)L * sizeof *budgets);
    if (!mask || !budgets) {
        free(mask), free(budgets);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting %zu pairs", total);
    }
    double avg = average_budget(o, n);
    int rc = o->method == KVZ_METHOD_FULL ? KVZ_OK
                                          : kvz_layer_budgets(o->shape, avg, L, n, o->beta, o->decay, budgets);
    int window_method = o->method == KVZ_METHOD_SNAPKV || o->method == KVZ_METHOD_CHUNKKV;
    int scoreless = o->method == KVZ_METHOD_FULL || o->method == KVZ_METHOD_RECENT ||
                    o->method == KVZ_METHOD_RANDOM;
    on_backend ob = {.b = b};
    float *dev_scores = NULL;
    uint8_t *dev_mask = NULL;
    if (rc == KVZ_OK && !scoreless && o->level != KVZ_LEVEL_HEAD)
        rc = backend_buffer(&ob, (void *)scores, total * sizeof(float), 1, (void **)&dev_scores);
    if (rc != KVZ_OK) {
    } else if (scoreless) {
        rc = select_scoreless(o, L, H, n, budgets, mask);
    } else if (o->chunk > 0) {
        rc = select_chunks(o, &ob, dev_scores, L, H, n, budgets, mask);
    } else if (o->level == KVZ_LEVEL_HEAD) {
        rc = select_heads(&ob, head_scores, heads, n, avg, mask);
    } else if ((rc = backend_buffer(&ob, mask, total, 0, (void **)&dev_mask)) != KVZ_OK) {
    } else if (o->level == KVZ_LEVEL_PAIR && !window_method) {
        /* one threshold over all heads: of the model (uniform) or of each layer */
        int per_layer = o->shape != KVZ_SHAPE_UNIFORM;
        size_t groups = per_layer ? (size_t)L : 1, span = per_layer ? (size_t)H * n : total;
        for (size_t g = 0; g < groups && rc == KVZ_OK; g++) {
            size_t keep = per_layer ? (size_t)budgets[g] * H : (size_t)lround(avg * (double)heads);
            rc = b->ops->top_k_mask(b, dev_mask + g * span, dev_scores + g * span, (int64_t)span, (int64_t)keep);
        }
        if (rc == KVZ_OK)
            rc = backend_fetch(&ob, mask, dev_mask, total);
    } else {
        rc = select_per_head(o, &ob, dev_scores, L, H, n, budgets, window_method, mask, dev_mask);
    }
    backend_release(&ob);
    if (rc == KVZ_OK)
        rc = from_mask(mask, scoreless ? NULL : scores, L, H, n, out);
    free(mask), free(budgets);
    return rc;
}
