/* Private to the CPU convolution (cpu_conv_dnnl.c) and its tests: copies of activations
 * between our CNHW layout and oneDNN's channel-blocked ones.
 *
 * The blocked layout holds each image's channels in blocks of `block`:
 *   blocked[((n * channel_blocks + channel / block) * area + pixel) * block + channel % block]
 * with channel_blocks = ceil(channels / block). Block 16 is oneDNN's nChw16c (its AVX-512
 * kernels), 8 its nChw8c (AVX2 kernels) and 1 plain NCHW (first layers). The padding
 * channels of the last block are written as zeros, so the primitive reads numbers there. */
#ifndef BNECK_BACKEND_CPU_LAYOUT_H
#define BNECK_BACKEND_CPU_LAYOUT_H

#include "backend/cpu/cpu_ops.h"

#include <stddef.h>

/* The block sizes these copies handle: 1, 8 and 16. */
int cpu_layout_block_supported(int block);

void cpu_layout_cnhw_to_blocked(float *blocked, const float *x, int block, int batch,
                                int channels, size_t area);

/* Writes over x or adds into it, as store says. */
void cpu_layout_blocked_to_cnhw(float *x, grad_store store, const float *blocked, int block,
                                int batch, int channels, size_t area);

/* Tests: nonzero makes both copies use their plain loops instead of the vector
 * transposes, so the two can be compared in one build. */
extern int bneck_cpu_layout_plain;

#endif
