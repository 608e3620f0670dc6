/* elementwise.c — embedding gather, row gather, RMSNorm, bias, SwiGLU and the KV-cache append on the CPU. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"

#include <math.h>
#include <string.h>

void kvz_cpu_embed(float *out, const kvz_weight *table, const int32_t *tokens, int32_t n,
                   int n_threads)
{
    size_t row_bytes = kvz_ggml_row_bytes(table->type, (uint64_t)table->cols);
#pragma omp parallel for num_threads(n_threads) if (n > 16)
    for (int32_t i = 0; i < n; i++)
        kvz_dequantize_row(table->type, (const uint8_t *)table->data + (size_t)tokens[i] * row_bytes,
                           out + (size_t)i * table->cols, table->cols);
}

void kvz_cpu_gather_rows(float *dst, const float *src, const int32_t *idx, int32_t count, int32_t width,
                         int n_threads)
{
#pragma omp parallel for num_threads(n_threads) if (count > 256)
    for (int32_t i = 0; i < count; i++)
        memcpy(dst + (size_t)i * width, src + (size_t)idx[i] * width, (size_t)width * sizeof(float));
}

static void rmsnorm_row(float *oi, const float *xi, const float *weight, int32_t dim, float eps)
{
    double sum = 0.0;
    for (int32_t j = 0; j < dim; j++)
        sum += (double)xi[j] * xi[j];
    float scale = (float)(1.0 / sqrt(sum / dim + eps));
    for (int32_t j = 0; j < dim; j++)
        oi[j] = xi[j] * scale * weight[j];
}

void kvz_cpu_rmsnorm(float *out, const float *x, const float *weight, int32_t n, int32_t dim,
                     float eps, int n_threads)
{
    if (!kvz_cpu_worth_threads(n > 8, n_threads)) {
        for (int32_t i = 0; i < n; i++)
            rmsnorm_row(out + (size_t)i * dim, x + (size_t)i * dim, weight, dim, eps);
        return;
    }
#pragma omp parallel for num_threads(n_threads)
    for (int32_t i = 0; i < n; i++)
        rmsnorm_row(out + (size_t)i * dim, x + (size_t)i * dim, weight, dim, eps);
}

static void add_bias_row(float *row, const float *bias, int32_t cols)
{
    for (int32_t j = 0; j < cols; j++)
        row[j] += bias[j];
}

void kvz_cpu_add_bias(float *x, const float *bias, int32_t n, int32_t cols, int n_threads)
{
    if (!kvz_cpu_worth_threads((int64_t)n * cols > 65536, n_threads)) {
        for (int32_t i = 0; i < n; i++)
            add_bias_row(x + (size_t)i * cols, bias, cols);
        return;
    }
#pragma omp parallel for num_threads(n_threads)
    for (int32_t i = 0; i < n; i++)
        add_bias_row(x + (size_t)i * cols, bias, cols);
}

static inline float swiglu_one(float g, float u) { return g / (1.0f + expf(-g)) * u; }

void kvz_cpu_swiglu(float *out, const float *gate, const float *up, int64_t count, int n_threads)
{
    if (!kvz_cpu_worth_threads(count > 65536, n_threads)) {
        for (int64_t i = 0; i < count; i++)
            out[i] = swiglu_one(gate[i], up[i]);
        return;
    }
#pragma omp parallel for num_threads(n_threads)
    for (int64_t i = 0; i < count; i++)
        out[i] = swiglu_one(gate[i], up[i]);
}

void kvz_cpu_kv_append(float *k_cache, float *v_cache, const float *k, const float *v,
                       const kvz_attention_params *p)
{
    size_t hd = (size_t)p->head_dim, row = (size_t)p->n_kv_heads * hd;
    for (int32_t h = 0; h < p->n_kv_heads; h++) {
        size_t first = p->head_base ? (size_t)p->head_base[h] + (size_t)p->head_rows[h]
                                    : (size_t)h * p->capacity + (size_t)p->pos0;
        float *kc = k_cache + first * hd;
        float *vc = v_cache + first * hd;
        for (int32_t i = 0; i < p->n; i++) {
            memcpy(kc + (size_t)i * hd, k + (size_t)i * row + (size_t)h * hd, hd * sizeof(float));
            memcpy(vc + (size_t)i * hd, v + (size_t)i * row + (size_t)h * hd, hd * sizeof(float));
        }
    }
}
