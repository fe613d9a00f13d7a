/* In-memory image classification datasets. Images are stored as bytes, per image CHW,
 * always 32x32 (Fashion-MNIST's 28x28 images are zero-padded by 2 on every side at load
 * time), so every later stage sees one shape. */
#ifndef BNECK_DATA_DATASET_H
#define BNECK_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

enum { DATASET_SIDE = 32, DATASET_CLASSES = 10 };

typedef struct dataset {
    int count;        /* number of images */
    int channels;     /* 3 for CIFAR-10, 1 for Fashion-MNIST */
    uint8_t *pixels;  /* count * channels * 32 * 32 bytes, image-major, then CHW */
    uint8_t *labels;  /* count labels in [0, 10) */
} dataset;

void dataset_free(dataset *d);
/* Keeps the first `limit` images (no-op when limit <= 0 or >= count). */
void dataset_truncate(dataset *d, int limit);

/* CIFAR-10 binary distribution: dir holds data_batch_1.bin .. data_batch_5.bin (train,
 * 50,000) and test_batch.bin (validation, 10,000); records are 1 label byte + 3072 pixel
 * bytes (R, G, B planes of 32x32). Any size, label or truncation problem is reported with
 * the file name and record number; returns 0 or -1. */
int cifar10_load(dataset *train, dataset *val, const char *dir, bneck_error *err);

/* Fashion-MNIST IDX files, gzip-compressed (as Debian's dataset-fashion-mnist installs them):
 * dir holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 * t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz. Magic numbers, dimensions, counts,
 * label range and truncation are all checked; returns 0 or -1. */
int fashion_mnist_load(dataset *train, dataset *val, const char *dir, bneck_error *err);

/* out = dir/file (one separator), for the loaders; -1 with err when it does not fit. */
int dataset_join_path(char *out, size_t out_size, const char *dir, const char *file,
                      bneck_error *err);

/* The image channels of a dataset by name: 3 for "cifar10", 1 for "fashion-mnist" (what a
 * plan and a model need before, or without, loading it). */
int dataset_channels(const char *name);

/* Loads by name: "cifar10" or "fashion-mnist". */
int dataset_load(dataset *train, dataset *val, const char *name, const char *dir,
                 bneck_error *err);

#endif
