#!/usr/bin/env bash
# Installs the Debian packages ipcx needs to build, test, fuzz and benchmark.
# Idempotent: does nothing (and needs no network) when everything is present.
#
#   --peers   also the other IPC libraries `ipcx bench` compares with (its "peer" rows);
#             a build without them works, and the bench says which rows it skipped.
set -euo pipefail

peers=0
for arg in "$@"; do
  case "$arg" in
    --peers) peers=1 ;;
    *) echo "usage: $0 [--peers]" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake ninja-build pkg-config
  libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  protobuf-compiler libprotobuf-dev libprotoc-dev  # protoc-gen-ipcx, ipcx call, the protobuf example and tests
  socat
  libxml2-utils  # xmllint: the tests check that the charts are well-formed SVG
  python3-jsonschema  # the tests validate the bench's and the tour's JSON against docs/schema/
  clang-19 libclang-rt-19-dev
  libtomlplusplus-dev  # ipcxd's configuration and access-control policy files
  libcpp-httplib-dev   # ipcxd's HTTP introspection (/metrics, /api, the dashboard)
  python3-prometheus-client  # the tests parse /metrics with Prometheus's own text parser
  chromium  # the tests load ipcxd's dashboard in headless Chromium
)

# Peers of the bench, one package per library (iceoryx: its library and its daemon).
peer_packages=(
  libboost-dev  # Boost.Interprocess (header-only): mutex, semaphore
  libzmq3-dev   # ZeroMQ: REQ/REP, PUSH/PULL, PUB/SUB over ipc://, PAIR over tcp://
  libnng-dev    # NNG: pair0 over ipc://
  libiceoryx-posh-dev iceoryx  # Eclipse iceoryx 2.0: zero-copy pub/sub (shm-zerocopy), and its RouDi daemon (iox-roudi)
  libgrpc++-dev protobuf-compiler-grpc  # gRPC: unary calls over a Unix socket (grpc-unix); protoc and its gRPC plugin
  rabbitmq-server librabbitmq-dev  # RabbitMQ and its C client: a durable queue with publisher confirms (broker-durable, broker-group)
  nats-server libnats-dev          # NATS JetStream with file storage, and its C client (the same rows)
)
if ((peers)); then packages+=("${peer_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
