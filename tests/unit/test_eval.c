/* test_eval.c — the evaluation's task generators and metrics. */
#include "test_util.h"

#include <math.h>

#include "eval/fidelity.h"
#include "eval/tasks.h"

static void test_tasks_are_deterministic_and_answerable(void **state)
{
    for (int k = 0; k < KVZ_TASK_COUNT; k++) {
        assert_int_equal(kvz_task_from_name(kvz_task_name((kvz_task_kind)k)), k);
        for (int32_t i = 0; i < 3; i++) {
            kvz_task_doc a, b, other;
            CHECK_OK(kvz_task_make((kvz_task_kind)k, i, 7, 300, &a));
            CHECK_OK(kvz_task_make((kvz_task_kind)k, i, 7, 300, &b));
            CHECK_OK(kvz_task_make((kvz_task_kind)k, i, 8, 300, &other));
            assert_string_equal(a.text, b.text);
            assert_int_equal(a.len, strlen(a.text));
            assert_true(strcmp(a.text, other.text) != 0);
            assert_true(a.n_questions >= 1);
            assert_true(a.len > 400);
            for (int32_t q = 0; q < a.n_questions; q++) {
                /* every expected answer is in the document, as whole words */
                assert_true(kvz_answer_matches(a.text, a.questions[q].answer));
                assert_string_equal(a.questions[q].question, b.questions[q].question);
            }
            kvz_task_doc_free(&a), kvz_task_doc_free(&b), kvz_task_doc_free(&other);
        }
    }
    assert_int_equal(kvz_task_from_name("nonsense"), -1);
    kvz_task_doc d;
    assert_int_equal(kvz_task_make(KVZ_TASK_PASSKEY, 0, 1, 3, &d), KVZ_ERR_ARG);
}

static void test_needles_differ_within_a_document(void **state)
{
    kvz_task_doc d;
    CHECK_OK(kvz_task_make(KVZ_TASK_NEEDLE, 0, 1, 400, &d));
    assert_true(d.n_questions >= 3);
    for (int32_t i = 0; i < d.n_questions; i++)
        for (int32_t j = i + 1; j < d.n_questions; j++)
            assert_true(strcmp(d.questions[i].question, d.questions[j].question) != 0);
    kvz_task_doc_free(&d);
}

static void test_answer_matching(void **state)
{
    assert_true(kvz_answer_matches("The pass key is 71432.", "71432"));
    assert_true(kvz_answer_matches("It is 71,432", "71432"));
    assert_true(kvz_answer_matches("it's 71 432!", "71432"));
    assert_true(kvz_answer_matches("She grew up in PORTO.", "Porto"));
    assert_true(kvz_answer_matches("the pet is called Mabel", "mabel"));
    assert_false(kvz_answer_matches("The key is 714321", "71432"));
    assert_false(kvz_answer_matches("born in 19045", "1904"));
    assert_false(kvz_answer_matches("Portofino", "Porto"));
    assert_false(kvz_answer_matches("", "Porto"));
    assert_false(kvz_answer_matches("anything", ""));
}

static void test_kl_divergence(void **state)
{
    float p[5] = {1, 2, 3, 4, 5}, same[5] = {11, 12, 13, 14, 15}, q[5] = {5, 4, 3, 2, 1};
    assert_true(fabs(kvz_kl_divergence(p, p, 5)) < 1e-12);
    assert_true(fabs(kvz_kl_divergence(p, same, 5)) < 1e-9); /* a shift changes no probability */
    double kl = kvz_kl_divergence(p, q, 5);
    /* by hand: sum p_i (log p_i - log q_i) with p = softmax(1..5), q its reverse */
    double zp = 0, e[5];
    for (int i = 0; i < 5; i++)
        zp += exp(i + 1.0);
    double expect = 0;
    for (int i = 0; i < 5; i++) {
        e[i] = exp(i + 1.0) / zp;
        expect += e[i] * ((i + 1.0) - (5.0 - i));
    }
    assert_true(fabs(kl - expect) < 1e-9);
    /* large logits do not overflow */
    float big[3] = {1000, 999, 0}, big2[3] = {999, 1000, 0};
    assert_true(isfinite(kvz_kl_divergence(big, big2, 3)) && kvz_kl_divergence(big, big2, 3) > 0);
}

static void test_lcs(void **state)
{
    int32_t a[] = {1, 2, 3, 4, 5, 6}, b[] = {1, 3, 4, 9, 6}, c[] = {7, 8};
    assert_int_equal(kvz_lcs_length(a, 6, a, 6), 6);
    assert_int_equal(kvz_lcs_length(a, 6, b, 5), 4);
    assert_int_equal(kvz_lcs_length(b, 5, a, 6), 4);
    assert_int_equal(kvz_lcs_length(a, 6, c, 2), 0);
    assert_int_equal(kvz_lcs_length(a, 6, c, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_are_deterministic_and_answerable),
        cmocka_unit_test(test_needles_differ_within_a_document),
        cmocka_unit_test(test_answer_matching),
        cmocka_unit_test(test_kl_divergence),
        cmocka_unit_test(test_lcs),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
