/* The plan of a sweep: every (pattern, repeat) run with its seed and cost, most
 * expensive first, so the longest runs start first and the sweep ends evenly. */
#ifndef BNECK_SWEEP_PLAN_H
#define BNECK_SWEEP_PLAN_H

#include <stdint.h>

#include "core/error.h"
#include "train/config.h"

typedef struct planned_run {
    char name[32];        /* "<pattern>-r<repeat>", also the run file's name */
    pattern_spec pattern;
    int repeat;           /* 0-based */
    uint64_t seed;        /* from (sweep seed, pattern name, repeat) only */
    int64_t params, pseudo_flops, macs;
    int epochs_held;      /* epochs its file held when this session began (rank 0: time left) */
} planned_run;

typedef struct sweep_plan {
    int count;
    planned_run *runs;    /* sorted by pseudo_flops, largest first; ties by name */
} sweep_plan;

/* Builds the plan for cfg's patterns and repeats on a dataset with in_channels channels. */
int sweep_plan_build(sweep_plan *plan, const config *cfg, int in_channels, bneck_error *err);
void sweep_plan_free(sweep_plan *plan);
/* Work still to train, in epochs x pseudo-FLOPs, for runs of `epochs` epochs: the runs from
 * next_ticket on (not handed out yet) less what their files held, and the rest of the run
 * each of the `groups` groups trains (run_index[g], -1 for none, at epoch[g] epochs done). */
double sweep_plan_work_left(const sweep_plan *plan, int epochs, int next_ticket,
                            const int *run_index, const int *epoch, int groups);

/* The seed of one run: a pure function of the sweep seed, the pattern name and the repeat,
 * so results do not depend on the rank count or the order runs are handed out. */
uint64_t sweep_run_seed(uint64_t sweep_seed, const char *pattern, int repeat);

#endif
