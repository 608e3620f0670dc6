/*
 * test_cuda_forward.c — the whole forward pass on CUDA against the CPU path:
 * the real model (logits, top-1, greedy text) and random-weight models of
 * SmolLM2 and Llama-3-8B shape. Needs an NVIDIA GPU; test_real_model needs the
 * default model.
 */
#include "../unit/test_util.h"

#include <math.h>

#include "kernels/ggml_types.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/synth_model.h"

static kvz_model *load(const char *path, kvz_device device)
{
    kvz_model_config cfg = {.backend = {.device = device, .weights = KVZ_WEIGHTS_F32}};
    kvz_model *m;
    CHECK_OK(kvz_model_load(&m, path, &cfg));
    return m;
}

static float *all_logits(kvz_model *m, const int32_t *tokens, int32_t n, int32_t chunk)
{
    kvz_context *c;
    CHECK_OK(kvz_context_new(&c, m, n + 8, chunk));
    float *logits = malloc((size_t)n * m->hp.vocab * sizeof(float));
    kvz_eval_opts opts = {.logits = KVZ_LOGITS_ALL};
    CHECK_OK(kvz_context_eval(c, tokens, n, &opts, logits));
    kvz_context_free(c);
    return logits;
}

typedef struct comparison {
    double max_abs, norm_err;
    int32_t top1_same;
} comparison;

static comparison compare(const float *a, const float *b, int32_t n, int32_t vocab)
{
    comparison r = {0, 0, 0};
    double max_ref = 0;
    for (int32_t i = 0; i < n; i++) {
        const float *x = a + (size_t)i * vocab, *y = b + (size_t)i * vocab;
        int32_t ax = 0, ay = 0;
        for (int32_t v = 0; v < vocab; v++) {
            double d = fabs((double)x[v] - y[v]);
            r.max_abs = max_keeping_nan(r.max_abs, d);
            max_ref = fabs(x[v]) > max_ref ? fabs(x[v]) : max_ref;
            ax = x[v] > x[ax] ? v : ax;
            ay = y[v] > y[ay] ? v : ay;
        }
        r.top1_same += ax == ay;
    }
    r.norm_err = r.max_abs / (max_ref > 0 ? max_ref : 1);
    return r;
}

static void greedy(kvz_model *m, const int32_t *prompt, int32_t n, int32_t steps, kvz_tokens *out)
{
    kvz_context *c;
    CHECK_OK(kvz_context_new(&c, m, n + steps + 1, 256));
    kvz_generate_stats st;
    kvz_generate_opts go = {.max_tokens = steps};
    CHECK_OK(kvz_generate(c, prompt, n, &go, out, &st));
    kvz_context_free(c);
}

static void test_real_model(void **state)
{
    const char *path = test_model_path();
    kvz_model *cpu = load(path, KVZ_DEVICE_CPU), *gpu = load(path, KVZ_DEVICE_CUDA);
    golden g;
    golden_open(&g, "tests/golden/logits_gpl3_excerpt_f32.golden");
    size_t n;
    int32_t *tokens = parse_ids(golden_expect(&g, "tokens"), &n);
    golden_close(&g);
    float *a = all_logits(cpu, tokens, (int32_t)n, 512);
    float *b = all_logits(gpu, tokens, (int32_t)n, 128);
    comparison r = compare(a, b, (int32_t)n, cpu->hp.vocab);
    print_message("SmolLM2-135M %zu tokens: cuda vs cpu max |dlogit| %.4f (normalised %.1e), "
                  "top-1 %d/%zu\n", n, r.max_abs, r.norm_err, r.top1_same, n);
    assert_true(r.max_abs < 0.25);
    assert_true(r.top1_same >= (int32_t)(0.98 * n));

    /* the same greedy answer to a chat question */
    kvz_tokens pc = {0}, oc = {0}, og = {0};
    const char *prompt = "<|im_start|>user\nWhat is the capital of France? Answer in one sentence."
                         "<|im_end|>\n<|im_start|>assistant\n";
    CHECK_OK(kvz_tokenize(cpu->tokenizer, prompt, strlen(prompt), 1, &pc));
    greedy(cpu, pc.ids, (int32_t)pc.len, 24, &oc);
    greedy(gpu, pc.ids, (int32_t)pc.len, 24, &og);
    char *tc, *tg;
    size_t lc, lg;
    CHECK_OK(kvz_detokenize(cpu->tokenizer, oc.ids, oc.len, 0, &tc, &lc));
    CHECK_OK(kvz_detokenize(gpu->tokenizer, og.ids, og.len, 0, &tg, &lg));
    print_message("cpu:  %s\ncuda: %s\n", tc, tg);
    assert_string_equal(tc, tg);
    free(tc), free(tg);
    kvz_tokens_free(&pc), kvz_tokens_free(&oc), kvz_tokens_free(&og);
    free(a), free(b), free(tokens);
    kvz_model_free(cpu);
    kvz_model_free(gpu);
}

/* rope_freqs_ctx > 0: with Llama 3.1's RoPE frequency factors for that original context. */
static void check_synthetic(const char *shape, int32_t layers, uint32_t type, int32_t n_tokens, int32_t vocab,
                            int32_t rope_freqs_ctx)
{
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset(shape, &spec));
    spec.n_layers = layers;
    if (vocab) /* else the shape's */
        spec.vocab = vocab;
    spec.weight_type = type;
    spec.rope_freqs_ctx = rope_freqs_ctx;
    const char *path = test_tmp_path("synth.gguf");
    CHECK_OK(kvz_synth_model_write(path, &spec));
    kvz_model *cpu = load(path, KVZ_DEVICE_CPU), *gpu = load(path, KVZ_DEVICE_CUDA);
    int32_t *tokens = malloc(n_tokens * sizeof *tokens);
    for (int32_t i = 0; i < n_tokens; i++)
        tokens[i] = 8 + (i * 37) % 256; /* byte tokens */
    float *a = all_logits(cpu, tokens, n_tokens, 256);
    float *b = all_logits(gpu, tokens, n_tokens, 100);
    comparison r = compare(a, b, n_tokens, cpu->hp.vocab);
    print_message("%s x%d layers %s, %d tokens: cuda vs cpu normalised error %.1e, top-1 %d/%d\n",
                  shape, layers, kvz_ggml_type_info_of(type).name, n_tokens, r.norm_err,
                  r.top1_same, n_tokens);
    assert_true(r.norm_err < 2e-2);
    free(a), free(b), free(tokens);
    kvz_model_free(cpu);
    kvz_model_free(gpu);
    unlink(path);
}

static void test_synthetic_smollm2_shape(void **state)
{
    check_synthetic("smollm2-135m", 4, KVZ_GGML_Q8_0, 300, 0, 0);
    check_synthetic("smollm2-135m", 2, KVZ_GGML_Q4_1, 200, 0, 0);
}

static void test_synthetic_llama3_shape(void **state)
{
    check_synthetic("llama3-8b", 2, KVZ_GGML_Q4_K, 260, 0, 0);
    check_synthetic("llama3-8b", 1, KVZ_GGML_Q6_K, 70, 0, 0);
}

/* qwen2: q, k and v biases (in rope_kv_append) and RoPE on the halves of a head */
static void test_synthetic_qwen2_shape(void **state)
{
    check_synthetic("qwen2-0.5b", 2, KVZ_GGML_Q8_0, 200, 4096, 0);
}

/* Llama 3.1's RoPE frequency factors (for an original context of 64 tokens,
 * so that they turn most pairs here): RoPE, rope_kv_append */
static void test_synthetic_rope_freqs(void **state)
{
    check_synthetic("smollm2-135m", 2, KVZ_GGML_Q8_0, 200, 4096, 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_synthetic_smollm2_shape),
        cmocka_unit_test(test_synthetic_llama3_shape),
        cmocka_unit_test(test_synthetic_qwen2_shape),
        cmocka_unit_test(test_synthetic_rope_freqs),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
