/* One run of a sweep on this rank's group: its file inspected (start, resume or keep),
 * its epochs trained, each committed by the group's leader before it is printed. */
#include "sweep/sweep_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_gemm.h"
#include "core/log.h"
#include "core/stop.h"
#include "core/timer.h"
#include "sweep/group.h"
#include "train/device_data.h"
#include "train/step_graph.h"
#include "train/train.h"

/* What the steps of a run share, from its file's inspection to its last commit. On the
 * heap: the model and the trainer are large. */
typedef struct run_session {
    const planned_run *run;
    int index;  /* in the plan: what the board shows */
    int leader; /* rank 0 of the group: inspects and commits the run file */
    char path[PATH_TEXT];
    config cfg; /* the sweep's, with the run's seed and pattern */
    model_spec spec;
    model built; /* what the run file is checked against and written from */
    run_row row;
    epoch_record *history; /* the leader's: every epoch so far, room for all */
    int epochs;            /* in history */
    run_checkpoint checkpoint;
    int steps_in_file;   /* of the epoch in progress, as the run file holds them */
    int steps_before;    /* of the epoch in progress, trained before this session */
    double committed_at; /* the leader's last commit (timer_now) */
    trainer trainer;
    int trainer_created;
    device_data *gpu_data;
    step_graph *graphs;
} run_session;

/* The run hand-out and progress board live in rank 0's memory (group.c). Some MPI
 * transports move one-sided operations only when the target rank calls MPI, and rank 0
 * may train a run of its own without one: it lets them progress at every step, so the
 * other groups never wait for its run to end to get their next one. A stop another group
 * posted there stops this one within a step or two (each leader looks at every step; the
 * trainer spreads it over the group). The trainer's stop hook takes no argument, hence the
 * file's pointer. */
static sweep_world *board_world;
static int stop_requested_with_progress(void) {
    if (board_world && board_world->rank == 0) sweep_poll(board_world);
    if (stop_requested()) return 1;
    return board_world && board_world->groups > 1 && board_world->group_rank == 0 &&
           sweep_board_stop_seen(board_world);
}

/* The leader's clock for commits within an epoch ([run] commit_minutes), once a step was
 * trained since the file was written: the other ranks follow its decision (the trainer
 * takes the largest over the group). */
static int run_session_commit_due(void *context) {
    const run_session *r = context;
    const double minutes = r->cfg.commit_minutes;
    return r->leader && minutes > 0 && r->trainer.progress.steps > r->steps_in_file &&
           timer_now() - r->committed_at >= 60.0 * minutes;
}

/* The trainer's weights in host memory (malloc'ed). */
static float *download_params(const trainer *t) {
    const size_t bytes = t->net.model.param_count * sizeof(float);
    float *params = bneck_malloc(bytes + 1);
    t->net.backend->download(params, t->net.params, bytes);
    return params;
}

/* Data parallelism must leave every rank of a run with the same weights, bit for bit.
 * Checked on the weights in host memory before each commit, so that a run failing it is
 * never recorded (diverged weights hold NaNs, whose bits need not agree: not checked then).
 * `moment` says when, for the message ("after epoch 3"). Collective in the group. */
static void check_group_weights_agree(sweep_state *s, const run_session *r, const float *params,
                                      const char *moment) {
    if (s->world.group_size < 2) return;
    const size_t bytes = r->trainer.net.model.param_count * sizeof(float);
    if (!sweep_group_holds_same(&s->world, params, bytes)) {
        log_error("%s: the ranks of the run hold different weights %s: nothing is committed, "
                  "and the sweep stops", r->run->name, moment);
        sweep_world_abort(&s->world, 1);
    }
}

static void checkpoint_alloc(run_checkpoint *c, const model *m) {
    c->param_count = m->param_count;
    c->state_count = m->state_count;
    c->params = bneck_malloc(m->param_count * sizeof(float));
    c->adam_m = bneck_malloc(m->param_count * sizeof(float));
    c->adam_v = bneck_malloc(m->param_count * sizeof(float));
    c->state = bneck_malloc((m->state_count ? m->state_count : 1) * sizeof(float));
}

static void checkpoint_export(run_checkpoint *c, const trainer *t) {
    const backend_ops *be = t->net.backend;
    be->download(c->params, t->net.params, c->param_count * sizeof(float));
    be->download(c->adam_m, t->adam_m, c->param_count * sizeof(float));
    be->download(c->adam_v, t->adam_v, c->param_count * sizeof(float));
    be->download(c->state, t->net.state, c->state_count * sizeof(float));
    c->step = t->step;
    c->epochs_done = t->epochs_done;
    c->cpu_threads = be == &cpu_backend ? cpu_threads() : 0;
    /* at the epoch's start: checkpoint_export_progress adds a part-way epoch's progress */
    free(c->epoch_sums);
    free(c->epoch_states);
    c->epoch_sums = NULL;
    c->epoch_states = NULL;
    c->epoch_steps = c->epoch_ranks = 0;
    memset(c->epoch_seconds, 0, sizeof c->epoch_seconds);
}

/* The epoch in progress as the checkpoint holds it: each rank its own sums. On another
 * rank count than the one that stopped (not a resume the sweep makes: ranks_per_run is
 * among the settings a run file must match) the first rank takes all of them. The running
 * statistics: see checkpoint_import. */
static void epoch_progress_import(epoch_progress *p, const run_checkpoint *c, int rank, int ranks) {
    memset(p, 0, sizeof *p);
    if (c->epoch_steps == 0) return;
    p->steps = c->epoch_steps;
    double seen = 0.0; /* the reader checked the rows' total against the epoch's images */
    for (int r = 0; r < c->epoch_ranks; r++) {
        if (c->epoch_ranks == ranks ? r != rank : rank != 0) continue;
        const double *row = c->epoch_sums + (size_t)r * EPOCH_SUMS;
        p->loss_sum += row[EPOCH_SUM_LOSS];
        p->correct += row[EPOCH_SUM_CORRECT];
        seen += row[EPOCH_SUM_SEEN];
    }
    p->seen = (int)seen;
    p->train_s = c->epoch_seconds[EPOCH_SECONDS_TRAIN];
    p->compute_s = c->epoch_seconds[EPOCH_SECONDS_COMPUTE];
    p->allreduce_s = c->epoch_seconds[EPOCH_SECONDS_ALLREDUCE];
    p->data_s = c->epoch_seconds[EPOCH_SECONDS_DATA];
}

/* The checkpoint into a rank's trainer. Part-way through an epoch each rank takes its own
 * running statistics, as it had them; on another rank count, the first rank's. */
static void checkpoint_import(trainer *t, const run_checkpoint *c) {
    const backend_ops *be = t->net.backend;
    const int rank = t->comm.rank, ranks = t->comm.ranks > 1 ? t->comm.ranks : 1;
    const float *state = c->epoch_steps > 0 && c->epoch_ranks == ranks
                             ? c->epoch_states + (size_t)rank * c->state_count
                             : c->state;
    be->upload(t->net.params, c->params, c->param_count * sizeof(float));
    be->upload(t->adam_m, c->adam_m, c->param_count * sizeof(float));
    be->upload(t->adam_v, c->adam_v, c->param_count * sizeof(float));
    be->upload(t->net.state, state, c->state_count * sizeof(float));
    t->step = c->step;
    t->epochs_done = c->epochs_done;
    epoch_progress_import(&t->progress, c, rank, ranks);
}

static void print_epoch(const planned_run *run, int epochs, const epoch_record *r) {
    printf("[%s] epoch %3d/%d  lr %.0e  train %.4f %6.2f%%  val %.4f %6.2f%%  %7.2f s  %7.1f img/s\n",
           run->name, r->epoch, epochs, r->lr, r->train_loss, 100 * r->train_acc, r->val_loss,
           100 * r->val_acc, r->epoch_s, r->images_per_s);
    fflush(stdout);
}

static void fill_row_identity(const sweep_state *s, const planned_run *run, run_row *row) {
    memset(row, 0, sizeof *row);
    snprintf(row->pattern, sizeof row->pattern, "%s", run->pattern.name);
    row->mode = run->pattern.mode;
    row->alpha = run->pattern.alpha;
    row->repeat = run->repeat;
    row->seed = run->seed;
    row->ranks = s->world.group_size;
    row->params = run->params;
    row->pseudo_flops = run->pseudo_flops;
    row->macs = run->macs;
    snprintf(row->devices, sizeof row->devices, "%s x%d", s->device_model, s->world.group_size);
    snprintf(row->hosts, sizeof row->hosts, "%s", s->group_hosts);
}

/* The run's model built, and what its file says, as the leader decided and told the group. */
static run_start run_session_open(run_session *r, sweep_state *s, int index) {
    r->run = &s->plan.runs[index];
    r->index = index;
    r->leader = s->world.group_rank == 0;
    sweep_run_path(s, r->run, r->path, sizeof r->path);
    r->cfg = s->cfg;
    r->cfg.seed = r->run->seed;
    r->cfg.mode = r->run->pattern.mode;
    r->cfg.alpha = r->run->pattern.alpha;
    r->spec = (model_spec){r->run->pattern.mode, r->run->pattern.alpha, s->train_set.channels,
                           s->cfg.pool_branch, MODEL_LAYERS_GROUPED};
    bneck_error err;
    if (model_build(&r->built, &r->spec, &err)) {
        log_error("%s: %s", r->run->name, err.message);
        sweep_world_abort(&s->world, 1);
    }
    int start = RUN_FRESH;
    if (r->leader)
        start = (int)sweep_inspect_run_file(s, r->run, r->path, &r->built, &r->row, &r->history,
                                            &r->epochs, &r->checkpoint);
    sweep_group_broadcast(&s->world, &start, sizeof start);
    return (run_start)start;
}

static void run_session_report_kept(const run_session *r, run_start start) {
    if (!r->leader) return;
    if (start == RUN_COMPLETE)
        printf("[%s] already complete in %s: kept\n", r->run->name, r->path);
    else
        printf("[%s] diverged after %d epochs in an earlier session (%s): kept, not trained "
               "again (move the file away to retrain it)\n", r->run->name, r->epochs, r->path);
}

/* The trainer, with the data in GPU memory and the step graphs where the backend has them. */
static void run_session_start_trainer(run_session *r, sweep_state *s) {
    bneck_error err;
    train_comm comm = sweep_comm_of_group(&s->world);
    if (trainer_create(&r->trainer, &r->cfg, &r->spec, &s->train_set, &s->val_set, s->backend,
                       &comm, &err)) {
        log_error("%s: %s", r->run->name, err.message);
        sweep_world_abort(&s->world, 1);
    }
    r->trainer_created = 1;
    char data_message[512];
    r->gpu_data = device_data_attach(&r->trainer, data_message, sizeof data_message);
    if (!r->gpu_data && data_message[0]) {
        log_error("%s: %s", r->run->name, data_message);
        sweep_world_abort(&s->world, 1);
    }
    r->graphs = step_graph_attach(&r->trainer, (step_graph_mode)step_graph_mode_from_name(s->cfg.graph));
    board_world = &s->world;
    r->trainer.stop_requested = stop_requested_with_progress;
    r->trainer.commit_due = run_session_commit_due;
    r->trainer.commit_context = r;
    r->committed_at = timer_now();
    r->trainer.label = r->run->name;
}

/* The leader's checkpoint sent to the group and loaded into every rank's trainer. */
static void run_session_resume(run_session *r, sweep_state *s) {
    sweep_world *w = &s->world;
    run_checkpoint *c = &r->checkpoint;
    if (!r->leader) checkpoint_alloc(c, &r->built);
    sweep_group_broadcast(w, c->params, r->built.param_count * sizeof(float));
    sweep_group_broadcast(w, c->adam_m, r->built.param_count * sizeof(float));
    sweep_group_broadcast(w, c->adam_v, r->built.param_count * sizeof(float));
    sweep_group_broadcast(w, c->state, r->built.state_count * sizeof(float));
    sweep_group_broadcast(w, &c->step, sizeof c->step);
    sweep_group_broadcast(w, &c->epochs_done, sizeof c->epochs_done);
    sweep_group_broadcast(w, &c->epoch_steps, sizeof c->epoch_steps);
    sweep_group_broadcast(w, &c->epoch_ranks, sizeof c->epoch_ranks);
    sweep_group_broadcast(w, c->epoch_seconds, sizeof c->epoch_seconds);
    if (c->epoch_steps > 0) {
        const size_t sum_bytes = (size_t)c->epoch_ranks * EPOCH_SUMS * sizeof(double);
        const size_t state_bytes = (size_t)c->epoch_ranks * c->state_count * sizeof(float);
        if (!r->leader) {
            c->epoch_sums = bneck_malloc(sum_bytes);
            c->epoch_states = bneck_malloc(state_bytes + 1);
        }
        sweep_group_broadcast(w, c->epoch_sums, sum_bytes);
        sweep_group_broadcast(w, c->epoch_states, state_bytes);
    }
    checkpoint_import(&r->trainer, c);
    r->steps_in_file = r->steps_before = c->epoch_steps;
    if (!r->leader) return;
    if (c->epoch_steps > 0)
        printf("[%s] resuming after epoch %d, at step %d/%d of epoch %d, from %s\n", r->run->name,
               r->trainer.epochs_done, c->epoch_steps, trainer_steps_per_epoch(&r->trainer),
               r->trainer.epochs_done + 1, r->path);
    else
        printf("[%s] resuming after epoch %d from %s\n", r->run->name, r->trainer.epochs_done,
               r->path);
    if (c->cpu_threads && s->backend == &cpu_backend && c->cpu_threads != cpu_threads())
        log_warn("%s continues on %d CPU thread(s) per rank where its epochs so far used %d: "
                 "its sums now run in another order, so its numbers will differ slightly "
                 "from an uninterrupted run's (set [run] threads to keep them bit for bit)",
                 r->run->name, cpu_threads(), c->cpu_threads);
}

/* The leader's write of the run file, whole (weights, optimizer state, history), under a
 * temporary name and renamed; the checkpoint already exported. */
static void run_session_write(run_session *r, sweep_state *s, const char *status) {
    fill_row_identity(s, r->run, &r->row);
    run_row_summarise(&r->row, r->history, r->epochs);
    snprintf(r->row.status, sizeof r->row.status, "%s", status);
    bneck_error err;
    if (run_file_write(r->path, &r->row, r->history, r->epochs, &r->built, &r->checkpoint,
                       s->cfg.text, s->settings, &err)) {
        log_error("%s: cannot commit the run: %s", r->run->name, err.message);
        sweep_world_abort(&s->world, 1);
    }
}

/* The leader's commit of an epoch: the run file written, then the epoch printed, so that
 * a printed epoch is always kept. */
static void run_session_commit(run_session *r, sweep_state *s, const epoch_record *record,
                               int diverged) {
    r->history[r->epochs++] = *record;
    r->committed_at = timer_now();
    checkpoint_export(&r->checkpoint, &r->trainer);
    run_session_write(r, s,
                      diverged                     ? RUN_STATUS_DIVERGED
                      : r->epochs == s->cfg.epochs ? RUN_STATUS_COMPLETE
                                                   : RUN_STATUS_RUNNING);
    print_epoch(r->run, s->cfg.epochs, record);
    if (diverged)
        log_error("%s diverged in epoch %d (training loss %g, validation loss %g): it stops "
                  "there and is kept with status '%s'; a lower learning rate ([train] lr) "
                  "usually helps", r->run->name, record->epoch, record->train_loss,
                  record->val_loss, RUN_STATUS_DIVERGED);
    sweep_board_post(&s->world, r->index, r->trainer.epochs_done);
    /* After a run's last epoch the sweep loop reports, with the new run count. */
    if (s->world.rank == 0 && r->trainer.epochs_done < s->cfg.epochs) {
        sweep_print_progress(s);
        sweep_merge_if_runs_finished(s); /* other groups' runs */
    }
}

/* The leader's checkpoint of the epoch so far: exported there, with every rank's sums and
 * running statistics gathered into it. Collective in the group. */
static void checkpoint_export_progress(run_session *r, sweep_state *s) {
    trainer *t = &r->trainer;
    const epoch_progress *p = &t->progress;
    const int ranks = s->world.group_size;
    const size_t state_count = t->net.model.state_count;
    const double sums[EPOCH_SUMS] = {p->loss_sum, p->correct, p->seen};
    float *state = bneck_malloc((state_count + 1) * sizeof(float));
    t->net.backend->download(state, t->net.state, state_count * sizeof(float));
    run_checkpoint *c = &r->checkpoint;
    if (r->leader) {
        checkpoint_export(c, t);
        c->epoch_steps = p->steps;
        c->epoch_ranks = ranks;
        c->epoch_sums = bneck_malloc((size_t)ranks * sizeof sums);
        c->epoch_states = bneck_malloc(((size_t)ranks * state_count + 1) * sizeof(float));
        c->epoch_seconds[EPOCH_SECONDS_TRAIN] = p->train_s;
        c->epoch_seconds[EPOCH_SECONDS_COMPUTE] = p->compute_s;
        c->epoch_seconds[EPOCH_SECONDS_ALLREDUCE] = p->allreduce_s;
        c->epoch_seconds[EPOCH_SECONDS_DATA] = p->data_s;
    }
    sweep_group_gather(&s->world, sums, c->epoch_sums, sizeof sums);
    sweep_group_gather(&s->world, state, c->epoch_states, state_count * sizeof(float));
    free(state);
}

/* Whether this rank's weights (params, in host memory) or its epoch's loss so far are no
 * longer finite. */
static int progress_not_finite(const trainer *t, const float *params) {
    if (!isfinite(t->progress.loss_sum)) return 1;
    for (size_t i = 0; i < t->net.model.param_count; i++)
        if (!isfinite(params[i])) return 1;
    return 0;
}

/* The leader's line for a run stopped at an epoch's start (a stop during the last epoch's
 * validation, or read on the board after it): where the run goes on from. */
static void report_stop_between_epochs(const run_session *r, const sweep_state *s) {
    if (!r->leader) return;
    const int done = r->trainer.epochs_done;
    if (done == 0)
        printf("[%s] stopped before its first step: nothing to commit; it starts at epoch 1 "
               "when the sweep resumes\n", r->run->name);
    else
        printf("[%s] stopped after epoch %d/%d: committed to %s, where it resumes at epoch %d\n",
               r->run->name, done, s->cfg.epochs, r->path, done + 1);
    fflush(stdout);
}

/* An epoch paused part-way, by a stop or because a commit is due: its steps so far
 * committed with the weights they made, so that a resumed run goes on from there instead
 * of training them again (an epoch of pattern A on a CPU takes minutes). Nothing is
 * written when no step was taken since the file was written, or when the numbers are no
 * longer finite (a stopped run then resumes from its last commit; a paused one goes on,
 * and its epoch ends as diverged). Collective in the group. */
static void run_session_save_progress(run_session *r, sweep_state *s, epoch_pause pause) {
    const trainer *t = &r->trainer;
    const epoch_progress *p = &t->progress;
    const int epoch = t->epochs_done + 1;
    r->committed_at = timer_now(); /* tried: not again at the next step */
    if (p->steps == r->steps_in_file) {
        if (pause == EPOCH_STOP && p->steps == 0) report_stop_between_epochs(r, s);
        else if (r->leader && pause == EPOCH_STOP)
            printf("[%s] stopped at step %d/%d of epoch %d, committed to %s already\n",
                   r->run->name, p->steps, trainer_steps_per_epoch(t), epoch, r->path);
        return;
    }
    /* every rank asks, before the weight comparison: NaN bits need not agree */
    float *params = download_params(t);
    if (sweep_group_any(&s->world, progress_not_finite(t, params))) {
        if (r->leader && pause == EPOCH_STOP)
            log_warn("%s: the %d steps of epoch %d so far are not committed: the loss or the "
                     "weights are no longer finite; the run resumes from its last commit",
                     r->run->name, p->steps, epoch);
        free(params);
        return;
    }
    char moment[64];
    snprintf(moment, sizeof moment, "at step %d of epoch %d", p->steps, epoch);
    check_group_weights_agree(s, r, params, moment);
    free(params);
    checkpoint_export_progress(r, s);
    r->steps_in_file = p->steps;
    if (!r->leader) return;
    run_session_write(r, s, RUN_STATUS_RUNNING);
    if (pause == EPOCH_STOP)
        printf("[%s] stopped at step %d/%d of epoch %d: committed to %s, where it resumes\n",
               r->run->name, p->steps, trainer_steps_per_epoch(t), epoch, r->path);
    else
        printf("[%s] step %d/%d of epoch %d committed to %s ([run] commit_minutes = %g)\n",
               r->run->name, p->steps, trainer_steps_per_epoch(t), epoch, r->path,
               r->cfg.commit_minutes);
    fflush(stdout);
}

/* Epochs until the run is done or diverges, or a stop: this rank's signal or another
 * group's, read on the board (at a step: the epoch's steps so far are committed; or after
 * an epoch, once it is committed). A long epoch pauses for a commit every [run]
 * commit_minutes. Returns 1 when stopped. */
static int run_session_train(run_session *r, sweep_state *s) {
    sweep_world *w = &s->world;
    trainer *t = &r->trainer;
    const int64_t steps = trainer_steps_per_epoch(t);
    int diverged = 0;
    while (t->epochs_done < s->cfg.epochs && !diverged) {
        if (r->leader) sweep_board_post(w, r->index, t->epochs_done);
        epoch_record record;
        const epoch_pause pause = trainer_run_epoch(t, &record);
        if (pause != EPOCH_GO_ON) {
            run_session_save_progress(r, s, pause);
            if (pause == EPOCH_STOP) return 1;
            continue; /* the same epoch, on from its committed step */
        }
        /* this session's share of the epoch, for the sweep's time left */
        if (r->leader)
            sweep_board_add_trained(w, r->run->pseudo_flops * (steps - r->steps_before) / steps);
        r->steps_in_file = r->steps_before = 0; /* once committed below */
        diverged = sweep_group_any(w, epoch_record_diverged(&record));
        if (!diverged && w->group_size > 1) {
            char moment[32];
            snprintf(moment, sizeof moment, "after epoch %d", t->epochs_done);
            float *params = download_params(t);
            check_group_weights_agree(s, r, params, moment);
            free(params);
        }
        const int others_stopped = sweep_group_any(w, r->leader && sweep_board_stop_posted(w));
        if (r->leader) run_session_commit(r, s, &record, diverged);
        if (others_stopped && !diverged && t->epochs_done < s->cfg.epochs) {
            report_stop_between_epochs(r, s);
            return 1;
        }
    }
    return 0;
}

static void run_session_close(run_session *r) {
    board_world = NULL;
    if (r->trainer_created) {
        step_graph_release(r->graphs);
        device_data_release(r->gpu_data);
        trainer_destroy(&r->trainer);
    }
    run_checkpoint_free(&r->checkpoint);
    free(r->history);
}

run_end sweep_train_run(sweep_state *s, int index) {
    run_session *r = bneck_calloc(1, sizeof *r);
    const run_start start = run_session_open(r, s, index);
    int stopped = 0;
    const int kept = start == RUN_COMPLETE || start == RUN_DIVERGED;
    if (kept) {
        run_session_report_kept(r, start);
    } else {
        run_session_start_trainer(r, s);
        if (start == RUN_RESUME) run_session_resume(r, s);
        else checkpoint_alloc(&r->checkpoint, &r->built);
        if (r->leader) {
            if (start != RUN_RESUME) r->epochs = 0;
            r->history = bneck_realloc(r->history, (size_t)s->cfg.epochs * sizeof *r->history);
        }
        stopped = run_session_train(r, s);
    }
    run_session_close(r);
    free(r);
    return stopped ? RUN_ENDED_STOPPED : kept ? RUN_ENDED_KEPT : RUN_ENDED_FINISHED;
}
