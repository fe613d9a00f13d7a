/* The CUDA backend table, its lifetime (probe, init, shutdown), settings and versions. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"

cuda_context cuda_ctx;

void cuda_require_init(const char *op) {
    if (!cuda_ctx.initialised) CUDA_FAIL("cuda backend: %s before cuda_backend_init", op);
}

void cuda_require_32bit(const char *op, size_t count) {
    if (count > 0xffffffffu)
        CUDA_FAIL("%s: %zu elements exceed the 32-bit index range of its kernels", op, count);
}

/* snprintf that tolerates a NULL message buffer. */
#define REPORT(message, capacity, ...)                                                          \
    do {                                                                                        \
        if ((message) && (capacity)) snprintf((message), (capacity), __VA_ARGS__);              \
    } while (0)

int cuda_backend_probe(char *message, size_t capacity) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        REPORT(message, capacity, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(status),
               cudaGetErrorName(status));
        return -1;
    }
    if (count == 0)
        REPORT(message, capacity, "cudaGetDeviceCount: no CUDA device");
    else
        REPORT(message, capacity, "%d CUDA device%s", count, count == 1 ? "" : "s");
    return count;
}

/* Fills message from a failed runtime call and returns -1. */
static int runtime_failure(char *message, size_t capacity, const char *call, cudaError_t status) {
    REPORT(message, capacity, "%s: %s (%s)", call, cudaGetErrorString(status),
           cudaGetErrorName(status));
    return -1;
}

int cuda_backend_init(int device, char *message, size_t capacity) {
    if (cuda_ctx.initialised) {
        REPORT(message, capacity, "cuda_backend_init: already initialised on device %d",
               cuda_ctx.device);
        return -1;
    }
    const int count = cuda_backend_probe(message, capacity);
    if (count < 0) return -1;
    if (device < 0 || device >= count) {
        REPORT(message, capacity, "cuda_backend_init: device %d does not exist (%d found)", device,
               count);
        return -1;
    }
    cudaError_t status = cudaSetDevice(device);
    if (status != cudaSuccess) return runtime_failure(message, capacity, "cudaSetDevice", status);
    int sm_count = 0;
    status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
    if (status != cudaSuccess)
        return runtime_failure(message, capacity, "cudaDeviceGetAttribute", status);
    /* non-blocking: no implicit ordering with the legacy default stream of other code */
    cudaStream_t stream = NULL;
    status = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (status != cudaSuccess)
        return runtime_failure(message, capacity, "cudaStreamCreateWithFlags", status);
    cuda_ctx.device = device;
    cuda_ctx.sm_count = sm_count;
    cuda_ctx.stream = stream;
    if (cuda_dnn_init(message, capacity) != 0) {
        CUDA_CHECK(cudaStreamDestroy(stream));
        cuda_ctx.stream = NULL;
        return -1;
    }
    if (cuda_blas_init(message, capacity) != 0) {
        cuda_dnn_shutdown();
        CUDA_CHECK(cudaStreamDestroy(stream));
        cuda_ctx.stream = NULL;
        return -1;
    }
    cuda_ctx.initialised = 1;
    return 0;
}

void cuda_backend_shutdown(void) {
    if (!cuda_ctx.initialised) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
    cuda_blas_shutdown();
    cuda_dnn_shutdown();
    cuda_conv_engine_forget();
    cuda_scratch_release_all();
    CUDA_CHECK(cudaStreamDestroy(cuda_ctx.stream));
    cuda_ctx.stream = NULL;
    cuda_ctx.initialised = 0;
}

const char *cuda_backend_versions(void) {
    static char text[512];
    int runtime = 0, driver = 0, blas[3] = {0, 0, 0}, nccl = 0;
    /* best effort: a version that cannot be read stays 0 */
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);
    (void)cublasGetProperty(MAJOR_VERSION, &blas[0]);
    (void)cublasGetProperty(MINOR_VERSION, &blas[1]);
    (void)cublasGetProperty(PATCH_LEVEL, &blas[2]);
    (void)ncclGetVersion(&nccl);
    const size_t dnn = cuda_dnn_version(); /* major*10000 + minor*100 + patch since cuDNN 9 */
    int length = snprintf(text, sizeof text,
                          "cuda-runtime %d.%d, cuda-driver %d.%d, cudnn %zu.%zu.%zu, "
                          "cublas %d.%d.%d, nccl %d.%d.%d",
                          runtime / 1000, runtime % 1000 / 10, driver / 1000, driver % 1000 / 10,
                          dnn / 10000, dnn % 10000 / 100, dnn % 100, blas[0], blas[1], blas[2],
                          nccl / 10000, nccl % 10000 / 100, nccl % 100);
    struct cudaDeviceProp properties;
    if (cuda_ctx.initialised && length > 0 && (size_t)length < sizeof text &&
        cudaGetDeviceProperties(&properties, cuda_ctx.device) == cudaSuccess)
        snprintf(text + length, sizeof text - (size_t)length, ", device %d %s (sm_%d%d, %d SMs)",
                 cuda_ctx.device, properties.name, properties.major, properties.minor,
                 properties.multiProcessorCount);
    return text;
}

int cuda_backend_device(char *name, size_t capacity) {
    cuda_require_init("cuda_backend_device");
    struct cudaDeviceProp properties;
    CUDA_CHECK(cudaGetDeviceProperties(&properties, cuda_ctx.device));
    if (name && capacity) snprintf(name, capacity, "%s", properties.name);
    return cuda_ctx.device;
}

void cuda_backend_pci_bus_id(char *text, size_t capacity) {
    cuda_require_init("cuda_backend_pci_bus_id");
    char id[64] = "";
    CUDA_CHECK(cudaDeviceGetPCIBusId(id, (int)sizeof id, cuda_ctx.device));
    if (text && capacity) snprintf(text, capacity, "%s", id);
}

void cuda_backend_set_deterministic(int on) { cuda_ctx.deterministic = on != 0; }
int cuda_backend_deterministic(void) { return cuda_ctx.deterministic; }

static const char *const math_names[] = {"fp32", "tf32", "bf16"};

void cuda_backend_set_math(int mode) {
    if (mode < CUDA_MATH_FP32 || mode > CUDA_MATH_BF16)
        CUDA_FAIL("cuda_backend_set_math: unknown mode %d (0 fp32, 1 tf32, 2 bf16)", mode);
    cuda_ctx.math_mode = mode;
    cuda_blas_apply_math();
}

const char *cuda_backend_math_name(void) { return math_names[cuda_ctx.math_mode]; }

int cuda_math_mode_from_name(const char *name) {
    for (int mode = CUDA_MATH_FP32; mode <= CUDA_MATH_BF16; mode++)
        if (name && !strcmp(name, math_names[mode])) return mode;
    return -1;
}

void cuda_backend_set_conv_transpose(int on) { cuda_ctx.conv_transpose = on != 0; }

static const char *const engine_names[] = {"auto", "cudnn", "gemm"};

void cuda_backend_set_conv_engine(int engine) {
    if (engine < CUDA_CONV_AUTO || engine > CUDA_CONV_GEMM)
        CUDA_FAIL("cuda_backend_set_conv_engine: unknown engine %d (0 auto, 1 cudnn, 2 gemm)",
                  engine);
    cuda_ctx.conv_engine = engine;
}

const char *cuda_backend_conv_engine_name(void) { return engine_names[cuda_ctx.conv_engine]; }

int cuda_conv_engine_from_name(const char *name) {
    for (int engine = CUDA_CONV_AUTO; engine <= CUDA_CONV_GEMM; engine++)
        if (name && !strcmp(name, engine_names[engine])) return engine;
    return -1;
}

/* The table's backward ops. The CUDA ops always add into dx: the network clears the
 * activation gradients before their backward pass (backward_overwrites_dx = 0), so an
 * op told GRAD_OVERWRITE adds into zeros, which is the same thing. (Writing over them,
 * cuDNN's and cuBLAS's beta = 0, saves one memset per step here, not a pass per op as on
 * the CPU.) */
static void conv2d_backward_adding(float *dx, float *dweight, float *dbias, grad_store dx_store,
                                   const float *dy, const float *x, const float *weight,
                                   float *workspace, int batch, int height, int width,
                                   int in_channels, int out_channels, int kernel) {
    (void)dx_store;
    cuda_conv2d_backward(dx, dweight, dbias, dy, x, weight, workspace, batch, height, width,
                         in_channels, out_channels, kernel);
}

static void batchnorm_backward_adding(float *dx, float *dgamma, float *dbeta, grad_store dx_store,
                                      const float *dy, const float *x, const float *y,
                                      const float *gamma, const float *batch_mean,
                                      const float *batch_invstd, int channels, size_t plane) {
    (void)dx_store;
    cuda_batchnorm_backward(dx, dgamma, dbeta, dy, x, y, gamma, batch_mean, batch_invstd,
                            channels, plane);
}

static void maxpool3x3_backward_adding(float *dx, grad_store dx_store, const float *dy,
                                       const uint8_t *argmax, int planes, int height,
                                       int width) {
    (void)dx_store;
    cuda_maxpool3x3_backward(dx, dy, argmax, planes, height, width);
}

static void avgpool2x2_backward_adding(float *dx, grad_store dx_store, const float *dy,
                                       int planes, int height, int width) {
    (void)dx_store;
    cuda_avgpool2x2_backward(dx, dy, planes, height, width);
}

static void global_avgpool_backward_adding(float *dx, grad_store dx_store, const float *dy,
                                           int planes, int area) {
    (void)dx_store;
    cuda_global_avgpool_backward(dx, dy, planes, area);
}

static void dense_backward_adding(float *dx, float *dweight, float *dbias, grad_store dx_store,
                                  const float *dy, const float *x, const float *weight,
                                  int batch, int in_features, int out_features) {
    (void)dx_store;
    cuda_dense_backward(dx, dweight, dbias, dy, x, weight, batch, in_features, out_features);
}

const backend_ops cuda_backend = {
    .name = "cuda",
    .conv_elements_max = INT_MAX, /* cuda_conv.c's check_dims */
    .backward_overwrites_dx = 0,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .synchronize = cuda_synchronize,
    .conv2d_workspace_floats = cuda_conv2d_workspace_floats,
    .conv2d_forward = cuda_conv2d_forward,   /* 1x1: cuda_dense.cu; k x k: cuda_dnn.cu */
    .conv2d_backward = conv2d_backward_adding,
    .batchnorm_forward_train = cuda_batchnorm_forward_train,
    .batchnorm_forward_infer = cuda_batchnorm_forward_infer,
    .batchnorm_backward = batchnorm_backward_adding,
    .maxpool3x3_forward = cuda_maxpool3x3_forward,
    .maxpool3x3_backward = maxpool3x3_backward_adding,
    .avgpool2x2_forward = cuda_avgpool2x2_forward,
    .avgpool2x2_backward = avgpool2x2_backward_adding,
    .global_avgpool_forward = cuda_global_avgpool_forward,
    .global_avgpool_backward = global_avgpool_backward_adding,
    .dense_forward = cuda_dense_forward,
    .dense_backward = dense_backward_adding,
    .softmax_xent = cuda_softmax_xent,
    .adam_step = cuda_adam_step,
    .add_scaled = cuda_add_scaled,
};
