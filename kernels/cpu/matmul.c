/*
 * matmul.c — out (n, rows) = x (n, cols) · Wᵀ through OpenBLAS.
 *
 * f32 weights go to sgemm directly. Quantized weights are decoded a tile of
 * rows at a time into a per-thread f32 buffer and multiplied from there, so a
 * model never needs its f32 copy in memory. Threads split the output columns
 * (weight rows); each sgemm runs single-threaded.
 */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"

#include <cblas.h>
#include <omp.h>
#include "common/error.h"

#define TILE_ROWS 128

static void matmul_rows(float *out, const float *x, const kvz_weight *w, int32_t n, int accumulate,
                        int64_t r0, int64_t r1, float *tile)
{
    const float beta = accumulate ? 1.0f : 0.0f;
    if (w->type == KVZ_GGML_F32) {
        const float *wf = (const float *)w->data + r0 * w->cols;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(r1 - r0), (int)w->cols, 1.0f,
                    x, (int)w->cols, wf, (int)w->cols, beta, out + r0, (int)w->rows);
        return;
    }
    size_t row_bytes = kvz_ggml_row_bytes(w->type, (uint64_t)w->cols);
    for (int64_t t0 = r0; t0 < r1; t0 += TILE_ROWS) {
        int64_t t1 = t0 + TILE_ROWS < r1 ? t0 + TILE_ROWS : r1;
        for (int64_t r = t0; r < t1; r++)
            kvz_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * row_bytes,
                               tile + (r - t0) * w->cols, w->cols);
        if (n == 1) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(t1 - t0), (int)w->cols, 1.0f, tile,
                        (int)w->cols, x, 1, beta, out + t0, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(t1 - t0), (int)w->cols,
                        1.0f, x, (int)w->cols, tile, (int)w->cols, beta, out + t0, (int)w->rows);
        }
    }
}

size_t kvz_cpu_matmul_scratch_floats(const kvz_weight *w, int n_threads)
{
    return w->type == KVZ_GGML_F32 ? 0 : (size_t)n_threads * TILE_ROWS * (size_t)w->cols;
}

void kvz_cpu_matmul(float *out, const float *x, const kvz_weight *w, int32_t n, int accumulate,
                    float *scratch, int n_threads)
{
    int64_t rows = w->rows;
    /* small products are not worth waking threads for */
    int threads = (int64_t)n * rows * w->cols < (1 << 16) ? 1 : n_threads;
    int quantized = w->type != KVZ_GGML_F32;
    KVZ_ASSERT(!quantized || scratch);
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
        /* split on multiples of 16 rows so slices stay cache-line friendly */
        int64_t per = ((rows + nt - 1) / nt + 15) / 16 * 16;
        int64_t r0 = it * per, r1 = r0 + per < rows ? r0 + per : rows;
        float *tile = quantized ? scratch + (size_t)it * TILE_ROWS * (size_t)w->cols : NULL;
        if (r0 < r1)
            matmul_rows(out, x, w, n, accumulate, r0, r1, tile);
    }
}
