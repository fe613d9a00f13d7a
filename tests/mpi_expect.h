/* Checks for the MPI test programs (tests/mpi_*.c), which run under mpirun rather than
 * Criterion: each rank counts its checks and names a failed one on stderr, and
 * expect_totals adds them up over the job for rank 0's summary line; expect_job_shape
 * ends a program started with the wrong number of ranks. Define MPI_TEST_NAME before
 * including it. */
#ifndef BNECK_TESTS_MPI_EXPECT_H
#define BNECK_TESTS_MPI_EXPECT_H

#include <stdio.h>

#include <mpi.h>

#include "sweep/group.h"

static int expect_failures = 0, expect_passes = 0;

static inline void expect(int condition, int rank, const char *what) {
    if (condition) {
        expect_passes++;
        return;
    }
    expect_failures++;
    fprintf(stderr, MPI_TEST_NAME ": rank %d: FAILED: %s\n", rank, what);
}

/* Collective: prints "NAME<label>: P passed, F failed" on rank 0 (checks of every rank);
 * returns the failures of every rank. */
static inline int expect_totals(int rank, const char *label) {
    int counts[2] = {expect_passes, expect_failures}, totals[2] = {0, 0};
    MPI_Allreduce(counts, totals, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf(MPI_TEST_NAME "%s: %d passed, %d failed\n", label, totals[0], totals[1]);
    return totals[1];
}

/* 0 when the job has the shape the program needs (`fits`); else rank 0 says how to run it
 * (`usage`, e.g. "mpirun -n 2"), MPI is finished, and 2 is returned for main to exit with. */
static inline int expect_job_shape(sweep_world *w, int fits, const char *usage) {
    if (fits) return 0;
    if (w->rank == 0) fprintf(stderr, MPI_TEST_NAME ": run with %s\n", usage);
    sweep_world_finalize(w);
    return 2;
}

#endif
