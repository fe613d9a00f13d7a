/* Private to the CPU convolution (cpu_conv.c, cpu_conv_dnnl.c) and its tests: the choice
 * between the two implementations, and the oneDNN convolution-primitive one. */
#ifndef BNECK_BACKEND_CPU_CONV_DNNL_H
#define BNECK_BACKEND_CPU_CONV_DNNL_H

#include "backend/cpu/cpu_ops.h"

/* Which implementation cpu_conv2d_forward/backward use. AUTO picks per layer (the rule is
 * in cpu_conv.c); tests and benchmarks force one. DNNL means IM2COL in OpenBLAS builds.
 * DIRECT runs the forward pass and the input gradient of k > 1 layers on the direct kernel
 * (cpu_conv_direct.h) wherever their maps fit it, everything else as AUTO would. */
typedef enum {
    CPU_CONV_PATH_AUTO = 0,
    CPU_CONV_PATH_IM2COL,
    CPU_CONV_PATH_DNNL,
    CPU_CONV_PATH_DIRECT,
} cpu_conv_path;

extern cpu_conv_path bneck_cpu_conv_path;

#if defined(BNECK_GEMM_DNNL)
/* Same contract as cpu_conv2d_forward/backward (cpu_ops.h), without a caller workspace:
 * the intermediate tensors live in buffers owned by cpu_conv_dnnl.c. In the backward,
 * dbias is computed only together with dweight (dweight NULL: dbias is ignored). */
void cpu_conv_dnnl_forward(float *y, const float *x, const float *weight, const float *bias,
                           int batch, int height, int width, int in_channels, int out_channels,
                           int kernel);
void cpu_conv_dnnl_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                            const float *dy, const float *x, const float *weight, int batch,
                            int height, int width, int in_channels, int out_channels, int kernel);
#endif

#endif
