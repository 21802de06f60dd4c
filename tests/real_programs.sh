#!/bin/bash
# real_programs.sh: run real programs of the system with libgpa preloaded and
# compare them with a plain run: the same bytes on stdout, the same exit
# status, and no diagnostic from libgpa or from the dynamic linker.
#
#   bash tests/real_programs.sh /abs/path/libgpa.so
#
# Prints one line per check ("ok ..." or "FAIL ...") and a final
# "N passed, M failed"; exits non-zero if anything failed.
set -u

lib=${1:-}
if [ -z "$lib" ]; then
  echo "usage: $0 /abs/path/libgpa.so" >&2
  exit 2
fi
case $lib in
  /*) ;;
  *) lib=$PWD/$lib ;;
esac
if [ ! -f "$lib" ]; then
  echo "FAIL library $lib does not exist"
  echo "0 passed, 1 failed"
  exit 1
fi

. "$(dirname "${BASH_SOURCE[0]}")/check_lines.sh"

# Programs this script needs.  Missing ones are a failure, not a skip: a run
# that checked nothing must not look like a pass.
PYTHON=/usr/bin/python3
need=("$PYTHON" perl sort gcc g++ git cmp diff grep awk)
missing=0
for prog in "${need[@]}"; do
  if ! command -v "$prog" >/dev/null 2>&1; then
    bad "required program '$prog' not found (install it: python3, perl, coreutils, build-essential, git)"
    missing=1
  fi
done
if [ "$missing" -ne 0 ]; then
  finish
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpa-real.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Everything deterministic: one locale, one time zone, one hash seed, no
# user configuration.
export LC_ALL=C TZ=UTC PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset LD_PRELOAD PYTHONMALLOC MALLOC_CHECK_ MALLOC_PERTURB_ GLIBC_TUNABLES
export HOME=$tmp/home
mkdir -p "$HOME" "$tmp/out"

# compare NAME CMD...: runs CMD plainly and with libgpa preloaded, in the
# current directory, each with stdout and stderr to files, and compares.
# Extra environment for both runs goes in the array `extra_env`.
extra_env=()
compare() {
  local name=$1
  shift
  local out=$tmp/out/${name//[^A-Za-z0-9.+-]/_}
  env ${extra_env[@]+"${extra_env[@]}"} "$@" >"$out.plain" 2>"$out.plain.err"
  local rc_plain=$?
  env ${extra_env[@]+"${extra_env[@]}"} LD_PRELOAD="$lib" "$@" >"$out.gpa" 2>"$out.gpa.err"
  local rc_gpa=$?
  check_outputs "$name" "$out" "$rc_plain" "$rc_gpa"
}

# check_outputs NAME PREFIX RC_PLAIN RC_GPA: the verdict on two runs whose
# outputs are PREFIX.plain, PREFIX.gpa (and .err).
check_outputs() {
  local name=$1 out=$2 rc_plain=$3 rc_gpa=$4 why=""
  if [ "$rc_plain" -ne "$rc_gpa" ]; then
    why="exit status $rc_gpa with libgpa, $rc_plain without"
  elif ! cmp -s "$out.plain" "$out.gpa"; then
    why="stdout differs ($(wc -c <"$out.plain") bytes plain, $(wc -c <"$out.gpa") with libgpa)"
  elif grep -q -e 'gpa:' -e 'cannot be preloaded' -e 'ld\.so' "$out.gpa.err"; then
    why="diagnostic on stderr with libgpa"
  elif [ ! -s "$out.plain" ] && [ "${allow_empty:-0}" != 1 ]; then
    why="no output at all (the workload itself is broken)"
  elif [ "$rc_plain" -ne 0 ] && [ "${allow_fail:-0}" != 1 ]; then
    why="exit status $rc_plain even without libgpa (the workload itself is broken)"
  fi
  if [ -z "$why" ]; then
    ok "$name (identical, $(wc -c <"$out.gpa") bytes, exit $rc_gpa)"
  else
    bad "$name: $why"
    if [ -s "$out.plain" ] || [ -s "$out.gpa" ]; then
      diff "$out.plain" "$out.gpa" | head -n 10 | sed 's/^/    diff: /'
    fi
    tail -n 15 "$out.gpa.err" | sed 's/^/    stderr with libgpa: /'
    tail -n 5 "$out.plain.err" | sed 's/^/    stderr plain: /'
  fi
}

# active NAME PATTERN CMD...: CMD runs with libgpa preloaded and must print
# PATTERN (proof that this very program loads libgpa).
active() {
  local name=$1 pattern=$2
  shift 2
  local got
  got=$(env LD_PRELOAD="$lib" "$@" 2>&1)
  if printf '%s\n' "$got" | grep -q -e "$pattern"; then
    ok "$name preload active"
  else
    bad "$name preload not active: '$*' did not show '$pattern'"
    printf '%s\n' "$got" | tail -n 5 | sed 's/^/    /'
  fi
}

# active_tree NAME CMD...: CMD runs with libgpa preloaded and the dynamic
# linker's debug log on; every process it starts (compiler passes, git
# subcommands) must have loaded libgpa.
active_tree() {
  local name=$1
  shift
  local dir
  dir=$(mktemp -d "$tmp/lddebug.XXXXXX")
  env LD_PRELOAD="$lib" LD_DEBUG=files LD_DEBUG_OUTPUT="$dir/ld" "$@" >/dev/null 2>&1
  local rc=$? total=0 with=0 f
  for f in "$dir"/ld.*; do
    [ -e "$f" ] || continue
    total=$((total + 1))
    if grep -q "file=[^ ]*$libname" "$f"; then with=$((with + 1)); fi
  done
  if [ "$rc" -eq 0 ] && [ "$total" -gt 0 ] && [ "$with" -eq "$total" ]; then
    ok "$name preload active in all $total processes"
  else
    bad "$name preload: exit $rc, libgpa loaded in $with of $total processes of '$*'"
  fi
  rm -rf "$dir"
}

# What a process that loaded the library shows in its maps and in the
# dynamic linker's log.
libname=libgpa

cd "$tmp" || exit 1

# ---- the preload itself ---------------------------------------------------
active "cat" "$libname" cat /proc/self/maps

# ---- python3 ----------------------------------------------------------------
cat >"$tmp/work.py" <<'PY'
import collections, hashlib, json, queue, sys, threading, zlib

def worker(tid, results, shared, lock):
    d = {}
    for i in range(15000):
        k = "key-%d-%d" % (tid, (i * 7919) % 100003)
        d[k] = [i, str(i) * (1 + i % 7), {"t": tid, "sq": i * i, "s": "x" * (i % 700)}]
    text = json.dumps(d, sort_keys=True)
    back = json.loads(text)
    assert back == d
    words = text.split('"')
    counts = collections.Counter(w[:2] for w in words if w)
    joined = "".join(sorted(words[:30000]))
    packed = zlib.compress(text.encode(), 6)
    assert zlib.decompress(packed) == text.encode()
    ordered = sorted(d.items(), key=lambda kv: (kv[1][2]["sq"] % 1009, kv[0]))
    blobs = [bytes(range(256)) * (1 + (i * 37) % 40) for i in range(4000)]
    del blobs[::3]
    grow = []
    for i in range(20000):
        grow.append("%06d" % i)
        if i % 3 == 0:
            grow.pop(0) if len(grow) > 100 else None
    with lock:
        for i in range(2000):
            shared.setdefault(i % 97, []).append((tid, i))
    results[tid] = (
        tid, len(text), hashlib.sha256(text.encode()).hexdigest()[:16],
        len(packed), counts.most_common(3), len(joined), ordered[0][0],
        ordered[-1][0], sum(len(b) for b in blobs), len(grow),
    )

def producer(q, n):
    for i in range(n):
        q.put({"i": i, "payload": "p" * (i % 5000), "list": list(range(i % 50))})
    q.put(None)

def consumer(q, out):
    total = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += len(item["payload"]) + sum(item["list"])
    out.append(total)

threads, results, shared, lock = [], {}, {}, threading.Lock()
for tid in range(4):
    t = threading.Thread(target=worker, args=(tid, results, shared, lock))
    threads.append(t)
    t.start()
q, totals = queue.Queue(maxsize=64), []
pc = [threading.Thread(target=producer, args=(q, 10000)),
      threading.Thread(target=consumer, args=(q, totals))]
for t in pc:
    t.start()
for t in threads + pc:
    t.join()
for tid in sorted(results):
    print(results[tid])
print(sorted((k, len(v)) for k, v in shared.items())[:5], sum(len(v) for v in shared.values()))
print("queue total", totals)
big = {str(i): [str(j) for j in range(i % 20)] for i in range(50000)}
print(len(json.dumps(big)), hashlib.md5(repr(sorted(big.items())[:1000]).encode()).hexdigest())
PY
active "python3" "^[0-9][0-9.]*$" "$PYTHON" -c \
  'import ctypes; f = ctypes.CDLL(None).gpa_version; f.restype = ctypes.c_char_p; print(f().decode())'
compare "python3 threads/dict/json" "$PYTHON" "$tmp/work.py"
# Every object through malloc, not only those pymalloc does not take.
extra_env=(PYTHONMALLOC=malloc)
compare "python3 PYTHONMALLOC=malloc" "$PYTHON" "$tmp/work.py"
extra_env=()

# ---- perl -------------------------------------------------------------------
cat >"$tmp/work.pl" <<'PL'
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my (%h, @order);
for my $i (0 .. 199999) {
  my $k = "k" . (($i * 7919) % 200003);
  $h{$k} = ("v" x ($i % 97)) . $i;
  push @order, $k;
}
my @sorted = sort { $h{$a} cmp $h{$b} } keys %h;
print scalar(@sorted), " $sorted[0] $sorted[-1]\n";
delete $h{ $order[$_] } for grep { $_ % 3 == 0 } 0 .. $#order;
print scalar(keys %h), "\n";
my $s = join(",", map { $h{$_} // "-" } @order[0 .. 19999]);
(my $t = $s) =~ s/(\d+)/<$1>/g;
print length($s), " ", length($t), " ", md5_hex($t), "\n";
my @parts = split /,/, $t;
print scalar(@parts), " ", scalar(grep { /<\d*7>/ } @parts), "\n";

my %tree;
for my $i (0 .. 99999) {
  push @{ $tree{ $i % 101 }{ $i % 7 } }, [ $i, "x$i", { sq => $i * $i } ];
}
my $sum = 0;
for my $a1 (sort { $a <=> $b } keys %tree) {
  for my $b1 (sort keys %{ $tree{$a1} }) {
    $sum += $_->[2]{sq} % 1000 for @{ $tree{$a1}{$b1} };
  }
}
print "$sum\n";
undef %tree;

my $big = "";
$big .= sprintf("%08x %s\n", ($_ * 2654435761) % 4294967296, "y" x ($_ % 40)) for 1 .. 200000;
print length($big), " ", md5_hex($big), "\n";
my @lines = reverse split /\n/, $big;
print scalar(@lines), " $lines[0]\n";
my $rev = reverse $big;
substr($rev, 1000, 500000) = "";
print length($rev), "\n";
PL
cat >"$tmp/threads.pl" <<'PL'
use strict;
use warnings;
use threads;
use threads::shared;

my %shared :shared;
my @workers = map {
  my $id = $_;
  threads->create(sub {
    my %local;
    $local{"$id-$_"} = "z" x ($_ % 300) for 1 .. 50000;
    my $n = 0;
    $n += length $local{$_} for keys %local;
    { lock(%shared); $shared{$id} = $n; }
    return $n;
  });
} 1 .. 4;
my @r = map { $_->join } @workers;
print "@r\n", join(",", map { "$_=$shared{$_}" } sort keys %shared), "\n";
PL
# shellcheck disable=SC2016  # perl code, not shell
active "perl" "$libname" perl -e 'open my $f, "<", "/proc/self/maps" or die; print <$f>'
compare "perl hash/array/string" perl "$tmp/work.pl"
compare "perl ithreads" perl "$tmp/threads.pl"

# ---- sort ---------------------------------------------------------------------
# 500k generated lines, made without libgpa.
perl -e '
  my $x = 12345;
  my @w = qw(alpha bravo charlie delta echo foxtrot golf hotel india juliet);
  for my $i (1 .. 500000) {
    $x = ($x * 1103515245 + 12345) % 2147483648;
    printf "%d %s%d %s\n", $x % 1000003, $w[$x % 10], $i % 977, "t" x ($x % 23);
  }' >"$tmp/sort.in"
active "sort" "$libname" sort /proc/self/maps
compare "sort" sort "$tmp/sort.in"
compare "sort -n" sort -n "$tmp/sort.in"
compare "sort -k2,2 -k1,1n -u" sort -k2,2 -k1,1n -u "$tmp/sort.in"
compare "sort --parallel=2 -S 50M" sort --parallel=2 -S 50M "$tmp/sort.in"
mkdir -p "$tmp/sorttmp"
compare "sort --parallel=2 -S 1M (temporary files)" sort --parallel=2 -S 1M -T "$tmp/sorttmp" -n "$tmp/sort.in"
extra_env=(LC_ALL=C.UTF-8)
compare "sort C.UTF-8 locale" sort -f "$tmp/sort.in"
extra_env=()

# ---- gcc and g++ ------------------------------------------------------------
mkdir -p "$tmp/cc"
perl -e '
  print "#include <stdio.h>\n#include <string.h>\n\n";
  for my $f (0 .. 249) {
    print "static const char *names_$f\[] = {", join(",", map { "\"n${f}_$_\"" } 0 .. 9), "};\n";
    print "__attribute__((noinline)) unsigned long fn_$f(unsigned long x) {\n";
    print "  unsigned long acc = x * ", $f + 3, "UL;\n";
    print "  for (int i = 0; i < ", 5 + $f % 13, "; i++) {\n";
    print "    switch ((acc + i) % 6) {\n";
    print "    case $_: acc = acc * ", 31 + $_, "UL + ", $f * 7 + $_, "UL; break;\n" for 0 .. 5;
    print "    }\n  }\n";
    print "  return acc ^ strlen(names_$f\[x % 10]);\n}\n";
  }
  print "int main(void) {\n  unsigned long sum = 0;\n";
  print "  sum += fn_$_(sum + $_);\n" for 0 .. 249;
  print "  printf(\"%lu\\n\", sum);\n  return 0;\n}\n";
' >"$tmp/cc/gen.c"
cat >"$tmp/cc/prog.cc" <<'CXX'
#include <algorithm>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

template <typename T> static T checksum(const std::vector<T> &v) {
  return std::accumulate(v.begin(), v.end(), T{});
}

int main() {
  std::vector<std::thread> threads;
  std::vector<unsigned long> sums(4);
  for (int t = 0; t < 4; t++)
    threads.emplace_back([t, &sums] {
      std::map<std::string, std::vector<unsigned long>> m;
      std::unordered_map<unsigned long, std::string> u;
      for (unsigned long i = 0; i < 60000; i++) {
        m["k" + std::to_string((i * 7919 + t) % 5003)].push_back(i);
        u[i] = std::string(i % 200, 'a' + t);
      }
      unsigned long s = 0;
      for (auto &kv : m) s += checksum(kv.second) + kv.first.size();
      for (auto &kv : u) s += kv.second.size();
      sums[t] = s;
    });
  for (auto &th : threads) th.join();
  std::ostringstream out;
  for (auto s : sums) out << s << '\n';
  std::vector<std::string> words;
  for (int i = 0; i < 100000; i++) words.push_back(std::to_string(i * 2654435761u));
  std::sort(words.begin(), words.end());
  out << words.front() << ' ' << words.back() << '\n';
  std::cout << out.str();
  return 0;
}
CXX
(
  cd "$tmp/cc" || exit 1
  # The compilers' own processes (cc1, cc1plus, as, collect2, ld) inherit
  # LD_PRELOAD: check that each of them loads libgpa.
  printf '#include <stdio.h>\nint main(void) { puts("tiny"); return 0; }\n' >tiny.c
  active_tree "gcc (driver, cc1, as, collect2, ld)" gcc -O1 -o tiny tiny.c
  active_tree "g++ (driver, cc1plus, as, collect2, ld)" g++ -O1 -x c++ -o tiny tiny.c

  env gcc -O2 -g0 -c gen.c -o gen.plain.o 2>gcc.plain.err
  rc1=$?
  env LD_PRELOAD="$lib" gcc -O2 -g0 -c gen.c -o gen.gpa.o 2>gcc.gpa.err
  rc2=$?
  if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && cmp -s gen.plain.o gen.gpa.o \
    && ! grep -q -e 'gpa:' -e 'ld\.so' gcc.gpa.err; then
    ok "gcc -O2 -c gen.c (identical object, $(wc -c <gen.gpa.o) bytes)"
  else
    bad "gcc -O2 -c gen.c: exit $rc2 with libgpa, $rc1 without, or objects differ"
    tail -n 10 gcc.gpa.err | sed 's/^/    stderr with libgpa: /'
  fi
  # Compile and link under libgpa, then run both programs (each as built).
  env gcc -O1 -o gen.plain gen.c 2>/dev/null
  env LD_PRELOAD="$lib" gcc -O1 -o gen.gpa gen.c 2>gcc.link.err
  ./gen.plain >"$tmp/out/gcc-run.plain" 2>"$tmp/out/gcc-run.plain.err"
  rc1=$?
  if [ -x gen.gpa ]; then
    env LD_PRELOAD="$lib" ./gen.gpa >"$tmp/out/gcc-run.gpa" 2>"$tmp/out/gcc-run.gpa.err"
    rc2=$?
  else
    : >"$tmp/out/gcc-run.gpa"
    cp gcc.link.err "$tmp/out/gcc-run.gpa.err"
    rc2=127
  fi
  check_outputs "gcc compile+link+run" "$tmp/out/gcc-run" $rc1 $rc2

  env g++ -O2 -g0 -pthread -c prog.cc -o prog.plain.o 2>/dev/null
  rc1=$?
  env LD_PRELOAD="$lib" g++ -O2 -g0 -pthread -c prog.cc -o prog.gpa.o 2>gxx.gpa.err
  rc2=$?
  if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && cmp -s prog.plain.o prog.gpa.o; then
    ok "g++ -O2 -c prog.cc (identical object, $(wc -c <prog.gpa.o) bytes)"
  else
    bad "g++ -O2 -c prog.cc: exit $rc2 with libgpa, $rc1 without, or objects differ"
    tail -n 10 gxx.gpa.err | sed 's/^/    stderr with libgpa: /'
  fi
  if env LD_PRELOAD="$lib" g++ -pthread -o prog prog.gpa.o 2>gxx.link.err; then
    # The C++ program itself (operator new, std::thread) under libgpa.
    compare "C++ program (threads, maps, strings)" ./prog
  else
    bad "g++ link under libgpa failed"
    tail -n 10 gxx.link.err | sed 's/^/    /'
  fi
  echo "$passed $failed" >"$tmp/cc/counts"
)
# The subshell's tallies come back through a file.
if [ -f "$tmp/cc/counts" ]; then
  read -r p f <"$tmp/cc/counts"
  passed=$p
  failed=$f
else
  bad "gcc section did not complete"
fi

# ---- git ----------------------------------------------------------------------
# File contents for four commits, made without libgpa.
perl -e '
  my $root = shift;
  mkdir $root or die "mkdir $root: $!";
  for my $round (1 .. 4) {
    my $dir = "$root/r$round";
    mkdir $dir; mkdir "$dir/src"; mkdir "$dir/doc";
    for my $i (0 .. 299) {
      next if $round >= 3 && $i % 17 == 0;          # deleted later on
      my $sub = $i % 2 ? "src" : "doc";
      my $name = ($round >= 4 && $i % 11 == 0) ? "renamed_$i.txt" : "file_$i.txt";
      open my $fh, ">", "$dir/$sub/$name" or die;
      my $lines = 20 + ($i * 7) % 180;
      for my $l (1 .. $lines) {
        my $v = ($round >= 2 && $i % 5 == 0 && $l % 9 == 0) ? "changed in $round" : "stable";
        print $fh "line $l of file $i: $v ", "w" x (($i + $l) % 60), "\n";
      }
      close $fh;
    }
    for my $i (300 .. 300 + 40 * ($round - 1)) {
      open my $fh, ">", "$dir/src/extra_$i.c" or die;
      print $fh "int extra_$i(void) { return $i; }\n" x (1 + $i % 30);
      close $fh;
    }
  }' "$tmp/gitsrc"

cat >"$tmp/git-work.sh" <<'SH'
# Runs in a fresh directory; stdout is compared, so it prints only what is
# deterministic.
set -u
src=$1
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME="A U Thor" GIT_AUTHOR_EMAIL=author@example.com
export GIT_COMMITTER_NAME="C O Mitter" GIT_COMMITTER_EMAIL=committer@example.com
git init -q -b main repo || exit 1
cd repo || exit 1
git config gc.autoDetach false
git config core.autocrlf false
git config pack.threads 2
for round in 1 2 3 4; do
  export GIT_AUTHOR_DATE="2020-01-0${round}T12:00:00 +0000" GIT_COMMITTER_DATE="2020-01-0${round}T12:30:00 +0000"
  git rm -r -q --ignore-unmatch src doc >/dev/null
  cp -R "$src/r$round/src" "$src/r$round/doc" .
  git add -A || exit 1
  git commit -q -m "round $round" -m "generated content for round $round" || exit 1
done
git log --stat --format='%H %an <%ae> %ad%n%s%n'
git log -M --name-status --format='%h %s' HEAD~1..HEAD
git diff --stat HEAD~3 HEAD
git diff HEAD~2 HEAD | git hash-object --stdin
git grep -c "changed in 4" HEAD -- src | head -n 20
git blame --porcelain src/file_5.txt | head -n 40
git rev-list --objects --all | sort
git gc --quiet --prune=now --aggressive || echo "gc failed"
git count-objects -v | grep -e '^count' -e '^packs'
git fsck --full --strict --no-progress && echo "fsck clean"
git archive --format=tar HEAD | git hash-object --stdin
git cat-file --batch-all-objects --batch-check | sort
git status --porcelain
echo "done"
SH
# shellcheck disable=SC2016  # $PPID is for the alias's shell
active "git" "$libname" git -c 'alias.showmaps=!cat /proc/$PPID/maps' showmaps
mkdir -p "$tmp/git-plain" "$tmp/git-gpa"
(cd "$tmp/git-plain" && env bash "$tmp/git-work.sh" "$tmp/gitsrc" >"$tmp/out/git.plain" 2>"$tmp/out/git.plain.err")
rc1=$?
(cd "$tmp/git-gpa" && env LD_PRELOAD="$lib" bash "$tmp/git-work.sh" "$tmp/gitsrc" >"$tmp/out/git.gpa" 2>"$tmp/out/git.gpa.err")
rc2=$?
check_outputs "git init/commit/log/gc/fsck on a generated repository" "$tmp/out/git" $rc1 $rc2
if ! grep -q '^fsck clean$' "$tmp/out/git.gpa"; then
  bad "git fsck did not report a clean repository under libgpa"
fi
# git gc runs a tree of git processes (pack-refs, reflog, repack,
# pack-objects, prune): each must have loaded libgpa.
active_tree "git gc (all subprocesses)" git -C "$tmp/git-gpa/repo" gc --quiet --prune=now

finish
