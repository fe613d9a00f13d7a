/* The programs' command-line options: "--name value" or "--name=value", flags without a
 * value, and values chosen among fixed words. Each program keeps its own table of names
 * and its own usage text; the reading and its messages are here, the same for all. */
#ifndef BNECK_CORE_CLI_H
#define BNECK_CORE_CLI_H

#include <stddef.h>

typedef enum { CLI_FLAG, CLI_VALUED, CLI_ARGUMENT } cli_kind;

typedef struct cli_option {
    char name[48];     /* "--format"; empty for an argument */
    const char *value; /* the option's value, or the argument itself; NULL for a flag */
} cli_option;

/* Reads argv[*i]: one of the flags (NULL-terminated names), one of the valued options with
 * its value (after '=', or the next argument, *i then advanced past it), or an argument
 * that is no option (not starting with '-', or "-" alone). Returns its kind, or -1 with
 * message set: "unknown option '-x'", "--x takes no value", "--x needs a value" (a next
 * argument starting with "--" is taken for a forgotten value, not as one). */
int cli_next(cli_option *out, int argc, char **argv, int *i, const char *const flags[],
             const char *const valued[], char *message, size_t capacity);

/* The index of value among the NULL-terminated words, or -1. */
int cli_choice(const char *value, const char *const words[]);

/* "a, b or c": the words, for messages that say what was expected. */
void cli_choices_text(const char *const words[], char *out, size_t capacity);

/* The index of an option's value among the words, or -1 with message set:
 * "--format: bad value 'x': expected table, csv or markdown". */
int cli_pick(const char *option, const char *value, const char *const words[], char *message,
             size_t capacity);

#endif
