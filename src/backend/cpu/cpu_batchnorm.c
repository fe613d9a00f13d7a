/* Batch normalisation over each channel's contiguous plane (CNHW), with optional fused ReLU.
 * Statistics are accumulated in double; OpenMP splits the channels. */
#include "backend/cpu/cpu_ops.h"

#include "core/error.h"

#include <math.h>

static void check(const char *op, int channels, size_t plane) {
    if (channels < 0 || plane < 1) BNECK_FAIL("%s: bad channels=%d plane=%zu", op, channels, plane);
}

/* y = a * x + b, then max(0, .) when fuse_relu. */
static inline void affine(float *restrict y, const float *restrict x, float a, float b, int relu,
                          size_t plane) {
    if (relu) {
        for (size_t i = 0; i < plane; i++) {
            float v = a * x[i] + b;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t i = 0; i < plane; i++) y[i] = a * x[i] + b;
    }
}

void cpu_batchnorm_forward_train(float *y, float *batch_mean, float *batch_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, float eps, float momentum,
                                 int fuse_relu, int channels, size_t plane) {
    check("cpu_batchnorm_forward_train", channels, plane);
    /* unbiased variance of a single value is undefined; keep the biased one then */
    const double unbias = plane > 1 ? (double)plane / (double)(plane - 1) : 1.0;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < channels; c++) {
        const float *restrict xc = x + (size_t)c * plane;
        /* shifted sums (shift = first value) keep E[x^2] - E[x]^2 free of cancellation */
        const double shift = xc[0];
        double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
        for (size_t i = 0; i < plane; i++) {
            double d = (double)xc[i] - shift;
            s1 += d;
            s2 += d * d;
        }
        const double dmean = s1 / (double)plane;
        double var = s2 / (double)plane - dmean * dmean;
        if (var < 0.0) var = 0.0;
        const double mean = shift + dmean;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        if (batch_mean) batch_mean[c] = (float)mean;
        if (batch_invstd) batch_invstd[c] = (float)invstd;
        if (running_mean)
            running_mean[c] =
                (float)((double)momentum * running_mean[c] + (1.0 - (double)momentum) * mean);
        if (running_var)
            running_var[c] = (float)((double)momentum * running_var[c] +
                                     (1.0 - (double)momentum) * var * unbias);
        const double a = (double)gamma[c] * invstd;
        affine(y + (size_t)c * plane, xc, (float)a, (float)((double)beta[c] - a * mean), fuse_relu,
               plane);
    }
}

void cpu_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 int fuse_relu, int channels, size_t plane) {
    check("cpu_batchnorm_forward_infer", channels, plane);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < channels; c++) {
        const double a = (double)gamma[c] / sqrt((double)running_var[c] + (double)eps);
        affine(y + (size_t)c * plane, x + (size_t)c * plane, (float)a,
               (float)((double)beta[c] - a * running_mean[c]), fuse_relu, plane);
    }
}

/* With g = dy (masked by y > 0 for the fused ReLU) and xhat = (x - mean) * invstd:
 *   dbeta += sum g,  dgamma += sum g*xhat,
 *   dx += gamma*invstd * (g - sum(g)/P - xhat * sum(g*xhat)/P). */
void cpu_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                            const float *y, const float *gamma, const float *batch_mean,
                            const float *batch_invstd, int channels, size_t plane) {
    check("cpu_batchnorm_backward", channels, plane);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < channels; c++) {
        const size_t off = (size_t)c * plane;
        const float *restrict gc = dy + off;
        const float *restrict xc = x + off;
        const float *restrict yc = y ? y + off : NULL;
        const float mean = batch_mean[c], invstd = batch_invstd[c];
        double sg = 0.0, sgx = 0.0; /* sum g, sum g*(x - mean) */
        if (yc) {
#pragma omp simd reduction(+ : sg, sgx)
            for (size_t i = 0; i < plane; i++) {
                const float gi = gc[i]; /* loaded unconditionally so the loop vectorises */
                const float g = yc[i] > 0.0f ? gi : 0.0f;
                sg += (double)g;
                sgx += (double)(g * (xc[i] - mean));
            }
        } else {
#pragma omp simd reduction(+ : sg, sgx)
            for (size_t i = 0; i < plane; i++) {
                sg += (double)gc[i];
                sgx += (double)(gc[i] * (xc[i] - mean));
            }
        }
        const double sgxhat = sgx * (double)invstd;
        if (dbeta) dbeta[c] += (float)sg;
        if (dgamma) dgamma[c] += (float)sgxhat;
        if (!dx) continue;
        /* dx += k * g + b0 + b1 * (x - mean) */
        const double k = (double)gamma[c] * (double)invstd;
        const float kf = (float)k, b0 = (float)(-k * sg / (double)plane),
                    b1 = (float)(-k * sgxhat * (double)invstd / (double)plane);
        float *restrict dxc = dx + off;
        if (yc) {
            for (size_t i = 0; i < plane; i++) {
                const float gi = gc[i]; /* loaded unconditionally so the loop vectorises */
                const float g = yc[i] > 0.0f ? gi : 0.0f;
                dxc[i] += kf * g + b0 + b1 * (xc[i] - mean);
            }
        } else {
            for (size_t i = 0; i < plane; i++) dxc[i] += kf * gc[i] + b0 + b1 * (xc[i] - mean);
        }
    }
}
