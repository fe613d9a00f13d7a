/* The backend interface: memory and every op the network needs, as a table of function
 * pointers with CPU and CUDA twins (the darknet way). Pointers passed to the ops are
 * backend memory (host memory for the CPU backend, device memory for CUDA). Signatures
 * and conventions are those of backend/cpu/cpu_ops.h: CNHW activations, OIHW weights,
 * outputs first, dimensions last, backward ops accumulate into parameter gradients and
 * store input gradients as told (grad_store). */
#ifndef BNECK_BACKEND_BACKEND_H
#define BNECK_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_ops.h"

typedef struct backend_ops {
    const char *name;
    /* The most one convolution may hold, batch * height * width * max(in, out) * k * k (its
     * im2col; the GPU libraries take int sizes); 0 for no limit. trainer_create refuses a
     * batch above it before any work, naming the key, rather than failing mid-epoch. */
    size_t conv_elements_max;
    /* 1: the backward ops write dx over what it holds when told GRAD_OVERWRITE, so the
     * network never clears the activation gradients; 0: they always add into dx (their
     * GRAD_OVERWRITE adds too), and the network clears them before every backward pass. */
    int backward_overwrites_dx;

    void *(*alloc)(size_t bytes); /* zero-filled; never returns NULL */
    void (*release)(void *pointer);
    void (*upload)(void *device_dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *device_src, size_t bytes);
    void (*zero)(void *device_dst, size_t bytes);
    void (*synchronize)(void);

    size_t (*conv2d_workspace_floats)(int batch, int height, int width, int in_channels, int kernel);
    void (*conv2d_forward)(float *y, const float *x, const float *weight, const float *bias,
                           float *workspace, int batch, int height, int width, int in_channels,
                           int out_channels, int kernel);
    void (*conv2d_backward)(float *dx, float *dweight, float *dbias, grad_store dx_store,
                            const float *dy, const float *x, const float *weight, float *workspace,
                            int batch, int height, int width, int in_channels, int out_channels,
                            int kernel);
    void (*batchnorm_forward_train)(float *y, float *batch_mean, float *batch_invstd,
                                    float *running_mean, float *running_var, const float *x,
                                    const float *gamma, const float *beta, float eps,
                                    float momentum, int fuse_relu, int channels, size_t plane);
    void (*batchnorm_forward_infer)(float *y, const float *x, const float *gamma,
                                    const float *beta, const float *running_mean,
                                    const float *running_var, float eps, int fuse_relu,
                                    int channels, size_t plane);
    void (*batchnorm_backward)(float *dx, float *dgamma, float *dbeta, grad_store dx_store,
                               const float *dy, const float *x, const float *y, const float *gamma,
                               const float *batch_mean, const float *batch_invstd, int channels,
                               size_t plane);
    void (*maxpool3x3_forward)(float *y, uint8_t *argmax, const float *x, int planes,
                               int height, int width);
    void (*maxpool3x3_backward)(float *dx, grad_store dx_store, const float *dy,
                                const uint8_t *argmax, int planes, int height, int width);
    void (*avgpool2x2_forward)(float *y, const float *x, int planes, int height, int width);
    void (*avgpool2x2_backward)(float *dx, grad_store dx_store, const float *dy, int planes,
                                int height, int width);
    void (*global_avgpool_forward)(float *y, const float *x, int planes, int area);
    void (*global_avgpool_backward)(float *dx, grad_store dx_store, const float *dy, int planes,
                                    int area);
    void (*dense_forward)(float *y, const float *x, const float *weight, const float *bias,
                          int batch, int in_features, int out_features);
    void (*dense_backward)(float *dx, float *dweight, float *dbias, grad_store dx_store,
                           const float *dy, const float *x, const float *weight, int batch,
                           int in_features, int out_features);
    /* labels are backend memory; loss and correct are host values. */
    float (*softmax_xent)(float *dlogits, int *correct, const float *logits,
                          const uint8_t *labels, float grad_scale, int batch, int classes);
    void (*adam_step)(float *param, float *m, float *v, const float *grad, float lr, float beta1,
                      float beta2, float eps, adam_eps_form form, long step, size_t count);
    void (*add_scaled)(float *grad, const float *param, float coefficient, size_t count);
} backend_ops;

extern const backend_ops cpu_backend;

#endif
