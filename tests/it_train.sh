#!/usr/bin/env bash
# bneck-train end to end on real Fashion-MNIST data (a small subset), on the CPU:
#  - one line per epoch, the same numbers bit for bit when run twice with the same seed;
#  - --device NAME as the run.device override;
#  - --help, a stray argument, a bad config value, a missing dataset and (without a GPU)
#    --device cuda each end with their exit status and a message naming what was wrong;
#  - a diverging run (non-finite loss) stops at once and exits 1.
# usage: it_train.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd)
train=$build/bin/bneck-train
work=$(mktemp -d /tmp/bneck-it-train.XXXXXX)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/check_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_helpers.sh"

cat > "$work/tiny.ini" <<INI
[run]
seed = 11
device = auto
threads = 1
[data]
dataset = fashion-mnist
train_limit = 384
val_limit = 100
[model]
mode = 3
alpha = 4
[train]
epochs = 2
batch = 64
val_batch = 50
INI

# --- two identical runs -------------------------------------------------------------------
# The epoch lines without the timing columns (s, img/s): everything else is deterministic.
epochs_of() { awk '$1 ~ /^[0-9]+$/ && NF == 8 { print $1, $2, $3, $4, $5, $6 }' "$1"; }
status_is 0 "$work/first.log" "best validation accuracy" "bneck-train --device cpu trains 2 epochs" \
  "$train" "$work/tiny.ini" --device cpu
status_is 0 "$work/second.log" "cpu backend" "bneck-train run.device=cpu, the same run again" \
  "$train" "$work/tiny.ini" run.device=cpu
if [ "$(epochs_of "$work/first.log" | wc -l)" -eq 2 ] &&
  [ "$(epochs_of "$work/first.log")" = "$(epochs_of "$work/second.log")" ]; then
  ok "one line per epoch, identical loss and accuracy in both runs"
else
  paste -d'|' <(epochs_of "$work/first.log") <(epochs_of "$work/second.log"); bad "epoch lines differ"
fi
grep -q "384 train / 100 val images" "$work/first.log" && ok "data limits applied" || bad "data limits"

# --- what goes wrong ---------------------------------------------------------------------------
status_is 0 "$work/help.log" "^usage: bneck-train .*--device" "--help" "$train" --help
status_is 2 "$work/noargs.log" "give a config file or overrides" \
  "no argument at all prints the usage, not the 100-epoch defaults" "$train"
cp "$work/tiny.ini" "$work/run=2.ini"
status_is 0 "$work/dashed.log" "best validation accuracy" \
  "a config file named run=2.ini, and --train.epochs=1 as an override" \
  "$train" "$work/run=2.ini" --train.epochs=1 --device cpu
[ "$(epochs_of "$work/dashed.log" | wc -l)" -eq 1 ] && ok "--train.epochs=1 ran one epoch" ||
  bad "--train.epochs=1 ran $(epochs_of "$work/dashed.log" | wc -l) epochs"
status_is 2 "$work/bare.log" "override 'epochs=3': expected section.key=value" \
  "key=value without a section is named as a malformed override" "$train" "$work/tiny.ini" epochs=3
status_is 2 "$work/threads.log" "\[run\] threads: expected an integer from 0 to 4096, got '100000'" \
  "a thread count far above any machine is refused" "$train" "$work/tiny.ini" run.threads=100000
status_is 2 "$work/stray.log" "unexpected argument 'extra'" "a second config file is refused" \
  "$train" "$work/tiny.ini" extra
status_is 2 "$work/option.log" "unknown option '--bogus'" "an unknown option is named as one" \
  "$train" "$work/tiny.ini" --bogus
printf '[train]\nepochs = many\n' > "$work/bad.ini"
status_is 2 "$work/bad.log" "bad.ini:2: \[train\] epochs: expected" "a bad value names file, line and key" \
  "$train" "$work/bad.ini"
status_is 2 "$work/device.log" "device: expected one of auto, cpu, cuda, got 'gpu'" \
  "--device=gpu names the accepted devices" "$train" "$work/tiny.ini" --device=gpu
status_is 1 "$work/nodata.log" "$work/missing/train-.*: cannot open" "a missing dataset names the file" \
  "$train" "$work/tiny.ini" data.dir="$work/missing" --device cpu
status_is 1 "$work/diverged.log" "training diverged in epoch 1 \(training loss -?nan" \
  "a diverging run stops after its first non-finite epoch and exits 1" \
  "$train" "$work/tiny.ini" --device cpu train.lr=1e30 train.epochs=3
[ "$(epochs_of "$work/diverged.log" | wc -l)" -eq 1 ] && ok "no epoch after the divergence" ||
  bad "epochs after the divergence: $(epochs_of "$work/diverged.log" | wc -l)"
if nvidia-smi -L >/dev/null 2>&1; then
  echo "skip: --device cuda failure check (this machine has a GPU)"
else
  status_is 1 "$work/cuda.log" "device cuda: (no usable GPU: |this build has no CUDA backend)" \
    "--device cuda without a GPU fails with the reason" "$train" "$work/tiny.ini" --device cuda
fi

checks_done it_train
