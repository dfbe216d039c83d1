#!/usr/bin/env bash
# Installs ipcx from BUILD_DIR into a scratch prefix, then builds and runs a consumer project
# against it twice: through find_package(ipcx) and through pkg-config.
set -euo pipefail
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d /tmp/ipcx-test-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build_dir" --prefix "$prefix" >/dev/null
test -f "$prefix/include/ipcx/ipcx.hpp"
test -f "$prefix/lib/cmake/ipcx/ipcxConfig.cmake"
test -f "$prefix/lib/pkgconfig/ipcx.pc"

cmake -S "$src_dir" -B "$prefix/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/consumer"

flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs ipcx)
g++ -o "$prefix/consumer-pc" "$src_dir/main.cpp" $flags
"$prefix/consumer-pc"
echo "install: find_package and pkg-config consumers built and ran"
