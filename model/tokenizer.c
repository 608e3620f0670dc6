/*
 * tokenizer.c — vocabulary, merges, special-token partition and BPE.
 *
 * BPE runs on token ids: the initial symbols of a piece are the single-byte
 * tokens, and a merge table maps a pair of adjacent ids to (rank, merged id).
 * A heap pops the lowest rank, leftmost first, which equals merging the
 * best-ranked pair everywhere in turn.
 */
#include "model/tokenizer.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/hash_map.h"
#include "model/pretokenize.h"
#include "model/utf8.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct kvz_tokenizer {
    int32_t n_vocab;
    char *text_arena;      /* all token texts, as stored in the GGUF */
    uint32_t *text_off, *text_len;
    char *bytes_arena;     /* all decoded token bytes */
    uint32_t *bytes_off, *bytes_len;
    uint8_t *types;
    kvz_str_map vocab;     /* token text -> id */
    kvz_u64_map merges;    /* (left << 32 | right) -> (rank << 32 | merged) */
    int32_t byte_token[256];
    char byte_char[256][2]; /* UTF-8 of the printable stand-in of each byte */
    uint8_t byte_char_len[256];
    int32_t *specials;     /* control + user-defined ids, longest text first */
    int32_t n_specials;
    int32_t *eog;          /* end-of-generation ids */
    int32_t n_eog;
    int32_t bos, eos;
    int add_bos;
    uint64_t hash;
    kvz_pretokenizer *pre;
};

int kvz_tokens_push(kvz_tokens *t, int32_t id)
{
    int32_t *grown = kvz_grow(t->ids, &t->cap, t->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    t->ids = grown;
    t->ids[t->len++] = id;
    return KVZ_OK;
}

void kvz_tokens_free(kvz_tokens *t)
{
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* GPT-2's byte -> code point map: printable bytes stand for themselves, the
 * others take code points from 256 upward in byte order. */
static uint32_t byte_to_codepoint(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return (uint32_t)b;
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
            n++;
    return 256 + n;
}

/* The inverse, -1 for code points outside the map. */
static int codepoint_to_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    uint32_t n = 0;
    for (int x = 0; x < 256; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) {
            if (n == cp - 256)
                return x;
            n++;
        }
    return -1;
}

/* Decode a normal token's text into raw bytes (writes at most len bytes). */
static size_t decode_token_text(const char *text, size_t len, char *out)
{
    size_t o = 0;
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t k;
        uint32_t cp = kvz_utf8_decode(s + i, len - i, &k);
        if (k == 0) { /* not UTF-8: keep the byte */
            out[o++] = (char)s[i++];
            continue;
        }
        int b = codepoint_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else { /* outside the byte map: keep the character */
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

static int by_text_length_desc(const void *a, const void *b, void *ctx)
{
    const kvz_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->text_len[x], ly = t->text_len[y];
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int load_vocab(kvz_tokenizer *t, const kvz_gguf *g)
{
    kvz_gguf_str *tokens = NULL;
    uint64_t n;
    KVZ_TRY(kvz_gguf_get_str_array(g, "tokenizer.ggml.tokens", &tokens, &n));
    if (n == 0 || n > INT32_MAX / 2) {
        free(tokens);
        return kvz_errorf(KVZ_ERR_FORMAT, "tokenizer: vocabulary size %llu is invalid",
                          (unsigned long long)n);
    }
    t->n_vocab = (int32_t)n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++)
        total += tokens[i].len;
    int rc = KVZ_OK;
    t->text_arena = malloc(total + 1);
    t->bytes_arena = malloc(total + 1);
    t->text_off = malloc(n * sizeof(uint32_t));
    t->text_len = malloc(n * sizeof(uint32_t));
    t->bytes_off = malloc(n * sizeof(uint32_t));
    t->bytes_len = malloc(n * sizeof(uint32_t));
    t->types = malloc(n);
    if (!t->text_arena || !t->bytes_arena || !t->text_off || !t->text_len || !t->bytes_off ||
        !t->bytes_len || !t->types || total > UINT32_MAX) {
        free(tokens);
        return kvz_errorf(KVZ_ERR_NOMEM, "tokenizer: out of memory for %llu tokens",
                          (unsigned long long)n);
    }
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(t->text_arena + off, tokens[i].ptr, (size_t)tokens[i].len);
        t->text_off[i] = (uint32_t)off;
        t->text_len[i] = (uint32_t)tokens[i].len;
        off += (size_t)tokens[i].len;
    }
    free(tokens);

    memset(t->types, KVZ_TOKEN_NORMAL, n);
    const void *types = NULL;
    uint64_t n_types = 0;
    if (kvz_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        KVZ_TRY(kvz_gguf_get_array_data(g, "tokenizer.ggml.token_type", KVZ_GGUF_I32, &types,
                                        &n_types));
        if (n_types != n)
            return kvz_errorf(KVZ_ERR_FORMAT, "tokenizer: %llu token types for %llu tokens",
                              (unsigned long long)n_types, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            int32_t ty;
            memcpy(&ty, (const uint8_t *)types + 4 * i, 4);
            t->types[i] = (ty >= KVZ_TOKEN_NORMAL && ty <= KVZ_TOKEN_BYTE) ? (uint8_t)ty
                                                                          : KVZ_TOKEN_NORMAL;
        }
    }

    KVZ_TRY(kvz_str_map_init(&t->vocab, n));
    off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *text = t->text_arena + t->text_off[i];
        kvz_str_map_put(&t->vocab, text, t->text_len[i], (int32_t)i);
        uint8_t ty = t->types[i];
        size_t blen;
        if (ty == KVZ_TOKEN_CONTROL || ty == KVZ_TOKEN_USER_DEFINED) {
            memcpy(t->bytes_arena + off, text, t->text_len[i]);
            blen = t->text_len[i];
        } else {
            blen = decode_token_text(text, t->text_len[i], t->bytes_arena + off);
        }
        t->bytes_off[i] = (uint32_t)off;
        t->bytes_len[i] = (uint32_t)blen;
        off += blen;
    }
    return rc;
}

static int load_byte_tokens(kvz_tokenizer *t)
{
    int present = 0;
    for (int b = 0; b < 256; b++) {
        char utf8[4];
        size_t len = kvz_utf8_encode(byte_to_codepoint(b), utf8);
        memcpy(t->byte_char[b], utf8, len);
        t->byte_char_len[b] = (uint8_t)len;
        /* -1 when absent: vocabularies omit bytes never seen in training
         * (SmolLM2 has no token for 0x04 or 0xff); such bytes are dropped, as
         * the reference implementation drops them */
        t->byte_token[b] = kvz_str_map_get(&t->vocab, utf8, len);
        if (t->byte_token[b] >= 0)
            present++;
    }
    if (present < 128)
        return kvz_errorf(KVZ_ERR_FORMAT,
                          "tokenizer: only %d of 256 byte-level tokens exist: not a byte-level BPE "
                          "vocabulary", present);
    return KVZ_OK;
}

static int load_merges(kvz_tokenizer *t, const kvz_gguf *g)
{
    if (kvz_gguf_find_key(g, "tokenizer.ggml.merges") < 0) {
        return kvz_u64_map_init(&t->merges, 1);
    }
    kvz_gguf_str *merges;
    uint64_t n;
    KVZ_TRY(kvz_gguf_get_str_array(g, "tokenizer.ggml.merges", &merges, &n));
    int rc = kvz_u64_map_init(&t->merges, n);
    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint64_t r = 0; r < n && rc == KVZ_OK; r++) {
        const char *s = merges[r].ptr;
        size_t len = (size_t)merges[r].len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            rc = kvz_errorf(KVZ_ERR_FORMAT, "tokenizer: merge %llu has no separating space",
                            (unsigned long long)r);
            break;
        }
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        if (len > joined_cap) {
            char *p = realloc(joined, len);
            if (!p) {
                rc = kvz_errorf(KVZ_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
            joined = p;
            joined_cap = len;
        }
        memcpy(joined, s, ll);
        memcpy(joined + ll, sp + 1, rl);
        int32_t left = kvz_str_map_get(&t->vocab, s, ll);
        int32_t right = kvz_str_map_get(&t->vocab, sp + 1, rl);
        int32_t merged = kvz_str_map_get(&t->vocab, joined, ll + rl);
        if (left < 0 || right < 0 || merged < 0)
            continue; /* a merge whose parts are not tokens can never apply */
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        kvz_u64_map_put(&t->merges, key, (int64_t)(r << 32 | (uint32_t)merged));
    }
    free(joined);
    free(merges);
    return rc;
}

static int load_specials(kvz_tokenizer *t)
{
    static const char *const end_of_turn[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                                              "<|endoftext|>", "<|eom_id|>", "<end_of_turn>"};
    t->specials = malloc((size_t)t->n_vocab * sizeof *t->specials);
    t->eog = malloc((sizeof end_of_turn / sizeof end_of_turn[0] + 1) * sizeof *t->eog);
    if (!t->specials || !t->eog)
        return kvz_errorf(KVZ_ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->types[i] == KVZ_TOKEN_CONTROL || t->types[i] == KVZ_TOKEN_USER_DEFINED) &&
            t->text_len[i] > 0)
            t->specials[t->n_specials++] = i;
    qsort_r(t->specials, (size_t)t->n_specials, sizeof *t->specials, by_text_length_desc, t);
    if (t->eos >= 0)
        t->eog[t->n_eog++] = t->eos;
    for (size_t k = 0; k < sizeof end_of_turn / sizeof end_of_turn[0]; k++) {
        int32_t id = kvz_tokenizer_find(t, end_of_turn[k]);
        if (id >= 0 && id != t->eos && t->types[id] == KVZ_TOKEN_CONTROL)
            t->eog[t->n_eog++] = id;
    }
    return KVZ_OK;
}

static int optional_token_id(const kvz_gguf *g, const char *key, int32_t n_vocab, int32_t *out)
{
    *out = -1;
    if (kvz_gguf_find_key(g, key) < 0)
        return KVZ_OK;
    uint32_t id;
    KVZ_TRY(kvz_gguf_get_u32(g, key, &id));
    if (id >= (uint32_t)n_vocab)
        return kvz_errorf(KVZ_ERR_FORMAT, "tokenizer: %s = %u is outside the vocabulary (%d)", key,
                          id, n_vocab);
    *out = (int32_t)id;
    return KVZ_OK;
}

static uint64_t vocabulary_hash(const kvz_tokenizer *t, const kvz_gguf *g)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, t->text_len, (size_t)t->n_vocab * sizeof *t->text_len);
    size_t total = t->text_off[t->n_vocab - 1] + t->text_len[t->n_vocab - 1];
    XXH3_64bits_update(st, t->text_arena, total);
    XXH3_64bits_update(st, t->types, (size_t)t->n_vocab);
    kvz_gguf_str *merges;
    uint64_t n;
    if (kvz_gguf_find_key(g, "tokenizer.ggml.merges") >= 0 &&
        kvz_gguf_get_str_array(g, "tokenizer.ggml.merges", &merges, &n) == KVZ_OK) {
        for (uint64_t i = 0; i < n; i++) {
            XXH3_64bits_update(st, &merges[i].len, sizeof merges[i].len);
            XXH3_64bits_update(st, merges[i].ptr, (size_t)merges[i].len);
        }
        free(merges);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static int load(kvz_tokenizer *t, const kvz_gguf *g)
{
    kvz_gguf_str model;
    KVZ_TRY(kvz_gguf_get_str(g, "tokenizer.ggml.model", &model));
    if (!(model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0))
        return kvz_errorf(KVZ_ERR_UNSUPPORTED,
                          "tokenizer model '%.*s' is not supported (kvz reads byte-level BPE, 'gpt2')",
                          (int)(model.len > 64 ? 64 : model.len), model.ptr);
    char pre[65] = "default";
    kvz_gguf_str pre_str;
    if (kvz_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        KVZ_TRY(kvz_gguf_get_str(g, "tokenizer.ggml.pre", &pre_str));
        size_t l = pre_str.len < 64 ? (size_t)pre_str.len : 64;
        memcpy(pre, pre_str.ptr, l);
        pre[l] = '\0';
    }
    KVZ_TRY(kvz_pretokenizer_new(&t->pre, pre));
    KVZ_TRY(load_vocab(t, g));
    KVZ_TRY(load_byte_tokens(t));
    KVZ_TRY(load_merges(t, g));
    KVZ_TRY(optional_token_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos));
    KVZ_TRY(optional_token_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos));
    t->add_bos = 0;
    if (kvz_gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0)
        KVZ_TRY(kvz_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos));
    KVZ_TRY(load_specials(t));
    t->hash = vocabulary_hash(t, g);
    return KVZ_OK;
}

int kvz_tokenizer_load(kvz_tokenizer **out, const kvz_gguf *g)
{
    *out = NULL;
    kvz_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return kvz_errorf(KVZ_ERR_NOMEM, "tokenizer: out of memory");
    int rc = load(t, g);
    const char *path = kvz_gguf_path(g);
    if (rc != KVZ_OK && strncmp(kvz_last_error(), path, strlen(path)) != 0) /* said once */
        kvz_error_context(rc, "%s", path);
    if (rc != KVZ_OK) {
        kvz_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return KVZ_OK;
}

void kvz_tokenizer_free(kvz_tokenizer *t)
{
    if (!t)
        return;
    free(t->text_arena);
    free(t->text_off);
    free(t->text_len);
    free(t->bytes_arena);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->types);
    kvz_str_map_free(&t->vocab);
    kvz_u64_map_free(&t->merges);
    free(t->specials);
    free(t->eog);
    kvz_pretokenizer_free(t->pre);
    free(t);
}

int32_t kvz_tokenizer_vocab_size(const kvz_tokenizer *t) { return t->n_vocab; }
int32_t kvz_tokenizer_bos(const kvz_tokenizer *t) { return t->bos; }
int32_t kvz_tokenizer_eos(const kvz_tokenizer *t) { return t->eos; }
int kvz_tokenizer_adds_bos(const kvz_tokenizer *t) { return t->add_bos && t->bos >= 0; }
uint64_t kvz_tokenizer_hash(const kvz_tokenizer *t) { return t->hash; }

int kvz_tokenizer_untokenized(const kvz_tokenizer *t, const char *text, size_t n, size_t *count, uint8_t *first)
{
    kvz_tokens ids = {0};
    int rc = kvz_tokenize(t, text, n, 0, &ids);
    *count = rc == KVZ_OK ? ids.dropped : 0;
    *first = ids.first_dropped;
    kvz_tokens_free(&ids);
    return rc;
}

int kvz_tokenizer_is_end_of_generation(const kvz_tokenizer *t, int32_t id)
{
    for (int32_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return 1;
    return 0;
}

kvz_token_type kvz_tokenizer_token_type(const kvz_tokenizer *t, int32_t id)
{
    return (id >= 0 && id < t->n_vocab) ? (kvz_token_type)t->types[id] : KVZ_TOKEN_UNKNOWN;
}

int32_t kvz_tokenizer_find(const kvz_tokenizer *t, const char *text)
{
    return kvz_str_map_get(&t->vocab, text, strlen(text));
}

/* ---- BPE ---------------------------------------------------------------- */

typedef struct bpe_symbol {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
} bpe_symbol;

typedef struct bpe_candidate {
    int32_t rank;
    int32_t left;     /* symbol index */
    int32_t left_id;  /* ids when queued: a changed symbol makes the entry stale */
    int32_t right_id;
    int32_t merged_id;
} bpe_candidate;

typedef struct bpe_scratch {
    bpe_symbol *sym;
    bpe_candidate *heap;
    size_t heap_len, cap;
    char *mapped;
    size_t mapped_cap;
} bpe_scratch;

static int scratch_reserve(bpe_scratch *s, size_t n)
{
    if (n <= s->cap)
        return KVZ_OK;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n)
        cap *= 2;
    bpe_symbol *sym = realloc(s->sym, cap * sizeof *sym);
    if (sym)
        s->sym = sym;
    bpe_candidate *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap)
        s->heap = heap;
    char *mapped = realloc(s->mapped, 2 * cap);
    if (mapped)
        s->mapped = mapped;
    if (!sym || !heap || !mapped)
        return kvz_errorf(KVZ_ERR_NOMEM, "tokenizer: out of memory");
    s->cap = cap;
    return KVZ_OK;
}

static int candidate_before(const bpe_candidate *a, const bpe_candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_scratch *s, bpe_candidate c)
{
    size_t i = s->heap_len++;
    s->heap[i] = c;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!candidate_before(&s->heap[i], &s->heap[p]))
            break;
        bpe_candidate tmp = s->heap[i];
        s->heap[i] = s->heap[p];
        s->heap[p] = tmp;
        i = p;
    }
}

static bpe_candidate heap_pop(bpe_scratch *s)
{
    bpe_candidate top = s->heap[0];
    s->heap[0] = s->heap[--s->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->heap_len && candidate_before(&s->heap[l], &s->heap[m]))
            m = l;
        if (r < s->heap_len && candidate_before(&s->heap[r], &s->heap[m]))
            m = r;
        if (m == i)
            break;
        bpe_candidate tmp = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = tmp;
        i = m;
    }
    return top;
}

static void queue_pair(const kvz_tokenizer *t, bpe_scratch *s, int32_t left)
{
    if (left < 0 || s->sym[left].next < 0)
        return;
    int32_t l = s->sym[left].id, r = s->sym[s->sym[left].next].id;
    if (l < 0 || r < 0)
        return;
    int64_t v;
    if (!kvz_u64_map_get(&t->merges, (uint64_t)(uint32_t)l << 32 | (uint32_t)r, &v))
        return;
    heap_push(s, (bpe_candidate){(int32_t)(v >> 32), left, l, r, (int32_t)(v & 0xffffffff)});
}

static int bpe_piece(const kvz_tokenizer *t, bpe_scratch *s, const uint8_t *p, size_t n,
                     kvz_tokens *out)
{
    if (n == 1 && t->byte_token[p[0]] >= 0)
        return kvz_tokens_push(out, t->byte_token[p[0]]);
    if (n > INT32_MAX / 3)
        return kvz_errorf(KVZ_ERR_RANGE, "tokenizer: a piece of %zu bytes is too long", n);
    KVZ_TRY(scratch_reserve(s, n));
    if (kvz_pretokenizer_ignores_merges(t->pre)) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(s->mapped + m, t->byte_char[p[i]], t->byte_char_len[p[i]]);
            m += t->byte_char_len[p[i]];
        }
        int32_t whole = kvz_str_map_get(&t->vocab, s->mapped, m);
        if (whole >= 0)
            return kvz_tokens_push(out, whole);
    }
    for (size_t i = 0; i < n; i++)
        s->sym[i] = (bpe_symbol){t->byte_token[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    s->heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++)
        queue_pair(t, s, (int32_t)i);
    while (s->heap_len > 0) {
        bpe_candidate c = heap_pop(s);
        bpe_symbol *left = &s->sym[c.left];
        if (left->id != c.left_id || left->next < 0 || s->sym[left->next].id != c.right_id)
            continue; /* stale */
        int32_t right = left->next;
        left->id = c.merged_id;
        left->next = s->sym[right].next;
        if (left->next >= 0)
            s->sym[left->next].prev = c.left;
        s->sym[right].id = -1;
        queue_pair(t, s, left->prev);
        queue_pair(t, s, c.left);
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        if (s->sym[i].id >= 0) {
            KVZ_TRY(kvz_tokens_push(out, s->sym[i].id));
        } else { /* a byte without a token (merged symbols always have one) is dropped */
            if (!out->dropped)
                out->first_dropped = p[i];
            out->dropped++;
        }
    }
    return KVZ_OK;
}

/* Text without special tokens: valid UTF-8 runs are pre-split, any invalid
 * byte is its own piece. */
static int encode_raw(const kvz_tokenizer *t, bpe_scratch *s, const char *text, size_t n,
                      kvz_tokens *out)
{
    kvz_span_list pieces = {0};
    int rc = KVZ_OK;
    size_t i = 0;
    while (i < n && rc == KVZ_OK) {
        size_t valid = kvz_utf8_valid_length((const uint8_t *)text + i, n - i);
        if (valid == 0) {
            rc = bpe_piece(t, s, (const uint8_t *)text + i, 1, out);
            i++;
            continue;
        }
        pieces.len = 0;
        rc = kvz_pretokenize(t->pre, text + i, valid, &pieces);
        for (size_t k = 0; k < pieces.len && rc == KVZ_OK; k++)
            rc = bpe_piece(t, s, (const uint8_t *)text + i + pieces.items[k].start,
                           pieces.items[k].len, out);
        i += valid;
    }
    kvz_span_list_free(&pieces);
    return rc;
}

typedef struct fragment {
    size_t start, len;
    int32_t token; /* -1: raw text */
} fragment;

typedef struct fragment_list {
    fragment *items;
    size_t len, cap;
} fragment_list;

static int fragments_push(fragment_list *l, fragment f)
{
    fragment *grown = kvz_grow(l->items, &l->cap, l->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    l->items = grown;
    l->items[l->len++] = f;
    return KVZ_OK;
}

/* Split raw fragments at every occurrence of each special token, longest
 * first (user-defined tokens always, control tokens only if parse_special). */
static int partition_specials(const kvz_tokenizer *t, const char *text, size_t n,
                              int parse_special, fragment_list *frags)
{
    fragment_list next = {0};
    int rc = fragments_push(frags, (fragment){0, n, -1});
    for (int32_t k = 0; k < t->n_specials && rc == KVZ_OK; k++) {
        int32_t id = t->specials[k];
        if (t->types[id] == KVZ_TOKEN_CONTROL && !parse_special)
            continue;
        const char *tok = t->text_arena + t->text_off[id];
        size_t tl = t->text_len[id];
        next.len = 0;
        for (size_t f = 0; f < frags->len && rc == KVZ_OK; f++) {
            fragment fr = frags->items[f];
            if (fr.token >= 0 || fr.len < tl) {
                rc = fragments_push(&next, fr);
                continue;
            }
            size_t pos = fr.start, end = fr.start + fr.len;
            while (rc == KVZ_OK) {
                const char *hit = memmem(text + pos, end - pos, tok, tl);
                if (!hit)
                    break;
                size_t h = (size_t)(hit - text);
                if (h > pos)
                    rc = fragments_push(&next, (fragment){pos, h - pos, -1});
                if (rc == KVZ_OK)
                    rc = fragments_push(&next, (fragment){h, tl, id});
                pos = h + tl;
            }
            if (rc == KVZ_OK && end > pos)
                rc = fragments_push(&next, (fragment){pos, end - pos, -1});
        }
        fragment_list tmp = *frags;
        *frags = next;
        next = tmp;
    }
    free(next.items);
    return rc;
}

int kvz_tokenize(const kvz_tokenizer *t, const char *text, size_t n, int parse_special,
                 kvz_tokens *out)
{
    fragment_list frags = {0};
    bpe_scratch scratch = {0};
    int rc = partition_specials(t, text, n, parse_special, &frags);
    for (size_t f = 0; f < frags.len && rc == KVZ_OK; f++) {
        fragment fr = frags.items[f];
        if (fr.token >= 0)
            rc = kvz_tokens_push(out, fr.token);
        else
            rc = encode_raw(t, &scratch, text + fr.start, fr.len, out);
    }
    free(frags.items);
    free(scratch.sym);
    free(scratch.heap);
    free(scratch.mapped);
    return rc;
}

size_t kvz_token_bytes(const kvz_tokenizer *t, int32_t id, int render_special, const char **bytes)
{
    if (id < 0 || id >= t->n_vocab) {
        *bytes = "";
        return 0;
    }
    if (t->types[id] == KVZ_TOKEN_CONTROL && !render_special) {
        *bytes = "";
        return 0;
    }
    *bytes = t->bytes_arena + t->bytes_off[id];
    return t->bytes_len[id];
}

int kvz_detokenize(const kvz_tokenizer *t, const int32_t *ids, size_t n, int render_special,
                   char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return kvz_errorf(KVZ_ERR_ARG, "token id %d at position %zu is outside the vocabulary (0..%d)",
                              ids[i], i, t->n_vocab - 1);
        const char *b;
        total += kvz_token_bytes(t, ids[i], render_special, &b);
    }
    char *s = malloc(total + 1);
    if (!s)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory detokenizing");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *b;
        size_t l = kvz_token_bytes(t, ids[i], render_special, &b);
        memcpy(s + o, b, l);
        o += l;
    }
    s[o] = '\0';
    *text = s;
    *len = o;
    return KVZ_OK;
}
