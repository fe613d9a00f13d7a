/* CIFAR-10 binary distribution reader. Every batch file is checked for its exact size
 * before a byte is used, and every label for its range, so a partial download or a wrong
 * file is reported by name instead of training on garbage. */
#include "data/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    CIFAR_CHANNELS = 3,
    CIFAR_IMAGE_BYTES = CIFAR_CHANNELS * DATASET_SIDE * DATASET_SIDE,
    CIFAR_RECORD_BYTES = 1 + CIFAR_IMAGE_BYTES, /* label byte, then R, G, B planes */
    CIFAR_RECORDS_PER_BATCH = 10000,
    CIFAR_TRAIN_BATCHES = 5,
};

static const long long CIFAR_BATCH_BYTES = (long long)CIFAR_RECORDS_PER_BATCH * CIFAR_RECORD_BYTES;

/* The size check is done up front so that a short download says how many records it
 * holds, rather than failing somewhere in the middle of the read. */
static int check_batch_size(const char *path, FILE *file, bneck_error *err) {
    struct stat info;
    if (fstat(fileno(file), &info) != 0)
        return bneck_error_set(err, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        return bneck_error_set(err, "%s: not a regular file (expected a CIFAR-10 batch of %d "
                               "records of %d bytes)", path, CIFAR_RECORDS_PER_BATCH,
                               CIFAR_RECORD_BYTES);
    long long size = (long long)info.st_size;
    if (size == CIFAR_BATCH_BYTES) return 0;
    long long whole_records = size / CIFAR_RECORD_BYTES;
    long long stray_bytes = size % CIFAR_RECORD_BYTES;
    if (size < CIFAR_BATCH_BYTES)
        return bneck_error_set(err, "%s: truncated: %lld bytes, expected %lld (%d records of %d "
                               "bytes); it holds %lld complete records plus %lld stray bytes",
                               path, size, CIFAR_BATCH_BYTES, CIFAR_RECORDS_PER_BATCH,
                               CIFAR_RECORD_BYTES, whole_records, stray_bytes);
    return bneck_error_set(err, "%s: too large: %lld bytes, expected %lld (%d records of %d "
                           "bytes); it holds %lld complete records plus %lld stray bytes",
                           path, size, CIFAR_BATCH_BYTES, CIFAR_RECORDS_PER_BATCH,
                           CIFAR_RECORD_BYTES, whole_records, stray_bytes);
}

/* Reads one batch file into labels[0..10000) and pixels[0..10000*3072). */
static int read_batch(const char *path, uint8_t *labels, uint8_t *pixels, bneck_error *err) {
    /* O_NONBLOCK: a FIFO in a batch's place must reach the regular-file check, not hang
     * in open() waiting for a writer */
    const int descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *file = descriptor < 0 ? NULL : fdopen(descriptor, "rb");
    if (descriptor >= 0 && !file) close(descriptor);
    if (!file)
        return bneck_error_set(err, "%s: cannot open CIFAR-10 batch: %s (expected the binary "
                               "distribution: data_batch_1.bin .. data_batch_5.bin, "
                               "test_batch.bin; launcher/fetch_cifar10.sh downloads it)",
                               path, strerror(errno));
    int status = check_batch_size(path, file, err);
    uint8_t record[CIFAR_RECORD_BYTES];
    for (int r = 0; status == 0 && r < CIFAR_RECORDS_PER_BATCH; r++) {
        if (fread(record, 1, sizeof record, file) != sizeof record) {
            /* The size was right a moment ago: the file changed, or the disk failed. */
            status = ferror(file)
                ? bneck_error_set(err, "%s: read error at record %d: %s", path, r, strerror(errno))
                : bneck_error_set(err, "%s: truncated at record %d of %d (the file shrank while "
                                  "being read)", path, r, CIFAR_RECORDS_PER_BATCH);
            break;
        }
        if (record[0] >= DATASET_CLASSES) {
            status = bneck_error_set(err, "%s: record %d (counting from 0, byte offset %lld): "
                                     "label %d out of range, expected 0..%d", path, r,
                                     (long long)r * CIFAR_RECORD_BYTES, record[0],
                                     DATASET_CLASSES - 1);
            break;
        }
        labels[r] = record[0];
        memcpy(pixels + (size_t)r * CIFAR_IMAGE_BYTES, record + 1, CIFAR_IMAGE_BYTES);
    }
    fclose(file);
    return status;
}

static void allocate_images(dataset *d, int count) {
    d->count = count;
    d->channels = CIFAR_CHANNELS;
    d->pixels = bneck_malloc((size_t)count * CIFAR_IMAGE_BYTES);
    d->labels = bneck_malloc((size_t)count);
}

int cifar10_load(dataset *train, dataset *val, const char *dir, bneck_error *err) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    char path[4096];
    allocate_images(train, CIFAR_TRAIN_BATCHES * CIFAR_RECORDS_PER_BATCH);
    for (int b = 0; b < CIFAR_TRAIN_BATCHES; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        size_t first = (size_t)b * CIFAR_RECORDS_PER_BATCH;
        if (dataset_join_path(path, sizeof path, dir, name, err) != 0 ||
            read_batch(path, train->labels + first, train->pixels + first * CIFAR_IMAGE_BYTES,
                       err) != 0) {
            dataset_free(train);
            return -1;
        }
    }
    allocate_images(val, CIFAR_RECORDS_PER_BATCH);
    if (dataset_join_path(path, sizeof path, dir, "test_batch.bin", err) != 0 ||
        read_batch(path, val->labels, val->pixels, err) != 0) {
        dataset_free(train);
        dataset_free(val);
        return -1;
    }
    return 0;
}
