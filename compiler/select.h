/*
 * select.h — from scores to kept positions (DESIGN §4).
 *
 * Budgets count document tokens only (the shared prefix is always kept and
 * never counted). A ratio r keeps about r·n pairs per (layer, head) on
 * average; a budget keeps that many tokens per head on average. Budget shapes
 * move tokens between layers at the same total; levels decide how a layer's
 * (or the model's) budget is split between heads. No head ever ends up with
 * zero pairs: a head left empty keeps its best-scored position.
 */
#ifndef KVZ_COMPILER_SELECT_H
#define KVZ_COMPILER_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

typedef enum kvz_method {
    KVZ_METHOD_KVZIP = 0,
    KVZ_METHOD_CHUNKKV,
    KVZ_METHOD_SNAPKV,
    KVZ_METHOD_FULL,
    KVZ_METHOD_RECENT,
    KVZ_METHOD_RANDOM,
    KVZ_METHOD_KNORM,
    KVZ_METHOD_COUNT
} kvz_method;

typedef enum kvz_level {
    KVZ_LEVEL_PAIR = 0,    /* one threshold over all heads (per layer under a shape) */
    KVZ_LEVEL_PAIR_UNIFORM, /* top-k in every head */
    KVZ_LEVEL_HEAD,         /* whole heads kept or dropped by context-independent scores */
} kvz_level;

typedef enum kvz_budget_shape {
    KVZ_SHAPE_UNIFORM = 0,
    KVZ_SHAPE_PYRAMID, /* PyramidKV: linear from bottom 2B - B/beta to top B/beta */
    KVZ_SHAPE_DECAY,   /* PyramidInfer offline: geometric, top = decay x bottom */
} kvz_budget_shape;

typedef struct kvz_select_opts {
    kvz_method method;
    kvz_level level;
    kvz_budget_shape shape;
    float ratio;      /* kept fraction, or 0 when budget is set */
    uint32_t budget;  /* kept tokens per head, or 0 */
    float beta;       /* pyramid (20) */
    float decay;      /* decay: top-layer / bottom-layer budget (0.2) */
    uint32_t chunk;   /* > 0: select whole chunks of this many tokens per layer */
    uint32_t reuse;   /* chunk selection computed every `reuse` layers and reused (>= 1) */
    uint32_t window;  /* window methods: last tokens always kept (0: none) */
    uint32_t sinks;   /* recent: first tokens kept (StreamingLLM's attention sinks, 4) */
    uint64_t seed;    /* random */
} kvz_select_opts;

const char *kvz_method_name(kvz_method m);
int kvz_method_from_name(const char *name); /* -1 if unknown */
const char *kvz_level_name(kvz_level l);
int kvz_level_from_name(const char *name);
const char *kvz_shape_name(kvz_budget_shape s);
int kvz_shape_from_name(const char *name);

/* Kept positions of every (layer, head): head i = layer * n_heads + h keeps
 * pos[offset[i] .. offset[i+1]), increasing. */
typedef struct kvz_selection {
    int32_t n_layers, n_heads, n_tokens;
    uint32_t *offset; /* n_layers * n_heads + 1 */
    uint32_t *pos;
} kvz_selection;

void kvz_selection_free(kvz_selection *s);
uint64_t kvz_selection_total(const kvz_selection *s);

/* Per-layer budgets (tokens per head) for average budget `avg` (<= n). */
int kvz_layer_budgets(kvz_budget_shape shape, double avg, int32_t n_layers, int32_t n, float beta,
                      float decay, int32_t *budgets);

/* Select from scores (n_layers, n_heads, n) on the host (NULL for
 * full/recent/random). head_scores (n_layers, n_heads) is needed for the head
 * level. Every choice by score runs on backend `b` (its top_k_mask,
 * top_k_rows and chunk_sums ops): the scores go up once and the kept masks
 * come back, or are used in place on a host-memory backend. Every backend
 * gives the same selection. */
int kvz_select(const kvz_select_opts *o, kvz_backend *b, const float *scores, const float *head_scores,
               int32_t n_layers, int32_t n_heads, int32_t n, kvz_selection *out);

#endif
