/* What the parts of bneck-sweep share (private to src/sweep): the program's state, and
 * the decisions on a run's file that the sweep, its dry run and its merge all go by. */
#ifndef BNECK_SWEEP_SWEEP_STATE_H
#define BNECK_SWEEP_SWEEP_STATE_H

#include <stddef.h>

#include "backend/backend.h"
#include "data/dataset.h"
#include "model/model.h"
#include "results/results.h"
#include "sweep/group.h"
#include "sweep/plan.h"
#include "train/config.h"

enum { HOST_TEXT = 64, DEVICE_TEXT = 64, MODEL_TEXT = 48, PATH_TEXT = 1024 };

typedef struct sweep_options {
    const char *config_path;
    const char **overrides;
    int override_count;
    int dry_run, restart;
    int stop_signal;
    char device_override[64]; /* "run.device=NAME" for --device NAME */
} sweep_options;

typedef struct sweep_state {
    sweep_options options;
    config cfg;
    sweep_world world;
    sweep_plan plan;
    const backend_ops *backend;
    dataset train_set, val_set;
    int in_channels;                 /* of the images (known before the data is read) */
    char device_name[DEVICE_TEXT]; /* this rank's: "cpu", "cuda:0 NVIDIA H200" */
    char device_model[MODEL_TEXT]; /* what /runs names: "cpu", "NVIDIA H200" */
    char *all_hosts;    /* world.size x HOST_TEXT */
    char *all_devices;  /* world.size x DEVICE_TEXT */
    char group_hosts[RESULTS_HOSTS]; /* the distinct hosts of this rank's group */
    char settings[CONFIG_MAX_TEXT];  /* what decides a run's numbers (sweep_output_settings) */
    double started;
    /* rank 0's updates of sweep.h5 while the sweep goes on (merge.c) */
    long merged_runs_done;    /* the board's count of runs finished at the last one (0: none) */
    double merged_at;         /* when */
    int interim_merge_failed; /* HDF5 may keep the failed file open: leave with _exit */
} sweep_state;

/* The leader's view of what a run file says: start fresh, resume, or already done. */
typedef enum { RUN_FRESH = 0, RUN_RESUME = 1, RUN_COMPLETE = 2, RUN_DIVERGED = 3 } run_start;

/* What a run's file says, before anything is done about it: no file (start fresh), a run
 * to continue, a kept run (complete or diverged), a file not to be trusted (to move aside:
 * not a regular file, unreadable or another run's, or a bad checkpoint), or one that
 * cannot even be looked at (the sweep stops). The sweep and --dry-run both go by it. */
typedef enum {
    FILE_NONE,
    FILE_RESUME,
    FILE_COMPLETE,
    FILE_DIVERGED,
    FILE_NOT_REGULAR,
    FILE_UNREADABLE,
    FILE_BAD_CHECKPOINT,
    FILE_UNREACHABLE,
} run_file_state;

/* OUTPUT/runs/<run>.h5 */
void sweep_run_path(const sweep_state *s, const planned_run *run, char *out, size_t capacity);
/* Reads what a decision needs: row and history (malloc'ed in *history when the run is
 * kept or continued), and the checkpoint (for m) of a run to continue. err says why a file
 * is not trusted; for FILE_UNREACHABLE, errno is set and *what says what failed. */
run_file_state sweep_classify_run_file(const sweep_state *s, const planned_run *run,
                                       const char *path, const model *m, run_row *row,
                                       epoch_record **history, int *epochs,
                                       run_checkpoint *checkpoint, const char **what,
                                       bneck_error *err);
/* The epochs of the sweep a run's file already holds (run_files.c), reading no weights. */
int sweep_run_file_epochs_held(const sweep_state *s, const planned_run *run);
/* The leader's decision on a run's file (run_files.c); a file not to be trusted is moved
 * aside, one that cannot be looked at stops the whole sweep. */
run_start sweep_inspect_run_file(const sweep_state *s, const planned_run *run, const char *path,
                                 const model *m, run_row *row, epoch_record **history,
                                 int *epochs, run_checkpoint *checkpoint);

/* --dry-run on rank 0 (dry_run.c): the plan and what OUTPUT holds of each run. 0, 2 when
 * the sweep itself would refuse the output, 1 when the plan cannot be written (its message
 * printed). */
int sweep_print_plan(const sweep_state *s);

/* A run group's gradient sums (sweep_comm.c): NCCL where the group trains on GPUs, MPI
 * otherwise. setup is collective over the world and ends the job, naming the rank, when
 * NCCL cannot start or the group mixes GPUs and CPUs; it returns 2 (every rank, after
 * rank 0 said why) when two ranks of a group landed on one GPU, else 0. */
int sweep_comm_setup(sweep_state *s);

/* One rank's GPU, as every rank gathers it: its run group, host and PCI bus id (empty on
 * a CPU). sweep_gpu_shared finds the first two ranks on one GPU, of one group if any. */
typedef struct sweep_gpu_record {
    int group;
    char host[HOST_TEXT], bus_id[32];
} sweep_gpu_record;
enum { SWEEP_GPU_ALONE = 0, SWEEP_GPU_SHARED = 1, SWEEP_GPU_SHARED_IN_GROUP = 2 };
int sweep_gpu_shared(const sweep_gpu_record *ranks, int count, int *first, int *second);
train_comm sweep_comm_of_group(sweep_world *w);
void sweep_comm_teardown(void);

/* How sweep_train_run ended: the run kept as an earlier session left it (complete or
 * diverged), trained to its end in this session (complete or diverged), or stopped. */
typedef enum { RUN_ENDED_KEPT, RUN_ENDED_FINISHED, RUN_ENDED_STOPPED } run_end;

/* Trains (or resumes, or keeps) the plan's run index on this rank's group (run_train.c).
 * Collective in the group. */
run_end sweep_train_run(sweep_state *s, int index);

/* Rank 0: one line of the whole sweep's progress (runs done, those earlier sessions left
 * done included, each group's epoch, time left); other ranks: nothing. */
void sweep_print_progress(sweep_state *s);

/* Rank 0 (merge.c): every run file read back into OUTPUT/sweep.h5, and the summary table
 * printed. When this session trained nothing (every run was finished already) and sweep.h5
 * already holds these runs as this build wrote them, it is left as it was. Returns 0 or 1;
 * counts the complete and diverged runs. */
int sweep_merge_results(sweep_state *s, int trained_nothing, int *complete_runs,
                        int *diverged_runs);
/* Rank 0, while the sweep goes on: sweep.h5 rewritten when runs have finished since it was
 * last written (at most once a minute), so that bneck-report, pandas and the rest see the
 * results so far; one line said. A failure is a warning: the run files hold every result,
 * and the final merge writes sweep.h5 again. Other ranks: nothing. */
void sweep_merge_if_runs_finished(sweep_state *s);

#endif
