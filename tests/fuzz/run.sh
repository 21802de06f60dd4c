#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS]: build the fuzz targets (build-fuzz/, clang with
# AddressSanitizer and UndefinedBehaviorSanitizer) and fuzz the allocator for
# SECONDS (default 60).  Installs clang when missing.  Exits non-zero when the
# fuzzer finds a crash; the input that caused it lands in build-fuzz/crashes/.
#
# Inputs found along the way go to build-fuzz/corpus/, never to the seed
# corpus in tests/fuzz/corpus/.  FUZZ_JOBS=N runs N fuzzing processes
# (libFuzzer's fork mode) for long runs on a machine with cores to spare.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
jobs=${FUZZ_JOBS:-1}

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v make >/dev/null || need+=(make)
command -v clang >/dev/null || need+=(clang)
# The fuzzer's runtime (libclang_rt.fuzzer) ships apart from the compiler.
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null || need+=(libclang-rt-14-dev)
# shellcheck source=tests/install_missing.sh
. tests/install_missing.sh
install_missing tests/fuzz/run.sh ${need[@]+"${need[@]}"}

dir=build-fuzz
cmake -S tests/fuzz -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_alloc
mkdir -p "$dir/corpus" "$dir/crashes"

# -timeout: one input is a few hundred calls; half a minute means a hang.
# -rss_limit_mb: live blocks are capped at 64 MiB; the rest is caches,
#   the sanitizers' shadow and the fuzzer's own data.
# -detect_leaks=0: the library never calls malloc, so LeakSanitizer could
#   only watch the harness, and its scans of the library's address maps
#   would cost every run that allocated.
flags=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=1024 -detect_leaks=0
  -artifact_prefix="$dir/crashes/" -print_final_stats=1)
[ "$jobs" -gt 1 ] && flags+=(-fork="$jobs")
# The same for the sanitizers' own exit-time leak check.  A small
# quarantine: only the fuzzer's own mallocs go through it (the library maps
# its memory itself), and the default 256 MiB made a long run's RSS climb
# run after run.  Full stacks for undefined behaviour.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

echo "== fuzzing the allocator for ${seconds}s ($jobs process(es)); crashes go to $dir/crashes/"
stamp="$dir/crashes/.started"
touch "$stamp"
if ! "$dir/fuzz_alloc" "${flags[@]}" "$dir/corpus" tests/fuzz/corpus; then
  echo "tests/fuzz/run.sh: the fuzzer found a crash; reproduce with $dir/fuzz_alloc FILE:" >&2
  find "$dir/crashes" -type f -newer "$stamp" >&2
  exit 1
fi
