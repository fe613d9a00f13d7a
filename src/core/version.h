/* What built this program, for the results files: the version (BNECK_VERSION, from
 * CMake's project version) and the git commit of the source tree at build time. */
#ifndef BNECK_CORE_VERSION_H
#define BNECK_CORE_VERSION_H

/* `git describe --always --dirty` at the last build, or "unknown" outside a checkout
 * (written into the build directory by src/core/git_commit.cmake). */
extern const char bneck_git_commit[];

#endif
