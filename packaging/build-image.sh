#!/usr/bin/env bash
# Build the hfconnect OCI image from this repository, offline, with Debian's
# umoci: a statically linked release binary (x86_64-unknown-linux-gnu with
# the static C runtime), a CA bundle, and a non-root user; nothing else (no
# shell, no libc, no package manager).
#
#   packaging/build-image.sh [LAYOUT_DIR]     (default: target/image)
#
# The result is an OCI image layout holding `hfconnect:VERSION`; push it with
# skopeo (`skopeo copy oci:target/image:0.1.0 docker://registry.example.com/hfconnect:0.1.0`)
# or load it with `podman load`/`docker load` after `skopeo copy oci:… docker-archive:…`.
# The Dockerfile beside this script builds the same image for teams that
# build with Docker. Needs: cargo, a C compiler, umoci, and Debian's
# ca-certificates (for /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."

layout="${1:-target/image}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
tag="${TAG:-$version}"
target=x86_64-unknown-linux-gnu
revision="${HFCONNECT_REVISION:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
ca=/etc/ssl/certs/ca-certificates.crt

for tool in cargo umoci; do
  command -v "$tool" >/dev/null || { echo "build-image: \`$tool\` is needed" >&2; exit 2; }
done
[ -f "$ca" ] || { echo "build-image: no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 2; }

# The same flags as the Dockerfile: a static binary runs in an empty root.
RUSTFLAGS="-C target-feature=+crt-static" HFCONNECT_REVISION="$revision" \
  cargo build --release --locked --target "$target" --bin hfconnect
bin="target/$target/release/hfconnect"
if ! file "$bin" 2>/dev/null | grep -q 'static'; then
  # `file` may be missing; ldd says "not a dynamic executable" for a static one.
  ldd "$bin" 2>&1 | grep -qE 'not a dynamic executable|statically linked' \
    || { echo "build-image: $bin is not statically linked" >&2; exit 1; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --rootless --image "$layout:$tag" "$work/bundle"
root="$work/bundle/rootfs"
install -D -m 0755 "$bin" "$root/hfconnect"
install -D -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
install -D -m 0644 packaging/rootfs/etc/passwd "$root/etc/passwd"
install -D -m 0644 packaging/rootfs/etc/group "$root/etc/group"
umoci repack --image "$layout:$tag" "$work/bundle"
umoci config --image "$layout:$tag" \
  --config.user 65532:65532 \
  --config.entrypoint /hfconnect \
  --config.cmd=serve --config.cmd=--config --config.cmd=/etc/hfconnect \
  --config.cmd=--listen --config.cmd=0.0.0.0:8080 \
  --config.exposedports 8080/tcp \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label "org.opencontainers.image.title=hfconnect" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --history.comment "hfconnect $version ($revision), static, from packaging/build-image.sh"
umoci gc --layout "$layout"
echo "built $layout:$tag (revision $revision)"
