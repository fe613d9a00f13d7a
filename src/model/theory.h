/* The closed-form theory of SPEC section 1: what a k x k convolution costs with and
 * without 1x1 bottlenecks, and the ratios plain / bottlenecked.
 *
 * Notation: a k x k conv on a w x w map with c input and f output channels; the
 * bottleneck narrows to f/alpha channels; beta = c / f. Costs are multiply-adds per
 * image. Everything is a double, so fractional beta (c = 256, f = 192) and fractional
 * k (smooth curves for plots) work; nothing here checks that channel counts divide.
 *
 * Also the parser for the value lists the `bneck-theory` CLI takes ("1:9", "2,4"). */
#ifndef BNECK_MODEL_THEORY_H
#define BNECK_MODEL_THEORY_H

#include "core/error.h"

/* Plain k x k conv: k^2 w^2 c f. */
double theory_plain_cost(double k, double w, double c, double f);

/* "BC", 1x1 conv c -> f/alpha then k x k conv f/alpha -> f: (w^2 f / alpha)(c + k^2 f). */
double theory_bc_cost(double k, double w, double c, double f, double alpha);

/* "BCB", 1x1 c -> f/alpha, k x k f/alpha -> f/alpha, 1x1 f/alpha -> f:
 * (w^2 f / alpha^2)(k^2 f + alpha (c + f)). */
double theory_bcb_cost(double k, double w, double c, double f, double alpha);

/* plain / BC = alpha beta k^2 / (beta + k^2); independent of w and of f itself. */
double theory_bc_ratio(double k, double alpha, double beta);

/* plain / BCB = alpha^2 beta k^2 / (alpha (beta + 1) + k^2). */
double theory_bcb_ratio(double k, double alpha, double beta);

/* The k -> inf limits: alpha beta and alpha^2 beta. */
double theory_bc_limit(double alpha, double beta);
double theory_bcb_limit(double alpha, double beta);

/* A parsed value list. */
enum { THEORY_LIST_MAX = 4096 };
typedef struct theory_list {
    int count;
    double values[THEORY_LIST_MAX];
} theory_list;

/* Parses a comma-separated list of items, each either a positive decimal number
 * ("3", "1.5", "2e1") or an inclusive range "start:end" (step 1) or "start:end:step"
 * with start <= end and step > 0: start, start+step, ... up to end ("1:9:2" is
 * 1 3 5 7 9; "0.5:2:0.5" works too). Spaces around items are ignored; values keep their
 * order and duplicates are kept. Every value must be finite and > 0.
 * Returns 0, or -1 with err naming `option` (e.g. "--alpha") and the bad item. */
int theory_parse_list(const char *option, const char *text, theory_list *out,
                      bneck_error *err);

#endif
