/* CUDA graphs of the backend's work: record the ops a training step queues on the
 * backend's stream once, then relaunch the whole recording with one call per step, so the
 * per-op launch costs of the host (a few microseconds for each of a step's ~1,000 kernels)
 * disappear. Plain C.
 *
 *     cuda_graph *g = cuda_graph_create();
 *     step 0: run the step normally (the warm-up: see constraint 1)
 *     step 1: cuda_graph_begin_capture(g);
 *             ...queue the step's backend ops exactly as in step 0...
 *             if (cuda_graph_end_capture_and_launch(g, message, sizeof message)) fail;
 *     step n: (inputs refreshed in place, outside the graph) cuda_graph_launch(g);
 *     cuda_graph_destroy(g);
 *
 * Constraints (what is captured is replayed verbatim):
 *  1. Warm up first: the first call of each convolution shape searches for algorithms
 *     (synchronising, allocating), and the backend's scratch buffers and cuBLAS grow on
 *     first use. Run one identical step uncaptured before capturing it.
 *  2. No host synchronisation inside the capture: not upload, download, synchronize,
 *     alloc, release, nor the table's softmax_xent (it copies the loss to the host). Use
 *     cuda_softmax_xent_device (cuda_backend.h), which adds loss and hits to device
 *     totals read once per epoch with cuda_loss_totals_read, and labels already on the
 *     device (cuda_dataset_batch writes them). A forbidden call inside a capture fails
 *     the program at that call, with the runtime's "operation not permitted when stream
 *     is capturing" and its file:line.
 *  3. Every pointer and every scalar argument is frozen at capture: buffers must stay at
 *     the same addresses with contents refreshed in place (the input tensor, the labels),
 *     and host-side values that change per step must not be captured: Adam's learning
 *     rate and bias corrections (computed from the step count on the host) and the
 *     data assembly's epoch key. Queue cuda_dataset_batch and adam_step outside the graph
 *     (before and after cuda_graph_launch, on the same stream, so order is kept), or
 *     capture again when they change (end_capture updates the executable graph in place
 *     when only parameters changed, which is cheap).
 *  4. One graph per shape: the last, smaller batch of an epoch (50,000 = 390 x 128 + 80)
 *     needs its own graph, or runs uncaptured.
 *  5. Settings (cuda_backend_set_math, set_deterministic, set_conv_transpose,
 *     set_conv_engine, set_batchnorm_fused_max_plane) are frozen too: run one step
 *     uncaptured and capture again after changing them (a BatchNorm moved from one kernel
 *     to three needs reduction space the warm-up step allocates). So are the backend's
 *     scratch buffers (cuDNN workspace, reduction space): an op with larger shapes run
 *     after the capture (a bigger batch, another network) reallocates them, and
 *     cuda_graph_launch then fails with a message instead of replaying on freed memory.
 *     Capture again then.
 *  6. NCCL: keep cuda_nccl_allreduce_* outside the graph (it polls for dead peers).
 * All calls need cuda_backend_init; a graph is launched on the backend's stream. */
#ifndef BNECK_BACKEND_CUDA_GRAPH_H
#define BNECK_BACKEND_CUDA_GRAPH_H

#include <stddef.h>

typedef struct cuda_graph cuda_graph;

cuda_graph *cuda_graph_create(void);
/* Waits for launched work; frees the graph. NULL is ignored. */
void cuda_graph_destroy(cuda_graph *g);

/* Starts recording the backend's stream (thread-local capture mode: unsafe calls from this
 * thread fail while it lasts; NCCL's proxy threads cannot break it). Fatal when a capture
 * is already in progress. */
void cuda_graph_begin_capture(cuda_graph *g);

/* Ends the recording and makes it executable (updating the existing executable in place
 * when the new recording has the same shape, else instantiating anew), then launches it
 * once: the captured step runs now. 0, or -1 with the runtime's message when the capture
 * was invalidated or cannot be instantiated (the graph is then not ready). */
int cuda_graph_end_capture_and_launch(cuda_graph *g, char *message, size_t capacity);

/* Launches the executable graph again on the backend's stream (asynchronous). Fatal when
 * no capture succeeded yet. */
void cuda_graph_launch(cuda_graph *g);

/* Non-zero when the backend's scratch buffers were reallocated since the capture (see
 * constraint 5): cuda_graph_launch would refuse; capture again. */
int cuda_graph_stale(const cuda_graph *g);

/* Non-zero once a capture succeeded (cuda_graph_launch may be called). */
int cuda_graph_ready(const cuda_graph *g);
/* Nodes (kernels, copies, memsets) in the last recording; for logs. */
size_t cuda_graph_node_count(const cuda_graph *g);

#endif
