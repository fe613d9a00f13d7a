#include "train/step_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int step_graph_mode_from_name(const char *name) {
    if (!strcmp(name, "auto")) return STEP_GRAPH_AUTO;
    if (!strcmp(name, "on")) return STEP_GRAPH_ON;
    if (!strcmp(name, "off")) return STEP_GRAPH_OFF;
    return -1;
}

#ifdef BNECK_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_graph.h"

struct step_graph {
    cuda_graph *graph;
    double *totals;  /* device: loss sum, hits, bad labels (CUDA_LOSS_TOTALS) */
    int batch;       /* the full local batch, the only size recorded */
    int warmed_up;   /* a step of that size ran op by op */
    int failed;      /* a capture failed: op by op from then on */
    long replays;    /* steps run from the graph, capture included */
    long captures;   /* recordings made (the first, then one per stale graph) */
    float grad_scale, bn_eps, bn_momentum; /* what the capture froze */
};

/* Records forward, loss and backward and launches the recording (which runs this step). */
static int capture_and_launch(step_graph *g, network *net, int count, float grad_scale,
                              float bn_eps, float bn_momentum) {
    /* The layer hook queues gradient parts to NCCL during the backward pass, which a
     * capture cannot hold: the trainer queues every part after the graph instead. */
    const network_layer_hook hook = net->layer_hook;
    net->layer_hook = NULL;
    cuda_graph_begin_capture(g->graph);
    network_forward(net, count, 1, bn_eps, bn_momentum);
    cuda_softmax_xent_device(g->totals, network_tensor_grad(net, net->model.logits, count),
                             network_tensor(net, net->model.logits, count), net->labels,
                             grad_scale, count, MODEL_CLASSES);
    network_backward(net, count);
    net->layer_hook = hook;
    char message[512];
    if (cuda_graph_end_capture_and_launch(g->graph, message, sizeof message)) {
        fprintf(stderr, "bneck: recording the training step as a CUDA graph failed (%s); "
                        "training op by op\n", message);
        g->failed = 1;
        return 0;
    }
    g->captures++;
    g->grad_scale = grad_scale;
    g->bn_eps = bn_eps;
    g->bn_momentum = bn_momentum;
    return 1;
}

step_graph *step_graph_create(int batch) {
    step_graph *g = bneck_calloc(1, sizeof *g);
    g->graph = cuda_graph_create();
    g->totals = cuda_backend.alloc(CUDA_LOSS_TOTALS * sizeof(double)); /* zero-filled */
    g->batch = batch;
    return g;
}

int step_graph_run(step_graph *g, network *net, int count, float grad_scale, float bn_eps,
                   float bn_momentum) {
    if (g->failed || count != g->batch) return 0;
    if (!g->warmed_up) {
        g->warmed_up = 1;
        return 0;
    }
    const int frozen_differently = grad_scale != g->grad_scale || bn_eps != g->bn_eps ||
                                   bn_momentum != g->bn_momentum;
    if (!cuda_graph_ready(g->graph) || cuda_graph_stale(g->graph) || frozen_differently) {
        if (!capture_and_launch(g, net, count, grad_scale, bn_eps, bn_momentum)) return 0;
    } else {
        cuda_graph_launch(g->graph);
    }
    g->replays++;
    return 1;
}

int step_graph_failed(const step_graph *g) { return g && g->failed; }

size_t step_graph_node_count(const step_graph *g) {
    return g ? cuda_graph_node_count(g->graph) : 0;
}

/* The trainer's step_recorder hooks. */
static int run_recorded_step(void *context, network *net, int count, float grad_scale,
                             float bn_eps, float bn_momentum) {
    return step_graph_run(context, net, count, grad_scale, bn_eps, bn_momentum);
}

/* Adds the loss sum and hits of the steps run from the graph since the last call. */
static void take_recorded_totals(void *context, double *loss_sum, double *correct) {
    step_graph *g = context;
    double loss = 0.0, hits = 0.0;
    cuda_loss_totals_read(g->totals, &loss, &hits);
    cuda_backend.zero(g->totals, CUDA_LOSS_TOTALS * sizeof(double));
    *loss_sum += loss;
    *correct += hits;
}

step_graph *step_graph_attach(trainer *t, step_graph_mode mode) {
    if (mode == STEP_GRAPH_OFF || t->net.backend != &cuda_backend) return NULL;
    if (mode == STEP_GRAPH_AUTO && t->comm.ranks > 1) return NULL;
    step_graph *g = step_graph_create(t->full_local_batch);
    t->recorded_steps = (step_recorder){
        .context = g, .run = run_recorded_step, .take_totals = take_recorded_totals};
    return g;
}

void step_graph_release(step_graph *g) {
    if (!g) return;
    cuda_graph_destroy(g->graph);
    cuda_backend.release(g->totals);
    free(g);
}

long step_graph_replays(const step_graph *g) { return g ? g->replays : 0; }

long step_graph_captures(const step_graph *g) { return g ? g->captures : 0; }
#else
/* Without CUDA there is nothing to record: every step runs op by op. */
step_graph *step_graph_attach(trainer *t, step_graph_mode mode) {
    (void)t, (void)mode;
    return NULL;
}

step_graph *step_graph_create(int batch) {
    (void)batch;
    return NULL;
}

int step_graph_run(step_graph *g, network *net, int count, float grad_scale, float bn_eps,
                   float bn_momentum) {
    (void)g, (void)net, (void)count, (void)grad_scale, (void)bn_eps, (void)bn_momentum;
    return 0;
}

int step_graph_failed(const step_graph *g) {
    (void)g;
    return 0;
}

size_t step_graph_node_count(const step_graph *g) {
    (void)g;
    return 0;
}

void step_graph_release(step_graph *g) { (void)g; }

long step_graph_replays(const step_graph *g) {
    (void)g;
    return 0;
}

long step_graph_captures(const step_graph *g) {
    (void)g;
    return 0;
}
#endif
