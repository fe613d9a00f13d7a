/* Dense layer over [features][batch] activations through cuBLAS (the GPU twin of
 * cpu_dense.c), and the cuBLAS handle this file owns:
 *   y[out][batch] = W[out][in] x x[in][batch] + bias[out]. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdio.h>

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

static cublasHandle_t blas;

extern "C" int cuda_blas_init(char *message, size_t capacity) {
    const cublasStatus_t status = cublasCreate(&blas);
    if (status != CUBLAS_STATUS_SUCCESS) {
        snprintf(message, capacity, "cublasCreate: %s (%s)", cublasGetStatusString(status),
                 cublasGetStatusName(status));
        blas = NULL;
        return -1;
    }
    CUBLAS_CHECK(cublasSetStream(blas, cuda_ctx.stream));
    cuda_blas_apply_math();
    return 0;
}

extern "C" void cuda_blas_shutdown(void) {
    if (blas) CUBLAS_CHECK(cublasDestroy(blas));
    blas = NULL;
}

/* Strict fp32: CUBLAS_DEFAULT_MATH computes SGEMM in fp32 FMA (TF32 only when asked). */
extern "C" void cuda_blas_apply_math(void) {
    if (!blas) return;
    CUBLAS_CHECK(cublasSetMathMode(blas, cuda_ctx.math_mode == CUDA_MATH_TF32
                                             ? CUBLAS_TF32_TENSOR_OP_MATH
                                             : CUBLAS_DEFAULT_MATH));
}

/* Row-major C = alpha * op(A) * op(B) + beta * C (op(A) m x k, op(B) k x n), the cpu_gemm
 * contract. cuBLAS is column-major, and a row-major matrix read column-major is its
 * transpose, so this computes C^T = op(B)^T * op(A)^T: the operands swap places and keep
 * their own transpose flags. */
static void row_major_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc) {
    if (!blas) CUDA_FAIL("cuBLAS used before cuda_backend_init");
    CUBLAS_CHECK(cublasSgemm(blas, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                             lda, &beta, c, ldc));
}

static void check(const char *op, int batch, int in_features, int out_features) {
    if (batch < 1 || in_features < 1 || out_features < 1)
        CUDA_FAIL("%s: bad dimensions batch=%d in=%d out=%d", op, batch, in_features,
                  out_features);
}

extern "C" void cuda_dense_forward(float *y, const float *x, const float *weight,
                                   const float *bias, int batch, int in_features,
                                   int out_features) {
    check("cuda_dense_forward", batch, in_features, out_features);
    row_major_gemm(false, false, out_features, batch, in_features, 1.0f, weight, in_features, x,
                   batch, 0.0f, y, batch);
    if (bias) cuda_add_channel_bias(y, bias, out_features, (size_t)batch);
}

/* dbias += row sums of dy; dweight += dy x^T; dx += W^T dy. */
extern "C" void cuda_dense_backward(float *dx, float *dweight, float *dbias, const float *dy,
                                    const float *x, const float *weight, int batch,
                                    int in_features, int out_features) {
    check("cuda_dense_backward", batch, in_features, out_features);
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_features, (size_t)batch);
    if (dweight)
        row_major_gemm(false, true, out_features, in_features, batch, 1.0f, dy, batch, x, batch,
                       1.0f, dweight, in_features);
    if (dx)
        row_major_gemm(true, false, in_features, batch, out_features, 1.0f, weight, in_features,
                       dy, batch, 1.0f, dx, batch);
}
