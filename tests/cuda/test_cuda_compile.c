/*
 * test_cuda_compile.c — the same compile on the CPU and on CUDA: the kept
 * positions agree (up to near-ties moved by f16 arithmetic; the overlap is
 * stated and bounded) and the artifacts decode to the same keys and values
 * within quantization error; the same question asked of the loaded artifacts
 * gets the same greedy answer, also when they are staged a head at a time and
 * when two sessions of one engine ask at once on two threads (each on its own
 * stream). Each check runs on the default model (tests
 * named *_real) and on a random-weight model of its shape (*_synthetic, one
 * token per byte); KVzip and the runtime also on a random-weight qwen2 model
 * (*_synthetic_qwen2) and on one with Llama 3.1's RoPE frequency factors
 * (*_synthetic_rope_freqs). Needs an NVIDIA GPU.
 */
#include "../unit/test_util.h"

#include <math.h>
#include <pthread.h>

#include "kvz.h"

#include "compiler/compile.h"
#include "format/artifact.h"
#include "format/doc_record.h"
#include "format/store.h"
#include "kernels/ggml_types.h"
#include "model/model.h"
#include "model/synth_model.h"
#include "runtime/runtime.h"

enum { REAL, SYNTHETIC, QWEN2, ROPE_FREQS };

/* The model: the default one (REAL), or a random-weight one, made once: of
 * the default model's shape with fewer layers (SYNTHETIC), of the qwen2
 * architecture (QWEN2: q, k and v biases, RoPE on the halves of a head), or
 * the default model's shape with Llama 3.1's RoPE frequency factors for an
 * original context of 64 tokens, so that they turn most pairs here (ROPE_FREQS). */
static const char *model_path_of(int which)
{
    static char paths[4][256];
    char *path = paths[which];
    if (which == REAL)
        return test_model_path();
    if (!path[0]) {
        kvz_synth_spec spec;
        CHECK_OK(kvz_synth_preset(which == QWEN2 ? "qwen2-0.5b" : "smollm2-135m", &spec));
        spec.n_layers = GPU_OR_EMULATED(8, 4);
        spec.weight_type = KVZ_GGML_Q4_1; /* the default model's type */
        if (which == QWEN2)
            spec.n_layers = GPU_OR_EMULATED(6, 2), spec.vocab = 8192;
        if (which == ROPE_FREQS)
            spec.n_layers = GPU_OR_EMULATED(6, 2), spec.vocab = 8192, spec.rope_freqs_ctx = 64;
        static const char *const files[] = {"", "synth-smollm2.gguf", "synth-qwen2.gguf", "synth-rope-freqs.gguf"};
        snprintf(path, 256, "%s", test_tmp_path(files[which]));
        CHECK_OK(kvz_synth_model_write(path, &spec));
    }
    return path;
}

/* The document: the real model reads all of it (about 1,100 tokens); the
 * synthetic one, a token per byte, its first 2,000 bytes. Under CUDA emulated
 * on the CPU, less of it: a few hundred tokens each. */
static char *document(int synthetic, size_t *len)
{
    char *text;
    CHECK_OK(kvz_read_file("tests/data/gpl3_excerpt.txt", &text, len));
    size_t keep = synthetic ? GPU_OR_EMULATED(2000, 400) : GPU_OR_EMULATED(*len, 1400);
    if (*len > keep)
        text[*len = keep] = 0;
    return text;
}

static uint8_t *compile_on(kvz_device device, const char *model_path, const char *store_name,
                           const kvz_compile_opts *o, const char *text, size_t len, kvz_artifact *a)
{
    kvz_model_config cfg = {.backend = {.device = device, .weights = KVZ_WEIGHTS_F32}};
    kvz_model *m;
    CHECK_OK(kvz_model_load(&m, model_path, &cfg));
    const char *dir = test_tmp_path(store_name);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    kvz_store *st;
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_CREATE));
    kvz_compiler *c;
    CHECK_OK(kvz_compiler_new(&c, m, st, o));
    uint8_t hash[16] = {7};
    kvz_doc_result r;
    CHECK_OK(kvz_compile_document(c, "doc", text, len, hash, &r, NULL, NULL));
    print_message("%s: %d tokens, prefill %.3f s, scoring %.3f s, write %.3f s\n",
                  device == KVZ_DEVICE_CUDA ? "cuda" : "cpu ", r.tokens, r.prefill_s, r.score_s, r.write_s);
    kvz_store_txn *t;
    const void *val;
    size_t vlen;
    CHECK_OK(kvz_store_read_begin(st, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_DOCS, "doc", 3, &val, &vlen));
    kvz_doc_record rec;
    CHECK_OK(kvz_doc_record_decode(val, vlen, &rec));
    CHECK_OK(kvz_store_get(t, KVZ_DB_ARTIFACTS, rec.entries[0].artifact_ids[0], 16, &val, &vlen));
    uint8_t *copy = malloc(vlen);
    memcpy(copy, val, vlen);
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    CHECK_OK(kvz_artifact_open(a, copy, vlen));
    kvz_compiler_free(c);
    kvz_store_close(st);
    kvz_model_free(m);
    return copy;
}

static void compare(int synthetic, kvz_method method, uint32_t bits)
{
    const char *model_path = model_path_of(synthetic);
    size_t len;
    char *text = document(synthetic, &len);
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = method;
    o.sel.chunk = method == KVZ_METHOD_CHUNKKV ? 10 : 0; /* the command line's default */
    o.bits = bits;
    kvz_artifact a, b;
    uint8_t *ba = compile_on(KVZ_DEVICE_CPU, model_path, "cpu-store", &o, text, len, &a);
    uint8_t *bb = compile_on(KVZ_DEVICE_CUDA, model_path, "cuda-store", &o, text, len, &b);
    const kvz_manifest *m = &a.manifest;
    uint32_t n = m->n_tokens, d = m->model.head_dim;
    assert_int_equal(b.manifest.n_tokens, n);
    uint32_t *pa = malloc(n * 4), *pb = malloc(n * 4);
    float *ka = malloc((size_t)n * d * 4), *va = malloc((size_t)n * d * 4);
    float *kb = malloc((size_t)n * d * 4), *vb = malloc((size_t)n * d * 4);
    uint64_t both = 0, either = 0;
    double worst_k = 0, worst_v = 0, range_k = 0, range_v = 0;
    for (uint16_t l = 0; l < m->model.n_layers; l++)
        for (uint16_t h = 0; h < m->model.n_kv_heads; h++) {
            uint32_t na, nb;
            CHECK_OK(kvz_artifact_kept(&a, l, h, &na));
            CHECK_OK(kvz_artifact_kept(&b, l, h, &nb));
            CHECK_OK(kvz_artifact_read_head(&a, l, h, pa, ka, va));
            CHECK_OK(kvz_artifact_read_head(&b, l, h, pb, kb, vb));
            uint32_t i = 0, j = 0;
            while (i < na || j < nb) {
                if (j >= nb || (i < na && pa[i] < pb[j])) {
                    i++, either++;
                } else if (i >= na || pb[j] < pa[i]) {
                    j++, either++;
                } else { /* kept by both: decoded values agree */
                    for (uint32_t e = 0; e < d; e++) {
                        worst_k = max_keeping_nan(worst_k, fabs(ka[(size_t)i * d + e] - kb[(size_t)j * d + e]));
                        worst_v = max_keeping_nan(worst_v, fabs(va[(size_t)i * d + e] - vb[(size_t)j * d + e]));
                        range_k = max_keeping_nan(range_k, fabs(ka[(size_t)i * d + e]));
                        range_v = max_keeping_nan(range_v, fabs(va[(size_t)i * d + e]));
                    }
                    i++, j++, both++, either++;
                }
            }
        }
    double overlap = (double)both / (double)either;
    static const char *const model_names[] = {"real", "synthetic", "qwen2", "rope_freqs"};
    print_message("%s, %s %u-bit: kept positions overlap %.4f (Jaccard), decoded |dk| %.3g of %.3g, "
                  "|dv| %.3g of %.3g\n", model_names[synthetic], kvz_method_name(method), bits, overlap, worst_k,
                  range_k, worst_v, range_v);
    assert_true(overlap >= 0.95);
    /* within two quantization steps of the range, plus f16 drift of the activations */
    double step = bits == 16 ? 1.0 / 512 : 2.0 / ((1 << bits) - 1);
    assert_true(worst_k <= step * range_k + 0.05 * range_k);
    assert_true(worst_v <= step * range_v + 0.05 * range_v);
    free(pa), free(pb), free(ka), free(va), free(kb), free(vb), free(ba), free(bb), free(text);
}

/* The same artifacts loaded on the CPU and on CUDA (heads of different
 * lengths): the same first-token logits up to f16 arithmetic, the same answer.
 * A random-weight model's logits are nearly flat, so there the CUDA answer may
 * leave the CPU's only where the CPU's own logits (the CPU answer teacher-forced
 * through both caches) put the two tokens closer than the two devices differ. */
static void runtime_cpu_vs_cuda(int synthetic)
{
    const char *model_path = model_path_of(synthetic);
    size_t len;
    char *text = document(synthetic, &len);
    kvz_compile_opts o;
    kvz_compile_opts_default(&o); /* KVzip 30%, 4 bits: ragged heads */
    kvz_artifact a;
    free(compile_on(KVZ_DEVICE_CPU, model_path, "rt-store", &o, text, len, &a));
    kvz_store *st;
    CHECK_OK(kvz_store_open(&st, test_tmp_path("rt-store"), KVZ_STORE_READONLY));
    const char *names[1] = {"doc"};
    const char *question = "What does the license guarantee to users?";
    char *answers[2];
    float *logits[2], *forced[2];
    kvz_tokens ids[2] = {{0}};
    int32_t vocab = 0;
    for (int dev = 0; dev < 2; dev++) {
        kvz_model_config cfg = {.backend = {.device = dev ? KVZ_DEVICE_CUDA : KVZ_DEVICE_CPU,
                                            .weights = KVZ_WEIGHTS_F32}};
        kvz_model *m;
        CHECK_OK(kvz_model_load(&m, model_path, &cfg));
        if (dev == 0)
            vocab = m->hp.vocab;
        kvz_loaded *l;
        kvz_load_stats ls;
        CHECK_OK(kvz_load(m, st, names, 1, NULL, &l, &ls));
        logits[dev] = malloc((size_t)m->hp.vocab * 4);
        CHECK_OK(kvz_loaded_first_logits(l, question, logits[dev]));
        kvz_tokens *out = &ids[dev];
        kvz_generate_stats gs;
        kvz_generate_opts go = {.max_tokens = 24};
        CHECK_OK(kvz_loaded_ask(l, question, &go, out, &gs));
        size_t tl;
        CHECK_OK(kvz_detokenize(m->tokenizer, out->ids, out->len, 0, &answers[dev], &tl));
        assert_true(ids[0].len > 0);
        forced[dev] = malloc(ids[0].len * (size_t)m->hp.vocab * 4); /* the CPU's answer, on both */
        CHECK_OK(kvz_loaded_teacher_force(l, question, ids[0].ids, (int32_t)ids[0].len, forced[dev]));
        char shown[256]; /* a random-weight model's answer is arbitrary bytes */
        size_t k = 0;
        for (const char *p = answers[dev]; *p && k + 1 < sizeof shown; p++)
            shown[k++] = (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f ? *p : '.';
        shown[k] = 0;
        print_message("%s: load %.1f ms (%d rows), question %.1f ms, decode %.1f tok/s: %s\n",
                      dev ? "cuda" : "cpu ", ls.seconds * 1e3, (int)ls.rows, gs.prefill_seconds * 1e3,
                      kvz_generate_decode_rate(&gs), shown);
        kvz_loaded_free(l);
        if (dev == 1) { /* one head at a time through the two staging buffers in turn: the same cache */
            kvz_load_opts one_head = {.staging = 1};
            CHECK_OK(kvz_load(m, st, names, 1, &one_head, &l, &ls));
            float *staged = malloc((size_t)m->hp.vocab * 4);
            CHECK_OK(kvz_loaded_first_logits(l, question, staged));
            print_message("cuda, staged a head at a time: load %.1f ms, largest hand-over %llu bytes\n",
                          ls.seconds * 1e3, (unsigned long long)ls.staged_peak);
            assert_memory_equal(staged, logits[1], (size_t)m->hp.vocab * 4);
            free(staged);
            kvz_loaded_free(l);
        }
        kvz_model_free(m);
    }
    double max = 0;
    for (int32_t i = 0; i < vocab; i++)
        max = max_keeping_nan(max, fabs((double)logits[0][i] - logits[1][i]));
    print_message("first-token logits: max |cpu - cuda| %.4f\n", max);
    assert_true(max < 0.25);
    double forced_max = 0;
    for (size_t i = 0; i < ids[0].len * (size_t)vocab; i++)
        forced_max = max_keeping_nan(forced_max, fabs((double)forced[0][i] - forced[1][i]));
    print_message("the CPU answer teacher-forced: max |cpu - cuda| %.4f over %zu rows\n", forced_max, ids[0].len);
    assert_true(forced_max < 0.25);
    size_t same = 0;
    while (same < ids[0].len && same < ids[1].len && ids[0].ids[same] == ids[1].ids[same])
        same++;
    if (!synthetic || (same == ids[0].len && same == ids[1].len)) {
        assert_string_equal(answers[0], answers[1]);
    } else if (same < ids[0].len && same < ids[1].len) { /* a near-tie: the CPU's logits at the first difference */
        const float *row = forced[0] + same * (size_t)vocab;
        double margin = (double)row[ids[0].ids[same]] - row[ids[1].ids[same]];
        print_message("answers part at token %zu on a near-tie: the CPU's logits put the two tokens %.4f apart, "
                      "the devices differ by up to %.4f\n", same, margin, forced_max);
        assert_true(fabs(margin) <= 2 * forced_max); /* either sign: batched and step-by-step arithmetic differ */
    } else { /* one ends (end of turn) where the other goes on: no row of the CPU's to weigh it by */
        fail_msg("one answer ends at token %zu and the other goes on: '%s' against '%s'", same, answers[0],
                 answers[1]);
    }
    for (int dev = 0; dev < 2; dev++)
        kvz_tokens_free(&ids[dev]), free(forced[dev]), free(answers[dev]), free(logits[dev]);
    free(text);
    kvz_store_close(st);
}

/* Sessions of one CUDA engine on two threads at once (each on its own fork
 * of the backend: its stream, cuBLAS handle and scratch) answer as a lone
 * session does. */
typedef struct cuda_asker {
    kvz_engine *engine;
    const char *question;
    char *answers[2];
    int status;
} cuda_asker;

static void *ask_twice(void *arg)
{
    cuda_asker *a = arg;
    const char *doc = "doc";
    kvz_session *s;
    if ((a->status = kvz_session_open(&s, a->engine, &doc, 1, NULL)) != KVZ_OK)
        return NULL;
    kvz_ask_options ao = {.max_tokens = 6};
    for (int r = 0; r < 2 && a->status == KVZ_OK; r++)
        a->status = kvz_session_ask(s, a->question, &ao, &a->answers[r], NULL);
    kvz_session_close(s);
    return NULL;
}

static void sessions_on_threads(int synthetic)
{
    const char *model_path = model_path_of(synthetic);
    size_t len;
    char *text = document(synthetic, &len);
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    kvz_artifact a;
    free(compile_on(KVZ_DEVICE_CPU, model_path, "threads-store", &o, text, len, &a));
    free(text);
    kvz_engine *e;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_CUDA};
    CHECK_OK(kvz_engine_open(&e, test_tmp_path("threads-store"), model_path, &eo));
    const char *questions[2] = {"What does the license guarantee to users?", "Who may copy the program?"};
    char *alone[2];
    for (int q = 0; q < 2; q++) {
        cuda_asker lone = {e, questions[q], {NULL, NULL}, KVZ_OK};
        ask_twice(&lone);
        CHECK_OK(lone.status);
        alone[q] = lone.answers[0];
        kvz_free(lone.answers[1]);
    }
    cuda_asker askers[2] = {{e, questions[0], {NULL, NULL}, KVZ_OK}, {e, questions[1], {NULL, NULL}, KVZ_OK}};
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, ask_twice, &askers[t]), 0);
    int differ = 0;
    for (int t = 0; t < 2; t++) {
        pthread_join(threads[t], NULL);
        CHECK_OK(askers[t].status);
        for (int r = 0; r < 2; r++) {
            differ += strcmp(askers[t].answers[r], alone[t]) != 0;
            kvz_free(askers[t].answers[r]);
        }
    }
    print_message("two sessions of one cuda engine on two threads: %d of 4 answers differ from a lone "
                  "session's\n", differ);
    assert_int_equal(differ, 0);
    kvz_free(alone[0]), kvz_free(alone[1]);
    kvz_engine_close(e);
}

/* Each check on the default model and on the random-weight one. */
#define BOTH_MODELS(name, call)                                              \
    static void test_##name##_real(void **state) { (void)state; call(0); }   \
    static void test_##name##_synthetic(void **state) { (void)state; call(1); }
#define KVZIP_4(s) compare(s, KVZ_METHOD_KVZIP, 4)
#define SNAPKV_8(s) compare(s, KVZ_METHOD_SNAPKV, 8)
#define CHUNKKV_4(s) compare(s, KVZ_METHOD_CHUNKKV, 4)
#define KNORM_4(s) compare(s, KVZ_METHOD_KNORM, 4)
#define FULL_16(s) compare(s, KVZ_METHOD_FULL, 16)
static void test_kvzip_synthetic_qwen2(void **state) { (void)state; KVZIP_4(QWEN2); }
static void test_runtime_synthetic_qwen2(void **state) { (void)state; runtime_cpu_vs_cuda(QWEN2); }
static void test_kvzip_synthetic_rope_freqs(void **state) { (void)state; KVZIP_4(ROPE_FREQS); }
static void test_runtime_synthetic_rope_freqs(void **state) { (void)state; runtime_cpu_vs_cuda(ROPE_FREQS); }
BOTH_MODELS(kvzip, KVZIP_4)
BOTH_MODELS(runtime, runtime_cpu_vs_cuda)
BOTH_MODELS(sessions, sessions_on_threads)
BOTH_MODELS(snapkv, SNAPKV_8)
BOTH_MODELS(chunkkv, CHUNKKV_4)
BOTH_MODELS(knorm, KNORM_4)
BOTH_MODELS(full, FULL_16)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvzip_real),    cmocka_unit_test(test_kvzip_synthetic),
        cmocka_unit_test(test_runtime_real),  cmocka_unit_test(test_runtime_synthetic),
        cmocka_unit_test(test_sessions_real), cmocka_unit_test(test_sessions_synthetic),
        cmocka_unit_test(test_snapkv_real),   cmocka_unit_test(test_snapkv_synthetic),
        cmocka_unit_test(test_chunkkv_real),  cmocka_unit_test(test_chunkkv_synthetic),
        cmocka_unit_test(test_knorm_real),    cmocka_unit_test(test_knorm_synthetic),
        cmocka_unit_test(test_full_real),     cmocka_unit_test(test_full_synthetic),
        cmocka_unit_test(test_kvzip_synthetic_qwen2), cmocka_unit_test(test_runtime_synthetic_qwen2),
        cmocka_unit_test(test_kvzip_synthetic_rope_freqs), cmocka_unit_test(test_runtime_synthetic_rope_freqs),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL); /* test_tmp_path's files go at exit */
}
