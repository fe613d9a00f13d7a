# shellcheck shell=bash
# Sourced by the integration scripts (tests/it_*.sh): each check says ok or FAILED with
# what it checked, the script goes on to the next, and checks_done ends it with the tally
# (status 1 when any check failed).
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
# checks_done NAME: the last command of a script
checks_done() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
# status_is WANT LOG PATTERN WHAT COMMAND...: COMMAND exits with WANT and LOG matches PATTERN
status_is() {
  local want=$1 log=$2 pattern=$3 what=$4
  shift 4
  "$@" > "$log" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ] && grep -qE -- "$pattern" "$log"; then ok "$what"
  else cat "$log"; bad "$what (exit $got, wanted $want and /$pattern/)"; fi
}
