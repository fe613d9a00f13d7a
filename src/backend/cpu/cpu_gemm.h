/* Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, with
 * op(X) = X or X^T for trans 'N' / 'T'. op(A) is M x K, op(B) is K x N, C is M x N.
 * Backed by oneDNN's dnnl_sgemm (it picks the CPU's own kernels; Debian's OpenBLAS can
 * fall back to generic ones on virtualised CPUs, see README), or by CBLAS when the
 * project is configured with -DBNECK_GEMM=openblas. */
#ifndef BNECK_BACKEND_CPU_GEMM_H
#define BNECK_BACKEND_CPU_GEMM_H

void cpu_gemm(char trans_a, char trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

/* Sets the number of threads for GEMM and the project's own OpenMP loops. */
void cpu_set_threads(int threads);
int cpu_threads(void);
/* Human-readable name of the GEMM library and version, for results files. */
const char *cpu_gemm_library(void);

#endif
