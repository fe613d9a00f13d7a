/* Batch normalisation over each channel's contiguous plane (CNHW), with optional fused ReLU.
 * Statistics are accumulated in double, as partial sums per fixed block of a plane combined
 * in a fixed order, so results do not depend on the thread count or the schedule.
 *
 * Each op makes two passes over a plane (sums, then the values that use them). With enough
 * channels to share out evenly, a thread takes whole channels and makes both passes over one
 * before the next, so the second pass reads the plane from its cache (a 32x32 plane of batch
 * 128 is 512 KiB); otherwise (the bottleneck layers have as few as 3 channels of 131,072
 * values) the work is split into (channel, block) tasks, each pass over all of them, and the
 * second pass reads the tensor from memory again. */
#include "backend/cpu/cpu_gemm.h"
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

/* Whole channels per thread (see the top of the file): when they share out evenly, or so
 * nearly (at least 4 per thread) that the last one's wait is small. */
static int by_channel(int channels) {
    const int threads = cpu_threads();
    return channels % threads == 0 || channels >= 4 * threads;
}

/* An op's two passes over its (channel, block) tasks, with each channel's step between
 * them (after all of its first-pass tasks, before any of its second-pass ones; no second
 * pass when `second` is NULL): whole channels per thread or all tasks per pass, as
 * by_channel says. */
typedef void (*block_pass)(const void *job, size_t task);
typedef void (*channel_step)(const void *job, size_t channel);

static void run_passes(const void *job, int channels, size_t blocks, block_pass first,
                       channel_step between, block_pass second) {
    if (by_channel(channels)) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < channels; c++) {
            const size_t begin = (size_t)c * blocks, end = begin + blocks;
            for (size_t task = begin; task < end; task++) first(job, task);
            between(job, (size_t)c);
            if (second)
                for (size_t task = begin; task < end; task++) second(job, task);
        }
        return;
    }
    const size_t tasks = (size_t)channels * blocks;
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < tasks; task++) first(job, task);
    for (size_t c = 0; c < (size_t)channels; c++) between(job, c);
    if (second) {
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < tasks; task++) second(job, task);
    }
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

/* One forward pass's arguments and scratch, shared by its tasks. */
typedef struct forward_job {
    float *y, *batch_mean, *batch_invstd, *running_mean, *running_var;
    const float *x, *gamma, *beta;
    float eps, momentum;
    int fuse_relu;
    size_t plane, blocks;
    double *sums;  /* two per (channel, block) task */
    double *scale; /* a, b of y = a x + b per channel */
} forward_job;

/* Task (c, block)'s sums of x - shift and (x - shift)^2, shift = the channel's first value:
 * shifted sums keep E[x^2] - E[x]^2 free of cancellation. */
static void forward_sums(const void *job, size_t task) {
    const forward_job *j = job;
    size_t c, begin, end;
    task_range(task, j->blocks, j->plane, &c, &begin, &end);
    const float *restrict xc = j->x + c * j->plane;
    const double shift = xc[0];
    double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
    for (size_t i = begin; i < end; i++) {
        double d = (double)xc[i] - shift;
        s1 += d;
        s2 += d * d;
    }
    j->sums[2 * task] = s1;
    j->sums[2 * task + 1] = s2;
}

/* Channel c's statistics from its blocks' sums: batch and running ones, and its scale. */
static void forward_coefficients(const void *job, size_t c) {
    const forward_job *j = job;
    /* unbiased variance of a single value is undefined; keep the biased one then */
    const double plane = (double)j->plane, unbias = j->plane > 1 ? plane / (plane - 1.0) : 1.0;
    const double momentum = j->momentum;
    double s1, s2;
    channel_totals(j->sums, c, j->blocks, &s1, &s2);
    const double dmean = s1 / plane;
    double var = s2 / plane - dmean * dmean;
    if (var < 0.0) var = 0.0;
    const double mean = (double)j->x[c * j->plane] + dmean;
    const double invstd = 1.0 / sqrt(var + (double)j->eps);
    if (j->batch_mean) j->batch_mean[c] = (float)mean;
    if (j->batch_invstd) j->batch_invstd[c] = (float)invstd;
    if (j->running_mean)
        j->running_mean[c] = (float)(momentum * j->running_mean[c] + (1.0 - momentum) * mean);
    if (j->running_var)
        j->running_var[c] =
            (float)(momentum * j->running_var[c] + (1.0 - momentum) * var * unbias);
    const double a = (double)j->gamma[c] * invstd;
    j->scale[2 * c] = a;
    j->scale[2 * c + 1] = (double)j->beta[c] - a * mean;
}

static void forward_apply(const void *job, size_t task) {
    const forward_job *j = job;
    size_t c, begin, end;
    task_range(task, j->blocks, j->plane, &c, &begin, &end);
    const size_t at = c * j->plane + begin;
    affine(j->y + at, j->x + at, (float)j->scale[2 * c], (float)j->scale[2 * c + 1],
           j->fuse_relu, end - begin);
}

void cpu_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, float eps, float momentum,
                                 int fuse_relu, int channels, size_t plane) {
    check("cpu_batchnorm_forward_train", channels, plane);
    const size_t blocks = blocks_of(plane), tasks = (size_t)channels * blocks;
    double *sums = scratch_doubles(2 * tasks + 2 * (size_t)channels + 1);
    const forward_job j = {.y = y, .batch_mean = batch_mean, .batch_invstd = batch_invstd,
                           .running_mean = running_mean, .running_var = running_var, .x = x,
                           .gamma = gamma, .beta = beta, .eps = eps, .momentum = momentum,
                           .fuse_relu = fuse_relu, .plane = plane, .blocks = blocks,
                           .sums = sums, .scale = sums + 2 * tasks};
    run_passes(&j, channels, blocks, forward_sums, forward_coefficients, forward_apply);
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

/* One backward pass's arguments and scratch. With g = dy (masked by y > 0 for the fused
 * ReLU) and xhat = (x - mean) * invstd:
 *   dbeta += sum g,  dgamma += sum g*xhat,
 *   dx = (or +=, as dx_store says) gamma*invstd * (g - sum(g)/P - xhat * sum(g*xhat)/P). */
typedef struct backward_job {
    float *dx, *dgamma, *dbeta;
    grad_store dx_store;
    const float *dy, *x, *y, *gamma, *batch_mean, *batch_invstd;
    size_t plane, blocks;
    double *sums;         /* two per (channel, block) task */
    double *coefficients; /* dx (+)= k g + b0 + b1 (x - mean): three per channel */
} backward_job;

/* Task (c, block)'s sums of g and g*(x - mean). */
static void backward_sums(const void *job, size_t task) {
    const backward_job *j = job;
    size_t c, begin, end;
    task_range(task, j->blocks, j->plane, &c, &begin, &end);
    const size_t count = end - begin;
    const float *restrict g = j->dy + c * j->plane + begin;
    const float *restrict xb = j->x + c * j->plane + begin;
    const float mean = j->batch_mean[c];
    float masked[BLOCK];
    if (j->y) {
        /* the ReLU mask in a loop of its own: inside the double reduction below, GCC
         * vectorised a multiply by the comparison only with AVX-512's mask registers
         * (at x86-64-v3 this pass ran 9x slower) and a select not even with them */
        const float *restrict yb = j->y + c * j->plane + begin;
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
    j->sums[2 * task] = sg;
    j->sums[2 * task + 1] = sgx;
}

/* Channel c's parameter gradients and dx coefficients from its blocks' sums. */
static void backward_coefficients(const void *job, size_t c) {
    const backward_job *j = job;
    double sg, sgx;
    channel_totals(j->sums, c, j->blocks, &sg, &sgx);
    const double invstd = j->batch_invstd[c], plane = (double)j->plane;
    const double sgxhat = sgx * invstd;
    if (j->dbeta) j->dbeta[c] += (float)sg;
    if (j->dgamma) j->dgamma[c] += (float)sgxhat;
    const double k = (double)j->gamma[c] * invstd;
    j->coefficients[3 * c] = k;
    j->coefficients[3 * c + 1] = -k * sg / plane;
    j->coefficients[3 * c + 2] = -k * sgxhat * invstd / plane;
}

static void backward_dx(const void *job, size_t task) {
    const backward_job *j = job;
    size_t c, begin, end;
    task_range(task, j->blocks, j->plane, &c, &begin, &end);
    const float *restrict gc = j->dy + c * j->plane;
    const float *restrict xc = j->x + c * j->plane;
    const float *restrict yc = j->y ? j->y + c * j->plane : NULL;
    float *restrict dxc = j->dx + c * j->plane;
    const double *coefficients = j->coefficients + 3 * c;
    const float kf = (float)coefficients[0], b0 = (float)coefficients[1],
                b1 = (float)coefficients[2], mean = j->batch_mean[c];
    /* four loops rather than a select on dx_store inside one: a written-over dx is never
     * read, which is the pass over memory that storing it saves */
    const int accumulate = j->dx_store == GRAD_ACCUMULATE;
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

void cpu_batchnorm_backward(float *dx, float *dgamma, float *dbeta, grad_store dx_store,
                            const float *dy, const float *x, const float *y, const float *gamma,
                            const float *batch_mean, const float *batch_invstd, int channels,
                            size_t plane) {
    check("cpu_batchnorm_backward", channels, plane);
    const size_t blocks = blocks_of(plane), tasks = (size_t)channels * blocks;
    double *sums = scratch_doubles(2 * tasks + 3 * (size_t)channels + 1);
    const backward_job j = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dx_store = dx_store,
                            .dy = dy, .x = x, .y = y, .gamma = gamma, .batch_mean = batch_mean,
                            .batch_invstd = batch_invstd, .plane = plane, .blocks = blocks,
                            .sums = sums, .coefficients = sums + 2 * tasks};
    run_passes(&j, channels, blocks, backward_sums, backward_coefficients, dx ? backward_dx : NULL);
}
