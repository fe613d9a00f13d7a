#!/usr/bin/env bash
# The study on a Slurm cluster:   sbatch slurm/sweep.sh [CONFIG] [section.key=value ...]
# (default CONFIG: configs/article.ini). Submit from the repository root (or set BNECK_BIN).
#
# Edit the #SBATCH lines below for your cluster: one rank per GPU.
#SBATCH --job-name=bneck-sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=results/slurm-%x-%j.out
#SBATCH --open-mode=append
# Before the time limit, Slurm signals the batch shell (USR2), which forwards the signal
# to the ranks: they stop at a step boundary, commit every finished epoch and the steps
# of the one in progress, exit with status 3, and this script requeues the job; the
# requeued job resumes the sweep. On TERM (scancel, or preemption) the ranks stop the same
# way but the job is not requeued: a cancelled job stays cancelled (a cluster that
# requeues preempted jobs does so itself), and sbatch with the same arguments resumes the
# sweep later.
# USR2 because older NCCL versions used USR1 for themselves.
#SBATCH --signal=B:USR2@600
#SBATCH --requeue
#
# Launcher: srun (default) or mpirun, e.g.  sbatch --export=ALL,BNECK_LAUNCHER=mpirun slurm/sweep.sh
set -uo pipefail

config=${1:-configs/article.ini}
[ $# -gt 0 ] && shift
bin=${BNECK_BIN:-${SLURM_SUBMIT_DIR:-.}/build/bin}
launcher=${BNECK_LAUNCHER:-srun}
stop_signal=USR2
stopped_status=3   # BNECK_EXIT_STOPPED: stopped by a signal, resumable

cd "${SLURM_SUBMIT_DIR:-.}" || exit 1
echo "sweep.sh: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}," \
     "${SLURM_NTASKS:-?} ranks, config $config, launcher $launcher, $(date -Is)"

case "$launcher" in
  srun)   launch=(srun --kill-on-bad-exit=1 --mpi="${BNECK_SRUN_MPI:-pmix}") ;;
  mpirun) launch=(mpirun -n "${SLURM_NTASKS:-1}" ${BNECK_MPIRUN_ARGS:-}) ;;
  *) echo "sweep.sh: BNECK_LAUNCHER must be srun or mpirun, not '$launcher'" >&2; exit 2 ;;
esac

"${launch[@]}" "$bin/bneck-sweep" "$config" "$@" --stop-signal "$stop_signal" &
ranks=$!
signalled=""
forward() {
  echo "sweep.sh: got $1, asking the ranks to stop at the next step ($(date -Is))"
  [ -n "$signalled" ] || signalled=$1
  kill -s "$stop_signal" "$ranks" 2>/dev/null
}
trap 'forward USR2' USR2
trap 'forward TERM' TERM
# wait returns early when a trapped signal arrives: keep waiting for the ranks.
while :; do
  wait "$ranks"
  status=$?
  kill -0 "$ranks" 2>/dev/null || break
done
echo "sweep.sh: ranks ended with status $status ($(date -Is))"

if [ "$status" -eq "$stopped_status" ] && [ "$signalled" = USR2 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  echo "sweep.sh: sweep stopped cleanly before the time limit; requeueing job $SLURM_JOB_ID to resume it"
  scontrol requeue "$SLURM_JOB_ID"
elif [ -n "$signalled" ] || [ "$status" -eq "$stopped_status" ]; then
  echo "sweep.sh: stopped by ${signalled:-a signal sent to the ranks}; not requeued: sbatch" \
       "the same command again to resume the sweep"
fi
exit "$status"
