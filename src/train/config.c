/* Run and sweep configuration (see config.h). Loading runs in three steps so that every
 * error can name where a value came from and so that the recipe preset sits under every
 * explicit key whatever the order:
 *   1. collect (key, value, file, line) entries from the file (through libinih) and from
 *      the overrides, rejecting unknown and duplicate keys and malformed lines;
 *   2. apply the recipe preset, then every other entry in file-then-override order;
 *   3. check the rules that span keys and fill the defaults that depend on other keys.
 * Work happens on a copy, so a failed load leaves the caller's config untouched. */
#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "data/augment.h"
#include "model/model.h"

/* A config file is a few hundred bytes; anything larger than 1 MiB is the wrong file. */
enum { MAX_CONFIG_FILE_BYTES = 1 << 20 };
/* config_write splits long pattern lists over indented lines so that each line stays
 * well inside libinih's line limit (about 200 characters). */
enum { PATTERNS_PER_WRITTEN_LINE = 4 };
/* config_write splits a longer path over indented lines (before a '/'): each line then
 * stays within libinih's line limit (197 characters in Debian's build), so sweep.ini reads
 * back. */
enum { PATH_CHARACTERS_PER_WRITTEN_LINE = 120 };

/* ------------------------------------------------------------------------------------ */
/* The keys: one table drives parsing, messages and config_write.                       */

typedef enum value_kind {
    VALUE_INT,      /* int field within [min, max] */
    VALUE_SEED,     /* uint64_t field */
    VALUE_DOUBLE,   /* double field within min..max, each end open or closed */
    VALUE_BOOL,     /* int field, 0 or 1 */
    VALUE_AUGMENT,  /* int field, an augment_kind: a boolean (false, true = crop + flip) or shift */
    VALUE_NAME,     /* char array: a file-name-safe word (it becomes a directory name) */
    VALUE_PATH,     /* char array: any non-empty text */
    VALUE_WORD,     /* char array holding one of `choices` */
    VALUE_ENUM,     /* enum field; the index in `choices` is the enum value */
    VALUE_DECAY_AT, /* the lr_decay_at pair */
    VALUE_PATTERNS, /* the [sweep] patterns list */
} value_kind;

typedef struct key_spec {
    const char *section;
    const char *key;
    value_kind kind;
    size_t offset, size; /* of the field in config */
    double min, max;     /* VALUE_INT, VALUE_DOUBLE */
    bool min_open, max_open;
    const char *const *choices; /* VALUE_WORD, VALUE_ENUM; NULL-terminated */
    /* enum fields have no portable int view, so they go through these */
    void (*set_enum)(config *cfg, int choice);
    int (*get_enum)(const config *cfg);
} key_spec;

static const char *const device_choices[] = {"auto", "cpu", "cuda", NULL};
static const char *const precision_choices[] = {"fp32", "tf32", "bf16", NULL};
static const char *const conv_engine_choices[] = {"auto", "cudnn", "gemm", NULL};
static const char *const graph_choices[] = {"auto", "on", "off", NULL};
static const char *const dataset_choices[] = {"fashion-mnist", "cifar10", NULL};
/* For the enum keys the index of a choice is the enum's value. */
static const char *const pool_branch_choices[] = {"keras", "pytorch", NULL};
static const char *const recipe_choices[] = {"keras", "pytorch", NULL};
static const char *const l2_form_choices[] = {"kernels", "all", NULL};
static const char *const init_choices[] = {"glorot", "pytorch", NULL};

static void set_pool_branch(config *cfg, int choice) { cfg->pool_branch = (pool_branch_form)choice; }
static int get_pool_branch(const config *cfg) { return (int)cfg->pool_branch; }
static void set_recipe(config *cfg, int choice) { cfg->recipe = (recipe_kind)choice; }
static int get_recipe(const config *cfg) { return (int)cfg->recipe; }
static void set_l2_form(config *cfg, int choice) { cfg->l2_form = (l2_form)choice; }
static int get_l2_form(const config *cfg) { return (int)cfg->l2_form; }
static void set_init(config *cfg, int choice) { cfg->init = (init_form)choice; }
static int get_init(const config *cfg) { return (int)cfg->init; }

#define FIELD(member) .offset = offsetof(config, member), .size = sizeof(((config *)0)->member)
#define ENUM_FIELD(member) .set_enum = set_##member, .get_enum = get_##member
#define COUNT_FROM(lowest) .min = (lowest), .max = INT_MAX

static const key_spec key_table[] = {
    {.section = "run", .key = "name", .kind = VALUE_NAME, FIELD(name)},
    {.section = "run", .key = "seed", .kind = VALUE_SEED, FIELD(seed)},
    {.section = "run", .key = "device", .kind = VALUE_WORD, FIELD(device), .choices = device_choices},
    {.section = "run", .key = "precision", .kind = VALUE_WORD, FIELD(precision),
     .choices = precision_choices},
    {.section = "run", .key = "conv", .kind = VALUE_WORD, FIELD(conv_engine),
     .choices = conv_engine_choices},
    {.section = "run", .key = "deterministic", .kind = VALUE_BOOL, FIELD(deterministic)},
    {.section = "run", .key = "graph", .kind = VALUE_WORD, FIELD(graph), .choices = graph_choices},
    /* far above any node's cores: OpenMP runtimes crash or stall on hundreds of thousands */
    {.section = "run", .key = "threads", .kind = VALUE_INT, FIELD(threads), .min = 0, .max = 4096},
    {.section = "run", .key = "commit_minutes", .kind = VALUE_DOUBLE, FIELD(commit_minutes), .min = 0,
     .max = 1e6},
    {.section = "run", .key = "output", .kind = VALUE_PATH, FIELD(output)},

    {.section = "data", .key = "dataset", .kind = VALUE_WORD, FIELD(dataset), .choices = dataset_choices},
    {.section = "data", .key = "dir", .kind = VALUE_PATH, FIELD(data_dir)},
    {.section = "data", .key = "train_limit", .kind = VALUE_INT, FIELD(train_limit), COUNT_FROM(0)},
    {.section = "data", .key = "val_limit", .kind = VALUE_INT, FIELD(val_limit), COUNT_FROM(0)},
    {.section = "data", .key = "augment", .kind = VALUE_AUGMENT, FIELD(augment)},

    {.section = "model", .key = "mode", .kind = VALUE_INT, FIELD(mode), .min = 1, .max = 3},
    {.section = "model", .key = "alpha", .kind = VALUE_INT, FIELD(alpha), .min = 1, .max = 1024},
    {.section = "model", .key = "pool_branch", .kind = VALUE_ENUM, .choices = pool_branch_choices,
     ENUM_FIELD(pool_branch)},

    {.section = "train", .key = "recipe", .kind = VALUE_ENUM, .choices = recipe_choices, ENUM_FIELD(recipe)},
    /* limits far above any real setting, so that a typo fails here rather than as an
     * allocation of terabytes */
    {.section = "train", .key = "epochs", .kind = VALUE_INT, FIELD(epochs), .min = 1, .max = 100000},
    {.section = "train", .key = "batch", .kind = VALUE_INT, FIELD(batch), .min = 1, .max = 1 << 16},
    {.section = "train", .key = "val_batch", .kind = VALUE_INT, FIELD(val_batch), .min = 1,
     .max = 1 << 16},
    {.section = "train", .key = "lr", .kind = VALUE_DOUBLE, FIELD(lr), .min = 0, .min_open = true,
     .max = INFINITY},
    {.section = "train", .key = "lr_decay_at", .kind = VALUE_DECAY_AT, FIELD(lr_decay_at)},
    {.section = "train", .key = "lr_decay_factor", .kind = VALUE_DOUBLE, FIELD(lr_decay_factor), .min = 0,
     .min_open = true, .max = INFINITY},
    {.section = "train", .key = "l2", .kind = VALUE_DOUBLE, FIELD(l2), .min = 0, .max = INFINITY},
    {.section = "train", .key = "l2_form", .kind = VALUE_ENUM, .choices = l2_form_choices, ENUM_FIELD(l2_form)},
    {.section = "train", .key = "init", .kind = VALUE_ENUM, .choices = init_choices, ENUM_FIELD(init)},
    {.section = "train", .key = "bn_eps", .kind = VALUE_DOUBLE, FIELD(bn_eps), .min = 0, .min_open = true,
     .max = INFINITY},
    {.section = "train", .key = "bn_momentum", .kind = VALUE_DOUBLE, FIELD(bn_momentum), .min = 0, .max = 1,
     .max_open = true},
    {.section = "train", .key = "adam_beta1", .kind = VALUE_DOUBLE, FIELD(adam_beta1), .min = 0, .max = 1,
     .max_open = true},
    {.section = "train", .key = "adam_beta2", .kind = VALUE_DOUBLE, FIELD(adam_beta2), .min = 0, .max = 1,
     .max_open = true},
    {.section = "train", .key = "adam_eps", .kind = VALUE_DOUBLE, FIELD(adam_eps), .min = 0, .min_open = true,
     .max = INFINITY},
    {.section = "train", .key = "progress_every", .kind = VALUE_INT, FIELD(progress_every), COUNT_FROM(0)},

    {.section = "sweep", .key = "patterns", .kind = VALUE_PATTERNS, FIELD(patterns)},
    {.section = "sweep", .key = "repeats", .kind = VALUE_INT, FIELD(repeats), .min = 1, .max = 10000},
    {.section = "sweep", .key = "ranks_per_run", .kind = VALUE_INT, FIELD(ranks_per_run), COUNT_FROM(1)},
};
enum { KEY_COUNT = sizeof key_table / sizeof key_table[0] };

static const char *const section_names[] = {"run", "data", "model", "train", "sweep"};
enum { SECTION_COUNT = sizeof section_names / sizeof section_names[0] };

static const key_spec *find_key(const char *section, const char *key) {
    for (int i = 0; i < KEY_COUNT; i++)
        if (strcmp(key_table[i].section, section) == 0 && strcmp(key_table[i].key, key) == 0)
            return &key_table[i];
    return NULL;
}

static bool is_known_section(const char *section) {
    for (int i = 0; i < SECTION_COUNT; i++)
        if (strcmp(section_names[i], section) == 0) return true;
    return false;
}

static int key_index(const key_spec *spec) { return (int)(spec - key_table); }

static int *int_field(config *cfg, const key_spec *spec) { return (int *)((char *)cfg + spec->offset); }
static const int *const_int_field(const config *cfg, const key_spec *spec) {
    return (const int *)((const char *)cfg + spec->offset);
}
static double *double_field(config *cfg, const key_spec *spec) { return (double *)((char *)cfg + spec->offset); }
static const double *const_double_field(const config *cfg, const key_spec *spec) {
    return (const double *)((const char *)cfg + spec->offset);
}
static char *string_field(config *cfg, const key_spec *spec) { return (char *)cfg + spec->offset; }
static const char *const_string_field(const config *cfg, const key_spec *spec) {
    return (const char *)cfg + spec->offset;
}

/* ------------------------------------------------------------------------------------ */
/* Defaults and the recipe presets.                                                      */

static void apply_recipe_preset(config *cfg, recipe_kind recipe) {
    cfg->recipe = recipe;
    if (recipe == RECIPE_PYTORCH) {
        cfg->bn_eps = 1e-5;
        cfg->bn_momentum = 0.9; /* Keras convention: PyTorch's momentum 0.1 */
        cfg->adam_eps = 1e-8;
        cfg->l2_form = L2_FORM_ALL;
        cfg->init = INIT_PYTORCH;
        cfg->augment = AUGMENT_CROP_FLIP;
    } else {
        cfg->bn_eps = 1e-3;
        cfg->bn_momentum = 0.99;
        cfg->adam_eps = 1e-7;
        cfg->l2_form = L2_FORM_KERNELS;
        cfg->init = INIT_GLOROT;
        cfg->augment = AUGMENT_SHIFT;
    }
}

static const char *default_data_dir(const char *dataset) {
    return strcmp(dataset, "cifar10") == 0 ? "data/cifar-10-batches-bin" : "/usr/share/datasets/fashion-mnist";
}

void config_defaults(config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "run");
    cfg->seed = 1;
    snprintf(cfg->device, sizeof cfg->device, "auto");
    snprintf(cfg->precision, sizeof cfg->precision, "fp32");
    snprintf(cfg->conv_engine, sizeof cfg->conv_engine, "auto");
    snprintf(cfg->graph, sizeof cfg->graph, "auto");
    cfg->threads = 0;
    cfg->commit_minutes = CONFIG_DEFAULT_COMMIT_MINUTES;
    snprintf(cfg->output, sizeof cfg->output, "results/%s", cfg->name);

    snprintf(cfg->dataset, sizeof cfg->dataset, "fashion-mnist");
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", default_data_dir(cfg->dataset));
    cfg->train_limit = 0;
    cfg->val_limit = 0;

    cfg->mode = 1;
    cfg->alpha = 1;
    cfg->pool_branch = POOL_BRANCH_KERAS;

    cfg->epochs = 100;
    cfg->batch = 128;
    cfg->val_batch = 100;
    cfg->lr = 1e-3;
    cfg->lr_decay_at[0] = 0.5;
    cfg->lr_decay_at[1] = 0.85;
    cfg->lr_decay_factor = 0.1;
    cfg->l2 = 1e-3;
    apply_recipe_preset(cfg, RECIPE_KERAS);
    cfg->adam_beta1 = 0.9;
    cfg->adam_beta2 = 0.999;
    cfg->progress_every = 0;

    /* The study's five patterns (SPEC section 2). */
    static const pattern_spec study_patterns[] = {
        {"A", 1, 1}, {"B", 2, 2}, {"C", 2, 4}, {"D", 3, 2}, {"E", 3, 4},
    };
    cfg->pattern_count = (int)(sizeof study_patterns / sizeof study_patterns[0]);
    memcpy(cfg->patterns, study_patterns, sizeof study_patterns);
    cfg->repeats = 1;
    cfg->ranks_per_run = 1;
    cfg->text[0] = '\0';
}

/* ------------------------------------------------------------------------------------ */
/* Small text helpers.                                                                   */

static char *copy_text(const char *text, size_t length) {
    char *copy = bneck_malloc(length + 1);
    memcpy(copy, text, length);
    copy[length] = '\0';
    return copy;
}

/* Narrows the span (start, length) to exclude surrounding white space. */
static void trim_span(const char **start, size_t *length) {
    while (*length > 0 && isspace((unsigned char)**start)) {
        (*start)++;
        (*length)--;
    }
    while (*length > 0 && isspace((unsigned char)(*start)[*length - 1])) (*length)--;
}

static bool equal_ignoring_case(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* A name becomes a directory and an HDF5 group name, so it keeps to a safe alphabet and
 * may not start with '.' (which also rules out "." and ".."). */
static bool is_safe_name(const char *text, size_t length, size_t capacity) {
    if (length == 0 || length >= capacity || text[0] == '.') return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

/* strtol with the whole text consumed and no overflow. */
static bool parse_long(const char *text, long *out) {
    if (*text == '\0') return false;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE) return false;
    *out = value;
    return true;
}

/* strtod with the whole text consumed, finite, no overflow or underflow. */
static bool parse_double(const char *text, double *out) {
    if (*text == '\0') return false;
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(value)) return false;
    *out = value;
    return true;
}

/* Digits only: strtoull itself would wrap "-1" to 2^64-1. */
static bool parse_seed(const char *text, uint64_t *out) {
    if (*text == '\0') return false;
    for (const char *c = text; *c; c++)
        if (!isdigit((unsigned char)*c)) return false;
    errno = 0;
    unsigned long long value = strtoull(text, NULL, 10);
    if (errno == ERANGE) return false; /* unsigned long long is 64 bits here */
    *out = (uint64_t)value;
    return true;
}

static bool parse_bool(const char *text, int *out) {
    static const char *const true_words[] = {"true", "1", "yes", "on"};
    static const char *const false_words[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof true_words / sizeof true_words[0]; i++) {
        if (equal_ignoring_case(text, true_words[i])) return *out = 1, true;
        if (equal_ignoring_case(text, false_words[i])) return *out = 0, true;
    }
    return false;
}

static int find_choice(const char *const *choices, const char *text) {
    for (int i = 0; choices[i]; i++)
        if (equal_ignoring_case(text, choices[i])) return i;
    return -1;
}

static bool in_range(double value, const key_spec *spec) {
    bool above_min = spec->min_open ? value > spec->min : value >= spec->min;
    bool below_max = spec->max_open ? value < spec->max : value <= spec->max;
    return above_min && below_max;
}

/* Accumulates text into a fixed buffer; remembers when something did not fit. */
typedef struct text_builder {
    char *out;
    size_t capacity, length;
    bool overflow;
} text_builder;

static void builder_append(text_builder *builder, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void builder_append(text_builder *builder, const char *format, ...) {
    if (builder->overflow) return;
    size_t room = builder->capacity - builder->length;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(builder->out + builder->length, room, format, args);
    va_end(args);
    if (written < 0 || (size_t)written >= room) {
        builder->overflow = true;
        builder->length = builder->capacity - 1; /* vsnprintf kept what fit */
    } else {
        builder->length += (size_t)written;
    }
}

/* Shortest decimal that reads back as the same double, so written configs are exact
 * and still readable ("0.001", not "0.0010000000000000000208"). */
static void format_double(double value, char *out, size_t capacity) {
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(out, capacity, "%.*g", digits, value);
        if (strtod(out, NULL) == value) return;
    }
}

/* Writes "a, b, c" for a NULL-terminated list. */
static void join_words(const char *const *words, char *out, size_t capacity) {
    text_builder builder = {out, capacity, 0, false};
    out[0] = '\0';
    for (int i = 0; words[i]; i++) builder_append(&builder, "%s%s", i ? ", " : "", words[i]);
}

static void describe_bound(text_builder *builder, const char *relation, double bound) {
    char number[32];
    format_double(bound, number, sizeof number);
    builder_append(builder, "%s %s", relation, number);
}

/* The "expected ..." part of a message for a key's values. */
static void describe_expected(const key_spec *spec, char *out, size_t capacity) {
    text_builder builder = {out, capacity, 0, false};
    out[0] = '\0';
    switch (spec->kind) {
    case VALUE_INT:
        if (spec->max == INT_MAX)
            builder_append(&builder, "an integer >= %.0f", spec->min);
        else
            builder_append(&builder, "an integer from %.0f to %.0f", spec->min, spec->max);
        break;
    case VALUE_SEED:
        builder_append(&builder, "an integer from 0 to %" PRIu64, UINT64_MAX);
        break;
    case VALUE_DOUBLE:
        builder_append(&builder, "a number ");
        describe_bound(&builder, spec->min_open ? ">" : ">=", spec->min);
        if (isfinite(spec->max)) {
            builder_append(&builder, " and ");
            describe_bound(&builder, spec->max_open ? "<" : "<=", spec->max);
        }
        break;
    case VALUE_BOOL:
        builder_append(&builder, "true/false, yes/no, on/off or 1/0");
        break;
    case VALUE_AUGMENT:
        builder_append(&builder, "shift (the Keras script's shifts of up to 20 %%), crop-flip or "
                                 "true (the PyTorch script's crop and flip), or none/false");
        break;
    case VALUE_NAME:
        builder_append(&builder, "a name of 1 to %zu letters, digits, '.', '_' or '-', not starting with '.'",
                       spec->size - 1);
        break;
    case VALUE_PATH:
        builder_append(&builder, "a non-empty path of at most %zu characters", spec->size - 1);
        break;
    case VALUE_WORD:
    case VALUE_ENUM: {
        char choices[128];
        join_words(spec->choices, choices, sizeof choices);
        builder_append(&builder, "one of %s", choices);
        break;
    }
    case VALUE_DECAY_AT:
        builder_append(&builder, "two fractions 'a, b' of the epochs with 0 < a <= b <= 1");
        break;
    case VALUE_PATTERNS:
        builder_append(&builder, "a list of name:mode:alpha (e.g. A:1:1, B:2:2)");
        break;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Entries: one (key, value) with where it came from.                                    */

typedef struct config_entry {
    const key_spec *spec;
    char *value;          /* owned */
    const char *path;     /* the file it came from; NULL for an override */
    int line;             /* its line in path */
    const char *override; /* the override as the user gave it; NULL for a file entry */
} config_entry;

typedef struct entry_list {
    config_entry *items;
    int count, capacity;
} entry_list;

static config_entry *add_entry(entry_list *entries) {
    if (entries->count == entries->capacity) {
        int capacity = entries->capacity ? 2 * entries->capacity : 32;
        config_entry *items = realloc(entries->items, (size_t)capacity * sizeof *items);
        if (!items) BNECK_FAIL("out of memory growing the config entry list to %d", capacity);
        entries->items = items;
        entries->capacity = capacity;
    }
    config_entry *entry = &entries->items[entries->count++];
    memset(entry, 0, sizeof *entry);
    return entry;
}

static void free_entries(entry_list *entries) {
    for (int i = 0; i < entries->count; i++) free(entries->items[i].value);
    free(entries->items);
}

/* "file:line" or "command line: override '...'", the start of every value message. */
static void describe_origin(const config_entry *entry, char *out, size_t capacity) {
    if (entry->path)
        snprintf(out, capacity, "%s:%d", entry->path, entry->line);
    else
        snprintf(out, capacity, "command line: override '%.200s'", entry->override);
}

/* "<origin>: [section] key: expected <what>, got '<shown>'" */
static int value_error(bneck_error *err, const config_entry *entry, const char *expected, const char *shown,
                       size_t shown_length) {
    char origin[768];
    describe_origin(entry, origin, sizeof origin);
    int length = shown_length > 200 ? 200 : (int)shown_length;
    return bneck_error_set(err, "%s: [%s] %s: expected %s, got '%.*s'", origin, entry->spec->section,
                           entry->spec->key, expected, length, shown);
}

static int expected_value_error(bneck_error *err, const config_entry *entry) {
    char expected[256];
    describe_expected(entry->spec, expected, sizeof expected);
    return value_error(err, entry, expected, entry->value, strlen(entry->value));
}

/* Message for a (section, key) that is not in the table. */
static int unknown_key_error(bneck_error *err, const char *origin, const char *section, const char *key) {
    char accepted[512];
    text_builder builder = {accepted, sizeof accepted, 0, false};
    accepted[0] = '\0';
    if (!is_known_section(section)) {
        for (int i = 0; i < SECTION_COUNT; i++) builder_append(&builder, "%s[%s]", i ? ", " : "", section_names[i]);
        return bneck_error_set(err, "%s: [%.64s] %.64s: unknown section [%.64s]; accepted sections: %s", origin,
                               section, key, section, accepted);
    }
    for (int i = 0; i < KEY_COUNT; i++)
        if (strcmp(key_table[i].section, section) == 0)
            builder_append(&builder, "%s%s", builder.length ? ", " : "", key_table[i].key);
    return bneck_error_set(err, "%s: [%s] %.64s: unknown key; accepted keys in [%s]: %s", origin, section, key,
                           section, accepted);
}

/* ------------------------------------------------------------------------------------ */
/* Step 1a: the file, through libinih.                                                   */

/* libinih's handler gets no line number, so it reads the file through this state: the
 * reader hands libinih one line at a time and counts them, so the handler, called
 * while libinih works on that line, knows its number. */
typedef struct file_parse {
    const char *path;
    const char *next;      /* first character of the file not yet handed to libinih */
    int line;              /* number of the line last handed to libinih */
    int longest_line;      /* what fits libinih's line buffer */
    int too_long_line;     /* first line over that limit; 0 if none */
    bool key_pending;      /* libinih has a previous key in this section (its "prev_name") */
    bool line_continues;   /* the current line is an indented continuation of that key */
    entry_list *entries;
    int first_entry;       /* this file's entries are entries->items[first_entry..] */
    int error_line;        /* first problem the handler found; 0 if none */
    bneck_error error;
} file_parse;

/* Mirrors libinih's own reading of a line: an indented line right after a key (no
 * section in between) continues that key's value rather than starting a new key. */
static void classify_line(file_parse *parse, const char *line, size_t length) {
    size_t at = 0;
    if (parse->line == 1 && length >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) at = 3;
    size_t text_start = at;
    while (at < length && isspace((unsigned char)line[at])) at++;
    bool indented = at > text_start;
    char first = at < length ? line[at] : '\0';
    parse->line_continues = false;
    if (first == '\0' || first == ';' || first == '#') return;
    if (parse->key_pending && indented) {
        parse->line_continues = true;
    } else if (first == '[') {
        if (memchr(line + at, ']', length - at)) parse->key_pending = false;
    } else if (memchr(line + at, '=', length - at) || memchr(line + at, ':', length - at)) {
        parse->key_pending = true;
    }
}

static char *read_next_line(char *buffer, int capacity, void *stream) {
    file_parse *parse = stream;
    if (*parse->next == '\0' || parse->too_long_line) return NULL;
    const char *newline = strchr(parse->next, '\n');
    size_t length = newline ? (size_t)(newline - parse->next) : strlen(parse->next);
    size_t content = length;
    if (content > 0 && parse->next[content - 1] == '\r') content--;
    parse->line++;
    /* libinih needs room for "\r\n\0" after the text; a longer line it would silently
     * split in two, so stop and report it instead. */
    parse->longest_line = capacity - 3;
    if (capacity < 3 || content > (size_t)capacity - 3) {
        parse->too_long_line = parse->line;
        return NULL;
    }
    classify_line(parse, parse->next, content);
    memcpy(buffer, parse->next, content);
    buffer[content] = '\n';
    buffer[content + 1] = '\0';
    parse->next += newline ? length + 1 : length;
    return buffer;
}

static void record_parse_error(file_parse *parse, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void record_parse_error(file_parse *parse, const char *format, ...) {
    parse->error_line = parse->line;
    va_list args;
    va_start(args, format);
    vsnprintf(parse->error.message, sizeof parse->error.message, format, args);
    va_end(args);
}

static int collect_file_entry(void *user, const char *section, const char *name, const char *value) {
    file_parse *parse = user;
    if (parse->error_line) return 1; /* only the first problem is reported */
    entry_list *entries = parse->entries;
    config_entry *previous = entries->count > parse->first_entry ? &entries->items[entries->count - 1] : NULL;

    if (parse->line_continues && previous && strcmp(previous->spec->key, name) == 0) {
        const value_kind kind = previous->spec->kind;
        /* a path goes on only with a piece that starts a directory name ('/'): an indented
         * key after a path (an indented section) must not be read as part of it */
        if (kind != VALUE_PATTERNS && !(kind == VALUE_PATH && value[0] == '/')) {
            record_parse_error(parse,
                               "%s:%d: [%s] %s: this indented line continues the value of %s from line %d; "
                               "only [sweep] patterns, and paths on lines that begin with '/', may span "
                               "lines (remove the indentation)",
                               parse->path, parse->line, previous->spec->section, name, name, previous->line);
            return 1;
        }
        /* libinih 55 leaves inline comments on continuation lines; drop them the way it
         * does on key lines (a ';' after white space). A list is joined with a newline,
         * which the patterns parser accepts only after a comma; a path's pieces are joined
         * as they are (a long path written by config_write). */
        size_t added = strlen(value);
        for (size_t i = 1; i < added; i++) {
            if (value[i] == ';' && isspace((unsigned char)value[i - 1])) {
                added = i;
                break;
            }
        }
        while (added > 0 && isspace((unsigned char)value[added - 1])) added--;
        size_t old_length = strlen(previous->value);
        const size_t separator = kind == VALUE_PATTERNS ? 1 : 0;
        char *joined = bneck_malloc(old_length + separator + added + 1);
        memcpy(joined, previous->value, old_length);
        if (separator) joined[old_length] = '\n';
        memcpy(joined + old_length + separator, value, added);
        joined[old_length + separator + added] = '\0';
        free(previous->value);
        previous->value = joined;
        return 1;
    }

    if (section[0] == '\0') {
        record_parse_error(parse, "%s:%d: %s: key outside any section; expected a [section] line before it",
                           parse->path, parse->line, name);
        return 1;
    }
    const key_spec *spec = find_key(section, name);
    if (!spec) {
        char origin[600];
        snprintf(origin, sizeof origin, "%s:%d", parse->path, parse->line);
        unknown_key_error(&parse->error, origin, section, name);
        parse->error_line = parse->line;
        return 1;
    }
    for (int i = parse->first_entry; i < entries->count; i++) {
        if (entries->items[i].spec == spec) {
            record_parse_error(parse, "%s:%d: [%s] %s: duplicate key (first set at line %d)", parse->path,
                               parse->line, section, name, entries->items[i].line);
            return 1;
        }
    }
    config_entry *entry = add_entry(entries);
    entry->spec = spec;
    entry->value = copy_text(value, strlen(value));
    entry->path = parse->path;
    entry->line = parse->line;
    return 1;
}

/* The text of line `number` (1-based), for syntax error messages. */
static void find_line(const char *text, int number, const char **start, int *length) {
    for (int line = 1; line < number && *text; line++) {
        const char *newline = strchr(text, '\n');
        text = newline ? newline + 1 : text + strlen(text);
    }
    size_t span = strcspn(text, "\r\n");
    *start = text;
    *length = span > 120 ? 120 : (int)span;
}

static int read_config_file(const char *path, char **text_out, bneck_error *err) {
    /* O_NONBLOCK: a FIFO in the config's place must reach the regular-file check, not hang
     * in open() waiting for a writer (a sweep's ranks each read the file, as only a regular
     * file allows; a device such as /dev/null would read as an empty config: the defaults) */
    const int descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (descriptor < 0) return bneck_error_set(err, "%s: cannot open config file: %s", path, strerror(errno));
    struct stat info;
    if (fstat(descriptor, &info) != 0) {
        const int why = errno;
        close(descriptor);
        return bneck_error_set(err, "%s: cannot read config file: %s", path, strerror(why));
    }
    if (!S_ISREG(info.st_mode)) {
        close(descriptor);
        return bneck_error_set(err, "%s: not a regular file (%s); expected a config file", path,
                               S_ISDIR(info.st_mode)    ? "a directory"
                               : S_ISFIFO(info.st_mode) ? "a FIFO"
                                                        : "a device or socket");
    }
    FILE *file = fdopen(descriptor, "rb");
    if (!file) {
        const int why = errno;
        close(descriptor);
        return bneck_error_set(err, "%s: cannot open config file: %s", path, strerror(why));
    }
    /* The buffer grows to at most the limit plus one byte plus the terminator: reading one
     * byte past the limit is how a file of exactly the limit is told from a larger one. */
    const size_t most_capacity = (size_t)MAX_CONFIG_FILE_BYTES + 2;
    size_t capacity = 4096, length = 0;
    char *text = bneck_malloc(capacity);
    for (;;) {
        if (length > MAX_CONFIG_FILE_BYTES) {
            fclose(file);
            free(text);
            return bneck_error_set(err, "%s: config file is larger than 1 MiB (%d bytes); is "
                                   "it the right file?", path, MAX_CONFIG_FILE_BYTES);
        }
        if (length + 1 == capacity) {
            capacity = capacity * 2 < most_capacity ? capacity * 2 : most_capacity;
            char *grown = realloc(text, capacity);
            if (!grown) BNECK_FAIL("out of memory reading %s", path);
            text = grown;
        }
        size_t got = fread(text + length, 1, capacity - 1 - length, file);
        length += got;
        if (got == 0) break;
    }
    int read_errno = errno;
    bool failed = ferror(file) != 0;
    fclose(file);
    if (failed) {
        free(text);
        return bneck_error_set(err, "%s: cannot read config file: %s", path, strerror(read_errno));
    }
    text[length] = '\0';
    const char *nul = memchr(text, '\0', length);
    if (nul) {
        int line = 1;
        for (const char *c = text; c < nul; c++) line += *c == '\n';
        free(text);
        return bneck_error_set(err, "%s:%d: config file contains a NUL byte; is it a text file?", path, line);
    }
    *text_out = text;
    return 0;
}

static int collect_file_entries(const char *path, const char *text, entry_list *entries, bneck_error *err) {
    file_parse parse = {.path = path, .next = text, .entries = entries, .first_entry = entries->count};
    int result = ini_parse_stream(read_next_line, &parse, collect_file_entry, &parse);
    if (result < 0) BNECK_FAIL("libinih failed on %s (code %d: out of memory)", path, result);

    /* Report the earliest of: libinih's first syntax error, the handler's first problem,
     * a line too long (parsing stopped there, so it is the last line read). */
    int syntax_line = result;
    if (syntax_line && (!parse.error_line || syntax_line < parse.error_line)) {
        const char *line_text;
        int line_length;
        find_line(text, syntax_line, &line_text, &line_length);
        return bneck_error_set(err, "%s:%d: syntax error: expected '[section]' or 'key = value', got '%.*s'",
                               path, syntax_line, line_length, line_text);
    }
    if (parse.error_line) return bneck_error_set(err, "%s", parse.error.message);
    if (parse.too_long_line)
        return bneck_error_set(err,
                               "%s:%d: line is longer than %d characters (libinih's limit); shorten it "
                               "(a [sweep] patterns list or a path may continue on indented "
                               "lines; a path's pieces are joined as they are)",
                               path, parse.too_long_line, parse.longest_line);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Step 1b: overrides "section.key=value" or "--section.key=value".                      */

/* An override's section, key and value, each trimmed; -1 when it has no "section.key=". */
typedef struct override_parts {
    const char *section_start, *key_start, *value_start;
    size_t section_length, key_length, value_length;
} override_parts;

static int split_override(const char *override, override_parts *parts) {
    const char *text = strncmp(override, "--", 2) == 0 ? override + 2 : override;
    const char *equals = strchr(text, '=');
    const char *dot = equals ? memchr(text, '.', (size_t)(equals - text)) : NULL;
    if (!equals || !dot) return -1;
    *parts = (override_parts){text, dot + 1, equals + 1, (size_t)(dot - text),
                              (size_t)(equals - dot - 1), strlen(equals + 1)};
    trim_span(&parts->section_start, &parts->section_length);
    trim_span(&parts->key_start, &parts->key_length);
    trim_span(&parts->value_start, &parts->value_length);
    return 0;
}

config_argument config_argument_kind(const char *argument) {
    override_parts parts;
    const char *equals = strchr(argument, '=');
    /* a '/' before the '=' makes it a path (results.v2/run=2.ini), never section.key */
    if (equals && memchr(argument, '/', (size_t)(equals - argument))) return CONFIG_ARGUMENT_FILE;
    if (split_override(argument, &parts) == 0) return CONFIG_ARGUMENT_OVERRIDE;
    if (argument[0] == '-') return CONFIG_ARGUMENT_OPTION;
    /* "epochs=3" is a mistyped override (its message shows the form), unless it is a file */
    if (equals && access(argument, F_OK) != 0) return CONFIG_ARGUMENT_OVERRIDE;
    return CONFIG_ARGUMENT_FILE;
}

int config_override_sets(const char *override, const char *section, const char *key) {
    override_parts parts;
    return split_override(override, &parts) == 0 && parts.section_length == strlen(section) &&
           !strncmp(parts.section_start, section, parts.section_length) &&
           parts.key_length == strlen(key) && !strncmp(parts.key_start, key, parts.key_length);
}

static int collect_override(const char *override, entry_list *entries, bneck_error *err) {
    for (const char *c = override; *c; c++)
        if (iscntrl((unsigned char)*c))
            return bneck_error_set(err, "command line: override '%.200s': contains a control character "
                                        "(a line break?)", override);
    override_parts p;
    if (split_override(override, &p) != 0)
        return bneck_error_set(err, "command line: override '%.200s': expected section.key=value "
                                    "(e.g. train.epochs=3)", override);
    char section[64], key[64];
    snprintf(section, sizeof section, "%.*s", (int)(p.section_length < 63 ? p.section_length : 63), p.section_start);
    snprintf(key, sizeof key, "%.*s", (int)(p.key_length < 63 ? p.key_length : 63), p.key_start);
    const key_spec *spec = (p.section_length < 63 && p.key_length < 63) ? find_key(section, key) : NULL;
    if (!spec) {
        char origin[300];
        snprintf(origin, sizeof origin, "command line: override '%.200s'", override);
        return unknown_key_error(err, origin, section, key);
    }
    config_entry *entry = add_entry(entries);
    entry->spec = spec;
    entry->value = copy_text(p.value_start, p.value_length);
    entry->override = override;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Step 2: values.                                                                       */

static int apply_decay_at(config *cfg, const config_entry *entry, bneck_error *err) {
    const char *comma = strchr(entry->value, ',');
    if (!comma) return expected_value_error(err, entry);
    char first[64], second[64];
    const char *first_start = entry->value, *second_start = comma + 1;
    size_t first_length = (size_t)(comma - entry->value), second_length = strlen(second_start);
    trim_span(&first_start, &first_length);
    trim_span(&second_start, &second_length);
    if (first_length >= sizeof first || second_length >= sizeof second) return expected_value_error(err, entry);
    snprintf(first, sizeof first, "%.*s", (int)first_length, first_start);
    snprintf(second, sizeof second, "%.*s", (int)second_length, second_start);
    double at[2];
    if (!parse_double(first, &at[0]) || !parse_double(second, &at[1])) return expected_value_error(err, entry);
    if (!(at[0] > 0 && at[0] <= at[1] && at[1] <= 1)) return expected_value_error(err, entry);
    cfg->lr_decay_at[0] = at[0];
    cfg->lr_decay_at[1] = at[1];
    return 0;
}

/* "alpha 1, 2 or 4 <where>": the alphas the model accepts, asked of the model itself. */
static void describe_valid_alphas(const char *where, char *out, size_t capacity) {
    int valid[16], count = 0;
    for (int alpha = 1; alpha <= 1024 && count < 16; alpha++)
        if (model_alpha_check(alpha, NULL) == 0) valid[count++] = alpha;
    text_builder builder = {out, capacity, 0, false};
    out[0] = '\0';
    builder_append(&builder, "alpha ");
    for (int i = 0; i < count; i++)
        builder_append(&builder, "%s%d", i == 0 ? "" : i == count - 1 ? " or " : ", ", valid[i]);
    builder_append(&builder, " %s (it splits every Inception module's branches)", where);
}

/* One "name:mode:alpha" item (already trimmed, length < sizeof item buffer). */
static int parse_pattern(const config_entry *entry, const char *item, size_t item_length, pattern_spec *out,
                         bneck_error *err) {
    char fields[3][48];
    const char *cursor = item, *item_end = item + item_length;
    for (int field = 0; field < 3; field++) {
        const char *colon = memchr(cursor, ':', (size_t)(item_end - cursor));
        bool last = field == 2;
        if ((colon == NULL) != last)
            return value_error(err, entry, "name:mode:alpha (e.g. B:2:2)", item, item_length);
        const char *field_end = last ? item_end : colon;
        const char *start = cursor;
        size_t length = (size_t)(field_end - cursor);
        trim_span(&start, &length);
        if (length >= sizeof fields[field])
            return value_error(err, entry, "name:mode:alpha (e.g. B:2:2)", item, item_length);
        snprintf(fields[field], sizeof fields[field], "%.*s", (int)length, start);
        cursor = field_end + 1;
    }
    if (!is_safe_name(fields[0], strlen(fields[0]), sizeof out->name))
        return value_error(err, entry,
                           "a pattern name of 1 to 15 letters, digits, '.', '_' or '-', not starting with '.'",
                           item, item_length);
    long mode, alpha;
    if (!parse_long(fields[1], &mode) || mode < 1 || mode > 3)
        return value_error(err, entry, "mode 1, 2 or 3 in name:mode:alpha", item, item_length);
    if (!parse_long(fields[2], &alpha) || alpha < 1 || alpha > 1024 ||
        model_alpha_check((int)alpha, NULL) != 0) {
        char expected[128];
        describe_valid_alphas("in name:mode:alpha", expected, sizeof expected);
        return value_error(err, entry, expected, item, item_length);
    }
    if (mode == 1 && alpha != 1)
        return value_error(err, entry, "alpha 1 for mode 1 (a plain pattern has no bottleneck)", item,
                           item_length);
    memcpy(out->name, fields[0], strlen(fields[0]) + 1); /* fits: checked above */
    out->mode = (int)mode;
    out->alpha = (int)alpha;
    return 0;
}

static int apply_patterns(config *cfg, const config_entry *entry, bneck_error *err) {
    pattern_spec parsed[CONFIG_MAX_PATTERNS];
    int count = 0;
    const char *cursor = entry->value;
    for (;;) {
        const char *comma = strchr(cursor, ',');
        const char *item = cursor;
        size_t length = comma ? (size_t)(comma - cursor) : strlen(cursor);
        trim_span(&item, &length);
        if (!comma && length == 0 && count > 0) break; /* a trailing comma is harmless */
        if (length == 0 && count == 0 && !comma)
            return value_error(err, entry, "at least one pattern name:mode:alpha", item, length);
        if (length == 0) return value_error(err, entry, "name:mode:alpha items separated by commas", item, length);
        /* messages about this item name its own line of a list spread over several */
        config_entry at = *entry;
        if (entry->path)
            for (const char *c = entry->value; c < item; c++) at.line += *c == '\n';
        const char *newline = memchr(item, '\n', length);
        if (newline) /* a continuation line joined without a comma at the end of the line before */
            return value_error(err, &at, "a comma at the end of each line before a continuation line", item,
                               (size_t)(newline - item));
        if (count == CONFIG_MAX_PATTERNS) {
            char expected[64];
            snprintf(expected, sizeof expected, "at most %d patterns", CONFIG_MAX_PATTERNS);
            return value_error(err, entry, expected, entry->value, strlen(entry->value));
        }
        if (parse_pattern(&at, item, length, &parsed[count], err) != 0) return -1;
        for (int i = 0; i < count; i++) {
            if (strcmp(parsed[i].name, parsed[count].name) == 0)
                return value_error(err, &at, "unique pattern names", item, length);
        }
        count++;
        if (!comma) break;
        cursor = comma + 1;
    }
    memcpy(cfg->patterns, parsed, (size_t)count * sizeof parsed[0]);
    memset(cfg->patterns + count, 0, (size_t)(CONFIG_MAX_PATTERNS - count) * sizeof parsed[0]);
    cfg->pattern_count = count;
    return 0;
}

static int apply_entry(config *cfg, const config_entry *entry, bneck_error *err) {
    const key_spec *spec = entry->spec;
    const char *value = entry->value;
    switch (spec->kind) {
    case VALUE_INT: {
        long number;
        if (!parse_long(value, &number) || !in_range((double)number, spec)) return expected_value_error(err, entry);
        *int_field(cfg, spec) = (int)number;
        return 0;
    }
    case VALUE_SEED:
        if (!parse_seed(value, &cfg->seed)) return expected_value_error(err, entry);
        return 0;
    case VALUE_DOUBLE: {
        double number;
        if (!parse_double(value, &number) || !in_range(number, spec)) return expected_value_error(err, entry);
        *double_field(cfg, spec) = number;
        return 0;
    }
    case VALUE_BOOL:
        if (!parse_bool(value, int_field(cfg, spec))) return expected_value_error(err, entry);
        return 0;
    case VALUE_AUGMENT: {
        int *field = int_field(cfg, spec);
        if (!strcasecmp(value, "shift")) *field = AUGMENT_SHIFT;
        else if (!strcasecmp(value, "crop-flip")) *field = AUGMENT_CROP_FLIP;
        else if (!strcasecmp(value, "none")) *field = AUGMENT_NONE;
        else if (!parse_bool(value, field)) return expected_value_error(err, entry);
        return 0;
    }
    case VALUE_NAME:
        if (!is_safe_name(value, strlen(value), spec->size)) return expected_value_error(err, entry);
        snprintf(string_field(cfg, spec), spec->size, "%s", value);
        return 0;
    case VALUE_PATH:
    {
        size_t length = strlen(value);
        if (length == 0 || length >= spec->size) return expected_value_error(err, entry);
        /* a config file (sweep.ini, written from this value) would read " ;..." as a
         * comment: such a path would not come back */
        if (strstr(value, " ;") || strstr(value, "\t;"))
            return value_error(err, entry,
                               "a path without ' ;' (a config file reads the rest as a comment)",
                               value, length);
        /* "dir/" and "dir" are one directory: stored the same, they compare the same when a
         * sweep checks that it is resumed with its own configuration */
        while (length > 1 && value[length - 1] == '/') length--;
        snprintf(string_field(cfg, spec), spec->size, "%.*s", (int)length, value);
        return 0;
    }
    case VALUE_WORD: {
        int choice = find_choice(spec->choices, value);
        if (choice < 0) return expected_value_error(err, entry);
        snprintf(string_field(cfg, spec), spec->size, "%s", spec->choices[choice]);
        return 0;
    }
    case VALUE_ENUM: {
        int choice = find_choice(spec->choices, value);
        if (choice < 0) return expected_value_error(err, entry);
        spec->set_enum(cfg, choice);
        return 0;
    }
    case VALUE_DECAY_AT:
        return apply_decay_at(cfg, entry, err);
    case VALUE_PATTERNS:
        return apply_patterns(cfg, entry, err);
    }
    BNECK_FAIL("config key [%s] %s has no value kind", spec->section, spec->key);
}

static int apply_entries(config *cfg, const entry_list *entries, bneck_error *err) {
    const config_entry *set_by[KEY_COUNT] = {0}; /* the entry that last set each key */
    const key_spec *recipe_key = find_key("train", "recipe");

    /* The preset first, so that every explicit key lands on top of it. */
    for (int i = 0; i < entries->count; i++) {
        if (entries->items[i].spec != recipe_key) continue;
        if (apply_entry(cfg, &entries->items[i], err) != 0) return -1;
        set_by[key_index(recipe_key)] = &entries->items[i];
    }
    apply_recipe_preset(cfg, cfg->recipe);

    for (int i = 0; i < entries->count; i++) {
        const config_entry *entry = &entries->items[i];
        if (entry->spec == recipe_key) continue;
        if (apply_entry(cfg, entry, err) != 0) return -1;
        set_by[key_index(entry->spec)] = entry;
    }

    /* Step 3: rules across keys, then defaults that follow other keys. */
    if (cfg->mode == 1 && cfg->alpha != 1) {
        /* alpha defaults to 1, so here it was set explicitly */
        const config_entry *alpha_entry = set_by[key_index(find_key("model", "alpha"))];
        const config_entry *mode_entry = set_by[key_index(find_key("model", "mode"))];
        char mode_origin[768] = "the default";
        if (mode_entry) describe_origin(mode_entry, mode_origin, sizeof mode_origin);
        char expected[900];
        snprintf(expected, sizeof expected, "1 because mode is 1 (from %s) and a plain pattern has no bottleneck",
                 mode_origin);
        return value_error(err, alpha_entry, expected, alpha_entry->value, strlen(alpha_entry->value));
    }
    if (cfg->mode != 1 && model_alpha_check(cfg->alpha, NULL) != 0) {
        const config_entry *alpha_entry = set_by[key_index(find_key("model", "alpha"))];
        char expected[128];
        describe_valid_alphas("for a bottleneck mode", expected, sizeof expected);
        return value_error(err, alpha_entry, expected, alpha_entry->value, strlen(alpha_entry->value));
    }
    if (!set_by[key_index(find_key("run", "output"))]) snprintf(cfg->output, sizeof cfg->output, "results/%s", cfg->name);
    if (!set_by[key_index(find_key("data", "dir"))])
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", default_data_dir(cfg->dataset));
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The source text kept for results files.                                               */

static void store_source_text(config *cfg, const char *file_text, int override_count,
                              const char *const *overrides) {
    static const char truncated_marker[] = "; [config text truncated]\n";
    text_builder builder = {cfg->text, sizeof cfg->text, 0, false};
    cfg->text[0] = '\0';
    if (file_text && file_text[0]) {
        builder_append(&builder, "%s", file_text);
        if (file_text[strlen(file_text) - 1] != '\n') builder_append(&builder, "\n");
    }
    if (override_count > 0) {
        builder_append(&builder, "; overrides:\n");
        for (int i = 0; i < override_count; i++) builder_append(&builder, "; %s\n", overrides[i]);
    }
    if (builder.overflow) {
        /* Cut back to a whole line that leaves room for the marker. */
        size_t keep = sizeof cfg->text - sizeof truncated_marker;
        while (keep > 0 && cfg->text[keep - 1] != '\n') keep--;
        memcpy(cfg->text + keep, truncated_marker, sizeof truncated_marker);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Public functions.                                                                     */

/* libinih ends lines at LF only, so a file saved with CR-only line endings would read as
 * one line, silently keeping its first [section] and dropping every key after it. */
static int check_line_endings(const char *path, const char *text, bneck_error *err) {
    for (const char *c = text; (c = strchr(c, '\r')) != NULL; c++) {
        if (c[1] == '\n') continue;
        int line = 1;
        for (const char *before = text; before < c; before++) line += *before == '\n';
        return bneck_error_set(err,
                               "%s:%d: a carriage return (CR) that does not end a line; save the file "
                               "with LF (or CRLF) line endings", path, line);
    }
    return 0;
}

/* The parse itself: text (from path, for messages; NULL text: no file) and overrides. */
static int load(config *cfg, const char *path, const char *text, int override_count,
                const char *const *overrides, bneck_error *err) {
    if (override_count < 0 || (override_count > 0 && !overrides))
        BNECK_FAIL("config_load: %d overrides given with a %s list", override_count, overrides ? "non-NULL" : "NULL");
    config *work = bneck_malloc(sizeof *work);
    config_defaults(work);
    entry_list entries = {0};
    int status = text ? check_line_endings(path, text, err) : 0;
    if (status == 0 && text) status = collect_file_entries(path, text, &entries, err);
    for (int i = 0; status == 0 && i < override_count; i++) status = collect_override(overrides[i], &entries, err);
    if (status == 0) status = apply_entries(work, &entries, err);
    if (status == 0) {
        store_source_text(work, text, override_count, overrides);
        *cfg = *work;
    }
    free_entries(&entries);
    free(work);
    return status;
}

int config_load(config *cfg, const char *path, int override_count, const char *const *overrides,
                bneck_error *err) {
    char *file_text = NULL;
    if (path && read_config_file(path, &file_text, err) != 0) return -1;
    const int status = load(cfg, path, file_text, override_count, overrides, err);
    free(file_text);
    return status;
}

int config_load_text(config *cfg, const char *name, const char *text, bneck_error *err) {
    return load(cfg, name, text, 0, NULL, err);
}

int config_device_option(int argc, char **argv, int *i, char *out, size_t capacity,
                         bneck_error *err) {
    static const char option[] = "--device";
    const char *arg = argv[*i], *value;
    if (!strcmp(arg, option)) {
        if (*i + 1 >= argc)
            return bneck_error_set(err, "%s expects auto, cpu or cuda, got nothing", option);
        value = argv[++*i];
    } else if (!strncmp(arg, option, sizeof option - 1) && arg[sizeof option - 1] == '=') {
        value = arg + sizeof option;
    } else {
        return 0;
    }
    if ((size_t)snprintf(out, capacity, "run.device=%s", value) >= capacity)
        return bneck_error_set(err, "%s expects auto, cpu or cuda, got '%.40s...'", option, value);
    return 1;
}

/* A long path goes out in pieces on indented lines, which the reader joins as they are.
 * Each piece after the first starts with a '/' (the reader takes no other, so an indented
 * key is never read as part of a path): the cut is before the last '/' that keeps the line
 * short, or else the first one after. A piece before a '/' never ends in white space (it
 * would be stripped) unless a directory name does, which the cut then avoids. */
static void write_path(const char *path, bool wrap, text_builder *builder) {
    const size_t length = strlen(path);
    size_t start = 0;
    while (wrap && length - start > PATH_CHARACTERS_PER_WRITTEN_LINE) {
        size_t cut = 0;
        for (size_t at = start + 1; at < length; at++) {
            if (path[at] != '/' || isspace((unsigned char)path[at - 1])) continue;
            if (at - start > PATH_CHARACTERS_PER_WRITTEN_LINE && cut) break;
            cut = at;
            if (at - start > PATH_CHARACTERS_PER_WRITTEN_LINE) break;
        }
        if (!cut) break; /* no '/' to cut before: the rest on one line */
        builder_append(builder, "%.*s\n    ", (int)(cut - start), path + start);
        start = cut;
    }
    builder_append(builder, "%s", path + start);
}

static void write_value(const config *cfg, const key_spec *spec, bool wrap_paths, text_builder *builder) {
    switch (spec->kind) {
    case VALUE_INT:
        builder_append(builder, "%d", *const_int_field(cfg, spec));
        return;
    case VALUE_SEED:
        builder_append(builder, "%" PRIu64, cfg->seed);
        return;
    case VALUE_DOUBLE: {
        char number[32];
        format_double(*const_double_field(cfg, spec), number, sizeof number);
        builder_append(builder, "%s", number);
        return;
    }
    case VALUE_BOOL:
        builder_append(builder, "%s", *const_int_field(cfg, spec) ? "true" : "false");
        return;
    case VALUE_AUGMENT: {
        /* "true" and "false" as always (run files compare their settings as text) */
        const int kind = *const_int_field(cfg, spec);
        builder_append(builder, "%s", kind == AUGMENT_SHIFT ? "shift" : kind ? "true" : "false");
        return;
    }
    case VALUE_PATH:
        write_path(const_string_field(cfg, spec), wrap_paths, builder);
        return;
    case VALUE_NAME:
    case VALUE_WORD:
        builder_append(builder, "%s", const_string_field(cfg, spec));
        return;
    case VALUE_ENUM:
        builder_append(builder, "%s", spec->choices[spec->get_enum(cfg)]);
        return;
    case VALUE_DECAY_AT: {
        char first[32], second[32];
        format_double(cfg->lr_decay_at[0], first, sizeof first);
        format_double(cfg->lr_decay_at[1], second, sizeof second);
        builder_append(builder, "%s, %s", first, second);
        return;
    }
    case VALUE_PATTERNS:
        for (int i = 0; i < cfg->pattern_count; i++) {
            const pattern_spec *pattern = &cfg->patterns[i];
            const char *separator = i == 0 ? "" : i % PATTERNS_PER_WRITTEN_LINE == 0 ? ",\n    " : ", ";
            builder_append(builder, "%s%s:%d:%d", separator, pattern->name, pattern->mode, pattern->alpha);
        }
        return;
    }
}

static int write_config(const config *cfg, bool wrap_paths, char *out, int capacity) {
    if (!out || capacity <= 0) return -1;
    text_builder builder = {out, (size_t)capacity, 0, false};
    out[0] = '\0';
    const char *section = NULL;
    for (int i = 0; i < KEY_COUNT; i++) {
        const key_spec *spec = &key_table[i];
        if (!section || strcmp(section, spec->section) != 0) {
            builder_append(&builder, "%s[%s]\n", section ? "\n" : "", spec->section);
            section = spec->section;
        }
        builder_append(&builder, "%s = ", spec->key);
        write_value(cfg, spec, wrap_paths, &builder);
        builder_append(&builder, "\n");
    }
    return builder.overflow ? -1 : (int)builder.length;
}

int config_write(const config *cfg, char *out, int capacity) { return write_config(cfg, true, out, capacity); }

int config_write_unwrapped(const config *cfg, char *out, int capacity) {
    return write_config(cfg, false, out, capacity);
}
