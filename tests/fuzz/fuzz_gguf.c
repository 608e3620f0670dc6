/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (model/gguf.h) and what
 * reads a model's metadata without its weights: kvz_hparams_read (model.h),
 * kvz_tokenizer_load (tokenizer.h, then a short encode/decode) and
 * kvz_chat_init (chat.h).
 *
 * After kvz_gguf_open_memory succeeds, every key is read with every getter
 * (each must either succeed or refuse with a message), every array's elements
 * and every string's bytes are touched, and every tensor's data range is read
 * end to end, so ASan sees any view that lies outside the input.
 */
#define FUZZ_TARGET "fuzz_gguf"
#include "tests/fuzz/fuzz_util.h"
#include "common/error.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (uint64_t i = 0; i < n; i++)
        x ^= b[i];
    sink = x;
}

static const size_t elem_sizes[KVZ_GGUF_TYPE_COUNT] = {
    [KVZ_GGUF_U8] = 1,  [KVZ_GGUF_I8] = 1,  [KVZ_GGUF_U16] = 2, [KVZ_GGUF_I16] = 2,
    [KVZ_GGUF_U32] = 4, [KVZ_GGUF_I32] = 4, [KVZ_GGUF_F32] = 4, [KVZ_GGUF_BOOL] = 1,
    [KVZ_GGUF_U64] = 8, [KVZ_GGUF_I64] = 8, [KVZ_GGUF_F64] = 8,
};

static void walk_key(const kvz_gguf *g, uint64_t i)
{
    const char *key = kvz_gguf_kv_key(g, i);
    kvz_gguf_type type = kvz_gguf_kv_type(g, i);
    if (!key || !key[0] || (unsigned)type >= KVZ_GGUF_TYPE_COUNT)
        fail("a key without a name or with an invalid type", KVZ_ERR_INTERNAL);
    if (kvz_gguf_find_key(g, key) != (int64_t)i)
        fail("find_key does not find a key at its index", KVZ_ERR_INTERNAL);
    (void)kvz_gguf_type_name(type);

    uint32_t u32;
    int64_t i64;
    float f32;
    int b;
    kvz_gguf_str s;
    int rc;
    if ((rc = kvz_gguf_get_u32(g, key, &u32)) != KVZ_OK)
        check_failure("get_u32", rc);
    if ((rc = kvz_gguf_get_i64(g, key, &i64)) != KVZ_OK)
        check_failure("get_i64", rc);
    if ((rc = kvz_gguf_get_f32(g, key, &f32)) != KVZ_OK)
        check_failure("get_f32", rc);
    if ((rc = kvz_gguf_get_bool(g, key, &b)) != KVZ_OK)
        check_failure("get_bool", rc);
    if ((rc = kvz_gguf_get_str(g, key, &s)) != KVZ_OK)
        check_failure("get_str", rc);
    else if (type != KVZ_GGUF_STRING)
        fail("get_str accepted a non-string", rc);
    else
        touch(s.ptr, s.len);

    kvz_gguf_type et;
    uint64_t count;
    rc = kvz_gguf_get_array_info(g, key, &et, &count);
    if (rc != KVZ_OK) {
        check_failure("get_array_info", rc);
        if (type == KVZ_GGUF_ARRAY)
            fail("get_array_info refused an array", rc);
        kvz_gguf_str *strs = NULL;
        if ((rc = kvz_gguf_get_str_array(g, key, &strs, &count)) == KVZ_OK)
            fail("get_str_array accepted a non-array", rc);
        free(strs);
        return;
    }
    if ((unsigned)et >= KVZ_GGUF_TYPE_COUNT || et == KVZ_GGUF_ARRAY)
        fail("an array of an invalid element type", KVZ_ERR_INTERNAL);
    if (et == KVZ_GGUF_STRING) {
        kvz_gguf_str *strs = NULL;
        uint64_t n = 0;
        if ((rc = kvz_gguf_get_str_array(g, key, &strs, &n)) != KVZ_OK)
            check_failure("get_str_array", rc);
        else if (n != count)
            fail("get_str_array count differs from get_array_info", rc);
        else
            for (uint64_t j = 0; j < n; j++)
                touch(strs[j].ptr, strs[j].len);
        free(strs);
    } else {
        const void *elems = NULL;
        uint64_t n = 0;
        if ((rc = kvz_gguf_get_array_data(g, key, et, &elems, &n)) != KVZ_OK)
            fail("get_array_data refused the array's own element type", rc);
        if (n != count)
            fail("get_array_data count differs from get_array_info", rc);
        touch(elems, n * elem_sizes[et]);
        /* another element type is refused */
        kvz_gguf_type other = et == KVZ_GGUF_U8 ? KVZ_GGUF_I32 : KVZ_GGUF_U8;
        if (kvz_gguf_get_array_data(g, key, other, &elems, &n) == KVZ_OK)
            fail("get_array_data accepted the wrong element type", KVZ_ERR_INTERNAL);
        kvz_gguf_str *strs = NULL;
        if (kvz_gguf_get_str_array(g, key, &strs, &n) == KVZ_OK)
            fail("get_str_array accepted a numeric array", KVZ_ERR_INTERNAL);
        free(strs);
    }
}

static void walk_tensor(const kvz_gguf *g, uint64_t i)
{
    const kvz_gguf_tensor *t = kvz_gguf_tensor_at(g, i);
    if (!t->name || !t->name[0] || t->n_dims < 1 || t->n_dims > KVZ_GGUF_MAX_DIMS)
        fail("a tensor without a name or with a bad rank", KVZ_ERR_INTERNAL);
    if (kvz_gguf_find_tensor(g, t->name) != t)
        fail("find_tensor does not find a tensor by its name", KVZ_ERR_INTERNAL);
    uint64_t n = 1;
    for (int d = 0; d < KVZ_GGUF_MAX_DIMS; d++) {
        if (t->dims[d] == 0 || (d >= (int)t->n_dims && t->dims[d] != 1))
            fail("a tensor with a zero or stray dimension", KVZ_ERR_INTERNAL);
        n *= t->dims[d];
    }
    if (n != t->n_elems)
        fail("a tensor's element count is not the product of its dimensions", KVZ_ERR_INTERNAL);
    if (t->size) {
        if (!t->data)
            fail("a sized tensor without data", KVZ_ERR_INTERNAL);
        touch(t->data, t->size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvz_gguf *g = NULL;
    int rc = kvz_gguf_open_memory(&g, data, size);
    if (rc != KVZ_OK) { /* documented: FORMAT or UNSUPPORTED (NOMEM aside) */
        if (rc == KVZ_ERR_NOT_FOUND)
            fail("kvz_gguf_open_memory failed with an undocumented status", rc);
        check_failure("kvz_gguf_open_memory", rc);
        if (g)
            fail("a failed open returned a handle", rc);
        kvz_error_clear();
        return 0;
    }
    size_t n_bytes = 0;
    if (kvz_gguf_bytes(g, &n_bytes) != data || n_bytes != size)
        fail("kvz_gguf_bytes is not the input", KVZ_ERR_INTERNAL);
    uint32_t version = kvz_gguf_version(g);
    uint64_t align = kvz_gguf_alignment(g);
    if (version < 2 || version > 3 || align == 0 || (align & (align - 1)) != 0)
        fail("open accepted a bad version or alignment", KVZ_ERR_INTERNAL);
    (void)kvz_gguf_path(g);

    for (uint64_t i = 0; i < kvz_gguf_kv_count(g); i++)
        walk_key(g, i);
    for (uint64_t i = 0; i < kvz_gguf_tensor_count(g); i++)
        walk_tensor(g, i);
    uint32_t u32;
    if (kvz_gguf_get_u32(g, "kvz.fuzz.absent", &u32) != KVZ_ERR_NOT_FOUND ||
        kvz_gguf_find_tensor(g, "kvz.fuzz.absent") != NULL)
        fail("an absent key or tensor was found", KVZ_ERR_INTERNAL);

    kvz_hparams hp;
    if ((rc = kvz_hparams_read(&hp, g)) != KVZ_OK)
        check_failure("kvz_hparams_read", rc);
    else if (hp.n_layers <= 0 || hp.dim <= 0 || hp.n_heads <= 0 || hp.n_kv_heads <= 0 ||
             hp.head_dim <= 0 || hp.vocab <= 0)
        fail("kvz_hparams_read accepted a non-positive shape", rc);

    kvz_tokenizer *tok = NULL;
    if ((rc = kvz_tokenizer_load(&tok, g)) != KVZ_OK) {
        check_failure("kvz_tokenizer_load", rc);
    } else {
        static const char text[] = "Hello, world! <|im_start|>user 123 \xc3\xa9\xe2\x82\xac\n\n  x";
        kvz_tokens ids = {0};
        if ((rc = kvz_tokenize(tok, text, sizeof text - 1, 1, &ids)) != KVZ_OK)
            check_failure("kvz_tokenize", rc);
        char *back = NULL;
        size_t len = 0;
        if (rc == KVZ_OK) {
            for (size_t i = 0; i < ids.len; i++)
                if (ids.ids[i] < 0 || ids.ids[i] >= kvz_tokenizer_vocab_size(tok))
                    fail("kvz_tokenize produced an id outside the vocabulary", KVZ_ERR_INTERNAL);
            if ((rc = kvz_detokenize(tok, ids.ids, ids.len, 1, &back, &len)) != KVZ_OK)
                fail("kvz_detokenize refused the tokenizer's own ids", rc);
        }
        free(back);
        kvz_tokens_free(&ids);
        (void)kvz_tokenizer_bos(tok);
        (void)kvz_tokenizer_adds_bos(tok);
        (void)kvz_tokenizer_is_end_of_generation(tok, kvz_tokenizer_eos(tok));
        (void)kvz_tokenizer_token_type(tok, kvz_tokenizer_vocab_size(tok) - 1);
        (void)kvz_tokenizer_hash(tok);
        int has_im_start = kvz_tokenizer_find(tok, "<|im_start|>") >= 0;
        kvz_chat chat;
        memset(&chat, 0, sizeof chat);
        if ((rc = kvz_chat_init(&chat, g, has_im_start)) != KVZ_OK) {
            check_failure("kvz_chat_init", rc);
        } else {
            kvz_chat_message msgs[2] = {{"user", "hi"}, {"assistant", "hello"}};
            char *out = NULL;
            if ((rc = kvz_chat_render(&chat, msgs, 2, 1, &out)) != KVZ_OK)
                check_failure("kvz_chat_render", rc);
            free(out);
            out = NULL;
            if ((rc = kvz_chat_open_user_turn(&chat, NULL, &out)) != KVZ_OK)
                check_failure("kvz_chat_open_user_turn", rc);
            free(out);
            out = NULL;
            if ((rc = kvz_chat_close_user_turn(&chat, &out)) != KVZ_OK)
                check_failure("kvz_chat_close_user_turn", rc);
            free(out);
            kvz_chat_free(&chat);
        }
        kvz_tokenizer_free(tok);
    }
    kvz_gguf_close(g);
    kvz_error_clear();
    return 0;
}
