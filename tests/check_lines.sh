# check_lines.sh: sourced by the test scripts.  One line per check ("ok ..."
# or "FAIL ..."), a count at the end, and the exit status ctest reads.

passed=0
failed=0
ok() {
  echo "ok $*"
  passed=$((passed + 1))
}
bad() {
  echo "FAIL $*"
  failed=$((failed + 1))
}
# The summary line; exits 0 only when nothing failed.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}
