/* test_gguf.c — the GGUF reader and writer, on good files and on every kind of bad one. */
#include "test_util.h"

#include "common/buffer.h"
#include "kernels/ggml_types.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/synth_model.h"

/* A small but complete file: every metadata type and three tensors. */
static void write_sample(const char *path)
{
    kvz_gguf_writer *w = kvz_gguf_writer_new();
    CHECK_OK(kvz_gguf_writer_set_str(w, "general.architecture", "llama"));
    CHECK_OK(kvz_gguf_writer_set_u32(w, "a.u32", 4000000000u));
    CHECK_OK(kvz_gguf_writer_set_i32(w, "a.i32", -7));
    CHECK_OK(kvz_gguf_writer_set_u64(w, "a.u64", 1ull << 40));
    CHECK_OK(kvz_gguf_writer_set_f32(w, "a.f32", 0.25f));
    CHECK_OK(kvz_gguf_writer_set_bool(w, "a.bool", 1));
    const char *strs[] = {"alpha", "", "gamma delta"};
    CHECK_OK(kvz_gguf_writer_set_str_array(w, "a.strs", strs, NULL, 3));
    int32_t ints[] = {1, -2, 3};
    CHECK_OK(kvz_gguf_writer_set_i32_array(w, "a.ints", ints, 3));
    float floats[] = {1.5f, -2.5f};
    CHECK_OK(kvz_gguf_writer_set_f32_array(w, "a.floats", floats, 2));
    assert_int_equal(kvz_gguf_writer_set_u32(w, "a.u32", 1), KVZ_ERR_ARG); /* twice */
    static float f32_data[2 * 3] = {1, 2, 3, 4, 5, 6};
    uint64_t dims_f32[2] = {3, 2};
    CHECK_OK(kvz_gguf_writer_add_tensor(w, "t.f32", 2, dims_f32, KVZ_GGML_F32, f32_data, NULL, NULL));
    static kvz_block_q8_0 q8[2];
    for (int i = 0; i < 32; i++)
        q8[0].qs[i] = (int8_t)(i - 16), q8[1].qs[i] = (int8_t)i;
    q8[0].d = 0x3c00; /* 1.0 */
    q8[1].d = 0x3800; /* 0.5 */
    uint64_t dims_q8[1] = {64};
    CHECK_OK(kvz_gguf_writer_add_tensor(w, "t.q8", 1, dims_q8, KVZ_GGML_Q8_0, q8, NULL, NULL));
    uint64_t bad_dims[1] = {33};
    assert_int_equal(kvz_gguf_writer_add_tensor(w, "t.bad", 1, bad_dims, KVZ_GGML_Q8_0, q8, NULL, NULL),
                     KVZ_ERR_ARG);
    CHECK_OK(kvz_gguf_writer_write(w, path));
    kvz_gguf_writer_free(w);
}

static void test_round_trip(void **state)
{
    const char *path = test_tmp_path("sample.gguf");
    write_sample(path);
    kvz_gguf *g;
    CHECK_OK(kvz_gguf_open(&g, path));
    assert_int_equal(kvz_gguf_version(g), 3);
    assert_int_equal(kvz_gguf_alignment(g), 32);
    uint32_t u32;
    int64_t i64;
    float f;
    int b;
    kvz_gguf_str s;
    CHECK_OK(kvz_gguf_get_u32(g, "a.u32", &u32));
    assert_int_equal(u32, 4000000000u);
    CHECK_OK(kvz_gguf_get_i64(g, "a.i32", &i64));
    assert_int_equal(i64, -7);
    assert_int_equal(kvz_gguf_get_u32(g, "a.i32", &u32), KVZ_ERR_FORMAT); /* negative */
    CHECK_OK(kvz_gguf_get_i64(g, "a.u64", &i64));
    assert_int_equal(i64, 1ll << 40);
    assert_int_equal(kvz_gguf_get_u32(g, "a.u64", &u32), KVZ_ERR_FORMAT); /* too big */
    CHECK_OK(kvz_gguf_get_f32(g, "a.f32", &f));
    assert_true(f == 0.25f);
    CHECK_OK(kvz_gguf_get_bool(g, "a.bool", &b));
    assert_int_equal(b, 1);
    CHECK_OK(kvz_gguf_get_str(g, "general.architecture", &s));
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(kvz_gguf_get_str(g, "a.u32", &s), KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "a.u32"));
    assert_int_equal(kvz_gguf_get_str(g, "absent", &s), KVZ_ERR_NOT_FOUND);
    assert_non_null(strstr(kvz_last_error(), "absent"));

    kvz_gguf_str *strs;
    uint64_t n;
    CHECK_OK(kvz_gguf_get_str_array(g, "a.strs", &strs, &n));
    assert_int_equal(n, 3);
    assert_int_equal(strs[1].len, 0);
    assert_memory_equal(strs[2].ptr, "gamma delta", 11);
    free(strs);
    const void *data;
    CHECK_OK(kvz_gguf_get_array_data(g, "a.ints", KVZ_GGUF_I32, &data, &n));
    assert_int_equal(n, 3);
    assert_int_equal(((const int32_t *)data)[1], -2);
    assert_int_equal(kvz_gguf_get_array_data(g, "a.ints", KVZ_GGUF_F32, &data, &n), KVZ_ERR_FORMAT);

    assert_int_equal(kvz_gguf_tensor_count(g), 2);
    const kvz_gguf_tensor *t = kvz_gguf_find_tensor(g, "t.f32");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 3);
    assert_int_equal(t->dims[1], 2);
    assert_int_equal(t->size, 24);
    assert_true(((const float *)t->data)[5] == 6.0f);
    t = kvz_gguf_find_tensor(g, "t.q8");
    assert_int_equal(t->type, KVZ_GGML_Q8_0);
    assert_int_equal(t->size, 68);
    assert_int_equal((uintptr_t)t->data % 32, 0);
    assert_null(kvz_gguf_find_tensor(g, "t.none"));
    kvz_gguf_close(g);
    unlink(path);
}

static void test_real_model_header(void **state)
{
    kvz_gguf *g;
    CHECK_OK(kvz_gguf_open(&g, test_model_path()));
    assert_int_equal(kvz_gguf_version(g), 3);
    assert_int_equal(kvz_gguf_tensor_count(g), 272);
    kvz_hparams hp;
    CHECK_OK(kvz_hparams_read(&hp, g));
    assert_int_equal(hp.n_layers, 30);
    assert_int_equal(hp.dim, 576);
    assert_int_equal(hp.n_heads, 9);
    assert_int_equal(hp.n_kv_heads, 3);
    assert_int_equal(hp.head_dim, 64);
    assert_int_equal(hp.ff_dim, 1536);
    assert_int_equal(hp.vocab, 49152);
    assert_int_equal(hp.ctx_train, 8192);
    assert_true(hp.rope.freq_base == 100000.0f);
    assert_int_equal(kvz_gguf_find_tensor(g, "token_embd.weight")->type, KVZ_GGML_Q8_0);
    assert_int_equal(kvz_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, KVZ_GGML_Q4_1);
    kvz_gguf_close(g);
}

static uint8_t *file_bytes(const char *path, size_t *size)
{
    char *data;
    CHECK_OK(kvz_read_file(path, &data, size));
    return (uint8_t *)data;
}

/* Every strict prefix of a valid file is refused with an error. */
static void test_every_truncation(void **state)
{
    const char *path = test_tmp_path("trunc.gguf");
    write_sample(path);
    size_t size;
    uint8_t *bytes = file_bytes(path, &size);
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
        memcpy(copy, bytes, len);
        kvz_gguf *g;
        int rc = kvz_gguf_open_memory(&g, copy, len);
        if (rc == KVZ_OK)
            fail_msg("a file truncated to %zu of %zu bytes was accepted", len, size);
        assert_true(rc == KVZ_ERR_FORMAT);
        assert_true(kvz_last_error()[0] != '\0');
        free(copy);
    }
    free(bytes);
    unlink(path);
}

/* Flipping any bit of the header never crashes or reads out of bounds. */
static void test_every_header_bit_flip(void **state)
{
    const char *path = test_tmp_path("flip.gguf");
    write_sample(path);
    size_t size;
    uint8_t *bytes = file_bytes(path, &size);
    size_t header = size - (32 + 68); /* up to the tensor data: f32 tensor padded to 32, q8 */
    int refused = 0;
    for (size_t i = 0; i < header; i++)
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(size);
            memcpy(copy, bytes, size);
            copy[i] ^= (uint8_t)(1u << bit);
            kvz_gguf *g;
            if (kvz_gguf_open_memory(&g, copy, size) == KVZ_OK) {
                /* accepted: then every tensor must lie inside the buffer */
                for (uint64_t t = 0; t < kvz_gguf_tensor_count(g); t++) {
                    const kvz_gguf_tensor *tt = kvz_gguf_tensor_at(g, t);
                    assert_true((const uint8_t *)tt->data + tt->size <= copy + size);
                }
                kvz_gguf_close(g);
            } else {
                refused++;
            }
            free(copy);
        }
    assert_true(refused > 0);
    free(bytes);
    unlink(path);
}

/* Hand-made headers with one defect each. */
typedef struct header_builder {
    kvz_buffer b;
} header_builder;

static void put_str(kvz_buffer *b, const char *s)
{
    kvz_buffer_append_u64(b, strlen(s));
    kvz_buffer_append(b, s, strlen(s));
}

static int open_bytes(kvz_buffer *b)
{
    kvz_gguf *g;
    int rc = kvz_gguf_open_memory(&g, b->data, b->len);
    if (rc == KVZ_OK)
        kvz_gguf_close(g);
    kvz_buffer_free(b);
    return rc;
}

static kvz_buffer header(uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    kvz_buffer b = {0};
    kvz_buffer_append(&b, "GGUF", 4);
    kvz_buffer_append_u32(&b, version);
    kvz_buffer_append_u64(&b, n_tensors);
    kvz_buffer_append_u64(&b, n_kv);
    return b;
}

static void tensor_info(kvz_buffer *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                        uint32_t type, uint64_t offset)
{
    put_str(b, name);
    kvz_buffer_append_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        kvz_buffer_append_u64(b, dims[i]);
    kvz_buffer_append_u32(b, type);
    kvz_buffer_append_u64(b, offset);
}

static void pad_and_data(kvz_buffer *b, size_t data_bytes)
{
    static const uint8_t zeros[4096];
    kvz_buffer_append(b, zeros, (32 - b->len % 32) % 32);
    kvz_buffer_append(b, zeros, data_bytes);
}

static void expect_refused(int rc, int want, const char *needle)
{
    assert_int_equal(rc, want);
    if (!strstr(kvz_last_error(), needle))
        fail_msg("error '%s' does not mention '%s'", kvz_last_error(), needle);
}

static void test_malformed_headers(void **state)
{
    kvz_buffer b = header(3, 0, 0);
    b.data[0] = 'X';
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "not a GGUF file");

    b = header(1, 0, 0);
    expect_refused(open_bytes(&b), KVZ_ERR_UNSUPPORTED, "version 1");
    b = header(0x03000000u, 0, 0);
    expect_refused(open_bytes(&b), KVZ_ERR_UNSUPPORTED, "big-endian");

    b = header(3, 0, 1u << 30);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "absurd counts");

    b = header(3, 0, 1); /* unknown value type */
    put_str(&b, "k");
    kvz_buffer_append_u32(&b, 77);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "unknown value type 77");

    b = header(3, 0, 2); /* duplicate key */
    for (int i = 0; i < 2; i++) {
        put_str(&b, "dup");
        kvz_buffer_append_u32(&b, 4);
        kvz_buffer_append_u32(&b, 1);
    }
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "duplicate metadata key 'dup'");

    b = header(3, 0, 1); /* string longer than the file */
    put_str(&b, "k");
    kvz_buffer_append_u32(&b, 8);
    kvz_buffer_append_u64(&b, 1ull << 60);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "truncated");

    b = header(3, 0, 1); /* array of absurd length */
    put_str(&b, "arr");
    kvz_buffer_append_u32(&b, 9);
    kvz_buffer_append_u32(&b, 6);
    kvz_buffer_append_u64(&b, 1ull << 62);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "arr");

    b = header(3, 0, 1); /* nested array */
    put_str(&b, "nest");
    kvz_buffer_append_u32(&b, 9);
    kvz_buffer_append_u32(&b, 9);
    kvz_buffer_append_u64(&b, 1);
    expect_refused(open_bytes(&b), KVZ_ERR_UNSUPPORTED, "nested");

    b = header(3, 0, 1); /* alignment not a power of two */
    put_str(&b, "general.alignment");
    kvz_buffer_append_u32(&b, 4);
    kvz_buffer_append_u32(&b, 48);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "power of two");

    uint64_t dims[5] = {32, 2, 1, 1, 1};
    b = header(3, 1, 0); /* unknown tensor type */
    tensor_info(&b, "t", 2, dims, 99, 0);
    pad_and_data(&b, 256);
    expect_refused(open_bytes(&b), KVZ_ERR_UNSUPPORTED, "unknown tensor type 99");

    b = header(3, 1, 0); /* five dimensions */
    tensor_info(&b, "t", 5, dims, 0, 0);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "5 dimensions");

    uint64_t huge[2] = {1ull << 40, 1ull << 40};
    b = header(3, 1, 0); /* element count overflows */
    tensor_info(&b, "huge", 2, huge, 0, 0);
    pad_and_data(&b, 64);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "absurd size");

    uint64_t big[2] = {1ull << 20, 1ull << 20};
    b = header(3, 1, 0); /* plausible header, data far past the end */
    tensor_info(&b, "big", 2, big, 0, 0);
    pad_and_data(&b, 64);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "past the end");

    uint64_t odd[1] = {33};
    b = header(3, 1, 0); /* row not a whole number of blocks */
    tensor_info(&b, "odd", 1, odd, KVZ_GGML_Q8_0, 0);
    pad_and_data(&b, 64);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "multiple of the Q8_0 block");

    b = header(3, 1, 0); /* misaligned offset */
    tensor_info(&b, "t", 2, dims, 0, 4);
    pad_and_data(&b, 512);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "not aligned");

    b = header(3, 2, 0); /* duplicate tensor */
    tensor_info(&b, "same", 2, dims, 0, 0);
    tensor_info(&b, "same", 2, dims, 0, 256);
    pad_and_data(&b, 512);
    expect_refused(open_bytes(&b), KVZ_ERR_FORMAT, "duplicate tensor name 'same'");
}

static void test_missing_file(void **state)
{
    kvz_gguf *g;
    expect_refused(kvz_gguf_open(&g, "/nonexistent/model.gguf"), KVZ_ERR_NOT_FOUND, "/nonexistent/model.gguf");
    expect_refused(kvz_gguf_open(&g, "/tmp"), KVZ_ERR_IO, "not a regular file");
}

/* A model file cut short (an interrupted download) is refused on open. */
static void test_truncated_real_model(void **state)
{
    size_t size;
    uint8_t *bytes = file_bytes(test_model_path(), &size);
    const char *path = test_tmp_path("cut.gguf");
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, size / 2, f);
    fclose(f);
    free(bytes);
    kvz_model *m;
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_FORMAT, "past the end");
    unlink(path);
}


/* A writer holding the hyper-parameters a model header needs (architecture
 * `arch`, 2 layers of `width` with `heads` heads), and nothing else. */
static kvz_gguf_writer *minimal_header(const char *arch, uint32_t width, uint32_t heads)
{
    kvz_gguf_writer *w = kvz_gguf_writer_new();
    CHECK_OK(kvz_gguf_writer_set_str(w, "general.architecture", arch));
    const char *counts[] = {"block_count", "embedding_length", "attention.head_count", "feed_forward_length",
                            "context_length"};
    const uint32_t values[] = {2, width, heads, 128, 512};
    char key[64];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, counts[i]);
        CHECK_OK(kvz_gguf_writer_set_u32(w, key, values[i]));
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    CHECK_OK(kvz_gguf_writer_set_f32(w, key, 1e-6f));
    return w;
}

static void test_model_checks(void **state)
{
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("tiny", &spec));
    const char *path = test_tmp_path("tiny.gguf");
    CHECK_OK(kvz_synth_model_write(path, &spec));
    kvz_model *m;
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    CHECK_OK(kvz_model_load(&m, path, &cfg));
    assert_int_equal(m->hp.n_layers, 2);
    assert_true(m->output_tied);
    kvz_model_free(m);

    /* same spec, same bytes */
    const char *again = test_tmp_path("tiny2.gguf");
    CHECK_OK(kvz_synth_model_write(again, &spec));
    size_t a_size, b_size;
    uint8_t *a = file_bytes(path, &a_size), *b = file_bytes(again, &b_size);
    assert_int_equal(a_size, b_size);
    assert_memory_equal(a, b, a_size);
    free(a);
    free(b);
    unlink(again);
    unlink(path);

    /* a header that is not llama */
    kvz_gguf_writer *w = kvz_gguf_writer_new();
    CHECK_OK(kvz_gguf_writer_set_str(w, "general.architecture", "gptneox"));
    CHECK_OK(kvz_gguf_writer_write(w, path));
    kvz_gguf_writer_free(w);
    expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_UNSUPPORTED, "gptneox");
    unlink(path);

    /* RoPE scaling kvz does not apply (YaRN, linear by a factor): refused, not computed without it */
    for (int c = 0; c < 2; c++) {
        w = minimal_header("qwen2", 64, 4);
        if (c == 0)
            CHECK_OK(kvz_gguf_writer_set_str(w, "qwen2.rope.scaling.type", "yarn"));
        else
            CHECK_OK(kvz_gguf_writer_set_f32(w, "qwen2.rope.scaling.factor", 4.0f));
        CHECK_OK(kvz_gguf_writer_write(w, path));
        kvz_gguf_writer_free(w);
        expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_UNSUPPORTED, c == 0 ? "scaling 'yarn'" : "by 4");
        unlink(path);
    }

    /* one part of a split model, a mixture of experts: said as what they are
     * (they were "tensor ... is missing", exit 4, as a damaged file) */
    for (int c = 0; c < 2; c++) {
        w = minimal_header("llama", 64, 4);
        if (c == 0)
            CHECK_OK(kvz_gguf_writer_set_u32(w, "split.count", 3));
        else
            CHECK_OK(kvz_gguf_writer_set_u32(w, "llama.expert_count", 8));
        CHECK_OK(kvz_gguf_writer_write(w, path));
        kvz_gguf_writer_free(w);
        expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_UNSUPPORTED,
                       c == 0 ? "split into 3 files (split.count)" : "a mixture of 8 experts");
        unlink(path);
    }

    /* a key every model has, missing: the file is not a whole model (exit 4), not "not found" (7) */
    w = kvz_gguf_writer_new();
    CHECK_OK(kvz_gguf_writer_set_str(w, "general.name", "headless"));
    CHECK_OK(kvz_gguf_writer_write(w, path));
    kvz_gguf_writer_free(w);
    expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_FORMAT, "metadata key 'general.architecture' is missing");
    unlink(path);

    /* block_count (2) against the layers the file holds: one fewer is a missing
     * tensor, one more is a file that is not the model it says (llama.cpp
     * refuses it; kvz ran it with layers left out); 2^30 layers was "out of memory" */
    static float zeros[64 * 8];
    for (int c = 0; c < 2; c++) {
        w = minimal_header("llama", 64, 4);
        uint64_t emb[2] = {64, 8}, norm[1] = {64};
        CHECK_OK(kvz_gguf_writer_add_tensor(w, "token_embd.weight", 2, emb, KVZ_GGML_F32, zeros, NULL, NULL));
        for (int layer = 0; layer < (c == 0 ? 1 : 3); layer++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", layer);
            CHECK_OK(kvz_gguf_writer_add_tensor(w, name, 1, norm, KVZ_GGML_F32, zeros, NULL, NULL));
        }
        CHECK_OK(kvz_gguf_writer_write(w, path));
        kvz_gguf_writer_free(w);
        expect_refused(kvz_model_load(&m, path, &cfg), KVZ_ERR_FORMAT,
                       c == 0 ? "block_count says 2 layer(s), and tensor 'blk.1.attn_norm.weight' is missing"
                              : "block_count says 2 layer(s), and the file holds more (tensor 'blk.2.attn_norm");
        unlink(path);
    }

    /* RoPE frequency factors (rope_freqs.weight) kvz cannot apply: not one f32
     * per rotated pair (8 here), one not positive or not finite, in a qwen2
     * model, or for a rotary width above 256 */
    static const struct {
        const char *arch;
        uint32_t width, heads, count, type;
        float bad; /* put at factor 5 unless 0 */
        int rc;
        const char *why;
    } cases[] = {
        {"llama", 64, 4, 7, KVZ_GGML_F32, 0, KVZ_ERR_FORMAT, "not 8 f32 values"},
        {"llama", 64, 4, 8, KVZ_GGML_F16, 0, KVZ_ERR_FORMAT, "not 8 f32 values"},
        {"llama", 64, 4, 8, KVZ_GGML_F32, -1.0f, KVZ_ERR_FORMAT, "factor 5 is -1"},
        {"llama", 64, 4, 8, KVZ_GGML_F32, NAN, KVZ_ERR_FORMAT, "factor 5 is nan"},
        {"llama", 64, 4, 8, KVZ_GGML_F32, INFINITY, KVZ_ERR_FORMAT, "factor 5 is inf"},
        {"qwen2", 64, 4, 8, KVZ_GGML_F32, 0, KVZ_ERR_UNSUPPORTED, "in a 'qwen2' model"},
        {"llama", 1024, 2, 256, KVZ_GGML_F32, 0, KVZ_ERR_UNSUPPORTED, "rotary width of 512"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        w = minimal_header(cases[c].arch, cases[c].width, cases[c].heads);
        float factors[256];
        for (int j = 0; j < 256; j++)
            factors[j] = j < 2 ? 1.0f : 8.0f;
        if (cases[c].bad != 0)
            factors[5] = cases[c].bad;
        uint64_t dims[1] = {cases[c].count};
        CHECK_OK(kvz_gguf_writer_add_tensor(w, "rope_freqs.weight", 1, dims, cases[c].type, factors, NULL, NULL));
        CHECK_OK(kvz_gguf_writer_write(w, path));
        kvz_gguf_writer_free(w);
        expect_refused(kvz_model_load(&m, path, &cfg), cases[c].rc, cases[c].why);
        unlink(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_real_model_header),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_every_header_bit_flip),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_truncated_real_model),
        cmocka_unit_test(test_model_checks),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
