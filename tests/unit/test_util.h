/*
 * test_util.h — shared by the unit tests: cmocka, the model path, golden-file
 * reading. Header-only; every test is one executable.
 */
#ifndef KVZ_TESTS_TEST_UTIL_H
#define KVZ_TESTS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/file_util.h"
#include "common/half.h"
#include "compiler/select.h"
#include "kernels/ggml_types.h"

/* Fail the test with the library's message when a call does not succeed. */
#define CHECK_OK(expr)                                                                        \
    do {                                                                                      \
        int check_rc_ = (expr);                                                               \
        if (check_rc_ != KVZ_OK)                                                              \
            fail_msg("%s failed: %s (%s)", #expr, kvz_strerror(check_rc_), kvz_last_error()); \
    } while (0)

/* The real default model; tests that need it fail (never skip) without it. */
static inline const char *test_model_path(void)
{
    const char *p = getenv("KVZ_MODEL");
    if (!p || !p[0])
        p = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (access(p, R_OK) != 0)
        fail_msg("model '%s' is missing: run scripts/setup.sh (or set KVZ_MODEL)", p);
    return p;
}

/* Whether a test name matches a cmocka filter pattern as cmocka matches it:
 * '*' any run, '?' any one character, every other character itself ('[' too,
 * which fnmatch would read as a set). */
static inline int test_name_matches(const char *pattern, const char *name)
{
    for (;; pattern++, name++) {
        if (*pattern == '*') {
            while (*pattern == '*')
                pattern++;
            for (;; name++) {
                if (test_name_matches(pattern, name))
                    return 1;
                if (!*name)
                    return 0;
            }
        }
        if (!*pattern || !*name)
            return !*pattern && !*name;
        if (*pattern != '?' && *pattern != *name)
            return 0;
    }
}

/* KVZ_TEST_ONLY / KVZ_TEST_SKIP: cmocka name patterns ('*', '?') of the tests
 * a run keeps or leaves out: one test while working on it, or a run that
 * lacks what some tests need and says so in its own log (bench/gpu.sh session
 * runs the *_real tests only once the default model has been carried over).
 * Called by every test program's main with its test array. Patterns that
 * leave no test to run end the program with an error: a misspelt or outdated
 * pattern must not pass as a run of nothing. */
#define test_filters_from_env(tests) test_filters_apply((tests), sizeof(tests) / sizeof *(tests))
static inline void test_filters_apply(const struct CMUnitTest *tests, size_t n)
{
    const char *only = getenv("KVZ_TEST_ONLY"), *skip = getenv("KVZ_TEST_SKIP");
    only = only && only[0] ? only : NULL;
    skip = skip && skip[0] ? skip : NULL;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += (!only || test_name_matches(only, tests[i].name)) && !(skip && test_name_matches(skip, tests[i].name));
    if (kept == 0) {
        fprintf(stderr, "KVZ_TEST_ONLY=%s KVZ_TEST_SKIP=%s leave none of this program's %zu tests to run\n",
                only ? only : "", skip ? skip : "", n);
        exit(1);
    }
    if (only) {
        fprintf(stderr, "KVZ_TEST_ONLY: running only tests named %s\n", only);
        cmocka_set_test_filter(only);
    }
    if (skip) {
        fprintf(stderr, "KVZ_TEST_SKIP: leaving out tests named %s\n", skip);
        cmocka_set_skip_filter(skip);
    }
}

/* The larger of a running maximum and d, where NaN wins: fmax drops a NaN
 * argument, so a comparison whose values went NaN would pass as a difference
 * of 0. Every later bound check on a NaN maximum fails. */
static inline double max_keeping_nan(double max, double d)
{
    return isnan(max) || isnan(d) ? NAN : d > max ? d : max;
}

/* A test size on a GPU and under CUDA emulated on the CPU (make test-cudasim,
 * which defines KVZ_CUDASIM): there the shapes shrink to what the emulation
 * runs in seconds while taking the same code paths (tensor cores from 16
 * queries, keys split across blocks, GQA, head sizes, ragged heads). */
#ifdef KVZ_CUDASIM
#define GPU_OR_EMULATED(gpu, emulated) (emulated)
#else
#define GPU_OR_EMULATED(gpu, emulated) (gpu)
#endif

/* Under the emulation's race check (make test-cudasim-race) a barrier of a
 * 1024-thread block costs ThreadSanitizer about a million clock entries:
 * repeats of what took the same code paths are cut to a few. */
#ifdef KVZ_CUDASIM_RACE
#define UNLESS_RACE_CHECK(normal, race) (race)
#else
#define UNLESS_RACE_CHECK(normal, race) (normal)
#endif

/* Temporary paths made by test_tmp_path, removed (whole folders too) when the
 * test program exits; KVZ_KEEP_TEST_FILES=1 keeps them to look at. */
static char test_tmp_made[64][256];
static int test_tmp_made_count;

static inline int test_remove_entry(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
    (void)st, (void)kind, (void)ftw;
    remove(path);
    return 0;
}

static inline void test_remove_tmp_paths(void)
{
    const char *keep = getenv("KVZ_KEEP_TEST_FILES");
    if (keep && keep[0] && strcmp(keep, "0") != 0)
        return;
    for (int i = 0; i < test_tmp_made_count; i++)
        nftw(test_tmp_made[i], test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A temporary path unique to this process: /tmp/kvz-test-<pid>-<name>. */
static inline const char *test_tmp_path(const char *name)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    int n = snprintf(p, 256, "%s/kvz-test-%ld-%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                     (long)getpid(), name);
    if (n < 0 || n >= 256) { /* cut short, it would name something else (TMPDIR itself), removed at exit */
        fprintf(stderr, "test_tmp_path: TMPDIR and '%s' make a path of more than 255 bytes\n", name);
        exit(1);
    }
    int known = 0;
    for (int i = 0; i < test_tmp_made_count && !known; i++)
        known = strcmp(test_tmp_made[i], p) == 0;
    if (!known && test_tmp_made_count < 64) {
        if (test_tmp_made_count == 0)
            atexit(test_remove_tmp_paths);
        memcpy(test_tmp_made[test_tmp_made_count++], p, 256);
    }
    return p;
}

/* ---- random data ----------------------------------------------------------- */

/* Uniform in [-1, 1), deterministic (xorshift64). */
static inline float test_frand(void)
{
    static uint64_t state = 0x2545F4914F6CDD1Dull;
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return (float)((state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* A (rows, cols) matrix of GGUF `type` with random codes and small, finite
 * scales (malloc'ed). */
static inline uint8_t *test_random_blocks(uint32_t type, int64_t rows, int64_t cols)
{
    kvz_ggml_type_info info = kvz_ggml_type_info_of(type);
    size_t bytes = kvz_ggml_row_bytes(type, (uint64_t)cols) * (size_t)rows;
    uint8_t *m = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        m[i] = (uint8_t)(test_frand() * 128 + 128);
    for (size_t b = 0; b < bytes / info.block_bytes; b++) {
        uint8_t *blk = m + b * info.block_bytes;
        uint16_t d = kvz_f32_to_fp16(0.02f + 0.01f * test_frand());
        if (type == KVZ_GGML_F32) { /* a "block" is one element */
            float v = test_frand();
            memcpy(blk, &v, 4);
        } else if (type == KVZ_GGML_F16 || type == KVZ_GGML_BF16) {
            float v = test_frand();
            uint16_t h = type == KVZ_GGML_F16 ? kvz_f32_to_fp16(v) : kvz_f32_to_bf16(v);
            memcpy(blk, &h, 2);
        } else if (type == KVZ_GGML_Q6_K) { /* d is the last field */
            memcpy(blk + info.block_bytes - 2, &d, 2);
        } else {
            memcpy(blk, &d, 2);
            if (type == KVZ_GGML_Q4_1 || type == KVZ_GGML_Q5_1 || type == KVZ_GGML_Q4_K ||
                type == KVZ_GGML_Q5_K) /* m / dmin */
                memcpy(blk + 2, &d, 2);
        }
    }
    return m;
}

/* ---- golden files: lines of "key value..." ------------------------------ */

typedef struct golden {
    char *data;
    char **lines;
    size_t n_lines, at;
} golden;

static inline void golden_open(golden *g, const char *path)
{
    size_t size;
    memset(g, 0, sizeof *g);
    if (kvz_read_file(path, &g->data, &size) != KVZ_OK)
        fail_msg("cannot read golden file %s", path);
    size_t cap = 16;
    g->lines = malloc(cap * sizeof *g->lines);
    for (char *p = g->data, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (*p == '#')
            continue;
        if (g->n_lines == cap)
            g->lines = realloc(g->lines, (cap *= 2) * sizeof *g->lines);
        g->lines[g->n_lines++] = p;
    }
}

static inline void golden_close(golden *g)
{
    free(g->data);
    free(g->lines);
    memset(g, 0, sizeof *g);
}

/* The next line, which must start with `key `; returns what follows the key. */
static inline const char *golden_expect(golden *g, const char *key)
{
    if (g->at >= g->n_lines)
        fail_msg("golden: expected '%s', got end of file", key);
    const char *line = g->lines[g->at++];
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0 || (line[k] != ' ' && line[k] != '\0'))
        fail_msg("golden: expected '%s', got '%.40s'", key, line);
    return line[k] ? line + k + 1 : line + k;
}

static inline int golden_peek(const golden *g, const char *key)
{
    return g->at < g->n_lines && strncmp(g->lines[g->at], key, strlen(key)) == 0;
}

/* Decode hex into a malloc'ed NUL-terminated buffer. */
static inline char *hex_decode(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

/* "N id id ..." into a malloc'ed array. */
static inline int32_t *parse_ids(const char *s, size_t *n)
{
    char *end;
    *n = strtoul(s, &end, 10);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)strtol(end, &end, 10);
    return ids;
}

/* Every way kvz_select chooses by score: the one threshold (uniform and
 * per layer), per-head top-k with and without a window, whole chunks (with
 * reuse and a window, and without either), whole heads. */
static const kvz_select_opts TEST_SELECT_CASES[] = {
    {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_PAIR, .ratio = 0.3f},
    {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_PAIR, .ratio = 0.3f, .shape = KVZ_SHAPE_PYRAMID, .beta = 20},
    {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_PAIR_UNIFORM, .ratio = 0.2f, .shape = KVZ_SHAPE_DECAY,
     .decay = 0.2f},
    {.method = KVZ_METHOD_KNORM, .level = KVZ_LEVEL_PAIR, .ratio = 0.4f},
    {.method = KVZ_METHOD_SNAPKV, .level = KVZ_LEVEL_PAIR, .ratio = 0.3f, .window = 16},
    {.method = KVZ_METHOD_SNAPKV, .level = KVZ_LEVEL_PAIR, .budget = 8, .window = 32}, /* window > budget */
    {.method = KVZ_METHOD_CHUNKKV, .level = KVZ_LEVEL_PAIR, .ratio = 0.3f, .chunk = 10, .reuse = 2, .window = 16},
    {.method = KVZ_METHOD_CHUNKKV, .level = KVZ_LEVEL_PAIR, .ratio = 0.3f, .chunk = 7, .reuse = 1,
     .shape = KVZ_SHAPE_PYRAMID, .beta = 20},
    {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_PAIR, .ratio = 0.25f, .chunk = 16, .reuse = 3},
    {.method = KVZ_METHOD_KVZIP, .level = KVZ_LEVEL_HEAD, .ratio = 0.4f},
};
#define TEST_SELECT_N_CASES (sizeof TEST_SELECT_CASES / sizeof TEST_SELECT_CASES[0])

static inline void test_select_assert_equal(const kvz_selection *want, const kvz_selection *got, size_t case_index)
{
    size_t heads = (size_t)want->n_layers * want->n_heads;
    for (size_t i = 0; i <= heads; i++)
        if (want->offset[i] != got->offset[i])
            fail_msg("selection case %zu: head %zu starts at %u, want %u", case_index, i, got->offset[i],
                     want->offset[i]);
    for (uint64_t i = 0; i < kvz_selection_total(want); i++)
        if (want->pos[i] != got->pos[i])
            fail_msg("selection case %zu: kept pair %llu is position %u, want %u", case_index,
                     (unsigned long long)i, got->pos[i], want->pos[i]);
}

/* Backend `got` selects what backend `want` selects, position for position,
 * in every case. */
static inline void test_select_same_on(kvz_backend *want_b, kvz_backend *got_b, const float *scores,
                                       const float *head_scores, int32_t L, int32_t H, int32_t n)
{
    for (size_t ci = 0; ci < TEST_SELECT_N_CASES; ci++) {
        kvz_selection want, got;
        CHECK_OK(kvz_select(&TEST_SELECT_CASES[ci], want_b, scores, head_scores, L, H, n, &want));
        CHECK_OK(kvz_select(&TEST_SELECT_CASES[ci], got_b, scores, head_scores, L, H, n, &got));
        test_select_assert_equal(&want, &got, ci);
        kvz_selection_free(&want), kvz_selection_free(&got);
    }
}

#endif
