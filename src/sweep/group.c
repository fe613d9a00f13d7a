#include "sweep/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"

#ifdef BNECK_HAVE_MPI
#include <mpi.h>

/* Board layout in rank 0's window: [0] next ticket, [1] runs finished in this session
 * (kept ones not counted), [2] stop posted, [3] work trained in this session, then per
 * group (run index + 1, epoch). */
enum { BOARD_TICKET = 0, BOARD_DONE = 1, BOARD_STOP = 2, BOARD_TRAINED = 3, BOARD_GROUPS = 4 };

typedef struct mpi_parts {
    MPI_Comm group_comm;
    MPI_Win board_window;
    int64_t *board;
    int board_length;
    /* the read of the board's stop slot in flight (sweep_board_stop_seen) */
    MPI_Request stop_read;
    int stop_read_active;
    int64_t stop_read_value;
    int stop_seen; /* a posted stop is never withdrawn: once seen, the answer stays */
} mpi_parts;

static mpi_parts *parts_of(sweep_world *w) { return (mpi_parts *)w->impl; }

static void check_mpi(int code, const char *what) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    BNECK_FAIL("%s failed: %s", what, text);
}

/* The world a fatal error (BNECK_FAIL) on this rank aborts, so that the other ranks do not
 * wait for it in a collective: mpirun and srun --kill-on-bad-exit would stop them, a plain
 * srun would not. */
static sweep_world *world_to_abort;

static void abort_world(int status) {
    sweep_world *w = world_to_abort;
    world_to_abort = NULL;
    if (w) sweep_world_abort(w, status);
}

void sweep_world_init(sweep_world *w, int *argc, char ***argv) {
    memset(w, 0, sizeof *w);
    int initialised = 0;
    MPI_Initialized(&initialised);
    /* only the main thread calls MPI; OpenMP's threads and the stop watcher (stop.c) never
     * do: MPI_THREAD_FUNNELED, which the standard asks for as soon as there are threads */
    int provided = MPI_THREAD_SINGLE;
    if (!initialised)
        check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    else
        MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_FUNNELED)
        log_warn("this MPI gives threads level %d, less than MPI_THREAD_FUNNELED (%d) that a "
                 "process with OpenMP threads needs", provided, MPI_THREAD_FUNNELED);
    /* Errors come back as codes we turn into messages naming the rank and host. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm node;
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    MPI_Comm_rank(node, &w->local_rank);
    MPI_Comm_size(node, &w->local_size);
    MPI_Comm_free(&node);
    gethostname(w->host, sizeof w->host - 1);
    world_to_abort = w;
    bneck_fail_exit_set(abort_world);
    w->impl = bneck_calloc(1, sizeof(mpi_parts));
    w->group_size = 1;
    w->groups = w->size;
    w->group = w->rank;
}

void sweep_world_split(sweep_world *w, int ranks_per_run, int run_count) {
    mpi_parts *p = parts_of(w);
    (void)run_count;
    w->group = w->rank / ranks_per_run;
    w->groups = w->size / ranks_per_run;
    check_mpi(MPI_Comm_split(MPI_COMM_WORLD, w->group, w->rank, &p->group_comm), "MPI_Comm_split");
    MPI_Comm_set_errhandler(p->group_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(p->group_comm, &w->group_rank);
    MPI_Comm_size(p->group_comm, &w->group_size);
    p->board_length = BOARD_GROUPS + 2 * w->groups;
    const MPI_Aint bytes = w->rank == 0 ? (MPI_Aint)p->board_length * (MPI_Aint)sizeof(int64_t) : 0;
    check_mpi(MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &p->board,
                               &p->board_window),
              "MPI_Win_allocate");
    MPI_Win_set_errhandler(p->board_window, MPI_ERRORS_RETURN); /* errors named by check_mpi */
    if (w->rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, p->board_window);
        memset(p->board, 0, (size_t)bytes);
        MPI_Win_unlock(0, p->board_window);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    /* One access epoch for the whole sweep, each operation completed by a flush: where the
     * transport moves one-sided operations only when rank 0 calls MPI (between its steps),
     * an operation then waits for one such call, not one per lock, operation and unlock. */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, p->board_window);
}

void sweep_world_finalize(sweep_world *w) {
    mpi_parts *p = parts_of(w);
    if (p) {
        if (p->stop_read_active) check_mpi(MPI_Wait(&p->stop_read, MPI_STATUS_IGNORE), "MPI_Wait");
        if (p->board_length) {
            MPI_Win_unlock_all(p->board_window);
            MPI_Win_free(&p->board_window); /* collective: every rank */
        }
        if (p->group_comm != MPI_COMM_NULL && p->group_comm) MPI_Comm_free(&p->group_comm);
        free(p);
        w->impl = NULL;
    }
    bneck_fail_exit_set(NULL);
    world_to_abort = NULL;
    MPI_Finalize();
}

void sweep_world_abort(sweep_world *w, int status) {
    fflush(stdout);
    fflush(stderr);
    /* Alone in the job there is nobody to stop: finish MPI, so the error line is the last
       thing printed (MPI_Abort adds Open MPI's eight-line banner under it). _exit, as
       MPI_Abort would: after a failed write (a full disk) HDF5's own exit handler tries to
       close the file again and crashes. */
    if (w->size == 1) {
        sweep_world_finalize(w);
        _exit(status);
    }
    MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

static int64_t board_fetch_add(sweep_world *w, int slot, int64_t amount) {
    mpi_parts *p = parts_of(w);
    int64_t previous = 0;
    check_mpi(MPI_Fetch_and_op(&amount, &previous, MPI_INT64_T, 0, slot, MPI_SUM, p->board_window),
              "MPI_Fetch_and_op");
    check_mpi(MPI_Win_flush(0, p->board_window), "MPI_Win_flush");
    return previous;
}

int sweep_next_ticket(sweep_world *w) {
    int64_t ticket = 0;
    if (w->group_rank == 0) ticket = board_fetch_add(w, BOARD_TICKET, 1);
    check_mpi(MPI_Bcast(&ticket, 1, MPI_INT64_T, 0, parts_of(w)->group_comm), "MPI_Bcast");
    return (int)ticket;
}

long sweep_count_done(sweep_world *w) { return (long)board_fetch_add(w, BOARD_DONE, 1) + 1; }
long sweep_runs_done(sweep_world *w) { return (long)board_fetch_add(w, BOARD_DONE, 0); }

void sweep_board_post_stop(sweep_world *w) { board_fetch_add(w, BOARD_STOP, 1); }
void sweep_board_add_trained(sweep_world *w, int64_t work) { board_fetch_add(w, BOARD_TRAINED, work); }
int64_t sweep_board_trained(sweep_world *w) { return board_fetch_add(w, BOARD_TRAINED, 0); }

void sweep_world_wait_all(sweep_world *w, int (*poll)(void *context), void *context,
                          int *stopped) {
    MPI_Request all_here;
    check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &all_here), "MPI_Ibarrier");
    for (;;) {
        int done = 0;
        check_mpi(MPI_Test(&all_here, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (done) return;
        if (poll(context) && !*stopped) {
            *stopped = 1;
            sweep_board_post_stop(w);
        }
        /* a waiting rank polls, not spins: the ranks still training need the cores */
        const struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

int sweep_board_stop_posted(sweep_world *w) { return board_fetch_add(w, BOARD_STOP, 0) > 0; }

int sweep_board_stop_seen(sweep_world *w) {
    mpi_parts *p = parts_of(w);
    if (p->stop_seen) return 1;
    if (p->stop_read_active) {
        int done = 0;
        check_mpi(MPI_Test(&p->stop_read, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (!done) return 0;
        p->stop_read_active = 0;
        if (p->stop_read_value > 0) return p->stop_seen = 1;
    }
    check_mpi(MPI_Rget_accumulate(NULL, 0, MPI_INT64_T, &p->stop_read_value, 1, MPI_INT64_T, 0,
                                  BOARD_STOP, 1, MPI_INT64_T, MPI_NO_OP, p->board_window,
                                  &p->stop_read),
              "MPI_Rget_accumulate");
    p->stop_read_active = 1;
    return 0;
}

void sweep_board_post(sweep_world *w, int run_index, int epoch) {
    mpi_parts *p = parts_of(w);
    int64_t values[2] = {run_index + 1, epoch};
    check_mpi(MPI_Accumulate(values, 2, MPI_INT64_T, 0, BOARD_GROUPS + 2 * w->group, 2,
                             MPI_INT64_T, MPI_REPLACE, p->board_window),
              "MPI_Accumulate");
    check_mpi(MPI_Win_flush(0, p->board_window), "MPI_Win_flush");
}

void sweep_board_read(sweep_world *w, int *run_index, int *epoch, long *done, long *next_ticket) {
    mpi_parts *p = parts_of(w);
    int64_t *copy = bneck_malloc((size_t)p->board_length * sizeof(int64_t));
    check_mpi(MPI_Get_accumulate(NULL, 0, MPI_INT64_T, copy, p->board_length, MPI_INT64_T, 0, 0,
                                 p->board_length, MPI_INT64_T, MPI_NO_OP, p->board_window),
              "MPI_Get_accumulate");
    check_mpi(MPI_Win_flush(0, p->board_window), "MPI_Win_flush");
    *done = (long)copy[BOARD_DONE];
    *next_ticket = (long)copy[BOARD_TICKET];
    for (int g = 0; g < w->groups; g++) {
        run_index[g] = (int)copy[BOARD_GROUPS + 2 * g] - 1;
        epoch[g] = (int)copy[BOARD_GROUPS + 2 * g + 1];
    }
    free(copy);
}

int sweep_group_any(sweep_world *w, int flag) {
    int any = 0;
    check_mpi(MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_LOR, parts_of(w)->group_comm), "MPI_Allreduce");
    return any;
}

int sweep_world_first(sweep_world *w, int flag) {
    int mine = flag ? w->rank : w->size, first = w->size;
    check_mpi(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
    return first < w->size ? first : -1;
}

int sweep_world_any(sweep_world *w, int flag) {
    (void)w;
    int any = 0;
    check_mpi(MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD), "MPI_Allreduce");
    return any;
}

void sweep_world_barrier(sweep_world *w) {
    (void)w;
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

void sweep_group_broadcast(sweep_world *w, void *buffer, size_t bytes) {
    /* MPI counts are ints: send large buffers in pieces. */
    const size_t piece = (size_t)1 << 30;
    for (size_t offset = 0; offset < bytes; offset += piece) {
        const size_t length = bytes - offset < piece ? bytes - offset : piece;
        check_mpi(MPI_Bcast((char *)buffer + offset, (int)length, MPI_BYTE, 0, parts_of(w)->group_comm),
                  "MPI_Bcast");
    }
}

void sweep_world_allgather_bytes(sweep_world *w, const void *mine, void *all, size_t each) {
    (void)w;
    check_mpi(MPI_Allgather(mine, (int)each, MPI_BYTE, all, (int)each, MPI_BYTE, MPI_COMM_WORLD),
              "MPI_Allgather");
}

void sweep_group_gather(sweep_world *w, const void *mine, void *all, size_t each) {
    check_mpi(MPI_Gather(mine, (int)each, MPI_BYTE, all, (int)each, MPI_BYTE, 0,
                         parts_of(w)->group_comm),
              "MPI_Gather");
}

void sweep_group_allgather_text(sweep_world *w, const char *mine, char *all, size_t each) {
    check_mpi(MPI_Allgather(mine, (int)each, MPI_CHAR, all, (int)each, MPI_CHAR, parts_of(w)->group_comm),
              "MPI_Allgather");
}

void sweep_group_min_max(sweep_world *w, uint64_t value, uint64_t *min, uint64_t *max) {
    check_mpi(MPI_Allreduce(&value, min, 1, MPI_UINT64_T, MPI_MIN, parts_of(w)->group_comm), "MPI_Allreduce");
    check_mpi(MPI_Allreduce(&value, max, 1, MPI_UINT64_T, MPI_MAX, parts_of(w)->group_comm), "MPI_Allreduce");
}

void sweep_poll(sweep_world *w) {
    (void)w;
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
}

static void group_allreduce_float(void *context, float *buffer, size_t count) {
    sweep_world *w = context;
    const size_t piece = (size_t)1 << 28;
    for (size_t offset = 0; offset < count; offset += piece) {
        const size_t length = count - offset < piece ? count - offset : piece;
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, buffer + offset, (int)length, MPI_FLOAT, MPI_SUM,
                                parts_of(w)->group_comm),
                  "MPI_Allreduce (gradients)");
    }
}

static void group_allreduce_double(void *context, double *buffer, size_t count) {
    sweep_world *w = context;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, buffer, (int)count, MPI_DOUBLE, MPI_SUM, parts_of(w)->group_comm),
              "MPI_Allreduce");
}

static int group_max(void *context, int value) {
    int largest = value;
    check_mpi(MPI_Allreduce(&value, &largest, 1, MPI_INT, MPI_MAX,
                            parts_of((sweep_world *)context)->group_comm),
              "MPI_Allreduce");
    return largest;
}

/* MPI on host memory: each part is summed at once (the CPU backend's backward op has
 * finished when the trainer queues it); nothing is left to join. */
static void group_join(void *context) { (void)context; }

train_comm sweep_group_comm(sweep_world *w) {
    return (train_comm){.context = w,
                        .rank = w->group_rank,
                        .ranks = w->group_size,
                        .allreduce_sum_float = group_allreduce_float,
                        .allreduce_sum_double = group_allreduce_double,
                        .max_over_ranks = group_max,
                        .allreduce_queue_float = group_allreduce_float,
                        .allreduce_join = group_join};
}

const char *sweep_mpi_version(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    char *newline = strchr(version, '\n');
    if (newline) *newline = '\0';
    return version;
}

#else /* one process, no MPI */

typedef struct single_parts {
    long ticket, done;
    int run_index, epoch;
    int64_t trained;
} single_parts;

void sweep_world_init(sweep_world *w, int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    memset(w, 0, sizeof *w);
    w->size = w->groups = w->group_size = w->local_size = 1;
    gethostname(w->host, sizeof w->host - 1);
    w->impl = bneck_calloc(1, sizeof(single_parts));
}

void sweep_world_split(sweep_world *w, int ranks_per_run, int run_count) {
    (void)w;
    (void)ranks_per_run;
    (void)run_count;
}

void sweep_world_finalize(sweep_world *w) {
    free(w->impl);
    w->impl = NULL;
}

void sweep_world_abort(sweep_world *w, int status) {
    (void)w;
    fflush(stdout);
    fflush(stderr);
    _exit(status); /* not exit: see the MPI build's (HDF5's exit handler after a failed write) */
}

int sweep_next_ticket(sweep_world *w) { return (int)((single_parts *)w->impl)->ticket++; }
long sweep_count_done(sweep_world *w) { return ++((single_parts *)w->impl)->done; }
long sweep_runs_done(sweep_world *w) { return ((single_parts *)w->impl)->done; }
void sweep_board_post(sweep_world *w, int run_index, int epoch) {
    single_parts *p = w->impl;
    p->run_index = run_index;
    p->epoch = epoch;
}
void sweep_board_read(sweep_world *w, int *run_index, int *epoch, long *done, long *next_ticket) {
    single_parts *p = w->impl;
    run_index[0] = p->run_index;
    epoch[0] = p->epoch;
    *done = p->done;
    *next_ticket = p->ticket;
}
void sweep_board_post_stop(sweep_world *w) { (void)w; } /* one process: nobody else to tell */
void sweep_board_add_trained(sweep_world *w, int64_t work) { ((single_parts *)w->impl)->trained += work; }
int64_t sweep_board_trained(sweep_world *w) { return ((single_parts *)w->impl)->trained; }
void sweep_world_wait_all(sweep_world *w, int (*poll)(void *context), void *context,
                          int *stopped) {
    (void)w, (void)poll, (void)context, (void)stopped; /* nobody else to wait for */
}
int sweep_board_stop_posted(sweep_world *w) { return (void)w, 0; }
int sweep_board_stop_seen(sweep_world *w) { return (void)w, 0; }
int sweep_group_any(sweep_world *w, int flag) { (void)w; return flag; }
int sweep_world_any(sweep_world *w, int flag) { (void)w; return flag; }
int sweep_world_first(sweep_world *w, int flag) { (void)w; return flag ? 0 : -1; }
void sweep_world_barrier(sweep_world *w) { (void)w; }
void sweep_group_broadcast(sweep_world *w, void *buffer, size_t bytes) {
    (void)w;
    (void)buffer;
    (void)bytes;
}
void sweep_world_allgather_bytes(sweep_world *w, const void *mine, void *all, size_t each) {
    (void)w;
    memcpy(all, mine, each);
}
void sweep_group_allgather_text(sweep_world *w, const char *mine, char *all, size_t each) {
    (void)w;
    memcpy(all, mine, each);
}
void sweep_group_gather(sweep_world *w, const void *mine, void *all, size_t each) {
    (void)w;
    memcpy(all, mine, each);
}
void sweep_group_min_max(sweep_world *w, uint64_t value, uint64_t *min, uint64_t *max) {
    (void)w;
    *min = *max = value;
}
void sweep_poll(sweep_world *w) { (void)w; }
train_comm sweep_group_comm(sweep_world *w) {
    (void)w;
    return (train_comm){.rank = 0, .ranks = 1};
}
const char *sweep_mpi_version(void) { return ""; }
#endif

int sweep_group_holds_same(sweep_world *w, const void *data, size_t bytes) {
    uint64_t lowest, highest;
    sweep_group_min_max(w, hash_bytes(HASH_START, data, bytes), &lowest, &highest);
    return lowest == highest;
}

/* Text is bytes to MPI: one gather for both builds. */
void sweep_world_allgather_text(sweep_world *w, const char *mine, char *all, size_t each) {
    sweep_world_allgather_bytes(w, mine, all, each);
}
