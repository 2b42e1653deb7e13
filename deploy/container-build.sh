#!/usr/bin/env bash
# Builds Postern's container image (deploy/Containerfile) with podman, on a
# machine that reaches Debian's mirror but no container registry: the base
# images are made locally from Debian packages with mmdebstrap when missing.
#
#   deploy/container-build.sh [--tag TAG] [--boringssl context|fetch] [--jobs N]
#                             [--rebuild-bases] [--no-cache]
#
#   --tag TAG          the image to make (default localhost/postern:dev)
#   --boringssl MODE   context: put the already-fetched third_party/boringssl-src
#                      into the build context (default when it is there);
#                      fetch: leave it out and let the build stage fetch Debian's
#                      source package itself (needs deb.debian.org from inside
#                      the build; default when there is no local copy)
#   --jobs N           compile jobs in the build stage (default 2)
#   --rebuild-bases    remake the base images even if they exist
#   --no-cache         passed to podman build
#
# Base images (made once, about 80 s each; Debian bookworm, amd64):
#   localhost/debian-bookworm-min    mmdebstrap --variant=minbase: the build stage
#   localhost/debian-bookworm-slim   the same with dpkg excluding docs, man pages
#                                    and locales, as Docker's debian:bookworm-slim
#                                    (its dpkg config stays, so later installs
#                                    are slim too): the runtime stage
#
# The build context is staged in a temporary directory: the files git knows
# of (tracked, and untracked ones that are not ignored) as they are in the
# work tree, plus third_party/boringssl-src with symlinks followed (a work
# tree often links it to another's). Build trees, .git and .demo never enter.
#
# Exit status: 0 built; 1 the build failed; 3 podman or mmdebstrap is missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

tag=localhost/postern:dev
boringssl=""
jobs=2
rebuild_bases=0
no_cache=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --boringssl) boringssl=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --rebuild-bases) rebuild_bases=1; shift ;;
    --no-cache) no_cache=(--no-cache); shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "container-build: unknown argument $1" >&2; exit 2 ;;
  esac
done

for tool in podman mmdebstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "container-build: $tool is missing (apt-get install -y --no-install-recommends mmdebstrap podman)" >&2
    exit 3
  fi
done

bssl_src="$repo/third_party/boringssl-src"
if [ -z "$boringssl" ]; then
  if [ -f "$bssl_src/android-sources.cmake" ]; then boringssl=context; else boringssl=fetch; fi
fi
case "$boringssl" in
  context)
    if [ ! -f "$bssl_src/android-sources.cmake" ]; then
      echo "container-build: no third_party/boringssl-src (run deploy/fetch-boringssl.sh, or use --boringssl fetch)" >&2
      exit 2
    fi ;;
  fetch) ;;
  *) echo "container-build: --boringssl is context or fetch, got $boringssl" >&2; exit 2 ;;
esac

# --format docker: the OCI format has no HEALTHCHECK (podman drops it). The
# ulimits: podman's defaults ask for more than these machines allow.
podman_build=(podman build --format docker --isolation=chroot --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

work=$(mktemp -d /var/tmp/postern-container.XXXXXX)
trap 'rm -rf "$work"' EXIT

mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# debuerreotype's "slimify", which Docker's -slim images are made with.
slim_opts=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
)

# Merged /usr as debootstrap (and so Docker's debian images) make it: with
# directory symlinks and usr-is-merged. Without the hook mmdebstrap installs
# usrmerge, which pulls in the whole of perl (about 50 MB).
merged_usr=()
if [ -d /usr/share/mmdebstrap/hooks/merged-usr ]; then
  merged_usr=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
fi

# make_base NAME [MMDEBSTRAP OPTIONS...]
make_base() {
  local name=$1
  shift
  if [ "$rebuild_bases" = 0 ] && podman image exists "$name"; then
    echo "container-build: $name exists"
    return
  fi
  echo "container-build: making $name with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --architectures=amd64 "${merged_usr[@]}" "$@" \
    bookworm "$work/rootfs.tar" "${mirrors[@]}"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$work/rootfs.tar" "$name" >/dev/null
  rm -f "$work/rootfs.tar"
  echo "container-build: $name made"
}
make_base localhost/debian-bookworm-min
make_base localhost/debian-bookworm-slim "${slim_opts[@]}"

echo "container-build: staging the build context (boringssl: $boringssl)"
ctx="$work/context"
mkdir -p "$ctx"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
   while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
   tar --null -T - -cf -) | tar -C "$ctx" -xf -
if [ "$boringssl" = context ]; then
  mkdir -p "$ctx/third_party"
  cp -a --dereference "$bssl_src/." "$ctx/third_party/boringssl-src"
fi

echo "container-build: ${podman_build[*]} -t $tag -f deploy/Containerfile (staged context)"
"${podman_build[@]}" "${no_cache[@]}" --build-arg "JOBS=$jobs" -t "$tag" \
  -f "$ctx/deploy/Containerfile" "$ctx"
echo "container-build: built $tag ($(podman image inspect --format '{{.Size}}' "$tag" |
  awk '{printf "%.1f MB", $1 / 1e6}'))"
