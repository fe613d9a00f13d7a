/* CPU reference implementations of every op the model uses. They are the test oracle
 * for the CUDA backend, so they favour clarity, but they are also the CPU training path,
 * so the heavy ones (convolution, dense) go through GEMM (cpu_gemm.h).
 *
 * Layout conventions (shared by the whole project):
 *  - Activations are CNHW: tensor[c][n][h][w]. One channel of a whole batch is a
 *    contiguous "plane" of batch*height*width floats, so a slice of channels is just a
 *    pointer offset: concatenation along channels costs nothing.
 *  - Convolution weights are OIHW: weight[out][in][kh][kw]; dense weights are [out][in].
 *  - Dense inputs/outputs are [features][batch].
 *  - Outputs come first in every signature and dimensions last.
 *  - Every backward op ADDS into its parameter gradients (dweight, dbias, dgamma, dbeta):
 *    the caller zeroes them once per step. The input gradient dx is written over whatever
 *    it holds or added into it, as the op's dx_store says (grad_store). A NULL dx means
 *    "not needed" (the first layer's input).
 *  - Convolutions are stride 1 with "same" zero padding (kernel odd: 1, 3, 5).
 */
#ifndef BNECK_BACKEND_CPU_OPS_H
#define BNECK_BACKEND_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* How a backward op stores its input gradient dx. A tensor read by several layers gets
 * its gradient from each of them: the first to back-propagate writes over the stale
 * values of the last step, the others add to it, so nothing zeroes the activation
 * gradients (a whole pass over memory per step). */
typedef enum { GRAD_OVERWRITE = 0, GRAD_ACCUMULATE = 1 } grad_store;

/* Floats of scratch space cpu_conv2d_forward/backward need for these dimensions
 * (0 for 1x1 convolutions, which need no im2col). */
size_t cpu_conv2d_workspace_floats(int batch, int height, int width, int in_channels, int kernel);

void cpu_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                        float *workspace, int batch, int height, int width, int in_channels,
                        int out_channels, int kernel);

/* dx may be NULL. dweight/dbias are accumulated into, dx as dx_store says. */
void cpu_conv2d_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                         const float *dy, const float *x, const float *weight, float *workspace,
                         int batch, int height, int width, int in_channels, int out_channels,
                         int kernel);

/* Batch normalisation over each channel's plane (plane = batch*height*width).
 * Training: normalises with the batch statistics, stores mean and 1/sqrt(var+eps) for
 * the backward pass, and updates the running statistics as
 *   running = momentum * running + (1 - momentum) * batch_stat
 * (the Keras convention: momentum is the weight of the old value; PyTorch's 0.1 is 0.9
 * here), with the unbiased variance for running_var.
 * When fuse_relu is non-zero, y = max(0, bn(x)). */
void cpu_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, float eps, float momentum,
                                 int fuse_relu, int channels, size_t plane);
void cpu_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 int fuse_relu, int channels, size_t plane);
/* y is the forward output: when non-NULL (fused ReLU) dy is masked by y > 0 first. */
void cpu_batchnorm_backward(float *dx, float *dgamma, float *dbeta, grad_store dx_store,
                            const float *dy, const float *x, const float *y, const float *gamma,
                            const float *batch_mean, const float *batch_invstd, int channels,
                            size_t plane);

/* A standalone ReLU (the network fuses it into BatchNorm); its backward adds into dx. */
void cpu_relu_forward(float *y, const float *x, size_t count);
void cpu_relu_backward(float *dx, const float *dy, const float *y, size_t count);

/* 3x3 max pool, stride 1, same padding (padding never wins). planes = channels*batch.
 * argmax (one byte per output, may be NULL when no backward pass follows) gets the window
 * position of each maximum, (row + 1) * 3 + (column + 1) for offsets in -1..1: the first
 * in row-major window order among tied maxima. The backward pass routes dy by it. A NaN
 * wins (the window's maximum is NaN, its code the first NaN's), as in PyTorch; a window of
 * only -inf gives its first in-image position. The CUDA twin agrees bit for bit. */
void cpu_maxpool3x3_forward(float *y, uint8_t *argmax, const float *x, int planes, int height,
                            int width);
void cpu_maxpool3x3_backward(float *dx, grad_store dx_store, const float *dy, const uint8_t *argmax,
                             int planes, int height, int width);

/* 2x2 average pool, stride 2; height and width are the input's (even). */
void cpu_avgpool2x2_forward(float *y, const float *x, int planes, int height, int width);
void cpu_avgpool2x2_backward(float *dx, grad_store dx_store, const float *dy, int planes,
                             int height, int width);

/* Global average pool: y[c][n] = mean of the plane x[c][n][:][:]; planes = channels*batch. */
void cpu_global_avgpool_forward(float *y, const float *x, int planes, int area);
void cpu_global_avgpool_backward(float *dx, grad_store dx_store, const float *dy, int planes,
                                 int area);

/* Dense: y[out][n] = sum_i weight[out][i] * x[i][n] + bias[out]. */
void cpu_dense_forward(float *y, const float *x, const float *weight, const float *bias,
                       int batch, int in_features, int out_features);
void cpu_dense_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                        const float *dy, const float *x, const float *weight, int batch,
                        int in_features, int out_features);

/* Softmax cross-entropy over logits[classes][batch]. Returns the mean loss over the batch,
 * writes (overwrites) dlogits = (softmax - onehot) * grad_scale when dlogits is non-NULL,
 * and the number of correct top-1 predictions into *correct when non-NULL. */
float cpu_softmax_xent(float *dlogits, int *correct, const float *logits, const uint8_t *labels,
                       float grad_scale, int batch, int classes);

/* Adam, both framework forms (bias-corrected, step counts from 1):
 *  - keras:   p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
 *  - pytorch: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)   */
typedef enum { ADAM_EPS_KERAS = 0, ADAM_EPS_PYTORCH = 1 } adam_eps_form;
void cpu_adam_step(float *param, float *m, float *v, const float *grad, float lr, float beta1,
                   float beta2, float eps, adam_eps_form form, long step, size_t count);

/* grad += coefficient * param (L2 regularisation as a gradient term). */
void cpu_add_scaled(float *grad, const float *param, float coefficient, size_t count);

#endif
