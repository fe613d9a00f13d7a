/* CUDA graphs of the backend's stream (see cuda_graph.h). */
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_internal.h"
}

struct cuda_graph {
    cudaGraph_t graph;    /* the last recording */
    cudaGraphExec_t exec; /* what is launched */
    size_t nodes;
    int capturing;
    unsigned long scratch_generation; /* cuda_ctx's at the capture */
};

extern "C" cuda_graph *cuda_graph_create(void) {
    cuda_require_init("cuda_graph_create");
    cuda_graph *g = (cuda_graph *)calloc(1, sizeof *g);
    if (!g) CUDA_FAIL("cuda_graph_create: out of host memory");
    return g;
}

/* Drops the recorded and the executable graph. A failed recapture leaves none: the one from
 * before was recorded for what may no longer hold (its generation was replaced when the
 * capture began). */
static void forget_graph(cuda_graph *g) {
    if (g->exec) CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    if (g->graph) CUDA_CHECK(cudaGraphDestroy(g->graph));
    g->exec = NULL;
    g->graph = NULL;
    g->nodes = 0;
}

extern "C" void cuda_graph_destroy(cuda_graph *g) {
    if (!g) return;
    if (g->capturing) {
        cudaGraph_t abandoned = NULL;
        (void)cudaStreamEndCapture(cuda_ctx.stream, &abandoned);
        if (abandoned) (void)cudaGraphDestroy(abandoned);
        (void)cudaGetLastError();
    }
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx.stream));
    forget_graph(g);
    free(g);
}

extern "C" void cuda_graph_begin_capture(cuda_graph *g) {
    cuda_require_init("cuda_graph_begin_capture");
    if (g->capturing) CUDA_FAIL("cuda_graph_begin_capture: already capturing");
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(cuda_ctx.stream, &status));
    if (status != cudaStreamCaptureStatusNone)
        CUDA_FAIL("cuda_graph_begin_capture: the backend's stream is already being captured");
    /* Thread-local: only this thread's capture-unsafe calls can break the capture; in
     * global mode any thread's (NCCL's proxy thread, say) would. */
    CUDA_CHECK(cudaStreamBeginCapture(cuda_ctx.stream, cudaStreamCaptureModeThreadLocal));
    g->capturing = 1;
    g->scratch_generation = cuda_ctx.scratch_generation;
}

static int failure(char *message, size_t capacity, const char *call, cudaError_t status) {
    if (message && capacity)
        snprintf(message, capacity, "%s: %s (%s)", call, cudaGetErrorString(status),
                 cudaGetErrorName(status));
    (void)cudaGetLastError(); /* not sticky: the context stays usable */
    return -1;
}

extern "C" int cuda_graph_end_capture_and_launch(cuda_graph *g, char *message, size_t capacity) {
    if (!g->capturing) CUDA_FAIL("cuda_graph_end_capture_and_launch: no capture in progress");
    g->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t status = cudaStreamEndCapture(cuda_ctx.stream, &graph);
    if (status != cudaSuccess) {
        if (graph) (void)cudaGraphDestroy(graph);
        forget_graph(g);
        return failure(message, capacity, "cudaStreamEndCapture", status);
    }
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(graph, NULL, &nodes));
    /* (No scratch buffer grew during the capture: cuda_scratch refuses to inside one.) */

    /* Same topology as the executable graph: update its parameters in place. */
    int updated = 0;
    if (g->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(g->exec, graph, &info) == cudaSuccess)
            updated = 1;
        else
            (void)cudaGetLastError();
    }
    if (!updated) {
        if (g->exec) CUDA_CHECK(cudaGraphExecDestroy(g->exec));
        g->exec = NULL;
        /* cuBLAS has its own workspace (cublasSetWorkspace), so nothing should allocate
         * inside a capture; should a library still do (cudaMallocAsync), free it at each
         * relaunch rather than fail the launch */
        status = cudaGraphInstantiateWithFlags(&g->exec, graph,
                                               cudaGraphInstantiateFlagAutoFreeOnLaunch);
        if (status != cudaSuccess) {
            g->exec = NULL;
            (void)cudaGraphDestroy(graph);
            forget_graph(g);
            return failure(message, capacity, "cudaGraphInstantiateWithFlags", status);
        }
    }
    if (g->graph) CUDA_CHECK(cudaGraphDestroy(g->graph));
    g->graph = graph;
    g->nodes = nodes;
    CUDA_CHECK(cudaGraphLaunch(g->exec, cuda_ctx.stream));
    return 0;
}

extern "C" void cuda_graph_launch(cuda_graph *g) {
    if (!g || !g->exec) CUDA_FAIL("cuda_graph_launch: no captured graph");
    if (g->capturing) CUDA_FAIL("cuda_graph_launch: inside its own capture");
    if (cuda_graph_stale(g))
        CUDA_FAIL("cuda_graph_launch: the backend's scratch buffers were reallocated since the "
                  "capture (an op with larger shapes ran after it), so the graph refers to freed "
                  "memory: capture it again");
    CUDA_CHECK(cudaGraphLaunch(g->exec, cuda_ctx.stream));
}

extern "C" int cuda_graph_stale(const cuda_graph *g) {
    return g && g->exec && g->scratch_generation != cuda_ctx.scratch_generation;
}

extern "C" int cuda_graph_ready(const cuda_graph *g) { return g && g->exec; }
extern "C" size_t cuda_graph_node_count(const cuda_graph *g) { return g ? g->nodes : 0; }
