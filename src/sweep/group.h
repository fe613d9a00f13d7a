/* The MPI side of a sweep: the world split into run groups of ranks_per_run ranks, a
 * ticket counter that hands out runs exactly once (one-sided MPI on rank 0), a progress
 * board, and the train_comm hooks of a group. Without MPI the same interface serves one
 * process. */
#ifndef BNECK_SWEEP_GROUP_H
#define BNECK_SWEEP_GROUP_H

#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include "train/train.h"

typedef struct sweep_world {
    int rank, size;          /* in the whole job */
    int local_rank;          /* among the ranks on this node (GPU choice) */
    int local_size;          /* ranks on this node (CPU threads per rank) */
    int group, groups;       /* which run group, how many */
    int group_rank, group_size;
    char host[64];
    void *impl;              /* MPI communicators and window */
} sweep_world;

/* Initialises MPI (when built with it) and the rank/host facts. */
void sweep_world_init(sweep_world *w, int *argc, char ***argv);
/* Splits into groups; call after checking size % ranks_per_run == 0. */
void sweep_world_split(sweep_world *w, int ranks_per_run, int run_count);
void sweep_world_finalize(sweep_world *w);
/* Ends every rank of the job at once (a fatal error on one rank). */
noreturn void sweep_world_abort(sweep_world *w, int status);

/* The next run index for this group (the same on all its ranks), or -1 when none left. */
int sweep_next_ticket(sweep_world *w);
/* Board on rank 0: runs finished in this session (trained to their end; returns the new
 * count), and what each group does. */
long sweep_count_done(sweep_world *w);
/* The board's count of finished runs (meaningful on rank 0), without changing it. */
long sweep_runs_done(sweep_world *w);
void sweep_board_post(sweep_world *w, int run_index, int epoch);
/* The work trained in this session over every group (pseudo-FLOPs per image x epochs,
 * the part of an epoch a session trained counted as its share of the steps): added to
 * by each group's leader after each epoch, read by rank 0 for the time left. */
void sweep_board_add_trained(sweep_world *w, int64_t work);
int64_t sweep_board_trained(sweep_world *w);
/* A stop signal reaches the ranks it is sent to; the group that got it stops at once and
 * posts the stop on the board, and every other group stops when it reads it there (at a
 * step, sweep_board_stop_seen, or after an epoch). */
void sweep_board_post_stop(sweep_world *w);
int sweep_board_stop_posted(sweep_world *w);
/* The same question without waiting for rank 0, for the group leaders' every step: each
 * call looks at the answer of a read started by an earlier one (0 while it is in flight)
 * and starts the next, so where the transport moves one-sided operations only when rank 0
 * calls MPI (osc/pt2pt) the answer comes a step or two later, and the step does not wait
 * for it (on RDMA transports a read costs microseconds). Once it says yes, it stays yes. */
int sweep_board_stop_seen(sweep_world *w);
/* Every rank, once it has no run left: waits for all the others, calling poll(context)
 * meanwhile; a stop it reports (a signal sent to an idle rank) is posted for the groups
 * still training and sets *stopped. */
void sweep_world_wait_all(sweep_world *w, int (*poll)(void *context), void *context,
                          int *stopped);
/* Reads the board (meaningful on rank 0): per group run index (-1 idle) and epoch. */
void sweep_board_read(sweep_world *w, int *run_index, int *epoch, long *done, long *next_ticket);

/* Collectives over the group or the world. */
int sweep_group_any(sweep_world *w, int flag);
int sweep_world_any(sweep_world *w, int flag);
/* The lowest rank of the job whose flag is set, or -1 (collective). */
int sweep_world_first(sweep_world *w, int flag);
void sweep_world_barrier(sweep_world *w);
void sweep_group_broadcast(sweep_world *w, void *buffer, size_t bytes);
/* Gathers a fixed-size string from every rank of the world onto all ranks. */
void sweep_world_allgather_text(sweep_world *w, const char *mine, char *all, size_t each);
/* Gathers `each` bytes from every rank of the world onto all ranks, rank by rank. */
void sweep_world_allgather_bytes(sweep_world *w, const void *mine, void *all, size_t each);
/* Gathers `each` bytes from every rank of the group onto the group's rank 0, rank by rank
 * (all is read only there). */
void sweep_group_gather(sweep_world *w, const void *mine, void *all, size_t each);
/* Gathers a fixed-size string from every rank of the group onto the group's ranks. */
void sweep_group_allgather_text(sweep_world *w, const char *mine, char *all, size_t each);
/* Minimum and maximum of a value over the group (weight-identity checks). */
void sweep_group_min_max(sweep_world *w, uint64_t value, uint64_t *min, uint64_t *max);
/* Whether every rank of the group holds the same bytes, compared by their FNV-1a hashes
 * (collective in the group). */
int sweep_group_holds_same(sweep_world *w, const void *data, size_t bytes);
/* Lets one-sided operations aimed at this rank progress (rank 0 calls it at every step:
 * it holds the board). */
void sweep_poll(sweep_world *w);

/* train_comm hooks for the group. */
train_comm sweep_group_comm(sweep_world *w);

/* Text naming the MPI library, for results files ("" without MPI). */
const char *sweep_mpi_version(void);

#endif
