/* The configuration loader: defaults, every key, recipe presets under explicit keys,
 * overrides over the file, and for each kind of bad input a -1 with a message naming the
 * file, the line and the key. Config files are written to /tmp with mkstemp. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/augment.h"
#include "sweep/output.h"
#include "train/config.h"

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* --- temporary files ----------------------------------------------------------------- */

enum { MAX_TEMP_FILES = 8 };
static char temp_paths[MAX_TEMP_FILES][64];
static int temp_count;

static void remove_temp_files(void) {
    for (int i = 0; i < temp_count; i++) unlink(temp_paths[i]);
    temp_count = 0;
}

TestSuite(config, .fini = remove_temp_files);

/* Writes content to a fresh /tmp file and returns its path (valid for the test). */
static const char *write_temp_config(const char *content) {
    cr_assert_lt(temp_count, MAX_TEMP_FILES, "too many temp files in one test");
    char *path = temp_paths[temp_count++];
    snprintf(path, sizeof temp_paths[0], "/tmp/bneck_test_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    size_t length = strlen(content), written = 0;
    while (written < length) {
        ssize_t got = write(fd, content + written, length - written);
        cr_assert_gt(got, 0, "write: %s", strerror(errno));
        written += (size_t)got;
    }
    close(fd);
    return path;
}

/* The config struct is large; tests keep theirs off the stack. */
static config *new_config(void) {
    config *cfg = calloc(1, sizeof *cfg);
    cr_assert_not_null(cfg);
    return cfg;
}

static int load_text(config *cfg, const char *content, int override_count, const char *const *overrides,
                     bneck_error *err) {
    return config_load(cfg, write_temp_config(content), override_count, overrides, err);
}

static void expect_contains(const char *message, const char *part, const char *context) {
    cr_expect(strstr(message, part) != NULL, "%s: message \"%s\" lacks \"%s\"", context, message, part);
}

/* A file case that must fail: the message names the file, "file:line:" and the key. */
typedef struct bad_file_case {
    const char *content;
    int line;
    const char *key;
    const char *also; /* another part the message must contain, or NULL */
} bad_file_case;

static void expect_file_error(const bad_file_case *bad) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    const char *path = write_temp_config(bad->content);
    int status = config_load(cfg, path, 0, NULL, &err);
    cr_expect_eq(status, -1, "accepted: %s", bad->content);
    if (status == -1) {
        char where[96];
        snprintf(where, sizeof where, "%s:%d:", path, bad->line);
        expect_contains(err.message, where, bad->content);
        expect_contains(err.message, bad->key, bad->content);
        if (bad->also) expect_contains(err.message, bad->also, bad->content);
    }
    free(cfg);
}

static void expect_file_errors(const bad_file_case *cases, size_t count) {
    for (size_t i = 0; i < count; i++) {
        expect_file_error(&cases[i]);
        remove_temp_files();
    }
}

/* --- defaults ------------------------------------------------------------------------- */

static void expect_default_values(const config *cfg) {
    cr_expect_str_eq(cfg->name, "run");
    cr_expect_eq(cfg->seed, 1);
    cr_expect_str_eq(cfg->device, "auto");
    cr_expect_eq(cfg->threads, 0);
    cr_expect_str_eq(cfg->output, "results/run");
    cr_expect_str_eq(cfg->precision, "fp32");
    cr_expect_str_eq(cfg->conv_engine, "auto");
    cr_expect_str_eq(cfg->graph, "auto");
    cr_expect_eq(cfg->deterministic, 0);
    cr_expect_str_eq(cfg->dataset, "fashion-mnist");
    cr_expect_str_eq(cfg->data_dir, "/usr/share/datasets/fashion-mnist");
    cr_expect_eq(cfg->train_limit, 0);
    cr_expect_eq(cfg->val_limit, 0);
    cr_expect_eq(cfg->augment, AUGMENT_SHIFT, "the keras recipe's augmentation");
    cr_expect_eq(cfg->mode, 1);
    cr_expect_eq(cfg->alpha, 1);
    cr_expect_eq(cfg->pool_branch, POOL_BRANCH_KERAS);
    cr_expect_eq(cfg->recipe, RECIPE_KERAS);
    cr_expect_eq(cfg->epochs, 100);
    cr_expect_eq(cfg->batch, 128);
    cr_expect_eq(cfg->val_batch, 100);
    cr_expect_eq(cfg->lr, 1e-3);
    cr_expect_eq(cfg->lr_decay_at[0], 0.5);
    cr_expect_eq(cfg->lr_decay_at[1], 0.85);
    cr_expect_eq(cfg->lr_decay_factor, 0.1);
    cr_expect_eq(cfg->l2, 1e-3);
    cr_expect_eq(cfg->l2_form, L2_FORM_KERNELS);
    cr_expect_eq(cfg->init, INIT_GLOROT);
    cr_expect_eq(cfg->bn_eps, 1e-3);
    cr_expect_eq(cfg->bn_momentum, 0.99);
    cr_expect_eq(cfg->adam_beta1, 0.9);
    cr_expect_eq(cfg->adam_beta2, 0.999);
    cr_expect_eq(cfg->adam_eps, 1e-7);
    cr_expect_eq(cfg->progress_every, 0);
    cr_expect_eq(cfg->commit_minutes, 10.0);
    cr_expect_eq(cfg->repeats, 1);
    cr_expect_eq(cfg->ranks_per_run, 1);

    static const pattern_spec study[] = {{"A", 1, 1}, {"B", 2, 2}, {"C", 2, 4}, {"D", 3, 2}, {"E", 3, 4}};
    cr_assert_eq(cfg->pattern_count, 5);
    for (int i = 0; i < 5; i++) {
        cr_expect_str_eq(cfg->patterns[i].name, study[i].name);
        cr_expect_eq(cfg->patterns[i].mode, study[i].mode, "pattern %s", study[i].name);
        cr_expect_eq(cfg->patterns[i].alpha, study[i].alpha, "pattern %s", study[i].name);
    }
}

Test(config, defaults_are_the_documented_ones) {
    config *cfg = new_config();
    memset(cfg, 0x5a, sizeof *cfg);
    config_defaults(cfg);
    expect_default_values(cfg);
    cr_expect_str_eq(cfg->text, "");
    free(cfg);
}

Test(config, load_without_file_or_overrides_gives_defaults) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(config_load(cfg, NULL, 0, NULL, &err), 0, "%s", err.message);
    expect_default_values(cfg);
    free(cfg);
}

Test(config, empty_and_comment_only_files_give_defaults) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "", 0, NULL, &err), 0, "%s", err.message);
    expect_default_values(cfg);
    cr_assert_eq(load_text(cfg, "; nothing here\n# nor here\n\n[train]\n", 0, NULL, &err), 0, "%s", err.message);
    expect_default_values(cfg);
    free(cfg);
}

/* --- every key ------------------------------------------------------------------------ */

Test(config, reads_every_key) {
    const char *text = "; a full config\n"
                       "[run]\n"
                       "name = article\n"
                       "seed = 18446744073709551615\n"
                       "device = cuda\n"
                       "precision = bf16\n"
                       "conv = gemm\n"
                       "deterministic = yes\n"
                       "graph = off\n"
                       "threads = 8\n"
                       "commit_minutes = 2.5\n"
                       "output = /scratch/out   ; inline comment\n"
                       "[data]\n"
                       "dataset = cifar10\n"
                       "dir = /data/cifar\n"
                       "train_limit = 1000\n"
                       "val_limit = 200\n"
                       "augment = off\n"
                       "[model]\n"
                       "mode = 3\n"
                       "alpha = 4\n"
                       "pool_branch = pytorch\n"
                       "[train]\n"
                       "epochs = 7\n"
                       "batch = 64\n"
                       "val_batch = 50\n"
                       "lr = 2.5e-4\n"
                       "lr_decay_at = 0.25, 0.75\n"
                       "lr_decay_factor = 0.5\n"
                       "l2 = 0\n"
                       "l2_form = all\n"
                       "init = pytorch\n"
                       "bn_eps = 2e-5\n"
                       "bn_momentum = 0\n"
                       "adam_beta1 = 0.8\n"
                       "adam_beta2 = 0.99\n"
                       "adam_eps = 1e-9\n"
                       "progress_every = 25\n"
                       "[sweep]\n"
                       "patterns = X:1:1, Y:3:2\n"
                       "repeats = 5\n"
                       "ranks_per_run = 2\n";
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, text, 0, NULL, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->name, "article");
    cr_expect_eq(cfg->seed, UINT64_MAX);
    cr_expect_str_eq(cfg->device, "cuda");
    cr_expect_str_eq(cfg->precision, "bf16");
    cr_expect_str_eq(cfg->conv_engine, "gemm");
    cr_expect_eq(cfg->deterministic, 1);
    cr_expect_str_eq(cfg->graph, "off");
    cr_expect_eq(cfg->threads, 8);
    cr_expect_eq(cfg->commit_minutes, 2.5);
    cr_expect_str_eq(cfg->output, "/scratch/out");
    cr_expect_str_eq(cfg->dataset, "cifar10");
    cr_expect_str_eq(cfg->data_dir, "/data/cifar");
    cr_expect_eq(cfg->train_limit, 1000);
    cr_expect_eq(cfg->val_limit, 200);
    cr_expect_eq(cfg->augment, 0);
    cr_expect_eq(cfg->mode, 3);
    cr_expect_eq(cfg->alpha, 4);
    cr_expect_eq(cfg->pool_branch, POOL_BRANCH_PYTORCH);
    cr_expect_eq(cfg->recipe, RECIPE_KERAS);
    cr_expect_eq(cfg->epochs, 7);
    cr_expect_eq(cfg->batch, 64);
    cr_expect_eq(cfg->val_batch, 50);
    cr_expect_eq(cfg->lr, 2.5e-4);
    cr_expect_eq(cfg->lr_decay_at[0], 0.25);
    cr_expect_eq(cfg->lr_decay_at[1], 0.75);
    cr_expect_eq(cfg->lr_decay_factor, 0.5);
    cr_expect_eq(cfg->l2, 0.0);
    cr_expect_eq(cfg->l2_form, L2_FORM_ALL);
    cr_expect_eq(cfg->init, INIT_PYTORCH);
    cr_expect_eq(cfg->bn_eps, 2e-5);
    cr_expect_eq(cfg->bn_momentum, 0.0);
    cr_expect_eq(cfg->adam_beta1, 0.8);
    cr_expect_eq(cfg->adam_beta2, 0.99);
    cr_expect_eq(cfg->adam_eps, 1e-9);
    cr_expect_eq(cfg->progress_every, 25);
    cr_assert_eq(cfg->pattern_count, 2);
    cr_expect_str_eq(cfg->patterns[0].name, "X");
    cr_expect_eq(cfg->patterns[0].mode, 1);
    cr_expect_eq(cfg->patterns[0].alpha, 1);
    cr_expect_str_eq(cfg->patterns[1].name, "Y");
    cr_expect_eq(cfg->patterns[1].mode, 3);
    cr_expect_eq(cfg->patterns[1].alpha, 2);
    cr_expect_eq(cfg->repeats, 5);
    cr_expect_eq(cfg->ranks_per_run, 2);
    free(cfg);
}

Test(config, accepts_every_boolean_spelling) {
    static const char *const spellings[][2] = {
        {"true", "1"}, {"1", "1"}, {"yes", "1"}, {"on", "1"}, {"TRUE", "1"}, {"Yes", "1"},
        {"false", "0"}, {"0", "0"}, {"no", "0"}, {"off", "0"}, {"Off", "0"},
    };
    config *cfg = new_config();
    for (size_t i = 0; i < COUNT(spellings); i++) {
        char text[64];
        snprintf(text, sizeof text, "[data]\naugment = %s\n", spellings[i][0]);
        bneck_error err = {{0}};
        cr_assert_eq(load_text(cfg, text, 0, NULL, &err), 0, "%s: %s", spellings[i][0], err.message);
        cr_expect_eq(cfg->augment, atoi(spellings[i][1]), "%s", spellings[i][0]);
        remove_temp_files();
    }
    free(cfg);
}

/* Each recipe brings its script's augmentation; a key given says otherwise, in either
 * order; the old boolean spellings keep their meaning, and what is written reads back. */
Test(config, augmentation_follows_the_recipe_unless_given) {
    static const struct {
        const char *text;
        int augment;
    } cases[] = {
        {"[train]\nrecipe = keras\n", AUGMENT_SHIFT},
        {"[train]\nrecipe = pytorch\n", AUGMENT_CROP_FLIP},
        {"[data]\naugment = true\n[train]\nrecipe = keras\n", AUGMENT_CROP_FLIP},
        {"[train]\nrecipe = pytorch\n[data]\naugment = shift\n", AUGMENT_SHIFT},
        {"[data]\naugment = crop-flip\n", AUGMENT_CROP_FLIP},
        {"[data]\naugment = none\n", AUGMENT_NONE},
        {"[data]\naugment = off\n", AUGMENT_NONE},
        {"[data]\naugment = Shift\n", AUGMENT_SHIFT},
    };
    config *cfg = new_config(), *again = new_config();
    for (size_t i = 0; i < COUNT(cases); i++) {
        bneck_error err = {{0}};
        cr_assert_eq(load_text(cfg, cases[i].text, 0, NULL, &err), 0, "%s", err.message);
        cr_expect_eq(cfg->augment, cases[i].augment, "%s", cases[i].text);
        char written[8192];
        cr_assert_gt(config_write(cfg, written, (int)sizeof written), 0);
        cr_expect(strstr(written, cases[i].augment == AUGMENT_SHIFT ? "augment = shift\n"
                                  : cases[i].augment ? "augment = true\n" : "augment = false\n"),
                  "%s", written);
        cr_assert_eq(load_text(again, written, 0, NULL, &err), 0, "%s", err.message);
        cr_expect_eq(again->augment, cfg->augment, "%s read back", cases[i].text);
        remove_temp_files();
    }
    free(cfg);
    free(again);
}

Test(config, reads_crlf_files) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[train]\r\nepochs = 3\r\n[run]\r\nname = dos\r\n", 0, NULL, &err), 0, "%s",
                 err.message);
    cr_expect_eq(cfg->epochs, 3);
    cr_expect_str_eq(cfg->name, "dos");
    free(cfg);
}

/* --- defaults that follow other keys ------------------------------------------------------ */

Test(config, output_defaults_to_results_name) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[run]\nname = quick\n", 0, NULL, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->output, "results/quick");

    const char *const rename[] = {"run.name=other"};
    cr_assert_eq(load_text(cfg, "[run]\nname = quick\n", 1, rename, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->output, "results/other");

    cr_assert_eq(load_text(cfg, "[run]\noutput = elsewhere\nname = quick\n", 0, NULL, &err), 0, "%s",
                 err.message);
    cr_expect_str_eq(cfg->output, "elsewhere");
    free(cfg);
}

Test(config, data_dir_defaults_follow_dataset) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[data]\ndataset = cifar10\n", 0, NULL, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->data_dir, "data/cifar-10-batches-bin");

    const char *const back[] = {"data.dataset=fashion-mnist"};
    cr_assert_eq(load_text(cfg, "[data]\ndataset = cifar10\n", 1, back, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->data_dir, "/usr/share/datasets/fashion-mnist");

    cr_assert_eq(load_text(cfg, "[data]\ndir = /mnt/c10\ndataset = cifar10\n", 0, NULL, &err), 0, "%s",
                 err.message);
    cr_expect_str_eq(cfg->data_dir, "/mnt/c10");
    free(cfg);
}

/* --- patterns ----------------------------------------------------------------------- */

Test(config, patterns_parse) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[sweep]\npatterns = A:1:1, B:2:2,C : 3 : 4 ,long-name_1.x:2:2\n", 0, NULL, &err),
                 0, "%s", err.message);
    cr_assert_eq(cfg->pattern_count, 4);
    cr_expect_str_eq(cfg->patterns[2].name, "C");
    cr_expect_eq(cfg->patterns[2].mode, 3);
    cr_expect_eq(cfg->patterns[2].alpha, 4);
    cr_expect_str_eq(cfg->patterns[3].name, "long-name_1.x");
    cr_expect_eq(cfg->patterns[3].alpha, 2);

    /* a list may continue on indented lines, and a trailing comma is harmless */
    cr_assert_eq(load_text(cfg, "[sweep]\npatterns = A:1:1, B:2:2, ; comment\n    C:2:4, ; comment\n  D:3:2,\nrepeats = 2\n",
                           0, NULL, &err),
                 0, "%s", err.message);
    cr_assert_eq(cfg->pattern_count, 4);
    cr_expect_str_eq(cfg->patterns[3].name, "D");
    cr_expect_eq(cfg->repeats, 2);

    const char *const one[] = {"sweep.patterns=Q:3:2"};
    cr_assert_eq(load_text(cfg, "[sweep]\npatterns = A:1:1, B:2:2\n", 1, one, &err), 0, "%s", err.message);
    cr_assert_eq(cfg->pattern_count, 1);
    cr_expect_str_eq(cfg->patterns[0].name, "Q");
    cr_expect_eq(cfg->patterns[1].name[0], '\0', "unused pattern slots are cleared");

    /* exactly the maximum */
    char text[512] = "[sweep]\npatterns = P0:2:2";
    for (int i = 1; i < CONFIG_MAX_PATTERNS; i++) {
        char item[32];
        snprintf(item, sizeof item, ",\n  P%d:2:2", i);
        strcat(text, item);
    }
    strcat(text, "\n");
    cr_assert_eq(load_text(cfg, text, 0, NULL, &err), 0, "%s", err.message);
    cr_expect_eq(cfg->pattern_count, CONFIG_MAX_PATTERNS);
    free(cfg);
}

Test(config, bad_patterns_are_rejected) {
    char too_many[512] = "[sweep]\npatterns = P0:2:2";
    for (int i = 1; i <= CONFIG_MAX_PATTERNS; i++) {
        char item[32];
        snprintf(item, sizeof item, ",\n  P%d:2:2", i);
        strcat(too_many, item);
    }
    strcat(too_many, "\n");
    const bad_file_case cases[] = {
        {"[sweep]\npatterns = A:1:1, A:2:2\n", 2, "patterns", "unique"},
        {"[sweep]\npatterns = A:1:1, :2:2\n", 2, "patterns", "':2:2'"},
        {"[sweep]\npatterns = A:1:1, abcdefghijklmnop:2:2\n", 2, "patterns", "abcdefghijklmnop"},
        {"[sweep]\npatterns = a/b:2:2\n", 2, "patterns", "a/b"},
        {"[sweep]\npatterns = A:1\n", 2, "patterns", "name:mode:alpha"},
        {"[sweep]\npatterns = A:1:1:1\n", 2, "patterns", "name:mode:alpha"},
        {"[sweep]\npatterns = A:4:1\n", 2, "patterns", "mode"},
        {"[sweep]\npatterns = B:2:0\n", 2, "patterns", "alpha"},
        {"[sweep]\npatterns = B:2:x\n", 2, "patterns", "alpha"},
        {"[sweep]\npatterns = E:3:536870912\n", 2, "patterns", "alpha 1, 2 or 4 in name:mode:alpha"},
        {"[sweep]\npatterns = A:1:1,\n  E:3:8\n", 3, "patterns", "alpha 1, 2 or 4 in name:mode:alpha"},
        {"[sweep]\npatterns = A:1:1, B:2:2,\n  C:2:4,\n  B:3:2\n", 4, "patterns", "unique pattern names"},
        {"[sweep]\npatterns = A:1:2\n", 2, "patterns", "mode 1"},
        {"[sweep]\npatterns = A:1:1,,B:2:2\n", 2, "patterns", "separated by commas"},
        {"[sweep]\npatterns =\n", 2, "patterns", "at least one pattern"},
        {"[sweep]\npatterns = A:1:1\n  B:2:2\n", 2, "patterns", "a comma at the end of each line"},
        {too_many, 2, "patterns", "at most 16"},
    };
    expect_file_errors(cases, COUNT(cases));
}

/* --- recipe presets ----------------------------------------------------------------- */

static void expect_pytorch_preset(const config *cfg) {
    cr_expect_eq(cfg->recipe, RECIPE_PYTORCH);
    cr_expect_eq(cfg->bn_eps, 1e-5);
    cr_expect_eq(cfg->bn_momentum, 0.9);
    cr_expect_eq(cfg->adam_eps, 1e-8);
    cr_expect_eq(cfg->l2_form, L2_FORM_ALL);
    cr_expect_eq(cfg->init, INIT_PYTORCH);
}

Test(config, pytorch_recipe_sets_its_preset) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[train]\nrecipe = pytorch\n", 0, NULL, &err), 0, "%s", err.message);
    expect_pytorch_preset(cfg);
    cr_expect_eq(cfg->adam_beta1, 0.9, "keys outside the preset keep their defaults");
    cr_expect_eq(cfg->pool_branch, POOL_BRANCH_KERAS);

    const char *const by_override[] = {"--train.recipe=pytorch"};
    cr_assert_eq(config_load(cfg, NULL, 1, by_override, &err), 0, "%s", err.message);
    expect_pytorch_preset(cfg);

    /* an override back to keras restores the keras preset */
    const char *const back[] = {"train.recipe=keras"};
    cr_assert_eq(load_text(cfg, "[train]\nrecipe = pytorch\n", 1, back, &err), 0, "%s", err.message);
    cr_expect_eq(cfg->recipe, RECIPE_KERAS);
    cr_expect_eq(cfg->bn_eps, 1e-3);
    cr_expect_eq(cfg->bn_momentum, 0.99);
    cr_expect_eq(cfg->adam_eps, 1e-7);
    cr_expect_eq(cfg->l2_form, L2_FORM_KERNELS);
    cr_expect_eq(cfg->init, INIT_GLOROT);
    free(cfg);
}

Test(config, explicit_keys_beat_the_recipe_whatever_the_order) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    /* bn_eps before the recipe line, l2_form after it: both win */
    cr_assert_eq(load_text(cfg, "[train]\nbn_eps = 0.01\nrecipe = pytorch\nl2_form = kernels\n", 0, NULL, &err), 0,
                 "%s", err.message);
    cr_expect_eq(cfg->recipe, RECIPE_PYTORCH);
    cr_expect_eq(cfg->bn_eps, 0.01);
    cr_expect_eq(cfg->l2_form, L2_FORM_KERNELS);
    cr_expect_eq(cfg->adam_eps, 1e-8, "the rest of the preset still applies");

    /* the recipe given by override still sits under the file's explicit keys */
    const char *const recipe[] = {"train.recipe=pytorch"};
    cr_assert_eq(load_text(cfg, "[train]\nadam_eps = 1e-6\n", 1, recipe, &err), 0, "%s", err.message);
    cr_expect_eq(cfg->adam_eps, 1e-6);
    cr_expect_eq(cfg->bn_eps, 1e-5);

    /* and an override of a preset key beats a file recipe */
    const char *const eps[] = {"train.bn_eps=3e-4"};
    cr_assert_eq(load_text(cfg, "[train]\nrecipe = pytorch\n", 1, eps, &err), 0, "%s", err.message);
    cr_expect_eq(cfg->bn_eps, 3e-4);
    cr_expect_eq(cfg->bn_momentum, 0.9);
    free(cfg);
}

/* --- overrides ------------------------------------------------------------------------- */

Test(config, overrides_win_over_the_file_and_later_overrides_win) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    const char *const overrides[] = {
        "train.epochs=5", "--train.epochs = 9", " sweep . repeats =  3 ", "--run.output=a=b", "model.mode=2",
        "model.alpha=2",
    };
    cr_assert_eq(load_text(cfg, "[train]\nepochs = 2\n[sweep]\nrepeats = 1\n", (int)COUNT(overrides), overrides,
                           &err),
                 0, "%s", err.message);
    cr_expect_eq(cfg->epochs, 9);
    cr_expect_eq(cfg->repeats, 3);
    cr_expect_str_eq(cfg->output, "a=b", "the value is everything after the first '='");
    cr_expect_eq(cfg->mode, 2);
    cr_expect_eq(cfg->alpha, 2);
    free(cfg);
}

Test(config, overrides_may_hold_values_too_long_for_a_file_line) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    char override[600];
    snprintf(override, sizeof override, "run.output=/%0500d", 0);
    const char *const overrides[] = {override};
    cr_assert_eq(config_load(cfg, NULL, 1, overrides, &err), 0, "%s", err.message);
    cr_expect_eq(strlen(cfg->output), 501);
    free(cfg);
}

Test(config, bad_overrides_name_the_override) {
    static const struct {
        const char *override;
        const char *also;
    } cases[] = {
        {"train.epochs", "section.key=value"},
        {"epochs=3", "section.key=value"},
        {"--train.epoch=3", "accepted keys in [train]"},
        {"training.epochs=3", "unknown section"},
        {"train.epochs=0", "[train] epochs: expected an integer from 1 to 100000, got '0'"},
        {"run.threads=100000", "[run] threads: expected an integer from 0 to 4096, got '100000'"},
        {"model.mode=1", NULL}, /* fine by itself; see below */
        {"run.name=a\nb", "control character"},
        {"sweep.patterns=E:3:5", "alpha 1, 2 or 4 in name:mode:alpha"},
    };
    config *cfg = new_config();
    for (size_t i = 0; i < COUNT(cases); i++) {
        if (cases[i].also == NULL) continue;
        bneck_error err = {{0}};
        const char *const overrides[] = {"train.batch=4", cases[i].override};
        cr_expect_eq(config_load(cfg, NULL, 2, overrides, &err), -1, "accepted %s", cases[i].override);
        expect_contains(err.message, "command line", cases[i].override);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", cases[i].override);
        if (!strchr(cases[i].override, '\n')) expect_contains(err.message, quoted, cases[i].override);
        expect_contains(err.message, cases[i].also, cases[i].override);
    }

    /* an override that breaks a rule across keys blames the key and says where mode came from */
    bneck_error err = {{0}};
    const char *const overrides[] = {"model.mode=1"};
    cr_expect_eq(load_text(cfg, "[model]\nmode = 2\nalpha = 4\n", 1, overrides, &err), -1);
    expect_contains(err.message, ":3: [model] alpha", "mode 1 with alpha 4");
    expect_contains(err.message, "model.mode=1", "mode 1 with alpha 4");

    /* strings too long for their field */
    char long_path[700];
    snprintf(long_path, sizeof long_path, "data.dir=/%0600d", 0);
    const char *const too_long[] = {long_path};
    cr_expect_eq(config_load(cfg, NULL, 1, too_long, &err), -1);
    expect_contains(err.message, "[data] dir: expected a non-empty path of at most 511 characters", "long dir");
    free(cfg);
}

/* --- value errors -------------------------------------------------------------------- */

Test(config, unknown_sections_and_keys) {
    const bad_file_case cases[] = {
        {"[run]\nname = x\n[runn]\nname = y\n", 4, "name", "unknown section [runn]"},
        {"[train]\nepochs = 3\nepoch = 4\n", 3, "epoch", "accepted keys in [train]: recipe, epochs, batch"},
        {"[train]\nEpochs = 3\n", 2, "Epochs", "unknown key"},
        {"; top\nepochs = 3\n[train]\n", 2, "epochs", "outside any section"},
    };
    expect_file_errors(cases, COUNT(cases));
}

Test(config, bad_numbers) {
    const bad_file_case cases[] = {
        {"[train]\nepochs = 12x\n", 2, "epochs", "expected an integer from 1 to 100000, got '12x'"},
        {"[train]\nepochs = 99999999999999999999\n", 2, "epochs", "integer"},
        {"[train]\nepochs = 3000000000\n", 2, "epochs", "integer"},
        {"[train]\nepochs = 2.5\n", 2, "epochs", "integer"},
        {"[train]\nepochs =\n", 2, "epochs", "got ''"},
        {"[run]\nseed = -1\n", 2, "seed", "integer from 0"},
        {"[run]\nseed = 18446744073709551616\n", 2, "seed", "integer from 0"},
        {"[train]\nlr = fast\n", 2, "lr", "expected a number > 0, got 'fast'"},
        {"[train]\nlr = 1e-3x\n", 2, "lr", "number"},
        {"[train]\nlr = nan\n", 2, "lr", "number"},
        {"[train]\nlr = inf\n", 2, "lr", "number"},
        {"[train]\nl2 = 1e999\n", 2, "l2", "number"},
        {"[train]\nlr_decay_at = 0.5\n", 2, "lr_decay_at", "two fractions"},
        {"[train]\nlr_decay_at = 0.5, x\n", 2, "lr_decay_at", "two fractions"},
        {"[train]\nlr_decay_at = 0.5, 0.6, 0.7\n", 2, "lr_decay_at", "two fractions"},
        {"[data]\naugment = maybe\n", 2, "augment", "shift (the Keras script's shifts of up to 20 %), crop-flip or true"},
    };
    expect_file_errors(cases, COUNT(cases));
}

Test(config, bad_choices) {
    const bad_file_case cases[] = {
        {"[run]\ndevice = gpu\n", 2, "device", "one of auto, cpu, cuda"},
        {"[run]\nprecision = fp16\n", 2, "precision", "one of fp32, tf32, bf16"},
        {"[run]\ngraph = yes\n", 2, "graph", "one of auto, on, off"},
        {"[run]\nconv = fft\n", 2, "conv", "one of auto, cudnn, gemm"},
        {"[data]\ndataset = mnist\n", 2, "dataset", "one of fashion-mnist, cifar10"},
        {"[model]\npool_branch = tf\n", 2, "pool_branch", "one of keras, pytorch"},
        {"[train]\nrecipe = caffe\n", 2, "recipe", "one of keras, pytorch"},
        {"[train]\nl2_form = some\n", 2, "l2_form", "one of kernels, all"},
        {"[train]\ninit = he\n", 2, "init", "one of glorot, pytorch"},
    };
    expect_file_errors(cases, COUNT(cases));
}

Test(config, out_of_range_values) {
    const bad_file_case cases[] = {
        {"[run]\nthreads = -1\n", 2, "threads", "from 0 to 4096"},
        {"[run]\ncommit_minutes = -1\n", 2, "commit_minutes", ">= 0"},
        {"[data]\ntrain_limit = -5\n", 2, "train_limit", ">= 0"},
        {"[data]\nval_limit = -5\n", 2, "val_limit", ">= 0"},
        {"[train]\nepochs = 0\n", 2, "epochs", "from 1 to 100000"},
        {"[train]\nbatch = 0\n", 2, "batch", "from 1 to 65536"},
        {"[train]\nbatch = 2147483647\n", 2, "batch", "from 1 to 65536"},
        {"[train]\nval_batch = -1\n", 2, "val_batch", "from 1 to 65536"},
        {"[train]\nval_batch = 65537\n", 2, "val_batch", "from 1 to 65536"},
        {"[train]\nprogress_every = -1\n", 2, "progress_every", ">= 0"},
        {"[train]\nlr = 0\n", 2, "lr", "> 0"},
        {"[train]\nlr = -1e-3\n", 2, "lr", "> 0"},
        {"[train]\nlr_decay_at = 0.9, 0.5\n", 2, "lr_decay_at", "0 < a <= b <= 1"},
        {"[train]\nlr_decay_at = 0, 0.5\n", 2, "lr_decay_at", "0 < a <= b <= 1"},
        {"[train]\nlr_decay_at = 0.5, 1.5\n", 2, "lr_decay_at", "0 < a <= b <= 1"},
        {"[train]\nlr_decay_factor = 0\n", 2, "lr_decay_factor", "> 0"},
        {"[train]\nl2 = -1e-3\n", 2, "l2", ">= 0"},
        {"[train]\nbn_eps = 0\n", 2, "bn_eps", "> 0"},
        {"[train]\nbn_momentum = 1\n", 2, "bn_momentum", ">= 0 and < 1"},
        {"[train]\nbn_momentum = -0.1\n", 2, "bn_momentum", ">= 0 and < 1"},
        {"[train]\nadam_beta1 = 1\n", 2, "adam_beta1", "< 1"},
        {"[train]\nadam_beta2 = -0.5\n", 2, "adam_beta2", ">= 0"},
        {"[train]\nadam_eps = 0\n", 2, "adam_eps", "> 0"},
        {"[model]\nmode = 4\n", 2, "mode", "from 1 to 3"},
        {"[model]\nmode = 0\n", 2, "mode", "from 1 to 3"},
        {"[model]\nalpha = 0\n", 2, "alpha", "from 1 to 1024"},
        {"[model]\nmode = 3\nalpha = 536870912\n", 3, "alpha", "from 1 to 1024"},
        {"[model]\nmode = 1\nalpha = 2\n", 3, "alpha", "mode is 1"},
        {"[model]\nmode = 2\nalpha = 3\n", 3, "alpha", "alpha 1, 2 or 4 for a bottleneck mode"},
        {"[model]\nalpha = 2\n", 2, "alpha", "mode is 1 (from the default)"},
        {"[sweep]\nrepeats = 0\n", 2, "repeats", "from 1 to 10000"},
        {"[sweep]\nrepeats = 2147483647\n", 2, "repeats", "from 1 to 10000"},
        {"[sweep]\nranks_per_run = 0\n", 2, "ranks_per_run", ">= 1"},
    };
    expect_file_errors(cases, COUNT(cases));

    /* the bounds themselves are fine */
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_expect_eq(load_text(cfg,
                           "[train]\nlr_decay_at = 1, 1\nbn_momentum = 0\nadam_beta1 = 0\nl2 = 0\n"
                           "[model]\nmode = 3\nalpha = 1\n",
                           0, NULL, &err),
                 0, "%s", err.message);
    free(cfg);
}

Test(config, arguments_are_told_apart_as_the_programs_need) {
    cr_expect_eq(config_argument_kind("train.epochs=3"), CONFIG_ARGUMENT_OVERRIDE);
    cr_expect_eq(config_argument_kind("--train.epochs=3"), CONFIG_ARGUMENT_OVERRIDE);
    cr_expect_eq(config_argument_kind("run.output=/a/b.c"), CONFIG_ARGUMENT_OVERRIDE);
    cr_expect_eq(config_argument_kind("epochs=3"), CONFIG_ARGUMENT_OVERRIDE,
                 "no such file: a malformed override, so that its message shows the form");
    cr_expect_eq(config_argument_kind("--dry-run"), CONFIG_ARGUMENT_OPTION);
    cr_expect_eq(config_argument_kind("--bogus=1"), CONFIG_ARGUMENT_OPTION);
    cr_expect_eq(config_argument_kind("configs/quick.ini"), CONFIG_ARGUMENT_FILE);
    cr_expect_eq(config_argument_kind("results.v2/run=2.ini"), CONFIG_ARGUMENT_FILE,
                 "a '/' before the '=': a path");
    cr_expect_eq(config_argument_kind("/tmp/a.b/x=1"), CONFIG_ARGUMENT_FILE);
}

Test(config, override_sets_reads_an_override_as_config_load_does) {
    cr_expect(config_override_sets("run.output=/x", "run", "output"));
    cr_expect(config_override_sets("--run.output=/x", "run", "output"));
    cr_expect(config_override_sets(" run . output = /x", "run", "output"));
    cr_expect(!config_override_sets("run.outputs=/x", "run", "output"));
    cr_expect(!config_override_sets("run.name=output", "run", "output"));
    cr_expect(!config_override_sets("data.output=/x", "run", "output"));
    cr_expect(!config_override_sets("run.output", "run", "output"), "no '=': not an override");
    /* and config_load takes the spaced spelling as the same key */
    config *cfg = new_config();
    bneck_error err = {{0}};
    const char *const spaced[] = {" run . output = /x"};
    cr_assert_eq(config_load(cfg, NULL, 1, spaced, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->output, "/x");
    free(cfg);
}

Test(config, paths_are_stored_without_trailing_slashes) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[data]\ndir = /data/fmnist//\n[run]\noutput = out/\n", 0, NULL, &err), 0,
                 "%s", err.message);
    cr_expect_str_eq(cfg->data_dir, "/data/fmnist");
    cr_expect_str_eq(cfg->output, "out");
    const char *const commented[] = {"run.output=/tmp/a ;b"};
    cr_expect_eq(config_load(cfg, NULL, 1, commented, &err), -1, "a path that would not read back");
    expect_contains(err.message, "without ' ;'", "a path with ' ;'");
    const char *const root[] = {"data.dir=/"};
    cr_assert_eq(config_load(cfg, NULL, 1, root, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->data_dir, "/", "the root stays the root");
    free(cfg);
}

Test(config, strings_that_do_not_fit_or_are_unsafe) {
    const bad_file_case cases[] = {
        {"[run]\nname = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 2, "name", "1 to 63"},
        {"[run]\nname = ../up\n", 2, "name", "letters, digits"},
        {"[run]\nname = two words\n", 2, "name", "letters, digits"},
        {"[run]\nname =\n", 2, "name", "got ''"},
        {"[run]\noutput =\n", 2, "output", "non-empty path"},
    };
    expect_file_errors(cases, COUNT(cases));
}

/* --- file-level errors ----------------------------------------------------------------- */

Test(config, duplicate_keys_name_both_lines) {
    const bad_file_case cases[] = {
        {"[train]\nepochs = 3\nbatch = 4\nepochs = 5\n", 4, "epochs", "first set at line 2"},
        /* the same section opened twice is still one section */
        {"[train]\nepochs = 3\n[run]\nname = x\n[train]\nepochs = 5\n", 6, "epochs", "first set at line 2"},
        {"[train]\nrecipe = keras\nrecipe = pytorch\n", 3, "recipe", "first set at line 2"},
    };
    expect_file_errors(cases, COUNT(cases));
}

Test(config, missing_file_names_it_and_the_reason) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    const char *path = "/tmp/bneck_test_config_that_does_not_exist.ini";
    cr_assert_eq(config_load(cfg, path, 0, NULL, &err), -1);
    expect_contains(err.message, path, "missing file");
    expect_contains(err.message, strerror(ENOENT), "missing file");

    cr_assert_eq(config_load(cfg, "/tmp", 0, NULL, &err), -1);
    expect_contains(err.message, "/tmp", "a directory");
    free(cfg);
}

/* The size limit is 1 MiB exactly: the check once refused only past 2 MiB, while its
 * message named the smaller limit. */
Test(config, a_file_of_1_mib_is_read_and_one_byte_more_is_refused) {
    enum { LIMIT = 1 << 20 };
    const char *head = "[train]\nepochs = 3\n";
    char *content = malloc(LIMIT + 2);
    cr_assert_not_null(content);
    strcpy(content, head);
    memset(content + strlen(head), '\n', LIMIT - strlen(head));
    content[LIMIT] = '\0';
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_expect_eq(load_text(cfg, content, 0, NULL, &err), 0, "%s", err.message);
    cr_expect_eq(cfg->epochs, 3);

    content[LIMIT] = '\n';
    content[LIMIT + 1] = '\0';
    const char *path = write_temp_config(content);
    cr_expect_eq(config_load(cfg, path, 0, NULL, &err), -1, "a file of 1 MiB + 1 byte was accepted");
    expect_contains(err.message, path, "1 MiB + 1 byte");
    expect_contains(err.message, "larger than 1 MiB (1048576 bytes)", "1 MiB + 1 byte");
    free(content);
    free(cfg);
}

/* A FIFO once hung config_load in open() (bneck-sweep even ignored TERM there); a device
 * such as /dev/null read as an empty config, the defaults: a 100-epoch run. */
Test(config, a_fifo_or_device_is_refused_at_once, .timeout = 20) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    char path[64];
    snprintf(path, sizeof path, "/tmp/bneck_test_config_fifo_%d.ini", (int)getpid());
    unlink(path);
    cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo: %s", strerror(errno));
    const int status = config_load(cfg, path, 0, NULL, &err);
    unlink(path);
    cr_assert_eq(status, -1);
    expect_contains(err.message, path, "a FIFO");
    expect_contains(err.message, "not a regular file (a FIFO)", "a FIFO");

    cr_assert_eq(config_load(cfg, "/dev/null", 0, NULL, &err), -1);
    expect_contains(err.message, "/dev/null: not a regular file (a device or socket)", "/dev/null");
    free(cfg);
}

Test(config, syntax_errors_report_libinih_line) {
    const bad_file_case cases[] = {
        {"[train]\nepochs = 3\n[sweep\nrepeats = 2\n", 3, "[sweep", "syntax error"},
        {"[train]\nepochs = 3\n\njust some words\n", 4, "just some words", "syntax error"},
        /* a syntax error after a bad key: the earlier line is the one reported */
        {"[train]\nepoch = 3\njust some words\n", 2, "epoch", "unknown key"},
        /* CR-only line endings: libinih would read one line and drop every key silently */
        {"[train]\repochs = 3\r", 1, "carriage return", "LF (or CRLF) line endings"},
        {"[train]\r\nepochs = 3\r\n[run]\rname = x\n", 3, "carriage return", NULL},
    };
    expect_file_errors(cases, COUNT(cases));
}

Test(config, long_lines_and_stray_indentation) {
    char long_line[400];
    snprintf(long_line, sizeof long_line, "[run]\nname = x\noutput = /%0300d\n", 0);
    const bad_file_case cases[] = {
        {long_line, 3, "line is longer than", "libinih"},
        {"[train]\nepochs = 3\n  batch = 4\n", 3, "epochs", "indented line"},
        /* an indented section after a path: its keys are not part of the path */
        {"[run]\n  output = /tmp/out\n  threads = 1\n", 3, "output", "lines that begin with '/'"},
        {"[data]\ndir = /data\n  train_limit = 512\n", 3, "dir", "indented line"},
    };
    expect_file_errors(cases, COUNT(cases));

    /* an indented first key of a section is an ordinary key in libinih */
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_expect_eq(load_text(cfg, "[train]\n  epochs = 3\n[run]\n  name = ind\n", 0, NULL, &err), 0, "%s",
                 err.message);
    cr_expect_eq(cfg->epochs, 3);
    cr_expect_str_eq(cfg->name, "ind");
    free(cfg);
}

Test(config, failed_load_leaves_the_config_untouched) {
    config *cfg = new_config();
    config_defaults(cfg);
    cfg->epochs = 42;
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[train]\nbatch = 7\nepochs = 0\n", 0, NULL, &err), -1);
    cr_expect_eq(cfg->epochs, 42);
    cr_expect_eq(cfg->batch, 128);
    free(cfg);
}

/* --- the stored text --------------------------------------------------------------------- */

Test(config, text_holds_the_file_then_the_overrides) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    const char *const overrides[] = {"train.epochs=5", "--run.seed=7"};
    cr_assert_eq(load_text(cfg, "[train]\nepochs = 2", 2, overrides, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->text, "[train]\nepochs = 2\n; overrides:\n; train.epochs=5\n; --run.seed=7\n");

    cr_assert_eq(load_text(cfg, "[train]\nepochs = 2\n", 0, NULL, &err), 0, "%s", err.message);
    cr_expect_str_eq(cfg->text, "[train]\nepochs = 2\n");
    free(cfg);
}

Test(config, text_longer_than_the_buffer_is_cut_at_a_line) {
    size_t size = 2 * CONFIG_MAX_TEXT;
    char *text = malloc(size + 64);
    cr_assert_not_null(text);
    size_t length = (size_t)sprintf(text, "[train]\nepochs = 2\n");
    while (length < size) length += (size_t)sprintf(text + length, "; padding comment line %zu\n", length);
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, text, 0, NULL, &err), 0, "%s", err.message);
    size_t kept = strlen(cfg->text);
    cr_expect_lt(kept, (size_t)CONFIG_MAX_TEXT);
    cr_expect_gt(kept, (size_t)CONFIG_MAX_TEXT - 200);
    const char *marker = "; [config text truncated]\n";
    cr_expect_str_eq(cfg->text + kept - strlen(marker), marker);
    cr_expect_eq(strncmp(cfg->text, text, kept - strlen(marker)), 0, "the kept part is the file's start");
    free(cfg);
    free(text);
}

/* --- config_write -------------------------------------------------------------------- */

static void expect_same_config(const config *a, const config *b) {
    cr_expect_str_eq(a->name, b->name);
    cr_expect_eq(a->seed, b->seed);
    cr_expect_str_eq(a->device, b->device);
    cr_expect_str_eq(a->precision, b->precision);
    cr_expect_str_eq(a->conv_engine, b->conv_engine);
    cr_expect_eq(a->deterministic, b->deterministic);
    cr_expect_str_eq(a->graph, b->graph);
    cr_expect_eq(a->threads, b->threads);
    cr_expect_str_eq(a->output, b->output);
    cr_expect_str_eq(a->dataset, b->dataset);
    cr_expect_str_eq(a->data_dir, b->data_dir);
    cr_expect_eq(a->train_limit, b->train_limit);
    cr_expect_eq(a->val_limit, b->val_limit);
    cr_expect_eq(a->augment, b->augment);
    cr_expect_eq(a->mode, b->mode);
    cr_expect_eq(a->alpha, b->alpha);
    cr_expect_eq(a->pool_branch, b->pool_branch);
    cr_expect_eq(a->recipe, b->recipe);
    cr_expect_eq(a->epochs, b->epochs);
    cr_expect_eq(a->batch, b->batch);
    cr_expect_eq(a->val_batch, b->val_batch);
    cr_expect_eq(a->lr, b->lr);
    cr_expect_eq(a->lr_decay_at[0], b->lr_decay_at[0]);
    cr_expect_eq(a->lr_decay_at[1], b->lr_decay_at[1]);
    cr_expect_eq(a->lr_decay_factor, b->lr_decay_factor);
    cr_expect_eq(a->l2, b->l2);
    cr_expect_eq(a->l2_form, b->l2_form);
    cr_expect_eq(a->init, b->init);
    cr_expect_eq(a->bn_eps, b->bn_eps);
    cr_expect_eq(a->bn_momentum, b->bn_momentum);
    cr_expect_eq(a->adam_beta1, b->adam_beta1);
    cr_expect_eq(a->adam_beta2, b->adam_beta2);
    cr_expect_eq(a->adam_eps, b->adam_eps);
    cr_expect_eq(a->progress_every, b->progress_every);
    cr_expect_eq(a->commit_minutes, b->commit_minutes);
    cr_assert_eq(a->pattern_count, b->pattern_count);
    for (int i = 0; i < a->pattern_count; i++) {
        cr_expect_str_eq(a->patterns[i].name, b->patterns[i].name);
        cr_expect_eq(a->patterns[i].mode, b->patterns[i].mode);
        cr_expect_eq(a->patterns[i].alpha, b->patterns[i].alpha);
    }
    cr_expect_eq(a->repeats, b->repeats);
    cr_expect_eq(a->ranks_per_run, b->ranks_per_run);
}

static void expect_round_trip(const config *original) {
    static char written[8192];
    int length = config_write(original, written, (int)sizeof written);
    cr_assert_gt(length, 0);
    cr_expect_eq((size_t)length, strlen(written));
    config *reread = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(reread, written, 0, NULL, &err), 0, "%s\n--- written:\n%s", err.message, written);
    expect_same_config(original, reread);
    cr_expect_str_eq(reread->text, written);
    free(reread);
}

Test(config, write_round_trips_defaults) {
    config *cfg = new_config();
    config_defaults(cfg);
    expect_round_trip(cfg);
    free(cfg);
}

Test(config, write_round_trips_every_field) {
    config *cfg = new_config();
    config_defaults(cfg);
    snprintf(cfg->name, sizeof cfg->name, "trip-1.x");
    cfg->seed = UINT64_MAX - 3;
    snprintf(cfg->device, sizeof cfg->device, "cpu");
    snprintf(cfg->precision, sizeof cfg->precision, "tf32");
    snprintf(cfg->conv_engine, sizeof cfg->conv_engine, "cudnn");
    cfg->deterministic = 1;
    snprintf(cfg->graph, sizeof cfg->graph, "on");
    cfg->threads = 3;
    cfg->commit_minutes = 0.25;
    snprintf(cfg->output, sizeof cfg->output, "/tmp/some out/dir");
    snprintf(cfg->dataset, sizeof cfg->dataset, "cifar10");
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "../cifar");
    cfg->train_limit = 512;
    cfg->val_limit = 256;
    cfg->augment = 0;
    cfg->mode = 2;
    cfg->alpha = 4;
    cfg->pool_branch = POOL_BRANCH_PYTORCH;
    cfg->recipe = RECIPE_PYTORCH;
    cfg->epochs = 11;
    cfg->batch = 32;
    cfg->val_batch = 17;
    cfg->lr = 0.1 + 0.2; /* not exactly 0.3: must still round-trip */
    cfg->lr_decay_at[0] = 1.0 / 3.0;
    cfg->lr_decay_at[1] = 2.0 / 3.0;
    cfg->lr_decay_factor = 0.3;
    cfg->l2 = 5e-4;
    cfg->l2_form = L2_FORM_KERNELS; /* differs from the pytorch preset */
    cfg->init = INIT_GLOROT;
    cfg->bn_eps = 1.234567890123e-5;
    cfg->bn_momentum = 0.95;
    cfg->adam_beta1 = 0.85;
    cfg->adam_beta2 = 0.9995;
    cfg->adam_eps = 3e-8;
    cfg->progress_every = 9;
    cfg->pattern_count = CONFIG_MAX_PATTERNS;
    for (int i = 0; i < CONFIG_MAX_PATTERNS; i++) {
        char name[32];
        snprintf(name, sizeof name, "pattern-no-%02d", i); /* 13 characters: fits a pattern name */
        memcpy(cfg->patterns[i].name, name, strlen(name) + 1);
        cfg->patterns[i].mode = 1 + i % 3;
        cfg->patterns[i].alpha = cfg->patterns[i].mode == 1 ? 1 : 1 << (i % 3); /* 1, 2, 4 */
    }
    cfg->repeats = 4;
    cfg->ranks_per_run = 2;
    expect_round_trip(cfg);
    free(cfg);
}

/* Paths longer than a config line (libinih stops at 197 characters) are written over
 * indented lines, cut before a '/', and come back whole, whatever the directory names
 * hold: white space (libinih strips it at both ends of a line), ';' and '#' (comments),
 * '=' and ':' (key separators), bytes of a multibyte UTF-8 character. */
Test(config, write_round_trips_paths_longer_than_a_line) {
    config *cfg = new_config();
    config_defaults(cfg);
    static const char *const names[] = {"plain", "with space", "trailing space ", "#hash", ";semi",
                                        "key = value", "a:b", "caf\xc3\xa9", " lead"};
    for (int width = 3; width <= 60; width += 3) {
        char path[sizeof cfg->output] = "";
        for (size_t i = 0; strlen(path) + width + 2 < sizeof path; i++) {
            char component[80];
            snprintf(component, sizeof component, "/%s%0*d", names[i % COUNT(names)], width, (int)i);
            if (strlen(path) + strlen(component) >= sizeof path) break;
            strcat(path, component);
        }
        snprintf(cfg->output, sizeof cfg->output, "%s", path);
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s/", path + 1); /* relative */
        cfg->data_dir[strlen(cfg->data_dir) - 1] = '\0';
        expect_round_trip(cfg);
        remove_temp_files(); /* one per round trip; the suite keeps only a few */
    }
    free(cfg);
}

Test(config, a_path_continues_on_indented_lines_joined_as_it_is) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, "[run]\noutput = /scratch/a long\n    /way/off ; a comment\n\t/down\n[data]\ndir = x\n",
                           0, NULL, &err),
                 0, "%s", err.message);
    cr_expect_str_eq(cfg->output, "/scratch/a long/way/off/down");
    cr_expect_str_eq(cfg->data_dir, "x");
    free(cfg);
}

Test(config, write_writes_every_key_and_reports_overflow) {
    config *cfg = new_config();
    config_defaults(cfg);
    char written[4096];
    int length = config_write(cfg, written, (int)sizeof written);
    cr_assert_gt(length, 0);
    static const char *const lines[] = {
        "[run]\n",         "name = run\n",      "seed = 1\n",         "device = auto\n",
        "precision = fp32\n", "conv = auto\n", "deterministic = false\n", "graph = auto\n",
        "threads = 0\n",   "output = results/run\n", "[data]\n",      "dataset = fashion-mnist\n",
        "dir = /usr/share/datasets/fashion-mnist\n",  "train_limit = 0\n", "val_limit = 0\n",
        "augment = shift\n", "[model]\n", "mode = 1\n", "alpha = 1\n", "pool_branch = keras\n", "[train]\n",
        "recipe = keras\n", "epochs = 100\n", "batch = 128\n", "val_batch = 100\n", "lr = 0.001\n",
        "lr_decay_at = 0.5, 0.85\n", "lr_decay_factor = 0.1\n", "l2 = 0.001\n", "l2_form = kernels\n",
        "init = glorot\n", "bn_eps = 0.001\n", "bn_momentum = 0.99\n", "adam_beta1 = 0.9\n",
        "adam_beta2 = 0.999\n", "adam_eps = 1e-07\n", "progress_every = 0\n", "[sweep]\n",
        "patterns = A:1:1, B:2:2, C:2:4, D:3:2,\n    E:3:4\n", "repeats = 1\n", "ranks_per_run = 1\n",
    };
    for (size_t i = 0; i < COUNT(lines); i++) expect_contains(written, lines[i], "config_write");

    cr_expect_eq(config_write(cfg, written, length + 1), length, "exactly enough room");
    cr_expect_eq(config_write(cfg, written, length), -1, "one byte short");
    cr_expect_eq(written[length - 1], '\0', "still terminated");
    cr_expect_eq(config_write(cfg, written, 10), -1);
    cr_expect_eq(config_write(cfg, written, 0), -1);
    free(cfg);
}

/* --device NAME and --device=NAME stand for the override run.device=NAME, so config_load
 * checks the name like any other value; other arguments are left to the caller. */
Test(config, device_option_is_the_run_device_override) {
    char *argv[] = {"prog", "--device", "cpu", "--device=cuda", "--devices=2", "x.ini",
                    "--device"};
    const int argc = (int)COUNT(argv);
    char out[64];
    bneck_error err = {0};
    int i = 1;
    cr_assert_eq(config_device_option(argc, argv, &i, out, sizeof out, &err), 1);
    cr_expect_str_eq(out, "run.device=cpu");
    cr_expect_eq(i, 2, "moved past the value");
    i = 3;
    cr_assert_eq(config_device_option(argc, argv, &i, out, sizeof out, &err), 1);
    cr_expect_str_eq(out, "run.device=cuda");
    cr_expect_eq(i, 3);
    for (i = 4; i <= 5; i++)
        cr_expect_eq(config_device_option(argc, argv, &i, out, sizeof out, &err), 0, "%s",
                     argv[i]);
    i = 6;
    cr_expect_eq(config_device_option(argc, argv, &i, out, sizeof out, &err), -1);
    cr_expect(strstr(err.message, "--device expects auto, cpu or cuda"), "%s", err.message);

    char *bad[] = {"prog", "--device", "tpu"};
    i = 1;
    cr_assert_eq(config_device_option(3, bad, &i, out, sizeof out, &err), 1);
    config *cfg = new_config();
    const char *overrides[] = {out};
    cr_expect_eq(config_load(cfg, NULL, 1, overrides, &err), -1);
    cr_expect(strstr(err.message, "device") && strstr(err.message, "tpu"), "%s", err.message);
    free(cfg);
}

/* configs/quick.ini, and the settings its run files record. */
static const char quick[] = "[run]\nname = quick\nseed = 1\ndevice = auto\nthreads = 0\n"
                            "[data]\ndataset = fashion-mnist\n"
                            "dir = /usr/share/datasets/fashion-mnist\ntrain_limit = 19200\n"
                            "val_limit = 2000\n[model]\nmode = 3\nalpha = 4\n"
                            "[train]\nrecipe = keras\nepochs = 4\nbatch = 128\n"
                            "bn_momentum = 0.9\n[sweep]\npatterns = E:3:4\nrepeats = 1\n";
static const char written[] =
    "[run]\nname = quick\nseed = 1\ndevice = auto\nprecision = fp32\nconv = auto\n"
    "deterministic = false\ngraph = auto\nthreads = 0\noutput = \n\n"
    "[data]\ndataset = fashion-mnist\ndir = /usr/share/datasets/fashion-mnist\n"
    "train_limit = 19200\nval_limit = 2000\naugment = shift\n\n"
    "[model]\nmode = 3\nalpha = 4\npool_branch = keras\n\n"
    "[train]\nrecipe = keras\nepochs = 4\nbatch = 128\nval_batch = 100\nlr = 0.001\n"
    "lr_decay_at = 0.5, 0.85\nlr_decay_factor = 0.1\nl2 = 0.001\nl2_form = kernels\n"
    "init = glorot\nbn_eps = 0.001\nbn_momentum = 0.9\nadam_beta1 = 0.9\n"
    "adam_beta2 = 0.999\nadam_eps = 1e-07\nprogress_every = 0\n\n"
    "[sweep]\nranks_per_run = 1\n";

/* Every run file records the settings it was made with, and a sweep trusts a run file
 * when they are the text it would write, or that text once read back through the parser
 * (run_file_settings_compare_as_read_back). The text is pinned to what older builds
 * wrote, since those compare text only: a resume by an older build keeps our runs too. Pinned to what the run files of
 * configs/quick.ini have said since commit 00a844a; the keys of how a sweep runs (threads,
 * device, progress lines, commits within an epoch) leave it as it is. */
Test(config, run_files_record_the_settings_older_builds_wrote) {
    static const char *const how_it_runs[] = {"run.threads=2", "run.device=cpu",
                                              "train.progress_every=7", "run.commit_minutes=2.5"};
    config *cfg = new_config();
    bneck_error err = {{0}};
    for (int overrides = 0; overrides <= 4; overrides += 4) {
        cr_assert_eq(load_text(cfg, quick, overrides, how_it_runs, &err), 0, "%s", err.message);
        static char settings[CONFIG_MAX_TEXT];
        sweep_output_settings(cfg, settings, sizeof settings);
        cr_expect_str_eq(settings, written, "with %d overrides", overrides);
    }
    free(cfg);
}

/* `text` with its first `from` replaced by `to` (which may be empty), into out. */
static void replaced(char *out, size_t capacity, const char *text, const char *from,
                     const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' is not in the text", from);
    snprintf(out, capacity, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
}

/* A run file written by an older bneck lacks the keys added since; read back through the
 * parser they are at their defaults, and the run is this sweep's (not trained again). A
 * value changed, or a key missing whose default is not this sweep's value, is another
 * sweep's run, and the difference names the line. */
Test(config, run_file_settings_compare_as_read_back) {
    config *cfg = new_config();
    bneck_error err = {{0}};
    cr_assert_eq(load_text(cfg, quick, 0, NULL, &err), 0, "%s", err.message);
    static char wanted[CONFIG_MAX_TEXT], stored[CONFIG_MAX_TEXT], step[CONFIG_MAX_TEXT];
    sweep_output_settings(cfg, wanted, sizeof wanted);
    char difference[256] = "";
    cr_expect(sweep_output_same_settings("A-r0.h5", written, wanted, difference,
                                         sizeof difference));
    /* graph and l2_form at their defaults, lr spelled another way */
    replaced(step, sizeof step, written, "graph = auto\n", "");
    replaced(stored, sizeof stored, step, "l2_form = kernels\n", "");
    replaced(step, sizeof step, stored, "lr = 0.001\n", "lr = 1e-3\n");
    cr_expect(sweep_output_same_settings("A-r0.h5", step, wanted, difference, sizeof difference),
              "%s", difference);
    const struct {
        const char *from, *to, *difference;
    } others[] = {
        {"epochs = 4\n", "epochs = 5\n", "stored 'epochs = 5', this sweep 'epochs = 4'"},
        {"bn_momentum = 0.9\n", "", "stored 'bn_momentum = 0.99', this sweep 'bn_momentum = 0.9'"},
        {"[model]\n", "[model\n", "stored '[model', this sweep '[model]'"}, /* not a config */
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        replaced(stored, sizeof stored, written, others[i].from, others[i].to);
        cr_expect(!sweep_output_same_settings("A-r0.h5", stored, wanted, difference,
                                              sizeof difference), "case %zu", i);
        cr_expect_str_eq(difference, others[i].difference, "case %zu", i);
    }
    free(cfg);
}
