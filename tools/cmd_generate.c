/* cmd_generate.c — `kvz generate`: prompt in, answer out. */
#include "common/error.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/utf8.h"
#include "runtime/runtime.h"
#include "tools/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: kvz generate [options] --prompt TEXT\n"
    "       kvz generate --store DIR --doc NAME [--doc NAME...] [options]\n"
    "                    --prompt TEXT\n"
    "\n"
    "Prefills the prompt, then decodes until an end-of-turn token, --max-tokens,\n"
    "or a full context (--ctx, or --reserve with --doc; said on stderr).\n"
    "The answer streams to stdout; --stats adds timings on stderr. Bytes the\n"
    "model's vocabulary has no token for (see `kvz compile --help`) are left out\n"
    "of the prompt, with a note on stderr.\n"
    "\n"
    "With --doc, the documents' compiled caches are loaded from the store (as by\n"
    "`kvz query`, never prefilled) and the prompt is asked as a question about them\n"
    "in the chat template they were compiled with (--chat is implied; --system,\n"
    "--ctx and --chunk do not apply).\n"
    "\n"
    "  --store DIR, --doc NAME   documents compiled into a store (see kvz compile)\n"
    "  --config N|ID       which compiled form of each document (see kvz query)\n"
    "  --segments A[-B]    of the --doc before it: only those segments (A-: to the\n"
    "                      last; see kvz query)\n"
    "  --reserve N         with --doc: context tokens for prompt and answer\n"
    "                      (default 512)\n"
    "  -m, --model PATH    GGUF model (default: $KVZ_MODEL, else the setup's SmolLM2)\n"
    "  -p, --prompt TEXT   the prompt; --prompt-file FILE reads it ('-' = stdin);\n"
    "                      without --chat, after a BOS where the model asks for one\n"
    "                      (tokenizer.ggml.add_bos_token, as llama.cpp)\n"
    "  --chat              wrap the prompt in the model's chat template (user turn +\n"
    "                      assistant header); --system TEXT sets the system turn,\n"
    "                      else the template's default\n"
    "  --max-tokens N      tokens to generate at most (default 128)\n"
    "  --temperature T     0 = greedy (default); > 0 samples\n"
    "  --top-p P           nucleus mass when sampling (default 0.95)\n"
    "  --seed N            sampling seed (default 1): same seed, same answer\n"
    "  --ctx N             context size (default: prompt + max tokens, at most the\n"
    "                      model's trained context)\n"
    "  --chunk N           prefill chunk in tokens (default 512); peak activation\n"
    "                      memory grows with it, not with the prompt\n"
    "  --threads N         CPU threads, 1 to 1024 (default: $OMP_NUM_THREADS, else\n"
    "                      every CPU this process may use; more than those is warned\n"
    "                      of). Beside other busy work, give it only the idle CPUs,\n"
    "                      or set OMP_WAIT_POLICY=passive (README: threads)\n"
    "  --device D          cpu, cuda or auto (default auto: cuda if built in and a\n"
    "                      GPU of compute capability 8.0+ is present, else cpu;\n"
    "                      a GPU that cannot start or hold the model: cpu, noted)\n"
    "  --weights W         CPU weight storage: f32 (dequantize at load), native\n"
    "                      (keep the file's blocks, decode on the fly; less memory)\n"
    "                      or auto (the default: f32 where it takes at most a third\n"
    "                      of the memory, a container's limit counted, and 16 GiB)\n"
    "  --stats             print token counts and speeds to stderr\n";

typedef struct gen_args {
    const char *model, *prompt, *prompt_file, *system, *store;
    kvz_doc_part *docs; /* names are argv entries */
    size_t n_docs, segments_given; /* segments_given: n_docs when --segments was last given */
    int chunk_given, reserve_given, config_given; /* options of one mode, refused in the other */
    kvz_config_pick config;
    long reserve;
    int chat, stats;
    long max_tokens, ctx, chunk, threads, seed;
    double temperature, top_p;
    int device;  /* kvz_device */
    int weights; /* kvz_weight_policy */
} gen_args;

enum { OPT_PROMPT_FILE = 256, OPT_SYSTEM, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_P, OPT_SEED,
       OPT_CTX, OPT_CHUNK, OPT_THREADS, OPT_DEVICE, OPT_WEIGHTS, OPT_STATS, OPT_CHAT, OPT_STORE, OPT_DOC, OPT_SEGMENTS,
       OPT_CONFIG, OPT_RESERVE };

static const struct option OPTIONS[] = {
    {"model", required_argument, 0, 'm'},
    {"prompt", required_argument, 0, 'p'},
    {"prompt-file", required_argument, 0, OPT_PROMPT_FILE},
    {"system", required_argument, 0, OPT_SYSTEM},
    {"chat", no_argument, 0, OPT_CHAT},
    {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
    {"temperature", required_argument, 0, OPT_TEMPERATURE},
    {"top-p", required_argument, 0, OPT_TOP_P},
    {"seed", required_argument, 0, OPT_SEED},
    {"ctx", required_argument, 0, OPT_CTX},
    {"chunk", required_argument, 0, OPT_CHUNK},
    {"threads", required_argument, 0, OPT_THREADS},
    {"device", required_argument, 0, OPT_DEVICE},
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"stats", no_argument, 0, OPT_STATS},
    {"store", required_argument, 0, OPT_STORE},
    {"doc", required_argument, 0, OPT_DOC},
    {"segments", required_argument, 0, OPT_SEGMENTS},
    {"config", required_argument, 0, OPT_CONFIG},
    {"reserve", required_argument, 0, OPT_RESERVE},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static int bad_value(const char *opt, const char *v)
{
    return cli_bad_value("generate", opt, v);
}

static int parse_args(int argc, char **argv, gen_args *a)
{
    memset(a, 0, sizeof *a);
    a->max_tokens = 128;
    a->chunk = 512;
    a->seed = 1;
    a->top_p = 0.95;
    a->device = KVZ_DEVICE_AUTO;
    a->reserve = 512;
    a->docs = calloc((size_t)argc, sizeof *a->docs);
    if (!a->docs)
        return cli_fail("generate", KVZ_ERR_NOMEM);
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:p:h", OPTIONS, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'p': a->prompt = optarg; break;
        case OPT_PROMPT_FILE: a->prompt_file = optarg; break;
        case OPT_SYSTEM: a->system = optarg; break;
        case OPT_CHAT: a->chat = 1; break;
        case OPT_STATS: a->stats = 1; break;
        case OPT_STORE: a->store = optarg; break;
        case OPT_DOC: a->docs[a->n_docs++].name = optarg; break;
        case OPT_SEGMENTS: {
            int rc = cli_parse_segments("generate", optarg, a->docs, a->n_docs, &a->segments_given);
            if (rc != KVZ_EXIT_OK)
                return rc;
            break;
        }
        case OPT_CONFIG:
            if (cli_parse_config("generate", optarg, 1, &a->config)) return KVZ_EXIT_USAGE;
            a->config_given = 1;
            break;
        case OPT_RESERVE:
            if (cli_parse_int(optarg, 16, 1 << 20, &a->reserve)) return bad_value("reserve", optarg);
            a->reserve_given = 1;
            break;
        case OPT_MAX_TOKENS:
            if (cli_parse_int(optarg, 0, 1 << 20, &a->max_tokens)) return bad_value("max-tokens", optarg);
            break;
        case OPT_CTX:
            if (cli_parse_int(optarg, 1, 1 << 24, &a->ctx)) return bad_value("ctx", optarg);
            break;
        case OPT_CHUNK:
            if (cli_parse_int(optarg, 1, 1 << 16, &a->chunk)) return bad_value("chunk", optarg);
            a->chunk_given = 1;
            break;
        case OPT_THREADS:
            if (cli_parse_threads(optarg, &a->threads)) return bad_value("threads", optarg);
            break;
        case OPT_SEED:
            if (cli_parse_int(optarg, 0, (1L << 62), &a->seed)) return bad_value("seed", optarg);
            break;
        case OPT_TEMPERATURE:
            if (cli_parse_float(optarg, 0, 100, &a->temperature)) return bad_value("temperature", optarg);
            break;
        case OPT_TOP_P:
            if (cli_parse_float(optarg, 1e-6, 1, &a->top_p)) return bad_value("top-p", optarg);
            break;
        case OPT_DEVICE:
            if (cli_parse_device(optarg, &a->device)) return bad_value("device", optarg);
            break;
        case OPT_WEIGHTS:
            if (cli_parse_weights(optarg, &a->weights)) return bad_value("weights", optarg);
            break;
        case 'h': fputs(HELP, stdout); return -1;
        default: return cli_bad_option(HELP, argv[0]);
        }
    }
    if (optind < argc) {
        /* `kvz generate "What is...?"`, as query takes its questions */
        fprintf(stderr, "kvz generate: unexpected argument '%s' (give the prompt with --prompt TEXT)\n",
                argv[optind]);
        return KVZ_EXIT_USAGE;
    }
    if (!a->prompt == !a->prompt_file) {
        fprintf(stderr, "kvz generate: give exactly one of --prompt or --prompt-file\n");
        return KVZ_EXIT_USAGE;
    }
    if (!a->store != !a->n_docs) {
        fprintf(stderr, "kvz generate: --store and --doc go together\n");
        return KVZ_EXIT_USAGE;
    }
    if (a->n_docs && (a->system || a->ctx || a->chunk_given)) {
        fprintf(stderr, "kvz generate: --system, --ctx and --chunk do not apply with --doc (the documents "
                        "were compiled after the store's prompt)\n");
        return KVZ_EXIT_USAGE;
    }
    if (!a->n_docs && (a->reserve_given || a->config_given)) {
        fprintf(stderr, "kvz generate: --reserve and --config apply with --doc (the documents' room and "
                        "compiled form)\n");
        return KVZ_EXIT_USAGE;
    }
    if (a->system && !a->chat) {
        fprintf(stderr, "kvz generate: --system needs --chat\n");
        return KVZ_EXIT_USAGE;
    }
    return KVZ_EXIT_OK;
}

static int print_token(void *ctx, int32_t token, const char *bytes, size_t len)
{
    cli_answer_write(ctx, bytes, len);
    return 0;
}

/* The prompt's token ids: raw text, or the chat template around it. */
static int prompt_tokens(const kvz_model *m, const gen_args *a, const char *text, kvz_tokens *ids)
{
    KVZ_TRY(kvz_utf8_require(text, "the prompt"));
    if (!a->chat) { /* the BOS the model asks for (a Llama 3 base model does), as llama.cpp adds it;
                     * a chat template writes its own */
        if (kvz_tokenizer_adds_bos(m->tokenizer))
            KVZ_TRY(kvz_tokens_push(ids, kvz_tokenizer_bos(m->tokenizer)));
        return kvz_tokenize(m->tokenizer, text, strlen(text), 0, ids);
    }
    kvz_chat_message msgs[2];
    size_t n = 0;
    if (a->system)
        msgs[n++] = (kvz_chat_message){"system", a->system};
    msgs[n++] = (kvz_chat_message){"user", text};
    char *rendered;
    KVZ_TRY(kvz_chat_render(&m->chat, msgs, n, 1, &rendered));
    int rc = kvz_tokenize(m->tokenizer, rendered, strlen(rendered), 1, ids);
    free(rendered);
    return rc;
}

static int run(const gen_args *a, const char *text)
{
    kvz_model_config mc = {.backend = {.device = (kvz_device)a->device, .n_threads = (int)a->threads,
                                       .weights = (kvz_weight_policy)a->weights}};
    kvz_model *m = NULL;
    kvz_context *c = NULL;
    kvz_tokens ids = {0}, out = {0};
    kvz_sampler sampler;
    kvz_sampler_init(&sampler, (float)a->temperature, (float)a->top_p, (uint64_t)a->seed);
    kvz_store *store = NULL;
    kvz_loaded *loaded = NULL;
    int rc = a->n_docs ? kvz_store_open(&store, a->store, KVZ_STORE_READONLY) : KVZ_OK;
    if (rc == KVZ_OK)
        rc = kvz_model_load(&m, cli_model_path(a->model), &mc);
    if (rc == KVZ_OK)
        cli_note_device("generate", m->device_note);
    if (rc == KVZ_OK && a->n_docs) {
        kvz_load_opts lo = {.reserve = (int32_t)a->reserve, .config = a->config};
        kvz_load_stats ls;
        rc = kvz_load_parts(m, store, a->docs, a->n_docs, &lo, &loaded, &ls);
        if (rc == KVZ_OK && a->stats)
            fprintf(stderr, "[%s] loaded %d document(s), %d tokens, from the store in %.1f ms\n",
                    m->backend->ops->name, ls.documents, ls.original_tokens, ls.seconds * 1e3);
    } else if (rc == KVZ_OK) {
        rc = prompt_tokens(m, a, text, &ids);
    }
    if (rc == KVZ_OK) { /* with --doc the text is a question, tokenized by the ask */
        size_t untokenized = ids.dropped;
        uint8_t first = ids.first_dropped;
        if (loaded) /* not UTF-8: refused by the ask, nothing to note */
            rc = kvz_utf8_require(text, "the question") == KVZ_OK
                     ? kvz_tokenizer_untokenized(m->tokenizer, text, strlen(text), &untokenized, &first)
                     : KVZ_OK;
        cli_note_untokenized("generate", loaded ? "the question" : "the prompt", untokenized, first);
    }
    if (rc == KVZ_OK && !loaded && ids.len == 0)
        rc = kvz_errorf(KVZ_ERR_ARG, "the prompt is empty");
    if (rc == KVZ_OK && !loaded) {
        long ctx = a->ctx ? a->ctx : (long)ids.len + a->max_tokens;
        if (!a->ctx && ctx > m->hp.ctx_train)
            ctx = m->hp.ctx_train;
        if ((long)ids.len > ctx || (long)ids.len > m->hp.ctx_train)
            rc = kvz_errorf(KVZ_ERR_RANGE, "the prompt has %zu tokens; the context holds %ld",
                            ids.len, ctx < m->hp.ctx_train ? ctx : (long)m->hp.ctx_train);
        else
            rc = kvz_context_new(&c, m, (int32_t)ctx, (int32_t)a->chunk);
    }
    kvz_generate_stats st;
    if (rc == KVZ_OK) {
        cli_answer_out shown = {0};
        kvz_generate_opts go = {.max_tokens = (int32_t)a->max_tokens,
                                .sampler = a->temperature > 0 ? &sampler : NULL,
                                .on_token = print_token, .on_token_ctx = &shown};
        rc = loaded ? kvz_loaded_ask(loaded, text, &go, &out, &st)
                    : kvz_generate(c, ids.ids, (int32_t)ids.len, &go, &out, &st);
        if (rc == KVZ_OK)
            printf("\n");
    }
    if (rc == KVZ_OK && a->stats)
        fprintf(stderr,
                "[%s] prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s "
                "(%.1f tok/s)%s\n",
                m->backend->ops->name, st.prompt_tokens, st.prefill_seconds,
                st.prompt_tokens / (st.prefill_seconds > 0 ? st.prefill_seconds : 1e-9),
                st.generated_tokens, st.decode_seconds,
                kvz_generate_decode_rate(&st),
                st.stopped_by == KVZ_GENERATE_END_OF_TURN ? "; stopped at end of turn" : "");
    if (rc == KVZ_OK && st.stopped_by == KVZ_GENERATE_CONTEXT_FULL)
        fprintf(stderr, "kvz generate: stopped after %d tokens: the context is full (%s)\n", st.generated_tokens,
                loaded ? "--reserve" : "--ctx");
    int code = rc == KVZ_OK ? KVZ_EXIT_OK : cli_fail("generate", rc);
    kvz_tokens_free(&ids);
    kvz_tokens_free(&out);
    kvz_context_free(c);
    kvz_loaded_free(loaded);
    kvz_model_free(m);
    kvz_store_close(store);
    return code;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.docs);
        return rc < 0 ? KVZ_EXIT_OK : rc;
    }
    cli_warn_threads("generate", a.threads);
    char *file_text = NULL;
    size_t len;
    if (a.prompt_file) {
        int st = cli_read_input(a.prompt_file, &file_text, &len);
        if (st == KVZ_OK)
            st = cli_refuse_nul(file_text, len, a.prompt_file, "a prompt is text");
        if (st != KVZ_OK) {
            free(file_text);
            free(a.docs);
            return cli_fail("generate", st);
        }
    }
    rc = run(&a, file_text ? file_text : a.prompt);
    free(file_text);
    free(a.docs);
    return rc;
}
