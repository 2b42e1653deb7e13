#!/usr/bin/env bash
# Installs everything Postern needs to build, run its demo, its tests and its
# benchmarks on a fresh Debian 12 (bookworm) machine, and fetches the BoringSSL
# source package that our CMake builds (see tls/README.md).
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config dpkg-dev clang-format
  # libraries (the chosen stack: README.md, "Dependencies")
  libuv1-dev libjemalloc-dev libabsl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libhiredis-dev
  libcrypt-dev libargon2-dev libhttp-parser-dev
  # test backend, real clients and tools used by the tests and the demo
  dovecot-core dovecot-imapd dovecot-pop3d curl fetchmail mpop python3
  openssl procps iproute2 ca-certificates
  # side-by-side benchmarks
  nginx-light libnginx-mod-mail
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# apt-get source needs a deb-src entry for bookworm main.
if ! grep -rqs "^Types:.*deb-src" /etc/apt/sources.list.d/ && ! grep -qs "^deb-src .*bookworm main" /etc/apt/sources.list; then
  # deb822 form with the same Signed-By as Debian's own entry (apt refuses two
  # entries for one source that disagree on it).
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/postern-deb-src.sources >/dev/null
  need_update=1
fi

if [ "${#missing[@]}" -gt 0 ] || [ -n "${need_update:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# BoringSSL source (Debian's android-platform-external-boringssl), unpacked
# once into third_party/boringssl-src (git-ignored) and reused by every build.
src="$here/third_party/boringssl-src"
if [ ! -f "$src/android-sources.cmake" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get source -qq --download-only android-platform-external-boringssl >/dev/null 2>&1 || {
     $SUDO apt-get update -qq && apt-get source -qq --download-only android-platform-external-boringssl >/dev/null; })
  (cd "$tmp" && dpkg-source -x --no-check ./*.dsc boringssl >/dev/null)
  mkdir -p "$here/third_party"
  rm -rf "$src"
  mv "$tmp/boringssl" "$src"
  rm -rf "$tmp"
fi
echo "install-deps: ok"
