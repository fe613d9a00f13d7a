/* The study's exact counts (SPEC section 2): a builder that misses any one is wrong. */
#include <criterion/criterion.h>

#include "model/model.h"

typedef struct expected_counts {
    int mode, alpha;
    int64_t params, trainable, pseudo_flops, macs;
} expected_counts;

static const expected_counts study[5] = {
    {1, 1, 2960874, 2958122, 231091200, 228854272},
    {2, 2, 839838, 836226, 87118848, 84738560},
    {2, 4, 493818, 490636, 50042880, 47734272},
    {3, 2, 612488, 608016, 61273088, 58749440},
    {3, 4, 308318, 304706, 28986368, 26606080},
};

static model built; /* large: keep it off the stack */

Test(model_counts, keras_form_matches_the_study_exactly) {
    for (int i = 0; i < 5; i++) {
        model_spec spec = {study[i].mode, study[i].alpha, 3, POOL_BRANCH_KERAS,
                           MODEL_LAYERS_GROUPED};
        bneck_error err;
        cr_assert_eq(model_build(&built, &spec, &err), 0, "%s", err.message);
        cr_expect_eq(built.counts.params, study[i].params, "pattern %s params %lld",
                     model_study_patterns[i].name, (long long)built.counts.params);
        cr_expect_eq(built.counts.trainable, study[i].trainable, "pattern %s trainable %lld",
                     model_study_patterns[i].name, (long long)built.counts.trainable);
        cr_expect_eq(built.counts.pseudo_flops, study[i].pseudo_flops, "pattern %s pflops %lld",
                     model_study_patterns[i].name, (long long)built.counts.pseudo_flops);
        cr_expect_eq(built.counts.macs, study[i].macs, "pattern %s macs %lld",
                     model_study_patterns[i].name, (long long)built.counts.macs);
        /* The buffers hold exactly what the counts say. */
        cr_expect_eq((int64_t)built.param_count, study[i].trainable);
        cr_expect_eq((int64_t)(built.param_count + built.state_count), study[i].params);
    }
}

Test(model_counts, pytorch_pool_branch_is_688_fewer) {
    for (int i = 0; i < 5; i++) {
        model_spec spec = {study[i].mode, study[i].alpha, 3, POOL_BRANCH_PYTORCH,
                           MODEL_LAYERS_GROUPED};
        cr_assert_eq(model_build(&built, &spec, NULL), 0);
        cr_expect_eq(built.counts.params, study[i].params - 688, "pattern %s",
                     model_study_patterns[i].name);
        cr_expect_eq(built.counts.macs, study[i].macs);
    }
}

Test(model_counts, study_pattern_table_matches) {
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(model_study_patterns[i].mode, study[i].mode);
        cr_expect_eq(model_study_patterns[i].alpha, study[i].alpha);
    }
}

Test(model_counts, one_input_channel_changes_only_the_first_layers) {
    model_spec spec = {1, 1, 1, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&built, &spec, NULL), 0);
    /* Inception 1's first layers see 1 channel instead of 3: 2 fewer input channels of
     * 1x1 (24), 3x3 (48), 5x5 (12) and pool-1x1 (12) convs: 2*(24 + 9*48 + 25*12 + 12). */
    cr_expect_eq(built.counts.params, 2960874 - 2 * (24 + 9 * 48 + 25 * 12 + 12));
}

Test(model_counts, bad_specs_are_refused_with_a_reason) {
    bneck_error err;
    model_spec bad_mode = {4, 2, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_expect_eq(model_build(&built, &bad_mode, &err), -1);
    cr_expect(strstr(err.message, "mode") != NULL, "%s", err.message);
    model_spec bad_alpha = {2, 8, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED}; /* 96 % 64 != 0 */
    cr_expect_eq(model_build(&built, &bad_alpha, &err), -1);
    cr_expect(strstr(err.message, "divisible") != NULL, "%s", err.message);
    model_spec zero_alpha = {2, 0, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_expect_eq(model_build(&built, &zero_alpha, &err), -1);
    /* alphas whose 8 * alpha overflows an int: refused, not a crash (UBSan watches) */
    const int huge[] = {268435456, 536870912, 2147483647};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        model_spec spec = {3, huge[i], 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
        cr_expect_eq(model_build(&built, &spec, &err), -1, "alpha %d", huge[i]);
        cr_expect(strstr(err.message, "divisible") != NULL, "%s", err.message);
    }
}

Test(model_counts, concat_slices_tile_each_module_output) {
    model_spec spec = {3, 4, 3, POOL_BRANCH_KERAS, MODEL_LAYERS_GROUPED};
    cr_assert_eq(model_build(&built, &spec, NULL), 0);
    /* Channels written into each region must cover it exactly once. */
    int slices = 0;
    for (int i = 0; i < built.layer_count; i++) {
        const tensor_ref *out = &built.layers[i].out;
        if (out->region_channels == out->channels) continue;
        slices++;
        int covered = 0;
        for (int j = 0; j < built.layer_count; j++)
            if (built.layers[j].out.region == out->region) covered += built.layers[j].out.channels;
        cr_expect_eq(covered, out->region_channels, "region of %s", built.layers[i].name);
    }
    /* every module concatenates its branches: a model without slices checked nothing */
    cr_expect_geq(slices, 5, "%d layers write a slice of a module's output", slices);
}

/* The activation bytes a step moves op by op (model_activation_traffic), pinned; two
 * properties that hold whatever the pinned numbers: B and E move the same bytes (a
 * branch of width f over C input channels moves C + 5f planes forward in both: B's
 * 1x1 to f/2, BN, kxk to f, BN; E's 1x1 to f/4, BN, kxk, BN, 1x1 to f, BN), and A, which
 * has no reduce convolutions to group, moves as much grouped as separate. */
Test(model_counts, activation_traffic_pinned_b_equals_e_and_grouping_changes_only_reduces) {
    static const int64_t bytes[5] = {14298192, 14953552, 13519952, 17820752, 14953552};
    static model separate;
    int64_t computed[5];
    for (int i = 0; i < 5; i++) {
        model_spec spec = {study[i].mode, study[i].alpha, 3, POOL_BRANCH_KERAS,
                           MODEL_LAYERS_GROUPED};
        cr_assert_eq(model_build(&built, &spec, NULL), 0);
        const int64_t grouped = computed[i] = model_activation_traffic(&built);
        cr_expect_eq(grouped, bytes[i], "pattern %s: %lld bytes", model_study_patterns[i].name,
                     (long long)grouped);
        spec.grouping = MODEL_LAYERS_SEPARATE;
        cr_assert_eq(model_build(&separate, &spec, NULL), 0);
        const int64_t apart = model_activation_traffic(&separate);
        if (study[i].mode == 1)
            cr_expect_eq(apart, grouped, "A separate: %lld bytes", (long long)apart);
        else /* three 1x1 convolutions read the module input where one did */
            cr_expect_gt(apart, grouped, "pattern %s separate: %lld bytes",
                         model_study_patterns[i].name, (long long)apart);
    }
    cr_expect_eq(computed[1], computed[4], "B %lld bytes, E %lld", (long long)computed[1],
                 (long long)computed[4]);
}

/* The ops a forward pass runs (bneck-theory's ops column): a layer group runs as one, so
 * grouping cuts A from 49 to 34 and E from 89 to 59 (README, GPUs). */
Test(model_counts, ops_per_pass_grouped_and_separate) {
    static const int grouped_ops[5] = {34, 39, 39, 59, 59}, separate_ops[5] = {49, 69, 69, 89, 89};
    for (int i = 0; i < 5; i++)
        for (int grouping = 0; grouping < 2; grouping++) {
            model_spec spec = {study[i].mode, study[i].alpha, 3, POOL_BRANCH_KERAS,
                               grouping ? MODEL_LAYERS_SEPARATE : MODEL_LAYERS_GROUPED};
            cr_assert_eq(model_build(&built, &spec, NULL), 0);
            int ops = 0;
            for (int l = 0; l < built.layer_count; l++) ops += !built.layers[l].group_member;
            cr_expect_eq(ops, grouping ? separate_ops[i] : grouped_ops[i], "pattern %s %s: %d ops",
                         model_study_patterns[i].name, grouping ? "separate" : "grouped", ops);
        }
}
