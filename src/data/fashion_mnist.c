/* Fashion-MNIST reader: gzip-compressed IDX files (big-endian header: magic, counts,
 * dimensions; then unsigned bytes). Images are padded from 28x28 to 32x32 with a 2-pixel
 * zero border so that every later stage sees CIFAR-10's shape. */
#include "data/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum {
    FMNIST_SIDE = 28,
    FMNIST_IMAGE_BYTES = FMNIST_SIDE * FMNIST_SIDE,
    FMNIST_BORDER = (DATASET_SIDE - FMNIST_SIDE) / 2,
    PADDED_IMAGE_BYTES = DATASET_SIDE * DATASET_SIDE,
    /* dataset.count is an int and later stages index count * 1024 pixels with ints. */
    FMNIST_MAX_COUNT = INT_MAX / PADDED_IMAGE_BYTES,
    GZIP_BUFFER_BYTES = 1 << 18,
};

static const uint32_t IDX_LABELS_MAGIC = 0x00000801; /* unsigned bytes, 1 dimension */
static const uint32_t IDX_IMAGES_MAGIC = 0x00000803; /* unsigned bytes, 3 dimensions */

static uint32_t big_endian_u32(const uint8_t *bytes) {
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 |
           (uint32_t)bytes[3];
}

static int open_gzip(const char *path, gzFile *out, bneck_error *err) {
    struct stat info;
    if (stat(path, &info) != 0) {
        const int why = errno;
        /* an unpacked copy beside it: say so, rather than only that the .gz is missing */
        char unpacked[4096];
        const size_t length = strlen(path);
        if (why == ENOENT && length > 3 && length < sizeof unpacked &&
            !strcmp(path + length - 3, ".gz")) {
            memcpy(unpacked, path, length - 3);
            unpacked[length - 3] = '\0';
            if (stat(unpacked, &info) == 0)
                return bneck_error_set(err, "%s: cannot open Fashion-MNIST file: %s; %s is "
                                       "there, uncompressed: compress it (gzip -k %s), as "
                                       "the files are read in their distributed gzip form",
                                       path, strerror(why), unpacked, unpacked);
        }
        return bneck_error_set(err, "%s: cannot open Fashion-MNIST file: %s", path,
                               strerror(why));
    }
    if (!S_ISREG(info.st_mode))
        return bneck_error_set(err, "%s: not a regular file (expected gzip-compressed IDX data)",
                               path);
    if (info.st_size == 0)
        return bneck_error_set(err, "%s: empty file (expected gzip-compressed IDX data)", path);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return bneck_error_set(err, "%s: cannot open: %s", path,
                               errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, GZIP_BUFFER_BYTES);
    /* zlib would silently read a plain file as is; the format says gzip, so insist on it
     * rather than guess. */
    if (gzdirect(gz)) {
        gzclose(gz);
        return bneck_error_set(err, "%s: not gzip-compressed (no gzip header); expected IDX data "
                               "compressed with gzip, as Debian's dataset-fashion-mnist "
                               "installs it", path);
    }
    *out = gz;
    return 0;
}

/* Why gzread came up short: zlib's own verdict when it has one, otherwise the gzip stream
 * was sound and the decompressed IDX data simply ended before its header said it would. */
static int short_read_error(bneck_error *err, const char *path, gzFile gz, const char *reading) {
    int code = Z_OK;
    const char *zlib_message = gzerror(gz, &code);
    /* zlib prefixes its message with the path, which ours already starts with. */
    size_t path_len = strlen(path);
    if (strncmp(zlib_message, path, path_len) == 0 &&
        strncmp(zlib_message + path_len, ": ", 2) == 0)
        zlib_message += path_len + 2;
    if (code == Z_BUF_ERROR)
        return bneck_error_set(err, "%s: truncated gzip stream (zlib: %s) while reading %s",
                               path, zlib_message, reading);
    if (code == Z_ERRNO)
        return bneck_error_set(err, "%s: read error while reading %s: %s", path, reading,
                               strerror(errno));
    if (code != Z_OK)
        return bneck_error_set(err, "%s: corrupt gzip data (zlib: %s) while reading %s", path,
                               zlib_message, reading);
    return bneck_error_set(err, "%s: IDX data ends early, while reading %s", path, reading);
}

static int read_exact(gzFile gz, void *buffer, unsigned bytes) {
    return gzread(gz, buffer, bytes) == (int)bytes;
}

/* After the last declared item the stream must end; reading on to the end also makes zlib
 * check the gzip trailer (CRC-32 and length), which catches corruption in the data. */
static int check_stream_end(gzFile gz, const char *path, uint32_t count, const char *items,
                            bneck_error *err) {
    uint8_t extra;
    int got = gzread(gz, &extra, 1);
    if (got == 1)
        return bneck_error_set(err, "%s: unexpected data after the %u %s the IDX header declares",
                               path, count, items);
    int code = Z_OK;
    gzerror(gz, &code);
    if (code != Z_OK) return short_read_error(err, path, gz, "the end of the gzip stream");
    return 0;
}

static int check_magic(const char *path, uint32_t found, uint32_t expected, const char *kind,
                       bneck_error *err) {
    if (found == expected) return 0;
    return bneck_error_set(err, "%s: IDX magic number 0x%08x, expected 0x%08x (%s)", path, found,
                           expected, kind);
}

static int check_count(const char *path, uint32_t count, const char *items, bneck_error *err) {
    if (count >= 1 && count <= FMNIST_MAX_COUNT) return 0;
    return bneck_error_set(err, "%s: IDX header declares %u %s, expected 1..%d", path, count,
                           items, FMNIST_MAX_COUNT);
}

/* Reads a label file's header and labels from an open stream; allocates *labels_out. */
static int read_labels(gzFile gz, const char *path, uint8_t **labels_out, uint32_t *count_out,
                       bneck_error *err) {
    uint8_t header[8];
    if (!read_exact(gz, header, sizeof header))
        return short_read_error(err, path, gz, "the 8-byte IDX label header");
    uint32_t count = big_endian_u32(header + 4);
    if (check_magic(path, big_endian_u32(header), IDX_LABELS_MAGIC,
                    "labels: unsigned bytes, 1 dimension", err) != 0 ||
        check_count(path, count, "labels", err) != 0)
        return -1;
    uint8_t *labels = bneck_malloc(count);
    int status = 0;
    if (!read_exact(gz, labels, count)) {
        char reading[64];
        snprintf(reading, sizeof reading, "%u labels", count);
        status = short_read_error(err, path, gz, reading);
    }
    for (uint32_t i = 0; status == 0 && i < count; i++)
        if (labels[i] >= DATASET_CLASSES)
            status = bneck_error_set(err, "%s: label index %u (counting from 0): label %d out of "
                                     "range, expected 0..%d", path, i, labels[i],
                                     DATASET_CLASSES - 1);
    if (status == 0) status = check_stream_end(gz, path, count, "labels", err);
    if (status != 0) {
        free(labels);
        return -1;
    }
    *labels_out = labels;
    *count_out = count;
    return 0;
}

/* Reads an image file's header and images from an open stream into *pixels_out, padded to
 * 32x32; their count must equal label_count (read from labels_path). */
static int read_images(gzFile gz, const char *path, const char *labels_path,
                       uint32_t label_count, uint8_t **pixels_out, bneck_error *err) {
    uint8_t header[16];
    if (!read_exact(gz, header, sizeof header))
        return short_read_error(err, path, gz, "the 16-byte IDX image header");
    uint32_t count = big_endian_u32(header + 4);
    uint32_t rows = big_endian_u32(header + 8);
    uint32_t cols = big_endian_u32(header + 12);
    if (check_magic(path, big_endian_u32(header), IDX_IMAGES_MAGIC,
                    "images: unsigned bytes, 3 dimensions", err) != 0 ||
        check_count(path, count, "images", err) != 0)
        return -1;
    if (rows != FMNIST_SIDE || cols != FMNIST_SIDE)
        return bneck_error_set(err, "%s: images are %ux%u (rows x columns), expected %dx%d",
                               path, rows, cols, FMNIST_SIDE, FMNIST_SIDE);
    if (count != label_count)
        return bneck_error_set(err, "image/label count mismatch: %s holds %u images but %s "
                               "holds %u labels", path, count, labels_path, label_count);
    uint8_t *pixels = bneck_calloc((size_t)count, PADDED_IMAGE_BYTES); /* zeros: the border */
    uint8_t image[FMNIST_IMAGE_BYTES];
    int status = 0;
    for (uint32_t i = 0; status == 0 && i < count; i++) {
        if (!read_exact(gz, image, sizeof image)) {
            char reading[64];
            snprintf(reading, sizeof reading, "image %u of %u (counting from 0)", i, count);
            status = short_read_error(err, path, gz, reading);
            break;
        }
        uint8_t *padded = pixels + (size_t)i * PADDED_IMAGE_BYTES;
        for (int y = 0; y < FMNIST_SIDE; y++)
            memcpy(padded + (y + FMNIST_BORDER) * DATASET_SIDE + FMNIST_BORDER,
                   image + y * FMNIST_SIDE, FMNIST_SIDE);
    }
    if (status == 0) status = check_stream_end(gz, path, count, "images", err);
    if (status != 0) {
        free(pixels);
        return -1;
    }
    *pixels_out = pixels;
    return 0;
}

static int load_split(dataset *d, const char *dir, const char *images_name,
                      const char *labels_name, bneck_error *err) {
    char images_path[4096], labels_path[4096];
    if (dataset_join_path(images_path, sizeof images_path, dir, images_name, err) != 0 ||
        dataset_join_path(labels_path, sizeof labels_path, dir, labels_name, err) != 0)
        return -1;
    uint8_t *labels = NULL, *pixels = NULL;
    uint32_t count = 0;
    gzFile gz;
    if (open_gzip(labels_path, &gz, err) != 0) return -1;
    int status = read_labels(gz, labels_path, &labels, &count, err);
    gzclose(gz);
    if (status != 0) return -1;
    if (open_gzip(images_path, &gz, err) != 0) {
        free(labels);
        return -1;
    }
    status = read_images(gz, images_path, labels_path, count, &pixels, err);
    gzclose(gz);
    if (status != 0) {
        free(labels);
        return -1;
    }
    d->count = (int)count;
    d->channels = 1;
    d->pixels = pixels;
    d->labels = labels;
    return 0;
}

int fashion_mnist_load(dataset *train, dataset *val, const char *dir, bneck_error *err) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (load_split(train, dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                   err) != 0)
        return -1;
    if (load_split(val, dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                   err) != 0) {
        dataset_free(train);
        return -1;
    }
    return 0;
}
