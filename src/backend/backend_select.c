#include "backend/backend_select.h"

#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_gemm.h"
#ifdef BNECK_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

static void note_set(char *note, size_t capacity, const char *text) {
    if (note && capacity) snprintf(note, capacity, "%s", text);
}

const backend_ops *backend_select(const char *device, int device_index, char *note,
                                  size_t note_capacity, bneck_error *err) {
    note_set(note, note_capacity, "");
    if (strcmp(device, "cpu") == 0) return &cpu_backend;
    if (strcmp(device, "auto") != 0 && strcmp(device, "cuda") != 0)
        return bneck_error_set(err, "device: expected auto, cpu or cuda, got '%s'", device), NULL;
#ifdef BNECK_HAVE_CUDA
    char message[512] = "";
    const int devices = cuda_backend_probe(message, sizeof message);
    if (devices > 0) {
        if (cuda_backend_init(device_index % devices, message, sizeof message) == 0)
            return &cuda_backend;
    } else if (devices == 0) {
        snprintf(message, sizeof message, "no CUDA device found");
    }
    if (strcmp(device, "cuda") == 0)
        return bneck_error_set(err, "device cuda: no usable GPU: %s", message), NULL;
    char text[640];
    snprintf(text, sizeof text, "no usable GPU (%s): running on the CPU", message);
    note_set(note, note_capacity, text);
    return &cpu_backend;
#else
    (void)device_index;
    if (strcmp(device, "cuda") == 0)
        return bneck_error_set(err, "device cuda: this build has no CUDA backend (the CUDA "
                                    "toolkit, cuDNN or NCCL was not found at configure time)"),
               NULL;
    note_set(note, note_capacity, "built without the CUDA backend: running on the CPU");
    return &cpu_backend;
#endif
}

void backend_shutdown(const backend_ops *backend) {
#ifdef BNECK_HAVE_CUDA
    if (backend == &cuda_backend) cuda_backend_shutdown();
#else
    (void)backend;
#endif
}

const char *backend_versions(const backend_ops *backend) {
#ifdef BNECK_HAVE_CUDA
    if (backend == &cuda_backend) return cuda_backend_versions();
#endif
    (void)backend;
    return cpu_gemm_library();
}
