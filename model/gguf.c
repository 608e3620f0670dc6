/*
 * gguf.c — GGUF header parsing and validation.
 *
 * Parsing walks the header once with a bounds-checked cursor. Every failure
 * names the byte offset and the key or tensor being read, so a truncated
 * download or a corrupt file is diagnosable from the message alone.
 */
#include "model/gguf.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "kernels/ggml_types.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kvz reads GGUF in place and needs a little-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_NAME 1024 /* generous: ggml itself allows 64 */

typedef struct gguf_kv {
    char *key;          /* NUL-terminated copy */
    kvz_gguf_type type;
    const uint8_t *value; /* the value's first byte in the file */
    /* arrays */
    kvz_gguf_type elem_type;
    uint64_t count;
    const uint8_t *elems; /* first element */
} gguf_kv;

struct kvz_gguf {
    kvz_mapped_file file; /* owned when opened from a path */
    const uint8_t *bytes;
    size_t size;
    char *path;
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    kvz_gguf_tensor *tensors;
};

typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
} cursor;

static const size_t value_sizes[KVZ_GGUF_TYPE_COUNT] = {
    [KVZ_GGUF_U8] = 1,  [KVZ_GGUF_I8] = 1,  [KVZ_GGUF_U16] = 2, [KVZ_GGUF_I16] = 2,
    [KVZ_GGUF_U32] = 4, [KVZ_GGUF_I32] = 4, [KVZ_GGUF_F32] = 4, [KVZ_GGUF_BOOL] = 1,
    [KVZ_GGUF_U64] = 8, [KVZ_GGUF_I64] = 8, [KVZ_GGUF_F64] = 8,
};

const char *kvz_gguf_type_name(kvz_gguf_type t)
{
    static const char *names[KVZ_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < KVZ_GGUF_TYPE_COUNT ? names[t] : "invalid";
}

static int need(const cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return kvz_errorf(KVZ_ERR_FORMAT,
                          "truncated at byte %zu: %s needs %llu bytes, %zu remain", c->pos, what,
                          (unsigned long long)n, c->size - c->pos);
    return KVZ_OK;
}

static int read_bytes(cursor *c, void *dst, size_t n, const char *what)
{
    KVZ_TRY(need(c, n, what));
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return KVZ_OK;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) { return read_bytes(c, v, 4, what); }
static int read_u64(cursor *c, uint64_t *v, const char *what) { return read_bytes(c, v, 8, what); }

/* A string: u64 length + bytes. Returns a view. */
static int read_str(cursor *c, kvz_gguf_str *s, const char *what)
{
    uint64_t len;
    KVZ_TRY(read_u64(c, &len, what));
    KVZ_TRY(need(c, len, what));
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return KVZ_OK;
}

/* A key or tensor name: a string copied out NUL-terminated. */
static int read_name(cursor *c, char **out, const char *what)
{
    size_t at = c->pos;
    kvz_gguf_str s_view;
    KVZ_TRY(read_str(c, &s_view, what));
    const kvz_gguf_str *s = &s_view;
    if (s->len == 0 || s->len > GGUF_MAX_NAME)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s at byte %zu has length %llu (allowed 1..%d)", what,
                          at, (unsigned long long)s->len, GGUF_MAX_NAME);
    if (memchr(s->ptr, '\0', (size_t)s->len))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s at byte %zu contains a NUL byte", what, at);
    char *p = malloc((size_t)s->len + 1);
    if (!p)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading %s", what);
    memcpy(p, s->ptr, (size_t)s->len);
    p[s->len] = '\0';
    *out = p;
    return KVZ_OK;
}

/* Skip one value of `type` (not an array), checking it lies inside the file. */
static int skip_scalar(cursor *c, kvz_gguf_type type, const char *key)
{
    if (type == KVZ_GGUF_STRING) {
        kvz_gguf_str s;
        return read_str(c, &s, key);
    }
    KVZ_TRY(need(c, value_sizes[type], key));
    if (type == KVZ_GGUF_BOOL && c->base[c->pos] > 1)
        return kvz_errorf(KVZ_ERR_FORMAT, "key '%s': bool value %u at byte %zu is not 0 or 1", key,
                          c->base[c->pos], c->pos);
    c->pos += value_sizes[type];
    return KVZ_OK;
}

static int parse_kv(cursor *c, gguf_kv *kv)
{
    KVZ_TRY(read_name(c, &kv->key, "metadata key"));
    uint32_t type;
    KVZ_TRY(read_u32(c, &type, kv->key));
    if (type >= KVZ_GGUF_TYPE_COUNT)
        return kvz_errorf(KVZ_ERR_FORMAT, "key '%s': unknown value type %u", kv->key, type);
    kv->type = (kvz_gguf_type)type;
    kv->value = c->base + c->pos;
    if (kv->type != KVZ_GGUF_ARRAY)
        return skip_scalar(c, kv->type, kv->key);

    uint32_t elem_type;
    KVZ_TRY(read_u32(c, &elem_type, kv->key));
    KVZ_TRY(read_u64(c, &kv->count, kv->key));
    if (elem_type >= KVZ_GGUF_TYPE_COUNT)
        return kvz_errorf(KVZ_ERR_FORMAT, "key '%s': unknown array element type %u", kv->key,
                          elem_type);
    if (elem_type == KVZ_GGUF_ARRAY)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "key '%s': nested arrays are not supported", kv->key);
    kv->elem_type = (kvz_gguf_type)elem_type;
    kv->elems = c->base + c->pos;
    if (kv->elem_type == KVZ_GGUF_STRING) {
        /* each string takes at least its 8-byte length: rejects absurd counts early */
        KVZ_TRY(need(c, kv->count > UINT64_MAX / 8 ? UINT64_MAX : kv->count * 8, kv->key));
        for (uint64_t i = 0; i < kv->count; i++)
            KVZ_TRY(skip_scalar(c, KVZ_GGUF_STRING, kv->key));
        return KVZ_OK;
    }
    size_t esz = value_sizes[kv->elem_type];
    if (kv->count > UINT64_MAX / esz)
        return kvz_errorf(KVZ_ERR_FORMAT, "key '%s': array count %llu overflows", kv->key,
                          (unsigned long long)kv->count);
    KVZ_TRY(need(c, kv->count * esz, kv->key));
    if (kv->elem_type == KVZ_GGUF_BOOL) {
        for (uint64_t i = 0; i < kv->count; i++)
            KVZ_TRY(skip_scalar(c, KVZ_GGUF_BOOL, kv->key));
    } else {
        c->pos += (size_t)(kv->count * esz);
    }
    return KVZ_OK;
}

static int parse_tensor_info(cursor *c, kvz_gguf_tensor *t)
{
    KVZ_TRY(read_name(c, &t->name, "tensor name"));
    KVZ_TRY(read_u32(c, &t->n_dims, t->name));
    if (t->n_dims < 1 || t->n_dims > KVZ_GGUF_MAX_DIMS)
        return kvz_errorf(KVZ_ERR_FORMAT, "tensor '%s': %u dimensions (allowed 1..%d)", t->name,
                          t->n_dims, KVZ_GGUF_MAX_DIMS);
    t->n_elems = 1;
    for (uint32_t d = 0; d < KVZ_GGUF_MAX_DIMS; d++) {
        t->dims[d] = 1;
        if (d >= t->n_dims)
            continue;
        KVZ_TRY(read_u64(c, &t->dims[d], t->name));
        if (t->dims[d] == 0 || t->dims[d] > (uint64_t)INT64_MAX / t->n_elems)
            return kvz_errorf(KVZ_ERR_FORMAT, "tensor '%s': dimension %u is %llu (absurd size)",
                              t->name, d, (unsigned long long)t->dims[d]);
        t->n_elems *= t->dims[d];
    }
    KVZ_TRY(read_u32(c, &t->type, t->name));
    KVZ_TRY(read_u64(c, &t->offset, t->name));
    kvz_ggml_type_info info = kvz_ggml_type_info_of(t->type);
    if (strcmp(info.name, "unknown") == 0)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "tensor '%s': unknown tensor type %u", t->name,
                          t->type);
    if (info.block_elems == 0) {
        t->size = 0; /* known to ggml but not readable by kvz: refused on use */
        return KVZ_OK;
    }
    if (t->dims[0] % info.block_elems != 0)
        return kvz_errorf(KVZ_ERR_FORMAT,
                          "tensor '%s': row length %llu is not a multiple of the %s block (%u)",
                          t->name, (unsigned long long)t->dims[0], info.name, info.block_elems);
    uint64_t blocks = t->n_elems / info.block_elems;
    if (blocks > UINT64_MAX / info.block_bytes)
        return kvz_errorf(KVZ_ERR_FORMAT, "tensor '%s': size overflows", t->name);
    t->size = blocks * info.block_bytes;
    return KVZ_OK;
}

static int check_unique_keys(const kvz_gguf *g)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[i].key, g->kv[j].key) == 0)
                return kvz_errorf(KVZ_ERR_FORMAT, "duplicate metadata key '%s'", g->kv[i].key);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[i].name, g->tensors[j].name) == 0)
                return kvz_errorf(KVZ_ERR_FORMAT, "duplicate tensor name '%s'",
                                  g->tensors[i].name);
    return KVZ_OK;
}

static int parse(kvz_gguf *g)
{
    cursor c = {g->bytes, g->size, 0};
    char magic[4];
    KVZ_TRY(read_bytes(&c, magic, 4, "magic"));
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "not a GGUF file (magic %02x %02x %02x %02x)",
                          (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2],
                          (uint8_t)magic[3]);
    KVZ_TRY(read_u32(&c, &g->version, "version"));
    if (g->version >= 0x01000000u)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    if (g->version < 2 || g->version > 3)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "GGUF version %u is not supported (2 and 3 are)",
                          g->version);
    KVZ_TRY(read_u64(&c, &g->n_tensors, "tensor count"));
    KVZ_TRY(read_u64(&c, &g->n_kv, "metadata count"));
    /* every kv takes >= 12 bytes and every tensor info >= 24: bound the counts
     * by the file size before allocating anything */
    if (g->n_kv > g->size / 12 || g->n_tensors > g->size / 24)
        return kvz_errorf(KVZ_ERR_FORMAT, "absurd counts: %llu tensors, %llu metadata keys in %zu bytes",
                          (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv, g->size);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory for the GGUF header");
    for (uint64_t i = 0; i < g->n_kv; i++)
        KVZ_TRY(parse_kv(&c, &g->kv[i]));

    g->alignment = KVZ_GGUF_DEFAULT_ALIGNMENT;
    int64_t ia = kvz_gguf_find_key(g, "general.alignment");
    if (ia >= 0) {
        uint32_t a;
        if (g->kv[ia].type != KVZ_GGUF_U32)
            return kvz_errorf(KVZ_ERR_FORMAT, "general.alignment has type %s, expected u32",
                              kvz_gguf_type_name(g->kv[ia].type));
        memcpy(&a, g->kv[ia].value, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return kvz_errorf(KVZ_ERR_FORMAT, "general.alignment %u is not a power of two", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++)
        KVZ_TRY(parse_tensor_info(&c, &g->tensors[i]));
    KVZ_TRY(check_unique_keys(g));

    uint64_t data_start = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && data_start > g->size)
        return kvz_errorf(KVZ_ERR_FORMAT, "truncated: the tensor data section would start at byte "
                          "%llu of a %zu-byte file", (unsigned long long)data_start, g->size);
    uint64_t data_size = data_start <= g->size ? g->size - data_start : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        kvz_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return kvz_errorf(KVZ_ERR_FORMAT, "tensor '%s': offset %llu is not aligned to %llu",
                              t->name, (unsigned long long)t->offset,
                              (unsigned long long)g->alignment);
        if (t->offset > data_size || t->size > data_size - t->offset)
            return kvz_errorf(KVZ_ERR_FORMAT,
                              "tensor '%s': data [%llu, +%llu) lies past the end of the file "
                              "(data section is %llu bytes; file truncated?)",
                              t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                              (unsigned long long)data_size);
        t->data = g->bytes + data_start + t->offset;
    }
    return KVZ_OK;
}

static int finish_open(kvz_gguf *g, kvz_gguf **out)
{
    int rc = parse(g);
    if (rc != KVZ_OK) {
        kvz_error_context(rc, "%s", g->path);
        kvz_gguf_close(g);
        return rc;
    }
    *out = g;
    return KVZ_OK;
}

int kvz_gguf_open(kvz_gguf **out, const char *path)
{
    *out = NULL;
    kvz_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    int rc = kvz_mapped_file_open(&g->file, path);
    if (rc != KVZ_OK) {
        kvz_gguf_close(g);
        return rc;
    }
    g->bytes = g->file.data;
    g->size = g->file.size;
    return finish_open(g, out);
}

int kvz_gguf_open_memory(kvz_gguf **out, const void *data, size_t size)
{
    *out = NULL;
    kvz_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup("(memory)"))) {
        free(g);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    g->bytes = data;
    g->size = size;
    return finish_open(g, out);
}

void kvz_gguf_close(kvz_gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].key);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    kvz_mapped_file_close(&g->file);
    free(g->path);
    free(g);
}

void kvz_gguf_release(const kvz_gguf *g)
{
    if (g->file.data) /* read-only and private: nothing is lost */
        (void)madvise((void *)g->file.data, g->file.size, MADV_DONTNEED);
}

uint32_t kvz_gguf_version(const kvz_gguf *g) { return g->version; }
uint64_t kvz_gguf_alignment(const kvz_gguf *g) { return g->alignment; }
const char *kvz_gguf_path(const kvz_gguf *g) { return g->path; }

const uint8_t *kvz_gguf_bytes(const kvz_gguf *g, size_t *size)
{
    *size = g->size;
    return g->bytes;
}

uint64_t kvz_gguf_kv_count(const kvz_gguf *g) { return g->n_kv; }
const char *kvz_gguf_kv_key(const kvz_gguf *g, uint64_t i) { return g->kv[i].key; }
kvz_gguf_type kvz_gguf_kv_type(const kvz_gguf *g, uint64_t i) { return g->kv[i].type; }

int64_t kvz_gguf_find_key(const kvz_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0)
            return (int64_t)i;
    return -1;
}

static int find_kv(const kvz_gguf *g, const char *key, const gguf_kv **kv)
{
    int64_t i = kvz_gguf_find_key(g, key);
    if (i < 0)
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", g->path, key);
    *kv = &g->kv[i];
    return KVZ_OK;
}

static int wrong_type(const kvz_gguf *g, const gguf_kv *kv, const char *expected)
{
    return kvz_errorf(KVZ_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected %s", g->path,
                      kv->key, kvz_gguf_type_name(kv->type), expected);
}

/* Any integer value as a signed 128-bit-safe pair (is_negative, magnitude). */
static int integer_value(const gguf_kv *kv, int *negative, uint64_t *magnitude)
{
    const uint8_t *p = kv->value;
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 1;
    switch (kv->type) {
    case KVZ_GGUF_U8: u = p[0]; is_signed = 0; break;
    case KVZ_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); u = v; is_signed = 0; break; }
    case KVZ_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); u = v; is_signed = 0; break; }
    case KVZ_GGUF_U64: memcpy(&u, p, 8); is_signed = 0; break;
    case KVZ_GGUF_I8: s = (int8_t)p[0]; break;
    case KVZ_GGUF_I16: { int16_t v; memcpy(&v, p, 2); s = v; break; }
    case KVZ_GGUF_I32: { int32_t v; memcpy(&v, p, 4); s = v; break; }
    case KVZ_GGUF_I64: memcpy(&s, p, 8); break;
    default: return 0;
    }
    if (is_signed) {
        *negative = s < 0;
        *magnitude = s < 0 ? (uint64_t)(-(s + 1)) + 1 : (uint64_t)s;
    } else {
        *negative = 0;
        *magnitude = u;
    }
    return 1;
}

/* The integer value of `key`, whatever its integer type. */
static int find_integer(const kvz_gguf *g, const char *key, int *neg, uint64_t *mag)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (!integer_value(kv, neg, mag))
        return wrong_type(g, kv, "an integer");
    return KVZ_OK;
}

int kvz_gguf_get_u32(const kvz_gguf *g, const char *key, uint32_t *out)
{
    int neg = 0;
    uint64_t mag = 0;
    KVZ_TRY(find_integer(g, key, &neg, &mag));
    if (neg || mag > UINT32_MAX)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: metadata key '%s' = %s%llu does not fit in u32",
                          g->path, key, neg ? "-" : "", (unsigned long long)mag);
    *out = (uint32_t)mag;
    return KVZ_OK;
}

int kvz_gguf_get_i64(const kvz_gguf *g, const char *key, int64_t *out)
{
    int neg = 0;
    uint64_t mag = 0;
    KVZ_TRY(find_integer(g, key, &neg, &mag));
    if (mag > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: metadata key '%s' does not fit in i64", g->path, key);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return KVZ_OK;
}

int kvz_gguf_get_f32(const kvz_gguf *g, const char *key, float *out)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type == KVZ_GGUF_F32) {
        memcpy(out, kv->value, 4);
        return KVZ_OK;
    }
    if (kv->type == KVZ_GGUF_F64) {
        double d;
        memcpy(&d, kv->value, 8);
        *out = (float)d;
        return KVZ_OK;
    }
    int neg;
    uint64_t mag;
    if (integer_value(kv, &neg, &mag)) {
        *out = neg ? -(float)mag : (float)mag;
        return KVZ_OK;
    }
    return wrong_type(g, kv, "a number");
}

int kvz_gguf_get_bool(const kvz_gguf *g, const char *key, int *out)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type != KVZ_GGUF_BOOL)
        return wrong_type(g, kv, "bool");
    *out = kv->value[0] != 0;
    return KVZ_OK;
}

static kvz_gguf_str str_at(const uint8_t *p)
{
    kvz_gguf_str s;
    memcpy(&s.len, p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

int kvz_gguf_get_str(const kvz_gguf *g, const char *key, kvz_gguf_str *out)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type != KVZ_GGUF_STRING)
        return wrong_type(g, kv, "string");
    *out = str_at(kv->value);
    return KVZ_OK;
}

int kvz_gguf_get_array_info(const kvz_gguf *g, const char *key, kvz_gguf_type *elem_type,
                            uint64_t *count)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type != KVZ_GGUF_ARRAY)
        return wrong_type(g, kv, "array");
    *elem_type = kv->elem_type;
    *count = kv->count;
    return KVZ_OK;
}

int kvz_gguf_get_array_data(const kvz_gguf *g, const char *key, kvz_gguf_type elem_type,
                            const void **data, uint64_t *count)
{
    const gguf_kv *kv = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type != KVZ_GGUF_ARRAY || kv->elem_type != elem_type)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: metadata key '%s' is not an array of %s", g->path,
                          key, kvz_gguf_type_name(elem_type));
    KVZ_ASSERT(elem_type != KVZ_GGUF_STRING);
    *data = kv->elems;
    *count = kv->count;
    return KVZ_OK;
}

int kvz_gguf_get_str_array(const kvz_gguf *g, const char *key, kvz_gguf_str **out, uint64_t *count)
{
    const gguf_kv *kv = NULL;
    *out = NULL;
    KVZ_TRY(find_kv(g, key, &kv));
    if (kv->type != KVZ_GGUF_ARRAY || kv->elem_type != KVZ_GGUF_STRING)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: metadata key '%s' is not an array of strings",
                          g->path, key);
    kvz_gguf_str *v = malloc((kv->count ? kv->count : 1) * sizeof *v);
    if (!v)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading '%s'", key);
    const uint8_t *p = kv->elems; /* validated by parse_kv */
    for (uint64_t i = 0; i < kv->count; i++) {
        v[i] = str_at(p);
        p += 8 + v[i].len;
    }
    *out = v;
    *count = kv->count;
    return KVZ_OK;
}

uint64_t kvz_gguf_tensor_count(const kvz_gguf *g) { return g->n_tensors; }

const kvz_gguf_tensor *kvz_gguf_tensor_at(const kvz_gguf *g, uint64_t i) { return &g->tensors[i]; }

const kvz_gguf_tensor *kvz_gguf_find_tensor(const kvz_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}
