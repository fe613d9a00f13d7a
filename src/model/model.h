/* The study's Inception-AlexNet (SPEC section 2) as a flat list of layers over one
 * contiguous parameter buffer, one contiguous gradient buffer, one state buffer
 * (BatchNorm running statistics) and one activation arena.
 *
 * The counts (parameters the Keras way, pseudo-FLOPs, MACs) are computed from the very
 * layer list the builder produces, so a builder bug shows up as a wrong count.
 *
 * Activations are CNHW (see backend/cpu/cpu_ops.h); a tensor is a channel range of an
 * arena region, so a module's four branches write straight into their channel slice of
 * the module's output (concatenation without copies). */
#ifndef BNECK_MODEL_MODEL_H
#define BNECK_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "train/config.h"

enum { MODEL_MAX_LAYERS = 192, MODEL_CLASSES = 10 };

/* How a module's layers are laid out. Grouped (the default):
 * - in modes 2 and 3, the 1x1 convolutions that read the module's input (the reduce blocks
 *   of its 3x3 and 5x5 branches and its 1x1 block) run as one GEMM, which reads the input
 *   once and sums its gradient once, and their BatchNorms as one call;
 * - the BatchNorms of the branches' last blocks, whose outputs are side by side in the
 *   module's output, run as one call (all four branches' in mode 1).
 * So a group's weights, biases, BatchNorm parameters and statistics, inputs and outputs
 * each lie side by side. Separate is the layer order and buffer layout of the builds
 * before grouping, one op per block (checkpoints are converted between the two). */
typedef enum { MODEL_LAYERS_GROUPED = 0, MODEL_LAYERS_SEPARATE = 1 } model_grouping;

typedef struct model_spec {
    int mode;         /* 1, 2 or 3 */
    int alpha;        /* bottleneck factor; ignored (1) for mode 1 */
    int in_channels;  /* 3 for CIFAR-10, 1 for Fashion-MNIST */
    pool_branch_form pool_branch;
    model_grouping grouping;
} model_spec;

typedef struct model_counts {
    int64_t params;        /* Keras count: weights, biases, and 4 per BatchNorm channel */
    int64_t trainable;     /* params less the BatchNorm moving mean and variance */
    int64_t pseudo_flops;  /* the study's counter, SPEC section 3, per image */
    int64_t macs;          /* multiply-adds of convs and the dense layer, forward, per image */
} model_counts;

typedef enum {
    LAYER_CONV,
    LAYER_BATCHNORM,       /* fused with the following ReLU (every block is conv-BN-ReLU) */
    LAYER_MAXPOOL3,
    LAYER_AVGPOOL2,
    LAYER_GLOBAL_AVGPOOL,
    LAYER_DENSE,
} layer_kind;

/* A tensor: `channels` channels starting at channel `first` of the arena region that
 * begins at `region` (in floats per image; multiply by the batch for the arena offset). */
typedef struct tensor_ref {
    size_t region;
    int region_channels; /* channels of the whole region (the concatenated output) */
    int first;
    int channels;
    int side;            /* height = width */
} tensor_ref;

typedef struct layer {
    layer_kind kind;
    char name[48];        /* e.g. "inception3/branch5x5/conv2"; HDF5 dataset names */
    tensor_ref in, out;
    int kernel;           /* conv: 1, 3 or 5 */
    size_t weight;        /* offset in the parameter buffer: conv OIHW / dense [out][in] / BN gamma */
    size_t bias;          /* conv/dense bias, BN beta */
    size_t weight_count, bias_count;
    size_t running_mean, running_var; /* BN: offsets in the state buffer */
    size_t batch_mean, batch_invstd;  /* BN: of the last training batch, in the saved scratch */
    int64_t pseudo_flops; /* this layer's share of the study's counter, per image */
    int64_t macs;         /* per image */
    /* Grouped layers (model_grouping): the first layer of a group runs the op of all its
     * layers, as one convolution to group_out_channels outputs or one BatchNorm over
     * group_out_channels channels, from its own offsets, `in` and `out` on; the others
     * have group_member set, and their op is done by then. Both 0 outside groups. */
    int group_out_channels;
    int group_member;
} layer;

typedef struct model {
    model_spec spec;
    int layer_count;
    layer layers[MODEL_MAX_LAYERS];
    size_t param_count;   /* trainable floats: the parameter and gradient buffers */
    size_t state_count;   /* BN running mean + var floats */
    size_t saved_count;   /* BN per-batch mean + invstd floats */
    size_t arena_per_image; /* activation floats per image */
    model_counts counts;
    tensor_ref input, logits;
} model;

/* Checks the spec (mode 1..3, alpha >= 1, every module width divisible by 8*alpha, input
 * channels >= 1) and builds the layer list and counts. Returns 0 or -1 with err set. */
int model_build(model *m, const model_spec *spec, bneck_error *err);

/* The convolution of m that holds the most elements per image in its widest form,
 * height * width * max(in, out) * k * k (an im2col; a layer group counts once, at its
 * group's width): that number, and the layer in *widest (NULL when m has no convolution). */
size_t model_widest_convolution(const model *m, const layer **widest);

/* Bytes of activations per image that a training step moves when each op, as bneck lays
 * them out (grouped layers included), reads its operands from memory once and writes its
 * result once, in fp32: forward, x in and y out; backward, dy and what the op saved in
 * (x; nothing for the average pools; the maxima's positions, a byte each, for the max
 * pools, which the forward pass writes) and dx out (not for the input image). Weights,
 * and the gradient sums of a tensor read by two ops, are left out. A lower bound for
 * op-by-op training where activations do not fit in cache, as on a GPU at this size. */
int64_t model_activation_traffic(const model *m);
/* One layer's share of it, forward (backward 0) or backward: 0 for a group's members,
 * whose bytes the group's first layer moves. */
int64_t layer_activation_traffic(const model *m, const layer *l, int backward);

/* The ops a forward pass runs, a layer group counting once (as many run backward): the
 * launches a step costs beside its FLOPs and bytes. */
int model_ops_per_pass(const model *m);

/* 0 when alpha (>= 1) splits every Inception module's branches, else -1 with err saying
 * which module and why; the configuration checks it where the value was given. */
int model_alpha_check(int alpha, bneck_error *err);

/* The layer called `name` ("inception3/1x1/conv"), or NULL. */
const layer *model_layer_named(const model *m, const char *name);

/* Copy every layer's weights and biases (params) or BatchNorm running statistics (state)
 * from a buffer laid out as `from` to one laid out as `to`, matching layers by name (two
 * builds of one spec that differ only in their grouping). */
void model_convert_params(float *to_params, const model *to, const float *from_params,
                          const model *from);
void model_convert_state(float *to_state, const model *to, const float *from_state,
                         const model *from);

/* The five patterns of the study (A..E): mode and alpha. */
typedef struct model_pattern {
    const char *name;
    int mode, alpha;
} model_pattern;
extern const model_pattern model_study_patterns[5];

#endif
