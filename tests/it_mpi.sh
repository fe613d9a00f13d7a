#!/usr/bin/env bash
# MPI test programs (tests/mpi_*.c) under mpirun. usage: it_mpi.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ ! -x "$build/tests/mpi_data_parallel" ]; then
  echo "it_mpi: built without MPI: nothing to run"; exit 1
fi
timeout 600 mpirun --oversubscribe -n 2 "$build/tests/mpi_data_parallel"
