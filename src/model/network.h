/* A built model made runnable on a backend: the parameter, gradient, state and
 * activation buffers, and the forward and backward passes over the layer list. */
#ifndef BNECK_MODEL_NETWORK_H
#define BNECK_MODEL_NETWORK_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

/* Called before (after = 0) and after (after = 1) layer `index`'s forward (backward = 0)
 * or backward (backward = 1) op; bneck-bench --profile times layers with it. */
typedef void (*network_layer_hook)(void *context, const layer *l, int index, int backward,
                                   int after);

typedef struct network {
    const backend_ops *backend;
    model model;
    int max_batch;
    float *params;     /* model.param_count trainable floats, layer by layer */
    float *grads;      /* same layout as params */
    float *state;      /* BatchNorm running mean and variance */
    float *saved;      /* BatchNorm batch mean and 1/std of the last training forward */
    float *activations;      /* max_batch * model.arena_per_image */
    float *activation_grads; /* same layout */
    float *workspace;
    size_t workspace_floats;
    /* Max pools' argmax codes (one byte per output), written by the training forward pass
     * for the backward pass: max_batch * argmax_per_image bytes, layer i's at
     * argmax_offset[i] * batch. */
    uint8_t *pool_argmax;
    size_t argmax_per_image;
    size_t argmax_offset[MODEL_MAX_LAYERS];
    uint8_t *labels;   /* backend copy of the current batch's labels */
    /* How each layer's backward op stores its dx (planned by network_create), and
     * whether the activation gradients are cleared before every backward pass instead:
     * on backends whose ops always add, or for a layer list the plan cannot cover. */
    grad_store dx_store[MODEL_MAX_LAYERS];
    int clears_activation_grads;
    network_layer_hook layer_hook; /* optional: called around every layer op (profiling) */
    void *layer_hook_context;
} network;

int network_create(network *net, const model *m, const backend_ops *backend, int max_batch,
                    bneck_error *err);
void network_destroy(network *net);

/* Weight initialisation, a pure function of (seed, parameter index):
 *  glorot:  conv/dense kernels U(+-sqrt(6/(fan_in+fan_out))), biases 0 (Keras);
 *  pytorch: kernels and biases U(+-1/sqrt(fan_in)) (PyTorch's default);
 * BatchNorm gamma 1, beta 0, running mean 0, running variance 1 in both. */
void network_init_params(network *net, uint64_t seed, init_form form);

/* Backend pointer to where the input batch goes (CNHW, batch images). */
float *network_tensor(const network *net, tensor_ref t, int batch);
float *network_tensor_grad(const network *net, tensor_ref t, int batch);

void network_forward(network *net, int batch, int training, float bn_eps, float bn_momentum);
/* Softmax cross-entropy of the logits against labels (host array, copied to the backend;
 * NULL when the batch's labels were assembled in net->labels already);
 * writes dlogits scaled by grad_scale. Returns the mean loss; *correct gets the hits. */
float network_loss(network *net, const uint8_t *labels, float grad_scale, int batch,
                   int *correct);
/* Zeroes the parameter gradients, then back-propagates dlogits through every layer, each
 * activation gradient written by the first layer to reach it and added to by the rest. */
void network_backward(network *net, int batch);

/* Does layer l's backward op run, and with a dx (*with_dx)? The network input needs no
 * gradient, so only a convolution reading it still runs (for its weight gradient), without
 * one; a group's members run in their first layer's op. */
int network_layer_backward_runs(const model *m, const layer *l, int *with_dx);

#endif
