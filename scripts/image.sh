#!/usr/bin/env bash
# Builds the cpkeep container image into an OCI archive:  scripts/image.sh [OUT.tar]
#
# The image is FROM scratch (deploy/Dockerfile): a fully static binary at /cpkeep, Debian's CA bundle
# (rustls-native-certs reads /etc/ssl/certs/ca-certificates.crt for S3 endpoints), an /etc/passwd and
# /etc/group naming the non-root default user 65532 "cpkeep", and an empty /tmp.  Nothing else: no
# shell, no libc.
#
# Reproducible: file times, the image's creation time and the history are set to SOURCE_DATE_EPOCH
# (default 0), and nothing in the image depends on the build machine, so building the same binary
# twice gives the same image digest.  The archive is written to OUT.tar (default
# target/cpkeep-image.tar); its manifest digest is printed on stdout as the last line:
#   digest sha256:...
#
# Needs root (buildah stores layers as root-owned files and builds with chroot isolation) and the
# tools of scripts/install-tools.sh, which it runs first.  Nothing is pulled: FROM scratch has no
# base, and buildah's configuration (storage, registries, signature policy) comes from a temporary
# directory, never from /etc/containers.
set -euo pipefail

REPO=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
TRIPLE=x86_64-unknown-linux-gnu
IMAGE_USER=65532   # distroless' "nonroot" id: outside the ranges distributions give to people

die() { printf 'image: %s\n' "$*" >&2; exit 1; }
say() { printf 'image: %s\n' "$*" >&2; }

[[ $EUID -eq 0 ]] || die "must run as root (buildah's storage and chroot isolation need it)"
[[ $# -le 1 ]] || die "usage: scripts/image.sh [OUT.tar]"

cd "$REPO"
scripts/install-tools.sh >&2
# shellcheck source=/dev/null
. tools/env.sh

epoch=${SOURCE_DATE_EPOCH:-0}
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, not '$epoch'"
# Exported before the build too: GCC takes __DATE__/__TIME__ from it in the C dependencies
# (aws-lc, zstd), and the cc crate tracks it, so a build without it would recompile them.
export SOURCE_DATE_EPOCH=$epoch

# ------------------------------------------------------------------ the binary

# crt-static links glibc statically: musl's std cannot be installed here.  The explicit --target
# applies RUSTFLAGS to the product only, so build scripts and proc macros stay dynamic host
# programs (a static build script could not dlopen anything, and proc macros cannot be static).
say "building the static binary (cargo build --release --target $TRIPLE)"
started=$SECONDS
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TRIPLE" --bin cpkeep >&2
say "binary built in $((SECONDS - started))s"
bin=${CARGO_TARGET_DIR:-$REPO/target}/$TRIPLE/release/cpkeep
[[ -x $bin ]] || die "$bin not built"
# A dynamic binary would start on the build machine and fail in the image: no interpreter, no
# needed libraries, or it is not the binary the image promises.
if readelf -lW "$bin" | grep -q 'Requesting program interpreter' ||
   readelf -dW "$bin" | grep -q '(NEEDED)'; then
  die "$bin is not statically linked: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ' | paste -sd' ' -)"
fi
version=$("$bin" version -o json | sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')
[[ -n $version ]] || die "$bin version -o json does not name a version"

out=${1:-${CARGO_TARGET_DIR:-$REPO/target}/cpkeep-image.tar}
mkdir -p -- "$(dirname -- "$out")"
out=$(CDPATH='' cd -- "$(dirname -- "$out")" && pwd -P)/$(basename -- "$out")

# ------------------------------------------------------------------ the root

work=$(mktemp -d "${TMPDIR:-/tmp}/cpkeep-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/context/rootfs
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
# Modes are set, not left to the umask, so the layer is the same on every machine.
cp -- "$bin" "$root/cpkeep"
chmod 0755 "$root/cpkeep"
cp -- tools/image/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# Kubernetes' runAsNonRoot checks the numeric USER of the image config; the passwd entry gives
# the id a name (and a home that does not exist, so nothing expects to write there).
printf 'root:x:0:0:root:/root:/sbin/nologin\ncpkeep:x:%s:%s:cpkeep:/nonexistent:/sbin/nologin\n' \
  "$IMAGE_USER" "$IMAGE_USER" >"$root/etc/passwd"
printf 'root:x:0:\ncpkeep:x:%s:\n' "$IMAGE_USER" >"$root/etc/group"
# Static glibc has the files and dns lookups built in; this says which it uses, in the order
# glibc's own default would not guarantee across versions.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt" "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
chmod 0755 "$root" "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"

# ------------------------------------------------------------------ buildah

# Own configuration: storage in the scratch directory (vfs: plain directories, no kernel overlay
# support needed), no registries to search, and a policy that accepts the one copy made, from
# local storage to the archive.
conf=$work/conf
mkdir -p "$conf"
cat >"$conf/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "$work/run"
graphroot = "$work/storage"
EOF
printf 'unqualified-search-registries = []\n' >"$conf/registries.conf"
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$conf/policy.json"
: >"$conf/containers.conf"
export CONTAINERS_STORAGE_CONF=$conf/storage.conf CONTAINERS_REGISTRIES_CONF=$conf/registries.conf
export CONTAINERS_CONF=$conf/containers.conf TMPDIR=$work
buildah=(tools/bin/buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")

revision=$(git rev-parse HEAD 2>/dev/null || printf 'unknown')
git diff --quiet HEAD 2>/dev/null || revision=$revision-dirty
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
tag=localhost/cpkeep:$version

say "building $tag (FROM scratch, revision $revision)"
started=$SECONDS
# --identity-label=false: no io.buildah.version label, so another buildah release gives the same image.
"${buildah[@]}" build --isolation chroot --format oci --pull=false --layers=false \
  --signature-policy "$conf/policy.json" --timestamp "$epoch" --identity-label=false \
  --label org.opencontainers.image.title=cpkeep \
  --label "org.opencontainers.image.description=Keeps a kubeadm HA control plane alive: etcd quorum checks, streamed snapshots, native restore, certificate renewal" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  -f deploy/Dockerfile -t "$tag" "$work/context" >&2
rm -f -- "$out"
"${buildah[@]}" push --signature-policy "$conf/policy.json" --format oci --quiet \
  --digestfile "$work/digest" "$tag" "oci-archive:$out:$version" >&2
say "image built in $((SECONDS - started))s: $out"
printf 'digest %s\n' "$(cat "$work/digest")"
