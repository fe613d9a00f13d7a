/* Pooling over planes (one plane = one (channel, image) map of height x width). */
#include "backend/cpu/cpu_ops.h"

#include "backend/cpu/cpu_maxpool_window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static void check(const char *op, int planes, int height, int width) {
    if (planes < 0 || height < 1 || width < 1)
        BNECK_FAIL("%s: bad dimensions planes=%d height=%d width=%d", op, planes, height, width);
}

static inline float max2(float a, float b) { return b > a ? b : a; }

/* --- 3x3 max pool, stride 1, same padding (out-of-image positions never win) ------------ */

/* A NaN in a window wins, as in PyTorch, and a window of only -inf gives its gradient to
 * its first in-image tap (cpu_maxpool_window.h). The fast loops below (a tree of max2, the
 * first tap equal to the maximum, a -inf border) see neither: a NaN-aware tree and match
 * cost twice the forward time, and only a diverged run has NaN or -inf. So a plane holding
 * either goes window by window through the rule the GPU kernel runs. */
static int plane_has_nan_or_minus_infinity(const float *restrict x, size_t area) {
    int any = 0;
    for (size_t i = 0; i < area; i++) any |= !(x[i] > -INFINITY);
    return any;
}

static void maxpool_plane_scan(float *restrict y, uint8_t *restrict codes,
                               const float *restrict x, int height, int width) {
    for (int h = 0; h < height; h++)
        for (int w = 0; w < width; w++) {
            const int code = maxpool_window(&y[h * width + w], x, h, w, height, width);
            if (codes) codes[h * width + w] = (uint8_t)code;
        }
}

/* One output row h of one plane: the max over rows [h-1, h+1] n [0, height) and columns
 * [w-1, w+1] n [0, width). The interior columns are a branch-free, vectorisable loop. The
 * taps are taken in window order (max2 keeps its first operand on a tie), so a tie of +0
 * and -0 gives the first, as the argmax path and the GPU do. */
static void maxpool_row(float *restrict out, const float *restrict x, int h, int height,
                        int width) {
    const float *r0 = x + (size_t)(h > 0 ? h - 1 : h) * (size_t)width;
    const float *r1 = x + (size_t)h * (size_t)width;
    const float *r2 = x + (size_t)(h + 1 < height ? h + 1 : h) * (size_t)width;
    /* rows clamped to the image repeat a row already in the window: same max */
    if (width == 1) {
        out[0] = max2(max2(r0[0], r1[0]), r2[0]);
        return;
    }
    out[0] = max2(max2(max2(r0[0], r0[1]), max2(r1[0], r1[1])), max2(r2[0], r2[1]));
    for (int w = 1; w < width - 1; w++) {
        const float top = max2(max2(r0[w - 1], r0[w]), r0[w + 1]);
        const float middle = max2(max2(r1[w - 1], r1[w]), r1[w + 1]);
        const float bottom = max2(max2(r2[w - 1], r2[w]), r2[w + 1]);
        out[w] = max2(max2(top, middle), bottom);
    }
    const int e = width - 1;
    out[e] = max2(max2(max2(r0[e - 1], r0[e]), max2(r1[e - 1], r1[e])), max2(r2[e - 1], r2[e]));
}

/* The argmax forward and the backward pass work on planes copied into frames: a run of
 * planes stacked in one column of rows (width + 2 wide), each plane's rows framed by a
 * column on either side and a row above and below (shared between neighbours) whose values
 * never win (-inf) or never match (code FRAME_CODE). Every window is then interior, so one
 * flat, branch-free loop runs over a whole run of planes at once: the maps here are 8 to 32
 * wide, and loops per row, or per plane of 8x8, would be too short to vectorise. The border
 * is written once per frame; only the planes' rows are copied in and out. A run of planes
 * any of which holds NaN or -inf (which the border would tie with) is scanned instead
 * (maxpool_plane_scan). */
/* FRAME_FLOATS: 16 KiB, so that a frame, its results and its codes stay near the core */
enum { FRAME_CODE = 255, FRAME_FLOATS = 4096 };

typedef struct pool_frame {
    int height, width, stride; /* the planes'; stride = width + 2 */
    int capacity;              /* planes stacked in one frame */
} pool_frame;

static pool_frame frame_of(int height, int width) {
    const int stride = width + 2;
    const size_t rows = (size_t)FRAME_FLOATS / (size_t)stride;
    const size_t capacity = rows > 1 ? (rows - 1) / ((size_t)height + 1) : 0;
    return (pool_frame){height, width, stride, capacity > 0 ? (int)capacity : 1};
}

static size_t frame_size(const pool_frame *f) {
    return ((size_t)f->capacity * ((size_t)f->height + 1) + 1) * (size_t)f->stride;
}

/* Where row h of the frame's plane k starts (its first in-image value). */
static size_t frame_row(const pool_frame *f, int k, int h) {
    return ((size_t)k * ((size_t)f->height + 1) + 1 + (size_t)h) * (size_t)f->stride + 1;
}

/* The last in-image position of a frame holding `count` planes. */
static size_t frame_last(const pool_frame *f, int count) {
    return frame_row(f, count - 1, f->height - 1) + (size_t)f->width - 1;
}

/* The runs of planes that go through a frame one after another, and how many planes run
 * `run` holds (capacity; fewer in the last). */
static int frame_runs(const pool_frame *f, int planes) {
    return planes / f->capacity + (planes % f->capacity != 0);
}
static int frame_run_planes(const pool_frame *f, int planes, int run) {
    const int first = run * f->capacity;
    return planes - first < f->capacity ? planes - first : f->capacity;
}

/* One thread's frames: the input (its border set once), the results, and the codes. The
 * codes' border is set once too, for the backward pass, which reads codes copied into the
 * frame; the forward pass writes its codes there, over the border as well (not read). */
typedef struct frame_buffers {
    float *input, *result;
    uint8_t *codes;
} frame_buffers;

static frame_buffers frame_buffers_alloc(const pool_frame *f, float border) {
    const size_t size = frame_size(f);
    frame_buffers b = {bneck_malloc(size * sizeof(float)), bneck_malloc(size * sizeof(float)),
                       bneck_malloc(size)};
    for (size_t i = 0; i < size; i++) b.input[i] = border;
    memset(b.codes, FRAME_CODE, size);
    return b;
}

static void frame_buffers_free(frame_buffers *b) {
    free(b->input);
    free(b->result);
    free(b->codes);
}

/* The maximum of each window of the framed x (without NaN), and the first tap in window
 * order equal to it (selects only, so the loop vectorises), over positions first..last.
 * Positions in the border get values too, which are not copied out. */
static void maxpool_framed(float *restrict out, uint8_t *restrict code, const float *restrict x,
                           size_t stride, size_t first, size_t last) {
    const size_t s = stride;
    for (size_t q = first; q <= last; q++) {
        const float v0 = x[q - s - 1], v1 = x[q - s], v2 = x[q - s + 1], v3 = x[q - 1], v4 = x[q],
                    v5 = x[q + 1], v6 = x[q + s - 1], v7 = x[q + s], v8 = x[q + s + 1];
        const float best = max2(max2(max2(v0, v1), max2(v2, v3)),
                                max2(max2(v4, v5), max2(max2(v6, v7), v8)));
        int k = 8;
        k = v7 == best ? 7 : k;
        k = v6 == best ? 6 : k;
        k = v5 == best ? 5 : k;
        k = v4 == best ? 4 : k;
        k = v3 == best ? 3 : k;
        k = v2 == best ? 2 : k;
        k = v1 == best ? 1 : k;
        k = v0 == best ? 0 : k;
        out[q] = best;
        code[q] = (uint8_t)k;
    }
}

/* dy[at] where the output's code names the tap, else +0. With AVX-512, GCC vectorises the
 * select as masked loads; without its masks it vectorises neither a select nor a load under
 * the condition, but does the load with its bits masked (4x faster at x86-64-v3, 14 %
 * slower than the masked loads with AVX-512). */
static inline float tap_gradient(const uint8_t *code, const float *dy, size_t at, uint8_t tap) {
#if defined(__AVX512F__)
    return code[at] == tap ? dy[at] : 0.0f;
#else
    float d = dy[at];
    uint32_t bits;
    memcpy(&bits, &d, sizeof bits);
    bits &= -(uint32_t)(code[at] == tap);
    memcpy(&d, &bits, sizeof d);
    return d;
#endif
}

/* Gathered rather than scattered: input (h, w) sums, in window order of the outputs
 * around it (rows h-1..h+1, then columns w-1..w+1), the dy of each output whose code
 * names the tap pointing back at (h, w). A fixed order per input (which the GPU twin
 * keeps, for equal sums bit for bit), no write conflicts. */
static void maxpool_backward_framed(float *restrict sum, const float *restrict dy,
                                    const uint8_t *restrict code, size_t stride, size_t first,
                                    size_t last) {
    const size_t s = stride;
    for (size_t q = first; q <= last; q++) {
        float total = 0.0f;
        total += tap_gradient(code, dy, q - s - 1, 8);
        total += tap_gradient(code, dy, q - s, 7);
        total += tap_gradient(code, dy, q - s + 1, 6);
        total += tap_gradient(code, dy, q - 1, 5);
        total += tap_gradient(code, dy, q, 4);
        total += tap_gradient(code, dy, q + 1, 3);
        total += tap_gradient(code, dy, q + s - 1, 2);
        total += tap_gradient(code, dy, q + s, 1);
        total += tap_gradient(code, dy, q + s + 1, 0);
        sum[q] = total;
    }
}

/* The run of `count` planes from x (and y, argmax) through one frame. Always inlined, and
 * called with the study's widths as constants, so that the rows' copies compile to a few
 * vector moves instead of a call to memcpy each (which cost as much as the pool itself). */
static inline __attribute__((always_inline)) void
maxpool_forward_run(float *restrict y, uint8_t *restrict argmax, const float *restrict x,
                    int count, frame_buffers *frames, const pool_frame *f, int width) {
    const int height = f->height;
    const size_t area = (size_t)height * (size_t)width;
    int any = 0;
    for (int k = 0; k < count; k++) any |= plane_has_nan_or_minus_infinity(x + k * area, area);
    if (any) {
        for (int k = 0; k < count; k++)
            maxpool_plane_scan(y + k * area, argmax + k * area, x + k * area, height, width);
        return;
    }
    for (int k = 0; k < count; k++)
        for (int h = 0; h < height; h++)
            memcpy(frames->input + frame_row(f, k, h), x + k * area + (size_t)h * width,
                   (size_t)width * sizeof(float));
    maxpool_framed(frames->result, frames->codes, frames->input, (size_t)f->stride,
                   frame_row(f, 0, 0), frame_last(f, count));
    for (int k = 0; k < count; k++)
        for (int h = 0; h < height; h++) {
            const size_t from = frame_row(f, k, h), to = k * area + (size_t)h * width;
            memcpy(y + to, frames->result + from, (size_t)width * sizeof(float));
            memcpy(argmax + to, frames->codes + from, (size_t)width);
        }
}

static inline __attribute__((always_inline)) void
maxpool_backward_run(float *restrict dx, grad_store dx_store, const float *restrict dy,
                     const uint8_t *restrict argmax, int count, frame_buffers *frames,
                     const pool_frame *f, int width) {
    const int height = f->height;
    const size_t area = (size_t)height * (size_t)width;
    for (int k = 0; k < count; k++)
        for (int h = 0; h < height; h++) {
            const size_t to = frame_row(f, k, h), from = k * area + (size_t)h * width;
            memcpy(frames->input + to, dy + from, (size_t)width * sizeof(float));
            memcpy(frames->codes + to, argmax + from, (size_t)width);
        }
    maxpool_backward_framed(frames->result, frames->input, frames->codes, (size_t)f->stride,
                            frame_row(f, 0, 0), frame_last(f, count));
    for (int k = 0; k < count; k++)
        for (int h = 0; h < height; h++) {
            float *restrict d = dx + k * area + (size_t)h * width;
            const float *restrict sum = frames->result + frame_row(f, k, h);
            if (dx_store == GRAD_ACCUMULATE)
                for (int w = 0; w < width; w++) d[w] += sum[w];
            else
                memcpy(d, sum, (size_t)width * sizeof(float));
        }
}

void cpu_maxpool3x3_forward(float *y, uint8_t *argmax, const float *x, int planes, int height,
                            int width) {
    check("cpu_maxpool3x3_forward", planes, height, width);
    const size_t area = (size_t)height * (size_t)width;
    if (!argmax) {
#pragma omp parallel for schedule(static)
        for (int p = 0; p < planes; p++) {
            const float *xp = x + (size_t)p * area;
            float *yp = y + (size_t)p * area;
            if (plane_has_nan_or_minus_infinity(xp, area)) {
                maxpool_plane_scan(yp, NULL, xp, height, width);
                continue;
            }
            for (int h = 0; h < height; h++)
                maxpool_row(yp + (size_t)h * (size_t)width, xp, h, height, width);
        }
        return;
    }
    const pool_frame f = frame_of(height, width);
    const int runs = frame_runs(&f, planes);
#pragma omp parallel
    {
        frame_buffers frames = frame_buffers_alloc(&f, -INFINITY);
#pragma omp for schedule(static)
        for (int run = 0; run < runs; run++) {
            const int count = frame_run_planes(&f, planes, run);
            const size_t offset = (size_t)run * (size_t)f.capacity * area;
            float *yr = y + offset;
            uint8_t *ar = argmax + offset;
            const float *xr = x + offset;
            switch (width) {
            case 8: maxpool_forward_run(yr, ar, xr, count, &frames, &f, 8); break;
            case 16: maxpool_forward_run(yr, ar, xr, count, &frames, &f, 16); break;
            case 32: maxpool_forward_run(yr, ar, xr, count, &frames, &f, 32); break;
            default: maxpool_forward_run(yr, ar, xr, count, &frames, &f, width);
            }
        }
        frame_buffers_free(&frames);
    }
}

void cpu_maxpool3x3_backward(float *dx, grad_store dx_store, const float *dy,
                             const uint8_t *argmax, int planes, int height, int width) {
    check("cpu_maxpool3x3_backward", planes, height, width);
    if (!dx) return;
    const size_t area = (size_t)height * (size_t)width;
    const pool_frame f = frame_of(height, width);
    const int runs = frame_runs(&f, planes);
#pragma omp parallel
    {
        frame_buffers frames = frame_buffers_alloc(&f, 0.0f);
#pragma omp for schedule(static)
        for (int run = 0; run < runs; run++) {
            const int count = frame_run_planes(&f, planes, run);
            const size_t offset = (size_t)run * (size_t)f.capacity * area;
            float *dxr = dx + offset;
            const float *dyr = dy + offset;
            const uint8_t *ar = argmax + offset;
            switch (width) {
            case 8: maxpool_backward_run(dxr, dx_store, dyr, ar, count, &frames, &f, 8); break;
            case 16: maxpool_backward_run(dxr, dx_store, dyr, ar, count, &frames, &f, 16); break;
            case 32: maxpool_backward_run(dxr, dx_store, dyr, ar, count, &frames, &f, 32); break;
            default: maxpool_backward_run(dxr, dx_store, dyr, ar, count, &frames, &f, width);
            }
        }
        frame_buffers_free(&frames);
    }
}

/* --- 2x2 average pool, stride 2 ---------------------------------------------------------- */

void cpu_avgpool2x2_forward(float *y, const float *x, int planes, int height, int width) {
    check("cpu_avgpool2x2_forward", planes, height, width);
    if (height % 2 || width % 2)
        BNECK_FAIL("cpu_avgpool2x2_forward: height %d and width %d must be even", height, width);
    const int oh = height / 2, ow = width / 2;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * (size_t)height * (size_t)width;
        float *yp = y + (size_t)p * (size_t)oh * (size_t)ow;
        for (int i = 0; i < oh; i++) {
            const float *restrict a = xp + (size_t)(2 * i) * (size_t)width;
            const float *restrict b = a + width;
            float *restrict o = yp + (size_t)i * (size_t)ow;
            for (int j = 0; j < ow; j++)
                o[j] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
        }
    }
}

void cpu_avgpool2x2_backward(float *dx, grad_store dx_store, const float *dy, int planes,
                             int height, int width) {
    check("cpu_avgpool2x2_backward", planes, height, width);
    if (height % 2 || width % 2)
        BNECK_FAIL("cpu_avgpool2x2_backward: height %d and width %d must be even", height, width);
    if (!dx) return;
    const int oh = height / 2, ow = width / 2;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        float *dp = dx + (size_t)p * (size_t)height * (size_t)width;
        const float *gp = dy + (size_t)p * (size_t)oh * (size_t)ow;
        for (int i = 0; i < oh; i++) {
            float *restrict a = dp + (size_t)(2 * i) * (size_t)width;
            float *restrict b = a + width;
            const float *restrict g = gp + (size_t)i * (size_t)ow;
            if (dx_store == GRAD_ACCUMULATE) {
                for (int j = 0; j < ow; j++) {
                    const float v = 0.25f * g[j];
                    a[2 * j] += v;
                    a[2 * j + 1] += v;
                    b[2 * j] += v;
                    b[2 * j + 1] += v;
                }
            } else {
                for (int j = 0; j < ow; j++) {
                    const float v = 0.25f * g[j];
                    a[2 * j] = a[2 * j + 1] = b[2 * j] = b[2 * j + 1] = v;
                }
            }
        }
    }
}

/* --- global average pool ------------------------------------------------------------------ */

void cpu_global_avgpool_forward(float *y, const float *x, int planes, int area) {
    check("cpu_global_avgpool_forward", planes, area, 1);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *restrict xp = x + (size_t)p * (size_t)area;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < area; i++) sum += (double)xp[i];
        y[p] = (float)(sum / (double)area);
    }
}

void cpu_global_avgpool_backward(float *dx, grad_store dx_store, const float *dy, int planes,
                                 int area) {
    check("cpu_global_avgpool_backward", planes, area, 1);
    if (!dx) return;
    const float scale = 1.0f / (float)area;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        float *restrict dp = dx + (size_t)p * (size_t)area;
        const float v = dy[p] * scale;
        if (dx_store == GRAD_ACCUMULATE)
            for (int i = 0; i < area; i++) dp[i] += v;
        else
            for (int i = 0; i < area; i++) dp[i] = v;
    }
}
