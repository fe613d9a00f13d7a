#include "sweep/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/rng.h"
#include "model/model.h"

uint64_t sweep_run_seed(uint64_t sweep_seed, const char *pattern, int repeat) {
    const uint64_t name_hash = hash_bytes(HASH_START, pattern, strlen(pattern));
    /* Keep seeds below 2^53 so every tool (Python, MATLAB doubles) reads them exactly. */
    return rng_key(rng_key(sweep_seed, name_hash), (uint64_t)repeat) >> 11;
}

static int most_expensive_first(const void *a, const void *b) {
    const planned_run *x = a, *y = b;
    if (x->pseudo_flops != y->pseudo_flops) return x->pseudo_flops < y->pseudo_flops ? 1 : -1;
    return strcmp(x->name, y->name);
}

int sweep_plan_build(sweep_plan *plan, const config *cfg, int in_channels, bneck_error *err) {
    memset(plan, 0, sizeof *plan);
    plan->runs = bneck_calloc((size_t)cfg->pattern_count * cfg->repeats, sizeof(planned_run));
    static model built; /* large; plans are built once */
    for (int p = 0; p < cfg->pattern_count; p++) {
        const pattern_spec *pattern = &cfg->patterns[p];
        model_spec spec = {pattern->mode, pattern->alpha, in_channels, cfg->pool_branch,
                           MODEL_LAYERS_GROUPED};
        bneck_error model_err;
        if (model_build(&built, &spec, &model_err)) {
            sweep_plan_free(plan);
            return bneck_error_set(err, "[sweep] patterns: pattern %s: %s", pattern->name,
                                   model_err.message);
        }
        for (int r = 0; r < cfg->repeats; r++) {
            planned_run *run = &plan->runs[plan->count++];
            snprintf(run->name, sizeof run->name, "%s-r%d", pattern->name, r);
            run->pattern = *pattern;
            run->repeat = r;
            run->seed = sweep_run_seed(cfg->seed, pattern->name, r);
            run->params = built.counts.params;
            run->pseudo_flops = built.counts.pseudo_flops;
            run->macs = built.counts.macs;
        }
    }
    qsort(plan->runs, (size_t)plan->count, sizeof *plan->runs, most_expensive_first);
    return 0;
}

void sweep_plan_free(sweep_plan *plan) {
    free(plan->runs);
    memset(plan, 0, sizeof *plan);
}

double sweep_plan_work_left(const sweep_plan *plan, int epochs, int next_ticket,
                            const int *run_index, const int *epoch, int groups) {
    double left = 0.0;
    for (int i = next_ticket < 0 ? 0 : next_ticket; i < plan->count; i++) {
        const int held = plan->runs[i].epochs_held;
        if (held < epochs) left += (double)(epochs - held) * (double)plan->runs[i].pseudo_flops;
    }
    for (int g = 0; g < groups; g++)
        if (run_index[g] >= 0 && run_index[g] < plan->count && epoch[g] < epochs)
            left += (double)(epochs - epoch[g]) * (double)plan->runs[run_index[g]].pseudo_flops;
    return left;
}
