/* Direct k x k convolution over CNHW tensors (cpu_conv_direct.h).
 *
 * Each image's input channels are copied into a frame with k/2 zero rows and columns
 * around every plane, so a tap is an unaligned vector load at a fixed offset and needs no
 * bounds test. The image's output pixels, taken a vector at a time in row order, go in
 * tiles of `vectors` vectors, computed for `outputs` output channels at once: the tile's
 * outputs x vectors sums stay in registers across all input channels and taps, each
 * input vector loaded is used `outputs` times and each broadcast weight `vectors` times.
 * The weights are packed as [in][ky][kx][out], padded to a whole number of tiles with
 * zeros, so a tap's weights for the tile's outputs are adjacent.
 *
 * The data gradient is the same convolution of dy with the weights transposed (in and out
 * swapped) and turned by 180 degrees, which for stride 1 and "same" padding gives exactly
 * dx; it starts from dx's values when it adds into them.
 *
 * The weight gradient sums, over every image and pixel, dy of an output channel times
 * the framed input at one tap: a matrix product whose rows are output channels and whose
 * columns are (input channel, ky, kx). Tiles of outputs x columns keep their sums as
 * vectors in registers over one image's pixels (each dy vector loaded is used `columns`
 * times, each input vector `outputs` times), then add them into the thread's vector
 * accumulators; lanes and threads are summed once at the end, in a fixed order. */
#include "backend/cpu/cpu_conv_direct.h"

#include "core/error.h"

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define VECTOR_FLOATS 16
#elif defined(__AVX__)
#define VECTOR_FLOATS 8
#else
#define VECTOR_FLOATS 4
#endif

typedef float vector __attribute__((vector_size(VECTOR_FLOATS * sizeof(float))));

static inline vector vector_load(const float *p) {
    vector v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}

static inline void vector_store(float *p, vector v) { memcpy(p, &v, sizeof v); }

/* sums + in * weight in one fused instruction where there is one: the build's ISO C mode
 * (-std=c11) keeps GCC from contracting `sums += in * weight` by itself, and the separate
 * multiply and add made the kernel 1.6x slower. */
static inline vector vector_multiply_add(vector sums, vector in, float weight) {
#if VECTOR_FLOATS == 16
    return _mm512_fmadd_ps(in, _mm512_set1_ps(weight), sums);
#elif VECTOR_FLOATS == 8 && defined(__FMA__)
    return _mm256_fmadd_ps(in, _mm256_set1_ps(weight), sums);
#else
    return sums + in * weight;
#endif
}

/* sums + a * b, fused where there is an instruction for it (as above). */
static inline vector vector_fma(vector sums, vector a, vector b) {
#if VECTOR_FLOATS == 16
    return _mm512_fmadd_ps(a, b, sums);
#elif VECTOR_FLOATS == 8 && defined(__FMA__)
    return _mm256_fmadd_ps(a, b, sums);
#else
    return sums + a * b;
#endif
}

/* Register tiles: output channels x pixel vectors. With AVX-512's 32 vector registers,
 * 24 sums leave room for the loaded inputs and the broadcast weight; with 16 registers
 * (AVX2 and below), 8 to 12 sums. The one that pads the output channels least is used
 * (the first on a tie: fewer, larger tiles). */
typedef struct tile_shape {
    int outputs, vectors;
} tile_shape;

enum { TILE_SHAPES = 3, MAX_TILE_OUTPUTS = 6, MAX_TILE_VECTORS = 8 };
#if VECTOR_FLOATS == 16
static const tile_shape tile_shapes[TILE_SHAPES] = {{6, 4}, {4, 4}, {3, 8}};
#else
static const tile_shape tile_shapes[TILE_SHAPES] = {{6, 2}, {4, 2}, {3, 4}};
#endif

/* count rounded up to a whole number of tiles of `per_tile` (output channels or columns) */
static int round_up(int count, int per_tile) {
    return (count + per_tile - 1) / per_tile * per_tile;
}

static tile_shape tile_for(int out_channels) {
    tile_shape best = tile_shapes[0];
    for (int i = 1; i < TILE_SHAPES; i++)
        if (round_up(out_channels, tile_shapes[i].outputs) <
            round_up(out_channels, best.outputs))
            best = tile_shapes[i];
    return best;
}

int cpu_conv_direct_vector_floats(void) { return VECTOR_FLOATS; }

cpu_conv_direct_isa cpu_conv_direct_built_for(void) {
#if VECTOR_FLOATS == 16
    return CPU_CONV_DIRECT_AVX512;
#elif VECTOR_FLOATS == 8 && defined(__FMA__)
    return CPU_CONV_DIRECT_AVX2;
#else
    return CPU_CONV_DIRECT_OTHER;
#endif
}

int cpu_conv_direct_fits(int height, int width, int out_channels) {
    if (height < 1 || width < 1 || out_channels < 1 || width % VECTOR_FLOATS != 0) return 0;
    const long vectors = (long)height * (width / VECTOR_FLOATS);
    return vectors % tile_for(out_channels).vectors == 0;
}

/* One convolution as the kernel sees it: `in` has in_channels planes, `out` out_channels. */
typedef struct direct_conv {
    float *out;
    const float *in;
    const float *packed_weights; /* [in][ky][kx][padded_out] */
    const float *bias;           /* padded_out floats, or NULL */
    grad_store store;
    int batch, height, width, in_channels, out_channels, padded_out, kernel;
    tile_shape tile;
} direct_conv;

/* The sums of one tile: output channels first_out.. (those past out_channels are padding,
 * computed with zero weights and not stored) at the pixels out_at[0..vectors), whose
 * inputs start at frame + in_at[v]. With `outputs` and `vectors` constants (see the
 * callers below) the loops unroll and `sums` lives in registers. */
static inline __attribute__((always_inline)) void tile_sums(const direct_conv *c,
                                                            const float *frame,
                                                            const size_t *in_at,
                                                            const size_t *out_at, int first_out,
                                                            const int outputs,
                                                            const int vectors) {
    const size_t plane = (size_t)c->batch * (size_t)c->height * (size_t)c->width;
    const int frame_width = c->width + c->kernel - 1;
    const size_t frame_plane = (size_t)(c->height + c->kernel - 1) * (size_t)frame_width;
    const int valid = c->out_channels - first_out < outputs ? c->out_channels - first_out
                                                            : outputs;
    vector sums[MAX_TILE_OUTPUTS][MAX_TILE_VECTORS];
    for (int o = 0; o < outputs; o++)
        for (int v = 0; v < vectors; v++) {
            sums[o][v] = (vector){0} + (c->bias ? c->bias[first_out + o] : 0.0f);
            if (c->store == GRAD_ACCUMULATE && o < valid)
                sums[o][v] += vector_load(c->out + (size_t)(first_out + o) * plane + out_at[v]);
        }
    const float *w = c->packed_weights + first_out;
    for (int i = 0; i < c->in_channels; i++)
        for (int ky = 0; ky < c->kernel; ky++) {
            const float *row = frame + (size_t)i * frame_plane + (size_t)ky * frame_width;
            for (int kx = 0; kx < c->kernel; kx++, w += c->padded_out) {
                vector in[MAX_TILE_VECTORS];
                for (int v = 0; v < vectors; v++) in[v] = vector_load(row + in_at[v] + kx);
                for (int o = 0; o < outputs; o++) {
                    const float weight = w[o];
                    for (int v = 0; v < vectors; v++)
                        sums[o][v] = vector_multiply_add(sums[o][v], in[v], weight);
                }
            }
        }
    for (int o = 0; o < valid; o++)
        for (int v = 0; v < vectors; v++)
            vector_store(c->out + (size_t)(first_out + o) * plane + out_at[v], sums[o][v]);
}

/* tile_sums for each shape of tile_shapes, whose outputs and vectors are constants here. */
static void tile_0(const direct_conv *c, const float *frame, const size_t *in_at,
                   const size_t *out_at, int first_out) {
    tile_sums(c, frame, in_at, out_at, first_out, tile_shapes[0].outputs, tile_shapes[0].vectors);
}
static void tile_1(const direct_conv *c, const float *frame, const size_t *in_at,
                   const size_t *out_at, int first_out) {
    tile_sums(c, frame, in_at, out_at, first_out, tile_shapes[1].outputs, tile_shapes[1].vectors);
}
static void tile_2(const direct_conv *c, const float *frame, const size_t *in_at,
                   const size_t *out_at, int first_out) {
    tile_sums(c, frame, in_at, out_at, first_out, tile_shapes[2].outputs, tile_shapes[2].vectors);
}

/* Image n's input planes into the frame's interior (its border stays zero). */
static void frame_image(float *frame, const direct_conv *c, int n) {
    const int pad = c->kernel / 2, frame_width = c->width + c->kernel - 1;
    const size_t area = (size_t)c->height * (size_t)c->width;
    const size_t frame_plane = (size_t)(c->height + c->kernel - 1) * (size_t)frame_width;
    for (int i = 0; i < c->in_channels; i++) {
        const float *src = c->in + ((size_t)i * (size_t)c->batch + (size_t)n) * area;
        float *dst = frame + (size_t)i * frame_plane + (size_t)pad * frame_width + pad;
        for (int r = 0; r < c->height; r++)
            memcpy(dst + (size_t)r * frame_width, src + (size_t)r * c->width,
                   (size_t)c->width * sizeof *src);
    }
}

static void direct_conv_run(const direct_conv *c) {
    void (*tile)(const direct_conv *, const float *, const size_t *, const size_t *, int) =
        c->tile.outputs == tile_shapes[0].outputs   ? tile_0
        : c->tile.outputs == tile_shapes[1].outputs ? tile_1
                                                    : tile_2;
    const int frame_width = c->width + c->kernel - 1;
    const size_t frame_floats =
        (size_t)c->in_channels * (size_t)(c->height + c->kernel - 1) * (size_t)frame_width;
    const int row_vectors = c->width / VECTOR_FLOATS;
    const int image_vectors = c->height * row_vectors;
    const size_t area = (size_t)c->height * (size_t)c->width;
#pragma omp parallel
    {
        float *frame = bneck_alloc_aligned(frame_floats * sizeof *frame); /* zeroed */
#pragma omp for schedule(static)
        for (int n = 0; n < c->batch; n++) {
            frame_image(frame, c, n);
            for (int first = 0; first < image_vectors; first += c->tile.vectors) {
                size_t in_at[MAX_TILE_VECTORS], out_at[MAX_TILE_VECTORS];
                for (int v = 0; v < c->tile.vectors; v++) {
                    const int r = (first + v) / row_vectors;
                    const int col = (first + v) % row_vectors * VECTOR_FLOATS;
                    in_at[v] = (size_t)r * frame_width + col;
                    out_at[v] = (size_t)n * area + (size_t)r * c->width + col;
                }
                for (int first_out = 0; first_out < c->out_channels; first_out += c->tile.outputs)
                    tile(c, frame, in_at, out_at, first_out);
            }
        }
        free(frame);
    }
}

/* The layer's convolution (in_channels -> out_channels, weight [out][in][ky][kx]) or, for
 * the data gradient, its transpose from dy to dx. The callers (cpu_conv.c) have checked
 * the dimensions and chosen the kernel only where the maps fit it. */
static void convolve(float *out, grad_store store, const float *in, const float *weight,
                     const float *bias, int batch, int height, int width, int in_channels,
                     int out_channels, int kernel, int data_gradient) {
    const int kernel_in = data_gradient ? out_channels : in_channels;
    const int kernel_out = data_gradient ? in_channels : out_channels;
    if (!cpu_conv_direct_fits(height, width, kernel_out))
        BNECK_FAIL("cpu_conv_direct: %dx%d maps with %d outputs do not fit its tiles", height,
                   width, kernel_out);
    const tile_shape tile = tile_for(kernel_out);
    const int padded_out = round_up(kernel_out, tile.outputs);
    const int taps = kernel * kernel;
    float *packed = bneck_alloc_aligned((size_t)kernel_in * taps * padded_out * sizeof *packed);
    for (int o = 0; o < out_channels; o++)
        for (int i = 0; i < in_channels; i++)
            for (int t = 0; t < taps; t++) {
                const float w = weight[((size_t)o * in_channels + i) * taps + t];
                if (data_gradient) /* in and out swapped, taps turned around */
                    packed[((size_t)o * taps + (taps - 1 - t)) * padded_out + i] = w;
                else
                    packed[((size_t)i * taps + t) * padded_out + o] = w;
            }
    float *padded_bias = NULL;
    if (bias) {
        padded_bias = bneck_alloc_aligned((size_t)padded_out * sizeof *padded_bias);
        memcpy(padded_bias, bias, (size_t)kernel_out * sizeof *bias);
    }
    const direct_conv c = {.out = out,
                           .in = in,
                           .packed_weights = packed,
                           .bias = padded_bias,
                           .store = store,
                           .batch = batch,
                           .height = height,
                           .width = width,
                           .in_channels = kernel_in,
                           .out_channels = kernel_out,
                           .padded_out = padded_out,
                           .kernel = kernel,
                           .tile = tile};
    direct_conv_run(&c);
    free(packed);
    free(padded_bias);
}

void cpu_conv_direct_forward(float *y, const float *x, const float *weight, const float *bias,
                             int batch, int height, int width, int in_channels, int out_channels,
                             int kernel) {
    convolve(y, GRAD_OVERWRITE, x, weight, bias, batch, height, width, in_channels, out_channels,
             kernel, 0);
}

void cpu_conv_direct_backward_data(float *dx, grad_store dx_store, const float *dy,
                                   const float *weight, int batch, int height, int width,
                                   int in_channels, int out_channels, int kernel) {
    convolve(dx, dx_store, dy, weight, NULL, batch, height, width, in_channels, out_channels,
             kernel, 1);
}

/* ---- weight gradient ---- */

/* Tiles of output channels x columns (input channel, ky, kx), 24 vector sums each with
 * AVX-512 (12 with 16 registers), plus the tile's dy vectors and one input vector in
 * registers. The one that pads the rows and columns least is used. */
typedef struct weight_tile_shape {
    int outputs, columns;
} weight_tile_shape;

enum { WEIGHT_TILE_SHAPES = 3, MAX_WEIGHT_TILE_COLUMNS = 8 };
#if VECTOR_FLOATS == 16
static const weight_tile_shape weight_tile_shapes[WEIGHT_TILE_SHAPES] = {{6, 4}, {4, 6}, {3, 8}};
#else
static const weight_tile_shape weight_tile_shapes[WEIGHT_TILE_SHAPES] = {{3, 4}, {2, 6}, {4, 2}};
#endif

static weight_tile_shape weight_tile_for(int out_channels, int columns) {
    weight_tile_shape best = weight_tile_shapes[0];
    long best_padded = -1;
    for (int i = 0; i < WEIGHT_TILE_SHAPES; i++) {
        const weight_tile_shape s = weight_tile_shapes[i];
        const long padded = (long)round_up(out_channels, s.outputs) *
                            round_up(columns, s.columns);
        if (best_padded < 0 || padded < best_padded) best = s, best_padded = padded;
    }
    return best;
}

int cpu_conv_direct_weights_fit(int height, int width) {
    return height >= 1 && width >= 1 && width % VECTOR_FLOATS == 0;
}

/* One image's sums for a tile: rows dy_at[0..outputs) (dy planes at this image), columns
 * at frame + column_at[0..columns), added into the tile's vector accumulators. With
 * `outputs`, `columns` and `row_vectors` (vectors per row) constants the loops unroll and
 * the sums live in registers; a row loop of unknown length cost a fifth of the speed. */
static inline __attribute__((always_inline)) void weight_tile_sums(
    vector *accumulators, const float *const *dy_at, const float *frame, const size_t *column_at,
    int height, int frame_width, const int row_vectors, const int outputs, const int columns) {
    vector sums[MAX_TILE_OUTPUTS][MAX_WEIGHT_TILE_COLUMNS];
    for (int o = 0; o < outputs; o++)
        for (int c = 0; c < columns; c++) sums[o][c] = (vector){0};
    const int width = row_vectors * VECTOR_FLOATS;
    for (int r = 0; r < height; r++)
        for (int col = 0; col < width; col += VECTOR_FLOATS) {
            const size_t pixel = (size_t)r * width + col, framed = (size_t)r * frame_width + col;
            vector d[MAX_TILE_OUTPUTS];
            for (int o = 0; o < outputs; o++) d[o] = vector_load(dy_at[o] + pixel);
            for (int c = 0; c < columns; c++) {
                const vector in = vector_load(frame + column_at[c] + framed);
                for (int o = 0; o < outputs; o++) sums[o][c] = vector_fma(sums[o][c], d[o], in);
            }
        }
    for (int o = 0; o < outputs; o++)
        for (int c = 0; c < columns; c++) accumulators[o * columns + c] += sums[o][c];
}

/* weight_tile_sums for the tile shape, with the row length a constant for maps 32 and 16
 * floats wide (the study's 32x32 and 16x16 stages). */
static void weight_tile(vector *accumulators, const float *const *dy_at, const float *frame,
                        const size_t *column_at, int height, int width, int frame_width,
                        weight_tile_shape tile) {
    const int row_vectors = width / VECTOR_FLOATS;
    enum { WIDE = 32 / VECTOR_FLOATS, NARROW = 16 / VECTOR_FLOATS };
#define WEIGHT_TILE_FOR_ROWS(outputs, columns)                                                     \
    (row_vectors == WIDE     ? weight_tile_sums(accumulators, dy_at, frame, column_at, height,  \
                                                frame_width, WIDE, outputs, columns)            \
     : row_vectors == NARROW ? weight_tile_sums(accumulators, dy_at, frame, column_at, height,  \
                                                frame_width, NARROW, outputs, columns)          \
                             : weight_tile_sums(accumulators, dy_at, frame, column_at, height,  \
                                                frame_width, row_vectors, outputs, columns))
    if (tile.outputs == weight_tile_shapes[0].outputs)
        WEIGHT_TILE_FOR_ROWS(weight_tile_shapes[0].outputs, weight_tile_shapes[0].columns);
    else if (tile.outputs == weight_tile_shapes[1].outputs)
        WEIGHT_TILE_FOR_ROWS(weight_tile_shapes[1].outputs, weight_tile_shapes[1].columns);
    else
        WEIGHT_TILE_FOR_ROWS(weight_tile_shapes[2].outputs, weight_tile_shapes[2].columns);
#undef WEIGHT_TILE_FOR_ROWS
}

void cpu_conv_direct_backward_weights(float *dweight, const float *dy, const float *x, int batch,
                                      int height, int width, int in_channels, int out_channels,
                                      int kernel) {
    if (!cpu_conv_direct_weights_fit(height, width))
        BNECK_FAIL("cpu_conv_direct: %dx%d maps do not fit its vectors", height, width);
    const int taps = kernel * kernel, columns = in_channels * taps;
    const weight_tile_shape tile = weight_tile_for(out_channels, columns);
    const int row_tiles = round_up(out_channels, tile.outputs) / tile.outputs;
    const int column_tiles = round_up(columns, tile.columns) / tile.columns;
    const size_t tile_vectors = (size_t)tile.outputs * tile.columns;
    const size_t accumulator_vectors = (size_t)row_tiles * column_tiles * tile_vectors;
    const size_t weights = (size_t)out_channels * columns;
    const int frame_width = width + kernel - 1;
    const size_t frame_plane = (size_t)(height + kernel - 1) * frame_width;
    const size_t area = (size_t)height * width;
    /* each column's offset in the frame; padding columns read column 0 and are dropped */
    size_t *column_at = bneck_malloc((size_t)column_tiles * tile.columns * sizeof *column_at);
    for (int c = 0; c < column_tiles * tile.columns; c++) {
        const int i = c < columns ? c / taps : 0, t = c < columns ? c % taps : 0;
        column_at[c] = (size_t)i * frame_plane + (size_t)(t / kernel) * frame_width + t % kernel;
    }
    const direct_conv framing = {.in = x,
                                 .batch = batch,
                                 .height = height,
                                 .width = width,
                                 .in_channels = in_channels,
                                 .kernel = kernel};
    const int threads = omp_get_max_threads();
    float *partial = bneck_alloc_aligned((size_t)threads * weights * sizeof *partial); /* zeroed */
#pragma omp parallel num_threads(threads)
    {
        float *frame = bneck_alloc_aligned((size_t)in_channels * frame_plane * sizeof *frame);
        vector *accumulators = bneck_alloc_aligned(accumulator_vectors * sizeof *accumulators);
#pragma omp for schedule(static)
        for (int n = 0; n < batch; n++) {
            frame_image(frame, &framing, n);
            for (int rt = 0; rt < row_tiles; rt++) {
                const float *dy_at[MAX_TILE_OUTPUTS];
                for (int o = 0; o < tile.outputs; o++) {
                    int out = rt * tile.outputs + o;
                    if (out >= out_channels) out = out_channels - 1; /* padding: dropped */
                    dy_at[o] = dy + ((size_t)out * batch + n) * area;
                }
                for (int ct = 0; ct < column_tiles; ct++)
                    weight_tile(accumulators + ((size_t)rt * column_tiles + ct) * tile_vectors,
                                dy_at, frame, column_at + (size_t)ct * tile.columns, height,
                                width, frame_width, tile);
            }
        }
        /* this thread's sums, lanes added in order; threads with no images give zeros */
        float *mine = partial + (size_t)omp_get_thread_num() * weights;
        for (int o = 0; o < out_channels; o++)
            for (int c = 0; c < columns; c++) {
                const size_t tile_at =
                    ((size_t)(o / tile.outputs) * column_tiles + c / tile.columns) * tile_vectors;
                const vector v = accumulators[tile_at + (size_t)(o % tile.outputs) * tile.columns +
                                              c % tile.columns];
                float sum = 0.0f;
                for (int lane = 0; lane < VECTOR_FLOATS; lane++) sum += v[lane];
                mine[(size_t)o * columns + c] = sum;
            }
        free(frame);
        free(accumulators);
    }
    for (int t = 0; t < threads; t++)
        for (size_t w = 0; w < weights; w++) dweight[w] += partial[(size_t)t * weights + w];
    free(partial);
    free(column_at);
}
