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

/* Places the layer's weights, then its biases, at the end of the parameter buffer. */
static void params_take(model *m, layer *l) {
    l->weight = m->param_count;
    l->bias = m->param_count + l->weight_count;
    m->param_count += l->weight_count + l->bias_count;
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

enum { GROUP_MAX = 4 };

/* Group flags: the first layer of a group does the op of all `count` layers (a "group" of
 * one is an ordinary layer). */
static void group_mark(layer **layers, int count, int total_channels) {
    if (count < 2) return;
    for (int i = 0; i < count; i++) {
        layers[i]->group_out_channels = i ? 0 : total_channels;
        layers[i]->group_member = i > 0;
    }
}

/* Fails unless the tensors follow one another in the arena (a channel range of CNHW is a
 * pointer offset, so adjacent slices form one tensor). */
static void check_adjacent(const tensor_ref *t, const char *const *prefixes, int count) {
    if (count < 1 || count > GROUP_MAX)
        BNECK_FAIL("%d layers in a group (1 to %d)", count, (int)GROUP_MAX);
    for (int i = 1; i < count; i++) {
        const size_t area = (size_t)t[i].side * t[i].side;
        if (t[i - 1].region + (size_t)(t[i - 1].first + t[i - 1].channels) * area !=
            t[i].region + (size_t)t[i].first * area)
            BNECK_FAIL("grouped layers %s and %s: tensors not adjacent", prefixes[i - 1],
                       prefixes[i]);
    }
}

/* 1x1 convolutions of one input to adjacent outputs as one: weights [O1+O2+...][I], then
 * the biases. */
static void conv_group(builder *b, tensor_ref in, const tensor_ref *outs,
                       const char *const *prefixes, int count) {
    model *m = b->m;
    layer *convs[GROUP_MAX];
    int total = 0;
    for (int i = 0; i < count; i++) total += outs[i].channels;
    check_adjacent(outs, prefixes, count);
    size_t weight = m->param_count, bias = weight + (size_t)in.channels * total;
    m->param_count = bias + (size_t)total;
    for (int i = 0; i < count; i++) {
        layer *conv = convs[i] = conv_layer(b, in, outs[i], 1, prefixes[i]);
        conv->weight = weight;
        conv->bias = bias;
        weight += conv->weight_count;
        bias += conv->bias_count;
    }
    group_mark(convs, count, total);
}

/* BatchNorms of adjacent inputs to adjacent outputs as one (or a single one): the gammas,
 * betas, running means, running variances, batch means and batch 1/stds each as one
 * block. */
static void batchnorm_group(builder *b, const tensor_ref *ins, const tensor_ref *outs,
                            const char *const *prefixes, int count) {
    model *m = b->m;
    layer *bns[GROUP_MAX];
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (size_t)outs[i].channels;
    check_adjacent(ins, prefixes, count);
    check_adjacent(outs, prefixes, count);
    size_t gamma = m->param_count, beta = gamma + total;
    m->param_count = beta + total;
    size_t mean = m->state_count, var = mean + total;
    m->state_count += 2 * total;
    size_t batch_mean = m->saved_count, batch_invstd = batch_mean + total;
    m->saved_count += 2 * total;
    for (int i = 0; i < count; i++) {
        layer *bn = bns[i] = batchnorm_layer(b, ins[i], outs[i], prefixes[i]);
        const size_t channels = (size_t)outs[i].channels;
        bn->weight = gamma, bn->bias = beta;
        bn->running_mean = mean, bn->running_var = var;
        bn->batch_mean = batch_mean, bn->batch_invstd = batch_invstd;
        gamma += channels, beta += channels, mean += channels, var += channels;
        batch_mean += channels, batch_invstd += channels;
    }
    group_mark(bns, count, (int)total);
}

/* A conv without BatchNorm from in to out (a slice of some region), its own parameters. */
static void conv_alone(builder *b, tensor_ref in, tensor_ref out, int kernel,
                       const char *prefix) {
    layer *conv = conv_layer(b, in, out, kernel, prefix);
    params_take(b->m, conv);
}

/* Conv(k, same) -> [BatchNorm -> ReLU]: the study's "block". The pseudo-FLOP counter
 * charges the block conv + 2 elementwise passes over its *input* channels. */
static void block(builder *b, tensor_ref in, tensor_ref out, int kernel, int with_batchnorm,
                  const char *prefix) {
    tensor_ref conv_out = with_batchnorm ? region_new(b, out.channels, out.side) : out;
    conv_alone(b, in, conv_out, kernel, prefix);
    if (with_batchnorm) batchnorm_group(b, &conv_out, &out, &prefix, 1);
}

/* A k x k branch producing out.channels channels, in the model's mode. */
static void branch(builder *b, tensor_ref in, tensor_ref out, int kernel, const char *prefix) {
    const int mode = b->m->spec.mode;
    char name[48];
    if (mode == 1) {
        block(b, in, out, kernel, 1, prefix);
        return;
    }
    tensor_ref squeezed = region_new(b, out.channels / b->m->spec.alpha, in.side);
    snprintf(name, sizeof name, "%s/reduce", prefix);
    block(b, in, squeezed, 1, 1, name);
    snprintf(name, sizeof name, "%s/spatial", prefix);
    if (mode == 2) {
        block(b, squeezed, out, kernel, 1, name);
        return;
    }
    tensor_ref spatial = region_new(b, squeezed.channels, squeezed.side);
    block(b, squeezed, spatial, kernel, 1, name);
    snprintf(name, sizeof name, "%s/expand", prefix);
    block(b, spatial, out, 1, 1, name);
}

static layer *maxpool_layer(builder *b, tensor_ref in, tensor_ref out, int index) {
    layer *pool = layer_add(b, LAYER_MAXPOOL3, in, out, "inception%d/pool/maxpool", index);
    pool->pseudo_flops = 9 * (int64_t)in.side * in.side * in.channels;
    b->m->counts.pseudo_flops += pool->pseudo_flops;
    return pool;
}

/* The module as SPEC section 2 draws it, block by block (MODEL_LAYERS_SEPARATE). */
static tensor_ref inception_separate(builder *b, tensor_ref in, int width, int index) {
    char name[48];
    tensor_ref out = region_new(b, width, in.side);
    snprintf(name, sizeof name, "inception%d/1x1", index);
    block(b, in, slice(out, 0, width / 4), 1, 1, name);
    snprintf(name, sizeof name, "inception%d/3x3", index);
    branch(b, in, slice(out, width / 4, width / 2), 3, name);
    snprintf(name, sizeof name, "inception%d/5x5", index);
    branch(b, in, slice(out, 3 * width / 4, width / 8), 5, name);
    tensor_ref pooled = region_new(b, in.channels, in.side);
    maxpool_layer(b, in, pooled, index);
    snprintf(name, sizeof name, "inception%d/pool/1x1", index);
    block(b, pooled, slice(out, 7 * width / 8, width / 8), 1,
          b->m->spec.pool_branch == POOL_BRANCH_KERAS, name);
    return out;
}

enum { BRANCH_1X1, BRANCH_3X3, BRANCH_5X5, BRANCH_POOL, BRANCHES };
static const char *const branch_names[BRANCHES] = {"1x1", "3x3", "5x5", "pool/1x1"};

/* The name of a branch's last block below the branch's own: "/spatial" or "/expand" after a
 * reduce block, nothing in mode 1 and in the 1x1 and pool branches. */
static const char *last_block_suffix(int mode, int branch) {
    if (mode == 1 || branch == BRANCH_1X1 || branch == BRANCH_POOL) return "";
    return mode == 2 ? "/spatial" : "/expand";
}

/* The same module with its layers grouped (MODEL_LAYERS_GROUPED):
 * - with bottlenecks, the reduce blocks of the 3x3 and 5x5 branches and the 1x1 block
 *   all read `in`: one conv group and one BatchNorm group, whose outputs (the reduces'
 *   region, then the 1x1's slice at the start of the module's output) are adjacent;
 * - the last BatchNorms of the branches (of all four in mode 1, of the three others with
 *   bottlenecks; not the pool branch's in the PyTorch form, which has none) write the
 *   module's output side by side: one BatchNorm group over one region of their convs'
 *   outputs, after the last of those convs. */
static tensor_ref inception_grouped(builder *b, tensor_ref in, int width, int index) {
    model *m = b->m;
    const int mode = m->spec.mode, alpha = m->spec.alpha;
    const int widths[BRANCHES] = {width / 4, width / 2, width / 8, width / 8};
    const int output_first[BRANCHES] = {0, width / 4, 3 * width / 4, 7 * width / 8};
    const int kernels[BRANCHES] = {1, 3, 5, 1};
    char names[GROUP_MAX][48], name[48];
    const char *prefixes[GROUP_MAX] = {names[0], names[1], names[2], names[3]};
    tensor_ref out, reduced = {0};

    if (mode > 1) {
        const int reduce3 = widths[BRANCH_3X3] / alpha, reduce5 = widths[BRANCH_5X5] / alpha;
        reduced = region_new(b, reduce3 + reduce5, in.side);
        out = region_new(b, width, in.side); /* right after `reduced` */
        const tensor_ref outs[3] = {slice(reduced, 0, reduce3), slice(reduced, reduce3, reduce5),
                                    slice(out, 0, widths[BRANCH_1X1])};
        tensor_ref convs_out = region_new(b, reduce3 + reduce5 + widths[BRANCH_1X1], in.side);
        const tensor_ref ins[3] = {slice(convs_out, 0, reduce3),
                                   slice(convs_out, reduce3, reduce5),
                                   slice(convs_out, reduce3 + reduce5, widths[BRANCH_1X1])};
        snprintf(names[0], sizeof names[0], "inception%d/3x3/reduce", index);
        snprintf(names[1], sizeof names[1], "inception%d/5x5/reduce", index);
        snprintf(names[2], sizeof names[2], "inception%d/1x1", index);
        conv_group(b, in, ins, prefixes, 3);
        batchnorm_group(b, ins, outs, prefixes, 3);
    } else {
        out = region_new(b, width, in.side);
    }

    /* The branches' last convs write one region, `finals`, in the order of the module's
     * output; one BatchNorm group then normalises it into the output. */
    const int first = mode > 1 ? BRANCH_3X3 : BRANCH_1X1;
    const int last = m->spec.pool_branch == POOL_BRANCH_KERAS ? BRANCH_POOL : BRANCH_5X5;
    int channels = 0;
    for (int k = first; k <= last; k++) channels += widths[k];
    tensor_ref finals = region_new(b, channels, in.side);
    tensor_ref final_ins[GROUP_MAX], final_outs[GROUP_MAX];
    int count = 0;
    for (int k = first, offset = 0; k <= last; offset += widths[k], k++, count++) {
        final_ins[count] = slice(finals, offset, widths[k]);
        final_outs[count] = slice(out, output_first[k], widths[k]);
        snprintf(names[count], sizeof names[count], "inception%d/%s%s", index, branch_names[k],
                 last_block_suffix(mode, k));
    }

    /* Each branch up to its last conv, in SPEC's order. */
    for (int k = first; k <= BRANCH_5X5; k++) {
        const tensor_ref target = final_ins[k - first];
        if (mode == 1 || k == BRANCH_1X1) {
            conv_alone(b, in, target, kernels[k], prefixes[k - first]);
            continue;
        }
        const tensor_ref squeezed = k == BRANCH_3X3 ? slice(reduced, 0, widths[k] / alpha)
                                                    : slice(reduced, widths[BRANCH_3X3] / alpha,
                                                            widths[k] / alpha);
        if (mode == 2) {
            conv_alone(b, squeezed, target, kernels[k], prefixes[k - first]);
            continue;
        }
        tensor_ref spatial = region_new(b, squeezed.channels, in.side);
        snprintf(name, sizeof name, "inception%d/%s/spatial", index, branch_names[k]);
        block(b, squeezed, spatial, kernels[k], 1, name);
        conv_alone(b, spatial, target, 1, prefixes[k - first]);
    }
    tensor_ref pooled = region_new(b, in.channels, in.side);
    maxpool_layer(b, in, pooled, index);
    snprintf(name, sizeof name, "inception%d/pool/1x1", index);
    conv_alone(b, pooled,
               last == BRANCH_POOL ? final_ins[count - 1]
                                   : slice(out, output_first[BRANCH_POOL], widths[BRANCH_POOL]),
               1, name);
    batchnorm_group(b, final_ins, final_outs, prefixes, count);
    return out;
}

static tensor_ref inception(builder *b, tensor_ref in, int width, int index) {
    return b->m->spec.grouping == MODEL_LAYERS_GROUPED ? inception_grouped(b, in, width, index)
                                                         : inception_separate(b, in, width, index);
}

static tensor_ref avgpool(builder *b, tensor_ref in, int index) {
    tensor_ref out = region_new(b, in.channels, in.side / 2);
    layer *l = layer_add(b, LAYER_AVGPOOL2, in, out, "avgpool%d", index);
    l->pseudo_flops = 4 * (int64_t)in.side * in.side * in.channels;
    b->m->counts.pseudo_flops += l->pseudo_flops;
    return out;
}

/* The layer of `from` named like `to`'s layer, with the same kind and sizes. */
const layer *model_layer_named(const model *m, const char *name) {
    for (int i = 0; i < m->layer_count; i++)
        if (!strcmp(m->layers[i].name, name)) return &m->layers[i];
    return NULL;
}

static const layer *layer_named_like(const model *from, const layer *l) {
    const layer *f = model_layer_named(from, l->name);
    if (!f) BNECK_FAIL("model conversion: layer %s is missing from the other model", l->name);
    if (f->kind != l->kind || f->weight_count != l->weight_count ||
        f->bias_count != l->bias_count || f->out.channels != l->out.channels)
        BNECK_FAIL("model conversion: layer %s differs between the two models", l->name);
    return f;
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

size_t model_widest_convolution(const model *m, const layer **widest) {
    size_t largest = 0;
    *widest = NULL;
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (l->kind != LAYER_CONV || l->group_member) continue;
        const int out = l->group_out_channels ? l->group_out_channels : l->out.channels;
        const int channels = l->in.channels > out ? l->in.channels : out;
        const size_t elements =
            (size_t)l->in.side * l->in.side * (size_t)channels * l->kernel * l->kernel;
        if (elements > largest) largest = elements, *widest = l;
    }
    return largest;
}

int64_t layer_activation_traffic(const model *m, const layer *l, int backward) {
    if (l->group_member) return 0; /* its group's first layer moves the group's bytes */
    const int group = l->group_out_channels;
    const int out_channels = group ? group : l->out.channels;
    const int in_channels = group && l->kind == LAYER_BATCHNORM ? group : l->in.channels;
    const int64_t in = (int64_t)in_channels * l->in.side * l->in.side;
    const int64_t out = (int64_t)out_channels * l->out.side * l->out.side;
    const int64_t floats_bytes = (int64_t)sizeof(float);
    if (!backward) /* x in, y out; a max pool writes its maxima's positions, a byte each */
        return (in + out) * floats_bytes + (l->kind == LAYER_MAXPOOL3 ? out : 0);
    int64_t floats = out;                               /* dy */
    if (l->in.region != m->input.region) floats += in; /* dx */
    if (l->kind == LAYER_MAXPOOL3) return floats * floats_bytes + out; /* the positions */
    if (l->kind != LAYER_AVGPOOL2 && l->kind != LAYER_GLOBAL_AVGPOOL)
        floats += in; /* x, for the weight gradient or the normalisation */
    return floats * floats_bytes;
}

int model_ops_per_pass(const model *m) {
    int ops = 0;
    for (int i = 0; i < m->layer_count; i++) ops += !m->layers[i].group_member;
    return ops;
}

int64_t model_activation_traffic(const model *m) {
    int64_t bytes = 0;
    for (int i = 0; i < m->layer_count; i++)
        bytes += layer_activation_traffic(m, &m->layers[i], 0) +
                 layer_activation_traffic(m, &m->layers[i], 1);
    return bytes;
}

int model_alpha_check(int alpha, bneck_error *err) {
    for (int i = 0; i < 5; i++) {
        /* Every branch width (out/8 at the smallest) must split into alpha parts (divided,
         * not multiplied, so that no alpha overflows). */
        if ((module_widths[i] / 8) % alpha != 0)
            return bneck_error_set(err,
                                   "model: alpha %d does not divide Inception module %d: its "
                                   "width %d must be divisible by 8*alpha", alpha, i + 1,
                                   module_widths[i]);
    }
    return 0;
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
    if (model_alpha_check(m->spec.alpha, err)) return -1;

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
    dense->weight_count = (size_t)MODEL_CLASSES * t.channels;
    dense->bias_count = MODEL_CLASSES;
    params_take(m, dense);
    dense->macs = (int64_t)MODEL_CLASSES * t.channels;
    m->counts.macs += dense->macs;
    m->counts.params += (int64_t)(dense->weight_count + dense->bias_count);
    m->counts.trainable += (int64_t)(dense->weight_count + dense->bias_count);
    return 0;
}
