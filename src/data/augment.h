/* Batch assembly: bytes -> floats in [0, 1], CNHW, with optional augmentation.
 * Augmentation is a random crop of 32x32 from the image zero-padded by 4, then a random
 * horizontal flip; both are pure functions of (seed, epoch, image index), so a run
 * reproduces whatever rank or batch an image lands in. */
#ifndef BNECK_DATA_AUGMENT_H
#define BNECK_DATA_AUGMENT_H

#include <stdint.h>

#include "data/dataset.h"

/* Writes out[c][i][32][32] for i in [0, batch) from images indices[i] of d (CNHW, the
 * batch dimension inside the channel). When augment is zero the images are copied as is.
 * labels_out[i] receives the label of indices[i] (may be NULL). */
void augment_batch(float *out, uint8_t *labels_out, const dataset *d, const int *indices,
                   int batch, uint64_t seed, int epoch, int augment);

/* The permutation of [0, count) used for an epoch: a Fisher-Yates shuffle driven by the
 * counter-based RNG keyed on (seed, epoch). */
void shuffle_indices(int *indices, int count, uint64_t seed, int epoch);

#endif
