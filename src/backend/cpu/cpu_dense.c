/* Dense layer over [features][batch] activations, through GEMM:
 *   y[out][batch] = W[out][in] x x[in][batch] + bias[out]. */
#include "backend/cpu/cpu_ops.h"

#include "backend/cpu/cpu_gemm.h"
#include "core/error.h"

static void check(const char *op, int batch, int in_features, int out_features) {
    if (batch < 1 || in_features < 1 || out_features < 1)
        BNECK_FAIL("%s: bad dimensions batch=%d in=%d out=%d", op, batch, in_features,
                   out_features);
}

void cpu_dense_forward(float *y, const float *x, const float *weight, const float *bias, int batch,
                       int in_features, int out_features) {
    check("cpu_dense_forward", batch, in_features, out_features);
    if (bias) {
        for (int o = 0; o < out_features; o++) {
            float *restrict row = y + (size_t)o * (size_t)batch;
            const float b = bias[o];
            for (int n = 0; n < batch; n++) row[n] = b;
        }
    }
    cpu_gemm('N', 'N', out_features, batch, in_features, 1.0f, weight, in_features, x, batch,
             bias ? 1.0f : 0.0f, y, batch);
}

void cpu_dense_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                        const float *dy, const float *x, const float *weight, int batch,
                        int in_features, int out_features) {
    check("cpu_dense_backward", batch, in_features, out_features);
    if (dbias) {
        for (int o = 0; o < out_features; o++) {
            const float *restrict row = dy + (size_t)o * (size_t)batch;
            double sum = 0.0;
            for (int n = 0; n < batch; n++) sum += (double)row[n];
            dbias[o] += (float)sum;
        }
    }
    if (dweight)
        cpu_gemm('N', 'T', out_features, in_features, batch, 1.0f, dy, batch, x, batch, 1.0f,
                 dweight, in_features);
    if (dx)
        cpu_gemm('T', 'N', in_features, batch, out_features, 1.0f, weight, in_features, dy, batch,
                 dx_store == GRAD_ACCUMULATE ? 1.0f : 0.0f, dx, batch);
}
