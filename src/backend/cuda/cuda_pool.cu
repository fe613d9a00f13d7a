/* Pooling over planes (one plane = one (channel, image) map of height x width): the GPU
 * twin of cpu_pool.c. Results match the CPU bit for bit where the CPU's order of float
 * operations can be kept (max pool both ways, the 2x2 average pool); __fmul_rn keeps the
 * compiler from fusing a multiply into the following add (the CPU build has no FMA). */
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

static void check(const char *op, int planes, int height, int width) {
    if (planes < 0 || height < 1 || width < 1)
        CUDA_FAIL("%s: bad dimensions planes=%d height=%d width=%d", op, planes, height, width);
}

/* --- 3x3 max pool, stride 1, same padding (out-of-image positions never win) ------------ */

/* The window of output (h, w), clamped to the image. */
typedef struct window {
    int h0, h1, w0, w1; /* inclusive */
} window;

static __device__ __forceinline__ window window_at(int h, int w, int height, int width) {
    window win = {h > 0 ? h - 1 : 0, h + 1 < height ? h + 1 : height - 1, w > 0 ? w - 1 : 0,
                  w + 1 < width ? w + 1 : width - 1};
    return win;
}

__global__ void maxpool3x3_forward_kernel(float *y, const float *x, size_t count, int height,
                                          int width) {
    const unsigned area = (unsigned)height * (unsigned)width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned hw, w;
        const float *xp = x + (size_t)split_index(index, area, &hw) * area;
        const int h = (int)split_index(hw, (unsigned)width, &w);
        const window win = window_at(h, w, height, width);
        float best = xp[win.h0 * width + win.w0];
        for (int i = win.h0; i <= win.h1; i++)
            for (int j = win.w0; j <= win.w1; j++) {
                const float v = xp[i * width + j];
                best = v > best ? v : best;
            }
        y[index] = best;
    }
}

extern "C" void cuda_maxpool3x3_forward(float *y, const float *x, int planes, int height,
                                        int width) {
    check("cuda_maxpool3x3_forward", planes, height, width);
    const size_t count = (size_t)planes * (size_t)height * (size_t)width;
    if (!count) return;
    cuda_require_32bit("cuda_maxpool3x3_forward", count);
    maxpool3x3_forward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        y, x, count, height, width);
    CUDA_CHECK_LAUNCH();
}

/* Position (in the plane) of the window's maximum: the first one in row-major window order
 * when values tie, as on the CPU. */
static __device__ __forceinline__ int window_argmax(const float *xp, int h, int w, int height,
                                                    int width) {
    const window win = window_at(h, w, height, width);
    int best = win.h0 * width + win.w0;
    float best_value = xp[best];
    for (int i = win.h0; i <= win.h1; i++)
        for (int j = win.w0; j <= win.w1; j++)
            if (xp[i * width + j] > best_value) {
                best_value = xp[i * width + j];
                best = i * width + j;
            }
    return best;
}

/* Gather instead of the CPU's scatter: each input position adds the dy of every output
 * whose window maximum it is, in row-major output order, which is the order in which the
 * CPU's scatter reaches it. No atomics, and the same sums bit for bit. An input can only
 * be an output's argmax if it equals that output's maximum y, so the window is searched
 * (for the first of tied maxima) only then: about 9 reads per input instead of 81. */
__global__ void maxpool3x3_backward_kernel(float *dx, const float *dy, const float *x,
                                           const float *y, size_t count, int height, int width) {
    const unsigned area = (unsigned)height * (unsigned)width;
    GRID_STRIDE_LOOP(index, count) {
        unsigned position, column;
        const size_t base = (size_t)split_index(index, area, &position) * area;
        const float *xp = x + base, *gp = dy + base, *yp = y + base;
        const float value = x[index];
        const int i = (int)split_index(position, (unsigned)width, &column), j = (int)column;
        const window outputs = window_at(i, j, height, width); /* outputs whose window has (i, j) */
        float sum = dx[index];
        for (int h = outputs.h0; h <= outputs.h1; h++)
            for (int w = outputs.w0; w <= outputs.w1; w++)
                if (yp[h * width + w] == value &&
                    window_argmax(xp, h, w, height, width) == (int)position)
                    sum += gp[h * width + w];
        dx[index] = sum;
    }
}

extern "C" void cuda_maxpool3x3_backward(float *dx, const float *dy, const float *x,
                                         const float *y, int planes, int height, int width) {
    check("cuda_maxpool3x3_backward", planes, height, width);
    const size_t count = (size_t)planes * (size_t)height * (size_t)width;
    if (!dx || !count) return;
    cuda_require_32bit("cuda_maxpool3x3_backward", count);
    maxpool3x3_backward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        dx, dy, x, y, count, height, width);
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
