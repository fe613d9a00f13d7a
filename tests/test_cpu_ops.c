/* CPU ops: forward results against plain direct loops, every backward against central
 * finite differences of a scalar loss L = sum(y * r) with a fixed random r (so dy = r),
 * and the gradient conventions of cpu_ops.h (parameter gradients add, dx is written or
 * added as told, NULL dx). */
#include "backend/cpu/cpu_conv_direct.h"
#include "backend/cpu/cpu_conv_dnnl.h"
#include "backend/cpu/cpu_gemm.h"
#include "backend/cpu/cpu_layout.h"
#include "backend/cpu/cpu_ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tunable in cpu_conv.c (not in the header): upper bound of the im2col buffer in floats. */
extern size_t bneck_cpu_conv_chunk_floats;

/* ---- helpers --------------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

static float rng_uniform(rng_t *r, float lo, float hi) {
    double u = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    return p;
}

static float *random_floats(rng_t *r, size_t n, float lo, float hi) {
    float *p = alloc_floats(n);
    for (size_t i = 0; i < n; i++) p[i] = rng_uniform(r, lo, hi);
    return p;
}

static float *copy_floats(const float *src, size_t n) {
    float *p = alloc_floats(n);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static void fill(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static int close_enough(double got, double want, double atol, double rtol) {
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* Compares got[i] with want[i]; reports the first few mismatches, then fails if any. */
static void expect_close(const char *what, const float *got, const double *want, size_t n,
                         double atol, double rtol) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!close_enough(got[i], want[i], atol, rtol)) {
            if (bad < 5)
                cr_log_error("%s[%zu]: got %.8g, want %.8g", what, i, (double)got[i], want[i]);
            bad++;
        }
    }
    cr_assert_eq(bad, 0, "%s: %zu of %zu values differ", what, bad, n);
}

/* Gradient returned by a backward op that added into a buffer pre-filled with `before`. */
static double *added(const float *after, const float *before, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    cr_assert_not_null(d);
    for (size_t i = 0; i < n; i++) d[i] = (double)after[i] - (double)before[i];
    return d;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss() with respect to each param[i], compared with analytic[i]
 * (the gradient the backward op produced). */
#define FD_STEP 1e-2f
static void check_fd(const char *what, float *param, const double *analytic, size_t n, loss_fn loss,
                     void *ctx, double atol, double rtol) {
    size_t bad = 0;
    double max_abs = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float saved = param[i];
        const float plus = saved + FD_STEP, minus = saved - FD_STEP;
        param[i] = plus;
        const double lp = loss(ctx);
        param[i] = minus;
        const double lm = loss(ctx);
        param[i] = saved;
        const double fd = (lp - lm) / ((double)plus - (double)minus);
        if (fabs(fd) > max_abs) max_abs = fabs(fd);
        if (!close_enough(analytic[i], fd, atol, rtol)) {
            if (bad < 5)
                cr_log_error("%s[%zu]: backward %.8g, finite difference %.8g", what, i, analytic[i],
                             fd);
            bad++;
        }
    }
    cr_assert_eq(bad, 0, "%s: %zu of %zu gradients disagree with finite differences", what, bad, n);
    cr_assert_gt(max_abs, 1e-3, "%s: gradient is trivially zero", what);
}

#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

/* ---- GEMM ------------------------------------------------------------------------------ */

Test(cpu_gemm, all_transpose_forms_with_leading_dimensions) {
    rng_t r = {0x1234};
    const int m = 5, n = 7, k = 4, pad = 3;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            /* stored shapes: A is m x k ('N') or k x m ('T'); B is k x n or n x k */
            const int a_rows = ta ? k : m, a_cols = ta ? m : k;
            const int b_rows = tb ? n : k, b_cols = tb ? k : n;
            const int lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
            float *a = random_floats(&r, (size_t)a_rows * lda, -1, 1);
            float *b = random_floats(&r, (size_t)b_rows * ldb, -1, 1);
            float *c = random_floats(&r, (size_t)m * ldc, -1, 1);
            float *c0 = copy_floats(c, (size_t)m * ldc);
            const float alpha = 0.75f, beta = -0.5f;
            cpu_gemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < ldc; j++) {
                    double want = c0[i * ldc + j]; /* padding columns untouched */
                    if (j < n) {
                        double s = 0.0;
                        for (int p = 0; p < k; p++) {
                            double av = ta ? a[p * lda + i] : a[i * lda + p];
                            double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                            s += av * bv;
                        }
                        want = alpha * s + beta * c0[i * ldc + j];
                    }
                    cr_assert(close_enough(c[i * ldc + j], want, 1e-5, 1e-5),
                              "trans %c%c C[%d][%d] = %g, want %g", ta ? 'T' : 'N', tb ? 'T' : 'N',
                              i, j, (double)c[i * ldc + j], want);
                }
            }
            free(a);
            free(b);
            free(c);
            free(c0);
        }
    }
}

Test(cpu_gemm, beta_zero_ignores_nan_in_c) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c[4];
    fill(c, 4, NAN);
    cpu_gemm('N', 'N', 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
    const double want[4] = {4, 5, 10, 11};
    expect_close("C", c, want, 4, 0, 0);
}

Test(cpu_gemm, threads_and_library_name) {
    cpu_set_threads(1);
    cr_assert_eq(cpu_threads(), 1);
    cpu_set_threads(2);
    cr_assert_eq(cpu_threads(), 2);
    const char *name = cpu_gemm_library();
    cr_assert_not_null(name);
#if defined(BNECK_GEMM_DNNL)
    cr_assert(strncmp(name, "oneDNN ", 7) == 0, "library name '%s'", name);
#else
    cr_assert(strncmp(name, "OpenBLAS", 8) == 0, "library name '%s'", name);
#endif
}

/* ---- convolution ----------------------------------------------------------------------- */

typedef struct {
    float *y, *x, *w, *b, *r, *ws;
    int batch, height, width, cin, cout, k;
} conv_ctx;

static size_t conv_in_size(const conv_ctx *c) {
    return (size_t)c->cin * c->batch * c->height * c->width;
}
static size_t conv_out_size(const conv_ctx *c) {
    return (size_t)c->cout * c->batch * c->height * c->width;
}
static size_t conv_w_size(const conv_ctx *c) { return (size_t)c->cout * c->cin * c->k * c->k; }

static double conv_loss(void *p) {
    conv_ctx *c = p;
    cpu_conv2d_forward(c->y, c->x, c->w, c->b, c->ws, c->batch, c->height, c->width, c->cin,
                       c->cout, c->k);
    return dot(c->y, c->r, conv_out_size(c));
}

/* y[o][n][h][w] = b[o] + sum W[o][i][kh][kw] * x[i][n][h+kh-k/2][w+kw-k/2], zero outside. */
static double *conv_naive(const conv_ctx *c) {
    const int N = c->batch, H = c->height, W = c->width, k = c->k, pad = k / 2;
    double *y = malloc(conv_out_size(c) * sizeof *y);
    cr_assert_not_null(y);
    for (int o = 0; o < c->cout; o++)
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    double s = c->b[o];
                    for (int i = 0; i < c->cin; i++)
                        for (int kh = 0; kh < k; kh++)
                            for (int kw = 0; kw < k; kw++) {
                                int hs = h + kh - pad, ws = w + kw - pad;
                                if (hs < 0 || hs >= H || ws < 0 || ws >= W) continue;
                                s += (double)c->w[((o * c->cin + i) * k + kh) * k + kw] *
                                     c->x[(((size_t)i * N + n) * H + hs) * W + ws];
                            }
                    y[(((size_t)o * N + n) * H + h) * W + w] = s;
                }
    return y;
}

/* Sets the chunk bound so that a chunk holds `images` images (0: default bound). */
static void set_chunk_images(int images, int cin, int k, int height, int width) {
    if (images > 0) bneck_cpu_conv_chunk_floats = (size_t)images * cin * k * k * height * width;
}

static void conv_check(int k, int batch, int cin, int cout, int height, int width,
                       int chunk_images_, int expect_chunks) {
    rng_t r = {0x9e3779b97f4a7c15ull ^ (uint64_t)(k * 1000 + batch * 10 + chunk_images_)};
    set_chunk_images(chunk_images_, cin, k, height, width);
    conv_ctx c = {
        .batch = batch, .height = height, .width = width, .cin = cin, .cout = cout, .k = k};
    const size_t nx = conv_in_size(&c), ny = conv_out_size(&c), nw = conv_w_size(&c);
    c.x = random_floats(&r, nx, -1, 1);
    c.w = random_floats(&r, nw, -0.5f, 0.5f);
    c.b = random_floats(&r, (size_t)cout, -0.5f, 0.5f);
    c.r = random_floats(&r, ny, -1, 1);
    c.y = alloc_floats(ny);
    const size_t wsn = cpu_conv2d_workspace_floats(batch, height, width, cin, k);
    if (k == 1) {
        cr_assert_eq(wsn, 0, "1x1 convolution needs no workspace");
        c.ws = NULL;
    } else {
        /* chunks of ceil(batch/chunks) images; col rows may be padded by up to 32 floats */
        const size_t rows = (size_t)cin * k * k;
        const size_t cols = (size_t)((batch + expect_chunks - 1) / expect_chunks) * height * width;
        cr_assert(wsn >= rows * cols && wsn <= rows * (cols + 32),
                  "workspace %zu floats, want %zu x (%zu columns + padding) for %d chunks", wsn,
                  rows, cols, expect_chunks);
        c.ws = alloc_floats(wsn); /* exact size: ASan catches any overrun */
        fill(c.ws, wsn, NAN);     /* stale workspace must never be read */
    }

    /* forward against the direct loops */
    fill(c.y, ny, NAN);
    cpu_conv2d_forward(c.y, c.x, c.w, c.b, c.ws, batch, height, width, cin, cout, k);
    double *want = conv_naive(&c);
    expect_close("conv forward y", c.y, want, ny, 1e-5, 1e-5);
    free(want);

    /* backward, adding into pre-filled gradients */
    float *dx0 = random_floats(&r, nx, -1, 1), *dw0 = random_floats(&r, nw, -1, 1),
          *db0 = random_floats(&r, (size_t)cout, -1, 1);
    float *dx = copy_floats(dx0, nx), *dw = copy_floats(dw0, nw),
          *db = copy_floats(db0, (size_t)cout);
    if (c.ws) fill(c.ws, wsn, NAN);
    cpu_conv2d_backward(dx, dw, db, GRAD_ACCUMULATE, c.r, c.x, c.w, c.ws, batch, height, width, cin,
                        cout, k);
    double *gx = added(dx, dx0, nx), *gw = added(dw, dw0, nw), *gb = added(db, db0, (size_t)cout);
    check_fd("conv dx", c.x, gx, nx, conv_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("conv dweight", c.w, gw, nw, conv_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("conv dbias", c.b, gb, (size_t)cout, conv_loss, &c, FD_ATOL, FD_RTOL);

    /* dx NULL: the weight and bias gradients are unchanged */
    float *dw2 = alloc_floats(nw), *db2 = alloc_floats((size_t)cout);
    fill(dw2, nw, 0);
    fill(db2, (size_t)cout, 0);
    if (c.ws) fill(c.ws, wsn, NAN);
    cpu_conv2d_backward(NULL, dw2, db2, GRAD_ACCUMULATE, c.r, c.x, c.w, c.ws, batch, height, width,
                        cin, cout, k);
    expect_close("conv dweight (dx NULL)", dw2, gw, nw, 1e-5, 1e-5);
    expect_close("conv dbias (dx NULL)", db2, gb, (size_t)cout, 1e-5, 1e-5);

    free(dw2);
    free(db2);
    free(gx);
    free(gw);
    free(gb);
    free(dx);
    free(dw);
    free(db);
    free(dx0);
    free(dw0);
    free(db0);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(c.y);
    free(c.ws);
}

Test(cpu_conv, k1_gradients) { conv_check(1, 2, 3, 4, 5, 6, 0, 1); }
Test(cpu_conv, k3_gradients_one_chunk) { conv_check(3, 2, 3, 4, 5, 6, 0, 1); }
Test(cpu_conv, k3_gradients_two_chunks) { conv_check(3, 2, 3, 4, 5, 6, 1, 2); }
Test(cpu_conv, k5_gradients_two_chunks) { conv_check(5, 2, 3, 4, 6, 6, 1, 2); }
/* 3 images, at most 2 per chunk: chunks of 2 and 1 */
Test(cpu_conv, k5_gradients_uneven_chunks) { conv_check(5, 3, 3, 4, 5, 6, 2, 2); }
/* kernel wider than the map: every tap of some rows falls in the padding */
Test(cpu_conv, k5_gradients_tiny_map) { conv_check(5, 2, 2, 3, 2, 3, 1, 2); }

Test(cpu_conv, forward_matches_direct_loops_for_every_chunking) {
    rng_t r = {77};
    const int batch = 5, height = 7, width = 4, cin = 6, cout = 5;
    for (int k = 1; k <= 5; k += 2) {
        for (int images = 1; images <= batch; images++) {
            set_chunk_images(images, cin, k, height, width);
            conv_ctx c = {
                .batch = batch, .height = height, .width = width, .cin = cin, .cout = cout, .k = k};
            c.x = random_floats(&r, conv_in_size(&c), -1, 1);
            c.w = random_floats(&r, conv_w_size(&c), -1, 1);
            c.b = random_floats(&r, (size_t)cout, -1, 1);
            c.y = alloc_floats(conv_out_size(&c));
            const size_t wsn = cpu_conv2d_workspace_floats(batch, height, width, cin, k);
            c.ws = wsn ? alloc_floats(wsn) : NULL;
            if (wsn) fill(c.ws, wsn, NAN);
            cpu_conv2d_forward(c.y, c.x, c.w, c.b, c.ws, batch, height, width, cin, cout, k);
            double *want = conv_naive(&c);
            expect_close("conv forward y", c.y, want, conv_out_size(&c), 1e-5, 1e-5);
            free(want);
            free(c.x);
            free(c.w);
            free(c.b);
            free(c.y);
            free(c.ws);
        }
    }
}

/* 1x1 forward with enough input channels to read x in copied column blocks (128 or more),
 * over more columns than one block (2048) and a shorter last block; with and without bias. */
Test(cpu_conv, k1_forward_wide_input_many_column_blocks) {
    rng_t r = {79};
    const int batch = 3, height = 30, width = 31, cin = 130, cout = 3;
    conv_ctx c = {
        .batch = batch, .height = height, .width = width, .cin = cin, .cout = cout, .k = 1};
    c.x = random_floats(&r, conv_in_size(&c), -1, 1);
    c.w = random_floats(&r, conv_w_size(&c), -1, 1);
    c.b = random_floats(&r, (size_t)cout, -1, 1);
    c.y = alloc_floats(conv_out_size(&c));
    fill(c.y, conv_out_size(&c), NAN);
    cpu_conv2d_forward(c.y, c.x, c.w, c.b, NULL, batch, height, width, cin, cout, 1);
    double *want = conv_naive(&c);
    expect_close("1x1 forward y", c.y, want, conv_out_size(&c), 1e-4, 1e-5);
    free(want);
    fill(c.y, conv_out_size(&c), NAN);
    cpu_conv2d_forward(c.y, c.x, c.w, NULL, NULL, batch, height, width, cin, cout, 1);
    for (int o = 0; o < cout; o++) c.b[o] = 0.0f;
    want = conv_naive(&c);
    expect_close("1x1 forward y without bias", c.y, want, conv_out_size(&c), 1e-4, 1e-5);
    free(want);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.y);
}

/* 1x1 backward over more columns than one of its internal copy blocks (2048): the weight
 * gradient, and the input gradient added into earlier values and written over NaN, against
 * plain sums. */
static void k1_backward_check(int cin, int cout) {
    rng_t r = {78 + (uint64_t)cin};
    const int batch = 3, height = 30, width = 31;
    const size_t plane = (size_t)batch * height * width, nx = (size_t)cin * plane;
    const size_t nw = (size_t)cout * cin;
    float *x = random_floats(&r, nx, -1, 1), *w = random_floats(&r, nw, -1, 1);
    float *dy = random_floats(&r, (size_t)cout * plane, -1, 1);
    float *dw0 = random_floats(&r, nw, -1, 1), *dw = copy_floats(dw0, nw);
    float *dx0 = random_floats(&r, nx, -1, 1), *dx = copy_floats(dx0, nx);
    float *db = alloc_floats((size_t)cout);
    fill(db, (size_t)cout, 0);
    cpu_conv2d_backward(dx, dw, db, GRAD_ACCUMULATE, dy, x, w, NULL, batch, height, width, cin,
                        cout, 1);
    double *want_w = malloc(nw * sizeof *want_w), *want_x = malloc(nx * sizeof *want_x);
    cr_assert(want_w && want_x);
    for (int o = 0; o < cout; o++)
        for (int c = 0; c < cin; c++) {
            double s = dw0[o * cin + c];
            for (size_t p = 0; p < plane; p++) s += (double)dy[o * plane + p] * x[c * plane + p];
            want_w[o * cin + c] = s;
        }
    for (int c = 0; c < cin; c++)
        for (size_t p = 0; p < plane; p++) {
            double s = 0.0;
            for (int o = 0; o < cout; o++) s += (double)w[o * cin + c] * dy[o * plane + p];
            want_x[c * plane + p] = s;
        }
    expect_close("1x1 dweight", dw, want_w, nw, 1e-3, 1e-4);
    fill(dx, nx, NAN);
    cpu_conv2d_backward(dx, NULL, NULL, GRAD_OVERWRITE, dy, x, w, NULL, batch, height, width, cin,
                        cout, 1);
    expect_close("1x1 dx written", dx, want_x, nx, 1e-5, 1e-5);
    for (size_t i = 0; i < nx; i++) want_x[i] += dx0[i];
    memcpy(dx, dx0, nx * sizeof *dx);
    cpu_conv2d_backward(dx, NULL, NULL, GRAD_ACCUMULATE, dy, x, w, NULL, batch, height, width, cin,
                        cout, 1);
    expect_close("1x1 dx added", dx, want_x, nx, 1e-5, 1e-5);
    free(want_w), free(want_x), free(x), free(w), free(dy), free(dw0), free(dw), free(dx0),
        free(dx), free(db);
}

/* Fewer inputs than outputs, more, and many more (the weight gradient over 130 rows). */
Test(cpu_conv, k1_backward_many_column_blocks) {
    k1_backward_check(5, 7);
    k1_backward_check(7, 5);
    k1_backward_check(130, 41);
}

Test(cpu_conv, default_workspace_is_bounded) {
    /* Inception 4's 5x5 conv at batch 128: one image's col matrix is 384*25*64 floats */
    const size_t ws = cpu_conv2d_workspace_floats(128, 8, 8, 384, 5);
    const size_t rows = (size_t)384 * 25;
    cr_assert_leq(ws, bneck_cpu_conv_chunk_floats + rows * 32);
    cr_assert_geq(ws, rows * 64);
    /* a small layer fits the whole batch */
    const size_t small = cpu_conv2d_workspace_floats(4, 8, 8, 3, 3);
    cr_assert(small >= (size_t)27 * 256 && small <= (size_t)27 * (256 + 32), "%zu", small);
    cr_assert_eq(cpu_conv2d_workspace_floats(128, 32, 32, 96, 1), 0);
}

/* Both implementations (cpu_conv_dnnl.h) on their own, whatever the default rule picks.
 * In OpenBLAS builds the oneDNN path falls back to im2col. */
Test(cpu_conv, im2col_path_k3_gradients) {
    bneck_cpu_conv_path = CPU_CONV_PATH_IM2COL;
    conv_check(3, 2, 3, 4, 5, 6, 1, 2);
}
Test(cpu_conv, im2col_path_k5_gradients) {
    bneck_cpu_conv_path = CPU_CONV_PATH_IM2COL;
    conv_check(5, 3, 3, 4, 5, 6, 2, 2);
}
Test(cpu_conv, dnnl_path_k1_gradients) {
    bneck_cpu_conv_path = CPU_CONV_PATH_DNNL;
    conv_check(1, 2, 3, 4, 5, 6, 0, 1);
}
Test(cpu_conv, dnnl_path_k3_gradients) {
    bneck_cpu_conv_path = CPU_CONV_PATH_DNNL;
    conv_check(3, 2, 3, 4, 5, 6, 0, 1);
}
Test(cpu_conv, dnnl_path_k5_gradients_tiny_map) {
    bneck_cpu_conv_path = CPU_CONV_PATH_DNNL;
    conv_check(5, 2, 2, 3, 2, 3, 0, 1);
}

/* The default rule with 16 input channels: every direction on oneDNN for k > 1. */
Test(cpu_conv, default_path_k3_gradients_wide_input) { conv_check(3, 2, 16, 4, 5, 6, 0, 1); }

/* One forward and one backward of both implementations on the same data, with channel
 * counts that fill oneDNN's 16-channel blocks unevenly, and pre-filled gradients. */
static void conv_paths_agree(int k, int batch, int height, int width, int cin, int cout,
                             int with_bias, int with_dx) {
    rng_t r = {0x5eed ^ (uint64_t)(k * 7 + cin * 131 + cout)};
    const size_t plane = (size_t)batch * height * width;
    const size_t nx = (size_t)cin * plane, ny = (size_t)cout * plane;
    const size_t nw = (size_t)cout * cin * k * k;
    float *x = random_floats(&r, nx, -1, 1), *w = random_floats(&r, nw, -1, 1);
    float *b = with_bias ? random_floats(&r, (size_t)cout, -1, 1) : NULL;
    float *dy = random_floats(&r, ny, -1, 1);
    float *dx0 = random_floats(&r, nx, -1, 1), *dw0 = random_floats(&r, nw, -1, 1),
          *db0 = random_floats(&r, (size_t)cout, -1, 1);
    const size_t wsn = cpu_conv2d_workspace_floats(batch, height, width, cin, k);
    float *ws = alloc_floats(wsn ? wsn : 1);
    float *y[2], *dx[2], *dw[2], *db[2];
    for (int path = 0; path < 2; path++) {
        bneck_cpu_conv_path = path ? CPU_CONV_PATH_DNNL : CPU_CONV_PATH_IM2COL;
        y[path] = alloc_floats(ny);
        fill(y[path], ny, NAN);
        cpu_conv2d_forward(y[path], x, w, b, ws, batch, height, width, cin, cout, k);
        dx[path] = copy_floats(dx0, nx);
        dw[path] = copy_floats(dw0, nw);
        db[path] = copy_floats(db0, (size_t)cout);
        cpu_conv2d_backward(with_dx ? dx[path] : NULL, dw[path], db[path], GRAD_ACCUMULATE, dy, x,
                            w, ws, batch, height, width, cin, cout, k);
    }
    size_t largest = nx > ny ? nx : ny;
    if (nw > largest) largest = nw;
    double *want = malloc(largest * sizeof *want);
    cr_assert_not_null(want);
    const double tol = 1e-4 * cin * k * k; /* float sums of different order */
    for (size_t i = 0; i < ny; i++) want[i] = y[0][i];
    expect_close("y (oneDNN vs im2col)", y[1], want, ny, tol, 1e-4);
    if (with_dx) {
        for (size_t i = 0; i < nx; i++) want[i] = dx[0][i];
        expect_close("dx (oneDNN vs im2col)", dx[1], want, nx, tol, 1e-4);
    } else {
        /* without dx, each path's filter and bias gradients are those it gives with dx */
        for (int path = 0; path < 2; path++) {
            bneck_cpu_conv_path = path ? CPU_CONV_PATH_DNNL : CPU_CONV_PATH_IM2COL;
            float *with_dx_dx = copy_floats(dx0, nx), *with_dx_dw = copy_floats(dw0, nw);
            float *with_dx_db = copy_floats(db0, (size_t)cout);
            cpu_conv2d_backward(with_dx_dx, with_dx_dw, with_dx_db, GRAD_ACCUMULATE, dy, x, w, ws,
                                batch, height, width, cin, cout, k);
            for (size_t i = 0; i < nw; i++) want[i] = with_dx_dw[i];
            expect_close("dweight without dx (as with it)", dw[path], want, nw, 0, 0);
            for (int c = 0; c < cout; c++) want[c] = with_dx_db[c];
            expect_close("dbias without dx (as with it)", db[path], want, (size_t)cout, 0, 0);
            free(with_dx_dx), free(with_dx_dw), free(with_dx_db);
        }
    }
    for (size_t i = 0; i < nw; i++) want[i] = dw[0][i];
    expect_close("dweight (oneDNN vs im2col)", dw[1], want, nw, 1e-4 * plane, 1e-4);
    for (int c = 0; c < cout; c++) want[c] = db[0][c];
    expect_close("dbias (oneDNN vs im2col)", db[1], want, (size_t)cout, 1e-4 * plane, 1e-4);
    for (int path = 0; path < 2; path++) {
        free(y[path]);
        free(dx[path]);
        free(dw[path]);
        free(db[path]);
    }
    free(want);
    free(ws);
    free(x);
    free(w);
    free(b);
    free(dy);
    free(dx0);
    free(dw0);
    free(db0);
}

Test(cpu_conv, dnnl_and_im2col_paths_agree) {
    conv_paths_agree(3, 4, 9, 7, 20, 35, 1, 1);
    conv_paths_agree(5, 3, 8, 8, 33, 17, 1, 1);
    conv_paths_agree(5, 2, 6, 5, 3, 12, 0, 0); /* no bias, no dx: the network's first layer */
    conv_paths_agree(3, 5, 4, 4, 48, 16, 1, 0);
    conv_paths_agree(1, 3, 5, 5, 24, 40, 1, 1);
}

/* The direct kernel (forced by CPU_CONV_PATH_DIRECT) against im2col + GEMM: the forward
 * pass, the input gradient written over NaN and added into earlier values, and the weight
 * and bias gradients added into earlier values, on maps of one and two vectors' width
 * with tiles that the channels (and the weight gradient's in*k*k columns) fill partly. */
static void direct_check(int k, int batch, int cin, int cout, int height, int width) {
    cr_assert(cpu_conv_direct_fits(height, width, cout) && cpu_conv_direct_fits(height, width, cin),
              "%dx%d maps with %d and %d channels should fit the direct kernel", height, width,
              cin, cout);
    rng_t r = {0xd1ec7 ^ (uint64_t)(k * 10000 + cin * 100 + cout)};
    const size_t plane = (size_t)batch * height * width;
    const size_t nx = (size_t)cin * plane, ny = (size_t)cout * plane;
    const size_t nw = (size_t)cout * cin * k * k;
    float *x = random_floats(&r, nx, -1, 1), *w = random_floats(&r, nw, -1, 1);
    float *b = random_floats(&r, (size_t)cout, -1, 1), *dy = random_floats(&r, ny, -1, 1);
    float *dx_earlier = random_floats(&r, nx, -1, 1), *dw_earlier = random_floats(&r, nw, -1, 1);
    float *db_earlier = random_floats(&r, (size_t)cout, -1, 1);
    const size_t wsn = cpu_conv2d_workspace_floats(batch, height, width, cin, k);
    float *ws = alloc_floats(wsn ? wsn : 1);
    float *y[2], *dx_written[2], *dx_added[2], *dw[2], *db[2];
    for (int path = 0; path < 2; path++) {
        bneck_cpu_conv_path = path ? CPU_CONV_PATH_DIRECT : CPU_CONV_PATH_IM2COL;
        y[path] = alloc_floats(ny);
        fill(y[path], ny, NAN);
        cpu_conv2d_forward(y[path], x, w, b, ws, batch, height, width, cin, cout, k);
        dx_written[path] = alloc_floats(nx);
        fill(dx_written[path], nx, NAN);
        cpu_conv2d_backward(dx_written[path], NULL, NULL, GRAD_OVERWRITE, dy, x, w, ws, batch,
                            height, width, cin, cout, k);
        dx_added[path] = copy_floats(dx_earlier, nx);
        dw[path] = copy_floats(dw_earlier, nw);
        db[path] = copy_floats(db_earlier, (size_t)cout);
        cpu_conv2d_backward(dx_added[path], dw[path], db[path], GRAD_ACCUMULATE, dy, x, w, ws,
                            batch, height, width, cin, cout, k);
    }
    bneck_cpu_conv_path = CPU_CONV_PATH_AUTO;
    size_t largest = nx > ny ? nx : ny;
    if (nw > largest) largest = nw;
    double *want = malloc(largest * sizeof *want);
    cr_assert_not_null(want);
    const double tol = 1e-5 * (cin > cout ? cin : cout) * k * k; /* sums in another order */
    for (size_t i = 0; i < ny; i++) want[i] = y[0][i];
    expect_close("y (direct vs im2col)", y[1], want, ny, tol, 1e-5);
    for (size_t i = 0; i < nx; i++) want[i] = dx_written[0][i];
    expect_close("dx written (direct vs im2col)", dx_written[1], want, nx, tol, 1e-5);
    for (size_t i = 0; i < nx; i++) want[i] = dx_added[0][i];
    expect_close("dx added (direct vs im2col)", dx_added[1], want, nx, tol, 1e-5);
    for (size_t i = 0; i < nw; i++) want[i] = dw[0][i];
    expect_close("dweight added (direct vs im2col)", dw[1], want, nw, 1e-5 * plane, 1e-5);
    for (int c = 0; c < cout; c++) want[c] = db[0][c];
    expect_close("dbias added (direct vs im2col)", db[1], want, (size_t)cout, 1e-5 * plane, 1e-5);
    for (int path = 0; path < 2; path++)
        free(y[path]), free(dx_written[path]), free(dx_added[path]), free(dw[path]), free(db[path]);
    free(want), free(ws), free(x), free(w), free(b), free(dy), free(dx_earlier), free(dw_earlier),
        free(db_earlier);
}

Test(cpu_conv, direct_path_matches_im2col) {
    const int v = cpu_conv_direct_vector_floats();
    /* The tiles named are AVX-512's (cpu_conv_direct.c); other builds pad these otherwise. */
    direct_check(3, 2, 3, 6, 8, v);      /* tiles 6x4 forward, 3x8 back; 6x4 of 6x28 weights */
    direct_check(5, 2, 5, 7, 8, v);      /* 7 outputs: 4x4 tiles, one half empty; 4x6 of 8x126 */
    direct_check(3, 3, 7, 13, 8, 2 * v); /* 13 outputs in 3x8 tiles, 7 inputs in 4x4; 3x8 of 15x64 */
    direct_check(5, 1, 24, 48, 16, 2 * v);
    direct_check(3, 2, 4, 6, 4, 3 * v); /* rows of 3 vectors: the weight gradient's row loop */
    direct_check(1, 2, 5, 7, 8, v);     /* 1x1: only the weight gradient is direct */
}

/* Gradients by finite differences with the direct kernel doing every pass it can. */
Test(cpu_conv, direct_path_gradients) {
    const int v = cpu_conv_direct_vector_floats();
    cr_assert(cpu_conv_direct_fits(8, v, 4) && cpu_conv_direct_fits(8, v, 3));
    bneck_cpu_conv_path = CPU_CONV_PATH_DIRECT;
    conv_check(3, 2, 3, 4, 8, v, 0, 1);
    conv_check(5, 1, 3, 4, 8, v, 0, 1);
    conv_check(1, 2, 3, 4, 8, v, 0, 1);
    bneck_cpu_conv_path = CPU_CONV_PATH_AUTO;
}

Test(cpu_conv, direct_kernel_refuses_maps_it_does_not_fit) {
    const int v = cpu_conv_direct_vector_floats();
    cr_expect(!cpu_conv_direct_fits(8, v + 1, 6), "a row of a vector and one float");
    /* every tile has an even number of pixel vectors, and 8 divides by each of them */
    cr_expect(!cpu_conv_direct_fits(3, v, 6), "3 vectors: not a whole tile for 6 outputs");
    cr_expect(!cpu_conv_direct_fits(5, v, 3), "5 vectors: not a whole tile for 3 outputs");
    cr_expect(cpu_conv_direct_fits(8, v, 3) && cpu_conv_direct_fits(8, v, 6));
    cr_expect(!cpu_conv_direct_weights_fit(8, v + 1) && cpu_conv_direct_weights_fit(1, v));
}

/* The copies to and from oneDNN's channel-blocked layouts, element by element against the
 * layout's formula (cpu_layout.h), with the vector transposes and with the plain loops:
 * channel counts that fill the last block partly, areas below, at and past whole tiles. */
static void layout_check(int block, int batch, int channels, size_t area) {
    rng_t r = {0xb10c ^ (uint64_t)(block * 1000 + channels * 10 + (int)area)};
    const int blocks = (channels + block - 1) / block;
    const size_t nx = (size_t)channels * (size_t)batch * area;
    const size_t nb = (size_t)blocks * (size_t)block * (size_t)batch * area;
    float *x = random_floats(&r, nx, -1, 1), *base = random_floats(&r, nx, -1, 1);
    float *blocked = alloc_floats(nb), *back = alloc_floats(nx);
    for (int plain = 0; plain < 2; plain++) {
        bneck_cpu_layout_plain = plain;
        fill(blocked, nb, NAN); /* the padding must be written too */
        cpu_layout_cnhw_to_blocked(blocked, x, block, batch, channels, area);
        size_t wrong = 0, first_wrong = 0;
        for (int n = 0; n < batch; n++)
            for (int c = 0; c < blocks * block; c++)
                for (size_t p = 0; p < area; p++) {
                    const size_t at =
                        (((size_t)n * (size_t)blocks + (size_t)(c / block)) * area + p) *
                            (size_t)block +
                        (size_t)(c % block);
                    const float want =
                        c < channels ? x[((size_t)c * (size_t)batch + (size_t)n) * area + p] : 0;
                    if (memcmp(&blocked[at], &want, sizeof want) != 0 && wrong++ == 0)
                        first_wrong = at;
                }
        cr_expect_eq(wrong, 0,
                     "to blocked %d (plain %d), batch %d, %d channels, area %zu: %zu of %zu "
                     "floats wrong, the first at %zu",
                     block, plain, batch, channels, area, wrong, nb, first_wrong);

        fill(back, nx, NAN);
        cpu_layout_blocked_to_cnhw(back, GRAD_OVERWRITE, blocked, block, batch, channels, area);
        cr_expect_eq(memcmp(back, x, nx * sizeof *x), 0,
                     "to CNHW from blocked %d (plain %d), %d channels, area %zu: not the input",
                     block, plain, channels, area);
        memcpy(back, base, nx * sizeof *back);
        cpu_layout_blocked_to_cnhw(back, GRAD_ACCUMULATE, blocked, block, batch, channels, area);
        wrong = 0;
        for (size_t i = 0; i < nx; i++) wrong += back[i] != base[i] + x[i];
        cr_expect_eq(wrong, 0,
                     "added to CNHW from blocked %d (plain %d), %d channels, area %zu: %zu of "
                     "%zu sums wrong",
                     block, plain, channels, area, wrong, nx);
    }
    bneck_cpu_layout_plain = 0;
    free(x), free(base), free(blocked), free(back);
}

Test(cpu_layout, blocked_copies_match_the_layout) {
    const int blocks[3] = {16, 8, 1};
    const int channels[7] = {1, 3, 8, 12, 16, 24, 33};
    const size_t areas[6] = {1, 7, 16, 17, 64, 100};
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 7; c++)
            for (int a = 0; a < 6; a++) layout_check(blocks[b], 3, channels[c], areas[a]);
    layout_check(16, 1, 384, 64); /* one image, the 8x8 stage's widest tensor */
}

#if defined(BNECK_GEMM_DNNL)
/* oneDNN keeps primitives per shape and remembers what its buffers hold within a call:
 * repeated calls with new contents at the same addresses, new addresses, and more shapes
 * than its cache holds must all still compute the right thing. (No workspace: the oneDNN
 * path needs none.) */
Test(cpu_conv, dnnl_path_reuse_and_cache_eviction) {
    bneck_cpu_conv_path = CPU_CONV_PATH_DNNL;
    rng_t r = {4242};
    const int batch = 2, side = 5, cin = 3, cout = 4, k = 3;
    for (int round = 0; round < 3; round++) {
        conv_ctx c = {
            .batch = batch, .height = side, .width = side, .cin = cin, .cout = cout, .k = k};
        c.x = random_floats(&r, conv_in_size(&c), -1, 1);
        c.w = random_floats(&r, conv_w_size(&c), -1, 1);
        c.b = random_floats(&r, (size_t)cout, -1, 1);
        c.y = alloc_floats(conv_out_size(&c));
        for (int repeat = 0; repeat < 2; repeat++) {
            /* same addresses, new contents */
            for (size_t i = 0; i < conv_in_size(&c); i++) c.x[i] = rng_uniform(&r, -1, 1);
            cpu_conv2d_forward(c.y, c.x, c.w, c.b, NULL, batch, side, side, cin, cout, k);
            double *want = conv_naive(&c);
            expect_close("conv forward y (reused primitive)", c.y, want, conv_out_size(&c), 1e-5,
                         1e-5);
            free(want);
        }
        /* backward twice with dy changed in place: the second must not reuse the first's dy */
        float *dy = random_floats(&r, conv_out_size(&c), -1, 1);
        float *dx_first = alloc_floats(conv_in_size(&c));
        float *dx_second = alloc_floats(conv_in_size(&c));
        float *dw = alloc_floats(conv_w_size(&c));
        fill(dx_first, conv_in_size(&c), 0);
        fill(dx_second, conv_in_size(&c), 0);
        cpu_conv2d_backward(dx_first, dw, NULL, GRAD_ACCUMULATE, dy, c.x, c.w, NULL, batch, side,
                            side, cin, cout, k);
        for (size_t i = 0; i < conv_out_size(&c); i++) dy[i] *= -2.0f;
        cpu_conv2d_backward(dx_second, dw, NULL, GRAD_ACCUMULATE, dy, c.x, c.w, NULL, batch, side,
                            side, cin, cout, k);
        double *want = malloc(conv_in_size(&c) * sizeof *want);
        cr_assert_not_null(want);
        for (size_t i = 0; i < conv_in_size(&c); i++) want[i] = -2.0 * dx_first[i];
        expect_close("conv dx after dy changed in place", dx_second, want, conv_in_size(&c), 1e-5,
                     1e-5);
        free(want);
        free(dy);
        free(dx_first);
        free(dx_second);
        free(dw);
        free(c.x);
        free(c.w);
        free(c.b);
        free(c.y);
        /* more shapes than the cache's entries, so the first ones get evicted */
        for (int extra = 1; extra <= 40; extra++) {
            float *x = random_floats(&r, (size_t)extra * batch * 9, -1, 1);
            float *w = random_floats(&r, (size_t)extra * 9, -1, 1);
            float *y = alloc_floats((size_t)batch * 9);
            float *dx = alloc_floats((size_t)extra * batch * 9);
            float *dw = alloc_floats((size_t)extra * 9), db[1] = {0};
            fill(dx, (size_t)extra * batch * 9, 0);
            fill(dw, (size_t)extra * 9, 0);
            cpu_conv2d_forward(y, x, w, NULL, NULL, batch, 3, 3, extra, 1, k);
            cpu_conv2d_backward(dx, dw, db, GRAD_ACCUMULATE, y, x, w, NULL, batch, 3, 3, extra, 1,
                                k);
            free(x);
            free(w);
            free(y);
            free(dx);
            free(dw);
        }
    }
}
#endif

/* ---- batch normalisation ----------------------------------------------------------------- */

typedef struct {
    float *y, *x, *gamma, *beta, *r, *mean, *invstd, *rmean, *rvar;
    float eps;
    int relu, channels;
    size_t plane;
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *c = p;
    cpu_batchnorm_forward_train(c->y, c->mean, c->invstd, c->rmean, c->rvar, c->x, c->gamma,
                                c->beta, c->eps, 0.9f, c->relu, c->channels, c->plane);
    return dot(c->y, c->r, (size_t)c->channels * c->plane);
}

/* Each channel: an offset plus symmetric pairs +-z with |z| in [0.5, 1.5], so that its
 * normalised values stay well away from 0 and the fused ReLU's kink is never crossed by
 * a finite-difference step. */
static float *bn_input(rng_t *r, int channels, size_t plane) {
    float *x = alloc_floats((size_t)channels * plane);
    for (int c = 0; c < channels; c++) {
        float *xc = x + (size_t)c * plane;
        for (size_t i = 0; i < plane; i += 2) {
            float z = rng_uniform(r, 0.5f, 1.5f);
            xc[i] = z;
            if (i + 1 < plane) xc[i + 1] = -z;
        }
        for (size_t i = plane - 1; i > 0; i--) { /* shuffle */
            size_t j = (size_t)(rng_next(r) % (i + 1));
            float t = xc[i];
            xc[i] = xc[j];
            xc[j] = t;
        }
        for (size_t i = 0; i < plane; i++) xc[i] += 2.0f * (float)(c - 1);
    }
    return x;
}

static void bn_grad_check(int relu) {
    rng_t r = {relu ? 31 : 32};
    const int channels = 3;
    const size_t plane = 2 * 3 * 4; /* batch 2, 3x4 maps */
    const size_t n = (size_t)channels * plane;
    bn_ctx c = {.eps = 1e-3f, .relu = relu, .channels = channels, .plane = plane};
    c.x = bn_input(&r, channels, plane);
    c.gamma = random_floats(&r, (size_t)channels, 0.5f, 1.5f);
    c.beta = random_floats(&r, (size_t)channels, -0.05f, 0.05f);
    c.r = random_floats(&r, n, -1, 1);
    c.y = alloc_floats(n);
    c.mean = alloc_floats((size_t)channels);
    c.invstd = alloc_floats((size_t)channels);
    c.rmean = alloc_floats((size_t)channels);
    c.rvar = alloc_floats((size_t)channels);
    fill(c.rmean, (size_t)channels, 0);
    fill(c.rvar, (size_t)channels, 1);
    bn_loss(&c);
    if (relu) { /* the construction keeps pre-activations clear of 0; some are clipped */
        size_t zeros = 0;
        for (size_t i = 0; i < n; i++) zeros += c.y[i] == 0.0f;
        cr_assert(zeros > 0 && zeros < n);
    }
    float *dx0 = random_floats(&r, n, -1, 1), *dg0 = random_floats(&r, (size_t)channels, -1, 1),
          *db0 = random_floats(&r, (size_t)channels, -1, 1);
    float *dx = copy_floats(dx0, n), *dg = copy_floats(dg0, (size_t)channels),
          *db = copy_floats(db0, (size_t)channels);
    cpu_batchnorm_backward(dx, dg, db, GRAD_ACCUMULATE, c.r, c.x, relu ? c.y : NULL, c.gamma,
                           c.mean, c.invstd, channels, plane);
    double *gx = added(dx, dx0, n), *gg = added(dg, dg0, (size_t)channels),
           *gb = added(db, db0, (size_t)channels);
    /* y and batch stats are overwritten by each FD evaluation; the gradients are saved */
    check_fd("batchnorm dx", c.x, gx, n, bn_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("batchnorm dgamma", c.gamma, gg, (size_t)channels, bn_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("batchnorm dbeta", c.beta, gb, (size_t)channels, bn_loss, &c, FD_ATOL, FD_RTOL);

    /* dx NULL still gives dgamma and dbeta */
    bn_loss(&c);
    float *dg2 = alloc_floats((size_t)channels), *db2 = alloc_floats((size_t)channels);
    fill(dg2, (size_t)channels, 0);
    fill(db2, (size_t)channels, 0);
    cpu_batchnorm_backward(NULL, dg2, db2, GRAD_ACCUMULATE, c.r, c.x, relu ? c.y : NULL, c.gamma,
                           c.mean, c.invstd, channels, plane);
    expect_close("batchnorm dgamma (dx NULL)", dg2, gg, (size_t)channels, 1e-5, 1e-5);
    expect_close("batchnorm dbeta (dx NULL)", db2, gb, (size_t)channels, 1e-5, 1e-5);

    free(dg2);
    free(db2);
    free(gx);
    free(gg);
    free(gb);
    free(dx);
    free(dg);
    free(db);
    free(dx0);
    free(dg0);
    free(db0);
    free(c.x);
    free(c.gamma);
    free(c.beta);
    free(c.r);
    free(c.y);
    free(c.mean);
    free(c.invstd);
    free(c.rmean);
    free(c.rvar);
}

Test(cpu_batchnorm, gradients) { bn_grad_check(0); }
Test(cpu_batchnorm, gradients_fused_relu) { bn_grad_check(1); }

Test(cpu_batchnorm, train_normalises_and_updates_running_stats) {
    rng_t r = {5};
    const int channels = 4;
    const size_t plane = 3 * 5 * 5;
    const float eps = 1e-5f, momentum = 0.9f;
    float *x = alloc_floats((size_t)channels * plane);
    for (int c = 0; c < channels; c++) /* different means and spreads, one far off 0 */
        for (size_t i = 0; i < plane; i++)
            x[(size_t)c * plane + i] =
                100.0f * (float)(c == 3) + (float)(c + 1) * rng_uniform(&r, -1, 2);
    float *y = alloc_floats((size_t)channels * plane), gamma[4], beta[4], mean[4], invstd[4];
    float rmean[4] = {0.5f, -1.0f, 0.0f, 3.0f}, rvar[4] = {2.0f, 1.0f, 0.5f, 4.0f};
    fill(gamma, 4, 1);
    fill(beta, 4, 0);
    cpu_batchnorm_forward_train(y, mean, invstd, rmean, rvar, x, gamma, beta, eps, momentum, 0,
                                channels, plane);
    const float rmean0[4] = {0.5f, -1.0f, 0.0f, 3.0f}, rvar0[4] = {2.0f, 1.0f, 0.5f, 4.0f};
    for (int c = 0; c < channels; c++) {
        const float *xc = x + (size_t)c * plane, *yc = y + (size_t)c * plane;
        double m = 0, v = 0, ym = 0, yv = 0;
        for (size_t i = 0; i < plane; i++) m += xc[i];
        m /= (double)plane;
        for (size_t i = 0; i < plane; i++) v += (xc[i] - m) * (xc[i] - m);
        const double var_biased = v / (double)plane, var_unbiased = v / (double)(plane - 1);
        for (size_t i = 0; i < plane; i++) ym += yc[i];
        ym /= (double)plane;
        for (size_t i = 0; i < plane; i++) yv += (yc[i] - ym) * (yc[i] - ym);
        yv /= (double)plane;
        cr_assert(fabs(ym) < 1e-4, "channel %d: output mean %g", c, ym);
        cr_assert(fabs(yv - var_biased / (var_biased + eps)) < 1e-3, "channel %d: output var %g", c,
                  yv);
        cr_assert(close_enough(mean[c], m, 1e-5, 1e-6), "channel %d: batch mean %g, want %g", c,
                  (double)mean[c], m);
        cr_assert(close_enough(invstd[c], 1.0 / sqrt(var_biased + eps), 0, 1e-5),
                  "channel %d: invstd %g", c, (double)invstd[c]);
        const double want_rm = momentum * (double)rmean0[c] + (1 - momentum) * m;
        const double want_rv = momentum * (double)rvar0[c] + (1 - momentum) * var_unbiased;
        cr_assert(close_enough(rmean[c], want_rm, 1e-5, 1e-5),
                  "channel %d: running mean %g, want %g", c, (double)rmean[c], want_rm);
        cr_assert(close_enough(rvar[c], want_rv, 1e-5, 1e-5), "channel %d: running var %g, want %g",
                  c, (double)rvar[c], want_rv);
    }
    /* fused ReLU: the same values clipped at 0 */
    float *y2 = alloc_floats((size_t)channels * plane);
    cpu_batchnorm_forward_train(y2, mean, invstd, rmean, rvar, x, gamma, beta, eps, momentum, 1,
                                channels, plane);
    for (size_t i = 0; i < (size_t)channels * plane; i++)
        cr_assert_eq(y2[i], y[i] > 0 ? y[i] : 0.0f);
    free(x);
    free(y);
    free(y2);
}

Test(cpu_batchnorm, infer_uses_running_stats) {
    rng_t r = {6};
    const int channels = 3;
    const size_t plane = 20;
    const size_t n = (size_t)channels * plane;
    float *x = random_floats(&r, n, -3, 3), *y = alloc_floats(n);
    const float gamma[3] = {1.5f, 0.5f, -1.0f}, beta[3] = {0.1f, -0.2f, 0.3f};
    const float rmean[3] = {0.5f, -1.0f, 0.0f}, rvar[3] = {2.0f, 0.25f, 1.0f}, eps = 1e-3f;
    for (int relu = 0; relu < 2; relu++) {
        cpu_batchnorm_forward_infer(y, x, gamma, beta, rmean, rvar, eps, relu, channels, plane);
        double *want = malloc(n * sizeof *want);
        for (int c = 0; c < channels; c++)
            for (size_t i = 0; i < plane; i++) {
                double v =
                    gamma[c] * ((double)x[c * plane + i] - rmean[c]) / sqrt((double)rvar[c] + eps) +
                    beta[c];
                want[c * plane + i] = relu && v < 0 ? 0 : v;
            }
        expect_close(relu ? "infer y (relu)" : "infer y", y, want, n, 1e-5, 1e-5);
        free(want);
    }
    free(x);
    free(y);
}

/* Everything one training step's BatchNorm computes, for the schedule test below. */
typedef struct bn_outputs {
    float *y, *dx, mean[9], invstd[9], rmean[9], rvar[9], dgamma[9], dbeta[9];
} bn_outputs;

static void bn_step(bn_outputs *o, const float *x, const float *dy, const float *gamma,
                    const float *beta, int channels, size_t plane, grad_store store) {
    for (int c = 0; c < channels; c++) {
        o->rmean[c] = 0.1f * (float)c;
        o->rvar[c] = 1.0f + (float)c;
        o->dgamma[c] = o->dbeta[c] = 0.25f;
    }
    cpu_batchnorm_forward_train(o->y, o->mean, o->invstd, o->rmean, o->rvar, x, gamma, beta, 1e-3f,
                                0.9f, 1, channels, plane);
    cpu_batchnorm_backward(o->dx, o->dgamma, o->dbeta, store, dy, x, o->y, gamma, o->mean,
                           o->invstd, channels, plane);
}

/* With enough channels a thread takes whole channels, with few the (channel, block) tasks
 * are shared out: both add the same block sums in the same order, so every output is the
 * same to the bit for any thread count (3 channels with 2 threads take the second way,
 * 4 and 9 and any count with 1 thread the first). Planes of 2.4 blocks. */
Test(cpu_batchnorm, same_bits_whatever_the_threads_and_schedule) {
    rng_t r = {17};
    const size_t plane = 20000;
    const int channel_counts[] = {3, 4, 9};
    for (size_t k = 0; k < 3; k++) {
        const int channels = channel_counts[k];
        const size_t n = (size_t)channels * plane;
        float *x = random_floats(&r, n, -2, 3), *dy = random_floats(&r, n, -1, 1);
        float gamma[9], beta[9];
        for (int c = 0; c < channels; c++) {
            gamma[c] = rng_uniform(&r, 0.5f, 1.5f);
            beta[c] = rng_uniform(&r, -0.5f, 0.5f);
        }
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            const grad_store store = accumulate ? GRAD_ACCUMULATE : GRAD_OVERWRITE;
            bn_outputs want = {.y = alloc_floats(n), .dx = alloc_floats(n)};
            fill(want.dx, n, 0.5f);
            cpu_set_threads(1);
            bn_step(&want, x, dy, gamma, beta, channels, plane, store);
            for (int threads = 2; threads <= 3; threads++) {
                bn_outputs got = {.y = alloc_floats(n), .dx = alloc_floats(n)};
                fill(got.dx, n, 0.5f);
                cpu_set_threads(threads);
                bn_step(&got, x, dy, gamma, beta, channels, plane, store);
                cr_expect(!memcmp(got.y, want.y, n * sizeof(float)), "y, %d channels, %d threads",
                          channels, threads);
                cr_expect(!memcmp(got.dx, want.dx, n * sizeof(float)),
                          "dx, %d channels, %d threads, %s", channels, threads,
                          accumulate ? "added" : "stored");
                const size_t bytes = (size_t)channels * sizeof(float);
                cr_expect(!memcmp(got.mean, want.mean, bytes) &&
                              !memcmp(got.invstd, want.invstd, bytes) &&
                              !memcmp(got.rmean, want.rmean, bytes) &&
                              !memcmp(got.rvar, want.rvar, bytes),
                          "statistics, %d channels, %d threads", channels, threads);
                cr_expect(!memcmp(got.dgamma, want.dgamma, bytes) &&
                              !memcmp(got.dbeta, want.dbeta, bytes),
                          "dgamma, dbeta, %d channels, %d threads", channels, threads);
                free(got.y);
                free(got.dx);
            }
            free(want.y);
            free(want.dx);
        }
        free(x);
        free(dy);
    }
    cpu_set_threads(1);
}

/* ---- ReLU ------------------------------------------------------------------------------ */

typedef struct {
    float *y, *x, *r;
    size_t n;
} relu_ctx;

static double relu_loss(void *p) {
    relu_ctx *c = p;
    cpu_relu_forward(c->y, c->x, c->n);
    return dot(c->y, c->r, c->n);
}

Test(cpu_relu, forward_and_gradient) {
    rng_t r = {7};
    relu_ctx c = {.n = 40};
    c.x = alloc_floats(c.n);
    for (size_t i = 0; i < c.n; i++) { /* away from the kink at 0 */
        float v = rng_uniform(&r, 0.1f, 1.0f);
        c.x[i] = (i % 3 == 0) ? -v : v;
    }
    c.y = alloc_floats(c.n);
    c.r = random_floats(&r, c.n, -1, 1);
    relu_loss(&c);
    for (size_t i = 0; i < c.n; i++) cr_assert_eq(c.y[i], c.x[i] > 0 ? c.x[i] : 0.0f);
    float *dx0 = random_floats(&r, c.n, -1, 1), *dx = copy_floats(dx0, c.n);
    cpu_relu_backward(dx, c.r, c.y, c.n);
    double *g = added(dx, dx0, c.n);
    check_fd("relu dx", c.x, g, c.n, relu_loss, &c, FD_ATOL, FD_RTOL);
    cpu_relu_backward(NULL, c.r, c.y, c.n);
    free(g);
    free(dx);
    free(dx0);
    free(c.x);
    free(c.y);
    free(c.r);
}

Test(cpu_relu, large_parallel_arrays) {
    const size_t n = (size_t)1 << 18;
    float *x = alloc_floats(n), *y = alloc_floats(n), *dx = alloc_floats(n), *dy = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((long)(i % 7) - 3);
        dy[i] = 1.0f;
        dx[i] = 2.0f;
    }
    cpu_relu_forward(y, x, n);
    cpu_relu_backward(dx, dy, y, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(y[i], x[i] > 0 ? x[i] : 0.0f);
        cr_assert_eq(dx[i], x[i] > 0 ? 3.0f : 2.0f);
    }
    free(x);
    free(y);
    free(dx);
    free(dy);
}

/* ---- pooling ----------------------------------------------------------------------------- */

typedef struct {
    float *y, *x, *r;
    uint8_t *argmax; /* max pool only */
    int planes, height, width, kind; /* 0 max3x3, 1 avg2x2, 2 global avg */
} pool_ctx;

static size_t pool_out_size(const pool_ctx *c) {
    size_t area = (size_t)c->height * c->width;
    return c->kind == 0   ? c->planes * area
           : c->kind == 1 ? c->planes * area / 4
                          : (size_t)c->planes;
}

static double pool_loss(void *p) {
    pool_ctx *c = p;
    if (c->kind == 0)
        cpu_maxpool3x3_forward(c->y, c->argmax, c->x, c->planes, c->height, c->width);
    else if (c->kind == 1)
        cpu_avgpool2x2_forward(c->y, c->x, c->planes, c->height, c->width);
    else
        cpu_global_avgpool_forward(c->y, c->x, c->planes, c->height * c->width);
    return dot(c->y, c->r, pool_out_size(c));
}

/* The max of each window over in-image positions, and in *codes (when non-NULL) the
 * window position of the first maximum in row-major window order: a scan in window order
 * from the first in-image tap, which a larger value or the first NaN replaces. */
static double *maxpool_naive(uint8_t *codes, const float *x, int planes, int H, int W) {
    double *y = malloc((size_t)planes * H * W * sizeof *y);
    for (int p = 0; p < planes; p++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                double m = 0.0;
                int code = -1;
                for (int i = h - 1; i <= h + 1; i++)
                    for (int j = w - 1; j <= w + 1; j++) {
                        if (i < 0 || i >= H || j < 0 || j >= W) continue;
                        const double v = x[((size_t)p * H + i) * W + j];
                        if (code < 0 || v > m || (isnan(v) && !isnan(m))) {
                            m = v;
                            code = (i - h + 1) * 3 + (j - w + 1);
                        }
                    }
                y[((size_t)p * H + h) * W + w] = m;
                if (codes) codes[((size_t)p * H + h) * W + w] = (uint8_t)code;
            }
    return y;
}

/* Distinct values 0.05 apart in random order (negative ones too, so padding would win if
 * it were treated as 0): an FD step of 0.01 never changes a window's argmax. */
static float *spread_values(rng_t *r, size_t n) {
    float *x = alloc_floats(n);
    for (size_t i = 0; i < n; i++) x[i] = 0.05f * (float)i - 0.03f * (float)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next(r) % (i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    return x;
}

static void pool_grad_check(int kind, int planes, int height, int width, uint64_t seed) {
    rng_t r = {seed};
    pool_ctx c = {.planes = planes, .height = height, .width = width, .kind = kind};
    const size_t nx = (size_t)planes * height * width, ny = pool_out_size(&c);
    c.x = kind == 0 ? spread_values(&r, nx) : random_floats(&r, nx, -1, 1);
    c.y = alloc_floats(ny);
    c.argmax = malloc(ny);
    c.r = random_floats(&r, ny, -1, 1);
    pool_loss(&c);
    float *dx0 = random_floats(&r, nx, -1, 1), *dx = copy_floats(dx0, nx);
    if (kind == 0)
        cpu_maxpool3x3_backward(dx, GRAD_ACCUMULATE, c.r, c.argmax, planes, height, width);
    else if (kind == 1)
        cpu_avgpool2x2_backward(dx, GRAD_ACCUMULATE, c.r, planes, height, width);
    else
        cpu_global_avgpool_backward(dx, GRAD_ACCUMULATE, c.r, planes, height * width);
    double *g = added(dx, dx0, nx);
    check_fd(kind == 0   ? "maxpool dx"
             : kind == 1 ? "avgpool dx"
                         : "global avgpool dx",
             c.x, g, nx, pool_loss, &c, FD_ATOL, FD_RTOL);
    /* NULL dx is allowed */
    if (kind == 0)
        cpu_maxpool3x3_backward(NULL, GRAD_ACCUMULATE, c.r, c.argmax, planes, height, width);
    else if (kind == 1)
        cpu_avgpool2x2_backward(NULL, GRAD_ACCUMULATE, c.r, planes, height, width);
    else
        cpu_global_avgpool_backward(NULL, GRAD_ACCUMULATE, c.r, planes, height * width);
    free(g);
    free(dx);
    free(dx0);
    free(c.x);
    free(c.y);
    free(c.argmax);
    free(c.r);
}

/* Planes go through frames in runs (as many as fit in 16 KiB: 45 of 8x8, 13 of 16x16, 3 of
 * 32x32; the study's widths by their own code): the plane counts below make several runs
 * and a shorter last one. */
Test(cpu_pool, maxpool_forward_matches_direct_loops) {
    rng_t r = {8};
    const int sizes[][3] = {{5, 6, 3},  {1, 1, 3},   {1, 4, 3},   {4, 1, 3},  {2, 2, 3},
                            {3, 2, 3},  {32, 32, 7}, {8, 8, 100}, {16, 16, 30}, {8, 16, 20},
                            {1, 8, 9}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int tied = 0; tied <= 1; tied++) {
            const int H = sizes[s][0], W = sizes[s][1], planes = sizes[s][2];
            const size_t n = (size_t)planes * H * W;
            /* all negative: zero padding would win; tied: three values, ties everywhere */
            float *x = random_floats(&r, n, -2, -1);
            if (tied)
                for (size_t i = 0; i < n; i++) x[i] = -1.0f - floorf(3.0f * (x[i] + 2.0f)) / 4;
            float *y = alloc_floats(n), *y_plain = alloc_floats(n);
            uint8_t *codes = malloc(n), *want_codes = malloc(n);
            cpu_maxpool3x3_forward(y, codes, x, planes, H, W);
            cpu_maxpool3x3_forward(y_plain, NULL, x, planes, H, W);
            double *want = maxpool_naive(want_codes, x, planes, H, W);
            expect_close("maxpool y", y, want, n, 0, 0);
            expect_close("maxpool y without argmax", y_plain, want, n, 0, 0);
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(codes[i], want_codes[i],
                             "%dx%d tied %d: output %zu has code %d, want %d", H, W, tied, i,
                             codes[i], want_codes[i]);
            /* the backward pass routes each dy to its code's input (small integers: the
             * sums are exact in any order) */
            float *dy = alloc_floats(n), *dx = alloc_floats(n);
            double *want_dx = calloc(n, sizeof *want_dx);
            for (size_t i = 0; i < n; i++) {
                dy[i] = (float)(i % 5) - 2.0f;
                dx[i] = 1.0f;
                want_dx[i] += 1.0;
            }
            for (int p = 0; p < planes; p++)
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++) {
                        const size_t o = ((size_t)p * H + h) * W + w;
                        const int i = h + want_codes[o] / 3 - 1, j = w + want_codes[o] % 3 - 1;
                        want_dx[((size_t)p * H + i) * W + j] += dy[o];
                    }
            cpu_maxpool3x3_backward(dx, GRAD_ACCUMULATE, dy, codes, planes, H, W);
            expect_close("maxpool dx", dx, want_dx, n, 0, 0);
            free(dy);
            free(dx);
            free(want_dx);
            free(want);
            free(x);
            free(y);
            free(y_plain);
            free(codes);
            free(want_codes);
        }
    }
}

/* NaN and -inf: a NaN in a window wins (its maximum is NaN and the first NaN takes the
 * gradient), as in PyTorch; a window of only -inf hands its gradient to its first in-image
 * position. Planes of numbers, then of only -inf, of NaN and -inf scattered among numbers,
 * and of -inf with a NaN in one corner (so a run of planes through one frame starts with a
 * plane of numbers and holds the others); against maxpool_naive's scan, which the GPU
 * kernel also does. */
Test(cpu_pool, maxpool_nan_wins_and_minus_infinity_windows_keep_their_gradient) {
    rng_t r = {77};
    const int sizes[][2] = {{5, 6}, {1, 1}, {1, 4}, {4, 1}, {8, 8}, {32, 32}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int H = sizes[s][0], W = sizes[s][1], planes = 8;
        const size_t area = (size_t)H * W, n = planes * area;
        float *x = alloc_floats(n);
        for (size_t i = 0; i < n; i++) {
            const size_t p = i / area, in_plane = i % area;
            const uint64_t pick = rng_next(&r) % 20;
            x[i] = p % 4 == 0   ? (float)pick - 10.0f
                   : p % 4 == 1 ? -INFINITY
                   : p % 4 == 2 ? (pick == 0 ? NAN : pick < 8 ? -INFINITY : (float)pick)
                                : (in_plane == area - 1 ? NAN : -INFINITY);
        }
        float *y = alloc_floats(n), *y_plain = alloc_floats(n);
        uint8_t *codes = malloc(n), *want_codes = malloc(n);
        cpu_maxpool3x3_forward(y, codes, x, planes, H, W);
        cpu_maxpool3x3_forward(y_plain, NULL, x, planes, H, W);
        double *want = maxpool_naive(want_codes, x, planes, H, W);
        size_t nans = 0, minus_infinities = 0;
        for (size_t i = 0; i < n; i++) {
            const int same = isnan(want[i]) ? isnan(y[i]) && isnan(y_plain[i])
                                            : y[i] == want[i] && y_plain[i] == want[i];
            cr_assert(same, "%dx%d: output %zu is %g (%g without argmax), want %g", H, W, i,
                      (double)y[i], (double)y_plain[i], want[i]);
            cr_assert_eq(codes[i], want_codes[i], "%dx%d: output %zu (max %g) has code %d, want %d",
                         H, W, i, want[i], codes[i], want_codes[i]);
            nans += isnan(want[i]) != 0;
            minus_infinities += want[i] == -INFINITY;
        }
        cr_assert_gt(nans, 0, "%dx%d: no NaN window", H, W);
        cr_assert_gt(minus_infinities, 0, "%dx%d: no window of only -inf", H, W);
        /* every dy reaches an input: none is dropped at the border */
        float *dy = alloc_floats(n), *dx = alloc_floats(n);
        double *want_dx = calloc(n, sizeof *want_dx);
        for (size_t i = 0; i < n; i++) dy[i] = (float)(i % 5) + 1.0f;
        for (int p = 0; p < planes; p++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    const size_t o = ((size_t)p * H + h) * W + w;
                    const int i = h + want_codes[o] / 3 - 1, j = w + want_codes[o] % 3 - 1;
                    cr_assert(i >= 0 && i < H && j >= 0 && j < W, "output %zu: code %d leaves "
                              "the map", o, want_codes[o]);
                    want_dx[((size_t)p * H + i) * W + j] += dy[o];
                }
        cpu_maxpool3x3_backward(dx, GRAD_OVERWRITE, dy, codes, planes, H, W);
        expect_close("maxpool dx", dx, want_dx, n, 0, 0);
        free(x), free(y), free(y_plain), free(codes), free(want_codes), free(want);
        free(dy), free(dx), free(want_dx);
    }
}

/* Ties of +0 and -0 give the first in window order, bit for bit, with and without argmax
 * (the inference path builds its own tree). */
Test(cpu_pool, maxpool_keeps_the_first_of_tied_zeros_with_and_without_argmax) {
    rng_t r = {31};
    const int sizes[][2] = {{3, 3}, {1, 5}, {5, 1}, {6, 7}, {16, 16}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int H = sizes[s][0], W = sizes[s][1], planes = 4;
        const size_t n = (size_t)planes * H * W;
        float *x = alloc_floats(n), *y = alloc_floats(n), *y_plain = alloc_floats(n);
        const float values[3] = {-1.0f, 0.0f, -0.0f};
        for (size_t i = 0; i < n; i++) x[i] = values[rng_next(&r) % 3];
        uint8_t *codes = malloc(n);
        cpu_maxpool3x3_forward(y, codes, x, planes, H, W);
        cpu_maxpool3x3_forward(y_plain, NULL, x, planes, H, W);
        double *want = maxpool_naive(NULL, x, planes, H, W);
        size_t negative_zeros = 0;
        for (size_t i = 0; i < n; i++) {
            cr_assert(y[i] == want[i] && !signbit(y[i]) == !signbit(want[i]),
                      "%dx%d: output %zu is %g, want %g", H, W, i, (double)y[i], want[i]);
            cr_assert(!signbit(y_plain[i]) == !signbit(want[i]) && y_plain[i] == want[i],
                      "%dx%d: output %zu without argmax is %g, want %g", H, W, i,
                      (double)y_plain[i], want[i]);
            negative_zeros += want[i] == 0.0 && signbit(want[i]);
        }
        cr_assert_gt(negative_zeros, 0, "%dx%d: no window whose first zero is -0", H, W);
        free(x), free(y), free(y_plain), free(codes), free(want);
    }
}

Test(cpu_pool, maxpool_gradient) { pool_grad_check(0, 6, 5, 6, 9); }
Test(cpu_pool, maxpool_gradient_thin_maps) {
    pool_grad_check(0, 2, 1, 5, 10);
    pool_grad_check(0, 2, 5, 1, 11);
    pool_grad_check(0, 3, 2, 3, 12);
}

Test(cpu_pool, maxpool_ties_go_to_first_in_window) {
    /* constant map: each window's first in-image element (row-major) takes its dy */
    const int H = 3, W = 4;
    float x[12], y[12], dy[12], dx[12];
    uint8_t codes[12];
    fill(x, 12, 1.0f);
    for (int i = 0; i < 12; i++) dy[i] = (float)(1 << i);
    fill(dx, 12, 0.0f);
    cpu_maxpool3x3_forward(y, codes, x, 1, H, W);
    cpu_maxpool3x3_backward(dx, GRAD_ACCUMULATE, dy, codes, 1, H, W);
    double want[12] = {0};
    for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
            int i = h > 0 ? h - 1 : 0, j = w > 0 ? w - 1 : 0;
            want[i * W + j] += dy[h * W + w];
        }
    expect_close("maxpool tie dx", dx, want, 12, 0, 0);
}

Test(cpu_pool, avgpool2x2_forward_and_gradient) {
    rng_t r = {11};
    const int planes = 4, H = 4, W = 6;
    float *x = random_floats(&r, (size_t)planes * H * W, -1, 1),
          *y = alloc_floats((size_t)planes * 6);
    cpu_avgpool2x2_forward(y, x, planes, H, W);
    for (int p = 0; p < planes; p++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++) {
                const float *a = x + ((size_t)p * H + 2 * i) * W + 2 * j;
                double want = 0.25 * ((double)a[0] + a[1] + a[W] + a[W + 1]);
                cr_assert(close_enough(y[(p * (H / 2) + i) * (W / 2) + j], want, 1e-6, 1e-6));
            }
    free(x);
    free(y);
    pool_grad_check(1, planes, H, W, 12);
}

Test(cpu_pool, global_avgpool_forward_and_gradient) {
    rng_t r = {13};
    const int planes = 6, area = 20;
    float *x = random_floats(&r, (size_t)planes * area, -1, 1), y[6];
    cpu_global_avgpool_forward(y, x, planes, area);
    for (int p = 0; p < planes; p++) {
        double s = 0;
        for (int i = 0; i < area; i++) s += x[p * area + i];
        cr_assert(close_enough(y[p], s / area, 1e-6, 1e-6));
    }
    free(x);
    pool_grad_check(2, planes, 4, 5, 14);
}

/* ---- dense ------------------------------------------------------------------------------- */

typedef struct {
    float *y, *x, *w, *b, *r;
    int batch, in, out;
} dense_ctx;

static double dense_loss(void *p) {
    dense_ctx *c = p;
    cpu_dense_forward(c->y, c->x, c->w, c->b, c->batch, c->in, c->out);
    return dot(c->y, c->r, (size_t)c->out * c->batch);
}

Test(cpu_dense, forward_and_gradients) {
    rng_t r = {15};
    dense_ctx c = {.batch = 3, .in = 7, .out = 5};
    const size_t nx = (size_t)c.in * c.batch, ny = (size_t)c.out * c.batch,
                 nw = (size_t)c.out * c.in;
    c.x = random_floats(&r, nx, -1, 1);
    c.w = random_floats(&r, nw, -1, 1);
    c.b = random_floats(&r, (size_t)c.out, -1, 1);
    c.r = random_floats(&r, ny, -1, 1);
    c.y = alloc_floats(ny);
    fill(c.y, ny, NAN);
    dense_loss(&c);
    double want[15];
    for (int o = 0; o < c.out; o++)
        for (int n = 0; n < c.batch; n++) {
            double s = c.b[o];
            for (int i = 0; i < c.in; i++) s += (double)c.w[o * c.in + i] * c.x[i * c.batch + n];
            want[o * c.batch + n] = s;
        }
    expect_close("dense y", c.y, want, ny, 1e-5, 1e-5);

    float *dx0 = random_floats(&r, nx, -1, 1), *dw0 = random_floats(&r, nw, -1, 1),
          *db0 = random_floats(&r, (size_t)c.out, -1, 1);
    float *dx = copy_floats(dx0, nx), *dw = copy_floats(dw0, nw),
          *db = copy_floats(db0, (size_t)c.out);
    cpu_dense_backward(dx, dw, db, GRAD_ACCUMULATE, c.r, c.x, c.w, c.batch, c.in, c.out);
    double *gx = added(dx, dx0, nx), *gw = added(dw, dw0, nw), *gb = added(db, db0, (size_t)c.out);
    check_fd("dense dx", c.x, gx, nx, dense_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("dense dweight", c.w, gw, nw, dense_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("dense dbias", c.b, gb, (size_t)c.out, dense_loss, &c, FD_ATOL, FD_RTOL);

    float *dw2 = alloc_floats(nw), *db2 = alloc_floats((size_t)c.out);
    fill(dw2, nw, 0);
    fill(db2, (size_t)c.out, 0);
    cpu_dense_backward(NULL, dw2, db2, GRAD_ACCUMULATE, c.r, c.x, c.w, c.batch, c.in, c.out);
    expect_close("dense dweight (dx NULL)", dw2, gw, nw, 1e-5, 1e-5);
    expect_close("dense dbias (dx NULL)", db2, gb, (size_t)c.out, 1e-5, 1e-5);
    free(dw2);
    free(db2);
    free(gx);
    free(gw);
    free(gb);
    free(dx);
    free(dw);
    free(db);
    free(dx0);
    free(dw0);
    free(db0);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(c.y);
}

/* ---- softmax cross-entropy ------------------------------------------------------------ */

typedef struct {
    float *logits;
    const uint8_t *labels;
    int batch, classes;
} xent_ctx;

static double xent_loss(void *p) {
    xent_ctx *c = p;
    return cpu_softmax_xent(NULL, NULL, c->logits, c->labels, 1.0f, c->batch, c->classes);
}

Test(cpu_softmax_xent, loss_gradient_and_correct_count) {
    rng_t r = {16};
    const int batch = 6, classes = 10;
    const size_t n = (size_t)batch * classes;
    const uint8_t labels[6] = {0, 3, 9, 3, 5, 7};
    xent_ctx c = {.logits = random_floats(&r, n, -2, 2),
                  .labels = labels,
                  .batch = batch,
                  .classes = classes};
    /* make samples 1 and 4 predict their labels */
    c.logits[3 * batch + 1] = 5.0f;
    c.logits[5 * batch + 4] = 5.0f;
    double want_loss = 0;
    int want_correct = 0;
    for (int s = 0; s < batch; s++) {
        double m = -INFINITY, sum = 0;
        int best = 0;
        for (int k = 0; k < classes; k++) {
            double z = c.logits[k * batch + s];
            if (z > m) {
                m = z;
                best = k;
            }
        }
        for (int k = 0; k < classes; k++) sum += exp(c.logits[k * batch + s] - m);
        want_loss += -(c.logits[labels[s] * batch + s] - m - log(sum));
        want_correct += best == labels[s];
    }
    want_loss /= batch;
    cr_assert_geq(want_correct, 2);

    float *d = alloc_floats(n);
    fill(d, n, NAN); /* overwritten, not accumulated */
    int correct = -1;
    const float loss =
        cpu_softmax_xent(d, &correct, c.logits, labels, 1.0f / batch, batch, classes);
    cr_assert(close_enough(loss, want_loss, 1e-6, 1e-6), "loss %g, want %g", (double)loss,
              want_loss);
    cr_assert_eq(correct, want_correct);
    double *g = added(d, (float[60]){0}, n);
    check_fd("softmax-xent dlogits", c.logits, g, n, xent_loss, &c, 1e-4, FD_RTOL);

    /* grad_scale scales the gradient only */
    float *d2 = alloc_floats(n);
    cr_assert(close_enough(cpu_softmax_xent(d2, NULL, c.logits, labels, 3.0f, batch, classes), loss,
                           0, 1e-6));
    for (size_t i = 0; i < n; i++) g[i] = 3.0 * batch * d[i];
    expect_close("dlogits * grad_scale", d2, g, n, 1e-6, 1e-5);
    free(d2);
    free(g);
    free(d);
    free(c.logits);
}

Test(cpu_softmax_xent, stable_for_large_logits) {
    float logits[2 * 3] = {1000.0f, -1000.0f, 999.0f, -999.0f, 0.0f, -1001.0f}; /* [3][2] */
    const uint8_t labels[2] = {1, 1};
    float d[6];
    int correct = 0;
    float loss = cpu_softmax_xent(d, &correct, logits, labels, 0.5f, 2, 3);
    /* sample 0: logits 1000, 999, 0 -> loss = log(1 + e) ; sample 1: -1000, -999, -1001 */
    const double l0 = log(1.0 + exp(1.0)),
                 l1 = -(-999.0 - (-999.0 + log(exp(-1.0) + 1.0 + exp(-2.0))));
    cr_assert(isfinite(loss));
    cr_assert(close_enough(loss, (l0 + l1) / 2, 1e-5, 1e-5), "loss %g", (double)loss);
    cr_assert_eq(correct, 1);
    for (int i = 0; i < 6; i++) cr_assert(isfinite(d[i]));
}

/* ---- Adam and L2 ------------------------------------------------------------------------ */

static void adam_case(adam_eps_form form, const double want_p[3]) {
    float p[3] = {1.0f, -0.5f, 0.2f}, m[3] = {0.1f, -0.2f, 0.0f}, v[3] = {0.01f, 0.04f, 0.0f};
    const float g[3] = {0.5f, -0.3f, 2.0f};
    cpu_adam_step(p, m, v, g, 0.01f, 0.9f, 0.999f, 1e-3f, form, 3, 3);
    const double want_m[3] = {0.14, -0.21, 0.2}, want_v[3] = {0.01024, 0.04005, 0.004};
    expect_close("adam m", m, want_m, 3, 1e-7, 1e-6);
    expect_close("adam v", v, want_v, 3, 1e-7, 1e-6);
    expect_close("adam param", p, want_p, 3, 2e-7, 0);
}

/* Hand-computed (double precision) for lr 0.01, betas 0.9/0.999, eps 1e-3, step 3. */
Test(cpu_adam, keras_form) {
    const double want[3] = {0.997232539, -0.497890753, 0.193711297};
    adam_case(ADAM_EPS_KERAS, want);
}

Test(cpu_adam, pytorch_form) {
    const double want[3] = {0.997206702, -0.497880793, 0.193617389};
    adam_case(ADAM_EPS_PYTORCH, want);
}

Test(cpu_adam, large_parallel_arrays_match_small) {
    const size_t n = (size_t)1 << 17;
    float *p = alloc_floats(n), *m = alloc_floats(n), *v = alloc_floats(n), *g = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        p[i] = 1.0f;
        m[i] = 0.0f;
        v[i] = 0.0f;
        g[i] = (i % 2) ? 0.5f : -0.5f;
    }
    cpu_adam_step(p, m, v, g, 1e-3f, 0.9f, 0.999f, 1e-7f, ADAM_EPS_KERAS, 1, n);
    /* first step: m/sqrt(v) = sign(g) after bias correction, so p moves by lr */
    for (size_t i = 0; i < n; i++)
        cr_assert(close_enough(p[i], (i % 2) ? 1.0 - 1e-3 : 1.0 + 1e-3, 1e-6, 0), "p[%zu] = %g", i,
                  (double)p[i]);
    free(p);
    free(m);
    free(v);
    free(g);
}

Test(cpu_add_scaled, adds_coefficient_times_param) {
    float grad[5] = {1, 2, 3, 4, 5};
    const float param[5] = {1, -1, 0.5f, 0, 2};
    cpu_add_scaled(grad, param, 2e-3f, 5);
    const double want[5] = {1.002, 1.998, 3.001, 4, 5.004};
    expect_close("grad", grad, want, 5, 1e-6, 0);
}

/* ---- GRAD_OVERWRITE: dx written over stale values ---------------------------------------- */

/* One backward op's call on shared random inputs, with its own parameter gradients. */
typedef enum {
    OP_CONV,
    OP_BATCHNORM, /* with the fused ReLU when y is given */
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_GLOBAL_AVGPOOL,
    OP_DENSE,
} overwrite_op;

typedef struct overwrite_case {
    overwrite_op op;
    int batch, side, cin, cout, k;
    const float *x, *y, *w, *dy, *mean, *invstd;
    uint8_t *codes;
    float *workspace;
} overwrite_case;

static void overwrite_case_backward(const overwrite_case *c, float *dx, grad_store store) {
    const size_t plane = (size_t)c->batch * c->side * c->side;
    float *dw = alloc_floats((size_t)c->cout * c->cin * c->k * c->k + 1);
    float *db = alloc_floats((size_t)c->cout + 1);
    fill(dw, (size_t)c->cout * c->cin * c->k * c->k + 1, 0);
    fill(db, (size_t)c->cout + 1, 0);
    const int planes = c->cin * c->batch;
    switch (c->op) {
    case OP_CONV:
        cpu_conv2d_backward(dx, dw, db, store, c->dy, c->x, c->w, c->workspace, c->batch, c->side,
                            c->side, c->cin, c->cout, c->k);
        break;
    case OP_BATCHNORM:
        cpu_batchnorm_backward(dx, dw, db, store, c->dy, c->x, c->y, c->w, c->mean, c->invstd,
                               c->cin, plane);
        break;
    case OP_MAXPOOL:
        cpu_maxpool3x3_backward(dx, store, c->dy, c->codes, planes, c->side, c->side);
        break;
    case OP_AVGPOOL: cpu_avgpool2x2_backward(dx, store, c->dy, planes, c->side, c->side); break;
    case OP_GLOBAL_AVGPOOL:
        cpu_global_avgpool_backward(dx, store, c->dy, planes, c->side * c->side);
        break;
    case OP_DENSE:
        cpu_dense_backward(dx, dw, db, store, c->dy, c->x, c->w, c->batch, c->cin, c->cout);
        break;
    }
    free(dw);
    free(db);
}

/* dx written over NaN (which any read of the old values would carry into it) equals, value
 * for value, dx added into zeros; and added into earlier values it is their sum (within
 * rounding). */
static void expect_overwrite_like_adding_to_zero(const char *what, const overwrite_case *c,
                                                 size_t nx) {
    rng_t r = {0xd00d + nx};
    float *written = alloc_floats(nx), *added_to_zero = alloc_floats(nx);
    float *earlier = random_floats(&r, nx, -1, 1), *added_to_earlier = copy_floats(earlier, nx);
    fill(written, nx, NAN);
    fill(added_to_zero, nx, 0);
    overwrite_case_backward(c, written, GRAD_OVERWRITE);
    overwrite_case_backward(c, added_to_zero, GRAD_ACCUMULATE);
    overwrite_case_backward(c, added_to_earlier, GRAD_ACCUMULATE);
    size_t bad = 0, sums_off = 0, nonzero = 0;
    for (size_t i = 0; i < nx; i++) {
        if (!(written[i] == added_to_zero[i])) {
            if (bad++ < 3)
                cr_log_error("%s: dx[%zu] written %.9g, added to zero %.9g", what, i,
                             (double)written[i], (double)added_to_zero[i]);
        }
        /* within rounding: an op may add its terms into dx one by one */
        sums_off +=
            !close_enough(added_to_earlier[i], (double)earlier[i] + added_to_zero[i], 1e-5, 1e-5);
        nonzero += added_to_zero[i] != 0.0f;
    }
    cr_assert_eq(bad, 0, "%s: %zu of %zu dx values differ from the ones added to zero", what, bad,
                 nx);
    cr_assert_eq(sums_off, 0,
                 "%s: %zu of %zu dx values added into earlier ones are not the "
                 "sums",
                 what, sums_off, nx);
    cr_assert_gt(nonzero, nx / 4, "%s: only %zu of %zu dx values are non-zero", what, nonzero, nx);
    free(written), free(added_to_zero), free(earlier), free(added_to_earlier);
}

static void conv_overwrite_check(cpu_conv_path path, int k, int cin, int cout,
                                 int chunk_images_) {
    rng_t r = {0xc0de + (uint64_t)(k * 100 + cin + chunk_images_)};
    const size_t default_chunk = bneck_cpu_conv_chunk_floats;
    set_chunk_images(chunk_images_, cin, k, 6, 6);
    overwrite_case c = {.op = OP_CONV, .batch = 3, .side = 6, .cin = cin, .cout = cout, .k = k};
    const size_t nx = (size_t)cin * c.batch * 36, ny = (size_t)cout * c.batch * 36;
    float *x = random_floats(&r, nx, -1, 1), *dy = random_floats(&r, ny, -1, 1);
    float *w = random_floats(&r, (size_t)cout * cin * k * k, -1, 1);
    const size_t workspace = cpu_conv2d_workspace_floats(c.batch, 6, 6, cin, k);
    c.x = x, c.dy = dy, c.w = w, c.workspace = alloc_floats(workspace ? workspace : 1);
    bneck_cpu_conv_path = path;
    char what[96];
    snprintf(what, sizeof what, "conv k%d in %d (%s, chunks of %d images)", k, cin,
             path == CPU_CONV_PATH_DNNL     ? "oneDNN"
             : path == CPU_CONV_PATH_IM2COL ? "im2col"
                                            : "auto",
             chunk_images_ ? chunk_images_ : c.batch);
    expect_overwrite_like_adding_to_zero(what, &c, nx);
    bneck_cpu_conv_path = CPU_CONV_PATH_AUTO;
    bneck_cpu_conv_chunk_floats = default_chunk;
    free(x), free(dy), free(w), free(c.workspace);
}

Test(cpu_overwrite, conv_dx_on_every_path) {
    const cpu_conv_path paths[3] = {CPU_CONV_PATH_AUTO, CPU_CONV_PATH_IM2COL, CPU_CONV_PATH_DNNL};
    const int kernels[3] = {1, 3, 5}, inputs[2] = {5, 17}; /* auto: oneDNN from 12 inputs */
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 2; i++)
                conv_overwrite_check(paths[p], kernels[k], inputs[i], 7, 0);
    /* im2col over the batch in chunks of one and two images (each clears its own maps) */
    for (int k = 1; k < 3; k++)
        for (int chunk = 1; chunk <= 2; chunk++)
            conv_overwrite_check(CPU_CONV_PATH_IM2COL, kernels[k], 5, 7, chunk);
}

Test(cpu_overwrite, batchnorm_dx_with_and_without_relu) {
    rng_t r = {0xb0b};
    const int channels = 5, batch = 4, side = 6;
    const size_t plane = (size_t)batch * side * side, n = (size_t)channels * plane;
    float *x = bn_input(&r, channels, plane), *y = alloc_floats(n);
    float *gamma = random_floats(&r, (size_t)channels, 0.5f, 1.5f);
    float *beta = random_floats(&r, (size_t)channels, -0.5f, 0.5f);
    float mean[5], invstd[5], rmean[5] = {0}, rvar[5] = {1, 1, 1, 1, 1};
    float *dy = random_floats(&r, n, -1, 1);
    cpu_batchnorm_forward_train(y, mean, invstd, rmean, rvar, x, gamma, beta, 1e-3f, 0.9f, 1,
                                channels, plane);
    overwrite_case c = {.op = OP_BATCHNORM, .batch = batch, .side = side, .cin = channels,
                        .cout = channels, .k = 1, .x = x, .w = gamma, .dy = dy,
                        .mean = mean, .invstd = invstd};
    expect_overwrite_like_adding_to_zero("batchnorm", &c, n);
    c.y = y;
    expect_overwrite_like_adding_to_zero("batchnorm + ReLU", &c, n);
    free(x), free(y), free(gamma), free(beta), free(dy);
}

Test(cpu_overwrite, pool_and_dense_dx) {
    rng_t r = {0xfeed};
    const int channels = 3, batch = 2, side = 8;
    const size_t nx = (size_t)channels * batch * side * side;
    float *x = random_floats(&r, nx, -1, 1), *y = alloc_floats(nx);
    float *dy = random_floats(&r, nx, -1, 1);
    uint8_t *codes = malloc(nx);
    cr_assert_not_null(codes);
    cpu_maxpool3x3_forward(y, codes, x, channels * batch, side, side);
    overwrite_case c = {.op = OP_MAXPOOL, .batch = batch, .side = side, .cin = channels,
                        .cout = channels, .k = 1, .dy = dy, .codes = codes};
    expect_overwrite_like_adding_to_zero("max pool", &c, nx);
    c.op = OP_AVGPOOL;
    expect_overwrite_like_adding_to_zero("avg pool", &c, nx);
    c.op = OP_GLOBAL_AVGPOOL;
    expect_overwrite_like_adding_to_zero("global avg pool", &c, nx);
    /* dense: 24 input features of a batch of 6 to 10 outputs */
    float *w = random_floats(&r, 240, -1, 1);
    overwrite_case dense = {.op = OP_DENSE, .batch = 6, .cin = 24, .cout = 10, .k = 1,
                            .x = x, .w = w, .dy = dy};
    expect_overwrite_like_adding_to_zero("dense", &dense, 24 * 6);
    free(x), free(y), free(dy), free(codes), free(w);
}
