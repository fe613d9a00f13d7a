#include "core/error.h"

#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bneck_error_set(bneck_error *err, const char *format, ...) {
    if (err) {
        va_list args;
        va_start(args, format);
        const int length = vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
        if (length >= (int)sizeof err->message)
            memcpy(err->message + sizeof err->message - 5, " ...", 5);
    }
    return -1;
}

static void (*fail_exit)(int status);

void bneck_fail_exit_set(void (*exit_with)(int status)) { fail_exit = exit_with; }

void bneck_fail_at(const char *file, int line, const char *format, ...) {
    char message[BNECK_ERROR_TEXT];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    /* the source file from src/ on: the build machine's checkout path says nothing */
    const char *source = strstr(file, "/src/");
    log_fatal("%s:%d: %s", source ? source + 1 : file, line, message);
    void (*exit_with)(int) = fail_exit;
    fail_exit = NULL; /* a failure on the way out ends with exit(1) */
    if (exit_with) exit_with(1);
    exit(1);
}

void *bneck_malloc_at(size_t bytes, const char *file, int line) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) bneck_fail_at(file, line, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *bneck_calloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) bneck_fail_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *bneck_realloc_at(void *p, size_t bytes, const char *file, int line) {
    void *grown = realloc(p, bytes ? bytes : 1);
    if (!grown) bneck_fail_at(file, line, "out of memory growing a block to %zu bytes", bytes);
    return grown;
}

void *bneck_alloc_aligned_at(size_t bytes, const char *file, int line) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) bneck_fail_at(file, line, "out of memory allocating %zu bytes", bytes);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}
