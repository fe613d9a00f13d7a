#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

static int log_current_rank = 0;
static char log_host[64] = "";

void log_set_rank(int rank, const char *host) {
    log_current_rank = rank;
    snprintf(log_host, sizeof log_host, "%s", host ? host : "");
}

int log_rank(void) { return log_current_rank; }
int log_rank_is_set(void) { return log_host[0] != '\0'; }

void log_info(const char *format, ...) {
    if (log_current_rank != 0) return;
    va_list args;
    va_start(args, format);
    vfprintf(stdout, format, args);
    va_end(args);
    fputc('\n', stdout);
    fflush(stdout);
}

/* The whole line goes out in one write: under mpirun every rank's stderr is forwarded in
 * the pieces it was written in, so a prefix written apart from its message could be split
 * by another rank's line. */
static void log_to_stderr(const char *level, const char *format, va_list args) {
    char line[BNECK_ERROR_TEXT + 256]; /* a bneck_error's message and the prefix */
    int prefix = log_host[0]
        ? snprintf(line, sizeof line, "bneck: %s (rank %d on %s): ", level, log_current_rank,
                   log_host)
        : snprintf(line, sizeof line, "bneck: %s: ", level);
    if (prefix < 0 || (size_t)prefix >= sizeof line - 2) prefix = 0;
    int message = vsnprintf(line + prefix, sizeof line - (size_t)prefix - 1, format, args);
    size_t length = (size_t)prefix + (message < 0 ? 0 : (size_t)message);
    if (length > sizeof line - 2) {
        /* a longer message is cut, and says so, rather than split over several writes */
        length = sizeof line - 2;
        memcpy(line + length - 4, " ...", 4);
    }
    line[length++] = '\n';
    fflush(stdout);
    fwrite(line, 1, length, stderr);
    fflush(stderr);
}

void log_warn(const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_to_stderr("warning", format, args);
    va_end(args);
}

void log_error(const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_to_stderr("error", format, args);
    va_end(args);
}

void log_fatal(const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_to_stderr("fatal", format, args);
    va_end(args);
}
