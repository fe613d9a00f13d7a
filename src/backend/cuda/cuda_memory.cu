/* Device memory: the table's alloc/release/upload/download/zero/synchronize, and the
 * backend's own scratch buffers. Everything is ordered on the backend's stream. */
#include <cuda_runtime.h>

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

/* Smallest allocation: alloc never returns NULL, even for 0 bytes. */
static const size_t minimum_allocation = 256;

extern "C" void *cuda_alloc(size_t bytes) {
    cuda_require_init("alloc");
    const size_t size = bytes < minimum_allocation ? minimum_allocation : bytes;
    void *pointer = NULL;
    const cudaError_t status = cudaMalloc(&pointer, size);
    if (status != cudaSuccess)
        CUDA_FAIL("cudaMalloc of %zu bytes: %s (%s)", bytes, cudaGetErrorString(status),
                  cudaGetErrorName(status));
    CUDA_CHECK(cudaMemsetAsync(pointer, 0, size, cuda_ctx.stream));
    return pointer;
}

/* Queued work may still use the buffer: wait for it first (explicitly, rather than rely on
 * cudaFree's implicit synchronisation). */
extern "C" void cuda_release(void *pointer) {
    if (!pointer) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
    CUDA_CHECK(cudaFree(pointer));
}

/* Waits for the copy: the caller may reuse host_src at once even when it is pinned memory
 * (an asynchronous copy from pinned memory would otherwise still be reading it). */
extern "C" void cuda_upload(void *device_dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice,
                               cuda_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
}

extern "C" void cuda_download(void *host_dst, const void *device_src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost,
                               cuda_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
}

extern "C" void cuda_zero(void *device_dst, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(device_dst, 0, bytes, cuda_ctx.stream));
}

extern "C" void cuda_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream)); }

/* --- scratch ---------------------------------------------------------------------------- */

typedef struct scratch_buffer {
    void *pointer;
    size_t bytes;
} scratch_buffer;

static scratch_buffer scratch[CUDA_SCRATCH_SLOTS];

extern "C" void *cuda_scratch(cuda_scratch_slot slot, size_t bytes) {
    if ((int)slot < 0 || slot >= CUDA_SCRATCH_SLOTS) CUDA_FAIL("bad scratch slot %d", (int)slot);
    scratch_buffer *buffer = &scratch[slot];
    if (bytes <= buffer->bytes && buffer->pointer) return buffer->pointer;
    /* grow by half again at least, so a sequence of slightly larger requests stays cheap */
    size_t size = buffer->bytes + buffer->bytes / 2;
    if (size < bytes) size = bytes;
    if (size < minimum_allocation) size = minimum_allocation;
    /* Growing synchronises and frees, which a capture cannot hold: the warm-up step before
     * every capture sizes the slots, so this is a step whose shapes changed in between. */
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(cuda_ctx.stream, &capture));
    if (capture != cudaStreamCaptureStatusNone)
        CUDA_FAIL("scratch slot %d must grow from %zu to %zu bytes during a CUDA graph capture; "
                  "the step before the capture should have sized it (run with graph = off)",
                  (int)slot, buffer->bytes, bytes);
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
    if (buffer->pointer) {
        CUDA_CHECK(cudaFree(buffer->pointer));
        cuda_ctx.scratch_generation++; /* graphs captured before hold the old address */
    }
    buffer->pointer = NULL;
    buffer->bytes = 0;
    const cudaError_t status = cudaMalloc(&buffer->pointer, size);
    if (status != cudaSuccess)
        CUDA_FAIL("cudaMalloc of %zu scratch bytes: %s (%s)", size, cudaGetErrorString(status),
                  cudaGetErrorName(status));
    buffer->bytes = size;
    return buffer->pointer;
}

extern "C" void cuda_scratch_release_all(void) {
    for (int slot = 0; slot < CUDA_SCRATCH_SLOTS; slot++) {
        if (scratch[slot].pointer) CUDA_CHECK(cudaFree(scratch[slot].pointer));
        scratch[slot].pointer = NULL;
        scratch[slot].bytes = 0;
    }
    cuda_ctx.scratch_generation++;
}
