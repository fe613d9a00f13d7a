/* The sweep's output directory, on rank 0: OUTPUT/runs made, OUTPUT/.lock held for the
 * rest of the process (a second sweep on the same output is refused), and OUTPUT/sweep.ini
 * tying the directory to one configuration, all but its run list ([sweep] patterns and
 * repeats, which may grow or shrink a sweep between sessions). sweep.ini is a config file
 * in its own right (threads, device and progress at their defaults): `bneck-sweep
 * OUTPUT/sweep.ini` resumes the sweep. */
#ifndef BNECK_SWEEP_OUTPUT_H
#define BNECK_SWEEP_OUTPUT_H

#include <stddef.h>

#include "core/error.h"
#include "sweep/plan.h"
#include "train/config.h"

/* A config file named sweep.ini, in the form a sweep writes it, in a directory holding
 * runs/ is a sweep's own record: unless [run] output was given on the command line, the
 * sweep it records is the one in that directory, wherever it was moved or copied (its
 * stored output line names where it was written). Sets cfg->output to the directory's
 * absolute path and returns 1; 0 when config_path is not a record. */
int sweep_output_from_record(config *cfg, const char *config_path);

/* Prepares cfg->output for the plan, moving an existing one aside first when restart is
 * set; host names this process in the lock. 0, or -1 with err naming what is wrong. */
int sweep_output_prepare(const config *cfg, const sweep_plan *plan, const char *host,
                         int restart, bneck_error *err);

/* How cfg->output stands to cfg, read only (what --dry-run says): no sweep.ini yet, the
 * same configuration (as written, or the same settings written otherwise), the same but
 * for the run list, or (restart set) there and to be moved aside; -1 with err when the
 * sweep there would be refused (also when the plan's run files there all record other
 * settings). With report_foreign, files in OUTPUT/runs that the plan does not name are
 * reported, as the sweep reports them. */
enum {
    SWEEP_OUTPUT_NEW = 0,
    SWEEP_OUTPUT_SAME = 1,
    SWEEP_OUTPUT_SAME_SETTINGS = 2,
    SWEEP_OUTPUT_RUN_LIST_CHANGED = 3,
    SWEEP_OUTPUT_MOVED_ASIDE = 4,
};
int sweep_output_check(const config *cfg, const sweep_plan *plan, int restart,
                       int report_foreign, bneck_error *err);

/* The settings that decide a run's numbers: the configuration without where and how fast
 * it runs, and without the run list. Run files record them; a run file made with others
 * is not this sweep's. */
void sweep_output_settings(const config *cfg, char *out, size_t capacity);

/* Whether a run file's recorded settings (stored, read from path) are `wanted`
 * (sweep_output_settings): the same text, or the same once read back through the
 * configuration parser, so that a key added by a later bneck (absent from an older file,
 * so at its default) or a value spelled another way is the same setting. 1 if so; 0 with
 * the first line that differs in `difference` (of the texts as read back, where the stored
 * one reads). */
int sweep_output_same_settings(const char *path, const char *stored, const char *wanted,
                               char *difference, size_t capacity);

/* "stored 'A', this sweep 'B'" for the first line where the two texts differ. */
void sweep_output_first_difference(const char *stored, const char *wanted, char *out,
                                   size_t capacity);

/* Local time as "20261202-021217", for the names of files and directories moved aside. */
void sweep_output_timestamp(char *out, size_t capacity);

#endif
