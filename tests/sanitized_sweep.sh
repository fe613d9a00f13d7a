#!/usr/bin/env bash
# The sweep's whole path under ASan and UBSan (the sanitize build, where the unit tests do
# not reach): a one-process sweep of three patterns, a group of two ranks stopped part-way
# through an epoch and resumed, bneck-report on the result, a refused configuration, and
# the MPI test programs (the data-parallel group, the run board).
# Any memory or undefined-behaviour error aborts the program, which fails its check (the
# sanitizer's report is in the log printed). Leak checks are off: Open MPI and hwloc leave
# allocations behind at exit that are not bneck's.
# usage: sanitized_sweep.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd)
sweep=$build/bin/bneck-sweep
report=$build/bin/bneck-report
work=$(mktemp -d /tmp/bneck-sanitized.XXXXXX)
launcher=""
trap '[ -n "$launcher" ] && kill "$launcher" 2> /dev/null; rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# shellcheck source=tests/check_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_helpers.sh"
mpirun_n() { local n=$1; shift; timeout 600 mpirun -x ASAN_OPTIONS -x UBSAN_OPTIONS -n "$n" "$@"; }

cat > "$work/tiny.ini" <<INI
[run]
name = sanitized
seed = 5
device = cpu
threads = 2
[data]
dataset = fashion-mnist
train_limit = 256
val_limit = 100
[train]
epochs = 2
batch = 64
val_batch = 50
progress_every = 1
[sweep]
patterns = A:1:1, C:2:4, E:3:4
repeats = 1
INI

status_is 0 "$work/one.log" "wrote .*/one/sweep.h5 \(3 runs, 3 complete\)" \
  "one process: three patterns trained and written" \
  timeout 600 "$sweep" "$work/tiny.ini" run.output="$work/one"

# A group of two ranks, stopped (SIGUSR2 to both) once epoch 2 of its first run has begun,
# committing after every step; then resumed to the end. Eight steps an epoch: the signal has
# six steps (some seconds) to land before the epoch ends.
pair_options=(sweep.ranks_per_run=2 run.threads=1 data.train_limit=512)
mpirun_n 2 "$sweep" "$work/tiny.ini" "${pair_options[@]}" run.commit_minutes=1e-6 \
  run.output="$work/pair" > "$work/pair1.log" 2>&1 &
launcher=$!
for _ in $(seq 1 3000); do grep -q "epoch 2: step 1/8" "$work/pair1.log" 2>/dev/null && break; sleep 0.1; done
# the ranks (not mpirun, whose command line names the config too), their path as a pattern
sweep_pattern=$(printf '%s' "$sweep" | sed 's/[][\.*^$+?(){}|]/\\&/g')
pkill -USR2 -f "^$sweep_pattern $work/tiny.ini" || true
stopped_rc=0
wait "$launcher" || stopped_rc=$?
launcher=""
resumed_rc=0
mpirun_n 2 "$sweep" "$work/tiny.ini" "${pair_options[@]}" run.output="$work/pair" \
  > "$work/pair2.log" 2>&1 || resumed_rc=$?
if [ "$stopped_rc" -eq 3 ] && grep -q "^\[A-r0\] stopped at step [0-9]/8 of epoch 2" "$work/pair1.log" &&
  [ "$resumed_rc" -eq 0 ] && grep -q "^\[A-r0\] resuming after epoch 1, at step [0-9]/8 of epoch 2" "$work/pair2.log" &&
  grep -q "wrote .*/pair/sweep.h5 (3 runs, 3 complete)" "$work/pair2.log"; then
  ok "two ranks: stopped part-way through epoch 2, resumed there and finished"
else cat "$work/pair1.log" "$work/pair2.log"; bad "two ranks stopped and resumed (exit $stopped_rc, then $resumed_rc)"; fi

status_is 0 "$work/report.log" "wrote .*/plots/val_acc_per_epoch.png" \
  "bneck-report reads the sweep and draws its plots" \
  timeout 600 "$report" "$work/pair/sweep.h5"

status_is 2 "$work/bad.log" "\[train\] batch: expected an integer" \
  "a bad override is refused with the key named" \
  timeout 600 "$sweep" "$work/tiny.ini" train.batch=-3 run.output="$work/bad"

status_is 0 "$work/mpi_data_parallel.log" "mpi_data_parallel: [0-9]+ passed, 0 failed" \
  "mpi_data_parallel: a group's summed gradients and identical weights" \
  mpirun_n 2 "$build/tests/mpi_data_parallel"
status_is 0 "$work/mpi_sweep_board.log" "mpi_sweep_board \(2 rank\(s\) per run\): [0-9]+ passed, 0 failed" \
  "mpi_sweep_board: tickets, progress and the stop on rank 0's board" \
  mpirun_n 4 "$build/tests/mpi_sweep_board" 2

checks_done sanitized_sweep
