/* One training run: epochs of shuffled, augmented mini-batches, Adam with the study's
 * step schedule and L2 in either framework's form, evaluation after every epoch.
 * A run may be data parallel over the ranks of a group: each rank takes its share of the
 * global batch and the gradients are summed through the comm hooks, so every rank keeps
 * identical weights. Everything the run needs to continue is in the trainer (parameters,
 * running statistics, Adam moments, step and epoch counts, how far the epoch in progress
 * got), so a checkpoint is a copy. */
#ifndef BNECK_TRAIN_TRAIN_H
#define BNECK_TRAIN_TRAIN_H

#include <stddef.h>

#include "data/dataset.h"
#include "model/network.h"
#include "train/config.h"

typedef struct epoch_record {
    int epoch;             /* 1-based */
    double lr;
    double train_loss;     /* mean cross-entropy over the epoch (no L2 penalty, as val_loss) */
    double train_acc;      /* fraction correct during training (augmented, training mode) */
    double val_loss, val_acc;
    double epoch_s;        /* training time of the epoch, evaluation excluded */
    double images_per_s;   /* training images per second over the whole group */
    double compute_s, allreduce_s, data_s, eval_s; /* where the time went (this rank) */
} epoch_record;

/* How far this rank got in the epoch in progress: nothing at an epoch's start; after a
 * stop part-way (trainer_run_epoch returned 1), the global batches already trained and
 * this rank's sums and times over them. The next trainer_run_epoch goes on from there, so
 * an epoch stopped and continued (after a checkpoint, even in another process) trains
 * the same weights and records the same numbers as one never stopped. */
typedef struct epoch_progress {
    int steps;                /* of the epoch's global batches, taken in order */
    double loss_sum, correct; /* this rank's training cross-entropy sum and hits */
    int seen;                 /* this rank's images among them */
    double train_s, compute_s, allreduce_s, data_s; /* as in epoch_record, so far */
} epoch_progress;

/* What the ranks of a run agree on at a step boundary; the largest any rank asks for wins. */
typedef enum { EPOCH_GO_ON = 0, EPOCH_PAUSE_TO_COMMIT = 1, EPOCH_STOP = 2 } epoch_pause;

/* How the ranks of one run talk. With ranks == 1 the functions are never called. */
typedef struct train_comm {
    void *context;
    int rank, ranks;
    void (*allreduce_sum_float)(void *context, float *buffer, size_t count);
    void (*allreduce_sum_double)(void *context, double *buffer, size_t count);
    /* The largest value over the ranks of the run (agreeing at a step boundary on an
     * epoch_pause). */
    int (*max_over_ranks)(void *context, int value);
    /* Optional, to overlap the gradient sum with the backward pass: queue starts the sum
     * of one part of the gradients as soon as the backward pass has produced it (it may
     * return before the sum is done), join waits for all the parts queued. Without them
     * the gradients are summed with one allreduce_sum_float after the backward pass. */
    void (*allreduce_queue_float)(void *context, float *buffer, size_t count);
    void (*allreduce_join)(void *context);
} train_comm;

/* A contiguous part of the gradient buffer, summed over the ranks once the backward pass
 * is past layer after_layer (parameters are laid out in layer order, so the backward pass
 * finishes them from the end of the buffer towards its start). */
typedef struct gradient_bucket {
    size_t offset, count;
    int after_layer;
} gradient_bucket;

/* Assembles a batch straight into backend memory: the network input (CNHW) and labels,
 * e.g. from a copy of the dataset kept in GPU memory. The same crop and flip as
 * augment_batch, bit for bit. */
typedef struct batch_source {
    void *context;
    void (*assemble)(void *context, const dataset *d, float *input, uint8_t *labels,
                     const int *indices, int count, uint64_t seed, int epoch, int augment);
} batch_source;

/* Runs the forward pass, loss and backward pass of a training step other than op by op
 * (replaying a CUDA graph: step_graph.h), keeping the loss and hits itself. */
typedef struct step_recorder {
    void *context;
    /* Returns 1 when it ran the step of `count` images (input and labels already in the
     * network), 0 when the trainer must run it op by op. */
    int (*run)(void *context, network *net, int count, float grad_scale, float bn_eps,
               float bn_momentum);
    /* Adds the loss sum and hits of the steps it ran since the last call. */
    void (*take_totals)(void *context, double *loss_sum, double *correct);
} step_recorder;

typedef struct trainer {
    const config *cfg;
    const dataset *train_set, *val_set;
    network net;
    train_comm comm;
    float *adam_m, *adam_v; /* backend memory, param_count each */
    long step;              /* Adam steps taken */
    int epochs_done;
    epoch_progress progress; /* within epoch epochs_done + 1 */
    int max_local_batch;    /* the largest share of a batch any rank takes (buffers' size) */
    int full_local_batch;   /* this rank's share of a full batch (less when uneven) */
    int *order;             /* this epoch's permutation of the training images */
    float *host_batch;      /* the assembled batch before it is uploaded */
    uint8_t *host_labels;
    /* When set, batches are assembled by the backend; otherwise on the host, then uploaded. */
    batch_source device_batches;
    /* When set, offered every training step first (step_graph.h). */
    step_recorder recorded_steps;
    /* Asked at every step boundary; non-zero ends the epoch early (NULL: never). */
    int (*stop_requested)(void);
    /* Asked at every step boundary where no stop was asked; non-zero pauses the epoch
     * there for a commit of its progress (NULL: never). */
    int (*commit_due)(void *context);
    void *commit_context;
    /* Names the run in progress lines ("[E-r2] epoch 1: step ..."); NULL: no name. */
    const char *label;
    /* Gradient parts summed during the backward pass (comm's queue/join), in order. */
    gradient_bucket buckets[MODEL_MAX_LAYERS];
    int bucket_count; /* 0: one allreduce after the backward pass */
    int next_bucket;  /* the next one to queue in this step */
    /* Parts are queued during the backward pass only in full steps after this process's
     * first: a step of a new shape may time convolution engines and grow scratch buffers
     * (on the GPU: device-wide synchronisation), so it sums after its backward pass. */
    int full_step_done, overlap_this_step;
} trainer;

/* Sets up a run of the model on the backend with freshly initialised weights (from
 * cfg->seed). comm may be NULL for a single process. */
int trainer_create(trainer *t, const config *cfg, const model_spec *spec, const dataset *train_set,
                   const dataset *val_set, const backend_ops *backend, const train_comm *comm,
                   bneck_error *err);
void trainer_destroy(trainer *t);

/* Splits the gradient buffer into parts of about part_floats (at layer boundaries) that
 * are summed over the ranks during the backward pass, or leaves one sum after it (0
 * parts) when the layout does not allow parts. trainer_create plans 2 MiB parts for runs
 * of several ranks; tests plan smaller ones. */
void trainer_plan_gradient_parts(trainer *t, size_t part_floats);

/* The learning rate of 0-based epoch `epoch` of cfg->epochs. */
double trainer_learning_rate(const config *cfg, int epoch);

/* Trains epoch t->epochs_done + 1 (from t->progress on), evaluates, fills the record,
 * and counts the epoch: returns EPOCH_GO_ON. Returns EPOCH_STOP or EPOCH_PAUSE_TO_COMMIT
 * when the ranks agreed on one at a step boundary: the epoch is then not counted,
 * t->progress says how far it got, and the trainer can be checkpointed there and asked
 * again to go on with the epoch. */
epoch_pause trainer_run_epoch(trainer *t, epoch_record *record);

/* The number of global batches in one epoch. */
int trainer_steps_per_epoch(const trainer *t);

/* Whether the epoch's training or validation loss is not finite: the weights have
 * diverged (a learning rate too high for the model, say), and more epochs cannot mend
 * them. */
int epoch_record_diverged(const epoch_record *record);

/* Mean loss and accuracy on the validation set (inference-mode BatchNorm). */
void trainer_evaluate(trainer *t, double *loss, double *accuracy);

#endif
