/* Error reporting. Two kinds of failure:
 *  - bad user input (a file, a config value): the function returns -1 and fills a
 *    bneck_error with a message naming the file/line/field and what was expected;
 *    the caller decides how to exit. Never assert on user input.
 *  - broken invariants or failed library calls (out of memory, a CUDA/MPI/HDF5 call):
 *    BNECK_FAIL prints file:line and the library's own message, then exits(1). */
#ifndef BNECK_CORE_ERROR_H
#define BNECK_CORE_ERROR_H

#include <stddef.h>
#include <stdnoreturn.h>

/* Room for two paths of PATH_MAX (4096) and the reason after them: a message names its
 * file first, and a long path must not push the reason out. */
enum { BNECK_ERROR_TEXT = 10240 };

typedef struct bneck_error {
    char message[BNECK_ERROR_TEXT];
} bneck_error;

/* Formats the message into err (if non-NULL) and returns -1, so callers can write
 * `return bneck_error_set(err, "%s: line %d: ...", path, line);`. A message longer than
 * the room is cut and ends in " ...". */
int bneck_error_set(bneck_error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "file:line: message" as a fatal error and ends the process: by the function
 * bneck_fail_exit_set gave, if any, else exit(1). */
noreturn void bneck_fail_at(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
#define BNECK_FAIL(...) bneck_fail_at(__FILE__, __LINE__, __VA_ARGS__)

/* How bneck_fail_at ends the process after printing (NULL: exit(1)): a sweep of several
 * ranks stops them all (MPI_Abort) rather than leave the others waiting in a collective
 * for the one that left (sweep_world_init sets it; sweep_world_finalize clears it). */
void bneck_fail_exit_set(void (*exit_with)(int status));

/* malloc/calloc/realloc that never return NULL (they fail with file:line instead). */
void *bneck_malloc_at(size_t bytes, const char *file, int line);
void *bneck_calloc_at(size_t count, size_t size, const char *file, int line);
void *bneck_realloc_at(void *p, size_t bytes, const char *file, int line);
#define bneck_malloc(bytes) bneck_malloc_at((bytes), __FILE__, __LINE__)
#define bneck_calloc(count, size) bneck_calloc_at((count), (size), __FILE__, __LINE__)
#define bneck_realloc(p, bytes) bneck_realloc_at((p), (bytes), __FILE__, __LINE__)

/* 64-byte aligned, zero-filled allocation for large float arrays; free with free(). */
void *bneck_alloc_aligned_at(size_t bytes, const char *file, int line);
#define bneck_alloc_aligned(bytes) bneck_alloc_aligned_at((bytes), __FILE__, __LINE__)

#endif
