/* Kernels the ops share: launch sizing, per-channel bias add and bias-gradient sums over
 * CNHW planes (conv and dense layers alike), and the CNHW <-> NCHW transposition the
 * convolution falls back to. */
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

extern "C" unsigned cuda_grid_blocks(size_t count) {
    /* a few waves of full blocks per SM hide latency; beyond that the grid-stride loops
     * do the rest without paying for more block launches */
    const size_t cap = (size_t)(cuda_ctx.sm_count > 0 ? cuda_ctx.sm_count : 1) * 32;
    size_t blocks = (count + CUDA_THREADS - 1) / CUDA_THREADS;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks < cap ? blocks : cap);
}

/* Grid: (x blocks along the plane, one y row per channel). */
__global__ void add_channel_bias_kernel(float *y, const float *bias, size_t plane) {
    const int c = blockIdx.y;
    const float b = bias[c];
    float *row = y + (size_t)c * plane;
    GRID_STRIDE_LOOP(i, plane) row[i] += b;
}

extern "C" unsigned cuda_blocks_per_channel(int channels, size_t plane) {
    if (channels < 1 || channels > 65535)
        CUDA_FAIL("%d channels: a grid has 1 to 65535 rows of blocks", channels);
    unsigned per_channel = cuda_grid_blocks(plane * (size_t)channels) / (unsigned)channels;
    const size_t needed = (plane + CUDA_THREADS - 1) / CUDA_THREADS;
    if (per_channel > needed) per_channel = (unsigned)needed;
    return per_channel < 1 ? 1 : per_channel;
}

extern "C" void cuda_add_channel_bias(float *y, const float *bias, int channels, size_t plane) {
    if (channels < 1 || plane < 1) return;
    add_channel_bias_kernel<<<dim3(cuda_blocks_per_channel(channels, plane), (unsigned)channels),
                              CUDA_THREADS, 0, cuda_ctx.stream>>>(y, bias, plane);
    CUDA_CHECK_LAUNCH();
}

/* One block per channel; a fixed summation order, so the result is reproducible. */
static const int channel_sum_threads = 512;

__global__ void accumulate_channel_sums_kernel(float *sums, const float *x, size_t plane) {
    const int c = blockIdx.x;
    const float *row = x + (size_t)c * plane;
    float partial = 0.0f; /* few values per thread; the block sum is in double */
    for (size_t i = threadIdx.x; i < plane; i += blockDim.x) partial += row[i];
    const double total = block_sum((double)partial);
    if (threadIdx.x == 0) sums[c] += (float)total;
}

extern "C" void cuda_accumulate_channel_sums(float *sums, const float *x, int channels,
                                             size_t plane) {
    if (channels < 1 || plane < 1) return;
    accumulate_channel_sums_kernel<<<(unsigned)channels, channel_sum_threads, 0,
                                     cuda_ctx.stream>>>(sums, x, plane);
    CUDA_CHECK_LAUNCH();
}

/* Rows of `inner` contiguous floats keep reads and writes coalesced in both directions. */
__global__ void swap_outer_dims_kernel(float *dst, const float *src, int outer, int middle,
                                       size_t inner, int accumulate) {
    const size_t count = (size_t)outer * (size_t)middle * inner;
    GRID_STRIDE_LOOP(d, count) {
        unsigned i, a;
        const unsigned row = split_index(d, (unsigned)inner, &i); /* row = b * outer + a */
        const unsigned b = split_index(row, (unsigned)outer, &a);
        const float value = src[((size_t)a * (size_t)middle + b) * inner + i];
        if (accumulate)
            dst[d] += value;
        else
            dst[d] = value;
    }
}

extern "C" void cuda_swap_outer_dims(float *dst, const float *src, int outer, int middle,
                                     size_t inner, int accumulate) {
    const size_t count = (size_t)outer * (size_t)middle * inner;
    if (!count) return;
    cuda_require_32bit("cuda_swap_outer_dims", count);
    swap_outer_dims_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        dst, src, outer, middle, inner, accumulate);
    CUDA_CHECK_LAUNCH();
}

/* %globaltimer counts nanoseconds (sm_70 and later); a clock64 loop would need the clock
 * rate, which varies under boost. */
__device__ static unsigned long long global_timer_ns(void) {
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    return now;
}

__global__ void busy_wait_kernel(unsigned long long nanoseconds) {
    const unsigned long long until = global_timer_ns() + nanoseconds;
    while (global_timer_ns() < until) __nanosleep(1000);
}

extern "C" void cuda_busy_wait(unsigned microseconds) {
    busy_wait_kernel<<<1, 1, 0, cuda_ctx.stream>>>(1000ull * microseconds);
    CUDA_CHECK_LAUNCH();
}
