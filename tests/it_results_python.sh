#!/usr/bin/env bash
# The results files as analysis tools see them: the sample sweep.h5 and run file written by
# test_results (test results/write_sample) are read with Debian's h5py, pandas and xarray,
# without any of our code: the compound tables load into DataFrames with the documented
# columns and values, histories index by epoch, attributes are plain strings and numbers,
# and the weights have their layer names and OIHW shapes; the /columns groups open with
# xarray.open_dataset through both netCDF engines.
# Usage: bash tests/it_results_python.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build_dir=${1:?usage: it_results_python.sh BUILD_DIR SOURCE_DIR}
program="$build_dir/tests/test_results"
python=/usr/bin/python3
[[ -x "$program" ]] || { echo "FAIL: $program is not an executable"; exit 1; }
"$python" -c 'import h5py, pandas, xarray, netCDF4, h5netcdf' \
    || { echo "FAIL: $python lacks h5py, pandas, xarray, netCDF4 or h5netcdf (python3-h5py python3-pandas python3-xarray python3-netcdf4 python3-h5netcdf: launcher/setup.sh)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bneck-it-results-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "running: BNECK_RESULTS_SAMPLE=$work/sweep.h5 $program --filter 'results/write_sample'"
BNECK_RESULTS_SAMPLE="$work/sweep.h5" "$program" --filter 'results/write_sample'
[[ -s "$work/sweep.h5" && -s "$work/A-r0.h5" ]] \
    || { echo "FAIL: the sample files were not written"; ls -l "$work"; exit 1; }
echo "ok:   wrote $work/sweep.h5 and $work/A-r0.h5"

"$python" - "$work/sweep.h5" "$work/A-r0.h5" <<'PYTHON'
import math
import sys

import h5py
import numpy as np
import pandas as pd
import xarray as xr

sweep_path, run_path = sys.argv[1], sys.argv[2]
failures = 0


def check(condition, what):
    global failures
    print(("ok:   " if condition else "FAIL: ") + what)
    if not condition:
        failures += 1


def text(column):
    """Fixed-length strings come back as bytes (numpy 'S'); decode for comparisons."""
    return list(column.str.decode("ascii"))


RUN_COLUMNS = ["pattern", "mode", "alpha", "repeat", "seed", "ranks", "devices", "hosts",
               "params", "pseudo_flops", "macs", "epochs", "best_val_acc", "best_epoch",
               "final_val_acc", "median_epoch_s", "sd_epoch_s", "images_per_s", "total_s",
               "status"]
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_s",
                   "images_per_s", "compute_s", "allreduce_s", "data_s", "eval_s"]
SUMMARY_COLUMNS = ["pattern", "mode", "alpha", "n", "median_best_val_acc", "sd_best_val_acc",
                   "median_epoch_s", "sd_epoch_s", "params", "pseudo_flops", "macs",
                   "achieved_flops"]

with h5py.File(sweep_path, "r") as f:
    # --- /runs ----------------------------------------------------------------------
    runs = pd.DataFrame(f["runs"][()])
    print(runs.to_string(max_colwidth=14))
    check(list(runs.columns) == RUN_COLUMNS, f"/runs columns: {list(runs.columns)}")
    check(len(runs) == 6, f"/runs has 6 rows ({len(runs)})")
    check(text(runs.pattern) == ["A", "B", "A", "A", "B", "C"],
          f"/runs pattern decodes to {text(runs.pattern)}")
    check(text(runs.status) == ["complete"] * 3 + ["running", "complete", "running"],
          f"/runs status: {text(runs.status)}")
    check(text(runs.devices)[0] == "cpu x2" and text(runs.hosts)[0] == "node1,node2",
          "devices and hosts strings, NUL padding stripped")
    check(runs.seed.dtype == np.uint64 and int(runs.seed[0]) == 0xFEDCBA9876543210,
          f"seed is uint64 and exact ({runs.seed.dtype})")
    check(runs["mode"].dtype == np.int32 and runs["params"].dtype == np.int64,
          f"integer columns: mode {runs['mode'].dtype}, params {runs['params'].dtype}")
    check(list(runs.best_val_acc) == [0.8, 0.5, 0.9, 0.99, 0.45, 0.2],
          f"best_val_acc: {list(runs.best_val_acc)}")
    check(list(runs.best_epoch) == [2, 2, 3, 1, 1, 1], f"best_epoch: {list(runs.best_epoch)}")
    check(runs.median_epoch_s[0] == 3.0 and runs.images_per_s[0] == 90.0,
          "A-r0 median epoch 3 s (epochs 2 and 3), 90 images/s")
    check(math.isnan(runs.sd_epoch_s[1]), "one timed epoch: sd is NaN")
    complete = runs[runs.status.str.decode("ascii") == "complete"]
    check(len(complete) == 4, "filtering on decoded status gives the 4 complete runs")

    # --- /summary -------------------------------------------------------------------
    summary = pd.DataFrame(f["summary"][()])
    summary["pattern"] = summary.pattern.str.decode("ascii")
    summary = summary.set_index("pattern")
    print(summary.to_string())
    check(list(summary.reset_index().columns) == SUMMARY_COLUMNS,
          f"/summary columns: {list(summary.reset_index().columns)}")
    check(list(summary.index) == ["A", "B", "C"], "one row per pattern, first-seen order")
    a, b, c = summary.loc["A"], summary.loc["B"], summary.loc["C"]
    check(a.n == 2 and b.n == 2 and c.n == 0, "n counts complete runs only")
    check(abs(a.median_best_val_acc - 0.85) < 1e-12 and
          abs(a.sd_best_val_acc - 0.1 / math.sqrt(2)) < 1e-12, "A best accuracy median and sd")
    check(abs(a.median_epoch_s - 3.5) < 1e-12 and abs(a.sd_epoch_s - math.sqrt(5 / 3)) < 1e-12,
          "A epoch seconds pooled over runs, first epochs left out")
    check(abs(a.achieved_flops - 6 * 1000 * 100) < 1e-6, "A achieved FLOP/s = 6 * macs * images/s")
    check(abs(b.median_best_val_acc - 0.475) < 1e-12 and abs(b.median_epoch_s - 7) < 1e-12,
          "B medians")
    check(math.isnan(c.median_best_val_acc) and math.isnan(c.achieved_flops) and c.macs == 250,
          "C (no complete run): NaN statistics, counts kept")

    # --- /history -------------------------------------------------------------------
    check(sorted(f["history"].keys()) == ["A-r0", "A-r1", "A-r2", "B-r0", "B-r1", "C-r0"],
          f"/history tables: {sorted(f['history'].keys())}")
    history = pd.DataFrame(f["history/A-r0"][()])
    print(history.to_string())
    check(list(history.columns) == HISTORY_COLUMNS, f"/history/A-r0 columns")
    check(list(history.epoch) == [1, 2, 3], f"epochs 1..3: {list(history.epoch)}")
    check(list(history.val_acc) == [0.5, 0.8, 0.7], "val_acc per epoch")
    dataset = xr.Dataset.from_dataframe(history.set_index("epoch"))
    print(dataset)
    check(float(dataset.val_acc.sel(epoch=2)) == 0.8, "xarray: val_acc.sel(epoch=2) == 0.8")
    check(float(dataset.epoch_s.isel(epoch=slice(1, None)).median()) == 3.0,
          "xarray: median epoch_s after the first")

    # --- attributes -----------------------------------------------------------------
    attrs = dict(f.attrs)
    for key in sorted(attrs):
        value = attrs[key]
        print(f"  attr {key} = {value!r}"[:120])
    check(attrs["format"] == "bneck-sweep-1", "format bneck-sweep-1")
    check(isinstance(attrs["config"], str) and "patterns = A B" in attrs["config"]
          and "\u00e9t\u00e9" in attrs["config"], "config is a str, UTF-8 intact")
    check(attrs["sd_ddof"] == 1, f"sd_ddof == 1 ({attrs['sd_ddof']!r})")
    check(attrs["mpi_size"] == 2, "mpi_size == 2")
    check(attrs["slurm_job_id"] == "4242" and "slurm_nodelist" not in attrs,
          "slurm_job_id present, unknown slurm_nodelist left out")
    for key in ["git_commit", "versions", "hosts", "devices", "created"]:
        check(isinstance(attrs.get(key), str), f"attribute {key} is a str")

with h5py.File(run_path, "r") as g:
    attrs = dict(g.attrs)
    check(attrs["format"] == "bneck-run-1" and attrs["status"] == "complete",
          "run file: format bneck-run-1, status complete")
    check(attrs["pattern"] == "A" and attrs["epochs"] == 4 and attrs["seed"] == 0xFEDCBA9876543210,
          "run file: row fields as attributes")
    history = pd.DataFrame(g["history"][()])
    check(list(history.epoch) == [1, 2, 3, 4], "run file: history epochs 1..4")
    kernel = g["weights/inception1/1x1/conv/kernel"]
    check(kernel.ndim == 4 and kernel.shape[1:] == (1, 1, 1), f"1x1 conv kernel OIHW {kernel.shape}")
    kernel5 = g["weights/inception1/5x5/spatial/conv/kernel"]
    check(kernel5.shape[2:] == (5, 5), f"5x5 conv kernel OIHW {kernel5.shape}")
    dense = g["weights/dense/kernel"]
    check(dense.shape[0] == 10 and dense.ndim == 2, f"dense kernel [out][in] {dense.shape}")
    bn = g["weights/inception1/1x1/bn"]
    check(sorted(bn.keys()) == ["beta", "gamma", "moving_mean", "moving_variance"],
          f"batch norm tensors {sorted(bn.keys())}")
    weights = xr.DataArray(kernel5[()], dims=["out", "in", "kh", "kw"])
    check(weights.sizes["kh"] == 5, "xarray wraps a kernel with named dims")
    checkpoint = g["checkpoint"]
    check(checkpoint["params"].dtype == np.float32 and checkpoint["params"].ndim == 1
          and checkpoint["adam_m"].shape == checkpoint["params"].shape,
          f"checkpoint params 1-D float32 {checkpoint['params'].shape}")
    check(checkpoint.attrs["step"] == 12345 and checkpoint.attrs["epochs_done"] == 4,
          "checkpoint step and epochs_done")

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
PYTHON

# The /columns groups open with xarray.open_dataset itself, through netCDF-C (netCDF4, the
# default engine where it is installed) and through h5netcdf, and hold the same numbers and
# texts as the compound tables; a history is NaN after its run's last epoch.
"$python" - "$work/sweep.h5" <<'PYTHON'
import sys
import h5py
import numpy as np
import xarray as xr

path = sys.argv[1]
failures = 0
def check(condition, what):
    global failures
    failures += not condition
    print(("ok:   " if condition else "FAIL: ") + what)

f = h5py.File(path, "r")
runs, summary = f["runs"][()], f["summary"][()]
names = [f"{r['pattern'].decode()}-r{r['repeat']}" for r in runs]
def same(column, table_column):
    column = np.asarray(column)
    if table_column.dtype.kind == "S":
        return list(column) == [t.decode() for t in table_column]
    return np.array_equal(column, table_column, equal_nan=True)
for engine in ("netcdf4", "h5netcdf"):
    view = xr.open_dataset(path, group="columns/runs", engine=engine)
    check(list(view["run"].values) == names, f"{engine}: columns/runs is over the run names {names}")
    check(all(same(view[name].values, runs[name]) for name in runs.dtype.names),
          f"{engine}: every /runs column equal in columns/runs")
    check("description" in view["best_val_acc"].attrs, f"{engine}: columns carry their description")
    view = xr.open_dataset(path, group="columns/summary", engine=engine)
    check(same(view["pattern"].values, summary["pattern"])
          and all(same(view[name].values, summary[name]) for name in summary.dtype.names if name != "pattern"),
          f"{engine}: every /summary column equal in columns/summary, over pattern")
    history = xr.open_dataset(path, group="columns/history", engine=engine)
    longest = max(len(f["history"][n]) for n in names)
    check(dict(history.sizes) == {"run": len(names), "epoch": longest}
          and list(history["epoch"].values) == list(range(1, longest + 1)),
          f"{engine}: columns/history is over (run, epoch) {dict(history.sizes)}")
    exact = True
    for name in names:
        table = f["history"][name][()]
        for field in table.dtype.names:
            if field == "epoch":
                continue
            row = history[field].sel(run=name).values
            exact &= np.array_equal(row[:len(table)], table[field]) and bool(np.isnan(row[len(table):]).all())
    check(exact, f"{engine}: every history value equal, NaN after each run's last epoch")

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
PYTHON
echo "PASS: it_results_python"
