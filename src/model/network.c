#include "model/network.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int network_create(network *net, const model *m, const backend_ops *backend, int max_batch,
                   bneck_error *err) {
    memset(net, 0, sizeof *net);
    if (max_batch < 1) return bneck_error_set(err, "network: batch must be >= 1, got %d", max_batch);
    net->backend = backend;
    net->model = *m;
    net->max_batch = max_batch;
    const size_t arena = (size_t)max_batch * m->arena_per_image;
    net->params = backend->alloc(m->param_count * sizeof(float));
    net->grads = backend->alloc(m->param_count * sizeof(float));
    net->state = backend->alloc(m->state_count * sizeof(float));
    net->saved = backend->alloc(m->saved_count * sizeof(float));
    net->activations = backend->alloc(arena * sizeof(float));
    net->activation_grads = backend->alloc(arena * sizeof(float));
    net->labels = backend->alloc((size_t)max_batch);
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (l->kind != LAYER_MAXPOOL3) continue;
        net->argmax_offset[i] = net->argmax_per_image;
        net->argmax_per_image += (size_t)l->out.channels * l->out.side * l->out.side;
    }
    net->pool_argmax = backend->alloc(
        (net->argmax_per_image ? net->argmax_per_image : 1) * (size_t)max_batch);
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (l->kind != LAYER_CONV) continue;
        size_t need = backend->conv2d_workspace_floats(max_batch, l->in.side, l->in.side,
                                                       l->in.channels, l->kernel);
        if (need > net->workspace_floats) net->workspace_floats = need;
    }
    net->workspace = backend->alloc((net->workspace_floats ? net->workspace_floats : 1) * sizeof(float));
    return 0;
}

void network_destroy(network *net) {
    if (!net->backend) return;
    const backend_ops *be = net->backend;
    be->release(net->params);
    be->release(net->grads);
    be->release(net->state);
    be->release(net->saved);
    be->release(net->activations);
    be->release(net->activation_grads);
    be->release(net->workspace);
    be->release(net->labels);
    be->release(net->pool_argmax);
    memset(net, 0, sizeof *net);
}

static float uniform_between(uint64_t key, uint64_t counter, float bound) {
    return (2.0f * rng_uniform(key, counter) - 1.0f) * bound;
}

void network_init_params(network *net, uint64_t seed, init_form form) {
    const model *m = &net->model;
    float *params = bneck_calloc(m->param_count ? m->param_count : 1, sizeof(float));
    float *state = bneck_calloc(m->state_count ? m->state_count : 1, sizeof(float));
    const uint64_t key = rng_key(seed, 0x1417); /* the initialisation stream */
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (l->kind == LAYER_CONV || l->kind == LAYER_DENSE) {
            const int taps = l->kind == LAYER_CONV ? l->kernel * l->kernel : 1;
            const float fan_in = (float)(l->in.channels * taps);
            const float fan_out = (float)(l->out.channels * taps);
            const float weight_bound = form == INIT_GLOROT ? sqrtf(6.0f / (fan_in + fan_out))
                                                           : 1.0f / sqrtf(fan_in);
            for (size_t j = 0; j < l->weight_count; j++)
                params[l->weight + j] = uniform_between(key, l->weight + j, weight_bound);
            for (size_t j = 0; j < l->bias_count; j++)
                params[l->bias + j] = form == INIT_GLOROT
                                          ? 0.0f
                                          : uniform_between(key, l->bias + j, 1.0f / sqrtf(fan_in));
        } else if (l->kind == LAYER_BATCHNORM) {
            for (size_t j = 0; j < l->weight_count; j++) params[l->weight + j] = 1.0f;
            for (int c = 0; c < l->out.channels; c++) state[l->running_var + c] = 1.0f;
        }
    }
    net->backend->upload(net->params, params, m->param_count * sizeof(float));
    net->backend->upload(net->state, state, m->state_count * sizeof(float));
    free(params);
    free(state);
}

float *network_tensor(const network *net, tensor_ref t, int batch) {
    return net->activations + (t.region + (size_t)t.first * t.side * t.side) * batch;
}

float *network_tensor_grad(const network *net, tensor_ref t, int batch) {
    return net->activation_grads + (t.region + (size_t)t.first * t.side * t.side) * batch;
}

/* Output channels of a layer's op: its group's when it leads one. */
static int layer_outputs(const layer *l) {
    return l->group_out_channels ? l->group_out_channels : l->out.channels;
}

static uint8_t *layer_argmax(const network *net, int layer_index, int batch) {
    return net->pool_argmax + net->argmax_offset[layer_index] * (size_t)batch;
}

void network_forward(network *net, int batch, int training, float bn_eps, float bn_momentum) {
    const backend_ops *be = net->backend;
    const model *m = &net->model;
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (l->group_member) continue; /* its group's first layer did its op */
        const float *x = network_tensor(net, l->in, batch);
        float *y = network_tensor(net, l->out, batch);
        const int side = l->in.side, channels = l->in.channels;
        const int planes = channels * batch;
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 0, 0);
        switch (l->kind) {
        case LAYER_CONV:
            be->conv2d_forward(y, x, net->params + l->weight, net->params + l->bias,
                               net->workspace, batch, side, side, channels,
                               layer_outputs(l), l->kernel);
            break;
        case LAYER_BATCHNORM: {
            const size_t plane = (size_t)batch * side * side;
            const int bn_channels = layer_outputs(l);
            float *running_mean = net->state + l->running_mean;
            float *running_var = net->state + l->running_var;
            if (training)
                be->batchnorm_forward_train(y, net->saved + l->batch_mean,
                                            net->saved + l->batch_invstd, running_mean,
                                            running_var, x, net->params + l->weight,
                                            net->params + l->bias, bn_eps, bn_momentum, 1,
                                            bn_channels, plane);
            else
                be->batchnorm_forward_infer(y, x, net->params + l->weight, net->params + l->bias,
                                            running_mean, running_var, bn_eps, 1, bn_channels,
                                            plane);
            break;
        }
        case LAYER_MAXPOOL3:
            be->maxpool3x3_forward(y, training ? layer_argmax(net, i, batch) : NULL, x, planes,
                                   side, side);
            break;
        case LAYER_AVGPOOL2: be->avgpool2x2_forward(y, x, planes, side, side); break;
        case LAYER_GLOBAL_AVGPOOL: be->global_avgpool_forward(y, x, planes, side * side); break;
        case LAYER_DENSE:
            be->dense_forward(y, x, net->params + l->weight, net->params + l->bias, batch,
                              channels, l->out.channels);
            break;
        }
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 0, 1);
    }
}

float network_loss(network *net, const uint8_t *labels, float grad_scale, int batch,
                   int *correct) {
    if (labels) net->backend->upload(net->labels, labels, (size_t)batch);
    return net->backend->softmax_xent(network_tensor_grad(net, net->model.logits, batch), correct,
                                      network_tensor(net, net->model.logits, batch), net->labels,
                                      grad_scale, batch, MODEL_CLASSES);
}

void network_backward(network *net, int batch) {
    const backend_ops *be = net->backend;
    const model *m = &net->model;
    be->zero(net->grads, m->param_count * sizeof(float));
    /* Everything below the logits accumulates; the logits' gradient was just written. */
    be->zero(net->activation_grads, m->logits.region * batch * sizeof(float));
    for (int i = m->layer_count - 1; i >= 0; i--) {
        const layer *l = &m->layers[i];
        /* Its group's first layer, reached last, back-propagates the whole group. */
        if (l->group_member) continue;
        const float *x = network_tensor(net, l->in, batch);
        const float *y = network_tensor(net, l->out, batch);
        const float *dy = network_tensor_grad(net, l->out, batch);
        /* The network input needs no gradient. */
        float *dx = l->in.region == m->input.region ? NULL : network_tensor_grad(net, l->in, batch);
        if (!dx && l->kind != LAYER_CONV) continue; /* e.g. the max pool reading the input */
        const int side = l->in.side, channels = l->in.channels;
        const int planes = channels * batch;
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 1, 0);
        switch (l->kind) {
        case LAYER_CONV:
            be->conv2d_backward(dx, net->grads + l->weight, net->grads + l->bias, dy, x,
                                net->params + l->weight, net->workspace, batch, side, side,
                                channels, layer_outputs(l), l->kernel);
            break;
        case LAYER_BATCHNORM:
            be->batchnorm_backward(dx, net->grads + l->weight, net->grads + l->bias, dy, x, y,
                                   net->params + l->weight, net->saved + l->batch_mean,
                                   net->saved + l->batch_invstd, layer_outputs(l),
                                   (size_t)batch * side * side);
            break;
        case LAYER_MAXPOOL3:
            be->maxpool3x3_backward(dx, dy, layer_argmax(net, i, batch), planes, side, side);
            break;
        case LAYER_AVGPOOL2: be->avgpool2x2_backward(dx, dy, planes, side, side); break;
        case LAYER_GLOBAL_AVGPOOL: be->global_avgpool_backward(dx, dy, planes, side * side); break;
        case LAYER_DENSE:
            be->dense_backward(dx, net->grads + l->weight, net->grads + l->bias, dy, x,
                               net->params + l->weight, batch, channels, l->out.channels);
            break;
        }
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 1, 1);
    }
}
