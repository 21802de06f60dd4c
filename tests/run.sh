#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then
# builds and runs the whole suite on the release build and on the checked
# build (internal invariant checks compiled in), the library's own tests on
# the checked build under UBSan, the threaded programs of tests/tsan/ under
# ThreadSanitizer, and a minute of fuzzing under ASan and UBSan.  Warnings
# are errors.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/cmocka.h ] || need+=(libcmocka-dev)
# Programs the drop-in test runs under the library.
command -v perl >/dev/null || need+=(perl)
command -v git >/dev/null || need+=(git)
[ -x /usr/bin/python3 ] || need+=(python3)
# shellcheck source=tests/install_missing.sh
. tests/install_missing.sh
install_missing tests/run.sh ${need[@]+"${need[@]}"}

jobs=$(nproc 2>/dev/null || echo 2)
for variant in release checked; do
  dir="build-test-$variant"
  checked=OFF
  [ "$variant" = checked ] && checked=ON
  echo "== $variant build ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DGPA_WERROR=ON -DGPA_REQUIRE_TESTS=ON -DGPA_CHECKED=$checked >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
done

# Third: the checked build with undefined-behaviour checks that abort.  The
# scripts that preload the library into other programs or install it are
# left to the builds above: they test packaging, not the library's code.
dir=build-test-ubsan
echo "== checked build under -fsanitize=undefined ($dir)"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DGPA_WERROR=ON -DGPA_REQUIRE_TESTS=ON -DGPA_CHECKED=ON -DGPA_BUILD_BENCH=OFF \
  -DCMAKE_C_FLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined" >/dev/null
cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" --output-on-failure -j "$jobs" -E "real_programs|preload_startup|install_consumer"

# Fourth: the threaded programs of tests/tsan/ under ThreadSanitizer, on a
# build of their own (clang, the library without its malloc family).  Any
# report fails the run.
echo "== ThreadSanitizer (build-tsan)"
bash tests/tsan/run.sh

# Fifth, last: a minute of fuzzing (tests/fuzz/run.sh, README's "Fuzzing"): the
# allocator under ASan and UBSan driven by libFuzzer from the seed corpus.
echo "== fuzzing for 60 s (tests/fuzz/run.sh)"
bash tests/fuzz/run.sh 60

# Reached only when every stage passed (set -e stops at the first failure).
echo "test command: 5 passed, 0 failed (release, checked, UBSan, ThreadSanitizer, fuzzing)"
