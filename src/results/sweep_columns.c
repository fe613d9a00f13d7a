#include "results/sweep_columns.h"

#include <hdf5_hl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Variable-length UTF-8: netCDF's string type (it cannot read fixed-length ones). */
static hid_t text_type(void) {
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type >= 0 && (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)) {
        H5Tclose(type);
        return H5I_INVALID_HID;
    }
    return type;
}

/* The texts of one fixed-size field of rows as C strings (a full field has no NUL). */
static char **texts_of(const void *rows, size_t row_size, size_t offset, size_t size, int count) {
    char **texts = bneck_calloc((size_t)(count > 0 ? count : 1), sizeof *texts);
    for (int r = 0; r < count; r++) {
        const char *text = (const char *)rows + (size_t)r * row_size + offset;
        const size_t length = strnlen(text, size);
        texts[r] = bneck_malloc(length + 1);
        memcpy(texts[r], text, length);
        texts[r][length] = '\0';
    }
    return texts;
}

static void free_texts(char **texts, int count) {
    for (int r = 0; r < count; r++) free(texts[r]);
    free(texts);
}

/* A 1-D dataset of texts; with scale_name, made the dimension scale of that name. Returns
 * it open. */
static hid_t write_texts(const h5_site *site, hid_t group, const char *name, char **texts,
                         int count, const char *scale_name) {
    const hsize_t dims[1] = {(hsize_t)count};
    hid_t type = H5I_INVALID_HID, dataset = H5I_INVALID_HID;
    BNECK_H5_CHECK(site, type = text_type(), "%s: no string type", name);
    dataset = h5_write_dataset(site, group, name, type, type, texts, 1, dims);
    if (dataset < 0) goto fail;
    if (scale_name)
        BNECK_H5_CHECK(site, H5DSset_scale(dataset, scale_name), "%s: cannot make it a dimension",
                       name);
    h5_close(&type);
    return dataset;
fail:
    h5_close(&dataset);
    h5_close(&type);
    return H5I_INVALID_HID;
}

/* Attaches the dimension scales (one per axis), adds the description, closes dataset. */
static int finish_column(const h5_site *site, hid_t *dataset, const char *name,
                         const hid_t *scales, int rank, const char *description) {
    for (int axis = 0; axis < rank; axis++)
        BNECK_H5_CHECK(site, H5DSattach_scale(*dataset, scales[axis], (unsigned)axis),
                       "%s: cannot attach its dimension %d", name, axis);
    if (h5_write_text_attribute(site, *dataset, "description", description)) goto fail;
    BNECK_H5_CHECK(site, H5Dclose(*dataset), "%s: cannot close", name);
    *dataset = H5I_INVALID_HID;
    return 0;
fail:
    h5_close(dataset);
    return -1;
}

/* Every field of a table of rows (but the one named `skip`) as a 1-D column over scale. */
static int write_table_columns(const h5_site *site, hid_t group, const h5_table *table,
                               const void *rows, int count, hid_t scale, const char *skip) {
    const hsize_t dims[1] = {(hsize_t)count};
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *field = &table->fields[i];
        if (skip && strcmp(field->name, skip) == 0) continue;
        hid_t dataset;
        if (field->kind == FIELD_TEXT) {
            char **texts = texts_of(rows, table->row_size, field->offset, field->size, count);
            dataset = write_texts(site, group, field->name, texts, count, NULL);
            free_texts(texts, count);
        } else {
            unsigned char *values = bneck_malloc((size_t)count * field->size + 1);
            for (int r = 0; r < count; r++)
                memcpy(values + (size_t)r * field->size,
                       (const unsigned char *)rows + (size_t)r * table->row_size + field->offset,
                       field->size);
            /* stored as in memory, as the compound tables store their numbers */
            const hid_t type = h5_field_memory_type(field->kind);
            dataset = h5_write_dataset(site, group, field->name, type, type, values, 1, dims);
            free(values);
        }
        if (dataset < 0 ||
            finish_column(site, &dataset, field->name, &scale, 1, field->description))
            return -1;
    }
    return 0;
}

/* The runs' names ("E-r0"), the coordinate of /columns/runs and /columns/history. */
static char **run_names(const run_row *runs, int count) {
    char **names = bneck_calloc((size_t)(count > 0 ? count : 1), sizeof *names);
    for (int r = 0; r < count; r++) {
        char name[RESULTS_NAME + 16];
        snprintf(name, sizeof name, "%.*s-r%d", RESULTS_NAME, runs[r].pattern, runs[r].repeat);
        names[r] = bneck_malloc(strlen(name) + 1);
        memcpy(names[r], name, strlen(name) + 1);
    }
    return names;
}

/* /columns/history: each number of an epoch's record as a (run, epoch) array, NaN after
 * a run's last epoch; epoch is the coordinate (1 to the longest run's epochs). */
static int write_history(const h5_site *site, hid_t group, char **names,
                         epoch_record *const *histories, const int *epoch_counts, int run_count) {
    int longest = 0;
    for (int r = 0; r < run_count; r++) longest = epoch_counts[r] > longest ? epoch_counts[r] : longest;
    hid_t scales[2] = {H5I_INVALID_HID, H5I_INVALID_HID};
    const hsize_t epoch_dims[1] = {(hsize_t)longest};
    const hsize_t dims[2] = {(hsize_t)run_count, (hsize_t)longest};
    int32_t *epochs = bneck_malloc(((size_t)longest + 1) * sizeof *epochs);
    double *values = bneck_malloc(((size_t)run_count * (size_t)longest + 1) * sizeof *values);
    int status = -1;
    for (int e = 0; e < longest; e++) epochs[e] = e + 1;
    scales[0] = write_texts(site, group, "run", names, run_count, "run");
    if (scales[0] < 0) goto done;
    scales[1] = h5_write_dataset(site, group, "epoch", H5T_STD_I32LE, H5T_NATIVE_INT32, epochs, 1,
                                 epoch_dims);
    if (scales[1] < 0) goto done;
    BNECK_H5_CHECK(site, H5DSset_scale(scales[1], "epoch"), "epoch: cannot make it a dimension");
    if (h5_write_text_attribute(site, scales[1], "description", "epoch, from 1")) goto done;
    const h5_table *table = &h5_epoch_record_table;
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *field = &table->fields[i];
        if (field->kind != FIELD_DOUBLE) continue; /* epoch: the coordinate */
        for (int r = 0; r < run_count; r++)
            for (int e = 0; e < longest; e++) {
                double *value = &values[(size_t)r * (size_t)longest + (size_t)e];
                if (e < epoch_counts[r])
                    memcpy(value, (const unsigned char *)&histories[r][e] + field->offset, sizeof *value);
                else
                    *value = NAN;
            }
        hid_t dataset = h5_write_dataset(site, group, field->name, H5T_IEEE_F64LE,
                                         H5T_NATIVE_DOUBLE, values, 2, dims);
        if (dataset < 0 || finish_column(site, &dataset, field->name, scales, 2, field->description))
            goto done;
    }
    status = 0;
    goto done;
fail:
    status = -1;
done:
    h5_close(&scales[0]);
    h5_close(&scales[1]);
    free(epochs);
    free(values);
    return status;
}

int sweep_columns_write(const h5_site *site, hid_t file, const run_row *runs,
                        epoch_record *const *histories, const int *epoch_counts, int run_count,
                        const summary_row *summaries, int summary_count) {
    hid_t columns = H5I_INVALID_HID, group = H5I_INVALID_HID, scale = H5I_INVALID_HID;
    char **names = run_names(runs, run_count);
    char **patterns = texts_of(summaries, sizeof *summaries, offsetof(summary_row, pattern),
                               RESULTS_NAME, summary_count);
    int status = -1;
    BNECK_H5_CHECK(site, columns = H5Gcreate2(file, "columns", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/columns: cannot create the group");
    if (h5_write_text_attribute(site, columns, "description",
                                "/runs, /summary and /history again, one dataset per column over "
                                "dimension scales, for netCDF readers: xarray.open_dataset(path, "
                                "group=\"columns/history\") is every run's history over (run, epoch)"))
        goto fail;

    BNECK_H5_CHECK(site, group = H5Gcreate2(columns, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/columns/runs: cannot create the group");
    scale = write_texts(site, group, "run", names, run_count, "run");
    if (scale < 0 ||
        write_table_columns(site, group, &h5_run_row_table, runs, run_count, scale, NULL))
        goto fail;
    h5_close(&scale);
    h5_close(&group);

    BNECK_H5_CHECK(site, group = H5Gcreate2(columns, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/columns/summary: cannot create the group");
    scale = write_texts(site, group, "pattern", patterns, summary_count, "pattern");
    if (scale < 0 || write_table_columns(site, group, &h5_summary_row_table, summaries,
                                         summary_count, scale, "pattern"))
        goto fail;
    h5_close(&scale);
    h5_close(&group);

    BNECK_H5_CHECK(site, group = H5Gcreate2(columns, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "/columns/history: cannot create the group");
    if (write_history(site, group, names, histories, epoch_counts, run_count)) goto fail;
    status = 0;
fail:
    h5_close(&scale);
    h5_close(&group);
    h5_close(&columns);
    free_texts(names, run_count);
    free_texts(patterns, summary_count);
    return status;
}
