/* What the files of the CUDA backend share: the backend's state, its scratch buffers and
 * the ops each file implements for the table in cuda_backend.c. Plain C; .cu files
 * include it inside extern "C" { }. Not for use outside src/backend/cuda/. */
#ifndef BNECK_BACKEND_CUDA_INTERNAL_H
#define BNECK_BACKEND_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_ops.h"

struct CUstream_st; /* cudaStream_t, without pulling the CUDA headers into C files */

typedef struct cuda_context {
    int initialised;
    int device;
    int sm_count;              /* sizes grids of the reductions */
    struct CUstream_st *stream; /* every op runs on it, in order */
    /* settings (cuda_backend.h); read when an op is issued */
    int deterministic;
    int math_mode; /* cuda_math_mode */
    int conv_transpose;
    int conv_engine; /* cuda_conv_engine */
    /* Counts reallocations of the scratch buffers: a CUDA graph holds their addresses and
     * is stale once this changed since its capture (cuda_graph.cu checks). */
    unsigned long scratch_generation;
} cuda_context;

extern cuda_context cuda_ctx;

/* Fails with a message when the backend is used before cuda_backend_init. */
void cuda_require_init(const char *op);
/* Fails with a message when an op's element count does not fit the 32-bit index
 * arithmetic of its kernels (split_index in cuda_device.cuh). */
void cuda_require_32bit(const char *op, size_t count);

/* --- scratch (cuda_memory.cu) ---------------------------------------------------------------
 * Device buffers owned by the backend, one per purpose so that an op can hold several at
 * once. Each grows on demand and never shrinks; growing waits for the stream first, since
 * queued work may still read the old buffer. Contents do not survive between ops. */
typedef enum {
    CUDA_SCRATCH_CUDNN_WORKSPACE = 0,
    CUDA_SCRATCH_LAYOUT_INPUT,    /* x in cuDNN's layout (NCHW or NHWC copy) */
    CUDA_SCRATCH_LAYOUT_OUTPUT,   /* y or dy in cuDNN's layout */
    CUDA_SCRATCH_LAYOUT_GRADIENT, /* dx from cuDNN before it is added back */
    CUDA_SCRATCH_FILTER,          /* the filter as OHWI (KRSC) for NHWC convolutions */
    CUDA_SCRATCH_FILTER_GRADIENT, /* its gradient before it is added back as OIHW */
    CUDA_SCRATCH_GEMM_A,          /* bf16 copies of GEMM operands */
    CUDA_SCRATCH_GEMM_B,
    CUDA_SCRATCH_REDUCTION,       /* partial sums, per-channel coefficients, loss results */
    CUDA_SCRATCH_SLOTS
} cuda_scratch_slot;
void *cuda_scratch(cuda_scratch_slot slot, size_t bytes);
void cuda_scratch_release_all(void);

/* --- memory ops (cuda_memory.cu) --------------------------------------------------------- */
void *cuda_alloc(size_t bytes);
void cuda_release(void *pointer);
void cuda_upload(void *device_dst, const void *host_src, size_t bytes);
void cuda_download(void *host_dst, const void *device_src, size_t bytes);
void cuda_zero(void *device_dst, size_t bytes);
void cuda_synchronize(void);

/* --- convolutions ------------------------------------------------------------------------
 * cuda_conv.c: the table's entries; checks the dimensions and picks the engine: 1x1 as a
 * GEMM (cuda_dense.cu), k x k through cuDNN (cuda_dnn.cu, the only file that calls cuDNN)
 * or as im2col + GEMM (cuda_conv_gemm.cu). */
size_t cuda_conv2d_workspace_floats(int batch, int height, int width, int in_channels,
                                    int kernel);
void cuda_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                         float *workspace, int batch, int height, int width, int in_channels,
                         int out_channels, int kernel);
void cuda_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *weight, float *workspace, int batch,
                          int height, int width, int in_channels, int out_channels, int kernel);
int cuda_dnn_init(char *message, size_t capacity);
void cuda_dnn_shutdown(void);
size_t cuda_dnn_version(void); /* cudnnGetVersion() */
void cuda_dnn_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                             int batch, int height, int width, int in_channels, int out_channels,
                             int kernel);
void cuda_dnn_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                              const float *x, const float *weight, int batch, int height,
                              int width, int in_channels, int out_channels, int kernel);
void cuda_conv_engine_forget(void); /* at shutdown */
void cuda_conv_gemm_forward(float *y, const float *x, const float *weight, const float *bias,
                            int batch, int height, int width, int in_channels, int out_channels,
                            int kernel);
void cuda_conv_gemm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                             const float *x, const float *weight, int batch, int height,
                             int width, int in_channels, int out_channels, int kernel);

/* --- dense through cuBLAS (cuda_dense.cu, which owns the cuBLAS handle) ------------------ */
int cuda_blas_init(char *message, size_t capacity);
void cuda_blas_shutdown(void);
void cuda_blas_apply_math(void); /* after cuda_ctx.math_mode changes */
/* Row-major C = op(A) op(B) + beta C over operands of `type`, fp32 sums, fp32 C (TF32
 * products for fp32 operands in tf32 mode). Declared after cuda_element below. */
void cuda_dense_forward(float *y, const float *x, const float *weight, const float *bias,
                        int batch, int in_features, int out_features);
void cuda_dense_backward(float *dx, float *dweight, float *dbias, const float *dy,
                         const float *x, const float *weight, int batch, int in_features,
                         int out_features);

/* --- helpers shared by the ops (cuda_kernels.cu) ----------------------------------------- */
#define CUDA_THREADS 256
/* Blocks for a grid-stride loop over count elements: enough to fill the GPU, no more. */
unsigned cuda_grid_blocks(size_t count);
/* Blocks along each channel's plane for a (blocks, channels) grid of an elementwise pass
 * over channels planes: the grid of cuda_grid_blocks, shared out among the channels. */
unsigned cuda_blocks_per_channel(int channels, size_t plane);
/* y[c][i] += bias[c] over channels planes of plane floats. */
void cuda_add_channel_bias(float *y, const float *bias, int channels, size_t plane);
/* sums[c] += sum over i of x[c][i] (the bias gradient of a conv or dense layer). */
void cuda_accumulate_channel_sums(float *sums, const float *x, int channels, size_t plane);
/* dst[b][a][i] = src[a][b][i] (or += when accumulate) for a < outer, b < middle,
 * i < inner: CNHW <-> NCHW with inner = height*width. */
void cuda_swap_outer_dims(float *dst, const float *src, int outer, int middle, size_t inner,
                          int accumulate);
/* Queues one thread that spins for `microseconds` of the GPU's global timer: put before
 * timed work, it keeps the GPU busy while the host queues that work, so that events
 * around it measure the GPU's time, not the host's launches. */
void cuda_busy_wait(unsigned microseconds);

/* --- layout and precision changes (cuda_layout.cu) ---------------------------------------
 * Element type of a converted copy: fp32, or bf16 (round to nearest even). Sources and
 * destinations on the CNHW / OIHW side are always fp32. */
typedef enum { CUDA_FP32 = 0, CUDA_BF16 = 1 } cuda_element;
static inline size_t cuda_element_bytes(cuda_element type) { return type == CUDA_BF16 ? 2 : 4; }
/* dst[n][a][c] = src[c][n][a], a < area (height * width). */
void cuda_cnhw_to_nhwc(void *dst, cuda_element type, const float *src, int channels, int batch,
                       size_t area);
/* dst[c][n][a] = src[n][a][c], or += when accumulate. */
void cuda_nhwc_to_cnhw(float *dst, const void *src, cuda_element type, int channels, int batch,
                       size_t area, int accumulate);
/* Filters: dst[o][a][i] = src[o][i][a] (OIHW -> OHWI, cuDNN's NHWC "KRSC"), a < k*k. */
void cuda_oihw_to_ohwi(void *dst, cuda_element type, const float *src, int out_channels,
                       int in_channels, int area);
/* dst[o][i][a] = src[o][a][i], or += when accumulate. */
void cuda_ohwi_to_oihw(float *dst, const void *src, cuda_element type, int out_channels,
                       int in_channels, int area, int accumulate);
/* dst[i] = bf16(src[i]). */
void cuda_to_bf16(void *dst, const float *src, size_t count);
/* A bf16 copy of count floats in scratch slot `slot` (valid until the slot is reused). */
const void *cuda_bf16_copy(cuda_scratch_slot slot, const float *values, size_t count);
/* The GEMM of cuda_dense.cu (see above). */
void cuda_gemm(int transpose_a, int transpose_b, int m, int n, int k, const void *a, int lda,
               const void *b, int ldb, float beta, float *c, int ldc, cuda_element type);

/* --- batchnorm (cuda_batchnorm.cu) ------------------------------------------------------- */
void cuda_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                  float *running_mean, float *running_var, const float *x,
                                  const float *gamma, const float *beta, float eps,
                                  float momentum, int fuse_relu, int channels, size_t plane);
void cuda_batchnorm_forward_infer(float *y, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, int fuse_relu,
                                  int channels, size_t plane);
void cuda_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *x, const float *y, const float *gamma,
                             const float *batch_mean, const float *batch_invstd, int channels,
                             size_t plane);

/* --- pools (cuda_pool.cu) ---------------------------------------------------------------- */
void cuda_maxpool3x3_forward(float *y, uint8_t *argmax, const float *x, int planes, int height,
                             int width);
void cuda_maxpool3x3_backward(float *dx, const float *dy, const uint8_t *argmax, int planes,
                              int height, int width);
void cuda_avgpool2x2_forward(float *y, const float *x, int planes, int height, int width);
void cuda_avgpool2x2_backward(float *dx, const float *dy, int planes, int height, int width);
void cuda_global_avgpool_forward(float *y, const float *x, int planes, int area);
void cuda_global_avgpool_backward(float *dx, const float *dy, int planes, int area);

/* --- loss and optimizer (cuda_elementwise.cu; ReLU is in cuda_backend.h) ----------------- */
float cuda_softmax_xent(float *dlogits, int *correct, const float *logits,
                        const uint8_t *labels, float grad_scale, int batch, int classes);
void cuda_adam_step(float *param, float *m, float *v, const float *grad, float lr, float beta1,
                    float beta2, float eps, adam_eps_form form, long step, size_t count);
void cuda_add_scaled(float *grad, const float *param, float coefficient, size_t count);

#endif
