/* Row-major SGEMM wrapper: oneDNN (BNECK_GEMM_DNNL) or CBLAS/OpenBLAS (BNECK_GEMM_OPENBLAS),
 * plus the thread count shared by the GEMM library and the backend's own OpenMP loops. */
#include "backend/cpu/cpu_gemm.h"

#include "core/error.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#if defined(BNECK_GEMM_DNNL)
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#elif defined(BNECK_GEMM_OPENBLAS)
#include <cblas.h>
#else
#error "define BNECK_GEMM_DNNL or BNECK_GEMM_OPENBLAS (CMake: -DBNECK_GEMM=dnnl|openblas)"
#endif

static int g_threads; /* 0 until cpu_set_threads is called */

static int valid_trans(char t) { return t == 'N' || t == 'n' || t == 'T' || t == 't'; }
static int is_trans(char t) { return t == 'T' || t == 't'; }

void cpu_gemm(char trans_a, char trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    if (!valid_trans(trans_a) || !valid_trans(trans_b))
        BNECK_FAIL("cpu_gemm: trans must be 'N' or 'T' (got '%c', '%c')", trans_a, trans_b);
    if (m < 0 || n < 0 || k < 0) BNECK_FAIL("cpu_gemm: negative size m=%d n=%d k=%d", m, n, k);
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        /* C = beta * C; BLAS semantics: C is not read when beta is 0. */
        for (int i = 0; i < m; i++) {
            float *row = c + (size_t)i * (size_t)ldc;
            if (beta == 0.0f)
                memset(row, 0, (size_t)n * sizeof *row);
            else if (beta != 1.0f)
                for (int j = 0; j < n; j++) row[j] *= beta;
        }
        return;
    }
#if defined(BNECK_GEMM_DNNL)
    dnnl_status_t status = dnnl_sgemm(is_trans(trans_a) ? 'T' : 'N', is_trans(trans_b) ? 'T' : 'N',
                                      m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (status != dnnl_success)
        BNECK_FAIL("dnnl_sgemm(%c, %c, m=%d, n=%d, k=%d, lda=%d, ldb=%d, ldc=%d) failed: %s (%d)",
                   trans_a, trans_b, m, n, k, lda, ldb, ldc, dnnl_status2str(status), (int)status);
#else
    /* CBLAS returns no status; reject what the reference implementation's xerbla would. */
    int a_cols = is_trans(trans_a) ? m : k;
    int b_cols = is_trans(trans_b) ? k : n;
    if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (n > 1 ? n : 1))
        BNECK_FAIL("cpu_gemm: bad leading dimension (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d)", m, n, k,
                   lda, ldb, ldc);
    cblas_sgemm(CblasRowMajor, is_trans(trans_a) ? CblasTrans : CblasNoTrans,
                is_trans(trans_b) ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
#endif
}

/* threads <= 0 means one per available processor. */
void cpu_set_threads(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    g_threads = threads;
    omp_set_num_threads(threads);
#if defined(BNECK_GEMM_OPENBLAS)
    openblas_set_num_threads(threads);
#endif
}

int cpu_threads(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

const char *cpu_gemm_library(void) {
    static char name[256];
#if defined(BNECK_GEMM_DNNL)
    const dnnl_version_t *v = dnnl_version();
    if (v->hash && v->hash[0] && strcmp(v->hash, "N/A") != 0)
        snprintf(name, sizeof name, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, v->hash);
    else
        snprintf(name, sizeof name, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
#else
    const char *config = openblas_get_config();
    if (!config) config = "(unknown configuration)";
    if (strncmp(config, "OpenBLAS", 8) == 0)
        snprintf(name, sizeof name, "%s", config);
    else
        snprintf(name, sizeof name, "OpenBLAS %s", config);
#endif
    return name;
}
