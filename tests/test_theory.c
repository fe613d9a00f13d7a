/* The closed-form theory (SPEC section 1): the ratio formulas must equal plain cost /
 * bottlenecked cost from the cost formulas, tend to their limits, and match values worked
 * out by hand; the CLI's value-list parser must accept the documented forms and reject
 * everything else with a message naming the option and the bad item. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "model/theory.h"

static int close_to(double got, double want, double relative) {
    return fabs(got - want) <= relative * fabs(want);
}

/* --- ratios against costs ------------------------------------------------------------ */

static const double ks[] = {1, 2, 3, 4, 5, 7, 9, 11, 1.5, 0.5};
static const double alphas[] = {1, 2, 4, 8, 1.5, 3};
static const double betas[] = {1, 8, 0.5, 2, 4.0 / 3.0, 0.125, 32, 2.7};
static const double widths[] = {1, 8, 16, 32, 7};
static const double outs[] = {8, 48, 96, 192, 10};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

Test(theory, ratio_formulas_equal_cost_ratios) {
    int checked = 0;
    for (size_t ki = 0; ki < COUNT(ks); ki++)
        for (size_t ai = 0; ai < COUNT(alphas); ai++)
            for (size_t bi = 0; bi < COUNT(betas); bi++)
                for (size_t wi = 0; wi < COUNT(widths); wi++)
                    for (size_t fi = 0; fi < COUNT(outs); fi++) {
                        const double k = ks[ki], alpha = alphas[ai], beta = betas[bi];
                        const double w = widths[wi], f = outs[fi], c = beta * f;
                        const double plain = theory_plain_cost(k, w, c, f);
                        const double bc = plain / theory_bc_cost(k, w, c, f, alpha);
                        const double bcb = plain / theory_bcb_cost(k, w, c, f, alpha);
                        cr_expect(close_to(theory_bc_ratio(k, alpha, beta), bc, 1e-12),
                                  "BC k=%g alpha=%g beta=%g w=%g f=%g: formula %.17g, costs %.17g",
                                  k, alpha, beta, w, f, theory_bc_ratio(k, alpha, beta), bc);
                        cr_expect(close_to(theory_bcb_ratio(k, alpha, beta), bcb, 1e-12),
                                  "BCB k=%g alpha=%g beta=%g w=%g f=%g: formula %.17g, costs %.17g",
                                  k, alpha, beta, w, f, theory_bcb_ratio(k, alpha, beta), bcb);
                        checked++;
                    }
    cr_expect_eq(checked, 10 * 6 * 8 * 5 * 5);
}

/* The costs themselves, layer by layer, for one of the network's real branches
 * (Inception 3, 3x3 branch: 8x8 map, c = 256, f = 192, alpha = 2). */
Test(theory, costs_are_sums_of_their_convs) {
    const double k = 3, w = 8, c = 256, f = 192, a = 2;
    cr_expect_eq(theory_plain_cost(k, w, c, f), 9.0 * 64 * 256 * 192);
    cr_expect_eq(theory_bc_cost(k, w, c, f, a), 64.0 * 256 * 96 + 9.0 * 64 * 96 * 192);
    cr_expect_eq(theory_bcb_cost(k, w, c, f, a),
                 64.0 * 256 * 96 + 9.0 * 64 * 96 * 96 + 64.0 * 96 * 192);
    /* beta = 4/3 here: the fractional case. */
    cr_expect(close_to(theory_bc_ratio(k, a, c / f), 72.0 / 31.0, 1e-14));
}

Test(theory, hand_computed_values) {
    /* k=3, alpha=2, beta=1: BC = 2*1*9/(1+9), BCB = 4*1*9/(2*2+9). */
    cr_expect(close_to(theory_bc_ratio(3, 2, 1), 1.8, 1e-15));
    cr_expect(close_to(theory_bcb_ratio(3, 2, 1), 36.0 / 13.0, 1e-15));
    /* k=1, alpha=4, beta=8: BC = 32/9, BCB = 128/37. */
    cr_expect(close_to(theory_bc_ratio(1, 4, 8), 32.0 / 9.0, 1e-15));
    cr_expect(close_to(theory_bcb_ratio(1, 4, 8), 128.0 / 37.0, 1e-15));
    /* k=5, alpha=4, beta=1: BC = 100/26, BCB = 400/33. */
    cr_expect(close_to(theory_bc_ratio(5, 4, 1), 100.0 / 26.0, 1e-15));
    cr_expect(close_to(theory_bcb_ratio(5, 4, 1), 400.0 / 33.0, 1e-15));
    cr_expect_eq(theory_bc_limit(2, 8), 16);
    cr_expect_eq(theory_bcb_limit(2, 8), 32);
    cr_expect_eq(theory_bcb_limit(4, 0.5), 8);
}

Test(theory, ratios_rise_towards_their_limits) {
    for (size_t ai = 0; ai < COUNT(alphas); ai++)
        for (size_t bi = 0; bi < COUNT(betas); bi++) {
            const double alpha = alphas[ai], beta = betas[bi];
            const double bc_limit = theory_bc_limit(alpha, beta);
            const double bcb_limit = theory_bcb_limit(alpha, beta);
            cr_expect(close_to(bc_limit, alpha * beta, 1e-15));
            cr_expect(close_to(bcb_limit, alpha * alpha * beta, 1e-15));
            double previous_bc = 0, previous_bcb = 0;
            for (double k = 1; k <= 1e6; k *= 2) {
                const double bc = theory_bc_ratio(k, alpha, beta);
                const double bcb = theory_bcb_ratio(k, alpha, beta);
                cr_expect(bc > previous_bc && bc < bc_limit, "BC k=%g: %g", k, bc);
                cr_expect(bcb > previous_bcb && bcb < bcb_limit, "BCB k=%g: %g", k, bcb);
                previous_bc = bc;
                previous_bcb = bcb;
            }
            /* The gap closes like 1/k^2: within 1e-8 of the limit by k = 1e6. */
            cr_expect(close_to(theory_bc_ratio(1e6, alpha, beta), bc_limit, 1e-8));
            cr_expect(close_to(theory_bcb_ratio(1e6, alpha, beta), bcb_limit, 1e-8));
        }
}

/* --- the value-list parser ------------------------------------------------------------ */

static theory_list parsed; /* large: off the stack */

static void expect_list(const char *text, int count, const double *want) {
    bneck_error err = {{0}};
    cr_assert_eq(theory_parse_list("--k", text, &parsed, &err), 0, "'%s': %s", text,
                 err.message);
    cr_assert_eq(parsed.count, count, "'%s': %d values", text, parsed.count);
    for (int i = 0; i < count; i++)
        cr_expect(close_to(parsed.values[i], want[i], 1e-15), "'%s' value %d: %.17g", text, i,
                  parsed.values[i]);
}

Test(theory_list, accepts_the_documented_forms) {
    expect_list("1:9", 9, (const double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    expect_list("1:9:2", 5, (const double[]){1, 3, 5, 7, 9});
    expect_list("1:10:4", 3, (const double[]){1, 5, 9});
    expect_list("2,4", 2, (const double[]){2, 4});
    expect_list("1.5", 1, (const double[]){1.5});
    expect_list("1,3:5", 4, (const double[]){1, 3, 4, 5});
    expect_list("3:3", 1, (const double[]){3});
    expect_list("0.5:2:0.5", 4, (const double[]){0.5, 1, 1.5, 2});
    /* 0.1:0.3:0.1 must not lose its last value to rounding nor overshoot 0.3. */
    expect_list("0.1:0.3:0.1", 3, (const double[]){0.1, 0.2, 0.3});
    expect_list(" 2 , 4 ", 2, (const double[]){2, 4});
    expect_list("8,1,8", 3, (const double[]){8, 1, 8});
    expect_list("2e1,.5,7.", 3, (const double[]){20, 0.5, 7});
}

/* Rejects `text`, and the message names the option and contains `mentions`. */
static void expect_rejected(const char *text, const char *mentions) {
    bneck_error err = {{0}};
    cr_expect_eq(theory_parse_list("--alpha", text, &parsed, &err), -1, "'%s' was accepted",
                 text);
    cr_expect(strstr(err.message, "--alpha") != NULL, "'%s': %s", text, err.message);
    cr_expect(strstr(err.message, mentions) != NULL, "'%s': message '%s' lacks '%s'", text,
              err.message, mentions);
}

Test(theory_list, rejects_bad_lists_naming_option_and_item) {
    expect_rejected("", "empty item");
    expect_rejected(",", "empty item");
    expect_rejected("1,", "empty item");
    expect_rejected(",1", "empty item");
    expect_rejected("1,,2", "empty item");
    expect_rejected("abc", "'abc'");
    expect_rejected("2,x4", "'x4'");
    expect_rejected("1.2.3", "'1.2.3'");
    expect_rejected("3x", "'3x'");
    expect_rejected("0x10", "'0x10'");
    expect_rejected("nan", "'nan'");
    expect_rejected("inf", "'inf'");
    expect_rejected("-1", "'-1' must be a number from 0.000001 to 1000000");
    expect_rejected("+1", "'+1'");
    expect_rejected("0", "'0'");
    expect_rejected("1e400", "'1e400'");
    expect_rejected("1e-400", "'1e-400'");
    expect_rejected("1e", "'1e'");
    expect_rejected("1:", "range end");
    expect_rejected(":3", "range start");
    expect_rejected("1:9:", "range step");
    expect_rejected("1:2:3:4", "at most two");
    expect_rejected("5:1", "after its end");
    expect_rejected("1:9:0", "range step '0'");
    expect_rejected("1:9:-1", "range step '-1' must be a number from 0.000001 to 1000000");
    expect_rejected("1e-320", "'1e-320' must be a number from 0.000001"); /* a subnormal */
    expect_rejected("0.0000009", "'0.0000009' must be a number from 0.000001");
    expect_rejected("1e308", "to 1000000"); /* ratios of it would overflow to inf */
    expect_rejected("1:1000001", "to 1000000");
    expect_rejected("2,1:x", "'1:x'");
    expect_rejected("1:100000", "more than");
    expect_rejected("1,2 3", "'2 3'");
    expect_rejected("1111111111111111111111111111111111111111111111111111111111111111111111",
                    "longer than");
}

Test(theory_list, rejects_lists_longer_than_capacity) {
    bneck_error err = {{0}};
    /* Each range fits; together they do not. */
    cr_expect_eq(theory_parse_list("--beta", "1:4000,1:4000", &parsed, &err), -1);
    cr_expect(strstr(err.message, "--beta") && strstr(err.message, "longer than"), "%s",
              err.message);
    cr_expect_eq(theory_parse_list("--beta", "1:4096", &parsed, &err), 0, "%s", err.message);
    cr_expect_eq(parsed.count, THEORY_LIST_MAX);
}

Test(theory_list, null_text_is_a_missing_value) {
    bneck_error err = {{0}};
    cr_expect_eq(theory_parse_list("--k", NULL, &parsed, &err), -1);
    cr_expect(strstr(err.message, "--k: missing value") != NULL, "%s", err.message);
}
