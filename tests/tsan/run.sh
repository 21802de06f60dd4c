#!/usr/bin/env bash
# The ThreadSanitizer stage: builds the library with -fsanitize=thread in
# build-tsan/ and runs each case of the threaded programs in tests/tsan/
# in a process of its own, so one report does not hide the others' verdicts.
# Fails on any ThreadSanitizer report, failed check, hang or crash.
#
# The sanitizer's runtime keeps malloc and free for itself: the library is
# built without its malloc family (GPA_OVERRIDE=OFF) and the programs call
# the core's internal entry points and the explicit API instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
command -v make >/dev/null || need+=(make)
# The sanitizer's runtime (libclang_rt.tsan) ships apart from the compiler
# (Debian 12's clang only recommends it).
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.tsan-x86_64.a" >/dev/null || need+=(libclang-rt-14-dev)
# shellcheck source=tests/install_missing.sh
. tests/install_missing.sh
install_missing tests/tsan/run.sh ${need[@]+"${need[@]}"}

dir=build-tsan
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S tests/tsan -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGPA_WERROR=ON \
  -DGPA_OVERRIDE=OFF -DGPA_BUILD_TESTS=OFF -DGPA_BUILD_BENCH=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-fsanitize=thread >/dev/null
programs=(tsan_core tsan_api tsan_fork)
cmake --build "$dir" -j "$jobs" --target "${programs[@]}"

# halt_on_error: the first report ends the case with TSAN_EXITCODE.
# die_after_fork=0: let a multithreaded process's children run (tsan_fork).
TSAN_EXITCODE=66
export TSAN_OPTIONS="halt_on_error=1 exitcode=$TSAN_EXITCODE die_after_fork=0 second_deadlock_stack=1 suppressions=$PWD/tests/tsan/tsan.supp"
# A case takes seconds; one still running after this long has hung.
CASE_TIMEOUT_S=300

passed=0
failed=()
for program in "${programs[@]}"; do
  for name in $("$dir/$program" --list); do
    rc=0
    timeout "$CASE_TIMEOUT_S" "$dir/$program" "$name" || rc=$?
    if [ "$rc" -eq 0 ]; then
      passed=$((passed + 1))
      continue
    fi
    case "$rc" in
      "$TSAN_EXITCODE") why="ThreadSanitizer report" ;;
      124) why="no end after ${CASE_TIMEOUT_S}s" ;;
      1) why="failed check" ;;
      *) why="exit status $rc" ;;
    esac
    failed+=("$program $name ($why)")
  done
done

echo "== ThreadSanitizer: ${passed} passed, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "   FAILED: $f"; done
[ ${#failed[@]} -eq 0 ]
