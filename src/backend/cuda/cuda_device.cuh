/* Device-side helpers shared by the kernel files (each .cu is its own translation unit:
 * no separable compilation, so shared device code lives in this header). */
#ifndef BNECK_BACKEND_CUDA_DEVICE_CUH
#define BNECK_BACKEND_CUDA_DEVICE_CUH

#include <cuda_runtime.h>

/* Sum over the block of each thread's value, valid in thread 0 (other threads get a
 * partial). Every thread of the block must call it; blockDim.x a multiple of 32, at most
 * 1024. The order of the additions is fixed, so results are reproducible. */
static __device__ __forceinline__ double block_sum(double value) {
    __shared__ double warp_sums[32];
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_down_sync(0xffffffffu, value, offset);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x / 32;
        value = lane < warps ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset /= 2)
            value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    __syncthreads(); /* warp_sums is reused by the next call */
    return value;
}

/* quotient = index / divisor and *remainder = index % divisor in 32-bit arithmetic: GPUs
 * emulate 64-bit division in ~70 instructions, which made index arithmetic the cost of
 * memory-bound kernels. Callers make sure every index they split is below 2^32
 * (cuda_require_32bit on the host). */
static __device__ __forceinline__ unsigned split_index(size_t index, unsigned divisor,
                                                       unsigned *remainder) {
    const unsigned i = (unsigned)index, quotient = i / divisor;
    *remainder = i - quotient * divisor;
    return quotient;
}

/* Grid-stride loop over [0, count). */
#define GRID_STRIDE_LOOP(index, count)                                                         \
    for (size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x; index < (count);       \
         index += (size_t)gridDim.x * blockDim.x)

#endif
