/* bneck-train: one training run, one process. Shares every part with bneck-sweep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_select.h"
#include "backend/cpu/cpu_gemm.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/config.h"
#include "train/device_data.h"
#include "train/step_graph.h"
#include "train/train.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: bneck-train [CONFIG.ini] [section.key=value ...] [--device auto|cpu|cuda]\n"
            "Trains one model ([model] mode, alpha) with the [train] recipe on the [data]\n"
            "dataset and prints one line per epoch. Any key can be overridden on the command\n"
            "line, e.g.  bneck-train configs/quick.ini train.epochs=2 run.threads=2\n"
            "--device D is run.device=D: auto (a GPU when one is usable, else the CPU, saying\n"
            "why), cpu, or cuda (fails when no GPU is usable).\n");
}

/* The config file and the command line's overrides (--device NAME is one) into cfg.
 * Returns 0, 1 after printing the help, or 2 after printing the error. */
static int load_config(config *cfg, int argc, char **argv) {
    const char *config_path = NULL;
    const char **overrides = bneck_calloc((size_t)argc, sizeof *overrides);
    int override_count = 0, status = 0;
    static char device_override[64];
    bneck_error err;
    if (argc < 2) { /* the defaults alone are the whole study's 100-epoch run of A */
        usage(stderr);
        fprintf(stderr, "bneck-train: give a config file or overrides, e.g. bneck-train "
                        "configs/quick.ini\n");
        status = 2;
    }
    for (int i = 1; i < argc && status == 0; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            status = 1;
            break;
        }
        const int device = config_device_option(argc, argv, &i, device_override,
                                                sizeof device_override, &err);
        const config_argument kind = config_argument_kind(argv[i]);
        if (device < 0) {
            fprintf(stderr, "bneck-train: %s\n", err.message);
            status = 2;
        } else if (device) {
            overrides[override_count++] = device_override;
        } else if (kind == CONFIG_ARGUMENT_OVERRIDE) {
            overrides[override_count++] = argv[i];
        } else if (kind == CONFIG_ARGUMENT_OPTION) {
            fprintf(stderr, "bneck-train: unknown option '%s' (see --help)\n", argv[i]);
            status = 2;
        } else if (!config_path) {
            config_path = argv[i];
        } else {
            fprintf(stderr, "bneck-train: unexpected argument '%s' (one config file, then "
                            "section.key=value overrides)\n", argv[i]);
            status = 2;
        }
    }
    if (status == 0 && config_load(cfg, config_path, override_count, overrides, &err)) {
        fprintf(stderr, "bneck-train: %s\n", err.message);
        status = 2;
    }
    free(overrides);
    return status;
}

int main(int argc, char **argv) {
    static config cfg;
    const int loaded = load_config(&cfg, argc, argv);
    if (loaded) return loaded == 1 ? 0 : 2;
    bneck_error err;
    cpu_set_threads(cfg.threads > 0 ? cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN));

    char note[700];
    const backend_ops *backend = backend_select(cfg.device, 0, note, sizeof note, &err);
    if (!backend) {
        fprintf(stderr, "bneck-train: %s\n", err.message);
        return 1;
    }
    if (note[0]) log_info("%s", note);
    if (backend_configure(backend, cfg.precision, cfg.conv_engine, cfg.deterministic, cfg.graph,
                          note, sizeof note, &err)) {
        fprintf(stderr, "bneck-train: %s\n", err.message);
        return 2;
    }
    if (note[0]) log_info("%s", note);

    dataset train_set = {0}, val_set = {0};
    if (dataset_load(&train_set, &val_set, cfg.dataset, cfg.data_dir, &err)) {
        fprintf(stderr, "bneck-train: %s\n", err.message);
        return 1;
    }
    dataset_truncate(&train_set, cfg.train_limit);
    dataset_truncate(&val_set, cfg.val_limit);

    model_spec spec = {cfg.mode, cfg.alpha, train_set.channels, cfg.pool_branch,
                       MODEL_LAYERS_GROUPED};
    static trainer run;
    if (trainer_create(&run, &cfg, &spec, &train_set, &val_set, backend, NULL, &err)) {
        fprintf(stderr, "bneck-train: %s\n", err.message);
        return 1;
    }
    char data_message[512];
    device_data *gpu_data = device_data_attach(&run, data_message, sizeof data_message);
    if (!gpu_data && data_message[0]) {
        fprintf(stderr, "bneck-train: %s\n", data_message);
        return 1;
    }
    step_graph *graphs = step_graph_attach(&run, (step_graph_mode)step_graph_mode_from_name(cfg.graph));
    const model_counts *counts = &run.net.model.counts;
    log_info("bneck-train: mode %d alpha %d on %s (%d train / %d val images), %s backend "
             "(%s, %d threads), %lld params, %lld pseudo-FLOPs, %lld MACs per image",
             spec.mode, spec.mode == 1 ? 1 : spec.alpha, cfg.dataset, train_set.count,
             val_set.count, backend->name, backend_versions(backend), cpu_threads(),
             (long long)counts->params, (long long)counts->pseudo_flops, (long long)counts->macs);
    log_info("%5s %9s %10s %9s %10s %9s %8s %8s", "epoch", "lr", "train_loss", "train_acc",
             "val_loss", "val_acc", "s", "img/s");
    double best = 0.0;
    int diverged = 0;
    for (int e = 0; e < cfg.epochs && !diverged; e++) {
        epoch_record r;
        trainer_run_epoch(&run, &r);
        if (r.val_acc > best) best = r.val_acc;
        log_info("%5d %9.1e %10.4f %8.2f%% %10.4f %8.2f%% %8.2f %8.1f", r.epoch, r.lr,
                 r.train_loss, 100 * r.train_acc, r.val_loss, 100 * r.val_acc, r.epoch_s,
                 r.images_per_s);
        diverged = epoch_record_diverged(&r);
        if (diverged)
            log_error("training diverged in epoch %d (training loss %g, validation loss %g); "
                      "a lower learning rate ([train] lr) usually helps", r.epoch, r.train_loss,
                      r.val_loss);
    }
    log_info("best validation accuracy %.2f%%", 100 * best);
    if (graphs)
        log_info("%ld training steps ran as CUDA graph replays (%ld captures)",
                 step_graph_replays(graphs), step_graph_captures(graphs));
    step_graph_release(graphs);
    device_data_release(gpu_data);
    trainer_destroy(&run);
    backend_shutdown(backend);
    dataset_free(&train_set);
    dataset_free(&val_set);
    return diverged ? 1 : 0;
}
