/* Datasets kept in the backend's own memory (the GPU's, for the CUDA backend), so that an
 * epoch copies nothing from the host but the shuffled indices. */
#ifndef BNECK_TRAIN_DEVICE_DATA_H
#define BNECK_TRAIN_DEVICE_DATA_H

#include <stddef.h>

#include "train/train.h"

typedef struct device_data device_data;

/* Uploads the trainer's training and validation sets when its backend keeps data itself
 * and points the trainer's batches at them. Returns NULL (and leaves host batches in use)
 * for the CPU backend, or with message set when the upload failed. */
device_data *device_data_attach(trainer *t, char *message, size_t capacity);
void device_data_release(device_data *data);

#endif
