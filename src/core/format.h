/* Formatting shared by the programs' tables and the results files. */
#ifndef BNECK_CORE_FORMAT_H
#define BNECK_CORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* An exact integer with thousands separators: 2960874 -> "2,960,874" (capacity >= 28
 * always suffices). */
void format_thousands(int64_t value, char *out, size_t capacity);

/* The distinct texts among count slots of stride bytes (each a NUL-terminated text), joined
 * with commas in the order they first appear. A list longer than capacity - 1 keeps the
 * whole names that fit with ",..." after them ("..." when none does); capacity >= 4. */
void format_distinct_list(char *out, size_t capacity, const char *items, int count,
                          size_t stride);

#endif
