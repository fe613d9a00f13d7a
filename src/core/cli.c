#include "core/cli.h"

#include <stdio.h>
#include <string.h>

static int named(const char *name, const char *const names[]) {
    for (int k = 0; names && names[k]; k++)
        if (!strcmp(name, names[k])) return 1;
    return 0;
}

int cli_next(cli_option *out, int argc, char **argv, int *i, const char *const flags[],
             const char *const valued[], char *message, size_t capacity) {
    const char *arg = argv[*i];
    out->name[0] = '\0';
    out->value = NULL;
    if (arg[0] != '-' || !strcmp(arg, "-")) {
        out->value = arg;
        return CLI_ARGUMENT;
    }
    const char *equals = strchr(arg, '=');
    const size_t length = equals ? (size_t)(equals - arg) : strlen(arg);
    if (length >= sizeof out->name) {
        snprintf(message, capacity, "unknown option '%.200s'", arg);
        return -1;
    }
    memcpy(out->name, arg, length);
    out->name[length] = '\0';
    const int is_flag = named(out->name, flags), is_valued = named(out->name, valued);
    if (!is_flag && !is_valued) {
        snprintf(message, capacity, "unknown option '%.200s'", out->name);
        return -1;
    }
    if (is_flag) {
        if (equals) {
            snprintf(message, capacity, "%s takes no value", out->name);
            return -1;
        }
        return CLI_FLAG;
    }
    if (equals) {
        out->value = equals + 1;
        return CLI_VALUED;
    }
    if (*i + 1 >= argc || !strncmp(argv[*i + 1], "--", 2)) {
        snprintf(message, capacity, "%s needs a value", out->name);
        return -1;
    }
    out->value = argv[++*i];
    return CLI_VALUED;
}

int cli_choice(const char *value, const char *const words[]) {
    for (int k = 0; words[k]; k++)
        if (!strcmp(value, words[k])) return k;
    return -1;
}

int cli_pick(const char *option, const char *value, const char *const words[], char *message,
             size_t capacity) {
    const int index = cli_choice(value, words);
    if (index < 0) {
        char expected[160];
        cli_choices_text(words, expected, sizeof expected);
        snprintf(message, capacity, "%s: bad value '%.200s': expected %s", option, value,
                 expected);
    }
    return index;
}

void cli_choices_text(const char *const words[], char *out, size_t capacity) {
    size_t used = 0;
    out[0] = '\0';
    int count = 0;
    while (words[count]) count++;
    for (int k = 0; k < count && used < capacity; k++) {
        const char *separator = k == 0 ? "" : k == count - 1 ? " or " : ", ";
        const int n = snprintf(out + used, capacity - used, "%s%s", separator, words[k]);
        if (n < 0) break;
        used += (size_t)n;
    }
}
