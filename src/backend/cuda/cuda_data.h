/* GPU-resident datasets: a dataset's bytes uploaded once, and batches assembled on the GPU
 * straight into the network's input tensor, with the same crop (zero padding 4) and flip
 * as augment_batch (data/augment.c), bit for bit: the same counter-based random draws
 * (core/rng.c, ported to device code), keyed on (seed, epoch, dataset index), and the
 * same scaling (pixel / 255.0f, correctly rounded). The shuffle stays on the host
 * (shuffle_indices); a step uploads only its image indices (4 bytes per image).
 *
 * Use, after cuda_backend_init:
 *
 *     cuda_dataset *gpu_train = cuda_dataset_upload(&train_set, message, sizeof message);
 *     // per step, instead of augment_batch + upload (input and labels are device memory,
 *     // e.g. network_tensor(net, net->model.input, count) and net->labels):
 *     cuda_dataset_batch(gpu_train, input, labels, t->order + first, count, seed, epoch, 1);
 *     ...
 *     cuda_dataset_free(gpu_train);
 *
 * Everything is queued on the backend's stream: the host does not wait (except, rarely,
 * for an index copy two batches old). Plain C header. */
#ifndef BNECK_BACKEND_CUDA_DATA_H
#define BNECK_BACKEND_CUDA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

typedef struct cuda_dataset cuda_dataset;

/* Copies d's pixels and labels to device memory (the caller may free d afterwards).
 * NULL with the runtime's message when device memory is short. */
cuda_dataset *cuda_dataset_upload(const dataset *d, char *message, size_t capacity);
void cuda_dataset_free(cuda_dataset *g);

int cuda_dataset_count(const cuda_dataset *g);
int cuda_dataset_channels(const cuda_dataset *g);
size_t cuda_dataset_device_bytes(const cuda_dataset *g); /* pixels + labels */

/* The GPU twin of augment_batch: out[c][i][32][32] (device, CNHW, batch images) from
 * images indices[i], cropped and flipped when augment is non-zero; labels_out[i] (device
 * bytes, may be NULL) their labels. indices is host memory, checked like augment_batch
 * does (a bad index fails with the same message) and copied asynchronously. */
void cuda_dataset_batch(cuda_dataset *g, float *out, uint8_t *labels_out, const int *indices,
                        int batch, uint64_t seed, int epoch, int augment);

/* The same from indices already in device memory (batch ints), e.g. a whole epoch's
 * permutation uploaded once. They are not checked on the host: an index outside the
 * dataset gives NaN pixels and label 255, which the loss reports as a bad label. */
void cuda_dataset_batch_device(const cuda_dataset *g, float *out, uint8_t *labels_out,
                               const int *device_indices, int batch, uint64_t seed, int epoch,
                               int augment);

#endif
