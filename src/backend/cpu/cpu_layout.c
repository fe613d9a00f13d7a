/* Copies between CNHW activations and oneDNN's channel-blocked layouts (cpu_layout.h).
 *
 * For one image and one block of channels, the copy is a transpose: `block` rows of
 * pixels (one per channel, a batch*area stride apart in CNHW) against `area` rows of
 * `block` channels in the blocked layout. It runs on tiles of block x block floats
 * transposed in registers (16x16 with AVX-512, 8x8 with AVX), so every load and store is
 * a whole vector. oneDNN's own reorders run about as fast on most of the study's tensors
 * (0.5-1.1 ms against 0.4-0.9 for 12-25 MB, measured alone), but from a block with padding
 * channels back to CNHW its reorder took 4.9 ms for a 32x32x24 batch against 0.5 here.
 * Pixels past the last whole tile, and builds without those instruction sets, use the
 * plain loops. */
#include "backend/cpu/cpu_layout.h"

#include "core/error.h"

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif
#include <string.h>

int bneck_cpu_layout_plain;

int cpu_layout_block_supported(int block) { return block == 1 || block == 8 || block == 16; }

/* One image's block of channels: `valid` channel rows of CNHW (the rest of the block is
 * padding), `row_stride` floats apart, and the same channels as `area` pixel rows of
 * `block` floats. */
typedef struct channel_block {
    float *cnhw;
    float *blocked;
    size_t row_stride, area;
    int block, valid;
} channel_block;

static void plain_to_blocked(const channel_block *b, size_t first_pixel) {
    for (size_t p = first_pixel; p < b->area; p++) {
        float *restrict out = b->blocked + p * (size_t)b->block;
        for (int j = 0; j < b->block; j++)
            out[j] = j < b->valid ? b->cnhw[(size_t)j * b->row_stride + p] : 0.0f;
    }
}

static void plain_to_cnhw(const channel_block *b, grad_store store, size_t first_pixel) {
    for (int j = 0; j < b->valid; j++) {
        float *restrict row = b->cnhw + (size_t)j * b->row_stride;
        const float *restrict in = b->blocked + j;
        for (size_t p = first_pixel; p < b->area; p++)
            row[p] = store == GRAD_ACCUMULATE ? row[p] + in[p * (size_t)b->block]
                                              : in[p * (size_t)b->block];
    }
}

#if defined(__AVX512F__)
/* r[i][j] -> r[j][i] for a 16x16 tile: pairs of rows interleaved, then 4x4 blocks within
 * each 128-bit lane, then the 128-bit lanes themselves. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + m] holds column 4k + m of rows 4g..4g+3 in lane k */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        const __m512 even_lanes_low = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);
        const __m512 odd_lanes_low = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
        const __m512 even_lanes_high = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
        const __m512 odd_lanes_high = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
        r[m] = _mm512_shuffle_f32x4(even_lanes_low, even_lanes_high, 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(even_lanes_low, even_lanes_high, 0xDD);
        r[4 + m] = _mm512_shuffle_f32x4(odd_lanes_low, odd_lanes_high, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(odd_lanes_low, odd_lanes_high, 0xDD);
    }
}

static void transpose_tile16(float *const out[], int out_rows, grad_store store,
                             const float *const in[], int in_rows) {
    __m512 r[16];
    for (int j = 0; j < 16; j++) r[j] = j < in_rows ? _mm512_loadu_ps(in[j]) : _mm512_setzero_ps();
    transpose16(r);
    for (int j = 0; j < out_rows; j++) {
        if (store == GRAD_ACCUMULATE) r[j] = _mm512_add_ps(_mm512_loadu_ps(out[j]), r[j]);
        _mm512_storeu_ps(out[j], r[j]);
    }
}
#endif

#if defined(__AVX__)
/* The same for 8x8 tiles: pairs of rows, 4x4 blocks within each 128-bit lane, lanes. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
}

static void transpose_tile8(float *const out[], int out_rows, grad_store store,
                            const float *const in[], int in_rows) {
    __m256 r[8];
    for (int j = 0; j < 8; j++) r[j] = j < in_rows ? _mm256_loadu_ps(in[j]) : _mm256_setzero_ps();
    transpose8(r);
    for (int j = 0; j < out_rows; j++) {
        if (store == GRAD_ACCUMULATE) r[j] = _mm256_add_ps(_mm256_loadu_ps(out[j]), r[j]);
        _mm256_storeu_ps(out[j], r[j]);
    }
}
#endif

/* Transposes one block x block tile whose rows are in[0..in_rows) (zeros past them) into
 * out[0..out_rows), written over or added into as store says. */
typedef void tile_transpose(float *const out[], int out_rows, grad_store store,
                            const float *const in[], int in_rows);

/* The vector tile transpose for this block size; NULL where the build has none. */
static tile_transpose *tile_transpose_for(int block) {
    if (bneck_cpu_layout_plain) return NULL;
#if defined(__AVX512F__)
    if (block == 16) return transpose_tile16;
#endif
#if defined(__AVX__)
    if (block == 8) return transpose_tile8;
#endif
    (void)block;
    return NULL;
}

/* Copies the block's whole tiles of `block` pixels from the start, into the blocked layout
 * (to_cnhw 0) or back (1), and returns the pixels done; the plain loops do the rest. */
static size_t copy_tiles(const channel_block *b, int to_cnhw, grad_store store) {
    tile_transpose *transpose = tile_transpose_for(b->block);
    if (!transpose) return 0;
    float *channel_rows[16], *pixel_rows[16]; /* the tile in CNHW and in the blocked layout */
    size_t p = 0;
    for (; p + (size_t)b->block <= b->area; p += (size_t)b->block) {
        for (int j = 0; j < b->valid; j++) channel_rows[j] = b->cnhw + (size_t)j * b->row_stride + p;
        for (int q = 0; q < b->block; q++) pixel_rows[q] = b->blocked + (p + q) * (size_t)b->block;
        if (to_cnhw)
            transpose(channel_rows, b->valid, store, (const float *const *)pixel_rows, b->block);
        else
            transpose(pixel_rows, b->block, GRAD_OVERWRITE, (const float *const *)channel_rows,
                      b->valid);
    }
    return p;
}

static void check_args(const char *op, int block, int batch, int channels) {
    if (!cpu_layout_block_supported(block))
        BNECK_FAIL("%s: channel block %d (supported: 1, 8, 16)", op, block);
    if (batch < 1 || channels < 1)
        BNECK_FAIL("%s: batch %d, channels %d (both must be positive)", op, batch, channels);
}

static channel_block block_at(float *cnhw, float *blocked, int block, int batch, int channels,
                              size_t area, int n, int channel_block_index) {
    const int first = channel_block_index * block;
    const int blocks = (channels + block - 1) / block;
    const size_t row_stride = (size_t)batch * area;
    return (channel_block){
        .cnhw = cnhw + (size_t)first * row_stride + (size_t)n * area,
        .blocked = blocked + ((size_t)n * (size_t)blocks + (size_t)channel_block_index) * area *
                                 (size_t)block,
        .row_stride = row_stride,
        .area = area,
        .block = block,
        .valid = channels - first < block ? channels - first : block,
    };
}

void cpu_layout_cnhw_to_blocked(float *blocked, const float *x, int block, int batch,
                                int channels, size_t area) {
    check_args("cpu_layout_cnhw_to_blocked", block, batch, channels);
    const int blocks = (channels + block - 1) / block;
    /* the source is only read: block_at's cnhw pointer is not written through here */
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < batch; n++)
        for (int cb = 0; cb < blocks; cb++) {
            const channel_block b =
                block_at((float *)x, blocked, block, batch, channels, area, n, cb);
            if (block == 1) {
                memcpy(b.blocked, b.cnhw, area * sizeof *b.cnhw);
                continue;
            }
            plain_to_blocked(&b, copy_tiles(&b, 0, GRAD_OVERWRITE));
        }
}

void cpu_layout_blocked_to_cnhw(float *x, grad_store store, const float *blocked, int block,
                                int batch, int channels, size_t area) {
    check_args("cpu_layout_blocked_to_cnhw", block, batch, channels);
    const int blocks = (channels + block - 1) / block;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < batch; n++)
        for (int cb = 0; cb < blocks; cb++) {
            const channel_block b =
                block_at(x, (float *)blocked, block, batch, channels, area, n, cb);
            if (block == 1 && store == GRAD_OVERWRITE) {
                memcpy(b.cnhw, b.blocked, area * sizeof *b.cnhw);
                continue;
            }
            plain_to_cnhw(&b, store, copy_tiles(&b, 1, store));
        }
}
