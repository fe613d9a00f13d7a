/* Copies between CNHW activations and oneDNN's channel-blocked layouts (cpu_layout.h).
 *
 * For one image and one block of channels, the copy is a transpose: `block` rows of
 * pixels (one per channel, a batch*area stride apart in CNHW) against `area` rows of
 * `block` channels in the blocked layout. It runs on tiles of block x block floats
 * transposed in registers (16x16 with AVX-512, 8x8 with AVX), so every load and store is
 * a whole vector; oneDNN's own reorder between these layouts took 2-5x the memory
 * traffic's time on the study's tensors (E.g. 3.3 ms for A's 16x16x96 activations, whose
 * 25 MB of reads and writes take about 0.6 ms). Pixels past the last whole tile, and
 * builds without those instruction sets, use the plain loops. */
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

static size_t to_blocked16(const channel_block *b) {
    size_t p = 0;
    for (; p + 16 <= b->area; p += 16) {
        __m512 r[16];
        for (int j = 0; j < 16; j++)
            r[j] = j < b->valid ? _mm512_loadu_ps(b->cnhw + (size_t)j * b->row_stride + p)
                                : _mm512_setzero_ps();
        transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_storeu_ps(b->blocked + (p + q) * 16, r[q]);
    }
    return p;
}

static size_t to_cnhw16(const channel_block *b, grad_store store) {
    size_t p = 0;
    for (; p + 16 <= b->area; p += 16) {
        __m512 r[16];
        for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_ps(b->blocked + (p + q) * 16);
        transpose16(r);
        for (int j = 0; j < b->valid; j++) {
            float *row = b->cnhw + (size_t)j * b->row_stride + p;
            if (store == GRAD_ACCUMULATE) r[j] = _mm512_add_ps(_mm512_loadu_ps(row), r[j]);
            _mm512_storeu_ps(row, r[j]);
        }
    }
    return p;
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

static size_t to_blocked8(const channel_block *b) {
    size_t p = 0;
    for (; p + 8 <= b->area; p += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; j++)
            r[j] = j < b->valid ? _mm256_loadu_ps(b->cnhw + (size_t)j * b->row_stride + p)
                                : _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(b->blocked + (p + q) * 8, r[q]);
    }
    return p;
}

static size_t to_cnhw8(const channel_block *b, grad_store store) {
    size_t p = 0;
    for (; p + 8 <= b->area; p += 8) {
        __m256 r[8];
        for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(b->blocked + (p + q) * 8);
        transpose8(r);
        for (int j = 0; j < b->valid; j++) {
            float *row = b->cnhw + (size_t)j * b->row_stride + p;
            if (store == GRAD_ACCUMULATE) r[j] = _mm256_add_ps(_mm256_loadu_ps(row), r[j]);
            _mm256_storeu_ps(row, r[j]);
        }
    }
    return p;
}
#endif

/* Pixels the vector tiles copied (from 0); the plain loops do the rest. */
static size_t vector_to_blocked(const channel_block *b) {
    (void)b; /* unused in builds without AVX */
    if (bneck_cpu_layout_plain) return 0;
#if defined(__AVX512F__)
    if (b->block == 16) return to_blocked16(b);
#endif
#if defined(__AVX__)
    if (b->block == 8) return to_blocked8(b);
#endif
    return 0;
}

static size_t vector_to_cnhw(const channel_block *b, grad_store store) {
    (void)b, (void)store; /* unused in builds without AVX */
    if (bneck_cpu_layout_plain) return 0;
#if defined(__AVX512F__)
    if (b->block == 16) return to_cnhw16(b, store);
#endif
#if defined(__AVX__)
    if (b->block == 8) return to_cnhw8(b, store);
#endif
    return 0;
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
            plain_to_blocked(&b, vector_to_blocked(&b));
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
            plain_to_cnhw(&b, store, vector_to_cnhw(&b, store));
        }
}
