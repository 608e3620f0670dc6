/* test_format.c — the .kvz codecs, quantizers and artifact, on good and damaged input. */
#include "test_util.h"

#include <math.h>

#include "common/error.h"
#include "common/file_util.h"
#include "common/timer.h"
#include "format/artifact.h"
#include "format/codec.h"
#include "format/doc_record.h"
#include "format/quant.h"
#include "format/store.h"
#include "format/transfer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Keys with a few outlier channels and values with an outlier token, as real
 * caches have. */
static float *make_kv(uint32_t n, uint32_t d, int is_keys)
{
    float *x = malloc((size_t)n * d * sizeof(float));
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t c = 0; c < d; c++) {
            float v = test_frand() * 2;
            if (is_keys && c % 7 == 3)
                v = v * 10 + 15; /* outlier channel */
            if (!is_keys && t == n / 2)
                v *= 30; /* outlier token */
            x[(size_t)t * d + c] = v;
        }
    return x;
}

static void test_quantization_error_bound(void **state)
{
    const uint32_t bits[] = {16, 8, 4, 2};
    for (int is_keys = 0; is_keys < 2; is_keys++)
        for (size_t bi = 0; bi < 4; bi++) {
            kvz_quant_shape s = {.n = 77, .n16 = 5, .d = 64, .bits = bits[bi], .group = is_keys ? 32 : 16};
            assert_true(kvz_quant_shape_valid(&s, is_keys));
            float *x = make_kv(s.n, s.d, is_keys), *y = malloc((size_t)s.n * s.d * 4);
            uint8_t *payload = malloc(kvz_quant_payload_bytes(&s));
            size_t pairs = kvz_quant_scale_pairs(&s, is_keys);
            uint16_t *scales = malloc(pairs * 4 + 4);
            CHECK_OK(kvz_quantize(x, &s, is_keys, payload, scales));
            kvz_dequantize(payload, scales, &s, is_keys, y);
            double worst = 0;
            for (uint32_t t = 0; t < s.n; t++)
                for (uint32_t c = 0; c < s.d; c++) {
                    float v = x[t * s.d + c], got = y[t * s.d + c];
                    double bound;
                    if (t < s.n16 || s.bits == 16) {
                        bound = fabs(v) / 1024.0 + 1e-7; /* f16 rounding */
                    } else {
                        uint32_t m = t - s.n16;
                        size_t pair = is_keys ? (m / s.group) * s.d + c : m * (s.d / s.group) + c / s.group;
                        bound = kvz_fp16_to_f32(scales[2 * pair]) / 2 * (1 + 1e-5) + 1e-7;
                    }
                    double err = fabs((double)v - got);
                    if (!(err <= bound)) /* NaN too */
                        fail_msg("%s %u bits: element (%u, %u) = %g decodes to %g (bound %g)",
                                 is_keys ? "keys" : "values", s.bits, t, c, v, got, bound);
                    worst = max_keeping_nan(worst, err / (bound > 0 ? bound : 1));
                }
            print_message("%-6s %2u bits: worst error %.2f of its bound\n", is_keys ? "keys" : "values",
                          s.bits, worst);
            free(x), free(y), free(payload), free(scales);
        }
    kvz_quant_shape bad = {.n = 4, .n16 = 0, .d = 64, .bits = 3, .group = 8};
    assert_false(kvz_quant_shape_valid(&bad, 1));
    bad.bits = 4, bad.group = 24;
    assert_false(kvz_quant_shape_valid(&bad, 0)); /* 64 % 24 != 0 */
}

/* kvz_error_context prepends to the message; a chain longer than the buffer
 * keeps the newest part and stays terminated. */
static void test_error_context_chain(void **state)
{
    (void)state;
    kvz_errorf(KVZ_ERR_FORMAT, "inner %d", 7);
    assert_int_equal(kvz_error_context(KVZ_ERR_IO, "outer"), KVZ_ERR_IO);
    assert_string_equal(kvz_last_error(), "outer: inner 7");
    char long_text[1100];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    kvz_errorf(KVZ_ERR_FORMAT, "%s", "old");
    kvz_error_context(KVZ_ERR_FORMAT, "%.1000s", long_text); /* room left for all of ": old" */
    assert_int_equal(strlen(kvz_last_error()), 1005);
    assert_string_equal(kvz_last_error() + 1000, ": old");
    kvz_errorf(KVZ_ERR_FORMAT, "%s", long_text); /* 1,023 characters */
    kvz_error_context(KVZ_ERR_FORMAT, "new"); /* the older message is cut */
    assert_int_equal(strlen(kvz_last_error()), 1023);
    assert_memory_equal(kvz_last_error(), "new: xxx", 8);
    kvz_errorf(KVZ_ERR_FORMAT, "old");
    kvz_error_context(KVZ_ERR_FORMAT, "%s", long_text); /* the newest fills the buffer alone */
    assert_int_equal(strlen(kvz_last_error()), 1023);
    assert_int_equal(kvz_last_error()[0], 'x');
    /* a message past the buffer (a long path in it) keeps its start and its
     * end, where the reason is (it was cut inside the path) */
    char path[1500];
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    kvz_errorf(KVZ_ERR_IO, "cannot read '%s': %s", path, "File name too long");
    const char *why = "': File name too long";
    assert_int_equal(strlen(kvz_last_error()), 1023);
    assert_memory_equal(kvz_last_error(), "cannot read 'ppp", 16);
    assert_non_null(strstr(kvz_last_error(), "ppp...ppp"));
    assert_string_equal(kvz_last_error() + 1023 - strlen(why), why);
    kvz_error_clear();
}

static void test_codecs(void **state)
{
    for (int elem = 1; elem <= 4; elem *= 2) {
        size_t size = 1003; /* not a multiple of the element */
        uint8_t *raw = malloc(size), *back = malloc(size);
        for (size_t i = 0; i < size; i++)
            raw[i] = (uint8_t)(i % elem == 0 ? i / 7 : 3);
        kvz_encoded e;
        CHECK_OK(kvz_encode_bytes(raw, size, elem, 3, &e));
        assert_true(e.size < size); /* compressible */
        CHECK_OK(kvz_decode_bytes(e.data, e.size, e.transform, e.compressor, back, size));
        assert_memory_equal(raw, back, size);
        assert_int_equal(kvz_decode_bytes(e.data, e.size, e.transform, e.compressor, back, size - 1),
                         KVZ_ERR_FORMAT);
        free(e.data), free(raw), free(back);
    }
    /* dense positions pick the bitmap, sparse ones delta-varint */
    uint32_t dense[900], sparse[20], back[900];
    for (uint32_t i = 0; i < 900; i++)
        dense[i] = i + i / 9;
    for (uint32_t i = 0; i < 20; i++)
        sparse[i] = i * i * 37 + 5;
    kvz_encoded e;
    CHECK_OK(kvz_encode_positions(dense, 900, 1000, 3, &e));
    assert_int_equal(e.transform, KVZ_TRANSFORM_BITMAP);
    CHECK_OK(kvz_decode_positions(e.data, e.size, e.transform, e.compressor, 900, 1000, back));
    assert_memory_equal(dense, back, sizeof dense);
    assert_int_equal(kvz_decode_positions(e.data, e.size, e.transform, e.compressor, 899, 1000, back),
                     KVZ_ERR_FORMAT);
    free(e.data);
    CHECK_OK(kvz_encode_positions(sparse, 20, 20000, 3, &e));
    assert_int_equal(e.transform, KVZ_TRANSFORM_DELTA_VARINT);
    CHECK_OK(kvz_decode_positions(e.data, e.size, e.transform, e.compressor, 20, 20000, back));
    assert_memory_equal(sparse, back, sizeof sparse);
    assert_int_equal(kvz_decode_positions(e.data, e.size, e.transform, e.compressor, 20, 10000, back),
                     KVZ_ERR_FORMAT); /* beyond the document */
    free(e.data);
    uint8_t repeated[3] = {5, 0, 1}; /* delta 0: not strictly increasing */
    assert_int_equal(kvz_decode_positions(repeated, 3, KVZ_TRANSFORM_DELTA_VARINT, 0, 3, 100, back),
                     KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "increasing"));
    uint8_t overlong[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(kvz_decode_positions(overlong, 6, KVZ_TRANSFORM_DELTA_VARINT, 0, 1, 100, back),
                     KVZ_ERR_FORMAT);
    assert_int_equal(kvz_decode_bytes(overlong, 6, 9, 0, back, 6), KVZ_ERR_UNSUPPORTED);
}

enum { LAYERS = 2, HEADS = 2, DIM = 16, TOKENS = 40 };

static void fill_manifest(kvz_manifest *m, uint32_t bits)
{
    memset(m, 0, sizeof *m);
    kvz_model_identity *id = &m->model;
    snprintf(id->arch, sizeof id->arch, "llama");
    snprintf(id->name, sizeof id->name, "test model");
    id->n_layers = LAYERS, id->n_heads = 4, id->n_kv_heads = HEADS, id->head_dim = DIM;
    id->dim = 64, id->vocab = 1000, id->rope_dim = DIM, id->rope_base = 10000.0f;
    id->tokenizer_hash = 11, id->weights_hash = 22;
    id->fingerprint = kvz_model_identity_fingerprint(id);
    snprintf(m->template_name, sizeof m->template_name, "chatml");
    m->prefix_tokens = 7;
    snprintf(m->doc_name, sizeof m->doc_name, "docs/a.txt");
    m->doc_hash[0] = 0xab;
    m->n_tokens = TOKENS, m->segment = 0, m->n_segments = 1;
    snprintf(m->method, sizeof m->method, "kvzip");
    snprintf(m->level, sizeof m->level, "pair");
    snprintf(m->budget_shape, sizeof m->budget_shape, "uniform");
    m->ratio = 0.5f, m->bits = bits, m->key_group = 8, m->value_group = 8, m->fp16_tokens = 2;
    snprintf(m->compiler, sizeof m->compiler, "kvz test");
}

/* A small artifact: head (l, h) keeps every (l + h + 1)-th token. */
static int build_token_shift; /* another cut of the document: other tokens under the same manifest */
static uint64_t build_created;     /* the manifest's compile time */
static const char *build_compiler; /* its `compiler` (NULL: "kvz test") */

static uint8_t *build(uint32_t bits, size_t *size, kvz_manifest *m, float **keys, float **values)
{
    fill_manifest(m, bits);
    m->created = build_created;
    if (build_compiler)
        snprintf(m->compiler, sizeof m->compiler, "%s", build_compiler);
    kvz_artifact_writer *w = kvz_artifact_writer_new(3);
    int32_t tokens[TOKENS];
    for (int i = 0; i < TOKENS; i++)
        tokens[i] = (i * 17 + build_token_shift) % 1000;
    CHECK_OK(kvz_artifact_add_tokens(w, tokens, TOKENS));
    *keys = make_kv(TOKENS, DIM, 1);
    *values = make_kv(TOKENS, DIM, 0);
    for (uint16_t l = 0; l < LAYERS; l++)
        for (uint16_t h = 0; h < HEADS; h++) {
            uint32_t pos[TOKENS], n = 0, n16 = 0;
            float k[TOKENS * DIM], v[TOKENS * DIM];
            for (uint32_t t = 0; t < TOKENS; t += l + h + 1) {
                pos[n] = t;
                memcpy(k + n * DIM, *keys + t * DIM, sizeof(float) * DIM);
                memcpy(v + n * DIM, *values + t * DIM, sizeof(float) * DIM);
                n16 += t < m->fp16_tokens;
                n++;
            }
            CHECK_OK(kvz_artifact_add_head(w, m, l, h, pos, n, n16, k, v));
        }
    uint8_t *bytes;
    CHECK_OK(kvz_artifact_writer_finish(w, m, &bytes, size));
    kvz_artifact_writer_free(w);
    return bytes;
}

static void test_round_trip_every_bit_width(void **state)
{
    const uint32_t bits[] = {16, 8, 4, 2};
    for (size_t bi = 0; bi < 4; bi++) {
        size_t size;
        kvz_manifest m;
        float *keys, *values;
        uint8_t *bytes = build(bits[bi], &size, &m, &keys, &values);
        kvz_artifact a;
        CHECK_OK(kvz_artifact_open(&a, bytes, size));
        CHECK_OK(kvz_artifact_verify(&a));
        assert_string_equal(a.manifest.doc_name, "docs/a.txt");
        assert_int_equal(a.manifest.bits, bits[bi]);
        assert_int_equal(a.manifest.model.fingerprint, m.model.fingerprint);
        assert_true(a.manifest.ratio == 0.5f);
        int32_t tokens[TOKENS];
        CHECK_OK(kvz_artifact_read_tokens(&a, tokens));
        assert_int_equal(tokens[39], 39 * 17 % 1000);
        double worst_k = 0, worst_v = 0;
        for (uint16_t l = 0; l < LAYERS; l++)
            for (uint16_t h = 0; h < HEADS; h++) {
                uint32_t n, pos[TOKENS];
                float k[TOKENS * DIM], v[TOKENS * DIM];
                CHECK_OK(kvz_artifact_kept(&a, l, h, &n));
                assert_int_equal(n, (TOKENS + l + h) / (l + h + 1));
                CHECK_OK(kvz_artifact_read_head(&a, l, h, pos, k, v));
                for (uint32_t i = 0; i < n; i++) {
                    assert_int_equal(pos[i], i * (uint32_t)(l + h + 1));
                    for (int c = 0; c < DIM; c++) {
                        worst_k = max_keeping_nan(worst_k, fabs(k[i * DIM + c] - keys[pos[i] * DIM + c]));
                        worst_v = max_keeping_nan(worst_v, fabs(v[i * DIM + c] - values[pos[i] * DIM + c]));
                    }
                }
            }
        print_message("%2u bits: %zu bytes, worst |dk| %.3g, |dv| %.3g\n", bits[bi], size, worst_k, worst_v);
        /* keys span ~35 per outlier channel group, values ~60 per outlier token */
        double tol = bits[bi] == 16 ? 0.05 : bits[bi] == 8 ? 0.2 : bits[bi] == 4 ? 3.0 : 15.0;
        assert_true(worst_k < tol && worst_v < tol * 2);
        free(bytes), free(keys), free(values);
    }
}

/* Every single-byte change and every truncation of a small artifact is refused.
 * The manifest alone (gc's read) lets through only changes that leave the
 * manifest as written: those past the header, table and manifest, which it
 * does not read. */
static void test_every_flip_and_truncation(void **state)
{
    size_t size;
    kvz_manifest m;
    float *keys, *values;
    uint8_t *bytes = build(4, &size, &m, &keys, &values);
    uint8_t *copy = malloc(size);
    size_t refused = 0, manifest_unchanged = 0;
    for (size_t i = 0; i < size; i++) {
        for (int x = 0; x < 2; x++) {
            memcpy(copy, bytes, size);
            copy[i] ^= x ? 0xff : 0x01;
            kvz_artifact a;
            if (kvz_artifact_open_manifest(&a, copy, size) == KVZ_OK) {
                assert_int_equal(a.manifest.n_tokens, m.n_tokens);
                assert_true(a.manifest.prefix_hash == m.prefix_hash && a.manifest.model.fingerprint ==
                            m.model.fingerprint);
                assert_memory_equal(a.manifest.doc_hash, m.doc_hash, 16);
                assert_string_equal(a.manifest.config, m.config);
                manifest_unchanged++;
            }
            int rc = kvz_artifact_open(&a, copy, size);
            if (rc == KVZ_OK)
                rc = kvz_artifact_verify(&a);
            if (rc == KVZ_OK)
                fail_msg("changing byte %zu of %zu went unnoticed", i, size);
            assert_true(kvz_last_error()[0] != '\0');
            refused++;
        }
    }
    for (size_t len = 0; len < size; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, bytes, len);
        kvz_artifact a;
        if (kvz_artifact_open(&a, cut, len) == KVZ_OK)
            fail_msg("a truncation to %zu of %zu bytes was accepted", len, size);
        free(cut);
    }
    assert_true(manifest_unchanged > 0 && manifest_unchanged < refused);
    print_message("%zu byte changes and %zu truncations refused\n", refused, size);
    free(copy), free(bytes), free(keys), free(values);
}

/* Opening an artifact looks each head's sections up once through an index:
 * scanning the table for each (every section against every other, five
 * lookups a head) made it quadratic in the heads, which was most of `kvz
 * stats`, verify and pack on a store of many small documents. An artifact of
 * 8192 heads opens in less time than it took to write (scanned: ~40x more). */
static void test_open_is_linear_in_heads(void **state)
{
    kvz_manifest m;
    fill_manifest(&m, 16);
    m.model.n_layers = 1024, m.model.n_kv_heads = 8, m.n_tokens = 2, m.fp16_tokens = 0;
    m.model.fingerprint = kvz_model_identity_fingerprint(&m.model);
    double t0 = kvz_now_seconds();
    kvz_artifact_writer *w = kvz_artifact_writer_new(3);
    int32_t tokens[2] = {5, 6};
    CHECK_OK(kvz_artifact_add_tokens(w, tokens, 2));
    float k[DIM] = {1}, v[DIM] = {2};
    uint32_t pos[1] = {1};
    for (uint16_t l = 0; l < m.model.n_layers; l++)
        for (uint16_t h = 0; h < m.model.n_kv_heads; h++)
            CHECK_OK(kvz_artifact_add_head(w, &m, l, h, pos, 1, 0, k, v));
    uint8_t *bytes;
    size_t size;
    CHECK_OK(kvz_artifact_writer_finish(w, &m, &bytes, &size));
    kvz_artifact_writer_free(w);
    double built = kvz_now_seconds() - t0;
    t0 = kvz_now_seconds();
    kvz_artifact a;
    CHECK_OK(kvz_artifact_open(&a, bytes, size));
    double opened = kvz_now_seconds() - t0;
    print_message("%u sections: written in %.3f s, opened in %.3f s\n", a.n_sections, built, opened);
    assert_true(opened < built);
    free(bytes);
}

static void test_model_mismatch_names_both(void **state)
{
    size_t size;
    kvz_manifest m;
    float *keys, *values;
    uint8_t *bytes = build(8, &size, &m, &keys, &values);
    kvz_artifact a;
    CHECK_OK(kvz_artifact_open(&a, bytes, size));
    kvz_model_identity other = m.model;
    CHECK_OK(kvz_artifact_check_model(&a, NULL, &other));
    snprintf(other.name, sizeof other.name, "another model");
    other.weights_hash = 99;
    other.fingerprint = kvz_model_identity_fingerprint(&other);
    assert_int_equal(kvz_artifact_check_model(&a, NULL, &other), KVZ_ERR_MODEL_MISMATCH);
    const char *msg = kvz_last_error();
    assert_non_null(strstr(msg, "test model"));
    assert_non_null(strstr(msg, "another model"));
    /* the document asked for, not the first compiled that the shared artifact names */
    assert_int_equal(kvz_artifact_check_model(&a, "archive/public.txt", &other), KVZ_ERR_MODEL_MISMATCH);
    assert_non_null(strstr(kvz_last_error(), "artifact 'archive/public.txt' was compiled for"));
    free(bytes), free(keys), free(values);
}

static void test_writer_refuses_bad_input(void **state)
{
    kvz_manifest m;
    fill_manifest(&m, 4);
    kvz_artifact_writer *w = kvz_artifact_writer_new(3);
    uint32_t pos[2] = {5, 5};
    float kv[2 * DIM] = {0};
    assert_int_equal(kvz_artifact_add_head(w, &m, 0, 0, pos, 2, 0, kv, kv), KVZ_ERR_ARG);
    pos[1] = 6;
    CHECK_OK(kvz_artifact_add_head(w, &m, 0, 0, pos, 2, 0, kv, kv));
    uint8_t *out;
    size_t size;
    assert_int_equal(kvz_artifact_writer_finish(w, &m, &out, &size), KVZ_ERR_ARG); /* heads missing */
    kvz_artifact_writer_free(w);
}

/* Keys 52 (config) and 53 (summary) round-trip; a manifest without them (an
 * older writer) still decodes, with both empty; ids depend on the config. */
static void test_manifest_optional_config(void **state)
{
    (void)state;
    kvz_manifest m, back;
    fill_manifest(&m, 4);
    snprintf(m.config, sizeof m.config, "kvz-config 1 method=kvzip ratio=0.3");
    snprintf(m.summary, sizeof m.summary, "kvzip pair ratio 0.30, 4-bit");
    kvz_buffer b = {0};
    kvz_manifest_encode(&m, &b);
    assert_int_equal(kvz_manifest_decode(b.data, b.len, &back), KVZ_OK);
    assert_string_equal(back.config, m.config);
    assert_string_equal(back.summary, m.summary);
    /* drop the last two records (52 and 53 are written last) */
    size_t cut = b.len - (8 + strlen(m.summary)) - (8 + strlen(m.config));
    assert_int_equal(b.data[cut], 52);
    assert_int_equal(kvz_manifest_decode(b.data, cut, &back), KVZ_OK);
    assert_string_equal(back.config, "");
    assert_string_equal(back.summary, "");
    kvz_buffer_free(&b);

    uint8_t id1[16], id2[16], id3[16];
    kvz_artifact_id(m.config, m.doc_hash, 0, 2, id1);
    kvz_artifact_id(m.config, m.doc_hash, 0, 2, id2);
    kvz_artifact_id(m.config, m.doc_hash, 1, 2, id3);
    assert_memory_equal(id1, id2, 16);
    assert_memory_not_equal(id1, id3, 16);
    assert_true(kvz_config_id(m.config) != kvz_config_id("kvz-config 1 method=kvzip ratio=0.2"));
}

/* An artifact written again under another name (kvz export of a document
 * sharing another's artifact): it opens and verifies, its manifest differs in
 * the name alone, every other section is byte for byte the same, its id too;
 * a name longer than a manifest holds is refused. */
static void test_artifact_with_name(void **state)
{
    (void)state;
    size_t size, renamed_size;
    kvz_manifest m;
    float *keys, *values;
    uint8_t *bytes = build(4, &size, &m, &keys, &values), *renamed;
    kvz_artifact a, b;
    CHECK_OK(kvz_artifact_open(&a, bytes, size));
    CHECK_OK(kvz_artifact_with_name(&a, "archive/public.txt", &renamed, &renamed_size));
    CHECK_OK(kvz_artifact_open(&b, renamed, renamed_size));
    CHECK_OK(kvz_artifact_verify(&b));
    assert_string_equal(b.manifest.doc_name, "archive/public.txt");
    kvz_manifest same = b.manifest; /* both decoded from zeroed structs: equal bytes but the name */
    memcpy(same.doc_name, a.manifest.doc_name, sizeof same.doc_name);
    assert_memory_equal(&same, &a.manifest, sizeof same);
    uint8_t id_a[16], id_b[16];
    kvz_artifact_id(a.manifest.config, a.manifest.doc_hash, a.manifest.segment, a.manifest.n_segments, id_a);
    kvz_artifact_id(b.manifest.config, b.manifest.doc_hash, b.manifest.segment, b.manifest.n_segments, id_b);
    assert_memory_equal(id_a, id_b, 16);
    assert_int_equal(b.n_sections, a.n_sections);
    for (uint32_t i = 0; i < a.n_sections; i++) {
        kvz_section sa, sb;
        kvz_artifact_section_at(&a, i, &sa);
        kvz_artifact_section_at(&b, i, &sb);
        assert_true(sa.kind == sb.kind && sa.layer == sb.layer && sa.head == sb.head && sa.count == sb.count &&
                    sa.aux == sb.aux);
        if (sa.kind == KVZ_SECTION_MANIFEST)
            continue;
        assert_true(sa.transform == sb.transform && sa.compressor == sb.compressor &&
                    sa.raw_bytes == sb.raw_bytes && sa.checksum == sb.checksum);
        assert_int_equal(sa.stored_bytes, sb.stored_bytes);
        assert_memory_equal(a.data + sa.offset, b.data + sb.offset, sa.stored_bytes);
    }
    /* the longest name a manifest holds, and one byte more */
    char name[1025];
    memset(name, 'x', 1023), name[1023] = '\0';
    uint8_t *longest;
    size_t longest_size;
    CHECK_OK(kvz_artifact_with_name(&a, name, &longest, &longest_size));
    CHECK_OK(kvz_artifact_open(&b, longest, longest_size));
    assert_string_equal(b.manifest.doc_name, name);
    name[1023] = 'x', name[1024] = '\0';
    uint8_t *none = bytes;
    size_t none_size = 1;
    assert_int_equal(kvz_artifact_with_name(&a, name, &none, &none_size), KVZ_ERR_ARG);
    assert_null(none);
    assert_int_equal(none_size, 0);
    assert_non_null(strstr(kvz_last_error(), "1024 bytes"));
    /* for a document (export, pack): its own bytes where the manifest names it, else renamed */
    const void *for_doc;
    CHECK_OK(kvz_artifact_for_document(&a, a.manifest.doc_name, &for_doc, &none_size, &none));
    assert_true(for_doc == a.data && none_size == a.size && !none);
    CHECK_OK(kvz_artifact_for_document(&a, "archive/public.txt", &for_doc, &none_size, &none));
    assert_true(for_doc == none && none_size == renamed_size);
    assert_memory_equal(none, renamed, renamed_size);
    free(none);

    /* a record of a key this reader does not know (a later writer's) stays, in its place */
    kvz_buffer records = {0}, out = {0};
    kvz_manifest_encode(&m, &records);
    const uint8_t unknown[12] = {99, 0, 1, 0, 4, 0, 0, 0, 7, 0, 0, 0};
    kvz_buffer_append(&records, unknown, sizeof unknown);
    CHECK_OK(kvz_manifest_renamed(records.data, records.len, "b.txt", &out));
    assert_int_equal(out.len, records.len - strlen(m.doc_name) + strlen("b.txt"));
    assert_memory_equal(out.data + out.len - sizeof unknown, unknown, sizeof unknown);
    kvz_manifest back;
    CHECK_OK(kvz_manifest_decode(out.data, out.len, &back));
    assert_string_equal(back.doc_name, "b.txt");
    kvz_buffer_free(&records), kvz_buffer_free(&out);
    free(bytes), free(renamed), free(longest), free(keys), free(values);
}

static int put_filler(kvz_store_txn *t, void *ctx)
{
    (void)ctx;
    static uint8_t filler[1 << 20];
    return kvz_store_put(t, KVZ_DB_META, "filler", 6, filler, sizeof filler);
}

/* One transaction puts a large value and deletes it: LMDB numbers its pages
 * but never writes them, so a sound data.mdb ends before its last page. */
static void put_and_drop(const char *dir)
{
    static uint8_t big[3 << 20];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0666), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val key = {7, "scratch"}, val = {sizeof big, big};
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
    assert_int_equal(mdb_del(txn, dbi, &key, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static uint64_t file_size(const char *dir)
{
    char path[1100];
    struct stat st;
    snprintf(path, sizeof path, "%.1024s/data.mdb", dir);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t pages_numbered(const char *dir)
{
    MDB_env *env;
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0), 0);
    mdb_env_info(env, &info);
    mdb_env_stat(env, &st);
    mdb_env_close(env);
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

/* A store shorter than its last page is sound when the pages it lacks are
 * free (it opens, extended), and cut short when they are not (refused,
 * never a SIGBUS). */
static void test_store_shorter_than_its_pages(void **state)
{
    (void)state;
    char sound[1024], cut[1024], cmd[3200];
    snprintf(sound, sizeof sound, "%s", test_tmp_path("short-store"));
    snprintf(cut, sizeof cut, "%s", test_tmp_path("cut-store"));
    kvz_store *s;
    CHECK_OK(kvz_store_open(&s, sound, KVZ_STORE_CREATE));
    for (int i = 0; i < 3; i++) /* overwritten: LMDB's free list holds pages */
        CHECK_OK(kvz_store_write(s, put_filler, NULL));
    kvz_store_close(s);
    put_and_drop(sound);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", cut, sound, cut);
    assert_int_equal(system(cmd), 0);
    print_message("after a large put and delete in one transaction: data.mdb %llu bytes, pages numbered to %llu\n",
                  (unsigned long long)file_size(sound), (unsigned long long)pages_numbered(sound));
    assert_true(file_size(sound) < pages_numbered(sound));
    CHECK_OK(kvz_store_open(&s, sound, KVZ_STORE_READONLY));
    kvz_store_close(s);
    assert_int_equal(file_size(sound), pages_numbered(sound)); /* extended */
    char data[1100];
    snprintf(data, sizeof data, "%s/data.mdb", cut);
    assert_int_equal(truncate(data, (off_t)(file_size(cut) / 2 / 4096 * 4096)), 0);
    for (int again = 0; again < 2; again++) { /* the file is left as it was: the same answer twice */
        assert_int_equal(kvz_store_open(&s, cut, KVZ_STORE_READONLY), KVZ_ERR_FORMAT);
        assert_non_null(strstr(kvz_last_error(), "is cut short"));
    }
}

/* A configuration is picked by this store's number, by its id's first digits
 * (the same in every store) or, with neither, as the newest of a model. */
static void test_doc_record_pick(void **state)
{
    uint8_t id[1][16] = {{1}};
    kvz_doc_entry e[3] = {
        {.config_id = 0x1a2b3c4d00000001ull, .model_fingerprint = 5, .created = 30, .n_segments = 1, .artifact_ids = id},
        {.config_id = 0x1a2b3c4d00000002ull, .model_fingerprint = 6, .created = 20, .n_segments = 1, .artifact_ids = id},
        {.config_id = 0x99887766554433ffull, .model_fingerprint = 6, .created = 10, .n_segments = 1, .artifact_ids = id},
    };
    kvz_doc_record rec = {.n_entries = 3, .entries = e};
    const kvz_doc_entry *got;
    kvz_config_pick pick = {.number = 3};
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got));
    assert_ptr_equal(got, &e[2]);
    pick.number = 4;
    assert_int_equal(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got), KVZ_ERR_NOT_FOUND);
    assert_non_null(strstr(kvz_last_error(), "'d' has 3 configuration(s); there is no configuration 4"));
    pick = (kvz_config_pick){.id = 0x99887766, .id_digits = 8};
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got));
    assert_ptr_equal(got, &e[2]);
    pick = (kvz_config_pick){.id = 0x1a2b3c4d00000002ull, .id_digits = 16};
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got));
    assert_ptr_equal(got, &e[1]);
    pick = (kvz_config_pick){.id = 0x1a2b3c4d, .id_digits = 8}; /* two ids begin so */
    assert_int_equal(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got), KVZ_ERR_ARG);
    assert_null(got);
    assert_non_null(strstr(kvz_last_error(), "ids beginning 1a2b3c4d"));
    pick = (kvz_config_pick){.id = 0x0a2b3c4d, .id_digits = 8}; /* leading zeros are digits too */
    assert_int_equal(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got), KVZ_ERR_NOT_FOUND);
    assert_non_null(strstr(kvz_last_error(), "'d' has no configuration 0a2b3c4d"));
    pick = (kvz_config_pick){0}; /* the newest of a model, or of any */
    uint64_t fp = 6, none = 7;
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, &fp, "d", &got));
    assert_ptr_equal(got, &e[1]);
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, NULL, "d", &got));
    assert_ptr_equal(got, &e[0]);
    CHECK_OK(kvz_doc_record_pick(&rec, &pick, &none, "d", &got));
    assert_null(got);
}

/* A document record round-trips; one that holds no entry is refused (kvz
 * files a document with its first configuration, and readers rely on it). */
static void test_doc_record_needs_an_entry(void **state)
{
    uint8_t ids[2][16] = {{1}, {2}};
    kvz_doc_entry e = {.config_id = 7, .model_fingerprint = 9, .n_tokens = 100, .n_segments = 2,
                       .summary = "kvzip pair ratio 0.30, 4-bit", .artifact_ids = ids};
    kvz_doc_record rec = {.doc_hash = {3}, .n_entries = 1, .entries = &e}, back;
    kvz_buffer b = {0};
    kvz_doc_record_encode(&rec, &b);
    CHECK_OK(kvz_doc_record_decode(b.data, b.len, &back));
    assert_int_equal(back.n_entries, 1);
    assert_int_equal(back.entries[0].n_segments, 2);
    assert_memory_equal(back.entries[0].artifact_ids, ids, sizeof ids);
    kvz_doc_record_free(&back);
    kvz_buffer_free(&b);
    rec.n_entries = 0;
    kvz_doc_record_encode(&rec, &b);
    assert_int_equal(kvz_doc_record_decode(b.data, b.len, &back), KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "0 entries"));
    kvz_buffer_free(&b);
}

/* ---- documents and artifacts from elsewhere (merge, unpack) --------------- */

static kvz_doc_entry entry_at(uint64_t config, uint64_t created, uint8_t (*id)[16])
{
    kvz_doc_entry e = {.config_id = config, .model_fingerprint = 9, .created = created, .n_tokens = 10,
                       .n_segments = 1, .summary = "test", .artifact_ids = id};
    return e;
}

static int put_ids(kvz_store_txn *t, void *ctx)
{
    uint8_t (*ids)[16] = ctx;
    for (int i = 0; i < 6; i++)
        KVZ_TRY(kvz_store_put(t, KVZ_DB_ARTIFACTS, ids[i], 16, "x", 1));
    return KVZ_OK;
}

/* The stored record of `name`, decoded (free it with kvz_doc_record_free). */
static void stored_record(kvz_store *s, const char *name, kvz_doc_record *r)
{
    kvz_store_txn *t;
    const void *v;
    size_t len;
    CHECK_OK(kvz_store_read_begin(s, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &v, &len));
    CHECK_OK(kvz_doc_record_decode(v, len, r));
    kvz_store_read_end(t);
}

/* The stored record of `name`: its content hash's first byte and its config ids' sum. */
static void stored(kvz_store *s, const char *name, uint8_t *hash0, uint64_t *configs, uint32_t *n)
{
    kvz_doc_record r;
    stored_record(s, name, &r);
    *hash0 = r.doc_hash[0], *n = r.n_entries, *configs = 0;
    for (uint32_t i = 0; i < r.n_entries; i++)
        *configs += r.entries[i].config_id;
    kvz_doc_record_free(&r);
}

/* The store holds `bytes` under artifact `id`, and nothing else. */
static void assert_stored_artifact(kvz_store *s, const uint8_t id[16], const void *bytes, size_t size)
{
    kvz_store_txn *t;
    const void *v;
    size_t len;
    CHECK_OK(kvz_store_read_begin(s, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_ARTIFACTS, id, 16, &v, &len));
    assert_int_equal(len, size);
    assert_memory_equal(v, bytes, size);
    kvz_store_read_end(t);
}

/* A document from elsewhere goes in whole: content X compiled at times 100
 * and 300, content Y under the same name at 200. Whatever the order, the
 * store ends with X and both its configurations (taken one at a time, X's
 * older one was dropped against Y, or added by a second unpack); at equal
 * times the larger content hash wins, in both orders. */
static void test_transfer_whole_documents(void **state)
{
    (void)state;
    uint8_t ids[6][16] = {{1}, {2}, {3}, {4}, {5}, {6}};
    kvz_doc_entry xe[2] = {entry_at(1, 100, &ids[0]), entry_at(2, 300, &ids[1])}, ye = entry_at(4, 200, &ids[2]);
    kvz_doc_record x = {.doc_hash = {0xa0}, .n_entries = 2, .entries = xe}, y = {.doc_hash = {0xb0}, .n_entries = 1,
                                                                                 .entries = &ye};
    kvz_entry_outcome o[2];
    for (int order = 0; order < 2; order++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", test_tmp_path(order ? "transfer-xy" : "transfer-yx"));
        kvz_store *s;
        CHECK_OK(kvz_store_open(&s, dir, KVZ_STORE_CREATE));
        CHECK_OK(kvz_store_write(s, put_ids, ids));
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &x : &y, o));
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &y : &x, o));
        assert_int_equal(o[0], order ? KVZ_ENTRY_KEPT_NEWER : KVZ_ENTRY_REPLACED);
        if (!order)
            assert_int_equal(o[1], KVZ_ENTRY_REPLACED);
        uint8_t h;
        uint64_t configs;
        uint32_t n;
        stored(s, "doc", &h, &configs, &n);
        assert_int_equal(h, 0xa0), assert_int_equal(n, 2), assert_int_equal(configs, 3);
        CHECK_OK(kvz_transfer_document(s, "doc", &x, o)); /* again: nothing new */
        assert_int_equal(o[0], KVZ_ENTRY_PRESENT), assert_int_equal(o[1], KVZ_ENTRY_PRESENT);
        /* a tie: content 0xc0 at 300, as new as X's newest, wins either way */
        kvz_doc_entry ze = entry_at(8, 300, &ids[3]);
        kvz_doc_record z = {.doc_hash = {0xc0}, .n_entries = 1, .entries = &ze};
        CHECK_OK(kvz_transfer_document(s, order ? "tie" : "doc", &z, o));
        if (order) { /* "tie": Z first, then X */
            CHECK_OK(kvz_transfer_document(s, "tie", &x, o));
            assert_int_equal(o[0], KVZ_ENTRY_KEPT_NEWER);
        } else {
            assert_int_equal(o[0], KVZ_ENTRY_REPLACED);
        }
        stored(s, order ? "tie" : "doc", &h, &configs, &n);
        assert_int_equal(h, 0xc0), assert_int_equal(n, 1), assert_int_equal(configs, 8);
        /* an artifact missing from the store: nothing filed */
        uint8_t absent[1][16] = {{0xee}};
        kvz_doc_entry me = entry_at(16, 400, absent);
        kvz_doc_record missing = {.doc_hash = {0xd0}, .n_entries = 1, .entries = &me};
        assert_int_equal(kvz_transfer_document(s, "doc", &missing, o), KVZ_ERR_NOT_FOUND);
        kvz_store_close(s);
    }
}

/* The same configuration of the same content, compiled at another time
 * elsewhere: the store keeps the later time, so that the document's newest
 * configuration (the one a query loads by default) is the same whatever order
 * stores and bundles arrive in. */
static void test_transfer_takes_later_times(void **state)
{
    (void)state;
    uint8_t ids[6][16] = {{1}, {2}, {3}, {4}, {5}, {6}}; /* as put_ids puts them */
    kvz_doc_entry first[2] = {entry_at(1, 100, &ids[0]), entry_at(2, 300, &ids[1])};
    kvz_doc_entry again = entry_at(1, 500, &ids[0]), older = entry_at(2, 50, &ids[1]);
    kvz_doc_record a = {.doc_hash = {0xa0}, .n_entries = 2, .entries = first};
    kvz_doc_record b = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &again};
    kvz_doc_record c = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &older};
    kvz_store *s;
    CHECK_OK(kvz_store_open(&s, test_tmp_path("transfer-times"), KVZ_STORE_CREATE));
    CHECK_OK(kvz_store_write(s, put_ids, ids));
    kvz_entry_outcome o[2];
    CHECK_OK(kvz_transfer_document(s, "doc", &a, o));
    CHECK_OK(kvz_transfer_document(s, "doc", &b, o));
    assert_int_equal(o[0], KVZ_ENTRY_PRESENT);
    CHECK_OK(kvz_transfer_document(s, "doc", &c, o));
    assert_int_equal(o[0], KVZ_ENTRY_PRESENT);
    kvz_doc_record r;
    stored_record(s, "doc", &r);
    assert_int_equal(r.n_entries, 2);
    assert_int_equal(kvz_doc_record_find(&r, 1)->created, 500); /* the later time taken */
    assert_int_equal(kvz_doc_record_find(&r, 2)->created, 300); /* an earlier one left alone */
    assert_int_equal(kvz_doc_record_newest(&r, NULL)->config_id, 1);
    kvz_doc_record_free(&r);
    kvz_store_close(s);
}

/* One configuration of one content cut into other segments (other ids: a kvz
 * before 0.3.3 cut some documents otherwise): the later compile's form stays
 * whatever order the two arrive in, at equal times the larger ids; and a
 * form's bytes are those of the artifacts the store holds. */
static void test_transfer_other_cut_by_time(void **state)
{
    (void)state;
    uint8_t ids[6][16] = {{1}, {2}, {3}, {4}, {5}, {6}}; /* as put_ids puts them: 1 byte each */
    kvz_doc_entry old_cut = entry_at(1, 100, &ids[0]), new_cut = entry_at(1, 200, &ids[1]);
    old_cut.stored_bytes = new_cut.stored_bytes = 999; /* what the sender counted */
    kvz_doc_record older = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &old_cut};
    kvz_doc_record newer = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &new_cut};
    for (int order = 0; order < 2; order++) {
        kvz_store *s;
        CHECK_OK(kvz_store_open(&s, test_tmp_path(order ? "cut-time-on" : "cut-time-no"), KVZ_STORE_CREATE));
        CHECK_OK(kvz_store_write(s, put_ids, ids));
        kvz_entry_outcome o;
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &newer : &older, &o));
        assert_int_equal(o, KVZ_ENTRY_ADDED);
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &older : &newer, &o));
        assert_int_equal(o, order ? KVZ_ENTRY_CUT_KEPT : KVZ_ENTRY_CUT_REPLACED);
        kvz_doc_record r;
        stored_record(s, "doc", &r);
        assert_int_equal(r.n_entries, 1);
        assert_int_equal(r.entries[0].created, 200);
        assert_memory_equal(r.entries[0].artifact_ids[0], ids[1], 16);
        assert_int_equal(r.entries[0].stored_bytes, 1); /* the stored artifact's, not the 999 said */
        kvz_doc_record_free(&r);
        kvz_store_close(s);
    }
    /* at equal times the larger ids, in both orders */
    kvz_doc_entry tie_a = entry_at(1, 300, &ids[2]), tie_b = entry_at(1, 300, &ids[3]);
    kvz_doc_record ra = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &tie_a};
    kvz_doc_record rb = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &tie_b};
    for (int order = 0; order < 2; order++) {
        kvz_store *s;
        CHECK_OK(kvz_store_open(&s, test_tmp_path(order ? "cut-tie-ab" : "cut-tie-ba"), KVZ_STORE_CREATE));
        CHECK_OK(kvz_store_write(s, put_ids, ids));
        kvz_entry_outcome o;
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &ra : &rb, &o));
        CHECK_OK(kvz_transfer_document(s, "doc", order ? &rb : &ra, &o));
        kvz_doc_record r;
        stored_record(s, "doc", &r);
        assert_memory_equal(r.entries[0].artifact_ids[0], ids[3], 16);
        kvz_doc_record_free(&r);
        kvz_store_close(s);
    }
}

/* Content that loses to the store's under its name is known before any of
 * its artifacts is written (kvz_transfer_loses), and its document put then
 * needs none of them; content that wins still needs them all. */
static void test_transfer_losing_content_needs_no_artifacts(void **state)
{
    (void)state;
    uint8_t ids[6][16] = {{1}, {2}, {3}, {4}, {5}, {6}}, absent[1][16] = {{0x99}};
    kvz_doc_entry stored = entry_at(1, 300, &ids[0]), old = entry_at(2, 200, absent), young = entry_at(2, 400, absent);
    kvz_doc_record a = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &stored};
    kvz_doc_record b_old = {.doc_hash = {0xb0}, .n_entries = 1, .entries = &old};
    kvz_doc_record b_young = {.doc_hash = {0xb0}, .n_entries = 1, .entries = &young};
    kvz_doc_record a_again = {.doc_hash = {0xa0}, .n_entries = 1, .entries = &old};
    kvz_store *s;
    CHECK_OK(kvz_store_open(&s, test_tmp_path("transfer-loses"), KVZ_STORE_CREATE));
    CHECK_OK(kvz_store_write(s, put_ids, ids));
    int loses = 1;
    CHECK_OK(kvz_transfer_loses(s, "doc", &a, &loses)); /* no such name yet */
    assert_int_equal(loses, 0);
    kvz_entry_outcome o;
    CHECK_OK(kvz_transfer_document(s, "doc", &a, &o));
    CHECK_OK(kvz_transfer_loses(s, "doc", &b_old, &loses));
    assert_int_equal(loses, 1);
    CHECK_OK(kvz_transfer_document(s, "doc", &b_old, &o)); /* its artifact absent: not needed */
    assert_int_equal(o, KVZ_ENTRY_KEPT_NEWER);
    CHECK_OK(kvz_transfer_loses(s, "doc", &a_again, &loses)); /* the same content never loses */
    assert_int_equal(loses, 0);
    CHECK_OK(kvz_transfer_loses(s, "doc", &b_young, &loses));
    assert_int_equal(loses, 0);
    assert_int_equal(kvz_transfer_document(s, "doc", &b_young, &o), KVZ_ERR_NOT_FOUND);
    kvz_error_clear();
    kvz_store_close(s);
}

/* A stored artifact that fails its checks is replaced by a good copy brought
 * again (unpack or merge mends a damaged store); a sound one with other bytes
 * (the same configuration compiled at another time) and the same bytes stay;
 * one of other tokens under the same id (a document cut into segments
 * otherwise by a kvz before 0.3.3) is replaced by the incoming one where the
 * whole form comes with it, kept for a losing document, else refused. */
static void test_transfer_mends_damaged_artifacts(void **state)
{
    (void)state;
    size_t size;
    kvz_manifest m;
    float *keys, *values;
    uint8_t *good = build(4, &size, &m, &keys, &values), *damaged = malloc(size), id[16] = {7};
    memcpy(damaged, good, size);
    damaged[size / 2] ^= 0x40;
    kvz_store *s;
    CHECK_OK(kvz_store_open(&s, test_tmp_path("transfer-mend"), KVZ_STORE_CREATE));
    kvz_artifact_outcome o;
    CHECK_OK(kvz_transfer_artifact(s, id, damaged, size, 0, &o)); /* as if damaged on disk later */
    assert_int_equal(o, KVZ_ARTIFACT_ADDED);
    CHECK_OK(kvz_transfer_artifact(s, id, good, size, 0, &o));
    assert_int_equal(o, KVZ_ARTIFACT_REPAIRED);
    CHECK_OK(kvz_transfer_artifact(s, id, good, size, 0, &o));
    assert_int_equal(o, KVZ_ARTIFACT_PRESENT);
    size_t other_size;
    kvz_manifest other_m;
    float *other_keys, *other_values; /* sound, other bytes: stays */
    uint8_t *other = build(8, &other_size, &other_m, &other_keys, &other_values);
    CHECK_OK(kvz_transfer_artifact(s, id, other, other_size, 0, &o));
    assert_int_equal(o, KVZ_ARTIFACT_OTHER_BYTES); /* said, not taken for the same */
    assert_stored_artifact(s, id, good, size);
    size_t cut_size;
    kvz_manifest cut_m;
    float *cut_keys, *cut_values;
    build_token_shift = 1, build_created = 10; /* compiled after `good` (time 0) */
    uint8_t *cut_otherwise = build(4, &cut_size, &cut_m, &cut_keys, &cut_values);
    build_token_shift = 0, build_created = 0;
    kvz_artifact a;
    CHECK_OK(kvz_artifact_open(&a, good, size));
    int32_t tokens[TOKENS];
    CHECK_OK(kvz_artifact_read_tokens(&a, tokens));
    assert_true(kvz_artifact_holds_tokens(&a, tokens, TOKENS));
    assert_false(kvz_artifact_holds_tokens(&a, tokens, TOKENS - 1));
    tokens[TOKENS - 1] ^= 1;
    assert_false(kvz_artifact_holds_tokens(&a, tokens, TOKENS));
    /* one segment alone would mix the cuts: refused; for a losing document: kept */
    assert_int_equal(kvz_transfer_artifact(s, id, cut_otherwise, cut_size, 0, &o), KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "cut otherwise"));
    kvz_error_clear();
    CHECK_OK(kvz_transfer_artifact(s, id, cut_otherwise, cut_size, KVZ_TRANSFER_HELD_ONLY, &o));
    assert_int_equal(o, KVZ_ARTIFACT_OTHER_BYTES);
    CHECK_OK(kvz_transfer_artifact(s, id, cut_otherwise, cut_size, KVZ_TRANSFER_WHOLE_FORM, &o));
    assert_int_equal(o, KVZ_ARTIFACT_RECUT);
    assert_stored_artifact(s, id, cut_otherwise, cut_size);
    /* the earlier cut brought again, whole: the later one stays, whatever the order */
    CHECK_OK(kvz_transfer_artifact(s, id, good, size, KVZ_TRANSFER_WHOLE_FORM, &o));
    assert_int_equal(o, KVZ_ARTIFACT_NEWER_CUT);
    assert_stored_artifact(s, id, cut_otherwise, cut_size);
    /* the way of cutting decides before the time (every segment of a form alike): a
     * kvz 0.3.2 cut compiled later still gives way to the current cut */
    size_t old_size;
    kvz_manifest old_m;
    float *old_keys, *old_values;
    build_created = 50, build_compiler = "kvz 0.3.2";
    uint8_t *old_cut = build(4, &old_size, &old_m, &old_keys, &old_values);
    build_created = 0, build_compiler = NULL;
    CHECK_OK(kvz_transfer_artifact(s, id, old_cut, old_size, KVZ_TRANSFER_WHOLE_FORM, &o));
    assert_int_equal(o, KVZ_ARTIFACT_NEWER_CUT);
    free(old_cut), free(old_keys), free(old_values);
    kvz_store_close(s);
    free(good), free(damaged), free(other), free(keys), free(values), free(other_keys), free(other_values);
    free(cut_otherwise), free(cut_keys), free(cut_values);
}

static int folder_entries(const char *dir, char first[256])
{
    DIR *d = opendir(dir);
    int n = 0;
    first[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && n++ == 0)
            snprintf(first, 256, "%s", e->d_name);
    if (d)
        closedir(d);
    return n;
}

/* `dir` holds one entry, the file `target` (named `name`) holding exactly `text`. */
static void assert_only_file_holds(const char *dir, const char *target, const char *name, const char *text)
{
    char first[256];
    assert_int_equal(folder_entries(dir, first), 1);
    assert_string_equal(first, name);
    char *back = NULL;
    size_t size = 0;
    CHECK_OK(kvz_read_file(target, &back, &size));
    assert_int_equal(size, strlen(text));
    assert_memory_equal(back, text, size);
    free(back);
}

/* A process killed while it writes an atomic file leaves nothing beside the
 * target where the file system makes unnamed files (O_TMPFILE), else only
 * its named temporary; a commit leaves the file whole and nothing else. */
static void test_atomic_file_killed_while_writing(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("atomic");
    assert_int_equal(mkdir(dir, 0700), 0);
    char target[300], first[256];
    snprintf(target, sizeof target, "%s/out.bin", dir);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        static char block[1 << 16];
        kvz_atomic_file f;
        if (kvz_atomic_file_open(&f, target) != KVZ_OK || kvz_atomic_file_write(&f, block, sizeof block) != KVZ_OK ||
            fflush(f.fp) != 0)
            _exit(1);
        if (write(ready[1], "w", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    close(ready[0]), close(ready[1]);
    int unnamed_made = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (unnamed_made >= 0) {
        close(unnamed_made);
        assert_int_equal(folder_entries(dir, first), 0);
    } else { /* the fallback: its own name, `<target>.tmp.<pid>.<n>` */
        fprintf(stderr, "(%s makes no unnamed files: %s)\n", dir, strerror(errno));
        assert_int_equal(folder_entries(dir, first), 1);
        assert_non_null(strstr(first, "out.bin.tmp."));
        char left[600];
        snprintf(left, sizeof left, "%s/%s", dir, first);
        remove(left);
    }
    CHECK_OK(kvz_atomic_file_put(target, "whole", 5));
    assert_only_file_holds(dir, target, "out.bin", "whole");
    remove(target);
}

/* rename(2) for this program: kvz's own calls land here (a static link takes
 * the program's definition before libc's), so a test can make them fail. */
static int renames_fail;
int rename(const char *from, const char *to)
{
    if (renames_fail) {
        errno = EXDEV;
        return -1;
    }
    return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

/* An atomic file that is new needs no rename where the file system makes
 * unnamed files: it is linked in place whole (nothing to leave behind between
 * a link and a rename); one that replaces a file still renames, and a rename
 * that fails leaves the old file and no temporary. */
static void test_atomic_file_new_target_linked_in_place(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("atomic-link");
    assert_int_equal(mkdir(dir, 0700), 0);
    int unnamed_made = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (unnamed_made < 0) {
        fprintf(stderr, "(%s makes no unnamed files: %s; every commit renames)\n", dir, strerror(errno));
        rmdir(dir);
        return;
    }
    close(unnamed_made);
    char target[300];
    snprintf(target, sizeof target, "%s/out.bin", dir);
    renames_fail = 1;
    CHECK_OK(kvz_atomic_file_put(target, "whole", 5));
    assert_int_equal(kvz_atomic_file_put(target, "other", 5), KVZ_ERR_IO);
    assert_non_null(strstr(kvz_last_error(), "cannot rename into"));
    renames_fail = 0;
    assert_only_file_holds(dir, target, "out.bin", "whole");
    CHECK_OK(kvz_atomic_file_put(target, "other", 5));
    assert_only_file_holds(dir, target, "out.bin", "other");
    CHECK_OK(kvz_sync_folder(dir));
    CHECK_OK(kvz_sync_folder_of(target));
    remove(target);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(kvz_sync_folder(dir), KVZ_ERR_IO); /* gone: it could not be synced */
}

/* This process's POSIX locks on `path` (LMDB's on lock.mdb), from /proc/locks. */
static int posix_locks_on(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen("/proc/locks", "re");
    assert_non_null(f);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        long pid;
        unsigned long major, minor, inode;
        char kind[16];
        if (sscanf(line, "%*[^:]: %15s %*s %*s %ld %lx:%lx:%lu", kind, &pid, &major, &minor, &inode) == 5 &&
            strcmp(kind, "POSIX") == 0 && pid == (long)getpid() && inode == (unsigned long)st.st_ino)
            n++;
    }
    fclose(f);
    return n;
}

static void read_version(kvz_store *s)
{
    kvz_store_txn *t;
    const void *v;
    size_t len;
    CHECK_OK(kvz_store_read_begin(s, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_META, "store_version", 13, &v, &len));
    assert_int_equal(len, strlen(KVZ_STORE_VERSION));
    kvz_store_read_end(t);
}

/* A document listed as a regular file and found a FIFO when read (swapped in
 * between) is an error at once, not an open that waits for a writer. */
static void test_read_regular_file_refuses_a_fifo(void **state)
{
    (void)state;
    const char *fifo = test_tmp_path("swapped.txt");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(20); /* a blocked open ends the test, failed */
    char *data = NULL;
    size_t size = 0;
    assert_int_equal(kvz_read_regular_file_at_most(fifo, 100, &data, &size), KVZ_ERR_IO);
    assert_non_null(strstr(kvz_last_error(), "not a regular file"));
    assert_null(data);
    remove(fifo);
    const char *file = test_tmp_path("plain.txt");
    CHECK_OK(kvz_atomic_file_put(file, "0123456789", 10));
    CHECK_OK(kvz_read_regular_file_at_most(file, 100, &data, &size));
    assert_int_equal(size, 10);
    assert_memory_equal(data, "0123456789", 10);
    free(data);
    CHECK_OK(kvz_read_regular_file_at_most(file, 4, &data, &size)); /* past the limit: more than it */
    assert_true(size > 4);
    free(data);
    alarm(0);
    remove(file);
}

/* A child process that grows the store's map past what this process mapped
 * (a nightly compile beside a service) by writing `bytes` under "big". */
static int put_big(kvz_store_txn *t, void *ctx)
{
    const size_t *bytes = ctx;
    void *zero = calloc(1, *bytes);
    int rc = zero ? kvz_store_put(t, KVZ_DB_META, "big", 3, zero, *bytes) : KVZ_ERR_NOMEM;
    free(zero);
    return rc;
}

/* Readers killed inside a read keep their LMDB reader slots. With 256 of them
 * taken by dead processes while this process keeps the store open (a
 * service's engine), a read here frees them and goes on instead of failing
 * with every slot taken. */
static void test_store_reads_after_killed_readers(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("dead-readers");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    kvz_store *s = NULL;
    CHECK_OK(kvz_store_open(&s, dir, KVZ_STORE_CREATE));
    kvz_store_close(s);
    CHECK_OK(kvz_store_open(&s, dir, KVZ_STORE_READONLY)); /* open before the readers die */
    int held = 0;
    for (int i = 0; i < 260; i++) {
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) { /* its own environment (not the parent's, across fork), a read, then gone */
            MDB_env *env;
            MDB_txn *txn;
            _exit(mdb_env_create(&env) == 0 && mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0) == 0 &&
                          mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0
                      ? 0
                      : 1);
        }
        int status = -1;
        assert_int_equal(waitpid(child, &status, 0), child);
        held += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    assert_int_equal(held, 256); /* every slot taken by a process now dead */
    kvz_store_txn *t = NULL;
    CHECK_OK(kvz_store_read_begin(s, &t));
    kvz_store_read_end(t);
    kvz_store_close(s);
}

/* Wait for a forked child that _exit()s 0 when its checks held. */
static void assert_child_passed(pid_t child)
{
    int status = -1;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void grow_in_child(const char *dir, size_t bytes)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        kvz_store *w = NULL;
        _exit(kvz_store_open(&w, dir, 0) == KVZ_OK && kvz_store_write(w, put_big, &bytes) == KVZ_OK ? 0 : 1);
    }
    assert_child_passed(child);
}

typedef struct held_read {
    kvz_store *store;
    int opened[2], release[2]; /* pipes: the read is open; end it now */
} held_read;

static void *hold_a_read(void *arg)
{
    held_read *h = arg;
    kvz_store_txn *t = NULL;
    char c = kvz_store_read_begin(h->store, &t) == KVZ_OK ? 'r' : 'x';
    if (write(h->opened[1], &c, 1) != 1 || read(h->release[0], &c, 1) != 1)
        c = 'x';
    usleep(300 * 1000); /* the other thread is waiting in its read_begin by now */
    kvz_store_read_end(t);
    return NULL;
}

/* A second waiter: begins a read, says how long that took, holds it 1.5 s. */
typedef struct timed_read {
    kvz_store *store;
    int rc;
    double waited;
} timed_read;

static void *time_a_read(void *arg)
{
    timed_read *w = arg;
    kvz_store_txn *t = NULL;
    double t0 = kvz_now_seconds();
    w->rc = kvz_store_read_begin(w->store, &t);
    w->waited = kvz_now_seconds() - t0;
    usleep(1500 * 1000);
    kvz_store_read_end(t);
    return NULL;
}

/* The store grown by another process while a thread of this one reads it: a
 * read begun on another thread waits for that read to end, remaps and goes
 * on (it failed with KVZ_ERR_IO: every request of a service that overlapped
 * a load failed at each growth); of two such waiters, the one that does not
 * remap goes on with the other's remap, never waiting for the other's read;
 * a thread that holds a read itself is told at once, never left waiting for
 * itself. */
static void test_store_growth_waits_for_other_threads_reads(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("growth");
    kvz_store *w, *r;
    CHECK_OK(kvz_store_open_sized(&w, dir, KVZ_STORE_CREATE, 64 << 10));
    kvz_store_close(w);
    CHECK_OK(kvz_store_open(&r, dir, KVZ_STORE_READONLY));
    held_read h = {.store = r};
    assert_int_equal(pipe(h.opened), 0);
    assert_int_equal(pipe(h.release), 0);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, hold_a_read, &h), 0);
    char c = 0;
    assert_int_equal(read(h.opened[0], &c, 1), 1);
    assert_int_equal(c, 'r');
    grow_in_child(dir, 1 << 20);
    alarm(60);
    timed_read other = {.store = r};
    pthread_t waiter;
    assert_int_equal(pthread_create(&waiter, NULL, time_a_read, &other), 0);
    usleep(100 * 1000); /* waiting too, by now */
    assert_int_equal(write(h.release[1], "g", 1), 1);
    double t0 = kvz_now_seconds();
    kvz_store_txn *t = NULL;
    CHECK_OK(kvz_store_read_begin(r, &t));
    double waited = kvz_now_seconds() - t0;
    const void *val;
    size_t len = 0;
    CHECK_OK(kvz_store_get(t, KVZ_DB_META, "big", 3, &val, &len));
    assert_int_equal(len, 1 << 20);
    pthread_join(thread, NULL);
    pthread_join(waiter, NULL);
    CHECK_OK(other.rc);
    assert_true(waited > 0.1); /* it waited for the first thread's read (300 ms) */
    assert_true(waited < 1.2 && other.waited < 1.2); /* and neither for the other's (1.5 s) */
    /* this thread's own read open, the store grown again: an error at once */
    grow_in_child(dir, 8 << 20);
    kvz_store_txn *second = NULL;
    assert_int_equal(kvz_store_read_begin(r, &second), KVZ_ERR_IO);
    assert_non_null(strstr(kvz_last_error(), "this thread began one"));
    kvz_store_read_end(t);
    CHECK_OK(kvz_store_read_begin(r, &second));
    CHECK_OK(kvz_store_get(second, KVZ_DB_META, "big", 3, &val, &len));
    assert_int_equal(len, 8 << 20);
    kvz_store_read_end(second);
    alarm(0);
    kvz_store_close(r);
    for (int i = 0; i < 2; i++)
        close(h.opened[i]), close(h.release[i]);
}

/* Whether a read of the store finds "big" (what grow_in_child writes). */
static int finds_big(kvz_store *s)
{
    kvz_store_txn *t = NULL;
    const void *val;
    size_t len = 0;
    CHECK_OK(kvz_store_read_begin(s, &t));
    int found = kvz_store_get(t, KVZ_DB_META, "big", 3, &val, &len) == KVZ_OK;
    kvz_store_read_end(t);
    return found;
}

/* A store opened read-only before its creator committed anything (a service
 * started beside the first nightly compile) reads as empty, then as what the
 * creator wrote: it stayed empty until reopened. Both ways a creation can be
 * caught: an empty data.mdb, and LMDB's meta pages without kvz's databases. */
static void test_store_empty_then_written(void **state)
{
    (void)state;
    for (int lmdb_pages = 0; lmdb_pages < 2; lmdb_pages++) {
        const char *dir = test_tmp_path(lmdb_pages ? "late-pages" : "late-empty");
        char data[300];
        snprintf(data, sizeof data, "%s/data.mdb", dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        if (lmdb_pages) { /* what mdb_env_open leaves before the first commit */
            MDB_env *env;
            assert_int_equal(mdb_env_create(&env), 0);
            assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
            mdb_env_close(env);
        } else {
            CHECK_OK(kvz_atomic_file_put(data, "", 0));
        }
        kvz_store *r, *again, *w;
        CHECK_OK(kvz_store_open(&r, dir, KVZ_STORE_READONLY));
        assert_false(finds_big(r));
        grow_in_child(dir, 4096);
        assert_true(finds_big(r));
        /* a second open in the process shares the environment it opened then (two would
         * drop each other's locks on lock.mdb), and a writer beside it is refused */
        CHECK_OK(kvz_store_open(&again, dir, KVZ_STORE_READONLY));
        assert_ptr_equal(again, r);
        assert_int_equal(kvz_store_open(&w, dir, 0), KVZ_ERR_ARG);
        kvz_store_close(again);
        kvz_store_close(r);
    }
}

/* Two opens of one store in a process (an engine opened before the old one
 * is closed) share its LMDB environment: closing one leaves the other's
 * locks on lock.mdb (a second environment's close dropped every lock the
 * process held there, and a writer elsewhere could take its reader slots). */
static void test_store_opened_twice_keeps_its_locks(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("twice");
    char lock[300];
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    kvz_store *w, *a, *b;
    CHECK_OK(kvz_store_open(&w, dir, KVZ_STORE_CREATE));
    kvz_store_close(w);
    CHECK_OK(kvz_store_open(&a, dir, KVZ_STORE_READONLY));
    read_version(a);
    int held = posix_locks_on(lock);
    assert_true(held > 0);
    CHECK_OK(kvz_store_open(&b, dir, KVZ_STORE_READONLY));
    read_version(b);
    kvz_store_close(a);
    assert_int_equal(posix_locks_on(lock), held);
    read_version(b);
    /* a read-only environment cannot write: a writer beside it is refused, said */
    assert_int_equal(kvz_store_open(&w, dir, 0), KVZ_ERR_ARG);
    assert_non_null(strstr(kvz_last_error(), "open read-only in this process"));
    kvz_store_close(b);
    assert_int_equal(posix_locks_on(lock), 0);
    /* a writer's store serves a reader beside it; an open that needs the store alone waits for neither */
    CHECK_OK(kvz_store_open(&w, dir, 0));
    CHECK_OK(kvz_store_open(&a, dir, KVZ_STORE_READONLY));
    assert_int_equal(kvz_store_open(&b, dir, KVZ_STORE_EXCLUSIVE), KVZ_ERR_IO);
    kvz_store_close(w);
    read_version(a);
    kvz_store_close(a);
    CHECK_OK(kvz_store_open(&b, dir, KVZ_STORE_EXCLUSIVE));
    kvz_store_close(b);
    /* a child of fork opens the store anew (its parent's environment is not its to use, nor its
     * parent's locks): it holds its own while it reads; a read of the parent's is refused */
    CHECK_OK(kvz_store_open(&a, dir, KVZ_STORE_READONLY));
    read_version(a);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        kvz_store *mine = NULL;
        kvz_store_txn *t = NULL;
        kvz_store_txn *theirs = NULL;
        int ok = kvz_store_read_begin(a, &theirs) == KVZ_ERR_ARG && !theirs &&
                 strstr(kvz_last_error(), "child of fork") != NULL;
        ok = ok && kvz_store_open(&mine, dir, KVZ_STORE_READONLY) == KVZ_OK && mine != a &&
             kvz_store_read_begin(mine, &t) == KVZ_OK && posix_locks_on(lock) > 0;
        kvz_store_close(a); /* the parent's: closing its descriptors would drop this process's own locks */
        ok = ok && posix_locks_on(lock) > 0;
        _exit(ok ? 0 : 1);
    }
    assert_child_passed(child);
    read_version(a);
    kvz_store_close(a);
}

/* mdb_reader_list's lines: whether one names process `pid` (ctx). */
static int names_reader(const char *msg, void *ctx)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%10d ", *(int *)ctx);
    if (strstr(msg, pid))
        *(int *)ctx = -1;
    return 0;
}

/* A store without its lock.mdb (mdb_copy -c's, a backup's) opened by root:
 * the lock.mdb made for it is data.mdb's owner's, and making it costs none of
 * LMDB's locks on it. Closing any descriptor of lock.mdb drops every POSIX
 * lock the process holds there, LMDB's "in use" lock among them: the next
 * process to open the store (a nightly compile) found itself alone and wiped
 * the reader table, this process's open reads with it, whose pages its
 * writes could then reuse. */
static void test_store_lock_file_made_by_root_keeps_locks(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: root makes lock.mdb as another user's\n");
        return;
    }
    const char *dir = test_tmp_path("no-lock-file");
    char data[300], lock[300];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    kvz_store *s;
    CHECK_OK(kvz_store_open(&s, dir, KVZ_STORE_CREATE));
    kvz_store_close(s);
    assert_int_equal(unlink(lock), 0);
    assert_int_equal(chown(data, 65534, 65534), 0);
    CHECK_OK(kvz_store_open(&s, dir, KVZ_STORE_READONLY));
    struct stat st;
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_uid, 65534);
    kvz_store_txn *t;
    CHECK_OK(kvz_store_read_begin(s, &t));
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* another process opens the store: it must still see the parent's read */
        MDB_env *env;
        int reader = (int)getppid();
        int ok = mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
                 mdb_env_set_maxreaders(env, 256) == 0 && mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0) == 0 &&
                 mdb_reader_list(env, names_reader, &reader) >= 0 && reader == -1;
        _exit(ok ? 0 : 1);
    }
    assert_child_passed(child);
    kvz_store_read_end(t);
    kvz_store_close(s);
}

/* The ways kvz has cut documents into segments under the same ids (SPEC §8):
 * before 0.3.3, to 0.3.10 (a long line at a token count), since 0.3.11. */
static void test_cut_eras(void **state)
{
    (void)state;
    static const struct {
        const char *compiler;
        int era;
    } cases[] = {{"kvz 0.1.1", 0}, {"kvz 0.3.2", 0}, {"kvz 0.3.3", 1}, {"kvz 0.3.10", 1}, {"kvz 0.3.11", 2},
                 {"kvz 0.4.0", 2}, {"kvz 1.0.0", 2}, {"another writer", 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvz_manifest m = {0};
        snprintf(m.compiler, sizeof m.compiler, "%s", cases[i].compiler);
        assert_int_equal(kvz_manifest_cut_era(&m), cases[i].era);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantization_error_bound),
        cmocka_unit_test(test_error_context_chain),
        cmocka_unit_test(test_codecs),
        cmocka_unit_test(test_round_trip_every_bit_width),
        cmocka_unit_test(test_every_flip_and_truncation),
        cmocka_unit_test(test_model_mismatch_names_both),
        cmocka_unit_test(test_open_is_linear_in_heads),
        cmocka_unit_test(test_writer_refuses_bad_input),
        cmocka_unit_test(test_manifest_optional_config),
        cmocka_unit_test(test_artifact_with_name),
        cmocka_unit_test(test_store_shorter_than_its_pages),
        cmocka_unit_test(test_doc_record_needs_an_entry),
        cmocka_unit_test(test_doc_record_pick),
        cmocka_unit_test(test_transfer_whole_documents),
        cmocka_unit_test(test_transfer_takes_later_times),
        cmocka_unit_test(test_transfer_losing_content_needs_no_artifacts),
        cmocka_unit_test(test_transfer_mends_damaged_artifacts),
        cmocka_unit_test(test_atomic_file_killed_while_writing),
        cmocka_unit_test(test_atomic_file_new_target_linked_in_place),
        cmocka_unit_test(test_read_regular_file_refuses_a_fifo),
        cmocka_unit_test(test_store_opened_twice_keeps_its_locks),
        cmocka_unit_test(test_store_lock_file_made_by_root_keeps_locks),
        cmocka_unit_test(test_store_growth_waits_for_other_threads_reads),
        cmocka_unit_test(test_store_empty_then_written),
        cmocka_unit_test(test_store_reads_after_killed_readers),
        cmocka_unit_test(test_cut_eras),
        cmocka_unit_test(test_transfer_other_cut_by_time),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
