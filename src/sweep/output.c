/* The sweep's output directory, prepared by rank 0 before any training (see output.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "sweep/output.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/log.h"
#include "results/results.h"

enum { PATH_TEXT = 1024 }; /* [run] output is at most 511 characters */

/* Why an existing path cannot be followed: most often a link to nothing. */
static int unusable_path_error(const char *path, bneck_error *err) {
    char target[PATH_TEXT];
    const ssize_t length = readlink(path, target, sizeof target - 1);
    if (length < 0) return bneck_error_set(err, "cannot use %s: %s", path, strerror(errno));
    target[length] = '\0';
    return bneck_error_set(err, "%s is a link to %s, which does not exist: create it, or "
                           "point the link elsewhere", path, target);
}

/* One step of make_directory. EEXIST says nothing of what exists: a file there would fail
 * only at the first commit, and a link to nothing (a scratch directory not made yet) at a
 * confusing "No such file or directory" one level down. */
static int make_one_directory(const char *path, bneck_error *err) {
    if (mkdir(path, 0777) && errno != EEXIST)
        return bneck_error_set(err, "cannot create directory %s: %s", path, strerror(errno));
    struct stat info;
    if (stat(path, &info) == 0) {
        if (!S_ISDIR(info.st_mode))
            return bneck_error_set(err, "%s exists and is not a directory", path);
        return 0;
    }
    return unusable_path_error(path, err);
}

static int make_directory(const char *path, bneck_error *err) {
    char partial[PATH_TEXT + 64];
    snprintf(partial, sizeof partial, "%s", path);
    for (char *c = partial + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (make_one_directory(partial, err)) return -1;
        *c = '/';
    }
    return make_one_directory(partial, err);
}

void sweep_output_timestamp(char *out, size_t capacity) {
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    strftime(out, capacity, "%Y%m%d-%H%M%S", &local);
}

/* Removes the line `key = ...` from text (keys are never wrapped over lines). */
static void without_key_line(char *text, const char *key) {
    const size_t key_length = strlen(key);
    for (char *line = text; *line;) {
        const size_t length = strcspn(line, "\n") + (line[strcspn(line, "\n")] ? 1 : 0);
        if (!strncmp(line, key, key_length) && !strncmp(line + key_length, " = ", 3)) {
            memmove(line, line + length, strlen(line + length) + 1);
            continue;
        }
        line += length;
    }
}

/* The configuration without how fast it runs (threads, device and progress lines at their
 * defaults; how often a long epoch is committed left out, a key younger than the files that
 * compare with this text): what sweep.ini holds (TEXT_RECORD), so that `bneck-sweep
 * OUTPUT/sweep.ini` resumes the sweep; the same as sweeps wrote it before long paths were
 * wrapped (TEXT_RECORD_UNWRAPPED); and without where it is (a sweep may be moved or
 * copied), what decides the results (TEXT_SETTINGS, unwrapped: it compares with the
 * settings of older run files). */
typedef enum { TEXT_RECORD, TEXT_RECORD_UNWRAPPED, TEXT_SETTINGS } config_text_form;

static void config_text(const config *cfg, config_text_form form, char *out, int capacity) {
    config *copy = bneck_malloc(sizeof *copy); /* holds a config file's text: not for the stack */
    *copy = *cfg;
    copy->threads = 0;
    snprintf(copy->device, sizeof copy->device, "auto");
    copy->progress_every = 0;
    if (form == TEXT_SETTINGS) copy->output[0] = '\0';
    const int length = form == TEXT_RECORD ? config_write(copy, out, capacity)
                                           : config_write_unwrapped(copy, out, capacity);
    if (length < 0) out[0] = '\0';
    without_key_line(out, "commit_minutes");
    free(copy);
}

static void results_defining_config(const config *cfg, char *out, int capacity) {
    config_text(cfg, TEXT_SETTINGS, out, capacity);
}

/* The results-defining part of a stored sweep.ini, read back through the configuration
 * parser: so a key added by a later bneck (absent from the file, so at its default) or a
 * value spelled another way compares as the same setting. A file the parser refuses (edited
 * by hand) compares as its text, and parse_err says why it was refused. */
static void stored_results_defining_config(const char *path, const char *text, char *out,
                                           int capacity, bneck_error *parse_err) {
    config *stored = bneck_malloc(sizeof *stored);
    const size_t readable_capacity = CONFIG_MAX_TEXT + 16;
    char *readable = bneck_malloc(readable_capacity);
    /* sweep.ini from before it recorded its output has an empty output line, which the
     * parser refuses; where it is makes no difference here */
    const char *empty_output = strstr(text, "\noutput = \n");
    if (empty_output)
        snprintf(readable, readable_capacity, "%.*s\noutput = .%s", (int)(empty_output - text),
                 text, empty_output + strlen("\noutput = "));
    else
        snprintf(readable, readable_capacity, "%s", text);
    parse_err->message[0] = '\0';
    if (config_load_text(stored, path, readable, parse_err) == 0)
        results_defining_config(stored, out, capacity);
    else
        snprintf(out, (size_t)capacity, "%s", text);
    free(readable);
    free(stored);
}

/* 0, or -1 with errno set. *length (when not NULL) gets the bytes read, which tells a
 * NUL byte in the file from the end of its text. */
static int read_whole_file(const char *path, char *out, size_t capacity, size_t *length) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, capacity - 1, f);
    out[n] = '\0';
    if (length) *length = n;
    const int failed = ferror(f);
    fclose(f);
    if (failed) {
        errno = EIO;
        return -1;
    }
    return 0;
}

void sweep_output_first_difference(const char *stored, const char *wanted, char *out,
                                   size_t capacity) {
    for (;;) {
        const size_t stored_length = strcspn(stored, "\n"), wanted_length = strcspn(wanted, "\n");
        if (stored_length != wanted_length || strncmp(stored, wanted, stored_length)) {
            snprintf(out, capacity, "stored '%.*s', this sweep '%.*s'",
                     (int)(stored_length < 80 ? stored_length : 80), stored,
                     (int)(wanted_length < 80 ? wanted_length : 80), wanted);
            return;
        }
        const int stored_ends = !stored[stored_length], wanted_ends = !wanted[wanted_length];
        if (stored_ends || wanted_ends) {
            snprintf(out, capacity, "%s", stored_ends == wanted_ends ? "no line differs"
                                          : stored_ends ? "the stored file ends early"
                                                        : "the stored file goes on");
            return;
        }
        stored += stored_length + 1;
        wanted += wanted_length + 1;
    }
}

/* A written configuration without the lines that only list the sweep's runs ([sweep]
 * patterns, with its continuation lines, and repeats). Each run is seeded by (sweep seed,
 * pattern name, repeat) alone, so a sweep extended by patterns or repeats (or narrowed)
 * leaves every run already there as it is: only these lines may change between sessions. */
static void without_run_list(const char *text, char *out, size_t capacity) {
    size_t used = 0;
    int in_patterns = 0;
    while (*text) {
        const size_t length = strcspn(text, "\n") + (text[strcspn(text, "\n")] ? 1 : 0);
        const int continuation = text[0] == ' ' || text[0] == '\t';
        in_patterns = (in_patterns && continuation) || !strncmp(text, "patterns =", 10);
        const int skip = in_patterns || !strncmp(text, "repeats =", 9);
        if (!skip && used + length < capacity) {
            memcpy(out + used, text, length);
            used += length;
        }
        text += length;
    }
    out[used] = '\0';
}

void sweep_output_settings(const config *cfg, char *out, size_t capacity) {
    char *full = bneck_malloc(CONFIG_MAX_TEXT);
    results_defining_config(cfg, full, CONFIG_MAX_TEXT);
    without_run_list(full, out, capacity);
    free(full);
}

int sweep_output_same_settings(const char *path, const char *stored, const char *wanted,
                               char *difference, size_t capacity) {
    if (!strcmp(stored, wanted)) return 1;
    char *defining = bneck_malloc(CONFIG_MAX_TEXT), *settings = bneck_malloc(CONFIG_MAX_TEXT);
    bneck_error parse_err;
    stored_results_defining_config(path, stored, defining, CONFIG_MAX_TEXT, &parse_err);
    without_run_list(defining, settings, CONFIG_MAX_TEXT);
    const int same = !parse_err.message[0] && !strcmp(settings, wanted);
    if (!same)
        sweep_output_first_difference(parse_err.message[0] ? stored : settings, wanted,
                                      difference, capacity);
    free(settings);
    free(defining);
    return same;
}

/* Writes text to path through path.tmp and a rename: a crash leaves the old file or the
 * new one, never part of one; the directory is synced too, since a directory whose run
 * files survived a power loss without its sweep.ini would be taken for a new sweep. */
static int write_file_atomically(const char *path, const char *text, bneck_error *err) {
    char temporary[PATH_TEXT + 32];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *f = fopen(temporary, "w");
    int failed = !f || fputs(text, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    const int saved = errno;
    if (f && fclose(f) != 0) failed = 1;
    if (failed || rename(temporary, path) != 0) {
        const int why = failed ? saved : errno;
        remove(temporary);
        return bneck_error_set(err, "cannot write %s: %s", path, strerror(why));
    }
    char directory[PATH_TEXT + 16];
    if (durable_sync_directory_of(path, directory, sizeof directory))
        return bneck_error_set(err, "%s: written, but cannot sync its directory %s: %s", path,
                               directory, strerror(errno));
    return 0;
}

/* Names the files in OUTPUT/runs that are not runs of this plan (left alone). */
static void report_foreign_files(const sweep_plan *plan, const char *runs_dir) {
    DIR *dir = opendir(runs_dir);
    if (!dir) return;
    for (struct dirent *entry; (entry = readdir(dir));) {
        const char *name = entry->d_name;
        if (name[0] == '.') continue;
        const size_t length = strlen(name);
        int known = 0;
        for (int i = 0; i < plan->count && !known; i++) {
            const size_t run_length = strlen(plan->runs[i].name);
            /* "<run>.h5", its ".tmp" and the ".unreadable-*" copies kept aside are ours. */
            known = length > run_length + 2 && !strncmp(name, plan->runs[i].name, run_length) &&
                    !strncmp(name + run_length, ".h5", 3) &&
                    (name[run_length + 3] == '\0' || !strcmp(name + run_length + 3, ".tmp") ||
                     !strncmp(name + run_length + 3, ".unreadable-", 12));
        }
        if (!known)
            log_warn("%s/%s is not a run of this sweep: ignored (not read, not deleted)", runs_dir, name);
    }
    closedir(dir);
}

/* "OUTPUT is in use by another sweep (pid N on HOST since T)", from the lock file's note. */
static int in_use_error(int lock_fd, const char *output, bneck_error *err) {
    char holder[160] = "";
    const ssize_t n = pread(lock_fd, holder, sizeof holder - 1, 0);
    holder[n > 0 ? strcspn(holder, "\n") : 0] = '\0';
    return bneck_error_set(err, "%s is in use by another sweep (%s): wait for it to end or stop "
                           "it, then run again", output, holder[0] ? holder : "holder unknown");
}

/* Whether another sweep holds OUTPUT/.lock, asked without creating or changing anything (a
 * shared lock taken and dropped at once). 0, or -1 with err. */
static int check_not_in_use(const char *output, bneck_error *err) {
    char path[PATH_TEXT + 16];
    snprintf(path, sizeof path, "%s/.lock", output);
    struct stat info;
    if (lstat(path, &info) == 0 && !S_ISREG(info.st_mode)) /* the sweep could not lock it */
        return bneck_error_set(err, "cannot open %s: it is not a regular file (remove it)", path);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* no sweep has locked it (or it cannot be read: the sweep will say) */
    int status = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) status = in_use_error(fd, output, err);
    } else {
        flock(fd, LOCK_UN);
    }
    close(fd);
    return status;
}

/* Rank 0 holds an exclusive lock on OUTPUT/.lock while the sweep runs (the system drops
 * it when the process ends, however it ends): a second sweep on the same output is
 * refused instead of training every run twice and racing for the commits. Returns the
 * descriptor that holds it, or -1 with err set. */
static int lock_output(const char *output, const char *host, bneck_error *err) {
    char path[PATH_TEXT + 16];
    snprintf(path, sizeof path, "%s/.lock", output);
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        bneck_error_set(err, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            in_use_error(fd, output, err);
            close(fd);
            return -1;
        }
        /* filesystems without flock (some NFS mounts) run unlocked, saying so */
        log_warn("%s: cannot lock it (%s): a second sweep on this output would not be refused",
                 path, strerror(errno));
        return fd;
    }
    char stamp[32], holder[160];
    sweep_output_timestamp(stamp, sizeof stamp);
    const int length = snprintf(holder, sizeof holder, "pid %d on %s since %s\n", (int)getpid(),
                                host, stamp);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, holder, (size_t)length, 0) != length)
        log_warn("%s: cannot note this sweep in it: %s", path, strerror(errno));
    return fd;
}

/* The texts a comparison of configurations needs: a config's whole text each, too large
 * for the stack. */
typedef struct configuration_texts {
    char wanted[CONFIG_MAX_TEXT], stored[CONFIG_MAX_TEXT], unwrapped[CONFIG_MAX_TEXT];
    char stored_defining[CONFIG_MAX_TEXT], stored_settings[CONFIG_MAX_TEXT];
    char wanted_settings[CONFIG_MAX_TEXT];
} configuration_texts;

/* How OUTPUT/sweep.ini (at stored_path) compares with cfg; nothing is written. file_text
 * gets what sweep.ini should hold for cfg. */
static int compare_configuration_texts(const config *cfg, const char *output,
                                       const char *stored_path, char *file_text, int capacity,
                                       configuration_texts *x, bneck_error *err) {
    struct stat info;
    char *wanted = x->wanted, *stored = x->stored;
    results_defining_config(cfg, wanted, sizeof x->wanted);
    config_text(cfg, TEXT_RECORD, file_text, capacity);
    if (lstat(stored_path, &info) == 0) {
        if (stat(stored_path, &info) != 0)
            return bneck_error_set(err, "%s: cannot follow the link: %s (it ties %s to its "
                                   "configuration)", stored_path, strerror(errno), output);
        if (!S_ISREG(info.st_mode))
            return bneck_error_set(err, "%s is not a regular file", stored_path);
    }
    size_t stored_length = 0;
    if (read_whole_file(stored_path, stored, sizeof x->stored, &stored_length) != 0) {
        if (errno == ENOENT) return SWEEP_OUTPUT_NEW;
        /* not "no sweep.ini": taken for new, the directory's finished runs would look like
         * another configuration's and be moved aside */
        return bneck_error_set(err, "cannot read %s: %s (it ties %s to its configuration)",
                               stored_path, strerror(errno), output);
    }
    /* damage (a crash can leave a file of zeros), not text: say so rather than read the
     * text before the NUL (nothing, when it comes first: "is empty") */
    const char *nul = memchr(stored, '\0', stored_length);
    if (nul)
        return bneck_error_set(err,
                               "%s, which ties %s to its configuration, holds a NUL byte (at "
                               "byte %zu of %zu): it is not the text a sweep writes; if the "
                               "directory holds this sweep, remove that file and run again (the "
                               "run files keep their own record)",
                               stored_path, output, (size_t)(nul - stored), stored_length);
    if (strcmp(stored, file_text) == 0) return SWEEP_OUTPUT_SAME;
    /* as a sweep wrote it before long paths were wrapped (perhaps too long to read back):
     * the same sweep, whose record is now rewritten */
    config_text(cfg, TEXT_RECORD_UNWRAPPED, x->unwrapped, sizeof x->unwrapped);
    if (strcmp(stored, x->unwrapped) == 0) return SWEEP_OUTPUT_SAME_SETTINGS;
    if (!stored[0])
        return bneck_error_set(err,
                               "%s, which ties %s to its configuration, is empty; if the "
                               "directory holds this sweep, remove that file and run again "
                               "(the run files keep their own record)",
                               stored_path, output);
    char *stored_defining = x->stored_defining;
    bneck_error parse_err;
    stored_results_defining_config(stored_path, stored, stored_defining,
                                   sizeof x->stored_defining, &parse_err);
    if (strcmp(stored_defining, wanted) == 0) /* the same sweep, moved, or from before */
        return SWEEP_OUTPUT_SAME_SETTINGS;
    char *stored_settings = x->stored_settings, *wanted_settings = x->wanted_settings;
    without_run_list(stored_defining, stored_settings, sizeof x->stored_settings);
    without_run_list(wanted, wanted_settings, sizeof x->wanted_settings);
    if (strcmp(stored_settings, wanted_settings) == 0) return SWEEP_OUTPUT_RUN_LIST_CHANGED;
    char difference[256];
    sweep_output_first_difference(stored_settings, wanted_settings, difference,
                                  sizeof difference);
    /* a file edited by hand into something the parser refuses: its fault is what to say */
    if (parse_err.message[0])
        return bneck_error_set(err,
                               "%s: the record of the sweep in %s does not read as a config "
                               "(%.400s): mend it, choose another [run] output, or pass "
                               "--restart to move the sweep aside",
                               stored_path, output, parse_err.message);
    return bneck_error_set(err,
                           "%s holds a sweep with a different configuration (%s; %s): "
                           "resume it with that configuration, choose another [run] output, "
                           "or pass --restart to move it aside",
                           output, stored_path, difference);
}

static int compare_configuration(const config *cfg, const char *output, const char *stored_path,
                                 char *file_text, int capacity, bneck_error *err) {
    configuration_texts *texts = bneck_malloc(sizeof *texts);
    const int result = compare_configuration_texts(cfg, output, stored_path, file_text,
                                                   capacity, texts, err);
    free(texts);
    return result;
}

/* What --restart moves: the directory OUTPUT names, followed through symlinks, so that a
 * link to scratch space goes on pointing at the new sweep, made where the old one was.
 * Refused when it holds the working directory, which the rename would carry along (the
 * new sweep would then be made inside the old one). */
static int restart_target(const char *output, char *target, size_t capacity, bneck_error *err) {
    char real[PATH_MAX], working[PATH_MAX];
    if (!realpath(output, real))
        return bneck_error_set(err, "--restart: cannot follow %s: %s", output, strerror(errno));
    if (strlen(real) >= capacity)
        return bneck_error_set(err, "--restart: %s is at %s, a path too long to move", output,
                               real);
    const size_t length = strlen(real);
    if (getcwd(working, sizeof working) && strncmp(working, real, length) == 0 &&
        (working[length] == '\0' || working[length] == '/' || length == 1))
        return bneck_error_set(err, "--restart cannot move %s aside: it holds the directory "
                               "this command runs in (%s); run it from another directory",
                               output, working);
    memcpy(target, real, length + 1);
    return 0;
}

/* Run files that all record other settings than cfg's (and at least one of them): the
 * directory holds another configuration's sweep, whatever its sweep.ini says (edited by
 * hand, or removed). Refused like a sweep.ini that differs, rather than every run moved
 * aside and trained again. A single stray file among agreeing ones is the sweep's to move
 * aside (as one copied in from elsewhere). */
static int check_run_files_settings(const config *cfg, const sweep_plan *plan, bneck_error *err) {
    char *wanted = bneck_malloc(CONFIG_MAX_TEXT), *stored = bneck_malloc(CONFIG_MAX_TEXT);
    sweep_output_settings(cfg, wanted, CONFIG_MAX_TEXT);
    int agree = 0, differ = 0;
    char first_path[PATH_TEXT + 64] = "", difference[256] = "";
    for (int i = 0; i < plan->count; i++) {
        char path[PATH_TEXT + 64];
        snprintf(path, sizeof path, "%s/runs/%s.h5", cfg->output, plan->runs[i].name);
        struct stat info;
        if (stat(path, &info) != 0 || !S_ISREG(info.st_mode)) continue;
        bneck_error unreadable; /* the sweep reports such a file on its own */
        const int has_settings = run_file_settings(path, stored, CONFIG_MAX_TEXT, &unreadable);
        if (has_settings < 0) continue;
        char this_difference[256];
        if (has_settings == 0 || /* none: from before them, trusted */
            sweep_output_same_settings(path, stored, wanted, this_difference,
                                       sizeof this_difference)) {
            agree++;
        } else if (differ++ == 0) {
            snprintf(first_path, sizeof first_path, "%s", path);
            snprintf(difference, sizeof difference, "%s", this_difference);
        }
    }
    free(wanted);
    free(stored);
    if (differ == 0 || agree > 0) return 0;
    return bneck_error_set(err,
                           "%s holds runs made with other settings (%s, %s%s): if %s/sweep.ini "
                           "was edited, undo the edit; or resume them with their configuration, "
                           "choose another [run] output, or pass --restart to move it aside",
                           cfg->output, first_path, difference,
                           differ > 1 ? ", and every other run file there" : "", cfg->output);
}

int sweep_output_check(const config *cfg, const sweep_plan *plan, int restart,
                       int report_foreign, bneck_error *err) {
    char stored_path[PATH_TEXT + 16], runs[PATH_TEXT + 16];
    snprintf(runs, sizeof runs, "%s/runs", cfg->output);
    struct stat info;
    /* what sweep_output_prepare would refuse, found without making anything */
    if (restart && stat(cfg->output, &info) == 0) {
        char target[PATH_TEXT];
        if (restart_target(cfg->output, target, sizeof target, err)) return -1;
        if (S_ISDIR(info.st_mode) && check_not_in_use(cfg->output, err)) return -1;
        return SWEEP_OUTPUT_MOVED_ASIDE;
    }
    if (stat(cfg->output, &info) == 0 && !S_ISDIR(info.st_mode))
        return bneck_error_set(err, "%s exists and is not a directory", cfg->output);
    if (lstat(cfg->output, &info) == 0 && stat(cfg->output, &info) != 0)
        return unusable_path_error(cfg->output, err);
    if (stat(runs, &info) == 0 && !S_ISDIR(info.st_mode))
        return bneck_error_set(err, "%s exists and is not a directory", runs);
    if (check_not_in_use(cfg->output, err)) return -1;
    snprintf(stored_path, sizeof stored_path, "%s/sweep.ini", cfg->output);
    char *file_text = bneck_malloc(CONFIG_MAX_TEXT);
    const int tie = compare_configuration(cfg, cfg->output, stored_path, file_text,
                                          CONFIG_MAX_TEXT, err);
    free(file_text);
    if (tie < 0 || check_run_files_settings(cfg, plan, err)) return -1;
    if (report_foreign && tie > SWEEP_OUTPUT_NEW) report_foreign_files(plan, runs); /* as the sweep would */
    return tie;
}

/* OUTPUT/sweep.ini: written the first time; later, the same settings are required, and a
 * changed run list (or an older sweep.ini, or a moved output) is recorded. */
static int tie_to_configuration(const config *cfg, const char *output, const char *stored_path,
                                bneck_error *err) {
    char *file_text = bneck_malloc(CONFIG_MAX_TEXT);
    int tie = compare_configuration(cfg, output, stored_path, file_text, CONFIG_MAX_TEXT, err);
    if (tie == SWEEP_OUTPUT_RUN_LIST_CHANGED)
        log_info("sweep: %s: [sweep] patterns or repeats changed; the runs already there "
                 "are kept, and %s now records this sweep's run list", output, stored_path);
    if (tie >= 0 && tie != SWEEP_OUTPUT_SAME) tie = write_file_atomically(stored_path, file_text, err);
    free(file_text);
    return tie < 0 ? -1 : 0;
}

/* Whether the file at path is a config in the form a sweep writes its record in (this
 * bneck's, or an older one's with long paths unwrapped). */
static int file_is_a_record(const char *path) {
    config *recorded = bneck_malloc(sizeof *recorded);
    char *text = bneck_malloc(CONFIG_MAX_TEXT), *written = bneck_malloc(CONFIG_MAX_TEXT);
    bneck_error ignored;
    int record = read_whole_file(path, text, CONFIG_MAX_TEXT, NULL) == 0 &&
                 config_load_text(recorded, path, text, &ignored) == 0;
    if (record) {
        config_text(recorded, TEXT_RECORD, written, CONFIG_MAX_TEXT);
        if (strcmp(text, written) != 0) /* older sweeps' */
            config_text(recorded, TEXT_RECORD_UNWRAPPED, written, CONFIG_MAX_TEXT);
        record = strcmp(text, written) == 0;
    }
    free(written);
    free(text);
    free(recorded);
    return record;
}

int sweep_output_from_record(config *cfg, const char *config_path) {
    const char *slash = strrchr(config_path, '/');
    if (strcmp(slash ? slash + 1 : config_path, "sweep.ini") != 0) return 0;
    char directory[sizeof cfg->output], runs[sizeof cfg->output + 16];
    const size_t length = !slash ? 1 : slash == config_path ? 1 : (size_t)(slash - config_path);
    if (length >= sizeof directory) return 0; /* longer than any output */
    memcpy(directory, !slash ? "." : config_path, length);
    directory[length] = '\0';
    snprintf(runs, sizeof runs, "%s/runs", directory);
    struct stat info;
    if (stat(runs, &info) != 0 || !S_ISDIR(info.st_mode)) return 0;
    /* only a file in the form a sweep writes: a config of the user's that happens to be
     * called sweep.ini (comments, its own threads or device) keeps its output */
    if (!file_is_a_record(config_path)) return 0;
    /* absolute, so that the record it is rewritten into names the place from anywhere */
    char absolute[PATH_MAX];
    if (!realpath(directory, absolute) || strlen(absolute) >= sizeof cfg->output) return 0;
    struct stat named;
    if (stat(absolute, &info) != 0) return 0;
    if (stat(cfg->output, &named) != 0 || named.st_dev != info.st_dev ||
        named.st_ino != info.st_ino)
        log_info("sweep: %s is the record of the sweep in %s (moved or copied from %s): the "
                 "sweep there goes on", config_path, absolute, cfg->output);
    snprintf(cfg->output, sizeof cfg->output, "%.*s", (int)(sizeof cfg->output - 1), absolute);
    return 1;
}

int sweep_output_prepare(const config *cfg, const sweep_plan *plan, const char *host,
                         int restart, bneck_error *err) {
    const char *output = cfg->output;
    struct stat info;
    if (restart && stat(output, &info) == 0) {
        char target[PATH_TEXT], stamp[32], aside[PATH_TEXT + 64];
        if (restart_target(output, target, sizeof target, err)) return -1;
        /* not from under a sweep that is still running there */
        const int held = S_ISDIR(info.st_mode) ? lock_output(output, host, err) : 0;
        if (held < 0) return -1;
        sweep_output_timestamp(stamp, sizeof stamp);
        snprintf(aside, sizeof aside, "%s.previous-%s", target, stamp);
        const int moved = rename(target, aside);
        const int why = errno;
        if (S_ISDIR(info.st_mode)) close(held);
        if (moved)
            return bneck_error_set(err, "--restart: cannot move %s to %s: %s", target, aside,
                                   strerror(why));
        log_info("sweep: --restart: moved the previous %s to %s (nothing deleted)", output, aside);
        if (make_directory(target, err)) return -1; /* output may be a link to it */
    }
    char runs[PATH_TEXT + 16], stored_path[PATH_TEXT + 16];
    snprintf(runs, sizeof runs, "%s/runs", output);
    if (make_directory(runs, err)) return -1;
    if (lock_output(output, host, err) < 0) return -1; /* held until the process ends */
    snprintf(stored_path, sizeof stored_path, "%s/sweep.ini", output);
    if (tie_to_configuration(cfg, output, stored_path, err)) return -1;
    report_foreign_files(plan, runs); /* only once the directory is known to be this sweep's */
    return 0;
}
