/* Run under mpirun -n 2 with Open MPI's abort on a non-zero exit turned off
 * (tests/it_mpi.sh): rank 1 fails (BNECK_FAIL) while rank 0 waits for it in a barrier. The
 * failure must stop rank 0 too (MPI_Abort, through sweep_world_init's bneck_fail_exit_set),
 * as under a launcher that would not (a plain srun); left to exit(1) alone, rank 0 would
 * wait for ever and it_mpi.sh's timeout would say so. Exits non-zero by design: it_mpi.sh
 * checks the status and the message. */
#include <stdio.h>

#include "core/error.h"
#include "sweep/group.h"

#define MPI_TEST_NAME "mpi_fail_aborts"
#include "mpi_expect.h"

int main(int argc, char **argv) {
    sweep_world world;
    sweep_world_init(&world, &argc, &argv);
    if (expect_job_shape(&world, world.size == 2, "mpirun -n 2")) return 2;
    if (world.rank == 1) BNECK_FAIL("mpi_fail_aborts: rank 1 fails on purpose");
    sweep_world_barrier(&world); /* rank 0: never passed, rank 1 never comes */
    fprintf(stderr, "mpi_fail_aborts: rank %d passed the barrier\n", world.rank);
    sweep_world_finalize(&world);
    return 0;
}
