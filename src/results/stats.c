#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "results/results.h"

/* Ascending, NaN last, so qsort always sees a consistent order. */
static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x) || isnan(y)) return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

double stats_median(const double *values, int count) {
    if (!values || count <= 0) return NAN;
    double *sorted = bneck_malloc((size_t)count * sizeof *sorted);
    memcpy(sorted, values, (size_t)count * sizeof *sorted);
    qsort(sorted, (size_t)count, sizeof *sorted, compare_doubles);
    const int middle = count / 2;
    const double median = count % 2 ? sorted[middle] : 0.5 * (sorted[middle - 1] + sorted[middle]);
    free(sorted);
    return median;
}

double stats_sd(const double *values, int count) {
    if (!values || count < 2) return NAN;
    /* Two passes: the mean first, then squared deviations (no cancellation). */
    double sum = 0.0;
    for (int i = 0; i < count; i++) sum += values[i];
    const double mean = sum / count;
    double squares = 0.0;
    for (int i = 0; i < count; i++) squares += (values[i] - mean) * (values[i] - mean);
    return sqrt(squares / (count - 1));
}

void run_row_summarise(run_row *row, const epoch_record *history, int epochs) {
    row->epochs = epochs > 0 ? epochs : 0;
    row->best_val_acc = NAN;
    row->best_epoch = 0;
    row->final_val_acc = NAN;
    row->median_epoch_s = NAN;
    row->sd_epoch_s = NAN;
    row->images_per_s = NAN;
    row->total_s = 0.0;
    if (epochs <= 0 || !history) return;

    for (int i = 0; i < epochs; i++) {
        const double accuracy = history[i].val_acc;
        /* Strictly greater: ties keep the earliest epoch; a NaN (diverged) epoch never wins. */
        if (!isnan(accuracy) && (row->best_epoch == 0 || accuracy > row->best_val_acc)) {
            row->best_val_acc = accuracy;
            row->best_epoch = history[i].epoch;
        }
        row->total_s += history[i].epoch_s + history[i].eval_s;
    }
    row->final_val_acc = history[epochs - 1].val_acc;

    /* The first epoch carries warm-up (allocation, autotuning), so timings skip it unless
     * it is all there is. */
    const int first = epochs > 1 ? 1 : 0, timed = epochs - first;
    double *seconds = bneck_malloc((size_t)timed * sizeof *seconds);
    double *rates = bneck_malloc((size_t)timed * sizeof *rates);
    for (int i = 0; i < timed; i++) {
        seconds[i] = history[first + i].epoch_s;
        rates[i] = history[first + i].images_per_s;
    }
    row->median_epoch_s = stats_median(seconds, timed);
    row->sd_epoch_s = stats_sd(seconds, timed);
    row->images_per_s = stats_median(rates, timed);
    free(seconds);
    free(rates);
}
