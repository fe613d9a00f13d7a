#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/version.h"
#include "results/h5_util.h"
#include "results/results.h"
#include "results/sweep_columns.h"


static const char sweep_format[] = "bneck-sweep-1";

static int same_pattern(const run_row *a, const run_row *b) {
    return strncmp(a->pattern, b->pattern, RESULTS_NAME) == 0;
}

static int is_complete(const run_row *row) {
    return strncmp(row->status, RUN_STATUS_COMPLETE, RESULTS_STATUS) == 0;
}

/* Epoch seconds of a run that its timing statistics use: after the first epoch, or the
 * only epoch of a one-epoch run (as run_row_summarise does). */
static int timed_epochs(int epochs, int *first) {
    *first = epochs > 1 ? 1 : 0;
    return epochs > 0 ? epochs - *first : 0;
}

int results_summarise_patterns(const run_row *runs, epoch_record *const *histories,
                               const int *epoch_counts, int run_count, summary_row *summaries) {
    int total_epochs = 0;
    for (int i = 0; i < run_count; i++) total_epochs += epoch_counts[i] > 0 ? epoch_counts[i] : 0;
    double *accuracies = bneck_malloc((size_t)run_count * sizeof(double));
    double *rates = bneck_malloc((size_t)run_count * sizeof(double));
    double *seconds = bneck_malloc((size_t)total_epochs * sizeof(double));
    int summary_count = 0;
    for (int i = 0; i < run_count; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = same_pattern(&runs[i], &runs[j]);
        if (seen) continue;

        summary_row *s = &summaries[summary_count++];
        memset(s, 0, sizeof *s);
        memcpy(s->pattern, runs[i].pattern, RESULTS_NAME);
        s->mode = runs[i].mode;
        s->alpha = runs[i].alpha;
        s->params = runs[i].params;
        s->pseudo_flops = runs[i].pseudo_flops;
        s->macs = runs[i].macs;

        int n = 0, pooled = 0;
        for (int r = i; r < run_count; r++) {
            if (!same_pattern(&runs[i], &runs[r]) || !is_complete(&runs[r])) continue;
            accuracies[n] = runs[r].best_val_acc;
            rates[n] = runs[r].images_per_s;
            n++;
            int first, timed = timed_epochs(epoch_counts[r], &first);
            for (int e = 0; e < timed; e++) seconds[pooled++] = histories[r][first + e].epoch_s;
        }
        s->n = n;
        s->median_best_val_acc = stats_median(accuracies, n);
        s->sd_best_val_acc = stats_sd(accuracies, n);
        s->median_epoch_s = stats_median(seconds, pooled);
        s->sd_epoch_s = stats_sd(seconds, pooled);
        /* Training FLOP/s: a MAC is 2 FLOP forward and the backward pass costs about twice
         * the forward (gradients for inputs and for weights), so 3 x 2 = 6 FLOP per MAC per
         * training image. macs is per image, images_per_s is the whole group's rate. */
        s->achieved_flops = 6.0 * (double)s->macs * stats_median(rates, n);
    }
    free(accuracies);
    free(rates);
    free(seconds);
    return summary_count;
}

static int check_runs(const char *path, const run_row *runs, epoch_record *const *histories,
                      const int *epoch_counts, int run_count, bneck_error *err) {
    if (run_count < 0 || (run_count > 0 && (!runs || !histories || !epoch_counts)))
        return bneck_error_set(err, "%s: sweep_file_write: missing runs, histories or counts",
                               path);
    for (int i = 0; i < run_count; i++) {
        const run_row *r = &runs[i];
        if (!memchr(r->pattern, '\0', RESULTS_NAME) || !r->pattern[0] || strchr(r->pattern, '/'))
            return bneck_error_set(err, "%s: run %d: pattern name must be 1..%d characters "
                                   "without '/'", path, i, RESULTS_NAME - 1);
        if (epoch_counts[i] < 0 || (epoch_counts[i] > 0 && !histories[i]))
            return bneck_error_set(err, "%s: run %d (%s-r%d): no history for %d epochs", path, i,
                                   r->pattern, r->repeat, epoch_counts[i]);
        for (int j = 0; j < i; j++)
            if (same_pattern(r, &runs[j]) && r->repeat == runs[j].repeat)
                return bneck_error_set(err, "%s: runs %d and %d are both %s-r%d", path, j, i,
                                       r->pattern, r->repeat);
    }
    return 0;
}

/* Optional text: written only when known. */
static int write_known_text(const h5_site *site, hid_t file, const char *name, const char *value) {
    if (!value || !value[0]) return 0;
    return h5_write_text_attribute(site, file, name, value);
}

int sweep_file_write(const char *path, const run_row *runs, epoch_record *const *histories,
                     const int *epoch_counts, int run_count, const sweep_attributes *attributes,
                     bneck_error *err) {
    if (!path) return bneck_error_set(err, "sweep_file_write: no path");
    if (!attributes) return bneck_error_set(err, "%s: sweep_file_write: no attributes", path);
    if (check_runs(path, runs, histories, epoch_counts, run_count, err)) return -1;

    summary_row *summaries = bneck_calloc(run_count > 0 ? (size_t)run_count : 1, sizeof *summaries);
    const int summary_count =
        results_summarise_patterns(runs, histories, epoch_counts, run_count, summaries);

    h5_site site;
    h5_site_open(&site, path, err);
    h5_text_copy_start(&site);
    char temporary[4096], created[32];
    hid_t group = H5I_INVALID_HID;
    hid_t file = h5_create_temporary(&site, temporary, sizeof temporary);
    if (file < 0) goto fail;
    if (h5_write_table(&site, file, "/runs", &h5_run_row_table, runs, run_count)) goto fail;
    BNECK_H5_CHECK(&site,
                   group = H5Gcreate2(file, "/history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/history: cannot create the group");
    for (int i = 0; i < run_count; i++) {
        char name[RESULTS_NAME + 32];
        snprintf(name, sizeof name, "%s-r%d", runs[i].pattern, runs[i].repeat);
        if (h5_write_table(&site, group, name, &h5_epoch_record_table, histories[i],
                           epoch_counts[i]))
            goto fail;
    }
    h5_close(&group);
    if (h5_write_table(&site, file, "/summary", &h5_summary_row_table, summaries, summary_count))
        goto fail;
    if (sweep_columns_write(&site, file, runs, histories, epoch_counts, run_count, summaries,
                            summary_count))
        goto fail;

    h5_timestamp(created, sizeof created);
    if (h5_write_text_attribute(&site, file, "format", sweep_format) ||
        h5_write_text_attribute(&site, file, "config", attributes->config_text) ||
        h5_write_text_attribute(&site, file, "settings", attributes->settings_text) ||
        h5_write_text_attribute(&site, file, "git_commit", bneck_git_commit) ||
        h5_write_text_attribute(&site, file, "versions", attributes->versions) ||
        h5_write_text_attribute(&site, file, "hosts", attributes->hosts) ||
        h5_write_text_attribute(&site, file, "devices", attributes->devices) ||
        h5_write_int64_attribute(&site, file, "mpi_size", attributes->mpi_size) ||
        h5_write_int64_attribute(&site, file, "runs_planned", attributes->runs_planned) ||
        h5_write_int64_attribute(&site, file, "sd_ddof", 1) ||
        h5_write_text_attribute(&site, file, "created", created) ||
        h5_write_text_attribute(&site, file, "hdf5_version", results_hdf5_version()) ||
        write_known_text(&site, file, "slurm_job_id", attributes->slurm_job_id) ||
        write_known_text(&site, file, "slurm_nodelist", attributes->slurm_nodelist) ||
        write_known_text(&site, file, "rank_gpu_map", attributes->rank_gpu_map) ||
        h5_text_copy_write(&site, file))
        goto fail;
    if (h5_commit(&site, &file, temporary)) goto fail_committed;
    h5_site_close(&site);
    free(summaries);
    return 0;
fail:
    h5_close(&group);
    h5_abandon(&file, temporary);
fail_committed:
    h5_site_close(&site);
    free(summaries);
    return -1;
}
