#include "results/report_plot.h"

#include <errno.h>
#include <math.h>
#include <plplot/plplot.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/theory.h"

const char report_plot_val_acc_name[] = "val_acc_per_epoch.png";
const char report_plot_epoch_time_name[] = "epoch_s_vs_pseudo_flops.png";
const char report_plot_theory_name[] = "theory_ratios.png";

enum { PLOT_PATH_MAX = 4096, PLOT_LABEL_MAX = 256 };

/* --- colours ----------------------------------------------------------------------------
 * cmap0 is ours: white page, black ink, a light grid, then a palette of distinguishable
 * colours (the matplotlib "tab10" hues) twice, opaque and translucent for bands. */
enum {
    COLOR_BACKGROUND = 0,
    COLOR_INK = 1,
    COLOR_GRID = 2,
    COLOR_BAND_KEY = 3,       /* the neutral grey standing for "a band" in a legend */
    COLOR_PALETTE = 4,        /* first opaque series colour */
    PALETTE_SIZE = 10,
    COLOR_TRANSLUCENT = COLOR_PALETTE + PALETTE_SIZE,
    COLOR_COUNT = COLOR_TRANSLUCENT + PALETTE_SIZE
};

static const int palette_rgb[PALETTE_SIZE][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},   {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

static const double band_alpha = 0.18;

static int series_color(int series) { return COLOR_PALETTE + series % PALETTE_SIZE; }
static int series_band_color(int series) { return COLOR_TRANSLUCENT + series % PALETTE_SIZE; }

static void set_colors(void) {
    plscmap0n(COLOR_COUNT);
    plscol0(COLOR_BACKGROUND, 255, 255, 255);
    plscol0(COLOR_INK, 0, 0, 0);
    plscol0(COLOR_GRID, 215, 215, 215);
    plscol0a(COLOR_BAND_KEY, 120, 120, 120, 0.35);
    for (int i = 0; i < PALETTE_SIZE; i++) {
        plscol0(COLOR_PALETTE + i, palette_rgb[i][0], palette_rgb[i][1], palette_rgb[i][2]);
        plscol0a(COLOR_TRANSLUCENT + i, palette_rgb[i][0], palette_rgb[i][1], palette_rgb[i][2],
                 band_alpha);
    }
}

/* --- one PNG: begin, check, end -------------------------------------------------------- */

/* PLplot keeps one global state, so the plot being drawn is global too: its exit handler
 * (PLplot calls exit() itself on fatal errors) must know which file it was drawing. */
static struct {
    const char *path;
    char temporary[PLOT_PATH_MAX];
    PLINT error_code;           /* set by PLplot when it abandons an operation */
    char error_message[1024];
} drawing;

static int on_plplot_fatal(const char *message) {
    fflush(stdout);
    fprintf(stderr, "bneck-report: %s: PLplot failed: %s\n", drawing.path ? drawing.path : "(plot)",
            message && message[0] ? message : "(no message)");
    if (drawing.temporary[0]) remove(drawing.temporary);
    return 1; /* PLplot's exit status */
}

static int driver_available(const char *name) {
    /* plgDevs fills caller-provided arrays of at most *count entries. */
    enum { DEVICES_MAX = 128 };
    const char *menu_storage[DEVICES_MAX], *name_storage[DEVICES_MAX];
    const char **menu = menu_storage, **names = name_storage;
    int count = DEVICES_MAX;
    plgDevs(&menu, &names, &count);
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0) return 1;
    return 0;
}

/* Opens the temporary file ourselves (PLplot would prompt on stdin if it could not) and
 * starts a PLplot page of width x height pixels drawing into it. */
static int plot_begin(const char *path, int width, int height, bneck_error *err) {
    if (!driver_available("pngcairo"))
        return bneck_error_set(err, "%s: PLplot has no pngcairo driver (install "
                                    "plplot-driver-cairo)", path);
    if (snprintf(drawing.temporary, sizeof drawing.temporary, "%s.tmp", path) >=
        (int)sizeof drawing.temporary)
        return bneck_error_set(err, "%s: path too long", path);
    FILE *file = fopen(drawing.temporary, "wb");
    if (!file) {
        const int saved = errno;
        drawing.temporary[0] = '\0';
        return bneck_error_set(err, "%s: cannot create the plot file %s.tmp: %s", path, path,
                               strerror(saved));
    }
    drawing.path = path;
    drawing.error_code = 0;
    drawing.error_message[0] = '\0';

    plsexit(on_plplot_fatal);
    plsdev("pngcairo");
    plsfile(file); /* PLplot closes it in plend */
    plspage(0, 0, width, height, 0, 0);
    set_colors();
    plsError(&drawing.error_code, drawing.error_message);
    plinit();
    plschr(0, 1.0);
    if (drawing.error_code != 0) {
        plend();
        remove(drawing.temporary);
        return bneck_error_set(err, "%s: PLplot could not start the page: %s", path,
                               drawing.error_message);
    }
    return 0;
}

/* Whether the file starts with the 8-byte PNG signature. */
static int is_png(const char *path) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *file = fopen(path, "rb");
    if (!file) return 0;
    const size_t got = fread(head, 1, sizeof head, file);
    fclose(file);
    return got == sizeof head && memcmp(head, signature, sizeof head) == 0;
}

/* Finishes the page; the file becomes `path` only when PLplot drew it without complaint
 * and it is a PNG. */
static int plot_end(bneck_error *err) {
    plend();
    const char *path = drawing.path;
    int status = 0;
    if (drawing.error_code != 0) {
        status = bneck_error_set(err, "%s: PLplot: %s", path, drawing.error_message);
    } else if (!is_png(drawing.temporary)) {
        status = bneck_error_set(err, "%s: PLplot's pngcairo driver did not write a PNG", path);
    } else if (rename(drawing.temporary, path) != 0) {
        status = bneck_error_set(err, "%s: cannot rename %s into place: %s", path,
                                 drawing.temporary, strerror(errno));
    }
    if (status != 0) remove(drawing.temporary);
    drawing.temporary[0] = '\0';
    drawing.path = NULL;
    return status;
}

/* --- small helpers ----------------------------------------------------------------------- */

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of values (sorted in place); count > 0. */
static double median_in_place(double *values, int count) {
    qsort(values, (size_t)count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

/* PLplot reads '#' as the start of an escape sequence; "##" is a literal one. */
static void plot_text(const char *text, char *buffer, size_t size) {
    size_t o = 0;
    for (const char *c = text; *c && o + 2 < size; c++) {
        if (*c == '#') buffer[o++] = '#';
        buffer[o++] = *c;
    }
    buffer[o] = '\0';
}

static void pattern_label(const report_pattern *pattern, char *buffer, size_t size) {
    char name[REPORT_NAME_MAX * 2];
    plot_text(pattern->pattern, name, sizeof name);
    if (pattern->mode == 1)
        snprintf(buffer, size, "%s: mode 1, n=%d", name, pattern->n);
    else
        snprintf(buffer, size, "%s: mode %d, alpha %d, n=%d", name, pattern->mode, pattern->alpha,
                 pattern->n);
}

/* Light grid, then the black frame, ticks and numeric labels. x_tick 0 lets PLplot choose;
 * 1 puts a tick on every whole number (epochs), without minor ticks. */
static void draw_axes(const char *x_options, double x_tick, const char *y_options) {
    const int x_minor = x_tick > 0 ? 1 : 0;
    plcol0(COLOR_GRID);
    plwidth(1.0);
    plbox("g", x_tick, x_minor, "g", 0, 0);
    plcol0(COLOR_INK);
    plbox(x_options, x_tick, x_minor, y_options, 0, 0);
}

/* The plot area of the two plots with legends: the right quarter of the page is kept for
 * the legend, so that it never covers a curve, a point or its label. */
static void plot_area_beside_legend(void) {
    plvpor(0.10, 0.66, 0.11, 0.92);
}

/* A legend outside the viewport at `position` (right of it), on a white box. */
static void draw_legend(int position, int count, const PLINT *options, const char *const *texts,
                        const PLINT *colors, const PLINT *box_colors, const PLINT *line_styles,
                        const PLFLT *line_widths) {
    PLINT text_colors[32], box_patterns[32], symbol_colors[32], symbol_numbers[32];
    PLFLT box_scales[32], box_line_widths[32], symbol_scales[32];
    const char *symbols[32];
    if (count > 32) count = 32;
    for (int i = 0; i < count; i++) {
        text_colors[i] = COLOR_INK;
        box_patterns[i] = 0;
        box_scales[i] = 0.8;
        box_line_widths[i] = 1;
        symbol_colors[i] = colors[i];
        symbol_scales[i] = 1;
        symbol_numbers[i] = 1;
        symbols[i] = "";
    }
    PLFLT width = 0, height = 0;
    pllegend(&width, &height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             position | PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT, 0.03, 0.0, 0.08,
             COLOR_BACKGROUND, COLOR_GRID, 1, 0, 0, count, options, 0.8, 0.8, 2.0, 0.0,
             text_colors, texts, box_colors, box_patterns, box_scales, box_line_widths, colors,
             line_styles, line_widths, symbol_colors, symbol_scales, symbol_numbers, symbols);
}

/* --- 1. validation accuracy per epoch ---------------------------------------------------- */

/* One pattern's curve: per epoch that any complete run reached, the median and the range
 * over the runs that reached it (a shorter run stops contributing, it does not pull the
 * median down). Percent. */
typedef struct accuracy_curve {
    double *epoch, *median, *low, *high;
    int count;
} accuracy_curve;

static void accuracy_curve_free(accuracy_curve *curve) {
    free(curve->epoch);
    free(curve->median);
    free(curve->low);
    free(curve->high);
    memset(curve, 0, sizeof *curve);
}

static void accuracy_curve_build(const report_sweep *sweep, const report_pattern *pattern,
                                 accuracy_curve *curve) {
    memset(curve, 0, sizeof *curve);
    int last_epoch = 0, runs = 0;
    for (int r = 0; r < sweep->run_count; r++) {
        const report_run *run = &sweep->runs[r];
        if (!report_run_is_complete(run) || strcmp(run->pattern, pattern->pattern) != 0) continue;
        runs++;
        /* row e is epoch e + 1 (report_read checks it) */
        if (sweep->histories[r].count > last_epoch) last_epoch = sweep->histories[r].count;
    }
    if (last_epoch == 0) return;
    curve->epoch = bneck_calloc((size_t)last_epoch, sizeof(double));
    curve->median = bneck_calloc((size_t)last_epoch, sizeof(double));
    curve->low = bneck_calloc((size_t)last_epoch, sizeof(double));
    curve->high = bneck_calloc((size_t)last_epoch, sizeof(double));
    double *values = bneck_calloc((size_t)runs, sizeof(double));
    for (int epoch = 1; epoch <= last_epoch; epoch++) {
        int found = 0;
        for (int r = 0; r < sweep->run_count; r++) {
            const report_run *run = &sweep->runs[r];
            if (!report_run_is_complete(run) || strcmp(run->pattern, pattern->pattern) != 0)
                continue;
            const report_history *history = &sweep->histories[r];
            if (epoch <= history->count && isfinite(history->epochs[epoch - 1].val_acc))
                values[found++] = 100.0 * history->epochs[epoch - 1].val_acc;
        }
        if (found == 0) continue;
        const int i = curve->count++;
        curve->epoch[i] = epoch;
        curve->median[i] = median_in_place(values, found);
        curve->low[i] = values[0];         /* sorted by the median */
        curve->high[i] = values[found - 1];
    }
    free(values);
}

int report_plot_val_acc(const report_sweep *sweep, const char *path, bneck_error *err) {
    const int patterns = sweep->pattern_count;
    accuracy_curve *curves = bneck_calloc((size_t)patterns, sizeof *curves);
    double x_max = 1, y_min = INFINITY, y_max = -INFINITY;
    int drawn = 0;
    for (int p = 0; p < patterns; p++) {
        accuracy_curve_build(sweep, &sweep->patterns[p], &curves[p]);
        for (int i = 0; i < curves[p].count; i++) {
            if (curves[p].epoch[i] > x_max) x_max = curves[p].epoch[i];
            if (curves[p].low[i] < y_min) y_min = curves[p].low[i];
            if (curves[p].high[i] > y_max) y_max = curves[p].high[i];
        }
        drawn += curves[p].count > 0;
    }
    int status = -1;
    if (drawn == 0) {
        /* "yet" only where a run may still finish */
        bneck_error_set(err, report_runs_with_status(sweep, "running") ? "no complete run yet"
                                                                        : "no complete run");
        status = REPORT_PLOT_NOTHING;
        goto done;
    }
    /* Room above and below the data; a flat curve still gets a visible range. */
    const double pad = fmax(0.05 * (y_max - y_min), 0.5);
    y_min = fmax(0.0, y_min - pad);
    y_max = fmin(100.0, y_max + pad);
    const double x_min = 1, x_right = x_max > 1 ? x_max : 2;

    if (plot_begin(path, 1200, 800, err) != 0) goto done;
    pladv(0);
    plot_area_beside_legend();
    plwind(x_min, x_right, y_min, y_max);
    draw_axes("bcnst", x_right - x_min <= 15 ? 1 : 0, "bcnstv"); /* no epoch 1.5 */

    /* Bands first, so every median line lies on top of every band. */
    for (int p = 0; p < patterns; p++) {
        const accuracy_curve *curve = &curves[p];
        if (curve->count < 2) continue;
        const int n = curve->count;
        double *x = bneck_malloc(2 * (size_t)n * sizeof(double));
        double *y = bneck_malloc(2 * (size_t)n * sizeof(double));
        for (int i = 0; i < n; i++) {
            x[i] = curve->epoch[i];
            y[i] = curve->high[i];
            x[2 * n - 1 - i] = curve->epoch[i];
            y[2 * n - 1 - i] = curve->low[i];
        }
        plcol0(series_band_color(p));
        plfill(2 * n, x, y);
        free(x);
        free(y);
    }
    for (int p = 0; p < patterns; p++) {
        const accuracy_curve *curve = &curves[p];
        if (curve->count == 0) continue;
        plcol0(series_color(p));
        plwidth(2.5);
        if (curve->count == 1)
            plpoin(1, curve->epoch, curve->median, 17);
        else
            plline(curve->count, curve->epoch, curve->median);
    }
    plwidth(1.0);
    plcol0(COLOR_INK);
    pllab("epoch", "validation accuracy (%)",
          "Validation accuracy per epoch: median over repeats, band min-max");

    /* Legend: one line per pattern, then a grey box standing for the bands. */
    enum { LEGEND_MAX = 31 };
    const int entries = (patterns < LEGEND_MAX ? patterns : LEGEND_MAX) + 1;
    PLINT options[LEGEND_MAX + 1], colors[LEGEND_MAX + 1], box_colors[LEGEND_MAX + 1],
        styles[LEGEND_MAX + 1];
    PLFLT widths[LEGEND_MAX + 1];
    char labels[LEGEND_MAX + 1][PLOT_LABEL_MAX];
    const char *texts[LEGEND_MAX + 1];
    for (int i = 0; i < entries - 1; i++) {
        options[i] = PL_LEGEND_LINE;
        colors[i] = series_color(i);
        box_colors[i] = COLOR_BACKGROUND;
        styles[i] = 1;
        widths[i] = 2.5;
        pattern_label(&sweep->patterns[i], labels[i], sizeof labels[i]);
        texts[i] = labels[i];
    }
    const int key = entries - 1;
    options[key] = PL_LEGEND_COLOR_BOX;
    colors[key] = COLOR_INK;
    box_colors[key] = COLOR_BAND_KEY;
    styles[key] = 1;
    widths[key] = 1;
    snprintf(labels[key], sizeof labels[key], "min-max over repeats");
    texts[key] = labels[key];
    draw_legend(PL_POSITION_RIGHT, entries, options, texts, colors,
                box_colors, styles, widths);
    status = plot_end(err);
done:
    for (int p = 0; p < patterns; p++) accuracy_curve_free(&curves[p]);
    free(curves);
    return status;
}

/* --- 2. seconds per epoch against pseudo-FLOPs ------------------------------------------- */

int report_plot_epoch_time(const report_sweep *sweep, const char *path, bneck_error *err) {
    const int patterns = sweep->pattern_count;
    double x_max = 0, y_max = 0;
    int costliest = -1; /* the reference line passes through it */
    for (int p = 0; p < patterns; p++) {
        const report_pattern *pattern = &sweep->patterns[p];
        const double x = (double)pattern->pseudo_flops / 1e6, y = pattern->median_epoch_s;
        if (!isfinite(y)) continue;
        const double sd = isfinite(pattern->sd_epoch_s) ? pattern->sd_epoch_s : 0;
        if (x > x_max) x_max = x;
        if (y + sd > y_max) y_max = y + sd;
        if (costliest < 0 || pattern->pseudo_flops > sweep->patterns[costliest].pseudo_flops)
            costliest = p;
    }
    if (costliest < 0 || x_max <= 0 || y_max <= 0) {
        bneck_error_set(err, "no pattern has a complete run with an epoch after its first "
                             "(/summary's median_epoch_s)");
        return REPORT_PLOT_NOTHING;
    }
    x_max *= 1.15;
    y_max *= 1.2;

    if (plot_begin(path, 1200, 800, err) != 0) return -1;
    pladv(0);
    plot_area_beside_legend();
    plwind(0, x_max, 0, y_max);
    draw_axes("bcnst", 0, "bcnstv");

    /* What proportional scaling would give: zero work, zero time, through the costliest
     * pattern. The distance of the other points above it is the study's finding. */
    const report_pattern *reference = &sweep->patterns[costliest];
    const double slope = reference->median_epoch_s / ((double)reference->pseudo_flops / 1e6);
    PLFLT line_x[2] = {0, x_max}, line_y[2] = {0, slope * x_max};
    plcol0(COLOR_INK);
    pllsty(2);
    plline(2, line_x, line_y);
    pllsty(1);

    for (int p = 0; p < patterns; p++) {
        const report_pattern *pattern = &sweep->patterns[p];
        PLFLT x = (double)pattern->pseudo_flops / 1e6, y = pattern->median_epoch_s;
        if (!isfinite(y)) continue;
        plcol0(series_color(p));
        if (isfinite(pattern->sd_epoch_s) && pattern->sd_epoch_s > 0) {
            PLFLT low = y - pattern->sd_epoch_s, high = y + pattern->sd_epoch_s;
            plwidth(2.0);
            plerry(1, &x, &low, &high);
        }
        plwidth(1.0);
        plssym(0, 1.6);
        plpoin(1, &x, &y, 17);
        char name[REPORT_NAME_MAX * 2], label[PLOT_LABEL_MAX];
        plot_text(pattern->pattern, name, sizeof name);
        /* Labels go right of their point, or left of it near the right edge. */
        const int label_left = x > 0.7 * x_max;
        snprintf(label, sizeof label, label_left ? "%s  %.3g s  " : "  %s  %.3g s", name, y);
        plcol0(COLOR_INK);
        plptex(x, y, 1, 0, label_left ? 1.0 : 0.0, label);
    }
    plcol0(COLOR_INK);
    pllab("pseudo-FLOPs per image (millions)", "seconds per epoch",
          "Seconds per epoch (median, sd bars) against counted work");

    char reference_label[PLOT_LABEL_MAX], reference_name[REPORT_NAME_MAX * 2];
    plot_text(reference->pattern, reference_name, sizeof reference_name);
    snprintf(reference_label, sizeof reference_label, "proportional to work (%s)",
             reference_name);
    const PLINT options[2] = {PL_LEGEND_SYMBOL, PL_LEGEND_LINE};
    const PLINT colors[2] = {COLOR_INK, COLOR_INK}, box_colors[2] = {0, 0}, styles[2] = {1, 2};
    const PLFLT widths[2] = {1, 1};
    const char *texts[2] = {"median s/epoch, +/- 1 sd", reference_label};
    /* Right of the plot area, as the other plot's. pllegend draws symbols from its own
     * arrays: a filled circle for the measured points. */
    PLINT text_colors[2] = {COLOR_INK, COLOR_INK}, box_patterns[2] = {0, 0};
    PLFLT box_scales[2] = {1, 1}, box_widths[2] = {1, 1}, symbol_scales[2] = {1.2, 1};
    PLINT symbol_numbers[2] = {1, 1};
    const char *symbols[2] = {"#(850)", ""};
    PLFLT legend_width = 0, legend_height = 0;
    pllegend(&legend_width, &legend_height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_RIGHT | PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT, 0.03,
             0.0, 0.08, COLOR_BACKGROUND, COLOR_GRID, 1, 0, 0, 2, options, 0.8, 0.8, 2.0, 0.0,
             text_colors, texts, box_colors, box_patterns, box_scales, box_widths, colors, styles,
             widths, colors, symbol_scales, symbol_numbers, symbols);
    return plot_end(err);
}

/* --- 3. the closed-form savings against k ------------------------------------------------ */

/* Labels of a log10 axis as plain numbers: 1, 10, 100 rather than 10^0, 10^1, 10^2. */
static void plain_log_label(PLINT axis, PLFLT value, char *label, PLINT length, PLPointer data) {
    (void)axis;
    (void)data;
    snprintf(label, (size_t)length, "%g", pow(10.0, value));
}

typedef double (*ratio_function)(double k, double alpha, double beta);
typedef double (*limit_function)(double alpha, double beta);

static const double theory_alphas[2] = {2, 4}, theory_betas[2] = {1, 8};
enum { THEORY_CURVES = 4, THEORY_SAMPLES = 161 };
static const double theory_k_min = 1, theory_k_max = 9;

/* One panel: the four (alpha, beta) curves of one ratio and their dashed limits, on a
 * log y axis (the limits span 2 to 128, the curves start near 1). */
static void draw_ratio_panel(double viewport_left, double viewport_right, ratio_function ratio,
                             limit_function limit, const char *title, const char *formula) {
    double y_low = INFINITY, y_high = -INFINITY;
    for (int c = 0; c < THEORY_CURVES; c++) {
        const double alpha = theory_alphas[c / 2], beta = theory_betas[c % 2];
        y_low = fmin(y_low, ratio(theory_k_min, alpha, beta));
        y_high = fmax(y_high, limit(alpha, beta));
    }
    plvpor(viewport_left, viewport_right, 0.11, 0.78);
    plwind(theory_k_min, theory_k_max, log10(y_low) - 0.1, log10(y_high) + 0.15);
    plslabelfunc(plain_log_label, NULL);
    draw_axes("bcnst", 0, "bcnstvlo");
    plslabelfunc(NULL, NULL);

    PLFLT k[THEORY_SAMPLES], y[THEORY_SAMPLES];
    for (int c = 0; c < THEORY_CURVES; c++) {
        const double alpha = theory_alphas[c / 2], beta = theory_betas[c % 2];
        for (int i = 0; i < THEORY_SAMPLES; i++) {
            k[i] = theory_k_min + (theory_k_max - theory_k_min) * i / (THEORY_SAMPLES - 1);
            y[i] = log10(ratio(k[i], alpha, beta));
        }
        plcol0(series_color(c));
        plwidth(2.5);
        pllsty(1);
        plline(THEORY_SAMPLES, k, y);
        PLFLT limit_k[2] = {theory_k_min, theory_k_max};
        PLFLT limit_y[2] = {log10(limit(alpha, beta)), log10(limit(alpha, beta))};
        plwidth(1.5);
        pllsty(2);
        plline(2, limit_k, limit_y);
    }
    pllsty(1);
    plwidth(1.0);
    plcol0(COLOR_INK);
    plmtex("t", 3.0, 0.5, 0.5, title);
    plmtex("t", 1.2, 0.5, 0.5, formula);
    plmtex("b", 3.0, 0.5, 0.5, "kernel size k");
    plmtex("l", 3.5, 0.5, 0.5, "plain cost / bottlenecked cost");
}

int report_plot_theory(const char *path, bneck_error *err) {
    if (plot_begin(path, 1500, 800, err) != 0) return -1;
    pladv(0);
    /* Two panels and a legend across a wide page: smaller type than the single plots. */
    plschr(0, 0.8);
    draw_ratio_panel(0.06, 0.37, theory_bc_ratio, theory_bc_limit,
                     "BC: 1x1 to f/#ga, then kxk",
                     "plain / BC = #ga#gb k#u2#d / (#gb + k#u2#d)");
    draw_ratio_panel(0.45, 0.76, theory_bcb_ratio, theory_bcb_limit,
                     "BCB: 1x1 to f/#ga, kxk, 1x1 back to f",
                     "plain / BCB = #ga#u2#d#gb k#u2#d / (#ga(#gb + 1) + k#u2#d)");

    /* One legend for both panels, right of the second: colours are (alpha, beta) pairs. */
    PLINT options[THEORY_CURVES + 1], colors[THEORY_CURVES + 1], box_colors[THEORY_CURVES + 1],
        styles[THEORY_CURVES + 1], text_colors[THEORY_CURVES + 1],
        box_patterns[THEORY_CURVES + 1], symbol_numbers[THEORY_CURVES + 1];
    PLFLT widths[THEORY_CURVES + 1], box_scales[THEORY_CURVES + 1],
        box_widths[THEORY_CURVES + 1], symbol_scales[THEORY_CURVES + 1];
    char labels[THEORY_CURVES + 1][PLOT_LABEL_MAX];
    const char *texts[THEORY_CURVES + 1], *symbols[THEORY_CURVES + 1];
    for (int c = 0; c <= THEORY_CURVES; c++) {
        const int is_limit_key = c == THEORY_CURVES;
        options[c] = PL_LEGEND_LINE;
        colors[c] = is_limit_key ? COLOR_INK : series_color(c);
        styles[c] = is_limit_key ? 2 : 1;
        widths[c] = is_limit_key ? 1.5 : 2.5;
        if (is_limit_key)
            snprintf(labels[c], sizeof labels[c], "k#[0x2192]#[0x221e]: #ga#gb, #ga#u2#d#gb");
        else
            snprintf(labels[c], sizeof labels[c], "#ga = %g, #gb = %g", theory_alphas[c / 2],
                     theory_betas[c % 2]);
        texts[c] = labels[c];
        box_colors[c] = COLOR_BACKGROUND;
        text_colors[c] = COLOR_INK;
        box_patterns[c] = 0;
        box_scales[c] = box_widths[c] = symbol_scales[c] = 1;
        symbol_numbers[c] = 1;
        symbols[c] = "";
    }
    /* The legend's own viewport, right of the panels, level with their tops. */
    plvpor(0.81, 0.99, 0.11, 0.78);
    plwind(0, 1, 0, 1);
    PLFLT legend_width = 0, legend_height = 0;
    pllegend(&legend_width, &legend_height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_LEFT | PL_POSITION_TOP | PL_POSITION_INSIDE | PL_POSITION_VIEWPORT, 0.0,
             0.0, 0.15, COLOR_BACKGROUND, COLOR_GRID, 1, 0, 0, THEORY_CURVES + 1, options, 1.0,
             0.75, 2.2, 0.0, text_colors, texts, box_colors, box_patterns, box_scales, box_widths,
             colors, styles, widths, colors, symbol_scales, symbol_numbers, symbols);

    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.1);
    plptex(0.5, 0.95, 1, 0, 0.5, "Theory: how much a 1x1 bottleneck saves over a plain kxk conv");
    plschr(0, 0.8);
    plptex(0.5, 0.91, 1, 0, 0.5,
           "c = #gb f input, f output channels; bottleneck width f/#ga; dashed: the k#[0x2192]#[0x221e] limits");
    plschr(0, 1.0);
    return plot_end(err);
}

/* --- all three ---------------------------------------------------------------------------- */

/* mkdir -p: each missing component in turn. */
static int make_directory(const char *directory, bneck_error *err) {
    char path[PLOT_PATH_MAX];
    if (snprintf(path, sizeof path, "%s", directory) >= (int)sizeof path)
        return bneck_error_set(err, "%s: plot directory path too long", directory);
    for (char *slash = path + 1;; slash++) {
        const int at_end = *slash == '\0';
        if (*slash == '/' || at_end) {
            const char saved = *slash;
            *slash = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return bneck_error_set(err, "%s: cannot create the plot directory %s: %s",
                                       directory, path, strerror(errno));
            *slash = saved;
        }
        if (at_end) break;
    }
    struct stat info;
    if (stat(directory, &info) != 0 || !S_ISDIR(info.st_mode))
        return bneck_error_set(err, "%s: not a directory, so the plots cannot go there",
                               directory);
    return 0;
}

int report_plots_write(const report_sweep *sweep, const char *directory, FILE *names_out,
                       bneck_error *err) {
    if (make_directory(directory, err) != 0) return -1;
    const char *names[3] = {report_plot_val_acc_name, report_plot_epoch_time_name,
                            report_plot_theory_name};
    for (int i = 0; i < 3; i++) {
        char path[PLOT_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", directory, names[i]) >= (int)sizeof path)
            return bneck_error_set(err, "%s: plot path too long", directory);
        int status;
        if (i == 0) status = report_plot_val_acc(sweep, path, err);
        else if (i == 1) status = report_plot_epoch_time(sweep, path, err);
        else status = report_plot_theory(path, err);
        if (status == REPORT_PLOT_NOTHING) {
            /* a sweep still in progress: the table is the report, and so far that is fine */
            if (names_out) fprintf(names_out, "skipped %s: %s\n", path, err->message);
            continue;
        }
        if (status != 0) return -1;
        if (names_out) fprintf(names_out, "wrote %s\n", path);
    }
    return 0;
}
