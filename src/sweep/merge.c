/* The merge: rank 0 reads every run file back (never the in-memory results: the files are
 * the record) and writes sweep.h5, then prints its summary. */
#include "sweep/sweep_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "core/format.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/version.h"
#include "results/report_read.h"
#include "sweep/output.h"

/* The sweep file's /summary as a table on the console (SPEC section 5: best validation
 * accuracy over the repeats, seconds over every epoch after each run's first). */
static void log_summary(const run_row *rows, epoch_record *const *histories,
                        const int *epoch_counts, int count) {
    summary_row *summaries = bneck_calloc((size_t)count, sizeof *summaries);
    const int patterns = results_summarise_patterns(rows, histories, epoch_counts, count,
                                                    summaries);
    int complete = 0;
    for (int p = 0; p < patterns; p++) complete += summaries[p].n;
    if (complete) /* a stopped sweep may have no complete run: no table then */
        log_info("%-8s %4s %5s %3s %18s %20s", "pattern", "mode", "alpha", "n",
                 "val acc % (sd)", "s/epoch (sd)");
    for (int p = 0; p < patterns; p++) {
        const summary_row *row = &summaries[p];
        if (!row->n) continue;
        char acc_sd[16] = "    -", seconds_sd[16] = "    -"; /* no sd of a single value */
        if (!isnan(row->sd_best_val_acc))
            snprintf(acc_sd, sizeof acc_sd, "%5.2f", 100 * row->sd_best_val_acc);
        if (!isnan(row->sd_epoch_s)) snprintf(seconds_sd, sizeof seconds_sd, "%5.2f", row->sd_epoch_s);
        log_info("%-8s %4d %5d %3d %10.2f (%s) %12.2f (%s)", row->pattern, row->mode, row->alpha,
                 row->n, 100 * row->median_best_val_acc, acc_sd, row->median_epoch_s, seconds_sd);
    }
    free(summaries);
}

static int pattern_order(const config *cfg, const char *name) {
    for (int p = 0; p < cfg->pattern_count; p++)
        if (!strcmp(cfg->patterns[p].name, name)) return p;
    return cfg->pattern_count;
}

/* Whether the sweep file at path was written by this build from these run files: the same
 * runs in the same order, with the same status, epochs and best accuracy. A sweep run again
 * after it finished trains nothing, and such a file is then left as it was (with the hosts,
 * devices and time of the sessions that trained it) instead of being rewritten under this
 * one's. A file another build wrote is rewritten: its layout may be older. */
static int sweep_file_holds(const char *path, const run_row *rows, int count) {
    report_sweep sweep; /* a missing file, or one that is not a regular file, does not read */
    bneck_error err;
    if (report_sweep_read(path, &sweep, &err)) return 0;
    const char *commit = sweep.attributes[REPORT_ATTR_GIT_COMMIT].text;
    int same = sweep.run_count == count && commit && !strcmp(commit, bneck_git_commit);
    for (int i = 0; same && i < count; i++) {
        const report_run *r = &sweep.runs[i];
        same = !strcmp(r->pattern, rows[i].pattern) && r->repeat == rows[i].repeat &&
               !strcmp(r->status, rows[i].status) && r->epochs == rows[i].epochs &&
               r->best_val_acc == rows[i].best_val_acc;
    }
    report_sweep_free(&sweep);
    return same;
}

/* sweep.h5 written from the rows read, with this session's attributes (hosts, devices,
 * versions, settings, Slurm job). */
static int write_sweep_file(const sweep_state *s, const char *path, const run_row *rows,
                            epoch_record *const *histories, const int *epoch_counts, int found,
                            bneck_error *err) {
    char versions[1024];
    snprintf(versions, sizeof versions, "bneck %s %s; backend %s: %s; MPI: %s; HDF5 %s",
             BNECK_VERSION, bneck_git_commit, s->backend->name, backend_versions(s->backend),
             sweep_mpi_version()[0] ? sweep_mpi_version() : "none (single process build)",
             results_hdf5_version());
    /* Sized for every rank's entry: nothing is cut off, however many ranks. */
    const size_t capacity = (size_t)s->world.size * (HOST_TEXT + DEVICE_TEXT + 16);
    char *hosts = bneck_calloc(capacity, 1), *devices = bneck_calloc(capacity, 1);
    char *rank_map = bneck_calloc(capacity, 1);
    format_distinct_list(hosts, capacity, s->all_hosts, s->world.size, HOST_TEXT);
    size_t devices_used = 0, map_used = 0;
    for (int r = 0; r < s->world.size; r++) {
        const char *h = s->all_hosts + (size_t)r * HOST_TEXT;
        const char *d = s->all_devices + (size_t)r * DEVICE_TEXT;
        devices_used += (size_t)snprintf(devices + devices_used, capacity - devices_used, "%s%s",
                                         devices_used ? "," : "", d);
        map_used += (size_t)snprintf(rank_map + map_used, capacity - map_used, "%s%d:%s:%s",
                                     map_used ? "," : "", r, h, d);
    }
    const char *job = getenv("SLURM_JOB_ID"), *nodes = getenv("SLURM_JOB_NODELIST");
    char *settings = bneck_malloc(CONFIG_MAX_TEXT);
    /* one line per key however long (config readers other than bneck's would keep the
     * newlines of a wrapped path) */
    if (config_write_unwrapped(&s->cfg, settings, CONFIG_MAX_TEXT) < 0) settings[0] = '\0';
    sweep_attributes attributes = {
        .config_text = s->cfg.text,
        .settings_text = settings,
        .versions = versions,
        .hosts = hosts,
        .devices = devices,
        .mpi_size = s->world.size,
        .runs_planned = s->plan.count,
        .slurm_job_id = job ? job : "",
        .slurm_nodelist = nodes ? nodes : "",
        .rank_gpu_map = rank_map,
    };
    const int rc = sweep_file_write(path, rows, histories, epoch_counts, found, &attributes, err);
    free(settings);
    free(hosts);
    free(devices);
    free(rank_map);
    return rc;
}

/* Every run file there read back into sweep.h5 (or, when this session trained nothing and
 * sweep.h5 holds them already, that file left as it was). The final merge says what it
 * wrote, with the summary table, and fails on what it could not do; an interim one says one
 * line, and only warns. Returns 0 or 1. */
static int merge(sweep_state *s, int interim, int trained_nothing, int *complete_runs,
                 int *diverged_runs) {
    const int count = s->plan.count;
    run_row *rows = bneck_calloc((size_t)count, sizeof *rows);
    epoch_record **histories = bneck_calloc((size_t)count, sizeof *histories);
    int *epoch_counts = bneck_calloc((size_t)count, sizeof *epoch_counts);
    int found = 0, unreadable = 0;
    *complete_runs = *diverged_runs = 0;
    /* Table order: the config's pattern order, then repeat. */
    for (int p = 0; p <= s->cfg.pattern_count; p++) {
        for (int r = 0; r < s->cfg.repeats; r++) {
            for (int i = 0; i < count; i++) {
                const planned_run *run = &s->plan.runs[i];
                if (pattern_order(&s->cfg, run->pattern.name) != p || run->repeat != r) continue;
                char path[PATH_TEXT];
                sweep_run_path(s, run, path, sizeof path);
                if (access(path, F_OK) != 0) continue;
                bneck_error err;
                if (run_file_read(path, &rows[found], &histories[found], &epoch_counts[found], NULL,
                                  NULL, &err)) {
                    log_warn("merge: %s (left out of sweep.h5)", err.message);
                    unreadable++;
                    continue;
                }
                if (!strcmp(rows[found].status, RUN_STATUS_COMPLETE)) (*complete_runs)++;
                if (!strcmp(rows[found].status, RUN_STATUS_DIVERGED)) (*diverged_runs)++;
                found++;
            }
        }
    }

    char path[PATH_TEXT];
    snprintf(path, sizeof path, "%s/sweep.h5", s->cfg.output);
    const int kept = !interim && trained_nothing && !unreadable &&
                     sweep_file_holds(path, rows, found);
    bneck_error err;
    int rc = kept ? 0 : write_sweep_file(s, path, rows, histories, epoch_counts, found, &err);
    if (interim) {
        if (rc) {
            log_warn("sweep: cannot update %s now: %s; the run files hold every result, and "
                     "the sweep writes it again at its end", path, err.message);
            s->interim_merge_failed = 1;
        } else if (*diverged_runs) { /* "runs done" in the progress line counts them too */
            log_info("sweep: updated %s: %d of %d runs complete, %d diverged, so far", path,
                     *complete_runs, count, *diverged_runs);
        } else {
            log_info("sweep: updated %s: %d of %d runs complete so far", path, *complete_runs,
                     count);
        }
        rc = 0;
    } else if (rc) {
        log_error("merge: %s", err.message);
    } else {
        if (kept)
            log_info("sweep: every run was finished already and %s holds them all: left as it "
                     "was", path);
        else
            log_info("sweep: wrote %s (%d runs, %d complete)", path, found, *complete_runs);
        if (found > 0) log_summary(rows, histories, epoch_counts, found);
    }
    if (unreadable && !interim) {
        log_error("merge: %d run file(s) could not be read and are missing from %s (see the "
                  "warnings above)", unreadable, path);
        rc = 1;
    }
    for (int i = 0; i < found; i++) free(histories[i]);
    free(histories);
    free(rows);
    free(epoch_counts);
    return rc;
}

int sweep_merge_results(sweep_state *s, int trained_nothing, int *complete_runs,
                        int *diverged_runs) {
    return merge(s, 0, trained_nothing, complete_runs, diverged_runs);
}

enum { INTERIM_MERGE_SECONDS = 60 };

void sweep_merge_if_runs_finished(sweep_state *s) {
    if (s->world.rank != 0) return;
    const double now = timer_now();
    /* the first at once, the others at most once a minute */
    if (s->merged_runs_done > 0 && now - s->merged_at < INTERIM_MERGE_SECONDS) return;
    const long done = sweep_runs_done(&s->world);
    if (done <= s->merged_runs_done) return;
    int complete, diverged;
    merge(s, 1, 0, &complete, &diverged);
    s->merged_runs_done = done;
    s->merged_at = now;
}
