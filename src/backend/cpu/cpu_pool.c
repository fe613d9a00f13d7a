/* Pooling over planes (one plane = one (channel, image) map of height x width). */
#include "backend/cpu/cpu_ops.h"

#include "core/error.h"

static void check(const char *op, int planes, int height, int width) {
    if (planes < 0 || height < 1 || width < 1)
        BNECK_FAIL("%s: bad dimensions planes=%d height=%d width=%d", op, planes, height, width);
}

static inline float max2(float a, float b) { return b > a ? b : a; }

/* --- 3x3 max pool, stride 1, same padding (out-of-image positions never win) ------------ */

/* One output row h of one plane: the max over rows [h-1, h+1] n [0, height) and columns
 * [w-1, w+1] n [0, width). The interior columns are a branch-free, vectorisable loop. */
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
    out[0] = max2(max2(max2(r0[0], r1[0]), r2[0]), max2(max2(r0[1], r1[1]), r2[1]));
    for (int w = 1; w < width - 1; w++) {
        float a = max2(max2(r0[w - 1], r1[w - 1]), r2[w - 1]);
        float b = max2(max2(r0[w], r1[w]), r2[w]);
        float c = max2(max2(r0[w + 1], r1[w + 1]), r2[w + 1]);
        out[w] = max2(max2(a, b), c);
    }
    const int e = width - 1;
    out[e] = max2(max2(max2(r0[e - 1], r1[e - 1]), r2[e - 1]), max2(max2(r0[e], r1[e]), r2[e]));
}

void cpu_maxpool3x3_forward(float *y, const float *x, int planes, int height, int width) {
    check("cpu_maxpool3x3_forward", planes, height, width);
    const size_t area = (size_t)height * (size_t)width;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * area;
        float *yp = y + (size_t)p * area;
        for (int h = 0; h < height; h++)
            maxpool_row(yp + (size_t)h * (size_t)width, xp, h, height, width);
    }
}

/* Each dy goes to the position of its window's maximum, recomputed from x: the first
 * maximum in row-major window order when values tie. y is not needed for that. */
void cpu_maxpool3x3_backward(float *dx, const float *dy, const float *x, const float *y, int planes,
                             int height, int width) {
    (void)y;
    check("cpu_maxpool3x3_backward", planes, height, width);
    if (!dx) return;
    const size_t area = (size_t)height * (size_t)width;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * area;
        const float *gp = dy + (size_t)p * area;
        float *dp = dx + (size_t)p * area;
        for (int h = 0; h < height; h++) {
            const int h0 = h > 0 ? h - 1 : 0, h1 = h + 1 < height ? h + 1 : height - 1;
            for (int w = 0; w < width; w++) {
                const int w0 = w > 0 ? w - 1 : 0, w1 = w + 1 < width ? w + 1 : width - 1;
                size_t best = (size_t)h0 * (size_t)width + (size_t)w0;
                float best_v = xp[best];
                for (int i = h0; i <= h1; i++) {
                    for (int j = w0; j <= w1; j++) {
                        const size_t idx = (size_t)i * (size_t)width + (size_t)j;
                        if (xp[idx] > best_v) {
                            best_v = xp[idx];
                            best = idx;
                        }
                    }
                }
                dp[best] += gp[(size_t)h * (size_t)width + (size_t)w];
            }
        }
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

void cpu_avgpool2x2_backward(float *dx, const float *dy, int planes, int height, int width) {
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
            for (int j = 0; j < ow; j++) {
                const float v = 0.25f * g[j];
                a[2 * j] += v;
                a[2 * j + 1] += v;
                b[2 * j] += v;
                b[2 * j + 1] += v;
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

void cpu_global_avgpool_backward(float *dx, const float *dy, int planes, int area) {
    check("cpu_global_avgpool_backward", planes, area, 1);
    if (!dx) return;
    const float scale = 1.0f / (float)area;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        float *restrict dp = dx + (size_t)p * (size_t)area;
        const float v = dy[p] * scale;
        for (int i = 0; i < area; i++) dp[i] += v;
    }
}
