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

int backend_configure(const backend_ops *backend, const char *precision, const char *conv_engine,
                      int deterministic, const char *graph, char *note, size_t note_capacity,
                      bneck_error *err) {
    note_set(note, note_capacity, "");
    if (strcmp(precision, "fp32") && strcmp(precision, "tf32") && strcmp(precision, "bf16"))
        return bneck_error_set(err, "precision: expected fp32, tf32 or bf16, got '%s'", precision);
    if (strcmp(conv_engine, "auto") && strcmp(conv_engine, "cudnn") && strcmp(conv_engine, "gemm"))
        return bneck_error_set(err, "conv: expected auto, cudnn or gemm, got '%s'", conv_engine);
#ifdef BNECK_HAVE_CUDA
    if (backend == &cuda_backend) {
        cuda_backend_set_math(cuda_math_mode_from_name(precision));
        cuda_backend_set_conv_engine(cuda_conv_engine_from_name(conv_engine));
        cuda_backend_set_deterministic(deterministic);
        return 0;
    }
#endif
    (void)backend, (void)deterministic;
    /* the GPU-only settings a user asked for by name, so that none is dropped silently */
    char asked[160] = "";
    size_t used = 0;
    if (strcmp(precision, "fp32"))
        used += (size_t)snprintf(asked + used, sizeof asked - used, ", precision %s", precision);
    if (strcmp(conv_engine, "auto") && used < sizeof asked)
        used += (size_t)snprintf(asked + used, sizeof asked - used, ", conv %s", conv_engine);
    if (graph && strcmp(graph, "on") == 0 && used < sizeof asked)
        used += (size_t)snprintf(asked + used, sizeof asked - used, ", graph on");
    if (used) {
        char text[256];
        snprintf(text, sizeof text,
                 "GPU settings left unused on the CPU (it computes in fp32, one op at a time): %s",
                 asked + 2);
        note_set(note, note_capacity, text);
    }
    return 0;
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
    if (backend == &cuda_backend) {
        /* the arithmetic belongs with the libraries in a results file */
        static char text[700];
        snprintf(text, sizeof text, "%s, math %s, conv %s%s", cuda_backend_versions(),
                 cuda_backend_math_name(), cuda_backend_conv_engine_name(),
                 cuda_backend_deterministic() ? ", deterministic" : "");
        return text;
    }
#endif
    (void)backend;
    return cpu_gemm_library();
}

void backend_device_names(const backend_ops *backend, char *model, size_t model_capacity,
                          char *label, size_t label_capacity) {
#ifdef BNECK_HAVE_CUDA
    if (backend == &cuda_backend) {
        char name[256];
        const int ordinal = cuda_backend_device(name, sizeof name);
        snprintf(model, model_capacity, "%s", name);
        snprintf(label, label_capacity, "cuda:%d %s", ordinal, name);
        return;
    }
#endif
    snprintf(model, model_capacity, "%s", backend->name);
    snprintf(label, label_capacity, "%s", backend->name);
}
