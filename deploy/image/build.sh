#!/usr/bin/env bash
# Build the operator's container image as an OCI image-layout tarball, without a container
# engine: the release `spo-operator` and `spo-daemon` binaries (stripped), the tools the SELinux and AppArmor
# kinds run on nodes (semodule, secilc, load_policy, setfiles, sefcontext_compile,
# apparmor_parser, from this machine's Debian packages), the shared libraries all of them
# link (found with ldd), and a minimal /etc; nothing else (no shell, no package manager).
#
#   deploy/image/build.sh [--name REF] [--out FILE.tar] [--binary PATH] [--daemon-binary PATH]
#                         [--without-lsm-tools]
#
#   --name    the image reference (default localhost/spo-rs/spo-operator:latest, the name
#             deploy/ uses)
#   --out     where the tarball goes (default $CARGO_TARGET_DIR/image/spo-operator.tar)
#   --binary  an already built spo-operator (default: cargo build --release --locked)
#   --daemon-binary  an already built spo-daemon, the node daemon alone that the DaemonSet
#             runs (default: spo-daemon next to --binary)
#   --without-lsm-tools  leave the SELinux and AppArmor tools out (a seccomp-only image)
#
# The same binary gives the same image digest (e2e/node/oci-image.sh: sorted entries,
# mtime 0, owner root, gzip without a name or time). Load it with
# `ctr -n k8s.io images import FILE.tar`, or push it with skopeo:
# `skopeo copy oci-archive:FILE.tar docker://registry.example/spo-operator:TAG`.
# deploy/image/Containerfile is the same image for container engines and registries' builders.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
name="localhost/spo-rs/spo-operator:latest" out="$target/image/spo-operator.tar" binary="" daemon_binary="" lsm_tools=1
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --daemon-binary) daemon_binary="$2"; shift 2 ;;
    --without-lsm-tools) lsm_tools=0; shift ;;
    *) echo "deploy/image/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in ldd strip; do
  command -v "$tool" >/dev/null || { echo "deploy/image/build.sh: $tool not found" >&2; exit 1; }
done
if [ -z "$binary" ]; then
  (cd "$repo" && cargo build --release --locked -p spo-operator >&2)
  binary="$target/release/spo-operator"
fi
[ -n "$daemon_binary" ] || daemon_binary="$(dirname "$binary")/spo-daemon"
for b in "$binary" "$daemon_binary"; do
  [ -x "$b" ] || { echo "deploy/image/build.sh: $b is not an executable" >&2; exit 1; }
done

root="$(mktemp -d "${TMPDIR:-/tmp}/spo-image.XXXXXX")"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib/kubelet"
chmod 1777 "$root/tmp"
strip --strip-all -o "$root/usr/local/bin/spo-operator" "$binary"
strip --strip-all -o "$root/usr/local/bin/spo-daemon" "$daemon_binary"

# The tools the SELinux and AppArmor kinds run (found by the daemon at these paths).
tools=()
if [ "$lsm_tools" = 1 ]; then
  for t in /usr/sbin/semodule /usr/bin/secilc /usr/sbin/load_policy /usr/sbin/setfiles \
           /usr/sbin/sefcontext_compile /usr/sbin/apparmor_parser; do
    [ -x "$t" ] || { echo "deploy/image/build.sh: $t not found (scripts/setup installs it; or --without-lsm-tools)" >&2; exit 1; }
    mkdir -p "$root$(dirname "$t")"
    cp -L "$t" "$root$t"
    tools+=("$t")
  done
fi

# The shared libraries of the binaries and the tools, each at the path the dynamic loader
# looks for it.
ldd "$binary" "$daemon_binary" "${tools[@]}" | awk '/=> \//{print $3} /^\s*\/[^ ]*ld-linux/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# The loader, at the path the binary names.
interp="$(readelf -l "$binary" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
if [ -n "$interp" ] && [ ! -e "$root$interp" ]; then
  mkdir -p "$root$(dirname "$interp")"
  cp -L "$interp" "$root$interp"
fi

# Users: root (node pods, which own files in root's kubelet directory) and nonroot 65532
# (the manager and the webhook).
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"

"$repo/e2e/node/oci-image.sh" --name "$name" --rootfs "$root" --out "$out" \
  --entrypoint '["/usr/local/bin/spo-operator"]' --user 65532:65532 \
  --env '["PATH=/usr/local/bin:/usr/sbin:/usr/bin"]'
size_kib=$(( $(stat -c %s "$out") / 1024 ))
unpacked_kib=$(du -sk "$root" | cut -f1)
echo "image $name: $out (${size_kib} KiB compressed, ${unpacked_kib} KiB unpacked)"
