/* cmd_eval.c — `kvz eval`: what eviction costs, by the multi-query protocol. */
#include "common/error.h"
#include "common/file_util.h"
#include "common/timer.h"
#include "compiler/compile.h"
#include "compiler/ingest.h"
#include "eval/fidelity.h"
#include "eval/tasks.h"
#include "kvz.h"
#include "model/identity.h"
#include "model/prompt.h"
#include "model/sample.h"
#include "runtime/runtime.h"
#include "tools/cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char HELP[] =
    "usage: kvz eval [options]\n"
    "\n"
    "Measures what eviction and quantization cost. Makes the evaluation documents\n"
    "(deterministic by --seed), compiles each one once per method x ratio x bits into\n"
    "a store, loads every compiled form and asks all of the document's questions\n"
    "against it, as a user would (the multi-query protocol). Reports per\n"
    "configuration:\n"
    "  accuracy   answers that contain the expected one (repeat: the share of the\n"
    "             document's tokens the answer gives back, as a longest common\n"
    "             subsequence), and the same relative to the full cache (none,\n"
    "             n/a or null, when the full cache scored 0); over several tasks,\n"
    "             the mean of the tasks' accuracies (each task weighs the same);\n"
    "  KL, top-1  fidelity to the full cache: the full-cache (ratio 1, 16-bit)\n"
    "             answer is teacher-forced through the compressed cache, and its\n"
    "             next-token distributions compared with the full cache's (mean\n"
    "             KL(full || compressed) in nats, and how often the most likely\n"
    "             token is the same; null in --json where no position was\n"
    "             compared);\n"
    "  bytes/token the artifacts' bytes per document token; each manifest, zstd-\n"
    "             compressed, holds the time of its compile: a byte apart from\n"
    "             run to run unless $SOURCE_DATE_EPOCH is set.\n"
    "\n"
    "Methods: kvzip, chunkkv (generic window), snapkv and pyramidkv (query-aware:\n"
    "scored on the document's first question, the cache reused for the rest),\n"
    "recent (StreamingLLM: 4 attention sinks and the newest tokens), random,\n"
    "knorm. Ratio 1 is the full cache at each bit width.\n"
    "\n"
    "  --tasks LIST        passkey,needle,facts,repeat, each once (default: all)\n"
    "  --docs N            documents per task (default 2)\n"
    "  --words N           words per document (default 300; repeat stories are\n"
    "                      capped at 150 words, the answer has to say them all)\n"
    "  --seed N            document seed (default 1)\n"
    "  --methods LIST      default kvzip,chunkkv,snapkv,pyramidkv,recent,random\n"
    "  --ratios LIST       kept fractions (default 0.1,0.2,0.3,0.5,1)\n"
    "  --bits LIST         bits per kept element (default 4)\n"
    "  --max-tokens N      answer limit (default 24; repeat: the document + 16)\n"
    "  --store DIR         keep the compiled forms in this store (default: a\n"
    "                      temporary store, removed at the end or when a signal\n"
    "                      stops the run); a later eval on it loads the forms it\n"
    "                      finds as the run that compiled them made them (its kvz\n"
    "                      and --threads, which this run's output does not name)\n"
    "  --json              one JSON object per configuration on stdout; each, like\n"
    "                      the table's last line, names this run's kvz version,\n"
    "                      model fingerprint, seed, docs, words, max tokens, device\n"
    "                      and threads (other threads round sums apart)\n"
    "  --svg FILE          plot accuracy and top-1 agreement against the ratio (a\n"
    "                      line per method and bits, to ratio 1 when --ratios has it)\n"
    "  --quiet             nothing on stderr but errors and warnings (no progress,\n"
    "                      no timing); the results stay on stdout\n"
    "  --model PATH, --device D, --threads N   as in `kvz compile`\n";

typedef struct eval_method {
    const char *name;
    kvz_method method;
    kvz_budget_shape shape;
    uint32_t chunk;
    int query_aware; /* scored on the first question, reused for the rest */
    int by_default;  /* in --methods' default list */
} eval_method;

/* "full", the reference every other row is measured against, stays last (FULL_METHOD). */
static const eval_method METHODS[] = {
    {"kvzip", KVZ_METHOD_KVZIP, KVZ_SHAPE_UNIFORM, 0, 0, 1},
    {"chunkkv", KVZ_METHOD_CHUNKKV, KVZ_SHAPE_UNIFORM, 10, 0, 1},
    {"snapkv", KVZ_METHOD_SNAPKV, KVZ_SHAPE_UNIFORM, 0, 1, 1},
    {"pyramidkv", KVZ_METHOD_SNAPKV, KVZ_SHAPE_PYRAMID, 0, 1, 1},
    {"recent", KVZ_METHOD_RECENT, KVZ_SHAPE_UNIFORM, 0, 0, 1},
    {"random", KVZ_METHOD_RANDOM, KVZ_SHAPE_UNIFORM, 0, 0, 1},
    {"knorm", KVZ_METHOD_KNORM, KVZ_SHAPE_UNIFORM, 0, 0, 0},
    {"full", KVZ_METHOD_FULL, KVZ_SHAPE_UNIFORM, 0, 0, 0},
};
enum { N_METHODS = sizeof METHODS / sizeof METHODS[0], FULL_METHOD = N_METHODS - 1, MAX_LIST = 16 };

typedef struct eval_args {
    const char *store, *model, *svg;
    int tasks[KVZ_TASK_COUNT], n_tasks;
    int methods[N_METHODS], n_methods;
    double ratios[MAX_LIST];
    int n_ratios;
    long bits[4];
    int n_bits;
    long docs, words, seed, max_tokens, threads;
    int json, quiet, device;
} eval_args;

/* One row of the result: a (method, ratio, bits) over every document. */
typedef struct eval_row {
    int method;
    double ratio;
    long bits;
    double score[KVZ_TASK_COUNT]; /* summed per task */
    int questions[KVZ_TASK_COUNT];
    double kl;                    /* summed over teacher-forced positions */
    int64_t agree, positions;
    uint64_t bytes, tokens;       /* artifacts and documents */
} eval_row;

/* What made the numbers, beside the options of each row: printed with them
 * (another kvz, model, seed or thread count gives other figures). */
typedef struct eval_run {
    kvz_model_identity model;
    const char *device;
    int threads;
} eval_run;

static int bad(const char *opt, const char *v)
{
    return cli_bad_value("eval", opt, v);
}

static int parse_list(const char *opt, const char *list, int (*item)(const char *, void *, int), void *out,
                      int *n, int max)
{
    return cli_parse_list(list, item, out, n, max) ? bad(opt, list) : 0;
}

/* A value the list already has (it would be counted twice). */
static int listed(const int *items, int n, int value)
{
    for (int j = 0; j < n; j++)
        if (items[j] == value)
            return 1;
    return 0;
}

static int task_item(const char *s, void *out, int i)
{
    int k = kvz_task_from_name(s);
    if (k < 0 || listed(out, i, k))
        return 1;
    ((int *)out)[i] = k;
    return 0;
}

static int method_item(const char *s, void *out, int i)
{
    for (int m = 0; m < FULL_METHOD; m++)
        if (strcmp(s, METHODS[m].name) == 0) {
            if (listed(out, i, m))
                return 1;
            ((int *)out)[i] = m;
            return 0;
        }
    return 1;
}

static int ratio_item(const char *s, void *out, int i)
{
    double *r = out;
    if (cli_parse_float(s, 1e-3, 1, &r[i]))
        return 1;
    for (int j = 0; j < i; j++)
        if (r[j] == r[i])
            return 1;
    return 0;
}

static int bits_item(const char *s, void *out, int i)
{
    long *b = out;
    if (cli_parse_int(s, 2, 16, &b[i]) || (b[i] != 2 && b[i] != 4 && b[i] != 8 && b[i] != 16))
        return 1;
    for (int j = 0; j < i; j++)
        if (b[j] == b[i])
            return 1;
    return 0;
}

static int parse(int argc, char **argv, eval_args *a)
{
    enum { OPT_TASKS = 256, OPT_DOCS, OPT_WORDS, OPT_SEED, OPT_METHODS, OPT_RATIOS, OPT_BITS, OPT_MAX_TOKENS,
           OPT_STORE, OPT_JSON, OPT_SVG, OPT_QUIET, OPT_DEVICE, OPT_THREADS };
    static const struct option options[] = {
        {"tasks", required_argument, 0, OPT_TASKS}, {"docs", required_argument, 0, OPT_DOCS},
        {"words", required_argument, 0, OPT_WORDS}, {"seed", required_argument, 0, OPT_SEED},
        {"methods", required_argument, 0, OPT_METHODS}, {"ratios", required_argument, 0, OPT_RATIOS},
        {"bits", required_argument, 0, OPT_BITS}, {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"store", required_argument, 0, OPT_STORE}, {"json", no_argument, 0, OPT_JSON},
        {"svg", required_argument, 0, OPT_SVG}, {"quiet", no_argument, 0, OPT_QUIET},
        {"model", required_argument, 0, 'm'}, {"device", required_argument, 0, OPT_DEVICE},
        {"threads", required_argument, 0, OPT_THREADS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    for (int k = 0; k < KVZ_TASK_COUNT; k++)
        a->tasks[a->n_tasks++] = k;
    for (int m = 0; m < N_METHODS; m++)
        if (METHODS[m].by_default)
            a->methods[a->n_methods++] = m;
    const double ratios[] = {0.1, 0.2, 0.3, 0.5, 1.0};
    for (int i = 0; i < 5; i++)
        a->ratios[a->n_ratios++] = ratios[i];
    a->bits[a->n_bits++] = 4;
    a->docs = 2, a->words = 300, a->seed = 1, a->max_tokens = 24;
    a->device = KVZ_DEVICE_AUTO;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:h", options, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_TASKS: rc = parse_list("tasks", optarg, task_item, a->tasks, &a->n_tasks, KVZ_TASK_COUNT); break;
        case OPT_METHODS:
            rc = parse_list("methods", optarg, method_item, a->methods, &a->n_methods, FULL_METHOD);
            break;
        case OPT_RATIOS: rc = parse_list("ratios", optarg, ratio_item, a->ratios, &a->n_ratios, MAX_LIST); break;
        case OPT_BITS: rc = parse_list("bits", optarg, bits_item, a->bits, &a->n_bits, 4); break;
        case OPT_DOCS: if (cli_parse_int(optarg, 1, 1000, &a->docs)) rc = bad("docs", optarg); break;
        case OPT_WORDS: if (cli_parse_int(optarg, 16, 5000, &a->words)) rc = bad("words", optarg); break;
        case OPT_SEED: if (cli_parse_int(optarg, 0, 1L << 62, &a->seed)) rc = bad("seed", optarg); break;
        case OPT_MAX_TOKENS: if (cli_parse_int(optarg, 1, 4096, &a->max_tokens)) rc = bad("max-tokens", optarg); break;
        case OPT_THREADS: if (cli_parse_threads(optarg, &a->threads)) rc = bad("threads", optarg); break;
        case OPT_DEVICE: if (cli_parse_device(optarg, &a->device)) rc = bad("device", optarg); break;
        case OPT_STORE: a->store = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_SVG: a->svg = optarg; break;
        case OPT_QUIET: a->quiet = 1; break;
        case 'm': a->model = optarg; break;
        case 'h': fputs(HELP, stdout); return -1;
        default: return cli_bad_option(HELP, argv[0]);
        }
        if (rc)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "kvz eval: unexpected argument '%s'\n", argv[optind]);
        return KVZ_EXIT_USAGE;
    }
    return KVZ_EXIT_OK;
}

/* ---- one document ------------------------------------------------------------ */

typedef struct reference {
    kvz_tokens *answers; /* the full cache's greedy answer per question */
    float **logits;      /* its teacher-forced rows per question */
    int32_t *rows;
} reference;

typedef struct doc_run {
    const eval_args *a;
    kvz_model *model;
    kvz_store *store;
    const kvz_task_doc *doc;
    kvz_tokens doc_tokens;
    reference ref;
    float *scratch; /* rows x vocab */
    int32_t max_rows;
} doc_run;

static int32_t answer_limit(const doc_run *d)
{
    return d->doc->kind == KVZ_TASK_REPEAT ? (int32_t)d->doc_tokens.len + 16 : (int32_t)d->a->max_tokens;
}

static int compile_config(doc_run *d, const eval_method *em, double ratio, long bits, const char *name,
                          kvz_doc_result *res)
{
    kvz_compile_opts o;
    kvz_compile_opts_default(&o);
    o.sel.method = em->method;
    o.sel.shape = em->shape;
    o.sel.chunk = em->chunk;
    o.sel.ratio = (float)ratio;
    o.bits = (uint32_t)bits;
    o.reserve = answer_limit(d) + 96;
    if (em->query_aware)
        o.question = d->doc->questions[0].question;
    kvz_compiler *c;
    KVZ_TRY(kvz_compiler_new(&c, d->model, d->store, &o));
    uint8_t hash[16];
    kvz_text_hash(d->doc->text, d->doc->len, hash);
    int rc = kvz_compile_document(c, name, d->doc->text, d->doc->len, hash, res, NULL, NULL);
    kvz_compiler_free(c);
    return rc;
}

/* The rows to teacher-force for an answer: one per answer token, plus the
 * end-of-turn prediction when the answer stopped there. */
static int32_t rows_of(const kvz_tokens *answer, int ended) { return (int32_t)answer->len + (ended ? 1 : 0); }

static double task_score(const doc_run *d, int32_t q, const kvz_tokens *answer)
{
    if (d->doc->kind == KVZ_TASK_REPEAT) {
        int64_t common = kvz_lcs_length(d->doc_tokens.ids, (int32_t)d->doc_tokens.len, answer->ids,
                                        (int32_t)answer->len);
        return common < 0 ? 0 : (double)common / (double)d->doc_tokens.len;
    }
    char *text = NULL;
    size_t len;
    if (kvz_detokenize(d->model->tokenizer, answer->ids, answer->len, 0, &text, &len) != KVZ_OK)
        return 0;
    double s = kvz_answer_matches(text, d->doc->questions[q].answer);
    free(text);
    return s;
}

/* Load one compiled form and ask every question; with `is_reference` keep
 * the answers and their teacher-forced logits, else compare against them. */
static int run_config(doc_run *d, const char *name, int is_reference, eval_row *row)
{
    kvz_load_opts lo = {.reserve = answer_limit(d) + 96};
    kvz_loaded *l;
    kvz_load_stats ls;
    KVZ_TRY(kvz_load(d->model, d->store, &name, 1, &lo, &l, &ls));
    const int32_t V = d->model->hp.vocab;
    int rc = KVZ_OK;
    for (int32_t q = 0; q < d->doc->n_questions && rc == KVZ_OK; q++) {
        const char *question = d->doc->questions[q].question;
        kvz_tokens answer = {0};
        kvz_generate_stats st;
        kvz_generate_opts go = {.max_tokens = answer_limit(d)};
        rc = kvz_loaded_ask(l, question, &go, &answer, &st);
        if (rc == KVZ_OK) {
            row->score[d->doc->kind] += task_score(d, q, &answer);
            row->questions[d->doc->kind]++;
        }
        if (rc == KVZ_OK && is_reference) {
            int32_t rows = rows_of(&answer, st.stopped_by == KVZ_GENERATE_END_OF_TURN);
            d->ref.rows[q] = rows;
            d->ref.answers[q] = answer;
            answer = (kvz_tokens){0};
            if (rows > 0) {
                d->ref.logits[q] = malloc((size_t)rows * V * sizeof(float));
                rc = d->ref.logits[q] ? kvz_loaded_teacher_force(l, question, d->ref.answers[q].ids, rows,
                                                                 d->ref.logits[q])
                                      : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
            }
        } else if (rc == KVZ_OK && d->ref.rows[q] > 0) {
            int32_t rows = d->ref.rows[q];
            rc = kvz_loaded_teacher_force(l, question, d->ref.answers[q].ids, rows, d->scratch);
            for (int32_t r = 0; r < rows && rc == KVZ_OK; r++) {
                const float *p = d->ref.logits[q] + (size_t)r * V, *x = d->scratch + (size_t)r * V;
                row->kl += kvz_kl_divergence(p, x, V);
                row->agree += kvz_argmax(p, V) == kvz_argmax(x, V);
                row->positions++;
            }
        }
        if (rc == KVZ_OK && is_reference)
            row->positions += d->ref.rows[q], row->agree += d->ref.rows[q]; /* itself, by definition */
        kvz_tokens_free(&answer);
    }
    kvz_loaded_free(l);
    return rc;
}

/* A ratio with two decimals, more where two ratios would look alike (0.101
 * and 0.104): a configuration's name and its row must name it alone. */
static const char *ratio_text(double ratio, char out[32])
{
    for (int decimals = 2; decimals < 9; decimals++) {
        snprintf(out, 32, "%.*f", decimals, ratio);
        if (fabs(strtod(out, NULL) - ratio) < 1e-12)
            return out;
    }
    snprintf(out, 32, "%.9g", ratio);
    return out;
}

static void config_name(char *out, size_t size, const char *doc, const char *method, double ratio, long bits)
{
    char r[32];
    snprintf(out, size, "%s %s r%s b%ld", doc, method, ratio_text(ratio, r), bits);
}

static int progress_line(const eval_args *a, int i, int n, const char *what)
{
    if (!a->quiet)
        fprintf(stderr, "[%d/%d] %s\n", i, n, what);
    return 0;
}

/* ---- output ------------------------------------------------------------------ */

static double row_accuracy(const eval_row *r, int task)
{
    if (task >= 0)
        return r->questions[task] ? r->score[task] / r->questions[task] : NAN;
    double s = 0;
    int n = 0;
    /* the mean of the tasks' accuracies: every task weighs the same */
    for (int k = 0; k < KVZ_TASK_COUNT; k++)
        if (r->questions[k])
            s += r->score[k] / r->questions[k], n++;
    return n ? s / n : NAN;
}

static void print_table(const eval_args *a, const eval_run *run, const eval_row *rows, int n, const eval_row *full)
{
    double full_acc = row_accuracy(full, -1);
    printf("| method | ratio | bits | accuracy | vs full | KL (nats) | top-1 |");
    for (int t = 0; t < a->n_tasks; t++)
        printf(" %s |", kvz_task_name((kvz_task_kind)a->tasks[t]));
    printf(" bytes/token |\n|---|---|---|---|---|---|---|");
    for (int t = 0; t < a->n_tasks; t++)
        printf("---|");
    printf("---|\n");
    for (int i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        double acc = row_accuracy(r, -1);
        char ratio[32], relative[32] = "n/a"; /* relative to a full cache that scored 0: none */
        if (full_acc > 0)
            snprintf(relative, sizeof relative, "%.1f%%", 100 * acc / full_acc);
        printf("| %s | %s | %ld | %.1f%% | %s | %.4f | %.3f |", METHODS[r->method].name, ratio_text(r->ratio, ratio),
               r->bits, 100 * acc, relative, r->positions ? r->kl / r->positions : 0,
               r->positions ? (double)r->agree / r->positions : 0);
        for (int t = 0; t < a->n_tasks; t++)
            printf(" %.1f%% |", 100 * row_accuracy(r, a->tasks[t]));
        printf(" %.0f |\n", r->tokens ? (double)r->bytes / r->tokens : 0);
    }
    char shown[CLI_SHOWN_MAX]; /* general.name is the file's: escape what a terminal would act on */
    printf("\nkvz %s, model %s (fingerprint %016llx), seed %ld, %ld document(s) per task of %ld words, "
           "answers up to %ld tokens, %s, %d thread(s)\n",
           KVZ_VERSION_STRING, cli_shown(shown, run->model.name, strlen(run->model.name)),
           (unsigned long long)run->model.fingerprint, a->seed, a->docs,
           a->words, a->max_tokens, run->device, run->threads);
}

static void print_json(const eval_args *a, const eval_run *run, const eval_row *rows, int n, const eval_row *full)
{
    double full_acc = row_accuracy(full, -1);
    for (int i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        double acc = row_accuracy(r, -1);
        char relative[32] = "null"; /* relative to a full cache that scored 0: none */
        if (full_acc > 0)
            snprintf(relative, sizeof relative, "%.4f", acc / full_acc);
        char kl[32] = "null", top1[32] = "null"; /* no position compared: no figure (0 read as perfect) */
        if (r->positions) {
            snprintf(kl, sizeof kl, "%.6f", r->kl / r->positions);
            snprintf(top1, sizeof top1, "%.4f", (double)r->agree / r->positions);
        }
        printf("{\"method\":\"%s\",\"ratio\":%.9g,\"bits\":%ld,\"accuracy\":%.4f,\"relative_accuracy\":%s,"
               "\"kl\":%s,\"top1\":%s,\"positions\":%lld,\"bytes_per_token\":%.1f,\"tasks\":{",
               METHODS[r->method].name, r->ratio, r->bits, acc, relative, kl, top1, (long long)r->positions,
               r->tokens ? (double)r->bytes / r->tokens : 0);
        for (int t = 0; t < a->n_tasks; t++)
            printf("%s\"%s\":{\"accuracy\":%.4f,\"questions\":%d}", t ? "," : "",
                   kvz_task_name((kvz_task_kind)a->tasks[t]), row_accuracy(r, a->tasks[t]),
                   r->questions[a->tasks[t]]);
        printf("},\"kvz\":\"%s\",\"model\":\"%016llx\",\"seed\":%ld,\"docs\":%ld,\"words\":%ld,"
               "\"max_tokens\":%ld,\"device\":\"%s\",\"threads\":%d}\n",
               KVZ_VERSION_STRING, (unsigned long long)run->model.fingerprint, a->seed, a->docs, a->words,
               a->max_tokens, run->device, run->threads);
    }
}

static const char *const COLORS[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a",
                                     "#66a61e", "#e6ab02", "#a6761d", "#444444"};

/* Two panels, accuracy (relative to full) and top-1 agreement, against the
 * ratio; a line per method and bit width through its ratios in order, ending
 * at the full cache of those bits at ratio 1 when --ratios lists 1. Past 8
 * series the colours come again, with another dash pattern each time. */
static int write_svg(const char *path, const eval_args *a, const eval_row *rows, int n, const eval_row *full)
{
    char *svg = NULL; /* written whole, or not at all */
    size_t svg_len = 0;
    FILE *f = open_memstream(&svg, &svg_len);
    if (!f)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    /* the legend runs under both panels, LEGEND_COLUMNS entries a row of LEGEND_STEP pixels: the
     * longest label, "pyramidkv 16-bit", takes about 110 pixels of 12-pixel sans-serif after its line */
    const int W = 460, L = 56, T = 56, PW = 360, PH = 220, LEGEND = T + PH + 52;
    enum { LEGEND_COLUMNS = 5, LEGEND_STEP = 150 };
    int n_series = (int)(a->n_methods * a->n_bits),
        height = LEGEND + ((n_series + LEGEND_COLUMNS - 1) / LEGEND_COLUMNS) * 14 + 8;
    double full_acc = row_accuracy(full, -1);
    int has_one = 0;
    for (int ri = 0; ri < a->n_ratios; ri++)
        has_one |= a->ratios[ri] >= 1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", 2 * W, height);
    const char *titles[2] = {full_acc > 0 ? "accuracy relative to the full cache"
                                          : "accuracy relative to the full cache (none: it scored 0)",
                             "top-1 agreement with the full cache"};
    for (int panel = 0; panel < 2; panel++) {
        int x0 = panel * W + L, y0 = T;
        fprintf(f, "<text x=\"%d\" y=\"20\" font-weight=\"bold\">%s</text>\n", x0, titles[panel]);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", x0, y0,
                PW, PH);
        for (int g = 0; g <= 4; g++) {
            int y = y0 + PH - g * PH / 4, x = x0 + g * PW / 4;
            fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
                       "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f</text>"
                       "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.2f</text>\n",
                    x0, y, x0 + PW, y, x0 - 6, y + 4, g / 4.0, x, y0 + PH + 16, g / 4.0);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">kept ratio</text>\n", x0 + PW / 2,
                y0 + PH + 34);
        int series = 0;
        for (int mi = 0; mi < a->n_methods; mi++)
            for (int bi = 0; bi < a->n_bits; bi++, series++) {
                static const char *const DASHES[] = {"none", "6,3", "2,2", "8,3,2,3"};
                const char *color = COLORS[series % 8], *dash = DASHES[series / 8 % 4];
                int order[N_METHODS * MAX_LIST * 4 + 8], k = 0; /* this series' rows by ratio */
                for (int i = 0; i < n; i++) {
                    const eval_row *r = &rows[i];
                    int ratio_one = has_one && r->method == FULL_METHOD && r->bits == a->bits[bi];
                    if (!(r->method == a->methods[mi] && r->bits == a->bits[bi]) && !ratio_one)
                        continue;
                    int at = k++;
                    for (; at > 0 && rows[order[at - 1]].ratio > r->ratio; at--)
                        order[at] = order[at - 1];
                    order[at] = i;
                }
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-dasharray=\"%s\" stroke-width=\"2\" "
                           "points=\"", color, dash);
                for (int j = 0; j < k && (panel == 1 || full_acc > 0); j++) {
                    const eval_row *r = &rows[order[j]];
                    double v = panel == 0 ? row_accuracy(r, -1) / full_acc
                                          : (r->positions ? (double)r->agree / r->positions : 0);
                    v = v > 1.1 ? 1.1 : v; /* the title sits above 1.1 */
                    fprintf(f, "%.1f,%.1f ", x0 + r->ratio * PW, y0 + PH - v * PH);
                }
                fprintf(f, "\"/>\n");
                if (panel == 0) {
                    int lx = x0 + 8 + (series % LEGEND_COLUMNS) * LEGEND_STEP,
                        ly = LEGEND + (series / LEGEND_COLUMNS) * 14;
                    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"%s\" "
                               "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" fill=\"%s\">%s %ld-bit</text>\n",
                            lx, ly - 4, lx + 14, ly - 4, color, dash, lx + 18, ly, color, METHODS[a->methods[mi]].name,
                            a->bits[bi]);
                }
            }
    }
    fprintf(f, "</svg>\n");
    return cli_svg_put(path, f, &svg, &svg_len, KVZ_OK);
}

/* ---- driver ------------------------------------------------------------------ */

static eval_row *find_row(eval_row *rows, int n, int method, double ratio, long bits)
{
    for (int i = 0; i < n; i++)
        if (rows[i].method == method && fabs(rows[i].ratio - ratio) < 1e-9 && rows[i].bits == bits)
            return &rows[i];
    return NULL;
}

static void reference_free(reference *r, int32_t n)
{
    for (int32_t q = 0; r->answers && q < n; q++)
        kvz_tokens_free(&r->answers[q]), free(r->logits[q]);
    free(r->answers), free(r->logits), free(r->rows);
    memset(r, 0, sizeof *r);
}

/* Every configuration of one document: the full cache first (the reference),
 * then each method x ratio x bits. */
static int eval_document(doc_run *d, eval_row *rows, int n_rows, eval_row *full, int *step, int steps)
{
    const eval_args *a = d->a;
    const kvz_task_doc *doc = d->doc;
    int32_t nq = doc->n_questions;
    d->ref.answers = calloc((size_t)nq, sizeof *d->ref.answers);
    d->ref.logits = calloc((size_t)nq, sizeof *d->ref.logits);
    d->ref.rows = calloc((size_t)nq, sizeof *d->ref.rows);
    if (!d->ref.answers || !d->ref.logits || !d->ref.rows)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    char name[160], what[256];
    kvz_doc_result res;
    config_name(name, sizeof name, doc->name, "full", 1.0, 16);
    progress_line(a, ++*step, steps, name);
    KVZ_TRY(compile_config(d, &METHODS[FULL_METHOD], 1.0, 16, name, &res));
    full->bytes += res.bytes, full->tokens += (uint64_t)res.tokens;
    KVZ_TRY(run_config(d, name, 1, full));
    int32_t max_rows = 1;
    for (int32_t q = 0; q < nq; q++)
        max_rows = d->ref.rows[q] > max_rows ? d->ref.rows[q] : max_rows;
    d->scratch = malloc((size_t)max_rows * d->model->hp.vocab * sizeof(float));
    if (!d->scratch)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_rows; i++) {
        eval_row *r = &rows[i];
        if (r == full)
            continue;
        const eval_method *em = &METHODS[r->method];
        config_name(name, sizeof name, doc->name, em->name, r->ratio, r->bits);
        snprintf(what, sizeof what, "%s (%d question%s)", name, nq, nq > 1 ? "s" : "");
        progress_line(a, ++*step, steps, what);
        KVZ_TRY(compile_config(d, em, r->ratio, r->bits, name, &res));
        r->bytes += res.bytes, r->tokens += (uint64_t)res.tokens;
        KVZ_TRY(run_config(d, name, 0, r));
    }
    return KVZ_OK;
}

static int make_temp_store(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/kvz-eval-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    return mkdtemp(dir) ? KVZ_OK : kvz_errorf(KVZ_ERR_IO, "cannot create a temporary store under %s", dir);
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    if (a.svg && (rc = cli_check_svg_path("eval", a.svg)) != 0)
        return rc;
    cli_warn_threads("eval", a.threads);
    /* rows: the full cache per bit width at ratio 1, every method at ratios < 1 */
    eval_row rows[N_METHODS * MAX_LIST * 4 + 8];
    int n_rows = 0;
    memset(rows, 0, sizeof rows);
    rows[n_rows++] = (eval_row){.method = FULL_METHOD, .ratio = 1.0, .bits = 16};
    for (int bi = 0; bi < a.n_bits; bi++) {
        for (int mi = 0; mi < a.n_methods; mi++)
            for (int ri = 0; ri < a.n_ratios; ri++)
                if (a.ratios[ri] < 1 && !find_row(rows, n_rows, a.methods[mi], a.ratios[ri], a.bits[bi]))
                    rows[n_rows++] = (eval_row){.method = a.methods[mi], .ratio = a.ratios[ri], .bits = a.bits[bi]};
        int has_one = 0;
        for (int ri = 0; ri < a.n_ratios; ri++)
            has_one |= a.ratios[ri] >= 1;
        if (has_one && a.bits[bi] != 16)
            rows[n_rows++] = (eval_row){.method = FULL_METHOD, .ratio = 1.0, .bits = a.bits[bi]};
    }
    char temp[4096] = "";
    kvz_model *m = NULL;
    kvz_store *s = NULL;
    kvz_model_config mc = {.backend = {.device = (kvz_device)a.device, .n_threads = (int)a.threads}};
    int st = a.store ? KVZ_OK : make_temp_store(temp, sizeof temp);
    if (temp[0])
        cli_temp_store_set(temp); /* removed at the end, or by a signal */
    if (st == KVZ_OK)
        st = kvz_store_open(&s, a.store ? a.store : temp, KVZ_STORE_CREATE);
    if (st == KVZ_OK)
        st = kvz_model_load(&m, cli_model_path(a.model), &mc);
    if (st == KVZ_OK)
        cli_note_device("eval", m->device_note);
    int step = 0, steps = (int)(a.n_tasks * a.docs * n_rows);
    double t0 = kvz_now_seconds();
    for (int t = 0; t < a.n_tasks && st == KVZ_OK; t++)
        for (long i = 0; i < a.docs && st == KVZ_OK; i++) {
            kvz_task_kind kind = (kvz_task_kind)a.tasks[t];
            long words = kind == KVZ_TASK_REPEAT && a.words > 150 ? 150 : a.words;
            doc_run d = {.a = &a, .model = m, .store = s};
            kvz_task_doc doc;
            st = kvz_task_make(kind, (int32_t)i, (uint64_t)a.seed, (int32_t)words, &doc);
            if (st != KVZ_OK)
                break;
            d.doc = &doc;
            st = kvz_tokenize(m->tokenizer, doc.text, doc.len, 0, &d.doc_tokens);
            if (st == KVZ_OK)
                st = eval_document(&d, rows, n_rows, &rows[0], &step, steps);
            if (st != KVZ_OK)
                st = kvz_error_context(st, "%s", doc.name);
            reference_free(&d.ref, doc.n_questions);
            free(d.scratch);
            kvz_tokens_free(&d.doc_tokens);
            kvz_task_doc_free(&doc);
        }
    eval_run run = {0};
    if (st == KVZ_OK) {
        kvz_model_identity_of(m, &run.model);
        run.device = m->backend->ops->name;
        run.threads = m->backend->n_threads;
    }
    if (st == KVZ_OK) {
        if (!a.quiet)
            fprintf(stderr, "%d configuration(s) x %ld document(s) of %d task(s) in %.1f s\n", n_rows, a.docs,
                    a.n_tasks, kvz_now_seconds() - t0);
        if (a.json)
            print_json(&a, &run, rows, n_rows, &rows[0]);
        else
            print_table(&a, &run, rows, n_rows, &rows[0]);
        if (a.svg)
            st = write_svg(a.svg, &a, rows, n_rows, &rows[0]);
    }
    rc = st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("eval", st);
    kvz_model_free(m);
    kvz_store_close(s);
    cli_temp_store_remove();
    return rc;
}
