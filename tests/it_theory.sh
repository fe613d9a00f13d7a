#!/usr/bin/env bash
# Integration test of bneck-theory: the exact counts of SPEC section 2 for patterns A..E
# (from the real model builder), one closed-form ratio, and the usage-error contract.
# Usage: bash tests/it_theory.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build_dir=${1:?usage: it_theory.sh BUILD_DIR SOURCE_DIR}
program="$build_dir/bin/bneck-theory"
[[ -x "$program" ]] || { echo "FAIL: $program is not an executable"; exit 1; }

failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# --- the per-pattern counts, csv, Keras pool branch -----------------------------------
echo "running: $program --patterns --format csv"
patterns_csv=$("$program" --patterns --format csv)
echo "$patterns_csv"

header=$(head -n 1 <<<"$patterns_csv")
[[ "$header" == pattern,mode,alpha,params,trainable,pseudo_flops,macs,* ]] \
    && pass "csv header: $header" || fail "csv header: $header"

# pattern mode alpha params trainable pseudo-FLOPs MACs (SPEC section 2)
expected_counts="A 1 1 2960874 2958122 231091200 228854272
B 2 2 839838 836226 87118848 84738560
C 2 4 493818 490636 50042880 47734272
D 3 2 612488 608016 61273088 58749440
E 3 4 308318 304706 28986368 26606080"

# Field n of pattern p's row, by column name so a reordered csv still checks right.
csv_field() { # csv pattern column
    awk -F, -v pattern="$2" -v column="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == column) at = i; next }
        $1 == pattern && at { print $at; found = 1 }
        END { if (!found) print "(missing)" }' <<<"$1"
}

check_pattern_counts() { # csv pool-branch-offset
    local csv=$1 offset=$2
    while read -r pattern mode alpha params trainable pflops macs; do
        # The PyTorch pool branch lacks 5 BatchNorms: 688 fewer parameters (of which
        # 344 trainable); the arithmetic of convs is the same.
        local want_params=$((params - offset)) want_trainable=$((trainable - offset / 2))
        local column want got
        for column in mode alpha params trainable macs; do
            case $column in
                mode) want=$mode ;;
                alpha) want=$alpha ;;
                params) want=$want_params ;;
                trainable) want=$want_trainable ;;
                macs) want=$macs ;;
            esac
            got=$(csv_field "$csv" "$pattern" "$column")
            [[ "$got" == "$want" ]] && pass "pattern $pattern $column = $want" \
                || fail "pattern $pattern $column: got '$got', SPEC says $want"
        done
        if [[ $offset -eq 0 ]]; then
            got=$(csv_field "$csv" "$pattern" pseudo_flops)
            [[ "$got" == "$pflops" ]] && pass "pattern $pattern pseudo_flops = $pflops" \
                || fail "pattern $pattern pseudo_flops: got '$got', SPEC says $pflops"
        fi
    done <<<"$expected_counts"
}
check_pattern_counts "$patterns_csv" 0

rows=$(tail -n +2 <<<"$patterns_csv" | wc -l)
[[ $rows -eq 5 ]] && pass "5 pattern rows" || fail "$rows pattern rows, want 5"

# csv must hold plain integers, never thousands separators.
grep -q '"' <<<"$patterns_csv" && fail "csv has quoted fields" || pass "csv fields unquoted"
awk -F, 'NR > 1 && NF != 12 { bad = 1 } END { exit bad }' <<<"$patterns_csv" \
    && pass "every csv row has 12 fields" || fail "a csv row does not have 12 fields"

# E saves 7.97x the pseudo-FLOPs of A (231091200 / 28986368).
saving=$(csv_field "$patterns_csv" E a_over_pseudo_flops)
awk -v s="$saving" 'BEGIN { exit !(s > 7.9724 && s < 7.9725) }' \
    && pass "E a_over_pseudo_flops = $saving" || fail "E a_over_pseudo_flops: got '$saving', want 7.97241"

# ... but moves about as many activation bytes per step (model_activation_traffic).
bytes=$(csv_field "$patterns_csv" E step_activation_bytes)
[[ "$bytes" == 14953552 ]] && pass "E step_activation_bytes = $bytes" \
    || fail "E step_activation_bytes: got '$bytes', want 14953552"
saving=$(csv_field "$patterns_csv" E a_over_step_activation_bytes)
awk -v s="$saving" 'BEGIN { exit !(s > 0.9561 && s < 0.9563) }' \
    && pass "E a_over_step_activation_bytes = $saving" \
    || fail "E a_over_step_activation_bytes: got '$saving', want 0.95618"
# ... in more ops: 59 a forward pass against A's 34 (grouped layers).
ops="$(csv_field "$patterns_csv" A ops_per_pass) $(csv_field "$patterns_csv" E ops_per_pass)"
[[ "$ops" == "34 59" ]] && pass "A and E ops_per_pass = $ops" || fail "ops_per_pass of A and E: got '$ops', want '34 59'"

echo "running: $program --patterns --format csv --pool-branch pytorch"
pytorch_csv=$("$program" --patterns --format csv --pool-branch pytorch)
check_pattern_counts "$pytorch_csv" 688

echo "running: $program --patterns (table)"
table=$("$program" --patterns)
grep -q '2,960,874' <<<"$table" && pass "table shows 2,960,874 for A" \
    || fail "table lacks 2,960,874: $table"

# --- one closed-form ratio ------------------------------------------------------------
echo "running: $program --k 1:9 --alpha 2,4 --beta 1,8 --format csv"
ratios_csv=$("$program" --k 1:9 --alpha 2,4 --beta 1,8 --format csv)
head -n 3 <<<"$ratios_csv"
rows=$(tail -n +2 <<<"$ratios_csv" | wc -l)
[[ $rows -eq 36 ]] && pass "36 ratio rows (9 k x 2 alpha x 2 beta)" || fail "$rows ratio rows, want 36"
# k=3, alpha=2, beta=1: BC = 2*1*9/(1+9) = 1.8, BCB = 4*9/(2*2+9) = 2.7692..., limits 2 and 4.
row=$(awk -F, '$1 == 3 && $2 == 2 && $3 == 1' <<<"$ratios_csv")
awk -F, -v r="$row" 'BEGIN {
        split(r, f, ",")
        ok = (f[4] - 1.8 < 1e-9 && 1.8 - f[4] < 1e-9) &&
             (f[5] - 36 / 13 < 1e-9 && 36 / 13 - f[5] < 1e-9) && f[6] == 2 && f[7] == 4
        exit !ok }' \
    && pass "k=3 alpha=2 beta=1: $row" || fail "k=3 alpha=2 beta=1 row: '$row', want 3,2,1,1.8,2.769230769,2,4"

# --- usage errors exit 2 with a message ------------------------------------------------
check_usage_error() { # expected-message-part args...
    local want=$1 status=0 message
    shift
    message=$("$program" "$@" 2>&1 >/dev/null) || status=$?
    if [[ $status -eq 2 && "$message" == *"$want"* ]]; then
        pass "bneck-theory $* -> exit 2: ${message%%$'\n'*}"
    else
        fail "bneck-theory $*: exit $status, message '$message' (want exit 2 mentioning '$want')"
    fi
}
check_usage_error "unknown option '--no-such-option'" --no-such-option
check_usage_error "--alpha" --alpha 2,x
check_usage_error "'x'" --alpha 2,x
check_usage_error "--format" --format json
check_usage_error "--input-channels" --patterns --input-channels 0
# A subnormal is > 0: it once was refused as "must be > 0"; the message gives the range.
check_usage_error "'1e-320' must be a number from 0.000001 to 1000000" --k 1e-320
check_usage_error "'0.0000001' must be a number from 0.000001 to 1000000" --k 0.0000001
check_usage_error "'1000001' must be a number from 0.000001 to 1000000" --beta 1000001
check_usage_error "range step '-1' must be a number from 0.000001 to 1000000" --alpha 1:9:-1
for value in 0.000001 1000000; do
    status=0
    "$program" --k "$value" >/dev/null 2>&1 || status=$?
    [[ $status -eq 0 ]] && pass "--k $value (an end of the range) is accepted" \
        || fail "--k $value (an end of the range): exit $status"
done

status=0
"$program" --help >/dev/null || status=$?
[[ $status -eq 0 ]] && pass "--help exits 0" || fail "--help exits $status"

if [[ $failures -ne 0 ]]; then
    echo "it_theory: $failures check(s) failed"
    exit 1
fi
echo "it_theory: all checks passed"
