/* cmd_bench.c — `kvz bench`: prefill and decode speed of the engine on real text. */
#include "common/error.h"
#include "common/file_util.h"
#include "common/timer.h"
#include "model/context.h"
#include "model/model.h"
#include "tools/bench_cache.h"
#include "tools/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char HELP[] =
    "usage: kvz bench [options]\n"
    "\n"
    "Times prefill of N tokens of real text (each N in a fresh context) and then\n"
    "greedy decoding at that context length. One line per N; --json for machines.\n"
    "\n"
    "  -m, --model PATH  GGUF model (default: $KVZ_MODEL, else the setup's SmolLM2)\n"
    "  --prefill LIST    comma-separated token counts (default 512,2048,8192, each\n"
    "                    cut to leave --decode tokens of the model's context; a\n"
    "                    size given that does not leave them is refused)\n"
    "  --decode N        tokens decoded after each prefill (default 64)\n"
    "  --text FILE       text to tokenize and repeat (default: the project's\n"
    "                    tests/data/gpl3_excerpt.txt, python_datamodel.txt, zpipe.c)\n"
    "  --chunk N         prefill chunk (default 512)\n"
    "  --repeat N        runs per size; the best is reported (default 1)\n"
    "  --threads N       CPU threads, 1 to 1024 (default: $OMP_NUM_THREADS, else\n"
    "                    every CPU this process may use)\n"
    "  --device D        cpu, cuda or auto\n"
    "  --weights W       auto, f32 or native (CPU)\n"
    "  --ratio R         also, at each N: one decode step's attention over one layer\n"
    "                    (the mean over every layer's cache, read in turn) and\n"
    "                    greedy decode over a loaded cache keeping every row,\n"
    "                    then keeping a fraction R of them (0 < R < 1; heads uneven\n"
    "                    as KVzip leaves them: 0.5x to 1.5x of R*N rows)\n"
    "  --cache-only      with --ratio: skip the prefill runs; the cache is synthetic,\n"
    "                    so --prefill sizes past the model's context are timed too\n"
    "  --json            one JSON object per line, its \"kind\" first: \"cache\"\n"
    "                    (--ratio, before the prefill line of the same N), \"prefill\",\n"
    "                    and last \"memory\" (peak_rss_bytes; peak_rss_mb is the same\n"
    "                    in MiB).\n"
    "                    Times: *_s in seconds, *_us in microseconds.\n";

enum { OPT_PREFILL = 256, OPT_DECODE, OPT_TEXT, OPT_CHUNK, OPT_REPEAT, OPT_THREADS, OPT_DEVICE,
       OPT_WEIGHTS, OPT_RATIO, OPT_CACHE_ONLY, OPT_JSON };

static int text_tokens(const kvz_model *m, const char *path, kvz_tokens *out)
{
    static const char *defaults[] = {"tests/data/gpl3_excerpt.txt", "tests/data/python_datamodel.txt",
                                     "tests/data/zpipe.c"};
    const char *const *files = path ? &path : defaults;
    size_t n_files = path ? 1 : 3;
    for (size_t i = 0; i < n_files; i++) {
        char *text, found[PATH_MAX];
        size_t len;
        int read = kvz_read_file(path ? files[i] : cli_project_file(files[i], found), &text, &len);
        if (read == KVZ_ERR_NOT_FOUND && !path) /* an installed kvz, away from its source tree */
            return kvz_error_context(read, "the default texts are the source tree's tests/data; give --text FILE");
        KVZ_TRY(read);
        int rc = kvz_tokenize(m->tokenizer, text, len, 0, out);
        free(text);
        KVZ_TRY(rc);
    }
    if (out->len == 0)
        return kvz_errorf(KVZ_ERR_ARG, "the benchmark text is empty");
    return KVZ_OK;
}

typedef struct bench_result {
    double prefill_s, decode_s;
} bench_result;

static int run_once(kvz_model *m, const kvz_tokens *text, int32_t n, int32_t decode, int32_t chunk,
                    bench_result *r)
{
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    kvz_context *c = NULL;
    int rc = tokens ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n && tokens; i++)
        tokens[i] = text->ids[i % text->len];
    if (rc == KVZ_OK)
        rc = kvz_context_new(&c, m, n + decode, chunk);
    kvz_eval_opts opts = {.logits = KVZ_LOGITS_KEEP}; /* greedy on the backend, as kvz_generate does */
    double t0 = kvz_now_seconds();
    if (rc == KVZ_OK)
        rc = kvz_context_eval(c, tokens, n, &opts, NULL);
    if (rc == KVZ_OK)
        rc = kvz_context_finish(c);
    double t1 = kvz_now_seconds();
    for (int32_t i = 0; i < decode && rc == KVZ_OK; i++) {
        int32_t next;
        rc = kvz_context_sample(c, NULL, &next);
        if (rc == KVZ_OK)
            rc = kvz_context_eval(c, &next, 1, &opts, NULL);
    }
    if (rc == KVZ_OK)
        rc = kvz_context_finish(c);
    r->prefill_s = t1 - t0;
    r->decode_s = kvz_now_seconds() - t1;
    kvz_context_free(c);
    free(tokens);
    return rc;
}

/* A decode rate as printed: none was measured with --decode 0 (JSON null). */
static const char *decode_rate(char buf[32], int64_t decode, double tok_s, int json)
{
    if (decode > 0)
        snprintf(buf, 32, json ? "%.2f" : "%7.2f tok/s", tok_s);
    else
        snprintf(buf, 32, "%s", json ? "null" : "not run");
    return buf;
}

/* One line: attention and decode over a full and a compressed loaded cache. */
static int bench_cache(kvz_model *m, int32_t n, double ratio, int32_t decode, int32_t repeat, int json)
{
    const int32_t H = m->hp.n_kv_heads;
    int32_t *rows = malloc(2 * (size_t)H * sizeof *rows);
    if (!rows)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    kvz_bench_head_rows(&m->hp, n, 1.0, rows);
    kvz_bench_head_rows(&m->hp, n, ratio, rows + H);
    kvz_cache_timing full, kept;
    int rc = kvz_bench_cache(m, n, rows, decode, repeat, &full);
    if (rc == KVZ_OK)
        rc = kvz_bench_cache(m, n, rows + H, decode, repeat, &kept);
    free(rows);
    if (rc != KVZ_OK)
        return rc;
    double speedup = full.attention_us / kept.attention_us;
    char full_rate[32], kept_rate[32];
    decode_rate(full_rate, decode, full.decode_tok_s, json);
    decode_rate(kept_rate, decode, kept.decode_tok_s, json);
    if (json)
        printf("{\"kind\":\"cache\",\"engine\":\"kvz\",\"device\":\"%s\",\"context_tokens\":%d,\"ratio\":%.9g,"
               "\"rows_full\":%lld,\"rows_kept\":%lld,\"attention_full_us\":%.2f,"
               "\"attention_kept_us\":%.2f,\"attention_speedup\":%.2f,\"decode_tokens\":%d,"
               "\"decode_full_tok_s\":%s,\"decode_kept_tok_s\":%s}\n",
               m->backend->ops->name, n, ratio, (long long)full.rows, (long long)kept.rows, full.attention_us,
               kept.attention_us, speedup, decode, full_rate, kept_rate);
    else
        printf("cache of %6d tokens, ratio %.2f: attention per layer %9.1f us full, %9.1f us kept "
               "(%.2fx); decode %s%s%s%s\n", n, ratio, full.attention_us, kept.attention_us, speedup, full_rate,
               decode > 0 ? " full, " : "", decode > 0 ? kept_rate : "", decode > 0 ? " kept" : "");
    fflush(stdout);
    return KVZ_OK;
}

static int prefill_item(const char *s, void *out, int i)
{
    return cli_parse_int(s, 1, 1 << 24, &((long *)out)[i]);
}

int cmd_bench(int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},         {"prefill", required_argument, 0, OPT_PREFILL},
        {"decode", required_argument, 0, OPT_DECODE}, {"text", required_argument, 0, OPT_TEXT},
        {"chunk", required_argument, 0, OPT_CHUNK},   {"repeat", required_argument, 0, OPT_REPEAT},
        {"threads", required_argument, 0, OPT_THREADS}, {"device", required_argument, 0, OPT_DEVICE},
        {"weights", required_argument, 0, OPT_WEIGHTS}, {"json", no_argument, 0, OPT_JSON},
        {"ratio", required_argument, 0, OPT_RATIO},   {"cache-only", no_argument, 0, OPT_CACHE_ONLY},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0},
    };
    const char *model = NULL, *text_path = NULL, *sizes = "512,2048,8192";
    long decode = 64, chunk = 512, repeat = 1, threads = 0;
    double ratio = 0;
    int json = 0, cache_only = 0, sizes_given = 0, c, index = -1;
    int device = KVZ_DEVICE_AUTO, weights = KVZ_WEIGHTS_AUTO;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:h", options, &index)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case OPT_PREFILL: sizes = optarg, sizes_given = 1; break;
        case OPT_TEXT: text_path = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_DECODE: if (cli_parse_int(optarg, 0, 1 << 20, &decode)) goto bad; break;
        case OPT_CHUNK: if (cli_parse_int(optarg, 1, 1 << 16, &chunk)) goto bad; break;
        case OPT_REPEAT: if (cli_parse_int(optarg, 1, 100, &repeat)) goto bad; break;
        case OPT_THREADS: if (cli_parse_threads(optarg, &threads)) goto bad; break;
        case OPT_DEVICE: if (cli_parse_device(optarg, &device)) goto bad; break;
        case OPT_WEIGHTS: if (cli_parse_weights(optarg, &weights)) goto bad; break;
        case OPT_RATIO: if (cli_parse_float(optarg, 1e-6, 0.999999, &ratio)) goto bad; break;
        case OPT_CACHE_ONLY: cache_only = 1; break;
        case 'h': fputs(HELP, stdout); return KVZ_EXIT_OK;
        default: return cli_bad_option(HELP, argv[0]);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kvz bench: unexpected argument '%s'\n", argv[optind]);
        return KVZ_EXIT_USAGE;
    }
    long ns[64];
    int n_sizes = 0;
    if (cli_parse_list(sizes, prefill_item, ns, &n_sizes, 64)) {
        fprintf(stderr, "kvz bench: invalid --prefill list '%s'\n", sizes);
        return KVZ_EXIT_USAGE;
    }
    if (cache_only && ratio == 0) {
        fputs("kvz bench: --cache-only needs --ratio\n", stderr);
        return KVZ_EXIT_USAGE;
    }
    cli_warn_threads("bench", threads);

    kvz_model_config mc = {.backend = {.device = (kvz_device)device, .n_threads = (int)threads,
                                       .weights = (kvz_weight_policy)weights}};
    kvz_model *m = NULL;
    kvz_tokens text = {0};
    double t_load = kvz_now_seconds();
    int rc = kvz_model_load(&m, cli_model_path(model), &mc);
    t_load = kvz_now_seconds() - t_load;
    if (rc == KVZ_OK)
        cli_note_device("bench", m->device_note);
    if (rc == KVZ_OK && !cache_only) /* --cache-only reads no text */
        rc = text_tokens(m, text_path, &text);
    for (int i = 0; i < n_sizes && rc == KVZ_OK && !sizes_given; i++)
        if (ns[i] + decode + 1 > m->hp.ctx_train) /* the default 8192 on an 8192-token model */
            ns[i] = m->hp.ctx_train - decode - 1 > 0 ? m->hp.ctx_train - decode - 1 : 1;
    for (int i = 1; i < n_sizes && !sizes_given; i++) /* two defaults cut to one size: timed once */
        if (ns[i] == ns[i - 1]) {
            memmove(&ns[i], &ns[i + 1], (size_t)(n_sizes - i - 1) * sizeof ns[0]);
            n_sizes--, i--;
        }
    if (rc == KVZ_OK && !json)
        printf("model %s on %s (%d threads), loaded in %.2f s\n", m->path, m->backend->ops->name,
               m->backend->n_threads, t_load);
    for (int i = 0; i < n_sizes && rc == KVZ_OK; i++) {
        if (ratio > 0)
            rc = bench_cache(m, (int32_t)ns[i], ratio, (int32_t)decode, (int32_t)repeat, json);
        if (cache_only || rc != KVZ_OK)
            continue;
        bench_result best = {1e30, 1e30};
        for (long k = 0; k < repeat && rc == KVZ_OK; k++) {
            bench_result r;
            rc = run_once(m, &text, (int32_t)ns[i], (int32_t)decode, (int32_t)chunk, &r);
            if (r.prefill_s < best.prefill_s)
                best.prefill_s = r.prefill_s;
            if (r.decode_s < best.decode_s)
                best.decode_s = r.decode_s;
        }
        if (rc != KVZ_OK)
            break;
        double pre = ns[i] / best.prefill_s;
        char dec[32];
        decode_rate(dec, decode, decode > 0 ? decode / best.decode_s : 0, json);
        if (json)
            printf("{\"kind\":\"prefill\",\"engine\":\"kvz\",\"device\":\"%s\",\"prefill_tokens\":%ld,\"prefill_s\":%.4f,"
                   "\"prefill_tok_s\":%.1f,\"decode_tokens\":%ld,\"decode_tok_s\":%s}\n",
                   m->backend->ops->name, ns[i], best.prefill_s, pre, decode, dec);
        else
            printf("prefill %6ld tokens: %8.3f s  %8.1f tok/s   decode %ld tokens at that context: "
                   "%s\n", ns[i], best.prefill_s, pre, decode, dec);
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (rc == KVZ_OK && json)
        printf("{\"kind\":\"memory\",\"engine\":\"kvz\",\"peak_rss_bytes\":%lld,\"peak_rss_mb\":%.1f}\n",
               (long long)ru.ru_maxrss * 1024, ru.ru_maxrss / 1024.0);
    else if (rc == KVZ_OK)
        printf("peak RSS %.1f MiB\n", ru.ru_maxrss / 1024.0);
    kvz_tokens_free(&text);
    kvz_model_free(m);
    return rc == KVZ_OK ? KVZ_EXIT_OK : cli_fail("bench", rc);
bad:
    return cli_bad_value("bench", options[index].name, optarg);
}
