/* Walks a file's HDF5 global heap collections as libhdf5 will, before text is read from them.
 *
 * Variable-length strings live in global heap collections, which have no checksum, and
 * libhdf5 1.10 trusts their object sizes: a damaged size made it read past the collection
 * (a segfault in H5HG_read) or, for a zero-sized free-space object, loop for ever. bneck's
 * own files carry their root's text in the checksummed /text_attributes as well
 * (h5_util.h); this check guards the files without it (written before it, or by other
 * tools), whose text attributes are read from the heap.
 *
 * Format (HDF5 file format specification, "Global Heap"): "GCOL", version 1, 3 reserved
 * bytes, the collection's size in bytes (its header included; a "length": the file's
 * size-of-lengths bytes, little-endian); then objects, each a 2-byte index, a 2-byte
 * reference count, 4 reserved bytes, its data size (a length) and the data padded to 8
 * bytes. Index 0 is the free space, whose size counts its own header. A tail too small for
 * an object header is free space too. */
#include "results/h5_heap_check.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HEAP_MIN_SIZE = 4096, HEAP_VERSION = 1, SCAN_WINDOW = 1 << 20 };

static uint64_t decode_length(const unsigned char *at, size_t length_size) {
    uint64_t value = 0;
    for (size_t i = length_size; i-- > 0;) value = value << 8 | at[i];
    return value;
}

/* NULL when the collection's objects tile it as libhdf5 walks them, else what is wrong. */
static const char *collection_fault(const unsigned char *heap, uint64_t size,
                                    size_t length_size) {
    const uint64_t object_header = 8 + length_size;
    for (uint64_t at = 8 + length_size; at < size;) {
        const uint64_t left = size - at;
        if (left < object_header) break; /* a tail of free space */
        const unsigned index = heap[at] | (unsigned)heap[at + 1] << 8;
        const uint64_t data = decode_length(heap + at + 8, length_size);
        if (index == 0) {
            if (data < object_header) return "a free-space object smaller than its header";
            if (data > left) return "a free-space object larger than the collection";
            at += data;
        } else {
            if (data > left - object_header) return "an object larger than the collection";
            const uint64_t padded = (data + 7) & ~(uint64_t)7;
            if (padded > left - object_header) return "an object larger than the collection";
            at += object_header + padded;
        }
    }
    return NULL;
}

/* The file's size of lengths (8 unless the writer chose otherwise), or 0. */
static size_t file_length_size(hid_t file) {
    size_t offsets = 0, lengths = 0;
    const hid_t creation = H5Fget_create_plist(file);
    if (creation < 0) return 0;
    if (H5Pget_sizes(creation, &offsets, &lengths) < 0) lengths = 0;
    H5Pclose(creation);
    return lengths;
}

typedef struct heap_scan {
    const h5_site *site;
    FILE *stream;
    uint64_t file_size;
    size_t length_size;
    unsigned char *heap; /* the collection being walked */
} heap_scan;

static int read_failed(const heap_scan *scan) {
    return bneck_error_set(scan->site->err, "%s: cannot read: %s", scan->site->path,
                           errno ? strerror(errno) : "the file is shorter than it was");
}

/* Checks the collection whose header starts at `start` (its first 8 + length_size bytes in
 * `header`); leaves the stream where it was. */
static int check_collection(heap_scan *scan, uint64_t start, const unsigned char *header) {
    const uint64_t size = decode_length(header + 8, scan->length_size);
    const char *fault = NULL;
    if (size < HEAP_MIN_SIZE || size > scan->file_size - start) {
        fault = "a collection size outside the file";
    } else {
        const long resume = ftell(scan->stream);
        scan->heap = bneck_realloc(scan->heap, (size_t)size);
        errno = 0;
        if (resume < 0 || fseek(scan->stream, (long)start, SEEK_SET) ||
            fread(scan->heap, 1, (size_t)size, scan->stream) != (size_t)size ||
            fseek(scan->stream, resume, SEEK_SET))
            return read_failed(scan);
        fault = collection_fault(scan->heap, size, scan->length_size);
    }
    if (!fault) return 0;
    return bneck_error_set(scan->site->err,
                           "%s: damaged: HDF5's global heap collection at byte %llu holds %s "
                           "(the file has no /text_attributes, so its text attributes would "
                           "be read from there)",
                           scan->site->path, (unsigned long long)start, fault);
}

int h5_global_heaps_check(const h5_site *site, hid_t file) {
    heap_scan scan = {.site = site, .length_size = file_length_size(file)};
    if (scan.length_size < 2 || scan.length_size > 8)
        return bneck_error_set(site->err, "%s: an HDF5 size of lengths of %zu bytes", site->path,
                               scan.length_size);
    const size_t header = 8 + scan.length_size;
    if (!(scan.stream = fopen(site->path, "rb")))
        return bneck_error_set(site->err, "%s: cannot open: %s", site->path, strerror(errno));
    unsigned char *window = bneck_malloc(SCAN_WINDOW);
    int status = 0;
    errno = 0;
    long end;
    if (fseek(scan.stream, 0, SEEK_END) || (end = ftell(scan.stream)) < 0) {
        status = read_failed(&scan);
        goto done;
    }
    scan.file_size = (uint64_t)end;
    rewind(scan.stream);
    /* Windows of the file; a signature too near a window's end to hold a whole header is
     * carried into the next one. */
    uint64_t base = 0; /* the window's offset in the file */
    size_t filled = 0;
    for (;;) {
        errno = 0;
        filled += fread(window + filled, 1, SCAN_WINDOW - filled, scan.stream);
        if (ferror(scan.stream)) {
            status = read_failed(&scan);
            goto done;
        }
        const int last = feof(scan.stream) != 0;
        size_t at = 0;
        while (at + header <= filled) {
            const unsigned char *found = memchr(window + at, 'G', filled - header + 1 - at);
            if (!found) {
                at = filled - header + 1;
                break;
            }
            at = (size_t)(found - window);
            if (!memcmp(found, "GCOL", 4) && found[4] == HEAP_VERSION &&
                check_collection(&scan, base + at, found)) {
                status = -1;
                goto done;
            }
            at++;
        }
        if (last) break;
        memmove(window, window + at, filled - at);
        base += at;
        filled -= at;
    }
done:
    free(scan.heap);
    free(window);
    fclose(scan.stream);
    return status;
}
