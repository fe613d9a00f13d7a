#!/usr/bin/env bash
# bneck-bench's command line: --help, both option forms, one real (tiny) measurement on the
# CPU, and bad values refused with exit status 2 and what was expected.
# usage: it_bench.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd)
bench=$build/bin/bneck-bench
work=$(mktemp -d /tmp/bneck-it-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/check_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_helpers.sh"

if "$bench" --help > "$work/help.out" 2> "$work/help.err" && grep -q "^usage: bneck-bench" "$work/help.out" &&
  [ ! -s "$work/help.err" ]; then ok "--help prints the usage on stdout and exits 0"
else cat "$work/help.out" "$work/help.err"; bad "--help"; fi

# one step of E and C at batch 4, options in both forms
if "$bench" --threads 1 --steps=1 --warmup 0 --batch=4 --patterns=E,C --device cpu > "$work/run.log" 2>&1 &&
  [ "$(grep -cE '^bneck,(E|C),' "$work/run.log")" = 2 ]; then ok "one measured step per pattern, --name value and --name=value alike"
else cat "$work/run.log"; bad "a tiny measurement"; fi

# --profile: per kind of op and per layer, with the convolutions' rate from their counts
if "$bench" --threads 1 --steps 1 --warmup 0 --batch 4 --patterns E --device cpu --profile 1 \
    > "$work/profile.log" 2>&1 &&
  awk '$2 == "conv" && $3 == "1x1" { found = 1; ok = $8 + 0 > 0 && $9 + 0 > 0 }
       END { exit !(found && ok) }' "$work/profile.log" &&
  awk '$2 == "batchnorm+relu" { found = 1; ok = NF == 7 && $7 + 0 > 0 }
       END { exit !(found && ok) }' "$work/profile.log" &&
  grep -qE '^#   inception[0-9]/[^ ]+ +[0-9]+x[0-9]+x[0-9]+->[0-9]+' "$work/profile.log"; then
  ok "--profile prints the ops (GFLOP/s for convolutions only, GB/s for all) and the costliest layers"
else cat "$work/profile.log"; bad "--profile"; fi

# --profile-layers: how many of the costliest layers are listed (0: all)
# (any layer: at batch 4 a pool's hiccup can rank avgpool2 among the costliest, seen)
layer_lines() { grep -cE '^#   [^ ]+ +[0-9]+x[0-9]+x[0-9]+->[0-9]+' "$1"; }
if "$bench" --threads 1 --steps 1 --warmup 0 --batch 4 --patterns E --device cpu --profile 1 \
    --profile-layers 3 > "$work/three.log" 2>&1 && [ "$(layer_lines "$work/three.log")" = 3 ] &&
  "$bench" --threads 1 --steps 1 --warmup 0 --batch 4 --patterns E --device cpu --profile 1 \
    --profile-layers=0 > "$work/all.log" 2>&1 && [ "$(layer_lines "$work/all.log")" -gt 12 ]; then
  ok "--profile-layers 3 lists three layers, 0 lists all ($(layer_lines "$work/all.log"))"
else cat "$work/three.log" "$work/all.log"; bad "--profile-layers"; fi

status_is 2 "$work/empty.log" "--patterns: no pattern in ','" "--patterns without a pattern" \
  "$bench" --patterns ,
status_is 2 "$work/unknown.log" "--patterns: unknown pattern 'F'" "--patterns with an unknown letter" \
  "$bench" --patterns AF
status_is 2 "$work/device.log" "--device expects auto, cpu or cuda, got 'junk'" "--device junk" \
  "$bench" --device junk
status_is 2 "$work/conv.log" "--conv expects auto, cudnn or gemm, got 'x'" "--conv x, on any backend" \
  "$bench" --conv x
status_is 2 "$work/threads.log" "--threads expects an integer from 1 to 4096, got '100000'" \
  "--threads far above any machine" "$bench" --threads 100000
status_is 2 "$work/missing.log" "--steps needs a value" "an option without its value" "$bench" --steps
status_is 2 "$work/bogus.log" "unknown option '--bogus'" "an unknown option" "$bench" --bogus

checks_done it_bench
