#!/bin/bash
# launcher.sh: the `gpa` launcher end to end: exit statuses passed through,
# the environment it gives the program (LD_PRELOAD, GPA_OPTIONS), how it
# finds libgpa.so, and its usage errors.
#
#   bash tests/launcher.sh /abs/path/gpa /abs/dir/with/libgpa.so
#
# Prints one line per check ("ok ..." or "FAIL ...") and a final
# "N passed, M failed"; exits non-zero if anything failed.
set -u

gpa=${1:-}
libdir=${2:-}
if [ -z "$gpa" ] || [ -z "$libdir" ]; then
  echo "usage: $0 /abs/path/gpa /abs/dir/with/libgpa.so" >&2
  exit 2
fi
case $gpa in /*) ;; *) gpa=$PWD/$gpa ;; esac
case $libdir in /*) ;; *) libdir=$PWD/$libdir ;; esac

. "$(dirname "${BASH_SOURCE[0]}")/check_lines.sh"

if [ ! -x "$gpa" ] || [ ! -e "$libdir/libgpa.so" ]; then
  bad "need an executable $gpa and $libdir/libgpa.so"
  finish
fi

# A scratch tree for the layouts the launcher searches; removed at exit.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs the launcher with a clean GPA_* environment and the library named
# explicitly; stdout to $scratch/out, stderr to $scratch/err, status in $rc.
run_gpa() {
  env -u GPA_OPTIONS -u LD_PRELOAD GPA_LIBRARY="$libdir/libgpa.so" "$gpa" "$@" \
    >"$scratch/out" 2>"$scratch/err"
  rc=$?
}

# expect_status WHAT WANT: compares $rc.
expect_status() {
  if [ "$rc" -eq "$2" ]; then
    ok "$1 (exit $rc)"
  else
    bad "$1: exit $rc, wanted $2: $(head -c 300 "$scratch/err")"
  fi
}

# expect_in FILE WHAT PATTERN: a line of FILE matches the extended regex.
expect_in() {
  if grep -Eq -- "$3" "$scratch/$1"; then
    ok "$2"
  else
    bad "$2: no line matching '$3' in: $(head -c 300 "$scratch/$1")"
  fi
}

# ---- exit statuses are the program's own ----------------------------------
run_gpa run -- /bin/true
expect_status "run -- /bin/true" 0
run_gpa run -- /bin/false
expect_status "run -- /bin/false" 1
run_gpa run /bin/sh -c 'exit 7'
expect_status "run /bin/sh -c 'exit 7' (no --)" 7
run_gpa run --leaks --frames 4 /bin/sh -c 'echo "$0 $1"' a b
expect_status "program arguments passed through" 0
expect_in out "arguments reach the program unchanged" '^a b$'

# ---- the environment the program sees ------------------------------------
run_gpa run --stats -- /usr/bin/env
expect_status "run --stats -- env" 0
expect_in out "LD_PRELOAD names libgpa.so" '^LD_PRELOAD=/.*/libgpa\.so'
expect_in out "GPA_OPTIONS has stats=1" '^GPA_OPTIONS=(.*[:,])?stats=1([:,].*)?$'

run_gpa run --leaks --frames=16 --exact-stacks --log rel.log --options 'debug=1,exitcode=0' -- /usr/bin/env
expect_in out "every flag translated, in order, --log made absolute" \
  "^GPA_OPTIONS=leaks=1:frames=16:stacks=exact:log=$PWD/rel\.log:debug=1,exitcode=0\$"

GPA_OPTIONS=verbose=1:stats=0 LD_PRELOAD=/nonexistent/other.so GPA_LIBRARY="$libdir/libgpa.so" \
  "$gpa" run --stats -- /usr/bin/env >"$scratch/out" 2>"$scratch/err"
expect_in out "flags appended after an existing GPA_OPTIONS" '^GPA_OPTIONS=verbose=1:stats=0:stats=1$'
expect_in out "libgpa.so prepended to an existing LD_PRELOAD" \
  '^LD_PRELOAD=/[^ ]*/libgpa\.so[^ ]* /nonexistent/other\.so$'

run_gpa run -- /usr/bin/env
if grep -q '^GPA_OPTIONS=' "$scratch/out"; then
  bad "no flags: GPA_OPTIONS left unset"
else
  ok "no flags: GPA_OPTIONS left unset"
fi

# ---- finding libgpa.so -------------------------------------------------------
# Build tree: libgpa.so beside the executable.
mkdir -p "$scratch/build" "$scratch/prefix/bin" "$scratch/prefix/lib" "$scratch/multi/bin" \
  "$scratch/multi/lib/x86_64-linux-gnu" "$scratch/empty"
cp "$gpa" "$scratch/build/gpa"
ln -s "$libdir/libgpa.so" "$scratch/build/libgpa.so"
run_found() {
  env -u GPA_LIBRARY -u LD_PRELOAD "$1" run -- /usr/bin/env >"$scratch/out" 2>"$scratch/err"
}
run_found "$scratch/build/gpa"
expect_in out "library found beside the executable" "^LD_PRELOAD=$scratch/build/libgpa\.so\$"

# Installed: bin/gpa and lib/libgpa.so.0.
cp "$gpa" "$scratch/prefix/bin/gpa"
ln -s "$libdir/libgpa.so" "$scratch/prefix/lib/libgpa.so.0"
run_found "$scratch/prefix/bin/gpa"
expect_in out "library found in ../lib (path without ..)" "^LD_PRELOAD=$scratch/prefix/lib/libgpa\.so\.0\$"

if [ "$(uname -m)" = x86_64 ]; then
  cp "$gpa" "$scratch/multi/bin/gpa"
  ln -s "$libdir/libgpa.so" "$scratch/multi/lib/x86_64-linux-gnu/libgpa.so.0"
  run_found "$scratch/multi/bin/gpa"
  expect_in out "library found in ../lib/<multiarch>" \
    "^LD_PRELOAD=$scratch/multi/lib/x86_64-linux-gnu/libgpa\.so\.0\$"
fi

cp "$gpa" "$scratch/empty/gpa"
env -u GPA_LIBRARY "$scratch/empty/gpa" run -- /bin/true >"$scratch/out" 2>"$scratch/err"
rc=$?
expect_status "no library anywhere" 127
expect_in err "no library: one-line message naming GPA_LIBRARY" '^gpa: libgpa\.so not found.*GPA_LIBRARY'

GPA_LIBRARY=$scratch/nonexistent.so "$gpa" run -- /bin/true >"$scratch/out" 2>"$scratch/err"
rc=$?
expect_status "GPA_LIBRARY naming a missing file" 127

# ---- usage errors ------------------------------------------------------------
run_gpa run --options leak=1 -- /bin/true
expect_status "bad --options" 2
expect_in err "bad --options: the parser's message" \
  "^gpa: GPA_OPTIONS: unknown option 'leak' \\(did you mean 'leaks'\\?\\)\$"

GPA_OPTIONS=frames=abc GPA_LIBRARY="$libdir/libgpa.so" "$gpa" run -- /bin/true \
  >"$scratch/out" 2>"$scratch/err"
rc=$?
expect_status "bad inherited GPA_OPTIONS" 2
expect_in err "bad inherited GPA_OPTIONS: the parser's message" \
  '^gpa: GPA_OPTIONS: frames=abc: expected a number from 0 to 64$'

run_gpa run --frames abc -- /bin/true
expect_status "malformed --frames" 2
expect_in err "malformed --frames: message" "^gpa: --frames: expected a number from 0 to 64, got 'abc'\$"
expect_in err "malformed --frames: usage" '^usage: gpa run'

run_gpa run --frames 65 -- /bin/true
expect_status "--frames out of range" 2

run_gpa run --no-such-flag -- /bin/true
expect_status "unknown flag" 2
expect_in err "unknown flag: message" "^gpa: unknown flag '--no-such-flag'\$"

run_gpa run --log 'a:b' -- /bin/true
expect_status "--log path with ':'" 2

run_gpa run --leaks
expect_status "no PROGRAM" 2
expect_in err "no PROGRAM: message" '^gpa: run: no PROGRAM given$'

run_gpa run -- "$scratch/no-such-program"
expect_status "PROGRAM not found" 127
expect_in err "PROGRAM not found: message" "^gpa: $scratch/no-such-program: No such file or directory\$"

run_gpa frobnicate
expect_status "unknown command" 2
run_gpa
expect_status "no command" 2

# ---- the other commands --------------------------------------------------------
run_gpa --version
expect_status "--version" 0
expect_in out "--version prints the version" '^gpa [0-9]+\.[0-9]+\.[0-9]+$'
run_gpa help
expect_status "help" 0
expect_in out "help prints the usage" '^usage: gpa run'
run_gpa options
expect_status "options" 0
missing=
for name in leaks reachable frames stacks checks canaries quarantine alloc_fill free_fill limit verbose \
  stats log exitcode on_error debug; do
  grep -q "^  $name=" "$scratch/out" || missing="$missing $name"
done
if [ -z "$missing" ]; then ok "options lists every option"; else bad "options does not list:$missing"; fi

finish
