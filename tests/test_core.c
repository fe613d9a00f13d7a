/* The core helpers: the hash behind run seeds and rank checks, the lists and numbers
 * written into results files, the programs' command-line options, and the check for ranks
 * sharing a GPU. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/format.h"
#include "core/hash.h"
#include "sweep/plan.h"
#include "sweep/sweep_state.h"

Test(hash, bytes_chain_and_pinned_values) {
    cr_assert_eq(hash_bytes(HASH_START, "", 0), HASH_START);
    cr_assert_eq(hash_bytes(HASH_START, "bneck", 5), 0x475b3ea7e4f5f73cULL);
    /* hashing in pieces is hashing the whole */
    cr_assert_eq(hash_bytes(hash_bytes(HASH_START, "bn", 2), "eck", 3),
                 hash_bytes(HASH_START, "bneck", 5));
    cr_assert_neq(hash_bytes(HASH_START, "bneck", 5), hash_bytes(HASH_START, "bneKk", 5));
}

/* Every sweep's run seeds, as bneck has always derived them (a resumed sweep checks its
 * run files' seeds against these). */
Test(hash, run_seeds_unchanged) {
    cr_assert_eq(sweep_run_seed(42, "E", 0), 8762471833157306ULL);
    cr_assert_eq(sweep_run_seed(42, "A", 4), 6974158476357398ULL);
    cr_assert_eq(sweep_run_seed(7, "C", 2), 4535184271761282ULL);
}

/* The sweep's time left counts only the epochs still to train: of a resumed sweep's runs
 * not handed out yet, those their files hold (whole, for a complete run) are not left. */
Test(sweep_plan, work_left_counts_only_epochs_still_to_train) {
    planned_run runs[4] = {{.pseudo_flops = 1000, .epochs_held = 0},
                           {.pseudo_flops = 300, .epochs_held = 10},
                           {.pseudo_flops = 200, .epochs_held = 4},
                           {.pseudo_flops = 50, .epochs_held = 0}};
    const sweep_plan plan = {4, runs};
    const int run_index[2] = {0, -1}, epoch[2] = {3, 0};
    /* run 0 in group 0 with 7 of 10 epochs left; runs 1-3 not handed out: run 1 complete
     * in its file, run 2 at epoch 4, run 3 new */
    cr_assert_float_eq(sweep_plan_work_left(&plan, 10, 1, run_index, epoch, 2),
                       7 * 1000.0 + 6 * 200.0 + 10 * 50.0, 1e-9);
    /* once every run is handed out and group 0 is at its last epoch's end: nothing */
    const int last_epoch[2] = {10, 0};
    cr_assert_float_eq(sweep_plan_work_left(&plan, 10, 4, run_index, last_epoch, 2), 0.0, 1e-9);
}

enum { SLOT = 16 };

/* count texts laid out in slots of SLOT bytes, as the ranks' host names are */
static void slots_of(char *slots, const char *const *texts, int count) {
    memset(slots, 0, (size_t)count * SLOT);
    for (int i = 0; i < count; i++) strncpy(slots + (size_t)i * SLOT, texts[i], SLOT - 1);
}

Test(format, distinct_list_in_first_order) {
    const char *hosts[] = {"n2", "n1", "n2", "n3", "n1"};
    char slots[5 * SLOT], out[64];
    slots_of(slots, hosts, 5);
    format_distinct_list(out, sizeof out, slots, 5, SLOT);
    cr_assert_str_eq(out, "n2,n1,n3");
    format_distinct_list(out, sizeof out, slots, 0, SLOT);
    cr_assert_str_eq(out, "");
}

Test(format, distinct_list_cut_at_a_whole_name) {
    const char *hosts[] = {"node01", "node02", "node03", "node04"};
    char slots[4 * SLOT], out[64];
    slots_of(slots, hosts, 4);
    /* "node01,node02,node03,node04" is 27 characters: it fits in 28 bytes exactly */
    format_distinct_list(out, 28, slots, 4, SLOT);
    cr_assert_str_eq(out, "node01,node02,node03,node04");
    /* one byte less: the last names give way to the mark, whole */
    format_distinct_list(out, 27, slots, 4, SLOT);
    cr_assert_str_eq(out, "node01,node02,node03,...");
    format_distinct_list(out, 24, slots, 4, SLOT);
    cr_assert_str_eq(out, "node01,node02,...");
    format_distinct_list(out, 8, slots, 4, SLOT);
    cr_assert_str_eq(out, "...");
    for (size_t capacity = 4; capacity <= 28; capacity++) {
        format_distinct_list(out, capacity, slots, 4, SLOT);
        cr_assert_lt(strlen(out), capacity, "capacity %zu: '%s'", capacity, out);
    }
}

Test(format, thousands) {
    char out[32];
    format_thousands(2960874, out, sizeof out);
    cr_assert_str_eq(out, "2,960,874");
    format_thousands(-1000, out, sizeof out);
    cr_assert_str_eq(out, "-1,000");
    format_thousands(999, out, sizeof out);
    cr_assert_str_eq(out, "999");
}

static const char *const flags[] = {"--ratios", NULL};
static const char *const valued[] = {"--format", "--k", NULL};

/* Reads every option of argv as a program would; the kinds read, or -1 at the first error. */
static int read_all(int argc, char **argv, cli_option *last, char *message, size_t capacity) {
    int kind = CLI_ARGUMENT;
    for (int i = 1; i < argc; i++) {
        kind = cli_next(last, argc, argv, &i, flags, valued, message, capacity);
        if (kind < 0) return -1;
    }
    return kind;
}

Test(cli, options_values_and_arguments) {
    char message[128] = "";
    cli_option o;
    char *equals[] = {"p", "--format=csv"};
    cr_assert_eq(read_all(2, equals, &o, message, sizeof message), CLI_VALUED);
    cr_assert_str_eq(o.name, "--format");
    cr_assert_str_eq(o.value, "csv");
    char *separate[] = {"p", "--k", "1:3"};
    cr_assert_eq(read_all(3, separate, &o, message, sizeof message), CLI_VALUED);
    cr_assert_str_eq(o.value, "1:3");
    char *empty[] = {"p", "--format="}; /* an empty value is the program's to judge */
    cr_assert_eq(read_all(2, empty, &o, message, sizeof message), CLI_VALUED);
    cr_assert_str_eq(o.value, "");
    char *flag[] = {"p", "--ratios"};
    cr_assert_eq(read_all(2, flag, &o, message, sizeof message), CLI_FLAG);
    cr_assert_null(o.value);
    char *argument[] = {"p", "sweep.h5"};
    cr_assert_eq(read_all(2, argument, &o, message, sizeof message), CLI_ARGUMENT);
    cr_assert_str_eq(o.value, "sweep.h5");
    char *dash[] = {"p", "-"};
    cr_assert_eq(read_all(2, dash, &o, message, sizeof message), CLI_ARGUMENT);
}

Test(cli, errors_name_the_option) {
    char long_name[80];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[0] = long_name[1] = '-';
    long_name[sizeof long_name - 1] = '\0';
    static const struct { const char *first, *second, *message; } cases[] = {
        {"--bogus=1", NULL, "unknown option '--bogus'"},
        {"-x", NULL, "unknown option '-x'"},
        {"--ratios=yes", NULL, "--ratios takes no value"},
        {"--k", NULL, "--k needs a value"},
        {"--k", "--ratios", "--k needs a value"}, /* a forgotten value, not "--ratios" */
        {NULL, NULL, "unknown option '--xxx"},    /* the over-long name, cut */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *argv[] = {"p", (char *)(cases[c].first ? cases[c].first : long_name),
                        (char *)cases[c].second};
        char message[128] = "";
        cli_option o;
        cr_assert_eq(read_all(cases[c].second ? 3 : 2, argv, &o, message, sizeof message), -1,
                     "case %zu", c);
        /* whole, but for the over-long name: only its start is quoted */
        const size_t compared = cases[c].first ? sizeof message : strlen(cases[c].message);
        cr_assert(strncmp(message, cases[c].message, compared) == 0, "case %zu: '%s'", c,
                  message);
    }
}

Test(cli, choices) {
    static const char *const words[] = {"table", "csv", "markdown", NULL};
    cr_assert_eq(cli_choice("csv", words), 1);
    cr_assert_eq(cli_choice("CSV", words), -1);
    char text[64];
    cli_choices_text(words, text, sizeof text);
    cr_assert_str_eq(text, "table, csv or markdown");
    static const char *const two[] = {"keras", "pytorch", NULL};
    cli_choices_text(two, text, sizeof text);
    cr_assert_str_eq(text, "keras or pytorch");
    char message[128];
    cr_assert_eq(cli_pick("--pool-branch", "pytorch", two, message, sizeof message), 1);
    cr_assert_eq(cli_pick("--format", "json", words, message, sizeof message), -1);
    cr_assert_str_eq(message, "--format: bad value 'json': expected table, csv or markdown");
}

/* A message names its file first: a path as long as the system allows must not push out
 * the reason after it; a message too long for the room says it was cut. */
Test(error, a_long_path_keeps_the_reason_and_a_cut_message_says_so) {
    char path[4096];
    memset(path, 'd', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    bneck_error err;
    const char *reason = ": cannot open config file: No such file or directory";
    cr_assert_eq(bneck_error_set(&err, "%s%s", path, reason), -1);
    const size_t length_whole = sizeof path - 1 + strlen(reason);
    cr_expect_eq(strlen(err.message), length_whole, "the message was cut");
    cr_expect_str_eq(err.message + sizeof path - 1, reason);
    bneck_error_set(&err, "%s -> %s -> %s", path, path, path);
    const size_t length = strlen(err.message);
    cr_expect_eq(length, sizeof err.message - 1);
    cr_expect_str_eq(err.message + length - 4, " ...");
}

/* Ranks on one GPU: the same PCI bus id on the same host (another host's GPU at that bus id
 * is another GPU; a CPU rank has none); two of one group are worse than two of different
 * groups, and the first pair of the worst kind is named. */
Test(sweep_gpus, shared_gpu_found_by_host_and_bus_id_worst_kind_first) {
    sweep_gpu_record ranks[] = {
        {0, "n1", "0000:1A:00.0"}, {1, "n1", "0000:1B:00.0"}, {2, "n2", "0000:1A:00.0"},
        {3, "", ""},               {4, "", ""},               {5, "n2", "0000:1B:00.0"},
    };
    int first = -1, second = -1;
    cr_assert_eq(sweep_gpu_shared(ranks, 6, &first, &second), SWEEP_GPU_ALONE);
    cr_assert_eq(first, -1, "nothing named when no GPU is shared");

    ranks[4] = (sweep_gpu_record){4, "n2", "0000:1A:00.0"}; /* rank 2's GPU, another group */
    cr_assert_eq(sweep_gpu_shared(ranks, 6, &first, &second), SWEEP_GPU_SHARED);
    cr_assert(first == 2 && second == 4, "ranks %d and %d", first, second);

    ranks[5].group = 1; /* a third rank on n2's 0000:1A:00.0, of rank 1's group */
    ranks[5].bus_id[6] = 'A';
    cr_assert_eq(sweep_gpu_shared(ranks, 6, &first, &second), SWEEP_GPU_SHARED);
    cr_assert(first == 2 && second == 4, "ranks %d and %d", first, second);

    ranks[5] = (sweep_gpu_record){1, "n1", "0000:1B:00.0"}; /* on rank 1's GPU, same group */
    cr_assert_eq(sweep_gpu_shared(ranks, 6, &first, &second), SWEEP_GPU_SHARED_IN_GROUP);
    cr_assert(first == 1 && second == 5, "ranks %d and %d", first, second);
}
