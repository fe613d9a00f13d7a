/* Run and sweep configuration: an INI file (parsed by libinih) plus command-line
 * overrides "section.key=value". Every bad key or value is reported with the file and
 * line it came from (or "command line" for overrides).
 *
 * The [train] recipe key picks a preset of framework defaults (SPEC section 4) that
 * other keys then override whatever their order in the file:
 *   keras   (default): bn_eps 1e-3, bn_momentum 0.99, adam_eps 1e-7, l2_form kernels,
 *                      init glorot
 *   pytorch:           bn_eps 1e-5, bn_momentum 0.9 (PyTorch's 0.1), adam_eps 1e-8,
 *                      l2_form all, init pytorch
 */
#ifndef BNECK_TRAIN_CONFIG_H
#define BNECK_TRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

enum { CONFIG_MAX_PATTERNS = 16, CONFIG_MAX_TEXT = 32768 };

typedef enum { L2_FORM_KERNELS = 0, L2_FORM_ALL = 1 } l2_form;         /* Keras / PyTorch */
typedef enum { INIT_GLOROT = 0, INIT_PYTORCH = 1 } init_form;         /* Keras / PyTorch */
typedef enum { POOL_BRANCH_KERAS = 0, POOL_BRANCH_PYTORCH = 1 } pool_branch_form;
typedef enum { RECIPE_KERAS = 0, RECIPE_PYTORCH = 1 } recipe_kind;

typedef struct pattern_spec {
    char name[16]; /* "A" .. "E" or a user's name */
    int mode;      /* 1 plain, 2 bottleneck->conv, 3 bottleneck->conv->bottleneck */
    int alpha;     /* bottleneck factor (1 for mode 1) */
} pattern_spec;

/* How often a sweep commits a long epoch's progress unless told otherwise. */
#define CONFIG_DEFAULT_COMMIT_MINUTES 10.0

typedef struct config {
    /* [run] */
    char name[64];          /* run/sweep name, default "run" */
    uint64_t seed;          /* default 1 */
    char device[8];         /* auto | cpu | cuda, default auto */
    char precision[8];      /* GPU arithmetic: fp32 | tf32 | bf16, default fp32 */
    char conv_engine[8];    /* GPU k x k convolutions: auto | cudnn | gemm, default auto */
    int deterministic;      /* GPU: reproducible algorithms only, default 0 */
    char graph[8];          /* GPU: training steps as CUDA graphs: auto | on | off, default auto */
    int threads;            /* CPU threads, 0 = all cores; default 0 */
    double commit_minutes;  /* a sweep commits an epoch's steps so far about this often
                               (against a hard kill); 0: at epoch ends and stops only */
    char output[512];       /* output directory, default "results/<name>" */

    /* [data] */
    char dataset[32];       /* cifar10 | fashion-mnist, default fashion-mnist */
    char data_dir[512];     /* default /usr/share/datasets/fashion-mnist (or data/cifar-10-batches-bin) */
    int train_limit;        /* use only the first N training images; 0 = all */
    int val_limit;          /* use only the first N validation images; 0 = all */
    int augment;            /* an augment_kind (data/augment.h); the recipe's by default */

    /* [model] (a single run; a sweep lists patterns instead) */
    int mode;               /* default 1 */
    int alpha;              /* default 1 */
    pool_branch_form pool_branch; /* keras | pytorch, default keras */

    /* [train] */
    recipe_kind recipe;     /* keras | pytorch, default keras */
    int epochs;             /* default 100 */
    int batch;              /* global batch, default 128 */
    int val_batch;          /* default 100 */
    double lr;              /* default 1e-3 */
    double lr_decay_at[2];  /* fractions of the epochs, default 0.5, 0.85 */
    double lr_decay_factor; /* default 0.1 */
    double l2;              /* default 1e-3 */
    l2_form l2_form;
    init_form init;
    double bn_eps, bn_momentum;
    double adam_beta1, adam_beta2, adam_eps; /* betas default 0.9, 0.999 */
    int progress_every;     /* print progress every N steps in long epochs; 0 = auto */

    /* [sweep] */
    int pattern_count;
    pattern_spec patterns[CONFIG_MAX_PATTERNS]; /* "A:1:1, B:2:2, ..." default A..E of the study */
    int repeats;            /* default 1 */
    int ranks_per_run;      /* default 1 */

    /* The text the config was built from (file contents, then overrides), kept so results
     * files can store it. */
    char text[CONFIG_MAX_TEXT];
} config;

/* Fills every field with its default (recipe keras, the study's five patterns). */
void config_defaults(config *cfg);

/* Reads path (may be NULL: defaults only), then applies overrides "section.key=value"
 * (also accepted: "--section.key=value"). Returns 0, or -1 with err naming the file and
 * line (or the override) and what was expected. */
int config_load(config *cfg, const char *path, int override_count, const char *const *overrides,
                bneck_error *err);

/* What a command-line argument of the programs is: an override ("section.key=value" or
 * "--section.key=value"; also "key=value" naming no file, so that config_load says what
 * form it expected), an option ("-x", "--word"), or a file name (a config called
 * run=2.ini is one, and so is anything with a '/' before its '='). */
typedef enum config_argument {
    CONFIG_ARGUMENT_OVERRIDE,
    CONFIG_ARGUMENT_OPTION,
    CONFIG_ARGUMENT_FILE
} config_argument;
config_argument config_argument_kind(const char *argument);

/* Whether an override ("section.key=value", "--section.key=value", spaces allowed around
 * the parts, as config_load reads it) sets section.key. */
int config_override_sets(const char *override, const char *section, const char *key);

/* The same for text already in memory; name stands for the file in messages. */
int config_load_text(config *cfg, const char *name, const char *text, bneck_error *err);

/* The programs' "--device NAME" and "--device=NAME": when argv[*i] is one, writes the
 * override it stands for ("run.device=NAME", checked by config_load like any other) to
 * out, moves *i past its value and returns 1; returns 0 for any other argument, -1 with
 * err when the value is missing or does not fit out. */
int config_device_option(int argc, char **argv, int *i, char *out, size_t capacity,
                         bneck_error *err);

/* Writes the effective configuration as INI text (every key), for logs and results; it
 * reads back through config_load (a path longer than a line goes over indented lines).
 * Returns the length, or -1 when it does not fit capacity. */
int config_write(const config *cfg, char *out, int capacity);
/* The same text with every path on one line however long: for comparing settings, not
 * for reading back (run files made before paths were split hold this form). */
int config_write_unwrapped(const config *cfg, char *out, int capacity);

#endif
