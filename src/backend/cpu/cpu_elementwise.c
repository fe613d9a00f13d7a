/* Elementwise ops: ReLU, softmax cross-entropy, Adam, L2 gradient term. */
#include "backend/cpu/cpu_ops.h"

#include "core/error.h"

#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PARALLEL_MIN ((size_t)1 << 16)

void cpu_relu_forward(float *y, const float *x, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dx += dy where y > 0. */
void cpu_relu_backward(float *dx, const float *dy, const float *y, size_t count) {
    if (!dx) return;
#pragma omp parallel for simd schedule(static) if (count >= PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) {
        const float g = dy[i];
        dx[i] += y[i] > 0.0f ? g : 0.0f;
    }
}

float cpu_softmax_xent(float *dlogits, int *correct, const float *logits, const uint8_t *labels,
                       float grad_scale, int batch, int classes) {
    if (batch < 1 || classes < 1)
        BNECK_FAIL("cpu_softmax_xent: bad dimensions batch=%d classes=%d", batch, classes);
    const size_t stride = (size_t)batch; /* logits[class][n] */
    double loss = 0.0;
    int hits = 0;
    for (int n = 0; n < batch; n++) {
        const int label = labels[n];
        if (label >= classes)
            BNECK_FAIL("cpu_softmax_xent: label %d of sample %d is not below %d classes", label, n,
                       classes);
        const float *z = logits + n;
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (z[(size_t)k * stride] > z[(size_t)best * stride]) best = k;
        const double zmax = z[(size_t)best * stride];
        double sum = 0.0;
        for (int k = 0; k < classes; k++) sum += exp((double)z[(size_t)k * stride] - zmax);
        const double log_sum = log(sum);
        loss += log_sum - ((double)z[(size_t)label * stride] - zmax);
        hits += best == label;
        if (dlogits) {
            float *d = dlogits + n;
            for (int k = 0; k < classes; k++) {
                double p = exp((double)z[(size_t)k * stride] - zmax - log_sum);
                d[(size_t)k * stride] = (float)((p - (k == label ? 1.0 : 0.0)) * grad_scale);
            }
        }
    }
    if (correct) *correct = hits;
    return (float)(loss / batch);
}

void cpu_adam_step(float *param, float *m, float *v, const float *grad, float lr, float beta1,
                   float beta2, float eps, adam_eps_form form, long step, size_t count) {
    if (step < 1) BNECK_FAIL("cpu_adam_step: step %ld must count from 1", step);
    if (form != ADAM_EPS_KERAS && form != ADAM_EPS_PYTORCH)
        BNECK_FAIL("cpu_adam_step: unknown eps form %d", (int)form);
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    /* keras:   p -= (lr*sqrt(bc2)/bc1) * m / (sqrt(v) + eps)
     * pytorch: p -= (lr/bc1) * m / (sqrt(v) * (1/sqrt(bc2)) + eps) */
    const float step_size =
        (float)(form == ADAM_EPS_KERAS ? (double)lr * sqrt(bc2) / bc1 : (double)lr / bc1);
    const float v_scale = (float)(form == ADAM_EPS_KERAS ? 1.0 : 1.0 / sqrt(bc2));
    const float b1 = beta1, b2 = beta2, c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    /* no simd clause: sqrtf's errno path keeps compilers from vectorising this loop */
#pragma omp parallel for schedule(static) if (count >= PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) {
        const float g = grad[i];
        const float mi = b1 * m[i] + c1 * g;
        const float vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step_size * mi / (sqrtf(vi) * v_scale + eps);
    }
}

void cpu_add_scaled(float *grad, const float *param, float coefficient, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) grad[i] += coefficient * param[i];
}
