/*
 * gguf.h — a reader for GGUF (v2, v3) model files that trusts nothing.
 *
 * kvz_gguf_open() maps the file and validates the whole header before it
 * returns: every string, array and tensor extent lies inside the file, no key
 * or tensor name repeats, tensor data is aligned and its size matches its
 * shape and type. After that, the getters cannot read out of bounds. Values are
 * zero-copy views into the mapping, valid until kvz_gguf_close().
 *
 * Layout reference: ggml docs/gguf.md. All integers are little-endian.
 */
#ifndef KVZ_MODEL_GGUF_H
#define KVZ_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_gguf_type {
    KVZ_GGUF_U8 = 0,
    KVZ_GGUF_I8 = 1,
    KVZ_GGUF_U16 = 2,
    KVZ_GGUF_I16 = 3,
    KVZ_GGUF_U32 = 4,
    KVZ_GGUF_I32 = 5,
    KVZ_GGUF_F32 = 6,
    KVZ_GGUF_BOOL = 7,
    KVZ_GGUF_STRING = 8,
    KVZ_GGUF_ARRAY = 9,
    KVZ_GGUF_U64 = 10,
    KVZ_GGUF_I64 = 11,
    KVZ_GGUF_F64 = 12,
    KVZ_GGUF_TYPE_COUNT
} kvz_gguf_type;

#define KVZ_GGUF_MAX_DIMS 4
#define KVZ_GGUF_DEFAULT_ALIGNMENT 32

/* A view of a string inside the file: not NUL-terminated. */
typedef struct kvz_gguf_str {
    const char *ptr;
    uint64_t len;
} kvz_gguf_str;

typedef struct kvz_gguf_tensor {
    char *name;                       /* NUL-terminated copy */
    uint32_t n_dims;                  /* 1..4 */
    uint64_t dims[KVZ_GGUF_MAX_DIMS]; /* dims[0] varies fastest; unused dims are 1 */
    uint32_t type;                    /* kvz_ggml_type */
    uint64_t n_elems;
    uint64_t offset; /* from the start of the data section */
    uint64_t size;   /* bytes */
    const void *data;
} kvz_gguf_tensor;

typedef struct kvz_gguf kvz_gguf;

/* Open and validate a file. Errors: KVZ_ERR_IO (cannot read), KVZ_ERR_FORMAT
 * (truncated or corrupt, the message says where), KVZ_ERR_UNSUPPORTED
 * (version, big-endian file, nested arrays, a tensor type ggml does not define). */
int kvz_gguf_open(kvz_gguf **out, const char *path);

/* The same over a caller-owned buffer that must outlive the handle. */
int kvz_gguf_open_memory(kvz_gguf **out, const void *data, size_t size);

void kvz_gguf_close(kvz_gguf *g);

uint32_t kvz_gguf_version(const kvz_gguf *g);
uint64_t kvz_gguf_alignment(const kvz_gguf *g);
const char *kvz_gguf_path(const kvz_gguf *g); /* "(memory)" for buffers */
const uint8_t *kvz_gguf_bytes(const kvz_gguf *g, size_t *size);
/* Give back the pages of the mapped file this process holds (a later read
 * maps them again from the file): a caller reading a whole file once, as a
 * hash does, then holds a few pages at a time, not the file. Nothing for a
 * buffer (_open_memory). */
void kvz_gguf_release(const kvz_gguf *g);

/* Metadata. Getters return KVZ_ERR_NOT_FOUND when the key is absent and
 * KVZ_ERR_FORMAT when it has an incompatible type; integer getters accept any
 * integer type whose value fits. */
uint64_t kvz_gguf_kv_count(const kvz_gguf *g);
const char *kvz_gguf_kv_key(const kvz_gguf *g, uint64_t i);
kvz_gguf_type kvz_gguf_kv_type(const kvz_gguf *g, uint64_t i);
int64_t kvz_gguf_find_key(const kvz_gguf *g, const char *key); /* -1 if absent */
int kvz_gguf_get_u32(const kvz_gguf *g, const char *key, uint32_t *out);
int kvz_gguf_get_i64(const kvz_gguf *g, const char *key, int64_t *out);
int kvz_gguf_get_f32(const kvz_gguf *g, const char *key, float *out);
int kvz_gguf_get_bool(const kvz_gguf *g, const char *key, int *out);
int kvz_gguf_get_str(const kvz_gguf *g, const char *key, kvz_gguf_str *out);

/* Arrays. Element type and count of an array-valued key. */
int kvz_gguf_get_array_info(const kvz_gguf *g, const char *key, kvz_gguf_type *elem_type,
                            uint64_t *count);
/* A numeric array as raw little-endian elements of `elem_type` (checked). */
int kvz_gguf_get_array_data(const kvz_gguf *g, const char *key, kvz_gguf_type elem_type,
                            const void **data, uint64_t *count);
/* A string array as views; `*out` is malloc'ed, free() it. */
int kvz_gguf_get_str_array(const kvz_gguf *g, const char *key, kvz_gguf_str **out,
                           uint64_t *count);

/* Tensors. */
uint64_t kvz_gguf_tensor_count(const kvz_gguf *g);
const kvz_gguf_tensor *kvz_gguf_tensor_at(const kvz_gguf *g, uint64_t i);
const kvz_gguf_tensor *kvz_gguf_find_tensor(const kvz_gguf *g, const char *name); /* NULL if absent */

/* Name of a value type ("u32", "string"...). */
const char *kvz_gguf_type_name(kvz_gguf_type t);

#endif
