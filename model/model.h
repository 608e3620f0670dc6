/*
 * model.h — a LLaMA-family model loaded from GGUF onto a backend.
 *
 * Loading reads the hyper-parameters, checks every tensor's presence, type and
 * shape against them (a wrong file is refused with the tensor named, never
 * indexed out of bounds), then hands each weight to the backend. The GGUF file
 * stays mapped for the model's life: backends may keep views into it.
 */
#ifndef KVZ_MODEL_MODEL_H
#define KVZ_MODEL_MODEL_H

#include "kernels/backend.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

#include <stdint.h>

typedef struct kvz_hparams {
    char arch[32];        /* "llama" or "qwen2" */
    int32_t n_layers;
    int32_t dim;          /* embedding width */
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t ff_dim;
    int32_t vocab;
    int32_t ctx_train;    /* context length the model was trained for */
    float rms_eps;
    kvz_rope_params rope; /* qwen2 turns the halves of a head (neox), llama adjacent pairs */
    int qkv_bias;         /* qwen2: q, k and v have biases */
} kvz_hparams;

typedef struct kvz_layer {
    float *attn_norm;     /* backend (dim) */
    kvz_weight wq;        /* (n_heads * head_dim, dim) */
    kvz_weight wk, wv;    /* (n_kv_heads * head_dim, dim) */
    float *bq, *bk, *bv;  /* backend (rows of wq, wk, wv): qwen2's biases, else NULL */
    kvz_weight wo;        /* (dim, n_heads * head_dim) */
    float *ffn_norm;      /* backend (dim) */
    kvz_weight w_gate, w_up; /* (ff_dim, dim) */
    kvz_weight w_down;    /* (dim, ff_dim) */
} kvz_layer;

typedef struct kvz_model {
    kvz_hparams hp;
    kvz_gguf *gguf;
    kvz_tokenizer *tokenizer;
    kvz_chat chat;
    kvz_backend *backend; /* NULL when opened without the weights (kvz_model_open) */
    kvz_weight tok_embd;  /* (vocab, dim) */
    kvz_weight output;    /* (vocab, dim); the embedding itself when tied */
    int output_tied;
    float *output_norm;   /* backend (dim) */
    kvz_layer *layers;    /* n_layers; NULL without the weights */
    char *path;
    char device_note[320]; /* "" or why KVZ_DEVICE_AUTO runs on the CPU though a GPU is present */
} kvz_model;

typedef struct kvz_model_config {
    kvz_backend_config backend;
} kvz_model_config;

/* Load `path`. Errors: those of kvz_gguf_open, KVZ_ERR_UNSUPPORTED for an
 * architecture or tensor type kvz does not run, KVZ_ERR_FORMAT for a missing
 * or misshapen tensor, KVZ_ERR_NOMEM / KVZ_ERR_BACKEND from the device. With
 * KVZ_DEVICE_AUTO, a GPU that fails to start or to hold the weights is left
 * for the CPU, and m->device_note says why (for the caller to show). */
int kvz_model_load(kvz_model **out, const char *path, const kvz_model_config *cfg);
void kvz_model_free(kvz_model *m);

/* `path` read as kvz_model_load reads it but for the weights: hyper-parameters,
 * tokenizer and chat template, and every tensor checked as a load checks it
 * (the same errors for a wrong file), nothing dequantized and no backend made
 * (backend and layers are NULL). For what needs the file's identity, tokenizer
 * or template, not its forward pass. Free it with kvz_model_free. */
int kvz_model_open(kvz_model **out, const char *path);

/* Read and check hyper-parameters only (no weights). */
int kvz_hparams_read(kvz_hparams *hp, const kvz_gguf *g);

#endif
