#!/usr/bin/env bash
# hack/image.sh [build|lock]
#
# build (default): the agent's container image, without Docker and without
# pulling a base image (`make image` runs this):
#   1. the pinned Debian packages of hack/image/debs.lock are fetched with
#      `apt-get download` into a cache outside the repository and checked
#      against their SHA-256 (a mismatch or a missing version fails the
#      build: never a silent substitute), then unpacked with dpkg-deb;
#   2. the agent is built static (CGO_ENABLED=0), stripped and -trimpath;
#   3. hack/mkimage (go-containerregistry) writes
#        bin/edgeagent-image.tar   docker-archive: ctr images import, docker load
#        bin/edgeagent-oci/        OCI image layout: crane push, skopeo copy
#      and prints the digest. File times and the image's creation time are
#      the commit's time, so one commit gives one digest on any machine
#      with the same Go toolchain.
#
# lock: rewrite debs.lock from the versions apt offers now (after a Debian
#   point release has replaced a pinned version).
#
# Environment: IMAGE (default ghcr.io/arraynetworks/edgeagent), VERSION,
#   COMMIT, IMAGE_OUT (where the outputs go, default bin),
#   EDGEAGENT_DEB_CACHE (default /var/cache/edgeagent/debs).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'image: %s\n' "$*" >&2; }

LOCK=hack/image/debs.lock
CACHE=${EDGEAGENT_DEB_CACHE:-/var/cache/edgeagent/debs}
IMAGE=${IMAGE:-ghcr.io/arraynetworks/edgeagent}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
CREATED=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
GO=${GO:-go}
OUT=${IMAGE_OUT:-bin}

packages() { grep -v '^[[:space:]]*\(#\|$\)' "$LOCK"; }

fetch() { # name version sha256 → path of the verified .deb in the cache
  local name=$1 version=$2 sum=$3 file
  file="$CACHE/${name}_${version//:/%3a}_$sum.deb"
  if [[ -f $file ]] && echo "$sum  $file" | sha256sum -c --status; then
    echo "$file"; return
  fi
  local tmp; tmp=$(mktemp -d "$CACHE/.dl.XXXXXX")
  # _apt cannot write into root's temporary directory; that is harmless.
  if ! (cd "$tmp" && apt-get download "$name=$version" >/dev/null 2>&1); then
    say "apt has no $name=$version; updating the package lists once"
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download "$name=$version" >/dev/null 2>&1) || {
      rm -rf "$tmp"
      say "cannot download $name=$version: Debian no longer serves it? run 'hack/image.sh lock' and review the change"
      exit 1
    }
  fi
  local got; got=$(ls "$tmp"/*.deb)
  if ! echo "$sum  $got" | sha256sum -c --status; then
    say "$name=$version: SHA-256 $(sha256sum "$got" | cut -d' ' -f1) differs from $LOCK ($sum)"
    rm -rf "$tmp"; exit 1
  fi
  mv "$got" "$file"; rm -rf "$tmp"
  echo "$file"
}

build() {
  command -v dpkg-deb >/dev/null || { say "dpkg-deb is missing (Debian's dpkg)"; exit 1; }
  mkdir -p "$CACHE" "$OUT"
  # The unpacked tree is keyed by the lock's content: a changed lock
  # unpacks afresh, an unchanged one is reused.
  local key root
  key=$(packages | sha256sum | cut -c1-16)
  root="$CACHE/root-$key"
  if [[ ! -f $root/.complete ]]; then
    rm -rf "$root"; mkdir -p "$root"
    while read -r name version sum; do
      dpkg-deb -x "$(fetch "$name" "$version" "$sum")" "$root"
    done < <(packages)
    touch "$root/.complete"
    say "unpacked $(packages | wc -l) pinned packages into $root"
  fi
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false $GO build -trimpath \
    -ldflags "-s -w -X github.com/arraynetworks/edgeagent/version.Version=$VERSION -X github.com/arraynetworks/edgeagent/version.Commit=${COMMIT:0:12}" \
    -o "$OUT/edgeagent-static" ./cmd/edgeagent
  $GO run ./hack/mkimage -root "$root" -agent "$OUT/edgeagent-static" \
    -tag "$IMAGE:$VERSION" -version "$VERSION" -revision "$COMMIT" -created "$CREATED" \
    -tar "$OUT/edgeagent-image.tar" -oci "$OUT/edgeagent-oci" ${MKIMAGE_FLAGS:-} | tee "$OUT/edgeagent-image.txt"
}

lock() {
  local out; out=$(mktemp)
  sed -n '/^#/p' "$LOCK" > "$out"
  apt-get update -qq
  local tmp; tmp=$(mktemp -d)
  while read -r name _ _; do
    local v; v=$(apt-cache policy "$name" | awk '/Candidate:/ {print $2}')
    (cd "$tmp" && apt-get download "$name=$v" >/dev/null 2>&1)
    printf '%-26s %-23s %s\n' "$name" "$v" "$(sha256sum "$tmp/${name}_"*.deb | cut -d' ' -f1)" >> "$out"
  done < <(packages)
  rm -rf "$tmp"; mv "$out" "$LOCK"
  say "rewrote $LOCK"; git --no-pager diff --stat -- "$LOCK" || true
}

case ${1:-build} in
  build) build ;;
  lock) lock ;;
  *) echo "usage: hack/image.sh [build|lock]" >&2; exit 2 ;;
esac
