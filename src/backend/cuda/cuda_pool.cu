/* Pooling over planes (one plane = one (channel, image) map of height x width): the GPU
 * twin of cpu_pool.c. Results match the CPU bit for bit where the CPU's order of float
 * operations can be kept (max pool both ways, the 2x2 average pool); __fmul_rn keeps the
 * compiler from fusing a multiply into the following add (the CPU build has no FMA). */
#include <cuda_runtime.h>

#include <limits.h>

#include "backend/cpu/cpu_maxpool_window.h"
#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

/* The window rule (cpu_maxpool_window.h) indexes a plane in int. */
static void check(const char *op, int planes, int height, int width) {
    if (planes < 0 || height < 1 || width < 1 || (long long)height * width > INT_MAX)
        CUDA_FAIL("%s: bad dimensions planes=%d height=%d width=%d", op, planes, height, width);
}

/* --- 3x3 max pool, stride 1, same padding (out-of-image positions never win) ------------ */

/* One thread per output: the window's maximum over in-image taps and, when argmax is
 * non-NULL, its code (row + 1) * 3 + (column + 1), by the rule the CPU shares
 * (cpu_maxpool_window.h: the first maximum in window order; a NaN wins; a window of only
 * -inf gives its first in-image tap). */
__global__ void maxpool3x3_forward_kernel(float *y, uint8_t *argmax, const float *x,
                                          unsigned count, int height, int width) {
    const unsigned area = (unsigned)height * (unsigned)width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned hw, column;
        const float *xp = x + (size_t)split_index(index, area, &hw) * area;
        const int h = (int)split_index(hw, (unsigned)width, &column), w = (int)column;
        float best;
        const int code = maxpool_window(&best, xp, h, w, height, width);
        y[index] = best;
        if (argmax) argmax[index] = (uint8_t)code;
    }
}

extern "C" void cuda_maxpool3x3_forward(float *y, uint8_t *argmax, const float *x, int planes,
                                        int height, int width) {
    check("cuda_maxpool3x3_forward", planes, height, width);
    const size_t count = (size_t)planes * (size_t)height * (size_t)width;
    if (!count) return;
    cuda_require_32bit("cuda_maxpool3x3_forward", count);
    maxpool3x3_forward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        y, argmax, x, (unsigned)count, height, width);
    CUDA_CHECK_LAUNCH();
}

/* Gathered, as on the CPU: input (h, w) sums, in window order of the outputs around it,
 * the dy of each output whose code names the tap pointing back at (h, w), then adds the
 * sum to dx. The CPU keeps the same order per input, so the results agree bit for bit;
 * no atomics. */
__global__ void maxpool3x3_backward_kernel(float *dx, const float *dy, const uint8_t *argmax,
                                           unsigned count, int height, int width) {
    const unsigned area = (unsigned)height * (unsigned)width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned hw, column;
        const size_t base = (size_t)split_index(index, area, &hw) * area;
        const int h = (int)split_index(hw, (unsigned)width, &column), w = (int)column;
        const float *gp = dy + base;
        const uint8_t *cp = argmax + base;
        float sum = 0.0f;
        for (int a = -1; a <= 1; a++) {
            if (h + a < 0 || h + a >= height) continue;
            for (int b = -1; b <= 1; b++) {
                if (w + b < 0 || w + b >= width) continue;
                const int output = (h + a) * width + w + b;
                sum += cp[output] == (1 - a) * 3 + (1 - b) ? gp[output] : 0.0f;
            }
        }
        dx[index] += sum;
    }
}

extern "C" void cuda_maxpool3x3_backward(float *dx, const float *dy, const uint8_t *argmax,
                                         int planes, int height, int width) {
    check("cuda_maxpool3x3_backward", planes, height, width);
    const size_t count = (size_t)planes * (size_t)height * (size_t)width;
    if (!dx || !count) return;
    cuda_require_32bit("cuda_maxpool3x3_backward", count);
    maxpool3x3_backward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        dx, dy, argmax, (unsigned)count, height, width);
    CUDA_CHECK_LAUNCH();
}

/* --- 2x2 average pool, stride 2 ---------------------------------------------------------- */

static void check_even(const char *op, int height, int width) {
    if (height % 2 || width % 2)
        CUDA_FAIL("%s: height %d and width %d must be even", op, height, width);
}

/* One thread per output; index runs over planes * (height/2) * (width/2). */
__global__ void avgpool2x2_forward_kernel(float *y, const float *x, size_t count, int height,
                                          int width) {
    const int out_width = width / 2;
    const unsigned out_area = (unsigned)(height / 2) * (unsigned)out_width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned o, column;
        const size_t p = split_index(index, out_area, &o);
        const int i = (int)split_index(o, (unsigned)out_width, &column), j = (int)column;
        const float *a = x + p * (size_t)height * (size_t)width + (size_t)(2 * i) * width;
        const float *b = a + width;
        y[index] = 0.25f * ((a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]));
    }
}

extern "C" void cuda_avgpool2x2_forward(float *y, const float *x, int planes, int height,
                                        int width) {
    check("cuda_avgpool2x2_forward", planes, height, width);
    check_even("cuda_avgpool2x2_forward", height, width);
    const size_t count = (size_t)planes * (size_t)(height / 2) * (size_t)(width / 2);
    if (!count) return;
    cuda_require_32bit("cuda_avgpool2x2_forward", count);
    avgpool2x2_forward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        y, x, count, height, width);
    CUDA_CHECK_LAUNCH();
}

/* One thread per output: its four inputs belong to no other output, so no races. */
__global__ void avgpool2x2_backward_kernel(float *dx, const float *dy, size_t count, int height,
                                           int width) {
    const int out_width = width / 2;
    const unsigned out_area = (unsigned)(height / 2) * (unsigned)out_width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned o, column;
        const size_t p = split_index(index, out_area, &o);
        const int i = (int)split_index(o, (unsigned)out_width, &column), j = (int)column;
        float *a = dx + p * (size_t)height * (size_t)width + (size_t)(2 * i) * width;
        float *b = a + width;
        const float v = __fmul_rn(0.25f, dy[index]);
        a[2 * j] += v;
        a[2 * j + 1] += v;
        b[2 * j] += v;
        b[2 * j + 1] += v;
    }
}

extern "C" void cuda_avgpool2x2_backward(float *dx, const float *dy, int planes, int height,
                                         int width) {
    check("cuda_avgpool2x2_backward", planes, height, width);
    check_even("cuda_avgpool2x2_backward", height, width);
    const size_t count = (size_t)planes * (size_t)(height / 2) * (size_t)(width / 2);
    if (!dx || !count) return;
    cuda_require_32bit("cuda_avgpool2x2_backward", count);
    avgpool2x2_backward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        dx, dy, count, height, width);
    CUDA_CHECK_LAUNCH();
}

/* --- global average pool ------------------------------------------------------------------ */

/* One warp per plane (areas are small: 8x8 in the network), summing in double. */
__global__ void global_avgpool_forward_kernel(float *y, const float *x, int planes, int area) {
    const int warps_per_block = blockDim.x / 32, lane = threadIdx.x % 32;
    const int p = blockIdx.x * warps_per_block + threadIdx.x / 32;
    if (p >= planes) return; /* whole warps leave together: the shuffles below are safe */
    const float *xp = x + (size_t)p * (size_t)area;
    double sum = 0.0;
    for (int i = lane; i < area; i += 32) sum += (double)xp[i];
    for (int offset = 16; offset > 0; offset /= 2)
        sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (lane == 0) y[p] = (float)(sum / (double)area);
}

extern "C" void cuda_global_avgpool_forward(float *y, const float *x, int planes, int area) {
    check("cuda_global_avgpool_forward", planes, area, 1);
    if (!planes) return;
    const int warps_per_block = CUDA_THREADS / 32;
    const unsigned blocks = (unsigned)((planes + warps_per_block - 1) / warps_per_block);
    global_avgpool_forward_kernel<<<blocks, CUDA_THREADS, 0, cuda_ctx.stream>>>(y, x, planes,
                                                                                area);
    CUDA_CHECK_LAUNCH();
}

__global__ void global_avgpool_backward_kernel(float *dx, const float *dy, size_t count,
                                               int area, float scale) {
    GRID_STRIDE_LOOP(index, count) {
        unsigned within;
        dx[index] += __fmul_rn(dy[split_index(index, (unsigned)area, &within)], scale);
    }
}

extern "C" void cuda_global_avgpool_backward(float *dx, const float *dy, int planes, int area) {
    check("cuda_global_avgpool_backward", planes, area, 1);
    const size_t count = (size_t)planes * (size_t)area;
    if (!dx || !count) return;
    cuda_require_32bit("cuda_global_avgpool_backward", count);
    global_avgpool_backward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        dx, dy, count, area, 1.0f / (float)area);
    CUDA_CHECK_LAUNCH();
}
