#!/usr/bin/env bash
# The published package as a host application meets it: build docsync into a clean staging copy, `npm pack` it,
# install the tarball into an empty project, type-check a program against the public API under strict mode
# (exactOptionalPropertyTypes, no skipLibCheck for our .d.ts), and run it: a host server mounting docsync under
# /collab, driven through `docsync/client` (typed REST client and WebSocket client). Also checks that internal
# modules are not importable. Needs the npm registry or a warm npm cache (the tarball's dependencies).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/docsync-pack.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
step() { echo "check-pack: $*"; }

step "building into a staging copy"
mkdir -p "$WORK/stage"
cp "$ROOT/package.json" "$ROOT/README.md" "$WORK/stage/"
"$ROOT/node_modules/.bin/tsc" -p "$ROOT/tsconfig.build.json" --outDir "$WORK/stage/dist"

step "npm pack"
(cd "$WORK/stage" && npm pack --ignore-scripts --silent --pack-destination "$WORK" >/dev/null)
TARBALL="$(ls "$WORK"/docsync-*.tgz)"
tar -tzf "$TARBALL" | sort >"$WORK/contents"
for required in package/package.json package/dist/index.js package/dist/index.d.ts \
  package/dist/Client/index.js package/dist/Client/index.d.ts; do
  grep -qx "$required" "$WORK/contents" || { echo "check-pack: $required missing from the tarball" >&2; exit 1; }
done
if grep -Eq '^package/(src|test|bench|examples|scripts)/|\.map$' "$WORK/contents"; then
  echo "check-pack: the tarball holds files it should not:" >&2
  grep -E '^package/(src|test|bench|examples|scripts)/|\.map$' "$WORK/contents" >&2
  exit 1
fi
step "$(basename "$TARBALL"): $(wc -l <"$WORK/contents") files"

step "installing into an empty project"
mkdir -p "$WORK/host"
cp "$ROOT/scripts/check-pack/host.ts" "$ROOT/scripts/check-pack/tsconfig.json" "$WORK/host/"
cat >"$WORK/host/package.json" <<'JSON'
{ "name": "docsync-pack-check", "private": true, "type": "module" }
JSON
TS_VERSION="$(node -p "require('$ROOT/node_modules/typescript/package.json').version")"
NODE_TYPES_VERSION="$(node -p "require('$ROOT/node_modules/@types/node/package.json').version")"
# @types/ws: @effect/platform-node's own declarations import "ws", so any host that type-checks them needs it.
WS_TYPES_VERSION="$(node -p "require('$ROOT/node_modules/@types/ws/package.json').version")"
# --ignore-scripts: better-sqlite3 would compile for a minute; the check uses memory storage.
(cd "$WORK/host" && npm install --no-audit --no-fund --prefer-offline --ignore-scripts --loglevel=error \
  "$TARBALL" "typescript@$TS_VERSION" "@types/node@$NODE_TYPES_VERSION" "@types/ws@$WS_TYPES_VERSION" >/dev/null)

step "type-checking host.ts (strict)"
(cd "$WORK/host" && npx --no-install tsc -p tsconfig.json)

step "running host.js"
(cd "$WORK/host" && node host.js)
step "ok"
