#!/usr/bin/env bash
# Side by side on this machine: bneck's CPU backend and PyTorch (Debian's python3-torch),
# same model, batch 128, same thread count, then the ratios the core issue asks for.
# usage: tests/bench/compare_cpu.sh [BUILD_DIR] [THREADS] [STEPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
threads=${2:-2}
steps=${3:-5}
out=$(mktemp)
"$build/bin/bneck-bench" --threads "$threads" --steps "$steps" | tee "$out"
/usr/bin/python3 "$here/torch_bench.py" --threads "$threads" --steps "$steps" | tee -a "$out"
awk -F, '
  $1 == "bneck"   { b[$2] = $3 }
  $1 == "pytorch" { t[$2] = $3 }
  END {
    printf "\npattern  bneck s/step  pytorch s/step  speed-up vs pytorch\n"
    for (i = 1; i <= 5; i++) {
      p = substr("ABCDE", i, 1)
      if (p in b && p in t) printf "%-8s %12.3f %15.3f %20.2fx\n", p, b[p], t[p], t[p] / b[p]
    }
    if (("A" in b) && ("E" in b)) printf "E/A time ratio: bneck %.3f", b["E"] / b["A"]
    if (("A" in t) && ("E" in t)) printf ", pytorch %.3f", t["E"] / t["A"]
    printf "  (pseudo-FLOP ratio 0.125)\n"
  }' "$out"
rm -f "$out"
