/* The reader side of the sweep file for bneck-report: /runs, /summary, /history/<run> and
 * the file's attributes, read into plain structs.
 *
 * It reads only the file (layout in results/results.h), never the training code, and it
 * matches the compound tables by field NAME: a memory type holds just the fields the
 * report needs, so a writer that adds fields, reorders them or widens an integer still
 * reads right. A field the report needs that is missing or of the wrong kind is an error
 * naming the file, the table and the field. */
#ifndef BNECK_RESULTS_REPORT_READ_H
#define BNECK_RESULTS_REPORT_READ_H

#include <stdint.h>

#include "core/error.h"

/* Room for the writer's fixed-length strings (16 for names) with margin and a NUL. */
enum { REPORT_NAME_MAX = 64, REPORT_STATUS_MAX = 32 };

/* The part of a /runs row the report uses. */
typedef struct report_run {
    char pattern[REPORT_NAME_MAX];
    int mode, alpha, repeat;
    int epochs;                 /* finished epochs */
    double best_val_acc;        /* fraction */
    double median_epoch_s, sd_epoch_s;
    int64_t pseudo_flops;
    char status[REPORT_STATUS_MAX]; /* "complete", "running" or "diverged" */
} report_run;

/* One /summary row: one pattern over its complete runs. */
typedef struct report_pattern {
    char pattern[REPORT_NAME_MAX];
    int mode, alpha;
    int n;                      /* complete runs */
    double median_best_val_acc, sd_best_val_acc; /* fractions */
    double median_epoch_s, sd_epoch_s;
    int64_t params, pseudo_flops, macs;
    double achieved_flops;      /* FLOP/s */
} report_pattern;

/* The part of a history row the report uses. */
typedef struct report_epoch {
    int epoch;                  /* 1-based */
    double val_acc;             /* fraction */
    double epoch_s;
} report_epoch;

/* A run's /history table; epochs is NULL (count 0) when the file has none for the run. */
typedef struct report_history {
    report_epoch *epochs;
    int count;
} report_history;

/* A scalar attribute of the file rendered as text ("1", "0.5", "NVIDIA H100 x4"). */
typedef struct report_attribute {
    const char *name;
    char *text;                 /* malloc'ed; NULL when the file lacks the attribute */
} report_attribute;

/* The attributes the report shows, in this order (see report_sweep.attributes). */
enum {
    REPORT_ATTR_FORMAT,
    REPORT_ATTR_CREATED,
    REPORT_ATTR_GIT_COMMIT,
    REPORT_ATTR_DEVICES,
    REPORT_ATTR_HOSTS,
    REPORT_ATTR_MPI_SIZE,
    REPORT_ATTR_SD_DDOF,
    REPORT_ATTR_VERSIONS,
    REPORT_ATTR_SLURM_JOB_ID,
    REPORT_ATTR_CONFIG,
    REPORT_ATTR_SETTINGS, /* absent from sweeps written before it was recorded */
    REPORT_ATTR_RUNS_PLANNED, /* the same */
    REPORT_ATTR_COUNT
};

typedef struct report_sweep {
    report_run *runs;           /* /runs, file order */
    report_history *histories;  /* histories[i] belongs to runs[i] */
    int run_count;
    report_pattern *patterns;   /* /summary, file order */
    int pattern_count;
    report_attribute attributes[REPORT_ATTR_COUNT];
} report_sweep;

/* Reads the sweep file at path. Fails (returns -1, err names the file and object) when
 * the file is missing or not HDF5, when /runs or /summary is missing or malformed, when
 * /runs has no rows (an empty sweep) or /summary has none (no complete run), and when a
 * complete run's history is missing. A running run's history may be absent. On failure
 * nothing needs freeing; on success free with report_sweep_free. */
int report_sweep_read(const char *path, report_sweep *sweep, bneck_error *err);
void report_sweep_free(report_sweep *sweep);

/* "<pattern>-r<repeat>", the name of a run's table under /history. */
void report_history_name(const report_run *run, char *buffer, int size);

/* Whether a run finished all its epochs (the only runs /summary counts). */
int report_run_is_complete(const report_run *run);

/* How many runs of the sweep have this status ("complete", "running", "diverged"). */
int report_runs_with_status(const report_sweep *sweep, const char *status);

#endif
