/* bneck-theory: prints the closed-form bottleneck ratios (SPEC section 1) for chosen
 * (k, alpha, beta), and the exact per-pattern counts of the study's network (sections
 * 2-3) as the model builder computes them. No training, no data: instant answers. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/format.h"
#include "model/model.h"
#include "model/theory.h"

enum { EXIT_USAGE = 2, CELL_MAX = 64, COLUMNS_MAX = 16, MAX_INPUT_CHANNELS = 4096 };

/* Rows of the ratio table are the product of three lists; cap it so a typo such as
 * --k 1:4000 --alpha 1:4000 cannot print for hours. */
static const long max_ratio_rows = 10L * 1000 * 1000;

static const char default_k[] = "1:9";
static const char default_alpha[] = "2,4";
static const char default_beta[] = "1,8";

static void usage(FILE *out) {
    fprintf(out,
            "usage: bneck-theory [--ratios] [--k LIST] [--alpha LIST] [--beta LIST]\n"
            "                    [--patterns] [--input-channels N] [--pool-branch keras|pytorch]\n"
            "                    [--format table|csv|markdown] [--help]\n"
            "\n"
            "Prints the study's closed-form bottleneck savings and its networks' exact counts.\n"
            "\n"
            "Ratio table (--ratios, implied by --k/--alpha/--beta): one row per (alpha, beta, k),\n"
            "k varying fastest, with the saving of a bottleneck over a plain k x k conv that\n"
            "has c = beta*f input and f output channels, bottleneck width f/alpha:\n"
            "  BC   = plain / (1x1 -> kxk)        = alpha beta k^2 / (beta + k^2)\n"
            "  BCB  = plain / (1x1 -> kxk -> 1x1) = alpha^2 beta k^2 / (alpha (beta+1) + k^2)\n"
            "  and their k -> inf limits alpha*beta and alpha^2*beta.\n"
            "  --k LIST      kernel sizes      (default %s)\n"
            "  --alpha LIST  bottleneck factor (default %s)\n"
            "  --beta LIST   c / f             (default %s)\n"
            "  LIST is comma-separated numbers from 0.000001 to 1000000 and inclusive ranges\n"
            "  start:end[:step], e.g. 1:9, 1:9:2, 2,4, 1.5, 1,3:5, 0.5:4:0.5.\n"
            "\n"
            "Pattern table (--patterns, implied by --input-channels/--pool-branch): the study's\n"
            "patterns A..E built by the model builder, with parameters counted the Keras way\n"
            "(4 per BatchNorm channel), trainable parameters, the study's pseudo-FLOPs and\n"
            "true MACs per image, and A's pseudo-FLOPs and MACs divided by the pattern's\n"
            "(the saving; 1 for A). Step bytes: the activation bytes per image a training\n"
            "step moves op by op, each op reading its operands once and writing its result\n"
            "once in fp32 (forward x, y; backward dy, x, dx; weights left out), the floor of\n"
            "memory traffic where activations do not stay in cache (a GPU at this size), and\n"
            "A's divided by the pattern's. Ops: the ops a forward pass runs (convolutions,\n"
            "BatchNorm+ReLU, pools, dense; a group of layers run as one op counts once), as\n"
            "many again backward: where each costs a launch, the third cost beside FLOPs and\n"
            "bytes. In csv, alpha is 1 for the plain pattern A.\n"
            "  --input-channels N           image channels (default 3, CIFAR-10; 1 for Fashion-MNIST)\n"
            "  --pool-branch keras|pytorch  BatchNorm+ReLU after the pool branch's 1x1 conv\n"
            "                               (keras, default) or a bare conv (pytorch)\n"
            "\n"
            "  --format table|csv|markdown  default table (integers with thousands separators);\n"
            "                               csv has plain integers and holds one table, so pick\n"
            "                               --ratios or --patterns with it\n"
            "\n"
            "With neither table chosen, both are printed with their defaults.\n"
            "Exit status: 0 on success, 2 on a bad option or value.\n",
            default_k, default_alpha, default_beta);
}

static _Noreturn void usage_error(const char *message) {
    fprintf(stderr, "bneck-theory: %s\n(run bneck-theory --help for usage)\n", message);
    exit(EXIT_USAGE);
}

/* --- a small table writer ------------------------------------------------------------ */

typedef enum { FORMAT_TABLE, FORMAT_CSV, FORMAT_MARKDOWN } output_format;

typedef struct column {
    const char *header;     /* table and markdown */
    const char *csv_header; /* short, lower case, no spaces */
    int align_left;         /* text columns; numbers align right */
} column;

/* Writes the text of one cell into buffer (CELL_MAX bytes). */
typedef void (*cell_writer)(const void *context, long row, int col, output_format format,
                            char *buffer);

/* Cells are produced on demand (twice for the aligned formats: widths, then output) so
 * a long table needs no storage. */
static void write_table(FILE *out, output_format format, const column *columns, int column_count,
                        long row_count, cell_writer cell, const void *context) {
    char text[CELL_MAX];
    if (format == FORMAT_CSV) {
        for (int c = 0; c < column_count; c++)
            fprintf(out, "%s%s", c ? "," : "", columns[c].csv_header);
        fputc('\n', out);
        for (long r = 0; r < row_count; r++) {
            for (int c = 0; c < column_count; c++) {
                cell(context, r, c, format, text);
                fprintf(out, "%s%s", c ? "," : "", text);
            }
            fputc('\n', out);
        }
        return;
    }

    int width[COLUMNS_MAX];
    for (int c = 0; c < column_count; c++) {
        width[c] = (int)strlen(columns[c].header);
        if (format == FORMAT_MARKDOWN && width[c] < 3) width[c] = 3; /* room for "--:" */
    }
    for (long r = 0; r < row_count; r++)
        for (int c = 0; c < column_count; c++) {
            cell(context, r, c, format, text);
            int length = (int)strlen(text);
            if (length > width[c]) width[c] = length;
        }

    const char *open = format == FORMAT_MARKDOWN ? "| " : "";
    const char *gap = format == FORMAT_MARKDOWN ? " | " : "  ";
    const char *close = format == FORMAT_MARKDOWN ? " |" : "";
    fputs(open, out);
    for (int c = 0; c < column_count; c++)
        fprintf(out, "%s%*s", c ? gap : "", columns[c].align_left ? -width[c] : width[c],
                columns[c].header);
    fprintf(out, "%s\n", close);
    if (format == FORMAT_MARKDOWN) {
        for (int c = 0; c < column_count; c++) {
            fputs("|", out);
            if (columns[c].align_left) fputc(':', out);
            for (int i = 0; i < width[c] + 1; i++) fputc('-', out);
            if (!columns[c].align_left) fputc(':', out);
        }
        fputs("|\n", out);
    } else {
        for (int c = 0; c < column_count; c++) {
            fputs(c ? gap : "", out);
            for (int i = 0; i < width[c]; i++) fputc('-', out);
        }
        fputc('\n', out);
    }
    for (long r = 0; r < row_count; r++) {
        fputs(open, out);
        for (int c = 0; c < column_count; c++) {
            cell(context, r, c, format, text);
            fprintf(out, "%s%*s", c ? gap : "", columns[c].align_left ? -width[c] : width[c],
                    text);
        }
        fprintf(out, "%s\n", close);
    }
}

/* Exact integer; 2,960,874 in the human formats, 2960874 in csv. */
static void format_count(int64_t value, output_format format, char *buffer) {
    if (format == FORMAT_CSV)
        snprintf(buffer, CELL_MAX, "%" PRId64, value);
    else
        format_thousands(value, buffer, CELL_MAX);
}

/* Inputs such as k and beta: shortest faithful form. */
static void format_input(double value, char *buffer) { snprintf(buffer, CELL_MAX, "%.10g", value); }

/* Ratios: fixed decimals for reading, ten significant digits for csv consumers. */
static void format_ratio(double value, output_format format, char *buffer) {
    snprintf(buffer, CELL_MAX, format == FORMAT_CSV ? "%.10g" : "%.4f", value);
}

/* --- the ratio table --------------------------------------------------------------- */

typedef struct ratio_lists {
    const theory_list *k, *alpha, *beta;
} ratio_lists;

static const column ratio_columns[] = {
    {"k", "k", 0},
    {"alpha", "alpha", 0},
    {"beta", "beta", 0},
    {"BC", "bc", 0},
    {"BCB", "bcb", 0},
    {"BC k->inf", "bc_limit", 0},
    {"BCB k->inf", "bcb_limit", 0},
};

static void ratio_cell(const void *context, long row, int col, output_format format,
                       char *buffer) {
    const ratio_lists *lists = context;
    /* alpha outermost, k fastest: each (alpha, beta) curve is a contiguous run of rows. */
    const long k_count = lists->k->count, beta_count = lists->beta->count;
    const double k = lists->k->values[row % k_count];
    const double beta = lists->beta->values[(row / k_count) % beta_count];
    const double alpha = lists->alpha->values[row / (k_count * beta_count)];
    switch (col) {
    case 0: format_input(k, buffer); break;
    case 1: format_input(alpha, buffer); break;
    case 2: format_input(beta, buffer); break;
    case 3: format_ratio(theory_bc_ratio(k, alpha, beta), format, buffer); break;
    case 4: format_ratio(theory_bcb_ratio(k, alpha, beta), format, buffer); break;
    case 5: format_ratio(theory_bc_limit(alpha, beta), format, buffer); break;
    default: format_ratio(theory_bcb_limit(alpha, beta), format, buffer); break;
    }
}

/* --- the pattern table ------------------------------------------------------------- */

enum { PATTERN_COUNT = 5 };

typedef struct pattern_rows {
    model_counts counts[PATTERN_COUNT];
    int64_t traffic[PATTERN_COUNT]; /* model_activation_traffic */
    int ops[PATTERN_COUNT];         /* ops a forward pass runs (layer groups count once) */
} pattern_rows;

static const column pattern_columns[] = {
    {"pattern", "pattern", 1},
    {"mode", "mode", 0},
    {"alpha", "alpha", 0},
    {"params", "params", 0},
    {"trainable", "trainable", 0},
    {"pseudo-FLOPs", "pseudo_flops", 0},
    {"MACs", "macs", 0},
    {"A/pseudo-FLOPs", "a_over_pseudo_flops", 0},
    {"A/MACs", "a_over_macs", 0},
    {"step bytes", "step_activation_bytes", 0},
    {"A/bytes", "a_over_step_activation_bytes", 0},
    {"ops", "ops_per_pass", 0},
};

static void pattern_cell(const void *context, long row, int col, output_format format,
                         char *buffer) {
    const pattern_rows *rows = context;
    const model_pattern *pattern = &model_study_patterns[row];
    const model_counts *counts = &rows->counts[row];
    const model_counts *plain = &rows->counts[0]; /* pattern A */
    switch (col) {
    case 0: snprintf(buffer, CELL_MAX, "%s", pattern->name); break;
    case 1: snprintf(buffer, CELL_MAX, "%d", pattern->mode); break;
    case 2:
        /* The plain pattern has no bottleneck: "-" as in the study's table. */
        if (pattern->mode == 1 && format != FORMAT_CSV)
            snprintf(buffer, CELL_MAX, "-");
        else
            snprintf(buffer, CELL_MAX, "%d", pattern->mode == 1 ? 1 : pattern->alpha);
        break;
    case 3: format_count(counts->params, format, buffer); break;
    case 4: format_count(counts->trainable, format, buffer); break;
    case 5: format_count(counts->pseudo_flops, format, buffer); break;
    case 6: format_count(counts->macs, format, buffer); break;
    case 7:
        format_ratio((double)plain->pseudo_flops / (double)counts->pseudo_flops, format, buffer);
        break;
    case 8: format_ratio((double)plain->macs / (double)counts->macs, format, buffer); break;
    case 9: format_count(rows->traffic[row], format, buffer); break;
    case 10: format_ratio((double)rows->traffic[0] / (double)rows->traffic[row], format, buffer); break;
    default: snprintf(buffer, CELL_MAX, "%d", rows->ops[row]);
    }
}

/* --- options ----------------------------------------------------------------------- */

typedef struct options {
    int want_ratios, want_patterns;
    output_format format;
    int input_channels;
    pool_branch_form pool_branch;
} options;

static theory_list k_list, alpha_list, beta_list; /* large: off the stack */

static void parse_list_or_exit(const char *option, const char *text, theory_list *list) {
    bneck_error err;
    if (theory_parse_list(option, text, list, &err) != 0) usage_error(err.message);
}

static int parse_input_channels(const char *text) {
    char message[256];
    long value = 0;
    const char *p = text;
    if (!*p) usage_error("--input-channels: missing value; expected an integer 1..4096");
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || value > MAX_INPUT_CHANNELS) {
            snprintf(message, sizeof message,
                     "--input-channels: bad value '%.40s': expected an integer 1..%d", text,
                     MAX_INPUT_CHANNELS);
            usage_error(message);
        }
        value = value * 10 + (*p - '0');
    }
    if (value < 1 || value > MAX_INPUT_CHANNELS) {
        snprintf(message, sizeof message,
                 "--input-channels: bad value '%.40s': expected an integer 1..%d", text,
                 MAX_INPUT_CHANNELS);
        usage_error(message);
    }
    return (int)value;
}

static void parse_options(int argc, char **argv, options *opts) {
    const char *k_text = NULL, *alpha_text = NULL, *beta_text = NULL;
    int format_given = 0;
    char message[512];
    *opts = (options){0, 0, FORMAT_TABLE, 3, POOL_BRANCH_KERAS};

    static const char *const flags[] = {"--ratios", "--patterns", NULL};
    static const char *const valued[] = {"--k", "--alpha", "--beta", "--format",
                                         "--input-channels", "--pool-branch", NULL};
    static const char *const formats[] = {"table", "csv", "markdown", NULL};
    static const char *const pool_branches[] = {"keras", "pytorch", NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        cli_option o;
        const int kind = cli_next(&o, argc, argv, &i, flags, valued, message, sizeof message);
        if (kind < 0) usage_error(message);
        if (kind == CLI_ARGUMENT) {
            snprintf(message, sizeof message, "unexpected argument '%.200s'", o.value);
            usage_error(message);
        }
        if (!strcmp(o.name, "--ratios")) {
            opts->want_ratios = 1;
        } else if (!strcmp(o.name, "--patterns")) {
            opts->want_patterns = 1;
        } else if (!strcmp(o.name, "--k")) {
            k_text = o.value;
            opts->want_ratios = 1;
        } else if (!strcmp(o.name, "--alpha")) {
            alpha_text = o.value;
            opts->want_ratios = 1;
        } else if (!strcmp(o.name, "--beta")) {
            beta_text = o.value;
            opts->want_ratios = 1;
        } else if (!strcmp(o.name, "--format")) {
            static const output_format chosen[] = {FORMAT_TABLE, FORMAT_CSV, FORMAT_MARKDOWN};
            const int format = cli_pick(o.name, o.value, formats, message, sizeof message);
            if (format < 0) usage_error(message);
            format_given = 1;
            opts->format = chosen[format];
        } else if (!strcmp(o.name, "--input-channels")) {
            opts->input_channels = parse_input_channels(o.value);
            opts->want_patterns = 1;
        } else { /* --pool-branch */
            static const pool_branch_form chosen[] = {POOL_BRANCH_KERAS, POOL_BRANCH_PYTORCH};
            const int branch = cli_pick(o.name, o.value, pool_branches, message, sizeof message);
            if (branch < 0) usage_error(message);
            opts->pool_branch = chosen[branch];
            opts->want_patterns = 1;
        }
    }

    const int neither = !opts->want_ratios && !opts->want_patterns;
    if (neither) opts->want_ratios = opts->want_patterns = 1;
    if (format_given && opts->format == FORMAT_CSV && opts->want_ratios && opts->want_patterns)
        usage_error(neither ? "--format csv prints one table: add --ratios or --patterns"
                            : "--format csv prints one table: ask for --ratios or --patterns "
                              "(or their options), not both");

    parse_list_or_exit("--k", k_text ? k_text : default_k, &k_list);
    parse_list_or_exit("--alpha", alpha_text ? alpha_text : default_alpha, &alpha_list);
    parse_list_or_exit("--beta", beta_text ? beta_text : default_beta, &beta_list);
    if ((double)k_list.count * alpha_list.count * beta_list.count > (double)max_ratio_rows) {
        snprintf(message, sizeof message,
                 "--k, --alpha, --beta: %d x %d x %d rows is more than the %ld allowed",
                 k_list.count, alpha_list.count, beta_list.count, max_ratio_rows);
        usage_error(message);
    }
}

int main(int argc, char **argv) {
    options opts;
    parse_options(argc, argv, &opts);
    const int both = opts.want_ratios && opts.want_patterns;

    if (opts.want_ratios) {
        if (both) printf("Savings of a bottleneck over a plain k x k conv (plain cost / cost)\n\n");
        const ratio_lists lists = {&k_list, &alpha_list, &beta_list};
        write_table(stdout, opts.format, ratio_columns,
                    (int)(sizeof ratio_columns / sizeof ratio_columns[0]),
                    (long)k_list.count * alpha_list.count * beta_list.count, ratio_cell, &lists);
    }

    if (opts.want_patterns) {
        static model built; /* large: keep it off the stack */
        pattern_rows rows;
        for (int i = 0; i < PATTERN_COUNT; i++) {
            const model_spec spec = {model_study_patterns[i].mode, model_study_patterns[i].alpha,
                                     opts.input_channels, opts.pool_branch,
                                     MODEL_LAYERS_GROUPED};
            bneck_error err;
            if (model_build(&built, &spec, &err) != 0) usage_error(err.message);
            rows.counts[i] = built.counts;
            rows.traffic[i] = model_activation_traffic(&built);
            rows.ops[i] = model_ops_per_pass(&built);
        }
        if (model_study_patterns[0].mode != 1)
            BNECK_FAIL("pattern %s is not the plain pattern the savings are relative to",
                       model_study_patterns[0].name);
        if (both)
            printf("\nPer-pattern counts (%d input channels, %s pool branch; per image)\n\n",
                   opts.input_channels, opts.pool_branch == POOL_BRANCH_KERAS ? "keras" : "pytorch");
        write_table(stdout, opts.format, pattern_columns,
                    (int)(sizeof pattern_columns / sizeof pattern_columns[0]), PATTERN_COUNT,
                    pattern_cell, &rows);
    }

    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("bneck-theory: writing the output");
        return 1;
    }
    return 0;
}
