/* Results files: the statistics, the run file (round trip, atomic replacement, and a -1
 * with a message for every kind of bad file), and the sweep file read back with the plain
 * HDF5 C API, as an analysis tool would. Each test works in its own mkdtemp directory.
 *
 * results/write_sample writes a sample sweep.h5 (and A-r0.h5 beside it) to the path in
 * BNECK_RESULTS_SAMPLE when that is set, for tests/it_results_python.sh to read with
 * h5py, pandas and xarray. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "results/report_read.h"
#include "results/results.h"

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* --- a temporary directory per test ---------------------------------------------------- */

static char temp_dir[64];

static void remove_tree(const char *path) {
    struct stat info;
    if (lstat(path, &info)) return;
    if (S_ISDIR(info.st_mode)) {
        DIR *dir = opendir(path);
        if (dir) {
            struct dirent *entry;
            while ((entry = readdir(dir))) {
                if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
                char child[512];
                snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
                remove_tree(child);
            }
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void make_temp_dir(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/bneck-results-XXXXXX");
    cr_assert_not_null(mkdtemp(temp_dir), "mkdtemp: %s", strerror(errno));
}

static void remove_temp_dir(void) {
    if (temp_dir[0]) remove_tree(temp_dir);
    temp_dir[0] = '\0';
}

static const char *temp_path(const char *name) {
    static char paths[8][256];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, 256, "%s/%s", temp_dir, name);
    return path;
}

static int path_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

/* The whole file, malloc'ed. */
static unsigned char *file_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(length > 0 ? (size_t)length : 1);
    cr_assert_eq(fread(bytes, 1, (size_t)length, f), (size_t)length);
    fclose(f);
    *size = (size_t)length;
    return bytes;
}

static void write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(bytes, 1, size, f), size);
    fclose(f);
}

/* --- sample data -------------------------------------------------------------------- */

static model built; /* large: keep it off the stack */

static void build_small_model(model *m, int mode, int alpha) {
    model_spec spec = {mode, alpha, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    bneck_error err;
    cr_assert_eq(model_build(m, &spec, &err), 0, "%s", err.message);
}

static void fill_history(epoch_record *history, int epochs, double offset) {
    for (int i = 0; i < epochs; i++) {
        history[i] = (epoch_record){
            .epoch = i + 1,
            .lr = 1e-3 / (1 + i),
            .train_loss = 2.0 - 0.1 * i + offset,
            .train_acc = 0.3 + 0.05 * i,
            .val_loss = 1.9 - 0.1 * i,
            .val_acc = 0.25 + 0.06 * i + offset,
            .epoch_s = 10.0 + i + offset,
            .images_per_s = 5000.0 - 10 * i,
            .compute_s = 8.0 + 0.5 * i,
            .allreduce_s = 0.25 * i,
            .data_s = 0.125,
            .eval_s = 1.5,
        };
    }
}

static void make_row(run_row *row, const char *pattern, int repeat, const char *status,
                     const epoch_record *history, int epochs) {
    memset(row, 0, sizeof *row);
    snprintf(row->pattern, sizeof row->pattern, "%s", pattern);
    row->mode = 3;
    row->alpha = 4;
    row->repeat = repeat;
    row->seed = 0xFEDCBA9876543210ULL; /* above INT64_MAX: must survive as unsigned */
    row->ranks = 2;
    snprintf(row->devices, sizeof row->devices, "cpu x2");
    snprintf(row->hosts, sizeof row->hosts, "node1,node2");
    row->params = 308318;
    row->pseudo_flops = 28986368;
    row->macs = 26606080;
    run_row_summarise(row, history, epochs);
    snprintf(row->status, sizeof row->status, "%s", status);
}

/* Deterministic, with the awkward floats in it: -0, a denormal, the largest finite. */
static void fill_floats(float *values, size_t count, uint32_t seed) {
    uint32_t state = seed;
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        values[i] = ((float)(state >> 8) / 16777216.0f - 0.5f) * 3.0f;
    }
    if (count > 3) {
        values[0] = -0.0f;
        values[1] = 1e-45f;
        values[2] = FLT_MAX;
    }
}

static void make_checkpoint(run_checkpoint *c, const model *m, uint32_t seed) {
    c->param_count = m->param_count;
    c->state_count = m->state_count;
    c->params = malloc(m->param_count * sizeof(float));
    c->state = malloc(m->state_count * sizeof(float));
    c->adam_m = malloc(m->param_count * sizeof(float));
    c->adam_v = malloc(m->param_count * sizeof(float));
    fill_floats(c->params, m->param_count, seed);
    fill_floats(c->state, m->state_count, seed + 1);
    fill_floats(c->adam_m, m->param_count, seed + 2);
    fill_floats(c->adam_v, m->param_count, seed + 3);
    c->step = 12345;
    c->epochs_done = 4;
    c->cpu_threads = 3;
}

enum { SAMPLE_EPOCHS = 4 };
static const char sample_config[] = "[sweep]\npatterns = A B\nepochs = 4\n# \xc3\xa9t\xc3\xa9\n";

/* Writes a good run file of model m at path (4 epochs, the checkpoint make_checkpoint
 * gives for seed). */
static void write_run_of(const char *path, const model *m, const char *status, uint32_t seed) {
    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    run_row row;
    make_row(&row, "A", 0, status, history, SAMPLE_EPOCHS);
    run_checkpoint c = {0};
    make_checkpoint(&c, m, seed);
    bneck_error err = {{0}};
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, m, &c, sample_config, NULL, &err),
                 0, "%s", err.message);
    run_checkpoint_free(&c);
}

/* The same for the suite's model. */
static void write_sample_run(const char *path, const char *status, uint32_t seed) {
    write_run_of(path, &built, status, seed);
}

/* Expects run_file_read to refuse path with a message containing each of the words. */
static void expect_read_fails(const char *path, const model *m, const char *word1,
                              const char *word2) {
    run_row row;
    epoch_record *history = (epoch_record *)1; /* must come back NULL */
    int epochs = -1;
    run_checkpoint c;
    bneck_error err = {{0}};
    cr_assert_eq(run_file_read(path, &row, &history, &epochs, m, m ? &c : NULL, &err), -1,
                 "reading %s should fail", path);
    cr_expect_null(history);
    cr_expect_eq(epochs, 0);
    if (m) cr_expect_null(c.params);
    cr_log_info("refused as expected: %s", err.message);
    cr_expect(strstr(err.message, path) != NULL, "message names the file: %s", err.message);
    if (word1) cr_expect(strstr(err.message, word1) != NULL, "'%s' in: %s", word1, err.message);
    if (word2) cr_expect(strstr(err.message, word2) != NULL, "'%s' in: %s", word2, err.message);
}

/* --- reading with the HDF5 C API, as a tool would ---------------------------------- */

static void read_text_attribute(hid_t object, const char *name, char *text, size_t capacity) {
    hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
    cr_assert_geq(attribute, 0, "attribute %s", name);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    char *value = NULL;
    cr_assert_geq(H5Aread(attribute, type, &value), 0, "reading attribute %s", name);
    snprintf(text, capacity, "%s", value);
    H5free_memory(value);
    H5Tclose(type);
    H5Aclose(attribute);
}

static int64_t read_int_attribute(hid_t object, const char *name) {
    int64_t value = -1;
    hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
    cr_assert_geq(attribute, 0, "attribute %s", name);
    cr_assert_geq(H5Aread(attribute, H5T_NATIVE_INT64, &value), 0);
    H5Aclose(attribute);
    return value;
}

/* Shape of a dataset; returns its rank. */
static int dataset_shape(hid_t file, const char *name, hsize_t dims[4]) {
    hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(dataset, 0, "dataset %s", name);
    hid_t space = H5Dget_space(dataset);
    int rank = H5Sget_simple_extent_ndims(space);
    cr_assert(rank >= 0 && rank <= 4);
    H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    H5Dclose(dataset);
    return rank;
}

static hid_t fixed_string(size_t size) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, size);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    return type;
}

/* ==================================================================================== */
/* Statistics                                                                           */

Test(stats, median_of_odd_and_even_counts) {
    double odd[] = {5, 1, 3};
    cr_expect_float_eq(stats_median(odd, 3), 3.0, 0);
    cr_expect(odd[0] == 5 && odd[1] == 1 && odd[2] == 3, "values are not modified");
    double even[] = {4, 1, 3, 2};
    cr_expect_float_eq(stats_median(even, 4), 2.5, 0);
    double one[] = {7.25};
    cr_expect_float_eq(stats_median(one, 1), 7.25, 0);
    double repeated[] = {2, 2, 9, 2};
    cr_expect_float_eq(stats_median(repeated, 4), 2.0, 0);
}

Test(stats, median_of_nothing_is_nan) {
    cr_expect(isnan(stats_median(NULL, 0)));
    double some[] = {1};
    cr_expect(isnan(stats_median(some, 0)));
}

Test(stats, sample_sd_against_hand_values) {
    /* mean 5, squared deviations 32, ddof 1: sqrt(32 / 7). */
    double values[] = {2, 4, 4, 4, 5, 5, 7, 9};
    cr_expect_float_eq(stats_sd(values, 8), sqrt(32.0 / 7.0), 1e-12);
    double four[] = {1, 2, 3, 4};
    cr_expect_float_eq(stats_sd(four, 4), sqrt(5.0 / 3.0), 1e-12);
    double two[] = {0.8, 0.9};
    cr_expect_float_eq(stats_sd(two, 2), 0.1 / sqrt(2.0), 1e-12);
    double constant[] = {3, 3, 3};
    cr_expect_float_eq(stats_sd(constant, 3), 0.0, 0);
}

Test(stats, sd_of_fewer_than_two_is_nan) {
    double one[] = {4};
    cr_expect(isnan(stats_sd(one, 1)));
    cr_expect(isnan(stats_sd(one, 0)));
    cr_expect(isnan(stats_sd(NULL, 0)));
}

Test(stats, summarise_a_history) {
    const double seconds[] = {10, 4, 6, 5, 7}, accuracy[] = {0.1, 0.5, 0.7, 0.7, 0.6};
    const double rates[] = {100, 200, 300, 250, 150};
    epoch_record history[5];
    for (int i = 0; i < 5; i++)
        history[i] = (epoch_record){.epoch = i + 1, .val_acc = accuracy[i], .epoch_s = seconds[i],
                                    .images_per_s = rates[i], .eval_s = 1.0};
    run_row row;
    memset(&row, 0, sizeof row);
    run_row_summarise(&row, history, 5);
    cr_expect_eq(row.epochs, 5);
    cr_expect_float_eq(row.best_val_acc, 0.7, 0);
    cr_expect_eq(row.best_epoch, 3, "ties keep the earliest epoch");
    cr_expect_float_eq(row.final_val_acc, 0.6, 0);
    cr_expect_float_eq(row.median_epoch_s, 5.5, 1e-12, "median of 4 6 5 7");
    cr_expect_float_eq(row.sd_epoch_s, sqrt(5.0 / 3.0), 1e-12);
    cr_expect_float_eq(row.images_per_s, 225.0, 1e-12, "median of 200 300 250 150");
    cr_expect_float_eq(row.total_s, 32.0 + 5.0, 1e-12);
}

Test(stats, summarise_one_and_two_epochs) {
    epoch_record history[2] = {
        {.epoch = 1, .val_acc = 0.4, .epoch_s = 12, .images_per_s = 80, .eval_s = 2},
        {.epoch = 2, .val_acc = 0.3, .epoch_s = 9, .images_per_s = 90, .eval_s = 2},
    };
    run_row row;
    run_row_summarise(&row, history, 1);
    cr_expect_eq(row.epochs, 1);
    cr_expect_float_eq(row.median_epoch_s, 12.0, 0, "one epoch: that epoch");
    cr_expect(isnan(row.sd_epoch_s));
    cr_expect_float_eq(row.images_per_s, 80.0, 0);
    cr_expect_eq(row.best_epoch, 1);
    cr_expect_float_eq(row.total_s, 14.0, 0);

    run_row_summarise(&row, history, 2);
    cr_expect_float_eq(row.median_epoch_s, 9.0, 0, "two epochs: the second only");
    cr_expect(isnan(row.sd_epoch_s));
    cr_expect_eq(row.best_epoch, 1);
    cr_expect_float_eq(row.final_val_acc, 0.3, 0);
}

Test(stats, summarise_nothing_and_nan_accuracy) {
    run_row row;
    run_row_summarise(&row, NULL, 0);
    cr_expect_eq(row.epochs, 0);
    cr_expect_eq(row.best_epoch, 0);
    cr_expect(isnan(row.best_val_acc) && isnan(row.median_epoch_s) && isnan(row.images_per_s));
    cr_expect_float_eq(row.total_s, 0.0, 0);

    epoch_record diverged[3] = {{.epoch = 1, .val_acc = NAN},
                                {.epoch = 2, .val_acc = 0.2},
                                {.epoch = 3, .val_acc = NAN}};
    run_row_summarise(&row, diverged, 3);
    cr_expect_float_eq(row.best_val_acc, 0.2, 0);
    cr_expect_eq(row.best_epoch, 2);
    cr_expect(isnan(row.final_val_acc));
}

/* ==================================================================================== */
/* Run file                                                                             */

static void setup_run_file(void) {
    make_temp_dir();
    build_small_model(&built, 3, 4);
}

TestSuite(run_file, .init = setup_run_file, .fini = remove_temp_dir);

static void expect_rows_equal(const run_row *a, const run_row *b) {
    cr_expect_str_eq(a->pattern, b->pattern);
    cr_expect_eq(a->mode, b->mode);
    cr_expect_eq(a->alpha, b->alpha);
    cr_expect_eq(a->repeat, b->repeat);
    cr_expect_eq(a->seed, b->seed, "seed %llx", (unsigned long long)a->seed);
    cr_expect_eq(a->ranks, b->ranks);
    cr_expect_str_eq(a->devices, b->devices);
    cr_expect_str_eq(a->hosts, b->hosts);
    cr_expect_eq(a->params, b->params);
    cr_expect_eq(a->pseudo_flops, b->pseudo_flops);
    cr_expect_eq(a->macs, b->macs);
    cr_expect_eq(a->epochs, b->epochs);
    cr_expect_eq(a->best_val_acc, b->best_val_acc);
    cr_expect_eq(a->best_epoch, b->best_epoch);
    cr_expect_eq(a->final_val_acc, b->final_val_acc);
    cr_expect_eq(a->median_epoch_s, b->median_epoch_s);
    cr_expect(a->sd_epoch_s == b->sd_epoch_s || (isnan(a->sd_epoch_s) && isnan(b->sd_epoch_s)));
    cr_expect_eq(a->images_per_s, b->images_per_s);
    cr_expect_eq(a->total_s, b->total_s);
    cr_expect_str_eq(a->status, b->status);
}

static void expect_histories_equal(const epoch_record *a, const epoch_record *b, int epochs) {
    for (int i = 0; i < epochs; i++) {
        cr_expect_eq(a[i].epoch, b[i].epoch);
        cr_expect_eq(a[i].lr, b[i].lr);
        cr_expect_eq(a[i].train_loss, b[i].train_loss);
        cr_expect_eq(a[i].train_acc, b[i].train_acc);
        cr_expect_eq(a[i].val_loss, b[i].val_loss);
        cr_expect_eq(a[i].val_acc, b[i].val_acc);
        cr_expect_eq(a[i].epoch_s, b[i].epoch_s);
        cr_expect_eq(a[i].images_per_s, b[i].images_per_s);
        cr_expect_eq(a[i].compute_s, b[i].compute_s);
        cr_expect_eq(a[i].allreduce_s, b[i].allreduce_s);
        cr_expect_eq(a[i].data_s, b[i].data_s);
        cr_expect_eq(a[i].eval_s, b[i].eval_s);
    }
}

Test(run_file, round_trip_is_exact) {
    const char *path = temp_path("A-r0.h5");
    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    run_row row;
    make_row(&row, "A", 0, "complete", history, SAMPLE_EPOCHS);
    run_checkpoint written = {0};
    make_checkpoint(&written, &built, 7);
    bneck_error err = {{0}};
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &written,
                                sample_config, NULL, &err), 0, "%s", err.message);
    cr_expect(!path_exists(temp_path("A-r0.h5.tmp")), "the .tmp is renamed away");

    run_row back;
    epoch_record *history_back = NULL;
    int epochs = 0;
    run_checkpoint read = {0};
    cr_assert_eq(run_file_read(path, &back, &history_back, &epochs, &built, &read, &err), 0, "%s",
                 err.message);
    expect_rows_equal(&back, &row);
    cr_assert_eq(epochs, SAMPLE_EPOCHS);
    expect_histories_equal(history_back, history, SAMPLE_EPOCHS);
    cr_assert_eq(read.param_count, built.param_count);
    cr_assert_eq(read.state_count, built.state_count);
    cr_expect_eq(read.step, 12345);
    cr_expect_eq(read.epochs_done, 4);
    cr_expect_eq(read.cpu_threads, 3, "the CPU threads that computed it");
    const size_t param_bytes = built.param_count * sizeof(float);
    cr_expect_eq(memcmp(read.params, written.params, param_bytes), 0, "params bit-exact");
    cr_expect_eq(memcmp(read.adam_m, written.adam_m, param_bytes), 0, "adam_m bit-exact");
    cr_expect_eq(memcmp(read.adam_v, written.adam_v, param_bytes), 0, "adam_v bit-exact");
    cr_expect_eq(memcmp(read.state, written.state, built.state_count * sizeof(float)), 0,
                 "state bit-exact");
    free(history_back);
    run_checkpoint_free(&read);
    run_checkpoint_free(&read); /* twice is harmless */
    run_checkpoint_free(&written);
}

/* Sets (value > 0) or removes (0) /checkpoint's param_layout attribute of a good file. */
static void set_param_layout(const char *path, int64_t value) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    hid_t group = H5Gopen2(file, "/checkpoint", H5P_DEFAULT);
    cr_assert_geq(group, 0);
    cr_assert_geq(H5Adelete(group, "param_layout"), 0, "the writer names its layout");
    if (value > 0) {
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t attribute = H5Acreate2(group, "param_layout", H5T_STD_I64LE, space, H5P_DEFAULT,
                                     H5P_DEFAULT);
        cr_assert_geq(H5Awrite(attribute, H5T_NATIVE_INT64, &value), 0);
        H5Aclose(attribute);
        H5Sclose(space);
    }
    H5Gclose(group);
    H5Fclose(file);
}

/* A checkpoint written layer by layer (layers separate, as every build before the
 * grouped layout wrote it, without the attribute) resumes in the grouped layout with every
 * layer's weights, Adam moments and running statistics where they belong. */
Test(run_file, checkpoints_of_the_separate_layout_are_converted) {
    static model separate;
    model_spec spec = built.spec;
    spec.grouping = MODEL_LAYERS_SEPARATE;
    cr_assert_eq(model_build(&separate, &spec, NULL), 0);
    run_checkpoint written = {0};
    make_checkpoint(&written, &separate, 21); /* what write_run_of writes */
    for (int attribute = 0; attribute < 2; attribute++) {
        const char *path = temp_path("E-r0.h5");
        bneck_error err = {{0}};
        write_run_of(path, &separate, "running", 21);
        if (!attribute) set_param_layout(path, 0); /* as an old build wrote it */
        run_row back;
        run_checkpoint read = {0};
        cr_assert_eq(run_file_read(path, &back, NULL, NULL, &built, &read, &err), 0, "%s",
                     err.message);
        int moved = 0;
        for (int i = 0; i < built.layer_count; i++) {
            const layer *to = &built.layers[i], *from = model_layer_named(&separate, to->name);
            cr_assert_not_null(from, "%s is in both layouts", to->name);
            const float *sources[3] = {written.params, written.adam_m, written.adam_v};
            const float *targets[3] = {read.params, read.adam_m, read.adam_v};
            for (int b = 0; b < 3; b++) {
                cr_expect_eq(memcmp(targets[b] + to->weight, sources[b] + from->weight,
                                    to->weight_count * sizeof(float)), 0,
                             "%s weights (buffer %d)", to->name, b);
                cr_expect_eq(memcmp(targets[b] + to->bias, sources[b] + from->bias,
                                    to->bias_count * sizeof(float)), 0,
                             "%s biases (buffer %d)", to->name, b);
            }
            moved += to->weight != from->weight;
            if (to->kind != LAYER_BATCHNORM) continue;
            const size_t bytes = (size_t)to->out.channels * sizeof(float);
            cr_expect_eq(memcmp(read.state + to->running_mean,
                                written.state + from->running_mean, bytes), 0,
                         "%s running mean", to->name);
            cr_expect_eq(memcmp(read.state + to->running_var, written.state + from->running_var,
                                bytes), 0, "%s running variance", to->name);
        }
        cr_expect_gt(moved, 10, "the two layouts differ (%d layers moved)", moved);
        run_checkpoint_free(&read);
    }
    set_param_layout(temp_path("E-r0.h5"), 7);
    expect_read_fails(temp_path("E-r0.h5"), &built, "param_layout 7", "1 or 2");
    run_checkpoint_free(&written);
}

Test(run_file, weights_are_named_after_the_layers_with_their_shapes) {
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "complete", 3);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 3); /* the same values the file holds */

    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    int convs = 0, batchnorms = 0, dense = 0;
    for (int i = 0; i < built.layer_count; i++) {
        const layer *l = &built.layers[i];
        char name[160];
        hsize_t dims[4];
        if (l->kind == LAYER_CONV) {
            snprintf(name, sizeof name, "/weights/%s/kernel", l->name);
            cr_assert_eq(dataset_shape(file, name, dims), 4, "%s is 4-D", name);
            cr_expect(dims[0] == (hsize_t)l->out.channels && dims[1] == (hsize_t)l->in.channels &&
                          dims[2] == (hsize_t)l->kernel && dims[3] == (hsize_t)l->kernel,
                      "%s is OIHW", name);
            snprintf(name, sizeof name, "/weights/%s/bias", l->name);
            cr_assert_eq(dataset_shape(file, name, dims), 1);
            cr_expect_eq(dims[0], (hsize_t)l->out.channels);
            convs++;
        } else if (l->kind == LAYER_BATCHNORM) {
            const char *tensors[] = {"gamma", "beta", "moving_mean", "moving_variance"};
            for (size_t t = 0; t < COUNT(tensors); t++) {
                snprintf(name, sizeof name, "/weights/%s/%s", l->name, tensors[t]);
                cr_assert_eq(dataset_shape(file, name, dims), 1, "%s", name);
                cr_expect_eq(dims[0], (hsize_t)l->out.channels);
            }
            batchnorms++;
        } else if (l->kind == LAYER_DENSE) {
            snprintf(name, sizeof name, "/weights/%s/kernel", l->name);
            cr_assert_eq(dataset_shape(file, name, dims), 2);
            cr_expect(dims[0] == MODEL_CLASSES && dims[1] == (hsize_t)l->in.channels);
            dense++;
        }
    }
    cr_expect(convs > 10 && batchnorms > 10 && dense == 1);

    /* Values: a BatchNorm's moving variance and the first conv's kernel are where their
     * offsets say. */
    const layer *bn = NULL, *conv = &built.layers[0];
    for (int i = 0; i < built.layer_count && !bn; i++)
        if (built.layers[i].kind == LAYER_BATCHNORM) bn = &built.layers[i];
    cr_assert(bn && conv->kind == LAYER_CONV);
    const int channels = bn->out.channels;
    float *values = malloc(((size_t)channels > conv->weight_count ? (size_t)channels
                                                                  : conv->weight_count) *
                           sizeof(float));
    char name[160];
    snprintf(name, sizeof name, "/weights/%s/moving_variance", bn->name);
    hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
    H5Dclose(dataset);
    cr_expect_eq(
        memcmp(values, c.state + bn->running_var, (size_t)channels * sizeof(float)), 0);
    snprintf(name, sizeof name, "/weights/%s/kernel", conv->name);
    dataset = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
    H5Dclose(dataset);
    cr_expect_eq(memcmp(values, c.params + conv->weight, conv->weight_count * sizeof(float)), 0);
    free(values);

    /* The layer names keep their "/conv" and "/bn" as a group level. */
    cr_expect_gt(H5Lexists(file, "/weights/inception1", H5P_DEFAULT), 0);
    cr_expect_gt(H5Lexists(file, "/weights/inception1/1x1", H5P_DEFAULT), 0);
    cr_expect_gt(H5Lexists(file, "/weights/inception1/1x1/conv", H5P_DEFAULT), 0);
    cr_expect_gt(H5Lexists(file, "/weights/inception1/1x1/bn", H5P_DEFAULT), 0);

    char text[256];
    read_text_attribute(file, "format", text, sizeof text);
    cr_expect_str_eq(text, "bneck-run-1");
    read_text_attribute(file, "status", text, sizeof text);
    cr_expect_str_eq(text, "complete");
    read_text_attribute(file, "config", text, sizeof text);
    cr_expect_str_eq(text, sample_config, "config text verbatim, UTF-8 included");
    read_text_attribute(file, "created", text, sizeof text);
    cr_expect_eq(strlen(text), 20, "ISO 8601 UTC: %s", text);
    cr_expect_eq(read_int_attribute(file, "epochs"), SAMPLE_EPOCHS);
    hid_t checkpoint = H5Gopen2(file, "/checkpoint", H5P_DEFAULT);
    cr_expect_eq(read_int_attribute(checkpoint, "step"), 12345);
    cr_expect_eq(read_int_attribute(checkpoint, "epochs_done"), 4);
    H5Gclose(checkpoint);
    H5Fclose(file);
    run_checkpoint_free(&c);
}

Test(run_file, running_files_read_and_report_their_status) {
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "running", 1);
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    bneck_error err = {{0}};
    /* Without a model: row and history only, the checkpoint left alone. */
    run_checkpoint c = {.params = (float *)1};
    cr_assert_eq(run_file_read(path, &row, &history, &epochs, NULL, &c, &err), 0, "%s",
                 err.message);
    cr_expect_str_eq(row.status, "running");
    cr_expect_eq(epochs, SAMPLE_EPOCHS);
    cr_expect_null(c.params, "no model: no checkpoint arrays");
    free(history);
}

Test(run_file, a_second_write_replaces_the_first) {
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "running", 1);
    write_sample_run(path, "complete", 2);
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    run_checkpoint c;
    bneck_error err = {{0}};
    cr_assert_eq(run_file_read(path, &row, &history, &epochs, &built, &c, &err), 0, "%s",
                 err.message);
    cr_expect_str_eq(row.status, "complete");
    run_checkpoint expected = {0};
    make_checkpoint(&expected, &built, 2);
    cr_expect_eq(memcmp(c.params, expected.params, built.param_count * sizeof(float)), 0);
    free(history);
    run_checkpoint_free(&c);
    run_checkpoint_free(&expected);
}

/* Writes that fail must leave the committed file byte for byte as it was. */
static void expect_unchanged(const char *path, const unsigned char *before, size_t size) {
    size_t now_size;
    unsigned char *now = file_bytes(path, &now_size);
    cr_expect(now_size == size && memcmp(now, before, size) == 0, "%s is untouched", path);
    free(now);
}

Test(run_file, a_failed_write_leaves_the_old_file_and_no_tmp) {
    const char *path = temp_path("A-r0.h5"), *tmp = temp_path("A-r0.h5.tmp");
    write_sample_run(path, "running", 1);
    size_t size;
    unsigned char *before = file_bytes(path, &size);

    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    run_row row;
    make_row(&row, "A", 0, "complete", history, SAMPLE_EPOCHS);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 9);
    bneck_error err = {{0}};

    /* Failure part-way through: two layers with one name, so the second cannot be
     * created after the .tmp file already holds data. */
    static model clash;
    clash = built;
    snprintf(clash.layers[2].name, sizeof clash.layers[2].name, "%s", clash.layers[0].name);
    clash.layers[2].kind = clash.layers[0].kind;
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &clash, &c, "", NULL, &err), -1);
    cr_log_info("failed as expected: %s", err.message);
    cr_expect(strstr(err.message, path) && strstr(err.message, "HDF5:"), "%s", err.message);
    cr_expect(strstr(err.message, "results/") || strstr(err.message, ".c:"),
              "file:line in: %s", err.message);
    cr_expect(!path_exists(tmp), "the .tmp is removed");
    expect_unchanged(path, before, size);

    /* Failure at the start: the .tmp name is taken by a directory (not ours: left). */
    cr_assert_eq(mkdir(tmp, 0700), 0);
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &c, "", NULL, &err), -1);
    cr_expect(strstr(err.message, path) != NULL, "%s", err.message);
    expect_unchanged(path, before, size);
    struct stat info;
    cr_expect(stat(tmp, &info) == 0 && S_ISDIR(info.st_mode));
    rmdir(tmp);

    /* A directory that does not exist. */
    const char *nowhere = temp_path("missing/A-r0.h5");
    cr_assert_eq(run_file_write(nowhere, &row, history, SAMPLE_EPOCHS, &built, &c, "", NULL, &err), -1);
    cr_expect(strstr(err.message, nowhere) != NULL, "%s", err.message);
    cr_expect(!path_exists(nowhere));

    /* A checkpoint that does not fit the model is refused before anything is written. */
    c.param_count--;
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &c, "", NULL, &err), -1);
    cr_expect(strstr(err.message, "does not fit") != NULL, "%s", err.message);
    c.param_count++;
    expect_unchanged(path, before, size);
    cr_expect(!path_exists(tmp));

    /* The file is still good after all that. */
    run_row back;
    epoch_record *history_back = NULL;
    int epochs;
    cr_expect_eq(run_file_read(path, &back, &history_back, &epochs, &built, NULL, &err), 0, "%s",
                 err.message);
    free(history_back);
    free(before);
    run_checkpoint_free(&c);
}

Test(run_file, truncated_files_are_refused) {
    const char *good = temp_path("good.h5");
    write_sample_run(good, "complete", 1);
    size_t size;
    unsigned char *bytes = file_bytes(good, &size);
    const double fractions[] = {0.5, 0.1, 0.9, 0.999};
    for (size_t i = 0; i < COUNT(fractions); i++) {
        const char *path = temp_path("cut.h5");
        write_bytes(path, bytes, (size_t)(fractions[i] * (double)size));
        expect_read_fails(path, &built, NULL, NULL);
    }
    const char *empty = temp_path("empty.h5");
    write_bytes(empty, bytes, 0);
    expect_read_fails(empty, &built, "not an HDF5 file", NULL);
    const char *half = temp_path("half.h5");
    write_bytes(half, bytes, size / 2);
    expect_read_fails(half, &built, "truncated", NULL);
    free(bytes);
}

static void delete_object(const char *path, const char *name) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    cr_assert_geq(H5Ldelete(file, name, H5P_DEFAULT), 0, "deleting %s", name);
    H5Fclose(file);
}

/* Where needle first occurs in bytes at or after `from`, or -1. */
static long find_bytes(const unsigned char *bytes, size_t size, size_t from, const void *needle,
                       size_t length) {
    for (size_t i = from; i + length <= size; i++)
        if (!memcmp(bytes + i, needle, length)) return (long)i;
    return -1;
}

/* A running run's file recording `settings` (NULL: none, as files from before them). */
static const char copy_settings[] = "[train]\nlr = 0.001\n";
static void write_run_recording(const char *path, const char *settings) {
    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    run_row row;
    make_row(&row, "A", 0, RUN_STATUS_RUNNING, history, SAMPLE_EPOCHS);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 5);
    bneck_error err = {{0}};
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &c, sample_config,
                                settings, &err), 0, "%s", err.message);
    run_checkpoint_free(&c);
}

static void write_run_with_settings(const char *path) { write_run_recording(path, copy_settings); }

/* Reads path back whole and expects write_run_with_settings's row and settings. */
static void expect_run_with_settings(const char *path) {
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    run_checkpoint c = {0};
    bneck_error err = {{0}};
    cr_assert_eq(run_file_read(path, &row, &history, &epochs, &built, &c, &err), 0, "%s",
                 err.message);
    cr_expect_str_eq(row.pattern, "A");
    cr_expect_str_eq(row.status, RUN_STATUS_RUNNING);
    cr_expect_str_eq(row.devices, "cpu x2");
    cr_expect_str_eq(row.hosts, "node1,node2");
    cr_expect_eq(epochs, SAMPLE_EPOCHS);
    free(history);
    run_checkpoint_free(&c);
    char settings[256] = "";
    cr_expect_eq(run_file_settings(path, settings, sizeof settings, &err), 1, "%s", err.message);
    cr_expect_str_eq(settings, copy_settings);
}

/* Ways to damage a global heap collection ("GCOL": HDF5's store of variable-length strings):
 * every object overwritten with 0xff (sizes far past the collection: libhdf5 1.10.8 read
 * past its buffer), or its first object made a free space of size 0 (libhdf5 then loops for
 * ever). */
typedef enum heap_damage { HEAP_GARBAGE, HEAP_EMPTY_FREE_SPACE } heap_damage;

static void damage_heap_collections(const char *path, heap_damage damage) {
    size_t size;
    unsigned char *bytes = file_bytes(path, &size);
    int collections = 0;
    for (long at = find_bytes(bytes, size, 0, "GCOL", 4); at >= 0;
         at = find_bytes(bytes, size, (size_t)at + 4, "GCOL", 4)) {
        uint64_t length; /* the collection's size, after the signature, version and 3 bytes */
        memcpy(&length, bytes + at + 8, sizeof length);
        if (length < 4096 || length > size - (size_t)at) continue; /* not a collection */
        if (damage == HEAP_GARBAGE) memset(bytes + at + 16, 0xff, length - 16);
        else memset(bytes + at + 16, 0, 16); /* index 0, size 0 */
        collections++;
    }
    cr_assert_geq(collections, 1, "no global heap collection found in %s", path);
    write_bytes(path, bytes, size);
    free(bytes);
}

static void fill_heap_collections_with_garbage(const char *path) {
    damage_heap_collections(path, HEAP_GARBAGE);
}

/* HDF5's global heap has no checksum; libhdf5 1.10.8 read past its buffers on a damaged one
 * and crashed the sweep's resume. The run file's text attributes are read from their
 * checksummed copy instead, so a heap filled with garbage leaves the file readable, with
 * the right values. */
Test(run_file, text_attributes_are_read_from_their_checksummed_copy) {
    const char *path = temp_path("A-r0.h5");
    write_run_with_settings(path);
    fill_heap_collections_with_garbage(path);
    expect_run_with_settings(path);
}

/* The copy itself is checksummed: damage to it is refused, naming it. */
Test(run_file, a_damaged_text_copy_is_refused) {
    const char *path = temp_path("A-r0.h5");
    write_run_with_settings(path);
    size_t size;
    unsigned char *bytes = file_bytes(path, &size);
    static const char pair[] = "format\0bneck-run-1"; /* the copy's first pair */
    const long at = find_bytes(bytes, size, 0, pair, sizeof pair);
    cr_assert_geq(at, 0, "the text copy's bytes are not in %s", path);
    bytes[at + 13] ^= 0x01; /* bneck-run-1 -> bneck-sun-1 in the copy only */
    write_bytes(path, bytes, size);
    free(bytes);
    expect_read_fails(path, &built, "/text_attributes", "damaged");
}

/* Files written before the copy existed are read from their attributes. */
Test(run_file, files_without_a_text_copy_read_their_attributes) {
    const char *path = temp_path("A-r0.h5");
    write_run_with_settings(path);
    delete_object(path, "/text_attributes");
    expect_run_with_settings(path);
}

/* A file without the copy (an older bneck's, or another tool's) has its text attributes
 * read from the heap: a damaged collection is refused, naming it, before libhdf5 reads it
 * (which crashed on the first damage and never returned on the second). */
Test(run_file, without_a_text_copy_a_damaged_heap_is_refused, .timeout = 60) {
    const heap_damage damages[] = {HEAP_GARBAGE, HEAP_EMPTY_FREE_SPACE};
    const char *faults[] = {"an object larger than the collection",
                            "a free-space object smaller than its header"};
    for (size_t i = 0; i < COUNT(damages); i++) {
        const char *path = temp_path("A-r0.h5");
        write_run_with_settings(path);
        delete_object(path, "/text_attributes");
        damage_heap_collections(path, damages[i]);
        expect_read_fails(path, &built, "damaged: HDF5's global heap collection", faults[i]);
        char settings[256];
        bneck_error err = {{0}};
        cr_expect_eq(run_file_settings(path, settings, sizeof settings, &err), -1);
        cr_expect(strstr(err.message, faults[i]) != NULL, "%s", err.message);
    }
}

Test(run_file, foreign_hdf5_and_text_files_are_refused) {
    const char *foreign = temp_path("foreign.h5");
    hid_t file = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {3};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dataset = H5Dcreate2(file, "data", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT);
    int values[3] = {1, 2, 3};
    H5Dwrite(dataset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    H5Dclose(dataset);
    H5Sclose(space);
    H5Fclose(file);
    expect_read_fails(foreign, &built, "not a bneck run file", NULL);

    const char *text = temp_path("notes.h5");
    write_bytes(text, "epoch,acc\n1,0.5\n", 16);
    expect_read_fails(text, &built, "not an HDF5 file", NULL);

    expect_read_fails(temp_path("absent.h5"), NULL, "No such file", NULL);
    expect_read_fails(temp_dir, NULL, "not a regular file", NULL);
}

Test(run_file, a_sweep_file_is_not_a_run_file) {
    const char *path = temp_path("sweep.h5");
    sweep_attributes attributes = {.config_text = ""};
    bneck_error err = {{0}};
    cr_assert_eq(sweep_file_write(path, NULL, NULL, NULL, 0, &attributes, &err), 0, "%s",
                 err.message);
    expect_read_fails(path, NULL, "not a bneck run file", "bneck-sweep-1");
}

Test(run_file, another_model_is_refused) {
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "complete", 1);
    static model other;
    build_small_model(&other, 1, 1);
    expect_read_fails(path, &other, "/weights/", NULL); /* other layer names: missing */
    build_small_model(&other, 3, 2);
    expect_read_fails(path, &other, "expected", NULL);
}

/* Opens a good file read-write and removes one object from it. */
Test(run_file, missing_objects_are_named) {
    const struct {
        const char *object, *expected;
    } cases[] = {
        {"/history", "/history: missing"},
        {"/weights", "/weights: missing"},
        {"/checkpoint/adam_v", "/checkpoint/adam_v: missing"},
        {"/weights/dense/kernel", "/weights/dense/kernel: missing"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        const char *path = temp_path("A-r0.h5");
        write_sample_run(path, "complete", 1);
        delete_object(path, cases[i].object);
        expect_read_fails(path, &built, cases[i].expected, NULL);
    }
    /* An attribute of the row. */
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "complete", 1);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Adelete(file, "best_val_acc"), 0);
    H5Fclose(file);
    expect_read_fails(path, NULL, "best_val_acc", "missing");
}

/* A complete run is kept on its row and history: without the model (as the sweep reads a
 * kept run, and the merge every run) a file missing its weights or checkpoint still reads;
 * with the model (a run to continue) it is refused, naming what is missing. */
Test(run_file, a_kept_run_reads_without_weights_or_checkpoint) {
    static const char *const groups[] = {"/weights", "/checkpoint"};
    for (size_t i = 0; i < COUNT(groups); i++) {
        const char *path = temp_path("A-r0.h5");
        write_sample_run(path, "complete", 1);
        delete_object(path, groups[i]);
        run_row row;
        epoch_record *history = NULL;
        int epochs = 0;
        bneck_error err = {{0}};
        cr_expect_eq(run_file_read(path, &row, &history, &epochs, NULL, NULL, &err), 0,
                     "without %s: %s", groups[i], err.message);
        cr_expect_eq(epochs, SAMPLE_EPOCHS);
        cr_expect_str_eq(row.status, "complete");
        free(history);
        char expected[64];
        snprintf(expected, sizeof expected, "%s: missing", groups[i]);
        expect_read_fails(path, &built, expected, NULL);
    }
}

Test(run_file, a_history_that_disagrees_with_the_row_is_refused) {
    const char *path = temp_path("A-r0.h5");
    write_sample_run(path, "complete", 1);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t attribute = H5Aopen(file, "epochs", H5P_DEFAULT);
    int64_t epochs = SAMPLE_EPOCHS + 1;
    H5Awrite(attribute, H5T_NATIVE_INT64, &epochs);
    H5Aclose(attribute);
    H5Fclose(file);
    expect_read_fails(path, NULL, "/history", "epochs");
}

Test(run_file, bad_status_is_refused_on_write) {
    epoch_record history[1];
    fill_history(history, 1, 0.0);
    run_row row;
    make_row(&row, "A", 0, "done", history, 1);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 1);
    bneck_error err = {{0}};
    const char *path = temp_path("A-r0.h5");
    cr_expect_eq(run_file_write(path, &row, history, 1, &built, &c, "", NULL, &err), -1);
    cr_expect(strstr(err.message, "status") != NULL, "%s", err.message);
    cr_expect(!path_exists(path));
    run_checkpoint_free(&c);
}

/* A running run's checkpoint is what it continues from: a non-finite weight there is
 * damage, refused with the index named; a diverged run keeps its NaNs and reads. */
Test(run_file, non_finite_checkpoints_are_refused_only_for_runs_to_continue) {
    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    const char *statuses[] = {RUN_STATUS_RUNNING, RUN_STATUS_DIVERGED};
    for (int i = 0; i < 2; i++) {
        run_row row;
        make_row(&row, "A", 0, statuses[i], history, SAMPLE_EPOCHS);
        run_checkpoint c = {0};
        make_checkpoint(&c, &built, 3);
        c.params[17] = NAN;
        bneck_error err = {{0}};
        const char *path = temp_path(i == 0 ? "A-r0.h5" : "A-r1.h5");
        cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &c, "", NULL, &err), 0,
                     "%s", err.message);
        run_checkpoint_free(&c);
        if (i == 0) {
            expect_read_fails(path, &built, "/checkpoint/params[17]", "damaged");
            continue;
        }
        run_row read_row;
        epoch_record *read_history = NULL;
        int epochs = 0;
        run_checkpoint read = {0};
        cr_expect_eq(run_file_read(path, &read_row, &read_history, &epochs, &built, &read, &err),
                     0, "%s", err.message);
        cr_expect_str_eq(read_row.status, RUN_STATUS_DIVERGED);
        cr_expect(read.params && isnan(read.params[17]));
        run_checkpoint_free(&read);
        free(read_history);
    }
    /* overflowed Adam moments and running statistics alone: a run to continue as it is */
    run_row row;
    make_row(&row, "A", 0, RUN_STATUS_RUNNING, history, SAMPLE_EPOCHS);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 3);
    c.adam_v[5] = INFINITY;
    c.state[3] = INFINITY;
    bneck_error err = {{0}};
    const char *path = temp_path("A-r2.h5");
    cr_assert_eq(run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, &c, "", NULL, &err), 0, "%s",
                 err.message);
    run_checkpoint_free(&c);
    run_row read_row;
    epoch_record *read_history = NULL;
    int epochs = 0;
    cr_expect_eq(run_file_read(path, &read_row, &read_history, &epochs, &built, &c, &err), 0, "%s",
                 err.message);
    cr_expect(c.state && isinf(c.state[3]));
    run_checkpoint_free(&c);
    free(read_history);
}

/* --- a checkpoint part-way through an epoch ------------------------------------------ */

/* make_checkpoint's, stopped at step 37 of the next epoch by a group of two ranks. */
static void make_epoch_progress(run_checkpoint *c) {
    c->state_count = built.state_count;
    c->epoch_states = malloc(2 * built.state_count * sizeof(float));
    fill_floats(c->epoch_states, 2 * built.state_count, 21);
    static const double sums[2 * EPOCH_SUMS] = {40.25, 30, 1184, 41.5, 31, 1184};
    static const double seconds[EPOCH_SECONDS] = {12.5, 10.0, 1.5, 0.75};
    c->epoch_steps = 37;
    c->epoch_ranks = 2;
    c->epoch_sums = malloc(sizeof sums);
    memcpy(c->epoch_sums, sums, sizeof sums);
    memcpy(c->epoch_seconds, seconds, sizeof seconds);
}

/* run_file_write of a running run of 4 epochs with checkpoint c. */
static int write_running_run(const char *path, const run_checkpoint *c, bneck_error *err) {
    epoch_record history[SAMPLE_EPOCHS];
    fill_history(history, SAMPLE_EPOCHS, 0.0);
    run_row row;
    make_row(&row, "A", 0, RUN_STATUS_RUNNING, history, SAMPLE_EPOCHS);
    return run_file_write(path, &row, history, SAMPLE_EPOCHS, &built, c, "", NULL, err);
}

static void write_run_with_progress(const char *path) {
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 7);
    make_epoch_progress(&c);
    bneck_error err = {{0}};
    cr_assert_eq(write_running_run(path, &c, &err), 0, "%s", err.message);
    run_checkpoint_free(&c);
}

/* Overwrites /checkpoint/<name> (float64) of a good file with values. */
static void overwrite_doubles(const char *path, const char *name, const double *values) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(dataset, 0, "%s", name);
    cr_assert_geq(H5Dwrite(dataset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
    H5Dclose(dataset);
    H5Fclose(file);
}

/* Sets (keep 1) or deletes (keep 0) an int64 attribute of /checkpoint. */
static void set_checkpoint_attribute(const char *path, const char *name, int64_t value, int keep) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    hid_t group = H5Gopen2(file, "/checkpoint", H5P_DEFAULT);
    cr_assert_geq(group, 0);
    if (H5Aexists(group, name) > 0) cr_assert_geq(H5Adelete(group, name), 0);
    if (keep) {
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t attribute = H5Acreate2(group, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert_geq(H5Awrite(attribute, H5T_NATIVE_INT64, &value), 0);
        H5Aclose(attribute);
        H5Sclose(space);
    }
    H5Gclose(group);
    H5Fclose(file);
}

/* The steps, every rank's sums and the times of an epoch stopped part-way come back
 * exactly, as a (ranks, 3) float64 dataset a reader can see; a checkpoint at an epoch's
 * end (and a file from before the attribute) has none. */
Test(run_file, a_checkpoint_part_way_through_an_epoch_round_trips) {
    const char *path = temp_path("A-r0.h5");
    write_run_with_progress(path);
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    run_checkpoint read = {0}, expected = {0};
    make_epoch_progress(&expected);
    bneck_error err = {{0}};
    cr_assert_eq(run_file_read(path, &row, &history, &epochs, &built, &read, &err), 0, "%s",
                 err.message);
    cr_expect_eq(read.epochs_done, 4);
    cr_expect_eq(read.epoch_steps, 37);
    cr_expect_eq(read.epoch_ranks, 2);
    cr_assert_not_null(read.epoch_sums);
    cr_expect_eq(memcmp(read.epoch_sums, expected.epoch_sums, 2 * EPOCH_SUMS * sizeof(double)), 0);
    cr_expect_eq(memcmp(read.epoch_seconds, expected.epoch_seconds, sizeof read.epoch_seconds), 0);
    cr_assert_not_null(read.epoch_states);
    cr_expect_eq(memcmp(read.epoch_states, expected.epoch_states,
                        2 * built.state_count * sizeof(float)), 0, "each rank's running statistics");
    run_checkpoint_free(&read);
    free(history);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    hsize_t dims[4];
    cr_expect_eq(dataset_shape(file, "/checkpoint/epoch_sums", dims), 2);
    cr_expect(dims[0] == 2 && dims[1] == 3, "one row of three sums per rank");
    cr_expect_eq(dataset_shape(file, "/checkpoint/epoch_seconds", dims), 1);
    cr_expect_eq(dims[0], 4);
    cr_expect_eq(dataset_shape(file, "/checkpoint/epoch_states", dims), 2);
    cr_expect(dims[0] == 2 && dims[1] == built.state_count, "one row of statistics per rank");
    hid_t group = H5Gopen2(file, "/checkpoint", H5P_DEFAULT);
    cr_expect_eq(read_int_attribute(group, "epoch_steps"), 37);
    H5Gclose(group);
    char format[32];
    read_text_attribute(file, "format", format, sizeof format);
    cr_expect_str_eq(format, "bneck-run-2", "builds that cannot resume part-way refuse it");
    H5Fclose(file);

    /* at an epoch's end: epoch_steps 0, no sums */
    const char *at_end = temp_path("A-r1.h5");
    write_sample_run(at_end, RUN_STATUS_RUNNING, 1);
    for (int keep = 1; keep >= 0; keep--) {
        if (!keep) set_checkpoint_attribute(at_end, "epoch_steps", 0, 0); /* an older file */
        cr_assert_eq(run_file_read(at_end, &row, &history, &epochs, &built, &read, &err), 0, "%s",
                     err.message);
        cr_expect_eq(read.epoch_steps, 0);
        cr_expect_eq(read.epoch_ranks, 0);
        cr_expect_null(read.epoch_sums);
        cr_expect_null(read.epoch_states);
        run_checkpoint_free(&read);
        free(history);
    }
    file = H5Fopen(at_end, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_expect_eq(H5Lexists(file, "/checkpoint/epoch_sums", H5P_DEFAULT), 0);
    read_text_attribute(file, "format", format, sizeof format);
    cr_expect_str_eq(format, "bneck-run-1");
    H5Fclose(file);
    run_checkpoint_free(&expected);
}

/* Damaged progress is refused with the field named: a negative or non-finite sum, more
 * hits than images, a rank count out of range, a missing dataset, a negative step, the
 * old parameter layout. */
Test(run_file, a_damaged_epoch_in_progress_is_refused_by_name) {
    const char *path = temp_path("A-r0.h5");
    const double negative_loss[2 * EPOCH_SUMS] = {40.25, 30, 1184, -1.0, 31, 1184};
    write_run_with_progress(path);
    overwrite_doubles(path, "/checkpoint/epoch_sums", negative_loss);
    expect_read_fails(path, &built, "/checkpoint/epoch_sums[1] is -1", "finite number");

    const double too_many_hits[2 * EPOCH_SUMS] = {40.25, 1185, 1184, 41.5, 31, 1184};
    write_run_with_progress(path);
    overwrite_doubles(path, "/checkpoint/epoch_sums", too_many_hits);
    expect_read_fails(path, &built, "epoch_sums[0]: 1185 correct of 1184", NULL);

    const double nan_seconds[EPOCH_SECONDS] = {12.5, NAN, 1.5, 0.75};
    write_run_with_progress(path);
    overwrite_doubles(path, "/checkpoint/epoch_seconds", nan_seconds);
    expect_read_fails(path, &built, "/checkpoint/epoch_seconds[1] is nan", NULL);

    write_run_with_progress(path);
    set_checkpoint_attribute(path, "epoch_ranks", 0, 1);
    expect_read_fails(path, &built, "epoch_ranks 0 out of range", NULL);

    /* a rank count that would need a huge allocation is refused on the shapes alone */
    write_run_with_progress(path);
    set_checkpoint_attribute(path, "epoch_ranks", 1 << 20, 1);
    expect_read_fails(path, &built, "/checkpoint/epoch_sums: shape 2 x 3, expected 1048576 x 3", NULL);

    write_run_with_progress(path);
    set_checkpoint_attribute(path, "epoch_ranks", 3, 1);
    expect_read_fails(path, &built, "/checkpoint/epoch_sums: shape 2 x 3, expected 3 x 3", "epoch_ranks rows");

    write_run_with_progress(path);
    set_checkpoint_attribute(path, "epoch_steps", -2, 1);
    expect_read_fails(path, &built, "epoch_steps -2 out of range", NULL);

    write_run_with_progress(path);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Ldelete(file, "/checkpoint/epoch_seconds", H5P_DEFAULT), 0);
    H5Fclose(file);
    expect_read_fails(path, &built, "/checkpoint/epoch_seconds", NULL);

    /* the separate layout is older than checkpoints part-way through an epoch */
    write_run_with_progress(path);
    set_param_layout(path, 1);
    expect_read_fails(path, &built, "an epoch in progress in param_layout 1", NULL);

    /* and the writer refuses progress without its sums, leaving the file alone */
    write_run_with_progress(path);
    size_t size;
    unsigned char *before = file_bytes(path, &size);
    run_checkpoint c = {0};
    make_checkpoint(&c, &built, 8);
    c.epoch_steps = 5;
    c.epoch_ranks = 1;
    bneck_error err = {{0}};
    cr_expect_neq(write_running_run(path, &c, &err), 0);
    cr_expect(strstr(err.message, "epoch in progress (5 steps, sums of 1 ranks) is incomplete") != NULL,
              "%s", err.message);
    expect_unchanged(path, before, size);
    free(before);
    run_checkpoint_free(&c);
}

/* The settings a run was made with read back; files written without them say so. */
Test(run_file, settings_read_back_and_are_optional) {
    const char *with = temp_path("A-r0.h5"), *without = temp_path("A-r1.h5");
    write_run_recording(with, copy_settings);
    write_run_recording(without, NULL);
    bneck_error err = {{0}};
    char read[256] = "";
    cr_expect_eq(run_file_settings(with, read, sizeof read, &err), 1, "%s", err.message);
    cr_expect_str_eq(read, copy_settings);
    cr_expect_eq(run_file_settings(without, read, sizeof read, &err), 0, "%s", err.message);
    cr_expect_eq(run_file_settings(temp_path("missing.h5"), read, sizeof read, &err), -1);
}

Test(run_file, hdf5_version_is_known) {
    cr_expect_str_eq(results_hdf5_version(), "1.10.8");
}

/* ==================================================================================== */
/* Sweep file                                                                           */

TestSuite(sweep_file, .init = make_temp_dir, .fini = remove_temp_dir);

/* The hand-checked sweep: A (2 complete runs, 1 running), B (2 complete), C (1 running). */
enum { SWEEP_RUNS = 6, SWEEP_MAX_EPOCHS = 3 };
typedef struct sweep_sample {
    run_row runs[SWEEP_RUNS];
    epoch_record history[SWEEP_RUNS][SWEEP_MAX_EPOCHS];
    epoch_record *histories[SWEEP_RUNS];
    int epochs[SWEEP_RUNS];
} sweep_sample;

static void make_sweep_sample(sweep_sample *s) {
    static const struct {
        const char *pattern;
        int repeat;
        const char *status;
        int epochs;
        double seconds[SWEEP_MAX_EPOCHS], accuracy[SWEEP_MAX_EPOCHS], rate[SWEEP_MAX_EPOCHS];
        int64_t macs;
    } plan[SWEEP_RUNS] = {
        {"A", 0, "complete", 3, {9, 2, 4}, {0.5, 0.8, 0.7}, {10, 100, 80}, 1000},
        {"B", 0, "complete", 2, {7, 6}, {0.4, 0.5}, {10, 50}, 500},
        {"A", 1, "complete", 3, {9, 3, 5}, {0.6, 0.6, 0.9}, {10, 120, 100}, 1000},
        {"A", 2, "running", 1, {100}, {0.99}, {1}, 1000},
        {"B", 1, "complete", 2, {7, 8}, {0.45, 0.3}, {10, 70}, 500},
        {"C", 0, "running", 1, {5}, {0.2}, {30}, 250},
    };
    memset(s, 0, sizeof *s);
    for (int r = 0; r < SWEEP_RUNS; r++) {
        fill_history(s->history[r], plan[r].epochs, 0.0);
        for (int e = 0; e < plan[r].epochs; e++) {
            s->history[r][e].epoch_s = plan[r].seconds[e];
            s->history[r][e].val_acc = plan[r].accuracy[e];
            s->history[r][e].images_per_s = plan[r].rate[e];
        }
        s->histories[r] = s->history[r];
        s->epochs[r] = plan[r].epochs;
        make_row(&s->runs[r], plan[r].pattern, plan[r].repeat, plan[r].status, s->history[r],
                 plan[r].epochs);
        s->runs[r].macs = plan[r].macs;
        s->runs[r].mode = plan[r].pattern[0] - 'A' + 1;
    }
    /* Bytes after the NUL must not reach the file. */
    memcpy(s->runs[0].devices + strlen(s->runs[0].devices) + 1, "junk", 4);
}

static const sweep_attributes sample_attributes = {
    .config_text = sample_config,
    .versions = "bneck test; HDF5 1.10.8",
    .hosts = "node1,node2",
    .devices = "cpu,cpu",
    .mpi_size = 2,
    .runs_planned = 7,
    .slurm_job_id = "4242",
    .slurm_nodelist = "",
    .rank_gpu_map = NULL,
};

static void write_sweep_sample(const char *path) {
    static sweep_sample s;
    make_sweep_sample(&s);
    bneck_error err = {{0}};
    cr_assert_eq(sweep_file_write(path, s.runs, s.histories, s.epochs, SWEEP_RUNS,
                                  &sample_attributes, &err),
                 0, "%s", err.message);
}

/* bneck-report reads the sweep file's text attributes from their checksummed copy too
 * (see run_file.text_attributes_are_read_from_their_checksummed_copy). */
Test(sweep_file, the_report_reads_text_attributes_from_their_copy) {
    const char *path = temp_path("sweep.h5");
    write_sweep_sample(path);
    fill_heap_collections_with_garbage(path);
    report_sweep sweep;
    bneck_error err = {{0}};
    cr_assert_eq(report_sweep_read(path, &sweep, &err), 0, "%s", err.message);
    const report_attribute *a = sweep.attributes;
    cr_expect_str_eq(a[REPORT_ATTR_FORMAT].text, "bneck-sweep-1");
    cr_expect_str_eq(a[REPORT_ATTR_CONFIG].text, sample_config);
    cr_expect_str_eq(a[REPORT_ATTR_HOSTS].text, "node1,node2");
    cr_expect_str_eq(a[REPORT_ATTR_SLURM_JOB_ID].text, "4242");
    cr_expect_str_eq(a[REPORT_ATTR_MPI_SIZE].text, "2");
    report_sweep_free(&sweep);
}

/* An older sweep file (no copy) with a damaged heap: refused by name, as run files are. */
Test(sweep_file, without_a_text_copy_the_report_refuses_a_damaged_heap, .timeout = 60) {
    const char *path = temp_path("sweep.h5");
    write_sweep_sample(path);
    delete_object(path, "/text_attributes");
    damage_heap_collections(path, HEAP_EMPTY_FREE_SPACE);
    report_sweep sweep;
    bneck_error err = {{0}};
    cr_assert_eq(report_sweep_read(path, &sweep, &err), -1);
    cr_expect(strstr(err.message, path) != NULL, "%s", err.message);
    cr_expect(strstr(err.message, "global heap collection at byte") != NULL, "%s", err.message);
}

/* A file written by another tool: `pad_bytes` of a dataset, then a text attribute, whose
 * heap collection HDF5 places after the dataset. Returns the collection's offset. */
static long write_padded_foreign_file(const char *path, size_t pad_bytes) {
    const hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    const hsize_t dims[1] = {pad_bytes};
    const hid_t space = H5Screate_simple(1, dims, NULL);
    const hid_t dataset = H5Dcreate2(file, "pad", H5T_NATIVE_UCHAR, space, H5P_DEFAULT,
                                     H5P_DEFAULT, H5P_DEFAULT);
    unsigned char *zeros = calloc(pad_bytes, 1);
    cr_assert_geq(H5Dwrite(dataset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros), 0);
    free(zeros);
    const hid_t text = H5Tcopy(H5T_C_S1), scalar = H5Screate(H5S_SCALAR);
    H5Tset_size(text, H5T_VARIABLE);
    const hid_t attribute = H5Acreate2(file, "format", text, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char *value = "not-bneck";
    cr_assert_geq(H5Awrite(attribute, text, &value), 0);
    H5Aclose(attribute);
    H5Sclose(scalar);
    H5Tclose(text);
    H5Dclose(dataset);
    H5Sclose(space);
    H5Fclose(file);
    size_t size;
    unsigned char *bytes = file_bytes(path, &size);
    const long at = find_bytes(bytes, size, 0, "GCOL", 4);
    free(bytes);
    cr_assert_geq(at, 0, "no heap collection in %s", path);
    return at;
}

/* The heap walk reads the file in windows of 1 MiB: a collection whose header starts 6
 * bytes before a window's end is still found, walked, and refused when damaged. */
Test(sweep_file, a_heap_collection_across_the_walks_read_windows_is_walked, .timeout = 60) {
    const char *path = temp_path("foreign.h5");
    const long target = (1L << 20) - 6;
    long at = write_padded_foreign_file(path, 1u << 20);
    at = write_padded_foreign_file(path, (size_t)((1L << 20) + target - at));
    cr_assert_eq(at, target, "the heap collection landed at byte %ld, not %ld", at, target);
    report_sweep sweep;
    bneck_error err = {{0}};
    cr_assert_eq(report_sweep_read(path, &sweep, &err), -1);
    cr_expect(strstr(err.message, "not a bneck sweep file") != NULL, "intact: %s", err.message);
    damage_heap_collections(path, HEAP_EMPTY_FREE_SPACE);
    cr_assert_eq(report_sweep_read(path, &sweep, &err), -1);
    char expected[64];
    snprintf(expected, sizeof expected, "global heap collection at byte %ld holds", target);
    cr_expect(strstr(err.message, expected) != NULL, "damaged: %s", err.message);
}

/* A subset of the /runs columns, as a reader picks them by name. */
typedef struct runs_view {
    char pattern[16];
    int32_t repeat;
    double best_val_acc, images_per_s;
    char devices[64];
    char status[16];
} runs_view;

/* The /summary columns, read by name into a struct of our own layout. */
typedef struct summary_view {
    char pattern[16];
    int32_t mode, n;
    double median_best_val_acc, sd_best_val_acc, median_epoch_s, sd_epoch_s, achieved_flops;
    int64_t macs;
} summary_view;

Test(sweep_file, tables_and_summary_read_back_with_hand_values) {
    const char *path = temp_path("sweep.h5");
    write_sweep_sample(path);
    cr_expect(!path_exists(temp_path("sweep.h5.tmp")));

    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(file, 0);
    hid_t s16 = fixed_string(16), s64 = fixed_string(64);

    hid_t runs_type = H5Tcreate(H5T_COMPOUND, sizeof(runs_view));
    H5Tinsert(runs_type, "pattern", HOFFSET(runs_view, pattern), s16);
    H5Tinsert(runs_type, "repeat", HOFFSET(runs_view, repeat), H5T_NATIVE_INT32);
    H5Tinsert(runs_type, "best_val_acc", HOFFSET(runs_view, best_val_acc), H5T_NATIVE_DOUBLE);
    H5Tinsert(runs_type, "images_per_s", HOFFSET(runs_view, images_per_s), H5T_NATIVE_DOUBLE);
    H5Tinsert(runs_type, "devices", HOFFSET(runs_view, devices), s64);
    H5Tinsert(runs_type, "status", HOFFSET(runs_view, status), s16);
    hsize_t dims[4];
    cr_assert_eq(dataset_shape(file, "/runs", dims), 1);
    cr_assert_eq(dims[0], SWEEP_RUNS);
    runs_view runs[SWEEP_RUNS];
    hid_t dataset = H5Dopen2(file, "/runs", H5P_DEFAULT);
    cr_assert_geq(H5Dread(dataset, runs_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, runs), 0);
    H5Dclose(dataset);
    const char *patterns[SWEEP_RUNS] = {"A", "B", "A", "A", "B", "C"};
    const double best[SWEEP_RUNS] = {0.8, 0.5, 0.9, 0.99, 0.45, 0.2};
    for (int r = 0; r < SWEEP_RUNS; r++) {
        cr_expect_str_eq(runs[r].pattern, patterns[r]);
        cr_expect_float_eq(runs[r].best_val_acc, best[r], 0);
    }
    cr_expect_str_eq(runs[3].status, "running");
    cr_expect_float_eq(runs[0].images_per_s, 90.0, 0);
    cr_expect_str_eq(runs[0].devices, "cpu x2");
    for (size_t i = strlen("cpu x2"); i < 64; i++)
        cr_expect_eq(runs[0].devices[i], '\0', "NUL padding after the text, byte %zu", i);

    hid_t summary_type = H5Tcreate(H5T_COMPOUND, sizeof(summary_view));
    H5Tinsert(summary_type, "pattern", HOFFSET(summary_view, pattern), s16);
    H5Tinsert(summary_type, "mode", HOFFSET(summary_view, mode), H5T_NATIVE_INT32);
    H5Tinsert(summary_type, "n", HOFFSET(summary_view, n), H5T_NATIVE_INT32);
    H5Tinsert(summary_type, "median_best_val_acc", HOFFSET(summary_view, median_best_val_acc),
              H5T_NATIVE_DOUBLE);
    H5Tinsert(summary_type, "sd_best_val_acc", HOFFSET(summary_view, sd_best_val_acc),
              H5T_NATIVE_DOUBLE);
    H5Tinsert(summary_type, "median_epoch_s", HOFFSET(summary_view, median_epoch_s),
              H5T_NATIVE_DOUBLE);
    H5Tinsert(summary_type, "sd_epoch_s", HOFFSET(summary_view, sd_epoch_s), H5T_NATIVE_DOUBLE);
    H5Tinsert(summary_type, "achieved_flops", HOFFSET(summary_view, achieved_flops),
              H5T_NATIVE_DOUBLE);
    H5Tinsert(summary_type, "macs", HOFFSET(summary_view, macs), H5T_NATIVE_INT64);
    cr_assert_eq(dataset_shape(file, "/summary", dims), 1);
    cr_assert_eq(dims[0], 3, "one row per pattern: A B C");
    summary_view summary[3];
    dataset = H5Dopen2(file, "/summary", H5P_DEFAULT);
    cr_assert_geq(H5Dread(dataset, summary_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, summary), 0);
    H5Dclose(dataset);

    /* A: complete runs r0, r1 (r2 is running). Best accuracies 0.8, 0.9; epochs after the
     * first: 2 4 and 3 5 -> median 3.5, sd sqrt(5/3); images/s 90 and 110 -> 100. */
    cr_expect_str_eq(summary[0].pattern, "A");
    cr_expect_eq(summary[0].mode, 1);
    cr_expect_eq(summary[0].n, 2);
    cr_expect_float_eq(summary[0].median_best_val_acc, 0.85, 1e-12);
    cr_expect_float_eq(summary[0].sd_best_val_acc, 0.1 / sqrt(2.0), 1e-12);
    cr_expect_float_eq(summary[0].median_epoch_s, 3.5, 1e-12);
    cr_expect_float_eq(summary[0].sd_epoch_s, sqrt(5.0 / 3.0), 1e-12);
    cr_expect_eq(summary[0].macs, 1000);
    cr_expect_float_eq(summary[0].achieved_flops, 6.0 * 1000 * 100, 1e-6);
    /* B: best 0.5 and 0.45; epochs after the first: 6 and 8; images/s 50 and 70. */
    cr_expect_str_eq(summary[1].pattern, "B");
    cr_expect_eq(summary[1].n, 2);
    cr_expect_float_eq(summary[1].median_best_val_acc, 0.475, 1e-12);
    cr_expect_float_eq(summary[1].sd_best_val_acc, 0.05 / sqrt(2.0), 1e-12);
    cr_expect_float_eq(summary[1].median_epoch_s, 7.0, 1e-12);
    cr_expect_float_eq(summary[1].sd_epoch_s, sqrt(2.0), 1e-12);
    cr_expect_float_eq(summary[1].achieved_flops, 6.0 * 500 * 60, 1e-6);
    /* C: no complete run. */
    cr_expect_str_eq(summary[2].pattern, "C");
    cr_expect_eq(summary[2].n, 0);
    cr_expect_eq(summary[2].macs, 250);
    cr_expect(isnan(summary[2].median_best_val_acc) && isnan(summary[2].sd_epoch_s) &&
              isnan(summary[2].achieved_flops));

    /* Histories: one table per run, named <pattern>-r<repeat>. */
    cr_assert_eq(dataset_shape(file, "/history/A-r1", dims), 1);
    cr_expect_eq(dims[0], 3);
    cr_assert_eq(dataset_shape(file, "/history/C-r0", dims), 1);
    cr_expect_eq(dims[0], 1);
    hid_t epoch_type = H5Tcreate(H5T_COMPOUND, sizeof(double));
    H5Tinsert(epoch_type, "epoch_s", 0, H5T_NATIVE_DOUBLE);
    double seconds[3];
    dataset = H5Dopen2(file, "/history/A-r1", H5P_DEFAULT);
    cr_assert_geq(H5Dread(dataset, epoch_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, seconds), 0);
    H5Dclose(dataset);
    cr_expect(seconds[0] == 9 && seconds[1] == 3 && seconds[2] == 5);

    char text[256];
    read_text_attribute(file, "format", text, sizeof text);
    cr_expect_str_eq(text, "bneck-sweep-1");
    read_text_attribute(file, "config", text, sizeof text);
    cr_expect_str_eq(text, sample_config);
    read_text_attribute(file, "slurm_job_id", text, sizeof text);
    cr_expect_str_eq(text, "4242");
    cr_expect_eq(H5Aexists(file, "slurm_nodelist"), 0, "unknown values are left out");
    cr_expect_eq(H5Aexists(file, "rank_gpu_map"), 0);
    cr_expect_eq(read_int_attribute(file, "sd_ddof"), 1);
    cr_expect_eq(read_int_attribute(file, "mpi_size"), 2);
    cr_expect_eq(read_int_attribute(file, "runs_planned"), 7);
    const char *text_attributes[] = {"git_commit", "versions", "hosts", "devices", "created"};
    for (size_t i = 0; i < COUNT(text_attributes); i++)
        cr_expect_gt(H5Aexists(file, text_attributes[i]), 0, "%s", text_attributes[i]);

    H5Tclose(epoch_type);
    H5Tclose(summary_type);
    H5Tclose(runs_type);
    H5Tclose(s64);
    H5Tclose(s16);
    H5Fclose(file);
}

Test(sweep_file, an_empty_sweep_has_empty_tables) {
    const char *path = temp_path("sweep.h5");
    sweep_attributes attributes = {.config_text = "x"};
    bneck_error err = {{0}};
    cr_assert_eq(sweep_file_write(path, NULL, NULL, NULL, 0, &attributes, &err), 0, "%s",
                 err.message);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hsize_t dims[4];
    cr_assert_eq(dataset_shape(file, "/runs", dims), 1);
    cr_expect_eq(dims[0], 0);
    cr_assert_eq(dataset_shape(file, "/summary", dims), 1);
    cr_expect_eq(dims[0], 0);
    H5Fclose(file);
}

Test(sweep_file, duplicate_runs_are_refused_and_the_old_file_kept) {
    const char *path = temp_path("sweep.h5");
    write_sweep_sample(path);
    size_t size;
    unsigned char *before = file_bytes(path, &size);
    static sweep_sample s;
    make_sweep_sample(&s);
    s.runs[2].repeat = 0; /* a second A-r0 */
    bneck_error err = {{0}};
    cr_expect_eq(sweep_file_write(path, s.runs, s.histories, s.epochs, SWEEP_RUNS,
                                  &sample_attributes, &err), -1);
    cr_expect(strstr(err.message, "A-r0") != NULL, "%s", err.message);
    expect_unchanged(path, before, size);
    cr_expect(!path_exists(temp_path("sweep.h5.tmp")));
    free(before);
}

/* ==================================================================================== */
/* The sample for tests/it_results_python.sh                                            */

Test(results, write_sample) {
    const char *sample = getenv("BNECK_RESULTS_SAMPLE");
    char sweep_path[512], run_path[512];
    if (sample && sample[0]) {
        snprintf(sweep_path, sizeof sweep_path, "%s", sample);
        const char *slash = strrchr(sample, '/');
        snprintf(run_path, sizeof run_path, "%.*sA-r0.h5", slash ? (int)(slash - sample + 1) : 0,
                 sample);
    } else {
        make_temp_dir();
        snprintf(sweep_path, sizeof sweep_path, "%s", temp_path("sweep.h5"));
        snprintf(run_path, sizeof run_path, "%s", temp_path("A-r0.h5"));
    }
    build_small_model(&built, 3, 4);
    write_sweep_sample(sweep_path);
    write_sample_run(run_path, "complete", 5);
    run_row row;
    epoch_record *history = NULL;
    int epochs = 0;
    bneck_error err = {{0}};
    cr_expect_eq(run_file_read(run_path, &row, &history, &epochs, &built, NULL, &err), 0, "%s",
                 err.message);
    free(history);
    if (!(sample && sample[0])) remove_temp_dir();
}
