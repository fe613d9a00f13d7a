/* Elementwise ops: ReLU, softmax cross-entropy, Adam, L2 gradient term; the GPU twin of
 * cpu_elementwise.c. The explicitly rounded intrinsics (__fmul_rn, __fadd_rn, ...) keep
 * the compiler from fusing multiplies and adds, so these match the CPU's float arithmetic
 * step for step (the CPU build has no FMA). */
#include <cuda_runtime.h>

#include <math.h>

#include "backend/cuda/cuda_device.cuh"

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

/* --- ReLU -------------------------------------------------------------------------------- */

__global__ void relu_forward_kernel(float *y, const float *x, size_t count) {
    GRID_STRIDE_LOOP(i, count) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

extern "C" void cuda_relu_forward(float *y, const float *x, size_t count) {
    if (!count) return;
    relu_forward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(y, x,
                                                                                      count);
    CUDA_CHECK_LAUNCH();
}

/* dx += dy where y > 0. */
__global__ void relu_backward_kernel(float *dx, const float *dy, const float *y, size_t count) {
    GRID_STRIDE_LOOP(i, count) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

extern "C" void cuda_relu_backward(float *dx, const float *dy, const float *y, size_t count) {
    if (!dx || !count) return;
    relu_backward_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(dx, dy, y,
                                                                                       count);
    CUDA_CHECK_LAUNCH();
}

/* --- softmax cross-entropy ------------------------------------------------------------------
 * logits[class][n]. One block: a batch is a few hundred samples of ten classes, so the
 * work is tiny and one block keeps the sums in a fixed order. Per sample in double, as on
 * the CPU. The block writes {loss sum, correct count, bad labels} for the host, or adds
 * them to running totals in device memory (accumulate: the device-side variant). */

static const int softmax_threads = 256;

typedef struct softmax_totals {
    double loss, correct, bad_labels;
} softmax_totals;

__global__ void softmax_xent_kernel(softmax_totals *totals, float *dlogits, const float *logits,
                                    const uint8_t *labels, float grad_scale, int batch,
                                    int classes, int accumulate) {
    const size_t stride = (size_t)batch;
    double loss = 0.0, correct = 0.0, bad_labels = 0.0;
    for (int n = threadIdx.x; n < batch; n += blockDim.x) {
        const int label = labels[n];
        if (label >= classes) {
            bad_labels += 1.0;
            continue;
        }
        const float *z = logits + n;
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (z[(size_t)k * stride] > z[(size_t)best * stride]) best = k;
        const double zmax = z[(size_t)best * stride];
        double sum = 0.0;
        for (int k = 0; k < classes; k++) sum += exp((double)z[(size_t)k * stride] - zmax);
        const double log_sum = log(sum);
        loss += log_sum - ((double)z[(size_t)label * stride] - zmax);
        correct += best == label ? 1.0 : 0.0;
        if (dlogits) {
            float *d = dlogits + n;
            for (int k = 0; k < classes; k++) {
                const double p = exp((double)z[(size_t)k * stride] - zmax - log_sum);
                d[(size_t)k * stride] = (float)((p - (k == label ? 1.0 : 0.0)) * grad_scale);
            }
        }
    }
    loss = block_sum(loss);
    correct = block_sum(correct);
    bad_labels = block_sum(bad_labels);
    if (threadIdx.x == 0) {
        if (accumulate) {
            totals->loss += loss;
            totals->correct += correct;
            totals->bad_labels += bad_labels;
        } else {
            totals->loss = loss;
            totals->correct = correct;
            totals->bad_labels = bad_labels;
        }
    }
}

/* The totals, copied to the host once the stream has reached them. */
static softmax_totals totals_from_device(const softmax_totals *device_totals) {
    softmax_totals totals;
    CUDA_CHECK(cudaMemcpyAsync(&totals, device_totals, sizeof totals, cudaMemcpyDeviceToHost,
                               cuda_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
    return totals;
}

extern "C" float cuda_softmax_xent(float *dlogits, int *correct, const float *logits,
                                   const uint8_t *labels, float grad_scale, int batch,
                                   int classes) {
    if (batch < 1 || classes < 1)
        CUDA_FAIL("cuda_softmax_xent: bad dimensions batch=%d classes=%d", batch, classes);
    softmax_totals *device_totals =
        (softmax_totals *)cuda_scratch(CUDA_SCRATCH_REDUCTION, sizeof(softmax_totals));
    softmax_xent_kernel<<<1, softmax_threads, 0, cuda_ctx.stream>>>(
        device_totals, dlogits, logits, labels, grad_scale, batch, classes, 0);
    CUDA_CHECK_LAUNCH();
    const softmax_totals totals = totals_from_device(device_totals);
    if (totals.bad_labels > 0.0)
        CUDA_FAIL("cuda_softmax_xent: %.0f of %d labels were not below the %d classes",
                  totals.bad_labels, batch, classes);
    if (correct) *correct = (int)totals.correct;
    return (float)(totals.loss / batch);
}

static_assert(sizeof(softmax_totals) == CUDA_LOSS_TOTALS * sizeof(double),
              "softmax_totals is the device totals array of cuda_backend.h");

extern "C" void cuda_softmax_xent_device(double *device_totals, float *dlogits,
                                         const float *logits, const uint8_t *labels,
                                         float grad_scale, int batch, int classes) {
    if (batch < 1 || classes < 1)
        CUDA_FAIL("cuda_softmax_xent_device: bad dimensions batch=%d classes=%d", batch, classes);
    softmax_xent_kernel<<<1, softmax_threads, 0, cuda_ctx.stream>>>(
        (softmax_totals *)device_totals, dlogits, logits, labels, grad_scale, batch, classes, 1);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_loss_totals_read(const double *device_totals, double *loss_sum,
                                      double *correct) {
    const softmax_totals totals = totals_from_device((const softmax_totals *)device_totals);
    if (totals.bad_labels > 0.0)
        CUDA_FAIL("softmax cross-entropy: %.0f labels were not below the class count",
                  totals.bad_labels);
    if (loss_sum) *loss_sum = totals.loss;
    if (correct) *correct = totals.correct;
}

/* --- Adam ------------------------------------------------------------------------------------
 * step_size and v_scale carry the bias corrections and the eps form (see cpu_ops.h); they
 * are computed on the host exactly as on the CPU. */

typedef struct adam_constants {
    float step_size, v_scale, b1, b2, c1, c2, eps;
} adam_constants;

__global__ void adam_kernel(float *param, float *m, float *v, const float *grad, adam_constants k,
                            size_t count) {
    GRID_STRIDE_LOOP(i, count) {
        const float g = grad[i];
        const float mi = __fadd_rn(__fmul_rn(k.b1, m[i]), __fmul_rn(k.c1, g));
        const float vi = __fadd_rn(__fmul_rn(k.b2, v[i]), __fmul_rn(__fmul_rn(k.c2, g), g));
        m[i] = mi;
        v[i] = vi;
        const float denominator = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), k.v_scale), k.eps);
        param[i] = __fsub_rn(param[i], __fdiv_rn(__fmul_rn(k.step_size, mi), denominator));
    }
}

extern "C" void cuda_adam_step(float *param, float *m, float *v, const float *grad, float lr,
                               float beta1, float beta2, float eps, adam_eps_form form,
                               long step, size_t count) {
    if (step < 1) CUDA_FAIL("cuda_adam_step: step %ld must count from 1", step);
    if (form != ADAM_EPS_KERAS && form != ADAM_EPS_PYTORCH)
        CUDA_FAIL("cuda_adam_step: unknown eps form %d", (int)form);
    if (!count) return;
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    adam_constants k;
    k.step_size = (float)(form == ADAM_EPS_KERAS ? (double)lr * sqrt(bc2) / bc1 : (double)lr / bc1);
    k.v_scale = (float)(form == ADAM_EPS_KERAS ? 1.0 : 1.0 / sqrt(bc2));
    k.b1 = beta1;
    k.b2 = beta2;
    k.c1 = 1.0f - beta1;
    k.c2 = 1.0f - beta2;
    k.eps = eps;
    adam_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(param, m, v, grad,
                                                                               k, count);
    CUDA_CHECK_LAUNCH();
}

/* --- L2 gradient term ------------------------------------------------------------------------ */

__global__ void add_scaled_kernel(float *grad, const float *param, float coefficient,
                                  size_t count) {
    GRID_STRIDE_LOOP(i, count) grad[i] = __fadd_rn(grad[i], __fmul_rn(coefficient, param[i]));
}

extern "C" void cuda_add_scaled(float *grad, const float *param, float coefficient, size_t count) {
    if (!count) return;
    add_scaled_kernel<<<cuda_grid_blocks(count), CUDA_THREADS, 0, cuda_ctx.stream>>>(
        grad, param, coefficient, count);
    CUDA_CHECK_LAUNCH();
}
