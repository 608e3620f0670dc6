/* ggml_types.c — names and block sizes of the GGUF tensor types kvz reads. */
#include "kernels/ggml_types.h"

#include <strings.h>

kvz_ggml_type_info kvz_ggml_type_info_of(uint32_t type)
{
    switch (type) {
    case KVZ_GGML_F32: return (kvz_ggml_type_info){"F32", 1, 4};
    case KVZ_GGML_F16: return (kvz_ggml_type_info){"F16", 1, 2};
    case KVZ_GGML_BF16: return (kvz_ggml_type_info){"BF16", 1, 2};
    case KVZ_GGML_Q4_0: return (kvz_ggml_type_info){"Q4_0", KVZ_QK, sizeof(kvz_block_q4_0)};
    case KVZ_GGML_Q4_1: return (kvz_ggml_type_info){"Q4_1", KVZ_QK, sizeof(kvz_block_q4_1)};
    case KVZ_GGML_Q5_0: return (kvz_ggml_type_info){"Q5_0", KVZ_QK, sizeof(kvz_block_q5_0)};
    case KVZ_GGML_Q5_1: return (kvz_ggml_type_info){"Q5_1", KVZ_QK, sizeof(kvz_block_q5_1)};
    case KVZ_GGML_Q8_0: return (kvz_ggml_type_info){"Q8_0", KVZ_QK, sizeof(kvz_block_q8_0)};
    case KVZ_GGML_Q4_K: return (kvz_ggml_type_info){"Q4_K", KVZ_QK_K, sizeof(kvz_block_q4_k)};
    case KVZ_GGML_Q5_K: return (kvz_ggml_type_info){"Q5_K", KVZ_QK_K, sizeof(kvz_block_q5_k)};
    case KVZ_GGML_Q6_K: return (kvz_ggml_type_info){"Q6_K", KVZ_QK_K, sizeof(kvz_block_q6_k)};
    /* Known to ggml, not read by kvz: named so errors can say which. */
    case KVZ_GGML_Q8_1: return (kvz_ggml_type_info){"Q8_1", 0, 0};
    case KVZ_GGML_Q2_K: return (kvz_ggml_type_info){"Q2_K", 0, 0};
    case KVZ_GGML_Q3_K: return (kvz_ggml_type_info){"Q3_K", 0, 0};
    case KVZ_GGML_Q8_K: return (kvz_ggml_type_info){"Q8_K", 0, 0};
    case 16: return (kvz_ggml_type_info){"IQ2_XXS", 0, 0};
    case 17: return (kvz_ggml_type_info){"IQ2_XS", 0, 0};
    case 18: return (kvz_ggml_type_info){"IQ3_XXS", 0, 0};
    case 19: return (kvz_ggml_type_info){"IQ1_S", 0, 0};
    case 20: return (kvz_ggml_type_info){"IQ4_NL", 0, 0};
    case 21: return (kvz_ggml_type_info){"IQ3_S", 0, 0};
    case 22: return (kvz_ggml_type_info){"IQ2_S", 0, 0};
    case 23: return (kvz_ggml_type_info){"IQ4_XS", 0, 0};
    case 24: return (kvz_ggml_type_info){"I8", 0, 0};
    case 25: return (kvz_ggml_type_info){"I16", 0, 0};
    case 26: return (kvz_ggml_type_info){"I32", 0, 0};
    case 27: return (kvz_ggml_type_info){"I64", 0, 0};
    case 28: return (kvz_ggml_type_info){"F64", 0, 0};
    case 29: return (kvz_ggml_type_info){"IQ1_M", 0, 0};
    case 34: return (kvz_ggml_type_info){"TQ1_0", 0, 0};
    case 35: return (kvz_ggml_type_info){"TQ2_0", 0, 0};
    case 39: return (kvz_ggml_type_info){"MXFP4", 0, 0};
    default: return (kvz_ggml_type_info){"unknown", 0, 0};
    }
}

size_t kvz_ggml_row_bytes(uint32_t type, uint64_t n)
{
    kvz_ggml_type_info info = kvz_ggml_type_info_of(type);
    if (info.block_elems == 0 || n % info.block_elems != 0)
        return 0;
    return (size_t)(n / info.block_elems) * info.block_bytes;
}

int kvz_ggml_type_from_name(const char *name)
{
    for (uint32_t t = 0; t <= KVZ_GGML_BF16; t++) {
        kvz_ggml_type_info info = kvz_ggml_type_info_of(t);
        if (info.block_elems && strcasecmp(info.name, name) == 0)
            return (int)t;
    }
    return -1;
}
