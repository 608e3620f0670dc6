/*
 * backend.h — the one compute interface every device implements.
 *
 * The model code (model/forward.c) is written once against this table; the
 * CPU backend (kernels/cpu/) is the reference and the CUDA backend
 * (kernels/cuda/) must agree with it op by op (tests/cuda/).
 *
 * Memory: every pointer passed to an op is backend memory obtained from
 * alloc(); the host moves data with upload()/download(). Activations are f32,
 * row-major. Ops are enqueued in order; download() and synchronize() wait.
 *
 * Shapes in comments read (rows, cols), row-major.
 */
#ifndef KVZ_KERNELS_BACKEND_H
#define KVZ_KERNELS_BACKEND_H

#include "kernels/kv_codes.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_backend kvz_backend;

/* A weight matrix (rows = output features, cols = input features) resident on
 * a backend, in whatever storage the backend chose at load. */
typedef struct kvz_weight {
    int64_t rows, cols;
    uint32_t type; /* kvz_ggml_type of `data` */
    void *data;    /* backend memory, or a host view the backend does not own */
    int owned;
    /* The file's own blocks (a host view), which a backend may read directly
     * where that moves fewer bytes (CPU decode). */
    const void *native;
    uint32_t native_type;
} kvz_weight;

typedef enum kvz_rope_mode {
    KVZ_ROPE_NORMAL = 0, /* rotate adjacent pairs (2i, 2i+1): GGUF llama models */
    KVZ_ROPE_NEOX = 2,   /* rotate (i, i + d/2): qwen2 and HF-layout models */
} kvz_rope_mode;

/* Frequency factors a model may carry, one per rotated pair (rotary widths
 * up to 256; the model loader refuses factors for wider ones). */
#define KVZ_ROPE_MAX_FACTORS 128

typedef struct kvz_rope_params {
    int32_t head_dim;
    int32_t rope_dim;  /* leading dims rotated (== head_dim for llama) */
    float freq_base;
    kvz_rope_mode mode;
    /* Pair j's angle is pos * freq_base^(-2j/rope_dim) / factors[j] when
     * n_factors == rope_dim / 2 (GGUF rope_freqs.weight: Llama 3.1 and later,
     * as llama.cpp divides); n_factors == 0: no factors. Held by value, so a
     * backend passes them to its kernels as they are. */
    int32_t n_factors;
    float factors[KVZ_ROPE_MAX_FACTORS];
} kvz_rope_params;

/* KVZ_ERR_ARG unless the rotary width is even and within the head, and the
 * factors are none or one per rotated pair (KVZ_ROPE_MAX_FACTORS at most):
 * what every backend's rope checks before it reads them. */
int kvz_rope_params_check(const kvz_rope_params *p);

/* Causal GQA attention over one layer's cache of rows of head_dim floats.
 *
 * Dense layout (head_base == NULL): KV head h owns rows [h·capacity,
 * (h+1)·capacity) and the n queries sit at rows pos0 .. pos0+n-1 of every head.
 * Ragged layout (a loaded compressed cache, heads of different lengths): head h
 * owns rows from head_base[h] and its queries sit at rows head_rows[h] .. of
 * that block; max_head_rows is the largest head_rows[h] and total_head_rows
 * their sum (0 if unknown: a backend then plans its work from the largest).
 * The arrays are backend memory with n_kv_heads entries.
 *
 * Either way query i attends to its head's rows 0 .. first_query_row + i. */
typedef struct kvz_attention_params {
    int32_t n;          /* queries */
    int32_t pos0;       /* dense: cache row of the first query */
    int32_t n_heads;
    int32_t n_kv_heads; /* n_heads % n_kv_heads == 0 (GQA) */
    int32_t head_dim;
    int32_t capacity;   /* dense: rows per KV head */
    float scale;        /* usually 1/sqrt(head_dim) */
    const int64_t *head_base; /* ragged: first row of each head's block, or NULL */
    const int32_t *head_rows; /* ragged: rows before each head's first query */
    int32_t max_head_rows;
    int64_t total_head_rows;
} kvz_attention_params;

/* qwen2's biases of the q, k and v products (backend memory): a row of
 * n_heads * head_dim floats for q, n_kv_heads * head_dim for k and v. */
typedef struct kvz_qkv_bias {
    const float *q, *k, *v;
} kvz_qkv_bias;

/* A whole layer of the model for the layer op: its weights (backend
 * memory), its caches and the step's buffers, each of the shape the op-by-op
 * calls give it (model/context.c's run_layer). */
typedef struct kvz_layer_step {
    int32_t n;                                 /* tokens of the step */
    float *x;                                  /* (n, dim): the residual stream, in and out */
    float *h, *q, *k, *v, *att, *gate, *up;   /* scratch */
    const float *attn_norm, *ffn_norm;         /* (dim) */
    float eps;
    const kvz_weight *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
    const kvz_qkv_bias *bias;                  /* or NULL */
    float *k_cache, *v_cache;
    const int32_t *positions;                  /* (n) */
    const kvz_attention_params *attn;
    const kvz_rope_params *rope;
} kvz_layer_step;

typedef enum kvz_score_reduce {
    KVZ_REDUCE_MAX = 0, /* KVzip: the largest probability any query gave the key */
    KVZ_REDUCE_SUM = 1, /* SnapKV / ChunkKV: total probability over the window */
} kvz_score_reduce;

#define KVZ_SCORE_MAX_RANGES 3

/* Scores of cached keys from a block of queries. Each (query, head) row takes
 * a softmax of q·k · scale over the union of the key ranges (cache rows
 * [begin, end), ascending and disjoint), causally: query i sees row j only if j <= q_pos0 + i. Each
 * key's probabilities are reduced (max or sum) over the queries and the query
 * heads of its GQA group into scores (n_kv_heads, capacity), combined with
 * what is already there (max or add), so blocks of queries accumulate. */
typedef struct kvz_score_params {
    int32_t n;          /* queries */
    int32_t q_pos0;     /* cache row of the first query */
    int32_t n_heads, n_kv_heads, head_dim, capacity;
    float scale;
    int32_t n_ranges;
    int32_t range_begin[KVZ_SCORE_MAX_RANGES], range_end[KVZ_SCORE_MAX_RANGES];
    kvz_score_reduce reduce;
} kvz_score_params;

/* Choosing the next token from a row of logits. temperature <= 0: the largest
 * logit (the lowest id of equal ones; a NaN ranks below every number, as in
 * order_key.h), the same token on every backend. Otherwise softmax at that
 * temperature; tokens under KVZ_SAMPLE_MIN_SHARE of the mass are dropped, the
 * rest ordered by probability (ties: lower id first) and cut after the first
 * prefix that holds top_p of the mass; the token is where draw · (that
 * prefix's mass) falls in its running sum. `draw` is uniform in [0, 1), from
 * the caller's generator: a seed gives the same text on a backend run after
 * run. Across backends the probabilities differ in their last bits (the
 * device's expf and its order of additions), so a draw that falls within that
 * much of a boundary between two tokens may pick the other one. */
#define KVZ_SAMPLE_MIN_SHARE 1e-9
typedef struct kvz_sample_params {
    float temperature;
    float top_p; /* (0, 1] */
    double draw;
} kvz_sample_params;

/* One stored KV head for kv_load: where its parts lie in the staging buffer
 * (byte offsets) and the cache rows they fill. */
typedef struct kvz_kv_load_job {
    float *dst; /* backend memory, (shape.n, shape.d) */
    kvz_quant_shape shape;
    int is_keys;                       /* keys have positions and are rotated */
    size_t payload, scales, positions; /* positions: keys only */
} kvz_kv_load_job;

/* KVZ_ERR_ARG unless every part of the job lies within `bytes` of staging,
 * aligned for its type, and a keys job has RoPE parameters. */
int kvz_kv_load_job_check(const kvz_kv_load_job *job, size_t bytes, const kvz_rope_params *rope);

/* KVZ_ERR_INTERNAL unless the `count` weights have the same cols: the one
 * input of norm_matmul_many. */
int kvz_weights_same_cols(const kvz_weight *const *w, int32_t count);

typedef struct kvz_backend_ops {
    const char *name;
    int host_memory; /* 1: backend memory is host memory (alloc is malloc, upload a copy) */

    /* Memory is freed by the backend that allocated it (on the GPU, in the
     * order of its stream: after the work queued before the free). */
    int (*alloc)(kvz_backend *b, size_t bytes, void **ptr);
    void (*free)(kvz_backend *b, void *ptr);
    /* Host memory the device copies to and from directly (upload's source,
     * kv_quantize's destination), so that those copies wait for nothing and
     * the host works on while they run: pinned on a GPU, where getting it
     * costs far more than malloc (keep and reuse it), plain on the CPU.
     * download() waits whatever the memory. host_free waits for the work
     * queued before it. */
    int (*host_alloc)(kvz_backend *b, size_t bytes, void **ptr);
    void (*host_free)(kvz_backend *b, void *ptr);
    int (*upload)(kvz_backend *b, void *dst, const void *src, size_t bytes);
    int (*download)(kvz_backend *b, void *dst, const void *src, size_t bytes);
    int (*memset_zero)(kvz_backend *b, void *dst, size_t bytes);
    int (*synchronize)(kvz_backend *b);
    void (*destroy)(kvz_backend *b);
    /* *out = a backend on the same device and threads as b that shares
     * nothing b changes as it works (scratch, staging, tables, and on the GPU
     * its stream and cuBLAS handle), so that two host threads may run work on
     * b and *out at once. Memory either allocates (the model's weights among
     * it) is usable by both once the allocating one has synchronised.
     * Destroyed with destroy, before the memory of b's it uses is freed. */
    int (*fork)(kvz_backend *b, kvz_backend **out);

    /* Make a (rows, cols) matrix of GGUF `type` at host `src` usable by matmul.
     * `src` stays valid for the backend's life (a mapped model file), so a
     * backend may keep a view instead of a copy. */
    int (*weight_load)(kvz_backend *b, kvz_weight *w, uint32_t type, const void *src, int64_t rows,
                       int64_t cols);
    void (*weight_free)(kvz_backend *b, kvz_weight *w);

    /* out (n, w.rows) = x (n, w.cols) · wᵀ, or += when accumulate. */
    int (*matmul)(kvz_backend *b, float *out, const float *x, const kvz_weight *w, int32_t n,
                  int accumulate);
    /* h (n, dim) = x / sqrt(mean(x²) + eps) * norm (RMSNorm), then out[i] =
     * h · w[i]ᵀ (as matmul, not accumulating) for `count` weights of dim =
     * w[i].cols: the attention's q, k and v, the MLP's gate and up, the
     * logits. One call, so that a backend may make h ready for the products
     * as it writes it: the GPU's norm kernel also writes the f16 copy that
     * cuBLAS reads, which a conversion launch of its own made before, and a
     * decode step's few rows go to a kernel that reads h as it is or, for
     * small weights, normalises x itself as it reads it (and writes h too).
     * h may not alias x. */
    int (*norm_matmul_many)(kvz_backend *b, int32_t count, float *const *out, float *h, const float *x,
                            const float *norm, float eps, const kvz_weight *const *w, int32_t n);
    /* out (n, table.cols) = rows `tokens[i]` of table. */
    int (*embed)(kvz_backend *b, float *out, const kvz_weight *table, const int32_t *tokens,
                 int32_t n);
    /* Rotate x (n, n_heads, head_dim) in place by positions[i] (inverse: rotate back). */
    int (*rope)(kvz_backend *b, float *x, const int32_t *positions, int32_t n, int32_t n_heads,
                const kvz_rope_params *p, int inverse);
    /* dst (count, width) = rows idx[i] (>= 0) of src (rows of width floats);
     * idx is backend memory. The compiler reads kept cache rows this way. */
    int (*gather_rows)(kvz_backend *b, float *dst, const float *src, const int32_t *idx, int32_t count,
                       int32_t width);
    /* out (n, w.rows) = (silu(gate) * up) · wᵀ, or += when accumulate: SwiGLU
     * (gate and up (n, w.cols)), then the MLP's down projection, one call for
     * the reason norm_matmul_many is. gate is scratch: it may hold the SwiGLU
     * afterwards (the CPU works in place), or not (the GPU's own product
     * kernel applies it as it reads gate). */
    int (*swiglu_matmul)(kvz_backend *b, float *out, float *gate, const float *up, const kvz_weight *w,
                         int32_t n, int accumulate);
    /* A layer's step between its q/k/v products and its attention: with
     * `bias` (else NULL) its q, k and v rows added to every row of q, k and v
     * first; then q (n, n_heads * head_dim) and k (n, n_kv_heads * head_dim)
     * rotated in place by positions[i], as rope does; then k and v copied
     * into the caches at the rows after each head's existing ones (rows
     * pos0.., or after head_rows[h] from head_base[h]). q and k hold their
     * final values afterwards; v is scratch (the CPU adds its bias in place,
     * the GPU as it copies). One call, so that the GPU makes it one launch
     * instead of three (six with biases). */
    int (*rope_kv_append)(kvz_backend *b, float *k_cache, float *v_cache, float *q, float *k, float *v,
                          const kvz_qkv_bias *bias, const int32_t *positions, const kvz_attention_params *p,
                          const kvz_rope_params *rope);
    /* The layer's step as norm_matmul_many (q, k, v), rope_kv_append,
     * attention (unscored), matmul (x += att · woᵀ), norm_matmul_many (gate,
     * up) and swiglu_matmul (x += · w_downᵀ) make it, the same bits, in one
     * call: the CPU runs a decode step's layer in one parallel region, its
     * threads woken once a layer instead of five times (each wake-up costs
     * microseconds, more under OMP_WAIT_POLICY=passive). Where the backend
     * has no one call for these shapes it sets *done = 0 and changes
     * nothing: make the calls one by one. NULL: never one call. */
    int (*layer)(kvz_backend *b, const kvz_layer_step *s, int *done);
    /* out (n, n_heads * head_dim) = softmax(q kᵀ · scale, causal) v. With
     * `score` (else NULL) the same queries also score keys into `scores`
     * exactly as attention_scores would, sharing the dot products. */
    int (*attention)(kvz_backend *b, float *out, const float *q, const float *k_cache,
                     const float *v_cache, const kvz_attention_params *p,
                     const kvz_score_params *score, float *scores);
    /* scores (n_kv_heads, capacity) ⊕= reduce(softmax(q kᵀ)) over ranges (see above). */
    int (*attention_scores)(kvz_backend *b, float *scores, const float *q, const float *k_cache,
                            const kvz_score_params *p);
    /* mask[i] (count bytes) = 1 for the k highest of scores[0 .. count), else 0.
     * Ties go to the lower index; -0 equals +0; NaN ranks below everything
     * (kernels/order_key.h). Radix select: linear in count, no sort. */
    int (*top_k_mask)(kvz_backend *b, uint8_t *mask, const float *scores, int64_t count, int64_t k);
    /* Selection over many rows at once (compiler/select.c): mask (rows, n)
     * gets, in each row r, 1 for the k[r] highest of that row's first
     * length[r] scores and 0 everywhere else (ties, zeros and NaN as in
     * top_k_mask). length and k are host arrays of `rows` entries (0 <=
     * length[r] <= n); the call does not keep them. */
    int (*top_k_rows)(kvz_backend *b, uint8_t *mask, const float *scores, int32_t rows, int32_t n,
                      const int32_t *length, const int32_t *k);
    /* SnapKV's smoothing: out (rows, n) = the largest of in's row over
     * columns [t - kernel/2, t + kernel/2] clipped to [0, n). in's rows lie
     * `stride` (>= n) floats apart; out does not overlap in. */
    int (*max_pool)(kvz_backend *b, float *out, const float *in, int32_t rows, int32_t n, int64_t stride,
                    int32_t kernel);
    /* ChunkKV: out[c] for c < ceil(n / chunk) = the sum of scores (rows, n)
     * over all rows and columns [c·chunk, (c+1)·chunk), added in f32 row by
     * row, each row's columns in order: one order on every backend, so the
     * sums (and the chunks they choose) agree bit for bit. */
    int (*chunk_sums)(kvz_backend *b, float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk);
    /* Key-norm scores: out (rows, n) = the L2 norm of each of n cached keys
     * of head_dim floats, row r's keys starting at keys + r·stride floats.
     * Summed in f64 in index order, unfused, then rounded: the same bits on
     * every backend. */
    int (*key_norms)(kvz_backend *b, float *out, const float *keys, int32_t rows, int32_t n, int64_t stride,
                     int32_t head_dim);
    /* *host = a host buffer of at least `bytes` for the next kv_load to read
     * stored heads from (pinned memory on a GPU: one direct copy to the
     * device, no bounce through another buffer). Buffers are handed out in
     * turn and one comes back only after the load that read it has finished,
     * so the host fills the next while the device still reads the last. */
    int (*kv_staging)(kvz_backend *b, size_t bytes, void **host);
    /* For each job: job.dst (shape.n, shape.d) = the stored head at the job's
     * offsets in `staging` (kernels/kv_codes.h: payload and (scale, min)
     * pairs) dequantized, and for keys rotated by RoPE to their int32
     * positions. `staging` is the buffer the last kv_staging call gave, its
     * first `bytes` filled; jobs is host memory the call does not keep. The
     * rows may land after it returns (synchronize() waits). */
    int (*kv_load)(kvz_backend *b, const void *staging, size_t bytes, const kvz_kv_load_job *jobs,
                   int32_t n_jobs, const kvz_rope_params *rope);
    /* The stored form of one KV head's rows x (s->n, s->d; backend memory),
     * exactly as kernels/kv_quant.h's kvz_quantize makes it, bit for bit:
     * payload (kvz_quant_payload_bytes) and scales (kvz_quant_scale_pairs
     * pairs) are host memory (from host_alloc, for the copies to run while
     * the host works), filled in the backend's order of work: read them
     * after synchronize(). x may be reused as soon as the call returns. */
    int (*kv_quantize)(kvz_backend *b, const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                       uint16_t *scales);
    /* *token (host) = the token chosen from logits[0 .. n) (backend memory; see kvz_sample_params). */
    int (*sample)(kvz_backend *b, int32_t *token, const float *logits, int32_t n, const kvz_sample_params *p);
} kvz_backend_ops;

struct kvz_backend {
    const kvz_backend_ops *ops;
    int n_threads; /* host threads the backend may use */
    void *impl;
};

typedef enum kvz_device {
    KVZ_DEVICE_CPU = 0,
    KVZ_DEVICE_CUDA = 1,
    KVZ_DEVICE_AUTO = 2, /* cuda when built in and a GPU is present, else cpu */
} kvz_device;

/* Policy for CPU weights: dequantize everything to f32 at load (fast prefill,
 * 4 bytes per weight) or keep the file's blocks and decode tiles on the fly. */
typedef enum kvz_weight_policy {
    KVZ_WEIGHTS_AUTO = 0, /* f32 when it fits comfortably in memory */
    KVZ_WEIGHTS_F32 = 1,
    KVZ_WEIGHTS_NATIVE = 2,
} kvz_weight_policy;

typedef struct kvz_backend_config {
    kvz_device device;
    int n_threads; /* 0: $OMP_NUM_THREADS, else every CPU this process may run on (kvz_backend_threads) */
    kvz_weight_policy weights;
    int64_t weight_bytes_hint; /* f32 size of the model, for the AUTO policy */
} kvz_backend_config;

/* Fill the shape and native view of `w` for a (rows, cols) matrix of GGUF
 * `type` at host `src`; *row_bytes gets the bytes of one row.
 * KVZ_ERR_UNSUPPORTED (naming `backend`) when the type cannot hold such rows. */
int kvz_weight_init(kvz_weight *w, const char *backend, uint32_t type, const void *src,
                    int64_t rows, int64_t cols, size_t *row_bytes);

/* What KVZ_DEVICE_AUTO picks: cuda when built in and a GPU it has code for is
 * present, else cpu. */
kvz_device kvz_backend_auto_device(void);

/* Create a backend. KVZ_ERR_UNSUPPORTED when cuda is asked for and kvz was
 * built without it; KVZ_ERR_BACKEND when no GPU can be used. */
int kvz_backend_create(kvz_backend **out, const kvz_backend_config *cfg);
void kvz_backend_destroy(kvz_backend *b);

/* The host threads a backend made from cfg uses: cfg->n_threads, or when it
 * is 0 $OMP_NUM_THREADS where set, else the CPUs in this process's affinity
 * mask (taskset, cpusets), not every CPU of the machine. 1 in a child of fork
 * of a process that made a backend of several threads (OpenMP's threads do
 * not survive fork: a region of several would wait for them forever). */
int kvz_backend_threads(const kvz_backend_config *cfg);

/* The CPUs this process may use: its affinity mask's, fewer where its
 * cgroup's CPU quota allows fewer (common/cpu_quota.h). */
int kvz_backend_cpus(void);

/* Whether this build contains the CUDA backend. */
int kvz_backend_has_cuda(void);

int kvz_backend_cpu_create(kvz_backend **out, const kvz_backend_config *cfg);
#ifdef KVZ_WITH_CUDA
int kvz_backend_cuda_create(kvz_backend **out, const kvz_backend_config *cfg);
int kvz_backend_cuda_available(void);
#endif

#endif
