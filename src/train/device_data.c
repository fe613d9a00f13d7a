#include "train/device_data.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#ifdef BNECK_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_data.h"

struct device_data {
    const dataset *train_host, *val_host;
    cuda_dataset *train, *val;
};

static void assemble_on_gpu(void *context, const dataset *d, float *input, uint8_t *labels,
                            const int *indices, int count, uint64_t seed, int epoch, int augment) {
    device_data *data = context;
    cuda_dataset *source = d == data->train_host ? data->train : d == data->val_host ? data->val : NULL;
    if (!source) BNECK_FAIL("device_data: batch from a dataset that was not uploaded");
    cuda_dataset_batch(source, input, labels, indices, count, seed, epoch, augment);
}
#else
struct device_data {
    int unused;
};
#endif

device_data *device_data_attach(trainer *t, char *message, size_t capacity) {
    if (message && capacity) message[0] = '\0';
#ifdef BNECK_HAVE_CUDA
    if (t->net.backend != &cuda_backend) return NULL;
    device_data *data = bneck_calloc(1, sizeof *data);
    data->train_host = t->train_set;
    data->val_host = t->val_set;
    data->train = cuda_dataset_upload(t->train_set, message, capacity);
    data->val = data->train ? cuda_dataset_upload(t->val_set, message, capacity) : NULL;
    if (!data->train || !data->val) {
        device_data_release(data);
        return NULL;
    }
    t->device_batches = (batch_source){.context = data, .assemble = assemble_on_gpu};
    return data;
#else
    (void)t;
    return NULL;
#endif
}

void device_data_release(device_data *data) {
    if (!data) return;
#ifdef BNECK_HAVE_CUDA
    if (data->train) cuda_dataset_free(data->train);
    if (data->val) cuda_dataset_free(data->val);
#endif
    free(data);
}
