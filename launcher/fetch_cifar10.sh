#!/usr/bin/env bash
# Fetches the CIFAR-10 binary distribution for bneck: downloads the official archive,
# checks its MD5 *before* unpacking anything, and unpacks it so that
# TARGET_DIR/cifar-10-batches-bin/ holds the six batch files the loader reads.
# Safe to re-run: a verified, complete copy is left alone.
set -euo pipefail

readonly PROGRAM=${0##*/}
readonly ARCHIVE_URL=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
readonly ARCHIVE_NAME=cifar-10-binary.tar.gz
readonly OFFICIAL_MD5=c32a1d4ab5d03f1284b67883e8d87530
readonly BATCH_DIR_NAME=cifar-10-batches-bin
readonly BATCH_FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin
                      data_batch_5.bin test_batch.bin)
readonly BATCH_BYTES=30730000 # 10000 records of 1 label byte + 3072 pixel bytes
# Written last, holding the archive's MD5: its presence means the unpack completed.
readonly MARKER_NAME=.bneck-verified-md5

usage() {
    cat <<EOF
Usage: $PROGRAM [--archive FILE] [--md5 SUM] [--force] [TARGET_DIR]

Downloads $ARCHIVE_URL,
verifies its MD5 ($OFFICIAL_MD5) before unpacking, and unpacks it into
TARGET_DIR (default: data), giving TARGET_DIR/$BATCH_DIR_NAME/.

  --archive FILE  verify and unpack a local copy of the archive instead of downloading
  --md5 SUM       expect this MD5 instead of the official one (for testing)
  --force         unpack again even if a verified copy is already there
  -h, --help      show this help
EOF
}

fail() {
    echo "$PROGRAM: error: $*" >&2
    exit 1
}

info() { echo "$PROGRAM: $*"; }

# MD5 of a file, with whichever tool this system has (Linux, macOS, or OpenSSL).
md5_of() {
    local file=$1 sum
    if command -v md5sum >/dev/null 2>&1; then
        sum=$(md5sum <"$file") || return 1
    elif command -v md5 >/dev/null 2>&1; then
        sum=$(md5 -q <"$file") || return 1
    else
        sum=$(openssl md5 -r <"$file") || return 1
    fi
    echo "${sum%% *}"
}

file_size() { wc -c <"$1" | tr -d ' '; }

# Succeeds when DIR holds all six batches at their exact size; otherwise says what is wrong.
check_batches() {
    local dir=$1 name size
    for name in "${BATCH_FILES[@]}"; do
        [[ -f $dir/$name ]] || { echo "$BATCH_DIR_NAME/$name is missing"; return 1; }
        size=$(file_size "$dir/$name")
        [[ $size == "$BATCH_BYTES" ]] ||
            { echo "$BATCH_DIR_NAME/$name is $size bytes, expected $BATCH_BYTES"; return 1; }
    done
}

download() {
    local url=$1 destination=$2
    if command -v curl >/dev/null 2>&1; then
        curl --fail --location --retry 3 --output "$destination" -- "$url"
    elif command -v wget >/dev/null 2>&1; then
        wget --tries=3 --output-document="$destination" -- "$url"
    else
        fail "neither curl nor wget is installed; download $url by hand and pass --archive FILE"
    fi
}

archive=""
expected_md5=$OFFICIAL_MD5
force=0
target_dir=""
while (($# > 0)); do
    case $1 in
        --archive) (($# >= 2)) || fail "--archive needs a file"; archive=$2; shift 2 ;;
        --archive=*) archive=${1#*=}; shift ;;
        --md5) (($# >= 2)) || fail "--md5 needs a checksum"; expected_md5=$2; shift 2 ;;
        --md5=*) expected_md5=${1#*=}; shift ;;
        --force) force=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; fail "unknown option '$1'" ;;
        *)
            [[ -z $target_dir ]] || fail "more than one target directory ('$target_dir', '$1')"
            target_dir=$1; shift ;;
    esac
done
target_dir=${target_dir:-data}
command -v md5sum >/dev/null 2>&1 || command -v md5 >/dev/null 2>&1 ||
    command -v openssl >/dev/null 2>&1 || fail "no MD5 tool found (need md5sum, md5 or openssl)"
expected_md5=$(tr 'A-F' 'a-f' <<<"$expected_md5")
[[ $expected_md5 =~ ^[0-9a-f]{32}$ ]] || fail "'$expected_md5' is not an MD5 checksum (32 hex digits)"

batch_dir=$target_dir/$BATCH_DIR_NAME
marker=$batch_dir/$MARKER_NAME

if ((force == 0)) && [[ -f $marker && $(<"$marker") == "$expected_md5" ]] &&
    check_batches "$batch_dir" >/dev/null; then
    info "already present and verified: $batch_dir (use --force to unpack again)"
    exit 0
fi

mkdir -p -- "$target_dir" || fail "cannot create $target_dir"

# Choose the archive: the one given, a verified copy from an earlier run, or a download.
if [[ -n $archive ]]; then
    [[ -f $archive ]] || fail "archive $archive does not exist or is not a file"
else
    archive=$target_dir/$ARCHIVE_NAME
    if [[ -f $archive ]] && [[ $(md5_of "$archive") == "$expected_md5" ]]; then
        info "reusing the archive already downloaded: $archive"
    else
        info "downloading $ARCHIVE_URL (about 160 MB) to $archive"
        # Download under a temporary name so an interrupted transfer never looks complete.
        download "$ARCHIVE_URL" "$archive.part" ||
            { rm -f -- "$archive.part"; fail "download of $ARCHIVE_URL failed"; }
        mv -f -- "$archive.part" "$archive"
    fi
fi

info "verifying the MD5 of $archive"
found_md5=$(md5_of "$archive") || fail "cannot read $archive"
if [[ $found_md5 != "$expected_md5" ]]; then
    fail "MD5 mismatch for $archive: expected $expected_md5, found $found_md5 (a partial or" \
        "tampered download; delete it and run $PROGRAM again); nothing was unpacked"
fi

# Unpack beside the destination, check, then move into place: a failure half-way leaves
# no half-filled batch directory behind.
unpack_dir=$(mktemp -d "$target_dir/.cifar10-unpack.XXXXXX") ||
    fail "cannot create a temporary directory in $target_dir"
trap 'rm -rf -- "$unpack_dir"' EXIT
info "unpacking into $target_dir"
tar -xzf "$archive" -C "$unpack_dir" || fail "cannot unpack $archive"
problem=$(check_batches "$unpack_dir/$BATCH_DIR_NAME") ||
    fail "$archive does not hold the expected CIFAR-10 binary batches: $problem"
echo "$expected_md5" >"$unpack_dir/$BATCH_DIR_NAME/$MARKER_NAME"
rm -rf -- "$batch_dir"
mv -- "$unpack_dir/$BATCH_DIR_NAME" "$batch_dir" || fail "cannot move the batches into $batch_dir"

info "done: $batch_dir holds the CIFAR-10 binary batches"
info "use them with [data] dataset = cifar10, dir = $batch_dir (or data.dataset=cifar10 data.dir=$batch_dir)"
