#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int log_current_rank = 0;
static char log_host[64] = "";

void log_set_rank(int rank, const char *host) {
    log_current_rank = rank;
    snprintf(log_host, sizeof log_host, "%s", host ? host : "");
}

int log_rank(void) { return log_current_rank; }

void log_info(const char *format, ...) {
    if (log_current_rank != 0) return;
    va_list args;
    va_start(args, format);
    vfprintf(stdout, format, args);
    va_end(args);
    fputc('\n', stdout);
    fflush(stdout);
}

static void log_to_stderr(const char *level, const char *format, va_list args) {
    fflush(stdout);
    if (log_host[0])
        fprintf(stderr, "bneck: %s (rank %d on %s): ", level, log_current_rank, log_host);
    else
        fprintf(stderr, "bneck: %s: ", level);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
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
