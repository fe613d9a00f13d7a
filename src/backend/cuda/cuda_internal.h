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
    /* Counts reallocations of the scratch buffers: a CUDA graph holds their addresses and
     * is stale once this changed since its capture (cuda_graph.cu checks). */
    unsigned long scratch_generation;
} cuda_context;

extern cuda_context cuda_ctx;

/* Fails with a message when the backend is used before cuda_backend_init. */
void cuda_require_init(const char *op);

/* --- scratch (cuda_memory.cu) ---------------------------------------------------------------
 * Device buffers owned by the backend, one per purpose so that an op can hold several at
 * once. Each grows on demand and never shrinks; growing waits for the stream first, since
 * queued work may still read the old buffer. Contents do not survive between ops. */
typedef enum {
    CUDA_SCRATCH_CUDNN_WORKSPACE = 0,
    CUDA_SCRATCH_NCHW_INPUT,    /* x transposed for cuDNN */
    CUDA_SCRATCH_NCHW_OUTPUT,   /* y or dy transposed for cuDNN */
    CUDA_SCRATCH_NCHW_GRADIENT, /* dx from cuDNN before it is added back */
    CUDA_SCRATCH_REDUCTION,     /* partial sums, per-channel coefficients, loss results */
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

/* --- convolution through cuDNN (cuda_dnn.cu, the only file that calls cuDNN) ------------- */
int cuda_dnn_init(char *message, size_t capacity);
void cuda_dnn_shutdown(void);
size_t cuda_dnn_version(void); /* cudnnGetVersion() */
size_t cuda_conv2d_workspace_floats(int batch, int height, int width, int in_channels,
                                    int kernel);
void cuda_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                         float *workspace, int batch, int height, int width, int in_channels,
                         int out_channels, int kernel);
void cuda_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *weight, float *workspace, int batch,
                          int height, int width, int in_channels, int out_channels, int kernel);

/* --- dense through cuBLAS (cuda_dense.cu, which owns the cuBLAS handle) ------------------ */
int cuda_blas_init(char *message, size_t capacity);
void cuda_blas_shutdown(void);
void cuda_blas_apply_math(void); /* after cuda_ctx.math_mode changes */
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
void cuda_maxpool3x3_forward(float *y, const float *x, int planes, int height, int width);
void cuda_maxpool3x3_backward(float *dx, const float *dy, const float *x, const float *y,
                              int planes, int height, int width);
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
