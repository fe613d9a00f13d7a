#ifndef BNECK_CORE_TIMER_H
#define BNECK_CORE_TIMER_H

#include <time.h>

/* Seconds on a monotonic clock (for intervals only). */
static inline double timer_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
