/* Builds the Inception-AlexNet layer list of SPEC section 2 and counts it (section 3).
 * Every count is summed from the layers as they are added, so counts and graph agree. */
#include "model/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const model_pattern model_study_patterns[5] = {
    {"A", 1, 1}, {"B", 2, 2}, {"C", 2, 4}, {"D", 3, 2}, {"E", 3, 4},
};

/* Widths and resolutions of the five Inception modules (SPEC section 2 table). */
static const int module_widths[5] = {96, 256, 384, 384, 256};

typedef struct builder {
    model *m;
    bneck_error *err;
    int failed;
} builder;

static tensor_ref region_new(builder *b, int channels, int side) {
    tensor_ref t = {b->m->arena_per_image, channels, 0, channels, side};
    b->m->arena_per_image += (size_t)channels * side * side;
    return t;
}

static tensor_ref slice(tensor_ref t, int first, int channels) {
    t.first += first;
    t.channels = channels;
    return t;
}

static layer *layer_add(builder *b, layer_kind kind, tensor_ref in, tensor_ref out,
                        const char *name_format, ...) __attribute__((format(printf, 5, 6)));
static layer *layer_add(builder *b, layer_kind kind, tensor_ref in, tensor_ref out,
                        const char *name_format, ...) {
    model *m = b->m;
    if (m->layer_count >= MODEL_MAX_LAYERS) BNECK_FAIL("more than %d layers", MODEL_MAX_LAYERS);
    layer *l = &m->layers[m->layer_count++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->in = in;
    l->out = out;
    va_list args;
    va_start(args, name_format);
    vsnprintf(l->name, sizeof l->name, name_format, args);
    va_end(args);
    return l;
}

static void params_take(model *m, layer *l, size_t weights, size_t biases) {
    l->weight = m->param_count;
    l->weight_count = weights;
    l->bias = m->param_count + weights;
    l->bias_count = biases;
    m->param_count += weights + biases;
}

/* Sibling 1x1 convolutions laid out side by side (model_sibling_form): the group's weights
 * [O1+O2+O3][I], then its biases, then its pre-BatchNorm outputs as one region. */
typedef struct sibling_group {
    tensor_ref conv_out; /* every member's pre-BatchNorm output */
    size_t weight, bias; /* the next member's weight and bias offsets */
    int taken;           /* output channels handed out so far */
} sibling_group;

static sibling_group sibling_group_new(builder *b, int in_channels, int out_channels, int side) {
    model *m = b->m;
    sibling_group g = {.conv_out = region_new(b, out_channels, side)};
    g.weight = m->param_count;
    g.bias = g.weight + (size_t)in_channels * out_channels;
    m->param_count = g.bias + (size_t)out_channels;
    return g;
}

/* Conv(k, same) -> [BatchNorm -> ReLU]: the study's "block". The pseudo-FLOP counter
 * charges the block conv + 2 elementwise passes over its *input* channels. A block in a
 * sibling group (1x1, with BatchNorm) takes its place in it. */
static void block(builder *b, tensor_ref in, tensor_ref out, int kernel, int with_batchnorm,
                  sibling_group *group, const char *prefix) {
    model *m = b->m;
    const int64_t area = (int64_t)in.side * in.side;
    tensor_ref conv_out = group           ? slice(group->conv_out, group->taken, out.channels)
                          : with_batchnorm ? region_new(b, out.channels, out.side)
                                           : out;

    layer *conv = layer_add(b, LAYER_CONV, in, conv_out, "%s/conv", prefix);
    conv->kernel = kernel;
    if (group) {
        conv->weight = group->weight;
        conv->weight_count = (size_t)in.channels * out.channels;
        conv->bias = group->bias;
        conv->bias_count = (size_t)out.channels;
        if (group->taken == 0) conv->group_out_channels = group->conv_out.channels;
        else conv->group_member = 1;
        group->weight += conv->weight_count;
        group->bias += conv->bias_count;
        group->taken += out.channels;
    } else {
        params_take(m, conv, (size_t)kernel * kernel * in.channels * out.channels, out.channels);
    }
    conv->macs = (int64_t)kernel * kernel * area * in.channels * out.channels;
    conv->pseudo_flops = conv->macs + 2 * area * in.channels;
    m->counts.macs += conv->macs;
    m->counts.pseudo_flops += conv->pseudo_flops;
    m->counts.params += (int64_t)(conv->weight_count + conv->bias_count);
    m->counts.trainable += (int64_t)(conv->weight_count + conv->bias_count);

    if (!with_batchnorm) return;
    layer *bn = layer_add(b, LAYER_BATCHNORM, conv_out, out, "%s/bn", prefix);
    params_take(m, bn, out.channels, out.channels); /* gamma, beta */
    bn->state = m->state_count;
    m->state_count += 2 * (size_t)out.channels;     /* running mean, running variance */
    bn->saved = m->saved_count;
    m->saved_count += 2 * (size_t)out.channels;     /* batch mean, batch 1/std */
    m->counts.params += 4 * (int64_t)out.channels;
    m->counts.trainable += 2 * (int64_t)out.channels;
}

/* A k x k branch producing out.channels channels, in the model's mode; its reduce block
 * joins `group` when there is one. */
static void branch(builder *b, tensor_ref in, tensor_ref out, int kernel, sibling_group *group,
                   const char *prefix) {
    const int mode = b->m->spec.mode, alpha = b->m->spec.alpha;
    char name[48];
    if (mode == 1) {
        snprintf(name, sizeof name, "%s", prefix);
        block(b, in, out, kernel, 1, NULL, name);
        return;
    }
    const int narrow = out.channels / alpha;
    tensor_ref squeezed = region_new(b, narrow, in.side);
    snprintf(name, sizeof name, "%s/reduce", prefix);
    block(b, in, squeezed, 1, 1, group, name);
    if (mode == 2) {
        snprintf(name, sizeof name, "%s/spatial", prefix);
        block(b, squeezed, out, kernel, 1, NULL, name);
        return;
    }
    tensor_ref spatial = region_new(b, narrow, in.side);
    snprintf(name, sizeof name, "%s/spatial", prefix);
    block(b, squeezed, spatial, kernel, 1, NULL, name);
    snprintf(name, sizeof name, "%s/expand", prefix);
    block(b, spatial, out, 1, 1, NULL, name);
}

static tensor_ref inception(builder *b, tensor_ref in, int width, int index) {
    model *m = b->m;
    tensor_ref out = region_new(b, width, in.side);
    /* With bottlenecks, the 1x1 block and the two reduce blocks all read `in`. */
    const int alpha = m->spec.alpha;
    sibling_group siblings, *group = NULL;
    if (m->spec.mode > 1 && m->spec.siblings == MODEL_SIBLINGS_GROUPED) {
        siblings = sibling_group_new(b, in.channels,
                                     width / 4 + width / 2 / alpha + width / 8 / alpha, in.side);
        group = &siblings;
    }
    char name[48];
    snprintf(name, sizeof name, "inception%d/1x1", index);
    block(b, in, slice(out, 0, width / 4), 1, 1, group, name);
    snprintf(name, sizeof name, "inception%d/3x3", index);
    branch(b, in, slice(out, width / 4, width / 2), 3, group, name);
    snprintf(name, sizeof name, "inception%d/5x5", index);
    branch(b, in, slice(out, 3 * width / 4, width / 8), 5, group, name);
    if (group && group->taken != group->conv_out.channels)
        BNECK_FAIL("inception%d: the sibling group has %d channels but its blocks took %d",
                   index, group->conv_out.channels, group->taken);

    tensor_ref pooled = region_new(b, in.channels, in.side);
    layer *pool = layer_add(b, LAYER_MAXPOOL3, in, pooled, "inception%d/pool/maxpool", index);
    pool->pseudo_flops = 9 * (int64_t)in.side * in.side * in.channels;
    m->counts.pseudo_flops += pool->pseudo_flops;
    snprintf(name, sizeof name, "inception%d/pool/1x1", index);
    block(b, pooled, slice(out, 7 * width / 8, width / 8), 1,
          m->spec.pool_branch == POOL_BRANCH_KERAS, NULL, name);
    return out;
}

static tensor_ref avgpool(builder *b, tensor_ref in, int index) {
    tensor_ref out = region_new(b, in.channels, in.side / 2);
    layer *l = layer_add(b, LAYER_AVGPOOL2, in, out, "avgpool%d", index);
    l->pseudo_flops = 4 * (int64_t)in.side * in.side * in.channels;
    b->m->counts.pseudo_flops += l->pseudo_flops;
    return out;
}

void model_convert_params(float *to_params, const model *to, const float *from_params,
                          const model *from) {
    if (to->layer_count != from->layer_count || to->param_count != from->param_count)
        BNECK_FAIL("model_convert_params: the two models differ (%d and %d layers, %zu and %zu "
                   "parameters)", to->layer_count, from->layer_count, to->param_count,
                   from->param_count);
    for (int i = 0; i < to->layer_count; i++) {
        const layer *t = &to->layers[i], *f = &from->layers[i];
        if (t->weight_count != f->weight_count || t->bias_count != f->bias_count)
            BNECK_FAIL("model_convert_params: layer %s differs in its parameter counts", t->name);
        memcpy(to_params + t->weight, from_params + f->weight, t->weight_count * sizeof(float));
        memcpy(to_params + t->bias, from_params + f->bias, t->bias_count * sizeof(float));
    }
}

int model_build(model *m, const model_spec *spec, bneck_error *err) {
    memset(m, 0, sizeof *m);
    if (spec->mode < 1 || spec->mode > 3)
        return bneck_error_set(err, "model: mode must be 1, 2 or 3, got %d", spec->mode);
    if (spec->alpha < 1)
        return bneck_error_set(err, "model: alpha must be >= 1, got %d", spec->alpha);
    if (spec->in_channels < 1)
        return bneck_error_set(err, "model: input channels must be >= 1, got %d",
                               spec->in_channels);
    m->spec = *spec;
    if (m->spec.mode == 1) m->spec.alpha = 1;
    for (int i = 0; i < 5; i++) {
        /* Every branch width (out/8 at the smallest) must split into alpha parts. */
        if (module_widths[i] % (8 * m->spec.alpha) != 0)
            return bneck_error_set(err,
                                   "model: alpha %d does not divide Inception module %d: its "
                                   "width %d must be divisible by 8*alpha = %d",
                                   m->spec.alpha, i + 1, module_widths[i], 8 * m->spec.alpha);
    }

    builder b = {m, err, 0};
    m->input = region_new(&b, spec->in_channels, 32);
    tensor_ref t = inception(&b, m->input, module_widths[0], 1);
    t = avgpool(&b, t, 1);
    t = inception(&b, t, module_widths[1], 2);
    t = avgpool(&b, t, 2);
    for (int i = 2; i < 5; i++) t = inception(&b, t, module_widths[i], i + 1);

    tensor_ref pooled = region_new(&b, t.channels, 1);
    layer_add(&b, LAYER_GLOBAL_AVGPOOL, t, pooled, "global_avgpool");
    m->logits = region_new(&b, MODEL_CLASSES, 1);
    layer *dense = layer_add(&b, LAYER_DENSE, pooled, m->logits, "dense");
    params_take(m, dense, (size_t)MODEL_CLASSES * t.channels, MODEL_CLASSES);
    dense->macs = (int64_t)MODEL_CLASSES * t.channels;
    m->counts.macs += dense->macs;
    m->counts.params += (int64_t)(dense->weight_count + dense->bias_count);
    m->counts.trainable += (int64_t)(dense->weight_count + dense->bias_count);
    return 0;
}
