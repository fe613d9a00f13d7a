/* The 3x3 max pool's rule for one window, written once for both backends: the CUDA kernel
 * runs it for every output, the CPU for the planes its fast loops do not cover (those
 * holding NaN or -inf), so the two give the same maxima and codes bit for bit.
 *
 * The window of output (h, w) is scanned in row-major order from its first in-image tap,
 * which a larger value or the first NaN replaces: a NaN wins (as in PyTorch), ties and a
 * window of only -inf go to the first in-image tap. */
#ifndef BNECK_BACKEND_CPU_MAXPOOL_WINDOW_H
#define BNECK_BACKEND_CPU_MAXPOOL_WINDOW_H

#if defined(__CUDACC__)
#define BNECK_HOST_DEVICE __host__ __device__
#else
#define BNECK_HOST_DEVICE
#endif

/* The window's maximum in *maximum; returns its code (row + 1) * 3 + (column + 1). */
static inline BNECK_HOST_DEVICE int maxpool_window(float *maximum, const float *x, int h, int w,
                                                   int height, int width) {
    float best = 0.0f;
    int code = -1;
    for (int a = -1; a <= 1; a++) {
        if (h + a < 0 || h + a >= height) continue;
        for (int b = -1; b <= 1; b++) {
            if (w + b < 0 || w + b >= width) continue;
            const float v = x[(h + a) * width + w + b];
            if (code < 0 || v > best || (v != v && best == best)) {
                best = v;
                code = (a + 1) * 3 + (b + 1);
            }
        }
    }
    *maximum = best;
    return code;
}

#endif
