/* A run's file, read before anything is done about it: whose run it holds, how far it got,
 * whether it can be trusted; and what the leader of a run's group does about it. */
#include "sweep/sweep_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "sweep/output.h"

void sweep_run_path(const sweep_state *s, const planned_run *run, char *out, size_t capacity) {
    /* [run] output is at most 511 characters and run names 31, so this never truncates. */
    snprintf(out, capacity, "%s/runs/%s.h5", s->cfg.output, run->name);
}

/* Whether a run file that reads belongs to this run (its identity and its pattern's
 * mode and alpha); err says why not. */
static int is_this_run(const sweep_state *s, const planned_run *run, const char *path,
                       const run_row *row, bneck_error *err) {
    if (strncmp(row->pattern, run->pattern.name, sizeof row->pattern) ||
        row->repeat != run->repeat || row->seed != run->seed) {
        /* a file copied or renamed from another run: its numbers are not this run's */
        bneck_error_set(err, "%s holds run %.*s-r%d (seed %llu), not %s (seed %llu)", path,
                        (int)sizeof row->pattern, row->pattern, row->repeat,
                        (unsigned long long)row->seed, run->name, (unsigned long long)run->seed);
        return 0;
    }
    if (row->mode != run->pattern.mode || row->alpha != run->pattern.alpha) {
        bneck_error_set(err, "%s was trained as %s:%d:%d, and this sweep's %s is %s:%d:%d", path,
                        run->pattern.name, row->mode, row->alpha, run->pattern.name,
                        run->pattern.name, run->pattern.mode, run->pattern.alpha);
        return 0;
    }
    /* made with other settings (copied from another sweep, or sweep.ini removed): files
     * from before the attribute have none, and are trusted as before */
    char *stored = bneck_malloc(CONFIG_MAX_TEXT);
    const int has_settings = run_file_settings(path, stored, CONFIG_MAX_TEXT, err);
    char difference[256];
    const int differs = has_settings > 0 && !sweep_output_same_settings(path, stored, s->settings,
                                                                        difference,
                                                                        sizeof difference);
    if (differs) bneck_error_set(err, "%s was made with other settings (%s)", path, difference);
    free(stored);
    return has_settings >= 0 && !differs;
}

/* Whether the checkpoint's position fits this sweep's epochs: an epoch in progress of fewer
 * steps than an epoch has, every image of those steps counted once in the ranks' sums, and
 * the step counter (Adam's bias correction follows it) the steps of the epochs done and of
 * the epoch in progress, so that a damaged one cannot silently change the resumed numbers.
 * Known once the data is loaded: a dry run (which does not load it) takes it on trust. err
 * says why not. */
static int checkpoint_position_fits(const sweep_state *s, const char *path,
                                    const run_checkpoint *c, bneck_error *err) {
    const long count = s->train_set.count, batch = s->cfg.batch;
    if (count <= 0) return 1;
    const long steps = (count + batch - 1) / batch;
    if (c->epoch_steps >= steps) {
        bneck_error_set(err, "%s: its checkpoint is at step %d of epoch %d, which has %ld steps",
                        path, c->epoch_steps, c->epochs_done + 1, steps);
        return 0;
    }
    if (c->epoch_steps > 0) {
        double seen = 0.0;
        for (int r = 0; r < c->epoch_ranks; r++)
            seen += c->epoch_sums[(size_t)r * EPOCH_SUMS + EPOCH_SUM_SEEN];
        const long images = (long)c->epoch_steps * batch < count ? (long)c->epoch_steps * batch : count;
        if (seen != (double)images) {
            bneck_error_set(err, "%s: its checkpoint's sums count %.0f images in the %d steps of epoch %d "
                            "taken, which hold %ld", path, seen, c->epoch_steps, c->epochs_done + 1, images);
            return 0;
        }
    }
    const long expected_step = (long)c->epochs_done * steps + c->epoch_steps;
    if (c->step != expected_step) {
        bneck_error_set(err, "%s: its checkpoint's step counter is %ld, expected %ld (%d epochs of "
                        "%ld steps, then %d steps)", path, c->step, expected_step, c->epochs_done,
                        steps, c->epoch_steps);
        return 0;
    }
    return 1;
}

/* What a run's file says without its checkpoint (weights are not read): FILE_RESUME here
 * means a run to continue whose checkpoint is still to be read. Row and history as for
 * sweep_classify_run_file; *history is malloc'ed only for a file that reads. */
static run_file_state classify_without_checkpoint(const sweep_state *s, const planned_run *run,
                                                  const char *path, run_row *row,
                                                  epoch_record **history, int *epochs,
                                                  const char **what, bneck_error *err) {
    struct stat info;
    *history = NULL;
    if (lstat(path, &info) != 0) {
        if (errno == ENOENT) return FILE_NONE;
        *what = "cannot look at it";
        return FILE_UNREACHABLE;
    }
    if (stat(path, &info) != 0) {
        *what = "cannot follow the link";
        return FILE_UNREACHABLE;
    }
    if (!S_ISREG(info.st_mode)) {
        /* a directory, a FIFO (whose open would wait for a writer forever), ... */
        bneck_error_set(err, "%s is not a regular file", path);
        return FILE_NOT_REGULAR;
    }
    const int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        *what = "cannot open";
        return FILE_UNREACHABLE;
    }
    close(fd);
    /* A complete or diverged run needs only its row and history: damage in weights or
     * checkpoint, which a kept run never reads, does not make it train again. */
    if (run_file_read(path, row, history, epochs, NULL, NULL, err) != 0 ||
        !is_this_run(s, run, path, row, err)) {
        free(*history);
        *history = NULL;
        return FILE_UNREADABLE;
    }
    if (!strcmp(row->status, RUN_STATUS_COMPLETE) && *epochs >= s->cfg.epochs) return FILE_COMPLETE;
    if (!strcmp(row->status, RUN_STATUS_DIVERGED)) return FILE_DIVERGED;
    return FILE_RESUME;
}

/* Reads what a decision needs: row and history (malloc'ed in *history when the run is
 * kept or continued), and the checkpoint (for m) of a run to continue. err says why a file
 * is not trusted; for FILE_UNREACHABLE, errno is set and *what says what failed. */
run_file_state sweep_classify_run_file(const sweep_state *s, const planned_run *run,
                                        const char *path, const model *m, run_row *row,
                                        epoch_record **history, int *epochs,
                                        run_checkpoint *checkpoint, const char **what,
                                        bneck_error *err) {
    const run_file_state state =
        classify_without_checkpoint(s, run, path, row, history, epochs, what, err);
    if (state != FILE_RESUME) return state;
    free(*history);
    *history = NULL;
    /* a run to continue: now with its weights and checkpoint */
    if (run_file_read(path, row, history, epochs, m, checkpoint, err) != 0)
        return FILE_BAD_CHECKPOINT;
    if (checkpoint->epochs_done != *epochs || *epochs >= s->cfg.epochs)
        bneck_error_set(err, "%s: its checkpoint (%d epochs) and history (%d epochs) disagree",
                        path, checkpoint->epochs_done, *epochs);
    else if (checkpoint_position_fits(s, path, checkpoint, err))
        return FILE_RESUME;
    run_checkpoint_free(checkpoint);
    free(*history);
    *history = NULL;
    return FILE_BAD_CHECKPOINT;
}

/* How many of the sweep's epochs a run's file holds: all of them for a kept run (complete
 * or diverged), its history's for one to continue, none where there is no file or one not
 * to be trusted (it would be moved aside). Reads no weights: for the sweep's time left. */
int sweep_run_file_epochs_held(const sweep_state *s, const planned_run *run) {
    char path[PATH_TEXT];
    sweep_run_path(s, run, path, sizeof path);
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    const char *what = "";
    bneck_error err;
    const run_file_state state =
        classify_without_checkpoint(s, run, path, &row, &history, &epochs, &what, &err);
    free(history);
    switch (state) {
    case FILE_COMPLETE:
    case FILE_DIVERGED: return s->cfg.epochs;
    case FILE_RESUME: return epochs < s->cfg.epochs ? epochs : s->cfg.epochs;
    default: return 0;
    }
}

/* The leader's decision on a run's file. A file that cannot be looked at (permissions,
 * I/O, a link to nothing) is not known to be damaged, so nothing is moved or retrained on
 * a guess: the whole sweep stops. One not to be trusted is moved aside, never deleted. */
run_start sweep_inspect_run_file(const sweep_state *s, const planned_run *run, const char *path,
                                  const model *m, run_row *row, epoch_record **history,
                                  int *epochs, run_checkpoint *checkpoint) {
    bneck_error err = {{0}};
    const char *what = "";
    switch (sweep_classify_run_file(s, run, path, m, row, history, epochs, checkpoint, &what, &err)) {
    case FILE_NONE: return RUN_FRESH;
    case FILE_RESUME: return RUN_RESUME;
    case FILE_COMPLETE: return RUN_COMPLETE;
    case FILE_DIVERGED: return RUN_DIVERGED;
    case FILE_UNREACHABLE:
        log_error("%s: %s: %s (left as it is; the sweep stops so that no finished work is "
                  "redone)", path, what, strerror(errno));
        sweep_world_abort((sweep_world *)&s->world, 1);
    case FILE_NOT_REGULAR:
    case FILE_UNREADABLE:
    case FILE_BAD_CHECKPOINT:
        break;
    }
    char stamp[32], aside[PATH_TEXT + 64];
    sweep_output_timestamp(stamp, sizeof stamp);
    snprintf(aside, sizeof aside, "%s.unreadable-%s", path, stamp);
    if (rename(path, aside) == 0)
        log_warn("%s; moved it to %s and the run starts over", err.message, aside);
    else
        log_warn("%s; could not move it aside (%s): the run starts over and will replace it",
                 err.message, strerror(errno));
    return RUN_FRESH;
}
