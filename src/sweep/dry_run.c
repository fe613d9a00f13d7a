/* --dry-run: what the sweep would do with each run's file (read only), and the groups
 * predicted by handing each run still to train, most expensive first, to the group that
 * frees up first (what the dynamic hand-out does when run time follows pseudo-FLOPs). */
#include "sweep/sweep_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "sweep/output.h"

typedef enum { STATE_TO_TRAIN, STATE_TO_RESUME, STATE_KEPT, STATE_STOPS, STATE_COUNT } dry_run_state;

/* What the sweep would do with a run's file (classify_run_file), in words in why; for a
 * file it would move aside, also the reason (what the sweep would warn), else "". */
static dry_run_state dry_run_inspect(const sweep_state *s, const planned_run *run, char *why,
                                     size_t capacity, char *reason, size_t reason_capacity) {
    char path[PATH_TEXT];
    sweep_run_path(s, run, path, sizeof path);
    model_spec spec = {run->pattern.mode, run->pattern.alpha, s->in_channels, s->cfg.pool_branch,
                       MODEL_LAYERS_GROUPED};
    static model built;
    bneck_error err = {{0}};
    if (model_build(&built, &spec, &err)) BNECK_FAIL("%s: %s", run->name, err.message); /* planned */
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    run_checkpoint checkpoint = {0};
    const char *what = "";
    const run_file_state state =
        sweep_classify_run_file(s, run, path, &built, &row, &history, &epochs, &checkpoint, &what, &err);
    free(history);
    const int epoch_steps = state == FILE_RESUME ? checkpoint.epoch_steps : 0;
    if (state == FILE_RESUME) run_checkpoint_free(&checkpoint);
    reason[0] = '\0';
    if (state == FILE_NOT_REGULAR || state == FILE_UNREADABLE || state == FILE_BAD_CHECKPOINT)
        snprintf(reason, reason_capacity, "%s", err.message);
    switch (state) {
    case FILE_NONE: snprintf(why, capacity, "new"); return STATE_TO_TRAIN;
    case FILE_RESUME:
        if (epoch_steps > 0)
            snprintf(why, capacity, "resumes after %d/%d + %d steps", epochs, s->cfg.epochs,
                     epoch_steps);
        else
            snprintf(why, capacity, "resumes after %d/%d", epochs, s->cfg.epochs);
        return STATE_TO_RESUME;
    case FILE_COMPLETE: snprintf(why, capacity, "complete"); return STATE_KEPT;
    case FILE_DIVERGED: snprintf(why, capacity, "diverged at epoch %d", epochs); return STATE_KEPT;
    case FILE_NOT_REGULAR: snprintf(why, capacity, "redo: not a file (moved aside)"); break;
    case FILE_UNREADABLE: snprintf(why, capacity, "redo: unreadable (moved aside)"); break;
    case FILE_BAD_CHECKPOINT: snprintf(why, capacity, "redo: bad checkpoint (moved aside)"); break;
    case FILE_UNREACHABLE: snprintf(why, capacity, "stops: %s", what); return STATE_STOPS;
    }
    return STATE_TO_TRAIN;
}

/* 0, 2 when the sweep itself would refuse the output, 1 when the plan cannot be written
 * (its message printed). */
int sweep_print_plan(const sweep_state *s) {
    const int groups = s->world.groups, per_group = s->world.size / groups;
    bneck_error err;
    const int tie = sweep_output_check(&s->cfg, &s->plan, s->options.restart, 1, &err);
    const int moved_aside = tie == SWEEP_OUTPUT_MOVED_ASIDE; /* all runs start anew */
    if (tie < 0) {
        fprintf(stderr, "bneck-sweep: %s\n", err.message);
        return 2;
    }
    double *busy_until = bneck_calloc((size_t)groups, sizeof(double));
    int counts[STATE_COUNT] = {0};
    struct stat info;
    const int exists = stat(s->cfg.output, &info) == 0;
    printf("sweep plan: %d runs (%d patterns x %d repeats), %d epochs each, on %d ranks in %d "
           "group(s) of %d; output %s%s\n",
           s->plan.count, s->cfg.pattern_count, s->cfg.repeats, s->cfg.epochs, s->world.size,
           groups, per_group, s->cfg.output,
           moved_aside ? " (--restart: moved aside first)"
           : tie == SWEEP_OUTPUT_NEW && !exists ? " (new)"
           : tie == SWEEP_OUTPUT_NEW ? " (there, without a sweep.ini: the sweep writes one)"
           : tie == SWEEP_OUTPUT_RUN_LIST_CHANGED ? " (this sweep's, with another run list)"
                                                  : " (this sweep's)");
    printf("%-10s %-7s %4s %5s %6s %20s %14s %-34s %5s  %s\n", "run", "pattern", "mode", "alpha",
           "repeat", "seed", "pseudo-FLOPs", "state", "group", "ranks (host:device)");
    for (int i = 0; i < s->plan.count; i++) {
        const planned_run *run = &s->plan.runs[i];
        char why[64], reason[BNECK_ERROR_TEXT] = "";
        dry_run_state state = STATE_TO_TRAIN;
        if (moved_aside) snprintf(why, sizeof why, "new");
        else state = dry_run_inspect(s, run, why, sizeof why, reason, sizeof reason);
        counts[state]++;
        char ranks[512] = "-", group[16] = "-";
        if (state == STATE_TO_TRAIN || state == STATE_TO_RESUME) {
            int g = 0;
            for (int q = 1; q < groups; q++)
                if (busy_until[q] < busy_until[g]) g = q;
            busy_until[g] += (double)run->pseudo_flops;
            snprintf(group, sizeof group, "%d", g);
            size_t used = 0;
            for (int r = g * per_group; r < (g + 1) * per_group && used < sizeof ranks - 1; r++) {
                int n = snprintf(ranks + used, sizeof ranks - used, "%s%d (%s:%s)", used ? ", " : "",
                                 r, s->all_hosts + (size_t)r * HOST_TEXT,
                                 s->all_devices + (size_t)r * DEVICE_TEXT);
                if (n < 0) break;
                used += (size_t)n;
            }
        }
        printf("%-10s %-7s %4d %5d %6d %20llu %14lld %-34s %5s  %s\n", run->name,
               run->pattern.name, run->pattern.mode, run->pattern.alpha, run->repeat,
               (unsigned long long)run->seed, (long long)run->pseudo_flops, why, group, ranks);
        if (reason[0]) printf("%-10s why: %s\n", "", reason);
    }
    printf("%d to train, %d to resume, %d kept (complete or diverged)", counts[STATE_TO_TRAIN],
           counts[STATE_TO_RESUME], counts[STATE_KEPT]);
    if (counts[STATE_STOPS])
        printf("; %d file(s) the sweep cannot look at: it would stop there", counts[STATE_STOPS]);
    printf("\n");
    free(busy_until);
    /* the plan is all a dry run gives: one lost on its way out (a full disk, a closed pipe)
     * is a failure, exit status 1, not a silent success */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "bneck-sweep: writing the plan: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
