#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/timer.h"
#include "data/augment.h"

static int ranks_of(const trainer *t) { return t->comm.ranks > 0 ? t->comm.ranks : 1; }

/* Where rank `rank`'s contiguous share of `images` begins (rank = ranks: their end); the
 * shares differ by at most one image. */
static int share_start(int images, int rank, int ranks) {
    return (int)((long)images * rank / ranks);
}

/* --- gradient sums overlapped with the backward pass ------------------------------------ */

/* Floats per gradient part: large enough that each allreduce is bandwidth-bound, small
 * enough that pattern A's 3M parameters make a few parts to overlap. */
enum { GRADIENT_BUCKET_FLOATS = 1 << 19 };

static void queue_bucket(trainer *t, int b) {
    const gradient_bucket *bucket = &t->buckets[b];
    t->comm.allreduce_queue_float(t->comm.context, t->net.grads + bucket->offset, bucket->count);
}

/* The network's layer hook: after a layer's backward op, queue the parts it completed. */
static void gradient_bucket_hook(void *context, const layer *l, int index, int backward,
                                 int after) {
    (void)l;
    trainer *t = context;
    if (!backward || !after || !t->overlap_this_step) return;
    while (t->next_bucket < t->bucket_count && t->buckets[t->next_bucket].after_layer == index)
        queue_bucket(t, t->next_bucket++);
}

/* Parts end at layer boundaries, in the order the backward pass completes them; a layout
 * not in layer order keeps the single sum after the backward pass. */
void trainer_plan_gradient_parts(trainer *t, size_t part_floats) {
    const model *m = &t->net.model;
    t->bucket_count = 0;
    t->net.layer_hook = NULL;
    t->net.layer_hook_context = NULL;
    int lowest = -1; /* the first layer with parameters */
    for (int i = 0; i < m->layer_count && lowest < 0; i++)
        if (m->layers[i].weight_count + m->layers[i].bias_count) lowest = i;
    if (lowest < 0) return;
    size_t tail = m->param_count; /* [tail, param_count) is in a part already */
    int count = 0;
    for (int i = m->layer_count - 1; i >= lowest; i--) {
        const layer *l = &m->layers[i];
        /* A layer group's gradients are all done by its first layer's backward op, and
         * their block starts at that layer's weights. */
        if (l->group_member || !(l->weight_count + l->bias_count)) continue;
        size_t first = l->weight_count ? l->weight : l->bias;
        if (l->bias_count && l->bias < first) first = l->bias;
        if (first > tail) return; /* not in layer order: keep the single allreduce */
        if (i == lowest) first = 0;
        if (tail - first >= part_floats || i == lowest) {
            t->buckets[count++] = (gradient_bucket){first, tail - first, i};
            tail = first;
        }
    }
    t->bucket_count = count;
    t->net.layer_hook = gradient_bucket_hook;
    t->net.layer_hook_context = t;
}

/* The widest convolution of m, against the backend's limit at the larger batch size (a
 * rank's share of the training batch, or the validation batch). */
static int check_convolution_sizes(const model *m, const backend_ops *backend, int train_batch,
                                   int val_batch, bneck_error *err) {
    if (!backend->conv_elements_max) return 0;
    const layer *widest;
    const size_t largest = model_widest_convolution(m, &widest);
    if (!widest) return 0;
    const size_t most = backend->conv_elements_max / largest;
    const char *key = train_batch > val_batch ? "batch" : "val_batch";
    const int batch = train_batch > val_batch ? train_batch : val_batch;
    if ((size_t)batch <= most) return 0;
    return bneck_error_set(err, "train: [train] %s: %d images in one batch are too many for the "
                           "%s backend: its convolutions take at most %zu elements, and %s "
                           "(%dx%d, kernel %d) needs %zu per image; at most %zu images",
                           key, batch, backend->name, backend->conv_elements_max, widest->name,
                           widest->in.side, widest->in.side, widest->kernel, largest, most);
}

int trainer_create(trainer *t, const config *cfg, const model_spec *spec, const dataset *train_set,
                   const dataset *val_set, const backend_ops *backend, const train_comm *comm,
                   bneck_error *err) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->train_set = train_set;
    t->val_set = val_set;
    t->comm = comm ? *comm : (train_comm){.rank = 0, .ranks = 1};
    const int ranks = ranks_of(t);
    if (cfg->batch < ranks)
        return bneck_error_set(err, "train: the batch (%d) is smaller than the ranks of a run (%d)",
                               cfg->batch, ranks);
    if (train_set->channels != spec->in_channels || val_set->channels != spec->in_channels)
        return bneck_error_set(err, "train: the dataset has %d channels but the model expects %d",
                               train_set->channels, spec->in_channels);
    if (train_set->count < 1 || val_set->count < 1)
        return bneck_error_set(err, "train: empty dataset (%d training, %d validation images)",
                               train_set->count, val_set->count);

    model m;
    if (model_build(&m, spec, err)) return -1;
    /* Batches larger than their dataset hold the whole dataset: the buffers are sized for
     * what a step can hold, not for the setting. */
    const int train_batch = cfg->batch < train_set->count ? cfg->batch : train_set->count;
    const int val_batch = cfg->val_batch < val_set->count ? cfg->val_batch : val_set->count;
    t->max_local_batch = (train_batch + ranks - 1) / ranks;
    /* as train_step cuts a full batch: with uneven shares some ranks take one image less */
    t->full_local_batch = share_start(train_batch, t->comm.rank + 1, ranks) -
                          share_start(train_batch, t->comm.rank, ranks);
    if (check_convolution_sizes(&m, backend, t->max_local_batch, val_batch, err)) return -1;
    const int max_batch = t->max_local_batch > val_batch ? t->max_local_batch : val_batch;
    if (network_create(&t->net, &m, backend, max_batch, err)) return -1;
    network_init_params(&t->net, cfg->seed, cfg->init);
    if (ranks > 1 && t->comm.allreduce_queue_float && t->comm.allreduce_join)
        trainer_plan_gradient_parts(t, GRADIENT_BUCKET_FLOATS);
    t->adam_m = backend->alloc(m.param_count * sizeof(float));
    t->adam_v = backend->alloc(m.param_count * sizeof(float));
    t->order = bneck_malloc((size_t)train_set->count * sizeof(int));
    t->host_batch = bneck_alloc_aligned((size_t)max_batch * spec->in_channels * 32 * 32 * sizeof(float));
    t->host_labels = bneck_malloc((size_t)max_batch);
    return 0;
}

void trainer_destroy(trainer *t) {
    if (!t->net.backend) return;
    t->net.backend->release(t->adam_m);
    t->net.backend->release(t->adam_v);
    network_destroy(&t->net);
    free(t->order);
    free(t->host_batch);
    free(t->host_labels);
    memset(t, 0, sizeof *t);
}

/* "x0.1 after 50 % of the epochs": an epoch runs at the lowered rate when at least that
 * share of the epochs is done before it starts. Epochs 50 and 85 of 100 (counting from 0),
 * as in the study; a run of 1 epoch stays at the starting rate, one of 4 drops once, before
 * its third epoch (the margin keeps 0.85 * 100 from landing just above 85). */
double trainer_learning_rate(const config *cfg, int epoch) {
    double lr = cfg->lr;
    for (int i = 0; i < 2; i++)
        if (epoch >= cfg->lr_decay_at[i] * cfg->epochs - 1e-9) lr *= cfg->lr_decay_factor;
    return lr;
}

/* Assembles images indices[0..count) into the network's input tensor. */
static void load_batch(trainer *t, const dataset *d, const int *indices, int count, int epoch,
                       int augment) {
    network *net = &t->net;
    float *input = network_tensor(net, net->model.input, count);
    if (t->device_batches.assemble) {
        t->device_batches.assemble(t->device_batches.context, d, input, net->labels, indices,
                                   count, t->cfg->seed, epoch, augment);
        return;
    }
    const size_t bytes = (size_t)count * d->channels * 32 * 32 * sizeof(float);
    augment_batch(t->host_batch, t->host_labels, d, indices, count, t->cfg->seed, epoch, augment);
    net->backend->upload(input, t->host_batch, bytes);
}

/* The labels network_loss must upload: none when the backend assembled them itself. */
static const uint8_t *batch_labels(const trainer *t) {
    return t->device_batches.assemble ? NULL : t->host_labels;
}

/* L2 as a gradient term: Keras adds l2 * |w|^2 of conv and dense kernels to the loss
 * (gradient 2 l2 w); PyTorch's weight decay adds l2 * w to every parameter's gradient. */
static void add_l2_gradient(trainer *t) {
    const config *cfg = t->cfg;
    network *net = &t->net;
    if (cfg->l2 <= 0) return;
    if (cfg->l2_form == L2_FORM_ALL) {
        net->backend->add_scaled(net->grads, net->params, (float)cfg->l2, net->model.param_count);
        return;
    }
    for (int i = 0; i < net->model.layer_count; i++) {
        const layer *l = &net->model.layers[i];
        if (l->kind != LAYER_CONV && l->kind != LAYER_DENSE) continue;
        net->backend->add_scaled(net->grads + l->weight, net->params + l->weight,
                                 (float)(2.0 * cfg->l2), l->weight_count);
    }
}

/* Every rank computes BatchNorm statistics on its own share of the batch, so running
 * statistics drift apart; averaging them before evaluation keeps all ranks identical. */
static void average_running_statistics(trainer *t) {
    if (ranks_of(t) == 1) return;
    network *net = &t->net;
    const size_t count = net->model.state_count;
    float *state = bneck_malloc(count * sizeof(float));
    net->backend->download(state, net->state, count * sizeof(float));
    t->comm.allreduce_sum_float(t->comm.context, state, count);
    for (size_t i = 0; i < count; i++) state[i] /= (float)ranks_of(t);
    net->backend->upload(net->state, state, count * sizeof(float));
    free(state);
}

/* Progress within an epoch on rank 0: a line rewritten in place at most twice a second on
 * a terminal; plain lines every tenth of a long epoch otherwise (Slurm logs, pipes). */
static double last_progress_print = 0.0;

static int progress_on_terminal(void) {
    /* mpirun hands every rank a pseudo-terminal even when its output goes to a file, so
     * under MPI (and Slurm) progress is always plain lines. */
    return isatty(STDOUT_FILENO) && !getenv("SLURM_JOB_ID") && !getenv("OMPI_COMM_WORLD_SIZE");
}

/* Whether print_progress has something to do after `step` of `steps`. */
static int progress_due(const trainer *t, int step, int steps) {
    if (log_rank() != 0 || t->comm.rank != 0) return 0;
    if (step == steps) return 1;
    if (progress_on_terminal()) return timer_now() - last_progress_print >= 0.5;
    const int every = t->cfg->progress_every > 0 ? t->cfg->progress_every
                                                  : (steps >= 50 ? steps / 10 : 0);
    return every != 0 && step % every == 0;
}

static void print_progress(const trainer *t, int epoch, int step, int steps, double loss_sum,
                           double correct, int seen, double started) {
    const int on_terminal = progress_on_terminal();
    const double now = timer_now();
    if (step == steps) {
        if (on_terminal && last_progress_print > 0.0) fprintf(stdout, "\r\033[K");
        fflush(stdout);
        last_progress_print = 0.0;
        return;
    }
    last_progress_print = now;
    const double elapsed = now - started;
    fprintf(stdout, "%s%s%s%s  epoch %d: step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s%s",
            on_terminal ? "\r\033[K" : "", t->label ? "[" : "", t->label ? t->label : "",
            t->label ? "]" : "", epoch, step, steps, loss_sum / seen,
            100.0 * correct / seen, seen * ranks_of(t) / (elapsed > 0 ? elapsed : 1e-9),
            on_terminal ? "" : "\n");
    fflush(stdout);
}

/* Folds the loss and hits of the recorded steps (kept on the device) into the sums. */
static void take_recorded_totals(trainer *t, double *loss_sum, double *correct) {
    if (t->recorded_steps.take_totals)
        t->recorded_steps.take_totals(t->recorded_steps.context, loss_sum, correct);
}

int epoch_record_diverged(const epoch_record *record) {
    return !isfinite(record->train_loss) || !isfinite(record->val_loss);
}

/* Whether the epoch pauses at this step, and why: asked of the stop and commit hooks,
 * agreed by every rank (the stop wins). The device's totals of the recorded steps are
 * taken then, since the epoch's progress must hold every step so far. */
static epoch_pause pause_agreed(trainer *t, epoch_progress *progress) {
    int pause = t->stop_requested && t->stop_requested()                ? EPOCH_STOP
                : t->commit_due && t->commit_due(t->commit_context) ? EPOCH_PAUSE_TO_COMMIT
                                                                        : EPOCH_GO_ON;
    if (ranks_of(t) > 1 && (t->stop_requested || t->commit_due))
        pause = t->comm.max_over_ranks(t->comm.context, pause);
    if (pause != EPOCH_GO_ON) take_recorded_totals(t, &progress->loss_sum, &progress->correct);
    return (epoch_pause)pause;
}

/* Forward, loss and backward of this rank's local images (replayed as a recorded step
 * where the backend has one); a rank without images this step contributes zeros. */
static void compute_gradients(trainer *t, int local, int global, epoch_progress *progress) {
    network *net = &t->net;
    const backend_ops *be = net->backend;
    t->next_bucket = 0;
    t->overlap_this_step = t->full_step_done && local == t->full_local_batch;
    if (local > 0) {
        const uint8_t *labels = batch_labels(t);
        const float grad_scale = 1.0f / (float)global;
        const float bn_eps = (float)t->cfg->bn_eps, bn_momentum = (float)t->cfg->bn_momentum;
        int recorded = 0;
        if (t->recorded_steps.run) {
            if (labels) be->upload(net->labels, labels, (size_t)local);
            recorded = t->recorded_steps.run(t->recorded_steps.context, net, local, grad_scale,
                                             bn_eps, bn_momentum);
        }
        if (!recorded) {
            int correct = 0;
            network_forward(net, local, 1, bn_eps, bn_momentum);
            const float loss = network_loss(net, labels, grad_scale, local, &correct);
            network_backward(net, local);
            progress->loss_sum += (double)loss * local;
            progress->correct += correct;
        }
        progress->seen += local;
    } else {
        be->zero(net->grads, net->model.param_count * sizeof(float));
    }
    if (local == t->full_local_batch) t->full_step_done = 1;
}

/* The gradients summed over the ranks: the parts the backward pass has not queued yet, or
 * the whole buffer at once. */
static void sum_gradients(trainer *t) {
    if (ranks_of(t) == 1) return;
    if (t->bucket_count) {
        /* every rank queues every part, in the same order (a rank without images in this
         * step queues them all here) */
        while (t->next_bucket < t->bucket_count) queue_bucket(t, t->next_bucket++);
        t->comm.allreduce_join(t->comm.context);
    } else {
        t->net.backend->synchronize();
        t->comm.allreduce_sum_float(t->comm.context, t->net.grads, t->net.model.param_count);
    }
}

static void update_weights(trainer *t, double lr) {
    const config *cfg = t->cfg;
    network *net = &t->net;
    add_l2_gradient(t);
    t->step++;
    net->backend->adam_step(net->params, t->adam_m, t->adam_v, net->grads, (float)lr,
                            (float)cfg->adam_beta1, (float)cfg->adam_beta2, (float)cfg->adam_eps,
                            cfg->recipe == RECIPE_PYTORCH ? ADAM_EPS_PYTORCH : ADAM_EPS_KERAS,
                            t->step, net->model.param_count);
}

/* One training step on this rank's contiguous share of global batch `step`; the time of
 * each part goes to the progress. */
static void train_step(trainer *t, int step, double lr, epoch_progress *progress) {
    const dataset *d = t->train_set;
    const int batch = t->cfg->batch, ranks = ranks_of(t), rank = t->comm.rank;
    const int begin = step * batch;
    const int global = d->count - begin < batch ? d->count - begin : batch;
    const int first = begin + share_start(global, rank, ranks);
    const int local = begin + share_start(global, rank + 1, ranks) - first;

    const double t0 = timer_now();
    if (local > 0) load_batch(t, d, t->order + first, local, t->epochs_done, t->cfg->augment);
    const double t1 = timer_now();
    compute_gradients(t, local, global, progress);
    const double t2 = timer_now();
    sum_gradients(t);
    const double t3 = timer_now();
    update_weights(t, lr);
    t->net.backend->synchronize();
    progress->data_s += t1 - t0;
    progress->compute_s += (t2 - t1) + (timer_now() - t3);
    progress->allreduce_s += t3 - t2;
}

int trainer_steps_per_epoch(const trainer *t) {
    return (t->train_set->count + t->cfg->batch - 1) / t->cfg->batch;
}

epoch_pause trainer_run_epoch(trainer *t, epoch_record *record) {
    const dataset *d = t->train_set;
    const int epoch = t->epochs_done; /* 0-based */
    const double lr = trainer_learning_rate(t->cfg, epoch);
    const int steps = trainer_steps_per_epoch(t);

    memset(record, 0, sizeof *record);
    record->epoch = epoch + 1;
    record->lr = lr;
    shuffle_indices(t->order, d->count, t->cfg->seed, epoch);

    /* from where a stop or a pause to commit left the epoch (nothing at its start) */
    epoch_progress *progress = &t->progress;
    const double started = timer_now() - progress->train_s;
    while (progress->steps < steps) {
        const epoch_pause pause = pause_agreed(t, progress);
        if (pause != EPOCH_GO_ON) {
            progress->train_s = timer_now() - started;
            return pause;
        }
        train_step(t, progress->steps, lr, progress);
        progress->steps++;
        if (progress_due(t, progress->steps, steps)) {
            take_recorded_totals(t, &progress->loss_sum, &progress->correct);
            print_progress(t, epoch + 1, progress->steps, steps, progress->loss_sum,
                           progress->correct, progress->seen > 0 ? progress->seen : 1, started);
        }
    }
    record->epoch_s = timer_now() - started;
    take_recorded_totals(t, &progress->loss_sum, &progress->correct);
    record->data_s = progress->data_s;
    record->compute_s = progress->compute_s;
    record->allreduce_s = progress->allreduce_s;

    double sums[3] = {progress->loss_sum, progress->correct, (double)progress->seen};
    if (ranks_of(t) > 1) t->comm.allreduce_sum_double(t->comm.context, sums, 3);
    /* the cross-entropy alone, like val_loss and the progress lines (Keras would add its
     * L2 penalty to both losses; PyTorch's weight decay is in neither) */
    record->train_loss = sums[0] / sums[2];
    record->train_acc = sums[1] / sums[2];
    record->images_per_s = sums[2] / record->epoch_s;
    memset(progress, 0, sizeof *progress);

    const double eval_started = timer_now();
    average_running_statistics(t);
    trainer_evaluate(t, &record->val_loss, &record->val_acc);
    record->eval_s = timer_now() - eval_started;
    t->epochs_done++;
    return EPOCH_GO_ON;
}

void trainer_evaluate(trainer *t, double *loss, double *accuracy) {
    const config *cfg = t->cfg;
    const dataset *d = t->val_set;
    const int ranks = ranks_of(t), rank = t->comm.rank;
    /* Each rank scores a contiguous share of the validation set. */
    const int first = share_start(d->count, rank, ranks);
    const int last = share_start(d->count, rank + 1, ranks);
    int *indices = bneck_malloc((size_t)(cfg->val_batch > 0 ? cfg->val_batch : 1) * sizeof(int));
    double totals[3] = {0.0, 0.0, 0.0};
    for (int begin = first; begin < last; begin += cfg->val_batch) {
        const int count = last - begin < cfg->val_batch ? last - begin : cfg->val_batch;
        for (int i = 0; i < count; i++) indices[i] = begin + i;
        load_batch(t, d, indices, count, 0, 0);
        network_forward(&t->net, count, 0, (float)t->cfg->bn_eps, (float)t->cfg->bn_momentum);
        int correct = 0;
        const float batch_loss = network_loss(&t->net, batch_labels(t), 0.0f, count, &correct);
        totals[0] += (double)batch_loss * count;
        totals[1] += correct;
        totals[2] += count;
    }
    free(indices);
    if (ranks > 1) t->comm.allreduce_sum_double(t->comm.context, totals, 3);
    *loss = totals[0] / totals[2];
    *accuracy = totals[1] / totals[2];
}
