#!/usr/bin/env bash
# Installs every Debian 12 package bneck needs to build, test and run. Idempotent: it
# only calls apt-get when something is missing. Usage: launcher/setup.sh [--bench]
#   --bench  also installs PyTorch (python3-torch), for the side-by-side CPU benchmark.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libdnnl-dev libopenblas-dev          # CPU GEMM (oneDNN by default, OpenBLAS selectable)
  libhdf5-dev                          # results files
  libinih-dev zlib1g-dev               # config parser, gzip for Fashion-MNIST
  libopenmpi-dev openmpi-bin           # the sweep launcher
  libcriterion-dev                     # unit tests
  libplplot-dev plplot-driver-cairo    # bneck-report plots
  dataset-fashion-mnist                # the embedded default dataset
  python3 python3-h5py python3-pandas python3-xarray  # results-file checks, analysis
  python3-netcdf4 python3-h5netcdf     # xarray.open_dataset on the /columns groups
  slurm-wlm munge                      # sbatch slurm/sweep.sh, and its tests
  curl ca-certificates                 # launcher/fetch_cifar10.sh
)
if [ "${1:-}" = "--bench" ]; then packages+=(python3-torch); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
