/* cmd_synth.c — `kvz synth-model`: write a deterministic random-weight model. */
#include "common/error.h"
#include "kernels/ggml_types.h"
#include "model/synth_model.h"
#include "tools/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char HELP[] =
    "usage: kvz synth-model --shape NAME -o FILE [options]\n"
    "\n"
    "Writes a random-weight LLaMA (or Qwen2) model as GGUF, for tests and\n"
    "benchmarks that must run anywhere without downloads. Same options, same\n"
    "file. Its byte-level vocabulary has no merges (one token per byte); answers\n"
    "are noise.\n"
    "\n"
    "  --shape NAME     tiny, smollm2-135m, llama3-8b, llama3.1-8b (llama3-8b with\n"
    "                   Llama 3.1's RoPE frequency factors, context 131072),\n"
    "                   llama3.2-1b (16 layers of 2048, tied embeddings, the factors\n"
    "                   with 3.2's 32) or qwen2-0.5b (architecture qwen2: q, k and v\n"
    "                   biases, RoPE on the halves of a head)\n"
    "  -o, --output F   the GGUF file to write\n"
    "  --layers N       override the layer count (fewer: a smaller model of the same\n"
    "                   shape; more: a deeper one)\n"
    "  --type T         matrix type: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K\n"
    "                   Q6_K (default Q8_0; Q4_K for llama3-8b and llama3.1-8b; the K\n"
    "                   types need widths that are multiples of 256, as theirs are)\n"
    "  --heads N        override the query heads (the width / N is the head size:\n"
    "                   smollm2-135m with 6 heads has heads of 96 channels); the\n"
    "                   shape's KV heads must divide N\n"
    "  --add-bos        state tokenizer.ggml.add_bos_token (as Llama 3 does)\n"
    "  --ctx N          trained context length to declare\n"
    "  --vocab N        vocabulary size (at least 264: the bytes and control tokens)\n"
    "  --rope-freqs N   write Llama 3.1+'s RoPE frequency factors (rope_freqs.weight)\n"
    "                   for an original context of N tokens (llama shapes only;\n"
    "                   llama3.1-8b and llama3.2-1b have them for 8192)\n"
    "  --rope-factor F  how much those factors slow the long wavelengths, 1 to 1000\n"
    "                   (default: the shape's, 32 for llama3.2-1b; else 8, Llama 3.1)\n"
    "  --seed N         generator seed (default 1)\n";

enum { OPT_SHAPE = 256, OPT_LAYERS, OPT_HEADS, OPT_ADD_BOS, OPT_TYPE, OPT_CTX, OPT_VOCAB, OPT_SEED, OPT_ROPE_FREQS, OPT_ROPE_FACTOR };

int cmd_synth(int argc, char **argv)
{
    static const struct option options[] = {
        {"shape", required_argument, 0, OPT_SHAPE}, {"output", required_argument, 0, 'o'},
        {"layers", required_argument, 0, OPT_LAYERS}, {"type", required_argument, 0, OPT_TYPE},
        {"heads", required_argument, 0, OPT_HEADS}, {"add-bos", no_argument, 0, OPT_ADD_BOS},
        {"ctx", required_argument, 0, OPT_CTX},       {"seed", required_argument, 0, OPT_SEED},
        {"vocab", required_argument, 0, OPT_VOCAB},   {"rope-freqs", required_argument, 0, OPT_ROPE_FREQS},
        {"rope-factor", required_argument, 0, OPT_ROPE_FACTOR}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *shape = NULL, *out = NULL, *type = NULL;
    int add_bos = 0;
    long layers = 0, heads = 0, ctx = 0, vocab = 0, seed = -1, rope_freqs = 0;
    double rope_factor = 0;
    int c, index = -1;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "o:h", options, &index)) != -1) {
        switch (c) {
        case OPT_SHAPE: shape = optarg; break;
        case 'o': out = optarg; break;
        case OPT_TYPE: type = optarg; break;
        case OPT_LAYERS:
            if (cli_parse_int(optarg, 1, 4096, &layers)) goto bad;
            break;
        case OPT_ADD_BOS: add_bos = 1; break;
        case OPT_HEADS:
            if (cli_parse_int(optarg, 1, 4096, &heads)) goto bad;
            break;
        case OPT_CTX:
            if (cli_parse_int(optarg, 1, 1 << 24, &ctx)) goto bad;
            break;
        case OPT_VOCAB:
            if (cli_parse_int(optarg, 1, 1 << 24, &vocab)) goto bad;
            break;
        case OPT_ROPE_FREQS:
            if (cli_parse_int(optarg, 1, 1 << 24, &rope_freqs)) goto bad;
            break;
        case OPT_ROPE_FACTOR:
            if (cli_parse_float(optarg, 1, 1000, &rope_factor)) goto bad;
            break;
        case OPT_SEED:
            if (cli_parse_int(optarg, 0, 1L << 62, &seed)) goto bad;
            break;
        case 'h': fputs(HELP, stdout); return KVZ_EXIT_OK;
        default: return cli_bad_option(HELP, argv[0]);
        }
    }
    if (!shape || !out || optind < argc) {
        fprintf(stderr, "kvz %s: %s\n", argv[0], optind < argc ? "unexpected argument" : "give --shape and -o");
        return cli_bad_option(HELP, argv[0]);
    }
    kvz_synth_spec spec;
    int rc = kvz_synth_preset(shape, &spec);
    if (rc != KVZ_OK)
        return cli_fail("synth-model", rc == KVZ_ERR_NOT_FOUND ? KVZ_ERR_ARG : rc);
    if (layers)
        spec.n_layers = (int32_t)layers;
    if (heads)
        spec.n_heads = (int32_t)heads;
    spec.add_bos = add_bos;
    if (ctx)
        spec.ctx = (int32_t)ctx;
    if (vocab)
        spec.vocab = (int32_t)vocab;
    if (seed >= 0)
        spec.seed = (uint64_t)seed;
    if (rope_freqs)
        spec.rope_freqs_ctx = (int32_t)rope_freqs;
    if (rope_factor) {
        if (!spec.rope_freqs_ctx) {
            fprintf(stderr, "kvz synth-model: --rope-factor needs --rope-freqs (or a shape that has them)\n");
            return KVZ_EXIT_USAGE;
        }
        spec.rope_freqs_factor = (float)rope_factor;
    }
    if (type) {
        int t = kvz_ggml_type_from_name(type);
        if (t < 0) {
            fprintf(stderr, "kvz synth-model: unknown type '%s'\n", type);
            return KVZ_EXIT_USAGE;
        }
        spec.weight_type = (uint32_t)t;
    }
    rc = kvz_synth_model_write(out, &spec);
    if (rc != KVZ_OK)
        return cli_fail("synth-model", rc);
    return KVZ_EXIT_OK;
bad:
    return cli_bad_value("synth-model", options[index].name, optarg);
}
