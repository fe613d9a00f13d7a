/* Making a finished write survive a crash or power loss: the file's data, then the
 * directory entry a rename made (POSIX keeps them apart). Used by every "write a
 * temporary file, then rename it over the real one" commit. */
#ifndef BNECK_CORE_DURABLE_H
#define BNECK_CORE_DURABLE_H

#include <stddef.h>

/* fsync of the file at path; 0, or -1 with errno set. */
int durable_sync_file(const char *path);
/* fsync of the directory that holds path (after a rename into it); 0, or -1 with errno
 * set. A filesystem that cannot sync directories (EINVAL) counts as done. directory_out,
 * when not NULL, gets the directory's name for messages. */
int durable_sync_directory_of(const char *path, char *directory_out, size_t capacity);

#endif
