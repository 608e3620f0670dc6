/* utf8.h — UTF-8 validation and encoding helpers. */
#ifndef KVZ_MODEL_UTF8_H
#define KVZ_MODEL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 if the
 * bytes there are not valid UTF-8 (overlong, surrogate, truncated, > U+10FFFF). */
size_t kvz_utf8_valid_prefix(const uint8_t *s, size_t n);

/* The code point of that sequence, its length in *len when len is not NULL
 * (0, and code point 0, where the bytes are not valid UTF-8). */
uint32_t kvz_utf8_decode(const uint8_t *s, size_t n, size_t *len);

/* Encode code point `cp` (< 0x110000) into out[4]; returns the byte count. */
size_t kvz_utf8_encode(uint32_t cp, char *out);

/* Length of the longest prefix of s[0..n) that is valid UTF-8. */
size_t kvz_utf8_valid_length(const uint8_t *s, size_t n);

/* n less the bytes that end s[0..n) with a character cut short (a lead byte
 * followed by fewer continuation bytes than it announces, as an answer
 * stopped mid-character has them): what can be shown whole. Other invalid
 * bytes are left for the caller. */
size_t kvz_utf8_complete_length(const uint8_t *s, size_t n);

/* KVZ_OK where the string `text` is UTF-8, else KVZ_ERR_ARG naming `what`
 * and the first bad byte: text the model is to read (a question, a prompt),
 * which kvz's tokenizer would take byte by byte where the reference
 * (llama.cpp) reads each bad byte as U+FFFD. */
int kvz_utf8_require(const char *text, const char *what);

/* The bytes of whitespace that open (prefix) or close (suffix) s[0..n), as
 * Jinja's `trim` strips it: every character Python's str.isspace calls space
 * (ASCII's six and \x1c..\x1f, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000). */
size_t kvz_utf8_space_prefix(const char *s, size_t n);
/* Whether the string s is all such whitespace (or empty): a blank question,
 * U+3000 (an IME's full-width space) and U+00A0 included. */
int kvz_utf8_is_blank(const char *s);
size_t kvz_utf8_space_suffix(const char *s, size_t n);

#endif
