/*
 * test_runtime.c — loading compiled documents and answering from them: a full
 * 16-bit artifact answers as a direct prefill does, answers do not depend on
 * earlier questions, composed documents answer from any of them, and bad input
 * (missing document, another model's artifact, a corrupt one) is refused.
 * So do full artifacts of a qwen2 model and of one with Llama 3.1's RoPE
 * frequency factors (random weights).
 */
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "kvz.h"

#include "compiler/compile.h"
#include "format/doc_record.h"
#include "format/store.h"
#include "model/prompt.h"
#include "model/synth_model.h"
#include "runtime/runtime.h"

/* The model the helpers use: the default one, or for a test that swaps in
 * another (a random-weight qwen2 or Llama 3.1 model) that one until its
 * teardown, which also runs when an assertion fails. */
static kvz_model *model, *default_model;

static const char DOC_A[] =
    "The lighthouse at Kestrel Point was lit for the first time on 14 March 1871. Its tower is 27 "
    "metres tall and painted in red and white bands. The light shows two white flashes every fifteen "
    "seconds. Seven keepers served there; the longest serving was Agnes Morrow, from 1921 to 1959.\n";
static const char DOC_B[] =
    "Inventory note for the harbour office. The spare keys are kept in the blue cabinet. The code of "
    "the office safe is 7391. The safe holds the tide tables and the harbour master's logbook.\n";

static int setup(void **state)
{
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    CHECK_OK(kvz_model_load(&model, test_model_path(), &cfg));
    default_model = model;
    return 0;
}

static int teardown(void **state)
{
    kvz_model_free(model);
    return 0;
}

/* Swap in a random-weight model written from spec (undone by restore_model). */
static void use_synth_model(const kvz_synth_spec *spec, const char *file)
{
    const char *path = test_tmp_path(file);
    CHECK_OK(kvz_synth_model_write(path, spec));
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    kvz_model *m;
    CHECK_OK(kvz_model_load(&m, path, &cfg));
    model = m;
}

static int restore_model(void **state)
{
    if (model != default_model)
        kvz_model_free(model);
    model = default_model;
    return 0;
}

/* A store holding DOC_A and DOC_B compiled with `opts`. */
static kvz_store *make_store(const char *name, const kvz_compile_opts *opts)
{
    const char *dir = test_tmp_path(name);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    kvz_store *st;
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_CREATE));
    kvz_compiler *c;
    CHECK_OK(kvz_compiler_new(&c, model, st, opts));
    kvz_doc_result r;
    uint8_t ha[16] = {0xa}, hb[16] = {0xb};
    CHECK_OK(kvz_compile_document(c, "a.txt", DOC_A, strlen(DOC_A), ha, &r, NULL, NULL));
    CHECK_OK(kvz_compile_document(c, "b.txt", DOC_B, strlen(DOC_B), hb, &r, NULL, NULL));
    kvz_compiler_free(c);
    return st;
}

static char *ask(kvz_loaded *l, const char *question, int32_t max_tokens)
{
    kvz_tokens out = {0};
    kvz_generate_stats st;
    kvz_generate_opts go = {.max_tokens = max_tokens};
    CHECK_OK(kvz_loaded_ask(l, question, &go, &out, &st));
    char *text;
    size_t len;
    CHECK_OK(kvz_detokenize(model->tokenizer, out.ids, out.len, 0, &text, &len));
    kvz_tokens_free(&out);
    return text;
}

/* The same prompt prefilled directly: [prefix | document | question]. */
static void direct(const char *doc, const char *question, int32_t max_tokens, float *first_logits, char **answer)
{
    kvz_tokens prompt = {0}, q = {0}, out = {0};
    CHECK_OK(kvz_prompt_prefix(model, &prompt, NULL));
    CHECK_OK(kvz_tokenize(model->tokenizer, doc, strlen(doc), 0, &prompt));
    CHECK_OK(kvz_prompt_question(model, question, &q));
    for (size_t i = 0; i < q.len; i++)
        CHECK_OK(kvz_tokens_push(&prompt, q.ids[i]));
    kvz_context *c;
    CHECK_OK(kvz_context_new(&c, model, (int32_t)prompt.len + max_tokens + 1, 512));
    kvz_eval_opts eval = {.logits = KVZ_LOGITS_LAST};
    CHECK_OK(kvz_context_eval(c, prompt.ids, (int32_t)prompt.len, &eval, first_logits));
    kvz_context_truncate(c, 0);
    kvz_generate_stats st;
    kvz_generate_opts go = {.max_tokens = max_tokens};
    CHECK_OK(kvz_generate(c, prompt.ids, (int32_t)prompt.len, &go, &out, &st));
    size_t len;
    CHECK_OK(kvz_detokenize(model->tokenizer, out.ids, out.len, 0, answer, &len));
    kvz_context_free(c);
    kvz_tokens_free(&prompt), kvz_tokens_free(&q), kvz_tokens_free(&out);
}

static void test_full_cache_matches_prefill(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_FULL;
    o.bits = 16;
    kvz_store *st = make_store("rt-full", &o);
    const char *names[1] = {"a.txt"};
    kvz_loaded *l;
    kvz_load_stats ls;
    CHECK_OK(kvz_load(model, st, names, 1, NULL, &l, &ls));
    assert_int_equal(ls.documents, 1);
    const char *question = "When was the lighthouse lit for the first time?";
    float *a = malloc((size_t)model->hp.vocab * 4), *b = malloc((size_t)model->hp.vocab * 4);
    CHECK_OK(kvz_loaded_first_logits(l, question, a));
    char *want;
    direct(DOC_A, question, 24, b, &want);
    double max = 0;
    for (int32_t i = 0; i < model->hp.vocab; i++)
        max = max_keeping_nan(max, fabs((double)a[i] - b[i]));
    char *got = ask(l, question, 24);
    print_message("loaded in %.1f ms; first-token logits within %.4f of direct prefill\n"
                  "loaded: %s\ndirect: %s\n", ls.seconds * 1e3, max, got, want);
    assert_true(max < 0.05); /* keys and values rounded to f16 */
    assert_string_equal(got, want);
    assert_non_null(strstr(got, "1871"));
    free(got), free(want), free(a), free(b);
    kvz_loaded_free(l);
    kvz_store_close(st);
}

/* The swapped-in model answers from a full 16-bit artifact as from a direct
 * prefill: the keys' RoPE, turned back at compile and applied again at load,
 * is the model's own both times (at the same positions, which any pair of the
 * same angles would pass: that the angles are the model's is held by
 * test_forward's golden logits, and at other positions by the kernel tests).
 * Composed after another document it is only reported: the question then sees
 * that document too. */
static void check_full_cache_matches_prefill(const char *label)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_FULL;
    o.bits = 16;
    kvz_store *st = make_store("rt-synth", &o);
    const char *question = "When was the lighthouse lit for the first time?";
    float *a = malloc((size_t)model->hp.vocab * 4), *b = malloc((size_t)model->hp.vocab * 4);
    char *want;
    direct(DOC_A, question, 8, b, &want);
    for (int composed = 0; composed < 2; composed++) {
        const char *names[2] = {"b.txt", "a.txt"};
        kvz_loaded *l;
        kvz_load_stats ls;
        CHECK_OK(kvz_load(model, st, names + !composed, 1 + composed, NULL, &l, &ls));
        CHECK_OK(kvz_loaded_first_logits(l, question, a));
        double max = 0, scale = 0;
        for (int32_t i = 0; i < model->hp.vocab; i++) {
            max = max_keeping_nan(max, fabs((double)a[i] - b[i]));
            scale = max_keeping_nan(scale, fabs((double)b[i]));
        }
        print_message("%s, %s: first-token logits within %.4f of direct prefill (largest %.2f)\n", label,
                      composed ? "after another document" : "alone", max, scale);
        if (!composed) { /* composed, the question sees another document too */
            assert_true(max < 1e-4 * scale);
            char *got = ask(l, question, 8);
            assert_string_equal(got, want);
            free(got);
        }
        kvz_loaded_free(l);
    }
    free(want), free(a), free(b);
    kvz_store_close(st);
}

/* qwen2: q, k and v biases; RoPE on the halves of a head (kvz synth-model's
 * qwen2 shape, 2 layers). */
static void test_qwen2_full_cache_matches_prefill(void **state)
{
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("qwen2-0.5b", &spec));
    spec.n_layers = 2, spec.vocab = 1024;
    use_synth_model(&spec, "qwen2.gguf");
    assert_int_equal(model->hp.rope.mode, KVZ_ROPE_NEOX);
    assert_non_null(model->layers[1].bk);
    check_full_cache_matches_prefill("qwen2");
}

/* Llama 3.1's RoPE frequency factors (the SmolLM2 shape, 2 layers, factors for
 * an original context of 64 tokens, so that they turn most pairs here). */
static void test_rope_freqs_full_cache_matches_prefill(void **state)
{
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("smollm2-135m", &spec));
    spec.n_layers = 2, spec.vocab = 1024, spec.rope_freqs_ctx = 64;
    use_synth_model(&spec, "rope-freqs.gguf");
    assert_int_equal(model->hp.rope.n_factors, model->hp.rope.rope_dim / 2);
    check_full_cache_matches_prefill("rope_freqs");
}

/* kvz's prompt, built in parts ([prefix | document | question suffix], the
 * document tokenized alone at compile time), gives the tokens llama.cpp gives
 * the whole user turn rendered by the model's template (chat.golden's
 * "document_question"): the blank line before the question is two "\n"
 * tokens there, as it is in any turn the model saw in training. */
static void test_prompt_matches_rendered_turn(void **state)
{
    static const char doc[] = "The ferry leaves Kestrel Point at dawn.\nIt returns at six.";
    static const char question[] = "When does the ferry return?";
    golden g;
    golden_open(&g, "tests/golden/chat.golden");
    int found = 0;
    while (golden_peek(&g, "case")) {
        const char *name = golden_expect(&g, "case");
        golden_expect(&g, "system");
        const char *user_hex = golden_expect(&g, "user");
        golden_expect(&g, "rendered");
        const char *ids = golden_expect(&g, "ids");
        if (strcmp(name, "document_question") != 0)
            continue;
        found = 1;
        size_t len, n_want;
        char *user = hex_decode(user_hex, &len);
        char turn[512];
        snprintf(turn, sizeof turn, "%s%s\n\n%s", KVZ_PROMPT_INSTRUCTION, doc, question);
        assert_string_equal(user, turn); /* the golden asks what this test builds */
        int32_t *want = parse_ids(ids, &n_want);
        kvz_tokens got = {0};
        CHECK_OK(kvz_prompt_prefix(model, &got, NULL));
        CHECK_OK(kvz_tokenize(model->tokenizer, doc, strlen(doc), 0, &got));
        CHECK_OK(kvz_prompt_question(model, question, &got));
        assert_int_equal(got.len, n_want);
        for (size_t i = 0; i < n_want; i++)
            if (got.ids[i] != want[i])
                fail_msg("token %zu is %d, the rendered turn's %d", i, got.ids[i], want[i]);
        kvz_tokens_free(&got);
        free(want);
        free(user);
    }
    golden_close(&g);
    assert_true(found);
}

static void test_questions_do_not_leak(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o); /* KVzip, 30%, 4 bits */
    kvz_store *st = make_store("rt-kvzip", &o);
    const char *names[1] = {"a.txt"};
    kvz_loaded *l;
    kvz_load_stats ls;
    CHECK_OK(kvz_load(model, st, names, 1, NULL, &l, &ls));
    char *first = ask(l, "Who was the longest serving keeper?", 20);
    char *other = ask(l, "How tall is the tower?", 20);
    char *again = ask(l, "Who was the longest serving keeper?", 20);
    print_message("kvzip 30%%/4-bit: %s | %s\n", first, other);
    assert_string_equal(first, again);
    assert_int_equal(kvz_context_len(kvz_loaded_context(l)), 0);
    free(first), free(other), free(again);
    kvz_loaded_free(l);
    kvz_store_close(st);
}

static void test_composition(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.ratio = 0.5f;
    o.bits = 8;
    kvz_store *st = make_store("rt-compose", &o);
    const char *names[2] = {"a.txt", "b.txt"};
    kvz_loaded *l;
    kvz_load_stats ls;
    CHECK_OK(kvz_load(model, st, names, 2, NULL, &l, &ls));
    assert_int_equal(ls.documents, 2);
    assert_int_equal(ls.original_tokens > 80, 1);
    char *answer = ask(l, "What is the code of the office safe?", 24);
    print_message("two documents, the answer in the second: %s\n", answer);
    assert_non_null(strstr(answer, "7391"));
    free(answer);

    /* staged in smaller groups (a third of a layer; one head of one artifact
     * at a time), the same cache: the same logits, bit for bit */
    const char *question = "Who painted the tower?";
    float *want = malloc((size_t)model->hp.vocab * 4), *got = malloc((size_t)model->hp.vocab * 4);
    CHECK_OK(kvz_loaded_first_logits(l, question, want));
    kvz_loaded_free(l);
    const uint64_t whole = ls.staged_peak;
    const size_t limits[2] = {whole / 3, 1};
    for (int i = 0; i < 2; i++) {
        kvz_load_opts lo = {.staging = limits[i]};
        CHECK_OK(kvz_load(model, st, names, 2, &lo, &l, &ls));
        print_message("staging limit %zu bytes: largest hand-over %llu of %llu\n", limits[i],
                      (unsigned long long)ls.staged_peak, (unsigned long long)whole);
        assert_true(ls.staged_peak < whole);
        if (i == 0)
            assert_true(ls.staged_peak <= limits[i]);
        CHECK_OK(kvz_loaded_first_logits(l, question, got));
        assert_memory_equal(got, want, (size_t)model->hp.vocab * 4);
        kvz_loaded_free(l);
    }
    free(want), free(got);
    kvz_store_close(st);
}

typedef struct put_ctx {
    uint8_t *id, *bytes;
    size_t len;
} put_ctx;

/* Put bytes under an artifact id (to plant a corrupt artifact). */
static int put_artifact(kvz_store_txn *tx, void *ctx)
{
    put_ctx *pc = ctx;
    return kvz_store_put(tx, KVZ_DB_ARTIFACTS, pc->id, 16, pc->bytes, pc->len);
}

/* A document record that does not decode, under the name "b.txt". */
static int put_damaged_record(kvz_store_txn *tx, void *ctx)
{
    (void)ctx;
    static const uint8_t junk[] = "not a document record";
    return kvz_store_put(tx, KVZ_DB_DOCS, "b.txt", 5, junk, sizeof junk);
}

static void test_bad_loads(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_RECENT;
    kvz_store *st = make_store("rt-bad", &o);
    kvz_loaded *l;
    kvz_load_stats ls;
    const char *missing[1] = {"nope.txt"};
    assert_int_equal(kvz_load(model, st, missing, 1, NULL, &l, &ls), KVZ_ERR_NOT_FOUND);
    assert_non_null(strstr(kvz_last_error(), "nope.txt"));
    const char *names[1] = {"a.txt"};
    kvz_load_opts too_big = {.reserve = model->hp.ctx_train};
    assert_int_equal(kvz_load(model, st, names, 1, &too_big, &l, &ls), KVZ_ERR_RANGE);

    /* a corrupt artifact: one byte changed in the store */
    kvz_store_txn *t;
    const void *val;
    size_t len;
    CHECK_OK(kvz_store_read_begin(st, &t));
    CHECK_OK(kvz_store_get(t, KVZ_DB_DOCS, "a.txt", 5, &val, &len));
    kvz_doc_record rec;
    CHECK_OK(kvz_doc_record_decode(val, len, &rec));
    uint8_t id[16];
    memcpy(id, rec.entries[0].artifact_ids[0], 16);
    CHECK_OK(kvz_store_get(t, KVZ_DB_ARTIFACTS, id, 16, &val, &len));
    uint8_t *bytes = malloc(len);
    memcpy(bytes, val, len);
    kvz_store_read_end(t);
    kvz_doc_record_free(&rec);
    bytes[len / 2] ^= 0x10;
    put_ctx pc = {id, bytes, len};
    CHECK_OK(kvz_store_write(st, put_artifact, &pc));
    assert_int_equal(kvz_load(model, st, names, 1, NULL, &l, &ls), KVZ_ERR_FORMAT);
    assert_non_null(strstr(kvz_last_error(), "checksum"));
    free(bytes);
    kvz_store_close(st);
    {   /* through the engine too, each call naming the document */
        kvz_engine *bad;
        kvz_engine_options bo = {.device = KVZ_RUN_ON_CPU, .threads = 1};
        CHECK_OK(kvz_engine_open(&bad, test_tmp_path("rt-bad"), test_model_path(), &bo));
        int32_t *seg_tokens = NULL;
        size_t seg_count = 0;
        assert_int_equal(kvz_engine_document_segments(bad, "a.txt", 0, 0, &seg_tokens, &seg_count), KVZ_ERR_FORMAT);
        assert_non_null(strstr(kvz_last_error(), "'a.txt'"));
        char *text = NULL;
        assert_int_equal(kvz_engine_document_text(bad, "a.txt", &text, NULL), KVZ_ERR_FORMAT);
        assert_non_null(strstr(kvz_last_error(), "'a.txt'"));
        kvz_engine_close(bad);
    }

    /* a store compiled by another model */
    kvz_synth_spec spec;
    CHECK_OK(kvz_synth_preset("tiny", &spec));
    const char *tiny_path = test_tmp_path("rt-tiny.gguf");
    CHECK_OK(kvz_synth_model_write(tiny_path, &spec));
    kvz_model_config cfg = {.backend = {.device = KVZ_DEVICE_CPU}};
    kvz_model *tiny;
    CHECK_OK(kvz_model_load(&tiny, tiny_path, &cfg));
    const char *dir = test_tmp_path("rt-other");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    CHECK_OK(kvz_store_open(&st, dir, KVZ_STORE_CREATE));
    kvz_compiler *c;
    o.reserve = 64; /* the tiny model's context is 512 */
    CHECK_OK(kvz_compiler_new(&c, tiny, st, &o));
    kvz_doc_result r;
    uint8_t h[16] = {1};
    CHECK_OK(kvz_compile_document(c, "a.txt", DOC_A, strlen(DOC_A), h, &r, NULL, NULL));
    kvz_compiler_free(c);
    assert_int_equal(kvz_load(model, st, names, 1, NULL, &l, &ls), KVZ_ERR_MODEL_MISMATCH);
    print_message("another model: %s\n", kvz_last_error());
    assert_non_null(strstr(kvz_last_error(), "synthetic"));
    assert_non_null(strstr(kvz_last_error(), "Smollm2"));
    /* asked for by number, the other model's form is refused too, and named */
    kvz_load_opts first = {.config = {.number = 1}};
    assert_int_equal(kvz_load(model, st, names, 1, &first, &l, &ls), KVZ_ERR_MODEL_MISMATCH);
    assert_non_null(strstr(kvz_last_error(), "'a.txt' configuration 1"));
    kvz_store_close(st);
    kvz_engine *e;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_CPU, .threads = 1};
    CHECK_OK(kvz_engine_open(&e, dir, test_model_path(), &eo));
    int32_t *tokens = NULL;
    size_t count = 7;
    assert_int_equal(kvz_engine_document_segments(e, "a.txt", 1, 0, &tokens, &count), KVZ_ERR_MODEL_MISMATCH);
    assert_null(tokens);
    assert_int_equal(count, 0);
    /* its forms are listed with their ids, not this model's; asked for by id, refused and named */
    kvz_config_info *forms;
    CHECK_OK(kvz_engine_document_configs(e, "a.txt", &forms, &count));
    assert_int_equal(count, 1);
    assert_int_equal(forms[0].number, 1);
    assert_int_equal(forms[0].this_model, 0);
    assert_true(forms[0].id != 0 && forms[0].model_fingerprint != 0 && forms[0].segments == 1);
    assert_non_null(strstr(forms[0].summary, "ratio"));
    char named[64];
    snprintf(named, sizeof named, "'a.txt' configuration %016llx", (unsigned long long)forms[0].id);
    const char *names_a[] = {"a.txt"};
    kvz_session *session = NULL;
    kvz_session_options by_id = {.config_id = forms[0].id};
    assert_int_equal(kvz_session_open(&session, e, names_a, 1, &by_id), KVZ_ERR_MODEL_MISMATCH);
    assert_non_null(strstr(kvz_last_error(), named));
    by_id.config_id ^= 1;
    assert_int_equal(kvz_session_open(&session, e, names_a, 1, &by_id), KVZ_ERR_NOT_FOUND);
    by_id.config = 1; /* both ways at once */
    assert_int_equal(kvz_session_open(&session, e, names_a, 1, &by_id), KVZ_ERR_ARG);
    assert_null(session);
    kvz_free(forms);
    assert_int_equal(kvz_engine_document_configs(e, "no.txt", &forms, &count), KVZ_ERR_NOT_FOUND);
    assert_null(forms);
    assert_int_equal(count, 0);
    /* listed for this model: none (an empty list, not an error), then a damaged
     * record beside it: an error naming it, not a silently shorter list */
    char **listed;
    CHECK_OK(kvz_engine_documents(e, &listed, &count));
    assert_int_equal(count, 0);
    assert_null(listed[0]);
    kvz_free(listed);
    kvz_engine_close(e);
    CHECK_OK(kvz_store_open(&st, dir, 0));
    CHECK_OK(kvz_store_write(st, put_damaged_record, NULL));
    kvz_store_close(st);
    CHECK_OK(kvz_engine_open(&e, dir, test_model_path(), &eo));
    assert_int_equal(kvz_engine_documents(e, &listed, &count), KVZ_ERR_FORMAT);
    assert_null(listed);
    assert_int_equal(count, 0);
    assert_non_null(strstr(kvz_last_error(), "document 'b.txt'"));
    kvz_engine_close(e);
    kvz_model_free(tiny);
    unlink(tiny_path);
}

/* One engine shared by threads, each with its own session (include/kvz.h
 * allows it), all computing at once: every answer is the one a lone session
 * gives. Each session works on its own fork of the model's backend; on the
 * model's own one the threads' steps overwrite each other's scratch (12 of 12
 * answers differ). */
typedef struct asker {
    kvz_engine *engine;
    const char *doc, *question, *want;
    int rounds, wrong, failed;
} asker;

static void *ask_in_thread(void *arg)
{
    asker *a = arg;
    kvz_session *s;
    if (kvz_session_open(&s, a->engine, &a->doc, 1, NULL) != KVZ_OK) {
        a->failed = 1;
        return NULL;
    }
    kvz_ask_options ao = {.max_tokens = 16};
    for (int r = 0; r < a->rounds; r++) {
        char *answer = NULL;
        if (kvz_session_ask(s, a->question, &ao, &answer, NULL) != KVZ_OK)
            a->failed = 1;
        else if (strcmp(answer, a->want) != 0)
            a->wrong++;
        kvz_free(answer);
    }
    kvz_session_close(s);
    return NULL;
}

static void test_engine_shared_by_threads(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    kvz_store_close(make_store("rt-threads", &o)); /* the engine opens it again */
    kvz_engine *e;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_CPU, .threads = 2};
    CHECK_OK(kvz_engine_open(&e, test_tmp_path("rt-threads"), test_model_path(), &eo));
    const char *docs[2] = {"a.txt", "b.txt"};
    const char *questions[2] = {"Who served longest at the lighthouse?", "What is the code of the office safe?"};
    char *want[2];
    for (int d = 0; d < 2; d++) { /* alone first */
        kvz_session *s;
        CHECK_OK(kvz_session_open(&s, e, &docs[d], 1, NULL));
        kvz_ask_options ao = {.max_tokens = 16};
        CHECK_OK(kvz_session_ask(s, questions[d], &ao, &want[d], NULL));
        kvz_session_close(s);
    }
    kvz_session *none; /* a failed open keeps nothing (the backend it took is not leaked) */
    const char *missing = "nope.txt";
    assert_int_equal(kvz_session_open(&none, e, &missing, 1, NULL), KVZ_ERR_NOT_FOUND);
    assert_null(none);
    enum { THREADS = 4 };
    asker askers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        askers[t] = (asker){e, docs[t % 2], questions[t % 2], want[t % 2], 3, 0, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, ask_in_thread, &askers[t]), 0);
    }
    int wrong = 0, failed = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        wrong += askers[t].wrong, failed += askers[t].failed;
    }
    print_message("%d threads x 3 questions on one engine: %d answers differ from a lone session's, %d calls "
                  "failed\n", THREADS, wrong, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(wrong, 0);
    kvz_free(want[0]), kvz_free(want[1]);
    kvz_engine_close(e);
}

/* Closed sessions' backends kept warm: at most idle_sessions of them (default
 * 4, -1 none), the rest freed at close; a warm one answers as a new one did. */
static void test_engine_idle_sessions(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    kvz_store_close(make_store("rt-idle", &o));
    const char *doc = "a.txt", *question = "Who served longest at the lighthouse?";
    const int limits[3] = {2, 0, -1}, kept[3] = {2, 3, 0}; /* 3 sessions open at once, then closed */
    char *first = NULL;
    for (int i = 0; i < 3; i++) {
        kvz_engine *e;
        kvz_engine_options eo = {.device = KVZ_RUN_ON_CPU, .threads = 2, .idle_sessions = limits[i]};
        CHECK_OK(kvz_engine_open(&e, test_tmp_path("rt-idle"), test_model_path(), &eo));
        kvz_session *s[3];
        for (int j = 0; j < 3; j++)
            CHECK_OK(kvz_session_open(&s[j], e, &doc, 1, NULL));
        assert_int_equal(kvz_engine_idle_backends(e), 0);
        for (int j = 0; j < 3; j++)
            kvz_session_close(s[j]);
        print_message("idle_sessions %d: %zu of 3 closed sessions kept warm\n", limits[i],
                      kvz_engine_idle_backends(e));
        assert_int_equal(kvz_engine_idle_backends(e), kept[i]);
        kvz_session *again; /* warm when one was kept */
        CHECK_OK(kvz_session_open(&again, e, &doc, 1, NULL));
        kvz_ask_options ao = {.max_tokens = 12};
        char *answer;
        CHECK_OK(kvz_session_ask(again, question, &ao, &answer, NULL));
        if (!first)
            first = answer;
        else {
            assert_string_equal(answer, first);
            kvz_free(answer);
        }
        kvz_session_close(again);
        assert_int_equal(kvz_engine_idle_backends(e), kept[i]);
        kvz_engine_close(e);
    }
    kvz_free(first);
    kvz_engine *bad = NULL;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_CPU, .idle_sessions = -2};
    assert_int_equal(kvz_engine_open(&bad, test_tmp_path("rt-idle"), test_model_path(), &eo), KVZ_ERR_ARG);
    assert_null(bad);
}

typedef struct nested_ask {
    kvz_session *session;
    int status, calls;
} nested_ask;

static int ask_again(void *user, const char *piece, size_t len)
{
    (void)piece, (void)len;
    nested_ask *n = user;
    if (n->calls++ == 0) { /* the session is answering: a second ask is refused, the first goes on */
        char *inner = NULL;
        n->status = kvz_session_ask(n->session, "And then?", NULL, &inner, NULL);
        kvz_free(inner);
    }
    return 0;
}

static int stop_at_once(void *user, const char *piece, size_t len)
{
    (void)user, (void)piece, (void)len;
    return 1;
}

/* A long answer without a stream callback, its session closed by another
 * thread while it runs: the answer stops (as include/kvz.h promises). */
typedef struct long_answer {
    kvz_session *session;
    atomic_int done;
    int status;
    kvz_ask_info info;
} long_answer;

static void *ask_at_length(void *arg)
{
    long_answer *a = arg;
    kvz_ask_options ao = {.max_tokens = 400};
    do /* refused while the other thread's probe (below) holds the session */
        a->status = kvz_session_ask(a->session, "Repeat the text word for word, twice.", &ao, NULL, &a->info);
    while (a->status == KVZ_ERR_ARG && strstr(kvz_last_error(), "answering already"));
    atomic_store(&a->done, 1);
    return NULL;
}

/* The engine closed before its session: the session goes on, and the engine
 * is freed at its close (ASan checks nothing is used after). An ask from the
 * session's own stream callback is refused without harming the answer.
 * Options out of range are refused. */
static void test_engine_closed_first_and_nested_ask(void **state)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    kvz_store_close(make_store("rt-close", &o));
    const char *doc = "a.txt", *question = "Who served longest at the lighthouse?";
    kvz_engine *e;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_CPU, .threads = 2};
    CHECK_OK(kvz_engine_open(&e, test_tmp_path("rt-close"), test_model_path(), &eo));
    kvz_session *s;
    CHECK_OK(kvz_session_open(&s, e, &doc, 1, NULL));
    kvz_ask_options ao = {.max_tokens = 12};
    char *alone, *nested, *after_close;
    kvz_ask_info info;
    CHECK_OK(kvz_session_ask(s, question, &ao, &alone, &info));
    assert_int_equal(info.stopped_by, info.answer_tokens == 12 ? KVZ_STOP_MAX_TOKENS : KVZ_STOP_END_OF_TURN);
    assert_int_equal(info.ended_turn, info.stopped_by == KVZ_STOP_END_OF_TURN);
    int32_t question_tokens = info.question_tokens;
    nested_ask n = {s, KVZ_OK, 0};
    kvz_ask_options streamed = {.max_tokens = 12, .stream = ask_again, .stream_user = &n};
    CHECK_OK(kvz_session_ask(s, question, &streamed, &nested, NULL));
    assert_int_equal(n.status, KVZ_ERR_ARG);
    kvz_ask_options stop_now = {.max_tokens = 12, .stream = stop_at_once};
    CHECK_OK(kvz_session_ask(s, question, &stop_now, NULL, &info));
    assert_int_equal(info.stopped_by, KVZ_STOP_CALLBACK);
    assert_int_equal(info.answer_tokens, 1);
    assert_string_equal(nested, alone);
    kvz_ask_options nan_temperature = {.max_tokens = 4, .temperature = NAN};
    assert_int_equal(kvz_session_ask(s, question, &nan_temperature, NULL, NULL), KVZ_ERR_ARG);
    /* room for the question and two answer tokens (a third is sampled from the second's logits, with no
     * room to run it): the answer stops at the reserve */
    kvz_session *tight;
    kvz_session_options two_more = {.reserve = question_tokens + 2};
    CHECK_OK(kvz_session_open(&tight, e, &doc, 1, &two_more));
    CHECK_OK(kvz_session_ask(tight, question, &ao, NULL, &info));
    assert_int_equal(info.stopped_by, KVZ_STOP_RESERVE);
    assert_int_equal(info.answer_tokens, 3);
    kvz_session_close(tight);
    long_answer la = {.status = -1};
    CHECK_OK(kvz_session_open(&la.session, e, &doc, 1, NULL));
    pthread_t asker_thread;
    assert_int_equal(pthread_create(&asker_thread, NULL, ask_at_length, &la), 0);
    /* a one-token ask of our own is refused once the other thread's ask runs: then close */
    int probes = 0, probe;
    for (;; probes++, usleep(1000)) {
        if (atomic_load(&la.done))
            fail_msg("the answer ended before a probe found it running (status %d)", la.status);
        if ((probe = kvz_session_ask(la.session, question, &stop_now, NULL, NULL)) != KVZ_OK)
            break;
    }
    if (probe != KVZ_ERR_ARG || !strstr(kvz_last_error(), "answering already"))
        fail_msg("the probe failed otherwise: %s", kvz_last_error());
    usleep(300 * 1000); /* into the answer (its 400 tokens take seconds here), or its question */
    kvz_session_close(la.session); /* the ask frees it when it stops */
    pthread_join(asker_thread, NULL);
    print_message("closed from another thread: stopped after %d tokens (stopped_by %d; %d probes first)\n",
                  la.info.answer_tokens, la.info.stopped_by, probes);
    CHECK_OK(la.status);
    assert_int_equal(la.info.stopped_by, KVZ_STOP_CALLBACK);
    assert_true(la.info.answer_tokens < 400);
    kvz_engine_close(e);
    CHECK_OK(kvz_session_ask(s, question, &ao, &after_close, NULL));
    assert_string_equal(after_close, alone);
    kvz_session_close(s);
    kvz_free(alone), kvz_free(nested), kvz_free(after_close);
    kvz_engine *bad = NULL;
    kvz_engine_options too_many = {.device = KVZ_RUN_ON_CPU, .threads = KVZ_MAX_THREADS + 1};
    assert_int_equal(kvz_engine_open(&bad, test_tmp_path("rt-close"), test_model_path(), &too_many), KVZ_ERR_ARG);
    assert_null(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_cache_matches_prefill),
        cmocka_unit_test_teardown(test_qwen2_full_cache_matches_prefill, restore_model),
        cmocka_unit_test_teardown(test_rope_freqs_full_cache_matches_prefill, restore_model),
        cmocka_unit_test(test_prompt_matches_rendered_turn),
        cmocka_unit_test(test_questions_do_not_leak),
        cmocka_unit_test(test_composition),
        cmocka_unit_test(test_bad_loads),
        cmocka_unit_test(test_engine_shared_by_threads),
        cmocka_unit_test(test_engine_idle_sessions),
        cmocka_unit_test(test_engine_closed_first_and_nested_ask),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, setup, teardown);
}
