/* k x k convolutions as GEMMs straight over the CNHW tensors (the GPU twin of the CPU's
 * im2col path), run by cuBLAS on tensor cores in tf32 and bf16 modes:
 *
 *   forward:         y[O][P]      = W[O][I*k*k]      x col(x)[I*k*k][P]        (+ bias)
 *   filter gradient: dW[O][I*k*k] += dy[O][P]          x col(x)[I*k*k][P]^T
 *   data gradient:   dx[I][P]     += Wflip[I][O*k*k]  x col(dy)[O*k*k][P]
 *
 * with P = N*H*W and col() the "same"-padded im2col of a CNHW tensor. The data gradient is
 * the full correlation of dy with the filter turned round (Wflip[i][o][a][b] =
 * W[o][i][k-1-a][k-1-b]), so it is one more im2col and a GEMM that accumulates into dx,
 * with no scatter (col2im) and no atomics: every output is one GEMM dot product, the same
 * order every run. In bf16 mode col(), the filters and dy are written as bf16, the GEMMs
 * sum in fp32 and write fp32 (so dW lands in the fp32 gradients directly). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

static __device__ __forceinline__ void store_as(float *p, size_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void store_as(__nv_bfloat16 *p, size_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

/* One grid row per col() row (channel c, tap (a, b)), one thread per column (n, h, w), so
 * reads and writes both run along w; 32-bit index arithmetic (cuda_conv.c keeps every
 * matrix below 2^31 elements). */
template <typename Out>
__global__ void im2col_kernel(Out *col, const float *x, int columns, int height, int width,
                              int kernel) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= columns) return;
    const int row = blockIdx.y, taps = kernel * kernel, area = height * width;
    const int c = row / taps, tap = row - c * taps, a = tap / kernel, b = tap - a * kernel;
    const int n = p / area, hw = p - n * area, h0 = hw / width, w0 = hw - h0 * width;
    const int h = h0 + a - kernel / 2, w = w0 + b - kernel / 2;
    const bool inside = h >= 0 && h < height && w >= 0 && w < width;
    const float *plane = x + (size_t)c * columns;
    store_as(col + (size_t)row * columns, (size_t)p,
             inside ? plane[(size_t)n * area + h * width + w] : 0.0f);
}

static void im2col(void *col, cuda_element type, const float *x, int channels, int batch,
                   int height, int width, int kernel) {
    const unsigned rows = (unsigned)(channels * kernel * kernel);
    if (rows > 65535) CUDA_FAIL("im2col: %u rows exceed a grid's y range", rows);
    const int columns = batch * height * width;
    const dim3 grid((unsigned)((columns + CUDA_THREADS - 1) / CUDA_THREADS), rows);
    if (type == CUDA_BF16)
        im2col_kernel<<<grid, CUDA_THREADS, 0, cuda_ctx.stream>>>(
            (__nv_bfloat16 *)col, x, columns, height, width, kernel);
    else
        im2col_kernel<<<grid, CUDA_THREADS, 0, cuda_ctx.stream>>>((float *)col, x, columns,
                                                                  height, width, kernel);
    CUDA_CHECK_LAUNCH();
}

/* flipped[i][o][a][b] = weight[o][i][k-1-a][k-1-b] */
template <typename Out>
__global__ void flip_filter_kernel(Out *flipped, const float *weight, int out_channels,
                                   int in_channels, int kernel) {
    const int taps = kernel * kernel;
    const size_t count = (size_t)out_channels * in_channels * taps;
    GRID_STRIDE_LOOP(index, count) {
        const int tap = (int)(index % taps);
        const size_t row = index / taps; /* i * out_channels + o */
        const int o = (int)(row % out_channels), i = (int)(row / out_channels);
        store_as(flipped, index, weight[((size_t)o * in_channels + i) * taps + (taps - 1 - tap)]);
    }
}

static void flip_filter(void *flipped, cuda_element type, const float *weight, int out_channels,
                        int in_channels, int kernel) {
    const size_t count = (size_t)out_channels * in_channels * kernel * kernel;
    if (type == CUDA_BF16)
        flip_filter_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
            (__nv_bfloat16 *)flipped, weight, out_channels, in_channels, kernel);
    else
        flip_filter_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
            (float *)flipped, weight, out_channels, in_channels, kernel);
    CUDA_CHECK_LAUNCH();
}

static cuda_element operand_type(void) {
    return cuda_ctx.math_mode == CUDA_MATH_BF16 ? CUDA_BF16 : CUDA_FP32;
}
static size_t bytes_of(cuda_element type, size_t count) { return count * cuda_element_bytes(type); }

/* An fp32 operand as the GEMM takes it: itself, or a bf16 copy in `slot`. */
static const void *gemm_operand(cuda_scratch_slot slot, const float *values, size_t count) {
    return operand_type() == CUDA_BF16 ? cuda_bf16_copy(slot, values, count) : values;
}

extern "C" void cuda_conv_gemm_forward(float *y, const float *x, const float *weight,
                                       const float *bias, int batch, int height, int width,
                                       int in_channels, int out_channels, int kernel) {
    const cuda_element type = operand_type();
    const int rows = in_channels * kernel * kernel, columns = batch * height * width;
    void *col = cuda_scratch(CUDA_SCRATCH_LAYOUT_INPUT, bytes_of(type, (size_t)rows * columns));
    im2col(col, type, x, in_channels, batch, height, width, kernel);
    const void *w = gemm_operand(CUDA_SCRATCH_FILTER, weight, (size_t)out_channels * rows);
    cuda_gemm(false, false, out_channels, columns, rows, w, rows, col, columns, 0.0f, y, columns,
              type);
    if (bias) cuda_add_channel_bias(y, bias, out_channels, (size_t)columns);
}

extern "C" void cuda_conv_gemm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                                        const float *x, const float *weight, int batch,
                                        int height, int width, int in_channels, int out_channels,
                                        int kernel) {
    const cuda_element type = operand_type();
    const int taps = kernel * kernel, columns = batch * height * width;
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_channels, (size_t)columns);
    if (!dweight && !dx) return;
    const void *dy_operand = NULL;
    if (dweight) {
        const int rows = in_channels * taps;
        void *col = cuda_scratch(CUDA_SCRATCH_LAYOUT_INPUT, bytes_of(type, (size_t)rows * columns));
        im2col(col, type, x, in_channels, batch, height, width, kernel);
        dy_operand = gemm_operand(CUDA_SCRATCH_LAYOUT_GRADIENT, dy, (size_t)out_channels * columns);
        cuda_gemm(false, true, out_channels, rows, columns, dy_operand, columns, col, columns,
                  1.0f, dweight, rows, type);
    }
    if (dx) {
        const int rows = out_channels * taps;
        void *col = cuda_scratch(CUDA_SCRATCH_LAYOUT_OUTPUT, bytes_of(type, (size_t)rows * columns));
        im2col(col, type, dy, out_channels, batch, height, width, kernel);
        void *flipped = cuda_scratch(CUDA_SCRATCH_FILTER, bytes_of(type, (size_t)in_channels * rows));
        flip_filter(flipped, type, weight, out_channels, in_channels, kernel);
        cuda_gemm(false, false, in_channels, columns, rows, flipped, rows, col, columns, 1.0f, dx,
                  columns, type);
    }
}
