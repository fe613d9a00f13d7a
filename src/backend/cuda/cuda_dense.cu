/* Dense layer over [features][batch] activations through cuBLAS (the GPU twin of
 * cpu_dense.c), and the cuBLAS handle this file owns:
 *   y[out][batch] = W[out][in] x x[in][batch] + bias[out].
 * A 1x1 convolution over CNHW tensors is the same GEMM with batch = N*H*W
 * (y[out][n,h,w] = W[out][in] x x[in][n,h,w]), so cuda_conv.c hands those here: one GEMM
 * straight on the tensors, no layout change, tensor cores in tf32 and bf16 modes. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdio.h>

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

static cublasHandle_t blas;

/* cuBLAS's own workspace, given once (32 MiB, NVIDIA's figure for Hopper; more than the
 * 4 MiB asked for earlier GPUs): without it every GEMM captured into a step graph
 * records allocation nodes of its own, and a graph holding those cannot be updated in
 * place when it is captured again. Set after cublasSetStream, which resets it. */
static void *blas_workspace;
static const size_t BLAS_WORKSPACE_BYTES = (size_t)32 << 20;

extern "C" int cuda_blas_init(char *message, size_t capacity) {
    const cublasStatus_t status = cublasCreate(&blas);
    if (status != CUBLAS_STATUS_SUCCESS) {
        if (message && capacity) /* NULL allowed, as for cuda_backend_init */
            snprintf(message, capacity, "cublasCreate: %s (%s)",
                     cublasGetStatusString(status), cublasGetStatusName(status));
        blas = NULL;
        return -1;
    }
    const cudaError_t allocated = cudaMalloc(&blas_workspace, BLAS_WORKSPACE_BYTES);
    if (allocated != cudaSuccess) {
        if (message && capacity)
            snprintf(message, capacity, "cudaMalloc of cuBLAS's %zu-byte workspace: %s",
                     BLAS_WORKSPACE_BYTES, cudaGetErrorString(allocated));
        cublasDestroy(blas);
        blas = NULL;
        blas_workspace = NULL;
        return -1;
    }
    CUBLAS_CHECK(cublasSetStream(blas, cuda_ctx.stream));
    CUBLAS_CHECK(cublasSetWorkspace(blas, blas_workspace, BLAS_WORKSPACE_BYTES));
    cuda_blas_apply_math();
    return 0;
}

extern "C" void cuda_blas_shutdown(void) {
    if (blas) CUBLAS_CHECK(cublasDestroy(blas));
    blas = NULL;
    if (blas_workspace) CUDA_CHECK(cudaFree(blas_workspace));
    blas_workspace = NULL;
}

/* Strict fp32: CUBLAS_DEFAULT_MATH computes SGEMM in fp32 FMA (TF32 only when asked).
 * bf16 mode runs cublasGemmEx on bf16 copies, whatever the handle's math mode. */
extern "C" void cuda_blas_apply_math(void) {
    if (!blas) return;
    CUBLAS_CHECK(cublasSetMathMode(blas, cuda_ctx.math_mode == CUDA_MATH_TF32
                                             ? CUBLAS_TF32_TENSOR_OP_MATH
                                             : CUBLAS_DEFAULT_MATH));
}


/* Row-major C = op(A) * op(B) + beta * C (op(A) m x k, op(B) k x n), the cpu_gemm contract,
 * on operands of `type` (fp32, or bf16 copies) with fp32 sums and an fp32 C. cuBLAS is
 * column-major, and a row-major matrix read column-major is its transpose, so this
 * computes C^T = op(B)^T * op(A)^T: the operands swap places and keep their own transpose
 * flags. fp32 operands run strict fp32 or TF32 as the math mode says. */
extern "C" void cuda_gemm(int transpose_a, int transpose_b, int m, int n, int k, const void *a,
                          int lda, const void *b, int ldb, float beta, float *c, int ldc,
                          cuda_element type) {
    if (!blas) CUDA_FAIL("cuBLAS used before cuda_backend_init");
    const float alpha = 1.0f;
    const cudaDataType_t data = type == CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute =
        type == CUDA_FP32 && cuda_ctx.math_mode == CUDA_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                   : CUBLAS_COMPUTE_32F;
    CUBLAS_CHECK(cublasGemmEx(blas, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, data,
                              ldb, a, data, lda, &beta, c, CUDA_R_32F, ldc, compute,
                              CUBLAS_GEMM_DEFAULT));
}

/* cuda_gemm on fp32 operands; in bf16 mode on bf16 copies of them. */
static void row_major_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (cuda_ctx.math_mode == CUDA_MATH_BF16)
        cuda_gemm(transpose_a, transpose_b, m, n, k,
                  cuda_bf16_copy(CUDA_SCRATCH_GEMM_A, a, (size_t)(transpose_a ? k : m) * lda), lda,
                  cuda_bf16_copy(CUDA_SCRATCH_GEMM_B, b, (size_t)(transpose_b ? n : k) * ldb), ldb,
                  beta, c, ldc,
                  CUDA_BF16);
    else
        cuda_gemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc, CUDA_FP32);
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
    row_major_gemm(false, false, out_features, batch, in_features, weight, in_features, x,
                   batch, 0.0f, y, batch);
    if (bias) cuda_add_channel_bias(y, bias, out_features, (size_t)batch);
}

/* dbias += row sums of dy; dweight += dy x^T; dx += W^T dy. */
extern "C" void cuda_dense_backward(float *dx, float *dweight, float *dbias, const float *dy,
                                    const float *x, const float *weight, int batch,
                                    int in_features, int out_features) {
    check("cuda_dense_backward", batch, in_features, out_features);
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_features, (size_t)batch);
    if (cuda_ctx.math_mode == CUDA_MATH_BF16 && dweight && dx) {
        /* both GEMMs read dy: one bf16 copy (in a slot neither GEMM's own copies use) */
        const void *dy16 = cuda_bf16_copy(CUDA_SCRATCH_LAYOUT_OUTPUT, dy,
                                          (size_t)out_features * batch);
        cuda_gemm(false, true, out_features, in_features, batch, dy16, batch,
                  cuda_bf16_copy(CUDA_SCRATCH_GEMM_B, x, (size_t)in_features * batch), batch,
                  1.0f, dweight, in_features, CUDA_BF16);
        cuda_gemm(true, false, in_features, batch, out_features,
                  cuda_bf16_copy(CUDA_SCRATCH_GEMM_A, weight, (size_t)out_features * in_features),
                  in_features, dy16, batch, 1.0f, dx, batch, CUDA_BF16);
        return;
    }
    if (dweight)
        row_major_gemm(false, true, out_features, in_features, batch, dy, batch, x, batch,
                       1.0f, dweight, in_features);
    if (dx)
        row_major_gemm(true, false, in_features, batch, out_features, weight, in_features,
                       dy, batch, 1.0f, dx, batch);
}
