#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is missing, builds the
# release build (with the CUDA backend where the toolkit is found) and the ASan+UBSan
# build, and runs every test of both. GPU tests skip, with the reason, where no GPU is.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher/setup.sh
cmake --preset release
cmake --build --preset release
cmake --preset sanitize
cmake --build --preset sanitize
ctest --preset sanitize
ctest --preset release
