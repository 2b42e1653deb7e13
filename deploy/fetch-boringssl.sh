#!/usr/bin/env bash
# Fetches BoringSSL's source from Debian (android-platform-external-boringssl)
# and unpacks it once into third_party/boringssl-src (git-ignored), where
# CMake builds it (third_party/boringssl/CMakeLists.txt). Called by
# deploy/install-deps.sh, and by CMake when the source is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/third_party/boringssl-src"
[ -f "$src/android-sources.cmake" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
command -v dpkg-source >/dev/null || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq dpkg-dev >/dev/null; }

# apt-get source needs a deb-src entry for bookworm main.
if ! grep -rqs "^Types:.*deb-src" /etc/apt/sources.list.d/ && ! grep -qs "^deb-src .*bookworm main" /etc/apt/sources.list; then
  # deb822 form with the same Signed-By as Debian's own entry (apt refuses two
  # entries for one source that disagree on it).
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/postern-deb-src.sources >/dev/null
  $SUDO apt-get update -qq
fi


tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get source -qq --download-only android-platform-external-boringssl >/dev/null 2>&1 ||
   { $SUDO apt-get update -qq && apt-get source -qq --download-only android-platform-external-boringssl >/dev/null; }; })
(cd "$tmp" && dpkg-source -x --no-check ./*.dsc boringssl >/dev/null)
mkdir -p "$here/third_party"
rm -rf "$src"
mv "$tmp/boringssl" "$src"
echo "fetch-boringssl: $(cat "$src/BORINGSSL_REVISION") in third_party/boringssl-src"
