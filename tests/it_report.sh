#!/usr/bin/env bash
# Integration test of bneck-report: a sweep file written by h5py (not by our writer, so the
# reader is held to the documented layout of src/results/results.h, field by field name),
# the results table in text, csv and markdown, the three PNG plots, and the errors for a
# missing file, a non-HDF5 file, a file without /runs and an empty sweep.
# Usage: bash tests/it_report.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build_dir=${1:?usage: it_report.sh BUILD_DIR SOURCE_DIR}
program="$build_dir/bin/bneck-report"
[[ -x "$program" ]] || { echo "FAIL: $program is not an executable"; exit 1; }
# Debian's interpreter: python3-h5py is installed for it, whatever python3 is first on PATH.
python=/usr/bin/python3
"$python" -c 'import h5py, numpy' 2>/dev/null \
    || { echo "FAIL: $python cannot import h5py and numpy (apt-get install python3-h5py)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# In a sanitized build (BNECK_SANITIZE) LeakSanitizer counts the caches that fontconfig
# and libltdl keep for the life of the process (PLplot's cairo driver loads them) as
# leaks; suppress those two libraries only, so a leak of ours still fails the test.
printf 'leak:libfontconfig.so\nleak:libltdl.so\n' >"$work/lsan.supp"
export LSAN_OPTIONS="suppressions=$work/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# --- the fixture: 5 patterns x 2 repeats, 6 epochs each, plus one run still going --------
cat >"$work/make_sweep.py" <<'PYTHON'
"""Writes a bneck sweep file the way results.h documents it: compound tables with
fixed-length NUL-padded ASCII strings and int32/int64/uint64/float64 numbers, scalar
attributes as variable-length UTF-8 strings and int64s.
kind: sweep | no-runs | empty | missing-history | huge-epoch | history-not-group"""
import math
import sys

import h5py
import numpy as np

path, kind = sys.argv[1], sys.argv[2]

run_dtype = np.dtype([
    ("pattern", "S16"), ("mode", "<i4"), ("alpha", "<i4"), ("repeat", "<i4"), ("seed", "<u8"),
    ("ranks", "<i4"), ("devices", "S64"), ("hosts", "S64"), ("params", "<i8"),
    ("pseudo_flops", "<i8"), ("macs", "<i8"), ("epochs", "<i4"), ("best_val_acc", "<f8"),
    ("best_epoch", "<i4"), ("final_val_acc", "<f8"), ("median_epoch_s", "<f8"),
    ("sd_epoch_s", "<f8"), ("images_per_s", "<f8"), ("total_s", "<f8"), ("status", "S16")])
epoch_dtype = np.dtype([
    ("epoch", "<i4"), ("lr", "<f8"), ("train_loss", "<f8"), ("train_acc", "<f8"),
    ("val_loss", "<f8"), ("val_acc", "<f8"), ("epoch_s", "<f8"), ("images_per_s", "<f8"),
    ("compute_s", "<f8"), ("allreduce_s", "<f8"), ("data_s", "<f8"), ("eval_s", "<f8")])
summary_dtype = np.dtype([
    ("pattern", "S16"), ("mode", "<i4"), ("alpha", "<i4"), ("n", "<i4"),
    ("median_best_val_acc", "<f8"), ("sd_best_val_acc", "<f8"), ("median_epoch_s", "<f8"),
    ("sd_epoch_s", "<f8"), ("params", "<i8"), ("pseudo_flops", "<i8"), ("macs", "<i8"),
    ("achieved_flops", "<f8")])

# name, mode, alpha, params, pseudo-FLOPs, MACs (SPEC section 2), then the fixture's best
# accuracy median and half spread between the two repeats, epoch seconds median and sd.
patterns = [
    ("A", 1, 1, 2960874, 231091200, 228854272, 0.9012, 0.0010, 5.25, 0.05),
    ("B", 2, 2, 839838, 87118848, 84738560, 0.9101, 0.0020, 4.10, 0.04),
    ("C", 2, 4, 493818, 50042880, 47734272, 0.9033, 0.0005, 3.60, 0.03),
    ("D", 3, 2, 612488, 61273088, 58749440, 0.9088, 0.0015, 4.40, 0.06),
    ("E", 3, 4, 308318, 28986368, 26606080, 0.8990, 0.0025, 3.80, 0.02),
]
epochs, repeats, images = 6, 2, 50000

with h5py.File(path, "w") as f:
    f.attrs["format"] = "bneck-sweep-1"
    if kind == "history-not-group":  # a table where the group of histories belongs
        f["history"] = np.zeros(3)
    if kind == "no-runs":
        f.create_group("history")
        sys.exit(0)
    runs, summary = [], []
    for p, (name, mode, alpha, params, pflops, macs, acc, half, secs, sd) in enumerate(patterns):
        for r in range(repeats):
            best = acc - half if r == 0 else acc + half
            history = np.zeros(epochs, dtype=epoch_dtype)
            for e in range(epochs):
                row = history[e]
                row["epoch"] = e + 1
                row["lr"] = 1e-3
                row["val_acc"] = best if e == epochs - 1 else best * (1 - 0.5 * math.exp(-e))
                row["train_acc"] = row["val_acc"]
                row["epoch_s"] = secs * (1.3 if e == 0 else 1.0)
                row["images_per_s"] = images / row["epoch_s"]
            if kind == "huge-epoch" and name == "B" and r == 0:  # the plot once looped to it
                history["epoch"][0] = 2**31 - 1
            if kind != "history-not-group" and not (kind == "missing-history" and name == "C" and r == 1):
                f.create_dataset(f"history/{name}-r{r}", data=history)
            runs.append((name.encode(), mode, alpha, r, 1000 + 10 * p + r, 1, b"cpu x1", b"host1",
                         params, pflops, macs, epochs, best, epochs, best, secs, sd,
                         images / secs, secs * epochs, b"complete"))
        summary.append((name.encode(), mode, alpha, repeats, acc, half * math.sqrt(2), secs, sd,
                        params, pflops, macs, 6.0 * macs * images / secs))
    # A run still going: in /runs, not in /summary, and no history yet.
    runs.append((b"A", 1, 1, 2, 1002, 1, b"cpu x1", b"host1", 2960874, 231091200, 228854272,
                 0, float("nan"), 0, float("nan"), float("nan"), float("nan"), float("nan"),
                 0.0, b"running"))
    if kind in ("in-progress", "all-diverged"):  # nothing complete to summarise
        runs = [row[:-1] + (b"running" if kind == "in-progress" else b"diverged",) for row in runs]
        nan = float("nan")
        summary = [row[:3] + (0, nan, nan, nan, nan) + row[8:11] + (nan,) for row in summary]
    if kind == "empty":
        runs, summary = [], []
    f.create_dataset("runs", data=np.array(runs, dtype=run_dtype))
    f.create_dataset("summary", data=np.array(summary, dtype=summary_dtype))
    f.attrs["config"] = "[sweep]\npatterns = A,B,C,D,E\nrepeats = 2\nepochs = 6\n"
    f.attrs["git_commit"] = "0123abc"
    f.attrs["versions"] = "HDF5 1.10.8"
    f.attrs["hosts"] = "host1"
    f.attrs["devices"] = "cpu x1"
    f.attrs["mpi_size"] = np.int64(1)
    f.attrs["sd_ddof"] = np.int64(1)
    f.attrs["created"] = "2024-01-01T00:00:00Z"
    if kind == "in-progress":  # a sweep still going on: one more run planned than begun
        f.attrs["runs_planned"] = np.int64(len(runs) + 1)
PYTHON

mkdir -p "$work/sweep" "$work/bad"
sweep="$work/sweep/sweep.h5"
"$python" "$work/make_sweep.py" "$sweep" sweep
"$python" "$work/make_sweep.py" "$work/bad/no_runs.h5" no-runs
"$python" "$work/make_sweep.py" "$work/bad/empty.h5" empty
mkdir -p "$work/in_progress"
"$python" "$work/make_sweep.py" "$work/in_progress/sweep.h5" in-progress
mkdir -p "$work/all_diverged"
"$python" "$work/make_sweep.py" "$work/all_diverged/sweep.h5" all-diverged
"$python" "$work/make_sweep.py" "$work/bad/missing_history.h5" missing-history
"$python" "$work/make_sweep.py" "$work/bad/huge_epoch.h5" huge-epoch
"$python" "$work/make_sweep.py" "$work/bad/history_not_group.h5" history-not-group
echo "this is not HDF5" >"$work/bad/not_hdf5.h5"

# --- the text table ----------------------------------------------------------------------
echo "running: $program $sweep"
status=0
text=$("$program" "$sweep" 2>"$work/stderr") || status=$?
echo "$text"
[[ $status -eq 0 ]] && pass "text report exits 0" || fail "text report exits $status: $(cat "$work/stderr")"

# pattern, val acc % (sd), s/epoch (sd), study val acc % (sd), study s/epoch (sd), speed-up
# (our images/s over the study's; the fixture's 50,000-image epochs make it study s/epoch / ours).
# The sds: half spread * sqrt(2) in percent.
expected_rows="A 90.12 (0.14) 5.25 (0.05) 89.37 (0.14) 46.75 (0.26) 8.90x
B 91.01 (0.28) 4.10 (0.04) 90.85 (0.13) 45.58 (0.16) 11.12x
C 90.33 (0.07) 3.60 (0.03) 90.21 (0.29) 40.39 (0.36) 11.22x
D 90.88 (0.21) 4.40 (0.06) 90.83 (0.09) 48.53 (0.40) 11.03x
E 89.90 (0.35) 3.80 (0.02) 89.90 (0.22) 41.47 (0.21) 10.91x"
while read -r pattern acc acc_sd secs secs_sd study_acc study_acc_sd study_s study_s_sd speedup; do
    row=$(awk -v p="$pattern" '$1 == p' <<<"$text")
    for want in "$acc $acc_sd" "$secs $secs_sd" "$study_acc $study_acc_sd" "$study_s $study_s_sd" \
        "$speedup"; do
        [[ "$row" == *"$want"* ]] && pass "text row $pattern shows $want" \
            || fail "text row $pattern lacks '$want': '$row'"
    done
done <<<"$expected_rows"
rows=$(awk '$1 ~ /^[A-E]$/ && $2 ~ /^[0-9]$/' <<<"$text" | wc -l)
[[ $rows -eq 5 ]] && pass "text table has 5 pattern rows" || fail "text table has $rows pattern rows, want 5"
[[ "$text" == *"2,960,874"*"231,091,200"*"228,854,272"* ]] && pass "text shows A's counts" \
    || fail "text lacks A's params / pseudo-FLOPs / MACs"
[[ "$text" == *"11 runs in /runs, 10 complete"* ]] && pass "text counts runs and complete runs" \
    || fail "text does not say '11 runs in /runs, 10 complete'"
# E/A: 3.80 / 5.25 = 0.724 against 28986368 / 231091200 = 0.125.
[[ "$text" == *"epoch-time ratio 0.724 vs pseudo-FLOP ratio 0.125"* ]] \
    && pass "text has the E/A epoch-time vs pseudo-FLOP ratio" \
    || fail "text lacks 'epoch-time ratio 0.724 vs pseudo-FLOP ratio 0.125'"
# ... and E's step bytes over A's (bneck-theory --patterns: 14953552 / 14298192, CIFAR-10).
[[ "$text" == *"step-bytes ratio 1.046"*"(14.95 against 14.30 MB"* ]] \
    && pass "text has the E/A step-bytes ratio" \
    || fail "text lacks 'step-bytes ratio 1.046 ... (14.95 against 14.30 MB'"

# --- the plots, in the default place: next to the sweep file ---------------------------
png_signature="89 50 4e 47 0d 0a 1a 0a"
check_png() { # path
    local file=$1 signature
    if [[ ! -s "$file" ]]; then
        fail "plot $file missing or empty"
        return
    fi
    signature=$(head -c 8 "$file" | od -An -tx1 | tr -s ' ' | sed 's/^ //; s/ $//')
    [[ "$signature" == "$png_signature" ]] && pass "plot $(basename "$file") is a PNG ($(wc -c <"$file") bytes)" \
        || fail "plot $file does not start with the PNG signature: '$signature'"
    [[ "$text$csv_names" == *"$file"* ]] && pass "the name of $(basename "$file") was printed" \
        || fail "the name $file was not printed"
}
csv_names=""
plots=(val_acc_per_epoch.png epoch_s_vs_pseudo_flops.png theory_ratios.png)
for plot in "${plots[@]}"; do check_png "$work/sweep/plots/$plot"; done
leftovers=$(find "$work/sweep/plots" -name '*.tmp' | wc -l)
[[ $leftovers -eq 0 ]] && pass "no temporary plot files left" || fail "$leftovers .tmp files left"

# --- csv: one table on stdout, plot names on stderr --------------------------------------
echo "running: $program $sweep --format csv --plots $work/csv_plots"
status=0
csv=$("$program" "$sweep" --format csv --plots "$work/csv_plots" 2>"$work/stderr") || status=$?
csv_names=$(cat "$work/stderr")
echo "$csv"
[[ $status -eq 0 ]] && pass "csv report exits 0" || fail "csv report exits $status: $csv_names"
header=$(head -n 1 <<<"$csv")
[[ "$header" == pattern,mode,alpha,n,val_acc_median_pct,val_acc_sd_pct,epoch_s_median,epoch_s_sd,params,pseudo_flops,macs,* ]] \
    && pass "csv header: $header" || fail "csv header: $header"
lines=$(wc -l <<<"$csv")
[[ $lines -eq 6 ]] && pass "csv is a header and 5 rows, nothing else" || fail "csv has $lines lines, want 6"
columns=$(awk -F, 'NR == 1 { print NF }' <<<"$csv")
awk -F, -v n="$columns" 'NF != n { bad = 1 } END { exit bad }' <<<"$csv" \
    && pass "every csv row has $columns fields" || fail "csv rows differ in field count"

csv_field() { # pattern column
    awk -F, -v pattern="$1" -v column="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == column) at = i; next }
        $1 == pattern && at { print $at; found = 1 }
        END { if (!found) print "(missing)" }' <<<"$csv"
}
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d < 1e-6) }'; }
# pattern val acc median %, s/epoch median, study s/epoch, speed-up, params
expected_csv="A 90.12 5.25 46.75 8.904761905 2960874
B 91.01 4.10 45.58 11.11707317 839838
C 90.33 3.60 40.39 11.21944444 493818
D 90.88 4.40 48.53 11.02954545 612488
E 89.90 3.80 41.47 10.91315789 308318"
while read -r pattern acc secs study_s speedup params; do
    for pair in "val_acc_median_pct $acc" "epoch_s_median $secs" "study_epoch_s_median $study_s" \
        "speedup_vs_study $speedup"; do
        column=${pair% *}
        want=${pair#* }
        got=$(csv_field "$pattern" "$column")
        near "$got" "$want" && pass "csv $pattern $column = $got" \
            || fail "csv $pattern $column: got '$got', want $want"
    done
    got=$(csv_field "$pattern" params)
    [[ "$got" == "$params" ]] && pass "csv $pattern params = $got" || fail "csv $pattern params: got '$got', want $params"
done <<<"$expected_csv"
for plot in "${plots[@]}"; do check_png "$work/csv_plots/$plot"; done

# --- markdown ----------------------------------------------------------------------------
echo "running: $program $sweep --format markdown --no-plots"
rm -rf "$work/sweep/plots"
status=0
markdown=$("$program" "$sweep" --format markdown --no-plots 2>"$work/stderr") || status=$?
echo "$markdown"
[[ $status -eq 0 ]] && pass "markdown report exits 0" || fail "markdown report exits $status: $(cat "$work/stderr")"
grep -Eq '^\| pattern +\| mode +\|' <<<"$markdown" && pass "markdown header row" || fail "no markdown header row"
grep -Eq '^\|:-+\|-+:\|' <<<"$markdown" && pass "markdown alignment row" || fail "no markdown alignment row"
rows=$(grep -Ec '^\| [A-E] +\| +[0-9] \|' <<<"$markdown" || true)
[[ $rows -eq 5 ]] && pass "markdown table has 5 pattern rows" || fail "markdown table has $rows pattern rows"
grep -Eq '^\| E .*89\.90 \(0\.35\).*3\.80 \(0\.02\).*10\.91x \|$' <<<"$markdown" \
    && pass "markdown row E has its medians and speed-up" || fail "markdown row E is wrong"
[[ ! -e "$work/sweep/plots" ]] && pass "--no-plots writes no plots" || fail "--no-plots made $work/sweep/plots"

# --- a sweep with no complete run yet: the table, the theory plot, and why the others wait --
echo "running: $program $work/in_progress/sweep.h5"
status=0
text=$("$program" "$work/in_progress/sweep.h5" 2>"$work/stderr") || status=$?
echo "$text"
if [[ $status -eq 0 && "$text" == *"11 runs in /runs, 0 complete, 11 unfinished, 1 not begun;"* \
      && "$text" == *"skipped $work/in_progress/plots/val_acc_per_epoch.png: no complete run yet"* \
      && "$text" == *"skipped $work/in_progress/plots/epoch_s_vs_pseudo_flops.png: no pattern has a complete run"* \
      && -s "$work/in_progress/plots/theory_ratios.png" \
      && ! -e "$work/in_progress/plots/val_acc_per_epoch.png" ]]; then
    pass "a sweep in progress: exit 0, the table, the theory plot, and the other two skipped with the reason"
else
    fail "a sweep in progress: exit $status, stderr '$(cat "$work/stderr")'"
fi

# --- a finished sweep whose every run diverged: counted as such, nothing to wait for ---------
status=0
text=$("$program" "$work/all_diverged/sweep.h5" 2>"$work/stderr") || status=$?
if [[ $status -eq 0 && "$text" == *"11 runs in /runs, 0 complete, 11 diverged;"* \
      && "$text" == *"skipped $work/all_diverged/plots/val_acc_per_epoch.png: no complete run"* \
      && "$text" != *"no complete run yet"* ]]; then
    pass "a sweep whose runs all diverged: counted as diverged, plots skipped without a 'yet'"
else
    echo "$text"; fail "a sweep whose runs all diverged: exit $status, stderr '$(cat "$work/stderr")'"
fi

# --- a Fashion-MNIST sweep is told apart from the study's CIFAR-10 ----------------------------
"$python" - "$work/fmnist.h5" "$sweep" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[2], sys.argv[1])
with h5py.File(sys.argv[1], "a") as f:
    f.attrs["config"] = "[data]\ndataset = fashion-mnist\n[sweep]\npatterns = A,B,C,D,E\n"
PY
status=0
text=$("$program" "$work/fmnist.h5" --no-plots 2>"$work/stderr") || status=$?
cifar_status=0 # the study's own dataset: no caveat
cifar_text=$("$program" "$sweep" --no-plots 2>/dev/null) || cifar_status=$?
if [[ $status -eq 0 && "$text" == *"the study trained on CIFAR-10 and this sweep on fashion-mnist"* ]] &&
   [[ $cifar_status -eq 0 && -n "$cifar_text" && "$cifar_text" != *"the study trained on CIFAR-10"* ]]; then
    pass "a sweep on another dataset than the study's says its accuracies do not compare"
else
    echo "$text"; fail "the dataset caveat: exit $status (on the CIFAR-10 sweep: $cifar_status)"
fi
# The settings attribute (every key as used) wins over the config file's text, whose
# overrides are only comments: a config naming fashion-mnist run with data.dataset=cifar10.
"$python" - "$work/overridden.h5" "$work/fmnist.h5" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[2], sys.argv[1])
with h5py.File(sys.argv[1], "a") as f:
    f.attrs["config"] = "[data]\ndataset = fashion-mnist\n; overrides:\n; data.dataset=cifar10\n"
    f.attrs["settings"] = "[data]\ndataset = cifar10\n"
PY
status=0
text=$("$program" "$work/overridden.h5" --no-plots 2>"$work/stderr") || status=$?
if [[ $status -eq 0 && "$text" != *"the study trained on CIFAR-10"* ]]; then
    pass "the dataset is read from the settings attribute, overrides applied"
else
    echo "$text"; fail "the dataset from settings: exit $status"
fi

# --- a sweep's output directory stands for its sweep.h5 ------------------------------------
status=0
by_directory=$("$program" "$work/sweep/" --no-plots 2>"$work/stderr") || status=$?
[[ $status -eq 0 && "$by_directory" == *"11 runs in /runs, 10 complete"* ]] \
    && pass "an output directory reads its sweep.h5" || fail "an output directory: exit $status, $(cat "$work/stderr")"
status=0
message=$("$program" "$work/bad" --no-plots 2>&1 >/dev/null) || status=$?
[[ $status -eq 1 && "$message" == *"$work/bad is a directory without a sweep.h5 (nor a sweep.ini"* ]] \
    && pass "a directory that is no sweep's output: exit 1, saying so" \
    || fail "a directory that is no sweep's output: exit $status, '$message'"
: > "$work/bad/sweep.ini"
status=0
message=$("$program" "$work/bad" --no-plots 2>&1 >/dev/null) || status=$?
[[ $status -eq 1 && "$message" == *"$work/bad holds no sweep.h5 yet"*"$work/bad/sweep.ini --dry-run"* ]] \
    && pass "a directory without sweep.h5: exit 1, saying how to see the sweep's progress" \
    || fail "a directory without sweep.h5: exit $status, '$message'"

# --- errors: non-zero exit and a message naming the file ----------------------------------
check_error() { # file expected-message-part
    local file=$1 want=$2 status=0 message
    message=$("$program" "$file" --no-plots 2>&1 >/dev/null) || status=$?
    if [[ $status -ne 0 && "$message" == *"$file"* && "$message" == *"$want"* ]]; then
        pass "$(basename "$file") -> exit $status: $message"
    else
        fail "$file: exit $status, message '$message' (want non-zero naming the file and '$want')"
    fi
}
check_error "$work/bad/missing.h5" "No such file"
check_error "$work/bad/not_hdf5.h5" "not an HDF5 file"
check_error "$work/bad/no_runs.h5" "/runs"
check_error "$work/bad/empty.h5" "empty sweep"
check_error "$work/bad/missing_history.h5" "/history/C-r1"
check_error "$work/bad/huge_epoch.h5" "/history/B-r0 row 1 has epoch 2147483647, expected 1"
check_error "$work/bad/history_not_group.h5" "/history is not a group"

status=0
message=$("$program" "$sweep" --format json 2>&1 >/dev/null) || status=$?
[[ $status -eq 2 && "$message" == *"--format"* ]] && pass "--format json -> exit 2" \
    || fail "--format json: exit $status, '$message'"
status=0
"$program" --help >/dev/null || status=$?
[[ $status -eq 0 ]] && pass "--help exits 0" || fail "--help exits $status"

if [[ $failures -ne 0 ]]; then
    echo "it_report: $failures check(s) failed"
    exit 1
fi
echo "it_report: all checks passed"
