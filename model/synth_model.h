/*
 * synth_model.h — deterministic random-weight LLaMA models written as GGUF.
 *
 * Tests and benchmarks need models of many shapes (SmolLM2, Llama-3-8B, Qwen2) that
 * exist anywhere without downloads. The same spec and seed give the same file,
 * byte for byte. Weights are uniform with a chosen spread, written directly in
 * the requested GGUF type; norms are 1. The vocabulary is byte-level (the 256
 * byte tokens, ChatML and Llama-3 control tokens, then unused fillers) with no
 * merges, so text tokenizes to one token per byte.
 */
#ifndef KVZ_MODEL_SYNTH_MODEL_H
#define KVZ_MODEL_SYNTH_MODEL_H

#include <stdint.h>

typedef struct kvz_synth_spec {
    int32_t n_layers, dim, n_heads, n_kv_heads, ff_dim, vocab, ctx;
    float rope_base, rms_eps;
    uint32_t weight_type; /* kvz_ggml_type of the matrices */
    int tied;             /* no output.weight: the embedding is reused */
    uint64_t seed;
    int qwen2;            /* architecture "qwen2": q, k and v biases, RoPE on head halves */
    /* > 0: a rope_freqs.weight tensor, Llama 3.1's frequency factors (its
     * "llama3" RoPE scaling: low 1, high 4) for an original context of this
     * many tokens. llama only. */
    int32_t rope_freqs_ctx;
    float rope_freqs_factor; /* how much the long wavelengths are slowed: 0 is 8 (3.1), 3.2 has 32 */
    int add_bos;             /* tokenizer.ggml.add_bos_token true (a Llama 3 base model's) */
} kvz_synth_spec;

/* Fill `spec` with a named shape: "tiny", "smollm2-135m", "llama3-8b",
 * "llama3.1-8b" (with Llama 3.1's RoPE frequency factors), "llama3.2-1b"
 * (factor 32, tied embeddings), "qwen2-0.5b".
 * KVZ_ERR_NOT_FOUND for other names. Weight type defaults to Q8_0, seed to 1. */
int kvz_synth_preset(const char *name, kvz_synth_spec *spec);

/* Write the model. KVZ_ERR_ARG for an inconsistent shape or a weight type the
 * generator cannot produce; KVZ_ERR_IO when the file cannot be written. */
int kvz_synth_model_write(const char *path, const kvz_synth_spec *spec);

#endif
