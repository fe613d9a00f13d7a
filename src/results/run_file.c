#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/version.h"
#include "results/h5_util.h"
#include "results/results.h"


/* A run file's format: 1 with a checkpoint at an epoch's end; 2 with one part-way through
 * an epoch, which builds from before epoch_steps (readers of format 1 only) must refuse
 * rather than take for an epoch's end and train the epoch's first steps twice. */
static const char run_format[] = "bneck-run-1", run_format_part_way[] = "bneck-run-2";

const char *results_hdf5_version(void) {
    static char text[32];
    unsigned major = 0, minor = 0, release = 0;
    H5get_libversion(&major, &minor, &release);
    snprintf(text, sizeof text, "%u.%u.%u", major, minor, release);
    return text;
}

void run_checkpoint_free(run_checkpoint *checkpoint) {
    if (!checkpoint) return;
    free(checkpoint->params);
    free(checkpoint->state);
    free(checkpoint->adam_m);
    free(checkpoint->adam_v);
    free(checkpoint->epoch_sums);
    free(checkpoint->epoch_states);
    checkpoint->params = checkpoint->state = checkpoint->adam_m = checkpoint->adam_v = NULL;
    checkpoint->epoch_sums = NULL;
    checkpoint->epoch_states = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Weights: one group per layer, named after it ("/weights/inception1/1x1/conv/kernel").  */

typedef struct layer_tensor {
    const char *name;     /* "kernel", "bias", "gamma", ... */
    int from_state;       /* 0: the parameter buffer, 1: the BatchNorm state buffer */
    size_t offset;
    int rank;
    hsize_t dims[4];
} layer_tensor;

/* The tensors a layer stores, in the order written; returns how many (0 for pools).
 * Fails (-1) when the layer's counts disagree with its shape: a model bug, not a file's. */
static int layer_tensors(const layer *l, layer_tensor out[4]) {
    const hsize_t in = (hsize_t)l->in.channels, outc = (hsize_t)l->out.channels;
    const hsize_t k = (hsize_t)l->kernel;
    int count = 0;
    switch (l->kind) {
    case LAYER_CONV:
        out[count++] = (layer_tensor){"kernel", 0, l->weight, 4, {outc, in, k, k}};
        out[count++] = (layer_tensor){"bias", 0, l->bias, 1, {outc}};
        if (l->weight_count != outc * in * k * k || l->bias_count != outc) return -1;
        break;
    case LAYER_DENSE:
        out[count++] = (layer_tensor){"kernel", 0, l->weight, 2, {outc, in}};
        out[count++] = (layer_tensor){"bias", 0, l->bias, 1, {outc}};
        if (l->weight_count != outc * in || l->bias_count != outc) return -1;
        break;
    case LAYER_BATCHNORM:
        out[count++] = (layer_tensor){"gamma", 0, l->weight, 1, {outc}};
        out[count++] = (layer_tensor){"beta", 0, l->bias, 1, {outc}};
        out[count++] = (layer_tensor){"moving_mean", 1, l->running_mean, 1, {outc}};
        out[count++] = (layer_tensor){"moving_variance", 1, l->running_var, 1, {outc}};
        if (l->weight_count != outc || l->bias_count != outc) return -1;
        break;
    default: break;
    }
    return count;
}

static int tensor_path(const h5_site *site, const layer *l, const layer_tensor *t, char *path,
                       size_t capacity) {
    int n = snprintf(path, capacity, "/weights/%s/%s", l->name, t->name);
    if (n < 0 || (size_t)n >= capacity)
        return bneck_error_set(site->err, "%s: layer name %s is too long", site->path, l->name);
    return 0;
}

/* Writes every layer's tensors from params and state (writing) or checks that the file
 * has each of them with the model's shape (not writing; params and state unused). */
static int visit_weights(const h5_site *site, hid_t file, const model *m, const float *params,
                         const float *state, int writing) {
    for (int i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        layer_tensor tensors[4];
        int count = layer_tensors(l, tensors);
        if (count < 0)
            return bneck_error_set(site->err, "%s: layer %s: its parameter counts do not match "
                                   "its shape", site->path, l->name);
        for (int t = 0; t < count; t++) {
            char path[160];
            if (tensor_path(site, l, &tensors[t], path, sizeof path)) return -1;
            const layer_tensor *tensor = &tensors[t];
            int rc;
            if (writing) {
                const float *values = (tensor->from_state ? state : params) + tensor->offset;
                rc = h5_write_floats(site, file, path, values, tensor->rank, tensor->dims);
            } else {
                rc = h5_read_floats(site, file, path, NULL, tensor->rank, tensor->dims);
            }
            if (rc) return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Writing                                                                             */

static int status_is_known(const char *status) {
    return !strcmp(status, RUN_STATUS_RUNNING) || !strcmp(status, RUN_STATUS_COMPLETE) ||
           !strcmp(status, RUN_STATUS_DIVERGED);
}

static const char known_statuses[] =
    "\"" RUN_STATUS_RUNNING "\", \"" RUN_STATUS_COMPLETE "\" or \"" RUN_STATUS_DIVERGED "\"";

/* /checkpoint's param_layout: the order of the flat parameter, Adam and state buffers. 1:
 * layer by layer (files from before the attribute existed); 2: layers grouped
 * (model_grouping). A checkpoint in the other layout is converted on reading. */
enum { PARAM_LAYOUT_SEPARATE = 1, PARAM_LAYOUT_GROUPED = 2 };

static int64_t param_layout_of(const model *m) {
    return m->spec.grouping == MODEL_LAYERS_SEPARATE ? PARAM_LAYOUT_SEPARATE
                                                       : PARAM_LAYOUT_GROUPED;
}

/* The ranks whose sums a checkpoint may hold: far beyond any group. (The datasets' shapes
 * are checked against it before anything is allocated.) */
enum { EPOCH_RANKS_MAX = 1 << 20 };

/* How far the epoch after the checkpoint's got: nothing to write at an epoch's end. */
static int write_epoch_progress(const h5_site *site, hid_t group, const run_checkpoint *c) {
    const hsize_t sums[2] = {(hsize_t)c->epoch_ranks, EPOCH_SUMS}, seconds[1] = {EPOCH_SECONDS};
    const hsize_t states[2] = {(hsize_t)c->epoch_ranks, c->state_count};
    if (h5_write_int64_attribute(site, group, "epoch_steps", c->epoch_steps)) return -1;
    if (c->epoch_steps == 0) return 0;
    return h5_write_int64_attribute(site, group, "epoch_ranks", c->epoch_ranks) ||
                   h5_write_doubles(site, group, "epoch_sums", c->epoch_sums, 2, sums) ||
                   h5_write_doubles(site, group, "epoch_seconds", c->epoch_seconds, 1, seconds) ||
                   h5_write_floats(site, group, "epoch_states", c->epoch_states, 2, states)
               ? -1
               : 0;
}

static int write_checkpoint(const h5_site *site, hid_t file, const model *m,
                            const run_checkpoint *c) {
    hid_t group = H5I_INVALID_HID;
    const hsize_t params[1] = {c->param_count}, state[1] = {c->state_count};
    BNECK_H5_CHECK(site,
                   group = H5Gcreate2(file, "/checkpoint", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/checkpoint: cannot create the group");
    if (h5_write_floats(site, group, "params", c->params, 1, params) ||
        h5_write_floats(site, group, "state", c->state, 1, state) ||
        h5_write_floats(site, group, "adam_m", c->adam_m, 1, params) ||
        h5_write_floats(site, group, "adam_v", c->adam_v, 1, params) ||
        h5_write_int64_attribute(site, group, "step", c->step) ||
        h5_write_int64_attribute(site, group, "epochs_done", c->epochs_done) ||
        h5_write_int64_attribute(site, group, "param_layout", param_layout_of(m)) ||
        h5_write_int64_attribute(site, group, "cpu_threads", c->cpu_threads) ||
        write_epoch_progress(site, group, c))
        goto fail;
    h5_close(&group);
    return 0;
fail:
    h5_close(&group);
    return -1;
}

int run_file_write(const char *path, const run_row *row, const epoch_record *history,
                   int epochs, const model *m, const run_checkpoint *checkpoint,
                   const char *config_text, const char *settings_text, bneck_error *err) {
    /* Argument checks first: a bad call must not touch the file at path. */
    if (!path || !row || !m || !checkpoint || epochs < 0 || (epochs > 0 && !history))
        return bneck_error_set(err, "%s: run_file_write: missing row, history, model or "
                               "checkpoint", path ? path : "(no path)");
    if (checkpoint->param_count != m->param_count || checkpoint->state_count != m->state_count ||
        !checkpoint->params || !checkpoint->adam_m || !checkpoint->adam_v ||
        (m->state_count && !checkpoint->state))
        return bneck_error_set(err, "%s: the checkpoint (%zu parameters, %zu state) does not fit "
                               "the model (%zu, %zu)", path, checkpoint->param_count,
                               checkpoint->state_count, m->param_count, m->state_count);
    if (checkpoint->epoch_steps < 0 ||
        (checkpoint->epoch_steps > 0 &&
         (checkpoint->epoch_ranks < 1 || checkpoint->epoch_ranks > EPOCH_RANKS_MAX ||
          !checkpoint->epoch_sums || (m->state_count && !checkpoint->epoch_states))))
        return bneck_error_set(err, "%s: the checkpoint's epoch in progress (%d steps, sums of "
                               "%d ranks) is incomplete", path, checkpoint->epoch_steps,
                               checkpoint->epoch_ranks);
    char status[RESULTS_STATUS + 1];
    snprintf(status, sizeof status, "%.*s", RESULTS_STATUS, row->status);
    if (!status_is_known(status))
        return bneck_error_set(err, "%s: status must be %s, not \"%s\"", path, known_statuses,
                               status);
    if (row->epochs != epochs)
        return bneck_error_set(err, "%s: the row says %d epochs but the history has %d", path,
                               row->epochs, epochs);

    h5_site site;
    h5_site_open(&site, path, err);
    h5_text_copy_start(&site);
    char temporary[4096], created[32];
    hid_t file = h5_create_temporary(&site, temporary, sizeof temporary);
    if (file < 0) goto fail;
    h5_timestamp(created, sizeof created);
    if (h5_write_text_attribute(&site, file, "format",
                                checkpoint->epoch_steps > 0 ? run_format_part_way : run_format) ||
        h5_write_fields_as_attributes(&site, file, &h5_run_row_table, row) ||
        h5_write_text_attribute(&site, file, "config", config_text) ||
        (settings_text && h5_write_text_attribute(&site, file, "settings", settings_text)) ||
        h5_write_text_attribute(&site, file, "git_commit", bneck_git_commit) ||
        h5_write_text_attribute(&site, file, "created", created) ||
        h5_write_text_attribute(&site, file, "hdf5_version", results_hdf5_version()) ||
        h5_write_table(&site, file, "/history", &h5_epoch_record_table, history, epochs) ||
        visit_weights(&site, file, m, checkpoint->params, checkpoint->state, 1) ||
        write_checkpoint(&site, file, m, checkpoint) || h5_text_copy_write(&site, file))
        goto fail;
    if (h5_commit(&site, &file, temporary)) goto fail_committed;
    h5_site_close(&site);
    return 0;
fail:
    h5_abandon(&file, temporary);
fail_committed:
    h5_site_close(&site);
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                             */

/* Opens path as an HDF5 file, telling "missing", "not HDF5" and "damaged" apart, and
 * loads its text copy (h5_util.h), from which its text attributes are then read. */
static hid_t open_results_file(h5_site *site) {
    struct stat info;
    if (stat(site->path, &info)) {
        bneck_error_set(site->err, "%s: cannot open: %s", site->path, strerror(errno));
        return H5I_INVALID_HID;
    }
    if (!S_ISREG(info.st_mode)) {
        bneck_error_set(site->err, "%s: not a regular file", site->path);
        return H5I_INVALID_HID;
    }
    if (H5Fis_hdf5(site->path) == 0) {
        bneck_error_set(site->err, "%s: not an HDF5 file (no HDF5 signature)", site->path);
        return H5I_INVALID_HID;
    }
    hid_t file = h5_open_readonly(site);
    if (file >= 0 && h5_text_copy_load(site, file)) h5_close(&file);
    return file;
}

/* The file's format attribute must be `expected` or, when not NULL, `also`. */
static int check_format(const h5_site *site, hid_t file, const char *expected, const char *also,
                        const char *what) {
    htri_t has_format = H5Aexists(file, "format");
    if (has_format <= 0)
        return bneck_error_set(site->err, "%s: not a %s (no 'format' attribute)", site->path, what);
    char format[64];
    if (h5_read_text_attribute(site, file, "format", format, sizeof format)) return -1;
    if (strcmp(format, expected) && (!also || strcmp(format, also)))
        return bneck_error_set(site->err, "%s: not a %s (format \"%s\", expected \"%s\"%s%s%s)",
                               site->path, what, format, expected, also ? " or \"" : "",
                               also ? also : "", also ? "\"" : "");
    return 0;
}

static int check_history(const h5_site *site, const epoch_record *history, int rows,
                         const run_row *row) {
    if (rows != row->epochs)
        return bneck_error_set(site->err, "%s: /history: %d rows, but the run has %d epochs",
                               site->path, rows, row->epochs);
    for (int i = 0; i < rows; i++)
        if (history[i].epoch != i + 1)
            return bneck_error_set(site->err, "%s: /history: row %d is epoch %d, expected %d",
                                   site->path, i, history[i].epoch, i + 1);
    return 0;
}

static int is_group(const h5_site *site, hid_t file, const char *name) {
    int exists = h5_exists(site, file, name);
    if (exists < 0) return -1;
    if (!exists || !h5_is_group(file, name))
        return bneck_error_set(site->err, "%s: %s: missing or not a group", site->path, name);
    return 0;
}

typedef void (*buffer_conversion)(float *to_buffer, const model *to, const float *from_buffer,
                                  const model *from);

/* Replaces *buffer (count floats laid out as `from`) by a copy laid out as `to`. */
static void convert_buffer(float **buffer, size_t count, buffer_conversion convert,
                           const model *to, const model *from) {
    float *converted = bneck_malloc((count ? count : 1) * sizeof(float));
    convert(converted, to, *buffer, from);
    free(*buffer);
    *buffer = converted;
}

/* Checks /checkpoint's param_layout and brings c's parameter, Adam and state buffers (when
 * read) from that layout into m's. */
static int read_param_layout(const h5_site *site, hid_t group, const model *m,
                             run_checkpoint *c) {
    int64_t layout = PARAM_LAYOUT_SEPARATE; /* files from before the attribute */
    if (h5_read_optional_int64_attribute(site, group, "param_layout", &layout)) return -1;
    if (layout != PARAM_LAYOUT_SEPARATE && layout != PARAM_LAYOUT_GROUPED)
        return bneck_error_set(site->err, "%s: /checkpoint: param_layout %lld is not one this "
                               "build reads (1 or 2)", site->path, (long long)layout);
    if (layout == PARAM_LAYOUT_SEPARATE && c->epoch_steps > 0)
        return bneck_error_set(site->err, "%s: /checkpoint: an epoch in progress in param_layout "
                               "1, which no build that saves one wrote", site->path);
    if (!c->params || layout == param_layout_of(m)) return 0;
    model_spec spec = m->spec;
    spec.grouping = layout == PARAM_LAYOUT_SEPARATE ? MODEL_LAYERS_SEPARATE
                                                    : MODEL_LAYERS_GROUPED;
    model *written = bneck_malloc(sizeof *written);
    const int built = model_build(written, &spec, site->err);
    if (built == 0) {
        convert_buffer(&c->params, m->param_count, model_convert_params, m, written);
        convert_buffer(&c->adam_m, m->param_count, model_convert_params, m, written);
        convert_buffer(&c->adam_v, m->param_count, model_convert_params, m, written);
        convert_buffer(&c->state, m->state_count, model_convert_state, m, written);
    }
    free(written);
    return built;
}

/* A count that must be finite and at least 0; its name goes in the error. */
static int check_not_negative(const h5_site *site, const char *name, int row, double value) {
    if (isfinite(value) && value >= 0) return 0;
    return bneck_error_set(site->err, "%s: /checkpoint/%s[%d] is %g: expected a finite number, at "
                           "least 0", site->path, name, row, value);
}

/* How far the epoch after the checkpoint's got (files from before epoch_steps were all
 * written at an epoch's end); its sums, times and statistics read into c (allocated here)
 * with read_values, only checked for their shapes without. */
static int read_epoch_progress(const h5_site *site, hid_t group, run_checkpoint *c,
                               int read_values) {
    int64_t steps = 0, ranks = 0;
    if (h5_read_optional_int64_attribute(site, group, "epoch_steps", &steps)) return -1;
    if (steps < 0 || steps > INT32_MAX)
        return bneck_error_set(site->err, "%s: /checkpoint: epoch_steps %lld out of range",
                               site->path, (long long)steps);
    c->epoch_steps = (int)steps;
    if (steps == 0) return 0;
    if (h5_read_int64_attribute(site, group, "epoch_ranks", &ranks)) return -1;
    if (ranks < 1 || ranks > EPOCH_RANKS_MAX)
        return bneck_error_set(site->err, "%s: /checkpoint: epoch_ranks %lld out of range (1 to "
                               "%d)", site->path, (long long)ranks, EPOCH_RANKS_MAX);
    c->epoch_ranks = (int)ranks;
    const hsize_t sums[2] = {(hsize_t)ranks, EPOCH_SUMS}, seconds[1] = {EPOCH_SECONDS};
    const hsize_t states[2] = {(hsize_t)ranks, c->state_count};
    /* the shapes first, so that a damaged epoch_ranks is refused before any allocation */
    if (h5_read_doubles(site, group, "/checkpoint/epoch_sums", NULL, 2, sums,
                        "(epoch_ranks rows of loss sum, correct, seen)") ||
        h5_read_doubles(site, group, "/checkpoint/epoch_seconds", NULL, 1, seconds,
                        "(train, compute, allreduce, data)") ||
        h5_read_floats(site, group, "/checkpoint/epoch_states", NULL, 2, states))
        return -1;
    if (!read_values) return 0;
    c->epoch_sums = bneck_malloc((size_t)ranks * EPOCH_SUMS * sizeof(double));
    c->epoch_states = bneck_malloc(((size_t)ranks * c->state_count + 1) * sizeof(float));
    if (h5_read_doubles(site, group, "/checkpoint/epoch_sums", c->epoch_sums, 2, sums, "") ||
        h5_read_doubles(site, group, "/checkpoint/epoch_seconds", c->epoch_seconds, 1, seconds, "") ||
        h5_read_floats(site, group, "/checkpoint/epoch_states", c->epoch_states, 2, states))
        return -1;
    for (int r = 0; r < c->epoch_ranks; r++) {
        const double *row = c->epoch_sums + (size_t)r * EPOCH_SUMS;
        if (check_not_negative(site, "epoch_sums", r, row[EPOCH_SUM_LOSS]) ||
            check_not_negative(site, "epoch_sums", r, row[EPOCH_SUM_CORRECT]) ||
            check_not_negative(site, "epoch_sums", r, row[EPOCH_SUM_SEEN]))
            return -1;
        if (row[EPOCH_SUM_CORRECT] > row[EPOCH_SUM_SEEN] || row[EPOCH_SUM_SEEN] > INT32_MAX ||
            row[EPOCH_SUM_SEEN] != floor(row[EPOCH_SUM_SEEN]))
            return bneck_error_set(site->err, "%s: /checkpoint/epoch_sums[%d]: %g correct of %g "
                                   "images seen: expected a whole number of images, at least "
                                   "the correct ones", site->path, r, row[EPOCH_SUM_CORRECT],
                                   row[EPOCH_SUM_SEEN]);
    }
    for (int i = 0; i < EPOCH_SECONDS; i++)
        if (check_not_negative(site, "epoch_seconds", i, c->epoch_seconds[i])) return -1;
    return 0;
}

static int read_checkpoint(const h5_site *site, hid_t file, const model *m, run_checkpoint *out) {
    hid_t group = H5I_INVALID_HID;
    run_checkpoint c = {.param_count = m->param_count, .state_count = m->state_count};
    const hsize_t params[1] = {m->param_count}, state[1] = {m->state_count};
    int64_t step = 0, epochs_done = 0;
    if (out) {
        c.params = bneck_malloc(m->param_count * sizeof(float));
        c.state = bneck_malloc(m->state_count * sizeof(float));
        c.adam_m = bneck_malloc(m->param_count * sizeof(float));
        c.adam_v = bneck_malloc(m->param_count * sizeof(float));
    }
    BNECK_H5_CHECK(site, group = H5Gopen2(file, "/checkpoint", H5P_DEFAULT),
                   "/checkpoint: cannot open");
    if (h5_read_floats(site, file, "/checkpoint/params", c.params, 1, params) ||
        h5_read_floats(site, file, "/checkpoint/state", c.state, 1, state) ||
        h5_read_floats(site, file, "/checkpoint/adam_m", c.adam_m, 1, params) ||
        h5_read_floats(site, file, "/checkpoint/adam_v", c.adam_v, 1, params) ||
        h5_read_int64_attribute(site, group, "step", &step) ||
        h5_read_int64_attribute(site, group, "epochs_done", &epochs_done))
        goto fail;
    if (step < 0 || epochs_done < 0 || epochs_done > INT32_MAX) {
        bneck_error_set(site->err, "%s: /checkpoint: step %lld, epochs_done %lld out of range",
                        site->path, (long long)step, (long long)epochs_done);
        goto fail;
    }
    if (read_epoch_progress(site, group, &c, out != NULL) || read_param_layout(site, group, m, &c))
        goto fail;
    int64_t cpu_threads = 0; /* optional: files from before it stay readable */
    if (h5_read_optional_int64_attribute(site, group, "cpu_threads", &cpu_threads)) goto fail;
    c.cpu_threads = cpu_threads > 0 && cpu_threads <= INT32_MAX ? (int)cpu_threads : 0;
    c.step = (long)step;
    c.epochs_done = (int)epochs_done;
    h5_close(&group);
    if (out) *out = c;
    return 0;
fail:
    h5_close(&group);
    run_checkpoint_free(&c);
    return -1;
}

static int first_not_finite(const float *values, size_t count, size_t *index) {
    for (size_t i = 0; i < count; i++)
        if (!isfinite(values[i])) {
            *index = i;
            return 1;
        }
    return 0;
}

/* Only the weights: training cannot leave a non-finite weight in a run still to be
 * continued, since its loss would then not be finite and the run would have ended as
 * diverged. The Adam moments and the running statistics can overflow in a run whose loss
 * stays finite (a learning rate far too high), so they are not damage. */
static int checkpoint_not_finite(const h5_site *site, const run_checkpoint *c) {
    size_t index = 0;
    if (!c->params || !first_not_finite(c->params, c->param_count, &index)) return 0;
    bneck_error_set(site->err, "%s: /checkpoint/params[%zu] is %g in a run still to be "
                    "continued: the checkpoint is damaged", site->path, index,
                    (double)c->params[index]);
    return 1;
}

int run_file_settings(const char *path, char *settings, size_t capacity, bneck_error *err) {
    h5_site site;
    h5_site_open(&site, path, err);
    int found = -1;
    hid_t file = open_results_file(&site);
    if (file < 0) goto done;
    const htri_t present = H5Aexists(file, "settings");
    if (present < 0) {
        bneck_error_set(err, "%s: cannot look for the settings attribute", path);
        goto done;
    }
    found = 0;
    if (present) found = h5_read_text_attribute(&site, file, "settings", settings, capacity) ? -1 : 1;
done:
    h5_close(&file);
    h5_site_close(&site);
    return found;
}

int run_file_read(const char *path, run_row *row, epoch_record **history, int *epochs,
                  const model *m, run_checkpoint *checkpoint, bneck_error *err) {
    run_row found;
    memset(&found, 0, sizeof found);
    epoch_record *rows = NULL;
    void *table = NULL;
    int row_count = 0;
    run_checkpoint loaded = {0};
    if (history) *history = NULL;
    if (epochs) *epochs = 0;
    if (checkpoint) memset(checkpoint, 0, sizeof *checkpoint);
    if (!path || !row) return bneck_error_set(err, "run_file_read: no path or row");

    h5_site site;
    h5_site_open(&site, path, err);
    hid_t file = open_results_file(&site);
    if (file < 0) goto fail;
    if (check_format(&site, file, run_format, run_format_part_way, "bneck run file") ||
        h5_read_fields_from_attributes(&site, file, &h5_run_row_table, &found))
        goto fail;
    if (!status_is_known(found.status)) {
        bneck_error_set(err, "%s: status \"%s\" is none of %s", path, found.status,
                        known_statuses);
        goto fail;
    }
    if (h5_read_table(&site, file, "/history", &h5_epoch_record_table, &table, &row_count))
        goto fail;
    rows = table;
    if (check_history(&site, rows, row_count, &found)) goto fail;
    /* the row and history are the record; weights and checkpoint only when asked for (a
     * kept run never reads them: a file missing either is still its record) */
    if (m && (is_group(&site, file, "/weights") || is_group(&site, file, "/checkpoint") ||
              visit_weights(&site, file, m, NULL, NULL, 0) ||
              read_checkpoint(&site, file, m, checkpoint ? &loaded : NULL)))
        goto fail;
    /* A run to be continued must continue from numbers: a non-finite weight in its
     * checkpoint is damage (a diverged run is never continued, and keeps its NaNs). */
    if (checkpoint && !strcmp(found.status, RUN_STATUS_RUNNING) &&
        checkpoint_not_finite(&site, &loaded))
        goto fail;
    h5_close(&file);
    h5_site_close(&site);

    *row = found;
    if (history) *history = rows;
    else free(rows);
    if (epochs) *epochs = row_count;
    if (checkpoint) *checkpoint = loaded;
    return 0;
fail:
    free(rows);
    run_checkpoint_free(&loaded);
    h5_close(&file);
    h5_site_close(&site);
    return -1;
}
