/* bneck-report: the study's results table and plots from a sweep file (sweep.h5), and
 * nothing else: it reads the file, never the training code, so it reports any sweep,
 * finished or copied from a cluster, on any machine.
 *
 * The table has one row per pattern of /summary beside the study's published PyTorch
 * numbers (SPEC section 5), the speed-up over them, and the E/A epoch-time ratio against
 * the pseudo-FLOP ratio (the gap between counted work and measured time) and against the
 * ratio of activation bytes moved (what the gap follows where memory sets the time). */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/format.h"
#include "data/dataset.h"
#include "model/model.h"
#include "results/report_plot.h"
#include "results/report_read.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, CELL_MAX = 96, COLUMNS_MAX = 20, PATH_TEXT = 4096 };

typedef enum { FORMAT_TEXT, FORMAT_MARKDOWN, FORMAT_CSV } output_format;

static void usage(FILE *out) {
    fprintf(out,
            "usage: bneck-report SWEEP.h5|OUTPUT [--format text|markdown|csv] [--plots DIR] [--no-plots]\n"
            "\n"
            "Prints the study's results table from a bneck sweep file (or a sweep's OUTPUT\n"
            "directory, for its sweep.h5), one row per pattern of /summary: mode, alpha,\n"
            "complete runs n, the median (sd) over runs of each run's best validation accuracy\n"
            "in percent, the median (sd) seconds per epoch over every run's\n"
            "epochs after its first, parameters, pseudo-FLOPs and MACs per image, and the training\n"
            "GFLOP/s achieved. Beside each of the study's patterns A..E (same mode and alpha) it\n"
            "shows the study's published PyTorch numbers (SPEC section 5) and the speed-up of our\n"
            "s/epoch over theirs; with A and E present, the E/A epoch-time ratio against the\n"
            "pseudo-FLOP ratio, and the ratio of the activation bytes a step moves op by op\n"
            "(bneck-theory's step bytes).\n"
            "\n"
            "  --format text|markdown|csv  the table's form (default text). csv is the table alone,\n"
            "                              medians and sds in separate columns, no separators in\n"
            "                              numbers, empty cells where there is no value\n"
            "  --plots DIR                 where the plots go (default: the sweep file's directory\n"
            "                              + /plots; created when missing)\n"
            "  --no-plots                  the table only\n"
            "\n"
            "Plots (PNG): %s, %s, %s.\n"
            "Their names are printed as they are written (on stderr with --format csv, so stdout\n"
            "stays one csv table); a plot with nothing to draw yet (no complete run, or none past\n"
            "its first epoch) is skipped, and the line says why.\n"
            "Exit status: 0 on success, 1 when the file cannot be read or a plot fails, 2 on a\n"
            "bad option.\n",
            report_plot_val_acc_name, report_plot_epoch_time_name, report_plot_theory_name);
}

static _Noreturn void usage_error(const char *message) {
    fprintf(stderr, "bneck-report: %s\n(run bneck-report --help for usage)\n", message);
    exit(EXIT_USAGE);
}

/* --- the study's published PyTorch rows (SPEC section 5) --------------------------------- */

typedef struct study_row {
    const char *pattern;
    int mode, alpha;            /* alpha is irrelevant for mode 1 */
    double val_acc_pct, val_acc_sd_pct;
    double epoch_s, epoch_s_sd;
} study_row;

static const study_row study_pytorch[] = {
    {"A", 1, 0, 89.37, 0.14, 46.75, 0.26}, {"B", 2, 2, 90.85, 0.13, 45.58, 0.16},
    {"C", 2, 4, 90.21, 0.29, 40.39, 0.36}, {"D", 3, 2, 90.83, 0.09, 48.53, 0.40},
    {"E", 3, 4, 89.90, 0.22, 41.47, 0.21},
};

/* The study's row for a pattern of ours, when it is the same network: same name, mode
 * and (for bottlenecked modes) alpha. A pattern that shares a name but not the
 * network is not compared. */
static const study_row *study_match(const report_pattern *pattern) {
    for (size_t i = 0; i < sizeof study_pytorch / sizeof study_pytorch[0]; i++) {
        const study_row *row = &study_pytorch[i];
        if (strcmp(row->pattern, pattern->pattern) == 0 && row->mode == pattern->mode &&
            (row->mode == 1 || row->alpha == pattern->alpha))
            return row;
    }
    return NULL;
}

static const report_pattern *find_study_pattern(const report_sweep *sweep, const char *name) {
    for (int i = 0; i < sweep->pattern_count; i++) {
        const study_row *row = study_match(&sweep->patterns[i]);
        if (row && strcmp(row->pattern, name) == 0) return &sweep->patterns[i];
    }
    return NULL;
}

/* --- cells ------------------------------------------------------------------------------- */

typedef struct column {
    const char *header;
    int align_left;             /* text; numbers align right */
} column;

typedef struct table {
    const column *columns;
    int column_count;
    int row_count;
    char (*cells)[COLUMNS_MAX][CELL_MAX]; /* row_count rows */
} table;

/* 2,960,874 in the human formats, 2960874 in csv. */
static void format_count(int64_t value, output_format format, char *cell) {
    if (format == FORMAT_CSV)
        snprintf(cell, CELL_MAX, "%" PRId64, value);
    else
        format_thousands(value, cell, CELL_MAX);
}

/* Seconds keep two decimals, more below one second so a fast epoch still shows three
 * significant digits (0.0523, not 0.05). */
static int seconds_decimals(double seconds) {
    if (!isfinite(seconds) || seconds >= 1 || seconds <= 0) return 2;
    const int decimals = 2 + (int)ceil(-log10(seconds));
    return decimals > 8 ? 8 : decimals;
}

/* "90.12 (0.15)": a median with its sd; "-" for an sd that does not exist (n < 2). */
static void format_median_sd(double median, double sd, int decimals, char *cell) {
    if (!isfinite(median)) {
        snprintf(cell, CELL_MAX, "-");
        return;
    }
    if (isfinite(sd))
        snprintf(cell, CELL_MAX, "%.*f (%.*f)", decimals, median, decimals, sd);
    else
        snprintf(cell, CELL_MAX, "%.*f (-)", decimals, median);
}

/* csv numbers: full precision; NaN or absent is an empty cell (pandas reads NaN). */
static void format_csv_number(double value, char *cell) {
    if (isfinite(value)) snprintf(cell, CELL_MAX, "%.10g", value);
    else cell[0] = '\0';
}

/* Compared in training images per second, so a sweep on a subset or on Fashion-MNIST
 * still compares fairly with the study's 50,000-image CIFAR-10 epochs. Our images/s comes
 * back from achieved FLOP/s = 6 x MACs x images/s. */
enum { STUDY_TRAIN_IMAGES = 50000 };
static double speedup_over_study(const report_pattern *pattern, const study_row *study) {
    if (!study || !(pattern->achieved_flops > 0) || pattern->macs <= 0) return NAN;
    const double our_images_per_s = pattern->achieved_flops / (6.0 * (double)pattern->macs);
    return our_images_per_s * study->epoch_s / STUDY_TRAIN_IMAGES;
}

static const column display_columns[] = {
    {"pattern", 1},      {"mode", 0},         {"alpha", 0},      {"n", 0},
    {"val acc % (sd)", 0}, {"s/epoch (sd)", 0}, {"params", 0},     {"pseudo-FLOPs", 0},
    {"MACs", 0},         {"GFLOP/s", 0},      {"study val acc % (sd)", 0},
    {"study s/epoch (sd)", 0},                {"speed-up", 0},
};

static const column csv_columns[] = {
    {"pattern", 1},
    {"mode", 0},
    {"alpha", 0},
    {"n", 0},
    {"val_acc_median_pct", 0},
    {"val_acc_sd_pct", 0},
    {"epoch_s_median", 0},
    {"epoch_s_sd", 0},
    {"params", 0},
    {"pseudo_flops", 0},
    {"macs", 0},
    {"achieved_gflops", 0},
    {"study_val_acc_median_pct", 0},
    {"study_val_acc_sd_pct", 0},
    {"study_epoch_s_median", 0},
    {"study_epoch_s_sd", 0},
    {"speedup_vs_study", 0},
};

#define COUNT_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))

static void display_row(const report_pattern *pattern, output_format format,
                        char row[COLUMNS_MAX][CELL_MAX]) {
    const study_row *study = study_match(pattern);
    const int decimals = seconds_decimals(pattern->median_epoch_s);
    int c = 0;
    snprintf(row[c++], CELL_MAX, "%s", pattern->pattern);
    snprintf(row[c++], CELL_MAX, "%d", pattern->mode);
    /* The plain pattern has no bottleneck, so no alpha: "-" as in the study's table. */
    if (pattern->mode == 1) snprintf(row[c++], CELL_MAX, "-");
    else snprintf(row[c++], CELL_MAX, "%d", pattern->alpha);
    snprintf(row[c++], CELL_MAX, "%d", pattern->n);
    format_median_sd(100 * pattern->median_best_val_acc, 100 * pattern->sd_best_val_acc, 2,
                     row[c++]);
    format_median_sd(pattern->median_epoch_s, pattern->sd_epoch_s, decimals, row[c++]);
    format_count(pattern->params, format, row[c++]);
    format_count(pattern->pseudo_flops, format, row[c++]);
    format_count(pattern->macs, format, row[c++]);
    if (isfinite(pattern->achieved_flops))
        snprintf(row[c++], CELL_MAX, "%.1f", pattern->achieved_flops / 1e9);
    else
        snprintf(row[c++], CELL_MAX, "-");
    if (study) {
        format_median_sd(study->val_acc_pct, study->val_acc_sd_pct, 2, row[c++]);
        format_median_sd(study->epoch_s, study->epoch_s_sd, 2, row[c++]);
        const double speedup = speedup_over_study(pattern, study);
        if (isfinite(speedup)) snprintf(row[c++], CELL_MAX, "%.2fx", speedup);
        else snprintf(row[c++], CELL_MAX, "-");
    } else {
        for (int i = 0; i < 3; i++) snprintf(row[c++], CELL_MAX, "-");
    }
}

static void csv_row(const report_pattern *pattern, char row[COLUMNS_MAX][CELL_MAX]) {
    const study_row *study = study_match(pattern);
    int c = 0;
    snprintf(row[c++], CELL_MAX, "%s", pattern->pattern);
    snprintf(row[c++], CELL_MAX, "%d", pattern->mode);
    snprintf(row[c++], CELL_MAX, "%d", pattern->alpha);
    snprintf(row[c++], CELL_MAX, "%d", pattern->n);
    format_csv_number(100 * pattern->median_best_val_acc, row[c++]);
    format_csv_number(100 * pattern->sd_best_val_acc, row[c++]);
    format_csv_number(pattern->median_epoch_s, row[c++]);
    format_csv_number(pattern->sd_epoch_s, row[c++]);
    format_count(pattern->params, FORMAT_CSV, row[c++]);
    format_count(pattern->pseudo_flops, FORMAT_CSV, row[c++]);
    format_count(pattern->macs, FORMAT_CSV, row[c++]);
    format_csv_number(pattern->achieved_flops / 1e9, row[c++]);
    format_csv_number(study ? study->val_acc_pct : NAN, row[c++]);
    format_csv_number(study ? study->val_acc_sd_pct : NAN, row[c++]);
    format_csv_number(study ? study->epoch_s : NAN, row[c++]);
    format_csv_number(study ? study->epoch_s_sd : NAN, row[c++]);
    format_csv_number(speedup_over_study(pattern, study), row[c++]);
}

/* --- writing a table ----------------------------------------------------------------------- */

/* A csv field as RFC 4180 wants it: quoted only when it holds a comma, quote or newline. */
static void write_csv_field(FILE *out, const char *text) {
    if (!strpbrk(text, ",\"\n\r")) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *c = text; *c; c++) {
        if (*c == '"') fputc('"', out);
        fputc(*c, out);
    }
    fputc('"', out);
}

/* A markdown cell: a '|' would end the cell early. */
static void escape_markdown(const char *text, char *cell) {
    size_t o = 0;
    for (const char *c = text; *c && o + 2 < CELL_MAX; c++) {
        if (*c == '|') cell[o++] = '\\';
        cell[o++] = *c;
    }
    cell[o] = '\0';
}

static void write_table(FILE *out, output_format format, const table *t) {
    if (format == FORMAT_CSV) {
        for (int c = 0; c < t->column_count; c++) {
            if (c) fputc(',', out);
            write_csv_field(out, t->columns[c].header);
        }
        fputc('\n', out);
        for (int r = 0; r < t->row_count; r++) {
            for (int c = 0; c < t->column_count; c++) {
                if (c) fputc(',', out);
                write_csv_field(out, t->cells[r][c]);
            }
            fputc('\n', out);
        }
        return;
    }
    if (format == FORMAT_MARKDOWN)
        for (int r = 0; r < t->row_count; r++)
            for (int c = 0; c < t->column_count; c++) {
                char escaped[CELL_MAX];
                escape_markdown(t->cells[r][c], escaped);
                memcpy(t->cells[r][c], escaped, CELL_MAX);
            }

    int width[COLUMNS_MAX];
    for (int c = 0; c < t->column_count; c++) {
        width[c] = (int)strlen(t->columns[c].header);
        if (format == FORMAT_MARKDOWN && width[c] < 3) width[c] = 3; /* room for "--:" */
        for (int r = 0; r < t->row_count; r++) {
            const int length = (int)strlen(t->cells[r][c]);
            if (length > width[c]) width[c] = length;
        }
    }
    const int markdown = format == FORMAT_MARKDOWN;
    const char *gap = markdown ? " | " : "  ";
    fputs(markdown ? "| " : "", out);
    for (int c = 0; c < t->column_count; c++)
        fprintf(out, "%s%*s", c ? gap : "", t->columns[c].align_left ? -width[c] : width[c],
                t->columns[c].header);
    fputs(markdown ? " |\n" : "\n", out);
    for (int c = 0; c < t->column_count; c++) {
        if (markdown) {
            /* A colon on the side the column aligns to. */
            fputc('|', out);
            fputc(t->columns[c].align_left ? ':' : '-', out);
            for (int i = 0; i < width[c]; i++) fputc('-', out);
            fputc(t->columns[c].align_left ? '-' : ':', out);
        } else {
            fputs(c ? gap : "", out);
            for (int i = 0; i < width[c]; i++) fputc('-', out);
        }
    }
    fputs(markdown ? "|\n" : "\n", out);
    for (int r = 0; r < t->row_count; r++) {
        fputs(markdown ? "| " : "", out);
        for (int c = 0; c < t->column_count; c++)
            fprintf(out, "%s%*s", c ? gap : "", t->columns[c].align_left ? -width[c] : width[c],
                    t->cells[r][c]);
        fputs(markdown ? " |\n" : "\n", out);
    }
}

/* --- the report ---------------------------------------------------------------------------- */

static const char *attribute_or(const report_sweep *sweep, int which, const char *fallback) {
    const char *text = sweep->attributes[which].text;
    return text && text[0] ? text : fallback;
}

static void write_header(FILE *out, output_format format, const char *path,
                         const report_sweep *sweep) {
    const int complete = report_runs_with_status(sweep, "complete");
    const int diverged = report_runs_with_status(sweep, "diverged");
    const int unfinished = sweep->run_count - complete - diverged;
    const char *job = attribute_or(sweep, REPORT_ATTR_SLURM_JOB_ID, NULL);
    const char *bullet = format == FORMAT_MARKDOWN ? "- " : "  ";
    if (format == FORMAT_MARKDOWN) fprintf(out, "## bneck sweep `%s`\n\n", path);
    else fprintf(out, "bneck sweep %s\n", path);
    fprintf(out, "%s%d run%s in /runs, %d complete", bullet, sweep->run_count,
            sweep->run_count == 1 ? "" : "s", complete);
    if (diverged) fprintf(out, ", %d diverged", diverged);
    if (unfinished) fprintf(out, ", %d unfinished", unfinished);
    /* a sweep still going on (sweep.h5 is rewritten as its runs finish) */
    const char *planned = attribute_or(sweep, REPORT_ATTR_RUNS_PLANNED, NULL);
    const long not_begun = planned ? strtol(planned, NULL, 10) - sweep->run_count : 0;
    if (not_begun > 0) fprintf(out, ", %ld not begun", not_begun);
    fprintf(out, "; %d pattern%s in /summary\n", sweep->pattern_count,
            sweep->pattern_count == 1 ? "" : "s");
    fprintf(out, "%screated %s, git %s, format %s\n", bullet,
            attribute_or(sweep, REPORT_ATTR_CREATED, "(unknown)"),
            attribute_or(sweep, REPORT_ATTR_GIT_COMMIT, "(unknown)"),
            attribute_or(sweep, REPORT_ATTR_FORMAT, "(none)"));
    fprintf(out, "%sdevices: %s; hosts: %s; MPI ranks: %s%s%s\n", bullet,
            attribute_or(sweep, REPORT_ATTR_DEVICES, "(unknown)"),
            attribute_or(sweep, REPORT_ATTR_HOSTS, "(unknown)"),
            attribute_or(sweep, REPORT_ATTR_MPI_SIZE, "(unknown)"), job ? "; Slurm job " : "",
            job ? job : "");
    fputc('\n', out);
}

/* The value of `key = value` in the sweep's config attribute, or "" (an older file, or a
 * key it does not hold). */
/* A key's value as the sweep used it: from the settings attribute (every key, overrides
 * applied), or in a sweep written before it, from the config file's text. */
static void config_setting(const report_sweep *sweep, const char *key, char *out, size_t size) {
    out[0] = '\0';
    const char *text = sweep->attributes[REPORT_ATTR_SETTINGS].text;
    if (!text || !text[0]) text = sweep->attributes[REPORT_ATTR_CONFIG].text;
    const size_t key_length = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, key_length) != 0 || strncmp(line + key_length, " = ", 3) != 0)
            continue;
        const char *value = line + key_length + 3;
        snprintf(out, size, "%.*s", (int)strcspn(value, "\r\n"), value);
        return;
    }
}

/* The activation bytes per image a training step of the pattern moves op by op
 * (model_activation_traffic: bneck-theory's step bytes), for the input channels and pool
 * branch of the sweep's settings (CIFAR-10's 3 channels and Keras's branch where they do
 * not say); 0 when the pattern cannot be built. */
static int64_t step_bytes_of(const report_sweep *sweep, const report_pattern *p) {
    char dataset[64], pool_branch[16];
    config_setting(sweep, "dataset", dataset, sizeof dataset);
    config_setting(sweep, "pool_branch", pool_branch, sizeof pool_branch);
    const model_spec spec = {p->mode, p->alpha, dataset[0] ? dataset_channels(dataset) : 3,
                             strcmp(pool_branch, "pytorch") == 0 ? POOL_BRANCH_PYTORCH
                                                                 : POOL_BRANCH_KERAS,
                             MODEL_LAYERS_GROUPED};
    static model built; /* large: keep it off the stack */
    return model_build(&built, &spec, NULL) == 0 ? model_activation_traffic(&built) : 0;
}

static void write_notes(FILE *out, output_format format, const report_sweep *sweep) {
    const char *ddof = attribute_or(sweep, REPORT_ATTR_SD_DDOF, "1");
    const char *bullet = format == FORMAT_MARKDOWN ? "- " : "";
    fputc('\n', out);
    fprintf(out, "%sval acc: median (sd) over a pattern's complete runs of each run's best "
                 "validation accuracy; sd with ddof %s.\n", bullet, ddof);
    fprintf(out, "%ss/epoch: median (sd) over every epoch after each run's first (its only "
                 "one in a run of one epoch). GFLOP/s: "
                 "training arithmetic achieved, 6 x MACs x training images/s, where images/s is "
                 "the median over complete runs of each run's median over the same epochs.\n", bullet);
    fprintf(out, "%sstudy: the published PyTorch numbers (SPEC section 5; Google Colab GPU, "
                 "2018); speed-up = our training images/s (as for GFLOP/s) over the study's "
                 "(50,000 images per study epoch).\n", bullet);
    char dataset[64];
    config_setting(sweep, "dataset", dataset, sizeof dataset);
    if (dataset[0] && strcmp(dataset, "cifar10") != 0)
        fprintf(out, "%sthe study trained on CIFAR-10 and this sweep on %s: its accuracies "
                     "do not compare with the study's.\n", bullet, dataset);

    /* The study's finding in one line: how much less E computes than A, against how much
     * less time its epoch takes. */
    const report_pattern *a = find_study_pattern(sweep, "A");
    const report_pattern *e = find_study_pattern(sweep, "E");
    if (!a || !e || !(a->median_epoch_s > 0) || a->pseudo_flops <= 0) return;
    const double time_ratio = e->median_epoch_s / a->median_epoch_s;
    const double flop_ratio = (double)e->pseudo_flops / (double)a->pseudo_flops;
    const double study_ratio = study_pytorch[4].epoch_s / study_pytorch[0].epoch_s;
    const double change = time_ratio <= 1 ? 1 / time_ratio : time_ratio;
    fprintf(out,
            "%sE/A: epoch-time ratio %.3f vs pseudo-FLOP ratio %.3f: E counts %.2fx less work "
            "than A and its epochs are %.2fx %s (the study's PyTorch epoch-time ratio: %.3f).\n",
            bullet, time_ratio, flop_ratio, 1 / flop_ratio, change,
            time_ratio <= 1 ? "shorter" : "longer", study_ratio);
    /* ... and how many bytes it moves: what sets the time where arithmetic does not */
    const int64_t a_bytes = step_bytes_of(sweep, a), e_bytes = step_bytes_of(sweep, e);
    if (a_bytes > 0 && e_bytes > 0)
        fprintf(out,
                "%sE/A: step-bytes ratio %.3f: op by op, a training step of E moves %.2fx the "
                "activation bytes per image of A's (%.2f against %.2f MB; bneck-theory "
                "--patterns): where memory traffic or the op count sets the time, its fewer "
                "FLOPs save little.\n",
                bullet, (double)e_bytes / (double)a_bytes, (double)e_bytes / (double)a_bytes,
                (double)e_bytes / 1e6, (double)a_bytes / 1e6);
}

static void write_report(FILE *out, output_format format, const char *path,
                         const report_sweep *sweep) {
    const int csv = format == FORMAT_CSV;
    table t = {csv ? csv_columns : display_columns,
               csv ? COUNT_OF(csv_columns) : COUNT_OF(display_columns), sweep->pattern_count,
               bneck_calloc((size_t)sweep->pattern_count, sizeof *t.cells)};
    for (int r = 0; r < sweep->pattern_count; r++) {
        if (csv) csv_row(&sweep->patterns[r], t.cells[r]);
        else display_row(&sweep->patterns[r], format, t.cells[r]);
    }
    if (!csv) write_header(out, format, path, sweep);
    write_table(out, format, &t);
    if (!csv) write_notes(out, format, sweep);
    free(t.cells);
}

/* --- options ------------------------------------------------------------------------------- */

typedef struct options {
    const char *sweep_path;
    output_format format;
    const char *plot_directory;  /* NULL: next to the sweep file */
    int plots;
} options;

static void parse_options(int argc, char **argv, options *opts) {
    char message[512];
    int plots_given = 0, no_plots_given = 0;
    *opts = (options){NULL, FORMAT_TEXT, NULL, 1};
    static const char *const flags[] = {"--no-plots", NULL};
    static const char *const valued[] = {"--format", "--plots", NULL};
    static const char *const formats[] = {"text", "markdown", "csv", NULL};
    static const output_format chosen[] = {FORMAT_TEXT, FORMAT_MARKDOWN, FORMAT_CSV};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        cli_option o;
        const int kind = cli_next(&o, argc, argv, &i, flags, valued, message, sizeof message);
        if (kind < 0) usage_error(message);
        if (kind == CLI_ARGUMENT) {
            if (opts->sweep_path) {
                snprintf(message, sizeof message,
                         "one sweep file at a time: got '%.200s' after '%.200s'", o.value,
                         opts->sweep_path);
                usage_error(message);
            }
            opts->sweep_path = o.value;
        } else if (!strcmp(o.name, "--no-plots")) {
            no_plots_given = 1;
            opts->plots = 0;
        } else if (!strcmp(o.name, "--format")) {
            const int format = cli_pick(o.name, o.value, formats, message, sizeof message);
            if (format < 0) usage_error(message);
            opts->format = chosen[format];
        } else { /* --plots DIR */
            if (!o.value[0]) usage_error("--plots needs a directory");
            plots_given = 1;
            opts->plot_directory = o.value;
        }
    }
    if (!opts->sweep_path) usage_error("missing the sweep file (SWEEP.h5)");
    if (plots_given && no_plots_given) usage_error("--plots and --no-plots contradict each other");
}

/* The sweep file's directory + "/plots". */
static void default_plot_directory(const char *sweep_path, char *directory, size_t size) {
    const char *slash = strrchr(sweep_path, '/');
    if (!slash) snprintf(directory, size, "plots");
    else if (slash == sweep_path) snprintf(directory, size, "/plots");
    else snprintf(directory, size, "%.*s/plots", (int)(slash - sweep_path), sweep_path);
}

/* A sweep's output directory stands for its sweep.h5. 0, or EXIT_FAILED with a message. */
static int sweep_file_of(const char *given, char *path, size_t size) {
    struct stat info;
    if (stat(given, &info) != 0 || !S_ISDIR(info.st_mode)) {
        snprintf(path, size, "%s", given);
        return 0;
    }
    size_t length = strlen(given);
    while (length > 1 && given[length - 1] == '/') length--;
    if (snprintf(path, size, "%.*s/sweep.h5", (int)length, given) >= (int)size) {
        fprintf(stderr, "bneck-report: %s: path too long\n", given);
        return EXIT_FAILED;
    }
    if (access(path, F_OK) != 0) {
        char record[PATH_TEXT + 16];
        snprintf(record, sizeof record, "%.*s/sweep.ini", (int)length, given);
        if (access(record, F_OK) == 0)
            fprintf(stderr,
                    "bneck-report: %s holds no sweep.h5 yet: a sweep writes it once its first "
                    "run is done ('bneck-sweep %s --dry-run' shows how far it is)\n", given, record);
        else
            fprintf(stderr, "bneck-report: %s is a directory without a sweep.h5 (nor a sweep.ini: "
                            "it is not a sweep's output)\n", given);
        return EXIT_FAILED;
    }
    return 0;
}

int main(int argc, char **argv) {
    options opts;
    parse_options(argc, argv, &opts);
    char sweep_path[PATH_TEXT];
    if (sweep_file_of(opts.sweep_path, sweep_path, sizeof sweep_path) != 0) return EXIT_FAILED;
    opts.sweep_path = sweep_path;

    report_sweep sweep;
    bneck_error err;
    if (report_sweep_read(opts.sweep_path, &sweep, &err) != 0) {
        fprintf(stderr, "bneck-report: %s\n", err.message);
        return EXIT_FAILED;
    }
    write_report(stdout, opts.format, opts.sweep_path, &sweep);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("bneck-report: writing the table");
        report_sweep_free(&sweep);
        return EXIT_FAILED;
    }

    int status = 0;
    if (opts.plots) {
        char directory[PATH_TEXT];
        if (opts.plot_directory) snprintf(directory, sizeof directory, "%s", opts.plot_directory);
        else default_plot_directory(opts.sweep_path, directory, sizeof directory);
        /* The csv on stdout stays a single table; file names go beside it on stderr. */
        FILE *names_out = opts.format == FORMAT_CSV ? stderr : stdout;
        if (opts.format != FORMAT_CSV) fputc('\n', names_out);
        if (report_plots_write(&sweep, directory, names_out, &err) != 0) {
            fflush(stdout);
            fprintf(stderr, "bneck-report: plot failed: %s\n", err.message);
            status = EXIT_FAILED;
        }
    }
    report_sweep_free(&sweep);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("bneck-report: writing the output");
        return EXIT_FAILED;
    }
    return status;
}
