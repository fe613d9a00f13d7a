#!/usr/bin/env bash
# MPI test programs (tests/mpi_*.c) under mpirun. usage: it_mpi.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ ! -x "$build/tests/mpi_data_parallel" ]; then
  echo "it_mpi: built without MPI: nothing to run"; exit 1
fi
timeout 600 mpirun --oversubscribe -n 2 "$build/tests/mpi_data_parallel"
# The run board on rank 0: groups of one rank over osc/pt2pt, whose one-sided operations
# move only when rank 0 calls MPI (so the stop's non-blocking reads are seen in flight),
# then groups of two over the default transport.
timeout 300 mpirun --oversubscribe --mca osc pt2pt -n 4 "$build/tests/mpi_sweep_board" 1
timeout 300 mpirun --oversubscribe -n 4 "$build/tests/mpi_sweep_board" 2
# A fatal error on one rank stops the others (MPI_Abort) even where the launcher would not:
# here mpirun is told not to abort on a non-zero exit, as a plain srun does not.
set +e
timeout 60 mpirun --oversubscribe --mca orte_abort_on_non_zero_status 0 -n 2 \
  "$build/tests/mpi_fail_aborts" > "$build/tests/mpi_fail_aborts.log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] &&
  grep -q "rank 1 fails on purpose" "$build/tests/mpi_fail_aborts.log" &&
  ! grep -q "passed the barrier" "$build/tests/mpi_fail_aborts.log"; then
  echo "mpi_fail_aborts: a BNECK_FAIL on rank 1 stopped rank 0 too (exit $status)"
else
  cat "$build/tests/mpi_fail_aborts.log"
  echo "mpi_fail_aborts: FAILED: exit $status (124: rank 0 was left waiting)"
  exit 1
fi
