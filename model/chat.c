/* chat.c — ChatML and Llama-3 rendering. */
#include "model/chat.h"
#include "common/buffer.h"
#include "common/error.h"
#include "model/utf8.h"

#include <stdlib.h>
#include <string.h>

const char *kvz_chat_kind_name(kvz_chat_kind kind)
{
    switch (kind) {
    case KVZ_CHAT_CHATML: return "chatml";
    case KVZ_CHAT_LLAMA3: return "llama3";
    }
    return "unknown";
}

static void put(kvz_buffer *b, const char *s) { kvz_buffer_append(b, s, strlen(s)); }

/* ChatML templates write their default system turn as a literal
 * '<|im_start|>system\n...<|im_end|>' inside the template source: the first
 * such turn that is a literal (Qwen2.5's opens system turns built from
 * expressions, for tools and for a given system message, before it). */
static char *chatml_default_system(const char *tpl, size_t len)
{
    static const char *const opens[2] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    const char *end = tpl + len;
    const char *first = NULL;
    size_t skip = 0;
    for (const char *from = tpl;; first = NULL) {
        for (int i = 0; i < 2; i++) { /* the earlier of the escaped and the raw newline */
            const char *p = memmem(from, (size_t)(end - from), opens[i], strlen(opens[i]));
            if (p && (!first || p < first))
                first = p, skip = strlen(opens[i]);
        }
        if (!first)
            return NULL;
        const char *p = first + skip;
        const char *q = memmem(p, (size_t)(end - p), "<|im_end|>", 10);
        if (!q)
            return NULL;
        if (!memchr(p, '\'', (size_t)(q - p)) && !memchr(p, '{', (size_t)(q - p)))
            return strndup(p, (size_t)(q - p));
        from = p; /* not a literal: the next one */
    }
}

/* The literal after `key` in the template source, up to the first of `stops`
 * (a Jinja "\\n" escape counts as '\n'); *out stays NULL when the key is
 * absent or the literal does not end. */
static int literal_after(const char *tpl, size_t len, const char *key, const char *stops, char **out)
{
    *out = NULL;
    const char *p = memmem(tpl, len, key, strlen(key));
    if (!p)
        return KVZ_OK;
    p += strlen(key);
    const char *q = p, *end = tpl + len;
    while (q < end && !strchr(stops, *q) && !(q + 1 < end && q[0] == '\\' && q[1] == 'n'))
        q++;
    if (q < end && !(*out = strndup(p, (size_t)(q - p))))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a chat template");
    return KVZ_OK;
}

/* Llama 3.1 and later always open with a system turn that states a knowledge
 * cutoff and a date: "Today Date: " + date_string, which defaults to a
 * literal (3.2 takes the day's date when the renderer offers strftime_now,
 * which would make every day's prompt, and so every compiled prefix,
 * different: kvz takes the literal, as a renderer without it does), or a date
 * written in the text itself. Either must be a literal kvz can find. */
static int llama3_system_preamble(kvz_chat *c, const kvz_gguf *g, const char *tpl, size_t len)
{
    static const char STOPS[] = "\"'\n";
    char *knowledge = NULL, *date = NULL;
    int rc = literal_after(tpl, len, "Cutting Knowledge Date: ", STOPS, &knowledge);
    if (rc != KVZ_OK || !knowledge)
        return rc; /* Llama 3.0: no system turn unless given */
    rc = literal_after(tpl, len, "Today Date: ", STOPS, &date);
    if (rc == KVZ_OK && date && !date[0]) { /* "Today Date: " + date_string */
        free(date);
        rc = literal_after(tpl, len, "date_string = \"", "\"", &date);
    }
    if (rc == KVZ_OK && (!knowledge[0] || !date || !date[0])) {
        rc = kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: a Llama-3 chat template with a knowledge cutoff and a date "
                        "kvz cannot read as literals (it reads \"Cutting Knowledge Date: <text>\" and \"Today "
                        "Date: <text>\" or date_string = \"<text>\")", kvz_gguf_path(g));
    } else if (rc == KVZ_OK) {
        kvz_buffer b = {0};
        put(&b, "Cutting Knowledge Date: ");
        put(&b, knowledge);
        put(&b, "\nToday Date: ");
        put(&b, date);
        put(&b, "\n\n");
        kvz_buffer_append(&b, "", 1);
        if (b.failed)
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a chat template");
        else
            c->system_preamble = (char *)b.data, b.data = NULL;
        kvz_buffer_free(&b);
    }
    free(knowledge), free(date);
    return rc;
}

int kvz_chat_init(kvz_chat *c, const kvz_gguf *g, int has_im_start)
{
    memset(c, 0, sizeof *c);
    kvz_gguf_str tpl = {"", 0};
    if (kvz_gguf_find_key(g, "tokenizer.chat_template") >= 0)
        KVZ_TRY(kvz_gguf_get_str(g, "tokenizer.chat_template", &tpl));
    size_t len = (size_t)tpl.len;
    if (len && memmem(tpl.ptr, len, "<|start_header_id|>", 19)) {
        c->kind = KVZ_CHAT_LLAMA3;
        int rc = llama3_system_preamble(c, g, tpl.ptr, len);
        if (rc != KVZ_ERR_UNSUPPORTED) /* a system turn kvz cannot write: said when a chat is rendered */
            return rc;
        if (!(c->unknown = strdup(kvz_last_error())))
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a chat template");
        kvz_error_clear();
        return KVZ_OK;
    }
    if ((len && memmem(tpl.ptr, len, "<|im_start|>", 12)) || (!len && has_im_start)) {
        c->kind = KVZ_CHAT_CHATML;
        if (len)
            c->default_system = chatml_default_system(tpl.ptr, len);
        return KVZ_OK;
    }
    char why[1024];
    snprintf(why, sizeof why, "%s: chat template %s (kvz knows ChatML '<|im_start|>' and Llama-3 "
             "'<|start_header_id|>'; a raw prompt, kvz generate without --chat, needs none)", kvz_gguf_path(g),
             len ? "not recognised" : "missing");
    if (!(c->unknown = strdup(why)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a chat template");
    return KVZ_OK;
}

void kvz_chat_free(kvz_chat *c)
{
    free(c->default_system);
    free(c->system_preamble);
    free(c->unknown);
    c->default_system = c->system_preamble = c->unknown = NULL;
}

size_t kvz_chat_content_end(const kvz_chat *c, const char *s, size_t len)
{
    return c->kind == KVZ_CHAT_LLAMA3 ? len - kvz_utf8_space_suffix(s, len) : len;
}

/* Llama-3 trims surrounding whitespace of every message. */
static void put_trimmed(kvz_buffer *b, const char *s)
{
    size_t len = strlen(s), lead = kvz_utf8_space_prefix(s, len);
    kvz_buffer_append(b, s + lead, len - lead - kvz_utf8_space_suffix(s + lead, len - lead));
}

int kvz_chat_render(const kvz_chat *c, const kvz_chat_message *msgs, size_t n,
                    int add_generation_prompt, char **out)
{
    if (c->unknown)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s", c->unknown);
    kvz_buffer b = {0};
    int has_system = n > 0 && strcmp(msgs[0].role, "system") == 0;
    if (c->kind == KVZ_CHAT_CHATML) {
        if (!has_system && c->default_system) {
            put(&b, "<|im_start|>system\n");
            put(&b, c->default_system);
            put(&b, "<|im_end|>\n");
        }
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|im_start|>");
            put(&b, msgs[i].role);
            put(&b, "\n");
            put(&b, msgs[i].content);
            put(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt)
            put(&b, "<|im_start|>assistant\n");
    } else {
        put(&b, "<|begin_of_text|>");
        size_t first = 0;
        if (c->system_preamble) { /* always a system turn; a given message goes after the preamble */
            put(&b, "<|start_header_id|>system<|end_header_id|>\n\n");
            put(&b, c->system_preamble);
            if (has_system)
                put_trimmed(&b, msgs[0].content);
            put(&b, "<|eot_id|>");
            first = has_system;
        }
        for (size_t i = first; i < n; i++) {
            put(&b, "<|start_header_id|>");
            put(&b, msgs[i].role);
            put(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, msgs[i].content);
            put(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
    kvz_buffer_append(&b, "", 1);
    if (b.failed) {
        kvz_buffer_free(&b);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory rendering a chat");
    }
    *out = (char *)b.data;
    return KVZ_OK;
}

/* Render a conversation whose user content is a marker, and cut at it. */
static int split_at_marker(const kvz_chat *c, const char *system, int want_open, char **out)
{
    static const char MARK[] = "\x01kvz-user-content\x01";
    kvz_chat_message msgs[2];
    size_t n = 0;
    if (system)
        msgs[n++] = (kvz_chat_message){"system", system};
    msgs[n++] = (kvz_chat_message){"user", MARK};
    char *full = NULL;
    KVZ_TRY(kvz_chat_render(c, msgs, n, 1, &full));
    char *at = strstr(full, MARK);
    KVZ_ASSERT(at);
    char *piece = want_open ? strndup(full, (size_t)(at - full)) : strdup(at + sizeof MARK - 1);
    free(full);
    if (!piece)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory rendering a chat");
    *out = piece;
    return KVZ_OK;
}

int kvz_chat_open_user_turn(const kvz_chat *c, const char *system, char **out)
{
    return split_at_marker(c, system, 1, out);
}

int kvz_chat_close_user_turn(const kvz_chat *c, char **out)
{
    return split_at_marker(c, NULL, 0, out);
}
