#include "core/rng.h"

static uint64_t splitmix64_finalise(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_u64(uint64_t key, uint64_t counter) {
    uint64_t z = splitmix64_finalise(key + 0x9e3779b97f4a7c15ULL);
    return splitmix64_finalise(z ^ (counter * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
}

uint64_t rng_key(uint64_t key, uint64_t tag) { return rng_u64(key ^ 0xd1b54a32d192ed03ULL, tag); }

float rng_uniform(uint64_t key, uint64_t counter) {
    return (float)(rng_u64(key, counter) >> 40) * (1.0f / 16777216.0f);
}

uint32_t rng_below(uint64_t key, uint64_t counter, uint32_t bound) {
    return (uint32_t)(((rng_u64(key, counter) >> 32) * (uint64_t)bound) >> 32);
}
