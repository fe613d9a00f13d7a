/* The core helpers the sweep's records depend on: the hash behind run seeds and rank
 * checks, and the lists and numbers written into results files. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/format.h"
#include "core/hash.h"
#include "sweep/plan.h"

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
