/* The sweep file's tables again, in the shape netCDF and xarray read: one dataset per
 * column over dimension scales, text as variable-length strings. /columns/runs and
 * /columns/summary run over `run` (names such as "E-r0") and `pattern`; /columns/history
 * over (run, epoch), NaN after a run's last epoch. So
 *     xr.open_dataset("sweep.h5", group="columns/history")
 * is one Dataset of every run's history. (The compound tables /runs, /summary and
 * /history/<run> stay the file's record: netCDF-C cannot read their fixed-length strings.) */
#ifndef BNECK_RESULTS_SWEEP_COLUMNS_H
#define BNECK_RESULTS_SWEEP_COLUMNS_H

#include "results/h5_util.h"
#include "results/results.h"

int sweep_columns_write(const h5_site *site, hid_t file, const run_row *runs,
                        epoch_record *const *histories, const int *epoch_counts, int run_count,
                        const summary_row *summaries, int summary_count);

#endif
