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
