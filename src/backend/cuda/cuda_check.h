/* Check macros for CUDA runtime, cuDNN, cuBLAS and NCCL calls. A failed call is a broken
 * invariant (out of device memory, a bad launch, an unsupported setting), never bad user
 * input, so it prints file:line, the call as written and the library's own error string,
 * then exits(1).
 *
 * The macros only name a library's functions when they expand, so this header needs none
 * of the library headers: a file includes the headers of the libraries it calls. It is
 * plain C that also compiles as CUDA C++, and depends on nothing else in the project (the
 * CUDA library is linked after the main one and must not need its symbols). */
#ifndef BNECK_BACKEND_CUDA_CHECK_H
#define BNECK_BACKEND_CUDA_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, format(printf, 3, 4), unused)) static void cuda_fail_at(
    const char *file, int line, const char *format, ...) {
    fflush(stdout);
    fprintf(stderr, "bneck: fatal: %s:%d: ", file, line);
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    exit(1);
}

/* A failed invariant in the CUDA backend (bad dimensions, use before init). */
#define CUDA_FAIL(...) cuda_fail_at(__FILE__, __LINE__, __VA_ARGS__)

#define CUDA_CHECK(call)                                                                        \
    do {                                                                                        \
        cudaError_t cuda_status_ = (call);                                                      \
        if (cuda_status_ != cudaSuccess)                                                        \
            cuda_fail_at(__FILE__, __LINE__, "%s: %s (%s)", #call,                              \
                         cudaGetErrorString(cuda_status_), cudaGetErrorName(cuda_status_));     \
    } while (0)

/* After a kernel launch: reports a bad launch configuration at the launch site. Errors
 * raised while the kernel runs surface at the next synchronising call instead. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* cuDNN 9 keeps a detailed message for its last error: printed after the status string. */
#define CUDNN_CHECK(call)                                                                       \
    do {                                                                                        \
        cudnnStatus_t cudnn_status_ = (call);                                                   \
        if (cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                            \
            char cudnn_detail_[512];                                                            \
            cudnnGetLastErrorString(cudnn_detail_, sizeof cudnn_detail_);                       \
            cuda_fail_at(__FILE__, __LINE__, "%s: %s%s%s", #call,                               \
                         cudnnGetErrorString(cudnn_status_), cudnn_detail_[0] ? ": " : "",      \
                         cudnn_detail_);                                                        \
        }                                                                                       \
    } while (0)

#define CUBLAS_CHECK(call)                                                                      \
    do {                                                                                        \
        cublasStatus_t cublas_status_ = (call);                                                 \
        if (cublas_status_ != CUBLAS_STATUS_SUCCESS)                                            \
            cuda_fail_at(__FILE__, __LINE__, "%s: %s (%s)", #call,                              \
                         cublasGetStatusString(cublas_status_),                                 \
                         cublasGetStatusName(cublas_status_));                                  \
    } while (0)

#define NCCL_CHECK(call)                                                                        \
    do {                                                                                        \
        ncclResult_t nccl_status_ = (call);                                                     \
        if (nccl_status_ != ncclSuccess)                                                        \
            cuda_fail_at(__FILE__, __LINE__, "%s: %s", #call, ncclGetErrorString(nccl_status_)); \
    } while (0)

#endif
