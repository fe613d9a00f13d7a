/* Convolution (stride 1, "same" zero padding, odd kernel) in CNHW by im2col + GEMM, or,
 * for the layers and directions where they measured faster (see engines_for), by oneDNN's
 * convolution primitives (cpu_conv_dnnl.c, oneDNN builds) or a direct kernel for few
 * channels (cpu_conv_direct.c).
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
 * dcol = W^T x dy_chunk, which col2im adds into dx (or into dx cleared, as dx_store says).
 *
 * Leading dimensions: the weight-gradient product B^T reads B's rows across their K
 * dimension, and when B's row stride is a multiple of a few KiB (as N*H*W is for batch
 * 128) every row falls in the same cache sets and the GEMM runs at half speed or less.
 * So col rows are padded to an odd multiple of 64 bytes, and the 1x1 weight gradient,
 * whose B is x itself, copies x in column blocks into a small padded buffer first (as does
 * the 1x1 forward pass over many input channels). */
#include "backend/cpu/cpu_ops.h"

#include "backend/cpu/cpu_conv_direct.h"
#include "backend/cpu/cpu_conv_dnnl.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound on the col buffer, in floats (16 MiB). Not in the header: tests lower it
 * to exercise chunking with small tensors. Change it only before any workspace is sized,
 * since cpu_conv2d_workspace_floats depends on it. */
size_t bneck_cpu_conv_chunk_floats = (size_t)4 << 20;

cpu_conv_path bneck_cpu_conv_path = CPU_CONV_PATH_AUTO;

/* The implementation ("engine") each direction of a layer runs on. */
typedef enum { ENGINE_IM2COL, ENGINE_DNNL, ENGINE_DIRECT } conv_engine;

typedef struct conv_engines {
    conv_engine forward, backward_data, backward_weights;
} conv_engines;

/* The rule comes from timing the engines on the study's layers (batch 128, 2 AVX-512
 * cores). For k > 1, oneDNN's primitives beat im2col + GEMM on every forward and weight
 * gradient (1.3x on wide 3x3s, 2-3x on 5x5s: no 25x im2col matrix to write and read), and
 * on the data gradient from 12 input channels up: its blocked diff_src pads the channels
 * to 16, at 3 channels 5.3x the work. For 1x1 there is no im2col to save, and the plain
 * GEMM beats the primitive plus its layout copies.
 *
 * The direct kernel (cpu_conv_direct.c), built for AVX-512, beats both on every pass of
 * every layer of the 32x32 stage (up to 24 -> 48 channels: 3x3 24->24 4.8 against 8.0 ms
 * forward, 4.7 against 8.8 data gradient, 5.5 against 12.5 weight gradient; 5x5 6->6 0.67
 * against 1.9, 0.67 against 6.4, 0.95 against 2.6), and at 16x16 on the forward pass and
 * data gradient of those with at most 8 input channels (5x5 8->8: 0.32 against 0.47 and
 * 1.5; the 8->32 forward is a draw, 1.3 against 1.2, and stays on oneDNN). At 16x16
 * oneDNN's weight gradient is as fast (8->8 0.59 against 0.54) or faster (16->16 1.4
 * against 2.1), and from 16 input channels its other passes too (3x3 32->32: 1.9 against
 * 2.4). Built for AVX2 (16 registers, smaller tiles) and timed against oneDNN held to AVX2
 * (ONEDNN_MAX_CPU_ISA=AVX2) on the same machine, it wins the same layers but for the
 * forward pass and data gradient of the 32x32 layers with 24 inputs (24->48: 16.4 against
 * 16.7 forward, 18.9 against 16.9 data gradient; 12->48: 7.9 against 11.4, 8.5 against
 * 10.5; weight gradients 14.3 against 18.3 and 7.3 against 12.6). DIRECT forces it for
 * tests. */
typedef enum { PASS_FORWARD, PASS_DATA_GRADIENT, PASS_WEIGHT_GRADIENT } conv_pass;

static int direct_measured_faster(conv_pass pass, int width, int in_channels, int out_channels) {
    const cpu_conv_direct_isa isa = cpu_conv_direct_built_for();
    if (isa == CPU_CONV_DIRECT_OTHER || in_channels > 24 || out_channels > 48) return 0;
    if (width >= 32)
        return isa == CPU_CONV_DIRECT_AVX512 || pass == PASS_WEIGHT_GRADIENT || in_channels <= 12;
    if (pass == PASS_WEIGHT_GRADIENT) return 0;
    return in_channels <= 8 && (pass == PASS_DATA_GRADIENT || out_channels <= 8);
}

/* A 1x1 layer's weight gradient is a GEMM whose inner dimension is the whole batch's
 * pixels and whose B is x read across its rows; with few input channels the direct kernel
 * (every image's sums in registers, no copy of x) did it in a third to a half of the time
 * (AVX-512: 32x32 3->39 0.40 against 1.7 ms; 12->48 1.0 against 2.0; 24->48 1.7 against
 * 3.1; 16x16 8->32 0.13 against 0.36; AVX2: 0.37 against 0.99, 1.1 against 1.9, 2.1
 * against 2.8, 0.16 against 0.25), and drew level or lost at 32 (16x16 32->128: 1.5
 * against 1.4; AVX2 2.3 against 1.8). */
static int direct_1x1_weights_measured_faster(int in_channels) {
    return cpu_conv_direct_built_for() != CPU_CONV_DIRECT_OTHER && in_channels <= 24;
}

static conv_engines engines_for(int height, int width, int in_channels, int out_channels,
                                int kernel) {
    conv_engines use = {ENGINE_IM2COL, ENGINE_IM2COL, ENGINE_IM2COL};
    if (bneck_cpu_conv_path == CPU_CONV_PATH_IM2COL) return use;
#if defined(BNECK_GEMM_DNNL)
    if (bneck_cpu_conv_path == CPU_CONV_PATH_DNNL)
        return (conv_engines){ENGINE_DNNL, ENGINE_DNNL, ENGINE_DNNL};
#else
    if (bneck_cpu_conv_path == CPU_CONV_PATH_DNNL) return use; /* im2col without oneDNN */
#endif
    const int forced = bneck_cpu_conv_path == CPU_CONV_PATH_DIRECT;
    if (kernel == 1) { /* one GEMM (see forward_1x1), but for the weight gradient of few inputs */
        if (cpu_conv_direct_weights_fit(height, width) &&
            (forced || direct_1x1_weights_measured_faster(in_channels)))
            use.backward_weights = ENGINE_DIRECT;
        return use;
    }
#if defined(BNECK_GEMM_DNNL)
    use.forward = use.backward_weights = ENGINE_DNNL;
    if (in_channels >= 12) use.backward_data = ENGINE_DNNL;
#endif
    if (cpu_conv_direct_fits(height, width, out_channels) &&
        (forced || direct_measured_faster(PASS_FORWARD, width, in_channels, out_channels)))
        use.forward = ENGINE_DIRECT;
    if (cpu_conv_direct_fits(height, width, in_channels) &&
        (forced || direct_measured_faster(PASS_DATA_GRADIENT, width, in_channels, out_channels)))
        use.backward_data = ENGINE_DIRECT;
    if (cpu_conv_direct_weights_fit(height, width) &&
        (forced || direct_measured_faster(PASS_WEIGHT_GRADIENT, width, in_channels, out_channels)))
        use.backward_weights = ENGINE_DIRECT;
    return use;
}

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

/* One 0/1 mask per kernel tap over an image: tap (kh, kw) reads the pixel shifted by
 * (kh - k/2, kw - k/2), which exists only where mask is 1. With it, im2col and col2im are
 * flat, vectorisable loops over a whole image instead of many short row loops (an 8x8
 * map has rows of 8 floats, too short to run fast). */
static float *tap_masks(int height, int width, int kernel) {
    const int pad = kernel / 2;
    const size_t area = (size_t)height * (size_t)width;
    float *masks = bneck_malloc((size_t)kernel * kernel * area * sizeof(float));
    for (int kh = 0; kh < kernel; kh++)
        for (int kw = 0; kw < kernel; kw++) {
            float *m = masks + (size_t)(kh * kernel + kw) * area;
            for (int h = 0; h < height; h++)
                for (int w = 0; w < width; w++) {
                    const int hs = h + kh - pad, ws = w + kw - pad;
                    m[(size_t)h * width + w] = hs >= 0 && hs < height && ws >= 0 && ws < width;
                }
        }
    return masks;
}

/* The outputs i of an image whose shifted source i + offset stays inside the image's
 * storage; the mask is zero outside them anyway. */
static void tap_range(long offset, long area, long *first, long *last) {
    *first = offset < 0 ? -offset : 0;
    *last = offset > 0 ? area - offset : area;
    if (*last < *first) *last = *first;
}

/* col[(c*k + kh)*k + kw][n][h][w] = x[c][n0 + n][h + kh - k/2][w + kw - k/2] (0 outside). */
static void im2col(float *restrict col, size_t ld, const float *restrict x, int n0, int nb,
                   int height, int width, int channels, int kernel, size_t plane) {
    const int pad = kernel / 2, kk = kernel * kernel, rows = channels * kk;
    const long area = (long)height * width;
    float *masks = tap_masks(height, width, kernel);
#pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < rows; r++) {
        for (int n = 0; n < nb; n++) {
            const int c = r / kk, tap = r % kk;
            const long offset = (long)(tap / kernel - pad) * width + (tap % kernel - pad);
            const float *restrict src = x + (size_t)c * plane + (size_t)(n0 + n) * (size_t)area;
            const float *restrict mask = masks + (size_t)tap * (size_t)area;
            float *restrict dst = col + (size_t)r * ld + (size_t)n * (size_t)area;
            long first, last;
            tap_range(offset, area, &first, &last);
            for (long i = 0; i < first; i++) dst[i] = 0.0f;
            for (long i = first; i < last; i++) {
                const float value = src[i + offset];
                dst[i] = mask[i] != 0.0f ? value : 0.0f;
            }
            for (long i = last; i < area; i++) dst[i] = 0.0f;
        }
    }
    free(masks);
}

/* dx[c][n0 + n][h + kh - k/2][w + kw - k/2] += col[(c*k + kh)*k + kw][n][h][w] (inside only),
 * into each image's map as it was (GRAD_ACCUMULATE) or cleared first (GRAD_OVERWRITE).
 * One task per (channel, image) so no two threads touch the same dx plane. */
static void col2im(float *restrict dx, grad_store dx_store, const float *restrict col, size_t ld,
                   int n0, int nb, int height, int width, int channels, int kernel, size_t plane) {
    const int pad = kernel / 2, kk = kernel * kernel;
    const long area = (long)height * width;
    float *masks = tap_masks(height, width, kernel);
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < channels; c++) {
        for (int n = 0; n < nb; n++) {
            float *restrict dst = dx + (size_t)c * plane + (size_t)(n0 + n) * (size_t)area;
            if (dx_store == GRAD_OVERWRITE) memset(dst, 0, (size_t)area * sizeof(float));
            for (int tap = 0; tap < kk; tap++) {
                const long offset = (long)(tap / kernel - pad) * width + (tap % kernel - pad);
                const float *restrict src = col + (size_t)(c * kk + tap) * ld + (size_t)n * (size_t)area;
                const float *restrict mask = masks + (size_t)tap * (size_t)area;
                long first, last;
                tap_range(offset, area, &first, &last);
                for (long i = first; i < last; i++) {
                    const float value = src[i];
                    dst[i + offset] += mask[i] != 0.0f ? value : 0.0f;
                }
            }
        }
    }
    free(masks);
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

/* Per-thread scratch for the 1x1 convolutions' column blocks, grown on demand and kept
 * (about X1X1_SCRATCH_FLOATS; more only beyond some 3,800 rows, whose blocks stay at 256
 * columns), so steady-state calls never allocate. */
#define X1X1_SCRATCH_FLOATS ((size_t)1 << 20)
static _Thread_local float *x1x1_scratch;
static _Thread_local size_t x1x1_scratch_floats;

/* Column blocks of x[rows][P] (row stride P) copied into the scratch buffer, whose row
 * stride (col_ld) spreads the rows over the cache sets: the GEMM's packing of x reads
 * across its rows, all in the same sets when P is a multiple of a few KiB. */
typedef struct column_blocks {
    float *buffer;
    size_t block, ld; /* columns per block, the buffer's row stride */
    int rows;
    size_t plane; /* x's row stride and length */
} column_blocks;

static column_blocks column_blocks_for(int rows, size_t plane) {
    size_t block = 2048;
    while (block > 256 && (size_t)rows * col_ld(block) > X1X1_SCRATCH_FLOATS) block /= 2;
    if (block > plane) block = plane;
    const size_t ld = col_ld(block), need = (size_t)rows * ld;
    if (x1x1_scratch_floats < need) {
        free(x1x1_scratch);
        x1x1_scratch = bneck_alloc_aligned(need * sizeof(float));
        x1x1_scratch_floats = need;
    }
    return (column_blocks){x1x1_scratch, block, ld, rows, plane};
}

/* Copies the block of x's columns from `first` into the buffer; returns how many (a block,
 * fewer at the end). */
static size_t column_block_copy(const column_blocks *b, const float *x, size_t first) {
    const size_t count = b->plane - first < b->block ? b->plane - first : b->block;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < b->rows; c++)
        memcpy(b->buffer + (size_t)c * b->ld, x + (size_t)c * b->plane + first,
               count * sizeof(float));
    return count;
}

/* dweight[co][ci] += dy[co][P] x x[ci][P]^T, x taken in column blocks (B^T's packing). */
static void dweight_1x1(float *dweight, const float *dy, const float *x, int in_channels,
                        int out_channels, size_t plane) {
    const column_blocks b = column_blocks_for(in_channels, plane);
    for (size_t k0 = 0; k0 < plane; k0 += b.block) {
        const size_t kc = column_block_copy(&b, x, k0);
        cpu_gemm('N', 'T', out_channels, in_channels, (int)kc, 1.0f, dy + k0, (int)plane, b.buffer,
                 (int)b.ld, 1.0f, dweight, in_channels);
    }
}

/* Below this many input channels, the 1x1 forward GEMM reads x in place: the copy costs
 * more than the cache-set conflicts it avoids (thin GEMMs are memory-bound; measured on
 * E's 16x16x96 layers). From it on (the 8x8 stages' 256 and 384) it saves about a tenth of
 * E's 1x1 forward time. */
enum { X1X1_FORWARD_COPY_MIN_CHANNELS = 128 };

/* y[co][P] = bias[co] + w[co][ci] x[ci][P], x taken in column blocks where it pays, each
 * block's bias filled just before the GEMM that adds to it, while it is in cache. */
static void forward_1x1(float *y, const float *x, const float *weight, const float *bias,
                        int in_channels, int out_channels, size_t plane) {
    const int ld = (int)plane;
    if (in_channels < X1X1_FORWARD_COPY_MIN_CHANNELS) {
        if (bias) fill_bias(y, bias, out_channels, plane, 0, plane);
        cpu_gemm('N', 'N', out_channels, ld, in_channels, 1.0f, weight, in_channels, x, ld,
                 bias ? 1.0f : 0.0f, y, ld);
        return;
    }
    const column_blocks b = column_blocks_for(in_channels, plane);
    for (size_t k0 = 0; k0 < plane; k0 += b.block) {
        const size_t kc = column_block_copy(&b, x, k0);
        if (bias) fill_bias(y, bias, out_channels, plane, k0, kc);
        cpu_gemm('N', 'N', out_channels, (int)kc, in_channels, 1.0f, weight, in_channels, b.buffer,
                 (int)b.ld, bias ? 1.0f : 0.0f, y + k0, ld);
    }
}

void cpu_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                        float *workspace, int batch, int height, int width, int in_channels,
                        int out_channels, int kernel) {
    check_dims("cpu_conv2d_forward", batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width, plane = (size_t)batch * area;
    const int ld = (int)plane, kdim = in_channels * kernel * kernel;
    const conv_engine engine = engines_for(height, width, in_channels, out_channels, kernel).forward;
    if (engine == ENGINE_DIRECT) {
        cpu_conv_direct_forward(y, x, weight, bias, batch, height, width, in_channels,
                                out_channels, kernel);
        return;
    }
#if defined(BNECK_GEMM_DNNL)
    if (engine == ENGINE_DNNL) {
        cpu_conv_dnnl_forward(y, x, weight, bias, batch, height, width, in_channels, out_channels,
                              kernel);
        return;
    }
#endif
    if (kernel == 1) {
        forward_1x1(y, x, weight, bias, in_channels, out_channels, plane);
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

void cpu_conv2d_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                         const float *dy, const float *x, const float *weight, float *workspace,
                         int batch, int height, int width, int in_channels, int out_channels,
                         int kernel) {
    check_dims("cpu_conv2d_backward", batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width, plane = (size_t)batch * area;
    const int ld = (int)plane, kdim = in_channels * kernel * kernel;
    const conv_engines use = engines_for(height, width, in_channels, out_channels, kernel);
#if defined(BNECK_GEMM_DNNL)
    /* the primitive computes the bias gradient along with the weight gradient */
    const int dnnl_data = use.backward_data == ENGINE_DNNL;
    if (dweight && use.backward_weights == ENGINE_DNNL) {
        cpu_conv_dnnl_backward(dnnl_data ? dx : NULL, dweight, dbias, dx_store, dy, x, weight,
                               batch, height, width, in_channels, out_channels, kernel);
        dweight = dbias = NULL;
        if (dnnl_data) dx = NULL;
    } else if (dx && dnnl_data) {
        cpu_conv_dnnl_backward(dx, NULL, NULL, dx_store, dy, x, weight, batch, height, width,
                               in_channels, out_channels, kernel);
        dx = NULL;
    }
#endif
    if (dweight && use.backward_weights == ENGINE_DIRECT) {
        cpu_conv_direct_backward_weights(dweight, dy, x, batch, height, width, in_channels,
                                         out_channels, kernel);
        dweight = NULL;
    }
    if (dx && use.backward_data == ENGINE_DIRECT) {
        cpu_conv_direct_backward_data(dx, dx_store, dy, weight, batch, height, width,
                                      in_channels, out_channels, kernel);
        dx = NULL;
    }
    /* what is left (NULL: done above or not wanted) by im2col + GEMM */
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
                     dx_store == GRAD_ACCUMULATE ? 1.0f : 0.0f, dx, ld);
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
            col2im(dx, dx_store, workspace, (size_t)ldc, n0, nb, height, width, in_channels,
                   kernel, plane);
        }
    }
}
