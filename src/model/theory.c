/* Closed-form costs and ratios of SPEC section 1, and the CLI's value-list parser. */
#include "model/theory.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double theory_plain_cost(double k, double w, double c, double f) {
    return k * k * w * w * c * f;
}

double theory_bc_cost(double k, double w, double c, double f, double alpha) {
    return (w * w * f / alpha) * (c + k * k * f);
}

double theory_bcb_cost(double k, double w, double c, double f, double alpha) {
    return (w * w * f / (alpha * alpha)) * (k * k * f + alpha * (c + f));
}

double theory_bc_ratio(double k, double alpha, double beta) {
    return alpha * beta * k * k / (beta + k * k);
}

double theory_bcb_ratio(double k, double alpha, double beta) {
    return alpha * alpha * beta * k * k / (alpha * (beta + 1) + k * k);
}

double theory_bc_limit(double alpha, double beta) { return alpha * beta; }

double theory_bcb_limit(double alpha, double beta) { return alpha * alpha * beta; }

/* --- value lists -------------------------------------------------------------------- */

enum { ITEM_MAX = 64 }; /* longer items are certainly typos */

static const char list_syntax[] =
    "expected a positive number (3, 1.5) or a range start:end[:step] (1:9, 1:9:2)";

/* Plain decimal only: digits, optional fraction, optional exponent. strtod alone would
 * also take "inf", "nan", hex and leading signs, none of which belong in these lists. */
static int is_decimal(const char *s) {
    int digits = 0;
    while (isdigit((unsigned char)*s)) s++, digits++;
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) s++, digits++;
    }
    if (digits == 0) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!isdigit((unsigned char)*s)) return 0;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == '\0';
}

/* Far beyond any network at both ends: no product of three overflows, and the smallest
 * is a normal double (a subnormal such as 1e-320 once read as "must be > 0"). */
static const double theory_value_min = 1e-6;
enum { THEORY_VALUE_MAX = 1000000 };
static const char theory_value_range[] = "a number from 0.000001 to 1000000";

/* Parses one positive number; `what` says which part of the item it is, for the error. */
static int parse_positive(const char *option, const char *item, const char *part,
                          const char *what, double *value, bneck_error *err) {
    const int negative = part[0] == '-' && is_decimal(part + 1);
    if (!negative && !is_decimal(part)) {
        if (!*what) /* the whole item is the number: say it once */
            return bneck_error_set(err, "%s: bad value '%s'; %s", option, item, list_syntax);
        return bneck_error_set(err, "%s: bad item '%s': %s'%s' is not a number; %s", option,
                               item, what, part, list_syntax);
    }
    errno = 0;
    double v = strtod(part, NULL);
    if (negative || errno == ERANGE || !isfinite(v) || v < theory_value_min ||
        v > THEORY_VALUE_MAX)
        return bneck_error_set(err, "%s: bad item '%s': %s'%s' must be %s", option, item, what,
                               part, theory_value_range);
    *value = v;
    return 0;
}

static int list_push(const char *option, const char *item, theory_list *out, double value,
                     bneck_error *err) {
    if (out->count >= THEORY_LIST_MAX)
        return bneck_error_set(err, "%s: item '%s' makes the list longer than %d values",
                               option, item, THEORY_LIST_MAX);
    out->values[out->count++] = value;
    return 0;
}

/* One item: a number or a range. `item` is already trimmed and NUL-terminated. */
static int parse_item(const char *option, char *item, theory_list *out, bneck_error *err) {
    char *parts[3];
    int part_count = 0;
    char shown[ITEM_MAX + 1]; /* the item as written, since the split below edits it */
    snprintf(shown, sizeof shown, "%s", item);
    for (char *p = item;; p++) {
        if (part_count == 3)
            return bneck_error_set(err, "%s: bad item '%s': a range has at most two ':'; %s",
                                   option, shown, list_syntax);
        parts[part_count++] = p;
        p = strchr(p, ':');
        if (!p) break;
        *p = '\0';
    }
    if (part_count == 1) {
        double value;
        if (parse_positive(option, shown, parts[0], "", &value, err)) return -1;
        return list_push(option, shown, out, value, err);
    }

    double start, end, step = 1;
    if (parse_positive(option, shown, parts[0], "range start ", &start, err)) return -1;
    if (parse_positive(option, shown, parts[1], "range end ", &end, err)) return -1;
    if (part_count == 3 && parse_positive(option, shown, parts[2], "range step ", &step, err))
        return -1;
    if (start > end)
        return bneck_error_set(err, "%s: bad item '%s': range start %g is after its end %g",
                               option, shown, start, end);
    /* Count the values first (the list has a fixed capacity) and compute each as
     * start + i*step rather than by repeated addition, so 0.1:0.3:0.1 gives 3 values
     * and no drift; the slack absorbs the rounding of (end - start) / step. */
    const double steps = floor((end - start) / step + 1e-9);
    if (steps >= THEORY_LIST_MAX)
        return bneck_error_set(err, "%s: range '%s' has more than %d values", option, shown,
                               THEORY_LIST_MAX);
    for (int i = 0; i <= (int)steps; i++) {
        double value = start + i * step;
        if (value > end) value = end; /* rounding overshoot of the last value */
        if (list_push(option, shown, out, value, err)) return -1;
    }
    return 0;
}

int theory_parse_list(const char *option, const char *text, theory_list *out,
                      bneck_error *err) {
    out->count = 0;
    if (!text)
        return bneck_error_set(err, "%s: missing value; %s", option, list_syntax);
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *stop = comma ? comma : p + strlen(p);
        const char *first = p, *last = stop;
        while (first < last && isspace((unsigned char)*first)) first++;
        while (last > first && isspace((unsigned char)last[-1])) last--;
        const size_t length = (size_t)(last - first);
        if (length == 0)
            return bneck_error_set(err, "%s: empty item in '%s'; %s", option, text,
                                   list_syntax);
        if (length > ITEM_MAX)
            return bneck_error_set(err, "%s: item '%.*s...' is longer than %d characters",
                                   option, 20, first, ITEM_MAX);
        char item[ITEM_MAX + 1];
        memcpy(item, first, length);
        item[length] = '\0';
        if (parse_item(option, item, out, err)) return -1;
        if (!comma) return 0;
        p = comma + 1;
    }
}
