#!/usr/bin/env bash
# make_bundle.sh — run HERE (the build machine, no GPU needed): builds the single-process
# CUDA build (the `device` CMake preset: CUDA backend for sm_90, no MPI, in build-device/),
# then packs the programs the GPU checks run, with every non-system, non-CUDA shared library
# they need, into .devbundle/ and .devbundle.tar.xz at the repository root
# (../shared/device/bundle.sh does the packing; the GPU machine's own CUDA, cuDNN, cuBLAS
# and NCCL are used there, found by .devbundle/env.sh).
#
# usage: tests/device/make_bundle.sh
#   BNECK_DEVICE_BUILD=DIR  build directory instead of the preset's build-device/
#   BNECK_BUNDLE=DIR        bundle directory instead of .devbundle (DIR.tar.xz is the pack)
#   BNECK_BUNDLE_SH=FILE    the packing script, if not at ../shared/device/bundle.sh
#
# Then, with the device tool (the working tree travels; the pack is git-ignored, so carry it):
#   run  carry:   [".devbundle.tar.xz", ".devdata"]
#        command: tar xJf .devbundle.tar.xz && source .devbundle/env.sh && bash tests/device/run_gpu_checks.sh
#        timeout_s: 540 (the script keeps itself under 8 minutes)
# Logs and results.txt come back under $OUT (files_at in the tool's answer).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BNECK_DEVICE_BUILD:-$root/build-device}
bundle=${BNECK_BUNDLE:-$root/.devbundle}
bundle_sh=${BNECK_BUNDLE_SH:-}
if [ -z "$bundle_sh" ]; then
  for candidate in "$root/../shared/device/bundle.sh" /work/shared/device/bundle.sh; do
    [ -f "$candidate" ] && { bundle_sh=$candidate; break; }
  done
fi
[ -n "$bundle_sh" ] && [ -f "$bundle_sh" ] || {
  echo "make_bundle.sh: bundle.sh not found (set BNECK_BUNDLE_SH)" >&2; exit 2; }
case $(basename "$bundle") in
  ""|.|..|/) echo "make_bundle.sh: refusing bundle directory '$bundle'" >&2; exit 2 ;;
esac

cd "$root"
mkdir -p "$build"
configure_log=$build/make_bundle.configure.log
build_log=$build/make_bundle.build.log
echo "make_bundle.sh: configuring the device preset in $build"
cmake --preset device -B "$build" >"$configure_log" 2>&1 || {
  tail -n 40 "$configure_log" >&2; echo "make_bundle.sh: configure failed" >&2; exit 1; }
grep -q "bneck: CUDA backend: ON" "$configure_log" || {
  grep "bneck:" "$configure_log" >&2
  echo "make_bundle.sh: the device preset found no CUDA toolkit, cuDNN or NCCL" >&2; exit 1; }
grep -q "bneck: MPI: OFF" "$configure_log" || {
  echo "make_bundle.sh: the device build must not use MPI" >&2; exit 1; }

echo "make_bundle.sh: building (this takes a few minutes the first time)"
programs=(bin/bneck-bench bin/bneck-train bin/bneck-sweep
          tests/test_gpu_ops tests/test_cpu_ops tests/test_network)
targets=()
for p in "${programs[@]}"; do targets+=("$(basename "$p")"); done
status=0
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$build_log" 2>&1 || status=$?
grep -E "error:|warning:" "$build_log" >&2 || true
[ "$status" -eq 0 ] || { echo "make_bundle.sh: build failed (log: $build_log)" >&2; exit 1; }
if grep -qE "warning:" "$build_log"; then
  echo "make_bundle.sh: the build printed warnings (log: $build_log)" >&2; exit 1
fi

paths=()
for p in "${programs[@]}"; do
  [ -x "$build/$p" ] || { echo "make_bundle.sh: $build/$p was not built" >&2; exit 1; }
  paths+=("$build/$p")
done
# No MPI may leak in: Open MPI does not start from a bundle.
for p in "${paths[@]}"; do
  if ldd "$p" | grep -q "libmpi"; then
    echo "make_bundle.sh: $p links MPI; the device preset must not" >&2; exit 1
  fi
done

rm -rf "$bundle" "$bundle.tar.xz"
bash "$bundle_sh" "$bundle" "${paths[@]}"
size=$(stat -c %s "$bundle.tar.xz")
echo "make_bundle.sh: $bundle.tar.xz is $size bytes ($(du -h "$bundle.tar.xz" | cut -f1)); programs:"
ls -1 "$bundle/bin" | sed 's/^/  /'
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
  echo "make_bundle.sh: the pack exceeds the device tool's 64 MiB carry limit" >&2; exit 1
fi

# The real-data training check of run_gpu_checks.sh reads Fashion-MNIST from .devdata/
# (git-ignored, 30 MiB: carry it too, the two stay under the 64 MiB limit).
fashion=${BNECK_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ -f "$fashion/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$root/.devdata/fashion-mnist"
  cp -u "$fashion"/*-ubyte.gz "$root/.devdata/fashion-mnist/"
  echo "make_bundle.sh: Fashion-MNIST copied to .devdata/ (carry [\".devbundle.tar.xz\", \".devdata\"])"
else
  echo "make_bundle.sh: no Fashion-MNIST at $fashion: the GPU training check will be skipped"
fi
# The carry limit holds for everything carried together: the pack and .devdata/.
carried=$(du -sb "$bundle.tar.xz" "$root/.devdata" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
echo "make_bundle.sh: carried together: $carried bytes"
if [ "$carried" -gt $((64 * 1024 * 1024)) ]; then
  echo "make_bundle.sh: the pack and .devdata/ exceed the device tool's 64 MiB carry limit" \
       "together (carry only .devbundle.tar.xz to leave the training check out)" >&2
  exit 1
fi
