#include "data/augment.h"

#include "core/rng.h"

enum {
    IMAGE_PIXELS = DATASET_SIDE * DATASET_SIDE,
    CROP_PAD = 4,                      /* crop 32x32 out of the image zero-padded by 4 */
    CROP_OFFSETS = 2 * CROP_PAD + 1,   /* offsets -4..4 on each axis */
};

/* Tags that separate the shuffle's random stream from the augmentation's, so the same
 * (seed, epoch) never feeds both. */
static const uint64_t SHUFFLE_TAG = 0x73687566666c65ULL; /* "shuffle" */
static const uint64_t AUGMENT_TAG = 0x6175676d656e74ULL; /* "augment" */

/* Counters of the draws made from one image's key. */
enum { DRAW_CROP_Y = 0, DRAW_CROP_X = 1, DRAW_FLIP = 2, DRAW_SHIFT_Y = 3, DRAW_SHIFT_X = 4 };

static uint64_t epoch_key_of(uint64_t seed, int epoch) {
    return rng_key(rng_key(seed, (uint64_t)epoch), AUGMENT_TAG);
}

static void draw_shift(uint64_t epoch_key, int index, int *shift_y, int *shift_x) {
    const uint64_t image_key = rng_key(epoch_key, (uint64_t)index);
    *shift_y = (int)rng_below(image_key, DRAW_SHIFT_Y, 2 * AUGMENT_SHIFT_MAX + 1) - AUGMENT_SHIFT_MAX;
    *shift_x = (int)rng_below(image_key, DRAW_SHIFT_X, 2 * AUGMENT_SHIFT_MAX + 1) - AUGMENT_SHIFT_MAX;
}

void augment_shift_of(uint64_t seed, int epoch, int index, int *shift_y, int *shift_x) {
    draw_shift(epoch_key_of(seed, epoch), index, shift_y, shift_x);
}

/* Where output row or column `position` samples the image, in 1/256 pixel, clamped to the
 * image (Keras's "nearest" fill: past the edge, the edge pixel): the pixel before it and
 * the weight of the pixel after it, 0..255. */
static void shift_sample(int position, int shift, int *before, int *after, int *weight) {
    int at = position * AUGMENT_SHIFT_UNITS + shift;
    const int last = (DATASET_SIDE - 1) * AUGMENT_SHIFT_UNITS;
    at = at < 0 ? 0 : at > last ? last : at;
    *before = at / AUGMENT_SHIFT_UNITS;
    *weight = at % AUGMENT_SHIFT_UNITS;
    *after = *before + 1 < DATASET_SIDE ? *before + 1 : *before;
}

/* One plane shifted by (shift_y, shift_x): bilinear in integers (at most 255 * 256 * 256,
 * exact in a float), then one correctly rounded division, as the GPU twin does. */
static void shift_plane(float *target, const uint8_t *source, int shift_y, int shift_x) {
    const float scale = 255.0f * AUGMENT_SHIFT_UNITS * AUGMENT_SHIFT_UNITS;
    for (int y = 0; y < DATASET_SIDE; y++) {
        int y0, y1, wy;
        shift_sample(y, shift_y, &y0, &y1, &wy);
        for (int x = 0; x < DATASET_SIDE; x++) {
            int x0, x1, wx;
            shift_sample(x, shift_x, &x0, &x1, &wx);
            const int top = source[y0 * DATASET_SIDE + x0] * (AUGMENT_SHIFT_UNITS - wx) +
                            source[y0 * DATASET_SIDE + x1] * wx;
            const int bottom = source[y1 * DATASET_SIDE + x0] * (AUGMENT_SHIFT_UNITS - wx) +
                               source[y1 * DATASET_SIDE + x1] * wx;
            const int sum = top * (AUGMENT_SHIFT_UNITS - wy) + bottom * wy;
            target[y * DATASET_SIDE + x] = (float)sum / scale;
        }
    }
}

void augment_batch(float *out, uint8_t *labels_out, const dataset *d, const int *indices,
                   int batch, uint64_t seed, int epoch, int augment) {
    if (batch <= 0) return;
    for (int i = 0; i < batch; i++)
        if (indices[i] < 0 || indices[i] >= d->count)
            BNECK_FAIL("augment_batch: index %d at batch position %d is outside the dataset "
                       "(0..%d)", indices[i], i, d->count - 1);

    /* pixel / 255 correctly rounded (not pixel * (1/255)), so a GPU twin that divides gets
     * the same floats bit for bit. */
    float scaled[256];
    for (int value = 0; value < 256; value++) scaled[value] = (float)value / 255.0f;

    const int channels = d->channels;
    const size_t plane = (size_t)batch * IMAGE_PIXELS;
    const uint64_t epoch_key = epoch_key_of(seed, epoch);
    if (augment != AUGMENT_NONE && augment != AUGMENT_CROP_FLIP && augment != AUGMENT_SHIFT)
        BNECK_FAIL("augment_batch: unknown augmentation %d", augment);

#pragma omp parallel for schedule(static)
    for (int i = 0; i < batch; i++) {
        const int index = indices[i];
        if (labels_out) labels_out[i] = d->labels[index];
        /* Keyed on the dataset index, not the batch position: the same image gets the same
         * crop and flip whichever rank or batch it lands in. */
        const uint8_t *image = d->pixels + (size_t)index * (size_t)channels * IMAGE_PIXELS;
        if (augment == AUGMENT_SHIFT) {
            int shift_y, shift_x;
            draw_shift(epoch_key, index, &shift_y, &shift_x);
            for (int c = 0; c < channels; c++)
                shift_plane(out + (size_t)c * plane + (size_t)i * IMAGE_PIXELS,
                            image + (size_t)c * IMAGE_PIXELS, shift_y, shift_x);
            continue;
        }
        int shift_y = 0, shift_x = 0, flip = 0;
        if (augment == AUGMENT_CROP_FLIP) {
            const uint64_t image_key = rng_key(epoch_key, (uint64_t)index);
            shift_y = (int)rng_below(image_key, DRAW_CROP_Y, CROP_OFFSETS) - CROP_PAD;
            shift_x = (int)rng_below(image_key, DRAW_CROP_X, CROP_OFFSETS) - CROP_PAD;
            flip = (int)rng_below(image_key, DRAW_FLIP, 2);
        }
        for (int c = 0; c < channels; c++) {
            const uint8_t *source = image + (size_t)c * IMAGE_PIXELS;
            float *target = out + (size_t)c * plane + (size_t)i * IMAGE_PIXELS;
            /* target[y][x] = crop[y][flip ? 31 - x : x], crop[y][x] = source[y + sy][x + sx],
             * zero where that falls in the padding. */
            for (int y = 0; y < DATASET_SIDE; y++) {
                const int source_y = y + shift_y;
                float *row = target + y * DATASET_SIDE;
                if (source_y < 0 || source_y >= DATASET_SIDE) {
                    for (int x = 0; x < DATASET_SIDE; x++) row[x] = 0.0f;
                    continue;
                }
                const uint8_t *source_row = source + source_y * DATASET_SIDE;
                for (int x = 0; x < DATASET_SIDE; x++) {
                    const int source_x = (flip ? DATASET_SIDE - 1 - x : x) + shift_x;
                    row[x] = (source_x < 0 || source_x >= DATASET_SIDE)
                                 ? 0.0f
                                 : scaled[source_row[source_x]];
                }
            }
        }
    }
}

void shuffle_indices(int *indices, int count, uint64_t seed, int epoch) {
    if (count <= 0) return;
    const uint64_t key = rng_key(rng_key(seed, (uint64_t)epoch), SHUFFLE_TAG);
    for (int i = 0; i < count; i++) indices[i] = i;
    /* Fisher-Yates from the top: position i swaps with a uniform j in [0, i], counter i. */
    for (int i = count - 1; i > 0; i--) {
        const int j = (int)rng_below(key, (uint64_t)i, (uint32_t)i + 1);
        const int held = indices[i];
        indices[i] = indices[j];
        indices[j] = held;
    }
}
