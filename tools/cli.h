/*
 * cli.h — what the kvz subcommands share: exit codes, error reporting, the
 * default model, number parsing.
 */
#ifndef KVZ_TOOLS_CLI_H
#define KVZ_TOOLS_CLI_H

#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>

/* Exit codes (documented in `kvz --help`). */
enum {
    KVZ_EXIT_OK = 0,
    KVZ_EXIT_FAILURE = 1,
    KVZ_EXIT_USAGE = 2,
};

/* Print "kvz <cmd>: <message>" for a failed status and return its exit code. */
int cli_fail(const char *cmd, int status);

/* Exit code for a kvz_status. */
int cli_exit_code(int status);

/* The model path to use: `given` if set, else $KVZ_MODEL, else the model
 * scripts/setup.sh fetches (looked up from the working directory, then next
 * to the kvz binary). Never NULL; the result may not exist. */
const char *cli_model_path(const char *given);

/* A file of the project (`relative` to its root: "tests/data/zpipe.c"),
 * looked up from the working directory, then from the kvz binary's
 * <root>/build/; `relative` itself when neither has it. */
const char *cli_project_file(const char *relative, char path[PATH_MAX]);

/* Strict number parsing: the whole string, within [min, max]. 0 on success. */
/* A comma list, each item through `item(text, out, index)` (non-zero: bad).
 * Non-zero where an item is bad or empty, the list is empty, or it has more
 * than max items; *n: the items read. */
int cli_parse_list(const char *list, int (*item)(const char *, void *, int), void *out, int *n, int max);
int cli_parse_int(const char *s, long min, long max, long *out);
int cli_parse_float(const char *s, double min, double max, double *out);
/* A byte count: a whole number, or one ending in K, M, G or T (1024s; KiB,
 * MiB... and KB, MB... read alike), within [min, max]. 0 on success. */
int cli_parse_bytes(const char *s, long min, long max, long *out);

/* "kvz CMD: invalid value 'VALUE' for --OPTION" on stderr, with the range
 * wanted where the last cli_parse_int/cli_parse_float refused the value (else
 * where --help lists the values); returns KVZ_EXIT_USAGE. */
int cli_bad_value(const char *cmd, const char *option, const char *value);

/* --threads: 1..KVZ_MAX_THREADS. 0 on success. */
int cli_parse_threads(const char *s, long *out);

/* More threads than the CPUs this process may use are allowed (a shared
 * machine) with a warning on stderr, since every thread past them only
 * waits: said once the command line has parsed (threads 0: the default). */
void cli_warn_threads(const char *cmd, long threads);

/* Says `note` (a model's device_note: --device auto left the GPU for the
 * CPU) on stderr, when there is one. */
void cli_note_device(const char *cmd, const char *note);

/* On stderr, that `count` bytes of `what` (the question, the prompt) were left
 * out of what the model reads, the first being `first`; nothing for 0. */
void cli_note_untokenized(const char *cmd, const char *what, size_t count, uint8_t first);

/* --segments A, A-B or A- (A to the last), counted from 1 as kvz inspect
 * lists them, of the last of docs[0..n_docs), into its part (counted from 0;
 * segments 0: to the last). *given (0 at first) is the count of docs when a
 * run was last given. Returns an exit code: KVZ_EXIT_USAGE, said, when no
 * --doc comes before it, it is given twice, or the value is not such a run. */
struct kvz_doc_part;
int cli_parse_segments(const char *cmd, const char *value, struct kvz_doc_part *docs, size_t n_docs,
                       size_t *given);

/* --config: a number N (1 to 2^20 in plain digits, as this store's `kvz ls`
 * numbers a document's configurations) or a configuration's id, the same in
 * every store (8 to 16 hex digits: its first ones, as `kvz ls` shows them).
 * !numbers_too: an id only (pack: a number differs from document to document).
 * Returns an exit code: KVZ_EXIT_USAGE, said, for anything else. */
struct kvz_config_pick;
int cli_parse_config(const char *cmd, const char *s, int numbers_too, struct kvz_config_pick *pick);

/* --device and --weights values. 0 on success. */
int cli_parse_device(const char *s, int *device);
int cli_parse_weights(const char *s, int *policy);

/* An answer streamed to stdout by whole characters: the first bytes of a
 * character cut between two tokens wait for the rest, and those of one the
 * answer stopped inside are never written (as --json leaves them out). */
typedef struct cli_answer_out {
    char held[4];
    size_t n_held;
} cli_answer_out;
/* Non-zero when stdout takes no more (a closed pipe, a full disk). */
int cli_answer_write(cli_answer_out *o, const char *piece, size_t len);

/* Write s[0..len) as XML character data (an SVG's text): & < > " ' as
 * entities, bytes that are not UTF-8 and control characters as U+FFFD. */
void cli_xml_text(FILE *f, const char *s, size_t len);
/* Write s[0..len) as a JSON string literal (bytes that are not UTF-8 as U+FFFD). */
void cli_json_string(FILE *f, const char *s, size_t len);

/* A document name as a terminal line shows it: each control byte (newline,
 * escape, ...) and each byte that is not UTF-8 as \xNN, a bidi control (that
 * would reorder the line) or an invisible character (U+200B, U+FEFF, ...) as
 * its bytes so, and a backslash as \\ (bash's $'...' reads them back), so
 * a name cannot break a listing's lines, move the cursor or reorder what
 * follows it (names that differ only in composed characters still look
 * alike); characters as they are
 * (--json keeps them). Returns buf, cut with "..." past its end; CLI_SHOWN_MAX holds any
 * name a store takes. */
#define CLI_SHOWN_MAX (4 * 512 + 16)
const char *cli_shown(char buf[CLI_SHOWN_MAX], const char *s, size_t len);
/* 0 when an --svg PATH can be written beside the command's report: a file,
 * probed now (a long run does not end in a path it cannot write); else the
 * reason said and KVZ_EXIT_USAGE or the error's exit code. */
int cli_check_svg_path(const char *cmd, const char *path);

/* Ends a drawing built in memory by open_memstream(&*buf, ...): closes f (when
 * not NULL), writes *buf to path whole (kvz_atomic_file_put) when rc is KVZ_OK,
 * frees *buf. Returns rc, or the first error of closing or writing. */
int cli_svg_put(const char *path, FILE *f, char **buf, size_t *len, int rc);

/* The printf field width ("%-*s") that pads s to `columns` terminal columns:
 * a wide character (CJK) takes two, a multi-byte one a single column. */
int cli_pad_width(const char *s, int columns);

/* The same, of a whole string (a message naming documents), written to f. */
void cli_put_shown(FILE *f, const char *s);

/* An option the command does not know or take (getopt has named it): its
 * usage lines and where the rest is told, on stderr; returns KVZ_EXIT_USAGE. */
int cli_bad_option(const char *help, const char *cmd);

struct option;
/* getopt_long over a command's arguments (argv[0] is the command's name), with
 * getopt's own messages naming the program as "kvz COMMAND". A value spelt as
 * one of the options (`--store --quiet`) is refused ('?', said on stderr).
 * *index (when not NULL): the long option's, or -1 for a short one. */
int cli_getopt(int argc, char **argv, const char *short_options, const struct option *long_options, int *index);

/* Where a command that writes its data to `output` reports what it did:
 * stdout, unless output is stdout itself (-o /dev/stdout), then stderr. */
FILE *cli_report_stream(const char *output);

/* The columns of the terminal `f` is, where a progress line may be redrawn
 * in place there (carriage return, erase to the end of the line): its
 * window's width (else $COLUMNS, else 80); 0 where f is no terminal or
 * TERM is "dumb" (a line is then written once, whole, or not at all). */
int cli_live_columns(FILE *f);

/* Redraw the progress line on stderr: `text` cut to columns - 1 (at a
 * character's start) so that it never wraps, which would leave the rows
 * above it behind on every redraw. */
void cli_live_line(int columns, const char *text);

/* Read all of stdin (or a file when path is not "-") into a NUL-terminated buffer. */
int cli_read_input(const char *path, char **data, size_t *len);

/* KVZ_OK when text[0..len) holds no NUL byte; else KVZ_ERR_FORMAT with
 * "<what> holds a NUL byte at offset N: <why>" (C strings would be cut there). */
int cli_refuse_nul(const char *text, size_t len, const char *what, const char *why);

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_compile(int argc, char **argv);
/* "2026-12-05 16:09" (local time) of seconds since 1970, or "?" for a time
 * no calendar holds (a bundle's dates are untrusted input). */
void cli_format_time(uint64_t seconds, char out[32]);

/* A line for stderr should SIGINT, SIGTERM, SIGHUP or SIGPIPE end the command: what a
 * long command had done by then. Formatted here, outside any handler (the
 * last one set is written whole); the handler calls cli_say_interrupt_note,
 * which is async-signal-safe. cli_set_interrupt_output: the same for stdout
 * (a --json summary line; stdout must be flushed whenever it is set, so that
 * nothing buffered is lost between). cli_clear_interrupt_note: neither. */
#define CLI_INTERRUPT_TEXT_MAX (6 * 512 + 1024) /* a store key escaped as JSON (6 bytes a byte), and the counts */
void cli_set_interrupt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_set_interrupt_output(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_clear_interrupt_note(void);
void cli_say_interrupt_note(void);

/* A temporary store a command made (eval's default): cli_temp_store_remove
 * removes its files and folder, at the end or from the signal handler
 * (async-signal-safe), once; set NULL to forget it. */
void cli_temp_store_set(const char *dir);
void cli_temp_store_remove(void);

int cmd_ls(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
