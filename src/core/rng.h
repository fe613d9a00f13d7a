/* Counter-based random numbers: every value is a pure function of (key, counter), so a
 * run reproduces from its seed whatever the rank count or the order work is done in.
 * Keys are derived by mixing a seed with small integers (epoch, pattern, repeat...). */
#ifndef BNECK_CORE_RNG_H
#define BNECK_CORE_RNG_H

#include <stdint.h>

/* A well-mixed 64-bit hash of (key, counter) (splitmix64 finaliser on both). */
uint64_t rng_u64(uint64_t key, uint64_t counter);
/* Derives a new key from a key and a tag, e.g. rng_key(seed, epoch). */
uint64_t rng_key(uint64_t key, uint64_t tag);
/* Uniform float in [0, 1) from 24 high bits. */
float rng_uniform(uint64_t key, uint64_t counter);
/* Uniform integer in [0, bound) (bound > 0), without modulo bias worth noticing at our sizes. */
uint32_t rng_below(uint64_t key, uint64_t counter, uint32_t bound);

#endif
