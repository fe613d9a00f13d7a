#include "core/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int sync_opened(const char *path, int flags) {
    const int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return -1;
    const int rc = fsync(fd);
    const int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int durable_sync_file(const char *path) { return sync_opened(path, O_RDONLY); }

int durable_sync_directory_of(const char *path, char *directory_out, size_t capacity) {
    char directory[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(directory, sizeof directory, ".");
    else if (slash == path) snprintf(directory, sizeof directory, "/");
    else snprintf(directory, sizeof directory, "%.*s", (int)(slash - path), path);
    if (directory_out && capacity) snprintf(directory_out, capacity, "%s", directory);
    if (sync_opened(directory, O_RDONLY | O_DIRECTORY) && errno != EINVAL) return -1;
    return 0;
}
