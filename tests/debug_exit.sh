#!/bin/bash
# debug_exit.sh: the debug layer on programs not linked with libgpa, through
# the preload and GPA_OPTIONS (and the `gpa run` launcher): the exit report
# with reachability, the exit status on leaks, misuse reports with the
# program's own function names, bad options, fork, and system programs that
# must show no leaks of the C library's own.
#
#   bash tests/debug_exit.sh /abs/path/gpa /abs/path/debug_target /abs/dir/with/libgpa.so
set -u

gpa=${1:-}
target=${2:-}
libdir=${3:-}
if [ -z "$gpa" ] || [ -z "$target" ] || [ -z "$libdir" ]; then
  echo "usage: $0 /abs/path/gpa /abs/path/debug_target /abs/dir/with/libgpa.so" >&2
  exit 2
fi

. "$(dirname "${BASH_SOURCE[0]}")/check_lines.sh"

lib=$libdir/libgpa.so
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# under OPTIONS PROGRAM ARGS...: stdout to $scratch/out, stderr to
# $scratch/err, status in $rc.
under() {
  local options=$1
  shift
  GPA_OPTIONS=$options LD_PRELOAD=$lib timeout 60 "$@" >"$scratch/out" 2>"$scratch/err"
  rc=$?
}

expect_status() {
  if [ "$rc" -eq "$2" ]; then ok "$1 (exit $rc)"; else bad "$1: exit $rc, wanted $2: $(head -c 600 "$scratch/err")"; fi
}

# expect_in FILE WHAT FIXED-STRING
expect_in() {
  if grep -Fq -- "$3" "$scratch/$1"; then ok "$2"; else bad "$2: no '$3' in: $(head -c 600 "$scratch/$1")"; fi
}

expect_not_in() {
  if grep -Fq -- "$3" "$scratch/$1"; then bad "$2: found '$3' in: $(head -c 600 "$scratch/$1")"; else ok "$2"; fi
}

# ---- reachability at exit ---------------------------------------------------
under leaks=1 "$target" clean
expect_status "clean program" 0
expect_not_in err "clean program: no report" "leak report"

under leaks=1 "$target" global
expect_status "block held by a global" 0
expect_not_in err "block held by a global is not a leak" "Direct leak"

under leaks=1:reachable=1 "$target" global
expect_in err "reachable=1 lists the global's block" "Still reachable of 200 byte(s) in 1 object(s) allocated from:"
expect_in err "... with its stack" "in keep_in_global+"

under leaks=1 "$target" list
expect_status "dropped list: the leak exit code" 23
expect_in err "dropped list: the head is a direct leak" "Direct leak of 32 byte(s) in 1 object(s) allocated from:"
expect_in err "dropped list: the rest are indirect" "Indirect leak of 128 byte(s) in 4 object(s) allocated from:"
expect_in err "dropped list: allocation stack names the function" "in make_list+"
expect_in err "dropped list: summary" "SUMMARY: gpa: 160 byte(s) leaked in 5 allocation(s) (32 direct, 128 indirect)"

under leaks=1:exitcode=42 "$target" print-leak
expect_status "exitcode=42" 42
expect_in out "the program's buffered output is flushed before the exit code" "the program's own output"

# Blocks aligned to half a segment and more: the record sits a whole
# alignment before the program's bytes.
under leaks=1:canaries=1 "$target" big-aligned
expect_status "blocks aligned to 2 to 64 MiB: the leak exit code" 23
expect_not_in err "... every step on them works" "big-aligned:"
expect_in err "... the one dropped is a direct leak" "Direct leak of 300 byte(s) in 1 object(s) allocated from:"
expect_in err "... with its stack" "in leak_aligned+"
expect_in err "... and nothing else leaks" "SUMMARY: gpa: 300 byte(s) leaked in 1 allocation(s)"

# ---- misuse through the drop-in ------------------------------------------------
under checks=1 "$target" double-free
expect_status "double free aborts" 134
expect_in err "double free: one line naming the pointer" "gpa: free(): double free of 0x"
expect_in err "double free: allocation stack" "in alloc_here+"
expect_in err "double free: first free's stack" "in free_first+"
expect_in err "double free: second free's stack" "in free_second+"

under canaries=1 "$target" overflow
expect_status "overflow aborts" 134
expect_in err "overflow: one byte past a 24-byte block" "heap buffer overflow: 1 byte(s) written past the end of a 24-byte block"
expect_in err "overflow: found by free" "found by free"

# ---- options -----------------------------------------------------------------------
under leak=1 "$target" clean
expect_status "unknown option" 2
expect_in err "unknown option: one line with a suggestion" "unknown option 'leak' (did you mean 'leaks'?)"

under "stats=1:log=$scratch/log" "$target" clean
expect_status "stats to a log file" 0
# 1000 of the program's allocations and a few of the C library's.
if grep -Fq "gpa: statistics for malloc" "$scratch/log" && grep -Eq "total: +10[0-9][0-9] allocation" "$scratch/log"; then
  ok "statistics in the log file"
else
  bad "statistics in the log file: $(head -c 400 "$scratch/log" 2>/dev/null)"
fi

under leaks=1 "$target" fork
expect_status "fork while other threads allocate" 0

# Another thread's registers are roots: its block is not lost.
under leaks=1 "$target" register
expect_status "a pointer held only in another thread's register" 0
expect_not_in err "... is not a leak" "Direct leak"
expect_in err "... and the check says so" "no leaks;"

# Blocks of threads that have ended are found, the last one's too (its
# stack, which the C library keeps for the next thread, is no root); threads
# still allocating while the report runs neither crash it nor hang the exit.
under leaks=1:frames=16 "$target" threads-exit
expect_status "report while threads allocate: the leak exit code" 23
expect_in err "ended threads' leaks are found, every one" "Direct leak of 768 byte(s) in 16 object(s) allocated from:"
expect_in err "... with their stack, named leak_in_thread" "in leak_in_thread+"

# A pointer left only on the stack of a thread that has ended reaches
# nothing: the block is lost.
under leaks=1 "$target" thread-stack
expect_status "a block held only by an ended thread's stack: the leak exit code" 23
expect_in err "... is a direct leak" "Direct leak of 48 byte(s) in 1 object(s) allocated from:"
expect_in err "... with its stack" "in alloc_in_thread+"
# The C library keeps the thread's descriptor with its stack, and the TLS
# vector it points to: that block is the library's, not lost.
expect_in err "... and nothing else is lost" "SUMMARY: gpa: 48 byte(s) leaked in 1 allocation(s)"

# ---- the launcher --------------------------------------------------------------------
GPA_LIBRARY=$lib timeout 60 "$gpa" run --leaks -- "$target" list >"$scratch/out" 2>"$scratch/err"
rc=$?
expect_status "gpa run --leaks passes the leak exit code through" 23
expect_in err "gpa run --leaks reports" "Direct leak of 32 byte(s)"

# ---- system programs: the C library's own blocks are not leaks -------------------------
for cmd in "python3 -c pass" "ls /" "git --version" "bash -c true" "find /etc -maxdepth 1 -name passwd"; do
  prog=${cmd%% *}
  if ! command -v "$prog" >/dev/null; then
    ok "$cmd: not installed, skipped"
    continue
  fi
  # shellcheck disable=SC2086
  under leaks=1 $cmd
  expect_status "$cmd under leaks=1" 0
  expect_not_in err "$cmd: no leak reported" "leak of"
done

finish
