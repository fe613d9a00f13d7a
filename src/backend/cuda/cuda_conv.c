/* The convolution entries of the CUDA backend table: dimension checks and the choice of
 * what runs each convolution.
 *
 *  1x1:   always one GEMM over the CNHW tensors (cuda_dense.cu): y[O][NHW] = W[O][I] x[I][NHW].
 *  k x k: cuDNN (cuda_dnn.cu) or im2col + GEMM (cuda_conv_gemm.cu), as
 *         cuda_backend_set_conv_engine says.
 * CUDA_CONV_AUTO times the candidates the first time a shape runs (forward, backward data
 * and backward filter separately, as cudnnFind times algorithms) and keeps the fastest:
 * which one wins depends on the shape, the direction, the precision and the GPU (im2col +
 * GEMM suits a filter gradient's long reduction over N*H*W, where cuDNN's implicit GEMM
 * suits the data gradient, which im2col would inflate k*k times). When the two gradients
 * of a shape go to the same runner they are one call (cuDNN's and the 1x1 GEMM's share
 * their copies of dy; the k x k GEMM copies dy once per gradient, in bf16 and im2col). In
 * bf16 mode the candidates include the same engines in TF32 (never less precise than bf16
 * operands): on an H200 cuDNN's bf16 backward kernels took up to 20 ms for a 5x5 layer
 * that its TF32 ones ran in well under one (held to FMA math then, see strict_fp32 in
 * cuda_dnn.cu), and the bf16 GEMMs pay for bf16 copies of their operands. In
 * deterministic mode, and while a CUDA graph is being captured (no timing possible), auto
 * takes the GEMMs in the mode set (deterministic by construction) without timing.
 * BNECK_CONV_LOG=1 prints each timed choice with every candidate's time. */
#include <cuda_runtime_api.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"

static void check_dims(const char *op, int batch, int height, int width, int in_channels,
                       int out_channels, int kernel) {
    if (batch < 1 || height < 1 || width < 1 || in_channels < 1 || out_channels < 1 ||
        kernel < 1 || kernel % 2 == 0)
        CUDA_FAIL("%s: bad dimensions batch=%d height=%d width=%d in=%d out=%d kernel=%d", op,
                  batch, height, width, in_channels, out_channels, kernel);
    /* cuBLAS and cuDNN take int sizes: the largest matrix is an im2col of
     * max(in, out) * k * k rows of batch * height * width columns */
    const int channels = in_channels > out_channels ? in_channels : out_channels;
    if ((size_t)batch * height * width * channels * kernel * kernel > (size_t)INT_MAX)
        CUDA_FAIL("%s: batch %d of %dx%d with %d channels and kernel %d is too large for int "
                  "sizes", op, batch, height, width, channels, kernel);
}

/* --- the automatic choice ------------------------------------------------------------------ */

typedef struct engine_key {
    int batch, height, width, in_channels, out_channels, kernel, math_mode, deterministic;
    int conv_transpose; /* cuDNN's layout in strict fp32: its times depend on it */
} engine_key;

/* What runs a direction of a convolution: cuDNN or a GEMM (im2col + GEMM for k x k, one
 * GEMM for 1x1) in the math mode set, or, in bf16 mode, the same in TF32. */
typedef enum {
    RUN_CUDNN = 0,
    RUN_GEMM = 1,
    RUN_CUDNN_TF32 = 2,
    RUN_GEMM_TF32 = 3,
    RUN_KINDS = 4
} conv_runner;

/* Decided separately, like cudnnFind's three searches: the fastest runner of a shape's
 * data gradient need not be the fastest of its filter gradient. */
typedef enum {
    CONV_FORWARD = 0,
    CONV_BACKWARD_DATA = 1,
    CONV_BACKWARD_FILTER = 2,
    CONV_DIRECTIONS = 3
} conv_direction;
static const char *const direction_names[CONV_DIRECTIONS] = {"forward", "backward data",
                                                             "backward filter"};

typedef struct engine_choice {
    engine_key key;
    int decided[CONV_DIRECTIONS];
    conv_runner runner[CONV_DIRECTIONS]; /* the fastest, once decided */
} engine_choice;

static engine_choice *choices;
static int choice_count, choice_capacity;
/* [direction][runner]: shapes decided, for the summary */
static int engine_uses[CONV_DIRECTIONS][RUN_KINDS];

static engine_choice *choice_for(int batch, int height, int width, int in_channels,
                                 int out_channels, int kernel) {
    /* ints only, no padding: memcmp compares keys */
    const engine_key key = {batch, height, width, in_channels, out_channels, kernel,
                            cuda_ctx.math_mode, cuda_ctx.deterministic, cuda_ctx.conv_transpose};
    for (int i = 0; i < choice_count; i++)
        if (!memcmp(&choices[i].key, &key, sizeof key)) return &choices[i];
    if (choice_count == choice_capacity) {
        const int capacity = choice_capacity ? 2 * choice_capacity : 64;
        engine_choice *grown = realloc(choices, (size_t)capacity * sizeof *grown);
        if (!grown) CUDA_FAIL("out of memory for %d convolution engine choices", capacity);
        choices = grown;
        choice_capacity = capacity;
    }
    engine_choice *choice = &choices[choice_count++];
    memset(choice, 0, sizeof *choice);
    choice->key = key;
    return choice;
}

/* The runners auto chooses between for a kernel size in the current math mode; the
 * first is the one taken untimed. 1x1 convolutions are always GEMMs; in bf16 mode their
 * bf16 operands are copies (a pass over x, or over dy, per call), so the same GEMM
 * straight on the fp32 tensors in TF32 may well be faster for the small ones. */
static int candidate_runners(int kernel, conv_runner runners[RUN_KINDS]) {
    const int bf16 = cuda_ctx.math_mode == CUDA_MATH_BF16;
    int count = 0;
    runners[count++] = RUN_GEMM;
    if (bf16) runners[count++] = RUN_GEMM_TF32;
    if (kernel > 1) {
        runners[count++] = RUN_CUDNN;
        if (bf16) runners[count++] = RUN_CUDNN_TF32;
    }
    return count;
}

typedef void (*conv_runner_call)(conv_runner runner, void *context);

/* Milliseconds of one call of run(runner, context) on the GPU: the median of `repeats`
 * calls, each between two events, after one untimed call that lets cuDNN find its
 * algorithms and the scratch buffers grow. The timed calls wait in the queue behind a busy
 * wait that outlasts their queueing, so that the events time the GPU alone: a step replays
 * as a CUDA graph, without the host's launch costs, and timed as they were queued, the
 * cuDNN runners (more host work per call: descriptors, math types, layout copies) would
 * lose shapes they run faster. */
static float time_engine(conv_runner_call run, conv_runner runner, void *context) {
    enum { repeats = 5, head_start_us = 2000 };
    const cudaStream_t stream = (cudaStream_t)cuda_ctx.stream;
    run(runner, context);
    cudaEvent_t events[repeats + 1];
    for (int i = 0; i <= repeats; i++) CUDA_CHECK(cudaEventCreate(&events[i]));
    cuda_busy_wait(head_start_us);
    CUDA_CHECK(cudaEventRecord(events[0], stream));
    for (int i = 0; i < repeats; i++) {
        run(runner, context);
        CUDA_CHECK(cudaEventRecord(events[i + 1], stream));
    }
    CUDA_CHECK(cudaEventSynchronize(events[repeats]));
    float ms[repeats];
    for (int i = 0; i < repeats; i++) {
        CUDA_CHECK(cudaEventElapsedTime(&ms[i], events[i], events[i + 1]));
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) { /* insertion sort */
            const float t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    }
    for (int i = 0; i <= repeats; i++) CUDA_CHECK(cudaEventDestroy(events[i]));
    return ms[repeats / 2];
}

static int capturing(void) {
    enum cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing((cudaStream_t)cuda_ctx.stream, &status));
    return status != cudaStreamCaptureStatusNone;
}

static void decide(engine_choice *choice, conv_direction direction, conv_runner runner) {
    choice->runner[direction] = runner;
    choice->decided[direction] = 1;
    engine_uses[direction][runner]++;
}

/* Whether `direction` of this shape still has to be timed: only in auto mode, the first
 * time, with more than one candidate, and not in deterministic mode or during a capture,
 * which take the first candidate (the GEMM) untimed (decided here, for good: a shape
 * first met inside a capture, which step_graph's warm-up step rules out, would keep the
 * GEMM, and fail in cuda_scratch if that needed more scratch than was allocated). */
static int must_time(engine_choice *choice, conv_direction direction) {
    if (cuda_ctx.conv_engine != CUDA_CONV_AUTO || choice->decided[direction]) return 0;
    conv_runner runners[RUN_KINDS];
    const int count = candidate_runners(choice->key.kernel, runners);
    if (count == 1 || cuda_ctx.deterministic || capturing()) {
        decide(choice, direction, runners[0]);
        return 0;
    }
    return 1;
}

static const char *const runner_names[RUN_KINDS] = {"cuDNN", "GEMM", "cuDNN in TF32",
                                                     "GEMM in TF32"};

/* BNECK_CONV_LOG=1 in the environment prints every timed choice with each candidate's
 * time (to see on a new GPU which runner wins where, and by how much). */
static void log_timing(const engine_choice *choice, conv_direction direction,
                       const conv_runner *runners, const float *ms, int count) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *value = getenv("BNECK_CONV_LOG");
        enabled = value && strcmp(value, "0") != 0;
    }
    if (!enabled) return;
    const engine_key *k = &choice->key;
    char times[160] = "";
    size_t used = 0;
    for (int i = 0; i < count && used < sizeof times; i++)
        used += (size_t)snprintf(times + used, sizeof times - used, "%s%s %.3f ms",
                                 i ? ", " : "", runner_names[runners[i]], (double)ms[i]);
    fprintf(stderr,
            "bneck: conv auto, %s, batch %d, %dx%d, %d -> %d, kernel %d, %s: %s -> %s\n",
            direction_names[direction], k->batch, k->height, k->width, k->in_channels,
            k->out_channels, k->kernel, cuda_backend_math_name(), times,
            runner_names[choice->runner[direction]]);
}

static void decide_by_timing(engine_choice *choice, conv_direction direction,
                             conv_runner_call run, void *context) {
    conv_runner runners[RUN_KINDS];
    float ms[RUN_KINDS];
    const int count = candidate_runners(choice->key.kernel, runners);
    int best = 0;
    for (int i = 0; i < count; i++) {
        ms[i] = time_engine(run, runners[i], context);
        if (ms[i] < ms[best]) best = i;
    }
    decide(choice, direction, runners[best]);
    log_timing(choice, direction, runners, ms, count);
}

/* What runs `direction` of this shape (decided by now in auto mode). */
static conv_runner runner_of(const engine_choice *choice, conv_direction direction) {
    if (choice->key.kernel == 1 && cuda_ctx.conv_engine != CUDA_CONV_AUTO) return RUN_GEMM;
    switch (cuda_ctx.conv_engine) {
    case CUDA_CONV_CUDNN: return RUN_CUDNN;
    case CUDA_CONV_GEMM: return RUN_GEMM;
    default: return choice->runner[direction];
    }
}

void cuda_conv_engine_summary(char *text, size_t capacity) {
    const int(*u)[RUN_KINDS] = engine_uses;
    snprintf(text, capacity,
             "convolution shapes on cuDNN / GEMM / cuDNN in TF32 / GEMM in TF32: "
             "forward %d / %d / %d / %d, backward data %d / %d / %d / %d, "
             "backward filter %d / %d / %d / %d",
             u[0][RUN_CUDNN], u[0][RUN_GEMM], u[0][RUN_CUDNN_TF32], u[0][RUN_GEMM_TF32],
             u[1][RUN_CUDNN], u[1][RUN_GEMM], u[1][RUN_CUDNN_TF32], u[1][RUN_GEMM_TF32],
             u[2][RUN_CUDNN], u[2][RUN_GEMM], u[2][RUN_CUDNN_TF32], u[2][RUN_GEMM_TF32]);
}

void cuda_conv_engine_forget(void) {
    free(choices);
    choices = NULL;
    choice_count = choice_capacity = 0;
    memset(engine_uses, 0, sizeof engine_uses);
}

/* Runs one call in TF32 for the *_TF32 runners of a bf16 run: returns the mode to restore
 * (cuda_dnn keeps a plan per math mode; cuBLAS takes its math from the context). */
static int enter_runner_math(conv_runner runner) {
    const int mode = cuda_ctx.math_mode;
    if (runner == RUN_CUDNN_TF32 || runner == RUN_GEMM_TF32) {
        cuda_ctx.math_mode = CUDA_MATH_TF32;
        cuda_blas_apply_math();
    }
    return mode;
}

static void leave_runner_math(int mode) {
    if (cuda_ctx.math_mode == mode) return;
    cuda_ctx.math_mode = mode;
    cuda_blas_apply_math();
}

/* The probes: forward overwrites y, so the real call after the timing fixes it; backward
 * probes write into throw-away buffers, since backward accumulates. A backward call
 * computes whichever of dx and dweight is non-NULL. */
typedef struct conv_call {
    float *y, *dx, *dweight;
    const float *x, *weight, *bias, *dy;
    int batch, height, width, in_channels, out_channels, kernel;
} conv_call;

static void run_forward(conv_runner runner, void *context) {
    const conv_call *c = context;
    const int mode = enter_runner_math(runner);
    if (c->kernel == 1)
        cuda_dense_forward(c->y, c->x, c->weight, c->bias, c->batch * c->height * c->width,
                           c->in_channels, c->out_channels);
    else if (runner == RUN_GEMM || runner == RUN_GEMM_TF32)
        cuda_conv_gemm_forward(c->y, c->x, c->weight, c->bias, c->batch, c->height, c->width,
                               c->in_channels, c->out_channels, c->kernel);
    else
        cuda_dnn_conv2d_forward(c->y, c->x, c->weight, c->bias, c->batch, c->height, c->width,
                                c->in_channels, c->out_channels, c->kernel);
    leave_runner_math(mode);
}

static void run_backward(conv_runner runner, void *context) {
    const conv_call *c = context;
    const int mode = enter_runner_math(runner);
    if (c->kernel == 1)
        cuda_dense_backward(c->dx, c->dweight, NULL, c->dy, c->x, c->weight,
                            c->batch * c->height * c->width, c->in_channels, c->out_channels);
    else if (runner == RUN_GEMM || runner == RUN_GEMM_TF32)
        cuda_conv_gemm_backward(c->dx, c->dweight, NULL, c->dy, c->x, c->weight, c->batch,
                                c->height, c->width, c->in_channels, c->out_channels, c->kernel);
    else
        cuda_dnn_conv2d_backward(c->dx, c->dweight, NULL, c->dy, c->x, c->weight, c->batch,
                                 c->height, c->width, c->in_channels, c->out_channels,
                                 c->kernel);
    leave_runner_math(mode);
}

/* The backend owns its workspaces (see cuda_backend.h): callers need none. */
size_t cuda_conv2d_workspace_floats(int batch, int height, int width, int in_channels,
                                    int kernel) {
    (void)batch, (void)height, (void)width, (void)in_channels, (void)kernel;
    return 0;
}

void cuda_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                         float *workspace, int batch, int height, int width, int in_channels,
                         int out_channels, int kernel) {
    (void)workspace;
    check_dims("cuda_conv2d_forward", batch, height, width, in_channels, out_channels, kernel);
    conv_call call = {.y = y, .x = x, .weight = weight, .bias = bias, .batch = batch,
                      .height = height, .width = width, .in_channels = in_channels,
                      .out_channels = out_channels, .kernel = kernel};
    engine_choice *choice = choice_for(batch, height, width, in_channels, out_channels, kernel);
    if (must_time(choice, CONV_FORWARD)) decide_by_timing(choice, CONV_FORWARD, run_forward, &call);
    run_forward(runner_of(choice, CONV_FORWARD), &call);
}

/* Times one backward direction alone, into a throw-away output of `floats` values. */
static void time_backward(engine_choice *choice, conv_direction direction, conv_call probe,
                          size_t floats) {
    float *scratch = cuda_alloc(floats * sizeof(float));
    if (direction == CONV_BACKWARD_DATA) probe.dx = scratch, probe.dweight = NULL;
    else probe.dweight = scratch, probe.dx = NULL;
    decide_by_timing(choice, direction, run_backward, &probe);
    cuda_release(scratch);
}

void cuda_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *weight, float *workspace, int batch,
                          int height, int width, int in_channels, int out_channels, int kernel) {
    (void)workspace;
    check_dims("cuda_conv2d_backward", batch, height, width, in_channels, out_channels, kernel);
    engine_choice *choice = choice_for(batch, height, width, in_channels, out_channels, kernel);
    conv_call call = {.dx = dx, .dweight = dweight, .x = x, .weight = weight, .dy = dy,
                      .batch = batch, .height = height, .width = width,
                      .in_channels = in_channels, .out_channels = out_channels,
                      .kernel = kernel};
    if (dx && must_time(choice, CONV_BACKWARD_DATA))
        time_backward(choice, CONV_BACKWARD_DATA, call,
                      (size_t)in_channels * batch * height * width);
    if (dweight && must_time(choice, CONV_BACKWARD_FILTER))
        time_backward(choice, CONV_BACKWARD_FILTER, call,
                      (size_t)out_channels * in_channels * kernel * kernel);
    if (dbias) cuda_accumulate_channel_sums(dbias, dy, out_channels, (size_t)batch * height * width);
    const conv_runner data = runner_of(choice, CONV_BACKWARD_DATA);
    const conv_runner filter = runner_of(choice, CONV_BACKWARD_FILTER);
    if (!dx || !dweight || data == filter) {
        /* one call: cuDNN and the 1x1 GEMM share their copies of dy between the two */
        run_backward(dx ? data : filter, &call);
        return;
    }
    conv_call data_only = call, filter_only = call;
    data_only.dweight = NULL;
    filter_only.dx = NULL;
    run_backward(filter, &filter_only);
    run_backward(data, &data_only);
}
