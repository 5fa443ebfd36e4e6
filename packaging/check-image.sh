#!/usr/bin/env bash
# Prove an image built by build-image.sh works without a container runtime:
# unpack its root filesystem and run the binary inside it alone (chroot to a
# root holding nothing but the image's files and the quickstart config), as
# the image's user: `--version`, `config check` on the quickstart, and
# `serve` answering `/healthz`.
#
#   packaging/check-image.sh [LAYOUT_DIR]     (default: target/image)
set -euo pipefail
cd "$(dirname "$0")/.."

layout="${1:-target/image}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
tag="${TAG:-$version}"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

umoci unpack --rootless --image "$layout:$tag" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
config="$work/bundle/config.json"
user="$(sed -n 's/.*"uid": *\([0-9]*\).*/\1/p' "$config" | head -n 1):$(sed -n 's/.*"gid": *\([0-9]*\).*/\1/p' "$config" | head -n 1)"
[ "$user" = "65532:65532" ] || { echo "check-image: the image runs as \`$user\`, not 65532:65532" >&2; exit 1; }
echo "image root holds: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"
extra="$(cd "$root" && find . -type f ! -path ./hfconnect ! -path ./etc/passwd ! -path ./etc/group ! -path ./etc/ssl/certs/ca-certificates.crt)"
[ -z "$extra" ] || { echo "check-image: unexpected files in the image: $extra" >&2; exit 1; }
install -D -m 0644 config-examples/quickstart.toml "$root/config/quickstart.toml"
chmod -R a+rX "$work"

inside() {
  if [ "$(id -u)" = 0 ]; then
    chroot --userspec=65532:65532 "$root" "$@"
  else
    unshare --user --map-root-user chroot "$root" "$@"
  fi
}

inside /hfconnect --version | tee "$work/version"
grep -q "^hfconnect $version (revision " "$work/version" || { echo "check-image: --version names no revision" >&2; exit 1; }
inside /hfconnect config check --config /config/quickstart.toml >/dev/null 2>&1
echo "config check on the quickstart: ok"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
inside /hfconnect serve --config /config/quickstart.toml --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if answer="$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1).read().decode())" 2>/dev/null)"; then
    [ "$answer" = "ok" ] && { echo "serve in the image root answers /healthz: ok"; exit 0; }
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "check-image: serve did not answer /healthz" >&2
cat "$work/serve.log" >&2
exit 1
