/* Private to the CPU convolution (cpu_conv.c) and its tests: a direct k x k convolution
 * over CNHW tensors for layers with few channels, where oneDNN's blocked kernels pad the
 * channels to 16 and copy every tensor into their layout and back, and im2col writes a
 * k*k-times larger matrix for a GEMM with few rows. Stride 1, "same" zero padding. */
#ifndef BNECK_BACKEND_CPU_CONV_DIRECT_H
#define BNECK_BACKEND_CPU_CONV_DIRECT_H

#include "backend/cpu/cpu_ops.h"

/* Floats in one vector of the direct kernel (16 with AVX-512, 8 with AVX, else 4). */
int cpu_conv_direct_vector_floats(void);

/* The instructions the kernel was compiled for, on which cpu_conv.c's rules for when to
 * use it were measured: AVX-512, AVX2 with FMA (16 vector registers), or other. */
typedef enum {
    CPU_CONV_DIRECT_OTHER,
    CPU_CONV_DIRECT_AVX2,
    CPU_CONV_DIRECT_AVX512
} cpu_conv_direct_isa;
cpu_conv_direct_isa cpu_conv_direct_built_for(void);

/* Whether the direct kernel handles maps of this size: rows of whole vectors, and a
 * whole number of the kernel's pixel tiles per image (see cpu_conv_direct.c). */
int cpu_conv_direct_fits(int height, int width, int out_channels);

/* Same contract as cpu_conv2d_forward (cpu_ops.h), without a workspace. */
void cpu_conv_direct_forward(float *y, const float *x, const float *weight, const float *bias,
                             int batch, int height, int width, int in_channels, int out_channels,
                             int kernel);

/* The input gradient of cpu_conv2d_backward: dx written or added as dx_store says. */
void cpu_conv_direct_backward_data(float *dx, grad_store dx_store, const float *dy,
                                   const float *weight, int batch, int height, int width,
                                   int in_channels, int out_channels, int kernel);

/* Whether the weight gradient handles maps of this size: rows of whole vectors. */
int cpu_conv_direct_weights_fit(int height, int width);

/* The weight gradient of cpu_conv2d_backward, added into dweight ([out][in][ky][kx]). */
void cpu_conv_direct_backward_weights(float *dweight, const float *dy, const float *x, int batch,
                                      int height, int width, int in_channels, int out_channels,
                                      int kernel);

#endif
