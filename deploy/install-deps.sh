#!/usr/bin/env bash
# Installs everything Postern needs to build, run its demo, its tests and its
# benchmarks on a fresh Debian 12 (bookworm) machine, and fetches the BoringSSL
# source package that our CMake builds (deploy/fetch-boringssl.sh, tls/README.md).
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config dpkg-dev clang-format
  # libFuzzer targets (tests/fuzz/run.sh): clang with its fuzzer and sanitizer runtimes
  clang-14 libclang-rt-14-dev llvm-14
  # libraries (the chosen stack: README.md, "Dependencies")
  libuv1-dev libjemalloc-dev libabsl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libhiredis-dev
  libcrypt-dev libargon2-dev libhttp-parser-dev
  # test backend, real clients and tools used by the tests and the demo
  dovecot-core dovecot-imapd dovecot-pop3d curl fetchmail mpop getmail6 python3
  # the deploy/ tests read YAML (Kubernetes manifests, the shipped configs)
  python3-yaml
  # routing_test starts its own redis-server (own config, dir and loopback port)
  redis-server
  # test_ops_admin runs its own Prometheus (own config and TSDB); promtool
  # checks the /metrics text (tests/proxy/metrics_test.cc too)
  prometheus
  openssl procps iproute2 ca-certificates
  # side-by-side benchmarks (bench/compare starts its own nginx and haproxy)
  nginx-light libnginx-mod-mail haproxy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # bench/compare runs haproxy itself (foreground, its own config, loopback
  # ports); the package's system service is not needed, so a haproxy we just
  # installed is not left running. One installed before is left alone.
  # The same for redis-server: routing_test runs its own on a free port; and
  # for prometheus (test_ops_admin runs its own; metrics_test uses promtool).
  for svc in haproxy redis-server prometheus; do
    if [[ " ${missing[*]} " == *" $svc "* ]]; then
      if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
      else
        $SUDO invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
      fi
    fi
  done
fi

bash "$here/deploy/fetch-boringssl.sh"
echo "install-deps: ok"
