/* cmd_query.c — `kvz query`: load precompiled documents, answer questions. */
#include "common/error.h"
#include "common/file_util.h"
#include "format/doc_record.h"
#include "kernels/backend.h"
#include "kvz.h"
#include "model/utf8.h"
#include "runtime/runtime.h"
#include "tools/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char HELP[] =
    "usage: kvz query --store DIR --doc NAME [--doc NAME...] [options] [QUESTION...]\n"
    "\n"
    "Loads the compiled documents from the store (never prefilling them again) and\n"
    "answers each question; with no question, reads questions from stdin, one per\n"
    "line (interactive on a terminal). Several --doc compose into one context, in\n"
    "the order given. After each answer the question is forgotten, so every\n"
    "question sees only the documents.\n"
    "One question's answer is printed alone; several questions, or questions piped\n"
    "on stdin, as 'Q: question' and 'A: answer' lines (an answer may hold newlines:\n"
    "--json is the form for programs).\n"
    "\n"
    "  --store DIR         the store (see kvz compile, kvz ls)\n"
    "  --doc NAME          a document as named in the store (repeatable)\n"
    "  --segments A[-B]    of the --doc just before: only its segments A to B (A-:\n"
    "                      A to the last; B defaults to A), counted from 1 as\n"
    "                      `kvz inspect --config N` lists them for the form loaded.\n"
    "                      A document longer than a segment (the model's context\n"
    "                      less the prefix and compile's --reserve or kvzip's pass)\n"
    "                      is compiled in segments, which\n"
    "                      may not fit one context together; a run is placed right\n"
    "                      after the previous document, as if the others were not\n"
    "                      there\n"
    "  --config N|ID       which compiled form of each document: N as this store's\n"
    "                      `kvz ls` numbers them (in the order they arrived), or\n"
    "                      the configuration's id, 8 to 16 hex digits as `kvz ls`\n"
    "                      shows them (the same in every store). Default: the\n"
    "                      newest made by this model. Documents loaded in other\n"
    "                      configurations (N, or the newest, is each one's own)\n"
    "                      are said on stderr\n"
    "  -m, --model PATH    GGUF model (default: $KVZ_MODEL, else the setup's\n"
    "                      SmolLM2): the model the documents were compiled with\n"
    "  --max-tokens N      answer length limit (default 256)\n"
    "  --temperature T, --top-p P, --seed N   sampling, as in `kvz generate`\n"
    "  --reserve N         context tokens for question + answer (default 512)\n"
    "  --json              one JSON object per answer, with timings (load ms,\n"
    "                      time to first token, decode tok/s: null for a one-token\n"
    "                      answer); artifact_bytes counts the documents' artifacts\n"
    "                      (not the shared prefix's), kept_pairs the (position, KV\n"
    "                      head, layer) pairs loaded, the prefix's included;\n"
    "                      forms each document's form loaded (config, config_id,\n"
    "                      summary)\n"
    "  --device D, --threads N   as in `kvz generate`\n"
    "  --weights W         CPU weight storage, as in `kvz generate`. Default: native\n"
    "                      for questions given here (no f32 copy of the weights to\n"
    "                      make: on SmolLM2 0.2 s and 500 MB less; each question's\n"
    "                      prefill a little slower), auto for questions read from\n"
    "                      stdin (many: the copy pays for itself)\n"
    "\n"
    "Questions given here are checked before the first is answered (empty, not\n"
    "UTF-8: exit 2). A question too long for the reserve, or one read from stdin\n"
    "that is not UTF-8, is reported (with --json, as an object with \"question\" and\n"
    "\"error\") and the next one answered; the exit code is then that of the last\n"
    "such failure: 10 (too long) or 2 (not UTF-8). Blank lines on stdin are skipped,\n"
    "and a UTF-8 byte-order mark before the first question (Notepad's) dropped.\n"
    "Bytes the model's vocabulary has no token for (see `kvz compile --help`) are\n"
    "left out of a question, with a note on stderr (--json: \"untokenized_bytes\").\n"
    "With --json, an answer cut short in the middle of a character (--max-tokens)\n"
    "ends before that character.\n";

enum { OPT_STORE = 256, OPT_DOC, OPT_SEGMENTS, OPT_CONFIG, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_P, OPT_SEED,
       OPT_RESERVE, OPT_JSON, OPT_DEVICE, OPT_THREADS, OPT_WEIGHTS };

typedef struct query_args {
    const char *store, *model;
    kvz_doc_part *docs; /* names are argv entries; segments counted from 0 */
    size_t n_docs, segments_given; /* segments_given: n_docs when --segments was last given */
    kvz_config_pick config;
    long max_tokens, seed, reserve, threads;
    double temperature, top_p;
    int json, device;
    int weights; /* kvz_weight_policy, or -1: by where the questions come from */
} query_args;

static int bad(const char *opt, const char *v)
{
    return cli_bad_value("query", opt, v);
}

static int parse(int argc, char **argv, query_args *a)
{
    static const struct option options[] = {
        {"store", required_argument, 0, OPT_STORE}, {"doc", required_argument, 0, OPT_DOC},
        {"segments", required_argument, 0, OPT_SEGMENTS},
        {"config", required_argument, 0, OPT_CONFIG}, {"model", required_argument, 0, 'm'},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS}, {"temperature", required_argument, 0, OPT_TEMPERATURE},
        {"top-p", required_argument, 0, OPT_TOP_P}, {"seed", required_argument, 0, OPT_SEED},
        {"reserve", required_argument, 0, OPT_RESERVE}, {"json", no_argument, 0, OPT_JSON},
        {"device", required_argument, 0, OPT_DEVICE}, {"threads", required_argument, 0, OPT_THREADS},
        {"weights", required_argument, 0, OPT_WEIGHTS},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->max_tokens = 256, a->seed = 1, a->top_p = 0.95, a->reserve = 512;
    a->device = KVZ_RUN_ON_AUTO;
    a->weights = -1;
    a->docs = calloc((size_t)argc, sizeof *a->docs);
    int c, rc;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:h", options, NULL)) != -1) {
        switch (c) {
        case OPT_STORE: a->store = optarg; break;
        case OPT_DOC: a->docs[a->n_docs++].name = optarg; break;
        case OPT_SEGMENTS:
            if ((rc = cli_parse_segments("query", optarg, a->docs, a->n_docs, &a->segments_given)) != KVZ_EXIT_OK)
                return rc;
            break;
        case 'm': a->model = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_CONFIG: if (cli_parse_config("query", optarg, 1, &a->config)) return KVZ_EXIT_USAGE; break;
        case OPT_MAX_TOKENS: if (cli_parse_int(optarg, 1, 1 << 20, &a->max_tokens)) return bad("max-tokens", optarg); break;
        case OPT_SEED: if (cli_parse_int(optarg, 0, 1L << 62, &a->seed)) return bad("seed", optarg); break;
        case OPT_RESERVE: if (cli_parse_int(optarg, 16, 1 << 20, &a->reserve)) return bad("reserve", optarg); break;
        case OPT_THREADS: if (cli_parse_threads(optarg, &a->threads)) return bad("threads", optarg); break;
        case OPT_WEIGHTS: if (cli_parse_weights(optarg, &a->weights)) return bad("weights", optarg); break;
        case OPT_TEMPERATURE: if (cli_parse_float(optarg, 0, 100, &a->temperature)) return bad("temperature", optarg); break;
        case OPT_TOP_P: if (cli_parse_float(optarg, 1e-6, 1, &a->top_p)) return bad("top-p", optarg); break;
        case OPT_DEVICE: if (cli_parse_device(optarg, &a->device)) return bad("device", optarg); break;
        case 'h': fputs(HELP, stdout); return -1;
        default: return cli_bad_option(HELP, argv[0]);
        }
    }
    if (!a->store || a->n_docs == 0) {
        fprintf(stderr, "kvz query: give --store DIR and at least one --doc NAME\n");
        return KVZ_EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++) { /* all of them, before the first answer */
        char what[32];
        snprintf(what, sizeof what, "question %d", i - optind + 1);
        if (kvz_utf8_is_blank(argv[i])) { /* stdin's blank lines are skipped; here, a slip */
            fprintf(stderr, "kvz query: %s is empty\n", what);
            return KVZ_EXIT_USAGE;
        }
        if (kvz_utf8_require(argv[i], what) != KVZ_OK) {
            fprintf(stderr, "kvz query: %s\n", kvz_last_error());
            return KVZ_EXIT_USAGE;
        }
    }
    return KVZ_EXIT_OK;
}

/* The form a document was loaded in (forms_loaded, below). */
typedef struct loaded_form {
    int32_t number;
    uint64_t id;
    char summary[128];
} loaded_form;

static int stream_piece(void *user, const char *piece, size_t len)
{
    /* stdout gone (a closed pipe with SIGPIPE ignored, a full disk): stop
     * answering into it; main reports the failed write */
    return cli_answer_write(user, piece, len);
}

static const char *stop_name(int32_t stopped_by)
{
    switch (stopped_by) {
    case KVZ_STOP_END_OF_TURN: return "end_of_turn";
    case KVZ_STOP_MAX_TOKENS: return "max_tokens";
    case KVZ_STOP_CALLBACK: return "callback";
    case KVZ_STOP_RESERVE: return "reserve";
    default: return "unknown";
    }
}

/* One question through the public API (include/kvz.h): the CLI is a client of
 * the same session calls a RAG pipeline uses. */
static int answer(kvz_engine *e, kvz_session *s, const query_args *a, const kvz_load_info *li,
                  const loaded_form *forms, const char *question, int label)
{
    size_t untokenized = 0;
    uint8_t first = 0;
    int rc = kvz_engine_untokenized(e, question, &untokenized, &first);
    if (rc != KVZ_OK)
        return rc;
    cli_note_untokenized("query", "the question", untokenized, first);
    kvz_ask_options o = {.max_tokens = (int32_t)a->max_tokens, .temperature = (float)a->temperature,
                         .top_p = (float)a->top_p, .seed = (uint64_t)a->seed,
                         .stream = a->json ? NULL : stream_piece};
    cli_answer_out out = {0};
    o.stream_user = &out;
    char *text = NULL;
    kvz_ask_info info;
    if (label && !a->json)
        printf("Q: %s\nA: ", question);
    rc = kvz_session_ask(s, question, &o, &text, &info);
    if (rc == KVZ_OK && a->json) {
        printf("{\"question\":");
        cli_json_string(stdout, question, strlen(question));
        printf(",\"answer\":");
        /* an answer stopped mid-character: its whole characters (the cut one
         * would be U+FFFDs standing for nothing the model said) */
        cli_json_string(stdout, text, kvz_utf8_complete_length((const uint8_t *)text, strlen(text)));
        printf(",\"answer_tokens\":%d,\"load_ms\":%.1f,\"artifact_bytes\":%llu,\"kept_pairs\":%llu,"
               "\"segments\":%d,\"ttft_ms\":%.1f,\"decode_tok_s\":",
               info.answer_tokens, li->load_ms, (unsigned long long)li->artifact_bytes,
               (unsigned long long)li->kept_pairs, li->segments, info.first_token_ms);
        if (info.decode_tokens_per_s > 0)
            printf("%.1f", info.decode_tokens_per_s);
        else
            printf("null"); /* nothing decoded after the first token */
        printf(",\"untokenized_bytes\":%zu,\"stopped_at_end_of_turn\":%s,\"stopped_by\":\"%s\",\"forms\":[",
               untokenized, info.ended_turn ? "true" : "false", stop_name(info.stopped_by));
        for (size_t d = 0; d < a->n_docs; d++) {
            printf("%s{\"document\":", d ? "," : "");
            cli_json_string(stdout, a->docs[d].name, strlen(a->docs[d].name));
            printf(",\"config\":%d,\"config_id\":\"%016llx\",\"summary\":", forms[d].number,
                   (unsigned long long)forms[d].id);
            cli_json_string(stdout, forms[d].summary, strlen(forms[d].summary));
            printf("}");
        }
        printf("]}\n");
    } else if (rc == KVZ_OK) {
        printf("\n");
    }
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == KVZ_OK) /* no one reads the answers: stop asking */
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write the output: %s", errno ? strerror(errno) : "a write failed");
    if (rc == KVZ_OK && !a->json && info.stopped_by == KVZ_STOP_MAX_TOKENS) /* --json says it in stopped_by */
        fprintf(stderr, "kvz query: the answer was cut at --max-tokens %ld, before the model ended it\n",
                a->max_tokens);
    if (rc == KVZ_OK && info.stopped_by == KVZ_STOP_RESERVE)
        fprintf(stderr,
                "kvz query: the answer stopped after %d tokens: the context reserved for the question and the "
                "answer is full (--reserve %ld)\n",
                info.answer_tokens, a->reserve);
    kvz_free(text);
    return rc;
}

/* A question that failed on its own (too long for the reserve: KVZ_ERR_RANGE
 * from the session; not UTF-8: refused before it was asked) is said, and the
 * next one asked: returns KVZ_OK after noting `status` in *question_status.
 * Any other failure (or one to write the report) is returned.
 * question_failed takes the session's status: only KVZ_ERR_RANGE is the
 * question's own (its KVZ_ERR_ARG may be anything's). */
static int report_question(const query_args *a, const char *question, int status, int label, int *question_status);

static int question_failed(const query_args *a, const char *question, int status, int label, int *question_status)
{
    return status == KVZ_ERR_RANGE ? report_question(a, question, status, label, question_status) : status;
}

static int report_question(const query_args *a, const char *question, int status, int label, int *question_status)
{
    *question_status = status;
    char why[1024];
    snprintf(why, sizeof why, "%s", kvz_last_error());
    if (a->json) {
        printf("{\"question\":");
        cli_json_string(stdout, question, strlen(question));
        printf(",\"error\":");
        cli_json_string(stdout, why, strlen(why));
        printf("}\n");
    } else {
        printf(label ? "(not answered)\n" : "\n"); /* after "A: "; else one line per question; why: on stderr */
    }
    fprintf(stderr, "kvz query: %s\n", why);
    if (fflush(stdout) != 0 || ferror(stdout))
        return kvz_errorf(KVZ_ERR_IO, "cannot write the output: %s", errno ? strerror(errno) : "a write failed");
    return KVZ_OK;
}

/* --config ID given by its first digits: the whole id, which the API takes.
 * Each document must have one form whose id begins so, and all the same one. */
static int whole_config_id(kvz_engine *e, const query_args *a, uint64_t *id)
{
    *id = a->config.id;
    if (a->config.id_digits == 16)
        return KVZ_OK;
    char name[40];
    kvz_config_pick_name(&a->config, name);
    int rc = KVZ_OK;
    for (size_t d = 0; d < a->n_docs && rc == KVZ_OK; d++) {
        kvz_config_info *forms;
        size_t n, matches = 0;
        rc = kvz_engine_document_configs(e, a->docs[d].name, &forms, &n);
        for (size_t i = 0; rc == KVZ_OK && i < n; i++)
            if (kvz_config_pick_matches(&a->config, forms[i].id)) {
                if (matches++ == 0 && d == 0)
                    *id = forms[i].id;
                else if (forms[i].id != *id)
                    rc = kvz_errorf(KVZ_ERR_ARG, "two configurations' ids begin %0*llx (of '%s' or of the "
                                    "documents before): give all 16 digits (kvz ls --json lists them)",
                                    (int)a->config.id_digits, (unsigned long long)a->config.id, a->docs[d].name);
            }
        if (rc == KVZ_OK && matches == 0)
            rc = kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has no %s (see kvz ls)", a->docs[d].name, name);
        kvz_free(forms);
    }
    return rc;
}

/* The form each document was loaded in (the session's pick, through the
 * public API as a client would): config N, the id, else the newest of this
 * model (at equal times the larger id, as the store decides). */
static int forms_loaded(kvz_engine *e, const query_args *a, const kvz_session_options *so, loaded_form *out)
{
    for (size_t d = 0; d < a->n_docs; d++) {
        kvz_config_info *forms;
        size_t n, pick = SIZE_MAX;
        KVZ_TRY(kvz_engine_document_configs(e, a->docs[d].name, &forms, &n));
        for (size_t i = 0; i < n; i++) {
            const kvz_config_info *f = &forms[i];
            int newer = pick == SIZE_MAX || f->created > forms[pick].created ||
                        (f->created == forms[pick].created && f->id > forms[pick].id);
            if (so->config_id ? f->id == so->config_id : so->config ? f->number == so->config : f->this_model && newer)
                pick = i;
        }
        out[d] = (loaded_form){0};
        if (pick != SIZE_MAX) {
            out[d] = (loaded_form){forms[pick].number, forms[pick].id, {0}};
            snprintf(out[d].summary, sizeof out[d].summary, "%s", forms[pick].summary);
        }
        kvz_free(forms);
    }
    return KVZ_OK;
}

/* Documents loaded in other configurations (--config N numbers each
 * document's forms in its own order of arrival; the newest of one may be
 * another method's or ratio than another's): said, each. */
static void say_mixed_forms(const query_args *a, const loaded_form *forms)
{
    size_t d = 1;
    while (d < a->n_docs && strcmp(forms[d].summary, forms[0].summary) == 0)
        d++;
    if (d == a->n_docs)
        return;
    fprintf(stderr, "kvz query: the documents were loaded in other configurations:");
    for (d = 0; d < a->n_docs; d++) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, "%s %s as %s (form %d, %016llx)", d ? ";" : "",
                cli_shown(shown, a->docs[d].name, strlen(a->docs[d].name)), forms[d].summary, forms[d].number,
                (unsigned long long)forms[d].id);
    }
    fprintf(stderr, " (--config ID picks one configuration for all)\n");
}

int cmd_query(int argc, char **argv)
{
    query_args a;
    int rc = parse(argc, argv, &a);
    if (rc) {
        free(a.docs);
        return rc < 0 ? KVZ_EXIT_OK : rc;
    }
    cli_warn_threads("query", a.threads);
    kvz_engine *e = NULL;
    kvz_session *s = NULL;
    kvz_load_info li = {0};
    kvz_engine_options eo = {.device = a.device, .threads = (int)a.threads};
    kvz_session_options so = {.reserve = (int32_t)a.reserve, .config = (int32_t)a.config.number};
    /* questions given here are few: the weights' f32 copy would cost more than it saves */
    int weights = a.weights >= 0 ? a.weights : optind < argc ? KVZ_WEIGHTS_NATIVE : KVZ_WEIGHTS_AUTO;
    int st = kvz_engine_open_weights(&e, a.store, cli_model_path(a.model), &eo, weights);
    if (st == KVZ_OK)
        cli_note_device("query", kvz_engine_device_note(e));
    if (st == KVZ_OK && a.config.id_digits)
        st = whole_config_id(e, &a, &so.config_id);
    if (st == KVZ_OK)
        st = kvz_session_open_parts(&s, e, a.docs, a.n_docs, &so);
    if (st == KVZ_OK)
        st = kvz_session_load_info(s, &li);
    loaded_form *forms = st == KVZ_OK ? calloc(a.n_docs, sizeof *forms) : NULL;
    if (st == KVZ_OK && !forms)
        st = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (st == KVZ_OK)
        st = forms_loaded(e, &a, &so, forms);
    if (st == KVZ_OK)
        say_mixed_forms(&a, forms);
    if (st == KVZ_OK && !a.json && isatty(STDERR_FILENO))
        fprintf(stderr, "loaded %d document(s) (%d tokens, %.1f KB) in %.1f ms\n", li.documents,
                li.document_tokens, li.artifact_bytes / 1024.0, li.load_ms);
    int question_status = KVZ_OK; /* the last question that failed on its own */
    if (st == KVZ_OK && optind < argc) {
        for (int i = optind; i < argc && st == KVZ_OK; i++) {
            int label = argc - optind > 1;
            st = question_failed(&a, argv[i], answer(e, s, &a, &li, forms, argv[i], label), label, &question_status);
        }
    } else if (st == KVZ_OK) {
        int tty = isatty(STDIN_FILENO);
        char *line = NULL;
        size_t cap = 0;
        for (int first = 1;; first = 0) {
            if (tty) {
                fprintf(stderr, "> ");
                fflush(stderr);
            }
            errno = 0;
            ssize_t n = getline(&line, &cap, stdin);
            if (n < 0) {
                if (ferror(stdin))
                    st = kvz_errorf(KVZ_ERR_IO, "cannot read questions from stdin: %s", strerror(errno));
                break;
            }
            if ((st = cli_refuse_nul(line, (size_t)n, "a question on stdin", "a question is text")) != KVZ_OK)
                break;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (first && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) /* a file saved with a BOM (Notepad) */
                memmove(line, line + 3, (size_t)(n -= 3) + 1);
            if (kvz_utf8_is_blank(line)) /* a blank line, spaces or not */
                continue;
            int label = !tty; /* piped: which answer is whose; typed: the question is on the screen */
            if (kvz_utf8_require(line, "the question") != KVZ_OK) {
                if (label && !a.json)
                    printf("Q: %s\nA: ", line); /* as answer() labels a question */
                st = report_question(&a, line, KVZ_ERR_ARG, label, &question_status);
            } else {
                st = question_failed(&a, line, answer(e, s, &a, &li, forms, line, label), label, &question_status);
            }
            if (st != KVZ_OK)
                break;
        }
        free(line);
    }
    if (st == KVZ_OK && question_status != KVZ_OK) /* each was reported when it failed */
        rc = cli_exit_code(question_status);
    else
        rc = st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("query", st);
    kvz_session_close(s);
    free(forms);
    kvz_engine_close(e);
    free(a.docs);
    return rc;
}
