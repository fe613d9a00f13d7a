/* Results files (HDF5): one file per run, committed atomically, and the merged sweep file.
 * They are the contract with analysis tools: h5py, pandas, xarray, MATLAB, Julia read them
 * without our code, so tables are compound datasets of fixed-size numbers and
 * fixed-length, NUL-padded ASCII strings, and scalar attributes are plain numbers or
 * variable-length UTF-8 strings.
 *
 * Run file  (OUTPUT/runs/<pattern>-r<repeat>.h5):
 *   attributes   format = "bneck-run-1" ("bneck-run-2" while its checkpoint is part-way
 *                through an epoch: builds that cannot resume one refuse it), status =
 *                "running" | "complete" | "diverged",
 *                config (text), settings (the results-defining part, run_file_settings),
 *                git_commit, created, and every run_info field
 *   /history     compound table, one row per finished epoch (epoch_row)
 *   /weights/<layer name>/kernel (OIHW for convs, [out][in] for dense), bias,
 *                gamma, beta, moving_mean, moving_variance   (final or latest weights)
 *   /checkpoint  params, state, adam_m, adam_v (1-D float32), attributes step, epochs_done,
 *                param_layout, cpu_threads, epoch_steps (0 or absent: at an epoch's end);
 *                after a stop part-way through an epoch also the attribute epoch_ranks and
 *                epoch_sums (float64, one row per rank: loss sum, correct, seen),
 *                epoch_seconds (float64: train, compute, allreduce, data) and
 *                epoch_states (float32, one row of running statistics per rank)
 *                (what a resume needs; the run continues bit-identically on the CPU)
 *   /text_attributes  the text attributes again, "name\0value\0" pairs in a checksummed
 *                uint8 array: what bneck reads back (h5_util.h: H5_TEXT_COPY)
 * Written to "<path>.tmp" and renamed over <path>, so a reader sees the old file or the
 * new one, never half of one. status "complete" is set only in the final write.
 *
 * Sweep file (OUTPUT/sweep.h5):
 *   /runs        compound table, one row per run (run_row)
 *   /history/<pattern>-r<repeat>   compound table of epoch_row (as in the run file)
 *   /summary     compound table, one row per pattern (summary_row)
 *   /text_attributes  as in the run file; bneck-report reads the text attributes there
 *   attributes   format = "bneck-sweep-1", config, git_commit, versions, hosts, devices,
 *                mpi_size, runs_planned, sd_ddof (1: the sample standard deviation), created, and
 *                slurm_job_id / slurm_nodelist / rank_gpu_map when known
 */
#ifndef BNECK_RESULTS_RESULTS_H
#define BNECK_RESULTS_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "train/train.h"

enum { RESULTS_NAME = 16, RESULTS_STATUS = 16, RESULTS_DEVICES = 64, RESULTS_HOSTS = 64 };

/* A run's status: still to train more epochs (stopped, or in progress), every epoch done,
 * or ended early because its loss stopped being finite (kept, never trained again; left
 * out of /summary like unfinished runs). */
#define RUN_STATUS_RUNNING "running"
#define RUN_STATUS_COMPLETE "complete"
#define RUN_STATUS_DIVERGED "diverged"

/* One row of /runs. Strings are fixed-length, NUL-padded. */
typedef struct run_row {
    char pattern[RESULTS_NAME];
    int32_t mode, alpha, repeat;
    uint64_t seed;
    int32_t ranks;
    char devices[RESULTS_DEVICES];   /* e.g. "cpu x2" or "NVIDIA H100 x4" */
    char hosts[RESULTS_HOSTS];       /* the hosts the run's ranks ran on, comma-separated */
    int64_t params, pseudo_flops, macs;
    int32_t epochs;                  /* finished epochs */
    double best_val_acc;             /* fraction, not percent */
    int32_t best_epoch;              /* 1-based */
    double final_val_acc;
    double median_epoch_s;           /* over epochs after the first */
    double sd_epoch_s;               /* sample sd (ddof 1) over the same epochs; NaN if < 2 */
    double images_per_s;             /* median over epochs after the first */
    double total_s;                  /* training + evaluation, all epochs */
    char status[RESULTS_STATUS];     /* a RUN_STATUS_* */
} run_row;

/* One row of a history table: epoch_record of train/train.h, field for field. */
typedef epoch_record epoch_row;

/* One row of /summary. */
typedef struct summary_row {
    char pattern[RESULTS_NAME];
    int32_t mode, alpha;
    int32_t n;                       /* complete runs */
    double median_best_val_acc, sd_best_val_acc;
    double median_epoch_s, sd_epoch_s; /* over all runs' epochs after their first */
    int64_t params, pseudo_flops, macs;
    double achieved_flops;           /* training FLOP/s: 6 * macs * images / epoch second */
} summary_row;

/* Median and sample standard deviation (ddof 1; NaN when count < 2). Median of nothing
 * is NaN. values is not modified. */
double stats_median(const double *values, int count);
double stats_sd(const double *values, int count);

/* Fills the derived fields of row (epochs, best/final accuracy, epoch-time median and sd,
 * images/s, total_s) from a history. */
void run_row_summarise(run_row *row, const epoch_record *history, int epochs);

/* The columns of a checkpoint's epoch_sums (one row per rank) and epoch_seconds. */
enum { EPOCH_SUM_LOSS, EPOCH_SUM_CORRECT, EPOCH_SUM_SEEN, EPOCH_SUMS };
enum { EPOCH_SECONDS_TRAIN, EPOCH_SECONDS_COMPUTE, EPOCH_SECONDS_ALLREDUCE, EPOCH_SECONDS_DATA,
       EPOCH_SECONDS };

/* A run's checkpoint: what a resume needs. Arrays are host memory, sized by the model. */
typedef struct run_checkpoint {
    float *params, *state, *adam_m, *adam_v;
    size_t param_count, state_count;
    long step;
    int epochs_done;
    /* CPU threads per rank that computed it (their count sets the order of the sums, so a
     * run continued on another count is no longer bit-identical); 0: not on the CPU, or a
     * file from before the attribute */
    int cpu_threads;
    /* Part-way through epoch epochs_done + 1 (epoch_steps 0: at its start): the global
     * batches trained, every rank's training sums over them and the epoch's times so far
     * (the leader's), so that the epoch continues as if it had never stopped. */
    int epoch_steps;
    int epoch_ranks;    /* of epoch_sums; 0 when epoch_steps is 0 */
    double *epoch_sums; /* epoch_ranks rows of EPOCH_SUMS: malloc'ed, NULL when no steps */
    double epoch_seconds[EPOCH_SECONDS];
    /* epoch_ranks rows of state_count: every rank's running statistics, which differ
     * within an epoch (each rank's follow its share of the batches; they are averaged at
     * the epoch's end); state holds the first rank's. malloc'ed, NULL when no steps. */
    float *epoch_states;
} run_checkpoint;

/* Writes the run file atomically (path.tmp, then rename). */
int run_file_write(const char *path, const run_row *row, const epoch_record *history,
                   int epochs, const model *m, const run_checkpoint *checkpoint,
                   const char *config_text, const char *settings_text, bneck_error *err);

/* The run's results-defining settings (the sweep's configuration without where, how fast
 * and which runs), attribute "settings", written by run_file_write when settings_text is
 * not NULL: 1 and the text, 0 when the file has none (files from before it), -1 with err
 * on a file that cannot be read. */
int run_file_settings(const char *path, char *settings, size_t capacity, bneck_error *err);

/* Reads a run file. Anything that is not a complete, well-formed bneck run file (missing,
 * truncated, foreign, wrong sizes for m) is reported in err and returns -1; nothing is
 * trusted half-way. history is malloc'ed (free it); checkpoint arrays are malloc'ed when
 * checkpoint is non-NULL (free with run_checkpoint_free). m may be NULL to read only the
 * row and history (the record of a kept run), without looking at /weights or /checkpoint. */
int run_file_read(const char *path, run_row *row, epoch_record **history, int *epochs,
                  const model *m, run_checkpoint *checkpoint, bneck_error *err);
void run_checkpoint_free(run_checkpoint *checkpoint);

/* Attributes of the sweep file. */
typedef struct sweep_attributes {
    const char *config_text;   /* as given: the config file's text, then the overrides */
    const char *settings_text; /* every key as the sweep used it (INI text) */
    const char *versions;      /* libraries: CUDA, cuDNN, NCCL, MPI, HDF5, BLAS */
    const char *hosts;
    const char *devices;
    int mpi_size;
    int runs_planned;          /* the sweep's runs, begun or not */
    const char *slurm_job_id;  /* NULL or "" when not under Slurm */
    const char *slurm_nodelist;
    const char *rank_gpu_map;  /* e.g. "0:host1:cuda:0 NVIDIA H200,1:host1:cuda:1 NVIDIA H200" */
} sweep_attributes;

/* The /summary rows of these runs: one per distinct pattern, in first-seen order, with
 * statistics over the pattern's complete runs (n of them; NaN where there are too few:
 * epoch seconds pool every epoch after each run's first) and the model counts of its first
 * run. summaries holds run_count rows; returns how many were filled. */
int results_summarise_patterns(const run_row *runs, epoch_record *const *histories,
                               const int *epoch_counts, int run_count, summary_row *summaries);

/* Merges runs into the sweep file (atomically): /runs, /history/<pattern>-r<repeat>,
 * /summary (one row per distinct pattern, in first-seen order, complete runs only). */
int sweep_file_write(const char *path, const run_row *runs, epoch_record *const *histories,
                     const int *epoch_counts, int run_count, const sweep_attributes *attributes,
                     bneck_error *err);

/* HDF5 library version text, for results and logs. */
const char *results_hdf5_version(void);

#endif
