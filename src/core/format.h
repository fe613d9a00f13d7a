/* Number formatting shared by the programs' tables. */
#ifndef BNECK_CORE_FORMAT_H
#define BNECK_CORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* An exact integer with thousands separators: 2960874 -> "2,960,874" (capacity >= 28
 * always suffices). */
void format_thousands(int64_t value, char *out, size_t capacity);

#endif
