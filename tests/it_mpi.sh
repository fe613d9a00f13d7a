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
