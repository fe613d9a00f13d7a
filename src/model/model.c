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

/* A conv layer from in to conv_out, counted; its parameters are placed by the caller. */
static layer *conv_layer(builder *b, tensor_ref in, tensor_ref conv_out, int kernel,
                         const char *prefix) {
    model *m = b->m;
    const int64_t area = (int64_t)in.side * in.side;
    layer *conv = layer_add(b, LAYER_CONV, in, conv_out, "%s/conv", prefix);
    conv->kernel = kernel;
    conv->weight_count = (size_t)kernel * kernel * in.channels * conv_out.channels;
    conv->bias_count = (size_t)conv_out.channels;
    conv->macs = (int64_t)kernel * kernel * area * in.channels * conv_out.channels;
    conv->pseudo_flops = conv->macs + 2 * area * in.channels;
    m->counts.macs += conv->macs;
    m->counts.pseudo_flops += conv->pseudo_flops;
    m->counts.params += (int64_t)(conv->weight_count + conv->bias_count);
    m->counts.trainable += (int64_t)(conv->weight_count + conv->bias_count);
    return conv;
}

/* A BatchNorm(+ReLU) layer, counted; its parameters and statistics are placed by the
 * caller. */
static layer *batchnorm_layer(builder *b, tensor_ref in, tensor_ref out, const char *prefix) {
    model *m = b->m;
    layer *bn = layer_add(b, LAYER_BATCHNORM, in, out, "%s/bn", prefix);
    bn->weight_count = bn->bias_count = (size_t)out.channels; /* gamma, beta */
    m->counts.params += 4 * (int64_t)out.channels;
    m->counts.trainable += 2 * (int64_t)out.channels;
    return bn;
}

/* Conv(k, same) -> [BatchNorm -> ReLU]: the study's "block". The pseudo-FLOP counter
 * charges the block conv + 2 elementwise passes over its *input* channels. */
static void block(builder *b, tensor_ref in, tensor_ref out, int kernel, int with_batchnorm,
                  const char *prefix) {
    model *m = b->m;
    tensor_ref conv_out = with_batchnorm ? region_new(b, out.channels, out.side) : out;
    layer *conv = conv_layer(b, in, conv_out, kernel, prefix);
    params_take(m, conv, conv->weight_count, conv->bias_count);
    if (!with_batchnorm) return;
    layer *bn = batchnorm_layer(b, conv_out, out, prefix);
    params_take(m, bn, bn->weight_count, bn->bias_count);
    const size_t channels = (size_t)out.channels;
    bn->running_mean = m->state_count;
    bn->running_var = m->state_count + channels;
    m->state_count += 2 * channels;
    bn->batch_mean = m->saved_count;
    bn->batch_invstd = m->saved_count + channels;
    m->saved_count += 2 * channels;
}

/* 1x1 blocks that read the same input, laid out as one (model_sibling_form): the convs'
 * weights [O1+O2+...][I] and biases, their pre-BatchNorm outputs as one region, the
 * BatchNorms' gammas, betas, running means, running variances, batch means and 1/stds
 * each as one block, and their outputs `outs`, which must follow one another in the arena.
 * The first conv and the first BatchNorm do the work of all; the others are members. */
static void sibling_blocks(builder *b, tensor_ref in, const tensor_ref *outs,
                           const char *const *prefixes, int count) {
    model *m = b->m;
    int total = 0;
    for (int i = 0; i < count; i++) total += outs[i].channels;
    const size_t side_area = (size_t)in.side * in.side;
    for (int i = 1; i < count; i++) {
        const tensor_ref *p = &outs[i - 1], *o = &outs[i];
        if (p->region + (size_t)(p->first + p->channels) * side_area !=
            o->region + (size_t)o->first * side_area)
            BNECK_FAIL("sibling blocks %s and %s: outputs not adjacent", prefixes[i - 1],
                       prefixes[i]);
    }
    tensor_ref conv_out = region_new(b, total, in.side);
    layer *convs[8], *bns[8];
    if (count > 8) BNECK_FAIL("more than 8 sibling blocks");

    size_t weight = m->param_count, bias = weight + (size_t)in.channels * total;
    m->param_count = bias + (size_t)total;
    for (int i = 0, first = 0; i < count; first += outs[i].channels, i++) {
        layer *conv = convs[i] = conv_layer(b, in, slice(conv_out, first, outs[i].channels), 1,
                                            prefixes[i]);
        conv->weight = weight;
        conv->bias = bias;
        weight += conv->weight_count;
        bias += conv->bias_count;
    }

    size_t gamma = m->param_count, beta = gamma + (size_t)total;
    m->param_count = beta + (size_t)total;
    size_t mean = m->state_count, var = mean + (size_t)total;
    m->state_count += 2 * (size_t)total;
    size_t batch_mean = m->saved_count, batch_invstd = batch_mean + (size_t)total;
    m->saved_count += 2 * (size_t)total;
    for (int i = 0, first = 0; i < count; first += outs[i].channels, i++) {
        layer *bn = bns[i] = batchnorm_layer(b, slice(conv_out, first, outs[i].channels),
                                             outs[i], prefixes[i]);
        const size_t channels = (size_t)outs[i].channels;
        bn->weight = gamma, bn->bias = beta;
        bn->running_mean = mean, bn->running_var = var;
        bn->batch_mean = batch_mean, bn->batch_invstd = batch_invstd;
        gamma += channels, beta += channels, mean += channels, var += channels;
        batch_mean += channels, batch_invstd += channels;
    }
    for (int i = 0; i < count; i++) {
        convs[i]->group_out_channels = bns[i]->group_out_channels = i ? 0 : total;
        convs[i]->group_member = bns[i]->group_member = i > 0;
    }
}

/* The rest of a k x k branch after its reduce block (modes 2 and 3), from `squeezed`. */
static void branch_after_reduce(builder *b, tensor_ref squeezed, tensor_ref out, int kernel,
                                const char *prefix) {
    char name[48];
    snprintf(name, sizeof name, "%s/spatial", prefix);
    if (b->m->spec.mode == 2) {
        block(b, squeezed, out, kernel, 1, name);
        return;
    }
    tensor_ref spatial = region_new(b, squeezed.channels, squeezed.side);
    block(b, squeezed, spatial, kernel, 1, name);
    snprintf(name, sizeof name, "%s/expand", prefix);
    block(b, spatial, out, 1, 1, name);
}

/* A k x k branch producing out.channels channels, in the model's mode. */
static void branch(builder *b, tensor_ref in, tensor_ref out, int kernel, const char *prefix) {
    char name[48];
    if (b->m->spec.mode == 1) {
        block(b, in, out, kernel, 1, prefix);
        return;
    }
    tensor_ref squeezed = region_new(b, out.channels / b->m->spec.alpha, in.side);
    snprintf(name, sizeof name, "%s/reduce", prefix);
    block(b, in, squeezed, 1, 1, name);
    branch_after_reduce(b, squeezed, out, kernel, prefix);
}

static tensor_ref inception(builder *b, tensor_ref in, int width, int index) {
    model *m = b->m;
    const int alpha = m->spec.alpha;
    char name[48], names[3][48];
    tensor_ref out;
    if (m->spec.mode > 1 && m->spec.siblings == MODEL_SIBLINGS_GROUPED) {
        /* The two reduce blocks and the 1x1 block all read `in`: one sibling group, whose
         * outputs (the reduces' region, then the 1x1's slice at the start of the module's
         * output) lie one after another. */
        tensor_ref reduced = region_new(b, width / 2 / alpha + width / 8 / alpha, in.side);
        out = region_new(b, width, in.side);
        const tensor_ref outs[3] = {slice(reduced, 0, width / 2 / alpha),
                                    slice(reduced, width / 2 / alpha, width / 8 / alpha),
                                    slice(out, 0, width / 4)};
        snprintf(names[0], sizeof names[0], "inception%d/3x3/reduce", index);
        snprintf(names[1], sizeof names[1], "inception%d/5x5/reduce", index);
        snprintf(names[2], sizeof names[2], "inception%d/1x1", index);
        const char *const prefixes[3] = {names[0], names[1], names[2]};
        sibling_blocks(b, in, outs, prefixes, 3);
        snprintf(name, sizeof name, "inception%d/3x3", index);
        branch_after_reduce(b, outs[0], slice(out, width / 4, width / 2), 3, name);
        snprintf(name, sizeof name, "inception%d/5x5", index);
        branch_after_reduce(b, outs[1], slice(out, 3 * width / 4, width / 8), 5, name);
    } else {
        out = region_new(b, width, in.side);
        snprintf(name, sizeof name, "inception%d/1x1", index);
        block(b, in, slice(out, 0, width / 4), 1, 1, name);
        snprintf(name, sizeof name, "inception%d/3x3", index);
        branch(b, in, slice(out, width / 4, width / 2), 3, name);
        snprintf(name, sizeof name, "inception%d/5x5", index);
        branch(b, in, slice(out, 3 * width / 4, width / 8), 5, name);
    }

    tensor_ref pooled = region_new(b, in.channels, in.side);
    layer *pool = layer_add(b, LAYER_MAXPOOL3, in, pooled, "inception%d/pool/maxpool", index);
    pool->pseudo_flops = 9 * (int64_t)in.side * in.side * in.channels;
    m->counts.pseudo_flops += pool->pseudo_flops;
    snprintf(name, sizeof name, "inception%d/pool/1x1", index);
    block(b, pooled, slice(out, 7 * width / 8, width / 8), 1,
          m->spec.pool_branch == POOL_BRANCH_KERAS, name);
    return out;
}

static tensor_ref avgpool(builder *b, tensor_ref in, int index) {
    tensor_ref out = region_new(b, in.channels, in.side / 2);
    layer *l = layer_add(b, LAYER_AVGPOOL2, in, out, "avgpool%d", index);
    l->pseudo_flops = 4 * (int64_t)in.side * in.side * in.channels;
    b->m->counts.pseudo_flops += l->pseudo_flops;
    return out;
}

/* The layer of `from` named like `to`'s layer, with the same kind and sizes. */
static const layer *layer_named_like(const model *from, const layer *l) {
    for (int i = 0; i < from->layer_count; i++) {
        const layer *f = &from->layers[i];
        if (strcmp(f->name, l->name)) continue;
        if (f->kind != l->kind || f->weight_count != l->weight_count ||
            f->bias_count != l->bias_count || f->out.channels != l->out.channels)
            BNECK_FAIL("model conversion: layer %s differs between the two models", l->name);
        return f;
    }
    BNECK_FAIL("model conversion: layer %s is missing from the other model", l->name);
}

static void check_convertible(const model *to, const model *from) {
    if (to->layer_count != from->layer_count || to->param_count != from->param_count ||
        to->state_count != from->state_count)
        BNECK_FAIL("model conversion: the two models differ (%d and %d layers, %zu and %zu "
                   "parameters, %zu and %zu state)", to->layer_count, from->layer_count,
                   to->param_count, from->param_count, to->state_count, from->state_count);
}

void model_convert_params(float *to_params, const model *to, const float *from_params,
                          const model *from) {
    check_convertible(to, from);
    for (int i = 0; i < to->layer_count; i++) {
        const layer *t = &to->layers[i], *f = layer_named_like(from, t);
        memcpy(to_params + t->weight, from_params + f->weight, t->weight_count * sizeof(float));
        memcpy(to_params + t->bias, from_params + f->bias, t->bias_count * sizeof(float));
    }
}

void model_convert_state(float *to_state, const model *to, const float *from_state,
                         const model *from) {
    check_convertible(to, from);
    for (int i = 0; i < to->layer_count; i++) {
        const layer *t = &to->layers[i];
        if (t->kind != LAYER_BATCHNORM) continue;
        const layer *f = layer_named_like(from, t);
        const size_t bytes = (size_t)t->out.channels * sizeof(float);
        memcpy(to_state + t->running_mean, from_state + f->running_mean, bytes);
        memcpy(to_state + t->running_var, from_state + f->running_var, bytes);
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
