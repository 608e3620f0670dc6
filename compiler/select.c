/* select.c — budgets, thresholds, chunks and the never-empty rule. */
#include "compiler/select.h"
#include "common/error.h"
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const METHOD_NAMES[KVZ_METHOD_COUNT] = {"kvzip", "chunkkv", "snapkv", "full",
                                                          "recent", "random", "knorm"};
static const char *const LEVEL_NAMES[] = {"pair", "pair-uniform", "head"};
static const char *const SHAPE_NAMES[] = {"uniform", "pyramid", "decay"};

static int index_of(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *kvz_method_name(kvz_method m) { return (unsigned)m < KVZ_METHOD_COUNT ? METHOD_NAMES[m] : "?"; }
int kvz_method_from_name(const char *name) { return index_of(METHOD_NAMES, KVZ_METHOD_COUNT, name); }
const char *kvz_level_name(kvz_level l) { return (unsigned)l < 3 ? LEVEL_NAMES[l] : "?"; }
int kvz_level_from_name(const char *name) { return index_of(LEVEL_NAMES, 3, name); }
const char *kvz_shape_name(kvz_budget_shape s) { return (unsigned)s < 3 ? SHAPE_NAMES[s] : "?"; }
int kvz_shape_from_name(const char *name) { return index_of(SHAPE_NAMES, 3, name); }

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

/* Window methods keep the last `window` tokens first; other positions compete
 * for what remains of each head's budget. */
static void force_window(const kvz_select_opts *o, int32_t n, uint8_t *m, int32_t *budget)
{
    int32_t w = (int32_t)o->window < n ? (int32_t)o->window : n;
    int32_t keep = w < *budget ? w : *budget;
    for (int32_t t = n - keep; t < n; t++)
        m[t] = 1;
    *budget -= keep;
}

static int select_chunks(const kvz_select_opts *o, const float *scores, int32_t L, int32_t H, int32_t n,
                         const int32_t *budgets, uint8_t *mask)
{
    uint32_t c = o->chunk;
    size_t n_chunks = ((size_t)n + c - 1) / c;
    float *chunk_score = calloc(n_chunks, sizeof *chunk_score);
    uint32_t *idx = malloc(n_chunks * sizeof *idx);
    uint32_t *scratch = malloc(n_chunks * sizeof *scratch);
    uint8_t *chosen = calloc(n_chunks, 1);
    if (!chunk_score || !idx || !scratch || !chosen) {
        free(chunk_score), free(idx), free(scratch), free(chosen);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting chunks");
    }
    uint32_t reuse = o->reuse ? o->reuse : 1;
    for (int32_t l = 0; l < L; l++) {
        uint8_t *layer_mask = mask + (size_t)l * H * n;
        int32_t budget = budgets[l];
        if (l % reuse == 0) { /* score this layer's chunks; the next reuse-1 layers copy it */
            memset(chunk_score, 0, n_chunks * sizeof *chunk_score);
            memset(chosen, 0, n_chunks);
            for (int32_t h = 0; h < H; h++)
                for (int32_t t = 0; t < n; t++)
                    chunk_score[t / c] += scores[((size_t)l * H + h) * n + t];
            int32_t w = (int32_t)o->window < n ? (int32_t)o->window : n;
            int32_t win = w < budget ? w : budget;
            for (int32_t t = n - win; t < n; t++)
                chosen[t / c] = 2; /* window chunks are kept outside the chunk budget */
            size_t cand = 0;
            for (size_t k = 0; k < n_chunks; k++)
                if (!chosen[k])
                    idx[cand++] = (uint32_t)k;
            size_t keep = (size_t)((budget - win) / (int32_t)c);
            if (keep == 0 && win == 0)
                keep = 1;
            kvz_cpu_top_k_mask(chunk_score, idx, cand, keep, chosen, scratch);
        }
        for (int32_t h = 0; h < H; h++)
            for (int32_t t = 0; t < n; t++)
                layer_mask[(size_t)h * n + t] = chosen[t / c] != 0;
    }
    free(chunk_score), free(idx), free(scratch), free(chosen);
    return KVZ_OK;
}

/* The k best of scores[0 .. count) into mask (which the device path
 * overwrites with 0/1): on `device` when given, else here. */
static int top_k_span(kvz_backend *device, const float *scores, size_t count, size_t k, uint8_t *mask,
                      uint32_t *keys)
{
    if (!device) {
        kvz_cpu_top_k_mask(scores, NULL, count, k, mask, keys);
        return KVZ_OK;
    }
    void *dev_scores = NULL, *dev_mask = NULL;
    int rc = device->ops->alloc(device, count * sizeof(float), &dev_scores);
    if (rc == KVZ_OK)
        rc = device->ops->alloc(device, count, &dev_mask);
    if (rc == KVZ_OK)
        rc = device->ops->upload(device, dev_scores, scores, count * sizeof(float));
    if (rc == KVZ_OK)
        rc = device->ops->top_k_mask(device, dev_mask, dev_scores, (int64_t)count, (int64_t)k);
    if (rc == KVZ_OK)
        rc = device->ops->download(device, mask, dev_mask, count);
    if (dev_scores)
        device->ops->free(device, dev_scores);
    if (dev_mask)
        device->ops->free(device, dev_mask);
    return rc;
}

int kvz_select(const kvz_select_opts *o, kvz_backend *device, const float *scores,
               const float *head_scores, int32_t L, int32_t H, int32_t n, kvz_selection *out)
{
    memset(out, 0, sizeof *out);
    if (L <= 0 || H <= 0 || n <= 0)
        return kvz_errorf(KVZ_ERR_ARG, "nothing to select from");
    if (o->method != KVZ_METHOD_FULL && !o->budget && !(o->ratio > 0 && o->ratio <= 1))
        return kvz_errorf(KVZ_ERR_ARG, "ratio must be in (0, 1] (got %g)", o->ratio);
    size_t heads = (size_t)L * H, total = heads * (size_t)n;
    uint8_t *mask = calloc(total, 1);
    int32_t *budgets = malloc((size_t)L * sizeof *budgets);
    uint32_t *scratch = malloc(total * sizeof *scratch);
    uint32_t *idx = malloc(total * sizeof *idx);
    if (!mask || !budgets || !scratch || !idx) {
        free(mask), free(budgets), free(scratch), free(idx);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory selecting %zu pairs", total);
    }
    double avg = average_budget(o, n);
    int rc = o->method == KVZ_METHOD_FULL ? KVZ_OK
                                          : kvz_layer_budgets(o->shape, avg, L, n, o->beta, o->decay, budgets);
    int window_method = o->method == KVZ_METHOD_SNAPKV || o->method == KVZ_METHOD_CHUNKKV;
    uint64_t rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
    if (rc != KVZ_OK) {
    } else if (o->method == KVZ_METHOD_FULL) {
        memset(mask, 1, total);
    } else if (o->method == KVZ_METHOD_RECENT || o->method == KVZ_METHOD_RANDOM) {
        for (int32_t l = 0; l < L; l++)
            for (int32_t h = 0; h < H; h++) {
                uint8_t *m = mask + ((size_t)l * H + h) * n;
                int32_t k = budgets[l];
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
    } else if (o->chunk > 0) {
        rc = select_chunks(o, scores, L, H, n, budgets, mask);
    } else if (o->level == KVZ_LEVEL_HEAD) {
        if (!head_scores) {
            rc = kvz_errorf(KVZ_ERR_ARG, "the head level needs head scores");
        } else { /* keep whole heads: as many as the budget pays for */
            size_t keep = (size_t)lround(avg / n * (double)heads);
            uint8_t *head_kept = calloc(heads, 1);
            if (!head_kept)
                rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
            else {
                kvz_cpu_top_k_mask(head_scores, NULL, heads, keep, head_kept, scratch);
                for (size_t i = 0; i < heads; i++)
                    if (head_kept[i])
                        memset(mask + i * n, 1, (size_t)n);
                free(head_kept);
            }
        }
    } else if (o->level == KVZ_LEVEL_PAIR && !window_method) {
        /* one threshold over all heads: of the model (uniform) or of each layer */
        int per_layer = o->shape != KVZ_SHAPE_UNIFORM;
        size_t groups = per_layer ? (size_t)L : 1, span = per_layer ? (size_t)H * n : total;
        for (size_t g = 0; g < groups && rc == KVZ_OK; g++) {
            size_t keep = per_layer ? (size_t)budgets[g] * H : (size_t)lround(avg * (double)heads);
            rc = top_k_span(device, scores + g * span, span, keep, mask + g * span, scratch);
        }
    } else { /* per head top-k (pair-uniform, snapkv, knorm) */
        for (int32_t l = 0; l < L; l++)
            for (int32_t h = 0; h < H; h++) {
                size_t base = ((size_t)l * H + h) * n;
                int32_t k = budgets[l];
                if (window_method)
                    force_window(o, n, mask + base, &k);
                size_t cand = 0;
                for (int32_t t = 0; t < n; t++)
                    if (!mask[base + t])
                        idx[cand++] = (uint32_t)(base + t);
                kvz_cpu_top_k_mask(scores, idx, cand, (size_t)k, mask, scratch);
            }
    }
    if (rc == KVZ_OK)
        rc = from_mask(mask, scores, L, H, n, out);
    free(mask), free(budgets), free(scratch), free(idx);
    return rc;
}
