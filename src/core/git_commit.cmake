# Run by the build (cmake -P, before the library compiles): the commit that results files
# record, asked of git at every build rather than when CMake configures, so an incremental
# build after new commits records the new one. Written only when it changed: nothing else
# is rebuilt. Usage: cmake -DSOURCE_DIR=... -DOUTPUT=.../git_commit.c -P git_commit.cmake
execute_process(COMMAND git describe --always --dirty WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
set(text "/* written by src/core/git_commit.cmake at every build */\n#include \"core/version.h\"\nconst char bneck_git_commit[] = \"${commit}\";\n")
set(old "")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUTPUT} "${text}")
endif()
