/* Run under mpirun -n 2 (tests/it_mpi.sh). Checks the data-parallel path of a run group:
 *  1. gradients summed over 2 ranks by the group's allreduce hook equal the gradients one
 *     process gets from the same two halves of the batch (BatchNorm uses each rank's own
 *     batch statistics, as PyTorch's DDP does without SyncBN, so the single-process
 *     reference runs the same halves);
 *  2. after an epoch of data-parallel training through the trainer, both ranks hold
 *     bit-identical weights, and the comparison the sweep makes before each commit finds
 *     one bit changed on one rank;
 *  3. with a batch the ranks share unevenly (15: 7 and 8 images), each rank's full steps
 *     after its first sum their gradient parts during the backward pass too (the rank with
 *     the smaller share once never did), and the weights still end identical.
 * Prints "mpi_data_parallel: N passed, 0 failed" on rank 0 and exits non-zero on failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "backend/cpu/cpu_gemm.h"
#include "core/rng.h"
#include "model/network.h"
#include "sweep/group.h"
#include "train/train.h"

#define MPI_TEST_NAME "mpi_data_parallel"
#include "mpi_expect.h"

enum { HALF = 4 };

static void fill_half(network *net, int half) {
    float *input = network_tensor(net, net->model.input, HALF);
    for (int i = 0; i < HALF * 32 * 32; i++)
        input[i] = rng_uniform(5, (uint64_t)(half * HALF * 32 * 32 + i));
}

static void labels_of(uint8_t *labels, int half) {
    for (int i = 0; i < HALF; i++) labels[i] = (uint8_t)rng_below(6, (uint64_t)(half * HALF + i), 10);
}

static void gradients_of_half(network *net, int half) {
    uint8_t labels[HALF];
    fill_half(net, half);
    labels_of(labels, half);
    network_forward(net, HALF, 1, 1e-3f, 0.99f);
    network_loss(net, labels, 1.0f / (2 * HALF), HALF, NULL);
    network_backward(net, HALF);
}

static dataset make_dataset(int count, uint64_t seed) {
    dataset d = {count, 1, malloc((size_t)count * 1024), malloc((size_t)count)};
    for (int i = 0; i < count; i++) {
        d.labels[i] = (uint8_t)rng_below(seed, (uint64_t)i, 10);
        for (int p = 0; p < 1024; p++)
            d.pixels[(size_t)i * 1024 + p] = (uint8_t)rng_below(seed + 1, (uint64_t)i * 1024 + p, 256);
    }
    return d;
}

int main(int argc, char **argv) {
    sweep_world world;
    sweep_world_init(&world, &argc, &argv);
    if (expect_job_shape(&world, world.size == 2, "mpirun -n 2")) return 2;
    sweep_world_split(&world, 2, 1);
    cpu_set_threads(1);
    train_comm comm = sweep_group_comm(&world);

    /* 1. Summed gradients. */
    model m;
    model_spec spec = {3, 4, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    model_build(&m, &spec, NULL);
    static network net;
    network_create(&net, &m, &cpu_backend, HALF, NULL);
    network_init_params(&net, 3, INIT_GLOROT);
    gradients_of_half(&net, world.group_rank);
    comm.allreduce_sum_float(comm.context, net.grads, m.param_count);

    static network reference;
    network_create(&reference, &m, &cpu_backend, HALF, NULL);
    network_init_params(&reference, 3, INIT_GLOROT);
    float *expected = calloc(m.param_count, sizeof(float));
    for (int half = 0; half < 2; half++) {
        gradients_of_half(&reference, half);
        for (size_t i = 0; i < m.param_count; i++) expected[i] += reference.grads[i];
    }
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < m.param_count; i++) {
        worst = fmax(worst, fabs((double)net.grads[i] - expected[i]));
        scale = fmax(scale, fabs((double)expected[i]));
    }
    char what[160];
    snprintf(what, sizeof what, "2-rank gradients equal single-process ones (max diff %.3g of %.3g)",
             worst, scale);
    expect(worst <= 1e-6 * scale + 1e-9, world.rank, what);

    /* 2. An epoch of data-parallel training leaves identical weights on both ranks. */
    static config cfg;
    config_defaults(&cfg);
    cfg.batch = 16;
    cfg.val_batch = 20;
    cfg.epochs = 1;
    dataset train_set = make_dataset(64, 1), val_set = make_dataset(40, 2);
    static trainer t;
    bneck_error err;
    if (trainer_create(&t, &cfg, &spec, &train_set, &val_set, &cpu_backend, &comm, &err)) {
        fprintf(stderr, "mpi_data_parallel: %s\n", err.message);
        sweep_world_abort(&world, 1);
    }
    epoch_record record;
    trainer_run_epoch(&t, &record);
    const size_t param_bytes = m.param_count * sizeof(float);
    expect(sweep_group_holds_same(&world, t.net.params, param_bytes), world.rank,
           "weights bit-identical on both ranks after an epoch");
    expect(sweep_group_holds_same(&world, t.net.state, m.state_count * sizeof(float)), world.rank,
           "BatchNorm running statistics identical after an epoch");
    /* the sweep's check before each commit (run_train.c) catches one bit off on one rank */
    float *perturbed = malloc(param_bytes);
    memcpy(perturbed, t.net.params, param_bytes);
    if (world.rank == 1) {
        uint32_t bits;
        memcpy(&bits, &perturbed[m.param_count / 2], sizeof bits);
        bits ^= 1u;
        memcpy(&perturbed[m.param_count / 2], &bits, sizeof bits);
    }
    expect(!sweep_group_holds_same(&world, perturbed, param_bytes), world.rank,
           "weights one bit apart on one rank are found to differ");
    free(perturbed);
    expect(record.val_acc >= 0.0 && record.val_acc <= 1.0, world.rank, "validation accuracy is a fraction");

    /* 3. Uneven shares: 64 images in batches of 15 (7 + 8 images) and a last one of 4. */
    static config uneven_cfg;
    uneven_cfg = cfg;
    uneven_cfg.batch = 15;
    static trainer uneven;
    if (trainer_create(&uneven, &uneven_cfg, &spec, &train_set, &val_set, &cpu_backend, &comm,
                       &err)) {
        fprintf(stderr, "mpi_data_parallel: %s\n", err.message);
        sweep_world_abort(&world, 1);
    }
    trainer_plan_gradient_parts(&uneven, 64); /* the model is smaller than a default part */
    expect(uneven.bucket_count > 1, world.rank, "the gradients are summed in parts");
    expect(uneven.full_local_batch == 7 + world.group_rank, world.rank,
           "a full batch of 15 is shared as 7 and 8 images");
    trainer_run_epoch(&uneven, &record);
    snprintf(what, sizeof what, "rank %d (%d images a step) took a full step: parts queued "
             "in the backward pass from the next", world.group_rank, uneven.full_local_batch);
    expect(uneven.full_step_done, world.rank, what);
    expect(sweep_group_holds_same(&world, uneven.net.params, param_bytes), world.rank,
           "weights bit-identical on both ranks after an epoch of uneven shares");
    trainer_destroy(&uneven);

    const int total_failures = expect_totals(world.rank, "");
    trainer_destroy(&t);
    network_destroy(&net);
    network_destroy(&reference);
    free(expected);
    dataset_free(&train_set);
    dataset_free(&val_set);
    sweep_world_finalize(&world);
    return total_failures ? 1 : 0;
}
