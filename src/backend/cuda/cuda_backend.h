/* The CUDA backend: the GPU twin of cpu_backend (same ops, same conventions, see
 * backend/cpu/cpu_ops.h), built on cuDNN (convolutions), cuBLAS (dense) and the
 * project's own kernels (batchnorm, pools, loss, optimizer). Pointers given to the ops are
 * device memory from cuda_backend.alloc; all work runs in order on one stream owned by the
 * backend. The host waits only in upload (so the source may be reused at once, pinned or
 * not), download, synchronize, softmax_xent (which returns host values), alloc/release
 * (cudaMalloc/cudaFree), and the first call of each convolution shape (algorithm search).
 *
 * Use: cuda_backend_probe to learn whether a GPU is usable, the setters below (any time;
 * they apply to the ops issued after them), cuda_backend_init once per process, the
 * cuda_backend table, cuda_backend_shutdown at the end.
 *
 * conv2d_workspace_floats is 0 here: the backend owns one shared, growing workspace for
 * cuDNN, so the caller's workspace argument is ignored (and may be NULL). */
#ifndef BNECK_BACKEND_CUDA_BACKEND_H
#define BNECK_BACKEND_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

extern const backend_ops cuda_backend;

/* Number of CUDA devices, or -1 with the runtime's own error string in message (for
 * example when no driver or no device is present). 0 devices also leaves a message. */
int cuda_backend_probe(char *message, size_t capacity);

/* Selects the device, creates the stream and the cuDNN and cuBLAS handles. Returns 0, or
 * -1 with the library's message. Call once; cuda_backend_shutdown releases everything. */
int cuda_backend_init(int device, char *message, size_t capacity);
void cuda_backend_shutdown(void);

/* "cuda-runtime 13.0, cuda-driver 13.0, cudnn 9.19.0, cublas 13.0.0, nccl 2.28.3" and the
 * device name when initialised; for results files. Valid until the next call. */
const char *cuda_backend_versions(void);

/* The ordinal of the device in use (as this process sees it: 0 for every rank when the
 * scheduler gives each its own CUDA_VISIBLE_DEVICES) and its name ("NVIDIA H200") in
 * name. Call after cuda_backend_init. */
int cuda_backend_device(char *name, size_t capacity);
/* The GPU in use by its PCI bus id ("0000:65:00.0"): the same physical GPU has the same id
 * in every process of a node, whatever CUDA_VISIBLE_DEVICES each one was given. */
void cuda_backend_pci_bus_id(char *text, size_t capacity);

/* Deterministic mode: only convolution algorithms cuDNN marks deterministic, picked by
 * its heuristics rather than by timing (timings differ between runs, and so would the
 * chosen algorithms). The backend's own kernels are always deterministic (no atomics). */
void cuda_backend_set_deterministic(int on);
int cuda_backend_deterministic(void);

/* Arithmetic of convolutions and GEMMs:
 *  fp32: strict fp32 (FMA only, the default; cuDNN and cuBLAS never use TF32 then);
 *  tf32: TF32 tensor cores where the GPU has them;
 *  bf16: mixed precision: convolution and GEMM operands are rounded to bf16 on the way
 *        in (from the fp32 master weights and fp32 activations), products are summed in
 *        fp32, results come back as fp32 (from cuDNN's bf16 kernels rounded to bf16 first,
 *        as under PyTorch's autocast; the GEMMs write fp32). Everything else (batch norm and its statistics,
 *        pools, loss, Adam, the weights themselves) stays fp32. A convolution cuDNN cannot
 *        run in bf16 (too few channels for its tensor-core kernels) runs in TF32.
 * In tf32 and bf16 modes the k x k convolutions run on NHWC copies (tensor-core kernels
 * want channels innermost); 1 x 1 convolutions are GEMMs over the CNHW tensors in every
 * mode. */
typedef enum { CUDA_MATH_FP32 = 0, CUDA_MATH_TF32 = 1, CUDA_MATH_BF16 = 2 } cuda_math_mode;
void cuda_backend_set_math(int mode);
/* "fp32", "tf32" or "bf16": the mode set now, for logs and results files. */
const char *cuda_backend_math_name(void);
/* The mode named "fp32", "tf32" or "bf16", or -1. */
int cuda_math_mode_from_name(const char *name);

/* Engine of the k x k convolutions (1x1 ones are always one GEMM over CNHW):
 *  auto:  the faster of the two per shape and direction, timed on first use (the default;
 *         the GEMMs without timing in deterministic mode); in bf16 mode cuDNN and the
 *         GEMMs in TF32 are candidates too, for the k x k and the 1x1 convolutions (more
 *         precise than bf16 operands, and faster where cuDNN's bf16 kernels are slow or
 *         the bf16 operand copies cost more than the GEMM saves);
 *  cudnn: cuDNN (strided CNHW or NCHW copies in fp32; NHWC copies in tf32 and bf16);
 *  gemm:  im2col + cuBLAS GEMM over CNHW in every mode (deterministic by construction). */
typedef enum { CUDA_CONV_AUTO = 0, CUDA_CONV_CUDNN = 1, CUDA_CONV_GEMM = 2 } cuda_conv_engine;
void cuda_backend_set_conv_engine(int engine);
const char *cuda_backend_conv_engine_name(void); /* "auto", "cudnn" or "gemm" */
int cuda_conv_engine_from_name(const char *name); /* -1 for an unknown name */
/* How many k x k shapes run on each engine so far (auto decides per shape), for logs. */
void cuda_conv_engine_summary(char *text, size_t capacity);

/* cuDNN's layout in strict fp32. By default cuDNN works on the CNHW tensors directly through
 * strided descriptors, and a shape whose direction cuDNN cannot run that way falls back
 * to transposing to packed NCHW and back. On (non-zero) forces the transposing path for
 * every convolution: for measurements and as a workaround. */
void cuda_backend_set_conv_transpose(int on);

/* BatchNorm runs planes of up to this many values per channel as one kernel of one block
 * per channel, larger ones in three kernels (cuda_batchnorm.cu). The default is 32768, or
 * BNECK_BN_FUSED_MAX_PLANE from the environment; 0 never fuses, SIZE_MAX always does. Both
 * paths give the same results within rounding: for tests and timings. */
void cuda_backend_set_batchnorm_fused_max_plane(size_t plane);
size_t cuda_backend_batchnorm_fused_max_plane(void);

/* Standalone ReLU (the table has none yet: batchnorm fuses it). Same semantics as
 * cpu_relu_forward / cpu_relu_backward; dx is accumulated into. */
void cuda_relu_forward(float *y, const float *x, size_t count);
void cuda_relu_backward(float *dx, const float *dy, const float *y, size_t count);

/* Softmax cross-entropy without a host copy, for steps captured in a CUDA graph
 * (cuda_graph.h): the same dlogits as the table's softmax_xent, but the batch's loss sum
 * (not the mean), correct count and number of bad labels are added to device_totals
 * (CUDA_LOSS_TOTALS doubles of device memory; zero them with cuda_backend.zero when a
 * count starts, e.g. each epoch). cuda_loss_totals_read copies them to the host (it
 * waits for the stream) and fails there if any label was out of range. */
enum { CUDA_LOSS_TOTALS = 3 };
void cuda_softmax_xent_device(double *device_totals, float *dlogits, const float *logits,
                              const uint8_t *labels, float grad_scale, int batch, int classes);
void cuda_loss_totals_read(const double *device_totals, double *loss_sum, double *correct);

#endif
