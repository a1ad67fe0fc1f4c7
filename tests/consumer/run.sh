#!/usr/bin/env bash
# tests/consumer/run.sh BUILD_DIR - checks gradflow as another project sees
# it. Installs BUILD_DIR (built) into a temporary prefix with cmake --install
# and builds and runs main.c against it four ways: CMake find_package with
# gradflow::gradflow and with gradflow::gradflow_static, and pkg-config
# shared and static; checks that the package version file accepts 0.1 only;
# then builds main.c in a parent project that add_subdirectory()s the source
# tree. Exits non-zero on the first failure.
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BUILD_DIR (a configured and built gradflow build directory)" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
here=$src/tests/consumer
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() {
  echo "consumer: FAIL: $*" >&2
  exit 1
}
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for h in gradflow.h gradflow/nn.h; do
  [ -f "$prefix/include/$h" ] || fail "cmake --install did not install include/$h"
done
pc=$(find "$prefix" -name gradflow.pc)
[ -n "$pc" ] || fail "cmake --install did not install gradflow.pc"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH

# CMake: the shared and the static target of the installed package.
for kind in shared static; do
  static=OFF
  [ $kind = static ] && static=ON
  cmake -S "$here" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    -DGF_CONSUMER_STATIC=$static >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "CMake $kind: configure"; }
  cmake --build "$tmp/cmake-$kind" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "CMake $kind: build"; }
  "$tmp/cmake-$kind/consumer" || fail "CMake $kind: the program failed"
  if [ $kind = shared ]; then
    needed "$tmp/cmake-$kind/consumer" | grep -q '^libgradflow\.so' || fail "CMake shared: not linked to libgradflow.so"
  else
    ! needed "$tmp/cmake-$kind/consumer" | grep -q '^libgradflow' || fail "CMake static: linked to libgradflow.so"
  fi
  echo "consumer: CMake $kind: ok"
done

# The version file: 0.x minor versions are incompatible with each other.
for v in 0.0 0.2 1.0; do
  mkdir -p "$tmp/version-$v"
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(v LANGUAGES NONE)\nfind_package(gradflow %s REQUIRED)\n' \
    "$v" >"$tmp/version-$v/CMakeLists.txt"
  if cmake -S "$tmp/version-$v" -B "$tmp/version-$v/b" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/log" 2>&1; then
    fail "find_package(gradflow $v) accepted the installed $(pkg-config --modversion gradflow)"
  fi
  grep -q 'version: 0\.1' "$tmp/log" || { cat "$tmp/log"; fail "find_package(gradflow $v) failed for another reason"; }
done
echo "consumer: find_package version checks: ok"

# pkg-config: its paths must lie inside the prefix it was installed to.
version=$(pkg-config --modversion gradflow)
libdir=$(pkg-config --variable=libdir gradflow)
[ "$(realpath "$libdir")" = "$(realpath "$(dirname "$pc")/..")" ] ||
  fail "gradflow.pc's libdir is $libdir, not the installed $(dirname "$(dirname "$pc")")"
flags=(-std=c11 -Wall -Wextra -Werror "-DGF_EXPECT_VERSION=\"$version\"")
# shellcheck disable=SC2046 # pkg-config's output is a list of words
$cc "${flags[@]}" "$here/main.c" -o "$tmp/pc-shared" $(pkg-config --cflags --libs gradflow) ||
  fail "pkg-config shared: build"
LD_LIBRARY_PATH=$libdir "$tmp/pc-shared" || fail "pkg-config shared: the program failed"
needed "$tmp/pc-shared" | grep -q '^libgradflow\.so' || fail "pkg-config shared: not linked to libgradflow.so"
echo "consumer: pkg-config shared: ok"
# -l:libgradflow.a: the archive, not the shared library beside it.
static_flags=$(pkg-config --cflags --static --libs gradflow)
static_flags=${static_flags/-lgradflow/-l:libgradflow.a}
# shellcheck disable=SC2086
$cc "${flags[@]}" "$here/main.c" -o "$tmp/pc-static" $static_flags ||
  fail "pkg-config static: build with $static_flags"
"$tmp/pc-static" || fail "pkg-config static: the program failed"
! needed "$tmp/pc-static" | grep -q '^libgradflow' || fail "pkg-config static: linked to libgradflow.so"
echo "consumer: pkg-config static: ok"

# add_subdirectory: a Debug parent stays Debug and builds and runs main.c; a
# parent with no build type keeps none (configure only).
sub=$here/subdir
cmake -S "$sub" -B "$tmp/sub-debug" -DGRADFLOW_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE=Debug >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "add_subdirectory (Debug): configure"; }
grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Debug$' "$tmp/sub-debug/CMakeCache.txt" || fail "add_subdirectory: the cache's build type is not Debug"
cmake --build "$tmp/sub-debug" -j2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "add_subdirectory (Debug): build"; }
"$tmp/sub-debug/consumer" || fail "add_subdirectory (Debug): the program failed"
cmake -S "$sub" -B "$tmp/sub-none" -DGRADFLOW_SOURCE_DIR="$src" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "add_subdirectory (no build type): configure"; }
echo "consumer: add_subdirectory: ok"
