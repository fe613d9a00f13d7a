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
