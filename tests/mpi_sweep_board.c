/* Run under mpirun -n 4 (tests/it_mpi.sh), with the ranks per run (1 or 2) as argument.
 * Checks the sweep's board on rank 0 (sweep/group.c), which hands out runs and carries the
 * progress and the stop between groups:
 *  1. the tickets hand out each run exactly once over all groups, every rank of a group
 *     gets its leader's, and each group's one draw past the end is counted;
 *  2. the counts of finished runs and of trained work sum every group's additions, and
 *     each group's posted run and epoch read back on rank 0;
 *  3. waiting for the others (sweep_world_wait_all) posts a stop that the last rank's poll
 *     reports, and only there; before it nobody sees a stop;
 *  4. every rank then sees the stop through sweep_board_stop_seen, whose reads are
 *     non-blocking (a read still in flight, or one started before the stop was posted,
 *     says no; a later one says yes, and it stays yes).
 * Prints "mpi_sweep_board: N passed, 0 failed" on rank 0 and exits non-zero on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "sweep/group.h"

#define MPI_TEST_NAME "mpi_sweep_board"
#include "mpi_expect.h"

enum { RUNS = 23, MAX_DRAWS = RUNS + 2 };

static void pause_ms(long ms) {
    const struct timespec pause = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&pause, NULL);
}

/* 1. Draws tickets until one is past the end; returns how many this rank drew (the last
 *    one included) into draws[]. */
static int draw_all_tickets(sweep_world *w, int *draws) {
    int count = 0;
    for (;;) {
        const int ticket = sweep_next_ticket(w);
        draws[count++] = ticket;
        if (ticket >= RUNS || count == MAX_DRAWS) return count;
        pause_ms(1); /* lets the other groups draw in between */
    }
}

static void check_tickets(sweep_world *w, const int *all_draws, const int *all_counts) {
    int times_handed[RUNS] = {0};
    for (int r = 0; r < w->size; r++) {
        const int *draws = all_draws + r * MAX_DRAWS;
        const int leader = r - r % w->group_size;
        expect(all_counts[r] == all_counts[leader] &&
                   !memcmp(draws, all_draws + leader * MAX_DRAWS,
                           (size_t)all_counts[r] * sizeof *draws),
               r, "every rank of a group draws its leader's tickets");
        expect(draws[all_counts[r] - 1] >= RUNS, r,
               "a group draws until the runs are all handed out");
        for (int i = 0; i + 1 < all_counts[r]; i++) {
            expect(draws[i] >= 0 && draws[i] < RUNS, r, "a ticket before the last names a run");
            if (r == leader && draws[i] >= 0 && draws[i] < RUNS) times_handed[draws[i]]++;
        }
    }
    int once = 1;
    for (int run = 0; run < RUNS; run++) once &= times_handed[run] == 1;
    expect(once, 0, "each run is handed to exactly one group");
}

/* 3. A poll that reports a stop on the last rank only. */
static int stop_on_last_rank(void *context) {
    const sweep_world *w = context;
    return w->rank == w->size - 1;
}
static int never_stop(void *context) { return (void)context, 0; }

int main(int argc, char **argv) {
    sweep_world world;
    sweep_world_init(&world, &argc, &argv);
    sweep_world *w = &world;
    const int ranks_per_run = argc > 1 ? atoi(argv[1]) : 1;
    if (expect_job_shape(w, w->size == 4 && (ranks_per_run == 1 || ranks_per_run == 2),
                         "mpirun -n 4, argument 1 or 2"))
        return 2;
    sweep_world_split(w, ranks_per_run, RUNS);
    expect(w->groups == 4 / ranks_per_run && w->group == w->rank / ranks_per_run &&
               w->group_size == ranks_per_run && w->group_rank == w->rank % ranks_per_run,
           w->rank, "the world splits into groups of consecutive ranks");
    const int leader = w->group_rank == 0;

    /* 1. tickets */
    int draws[MAX_DRAWS] = {0};
    const int draw_count = draw_all_tickets(w, draws);
    int all_draws[4 * MAX_DRAWS], all_counts[4];
    MPI_Gather(draws, MAX_DRAWS, MPI_INT, all_draws, MAX_DRAWS, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Gather(&draw_count, 1, MPI_INT, all_counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (w->rank == 0) check_tickets(w, all_draws, all_counts);

    /* 2. counts and posts: each leader counts its runs done, adds work and posts a place */
    long last_done = 0;
    if (leader) {
        for (int i = 0; i + 1 < draw_count; i++) {
            const long done = sweep_count_done(w);
            expect(done > last_done && done <= RUNS, w->rank, "the count of runs done only grows");
            last_done = done;
        }
        sweep_board_add_trained(w, 1000 * (w->group + 1));
        sweep_board_post(w, 3 * w->group, w->group + 7);
    }
    sweep_world_barrier(w);
    if (w->rank == 0) {
        int run_index[4], epoch[4];
        long done = 0, next_ticket = 0;
        sweep_board_read(w, run_index, epoch, &done, &next_ticket);
        expect(done == RUNS && sweep_runs_done(w) == RUNS, 0, "every finished run is counted");
        expect(next_ticket == RUNS + w->groups, 0,
               "the ticket counter holds the runs and one draw past the end per group");
        int placed = 1;
        for (int g = 0; g < w->groups; g++) placed &= run_index[g] == 3 * g && epoch[g] == g + 7;
        expect(placed, 0, "each group's posted run and epoch read back");
        const int64_t work = 1000LL * w->groups * (w->groups + 1) / 2;
        expect(sweep_board_trained(w) == work, 0, "the trained work sums every group's");
    }

    /* 3. waiting for the others: first without a stop, then with the last rank's */
    int stopped = 0;
    sweep_world_wait_all(w, never_stop, w, &stopped);
    expect(!stopped && !sweep_board_stop_posted(w), w->rank,
           "no stop is posted before one is reported");
    /* a read started now answers, at a later call, that no stop was posted */
    for (int i = 0; i < 3; i++)
        expect(!sweep_board_stop_seen(w), w->rank, "no stop is seen before one is posted");
    sweep_world_barrier(w);
    /* Rank 0 joins the wait only once the stop is on the board: until then the wait cannot
     * end, so the last rank's poll runs, and every rank finds the stop posted after it. */
    if (w->rank == 0) {
        const double give_up = MPI_Wtime() + 20.0;
        while (!sweep_board_stop_posted(w) && MPI_Wtime() < give_up) pause_ms(1);
    }
    sweep_world_wait_all(w, stop_on_last_rank, w, &stopped);
    expect(stopped == (w->rank == w->size - 1), w->rank,
           "only the rank whose poll reported the stop posts it");
    expect(sweep_board_stop_posted(w), w->rank, "the stop is on the board once the wait ends");

    /* 4. the non-blocking look: yes within a few seconds (rank 0, which holds the board,
     *    lets one-sided operations progress as the trainer's hook does), then yes again */
    int seen = 0;
    const double give_up = MPI_Wtime() + 20.0;
    while (!seen && MPI_Wtime() < give_up) {
        if (w->rank == 0) sweep_poll(w);
        seen = sweep_board_stop_seen(w);
        if (!seen) pause_ms(1);
    }
    expect(seen, w->rank, "sweep_board_stop_seen sees the posted stop");
    expect(sweep_board_stop_seen(w) && sweep_board_stop_seen(w), w->rank,
           "a stop once seen stays seen");

    char label[32];
    snprintf(label, sizeof label, " (%d rank(s) per run)", ranks_per_run);
    const int total_failures = expect_totals(w->rank, label);
    sweep_world_finalize(w);
    return total_failures ? 1 : 0;
}
