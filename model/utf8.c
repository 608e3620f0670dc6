/* utf8.c — strict UTF-8 checks (RFC 3629). */
#include "model/utf8.h"
#include "common/error.h"

#include <string.h>

size_t kvz_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

uint32_t kvz_utf8_decode(const uint8_t *s, size_t n, size_t *len)
{
    size_t k = kvz_utf8_valid_prefix(s, n);
    if (len)
        *len = k;
    if (k <= 1)
        return k ? s[0] : 0;
    uint32_t cp = s[0] & (0x7fu >> k);
    for (size_t i = 1; i < k; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

size_t kvz_utf8_valid_length(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = kvz_utf8_valid_prefix(s + i, n - i);
        if (k == 0)
            break;
        i += k;
    }
    return i;
}

size_t kvz_utf8_complete_length(const uint8_t *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80)
            continue; /* a continuation byte: its lead is further back */
        size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 0;
        return need > back ? n - back : n;
    }
    return n;
}

size_t kvz_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* What Jinja's `trim` strips (Python's str.isspace), as UTF-8. */
static const char *const WHITESPACE[] = {
    "\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
    "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80",                       /* U+0085, U+00A0, U+1680 */
    "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83", /* U+2000..U+200A */
    "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87",
    "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a",
    "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", /* U+2028, 2029, 202F, 205F */
    "\xe3\x80\x80",                                                  /* U+3000 */
};

/* The byte length of the whitespace character s starts with (at_end: ends
 * with), 0 if none. A lead byte is never a continuation byte, so a match at
 * the end of valid UTF-8 is a whole character. */
static size_t space_at(const char *s, size_t len, int at_end)
{
    for (size_t i = 0; i < sizeof WHITESPACE / sizeof *WHITESPACE; i++) {
        size_t n = strlen(WHITESPACE[i]);
        if (n <= len && memcmp(at_end ? s + len - n : s, WHITESPACE[i], n) == 0)
            return n;
    }
    return 0;
}

size_t kvz_utf8_space_prefix(const char *s, size_t n)
{
    size_t done = 0;
    for (size_t k; (k = space_at(s + done, n - done, 0)) != 0;)
        done += k;
    return done;
}

size_t kvz_utf8_space_suffix(const char *s, size_t n)
{
    size_t done = 0;
    for (size_t k; (k = space_at(s, n - done, 1)) != 0;)
        done += k;
    return done;
}

int kvz_utf8_require(const char *text, const char *what)
{
    size_t whole = strlen(text), valid = kvz_utf8_valid_length((const uint8_t *)text, whole);
    if (valid == whole)
        return KVZ_OK;
    return kvz_errorf(KVZ_ERR_ARG, "%s is not UTF-8 (byte %zu is 0x%02x)", what, valid,
                      (unsigned)(uint8_t)text[valid]);
}

int kvz_utf8_is_blank(const char *s)
{
    size_t n = strlen(s);
    return kvz_utf8_space_prefix(s, n) == n;
}
