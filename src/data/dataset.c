#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where each dataset lives when the caller gives no directory: the same defaults as the
 * [data] section of the config (Debian's package for Fashion-MNIST, the fetch script's
 * output for CIFAR-10). */
static const char FASHION_MNIST_DEFAULT_DIR[] = "/usr/share/datasets/fashion-mnist";
static const char CIFAR10_DEFAULT_DIR[] = "data/cifar-10-batches-bin";

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void dataset_truncate(dataset *d, int limit) {
    if (!d || limit <= 0 || limit >= d->count) return;
    d->count = limit;
    /* Give the tail back: a limited run on a laptop should not hold the whole set.
     * A failed shrink keeps the old (larger, still valid) block. */
    size_t pixel_bytes = (size_t)limit * (size_t)d->channels * DATASET_SIDE * DATASET_SIDE;
    uint8_t *pixels = realloc(d->pixels, pixel_bytes);
    if (pixels) d->pixels = pixels;
    uint8_t *labels = realloc(d->labels, (size_t)limit);
    if (labels) d->labels = labels;
}

int dataset_channels(const char *name) { return strcmp(name, "cifar10") == 0 ? 3 : 1; }

int dataset_load(dataset *train, dataset *val, const char *name, const char *dir,
                 bneck_error *err) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    const char *given_name = name ? name : "(none)";
    int use_default_dir = !dir || !dir[0];
    if (name && strcmp(name, "cifar10") == 0)
        return cifar10_load(train, val, use_default_dir ? CIFAR10_DEFAULT_DIR : dir, err);
    if (name && strcmp(name, "fashion-mnist") == 0)
        return fashion_mnist_load(train, val, use_default_dir ? FASHION_MNIST_DEFAULT_DIR : dir,
                                  err);
    return bneck_error_set(err, "unknown dataset '%s': expected one of: cifar10, fashion-mnist",
                           given_name);
}

int dataset_join_path(char *out, size_t out_size, const char *dir, const char *file,
                      bneck_error *err) {
    size_t dir_len = strlen(dir);
    const char *separator = (dir_len > 0 && dir[dir_len - 1] == '/') ? "" : "/";
    int written = snprintf(out, out_size, "%s%s%s", dir, separator, file);
    if (written < 0 || (size_t)written >= out_size)
        return bneck_error_set(err, "%s%s%s: path longer than %zu characters", dir, separator,
                               file, out_size - 1);
    return 0;
}
