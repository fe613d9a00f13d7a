/* The whole network: back-propagated gradients against finite differences, and
 * reproducibility of training from a seed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_gemm.h"
#include "core/rng.h"
#include "model/network.h"
#include "train/train.h"

enum { BATCH = 2 };

static float loss_of(network *net, const float *input, const uint8_t *labels) {
    memcpy(network_tensor(net, net->model.input, BATCH), input,
           sizeof(float) * BATCH * net->model.spec.in_channels * 32 * 32);
    /* Training-mode BatchNorm, as in training; the running statistics it updates do not
     * feed back into the training-mode forward. */
    network_forward(net, BATCH, 1, 1e-3f, 0.99f);
    return network_loss(net, labels, 1.0f / BATCH, BATCH, NULL);
}

static void check_gradients(int mode, int alpha, pool_branch_form pool_branch) {
    cpu_set_threads(1);
    model m;
    model_spec spec = {mode, alpha, 1, pool_branch};
    cr_assert_eq(model_build(&m, &spec, NULL), 0);
    static network net;
    cr_assert_eq(network_create(&net, &m, &cpu_backend, BATCH, NULL), 0);
    network_init_params(&net, 7, INIT_PYTORCH);

    float input[BATCH * 32 * 32];
    for (int i = 0; i < BATCH * 32 * 32; i++) input[i] = rng_uniform(99, (uint64_t)i);
    const uint8_t labels[BATCH] = {3, 8};

    loss_of(&net, input, labels);
    network_backward(&net, BATCH);
    float *analytic = malloc(m.param_count * sizeof(float));
    memcpy(analytic, net.grads, m.param_count * sizeof(float));

    /* In every layer with parameters, check the parameter with the largest gradient (small
     * gradients drown in float rounding of the loss) and one at random. */
    int checked = 0;
    for (int i = 0; i < m.layer_count; i++) {
        const layer *l = &m.layers[i];
        if (l->weight_count == 0) continue;
        const size_t count = l->weight_count + l->bias_count;
        size_t largest = l->weight;
        for (size_t j = l->weight; j < l->weight + count; j++)
            if (fabsf(analytic[j]) > fabsf(analytic[largest])) largest = j;
        const size_t picks[2] = {largest, l->weight + rng_below(5, (uint64_t)i, (uint32_t)count)};
        for (int p = 0; p < 2; p++) {
            const size_t j = picks[p];
            if (p == 1 && fabs(analytic[j]) < 1e-2) continue; /* below FD resolution */
            /* ReLU kinks and max-pool switches make one step size unreliable in narrow
             * layers; a correct gradient matches the central difference at one of several
             * steps, a wrong one (wrong sign, factor, missing term) at none. */
            const float saved = net.params[j];
            const float steps[5] = {1e-2f, 3e-3f, 1e-3f, 3e-4f, 1e-4f};
            double best_numeric = 0.0, best_error = INFINITY;
            for (int s = 0; s < 5; s++) {
                net.params[j] = saved + steps[s];
                const double up = loss_of(&net, input, labels);
                net.params[j] = saved - steps[s];
                const double down = loss_of(&net, input, labels);
                net.params[j] = saved;
                const double numeric = (up - down) / (2.0 * steps[s]);
                if (fabs(numeric - analytic[j]) < best_error) {
                    best_error = fabs(numeric - analytic[j]);
                    best_numeric = numeric;
                }
            }
            cr_expect(best_error <= 2e-3 + 0.05 * fabs(best_numeric),
                      "%s param %zu: backprop %.6g, finite difference %.6g", l->name,
                      j - l->weight, analytic[j], best_numeric);
            checked++;
        }
    }
    cr_expect_geq(checked, m.layer_count / 2);
    free(analytic);
    network_destroy(&net);
}

Test(network, gradients_match_finite_differences_mode1, .timeout = 300) {
    check_gradients(1, 1, POOL_BRANCH_KERAS);
}
Test(network, gradients_match_finite_differences_mode2, .timeout = 300) {
    check_gradients(2, 4, POOL_BRANCH_PYTORCH);
}
Test(network, gradients_match_finite_differences_mode3, .timeout = 300) {
    check_gradients(3, 4, POOL_BRANCH_KERAS);
}

/* A small synthetic dataset: class k images are bright in the k-th horizontal band,
 * so a working trainer must learn it quickly. */
static dataset make_bands(int count, uint64_t seed) {
    dataset d = {count, 1, malloc((size_t)count * 32 * 32), malloc((size_t)count)};
    for (int i = 0; i < count; i++) {
        const int label = (int)rng_below(seed, (uint64_t)i, 10);
        d.labels[i] = (uint8_t)label;
        for (int p = 0; p < 32 * 32; p++) {
            const int row = p / 32;
            const int noise = (int)rng_below(seed + 1, (uint64_t)i * 1024 + p, 60);
            d.pixels[(size_t)i * 1024 + p] = (uint8_t)((row / 3 == label ? 180 : 20) + noise);
        }
    }
    return d;
}

static void small_config(config *cfg) {
    config_defaults(cfg);
    cfg->epochs = 2;
    cfg->batch = 32;
    cfg->val_batch = 50;
    cfg->augment = 0;
    cfg->seed = 11;
}

Test(training, same_seed_same_numbers_and_it_learns, .timeout = 600) {
    cpu_set_threads(1);
    static config cfg;
    small_config(&cfg);
    dataset train_set = make_bands(256, 1), val_set = make_bands(100, 2);
    model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS};
    epoch_record first[2], second[2];
    static trainer run;
    for (int attempt = 0; attempt < 2; attempt++) {
        cr_assert_eq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &cpu_backend, NULL, NULL), 0);
        for (int e = 0; e < 2; e++) trainer_run_epoch(&run, attempt ? &second[e] : &first[e]);
        trainer_destroy(&run);
    }
    for (int e = 0; e < 2; e++) {
        cr_expect_eq(first[e].train_loss, second[e].train_loss, "epoch %d", e + 1);
        cr_expect_eq(first[e].val_acc, second[e].val_acc, "epoch %d", e + 1);
    }
    cr_expect_lt(first[1].train_loss, first[0].train_loss);
    cr_expect_gt(first[1].train_acc, 0.5, "train accuracy %.3f", first[1].train_acc);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

/* A fake group of two ranks seen from rank 0: records the gradient parts the trainer
 * queues for summing during the backward pass (the other rank contributes nothing). */
typedef struct part_log {
    const trainer *t;
    size_t offsets[64], counts[64];
    int parts, joins, parts_at_first_join;
    double first_layer_grad_at_first_part; /* sum |dW| of the first conv then */
} part_log;

static double first_layer_gradient(const trainer *t) {
    const layer *l = &t->net.model.layers[0];
    double sum = 0.0;
    for (size_t i = 0; i < l->weight_count; i++) sum += fabs(t->net.grads[l->weight + i]);
    return sum;
}

static void log_queue(void *context, float *buffer, size_t count) {
    part_log *log = context;
    if (log->parts == 0) log->first_layer_grad_at_first_part = first_layer_gradient(log->t);
    if (log->parts < 64) {
        log->offsets[log->parts] = (size_t)(buffer - log->t->net.grads);
        log->counts[log->parts] = count;
    }
    log->parts++;
}
static void log_join(void *context) {
    part_log *log = context;
    if (log->joins++ == 0) log->parts_at_first_join = log->parts;
}
static void no_sum_float(void *context, float *buffer, size_t count) {
    (void)context, (void)buffer, (void)count;
}
static void no_sum_double(void *context, double *buffer, size_t count) {
    (void)context, (void)buffer, (void)count;
}
static int own_flag(void *context, int flag) { return (void)context, flag; }

Test(training, gradient_parts_cover_the_buffer_once_per_step, .timeout = 300) {
    cpu_set_threads(2);
    static config cfg;
    small_config(&cfg);
    cfg.epochs = 1;
    dataset train_set = make_bands(64, 3), val_set = make_bands(20, 4);
    const model_spec spec = {1, 1, 1, POOL_BRANCH_KERAS}; /* pattern A: 3M parameters */
    static trainer run;
    static part_log log;
    const train_comm comm = {.context = &log, .rank = 0, .ranks = 2,
                             .allreduce_sum_float = no_sum_float,
                             .allreduce_sum_double = no_sum_double, .any_rank = own_flag,
                             .allreduce_queue_float = log_queue, .allreduce_join = log_join};
    cr_assert_eq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &cpu_backend, &comm, NULL), 0);
    log.t = &run;
    epoch_record record;
    trainer_run_epoch(&run, &record);
    const size_t params = run.net.model.param_count;
    cr_expect_gt(run.bucket_count, 2, "%zu parameters make several parts", params);
    cr_expect_eq(log.joins, 2, "one join per step (64 images, batch 32)");
    cr_expect_eq(log.parts, 2 * run.bucket_count, "every part queued in every step");
    cr_expect_eq(log.parts_at_first_join, run.bucket_count);
    /* the first step's parts: from the end of the buffer down to 0, no gap, no overlap */
    size_t end = params;
    for (int i = 0; i < run.bucket_count && i < 64; i++) {
        cr_expect_eq(log.offsets[i] + log.counts[i], end, "part %d ends where %d began", i, i - 1);
        cr_expect_gt(log.counts[i], 0);
        end = log.offsets[i];
    }
    cr_expect_eq(end, 0, "the parts reach the start of the buffer");
    /* queued during the backward pass: the first part went before the first layer's
     * gradient existed */
    cr_assert_eq(run.net.model.layers[0].kind, LAYER_CONV);
    cr_expect_eq(log.first_layer_grad_at_first_part, 0.0);
    cr_expect_gt(first_layer_gradient(&run), 0.0);
    trainer_destroy(&run);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

Test(training, learning_rate_schedule_is_the_studys) {
    static config cfg;
    config_defaults(&cfg);
    cfg.epochs = 100;
    cr_expect_float_eq(trainer_learning_rate(&cfg, 0), 1e-3, 1e-12);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 49), 1e-3, 1e-12);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 50), 1e-4, 1e-12);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 84), 1e-4, 1e-12);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 85), 1e-5, 1e-13);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 99), 1e-5, 1e-13);
}
