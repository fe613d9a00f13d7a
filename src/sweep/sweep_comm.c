/* A run group's gradient sums: NCCL between GPUs (gradients live in device memory; one
 * communicator per group, its id sent over MPI), MPI otherwise (group.c). */
#include "sweep/sweep_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sweep/group.h"
#ifdef BNECK_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_nccl.h"
#endif

int sweep_gpu_shared(const sweep_gpu_record *ranks, int count, int *first, int *second) {
    int found = SWEEP_GPU_ALONE;
    for (int i = 0; i < count; i++)
        for (int j = i + 1; ranks[i].bus_id[0] && j < count; j++) {
            if (strcmp(ranks[i].bus_id, ranks[j].bus_id) != 0 ||
                strcmp(ranks[i].host, ranks[j].host) != 0)
                continue;
            const int kind = ranks[i].group == ranks[j].group ? SWEEP_GPU_SHARED_IN_GROUP
                                                               : SWEEP_GPU_SHARED;
            if (kind > found) { /* the first pair of the worst kind */
                found = kind;
                *first = i;
                *second = j;
            }
        }
    return found;
}

#ifdef BNECK_HAVE_CUDA
static cuda_nccl_comm *group_nccl;
static sweep_world *nccl_world;

static void nccl_allreduce_sum_float(void *context, float *buffer, size_t count) {
    (void)context;
    if (cuda_nccl_allreduce_sum(group_nccl, buffer, count)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

/* Gradient parts summed while the backward pass goes on (train_comm's queue/join). */
static void nccl_allreduce_queue_float(void *context, float *buffer, size_t count) {
    (void)context;
    if (cuda_nccl_allreduce_queue(group_nccl, buffer, count, CUDA_NCCL_SUM)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

static void nccl_allreduce_join(void *context) {
    (void)context;
    if (cuda_nccl_wait(group_nccl)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

/* Collective over the world: two ranks on one GPU (more ranks on a node than it has GPUs
 * visible: rank choice is node-local rank modulo the GPUs) stop the job when they are in
 * one run group, whose NCCL communicator would refuse the GPU twice, and are warned about
 * otherwise: their runs share the GPU's time, so their epoch times are not one GPU's.
 * Returns 1 (every rank) when they are in one group. */
static int check_shared_gpus(sweep_state *s) {
    sweep_world *w = &s->world;
    sweep_gpu_record mine = {w->group, "", ""};
    if (s->backend == &cuda_backend) {
        snprintf(mine.host, sizeof mine.host, "%s", w->host);
        cuda_backend_pci_bus_id(mine.bus_id, sizeof mine.bus_id);
    }
    sweep_gpu_record *all = bneck_calloc((size_t)w->size, sizeof *all);
    sweep_world_allgather_bytes(w, &mine, all, sizeof mine);
    int first = 0, second = 0;
    const int shared = sweep_gpu_shared(all, w->size, &first, &second);
    if (shared == SWEEP_GPU_SHARED_IN_GROUP && w->rank == 0)
        log_error("ranks %d and %d of run group %d are on one GPU (%s on %s): NCCL takes a GPU "
                  "once per group; launch at most as many ranks per node as it has GPUs, or "
                  "give each task its own (srun --gpus-per-task=1)",
                  first, second, all[first].group, all[first].bus_id, all[first].host);
    else if (shared == SWEEP_GPU_SHARED && w->rank == 0)
        log_warn("ranks %d and %d share a GPU (%s on %s): their runs share its time, so their "
                 "epoch times are not those of one GPU; launch at most as many ranks per node "
                 "as it has GPUs", first, second, all[first].bus_id, all[first].host);
    free(all);
    return shared == SWEEP_GPU_SHARED_IN_GROUP;
}

/* Collective over the group; aborts the job naming the rank when NCCL cannot start. A
 * group trains on one kind of device, since its gradient sums are NCCL's or MPI's: with
 * device = auto, a rank that found no usable GPU where the others did would otherwise leave
 * them waiting in collectives it never joins. */
int sweep_comm_setup(sweep_state *s) {
    sweep_world *w = &s->world;
    if (check_shared_gpus(s)) return 2;
    if (w->group_size < 2) return 0;
    const int on_gpu = s->backend == &cuda_backend;
    uint64_t fewest_on_gpu, most_on_gpu;
    sweep_group_min_max(w, (uint64_t)on_gpu, &fewest_on_gpu, &most_on_gpu);
    if (fewest_on_gpu != most_on_gpu) {
        log_error("run group %d has ranks on GPUs and ranks on CPUs (this one: %s); a group "
                  "trains on one kind of device: give every rank of a group a usable GPU, or "
                  "set run.device = cpu", w->group, on_gpu ? "a GPU" : "the CPU");
        sweep_world_abort(w, 1);
    }
    if (!on_gpu) return 0;
    unsigned char id[CUDA_NCCL_UNIQUE_ID_BYTES] = {0};
    char message[512] = "";
    int failed = w->group_rank == 0 && cuda_nccl_unique_id(id, message, sizeof message);
    if (failed) log_error("NCCL: %s", message);
    if (sweep_group_any(w, failed)) sweep_world_abort(w, 1);
    sweep_group_broadcast(w, id, sizeof id);
    if (cuda_nccl_comm_create(&group_nccl, w->group_rank, w->group_size, id, message, sizeof message)) {
        log_error("NCCL: %s", message);
        sweep_world_abort(w, 1);
    }
    nccl_world = w;
    return 0;
}

void sweep_comm_teardown(void) {
    if (group_nccl) cuda_nccl_comm_destroy(group_nccl);
    group_nccl = NULL;
    nccl_world = NULL;
}

train_comm sweep_comm_of_group(sweep_world *w) {
    train_comm comm = sweep_group_comm(w);
    if (group_nccl) {
        comm.allreduce_sum_float = nccl_allreduce_sum_float;
        comm.allreduce_queue_float = nccl_allreduce_queue_float;
        comm.allreduce_join = nccl_allreduce_join;
    }
    return comm;
}
#else
int sweep_comm_setup(sweep_state *s) { return (void)s, 0; }
void sweep_comm_teardown(void) {}
train_comm sweep_comm_of_group(sweep_world *w) { return sweep_group_comm(w); }
#endif
