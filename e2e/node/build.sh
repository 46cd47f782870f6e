#!/usr/bin/env bash
# Build (or reuse) the node binaries of the e2e cluster and print where they are.
#
#   e2e/node/build.sh [kube|containerd|pause|images|oras|all]     (default: all)
#
# Into $SPO_E2E_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs):
#   e2e-kube                       kubelet + kube-controller-manager + kube-scheduler (e2e/node/kube)
#   containerd/{containerd,containerd-shim-runc-v2,ctr}   containerd v2 (e2e/node/containerd)
#   pause                          the pod sandbox process (e2e/node/pause)
#   images/{pause,busybox}.tar     OCI image tarballs (e2e/node/oci-image.sh)
#   oras                           the ORAS CLI (e2e/tools/oras), for spoc's OCI interop tests
# Each is rebuilt only when a content hash of its Go module (go.mod, go.sum, *.go) and of
# this script differs from the `.stamp` beside it, so a fresh clone reuses the cached
# binaries. SPO_E2E_REBUILD=1 forces a build. Go builds run under `nice -n 10`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SPO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs}"
what="${1:-all}"

# stamp_of DIR: content hash of a Go module's sources and of this build recipe.
stamp_of() {
  local f
  for f in "$1"/go.mod "$1"/go.sum "$1"/*.go "${BASH_SOURCE[0]}"; do
    if [ -f "$f" ]; then cat "$f"; fi
  done | sha256sum | cut -d' ' -f1
}

# fresh OUT STAMP: whether OUT exists and was built from sources hashing to STAMP.
fresh() {
  [ "${SPO_E2E_REBUILD:-0}" != 1 ] && [ -e "$1" ] && [ "$(cat "$1.stamp" 2>/dev/null)" = "$2" ]
}

need_go() {
  command -v go >/dev/null || { echo "go toolchain not found (need go >= 1.26)" >&2; exit 1; }
}

build_kube() {
  local src="$here/kube" out="$cache/e2e-kube" stamp
  stamp="$(stamp_of "$src")"
  if fresh "$out" "$stamp"; then return; fi
  need_go
  mkdir -p "$cache"
  echo "building $out (kubelet, controller-manager, scheduler; a cold build takes minutes) ..." >&2
  local started kver major minor vpkg
  started=$(date +%s)
  (
    cd "$src"
    kver="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"   # e.g. v1.37.2
    major="${kver#v}"; major="${major%%.*}"
    minor="${kver#v*.}"; minor="${minor%%.*}"
    vpkg=k8s.io/component-base/version
    # Version stamped as upstream's build does (hack/lib/version.sh), so the node
    # reports the real release instead of v0.0.0.
    # Same Go settings as e2e/start-apiserver.sh (cgo as the toolchain defaults, -trimpath,
    # -buildvcs=false): then the thousands of packages both link are compiled once and
    # shared through the Go build cache; a different CGO_ENABLED would compile them twice.
    nice -n 10 go build -trimpath -buildvcs=false -o "$out.tmp.$$" \
      -ldflags "-s -w -X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z" \
      .
  )
  mv -f "$out.tmp.$$" "$out"
  echo "$stamp" >"$out.stamp"
  echo "built $out in $(( $(date +%s) - started ))s" >&2
}

build_containerd() {
  local src="$here/containerd" out="$cache/containerd" stamp
  stamp="$(stamp_of "$src")"
  if fresh "$out/containerd" "$stamp" && [ -x "$out/containerd-shim-runc-v2" ] && [ -x "$out/ctr" ]; then return; fi
  need_go
  mkdir -p "$out"
  echo "building containerd into $out ..." >&2
  local started
  started=$(date +%s)
  (
    cd "$src"
    ver="$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"   # e.g. v2.4.2
    pkg=github.com/containerd/containerd/v2
    # As upstream's Makefile: version stamped, urfave_cli_no_docs, the shim with no_grpc;
    # CGO off so everything is static.
    ld="-s -w -X $pkg/version.Version=$ver -X $pkg/version.Revision=$ver -X $pkg/version.Package=$pkg"
    for cmd in containerd ctr; do
      CGO_ENABLED=0 nice -n 10 go build -trimpath -buildvcs=false -tags urfave_cli_no_docs \
        -ldflags "$ld" -o "$out/$cmd.tmp.$$" "$pkg/cmd/$cmd"
    done
    CGO_ENABLED=0 nice -n 10 go build -trimpath -buildvcs=false -tags "urfave_cli_no_docs no_grpc" \
      -ldflags "$ld" -o "$out/containerd-shim-runc-v2.tmp.$$" "$pkg/cmd/containerd-shim-runc-v2"
  )
  for cmd in containerd ctr containerd-shim-runc-v2; do
    mv -f "$out/$cmd.tmp.$$" "$out/$cmd"
  done
  echo "$stamp" >"$out/containerd.stamp"
  echo "built containerd in $(( $(date +%s) - started ))s" >&2
}

# build_static SRC OUT PKG: one static Go command, package PKG of the module in SRC, into
# OUT, unless OUT was built from the same sources.
build_static() {
  local src="$1" out="$2" pkg="$3" stamp
  stamp="$(stamp_of "$src")"
  if fresh "$out" "$stamp"; then return; fi
  need_go
  mkdir -p "$cache"
  echo "building $out ..." >&2
  local started
  started=$(date +%s)
  (cd "$src" && CGO_ENABLED=0 nice -n 10 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
  echo "$stamp" >"$out.stamp"
  echo "built $out in $(( $(date +%s) - started ))s" >&2
}

build_pause() {
  build_static "$here/pause" "$cache/pause" .
}

# The ORAS CLI: upstream SPO pushes and pulls profile artifacts with ORAS's Go library, so
# what oras pushes spoc must pull, and the other way (spoc/tests/oci_interop.rs).
build_oras() {
  build_static "$here/../tools/oras" "$cache/oras" oras.land/oras/cmd/oras
}

# The two images every pod here uses, as OCI tarballs for `ctr images import`: the pause
# image (our static pause binary alone) and busybox (Debian's busybox-static, one symlink
# per applet). Rebuilt when the builder, this script or either binary changes.
build_images() {
  build_pause
  local busybox=/bin/busybox out="$cache/images" stamp
  [ -x "$busybox" ] || { echo "$busybox not found (apt-get install busybox-static)" >&2; exit 1; }
  stamp="$(cat "$here/oci-image.sh" "${BASH_SOURCE[0]}" "$cache/pause" "$busybox" | sha256sum | cut -d' ' -f1)"
  if fresh "$out/busybox.tar" "$stamp" && [ -s "$out/pause.tar" ]; then return; fi
  mkdir -p "$out"
  local root
  root="$(mktemp -d "${TMPDIR:-/tmp}/spo-e2e-rootfs.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: root is local
  trap "rm -rf '$root'" EXIT
  mkdir -p "$root/pause"
  install -m 0755 "$cache/pause" "$root/pause/pause"
  "$here/oci-image.sh" --name "$PAUSE_IMAGE" --rootfs "$root/pause" --out "$out/pause.tar" \
    --entrypoint '["/pause"]' --env '[]'
  local bb="$root/busybox" applet
  mkdir -p "$bb/bin" "$bb/sbin" "$bb/usr/bin" "$bb/usr/sbin" "$bb/etc" "$bb/tmp" "$bb/root"
  chmod 1777 "$bb/tmp"
  chmod 0700 "$bb/root"
  install -m 0755 "$busybox" "$bb/bin/busybox"
  while read -r applet; do
    [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$bb/$applet"
  done < <("$busybox" --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$bb/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$bb/etc/group"
  "$here/oci-image.sh" --name "$BUSYBOX_IMAGE" --rootfs "$bb" --out "$out/busybox.tar" --cmd '["/bin/sh"]'
  echo "$stamp" >"$out/busybox.tar.stamp"
  rm -rf "$root"
  trap - EXIT
}

# The names pods use (keep in step with e2e/src/node.rs).
PAUSE_IMAGE=localhost/spo-e2e/pause:1
BUSYBOX_IMAGE=localhost/spo-e2e/busybox:1

case "$what" in
  kube) build_kube ;;
  containerd) build_containerd ;;
  pause) build_pause ;;
  images) build_images ;;
  oras) build_oras ;;
  all) build_images; build_containerd; build_kube; build_oras ;;
  *) echo "usage: $0 [kube|containerd|pause|images|oras|all]" >&2; exit 2 ;;
esac
echo "$cache"
