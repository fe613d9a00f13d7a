/* Data layer tests: the CIFAR-10 and Fashion-MNIST readers against small files written
 * here in the exact on-disk formats (and every way those files can be wrong), the real
 * Fashion-MNIST when installed, augmentation and shuffling. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/rng.h"
#include "data/augment.h"
#include "data/dataset.h"

enum {
    IMAGE_PIXELS = DATASET_SIDE * DATASET_SIDE,
    CIFAR_IMAGE_BYTES = 3 * IMAGE_PIXELS,
    CIFAR_RECORD_BYTES = 1 + CIFAR_IMAGE_BYTES,
    CIFAR_RECORDS = 10000,
    FMNIST_SIDE = 28,
    FMNIST_TRAIN_COUNT = 5, /* small sets for the synthetic Fashion-MNIST files */
    FMNIST_VAL_COUNT = 3,
};

static const char *const CIFAR_FILES[6] = {"data_batch_1.bin", "data_batch_2.bin",
                                           "data_batch_3.bin", "data_batch_4.bin",
                                           "data_batch_5.bin", "test_batch.bin"};
static const char REAL_FMNIST_DIR[] = "/usr/share/datasets/fashion-mnist";

/* ---- temporary directory, one per test (tests run in parallel processes) ------------ */

static char temp_dir[64];

static void make_temp_dir(void) {
    strcpy(temp_dir, "/tmp/bneck_test_data_XXXXXX");
    cr_assert_not_null(mkdtemp(temp_dir), "mkdtemp failed");
}

/* The directory is flat except for the one test that puts a directory where a file
 * should be, so one level of recursion is enough. */
static void remove_dir(const char *dir) {
    DIR *listing = opendir(dir);
    if (!listing) return;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (unlink(path) != 0) remove_dir(path);
    }
    closedir(listing);
    rmdir(dir);
}

static void remove_temp_dir(void) { remove_dir(temp_dir); }

static const char *path_in_temp(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static void assert_message_has(const bneck_error *err, const char *expected) {
    cr_assert_not_null(strstr(err->message, expected), "message lacks \"%s\": %s", expected,
                       err->message);
}

static void assert_empty(const dataset *d) {
    cr_assert_eq(d->count, 0);
    cr_assert_eq(d->channels, 0);
    cr_assert_null(d->pixels);
    cr_assert_null(d->labels);
}

static void assert_load_fails(int status, const dataset *train, const dataset *val) {
    cr_assert_eq(status, -1);
    assert_empty(train);
    assert_empty(val);
}

/* ---- CIFAR-10 files ------------------------------------------------------------------ */

static uint8_t cifar_pixel(int file, int record, int offset) {
    return (uint8_t)(record * 131u + file * 71u + offset * 7u + (offset >> 10) * 29u +
                     (record >> 8));
}

static uint8_t cifar_label(int file, int record) { return (uint8_t)((record * 3 + file) % 10); }

/* A batch of the given number of all-zero records (label 0, black), written as a sparse
 * file so that the error tests cost no disk. */
static void write_zero_batch(const char *name, long long records) {
    int fd = open(path_in_temp(name), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    cr_assert(fd >= 0, "cannot create %s", path_in_temp(name));
    cr_assert_eq(ftruncate(fd, (off_t)(records * CIFAR_RECORD_BYTES)), 0);
    close(fd);
}

static void write_bytes_at(const char *name, long long offset, const void *bytes, size_t n) {
    int fd = open(path_in_temp(name), O_WRONLY);
    cr_assert(fd >= 0, "cannot open %s", path_in_temp(name));
    cr_assert_eq(pwrite(fd, bytes, n, (off_t)offset), (ssize_t)n);
    close(fd);
}

static void write_zero_cifar_dir(void) {
    for (int f = 0; f < 6; f++) write_zero_batch(CIFAR_FILES[f], CIFAR_RECORDS);
}

static void write_patterned_cifar_dir(void) {
    uint8_t *batch = malloc((size_t)CIFAR_RECORDS * CIFAR_RECORD_BYTES);
    cr_assert_not_null(batch);
    for (int f = 0; f < 6; f++) {
        for (int r = 0; r < CIFAR_RECORDS; r++) {
            uint8_t *record = batch + (size_t)r * CIFAR_RECORD_BYTES;
            record[0] = cifar_label(f, r);
            for (int offset = 0; offset < CIFAR_IMAGE_BYTES; offset++)
                record[1 + offset] = cifar_pixel(f, r, offset);
        }
        FILE *file = fopen(path_in_temp(CIFAR_FILES[f]), "wb");
        cr_assert_not_null(file);
        cr_assert_eq(fwrite(batch, CIFAR_RECORD_BYTES, CIFAR_RECORDS, file), CIFAR_RECORDS);
        cr_assert_eq(fclose(file), 0);
    }
    free(batch);
}

TestSuite(cifar10, .init = make_temp_dir, .fini = remove_temp_dir);

Test(cifar10, reads_every_label_and_pixel_in_chw_order) {
    write_patterned_cifar_dir();
    dataset train, val;
    bneck_error err = {{0}};
    cr_assert_eq(cifar10_load(&train, &val, temp_dir, &err), 0, "%s", err.message);
    cr_assert_eq(train.count, 50000);
    cr_assert_eq(val.count, 10000);
    cr_assert_eq(train.channels, 3);
    cr_assert_eq(val.channels, 3);
    for (int f = 0; f < 6; f++) {
        const dataset *d = f < 5 ? &train : &val;
        int first = f < 5 ? f * CIFAR_RECORDS : 0;
        for (int r = 0; r < CIFAR_RECORDS; r++) {
            int n = first + r;
            cr_assert_eq(d->labels[n], cifar_label(f, r), "%s record %d", CIFAR_FILES[f], r);
            /* The file's R, G, B planes of 32x32 land as image n's [c][y][x]. */
            const uint8_t *image = d->pixels + (size_t)n * CIFAR_IMAGE_BYTES;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < DATASET_SIDE; y++)
                    for (int x = 0; x < DATASET_SIDE; x++) {
                        int file_offset = c * IMAGE_PIXELS + y * DATASET_SIDE + x;
                        if (image[c * IMAGE_PIXELS + y * DATASET_SIDE + x] !=
                            cifar_pixel(f, r, file_offset))
                            cr_assert_fail("%s record %d pixel [%d][%d][%d] differs",
                                           CIFAR_FILES[f], r, c, y, x);
                    }
        }
    }
    dataset_free(&train);
    dataset_free(&val);
}

Test(cifar10, reports_a_missing_file_by_path) {
    write_zero_cifar_dir();
    unlink(path_in_temp("data_batch_3.bin"));
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_3.bin"));
    assert_message_has(&err, "No such file");
    assert_message_has(&err, "fetch_cifar10.sh");
}

Test(cifar10, reports_a_missing_directory) {
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, path_in_temp("absent/"), &err), &train, &val);
    assert_message_has(&err, path_in_temp("absent/data_batch_1.bin"));
    assert_message_has(&err, "No such file");
}

Test(cifar10, reports_truncation_with_the_record_count) {
    write_zero_cifar_dir();
    write_zero_batch("data_batch_2.bin", 9999);
    int fd = open(path_in_temp("data_batch_2.bin"), O_WRONLY | O_APPEND);
    cr_assert(fd >= 0);
    uint8_t partial[100] = {0};
    cr_assert_eq(write(fd, partial, sizeof partial), (ssize_t)sizeof partial);
    close(fd);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_2.bin"));
    assert_message_has(&err, "truncated");
    assert_message_has(&err, "9999 complete records plus 100 stray bytes");
    assert_message_has(&err, "expected 30730000");
}

Test(cifar10, reports_an_empty_batch) {
    write_zero_cifar_dir();
    write_zero_batch("data_batch_1.bin", 0);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_1.bin"));
    assert_message_has(&err, "truncated: 0 bytes");
}

Test(cifar10, reports_an_oversized_test_batch) {
    write_zero_cifar_dir();
    write_zero_batch("test_batch.bin", 10001);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("test_batch.bin"));
    assert_message_has(&err, "too large: 30733073 bytes, expected 30730000");
    assert_message_has(&err, "10001 complete records");
}

Test(cifar10, reports_a_train_label_out_of_range_with_its_record) {
    write_zero_cifar_dir();
    uint8_t bad_label = 10;
    write_bytes_at("data_batch_4.bin", 4321LL * CIFAR_RECORD_BYTES, &bad_label, 1);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_4.bin"));
    assert_message_has(&err, "record 4321 ");
    assert_message_has(&err, "label 10 out of range, expected 0..9");
}

Test(cifar10, reports_a_test_label_out_of_range_with_its_record) {
    write_zero_cifar_dir();
    uint8_t bad_label = 255;
    write_bytes_at("test_batch.bin", 9999LL * CIFAR_RECORD_BYTES, &bad_label, 1);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("test_batch.bin"));
    assert_message_has(&err, "record 9999 ");
    assert_message_has(&err, "label 255 out of range");
}

Test(cifar10, reports_a_directory_in_place_of_a_batch) {
    write_zero_cifar_dir();
    unlink(path_in_temp("data_batch_5.bin"));
    cr_assert_eq(mkdir(path_in_temp("data_batch_5.bin"), 0755), 0);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_5.bin"));
    assert_message_has(&err, "not a regular file");
}

/* A named pipe would block open() until a writer came: it must be refused, not hang. */
Test(cifar10, reports_a_named_pipe_in_place_of_a_batch, .timeout = 20) {
    write_zero_cifar_dir();
    unlink(path_in_temp("test_batch.bin"));
    cr_assert_eq(mkfifo(path_in_temp("test_batch.bin"), 0644), 0);
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(cifar10_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("test_batch.bin"));
    assert_message_has(&err, "not a regular file");
}

/* ---- Fashion-MNIST files ------------------------------------------------------------- */

static uint8_t fmnist_pixel(int split, int image, int y, int x) {
    /* Never 0, so that the zero border cannot be mistaken for image content. */
    return (uint8_t)(1 + (image * 53 + y * 29 + x * 11 + split * 7) % 255);
}

static uint8_t fmnist_label(int split, int image) { return (uint8_t)((image * 7 + split) % 10); }

static void put_be32(uint8_t *out, uint32_t value) {
    out[0] = (uint8_t)(value >> 24);
    out[1] = (uint8_t)(value >> 16);
    out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
}

/* An IDX file: magic, then each dimension, then the bytes; gzip-compressed or not. */
static void write_idx(const char *name, int compressed, uint32_t magic, const uint32_t *dims,
                      int dim_count, const uint8_t *data, size_t data_bytes) {
    uint8_t header[16];
    put_be32(header, magic);
    for (int k = 0; k < dim_count; k++) put_be32(header + 4 + 4 * k, dims[k]);
    size_t header_bytes = 4 + 4 * (size_t)dim_count;
    if (compressed) {
        gzFile gz = gzopen(path_in_temp(name), "wb");
        cr_assert_not_null(gz);
        cr_assert_eq(gzwrite(gz, header, (unsigned)header_bytes), (int)header_bytes);
        if (data_bytes) cr_assert_eq(gzwrite(gz, data, (unsigned)data_bytes), (int)data_bytes);
        cr_assert_eq(gzclose(gz), Z_OK);
    } else {
        FILE *file = fopen(path_in_temp(name), "wb");
        cr_assert_not_null(file);
        cr_assert_eq(fwrite(header, 1, header_bytes, file), header_bytes);
        cr_assert_eq(fwrite(data, 1, data_bytes, file), data_bytes);
        cr_assert_eq(fclose(file), 0);
    }
}

static void write_fmnist_labels(const char *name, int split, uint32_t magic, uint32_t count,
                                int bad_label_at) {
    uint8_t labels[16];
    cr_assert(count <= sizeof labels);
    for (uint32_t i = 0; i < count; i++) labels[i] = fmnist_label(split, (int)i);
    if (bad_label_at >= 0) labels[bad_label_at] = 10;
    write_idx(name, 1, magic, &count, 1, labels, count);
}

/* header_count images declared, data_count images of data actually written. */
static void write_fmnist_images(const char *name, int split, uint32_t magic,
                                uint32_t header_count, uint32_t data_count, uint32_t rows,
                                uint32_t cols) {
    uint8_t pixels[16 * FMNIST_SIDE * FMNIST_SIDE];
    cr_assert(data_count <= 16);
    for (uint32_t i = 0; i < data_count; i++)
        for (int y = 0; y < FMNIST_SIDE; y++)
            for (int x = 0; x < FMNIST_SIDE; x++)
                pixels[(i * FMNIST_SIDE + y) * FMNIST_SIDE + x] = fmnist_pixel(split, (int)i, y, x);
    uint32_t dims[3] = {header_count, rows, cols};
    write_idx(name, 1, magic, dims, 3, pixels, (size_t)data_count * FMNIST_SIDE * FMNIST_SIDE);
}

static void write_valid_fmnist_dir(void) {
    write_fmnist_labels("train-labels-idx1-ubyte.gz", 0, 0x801, FMNIST_TRAIN_COUNT, -1);
    write_fmnist_images("train-images-idx3-ubyte.gz", 0, 0x803, FMNIST_TRAIN_COUNT,
                        FMNIST_TRAIN_COUNT, 28, 28);
    write_fmnist_labels("t10k-labels-idx1-ubyte.gz", 1, 0x801, FMNIST_VAL_COUNT, -1);
    write_fmnist_images("t10k-images-idx3-ubyte.gz", 1, 0x803, FMNIST_VAL_COUNT,
                        FMNIST_VAL_COUNT, 28, 28);
}

static void read_whole_file(const char *name, uint8_t **bytes, size_t *size) {
    FILE *file = fopen(path_in_temp(name), "rb");
    cr_assert_not_null(file);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    rewind(file);
    *bytes = malloc(*size);
    cr_assert_not_null(*bytes);
    cr_assert_eq(fread(*bytes, 1, *size, file), *size);
    fclose(file);
}

static void write_whole_file(const char *name, const uint8_t *bytes, size_t size) {
    FILE *file = fopen(path_in_temp(name), "wb");
    cr_assert_not_null(file);
    cr_assert_eq(fwrite(bytes, 1, size, file), size);
    cr_assert_eq(fclose(file), 0);
}

/* Loads the temp dir expecting failure; the message must name the file and the problem. */
static void assert_fmnist_fails(const char *file, const char *problem) {
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(fashion_mnist_load(&train, &val, temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp(file));
    assert_message_has(&err, problem);
}

TestSuite(fashion_mnist, .init = make_temp_dir, .fini = remove_temp_dir);

Test(fashion_mnist, reads_pixels_padded_by_two_and_labels) {
    write_valid_fmnist_dir();
    dataset train, val;
    bneck_error err = {{0}};
    cr_assert_eq(fashion_mnist_load(&train, &val, temp_dir, &err), 0, "%s", err.message);
    cr_assert_eq(train.count, FMNIST_TRAIN_COUNT);
    cr_assert_eq(val.count, FMNIST_VAL_COUNT);
    cr_assert_eq(train.channels, 1);
    cr_assert_eq(val.channels, 1);
    for (int split = 0; split < 2; split++) {
        const dataset *d = split == 0 ? &train : &val;
        for (int i = 0; i < d->count; i++) {
            cr_assert_eq(d->labels[i], fmnist_label(split, i));
            const uint8_t *image = d->pixels + (size_t)i * IMAGE_PIXELS;
            for (int y = 0; y < DATASET_SIDE; y++)
                for (int x = 0; x < DATASET_SIDE; x++) {
                    int inside = y >= 2 && y < 30 && x >= 2 && x < 30;
                    uint8_t expected = inside ? fmnist_pixel(split, i, y - 2, x - 2) : 0;
                    cr_assert_eq(image[y * DATASET_SIDE + x], expected,
                                 "split %d image %d pixel (%d, %d)", split, i, y, x);
                }
        }
    }
    dataset_free(&train);
    dataset_free(&val);
}

Test(fashion_mnist, reports_a_missing_file) {
    write_valid_fmnist_dir();
    unlink(path_in_temp("t10k-labels-idx1-ubyte.gz"));
    assert_fmnist_fails("t10k-labels-idx1-ubyte.gz", "No such file");
}

Test(fashion_mnist, names_an_uncompressed_copy_beside_a_missing_file) {
    write_valid_fmnist_dir();
    char packed[600];
    snprintf(packed, sizeof packed, "%s", path_in_temp("train-images-idx3-ubyte.gz"));
    cr_assert_eq(rename(packed, path_in_temp("train-images-idx3-ubyte")), 0); /* one buffer */
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "No such file");
    assert_fmnist_fails("train-images-idx3-ubyte.gz",
                        "is there, uncompressed: compress it (gzip -k ");
}

Test(fashion_mnist, reports_a_wrong_label_magic) {
    write_valid_fmnist_dir();
    write_fmnist_labels("train-labels-idx1-ubyte.gz", 0, 0x803, FMNIST_TRAIN_COUNT, -1);
    assert_fmnist_fails("train-labels-idx1-ubyte.gz",
                        "IDX magic number 0x00000803, expected 0x00000801");
}

Test(fashion_mnist, reports_a_wrong_image_magic) {
    write_valid_fmnist_dir();
    write_fmnist_images("t10k-images-idx3-ubyte.gz", 1, 0x801, FMNIST_VAL_COUNT,
                        FMNIST_VAL_COUNT, 28, 28);
    assert_fmnist_fails("t10k-images-idx3-ubyte.gz",
                        "IDX magic number 0x00000801, expected 0x00000803");
}

Test(fashion_mnist, reports_wrong_image_dimensions) {
    write_valid_fmnist_dir();
    write_fmnist_images("train-images-idx3-ubyte.gz", 0, 0x803, FMNIST_TRAIN_COUNT,
                        FMNIST_TRAIN_COUNT, 28, 27);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "images are 28x27 (rows x columns), "
                                                      "expected 28x28");
}

Test(fashion_mnist, reports_an_image_label_count_mismatch_naming_both_files) {
    write_valid_fmnist_dir();
    write_fmnist_images("train-images-idx3-ubyte.gz", 0, 0x803, 4, 4, 28, 28);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "image/label count mismatch");
    assert_fmnist_fails("train-labels-idx1-ubyte.gz", "holds 4 images but");
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "holds 5 labels");
}

Test(fashion_mnist, reports_a_zero_count) {
    write_valid_fmnist_dir();
    write_fmnist_labels("t10k-labels-idx1-ubyte.gz", 1, 0x801, 0, -1);
    assert_fmnist_fails("t10k-labels-idx1-ubyte.gz", "declares 0 labels, expected 1..");
}

Test(fashion_mnist, reports_a_label_out_of_range_with_its_index) {
    write_valid_fmnist_dir();
    write_fmnist_labels("train-labels-idx1-ubyte.gz", 0, 0x801, FMNIST_TRAIN_COUNT, 3);
    assert_fmnist_fails("train-labels-idx1-ubyte.gz",
                        "label index 3 (counting from 0): label 10 out of range, expected 0..9");
}

Test(fashion_mnist, reports_images_ending_before_the_declared_count) {
    write_valid_fmnist_dir();
    write_fmnist_images("train-images-idx3-ubyte.gz", 0, 0x803, FMNIST_TRAIN_COUNT, 4, 28, 28);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "IDX data ends early");
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "image 4 of 5");
}

Test(fashion_mnist, reports_data_beyond_the_declared_count) {
    write_valid_fmnist_dir();
    write_fmnist_labels("t10k-labels-idx1-ubyte.gz", 1, 0x801, 2, -1);
    write_fmnist_images("t10k-images-idx3-ubyte.gz", 1, 0x803, 2, 3, 28, 28);
    assert_fmnist_fails("t10k-images-idx3-ubyte.gz", "unexpected data after the 2 images");
}

Test(fashion_mnist, reports_a_gzip_stream_cut_in_the_middle) {
    write_valid_fmnist_dir();
    uint8_t *bytes;
    size_t size;
    read_whole_file("train-images-idx3-ubyte.gz", &bytes, &size);
    write_whole_file("train-images-idx3-ubyte.gz", bytes, size / 2);
    free(bytes);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "truncated gzip stream");
}

Test(fashion_mnist, reports_a_gzip_stream_missing_its_trailer) {
    write_valid_fmnist_dir();
    uint8_t *bytes;
    size_t size;
    read_whole_file("t10k-labels-idx1-ubyte.gz", &bytes, &size);
    write_whole_file("t10k-labels-idx1-ubyte.gz", bytes, size - 4);
    free(bytes);
    assert_fmnist_fails("t10k-labels-idx1-ubyte.gz", "truncated gzip stream");
}

Test(fashion_mnist, reports_a_crc_mismatch_as_corrupt) {
    write_valid_fmnist_dir();
    uint8_t *bytes;
    size_t size;
    read_whole_file("train-images-idx3-ubyte.gz", &bytes, &size);
    bytes[size - 8] ^= 0xff; /* first byte of the CRC-32 in the gzip trailer */
    write_whole_file("train-images-idx3-ubyte.gz", bytes, size);
    free(bytes);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "corrupt gzip data");
}

Test(fashion_mnist, reports_an_invalid_deflate_block_as_corrupt) {
    write_valid_fmnist_dir();
    uint8_t *bytes;
    size_t size;
    read_whole_file("train-labels-idx1-ubyte.gz", &bytes, &size);
    bytes[10] = 0xff; /* first deflate block header: block type 3 does not exist */
    write_whole_file("train-labels-idx1-ubyte.gz", bytes, size);
    free(bytes);
    assert_fmnist_fails("train-labels-idx1-ubyte.gz", "corrupt gzip data");
}

Test(fashion_mnist, reports_an_uncompressed_file_as_not_gzip) {
    write_valid_fmnist_dir();
    uint8_t labels[FMNIST_VAL_COUNT] = {1, 2, 3};
    uint32_t count = FMNIST_VAL_COUNT;
    write_idx("t10k-labels-idx1-ubyte.gz", 0, 0x801, &count, 1, labels, sizeof labels);
    assert_fmnist_fails("t10k-labels-idx1-ubyte.gz", "not gzip-compressed");
}

Test(fashion_mnist, reports_an_empty_file) {
    write_valid_fmnist_dir();
    write_whole_file("train-images-idx3-ubyte.gz", (const uint8_t *)"", 0);
    assert_fmnist_fails("train-images-idx3-ubyte.gz", "empty file");
}

Test(fashion_mnist, reads_the_real_dataset_when_installed) {
    struct stat info;
    if (stat(REAL_FMNIST_DIR, &info) != 0)
        cr_skip_test("%s is absent (Debian package dataset-fashion-mnist not installed)",
                     REAL_FMNIST_DIR);
    dataset train, val;
    bneck_error err = {{0}};
    cr_assert_eq(fashion_mnist_load(&train, &val, REAL_FMNIST_DIR, &err), 0, "%s", err.message);
    cr_assert_eq(train.count, 60000);
    cr_assert_eq(val.count, 10000);
    cr_assert_eq(train.channels, 1);
    int train_per_class[DATASET_CLASSES] = {0}, val_per_class[DATASET_CLASSES] = {0};
    for (int i = 0; i < train.count; i++) {
        cr_assert_lt(train.labels[i], DATASET_CLASSES);
        train_per_class[train.labels[i]]++;
    }
    for (int i = 0; i < val.count; i++) {
        cr_assert_lt(val.labels[i], DATASET_CLASSES);
        val_per_class[val.labels[i]]++;
    }
    for (int k = 0; k < DATASET_CLASSES; k++) {
        cr_assert_eq(train_per_class[k], 6000, "class %d", k);
        cr_assert_eq(val_per_class[k], 1000, "class %d", k);
    }
    /* The 2-pixel border is padding, and the images themselves are not blank. */
    long long border_sum = 0, total_sum = 0;
    for (int i = 0; i < train.count; i++) {
        const uint8_t *image = train.pixels + (size_t)i * IMAGE_PIXELS;
        for (int y = 0; y < DATASET_SIDE; y++)
            for (int x = 0; x < DATASET_SIDE; x++) {
                int inside = y >= 2 && y < 30 && x >= 2 && x < 30;
                if (!inside) border_sum += image[y * DATASET_SIDE + x];
                total_sum += image[y * DATASET_SIDE + x];
            }
    }
    cr_assert_eq(border_sum, 0);
    cr_assert_gt(total_sum, 60000LL * 50 * 255); /* a garment covers well over 50 pixels */
    dataset_free(&train);
    dataset_free(&val);
}

/* ---- dataset helpers ----------------------------------------------------------------- */

static dataset make_random_dataset(int count, int channels, uint64_t seed) {
    dataset d = {.count = count, .channels = channels};
    size_t bytes = (size_t)count * channels * IMAGE_PIXELS;
    d.pixels = bneck_malloc(bytes);
    d.labels = bneck_malloc((size_t)count);
    /* 1..255, never 0, so a pixel of the zero padding cannot match image content. */
    for (size_t p = 0; p < bytes; p++) d.pixels[p] = (uint8_t)(1 + rng_below(seed, p, 255));
    for (int i = 0; i < count; i++) d.labels[i] = (uint8_t)(i % DATASET_CLASSES);
    return d;
}

TestSuite(dataset, .init = make_temp_dir, .fini = remove_temp_dir);

Test(dataset, truncate_keeps_the_first_images_and_ignores_non_limits) {
    dataset d = make_random_dataset(10, 3, 7);
    dataset copy = make_random_dataset(10, 3, 7);
    int no_op_limits[] = {0, -1, 10, 11};
    for (size_t k = 0; k < sizeof no_op_limits / sizeof no_op_limits[0]; k++) {
        dataset_truncate(&d, no_op_limits[k]);
        cr_assert_eq(d.count, 10, "limit %d", no_op_limits[k]);
    }
    dataset_truncate(&d, 4);
    cr_assert_eq(d.count, 4);
    cr_assert_eq(d.channels, 3);
    cr_assert_arr_eq(d.pixels, copy.pixels, 4 * CIFAR_IMAGE_BYTES);
    cr_assert_arr_eq(d.labels, copy.labels, 4);
    dataset_free(&d);
    dataset_free(&copy);
}

Test(dataset, free_zeroes_and_can_be_repeated) {
    dataset d = make_random_dataset(2, 1, 1);
    dataset_free(&d);
    assert_empty(&d);
    dataset_free(&d);
    dataset_free(NULL);
}

Test(dataset, load_rejects_an_unknown_name_listing_the_accepted_ones) {
    dataset train, val;
    bneck_error err = {{0}};
    assert_load_fails(dataset_load(&train, &val, "cifar100", temp_dir, &err), &train, &val);
    assert_message_has(&err, "'cifar100'");
    assert_message_has(&err, "cifar10, fashion-mnist");
    assert_load_fails(dataset_load(&train, &val, NULL, temp_dir, &err), &train, &val);
    assert_message_has(&err, "cifar10, fashion-mnist");
}

Test(dataset, load_dispatches_by_name) {
    write_valid_fmnist_dir();
    dataset train, val;
    bneck_error err = {{0}};
    cr_assert_eq(dataset_load(&train, &val, "fashion-mnist", temp_dir, &err), 0, "%s",
                 err.message);
    cr_assert_eq(train.count, FMNIST_TRAIN_COUNT);
    cr_assert_eq(val.count, FMNIST_VAL_COUNT);
    dataset_free(&train);
    dataset_free(&val);
    assert_load_fails(dataset_load(&train, &val, "cifar10", temp_dir, &err), &train, &val);
    assert_message_has(&err, path_in_temp("data_batch_1.bin"));
}

/* ---- augmentation -------------------------------------------------------------------- */

static const float *output_image(const float *out, int batch, int channel, int position) {
    return out + ((size_t)channel * batch + position) * IMAGE_PIXELS;
}

/* The expected result of crop offset (dy, dx) then an optional horizontal flip:
 * result[y][x] = image[y + dy][(flip ? 31 - x : x) + dx], 0 outside the image. */
static int matches_transform(const float *out, int batch, int position, const dataset *d,
                             int index, int dy, int dx, int flip) {
    for (int c = 0; c < d->channels; c++) {
        const uint8_t *source = d->pixels + ((size_t)index * d->channels + c) * IMAGE_PIXELS;
        const float *result = output_image(out, batch, c, position);
        for (int y = 0; y < DATASET_SIDE; y++)
            for (int x = 0; x < DATASET_SIDE; x++) {
                int sy = y + dy, sx = (flip ? DATASET_SIDE - 1 - x : x) + dx;
                int inside = sy >= 0 && sy < DATASET_SIDE && sx >= 0 && sx < DATASET_SIDE;
                float expected = inside ? (float)source[sy * DATASET_SIDE + sx] / 255.0f : 0.0f;
                if (result[y * DATASET_SIDE + x] != expected) return 0;
            }
    }
    return 1;
}

typedef struct transform {
    int dy, dx, flip;
} transform;

/* Finds the one (dy, dx, flip) of the 81 * 2 possible that explains the output. */
static transform find_transform(const float *out, int batch, int position, const dataset *d,
                                int index) {
    transform found = {0, 0, 0};
    int matches = 0;
    for (int dy = -4; dy <= 4; dy++)
        for (int dx = -4; dx <= 4; dx++)
            for (int flip = 0; flip < 2; flip++)
                if (matches_transform(out, batch, position, d, index, dy, dx, flip)) {
                    found = (transform){dy, dx, flip};
                    matches++;
                }
    cr_assert_eq(matches, 1, "image %d at position %d: %d of the 162 crops/flips match",
                 index, position, matches);
    return found;
}

TestSuite(augment);

Test(augment, without_augmentation_copies_exactly_in_cnhw) {
    dataset d = make_random_dataset(8, 3, 11);
    const int indices[] = {3, 0, 7, 7, 1};
    const int batch = 5;
    float *out = malloc(sizeof(float) * 3 * batch * IMAGE_PIXELS);
    uint8_t labels[5];
    augment_batch(out, labels, &d, indices, batch, 99, 4, 0);
    for (int i = 0; i < batch; i++) {
        cr_assert_eq(labels[i], d.labels[indices[i]]);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < IMAGE_PIXELS; p++) {
                uint8_t pixel = d.pixels[((size_t)indices[i] * 3 + c) * IMAGE_PIXELS + p];
                cr_assert_eq(output_image(out, batch, c, i)[p], (float)pixel / 255.0f,
                             "position %d channel %d pixel %d", i, c, p);
            }
    }
    free(out);
    dataset_free(&d);
}

Test(augment, draws_depend_on_the_image_index_not_the_batch_position) {
    dataset d = make_random_dataset(20, 3, 12);
    const int first_indices[] = {4, 9, 13};
    const int second_indices[] = {13, 2, 4, 9, 0};
    float *first = malloc(sizeof(float) * 3 * 3 * IMAGE_PIXELS);
    float *second = malloc(sizeof(float) * 3 * 5 * IMAGE_PIXELS);
    augment_batch(first, NULL, &d, first_indices, 3, 42, 3, 1);
    augment_batch(second, NULL, &d, second_indices, 5, 42, 3, 1);
    const int pairs[][2] = {{0, 2}, {1, 3}, {2, 0}}; /* positions of 4, 9, 13 in each */
    for (int k = 0; k < 3; k++)
        for (int c = 0; c < 3; c++)
            cr_assert_arr_eq(output_image(first, 3, c, pairs[k][0]),
                             output_image(second, 5, c, pairs[k][1]),
                             sizeof(float) * IMAGE_PIXELS, "image %d channel %d",
                             first_indices[k], c);
    free(first);
    free(second);
    dataset_free(&d);
}

Test(augment, output_is_a_shifted_and_flipped_copy_with_every_offset_drawn) {
    enum { COUNT = 300 };
    dataset d = make_random_dataset(COUNT, 3, 13);
    int *indices = malloc(sizeof(int) * COUNT);
    for (int i = 0; i < COUNT; i++) indices[i] = COUNT - 1 - i;
    float *out = malloc(sizeof(float) * 3 * COUNT * IMAGE_PIXELS);
    uint8_t labels[COUNT];
    augment_batch(out, labels, &d, indices, COUNT, 2018, 0, 1);
    int dy_seen[9] = {0}, dx_seen[9] = {0}, flips = 0, shifted_and_flipped = 0;
    for (int i = 0; i < COUNT; i++) {
        cr_assert_eq(labels[i], d.labels[indices[i]]);
        transform t = find_transform(out, COUNT, i, &d, indices[i]);
        dy_seen[t.dy + 4]++;
        dx_seen[t.dx + 4]++;
        flips += t.flip;
        shifted_and_flipped += t.flip && t.dy != 0 && t.dx != 0;
    }
    for (int k = 0; k < 9; k++) {
        cr_assert_gt(dy_seen[k], 0, "vertical offset %d never drawn", k - 4);
        cr_assert_gt(dx_seen[k], 0, "horizontal offset %d never drawn", k - 4);
    }
    cr_assert(flips > 100 && flips < 200, "%d flips in %d images", flips, COUNT);
    cr_assert_gt(shifted_and_flipped, 0);
    free(indices);
    free(out);
    dataset_free(&d);
}

Test(augment, draws_change_with_epoch_and_seed) {
    enum { COUNT = 40 };
    dataset d = make_random_dataset(COUNT, 1, 14);
    int indices[COUNT];
    for (int i = 0; i < COUNT; i++) indices[i] = i;
    float *base = malloc(sizeof(float) * COUNT * IMAGE_PIXELS);
    float *other = malloc(sizeof(float) * COUNT * IMAGE_PIXELS);
    augment_batch(base, NULL, &d, indices, COUNT, 5, 1, 1);
    augment_batch(other, NULL, &d, indices, COUNT, 5, 1, 1);
    cr_assert_arr_eq(base, other, sizeof(float) * COUNT * IMAGE_PIXELS, "not deterministic");
    augment_batch(other, NULL, &d, indices, COUNT, 5, 2, 1);
    cr_assert_arr_neq(base, other, sizeof(float) * COUNT * IMAGE_PIXELS, "same for epoch 2");
    augment_batch(other, NULL, &d, indices, COUNT, 6, 1, 1);
    cr_assert_arr_neq(base, other, sizeof(float) * COUNT * IMAGE_PIXELS, "same for seed 6");
    free(base);
    free(other);
    dataset_free(&d);
}

/* ---- shuffling ----------------------------------------------------------------------- */

/* The Keras script's shifts: each output pixel is the image sampled bilinearly at
 * (y + shift_y / 256, x + shift_x / 256), the edge pixel beyond the edge; computed here in
 * doubles from augment_shift_of's draw. */
Test(augment, shift_is_bilinear_with_the_edges_extended) {
    enum { COUNT = 40 };
    dataset d = make_random_dataset(COUNT, 3, 15);
    int indices[COUNT];
    for (int i = 0; i < COUNT; i++) indices[i] = (i * 7) % COUNT;
    float *out = malloc(sizeof(float) * 3 * COUNT * IMAGE_PIXELS);
    augment_batch(out, NULL, &d, indices, COUNT, 21, 3, AUGMENT_SHIFT);
    int fractional = 0;
    for (int i = 0; i < COUNT; i++) {
        int shift_y, shift_x;
        augment_shift_of(21, 3, indices[i], &shift_y, &shift_x);
        fractional += shift_y % 256 != 0 || shift_x % 256 != 0;
        for (int c = 0; c < 3; c++) {
            const uint8_t *image = d.pixels + ((size_t)indices[i] * 3 + c) * IMAGE_PIXELS;
            for (int y = 0; y < DATASET_SIDE; y++)
                for (int x = 0; x < DATASET_SIDE; x++) {
                    double at_y = fmin(fmax(y + shift_y / 256.0, 0.0), DATASET_SIDE - 1.0);
                    double at_x = fmin(fmax(x + shift_x / 256.0, 0.0), DATASET_SIDE - 1.0);
                    int y0 = (int)at_y, x0 = (int)at_x;
                    int y1 = y0 + 1 < DATASET_SIDE ? y0 + 1 : y0, x1 = x0 + 1 < DATASET_SIDE ? x0 + 1 : x0;
                    double wy = at_y - y0, wx = at_x - x0;
                    double want = ((1 - wy) * ((1 - wx) * image[y0 * 32 + x0] + wx * image[y0 * 32 + x1]) +
                                   wy * ((1 - wx) * image[y1 * 32 + x0] + wx * image[y1 * 32 + x1])) / 255.0;
                    double got = output_image(out, COUNT, c, i)[y * DATASET_SIDE + x];
                    cr_assert(fabs(got - want) < 1e-6, "image %d channel %d (%d, %d), shift (%d, %d)/256: "
                              "%.9f, expected %.9f", indices[i], c, y, x, shift_y, shift_x, got, want);
                }
        }
    }
    cr_expect_gt(fractional, COUNT / 2, "sub-pixel shifts drawn");
    free(out);
    dataset_free(&d);
}

/* Up to 20 % of the side on each axis, both ways, a new draw each epoch. */
Test(augment, shifts_span_twenty_percent_each_way) {
    int lowest = 0, highest = 0, changed = 0;
    for (int index = 0; index < 2000; index++) {
        int y, x, y_next, x_next;
        augment_shift_of(8, 1, index, &y, &x);
        augment_shift_of(8, 2, index, &y_next, &x_next);
        cr_assert(abs(y) <= AUGMENT_SHIFT_MAX && abs(x) <= AUGMENT_SHIFT_MAX, "%d, %d", y, x);
        lowest = y < lowest ? y : x < lowest ? x : lowest;
        highest = y > highest ? y : x > highest ? x : highest;
        changed += y != y_next || x != x_next;
    }
    cr_expect_eq(AUGMENT_SHIFT_MAX, (int)(0.2 * 32 * 256));
    cr_expect_lt(lowest, -1600);
    cr_expect_gt(highest, 1600);
    cr_expect_gt(changed, 1990);
}

TestSuite(shuffle);

Test(shuffle, is_a_deterministic_permutation_that_changes_per_epoch_and_seed) {
    enum { COUNT = 1000 };
    static int first[COUNT], again[COUNT], next_epoch[COUNT], other_seed[COUNT];
    shuffle_indices(first, COUNT, 77, 3);
    shuffle_indices(again, COUNT, 77, 3);
    shuffle_indices(next_epoch, COUNT, 77, 4);
    shuffle_indices(other_seed, COUNT, 78, 3);
    int seen[COUNT] = {0}, in_place = 0;
    for (int i = 0; i < COUNT; i++) {
        cr_assert(first[i] >= 0 && first[i] < COUNT);
        seen[first[i]]++;
        in_place += first[i] == i;
    }
    for (int i = 0; i < COUNT; i++) cr_assert_eq(seen[i], 1, "%d appears %d times", i, seen[i]);
    cr_assert_lt(in_place, 10, "%d of %d left in place: not shuffled", in_place, COUNT);
    cr_assert_arr_eq(first, again, sizeof first);
    cr_assert_arr_neq(first, next_epoch, sizeof first);
    cr_assert_arr_neq(first, other_seed, sizeof first);
}

Test(shuffle, every_ordering_of_four_is_about_equally_likely) {
    /* Catches the classic Fisher-Yates slips (drawing from [0, i) or [0, n)), which bias
     * the permutation. 24 orderings, 24000 epochs: about 1000 each, sd about 31. */
    int counts[4 * 4 * 4 * 4] = {0};
    for (int epoch = 0; epoch < 24000; epoch++) {
        int order[4];
        shuffle_indices(order, 4, 123, epoch);
        counts[((order[0] * 4 + order[1]) * 4 + order[2]) * 4 + order[3]]++;
    }
    int orderings = 0;
    for (int k = 0; k < 256; k++) {
        if (!counts[k]) continue;
        orderings++;
        cr_assert(counts[k] > 850 && counts[k] < 1150, "ordering %d drawn %d times", k,
                  counts[k]);
    }
    cr_assert_eq(orderings, 24);
}

Test(shuffle, handles_tiny_counts) {
    int one = -1;
    shuffle_indices(&one, 1, 1, 1);
    cr_assert_eq(one, 0);
    shuffle_indices(NULL, 0, 1, 1);
}
