#!/usr/bin/env bash
# `sbatch slurm/sweep.sh` on a real single-node Slurm (slurm-wlm + munge on loopback,
# started here in a temporary directory and stopped at the end, whatever the outcome):
#  1. a short CPU sweep completes and its sweep.h5 holds every run and the Slurm job id;
#  2. a job signalled mid-run (USR2 to the batch shell, as --signal=B:USR2@... does before
#     the time limit) stops cleanly, requeues itself, resumes, and finishes with every run
#     present once and no epoch lost beyond the ones in progress;
#  3. a plain scancel mid-run ends the job for good (not requeued), leaving what it
#     committed for the next sbatch.
# 1 and 2 start the ranks with the script's default launcher (srun --mpi=pmix, which
# forwards the USR2 to them), 3 with BNECK_LAUNCHER=mpirun.
# usage: it_slurm.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/bneck-it-slurm.XXXXXX)
cluster=$work/cluster
cleanup() {
  "$source_dir/tests/slurm/local_cluster.sh" stop "$cluster" || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$("$source_dir/tests/slurm/local_cluster.sh" start "$cluster")"
export SLURM_CONF
# shellcheck source=tests/check_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_helpers.sh"

# Wait (up to 300 s) until some run of the sweep in OUTPUT has committed an epoch.
wait_for_run_file() {
  for _ in $(seq 1 300); do
    if ls "$1/runs/"*.h5 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
}

# Wait for a job to leave the queue for good (a requeued job comes back to PENDING).
wait_job_done() {
  local job=$1 limit=$2 state=""
  for _ in $(seq 1 "$limit"); do
    state=$(scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$state"; return 0 ;; esac
    sleep 1
  done
  echo "TIMEOUT_WAITING($state)"
}

cat > "$work/sweep.ini" <<INI
[run]
name = slurm
seed = 3
device = cpu
threads = 1
[data]
dataset = fashion-mnist
train_limit = 512
val_limit = 200
[train]
epochs = 4
batch = 64
[sweep]
patterns = C:2:4, E:3:4
repeats = 2
INI

# The script's GPU request is for GPU clusters; this node has none, so the test overrides it
# on the command line, as a user of a CPU partition would.
submit() { # launcher (srun or mpirun) output [section.key=value ...]
  local launcher=$1 output=$2; shift 2
  sbatch --parsable --gpus-per-task=0 --ntasks-per-node=2 --cpus-per-task=1 --time=20 \
    --output="$work/slurm-%j.out" \
    --export=ALL,BNECK_LAUNCHER="$launcher",BNECK_BIN="$build/bin",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,OMPI_MCA_rmaps_base_oversubscribe=1 \
    "$source_dir/slurm/sweep.sh" "$work/sweep.ini" run.output="$output" "$@"
}

cd "$source_dir"
# --- 1. a sweep that completes ---------------------------------------------------------
job=$(submit srun "$work/plain")
echo "sbatch: submitted job $job"
squeue
state=$(wait_job_done "$job" 600)
scontrol show job "$job" | grep -E "JobState|ExitCode|Restarts" || true
if [ "$state" = COMPLETED ] && [ -f "$work/plain/sweep.h5" ] && grep -q "launcher srun" "$work/slurm-$job.out"; then
  ok "sbatch slurm/sweep.sh completed (job $job, ranks started by srun --mpi=pmix)"
else cat "$work/slurm-$job.out" || true; bad "plain sweep job ended $state"; fi
/usr/bin/python3 - "$work/plain/sweep.h5" "$job" <<'PY' && ok "sweep.h5 of job $job: 4 complete runs, Slurm job id and rank map recorded" || bad "sweep.h5 of the plain job"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
runs = f["runs"][()]
names = sorted((r["pattern"].decode(), int(r["repeat"])) for r in runs)
assert names == [("C", 0), ("C", 1), ("E", 0), ("E", 1)], names
assert all(r["status"].decode() == "complete" for r in runs)
assert str(f.attrs["slurm_job_id"]) == sys.argv[2], f.attrs["slurm_job_id"]
assert f.attrs["slurm_nodelist"], "no node list"
assert str(f.attrs["rank_gpu_map"]).count(":") >= 4, f.attrs["rank_gpu_map"]
print("job", f.attrs["slurm_job_id"], "nodes", f.attrs["slurm_nodelist"], "ranks", f.attrs["rank_gpu_map"])
PY

# --- 2. signalled mid-run, requeued, resumed ----------------------------------------------
job=$(submit srun "$work/preempted" train.epochs=6)
echo "sbatch: submitted job $job"
wait_for_run_file "$work/preempted" # signalled mid-sweep, mid-run
sleep 2
squeue
scancel --signal=USR2 --batch "$job"
echo "scancel --signal=USR2 --batch $job"
# Slurm holds a requeued batch job back (its BeginTime is set ~2 minutes on); the test
# starts it sooner, once it is pending again, the node is idle and a few seconds have
# passed: slurmd revokes the job's credential when it kills the first instance, and
# refuses ("Job N already killed, do not launch batch job") a relaunch whose credential is
# from the same second.
for _ in $(seq 1 300); do
  info=$(scontrol show job "$job" 2>/dev/null || true)
  if grep -q "Restarts=[1-9]" <<<"$info" && grep -q "JobState=PENDING" <<<"$info"; then
    for _ in $(seq 1 60); do
      [ "$(sinfo -h -o %T | head -n 1)" = idle ] && break
      sleep 1
    done
    sleep 3
    scontrol update JobId="$job" StartTime=now && echo "requeued job $job released (node idle)"
    break
  fi
  case "$info" in *JobState=COMPLETED*|*JobState=FAILED*|*JobState=CANCELLED*) break ;; esac
  sleep 1
done
state=$(wait_job_done "$job" 900)
scontrol show job "$job" | grep -E "JobState|Restarts|ExitCode" || true
log=$work/slurm-$job.out
restarts=$(scontrol show job "$job" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
if [ "$state" = COMPLETED ] && [ "${restarts:-0}" -ge 1 ] && grep -q "requeueing job $job" "$log" && grep -q "resuming after epoch\|already complete" "$log"; then
  ok "signalled job stopped, requeued itself (restarts $restarts) and resumed"
else
  cat "$log" || true
  tail -n 15 "$cluster/log/slurmd.log" "$cluster/log/slurmctld.log" || true
  bad "preempted job: state $state, restarts ${restarts:-?}"
fi
epoch_lines=$(grep -c "^\[[A-Z]-r[0-9]\] epoch" "$log" || true)
# 4 runs x 6 epochs; at most one epoch per run group (2 groups of 1 rank) redone.
if [ "$epoch_lines" -ge 24 ] && [ "$epoch_lines" -le 26 ]; then ok "$epoch_lines epochs trained for 24 planned: nothing lost beyond the epochs in progress"
else bad "$epoch_lines epochs trained for 24 planned"; fi
/usr/bin/python3 - "$work/preempted/sweep.h5" <<'PY' && ok "preempted sweep.h5: every run once, complete, epochs 1..6" || bad "preempted sweep.h5"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
runs = f["runs"][()]
names = sorted((r["pattern"].decode(), int(r["repeat"])) for r in runs)
assert names == [("C", 0), ("C", 1), ("E", 0), ("E", 1)], names
assert all(r["status"].decode() == "complete" for r in runs)
for name in f["history"]:
    epochs = list(f["history"][name]["epoch"])
    assert epochs == [1, 2, 3, 4, 5, 6], (name, epochs)
PY
cd "$work/preempted" && "$build/bin/bneck-report" sweep.h5 --no-plots || bad "bneck-report on the preempted sweep"

# --- 3. scancel mid-run: the job ends cancelled, not requeued; the output stays resumable ---
cd "$source_dir"
job=$(submit mpirun "$work/cancelled" train.epochs=6)
echo "sbatch: submitted job $job"
wait_for_run_file "$work/cancelled"
scancel "$job"
echo "scancel $job"
log=$work/slurm-$job.out
for _ in $(seq 1 120); do # the batch shell writes its last lines while the job completes
  grep -q "ranks ended with status" "$log" 2>/dev/null && break
  sleep 1
done
sleep 2
state=$(wait_job_done "$job" 120)
info=$(scontrol show job "$job" 2>/dev/null || true)
if [ "$state" = CANCELLED ] && grep -q "Restarts=0" <<<"$info" && ! grep -q "requeueing" "$log" &&
  grep -q "got TERM" "$log" && grep -q "not requeued: sbatch the same command again to resume" "$log" &&
  "$build/bin/bneck-sweep" "$work/cancelled/sweep.ini" --dry-run > "$work/cancelled_dry.log" 2>&1 &&
  grep -qE "(^| )[1-9][0-9]* to resume|, [1-9][0-9]* kept" "$work/cancelled_dry.log"; then
  ok "scancel ends the job (cancelled, not requeued); what it committed resumes with the next sbatch"
else
  cat "$log" "$work/cancelled_dry.log" || true
  echo "$info"
  bad "scancel of a running sweep: state $state"
fi
checks_done it_slurm
