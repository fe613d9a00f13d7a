#include "model/network.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* Output channels of a layer's op: its group's when it leads one. */
static int layer_outputs(const layer *l) {
    return l->group_out_channels ? l->group_out_channels : l->out.channels;
}

/* Input channels of a layer's op: a convolution group shares one input; the layers of a
 * BatchNorm group, each as wide as its output, have theirs side by side. */
static int layer_inputs(const layer *l) {
    return l->kind == LAYER_BATCHNORM ? layer_outputs(l) : l->in.channels;
}

int network_layer_backward_runs(const model *m, const layer *l, int *with_dx) {
    *with_dx = l->in.region != m->input.region;
    return !l->group_member && (*with_dx || l->kind == LAYER_CONV);
}

/* Per-image float offsets [*begin, *end) of `channels` channels of t, from its first. */
static void tensor_span(tensor_ref t, int channels, size_t *begin, size_t *end) {
    const size_t area = (size_t)t.side * (size_t)t.side;
    *begin = t.region + (size_t)t.first * area;
    *end = *begin + (size_t)channels * area;
}

/* How many floats of [begin, end) the backward pass has written so far. */
static size_t count_written(const uint8_t *written, size_t begin, size_t end) {
    size_t count = 0;
    for (size_t i = begin; i < end; i++) count += written[i];
    return count;
}

/* Walks the backward pass over one image's gradient arena: a layer writes its dx over
 * the arena when no layer before it (in backward order) wrote any of it, and adds to it
 * when they wrote all of it. Returns -1 when the list leaves that undecided (a dx written
 * in part) or a layer would read a dy nobody wrote this step: the caller then clears the
 * arena and lets every op add, as the layer lists built here never need. */
static int plan_gradient_stores(grad_store *dx_store, const model *m) {
    uint8_t *written = bneck_calloc(m->arena_per_image ? m->arena_per_image : 1, 1);
    size_t begin, end;
    tensor_span(m->logits, m->logits.channels, &begin, &end); /* the loss writes dlogits */
    memset(written + begin, 1, end - begin);
    int planned = 0;
    for (int i = m->layer_count - 1; i >= 0 && planned == 0; i--) {
        const layer *l = &m->layers[i];
        dx_store[i] = GRAD_ACCUMULATE;
        int with_dx;
        if (!network_layer_backward_runs(m, l, &with_dx)) continue;
        tensor_span(l->out, layer_outputs(l), &begin, &end);
        if (count_written(written, begin, end) != end - begin) planned = -1;
        if (!with_dx) continue;
        tensor_span(l->in, layer_inputs(l), &begin, &end);
        const size_t already = count_written(written, begin, end);
        if (already == 0) {
            dx_store[i] = GRAD_OVERWRITE;
            memset(written + begin, 1, end - begin);
        } else if (already != end - begin) {
            planned = -1;
        }
    }
    free(written);
    return planned;
}

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
    net->clears_activation_grads =
        !backend->backward_overwrites_dx || plan_gradient_stores(net->dx_store, m) != 0;
    if (net->clears_activation_grads)
        for (int i = 0; i < m->layer_count; i++) net->dx_store[i] = GRAD_ACCUMULATE;
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
    /* Everything below the logits, whose gradient was just written, adds when cleared. */
    if (net->clears_activation_grads)
        be->zero(net->activation_grads, m->logits.region * batch * sizeof(float));
    for (int i = m->layer_count - 1; i >= 0; i--) {
        const layer *l = &m->layers[i];
        int with_dx; /* a group's first layer, reached last, back-propagates the group */
        if (!network_layer_backward_runs(m, l, &with_dx)) continue;
        const float *x = network_tensor(net, l->in, batch);
        const float *y = network_tensor(net, l->out, batch);
        const float *dy = network_tensor_grad(net, l->out, batch);
        float *dx = with_dx ? network_tensor_grad(net, l->in, batch) : NULL;
        const grad_store dx_store = net->dx_store[i];
        const int side = l->in.side, channels = l->in.channels;
        const int planes = channels * batch;
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 1, 0);
        switch (l->kind) {
        case LAYER_CONV:
            be->conv2d_backward(dx, net->grads + l->weight, net->grads + l->bias, dx_store, dy, x,
                                net->params + l->weight, net->workspace, batch, side, side,
                                channels, layer_outputs(l), l->kernel);
            break;
        case LAYER_BATCHNORM:
            be->batchnorm_backward(dx, net->grads + l->weight, net->grads + l->bias, dx_store, dy,
                                   x, y, net->params + l->weight, net->saved + l->batch_mean,
                                   net->saved + l->batch_invstd, layer_outputs(l),
                                   (size_t)batch * side * side);
            break;
        case LAYER_MAXPOOL3:
            be->maxpool3x3_backward(dx, dx_store, dy, layer_argmax(net, i, batch), planes, side,
                                    side);
            break;
        case LAYER_AVGPOOL2: be->avgpool2x2_backward(dx, dx_store, dy, planes, side, side); break;
        case LAYER_GLOBAL_AVGPOOL:
            be->global_avgpool_backward(dx, dx_store, dy, planes, side * side);
            break;
        case LAYER_DENSE:
            be->dense_backward(dx, net->grads + l->weight, net->grads + l->bias, dx_store, dy, x,
                               net->params + l->weight, batch, channels, l->out.channels);
            break;
        }
        if (net->layer_hook) net->layer_hook(net->layer_hook_context, l, i, 1, 1);
    }
}
