#include "sweep/sweep.h"
#include "sweep/sweep_state.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/log.h"
#include "core/stop.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "results/results.h"
#include "sweep/group.h"
#include "sweep/output.h"
#include "sweep/plan.h"
#include "train/device_data.h"
#include "train/step_graph.h"
#ifdef BNECK_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_nccl.h"
#endif


/* ---------------------------------------------------------------------------------- */
/* NCCL for the groups of a GPU sweep: gradients live in device memory, so the group's    */
/* allreduce goes through NCCL (one communicator per group, its id sent over MPI).         */

#ifdef BNECK_HAVE_CUDA
static cuda_nccl_comm *group_nccl;
static sweep_world *nccl_world;

static void nccl_allreduce_sum_float(void *context, float *buffer, size_t count) {
    (void)context;
    if (cuda_nccl_allreduce_sum(group_nccl, buffer, count)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

/* Gradient parts summed while the backward pass goes on (train_comm's queue/join). */
static void nccl_allreduce_queue_float(void *context, float *buffer, size_t count) {
    (void)context;
    if (cuda_nccl_allreduce_queue(group_nccl, buffer, count, CUDA_NCCL_SUM)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

static void nccl_allreduce_join(void *context) {
    (void)context;
    if (cuda_nccl_wait(group_nccl)) {
        log_error("%s", cuda_nccl_last_error(group_nccl));
        sweep_world_abort(nccl_world, 1);
    }
}

/* Collective over the group; aborts the job naming the rank when NCCL cannot start. A
 * group trains on one kind of device, since its gradient sums are NCCL's or MPI's: with
 * device = auto, a rank that found no usable GPU where the others did would otherwise leave
 * them waiting in collectives it never joins. */
static void nccl_setup(sweep_state *s) {
    sweep_world *w = &s->world;
    if (w->group_size < 2) return;
    const int on_gpu = s->backend == &cuda_backend;
    uint64_t fewest_on_gpu, most_on_gpu;
    sweep_group_min_max(w, (uint64_t)on_gpu, &fewest_on_gpu, &most_on_gpu);
    if (fewest_on_gpu != most_on_gpu) {
        log_error("run group %d has ranks on GPUs and ranks on CPUs (this one: %s); a group "
                  "trains on one kind of device: give every rank of a group a usable GPU, or "
                  "set run.device = cpu", w->group, on_gpu ? "a GPU" : "the CPU");
        sweep_world_abort(w, 1);
    }
    if (!on_gpu) return;
    unsigned char id[CUDA_NCCL_UNIQUE_ID_BYTES] = {0};
    char message[512] = "";
    int failed = w->group_rank == 0 && cuda_nccl_unique_id(id, message, sizeof message);
    if (failed) log_error("NCCL: %s", message);
    if (sweep_group_any(w, failed)) sweep_world_abort(w, 1);
    sweep_group_broadcast(w, id, sizeof id);
    if (cuda_nccl_comm_create(&group_nccl, w->group_rank, w->group_size, id, message, sizeof message)) {
        log_error("NCCL: %s", message);
        sweep_world_abort(w, 1);
    }
    nccl_world = w;
}

static void nccl_teardown(void) {
    if (group_nccl) cuda_nccl_comm_destroy(group_nccl);
    group_nccl = NULL;
}

static train_comm run_group_comm(sweep_world *w) {
    train_comm comm = sweep_group_comm(w);
    if (group_nccl) {
        comm.allreduce_sum_float = nccl_allreduce_sum_float;
        comm.allreduce_queue_float = nccl_allreduce_queue_float;
        comm.allreduce_join = nccl_allreduce_join;
    }
    return comm;
}
#else
static void nccl_setup(sweep_state *s) { (void)s; }
static void nccl_teardown(void) {}
static train_comm run_group_comm(sweep_world *w) { return sweep_group_comm(w); }
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: bneck-sweep CONFIG.ini [section.key=value ...] [--device auto|cpu|cuda]\n"
            "                   [--dry-run] [--restart] [--stop-signal NAME]\n"
            "Runs every (pattern, repeat) of the config's [sweep] over the MPI ranks, in groups\n"
            "of [sweep] ranks_per_run (data parallel inside a group), committing each run to\n"
            "OUTPUT/runs/<pattern>-r<repeat>.h5 and merging OUTPUT/sweep.h5 at the end.\n"
            "Running the same command again resumes: finished runs are kept, unfinished ones\n"
            "continue from their last epoch.\n"
            "  --device D      run.device=D: auto (a GPU when one is usable, else the CPU,\n"
            "                  saying why), cpu, or cuda (fails when no GPU is usable)\n"
            "  --dry-run       print the plan (runs, seeds, what the output holds of each, groups,\n"
            "                  hosts, devices) and stop\n"
            "  --restart       move an existing OUTPUT aside (never deleted) and start over\n"
            "  --stop-signal S extra signal that stops the sweep cleanly (default USR2;\n"
            "                  TERM and INT always do); exit status %d means stopped, resumable\n",
            BNECK_EXIT_STOPPED);
}

static int signal_from_name(const char *name) {
    if (!strncmp(name, "SIG", 3)) name += 3;
    static const struct { const char *name; int number; } known[] = {
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT},
        {"HUP", SIGHUP}, {"QUIT", SIGQUIT}, {"XCPU", SIGXCPU}, {"ALRM", SIGALRM},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i].name)) return known[i].number;
    return -1;
}

/* Whether an override sets [run] output. */
static int output_given(const sweep_options *o) {
    for (int i = 0; i < o->override_count; i++)
        if (config_override_sets(o->overrides[i], "run", "output")) return 1;
    return 0;
}

static int parse_options(sweep_options *o, int argc, char **argv, bneck_error *err) {
    memset(o, 0, sizeof *o);
    o->stop_signal = SIGUSR2;
    o->overrides = bneck_calloc((size_t)argc, sizeof *o->overrides);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const config_argument kind = config_argument_kind(a);
        const int device = config_device_option(argc, argv, &i, o->device_override,
                                                sizeof o->device_override, err);
        if (device < 0) return -1;
        if (device) o->overrides[o->override_count++] = o->device_override;
        else if (!strcmp(a, "--dry-run")) o->dry_run = 1;
        else if (!strcmp(a, "--restart")) o->restart = 1;
        else if (!strcmp(a, "--stop-signal")) {
            if (i + 1 >= argc || (o->stop_signal = signal_from_name(argv[i + 1])) < 0)
                return bneck_error_set(err, "--stop-signal expects a signal name (USR1, USR2, "
                                            "TERM, INT, HUP, QUIT, XCPU, ALRM), got '%s'",
                                       i + 1 < argc ? argv[i + 1] : "");
            i++;
        } else if (kind == CONFIG_ARGUMENT_OVERRIDE)
            o->overrides[o->override_count++] = a;
        else if (kind == CONFIG_ARGUMENT_OPTION)
            return bneck_error_set(err, "unknown option '%s' (see --help)", a);
        else if (!o->config_path) o->config_path = a;
        else return bneck_error_set(err, "unexpected argument '%s': one config file, then "
                                         "section.key=value overrides", a);
    }
    if (!o->config_path) return bneck_error_set(err, "no config file given (see --help)");
    return 0;
}

static void format_duration(double seconds, char *out, size_t capacity) {
    const long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, capacity, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60) snprintf(out, capacity, "%ldm%02lds", s / 60, s % 60);
    else snprintf(out, capacity, "%lds", s);
}

/* ---------------------------------------------------------------------------------- */
/* One run.                                                                            */


/* FNV-1a: for comparing what ranks hold (weights, settings, data), not for security. */
enum { FNV_START = 0 };
static uint64_t hash_bytes(uint64_t hash, const void *data, size_t bytes) {
    if (hash == FNV_START) hash = 1469598103934665603ULL;
    const unsigned char *byte = data;
    for (size_t i = 0; i < bytes; i++) hash = (hash ^ byte[i]) * 1099511628211ULL;
    return hash;
}

/* Data parallelism must leave every rank of a run with the same weights, bit for bit.
 * Checked before each epoch is committed, so that a run failing it is never recorded
 * (diverged weights hold NaNs, whose bits need not agree: not checked then). Collective
 * in the group. */
static void check_group_weights_agree(sweep_state *s, const trainer *t, const planned_run *run) {
    if (s->world.group_size < 2) return;
    const size_t count = t->net.model.param_count;
    float *params = bneck_malloc(count * sizeof(float));
    s->backend->download(params, t->net.params, count * sizeof(float));
    uint64_t lowest, highest;
    sweep_group_min_max(&s->world, hash_bytes(FNV_START, params, count * sizeof(float)), &lowest,
                        &highest);
    free(params);
    if (lowest != highest) {
        log_error("%s: the ranks of the run hold different weights after epoch %d: the epoch is "
                  "not committed, and the sweep stops", run->name, t->epochs_done);
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
}

static void checkpoint_import(trainer *t, const run_checkpoint *c) {
    const backend_ops *be = t->net.backend;
    be->upload(t->net.params, c->params, c->param_count * sizeof(float));
    be->upload(t->adam_m, c->adam_m, c->param_count * sizeof(float));
    be->upload(t->adam_v, c->adam_v, c->param_count * sizeof(float));
    be->upload(t->net.state, c->state, c->state_count * sizeof(float));
    t->step = c->step;
    t->epochs_done = c->epochs_done;
}

static void print_epoch(const planned_run *run, int epochs, const epoch_record *r) {
    printf("[%s] epoch %3d/%d  lr %.0e  train %.4f %6.2f%%  val %.4f %6.2f%%  %7.2f s  %7.1f img/s\n",
           run->name, r->epoch, epochs, r->lr, r->train_loss, 100 * r->train_acc, r->val_loss,
           100 * r->val_acc, r->epoch_s, r->images_per_s);
    fflush(stdout);
}

static void print_sweep_progress(sweep_state *s) {
    if (s->world.rank != 0) return;
    const int groups = s->world.groups;
    int *run_index = bneck_malloc((size_t)groups * sizeof(int));
    int *epoch = bneck_malloc((size_t)groups * sizeof(int));
    long done = 0, next_ticket = 0;
    sweep_board_read(&s->world, run_index, epoch, &done, &next_ticket);
    /* Work left, in epoch-FLOPs: runs not handed out yet plus the unfinished epochs of
     * those in progress; the rate comes from this session's elapsed time. */
    const double per_run = (double)s->cfg.epochs;
    double left = 0.0, total = 0.0;
    for (int i = 0; i < s->plan.count; i++) {
        total += per_run * (double)s->plan.runs[i].pseudo_flops;
        if (i >= next_ticket) left += per_run * (double)s->plan.runs[i].pseudo_flops;
    }
    char line[2048];
    int used = snprintf(line, sizeof line, "sweep: %ld/%d runs done", done, s->plan.count);
    for (int g = 0; g < groups && used < (int)sizeof line - 64; g++) {
        if (run_index[g] < 0 || run_index[g] >= s->plan.count) continue;
        left += (per_run - epoch[g]) * (double)s->plan.runs[run_index[g]].pseudo_flops;
        used += snprintf(line + used, sizeof line - (size_t)used, "; group %d: %s epoch %d/%d", g,
                         s->plan.runs[run_index[g]].name, epoch[g], s->cfg.epochs);
    }
    const double elapsed = timer_now() - s->started;
    char elapsed_text[32], left_text[32] = "?";
    format_duration(elapsed, elapsed_text, sizeof elapsed_text);
    if (total > left && left >= 0) format_duration(elapsed * left / (total - left), left_text, sizeof left_text);
    log_info("%s; elapsed %s, about %s left", line, elapsed_text, left_text);
    free(run_index);
    free(epoch);
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

/* The run hand-out and progress board live in rank 0's memory (group.c). Some MPI
 * transports move one-sided operations only when the target rank calls MPI, and rank 0
 * may train a run of its own without one: it lets them progress at every step, so the
 * other groups never wait for its run to end to get their next one. */
static sweep_world *board_world;
static int stop_requested_with_progress(void) {
    if (board_world && board_world->rank == 0) sweep_poll(board_world);
    return stop_requested();
}

/* Trains (or resumes, or skips) one run on this group. Returns 1 when stopped. */
static int run_one(sweep_state *s, int index) {
    const planned_run *run = &s->plan.runs[index];
    sweep_world *w = &s->world;
    const int leader = w->group_rank == 0;
    char path[PATH_TEXT];
    sweep_run_path(s, run, path, sizeof path);

    static config run_cfg;
    run_cfg = s->cfg;
    run_cfg.seed = run->seed;
    run_cfg.mode = run->pattern.mode;
    run_cfg.alpha = run->pattern.alpha;
    model_spec spec = {run->pattern.mode, run->pattern.alpha, s->train_set.channels,
                       s->cfg.pool_branch, MODEL_LAYERS_GROUPED};
    static model built;
    bneck_error err;
    if (model_build(&built, &spec, &err)) {
        log_error("%s: %s", run->name, err.message);
        sweep_world_abort(w, 1);
    }

    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    run_checkpoint checkpoint = {0};
    int start = RUN_FRESH;
    if (leader)
        start = (int)sweep_inspect_run_file(s, run, path, &built, &row, &history, &epochs, &checkpoint);
    sweep_group_broadcast(w, &start, sizeof start);
    if (start == RUN_COMPLETE || start == RUN_DIVERGED) {
        if (leader && start == RUN_COMPLETE)
            printf("[%s] already complete in %s: kept\n", run->name, path);
        else if (leader)
            printf("[%s] diverged after %d epochs in an earlier session (%s): kept, not "
                   "trained again (move the file away to retrain it)\n", run->name, epochs, path);
        free(history);
        run_checkpoint_free(&checkpoint);
        return 0;
    }

    static trainer t;
    train_comm comm = run_group_comm(w);
    if (trainer_create(&t, &run_cfg, &spec, &s->train_set, &s->val_set, s->backend, &comm, &err)) {
        log_error("%s: %s", run->name, err.message);
        sweep_world_abort(w, 1);
    }
    char data_message[512];
    device_data *gpu_data = device_data_attach(&t, data_message, sizeof data_message);
    if (!gpu_data && data_message[0]) {
        log_error("%s: %s", run->name, data_message);
        sweep_world_abort(w, 1);
    }
    step_graph *graphs = step_graph_attach(&t, (step_graph_mode)step_graph_mode_from_name(s->cfg.graph));
    t.stop_requested = stop_requested_with_progress;
    t.label = run->name;
    if (start == RUN_RESUME) {
        if (!leader) checkpoint_alloc(&checkpoint, &built);
        sweep_group_broadcast(w, checkpoint.params, built.param_count * sizeof(float));
        sweep_group_broadcast(w, checkpoint.adam_m, built.param_count * sizeof(float));
        sweep_group_broadcast(w, checkpoint.adam_v, built.param_count * sizeof(float));
        sweep_group_broadcast(w, checkpoint.state, built.state_count * sizeof(float));
        sweep_group_broadcast(w, &checkpoint.step, sizeof checkpoint.step);
        sweep_group_broadcast(w, &checkpoint.epochs_done, sizeof checkpoint.epochs_done);
        checkpoint_import(&t, &checkpoint);
        if (leader) printf("[%s] resuming after epoch %d from %s\n", run->name, t.epochs_done, path);
        if (leader && checkpoint.cpu_threads && s->backend == &cpu_backend &&
            checkpoint.cpu_threads != cpu_threads())
            log_warn("%s continues on %d CPU thread(s) per rank where its epochs so far used %d: "
                     "its sums now run in another order, so its numbers will differ slightly "
                     "from an uninterrupted run's (set [run] threads to keep them bit for bit)",
                     run->name, cpu_threads(), checkpoint.cpu_threads);
    } else {
        checkpoint_alloc(&checkpoint, &built);
        epochs = 0;
    }
    if (leader) history = bneck_realloc(history, (size_t)s->cfg.epochs * sizeof *history);

    int stopped = 0, diverged = 0;
    while (t.epochs_done < s->cfg.epochs && !diverged) {
        if (leader) sweep_board_post(w, index, t.epochs_done);
        epoch_record record;
        if (trainer_run_epoch(&t, &record)) {
            stopped = 1;
            break;
        }
        diverged = sweep_group_any(w, epoch_record_diverged(&record));
        if (!diverged) check_group_weights_agree(s, &t, run);
        /* another group took a stop signal: stop after this epoch, once it is committed */
        const int others_stopped = sweep_group_any(w, leader && sweep_board_stop_posted(w));
        const int stop_now = others_stopped && !diverged && t.epochs_done < s->cfg.epochs;
        stopped = stop_now;
        if (!leader) {
            if (stop_now) break;
            continue;
        }
        history[epochs++] = record;
        fill_row_identity(s, run, &row);
        run_row_summarise(&row, history, epochs);
        snprintf(row.status, sizeof row.status, "%s",
                 diverged                  ? RUN_STATUS_DIVERGED
                 : epochs == s->cfg.epochs ? RUN_STATUS_COMPLETE
                                           : RUN_STATUS_RUNNING);
        checkpoint_export(&checkpoint, &t);
        if (run_file_write(path, &row, history, epochs, &built, &checkpoint, s->cfg.text,
                           s->settings, &err)) {
            log_error("%s: cannot commit the run: %s", run->name, err.message);
            sweep_world_abort(w, 1);
        }
        print_epoch(run, s->cfg.epochs, &record); /* after the commit: a printed epoch is kept */
        if (diverged)
            log_error("%s diverged in epoch %d (training loss %g, validation loss %g): it stops "
                      "there and is kept with status '%s'; a lower learning rate ([train] lr) "
                      "usually helps", run->name, record.epoch, record.train_loss,
                      record.val_loss, RUN_STATUS_DIVERGED);
        sweep_board_post(w, index, t.epochs_done);
        /* After a run's last epoch the sweep loop reports, with the new run count. */
        if (w->rank == 0 && t.epochs_done < s->cfg.epochs) print_sweep_progress(s);
        if (stop_now) break;
    }
    step_graph_release(graphs);
    device_data_release(gpu_data);
    trainer_destroy(&t);
    run_checkpoint_free(&checkpoint);
    free(history);
    return stopped;
}

static uint64_t hash_dataset(uint64_t hash, const dataset *d) {
    hash = hash_bytes(hash, &d->count, sizeof d->count);
    hash = hash_bytes(hash, &d->channels, sizeof d->channels);
    if (d->count <= 0) return hash;
    hash = hash_bytes(hash, d->labels, (size_t)d->count);
    return hash_bytes(hash, d->pixels, (size_t)d->count * (size_t)d->channels * DATASET_SIDE * DATASET_SIDE);
}

/* Every rank must run the same sweep: the same settings, run list and output, and (unless
 * this is a dry run) the same data. A config or dataset copy that differs on one node
 * would otherwise mix runs or end in a bare MPI error naming nobody. Collective; returns
 * 0, or 2 once rank 0 has named the first rank that differs and in what. */
static int check_ranks_agree(sweep_state *s) {
    sweep_world *w = &s->world;
    uint64_t parts[3] = {hash_bytes(FNV_START, s->settings, strlen(s->settings)),
                         hash_bytes(FNV_START, s->cfg.output, strlen(s->cfg.output)), 0};
    for (int i = 0; i < s->plan.count; i++)
        parts[1] = hash_bytes(parts[1], s->plan.runs[i].name, strlen(s->plan.runs[i].name));
    if (!s->options.dry_run)
        parts[2] = hash_dataset(hash_dataset(FNV_START, &s->train_set), &s->val_set);
    char mine[HOST_TEXT] = {0};
    snprintf(mine, sizeof mine, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64, parts[0], parts[1],
             parts[2]);
    char *all = bneck_calloc((size_t)w->size, HOST_TEXT);
    sweep_world_allgather_text(w, mine, all, HOST_TEXT);
    static const char *const what[3] = {"settings", "run list or output", "dataset"};
    int differs = 0;
    for (int r = 1; r < w->size && !differs && w->rank == 0; r++) {
        const char *theirs = all + (size_t)r * HOST_TEXT;
        if (strcmp(theirs, mine) == 0) continue;
        char parts_differing[80] = "";
        for (int p = 0; p < 3; p++)
            if (strncmp(theirs + 17 * p, mine + 17 * p, 16) != 0)
                snprintf(parts_differing + strlen(parts_differing),
                         sizeof parts_differing - strlen(parts_differing), "%s%s",
                         parts_differing[0] ? ", " : "", what[p]);
        fprintf(stderr, "bneck-sweep: rank %d (on %s) does not run the sweep rank 0 (on %s) runs: "
                        "they differ in: %s; give every rank the same config file, overrides and "
                        "dataset files\n",
                r, s->all_hosts + (size_t)r * HOST_TEXT, s->all_hosts, parts_differing);
        differs = 1;
    }
    free(all);
    return sweep_world_any(w, differs) ? 2 : 0;
}

/* Every rank: the distinct hosts of its group, comma-separated (collective in the group). */
static void gather_group_hosts(sweep_state *s) {
    char *hosts = bneck_calloc((size_t)s->world.group_size, HOST_TEXT);
    char mine[HOST_TEXT] = {0};
    snprintf(mine, sizeof mine, "%s", s->world.host);
    sweep_group_allgather_text(&s->world, mine, hosts, HOST_TEXT);
    size_t used = 0;
    for (int r = 0; r < s->world.group_size; r++) {
        const char *h = hosts + (size_t)r * HOST_TEXT;
        int seen = 0;
        for (int q = 0; q < r; q++) seen |= !strcmp(h, hosts + (size_t)q * HOST_TEXT);
        if (seen) continue;
        int n = snprintf(s->group_hosts + used, sizeof s->group_hosts - used, "%s%s",
                         used ? "," : "", h);
        /* room is kept for ",...": a name that does not fit is left out whole, and said so */
        if (n < 0 || used + (size_t)n + sizeof ",..." > sizeof s->group_hosts) {
            snprintf(s->group_hosts + used, sizeof s->group_hosts - used, "%s", used ? ",..." : "...");
            break;
        }
        used += (size_t)n;
    }
    free(hosts);
}

/* ---------------------------------------------------------------------------------- */

/* The --stop-signal of the command line (USR2 when absent or not a signal name: the option
 * parser reports the latter), needed before the options are parsed: see stop.h. */
static int stop_signal_option(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--stop-signal") && signal_from_name(argv[i + 1]) > 0)
            return signal_from_name(argv[i + 1]);
    return SIGUSR2;
}

/* A refusal before the ranks have checked that they run the same sweep (check_ranks_agree):
 * a config that fails on one rank only (a file that differs between nodes) must not leave
 * the others waiting in a collective. The lowest rank that refused says why, and every
 * rank ends. Collective; message NULL: this rank has nothing to refuse. */
static int any_rank_refused(sweep_world *w, const char *message) {
    const int first = sweep_world_first(w, message != NULL);
    if (first >= 0 && first == w->rank) {
        if (w->rank == 0) fprintf(stderr, "bneck-sweep: %s\n", message);
        else fprintf(stderr, "bneck-sweep (rank %d on %s): %s\n", w->rank, w->host, message);
    }
    return first >= 0;
}

int sweep_main(int argc, char **argv) {
    static sweep_state s;
    memset(&s, 0, sizeof s);
    stop_catch_signals(stop_signal_option(argc, argv));
    sweep_world_init(&s.world, &argc, &argv);
    sweep_world *w = &s.world;
    log_set_rank(w->rank, w->host);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (w->rank == 0) usage(stdout);
            sweep_world_finalize(w);
            return 0;
        }
    }
    bneck_error err;
    const int unloaded =
        parse_options(&s.options, argc, argv, &err) ||
        config_load(&s.cfg, s.options.config_path, s.options.override_count, s.options.overrides, &err);
    if (any_rank_refused(w, unloaded ? err.message : NULL)) {
        sweep_world_finalize(w);
        return 2;
    }
    if (!output_given(&s.options)) sweep_output_from_record(&s.cfg, s.options.config_path);
    char refusal[sizeof err.message + 600] = "";
    if (w->size % s.cfg.ranks_per_run != 0) {
        int overridden = 0;
        for (int i = 0; i < s.options.override_count; i++)
            overridden |= config_override_sets(s.options.overrides[i], "sweep", "ranks_per_run");
        snprintf(refusal, sizeof refusal, "%d ranks cannot be split into run groups of [sweep] "
                 "ranks_per_run = %d (%s): launch a multiple of %d ranks", w->size,
                 s.cfg.ranks_per_run, overridden ? "from the command line" : s.options.config_path,
                 s.cfg.ranks_per_run);
    } else if (s.cfg.ranks_per_run > s.cfg.batch) {
        snprintf(refusal, sizeof refusal, "[sweep] ranks_per_run = %d exceeds [train] batch = %d",
                 s.cfg.ranks_per_run, s.cfg.batch);
    }
    if (any_rank_refused(w, refusal[0] ? refusal : NULL)) {
        sweep_world_finalize(w);
        return 2;
    }
    const int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_threads(s.cfg.threads > 0 ? s.cfg.threads : (cores / w->local_size > 0 ? cores / w->local_size : 1));

    char note[700];
    s.backend = backend_select(s.cfg.device, w->local_rank, note, sizeof note, &err);
    if (!s.backend) {
        log_error("%s", err.message);
        sweep_world_abort(w, 1);
    }
    if (note[0]) log_info("sweep: %s", note);
    if (backend_configure(s.backend, s.cfg.precision, s.cfg.conv_engine, s.cfg.deterministic,
                          s.cfg.graph, note, sizeof note, &err)) {
        log_error("%s", err.message);
        sweep_world_abort(w, 2);
    }
    if (note[0] && w->rank == 0) log_info("sweep: %s", note);
    backend_device_names(s.backend, s.device_model, sizeof s.device_model, s.device_name,
                         sizeof s.device_name);

    /* A plan needs only the input channels, so --dry-run works before the data is fetched,
     * and a plan or OUTPUT the sweep would refuse is refused before the data is loaded. */
    s.in_channels = strcmp(s.cfg.dataset, "cifar10") == 0 ? 3 : 1;
    if (sweep_plan_build(&s.plan, &s.cfg, s.in_channels, &err))
        snprintf(refusal, sizeof refusal, "%s: %s", s.options.config_path, err.message);
    if (any_rank_refused(w, refusal[0] ? refusal : NULL)) {
        sweep_world_finalize(w);
        return 2;
    }
    if (!s.options.dry_run) {
        int refused = 0;
        if (w->rank == 0 && sweep_output_check(&s.cfg, &s.plan, s.options.restart, 0, &err) < 0) {
            fprintf(stderr, "bneck-sweep: %s\n", err.message);
            refused = 1;
        }
        if (sweep_world_any(w, refused)) {
            sweep_world_finalize(w);
            return 2;
        }
        if (dataset_load(&s.train_set, &s.val_set, s.cfg.dataset, s.cfg.data_dir, &err)) {
            log_error("%s", err.message);
            sweep_world_abort(w, 1);
        }
        dataset_truncate(&s.train_set, s.cfg.train_limit);
        dataset_truncate(&s.val_set, s.cfg.val_limit);
        if (s.train_set.channels != s.in_channels)
            BNECK_FAIL("dataset %s has %d channels; the plan was built for %d", s.cfg.dataset,
                       s.train_set.channels, s.in_channels);
    }
    sweep_output_settings(&s.cfg, s.settings, sizeof s.settings);
    sweep_world_split(w, s.cfg.ranks_per_run, s.plan.count);
    nccl_setup(&s);
    gather_group_hosts(&s);
    s.all_hosts = bneck_calloc((size_t)w->size, HOST_TEXT);
    s.all_devices = bneck_calloc((size_t)w->size, DEVICE_TEXT);
    {
        char host[HOST_TEXT] = {0}, device[DEVICE_TEXT] = {0};
        snprintf(host, sizeof host, "%s", w->host);
        snprintf(device, sizeof device, "%s", s.device_name);
        sweep_world_allgather_text(w, host, s.all_hosts, HOST_TEXT);
        sweep_world_allgather_text(w, device, s.all_devices, DEVICE_TEXT);
    }
    if (check_ranks_agree(&s)) {
        nccl_teardown();
        sweep_world_finalize(w);
        return 2;
    }
    board_world = w;

    if (s.options.dry_run) {
        const int status = w->rank == 0 ? sweep_print_plan(&s) : 0;
        nccl_teardown();
        sweep_world_finalize(w);
        return status;
    }

    int failed = 0;
    if (w->rank == 0 &&
        sweep_output_prepare(&s.cfg, &s.plan, w->host, s.options.restart, &err)) {
        fprintf(stderr, "bneck-sweep: %s\n", err.message);
        failed = 1;
    }
    if (sweep_world_any(w, failed)) {
        nccl_teardown();
        sweep_world_finalize(w);
        return 2;
    }
    s.started = timer_now();
    log_info("sweep: %d runs on %d ranks (%d group(s) of %d), %s backend, %d threads per rank, "
             "%s: %d training / %d validation images, output %s",
             s.plan.count, w->size, w->groups, w->group_size, s.backend->name, cpu_threads(),
             s.cfg.dataset, s.train_set.count, s.val_set.count, s.cfg.output);

    int stopped = 0;
    for (;;) {
        /* The group agrees before taking a run, so a stop never strands a teammate; a stop
         * signal another group got counts too. */
        const int stop_seen = stop_requested() || (w->group_rank == 0 && sweep_board_stop_posted(w));
        if (sweep_group_any(w, stop_seen)) {
            stopped = 1;
            break;
        }
        const int index = sweep_next_ticket(w);
        if (index < 0 || index >= s.plan.count) break;
        if (run_one(&s, index)) {
            stopped = 1;
            break;
        }
        if (w->group_rank == 0) {
            sweep_count_done(w);
            sweep_board_post(w, -1, 0);
        }
        if (w->rank == 0) print_sweep_progress(&s);
    }
    /* tell the groups still training, which read the board after every epoch */
    if (stopped && w->group_rank == 0) sweep_board_post_stop(w);
    sweep_world_wait_all(w, stop_requested, &stopped);
    stopped = sweep_world_any(w, stopped);
    int status = 0;
    int merge_failed = 0;
    if (w->rank == 0) {
        int complete = 0, diverged = 0;
        merge_failed = sweep_merge_results(&s, &complete, &diverged) != 0;
        if (merge_failed) status = 1;
        if (diverged) {
            log_error("sweep: %d of %d run(s) diverged (status '%s' in sweep.h5, left out of "
                      "/summary)", diverged, s.plan.count, RUN_STATUS_DIVERGED);
            status = 1;
        }
        if (stopped && complete + diverged == s.plan.count)
            log_info("sweep: the stop signal came after the last run: nothing is left to resume");
        else if (stopped) {
            log_info("sweep: stopped by a signal after committing every finished epoch; run the "
                     "same command again%s to resume (exit status %d)",
                     s.options.restart ? " without --restart" : "", BNECK_EXIT_STOPPED);
            status = BNECK_EXIT_STOPPED;
        }
    }
    sweep_world_barrier(w);
    sweep_plan_free(&s.plan);
    dataset_free(&s.train_set);
    dataset_free(&s.val_set);
    free(s.all_hosts);
    free(s.all_devices);
    free(s.options.overrides);
    nccl_teardown();
    backend_shutdown(s.backend);
    /* Every rank returns the same status. */
    int broadcast_status = status;
    if (sweep_world_any(w, status == BNECK_EXIT_STOPPED)) broadcast_status = BNECK_EXIT_STOPPED;
    else if (sweep_world_any(w, status != 0)) broadcast_status = 1;
    sweep_world_finalize(w);
    if (merge_failed) {
        /* HDF5's exit handler would try again to close the sweep.h5 it could not write (a
         * full disk), and loop there: leave without it (everything is closed or written) */
        fflush(stdout);
        fflush(stderr);
        _exit(broadcast_status);
    }
    return broadcast_status;
}
