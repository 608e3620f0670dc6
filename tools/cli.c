/* cli.c — helpers shared by the subcommands. */
#include "tools/cli.h"
#include "common/error.h"
#include "common/file_util.h"
#include "format/doc_record.h"
#include "kernels/backend.h"
#include "model/utf8.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

int cli_exit_code(int status)
{
    switch (status) {
    case KVZ_OK: return KVZ_EXIT_OK;
    case KVZ_ERR_ARG: return KVZ_EXIT_USAGE;
    case KVZ_ERR_IO: return 3;
    case KVZ_ERR_FORMAT: return 4;
    case KVZ_ERR_UNSUPPORTED: return 5;
    case KVZ_ERR_MODEL_MISMATCH: return 6;
    case KVZ_ERR_NOT_FOUND: return 7;
    case KVZ_ERR_NOMEM: return 8;
    case KVZ_ERR_BACKEND: return 9;
    case KVZ_ERR_RANGE: return 10;
    default: return KVZ_EXIT_FAILURE;
    }
}

int cli_fail(const char *cmd, int status)
{
    const char *detail = kvz_last_error();
    fprintf(stderr, "kvz %s: ", cmd);
    cli_put_shown(stderr, detail[0] ? detail : kvz_strerror(status)); /* names in it may hold control bytes */
    fputc('\n', stderr);
    return cli_exit_code(status);
}

const char *cli_project_file(const char *relative, char path[PATH_MAX])
{
    if (access(relative, R_OK) == 0)
        return relative;
    /* the binary lives in <repo>/build/kvz (or build-asan/...): try <repo>/relative */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, PATH_MAX, "%.*s/../%s", PATH_MAX - 256, exe, relative);
            if (access(path, R_OK) == 0)
                return path;
        }
    }
    return relative;
}

const char *cli_model_path(const char *given)
{
    static char beside_binary[PATH_MAX];
    if (given)
        return given;
    const char *env = getenv("KVZ_MODEL");
    if (env && env[0])
        return env;
    const char *path = cli_project_file(DEFAULT_MODEL, beside_binary);
    if (access(path, R_OK) != 0) /* said before the error that names the path */
        fprintf(stderr, "kvz: the default model %s is not here: give --model PATH, set KVZ_MODEL, or fetch it "
                "with scripts/setup.sh\n", DEFAULT_MODEL);
    return path;
}

/* The range the last number parsed had to be in, where it was not: what
 * cli_bad_value says (the command line is parsed on one thread). */
static struct {
    const char *refused; /* the text itself (NULL after a number parsed): a value refused otherwise is not taken for it */
    int whole, sized;  /* sized: a byte count, which may end in K, M, G or T */
    long min, max;     /* whole */
    double fmin, fmax; /* not */
} last_number;

int cli_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    last_number.refused = NULL;
    if (errno || end == s || *end || v < min || v > max) {
        last_number.refused = s, last_number.whole = 1, last_number.sized = 0;
        last_number.min = min, last_number.max = max;
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_bytes(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    int shift = 0, digits = end != s;
    const char *units = "KMGT", *unit = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (unit && digits) { /* K, KB, KiB, any case */
        shift = 10 * (int)(unit - units + 1);
        end += 1 + (tolower((unsigned char)end[1]) == 'i' && tolower((unsigned char)end[2]) == 'b');
        end += tolower((unsigned char)*end) == 'b';
    }
    last_number.refused = NULL;
    if (errno || !digits || *end || v < 0 || (shift && v > (LONG_MAX >> shift)) || (v << shift) < min ||
        (v << shift) > max) {
        last_number.refused = s, last_number.whole = 1, last_number.sized = 1;
        last_number.min = min, last_number.max = max;
        return -1;
    }
    *out = v << shift;
    return 0;
}

int cli_parse_float(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    last_number.refused = NULL;
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) {
        last_number.refused = s, last_number.whole = 0, last_number.sized = 0, last_number.fmin = min, last_number.fmax = max;
        return -1;
    }
    *out = v;
    return 0;
}

int cli_bad_value(const char *cmd, const char *option, const char *value)
{
    if (value == last_number.refused && last_number.sized)
        fprintf(stderr, "kvz %s: invalid value '%s' for --%s: give a number of bytes from %ld to %ld, which may end "
                "in K, M, G or T (KiB, MiB, GiB, TiB)\n", cmd, value, option, last_number.min, last_number.max);
    else if (value == last_number.refused && last_number.whole)
        fprintf(stderr, "kvz %s: invalid value '%s' for --%s: give a whole number from %ld to %ld\n", cmd, value,
                option, last_number.min, last_number.max);
    else if (value == last_number.refused)
        fprintf(stderr, "kvz %s: invalid value '%s' for --%s: give a number from %g to %g\n", cmd, value, option,
                last_number.fmin, last_number.fmax);
    else /* compile, query and eval describe --device and --weights "as in `kvz generate`" */
        fprintf(stderr, "kvz %s: invalid value '%s' for --%s (`kvz %s --help` lists the values it takes)\n", cmd,
                value, option,
                (strcmp(option, "device") == 0 || strcmp(option, "weights") == 0) && strcmp(cmd, "bench") != 0
                    ? "generate" : cmd);
    last_number.refused = NULL;
    return KVZ_EXIT_USAGE;
}

int cli_parse_config(const char *cmd, const char *s, int numbers_too, kvz_config_pick *pick)
{
    *pick = (kvz_config_pick){0};
    size_t n = strlen(s), digits = strspn(s, "0123456789"), hex = strspn(s, "0123456789abcdefABCDEF");
    if (n > 0 && n < 8 && digits == n && s[0] != '0' && !numbers_too) {
        fprintf(stderr, "kvz %s: --config takes a form's id here (8 to 16 hex digits, as `kvz ls` shows it): its "
                "number differs from document to document\n", cmd);
        return KVZ_EXIT_USAGE;
    } else if (n > 0 && n < 8 && digits == n && s[0] != '0') { /* a number: ids have 8 digits or more */
        long v;
        if (cli_parse_int(s, 1, 1 << 20, &v) == 0) {
            pick->number = (uint32_t)v;
            return KVZ_EXIT_OK;
        }
    } else if (n >= 8 && n <= 16 && hex == n) {
        pick->id = strtoull(s, NULL, 16);
        pick->id_digits = (uint32_t)n;
        return KVZ_EXIT_OK;
    }
    if (numbers_too)
        fprintf(stderr, "kvz %s: invalid --config '%s': give a form's number as `kvz ls` numbers a document's "
                "forms (1, 2, ...), or 8 to 16 hex digits of its id\n", cmd, s);
    else
        fprintf(stderr, "kvz %s: invalid --config '%s': give 8 to 16 hex digits of a form's id, as `kvz ls` shows "
                "it\n", cmd, s);
    return KVZ_EXIT_USAGE;
}

int cli_bad_option(const char *help, const char *cmd)
{
    const char *end = strstr(help, "\n\n"); /* the usage lines, up to the first blank one */
    fprintf(stderr, "%.*s\n(kvz %s --help describes every option)\n", end ? (int)(end - help) : (int)strlen(help),
            help, cmd);
    return KVZ_EXIT_USAGE;
}

int cli_getopt(int argc, char **argv, const char *short_options, const struct option *long_options, int *index)
{
    char program[64];
    snprintf(program, sizeof program, "kvz %s", argv[0]);
    char *command = argv[0];
    argv[0] = program; /* getopt prefixes its messages with argv[0] */
    int own_index;
    index = index ? index : &own_index;
    *index = -1; /* getopt_long sets it for a long option only */
    int c = getopt_long(argc, argv, short_options, long_options, index);
    argv[0] = command;
    /* `--store --quiet`: the next option taken for the value (a folder named
     * "--quiet" was made). A value spelt as one of the command's options is
     * refused; "./--quiet" names such a path. */
    for (const struct option *o = long_options; c != -1 && c != '?' && optarg && optarg[0] == '-' &&
                                                optarg[1] == '-' && o && o->name; o++) {
        size_t n = strcspn(optarg + 2, "=");
        if (strlen(o->name) == n && strncmp(optarg + 2, o->name, n) == 0) {
            char given[64];
            if (*index < 0) /* a short option */
                snprintf(given, sizeof given, "-%c", c);
            else
                snprintf(given, sizeof given, "--%s", long_options[*index].name);
            fprintf(stderr, "kvz %s: %s needs a value, not the option '%s' (./%s names a path so named)\n",
                    command, given, optarg, optarg);
            return '?';
        }
    }
    return c;
}

FILE *cli_report_stream(const char *output)
{
    return kvz_standard_descriptor(output) == STDOUT_FILENO ? stderr : stdout;
}

int cli_read_input(const char *path, char **data, size_t *len)
{
    if (strcmp(path, "-") == 0)
        return kvz_read_file("/dev/stdin", data, len);
    return kvz_read_file(path, data, len);
}

int cli_refuse_nul(const char *text, size_t len, const char *what, const char *why)
{
    const char *nul = memchr(text, '\0', len);
    if (!nul)
        return KVZ_OK;
    return kvz_errorf(KVZ_ERR_FORMAT, "%s holds a NUL byte at offset %zu: %s", what, (size_t)(nul - text), why);
}

int cli_parse_threads(const char *s, long *out)
{
    return cli_parse_int(s, 1, KVZ_MAX_THREADS, out);
}

void cli_warn_threads(const char *cmd, long threads)
{
    int cpus = kvz_backend_cpus();
    if (threads > cpus)
        fprintf(stderr, "kvz %s: warning: --threads %ld is more than the %d CPU(s) this process may use; the "
                "extra threads only wait their turn\n", cmd, threads, cpus);
    int from_env = threads ? 0 : kvz_backend_threads(&(kvz_backend_config){0});
    if (from_env > cpus)
        fprintf(stderr, "kvz %s: warning: OMP_NUM_THREADS=%s gives %d threads, more than the %d CPU(s) this process "
                "may use; the extra threads only wait their turn\n", cmd, getenv("OMP_NUM_THREADS"), from_env, cpus);
}

void cli_note_device(const char *cmd, const char *note)
{
    if (note && *note) /* --device auto fell back: a run many times slower is no surprise */
        fprintf(stderr, "kvz %s: note: %s (--device cuda makes this an error)\n", cmd, note);
}

void cli_note_untokenized(const char *cmd, const char *what, size_t count, uint8_t first)
{
    if (count) /* the model reads the rest: said, as compile says it of a document */
        fprintf(stderr, "kvz %s: note: %zu byte(s) of %s left out: the model's vocabulary has no token for them (the "
                "first 0x%02X)\n", cmd, count, what, first);
}

/* Digits only (no sign, no space), as a number in [min, INT32_MAX]. */
static int parse_count(const char *s, size_t len, long min, long *out)
{
    char digits[16];
    if (len == 0 || len >= sizeof digits || strspn(s, "0123456789") < len)
        return -1;
    memcpy(digits, s, len);
    digits[len] = '\0';
    int rc = cli_parse_int(digits, min, INT32_MAX, out);
    last_number.refused = NULL; /* a copy: never the value a message names */
    return rc;
}

int cli_parse_segments(const char *cmd, const char *value, kvz_doc_part *docs, size_t n_docs, size_t *given)
{
    if (n_docs == 0 || *given == n_docs) {
        fprintf(stderr, "kvz %s: --segments follows the --doc it applies to, once\n", cmd);
        return KVZ_EXIT_USAGE;
    }
    const char *dash = strchr(value, '-');
    long from, to = 0; /* to 0: the last */
    int bad = parse_count(value, dash ? (size_t)(dash - value) : strlen(value), 1, &from) != 0;
    if (!bad && !dash)
        to = from;
    else if (!bad && dash[1])
        bad = parse_count(dash + 1, strlen(dash + 1), from, &to) != 0;
    if (bad) {
        fprintf(stderr, "kvz %s: invalid value '%s' for --segments (A, A-B or A-, 1 <= A <= B)\n", cmd, value);
        return KVZ_EXIT_USAGE;
    }
    docs[n_docs - 1].first_segment = (int32_t)(from - 1);
    docs[n_docs - 1].segments = to ? (int32_t)(to - from + 1) : 0;
    *given = n_docs;
    return KVZ_EXIT_OK;
}

int cli_parse_device(const char *s, int *device)
{
    if (strcmp(s, "cpu") == 0)
        *device = KVZ_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0)
        *device = KVZ_DEVICE_CUDA;
    else if (strcmp(s, "auto") == 0)
        *device = KVZ_DEVICE_AUTO;
    else
        return -1;
    return 0;
}

int cli_parse_weights(const char *s, int *policy)
{
    if (strcmp(s, "auto") == 0)
        *policy = KVZ_WEIGHTS_AUTO;
    else if (strcmp(s, "f32") == 0)
        *policy = KVZ_WEIGHTS_F32;
    else if (strcmp(s, "native") == 0)
        *policy = KVZ_WEIGHTS_NATIVE;
    else
        return -1;
    return 0;
}

#define SHOWN_CHAR_MAX 13 /* one character shown: "\\xe2\\x80\\xae" and its NUL, the longest */

/* Whether the character s[0..k) reorders the text around it or shows as
 * nothing: the bidi embeddings, overrides and isolates (U+202A..U+202E,
 * U+2066..U+2069), with which "report\u202etxt.exe" reads as "reportexe.txt",
 * the bidi marks (U+200E, U+200F, U+061C), and the invisible zero-width space,
 * word joiner and invisible operators (U+200B, U+2060..U+2064), U+FEFF and the
 * soft hyphen (U+00AD), with which "zero\u200bwidth.txt" reads as
 * "zerowidth.txt". (The joiners of emoji and of Indic and Persian scripts,
 * U+200C and U+200D, show as they are.) */
static int misleads(const unsigned char *s, size_t k)
{
    if (k == 2)
        return (s[0] == 0xc2 && s[1] == 0xad) || (s[0] == 0xd8 && s[1] == 0x9c);
    if (k != 3)
        return 0;
    if (s[0] == 0xef)
        return s[1] == 0xbb && s[2] == 0xbf;
    return s[0] == 0xe2 && ((s[1] == 0x80 && ((s[2] >= 0xaa && s[2] <= 0xae) || s[2] == 0x8b || s[2] == 0x8e ||
                                              s[2] == 0x8f)) ||
                            (s[1] == 0x81 && ((s[2] >= 0xa6 && s[2] <= 0xa9) || (s[2] >= 0xa0 && s[2] <= 0xa4))));
}

/* The character that opens s[0..len) as a terminal line shows it, into out
 * (its length; at most 12 bytes and a NUL), *used: the bytes of s it took. A
 * control byte (newline, escape, ...) or a byte that is not UTF-8 as \xNN, a
 * character that reorders the line or shows as nothing as its bytes so
 * (\xe2\x80\xae, \xe2\x80\x8b), a
 * backslash as \\ (as bash's $'...' reads them back, in any locale). */
static size_t shown_char(const char *s, size_t len, char out[SHOWN_CHAR_MAX], size_t *used)
{
    unsigned char ch = (unsigned char)s[0];
    size_t k = ch < 0x80 ? 1 : kvz_utf8_valid_prefix((const uint8_t *)s, len);
    *used = k ? k : 1;
    if (misleads((const unsigned char *)s, k)) {
        const unsigned char *u = (const unsigned char *)s;
        return k == 2 ? (size_t)snprintf(out, SHOWN_CHAR_MAX, "\\x%02x\\x%02x", u[0], u[1])
                      : (size_t)snprintf(out, SHOWN_CHAR_MAX, "\\x%02x\\x%02x\\x%02x", u[0], u[1], u[2]);
    }
    if (k > 1) {
        memcpy(out, s, k);
        return k;
    }
    if (k == 0 || ch < 0x20 || ch == 0x7f)
        return (size_t)snprintf(out, 5, "\\x%02x", ch);
    if (ch == '\\') /* else "a\x0ab" would show a newline's name and a backslash's alike */
        return (size_t)snprintf(out, 5, "\\\\");
    out[0] = (char)ch;
    return 1;
}

const char *cli_shown(char buf[CLI_SHOWN_MAX], const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0, used; i < len; i += used) {
        if (o + SHOWN_CHAR_MAX + 3 > CLI_SHOWN_MAX) { /* the widest character, or "..." and the NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        o += shown_char(s + i, len - i, buf + o, &used);
    }
    buf[o] = '\0';
    return buf;
}

int cli_check_svg_path(const char *cmd, const char *path)
{
    char shown[CLI_SHOWN_MAX];
    if (kvz_standard_descriptor(path) >= 0) {
        fprintf(stderr, "kvz %s: --svg %s names stdout or stderr, where the report goes; give it a file\n", cmd,
                cli_shown(shown, path, strlen(path)));
        return KVZ_EXIT_USAGE;
    }
    struct stat target;
    if (stat(path, &target) == 0 && !S_ISREG(target.st_mode))
        return 0; /* a pipe or a device: opened only to be written (a probe would hand a reader its end) */
    kvz_atomic_file probe;
    int st = kvz_atomic_file_open(&probe, path);
    if (st != KVZ_OK)
        return cli_fail(cmd, st);
    kvz_atomic_file_abort(&probe);
    return 0;
}

int cli_svg_put(const char *path, FILE *f, char **buf, size_t *len, int rc)
{
    if (f && fclose(f) != 0 && rc == KVZ_OK)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (rc == KVZ_OK)
        rc = kvz_atomic_file_put(path, *buf, *len);
    free(*buf);
    *buf = NULL;
    return rc;
}

int cli_pad_width(const char *s, int columns)
{
    static locale_t utf8; /* the CLI's own locale is "C": it knows no character's width */
    static int looked;
    if (!looked++)
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!utf8)
        return columns; /* padded by bytes */
    locale_t was = uselocale(utf8);
    size_t len = strlen(s), shown = 0;
    mbstate_t state;
    memset(&state, 0, sizeof state);
    for (size_t i = 0; i < len;) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s + i, len - i, &state);
        int w = 1; /* a byte that is no character: one column, as a terminal's replacement */
        if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
            memset(&state, 0, sizeof state);
            k = 1;
        } else if ((w = wcwidth(wc)) < 0) {
            w = 1;
        }
        shown += (size_t)w;
        i += k;
    }
    uselocale(was);
    return columns + (int)(len - shown);
}

void cli_put_shown(FILE *f, const char *s)
{
    for (size_t len = strlen(s), i = 0, used; i < len; i += used) {
        char one[SHOWN_CHAR_MAX];
        fwrite(one, 1, shown_char(s + i, len - i, one, &used), f);
    }
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = ch < 0x80 ? 1 : kvz_utf8_valid_prefix((const uint8_t *)s + i, len - i);
        if (k == 0) { /* JSON is UTF-8: a byte that is not (a file name's) becomes U+FFFD */
            fputs("\\ufffd", f);
            k = 1;
        } else if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fwrite(s + i, 1, k, f);
        }
        i += k;
    }
    fputc('"', f);
}

int cli_answer_write(cli_answer_out *o, const char *piece, size_t len)
{
    char stack[256], *buf = o->n_held + len <= sizeof stack ? stack : malloc(o->n_held + len);
    if (!buf)
        return 1;
    memcpy(buf, o->held, o->n_held);
    memcpy(buf + o->n_held, piece, len);
    size_t total = o->n_held + len, whole = kvz_utf8_complete_length((const uint8_t *)buf, total);
    o->n_held = total - whole; /* 3 bytes at most: a character's start */
    memcpy(o->held, buf + whole, o->n_held);
    int failed = fwrite(buf, 1, whole, stdout) != whole || fflush(stdout) != 0;
    if (buf != stack)
        free(buf);
    return failed;
}

void cli_xml_text(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = ch < 0x80 ? 1 : kvz_utf8_valid_prefix((const uint8_t *)s + i, len - i);
        int noncharacter = k == 3 && ch == 0xef && (unsigned char)s[i + 1] == 0xbf && (unsigned char)s[i + 2] >= 0xbe;
        if (k == 0 || (ch < 0x20 && ch != '\t') || noncharacter) { /* not UTF-8, or what XML 1.0 does not allow */
            fputs("\xef\xbf\xbd", f);
            k = k ? k : 1;
        } else if (ch == '&' || ch == '<' || ch == '>' || ch == '"' || ch == '\'') {
            fputs(ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&quot;" : "&apos;", f);
        } else {
            fwrite(s + i, 1, k, f);
        }
        i += k;
    }
}

int cli_live_columns(FILE *f)
{
    int fd = fileno(f);
    const char *term = getenv("TERM");
    if (fd < 0 || !isatty(fd) || (term && strcmp(term, "dumb") == 0))
        return 0;
    struct winsize w;
    if (ioctl(fd, TIOCGWINSZ, &w) == 0 && w.ws_col > 0)
        return w.ws_col;
    long columns;
    const char *env = getenv("COLUMNS");
    return env && cli_parse_int(env, 1, 10000, &columns) == 0 ? (int)columns : 80;
}

void cli_live_line(int columns, const char *text)
{
    size_t len = strlen(text), fit = columns > 1 ? (size_t)columns - 1 : 0;
    if (len > fit) { /* bytes >= columns for UTF-8 (a wide character: 3 bytes, 2 columns) */
        len = fit;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--;
    }
    fprintf(stderr, "\r\033[K%.*s", (int)len, text);
    fflush(stderr);
}

void cli_format_time(uint64_t seconds, char out[32])
{
    time_t t = (time_t)seconds;
    struct tm tm;
    if (seconds > (uint64_t)INT64_MAX || !localtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M", &tm))
        snprintf(out, 32, "?");
}

/* Per stream two buffers: the next text is written into the one the handler
 * does not read, then made the current one. */
typedef struct interrupt_text {
    char text[2][CLI_INTERRUPT_TEXT_MAX];
    _Atomic int current; /* the buffer to write; -1: none */
} interrupt_text;
static interrupt_text interrupt_texts[2] = {{.current = -1}, {.current = -1}}; /* stderr, stdout */

static void set_interrupt_text(interrupt_text *t, const char *fmt, va_list ap)
{
    int next = atomic_load(&t->current) == 0 ? 1 : 0;
    vsnprintf(t->text[next], sizeof t->text[next], fmt, ap);
    atomic_store(&t->current, next);
}

void cli_set_interrupt_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_interrupt_text(&interrupt_texts[0], fmt, ap);
    va_end(ap);
}

void cli_set_interrupt_output(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_interrupt_text(&interrupt_texts[1], fmt, ap);
    va_end(ap);
}

void cli_clear_interrupt_note(void)
{
    atomic_store(&interrupt_texts[0].current, -1);
    atomic_store(&interrupt_texts[1].current, -1);
}

void cli_say_interrupt_note(void)
{
    for (int stream = 0; stream < 2; stream++) {
        interrupt_text *t = &interrupt_texts[stream];
        int k = atomic_exchange(&t->current, -1); /* said once, should a second signal come */
        if (k < 0)
            continue;
        size_t n = 0;
        while (n < sizeof t->text[k] && t->text[k][n])
            n++;
        ssize_t w = write(stream ? STDOUT_FILENO : STDERR_FILENO, t->text[k], n);
        (void)w;
    }
}

/* paths built when set, so that the handler only unlinks */
static char temp_store_paths[3][4200];
static atomic_int temp_store_held;

void cli_temp_store_set(const char *dir)
{
    atomic_store(&temp_store_held, 0);
    if (!dir)
        return;
    snprintf(temp_store_paths[0], sizeof temp_store_paths[0], "%s/data.mdb", dir);
    snprintf(temp_store_paths[1], sizeof temp_store_paths[1], "%s/lock.mdb", dir);
    snprintf(temp_store_paths[2], sizeof temp_store_paths[2], "%s", dir);
    atomic_store(&temp_store_held, 1);
}

void cli_temp_store_remove(void)
{
    if (!atomic_exchange(&temp_store_held, 0))
        return;
    unlink(temp_store_paths[0]);
    unlink(temp_store_paths[1]);
    rmdir(temp_store_paths[2]);
}

int cli_parse_list(const char *list, int (*item)(const char *, void *, int), void *out, int *n, int max)
{
    char *buf = strdup(list);
    int bad = !buf;
    *n = 0;
    for (char *t = buf, *next; t && !bad; t = next) {
        next = strchr(t, ',');
        if (next)
            *next++ = '\0';
        bad = !*t || *n >= max || item(t, out, *n);
        *n += !bad;
    }
    free(buf);
    last_number.refused = NULL; /* an item of the copy: never the value a message names */
    return bad || *n == 0;
}
