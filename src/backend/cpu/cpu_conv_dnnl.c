/* Stride-1 "same" convolution through oneDNN's convolution primitives (BNECK_GEMM_DNNL
 * builds; cpu_conv.c decides which layers and directions come here).
 *
 * oneDNN's fast direct kernels want blocked layouts (nChw16c activations, OIhw16i16o-like
 * weights on AVX-512); ours are CNHW and OIHW. So each primitive is created with format
 * "any" and every operand is reordered between our layout and the primitive's choice
 * around the call: one pass over each tensor instead of im2col's k*k-times-larger matrix.
 *
 * oneDNN overwrites its outputs while our weight gradients, and the input gradient when
 * asked to (GRAD_ACCUMULATE), accumulate: those are computed into a buffer and added into
 * the caller's tensors by the reorder back to our layout (a reorder with a "sum" post-op),
 * which costs no extra pass; the bias gradient, already in our layout, by a loop.
 *
 * Everything a (direction, shape) needs (primitive, reorders, memory objects) is created
 * on its first call and kept in a small table, so steady-state calls create nothing; the
 * tensors in the primitives' layouts live in a few grow-only buffers shared by all shapes.
 * The table and buffers are per thread, like the rest of the backend's scratch. */
#include "backend/cpu/cpu_conv_dnnl.h"

#if defined(BNECK_GEMM_DNNL)

#include "backend/cpu/cpu_layout.h"
#include "core/error.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DNNL_CHECK(call)                                                                       \
    do {                                                                                       \
        const dnnl_status_t dnnl_check_status = (call);                                        \
        if (dnnl_check_status != dnnl_success)                                                 \
            BNECK_FAIL("%s: %s", #call, dnnl_status2str(dnnl_check_status));                   \
    } while (0)

typedef enum { CONV_FORWARD, CONV_BACKWARD_DATA, CONV_BACKWARD_WEIGHTS } conv_direction;

typedef struct conv_shape {
    conv_direction direction;
    int batch, height, width, in_channels, out_channels, kernel;
    int with_bias;     /* forward: adds a bias; backward weights: also produces diff_bias */
    int accumulate_dx; /* backward data: adds diff_src into the caller's dx (0 elsewhere) */
    int threads;       /* oneDNN splits a primitive's work for the thread count at creation */
} conv_shape;

/* The shared buffers for tensors in a primitive's layout. Operands that are alive at the
 * same time use different slots: forward src/weights/dst; backward weights (run first)
 * src/diff_dst/diff_weights/diff_bias; then backward data diff_dst/weights/diff_src. */
typedef enum {
    SLOT_ACTIVATION_IN,  /* src, then diff_src */
    SLOT_WEIGHTS,        /* weights or diff_weights */
    SLOT_ACTIVATION_OUT, /* dst or diff_dst */
    SLOT_BIAS,           /* diff_bias */
    SLOT_SCRATCHPAD,     /* the primitives' own scratch (user-managed scratchpad) */
    SLOT_COUNT
} buffer_slot;

typedef struct shared_buffer {
    void *data;
    size_t bytes;
    /* The caller tensor and layout an input reorder last wrote here, valid only within one
     * public call: backward data reuses backward weights' reordered diff_dst this way. */
    const void *holds_source;
    dnnl_memory_desc_t holds_layout;
} shared_buffer;

/* One tensor argument of a convolution. */
typedef struct conv_operand {
    int arg;                  /* DNNL_ARG_* */
    int is_output;
    buffer_slot slot;
    dnnl_memory_t caller;     /* the caller's tensor, in our layout */
    dnnl_memory_t inner;      /* in the primitive's layout, in a shared buffer; NULL: none */
    dnnl_primitive_t reorder; /* caller -> inner (inputs), inner -> caller (outputs, adding
                                 into it when the op accumulates); NULL: copied by
                                 cpu_layout (channel_block) or added by a loop (see
                                 convert_operand) */
    int channel_block;        /* an activation in a layout cpu_layout copies: its block
                                 (16, 8 or 1); 0: not one */
    int accumulate;           /* outputs: added into the caller's tensor */
    dnnl_memory_desc_t inner_layout;
    size_t inner_bytes;
} conv_operand;

#define MAX_OPERANDS 4
typedef struct conv_entry {
    conv_shape shape;
    unsigned long last_used; /* 0: free */
    dnnl_primitive_desc_t forward_hint; /* backward only; kept while its primitive lives */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t conv;
    dnnl_memory_t scratchpad;
    size_t scratchpad_bytes;
    int operand_count;
    conv_operand operands[MAX_OPERANDS];
} conv_entry;

/* Enough for every conv layer of a model in all three directions, plus test shapes. */
#define CACHE_ENTRIES 96

typedef struct conv_context {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    unsigned long clock;
    conv_entry entries[CACHE_ENTRIES];
    shared_buffer buffers[SLOT_COUNT];
} conv_context;

static _Thread_local conv_context *thread_context;

static conv_context *context(void) {
    if (!thread_context) {
        thread_context = bneck_calloc(1, sizeof *thread_context);
        DNNL_CHECK(dnnl_engine_create(&thread_context->engine, dnnl_cpu, 0));
        DNNL_CHECK(dnnl_stream_create(&thread_context->stream, thread_context->engine,
                                      dnnl_stream_default_flags));
    }
    return thread_context;
}

/* ---- memory descriptors ------------------------------------------------------------------ */

/* CNHW as oneDNN sees it: logical dims {N, C, H, W} with channel stride N*H*W. */
static dnnl_memory_desc_t activation_layout(const conv_shape *s, int channels) {
    const dnnl_dim_t area = (dnnl_dim_t)s->height * s->width;
    const dnnl_dims_t dims = {s->batch, channels, s->height, s->width};
    const dnnl_dims_t strides = {area, (dnnl_dim_t)s->batch * area, s->width, 1};
    dnnl_memory_desc_t md;
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&md, 4, dims, dnnl_f32, strides));
    return md;
}

static dnnl_memory_desc_t weights_layout(const conv_shape *s) {
    const dnnl_dims_t dims = {s->out_channels, s->in_channels, s->kernel, s->kernel};
    dnnl_memory_desc_t md;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_oihw));
    return md;
}

static dnnl_memory_desc_t bias_layout(const conv_shape *s) {
    const dnnl_dims_t dims = {s->out_channels};
    dnnl_memory_desc_t md;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
    return md;
}

/* The same dims as `layout`, format left to the primitive. */
static dnnl_memory_desc_t any_layout(const dnnl_memory_desc_t *layout) {
    dnnl_memory_desc_t md;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, layout->ndims, layout->dims, dnnl_f32,
                                            dnnl_format_tag_any));
    return md;
}

/* ---- primitive creation ------------------------------------------------------------------ */

static dnnl_primitive_desc_t create_forward_pd(conv_context *ctx, const conv_shape *s,
                                               const_dnnl_primitive_attr_t attr) {
    const dnnl_memory_desc_t x = activation_layout(s, s->in_channels);
    const dnnl_memory_desc_t y = activation_layout(s, s->out_channels);
    const dnnl_memory_desc_t w = weights_layout(s), b = bias_layout(s);
    const dnnl_memory_desc_t x_any = any_layout(&x), y_any = any_layout(&y), w_any = any_layout(&w);
    const dnnl_dims_t strides = {1, 1}, padding = {s->kernel / 2, s->kernel / 2};
    dnnl_convolution_desc_t desc;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training,
                                                  dnnl_convolution_direct, &x_any, &w_any,
                                                  s->with_bias ? &b : NULL, &y_any, strides,
                                                  padding, padding));
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, ctx->engine, NULL));
    return pd;
}

/* The channel block of `inner` when it is one of the blocked layouts cpu_layout copies an
 * activation in `caller` to and from (the same dims, channels padded to the block), else 0.
 * Our copies, not oneDNN's reorders, for those: oneDNN's reorder from a channel-padded
 * block back to CNHW took 4.9 ms for a 32x32x24 batch whose copy needs 0.5. */
static int activation_channel_block(const dnnl_memory_desc_t *caller,
                                    const dnnl_memory_desc_t *inner) {
    if (caller->ndims != 4) return 0;
    const struct {
        int block;
        dnnl_format_tag_t tag;
    } layouts[] = {{16, dnnl_aBcd16b}, {8, dnnl_aBcd8b}, {1, dnnl_abcd}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        dnnl_memory_desc_t md;
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 4, caller->dims, dnnl_f32, layouts[i].tag));
        if (dnnl_memory_desc_equal(&md, inner)) return layouts[i].block;
    }
    return 0;
}

static int is_activation(int arg) {
    return arg == DNNL_ARG_SRC || arg == DNNL_ARG_DST || arg == DNNL_ARG_DIFF_SRC ||
           arg == DNNL_ARG_DIFF_DST;
}

/* Sets up one argument of e's primitive: the caller's tensor in `caller_layout`, and when
 * the primitive wants another layout (or the op accumulates), a tensor in its layout plus
 * the reorder between the two. */
static void operand_init(conv_context *ctx, conv_entry *e, int arg, int is_output,
                         int accumulate, buffer_slot slot,
                         const dnnl_memory_desc_t *caller_layout) {
    if (e->operand_count == MAX_OPERANDS) BNECK_FAIL("cpu_conv_dnnl: too many operands");
    conv_operand *op = &e->operands[e->operand_count++];
    op->arg = arg;
    op->is_output = is_output;
    op->accumulate = accumulate;
    op->slot = slot;
    const dnnl_memory_desc_t *inner =
        dnnl_primitive_desc_query_md(e->pd, dnnl_query_exec_arg_md, arg);
    if (!inner || inner->ndims == 0)
        BNECK_FAIL("cpu_conv_dnnl: the primitive has no memory descriptor for argument %d", arg);
    DNNL_CHECK(dnnl_memory_create(&op->caller, caller_layout, ctx->engine, DNNL_MEMORY_NONE));
    if (!accumulate && dnnl_memory_desc_equal(caller_layout, inner)) return;

    op->inner_layout = *inner;
    op->inner_bytes = dnnl_memory_desc_get_size(inner);
    DNNL_CHECK(dnnl_memory_create(&op->inner, inner, ctx->engine, DNNL_MEMORY_NONE));
    /* same layout (the bias gradient): a plain loop adds it, no reorder needed */
    if (dnnl_memory_desc_equal(caller_layout, inner)) return;
    if (is_activation(arg)) op->channel_block = activation_channel_block(caller_layout, inner);
    if (op->channel_block) return;
    dnnl_primitive_attr_t attr = NULL;
    if (accumulate) { /* caller += inner: the reorder's sum post-op */
        dnnl_post_ops_t post_ops;
        DNNL_CHECK(dnnl_post_ops_create(&post_ops));
        DNNL_CHECK(dnnl_post_ops_append_sum(post_ops, 1.0f));
        DNNL_CHECK(dnnl_primitive_attr_create(&attr));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, post_ops));
        DNNL_CHECK(dnnl_post_ops_destroy(post_ops));
    }
    const dnnl_memory_desc_t *from = is_output ? inner : caller_layout;
    const dnnl_memory_desc_t *to = is_output ? caller_layout : inner;
    dnnl_primitive_desc_t reorder_pd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&reorder_pd, from, ctx->engine, to, ctx->engine,
                                                  attr));
    DNNL_CHECK(dnnl_primitive_create(&op->reorder, reorder_pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(reorder_pd));
    if (attr) DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
}

static void entry_create(conv_context *ctx, conv_entry *e, const conv_shape *s) {
    memset(e, 0, sizeof *e);
    e->shape = *s;
    const dnnl_memory_desc_t x = activation_layout(s, s->in_channels);
    const dnnl_memory_desc_t y = activation_layout(s, s->out_channels);
    const dnnl_memory_desc_t w = weights_layout(s), b = bias_layout(s);
    /* user scratchpad: one shared buffer instead of one per primitive */
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    const dnnl_dims_t strides = {1, 1}, padding = {s->kernel / 2, s->kernel / 2};
    const dnnl_memory_desc_t x_any = any_layout(&x), y_any = any_layout(&y), w_any = any_layout(&w);
    dnnl_convolution_desc_t desc;
    switch (s->direction) {
    case CONV_FORWARD:
        e->pd = create_forward_pd(ctx, s, attr);
        DNNL_CHECK(dnnl_primitive_create(&e->conv, e->pd));
        operand_init(ctx, e, DNNL_ARG_SRC, 0, 0, SLOT_ACTIVATION_IN, &x);
        operand_init(ctx, e, DNNL_ARG_WEIGHTS, 0, 0, SLOT_WEIGHTS, &w);
        if (s->with_bias) operand_init(ctx, e, DNNL_ARG_BIAS, 0, 0, SLOT_BIAS, &b);
        operand_init(ctx, e, DNNL_ARG_DST, 1, 0, SLOT_ACTIVATION_OUT, &y);
        break;
    case CONV_BACKWARD_DATA:
        e->forward_hint = create_forward_pd(ctx, s, NULL);
        DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &x_any,
                                                            &w_any, &y_any, strides, padding,
                                                            padding));
        DNNL_CHECK(dnnl_primitive_desc_create(&e->pd, &desc, attr, ctx->engine, e->forward_hint));
        DNNL_CHECK(dnnl_primitive_create(&e->conv, e->pd));
        operand_init(ctx, e, DNNL_ARG_DIFF_DST, 0, 0, SLOT_ACTIVATION_OUT, &y);
        operand_init(ctx, e, DNNL_ARG_WEIGHTS, 0, 0, SLOT_WEIGHTS, &w);
        operand_init(ctx, e, DNNL_ARG_DIFF_SRC, 1, s->accumulate_dx, SLOT_ACTIVATION_IN, &x);
        break;
    case CONV_BACKWARD_WEIGHTS:
        e->forward_hint = create_forward_pd(ctx, s, NULL);
        DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(
            &desc, dnnl_convolution_direct, &x_any, &w_any, s->with_bias ? &b : NULL, &y_any,
            strides, padding, padding));
        DNNL_CHECK(dnnl_primitive_desc_create(&e->pd, &desc, attr, ctx->engine, e->forward_hint));
        DNNL_CHECK(dnnl_primitive_create(&e->conv, e->pd));
        operand_init(ctx, e, DNNL_ARG_SRC, 0, 0, SLOT_ACTIVATION_IN, &x);
        operand_init(ctx, e, DNNL_ARG_DIFF_DST, 0, 0, SLOT_ACTIVATION_OUT, &y);
        operand_init(ctx, e, DNNL_ARG_DIFF_WEIGHTS, 1, 1, SLOT_WEIGHTS, &w);
        if (s->with_bias) operand_init(ctx, e, DNNL_ARG_DIFF_BIAS, 1, 1, SLOT_BIAS, &b);
        break;
    }
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));

    const dnnl_memory_desc_t *scratchpad =
        dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0);
    e->scratchpad_bytes = scratchpad ? dnnl_memory_desc_get_size(scratchpad) : 0;
    if (e->scratchpad_bytes)
        DNNL_CHECK(dnnl_memory_create(&e->scratchpad, scratchpad, ctx->engine, DNNL_MEMORY_NONE));
}

static void entry_destroy(conv_entry *e) {
    for (int i = 0; i < e->operand_count; i++) {
        conv_operand *op = &e->operands[i];
        if (op->reorder) DNNL_CHECK(dnnl_primitive_destroy(op->reorder));
        if (op->inner) DNNL_CHECK(dnnl_memory_destroy(op->inner));
        DNNL_CHECK(dnnl_memory_destroy(op->caller));
    }
    if (e->scratchpad) DNNL_CHECK(dnnl_memory_destroy(e->scratchpad));
    DNNL_CHECK(dnnl_primitive_destroy(e->conv));
    DNNL_CHECK(dnnl_primitive_desc_destroy(e->pd));
    if (e->forward_hint) DNNL_CHECK(dnnl_primitive_desc_destroy(e->forward_hint));
    memset(e, 0, sizeof *e);
}

static int same_shape(const conv_shape *a, const conv_shape *b) {
    return a->direction == b->direction && a->batch == b->batch && a->height == b->height &&
           a->width == b->width && a->in_channels == b->in_channels &&
           a->out_channels == b->out_channels && a->kernel == b->kernel &&
           a->with_bias == b->with_bias && a->accumulate_dx == b->accumulate_dx &&
           a->threads == b->threads;
}

/* The cached entry for s, created on a miss in place of the least recently used one. */
static conv_entry *entry_for(conv_context *ctx, const conv_shape *s) {
    conv_entry *victim = &ctx->entries[0];
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        conv_entry *e = &ctx->entries[i];
        if (e->last_used && same_shape(&e->shape, s)) {
            e->last_used = ++ctx->clock;
            return e;
        }
        if (e->last_used < victim->last_used) victim = e;
    }
    if (victim->last_used) entry_destroy(victim);
    entry_create(ctx, victim, s);
    victim->last_used = ++ctx->clock;
    return victim;
}

/* ---- execution --------------------------------------------------------------------------- */

/* The caller's tensors of one call, by role. */
typedef struct conv_call {
    const float *x, *weight, *bias, *dy;
    float *y, *dx, *dweight, *dbias;
} conv_call;

static void *caller_tensor(const conv_call *call, int arg) {
    switch (arg) {
    case DNNL_ARG_SRC: return (void *)call->x;
    case DNNL_ARG_WEIGHTS: return (void *)call->weight;
    case DNNL_ARG_BIAS: return (void *)call->bias;
    case DNNL_ARG_DST: return call->y;
    case DNNL_ARG_DIFF_DST: return (void *)call->dy;
    case DNNL_ARG_DIFF_SRC: return call->dx;
    case DNNL_ARG_DIFF_WEIGHTS: return call->dweight;
    case DNNL_ARG_DIFF_BIAS: return call->dbias;
    default: BNECK_FAIL("cpu_conv_dnnl: unexpected argument %d", arg);
    }
}

/* A buffer big enough for `bytes`; growing it loses what it held. */
static void *reserve(conv_context *ctx, buffer_slot slot, size_t bytes) {
    shared_buffer *b = &ctx->buffers[slot];
    if (b->bytes < bytes) {
        free(b->data);
        b->data = bneck_alloc_aligned(bytes);
        b->bytes = bytes;
        b->holds_source = NULL;
    }
    return b->data;
}

/* Points mem at data. Only when it changed: oneDNN zero-fills a blocked layout's padding
 * on every change, and in steady state each cached memory object sees the same tensor. */
static void point_at(conv_context *ctx, dnnl_memory_t mem, void *data) {
    void *current;
    DNNL_CHECK(dnnl_memory_get_data_handle(mem, &current));
    if (current != data) DNNL_CHECK(dnnl_memory_set_data_handle_v2(mem, data, ctx->stream));
}

static void run_reorder(conv_context *ctx, dnnl_primitive_t reorder, dnnl_memory_t from,
                        dnnl_memory_t to) {
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNNL_CHECK(dnnl_primitive_execute(reorder, ctx->stream, 2, args));
}

/* Takes an operand between the caller's tensor and the primitive's layout in `inner`: an
 * input into it before the primitive runs, an output back (written over, or added into the
 * caller's tensor when the op accumulates) after. */
static void convert_operand(conv_context *ctx, const conv_operand *op, void *caller,
                            void *inner) {
    if (op->channel_block) {
        const dnnl_dim_t *dims = op->inner_layout.dims; /* N, C, H, W */
        const int batch = (int)dims[0], channels = (int)dims[1];
        const size_t area = (size_t)dims[2] * (size_t)dims[3];
        if (op->is_output)
            cpu_layout_blocked_to_cnhw(caller, op->accumulate ? GRAD_ACCUMULATE : GRAD_OVERWRITE,
                                       inner, op->channel_block, batch, channels, area);
        else
            cpu_layout_cnhw_to_blocked(inner, caller, op->channel_block, batch, channels, area);
    } else if (op->reorder) {
        run_reorder(ctx, op->reorder, op->is_output ? op->inner : op->caller,
                    op->is_output ? op->caller : op->inner);
    } else { /* an output in the caller's own layout (the bias gradient): added */
        float *restrict sum = caller;
        const float *restrict part = inner;
        const size_t count = op->inner_bytes / sizeof(float);
#pragma omp parallel for schedule(static) if (count > 65536)
        for (size_t j = 0; j < count; j++) sum[j] += part[j];
    }
}

static void execute(conv_context *ctx, conv_entry *e, const conv_call *call) {
    /* every buffer first: reserving one may replace it */
    for (int i = 0; i < e->operand_count; i++) {
        conv_operand *op = &e->operands[i];
        point_at(ctx, op->caller, caller_tensor(call, op->arg));
        if (op->inner) point_at(ctx, op->inner, reserve(ctx, op->slot, op->inner_bytes));
    }
    if (e->scratchpad)
        point_at(ctx, e->scratchpad, reserve(ctx, SLOT_SCRATCHPAD, e->scratchpad_bytes));

    dnnl_exec_arg_t args[MAX_OPERANDS + 1];
    int nargs = 0;
    for (int i = 0; i < e->operand_count; i++) {
        conv_operand *op = &e->operands[i];
        args[nargs++] = (dnnl_exec_arg_t){op->arg, op->inner ? op->inner : op->caller};
        if (!op->inner) continue;
        shared_buffer *b = &ctx->buffers[op->slot];
        if (op->is_output) {
            b->holds_source = NULL;
            continue;
        }
        const void *source = caller_tensor(call, op->arg);
        if (b->holds_source == source &&
            dnnl_memory_desc_equal(&b->holds_layout, &op->inner_layout))
            continue; /* already reordered in this call */
        convert_operand(ctx, op, (void *)source, b->data);
        b->holds_source = source;
        b->holds_layout = op->inner_layout;
    }
    if (e->scratchpad) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratchpad};
    DNNL_CHECK(dnnl_primitive_execute(e->conv, ctx->stream, nargs, args));
    for (int i = 0; i < e->operand_count; i++) {
        conv_operand *op = &e->operands[i];
        if (!op->is_output || !op->inner) continue;
        convert_operand(ctx, op, caller_tensor(call, op->arg), ctx->buffers[op->slot].data);
    }
}

/* Starts a public call: what the shared buffers held came from tensors the caller may
 * have changed since. */
static conv_context *begin_call(void) {
    conv_context *ctx = context();
    for (int i = 0; i < SLOT_COUNT; i++) ctx->buffers[i].holds_source = NULL;
    return ctx;
}

static conv_shape make_shape(conv_direction direction, int batch, int height, int width,
                             int in_channels, int out_channels, int kernel, int with_bias) {
    return (conv_shape){.direction = direction,
                        .batch = batch,
                        .height = height,
                        .width = width,
                        .in_channels = in_channels,
                        .out_channels = out_channels,
                        .kernel = kernel,
                        .with_bias = with_bias,
                        .threads = omp_get_max_threads()};
}

void cpu_conv_dnnl_forward(float *y, const float *x, const float *weight, const float *bias,
                           int batch, int height, int width, int in_channels, int out_channels,
                           int kernel) {
    conv_context *ctx = begin_call();
    const conv_shape shape = make_shape(CONV_FORWARD, batch, height, width, in_channels,
                                        out_channels, kernel, bias != NULL);
    const conv_call call = {.x = x, .weight = weight, .bias = bias, .y = y};
    execute(ctx, entry_for(ctx, &shape), &call);
    DNNL_CHECK(dnnl_stream_wait(ctx->stream));
}

void cpu_conv_dnnl_backward(float *dx, float *dweight, float *dbias, grad_store dx_store,
                            const float *dy, const float *x, const float *weight, int batch,
                            int height, int width, int in_channels, int out_channels, int kernel) {
    conv_context *ctx = begin_call();
    const conv_call call = {
        .x = x, .weight = weight, .dy = dy, .dx = dx, .dweight = dweight, .dbias = dbias};
    /* weights first: backward data then reuses its reordered dy (see buffer_slot) */
    if (dweight) {
        const conv_shape shape = make_shape(CONV_BACKWARD_WEIGHTS, batch, height, width,
                                            in_channels, out_channels, kernel, dbias != NULL);
        execute(ctx, entry_for(ctx, &shape), &call);
    }
    if (dx) {
        conv_shape shape = make_shape(CONV_BACKWARD_DATA, batch, height, width, in_channels,
                                      out_channels, kernel, 0);
        shape.accumulate_dx = dx_store == GRAD_ACCUMULATE;
        execute(ctx, entry_for(ctx, &shape), &call);
    }
    DNNL_CHECK(dnnl_stream_wait(ctx->stream));
}

#endif
