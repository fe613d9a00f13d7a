#!/usr/bin/env bash
# launcher/fetch_cifar10.sh on archives made here (CIFAR-10 itself cannot be downloaded on
# this machine), with --archive and --md5 standing in for the download:
#  - a wrong MD5 is refused before anything is unpacked;
#  - a good archive is unpacked, and the setting the script prints trains with bneck-train;
#  - a second run leaves the verified copy alone;
#  - an archive that lacks a batch is refused, and the copy already there is kept.
# usage: it_fetch_cifar10.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
fetch=$source_dir/launcher/fetch_cifar10.sh
work=$(mktemp -d /tmp/bneck-it-fetch.XXXXXX)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/check_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_helpers.sh"

# Six batches of 10,000 records (1 label byte, 3,072 pixel bytes): labels 0-9 in turn, each
# image a flat grey of its label, so that a run can learn them.
mkdir -p "$work/src/cifar-10-batches-bin" "$work/short/cifar-10-batches-bin"
/usr/bin/python3 - "$work/src/cifar-10-batches-bin/data_batch_1.bin" <<'PY'
import sys
records = bytearray()
for i in range(10000):
    label = i % 10
    records += bytes([label]) + bytes([25 * label]) * 3072
open(sys.argv[1], "wb").write(records)
PY
# hard links, here and so in the archives and what they unpack to: 31 MB on disk, not 180
for name in data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin; do
  ln "$work/src/cifar-10-batches-bin/data_batch_1.bin" "$work/src/cifar-10-batches-bin/$name"
done
tar -czf "$work/good.tar.gz" -C "$work/src" cifar-10-batches-bin
ln "$work/src/cifar-10-batches-bin/data_batch_"[1-4].bin "$work/short/cifar-10-batches-bin/"
ln "$work/src/cifar-10-batches-bin/test_batch.bin" "$work/short/cifar-10-batches-bin/"
tar -czf "$work/short.tar.gz" -C "$work/short" cifar-10-batches-bin
good_md5=$(md5sum < "$work/good.tar.gz" | cut -d' ' -f1)
short_md5=$(md5sum < "$work/short.tar.gz" | cut -d' ' -f1)
batches=$work/data/cifar-10-batches-bin

if ! "$fetch" --archive "$work/good.tar.gz" "$work/data" > "$work/wrong_md5.log" 2>&1 &&
  grep -q "MD5 mismatch for $work/good.tar.gz: expected c32a1d4ab5d03f1284b67883e8d87530, found $good_md5" "$work/wrong_md5.log" &&
  grep -q "nothing was unpacked" "$work/wrong_md5.log" && [ ! -e "$batches" ]; then
  ok "an archive whose MD5 is not the official one is refused, nothing unpacked"
else cat "$work/wrong_md5.log"; bad "a wrong MD5"; fi

if "$fetch" --archive "$work/good.tar.gz" --md5 "$good_md5" "$work/data" > "$work/good.log" 2>&1 &&
  [ "$(ls "$batches" | wc -l)" = 6 ] && [ "$(cat "$batches/.bneck-verified-md5")" = "$good_md5" ] &&
  cmp -s "$batches/test_batch.bin" "$work/src/cifar-10-batches-bin/test_batch.bin"; then
  ok "a good archive is unpacked into TARGET/cifar-10-batches-bin"
else cat "$work/good.log"; bad "unpacking a good archive"; fi

# the overrides the script prints, as printed
printed=$(sed -n 's/.*(or \(data\.dataset=cifar10 data\.dir=[^)]*\))$/\1/p' "$work/good.log")
# shellcheck disable=SC2086 # the printed overrides are two words
if [ -n "$printed" ] &&
  "$build/bin/bneck-train" $printed run.device=cpu run.threads=1 model.mode=3 model.alpha=4 \
    data.train_limit=200 data.val_limit=100 train.epochs=1 train.batch=50 > "$work/train.log" 2>&1 &&
  grep -q "cifar10" "$work/train.log" && grep -qE "^ +1 " "$work/train.log"; then
  ok "the setting fetch_cifar10.sh prints trains on what it unpacked ($printed)"
else cat "$work/good.log" "$work/train.log"; bad "training with the printed setting"; fi

if "$fetch" --archive "$work/good.tar.gz" --md5 "$good_md5" "$work/data" > "$work/again.log" 2>&1 &&
  grep -q "already present and verified: $batches" "$work/again.log"; then
  ok "a second run leaves the verified copy alone"
else cat "$work/again.log"; bad "a second run"; fi

before=$(cd "$batches" && md5sum ./* .bneck-verified-md5)
if ! "$fetch" --archive "$work/short.tar.gz" --md5 "$short_md5" --force "$work/data" > "$work/short.log" 2>&1 &&
  grep -q "does not hold the expected CIFAR-10 binary batches: cifar-10-batches-bin/data_batch_5.bin is missing" "$work/short.log" &&
  [ "$(cd "$batches" && md5sum ./* .bneck-verified-md5)" = "$before" ] &&
  [ -z "$(find "$work/data" -name '.cifar10-unpack.*')" ]; then
  ok "an archive without data_batch_5.bin is refused; the copy already there is kept, nothing left half-made"
else cat "$work/short.log"; bad "an archive that lacks a batch"; fi

checks_done it_fetch_cifar10
