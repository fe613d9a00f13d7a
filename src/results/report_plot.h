/* bneck-report's plots, drawn with PLplot into PNG files (cairo "pngcairo" driver):
 *   val_acc_per_epoch.png        validation accuracy per epoch, median over repeats with
 *                                the min-max band, one line per pattern
 *   epoch_s_vs_pseudo_flops.png  seconds per epoch (median, sd bars) against the study's
 *                                pseudo-FLOPs, one labelled point per pattern, with the
 *                                line time would follow if it scaled with counted work
 *   theory_ratios.png            BC and BCB savings against k for alpha 2, 4 and beta 1, 8,
 *                                with the k -> inf limits dashed (SPEC section 1)
 * Each file is drawn to "<name>.tmp", checked to be a PNG and renamed, so a failed plot
 * never leaves a file that looks finished. */
#ifndef BNECK_RESULTS_REPORT_PLOT_H
#define BNECK_RESULTS_REPORT_PLOT_H

#include <stdio.h>

#include "core/error.h"
#include "results/report_read.h"

extern const char report_plot_val_acc_name[];    /* "val_acc_per_epoch.png" */
extern const char report_plot_epoch_time_name[]; /* "epoch_s_vs_pseudo_flops.png" */
extern const char report_plot_theory_name[];     /* "theory_ratios.png" */

/* One plot each, written to path. Return 0; REPORT_PLOT_NOTHING with err saying why when
 * the sweep has nothing to draw yet (no complete run, or none past its first epoch), and
 * no file is written; or -1 with err naming the file and, where PLplot refused, PLplot's
 * message. A fatal PLplot error (PLplot exits the process itself) is reported on stderr
 * with the file name, and the exit status is 1. */
enum { REPORT_PLOT_NOTHING = 1 };
int report_plot_val_acc(const report_sweep *sweep, const char *path, bneck_error *err);
int report_plot_epoch_time(const report_sweep *sweep, const char *path, bneck_error *err);
int report_plot_theory(const char *path, bneck_error *err);

/* All three into directory (created, with its parents, when missing); each written
 * file's path is printed on its own line to names_out (NULL: not printed), and so is each
 * plot skipped for having nothing to draw, with the reason. */
int report_plots_write(const report_sweep *sweep, const char *directory, FILE *names_out,
                       bneck_error *err);

#endif
