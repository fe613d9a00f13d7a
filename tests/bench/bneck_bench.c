/* bneck-bench: training images/s of the study's five patterns on the CPU backend (or the
 * GPU one), batch 128, random data: the time of a whole step (forward, loss, backward,
 * Adam) on one batch uploaded beforehand, median over steps after a warm-up. Compare with tests/bench/torch_bench.py, run
 * side by side by tests/bench/compare_cpu.sh.
 *
 * On the CUDA backend, --math picks strict fp32 (the default), TF32 tensor cores or bf16
 * mixed precision, --conv the engine of the k x k convolutions (cuda_backend.h), and
 * --graph runs the steps as the trainer does with [run] graph (train/step_graph.h): the
 * forward, loss and backward are captured once as a CUDA graph (after a plain warm-up
 * step) and relaunched; the Adam step stays outside the graph, as cuda_graph.h requires.
 *
 * --separate-layers builds every layer on its own instead of grouped (model_grouping in
 * model/model.h: one GEMM per module input, one BatchNorm call per group of adjacent
 * outputs), to time what grouping saves.
 *
 * --profile N adds N more steps per pattern, synchronised after every layer op, and prints
 * where the time goes (per kind of op, then the costliest layers) as '#' lines after the
 * pattern's CSV line, with the rate of the convolutions and the dense layer in GFLOP/s
 * (from their multiply-add counts: how near the machine's peak they run). The
 * synchronisation costs a few microseconds per op, so the parts add up to a little more
 * than an unprofiled step. --profile-layers N lists that many of the costliest layers
 * (12 unless said; 0 lists them all).
 *
 * usage: bneck-bench [--threads N] [--steps N] [--warmup N] [--batch N] [--patterns ABCDE|A,E]
 *                    [--channels 3] [--device cpu|cuda|auto] [--math fp32|tf32|bf16]
 *                    [--conv auto|cudnn|gemm] [--graph] [--separate-layers]
 *                    [--profile N] [--profile-layers N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/cli.h"
#include "core/rng.h"
#include "core/timer.h"
#include "core/version.h"
#include "model/network.h"
#include "train/step_graph.h"
#ifdef BNECK_HAVE_CUDA
#include <cuda_profiler_api.h>

#include "backend/cuda/cuda_backend.h"
#endif

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --- --profile: per-layer times through the network's layer hook ------------------------- */

typedef struct layer_profile {
    const backend_ops *backend;
    double started;
    double seconds[MODEL_MAX_LAYERS][2]; /* [layer][backward] */
} layer_profile;

static void profile_hook(void *context, const layer *l, int index, int backward, int after) {
    (void)l;
    layer_profile *profile = context;
    profile->backend->synchronize();
    const double now = timer_now();
    if (after) profile->seconds[index][backward] += now - profile->started;
    else profile->started = now;
}

/* The kind of op a layer is, for the summary: "conv 3x3", "batchnorm+relu", ... */
static void op_kind(char *out, size_t capacity, const layer *l) {
    switch (l->kind) {
    case LAYER_CONV: snprintf(out, capacity, "conv %dx%d", l->kernel, l->kernel); break;
    case LAYER_BATCHNORM: snprintf(out, capacity, "batchnorm+relu"); break;
    case LAYER_MAXPOOL3: snprintf(out, capacity, "maxpool 3x3"); break;
    case LAYER_AVGPOOL2: snprintf(out, capacity, "avgpool 2x2"); break;
    case LAYER_GLOBAL_AVGPOOL: snprintf(out, capacity, "global avgpool"); break;
    case LAYER_DENSE: snprintf(out, capacity, "dense"); break;
    }
}

/* Floating-point operations of layer `index`'s op in one training step: 2 a multiply-add,
 * the backward pass twice the forward's (data and weight gradients), or once where the
 * input needs no gradient. A group's first layer does its members' op too (they follow it
 * and count 0); layers without multiply-adds count 0. */
static double op_step_flops(const model *m, int index, int batch) {
    const layer *l = &m->layers[index];
    if (l->group_member || (l->kind != LAYER_CONV && l->kind != LAYER_DENSE)) return 0.0;
    double macs = (double)l->macs;
    for (int j = index + 1; j < m->layer_count && m->layers[j].group_member; j++)
        macs += (double)m->layers[j].macs;
    int with_dx = 0;
    network_layer_backward_runs(m, l, &with_dx);
    return 2.0 * macs * batch * (with_dx ? 3 : 2);
}

/* Activation bytes a step of `batch` images moves through layer i, forward and backward
 * (model_activation_traffic's op-by-op floor, to set each op's time against). */
static double op_step_bytes(const model *m, int i, int batch) {
    const layer *l = &m->layers[i];
    return (double)batch *
           (double)(layer_activation_traffic(m, l, 0) + layer_activation_traffic(m, l, 1));
}

/* GFLOP/s (or GB/s) of `flops` (bytes) in `seconds` as text, or "" when there is nothing
 * to rate. */
static void format_rate(char *out, size_t capacity, double flops, double seconds) {
    if (flops > 0 && seconds > 0) snprintf(out, capacity, "%.1f", flops / seconds / 1e9);
    else if (capacity) out[0] = '\0';
}

typedef struct ranked_layer {
    int index;
    double total;
} ranked_layer;

static int compare_ranked(const void *a, const void *b) {
    const double x = ((const ranked_layer *)a)->total, y = ((const ranked_layer *)b)->total;
    return (x < y) - (x > y);
}

/* Runs `steps` profiled training steps of net (input and labels already uploaded) and
 * prints the breakdown per step in ms, with the `listed` costliest layers (0: all). */
static void profile_steps(network *net, float *adam_m, float *adam_v, int steps, int batch,
                          long first_step, const char *name, int listed) {
    const backend_ops *be = net->backend;
    const model *m = &net->model;
    static layer_profile profile;
    memset(&profile, 0, sizeof profile);
    profile.backend = be;
    double forward = 0, loss = 0, backward = 0, adam = 0, whole = 0;
    net->layer_hook = profile_hook;
    net->layer_hook_context = &profile;
    for (int step = 0; step < steps; step++) {
        be->synchronize();
        const double t1 = timer_now();
        network_forward(net, batch, 1, 1e-3f, 0.99f);
        be->synchronize();
        const double t2 = timer_now();
        network_loss(net, NULL, 1.0f / batch, batch, NULL);
        be->synchronize();
        const double t3 = timer_now();
        network_backward(net, batch);
        be->synchronize();
        const double t4 = timer_now();
        be->adam_step(net->params, adam_m, adam_v, net->grads, 1e-3f, 0.9f, 0.999f, 1e-7f,
                      ADAM_EPS_KERAS, first_step + step, m->param_count);
        be->synchronize();
        const double t5 = timer_now();
        forward += t2 - t1, loss += t3 - t2, backward += t4 - t3;
        adam += t5 - t4, whole += t5 - t1;
    }
    net->layer_hook = NULL;

    const double ms = 1e3 / steps; /* seconds in total -> ms per step */
    double layers_fwd = 0, layers_bwd = 0;
    char kinds[16][32];
    double kind_seconds[16][2], kind_flops[16]; /* flops per step (op_step_flops) */
    double kind_bytes[16];                      /* bytes per step (op_step_bytes) */
    int kind_count = 0;
    memset(kind_seconds, 0, sizeof kind_seconds);
    memset(kind_flops, 0, sizeof kind_flops);
    memset(kind_bytes, 0, sizeof kind_bytes);
    for (int i = 0; i < m->layer_count; i++) {
        char kind[32];
        op_kind(kind, sizeof kind, &m->layers[i]);
        int k = 0;
        while (k < kind_count && strcmp(kinds[k], kind)) k++;
        if (k == kind_count && kind_count < 16) snprintf(kinds[kind_count++], 32, "%s", kind);
        if (k == 16) continue;
        kind_seconds[k][0] += profile.seconds[i][0];
        kind_seconds[k][1] += profile.seconds[i][1];
        layers_fwd += profile.seconds[i][0];
        layers_bwd += profile.seconds[i][1];
        kind_flops[k] += op_step_flops(m, i, batch);
        kind_bytes[k] += op_step_bytes(m, i, batch);
    }
    printf("# profile of pattern %s: %d steps synchronised after every op, ms per step; GB/s:\n"
           "# activation bytes moved op by op (bneck-theory's step bytes) over the op's time\n",
           name, steps);
    printf("# %-22s %9s %9s %9s %7s %9s %7s\n", "op", "forward", "backward", "total", "share",
           "GFLOP/s", "GB/s");
    for (int k = 0; k < kind_count; k++) {
        const double total = kind_seconds[k][0] + kind_seconds[k][1];
        char rate[16], bandwidth[16];
        format_rate(rate, sizeof rate, kind_flops[k] * steps, total);
        format_rate(bandwidth, sizeof bandwidth, kind_bytes[k] * steps, total);
        printf("# %-22s %9.3f %9.3f %9.3f %6.1f%% %9s %7s\n", kinds[k], kind_seconds[k][0] * ms,
               kind_seconds[k][1] * ms, total * ms, 100 * total / whole, rate, bandwidth);
    }
    const double rest = (forward - layers_fwd) + (backward - layers_bwd);
    printf("# %-22s %9.3f %9s %9.3f %6.1f%%\n", "loss (softmax+xent)", loss * ms, "", loss * ms,
           100 * loss / whole);
    printf("# %-22s %9s %9s %9.3f %6.1f%%\n", "adam", "", "", adam * ms, 100 * adam / whole);
    printf("# %-22s %9.3f %9.3f %9.3f %6.1f%%\n", "other (zero-fill, sync)",
           (forward - layers_fwd) * ms, (backward - layers_bwd) * ms, rest * ms,
           100 * rest / whole);
    printf("# %-22s %9.3f %9.3f %9.3f\n", "step", forward * ms, backward * ms, whole * ms);
    ranked_layer ranked[MODEL_MAX_LAYERS];
    for (int i = 0; i < m->layer_count; i++)
        ranked[i] = (ranked_layer){i, profile.seconds[i][0] + profile.seconds[i][1]};
    qsort(ranked, (size_t)m->layer_count, sizeof ranked[0], compare_ranked);
    printf("# costliest layers: %-36s %-18s %9s %9s %9s %7s\n", "name", "shape", "forward",
           "backward", "GFLOP/s", "GB/s");
    if (listed == 0 || listed > m->layer_count) listed = m->layer_count;
    for (int r = 0; r < listed; r++) {
        const int i = ranked[r].index;
        const layer *l = &m->layers[i];
        char shape[32];
        /* A layer group's first layer times the group's one op. */
        snprintf(shape, sizeof shape, "%dx%dx%d->%d%s", l->in.side, l->in.side, l->in.channels,
                 l->group_out_channels ? l->group_out_channels : l->out.channels,
                 l->group_out_channels ? " grp" : "");
        char rate[16], bandwidth[16];
        format_rate(rate, sizeof rate, op_step_flops(m, i, batch) * steps, ranked[r].total);
        format_rate(bandwidth, sizeof bandwidth, op_step_bytes(m, i, batch) * steps,
                    ranked[r].total);
        printf("#   %-52s %-18s %9.3f %9.3f %9s %7s\n", l->name, shape, profile.seconds[i][0] * ms,
               profile.seconds[i][1] * ms, rate, bandwidth);
    }
    fflush(stdout);
}

static int parse_int(const char *option, const char *value, int minimum, int maximum) {
    char *end = NULL;
    long parsed = strtol(value, &end, 10);
    if (!value[0] || *end || parsed < minimum || parsed > maximum) {
        fprintf(stderr, "bneck-bench: %s expects an integer from %d to %d, got '%s'\n", option,
                minimum, maximum, value);
        exit(2);
    }
    return (int)parsed;
}

static void usage(FILE *out) {
    fprintf(out, "usage: bneck-bench [--threads N] [--steps N] [--warmup N] [--batch N]\n"
                 "                   [--patterns ABCDE|A,E] [--channels C] [--device auto|cpu|cuda]\n"
                 "                   [--math fp32|tf32|bf16] [--conv auto|cudnn|gemm] [--graph]\n"
                 "                   [--separate-layers] [--profile N] [--profile-layers N]\n"
                 "Times training steps per pattern (median of --steps after --warmup) and prints\n"
                 "images/s; --profile N prints where N steps' time goes, per op and per layer,\n"
                 "and the convolutions' GFLOP/s; --profile-layers N lists that many of the\n"
                 "costliest layers (12 unless said; 0: all).\n"
                 "Options take their value as the next argument or after '=' (--steps=3).\n");
}

/* value must be one of the words of choices (NULL-terminated); exits 2 naming them. */
static const char *parse_choice(const char *option, const char *value, const char *const *choices) {
    if (cli_choice(value, choices) >= 0) return value;
    char expected[128];
    cli_choices_text(choices, expected, sizeof expected);
    fprintf(stderr, "bneck-bench: %s expects %s, got '%s'\n", option, expected, value);
    exit(2);
}

/* --patterns takes letters, optionally separated: "AE", "A,E" and "A E" alike. */
static int is_pattern_separator(char c) { return c == ',' || c == ' '; }

static const model_pattern *study_pattern(char name) {
    for (int i = 0; i < 5; i++)
        if (model_study_patterns[i].name[0] == name) return &model_study_patterns[i];
    return NULL;
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), steps = 5, warmup = 2, batch = 128;
    int channels = 3;
    const char *patterns = "ABCDE", *device = "cpu", *math = NULL, *engine = NULL;
    int graph = 0, profile = 0, profile_layers = 12;
    model_grouping grouping = MODEL_LAYERS_GROUPED;
    static const char *const devices[] = {"auto", "cpu", "cuda", NULL};
    static const char *const maths[] = {"fp32", "tf32", "bf16", NULL};
    static const char *const engines[] = {"auto", "cudnn", "gemm", NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        static const char *const flags[] = {"--graph", "--separate-layers", NULL};
        static const char *const valued[] = {"--threads", "--steps", "--warmup", "--batch",
                                             "--channels", "--patterns", "--device", "--math",
                                             "--conv", "--profile", "--profile-layers", NULL};
        cli_option o;
        char message[300];
        const int kind = cli_next(&o, argc, argv, &i, flags, valued, message, sizeof message);
        if (kind == CLI_ARGUMENT)
            snprintf(message, sizeof message, "unexpected argument '%.200s'", o.value);
        if (kind < 0 || kind == CLI_ARGUMENT) {
            fprintf(stderr, "bneck-bench: %s (see --help)\n", message);
            return 2;
        }
        const char *name = o.name, *value = o.value;
        if (!strcmp(name, "--threads")) threads = parse_int(name, value, 1, 4096);
        else if (!strcmp(name, "--steps")) steps = parse_int(name, value, 1, 1 << 20);
        else if (!strcmp(name, "--warmup")) warmup = parse_int(name, value, 0, 1 << 20);
        else if (!strcmp(name, "--batch")) batch = parse_int(name, value, 1, 1 << 16);
        else if (!strcmp(name, "--channels")) channels = parse_int(name, value, 1, 1 << 10);
        else if (!strcmp(name, "--patterns")) patterns = value;
        else if (!strcmp(name, "--device")) device = parse_choice(name, value, devices);
        else if (!strcmp(name, "--math")) math = parse_choice(name, value, maths);
        else if (!strcmp(name, "--conv")) engine = parse_choice(name, value, engines);
        else if (!strcmp(name, "--profile")) profile = parse_int(name, value, 1, 1 << 20);
        else if (!strcmp(name, "--profile-layers"))
            profile_layers = parse_int(name, value, 0, MODEL_MAX_LAYERS);
        else if (!strcmp(name, "--graph")) graph = 1;
        else grouping = MODEL_LAYERS_SEPARATE; /* --separate-layers */
    }
    if (graph && warmup < 2) warmup = 2; /* a plain warm-up step, then the capture */
    int pattern_count = 0;
    for (const char *p = patterns; *p; p++) { /* all checked before any is measured */
        if (is_pattern_separator(*p)) continue;
        if (!study_pattern(*p)) {
            fprintf(stderr, "bneck-bench: --patterns: unknown pattern '%c' in '%s' (expected "
                            "letters A-E, e.g. ABCDE or A,E)\n", *p, patterns);
            return 2;
        }
        pattern_count++;
    }
    if (pattern_count == 0) {
        fprintf(stderr, "bneck-bench: --patterns: no pattern in '%s' (expected letters A-E, "
                        "e.g. ABCDE or A,E)\n", patterns);
        return 2;
    }
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
        if (math) cuda_backend_set_math(cuda_math_mode_from_name(math));
        math_name = cuda_backend_math_name();
        if (engine) {
            const int e = cuda_conv_engine_from_name(engine);
            if (e < 0) {
                fprintf(stderr, "bneck-bench: --conv expects auto, cudnn or gemm, got '%s'\n",
                        engine);
                return 2;
            }
            cuda_backend_set_conv_engine(e);
        }
    }
#else
    const int on_gpu = 0;
#endif
    if (!on_gpu && math && strcmp(math, "fp32")) {
        fprintf(stderr, "bneck-bench: --math %s needs the CUDA backend (got %s)\n", math,
                backend->name);
        return 2;
    }
    if (!on_gpu && engine) {
        fprintf(stderr, "bneck-bench: --conv needs the CUDA backend (got %s)\n", backend->name);
        return 2;
    }
    if (!on_gpu && graph) {
        fprintf(stderr, "bneck-bench: --graph needs the CUDA backend (got %s)\n", backend->name);
        return 2;
    }
    printf("# bneck %s, backend %s (%s), threads %d, batch %d", bneck_git_commit, backend->name,
           backend_versions(backend), cpu_threads(), batch);
    printf(", math %s, layers %s", math_name,
           grouping == MODEL_LAYERS_GROUPED ? "grouped" : "separate");
#ifdef BNECK_HAVE_CUDA
    if (on_gpu) printf(", conv %s, graph %s", cuda_backend_conv_engine_name(), graph ? "on" : "off");
#endif
    printf("\n");
    printf("framework,pattern,median_step_s,images_per_s\n");

    const size_t input_floats = (size_t)batch * channels * 32 * 32;
    float *input = malloc(input_floats * sizeof(float));
    uint8_t *labels = malloc((size_t)batch);
    for (size_t i = 0; i < input_floats; i++) input[i] = rng_uniform(1, i);
    for (int i = 0; i < batch; i++) labels[i] = (uint8_t)rng_below(2, (uint64_t)i, 10);

    for (const char *p = patterns; *p; p++) {
        if (is_pattern_separator(*p)) continue;
        const model_pattern *pattern = study_pattern(*p);
        model m;
        model_spec spec = {pattern->mode, pattern->alpha, channels, POOL_BRANCH_KERAS, grouping};
        static network net;
        if (model_build(&m, &spec, &err) || network_create(&net, &m, backend, batch, &err)) {
            fprintf(stderr, "bneck-bench: %s\n", err.message);
            return 1;
        }
        network_init_params(&net, 1, INIT_GLOROT);
        float *adam_m = backend->alloc(m.param_count * sizeof(float));
        float *adam_v = backend->alloc(m.param_count * sizeof(float));
        double *times = malloc((size_t)steps * sizeof(double));
        step_graph *graphs = graph ? step_graph_create(batch) : NULL;
        /* the batch and its labels are uploaded once, as the trainer's batches are already
         * on the GPU (and as torch_bench.py keeps its batch there) */
        backend->upload(network_tensor(&net, m.input, batch), input, input_floats * sizeof(float));
        backend->upload(net.labels, labels, (size_t)batch);
        for (int step = 0; step < warmup + steps; step++) {
            backend->synchronize();
#ifdef BNECK_HAVE_CUDA
            /* the timed steps are the profiler's capture range (nsys
             * --capture-range=cudaProfilerApi, ncu --profile-from-start off); without a
             * profiler these do nothing */
            if (on_gpu && step == warmup) (void)cudaProfilerStart();
#endif
            const double started = timer_now();
            /* the trainer's step graph: op by op on the first step (the warm-up), recorded
             * on the second, replayed after; input and labels stay as uploaded */
            if (!graphs || !step_graph_run(graphs, &net, batch, 1.0f / batch, 1e-3f, 0.99f)) {
                if (step_graph_failed(graphs)) {
                    fprintf(stderr, "bneck-bench: pattern %s: no CUDA graph (see above)\n",
                            pattern->name);
                    return 1;
                }
                network_forward(&net, batch, 1, 1e-3f, 0.99f);
                network_loss(&net, NULL, 1.0f / batch, batch, NULL);
                network_backward(&net, batch);
            } else if (step == 1) {
                fprintf(stderr, "bneck-bench: pattern %s: CUDA graph of %zu nodes\n",
                        pattern->name, step_graph_node_count(graphs));
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
#ifdef BNECK_HAVE_CUDA
        if (on_gpu) {
            char engines[320];
            cuda_conv_engine_summary(engines, sizeof engines);
            fprintf(stderr, "bneck-bench: after pattern %s: %s\n", pattern->name, engines);
        }
#endif
        if (profile)
            profile_steps(&net, adam_m, adam_v, profile, batch, warmup + steps + 1, pattern->name,
                          profile_layers);
        free(times);
        step_graph_release(graphs);
        backend->release(adam_m);
        backend->release(adam_v);
        network_destroy(&net);
    }
    free(input);
    free(labels);
    backend_shutdown(backend);
    return 0;
}
