#include "results/h5_util.h"

#include "core/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "results/h5_heap_check.h"
#include "results/results.h"

/* ---------------------------------------------------------------------------------- */
/* Sites                                                                               */

/* The root's text attributes as "name\0value\0" pairs (h5_util.h). */
typedef struct h5_text_copy {
    char *bytes;
    size_t used, capacity;
} h5_text_copy;

static void text_copy_free(h5_text_copy **copy) {
    if (*copy) free((*copy)->bytes);
    free(*copy);
    *copy = NULL;
}

void h5_site_open(h5_site *site, const char *path, bneck_error *err) {
    site->path = path;
    site->err = err;
    site->text_copy = NULL;
    H5Eget_auto2(H5E_DEFAULT, &site->saved_handler, &site->saved_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_site_close(h5_site *site) {
    text_copy_free(&site->text_copy);
    H5Eset_auto2(H5E_DEFAULT, site->saved_handler, site->saved_data);
}

/* ---------------------------------------------------------------------------------- */
/* Error reporting                                                                     */

typedef struct stack_text {
    char text[640];
    size_t used;
    int entries;
} stack_text;

enum { STACK_ENTRIES_SHOWN = 3 };

/* Walked from the most specific entry outwards: the innermost description says what
 * actually went wrong ("truncated file: eof = ..."), the outer ones give context. */
static herr_t append_stack_entry(unsigned index, const H5E_error2_t *entry, void *data) {
    (void)index;
    stack_text *stack = data;
    if (stack->entries >= STACK_ENTRIES_SHOWN || stack->used >= sizeof stack->text - 1) return 0;
    char minor[128] = "";
    H5Eget_msg(entry->min_num, NULL, minor, sizeof minor);
    const char *description = entry->desc && entry->desc[0] ? entry->desc : entry->func_name;
    int n = snprintf(stack->text + stack->used, sizeof stack->text - stack->used, "%s%s%s%s%s",
                     stack->entries ? "; " : "", description ? description : "?",
                     minor[0] ? " (" : "", minor, minor[0] ? ")" : "");
    if (n > 0) stack->used += (size_t)n;
    if (stack->used > sizeof stack->text - 1) stack->used = sizeof stack->text - 1;
    stack->entries++;
    return 0;
}

/* Walking upward, the first entry is the innermost (most specific) failure. */
static herr_t take_innermost(unsigned index, const H5E_error2_t *entry, void *context) {
    (void)index;
    h5_detail *detail = context;
    if (!detail->taken && entry->desc && entry->desc[0]) {
        snprintf(detail->text, sizeof detail->text, "%s", entry->desc);
        for (char *c = detail->text; *c; c++) /* one line: a description may hold a newline */
            if (*c == '\n' || *c == '\r') *c = ' ';
        detail->taken = 1;
    }
    return 0;
}

const char *h5_failure_detail(h5_detail *detail) {
    detail->text[0] = '\0';
    detail->taken = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, detail);
    if (!detail->taken) snprintf(detail->text, sizeof detail->text, "no detail from HDF5");
    return detail->text;
}

int h5_fail_at(const h5_site *site, const char *file, int line, const char *format, ...) {
    stack_text stack = {.text = "", .used = 0, .entries = 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, append_stack_entry, &stack);
    char what[512];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    /* one line: HDF5's descriptions may hold a newline (the ctime in a failed write's) */
    for (char *c = stack.text; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    /* a failed system call (a full disk, say) is what a user can act on: said first */
    char reason[160] = "";
    const char *system_message = strstr(stack.text, "error message = '");
    if (system_message) {
        system_message += strlen("error message = '");
        snprintf(reason, sizeof reason, "%.*s; ", (int)strcspn(system_message, "'"),
                 system_message);
    }
    const char *slash = strrchr(file, '/');
    return bneck_error_set(site->err, "%s: %s: %sHDF5: %s [%s:%d]", site->path, what, reason,
                           stack.entries ? stack.text : "no error stack", slash ? slash + 1 : file,
                           line);
}

void h5_close(hid_t *id) {
    if (*id < 0) return;
    if (H5Iis_valid(*id) > 0) {
        switch (H5Iget_type(*id)) {
        case H5I_FILE: H5Fclose(*id); break;
        case H5I_GROUP: H5Gclose(*id); break;
        case H5I_DATASET: H5Dclose(*id); break;
        case H5I_ATTR: H5Aclose(*id); break;
        case H5I_DATATYPE: H5Tclose(*id); break;
        case H5I_DATASPACE: H5Sclose(*id); break;
        case H5I_GENPROP_LST: H5Pclose(*id); break;
        default: break;
        }
    }
    *id = H5I_INVALID_HID;
}

/* The name of an open object, for messages ("/checkpoint"). */
static void object_name(hid_t object, char *name, size_t capacity) {
    if (H5Iget_name(object, name, capacity) <= 0) snprintf(name, capacity, "/");
}

/* ---------------------------------------------------------------------------------- */
/* Table descriptions                                                                  */

#define TEXT_FIELD(type, member, description) \
    { #member, FIELD_TEXT, HOFFSET(type, member), sizeof(((type *)0)->member), description }
#define NUMBER_FIELD(type, member, kind, description) \
    { #member, kind, HOFFSET(type, member), sizeof(((type *)0)->member), description }

/* The descriptions go into each table's "columns" attribute, so that a file read without
 * this README (MATLAB, Julia, HDFView) says what each column is and in which unit. */
#define PATTERN_TEXT "network pattern name (A to E in the study)"
#define MODE_TEXT "1: k x k convolutions alone; 2: a 1x1 bottleneck before them (BC); 3: " \
                  "bottlenecks before and after (BCB)"
#define ALPHA_TEXT "bottleneck factor: a bottleneck keeps 1/alpha of the filters (1 in mode 1)"
#define PARAMS_TEXT "parameters of the network (trainable and BatchNorm statistics)"
#define PSEUDO_FLOPS_TEXT "pseudo-FLOPs per image of the forward pass (SPEC section 3's counter)"
#define MACS_TEXT "multiply-accumulates per image of the forward pass"

static const h5_field run_row_fields[] = {
    TEXT_FIELD(run_row, pattern, PATTERN_TEXT),
    NUMBER_FIELD(run_row, mode, FIELD_INT32, MODE_TEXT),
    NUMBER_FIELD(run_row, alpha, FIELD_INT32, ALPHA_TEXT),
    NUMBER_FIELD(run_row, repeat, FIELD_INT32, "repeat of the pattern, from 0"),
    NUMBER_FIELD(run_row, seed, FIELD_UINT64, "the run's seed, from the sweep's seed, the pattern name and the repeat"),
    NUMBER_FIELD(run_row, ranks, FIELD_INT32, "MPI ranks that trained the run, data parallel"),
    TEXT_FIELD(run_row, devices, "device model x ranks, e.g. 'NVIDIA H200 x4' or 'cpu x2'"),
    TEXT_FIELD(run_row, hosts, "hosts of the run's ranks, comma-separated"),
    NUMBER_FIELD(run_row, params, FIELD_INT64, PARAMS_TEXT),
    NUMBER_FIELD(run_row, pseudo_flops, FIELD_INT64, PSEUDO_FLOPS_TEXT),
    NUMBER_FIELD(run_row, macs, FIELD_INT64, MACS_TEXT),
    NUMBER_FIELD(run_row, epochs, FIELD_INT32, "epochs done (the planned number: [train] epochs in the settings attribute)"),
    NUMBER_FIELD(run_row, best_val_acc, FIELD_DOUBLE, "best validation accuracy over the epochs done (fraction, 0 to 1)"),
    NUMBER_FIELD(run_row, best_epoch, FIELD_INT32, "epoch of best_val_acc, from 1"),
    NUMBER_FIELD(run_row, final_val_acc, FIELD_DOUBLE, "validation accuracy after the last epoch done (fraction)"),
    NUMBER_FIELD(run_row, median_epoch_s, FIELD_DOUBLE, "median seconds of a training pass (validation excluded) over the epochs after the first (the first alone in a run of one epoch)"),
    NUMBER_FIELD(run_row, sd_epoch_s, FIELD_DOUBLE, "sample standard deviation (ddof 1) of the same seconds; NaN with fewer than two"),
    NUMBER_FIELD(run_row, images_per_s, FIELD_DOUBLE, "median training images per second over the same epochs, all ranks together"),
    NUMBER_FIELD(run_row, total_s, FIELD_DOUBLE, "seconds of training and validation passes summed over the epochs done"),
    TEXT_FIELD(run_row, status, "complete, running (stopped or still training: a sweep run again resumes it) or diverged"),
};

static const h5_field epoch_record_fields[] = {
    NUMBER_FIELD(epoch_record, epoch, FIELD_INT32, "epoch, from 1"),
    NUMBER_FIELD(epoch_record, lr, FIELD_DOUBLE, "learning rate of the epoch"),
    NUMBER_FIELD(epoch_record, train_loss, FIELD_DOUBLE, "mean cross-entropy over the epoch's training images (no L2 penalty)"),
    NUMBER_FIELD(epoch_record, train_acc, FIELD_DOUBLE, "fraction of the epoch's (augmented) training images classified right while training"),
    NUMBER_FIELD(epoch_record, val_loss, FIELD_DOUBLE, "mean cross-entropy on the validation set after the epoch"),
    NUMBER_FIELD(epoch_record, val_acc, FIELD_DOUBLE, "validation accuracy after the epoch (fraction, 0 to 1)"),
    NUMBER_FIELD(epoch_record, epoch_s, FIELD_DOUBLE, "seconds of the training pass (validation excluded)"),
    NUMBER_FIELD(epoch_record, images_per_s, FIELD_DOUBLE, "training images per second of the epoch, all ranks together"),
    NUMBER_FIELD(epoch_record, compute_s, FIELD_DOUBLE, "seconds of forward, backward and optimizer work in the training pass"),
    NUMBER_FIELD(epoch_record, allreduce_s, FIELD_DOUBLE, "seconds waiting for the gradient sums after the backward pass (what overlapped with it is not counted; 0 on one rank)"),
    NUMBER_FIELD(epoch_record, data_s, FIELD_DOUBLE, "seconds making batches (augmentation, copies) in the training pass"),
    NUMBER_FIELD(epoch_record, eval_s, FIELD_DOUBLE, "seconds of the validation pass after the epoch"),
};

static const h5_field summary_row_fields[] = {
    TEXT_FIELD(summary_row, pattern, PATTERN_TEXT),
    NUMBER_FIELD(summary_row, mode, FIELD_INT32, MODE_TEXT),
    NUMBER_FIELD(summary_row, alpha, FIELD_INT32, ALPHA_TEXT),
    NUMBER_FIELD(summary_row, n, FIELD_INT32, "complete runs of the pattern, which the statistics are over"),
    NUMBER_FIELD(summary_row, median_best_val_acc, FIELD_DOUBLE, "median of the runs' best_val_acc (fraction, 0 to 1)"),
    NUMBER_FIELD(summary_row, sd_best_val_acc, FIELD_DOUBLE, "sample standard deviation (ddof 1) of the same; NaN with fewer than two runs"),
    NUMBER_FIELD(summary_row, median_epoch_s, FIELD_DOUBLE, "median seconds of a training pass, pooled over every epoch after each run's first"),
    NUMBER_FIELD(summary_row, sd_epoch_s, FIELD_DOUBLE, "sample standard deviation (ddof 1) of the same seconds"),
    NUMBER_FIELD(summary_row, params, FIELD_INT64, PARAMS_TEXT),
    NUMBER_FIELD(summary_row, pseudo_flops, FIELD_INT64, PSEUDO_FLOPS_TEXT),
    NUMBER_FIELD(summary_row, macs, FIELD_INT64, MACS_TEXT),
    NUMBER_FIELD(summary_row, achieved_flops, FIELD_DOUBLE, "training FLOP/s: 6 x macs x the median of the runs' images_per_s"),
};

#define TABLE(type, fields) \
    { fields, (int)(sizeof fields / sizeof fields[0]), sizeof(type) }
const h5_table h5_run_row_table = TABLE(run_row, run_row_fields);
const h5_table h5_epoch_record_table = TABLE(epoch_record, epoch_record_fields);
const h5_table h5_summary_row_table = TABLE(summary_row, summary_row_fields);

static size_t kind_size(h5_field_kind kind) {
    switch (kind) {
    case FIELD_INT32: return 4;
    case FIELD_INT64: case FIELD_UINT64: case FIELD_DOUBLE: return 8;
    case FIELD_TEXT: break;
    }
    return 0;
}

hid_t h5_field_memory_type(h5_field_kind kind) {
    switch (kind) {
    case FIELD_INT32: return H5T_NATIVE_INT32;
    case FIELD_INT64: return H5T_NATIVE_INT64;
    case FIELD_UINT64: return H5T_NATIVE_UINT64;
    case FIELD_DOUBLE: return H5T_NATIVE_DOUBLE;
    case FIELD_TEXT: break;
    }
    return H5I_INVALID_HID;
}

/* Fixed-length, NUL-padded ASCII: numpy reads it as bytes 'S<size>' with the padding
 * stripped, MATLAB and Julia as plain strings. */
static hid_t fixed_text_type(size_t size) {
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0) return type;
    if (H5Tset_size(type, size) < 0 || H5Tset_strpad(type, H5T_STR_NULLPAD) < 0) {
        H5Tclose(type);
        return H5I_INVALID_HID;
    }
    return type;
}

/* The in-memory compound type of a table: native numbers and fixed-length NUL-padded
 * ASCII strings at the struct's offsets. */
static hid_t table_memory_type(const h5_site *site, const h5_table *table) {
    hid_t compound = H5I_INVALID_HID, text = H5I_INVALID_HID;
    BNECK_H5_CHECK(site, compound = H5Tcreate(H5T_COMPOUND, table->row_size),
                   "cannot create a compound type");
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *f = &table->fields[i];
        if (f->kind == FIELD_TEXT) {
            BNECK_H5_CHECK(site, text = fixed_text_type(f->size), "cannot create a string type");
            BNECK_H5_CHECK(site, H5Tinsert(compound, f->name, f->offset, text),
                           "cannot add field %s", f->name);
            h5_close(&text);
        } else {
            /* The tables are ours; a size mismatch is a bug in the description above. */
            if (kind_size(f->kind) != f->size)
                BNECK_FAIL("field %s is %zu bytes, its kind needs %zu", f->name, f->size,
                           kind_size(f->kind));
            BNECK_H5_CHECK(site, H5Tinsert(compound, f->name, f->offset, h5_field_memory_type(f->kind)),
                           "cannot add field %s", f->name);
        }
    }
    return compound;
fail:
    h5_close(&text);
    h5_close(&compound);
    return H5I_INVALID_HID;
}

/* A link creation property list that makes missing intermediate groups. */
static hid_t intermediate_groups_plist(void) {
    hid_t plist = H5Pcreate(H5P_LINK_CREATE);
    if (plist >= 0 && H5Pset_create_intermediate_group(plist, 1) < 0) {
        H5Pclose(plist);
        return H5I_INVALID_HID;
    }
    return plist;
}

static size_t element_count(int rank, const hsize_t *dims);

/* Dataset creation properties that checksum the data (Fletcher-32, which HDF5 checks on
 * every read: a damaged file then fails to read instead of giving wrong numbers). The
 * filter needs chunked storage, here one chunk holding everything; an empty dataset stays
 * contiguous. */
static hid_t checksummed_plist(int rank, const hsize_t *dims) {
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    if (plist < 0 || element_count(rank, dims) == 0) return plist;
    if (H5Pset_chunk(plist, rank, dims) < 0 || H5Pset_fletcher32(plist) < 0) {
        H5Pclose(plist);
        return H5I_INVALID_HID;
    }
    return plist;
}

/* The "columns" attribute: one line "name: description" per field. */
static int write_column_descriptions(const h5_site *site, hid_t dataset, const h5_table *table) {
    size_t bytes = 1;
    for (int i = 0; i < table->field_count; i++)
        bytes += strlen(table->fields[i].name) + strlen(table->fields[i].description) + 3;
    char *text = bneck_malloc(bytes), *end = text;
    for (int i = 0; i < table->field_count; i++)
        end += sprintf(end, "%s: %s\n", table->fields[i].name, table->fields[i].description);
    const int status = h5_write_text_attribute(site, dataset, "columns", text);
    free(text);
    return status;
}

int h5_write_table(const h5_site *site, hid_t location, const char *name, const h5_table *table,
                   const void *rows, int count) {
    hid_t memory_type = H5I_INVALID_HID, file_type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t plist = H5I_INVALID_HID, dataset = H5I_INVALID_HID, create = H5I_INVALID_HID;
    const size_t bytes = (size_t)count * table->row_size;
    unsigned char *clean = bneck_malloc(bytes);
    if (bytes) memcpy(clean, rows, bytes);
    /* Bytes after a string's NUL would otherwise show up in numpy as part of the text. */
    for (int r = 0; r < count; r++) {
        for (int i = 0; i < table->field_count; i++) {
            const h5_field *f = &table->fields[i];
            if (f->kind != FIELD_TEXT) continue;
            char *text = (char *)clean + (size_t)r * table->row_size + f->offset;
            size_t length = strnlen(text, f->size);
            memset(text + length, 0, f->size - length);
        }
    }
    const hsize_t dims[1] = {(hsize_t)count};
    BNECK_H5_CHECK(site, memory_type = table_memory_type(site, table), "%s: no memory type", name);
    /* Packed in the file: readers see the fields only, not our struct padding. */
    BNECK_H5_CHECK(site, file_type = H5Tcopy(memory_type), "%s: cannot copy a type", name);
    BNECK_H5_CHECK(site, H5Tpack(file_type), "%s: cannot pack the table type", name);
    BNECK_H5_CHECK(site, space = H5Screate_simple(1, dims, NULL), "%s: cannot make a space", name);
    BNECK_H5_CHECK(site, plist = intermediate_groups_plist(), "%s: no property list", name);
    BNECK_H5_CHECK(site, create = checksummed_plist(1, dims), "%s: no property list", name);
    BNECK_H5_CHECK(site, dataset = H5Dcreate2(location, name, file_type, space, plist, create,
                                              H5P_DEFAULT),
                   "%s: cannot create the table", name);
    if (count > 0)
        BNECK_H5_CHECK(site, H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, clean),
                       "%s: cannot write the table", name);
    if (write_column_descriptions(site, dataset, table)) goto fail;
    BNECK_H5_CHECK(site, H5Dclose(dataset), "%s: cannot close the table", name);
    dataset = H5I_INVALID_HID;
    free(clean);
    h5_close(&create);
    h5_close(&plist);
    h5_close(&space);
    h5_close(&file_type);
    h5_close(&memory_type);
    return 0;
fail:
    free(clean);
    h5_close(&dataset);
    h5_close(&create);
    h5_close(&plist);
    h5_close(&space);
    h5_close(&file_type);
    h5_close(&memory_type);
    return -1;
}

static int field_class_matches(h5_field_kind kind, H5T_class_t class) {
    switch (kind) {
    case FIELD_TEXT: return class == H5T_STRING;
    case FIELD_INT32: case FIELD_INT64: case FIELD_UINT64: return class == H5T_INTEGER;
    case FIELD_DOUBLE: return class == H5T_FLOAT || class == H5T_INTEGER;
    }
    return 0;
}

/* Opens dataset `name`, with a plain "missing" message when there is no such link. */
static hid_t open_dataset(const h5_site *site, hid_t location, const char *name) {
    hid_t dataset = H5I_INVALID_HID;
    int exists = h5_exists(site, location, name);
    if (exists < 0) return H5I_INVALID_HID;
    if (!exists) {
        bneck_error_set(site->err, "%s: %s: missing", site->path, name);
        return H5I_INVALID_HID;
    }
    BNECK_H5_CHECK(site, dataset = H5Dopen2(location, name, H5P_DEFAULT),
                   "%s: cannot open as a dataset", name);
    return dataset;
fail:
    return H5I_INVALID_HID;
}

int h5_read_table(const h5_site *site, hid_t location, const char *name, const h5_table *table,
                  void **rows, int *count) {
    hid_t dataset = H5I_INVALID_HID, file_type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t memory_type = H5I_INVALID_HID;
    unsigned char *buffer = NULL;
    *rows = NULL;
    *count = 0;
    if ((dataset = open_dataset(site, location, name)) < 0) goto fail;
    BNECK_H5_CHECK(site, file_type = H5Dget_type(dataset), "%s: cannot get its type", name);
    if (H5Tget_class(file_type) != H5T_COMPOUND) {
        bneck_error_set(site->err, "%s: %s: not a table (compound dataset)", site->path, name);
        goto fail;
    }
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *f = &table->fields[i];
        int index = H5Tget_member_index(file_type, f->name);
        if (index < 0) {
            bneck_error_set(site->err, "%s: %s: the table has no field '%s'", site->path, name,
                            f->name);
            goto fail;
        }
        if (!field_class_matches(f->kind, H5Tget_member_class(file_type, (unsigned)index))) {
            bneck_error_set(site->err, "%s: %s: field '%s' has the wrong type (expected %s)",
                            site->path, name, f->name,
                            f->kind == FIELD_TEXT ? "a string" : "a number");
            goto fail;
        }
    }
    BNECK_H5_CHECK(site, space = H5Dget_space(dataset), "%s: cannot get its shape", name);
    hsize_t dims[1] = {0};
    if (H5Sget_simple_extent_ndims(space) != 1 ||
        H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        bneck_error_set(site->err, "%s: %s: a table must be 1-D", site->path, name);
        goto fail;
    }
    if (dims[0] > (hsize_t)INT_MAX) {
        bneck_error_set(site->err, "%s: %s: %llu rows is too many", site->path, name,
                        (unsigned long long)dims[0]);
        goto fail;
    }
    if (dims[0] > 0) {
        buffer = bneck_calloc((size_t)dims[0], table->row_size);
        BNECK_H5_CHECK(site, memory_type = table_memory_type(site, table), "%s: no memory type",
                       name);
        BNECK_H5_CHECK(site, H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer),
                       "%s: cannot read the table", name);
        /* A longer string in the file arrives cut without its NUL: refuse it. */
        for (hsize_t r = 0; r < dims[0]; r++) {
            for (int i = 0; i < table->field_count; i++) {
                const h5_field *f = &table->fields[i];
                const char *text = (const char *)buffer + r * table->row_size + f->offset;
                if (f->kind == FIELD_TEXT && !memchr(text, '\0', f->size)) {
                    bneck_error_set(site->err, "%s: %s: row %llu: %s is longer than %zu characters",
                                    site->path, name, (unsigned long long)r, f->name, f->size - 1);
                    goto fail;
                }
            }
        }
    }
    h5_close(&memory_type);
    h5_close(&space);
    h5_close(&file_type);
    h5_close(&dataset);
    *rows = buffer;
    *count = (int)dims[0];
    return 0;
fail:
    free(buffer);
    h5_close(&memory_type);
    h5_close(&space);
    h5_close(&file_type);
    h5_close(&dataset);
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* Attributes                                                                          */

static int write_attribute(const h5_site *site, hid_t object, const char *name, hid_t file_type,
                           hid_t memory_type, const void *value) {
    hid_t space = H5I_INVALID_HID, attribute = H5I_INVALID_HID;
    char owner[256];
    object_name(object, owner, sizeof owner);
    BNECK_H5_CHECK(site, space = H5Screate(H5S_SCALAR), "%s: no scalar space", owner);
    BNECK_H5_CHECK(site, attribute = H5Acreate2(object, name, file_type, space, H5P_DEFAULT,
                                                H5P_DEFAULT),
                   "%s: cannot create attribute %s", owner, name);
    BNECK_H5_CHECK(site, H5Awrite(attribute, memory_type, value), "%s: cannot write attribute %s",
                   owner, name);
    h5_close(&attribute);
    h5_close(&space);
    return 0;
fail:
    h5_close(&attribute);
    h5_close(&space);
    return -1;
}

int h5_write_int64_attribute(const h5_site *site, hid_t object, const char *name, int64_t value) {
    return write_attribute(site, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int h5_write_uint64_attribute(const h5_site *site, hid_t object, const char *name, uint64_t value) {
    return write_attribute(site, object, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

int h5_write_double_attribute(const h5_site *site, hid_t object, const char *name, double value) {
    return write_attribute(site, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

static hid_t variable_text_type(H5T_cset_t cset) {
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0) return type;
    if (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, cset) < 0) {
        H5Tclose(type);
        return H5I_INVALID_HID;
    }
    return type;
}

/* ---------------------------------------------------------------------------------- */
/* The text copy (h5_util.h)                                                           */

static int is_root(hid_t object) {
    char name[8];
    const ssize_t length = H5Iget_name(object, name, sizeof name);
    return length == 1 && name[0] == '/';
}

void h5_text_copy_start(h5_site *site) {
    if (!site->text_copy) site->text_copy = bneck_calloc(1, sizeof *site->text_copy);
}

static void text_copy_append(h5_text_copy *copy, const char *name, const char *value) {
    const size_t name_bytes = strlen(name) + 1, value_bytes = strlen(value) + 1;
    const size_t need = copy->used + name_bytes + value_bytes;
    if (need > copy->capacity) {
        copy->capacity = need > 2 * copy->capacity ? need : 2 * copy->capacity;
        copy->bytes = bneck_realloc(copy->bytes, copy->capacity);
    }
    memcpy(copy->bytes + copy->used, name, name_bytes);
    memcpy(copy->bytes + copy->used + name_bytes, value, value_bytes);
    copy->used = need;
}

int h5_text_copy_write(const h5_site *site, hid_t file) {
    const h5_text_copy *copy = site->text_copy;
    if (!copy) return bneck_error_set(site->err, "%s: no text copy was started", site->path);
    const hsize_t dims[1] = {copy->used};
    hid_t dataset = h5_write_dataset(site, file, H5_TEXT_COPY, H5T_STD_U8LE, H5T_NATIVE_UINT8,
                                     copy->bytes, 1, dims);
    if (dataset < 0) return -1;
    BNECK_H5_CHECK(site, H5Dclose(dataset), "%s: cannot close the dataset", H5_TEXT_COPY);
    return 0;
fail:
    return -1;
}

int h5_text_copy_load(h5_site *site, hid_t file) {
    hid_t dataset = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    h5_text_copy *copy = NULL;
    const int present = h5_exists(site, file, H5_TEXT_COPY);
    if (present < 0) return -1;
    /* A file from before the copy, or another tool's: its attributes count, read from the
     * global heap, which is walked first (h5_heap_check.c). */
    if (present == 0) return h5_global_heaps_check(site, file);
    BNECK_H5_CHECK(site, dataset = H5Dopen2(file, H5_TEXT_COPY, H5P_DEFAULT), "%s: cannot open",
                   H5_TEXT_COPY);
    BNECK_H5_CHECK(site, space = H5Dget_space(dataset), "%s: no shape", H5_TEXT_COPY);
    BNECK_H5_CHECK(site, type = H5Dget_type(dataset), "%s: no type", H5_TEXT_COPY);
    hsize_t dims[1] = {0};
    if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 ||
        H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 1) {
        bneck_error_set(site->err, "%s: %s is not a 1-D array of bytes", site->path, H5_TEXT_COPY);
        goto fail;
    }
    copy = bneck_calloc(1, sizeof *copy);
    copy->used = copy->capacity = (size_t)dims[0];
    copy->bytes = bneck_malloc(copy->capacity + 1);
    if (copy->used > 0)
        BNECK_H5_CHECK(site, H5Dread(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                     copy->bytes),
                       "%s: cannot read (damaged?)", H5_TEXT_COPY);
    /* whole pairs: an even number of NUL-terminated strings */
    size_t strings = 0;
    for (size_t i = 0; i < copy->used; i++) strings += copy->bytes[i] == '\0';
    if (copy->used > 0 && (copy->bytes[copy->used - 1] != '\0' || strings % 2 != 0)) {
        bneck_error_set(site->err, "%s: %s does not hold whole name and value pairs", site->path,
                        H5_TEXT_COPY);
        goto fail;
    }
    h5_close(&type);
    h5_close(&space);
    h5_close(&dataset);
    text_copy_free(&site->text_copy);
    site->text_copy = copy;
    return 0;
fail:
    text_copy_free(&copy);
    h5_close(&type);
    h5_close(&space);
    h5_close(&dataset);
    return -1;
}

const char *h5_text_copy_find(const h5_site *site, const char *name) {
    const h5_text_copy *copy = site->text_copy;
    for (size_t at = 0; copy && at < copy->used;) {
        const char *key = copy->bytes + at;
        const char *value = key + strlen(key) + 1;
        if (!strcmp(key, name)) return value;
        at = (size_t)(value - copy->bytes) + strlen(value) + 1;
    }
    return NULL;
}

int h5_write_text_attribute(const h5_site *site, hid_t object, const char *name,
                            const char *value) {
    hid_t type = H5I_INVALID_HID;
    const char *text = value ? value : "";
    if (site->text_copy && is_root(object)) text_copy_append(site->text_copy, name, text);
    BNECK_H5_CHECK(site, type = variable_text_type(H5T_CSET_UTF8), "no UTF-8 string type");
    int rc = write_attribute(site, object, name, type, type, &text);
    h5_close(&type);
    return rc;
fail:
    return -1;
}

/* Opens a scalar attribute of the expected class, or explains why not. */
static hid_t open_attribute(const h5_site *site, hid_t object, const char *name,
                            H5T_class_t expected, const char *expected_text) {
    hid_t attribute = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char owner[256];
    object_name(object, owner, sizeof owner);
    htri_t exists;
    BNECK_H5_CHECK(site, exists = H5Aexists(object, name), "%s: cannot look for attribute %s",
                   owner, name);
    if (!exists) {
        bneck_error_set(site->err, "%s: %s: attribute '%s' is missing", site->path, owner, name);
        goto fail;
    }
    BNECK_H5_CHECK(site, attribute = H5Aopen(object, name, H5P_DEFAULT),
                   "%s: cannot open attribute %s", owner, name);
    BNECK_H5_CHECK(site, type = H5Aget_type(attribute), "%s: attribute %s has no type", owner,
                   name);
    BNECK_H5_CHECK(site, space = H5Aget_space(attribute), "%s: attribute %s has no shape", owner,
                   name);
    H5T_class_t class = H5Tget_class(type);
    int class_ok = class == expected || (expected == H5T_FLOAT && class == H5T_INTEGER);
    if (!class_ok || H5Sget_simple_extent_npoints(space) != 1) {
        bneck_error_set(site->err, "%s: %s: attribute '%s' is not %s", site->path, owner, name,
                        expected_text);
        goto fail;
    }
    h5_close(&space);
    h5_close(&type);
    return attribute;
fail:
    h5_close(&space);
    h5_close(&type);
    h5_close(&attribute);
    return H5I_INVALID_HID;
}

static int read_number_attribute(const h5_site *site, hid_t object, const char *name,
                                 H5T_class_t class, hid_t memory_type, void *value) {
    char owner[256];
    object_name(object, owner, sizeof owner);
    hid_t attribute = open_attribute(site, object, name, class,
                                     class == H5T_FLOAT ? "a single number" : "a single integer");
    if (attribute < 0) return -1;
    BNECK_H5_CHECK(site, H5Aread(attribute, memory_type, value), "%s: cannot read attribute %s",
                   owner, name);
    h5_close(&attribute);
    return 0;
fail:
    h5_close(&attribute);
    return -1;
}

int h5_read_int64_attribute(const h5_site *site, hid_t object, const char *name, int64_t *value) {
    return read_number_attribute(site, object, name, H5T_INTEGER, H5T_NATIVE_INT64, value);
}

int h5_read_optional_int64_attribute(const h5_site *site, hid_t object, const char *name,
                                     int64_t *value) {
    const htri_t present = H5Aexists(object, name);
    BNECK_H5_CHECK(site, present, "cannot look for the %s attribute", name);
    return present ? h5_read_int64_attribute(site, object, name, value) : 0;
fail:
    return -1;
}

int h5_read_uint64_attribute(const h5_site *site, hid_t object, const char *name, uint64_t *value) {
    return read_number_attribute(site, object, name, H5T_INTEGER, H5T_NATIVE_UINT64, value);
}

int h5_read_double_attribute(const h5_site *site, hid_t object, const char *name, double *value) {
    return read_number_attribute(site, object, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, value);
}

int h5_read_text_attribute(const h5_site *site, hid_t object, const char *name, char *value,
                           size_t capacity) {
    hid_t attribute = H5I_INVALID_HID, file_type = H5I_INVALID_HID, memory_type = H5I_INVALID_HID;
    char *variable = NULL, *fixed = NULL;
    char owner[256];
    object_name(object, owner, sizeof owner);
    value[0] = '\0';
    const char *copied = site->text_copy && is_root(object) ? h5_text_copy_find(site, name)
                                                            : NULL;
    if (copied) {
        if (strlen(copied) >= capacity)
            return bneck_error_set(site->err, "%s: %s: attribute '%s' is longer than %zu "
                                   "characters", site->path, owner, name, capacity - 1);
        memcpy(value, copied, strlen(copied) + 1);
        return 0;
    }
    if ((attribute = open_attribute(site, object, name, H5T_STRING, "a string")) < 0) goto fail;
    BNECK_H5_CHECK(site, file_type = H5Aget_type(attribute), "%s: attribute %s has no type", owner,
                   name);
    const H5T_cset_t cset = H5Tget_cset(file_type);
    const char *text;
    if (H5Tis_variable_str(file_type) > 0) {
        BNECK_H5_CHECK(site, memory_type = variable_text_type(cset), "no string type");
        BNECK_H5_CHECK(site, H5Aread(attribute, memory_type, &variable),
                       "%s: cannot read attribute %s", owner, name);
        text = variable ? variable : "";
    } else {
        /* A fixed-length string written by another tool: read it NUL-terminated. */
        const size_t size = H5Tget_size(file_type);
        fixed = bneck_calloc(size + 1, 1);
        BNECK_H5_CHECK(site, memory_type = H5Tcopy(H5T_C_S1), "no string type");
        BNECK_H5_CHECK(site, H5Tset_size(memory_type, size + 1), "cannot size a string type");
        BNECK_H5_CHECK(site, H5Tset_strpad(memory_type, H5T_STR_NULLTERM), "cannot pad a string");
        BNECK_H5_CHECK(site, H5Tset_cset(memory_type, cset), "cannot set a character set");
        BNECK_H5_CHECK(site, H5Aread(attribute, memory_type, fixed), "%s: cannot read attribute %s",
                       owner, name);
        text = fixed;
    }
    if (strlen(text) >= capacity) {
        bneck_error_set(site->err, "%s: %s: attribute '%s' is longer than %zu characters",
                        site->path, owner, name, capacity - 1);
        goto fail;
    }
    memcpy(value, text, strlen(text) + 1);
    if (variable) H5free_memory(variable);
    free(fixed);
    h5_close(&memory_type);
    h5_close(&file_type);
    h5_close(&attribute);
    return 0;
fail:
    if (variable) H5free_memory(variable);
    free(fixed);
    h5_close(&memory_type);
    h5_close(&file_type);
    h5_close(&attribute);
    return -1;
}

int h5_write_fields_as_attributes(const h5_site *site, hid_t object, const h5_table *table,
                                  const void *row) {
    const unsigned char *base = row;
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *f = &table->fields[i];
        const void *at = base + f->offset;
        int rc = 0;
        switch (f->kind) {
        case FIELD_TEXT: {
            char text[256];
            size_t length = strnlen(at, f->size);
            if (length >= sizeof text) length = sizeof text - 1;
            memcpy(text, at, length);
            text[length] = '\0';
            rc = h5_write_text_attribute(site, object, f->name, text);
            break;
        }
        case FIELD_INT32: {
            int32_t v;
            memcpy(&v, at, sizeof v);
            rc = h5_write_int64_attribute(site, object, f->name, v);
            break;
        }
        case FIELD_INT64: {
            int64_t v;
            memcpy(&v, at, sizeof v);
            rc = h5_write_int64_attribute(site, object, f->name, v);
            break;
        }
        case FIELD_UINT64: {
            uint64_t v;
            memcpy(&v, at, sizeof v);
            rc = h5_write_uint64_attribute(site, object, f->name, v);
            break;
        }
        case FIELD_DOUBLE: {
            double v;
            memcpy(&v, at, sizeof v);
            rc = h5_write_double_attribute(site, object, f->name, v);
            break;
        }
        }
        if (rc) return -1;
    }
    return 0;
}

int h5_read_fields_from_attributes(const h5_site *site, hid_t object, const h5_table *table,
                                   void *row) {
    unsigned char *base = row;
    for (int i = 0; i < table->field_count; i++) {
        const h5_field *f = &table->fields[i];
        void *at = base + f->offset;
        switch (f->kind) {
        case FIELD_TEXT:
            if (h5_read_text_attribute(site, object, f->name, at, f->size)) return -1;
            break;
        case FIELD_INT32: {
            int64_t v;
            if (h5_read_int64_attribute(site, object, f->name, &v)) return -1;
            if (v < INT32_MIN || v > INT32_MAX)
                return bneck_error_set(site->err, "%s: attribute '%s' = %lld is out of range",
                                       site->path, f->name, (long long)v);
            int32_t narrow = (int32_t)v;
            memcpy(at, &narrow, sizeof narrow);
            break;
        }
        case FIELD_INT64:
            if (h5_read_int64_attribute(site, object, f->name, at)) return -1;
            break;
        case FIELD_UINT64:
            if (h5_read_uint64_attribute(site, object, f->name, at)) return -1;
            break;
        case FIELD_DOUBLE:
            if (h5_read_double_attribute(site, object, f->name, at)) return -1;
            break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Float datasets                                                                      */

static size_t element_count(int rank, const hsize_t *dims) {
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= (size_t)dims[i];
    return count;
}

hid_t h5_write_dataset(const h5_site *site, hid_t location, const char *name, hid_t file_type,
                       hid_t memory_type, const void *values, int rank, const hsize_t *dims) {
    hid_t space = H5I_INVALID_HID, plist = H5I_INVALID_HID, dataset = H5I_INVALID_HID;
    hid_t create = H5I_INVALID_HID;
    BNECK_H5_CHECK(site, space = H5Screate_simple(rank, dims, NULL), "%s: cannot make a space",
                   name);
    BNECK_H5_CHECK(site, plist = intermediate_groups_plist(), "%s: no property list", name);
    /* HDF5 checksums no variable-length data (their bytes live in the global heap) */
    BNECK_H5_CHECK(site,
                   create = H5Tis_variable_str(file_type) > 0 ? H5Pcreate(H5P_DATASET_CREATE)
                                                               : checksummed_plist(rank, dims),
                   "%s: no property list", name);
    BNECK_H5_CHECK(site, dataset = H5Dcreate2(location, name, file_type, space, plist, create,
                                              H5P_DEFAULT),
                   "%s: cannot create the dataset", name);
    if (element_count(rank, dims) > 0)
        BNECK_H5_CHECK(site, H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values),
                       "%s: cannot write the dataset", name);
    h5_close(&create);
    h5_close(&plist);
    h5_close(&space);
    return dataset;
fail:
    h5_close(&dataset);
    h5_close(&create);
    h5_close(&plist);
    h5_close(&space);
    return H5I_INVALID_HID;
}

static int write_closed(const h5_site *site, hid_t location, const char *name, hid_t file_type,
                        hid_t memory_type, const void *values, int rank, const hsize_t *dims) {
    hid_t dataset = h5_write_dataset(site, location, name, file_type, memory_type, values, rank,
                                     dims);
    if (dataset < 0) return -1;
    BNECK_H5_CHECK(site, H5Dclose(dataset), "%s: cannot close the dataset", name);
    return 0;
fail:
    return -1;
}

int h5_write_floats(const h5_site *site, hid_t location, const char *name, const float *values,
                    int rank, const hsize_t *dims) {
    return write_closed(site, location, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, values, rank, dims);
}

int h5_write_doubles(const h5_site *site, hid_t location, const char *name, const double *values,
                     int rank, const hsize_t *dims) {
    return write_closed(site, location, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values, rank,
                        dims);
}

static void shape_text(char *text, size_t capacity, int rank, const hsize_t *dims) {
    size_t used = 0;
    text[0] = '\0';
    for (int i = 0; i < rank && used < capacity; i++) {
        int n = snprintf(text + used, capacity - used, "%s%llu", i ? " x " : "",
                         (unsigned long long)dims[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (rank == 0) snprintf(text, capacity, "scalar");
}

/* Checks that dataset `name` is a float dataset of exactly this shape (`expected_for`
 * says what sets it); when values is non-NULL reads it there as memory_type. */
static int read_float_dataset(const h5_site *site, hid_t location, const char *name,
                              hid_t memory_type, void *values, int rank, const hsize_t *dims,
                              const char *expected_for) {
    hid_t dataset = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    if ((dataset = open_dataset(site, location, name)) < 0) goto fail;
    BNECK_H5_CHECK(site, type = H5Dget_type(dataset), "%s: cannot get its type", name);
    if (H5Tget_class(type) != H5T_FLOAT) {
        bneck_error_set(site->err, "%s: %s: not a float dataset", site->path, name);
        goto fail;
    }
    BNECK_H5_CHECK(site, space = H5Dget_space(dataset), "%s: cannot get its shape", name);
    hsize_t found[H5S_MAX_RANK];
    int found_rank;
    BNECK_H5_CHECK(site, found_rank = H5Sget_simple_extent_dims(space, found, NULL),
                   "%s: cannot get its shape", name);
    int same = found_rank == rank;
    for (int i = 0; same && i < rank; i++) same = found[i] == dims[i];
    if (!same) {
        char expected_text[96], found_text[96];
        shape_text(expected_text, sizeof expected_text, rank, dims);
        shape_text(found_text, sizeof found_text, found_rank, found);
        bneck_error_set(site->err, "%s: %s: shape %s, expected %s %s", site->path, name,
                        found_text, expected_text, expected_for);
        goto fail;
    }
    if (values && element_count(rank, dims) > 0)
        BNECK_H5_CHECK(site, H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values),
                       "%s: cannot read", name);
    h5_close(&space);
    h5_close(&type);
    h5_close(&dataset);
    return 0;
fail:
    h5_close(&space);
    h5_close(&type);
    h5_close(&dataset);
    return -1;
}

int h5_read_floats(const h5_site *site, hid_t location, const char *name, float *values, int rank,
                   const hsize_t *dims) {
    return read_float_dataset(site, location, name, H5T_NATIVE_FLOAT, values, rank, dims,
                              "for this model");
}

int h5_read_doubles(const h5_site *site, hid_t location, const char *name, double *values,
                    int rank, const hsize_t *dims, const char *expected_for) {
    return read_float_dataset(site, location, name, H5T_NATIVE_DOUBLE, values, rank, dims,
                              expected_for);
}

int h5_is_group(hid_t location, const char *name) {
    /* H5Oopen + H5Iget_type rather than H5Oget_info, whose signature changed in 1.12. */
    hid_t object = H5Oopen(location, name, H5P_DEFAULT);
    const int group = object >= 0 && H5Iget_type(object) == H5I_GROUP;
    h5_close(&object);
    return group;
}

int h5_exists(const h5_site *site, hid_t location, const char *name) {
    /* H5Lexists needs every intermediate component to exist, so check them in turn. */
    char prefix[512];
    size_t length = strlen(name);
    if (length >= sizeof prefix)
        return bneck_error_set(site->err, "%s: %s: name too long", site->path, name);
    for (size_t end = 1; end <= length; end++) {
        if (end < length && name[end] != '/') continue;
        memcpy(prefix, name, end);
        prefix[end] = '\0';
        if (!strcmp(prefix, "/")) continue;
        htri_t exists;
        BNECK_H5_CHECK(site, exists = H5Lexists(location, prefix, H5P_DEFAULT),
                       "%s: cannot look for it", prefix);
        if (!exists) return 0;
    }
    return 1;
fail:
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* Files                                                                               */

/* Closing the file closes whatever is still open in it, so an error path cannot keep it
 * open; file locking is used where the filesystem has it and skipped where it has not
 * (some cluster filesystems), instead of failing. */
static hid_t file_access_plist(void) {
    hid_t plist = H5Pcreate(H5P_FILE_ACCESS);
    if (plist < 0) return plist;
    if (H5Pset_fclose_degree(plist, H5F_CLOSE_STRONG) < 0) goto fail;
#if H5_VERSION_GE(1, 10, 7)
    if (H5Pset_file_locking(plist, 1, 1) < 0) goto fail;
#endif
    return plist;
fail:
    H5Pclose(plist);
    return H5I_INVALID_HID;
}

hid_t h5_create_temporary(const h5_site *site, char *temporary_path, size_t capacity) {
    hid_t plist = H5I_INVALID_HID, file = H5I_INVALID_HID;
    int n = snprintf(temporary_path, capacity, "%s.tmp", site->path);
    if (n < 0 || (size_t)n >= capacity) {
        bneck_error_set(site->err, "%s: path too long", site->path);
        return H5I_INVALID_HID;
    }
    struct stat before;
    const int existed = lstat(temporary_path, &before) == 0;
    BNECK_H5_CHECK(site, plist = file_access_plist(), "no file access property list");
    /* The HDF5 1.8 file format, no newer: MATLAB, Julia and older h5py open it, and unlike
     * the oldest format its object headers carry checksums, so damaged metadata fails to
     * read instead of sending the library into garbage. */
    BNECK_H5_CHECK(site, H5Pset_libver_bounds(plist, H5F_LIBVER_V18, H5F_LIBVER_V18),
                   "cannot ask for the HDF5 1.8 file format");
    BNECK_H5_CHECK(site, file = H5Fcreate(temporary_path, H5F_ACC_TRUNC, H5P_DEFAULT, plist),
                   "cannot create %s", temporary_path);
    h5_close(&plist);
    return file;
fail:
    h5_close(&plist);
    /* a file this call made before failing (a full disk) is ours to remove; something that
     * was already at the name (a directory, say) is left alone */
    if (!existed) unlink(temporary_path);
    return H5I_INVALID_HID;
}

void h5_abandon(hid_t *file, const char *temporary_path) {
    if (*file < 0) return; /* never created: whatever is at the .tmp name is not ours */
    h5_close(file);
    unlink(temporary_path);
}

int h5_commit(const h5_site *site, hid_t *file, const char *temporary_path) {
    BNECK_H5_CHECK(site, H5Fflush(*file, H5F_SCOPE_GLOBAL), "cannot flush %s", temporary_path);
    herr_t closed = H5Fclose(*file);
    *file = H5I_INVALID_HID;
    BNECK_H5_CHECK(site, closed, "cannot close %s", temporary_path);
    /* On disk before the rename makes it visible, so a crash cannot leave a renamed but
     * empty file. */
    if (durable_sync_file(temporary_path)) {
        bneck_error_set(site->err, "%s: cannot sync %s: %s", site->path, temporary_path,
                        strerror(errno));
        goto fail;
    }
    if (rename(temporary_path, site->path)) {
        bneck_error_set(site->err, "%s: cannot rename %s over it: %s", site->path, temporary_path,
                        strerror(errno));
        goto fail;
    }
    /* The rename itself lives in the directory. */
    char directory[4096];
    if (durable_sync_directory_of(site->path, directory, sizeof directory))
        return bneck_error_set(site->err, "%s: written, but cannot sync its directory %s: %s",
                               site->path, directory, strerror(errno));
    return 0;
fail:
    h5_close(file);
    unlink(temporary_path);
    return -1;
}

hid_t h5_open_readonly(const h5_site *site) {
    hid_t plist = H5I_INVALID_HID, file = H5I_INVALID_HID;
    BNECK_H5_CHECK(site, plist = file_access_plist(), "no file access property list");
#if H5_VERSION_GE(1, 10, 7)
    /* Without the lock: these files are only ever replaced whole (by rename), never written
     * in place, and a viewer holding one open for writing (HDFView, h5py's mode 'a') takes
     * the lock that would make a reader take a good file for a damaged one. */
    BNECK_H5_CHECK(site, H5Pset_file_locking(plist, 0, 1), "cannot turn file locking off");
#endif
    BNECK_H5_CHECK(site, file = H5Fopen(site->path, H5F_ACC_RDONLY, plist),
                   "cannot open (damaged or truncated?)");
    h5_close(&plist);
    return file;
fail:
    h5_close(&plist);
    return H5I_INVALID_HID;
}

void h5_timestamp(char *text, size_t capacity) {
    time_t now = time(NULL);
    struct tm utc;
    if (!gmtime_r(&now, &utc) || !strftime(text, capacity, "%Y-%m-%dT%H:%M:%SZ", &utc))
        snprintf(text, capacity, "unknown");
}
