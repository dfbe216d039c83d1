#!/usr/bin/env bash
# Installs ipcx from BUILD_DIR into a scratch prefix, builds the protobuf example
# (examples/rpc_calc) against it with ipcx_protobuf_generate(), and runs its client against
# its server.
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d /tmp/ipcx-test-pbinstall.XXXXXX)
server=""
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$prefix"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$prefix" >/dev/null
test -x "$prefix/bin/protoc-gen-ipcx"
test -f "$prefix/lib/cmake/ipcx/IpcxProtobuf.cmake"
test -f "$prefix/include/ipcx/rpc_protobuf.hpp"

cmake -S "$here" -B "$prefix/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DIPCX_EXAMPLE_DIR="$here/../../../examples/rpc_calc" >/dev/null
cmake --build "$prefix/build" -j2 >/dev/null
# The plugin that ran is the installed one; OUT_DIR is relative to the binary directory.
grep -q -- "--plugin=protoc-gen-ipcx=$prefix/bin/protoc-gen-ipcx" "$prefix/build/build.ninja"
test -f "$prefix/build/generated/client/calc.ipcx.h"

"$prefix/build/calc_server" "unix://$prefix/calc.sock" >"$prefix/server.out" &
server=$!
for _ in $(seq 100); do grep -q ready "$prefix/server.out" && break; sleep 0.1; done
out=$("$prefix/build/calc_client" "unix://$prefix/calc.sock")
expected=$'2 + 3 = 5\n10\n11\n12'
if [[ $out != "$expected" ]]; then
  echo "calc_client printed: $out" >&2
  exit 1
fi
echo "install: the protobuf example built against the installed package and ran"
