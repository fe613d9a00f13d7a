#!/usr/bin/env bash
# run_gpu_checks.sh — the prepared GPU check of issue 5, for a bare GPU machine (CUDA 13 and
# PyTorch installed, no apt, no internet, no MPI), from the repository root, after
# tests/device/make_bundle.sh built and packed the programs on the build machine:
#
#   tar xJf .devbundle.tar.xz && source .devbundle/env.sh && bash tests/device/run_gpu_checks.sh
#
# (with the device tool: run, carry [".devbundle.tar.xz", ".devdata"], that command,
# timeout_s 540; make_bundle.sh fills .devdata/ with Fashion-MNIST).
# Everything goes under $OUT (a temporary directory when OUT is unset):
#   summary.txt        each part: status and seconds
#   results.txt        the table: seconds per epoch (median step x 391 steps of batch 128,
#                      50,000 images) per pattern and precision, bneck and PyTorch, ratios,
#                      E/A, and the issue's targets checked
#   results.csv        the same numbers, one row per (framework, variant, pattern)
#   logs.tar.gz        everything else: nvidia-smi.txt, environment.txt, test_gpu_ops.log,
#                      bneck_*.log, torch_*.log, profile_{fp32,tf32,bf16}.log
# Parts: (a) nvidia-smi and the environment; (b) the GPU tests (test_gpu_ops, CPU oracle);
# (c) bneck-bench --device cuda, patterns A-E, --math fp32, tf32 and bf16, then the same
# with --graph; (d) tests/bench/torch_bench.py --device cuda, TF32 off, --tf32, --bf16; (e) the
# table; (f) bneck-bench --profile of A and E (per-op times, appended to results.txt);
# (j) A and E with BatchNorm's one-kernel path at its default reach, off, and everywhere;
# (k) A-E with their layers grouped (one GEMM per module input, one BatchNorm call per
# group of adjacent outputs) and separate; (l) compute-sanitizer's memcheck and racecheck on
# the tests of the project's own kernels (when it is there);
# (h) A and E with each k x k convolution engine forced; (i) Nsight Compute's per-kernel
# times of one step of A and E, when ncu is there; (g) bneck-train on real
# Fashion-MNIST in tf32 and bf16, steps as CUDA graphs and (E bf16) op by op (when .devdata/
# was carried). Each part runs under
# `timeout`, clipped to what is left of the budget (BNECK_CHECK_BUDGET_S, default 450 s),
# so the whole stays under 8 minutes even when something hangs.
#
# Exit status: 0 no part failed and the tests passed (parts the budget left out are listed
# as SKIPPED); 1 a part failed or timed out;
# 3 no usable GPU here (after checking what can be checked without one).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-}
[ -n "$out" ] || out=$(mktemp -d /tmp/bneck-gpu-checks.XXXXXX)
mkdir -p "$out"
budget=${BNECK_CHECK_BUDGET_S:-450}
steps=${BNECK_CHECK_STEPS:-40}      # timed steps per pattern (median)
warmup=${BNECK_CHECK_WARMUP:-3}
steps_per_epoch=391                 # ceil(50,000 / 128)
started=$SECONDS
summary=$out/summary.txt
: >"$summary"
failures=0
skipped=0

say() { echo "$*" | tee -a "$summary"; }
# epoch_row LABEL LOG [PATTERNS]: '#   LABEL  A  E', the seconds per epoch of each pattern of
# PATTERNS (default AE) in a bneck-bench log ('-' where the log or the pattern is missing: a
# part left out for time)
epoch_row() {
  cat "$2" 2>/dev/null | awk -F, -v label="$1" -v n="$steps_per_epoch" -v patterns="${3:-AE}" '
    $1 == "bneck" && NF == 4 { t[$2] = $3 * n }
    function cell(p) { return (p in t) ? sprintf("%9.3f", t[p]) : sprintf("%9s", "-") }
    END {
      printf "#   %-13s", label
      for (i = 1; i <= length(patterns); i++) printf " %s", cell(substr(patterns, i, 1))
      printf "\n"
    }'
}
left() { echo $((budget - (SECONDS - started))); }

# part NAME CAP LOG COMMAND...: runs COMMAND (stdout and stderr to LOG) under a timeout of
# CAP seconds, clipped to the budget less a reserve for the table. Returns its status.
part() {
  local name=$1 cap=$2 log=$3
  shift 3
  local room=$(($(left) - 20))
  ((room < cap)) && cap=$room
  if ((cap < 15)); then
    # the parts run most important first, so what the budget leaves out is the optional
    # tail: said, but not a failure
    say "$(printf '%-8s %-44s %s' SKIPPED "$name" "(time budget spent)")"
    : >"$log" # empty, so that what reads it finds nothing rather than no file
    skipped=$((skipped + 1))
    return 124
  fi
  local t0=$SECONDS rc=0
  timeout -k 5 "$cap" "$@" >"$log" 2>&1 || rc=$?
  local state=ok
  case $rc in
    0) ;;
    124 | 137) state="TIMEOUT" ;;
    *) state="FAILED" ;;
  esac
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
  say "$(printf '%-8s %-44s %4ds  rc=%d, limit %ds, log %s' "$state" "$name" $((SECONDS - t0)) \
    "$rc" "$cap" "$(basename "$log")")"
  return "$rc"
}

say "# bneck GPU checks, $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname), budget ${budget}s"

# ---- (a) the machine and the environment (no GPU needed) ----------------------------------
{
  echo "## programs"
  for p in bneck-bench test_gpu_ops; do
    where=$(command -v "$p" || true)
    echo "$p: ${where:-NOT ON PATH}"
    [ -n "$where" ] && ldd "$where" 2>&1 | grep -E "not found|cudnn|cublas|nccl|cudart" | sed 's/^/  /'
  done
  echo "## LD_LIBRARY_PATH"
  echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n' | sed 's/^/  /'
} >"$out/environment.txt" 2>&1
env_ok=1
for p in bneck-bench test_gpu_ops; do
  if ! command -v "$p" >/dev/null; then
    say "MISSING  $p is not on PATH: run 'tar xJf .devbundle.tar.xz && source .devbundle/env.sh' first"
    env_ok=0
  elif ldd "$(command -v "$p")" 2>/dev/null | grep -q "not found"; then
    say "MISSING  $p lacks libraries: $(ldd "$(command -v "$p")" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')"
    env_ok=0
  fi
done

# A Python with PyTorch: python3 first, else one under /opt (where images keep environments).
# It runs with none of the CUDA library directories env.sh put first (PyTorch wheels bring
# their own cuDNN and cuBLAS and refuse another cuDNN version; a cuDNN-less PyTorch falls
# back to slow native convolutions): only directories without those libraries stay.
python_path=""
IFS=: read -r -a path_dirs <<<"${LD_LIBRARY_PATH:-}"
for dir in "${path_dirs[@]}"; do
  [ -n "$dir" ] || continue
  compgen -G "$dir/libcudnn*.so*" >/dev/null || compgen -G "$dir/libcublas*.so*" >/dev/null ||
    compgen -G "$dir/libnccl*.so*" >/dev/null || compgen -G "$dir/libcudart*.so*" >/dev/null ||
    python_path=${python_path:+$python_path:}$dir
done
bundle_lib=""
command -v bneck-bench >/dev/null && bundle_lib=$(cd "$(dirname "$(command -v bneck-bench)")/../lib" 2>/dev/null && pwd)
[ -n "$bundle_lib" ] && python_path=$(echo "$python_path" | tr ':' '\n' | grep -vxF "$bundle_lib" | paste -sd:)
python_env=(env "LD_LIBRARY_PATH=$python_path")
python=""
for candidate in python3 $(ls /opt/*/bin/python3 /opt/*/*/bin/python3 2>/dev/null | head -n 8); do
  if timeout 60 "${python_env[@]}" "$candidate" -c "import torch" >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
if [ -n "$python" ]; then
  timeout 60 "${python_env[@]}" "$python" -c "import torch; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu available', \
torch.cuda.is_available(), 'cudnn acceptable', torch.backends.cudnn.is_available())" \
    >>"$out/environment.txt" 2>&1
  say "python   $python: $(tail -n 1 "$out/environment.txt")"
else
  say "python   no Python with PyTorch found (python3, /opt/*/bin/python3): PyTorch timings skipped"
fi

# Whether there is a GPU is bneck's probe's to say (the CUDA runtime's device count);
# nvidia-smi only describes it, and a container may lack it.
gpu=0
gpu_name=""
if timeout 30 nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv >>"$out/nvidia-smi.txt" 2>&1
  gpu_name=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
fi
probe=""
if command -v test_gpu_ops >/dev/null; then
  probe=$(timeout 60 test_gpu_ops --verbose --filter 'gpu_ops/probe_reports_the_runtime_message' 2>&1 |
    grep -o 'probe: .*' | head -n 1)
fi
if [[ $probe =~ ^probe:\ ([1-9][0-9]*) ]]; then
  gpu=1
  [ -n "$gpu_name" ] || gpu_name="(no nvidia-smi) ${probe#probe: }"
fi
if [ "$gpu" -eq 0 ]; then
  say "NO GPU   nvidia-smi: $(head -n 1 "$out/nvidia-smi.txt" 2>/dev/null || echo 'not run'); bneck ${probe:-probe not run}"
  {
    echo "No usable GPU on $(hostname): nothing was measured."
    echo "nvidia-smi: $(head -n 3 "$out/nvidia-smi.txt" 2>/dev/null)"
    echo "bneck: ${probe:-test_gpu_ops not found}"
  } >"$out/results.txt"
  exit 3
fi
say "GPU      $gpu_name; bneck $probe"
if [ "$env_ok" -eq 0 ]; then
  say "cannot run the checks without the programs (see environment.txt)"
  exit 1
fi

# ---- (b) the GPU tests ----------------------------------------------------------------------
# (a cap of 210 s: three tests may take up to 300 s alone; four jobs at once share the GPU,
# and a run cut short by the cap says so as TIMEOUT rather than passing)
part "test_gpu_ops (GPU vs CPU oracle)" 210 "$out/test_gpu_ops.log" \
  test_gpu_ops --verbose --jobs 4
say "         $(grep -a 'Synthesis' "$out/test_gpu_ops.log" | tail -n 1)"
# failures only: Criterion's [----] lines are its info lines too, unless they name a file:line
grep -aE '^\[FAIL\]|Assertion|CRASH|fatal|^\[----\] .*:[0-9]+: ' "$out/test_gpu_ops.log" |
  head -n 40 >"$out/test_gpu_ops.failures.txt"

# ---- (c), (d) the timings -------------------------------------------------------------------
bench_args=(--device cuda --patterns ABCDE --steps "$steps" --warmup "$warmup" --batch 128)
precisions=(fp32 tf32 bf16)
for m in "${precisions[@]}"; do
  part "bneck-bench $m" 90 "$out/bneck_$m.log" bneck-bench "${bench_args[@]}" --math "$m"
done
if [ -n "$python" ]; then
  torch_args=(tests/bench/torch_bench.py --device cuda --patterns ABCDE --steps "$steps"
    --warmup $((warmup + 2)) --batch 128)
  part "torch_bench fp32 (TF32 off)" 120 "$out/torch_fp32.log" \
    "${python_env[@]}" "$python" "${torch_args[@]}"
  part "torch_bench tf32" 120 "$out/torch_tf32.log" \
    "${python_env[@]}" "$python" "${torch_args[@]}" --tf32
  part "torch_bench bf16 (autocast)" 120 "$out/torch_bf16.log" \
    "${python_env[@]}" "$python" "${torch_args[@]}" --bf16
fi
for m in "${precisions[@]}"; do
  part "bneck-bench $m --graph" 90 "$out/bneck_${m}_graph.log" \
    bneck-bench "${bench_args[@]}" --math "$m" --graph
done

# ---- (e) the table ---------------------------------------------------------------------------
csv=$out/results.csv
echo "framework,variant,pattern,median_step_s,s_per_epoch" >"$csv"
for variant in fp32 tf32 bf16 fp32_graph tf32_graph bf16_graph; do
  [ -f "$out/bneck_$variant.log" ] &&
    awk -F, -v v="$variant" -v n="$steps_per_epoch" \
      '$1 == "bneck" && NF == 4 { printf "bneck,%s,%s,%s,%.4f\n", v, $2, $3, $3 * n }' \
      "$out/bneck_$variant.log" >>"$csv"
done
for variant in fp32 tf32 bf16; do
  [ -f "$out/torch_$variant.log" ] &&
    awk -F, -v v="$variant" -v n="$steps_per_epoch" \
      '$1 == "pytorch" && NF == 4 { printf "pytorch,%s,%s,%s,%.4f\n", v, $2, $3, $3 * n }' \
      "$out/torch_$variant.log" >>"$csv"
done

awk -F, -v gpu="$gpu_name" -v n="$steps_per_epoch" '
  NR == 1 { next }
  { t[$1 "," $2 "," $3] = $5 }
  function get(k) { return (k in t) ? t[k] : -1 }
  function cell(x) { return x < 0 ? sprintf("%9s", "-") : sprintf("%9.3f", x) }
  function ratio(a, b) { return (a < 0 || b <= 0) ? sprintf("%7s", "-") : sprintf("%7.2f", a / b) }
  function ratio9(a, b) { return (a < 0 || b <= 0) ? sprintf("%9s", "-") : sprintf("%9.3f", a / b) }
  # the faster bneck variant of a precision (plain or CUDA graph)
  function best(p, m,   a, b) {
    a = get("bneck," m "," p); b = get("bneck," m "_graph," p)
    if (a < 0) return b; if (b < 0) return a; return a < b ? a : b
  }
  function verdict(ok) { return ok ? "met" : "NOT met" }
  END {
    printf "Seconds per epoch on %s: median training step (batch 128) x %d steps (50,000 images)\n", gpu, n
    printf "bneck = bneck-bench --device cuda; graph = the same with --graph (CUDA graph of forward+loss+backward);\n"
    printf "torch = tests/bench/torch_bench.py (cudnn.benchmark, data on the GPU). ratio = bneck / torch (target <= 0.5)\n\n"
    split("fp32 tf32 bf16", modes, " ")
    for (mi = 1; mi <= 3; mi++) {
      m = modes[mi]
      printf "%s%s\n", m, m == "fp32" ? " (TF32 off everywhere)" : m == "tf32" ? " (TF32 tensor cores)" : " (bf16 mixed precision; torch: autocast)"
      printf "pattern %9s %9s %9s %7s %7s\n", "bneck", "graph", "torch", "ratio", "r.graph"
      for (i = 1; i <= 5; i++) {
        p = substr("ABCDE", i, 1)
        b = get("bneck," m "," p); g = get("bneck," m "_graph," p); tt = get("pytorch," m "," p)
        printf "%-7s %s %s %s %s %s\n", p, cell(b), cell(g), cell(tt), ratio(b, tt), ratio(g, tt)
      }
      printf "%-7s %9s %9s %9s\n", "E/A", ratio9(get("bneck," m ",E"), get("bneck," m ",A")),
        ratio9(get("bneck," m "_graph,E"), get("bneck," m "_graph,A")),
        ratio9(get("pytorch," m ",E"), get("pytorch," m ",A"))
      printf "\n"
    }
    printf "Targets of issue 5 (one H100; bneck = its faster variant per precision):\n"
    a32 = best("A", "fp32"); a19 = best("A", "tf32"); a16 = best("A", "bf16")
    if (a32 >= 0) printf "  pattern A fp32 <= 2.0 s: %.3f s, %s\n", a32, verdict(a32 <= 2.0)
    if (a19 >= 0) printf "  pattern A tf32 <= 0.8 s: %.3f s, %s\n", a19, verdict(a19 <= 0.8)
    if (a16 >= 0) printf "  pattern A bf16 <= 0.5 s: %.3f s, %s\n", a16, verdict(a16 <= 0.5)
    for (mi = 1; mi <= 3; mi++) {
      m = modes[mi]; worst = -1; which = ""
      for (i = 1; i <= 5; i++) {
        p = substr("ABCDE", i, 1); b = best(p, m); tt = get("pytorch," m "," p)
        if (b >= 0 && tt > 0 && b / tt > worst) { worst = b / tt; which = p }
      }
      if (worst >= 0)
        printf "  every pattern <= 0.5 x PyTorch, %s: worst %.2f (pattern %s), %s\n", m, worst, which, verdict(worst <= 0.5)
      ea = best("E", m); aa = best("A", m)
      if (ea >= 0 && aa > 0)
        printf "  E/A <= 0.35, %s: %.3f, %s (FLOP ratio 0.125; study 0.89 PyTorch, 1.11 Keras)\n", m, ea / aa, verdict(ea / aa <= 0.35)
    }
  }' "$csv" >"$out/results.txt"
# which runner conv auto chose per direction, after each pattern (cumulative per run)
for m in "${precisions[@]}"; do
  [ -f "$out/bneck_$m.log" ] &&
    grep -a "after pattern" "$out/bneck_$m.log" | sed "s/^bneck-bench: /# [$m] /" >>"$out/results.txt"
done
echo
cat "$out/results.txt"
echo

# ---- (f) where the time goes: per-op times of A and E (bneck-bench --profile); the logs
# also hold every convolution's runner choice with the candidates' times and cuDNN's algorithms
for m in "${precisions[@]}"; do
  part "bneck-bench --profile, A and E, $m" 60 "$out/profile_$m.log" \
    env BNECK_CONV_LOG=1 BNECK_CUDNN_LOG=1 bneck-bench --device cuda --patterns AE --steps 5 --warmup "$warmup" --math "$m" --profile 10
  grep -a '^#' "$out/profile_$m.log" | sed "s/^# /# [$m] /" >>"$out/results.txt"
done

# ---- (j) the two BatchNorm paths on the same shapes: one kernel per channel block up to a
# plane of 32768 values (the default), never (0), or for every plane (the 32x32 stage too)
{
  echo "# BatchNorm one-kernel path up to a plane of N values (BNECK_BN_FUSED_MAX_PLANE), tf32,"
  echo "# step graph, s per epoch:"
  printf '#   %-13s %9s %9s\n' N A E
} >>"$out/results.txt"
for limit in 32768 0 1073741824; do
  part "bneck-bench tf32 --graph, A and E, BN fused to $limit" 40 "$out/bn_fused_$limit.log" \
    env BNECK_BN_FUSED_MAX_PLANE=$limit bneck-bench --device cuda --patterns AE --steps 20 \
    --warmup "$warmup" --math tf32 --graph
  epoch_row "$limit" "$out/bn_fused_$limit.log" >>"$out/results.txt"
done

# ---- (k) grouped layers (the default: one GEMM for the 1x1 convolutions that read a
# module's input, one BatchNorm call per group of BatchNorms with adjacent outputs) or
# every layer on its own (--separate-layers)
{
  echo "# layers grouped (one GEMM per module input, one BatchNorm per adjacent group) or"
  echo "# separate, tf32, step graph, s per epoch:"
  printf '#   %-13s %9s %9s %9s %9s %9s\n' layout A B C D E
} >>"$out/results.txt"
for layout in grouped separate; do
  flag=(); [ "$layout" = separate ] && flag=(--separate-layers)
  part "bneck-bench tf32 --graph, A-E, layers $layout" 60 "$out/layers_$layout.log" \
    bneck-bench --device cuda --patterns ABCDE --steps 20 --warmup "$warmup" --math tf32 \
    --graph "${flag[@]}"
  epoch_row "$layout" "$out/layers_$layout.log" ABCDE >>"$out/results.txt"
done

# ---- (l) the project's own kernels under compute-sanitizer: memcheck (out-of-bounds and
# misaligned accesses, errors of launches) on the tests of BatchNorm, pools, loss, Adam, the
# batch assembly and the im2col engine, racecheck (shared memory) on BatchNorm's. cuDNN's
# and cuBLAS's kernels are left out: under memcheck they take minutes.
sanitizer_bin=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)
sanitize_kernels() {
  local filter rc=0
  for filter in 'gpu_ops/batchnorm*' 'gpu_ops/*pool*' 'gpu_ops/softmax*' 'gpu_ops/adam*' \
    'gpu_ops/add_scaled*' 'gpu_ops/dataset*' 'gpu_ops/memory*'; do
    echo "== memcheck $filter"
    "$sanitizer_bin" --tool memcheck --error-exitcode 9 --print-limit 20 \
      test_gpu_ops --jobs 1 --filter "$filter" || rc=1
  done
  echo "== memcheck im2col engine (GEMM engine in fp32)"
  "$sanitizer_bin" --tool memcheck --error-exitcode 9 --print-limit 20 \
    bneck-bench --device cuda --patterns E --steps 1 --warmup 1 --batch 8 --conv gemm || rc=1
  echo "== racecheck gpu_ops/batchnorm*"
  "$sanitizer_bin" --tool racecheck --error-exitcode 9 --print-limit 20 \
    test_gpu_ops --jobs 1 --filter 'gpu_ops/batchnorm*' || rc=1
  return $rc
}
if [ -n "$sanitizer_bin" ]; then
  export sanitizer_bin
  export -f sanitize_kernels # `timeout` runs programs, not functions
  # (150 s: the BatchNorm tests run every shape down both of its paths)
  part "compute-sanitizer on the own kernels" 150 "$out/compute_sanitizer.log" \
    bash -c sanitize_kernels
  grep -aE "^== |ERROR SUMMARY|Invalid|Race" "$out/compute_sanitizer.log" | head -n 40 |
    sed 's/^/# [sanitizer] /' >>"$out/results.txt"
else
  say "$(printf '%-8s %-44s %s' SKIPPED "compute-sanitizer" "(not on this machine)")"
fi

# ---- (h) the k x k engines one by one (auto picks per shape between them) -------------------
{
  echo "# k x k convolution engine forced (bneck-bench --conv), s per epoch, no graph:"
  printf '#   %-6s %-6s %9s %9s\n' math conv A E
} >>"$out/results.txt"
for m in "${precisions[@]}"; do
  for e in cudnn gemm; do
    part "bneck-bench $m --conv $e, A and E" 40 "$out/engine_${m}_$e.log" \
      bneck-bench --device cuda --patterns AE --steps 10 --warmup "$warmup" --math "$m" \
      --conv "$e"
    epoch_row "$(printf '%-6s %-6s' "$m" "$e")" "$out/engine_${m}_$e.log" >>"$out/results.txt"
  done
done

# ---- (i) per-kernel GPU time of one step of A and E (Nsight Compute, when it is there) --------
# bneck-bench brackets its timed steps with cudaProfilerStart/Stop, so with one timed step
# ncu measures exactly one training step; the summary groups the kernels by name.
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -n 1 || true)
if [ -n "$ncu_bin" ] && (($(left) > 150)); then
  for p in A E; do
    part "ncu kernel times, one step of $p, tf32" 60 "$out/ncu_${p}_tf32.log" \
      "$ncu_bin" --profile-from-start off --metrics gpu__time_duration.sum \
      --print-summary per-kernel bneck-bench --device cuda --patterns "$p" --steps 1 \
      --warmup "$warmup" --math tf32
  done
else
  say "$(printf '%-8s %-44s %s' SKIPPED "ncu kernel times" "(${ncu_bin:-no ncu here}; $(left)s left)")"
fi

# ---- (g) real training on the GPU: Fashion-MNIST (carried in .devdata/), all 60,000 / 10,000
# images, 3 epochs, through bneck-train (GPU-resident data, the trainer's own step): E and A
# in bf16, E in tf32, all with the steps replayed as CUDA graphs (run.graph=auto), then E in
# bf16 op by op (run.graph=off) to compare epoch times
data_dir=${BNECK_CHECK_DATA:-$root/.devdata/fashion-mnist}
if [ -f "$data_dir/train-images-idx3-ubyte.gz" ] && command -v bneck-train >/dev/null; then
  for run in E:3:4:bf16:auto A:1:1:bf16:auto E:3:4:tf32:auto E:3:4:bf16:off; do
    IFS=: read -r name mode alpha m graph <<<"$run"
    tag=${name}_${m}_graph-$graph
    part "bneck-train $name $m graph $graph, Fashion-MNIST, 3 ep." 60 "$out/train_$tag.log" \
      bneck-train configs/quick.ini run.device=cuda "run.precision=$m" "run.graph=$graph" \
      "data.dir=$data_dir" data.train_limit=0 data.val_limit=0 train.epochs=3 \
      "model.mode=$mode" "model.alpha=$alpha" "run.output=/tmp/bneck_train_$tag"
    {
      echo "# bneck-train pattern $name, $m, graph $graph, Fashion-MNIST 60,000 / 10,000, 3 epochs:"
      grep -aE "^ +[0-9]+ |best validation|backend|graph replays" "$out/train_$tag.log" | sed 's/^/#   /'
    } >>"$out/results.txt"
  done
else
  say "$(printf '%-8s %-44s %s' SKIPPED "bneck-train on Fashion-MNIST" "(no $data_dir or no bneck-train)")"
fi

say "done in $((SECONDS - started))s; $failures part(s) failed or timed out, $skipped left out for time; files in $out"
# The device tool returns few files: keep the table and the summary, pack every log.
(cd "$out" && tar czf logs.tar.gz --exclude=logs.tar.gz --exclude=results.txt \
  --exclude=results.csv --exclude=summary.txt ./* && find . -maxdepth 1 -type f \
  ! -name logs.tar.gz ! -name results.txt ! -name results.csv ! -name summary.txt -delete)
[ "$failures" -eq 0 ] || exit 1
exit 0
