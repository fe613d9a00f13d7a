/* NCCL for one run group: one communicator per group, gradients summed (or averaged) in
 * place by ncclAllReduce on a stream of its own, ordered against the backend's compute
 * stream by events: in parts queued during the backward pass as each part is ready
 * (cuda_nccl_allreduce_queue), or the whole buffer at once. Plain C; no NCCL or CUDA
 * header needed to use it.
 *
 * Errors are checked asynchronously: while the host waits for a collective it polls
 * ncclCommGetAsyncError as well as the stream, so a peer that dies (its process killed,
 * its node lost) makes the call abort the communicator (ncclCommAbort) and return -1 with
 * a message naming this rank, instead of hanging. A collective that has not finished
 * after the timeout (default 300 s, cuda_nccl_set_timeout) is treated the same way, since
 * on one node (shared memory, NVLink) a dead peer can leave NCCL waiting without an error.
 * After a failure the communicator is unusable: every later call returns -1 at once with
 * the same message; destroy it and end the job (MPI_Abort), do not retry.
 *
 * How the sweep uses it (the caller owns MPI; this file never calls it):
 *
 *     // after backend_select(..., world.local_rank, ...) picked the GPU (cuda_backend_init)
 *     unsigned char id[CUDA_NCCL_UNIQUE_ID_BYTES];
 *     char message[512];
 *     int ok = world.group_rank != 0 || cuda_nccl_unique_id(id, message, sizeof message) == 0;
 *     // agree that rank 0 succeeded (sweep_group_any on !ok), then
 *     sweep_group_broadcast(&world, id, sizeof id);          // from group rank 0
 *     cuda_nccl_comm *nccl;
 *     if (cuda_nccl_comm_create(&nccl, world.group_rank, world.group_size, id,
 *                               message, sizeof message) != 0) -> log message, abort job
 *     ...
 *     // once per step, after the backward pass was queued (no synchronize needed):
 *     if (cuda_nccl_allreduce_sum(nccl, net->grads, param_count) != 0)
 *         -> log cuda_nccl_last_error(nccl), sweep_world_abort(&world, 1)
 *     ...
 *     cuda_nccl_comm_destroy(nccl);   // before cuda_backend_shutdown
 *
 * Every rank of the group must call cuda_nccl_comm_create (it is collective), and each
 * collective, in the same order with the same count. cuda_nccl_allreduce_sum accepts host
 * memory too (staged through a device buffer; for the rare small host reductions such as
 * the BatchNorm statistics train.c averages on the host); cuda_nccl_allreduce_start wants
 * device memory. All functions need cuda_backend_init to have run in this process. */
#ifndef BNECK_BACKEND_CUDA_NCCL_H
#define BNECK_BACKEND_CUDA_NCCL_H

#include <stddef.h>

/* Size of an NCCL unique id (NCCL_UNIQUE_ID_BYTES; checked at compile time). */
#define CUDA_NCCL_UNIQUE_ID_BYTES 128

typedef struct cuda_nccl_comm cuda_nccl_comm;

typedef enum { CUDA_NCCL_SUM = 0, CUDA_NCCL_AVG = 1 } cuda_nccl_op;

/* Makes a new unique id into out_bytes (CUDA_NCCL_UNIQUE_ID_BYTES bytes), on the group's
 * rank 0 only; the caller broadcasts it to the group. 0, or -1 with NCCL's message (for
 * example when no usable network interface is found). */
int cuda_nccl_unique_id(void *out_bytes, char *message, size_t capacity);

/* Collective over the group: creates this rank's communicator on the backend's device.
 * group_rank in [0, group_size); unique_id_bytes the id from rank 0. Waits at most the
 * default timeout for all ranks to join. 0 and *out set, or -1, *out NULL and a message
 * naming the rank and NCCL's own error text. group_size 1 works (a local no-op reduce). */
int cuda_nccl_comm_create(cuda_nccl_comm **out, int group_rank, int group_size,
                          const void *unique_id_bytes, char *message, size_t capacity);

/* Longest wait for one collective, in seconds; 0 waits forever (a dead peer is then found
 * only through NCCL's own error reports). Default 300, or the environment's
 * BNECK_NCCL_TIMEOUT_S (which also bounds cuda_nccl_comm_create's wait for the group). */
void cuda_nccl_set_timeout(cuda_nccl_comm *comm, double seconds);

/* In place, over the group: buffer[i] = sum over ranks of buffer[i]. Device memory (from
 * cuda_backend.alloc) or host memory. Queued after the work already queued on the
 * backend's stream; returns when the result is in buffer (later backend ops are ordered
 * after it). 0, or -1 (see cuda_nccl_last_error) after aborting the communicator. */
int cuda_nccl_allreduce_sum(cuda_nccl_comm *comm, float *buffer, size_t count);
/* The same with a choice of sum or average, and for doubles. */
int cuda_nccl_allreduce(cuda_nccl_comm *comm, float *buffer, size_t count, cuda_nccl_op op);
int cuda_nccl_allreduce_double(cuda_nccl_comm *comm, double *buffer, size_t count,
                               cuda_nccl_op op);

/* Split form, for overlap: start queues the allreduce of a device buffer and makes the
 * backend's stream wait for it (so backend ops queued afterwards see the result), then
 * returns at once; the host may prepare other work, then must call cuda_nccl_wait before
 * any host synchronisation with the backend (download, synchronize, softmax_xent), or a
 * dead peer would hang that call instead. At most one collective in flight per comm. */
int cuda_nccl_allreduce_start(cuda_nccl_comm *comm, float *device_buffer, size_t count,
                              cuda_nccl_op op);
int cuda_nccl_wait(cuda_nccl_comm *comm);
/* Overlap with the backward pass: queue queues the allreduce of a device buffer after the
 * work queued on the backend's stream so far and returns at once, without making the
 * backend's stream wait for it, so the rest of the backward pass runs alongside; several
 * may be queued (they run in order on the NCCL stream). cuda_nccl_wait then makes the
 * backend's stream wait for all of them and waits on the host (with the timeout and the
 * dead-peer polling). The buffers must not be touched by backend work queued between. */
int cuda_nccl_allreduce_queue(cuda_nccl_comm *comm, float *device_buffer, size_t count,
                              cuda_nccl_op op);

/* The message of the failure that made a call return -1 ("" when none). */
const char *cuda_nccl_last_error(const cuda_nccl_comm *comm);

int cuda_nccl_group_rank(const cuda_nccl_comm *comm);
int cuda_nccl_group_size(const cuda_nccl_comm *comm);

/* Waits for what is in flight (with the timeout), finalises and destroys the
 * communicator, or only frees what is left after an abort. NULL is ignored. */
void cuda_nccl_comm_destroy(cuda_nccl_comm *comm);

#endif
