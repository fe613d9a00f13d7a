/* Small HDF5 helpers shared by the run and sweep files: a check macro that turns a failed
 * HDF5 call into a bneck_error (file:line plus HDF5's own error stack text), table
 * descriptions that drive both the compound types and the run file's attributes,
 * attribute and dataset writers and readers, and the atomic "write .tmp, rename" commit.
 *
 * Functions that use BNECK_H5_CHECK keep their cleanup after a `fail:` label. */
#ifndef BNECK_RESULTS_H5_UTIL_H
#define BNECK_RESULTS_H5_UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* The file being read or written and where its errors go. Opening a site silences HDF5's
 * automatic error printing (we report through err instead); closing restores it. */
typedef struct h5_site {
    const char *path;
    bneck_error *err;
    H5E_auto2_t saved_handler;
    void *saved_data;
    struct h5_text_copy *text_copy; /* see h5_text_copy_start */
} h5_site;

void h5_site_open(h5_site *site, const char *path, bneck_error *err);
void h5_site_close(h5_site *site);

/* The root's text attributes, kept a second time where a damaged file cannot crash their
 * reader. Variable-length strings live in HDF5's global heap, which has no checksum, and
 * libhdf5 1.10 reads past its buffers on a damaged one (a byte flipped in a run file's
 * heap crashed the sweep's resume in H5HG_read). So files that bneck reads back also hold
 * the root's text attributes in the checksummed uint8 dataset H5_TEXT_COPY ("name\0value\0"
 * pairs), and h5_read_text_attribute takes them from there; users' tools keep reading the
 * attributes. Files without the dataset (older ones) are read from the attributes, once
 * their heap collections are seen to walk cleanly (h5_heap_check.h).
 *
 * Writing: h5_text_copy_start before the first attribute, h5_text_copy_write before the
 * commit. Reading: h5_text_copy_load after the open (an error if the copy is damaged, or
 * for a file without one, if a heap collection is).
 * h5_site_close frees either. */
#define H5_TEXT_COPY "/text_attributes"
void h5_text_copy_start(h5_site *site);
int h5_text_copy_write(const h5_site *site, hid_t file);
int h5_text_copy_load(h5_site *site, hid_t file);
/* The value the loaded copy holds for the root's attribute `name`, or NULL (no copy
 * loaded, or none of that name in it). */
const char *h5_text_copy_find(const h5_site *site, const char *name);

/* Records "<path>: <what>: HDF5: <error stack> [file:line]" in site->err and returns -1.
 * Call it straight after the failing call: the next HDF5 call clears the error stack. */
int h5_fail_at(const h5_site *site, const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* HDF5's innermost description of the call that just failed, on one line ("no detail from
 * HDF5" when it gave none): for messages that say in their own words what failed, such as
 * the report's about a file a user gave it. */
typedef struct h5_detail {
    char text[256];
    int taken;
} h5_detail;
const char *h5_failure_detail(h5_detail *detail);

/* Runs an HDF5 call (anything returning herr_t, htri_t or hid_t); a negative result is
 * recorded with the printf-style description and jumps to `fail`. The name is not
 * H5CHECK: HDF5's headers define that. */
#define BNECK_H5_CHECK(site, call, ...)                                                    \
    do {                                                                                   \
        if ((call) < 0) {                                                                  \
            h5_fail_at((site), __FILE__, __LINE__, __VA_ARGS__);                           \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

/* Closes any identifier we created (file, group, dataset, attribute, type, space,
 * property list) if it is still valid, and marks it closed; safe on H5I_INVALID_HID. */
void h5_close(hid_t *id);

/* One member of a C struct as stored in HDF5. */
typedef enum { FIELD_TEXT, FIELD_INT32, FIELD_INT64, FIELD_UINT64, FIELD_DOUBLE } h5_field_kind;
typedef struct h5_field {
    const char *name;
    h5_field_kind kind;
    size_t offset;
    size_t size;        /* bytes; for FIELD_TEXT the fixed string length including the NUL */
    const char *description; /* meaning and unit, for the table's "columns" attribute */
} h5_field;

/* The native HDF5 type of a number field (H5I_INVALID_HID for text); numbers are stored
 * in the files as they are in memory. */
hid_t h5_field_memory_type(h5_field_kind kind);

typedef struct h5_table {
    const h5_field *fields;
    int field_count;
    size_t row_size;    /* sizeof the C struct */
} h5_table;

extern const h5_table h5_run_row_table, h5_epoch_record_table, h5_summary_row_table;

/* Writes rows as a 1-D compound dataset `name` (packed in the file: no struct padding),
 * with a "columns" attribute describing each field. Text fields are cleared after their
 * first NUL, so no stray bytes reach readers. */
int h5_write_table(const h5_site *site, hid_t location, const char *name, const h5_table *table,
                   const void *rows, int count);

/* Reads the 1-D compound dataset `name` into a malloc'ed array (NULL when empty) after
 * checking that it has every field of the table. Returns 0 or -1. */
int h5_read_table(const h5_site *site, hid_t location, const char *name, const h5_table *table,
                  void **rows, int *count);

/* Scalar attributes: 64-bit integers, doubles, variable-length UTF-8 strings. */
int h5_write_int64_attribute(const h5_site *site, hid_t object, const char *name, int64_t value);
int h5_write_uint64_attribute(const h5_site *site, hid_t object, const char *name, uint64_t value);
int h5_write_double_attribute(const h5_site *site, hid_t object, const char *name, double value);
int h5_write_text_attribute(const h5_site *site, hid_t object, const char *name, const char *value);

/* Readers for the same; a missing attribute or one of the wrong class is an error naming
 * it. Text of either string kind (variable or fixed) is accepted; it must fit capacity
 * including the NUL. A root attribute held in a loaded text copy is read from the copy. */
int h5_read_int64_attribute(const h5_site *site, hid_t object, const char *name, int64_t *value);
/* The same for an attribute files from before it lack: *value is left as it is then. */
int h5_read_optional_int64_attribute(const h5_site *site, hid_t object, const char *name,
                                     int64_t *value);
int h5_read_uint64_attribute(const h5_site *site, hid_t object, const char *name, uint64_t *value);
int h5_read_double_attribute(const h5_site *site, hid_t object, const char *name, double *value);
int h5_read_text_attribute(const h5_site *site, hid_t object, const char *name, char *value,
                           size_t capacity);

/* A struct's fields as scalar attributes of object (numbers as int64/uint64/double,
 * text as UTF-8 strings), and back. */
int h5_write_fields_as_attributes(const h5_site *site, hid_t object, const h5_table *table,
                                  const void *row);
int h5_read_fields_from_attributes(const h5_site *site, hid_t object, const h5_table *table,
                                   void *row);

/* Creates dataset `name` (checksummed; intermediate groups made) of file_type and rank
 * dims, writes values (memory_type) into it, and returns it open; H5I_INVALID_HID with
 * site's error on failure. */
hid_t h5_write_dataset(const h5_site *site, hid_t location, const char *name, hid_t file_type,
                       hid_t memory_type, const void *values, int rank, const hsize_t *dims);
/* h5_write_dataset of float32 / float64 values, closed again. */
int h5_write_floats(const h5_site *site, hid_t location, const char *name, const float *values,
                    int rank, const hsize_t *dims);
int h5_write_doubles(const h5_site *site, hid_t location, const char *name, const double *values,
                     int rank, const hsize_t *dims);

/* Checks that dataset `name` is a float dataset of exactly this shape; when values is
 * non-NULL reads it there. */
int h5_read_floats(const h5_site *site, hid_t location, const char *name, float *values, int rank,
                   const hsize_t *dims);
/* The same read as doubles; a wrong shape is "expected <dims> <expected_for>". */
int h5_read_doubles(const h5_site *site, hid_t location, const char *name, double *values,
                    int rank, const hsize_t *dims, const char *expected_for);

/* 1 if a link at `name` (each component checked in turn) exists, 0 if not, -1 on error. */
int h5_exists(const h5_site *site, hid_t location, const char *name);
/* 1 if the object at `name` is a group; 0 if it is something else or cannot be opened. */
int h5_is_group(hid_t location, const char *name);

/* Atomic commit. h5_create_temporary truncates or creates "<path>.tmp" (its name goes in
 * temporary_path) and returns the file; h5_commit flushes and closes it, fsyncs it,
 * renames it over path and fsyncs the directory; h5_abandon closes and removes it. */
hid_t h5_create_temporary(const h5_site *site, char *temporary_path, size_t capacity);
int h5_commit(const h5_site *site, hid_t *file, const char *temporary_path);
void h5_abandon(hid_t *file, const char *temporary_path);

/* Opens an existing file read-only; every object still open is closed with it. */
hid_t h5_open_readonly(const h5_site *site);

/* "YYYY-MM-DDTHH:MM:SSZ", now, UTC. */
void h5_timestamp(char *text, size_t capacity);

#endif
