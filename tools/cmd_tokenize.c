/* cmd_tokenize.c — `kvz tokenize` and `kvz detokenize`: the tokenizer alone, no weights. */
#include "common/error.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "tools/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Turn all of stdin into stdout with the tokenizer. */
typedef int (*convert_fn)(const kvz_tokenizer *t, char *input, size_t len, int special);

static int encode(const kvz_tokenizer *t, char *input, size_t len, int special)
{
    kvz_tokens ids = {0};
    char *back = NULL;
    size_t back_len = 0;
    int rc = kvz_tokenize(t, input, len, special, &ids);
    if (rc == KVZ_OK) {
        for (size_t i = 0; i < ids.len; i++)
            printf(i ? " %d" : "%d", ids.ids[i]);
        printf("\n");
        /* bytes the vocabulary has no token for are dropped, as llama.cpp
         * drops them: say so rather than lose them silently */
        rc = kvz_detokenize(t, ids.ids, ids.len, special, &back, &back_len);
    }
    if (rc == KVZ_OK && (back_len != len || memcmp(back, input, len) != 0))
        fprintf(stderr,
                "kvz tokenize: warning: the ids give back %zu of the input's %zu bytes: bytes this model's "
                "vocabulary has no token for are dropped\n",
                back_len, len);
    free(back);
    kvz_tokens_free(&ids);
    return rc;
}

static int decode(const kvz_tokenizer *t, char *input, size_t len, int special)
{
    kvz_tokens ids = {0};
    char *text = NULL;
    int rc = KVZ_OK;
    int32_t last = kvz_tokenizer_vocab_size(t) - 1;
    rc = cli_refuse_nul(input, len, "the input", "give token ids separated by spaces");
    for (char *p = input, *tok; rc == KVZ_OK && (tok = strtok(p, " \t\r\n")); p = NULL) {
        long v;
        if (cli_parse_int(tok, 0, last, &v) != 0)
            rc = kvz_errorf(KVZ_ERR_FORMAT, "'%s' is not a token id of this model (0..%d)", tok, last);
        else
            rc = kvz_tokens_push(&ids, (int32_t)v);
    }
    if (rc == KVZ_OK)
        rc = kvz_detokenize(t, ids.ids, ids.len, special, &text, &len);
    if (rc == KVZ_OK)
        fwrite(text, 1, len, stdout);
    free(text);
    kvz_tokens_free(&ids);
    return rc;
}

static int run(int argc, char **argv, const char *help, convert_fn convert)
{
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},
        {"no-special", no_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *cmd = argv[0], *model = NULL;
    int special = 1, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:h", options, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'n': special = 0; break;
        case 'h': fputs(help, stdout); return KVZ_EXIT_OK;
        default: return cli_bad_option(help, argv[0]);
        }
    }
    if (optind < argc) {
        /* `kvz tokenize notes.md` is the first thing one tries */
        fprintf(stderr, "kvz %s: unexpected argument '%s' (it reads stdin: kvz %s < FILE)\n", cmd, argv[optind],
                cmd);
        return KVZ_EXIT_USAGE;
    }
    kvz_gguf *g = NULL;
    kvz_tokenizer *t = NULL;
    char *input = NULL;
    size_t len = 0;
    int rc = kvz_gguf_open(&g, cli_model_path(model));
    if (rc == KVZ_OK)
        rc = kvz_tokenizer_load(&t, g);
    if (rc == KVZ_OK)
        rc = cli_read_input("-", &input, &len);
    if (rc == KVZ_OK)
        rc = convert(t, input, len, special);
    if (rc == KVZ_OK && fflush(stdout) != 0)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write the output");
    free(input);
    kvz_tokenizer_free(t);
    kvz_gguf_close(g);
    return rc == KVZ_OK ? KVZ_EXIT_OK : cli_fail(cmd, rc);
}

int cmd_tokenize(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz tokenize [-m, --model PATH] [--no-special] < text\n"
        "\n"
        "Reads all of stdin and prints its token ids on one line, space-separated.\n"
        "Control-token texts such as <|im_start|> become their tokens unless\n"
        "--no-special is given. No BOS token is added. Bytes the vocabulary has no\n"
        "token for are dropped, as llama.cpp drops them, with a warning on stderr\n"
        "(SmolLM2 has none for 0x04, 0x06, 0x13, 0x14, 0x16 and 0x1d). Text that is\n"
        "not UTF-8 is taken byte by byte (SmolLM2 has no token for 0xc0, 0xc1, 0xf1,\n"
        "0xf2, 0xf5-0xff either), where llama.cpp reads each bad byte as U+FFFD:\n"
        "compile, query and generate refuse such text.\n";
    return run(argc, argv, help, encode);
}

int cmd_detokenize(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz detokenize [-m, --model PATH] [--no-special] < ids\n"
        "\n"
        "Reads whitespace-separated token ids from stdin and writes their exact\n"
        "text (no newline added). Control tokens are written as their text unless\n"
        "--no-special is given.\n";
    return run(argc, argv, help, decode);
}
