#include "core/format.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void format_thousands(int64_t value, char *out, size_t capacity) {
    char digits[32];
    snprintf(digits, sizeof digits, "%" PRId64, value);
    char grouped[40];
    const char *d = digits;
    char *o = grouped;
    if (*d == '-') *o++ = *d++;
    const size_t length = strlen(d);
    for (size_t i = 0; i < length; i++) {
        if (i > 0 && (length - i) % 3 == 0) *o++ = ',';
        *o++ = d[i];
    }
    *o = '\0';
    snprintf(out, capacity, "%s", grouped);
}

void format_distinct_list(char *out, size_t capacity, const char *items, int count,
                          size_t stride) {
    static const char more[] = ",...";
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < count; i++) {
        const char *item = items + (size_t)i * stride;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(item, items + (size_t)j * stride);
        if (seen) continue;
        const size_t length = (used ? 1 : 0) + strlen(item);
        if (used + length < capacity) {
            snprintf(out + used, capacity - used, "%s%s", used ? "," : "", item);
            used += length;
            continue;
        }
        /* it does not fit: names come off the end until the mark does */
        while (used > 0 && used + strlen(more) >= capacity) {
            const char *comma = strrchr(out, ',');
            used = comma ? (size_t)(comma - out) : 0;
            out[used] = '\0';
        }
        snprintf(out + used, capacity - used, "%s", used ? more : more + 1);
        return;
    }
}
