#!/usr/bin/env bash
# Assemble an OCI image-layout tarball from a root filesystem directory, without a
# container engine: one gzip layer, a config, a manifest and an index, as
# `ctr images import` (and any OCI tool) reads them.
#
#   e2e/node/oci-image.sh --name REF --rootfs DIR --out FILE.tar \
#       [--entrypoint JSON_ARRAY] [--cmd JSON_ARRAY] [--env JSON_ARRAY] [--user UID[:GID]]
#
# REF is the full image name the runtime stores it under (e.g. localhost/spo-e2e/busybox:1);
# pods then name exactly that image with `imagePullPolicy: Never`.
#
# Reproducible: the same rootfs gives the same bytes (entries sorted, mtimes 0, owner
# root, no atime/ctime, gzip without name or time), so the image digest is stable.
# Needs tar (GNU), gzip, sha256sum, jq.
set -euo pipefail

name="" rootfs="" out="" entrypoint="null" cmd="null" user=""
env='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --rootfs) rootfs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --entrypoint) entrypoint="$2"; shift 2 ;;
    --cmd) cmd="$2"; shift 2 ;;
    --env) env="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    *) echo "oci-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$name" ] || [ -z "$rootfs" ] || [ -z "$out" ]; then
  echo "usage: $0 --name REF --rootfs DIR --out FILE.tar [--entrypoint JSON] [--cmd JSON] [--env JSON] [--user U]" >&2
  exit 2
fi
[ -d "$rootfs" ] || { echo "oci-image.sh: rootfs $rootfs is not a directory" >&2; exit 1; }
for tool in tar gzip sha256sum jq; do
  command -v "$tool" >/dev/null || { echo "oci-image.sh: $tool not found" >&2; exit 1; }
done
tag="${name##*:}"
case "$name" in */*:*) ;; *) echo "oci-image.sh: --name must be a full reference with a tag (host/path:tag), got $name" >&2; exit 2 ;; esac

work="$(mktemp -d "${TMPDIR:-/tmp}/oci-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
blobs="$work/layout/blobs/sha256"
mkdir -p "$blobs"

# Deterministic tar: sorted names, fixed owner and mtime, no atime/ctime in pax headers.
det_tar() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime "$@"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# put FILE: move FILE into the blob store under its digest; print the digest.
put() {
  local d
  d="$(sha "$1")"
  mv -f "$1" "$blobs/$d"
  echo "$d"
}

det_tar -C "$rootfs" -cf "$work/layer.tar" .
diff_id="$(sha "$work/layer.tar")"
gzip -n -9 "$work/layer.tar"
layer_size="$(size "$work/layer.tar.gz")"
layer="$(put "$work/layer.tar.gz")"

jq -cn --arg diff "sha256:$diff_id" --argjson ep "$entrypoint" --argjson cmd "$cmd" \
  --argjson env "$env" --arg user "$user" '{
    architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
    config: ({Env: $env, WorkingDir: "/"}
      + (if $ep != null then {Entrypoint: $ep} else {} end)
      + (if $cmd != null then {Cmd: $cmd} else {} end)
      + (if $user != "" then {User: $user} else {} end)),
    rootfs: {type: "layers", diff_ids: [$diff]},
    history: [{created: "1970-01-01T00:00:00Z", created_by: "e2e/node/oci-image.sh"}]
  }' >"$work/config.json"
config_size="$(size "$work/config.json")"
config="$(put "$work/config.json")"

jq -cn --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" --argjson ls "$layer_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]
  }' >"$work/manifest.json"
manifest_size="$(size "$work/manifest.json")"
manifest="$(put "$work/manifest.json")"

jq -cn --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg name "$name" --arg tag "$tag" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
      platform: {architecture: "amd64", os: "linux"},
      annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}}]
  }' >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

mkdir -p "$(dirname "$out")"
det_tar -C "$work/layout" -cf "$out.tmp.$$" oci-layout index.json blobs
mv -f "$out.tmp.$$" "$out"
echo "$name sha256:$manifest $(size "$out") bytes -> $out" >&2
