/* Convolutions through cuDNN: the only file that calls cuDNN, so that a move to the
 * cuDNN graph API touches nothing else. Legacy cuDNN 9 API (its deprecation attributes
 * are only active when CUDNN_WARN_DEPRECATED is defined, which this build does not do).
 *
 * Layout. Activations are CNHW. cuDNN is handed them as they are, through strided 4-d
 * descriptors (n stride H*W, c stride N*H*W, h stride W, w stride 1). Older cuDNN
 * releases documented some algorithms (the backward ones especially) as needing each
 * image's C*H*W to be packed, so whenever cuDNN offers no algorithm for the strided
 * tensors, or refuses to run the one it offered, that direction of that shape falls back
 * to transposing into packed NCHW scratch copies and back (cuda_swap_outer_dims).
 * cuda_backend_set_conv_transpose(1) forces the fallback for every shape.
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
 * that way (cudnnFind* also times CUDNN_DEFAULT_MATH). TF32 mode runs each algorithm with
 * the math type cuDNN reported for it. Down-conversion to fp16 is never allowed.
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
    int packed;   /* runs on NCHW copies */
    int verified; /* a call succeeded: a refusal now is an error, not a reason to move on */
    int algo;     /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    cudnnMathType_t math;
    size_t workspace_bytes;
    int candidate_count, next_candidate;
    candidate candidates[max_candidates]; /* in order of preference */
} algorithm_choice;

typedef struct conv_plan {
    conv_key key;
    int strided_ok; /* cuDNN accepted the strided CNHW descriptors */
    cudnnTensorDescriptor_t x_strided, y_strided, x_packed, y_packed;
    cudnnFilterDescriptor_t filter;
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
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(plan->filter));
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

/* The backend owns the workspace (see the header): callers need none. */
extern "C" size_t cuda_conv2d_workspace_floats(int batch, int height, int width, int in_channels,
                                               int kernel) {
    (void)batch, (void)height, (void)width, (void)in_channels, (void)kernel;
    return 0;
}

/* --- plans --------------------------------------------------------------------------------- */

static void check_dims(const char *op, int batch, int height, int width, int in_channels,
                       int out_channels, int kernel) {
    if (batch < 1 || height < 1 || width < 1 || in_channels < 1 || out_channels < 1 ||
        kernel < 1 || kernel % 2 == 0)
        CUDA_FAIL("%s: bad dimensions batch=%d height=%d width=%d in=%d out=%d kernel=%d", op,
                  batch, height, width, in_channels, out_channels, kernel);
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
    plan->strided_ok = 1;
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
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
    /* the CPU's im2col does not flip the kernel: cross-correlation, "same" padding */
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

static int strict_fp32(const conv_plan *plan) { return plan->key.math_mode != CUDA_MATH_TF32; }

/* The math type an algorithm runs with: FMA in strict mode whatever cuDNN reported. */
static cudnnMathType_t execution_math(const conv_plan *plan, cudnnMathType_t reported) {
    return strict_fp32(plan) ? CUDNN_FMA_MATH : reported;
}

/* cuDNN's ranked algorithms (fastest first) for one direction on one layout. */
static cudnnStatus_t rank_algorithms(conv_plan *plan, conv_direction direction, int packed,
                                     candidate *out, int *count) {
    const cudnnTensorDescriptor_t x = packed ? plan->x_packed : plan->x_strided;
    const cudnnTensorDescriptor_t y = packed ? plan->y_packed : plan->y_strided;
    const int timed = !plan->key.deterministic;
    cudnnStatus_t status;
    int returned = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, strict_fp32(plan) ? CUDNN_FMA_MATH
                                                                          : CUDNN_DEFAULT_MATH));
    switch (direction) {
    case FORWARD: {
        cudnnConvolutionFwdAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionForwardAlgorithm(dnn, x, plan->filter, plan->conv, y,
                                                              max_candidates, &returned, perf)
                       : cudnnGetConvolutionForwardAlgorithm_v7(dnn, x, plan->filter, plan->conv,
                                                                y, max_candidates, &returned,
                                                                perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    case BACKWARD_DATA: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionBackwardDataAlgorithm(dnn, plan->filter, y,
                                                                   plan->conv, x, max_candidates,
                                                                   &returned, perf)
                       : cudnnGetConvolutionBackwardDataAlgorithm_v7(dnn, plan->filter, y,
                                                                     plan->conv, x,
                                                                     max_candidates, &returned,
                                                                     perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    default: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[max_candidates];
        status = timed ? cudnnFindConvolutionBackwardFilterAlgorithm(dnn, x, y, plan->conv,
                                                                     plan->filter, max_candidates,
                                                                     &returned, perf)
                       : cudnnGetConvolutionBackwardFilterAlgorithm_v7(dnn, x, y, plan->conv,
                                                                       plan->filter,
                                                                       max_candidates, &returned,
                                                                       perf);
        *count = status == CUDNN_STATUS_SUCCESS ? to_candidates(out, perf, returned) : 0;
        break;
    }
    }
    return status;
}

/* Workspace of an algorithm with the math type currently set on the descriptor. */
static cudnnStatus_t workspace_size(conv_plan *plan, conv_direction direction, int packed,
                                    int algo, size_t *bytes) {
    const cudnnTensorDescriptor_t x = packed ? plan->x_packed : plan->x_strided;
    const cudnnTensorDescriptor_t y = packed ? plan->y_packed : plan->y_strided;
    switch (direction) {
    case FORWARD:
        return cudnnGetConvolutionForwardWorkspaceSize(dnn, x, plan->filter, plan->conv, y,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
    case BACKWARD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            dnn, plan->filter, y, plan->conv, x, (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            dnn, x, y, plan->conv, plan->filter, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
    }
}

/* It ran (or cuDNN expects it to), fits the budget, obeys the settings. */
static int usable(const conv_plan *plan, const candidate *c) {
    if (c->status != CUDNN_STATUS_SUCCESS || c->memory > workspace_budget) return 0;
    if (plan->key.deterministic && c->determinism != CUDNN_DETERMINISTIC) return 0;
    if (c->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return 0;
    return !(strict_fp32(plan) && c->math == CUDNN_TENSOR_OP_MATH);
}

/* Fills the choice with the usable candidates for one layout, in order of preference:
 * cuDNN's order, except that strict fp32 takes those cuDNN ran with FMA math first. The
 * list stays empty when cuDNN has nothing for the strided layout. */
static void load_candidates(conv_plan *plan, conv_direction direction, int packed) {
    algorithm_choice *choice = &plan->choice[direction];
    choice->packed = packed;
    choice->candidate_count = choice->next_candidate = 0;
    candidate ranked[max_candidates];
    int count = 0;
    const cudnnStatus_t status = rank_algorithms(plan, direction, packed, ranked, &count);
    if (status != CUDNN_STATUS_SUCCESS) {
        if (packed) CUDNN_CHECK(status); /* packed NCHW is cuDNN's home layout: a real error */
        return;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < count; i++) {
            const int preferred = !strict_fp32(plan) || ranked[i].math == CUDNN_FMA_MATH;
            if (usable(plan, &ranked[i]) && preferred == (pass == 0))
                choice->candidates[choice->candidate_count++] = ranked[i];
        }
}

/* Says once per direction that the strided layout was given up, naming the first shape. */
static void note_fallback(const conv_plan *plan, conv_direction direction, const char *why) {
    static int noted[DIRECTIONS];
    if (noted[direction]) return;
    noted[direction] = 1;
    const conv_key *k = &plan->key;
    fprintf(stderr,
            "bneck: note: cuDNN %s convolution on strided CNHW tensors: %s (first for batch %d, "
            "%dx%d, %d -> %d channels, kernel %d); such shapes go through NCHW copies\n",
            direction_names[direction], why, k->batch, k->height, k->width, k->in_channels,
            k->out_channels, k->kernel);
}

/* Moves the choice to its next candidate: the next one on its layout, else the first on
 * packed NCHW. Fails when none is left. */
static void advance(conv_plan *plan, conv_direction direction) {
    algorithm_choice *choice = &plan->choice[direction];
    for (;;) {
        while (choice->next_candidate < choice->candidate_count) {
            const candidate *c = &choice->candidates[choice->next_candidate++];
            choice->algo = c->algo;
            choice->math = execution_math(plan, c->math);
            choice->verified = 0;
            CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
            if (workspace_size(plan, direction, choice->packed, c->algo,
                               &choice->workspace_bytes) == CUDNN_STATUS_SUCCESS)
                return;
        }
        if (choice->packed) {
            const conv_key *k = &plan->key;
            CUDA_FAIL("cuDNN runs no %s%s convolution algorithm within %zu MiB of workspace for "
                      "batch %d, %dx%d, %d -> %d channels, kernel %d",
                      k->deterministic ? "deterministic " : "", direction_names[direction],
                      workspace_budget >> 20, k->batch, k->height, k->width, k->in_channels,
                      k->out_channels, k->kernel);
        }
        note_fallback(plan, direction, "no algorithm cuDNN will run");
        load_candidates(plan, direction, 1);
    }
}

static algorithm_choice *choice_for(conv_plan *plan, conv_direction direction) {
    algorithm_choice *choice = &plan->choice[direction];
    if (!choice->chosen) {
        choice->chosen = 1;
        if (!plan->strided_ok && !plan->key.force_transpose)
            note_fallback(plan, direction, "descriptors refused");
        load_candidates(plan, direction, plan->key.force_transpose || !plan->strided_ok);
        advance(plan, direction);
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
        advance(plan, direction);
    }
}

static void *workspace_of(const algorithm_choice *choice) {
    return choice->workspace_bytes
               ? cuda_scratch(CUDA_SCRATCH_CUDNN_WORKSPACE, choice->workspace_bytes)
               : NULL;
}

/* --- the three directions -------------------------------------------------------------------
 * Each runs with the layout of its choice: x, y, dx, dy are CNHW or NCHW pointers to match. */

static const float one = 1.0f, zero = 0.0f;

static cudnnTensorDescriptor_t x_desc(const conv_plan *plan, const algorithm_choice *choice) {
    return choice->packed ? plan->x_packed : plan->x_strided;
}
static cudnnTensorDescriptor_t y_desc(const conv_plan *plan, const algorithm_choice *choice) {
    return choice->packed ? plan->y_packed : plan->y_strided;
}

static cudnnStatus_t run_forward(conv_plan *plan, const algorithm_choice *choice, const float *x,
                                 const float *weight, float *y) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionForward(dnn, &one, x_desc(plan, choice), x, plan->filter, weight,
                                   plan->conv, (cudnnConvolutionFwdAlgo_t)choice->algo,
                                   workspace_of(choice), choice->workspace_bytes, &zero,
                                   y_desc(plan, choice), y);
}

static cudnnStatus_t run_backward_data(conv_plan *plan, const algorithm_choice *choice, float *dx,
                                       const float *weight, const float *dy, const float *beta) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionBackwardData(dnn, &one, plan->filter, weight, y_desc(plan, choice), dy,
                                        plan->conv, (cudnnConvolutionBwdDataAlgo_t)choice->algo,
                                        workspace_of(choice), choice->workspace_bytes, beta,
                                        x_desc(plan, choice), dx);
}

/* Always accumulates into dweight (OIHW is the same in both layouts). */
static cudnnStatus_t run_backward_filter(conv_plan *plan, const algorithm_choice *choice,
                                         float *dweight, const float *x, const float *dy) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, choice->math));
    return cudnnConvolutionBackwardFilter(
        dnn, &one, x_desc(plan, choice), x, y_desc(plan, choice), dy, plan->conv,
        (cudnnConvolutionBwdFilterAlgo_t)choice->algo, workspace_of(choice),
        choice->workspace_bytes, &one, plan->filter, dweight);
}

/* The NCHW copy of a CNHW tensor, made at most once per op call: *copy remembers it. */
static const float *nchw_copy(const float **copy, cuda_scratch_slot slot, const float *cnhw,
                              int channels, int batch, size_t area) {
    if (*copy) return *copy;
    float *nchw = (float *)cuda_scratch(slot, (size_t)channels * (size_t)batch * area *
                                                  sizeof(float));
    cuda_swap_outer_dims(nchw, cnhw, channels, batch, area, 0);
    *copy = nchw;
    return nchw;
}

static float *nchw_buffer(cuda_scratch_slot slot, int channels, int batch, size_t area) {
    return (float *)cuda_scratch(slot, (size_t)channels * (size_t)batch * area * sizeof(float));
}

extern "C" void cuda_conv2d_forward(float *y, const float *x, const float *weight,
                                    const float *bias, float *workspace, int batch, int height,
                                    int width, int in_channels, int out_channels, int kernel) {
    (void)workspace;
    check_dims("cuda_conv2d_forward", batch, height, width, in_channels, out_channels, kernel);
    conv_plan *plan = plan_for(batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width;
    const float *x_nchw = NULL;
    execute(plan, FORWARD, [&](const algorithm_choice *choice) {
        if (!choice->packed) return run_forward(plan, choice, x, weight, y);
        nchw_copy(&x_nchw, CUDA_SCRATCH_NCHW_INPUT, x, in_channels, batch, area);
        float *y_nchw = nchw_buffer(CUDA_SCRATCH_NCHW_OUTPUT, out_channels, batch, area);
        const cudnnStatus_t status = run_forward(plan, choice, x_nchw, weight, y_nchw);
        if (status == CUDNN_STATUS_SUCCESS)
            cuda_swap_outer_dims(y, y_nchw, batch, out_channels, area, 0);
        return status;
    });
    if (bias) cuda_add_channel_bias(y, bias, out_channels, (size_t)batch * area);
}

extern "C" void cuda_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                                     const float *x, const float *weight, float *workspace,
                                     int batch, int height, int width, int in_channels,
                                     int out_channels, int kernel) {
    (void)workspace;
    check_dims("cuda_conv2d_backward", batch, height, width, in_channels, out_channels, kernel);
    const size_t area = (size_t)height * (size_t)width;
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_channels, (size_t)batch * area);
    if (!dweight && !dx) return;
    conv_plan *plan = plan_for(batch, height, width, in_channels, out_channels, kernel);
    const float *x_nchw = NULL, *dy_nchw = NULL;

    if (dweight)
        execute(plan, BACKWARD_FILTER, [&](const algorithm_choice *choice) {
            if (!choice->packed) return run_backward_filter(plan, choice, dweight, x, dy);
            nchw_copy(&x_nchw, CUDA_SCRATCH_NCHW_INPUT, x, in_channels, batch, area);
            nchw_copy(&dy_nchw, CUDA_SCRATCH_NCHW_OUTPUT, dy, out_channels, batch, area);
            return run_backward_filter(plan, choice, dweight, x_nchw, dy_nchw);
        });
    if (dx)
        execute(plan, BACKWARD_DATA, [&](const algorithm_choice *choice) {
            if (!choice->packed) return run_backward_data(plan, choice, dx, weight, dy, &one);
            nchw_copy(&dy_nchw, CUDA_SCRATCH_NCHW_OUTPUT, dy, out_channels, batch, area);
            float *dx_nchw = nchw_buffer(CUDA_SCRATCH_NCHW_GRADIENT, in_channels, batch, area);
            const cudnnStatus_t status = run_backward_data(plan, choice, dx_nchw, weight,
                                                           dy_nchw, &zero);
            if (status == CUDNN_STATUS_SUCCESS)
                cuda_swap_outer_dims(dx, dx_nchw, batch, in_channels, area, 1);
            return status;
        });
}
