/* Batch assembly: bytes -> floats in [0, 1], CNHW, with optional augmentation, one of the
 * study's two (SPEC section 4):
 *  - crop + flip (the PyTorch script): a random crop of 32x32 from the image zero-padded
 *    by 4, then a random horizontal flip;
 *  - shift (the Keras script, ImageDataGenerator width/height_shift_range 0.2): a random
 *    shift of up to 20 % (6.4 pixels) on each axis, bilinear, the edge pixels extended
 *    (Keras's fill_mode "nearest"); no flip.
 * Every draw is a pure function of (seed, epoch, image index), so a run reproduces
 * whatever rank or batch an image lands in. */
#ifndef BNECK_DATA_AUGMENT_H
#define BNECK_DATA_AUGMENT_H

#include <stdint.h>

#include "data/dataset.h"

/* The values of [data] augment (config.augment); 0 and 1 are what "false" and "true"
 * always meant. */
typedef enum augment_kind {
    AUGMENT_NONE = 0,
    AUGMENT_CROP_FLIP = 1,
    AUGMENT_SHIFT = 2,
} augment_kind;

/* Shifts are drawn in 1/256 of a pixel, so that the bilinear weights are integers and
 * the GPU twin computes the same floats bit for bit: at most 0.2 * 32 * 256. */
enum { AUGMENT_SHIFT_UNITS = 256, AUGMENT_SHIFT_MAX = 1638 };

/* Writes out[c][i][32][32] for i in [0, batch) from images indices[i] of d (CNHW, the
 * batch dimension inside the channel), transformed as augment (an augment_kind) says.
 * labels_out[i] receives the label of indices[i] (may be NULL). */
void augment_batch(float *out, uint8_t *labels_out, const dataset *d, const int *indices,
                   int batch, uint64_t seed, int epoch, int augment);

/* The shift AUGMENT_SHIFT gives image `index` in `epoch`, in 1/256 pixel, each in
 * [-AUGMENT_SHIFT_MAX, AUGMENT_SHIFT_MAX]: output pixel (y, x) is the image at
 * (y + shift_y / 256, x + shift_x / 256). */
void augment_shift_of(uint64_t seed, int epoch, int index, int *shift_y, int *shift_x);

/* The permutation of [0, count) used for an epoch: a Fisher-Yates shuffle driven by the
 * counter-based RNG keyed on (seed, epoch). */
void shuffle_indices(int *indices, int count, uint64_t seed, int epoch);

#endif
