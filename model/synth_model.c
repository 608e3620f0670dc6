/*
 * synth_model.c — generate random-weight GGUF models.
 *
 * Each tensor's bytes come from a generator seeded by (spec seed, tensor
 * index), filled in pieces by the GGUF writer's callback, so an 8B-shape
 * model streams to disk in bounded memory. Block types are produced directly:
 * quant codes are random, scales are set so every type spans about the same
 * uniform range [-a, a].
 */
#include "model/synth_model.h"
#include "common/splitmix.h"
#include "common/error.h"
#include "common/half.h"
#include "kernels/backend.h"
#include "kernels/ggml_types.h"
#include "model/gguf_write.h"
#include "model/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvz_synth_preset(const char *name, kvz_synth_spec *s)
{
    memset(s, 0, sizeof *s);
    s->weight_type = KVZ_GGML_Q8_0;
    s->seed = 1;
    s->rms_eps = 1e-5f;
    if (strcmp(name, "tiny") == 0) {
        *s = (kvz_synth_spec){2, 64, 4, 2, 128, 512, 512, 10000.0f, 1e-5f, KVZ_GGML_Q8_0, 1, 1, 0, 0, 0, 0};
    } else if (strcmp(name, "smollm2-135m") == 0) {
        *s = (kvz_synth_spec){30, 576, 9, 3, 1536, 49152, 8192, 100000.0f, 1e-5f, KVZ_GGML_Q8_0, 1, 1, 0, 0, 0, 0};
    } else if (strcmp(name, "llama3-8b") == 0) {
        *s = (kvz_synth_spec){32, 4096, 32, 8, 14336, 128256, 8192, 500000.0f, 1e-5f, KVZ_GGML_Q4_K, 0, 1, 0, 0, 0, 0};
    } else if (strcmp(name, "llama3.1-8b") == 0) {
        *s = (kvz_synth_spec){32, 4096, 32, 8, 14336, 128256, 131072, 500000.0f, 1e-5f, KVZ_GGML_Q4_K, 0, 1, 0, 8192, 0, 0};
    } else if (strcmp(name, "llama3.2-1b") == 0) {
        *s = (kvz_synth_spec){16, 2048, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, KVZ_GGML_Q8_0, 1, 1, 0, 8192,
                              32.0f, 0};
    } else if (strcmp(name, "qwen2-0.5b") == 0) {
        *s = (kvz_synth_spec){24, 896, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, KVZ_GGML_Q8_0, 1, 1, 1, 0, 0, 0};
    } else {
        return kvz_errorf(KVZ_ERR_NOT_FOUND,
                          "unknown model shape '%s' (known: tiny, smollm2-135m, llama3-8b, llama3.1-8b, "
                          "llama3.2-1b, qwen2-0.5b)", name);
    }
    return KVZ_OK;
}

/* ---- deterministic bytes ------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) { return kvz_splitmix64(&r->s); }

static void rng_bytes(rng *r, uint8_t *dst, size_t n)
{
    while (n >= 8) {
        uint64_t v = rng_next(r);
        memcpy(dst, &v, 8);
        dst += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = rng_next(r);
        memcpy(dst, &v, n);
    }
}

static float rng_uniform(rng *r, float a) /* in [-a, a) */
{
    return (float)((double)(rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * a;
}

/* ---- tensors ------------------------------------------------------------- */

typedef struct synth_tensor {
    uint32_t type;
    float spread; /* values in [-spread, spread]; 0 with ones = 1: a norm of ones */
    int ones;
    rng r;
} synth_tensor;

typedef struct synth_ctx {
    synth_tensor *t;
    uint64_t n;
} synth_ctx;

/* The 12 scale bytes of a K block with every 6-bit scale and min equal to 32. */
static void k_scales_32(uint8_t *s)
{
    for (int j = 0; j < 8; j++)
        s[j] = 32 | (2 << 6);
    for (int j = 8; j < 12; j++)
        s[j] = 0;
}

static int fill_blocks(synth_tensor *t, uint8_t *dst, uint64_t size)
{
    kvz_ggml_type_info info = kvz_ggml_type_info_of(t->type);
    const float a = t->spread;
    uint64_t nb = size / info.block_bytes;
    rng_bytes(&t->r, dst, (size_t)size); /* codes; scales are overwritten below */
    for (uint64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * info.block_bytes;
        switch (t->type) {
        case KVZ_GGML_Q8_0: ((kvz_block_q8_0 *)b)->d = kvz_f32_to_fp16(a / 127.0f); break;
        case KVZ_GGML_Q4_0: ((kvz_block_q4_0 *)b)->d = kvz_f32_to_fp16(a / 8.0f); break;
        case KVZ_GGML_Q5_0: ((kvz_block_q5_0 *)b)->d = kvz_f32_to_fp16(a / 16.0f); break;
        case KVZ_GGML_Q4_1:
            ((kvz_block_q4_1 *)b)->d = kvz_f32_to_fp16(2 * a / 15.0f);
            ((kvz_block_q4_1 *)b)->m = kvz_f32_to_fp16(-a);
            break;
        case KVZ_GGML_Q5_1:
            ((kvz_block_q5_1 *)b)->d = kvz_f32_to_fp16(2 * a / 31.0f);
            ((kvz_block_q5_1 *)b)->m = kvz_f32_to_fp16(-a);
            break;
        case KVZ_GGML_Q4_K: {
            kvz_block_q4_k *k = (kvz_block_q4_k *)b;
            k->d = kvz_f32_to_fp16(2 * a / (15.0f * 32.0f));
            k->dmin = kvz_f32_to_fp16(a / 32.0f);
            k_scales_32(k->scales);
            break;
        }
        case KVZ_GGML_Q5_K: {
            kvz_block_q5_k *k = (kvz_block_q5_k *)b;
            k->d = kvz_f32_to_fp16(2 * a / (31.0f * 32.0f));
            k->dmin = kvz_f32_to_fp16(a / 32.0f);
            k_scales_32(k->scales);
            break;
        }
        case KVZ_GGML_Q6_K: {
            kvz_block_q6_k *k = (kvz_block_q6_k *)b;
            for (int j = 0; j < KVZ_QK_K / 16; j++)
                k->scales[j] = 1;
            k->d = kvz_f32_to_fp16(a / 32.0f);
            break;
        }
        default: return kvz_errorf(KVZ_ERR_INTERNAL, "synth: no generator for type %u", t->type);
        }
    }
    return KVZ_OK;
}

static int fill_tensor(void *ctx, uint64_t index, void *dst, uint64_t size)
{
    synth_tensor *t = &((synth_ctx *)ctx)->t[index];
    if (t->type == KVZ_GGML_F32 || t->type == KVZ_GGML_F16 || t->type == KVZ_GGML_BF16) {
        size_t esz = t->type == KVZ_GGML_F32 ? 4 : 2;
        for (uint64_t i = 0; i < size / esz; i++) {
            float v = t->ones ? 1.0f : rng_uniform(&t->r, t->spread);
            if (t->type == KVZ_GGML_F32) {
                memcpy((uint8_t *)dst + 4 * i, &v, 4);
            } else {
                uint16_t h = t->type == KVZ_GGML_F16 ? kvz_f32_to_fp16(v) : kvz_f32_to_bf16(v);
                memcpy((uint8_t *)dst + 2 * i, &h, 2);
            }
        }
        return KVZ_OK;
    }
    return fill_blocks(t, dst, size);
}

/* ---- vocabulary ------------------------------------------------------------ */

static const char *const CONTROL_TOKENS[] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
};
#define N_CONTROL (sizeof CONTROL_TOKENS / sizeof CONTROL_TOKENS[0])

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";

static int write_vocab(kvz_gguf_writer *w, int32_t vocab, const char *pre, int add_bos)
{
    char **texts = calloc((size_t)vocab, sizeof *texts);
    int32_t *types = malloc((size_t)vocab * sizeof *types);
    int rc = texts && types ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "synth: out of memory");
    /* control tokens first (ids 0..), then the 256 byte tokens, then fillers */
    for (int32_t i = 0; i < vocab && rc == KVZ_OK; i++) {
        char buf[32];
        if ((size_t)i < N_CONTROL) {
            snprintf(buf, sizeof buf, "%s", CONTROL_TOKENS[i]);
            types[i] = 3;
        } else if (i < (int32_t)N_CONTROL + 256) {
            int b = i - (int)N_CONTROL;
            int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            uint32_t cp = (uint32_t)b;
            if (!printable) {
                cp = 256;
                for (int x = 0; x < b; x++)
                    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174)))
                        cp++;
            }
            size_t len = kvz_utf8_encode(cp, buf);
            buf[len] = '\0';
            types[i] = 1;
        } else {
            snprintf(buf, sizeof buf, "<unused_%d>", i);
            types[i] = 5;
        }
        if (!(texts[i] = strdup(buf)))
            rc = kvz_errorf(KVZ_ERR_NOMEM, "synth: out of memory");
    }
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre); /* names llama.cpp knows too */
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)texts,
                                           NULL, (uint64_t)vocab);
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)vocab);
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_str_array(w, "tokenizer.ggml.merges", NULL, NULL, 0);
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc == KVZ_OK && add_bos) /* else not written: the files made before stay the same bytes */
        rc = kvz_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_set_str(w, "tokenizer.chat_template", CHATML_TEMPLATE);
    if (texts)
        for (int32_t i = 0; i < vocab; i++)
            free(texts[i]);
    free(texts);
    free(types);
    return rc;
}

static int write_hparams(kvz_gguf_writer *w, const kvz_synth_spec *s)
{
    const char *arch = s->qwen2 ? "qwen2" : "llama";
    char key[64];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    KVZ_TRY(kvz_gguf_writer_set_str(w, "general.architecture", arch));
    KVZ_TRY(kvz_gguf_writer_set_str(w, "general.name", "kvz synthetic random-weight model"));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->n_layers));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)s->ctx));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->dim));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->ff_dim));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_heads));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_kv_heads));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)(s->dim / s->n_heads)));
    KVZ_TRY(kvz_gguf_writer_set_f32(w, KEY("rope.freq_base"), s->rope_base));
    KVZ_TRY(kvz_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->rms_eps));
    KVZ_TRY(kvz_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)s->vocab));
#undef KEY
    KVZ_TRY(kvz_gguf_writer_set_u64(w, "kvz.synth.seed", s->seed));
    return KVZ_OK;
}

/* Llama 3.1's RoPE frequency factors (its "llama3" rope scaling: factor 8,
 * or 3.2's 32; low 1, high 4), which its GGUF conversion writes as
 * rope_freqs.weight: pairs of short wavelength keep theirs, long ones are
 * slowed by the factor, and those between are interpolated. */
static void llama31_rope_factors(const kvz_synth_spec *s, float *factors, int32_t pairs)
{
    const double factor = s->rope_freqs_factor > 0 ? s->rope_freqs_factor : 8, low = 1, high = 4,
                 old_ctx = s->rope_freqs_ctx;
    for (int32_t j = 0; j < pairs; j++) {
        const double wavelen = 2 * M_PI * pow(s->rope_base, (double)j / pairs);
        if (wavelen < old_ctx / high) {
            factors[j] = 1.0f;
        } else if (wavelen > old_ctx / low) {
            factors[j] = (float)factor;
        } else {
            const double smooth = (old_ctx / wavelen - low) / (high - low);
            factors[j] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

static int check_spec(const kvz_synth_spec *s)
{
    kvz_ggml_type_info info = kvz_ggml_type_info_of(s->weight_type);
    if (s->n_layers <= 0 || s->dim <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 ||
        s->ff_dim <= 0 || s->ctx <= 0 || s->dim % s->n_heads || s->n_heads % s->n_kv_heads ||
        (s->dim / s->n_heads) % 2 || s->vocab < (int32_t)N_CONTROL + 256)
        return kvz_errorf(KVZ_ERR_ARG, "synth: inconsistent shape (layers %d, width %d, heads %d/%d, "
                          "ffn %d, vocab %d >= %d needed)", s->n_layers, s->dim, s->n_heads,
                          s->n_kv_heads, s->ff_dim, s->vocab, (int)N_CONTROL + 256);
    if (s->rope_freqs_ctx < 0 || (s->rope_freqs_ctx > 0 && s->qwen2))
        return kvz_errorf(KVZ_ERR_ARG, "synth: RoPE frequency factors need a llama model and a positive context");
    if (s->rope_freqs_factor != 0 && !(s->rope_freqs_factor >= 1 && s->rope_freqs_factor <= 1000))
        return kvz_errorf(KVZ_ERR_ARG, "synth: a RoPE scaling factor is from 1 to 1000 (got %g)", s->rope_freqs_factor);
    if (s->rope_freqs_ctx > 0 && s->dim / s->n_heads / 2 > KVZ_ROPE_MAX_FACTORS)
        return kvz_errorf(KVZ_ERR_ARG, "synth: RoPE frequency factors need heads of %d channels at most",
                          2 * KVZ_ROPE_MAX_FACTORS);
    if (info.block_elems == 0 || s->weight_type == KVZ_GGML_Q8_1)
        return kvz_errorf(KVZ_ERR_ARG, "synth: cannot generate weights of type %u", s->weight_type);
    if (s->dim % (int32_t)info.block_elems || s->ff_dim % (int32_t)info.block_elems)
        return kvz_errorf(KVZ_ERR_ARG, "synth: width %d and ffn %d must be multiples of the %s block (%u)",
                          s->dim, s->ff_dim, info.name, info.block_elems);
    return KVZ_OK;
}

int kvz_synth_model_write(const char *path, const kvz_synth_spec *s)
{
    KVZ_TRY(check_spec(s));
    kvz_gguf_writer *w = kvz_gguf_writer_new();
    uint64_t max_tensors = 3 + 12 * (uint64_t)s->n_layers;
    float factors[KVZ_ROPE_MAX_FACTORS];
    const int32_t pairs = (int32_t)(s->dim / s->n_heads / 2);
    if (s->rope_freqs_ctx > 0)
        llama31_rope_factors(s, factors, pairs);
    synth_ctx ctx = {calloc(max_tensors, sizeof(synth_tensor)), 0};
    if (!w || !ctx.t) {
        kvz_gguf_writer_free(w);
        free(ctx.t);
        return kvz_errorf(KVZ_ERR_NOMEM, "synth: out of memory");
    }
    int rc = write_hparams(w, s);
    if (rc == KVZ_OK)
        rc = write_vocab(w, s->vocab, s->qwen2 ? "qwen2" : "gpt-2", s->add_bos);

    const int64_t hd = s->dim / s->n_heads;
    const float in_spread = 1.0f / sqrtf((float)s->dim); /* keeps activations O(1) */
    const float ff_spread = 1.0f / sqrtf((float)s->ff_dim);
#define ADD(name, rows, cols, type, spread, ones)                                               \
    do {                                                                                     \
        if (rc != KVZ_OK)                                                                    \
            break;                                                                           \
        synth_tensor *t_ = &ctx.t[ctx.n];                                                    \
        *t_ = (synth_tensor){(type), (spread), (ones), {s->seed * 0x100000001b3ull + ctx.n}}; \
        uint64_t dims_[2] = {(uint64_t)(cols), (uint64_t)(rows)};                            \
        rc = kvz_gguf_writer_add_tensor(w, (name), (rows) == 1 ? 1 : 2, dims_, (type), NULL, \
                                        fill_tensor, &ctx);                                  \
        ctx.n++;                                                                             \
    } while (0)

    ADD("token_embd.weight", s->vocab, s->dim, s->weight_type, 1.0f, 0);
    ADD("output_norm.weight", 1, s->dim, KVZ_GGML_F32, 0.0f, 1);
    if (!s->tied)
        ADD("output.weight", s->vocab, s->dim, s->weight_type, in_spread, 0);
    for (int32_t l = 0; l < s->n_layers && rc == KVZ_OK; l++) {
        char name[64];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        ADD(BLK("attn_norm.weight"), 1, s->dim, KVZ_GGML_F32, 0.0f, 1);
        ADD(BLK("attn_q.weight"), s->n_heads * hd, s->dim, s->weight_type, in_spread, 0);
        ADD(BLK("attn_k.weight"), s->n_kv_heads * hd, s->dim, s->weight_type, in_spread, 0);
        ADD(BLK("attn_v.weight"), s->n_kv_heads * hd, s->dim, s->weight_type, in_spread, 0);
        if (s->qwen2) { /* biases as large as the products they join, as in Qwen2's keys */
            ADD(BLK("attn_q.bias"), 1, s->n_heads * hd, KVZ_GGML_F32, 0.5f, 0);
            ADD(BLK("attn_k.bias"), 1, s->n_kv_heads * hd, KVZ_GGML_F32, 0.5f, 0);
            ADD(BLK("attn_v.bias"), 1, s->n_kv_heads * hd, KVZ_GGML_F32, 0.5f, 0);
        }
        ADD(BLK("attn_output.weight"), s->dim, s->n_heads * hd, s->weight_type, in_spread, 0);
        ADD(BLK("ffn_norm.weight"), 1, s->dim, KVZ_GGML_F32, 0.0f, 1);
        ADD(BLK("ffn_gate.weight"), s->ff_dim, s->dim, s->weight_type, in_spread, 0);
        ADD(BLK("ffn_up.weight"), s->ff_dim, s->dim, s->weight_type, in_spread, 0);
        ADD(BLK("ffn_down.weight"), s->dim, s->ff_dim, s->weight_type, ff_spread, 0);
#undef BLK
    }
#undef ADD
    if (s->rope_freqs_ctx > 0 && rc == KVZ_OK) { /* last: the random tensors' seeds stay those without it */
        const uint64_t dims[1] = {(uint64_t)pairs};
        rc = kvz_gguf_writer_add_tensor(w, "rope_freqs.weight", 1, dims, KVZ_GGML_F32, factors, NULL, NULL);
    }
    if (rc == KVZ_OK)
        rc = kvz_gguf_writer_write(w, path);
    kvz_gguf_writer_free(w);
    free(ctx.t);
    return rc;
}
