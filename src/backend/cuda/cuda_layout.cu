/* Layout and precision changes of whole tensors, for the convolutions' tensor-core path
 * (cuda_dnn.cu) and the bf16 GEMMs (cuda_dense.cu): one tiled transposition kernel that
 * covers CNHW <-> NHWC activations and OIHW <-> OHWI (cuDNN's KRSC) filters, converting
 * between fp32 and bf16 on the way and optionally adding into the destination, and a
 * plain fp32 -> bf16 cast. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

/* --- element conversion ---------------------------------------------------------------- */

static __device__ __forceinline__ float load_float(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ float load_float(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}
static __device__ __forceinline__ void store_float(float *p, size_t i, float v, bool add) {
    p[i] = add ? p[i] + v : v;
}
static __device__ __forceinline__ void store_float(__nv_bfloat16 *p, size_t i, float v,
                                                   bool add) {
    p[i] = __float2bfloat16_rn(add ? __bfloat162float(p[i]) + v : v);
}

/* --- the batched transposition ------------------------------------------------------------
 * For b < batches, r < rows, c < cols:
 *   dst[b*dst_batch + c*dst_col + r]  (+)=  src[b*src_batch + r*src_row + c]
 * Both sides are read and written along their contiguous index (c for src, r for dst)
 * through a shared tile, so global accesses coalesce either way. */
enum { tile = 32, tile_rows = 8 };

template <typename In, typename Out, bool Add>
__global__ void transpose_kernel(Out *dst, const In *src, int rows, int cols, size_t src_batch,
                                 size_t src_row, size_t dst_batch, size_t dst_col) {
    __shared__ float block[tile][tile + 1]; /* +1: no bank conflicts on the column reads */
    const size_t b = blockIdx.z;
    const int c0 = blockIdx.x * tile, r0 = blockIdx.y * tile;
    const In *from = src + b * src_batch;
    Out *to = dst + b * dst_batch;
    for (int dr = threadIdx.y; dr < tile; dr += tile_rows) {
        const int r = r0 + dr, c = c0 + threadIdx.x;
        if (r < rows && c < cols) block[dr][threadIdx.x] = load_float(from, r * src_row + c);
    }
    __syncthreads();
    for (int dc = threadIdx.y; dc < tile; dc += tile_rows) {
        const int c = c0 + dc, r = r0 + threadIdx.x;
        if (r < rows && c < cols) store_float(to, c * dst_col + r, block[threadIdx.x][dc], Add);
    }
}

template <typename In, typename Out>
static void transpose(Out *dst, const In *src, int batches, int rows, int cols, size_t src_batch,
                      size_t src_row, size_t dst_batch, size_t dst_col, int accumulate) {
    if (batches < 1 || rows < 1 || cols < 1) return;
    if (batches > 65535) CUDA_FAIL("transpose: %d batches exceed a grid's z range", batches);
    const dim3 grid((unsigned)((cols + tile - 1) / tile), (unsigned)((rows + tile - 1) / tile),
                    (unsigned)batches);
    const dim3 threads(tile, tile_rows);
    if (accumulate)
        transpose_kernel<In, Out, true><<<grid, threads, 0, cuda_ctx.stream>>>(
            dst, src, rows, cols, src_batch, src_row, dst_batch, dst_col);
    else
        transpose_kernel<In, Out, false><<<grid, threads, 0, cuda_ctx.stream>>>(
            dst, src, rows, cols, src_batch, src_row, dst_batch, dst_col);
    CUDA_CHECK_LAUNCH();
}

/* dst[n][a][c] = src[c][n][a]: per image n, a (channels x area) -> (area x channels). */
extern "C" void cuda_cnhw_to_nhwc(void *dst, cuda_element type, const float *src, int channels,
                                  int batch, size_t area) {
    const size_t plane = (size_t)batch * area;
    if (type == CUDA_BF16)
        transpose((__nv_bfloat16 *)dst, src, batch, channels, (int)area, area, plane,
                  area * channels, channels, 0);
    else
        transpose((float *)dst, src, batch, channels, (int)area, area, plane, area * channels,
                  channels, 0);
}

/* dst[c][n][a] (+)= src[n][a][c]. */
extern "C" void cuda_nhwc_to_cnhw(float *dst, const void *src, cuda_element type, int channels,
                                  int batch, size_t area, int accumulate) {
    const size_t plane = (size_t)batch * area;
    if (type == CUDA_BF16)
        transpose(dst, (const __nv_bfloat16 *)src, batch, (int)area, channels, area * channels,
                  channels, area, plane, accumulate);
    else
        transpose(dst, (const float *)src, batch, (int)area, channels, area * channels, channels,
                  area, plane, accumulate);
}

/* dst[o][a][i] = src[o][i][a]: OIHW -> OHWI (KRSC), a < kernel area. */
extern "C" void cuda_oihw_to_ohwi(void *dst, cuda_element type, const float *src,
                                  int out_channels, int in_channels, int area) {
    const size_t filter = (size_t)in_channels * area;
    if (type == CUDA_BF16)
        transpose((__nv_bfloat16 *)dst, src, out_channels, in_channels, area, filter,
                  (size_t)area, filter, (size_t)in_channels, 0);
    else
        transpose((float *)dst, src, out_channels, in_channels, area, filter, (size_t)area,
                  filter, (size_t)in_channels, 0);
}

/* dst[o][i][a] (+)= src[o][a][i]: OHWI -> OIHW. */
extern "C" void cuda_ohwi_to_oihw(float *dst, const void *src, cuda_element type,
                                  int out_channels, int in_channels, int area, int accumulate) {
    const size_t filter = (size_t)in_channels * area;
    if (type == CUDA_BF16)
        transpose(dst, (const __nv_bfloat16 *)src, out_channels, area, in_channels, filter,
                  (size_t)in_channels, filter, (size_t)area, accumulate);
    else
        transpose(dst, (const float *)src, out_channels, area, in_channels, filter,
                  (size_t)in_channels, filter, (size_t)area, accumulate);
}

/* --- fp32 -> bf16 ------------------------------------------------------------------------ */

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t count) {
    GRID_STRIDE_LOOP(i, count) dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" void cuda_to_bf16(void *dst, const float *src, size_t count) {
    if (!count) return;
    to_bf16_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        (__nv_bfloat16 *)dst, src, count);
    CUDA_CHECK_LAUNCH();
}

extern "C" const void *cuda_bf16_copy(cuda_scratch_slot slot, const float *values, size_t count) {
    void *copy = cuda_scratch(slot, count * cuda_element_bytes(CUDA_BF16));
    cuda_to_bf16(copy, values, count);
    return copy;
}
