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

/* Parameter k of a layer: its weights, then its biases (which need not follow the weights:
 * a layer group keeps all its weights before all its biases). */
static size_t layer_param(const layer *l, size_t k) {
    return k < l->weight_count ? l->weight + k : l->bias + (k - l->weight_count);
}

static void check_gradients(int mode, int alpha, pool_branch_form pool_branch) {
    cpu_set_threads(1);
    model m;
    model_spec spec = {mode, alpha, 1, pool_branch, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&m, &spec, NULL), 0);
    static network net;
    cr_assert_eq(network_create(&net, &m, &cpu_backend, BATCH, NULL), 0);
    network_init_params(&net, 7, INIT_PYTORCH);

    float input[BATCH * 32 * 32];
    for (int i = 0; i < BATCH * 32 * 32; i++) input[i] = rng_uniform(99, (uint64_t)i);
    const uint8_t labels[BATCH] = {3, 8};

    const double base = loss_of(&net, input, labels);
    network_backward(&net, BATCH);
    float *analytic = malloc(m.param_count * sizeof(float));
    memcpy(analytic, net.grads, m.param_count * sizeof(float));

    /* In every layer with parameters, check the parameter with the largest gradient (small
     * gradients drown in float rounding of the loss) and one at random. */
    int checked = 0, at_kinks = 0;
    for (int i = 0; i < m.layer_count; i++) {
        const layer *l = &m.layers[i];
        if (l->weight_count == 0) continue;
        const size_t count = l->weight_count + l->bias_count;
        size_t largest = 0;
        for (size_t k = 0; k < count; k++)
            if (fabsf(analytic[layer_param(l, k)]) > fabsf(analytic[layer_param(l, largest)]))
                largest = k;
        const size_t picks[2] = {largest, rng_below(5, (uint64_t)i, (uint32_t)count)};
        for (int p = 0; p < 2; p++) {
            const size_t k = picks[p], j = layer_param(l, k);
            if (p == 1 && fabs(analytic[j]) < 1e-2) continue; /* below FD resolution */
            /* ReLU kinks and max-pool switches make one step size unreliable in narrow
             * layers; a correct gradient matches the central difference at one of several
             * steps, a wrong one (wrong sign, factor, missing term) at none. Where the loss
             * has kinks at every scale, the one-sided slopes disagree; a correct gradient
             * still lies between them (allowed for a few checks only). */
            const float saved = net.params[j];
            const float steps[5] = {1e-2f, 3e-3f, 1e-3f, 3e-4f, 1e-4f};
            double best_numeric = 0.0, best_error = INFINITY;
            int bracketed = 0;
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
                const double right = (up - base) / steps[s], left = (base - down) / steps[s];
                if (steps[s] <= 1e-3f && fmin(left, right) <= analytic[j] &&
                    analytic[j] <= fmax(left, right))
                    bracketed = 1;
            }
            const int matched = best_error <= 2e-3 + 0.05 * fabs(best_numeric);
            if (!matched && bracketed) {
                cr_log_info("%s param %zu: backprop %.6g lies between the one-sided slopes "
                            "(central difference %.6g)", l->name, k, analytic[j], best_numeric);
                at_kinks++;
            }
            cr_expect(matched || bracketed,
                      "%s param %zu: backprop %.6g, finite difference %.6g", l->name, k,
                      analytic[j], best_numeric);
            checked++;
        }
    }
    cr_expect_leq(at_kinks, checked / 20, "%d of %d checks only at kinks", at_kinks, checked);
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

/* Grouped layers (model_grouping: one GEMM for the 1x1 convolutions that read a
 * module's input, one BatchNorm call for each group of BatchNorms with adjacent outputs)
 * compute what separate ones do: from the same weights, the same loss, running statistics
 * and, layer by layer, the same gradients up to float summation order. */
static void check_grouped_like_separate(int mode, int alpha, pool_branch_form pool_branch) {
    cpu_set_threads(1);
    static model grouped, separate;
    model_spec spec = {mode, alpha, 1, pool_branch, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&grouped, &spec, NULL), 0);
    spec.grouping = MODEL_LAYERS_SEPARATE;
    cr_assert_eq(model_build(&separate, &spec, NULL), 0);
    cr_assert_eq(grouped.param_count, separate.param_count);
    cr_assert_eq(grouped.layer_count, separate.layer_count);

    /* Per module with bottlenecks, a group of the three convs that read its input, one of
     * their BatchNorms, and one of the BatchNorms of the other branches' last blocks (the
     * pool branch's only where it has one); in mode 1, one of all four branches' last
     * BatchNorms. A leader's blocks of parameters and statistics hold the whole group's. */
    const int pool_bn = pool_branch == POOL_BRANCH_KERAS;
    const int expected_leaders = 5 * (mode == 1 ? 1 : 3);
    const int expected_members = 5 * (mode == 1 ? 2 + pool_bn : 2 + 2 + 1 + pool_bn);
    int leaders = 0, members = 0;
    for (int i = 0; i < grouped.layer_count; i++) {
        const layer *l = &grouped.layers[i];
        const layer *twin = model_layer_named(&separate, l->name);
        cr_assert_not_null(twin, "%s is in both layouts", l->name);
        cr_expect_eq(twin->group_out_channels + twin->group_member, 0,
                     "%s is grouped in the separate layout", l->name);
        if (l->group_out_channels) {
            leaders++;
            const size_t total = (size_t)l->group_out_channels;
            if (l->kind == LAYER_CONV) {
                cr_expect_eq(l->bias, l->weight + (size_t)l->in.channels * total, "%s", l->name);
            } else {
                cr_expect_eq(l->bias, l->weight + total, "%s: betas after gammas", l->name);
                cr_expect_eq(l->running_var, l->running_mean + total, "%s", l->name);
                cr_expect_eq(l->batch_invstd, l->batch_mean + total, "%s", l->name);
            }
        }
        if (l->group_member) {
            members++;
            cr_expect(l->kind == LAYER_BATCHNORM || l->kernel == 1, "%s is in a group", l->name);
        }
    }
    cr_expect_eq(leaders, expected_leaders);
    cr_expect_eq(members, expected_members);

    static network a, b;
    cr_assert_eq(network_create(&a, &grouped, &cpu_backend, BATCH, NULL), 0);
    cr_assert_eq(network_create(&b, &separate, &cpu_backend, BATCH, NULL), 0);
    network_init_params(&a, 7, INIT_PYTORCH); /* the BatchNorm state */
    network_init_params(&b, 7, INIT_PYTORCH);
    model_convert_params(a.params, &grouped, b.params, &separate);

    /* A group's members continue its leader's input and output in memory. */
    const float *leader_in = NULL, *leader_out = NULL;
    size_t offset = 0;
    for (int i = 0; i < grouped.layer_count; i++) {
        const layer *l = &grouped.layers[i];
        const size_t plane = (size_t)BATCH * l->out.side * l->out.side;
        if (l->group_out_channels) {
            leader_in = network_tensor(&a, l->in, BATCH);
            leader_out = network_tensor(&a, l->out, BATCH);
            offset = 0;
        } else if (!l->group_member) {
            continue;
        }
        cr_expect_eq(network_tensor(&a, l->in, BATCH),
                     l->kind == LAYER_CONV ? leader_in : leader_in + offset, "%s input", l->name);
        cr_expect_eq(network_tensor(&a, l->out, BATCH), leader_out + offset, "%s output",
                     l->name);
        offset += (size_t)l->out.channels * plane;
    }

    /* The conversion moves every value and loses none: back again gives the same bits. */
    float *round_trip = malloc(separate.param_count * sizeof(float));
    model_convert_params(round_trip, &separate, a.params, &grouped);
    cr_expect_eq(memcmp(round_trip, b.params, separate.param_count * sizeof(float)), 0);

    float input[BATCH * 32 * 32];
    for (int i = 0; i < BATCH * 32 * 32; i++) input[i] = rng_uniform(98, (uint64_t)i);
    const uint8_t labels[BATCH] = {1, 6};
    const float loss_a = loss_of(&a, input, labels), loss_b = loss_of(&b, input, labels);
    cr_expect(fabsf(loss_a - loss_b) <= 1e-5f * fabsf(loss_b), "loss %.8g against %.8g", loss_a,
              loss_b);
    /* the running statistics the training forward passes updated */
    float *state = malloc(separate.state_count * sizeof(float));
    model_convert_state(state, &separate, a.state, &grouped);
    double state_error = 0.0;
    for (size_t i = 0; i < separate.state_count; i++)
        state_error = fmax(state_error, fabs(state[i] - b.state[i]) / (1.0 + fabs(b.state[i])));
    cr_expect_leq(state_error, 1e-5, "running statistics differ by %.3g", state_error);
    free(state);
    network_backward(&a, BATCH);
    network_backward(&b, BATCH);
    model_convert_params(round_trip, &separate, a.grads, &grouped);
    for (int i = 0; i < separate.layer_count; i++) {
        const layer *l = &separate.layers[i];
        const size_t count = l->weight_count + l->bias_count;
        double largest = 0.0, worst = 0.0;
        for (size_t k = 0; k < count; k++) {
            const size_t j = layer_param(l, k);
            largest = fmax(largest, fabs(b.grads[j]));
            worst = fmax(worst, fabs(round_trip[j] - b.grads[j]));
        }
        cr_expect(worst <= 1e-4 * largest, "%s: gradients differ by %.3g (largest %.3g)", l->name,
                  worst, largest);
        if (l->kind == LAYER_CONV) cr_expect_gt(largest, 0.0, "%s has a gradient", l->name);
    }
    free(round_trip);
    network_destroy(&a);
    network_destroy(&b);
}

Test(network, grouped_layers_match_separate_ones_mode1) {
    check_grouped_like_separate(1, 1, POOL_BRANCH_KERAS);
}
Test(network, grouped_layers_match_separate_ones_mode2) {
    check_grouped_like_separate(2, 2, POOL_BRANCH_PYTORCH);
}
Test(network, grouped_layers_match_separate_ones_mode3) {
    check_grouped_like_separate(3, 4, POOL_BRANCH_KERAS);
}

/* ---- activation gradients: written by the first layer to back-propagate, then added to -- */

/* The channels a layer's backward op writes its dx into: a BatchNorm group's inputs lie
 * side by side; a convolution group shares one input. */
static int dx_channels(const layer *l) {
    return l->kind == LAYER_BATCHNORM && l->group_out_channels ? l->group_out_channels
                                                               : l->in.channels;
}

static int has_dx(const model *m, const layer *l) {
    return !l->group_member && l->in.region != m->input.region;
}

/* For every pattern, grouping and pool branch: a layer adds into its dx exactly when a
 * layer after it in the list (so back-propagated before it) has the same dx, and no layer
 * list needs the arena cleared. Counts: a module's input has four readers when separate
 * (three add), two when grouped in modes 2 and 3 (the conv group and the max pool: one
 * adds); the first module reads the network input, which gets no gradient. */
Test(network, each_activation_gradient_is_written_once_then_added_to) {
    for (int p = 0; p < 5; p++) {
        for (int grouping = 0; grouping < 2; grouping++) {
            for (int pool_branch = 0; pool_branch < 2; pool_branch++) {
                const model_pattern *pattern = &model_study_patterns[p];
                static model m;
                const model_spec spec = {pattern->mode, pattern->alpha, 3,
                                         (pool_branch_form)pool_branch,
                                         (model_grouping)grouping};
                cr_assert_eq(model_build(&m, &spec, NULL), 0);
                static network net;
                cr_assert_eq(network_create(&net, &m, &cpu_backend, 1, NULL), 0);
                cr_expect_eq(net.clears_activation_grads, 0, "%s grouping %d pool %d: cleared",
                             pattern->name, grouping, pool_branch);
                int adding = 0;
                for (int i = 0; i < m.layer_count; i++) {
                    const layer *l = &m.layers[i];
                    if (!has_dx(&m, l)) continue;
                    int read_later = 0;
                    for (int j = i + 1; j < m.layer_count; j++) {
                        const layer *later = &m.layers[j];
                        read_later |= has_dx(&m, later) && later->in.region == l->in.region &&
                                      later->in.first == l->in.first &&
                                      dx_channels(later) == dx_channels(l);
                    }
                    cr_expect_eq(net.dx_store[i],
                                 read_later ? GRAD_ACCUMULATE : GRAD_OVERWRITE, "%s: %s",
                                 pattern->name, l->name);
                    adding += net.dx_store[i] == GRAD_ACCUMULATE;
                }
                const int expected = pattern->mode == 1 || grouping == MODEL_LAYERS_SEPARATE
                                         ? 4 * 3 : 4 * 1;
                cr_expect_eq(adding, expected, "%s grouping %d pool %d: %d layers add into dx",
                             pattern->name, grouping, pool_branch, adding);
                network_destroy(&net);
            }
        }
    }
}

/* A backend whose ops always add (the CUDA one): the arena is cleared every step. */
Test(network, a_backend_that_always_adds_gets_its_gradients_cleared) {
    backend_ops adding = cpu_backend;
    adding.backward_overwrites_dx = 0;
    static model m;
    const model_pattern *e = &model_study_patterns[4];
    const model_spec spec = {e->mode, e->alpha, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&m, &spec, NULL), 0);
    static network net;
    cr_assert_eq(network_create(&net, &m, &adding, 1, NULL), 0);
    cr_expect_eq(net.clears_activation_grads, 1);
    for (int i = 0; i < m.layer_count; i++)
        cr_expect_eq(net.dx_store[i], GRAD_ACCUMULATE, "%s", m.layers[i].name);
    network_destroy(&net);
}

/* Gradients written over last step's activation gradients (NaN here, carried along by any
 * op that read them) equal, value for value, those of the same network with the arena
 * cleared and every op adding; at the full batch and then at a smaller one, whose tensors
 * lie elsewhere in the arena. */
static void check_stale_gradients_never_read(int mode, int alpha, model_grouping grouping) {
    cpu_set_threads(2);
    enum { MAX_BATCH = 4 };
    static model m;
    const model_spec spec = {mode, alpha, 3, POOL_BRANCH_KERAS, grouping};
    cr_assert_eq(model_build(&m, &spec, NULL), 0);
    static network written, cleared;
    cr_assert_eq(network_create(&written, &m, &cpu_backend, MAX_BATCH, NULL), 0);
    cr_assert_eq(network_create(&cleared, &m, &cpu_backend, MAX_BATCH, NULL), 0);
    cleared.clears_activation_grads = 1;
    for (int i = 0; i < m.layer_count; i++) cleared.dx_store[i] = GRAD_ACCUMULATE;
    network_init_params(&written, 11, INIT_GLOROT);
    network_init_params(&cleared, 11, INIT_GLOROT);
    const int batches[2] = {MAX_BATCH, MAX_BATCH - 1};
    for (int step = 0; step < 2; step++) {
        const int batch = batches[step];
        const size_t inputs = (size_t)batch * 3 * 32 * 32;
        float *input = malloc(inputs * sizeof(float));
        for (size_t i = 0; i < inputs; i++) input[i] = rng_uniform(17 + step, i) * 2.0f - 1.0f;
        const uint8_t labels[MAX_BATCH] = {2, 7, 0, 9};
        network *nets[2] = {&written, &cleared};
        for (int n = 0; n < 2; n++) {
            memcpy(network_tensor(nets[n], m.input, batch), input, inputs * sizeof(float));
            network_forward(nets[n], batch, 1, 1e-3f, 0.99f);
            network_loss(nets[n], labels, 1.0f / (float)batch, batch, NULL);
        }
        /* below the logits (which the loss just wrote) only stale values */
        for (size_t i = 0; i < m.logits.region * (size_t)batch; i++)
            written.activation_grads[i] = NAN;
        network_backward(&written, batch);
        network_backward(&cleared, batch);
        size_t differ = 0, nonzero = 0;
        for (size_t i = 0; i < m.param_count; i++) {
            if (!(written.grads[i] == cleared.grads[i]) && differ++ < 3)
                cr_log_error("mode %d grouping %d batch %d: gradient %zu is %.9g, cleared %.9g",
                             mode, grouping, batch, i, (double)written.grads[i],
                             (double)cleared.grads[i]);
            nonzero += written.grads[i] != 0.0f;
        }
        cr_expect_eq(differ, 0, "mode %d grouping %d batch %d: %zu of %zu gradients differ",
                     mode, grouping, batch, differ, m.param_count);
        cr_expect_gt(nonzero, m.param_count / 2, "mode %d: %zu of %zu gradients non-zero", mode,
                     nonzero, m.param_count);
        free(input);
    }
    network_destroy(&written);
    network_destroy(&cleared);
}

Test(network, stale_activation_gradients_are_never_read_mode1, .timeout = 120) {
    check_stale_gradients_never_read(1, 1, MODEL_LAYERS_GROUPED);
    check_stale_gradients_never_read(1, 1, MODEL_LAYERS_SEPARATE);
}
Test(network, stale_activation_gradients_are_never_read_mode3, .timeout = 120) {
    check_stale_gradients_never_read(3, 4, MODEL_LAYERS_GROUPED);
    check_stale_gradients_never_read(3, 4, MODEL_LAYERS_SEPARATE);
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
    model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
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

/* The trainer's stop hook: asks to stop at its stop_at_call-th question (the trainer asks
 * before every step), so that many steps minus one are trained first. */
static int stop_calls, stop_at_call;
static int stop_at_chosen_call(void) { return ++stop_calls == stop_at_call; }
/* The commit hook, likewise (the context is the question counter). */
static int commit_at_chosen_call(void *calls) { return ++*(int *)calls == 2; }
static int commit_always(void *unused) { return (void)unused, 1; }

/* What a checkpoint carries, copied from one trainer into another of the same run. */
static void copy_trainer_state(trainer *to, const trainer *from) {
    const size_t params = from->net.model.param_count * sizeof(float);
    memcpy(to->net.params, from->net.params, params); /* CPU backend: host memory */
    memcpy(to->adam_m, from->adam_m, params);
    memcpy(to->adam_v, from->adam_v, params);
    memcpy(to->net.state, from->net.state, from->net.model.state_count * sizeof(float));
    to->step = from->step;
    to->epochs_done = from->epochs_done;
    to->progress = from->progress;
}

static void expect_same_epoch(const epoch_record *a, const epoch_record *b, const char *what) {
    cr_expect_eq(a->epoch, b->epoch, "%s", what);
    cr_expect_eq(a->train_loss, b->train_loss, "%s: train_loss %.17g vs %.17g", what,
                 a->train_loss, b->train_loss);
    cr_expect_eq(a->train_acc, b->train_acc, "%s: train_acc", what);
    cr_expect_eq(a->val_loss, b->val_loss, "%s: val_loss", what);
    cr_expect_eq(a->val_acc, b->val_acc, "%s: val_acc", what);
    cr_expect_gt(a->epoch_s, 0.0, "%s", what);
    cr_expect_gt(a->images_per_s, 0.0, "%s", what);
}

/* An epoch stopped part-way, then finished by the same trainer or by a fresh one given
 * the stopped one's state (what the sweep's checkpoint carries) and paused once more for
 * a commit, trains the same weights and records the same numbers, bit for bit, as an epoch
 * never stopped: the order and the augmentation of its remaining steps are the same, and
 * its sums go on from where they were. */
Test(training, an_epoch_stopped_part_way_continues_as_if_never_stopped, .timeout = 600) {
    cpu_set_threads(1);
    static config cfg;
    small_config(&cfg);
    cfg.augment = 1;
    dataset train_set = make_bands(144, 1), val_set = make_bands(50, 2); /* 5 steps, the last of 16 */
    const model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    static trainer whole, stopped, fresh;
    epoch_record whole_records[2], first, none, finished_by_stopped, finished_by_fresh;
    cr_assert_eq(trainer_create(&whole, &cfg, &spec, &train_set, &val_set, &cpu_backend, NULL, NULL), 0);
    for (int e = 0; e < 2; e++)
        cr_assert_eq(trainer_run_epoch(&whole, &whole_records[e]), EPOCH_GO_ON);

    cr_assert_eq(trainer_create(&stopped, &cfg, &spec, &train_set, &val_set, &cpu_backend, NULL, NULL), 0);
    cr_assert_eq(trainer_run_epoch(&stopped, &first), EPOCH_GO_ON);
    expect_same_epoch(&first, &whole_records[0], "epoch 1");
    cr_expect_eq(trainer_steps_per_epoch(&stopped), 5);
    stopped.stop_requested = stop_at_chosen_call;
    stop_calls = 0;
    stop_at_call = 3;
    cr_assert_eq(trainer_run_epoch(&stopped, &none), EPOCH_STOP, "stopped");
    cr_expect_eq(stopped.epochs_done, 1, "the stopped epoch is not counted");
    cr_expect_eq(stopped.progress.steps, 2);
    cr_expect_eq(stopped.progress.seen, 64);
    cr_expect(stopped.progress.loss_sum > 0 && stopped.progress.correct >= 0 &&
              stopped.progress.correct <= 64);
    cr_expect_gt(stopped.progress.train_s, 0.0);
    cr_expect_eq(stopped.step, 5 + 2, "Adam steps");

    /* a stop at once, before any further step, changes nothing; it wins over a commit */
    stop_calls = 0;
    stop_at_call = 1;
    stopped.commit_due = commit_always;
    cr_assert_eq(trainer_run_epoch(&stopped, &none), EPOCH_STOP);
    stopped.commit_due = NULL;
    cr_expect_eq(stopped.progress.steps, 2);
    cr_expect_eq(stopped.progress.seen, 64);

    cr_assert_eq(trainer_create(&fresh, &cfg, &spec, &train_set, &val_set, &cpu_backend, NULL, NULL), 0);
    copy_trainer_state(&fresh, &stopped);
    int commit_questions = 0;
    fresh.commit_due = commit_at_chosen_call;
    fresh.commit_context = &commit_questions;
    cr_assert_eq(trainer_run_epoch(&fresh, &none), EPOCH_PAUSE_TO_COMMIT);
    cr_expect_eq(fresh.progress.steps, 3, "one more step, then the pause");
    cr_expect_eq(fresh.progress.seen, 96);
    fresh.commit_due = NULL;
    cr_assert_eq(trainer_run_epoch(&fresh, &finished_by_fresh), EPOCH_GO_ON);
    stopped.stop_requested = NULL;
    cr_assert_eq(trainer_run_epoch(&stopped, &finished_by_stopped), EPOCH_GO_ON);
    expect_same_epoch(&finished_by_stopped, &whole_records[1], "finished by the stopped trainer");
    expect_same_epoch(&finished_by_fresh, &whole_records[1], "finished by a fresh trainer");
    cr_expect_eq(fresh.progress.steps, 0, "an epoch's end leaves no progress");
    const size_t params = whole.net.model.param_count * sizeof(float);
    cr_expect_eq(memcmp(stopped.net.params, whole.net.params, params), 0, "same weights");
    cr_expect_eq(memcmp(fresh.net.params, whole.net.params, params), 0, "same weights");
    cr_expect_eq(memcmp(fresh.adam_v, whole.adam_v, params), 0, "same Adam moments");
    cr_expect_eq(memcmp(fresh.net.state, whole.net.state,
                        whole.net.model.state_count * sizeof(float)), 0, "same running statistics");
    trainer_destroy(&whole);
    trainer_destroy(&stopped);
    trainer_destroy(&fresh);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

/* The recorded training loss is the cross-entropy alone, as val_loss is: with the
 * learning rate at 0 the weights never move, so the Keras L2 penalty (0.5 |w|^2 here,
 * far above the loss) may change the gradients but not the number. */
Test(training, train_loss_is_the_cross_entropy_without_the_l2_penalty, .timeout = 300) {
    cpu_set_threads(1);
    static config cfg;
    small_config(&cfg);
    cfg.lr = 0.0;
    cfg.epochs = 1;
    dataset train_set = make_bands(64, 1), val_set = make_bands(50, 2);
    const model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    epoch_record records[2];
    static trainer run;
    const double l2[2] = {0.0, 0.5};
    for (int i = 0; i < 2; i++) {
        cfg.l2 = l2[i];
        cr_assert_eq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &cpu_backend, NULL, NULL), 0);
        trainer_run_epoch(&run, &records[i]);
        trainer_destroy(&run);
    }
    cr_expect_eq(records[1].train_loss, records[0].train_loss, "l2 0.5: %.9g, l2 0: %.9g",
                 records[1].train_loss, records[0].train_loss);
    cr_expect_eq(records[1].val_loss, records[0].val_loss);
    cr_expect(records[0].train_loss > 1.0 && records[0].train_loss < 10.0, "%g", records[0].train_loss);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

/* A backend whose convolutions take fewer elements than a batch needs (the GPU's int
 * sizes, here scaled down): refused by trainer_create, naming the key and the most images
 * that fit, before anything is allocated. */
Test(training, a_batch_too_large_for_the_backend_is_refused_by_name) {
    static config cfg;
    small_config(&cfg); /* batch 32, val_batch 50 */
    dataset train_set = make_bands(64, 1), val_set = make_bands(64, 2);
    const model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    model m;
    bneck_error err = {{0}};
    cr_assert_eq(model_build(&m, &spec, &err), 0, "%s", err.message);
    const layer *widest;
    const size_t per_image = model_widest_convolution(&m, &widest);
    cr_assert_not_null(widest);
    /* pattern A on CIFAR-10: the 8x8 stage's 5x5 conv over 384 channels, 64 * 384 * 25;
     * on the GPU at most 2^31-1 / 614,400 = 3,495 images in one batch */
    static model a;
    const model_spec spec_a = {1, 1, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&a, &spec_a, &err), 0, "%s", err.message);
    const layer *widest_a;
    cr_expect_eq(model_widest_convolution(&a, &widest_a), (size_t)614400);
    cr_expect_str_eq(widest_a->name, "inception2/5x5/conv");
    backend_ops narrow = cpu_backend;
    narrow.conv_elements_max = 40 * per_image; /* batch 32 fits, val_batch 50 does not */
    static trainer run;
    cr_assert_neq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &narrow, NULL, &err), 0);
    cr_expect(strstr(err.message, "[train] val_batch: 50 images in one batch are too many for "
                                  "the cpu backend") && strstr(err.message, "at most 40 images"),
              "%s", err.message);
    cfg.val_batch = 40;
    cr_assert_eq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &narrow, NULL, &err), 0,
                 "%s", err.message);
    trainer_destroy(&run);
    cfg.batch = 48;
    cr_assert_neq(trainer_create(&run, &cfg, &spec, &train_set, &val_set, &narrow, NULL, &err), 0);
    cr_expect(strstr(err.message, "[train] batch: 48 images") != NULL, "%s", err.message);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

/* A fake group of two ranks seen from rank 0: records the gradient parts the trainer
 * queues for summing during the backward pass (the other rank contributes nothing). */
enum { LOGGED_PARTS = 2 * MODEL_MAX_LAYERS };

typedef struct part_log {
    const trainer *t;
    size_t offsets[LOGGED_PARTS], counts[LOGGED_PARTS];
    double sums_when_queued[LOGGED_PARTS]; /* the part's gradients when it was queued */
    int parts, joins, parts_at_first_join;
    int changed_after_queued; /* parts of the first step whose gradients changed later */
    /* per step: sum |dW| of the first conv when the step queued its first part */
    double first_layer_grad_at_first_part[2];
} part_log;

static double sum_of(const float *values, size_t count) {
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) sum += values[i];
    return sum;
}

static double first_layer_gradient(const trainer *t) {
    const layer *l = &t->net.model.layers[0];
    double sum = 0.0;
    for (size_t i = 0; i < l->weight_count; i++) sum += fabs(t->net.grads[l->weight + i]);
    return sum;
}

static void log_queue(void *context, float *buffer, size_t count) {
    part_log *log = context;
    if (log->t->next_bucket == 1 && log->joins < 2) /* the step's first part */
        log->first_layer_grad_at_first_part[log->joins] = first_layer_gradient(log->t);
    if (log->parts < LOGGED_PARTS) {
        log->offsets[log->parts] = (size_t)(buffer - log->t->net.grads);
        log->counts[log->parts] = count;
        log->sums_when_queued[log->parts] = sum_of(buffer, count);
    }
    log->parts++;
}
/* At the first step's join the backward pass is over: a part queued before its gradients
 * were final would be summed too early. */
static void log_join(void *context) {
    part_log *log = context;
    if (log->joins++ > 0) return;
    log->parts_at_first_join = log->parts;
    for (int i = 0; i < log->parts && i < LOGGED_PARTS; i++)
        if (sum_of(log->t->net.grads + log->offsets[i], log->counts[i]) !=
            log->sums_when_queued[i])
            log->changed_after_queued++;
}
static void no_sum_float(void *context, float *buffer, size_t count) {
    (void)context, (void)buffer, (void)count;
}
static void no_sum_double(void *context, double *buffer, size_t count) {
    (void)context, (void)buffer, (void)count;
}
static int own_value(void *context, int value) { return (void)context, value; }

static void check_gradient_parts(const model_spec *spec, size_t part_floats, int min_parts) {
    cpu_set_threads(2);
    static config cfg;
    small_config(&cfg);
    cfg.epochs = 1;
    dataset train_set = make_bands(64, 3), val_set = make_bands(20, 4);
    static trainer run;
    static part_log log;
    const train_comm comm = {.context = &log, .rank = 0, .ranks = 2,
                             .allreduce_sum_float = no_sum_float,
                             .allreduce_sum_double = no_sum_double, .max_over_ranks = own_value,
                             .allreduce_queue_float = log_queue, .allreduce_join = log_join};
    cr_assert_eq(trainer_create(&run, &cfg, spec, &train_set, &val_set, &cpu_backend, &comm, NULL), 0);
    log.t = &run;
    trainer_plan_gradient_parts(&run, part_floats);
    epoch_record record;
    trainer_run_epoch(&run, &record);
    const size_t params = run.net.model.param_count;
    cr_expect_geq(run.bucket_count, min_parts, "%zu parameters make %d parts or more", params,
                  min_parts);
    cr_expect_eq(log.joins, 2, "one join per step (64 images, batch 32)");
    cr_expect_eq(log.parts, 2 * run.bucket_count, "every part queued in every step");
    cr_expect_eq(log.parts_at_first_join, run.bucket_count);
    cr_expect_eq(log.changed_after_queued, 0, "parts queued before their gradients were final");
    /* the first step's parts: from the end of the buffer down to 0, no gap, no overlap */
    size_t end = params;
    for (int i = 0; i < run.bucket_count && i < LOGGED_PARTS; i++) {
        cr_expect_eq(log.offsets[i] + log.counts[i], end, "part %d ends where %d began", i, i - 1);
        cr_expect_gt(log.counts[i], 0);
        end = log.offsets[i];
    }
    cr_expect_eq(end, 0, "the parts reach the start of the buffer");
    /* The first step (which on a GPU times convolution engines) queues its parts after
     * the backward pass; the second during it: with several parts, the first went before
     * the first layer's gradient existed. */
    cr_assert_eq(run.net.model.layers[0].kind, LAYER_CONV);
    cr_expect_gt(log.first_layer_grad_at_first_part[0], 0.0, "the first step did not overlap");
    if (run.bucket_count > 1)
        cr_expect_eq(log.first_layer_grad_at_first_part[1], 0.0, "the second step overlapped");
    cr_expect_gt(first_layer_gradient(&run), 0.0);
    trainer_destroy(&run);
    dataset_free(&train_set);
    dataset_free(&val_set);
}

/* Pattern A: 3M parameters in several parts. */
Test(training, gradient_parts_cover_the_buffer_once_per_step, .timeout = 300) {
    const model_spec spec = {1, 1, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    check_gradient_parts(&spec, (size_t)1 << 19, 3);
}

/* Pattern E in parts of 2,000 floats: the grouped layers' gradients are all
 * written by the group's first layer, so no part may end at the others. */
Test(training, gradient_parts_with_grouped_layers, .timeout = 300) {
    const model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    check_gradient_parts(&spec, 2000, 20);
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

/* Short runs: a drop comes only once its share of the epochs is done, never early. */
Test(training, learning_rate_drops_after_their_share_of_short_runs) {
    static config cfg;
    config_defaults(&cfg);
    const struct { int epochs; double rates[4]; } runs[] = {
        {1, {1e-3}},
        {2, {1e-3, 1e-4}},
        {3, {1e-3, 1e-3, 1e-4}},
        {4, {1e-3, 1e-3, 1e-4, 1e-4}},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        cfg.epochs = runs[r].epochs;
        for (int e = 0; e < runs[r].epochs; e++)
            cr_expect_float_eq(trainer_learning_rate(&cfg, e), runs[r].rates[e], 1e-13,
                               "%d epochs, epoch %d: %g", runs[r].epochs, e,
                               trainer_learning_rate(&cfg, e));
    }
    cfg.epochs = 10; /* 85 % is 8.5 epochs: the last drop before the tenth */
    cr_expect_float_eq(trainer_learning_rate(&cfg, 8), 1e-4, 1e-13);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 9), 1e-5, 1e-13);
    cfg.epochs = 20; /* shares landing on a whole epoch, 10 and 17 */
    cr_expect_float_eq(trainer_learning_rate(&cfg, 9), 1e-3, 1e-13);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 10), 1e-4, 1e-13);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 16), 1e-4, 1e-13);
    cr_expect_float_eq(trainer_learning_rate(&cfg, 17), 1e-5, 1e-13);
}
