/* NCCL for a run group (see cuda_nccl.h). The communicator is non-blocking
 * (ncclConfig_t.blocking = 0): no NCCL call can stall the host, every call that returns
 * ncclInProgress is completed by polling ncclCommGetAsyncError, and every wait (joining
 * the group, enqueueing, the collective itself, finalising) polls both the GPU and NCCL's
 * error state under one timeout. A failure aborts the communicator and leaves a message
 * naming this rank, its host and GPU, NCCL's error string and its detailed last error.
 *
 * CUDA runtime failures (a faulted kernel, out of memory) are fatal as everywhere in the
 * backend (CUDA_CHECK); NCCL failures are returned, so the caller can end the whole job
 * (MPI_Abort) rather than this one process. */
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_nccl.h"

_Static_assert(CUDA_NCCL_UNIQUE_ID_BYTES == NCCL_UNIQUE_ID_BYTES,
               "CUDA_NCCL_UNIQUE_ID_BYTES must equal NCCL_UNIQUE_ID_BYTES");
_Static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId is its bytes");

/* Longest wait for a collective or for the group to form, unless BNECK_NCCL_TIMEOUT_S
 * says otherwise (seconds; 0 waits forever). */
static double default_timeout_s(void) {
    const char *text = getenv("BNECK_NCCL_TIMEOUT_S");
    if (text && *text) {
        char *end = NULL;
        const double seconds = strtod(text, &end);
        if (end && !*end && seconds >= 0) return seconds;
        fprintf(stderr, "bneck: warning: BNECK_NCCL_TIMEOUT_S='%s' is not a number of seconds; "
                "using 300\n", text);
    }
    return 300.0;
}

struct cuda_nccl_comm {
    ncclComm_t nccl;     /* NULL once aborted or destroyed */
    int rank, size, device;
    char host[64];
    cudaStream_t stream; /* the collectives' own stream */
    cudaEvent_t ready;   /* recorded on the compute stream: the buffer is complete */
    cudaEvent_t done;    /* recorded on the NCCL stream: the collective finished */
    int in_flight;       /* started, not yet waited for */
    int joined;          /* the compute stream already waits for what is in flight */
    size_t in_flight_count;
    void *staging;       /* device copy of host buffers */
    size_t staging_bytes;
    double timeout_s;
    int failed;
    char error[1024];
};

/* snprintf that tolerates a NULL message buffer. */
static void report(char *message, size_t capacity, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void report(char *message, size_t capacity, const char *format, ...) {
    if (!message || !capacity) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, capacity, format, args);
    va_end(args);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Polls fast at first (a collective usually ends within microseconds of its peers), then
 * every 50 us so that a long wait does not burn a core. */
static void pause_briefly(long polls) {
    if (polls < 200) return;
    const struct timespec pause = {0, 50000};
    nanosleep(&pause, NULL);
}

static int timed_out(const cuda_nccl_comm *comm, double started) {
    return comm->timeout_s > 0 && now_s() - started > comm->timeout_s;
}

/* Records the failure (with NCCL's own detail while the communicator still exists), then
 * aborts the communicator so that no peer waits on this rank and no kernel of ours waits
 * on a dead peer. Returns -1. */
static int fail(cuda_nccl_comm *comm, const char *what, ncclResult_t result) {
    const char *detail = comm->nccl ? ncclGetLastError(comm->nccl) : NULL;
    snprintf(comm->error, sizeof comm->error,
             "NCCL group rank %d of %d (host %s, GPU %d): %s%s%s%s%s; communicator aborted",
             comm->rank, comm->size, comm->host, comm->device, what,
             result == ncclSuccess ? "" : ": ",
             result == ncclSuccess ? "" : ncclGetErrorString(result),
             detail && detail[0] ? ": " : "", detail && detail[0] ? detail : "");
    if (comm->nccl) {
        (void)ncclCommAbort(comm->nccl); /* frees the communicator whatever it returns */
        comm->nccl = NULL;
    }
    comm->failed = 1;
    comm->in_flight = 0; /* nothing is in flight on an aborted communicator */
    comm->joined = 0;
    comm->in_flight_count = 0;
    return -1;
}

/* NCCL's error state: 0 while healthy (ncclInProgress counts as healthy: an operation is
 * still being set up), else the failure. */
static ncclResult_t async_error(cuda_nccl_comm *comm) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm->nccl, &state);
    if (query != ncclSuccess) return query;
    return state == ncclInProgress ? ncclSuccess : state;
}

/* The failure of a wait that ran past the timeout: "<what> did not <ended> within N s". */
static int fail_timed_out(cuda_nccl_comm *comm, const char *what, const char *ended) {
    char text[256];
    snprintf(text, sizeof text, "%s did not %s within %.0f s (a peer may have died or %s)", what,
             ended, comm->timeout_s,
             strcmp(ended, "complete") ? "stopped calling it" : "not joined");
    return fail(comm, text, ncclSuccess);
}

/* Completes a non-blocking NCCL call: waits until the communicator leaves ncclInProgress.
 * returned is what the call itself returned. */
static int settle(cuda_nccl_comm *comm, ncclResult_t returned, const char *what) {
    if (returned != ncclSuccess && returned != ncclInProgress) return fail(comm, what, returned);
    const double started = now_s();
    for (long polls = 0;; polls++) {
        ncclResult_t state = ncclSuccess;
        const ncclResult_t query = ncclCommGetAsyncError(comm->nccl, &state);
        if (query != ncclSuccess) return fail(comm, what, query);
        if (state == ncclSuccess) return 0;
        if (state != ncclInProgress) return fail(comm, what, state);
        if (timed_out(comm, started)) return fail_timed_out(comm, what, "complete");
        pause_briefly(polls);
    }
}

/* Waits for an event of the NCCL stream while watching NCCL's error state. */
static int wait_for(cuda_nccl_comm *comm, cudaEvent_t event, const char *what) {
    const double started = now_s();
    for (long polls = 0;; polls++) {
        const cudaError_t status = cudaEventQuery(event);
        if (status == cudaSuccess) return 0;
        if (status != cudaErrorNotReady)
            CUDA_FAIL("NCCL group rank %d: cudaEventQuery while waiting for %s: %s (%s)",
                      comm->rank, what, cudaGetErrorString(status), cudaGetErrorName(status));
        const ncclResult_t error = async_error(comm);
        if (error != ncclSuccess) return fail(comm, what, error);
        if (timed_out(comm, started)) return fail_timed_out(comm, what, "finish");
        pause_briefly(polls);
    }
}

int cuda_nccl_unique_id(void *out_bytes, char *message, size_t capacity) {
    ncclUniqueId id;
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
        report(message, capacity, "ncclGetUniqueId: %s", ncclGetErrorString(result));
        return -1;
    }
    memcpy(out_bytes, &id, sizeof id);
    return 0;
}

int cuda_nccl_comm_create(cuda_nccl_comm **out, int group_rank, int group_size,
                          const void *unique_id_bytes, char *message, size_t capacity) {
    *out = NULL;
    if (!cuda_ctx.initialised) {
        report(message, capacity, "cuda_nccl_comm_create: the CUDA backend is not initialised");
        return -1;
    }
    if (group_size < 1 || group_rank < 0 || group_rank >= group_size || !unique_id_bytes) {
        report(message, capacity, "cuda_nccl_comm_create: bad group rank %d of %d", group_rank,
               group_size);
        return -1;
    }
    cuda_nccl_comm *comm = calloc(1, sizeof *comm);
    if (!comm) {
        report(message, capacity, "cuda_nccl_comm_create: out of memory");
        return -1;
    }
    comm->rank = group_rank;
    comm->size = group_size;
    comm->device = cuda_ctx.device;
    comm->timeout_s = default_timeout_s();
    if (gethostname(comm->host, sizeof comm->host) != 0)
        snprintf(comm->host, sizeof comm->host, "?");
    comm->host[sizeof comm->host - 1] = '\0';

    /* The highest priority the device offers: when a collective overlaps compute, its
     * kernels are scheduled first. */
    int least = 0, greatest = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&comm->stream, cudaStreamNonBlocking, greatest));
    CUDA_CHECK(cudaEventCreateWithFlags(&comm->ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&comm->done, cudaEventDisableTiming));

    ncclUniqueId id;
    memcpy(&id, unique_id_bytes, sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t returned =
        ncclCommInitRankConfig(&comm->nccl, group_size, id, group_rank, &config);
    int status;
    if (!comm->nccl) /* nothing to poll or abort */
        status = fail(comm, "ncclCommInitRankConfig", returned == ncclSuccess ? ncclInternalError
                                                                            : returned);
    else
        status = settle(comm, returned, "ncclCommInitRankConfig (joining the group)");
    if (status != 0) {
        report(message, capacity, "%s", comm->error);
        cuda_nccl_comm_destroy(comm);
        return -1;
    }
    *out = comm;
    return 0;
}

void cuda_nccl_set_timeout(cuda_nccl_comm *comm, double seconds) {
    if (comm) comm->timeout_s = seconds > 0 ? seconds : 0;
}

const char *cuda_nccl_last_error(const cuda_nccl_comm *comm) { return comm ? comm->error : ""; }
int cuda_nccl_group_rank(const cuda_nccl_comm *comm) { return comm->rank; }
int cuda_nccl_group_size(const cuda_nccl_comm *comm) { return comm->size; }

static int usable(cuda_nccl_comm *comm, const char *op) {
    if (!comm) CUDA_FAIL("%s: no communicator", op);
    if (comm->failed) return -1; /* the first failure's message stays */
    if (!comm->nccl) {
        snprintf(comm->error, sizeof comm->error, "%s: the communicator was destroyed", op);
        comm->failed = 1;
        return -1;
    }
    return 0;
}

static int is_device_memory(const void *pointer) {
    struct cudaPointerAttributes attributes;
    if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky-free error of an unknown pointer */
        return 0;
    }
    return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

static ncclRedOp_t nccl_op(cuda_nccl_op op) {
    if (op == CUDA_NCCL_SUM) return ncclSum;
    if (op == CUDA_NCCL_AVG) return ncclAvg;
    CUDA_FAIL("cuda_nccl: unknown reduction %d", (int)op);
}

/* Queues the collective on the NCCL stream after the compute stream's work so far, and,
 * when join, the compute stream's later work after it (else cuda_nccl_wait does that). */
static int enqueue(cuda_nccl_comm *comm, void *device_buffer, size_t count, ncclDataType_t type,
                   cuda_nccl_op op, int join) {
    CUDA_CHECK(cudaEventRecord(comm->ready, cuda_ctx.stream));
    CUDA_CHECK(cudaStreamWaitEvent(comm->stream, comm->ready, 0));
    const ncclResult_t returned = ncclAllReduce(device_buffer, device_buffer, count, type,
                                                nccl_op(op), comm->nccl, comm->stream);
    if (settle(comm, returned, "ncclAllReduce") != 0) return -1;
    CUDA_CHECK(cudaEventRecord(comm->done, comm->stream));
    if (join) CUDA_CHECK(cudaStreamWaitEvent(cuda_ctx.stream, comm->done, 0));
    comm->in_flight = 1;
    comm->joined = join;
    comm->in_flight_count += count;
    return 0;
}

int cuda_nccl_allreduce_start(cuda_nccl_comm *comm, float *device_buffer, size_t count,
                              cuda_nccl_op op) {
    if (usable(comm, "cuda_nccl_allreduce_start") != 0) return -1;
    if (comm->in_flight) CUDA_FAIL("cuda_nccl_allreduce_start: the previous collective was not "
                                   "waited for");
    if (!count) return 0;
    if (!is_device_memory(device_buffer))
        CUDA_FAIL("cuda_nccl_allreduce_start: %p is not device memory (use "
                  "cuda_nccl_allreduce_sum for host buffers)", (void *)device_buffer);
    return enqueue(comm, device_buffer, count, ncclFloat32, op, 1);
}

int cuda_nccl_allreduce_queue(cuda_nccl_comm *comm, float *device_buffer, size_t count,
                              cuda_nccl_op op) {
    if (usable(comm, "cuda_nccl_allreduce_queue") != 0) return -1;
    if (comm->in_flight && comm->joined)
        CUDA_FAIL("cuda_nccl_allreduce_queue: wait for the started collective first");
    if (!count) return 0;
    if (!is_device_memory(device_buffer))
        CUDA_FAIL("cuda_nccl_allreduce_queue: %p is not device memory", (void *)device_buffer);
    return enqueue(comm, device_buffer, count, ncclFloat32, op, 0);
}

int cuda_nccl_wait(cuda_nccl_comm *comm) {
    if (usable(comm, "cuda_nccl_wait") != 0) return -1;
    if (!comm->in_flight) return 0;
    /* the NCCL stream runs its collectives in order: the last one's event covers all */
    if (!comm->joined) CUDA_CHECK(cudaStreamWaitEvent(cuda_ctx.stream, comm->done, 0));
    char what[96];
    snprintf(what, sizeof what, "allreduce of %zu values", comm->in_flight_count);
    const int status = wait_for(comm, comm->done, what);
    comm->in_flight = 0;
    comm->joined = 0;
    comm->in_flight_count = 0;
    return status;
}

static int allreduce(cuda_nccl_comm *comm, void *buffer, size_t count, size_t element,
                     ncclDataType_t type, cuda_nccl_op op) {
    if (usable(comm, "cuda_nccl_allreduce") != 0) return -1;
    if (comm->in_flight && cuda_nccl_wait(comm) != 0) return -1;
    if (!count) return 0;
    if (is_device_memory(buffer)) {
        if (enqueue(comm, buffer, count, type, op, 1) != 0) return -1;
        return cuda_nccl_wait(comm);
    }
    /* Host memory: through the staging buffer. The copies run while nothing else is queued
     * on the NCCL stream, so they cannot block on a collective. */
    const size_t bytes = count * element;
    if (bytes > comm->staging_bytes) {
        if (comm->staging) CUDA_CHECK(cudaFree(comm->staging));
        comm->staging = NULL;
        comm->staging_bytes = 0;
        CUDA_CHECK(cudaMalloc(&comm->staging, bytes));
        comm->staging_bytes = bytes;
    }
    CUDA_CHECK(cudaMemcpyAsync(comm->staging, buffer, bytes, cudaMemcpyHostToDevice, comm->stream));
    if (enqueue(comm, comm->staging, count, type, op, 1) != 0) return -1;
    if (cuda_nccl_wait(comm) != 0) return -1;
    CUDA_CHECK(cudaMemcpyAsync(buffer, comm->staging, bytes, cudaMemcpyDeviceToHost, comm->stream));
    CUDA_CHECK(cudaStreamSynchronize(comm->stream));
    return 0;
}

int cuda_nccl_allreduce_sum(cuda_nccl_comm *comm, float *buffer, size_t count) {
    return allreduce(comm, buffer, count, sizeof(float), ncclFloat32, CUDA_NCCL_SUM);
}

int cuda_nccl_allreduce(cuda_nccl_comm *comm, float *buffer, size_t count, cuda_nccl_op op) {
    return allreduce(comm, buffer, count, sizeof(float), ncclFloat32, op);
}

int cuda_nccl_allreduce_double(cuda_nccl_comm *comm, double *buffer, size_t count,
                               cuda_nccl_op op) {
    return allreduce(comm, buffer, count, sizeof(double), ncclFloat64, op);
}

void cuda_nccl_comm_destroy(cuda_nccl_comm *comm) {
    if (!comm) return;
    if (comm->nccl && comm->in_flight) (void)cuda_nccl_wait(comm); /* aborts on failure */
    if (comm->nccl) {
        /* Finalise flushes outstanding work (there is none) and is collective; a failure here
         * aborts, and destroy then only frees what is left. */
        if (settle(comm, ncclCommFinalize(comm->nccl), "ncclCommFinalize") == 0) {
            const ncclResult_t result = ncclCommDestroy(comm->nccl);
            comm->nccl = NULL;
            if (result != ncclSuccess)
                fprintf(stderr, "bneck: warning: NCCL group rank %d: ncclCommDestroy: %s\n",
                        comm->rank, ncclGetErrorString(result));
        } else {
            fprintf(stderr, "bneck: warning: %s\n", comm->error);
        }
    }
    if (comm->stream) {
        /* after an abort, queued work may never finish: do not wait for it */
        if (!comm->failed) CUDA_CHECK(cudaStreamSynchronize(comm->stream));
        (void)cudaStreamDestroy(comm->stream);
    }
    if (comm->ready) (void)cudaEventDestroy(comm->ready);
    if (comm->done) (void)cudaEventDestroy(comm->done);
    /* cudaFree waits for the whole device, which after an abort may never finish: the
     * staging buffer is left to the process's end then (the job is ending anyway). */
    if (comm->staging && !comm->failed) CUDA_CHECK(cudaFree(comm->staging));
    free(comm);
}
