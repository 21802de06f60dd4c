#!/bin/bash
# python.sh: the system Python running bench/real/workload.py (dicts, lists,
# strings, JSON, sorts, object graphs; deterministic, about 1 s at scale 1).
#
# usage: python.sh [scale [pymalloc|malloc]]
#   scale     multiplies the workload (default 1)
#   pymalloc  Python's own small-object allocator on top of malloc (default)
#   malloc    PYTHONMALLOC=malloc: every object is a malloc/free call
#
# The allocator under test comes in BENCH_PRELOAD (empty: glibc) and is
# preloaded into python only: the shell execs python, so the measured
# process is python itself.  stdout: the workload's one result line;
# stderr: vmhwm_kib=N of the python process (workload.py reads its own
# /proc/self/status).  workload.py checks its results and that the preload
# really is mapped; any failure exits non-zero.
#
# Always /usr/bin/python3: "python3" on PATH may be a pyenv shim, which would
# run a different interpreter (and a shell script in front of it).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
scale=${1:-1}
mode=${2:-pymalloc}
py=/usr/bin/python3

if [ ! -x "$py" ]; then
    echo "python.sh: $py not found (Debian package python3)" >&2
    exit 1
fi

case "$mode" in
    pymalloc) unset PYTHONMALLOC ;;
    malloc) export PYTHONMALLOC=malloc ;;
    *) echo "usage: python.sh [scale [pymalloc|malloc]]" >&2; exit 2 ;;
esac

# A fixed hash seed: the same dict and set layouts in every run.
export PYTHONHASHSEED=0
unset PYTHONSTARTUP PYTHONPATH PYTHONHOME PYTHONDEVMODE PYTHONTRACEMALLOC \
    PYTHONWARNINGS PYTHONINSPECT PYTHONOPTIMIZE

if [ -n "${BENCH_PRELOAD:-}" ]; then
    export LD_PRELOAD="$BENCH_PRELOAD"
else
    unset LD_PRELOAD
fi
exec "$py" -s -B "$here/workload.py" "$scale"
