/* Batch normalisation over each channel's contiguous plane (CNHW), with optional fused ReLU.
 * Statistics are accumulated in double. The work is split into (channel, block) tasks,
 * not channels alone: the bottleneck layers have as few as 3 channels of 131,072 values,
 * which would leave threads idle. Partial sums are per fixed block and combined in a
 * fixed order, so results do not depend on the thread count. */
#include "backend/cpu/cpu_ops.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>

enum { BLOCK = 8192 };

static void check(const char *op, int channels, size_t plane) {
    if (channels < 0 || plane < 1) BNECK_FAIL("%s: bad channels=%d plane=%zu", op, channels, plane);
}

static size_t blocks_of(size_t plane) { return (plane + BLOCK - 1) / BLOCK; }

/* Task `task` of channels x blocks: its channel and its [begin, end) within the plane. */
static void task_range(size_t task, size_t blocks, size_t plane, size_t *channel, size_t *begin,
                       size_t *end) {
    *channel = task / blocks;
    *begin = task % blocks * BLOCK;
    *end = *begin + BLOCK < plane ? *begin + BLOCK : plane;
}

/* Per-block partial sums and per-channel coefficients: grown once and reused, so steady
 * state training allocates nothing here (one buffer per calling thread). */
static double *scratch_doubles(size_t count) {
    static _Thread_local double *buffer;
    static _Thread_local size_t capacity;
    if (count > capacity) {
        free(buffer);
        buffer = bneck_malloc(count * sizeof(double));
        capacity = count;
    }
    return buffer;
}

/* Channel c's totals of the two per-block partial sums, added in block order. */
static void channel_totals(const double *sums, size_t c, size_t blocks, double *first,
                           double *second) {
    double s1 = 0.0, s2 = 0.0;
    for (size_t b = 0; b < blocks; b++) {
        s1 += sums[2 * (c * blocks + b)];
        s2 += sums[2 * (c * blocks + b) + 1];
    }
    *first = s1;
    *second = s2;
}

/* y = a * x + b, then max(0, .) when fuse_relu. */
static inline void affine(float *restrict y, const float *restrict x, float a, float b, int relu,
                          size_t count) {
    if (relu) {
        for (size_t i = 0; i < count; i++) {
            float v = a * x[i] + b;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t i = 0; i < count; i++) y[i] = a * x[i] + b;
    }
}

void cpu_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, float eps, float momentum,
                                 int fuse_relu, int channels, size_t plane) {
    check("cpu_batchnorm_forward_train", channels, plane);
    /* unbiased variance of a single value is undefined; keep the biased one then */
    const double unbias = plane > 1 ? (double)plane / (double)(plane - 1) : 1.0;
    const size_t blocks = blocks_of(plane), tasks = (size_t)channels * blocks;
    double *sums = scratch_doubles(2 * tasks + 2 * (size_t)channels + 1);
    double *scale = sums + 2 * tasks; /* a, b of y = a x + b per channel */
    /* Shifted sums (shift = the channel's first value) keep E[x^2] - E[x]^2 free of
     * cancellation. */
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < tasks; task++) {
        size_t c, begin, end;
        task_range(task, blocks, plane, &c, &begin, &end);
        const float *restrict xc = x + c * plane;
        const double shift = xc[0];
        double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
        for (size_t i = begin; i < end; i++) {
            double d = (double)xc[i] - shift;
            s1 += d;
            s2 += d * d;
        }
        sums[2 * task] = s1;
        sums[2 * task + 1] = s2;
    }
    for (int c = 0; c < channels; c++) {
        double s1, s2;
        channel_totals(sums, (size_t)c, blocks, &s1, &s2);
        const double dmean = s1 / (double)plane;
        double var = s2 / (double)plane - dmean * dmean;
        if (var < 0.0) var = 0.0;
        const double mean = (double)x[(size_t)c * plane] + dmean;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        if (batch_mean) batch_mean[c] = (float)mean;
        if (batch_invstd) batch_invstd[c] = (float)invstd;
        if (running_mean)
            running_mean[c] =
                (float)((double)momentum * running_mean[c] + (1.0 - (double)momentum) * mean);
        if (running_var)
            running_var[c] = (float)((double)momentum * running_var[c] +
                                     (1.0 - (double)momentum) * var * unbias);
        const double a = (double)gamma[c] * invstd;
        scale[2 * c] = a;
        scale[2 * c + 1] = (double)beta[c] - a * mean;
    }
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < tasks; task++) {
        size_t c, begin, end;
        task_range(task, blocks, plane, &c, &begin, &end);
        affine(y + c * plane + begin, x + c * plane + begin, (float)scale[2 * c],
               (float)scale[2 * c + 1], fuse_relu, end - begin);
    }
}

void cpu_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 int fuse_relu, int channels, size_t plane) {
    check("cpu_batchnorm_forward_infer", channels, plane);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < channels; c++) {
        const double a = (double)gamma[c] / sqrt((double)running_var[c] + (double)eps);
        affine(y + (size_t)c * plane, x + (size_t)c * plane, (float)a,
               (float)((double)beta[c] - a * running_mean[c]), fuse_relu, plane);
    }
}

/* With g = dy (masked by y > 0 for the fused ReLU) and xhat = (x - mean) * invstd:
 *   dbeta += sum g,  dgamma += sum g*xhat,
 *   dx = (or +=, as dx_store says) gamma*invstd * (g - sum(g)/P - xhat * sum(g*xhat)/P). */
void cpu_batchnorm_backward(float *dx, float *dgamma, float *dbeta, grad_store dx_store,
                            const float *dy, const float *x, const float *y, const float *gamma,
                            const float *batch_mean, const float *batch_invstd, int channels,
                            size_t plane) {
    check("cpu_batchnorm_backward", channels, plane);
    const size_t blocks = blocks_of(plane), tasks = (size_t)channels * blocks;
    double *sums = scratch_doubles(2 * tasks + 3 * (size_t)channels + 1);
    double *coefficients = sums + 2 * tasks; /* dx (+)= k g + b0 + b1 (x - mean) */
    /* Pass 1: per block, sum g and sum g*(x - mean). */
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < tasks; task++) {
        size_t c, begin, end;
        task_range(task, blocks, plane, &c, &begin, &end);
        const size_t count = end - begin;
        const float *restrict g = dy + c * plane + begin;
        const float *restrict xb = x + c * plane + begin;
        const float mean = batch_mean[c];
        float masked[BLOCK];
        if (y) {
            /* the ReLU mask in a loop of its own: inside the double reduction below, GCC
             * vectorised a multiply by the comparison only with AVX-512's mask registers
             * (at x86-64-v3 this pass ran 9x slower) and a select not even with them */
            const float *restrict yb = y + c * plane + begin;
            for (size_t i = 0; i < count; i++) {
                const float gi = g[i]; /* loaded unconditionally so the loop vectorises */
                masked[i] = yb[i] > 0.0f ? gi : 0.0f;
            }
            g = masked;
        }
        double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
        for (size_t i = 0; i < count; i++) {
            sg += (double)g[i];
            sgx += (double)(g[i] * (xb[i] - mean));
        }
        sums[2 * task] = sg;
        sums[2 * task + 1] = sgx;
    }
    for (int c = 0; c < channels; c++) {
        double sg, sgx;
        channel_totals(sums, (size_t)c, blocks, &sg, &sgx);
        const double invstd = batch_invstd[c];
        const double sgxhat = sgx * invstd;
        if (dbeta) dbeta[c] += (float)sg;
        if (dgamma) dgamma[c] += (float)sgxhat;
        /* dx (+)= k * g + b0 + b1 * (x - mean) */
        const double k = (double)gamma[c] * invstd;
        coefficients[3 * c] = k;
        coefficients[3 * c + 1] = -k * sg / (double)plane;
        coefficients[3 * c + 2] = -k * sgxhat * invstd / (double)plane;
    }
    /* Pass 2: dx. */
    if (dx) {
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < tasks; task++) {
            size_t c, begin, end;
            task_range(task, blocks, plane, &c, &begin, &end);
            const float *restrict gc = dy + c * plane;
            const float *restrict xc = x + c * plane;
            const float *restrict yc = y ? y + c * plane : NULL;
            float *restrict dxc = dx + c * plane;
            const float kf = (float)coefficients[3 * c], b0 = (float)coefficients[3 * c + 1],
                        b1 = (float)coefficients[3 * c + 2], mean = batch_mean[c];
            /* four loops rather than a select on dx_store inside one: a written-over dx is
             * never read, which is the pass over memory that storing it saves */
            const int accumulate = dx_store == GRAD_ACCUMULATE;
            if (yc && accumulate) {
                for (size_t i = begin; i < end; i++) {
                    const float gi = gc[i]; /* loaded unconditionally so the loop vectorises */
                    const float g = yc[i] > 0.0f ? gi : 0.0f;
                    dxc[i] += kf * g + b0 + b1 * (xc[i] - mean);
                }
            } else if (yc) {
                for (size_t i = begin; i < end; i++) {
                    const float gi = gc[i];
                    const float g = yc[i] > 0.0f ? gi : 0.0f;
                    dxc[i] = kf * g + b0 + b1 * (xc[i] - mean);
                }
            } else if (accumulate) {
                for (size_t i = begin; i < end; i++) dxc[i] += kf * gc[i] + b0 + b1 * (xc[i] - mean);
            } else {
                for (size_t i = begin; i < end; i++) dxc[i] = kf * gc[i] + b0 + b1 * (xc[i] - mean);
            }
        }
    }
}
