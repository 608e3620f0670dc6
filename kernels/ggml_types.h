/*
 * ggml_types.h — the tensor element types of GGUF files and their block
 * layouts, defined once for the C and CUDA dequantizers.
 *
 * Numbering and layouts follow ggml (docs/gguf.md, ggml-common.h). A quantized
 * row is a sequence of blocks; each block stores `block_elems` weights in
 * `block_bytes` bytes. Half-precision fields are raw fp16 bit patterns.
 */
#ifndef KVZ_KERNELS_GGML_TYPES_H
#define KVZ_KERNELS_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_ggml_type {
    KVZ_GGML_F32 = 0,
    KVZ_GGML_F16 = 1,
    KVZ_GGML_Q4_0 = 2,
    KVZ_GGML_Q4_1 = 3,
    KVZ_GGML_Q5_0 = 6,
    KVZ_GGML_Q5_1 = 7,
    KVZ_GGML_Q8_0 = 8,
    KVZ_GGML_Q8_1 = 9,
    KVZ_GGML_Q2_K = 10,
    KVZ_GGML_Q3_K = 11,
    KVZ_GGML_Q4_K = 12,
    KVZ_GGML_Q5_K = 13,
    KVZ_GGML_Q6_K = 14,
    KVZ_GGML_Q8_K = 15,
    KVZ_GGML_BF16 = 30,
} kvz_ggml_type;

#ifdef __cplusplus
#define KVZ_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KVZ_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define KVZ_QK 32   /* elements per block of the legacy types */
#define KVZ_QK_K 256 /* elements per super-block of the K types */
#define KVZ_K_SCALE_BYTES 12

typedef struct { uint16_t d; uint8_t qs[KVZ_QK / 2]; } kvz_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[KVZ_QK / 2]; } kvz_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[KVZ_QK / 2]; } kvz_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[KVZ_QK / 2]; } kvz_block_q5_1;
typedef struct { uint16_t d; int8_t qs[KVZ_QK]; } kvz_block_q8_0;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[KVZ_K_SCALE_BYTES]; /* 8 scales + 8 mins, 6 bits each */
    uint8_t qs[KVZ_QK_K / 2];
} kvz_block_q4_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[KVZ_K_SCALE_BYTES];
    uint8_t qh[KVZ_QK_K / 8];
    uint8_t qs[KVZ_QK_K / 2];
} kvz_block_q5_k;
typedef struct {
    uint8_t ql[KVZ_QK_K / 2];     /* low 4 bits */
    uint8_t qh[KVZ_QK_K / 4];     /* high 2 bits */
    int8_t scales[KVZ_QK_K / 16]; /* 8-bit sub-block scales */
    uint16_t d;                   /* super-block scale, stored last */
} kvz_block_q6_k;

KVZ_STATIC_ASSERT(sizeof(kvz_block_q4_0) == 18, "q4_0 block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q4_1) == 20, "q4_1 block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q5_0) == 22, "q5_0 block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q5_1) == 24, "q5_1 block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q8_0) == 34, "q8_0 block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q4_k) == 144, "q4_k block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q5_k) == 176, "q5_k block size");
KVZ_STATIC_ASSERT(sizeof(kvz_block_q6_k) == 210, "q6_k block size");

typedef struct kvz_ggml_type_info {
    const char *name;
    uint32_t block_elems; /* 0: a type kvz cannot read */
    uint32_t block_bytes;
} kvz_ggml_type_info;

/* Layout of `type`; block_elems == 0 for unknown or unsupported types. */
kvz_ggml_type_info kvz_ggml_type_info_of(uint32_t type);

/* The type named `name` ("Q4_K", case-insensitive), or -1. */
int kvz_ggml_type_from_name(const char *name);

/* Bytes of a row of `n` elements; 0 if n is not a whole number of blocks
 * or the type is unsupported. */
size_t kvz_ggml_row_bytes(uint32_t type, uint64_t n);

#endif
