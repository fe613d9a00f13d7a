/* Convolution (stride 1, "same" zero padding, odd kernel) in CNHW by im2col + GEMM.
 *
 * In CNHW one channel of the whole batch is a contiguous plane of P = N*H*W floats, so a
 * convolution over the batch is one matrix product
 *     y[co][P] = W[co][ci*k*k] x col[ci*k*k][P]
 * where col row (c, kh, kw) is channel c's plane shifted by (kh - k/2, kw - k/2) with zeros
 * where the shift leaves the image. A 1x1 convolution needs no col matrix at all: it is
 * the product with x itself. For k > 1 the batch is processed in chunks of whole images
 * so that the col buffer (the caller's workspace) stays bounded; a chunk's columns inside
 * the full-batch planes of x, y, dy are addressed with leading dimension P, so nothing
 * but col is ever copied.
 *
 * Backward, per chunk: dweight += dy_chunk x col^T, then the col buffer is reused for
 * dcol = W^T x dy_chunk, which col2im adds into dx.
 *
 * Leading dimensions: the weight-gradient product B^T reads B's rows across their K
 * dimension, and when B's row stride is a multiple of a few KiB (as N*H*W is for batch
 * 128) every row falls in the same cache sets and the GEMM runs at half speed or less.
 * So col rows are padded to an odd multiple of 64 bytes, and the 1x1 weight gradient,
 * whose B is x itself, copies x in column blocks into a small padded buffer first. */
#include "backend/cpu/cpu_ops.h"

#include "backend/cpu/cpu_gemm.h"
#include "core/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound on the col buffer, in floats (16 MiB). Not in the header: tests lower it
 * to exercise chunking with small tensors. Change it only before any workspace is sized,
 * since cpu_conv2d_workspace_floats depends on it. */
size_t bneck_cpu_conv_chunk_floats = (size_t)4 << 20;

static void check_dims(const char *op, int batch, int height, int width, int in_channels,
                       int out_channels, int kernel) {
    if (batch < 1 || height < 1 || width < 1 || in_channels < 1 || out_channels < 1 || kernel < 1 ||
        kernel % 2 == 0)
        BNECK_FAIL("%s: bad dimensions batch=%d height=%d width=%d in=%d out=%d kernel=%d", op,
                   batch, height, width, in_channels, out_channels, kernel);
    /* GEMM dimensions are ints: a plane (plus col padding) and a weight row must fit */
    if ((size_t)batch * (size_t)height * (size_t)width > (size_t)INT_MAX - 64 ||
        (size_t)in_channels * (size_t)kernel * (size_t)kernel > (size_t)INT_MAX)
        BNECK_FAIL("%s: tensor too large for int GEMM dimensions (batch=%d %dx%d, in=%d, k=%d)", op,
                   batch, height, width, in_channels, kernel);
}

/* Images per chunk: as many as fit in bneck_cpu_conv_chunk_floats (at least one), then
 * evened out over the chunks that count needs. */
static int chunk_images(int batch, int height, int width, int in_channels, int kernel) {
    size_t per_image =
        (size_t)in_channels * (size_t)kernel * (size_t)kernel * (size_t)height * (size_t)width;
    size_t fit = bneck_cpu_conv_chunk_floats / per_image;
    if (fit < 1) fit = 1;
    if (fit >= (size_t)batch) return batch;
    int chunks = (int)(((size_t)batch + fit - 1) / fit);
    return (batch + chunks - 1) / chunks;
}

/* Row stride of the col matrix for `cols` columns: a multiple of 16 floats (64 bytes)
 * and an odd one, so that consecutive rows spread over the cache sets. */
static size_t col_ld(size_t cols) {
    size_t ld = (cols + 15) / 16 * 16;
    if ((ld / 16) % 2 == 0) ld += 16;
    return ld;
}

size_t cpu_conv2d_workspace_floats(int batch, int height, int width, int in_channels, int kernel) {
    if (kernel == 1) return 0;
    check_dims("cpu_conv2d_workspace_floats", batch, height, width, in_channels, 1, kernel);
    const size_t cols = (size_t)chunk_images(batch, height, width, in_channels, kernel) *
                        (size_t)height * (size_t)width;
    return (size_t)in_channels * (size_t)kernel * (size_t)kernel * col_ld(cols);
}

/* col[(c*k + kh)*k + kw][n][h][w] = x[c][n0 + n][h + kh - k/2][w + kw - k/2] (0 outside). */
static void im2col(float *restrict col, size_t ld, const float *restrict x, int n0, int nb,
                   int height, int width, int channels, int kernel, size_t plane) {
    const int pad = kernel / 2, kk = kernel * kernel, rows = channels * kk;
    const size_t area = (size_t)height * (size_t)width;
#pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < rows; r++) {
        for (int n = 0; n < nb; n++) {
            const int c = r / kk, dh = (r / kernel) % kernel - pad, dw = r % kernel - pad;
            const float *restrict src = x + (size_t)c * plane + (size_t)(n0 + n) * area;
            float *restrict dst = col + (size_t)r * ld + (size_t)n * area;
            /* output columns w whose source w + dw is inside the row: [w0, w1) */
            int w0 = dw < 0 ? -dw : 0, w1 = dw > 0 ? width - dw : width;
            if (w0 > width) w0 = width;
            if (w1 < w0) w1 = w0;
            for (int h = 0; h < height; h++) {
                float *restrict d = dst + (size_t)h * (size_t)width;
                const int hs = h + dh;
                if (hs < 0 || hs >= height) {
                    for (int w = 0; w < width; w++) d[w] = 0.0f;
                    continue;
                }
                const float *restrict s = src + (size_t)hs * (size_t)width;
                for (int w = 0; w < w0; w++) d[w] = 0.0f;
                for (int w = w0; w < w1; w++) d[w] = s[w + dw];
                for (int w = w1; w < width; w++) d[w] = 0.0f;
            }
        }
    }
}

/* dx[c][n0 + n][h + kh - k/2][w + kw - k/2] += col[(c*k + kh)*k + kw][n][h][w] (inside only).
 * One task per (channel, image) so no two threads touch the same dx plane. */
static void col2im_add(float *restrict dx, const float *restrict col, size_t ld, int n0, int nb,
                       int height, int width, int channels, int kernel, size_t plane) {
    const int pad = kernel / 2;
    const size_t area = (size_t)height * (size_t)width;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < channels; c++) {
        for (int n = 0; n < nb; n++) {
            float *restrict dst = dx + (size_t)c * plane + (size_t)(n0 + n) * area;
            for (int kh = 0; kh < kernel; kh++) {
                const int dh = kh - pad;
                const int h0 = dh < 0 ? -dh : 0, h1 = dh > 0 ? height - dh : height;
                for (int kw = 0; kw < kernel; kw++) {
                    const int dw = kw - pad;
                    int w0 = dw < 0 ? -dw : 0, w1 = dw > 0 ? width - dw : width;
                    if (w0 > width) w0 = width;
                    if (w1 < w0) w1 = w0;
                    const int r = (c * kernel + kh) * kernel + kw;
                    const float *restrict src = col + (size_t)r * ld + (size_t)n * area;
                    for (int h = h0; h < h1; h++) {
                        float *restrict d = dst + (size_t)(h + dh) * (size_t)width;
                        const float *restrict s = src + (size_t)h * (size_t)width;
                        for (int w = w0; w < w1; w++) d[w + dw] += s[w];
                    }
                }
            }
        }
    }
}

/* y[co][n0*area ...] = bias[co] for the columns of images [n0, n0 + nb). */
static void fill_bias(float *restrict y, const float *restrict bias, int channels, size_t plane,
                      size_t offset, size_t count) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < channels; c++) {
        float *restrict d = y + (size_t)c * plane + offset;
        const float b = bias[c];
        for (size_t i = 0; i < count; i++) d[i] = b;
    }
}

/* Per-thread scratch for the 1x1 weight gradient, grown on demand and kept (at most
 * DW1X1_SCRATCH_FLOATS plus one block's padding), so steady-state calls never allocate. */
#define DW1X1_SCRATCH_FLOATS ((size_t)1 << 20)
static _Thread_local float *dw1x1_scratch;
static _Thread_local size_t dw1x1_scratch_floats;

/* dweight[co][ci] += dy[co][P] x x[ci][P]^T, with x copied in blocks of columns into a
 * buffer whose row stride keeps the GEMM's B^T packing out of cache-set conflicts. */
static void dweight_1x1(float *dweight, const float *dy, const float *x, int in_channels,
                        int out_channels, size_t plane) {
    size_t block = 2048;
    while (block > 256 && (size_t)in_channels * col_ld(block) > DW1X1_SCRATCH_FLOATS) block /= 2;
    if (block > plane) block = plane;
    const size_t ldb = col_ld(block), need = (size_t)in_channels * ldb;
    if (dw1x1_scratch_floats < need) {
        free(dw1x1_scratch);
        dw1x1_scratch = bneck_alloc_aligned(need * sizeof(float));
        dw1x1_scratch_floats = need;
    }
    float *buf = dw1x1_scratch;
    for (size_t k0 = 0; k0 < plane; k0 += block) {
        const size_t kc = plane - k0 < block ? plane - k0 : block;
#pragma omp parallel for schedule(static)
        for (int c = 0; c < in_channels; c++)
            memcpy(buf + (size_t)c * ldb, x + (size_t)c * plane + k0, kc * sizeof(float));
        cpu_gemm('N', 'T', out_channels, in_channels, (int)kc, 1.0f, dy + k0, (int)plane, buf,
                 (int)ldb, 1.0f, dweight, in_channels);
    }
}

void cpu_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                        float *workspace, int batch, int height, int width, int in_channels,
                        int out_channels, int kernel) {
    check_dims("cpu_conv2d_forward", batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width, plane = (size_t)batch * area;
    const int ld = (int)plane, kdim = in_channels * kernel * kernel;
    if (kernel == 1) {
        if (bias) fill_bias(y, bias, out_channels, plane, 0, plane);
        cpu_gemm('N', 'N', out_channels, ld, in_channels, 1.0f, weight, in_channels, x, ld,
                 bias ? 1.0f : 0.0f, y, ld);
        return;
    }
    if (!workspace) BNECK_FAIL("cpu_conv2d_forward: kernel %d needs a workspace", kernel);
    const int nb_max = chunk_images(batch, height, width, in_channels, kernel);
    for (int n0 = 0; n0 < batch; n0 += nb_max) {
        const int nb = batch - n0 < nb_max ? batch - n0 : nb_max;
        const int cols = nb * (int)area, ldc = (int)col_ld((size_t)cols);
        float *y_chunk = y + (size_t)n0 * area;
        im2col(workspace, (size_t)ldc, x, n0, nb, height, width, in_channels, kernel, plane);
        if (bias) fill_bias(y, bias, out_channels, plane, (size_t)n0 * area, (size_t)cols);
        cpu_gemm('N', 'N', out_channels, cols, kdim, 1.0f, weight, kdim, workspace, ldc,
                 bias ? 1.0f : 0.0f, y_chunk, ld);
    }
}

void cpu_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                         const float *weight, float *workspace, int batch, int height, int width,
                         int in_channels, int out_channels, int kernel) {
    check_dims("cpu_conv2d_backward", batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width, plane = (size_t)batch * area;
    const int ld = (int)plane, kdim = in_channels * kernel * kernel;

    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < out_channels; c++) {
            const float *restrict g = dy + (size_t)c * plane;
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (size_t i = 0; i < plane; i++) sum += (double)g[i];
            dbias[c] += (float)sum;
        }
    }

    if (kernel == 1) {
        if (dweight) dweight_1x1(dweight, dy, x, in_channels, out_channels, plane);
        if (dx)
            cpu_gemm('T', 'N', in_channels, ld, out_channels, 1.0f, weight, in_channels, dy, ld,
                     1.0f, dx, ld);
        return;
    }
    if (!dweight && !dx) return;
    if (!workspace) BNECK_FAIL("cpu_conv2d_backward: kernel %d needs a workspace", kernel);
    const int nb_max = chunk_images(batch, height, width, in_channels, kernel);
    for (int n0 = 0; n0 < batch; n0 += nb_max) {
        const int nb = batch - n0 < nb_max ? batch - n0 : nb_max;
        const int cols = nb * (int)area, ldc = (int)col_ld((size_t)cols);
        const float *dy_chunk = dy + (size_t)n0 * area;
        if (dweight) {
            im2col(workspace, (size_t)ldc, x, n0, nb, height, width, in_channels, kernel, plane);
            cpu_gemm('N', 'T', out_channels, kdim, cols, 1.0f, dy_chunk, ld, workspace, ldc, 1.0f,
                     dweight, kdim);
        }
        if (dx) {
            cpu_gemm('T', 'N', kdim, cols, out_channels, 1.0f, weight, kdim, dy_chunk, ld, 0.0f,
                     workspace, ldc);
            col2im_add(dx, workspace, (size_t)ldc, n0, nb, height, width, in_channels, kernel,
                       plane);
        }
    }
}
