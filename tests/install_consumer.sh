#!/bin/bash
# install_consumer.sh: install libgpa into a temporary prefix and use it the
# ways a consumer would: pkg-config, CMake's find_package, and the static
# archive.  Also checks the installed tree and the shared library's exports.
#
#   bash tests/install_consumer.sh <source dir> <build dir>
#
# Prints one line per check ("ok ..." or "FAIL ...") and a final
# "N passed, M failed"; exits non-zero if anything failed.
set -u

src=${1:-}
build=${2:-}
if [ -z "$src" ] || [ -z "$build" ] || [ ! -d "$src" ] || [ ! -d "$build" ]; then
  echo "usage: $0 <source dir> <build dir>" >&2
  exit 2
fi
src=$(cd "$src" && pwd)
build=$(cd "$build" && pwd)

. "$(dirname "${BASH_SOURCE[0]}")/check_lines.sh"
# indent FILE: show the end of a log under a failure line.
indent() {
  tail -n "${2:-15}" "$1" 2>/dev/null | sed 's/^/    /'
}

missing=0
for prog in cmake cc nm readelf pkg-config; do
  if ! command -v "$prog" >/dev/null 2>&1; then
    case $prog in
      pkg-config) bad "pkg-config not found: install the Debian package pkg-config (pkgconf)" ;;
      nm | readelf) bad "$prog not found: install binutils" ;;
      *) bad "$prog not found" ;;
    esac
    missing=1
  fi
done
if [ "$missing" -ne 0 ]; then
  finish
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpa-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
unset LD_PRELOAD LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH
export LC_ALL=C

# The version the sources declare, to compare with what gets installed.
major=$(sed -n 's/^#define GPA_VERSION_MAJOR \([0-9]*\).*/\1/p' "$src/include/gpa.h")
minor=$(sed -n 's/^#define GPA_VERSION_MINOR \([0-9]*\).*/\1/p' "$src/include/gpa.h")
patch=$(sed -n 's/^#define GPA_VERSION_PATCH \([0-9]*\).*/\1/p' "$src/include/gpa.h")
version=$major.$minor.$patch

# ---- install ---------------------------------------------------------------
prefix=$tmp/prefix
if cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  ok "cmake --install into a temporary prefix"
else
  bad "cmake --install $build --prefix $prefix failed"
  indent "$tmp/install.log"
  finish
fi

pcfile=$(find "$prefix" -name gpa.pc -type f | head -n 1)
if [ -n "$pcfile" ]; then
  libdir=$(dirname "$(dirname "$pcfile")")
else
  libdir=$(dirname "$(find "$prefix" -name 'libgpa.so*' | head -n 1)")
fi
case $libdir in
  "$prefix"/*) ;;
  *) libdir=$prefix/lib ;;
esac

check_file() {
  local what=$1 path=$2
  if [ -f "$path" ]; then ok "installed $what (${path#"$prefix"/})"; else bad "not installed: $what (expected $path)"; fi
}
check_file "public header" "$prefix/include/gpa.h"
check_file "static library" "$libdir/libgpa.a"
check_file "pkg-config file" "$libdir/pkgconfig/gpa.pc"
check_file "CMake package config" "$libdir/cmake/gpa/gpaConfig.cmake"
check_file "CMake package version" "$libdir/cmake/gpa/gpaConfigVersion.cmake"
check_file "CMake exported targets" "$libdir/cmake/gpa/gpaTargets.cmake"
if [ -f "$prefix/include/gpa.h" ] && cmp -s "$src/include/gpa.h" "$prefix/include/gpa.h"; then
  ok "installed gpa.h is the source's"
else
  bad "installed gpa.h differs from $src/include/gpa.h"
fi

# libgpa.so -> libgpa.so.0 -> libgpa.so.<version>, SONAME libgpa.so.0.
so=$libdir/libgpa.so
if [ -L "$so" ] && [ -L "$so.0" ] && [ -f "$so.$version" ] && [ ! -L "$so.$version" ] \
  && [ "$(readlink "$so")" = libgpa.so.0 ] && [ "$(readlink "$so.0")" = "libgpa.so.$version" ]; then
  ok "symlink chain libgpa.so -> libgpa.so.0 -> libgpa.so.$version"
else
  bad "symlink chain libgpa.so -> libgpa.so.0 -> libgpa.so.$version not as expected:"
  find "$libdir" -maxdepth 1 -name "libgpa*" -printf "    %f -> %l\n"
fi
soname=$(readelf -dW "$so.0" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = libgpa.so.0 ]; then ok "SONAME libgpa.so.0"; else bad "SONAME is '$soname', expected libgpa.so.0"; fi
if readelf -dW "$so.0" | grep -E '\((RPATH|RUNPATH)\)' | grep -q -F "$build"; then
  bad "installed libgpa.so still has a run path into the build tree"
else
  ok "installed libgpa.so has no run path into the build tree"
fi

# ---- exported names ----------------------------------------------------------
# Only the allocation family, glibc's internal aliases and gpa_* may be
# exported; anything else is an internal name leaking out.
public='^(malloc|free|calloc|realloc|reallocarray|cfree|aligned_alloc|memalign|posix_memalign|valloc|pvalloc|malloc_usable_size|malloc_trim|mallinfo|mallinfo2|malloc_stats|malloc_info|mallopt|free_sized|free_aligned_sized|__libc_(malloc|free|calloc|realloc|memalign|valloc|pvalloc)|__posix_memalign|gpa_[A-Za-z0-9_]+)$'
nm -D --defined-only "$so.0" | awk '{ print $NF }' | sed 's/@.*//' | sort -u >"$tmp/exports"
grep -v -E "$public" "$tmp/exports" >"$tmp/leaks"
if [ ! -s "$tmp/exports" ]; then
  bad "nm -D found no exported symbols in libgpa.so"
elif [ -s "$tmp/leaks" ]; then
  bad "libgpa.so exports internal names: $(tr '\n' ' ' <"$tmp/leaks")"
else
  ok "libgpa.so exports only public names ($(wc -l <"$tmp/exports") symbols)"
fi
absent=""
for name in malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign \
  valloc pvalloc malloc_usable_size free_sized free_aligned_sized gpa_version; do
  grep -q -x "$name" "$tmp/exports" || absent="$absent $name"
done
if [ -z "$absent" ]; then ok "libgpa.so exports the allocation family"; else bad "libgpa.so does not export:$absent"; fi
for internal in heap_malloc_generic segment_small_acquire gpa_tls_heap gpa_default_instance; do
  if grep -q -x "$internal" "$tmp/exports"; then bad "internal name $internal exported"; fi
done

# ---- the consumer program ----------------------------------------------------
mkdir -p "$tmp/app"
cat >"$tmp/app/app.c" <<'C'
#include <gpa.h>

#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  char *volatile p = malloc(100);
  if (p == NULL) return 1;
  memset(p, 7, 100);
  size_t usable = malloc_usable_size(p);
  free(p);
  void *volatile z = malloc(0);
  if (z == NULL) {
    puts("malloc(0) returned NULL");
    return 1;
  }
  free(z);
  free_sized(malloc(32), 32);
  void *volatile a = aligned_alloc(256, 1000);
  if (a == NULL || (size_t)a % 256 != 0) return 1;
  free_aligned_sized(a, 256, 1000);

  /* Where malloc comes from: the executable itself (static archive) or the
   * file of the shared library it was bound to. */
  Dl_info in_malloc, in_main;
  const char *where = "unknown";
  if (dladdr((void *)&malloc, &in_malloc) && dladdr((void *)&main, &in_main)) {
    if (in_malloc.dli_fbase == in_main.dli_fbase) where = "executable";
    else if (in_malloc.dli_fname != NULL) where = in_malloc.dli_fname;
  }
  printf("version %s\n", gpa_version());
  printf("header %d.%d.%d\n", GPA_VERSION_MAJOR, GPA_VERSION_MINOR, GPA_VERSION_PATCH);
  printf("usable %s\n", usable >= 100 ? "ok" : "too small");
  printf("malloc in %s\n", where);

  if (argc > 1 && strcmp(argv[1], "double-free") == 0) {
    char *volatile q = malloc(40);
    free(q);
    free(q);
    puts("double free not caught");
  }
  return 0;
}
C

# run_consumer NAME EXE EXPECTED_WHERE [ENV...]: runs the program, checks its
# report, then checks that a double free aborts with libgpa's message.
run_consumer() {
  local name=$1 exe=$2 expect_where=$3
  shift 3
  local out=$tmp/$name.out err=$tmp/$name.err rc
  env "$@" "$exe" >"$out" 2>"$err"
  rc=$?
  local want
  want=$(printf 'version %s\nheader %s\nusable ok\n' "$version" "$version")
  if [ $rc -eq 0 ] && [ "$(head -n 3 "$out")" = "$want" ]; then
    ok "$name runs, gpa_version() = $version"
  else
    bad "$name: exit $rc, output:"
    indent "$out"
    indent "$err"
  fi
  local where
  where=$(sed -n 's/^malloc in //p' "$out")
  # shellcheck disable=SC2254  # the expectation is a glob on purpose
  case $where in
    $expect_where) ok "$name: malloc is libgpa's ($where)" ;;
    *) bad "$name: malloc comes from '$where', expected $expect_where" ;;
  esac
  # (the braces keep bash's own "Aborted" notice out of the log)
  { env "$@" "$exe" double-free >"$out" 2>"$err"; } 2>/dev/null
  rc=$?
  if [ $rc -ne 0 ] && grep -q '^gpa: ' "$err" && ! grep -q 'not caught' "$out"; then
    ok "$name: double free aborts with \"$(head -n 1 "$err" | cut -c1-50)...\""
  else
    bad "$name: double free: exit $rc, stderr:"
    indent "$err"
  fi
}

# ---- (a) pkg-config ------------------------------------------------------------
export PKG_CONFIG_PATH=$libdir/pkgconfig
if modver=$(pkg-config --modversion gpa 2>"$tmp/pc.err"); then
  if [ "$modver" = "$version" ]; then ok "pkg-config --modversion gpa = $version"; else bad "pkg-config --modversion gpa is '$modver', expected $version"; fi
else
  bad "pkg-config cannot find gpa in $PKG_CONFIG_PATH"
  indent "$tmp/pc.err"
fi
pcflags=$(pkg-config --cflags --libs gpa 2>/dev/null)
# The flags must name the prefix the package was installed to (the paths
# may be spelt relative to the .pc file: compare them resolved).
pc_dirs_ok() {
  local flag want_inc want_lib have_inc=0 have_lib=0
  want_inc=$(readlink -f "$prefix/include")
  want_lib=$(readlink -f "$libdir")
  for flag in $1; do
    case $flag in
      -I*) [ "$(readlink -f "${flag#-I}")" = "$want_inc" ] && have_inc=1 ;;
      -L*) [ "$(readlink -f "${flag#-L}")" = "$want_lib" ] && have_lib=1 ;;
    esac
  done
  [ $have_inc = 1 ] && [ $have_lib = 1 ]
}
if pc_dirs_ok "$pcflags"; then
  ok "pkg-config --cflags --libs gpa names the install prefix"
else
  bad "pkg-config --cflags --libs gpa gives '$pcflags' after installing to $prefix (gpa.pc has a fixed prefix: $(grep '^prefix=' "$libdir/pkgconfig/gpa.pc"))"
  # Carry on with the prefix pkg-config derives from the .pc file's place,
  # to check everything else.
  pcflags=$(pkg-config --define-prefix --cflags --libs gpa 2>/dev/null)
  echo "    (continuing with pkg-config --define-prefix: $pcflags)"
fi
# shellcheck disable=SC2086  # the flags are meant to split
if cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$tmp/app/app_pc" "$tmp/app/app.c" $pcflags >"$tmp/pc-build.log" 2>&1; then
  ok "consumer builds with pkg-config's flags (-Wall -Wextra -Werror)"
  run_consumer "pkg-config consumer" "$tmp/app/app_pc" "$libdir/libgpa.so*" LD_LIBRARY_PATH="$libdir"
else
  bad "consumer does not build with pkg-config's flags '$pcflags'"
  indent "$tmp/pc-build.log"
fi
if command -v c++ >/dev/null 2>&1; then
  printf '#include <gpa.h>\n#include <cstdlib>\nint main() { void *p = std::malloc(8); free_sized(p, 8); return gpa_version()[0] == 0; }\n' >"$tmp/app/app.cc"
  if c++ -Wall -Wextra -Werror -I"$prefix/include" -o "$tmp/app/app_cxx" "$tmp/app/app.cc" -L"$libdir" -lgpa >"$tmp/cxx.log" 2>&1 \
    && LD_LIBRARY_PATH="$libdir" "$tmp/app/app_cxx"; then
    ok "gpa.h usable from C++"
  else
    bad "gpa.h not usable from C++"
    indent "$tmp/cxx.log"
  fi
fi
unset PKG_CONFIG_PATH

# ---- (b) CMake find_package ------------------------------------------------------
mkdir -p "$tmp/cmake-app"
cp "$tmp/app/app.c" "$tmp/cmake-app/app.c"
cat >"$tmp/cmake-app/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(gpa_consumer C)
find_package(gpa $major.$minor REQUIRED)
message(STATUS "found gpa \${gpa_VERSION} in \${gpa_DIR}")
add_executable(app app.c)
target_compile_definitions(app PRIVATE _GNU_SOURCE)
target_link_libraries(app PRIVATE gpa::gpa)
if(TARGET gpa::gpa_static)
  add_executable(app_static app.c)
  target_compile_definitions(app_static PRIVATE _GNU_SOURCE)
  target_link_libraries(app_static PRIVATE gpa::gpa_static)
endif()
CMAKE
if cmake -S "$tmp/cmake-app" -B "$tmp/cmake-app/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake-app.log" 2>&1 \
  && cmake --build "$tmp/cmake-app/build" >>"$tmp/cmake-app.log" 2>&1; then
  ok "find_package(gpa $major.$minor) consumer configures and builds ($(sed -n 's/.*-- found gpa \([^ ]*\) .*/\1/p' "$tmp/cmake-app.log"))"
  # The build tree's run path points at the installed library.
  run_consumer "CMake gpa::gpa consumer" "$tmp/cmake-app/build/app" "$libdir/libgpa.so*"
  if [ -x "$tmp/cmake-app/build/app_static" ]; then
    run_consumer "CMake gpa::gpa_static consumer" "$tmp/cmake-app/build/app_static" "executable"
  fi
else
  bad "find_package(gpa) consumer does not configure or build"
  indent "$tmp/cmake-app.log" 25
fi
# A version the package does not provide must be refused.
mkdir -p "$tmp/cmake-bad"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(x C)\nfind_package(gpa %s REQUIRED)\n' "$((major + 1)).0" >"$tmp/cmake-bad/CMakeLists.txt"
if cmake -S "$tmp/cmake-bad" -B "$tmp/cmake-bad/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake-bad.log" 2>&1; then
  bad "find_package(gpa $((major + 1)).0) accepted version $version"
else
  ok "find_package(gpa $((major + 1)).0) refuses version $version"
fi

# ---- (c) the static archive ------------------------------------------------------
if cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$prefix/include" -o "$tmp/app/app_static" \
  "$tmp/app/app.c" "$libdir/libgpa.a" -lpthread >"$tmp/static.log" 2>&1; then
  ok "consumer links against libgpa.a"
  nm --defined-only "$tmp/app/app_static" | awk '{ print $2, $3 }' >"$tmp/static.syms"
  if grep -q -x 'T gpa_version' "$tmp/static.syms" && grep -q -x 'T malloc' "$tmp/static.syms" \
    && grep -q -x 'T free' "$tmp/static.syms"; then
    ok "static consumer defines malloc, free and gpa_version itself"
  else
    bad "static consumer does not define malloc/free/gpa_version (nm)"
  fi
  run_consumer "static consumer" "$tmp/app/app_static" "executable"
else
  bad "consumer does not link against libgpa.a"
  indent "$tmp/static.log"
fi

finish
