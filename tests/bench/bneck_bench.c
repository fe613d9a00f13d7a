/* bneck-bench: training images/s of the study's five patterns on the CPU backend (or the
 * GPU one), batch 128, random data: the time of a whole step (forward, loss, backward,
 * Adam), median over steps after a warm-up. Compare with tests/bench/torch_bench.py, run
 * side by side by tests/bench/compare_cpu.sh.
 *
 * On the CUDA backend, --math picks strict fp32 (the default) or TF32 tensor cores, and
 * --graph captures the step's forward, loss and backward once (after a plain warm-up
 * step) and relaunches that CUDA graph; the input upload and the Adam step stay outside
 * the graph, as cuda_graph.h requires.
 *
 * usage: bneck-bench [--threads N] [--steps N] [--warmup N] [--batch N] [--patterns ABCDE]
 *                    [--channels 3] [--device cpu|cuda|auto] [--math fp32|tf32] [--graph] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/network.h"
#ifdef BNECK_HAVE_CUDA
#include <cuda_profiler_api.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_graph.h"
#endif

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_int(const char *option, const char *value, int minimum) {
    char *end = NULL;
    long parsed = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || parsed < minimum || parsed > 1 << 20) {
        fprintf(stderr, "bneck-bench: %s expects an integer >= %d, got '%s'\n", option, minimum,
                value ? value : "");
        exit(2);
    }
    return (int)parsed;
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), steps = 5, warmup = 2, batch = 128;
    int channels = 3;
    const char *patterns = "ABCDE", *device = "cpu", *math = NULL;
    int graph = 0;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--threads")) threads = parse_int(argv[i], value, 1), i++;
        else if (!strcmp(argv[i], "--steps")) steps = parse_int(argv[i], value, 1), i++;
        else if (!strcmp(argv[i], "--warmup")) warmup = parse_int(argv[i], value, 0), i++;
        else if (!strcmp(argv[i], "--batch")) batch = parse_int(argv[i], value, 1), i++;
        else if (!strcmp(argv[i], "--channels")) channels = parse_int(argv[i], value, 1), i++;
        else if (!strcmp(argv[i], "--patterns") && value) patterns = value, i++;
        else if (!strcmp(argv[i], "--device") && value) device = value, i++;
        else if (!strcmp(argv[i], "--math") && value) math = value, i++;
        else if (!strcmp(argv[i], "--graph")) graph = 1;
        else {
            fprintf(stderr, "usage: bneck-bench [--threads N] [--steps N] [--warmup N] "
                            "[--batch N] [--patterns ABCDE] [--channels C] [--device D] "
                            "[--math fp32|tf32] [--graph]\n");
            return 2;
        }
    }
    if (math && strcmp(math, "fp32") && strcmp(math, "tf32")) {
        fprintf(stderr, "bneck-bench: --math expects fp32 or tf32, got '%s'\n", math);
        return 2;
    }
    if (graph && warmup < 2) warmup = 2; /* a plain warm-up step, then the capture */
    cpu_set_threads(threads);
    bneck_error err;
    char note[700];
    const backend_ops *backend = backend_select(device, 0, note, sizeof note, &err);
    if (!backend) {
        fprintf(stderr, "bneck-bench: %s\n", err.message);
        return 1;
    }
    if (note[0]) fprintf(stderr, "bneck-bench: %s\n", note);
    const char *math_name = "fp32"; /* the CPU backend computes in fp32 */
#ifdef BNECK_HAVE_CUDA
    const int on_gpu = backend == &cuda_backend;
    if (on_gpu) {
        if (math) cuda_backend_set_math(strcmp(math, "tf32") ? CUDA_MATH_FP32 : CUDA_MATH_TF32);
        math_name = cuda_backend_math_name();
    }
#else
    const int on_gpu = 0;
#endif
    if (!on_gpu && math && strcmp(math, "fp32")) {
        fprintf(stderr, "bneck-bench: --math %s needs the CUDA backend (got %s)\n", math,
                backend->name);
        return 2;
    }
    if (!on_gpu && graph) {
        fprintf(stderr, "bneck-bench: --graph needs the CUDA backend (got %s)\n", backend->name);
        return 2;
    }
    printf("# bneck %s, backend %s (%s), threads %d, batch %d", BNECK_GIT_COMMIT, backend->name,
           backend_versions(backend), cpu_threads(), batch);
    if (on_gpu) printf(", math %s, graph %s", math_name, graph ? "on" : "off");
    printf("\n");
    printf("framework,pattern,median_step_s,images_per_s\n");

    const size_t input_floats = (size_t)batch * channels * 32 * 32;
    float *input = malloc(input_floats * sizeof(float));
    uint8_t *labels = malloc((size_t)batch);
    for (size_t i = 0; i < input_floats; i++) input[i] = rng_uniform(1, i);
    for (int i = 0; i < batch; i++) labels[i] = (uint8_t)rng_below(2, (uint64_t)i, 10);

    for (const char *p = patterns; *p; p++) {
        const model_pattern *pattern = NULL;
        for (int i = 0; i < 5; i++)
            if (model_study_patterns[i].name[0] == *p) pattern = &model_study_patterns[i];
        if (!pattern) {
            fprintf(stderr, "bneck-bench: unknown pattern '%c' (expected A-E)\n", *p);
            return 2;
        }
        model m;
        model_spec spec = {pattern->mode, pattern->alpha, channels, POOL_BRANCH_KERAS};
        static network net;
        if (model_build(&m, &spec, &err) || network_create(&net, &m, backend, batch, &err)) {
            fprintf(stderr, "bneck-bench: %s\n", err.message);
            return 1;
        }
        network_init_params(&net, 1, INIT_GLOROT);
        float *adam_m = backend->alloc(m.param_count * sizeof(float));
        float *adam_v = backend->alloc(m.param_count * sizeof(float));
        double *times = malloc((size_t)steps * sizeof(double));
#ifdef BNECK_HAVE_CUDA
        cuda_graph *step_graph = graph ? cuda_graph_create() : NULL;
        double *loss_totals = graph ? backend->alloc(CUDA_LOSS_TOTALS * sizeof(double)) : NULL;
#endif
        for (int step = 0; step < warmup + steps; step++) {
            backend->synchronize();
#ifdef BNECK_HAVE_CUDA
            /* the timed steps are the profiler's capture range (for nsys
             * --capture-range=cudaProfilerApi); without a profiler these do nothing */
            if (on_gpu && step == warmup) (void)cudaProfilerStart();
#endif
            const double started = timer_now();
            backend->upload(network_tensor(&net, m.input, batch), input, input_floats * sizeof(float));
#ifdef BNECK_HAVE_CUDA
            if (step_graph && step > 0) {
                /* net.labels holds the labels since the warm-up step's network_loss */
                if (!cuda_graph_ready(step_graph)) {
                    cuda_graph_begin_capture(step_graph);
                    network_forward(&net, batch, 1, 1e-3f, 0.99f);
                    cuda_softmax_xent_device(loss_totals,
                                             network_tensor_grad(&net, m.logits, batch),
                                             network_tensor(&net, m.logits, batch), net.labels,
                                             1.0f / batch, batch, MODEL_CLASSES);
                    network_backward(&net, batch);
                    char message[512];
                    if (cuda_graph_end_capture_and_launch(step_graph, message, sizeof message)) {
                        fprintf(stderr, "bneck-bench: CUDA graph of pattern %s: %s\n",
                                pattern->name, message);
                        return 1;
                    }
                    fprintf(stderr, "bneck-bench: pattern %s: CUDA graph of %zu nodes\n",
                            pattern->name, cuda_graph_node_count(step_graph));
                } else {
                    cuda_graph_launch(step_graph);
                }
            } else
#endif
            {
                network_forward(&net, batch, 1, 1e-3f, 0.99f);
                network_loss(&net, labels, 1.0f / batch, batch, NULL);
                network_backward(&net, batch);
            }
            backend->adam_step(net.params, adam_m, adam_v, net.grads, 1e-3f, 0.9f, 0.999f, 1e-7f,
                               ADAM_EPS_KERAS, step + 1, m.param_count);
            backend->synchronize();
            if (step >= warmup) times[step - warmup] = timer_now() - started;
        }
#ifdef BNECK_HAVE_CUDA
        if (on_gpu) (void)cudaProfilerStop();
#endif
        qsort(times, (size_t)steps, sizeof(double), compare_doubles);
        const double median = steps % 2 ? times[steps / 2]
                                         : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        printf("bneck,%s,%.4f,%.1f\n", pattern->name, median, batch / median);
        fflush(stdout);
        free(times);
#ifdef BNECK_HAVE_CUDA
        cuda_graph_destroy(step_graph);
        if (loss_totals) backend->release(loss_totals);
#endif
        backend->release(adam_m);
        backend->release(adam_v);
        network_destroy(&net);
    }
    free(input);
    free(labels);
    backend_shutdown(backend);
    return 0;
}
