/* tasks.c — deterministic evaluation documents (see tasks.h). */
#include "eval/tasks.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/splitmix.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const TASK_NAMES[KVZ_TASK_COUNT] = {"passkey", "needle", "facts", "repeat"};

const char *kvz_task_name(kvz_task_kind k) { return k < KVZ_TASK_COUNT ? TASK_NAMES[k] : "?"; }

int kvz_task_from_name(const char *name)
{
    for (int k = 0; k < KVZ_TASK_COUNT; k++)
        if (strcmp(name, TASK_NAMES[k]) == 0)
            return k;
    return -1;
}

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r) { return kvz_splitmix64(&r->s); }

static uint32_t below(rng *r, uint32_t n) { return (uint32_t)(next(r) % n); }

#define COUNT(a) (sizeof(a) / sizeof(a)[0])
#define PICK(r, a) ((a)[below(r, (uint32_t)COUNT(a))])

/* Neutral filler: enough variety that the model cannot predict the next line. */
static const char *const FILLER[] = {
    "The grass in the meadow was green after the rain.",
    "A few clouds drifted slowly over the hills.",
    "The market opened early, as it did every Tuesday.",
    "Somewhere a dog barked twice and then was quiet.",
    "The river ran high in spring and low in late summer.",
    "Children walked to school along the old stone wall.",
    "The bakery sold out of rye bread before noon.",
    "A train passed the crossing without slowing down.",
    "The library kept its windows open on warm afternoons.",
    "Fishing boats came back to the harbour at dusk.",
    "The wind turned cold as the evening went on.",
    "An old clock in the square struck the hour.",
    "Farmers stacked hay in the barns before the storms.",
    "The road to the coast was lined with poplar trees.",
    "Lanterns were lit along the bridge when it grew dark.",
    "The post office closed for lunch at one o'clock.",
    "Snow stayed on the mountain tops until June.",
    "A cyclist stopped to fix a loose chain by the fence.",
    "The school choir practised in the church on Thursdays.",
    "Gulls circled above the fish market all morning.",
};

static const char *const FIRST[] = {"Mara", "Tomas", "Ingrid", "Felix", "Nadia", "Oskar", "Lena", "Pavel",
                                    "Ruth", "Caspar", "Elin", "Hugo", "Vera", "Anton", "Sofia", "Bruno"};
static const char *const LAST[] = {"Ellison", "Varga", "Lindqvist", "Moreau", "Halloran", "Petrov", "Okafor",
                                   "Brandt", "Castell", "Novak", "Quint", "Sorensen", "Abbott", "Ferreira"};
static const char *const CITY[] = {"Tallinn", "Porto", "Ghent", "Bergen", "Krakow", "Lyon", "Cork", "Trieste",
                                   "Aarhus", "Seville", "Graz", "Utrecht", "Turku", "Bilbao", "Malmo"};
static const char *const JOB[] = {"beekeeper", "pilot", "carpenter", "pharmacist", "surveyor", "violinist",
                                  "locksmith", "geologist", "translator", "baker", "nurse", "architect"};
static const char *const PET[] = {"parrot", "tortoise", "greyhound", "rabbit", "cat", "goldfish", "ferret"};
static const char *const PET_NAME[] = {"Pip", "Juniper", "Biscuit", "Otto", "Clementine", "Rufus", "Mabel",
                                       "Pepper", "Ziggy", "Nutmeg", "Waffles", "Basil"};
static const char *const NEEDLE_KEY[] = {"falcon", "amber", "harbour", "velvet", "quartz", "meadow",
                                         "lantern", "cobalt", "willow", "ember", "glacier", "saffron"};
static const char *const STORY_PLACE[] = {"Wexham", "Dunmore", "Kestrel Bay", "Arnholt", "Little Brenning"};
static const char *const STORY_THING[] = {"a blue bicycle", "a copper kettle", "an old map", "a wooden flute",
                                          "a jar of honey", "a red umbrella", "a brass key", "a sack of apples"};

typedef struct builder {
    kvz_buffer text;
    kvz_task_doc *doc;
    int failed;
} builder;

static void add(builder *b, const char *fmt, ...) KVZ_PRINTF(2, 3);
static void add(builder *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kvz_buffer_append(&b->text, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

static void ask(builder *b, const char *question, const char *answer)
{
    kvz_task_doc *d = b->doc;
    kvz_task_question *grown = realloc(d->questions, (size_t)(d->n_questions + 1) * sizeof *grown);
    char *q = strdup(question), *a = strdup(answer);
    if (!grown || !q || !a) {
        free(q), free(a);
        if (grown)
            d->questions = grown;
        b->failed = 1;
        return;
    }
    d->questions = grown;
    d->questions[d->n_questions++] = (kvz_task_question){q, a};
}

static int32_t words_of(const kvz_buffer *t)
{
    int32_t n = 0;
    for (size_t i = 0; i < t->len; i++)
        n += t->data[i] == ' ';
    return n;
}

/* Filler sentences, a paragraph break every few, until `words` words. */
static void filler(builder *b, rng *r, int32_t words)
{
    int32_t start = words_of(&b->text), k = 0;
    while (words_of(&b->text) - start < words) {
        add(b, "%s%s", PICK(r, FILLER), ++k % 5 == 0 ? "\n\n" : " ");
    }
}

static void make_passkey(builder *b, rng *r, int32_t words)
{
    char key[16], q[64];
    snprintf(key, sizeof key, "%u", 10000 + below(r, 90000));
    int32_t before = (int32_t)((0.1 + 0.8 * (double)below(r, 1000) / 1000.0) * words);
    add(b, "There is a pass key hidden in the following text. Find it and remember it.\n\n");
    filler(b, r, before);
    add(b, "The pass key is %s. Remember it. %s is the pass key. ", key, key);
    filler(b, r, words - before);
    snprintf(q, sizeof q, "What is the pass key?");
    ask(b, q, key);
}

static void make_needle(builder *b, rng *r, int32_t words)
{
    enum { NEEDLES = 4 };
    uint32_t first = below(r, (uint32_t)COUNT(NEEDLE_KEY));
    add(b, "Some special magic numbers are hidden in the following text.\n\n");
    for (int i = 0; i < NEEDLES; i++) {
        const char *word = NEEDLE_KEY[(first + (uint32_t)i * 5) % COUNT(NEEDLE_KEY)];
        char value[16], q[128];
        snprintf(value, sizeof value, "%u", 10000 + below(r, 90000));
        filler(b, r, words / (NEEDLES + 1));
        add(b, "The special magic number for %s is %s. ", word, value);
        snprintf(q, sizeof q, "What is the special magic number for %s?", word);
        ask(b, q, value);
    }
    filler(b, r, words / (NEEDLES + 1));
}

static void make_facts(builder *b, rng *r, int32_t words)
{
    enum { QUESTIONS = 4 };
    int32_t people = words / 28 < 4 ? 4 : words / 28;
    if (people > (int32_t)COUNT(FIRST))
        people = (int32_t)COUNT(FIRST);
    /* distinct first names, so each question names exactly one person */
    uint32_t order[COUNT(FIRST)];
    for (uint32_t i = 0; i < COUNT(FIRST); i++)
        order[i] = i;
    for (uint32_t i = COUNT(FIRST) - 1; i > 0; i--) {
        uint32_t j = below(r, i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    typedef struct person {
        char name[48];
        const char *city, *job, *pet, *pet_name;
        char year[8];
    } person;
    person ps[COUNT(FIRST)];
    add(b, "Residents of the Fenwick housing cooperative\n\n");
    for (int32_t i = 0; i < people; i++) {
        person *p = &ps[i];
        snprintf(p->name, sizeof p->name, "%s %s", FIRST[order[i]], PICK(r, LAST));
        p->city = PICK(r, CITY), p->job = PICK(r, JOB), p->pet = PICK(r, PET), p->pet_name = PICK(r, PET_NAME);
        snprintf(p->year, sizeof p->year, "%u", 1940 + below(r, 60));
        add(b, "%s was born in %s, grew up in %s and works as a %s. %s has a %s named %s.\n\n", p->name,
            p->year, p->city, p->job, FIRST[order[i]], p->pet, p->pet_name);
    }
    for (int qi = 0; qi < QUESTIONS; qi++) {
        const person *p = &ps[below(r, (uint32_t)people)];
        char q[160];
        switch (qi % 4) {
        case 0: snprintf(q, sizeof q, "In which city did %s grow up?", p->name); ask(b, q, p->city); break;
        case 1: snprintf(q, sizeof q, "What does %s work as?", p->name); ask(b, q, p->job); break;
        case 2: snprintf(q, sizeof q, "In which year was %s born?", p->name); ask(b, q, p->year); break;
        default: snprintf(q, sizeof q, "What is the name of %s's %s?", p->name, p->pet); ask(b, q, p->pet_name);
        }
    }
}

static void make_repeat(builder *b, rng *r, int32_t words)
{
    add(b, "In the town of %s lived %s %s, who owned %s.", PICK(r, STORY_PLACE), PICK(r, FIRST), PICK(r, LAST),
        PICK(r, STORY_THING));
    while (words_of(&b->text) < words) {
        switch (below(r, 4)) {
        case 0: add(b, " One morning %s found %s by the %s road.", PICK(r, FIRST), PICK(r, STORY_THING),
                    below(r, 2) ? "north" : "river"); break;
        case 1: add(b, " %s traded it for %s and a ride to %s.", PICK(r, FIRST), PICK(r, STORY_THING),
                    PICK(r, CITY)); break;
        case 2: add(b, " The %s from %s said it was worth %u coins.", PICK(r, JOB), PICK(r, CITY),
                    2 + below(r, 40)); break;
        default: add(b, " By evening %s had given it to a %s named %s.", PICK(r, FIRST), PICK(r, PET),
                     PICK(r, PET_NAME));
        }
    }
    add(b, "\n");
}

int kvz_task_make(kvz_task_kind kind, int32_t index, uint64_t seed, int32_t target_words, kvz_task_doc *out)
{
    memset(out, 0, sizeof *out);
    if (kind >= KVZ_TASK_COUNT || target_words < 16)
        return kvz_errorf(KVZ_ERR_ARG, "task %d with %d words: unknown task or too short", kind, target_words);
    rng r = {seed ^ ((uint64_t)kind << 40) ^ ((uint64_t)index * 0x100000001B3ull)};
    builder b = {.doc = out};
    out->kind = kind;
    snprintf(out->name, sizeof out->name, "%s-%d", kvz_task_name(kind), index);
    switch (kind) {
    case KVZ_TASK_PASSKEY: make_passkey(&b, &r, target_words); break;
    case KVZ_TASK_NEEDLE: make_needle(&b, &r, target_words); break;
    case KVZ_TASK_FACTS: make_facts(&b, &r, target_words); break;
    default: make_repeat(&b, &r, target_words); break;
    }
    kvz_buffer_append(&b.text, "", 1); /* NUL */
    if (b.failed || b.text.failed) {
        kvz_buffer_free(&b.text);
        kvz_task_doc_free(out);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    out->text = (char *)b.text.data;
    out->len = b.text.len - 1;
    if (kind == KVZ_TASK_REPEAT)
        ask(&b, "Repeat the previous context exactly, word for word.", out->text);
    if (b.failed) {
        kvz_task_doc_free(out);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    return KVZ_OK;
}

void kvz_task_doc_free(kvz_task_doc *d)
{
    for (int32_t i = 0; i < d->n_questions; i++)
        free(d->questions[i].question), free(d->questions[i].answer);
    free(d->questions);
    free(d->text);
    memset(d, 0, sizeof *d);
}

/* Lower-case letters and digits only, keeping single spaces between words;
 * a space or comma between two digits goes. */
static char *fold(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c == ' ' || c == ',') && k > 0 && isdigit((unsigned char)o[k - 1]) && isdigit((unsigned char)s[i + 1]))
            continue;
        if (isalnum(c))
            o[k++] = (char)tolower(c);
        else if (k > 0 && o[k - 1] != ' ')
            o[k++] = ' ';
    }
    o[k] = '\0';
    return o;
}

int kvz_answer_matches(const char *answer, const char *expected)
{
    char *a = fold(answer), *e = fold(expected);
    int found = 0;
    size_t n = e ? strlen(e) : 0;
    /* whole words only: "1904" is not in "19045" */
    for (const char *at = a && n ? strstr(a, e) : NULL; at && !found; at = strstr(at + 1, e))
        found = (at == a || at[-1] == ' ') && (at[n] == '\0' || at[n] == ' ');
    free(a), free(e);
    return found;
}
