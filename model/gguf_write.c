/* gguf_write.c — serialise metadata and tensors into a GGUF v3 file. */
#include "model/gguf_write.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/file_util.h"
#include "kernels/ggml_types.h"
#include "model/gguf.h"

#include <stdlib.h>
#include <string.h>

typedef struct writer_tensor {
    char *name;
    uint32_t n_dims;
    uint64_t dims[KVZ_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t size;
    const void *data;
    kvz_gguf_fill_fn fill;
    void *fill_ctx;
} writer_tensor;

struct kvz_gguf_writer {
    kvz_buffer kv;
    uint64_t n_kv;
    char **keys;
    writer_tensor *tensors;
    uint64_t n_tensors;
};

kvz_gguf_writer *kvz_gguf_writer_new(void) { return calloc(1, sizeof(kvz_gguf_writer)); }

void kvz_gguf_writer_free(kvz_gguf_writer *w)
{
    if (!w)
        return;
    kvz_buffer_free(&w->kv);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

static void append_str(kvz_buffer *b, const char *s, uint64_t len)
{
    kvz_buffer_append_u64(b, len);
    kvz_buffer_append(b, s, (size_t)len);
}

/* Start a key: check it is new, remember it, write key + type. */
static int begin_kv(kvz_gguf_writer *w, const char *key, kvz_gguf_type type)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return kvz_errorf(KVZ_ERR_ARG, "gguf writer: key '%s' set twice", key);
    char **keys = realloc(w->keys, (w->n_kv + 1) * sizeof *keys);
    if (!keys)
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    w->keys = keys;
    if (!(w->keys[w->n_kv] = strdup(key)))
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    w->n_kv++;
    append_str(&w->kv, key, strlen(key));
    kvz_buffer_append_u32(&w->kv, (uint32_t)type);
    return KVZ_OK;
}

static int set_scalar(kvz_gguf_writer *w, const char *key, kvz_gguf_type type, const void *v,
                      size_t n)
{
    KVZ_TRY(begin_kv(w, key, type));
    kvz_buffer_append(&w->kv, v, n);
    return KVZ_OK;
}

int kvz_gguf_writer_set_u32(kvz_gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, KVZ_GGUF_U32, &v, 4);
}

int kvz_gguf_writer_set_i32(kvz_gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, KVZ_GGUF_I32, &v, 4);
}

int kvz_gguf_writer_set_u64(kvz_gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, KVZ_GGUF_U64, &v, 8);
}

int kvz_gguf_writer_set_f32(kvz_gguf_writer *w, const char *key, float v)
{
    return set_scalar(w, key, KVZ_GGUF_F32, &v, 4);
}

int kvz_gguf_writer_set_bool(kvz_gguf_writer *w, const char *key, int v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, KVZ_GGUF_BOOL, &b, 1);
}

int kvz_gguf_writer_set_str(kvz_gguf_writer *w, const char *key, const char *v)
{
    KVZ_TRY(begin_kv(w, key, KVZ_GGUF_STRING));
    append_str(&w->kv, v, strlen(v));
    return KVZ_OK;
}

static void begin_array(kvz_gguf_writer *w, kvz_gguf_type elem, uint64_t n)
{
    kvz_buffer_append_u32(&w->kv, (uint32_t)elem);
    kvz_buffer_append_u64(&w->kv, n);
}

int kvz_gguf_writer_set_str_array(kvz_gguf_writer *w, const char *key, const char *const *v,
                                  const uint64_t *lens, uint64_t n)
{
    KVZ_TRY(begin_kv(w, key, KVZ_GGUF_ARRAY));
    begin_array(w, KVZ_GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++)
        append_str(&w->kv, v[i], lens ? lens[i] : strlen(v[i]));
    return KVZ_OK;
}

int kvz_gguf_writer_set_i32_array(kvz_gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    KVZ_TRY(begin_kv(w, key, KVZ_GGUF_ARRAY));
    begin_array(w, KVZ_GGUF_I32, n);
    kvz_buffer_append(&w->kv, v, (size_t)n * 4);
    return KVZ_OK;
}

int kvz_gguf_writer_set_f32_array(kvz_gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    KVZ_TRY(begin_kv(w, key, KVZ_GGUF_ARRAY));
    begin_array(w, KVZ_GGUF_F32, n);
    kvz_buffer_append(&w->kv, v, (size_t)n * 4);
    return KVZ_OK;
}

int kvz_gguf_writer_add_tensor(kvz_gguf_writer *w, const char *name, uint32_t n_dims,
                               const uint64_t *dims, uint32_t type, const void *data,
                               kvz_gguf_fill_fn fill, void *fill_ctx)
{
    if (n_dims < 1 || n_dims > KVZ_GGUF_MAX_DIMS || (!data == !fill))
        return kvz_errorf(KVZ_ERR_ARG, "gguf writer: bad arguments for tensor '%s'", name);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        n *= dims[d];
    size_t row = kvz_ggml_row_bytes(type, dims[0]);
    if (row == 0)
        return kvz_errorf(KVZ_ERR_ARG, "gguf writer: tensor '%s': type %u cannot hold rows of %llu",
                          name, type, (unsigned long long)dims[0]);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return kvz_errorf(KVZ_ERR_ARG, "gguf writer: tensor '%s' added twice", name);
    writer_tensor *t = realloc(w->tensors, (w->n_tensors + 1) * sizeof *t);
    if (!t)
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    w->tensors = t;
    t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < KVZ_GGUF_MAX_DIMS; d++)
        t->dims[d] = d < n_dims ? dims[d] : 1;
    t->type = type;
    t->size = (uint64_t)row * (n / dims[0]);
    t->data = data;
    t->fill = fill;
    t->fill_ctx = fill_ctx;
    w->n_tensors++;
    return KVZ_OK;
}

#define WRITER_ALIGNMENT KVZ_GGUF_DEFAULT_ALIGNMENT

static uint64_t align_up(uint64_t x) { return (x + WRITER_ALIGNMENT - 1) / WRITER_ALIGNMENT * WRITER_ALIGNMENT; }

static int write_tensor_data(kvz_atomic_file *f, const writer_tensor *t, uint64_t index)
{
    if (t->data)
        return kvz_atomic_file_write(f, t->data, t->size);
    /* fill in pieces of at most 64 MiB of whole rows to bound memory */
    uint64_t row = kvz_ggml_row_bytes(t->type, t->dims[0]);
    uint64_t rows_per_piece = (64u << 20) / row ? (64u << 20) / row : 1;
    uint64_t piece = rows_per_piece * row < t->size ? rows_per_piece * row : t->size;
    uint8_t *buf = malloc(piece);
    if (!buf)
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    int rc = KVZ_OK;
    for (uint64_t off = 0; off < t->size && rc == KVZ_OK; off += piece) {
        uint64_t n = t->size - off < piece ? t->size - off : piece;
        rc = t->fill(t->fill_ctx, index, buf, n);
        if (rc == KVZ_OK)
            rc = kvz_atomic_file_write(f, buf, n);
    }
    free(buf);
    return rc;
}

int kvz_gguf_writer_write(kvz_gguf_writer *w, const char *path)
{
    kvz_buffer head = {0};
    kvz_buffer_append(&head, "GGUF", 4);
    kvz_buffer_append_u32(&head, 3);
    kvz_buffer_append_u64(&head, w->n_tensors);
    kvz_buffer_append_u64(&head, w->n_kv);
    kvz_buffer_append(&head, w->kv.data, w->kv.len);
    uint64_t offset = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        append_str(&head, t->name, strlen(t->name));
        kvz_buffer_append_u32(&head, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            kvz_buffer_append_u64(&head, t->dims[d]);
        kvz_buffer_append_u32(&head, t->type);
        kvz_buffer_append_u64(&head, offset);
        offset = align_up(offset + t->size);
    }
    static const uint8_t zeros[WRITER_ALIGNMENT];
    kvz_buffer_append(&head, zeros, (size_t)(align_up(head.len) - head.len));
    if (head.failed || w->kv.failed) {
        kvz_buffer_free(&head);
        return kvz_errorf(KVZ_ERR_NOMEM, "gguf writer: out of memory");
    }

    kvz_atomic_file f;
    int rc = kvz_atomic_file_open(&f, path);
    if (rc == KVZ_OK)
        rc = kvz_atomic_file_write(&f, head.data, head.len);
    kvz_buffer_free(&head);
    for (uint64_t i = 0; i < w->n_tensors && rc == KVZ_OK; i++) {
        rc = write_tensor_data(&f, &w->tensors[i], i);
        uint64_t pad = align_up(w->tensors[i].size) - w->tensors[i].size;
        if (rc == KVZ_OK && i + 1 < w->n_tensors)
            rc = kvz_atomic_file_write(&f, zeros, pad);
    }
    if (rc == KVZ_OK)
        return kvz_atomic_file_commit(&f);
    kvz_atomic_file_abort(&f);
    return rc;
}
