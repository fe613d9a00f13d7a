/* Training steps replayed as CUDA graphs: the forward pass, the loss and the backward pass
 * of a full batch are recorded once and relaunched with one call per step, so the host no
 * longer issues a step's ~1,000 kernels one by one (cuda_graph.h). Loss and hits then
 * accumulate on the GPU and are read when the trainer reports them.
 *
 * The trainer runs a step op by op where a graph cannot serve it: the first full batch
 * (the warm-up that picks convolution algorithms and grows the scratch buffers), a batch
 * of another size (an epoch's last, smaller one), and every step once a recording could
 * not be ended or instantiated (said once on stderr). A call that fails while it is being
 * recorded is not caught here: its own error check ends the run, as anywhere else. A graph whose scratch buffers were reallocated since its capture
 * (an evaluation with larger batches) is captured again. */
#ifndef BNECK_TRAIN_STEP_GRAPH_H
#define BNECK_TRAIN_STEP_GRAPH_H

#include "train/train.h"

typedef struct step_graph step_graph;

/* The [run] graph setting: auto (graphs on a CUDA backend when a run has one rank: with
 * several, the gradient sums overlap the backward pass instead, which a graph cannot
 * hold), on (graphs whenever the backend is CUDA; several ranks then sum the gradients
 * after the graph), off. Returns -1 for another name. */
typedef enum { STEP_GRAPH_AUTO = 0, STEP_GRAPH_ON = 1, STEP_GRAPH_OFF = 2 } step_graph_mode;
int step_graph_mode_from_name(const char *name);

/* Points the trainer's recorded steps at CUDA graphs when the backend and the mode call
 * for them; returns NULL (the trainer runs op by op) otherwise. Call after trainer_create
 * and before the first epoch; release after the last. */
step_graph *step_graph_attach(trainer *t, step_graph_mode mode);
void step_graph_release(step_graph *g);

/* The same without a trainer (bneck-bench times its own steps through these): a graph for
 * steps of `batch` images of a network on the CUDA backend (NULL without CUDA).
 * step_graph_run runs the step of `count` images (input and labels already in the
 * network) from the graph and returns 1, or returns 0 when the caller must run it op by
 * op: the first step of that size (the warm-up), another size, or a failed capture
 * (step_graph_failed says which). */
step_graph *step_graph_create(int batch);
int step_graph_run(step_graph *g, network *net, int count, float grad_scale, float bn_eps,
                   float bn_momentum);
int step_graph_failed(const step_graph *g);
/* Kernels and copies in the last capture (0 before one). */
size_t step_graph_node_count(const step_graph *g);
/* Steps run from a graph so far (its captures included), for logs and tests. */
long step_graph_replays(const step_graph *g);
/* Recordings made so far: the first, then one each time the graph went stale. */
long step_graph_captures(const step_graph *g);

#endif
