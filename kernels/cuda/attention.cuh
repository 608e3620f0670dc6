/*
 * attention.cuh — what the two attention kernels share: their arguments and
 * the merge of key-range splits. attention.cu holds the CUDA-core kernel
 * (decode, short chunks) and picks; attention_tc.cu the tensor-core one
 * (prefill chunks). Both write, per split, the same partial results.
 */
#ifndef KVZ_KERNELS_CUDA_ATTENTION_CUH
#define KVZ_KERNELS_CUDA_ATTENTION_CUH

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/tc_tile.cuh"

struct attn_args {
    float *out;
    float *partials; /* (splits, n, n_heads, head_dim + 2) when splits > 1 */
    unsigned int *split_done; /* the CUDA-core kernel's split counters (merge_if_last); NULL for the other */
    const float *q, *kc, *vc;
    const int64_t *head_base; /* ragged layout, or NULL (see kvz_attention_params) */
    const int32_t *head_rows;
    int n, pos0, n_heads, n_kv, capacity, bq, split_len, splits;
    float scale;
};

/* Queries per block of the tensor-core kernel, as rows of (query, group head). */
#define TC_ROWS TC_TILE
/* A block of the tensor-core kernel for head size hd: its dynamic shared memory. */
size_t cuda_attention_tc_smem(int hd);
/* Launch it on grid (query tiles, KV heads, splits); hd is 64, 96 or 128. */
int cuda_attention_tc_launch(cuda_impl *c, const attn_args *a, int hd, dim3 grid);

#endif
