/* Batch normalisation over each channel's contiguous CNHW plane, with optional fused ReLU:
 * the GPU twin of cpu_batchnorm.c, same formulas and the same Keras running-statistics
 * convention (running = momentum * running + (1 - momentum) * batch, unbiased variance).
 *
 * Own kernels rather than cuDNN's batchnorm: CNHW planes are contiguous, the ReLU fuses,
 * any eps is allowed (cuDNN requires >= 1e-5), and the statistics use the CPU oracle's
 * formulas (the sums in another order, and nvcc contracts to FMA: equal to rounding, not
 * bit for bit). Each reduction runs in three steps, all deterministic for one GPU model
 * (the blocks per channel follow its SM count) and one BNECK_BN_FUSED_MAX_PLANE:
 *   1. partial sums: a grid of (blocks per channel, channels) blocks, each summing in
 *      double, per thread and across the block;
 *   2. finalize: one thread per channel adds its partials in a fixed order and derives
 *      the per-channel coefficients (and the statistics the op returns);
 *   3. apply: an elementwise pass with those coefficients.
 * A plane small enough for one block (at most 32768 values by default: the 8x8 and 16x16
 * stages at batch 128) runs all three in one kernel of one block per channel instead:
 * the same formulas (the __device__ helpers below serve both; its sums in another order),
 * one launch rather than three, which is what such small passes cost. */
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

/* One block per channel does the whole op up to this plane (the 16x16 stage at batch
 * 128: 32 values per thread), then the three-kernel path spreads a channel over blocks.
 * BNECK_BN_FUSED_MAX_PLANE in the environment moves the line (0: never fused), so that
 * the GPU check can time both paths on the same shapes; it has not been tuned on a GPU.
 * cuda_backend_set_batchnorm_fused_max_plane moves it from code (the tests run every shape
 * down both paths). */
enum { FUSED_MAX_PLANE = 32768, FUSED_THREADS = 1024 };

static size_t fused_max_plane_value;
static bool fused_max_plane_known; /* set, or read from the environment */

static size_t fused_max_plane(void) {
    if (fused_max_plane_known) return fused_max_plane_value;
    fused_max_plane_known = true;
    fused_max_plane_value = FUSED_MAX_PLANE;
    const char *text = getenv("BNECK_BN_FUSED_MAX_PLANE");
    if (text && *text) {
        char *end = NULL;
        const long long parsed = strtoll(text, &end, 10);
        if (end && !*end && parsed >= 0)
            fused_max_plane_value = (size_t)parsed;
        else
            fprintf(stderr, "bneck: warning: BNECK_BN_FUSED_MAX_PLANE='%s' is not a count of "
                            "values; using %d\n", text, (int)FUSED_MAX_PLANE);
    }
    return fused_max_plane_value;
}

extern "C" void cuda_backend_set_batchnorm_fused_max_plane(size_t plane) {
    fused_max_plane_value = plane;
    fused_max_plane_known = true;
}

extern "C" size_t cuda_backend_batchnorm_fused_max_plane(void) { return fused_max_plane(); }

/* Enough blocks to fill the GPU when there are few channels, but at least a few values
 * per thread so the blocks do real work. */
static unsigned reduction_blocks_per_channel(int channels, size_t plane) {
    const size_t target = (size_t)(cuda_ctx.sm_count > 0 ? cuda_ctx.sm_count : 1) * 4;
    size_t per_channel = target / (size_t)channels;
    const size_t useful = (plane + CUDA_THREADS * 4 - 1) / (CUDA_THREADS * 4);
    if (per_channel > useful) per_channel = useful;
    if (per_channel < 1) per_channel = 1;
    return (unsigned)per_channel;
}

/* Scratch layout: partial sums [channels][blocks][2] (double), then per-channel
 * coefficients [channels] (float4). */
typedef struct reduction_scratch {
    double *partials;
    float4 *coefficients;
} reduction_scratch;

static reduction_scratch reduction_scratch_for(int channels, unsigned blocks) {
    const size_t partial_bytes = (size_t)channels * blocks * 2 * sizeof(double);
    char *base = (char *)cuda_scratch(CUDA_SCRATCH_REDUCTION,
                                      partial_bytes + (size_t)channels * sizeof(float4));
    reduction_scratch scratch = {(double *)base, (float4 *)(base + partial_bytes)};
    return scratch;
}

static void check(const char *op, int channels, size_t plane) {
    /* channels index grid rows (at most 65535) */
    if (channels < 0 || channels > 65535 || plane < 1)
        CUDA_FAIL("%s: bad channels=%d plane=%zu", op, channels, plane);
}

/* Channel c's two sums over its partial-sum blocks, added in a fixed order. */
static __device__ double2 channel_partials_sum(const double *partials, int c, unsigned blocks) {
    double first = 0.0, second = 0.0;
    for (unsigned b = 0; b < blocks; b++) {
        first += partials[((size_t)c * blocks + b) * 2];
        second += partials[((size_t)c * blocks + b) * 2 + 1];
    }
    return make_double2(first, second);
}

/* --- forward, training ------------------------------------------------------------------- */

/* The block's shifted sums (sum d, sum d^2 with d = x - shift, the shift being the
 * channel's first value, as on the CPU: no cancellation in E[d^2] - E[d]^2) over the values
 * from `first` in steps of `stride` (valid in thread 0). */
static __device__ __forceinline__ double2 block_shifted_sums(const float *xc, float shift,
                                                             size_t first, size_t stride,
                                                             size_t plane) {
    /* in double, as on the CPU: with a shift far from the mean, float sums of d^2 would
     * lose the variance to rounding (full-rate FP64 on data-centre GPUs, and the pass is
     * bound by memory anyway) */
    double s1 = 0.0, s2 = 0.0;
    for (size_t i = first; i < plane; i += stride) {
        const double d = (double)xc[i] - (double)shift;
        s1 += d;
        s2 += d * d;
    }
    const double sum = block_sum(s1);
    return make_double2(sum, block_sum(s2));
}

__global__ void stats_partial_kernel(double *partials, const float *x, size_t plane) {
    const int c = blockIdx.y;
    const float *xc = x + (size_t)c * plane;
    const double2 sums =
        block_shifted_sums(xc, xc[0], (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                           (size_t)gridDim.x * blockDim.x, plane);
    if (threadIdx.x == 0) {
        double *out = partials + ((size_t)c * gridDim.x + blockIdx.x) * 2;
        out[0] = sums.x;
        out[1] = sums.y;
    }
}

/* Channel c's statistics from its shifted sums s1 = sum d, s2 = sum d^2 (d = x - shift):
 * writes those the op returns and gives the coefficients (a, b) of y = a * x + b. */
static __device__ float4 forward_coefficients(float *batch_mean, float *batch_invstd,
                                              float *running_mean, float *running_var,
                                              double s1, double s2, double shift,
                                              const float *gamma, const float *beta, float eps,
                                              float momentum, int c, size_t plane) {
    const double dmean = s1 / (double)plane;
    double var = s2 / (double)plane - dmean * dmean;
    if (var < 0.0) var = 0.0;
    const double mean = shift + dmean;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    /* unbiased variance of a single value is undefined; keep the biased one then */
    const double unbias = plane > 1 ? (double)plane / (double)(plane - 1) : 1.0;
    if (batch_mean) batch_mean[c] = (float)mean;
    if (batch_invstd) batch_invstd[c] = (float)invstd;
    if (running_mean)
        running_mean[c] =
            (float)((double)momentum * running_mean[c] + (1.0 - (double)momentum) * mean);
    if (running_var)
        running_var[c] = (float)((double)momentum * running_var[c] +
                                 (1.0 - (double)momentum) * var * unbias);
    const double a = (double)gamma[c] * invstd;
    return make_float4((float)a, (float)((double)beta[c] - a * mean), 0.0f, 0.0f);
}

__global__ void stats_finalize_kernel(float4 *coefficients, float *batch_mean,
                                      float *batch_invstd, float *running_mean,
                                      float *running_var, const double *partials,
                                      unsigned blocks, const float *x, const float *gamma,
                                      const float *beta, float eps, float momentum,
                                      int channels, size_t plane) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const double2 sums = channel_partials_sum(partials, c, blocks);
    coefficients[c] = forward_coefficients(batch_mean, batch_invstd, running_mean, running_var,
                                           sums.x, sums.y, x[(size_t)c * plane], gamma, beta, eps,
                                           momentum, c, plane);
}

static __device__ __forceinline__ float affine(float a, float b, float x, int fuse_relu) {
    const float v = a * x + b;
    return fuse_relu ? (v > 0.0f ? v : 0.0f) : v;
}

/* y = a * x + b per channel, then max(0, .) when fuse_relu. */
__global__ void affine_kernel(float *y, const float *x, const float4 *coefficients, int fuse_relu,
                              size_t plane) {
    const int c = blockIdx.y;
    const float a = coefficients[c].x, b = coefficients[c].y;
    const float *xc = x + (size_t)c * plane;
    float *yc = y + (size_t)c * plane;
    GRID_STRIDE_LOOP(i, plane) yc[i] = affine(a, b, xc[i], fuse_relu);
}

/* The three steps in one block per channel (grid: channels blocks of FUSED_THREADS). */
__global__ void __launch_bounds__(FUSED_THREADS, 1)
    forward_train_fused_kernel(float *y, float *batch_mean, float *batch_invstd,
                               float *running_mean, float *running_var, const float *x,
                               const float *gamma, const float *beta, float eps,
                               float momentum, int fuse_relu, size_t plane) {
    __shared__ float2 coefficient;
    const int c = blockIdx.x;
    const float *xc = x + (size_t)c * plane;
    float *yc = y + (size_t)c * plane;
    const float shift = xc[0];
    const double2 sums = block_shifted_sums(xc, shift, threadIdx.x, blockDim.x, plane);
    if (threadIdx.x == 0) {
        const float4 k = forward_coefficients(batch_mean, batch_invstd, running_mean,
                                              running_var, sums.x, sums.y, shift, gamma, beta,
                                              eps, momentum, c, plane);
        coefficient = make_float2(k.x, k.y);
    }
    __syncthreads();
    const float a = coefficient.x, b = coefficient.y;
    for (size_t i = threadIdx.x; i < plane; i += blockDim.x) yc[i] = affine(a, b, xc[i], fuse_relu);
}

static unsigned finalize_blocks(int channels) {
    return (unsigned)((channels + CUDA_THREADS - 1) / CUDA_THREADS);
}

extern "C" void cuda_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                             float *running_mean, float *running_var,
                                             const float *x, const float *gamma,
                                             const float *beta, float eps, float momentum,
                                             int fuse_relu, int channels, size_t plane) {
    check("cuda_batchnorm_forward_train", channels, plane);
    if (channels == 0) return;
    if (plane <= fused_max_plane()) {
        forward_train_fused_kernel<<<(unsigned)channels, FUSED_THREADS, 0, cuda_ctx.stream>>>(
            y, batch_mean, batch_invstd, running_mean, running_var, x, gamma, beta, eps,
            momentum, fuse_relu, plane);
        CUDA_CHECK_LAUNCH();
        return;
    }
    const unsigned blocks = reduction_blocks_per_channel(channels, plane);
    const reduction_scratch scratch = reduction_scratch_for(channels, blocks);
    stats_partial_kernel<<<dim3(blocks, (unsigned)channels), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        scratch.partials, x, plane);
    CUDA_CHECK_LAUNCH();
    stats_finalize_kernel<<<finalize_blocks(channels), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        scratch.coefficients, batch_mean, batch_invstd, running_mean, running_var,
        scratch.partials, blocks, x, gamma, beta, eps, momentum, channels, plane);
    CUDA_CHECK_LAUNCH();
    affine_kernel<<<dim3(cuda_blocks_per_channel(channels, plane), (unsigned)channels),
                    CUDA_THREADS, 0, cuda_ctx.stream>>>(y, x, scratch.coefficients, fuse_relu,
                                                        plane);
    CUDA_CHECK_LAUNCH();
}

/* --- forward, inference ------------------------------------------------------------------- */

__global__ void infer_coefficients_kernel(float4 *coefficients, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, float eps, int channels) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const double a = (double)gamma[c] / sqrt((double)running_var[c] + (double)eps);
    coefficients[c] =
        make_float4((float)a, (float)((double)beta[c] - a * running_mean[c]), 0.0f, 0.0f);
}

extern "C" void cuda_batchnorm_forward_infer(float *y, const float *x, const float *gamma,
                                             const float *beta, const float *running_mean,
                                             const float *running_var, float eps, int fuse_relu,
                                             int channels, size_t plane) {
    check("cuda_batchnorm_forward_infer", channels, plane);
    if (channels == 0) return;
    const reduction_scratch scratch = reduction_scratch_for(channels, 0);
    infer_coefficients_kernel<<<finalize_blocks(channels), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        scratch.coefficients, gamma, beta, running_mean, running_var, eps, channels);
    CUDA_CHECK_LAUNCH();
    affine_kernel<<<dim3(cuda_blocks_per_channel(channels, plane), (unsigned)channels),
                    CUDA_THREADS, 0, cuda_ctx.stream>>>(y, x, scratch.coefficients, fuse_relu,
                                                        plane);
    CUDA_CHECK_LAUNCH();
}

/* --- backward ------------------------------------------------------------------------------
 * With g = dy (masked by y > 0 for the fused ReLU) and xhat = (x - mean) * invstd:
 *   dbeta += sum g,  dgamma += sum g*xhat,
 *   dx += gamma*invstd * (g - sum(g)/P - xhat * sum(g*xhat)/P). */

static __device__ __forceinline__ float masked_gradient(const float *dy, const float *y,
                                                        size_t i) {
    return y && !(y[i] > 0.0f) ? 0.0f : dy[i];
}

/* The block's (sum g, sum g*(x - mean)) over the values from `first` in steps of `stride`
 * (valid in thread 0). */
static __device__ __forceinline__ double2 block_gradient_sums(const float *gc, const float *xc,
                                                              const float *yc, float mean,
                                                              size_t first, size_t stride,
                                                              size_t plane) {
    double sg = 0.0, sgx = 0.0; /* each product in float, the sums in double: the CPU's */
    for (size_t i = first; i < plane; i += stride) {
        const float g = masked_gradient(gc, yc, i);
        sg += (double)g;
        sgx += (double)(g * (xc[i] - mean));
    }
    const double sum_g = block_sum(sg);
    return make_double2(sum_g, block_sum(sgx));
}

__global__ void gradient_partial_kernel(double *partials, const float *dy, const float *x,
                                        const float *y, const float *batch_mean, size_t plane) {
    const int c = blockIdx.y;
    const size_t offset = (size_t)c * plane;
    const float *gc = dy + offset, *xc = x + offset, *yc = y ? y + offset : NULL;
    const float mean = batch_mean[c];
    const double2 sums = block_gradient_sums(gc, xc, yc, mean,
                                             (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                                             (size_t)gridDim.x * blockDim.x, plane);
    if (threadIdx.x == 0) {
        double *out = partials + ((size_t)c * gridDim.x + blockIdx.x) * 2;
        out[0] = sums.x;
        out[1] = sums.y;
    }
}

/* Channel c's gradient sums sg = sum g, sgx = sum g*(x - mean): adds dgamma and dbeta and
 * gives the coefficients of dx += k * g + b0 + b1 * (x - mean), in (x, y, z). */
static __device__ float4 gradient_coefficients(float *dgamma, float *dbeta, double sg,
                                               double sgx, const float *gamma,
                                               const float *batch_invstd, int c, size_t plane) {
    const double invstd = batch_invstd[c];
    const double sgxhat = sgx * invstd;
    if (dbeta) dbeta[c] += (float)sg;
    if (dgamma) dgamma[c] += (float)sgxhat;
    const double k = (double)gamma[c] * invstd;
    return make_float4((float)k, (float)(-k * sg / (double)plane),
                       (float)(-k * sgxhat * invstd / (double)plane), 0.0f);
}

__global__ void gradient_finalize_kernel(float4 *coefficients, float *dgamma, float *dbeta,
                                         const double *partials, unsigned blocks,
                                         const float *gamma, const float *batch_invstd,
                                         int channels, size_t plane) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const double2 sums = channel_partials_sum(partials, c, blocks);
    coefficients[c] =
        gradient_coefficients(dgamma, dbeta, sums.x, sums.y, gamma, batch_invstd, c, plane);
}

__global__ void gradient_apply_kernel(float *dx, const float *dy, const float *x, const float *y,
                                      const float *batch_mean, const float4 *coefficients,
                                      size_t plane) {
    const int c = blockIdx.y;
    const size_t offset = (size_t)c * plane;
    const float *gc = dy + offset, *xc = x + offset, *yc = y ? y + offset : NULL;
    float *dxc = dx + offset;
    const float mean = batch_mean[c];
    const float k = coefficients[c].x, b0 = coefficients[c].y, b1 = coefficients[c].z;
    GRID_STRIDE_LOOP(i, plane) dxc[i] += k * masked_gradient(gc, yc, i) + b0 + b1 * (xc[i] - mean);
}

/* The backward's three steps in one block per channel, as forward_train_fused_kernel. */
__global__ void __launch_bounds__(FUSED_THREADS, 1)
    backward_fused_kernel(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *x, const float *y, const float *gamma,
                          const float *batch_mean, const float *batch_invstd, size_t plane) {
    __shared__ float4 coefficient;
    const int c = blockIdx.x;
    const size_t offset = (size_t)c * plane;
    const float *gc = dy + offset, *xc = x + offset, *yc = y ? y + offset : NULL;
    const float mean = batch_mean[c];
    const double2 sums = block_gradient_sums(gc, xc, yc, mean, threadIdx.x, blockDim.x, plane);
    if (threadIdx.x == 0)
        coefficient = gradient_coefficients(dgamma, dbeta, sums.x, sums.y, gamma, batch_invstd,
                                            c, plane);
    __syncthreads();
    if (!dx) return;
    float *dxc = dx + offset;
    const float k = coefficient.x, b0 = coefficient.y, b1 = coefficient.z;
    for (size_t i = threadIdx.x; i < plane; i += blockDim.x)
        dxc[i] += k * masked_gradient(gc, yc, i) + b0 + b1 * (xc[i] - mean);
}

extern "C" void cuda_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                        const float *x, const float *y, const float *gamma,
                                        const float *batch_mean, const float *batch_invstd,
                                        int channels, size_t plane) {
    check("cuda_batchnorm_backward", channels, plane);
    if (channels == 0) return;
    if (plane <= fused_max_plane()) {
        backward_fused_kernel<<<(unsigned)channels, FUSED_THREADS, 0, cuda_ctx.stream>>>(
            dx, dgamma, dbeta, dy, x, y, gamma, batch_mean, batch_invstd, plane);
        CUDA_CHECK_LAUNCH();
        return;
    }
    const unsigned blocks = reduction_blocks_per_channel(channels, plane);
    const reduction_scratch scratch = reduction_scratch_for(channels, blocks);
    gradient_partial_kernel<<<dim3(blocks, (unsigned)channels), CUDA_THREADS, 0,
                              cuda_ctx.stream>>>(scratch.partials, dy, x, y, batch_mean, plane);
    CUDA_CHECK_LAUNCH();
    gradient_finalize_kernel<<<finalize_blocks(channels), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        scratch.coefficients, dgamma, dbeta, scratch.partials, blocks, gamma, batch_invstd,
        channels, plane);
    CUDA_CHECK_LAUNCH();
    if (!dx) return;
    gradient_apply_kernel<<<dim3(cuda_blocks_per_channel(channels, plane),
                                 (unsigned)channels),
                            CUDA_THREADS, 0, cuda_ctx.stream>>>(dx, dy, x, y, batch_mean,
                                                                scratch.coefficients, plane);
    CUDA_CHECK_LAUNCH();
}
