#include "results/report_read.h"
#include "results/h5_util.h"

#include <errno.h>
#include <hdf5.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void close_type(hid_t id) { if (id >= 0) H5Tclose(id); }
static void close_space(hid_t id) { if (id >= 0) H5Sclose(id); }
static void close_dataset(hid_t id) { if (id >= 0) H5Dclose(id); }
static void close_attribute(hid_t id) { if (id >= 0) H5Aclose(id); }

/* --- tables by field name ------------------------------------------------------------ */

typedef enum { REPORT_FIELD_STRING, REPORT_FIELD_INT, REPORT_FIELD_INT64, REPORT_FIELD_DOUBLE } report_field_kind;

typedef struct report_field_spec {
    const char *name;   /* the field's name in the file, as in results/results.h */
    report_field_kind kind;
    size_t offset;      /* into the report's struct */
    size_t size;        /* bytes of the struct member (strings: buffer with its NUL) */
} report_field_spec;

#define TABLE_FIELD(type, member, kind) {#member, kind, offsetof(type, member), sizeof(((type *)0)->member)}

static const report_field_spec run_fields[] = {
    TABLE_FIELD(report_run, pattern, REPORT_FIELD_STRING),
    TABLE_FIELD(report_run, mode, REPORT_FIELD_INT),
    TABLE_FIELD(report_run, alpha, REPORT_FIELD_INT),
    TABLE_FIELD(report_run, repeat, REPORT_FIELD_INT),
    TABLE_FIELD(report_run, epochs, REPORT_FIELD_INT),
    TABLE_FIELD(report_run, best_val_acc, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_run, median_epoch_s, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_run, sd_epoch_s, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_run, pseudo_flops, REPORT_FIELD_INT64),
    TABLE_FIELD(report_run, status, REPORT_FIELD_STRING),
};

static const report_field_spec pattern_fields[] = {
    TABLE_FIELD(report_pattern, pattern, REPORT_FIELD_STRING),
    TABLE_FIELD(report_pattern, mode, REPORT_FIELD_INT),
    TABLE_FIELD(report_pattern, alpha, REPORT_FIELD_INT),
    TABLE_FIELD(report_pattern, n, REPORT_FIELD_INT),
    TABLE_FIELD(report_pattern, median_best_val_acc, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_pattern, sd_best_val_acc, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_pattern, median_epoch_s, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_pattern, sd_epoch_s, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_pattern, params, REPORT_FIELD_INT64),
    TABLE_FIELD(report_pattern, pseudo_flops, REPORT_FIELD_INT64),
    TABLE_FIELD(report_pattern, macs, REPORT_FIELD_INT64),
    TABLE_FIELD(report_pattern, achieved_flops, REPORT_FIELD_DOUBLE),
};

static const report_field_spec epoch_fields[] = {
    TABLE_FIELD(report_epoch, epoch, REPORT_FIELD_INT),
    TABLE_FIELD(report_epoch, val_acc, REPORT_FIELD_DOUBLE),
    TABLE_FIELD(report_epoch, epoch_s, REPORT_FIELD_DOUBLE),
};

#define COUNT_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))

typedef struct report_table_spec {
    const report_field_spec *fields;
    int field_count;
    size_t row_size;
} report_table_spec;

static const char *field_kind_words(report_field_kind kind) {
    return kind == REPORT_FIELD_STRING ? "a fixed-length string" : "a number";
}

/* Builds the memory type of the report struct, after checking that the file's compound
 * type has every field the report needs, of a kind HDF5 can convert. */
static hid_t memory_type_for(hid_t file_type, const report_table_spec *table, const char *path,
                             const char *object, bneck_error *err) {
    hid_t memory_type = H5Tcreate(H5T_COMPOUND, table->row_size);
    if (memory_type < 0) BNECK_FAIL("H5Tcreate of a %zu-byte compound failed", table->row_size);
    for (int i = 0; i < table->field_count; i++) {
        const report_field_spec *field = &table->fields[i];
        const int index = H5Tget_member_index(file_type, field->name);
        if (index < 0) {
            H5Tclose(memory_type);
            return bneck_error_set(err, "%s: %s has no field '%s' (a bneck sweep table has one)",
                                   path, object, field->name);
        }
        const H5T_class_t file_class = H5Tget_member_class(file_type, (unsigned)index);
        int kind_ok = 0;
        if (field->kind == REPORT_FIELD_STRING && file_class == H5T_STRING) {
            /* Fixed-length only: HDF5 does not convert variable-length strings to fixed. */
            hid_t member_type = H5Tget_member_type(file_type, (unsigned)index);
            kind_ok = H5Tis_variable_str(member_type) == 0;
            close_type(member_type);
        } else if (field->kind != REPORT_FIELD_STRING) {
            kind_ok = file_class == H5T_INTEGER || file_class == H5T_FLOAT;
        }
        if (!kind_ok) {
            H5Tclose(memory_type);
            return bneck_error_set(err, "%s: field '%s' of %s is not %s", path, field->name,
                                   object, field_kind_words(field->kind));
        }

        hid_t member_type;
        switch (field->kind) {
        case REPORT_FIELD_STRING:
            /* One byte more than the writer's width would need: the NUL is always there. */
            member_type = H5Tcopy(H5T_C_S1);
            H5Tset_size(member_type, field->size);
            H5Tset_strpad(member_type, H5T_STR_NULLTERM);
            break;
        case REPORT_FIELD_INT: member_type = H5Tcopy(H5T_NATIVE_INT); break;
        case REPORT_FIELD_INT64: member_type = H5Tcopy(H5T_NATIVE_INT64); break;
        default: member_type = H5Tcopy(H5T_NATIVE_DOUBLE); break;
        }
        if (H5Tinsert(memory_type, field->name, field->offset, member_type) < 0)
            BNECK_FAIL("H5Tinsert of field '%s' failed", field->name);
        H5Tclose(member_type);
    }
    return memory_type;
}

/* Reads the 1-D compound dataset `object` (absolute path in the file) into a malloc'ed
 * array of report structs. Returns 0, or -1 with err naming path and object. */
static int read_table(hid_t file, const char *path, const char *object, const report_table_spec *table,
                      void **rows_out, int *count_out, bneck_error *err) {
    h5_detail detail;
    hid_t dataset = -1, file_type = -1, space = -1, memory_type = -1;
    void *rows = NULL;
    int status = -1;
    *rows_out = NULL;
    *count_out = 0;

    dataset = H5Dopen2(file, object, H5P_DEFAULT);
    if (dataset < 0) {
        bneck_error_set(err, "%s: cannot open %s: %s", path, object, h5_failure_detail(&detail));
        goto done;
    }
    file_type = H5Dget_type(dataset);
    if (file_type < 0 || H5Tget_class(file_type) != H5T_COMPOUND) {
        bneck_error_set(err, "%s: %s is not a compound table (a bneck sweep table is one)", path,
                        object);
        goto done;
    }
    space = H5Dget_space(dataset);
    if (space < 0 || H5Sget_simple_extent_ndims(space) != 1) {
        bneck_error_set(err, "%s: %s is not a one-dimensional table", path, object);
        goto done;
    }
    hsize_t extent = 0;
    H5Sget_simple_extent_dims(space, &extent, NULL);
    if (extent > (hsize_t)1000000) {
        bneck_error_set(err, "%s: %s has %llu rows, more than a sweep table can sensibly hold",
                        path, object, (unsigned long long)extent);
        goto done;
    }
    memory_type = memory_type_for(file_type, table, path, object, err);
    if (memory_type < 0) goto done;

    rows = bneck_calloc(extent ? (size_t)extent : 1, table->row_size);
    if (extent > 0 && H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0) {
        bneck_error_set(err, "%s: cannot read %s: %s", path, object, h5_failure_detail(&detail));
        goto done;
    }
    *rows_out = rows;
    *count_out = (int)extent;
    rows = NULL;
    status = 0;
done:
    free(rows);
    close_type(memory_type);
    close_space(space);
    close_type(file_type);
    close_dataset(dataset);
    return status;
}

/* 1 when the link exists, 0 when not, -1 (err set) when HDF5 cannot tell. */
static int link_exists(hid_t file, const char *path, const char *object, bneck_error *err) {
    h5_detail detail;
    const htri_t exists = H5Lexists(file, object, H5P_DEFAULT);
    if (exists < 0)
        return bneck_error_set(err, "%s: cannot look up %s: %s", path, object,
                               h5_failure_detail(&detail));
    return exists > 0;
}

/* --- attributes ---------------------------------------------------------------------- */

static char *copy_text(const char *text) {
    char *copy = bneck_malloc(strlen(text) + 1);
    strcpy(copy, text);
    return copy;
}

/* The value of a scalar attribute as text; *text_out is NULL when the file lacks it.
 * Strings (fixed or variable length) come as they are, numbers as decimals. Text the
 * file's checksummed copy holds (h5_util.h) comes from there. */
static int read_attribute_text(const h5_site *site, hid_t file, const char *path,
                               const char *name, char **text_out, bneck_error *err) {
    h5_detail detail;
    hid_t attribute = -1, file_type = -1, space = -1, memory_type = -1;
    int status = -1;
    *text_out = NULL;
    const char *copied = h5_text_copy_find(site, name);
    if (copied) {
        *text_out = copy_text(copied);
        return 0;
    }

    const htri_t exists = H5Aexists(file, name);
    if (exists < 0)
        return bneck_error_set(err, "%s: cannot look up attribute '%s': %s", path, name,
                               h5_failure_detail(&detail));
    if (exists == 0) return 0;

    attribute = H5Aopen(file, name, H5P_DEFAULT);
    if (attribute < 0) {
        bneck_error_set(err, "%s: cannot open attribute '%s': %s", path, name,
                        h5_failure_detail(&detail));
        goto done;
    }
    file_type = H5Aget_type(attribute);
    space = H5Aget_space(attribute);
    if (file_type < 0 || space < 0) {
        bneck_error_set(err, "%s: cannot inspect attribute '%s': %s", path, name,
                        h5_failure_detail(&detail));
        goto done;
    }
    const hssize_t points = H5Sget_simple_extent_npoints(space);
    if (points != 1) {
        /* Not a scalar: say so rather than pick one element. */
        char text[64];
        snprintf(text, sizeof text, "(%lld values)", (long long)points);
        *text_out = copy_text(text);
        status = 0;
        goto done;
    }

    const H5T_class_t type_class = H5Tget_class(file_type);
    herr_t read_status = -1;
    if (type_class == H5T_STRING && H5Tis_variable_str(file_type) > 0) {
        char *value = NULL;
        memory_type = H5Tcopy(H5T_C_S1);
        H5Tset_size(memory_type, H5T_VARIABLE);
        H5Tset_cset(memory_type, H5Tget_cset(file_type));
        read_status = H5Aread(attribute, memory_type, &value);
        if (read_status >= 0) {
            *text_out = copy_text(value ? value : "");
            H5free_memory(value);
        }
    } else if (type_class == H5T_STRING) {
        const size_t size = H5Tget_size(file_type) + 1;
        char *value = bneck_calloc(size, 1);
        memory_type = H5Tcopy(H5T_C_S1);
        H5Tset_size(memory_type, size);
        H5Tset_strpad(memory_type, H5T_STR_NULLTERM);
        H5Tset_cset(memory_type, H5Tget_cset(file_type));
        read_status = H5Aread(attribute, memory_type, value);
        if (read_status >= 0) *text_out = value;
        else free(value);
    } else if (type_class == H5T_INTEGER) {
        long long value = 0;
        read_status = H5Aread(attribute, H5T_NATIVE_LLONG, &value);
        if (read_status >= 0) {
            char text[32];
            snprintf(text, sizeof text, "%lld", value);
            *text_out = copy_text(text);
        }
    } else if (type_class == H5T_FLOAT) {
        double value = 0;
        read_status = H5Aread(attribute, H5T_NATIVE_DOUBLE, &value);
        if (read_status >= 0) {
            char text[32];
            snprintf(text, sizeof text, "%.10g", value);
            *text_out = copy_text(text);
        }
    } else {
        *text_out = copy_text("(not a string or number)");
        read_status = 0;
    }
    if (read_status < 0) {
        bneck_error_set(err, "%s: cannot read attribute '%s': %s", path, name,
                        h5_failure_detail(&detail));
        goto done;
    }
    status = 0;
done:
    close_type(memory_type);
    close_space(space);
    close_type(file_type);
    close_attribute(attribute);
    return status;
}

static const char *const attribute_names[REPORT_ATTR_COUNT] = {
    [REPORT_ATTR_FORMAT] = "format",         [REPORT_ATTR_CREATED] = "created",
    [REPORT_ATTR_GIT_COMMIT] = "git_commit", [REPORT_ATTR_DEVICES] = "devices",
    [REPORT_ATTR_HOSTS] = "hosts",           [REPORT_ATTR_MPI_SIZE] = "mpi_size",
    [REPORT_ATTR_SD_DDOF] = "sd_ddof",       [REPORT_ATTR_VERSIONS] = "versions",
    [REPORT_ATTR_SLURM_JOB_ID] = "slurm_job_id", [REPORT_ATTR_CONFIG] = "config",
    [REPORT_ATTR_SETTINGS] = "settings",    [REPORT_ATTR_RUNS_PLANNED] = "runs_planned",
};

/* --- the sweep ----------------------------------------------------------------------- */

void report_history_name(const report_run *run, char *buffer, int size) {
    snprintf(buffer, (size_t)size, "%s-r%d", run->pattern, run->repeat);
}

int report_run_is_complete(const report_run *run) { return strcmp(run->status, "complete") == 0; }

int report_runs_with_status(const report_sweep *sweep, const char *status) {
    int count = 0;
    for (int i = 0; i < sweep->run_count; i++) count += strcmp(sweep->runs[i].status, status) == 0;
    return count;
}

void report_sweep_free(report_sweep *sweep) {
    if (sweep->histories)
        for (int i = 0; i < sweep->run_count; i++) free(sweep->histories[i].epochs);
    free(sweep->histories);
    free(sweep->runs);
    free(sweep->patterns);
    for (int i = 0; i < REPORT_ATTR_COUNT; i++) free(sweep->attributes[i].text);
    memset(sweep, 0, sizeof *sweep);
}

/* The histories of the runs: required for complete runs (their accuracy curves are the
 * plot), optional for a run still going. */
static int read_histories(hid_t file, const char *path, report_sweep *sweep, bneck_error *err) {
    static const report_table_spec epoch_table = {epoch_fields, COUNT_OF(epoch_fields),
                                           sizeof(report_epoch)};
    sweep->histories = bneck_calloc((size_t)sweep->run_count, sizeof(report_history));
    const int have_group = link_exists(file, path, "/history", err);
    if (have_group < 0) return -1;
    /* else the first run's lookup fails with HDF5's "message type not found" */
    if (have_group && !h5_is_group(file, "/history"))
        return bneck_error_set(err, "%s: /history is not a group (a bneck sweep file holds "
                                    "each run's history table in it)", path);

    for (int i = 0; i < sweep->run_count; i++) {
        const report_run *run = &sweep->runs[i];
        char name[REPORT_NAME_MAX + 32], object[REPORT_NAME_MAX + 48];
        report_history_name(run, name, (int)sizeof name);
        snprintf(object, sizeof object, "/history/%s", name);

        const int exists = have_group ? link_exists(file, path, object, err) : 0;
        if (exists < 0) return -1;
        if (!exists) {
            if (!report_run_is_complete(run)) continue;
            return bneck_error_set(err, "%s: complete run %s (row %d of /runs) has no %s", path,
                                   name, i + 1, object);
        }
        void *rows = NULL;
        int count = 0;
        if (read_table(file, path, object, &epoch_table, &rows, &count, err) != 0) return -1;
        report_epoch *epochs = rows;
        /* One row per finished epoch, in order (as the run files hold them): the plot
         * indexes the rows by epoch, so an epoch of 2^31 cannot make it loop for hours. */
        for (int e = 0; e < count; e++)
            if (epochs[e].epoch != e + 1) {
                bneck_error_set(err, "%s: %s row %d has epoch %d, expected %d (one row per "
                                "finished epoch, in order)", path, object, e + 1,
                                epochs[e].epoch, e + 1);
                free(rows);
                return -1;
            }
        sweep->histories[i].epochs = epochs;
        sweep->histories[i].count = count;
    }
    return 0;
}

static int read_sweep_contents(const h5_site *site, hid_t file, const char *path,
                               report_sweep *sweep, bneck_error *err) {
    static const report_table_spec run_table = {run_fields, COUNT_OF(run_fields), sizeof(report_run)};
    static const report_table_spec pattern_table = {pattern_fields, COUNT_OF(pattern_fields),
                                             sizeof(report_pattern)};

    for (int i = 0; i < REPORT_ATTR_COUNT; i++) {
        sweep->attributes[i].name = attribute_names[i];
        if (read_attribute_text(site, file, path, attribute_names[i],
                                &sweep->attributes[i].text, err) != 0)
            return -1;
    }
    /* A run file (format bneck-run-1) is the likeliest wrong file: name it as such. */
    const char *format = sweep->attributes[REPORT_ATTR_FORMAT].text;
    if (format && strncmp(format, "bneck-sweep-", strlen("bneck-sweep-")) != 0)
        return bneck_error_set(err,
                               "%s: not a bneck sweep file: its format attribute is '%.100s', "
                               "expected bneck-sweep-1%s",
                               path, format,
                               strncmp(format, "bneck-run-", 10) == 0
                                   ? " (this is one run's file; report on the sweep's sweep.h5)"
                                   : "");

    const int have_runs = link_exists(file, path, "/runs", err);
    if (have_runs < 0) return -1;
    if (!have_runs)
        return bneck_error_set(err, "%s: no /runs table: not a bneck sweep file, or a sweep "
                                    "that never merged its runs", path);
    void *rows = NULL;
    if (read_table(file, path, "/runs", &run_table, &rows, &sweep->run_count, err) != 0)
        return -1;
    sweep->runs = rows;
    if (sweep->run_count == 0)
        return bneck_error_set(err, "%s: empty sweep: /runs has no rows, so there is nothing to "
                                    "report", path);

    const int have_summary = link_exists(file, path, "/summary", err);
    if (have_summary < 0) return -1;
    if (!have_summary)
        return bneck_error_set(err, "%s: no /summary table (the sweep file has /runs but was not "
                                    "summarised)", path);
    if (read_table(file, path, "/summary", &pattern_table, &rows, &sweep->pattern_count, err) != 0)
        return -1;
    sweep->patterns = rows;
    if (sweep->pattern_count == 0) {
        const int complete = report_runs_with_status(sweep, "complete");
        return bneck_error_set(err, "%s: /summary is empty: no complete runs to report (/runs has "
                                    "%d run%s, %d complete)",
                               path, sweep->run_count, sweep->run_count == 1 ? "" : "s", complete);
    }
    for (int i = 0; i < sweep->pattern_count; i++)
        if (sweep->patterns[i].pattern[0] == '\0')
            return bneck_error_set(err, "%s: /summary row %d has an empty pattern name", path,
                                   i + 1);
    return read_histories(file, path, sweep, err);
}

/* The sweep file checked and read, with HDF5's automatic error printing off: errors go
 * into messages that name the file; HDF5's own stack dump would bury them. */
static int read_sweep_file(h5_site *site, const char *path, report_sweep *sweep,
                           bneck_error *err) {
    h5_detail detail;
    struct stat info;
    if (stat(path, &info) != 0)
        return bneck_error_set(err, "%s: cannot read the sweep file: %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        return bneck_error_set(err, "%s: not a regular file", path);
    const htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 < 0)
        return bneck_error_set(err, "%s: cannot check whether it is HDF5: %s", path,
                               h5_failure_detail(&detail));
    if (is_hdf5 == 0)
        return bneck_error_set(err, "%s: not an HDF5 file (a bneck sweep file is one)", path);

    const hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return bneck_error_set(err, "%s: cannot open the HDF5 file: %s", path,
                               h5_failure_detail(&detail));
    const int status = h5_text_copy_load(site, file) == 0
                           ? read_sweep_contents(site, file, path, sweep, err) : -1;
    H5Fclose(file);
    return status;
}

int report_sweep_read(const char *path, report_sweep *sweep, bneck_error *err) {
    memset(sweep, 0, sizeof *sweep);
    h5_site site;
    h5_site_open(&site, path, err);
    const int status = read_sweep_file(&site, path, sweep, err);
    h5_site_close(&site);
    if (status != 0) report_sweep_free(sweep);
    return status;
}
