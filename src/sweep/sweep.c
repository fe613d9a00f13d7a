#include "sweep/sweep.h"
#include "sweep/sweep_state.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/format.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/stop.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "results/results.h"
#include "sweep/group.h"
#include "sweep/output.h"
#include "sweep/plan.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: bneck-sweep CONFIG.ini [section.key=value ...] [--device auto|cpu|cuda]\n"
            "                   [--dry-run] [--restart] [--stop-signal NAME]\n"
            "Runs every (pattern, repeat) of the config's [sweep] over the MPI ranks, in groups\n"
            "of [sweep] ranks_per_run (data parallel inside a group), committing each run to\n"
            "OUTPUT/runs/<pattern>-r<repeat>.h5 and merging them into OUTPUT/sweep.h5 as\n"
            "runs finish (at most once a minute) and at the end.\n"
            "Running the same command again resumes: finished runs are kept, unfinished ones\n"
            "continue from their last commit (an epoch's end, or a step within one).\n"
            "  --device D      run.device=D: auto (a GPU when one is usable, else the CPU,\n"
            "                  saying why), cpu, or cuda (fails when no GPU is usable)\n"
            "  --dry-run       print the plan (runs, seeds, what the output holds of each, groups,\n"
            "                  hosts, devices) and stop\n"
            "  --restart       move an existing OUTPUT aside (never deleted) and start over\n"
            "  --stop-signal S extra signal that stops the sweep cleanly (default USR2; TERM\n"
            "                  always does, and INT and HUP unless ignored when it started);\n"
            "                  exit status %d means stopped, resumable\n",
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

/* Whether argv[*i] is --stop-signal (its name the next argument, *i moved past it) or
 * --stop-signal=NAME; *name is then the name given, or NULL when there is none. */
static int stop_signal_argument(int argc, char **argv, int *i, const char **name) {
    const char *a = argv[*i];
    static const char option[] = "--stop-signal";
    if (strncmp(a, option, sizeof option - 1)) return 0;
    if (a[sizeof option - 1] == '=') *name = a + sizeof option;
    else if (a[sizeof option - 1] == '\0') *name = *i + 1 < argc ? argv[++*i] : NULL;
    else return 0;
    return 1;
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
    int stop_signal_given = 0;
    const char *signal_name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const config_argument kind = config_argument_kind(a);
        const int device = config_device_option(argc, argv, &i, o->device_override,
                                                sizeof o->device_override, err);
        if (device < 0) return -1;
        if (device) o->overrides[o->override_count++] = o->device_override;
        else if (!strcmp(a, "--dry-run")) o->dry_run = 1;
        else if (!strcmp(a, "--restart")) o->restart = 1;
        else if (stop_signal_argument(argc, argv, &i, &signal_name)) {
            /* the signals were set up from the first one (stop_signal_option): a second
             * would be a signal that kills instead of stopping */
            if (stop_signal_given++)
                return bneck_error_set(err, "--stop-signal given twice: give it once");
            if (!signal_name || (o->stop_signal = signal_from_name(signal_name)) < 0)
                return bneck_error_set(err, "--stop-signal expects a signal name (USR1, USR2, "
                                            "TERM, INT, HUP, QUIT, XCPU, ALRM), got '%s'",
                                       signal_name ? signal_name : "");
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

void sweep_print_progress(sweep_state *s) {
    if (s->world.rank != 0) return;
    const int groups = s->world.groups;
    int *run_index = bneck_malloc((size_t)groups * sizeof(int));
    int *epoch = bneck_malloc((size_t)groups * sizeof(int));
    long done = 0, next_ticket = 0;
    sweep_board_read(&s->world, run_index, epoch, &done, &next_ticket);
    /* The rate is the work trained in this session over its elapsed time: a resumed
     * sweep's earlier work took none of it, and the runs its files hold whole are none of
     * the work left. */
    const double left = sweep_plan_work_left(&s->plan, s->cfg.epochs, (int)next_ticket,
                                             run_index, epoch, groups);
    const double trained = (double)sweep_board_trained(&s->world);
    /* Runs done: those this session finished and those its files held whole at its start,
     * the count the interim sweep.h5 update reads from the files. */
    for (int i = 0; i < s->plan.count; i++) done += s->plan.runs[i].epochs_held >= s->cfg.epochs;
    if (done > s->plan.count) done = s->plan.count; /* a kept file removed, its run retrained */
    char line[2048];
    int used = snprintf(line, sizeof line, "sweep: %ld/%d runs done", done, s->plan.count);
    for (int g = 0; g < groups && used < (int)sizeof line - 64; g++) {
        if (run_index[g] < 0 || run_index[g] >= s->plan.count) continue;
        used += snprintf(line + used, sizeof line - (size_t)used, "; group %d: %s epoch %d/%d", g,
                         s->plan.runs[run_index[g]].name, epoch[g], s->cfg.epochs);
    }
    const double elapsed = timer_now() - s->started;
    char elapsed_text[32], left_text[32] = "?";
    format_duration(elapsed, elapsed_text, sizeof elapsed_text);
    if (trained > 0 && left >= 0) format_duration(elapsed * left / trained, left_text, sizeof left_text);
    log_info("%s; elapsed %s, about %s left", line, elapsed_text, left_text);
    free(run_index);
    free(epoch);
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
    uint64_t parts[3] = {hash_bytes(HASH_START, s->settings, strlen(s->settings)),
                         hash_bytes(HASH_START, s->cfg.output, strlen(s->cfg.output)), 0};
    for (int i = 0; i < s->plan.count; i++)
        parts[1] = hash_bytes(parts[1], s->plan.runs[i].name, strlen(s->plan.runs[i].name));
    if (!s->options.dry_run)
        parts[2] = hash_dataset(hash_dataset(HASH_START, &s->train_set), &s->val_set);
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
    format_distinct_list(s->group_hosts, sizeof s->group_hosts, hosts, s->world.group_size,
                         HOST_TEXT);
    free(hosts);
}

/* ---------------------------------------------------------------------------------- */

/* The --stop-signal of the command line (USR2 when absent or not a signal name: the option
 * parser reports the latter), needed before the options are parsed: see stop.h. */
static int stop_signal_option(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *name = NULL;
        if (stop_signal_argument(argc, argv, &i, &name))
            return name && signal_from_name(name) > 0 ? signal_from_name(name) : SIGUSR2;
    }
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

/* --dry-run and --restart decide which collectives a rank joins: an MPMD launch giving
 * them to some ranks only would leave the others waiting. Collective; 1 (every rank) when
 * they differ, rank 0 having said so. */
static int options_differ_between_ranks(sweep_state *s) {
    const struct { const char *name; int given; } options[] = {
        {"--dry-run", s->options.dry_run}, {"--restart", s->options.restart}};
    int differ = 0;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const int some = sweep_world_any(&s->world, options[i].given);
        const int all = !sweep_world_any(&s->world, !options[i].given);
        if (some && !all) {
            if (s->world.rank == 0)
                fprintf(stderr, "bneck-sweep: %s was given to some ranks and not to others: "
                                "give every rank the same options\n", options[i].name);
            differ = 1;
        }
    }
    return differ;
}

/* The options and the config read, the rank count checked, the backend chosen and the plan
 * built. 0, or the exit status of a refusal every rank agreed on (its reason printed). */
static int sweep_configure(sweep_state *s, int argc, char **argv) {
    sweep_world *w = &s->world;
    bneck_error err;
    const int unloaded =
        parse_options(&s->options, argc, argv, &err) ||
        config_load(&s->cfg, s->options.config_path, s->options.override_count, s->options.overrides, &err);
    if (any_rank_refused(w, unloaded ? err.message : NULL)) return 2;
    if (options_differ_between_ranks(s)) return 2;
    if (!output_given(&s->options)) sweep_output_from_record(&s->cfg, s->options.config_path);
    char refusal[sizeof err.message + 600] = "";
    if (w->size % s->cfg.ranks_per_run != 0) {
        int overridden = 0;
        for (int i = 0; i < s->options.override_count; i++)
            overridden |= config_override_sets(s->options.overrides[i], "sweep", "ranks_per_run");
        snprintf(refusal, sizeof refusal, "%d ranks cannot be split into run groups of [sweep] "
                 "ranks_per_run = %d (%s): launch a multiple of %d ranks", w->size,
                 s->cfg.ranks_per_run, overridden ? "from the command line" : s->options.config_path,
                 s->cfg.ranks_per_run);
    } else if (s->cfg.ranks_per_run > s->cfg.batch) {
        snprintf(refusal, sizeof refusal, "[sweep] ranks_per_run = %d exceeds [train] batch = %d",
                 s->cfg.ranks_per_run, s->cfg.batch);
    }
    if (any_rank_refused(w, refusal[0] ? refusal : NULL)) return 2;
    const int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_threads(s->cfg.threads > 0 ? s->cfg.threads : (cores / w->local_size > 0 ? cores / w->local_size : 1));

    char note[700];
    s->backend = backend_select(s->cfg.device, w->local_rank, note, sizeof note, &err);
    if (!s->backend) {
        log_error("%s", err.message);
        sweep_world_abort(w, 1);
    }
    if (note[0]) log_info("sweep: %s", note);
    if (backend_configure(s->backend, s->cfg.precision, s->cfg.conv_engine, s->cfg.deterministic,
                          s->cfg.graph, note, sizeof note, &err)) {
        log_error("%s", err.message);
        sweep_world_abort(w, 2);
    }
    if (note[0] && w->rank == 0) log_info("sweep: %s", note);
    backend_device_names(s->backend, s->device_model, sizeof s->device_model, s->device_name,
                         sizeof s->device_name);

    /* A plan needs only the input channels, so --dry-run works before the data is fetched,
     * and a plan or OUTPUT the sweep would refuse is refused before the data is loaded. */
    s->in_channels = dataset_channels(s->cfg.dataset);
    if (sweep_plan_build(&s->plan, &s->cfg, s->in_channels, &err))
        snprintf(refusal, sizeof refusal, "%s: %s", s->options.config_path, err.message);
    if (any_rank_refused(w, refusal[0] ? refusal : NULL)) return 2;
    sweep_output_settings(&s->cfg, s->settings, sizeof s->settings);
    return 0;
}

/* OUTPUT checked (read only), then the datasets loaded (not for a dry run). 0, or 2 when
 * OUTPUT is refused. */
static int sweep_load_data(sweep_state *s) {
    if (s->options.dry_run) return 0;
    sweep_world *w = &s->world;
    bneck_error err;
    int refused = 0;
    if (w->rank == 0 && sweep_output_check(&s->cfg, &s->plan, s->options.restart, 0, &err) < 0) {
        fprintf(stderr, "bneck-sweep: %s\n", err.message);
        refused = 1;
    }
    if (sweep_world_any(w, refused)) return 2;
    if (dataset_load(&s->train_set, &s->val_set, s->cfg.dataset, s->cfg.data_dir, &err)) {
        log_error("%s", err.message);
        sweep_world_abort(w, 1);
    }
    dataset_truncate(&s->train_set, s->cfg.train_limit);
    dataset_truncate(&s->val_set, s->cfg.val_limit);
    if (s->train_set.channels != s->in_channels)
        BNECK_FAIL("dataset %s has %d channels; the plan was built for %d", s->cfg.dataset,
                   s->train_set.channels, s->in_channels);
    return 0;
}

/* The run groups formed, with their gradient sums, hosts and devices, and every rank found
 * to run the same sweep. 0, or 2 (every rank) when they do not. */
static int sweep_form_groups(sweep_state *s) {
    sweep_world *w = &s->world;
    sweep_world_split(w, s->cfg.ranks_per_run, s->plan.count);
    if (sweep_comm_setup(s)) return 2;
    gather_group_hosts(s);
    s->all_hosts = bneck_calloc((size_t)w->size, HOST_TEXT);
    s->all_devices = bneck_calloc((size_t)w->size, DEVICE_TEXT);
    char host[HOST_TEXT] = {0}, device[DEVICE_TEXT] = {0};
    snprintf(host, sizeof host, "%s", w->host);
    snprintf(device, sizeof device, "%s", s->device_name);
    sweep_world_allgather_text(w, host, s->all_hosts, HOST_TEXT);
    sweep_world_allgather_text(w, device, s->all_devices, DEVICE_TEXT);
    return check_ranks_agree(s);
}

/* Rank 0 takes OUTPUT (its lock, record and runs/ directory) and reads what earlier
 * sessions left of each run, before the collective after which groups take runs (and
 * could finish one, to be counted twice). 0, or 2 (every rank). */
static int sweep_take_output(sweep_state *s) {
    bneck_error err;
    int failed = 0;
    if (s->world.rank == 0 &&
        sweep_output_prepare(&s->cfg, &s->plan, s->world.host, s->options.restart, &err)) {
        fprintf(stderr, "bneck-sweep: %s\n", err.message);
        failed = 1;
    }
    if (s->world.rank == 0 && !failed)
        for (int i = 0; i < s->plan.count; i++)
            s->plan.runs[i].epochs_held = sweep_run_file_epochs_held(s, &s->plan.runs[i]);
    return sweep_world_any(&s->world, failed) ? 2 : 0;
}

/* While rank 0 waits for the groups still training, it keeps sweep.h5 up to date. */
static int poll_while_waiting(void *state) {
    sweep_merge_if_runs_finished(state);
    return stop_requested();
}

/* Each group takes runs from the board until none is left or a stop signal comes, then
 * every rank waits for the others. Returns 1 (every rank) when the sweep was stopped. */
static int sweep_train_all(sweep_state *s) {
    sweep_world *w = &s->world;
    s->started = timer_now();
    log_info("sweep: %d runs on %d ranks (%d group(s) of %d), %s backend, %d threads per rank, "
             "%s: %d training / %d validation images, output %s",
             s->plan.count, w->size, w->groups, w->group_size, s->backend->name, cpu_threads(),
             s->cfg.dataset, s->train_set.count, s->val_set.count, s->cfg.output);
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
        if (index < 0 || index >= s->plan.count) break;
        const run_end end = sweep_train_run(s, index);
        if (end == RUN_ENDED_STOPPED) {
            stopped = 1;
            break;
        }
        /* a kept run is counted already, from its file at the start (sweep_print_progress) */
        if (w->group_rank == 0) {
            if (end == RUN_ENDED_FINISHED) sweep_count_done(w);
            sweep_board_post(w, -1, 0);
        }
        if (w->rank == 0 && end == RUN_ENDED_FINISHED) {
            sweep_print_progress(s);
            sweep_merge_if_runs_finished(s);
        }
    }
    /* tell the groups still training, which read the board after every epoch */
    if (stopped && w->group_rank == 0) sweep_board_post_stop(w);
    sweep_world_wait_all(w, poll_while_waiting, s, &stopped);
    return sweep_world_any(w, stopped);
}

/* Rank 0: the run files merged into sweep.h5 and the sweep's end said. Returns rank 0's
 * exit status (0 on other ranks); *merge_failed when sweep.h5 could not be written. */
static int sweep_conclude(sweep_state *s, int stopped, int *merge_failed) {
    *merge_failed = 0;
    if (s->world.rank != 0) return 0;
    int status = 0, complete = 0, diverged = 0;
    /* no run finished and no step trained in this session, by any group */
    const int trained_nothing = !stopped && sweep_runs_done(&s->world) == 0 &&
                                sweep_board_trained(&s->world) == 0;
    *merge_failed = sweep_merge_results(s, trained_nothing, &complete, &diverged) != 0;
    if (*merge_failed) status = 1;
    if (diverged) {
        log_error("sweep: %d of %d run(s) diverged (status '%s' in sweep.h5, left out of "
                  "/summary)", diverged, s->plan.count, RUN_STATUS_DIVERGED);
        status = 1;
    }
    if (stopped && complete + diverged == s->plan.count) {
        log_info("sweep: the stop signal came after the last run: nothing is left to resume");
    } else if (stopped) {
        log_info("sweep: stopped by a signal after committing every finished epoch and the "
                 "steps of each epoch in progress; run the same command again%s to resume (exit "
                 "status %d)",
                 s->options.restart ? " without --restart" : "", BNECK_EXIT_STOPPED);
        status = BNECK_EXIT_STOPPED;
    }
    return status;
}

static void sweep_state_free(sweep_state *s) {
    sweep_plan_free(&s->plan);
    dataset_free(&s->train_set);
    dataset_free(&s->val_set);
    free(s->all_hosts);
    free(s->all_devices);
    free(s->options.overrides);
    free(s);
}

static int help_asked(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

/* The end of a sweep that trained nothing (help, a refusal, a dry run): MPI finalized and
 * the state freed; returns status. */
static int sweep_end_early(sweep_state *s, int status) {
    sweep_comm_teardown();
    sweep_world_finalize(&s->world);
    sweep_state_free(s);
    return status;
}

int sweep_main(int argc, char **argv) {
    sweep_state *s = bneck_calloc(1, sizeof *s);
    stop_catch_signals(stop_signal_option(argc, argv));
    sweep_world_init(&s->world, &argc, &argv);
    sweep_world *w = &s->world;
    log_set_rank(w->rank, w->host);
    /* agreed, so that --help given to some ranks of an MPMD launch ends them all */
    if (sweep_world_any(w, help_asked(argc, argv))) {
        if (w->rank == 0) usage(stdout);
        return sweep_end_early(s, 0);
    }
    int status = sweep_configure(s, argc, argv);
    if (!status) status = sweep_load_data(s);
    if (!status) status = sweep_form_groups(s);
    if (!status && s->options.dry_run) status = w->rank == 0 ? sweep_print_plan(s) : 0;
    else if (!status) status = sweep_take_output(s);
    if (status || s->options.dry_run) return sweep_end_early(s, status);

    const int stopped = sweep_train_all(s);
    int merge_failed;
    status = sweep_conclude(s, stopped, &merge_failed);
    sweep_world_barrier(w);
    sweep_comm_teardown();
    backend_shutdown(s->backend);
    /* Every rank returns the same status. */
    if (sweep_world_any(w, status == BNECK_EXIT_STOPPED)) status = BNECK_EXIT_STOPPED;
    else if (sweep_world_any(w, status != 0)) status = 1;
    const int hdf5_may_loop_at_exit = merge_failed || s->interim_merge_failed;
    sweep_world_finalize(w);
    sweep_state_free(s);
    if (hdf5_may_loop_at_exit) {
        /* HDF5's exit handler would try again to close the sweep.h5 it could not write (a
         * full disk), and loop there: leave without it (everything is closed or written) */
        fflush(stdout);
        fflush(stderr);
        _exit(status);
    }
    return status;
}
