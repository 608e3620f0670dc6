/*
 * matvec.c — out (n, rows) = x (n, cols) · Wᵀ for a few rows of x (decode),
 * reading the weights in their GGUF block format; several weights of one x
 * (a layer's q, k and v) in one parallel step, a region of its own or a
 * share of the layer's (backend_cpu.c's layer op).
 *
 * Decoding one token is bound by how many weight bytes stream through the
 * cores: a Q4_1 matrix is 0.625 bytes per weight against 4 for its f32 copy.
 * The arithmetic stays exact f32 (no activation quantization): a block's dot
 * product is d·Σ q·x (+ m·Σ x), so results match dequantize-then-multiply up
 * to summation order. AVX2 paths for Q8_0, Q4_0 and Q4_1 (which also fetch
 * a thread's next rows ahead); other types decode one row at a time into
 * cache-resident scratch and take a plain dot product.
 */
#include "common/half.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KVZ_MATVEC_AVX2 1
#endif

int kvz_cpu_matvec_has_fast_path(uint32_t type)
{
#ifdef KVZ_MATVEC_AVX2
    return type == KVZ_GGML_Q8_0 || type == KVZ_GGML_Q4_0 || type == KVZ_GGML_Q4_1;
#else
    (void)type;
    return 0;
#endif
}

#ifdef KVZ_MATVEC_AVX2
static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of 4-bit codes -> 32 floats: low nibbles are elements 0..15. */
static inline void unpack_nibbles(const uint8_t *qs, __m256 f[4])
{
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(raw, mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

static inline void unpack_i8(const int8_t *qs, __m256 f[4])
{
    __m128i a = _mm_loadu_si128((const __m128i *)qs), b = _mm_loadu_si128((const __m128i *)(qs + 16));
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
}

#define W_ROWS 4 /* weight rows interleaved: four independent FMA chains */

/* Unpack block b of a weight row into f, returning its scale; *min gets the
 * per-element offset (Q4_1: m; Q4_0: -8·d; Q8_0: 0). */
static inline __attribute__((always_inline)) float unpack_block(uint32_t type, const uint8_t *w, int64_t b, __m256 f[4], float *min)
{
    if (type == KVZ_GGML_Q8_0) {
        const kvz_block_q8_0 *blk = (const kvz_block_q8_0 *)w + b;
        unpack_i8(blk->qs, f);
        *min = 0.0f;
        return kvz_fp16_to_f32(blk->d);
    }
    if (type == KVZ_GGML_Q4_0) {
        const kvz_block_q4_0 *blk = (const kvz_block_q4_0 *)w + b;
        unpack_nibbles(blk->qs, f);
        float d = kvz_fp16_to_f32(blk->d);
        *min = -8.0f * d;
        return d;
    }
    const kvz_block_q4_1 *blk = (const kvz_block_q4_1 *)w + b;
    unpack_nibbles(blk->qs, f);
    *min = kvz_fp16_to_f32(blk->m);
    return kvz_fp16_to_f32(blk->d);
}

/* The rows a thread reads after these (its next group), fetched into cache
 * while these are computed: a group's four rows are four short streams that
 * the hardware prefetcher picks up too late. Measured on one Zen 4 core, a
 * Q4_1 matrix out of cache: 7.3 GMAC/s without, 13.4 with (14.3 in cache). */
typedef struct next_rows {
    const uint8_t *row[W_ROWS];
    int n;               /* 0: nothing to fetch */
    size_t block_bytes;  /* of the next rows' type: the same count of blocks */
} next_rows;

/* Up to four weight rows (w[r], r < nr) against one row of x with block sums
 * xsum: dots[r] = Σ_b d_rb · (q_rb · x_b) + min_rb · xsum_b. */
static inline __attribute__((always_inline)) void
rows_dot_avx2(uint32_t type, const uint8_t *const *w, int nr, int64_t nb, const float *x,
              const float *xsum, const next_rows *next, float *dots)
{
    __m256 acc[W_ROWS];
    float extra[W_ROWS] = {0};
    for (int r = 0; r < W_ROWS; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * KVZ_QK;
        __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        for (int r = 0; r < next->n; r++)
            _mm_prefetch((const char *)next->row[r] + (size_t)b * next->block_bytes, _MM_HINT_T0);
        for (int r = 0; r < nr; r++) {
            __m256 f[4];
            float min;
            float d = unpack_block(type, w[r], b, f, &min);
            __m256 s = _mm256_mul_ps(f[0], x0);
            s = _mm256_fmadd_ps(f[1], x1, s);
            s = _mm256_fmadd_ps(f[2], x2, s);
            s = _mm256_fmadd_ps(f[3], x3, s);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc[r]);
            extra[r] += min * xsum[b];
        }
    }
    for (int r = 0; r < nr; r++)
        dots[r] = hsum(acc[r]) + extra[r];
}

/* One copy of the kernel per type, so the type tests leave the inner loop. */
static void rows_dot_q8_0(const uint8_t *const *w, int nr, int64_t nb, const float *x,
                          const float *xsum, const next_rows *next, float *dots)
{
    rows_dot_avx2(KVZ_GGML_Q8_0, w, nr, nb, x, xsum, next, dots);
}

static void rows_dot_q4_0(const uint8_t *const *w, int nr, int64_t nb, const float *x,
                          const float *xsum, const next_rows *next, float *dots)
{
    rows_dot_avx2(KVZ_GGML_Q4_0, w, nr, nb, x, xsum, next, dots);
}

static void rows_dot_q4_1(const uint8_t *const *w, int nr, int64_t nb, const float *x,
                          const float *xsum, const next_rows *next, float *dots)
{
    rows_dot_avx2(KVZ_GGML_Q4_1, w, nr, nb, x, xsum, next, dots);
}
#endif

size_t kvz_cpu_matvec_thread_floats(int64_t cols, int32_t n)
{
    /* one decoded row; the block sums of x */
    return (size_t)cols + (size_t)n * (size_t)(cols / KVZ_QK + 1);
}

size_t kvz_cpu_matvec_scratch_floats(const kvz_weight *w, int32_t n, int n_threads)
{
    return (size_t)n_threads * kvz_cpu_matvec_thread_floats(w->cols, n);
}

void kvz_cpu_matvec_team(int32_t count, float *const *out, const float *x, const kvz_weight *const *w, int32_t n,
                         int accumulate, float *scratch)
{
    if (count <= 0)
        return;
    const int64_t cols = w[0]->cols, nb = cols / KVZ_QK;
    float *row = scratch, *xsum = scratch + cols;
    int any_fast = 0;
    int64_t groups = 0; /* row groups of 4 over every weight, one after another */
    for (int32_t k = 0; k < count; k++) {
        any_fast |= kvz_cpu_matvec_has_fast_path(w[k]->type);
        groups += (w[k]->rows + 3) / 4;
    }
    /* each thread its own: a few hundred additions cost less than a barrier */
    if (any_fast)
        for (int32_t i = 0; i < n; i++)
            for (int64_t b = 0; b < nb; b++) {
                float s = 0;
                for (int j = 0; j < KVZ_QK; j++)
                    s += x[i * cols + b * KVZ_QK + j];
                xsum[i * nb + b] = s;
            }
#pragma omp for schedule(static) nowait /* the caller waits where the output is read */
    for (int64_t g = 0; g < groups; g++) {
        int32_t k = 0;
        int64_t first_group = 0; /* weight k's first group */
        while (g - first_group >= (w[k]->rows + 3) / 4)
            first_group += (w[k++]->rows + 3) / 4;
        const kvz_weight *wk = w[k];
        const int64_t rows = wk->rows, r0 = (g - first_group) * 4;
        const size_t row_bytes = kvz_ggml_row_bytes(wk->type, (uint64_t)cols);
        int nr = rows - r0 < 4 ? (int)(rows - r0) : 4;
        const uint8_t *wr[4];
        for (int r = 0; r < nr; r++)
            wr[r] = (const uint8_t *)wk->data + (size_t)(r0 + r) * row_bytes;
#ifdef KVZ_MATVEC_AVX2
        /* schedule(static): a thread's groups are consecutive, so its next
         * is group g + 1 but after its last (then another thread's) */
        next_rows next = {.n = 0};
        if (g + 1 < groups && nb > 0 && kvz_cpu_matvec_has_fast_path(wk->type)) {
            const kvz_weight *wn = r0 + 4 < rows ? wk : w[k + 1];
            const int64_t rn = r0 + 4 < rows ? r0 + 4 : 0;
            const size_t next_bytes = kvz_ggml_row_bytes(wn->type, (uint64_t)cols);
            next.n = wn->rows - rn < 4 ? (int)(wn->rows - rn) : 4;
            next.block_bytes = next_bytes / (size_t)nb;
            for (int r = 0; r < next.n; r++)
                next.row[r] = (const uint8_t *)wn->data + (size_t)(rn + r) * next_bytes;
        }
#endif
        for (int32_t i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * cols;
            float dots[4];
#ifdef KVZ_MATVEC_AVX2
            if (kvz_cpu_matvec_has_fast_path(wk->type)) {
                const float *xs = xsum + (size_t)i * nb;
                if (i == 1) /* the later rows of x find the weights in cache */
                    next.n = 0;
                if (wk->type == KVZ_GGML_Q8_0)
                    rows_dot_q8_0(wr, nr, nb, xi, xs, &next, dots);
                else if (wk->type == KVZ_GGML_Q4_0)
                    rows_dot_q4_0(wr, nr, nb, xi, xs, &next, dots);
                else
                    rows_dot_q4_1(wr, nr, nb, xi, xs, &next, dots);
            } else
#endif
            {
                for (int r = 0; r < nr; r++) {
                    kvz_dequantize_row(wk->type, wr[r], row, cols);
                    float s = 0;
                    for (int64_t c = 0; c < cols; c++)
                        s += row[c] * xi[c];
                    dots[r] = s;
                }
            }
            float *o = out[k] + (size_t)i * rows + r0;
            for (int r = 0; r < nr; r++)
                o[r] = accumulate ? o[r] + dots[r] : dots[r];
        }
    }
}

void kvz_cpu_matvec(int32_t count, float *const *out, const float *x, const kvz_weight *const *w, int32_t n,
                    int accumulate, float *scratch, int n_threads)
{
    if (count <= 0)
        return;
    const size_t per_thread = kvz_cpu_matvec_thread_floats(w[0]->cols, n);
#pragma omp parallel num_threads(n_threads)
    kvz_cpu_matvec_team(count, out, x, w, n, accumulate, scratch + (size_t)omp_get_thread_num() * per_thread);
}
