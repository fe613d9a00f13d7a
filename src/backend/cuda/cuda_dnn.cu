/* Convolutions through cuDNN: the only file that calls cuDNN, so that a move to the
 * cuDNN graph API touches nothing else. Legacy cuDNN 9 API (its deprecation attributes
 * are only active when CUDNN_WARN_DEPRECATED is defined, which this build does not do).
 *
 * cuda_conv.c decides which convolutions come here (see cuda_backend_set_conv_engine).
 *
 * Layout. Activations are CNHW. In strict fp32, cuDNN is handed them as they are, through
 * strided 4-d descriptors (n stride H*W, c stride N*H*W, h stride W, w stride 1). Older
 * cuDNN releases documented some algorithms (the backward ones especially) as needing
 * each image's C*H*W to be packed, so whenever cuDNN offers no algorithm for the strided
 * tensors, or refuses to run the one it offered, that direction of that shape falls back
 * to transposing into packed NCHW scratch copies and back (cuda_swap_outer_dims).
 * cuda_backend_set_conv_transpose(1) forces that fallback for every shape.
 * In tf32 and bf16 modes the convolutions run on NHWC copies (cuda_layout.cu; the filter
 * as OHWI, cuDNN's KRSC), in fp32 or bf16: cuDNN's tensor-core kernels want channels
 * innermost, and on strided CNHW it picks FMA kernels even when TF32 is allowed. A
 * direction cuDNN cannot run on NHWC falls back to the fp32 layouts above (with TF32
 * allowed).
 *
 * Algorithms. Chosen once per (shape, settings) and direction, the first time that
 * direction runs, and kept in a small table of plans with their descriptors: the fastest
 * by cuDNN's own timing (cudnnFind*), or in deterministic mode the first deterministic
 * one by its heuristics (cudnnGet*_v7: timing noise would change the choice, and so the
 * bits, from run to run). Only algorithms within workspace_budget are taken; the backend
 * owns one workspace for all of them, grown to the largest choice. Until a choice has
 * run once, a call cuDNN refuses (not supported, bad parameter: refusals come before any
 * kernel is launched, so nothing was written) moves on to the next candidate, and from
 * the last strided candidate to the NCHW copies.
 *
 * Math. Strict fp32 runs every algorithm with CUDNN_FMA_MATH (CUDNN_DEFAULT_MATH lets
 * Ampere and later GPUs use TF32 for fp32 data) and prefers the candidates cuDNN timed
 * that way (cudnnFind* also times CUDNN_DEFAULT_MATH). TF32 and bf16 modes prefer the
 * candidates cuDNN ran with tensor-core math and run each with the math type cuDNN
 * reported for it; bf16 data is searched with CUDNN_TENSOR_OP_MATH (search_math).
 * Down-conversion to fp16 is never allowed. cuDNN's bf16 kernels write bf16 outputs (y, dx,
 * dweight: its legacy API takes one data type per call), widened to fp32 on the way back;
 * the GEMM runners sum and write in fp32.
 *
 * Bias and its gradient use the backend's own per-channel kernels, and the backward
 * calls accumulate (beta = 1) as the backend contract requires. */
#include <cuda_runtime.h>
#include <cudnn.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
}

static cudnnHandle_t dnn;

/* Largest cuDNN workspace one convolution may use. The network's activations are a few
 * MiB per layer, so this leaves cuDNN every reasonable algorithm. */
static const size_t workspace_budget = (size_t)256 << 20;

typedef enum { FORWARD = 0, BACKWARD_DATA, BACKWARD_FILTER, DIRECTIONS } conv_direction;
static const char *const direction_names[DIRECTIONS] = {"forward", "backward-data",
                                                        "backward-filter"};

/* Everything that decides the algorithms; plain ints, so memcmp compares keys. */
typedef struct conv_key {
    int batch, height, width, in_channels, out_channels, kernel;
    int math_mode, deterministic, force_transpose;
} conv_key;

/* Where a direction runs: on the CNHW tensors through strided descriptors, or on copies. */
typedef enum { LAYOUT_STRIDED_CNHW = 0, LAYOUT_NCHW_COPIES, LAYOUT_NHWC_COPIES } conv_layout;
static const char *const layout_names[] = {"strided CNHW", "NCHW copies", "NHWC copies"};

/* One entry of cuDNN's ranked list, whatever the direction. */
typedef struct candidate {
    int algo;
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} candidate;

enum { max_candidates = 32 };

/* The algorithm a direction runs, and the usable candidates left to fall back on. */
typedef struct algorithm_choice {
    int chosen;
    conv_layout layout;
    int verified; /* a call succeeded: a refusal now is an error, not a reason to move on */
    int algo;     /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    cudnnMathType_t math;
    size_t workspace_bytes;
    int candidate_count, next_candidate;
    candidate candidates[max_candidates]; /* in order of preference */
    /* cuDNN's last refusal on this layout (its status and last-error text), so that a
     * layout given up or a shape cuDNN cannot run says why */
    char refusal[384];
} algorithm_choice;

typedef struct conv_plan {
    conv_key key;
    int strided_ok; /* cuDNN accepted the strided CNHW descriptors */
    cuda_element nhwc_type; /* element type of the NHWC copies: bf16 in bf16 mode */
    cudnnTensorDescriptor_t x_strided, y_strided, x_packed, y_packed, x_nhwc, y_nhwc;
    cudnnFilterDescriptor_t filter, filter_nhwc;
    cudnnConvolutionDescriptor_t conv;
    algorithm_choice choice[DIRECTIONS];
} conv_plan;

static conv_plan **plans;
static int plan_count, plan_capacity;

/* --- handle -------------------------------------------------------------------------------- */

extern "C" int cuda_dnn_init(char *message, size_t capacity) {
    const cudnnStatus_t status = cudnnCreate(&dnn);
    if (status != CUDNN_STATUS_SUCCESS) {
        char detail[512];
        cudnnGetLastErrorString(detail, sizeof detail);
        if (message && capacity) /* NULL allowed, as for cuda_backend_init */
            snprintf(message, capacity, "cudnnCreate: %s%s%s", cudnnGetErrorString(status),
                     detail[0] ? ": " : "", detail);
        dnn = NULL;
        return -1;
    }
    CUDNN_CHECK(cudnnSetStream(dnn, cuda_ctx.stream));
    return 0;
}

static void destroy_plan(conv_plan *plan) {
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->x_strided));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->y_strided));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->x_packed));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->y_packed));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->x_nhwc));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(plan->y_nhwc));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(plan->filter));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(plan->filter_nhwc));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(plan->conv));
    free(plan);
}

extern "C" void cuda_dnn_shutdown(void) {
    for (int i = 0; i < plan_count; i++) destroy_plan(plans[i]);
    free(plans);
    plans = NULL;
    plan_count = plan_capacity = 0;
    if (dnn) CUDNN_CHECK(cudnnDestroy(dnn));
    dnn = NULL;
}

extern "C" size_t cuda_dnn_version(void) { return cudnnGetVersion(); }

/* --- plans --------------------------------------------------------------------------------- */

static void check_dims(const char *op, int batch, int height, int width, int in_channels,
                       int out_channels, int kernel) {
    (void)kernel; /* checked by cuda_conv.c */
    const int channels = in_channels > out_channels ? in_channels : out_channels;
    if ((size_t)batch * (size_t)channels * (size_t)height * (size_t)width > (size_t)INT_MAX)
        CUDA_FAIL("%s: tensor of %d x %d x %d x %d is too large for cuDNN's int strides", op,
                  channels, batch, height, width);
}

/* CNHW as cuDNN's (n, c, h, w) with strides; clears *ok when cuDNN refuses them. A batch
 * of one image is plain packed NCHW, and gets NCHW's n stride. */
static void set_cnhw(cudnnTensorDescriptor_t desc, int *ok, int batch, int channels, int height,
                     int width) {
    const int area = height * width;
    const int n_stride = batch == 1 ? channels * area : area;
    if (cudnnSetTensor4dDescriptorEx(desc, CUDNN_DATA_FLOAT, batch, channels, height, width,
                                     n_stride, batch * area, width, 1) != CUDNN_STATUS_SUCCESS)
        *ok = 0;
}

static conv_plan *create_plan(const conv_key *key) {
    conv_plan *plan = (conv_plan *)calloc(1, sizeof *plan);
    if (!plan) CUDA_FAIL("out of memory for a convolution plan");
    plan->key = *key;
    const int n = key->batch, h = key->height, w = key->width, k = key->kernel;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x_strided));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y_strided));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x_packed));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y_packed));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x_nhwc));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y_nhwc));
    plan->strided_ok = 1;
    plan->nhwc_type = key->math_mode == CUDA_MATH_BF16 ? CUDA_BF16 : CUDA_FP32;
    const cudnnDataType_t nhwc_data =
        plan->nhwc_type == CUDA_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x_nhwc, CUDNN_TENSOR_NHWC, nhwc_data, n,
                                           key->in_channels, h, w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y_nhwc, CUDNN_TENSOR_NHWC, nhwc_data, n,
                                           key->out_channels, h, w));
    set_cnhw(plan->x_strided, &plan->strided_ok, n, key->in_channels, h, w);
    set_cnhw(plan->y_strided, &plan->strided_ok, n, key->out_channels, h, w);
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x_packed, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n,
                                           key->in_channels, h, w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y_packed, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n,
                                           key->out_channels, h, w));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->filter));
    /* OIHW is cuDNN's KCRS, "NCHW" for filters */
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->filter, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                           key->out_channels, key->in_channels, k, k));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->filter_nhwc));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->filter_nhwc, nhwc_data, CUDNN_TENSOR_NHWC,
                                           key->out_channels, key->in_channels, k, k));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
    /* the CPU's im2col does not flip the kernel: cross-correlation, "same" padding; fp32
     * accumulation for every data type */
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->conv, k / 2, k / 2, 1, 1, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    return plan;
}

static conv_plan *plan_for(int batch, int height, int width, int in_channels, int out_channels,
                           int kernel) {
    if (!dnn) CUDA_FAIL("cuDNN used before cuda_backend_init");
    conv_key key;
    memset(&key, 0, sizeof key);
    key.batch = batch;
    key.height = height;
    key.width = width;
    key.in_channels = in_channels;
    key.out_channels = out_channels;
    key.kernel = kernel;
    key.math_mode = cuda_ctx.math_mode;
    key.deterministic = cuda_ctx.deterministic;
    key.force_transpose = cuda_ctx.conv_transpose;
    for (int i = 0; i < plan_count; i++)
        if (!memcmp(&plans[i]->key, &key, sizeof key)) return plans[i];
    if (plan_count == plan_capacity) {
        const int capacity = plan_capacity ? plan_capacity * 2 : 64;
        conv_plan **grown = (conv_plan **)realloc(plans, (size_t)capacity * sizeof *grown);
        if (!grown) CUDA_FAIL("out of memory for %d convolution plans", capacity);
        plans = grown;
        plan_capacity = capacity;
    }
    plans[plan_count] = create_plan(&key);
    return plans[plan_count++];
}

/* --- algorithm choice ------------------------------------------------------------------------ */

template <typename Perf>
static int to_candidates(candidate *out, const Perf *perf, int count) {
    for (int i = 0; i < count; i++) {
        out[i].algo = (int)perf[i].algo;
        out[i].status = perf[i].status;
        out[i].memory = perf[i].memory;
        out[i].determinism = perf[i].determinism;
        out[i].math = perf[i].mathType;
    }
    return count;
}

/* Only fp32 mode forbids tensor cores: tf32 allows them for fp32 data, and bf16 data is
 * there to run on them. (Until this said so, bf16 plans were held to FMA math, the likely
 * reason why cuDNN's bf16 backward kernels took up to 20 ms where its TF32 ones took under
 * one on the H200 check.) */
static int strict_fp32(const conv_plan *plan) { return plan->key.math_mode == CUDA_MATH_FP32; }

/* The math type cuDNN searches with: FMA in strict fp32; DEFAULT in tf32, which is what
 * lets fp32 data use TF32 (on Ampere and later); TENSOR_OP for bf16 data, as the frameworks
 * set for 16-bit types (cuDNN documents DEFAULT only as allowing TF32, so it may leave bf16
 * tensor-core kernels out of the search). */
static cudnnMathType_t search_math(const conv_plan *plan, conv_layout layout) {
    if (strict_fp32(plan)) return CUDNN_FMA_MATH;
    const int bf16_data = layout == LAYOUT_NHWC_COPIES && plan->nhwc_type == CUDA_BF16;
    return bf16_data ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH;
}

/* The math type an algorithm runs with: FMA in strict mode whatever cuDNN reported. */
static cudnnMathType_t execution_math(const conv_plan *plan, cudnnMathType_t reported) {
    return strict_fp32(plan) ? CUDNN_FMA_MATH : reported;
}

static cudnnTensorDescriptor_t x_of(const conv_plan *plan, conv_layout layout) {
    return layout == LAYOUT_NHWC_COPIES   ? plan->x_nhwc
           : layout == LAYOUT_NCHW_COPIES ? plan->x_packed
                                          : plan->x_strided;
}
static cudnnTensorDescriptor_t y_of(const conv_plan *plan, conv_layout layout) {
    return layout == LAYOUT_NHWC_COPIES   ? plan->y_nhwc
           : layout == LAYOUT_NCHW_COPIES ? plan->y_packed
                                          : plan->y_strided;
}
static cudnnFilterDescriptor_t filter_of(const conv_plan *plan, conv_layout layout) {
    return layout == LAYOUT_NHWC_COPIES ? plan->filter_nhwc : plan->filter;
}

/* cuDNN's ranked algorithms (fastest first) for one direction on one layout. */
static cudnnStatus_t rank_algorithms(conv_plan *plan, conv_direction direction,
                                     conv_layout layout, candidate *out, int *count) {
    const cudnnTensorDescriptor_t x = x_of(plan, layout), y = y_of(plan, layout);
    const cudnnFilterDescriptor_t filter = filter_of(plan, layout);
    const int timed = !plan->key.deterministic;
    cudnnStatus_t status;
    int returned = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, search_math(plan, layout)));
    switch (direction) {
    case FORWARD: {
        cudnnConvolutionFwdAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionForwardAlgorithm(dnn, x, filter, plan->conv, y,
                                                              max_candidates, &returned, perf)
                       : cudnnGetConvolutionForwardAlgorithm_v7(dnn, x, filter, plan->conv,
                                                                y, max_candidates, &returned,
                                                                perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    case BACKWARD_DATA: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionBackwardDataAlgorithm(dnn, filter, y,
                                                                   plan->conv, x, max_candidates,
                                                                   &returned, perf)
                       : cudnnGetConvolutionBackwardDataAlgorithm_v7(dnn, filter, y,
                                                                     plan->conv, x,
                                                                     max_candidates, &returned,
                                                                     perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    default: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionBackwardFilterAlgorithm(dnn, x, y, plan->conv,
                                                                     filter, max_candidates,
                                                                     &returned, perf)
                       : cudnnGetConvolutionBackwardFilterAlgorithm_v7(dnn, x, y, plan->conv,
                                                                       filter,
                                                                       max_candidates, &returned,
                                                                       perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    }
    return status;
}

/* Workspace of an algorithm with the math type currently set on the descriptor. */
static cudnnStatus_t workspace_size(conv_plan *plan, conv_direction direction,
                                    conv_layout layout, int algo, size_t *bytes) {
    const cudnnTensorDescriptor_t x = x_of(plan, layout), y = y_of(plan, layout);
    const cudnnFilterDescriptor_t filter = filter_of(plan, layout);
    switch (direction) {
    case FORWARD:
        return cudnnGetConvolutionForwardWorkspaceSize(dnn, x, filter, plan->conv, y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    case BACKWARD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            dnn, filter, y, plan->conv, x, (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            dnn, x, y, plan->conv, filter, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
    }
}

/* It ran (or cuDNN expects it to), fits the budget, obeys the settings. */
/* Transform-based algorithms (FFT and Winograd; cuDNN offers the non-fused Winograd for
 * 5x5 filters too) round far more than direct summation: on the GPU check (H200, cuDNN
 * 9.14, strict fp32) a 5x5 convolution picked by timing was 0.1-1 % off the CPU in the
 * forward and backward-data directions. They are rarely the fastest for images of 32x32
 * and smaller, so they are never used. */
static int is_transform(conv_direction direction, int algo) {
    switch (direction) {
    case FORWARD:
        return algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT ||
               algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
               algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
               algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
    case BACKWARD_DATA:
        return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT ||
               algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
               algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD ||
               algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
    default:
        return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT ||
               algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
               algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
    }
}

static int usable(const conv_plan *plan, conv_direction direction, const candidate *c) {
    if (c->status != CUDNN_STATUS_SUCCESS || c->memory > workspace_budget) return 0;
    if (is_transform(direction, c->algo)) return 0;
    if (plan->key.deterministic && c->determinism != CUDNN_DETERMINISTIC) return 0;
    if (c->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return 0;
    return !(strict_fp32(plan) && c->math == CUDNN_TENSOR_OP_MATH);
}

/* Keeps cuDNN's status and last-error text as the choice's reason to move on. */
static void note_refusal(algorithm_choice *choice, const char *what, cudnnStatus_t status) {
    char detail[256];
    cudnnGetLastErrorString(detail, sizeof detail);
    snprintf(choice->refusal, sizeof choice->refusal, "%s: %s%s%s", what,
             cudnnGetErrorString(status), detail[0] ? ": " : "", detail);
}

/* Fills the choice with the usable candidates for one layout, in order of preference:
 * cuDNN's order, except that strict fp32 takes those cuDNN ran with FMA math first. The
 * list stays empty when cuDNN has nothing for that layout. */
static void load_candidates(conv_plan *plan, conv_direction direction, conv_layout layout) {
    algorithm_choice *choice = &plan->choice[direction];
    choice->layout = layout;
    choice->candidate_count = choice->next_candidate = 0;
    choice->refusal[0] = '\0';
    candidate ranked[max_candidates];
    int count = 0;
    const cudnnStatus_t status = rank_algorithms(plan, direction, layout, ranked, &count);
    if (status != CUDNN_STATUS_SUCCESS) {
        /* packed NCHW is cuDNN's home layout: a real error */
        if (layout == LAYOUT_NCHW_COPIES) CUDNN_CHECK(status);
        note_refusal(choice, "ranking the algorithms", status);
        return;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < count; i++) {
            /* strict fp32: FMA kernels first; tf32 / bf16: tensor-core ones first (cuDNN's
             * timing may rank an FMA kernel first, which would leave TF32 unused) */
            const int preferred = strict_fp32(plan) == (ranked[i].math == CUDNN_FMA_MATH);
            if (usable(plan, direction, &ranked[i]) && preferred == (pass == 0))
                choice->candidates[choice->candidate_count++] = ranked[i];
        }
}

/* Says once per (direction, layout) that a layout was given up, naming the first shape
 * and cuDNN's last refusal, if any. */
static void note_fallback(const conv_plan *plan, conv_direction direction, conv_layout from,
                          conv_layout to, const char *why) {
    static int noted[DIRECTIONS][3];
    if (noted[direction][from]) return;
    noted[direction][from] = 1;
    const conv_key *k = &plan->key;
    const char *refusal = plan->choice[direction].refusal;
    fprintf(stderr,
            "bneck: note: cuDNN %s convolution on %s%s: %s%s%s%s (first for batch %d, %dx%d, "
            "%d -> %d channels, kernel %d); such shapes run on %s%s\n",
            direction_names[direction], layout_names[from],
            from == LAYOUT_NHWC_COPIES && plan->nhwc_type == CUDA_BF16 ? " in bf16" : "", why,
            refusal[0] ? " (last: " : "", refusal, refusal[0] ? ")" : "", k->batch, k->height,
            k->width, k->in_channels, k->out_channels, k->kernel, layout_names[to],
            from == LAYOUT_NHWC_COPIES ? " in fp32 (TF32 allowed)" : "");
}

/* The first layout a direction tries, and where each one falls back to. */
static conv_layout first_layout(const conv_plan *plan) {
    if (plan->key.math_mode != CUDA_MATH_FP32) return LAYOUT_NHWC_COPIES;
    return plan->key.force_transpose || !plan->strided_ok ? LAYOUT_NCHW_COPIES
                                                          : LAYOUT_STRIDED_CNHW;
}
static conv_layout next_layout(const conv_plan *plan, conv_layout layout) {
    if (layout == LAYOUT_NHWC_COPIES && plan->strided_ok && !plan->key.force_transpose)
        return LAYOUT_STRIDED_CNHW;
    return LAYOUT_NCHW_COPIES;
}

/* Moves the choice to its next candidate: the next one on its layout, else the first on
 * the next layout. Fails when none is left. */
static void advance(conv_plan *plan, conv_direction direction) {
    algorithm_choice *choice = &plan->choice[direction];
    for (;;) {
        while (choice->next_candidate < choice->candidate_count) {
            const candidate *c = &choice->candidates[choice->next_candidate++];
            choice->algo = c->algo;
            choice->math = execution_math(plan, c->math);
            choice->verified = 0;
            CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
            /* the size under the math that runs (strict fp32 may run FMA where cuDNN
             * ranked under another) must stay within the budget too */
            const cudnnStatus_t status = workspace_size(plan, direction, choice->layout, c->algo,
                                                        &choice->workspace_bytes);
            if (status == CUDNN_STATUS_SUCCESS && choice->workspace_bytes <= workspace_budget)
                return;
            if (status != CUDNN_STATUS_SUCCESS)
                note_refusal(choice, "workspace size", status);
            else
                snprintf(choice->refusal, sizeof choice->refusal,
                         "algorithm %d needs %zu MiB of workspace", c->algo,
                         choice->workspace_bytes >> 20);
        }
        if (choice->layout == LAYOUT_NCHW_COPIES) {
            const conv_key *k = &plan->key;
            CUDA_FAIL("cuDNN runs no %s%s convolution algorithm within %zu MiB of workspace for "
                      "batch %d, %dx%d, %d -> %d channels, kernel %d%s%s%s",
                      k->deterministic ? "deterministic " : "", direction_names[direction],
                      workspace_budget >> 20, k->batch, k->height, k->width, k->in_channels,
                      k->out_channels, k->kernel, choice->refusal[0] ? " (last refusal: " : "",
                      choice->refusal, choice->refusal[0] ? ")" : "");
        }
        const conv_layout next = next_layout(plan, choice->layout);
        note_fallback(plan, direction, choice->layout, next, "no algorithm cuDNN will run");
        load_candidates(plan, direction, next);
    }
}

/* BNECK_CUDNN_LOG=1 in the environment prints every choice (for finding slow or odd
 * algorithms; cuDNN's own API log is CUDNN_LOGINFO_DBG=1). */
static void log_choice(const conv_plan *plan, conv_direction direction) {
    static int enabled = -1;
    if (enabled < 0) enabled = getenv("BNECK_CUDNN_LOG") && strcmp(getenv("BNECK_CUDNN_LOG"), "0");
    if (!enabled) return;
    const conv_key *k = &plan->key;
    const algorithm_choice *choice = &plan->choice[direction];
    fprintf(stderr,
            "bneck: cuDNN %s, batch %d, %dx%d, %d -> %d, kernel %d, math mode %d: algorithm %d "
            "(math %d) on %s, workspace %zu bytes\n",
            direction_names[direction], k->batch, k->height, k->width, k->in_channels,
            k->out_channels, k->kernel, k->math_mode, choice->algo, (int)choice->math,
            layout_names[choice->layout], choice->workspace_bytes);
}

static algorithm_choice *choice_for(conv_plan *plan, conv_direction direction) {
    algorithm_choice *choice = &plan->choice[direction];
    if (!choice->chosen) {
        choice->chosen = 1;
        const conv_layout first = first_layout(plan);
        if (first == LAYOUT_NCHW_COPIES && !plan->strided_ok && !plan->key.force_transpose)
            note_fallback(plan, direction, LAYOUT_STRIDED_CNHW, first, "descriptors refused");
        load_candidates(plan, direction, first);
        advance(plan, direction);
        log_choice(plan, direction);
    }
    return choice;
}

static int is_refusal(cudnnStatus_t status) {
    return CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED ||
           CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_BAD_PARAM;
}

/* Runs one direction through `call`, which issues the cuDNN call (with any layout copies)
 * for the choice it is given and returns cuDNN's status. A refusal before the choice's
 * first success moves on to the next candidate and calls again. */
template <typename Call>
static void execute(conv_plan *plan, conv_direction direction, Call call) {
    algorithm_choice *choice = choice_for(plan, direction);
    for (;;) {
        const cudnnStatus_t status = call(choice);
        if (status == CUDNN_STATUS_SUCCESS) {
            choice->verified = 1;
            return;
        }
        if (choice->verified || !is_refusal(status)) CUDNN_CHECK(status);
        note_refusal(choice, "running the algorithm", status);
        advance(plan, direction);
    }
}

static void *workspace_of(const algorithm_choice *choice) {
    return choice->workspace_bytes
               ? cuda_scratch(CUDA_SCRATCH_CUDNN_WORKSPACE, choice->workspace_bytes)
               : NULL;
}

/* --- the three directions -------------------------------------------------------------------
 * Each runs on the layout of its choice: x, y, dx, dy, weight and dweight are pointers of
 * that layout (and, for NHWC copies, element type). Output scales: y and dweight get
 * beta_y / beta_dweight times their old value added. */

static const float one = 1.0f, zero = 0.0f;

static cudnnStatus_t run_forward(conv_plan *plan, const algorithm_choice *choice, const void *x,
                                 const void *weight, void *y) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionForward(dnn, &one, x_of(plan, choice->layout), x,
                                   filter_of(plan, choice->layout), weight, plan->conv,
                                   (cudnnConvolutionFwdAlgo_t)choice->algo, workspace_of(choice),
                                   choice->workspace_bytes, &zero, y_of(plan, choice->layout), y);
}

static cudnnStatus_t run_backward_data(conv_plan *plan, const algorithm_choice *choice, void *dx,
                                       const void *weight, const void *dy, const float *beta) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionBackwardData(
        dnn, &one, filter_of(plan, choice->layout), weight, y_of(plan, choice->layout), dy,
        plan->conv, (cudnnConvolutionBwdDataAlgo_t)choice->algo, workspace_of(choice),
        choice->workspace_bytes, beta, x_of(plan, choice->layout), dx);
}

static cudnnStatus_t run_backward_filter(conv_plan *plan, const algorithm_choice *choice,
                                         void *dweight, const void *x, const void *dy,
                                         const float *beta) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionBackwardFilter(
        dnn, &one, x_of(plan, choice->layout), x, y_of(plan, choice->layout), dy, plan->conv,
        (cudnnConvolutionBwdFilterAlgo_t)choice->algo, workspace_of(choice),
        choice->workspace_bytes, beta, filter_of(plan, choice->layout), dweight);
}

/* A copy of an operand (x, dy or the filter) in a layout of copies, in its scratch slot,
 * reused while the slot still holds that layout's copy. One per slot: a direction that
 * falls back to another layout rewrites the slot (and may move it, when it grows), so a
 * copy is only ever reused for the layout it was made for. */
typedef struct layout_copy {
    const void *pointer; /* NULL: nothing made yet */
    conv_layout layout;
} layout_copy;

static const layout_copy no_copy = {NULL, LAYOUT_STRIDED_CNHW};

static const void *reusable(const layout_copy *copy, conv_layout layout) {
    return copy->pointer && copy->layout == layout ? copy->pointer : NULL;
}

/* The copy of a CNHW activation (x, or dy / y) for a layout of copies. */
static const void *activation_copy(layout_copy *copy, cuda_scratch_slot slot, conv_layout layout,
                                   const conv_plan *plan, const float *cnhw, int channels) {
    if (reusable(copy, layout)) return copy->pointer;
    const int batch = plan->key.batch;
    const size_t area = (size_t)plan->key.height * (size_t)plan->key.width;
    const size_t count = (size_t)channels * (size_t)batch * area;
    void *made;
    if (layout == LAYOUT_NHWC_COPIES) {
        made = cuda_scratch(slot, count * cuda_element_bytes(plan->nhwc_type));
        cuda_cnhw_to_nhwc(made, plan->nhwc_type, cnhw, channels, batch, area);
    } else {
        made = cuda_scratch(slot, count * sizeof(float));
        cuda_swap_outer_dims((float *)made, cnhw, channels, batch, area, 0);
    }
    copy->pointer = made;
    copy->layout = layout;
    return made;
}

/* The filter for a layout: OIHW as it is, or an OHWI copy for NHWC. */
static const void *filter_copy(layout_copy *copy, conv_layout layout, const conv_plan *plan,
                               const float *oihw) {
    if (layout != LAYOUT_NHWC_COPIES) return oihw;
    if (reusable(copy, layout)) return copy->pointer;
    const conv_key *k = &plan->key;
    const int area = k->kernel * k->kernel;
    void *ohwi = cuda_scratch(CUDA_SCRATCH_FILTER, (size_t)k->out_channels * k->in_channels *
                                                       area * cuda_element_bytes(plan->nhwc_type));
    cuda_oihw_to_ohwi(ohwi, plan->nhwc_type, oihw, k->out_channels, k->in_channels, area);
    copy->pointer = ohwi;
    copy->layout = layout;
    return ohwi;
}

/* Scratch for an output in a layout of copies, and adding it back into the CNHW tensor. */
static void *output_buffer(cuda_scratch_slot slot, conv_layout layout, const conv_plan *plan,
                           int channels) {
    const size_t count = (size_t)channels * (size_t)plan->key.batch *
                         (size_t)plan->key.height * (size_t)plan->key.width;
    return cuda_scratch(slot, count * (layout == LAYOUT_NHWC_COPIES
                                           ? cuda_element_bytes(plan->nhwc_type)
                                           : sizeof(float)));
}
static void output_back(float *cnhw, const void *copy, conv_layout layout, const conv_plan *plan,
                        int channels, int accumulate) {
    const int batch = plan->key.batch;
    const size_t area = (size_t)plan->key.height * (size_t)plan->key.width;
    if (layout == LAYOUT_NHWC_COPIES)
        cuda_nhwc_to_cnhw(cnhw, copy, plan->nhwc_type, channels, batch, area, accumulate);
    else
        cuda_swap_outer_dims(cnhw, (const float *)copy, batch, channels, area, accumulate);
}

extern "C" void cuda_dnn_conv2d_forward(float *y, const float *x, const float *weight,
                                        const float *bias, int batch, int height, int width,
                                        int in_channels, int out_channels, int kernel) {
    check_dims("cuda_dnn_conv2d_forward", batch, height, width, in_channels, out_channels, kernel);
    conv_plan *plan = plan_for(batch, height, width, in_channels, out_channels, kernel);
    layout_copy x_copy = no_copy, filter = no_copy;
    execute(plan, FORWARD, [&](const algorithm_choice *choice) {
        const conv_layout layout = choice->layout;
        if (layout == LAYOUT_STRIDED_CNHW) return run_forward(plan, choice, x, weight, y);
        const void *xc = activation_copy(&x_copy, CUDA_SCRATCH_LAYOUT_INPUT, layout, plan, x,
                                         in_channels);
        void *y_copy = output_buffer(CUDA_SCRATCH_LAYOUT_OUTPUT, layout, plan, out_channels);
        const cudnnStatus_t status = run_forward(plan, choice, xc,
                                                 filter_copy(&filter, layout, plan, weight), y_copy);
        if (status == CUDNN_STATUS_SUCCESS) output_back(y, y_copy, layout, plan, out_channels, 0);
        return status;
    });
    if (bias) cuda_add_channel_bias(y, bias, out_channels, (size_t)batch * height * width);
}

extern "C" void cuda_dnn_conv2d_backward(float *dx, float *dweight, float *dbias,
                                         const float *dy, const float *x, const float *weight,
                                         int batch, int height, int width, int in_channels,
                                         int out_channels, int kernel) {
    check_dims("cuda_dnn_conv2d_backward", batch, height, width, in_channels, out_channels,
               kernel);
    const size_t area = (size_t)height * (size_t)width;
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_channels, (size_t)batch * area);
    if (!dweight && !dx) return;
    conv_plan *plan = plan_for(batch, height, width, in_channels, out_channels, kernel);
    /* the two directions share their copies of x and dy while they run on the same layout */
    layout_copy x_copy = no_copy, dy_copy = no_copy, filter = no_copy;

    if (dweight)
        execute(plan, BACKWARD_FILTER, [&](const algorithm_choice *choice) {
            const conv_layout layout = choice->layout;
            if (layout == LAYOUT_STRIDED_CNHW)
                return run_backward_filter(plan, choice, dweight, x, dy, &one);
            const void *xc = activation_copy(&x_copy, CUDA_SCRATCH_LAYOUT_INPUT, layout,
                                             plan, x, in_channels);
            const void *dyc = activation_copy(&dy_copy, CUDA_SCRATCH_LAYOUT_OUTPUT,
                                              layout, plan, dy, out_channels);
            if (layout == LAYOUT_NCHW_COPIES) /* OIHW either way: accumulate in place */
                return run_backward_filter(plan, choice, dweight, xc, dyc, &one);
            const conv_key *k = &plan->key;
            const int kernel_area = k->kernel * k->kernel;
            void *dfilter = cuda_scratch(CUDA_SCRATCH_FILTER_GRADIENT,
                                         (size_t)out_channels * in_channels * kernel_area *
                                             cuda_element_bytes(plan->nhwc_type));
            const cudnnStatus_t status = run_backward_filter(plan, choice, dfilter, xc, dyc,
                                                             &zero);
            if (status == CUDNN_STATUS_SUCCESS)
                cuda_ohwi_to_oihw(dweight, dfilter, plan->nhwc_type, out_channels, in_channels,
                                  kernel_area, 1);
            return status;
        });
    if (dx)
        execute(plan, BACKWARD_DATA, [&](const algorithm_choice *choice) {
            const conv_layout layout = choice->layout;
            if (layout == LAYOUT_STRIDED_CNHW)
                return run_backward_data(plan, choice, dx, weight, dy, &one);
            const void *dyc = activation_copy(&dy_copy, CUDA_SCRATCH_LAYOUT_OUTPUT,
                                              layout, plan, dy, out_channels);
            void *dx_copy = output_buffer(CUDA_SCRATCH_LAYOUT_GRADIENT, layout, plan, in_channels);
            const cudnnStatus_t status = run_backward_data(
                plan, choice, dx_copy, filter_copy(&filter, layout, plan, weight), dyc,
                &zero);
            if (status == CUDNN_STATUS_SUCCESS)
                output_back(dx, dx_copy, layout, plan, in_channels, 1);
            return status;
        });
}
