/* GPU-resident datasets and batch assembly (see cuda_data.h): the device twin of
 * augment_batch. The random draws are core/rng.c's pure functions, ported here as
 * __host__ __device__ code (this library must not depend on the main one), with
 * data/augment.c's tags and draw counters; tests/test_gpu_ops.c checks the result
 * against augment_batch bit for bit, so any change to either side shows there. */
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
/* cuda_data.h includes data/dataset.h, whose core/error.h marks a function with C11's
 * <stdnoreturn.h> `noreturn`, a macro C++ does not have: the GNU attribute stands in
 * (after cuda_check.h, which spells the attribute itself). */
#define noreturn __attribute__((noreturn))
#include "backend/cuda/cuda_data.h"
#include "data/augment.h"
#undef noreturn
}

/* --- core/rng.c, ported ------------------------------------------------------------------ */

static __host__ __device__ __forceinline__ uint64_t splitmix64_finalise(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static __host__ __device__ __forceinline__ uint64_t rng_u64_port(uint64_t key, uint64_t counter) {
    const uint64_t z = splitmix64_finalise(key + 0x9e3779b97f4a7c15ULL);
    return splitmix64_finalise(z ^ (counter * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
}

static __host__ __device__ __forceinline__ uint64_t rng_key_port(uint64_t key, uint64_t tag) {
    return rng_u64_port(key ^ 0xd1b54a32d192ed03ULL, tag);
}

static __host__ __device__ __forceinline__ uint32_t rng_below_port(uint64_t key, uint64_t counter,
                                                                   uint32_t bound) {
    return (uint32_t)(((rng_u64_port(key, counter) >> 32) * (uint64_t)bound) >> 32);
}

/* --- data/augment.c's constants ------------------------------------------------------------ */

enum {
    IMAGE_PIXELS = DATASET_SIDE * DATASET_SIDE,
    CROP_PAD = 4,
    CROP_OFFSETS = 2 * CROP_PAD + 1,
    DRAW_CROP_Y = 0,
    DRAW_CROP_X = 1,
    DRAW_FLIP = 2,
    DRAW_SHIFT_Y = 3,
    DRAW_SHIFT_X = 4,
};
static const uint64_t AUGMENT_TAG = 0x6175676d656e74ULL; /* "augment" */

/* --- the dataset ---------------------------------------------------------------------------- */

enum { INDEX_SLOTS = 2 };

struct cuda_dataset {
    int count, channels;
    uint8_t *pixels; /* device: count * channels * 1024 */
    uint8_t *labels; /* device: count */
    /* host indices go through pinned slots, used in turn; an event says when a slot's copy
     * has been made, so the host may write it again */
    int *pinned[INDEX_SLOTS];
    int pinned_capacity[INDEX_SLOTS];
    cudaEvent_t copied[INDEX_SLOTS];
    int next_slot;
    int *device_indices; /* device: one batch, reused in stream order */
    int device_capacity;
};

extern "C" cuda_dataset *cuda_dataset_upload(const dataset *d, char *message, size_t capacity) {
    cuda_require_init("cuda_dataset_upload");
    if (!d || d->count < 0 || d->channels < 1) CUDA_FAIL("cuda_dataset_upload: bad dataset");
    cuda_dataset *g = (cuda_dataset *)calloc(1, sizeof *g);
    if (!g) CUDA_FAIL("cuda_dataset_upload: out of host memory");
    g->count = d->count;
    g->channels = d->channels;
    const size_t pixel_bytes = (size_t)d->count * (size_t)d->channels * IMAGE_PIXELS;
    const size_t label_bytes = (size_t)d->count;
    cudaError_t status = cudaMalloc(&g->pixels, pixel_bytes ? pixel_bytes : 1);
    if (status == cudaSuccess) status = cudaMalloc(&g->labels, label_bytes ? label_bytes : 1);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        if (message && capacity)
            snprintf(message, capacity, "cuda_dataset_upload: cudaMalloc of %zu bytes for %d "
                     "images: %s (%s)", pixel_bytes + label_bytes, d->count,
                     cudaGetErrorString(status), cudaGetErrorName(status));
        if (g->pixels) CUDA_CHECK(cudaFree(g->pixels));
        free(g);
        return NULL;
    }
    if (pixel_bytes)
        CUDA_CHECK(cudaMemcpyAsync(g->pixels, d->pixels, pixel_bytes, cudaMemcpyHostToDevice,
                                   cuda_ctx.stream));
    if (label_bytes)
        CUDA_CHECK(cudaMemcpyAsync(g->labels, d->labels, label_bytes, cudaMemcpyHostToDevice,
                                   cuda_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream)); /* d may be freed on return */
    for (int slot = 0; slot < INDEX_SLOTS; slot++)
        CUDA_CHECK(cudaEventCreateWithFlags(&g->copied[slot], cudaEventDisableTiming));
    return g;
}

extern "C" void cuda_dataset_free(cuda_dataset *g) {
    if (!g) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream)); /* queued batches may still read it */
    CUDA_CHECK(cudaFree(g->pixels));
    CUDA_CHECK(cudaFree(g->labels));
    if (g->device_indices) CUDA_CHECK(cudaFree(g->device_indices));
    for (int slot = 0; slot < INDEX_SLOTS; slot++) {
        if (g->pinned[slot]) CUDA_CHECK(cudaFreeHost(g->pinned[slot]));
        CUDA_CHECK(cudaEventDestroy(g->copied[slot]));
    }
    free(g);
}

extern "C" int cuda_dataset_count(const cuda_dataset *g) { return g->count; }
extern "C" int cuda_dataset_channels(const cuda_dataset *g) { return g->channels; }
extern "C" size_t cuda_dataset_device_bytes(const cuda_dataset *g) {
    return (size_t)g->count * (size_t)g->channels * IMAGE_PIXELS + (size_t)g->count;
}

/* --- the batch kernel --------------------------------------------------------------------------
 * One block per image of the batch. Thread 0 draws the image's crop and flip (keyed on the
 * dataset index, as on the CPU) into shared memory; then the block writes the image's
 * channels * 1024 floats, consecutive threads on consecutive pixels of a row (coalesced
 * stores; the loads are bytes of one 3 KiB image, served from L1/L2). */

static const int batch_threads = 256;

/* augment.c's shift_sample and shift_plane for one pixel: the same integers, then the same
 * correctly rounded division. */
static __device__ __forceinline__ void shift_sample(int position, int shift, int *before,
                                                    int *after, int *weight) {
    int at = position * AUGMENT_SHIFT_UNITS + shift;
    const int last = (DATASET_SIDE - 1) * AUGMENT_SHIFT_UNITS;
    at = at < 0 ? 0 : at > last ? last : at;
    *before = at / AUGMENT_SHIFT_UNITS;
    *weight = at % AUGMENT_SHIFT_UNITS;
    *after = *before + 1 < DATASET_SIDE ? *before + 1 : *before;
}

static __device__ __forceinline__ float shifted_pixel(const uint8_t *source, int y, int x,
                                                      int shift_y, int shift_x) {
    int y0, y1, wy, x0, x1, wx;
    shift_sample(y, shift_y, &y0, &y1, &wy);
    shift_sample(x, shift_x, &x0, &x1, &wx);
    const int top = source[y0 * DATASET_SIDE + x0] * (AUGMENT_SHIFT_UNITS - wx) +
                    source[y0 * DATASET_SIDE + x1] * wx;
    const int bottom = source[y1 * DATASET_SIDE + x0] * (AUGMENT_SHIFT_UNITS - wx) +
                       source[y1 * DATASET_SIDE + x1] * wx;
    const int sum = top * (AUGMENT_SHIFT_UNITS - wy) + bottom * wy;
    return __fdiv_rn((float)sum, 255.0f * AUGMENT_SHIFT_UNITS * AUGMENT_SHIFT_UNITS);
}

__global__ void assemble_batch_kernel(float *out, uint8_t *labels_out, const uint8_t *pixels,
                                      const uint8_t *labels, const int *indices, int count,
                                      int channels, int batch, uint64_t epoch_key, int augment) {
    __shared__ int draws[3]; /* shift_y, shift_x (crop pixels, or 1/256 pixels), flip */
    const int i = blockIdx.x;
    const int index = indices[i];
    const bool valid = index >= 0 && index < count;
    if (threadIdx.x == 0) {
        int shift_y = 0, shift_x = 0, flip = 0;
        if (augment == AUGMENT_SHIFT && valid) {
            const uint64_t image_key = rng_key_port(epoch_key, (uint64_t)index);
            shift_y = (int)rng_below_port(image_key, DRAW_SHIFT_Y, 2 * AUGMENT_SHIFT_MAX + 1) -
                      AUGMENT_SHIFT_MAX;
            shift_x = (int)rng_below_port(image_key, DRAW_SHIFT_X, 2 * AUGMENT_SHIFT_MAX + 1) -
                      AUGMENT_SHIFT_MAX;
        } else if (augment == AUGMENT_CROP_FLIP && valid) {
            const uint64_t image_key = rng_key_port(epoch_key, (uint64_t)index);
            shift_y = (int)rng_below_port(image_key, DRAW_CROP_Y, CROP_OFFSETS) - CROP_PAD;
            shift_x = (int)rng_below_port(image_key, DRAW_CROP_X, CROP_OFFSETS) - CROP_PAD;
            flip = (int)rng_below_port(image_key, DRAW_FLIP, 2);
        }
        draws[0] = shift_y;
        draws[1] = shift_x;
        draws[2] = flip;
        if (labels_out) labels_out[i] = valid ? labels[index] : (uint8_t)255;
    }
    __syncthreads();
    const int shift_y = draws[0], shift_x = draws[1], flip = draws[2];
    const size_t plane = (size_t)batch * IMAGE_PIXELS;
    const uint8_t *image = pixels + (size_t)(valid ? index : 0) * (size_t)channels * IMAGE_PIXELS;
    const int total = channels * IMAGE_PIXELS;
    for (int p = threadIdx.x; p < total; p += blockDim.x) {
        const int c = p / IMAGE_PIXELS, pixel = p % IMAGE_PIXELS;
        const int y = pixel / DATASET_SIDE, x = pixel % DATASET_SIDE;
        /* target[y][x] = crop[y][flip ? 31 - x : x], crop[y][x] = source[y + sy][x + sx],
         * zero in the padding (augment.c's loop, one pixel per thread) */
        const int source_y = y + shift_y;
        const int source_x = (flip ? DATASET_SIDE - 1 - x : x) + shift_x;
        float value = 0.0f;
        if (!valid)
            value = __int_as_float(0x7fc00000); /* quiet NaN */
        else if (augment == AUGMENT_SHIFT)
            value = shifted_pixel(image + (size_t)c * IMAGE_PIXELS, y, x, shift_y, shift_x);
        else if (source_y >= 0 && source_y < DATASET_SIDE && source_x >= 0 &&
                 source_x < DATASET_SIDE)
            value = __fdiv_rn((float)image[(size_t)c * IMAGE_PIXELS + source_y * DATASET_SIDE +
                                           source_x],
                              255.0f);
        out[(size_t)c * plane + (size_t)i * IMAGE_PIXELS + pixel] = value;
    }
}

static uint64_t epoch_key_of(uint64_t seed, int epoch) {
    return rng_key_port(rng_key_port(seed, (uint64_t)epoch), AUGMENT_TAG);
}

extern "C" void cuda_dataset_batch_device(const cuda_dataset *g, float *out, uint8_t *labels_out,
                                          const int *device_indices, int batch, uint64_t seed,
                                          int epoch, int augment) {
    cuda_require_init("cuda_dataset_batch");
    if (!g) CUDA_FAIL("cuda_dataset_batch: no dataset");
    if (batch <= 0) return;
    assemble_batch_kernel<<<(unsigned)batch, batch_threads, 0, cuda_ctx.stream>>>(
        out, labels_out, g->pixels, g->labels, device_indices, g->count, g->channels, batch,
        epoch_key_of(seed, epoch), augment);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_dataset_batch(cuda_dataset *g, float *out, uint8_t *labels_out,
                                   const int *indices, int batch, uint64_t seed, int epoch,
                                   int augment) {
    cuda_require_init("cuda_dataset_batch");
    if (!g) CUDA_FAIL("cuda_dataset_batch: no dataset");
    if (batch <= 0) return;
    for (int i = 0; i < batch; i++)
        if (indices[i] < 0 || indices[i] >= g->count)
            CUDA_FAIL("cuda_dataset_batch: index %d at batch position %d is outside the dataset "
                      "(0..%d)", indices[i], i, g->count - 1);
    const int slot = g->next_slot;
    g->next_slot = (slot + 1) % INDEX_SLOTS;
    if (g->pinned[slot]) CUDA_CHECK(cudaEventSynchronize(g->copied[slot]));
    if (g->pinned_capacity[slot] < batch) {
        if (g->pinned[slot]) CUDA_CHECK(cudaFreeHost(g->pinned[slot]));
        g->pinned[slot] = NULL;
        CUDA_CHECK(cudaMallocHost((void **)&g->pinned[slot], (size_t)batch * sizeof(int)));
        g->pinned_capacity[slot] = batch;
    }
    if (g->device_capacity < batch) {
        /* queued batches may still read the old buffer */
        CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
        if (g->device_indices) CUDA_CHECK(cudaFree(g->device_indices));
        g->device_indices = NULL;
        CUDA_CHECK(cudaMalloc((void **)&g->device_indices, (size_t)batch * sizeof(int)));
        g->device_capacity = batch;
    }
    memcpy(g->pinned[slot], indices, (size_t)batch * sizeof(int));
    CUDA_CHECK(cudaMemcpyAsync(g->device_indices, g->pinned[slot], (size_t)batch * sizeof(int),
                               cudaMemcpyHostToDevice, cuda_ctx.stream));
    CUDA_CHECK(cudaEventRecord(g->copied[slot], cuda_ctx.stream));
    cuda_dataset_batch_device(g, out, labels_out, g->device_indices, batch, seed, epoch, augment);
}
